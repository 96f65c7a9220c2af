"""Forecasts of workloads that are idle part of the time: a zero forecast means idle only
where the zeros were reliable (the band at a zero median has a calibration of its own)."""

from __future__ import annotations

import numpy as np
from synthetic_series import business_hours

from scaler.forecast import forecaster
from scaler.forecast.types import HEADROOM_MEMO_SIZE

DAY = 86_400.0
STEP = 60.0
START = 1_704_067_200.0  # 2024-01-01T00:00:00Z, a Monday


def fit_until(y: np.ndarray, hour_of_day: float, days: int = 7) -> forecaster.FittedForecaster:
    n = int((days * 24 + hour_of_day) * 60)
    return forecaster.fit(y[:n], STEP, quantile=0.95, now=START + n * STEP)


def test_an_idle_night_is_forecast_as_exactly_zero_median_and_band() -> None:
    y = business_hours(9, START)
    fitted = fit_until(y, 1.0)
    assert fitted.zero_band == 0.0
    fc = fitted.forecast(3 * 3600)  # 01:00 to 04:00, idle every night of the history
    assert np.all(fc.median == 0.0) and np.all(fc.upper == 0.0)


def test_the_band_rises_before_the_morning_demand_does() -> None:
    y = business_hours(9, START)
    fitted = fit_until(y, 4.5)
    fc = fitted.forecast(2 * 3600)
    first_band = int(np.argmax(fc.upper > 0.0))
    n = int((7 * 24 + 4.5) * 60)
    first_demand = int(np.argmax(y[n : n + 120] > 0.0))
    assert fc.upper[0] == 0.0 and fc.upper[first_band] > 0.0
    # The band turns positive no later than the demand: waking for it is then the
    # engine's lead time before it.
    assert 0 < first_band <= first_demand


def test_daytime_band_is_calibrated_on_daytime_errors_only() -> None:
    y = business_hours(9, START)
    fitted = fit_until(y, 10.0)
    fc = fitted.forecast(3600)
    n = int((7 * 24 + 10.0) * 60)
    actual = y[n : n + 60]
    # 5 % noise per minute: the band must sit above the median by more than the noise
    # alone would give if the idle nights' zero errors had diluted the daytime scores.
    assert np.all(fc.upper > fc.median * 1.04)
    assert float(np.mean(fc.upper >= actual)) >= 0.9


def test_zeros_that_are_not_reliable_keep_a_band() -> None:
    # Zero most of the time, with bursts at random times: a zero forecast is wrong about
    # one time in eight, so it must not claim idleness at the 95 % quantile.
    rng = np.random.default_rng(13)
    y = np.zeros(9 * 1440)
    for _ in range(8 * 9):
        at = int(rng.integers(0, len(y)))
        y[at : at + int(rng.integers(5, 41))] += rng.uniform(50.0, 600.0)
    fitted = forecaster.fit(y, STEP, quantile=0.95, now=START + len(y) * STEP)
    fc = fitted.forecast(3600)
    zero = fc.median == 0.0
    assert zero.any()
    assert np.all(fc.upper[zero] > 0.0)


def test_last_value_band_is_wider_than_the_forecast_band_on_noisy_tides() -> None:
    # Minute-to-minute noise of 30 % around a daily tide: the demand just observed is a
    # poor guide to the next minutes, the seasonal median a good one.
    rng = np.random.default_rng(7)
    t = START + STEP * np.arange(9 * 1440)
    tide = 300.0 + 200.0 * np.sin(2 * np.pi * (t % DAY) / DAY)
    y = tide * np.exp(rng.normal(0.0, 0.3, len(t)))
    fitted = forecaster.fit(y, STEP, quantile=0.95, now=START + len(y) * STEP)
    assert fitted.last_value_band is not None
    short = fitted.band_horizons <= 5
    assert np.all(fitted.last_value_band[short] > fitted.band_quantiles[short])
    fc = fitted.forecast(3600)
    assert fc.band_floor == fitted.band_floor
    headroom = fc.last_value_headroom(90.0)
    assert headroom is not None
    # 90 s lies between the first two calibrated horizons, one and two minutes.
    assert list(fitted.band_horizons[:2]) == [1, 2]
    one, two = fitted.last_value_band[:2]
    assert min(one, two) - 1e-9 <= headroom <= max(one, two) + 1e-9


def test_last_value_needs_no_band_within_a_small_part_of_a_coarse_step() -> None:
    hourly = forecaster.fit(
        business_hours(9, START)[: 9 * 1440].reshape(-1, 60).mean(axis=1),
        3600.0,
        quantile=0.95,
        now=START + 9 * DAY,
    ).forecast(6 * 3600)
    first = hourly.last_value_band[0]
    assert first[0] == 3600.0 and first[1] > 0.0
    # 90 s is 2.5 % of an hour: a boundary falls within it less often than 1 - 0.95.
    assert hourly.last_value_headroom(90.0) == 0.0
    # 10 minutes is 17 %: the one-hour band holds.
    assert hourly.last_value_headroom(600.0) == first[1]
    # The engine asks on every poll: each answer is worked out once per lead, and a
    # forecast remembers a bounded number of leads however many tenants send.
    for lead in np.linspace(60.0, DAY, 3 * HEADROOM_MEMO_SIZE).tolist():
        fresh = hourly._last_value_headroom(lead)
        assert hourly.last_value_headroom(lead) == fresh == hourly.last_value_headroom(lead)
    assert len(hourly._headroom) == HEADROOM_MEMO_SIZE
