"""`tidescaler serve` exactly as shipped, except that the garbage collector keeps
CPython's defaults (no `settle_garbage_collector`).

bench_grpc.py runs it beside the real server to measure what settling the
collector is worth under load, in the same run.

    python benchmarks/default_gc_serve.py serve --port 9090 ...   (serve's flags)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaler import cli, server


def keep_defaults() -> None:
    """settle_garbage_collector's stand-in: leave the collector as CPython sets it."""


if __name__ == "__main__":
    server.settle_garbage_collector = keep_defaults
    sys.exit(cli.main())
