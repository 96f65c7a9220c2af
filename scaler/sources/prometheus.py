"""Prometheus as a source of observations.

A thin adapter over prometheus-api-client that turns PromQL answers into plain
numbers with the conversion rules of KEDA's prometheus scaler, and owns what
talking to a remote backend needs: one HTTP client per address with a timeout
and no hidden retries, coalescing of identical queries (a thousand
ScaledObjects may send the same one every polling interval), and the last good
value of every query so that the engine can ride out a short outage. It only
remembers; deciding when a value is too old is the engine's business.
"""

from __future__ import annotations

import ast
import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar

import numpy as np
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from scaler.replica_calculator import PodState
from scaler.sources.resources import PodSeries, ResourceName, pods_from_signals, resource_query

__all__ = [
    "BackendError",
    "BackendErrorKind",
    "PrometheusSource",
    "Reading",
    "ResourceReading",
]

# Prometheus refuses range queries of more than 11,000 points per series.
PROMETHEUS_MAX_POINTS = 11_000


class BackendErrorKind(StrEnum):
    """Why a query gave no number; exported as a metric label, so short and stable."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_STATUS = "http_status"
    BAD_RESPONSE = "bad_response"
    QUERY_ERROR = "query_error"
    MULTIPLE_SERIES = "multiple_series"
    NULL_VALUE = "null_value"


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
        self.address = address
        self.query = query
        self.problem = problem
        self.status_code = status_code
        super().__init__(f"Prometheus at {address}, query {query!r}: {problem}")

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
    reading (or None) and `error` says what went wrong.
    """

    pods: tuple[PodState, ...] | None
    usage: Mapping[str, float] | None
    observed_at: float | None
    window_seconds: float = 0.0
    error: BackendError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


_T = TypeVar("_T")


class _Flight:
    """One HTTP request and everyone waiting for its answer."""

    __slots__ = ("converted", "done", "error", "finished_at", "observed_at", "refreshing", "result")

    def __init__(self, observed_at: float) -> None:
        self.done = threading.Event()
        self.observed_at = observed_at
        self.finished_at = 0.0
        self.result: Any = None
        self.error: BackendError | None = None
        self.refreshing = False  # a background request is replacing this answer
        self.converted: dict[bool, float | BackendError] = {}  # by ignoreNullValues


@dataclass
class _Remembered:
    value: Any
    observed_at: float
    last_read: float


