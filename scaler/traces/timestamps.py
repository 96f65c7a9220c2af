"""Timestamps as exports write them: Unix seconds, milliseconds, microseconds or RFC 3339."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from scaler.traces.model import TraceError

# Unix timestamps above these magnitudes are milliseconds, microseconds: in
# seconds they would lie after the year 5138.
MILLIS_FROM = 1e11
MICROS_FROM = 1e14
NANOS_FROM = 1e17

# The times a trace may hold, in Unix seconds: the years an RFC 3339 date can
# write (1 to 9999). Beyond them a time cannot be said as a date, and the grid's
# arithmetic (intervals between rows as int64) overflows.
MIN_SECONDS = datetime(1, 1, 1, tzinfo=UTC).timestamp()
MAX_SECONDS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class TimeFormat:
    name: str  # said to the user
    scale: float  # divide numbers by this to get seconds; 0 for text dates


def detect_time_format(text: str) -> TimeFormat | None:
    try:
        number = float(text)
    except ValueError:
        return TimeFormat("RFC 3339", 0.0) if parse_date(text) is not None else None
    if not math.isfinite(number):
        return None
    magnitude = abs(number)
    if magnitude >= NANOS_FROM:
        return TimeFormat("Unix nanoseconds", 1e9)
    if magnitude >= MICROS_FROM:
        return TimeFormat("Unix microseconds", 1e6)
    if magnitude >= MILLIS_FROM:
        return TimeFormat("Unix milliseconds", 1e3)
    return TimeFormat("Unix seconds", 1.0)


def parse_date(text: str) -> float | None:
    """Seconds of an RFC 3339 / ISO 8601 date; a date without offset is taken as UTC."""
    text = text.strip()
    if not text or not (text[0].isdigit() and "-" in text):
        return None
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def when(seconds: float) -> str:
    """A timestamp as people read it, for messages."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g} s"


def duration_text(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g}d"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def has_offset(text: str) -> bool:
    """Whether a date says its UTC offset, in any form fromisoformat reads
    (`Z`, `+02:00`, `+0200`, `+02`), not only `+HH:MM`."""
    text = text.strip()
    if text.endswith(("z", "Z")):
        return True
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def time_problem(seconds: float) -> str | None:
    """Why `seconds` cannot be a trace's time (not finite, or outside the years 1 to 9999),
    or None; shared by CSV and Prometheus answers so both refuse the same times."""
    if not math.isfinite(seconds):
        return "is not finite"
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        return "is outside the years 1 to 9999"
    return None


def parse_time_cell(text: str, fmt: TimeFormat, name: str, line: int) -> float:
    if fmt.scale == 0.0:
        seconds = parse_date(text)
        if seconds is None:
            raise TraceError(
                f"{name}:{line}: time {text!r} is not an RFC 3339 date like the rows before; "
                "write every time in one format, e.g. 2024-07-01T00:00:00Z"
            )
        # A date in years 1 to 9999 may still leave them once its offset is applied
        # (0001-01-01T00:00:00+01:00 is in the year 0 in UTC): the same refusal as numbers.
        if time_problem(seconds) is not None:
            side = "before the year 1" if seconds < MIN_SECONDS else "after the year 9999"
            raise TraceError(
                f"{name}:{line}: time {text!r} is {side} in UTC (years 1 to 9999 only); "
                "remove the row"
            )
        return seconds
    try:
        number = float(text)
    except ValueError:
        raise TraceError(
            f"{name}:{line}: time {text!r} is not a number like the rows before ({fmt.name}); "
            "write every time in one format"
        ) from None
    if not math.isfinite(number):
        raise TraceError(f"{name}:{line}: time {text!r} is not finite; remove the row")
    seconds = number / fmt.scale
    problem = time_problem(seconds)
    if problem is not None:
        raise TraceError(
            f"{name}:{line}: time {text!r} ({fmt.name}) {problem}; write every time in one "
            "format like the rows before, or remove the row"
        )
    return seconds
