"""Cron windows with the exact semantics of KEDA's cron scaler.

KEDA evaluates `start`/`end` with the Go library robfig/cron v3; this module
re-implements that library's parser and `Next()` so that a tidescaler window is
active at exactly the instants a KEDA cron trigger with the same metadata is.

INTERFACE (implementation in progress): see the docstrings.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

# robfig/cron returns Go's zero time (0001-01-01 00:00:00 UTC) when nothing matches
# within five years; KEDA compares it like any other instant.
ZERO_TIME = -62135596800.0


class CronError(ValueError):
    """A cron expression KEDA would reject; the message says what is wrong (no key name)."""


@dataclass(frozen=True)
class CronSchedule:
    """A parsed 5-field cron expression (robfig/cron v3 standard parser)."""

    expression: str

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        raise NotImplementedError

    def next_after(self, t: float, zone: ZoneInfo) -> float:
        """robfig's Next(t) evaluated in `zone`, as Unix seconds (ZERO_TIME if none)."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class CronWindow:
    """One window: active iff KEDA's rule says so; a floor and/or a ceiling inside."""

    start: CronSchedule
    end: CronSchedule
    zone: ZoneInfo
    desired_replicas: int | None = None
    max_replicas: int | None = None

    def is_active(self, now: float) -> bool:
        raise NotImplementedError
