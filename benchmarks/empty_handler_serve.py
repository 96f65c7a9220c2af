"""`tidescaler serve` exactly as shipped, except that GetMetrics answers a constant.

bench_grpc.py runs it beside the real server and the null servicer to split the
throughput gap in two: what the tidescaler process costs around a call (its
threads, telemetry server, background refreshes, gRPC set-up) and what the
decision itself costs (policy lookup, observation, engine, telemetry records).

    python benchmarks/empty_handler_serve.py serve --port 9090 ...   (serve's flags)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from null_server import VALUE

from scaler import cli
from scaler.server import ScalerService

ANSWER: bytes = VALUE.SerializeToString()  # tidescaler's methods answer serialized bytes


async def constant_get_metrics(self: ScalerService, request: bytes, context: object) -> bytes:
    return ANSWER


if __name__ == "__main__":
    ScalerService.GetMetrics = constant_get_metrics  # type: ignore[method-assign]
    sys.exit(cli.main())
