"""The forecaster on synthetic series with known period, level and noise."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from synthetic_series import Tide, expected_demand, generate

from scaler.forecast import backtest, forecaster
from scaler.forecast.forecaster import InsufficientHistory
from scaler.traces import Trace

DAY = 86_400.0


def _fit(y: np.ndarray, step: float, quantile: float = 0.95) -> forecaster.FittedForecaster:
    return forecaster.fit(y, step, quantile=quantile, now=1_000_000.0)


def test_tidal_series_gets_a_seasonal_model_and_a_close_day_ahead_forecast() -> None:
    tide = Tide(days=15, step_seconds=300, valley=40, peak_to_valley=10)
    truth = expected_demand(Tide(days=16, step_seconds=300, valley=40, peak_to_valley=10))
    y = generate(tide, np.random.default_rng(11))
    fitted = _fit(y, 300.0)
    fc = fitted.forecast(DAY)
    assert fc.periodicity.startswith("daily")
    assert fc.note == ""
    assert fc.start == 1_000_000.0 and fc.step_seconds == 300.0 and len(fc.median) == 288
    future = truth[len(y) :]
    # Poisson noise on 40..400 per step is 5 % at the peak; the profile
    # averages several days, so the median error to the truth is well below it.
    rel = np.abs(fc.median - future) / future
    assert float(np.mean(rel)) < 0.08
    assert float(np.mean(fc.upper >= future)) > 0.9


def test_a_step_at_the_same_minute_every_day_is_forecast_sharp() -> None:
    # Ten days at one-minute steps: 40 until 09:00, 400 from 09:02 (a two-minute
    # jump), 5 % noise. Averaging neighbouring minutes would spread the jump over
    # the smoothing window; the forecast must have it at the minute it comes.
    rng = np.random.default_rng(21)
    minute = np.arange(10 * 1440) % 1440
    level = 40.0 + 360.0 * np.clip((minute - 540) / 2.0, 0.0, 1.0)
    y = level * np.exp(rng.normal(0.0, 0.05, len(level)))
    now_index = 9 * 1440 + 520  # 08:40 on the last day
    fc = forecaster.fit(y[:now_index], 60.0, quantile=0.95, now=0.0).forecast(3600)
    ahead = fc.median[:40]  # 08:40 .. 09:19
    assert np.all(ahead[:18] < 60.0)  # until 08:58: closed
    assert np.all(ahead[22:] > 340.0)  # from 09:02: open
    assert ahead[22] / ahead[17] > 6.0


def test_series_without_period_falls_back_to_recent_level_and_says_so() -> None:
    y = np.random.default_rng(12).normal(100.0, 10.0, 5000).clip(0)
    fc = _fit(y, 60.0).forecast(3600)
    assert fc.periodicity == "none"
    assert "recent-level" in fc.note and "no periodicity" in fc.note
    assert fc.model in ("last_value", "recent_mean")
    assert np.allclose(fc.median, fc.median[0])
    assert fc.median[0] == pytest.approx(100.0, rel=0.1)


def test_too_little_history_is_an_error_that_says_how_much_is_needed() -> None:
    with pytest.raises(InsufficientHistory, match="need 24 points"):
        _fit(np.ones(10), 60.0)


def test_fine_steps_are_averaged_to_one_minute_keeping_the_unit() -> None:
    y = np.full(4 * 24 * 60 * 2, 3.0)  # two days at 15 s, 3 per second
    fc = _fit(y, 15.0).forecast(600)
    assert fc.step_seconds == 60.0 and len(fc.median) == 10
    np.testing.assert_allclose(fc.median, 3.0)


def test_outage_does_not_poison_the_seasonal_profile() -> None:
    tide = Tide(days=10, step_seconds=300, valley=50, peak_to_valley=10)
    y = generate(tide, np.random.default_rng(13))
    day = 288
    clean = _fit(y, 300.0).forecast(DAY).median
    # An hour-long outage at the same time of day on three of the last days.
    for d in (2, 4, 6):
        start = len(y) - d * day + 100
        y[start : start + 12] = 0.0
    out = _fit(y, 300.0).forecast(DAY).median
    window = slice(100, 112)
    assert np.min(out[window]) > 0.8 * np.min(clean[window])


def test_level_shift_is_followed_within_the_day() -> None:
    tide = Tide(
        days=12,
        step_seconds=300,
        valley=30,
        peak_to_valley=5,
        level_shift_day=11.0,
        level_shift_factor=2.0,
    )
    y = generate(tide, np.random.default_rng(14))
    truth = expected_demand(
        Tide(
            days=12.05,
            step_seconds=300,
            valley=30,
            peak_to_valley=5,
            level_shift_day=11.0,
            level_shift_factor=2.0,
        )
    )[len(y) :]
    fc = _fit(y, 300.0).forecast(len(truth) * 300.0)
    assert float(np.mean(fc.median / truth)) == pytest.approx(1.0, abs=0.2)


def test_same_history_gives_the_same_forecast() -> None:
    y = generate(Tide(days=9, step_seconds=120, relative_noise=0.2), np.random.default_rng(15))
    a = _fit(y, 120.0).forecast(DAY)
    b = _fit(y.copy(), 120.0).forecast(DAY)
    np.testing.assert_array_equal(a.median, b.median)
    np.testing.assert_array_equal(a.upper, b.upper)
    assert a.model == b.model


def test_weekly_models_join_after_a_day_of_origins_past_their_own_warm_up() -> None:
    step = 3600.0
    tide = Tide(days=9, step_seconds=step, valley=50, peak_to_valley=5, weekend_factor=0.5)
    y = generate(tide, np.random.default_rng(17))
    week = 7 * 24
    level = 3  # the shortest level window, in points
    just_short = _fit(y[: week + 23], step)
    plain_joined = _fit(y[: week + 24], step)
    all_joined = _fit(y[: week + level + 24], step)
    assert not any(name.endswith("_week") for name in just_short.scores)
    assert "seasonal_naive_week" in plain_joined.scores
    assert "level_naive_week" not in plain_joined.scores
    assert {"seasonal_naive_week", "level_naive_week"} <= set(all_joined.scores)


def test_noisy_series_has_a_slow_decayed_level_candidate() -> None:
    tide = Tide(days=9, step_seconds=300, valley=20, peak_to_valley=5, relative_noise=0.8)
    fitted = _fit(generate(tide, np.random.default_rng(18)), 300.0)
    slow = [m for m in fitted.models if m.name == "long_level_wide_median_day"]
    assert len(slow) == 1
    assert getattr(slow[0], "level_half_life", 0.0) > 0
    assert math.isfinite(fitted.scores["long_level_wide_median_day"][-1])


def test_fourteen_days_of_minutes_fit_in_milliseconds() -> None:
    y = generate(Tide(days=14, step_seconds=60, weekend_factor=0.6), np.random.default_rng(16))
    _fit(y, 60.0).forecast(DAY)  # warm up imports and caches
    best = min(_timed(lambda: _fit(y, 60.0).forecast(DAY)) for _ in range(3))
    # The benchmark holds the 50 ms target; this bound only catches a
    # regression by an order of magnitude on a busy test machine.
    assert best < 0.25


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


@pytest.mark.parametrize("quantile", [0.9, 0.95])
def test_band_coverage_is_within_three_points_of_nominal_on_long_series(quantile: float) -> None:
    hits: list[np.ndarray] = []
    for seed, tide in enumerate(
        [
            Tide(days=24, step_seconds=900, valley=20, peak_to_valley=10, relative_noise=0.1),
            Tide(days=24, step_seconds=900, valley=2, peak_to_valley=100, weekend_factor=0.7),
        ]
    ):
        y = generate(tide, np.random.default_rng(100 + seed))
        trace = Trace(np.arange(len(y), dtype=np.float64) * 900.0, y, 900.0, f"synthetic-{seed}")
        result = backtest.run(
            trace,
            [3600.0, 6 * 3600.0],
            quantile=quantile,
            stride_seconds=3600.0,
            min_history_seconds=8 * DAY,
        )
        for h in result.horizons_seconds:
            fc = result.forecasts[(h, backtest.TIDESCALER)]
            assert fc.upper is not None
            idx = np.round((fc.origins + h) / 900.0).astype(int)
            hits.append(y[idx] <= fc.upper)
    coverage = float(np.mean(np.concatenate(hits)))
    assert abs(coverage - quantile) <= 0.03


def test_conformal_quantile_takes_the_finite_sample_rank_and_refuses_too_few_scores() -> None:
    scores = np.arange(1.0, 40.0)  # 39 scores: rank ceil(40 * 0.95) = 38
    assert forecaster.conformal_quantile(scores, 0.95) == 38.0
    # Equal weights give the same answer as no weights.
    assert forecaster.conformal_quantile(scores, 0.95, np.ones(39)) == 38.0
    # Under q / (1 - q) = 19 scores no finite band has the guarantee.
    assert forecaster.conformal_quantile(np.arange(18.0), 0.95) == np.inf
    assert forecaster.conformal_quantile(np.arange(19.0), 0.95) == 18.0
    # NaN (origins a model could not serve) are not scores.
    assert forecaster.conformal_quantile(np.append(scores, np.nan), 0.95) == 38.0


def test_recent_scores_weigh_more_when_the_band_decays_with_age() -> None:
    scores = np.concatenate([np.full(100, 1.0), np.full(100, 0.1)])  # old wide, recent narrow
    weights = 0.5 ** (np.arange(200)[::-1] / 20.0)
    assert forecaster.conformal_quantile(scores, 0.9) == 1.0
    assert forecaster.conformal_quantile(scores, 0.9, weights) == 0.1


def test_horizons_without_enough_backtest_errors_keep_the_widest_band_below_them() -> None:
    inf = np.inf
    scores = np.array([[0.1, 0.9, 0.2, 0.7, 0.3, 0.8]])  # beside the point while one is calibrated
    filled = forecaster._fill_uncalibrated(np.array([0.2, 0.5, 0.3, inf, 0.4, inf]), scores)
    np.testing.assert_array_equal(filled, [0.2, 0.5, 0.3, 0.5, 0.4, 0.5])
    # A calibrated band below zero (the model over-predicted at that horizon on nearly
    # every origin, as on weekdays before a Saturday) would put the band on the median:
    # the widest band of the shorter horizons stands in.
    filled = forecaster._fill_uncalibrated(np.array([0.2, -0.1, 0.3, -0.5, 0.25]), scores[:, :5])
    np.testing.assert_array_equal(filled, [0.2, 0.2, 0.3, 0.3, 0.25])
    # No calibrated horizon at all (too few errors for the quantile): each horizon gets the
    # largest error it saw, one without any the widest below it, never a negative band.
    scores = np.array([[0.1, -0.4, np.nan], [0.3, -0.2, np.nan]])
    filled = forecaster._fill_uncalibrated(np.full(3, inf), scores)
    np.testing.assert_array_equal(filled, [0.3, 0.0, 0.3])
    # No errors at all: the band is the forecast itself.
    np.testing.assert_array_equal(
        forecaster._fill_uncalibrated(np.full(3, inf), np.empty((0, 3))), np.zeros(3)
    )


def _daily(days: float, step: float) -> np.ndarray:
    minutes = np.arange(int(days * DAY / step)) * step / 60.0
    level = 100.0 + 80.0 * np.sin(2 * np.pi * minutes / 1440.0)
    return np.random.default_rng(5).poisson(level).astype(np.float64)


def test_a_quantile_too_high_for_its_errors_gets_the_widest_band_they_support() -> None:
    # Two days at one minute leave fewer backtest errors at each horizon than a 0.999
    # quantile needs: no horizon is calibrated. The band must still be at least the
    # 0.95 one everywhere, not a band of zero.
    y = _daily(2, 60.0)
    usual = _fit(y, 60.0, 0.95).forecast(DAY)
    strict = _fit(y, 60.0, 0.999).forecast(DAY)
    np.testing.assert_array_equal(strict.median, usual.median)
    assert np.all(strict.upper >= usual.upper)
    assert np.all(strict.upper > strict.median)


def test_a_short_series_on_the_whole_history_grid_is_too_little_history() -> None:
    # 25 minutes of data at the end of a week's grid (what a refresher hands over for a
    # query that just appeared): 25 points, but far under the 3 h a forecast needs.
    y = np.full(7 * 1440, np.nan)
    y[-25:] = 100.0
    with pytest.raises(InsufficientHistory, match=r"25 points over 0\.42 h; need 24 points"):
        _fit(y, 60.0)
    # A minute short of the 3 h minimum says so, not "3.0 h; need at least 3 h".
    y[-179:] = 100.0
    with pytest.raises(InsufficientHistory, match=r"179 points over 2\.98 h; need"):
        _fit(y, 60.0)
    y[-200:] = 100.0  # 3.3 h: enough
    assert _fit(y, 60.0).forecast(3600).median[0] == pytest.approx(100.0)


def test_a_series_that_stopped_more_than_a_day_ago_gets_no_forecast() -> None:
    # A query that stopped matching: the week's grid ends in missing points.
    y = _daily(7, 60.0)
    y[-25 * 60 :] = np.nan
    with pytest.raises(InsufficientHistory, match=r"no data for the last 25\.0 h"):
        _fit(y, 60.0)
    y = _daily(7, 60.0)
    y[-23 * 60 :] = np.nan  # a quiet night without series still has its forecast
    assert _fit(y, 60.0).forecast(DAY).periodicity.startswith("daily")


@pytest.mark.parametrize("quantile", [0.9, 0.95])
def test_band_coverage_is_within_three_points_at_the_lead_time_and_a_day(quantile: float) -> None:
    tide = Tide(
        days=22, step_seconds=300, valley=20, peak_to_valley=10, relative_noise=0.1, outages=3
    )
    y = generate(tide, np.random.default_rng(200))
    trace = Trace(np.arange(len(y), dtype=np.float64) * 300.0, y, 300.0, "lead")
    result = backtest.run(
        trace,
        [600.0, DAY],
        quantile=quantile,
        # Hourly origins: with a few hundred of them the coverage of a
        # calibrated band is within three points by more than its noise.
        stride_seconds=3600.0,
        min_history_seconds=8 * DAY,
    )
    for h in result.horizons_seconds:
        fc = result.forecasts[(h, backtest.TIDESCALER)]
        assert fc.upper is not None
        idx = np.round((fc.origins + h) / 300.0).astype(int)
        coverage = float(np.mean(y[idx] <= fc.upper))
        assert abs(coverage - quantile) <= 0.03, (h, coverage)


# ------------------------------------------------------------- properties

series = arrays(
    np.float64,
    st.integers(min_value=200, max_value=800),
    elements=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
)


@settings(max_examples=40, deadline=None)
@given(
    y=series,
    quantile=st.floats(min_value=0.5, max_value=0.99),
    step=st.sampled_from([60.0, 300.0, 900.0]),
)
def test_band_is_above_median_and_nothing_is_negative(
    y: np.ndarray, quantile: float, step: float
) -> None:
    fc = forecaster.fit(y, step, quantile=quantile, now=0.0, settings=_short).forecast(6 * 3600)
    assert np.isfinite(fc.median).all() and np.isfinite(fc.upper).all()
    assert (fc.median >= 0).all()
    assert (fc.upper >= fc.median).all()


@settings(max_examples=25, deadline=None)
@given(level=st.floats(min_value=0.0, max_value=1e5), n=st.integers(min_value=200, max_value=3000))
def test_constant_series_gives_a_constant_forecast(level: float, n: int) -> None:
    fc = forecaster.fit(np.full(n, level), 300.0, quantile=0.95, now=0.0, settings=_short)
    out = fc.forecast(DAY)
    np.testing.assert_allclose(out.median, level, rtol=1e-9)
    np.testing.assert_allclose(out.upper, out.median, rtol=1e-9, atol=1e-9 * max(level, 1.0) + 1e-6)


@settings(max_examples=25, deadline=None)
@given(
    y=series,
    holes=st.lists(st.integers(min_value=0, max_value=799), max_size=100),
)
def test_missing_points_never_break_the_forecast(y: np.ndarray, holes: list[int]) -> None:
    y = y.copy()
    y[[h for h in holes if h < len(y)]] = np.nan
    try:
        fitted = forecaster.fit(y, 300.0, quantile=0.95, now=0.0, settings=_short)
    except InsufficientHistory:
        return
    fc = fitted.forecast(3600)
    assert np.isfinite(fc.upper).all() and (fc.upper >= fc.median).all() and (fc.median >= 0).all()


_short = forecaster.ForecasterSettings(min_history_seconds=3600.0)


def test_warm_up_errors_do_not_widen_the_day_ahead_band_once_there_are_enough_others() -> None:
    # In the second week of a series with weekends, a day-ahead band
    # calibrated on every backtest error also counts those of daily medians
    # over fewer days than they will use: it covered 98-100 % here.
    tide = Tide(days=17, step_seconds=300, valley=20, peak_to_valley=10, weekend_factor=0.6)
    y = generate(tide, np.random.default_rng(400))
    trace = Trace(np.arange(len(y), dtype=np.float64) * 300.0, y, 300.0, "weekends")
    coverage = {}
    for on in (True, False):
        settings = forecaster.ForecasterSettings(calibrate_on_full_history=on)
        result = backtest.run(
            trace,
            [DAY],
            quantile=0.95,
            stride_seconds=3600.0,
            min_history_seconds=8 * DAY,
            settings=settings,
        )
        fc = result.forecasts[(DAY, backtest.TIDESCALER)]
        assert fc.upper is not None
        idx = np.round((fc.origins + DAY) / 300.0).astype(int)
        ok = idx < len(y)
        coverage[on] = float(np.mean(y[idx[ok]] <= fc.upper[ok]))
    assert abs(coverage[True] - 0.95) <= 0.03, coverage
    assert coverage[False] > 0.98, coverage


def test_median_noise_measures_the_scatter_and_ignores_the_curve_s_bends() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(2000, dtype=float)
    # A tide with a ramp's corners: flat, a steep climb, flat again.
    curve = np.interp(t, [0, 600, 700, 2000], [40.0, 40.0, 400.0, 400.0])
    assert forecaster.median_noise(curve) == pytest.approx(0.0, abs=1e-9)
    noisy = curve + rng.normal(0.0, 3.0, len(t))
    assert forecaster.median_noise(noisy) == pytest.approx(3.0, rel=0.1)
    assert forecaster.median_noise(noisy[:5]) == 0.0  # too few points to tell


def test_median_noise_is_the_same_whatever_horizon_is_asked_for() -> None:
    # The service asks a day ahead, the simulator a refit interval: the rise they count
    # must clear the same noise.
    tide = Tide(days=15, step_seconds=60, valley=40, peak_to_valley=10)
    fitted = _fit(generate(tide, np.random.default_rng(3)), 60.0)
    short, day = fitted.forecast(600.0), fitted.forecast(DAY)
    assert short.median_noise == day.median_noise > 0.0
    assert np.array_equal(short.median, day.median[: len(short.median)])
    assert len(short.median) == 10
