"""Synthetic tidal series with known shape for the forecaster's tests and benchmark.

A daily tide between a valley and a peak (their ratio is the peak-to-valley
ratio), an optional weekend dip, counting noise (Poisson on the expected
count per interval) and/or multiplicative noise, flash crowds, outages (runs
of zeros) and level shifts. All randomness comes from the Generator passed
in, so a seed reproduces a series exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaler.forecast.models import FloatArray
from scaler.forecast.periodicity import DAY_SECONDS


@dataclass(frozen=True)
class Tide:
    """Shape of a synthetic series; levels are expected counts per interval."""

    days: float = 21.0
    step_seconds: float = 60.0
    valley: float = 10.0
    peak_to_valley: float = 10.0
    peak_hour: float = 15.0
    weekend_factor: float = 1.0  # Saturday and Sunday are scaled by this
    poisson: bool = True
    relative_noise: float = 0.0  # sigma of log-normal multiplicative noise
    flash_crowds: int = 0  # count over the whole series
    flash_factor: float = 4.0
    outages: int = 0  # count of zero runs of 10 to 60 minutes
    level_shift_day: float | None = None
    level_shift_factor: float = 1.0


def expected_demand(tide: Tide) -> FloatArray:
    """The noiseless tide, expected count per interval."""
    n = round(tide.days * DAY_SECONDS / tide.step_seconds)
    t = np.arange(n) * tide.step_seconds
    phase = (t / DAY_SECONDS - tide.peak_hour / 24.0) * 2.0 * np.pi
    # (1 + cos)/2 squared: a peak narrower than the valley, like office hours.
    shape = ((1.0 + np.cos(phase)) / 2.0) ** 2
    level = tide.valley * (1.0 + (tide.peak_to_valley - 1.0) * shape)
    weekday = (t // DAY_SECONDS).astype(np.int64) % 7
    level = np.where(weekday >= 5, level * tide.weekend_factor, level)
    if tide.level_shift_day is not None:
        level = np.where(
            t >= tide.level_shift_day * DAY_SECONDS, level * tide.level_shift_factor, level
        )
    out: FloatArray = level
    return out


def generate(tide: Tide, rng: np.random.Generator) -> FloatArray:
    """One noisy realisation of `tide`."""
    level = expected_demand(tide)
    n = len(level)
    per_step = 60.0 / tide.step_seconds
    for _ in range(tide.flash_crowds):
        start = int(rng.integers(0, n))
        length = max(1, round(rng.uniform(10.0, 60.0) * per_step))
        decay = np.exp(-np.arange(length) / (length / 3.0))
        stop = min(n, start + length)
        level[start:stop] *= 1.0 + (tide.flash_factor - 1.0) * decay[: stop - start]
    if tide.relative_noise > 0:
        sigma = tide.relative_noise
        level = level * rng.lognormal(-0.5 * sigma * sigma, sigma, n)
    values = rng.poisson(level).astype(np.float64) if tide.poisson else level
    for _ in range(tide.outages):
        start = int(rng.integers(0, n))
        length = max(1, round(rng.uniform(10.0, 60.0) * per_step))
        values[start : start + length] = 0.0
    out: FloatArray = values
    return out


def business_hours(days: int, start: float, seed: int = 3) -> FloatArray:
    """Requests/s per minute from 06:00 to 22:00 UTC (peak 800 at 14:00), exactly 0 at night.

    `start` is a UTC midnight; 5 % multiplicative noise.
    """
    rng = np.random.default_rng(seed)
    t = start + 60.0 * np.arange(days * 1440)
    hours = ((t % DAY_SECONDS) / 3600.0 - 14.0 + 12.0) % 24.0 - 12.0
    shape = np.where(np.abs(hours) < 8.0, 0.5 * (1.0 + np.cos(2.0 * np.pi * hours / 16.0)), 0.0)
    rate = 800.0 * shape**0.7 * np.exp(rng.normal(0.0, 0.05, len(t)))
    out: FloatArray = np.where(shape > 0.003, rate, 0.0)
    return out
