"""`tidescaler backtest`: the command line of the forecast backtest (`scaler.forecast.backtest`).

The trace comes from a file (`--trace FILE|-`) or straight from Prometheus
(`--prometheus-url`, `--query`, `--start`, `--end`, `--step`); see
`scaler.trace_input`. The JSON output carries `schema_version` and gives every
score as a ratio (sMAPE in [0, 2], rates and coverage in [0, 1]).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from scaler.cli_support import (
    SCHEMA_VERSION,
    OutputPathError,
    ProgressLines,
    check_not_an_input,
    check_output_dir,
    check_output_file,
    duration_arg,
    error_text,
)
from scaler.durations import parse_duration
from scaler.forecast.backtest import (
    TIDESCALER,
    BacktestResult,
    plot,
    render_table,
    result_json,
    run,
    write_forecasts_csv,
)
from scaler.forecast.forecaster import DEFAULT_SETTINGS
from scaler.policy import DEFAULT_FORECAST_HISTORY_SECONDS, parse_forecast_quantile
from scaler.trace_input import (
    add_trace_source_arguments,
    check_trace_source,
    describe,
    load_trace,
    wants_trace,
)
from scaler.traces import Trace, TraceError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Column

# History that lets the forecaster learn a weekly pattern: two weeks of it.
WEEKLY_HISTORY_SECONDS = 14 * 86400.0


def _duration_list(text: str) -> list[float]:
    try:
        out = [parse_duration(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not out or any(h <= 0 for h in out):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive durations like 10m,1h,1d")
    return out


def _positive_duration(text: str) -> float:
    """A duration above 0 (a stride of 0 would make every interval an origin)."""
    value = duration_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration above 0, e.g. 1h")
    return value


def _quantile(text: str) -> float:
    try:
        return parse_forecast_quantile(text)  # what forecastQuantile accepts
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None


def add_backtest_parser(subparsers: Any) -> None:
    """Add `backtest` to the `tidescaler` command."""
    p = subparsers.add_parser(
        "backtest",
        help="score the forecaster on a trace against seasonal-naive baselines",
        description="Score the forecaster on a trace against baselines (seasonal naive at a "
        "day and a week, last value): rolling-origin forecasts at each horizon, sMAPE, MASE, "
        "under-prediction rate and the coverage of the forecastQuantile band.",
    )
    source = p.add_mutually_exclusive_group()
    add_trace_source_arguments(p, source)
    p.add_argument(
        "--horizons",
        type=_duration_list,
        default="10m,1h,1d",
        help="comma-separated horizons, rounded up to the trace's step (default: %(default)s)",
    )
    p.add_argument(
        "--quantile",
        type=_quantile,
        default=0.95,
        help="quantile of the upper band, forecastQuantile (default: %(default)s)",
    )
    p.add_argument(
        "--stride",
        type=_positive_duration,
        default="1h",
        help="time between forecast origins (default: %(default)s)",
    )
    p.add_argument(
        "--min-history",
        type=duration_arg,
        default="7d",
        help="history before the first origin (default: %(default)s)",
    )
    p.add_argument(
        "--history",
        type=duration_arg,
        default=None,
        help="history the forecaster learns from at each origin (default: the trigger's "
        "forecastHistory with --from-cluster, else 7d, a trigger's own default)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--forecasts-csv",
        metavar="FILE",
        help="write every forecast: origin,target,horizon_seconds,median,upper (default: none)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write a PNG of forecast, band and actuals into this folder (default: none)",
    )
    from scaler.sim.from_cluster import add_from_cluster_arguments

    add_from_cluster_arguments(p)
    p.set_defaults(func=run_backtest)


def rounding_note(horizons: Sequence[float], stride: float, step: float) -> str | None:
    """What --horizons and --stride become on the trace's grid (as `run` rounds them),
    when that is not what was asked: a 10m horizon on an hourly trace is scored at 1h."""
    changed = []
    for horizon in horizons:
        scored = max(1, math.ceil(horizon / step - 1e-9)) * step
        if abs(scored - horizon) > 1e-9 * step:
            changed.append(f"--horizons {_label(horizon)} is scored at {_label(scored)}")
    taken = max(1, round(stride / step)) * step
    if abs(taken - stride) > 1e-9 * step:
        changed.append(f"--stride {_label(stride)} is {_label(taken)}")
    if not changed:
        return None
    return f"note: on this trace's {_label(step)} grid " + ", ".join(changed)


def fine_step_note(step: float) -> str | None:
    """Said when the trace is finer than the forecaster's own step: it learns (and sets
    its band on) averages over that step, while each forecast is scored against one
    interval of the trace, which is noisier than the average: the band covers less."""
    coarsest = DEFAULT_SETTINGS.min_step_seconds
    if step >= coarsest:
        return None
    factor = int(coarsest // step)
    return (
        f"note: the forecaster averages this trace's {_label(step)} intervals into "
        f"{_label(step * factor)} ones and sets its band there; each forecast is scored "
        f"against single {_label(step)} values, noisier than those averages, so the band "
        "covers less than its quantile here (a trace at 1m or coarser is scored at the "
        "forecaster's own step)"
    )


def _label(seconds: float) -> str:
    """A duration as the flags take it: 3h, 2d, 90m, 45s."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    if seconds >= 86400.0:
        return f"{seconds / 86400.0:.3g} days"
    return f"{seconds:g}s"


