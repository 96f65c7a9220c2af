"""Numbers and Prometheus-style durations (`90s`, `15m`, `1h30m`, `7d`) as written in
metadata: ASCII decimal notation only, as Go's strconv.ParseFloat reads it in KEDA
(Python's float() also takes `1_000` and other scripts' digits such as `１００`)."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w|y)")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_decimal(text: str) -> float:
    """The number `text` writes in decimal notation (surrounding spaces allowed);
    raises ValueError for anything else, `inf` and `nan` included."""
    s = text.strip()
    if not _DECIMAL.fullmatch(s):
        raise ValueError(f"{s[:40]!r} is not a decimal number")
    return float(s)


# No duration needs more (`1y2w3d4h5m6s789ms` is 17): a longer text is refused before
# any pattern reads it.
MAX_DURATION_CHARS = 64


def parse_duration(text: str) -> float:
    """Seconds in `text`; a bare number means seconds. Raises ValueError naming the text."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    if len(s) > MAX_DURATION_CHARS:
        raise ValueError(
            f"{s[:20]!r}... is not a duration: {len(s)} characters, at most {MAX_DURATION_CHARS}"
        )
    try:
        seconds = parse_decimal(s)
    except ValueError:
        # Each part matched where the last one ended (finditer would search on from
        # every later position: quadratic in a long run of digits).
        pos, seconds = 0, 0.0
        while pos < len(s) and (match := _PART.match(s, pos)) is not None:
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(s) or pos == 0:
            raise ValueError(
                f"{text[:40]!r} is not a duration (expected e.g. 90s, 15m, 1h30m, 7d)"
            ) from None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"{text!r} is not a non-negative finite duration")
    return seconds
