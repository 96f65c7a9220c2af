"""Periodicity detection on series whose periods are known."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_series import Tide, generate

from scaler.forecast import periodicity
from scaler.forecast.periodicity import DAY_SECONDS, WEEK_SECONDS


@pytest.mark.parametrize(
    ("tide", "expected"),
    [
        pytest.param(
            Tide(days=8, step_seconds=60, peak_to_valley=10), (DAY_SECONDS,), id="1min-8d"
        ),
        pytest.param(
            Tide(days=4, step_seconds=300, peak_to_valley=100), (DAY_SECONDS,), id="5min-4d"
        ),
        pytest.param(Tide(days=14, step_seconds=3600, valley=100), (DAY_SECONDS,), id="1h-14d"),
        pytest.param(
            Tide(days=21, step_seconds=300, weekend_factor=0.3),
            (DAY_SECONDS, WEEK_SECONDS),
            id="weekend-dip-21d",
        ),
    ],
)
def test_daily_and_weekly_periods_are_found(tide: Tide, expected: tuple[float, ...]) -> None:
    found = periodicity.detect(generate(tide, np.random.default_rng(3)), tide.step_seconds)
    assert found.periods_seconds == expected
    assert found.daily_acf is not None and found.daily_acf > 0.5


@pytest.mark.parametrize("days", [4.5, 5.5, 6.25, 9.75])
def test_a_history_of_part_days_still_shows_the_daily_period(days: float) -> None:
    # Over 5.5 days a daily frequency falls between two periodogram bins (26.4 h and 22 h):
    # the periodogram is taken over whole days. A backtest's origins grow the history by
    # its stride, so most are part days.
    t = 60.0 * np.arange(int(days * 1440))
    tide = 100.0 + 80.0 * np.cos(2 * np.pi * t / DAY_SECONDS)
    found = periodicity.detect(tide, 60.0)
    assert found.label == "daily", found.reason


def test_pure_daily_tide_is_not_reported_as_weekly() -> None:
    tide = Tide(days=21, step_seconds=300)
    found = periodicity.detect(generate(tide, np.random.default_rng(4)), tide.step_seconds)
    assert found.label == "daily"
    assert "weekly autocorrelation" in found.reason


@pytest.mark.parametrize(
    ("values", "reason_part"),
    [
        pytest.param(np.random.default_rng(5).normal(50, 5, 20160), "below", id="white-noise"),
        pytest.param(np.full(20160, 7.0), "constant", id="constant"),
        pytest.param(
            np.random.default_rng(6).poisson(30, 600).astype(float), "too short", id="10h"
        ),
    ],
)
def test_no_period_is_reported_with_the_evidence(values: np.ndarray, reason_part: str) -> None:
    found = periodicity.detect(values, 60.0)
    assert found.label == "none"
    assert found.periods_seconds == ()
    assert reason_part in found.reason


@pytest.mark.parametrize("seed", range(5))
def test_one_glitch_a_thousand_times_the_peak_does_not_hide_the_period(seed: int) -> None:
    # A counter reset read as a rate: one sample far above anything real. Without the
    # clip it carries nearly all the variance and no period is found.
    tide = Tide(days=7, step_seconds=60, peak_to_valley=10)
    y = generate(tide, np.random.default_rng(seed))
    y[np.random.default_rng(seed + 100).integers(len(y))] = 1000.0 * y.max()
    found = periodicity.detect(y, 60.0)
    assert found.label == "daily", found.reason


def test_real_spikes_are_not_clipped_as_glitches() -> None:
    # Two tall spikes a day at random hours over a flat level: they are the series (most
    # of its variance in many hours), so they stay, and no daily period is made of them.
    rng = np.random.default_rng(11)
    y = np.full(14 * 24, 100.0)
    y[rng.choice(len(y), 28, replace=False)] = 2000.0
    found = periodicity.detect(y, 3600.0)
    assert found.label == "none", found.reason
    assert found.daily_acf is not None and found.daily_acf < 0.3


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("grows", [True, False], ids=["growth", "decline"])
def test_a_plain_trend_is_not_a_daily_period(seed: int, grows: bool) -> None:
    # A service growing (or draining) over the week with no daily pattern correlates with
    # itself at a day's lag and leaks into the day's harmonics in the periodogram.
    rng = np.random.default_rng(seed)
    n = 7 * 1440
    ramp = np.arange(n) / n if grows else 1.0 - np.arange(n) / n
    found = periodicity.detect(rng.poisson(50 + 150 * ramp).astype(float), 60.0)
    assert found.label == "none", found.reason
    assert "trend" in found.reason


def test_a_tide_on_a_trend_keeps_its_daily_period() -> None:
    tide = Tide(days=10, step_seconds=60, peak_to_valley=10)
    y = generate(tide, np.random.default_rng(12))
    y = y * (1.0 + 2.0 * np.arange(len(y)) / len(y))  # tripling over the window
    assert periodicity.detect(y, 60.0).daily


def test_a_straight_line_has_no_period() -> None:
    found = periodicity.detect(np.linspace(10.0, 500.0, 7 * 1440), 60.0)
    assert found.label == "none"


def test_missing_points_do_not_hide_the_period() -> None:
    tide = Tide(days=7, step_seconds=60)
    y = generate(tide, np.random.default_rng(7))
    y[np.random.default_rng(8).random(len(y)) < 0.2] = np.nan
    assert periodicity.detect(y, 60.0).daily


def test_autocorrelation_of_a_sine_peaks_at_its_period() -> None:
    x = np.sin(2 * np.pi * np.arange(1000) / 50)
    acf = periodicity.autocorrelation(x)
    assert acf[0] == pytest.approx(1.0)
    assert acf[50] == pytest.approx(1.0, abs=0.02)
    assert acf[25] == pytest.approx(-1.0, abs=0.02)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("unit", [1e290, 1e300, 1e307])
def test_values_near_the_float_limit_give_the_verdict_of_the_same_shape(unit: float) -> None:
    # Their squares overflowed (numpy warnings in the logs) and the period went unseen.
    tide = Tide(days=7)
    shape = generate(tide, np.random.default_rng(3))
    shape = shape / np.max(shape)
    small = periodicity.detect(shape, tide.step_seconds)
    huge = periodicity.detect(shape * unit, tide.step_seconds)
    assert huge.periods_seconds == small.periods_seconds
    assert DAY_SECONDS in huge.periods_seconds
