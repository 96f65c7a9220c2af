"""Demand series for the simulator: trace CSV files and a seeded tide generator.

A `Traffic` is requests per second on a regular grid (`step_seconds`), the form
every other part of the simulator consumes. Traces are read from the
`timestamp,requests` CSV format (requests per interval, regular grid); the
generator draws diurnal and weekly tides with a chosen peak-to-valley ratio,
multiplicative noise and flash crowds from an explicit seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaler import traces
from scaler.traces import TraceError


@dataclass(frozen=True, eq=False)
class Traffic:
    """Requests per second, `rate_per_second[i]` over [start + i*step, start + (i+1)*step)."""

    start: float
    step_seconds: float
    rate_per_second: np.ndarray
    name: str = "traffic"

    @property
    def end(self) -> float:
        return self.start + self.step_seconds * len(self.rate_per_second)

    @property
    def duration_seconds(self) -> float:
        return self.step_seconds * len(self.rate_per_second)

    def scaled(self, factor: float) -> Traffic:
        return Traffic(self.start, self.step_seconds, self.rate_per_second * factor, self.name)

    def clipped(self, days: float | None) -> Traffic:
        """The first `days` of the series (all of it when None or longer)."""
        if days is None:
            return self
        n = min(len(self.rate_per_second), max(1, int(days * 86400 / self.step_seconds)))
        return Traffic(self.start, self.step_seconds, self.rate_per_second[:n], self.name)

    def on_grid(self, step_seconds: float) -> np.ndarray:
        """Rate per second on a finer (or equal) grid of `step_seconds`, held within each interval.

        A trace interval must be a whole multiple of the simulation step; a finer
        trace is summed into simulation steps first.
        """
        ratio = self.step_seconds / step_seconds
        if abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1:
            return np.repeat(self.rate_per_second, round(ratio))
        inverse = step_seconds / self.step_seconds
        if abs(inverse - round(inverse)) < 1e-9:
            k = round(inverse)
            n = len(self.rate_per_second) // k
            return np.asarray(self.rate_per_second[: n * k].reshape(n, k).mean(axis=1))
        raise TraceError(
            f"{self.name}: interval {self.step_seconds:g}s and simulation step {step_seconds:g}s: "
            "one must be a whole multiple of the other"
        )


def read_trace(path: str | Path) -> Traffic:
    """Read a `timestamp,requests` CSV (requests per interval, regular grid) as requests/s."""
    trace = traces.read_trace(path)
    rate = trace.values / trace.step_seconds
    return Traffic(float(trace.timestamps[0]), trace.step_seconds, rate, name=trace.stem)


def write_trace(traffic: Traffic, path: str | Path) -> None:
    """Write `traffic` in the trace CSV format (requests per interval, rounded)."""
    counts = np.rint(traffic.rate_per_second * traffic.step_seconds).astype(np.int64)
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        handle.write("timestamp,requests\n")
        for i, count in enumerate(counts):
            handle.write(f"{int(traffic.start + i * traffic.step_seconds)},{int(count)}\n")


@dataclass(frozen=True)
class TideSpec:
    """Parameters of a synthetic tide; `peak_rps` is the weekday diurnal peak before noise."""

    days: float = 14.0
    step_seconds: float = 60.0
    peak_rps: float = 200.0
    peak_to_valley: float = 10.0
    weekend_factor: float = 0.6  # weekend peak relative to a weekday peak
    noise: float = 0.05  # standard deviation of the multiplicative log-normal noise
    flash_crowds_per_week: float = 1.0
    flash_crowd_magnitude: float = 3.0  # peak multiplier of a flash crowd
    flash_crowd_minutes: float = 30.0  # total duration (fast rise, slower decay)
    peak_hour_utc: float = 14.0
    start: float = 1_704_067_200.0  # 2024-01-01T00:00:00Z, a Monday


def synthetic_tide(spec: TideSpec, seed: int = 0) -> Traffic:
    """Diurnal + weekly tide with noise and flash crowds, reproducible from `seed`.

    The daily shape is a raised cosine mapped so that the weekday minimum is
    peak / peak_to_valley exactly: demand varies on a log scale, as real tides
    do (long quiet night, broad day).
    """
    if not 1.0 <= spec.peak_to_valley <= 1000.0:
        raise ValueError(f"peak_to_valley={spec.peak_to_valley:g}: expected 1..1000")
    rng = np.random.default_rng(seed)
    n = int(spec.days * 86400 / spec.step_seconds)
    t = spec.start + spec.step_seconds * np.arange(n)
    hours = ((t % 86400) / 3600.0 - spec.peak_hour_utc) % 24.0
    # 1 at the peak hour, 0 twelve hours away.
    shape = 0.5 * (1.0 + np.cos(2.0 * np.pi * hours / 24.0))
    log_ratio = math.log(spec.peak_to_valley)
    rate = spec.peak_rps * np.exp(-log_ratio * (1.0 - shape))
    weekday = ((t // 86400).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    rate = np.where(weekday >= 5, rate * spec.weekend_factor, rate)
    if spec.noise > 0:
        rate = rate * np.exp(rng.normal(0.0, spec.noise, n) - spec.noise**2 / 2.0)
    expected = spec.flash_crowds_per_week * spec.days / 7.0
    for _ in range(int(rng.poisson(expected)) if expected > 0 else 0):
        at = rng.uniform(0, spec.days * 86400)
        rise = 0.2 * spec.flash_crowd_minutes * 60.0
        decay = 0.8 * spec.flash_crowd_minutes * 60.0
        dt = t - spec.start - at
        envelope = np.where(
            dt < 0,
            np.clip(1.0 + dt / rise, 0.0, 1.0),
            np.exp(-np.maximum(dt, 0.0) / (decay / 3.0)),
        )
        rate = rate * (1.0 + (spec.flash_crowd_magnitude - 1.0) * envelope)
    name = f"synthetic-pv{spec.peak_to_valley:g}"
    return Traffic(spec.start, spec.step_seconds, rate, name=name)
