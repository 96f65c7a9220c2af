"""Prometheus as a source of observations.

A thin adapter that turns PromQL answers into plain numbers with the
conversion rules of KEDA's prometheus scaler, and owns what talking to a
remote backend needs: a deadline on every whole HTTP request and no hidden
retries or redirects, a bounded wait for any caller however the backend
behaves, the request options of KEDA's prometheus keys (namespace, extra
parameters and headers, timeout, unsafeSsl), coalescing of identical queries
(a thousand ScaledObjects may send the same one every polling interval), and
the last good value of every query so that the engine can ride out an outage.
It only remembers; deciding when a value is too old is the engine's business.

prometheus-api-client's calls neither stream nor refuse redirects nor take
per-request headers, so the HTTP side is requests with a bounded adapter
(`bounded_http`), which is all that client wraps.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial
from typing import Any

import numpy as np

from scaler.policy import BackendOptions
from scaler.replica_calculator import PodListing, PodState
from scaler.sources.bounded_http import (
    BoundedHttp,
    HttpAnswer,
    HttpFailure,
    HttpFailureKind,
    redacted_url,
)
from scaler.sources.resources import (
    PodSeries,
    ResourceName,
    ScaledObjectName,
    pods_from_signals,
    resource_query,
)

__all__ = [
    "NO_OPTIONS",
    "NO_TENANT",
    "BackendError",
    "BackendErrorKind",
    "PrometheusSource",
    "Reading",
    "ResourceReading",
]

# Prometheus refuses range queries of more than 11,000 points per series.
PROMETHEUS_MAX_POINTS = 11_000
# The share of a range query's deadline that Prometheus is given to evaluate it.
RANGE_SERVER_TIMEOUT_SHARE = 0.8
# The most of one address's request slots, and of all slots, that one tenant (a
# ScaledObject's namespace) may hold. A trigger may set its own request timeout (up to
# 60 s): a tenant sending distinct slow queries would otherwise keep every slot busy
# (of one address, or of all through several allowed addresses), and every other
# namespace's new query would be refused as "busy". A quarter leaves three quarters to
# the others, and a tenant never gets less than one slot.
TENANT_SHARE = 0.25
# The tenant of calls made without one (the forecast refresher, tests): one shared
# tenant, held to the address's limit only. Not a namespace anyone can name (a DNS
# label never starts with '-'; the server refuses one that does): a request with an
# empty namespace is a tenant like any other.
NO_TENANT = "-"


class BackendErrorKind(StrEnum):
    """Why a query gave no number; exported as a metric label, so short and stable."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_STATUS = "http_status"
    BAD_RESPONSE = "bad_response"
    QUERY_ERROR = "query_error"
    MULTIPLE_SERIES = "multiple_series"
    NULL_VALUE = "null_value"
    REDIRECT = "redirect"


class BackendError(Exception):
    """A query that did not produce a number, with where, what and why."""

    def __init__(
        self,
        kind: BackendErrorKind,
        address: str,
        query: str,
        problem: str,
        *,
        status_code: int | None = None,
    ) -> None:
        self.kind = kind
        # The address as shown: without the credentials an operator's URL may carry.
        self.address = address = redacted_url(address)
        self.query = query
        self.problem = problem
        self.status_code = status_code
        super().__init__(self._message(problem))

    def _message(self, problem: str) -> str:
        # The query is the tenant's and may be kilobytes long: a message quotes a prefix.
        return f"Prometheus at {self.address}, query {_quote(self.query, 200)}: {problem}"

    def public(self) -> str:
        """The message less a connection failure's own words (an OS or TLS error may name
        hosts and addresses the operator chose): for the owner of a trigger, who may not
        have chosen the address. The log keeps the whole message."""
        problem = self.problem
        if self.kind is BackendErrorKind.CONNECTION:
            problem = problem.split(" (", 1)[0] + " (the server's log says why)"
        return self._message(problem)

    def copy(self) -> BackendError:
        """A fresh instance, so that threads sharing one failure do not share a traceback."""
        return BackendError(
            self.kind, self.address, self.query, self.problem, status_code=self.status_code
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_backend_error,
            (self.kind, self.address, self.query, self.problem, self.status_code),
        )


def _rebuild_backend_error(
    kind: BackendErrorKind, address: str, query: str, problem: str, status_code: int | None
) -> BackendError:
    return BackendError(kind, address, query, problem, status_code=status_code)


@dataclass(frozen=True)
class Reading:
    """One query's answer: the fresh value, or on failure the last good one and the error.

    `observed_at` is when `value` was measured (the evaluation time of the
    query that produced it), so after a failure it is the old time.
    """

    value: float | None
    observed_at: float | None
    error: BackendError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ResourceReading:
    """The selected pods as the HPA's pod lister and metrics client would see them.

    `pods` are the pods with a request series (request, readiness, start,
    phase), `usage` the usage of every pod with a usage series by
    "namespace/pod" (CPU in cores, memory in bytes), measured at `observed_at`
    over `window_seconds` (the CPU rate window; 0 for memory, an instant). On
    failure, or when no usage series is left, the fields hold the last good
    reading (or None) and `error` says what went wrong; in the latter case
    `listing` has the pods that answer listed, if any.
    """

    pods: tuple[PodState, ...] | None
    usage: Mapping[str, float] | None
    observed_at: float | None
    window_seconds: float = 0.0
    error: BackendError | None = None
    # The newest answer's pods when it had no usage for any of them (see PodListing).
    listing: PodListing | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# The largest answer read, by what is asked. A query trigger's answer is one sample (KEDA
# refuses more), a few hundred bytes; a resource query's has a few series per pod, about
# a kilobyte a pod; a history chunk is one series of at most 10,000 points. Anything
# larger is refused while it is read, before it costs JSON parsing (which holds the
# interpreter) and memory the allocator may keep.
QUERY_BODY_BYTES = 1024 * 1024
RESOURCE_BODY_BYTES = 16 * 1024 * 1024
RANGE_BODY_BYTES = 8 * 1024 * 1024


