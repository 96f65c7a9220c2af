"""Trigger metadata parsing: the cost of a cache hit, of a parse, and of hostile maps.

    python benchmarks/bench_policy.py

Prints medians over rounds (the machine may be shared): a cache hit (KEDA sends
the same map on every poll), a full parse of a typical map, the rejection of
each hostile map, and the memory left behind by many distinct large maps.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import tracemalloc
from collections.abc import Callable

from scaler.policy import PolicyError, cached_policy, clear_policy_cache, parse_policy

TYPICAL = {
    "scalerAddress": "tidescaler.tidescaler:9090",
    "enableTLS": "false",
    "query": "sum(rate(http_requests_total[1m]))",
    "threshold": "100",
    "timezone": "Europe/Berlin",
    "start": "0 8 * * *",
    "end": "0 20 * * *",
    "desiredReplicas": "5",
    "minReplicas": "1",
}


def _bomb() -> str:
    lines = ['- &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for below, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"- &{name} [" + ",".join([f"*{below}"] * 9) + "]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "YAML alias bomb": {"schedules": _bomb()},
    "JSON nested 5000 deep": {"schedules": "[" * 5000 + "]" * 5000},
    "1 MB query": {"query": "x" * 2**20, "threshold": "1"},
    "timezone Europe (a directory)": TYPICAL | {"timezone": "Europe"},
    "desiredReplicas 2^63": TYPICAL | {"desiredReplicas": str(2**63)},
    "50 unknown 100-byte keys": TYPICAL | {f"k{i:03d}" + "x" * 96: "v" for i in range(50)},
}


def median_us(call: Callable[[], object], calls: int, rounds: int = 7) -> float:
    results = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(calls):
            with contextlib.suppress(PolicyError):
                call()
        results.append((time.perf_counter() - began) / calls * 1e6)
    return statistics.median(results)


def retained_mib(maps: Callable[[int], dict[str, str]], count: int) -> float:
    clear_policy_cache()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for i in range(count):
        with contextlib.suppress(PolicyError):
            cached_policy(maps(i))
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    clear_policy_cache()
    return (after - before) / 2**20


def _large_invalid(i: int) -> dict[str, str]:
    distinct = f"{i:05d}"
    keys = ("metricName", "namespace", "customHeaders", "queryParameters", "timezone", "start")
    return {
        "query": distinct + "q" * 16000,
        "forecastQuery": distinct + "f" * 16000,
        "threshold": "0",
    } | {key: distinct + "v" * 4000 for key in keys}


def main() -> None:
    cached_policy(TYPICAL)
    hit = median_us(lambda: cached_policy(TYPICAL), 20000)
    print(f"cache hit (typical map):        {hit:8.1f} µs")
    print(
        f"parse_policy (typical map):     {median_us(lambda: parse_policy(TYPICAL), 1000):8.1f} µs"
    )
    for name, metadata in HOSTILE.items():
        cost = median_us(lambda m=metadata: parse_policy(m), 50)  # type: ignore[misc]
        print(f"rejected: {name:30s} {cost:8.1f} µs")
    print(
        "retained after 300 distinct 1 MB maps:   "
        f"{retained_mib(lambda i: {'query': f'{i}' + 'x' * 2**20, 'threshold': '1'}, 300):6.2f} MiB"
    )
    print(
        "retained after 500 distinct 60 kB maps:  "
        f"{retained_mib(_large_invalid, 500):6.2f} MiB (cache bound 16 MiB)"
    )


if __name__ == "__main__":
    main()
