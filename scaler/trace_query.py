"""A trace straight from Prometheus: `--prometheus-url --query --start --end --step`.

The range is fetched in chunks below Prometheus' per-query point limit by the
same source the service uses (`PrometheusSource.range_samples`), then checked
and laid on its grid by the trace reader's rules (+Inf and negative values
refused, gaps and NaN filled by `--fill-missing` or named in the error).
Values are read as requests per second unless `unit="count"`: a
`sum(rate(...))` query returns a rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from scaler.durations import parse_duration
from scaler.sources.bounded_http import redacted_url
from scaler.sources.prometheus import BackendError, BackendErrorKind, PrometheusSource
from scaler.traces import FillMissing, Trace, TraceError, Unit, from_series

# The most points one trace may ask Prometheus for: about four years at one minute, or
# 23 days at one second. A range of more is a typo (`--start 0`, `--step 1ms`) that would
# otherwise send hundreds of thousands of queries before anything is said.
MAX_RANGE_POINTS = 2_000_000


def range_points(start: float, end: float, step_seconds: float) -> float:
    """How many points of `step_seconds` the range from `start` to `end` holds."""
    return (end - start) / step_seconds + 1


@dataclass(frozen=True)
class Range:
    """The time range of a query, in Unix seconds, and its step."""

    start: float
    end: float
    step_seconds: float


def parse_time(text: str, flag: str, now: float) -> float:
    """`now`, Unix seconds, RFC 3339, or a duration back from now (`7d` = seven days ago)."""
    text = text.strip()
    if text == "now":
        return now
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number / 1000.0 if abs(number) >= 1e11 else number
    if text[:1].isdigit() and "-" in text:
        iso = text[:-1] + "+00:00" if text.endswith(("z", "Z")) else text
        try:
            moment = datetime.fromisoformat(iso)
        except ValueError:
            pass
        else:
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    try:
        return now - parse_duration(text)
    except ValueError:
        raise TraceError(
            f"{flag} {text!r}: expected now, Unix seconds, an RFC 3339 date such as "
            "2024-07-01T00:00:00Z, or a duration back from now such as 7d"
        ) from None


def parse_range(start: str, end: str, step: str, now: float | None = None) -> Range:
    """Check --start/--end/--step; raises TraceError naming the flag."""
    now = time.time() if now is None else now
    end_at = parse_time(end, "--end", now)
    start_at = parse_time(start, "--start", now)
    try:
        step_seconds = parse_duration(step)
    except ValueError:
        raise TraceError(f"--step {step!r}: expected a duration such as 60s, 1m or 5m") from None
    if step_seconds <= 0:
        raise TraceError(f"--step {step!r}: expected a duration > 0, such as 1m")
    if end_at <= start_at:
        raise TraceError(
            f"--start {start!r} is not before --end {end!r}; give an earlier start (e.g. 14d)"
        )
    points = range_points(start_at, end_at, step_seconds)
    if points > MAX_RANGE_POINTS:
        raise TraceError(
            f"--start {start!r} to --end {end!r} at --step {step!r} is {points:.3g} points; "
            f"at most {MAX_RANGE_POINTS:,} are read: give a later --start or a coarser --step"
        )
    return Range(start_at, end_at, step_seconds)


def query_trace(
    url: str,
    query: str,
    span: Range,
    *,
    unit: Unit | None = None,
    fill_missing: FillMissing = "error",
    timeout_seconds: float = 60.0,
    source_factory: Callable[..., PrometheusSource] = PrometheusSource,
) -> Trace:
    """The query's one series over `span` as a trace; raises TraceError saying what to fix."""
    if not query.strip():
        raise TraceError("--query is empty; give the PromQL of the service's total requests/s")
    with source_factory(range_timeout_seconds=timeout_seconds, coalesce_seconds=0.0) as source:
        try:
            # As Prometheus wrote them: +Inf and negative values are refused as in a file.
            times, values, present = source.range_samples(
                url, query, span.start, span.end, span.step_seconds
            )
        except BackendError as err:
            raise TraceError(_backend_message(err)) from None
        except ValueError as err:
            raise TraceError(f"--prometheus-url {redacted_url(url)}: {err}") from None
    chosen: Unit = unit or "rate"
    notes = [
        f"{len(times):,} points of {span.step_seconds:g}s from {redacted_url(url)}",
    ]
    if unit is None:
        notes.append(
            "values read as requests per second (what a rate() query returns); "
            "pass --unit count if the query returns requests per step"
        )
    return from_series(
        times,
        values,
        span.step_seconds,
        "prometheus",
        unit=chosen,
        fill_missing=fill_missing,
        notes=notes,
        present=present,
    )


def _backend_message(err: BackendError) -> str:
    if err.kind is BackendErrorKind.MULTIPLE_SERIES:
        return (
            f"--query {err.query!r} returns several series; the trace is one series: aggregate "
            "in the query, e.g. sum(rate(http_requests_total[1m])) or sum by () (...)"
        )
    if err.kind in (BackendErrorKind.CONNECTION, BackendErrorKind.TIMEOUT):
        return (
            f"--prometheus-url {err.address}: {err.problem}; check the URL and that it is reachable"
        )
    return f"--query {err.query!r} at {err.address}: {err.problem}"
