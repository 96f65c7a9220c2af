"""Cheap forecasting models that share one face.

Every model takes its settings in the constructor, learns with `fit(y)`,
forecasts with `predict(h)` and also offers a stateless `forecast(y, h)`.
Steps are points of the series' own grid; `y` may hold NaN for missing
points. Besides that face, each model has `rolling(y, origins, horizons)`:
the forecasts it would have made from every origin, computed at once with
array kernels instead of one refit per origin. That is what makes choosing a
model by backtest and calibrating its band affordable on every refit; the
contract test checks it agrees with refitting at each origin.

The seasonal models are all "same phase of past periods, reduced, times a
recent level factor": seasonal naive (most recent period), robust median of
past periods, and exponential smoothing across periods (Holt-Winters' seasonal
update without a trend). Neighbouring phases are averaged first on fine
steps (`smooth_half_width`), by a running mean or, for the median models, a
running median, which keeps a step that comes at the same minute every period
(a market opening) as sharp as it is. The level factor weighs its window equally, or
with exponentially decaying weights (`level_half_life`): demand over the
profile smoothed like the level of MSTL's deseasonalised series, so that on
a noisy series a spike moves it little. `RecentLevel` is the model for
series without a period.
"""

from __future__ import annotations

from typing import Literal, Protocol, Self

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

Reducer = Literal["naive", "median", "smooth"]

# Level factors outside this range are more often an outage or a spike in
# the level window than a real change of level.
LEVEL_FACTOR_MIN = 0.25
LEVEL_FACTOR_MAX = 4.0
# Shrinks the level factor towards 1 when the level window holds little
# demand, where a ratio of two small sums is mostly noise.
LEVEL_SHRINK = 0.05


class Model(Protocol):
    """The face every model shares."""

    name: str

    @property
    def min_history(self) -> int:
        """Fewest points `fit` needs."""
        ...

    @property
    def full_history(self) -> int:
        """Points after which more history no longer adds to what the forecast is made of.

        Before that the model is warming up (a median over fewer periods
        than it will use), and its errors overstate the errors to come.
        """
        ...

    @property
    def max_rolling_horizon(self) -> int:
        """Largest horizon (in steps) for which `rolling` is exact."""
        ...

    def fit(self, y: FloatArray) -> Self: ...

    def predict(self, h: int) -> FloatArray: ...

    def forecast(self, y: FloatArray, h: int) -> FloatArray: ...

    def rolling(self, y: FloatArray, origins: IntArray, horizons: IntArray) -> FloatArray: ...


# ----------------------------------------------------------------- kernels


def moving_average(y: FloatArray, half_width: int) -> FloatArray:
    """Centred NaN-aware moving average, the window cut at both ends."""
    if half_width <= 0:
        return y
    valid = np.isfinite(y)
    csum = np.concatenate(([0.0], np.cumsum(np.where(valid, y, 0.0))))
    ccount = np.concatenate(([0], np.cumsum(valid)))
    idx = np.arange(len(y))
    lo = np.maximum(idx - half_width, 0)
    hi = np.minimum(idx + half_width + 1, len(y))
    counts = ccount[hi] - ccount[lo]
    out = np.full(len(y), np.nan)
    np.divide(csum[hi] - csum[lo], counts, out=out, where=counts > 0)
    return out


