"""Event aggregation, de-duplication and spam filtering, as client-go's event recorder does.

A port of the rules of client-go `tools/record/events_cache.go` (EventCorrelator),
with its defaults:

- aggregation: events about one object that differ only in their message are
  "similar"; from the 10th distinct message within 10 minutes on, they are
  written as one event "(combined from similar events): <message>" whose count
  goes up instead of a new event each time;
- de-duplication: an event identical to one already written (same object,
  type, reason and message) is not written again: the existing Event's `count`
  and `lastTimestamp` are bumped with a strategic merge patch;
- spam filter: a token bucket per source and object, burst 25, refilled at one
  event per 5 minutes, applied after the two steps above (a count bump spends a
  token too), so a ScaledObject that is always unhealthy cannot flood etcd.

Caches are LRUs of 4096 entries, as in client-go. The clock is injected so the
rules are tested over hours in microseconds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

LRU_ENTRIES = 4096
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_INTERVAL_SECONDS = 600.0
SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0
AGGREGATE_PREFIX = "(combined from similar events): "


class Lru(Generic[K, V]):
    """A bounded mapping that forgets the least recently used key."""

    def __init__(self, size: int = LRU_ENTRIES) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class ObjectRef:
    """The Event's `involvedObject`: a ScaledObject (uid empty when it could not be read)."""

    namespace: str
    name: str
    uid: str = ""
    kind: str = "ScaledObject"
    api_version: str = "keda.sh/v1alpha1"


@dataclass(frozen=True)
class EventSpec:
    """What to say: the Event's type (Normal or Warning), reason and message."""

    type: str
    reason: str
    message: str


@dataclass
class Correlated:
    """The outcome for one event: skip it, create it, or patch an existing Event."""

    skip: bool
    name: str = ""  # the Event object's name
    count: int = 1
    first_timestamp: float = 0.0
    message: str = ""
    key: tuple[str, ...] = ()
    aggregated: bool = False

    @property
    def is_update(self) -> bool:
        return self.count > 1


@dataclass
class _Aggregate:
    messages: set[str] = field(default_factory=set)
    last: float = float("-inf")


@dataclass
class _Logged:
    count: int
    first_timestamp: float
    name: str


class TokenBucket:
    """Starts full with `burst` tokens, refilled at `rate` per second (golang.org/x/time/rate)."""

    def __init__(self, burst: int, rate: float, now: float) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Correlator:
    """Aggregate, then count, then filter: client-go's EventCorrelate order."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        burst: int = SPAM_BURST,
        qps: float = SPAM_QPS,
        max_events: int = AGGREGATE_MAX_EVENTS,
        interval_seconds: float = AGGREGATE_INTERVAL_SECONDS,
    ) -> None:
        self.clock = clock
        self.burst = burst
        self.qps = qps
        self.max_events = max_events
        self.interval_seconds = interval_seconds
        self._aggregates: Lru[tuple[str, ...], _Aggregate] = Lru()
        self._logged: Lru[tuple[str, ...], _Logged] = Lru()
        self._buckets: Lru[tuple[str, ...], TokenBucket] = Lru()
        self._last_name_ns = 0

    def correlate(self, ref: ObjectRef, spec: EventSpec) -> Correlated:
        now = self.clock()
        object_key = (ref.kind, ref.namespace, ref.name, ref.uid, ref.api_version)
        event_key = (*object_key, spec.type, spec.reason, spec.message)
        aggregate_key = (*object_key, spec.type, spec.reason)

        # Aggregation: too many distinct messages for one reason -> one combined event.
        record = self._aggregates.get(aggregate_key)
        if record is None or now - record.last > self.interval_seconds:
            record = _Aggregate()
        record.messages.add(spec.message)
        record.last = now
        self._aggregates.put(aggregate_key, record)
        key: tuple[str, ...] = event_key
        message, aggregated = spec.message, False
        if len(record.messages) >= self.max_events:
            record.messages.pop()  # do not grow the set beyond the threshold
            key, message, aggregated = aggregate_key, AGGREGATE_PREFIX + spec.message, True

        # De-duplication: a repeat bumps the count of the Event already written.
        logged = self._logged.get(key)
        if logged is not None and logged.count > 0:
            result = Correlated(
                False, logged.name, logged.count + 1, logged.first_timestamp, message, key
            )
        else:
            # client-go names an Event <object>.<UnixNano in hex>; two in one instant would
            # collide (409), so the nanoseconds only move forward.
            self._last_name_ns = max(int(now * 1e9), self._last_name_ns + 1)
            name = f"{ref.name}.{self._last_name_ns:x}"
            result = Correlated(False, name, 1, now, message, key)
        result.aggregated = aggregated
        self._logged.put(key, _Logged(result.count, result.first_timestamp, result.name))

        # Spam filter per source + object.
        bucket = self._buckets.get(object_key)
        if bucket is None:
            bucket = TokenBucket(self.burst, self.qps, now)
        result.skip = not bucket.take(now)
        self._buckets.put(object_key, bucket)
        return result

    def written(self, result: Correlated, name: str, count: int) -> None:
        """What the server holds after a write (client-go's updateState)."""
        self._logged.put(result.key, _Logged(count, result.first_timestamp, name))

    def forget(self, result: Correlated) -> None:
        """The write failed: the next identical event starts a new Event."""
        self._logged.put(result.key, _Logged(0, result.first_timestamp, result.name))
