"""The trace flags shared by `simulate` and `backtest`, and loading the trace they name.

`--trace FILE|-` reads a file (see `scaler.traces`); `--prometheus-url` with
`--query`, `--start`, `--end` and `--step` fetches the series instead.
`--unit` and `--fill-missing` apply to both. What the reader detected (the
timestamp format, sorted rows, filled gaps) is said on stderr as notes, and
what may be a mistake as warnings.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from scaler.cli_support import prometheus_url_arg
from scaler.trace_query import parse_range, query_trace
from scaler.traces import FILL_MISSING, UNITS, Trace, TraceError, read_trace

DEFAULT_START = "14d"
DEFAULT_STEP = "1m"
DEFAULT_END = "now"


def add_trace_source_arguments(p: argparse.ArgumentParser, group: Any) -> None:
    """--trace (in `group`, a mutually exclusive group) and the Prometheus and reading flags."""
    group.add_argument(
        "--trace",
        metavar="FILE",
        help="traffic file, or - for stdin: CSV (time and value columns; Unix s/ms or RFC 3339 "
        "times; ',' ';' or tab) or a Prometheus query_range JSON answer; .gz accepted "
        "(default: none)",
    )
    group.add_argument(
        "--prometheus-url",
        metavar="URL",
        type=prometheus_url_arg,
        help="fetch the traffic from this Prometheus with --query over --start..--end "
        "(default: none)",
    )
    p.add_argument(
        "--query",
        metavar="PROMQL",
        help="PromQL of the service's total requests/s, e.g. "
        "'sum(rate(http_requests_total{service=\"web\"}[1m]))': fetched with "
        "--prometheus-url (default: none)",
    )
    p.add_argument(
        "--start",
        default=DEFAULT_START,
        metavar="TIME",
        help="start of the range fetched from Prometheus: RFC 3339, Unix seconds, or a "
        "duration back from now (default: %(default)s)",
    )
    p.add_argument(
        "--end",
        default=DEFAULT_END,
        metavar="TIME",
        help="end of the range fetched from Prometheus (default: %(default)s)",
    )
    p.add_argument(
        "--step",
        default=DEFAULT_STEP,
        metavar="DURATION",
        help="resolution of the range fetched from Prometheus (default: %(default)s)",
    )
    add_unit_argument(p)
    p.add_argument(
        "--fill-missing",
        choices=FILL_MISSING,
        default="error",
        help="missing intervals: error names the first one; zero writes no traffic; hold "
        "repeats the last value (default: %(default)s)",
    )


def add_unit_argument(p: Any) -> None:
    """--unit, as `simulate`, `backtest` and `fleet` read it (`p`: a parser or a group)."""
    p.add_argument(
        "--unit",
        choices=UNITS,
        help="count: requests per interval; rate: requests per second (default: count for "
        "CSV, rate for Prometheus)",
    )


def check_trace_source(args: argparse.Namespace) -> None:
    """Flag combinations that cannot work; raises TraceError naming the flags."""
    if args.prometheus_url and not args.query:
        raise TraceError(
            "--prometheus-url needs --query, the PromQL of the service's total requests/s, e.g. "
            "--query 'sum(rate(http_requests_total{service=\"web\"}[1m]))'"
        )
    if args.prometheus_url:
        parse_range(args.start, args.end, args.step)
    elif args.trace:
        given = [
            flag
            for flag, value, default in (
                ("--start", args.start, DEFAULT_START),
                ("--end", args.end, DEFAULT_END),
                ("--step", args.step, DEFAULT_STEP),
            )
            if value != default
        ]
        if given:
            # They shape a Prometheus query; a file is read as it is, whatever they say.
            one = len(given) == 1
            raise TraceError(
                f"{', '.join(given)} {'applies' if one else 'apply'} to --prometheus-url only; "
                f"--trace reads the file's rows as they are: drop {'it' if one else 'them'}, "
                "or trim the file"
            )


def wants_trace(args: argparse.Namespace) -> bool:
    return bool(args.trace or args.prometheus_url)


def load_trace(args: argparse.Namespace, stderr: TextIO) -> Trace:
    """The trace named by the flags, with its notes and warnings written to `stderr`."""
    if args.prometheus_url:
        span = parse_range(args.start, args.end, args.step)
        trace = query_trace(
            args.prometheus_url,
            args.query,
            span,
            unit=args.unit,
            fill_missing=args.fill_missing,
        )
    else:
        trace = read_trace(args.trace, unit=args.unit, fill_missing=args.fill_missing)
    say_notes(trace, stderr)
    return trace


def say_notes(trace: Trace, stderr: TextIO) -> None:
    """What the reader detected and warns of, one line each on `stderr`."""
    for note in trace.notes:
        stderr.write(f"note: {trace.name}: {note}\n")
    for warning in trace.warnings:
        stderr.write(f"warning: {trace.name}: {warning}\n")


def describe(trace: Trace) -> dict[str, object]:
    """What was read, for JSON outputs: the notes say how the input was understood."""
    return {
        "name": trace.name,
        "step_seconds": trace.step_seconds,
        "intervals": len(trace.values),
        "notes": list(trace.notes),
        "warnings": list(trace.warnings),
    }