class _Flight:
    """One HTTP request and everyone waiting for its answer."""

    __slots__ = (
        "converted",
        "done",
        "error",
        "finished_at",
        "max_body_bytes",
        "observed_at",
        "readings",
        "refreshing",
        "result",
        "started",
        "tenant",
        "wanted",
    )

    def __init__(
        self,
        observed_at: float,
        max_body_bytes: int = QUERY_BODY_BYTES,
        tenant: str = NO_TENANT,
    ) -> None:
        self.done = threading.Event()
        self.observed_at = observed_at
        self.max_body_bytes = max_body_bytes
        self.tenant = tenant  # whose call sent the request: its slot is charged to them
        self.started = time.monotonic()
        self.finished_at = 0.0
        self.result: Any = None
        self.error: BackendError | None = None
        self.refreshing = False  # a background request is replacing this answer
        self.converted: dict[bool, float | BackendError] = {}  # by ignoreNullValues
        # The good readings made from it, by ignoreNullValues: a Reading never changes, so
        # every caller of this answer shares one.
        self.readings: dict[bool, Reading] = {}
        # ignoreNullValues settings of instant reads that gave up waiting: their
        # last good values are updated when the answer arrives.
        self.wanted: set[bool] = set()


@dataclass
class _Remembered:
    value: Any
    observed_at: float
    last_read: float
    size: int  # bytes it is counted for in LAST_GOOD_BYTES
    sent: float  # time.monotonic() when the request that gave it was sent


# Memory for last good values: their keys hold the tenant's query text (up to 16 KiB)
# and a resource reading a few hundred bytes per pod. Past it, the least recently read
# quarter is forgotten; distinct queries sent in a loop cannot grow it without bound.
LAST_GOOD_BYTES = 64 * 1024 * 1024


def _remembered_size(key: tuple[Any, ...], value: Any) -> int:
    """What one last good value costs, roughly: its key's text and, for a resource
    reading, its pods."""
    size = 512
    for part in key:
        if isinstance(part, str):
            size += len(part)
        elif isinstance(part, BackendOptions):
            size += sum(len(n) + len(v) for n, v in part.query_parameters + part.custom_headers)
    pods = getattr(value, "pods", None)
    return size + (400 * len(pods) if pods else 0)


_FlightKey = tuple[str, str, BackendOptions]

NO_OPTIONS = BackendOptions()


def _count_down(counts: dict[Any, int], key: Any) -> None:
    """One less of `key`, forgotten at zero so that the table holds only what is in flight."""
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


class _RequestPool:
    """Daemon threads for HTTP requests: a stuck request never delays the process' exit.

    Callers reserve a slot before submitting (`PrometheusSource` counts them), so
    there is always a thread for a submitted request and nothing queues.
    """

    def __init__(self, max_workers: int) -> None:
        self._max_workers = max_workers
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = self._idle = self._queued = 0

    def submit(self, task: Callable[[], None]) -> None:
        with self._lock:
            self._queued += 1
            if self._queued > self._idle and self._workers < self._max_workers:
                self._workers += 1
                threading.Thread(target=self._work, name="prometheus-request", daemon=True).start()
        self._tasks.put(task)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            task = self._tasks.get()
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            task()


