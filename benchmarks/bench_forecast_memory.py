"""Resident memory per forecast series, to size the server's memory limit.

The server keeps, for each distinct forecast series (forecastQuery, history,
quantile; at most --max-forecast-series), its history on the fit grid (at most
20,160 points) and its latest forecast over the horizon a policy may need.
This registers series with the refresher as `tidescaler serve` does (same step,
horizon and fit), fits them all, and reads the process' resident memory (VmRSS)
after each batch: the slope between batches is the memory a series costs.
Each series is a generated tide (its own phase and level) over the history,
so every fit finds its daily season, as on real traffic.

    python benchmarks/bench_forecast_memory.py [--series 200] [--batches 3] [--history-days 14]
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaler.forecast.refresher import ForecastRefresher
from scaler.forecast_service import history_step_seconds, horizon_seconds

DAY = 86_400.0


def resident_mib() -> float:
    """This process' resident memory, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def tide_fetch(seed: int) -> Callable[[float, float, float], tuple[np.ndarray, np.ndarray]]:
    """A range query's answer for one generated series: a daily tide with noise."""
    rng = np.random.default_rng(seed)
    level, phase = 50.0 + 450.0 * rng.random(), DAY * rng.random()

    def fetch(start: float, end: float, step: float) -> tuple[np.ndarray, np.ndarray]:
        times = np.arange(start, end + step / 2, step)
        day = 0.5 - 0.5 * np.cos(2 * math.pi * (times - phase) / DAY)
        noise = np.random.default_rng(int(start) ^ seed).normal(1.0, 0.05, len(times))
        return times, level * (0.1 + 0.9 * day) * noise

    return fetch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=200, help="series per batch")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--history-days", type=float, default=14.0)
    parser.add_argument("--limit-mib", type=float, default=512.0, help="to compare with")
    args = parser.parse_args()

    history = args.history_days * DAY
    step = history_step_seconds(history)
    now = math.floor(time.time() / step) * step
    refresher = ForecastRefresher(
        refit_seconds=600.0, max_series=args.series * args.batches, clock=lambda: now
    )
    horizon = horizon_seconds(30.0, refresher.refit_seconds)  # serve's defaults
    gc.collect()
    readings = [(0, resident_mib())]
    print(
        f"history {args.history_days:g} d at {step:g} s ({history / step:.0f} points), "
        f"horizon {horizon / 3600:.1f} h; before any series: {readings[0][1]:.1f} MiB",
        flush=True,
    )
    for batch in range(args.batches):
        began = time.perf_counter()
        for i in range(batch * args.series, (batch + 1) * args.series):
            refresher.register(
                ("series", i),
                tide_fetch(i),
                history_seconds=history,
                step_seconds=step,
                quantile=0.95,
                horizon_seconds=horizon,
                backend="generated",
            )
        refresher.refresh_due()
        keys = refresher.keys()
        fitted = sum(refresher.latest(key) is not None for key in keys)
        gc.collect()
        readings.append((len(keys), resident_mib()))
        print(
            f"{readings[-1][0]:>6} series ({fitted} with a forecast): {readings[-1][1]:.1f} MiB, "
            f"batch fitted in {time.perf_counter() - began:.1f} s",
            flush=True,
        )
    refresher.close()
    # The first batch also pays for numpy's and the fit's one-off allocations: the
    # slope over the later batches is the cost of a series.
    (n0, m0), (n1, m1) = readings[1], readings[-1]
    per_series = (m1 - m0) / (n1 - n0) if n1 > n0 else (m1 - readings[0][1]) / n1
    base = readings[0][1]
    fits = max(0, int((args.limit_mib - base) / per_series)) if per_series > 0 else 0
    print(
        f"\nPer series: {per_series:.3f} MiB (slope over batches 2-{args.batches}). "
        f"A {args.limit_mib:g} MiB limit holds about {fits} series beside this process' "
        f"{base:.0f} MiB (the server's own baseline, caches and streams come on top)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
