"""The service's own Prometheus metrics: why it scaled, how well it forecast, how it is doing.

Per-ScaledObject state (the latest decision, demand, forecast error, backend
error counts) lives in an ordered dict, least recently decided first, that a
custom collector turns into metric families at scrape time. Recording is
therefore a dict lookup, a move to the end and a few attribute stores on the
request path, all formatting happens on scrape, and a ScaledObject that has not
been seen for `idle_seconds` is dropped from the front of the dict and so stops
being exported: label cardinality follows the ScaledObjects that exist, not
every one that ever existed. Dropping looks at the front only, so its cost is
amortised O(1) per recording however many names have passed by. gRPC metrics
are labelled by method and status code only, a set fixed by the service; they
are plain counts too (a bucket index found by bisection, two additions), turned
into a counter and a histogram on scrape with the series prometheus_client's
own Counter and Histogram give: on every call that is less than half the
cost of those classes, whose per-value locks and checks showed as a tenth of a
warm GetMetrics.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from scaler.engine import Decision
from scaler.sources.bounded_http import Watch, Watchdog

NAMESPACE = "tidescaler"
SCALEDOBJECT_LABELS = ("namespace", "scaledobject")

RPC_LABELS = ("method", "code")
# Spans a GetMetricSpec answered from configuration (well under 1 ms) up to a
# GetMetrics that waited on a slow backend until KEDA's 3 s deadline.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RPC_BOUND_LABELS = (*map(floatToGoString, RPC_BUCKETS), "+Inf")  # the `le` values


@dataclass
class _ScaledObjectState:
    """What the collector exports for one ScaledObject. Mutated in place by record_*."""

    last_seen: float
    decision: Decision | None = None
    demand: float | None = None
    smape: float | None = None
    under_rate: float | None = None
    coverage: float | None = None
    backend_errors: dict[str, int] = field(default_factory=dict)


class Telemetry:
    """All metrics of one `tidescaler serve` process, registered in `registry`.

    Without a registry a fresh one is made: prometheus_client's global default
    registry is never used, so two instances (or two tests) never share series.

    `clock` and the `now` given to `record_decision` must be the same clock
    (Unix seconds by default); idle ScaledObjects are pruned against it on every
    scrape and whenever a new one is added, and beyond `max_scaledobjects` the
    one seen longest ago goes.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        idle_seconds: float = 600.0,
        max_scaledobjects: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if idle_seconds <= 0:
            raise ValueError(f"idle_seconds must be > 0, got {idle_seconds}")
        if max_scaledobjects < 1:
            raise ValueError(f"max_scaledobjects must be >= 1, got {max_scaledobjects}")
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        self.idle_seconds = idle_seconds
        self.max_scaledobjects = max_scaledobjects
        self._clock = clock
        # Least recently decided first: record_decision moves its key to the end, so
        # the idle ones are always at the front. The other record_* calls leave an
        # existing key where it is (they do not count as being seen).
        self._states: OrderedDict[tuple[str, str], _ScaledObjectState] = OrderedDict()
        # Guards the order, insertion, pruning and counter increments; plain
        # attribute stores on a state need no lock.
        self._lock = threading.Lock()

        self._rpc = _RpcCounts(clock)
        registry.register(_RpcCollector(self._rpc))
        registry.register(_ScaledObjectCollector(self))

    # -- recording (the request path) --

    def record_decision(
        self,
        namespace: str,
        scaledobject: str,
        decision: Decision,
        demand: float | None,
        now: float,
    ) -> None:
        """Remember the latest decision for a ScaledObject; exported on the next scrape."""
        key = (namespace, scaledobject)
        with self._lock:
            state = self._states.get(key)
            if state is None:
                state = self._add_locked(namespace, scaledobject, now)
            else:
                self._states.move_to_end(key)
            state.last_seen = now
        state.decision = decision
        state.demand = demand

    def record_forecast_error(
        self,
        namespace: str,
        scaledobject: str,
        smape: float,
        under_rate: float,
        coverage: float | None = None,
    ) -> None:
        """Rolling error of past forecasts against the demand that followed, all as ratios.

        `smape` is a ratio (0 to 2; `ForecastErrors.smape` / 100), `under_rate`
        the share of forecast medians below the demand, `coverage` the share of
        demands within the upper band.
        """
        state = self._states.get((namespace, scaledobject))
        if state is None:
            state = self._add(namespace, scaledobject, self._clock())
        state.smape = smape
        state.under_rate = under_rate
        state.coverage = coverage

    def record_backend_error(self, namespace: str, scaledobject: str, kind: str) -> None:
        """Count one failed metric-backend read (timeout, connection, http_status, ...)."""
        with self._lock:
            state = self._states.get((namespace, scaledobject))
            if state is None:
                state = self._add_locked(namespace, scaledobject, self._clock())
            errors = state.backend_errors
            errors[kind] = errors.get(kind, 0) + 1

    def record_rpc(self, method: str, code: str, seconds: float) -> None:
        """Count one gRPC request and observe its duration."""
        self._rpc.record(method, code, seconds)

    def rpc_recorder(self) -> Callable[[str, str, float], None]:
        """`record_rpc` itself, for the server's every call: one Python frame fewer."""
        return self._rpc.record

    def rpc_counts(self, method: str, code: str) -> list[float]:
        """The counts `record_rpc(method, code, ...)` adds to, for a caller that adds to
        them inline (see `add_call`); the series is exported from now on, at zero."""
        return self._rpc.counts_of(method, code)

    # -- serving --

    def start_http_server(
        self, port: int, addr: str = "0.0.0.0", serving: Callable[[], bool] | None = None
    ) -> tuple[WSGIServer, Thread]:
        """Serve /metrics from this registry on a daemon thread; returns the server and thread.

        With `serving`, /healthz answers 200 while it says so and 503 otherwise: a
        plaintext probe for a gRPC port that speaks TLS only (see `with_healthz`).

        prometheus_client's own server, bounded: at most METRICS_CONNECTIONS connections
        at a time (one thread each), and a connection whose request has not all arrived
        within METRICS_READ_SECONDS is closed. Without the bounds, clients that open
        connections and send nothing (or a byte now and then) held a thread each, for as
        long as they liked. `addr` may be IPv6, in brackets or not ("[::]": all)."""
        host = addr.strip("[]")
        app = make_wsgi_app(self.registry)
        if serving is not None:
            app = with_healthz(app, serving)
        try:
            server = make_server(
                host, port, app, _BoundedMetricsServer, handler_class=_MetricsRequestHandler
            )
        except OSError as err:
            if err.errno != errno.EAFNOSUPPORT or host != "::":
                raise
            # A host without IPv6: its IPv4 wildcard, as gRPC does for "[::]".
            server = make_server(
                "0.0.0.0", port, app, _BoundedMetricsServer, handler_class=_MetricsRequestHandler
            )
        thread = Thread(target=server.serve_forever, name="metrics-http", daemon=True)
        thread.start()
        return server, thread

    # -- state --

    def tracked(self) -> int:
        """How many ScaledObjects are currently exported."""
        return len(self._states)

    def prune(self, now: float | None = None) -> int:
        """Drop ScaledObjects idle for longer than idle_seconds; returns how many were dropped."""
        with self._lock:
            return self._prune_locked(self._clock() if now is None else now)

    def snapshot(self) -> list[tuple[tuple[str, str], _ScaledObjectState]]:
        """Prune, then the live states (for the collector)."""
        with self._lock:
            self._prune_locked(self._clock())
            return list(self._states.items())

    def _add(self, namespace: str, scaledobject: str, now: float) -> _ScaledObjectState:
        with self._lock:
            return self._add_locked(namespace, scaledobject, now)

    def _add_locked(self, namespace: str, scaledobject: str, now: float) -> _ScaledObjectState:
        key = (namespace, scaledobject)
        state = self._states.get(key)  # another thread may have added it meanwhile
        if state is not None:
            return state
        self._prune_locked(now)
        while len(self._states) >= self.max_scaledobjects:
            # Still full of live entries: evict the one seen longest ago, so the
            # bound holds even when names churn faster than idle_seconds.
            self._states.popitem(last=False)
        state = _ScaledObjectState(last_seen=now)
        self._states[key] = state
        return state

    def _prune_locked(self, now: float) -> int:
        """Drop idle states from the front; stops at the first live one.

        Concurrent calls may record times a few microseconds out of order, so a
        state can wait behind a slightly younger one until the next prune.
        """
        cutoff = now - self.idle_seconds
        states = self._states
        dropped = 0
        while states:
            key = next(iter(states))
            if states[key].last_seen >= cutoff:
                break
            del states[key]
            dropped += 1
        return dropped


