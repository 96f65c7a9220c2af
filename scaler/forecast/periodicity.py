"""Daily and weekly periodicity of a demand series, with the evidence.

Candidates come from the periodogram (FFT) and are verified on the
autocorrelation: a period counts only if the series correlates with itself
shifted by that lag. The verdict says which periods were found and why, so a
forecast that falls back to a recent-level model can say what was missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DAY_SECONDS = 86_400.0
WEEK_SECONDS = 7 * DAY_SECONDS

# ACF at the period lag below which a period is not trusted: at 0.3 the
# same-phase value explains about a tenth of the variance, which is too
# little for a seasonal model to beat a recent-level one.
MIN_ACF = 0.3
# The weekly lag must explain clearly more than the daily one; otherwise
# a pure daily pattern (whose ACF at 7 days is as high as at 1 day) would
# be reported as weekly.
WEEKLY_MARGIN = 0.05
# Detection works on an hourly copy: cheaper, and counting noise at fine
# steps hides a daily pattern that hourly means show plainly (the AWS ELB
# trace has a daily ACF of 0.09 at 5 minutes and 0.55 at 1 hour).
COARSE_STEP_SECONDS = 3600.0
# An ACF estimated from m overlapping points has a standard error of about
# 1/sqrt(m) on noise; demand this many standard errors on short histories.
SIGNIFICANCE = 2.5
FFT_CANDIDATES = 6
# Glitches: hourly means above this many times the typical day's peak (the median of
# the daily maxima), clipped to it when they carry most of the series' variance. One
# sample 1000x the peak (a counter reset read as a rate) would otherwise hide every
# period. Spikes that are a fair share of the series (flash crowds) are left alone.
SPIKE_FACTOR = 3.0
GLITCH_VARIANCE_SHARE = 0.5


@dataclass(frozen=True)
class Periodicity:
    """Periods found, in seconds, and the evidence for the verdict.

    `daily_acf` / `weekly_acf` are the autocorrelations at the daily and
    weekly lags (None when the history is too short to measure them);
    `fft_periods_seconds` are the strongest periodogram peaks.
    """

    periods_seconds: tuple[float, ...]
    daily_acf: float | None
    weekly_acf: float | None
    fft_periods_seconds: tuple[float, ...]
    reason: str

    @property
    def label(self) -> str:
        names = {DAY_SECONDS: "daily", WEEK_SECONDS: "weekly"}
        found = [names.get(p, f"{p:g}s") for p in self.periods_seconds]
        return "+".join(found) if found else "none"

    @property
    def daily(self) -> bool:
        return DAY_SECONDS in self.periods_seconds

    @property
    def weekly(self) -> bool:
        return WEEK_SECONDS in self.periods_seconds


def coarsen(values: FloatArray, factor: int) -> FloatArray:
    """Mean over blocks of `factor` points aligned to the end; all-NaN blocks stay NaN."""
    if factor <= 1:
        return values
    n = (len(values) // factor) * factor
    blocks = values[len(values) - n :].reshape(-1, factor)
    valid = np.isfinite(blocks)
    counts = valid.sum(axis=1)
    sums = np.where(valid, blocks, 0.0).sum(axis=1)
    out = np.full(len(blocks), np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


# Above this a value's square (and a sum of them) comes near the float limit. Only such
# series are rescaled, so every other verdict is computed exactly as before.
HUGE_VALUE = 1e100


def autocorrelation(values: FloatArray) -> FloatArray:
    """Unbiased autocorrelation at every lag (missing points count as the mean)."""
    x = np.where(np.isfinite(values), values, np.nan)
    mean = np.nanmean(x) if np.isfinite(x).any() else 0.0
    x = np.nan_to_num(x - mean, nan=0.0)
    n = len(x)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x, size)
    raw = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n]
    if raw[0] <= 0:
        return np.zeros(n)
    acf: FloatArray = (raw / (n - np.arange(n))) / (raw[0] / n)
    return acf


def _without_glitches(x: FloatArray, day_lag: int) -> FloatArray:
    """`x` with glitches clipped (see SPIKE_FACTOR), or `x` itself when it has none."""
    whole = (len(x) // day_lag) * day_lag
    if whole < 2 * day_lag:
        return x
    days = x[len(x) - whole :].reshape(-1, day_lag)
    peaks = np.where(np.isfinite(days), days, -np.inf).max(axis=1)
    peaks = peaks[np.isfinite(peaks)]
    typical = float(np.median(peaks)) if len(peaks) else 0.0
    if not typical > 0.0:
        return x
    clipped: FloatArray = np.minimum(x, SPIKE_FACTOR * typical)  # NaN stays NaN
    if float(np.nanvar(clipped)) >= (1.0 - GLITCH_VARIANCE_SHARE) * float(np.nanvar(x)):
        return x
    return clipped


def _detrended(x: FloatArray) -> FloatArray:
    """`x` less its least-squares line (missing points stay missing)."""
    finite = np.isfinite(x)
    t = np.arange(len(x), dtype=np.float64)
    slope, intercept = np.polyfit(t[finite], x[finite], 1)
    out: FloatArray = x - (slope * t + intercept)
    return out


def _trend_only(x: FloatArray, lags: dict[float, int]) -> dict[float, float]:
    """For each period's lag, the autocorrelation left once the series' line is taken out.

    A series that grows or shrinks over the window correlates with itself at
    every lag, and its leakage fills the periodogram's low frequencies, where a
    day's harmonics (24, 12, 8, 6 h) sit: a plain trend passes both tests. A
    period found that way but gone without the line was the trend's.
    """
    spread = float(np.nanstd(x))
    rest = _detrended(x)
    if not float(np.nanstd(rest)) > 1e-9 * spread:  # a straight line: nothing repeats
        return dict.fromkeys(lags, 0.0)
    acf = autocorrelation(rest)
    return {period: float(acf[lag]) for period, lag in lags.items()}


def _fft_periods(x: FloatArray, step: float) -> tuple[float, ...]:
    filled = np.nan_to_num(x - np.nanmean(x), nan=0.0)
    power = np.abs(np.fft.rfft(filled)) ** 2
    if len(power) < 4:
        return ()
    # Bins 0 and 1 are the mean and the trend over the whole window.
    inner = power[2:-1]
    is_peak = (inner >= power[1:-2]) & (inner >= power[3:])
    peaks = np.flatnonzero(is_peak) + 2
    best = peaks[np.argsort(power[peaks], kind="stable")[::-1][:FFT_CANDIDATES]]
    return tuple(float(len(x) * step / k) for k in best)


def _threshold(n: int, lag: int) -> float:
    return max(MIN_ACF, SIGNIFICANCE / float(np.sqrt(max(n - lag, 1))))


def _acf_at(acf: FloatArray, lag: int) -> float | None:
    """ACF at `lag` if it is a local maximum within +-5 %, else its value capped below MIN_ACF."""
    if lag < 2 or lag >= len(acf) - 1:
        return None
    width = max(1, lag // 20)
    lo, hi = max(1, lag - width), min(len(acf) - 1, lag + width)
    value = float(acf[lag])
    # A lag that is not near the local peak is the slope of some other
    # period's correlation, not evidence for this one.
    if float(acf[lo : hi + 1].max()) > value + 0.1:
        return min(value, MIN_ACF - 1e-9)
    return value


def detect(values: npt.ArrayLike, step_seconds: float) -> Periodicity:
    """Find daily and weekly periods in a regular series (NaN marks missing points)."""
    y = np.asarray(values, dtype=np.float64)
    known = np.isfinite(y)
    largest = float(np.max(np.abs(y[known]))) if known.any() else 0.0
    if largest > HUGE_VALUE:
        # The verdict does not depend on the unit, and sums and squares of values this
        # large overflow (the hourly means, the variance, the periodogram): judge the
        # series in units of its peak.
        y = y / largest
    factor = max(1, int(COARSE_STEP_SECONDS // step_seconds))
    x = coarsen(y, factor)
    step = step_seconds * factor
    finite = np.isfinite(x)
    if finite.sum() < 8 or float(np.nanstd(x)) == 0.0:
        return Periodicity((), None, None, (), "series is constant or nearly empty")
    day_lag = round(DAY_SECONDS / step)
    x = _without_glitches(x, day_lag)
    # The periodogram over a whole number of days: over 5.5 days the daily frequency falls
    # between two bins (26.4 h and 22 h) and neither is near a day.
    whole = (len(x) // day_lag) * day_lag
    fft_periods = _fft_periods(x[len(x) - whole :] if whole >= 2 * day_lag else x, step)
    acf = autocorrelation(x)
    week_lag = round(WEEK_SECONDS / step)
    span_days = len(x) * step / DAY_SECONDS
    # The ACF at a lag needs a good share of overlap to mean anything.
    daily_acf = _acf_at(acf, day_lag) if len(x) >= 2 * day_lag else None
    weekly_acf = _acf_at(acf, week_lag) if len(x) >= week_lag + 2 * day_lag else None

    def near(period: float, target: float) -> bool:
        return abs(period - target) <= 0.06 * target

    fft_daily = any(near(p, DAY_SECONDS / m) for p in fft_periods for m in (1, 2, 3, 4))
    # Each period: (its lag, its autocorrelation) once the tests on the series as it is
    # pass; else the reason it failed.
    passed: dict[float, tuple[int, float]] = {}
    failed: dict[float, str] = {}
    if daily_acf is None:
        failed[DAY_SECONDS] = (
            f"history of {span_days:.1f} days is too short to verify a daily period"
        )
    elif not fft_daily:
        failed[DAY_SECONDS] = "no daily harmonic among the periodogram peaks"
    elif daily_acf < (daily_floor := _threshold(len(x), day_lag)):
        failed[DAY_SECONDS] = f"daily autocorrelation {daily_acf:.2f} below {daily_floor:.2f}"
    else:
        passed[DAY_SECONDS] = (day_lag, daily_acf)
    if weekly_acf is not None:
        floor = _threshold(len(x), week_lag)
        if daily_acf is not None:
            floor = max(floor, daily_acf + WEEKLY_MARGIN)
        if weekly_acf >= floor:
            passed[WEEK_SECONDS] = (week_lag, weekly_acf)
        else:
            failed[WEEK_SECONDS] = f"weekly autocorrelation {weekly_acf:.2f} below {floor:.2f}"
    without_trend = _trend_only(x, {p: lag for p, (lag, _) in passed.items()}) if passed else {}
    periods: list[float] = []
    reasons: list[str] = []
    for period in (DAY_SECONDS, WEEK_SECONDS):
        name = "daily" if period == DAY_SECONDS else "weekly"
        if period in failed:
            reasons.append(failed[period])
        elif period in passed:
            lag, acf_value = passed[period]
            if without_trend[period] < _threshold(len(x), lag):
                reasons.append(
                    f"{name} autocorrelation {acf_value:.2f} is a trend's: "
                    f"{without_trend[period]:.2f} without it"
                )
            else:
                periods.append(period)
                reasons.append(f"{name} autocorrelation {acf_value:.2f}")
    return Periodicity(tuple(periods), daily_acf, weekly_acf, fft_periods, "; ".join(reasons))