class PrometheusSource:
    """Instant, resource and range queries against any number of Prometheus addresses.

    Thread-safe. Each HTTP request has a deadline on the whole request (connect,
    headers and body): `timeout_seconds`, or the trigger's own `timeout`, for
    instant and resource queries, `range_timeout_seconds` for range queries.
    Redirects are never followed.

    Instant and resource queries run on the source's own threads, at most
    `max_requests_per_address` at a time per address and `max_requests` in
    all; a query past those limits fails at once as "busy" rather than queue
    behind stuck requests. A request's slot is charged to the `tenant` (the
    ScaledObject's namespace) whose call sent it, and one tenant holds at most
    `TENANT_SHARE` of an address's slots and of all slots: past either, its new
    queries are busy for it alone. Answers are shared across tenants all the same. A
    caller waits for an answer at most `answer_budget_seconds`; past it, it gets
    the last good value and a TIMEOUT error saying the answer is pending, while
    the request goes on and its answer is remembered when it arrives.

    Identical queries (same address, query and request options) share one
    HTTP request while it is in flight and reuse its answer, success or
    failure, for `coalesce_seconds` after it arrives, then serve it for as long
    again while one background request refreshes it (`refresh_ahead`). Last
    good values not read for `last_good_ttl_seconds` are forgotten. `clock`
    gives the evaluation time sent to Prometheus and the times used for
    coalescing and memory.
    """

    def __init__(
        self,
        timeout_seconds: float = 3.0,
        coalesce_seconds: float = 5.0,
        last_good_ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
        *,
        answer_budget_seconds: float = 1.0,
        headers: Mapping[str, str] | None = None,
        verify_tls: bool = True,
        range_timeout_seconds: float = 30.0,
        range_chunk_points: int = 10_000,
        cpu_rate_window_seconds: float = 120.0,
        max_connections_per_address: int = 32,
        max_requests_per_address: int = 16,
        max_requests: int = 64,
        refresh_ahead: bool = True,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
        if answer_budget_seconds <= 0:
            raise ValueError(f"answer_budget_seconds must be > 0, got {answer_budget_seconds}")
        if coalesce_seconds < 0:
            raise ValueError(f"coalesce_seconds must be >= 0, got {coalesce_seconds}")
        if not 1 <= range_chunk_points <= PROMETHEUS_MAX_POINTS:
            raise ValueError(
                f"range_chunk_points must be in [1, {PROMETHEUS_MAX_POINTS}], "
                f"got {range_chunk_points}"
            )
        if not 1 <= max_requests_per_address <= max_requests:
            raise ValueError(
                "max_requests_per_address must be in [1, max_requests], "
                f"got {max_requests_per_address} and {max_requests}"
            )
        self._timeout_seconds = timeout_seconds
        self._answer_budget_seconds = answer_budget_seconds
        self._coalesce_seconds = coalesce_seconds
        self._last_good_ttl_seconds = last_good_ttl_seconds
        self._clock = clock
        self._headers = dict(headers) if headers else {}
        self._verify_tls = verify_tls
        self._range_timeout_seconds = range_timeout_seconds
        self._range_chunk_points = range_chunk_points
        self._cpu_rate_window_seconds = cpu_rate_window_seconds
        self._refresh_ahead = refresh_ahead
        self._max_requests_per_address = max_requests_per_address
        self._max_requests_per_tenant = max(1, int(max_requests_per_address * TENANT_SHARE))
        self._max_requests_of_tenant = max(1, int(max_requests * TENANT_SHARE))
        self._max_requests = max_requests
        self._http = BoundedHttp(max_connections_per_host=max_connections_per_address)
        self._pool = _RequestPool(max_requests)
        self._closed = False

        self._lock = threading.Lock()
        self._requests_in_flight: dict[str, int] = {}
        # Requests in flight by (address, tenant) and by tenant, for tenants other than
        # NO_TENANT.
        self._tenant_requests: dict[tuple[str, str], int] = {}
        self._tenant_totals: dict[str, int] = {}
        self._flights: dict[_FlightKey, _Flight] = {}
        self._flights_swept_at = clock()
        self._last_good: dict[tuple[Any, ...], _Remembered] = {}
        self._last_good_bytes = 0
        self._last_good_swept_at = clock()

    # -- public API ------------------------------------------------------------

    def instant(
        self,
        address: str,
        query: str,
        *,
        ignore_null_values: bool = True,
        options: BackendOptions = NO_OPTIONS,
        tenant: str = NO_TENANT,
    ) -> float:
        """The query's value now, by KEDA's rules; raises BackendError."""
        result, _, _ = self._fetch(address, query, options, tenant=tenant)
        return _to_value(result, address, query, ignore_null_values)

    def read(
        self,
        address: str,
        query: str,
        *,
        ignore_null_values: bool = True,
        options: BackendOptions = NO_OPTIONS,
        deadline: float | None = None,
        tenant: str = NO_TENANT,
    ) -> Reading:
        """Like `instant`, but never raises: on failure, the last good value and its time.

        Waits until `deadline` (a `deadline()`, shared by the reads of one decision) or,
        without one, for the answer budget. A request it sends is charged to `tenant`."""
        key = ("instant", address, query, options, ignore_null_values)
        flight = self._flight(address, query, options, tenant=tenant)
        if not flight.done.is_set():
            flight.wanted.add(ignore_null_values)
            if not flight.done.wait(self._wait_seconds(deadline)):
                return self._fallback(key, self._pending(address, query))
        return self._reading(flight, key, ignore_null_values)

    def deadline(self) -> float:
        """The answer budget from now, on the monotonic clock: pass it to every read of
        one decision, so that all of them together wait at most one budget."""
        return time.monotonic() + self._answer_budget_seconds

    def start(
        self,
        address: str,
        query: str,
        *,
        options: BackendOptions = NO_OPTIONS,
        tenant: str = NO_TENANT,
    ) -> None:
        """Send the query now unless its answer is shared already; waits for nothing. A
        decision starts all its queries before reading any, so they run side by side."""
        self._flight(address, query, options, tenant=tenant)

    def start_resource(
        self,
        address: str,
        pod_selector: str,
        resource: ResourceName,
        *,
        options: BackendOptions = NO_OPTIONS,
        tenant: str = NO_TENANT,
        scaled_object: ScaledObjectName | None = None,
    ) -> None:
        """`start` for the query `read_resource` sends."""
        query = self._resource_query(resource, pod_selector, scaled_object)
        self._flight(address, query, options, RESOURCE_BODY_BYTES, tenant)

    def shared_at_hand(
        self,
        address: str,
        query: str,
        *,
        ignore_null_values: bool = True,
        options: BackendOptions = NO_OPTIONS,
        tenant: str = NO_TENANT,
    ) -> tuple[Reading, float] | None:
        """`read` when its shared answer is at hand (`ready`), else None and nothing is
        started or waited for; with how many more seconds that answer stays the one
        `read` gives (`shared_for`, of the very answer read). One look-up, and the lock
        only when a refresh is due: the warm request path asks this instead of `ready`,
        then `shared_for` and `read`."""
        flight = self._flights.get((address, query, options))
        if flight is None or not flight.done.is_set():
            return None
        now = self._clock()
        if self._expired(flight, now):
            return None
        shared = flight.finished_at + self._coalesce_seconds - now
        if self._refresh_ahead and not flight.refreshing and shared <= 0:
            self._flight(address, query, options, tenant=tenant)  # the one background refresh
        key = ("instant", address, query, options, ignore_null_values)
        return self._reading(flight, key, ignore_null_values), shared

    def shared_for(
        self, address: str, query: str, *, options: BackendOptions = NO_OPTIONS
    ) -> float:
        """How many more seconds the shared answer of this query at hand now stays the one
        `read` and `shared_at_hand` give: a refresh is asked for only once it is
        `coalesce_seconds` old (see `_flight`). -inf when no answer is at hand."""
        flight = self._flights.get((address, query, options))
        if flight is None or not flight.done.is_set():
            return -math.inf
        return flight.finished_at + self._coalesce_seconds - self._clock()

    def ready(self, address: str, query: str, *, options: BackendOptions = NO_OPTIONS) -> bool:
        """Whether `read` (or `_fetch`) of this query would answer without waiting: its
        shared answer has arrived and is still usable. Takes no lock and starts nothing."""
        flight = self._flights.get((address, query, options))
        return (
            flight is not None and flight.done.is_set() and not self._expired(flight, self._clock())
        )

    def resource_ready(
        self,
        address: str,
        pod_selector: str,
        resource: ResourceName,
        *,
        options: BackendOptions = NO_OPTIONS,
        scaled_object: ScaledObjectName | None = None,
    ) -> bool:
        """`ready` for the query `read_resource` sends."""
        query = self._resource_query(resource, pod_selector, scaled_object)
        return self.ready(address, query, options=options)

    def read_resource(
        self,
        address: str,
        pod_selector: str,
        resource: ResourceName,
        *,
        options: BackendOptions = NO_OPTIONS,
        deadline: float | None = None,
        tenant: str = NO_TENANT,
        scaled_object: ScaledObjectName | None = None,
    ) -> ResourceReading:
        """The pods `pod_selector` matches and their usage; never raises BackendError.
        Waits as `read` does.

        Raises ValueError for a selector or resource the policy parser should
        have rejected. An answer without any usage series (the pods gone, or
        cAdvisor / kube-state-metrics not scraped) is not a reading: the last
        good one is held with an error, as after a failed request, so that the
        engine keeps it until it goes stale instead of dropping it at once. An
        answer without pods where the HPA of `scaled_object` (namespace, name) has 0
        current replicas (`at_zero_query`) is a reading of none: the workload is at
        zero.
        """
        query = self._resource_query(resource, pod_selector, scaled_object)
        window = self._cpu_rate_window_seconds if resource == "cpu" else 0.0
        key = ("resource", address, query, options)
        listing: PodListing | None = None
        try:
            result, observed_at, sent = self._fetch(
                address, query, options, deadline, RESOURCE_BODY_BYTES, tenant
            )
            known = self._last_good.get(key)
            if known is not None and known.observed_at == observed_at:
                # The answer this reading was made from, shared by every ScaledObject
                # with this selector: parse thousands of series once, not per call.
                self._remember(key, known.value, observed_at, sent)
                same: ResourceReading = known.value
                return same
            signals = _per_pod(result, address, query)
            pods, usage = pods_from_signals(signals)
            if not pods and not usage and signals.get("at_zero"):
                # No pod, and KEDA's HPA for it counts none: a workload at zero. Nothing
                # to measure is a reading (the HPA is off at zero, and KEDA asks IsActive
                # only after a GetMetrics that answers).
                reading = ResourceReading((), {}, observed_at, window)
                self._remember(key, reading, observed_at, sent)
                return reading
            if not usage:
                # Pods without usage (just started, or cAdvisor not scraped): listed, for
                # the HPA's rule once no usage is left to hold. No pod at all is not
                # listed: the pods may be there, not selected or not scraped.
                listing = PodListing(pods, observed_at) if pods else None
                if listing is not None:
                    self._remember((*key, "listing"), listing, observed_at, sent)
                raise BackendError(
                    BackendErrorKind.NULL_VALUE,
                    address,
                    query,
                    f"no {resource} usage series for the selected pods "
                    f"({len(pods)} with a request series)",
                )
        except BackendError as error:
            if listing is None:
                # A failed request says nothing new of the pods: the last listing stands
                # (the engine counts it until it is stale, as a held reading).
                listed = self._recall((*key, "listing"))
                listing = listed.value if listed is not None else None
            remembered = self._recall(key)
            if remembered is None:
                return ResourceReading(None, None, None, window, error, listing)
            good: ResourceReading = remembered.value
            return replace(good, error=error, listing=listing)
        reading = ResourceReading(pods, usage, observed_at, window)
        self._remember(key, reading, observed_at, sent)
        return reading

    def range(
        self,
        address: str,
        query: str,
        start: float,
        end: float,
        step_seconds: float,
        *,
        options: BackendOptions = NO_OPTIONS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One series on the grid start, start + step, ... <= end; gaps are NaN.

        Long ranges are fetched in chunks below Prometheus' per-query point
        limit, on the caller's thread (a background fit, never a request path).
        Non-finite samples become NaN. Raises BackendError (more than one
        series is MULTIPLE_SERIES; no series at all gives all NaN).
        """
        times, values, _ = self.range_samples(
            address, query, start, end, step_seconds, options=options
        )
        values[~np.isfinite(values)] = np.nan
        return times, values

    def range_samples(
        self,
        address: str,
        query: str,
        start: float,
        end: float,
        step_seconds: float,
        *,
        options: BackendOptions = NO_OPTIONS,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`range`'s grid with the values as Prometheus wrote them (NaN, +Inf, -5) and a
        mask of the points that had a sample: what a trace checks as a file's values."""
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be > 0, got {step_seconds}")
        if end < start:
            raise ValueError(f"end ({end}) is before start ({start})")
        count = math.floor((end - start) / step_seconds + 1e-9) + 1
        times = start + step_seconds * np.arange(count, dtype=np.float64)
        values = np.full(count, np.nan, dtype=np.float64)
        present = np.zeros(count, dtype=bool)
        for first in range(0, count, self._range_chunk_points):
            last = min(first + self._range_chunk_points, count) - 1
            # Exact decimal text keeps the grid exact for fractional starts.
            params = [
                ("query", query),
                ("start", _number(float(times[first]))),
                ("end", _number(float(times[last]))),
                ("step", _number(step_seconds)),
                # Prometheus gives up first: a slow query comes back as its own timeout
                # error, and only a Prometheus that does not answer at all reaches ours.
                ("timeout", _number(self._range_timeout_seconds * RANGE_SERVER_TIMEOUT_SHARE)),
            ]
            result = self._query(
                address,
                query,
                "query_range",
                params,
                options,
                self._range_timeout_seconds,
                RANGE_BODY_BYTES,
            )
            series = _as_series_list(result, address, query)
            if len(series) > 1:
                raise _multiple_series(address, query, len(series))
            with _malformed_is_bad_response(address, query):
                for sample in series[0]["values"] if series else []:
                    timestamp, text = _range_pair(sample, address, query)
                    index = _grid_index(timestamp, start, step_seconds, address, query)
                    if index is not None and first <= index <= last:
                        values[index] = _parse_sample(text, address, query)
                        present[index] = True
        return times, values, present

    def requests_in_flight(self) -> int:
        """Instant and resource requests sent and not yet answered (or cut)."""
        with self._lock:
            return sum(self._requests_in_flight.values())

    def close(self) -> None:
        """Abort every request in flight and close every connection; returns at once.

        The source must not be used afterwards.
        """
        with self._lock:
            self._closed = True
        self._http.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- waiting within the answer budget ------------------------------------------

    def _fetch(
        self,
        address: str,
        query: str,
        options: BackendOptions = NO_OPTIONS,
        deadline: float | None = None,
        max_body_bytes: int = QUERY_BODY_BYTES,
        tenant: str = NO_TENANT,
    ) -> tuple[Any, float, float]:
        """Raw `result` of an instant query, its evaluation time and when it was sent
        (monotonic); raises BackendError.

        Waits at most the answer budget (or until `deadline`); past it, a TIMEOUT error
        says the answer is pending.
        """
        flight = self._flight(address, query, options, max_body_bytes, tenant)
        if not flight.done.is_set() and not flight.done.wait(self._wait_seconds(deadline)):
            raise self._pending(address, query)
        if flight.error is not None:
            raise flight.error.copy()
        return flight.result, flight.observed_at, flight.started

    def _resource_query(
        self,
        resource: ResourceName,
        pod_selector: str,
        scaled_object: ScaledObjectName | None = None,
    ) -> str:
        return resource_query(
            resource,
            pod_selector,
            cpu_rate_window_seconds=self._cpu_rate_window_seconds,
            scaled_object=scaled_object,
        )

    def _wait_seconds(self, deadline: float | None) -> float:
        if deadline is None:
            return self._answer_budget_seconds
        return min(max(deadline - time.monotonic(), 0.0), self._answer_budget_seconds)

    def _pending(self, address: str, query: str) -> BackendError:
        return BackendError(
            BackendErrorKind.TIMEOUT,
            address,
            query,
            f"no answer within the answer budget ({self._answer_budget_seconds:g} s); "
            "the request goes on and its answer will be used when it arrives",
        )

    def _fallback(self, key: tuple[Any, ...], failure: BackendError) -> Reading:
        remembered = self._recall(key)
        if remembered is None:
            return Reading(None, None, failure)
        return Reading(remembered.value, remembered.observed_at, failure)

    def _reading(self, flight: _Flight, key: tuple[Any, ...], ignore_null_values: bool) -> Reading:
        """The finished flight's reading by one ignoreNullValues rule."""
        reading = flight.readings.get(ignore_null_values)
        if reading is not None:
            return reading  # settled and remembered by the call that made it
        converted = self._settle(flight, key, ignore_null_values)
        if isinstance(converted, BackendError):
            return self._fallback(key, converted.copy())
        reading = flight.readings[ignore_null_values] = Reading(converted, flight.observed_at)
        return reading

    def _settle(
        self, flight: _Flight, key: tuple[Any, ...], ignore_null_values: bool
    ) -> float | BackendError:
        """The finished flight's value by one ignoreNullValues rule, remembered if good."""
        # Many ScaledObjects read the same answer: convert it once per rule.
        converted = flight.converted.get(ignore_null_values)
        if converted is None:
            if flight.error is not None:
                converted = flight.error
            else:
                _, address, query, _, _ = key
                try:
                    converted = _to_value(flight.result, address, query, ignore_null_values)
                except BackendError as conversion_error:
                    converted = conversion_error
            flight.converted[ignore_null_values] = converted
        if not isinstance(converted, BackendError):
            self._remember(key, converted, flight.observed_at, flight.started)
        return converted

    # -- coalescing --------------------------------------------------------------

    def _flight(
        self,
        address: str,
        query: str,
        options: BackendOptions,
        max_body_bytes: int = QUERY_BODY_BYTES,
        tenant: str = NO_TENANT,
    ) -> _Flight:
        """The request whose answer an instant query shares with identical calls, of
        every tenant; a request it has to send is charged to `tenant`.

        An answer younger than `coalesce_seconds` is shared as it is. One that
        is older, but younger than twice that, is still served while a single
        background request refreshes it (refresh-ahead), so that in steady
        state no call waits for Prometheus. Older answers are fetched anew. A
        request that outlived its own deadline without finishing (a stuck
        thread) is given up and a new one started. The returned flight may
        still be in flight.
        """
        key = (address, query, options)
        refresh = False
        with self._lock:
            now = self._clock()
            flight = self._flights.get(key)
            if flight is None or self._stale(flight, now, options):
                busy = self._reserve(address, tenant)
                if busy is not None:
                    return self._busy_flight(address, query, busy, now)
                flight = _Flight(now, max_body_bytes, tenant)
                self._flights[key] = flight
                self._sweep_flights(now)
                leader = True
            else:
                leader = False
                if (
                    self._refresh_ahead
                    and flight.done.is_set()
                    and not flight.refreshing
                    and now - flight.finished_at >= self._coalesce_seconds
                    and self._reserve(address, tenant) is None
                ):
                    flight.refreshing = refresh = True
        if leader:
            self._pool.submit(partial(self._run, flight, key))
        elif refresh:
            self._pool.submit(partial(self._refresh, key, flight.max_body_bytes, tenant))
        return flight

    def _stale(self, flight: _Flight, now: float, options: BackendOptions) -> bool:
        if flight.done.is_set():
            return self._expired(flight, now)
        # Deadlines end every request; one still running well past its own is stuck.
        limit = self._request_timeout(options) + self._answer_budget_seconds
        return time.monotonic() - flight.started > limit

    def _reserve(self, address: str, tenant: str) -> str | None:
        """Count one more request to `address` by `tenant`, or say why not. Called with
        the lock held."""
        if self._closed:
            return "the source is closed"
        held = total = 0
        if tenant != NO_TENANT:
            # Its own slow queries: busy for it alone. Other tenants go unnamed.
            held = self._tenant_requests.get((address, tenant), 0)
            if held >= self._max_requests_per_tenant:
                return (
                    f"this namespace already has {held} requests to this backend "
                    "unanswered; not queueing another"
                )
            total = self._tenant_totals.get(tenant, 0)
            if total >= self._max_requests_of_tenant:
                return (
                    f"this namespace already has {total} requests to its backends "
                    "unanswered; not queueing another"
                )
        pending = self._requests_in_flight.get(address, 0)
        if pending >= self._max_requests_per_address:
            return (
                f"the backend is busy: {pending} requests to it are still unanswered; "
                "not queueing another"
            )
        if sum(self._requests_in_flight.values()) >= self._max_requests:
            return f"all {self._max_requests} request slots wait on backends; not queueing another"
        self._requests_in_flight[address] = pending + 1
        if tenant != NO_TENANT:
            self._tenant_requests[address, tenant] = held + 1
            self._tenant_totals[tenant] = total + 1
        return None

    def _release(self, address: str, tenant: str) -> None:
        with self._lock:
            _count_down(self._requests_in_flight, address)
            if tenant != NO_TENANT:
                _count_down(self._tenant_requests, (address, tenant))
                _count_down(self._tenant_totals, tenant)

    def _busy_flight(self, address: str, query: str, problem: str, now: float) -> _Flight:
        # Not stored: the next call tries again.
        flight = _Flight(observed_at=now)
        flight.error = BackendError(BackendErrorKind.TIMEOUT, address, query, problem)
        flight.finished_at = now
        flight.done.set()
        return flight

    def _run(self, flight: _Flight, key: _FlightKey) -> None:
        address, query, options = key
        try:
            flight.result = self._instant_request(
                address, query, options, flight.observed_at, flight.max_body_bytes
            )
        except BackendError as error:
            flight.error = error
        except Exception as error:
            # Waiters must never hang on a request that died of a bug.
            flight.error = BackendError(
                BackendErrorKind.BAD_RESPONSE,
                address,
                query,
                f"unexpected {type(error).__name__}: {error}",
            )
        finally:
            flight.finished_at = self._clock()
            # Callers that stopped waiting still want this answer remembered;
            # once the request no longer counts as in flight, it is.
            self._settle_wanted(flight, key)
            self._release(address, flight.tenant)
            flight.done.set()
        self._settle_wanted(flight, key)  # those who gave up in the meantime

    def _settle_wanted(self, flight: _Flight, key: _FlightKey) -> None:
        for ignore_null_values in list(flight.wanted):
            self._settle(flight, ("instant", *key, ignore_null_values), ignore_null_values)

    def _refresh(self, key: _FlightKey, max_body_bytes: int, tenant: str) -> None:
        flight = _Flight(self._clock(), max_body_bytes, tenant)
        self._run(flight, key)
        with self._lock:
            current = self._flights.get(key)
            if current is None or current.observed_at <= flight.observed_at:
                self._flights[key] = flight

    def _expired(self, flight: _Flight, now: float) -> bool:
        # A clock that stepped back (NTP) must not make an old answer look fresh.
        # With refresh-ahead an answer stays usable for a second coalescing interval.
        usable = self._coalesce_seconds * (2 if self._refresh_ahead else 1)
        return not 0 <= now - flight.finished_at < usable

    def _sweep_flights(self, now: float) -> None:
        # Called with the lock held, at most every few seconds, so that the
        # table holds only recent queries.
        if now - self._flights_swept_at < max(self._coalesce_seconds, 5.0):
            return
        self._flights_swept_at = now
        expired = [
            key
            for key, flight in self._flights.items()
            if flight.done.is_set() and self._expired(flight, now)
        ]
        for key in expired:
            del self._flights[key]

    # -- last good values ----------------------------------------------------------

    def _remember(self, key: tuple[Any, ...], value: Any, observed_at: float, sent: float) -> None:
        """Keep `value` as the last good one, unless the one kept came from a request sent
        later (`sent`, monotonic): which answer is newer is told by the monotonic clock,
        so a wall clock stepped back (NTP) cannot pin an old value for the size of the
        step."""
        known = self._last_good.get(key)
        if known is not None and known.observed_at == observed_at:
            known.last_read = self._clock()  # the same answer again: no need for the lock
            return
        with self._lock:
            now = self._clock()
            known = self._last_good.get(key)
            if known is not None and known.sent > sent:
                return  # a late answer to an older request
            size = _remembered_size(key, value)
            self._last_good_bytes += size - (known.size if known is not None else 0)
            self._last_good[key] = _Remembered(value, observed_at, now, size, sent)
            self._sweep_last_good(now)
            if self._last_good_bytes > LAST_GOOD_BYTES:
                self._forget_least_read()

    def _recall(self, key: tuple[Any, ...]) -> _Remembered | None:
        with self._lock:
            now = self._clock()
            self._sweep_last_good(now)
            remembered = self._last_good.get(key)
            if remembered is not None:
                remembered.last_read = now
            return remembered

    def _sweep_last_good(self, now: float) -> None:
        # Called with the lock held; a sweep is O(entries), so at most a few
        # times per TTL.
        if now - self._last_good_swept_at < self._last_good_ttl_seconds / 4:
            return
        self._last_good_swept_at = now
        expired = [
            key
            for key, entry in self._last_good.items()
            if now - entry.last_read >= self._last_good_ttl_seconds
        ]
        for key in expired:
            self._last_good_bytes -= self._last_good.pop(key).size

    def _forget_least_read(self) -> None:
        # Called with the lock held. O(n log n), once per quarter of the budget filled.
        by_last_read = sorted(self._last_good.items(), key=lambda item: item[1].last_read)
        for key, entry in by_last_read:
            if self._last_good_bytes <= LAST_GOOD_BYTES * 3 // 4:
                break
            del self._last_good[key]
            self._last_good_bytes -= entry.size

    # -- HTTP ------------------------------------------------------------------------

    def _request_timeout(self, options: BackendOptions) -> float:
        return options.timeout_seconds or self._timeout_seconds

    def _instant_request(
        self, address: str, query: str, options: BackendOptions, at: float, max_body_bytes: int
    ) -> Any:
        timeout = self._request_timeout(options)
        params = [
            ("query", query),
            ("time", _number(at)),
            # Let Prometheus stop evaluating once nobody waits for the answer.
            ("timeout", _number(timeout)),
        ]
        return self._query(address, query, "query", params, options, timeout, max_body_bytes)

    def _query(
        self,
        address: str,
        query: str,
        endpoint: str,
        params: list[tuple[str, str]],
        options: BackendOptions,
        timeout_seconds: float,
        max_body_bytes: int,
    ) -> Any:
        """`data.result` of one Prometheus API call; every failure is a BackendError."""
        # KEDA's order: its own parameters, then namespace, then the trigger's extra ones.
        if options.namespace:
            params.append(("namespace", options.namespace))
        params.extend(options.query_parameters)
        headers = self._headers
        if options.custom_headers:
            headers = {**headers, **dict(options.custom_headers)}
        verify = self._verify_tls and not options.unsafe_ssl
        try:
            answer = self._http.get(
                f"{address.rstrip('/')}/api/v1/{endpoint}",
                params=params,
                headers=headers,
                timeout_seconds=timeout_seconds,
                verify=verify,
                max_body_bytes=max_body_bytes,
            )
        except HttpFailure as failure:
            raise _transport_error(failure, address, query) from None
        except ValueError as error:
            # requests refuses what cannot be sent (a header value with a newline).
            raise BackendError(
                BackendErrorKind.QUERY_ERROR, address, query, f"cannot send the request: {error}"
            ) from None
        return _result_of(answer, address, query)


# -- conversion (KEDA's prometheus scaler rules) -------------------------------------


@contextmanager
def _malformed_is_bad_response(address: str, query: str) -> Iterator[None]:
    """Turn JSON of the wrong shape (a missing key, a list too short) into a BackendError."""
    try:
        yield
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise BackendError(
            BackendErrorKind.BAD_RESPONSE,
            address,
            query,
            f"the response is not a Prometheus query result ({type(error).__name__}: {error})",
        ) from error


def _number(value: float) -> str:
    return repr(float(value))


def _to_value(result: Any, address: str, query: str, ignore_null_values: bool) -> float:
    with _malformed_is_bad_response(address, query):
        value = _single_value(result, address, query, ignore_null_values)
    if value is None:
        return 0.0
    if math.isfinite(value):
        return value
    if ignore_null_values:
        return 0.0
    raise BackendError(
        BackendErrorKind.NULL_VALUE,
        address,
        query,
        f"the query returns {value}; set ignoreNullValues to true to count this as 0",
    )


def _single_value(result: Any, address: str, query: str, ignore_null_values: bool) -> float | None:
    """The one number of an instant query's result; None for an ignored empty result."""
    if _is_sample(result):
        # A scalar (or string) result is one [time, "value"] pair, not a list of series;
        # only a string query makes it non-numeric.
        return _parse_sample(result[1], address, query, BackendErrorKind.QUERY_ERROR)
    series = _as_series_list(result, address, query)
    if len(series) > 1:
        raise _multiple_series(address, query, len(series))
    if series and "values" in series[0]:
        raise BackendError(
            BackendErrorKind.QUERY_ERROR,
            address,
            query,
            "the query returns a range vector; it must return one number "
            "(an instant vector with one series, or a scalar)",
        )
    # KEDA counts a series without a value, or with an empty one, as no result.
    sample = series[0].get("value") if series else None
    if not sample:
        if ignore_null_values:
            return None
        raise BackendError(
            BackendErrorKind.NULL_VALUE,
            address,
            query,
            "the result is empty (the target may be lost); "
            "set ignoreNullValues to true to count this as 0",
        )
    if not isinstance(sample, list) or len(sample) < 2:
        raise BackendError(
            BackendErrorKind.BAD_RESPONSE,
            address,
            query,
            "the series' value is not a [time, value] pair",
        )
    return _parse_sample(sample[1], address, query)


def _is_sample(result: Any) -> bool:
    return (
        isinstance(result, list)
        and len(result) == 2
        and isinstance(result[0], int | float)
        and isinstance(result[1], str)
    )


def _as_series_list(result: Any, address: str, query: str) -> list[dict[str, Any]]:
    if isinstance(result, list) and all(isinstance(item, dict) for item in result):
        return result
    if _is_sample(result):
        raise BackendError(
            BackendErrorKind.QUERY_ERROR,
            address,
            query,
            "the query returns a scalar where series are expected",
        )
    raise BackendError(
        BackendErrorKind.BAD_RESPONSE,
        address,
        query,
        f"the result is a {type(result).__name__}, not a list of series",
    )


def _range_pair(sample: Any, address: str, query: str) -> tuple[Any, Any]:
    """A range series' [time, value] pair; anything else is a bad response."""
    if isinstance(sample, list) and len(sample) == 2:
        return sample[0], sample[1]
    shown = f"{len(sample)} items" if isinstance(sample, list) else _json_shown(sample)
    raise BackendError(
        BackendErrorKind.BAD_RESPONSE,
        address,
        query,
        f"a sample of the series is {shown}, not a [time, value] pair",
    )


def _grid_index(
    timestamp: Any, start: float, step_seconds: float, address: str, query: str
) -> int | None:
    """The grid point a range sample's time falls on; None when it is too far off the grid
    to count. A time that is not a finite number is a bad response (it would overflow the
    rounding)."""
    seconds = _finite_time(timestamp)
    if seconds is None:
        raise BackendError(
            BackendErrorKind.BAD_RESPONSE,
            address,
            query,
            f"a sample's time is {_json_shown(timestamp)}, not a finite number",
        )
    position = (seconds - start) / step_seconds
    return round(position) if math.isfinite(position) else None


def _finite_time(timestamp: Any) -> float | None:
    # Prometheus writes sample times as JSON numbers (a number in a string is read too);
    # a bool is not one.
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float | str):
        return None
    try:
        seconds = float(timestamp)
    except (ValueError, OverflowError):  # a huge JSON integer overflows a float
        return None
    return seconds if math.isfinite(seconds) else None


def _parse_sample(
    text: Any, address: str, query: str, kind: BackendErrorKind = BackendErrorKind.BAD_RESPONSE
) -> float:
    if not isinstance(text, str):
        # Prometheus writes every sample value as a string ("1", "NaN", "+Inf"); KEDA's
        # prometheus scaler fails on anything else, and a JSON true must not read as 1.
        raise BackendError(
            BackendErrorKind.BAD_RESPONSE,
            address,
            query,
            f"a sample value is {_json_shown(text)}, not a string as Prometheus writes it",
        )
    try:
        # Prometheus writes NaN, +Inf and -Inf, which float() reads.
        return float(text)
    except ValueError:
        raise BackendError(
            kind,
            address,
            query,
            f"the query returns {_quote(text)}, not a number",
        ) from None


def _json_shown(value: Any) -> str:
    """A parsed JSON value as a message shows it: short, and saying what it is."""
    if isinstance(value, str):
        return f"the string {_quote(value, 40)}"
    if value is None or isinstance(value, bool):
        return json.dumps(value)  # null, true, false
    if isinstance(value, int | float):
        return f"the number {str(value)[:40]}"
    return "an array" if isinstance(value, list) else "an object"


def _multiple_series(address: str, query: str, count: int) -> BackendError:
    return BackendError(
        BackendErrorKind.MULTIPLE_SERIES,
        address,
        query,
        f"the query returns {count} series but must return one; "
        "aggregate it, e.g. sum(...) or max(...)",
    )


def _per_pod(result: Any, address: str, query: str) -> dict[str, dict[str, PodSeries]]:
    """The series of `resource_query` by their label `signal`, then by "namespace/pod"."""
    signals: dict[str, dict[str, PodSeries]] = {}
    with _malformed_is_bad_response(address, query):
        for series in _as_series_list(result, address, query):
            labels = series["metric"]
            value = _parse_sample(series["value"][1], address, query)
            if math.isnan(value):
                continue
            name = f"{labels.get('namespace', '')}/{labels.get('pod', '')}"
            signals.setdefault(str(labels.get("signal", "")), {})[name] = PodSeries(
                value, str(labels.get("condition", "")), str(labels.get("phase", ""))
            )
    return signals


# -- HTTP answers --------------------------------------------------------------------

# Error text from a backend is quoted only this far, and only from a Prometheus
# error field: whatever answers may be anything, and messages end up in logs,
# events and gRPC status details.
QUOTE_LIMIT = 120


def _quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """A short, printable, quoted prefix of untrusted text."""
    text = value if isinstance(value, str) else str(value)
    shown = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return repr(shown + ("..." if len(text) > limit else ""))


def _transport_error(failure: HttpFailure, address: str, query: str) -> BackendError:
    if failure.kind is HttpFailureKind.TIMEOUT:
        return BackendError(BackendErrorKind.TIMEOUT, address, query, str(failure))
    if failure.kind is HttpFailureKind.TOO_LARGE:
        return BackendError(BackendErrorKind.BAD_RESPONSE, address, query, str(failure))
    if failure.connected:
        problem = f"connected, but no whole HTTP answer came ({failure})"
    else:
        problem = f"cannot connect ({failure})"
    return BackendError(BackendErrorKind.CONNECTION, address, query, problem)


def _result_of(answer: HttpAnswer, address: str, query: str) -> Any:
    """`data.result` of a Prometheus answer, by KEDA's reading of it; raises BackendError."""
    status = answer.status
    if 300 <= status < 400:
        # Following it would ask an address nobody allowed.
        raise BackendError(
            BackendErrorKind.REDIRECT,
            address,
            query,
            f"the server answers with a redirect (HTTP {status}); redirects are never followed",
            status_code=status,
        )
    document = _json(answer.body)
    if not 200 <= status < 300:
        raise _status_error(status, answer.content_type, document, address, query)
    if not isinstance(document, dict):
        raise BackendError(
            BackendErrorKind.BAD_RESPONSE,
            address,
            query,
            f"the response is not a Prometheus query result ({_content(answer.content_type)})",
        )
    if document.get("status") == "error":
        raise BackendError(
            BackendErrorKind.QUERY_ERROR,
            address,
            query,
            f"Prometheus answers with an error: {_prometheus_error(document)}",
        )
    # KEDA reads a body without data or result (`{}`) as an empty result.
    data = document.get("data")
    if data is None:
        return []
    if not isinstance(data, dict):
        raise BackendError(
            BackendErrorKind.BAD_RESPONSE, address, query, "the response's data is not an object"
        )
    result = data.get("result")
    return [] if result is None else result


def _json(body: bytes) -> Any:
    """The parsed body, or None when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        return None


def _content(content_type: str) -> str:
    kind = content_type.split(";", 1)[0].strip()
    return f"content type {_quote(kind, 60)}" if kind else "no content type"


def _is_prometheus_error(document: Any) -> bool:
    return isinstance(document, dict) and document.get("status") == "error"


def _prometheus_error(document: dict[str, Any]) -> str:
    error_type = document.get("errorType", "error")
    return f"{_quote(error_type, 40)[1:-1]}: {_quote(document.get('error', ''))[1:-1]}"


def _status_error(
    status: int, content_type: str, document: Any, address: str, query: str
) -> BackendError:
    """A non-2xx answer; only a Prometheus error field is quoted, never a foreign body."""
    if _is_prometheus_error(document):
        error = _prometheus_error(document)
        if status in (400, 422):
            # bad_data (400) and execution (422) are Prometheus rejecting the query itself.
            return BackendError(
                BackendErrorKind.QUERY_ERROR,
                address,
                query,
                f"Prometheus rejects the query (HTTP {status}): {error}",
                status_code=status,
            )
        detail = error
    else:
        detail = f"not a Prometheus answer ({_content(content_type)})"
    return BackendError(
        BackendErrorKind.HTTP_STATUS,
        address,
        query,
        f"HTTP status {status}: {detail}",
        status_code=status,
    )