def with_healthz(app: Any, serving: Callable[[], bool]) -> Any:
    """`app` (WSGI) with /healthz: 200 `serving` while `serving()` says so, else 503 `not
    serving` (starting, draining after SIGTERM, stopping), as the gRPC health service."""

    def healthz(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != "/healthz":
            return app(environ, start_response)
        up = serving()
        start_response(
            "200 OK" if up else "503 Service Unavailable",
            [("Content-Type", "text/plain; charset=utf-8")],
        )
        return [b"serving\n" if up else b"not serving\n"]

    return healthz


def new_rpc_counts(created: float) -> list[float]:
    """One (method, code)'s counts, as `_RpcCounts` keeps them: none yet."""
    return [0.0] * (len(RPC_BUCKETS) + 2) + [created]


def add_call(counts: list[float], seconds: float) -> None:
    """Count one call of `seconds` in `counts` (from `Telemetry.rpc_counts`).

    The server's busiest calls do these two additions inline, without the lock that
    `record_rpc` takes: they come from its event loop alone, and a read-modify-write
    without a lock can only lose an update to another writer. A scrape copies the
    list while holding the GIL, so it reads whole numbers."""
    # A bucket holds the calls at or below its bound, as in Prometheus (`le`).
    counts[bisect.bisect_left(RPC_BUCKETS, seconds)] += 1
    counts[-2] += seconds


class _RpcCounts:
    """Requests and their durations by (method, code), as plain numbers.

    Per key a list: how many calls fell in each bucket (not cumulative; the last
    one is +Inf), then the sum of their seconds, then when the key was first
    seen (the series' `_created`).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._counts: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()  # the increments are read-modify-writes

    def record(self, method: str, code: str, seconds: float) -> None:
        key = (method, code)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = new_rpc_counts(self._clock())
            add_call(counts, seconds)

    def counts_of(self, method: str, code: str) -> list[float]:
        with self._lock:
            counts = self._counts.get((method, code))
            if counts is None:
                counts = self._counts[(method, code)] = new_rpc_counts(self._clock())
            return counts

    def snapshot(self) -> list[tuple[tuple[str, str], list[float]]]:
        with self._lock:
            return [(key, list(counts)) for key, counts in self._counts.items()]


class _RpcCollector:
    """The gRPC request counter and duration histogram, from `_RpcCounts` on every scrape."""

    def __init__(self, counts: _RpcCounts) -> None:
        self._counts = counts

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        requests, durations = self._families()
        bounds = _RPC_BOUND_LABELS
        for labels, counts in self._counts.snapshot():
            cumulative, total = [], 0.0
            for bound, count in zip(bounds, counts[: len(bounds)], strict=True):
                total += count
                cumulative.append((bound, total))
            created = counts[-1]
            requests.add_metric(labels, total, created=created)
            durations.add_metric(labels, cumulative, counts[-2])
            # HistogramMetricFamily takes no `created`; prometheus_client's Histogram
            # exports one, so this one does too.
            durations.add_sample(
                f"{durations.name}_created", dict(zip(RPC_LABELS, labels, strict=True)), created
            )
        yield requests
        yield durations

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        prefix = f"{NAMESPACE}_grpc"
        return (
            CounterMetricFamily(
                f"{prefix}_requests",
                "gRPC requests handled, by method and status code.",
                labels=RPC_LABELS,
            ),
            HistogramMetricFamily(
                f"{prefix}_request_duration_seconds",
                "gRPC request handling time, by method and status code.",
                labels=RPC_LABELS,
            ),
        )


class _ScaledObjectCollector:
    """Turns the per-ScaledObject states into metric families on every scrape."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def describe(self) -> Iterable[Metric]:
        # Names only, so the registry can detect clashes without a scrape.
        return list(_families().values())

    def collect(self) -> Iterator[Metric]:
        families = _families()
        desired = families["desired_replicas"]
        signal_replicas = families["signal_replicas"]
        signal_status = families["signal_status"]
        reason = families["decision_reason"]
        active = families["active"]
        available = families["available"]
        floor = families["floor_replicas"]
        ceiling = families["ceiling_replicas"]
        demand = families["demand"]
        median = families["forecast_median"]
        upper = families["forecast_upper"]
        smape = families["forecast_smape_ratio"]
        under = families["forecast_under_prediction_ratio"]
        coverage = families["forecast_band_coverage_ratio"]
        last = families["last_decision_timestamp_seconds"]
        errors = families["backend_errors"]

        states = self._telemetry.snapshot()
        for (ns, so), state in states:
            labels = [ns, so]
            for kind, count in sorted(state.backend_errors.items()):
                errors.add_metric([ns, so, kind], count)
            if state.smape is not None:
                smape.add_metric(labels, state.smape)
            if state.under_rate is not None:
                under.add_metric(labels, state.under_rate)
            if state.coverage is not None:
                coverage.add_metric(labels, state.coverage)
            decision = state.decision
            if decision is None:
                continue
            last.add_metric(labels, state.last_seen)
            # Unavailable, no count was given to KEDA: no sample rather than a 0 that reads
            # as a scale-down on the dashboard (`available` says why there is a gap).
            if decision.available:
                desired.add_metric(labels, decision.desired_replicas)
            if decision.active_known:
                active.add_metric(labels, 1.0 if decision.active else 0.0)
            available.add_metric(labels, 1.0 if decision.available else 0.0)
            floor.add_metric(labels, decision.floor)
            if decision.ceiling is not None:
                ceiling.add_metric(labels, decision.ceiling)
            # Only the current reason, not a 0 for every other one: a scrape's
            # cost grows with its samples, and a reason that stops being
            # exported is marked stale by Prometheus at once.
            reason.add_metric([ns, so, decision.reason.value], 1.0)
            for reading in decision.signals:
                signal = reading.signal.value
                signal_status.add_metric([ns, so, signal, reading.status.value], 1.0)
                if reading.replicas is not None:
                    signal_replicas.add_metric([ns, so, signal], reading.replicas)
            if state.demand is not None:
                demand.add_metric(labels, state.demand)
            if decision.forecast_median is not None:
                median.add_metric(labels, decision.forecast_median)
            if decision.forecast_upper is not None:
                upper.add_metric(labels, decision.forecast_upper)

        tracked = GaugeMetricFamily(
            f"{NAMESPACE}_scaledobjects",
            "ScaledObjects currently exported (seen within the idle bound).",
            value=len(states),
        )
        yield from families.values()
        yield tracked


def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
    """Fresh, empty metric families; keyed by name without the tidescaler_ prefix."""
    so = list(SCALEDOBJECT_LABELS)

    def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{NAMESPACE}_{name}", doc, labels=[*so, *extra])

    return {
        "desired_replicas": gauge(
            "desired_replicas",
            "Replicas the latest decision asked for (the GetMetrics value rounded up).",
        ),
        "signal_replicas": gauge(
            "signal_replicas",
            "Each signal's replica recommendation in the latest decision.",
            ("signal",),
        ),
        "signal_status": gauge(
            "signal_status",
            "1 for each signal's status in the latest decision (ok, held, stale, ...).",
            ("signal", "status"),
        ),
        "decision_reason": gauge(
            "decision_reason",
            "1, labelled with the reason (winning signal or bounding rule) of the latest decision.",
            ("reason",),
        ),
        "active": gauge("active", "1 if the latest decision is active (KEDA's 0 <-> 1), else 0."),
        "available": gauge(
            "available",
            "1 if the latest decision could be made, 0 if GetMetrics answered UNAVAILABLE.",
        ),
        "floor_replicas": gauge("floor_replicas", "Replica floor of the active cron windows."),
        "ceiling_replicas": gauge(
            "ceiling_replicas", "Effective replica ceiling: maxReplicas and active window ceilings."
        ),
        "demand": gauge("demand", "Latest demand the query returned, in the query's own unit."),
        "forecast_median": gauge(
            "forecast_median", "Forecast median of the demand, peak over [now, now + lead]."
        ),
        "forecast_upper": gauge(
            "forecast_upper",
            "Forecast upper band (forecastQuantile) of the demand, peak over [now, now + lead].",
        ),
        "forecast_smape_ratio": gauge(
            "forecast_smape_ratio",
            "Rolling sMAPE of past forecast medians against the demand that followed (0 to 2).",
        ),
        "forecast_under_prediction_ratio": gauge(
            "forecast_under_prediction_ratio",
            "Rolling share of past forecast medians below the demand that followed (0 to 1).",
        ),
        "forecast_band_coverage_ratio": gauge(
            "forecast_band_coverage_ratio",
            "Rolling share of demands within the forecast upper band (compare forecastQuantile).",
        ),
        "last_decision_timestamp_seconds": gauge(
            "last_decision_timestamp_seconds", "Unix time of the latest decision."
        ),
        "backend_errors": CounterMetricFamily(
            f"{NAMESPACE}_backend_errors",
            "Failed metric-backend reads, by kind.",
            labels=[*so, "kind"],
        ),
    }


METRICS_CONNECTIONS = 32  # scrapers are few: Prometheus replicas, an agent, a person
METRICS_READ_SECONDS = 10.0


class _MetricsRequestHandler(WSGIRequestHandler):
    """One request per connection (wsgiref's), whose request line and headers must all
    arrive within METRICS_READ_SECONDS of connecting: a socket timeout alone is per read,
    so a client sending a header line every few seconds held its thread for ever."""

    timeout = METRICS_READ_SECONDS  # per read: an idle connection is closed
    read_deadline = METRICS_READ_SECONDS  # the whole request
    server: _BoundedMetricsServer

    def setup(self) -> None:
        super().setup()
        # The HTTP client's deadline keeper, watching this request's socket until read.
        self._unread = Watch(time.monotonic() + self.read_deadline)
        self._unread.sock = self.connection
        self.server.deadlines.add(self._unread)

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers
        self.server.deadlines.finish(self._unread)
        return parsed

    def finish(self) -> None:
        self.server.deadlines.finish(self._unread)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: scrapes every few seconds would drown the decisions."""


class _BoundedMetricsServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most METRICS_CONNECTIONS of them; past that a new
    connection is closed at once (its scraper retries at its next interval)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], *args: Any, **kwargs: Any) -> None:
        # An IPv6 address ("::", the default --host) listens on IPv6 and, dual-stack, IPv4.
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        # First (a failed bind calls server_close), and its thread now: the connections'
        # threads are bounded, and it is one more.
        self.deadlines = Watchdog()
        self.deadlines.start()
        try:
            super().__init__(address, *args, **kwargs)
        except BaseException:
            self.deadlines.close()
            raise
        self._slots = threading.BoundedSemaphore(METRICS_CONNECTIONS)

    def server_close(self) -> None:
        self.deadlines.close()
        super().server_close()

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out or went away: nothing to report (the base prints a
        traceback to stderr)."""