def forecaster_min_history(step_seconds: float) -> float:
    """The shortest history from which the forecaster forecasts at this step, in seconds.

    It needs `min_points` points over at least `min_history_seconds`, counted after
    a step under `min_step_seconds` is averaged up to it (see fit_forecaster).
    """
    settings = DEFAULT_SETTINGS
    factor = 1
    if step_seconds < settings.min_step_seconds:
        factor = int(settings.min_step_seconds // step_seconds)
    coarse = step_seconds * factor
    points = max(settings.min_points, math.ceil(settings.min_history_seconds / coarse - 1e-9))
    return points * coarse


def check_spans(args: argparse.Namespace, trace: Trace) -> None:
    """TraceError naming the flag when the spans asked for leave a forecast unscored.

    The backtest itself would skip an origin whose history is too short for the
    forecaster (a row of NaN with n 0), and, without any origin, blame --min-history
    even when a horizon is longer than the whole trace.
    """
    step = trace.step_seconds
    n = len(trace.values)
    need = forecaster_min_history(step)
    for flag, value in (("--history", args.history), ("--min-history", args.min_history)):
        # The same rounding as the backtest: whole steps of history at each origin.
        points = int(value // step) if flag == "--history" else math.ceil(value / step - 1e-9)
        if points * step < need - 1e-6:
            raise TraceError(
                f"{flag} {_label(value)} is shorter than the forecaster needs: at least "
                f"{_label(need)} at this trace's {_label(step)} step "
                f"({DEFAULT_SETTINGS.min_points} points over at least "
                f"{_label(DEFAULT_SETTINGS.min_history_seconds)}); give {flag} {_label(need)} "
                "or more"
            )
    span = n * step
    first = max(math.ceil(args.min_history / step - 1e-9) - 1, 0)  # as in backtest.run
    if first >= n - 1:
        return  # no origin at all: the backtest says so, naming --min-history
    for horizon in args.horizons:
        k = max(1, math.ceil(horizon / step - 1e-9))
        if first + k <= n - 1:
            continue
        fits = (n - 1 - first) * step  # the longest horizon scored after --min-history
        if k >= n - 1:
            raise TraceError(
                f"--horizons: {_label(horizon)} is not shorter than the trace, which spans "
                f"{_label(span)}: no forecast that far ahead can be scored; give horizons up "
                f"to {_label(fits)} (after --min-history {_label(args.min_history)})"
            )
        raise TraceError(
            f"--horizons {_label(horizon)} after --min-history {_label(args.min_history)} "
            f"needs more than the trace's {_label(span)}: give horizons up to {_label(fits)}, "
            f"or a shorter --min-history (at most {_label((n - k) * step)}, at least "
            f"{_label(need)})"
        )


def unscored_note(result: BacktestResult) -> str | None:
    """A note when the forecaster made fewer forecasts than the baselines were scored on."""
    notes = []
    for horizon in result.horizons_seconds:
        counts = {s.method: s.count for s in result.scores if s.horizon_seconds == horizon}
        ours = counts.pop(TIDESCALER, 0)
        most = max(counts.values(), default=0)
        if ours < most:
            notes.append(f"{_label(horizon)}: {ours} of {most}")
    if not notes:
        return None
    settings = DEFAULT_SETTINGS
    return (
        "note: the forecaster made no forecast at some origins (" + "; ".join(notes) + "): "
        f"it needs {settings.min_points} finite points over at least "
        f"{_label(settings.min_history_seconds)} of history, and gaps (missing values) "
        "count against that; its scores are over the origins it forecast"
    )


def backtest_json(result: BacktestResult) -> dict[str, Any]:
    """The result as JSON with ratios only: sMAPE is given in [0, 2], not percent."""
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **result_json(result)}
    for row in data["results"]:
        if row.get("smape") is not None:
            row["smape"] = row["smape"] / 100.0
    data["input"] = describe(result.trace)
    return data


def print_table(result: BacktestResult, console: Console) -> None:
    """The results table on `console` with no cell cut or wrapped, however narrow it is.

    rich fits a table to the console by cutting its widest columns, the method names
    first: seasonal_naive_day and seasonal_naive_week both became "seasonal_naive_…".
    Here every column is as wide as its longest cell (a cut name or number is a wrong
    one) and a header wraps at its spaces when the terminal is short of room. Output
    that is no terminal (a pipe, a CI log) has no edge to fit: every header is whole,
    and the table is as wide as it is; so is a terminal too narrow for the cells.
    """
    from rich.cells import cell_len
    from rich.measure import Measurement
    from rich.table import Table

    table = render_table(result)
    assert isinstance(table, Table)

    def table_width() -> int:
        return Measurement.get(console, console.options.update_width(10_000), table).maximum

    spare: list[tuple[int, Column]] = []  # what a column needs more for its header whole
    for column in table.columns:
        longest = max((cell_len(str(cell)) for cell in column.cells), default=0)
        header = str(column.header)
        column.width = max([longest, *(cell_len(word) for word in header.split())])
        spare.append((max(longest, cell_len(header)) - column.width, column))
    room = console.width - table_width() if console.is_terminal else math.inf
    for more, column in sorted(spare, key=lambda item: item[0]):  # most headers whole
        if more <= room:
            column.width = (column.width or 0) + more
            room -= more
    width = console.width
    console.width = max(width, table_width())  # print(width=) can only narrow
    try:
        console.print(table)
    finally:
        console.width = width


def run_backtest(args: argparse.Namespace) -> int:
    """Entry point of `tidescaler backtest`; returns the exit status."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    err = Console(stderr=True, soft_wrap=True)
    history_given = args.history is not None
    try:
        check_output_file(args.forecasts_csv, "--forecasts-csv")
        check_not_an_input(args.forecasts_csv, "--forecasts-csv", [("the trace", args.trace)])
        check_output_dir(args.out, "--out")
        if args.from_cluster:  # the ScaledObject's forecast series, read from the cluster
            from scaler.sim.from_cluster import backtest_trace

            trace, trigger_history = backtest_trace(args)
            if not history_given:  # what that trigger's forecaster learns from
                args.history, history_given = trigger_history, True
        else:
            if not wants_trace(args):
                raise TraceError(
                    "give the traffic: --trace FILE, --prometheus-url URL with --query, "
                    "or --from-cluster NAMESPACE/SCALEDOBJECT"
                )
            check_trace_source(args)
            trace = load_trace(args, sys.stderr)
            if not history_given:
                args.history = DEFAULT_FORECAST_HISTORY_SECONDS
        check_spans(args, trace)
    except (ValueError, OutputPathError) as exc:  # TraceError, FromClusterError
        err.print(error_text(exc), highlight=False)
        return 2
    span = len(trace.values) * trace.step_seconds
    for said in (
        rounding_note(args.horizons, args.stride, trace.step_seconds),
        fine_step_note(trace.step_seconds),
    ):
        if said is not None:
            err.print(said, highlight=False, markup=False)
    if not history_given and span >= args.min_history + WEEKLY_HISTORY_SECONDS:
        # The default scores what a trigger without forecastHistory gets, which cannot
        # learn a weekly pattern; a trace this long could tell whether one would help.
        err.print(
            f"note: the forecaster learns from {_label(args.history)} of history at each "
            "origin, as a trigger without forecastHistory does; a weekly pattern needs "
            f"{_label(WEEKLY_HISTORY_SECONDS)} or more: compare --history 28d, and set the "
            "trigger's forecastHistory to what scores best",
            highlight=False,
            markup=False,
        )
    lines = None if err.is_terminal else ProgressLines(sys.stderr, "backtest")
    with Progress(
        TextColumn("backtest {task.description}", markup=False),  # the trace name as it is
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(trace.name, total=None)

        def advance(done: int, total: int) -> None:
            if lines is not None:
                lines.update(f"{done}/{total} origins", done / max(total, 1))
            bar.update(task, completed=done, total=total)

        try:
            result = run(
                trace,
                args.horizons,
                quantile=args.quantile,
                stride_seconds=args.stride,
                min_history_seconds=args.min_history,
                history_seconds=args.history,
                progress=advance,
            )
        except TraceError as exc:
            err.print(error_text(exc), highlight=False)
            return 2
    note = unscored_note(result)
    if note is not None:  # not silent: a row of NaN and n 0 would be all there is
        err.print(note, highlight=False, markup=False)
    try:
        if args.forecasts_csv:
            write_forecasts_csv(result, args.forecasts_csv)
        if args.out:
            path = plot(result, args.out)
            err.print(f"wrote {path}", highlight=False, markup=False)
    except OSError as exc:  # checked writable first, so a full disk or a vanished folder
        err.print(error_text(f"cannot write the output: {exc}"), highlight=False)
        return 1
    if args.json:
        json.dump(backtest_json(result), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(result, Console())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m scaler.forecast.backtest ...`, the same as `tidescaler backtest ...`."""
    parser = argparse.ArgumentParser(prog="tidescaler")
    add_backtest_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["backtest", *(sys.argv[1:] if argv is None else argv)])
    status: int = args.func(args)
    return status
