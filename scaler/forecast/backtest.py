"""`tidescaler backtest`: score the forecaster on a trace, against baselines.

Rolling origin: every `stride` from the point where `min_history` of the
trace is known, the forecaster is fit on the history up to that origin (the
last observation it may use) and its forecast is read at each horizon; the
target is `origin + horizon` on the trace's grid. The baselines make the same
forecasts from the same origins: seasonal naive at a day and at a week (the
same time yesterday / last week) and the last value.

Scores per (horizon, method): sMAPE in percent (200 |a - f| / (|a| + |f|),
0 when both are 0), MASE (mean absolute error over the mean absolute change
from one day to the next in the history before the first origin, lag 1
when the step does not divide a day), under-prediction rate (share of
targets above the forecast median) and coverage (share at or below the upper
band; the forecaster only). Every forecast the forecaster made can be written
to a CSV so that anyone can recompute the scores from the trace.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scaler.cli_support import make_folder
from scaler.forecast.forecaster import DEFAULT_SETTINGS, ForecasterSettings, InsufficientHistory
from scaler.forecast.forecaster import fit as fit_forecaster
from scaler.forecast.models import FloatArray
from scaler.forecast.periodicity import DAY_SECONDS, WEEK_SECONDS
from scaler.traces import Trace, TraceError

TIDESCALER = "tidescaler"
BASELINES = ("seasonal_naive_day", "seasonal_naive_week", "last_value")


@dataclass(frozen=True)
class Score:
    """Scores of one method at one horizon."""

    horizon_seconds: float
    method: str
    smape: float
    mase: float
    under_rate: float
    coverage: float | None
    count: int


@dataclass(frozen=True, eq=False)
class MethodForecasts:
    """Forecasts of one method at one horizon: one entry per origin (NaN where undefined)."""

    origins: FloatArray  # timestamps of the origins
    median: FloatArray
    upper: FloatArray | None


@dataclass(frozen=True, eq=False)
class BacktestResult:
    trace: Trace
    quantile: float
    horizons_seconds: tuple[float, ...]
    origin_count: int
    mase_scale: float
    scores: tuple[Score, ...]
    forecasts: dict[tuple[float, str], MethodForecasts]
    models_used: dict[str, int]


# ----------------------------------------------------------------- scoring


def smape_terms(actual: FloatArray, forecast: FloatArray) -> FloatArray:
    """Each point's share of sMAPE, in percent; a point where both are 0 counts as 0."""
    denom = np.abs(actual) + np.abs(forecast)
    terms = np.zeros(len(actual))
    np.divide(200.0 * np.abs(actual - forecast), denom, out=terms, where=denom > 0)
    return terms


def smape(actual: FloatArray, forecast: FloatArray) -> float:
    """Symmetric MAPE in percent; a point where both are 0 counts as 0."""
    terms = smape_terms(actual, forecast)
    return float(terms.mean()) if len(terms) else math.nan


def mase_scale(values: FloatArray, step_seconds: float) -> float:
    """Mean absolute change over one season (a day if the step divides it, else 1 step)."""
    lag = round(DAY_SECONDS / step_seconds)
    if not math.isclose(lag * step_seconds, DAY_SECONDS) or len(values) <= 2 * lag:
        lag = 1
    diffs = np.abs(values[lag:] - values[:-lag])
    return float(diffs.mean()) if len(diffs) else math.nan


def score(
    horizon_seconds: float,
    method: str,
    actual: FloatArray,
    median: FloatArray,
    upper: FloatArray | None,
    scale: float,
) -> Score:
    ok = np.isfinite(median)
    a, f = actual[ok], median[ok]
    coverage = None
    if upper is not None:
        coverage = float(np.mean(a <= upper[ok])) if len(a) else math.nan
    return Score(
        horizon_seconds=horizon_seconds,
        method=method,
        smape=smape(a, f),
        mase=float(np.mean(np.abs(a - f)) / scale) if len(a) and scale > 0 else math.nan,
        under_rate=float(np.mean(a > f)) if len(a) else math.nan,
        coverage=coverage,
        count=len(a),
    )


