"""Cost of counting one gRPC request: tidescaler's telemetry against prometheus_client.

`Telemetry.record_rpc` (plain counts, turned into metrics on scrape) against
prometheus_client's own Counter.inc plus Histogram.observe with the same labels
and buckets (what it used before), in interleaved rounds of the same run; the
median per-call time of each and their ratio.

    python benchmarks/bench_telemetry.py [--calls 200000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaler.telemetry import RPC_BUCKETS, RPC_LABELS, Telemetry


def per_call_us(record: Callable[[], None], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        record()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    telemetry = Telemetry()
    registry = CollectorRegistry()
    counter = Counter("requests", "", RPC_LABELS, registry=registry)
    histogram = Histogram("seconds", "", RPC_LABELS, buckets=RPC_BUCKETS, registry=registry)
    # As the earlier record_rpc did: the label children looked up once, then kept.
    inc, observe = (
        counter.labels("GetMetrics", "OK").inc,
        histogram.labels("GetMetrics", "OK").observe,
    )

    def ours() -> None:
        telemetry.record_rpc("GetMetrics", "OK", 0.0007)

    def theirs() -> None:
        inc()
        observe(0.0007)

    timings: dict[str, list[float]] = {"tidescaler": [], "prometheus_client": []}
    for r in range(args.rounds):
        pairs = [("tidescaler", ours), ("prometheus_client", theirs)]
        for name, record in pairs if r % 2 == 0 else pairs[::-1]:
            timings[name].append(per_call_us(record, args.calls))
    ratio = statistics.median(
        a / b for a, b in zip(timings["tidescaler"], timings["prometheus_client"], strict=True)
    )
    print(
        f"record one gRPC request, median of {args.rounds} interleaved rounds of "
        f"{args.calls:,} calls: tidescaler {statistics.median(timings['tidescaler']):.2f} us, "
        f"prometheus_client Counter + Histogram "
        f"{statistics.median(timings['prometheus_client']):.2f} us; ratio {ratio:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