def moving_median(y: FloatArray, half_width: int) -> FloatArray:
    """Centred NaN-aware running median, the window cut at both ends.

    Unlike the mean it keeps a step as sharp as it is: at a jump the window
    holds a majority of one side or the other, never a blend of both.
    """
    if half_width <= 0:
        return y
    padded = np.concatenate((np.full(half_width, np.nan), y, np.full(half_width, np.nan)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half_width + 1)
    return nan_median(windows.T)


def phase_stack(
    y: FloatArray, targets: IntArray, period: int, count: int, first_lag: IntArray
) -> FloatArray:
    """Values at the same phase in `count` past periods, most recent first.

    Row k holds y[target - (first_lag + k) * period]; NaN before the start.
    """
    lags = (first_lag[None, :] + np.arange(count)[:, None]) * period
    idx = targets[None, :] - lags
    ok = (idx >= 0) & (idx < len(y))
    return np.where(ok, y[np.clip(idx, 0, len(y) - 1)], np.nan)


def first_valid(stack: FloatArray) -> FloatArray:
    """Most recent non-NaN value down each column."""
    valid = np.isfinite(stack)
    row = np.argmax(valid, axis=0)
    out = stack[row, np.arange(stack.shape[1])]
    return np.where(valid.any(axis=0), out, np.nan)


def nan_median(stack: FloatArray) -> FloatArray:
    """Median down each column ignoring NaN (np.nanmedian is slow for short columns)."""
    ordered = np.sort(stack, axis=0)  # NaN sorts last
    counts = np.isfinite(stack).sum(axis=0)
    cols = np.arange(stack.shape[1])
    lo = np.clip((counts - 1) // 2, 0, None)
    hi = np.clip(counts // 2, 0, None)
    out = 0.5 * (ordered[lo, cols] + ordered[hi, cols])
    return np.where(counts > 0, out, np.nan)


def decayed_mean(stack: FloatArray, beta: float) -> FloatArray:
    """Mean down each column with weights (1 - beta)^k, ignoring NaN."""
    weights = (1.0 - beta) ** np.arange(stack.shape[0], dtype=np.float64)
    valid = np.isfinite(stack)
    w = np.where(valid, weights[:, None], 0.0)
    total = w.sum(axis=0)
    out = np.full(stack.shape[1], np.nan)
    np.divide((w * np.where(valid, stack, 0.0)).sum(axis=0), total, out=out, where=total > 0)
    return out


def window_sums(y: FloatArray, ends: IntArray, width: int) -> FloatArray:
    """Sum of the finite values in y[end - width + 1 : end + 1] for each end."""
    csum = np.concatenate(([0.0], np.cumsum(np.where(np.isfinite(y), y, 0.0))))
    hi = np.clip(ends + 1, 0, len(y))
    lo = np.clip(ends + 1 - width, 0, len(y))
    out: FloatArray = csum[hi] - csum[lo]
    return out


def decayed_window_sums(y: FloatArray, ends: IntArray, width: int, half_life: float) -> FloatArray:
    """Sum of the finite values in the `width` points up to each end, the point
    k steps before the end weighted 0.5 ** (k / half_life).

    Windows of 2^j points are built by doubling and the asked width is put
    together from its binary digits: O(len(y) log width), however many ends.
    """
    x = np.where(np.isfinite(y), y, 0.0)
    decay = 0.5 ** (1.0 / half_life)
    n = len(x)
    acc = np.zeros(n)
    block = x.copy()  # block[t] = sum over the 2^j points up to t
    offset = 0
    size = 1
    remaining = width
    while remaining > 0 and offset < n:
        if remaining & 1:
            # acc[t] += decay^offset * block[t - offset]
            if offset < n:
                acc[offset:] += decay**offset * block[: n - offset]
            offset += size
        remaining >>= 1
        if remaining and size < n:
            shifted = np.zeros(n)
            shifted[size:] = block[: n - size]
            block = block + decay**size * shifted
        size <<= 1
    out: FloatArray = acc[np.clip(ends, 0, max(n - 1, 0))] if n else np.zeros(len(ends))
    return out


def level_factors(
    y: FloatArray,
    profile: FloatArray,
    ends: IntArray,
    width: int,
    half_life: float = 0.0,
) -> FloatArray:
    """Recent demand over what the profile expected, over the `width` points up to each end.

    `half_life` > 0 weighs the window's points down with their age
    (exponential smoothing of the level, cut at `width`); 0 weighs them equally.
    """
    both = np.isfinite(y) & np.isfinite(profile)
    if half_life > 0:
        actual = decayed_window_sums(np.where(both, y, np.nan), ends, width, half_life)
        expected = decayed_window_sums(np.where(both, profile, np.nan), ends, width, half_life)
    else:
        actual = window_sums(np.where(both, y, np.nan), ends, width)
        expected = window_sums(np.where(both, profile, np.nan), ends, width)
    pad = LEVEL_SHRINK * expected + 1e-9
    factor = (actual + pad) / (expected + pad)
    return np.clip(factor, LEVEL_FACTOR_MIN, LEVEL_FACTOR_MAX)


# ------------------------------------------------------------------ models


class SeasonalProfile:
    """Same phase of past periods, reduced to one value, times a recent level factor.

    `reducer`: "naive" takes the most recent period (falling back to older
    ones over missing points), "median" the median of `periods` periods,
    "smooth" a mean with weights (1 - beta)^k (exponential smoothing across
    periods). `smooth_half_width` averages neighbouring phases first (counting
    noise at fine steps). `level_window` > 0 scales the profile by the demand
    of the last `level_window` points over what the profile expected there,
    each point weighted 0.5 ** (age / level_half_life) when that is > 0.
    """

    def __init__(
        self,
        period: int,
        *,
        reducer: Reducer = "naive",
        periods: int = 1,
        beta: float = 0.3,
        smooth_half_width: int = 0,
        level_window: int = 0,
        level_half_life: float = 0.0,
        phase_smoothing: Literal["mean", "median"] = "mean",
        name: str | None = None,
    ) -> None:
        if period < 1 or periods < 1:
            raise ValueError("period and periods must be positive")
        self.period = period
        self.reducer: Reducer = reducer
        self.periods = periods
        self.beta = beta
        self.smooth_half_width = smooth_half_width
        self.phase_smoothing = phase_smoothing
        self.level_window = level_window
        self.level_half_life = level_half_life
        self.name = name or f"{reducer}_p{period}x{periods}_l{level_window}"
        self._y: FloatArray | None = None

    @property
    def min_history(self) -> int:
        return self.period + self.level_window

    @property
    def full_history(self) -> int:
        # "naive" looks further back only to bridge gaps.
        periods = self.periods if self.reducer != "naive" else 1
        return self.period * periods + self.level_window

    @property
    def max_rolling_horizon(self) -> int:
        return self.period - self.smooth_half_width

    def _smoothed(self, y: FloatArray) -> FloatArray:
        if self.phase_smoothing == "median":
            return moving_median(y, self.smooth_half_width)
        return moving_average(y, self.smooth_half_width)

    def _reduce(self, stack: FloatArray) -> FloatArray:
        if self.reducer == "median":
            return nan_median(stack)
        if self.reducer == "smooth":
            return decayed_mean(stack, self.beta)
        return first_valid(stack)

    def _profile(self, s: FloatArray, targets: IntArray, first_lag: IntArray) -> FloatArray:
        # "naive" still looks a few periods back, but only to bridge gaps.
        count = self.periods if self.reducer != "naive" else max(self.periods, 3)
        stack = phase_stack(s, targets, self.period, count, first_lag)
        return self._reduce(stack)

    def fit(self, y: FloatArray) -> Self:
        keep = self.period * (self.periods + 2) + self.level_window + self.smooth_half_width
        self._y = np.asarray(y, dtype=np.float64)[-keep:]
        return self

    def predict(self, h: int) -> FloatArray:
        if self._y is None:
            raise RuntimeError("fit() first")
        return self.forecast(self._y, h)

    def forecast(self, y: FloatArray, h: int) -> FloatArray:
        y = np.asarray(y, dtype=np.float64)
        n = len(y)
        s = self._smoothed(y)
        steps = np.arange(1, h + 1, dtype=np.int64)
        targets = n - 1 + steps
        first_lag = -(-steps // self.period)
        profile = self._profile(s, targets, first_lag)
        if self.level_window > 0:
            recent = np.arange(max(n - self.level_window, 0), n, dtype=np.int64)
            past = self._profile(s, recent, np.ones(len(recent), dtype=np.int64))
            factor = level_factors(
                y[recent],
                past,
                np.array([len(recent) - 1]),
                self.level_window,
                self.level_half_life,
            )[0]
            profile = profile * factor
        return np.nan_to_num(profile, nan=_fallback_level(y))

    @property
    def profile_key(self) -> tuple[object, ...]:
        """Models with equal keys share the rolling profile (they differ only in level)."""
        beta = self.beta if self.reducer == "smooth" else None
        count = self.periods if self.reducer != "naive" else max(self.periods, 3)
        return (
            self.period,
            self.reducer,
            count,
            beta,
            self.smooth_half_width,
            self.phase_smoothing,
        )

    def rolling(
        self,
        y: FloatArray,
        origins: IntArray,
        horizons: IntArray,
        *,
        cache: dict[tuple[object, ...], tuple[int, FloatArray]] | None = None,
    ) -> FloatArray:
        """Forecasts from every origin at every horizon.

        `cache` (one dict per `y`) lets models that share a profile compute
        it once; a cached profile serves any span inside the one it covers.
        """
        if horizons.max(initial=0) > self.max_rolling_horizon:
            raise ValueError("rolling() is exact only up to max_rolling_horizon")
        y = np.asarray(y, dtype=np.float64)
        lo = max(int(origins.min()) - self.level_window + 1, 0)
        hi = min(int(origins.max() + horizons.max(initial=0)), len(y) - 1)
        cached = cache.get(self.profile_key) if cache is not None else None
        if cached is not None and cached[0] <= lo and cached[0] + len(cached[1]) > hi:
            profile = cached[1][lo - cached[0] : hi + 1 - cached[0]]
        else:
            s = self._smoothed(y)
            span = np.arange(lo, hi + 1, dtype=np.int64)
            profile = self._profile(s, span, np.ones(len(span), dtype=np.int64))
            if cache is not None:
                cache[self.profile_key] = (lo, profile)
        targets = origins[:, None] + horizons[None, :]
        inside = targets < len(y)
        out = np.where(inside, profile[np.clip(targets, lo, hi) - lo], np.nan)
        if self.level_window > 0:
            factors = level_factors(
                y[lo : hi + 1], profile, origins - lo, self.level_window, self.level_half_life
            )
            out = out * factors[:, None]
        fallback = _rolling_fallback(y, origins)
        return np.where(np.isfinite(out) | ~inside, out, fallback[:, None])


class RecentLevel:
    """Flat forecast at the mean of the last `window` points (1 = last value)."""

    def __init__(self, window: int = 1, *, name: str | None = None) -> None:
        if window < 1:
            raise ValueError("window must be positive")
        self.window = window
        self.name = name or ("last_value" if window == 1 else f"recent_mean_{window}")
        self._y: FloatArray | None = None

    @property
    def min_history(self) -> int:
        return 1

    @property
    def full_history(self) -> int:
        return self.window

    @property
    def max_rolling_horizon(self) -> int:
        return 1 << 40

    def fit(self, y: FloatArray) -> Self:
        self._y = np.asarray(y, dtype=np.float64)[-4 * self.window :]
        return self

    def predict(self, h: int) -> FloatArray:
        if self._y is None:
            raise RuntimeError("fit() first")
        return self.forecast(self._y, h)

    def forecast(self, y: FloatArray, h: int) -> FloatArray:
        y = np.asarray(y, dtype=np.float64)
        level = self._levels(y, np.array([len(y) - 1], dtype=np.int64))[0]
        return np.full(h, level)

    def _levels(self, y: FloatArray, ends: IntArray) -> FloatArray:
        valid = np.isfinite(y).astype(np.float64)
        counts = window_sums(valid, ends, self.window)
        sums = window_sums(y, ends, self.window)
        out = np.full(len(ends), np.nan)
        np.divide(sums, counts, out=out, where=counts > 0)
        return np.where(np.isfinite(out), out, _rolling_fallback(y, ends))

    def rolling(self, y: FloatArray, origins: IntArray, horizons: IntArray) -> FloatArray:
        y = np.asarray(y, dtype=np.float64)
        levels = self._levels(y, origins)
        targets = origins[:, None] + horizons[None, :]
        return np.where(targets < len(y), levels[:, None], np.nan)


def _fallback_level(y: FloatArray) -> float:
    """Last finite value, or 0 for an empty history: used where a model has nothing."""
    finite = y[np.isfinite(y)]
    return float(finite[-1]) if len(finite) else 0.0


def _rolling_fallback(y: FloatArray, origins: IntArray) -> FloatArray:
    """`_fallback_level` as of each origin."""
    valid = np.isfinite(y)
    last = np.maximum.accumulate(np.where(valid, np.arange(len(y)), -1))
    idx = last[np.clip(origins, 0, len(y) - 1)]
    return np.where(idx >= 0, y[np.clip(idx, 0, None)], 0.0)


# ------------------------------------------------- stateless entry points


def seasonal_naive(y: FloatArray, h: int, period: int) -> FloatArray:
    """Same phase of the most recent period."""
    return SeasonalProfile(period).forecast(y, h)


def level_seasonal_naive(y: FloatArray, h: int, period: int, level_window: int) -> FloatArray:
    """Seasonal naive scaled by the recent level against the same window one period ago."""
    return SeasonalProfile(period, level_window=level_window).forecast(y, h)


def seasonal_median(
    y: FloatArray, h: int, period: int, periods: int, level_window: int = 0
) -> FloatArray:
    """Median of the same phase over `periods` past periods."""
    model = SeasonalProfile(period, reducer="median", periods=periods, level_window=level_window)
    return model.forecast(y, h)


def seasonal_smoothing(
    y: FloatArray, h: int, period: int, periods: int, beta: float, level_window: int = 0
) -> FloatArray:
    """Exponentially weighted mean of the same phase over past periods."""
    model = SeasonalProfile(
        period, reducer="smooth", periods=periods, beta=beta, level_window=level_window
    )
    return model.forecast(y, h)


def recent_level(y: FloatArray, h: int, window: int = 1) -> FloatArray:
    """Flat at the mean of the last `window` points."""
    return RecentLevel(window).forecast(y, h)


class Combination:
    """Mean of the forecasts of several models (forecast combination).

    Averaging models that err differently cancels part of their errors; on
    noisy series the mean of a few good models beats the best one alone.
    """

    def __init__(self, members: tuple[Model, ...]) -> None:
        if not members:
            raise ValueError("a combination needs members")
        self.members = members
        self.name = "mean(" + ",".join(m.name for m in members) + ")"

    @property
    def min_history(self) -> int:
        return max(m.min_history for m in self.members)

    @property
    def full_history(self) -> int:
        return max(m.full_history for m in self.members)

    @property
    def max_rolling_horizon(self) -> int:
        return min(m.max_rolling_horizon for m in self.members)

    def fit(self, y: FloatArray) -> Self:
        for m in self.members:
            m.fit(y)
        return self

    def predict(self, h: int) -> FloatArray:
        return combine([m.predict(h) for m in self.members])

    def forecast(self, y: FloatArray, h: int) -> FloatArray:
        return combine([m.forecast(y, h) for m in self.members])

    def rolling(self, y: FloatArray, origins: IntArray, horizons: IntArray) -> FloatArray:
        return combine([m.rolling(y, origins, horizons) for m in self.members])


def combine(paths: list[FloatArray]) -> FloatArray:
    """Mean of the paths, NaN only where every path is NaN."""
    stack = np.stack(paths)
    valid = np.isfinite(stack)
    counts = valid.sum(axis=0)
    out = np.full(stack.shape[1:], np.nan)
    np.divide(np.where(valid, stack, 0.0).sum(axis=0), counts, out=out, where=counts > 0)
    return out