# ----------------------------------------------------------------- running


def seasonal_naive_at(
    values: FloatArray, origins: np.ndarray, steps: int, period: int
) -> FloatArray:
    """Same phase of the most recent period known at each origin (NaN before the trace)."""
    lag = period * math.ceil(steps / period)
    idx = origins + steps - lag
    return np.where(idx >= 0, values[np.clip(idx, 0, None)], np.nan)


def run(
    trace: Trace,
    horizons_seconds: Sequence[float],
    *,
    quantile: float = 0.95,
    stride_seconds: float = 3600.0,
    min_history_seconds: float = WEEK_SECONDS,
    history_seconds: float = 28 * DAY_SECONDS,
    settings: ForecasterSettings = DEFAULT_SETTINGS,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Rolling-origin backtest of the forecaster and the baselines on `trace`."""
    step = trace.step_seconds
    y = trace.values
    n = len(y)
    steps_of = sorted({max(1, math.ceil(h / step - 1e-9)) for h in horizons_seconds})
    horizons = tuple(k * step for k in steps_of)
    first = max(math.ceil(min_history_seconds / step) - 1, 0)
    stride = max(1, round(stride_seconds / step))
    # A first origin past the trace leaves none (and one past int64, from a history such
    # as 1e300 s, would overflow the range below).
    origins = np.arange(min(first, n - 1), n - 1, stride, dtype=np.int64)
    origins = origins[origins + steps_of[0] < n]
    if len(origins) == 0:
        raise TraceError(
            f"{trace.name}: {n} rows ({n * step / DAY_SECONDS:.1f} days) leave no origin after "
            f"{min_history_seconds / DAY_SECONDS:g} days of history; use a longer trace or "
            "a shorter --min-history"
        )
    max_steps = steps_of[-1]
    keep = max(1, int(history_seconds // step))
    median = np.full((len(origins), len(steps_of)), np.nan)
    upper = np.full((len(origins), len(steps_of)), np.nan)
    models_used: dict[str, int] = {}
    for i, o in enumerate(origins.tolist()):
        history = y[max(0, o + 1 - keep) : o + 1]
        now = float(trace.timestamps[o]) + step
        try:
            fitted = fit_forecaster(history, step, quantile=quantile, now=now, settings=settings)
        except InsufficientHistory:
            continue
        fc = fitted.forecast(max_steps * step)
        models_used[fc.model] = models_used.get(fc.model, 0) + 1
        for j, k in enumerate(steps_of):
            # The forecast point whose interval holds the target interval's start.
            idx = math.floor(((k - 1) * step) / fc.step_seconds + 1e-9)
            if idx < len(fc.median):
                median[i, j] = fc.median[idx]
                upper[i, j] = fc.upper[idx]
        if progress is not None:
            progress(i + 1, len(origins))

    scale = mase_scale(y[: first + 1], step)
    day = round(DAY_SECONDS / step)
    week = round(WEEK_SECONDS / step)
    scores: list[Score] = []
    forecasts: dict[tuple[float, str], MethodForecasts] = {}
    for j, k in enumerate(steps_of):
        valid = origins + k < n
        at = origins[valid]
        actual = y[at + k]
        methods: dict[str, tuple[FloatArray, FloatArray | None]] = {
            TIDESCALER: (median[valid, j], upper[valid, j]),
        }
        if math.isclose(day * step, DAY_SECONDS):
            methods["seasonal_naive_day"] = (seasonal_naive_at(y, at, k, day), None)
            methods["seasonal_naive_week"] = (seasonal_naive_at(y, at, k, week), None)
        methods["last_value"] = (y[at].astype(np.float64), None)
        for method, (med, up) in methods.items():
            scores.append(score(horizons[j], method, actual, med, up, scale))
            forecasts[(horizons[j], method)] = MethodForecasts(trace.timestamps[at], med, up)
    return BacktestResult(
        trace=trace,
        quantile=quantile,
        horizons_seconds=horizons,
        origin_count=len(origins),
        mase_scale=scale,
        scores=tuple(scores),
        forecasts=forecasts,
        models_used=models_used,
    )


# ------------------------------------------------------------------ output


def write_forecasts_csv(result: BacktestResult, path: str | Path) -> None:
    """Every forecast of the forecaster: origin,target,horizon_seconds,median,upper."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["origin", "target", "horizon_seconds", "median", "upper"])
        for h in result.horizons_seconds:
            fc = result.forecasts[(h, TIDESCALER)]
            assert fc.upper is not None
            for origin, med, up in zip(fc.origins, fc.median, fc.upper, strict=True):
                if np.isfinite(med):
                    writer.writerow(
                        [
                            f"{origin:.0f}",
                            f"{origin + h:.0f}",
                            f"{h:g}",
                            repr(float(med)),
                            repr(float(up)),
                        ]
                    )


def result_json(result: BacktestResult) -> dict[str, object]:
    def clean(value: object) -> object:
        return None if isinstance(value, float) and not math.isfinite(value) else value

    return {
        "trace": result.trace.name,
        "step_seconds": result.trace.step_seconds,
        "quantile": result.quantile,
        "origins": result.origin_count,
        "mase_scale": clean(result.mase_scale),
        "models_used": result.models_used,
        "results": [{k: clean(v) for k, v in asdict(s).items()} for s in result.scores],
    }


def plot(result: BacktestResult, out_dir: str | Path) -> Path:
    """PNG of actuals, forecast median and band at each horizon over the backtest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    make_folder(out)
    trace = result.trace
    horizons = result.horizons_seconds
    fig, axes = plt.subplots(len(horizons), 1, figsize=(12, 3.2 * len(horizons)), squeeze=False)
    for ax, h in zip(axes[:, 0], horizons, strict=True):
        fc = result.forecasts[(h, TIDESCALER)]
        targets = fc.origins + h
        lo = fc.origins[0] if len(fc.origins) else trace.timestamps[0]
        shown = trace.timestamps >= lo
        days = (trace.timestamps[shown] - lo) / DAY_SECONDS
        ax.plot(days, trace.values[shown], color="0.55", lw=0.6, label="actual")
        t_days = (targets - lo) / DAY_SECONDS
        if fc.upper is not None:
            ax.fill_between(
                t_days,
                fc.median,
                fc.upper,
                color="tab:blue",
                alpha=0.25,
                step="mid",
                label=f"band q={result.quantile:g}",
            )
        ax.plot(t_days, fc.median, color="tab:blue", lw=1.0, label="forecast median")
        ax.set_title(f"{trace.name}: forecast {_label(h)} ahead")
        ax.set_xlabel("days since first origin")
        ax.set_ylabel(f"per {_label(trace.step_seconds)}")
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    path = out / f"backtest_{Path(trace.name).stem}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def render_table(result: BacktestResult) -> object:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"{escape(result.trace.name)}: {result.origin_count} origins, "
        f"band q={result.quantile:g}"
    )
    for col in ("horizon", "method", "sMAPE %", "MASE", "under %", "coverage %", "n"):
        table.add_column(col, justify="left" if col in ("horizon", "method") else "right")

    def shown(value: float, form: str) -> str:
        # No scored origin (n = 0) leaves a score undefined: a dash, as JSON's null.
        return format(value, form) if math.isfinite(value) else "-"

    for s in result.scores:
        table.add_row(
            _label(s.horizon_seconds),
            s.method,
            shown(s.smape, ".1f"),
            shown(s.mase, ".3f"),
            shown(100 * s.under_rate, ".1f"),
            "" if s.coverage is None else f"{100 * s.coverage:.1f}",
            str(s.count),
        )
    return table


# --------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m scaler.forecast.backtest ...`, the same as `tidescaler backtest ...`."""
    from scaler.backtest_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
