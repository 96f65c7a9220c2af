"""Warnings that ScaledObjects cause: logged when they change, and within a rate.

KEDA asks each ScaledObject on every poll and every HPA sync, so a broken trigger or a
Prometheus outage would log the same line every few seconds per ScaledObject (an
outage over 500 of them, about 100 lines a second), and anyone who can write a
ScaledObject could fill the log with distinct names. A warning is logged when what it
says for its key changed, or again after `every` seconds; all of them together at most
`per_second` a second after a `burst`, the next logged line counting the ones held back.
Counters in telemetry still count every occurrence.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class WarningGate:
    """Which warnings to log; safe across threads, bounded to `keys` remembered keys
    (the least recently warned forgotten: at worst it is warned of once more)."""

    def __init__(
        self, *, every: float, keys: int = 1_000, per_second: float = 5.0, burst: float = 50.0
    ) -> None:
        if every <= 0 or keys < 1 or per_second <= 0 or burst < 1:
            raise ValueError("every, keys, per_second and burst must be positive")
        self.every = every
        self.keys = keys
        self.per_second = per_second
        self.burst = burst
        self._last: OrderedDict[Hashable, tuple[Hashable, float]] = OrderedDict()
        self._tokens = burst
        self._refilled_at: float | None = None
        self._held_back = 0
        self._lock = threading.Lock()

    def admit(self, key: Hashable, what: Hashable, now: float) -> int | None:
        """None: do not log. Else log, noting this many warnings held back by the rate
        since the last one logged (usually 0)."""
        with self._lock:
            last = self._last.get(key)
            if last is not None and last[0] == what and 0 <= now - last[1] < self.every:
                return None  # said already, and recently
            if not self._take(now):
                self._held_back += 1
                return None
            self._last[key] = (what, now)
            self._last.move_to_end(key)
            if len(self._last) > self.keys:
                self._last.popitem(last=False)
            held_back, self._held_back = self._held_back, 0
            return held_back

    def _take(self, now: float) -> bool:
        if self._refilled_at is not None:
            elapsed = max(now - self._refilled_at, 0.0)  # a clock stepped back adds nothing
            self._tokens = min(self.burst, self._tokens + elapsed * self.per_second)
        self._refilled_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
