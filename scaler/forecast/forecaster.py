"""Fit a forecast of one demand series: clean, detect periods, choose, calibrate.

The pipeline of `fit`, in order:

1. Cap the history (memory per series is bounded) and average steps finer
   than a minute into one-minute means (a mean keeps the series' unit).
2. Mark outages as missing: zeros in a series that is rarely zero, and runs
   of zeros where the same hour of other days had demand, so that a dead
   scrape target does not teach seasonal models a dead hour.
3. Detect daily and weekly periods (periodicity.detect). Without one, only
   recent-level models are candidates, and the forecast says why.
4. Backtest every candidate from every origin of the recent history at once
   (each model's `rolling` kernel), and pick per horizon range the model with
   the least asymmetric loss: demand above the forecast costs more than
   demand below it, because under-provisioning is what users feel. The mean
   of the best few models of each horizon range is a candidate too: models
   that err differently cancel part of each other's errors (forecast
   combination).
5. Calibrate the upper band split-conformal style on out-of-sample errors
   from that backtest (two weeks of origins), per horizon and relative to
   the forecast level, so that coverage holds both at the peak and in the
   valley. The errors are those of the selection, cross-validated by day:
   each day's origins are scored with the model the other days would have
   chosen, so the winner's luck does not narrow its own band. A horizon
   with too few errors for a finite-sample conformal quantile takes the
   widest band of the shorter horizons instead. Errors a model made while
   still warming up (a median over fewer periods than it will use) are left
   out once there are enough of the others.

Everything is a deterministic function of the input: two replicas fitting the
same history give the same forecast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from scaler.forecast.models import (
    Combination,
    FloatArray,
    IntArray,
    Model,
    RecentLevel,
    SeasonalProfile,
    combine,
)
from scaler.forecast.periodicity import DAY_SECONDS, WEEK_SECONDS, Periodicity, coarsen, detect
from scaler.forecast.types import Forecast


class InsufficientHistory(ValueError):
    """The series holds too little data to forecast."""


@dataclass(frozen=True)
class ForecasterSettings:
    """Knobs of the forecaster; the defaults are what the scaler runs with."""

    max_history_seconds: float = 28 * DAY_SECONDS
    min_history_seconds: float = 3 * 3600.0
    min_points: int = 24
    # A series whose newest point is older than this has stopped (a query that no
    # longer matches): its forecast would stand in for demand no one measures.
    max_data_age_seconds: float = DAY_SECONDS
    # Steps finer than this are averaged into it (bounds points per series).
    min_step_seconds: float = 60.0
    # Under-prediction weighs this many times over-prediction in selection.
    under_weight: float = 2.0
    # Origins of the selection backtest: this much recent history, but at
    # least `min_selection_origins` points where the history allows it.
    selection_seconds: float = 14 * DAY_SECONDS
    min_selection_origins: int = 240
    # Neighbouring origins tell almost the same story; thinning them to
    # this many keeps a refit within milliseconds.
    max_selection_origins: int = 1000
    level_window_seconds: float = 3600.0
    # A slower level for noisy series: exponentially weighted with this
    # half-life over this window, so that a spike moves it little (the
    # level of MSTL's exponential smoothing of the deseasonalised series).
    long_level_window_seconds: float = 6 * 3600.0
    long_level_half_life_seconds: float = 1.5 * 3600.0
    # Weekly models join once their backtest spans this much beyond their
    # warm-up: a day of origins, scored up to the longest horizon each has
    # targets for. Waiting for a day of origins scored a whole day ahead (two
    # days) left the second week of a two-week history to the daily models
    # for longer than their worse day-ahead errors were worth.
    join_span_seconds: float = DAY_SECONDS
    # Calibration weighs a backtest error by 0.5 ** (age / half-life) (0: no
    # decay), so that the band follows a change of regime within days.
    calibration_half_life_seconds: float = 0.0
    # Origins fall into folds of this length for the cross-validated
    # selection whose errors calibrate the band (0: the chosen model's own).
    selection_fold_seconds: float = DAY_SECONDS
    smooth_seconds: float = 600.0
    wide_smooth_seconds: float = 3600.0
    # Horizon ranges with a model of their own: up to the first edge the
    # recent level matters most, beyond the last one only the seasonal shape.
    bucket_edges_seconds: tuple[float, ...] = (1200.0, 3 * 3600.0)
    # Band width is relative to (forecast + this share of the mean level),
    # so that near-zero valleys do not get a zero-width band. Where the
    # forecast is exactly zero the band has a calibration of its own (see fit).
    band_floor_share: float = 0.1
    horizon_grid_points: int = 24
    # Calibrate on the errors each model made with its full history, once
    # there are enough of them (see Model.full_history).
    calibrate_on_full_history: bool = True
    # Also try the mean of the best this many models of each horizon range (1: off).
    combine_top: int = 4


DEFAULT_SETTINGS = ForecasterSettings()


@dataclass(frozen=True)
class Segment:
    """One horizon range and the model chosen for it."""

    until_steps: int  # last horizon (in steps) this model serves; the last segment is open
    model_name: str
    loss: float


@dataclass(frozen=True, eq=False)
class FittedForecaster:
    """A fitted forecaster: call `forecast(horizon_seconds)` for the band."""

    now: float
    step_seconds: float
    quantile: float
    periodicity: Periodicity
    history: FloatArray
    models: tuple[Model, ...]
    segments: tuple[Segment, ...]
    band_horizons: IntArray
    band_quantiles: FloatArray
    band_floor: float
    note: str
    scores: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # Band where the median is exactly 0, calibrated on the backtest's zero forecasts
    # alone: 0 when demand stayed 0 whenever they said so (a workload idle every night
    # then forecasts an idle night). None: too few zero forecasts, the relative band.
    zero_band: float | None = None
    # The band the last value would need at each of `band_horizons` for the same
    # coverage (inf: too few errors): what a reactive scaler implicitly relies on.
    last_value_band: FloatArray | None = None

    @property
    def model_name(self) -> str:
        names = [s.model_name for s in self.segments]
        if len(set(names)) == 1:
            return names[0]
        parts = []
        for seg in self.segments[:-1]:
            parts.append(f"{seg.model_name}<={_fmt_seconds(seg.until_steps * self.step_seconds)}")
        parts.append(self.segments[-1].model_name)
        return ",".join(parts)

    def band_quantile(self, horizons: IntArray) -> FloatArray:
        """Relative band width at each horizon (steps), flat beyond the calibrated range."""
        log_h = np.log(self.band_horizons.astype(np.float64))
        out: FloatArray = np.interp(np.log(np.maximum(horizons, 1)), log_h, self.band_quantiles)
        return out

    def predict(self, h: int) -> tuple[FloatArray, FloatArray]:
        """Median and upper band for the next `h` steps of the internal grid."""
        steps = np.arange(1, h + 1, dtype=np.int64)
        median = np.zeros(h)
        start = 0
        by_name = {m.name: m for m in self.models}
        for i, seg in enumerate(self.segments):
            stop = h if i == len(self.segments) - 1 else min(seg.until_steps, h)
            if stop > start:
                path = by_name[seg.model_name].forecast(self.history, stop)
                median[start:stop] = path[start:stop]
            start = max(start, stop)
        median = np.clip(np.nan_to_num(median, nan=0.0), 0.0, None)
        width = self.band_quantile(steps) * (median + self.band_floor)
        if self.zero_band is not None:
            width = np.where(median == 0.0, self.zero_band, width)
        upper = np.maximum(median + width, median)
        return median, upper

    def forecast(self, horizon_seconds: float) -> Forecast:
        """Forecast of [now, now + horizon_seconds) on the internal grid."""
        h = max(1, math.ceil(horizon_seconds / self.step_seconds - 1e-9))
        # The noise is measured on the same span whatever the horizon asked for, so the
        # service (a day ahead) and the simulator (a refit interval ahead) agree on it.
        span = max(math.ceil(NOISE_SPAN_SECONDS / self.step_seconds), NOISE_MIN_POINTS)
        median, upper = self.predict(max(h, span))
        noise = median_noise(median[:span])
        median, upper = median[:h], upper[:h]
        return Forecast(
            start=self.now,
            step_seconds=self.step_seconds,
            median=median,
            upper=upper,
            quantile=self.quantile,
            model=self.model_name,
            fitted_at=self.now,
            periodicity=self.periodicity.label,
            note=self.note,
            band_floor=self.band_floor,
            median_noise=noise,
            last_value_band=()
            if self.last_value_band is None
            else tuple(
                zip(
                    (self.band_horizons * self.step_seconds).tolist(),
                    self.last_value_band.tolist(),
                    strict=True,
                )
            ),
        )


# The span of the forecast its median's noise is measured on (see median_noise).
NOISE_SPAN_SECONDS = 3 * 3600.0
NOISE_MIN_POINTS = 16


def median_noise(median: FloatArray) -> float:
    """How far a forecast's median scatters from step to step by noise alone.

    A robust scale (1.4826 MAD) of its second differences, divided by sqrt(6): for
    independent noise of scale s on a smooth curve the second differences have scale
    s * sqrt(6), while the curve's own bends (a ramp's start and end) are the few
    outliers the median absolute deviation ignores. 0 for fewer than four differences.
    """
    second = np.diff(median, 2)
    if len(second) < 4:
        return 0.0
    spread = float(np.median(np.abs(second - np.median(second))))
    return 1.4826 * spread / math.sqrt(6.0)


def _fmt_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# ------------------------------------------------------------------ cleaning


def _zero_runs(y: FloatArray) -> list[tuple[int, int]]:
    zero = np.concatenate(([False], y == 0.0, [False]))
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def mark_outages(y: FloatArray, period: int | None) -> FloatArray:
    """Replace zeros that are outages, not demand, by NaN.

    A series that is rarely zero (under 2 % of points) has no real zeros; in
    one that often is, a run of zeros is an outage only where the same phase
    of other periods had clear demand.
    """
    finite = y[np.isfinite(y)]
    if len(finite) == 0:
        return y
    zero_share = float(np.mean(finite == 0.0))
    if zero_share == 0.0:
        return y
    if zero_share < 0.02:
        return np.where(y == 0.0, np.nan, y)
    if period is None:
        return y
    positive = finite[finite > 0]
    if len(positive) == 0:
        return y
    typical = float(np.median(positive))
    out = y.copy()
    for start, stop in _zero_runs(y):
        if stop - start < 3:
            continue
        idx = np.arange(start, stop)
        others = []
        for k in (-3, -2, -1, 1, 2, 3):
            shifted = idx + k * period
            ok = (shifted >= 0) & (shifted < len(y))
            others.append(np.where(ok, y[np.clip(shifted, 0, len(y) - 1)], np.nan))
        stack = np.vstack(others)
        if np.isfinite(stack).any() and float(np.nanmedian(stack)) >= 0.2 * typical:
            out[start:stop] = np.nan
    return out


# ----------------------------------------------------------------- candidates


def _candidates(
    periodicity: Periodicity, n: int, step: float, settings: ForecasterSettings
) -> tuple[list[Model], int]:
    """Models worth trying and how many recent origins to backtest them on."""
    level = max(3, round(settings.level_window_seconds / step))
    half = round(settings.smooth_seconds / step / 2)
    wide = round(settings.wide_smooth_seconds / step / 2)
    recent: list[Model] = [
        RecentLevel(1, name="last_value"),
        RecentLevel(level, name="recent_mean"),
    ]
    want = max(round(settings.selection_seconds / step), settings.min_selection_origins)

    join = round(settings.join_span_seconds / step)
    long_level = max(level, round(settings.long_level_window_seconds / step))
    long_half_life = settings.long_level_half_life_seconds / step

    def seasonal(period: int, tag: str, periods: int, span: int) -> list[Model]:
        """The models of one period; each joins once `span` points of origins follow its warm-up."""
        family: list[SeasonalProfile] = [
            SeasonalProfile(period, name=f"seasonal_naive_{tag}"),
            SeasonalProfile(period, level_window=level, name=f"level_naive_{tag}"),
            SeasonalProfile(
                period,
                reducer="median",
                periods=periods,
                smooth_half_width=half,
                phase_smoothing="median",
                name=f"median_{tag}",
            ),
            SeasonalProfile(
                period,
                reducer="median",
                periods=periods,
                smooth_half_width=half,
                level_window=level,
                phase_smoothing="median",
                name=f"level_median_{tag}",
            ),
            # Wider phase smoothing for noisy series (counting noise, spikes).
            SeasonalProfile(
                period,
                reducer="median",
                periods=periods,
                smooth_half_width=wide,
                level_window=level,
                name=f"level_wide_median_{tag}",
            ),
            SeasonalProfile(
                period,
                reducer="smooth",
                periods=periods,
                beta=0.4,
                smooth_half_width=half,
                level_window=level,
                name=f"level_smooth_{tag}",
            ),
            SeasonalProfile(
                period,
                reducer="median",
                periods=periods,
                smooth_half_width=wide,
                level_window=long_level,
                level_half_life=long_half_life,
                name=f"long_level_wide_median_{tag}",
            ),
        ]
        # A model with a longer warm-up than the rest would shrink the
        # origins every model is compared on; it waits for its own span.
        return [m for m in family if n - m.min_history >= span]

    day = round(DAY_SECONDS / step)
    week = round(WEEK_SECONDS / step)
    # At least a day of origins (or the minimum) must remain after warm-up.
    least = min(want, max(day, settings.min_selection_origins))
    models: list[Model] = []
    if periodicity.daily or periodicity.weekly:
        models += seasonal(day, "day", 7, least // 2)
        # Weekly models join once they have a day of origins; until they
        # have the whole window they are compared with the others on the
        # origins they share (see fit).
        models += seasonal(week, "week", 3, join)
    if not models:
        return recent, min(want, n - 1)
    warmup = min(m.min_history for m in models)
    return recent + models, max(1, min(want, n - warmup))


def _horizon_grid(max_h: int, points: int) -> IntArray:
    grid = np.unique(np.round(np.geomspace(1, max(max_h, 1), points)).astype(np.int64))
    return grid[grid >= 1]


# ---------------------------------------------------------------------- fit


def conformal_quantile(
    scores: FloatArray, quantile: float, weights: FloatArray | None = None
) -> float:
    """Split-conformal quantile of `scores`; inf when they are too few to give one.

    Unweighted, the ceil((m + 1) q)-th smallest of m scores. Weighted (weights
    in (0, 1], the new point weighing 1), the smallest score whose share of
    the total weight, counting the new point's, reaches q (Barber et al.
    2023, conformal prediction beyond exchangeability): with equal weights
    the two agree. Too few scores (m < q / (1 - q) unweighted) leave the rank
    beyond the largest score, where no finite band has the guarantee.
    """
    ok = np.isfinite(scores)
    if weights is None:
        finite = np.sort(scores[ok])
        m = len(finite)
        rank = math.ceil((m + 1) * quantile - 1e-9)
        return float(finite[rank - 1]) if rank <= m else math.inf
    order = np.argsort(scores[ok])
    ordered = scores[ok][order]
    cum = np.cumsum(weights[ok][order])
    total = (cum[-1] if len(cum) else 0.0) + 1.0
    idx = int(np.searchsorted(cum, quantile * total - 1e-9 * total, side="left"))
    return float(ordered[idx]) if idx < len(ordered) else math.inf


def fit(
    values: npt.ArrayLike,
    step_seconds: float,
    *,
    quantile: float,
    now: float,
    settings: ForecasterSettings = DEFAULT_SETTINGS,
) -> FittedForecaster:
    """Fit on `values`, the series on a regular grid whose last point ends at `now`.

    `values[i]` covers [now - (len - i) * step_seconds, ...); NaN marks a
    missing point. Raises InsufficientHistory when there is too little data.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if not step_seconds > 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds}")
    y = np.asarray(values, dtype=np.float64).ravel()
    y = np.where(np.isfinite(y), np.maximum(y, 0.0), np.nan)
    y = y[-max(1, int(settings.max_history_seconds // step_seconds)) :]
    step = float(step_seconds)
    if step < settings.min_step_seconds:
        factor = int(settings.min_step_seconds // step)
        y = coarsen(y, factor)
        step *= factor
    finite = np.flatnonzero(np.isfinite(y))
    n_finite = len(finite)
    # The span of the data itself: a short series handed over on the whole history's
    # grid, missing points before it, is still a short series.
    span = float(finite[-1] - finite[0] + 1) * step if n_finite else 0.0
    if n_finite < settings.min_points or span < settings.min_history_seconds:
        raise InsufficientHistory(
            f"{n_finite} points over {span / 3600:.2f} h; need {settings.min_points} points "
            f"over at least {settings.min_history_seconds / 3600:g} h"
        )
    silent = float(len(y) - 1 - finite[-1]) * step
    if silent > settings.max_data_age_seconds:
        raise InsufficientHistory(
            f"no data for the last {silent / 3600:.1f} h: the series has stopped (a forecast "
            f"needs data within the last {settings.max_data_age_seconds / 3600:g} h)"
        )
    y = mark_outages(y, None)
    periodicity = detect(y, step)
    day = round(DAY_SECONDS / step)
    if periodicity.daily or periodicity.weekly:
        y = mark_outages(y, day)

    models, window = _candidates(periodicity, len(y), step, settings)
    n = len(y)
    stride = max(1, math.ceil(window / settings.max_selection_origins))
    origins = np.arange(n - 2, n - window - 2, -stride, dtype=np.int64)[::-1].copy()
    max_h = min(m.max_rolling_horizon for m in models)
    if not (periodicity.daily or periodicity.weekly):
        max_h = min(day, max(1, window // 2))
    horizons = _horizon_grid(max_h, settings.horizon_grid_points)
    targets = origins[:, None] + horizons[None, :]
    actual = np.where(targets < n, y[np.clip(targets, 0, n - 1)], np.nan)
    scale = max(float(np.nanmean(np.abs(actual))) if np.isfinite(actual).any() else 0.0, 1e-9)

    edges = [e / step for e in settings.bucket_edges_seconds]
    bucket_of = np.searchsorted(np.asarray(edges), horizons.astype(np.float64), side="left")
    buckets = sorted(set(bucket_of.tolist()))

    # A model is scored only from origins where it has its full warm-up;
    # models are compared on the origins they all share.
    usable = {m.name: origins >= m.min_history - 1 for m in models}
    shared = np.logical_and.reduce(list(usable.values()))
    paths: dict[str, FloatArray] = {}
    losses: dict[str, tuple[float, ...]] = {}
    # Per model, bucket and fold (a block of consecutive origins): the sum
    # and count of the weighted errors on the shared origins.
    fold_len = max(1, round(settings.selection_fold_seconds / step))
    fold = ((origins[-1] - origins) // fold_len).astype(np.int64)
    folds = int(fold.max()) + 1
    shared_fold = fold[shared]
    fold_sums: dict[str, FloatArray] = {}
    fold_counts: dict[str, FloatArray] = {}

    def score(name: str, pred: FloatArray) -> None:
        """Loss per bucket, and per fold for the cross-validated band, of one candidate."""
        err = actual[shared] - pred[shared]
        weighted = np.where(err > 0, settings.under_weight, 1.0) * np.abs(err)
        per_bucket = []
        sums = np.zeros((folds, len(buckets)))
        counts = np.zeros((folds, len(buckets)))
        for i, b in enumerate(buckets):
            cols = weighted[:, bucket_of == b]
            ok = np.isfinite(cols)
            per_bucket.append(float(cols[ok].mean() / scale) if ok.any() else math.inf)
            sums[:, i] = np.bincount(
                shared_fold, np.where(ok, cols, 0.0).sum(axis=1), minlength=folds
            )
            counts[:, i] = np.bincount(shared_fold, ok.sum(axis=1), minlength=folds)
        paths[name] = pred
        losses[name] = tuple(per_bucket)
        fold_sums[name] = sums
        fold_counts[name] = counts

    cache: dict[tuple[object, ...], tuple[int, FloatArray]] = {}
    # Longest level window first: its profile span covers the others'.
    for model in sorted(models, key=lambda m: -getattr(m, "level_window", 0)):
        if isinstance(model, SeasonalProfile):
            pred = model.rolling(y, origins, horizons, cache=cache)
        else:
            pred = model.rolling(y, origins, horizons)
        pred[~usable[model.name]] = np.nan
        score(model.name, pred)

    # Combinations of the best few models of each horizon range.
    if settings.combine_top > 1:
        seen: set[str] = set()
        singles = list(models)
        for i in range(len(buckets)):
            ranked = sorted(singles, key=lambda m: losses[m.name][i])[: settings.combine_top]
            if len(ranked) < 2:
                continue
            combo = Combination(tuple(ranked))
            if combo.name in seen:
                continue
            seen.add(combo.name)
            pred = combine([paths[m.name] for m in ranked])
            models.append(combo)
            score(combo.name, pred)
    index = {m.name: i for i, m in enumerate(models)}
    fold_sums_arr = np.stack([fold_sums[m.name] for m in models])
    fold_counts_arr = np.stack([fold_counts[m.name] for m in models])

    chosen: list[Segment] = []
    for i, b in enumerate(buckets):
        best = min(models, key=lambda m: losses[m.name][i])
        last = int(edges[b]) if b < len(edges) else int(horizons.max())
        chosen.append(Segment(last, best.name, losses[best.name][i]))
    segments = _merge_segments(chosen)

    # The band is calibrated on the errors of the selection, not of the
    # selected model alone: the origins of each fold are scored with the
    # model that the other folds would have chosen. Where one model wins
    # everywhere this is the same thing; where the choice is a close call,
    # the errors of the runners-up widen the band as they should (the
    # winner's own errors are its luckiest draw).
    out_sums = fold_sums_arr.sum(axis=1, keepdims=True) - fold_sums_arr
    out_counts = fold_counts_arr.sum(axis=1, keepdims=True) - fold_counts_arr
    out_loss = np.full(out_sums.shape, np.inf)
    np.divide(out_sums, out_counts, out=out_loss, where=out_counts > 0)
    fold_choice = np.argmin(out_loss, axis=0)  # [fold, bucket]
    overall = np.array([index[c.model_name] for c in chosen])
    no_others = ~np.isfinite(np.min(out_loss, axis=0))
    fold_choice = np.where(no_others, overall[None, :], fold_choice)
    if settings.selection_fold_seconds <= 0:
        fold_choice = np.broadcast_to(overall[None, :], fold_choice.shape)
    stacked = np.stack([paths[m.name] for m in models])  # [model, origin, horizon]

    floor = settings.band_floor_share * scale
    weights = None
    if settings.calibration_half_life_seconds > 0:
        age = (n - 1 - origins).astype(np.float64) * step
        weights = 0.5 ** (age / settings.calibration_half_life_seconds)
    rows = np.arange(len(origins))
    all_scores = np.empty((len(origins), len(horizons)))
    zero_pred = np.zeros((len(origins), len(horizons)), dtype=bool)
    full = np.array([m.full_history for m in models])
    # Errors of a model still warming up overstate the errors to come; once
    # those of its full history are enough for the quantile to rest on two
    # errors above it, the band is calibrated on them alone.
    enough = math.ceil(2.0 / (1.0 - quantile))
    for j in range(len(horizons)):
        seg_i = buckets.index(int(bucket_of[j]))
        choice = fold_choice[fold, seg_i]
        pred = stacked[choice, rows, j]
        scores = (actual[:, j] - pred) / (pred + floor)
        mature = origins >= full[choice] - 1
        if settings.calibrate_on_full_history and np.isfinite(scores[mature]).sum() >= enough:
            scores[~mature] = np.nan
        all_scores[:, j] = scores
        zero_pred[:, j] = pred == 0.0
    # Mondrian split: zero forecasts (an idle night) and the others are calibrated
    # apart, so that the errors of one kind set neither band of the other. Zero
    # forecasts are pooled over horizons (an idle hour is idle at any horizon).
    zero_scores = np.where(zero_pred, all_scores, np.nan)
    zero_band: float | None = None
    if np.isfinite(zero_scores).sum() >= enough:
        zero_weights = None if weights is None else np.repeat(weights, len(horizons))
        zero_q = conformal_quantile(zero_scores.ravel(), quantile, zero_weights)
        if math.isfinite(zero_q):
            zero_band = max(zero_q, 0.0) * floor
            all_scores = np.where(zero_pred, np.nan, all_scores)
    band_q = np.zeros(len(horizons))
    for j in range(len(horizons)):
        band_q[j] = conformal_quantile(all_scores[:, j], quantile, weights)
    band_q = _fill_uncalibrated(band_q, all_scores)
    # The same calibration for the last value (the forecast a reactive scaler makes
    # implicitly), on the same origins and floor, so the engine can tell where the
    # forecast knows more about the next minutes than the demand just observed.
    last_value_band = None
    if "last_value" in paths:
        naive = paths["last_value"]
        last_value_band = np.array(
            [
                conformal_quantile(
                    (actual[:, j] - naive[:, j]) / (naive[:, j] + floor), quantile, weights
                )
                for j in range(len(horizons))
            ]
        )

    note = ""
    if not (periodicity.daily or periodicity.weekly):
        note = f"no periodicity ({periodicity.reason}): recent-level model"
    return FittedForecaster(
        now=float(now),
        step_seconds=step,
        quantile=quantile,
        periodicity=periodicity,
        history=y,
        models=tuple(models),
        segments=segments,
        band_horizons=horizons,
        band_quantiles=band_q,
        band_floor=floor,
        note=note,
        scores=losses,
        zero_band=zero_band,
        last_value_band=last_value_band,
    )


def _fill_uncalibrated(band_q: FloatArray, scores: FloatArray) -> FloatArray:
    """Give horizons with too few backtest errors, or a negative band, the widest band below.

    Errors grow with the horizon, so the band of a shorter horizon is the
    least a longer one needs. With no calibrated horizon at all (a young
    series, or a quantile too high for the errors there are), each horizon
    gets the largest error it has seen: the widest band the data supports,
    where a band of zero would claim certainty nothing backs.
    """
    out = band_q.copy()
    if not np.isfinite(out).any():
        seen = np.isfinite(scores).any(axis=0)
        largest = np.max(np.where(np.isfinite(scores), scores, -np.inf), axis=0, initial=-np.inf)
        out = np.where(seen, np.maximum(largest, 0.0), np.inf)
    widest = 0.0
    for j, value in enumerate(out):
        if math.isfinite(value) and value >= 0.0:
            widest = max(widest, float(value))
        else:
            # Too few errors, or a band below the median: the model over-predicted at
            # this horizon on nearly every backtest origin. That says the backtest's days
            # were unlike the one ahead (weekdays before a Saturday), not that the demand
            # cannot exceed the median: the shorter horizons' band stands in.
            out[j] = widest
    return out


def _merge_segments(segments: list[Segment]) -> tuple[Segment, ...]:
    merged: list[Segment] = []
    for seg in segments:
        if merged and merged[-1].model_name == seg.model_name:
            merged[-1] = Segment(seg.until_steps, seg.model_name, max(merged[-1].loss, seg.loss))
        else:
            merged.append(seg)
    return tuple(merged)
