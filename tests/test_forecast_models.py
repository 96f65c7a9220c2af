"""The shared face of every model, and what each model forecasts on known input."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_series import Tide, generate

from scaler.forecast import models
from scaler.forecast.models import Combination, Model, RecentLevel, SeasonalProfile

PERIOD = 48

EVERY_MODEL: list[Model] = [
    SeasonalProfile(PERIOD, name="seasonal_naive"),
    SeasonalProfile(PERIOD, level_window=6, name="level_naive"),
    SeasonalProfile(PERIOD, reducer="median", periods=5, name="median"),
    SeasonalProfile(
        PERIOD,
        reducer="median",
        periods=5,
        smooth_half_width=2,
        level_window=6,
        name="level_median",
    ),
    SeasonalProfile(
        PERIOD,
        reducer="smooth",
        periods=4,
        beta=0.4,
        smooth_half_width=1,
        level_window=6,
        name="level_smooth",
    ),
    SeasonalProfile(
        PERIOD,
        reducer="median",
        periods=5,
        smooth_half_width=3,
        level_window=13,
        level_half_life=3.5,
        name="decayed_level_median",
    ),
    RecentLevel(1),
    RecentLevel(6),
]
EVERY_MODEL.append(Combination((EVERY_MODEL[1], EVERY_MODEL[3], EVERY_MODEL[-1])))


def _series(seed: int = 0, days: int = 10) -> np.ndarray:
    tide = Tide(days=days, step_seconds=1800, valley=20, peak_to_valley=8, relative_noise=0.1)
    return generate(tide, np.random.default_rng(seed))


@pytest.mark.parametrize("model", EVERY_MODEL, ids=lambda m: m.name)
class TestModelContract:
    def test_fit_returns_self_and_predict_matches_stateless_forecast(self, model: Model) -> None:
        y = _series()
        assert model.fit(y) is model
        np.testing.assert_allclose(model.predict(100), model.forecast(y, 100))

    def test_forecast_has_the_asked_length_and_is_finite_and_non_negative(
        self, model: Model
    ) -> None:
        y = _series(1)
        y[::7] = np.nan
        for h in (1, 5, PERIOD, 3 * PERIOD + 1):
            out = model.forecast(y, h)
            assert out.shape == (h,)
            assert np.isfinite(out).all()
            assert (out >= 0).all()

    def test_rolling_agrees_with_refitting_at_every_origin(self, model: Model) -> None:
        y = _series(2)
        y[100:110] = np.nan
        origins = np.arange(6 * PERIOD, len(y) - 1, 7, dtype=np.int64)
        horizons = np.array(
            sorted({1, 2, 5, 13, min(PERIOD, model.max_rolling_horizon)}), dtype=np.int64
        )
        rolled = model.rolling(y, origins, horizons)
        for i, o in enumerate(origins):
            path = model.forecast(y[: o + 1], int(horizons.max()))
            for j, k in enumerate(horizons):
                if o + k < len(y):
                    assert rolled[i, j] == pytest.approx(path[k - 1], rel=1e-9, abs=1e-9)
                else:
                    assert np.isnan(rolled[i, j])

    def test_full_history_is_at_least_the_least_history(self, model: Model) -> None:
        assert model.full_history >= model.min_history

    def test_constant_series_gives_that_constant(self, model: Model) -> None:
        out = model.forecast(np.full(6 * PERIOD, 12.5), 2 * PERIOD)
        np.testing.assert_allclose(out, 12.5)

    def test_empty_history_of_missing_points_gives_zero(self, model: Model) -> None:
        out = model.forecast(np.full(3 * PERIOD, np.nan), 4)
        np.testing.assert_allclose(out, 0.0)


def test_seasonal_naive_repeats_the_last_period() -> None:
    y = np.arange(3 * PERIOD, dtype=float)
    out = models.seasonal_naive(y, PERIOD + 2, PERIOD)
    np.testing.assert_array_equal(out[:PERIOD], y[-PERIOD:])
    np.testing.assert_array_equal(out[PERIOD:], y[-PERIOD : -PERIOD + 2])


def test_seasonal_naive_bridges_a_gap_from_an_older_period() -> None:
    y = np.tile(np.arange(PERIOD, dtype=float), 3)
    y[-PERIOD : -PERIOD + 5] = np.nan
    np.testing.assert_array_equal(models.seasonal_naive(y, 5, PERIOD), np.arange(5.0))


def test_level_adjustment_follows_a_doubled_level() -> None:
    base = np.tile(10.0 + np.arange(PERIOD, dtype=float), 4)
    y = base.copy()
    y[-6:] *= 2.0  # the last level window runs at twice the usual demand
    plain = models.seasonal_naive(y, 3, PERIOD)
    adjusted = models.level_seasonal_naive(y, 3, PERIOD, level_window=6)
    np.testing.assert_allclose(adjusted, 2.0 * plain, rtol=0.05)


def test_seasonal_median_ignores_one_spiky_period() -> None:
    y = np.tile(np.full(PERIOD, 10.0), 5)
    y[-PERIOD:] = 100.0
    np.testing.assert_allclose(models.seasonal_median(y, PERIOD, PERIOD, periods=5), 10.0)


def test_running_median_keeps_a_step_sharp_where_the_mean_spreads_it() -> None:
    y = np.concatenate((np.full(20, 10.0), np.full(20, 100.0)))
    y[5] = 1000.0  # one spike
    median = models.moving_median(y, 3)
    mean = models.moving_average(y, 3)
    np.testing.assert_array_equal(median[:20], 10.0)  # the spike is gone, the edge kept
    np.testing.assert_array_equal(median[20:], 100.0)
    assert mean[19] > 30.0 and mean[20] < 80.0  # the mean blends both sides
    assert models.moving_median(y, 0) is y


def test_running_median_ignores_missing_points_and_cuts_the_window_at_the_ends() -> None:
    y = np.array([1.0, np.nan, 3.0, 4.0, np.nan])
    np.testing.assert_allclose(models.moving_median(y, 1), [1.0, 2.0, 3.5, 3.5, 4.0])
    assert np.isnan(models.moving_median(np.full(4, np.nan), 2)).all()


def test_recent_level_is_the_mean_of_the_window() -> None:
    y = np.array([1.0, 2.0, 3.0, np.nan, 5.0])
    np.testing.assert_allclose(models.recent_level(y, 2, window=3), [4.0, 4.0])
    np.testing.assert_allclose(models.recent_level(y, 1), [5.0])


def test_seasonal_smoothing_weights_recent_periods_more() -> None:
    y = np.concatenate([np.full(PERIOD, 0.0), np.full(PERIOD, 10.0)])
    out = models.seasonal_smoothing(y, 1, PERIOD, periods=2, beta=0.5)
    assert out[0] == pytest.approx(10.0 / 1.5)


def test_rolling_refuses_horizons_it_cannot_compute_exactly() -> None:
    model = SeasonalProfile(PERIOD, smooth_half_width=3)
    with pytest.raises(ValueError, match="max_rolling_horizon"):
        model.rolling(_series(), np.array([300]), np.array([PERIOD]))


def test_models_sharing_a_profile_through_the_cache_forecast_as_without_it() -> None:
    y = _series(3)
    y[200:210] = np.nan
    origins = np.arange(120, len(y) - 2, 5, dtype=np.int64)
    horizons = np.array([1, 3, 12, PERIOD], dtype=np.int64)
    sharing = [
        SeasonalProfile(PERIOD, level_window=12, name="long_level"),
        SeasonalProfile(PERIOD, name="plain"),
        SeasonalProfile(PERIOD, level_window=3, name="short_level"),
    ]
    assert len({m.profile_key for m in sharing}) == 1
    cache: dict[tuple[object, ...], tuple[int, np.ndarray]] = {}
    for model in sharing:
        np.testing.assert_allclose(
            model.rolling(y, origins, horizons, cache=cache),
            model.rolling(y, origins, horizons),
            rtol=1e-12,
        )
    assert len(cache) == 1


@pytest.mark.parametrize(
    ("width", "half_life"), [(1, 1.0), (7, 2.0), (13, 3.5), (64, 5.0), (90, 30.0)]
)
def test_decayed_window_sums_match_the_direct_sum(width: int, half_life: float) -> None:
    rng = np.random.default_rng(width)
    y = rng.random(120)
    y[::9] = np.nan
    x = np.where(np.isfinite(y), y, 0.0)
    ends = np.arange(len(y), dtype=np.int64)
    direct = [
        sum(0.5 ** (k / half_life) * x[e - k] for k in range(width) if e - k >= 0) for e in ends
    ]
    got = models.decayed_window_sums(y, ends, width, half_life)
    np.testing.assert_allclose(got, direct, rtol=1e-12, atol=1e-12)


def test_decayed_level_moves_less_for_an_old_spike_than_a_flat_window() -> None:
    base = np.tile(10.0 + np.arange(PERIOD, dtype=float), 4)
    y = base.copy()
    y[-20] *= 8.0  # one spike early in the level window
    flat = SeasonalProfile(PERIOD, level_window=24).forecast(y, 1)[0]
    decayed = SeasonalProfile(PERIOD, level_window=24, level_half_life=4.0).forecast(y, 1)[0]
    plain = models.seasonal_naive(y, 1, PERIOD)[0]
    assert abs(decayed - plain) < 0.5 * abs(flat - plain)


def test_decayed_level_follows_a_recent_doubling_faster_than_a_flat_window() -> None:
    base = np.tile(10.0 + np.arange(PERIOD, dtype=float), 4)
    y = base.copy()
    y[-4:] *= 2.0
    plain = models.seasonal_naive(y, 1, PERIOD)[0]
    flat = SeasonalProfile(PERIOD, level_window=24).forecast(y, 1)[0]
    decayed = SeasonalProfile(PERIOD, level_window=24, level_half_life=4.0).forecast(y, 1)[0]
    assert plain < flat < decayed < 2.0 * plain


def test_combination_is_the_mean_of_its_members() -> None:
    y = _series(3)
    a = SeasonalProfile(PERIOD, name="a")
    b = RecentLevel(6)
    combined = Combination((a, b)).forecast(y, 30)
    np.testing.assert_allclose(combined, (a.forecast(y, 30) + b.forecast(y, 30)) / 2)


def test_combination_ignores_a_member_with_nothing_to_say() -> None:
    paths = [np.array([1.0, np.nan, np.nan]), np.array([3.0, 5.0, np.nan])]
    out = models.combine(paths)
    np.testing.assert_allclose(out[:2], [2.0, 5.0])
    assert np.isnan(out[2])


def test_a_median_is_warm_once_it_has_all_its_periods() -> None:
    median = SeasonalProfile(PERIOD, reducer="median", periods=5, level_window=6)
    assert median.full_history == 5 * PERIOD + 6
    # Seasonal naive uses older periods only to bridge gaps.
    assert SeasonalProfile(PERIOD, level_window=6).full_history == PERIOD + 6
    assert Combination((median, RecentLevel(12))).full_history == 5 * PERIOD + 6
