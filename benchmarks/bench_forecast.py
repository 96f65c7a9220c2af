"""Forecast quality and speed: tidescaler's forecaster against baselines and MSTL.

Run with `python benchmarks/bench_forecast.py` (needs the `bench` extra for
statsforecast's MSTL; `--no-mstl` runs without it). For every trace in the
traces directory and for synthetic tides (peak/valley 10 and 100, noise,
flash crowds, outages, a level shift, a tenfold jump at 09:00 every
weekday), forecasts are made from rolling origins (every `--stride` once
`--min-history` is known) and scored 10
minutes (the engine's lead time), an hour and a day ahead (a series whose
step is longer than 10 minutes has no 10-minute row): sMAPE, MASE and
under-prediction rate of the forecaster (method `tidescaler`) and of
seasonal naive (day, week), level-adjusted seasonal naive (day, week: the
same time yesterday / last week scaled by the last hour's level against what
that time had then) and MSTL; coverage of the
forecaster's band; the fit-plus-forecast time per series (median of
repeats). The Markdown report is printed and written to
benchmarks/results/forecast.md.

MSTL (statsforecast, daily season plus weekly once two weeks are known,
AutoETS trend) is fit on 15-minute means for series with finer steps, and
its forecast of a 15-minute bucket stands for every interval in it: at one
minute a single fit takes 30 s (daily) to over 5 minutes (daily + weekly).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic_series import Tide, generate

from scaler.forecast import backtest, forecaster
from scaler.forecast.models import FloatArray, SeasonalProfile
from scaler.forecast.periodicity import DAY_SECONDS, WEEK_SECONDS, coarsen
from scaler.sim.traffic import OpeningSpec, opening
from scaler.traces import Trace, read_trace

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACES = REPO.parent / "shared" / "traces"
RESULTS = REPO / "benchmarks" / "results" / "forecast.md"
# 10 minutes stands for the lead time (pod start-up plus polling) the engine
# reads the band at; an hour and a day for planning.
HORIZONS = (600.0, 3600.0, DAY_SECONDS)
MSTL_STEP_SECONDS = 900.0
HISTORY_SECONDS = 28 * DAY_SECONDS
MSTL_PEER = "tidescaler_on_mstl_origins"
BASELINES = (
    "seasonal_naive_day",
    "seasonal_naive_week",
    "level_naive_day",
    "level_naive_week",
    "mstl",
)

SYNTHETIC = {
    "synthetic_pv10_poisson": Tide(
        days=21, step_seconds=300, valley=20, peak_to_valley=10, weekend_factor=0.6
    ),
    "synthetic_pv100_noisy": Tide(
        days=21,
        step_seconds=300,
        valley=2,
        peak_to_valley=100,
        weekend_factor=0.7,
        relative_noise=0.15,
    ),
    "synthetic_flash_outage": Tide(
        days=21,
        step_seconds=300,
        valley=30,
        peak_to_valley=10,
        relative_noise=0.1,
        flash_crowds=15,
        outages=8,
    ),
    "synthetic_level_shift": Tide(
        days=21,
        step_seconds=300,
        valley=30,
        peak_to_valley=10,
        relative_noise=0.1,
        level_shift_day=15.0,
        level_shift_factor=1.6,
    ),
}


@dataclass(frozen=True)
class Row(backtest.Score):
    """A backtest score of one series."""

    series: str = ""
    # Band coverage where the forecast median is in its lowest / highest
    # third: a band that holds only on average is too narrow in one of them.
    coverage_low: float | None = None
    coverage_high: float | None = None


@dataclass(frozen=True, eq=False)
class Targets:
    """What one method forecast for each target of one series and horizon, for the intervals."""

    index: np.ndarray  # target position on the trace's grid
    day: np.ndarray  # day of the target since the trace began: the bootstrap's block
    median: FloatArray
    terms: FloatArray  # sMAPE term of each target, percent
    hits: np.ndarray | None  # target at or below the band (the forecaster only)

    @classmethod
    def of(
        cls, trace: Trace, index: np.ndarray, median: FloatArray, upper: FloatArray | None
    ) -> Targets:
        actual = trace.values[index]
        day = (index * trace.step_seconds // DAY_SECONDS).astype(np.int64)
        hits = None if upper is None else actual <= upper
        return cls(index, day, median, backtest.smape_terms(actual, median), hits)

    def coverage_by_level(self) -> tuple[float | None, float | None]:
        """Coverage where the median is in its lowest and in its highest third."""
        if self.hits is None or len(self.median) == 0:
            return None, None
        low, high = np.quantile(self.median, [1 / 3, 2 / 3])
        return (
            float(np.mean(self.hits[self.median <= low])),
            float(np.mean(self.hits[self.median >= high])),
        )


Key = tuple[str, float, str]  # series, horizon, method


@dataclass(frozen=True)
class Job:
    name: str
    trace: Trace
    stride_seconds: float
    min_history_seconds: float
    quantile: float
    mstl_every: int  # 0: no MSTL
    mstl_min_origins: int


def mstl_forecasts(y: FloatArray, step: float, origins: np.ndarray, steps: list[int]) -> FloatArray:
    """MSTL forecasts from each origin at each horizon (in native steps)."""
    from statsforecast.models import MSTL

    factor = max(1, int(MSTL_STEP_SECONDS // step))
    coarse_step = step * factor
    day = round(DAY_SECONDS / coarse_step)
    week = round(WEEK_SECONDS / coarse_step)
    keep = int(HISTORY_SECONDS // step)
    out = np.full((len(origins), len(steps)), np.nan)
    for i, o in enumerate(origins.tolist()):
        hist = coarsen(y[max(0, o + 1 - keep) : o + 1], factor)
        seasons = [day, week] if len(hist) >= 2 * week else [day]
        h = math.ceil(max(steps) / factor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fc = MSTL(season_length=seasons).forecast(hist, h=h)["mean"]
        for j, k in enumerate(steps):
            out[i, j] = max(float(fc[(k - 1) // factor]), 0.0)
    return out


def evaluate(job: Job) -> tuple[list[Row], dict[Key, Targets]]:
    trace = job.trace
    y = trace.values
    step = trace.step_seconds
    result = backtest.run(
        trace,
        HORIZONS,
        quantile=job.quantile,
        stride_seconds=job.stride_seconds,
        min_history_seconds=job.min_history_seconds,
        history_seconds=HISTORY_SECONDS,
    )
    rows = []
    targets: dict[Key, Targets] = {}
    for s in result.scores:
        if s.method != "last_value":
            fc = result.forecasts[(s.horizon_seconds, s.method)]
            k = round(s.horizon_seconds / step)
            index = np.round((fc.origins - trace.timestamps[0]) / step).astype(np.int64) + k
            ok = (index < len(y)) & np.isfinite(fc.median)
            upper = None if fc.upper is None else fc.upper[ok]
            mine = Targets.of(trace, index[ok], fc.median[ok], upper)
            targets[(job.name, s.horizon_seconds, s.method)] = mine
            low, high = mine.coverage_by_level()
            rows.append(Row(**asdict(s), series=job.name, coverage_low=low, coverage_high=high))
    steps = [round(h / step) for h in result.horizons_seconds]
    first = result.forecasts[(result.horizons_seconds[0], backtest.TIDESCALER)]
    origins = np.round((first.origins - trace.timestamps[0]) / step).astype(np.int64)
    level_window = max(3, round(3600.0 / step))
    extra: dict[str, FloatArray] = {}
    for tag, seconds in (("day", DAY_SECONDS), ("week", WEEK_SECONDS)):
        model = SeasonalProfile(round(seconds / step), level_window=level_window)
        extra[f"level_naive_{tag}"] = model.rolling(y, origins, np.asarray(steps, dtype=np.int64))
    for method, table in extra.items():
        rows += _rows(job.name, method, trace, origins, table, result, steps, targets)
    if job.mstl_every > 0:
        # MSTL is slow: it is scored on every n-th origin, and so is the
        # forecaster again, so that the two meet on the same targets.
        # ... but never on so few that the comparison is a draw of luck: a
        # short trace gets MSTL from more origins (every one if need be).
        every = max(1, min(job.mstl_every, len(origins) // max(1, job.mstl_min_origins)))
        picked = np.arange(0, len(origins), every)
        rows += _rows(
            job.name,
            "mstl",
            trace,
            origins[picked],
            mstl_forecasts(y, step, origins[picked], steps),
            result,
            steps,
            targets,
        )
        own = np.column_stack(
            [
                _pad(result.forecasts[(h, backtest.TIDESCALER)].median, len(origins))
                for h in result.horizons_seconds
            ]
        )
        rows += _rows(
            job.name, MSTL_PEER, trace, origins[picked], own[picked], result, steps, targets
        )
    return rows, targets


def _pad(values: FloatArray, n: int) -> FloatArray:
    out = np.full(n, np.nan)
    out[: len(values)] = values
    return out


def _rows(
    name: str,
    method: str,
    trace: Trace,
    origins: np.ndarray,
    table: FloatArray,
    result: backtest.BacktestResult,
    steps: list[int],
    targets: dict[Key, Targets],
) -> list[Row]:
    y = trace.values
    rows = []
    for j, (h, k) in enumerate(zip(result.horizons_seconds, steps, strict=True)):
        ok = (origins + k < len(y)) & np.isfinite(table[:, j])
        s = backtest.score(h, method, y[origins[ok] + k], table[ok, j], None, result.mase_scale)
        rows.append(Row(**asdict(s), series=name))
        targets[(name, h, method)] = Targets.of(trace, origins[ok] + k, table[ok, j], None)
    return rows


def fit_seconds(y: FloatArray, step: float, repeats: int) -> float:
    """Median wall time of fit plus a one-day forecast on the last 14 days."""
    tail = y[-round(14 * DAY_SECONDS / step) :]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forecaster.fit(tail, step, quantile=0.95, now=0.0).forecast(DAY_SECONDS)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def opening_trace() -> Trace:
    """Three weeks at one-minute steps that jump tenfold at 09:00 every weekday
    (`simulations/synthetic-opening.yaml`'s traffic): a step at a minute history tells."""
    traffic = opening(OpeningSpec(days=21), seed=15)
    counts = traffic.rate_per_second * traffic.step_seconds
    times = traffic.start + np.arange(len(counts), dtype=np.float64) * traffic.step_seconds
    return Trace(times, counts, traffic.step_seconds, "synthetic_opening")


def synthetic_trace(name: str, tide: Tide, seed: int) -> Trace:
    y = generate(tide, np.random.default_rng(seed))
    times = 1_700_000_000.0 + np.arange(len(y), dtype=np.float64) * tide.step_seconds
    return Trace(times, y, tide.step_seconds, name)


# ----------------------------------------------------------------- report


def _label(seconds: float) -> str:
    for unit, size in (("d", DAY_SECONDS), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _pct(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


BOOTSTRAP_RESAMPLES = 2000


def _day_sums(day: np.ndarray, values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Sum and count of `values` per day: the blocks the bootstrap resamples."""
    _, block = np.unique(day, return_inverse=True)
    sums: FloatArray = np.bincount(block, values).astype(np.float64)
    return sums, np.bincount(block).astype(np.float64)


def block_interval(day: np.ndarray, values: FloatArray, level: float = 0.9) -> tuple[float, float]:
    """Interval of the mean of `values` by a bootstrap that resamples whole days.

    Neighbouring targets share their errors (a bad day misses many at once),
    so resampling targets one by one would give intervals far too narrow.
    """
    sums, counts = _day_sums(day, values)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(sums), size=(BOOTSTRAP_RESAMPLES, len(sums)))
    means = sums[pick].sum(axis=1) / np.maximum(counts[pick].sum(axis=1), 1.0)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def paired_difference(a: Targets, b: Targets) -> tuple[float, float, float]:
    """Mean sMAPE of `a` minus that of `b` on the targets both forecast, and its 90 % interval."""
    common, ia, ib = np.intersect1d(a.index, b.index, return_indices=True)
    diff = a.terms[ia] - b.terms[ib]
    if len(common) == 0:
        return math.nan, math.nan, math.nan
    low, high = block_interval(a.day[ia], diff)
    return float(diff.mean()), low, high


def render(
    rows: list[Row],
    targets: dict[Key, Targets],
    timings: dict[str, float],
    budget: dict[str, float],
    args: argparse.Namespace,
    command: str,
) -> str:
    series = list(dict.fromkeys(r.series for r in rows))
    by = {(r.series, r.horizon_seconds, r.method): r for r in rows}
    lines = [
        "# Forecast benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Rolling origins every {args.stride_hours:g} h after {args.min_history_days:g} days of "
        f"history (forecaster history capped at 28 days), band quantile {args.quantile:g}. "
        "sMAPE in percent, under = share of targets above the forecast median, coverage = share "
        "at or below the upper band, over all targets and where the forecast median is in its "
        "lowest / highest third (the valley and the peak). MSTL is fit on 15-minute means where "
        "the step is finer, "
        f"from every {args.mstl_every}th origin only (from more where that would leave fewer "
        f"than {args.mstl_min_origins}: every origin on the 14-day traces); where MSTL is the "
        "best baseline the "
        f"forecaster is compared on those same origins (`{MSTL_PEER}`). The 10-minute horizon is "
        "the lead time the engine reads the band at; clarknet_1995 has hourly steps and no "
        "10-minute row.",
        "",
        "## Summary: sMAPE of the forecaster against the best baseline",
        "",
        "| series | horizon | tidescaler | best baseline | its sMAPE | tidescaler on its origins "
        "| beats it | difference (90 % interval) | coverage % (90 % interval) | low / high third "
        "| n | n (MSTL) |",
        "|---|---|---:|---|---:|---:|:---:|---:|---:|---:|---:|---:|",
    ]
    clear_wins = clear_losses = outside = 0
    wins = total = near = 0
    cov_all: list[tuple[float, int]] = []
    cov_thirds: list[tuple[float, float, int]] = []
    for name in series:
        for h in HORIZONS:
            ts = by.get((name, h, backtest.TIDESCALER))
            if ts is None:
                continue
            candidates = [by[(name, h, m)] for m in BASELINES if (name, h, m) in by]
            best = min(candidates, key=lambda r: r.smape)
            peer = by.get((name, h, MSTL_PEER)) if best.method == "mstl" else None
            win = (peer or ts).smape < best.smape
            wins += win
            total += 1
            if ts.coverage is not None:
                cov_all.append((ts.coverage, ts.count))
                near += abs(ts.coverage - args.quantile) <= 0.02
            if ts.coverage_low is not None and ts.coverage_high is not None:
                cov_thirds.append((ts.coverage_low, ts.coverage_high, ts.count))
            own = targets[(name, h, MSTL_PEER if peer else backtest.TIDESCALER)]
            diff, d_low, d_high = paired_difference(own, targets[(name, h, best.method)])
            clear_wins += d_high < 0
            clear_losses += d_low > 0
            mine = targets[(name, h, backtest.TIDESCALER)]
            coverage_interval = ""
            if mine.hits is not None:
                c_low, c_high = block_interval(mine.day, mine.hits.astype(np.float64))
                outside += not c_low <= args.quantile <= c_high
                coverage_interval = f" ({100 * c_low:.1f}–{100 * c_high:.1f})"
            lines.append(
                f"| {name} | {_label(h)} | {ts.smape:.1f} | {best.method} | {best.smape:.1f} | "
                f"{f'{peer.smape:.1f}' if peer else ''} | {'yes' if win else 'no'} | "
                f"{diff:+.1f} ({d_low:+.1f}, {d_high:+.1f}) | "
                f"{_pct(ts.coverage)}{coverage_interval} | "
                f"{_pct(ts.coverage_low)} / {_pct(ts.coverage_high)} | "
                f"{ts.count} | {peer.count if peer else ''} |"
            )
    pooled = sum(c * n for c, n in cov_all) / max(sum(n for _, n in cov_all), 1)
    thirds_n = max(sum(n for _, _, n in cov_thirds), 1)
    pooled_low = sum(lo * n for lo, _, n in cov_thirds) / thirds_n
    pooled_high = sum(hi * n for _, hi, n in cov_thirds) / thirds_n
    lines += [
        "",
        f"The forecaster beats the best baseline on sMAPE in {wins} of {total} (series, horizon) "
        f"pairs; pooled band coverage {100 * pooled:.1f} % (nominal {100 * args.quantile:g} %); "
        f"{near} of {total} pairs within 2 points of nominal; pooled coverage where the forecast "
        f"is in its lowest third {100 * pooled_low:.1f} %, in its highest third "
        f"{100 * pooled_high:.1f} %.",
        "",
        "Intervals come from a bootstrap that resamples whole days of targets "
        f"({BOOTSTRAP_RESAMPLES} resamples), because neighbouring targets share their errors. "
        "The difference is the forecaster's sMAPE minus the best baseline's on the targets both "
        f"forecast: its interval lies wholly below zero in {clear_wins} of {total} pairs and "
        f"wholly above in {clear_losses}. The nominal {100 * args.quantile:g} % lies outside the "
        f"coverage interval in {outside} of {total} pairs.",
        "",
        "## All methods",
        "",
        "| series | horizon | method | sMAPE | MASE | under % | coverage % | n |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in series:
        for h in HORIZONS:
            for method in (backtest.TIDESCALER, *BASELINES, MSTL_PEER):
                r = by.get((name, h, method))
                if r is not None:
                    lines.append(
                        f"| {name} | {_label(h)} | {method} | {r.smape:.1f} | {r.mase:.3f} | "
                        f"{_pct(r.under_rate)} | {_pct(r.coverage)} | {r.count} |"
                    )
    lines += [
        "",
        "## Fit plus one-day forecast, last 14 days of each series (median of repeats)",
        "",
        "| series | points | ms |",
        "|---|---:|---:|",
    ]
    for name, seconds in {**timings, **budget}.items():
        points = name.split("|")[1] if "|" in name else ""
        lines.append(f"| {name.split('|')[0]} | {points} | {1000 * seconds:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--traces-dir", type=Path, default=DEFAULT_TRACES)
    parser.add_argument("--stride-hours", type=float, default=1.0)
    parser.add_argument("--min-history-days", type=float, default=7.0)
    parser.add_argument("--quantile", type=float, default=0.95)
    parser.add_argument("--repeats", type=int, default=7, help="timing repeats per series")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-mstl", action="store_true", help="skip statsforecast's MSTL")
    parser.add_argument(
        "--mstl-every", type=int, default=6, help="fit MSTL on every n-th origin only (default 6)"
    )
    parser.add_argument(
        "--mstl-min-origins",
        type=int,
        default=100,
        help="fit MSTL on more origins where every n-th would leave fewer than this (default 100)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    use_mstl = not args.no_mstl
    mstl_every = args.mstl_every if use_mstl else 0
    if use_mstl:
        try:
            import statsforecast  # noqa: F401
        except ImportError:
            print(
                "statsforecast is missing: pip install '.[bench]' or pass --no-mstl",
                file=sys.stderr,
            )
            return 2

    series = [(path.stem, read_trace(path)) for path in sorted(args.traces_dir.glob("*.csv"))]
    series += [
        (name, synthetic_trace(name, tide, seed))
        for seed, (name, tide) in enumerate(SYNTHETIC.items())
    ]
    series.append(("synthetic_opening", opening_trace()))
    jobs = [
        Job(
            name,
            trace,
            args.stride_hours * 3600,
            args.min_history_days * DAY_SECONDS,
            args.quantile,
            mstl_every,
            args.mstl_min_origins,
        )
        for name, trace in series
    ]

    rows: list[Row] = []
    targets: dict[Key, Targets] = {}
    started = time.perf_counter()
    run: Callable[[Job], tuple[list[Row], dict[Key, Targets]]] = evaluate
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        for job, result in zip(jobs, pool.map(run, jobs), strict=True):
            rows.extend(result[0])
            targets.update(result[1])
            print(f"{job.name}: done at {time.perf_counter() - started:.0f}s", file=sys.stderr)

    # Timings run alone in this process, after the pool is gone.
    timings = {}
    for job in jobs:
        points = min(len(job.trace.values), round(14 * DAY_SECONDS / job.trace.step_seconds))
        seconds = fit_seconds(job.trace.values, job.trace.step_seconds, args.repeats)
        timings[f"{job.name}|{points}"] = seconds
    minute = generate(Tide(days=14, step_seconds=60, weekend_factor=0.6), np.random.default_rng(99))
    budget = {
        f"synthetic 14 days at 1 min (target < 50 ms)|{len(minute)}": fit_seconds(
            minute, 60.0, args.repeats
        )
    }
    command = "python benchmarks/bench_forecast.py" + (" --no-mstl" if args.no_mstl else "")
    report = render(rows, targets, timings, budget, args, command)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