class PrometheusSource:
    """Instant, resource and range queries against any number of Prometheus addresses.

    Thread-safe. `timeout_seconds` bounds each HTTP request of an instant or
    resource query (connect and each read; range queries use
    `range_timeout_seconds`). Identical queries to the same address share one
    HTTP request while it is in flight and reuse its answer, success or
    failure, for `coalesce_seconds` after it arrives, then serve it for as long
    again while one background request refreshes it (`refresh_ahead`). Last good values not read
    for `last_good_ttl_seconds` are forgotten. `clock` gives the evaluation
    time sent to Prometheus and the times used for coalescing and memory.
    """

    def __init__(
        self,
        timeout_seconds: float = 3.0,
        coalesce_seconds: float = 5.0,
        last_good_ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
        *,
        headers: Mapping[str, str] | None = None,
        verify_tls: bool = True,
        range_timeout_seconds: float = 30.0,
        range_chunk_points: int = 10_000,
        cpu_rate_window_seconds: float = 120.0,
        max_connections_per_address: int = 32,
        refresh_ahead: bool = True,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
        if coalesce_seconds < 0:
            raise ValueError(f"coalesce_seconds must be >= 0, got {coalesce_seconds}")
        if not 1 <= range_chunk_points <= PROMETHEUS_MAX_POINTS:
            raise ValueError(
                f"range_chunk_points must be in [1, {PROMETHEUS_MAX_POINTS}], "
                f"got {range_chunk_points}"
            )
        self._timeout_seconds = timeout_seconds
        self._coalesce_seconds = coalesce_seconds
        self._last_good_ttl_seconds = last_good_ttl_seconds
        self._clock = clock
        self._headers = dict(headers) if headers else None
        self._verify_tls = verify_tls
        self._range_timeout_seconds = range_timeout_seconds
        self._range_chunk_points = range_chunk_points
        self._cpu_rate_window_seconds = cpu_rate_window_seconds
        self._max_connections = max_connections_per_address
        self._refresh_ahead = refresh_ahead
        self._refresh_pool: ThreadPoolExecutor | None = None

        self._lock = threading.Lock()
        self._clients: dict[str, PrometheusConnect] = {}
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._flights_swept_at = clock()
        self._last_good: dict[tuple[Any, ...], _Remembered] = {}
        self._last_good_swept_at = clock()

    # -- public API ------------------------------------------------------------

    def instant(self, address: str, query: str, *, ignore_null_values: bool = True) -> float:
        """The query's value now, by KEDA's rules; raises BackendError."""
        result, _ = self._fetch(address, query)
        return _to_value(result, address, query, ignore_null_values)

    def read(self, address: str, query: str, *, ignore_null_values: bool = True) -> Reading:
        """Like `instant`, but never raises: on failure, the last good value and its time."""
        key = ("instant", address, query, ignore_null_values)
        flight = self._flight(address, query)
        # Many ScaledObjects read the same answer: convert it once per rule.
        converted = flight.converted.get(ignore_null_values)
        if converted is None:
            if flight.error is not None:
                converted = flight.error
            else:
                try:
                    converted = _to_value(flight.result, address, query, ignore_null_values)
                except BackendError as conversion_error:
                    converted = conversion_error
            flight.converted[ignore_null_values] = converted
        if isinstance(converted, BackendError):
            failure = converted.copy()
            remembered = self._recall(key)
            if remembered is None:
                return Reading(None, None, failure)
            return Reading(remembered.value, remembered.observed_at, failure)
        self._remember(key, converted, flight.observed_at)
        return Reading(converted, flight.observed_at)

    def read_resource(
        self, address: str, pod_selector: str, resource: ResourceName
    ) -> ResourceReading:
        """The pods `pod_selector` matches and their usage; never raises BackendError.

        Raises ValueError for a selector or resource the policy parser should
        have rejected. An answer without any usage series (the pods gone, or
        cAdvisor / kube-state-metrics not scraped) is not a reading: the last
        good one is held with an error, as after a failed request, so that the
        engine keeps it until it goes stale instead of dropping it at once.
        """
        query = resource_query(
            resource, pod_selector, cpu_rate_window_seconds=self._cpu_rate_window_seconds
        )
        window = self._cpu_rate_window_seconds if resource == "cpu" else 0.0
        key = ("resource", address, pod_selector, resource)
        try:
            result, observed_at = self._fetch(address, query)
            known = self._last_good.get(key)
            if known is not None and known.observed_at == observed_at:
                # The answer this reading was made from, shared by every ScaledObject
                # with this selector: parse thousands of series once, not per call.
                self._remember(key, known.value, observed_at)
                same: ResourceReading = known.value
                return same
            pods, usage = pods_from_signals(_per_pod(result, address, query))
            if not usage:
                raise BackendError(
                    BackendErrorKind.NULL_VALUE,
                    address,
                    query,
                    f"no {resource} usage series for the selected pods "
                    f"({len(pods)} with a request series)",
                )
        except BackendError as error:
            remembered = self._recall(key)
            if remembered is None:
                return ResourceReading(None, None, None, window, error)
            good: ResourceReading = remembered.value
            return replace(good, error=error)
        reading = ResourceReading(pods, usage, observed_at, window)
        self._remember(key, reading, observed_at)
        return reading

    def range(
        self, address: str, query: str, start: float, end: float, step_seconds: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """One series on the grid start, start + step, ... <= end; gaps are NaN.

        Long ranges are fetched in chunks below Prometheus' per-query point
        limit. Non-finite samples become NaN. Raises BackendError (more than
        one series is MULTIPLE_SERIES; no series at all gives all NaN).
        """
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be > 0, got {step_seconds}")
        if end < start:
            raise ValueError(f"end ({end}) is before start ({start})")
        count = math.floor((end - start) / step_seconds + 1e-9) + 1
        times = start + step_seconds * np.arange(count, dtype=np.float64)
        values = np.full(count, np.nan, dtype=np.float64)
        client = self._client(address)
        for first in range(0, count, self._range_chunk_points):
            last = min(first + self._range_chunk_points, count) - 1
            chunk_start, chunk_end = float(times[first]), float(times[last])
            result = self._request(
                address,
                query,
                partial(self._range_request, client, query, chunk_start, chunk_end, step_seconds),
            )
            series = _as_series_list(result, address, query)
            if len(series) > 1:
                raise _multiple_series(address, query, len(series))
            with _malformed_is_bad_response(address, query):
                for timestamp, text in series[0]["values"] if series else []:
                    index = round((float(timestamp) - start) / step_seconds)
                    if first <= index <= last:
                        values[index] = _parse_sample(text, address, query)
        values[~np.isfinite(values)] = np.nan
        return times, values

    def close(self) -> None:
        """Close every HTTP client; the source must not be used afterwards."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            pool, self._refresh_pool = self._refresh_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for client in clients:
            client.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- coalescing --------------------------------------------------------------

    def _fetch(self, address: str, query: str) -> tuple[Any, float]:
        """Raw `result` of an instant query and its evaluation time; raises BackendError."""
        flight = self._flight(address, query)
        if flight.error is not None:
            raise flight.error.copy()
        return flight.result, flight.observed_at

    def _flight(self, address: str, query: str) -> _Flight:
        """The finished request whose answer an instant query shares with identical calls.

        An answer younger than `coalesce_seconds` is shared as it is. One that
        is older, but younger than twice that, is still served while a single
        background request refreshes it (refresh-ahead), so that in steady
        state no call waits for Prometheus. Older answers are fetched inline.
        """
        key = (address, query)
        refresh = False
        with self._lock:
            now = self._clock()
            flight = self._flights.get(key)
            leader = flight is None or (flight.done.is_set() and self._expired(flight, now))
            if leader:
                flight = _Flight(observed_at=now)
                self._flights[key] = flight
                self._sweep_flights(now)
            elif (
                self._refresh_ahead
                and flight is not None
                and flight.done.is_set()
                and not flight.refreshing
                and now - flight.finished_at >= self._coalesce_seconds
            ):
                flight.refreshing = refresh = True
        assert flight is not None
        if leader:
            self._run(flight, address, query)
        elif refresh:
            self._refresher().submit(self._refresh, key, address, query)
        # A follower waits for a leader whose request is bounded by the socket timeouts.
        flight.done.wait()
        return flight

    def _run(self, flight: _Flight, address: str, query: str) -> None:
        try:
            flight.result = self._instant_request(address, query, flight.observed_at)
        except BackendError as error:
            flight.error = error
        except Exception as error:
            # Waiters must never hang on a leader that died of a bug.
            flight.error = BackendError(
                BackendErrorKind.BAD_RESPONSE,
                address,
                query,
                f"unexpected {type(error).__name__}: {error}",
            )
        finally:
            flight.finished_at = self._clock()
            flight.done.set()

    def _refresh(self, key: tuple[str, str], address: str, query: str) -> None:
        flight = _Flight(observed_at=self._clock())
        self._run(flight, address, query)
        with self._lock:
            self._flights[key] = flight

    def _refresher(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._refresh_pool is None:
                self._refresh_pool = ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="prometheus-refresh"
                )
            return self._refresh_pool

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

    def _remember(self, key: tuple[Any, ...], value: Any, observed_at: float) -> None:
        known = self._last_good.get(key)
        if known is not None and known.observed_at == observed_at:
            known.last_read = self._clock()  # the same answer again: no need for the lock
            return
        with self._lock:
            now = self._clock()
            self._last_good[key] = _Remembered(value, observed_at, now)
            self._sweep_last_good(now)

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
            del self._last_good[key]

    # -- HTTP ------------------------------------------------------------------------

    def _client(self, address: str) -> PrometheusConnect:
        with self._lock:
            client = self._clients.get(address)
            if client is None:
                client = self._new_client(address)
                self._clients[address] = client
            return client

    def _new_client(self, address: str) -> PrometheusConnect:
        url = address.rstrip("/")
        # No retries: KEDA's scaler does not retry, a retry with backoff would
        # break the timeout bound, and the next polling interval is the retry.
        # read=False makes a read timeout surface as a timeout, not as
        # "max retries exceeded".
        retry = Retry(total=0, read=False, redirect=0, raise_on_status=False)
        session = requests.Session()
        session.verify = self._verify_tls
        client = PrometheusConnect(
            url=url,
            headers=self._headers,
            disable_ssl=not self._verify_tls,
            retry=retry,
            session=session,
            timeout=self._timeout_seconds,
        )
        # The client mounts an adapter with the default pool of 10 connections;
        # replace it so that concurrent distinct queries reuse connections.
        session.mount(
            url,
            HTTPAdapter(
                max_retries=retry,
                pool_connections=1,
                pool_maxsize=self._max_connections,
            ),
        )
        return client

    def _instant_request(self, address: str, query: str, at: float) -> Any:
        client = self._client(address)
        params = {
            "time": _number(at),
            # Let Prometheus stop evaluating once nobody waits for the answer.
            "timeout": _number(self._timeout_seconds),
        }
        return self._request(address, query, lambda: client.custom_query(query, params=params))

    def _range_request(
        self, client: PrometheusConnect, query: str, start: float, end: float, step_seconds: float
    ) -> Any:
        return client.custom_query_range(
            query,
            start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC),
            step=_number(step_seconds),
            # The client rounds start and end to whole seconds; these keep the
            # grid exact for fractional starts.
            params={"start": _number(start), "end": _number(end)},
            timeout=self._range_timeout_seconds,
        )

    def _request(self, address: str, query: str, call: Callable[[], _T]) -> _T:
        """Run one client call, turning every way it can fail into a BackendError."""
        try:
            return call()
        except requests.Timeout as error:
            raise BackendError(
                BackendErrorKind.TIMEOUT, address, query, f"no answer within the timeout ({error})"
            ) from error
        except requests.ConnectionError as error:
            raise BackendError(
                BackendErrorKind.CONNECTION, address, query, f"cannot connect ({error})"
            ) from error
        except PrometheusApiClientException as error:
            raise _status_error(str(error), address, query) from error
        except (ValueError, KeyError, TypeError, IndexError) as error:
            # Malformed JSON (requests' JSONDecodeError is a ValueError) or JSON
            # without data.result.
            raise BackendError(
                BackendErrorKind.BAD_RESPONSE,
                address,
                query,
                f"the response is not a Prometheus query result ({type(error).__name__}: {error})",
            ) from error
        except requests.RequestException as error:
            raise BackendError(
                BackendErrorKind.CONNECTION, address, query, f"request failed ({error})"
            ) from error


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
    if not series:
        if ignore_null_values:
            return None
        raise BackendError(
            BackendErrorKind.NULL_VALUE,
            address,
            query,
            "the result is empty (the target may be lost); "
            "set ignoreNullValues to true to count this as 0",
        )
    if len(series) > 1:
        raise _multiple_series(address, query, len(series))
    if "values" in series[0]:
        raise BackendError(
            BackendErrorKind.QUERY_ERROR,
            address,
            query,
            "the query returns a range vector; it must return one number "
            "(an instant vector with one series, or a scalar)",
        )
    return _parse_sample(series[0]["value"][1], address, query)


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
        f"unexpected result {str(result)[:200]!r}",
    )


def _parse_sample(
    text: Any, address: str, query: str, kind: BackendErrorKind = BackendErrorKind.BAD_RESPONSE
) -> float:
    try:
        # Prometheus writes NaN, +Inf and -Inf, which float() reads.
        return float(text)
    except (TypeError, ValueError):
        raise BackendError(
            kind,
            address,
            query,
            f"the query returns {str(text)[:100]!r}, not a number",
        ) from None


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


def _status_error(message: str, address: str, query: str) -> BackendError:
    """Classify prometheus-api-client's "HTTP Status Code N (b'body')" failure."""
    status_code: int | None = None
    body = ""
    prefix = "HTTP Status Code "
    if message.startswith(prefix):
        code, _, rest = message[len(prefix) :].partition(" ")
        status_code = int(code) if code.isdigit() else None
        body = _body_text(rest.removeprefix("(").removesuffix(")"))
    prometheus_error = _prometheus_error(body)
    if prometheus_error is not None and status_code in (400, 422):
        # bad_data (400) and execution (422) are Prometheus rejecting the query itself.
        return BackendError(
            BackendErrorKind.QUERY_ERROR,
            address,
            query,
            f"Prometheus rejects the query (HTTP {status_code}): {prometheus_error}",
            status_code=status_code,
        )
    detail = prometheus_error or body[:200] or "no body"
    return BackendError(
        BackendErrorKind.HTTP_STATUS,
        address,
        query,
        f"HTTP status {status_code if status_code is not None else '?'}: {detail}",
        status_code=status_code,
    )


def _body_text(literal: str) -> str:
    try:
        raw = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return literal
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return str(raw)


def _prometheus_error(body: str) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if isinstance(document, dict) and document.get("status") == "error":
        return f"{document.get('errorType', 'error')}: {document.get('error', '')}"
    return None
