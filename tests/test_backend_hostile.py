"""The Prometheus source under hung, slow, dripping, redirecting and odd backends.

A hung Prometheus is a real one stopped with SIGSTOP (it accepts connections
and never answers) or a listening socket that never answers; a dripping,
redirecting or odd backend is a real HTTP server on loopback written here,
because a real Prometheus never drips, redirects or sends KEDA's odd bodies.
KEDA's query-result table is ported from kedacore/keda
pkg/scalers/prometheus_scaler_test.go (`testPromQueryResult`, run by
`TestPrometheusScalerExecutePromQuery`); each case keeps KEDA's name as its id.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import hypothesis.strategies as st
import pytest
from certs import make_pki
from hypothesis import given, settings
from prometheus_client import CollectorRegistry
from prometheus_server import Exporter, PrometheusServer, Series, free_port, grid, openmetrics

from scaler.backend_access import BackendAccess
from scaler.forecast.refresher import ForecastState
from scaler.forecast_service import ForecastService
from scaler.observe import Observer
from scaler.policy import BackendOptions, parse_policy
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.sources import prometheus as prometheus_source
from scaler.sources.prometheus import (
    BackendError,
    BackendErrorKind,
    PrometheusSource,
)

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 0.5
SLACK = 0.3  # scheduling on a shared machine; far below any budget


def prometheus_answer(value: str, at: float = 1_700_000_000.0, *, matrix: bool = False) -> bytes:
    series: dict[str, Any] = {"metric": {}}
    if matrix:
        series["values"] = [[at, value]]
    else:
        series["value"] = [at, value]
    data = {"resultType": "matrix" if matrix else "vector", "result": [series]}
    return json.dumps({"status": "success", "data": data}).encode()


# -- a real HTTP server that misbehaves on purpose ------------------------------------------


@dataclass
class Request:
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # names in lower case


Behaviour = Callable[["Handler"], None]


class Handler(http.server.BaseHTTPRequestHandler):
    server: LoopbackServer

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        request = Request(
            url.path,
            dict(urllib.parse.parse_qsl(url.query)),
            {name.lower(): value for name, value in self.headers.items()},
        )
        with self.server.lock:
            self.server.requests.append(request)
        try:
            self.server.behaviour(self)
        except (BrokenPipeError, ConnectionResetError):
            self.server.cut.set()  # the client gave up on us

    def reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, behaviour: Behaviour, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.behaviour = behaviour
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.release = threading.Event()  # ends hanging and dripping handlers
        self.cut = threading.Event()
        scheme = "http"
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server_address[1]}"
        # A short poll interval keeps shutdown() quick at teardown.
        threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., LoopbackServer]]:
    servers: list[LoopbackServer] = []

    def make(behaviour: Behaviour, context: ssl.SSLContext | None = None) -> LoopbackServer:
        servers.append(LoopbackServer(behaviour, context))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def answer(value: str) -> Behaviour:
    return lambda handler: handler.reply(200, prometheus_answer(value))


def hang(handler: Handler) -> None:
    handler.server.release.wait()


def drip_body(handler: Handler) -> None:
    body = prometheus_answer("7")
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.flush()
    for byte in body:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        if handler.server.release.wait(1.0):
            return


def drip_headers(handler: Handler) -> None:
    handler.wfile.write(b"HTTP/1.0 200 OK\r\n")
    handler.wfile.flush()
    for byte in b"X-Slow: " + b"a" * 1000:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        if handler.server.release.wait(1.0):
            return


def wait_until(condition: Callable[[], bool], timeout_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


class Switch:
    """A behaviour that can change while the server runs."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour

    def __call__(self, handler: Handler) -> None:
        self.behaviour(handler)


# -- the answer budget -------------------------------------------------------------------


def test_a_hung_backend_answers_within_the_budget_from_the_last_good_value(
    serve: Callable[..., LoopbackServer],
) -> None:
    switch = Switch(answer("42"))
    backend = serve(switch)
    with PrometheusSource(
        timeout_seconds=10.0, answer_budget_seconds=BUDGET, coalesce_seconds=0.0
    ) as source:
        good = source.read(backend.url, "sum(up)")
        assert good.value == 42.0 and good.error is None

        switch.behaviour = hang
        started = time.monotonic()
        held = source.read(backend.url, "sum(up)")
        assert time.monotonic() - started < BUDGET + SLACK
        assert (held.value, held.observed_at) == (42.0, good.observed_at)
        assert held.error is not None and held.error.kind is BackendErrorKind.TIMEOUT
        assert "no answer within the answer budget (0.5 s); the request goes on" in str(held.error)


def test_followers_of_a_hung_request_wait_no_longer_than_the_budget(
    serve: Callable[..., LoopbackServer],
) -> None:
    backend = serve(hang)
    with PrometheusSource(timeout_seconds=10.0, answer_budget_seconds=BUDGET) as source:
        barrier = threading.Barrier(16)
        took: list[float] = []

        def call() -> None:
            barrier.wait()
            started = time.monotonic()
            reading = source.read(backend.url, "sum(up)")
            took.append(time.monotonic() - started)
            assert reading.error is not None and reading.error.kind is BackendErrorKind.TIMEOUT

        threads = [threading.Thread(target=call) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(took) == 16 and max(took) < BUDGET + SLACK
        assert len(backend.requests) == 1, "followers share the leader's request"
        # A later caller joins the request still in flight, bounded the same way.
        started = time.monotonic()
        source.read(backend.url, "sum(up)")
        assert time.monotonic() - started < BUDGET + SLACK
        assert len(backend.requests) == 1


def test_an_answer_that_arrives_late_is_remembered(
    serve: Callable[..., LoopbackServer],
) -> None:
    arrive, replied = threading.Event(), threading.Event()

    def slow(handler: Handler) -> None:
        arrive.wait(10)
        handler.reply(200, prometheus_answer("99"))
        handler.wfile.flush()
        replied.set()

    switch = Switch(answer("42"))
    backend = serve(switch)
    with PrometheusSource(
        timeout_seconds=10.0, answer_budget_seconds=BUDGET, coalesce_seconds=0.0
    ) as source:
        assert source.read(backend.url, "sum(up)").value == 42.0
        switch.behaviour = slow
        before = time.time()
        pending = source.read(backend.url, "sum(up)")
        assert pending.value == 42.0 and pending.error is not None
        switch.behaviour = hang
        arrive.set()  # the answer comes after the caller gave up on it
        assert replied.wait(10)
        wait_until(lambda: source.requests_in_flight() == 0)
        backend_requests = len(backend.requests)
        # Nobody read the late answer; the next read hangs and gives it back from memory.
        reading = source.read(backend.url, "sum(up)")
        assert reading.value == 99.0
        assert reading.error is not None and reading.error.kind is BackendErrorKind.TIMEOUT
        assert reading.observed_at is not None and before <= reading.observed_at < time.time()
        assert len(backend.requests) > backend_requests


def test_a_resource_query_waits_no_longer_than_the_budget(
    serve: Callable[..., LoopbackServer],
) -> None:
    backend = serve(hang)
    with PrometheusSource(timeout_seconds=10.0, answer_budget_seconds=BUDGET) as source:
        started = time.monotonic()
        reading = source.read_resource(backend.url, 'namespace="shop"', "cpu")
        assert time.monotonic() - started < BUDGET + SLACK
        assert reading.error is not None and reading.error.kind is BackendErrorKind.TIMEOUT
        with pytest.raises(BackendError) as raised:
            source.instant(backend.url, "sum(up)")
        assert raised.value.kind is BackendErrorKind.TIMEOUT


def test_a_pod_listing_outlives_a_failed_request(
    serve: Callable[..., LoopbackServer],
) -> None:
    """A pod that exists without usage yet is held at its count until stale, like any
    reading: a request that fails in between does not drop it (it did, so the decision
    went back and forth between the count and UNAVAILABLE)."""
    at = time.time()
    pending = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {
                    "metric": {"signal": "requested", "namespace": "shop", "pod": "web-0"},
                    "value": [at, "0.5"],
                }
            ],
        },
    }
    switch = Switch(lambda handler: handler.reply(200, json.dumps(pending).encode()))
    backend = serve(switch)
    with PrometheusSource(coalesce_seconds=0.0) as source:
        listed = source.read_resource(backend.url, 'namespace="shop"', "cpu")
        assert listed.pods is None and listed.listing is not None  # no usage: not a reading
        assert [pod.name for pod in listed.listing.pods] == ["shop/web-0"]
        switch.behaviour = lambda handler: handler.reply(500, b"down")
        failed = source.read_resource(backend.url, 'namespace="shop"', "cpu")
    assert failed.error is not None and failed.error.kind is BackendErrorKind.HTTP_STATUS
    assert failed.listing == listed.listing


def test_a_decision_waits_one_budget_for_all_its_signals(
    serve: Callable[..., LoopbackServer],
) -> None:
    """Query, CPU and memory against a hung backend: the three requests go out side by
    side and share one budget, instead of one budget each (three in all, past KEDA's
    3 s at the default budget)."""
    backend = serve(hang)
    policy = parse_policy(
        {
            "query": "sum(rate(http_requests_total[1m]))",
            "threshold": "10",
            "cpuUtilization": "60",
            "memoryUtilization": "70",
            "podSelector": 'namespace="shop"',
        }
    )
    with PrometheusSource(timeout_seconds=10.0, answer_budget_seconds=BUDGET) as source:
        observer = Observer(source)
        started = time.monotonic()
        observations, problems = observer.observe(policy, backend.url, time.time())
        assert time.monotonic() - started < BUDGET + SLACK
        assert sorted(problem.signal.value for problem in problems) == ["cpu", "memory", "query"]
        assert {problem.kind for problem in problems} == {"timeout"}
        assert observations.demand is None and observations.cpu is None
        assert len(backend.requests) == 3, "all three queries were sent"


def test_last_good_values_are_kept_within_a_byte_budget(
    serve: Callable[..., LoopbackServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each distinct query text is remembered with its last good value: a tenant sending
    distinct long queries in a loop must not grow that memory without bound. Past the
    budget the least recently read are forgotten, the recent ones kept."""
    monkeypatch.setattr(prometheus_source, "LAST_GOOD_BYTES", 64 * 1024)
    switch = Switch(answer("7"))
    backend = serve(switch)
    queries = [f"sum(up) # {i} " + "p" * 4_000 for i in range(40)]  # 180 KB of query text
    with PrometheusSource(coalesce_seconds=0.0) as source:
        for query in queries:
            assert source.read(backend.url, query).value == 7.0
        switch.behaviour = lambda handler: handler.reply(503, b"down")
        oldest, newest = source.read(backend.url, queries[0]), source.read(backend.url, queries[-1])
    assert oldest.error is not None and oldest.value is None, "forgotten: over the budget"
    assert newest.error is not None and newest.value == 7.0, "kept: read most recently"


def test_after_the_clock_steps_back_the_newest_answer_is_the_one_held(
    serve: Callable[..., LoopbackServer],
) -> None:
    """Which answer is newer is told by when its request was sent, not by the wall clock:
    after a step back (NTP) the answers that follow are still the last good value."""
    now = [1_800_000_000.0]
    switch = Switch(answer("3"))
    backend = serve(switch)
    with PrometheusSource(coalesce_seconds=0.0, clock=lambda: now[0]) as source:
        assert source.read(backend.url, "sum(up)").value == 3.0
        now[0] -= 3600.0
        switch.behaviour = answer("50")
        assert source.read(backend.url, "sum(up)").value == 50.0
        switch.behaviour = lambda handler: handler.reply(500, b"down")
        held = source.read(backend.url, "sum(up)")
    assert held.error is not None and held.value == 50.0
    assert held.observed_at == 1_800_000_000.0 - 3600.0


def test_stuck_requests_fill_only_their_own_slots_then_fail_fast(
    serve: Callable[..., LoopbackServer],
) -> None:
    stuck, healthy = serve(hang), serve(answer("5"))
    with PrometheusSource(
        timeout_seconds=10.0,
        answer_budget_seconds=0.2,
        max_requests_per_address=2,
        max_requests=4,
    ) as source:
        for query in ("a", "b"):
            assert source.read(stuck.url, query).error is not None
        started = time.monotonic()
        busy = source.read(stuck.url, "c")
        assert time.monotonic() - started < 0.1, "a full backend must not be waited on"
        assert busy.error is not None and busy.error.kind is BackendErrorKind.TIMEOUT
        assert "the backend is busy: 2 requests to it are still unanswered" in str(busy.error)
        assert len(stuck.requests) == 2
        # Another backend still has slots of its own.
        assert source.read(healthy.url, "sum(up)").value == 5.0


def test_stuck_requests_to_many_backends_fill_at_most_the_pool(
    serve: Callable[..., LoopbackServer],
) -> None:
    first, second = serve(hang), serve(hang)
    with PrometheusSource(
        timeout_seconds=10.0,
        answer_budget_seconds=0.2,
        max_requests_per_address=2,
        max_requests=3,
    ) as source:
        source.read(first.url, "a")
        source.read(first.url, "b")
        source.read(second.url, "a")
        assert source.requests_in_flight() == 3
        started = time.monotonic()
        busy = source.read(second.url, "b")
        assert time.monotonic() - started < 0.1
        assert busy.error is not None and busy.error.kind is BackendErrorKind.TIMEOUT
        assert "all 3 request slots wait on backends; not queueing another" in str(busy.error)
        assert source.requests_in_flight() == 3


def test_a_request_past_its_deadline_is_replaced(serve: Callable[..., LoopbackServer]) -> None:
    # The deadline cuts a request that hangs; the next call starts a new one.
    backend = serve(hang)
    with PrometheusSource(
        timeout_seconds=0.3, answer_budget_seconds=1.0, coalesce_seconds=0.0
    ) as source:
        first = source.read(backend.url, "sum(up)")
        assert first.error is not None
        assert "no complete answer within the timeout (0.3 s)" in str(first.error)
        source.read(backend.url, "sum(up)")
        assert len(backend.requests) == 2


# -- a deadline on the whole request ----------------------------------------------------


@pytest.mark.parametrize("behaviour", [drip_body, drip_headers], ids=["body", "headers"])
def test_a_dripping_backend_is_cut_at_the_request_timeout(
    serve: Callable[..., LoopbackServer], behaviour: Behaviour
) -> None:
    backend = serve(behaviour)
    with PrometheusSource(timeout_seconds=1.5, answer_budget_seconds=5.0) as source:
        started = time.monotonic()
        with pytest.raises(BackendError) as raised:
            source.instant(backend.url, "sum(up)")
        took = time.monotonic() - started
    # Each byte comes within a second, so a per-read timeout would never fire.
    assert 1.5 <= took < 1.5 + SLACK
    assert raised.value.kind is BackendErrorKind.TIMEOUT
    assert "no complete answer within the timeout (1.5 s)" in str(raised.value)


def test_the_trigger_timeout_bounds_its_own_requests(serve: Callable[..., LoopbackServer]) -> None:
    backend = serve(drip_body)
    with PrometheusSource(timeout_seconds=30.0, answer_budget_seconds=5.0) as source:
        started = time.monotonic()
        with pytest.raises(BackendError) as raised:
            source.instant(backend.url, "sum(up)", options=BackendOptions(timeout_seconds=0.5))
        assert time.monotonic() - started < 0.5 + SLACK
    assert raised.value.kind is BackendErrorKind.TIMEOUT
    assert backend.requests[0].params["timeout"] == "0.5"


def test_close_returns_at_once_and_ends_requests_in_flight(
    serve: Callable[..., LoopbackServer],
) -> None:
    hung, dripping = serve(hang), serve(drip_body)
    source = PrometheusSource(timeout_seconds=60.0, answer_budget_seconds=0.2)
    source.read(hung.url, "sum(up)")
    source.read(dripping.url, "sum(up)")
    # A range query (a forecast's history fetch) runs on its caller's thread.
    outcome: list[BaseException] = []

    def fetch_history() -> None:
        try:
            source.range(hung.url, "sum(up)", 0.0, 600.0, 60.0)
        except BaseException as error:
            outcome.append(error)

    history = threading.Thread(target=fetch_history)
    history.start()
    deadline = time.monotonic() + 5
    while len(hung.requests) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    started = time.monotonic()
    source.close()
    assert time.monotonic() - started < 0.1
    history.join(1.0)
    assert not history.is_alive(), "close() must end a request in flight"
    assert isinstance(outcome[0], BackendError)
    assert outcome[0].kind is BackendErrorKind.TIMEOUT


# -- redirects and foreign bodies ----------------------------------------------------------


def test_a_redirect_is_an_error_and_never_followed(serve: Callable[..., LoopbackServer]) -> None:
    elsewhere = serve(answer("1000"))

    def redirect(handler: Handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", elsewhere.url + handler.path)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    backend = serve(redirect)
    with PrometheusSource() as source:
        reading = source.read(backend.url, "sum(up)")
        with pytest.raises(BackendError) as raised:
            source.range(backend.url, "sum(up)", 0.0, 60.0, 15.0)
    assert reading.value is None
    assert reading.error is not None and reading.error.kind is BackendErrorKind.REDIRECT
    assert reading.error.status_code == 302
    assert str(reading.error) == (
        f"Prometheus at {backend.url}, query 'sum(up)': the server answers with a redirect "
        "(HTTP 302); redirects are never followed"
    )
    assert raised.value.kind is BackendErrorKind.REDIRECT
    assert elsewhere.requests == [], "the redirect target must never be asked"


SECRET = "tenant-b-password-1234"


@pytest.mark.parametrize(
    ("status", "content_type", "body", "kind", "problem"),
    [
        pytest.param(
            502, "text/html", f"<html>bad gateway {SECRET}</html>".encode(),
            BackendErrorKind.HTTP_STATUS,
            "HTTP status 502: not a Prometheus answer (content type 'text/html')",
            id="html-error-page",
        ),
        pytest.param(
            200, "text/plain; charset=utf-8", f"metrics {SECRET}".encode(),
            BackendErrorKind.BAD_RESPONSE,
            "the response is not a Prometheus query result (content type 'text/plain')",
            id="not-json",
        ),
        pytest.param(
            200, "application/json", json.dumps([SECRET]).encode(),
            BackendErrorKind.BAD_RESPONSE,
            "the response is not a Prometheus query result (content type 'application/json')",
            id="json-not-an-object",
        ),
        pytest.param(
            200, "application/json",
            json.dumps({"status": "success", "data": {"result": {"x": SECRET}}}).encode(),
            BackendErrorKind.BAD_RESPONSE, "the result is a dict, not a list of series",
            id="result-an-object",
        ),
    ],
)  # fmt: skip
def test_foreign_bodies_are_never_quoted(
    serve: Callable[..., LoopbackServer],
    status: int,
    content_type: str,
    body: bytes,
    kind: BackendErrorKind,
    problem: str,
) -> None:
    backend = serve(lambda handler: handler.reply(status, body, content_type))
    with PrometheusSource() as source:
        reading = source.read(backend.url, "sum(up)")
    assert reading.error is not None and reading.error.kind is kind
    assert str(reading.error) == f"Prometheus at {backend.url}, query 'sum(up)': {problem}"
    assert SECRET not in str(reading.error)


def test_a_prometheus_error_is_quoted_short_and_printable(
    serve: Callable[..., LoopbackServer],
) -> None:
    error = "bad\x1b[31m" + "x" * 1_000_000
    body = json.dumps({"status": "error", "errorType": "execution", "error": error}).encode()
    backend = serve(lambda handler: handler.reply(422, body))
    with PrometheusSource() as source:
        reading = source.read(backend.url, "sum(up)")
    assert reading.error is not None and reading.error.kind is BackendErrorKind.QUERY_ERROR
    expected = "bad?[31m" + "x" * 112 + "..."
    assert str(reading.error).endswith(
        f"Prometheus rejects the query (HTTP 422): execution: {expected}"
    )


def padded_answer(size: int) -> bytes:
    """An empty vector result padded with spaces to about `size` bytes: valid JSON."""
    return (
        b'{"status": "success", "data": {"resultType": "vector", "result": ['
        + (b" " * size)
        + b"]}}"
    )


MiB = 1024 * 1024


def test_an_answer_larger_than_its_kind_needs_is_refused_before_it_is_parsed(
    serve: Callable[..., LoopbackServer],
) -> None:
    """A query trigger's answer is one sample: over 1 MiB it is refused while read. A
    resource query's has series per pod, so it may reach 16 MiB; a history chunk 8 MiB."""
    sizes = {"/api/v1/query": 0, "/api/v1/query_range": 0}

    def reply(handler: Handler) -> None:
        handler.reply(200, padded_answer(sizes[urllib.parse.urlsplit(handler.path).path]))

    backend = serve(reply)
    with PrometheusSource(coalesce_seconds=0.0) as source:
        sizes["/api/v1/query"] = int(1.5 * MiB)
        refused = source.read(backend.url, "sum(up)")
        assert refused.error is not None and refused.error.kind is BackendErrorKind.BAD_RESPONSE
        assert "the answer is larger than 1 MiB" in str(refused.error)

        sizes["/api/v1/query"] = int(0.9 * MiB)
        kept = source.read(backend.url, "sum(up)")
        assert kept.error is None and kept.value == 0.0  # KEDA's empty result

        sizes["/api/v1/query"] = 12 * MiB
        usage = source.read_resource(backend.url, 'namespace="shop"', "cpu")
        assert usage.error is not None and usage.error.kind is BackendErrorKind.NULL_VALUE
        sizes["/api/v1/query"] = 17 * MiB
        usage = source.read_resource(backend.url, 'namespace="shop"', "memory")
        assert usage.error is not None and "larger than 16 MiB" in str(usage.error)

        sizes["/api/v1/query_range"] = 9 * MiB
        with pytest.raises(BackendError, match="larger than 8 MiB"):
            source.range(backend.url, "sum(up)", 0.0, 600.0, 60.0)


# -- KEDA's query-result table ---------------------------------------------------------------


@dataclass(frozen=True)
class KedaCase:
    body: str
    status: int
    value: float | None  # None: KEDA returns an error
    ignore_null_values: bool
    kind: BackendErrorKind | None = None  # our name for KEDA's error


# kedacore/keda pkg/scalers/prometheus_scaler_test.go, testPromQueryResult: name ->
# bodyStr, responseStatus, expectedValue (-1 with isError), ignoreNullValues. KEDA's
# unsafeSsl column does not change the answer of its plain-HTTP stub and is left out.
KEDA_QUERY_RESULTS = {
    "no results": KedaCase("{}", 200, 0.0, True),
    "no values": KedaCase('{"data":{"result":[]}}', 200, 0.0, True),
    "no values but shouldn't ignore": KedaCase(
        '{"data":{"result":[]}}', 200, None, False, BackendErrorKind.NULL_VALUE
    ),
    "value is empty list": KedaCase('{"data":{"result":[{"value": []}]}}', 200, 0.0, True),
    "value is empty list but shouldn't ignore": KedaCase(
        '{"data":{"result":[{"value": []}]}}', 200, None, False, BackendErrorKind.NULL_VALUE
    ),
    "valid value": KedaCase('{"data":{"result":[{"value": ["1", "2"]}]}}', 200, 2.0, True),
    "not enough values": KedaCase(
        '{"data":{"result":[{"value": ["1"]}]}}', 200, None, True, BackendErrorKind.BAD_RESPONSE
    ),
    "multiple results": KedaCase(
        '{"data":{"result":[{},{}]}}', 200, None, True, BackendErrorKind.MULTIPLE_SERIES
    ),
    "error status response": KedaCase("{}", 400, None, True, BackendErrorKind.HTTP_STATUS),
    "+Inf": KedaCase('{"data":{"result":[{"value": ["1", "+Inf"]}]}}', 200, 0.0, True),
    "+Inf but shouldn't ignore": KedaCase(
        '{"data":{"result":[{"value": ["1", "+Inf"]}]}}',
        200,
        None,
        False,
        BackendErrorKind.NULL_VALUE,
    ),
    "-Inf": KedaCase('{"data":{"result":[{"value": ["1", "-Inf"]}]}}', 200, 0.0, True),
    "-Inf but shouldn't ignore": KedaCase(
        '{"data":{"result":[{"value": ["1", "-Inf"]}]}}',
        200,
        None,
        False,
        BackendErrorKind.NULL_VALUE,
    ),
}


@pytest.mark.parametrize("case", KEDA_QUERY_RESULTS.values(), ids=KEDA_QUERY_RESULTS.keys())
def test_keda_query_results(serve: Callable[..., LoopbackServer], case: KedaCase) -> None:
    backend = serve(lambda handler: handler.reply(case.status, case.body.encode()))
    with PrometheusSource() as source:
        reading = source.read(backend.url, "up", ignore_null_values=case.ignore_null_values)
    if case.value is None:
        assert reading.value is None
        assert reading.error is not None and reading.error.kind is case.kind
    else:
        assert reading.error is None
        assert reading.value == case.value


def sample_answer(handler: Handler, sample: str) -> None:
    """An answer of one series whose one sample is `sample` (raw JSON): an instant
    query's `value`, a range query's only entry of `values`."""
    if urllib.parse.urlsplit(handler.path).path.endswith("query_range"):
        series, kind = f'{{"metric": {{}}, "values": [{sample}]}}', "matrix"
    else:
        series, kind = f'{{"metric": {{}}, "value": {sample}}}', "vector"
    body = f'{{"status": "success", "data": {{"resultType": "{kind}", "result": [{series}]}}}}'
    handler.reply(200, body.encode())


@pytest.mark.parametrize(
    "value, shown",
    [
        ("true", "true"),
        ("false", "false"),
        ("1", "the number 1"),
        ("2.5", "the number 2.5"),
        ("null", "null"),
        ('["1"]', "an array"),
    ],
)
def test_a_sample_value_that_is_not_a_string_is_a_bad_response(
    serve: Callable[..., LoopbackServer], value: str, shown: str
) -> None:
    """Prometheus writes every sample value as a string; a JSON true read as 1 replica's
    worth of demand, and KEDA's prometheus scaler fails on it."""
    backend = serve(lambda handler: sample_answer(handler, f"[1700000000, {value}]"))
    problem = f"a sample value is {shown}, not a string as Prometheus writes it"
    with PrometheusSource() as source:
        reading = source.read(backend.url, "up")
        assert reading.value is None
        assert reading.error is not None and reading.error.kind is BackendErrorKind.BAD_RESPONSE
        assert reading.error.problem == problem
        with pytest.raises(BackendError) as raised:
            source.range(backend.url, "up", 1_700_000_000.0, 1_700_000_060.0, 60.0)
    assert raised.value.kind is BackendErrorKind.BAD_RESPONSE
    assert raised.value.problem == problem


@pytest.mark.parametrize(
    "sample, problem",
    [
        ('[Infinity, "1"]', "a sample's time is the number inf, not a finite number"),
        ('[-Infinity, "1"]', "a sample's time is the number -inf, not a finite number"),
        ('[NaN, "1"]', "a sample's time is the number nan, not a finite number"),
        ('[1e999, "1"]', "a sample's time is the number inf, not a finite number"),
        ('["soon", "1"]', "a sample's time is the string 'soon', not a finite number"),
        ('[true, "1"]', "a sample's time is true, not a finite number"),
        ('[0, "1", "2"]', "a sample of the series is 3 items, not a [time, value] pair"),
        ('"0"', "a sample of the series is the string '0', not a [time, value] pair"),
    ],
    ids=["inf", "-inf", "nan", "overflow", "text", "bool", "three-items", "not-a-pair"],
)
def test_a_range_sample_without_a_finite_time_is_a_bad_response(
    serve: Callable[..., LoopbackServer], sample: str, problem: str
) -> None:
    """An infinite time broke the grid's rounding (OverflowError: cannot convert float
    infinity to integer), which a history fetch reported as it was."""
    backend = serve(lambda handler: sample_answer(handler, sample))
    with PrometheusSource() as source, pytest.raises(BackendError) as raised:
        source.range(backend.url, "sum(up)", 0.0, 600.0, 60.0)
    assert raised.value.kind is BackendErrorKind.BAD_RESPONSE
    assert raised.value.problem == problem


def test_a_range_sample_far_off_the_grid_is_left_out(serve: Callable[..., LoopbackServer]) -> None:
    # A finite time so far away that its grid position overflows is simply not on the grid.
    backend = serve(lambda handler: sample_answer(handler, '[1e308, "1"], [0, "2"]'))
    with PrometheusSource() as source:
        times, values = source.range(backend.url, "sum(up)", 0.0, 0.0, 1e-10)
    assert times.tolist() == [0.0] and values.tolist() == [2.0]


# -- KEDA's request keys ------------------------------------------------------------------


def by_tenant(handler: Handler) -> None:
    tenant = handler.headers.get("X-Scope-OrgID", "")
    value = {"a": "1", "b": "2"}.get(tenant, "0")
    handler.reply(
        200, prometheus_answer(value, matrix=handler.path.startswith("/api/v1/query_range"))
    )


def test_request_options_go_on_the_request_as_keda_sends_them(
    serve: Callable[..., LoopbackServer],
) -> None:
    backend = serve(by_tenant)
    options = BackendOptions(
        namespace="team-a",
        query_parameters=(("dedup", "false"), ("partial_response", "true")),
        custom_headers=(("X-Scope-OrgID", "a"),),
        timeout_seconds=2.5,
    )
    with PrometheusSource() as source:
        assert source.read(backend.url, "sum(up)", options=options).value == 1.0
        source.read_resource(backend.url, 'namespace="shop"', "cpu", options=options)
        source.range(backend.url, "sum(up)", 0.0, 60.0, 15.0, options=options)
    for request in backend.requests:
        assert request.params["namespace"] == "team-a"
        assert request.params["dedup"] == "false"
        assert request.params["partial_response"] == "true"
        assert request.headers["x-scope-orgid"] == "a"
    assert [request.path for request in backend.requests] == [
        "/api/v1/query",
        "/api/v1/query",
        "/api/v1/query_range",
    ]
    assert backend.requests[0].params["query"] == "sum(up)"
    assert backend.requests[0].params["timeout"] == "2.5"


def test_tenants_with_different_options_never_share_an_answer(
    serve: Callable[..., LoopbackServer],
) -> None:
    backend = serve(by_tenant)
    tenant_a = BackendOptions(custom_headers=(("X-Scope-OrgID", "a"),))
    tenant_b = BackendOptions(custom_headers=(("X-Scope-OrgID", "b"),))
    with PrometheusSource(coalesce_seconds=60.0) as source:
        assert source.read(backend.url, "sum(up)", options=tenant_a).value == 1.0
        assert source.read(backend.url, "sum(up)", options=tenant_b).value == 2.0
        assert source.read(backend.url, "sum(up)").value == 0.0
        # The same options within the window do share one request.
        assert source.read(backend.url, "sum(up)", options=tenant_a).value == 1.0
    assert len(backend.requests) == 3


def test_unsafe_ssl_skips_certificate_checks(
    serve: Callable[..., LoopbackServer], tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    backend = serve(answer("3"), context)
    with PrometheusSource() as source:
        checked = source.read(backend.url, "sum(up)")
        unchecked = source.read(backend.url, "sum(up)", options=BackendOptions(unsafe_ssl=True))
    assert checked.error is not None and checked.error.kind is BackendErrorKind.CONNECTION
    assert "CERTIFICATE_VERIFY_FAILED" in str(checked.error)
    assert unchecked.error is None and unchecked.value == 3.0


# -- the server's allow-lists -------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        pytest.param(BackendOptions(namespace="team-a"), None, id="namespace-always-allowed"),
        pytest.param(
            BackendOptions(custom_headers=(("x-scope-orgid", "a"),)), None,
            id="header-names-ignore-case",
        ),
        pytest.param(BackendOptions(query_parameters=(("dedup", "false"),)), None, id="allowed"),
        pytest.param(
            BackendOptions(custom_headers=(("Authorization", "Bearer x"),)),
            "customHeaders names 'Authorization', which this server does not allow "
            "(see --allowed-custom-headers)",
            id="header-not-allowed",
        ),
        pytest.param(
            BackendOptions(query_parameters=(("Dedup", "false"),)),
            "queryParameters names 'Dedup', which this server does not allow "
            "(see --allowed-query-parameters)",
            id="parameter-names-are-exact",
        ),
        pytest.param(
            BackendOptions(query_parameters=(("time", "0"),)),
            "queryParameters names 'time', which tidescaler sets itself",
            id="reserved-parameter",
        ),
        pytest.param(
            BackendOptions(custom_headers=(("X-Scope-OrgID", "a\r\nX-Other: b"),)),
            "customHeaders value of 'X-Scope-OrgID' contains a line break",
            id="header-injection",
        ),
        pytest.param(
            BackendOptions(custom_headers=(("X Scope", "a"),)),
            "customHeaders has an invalid header name 'X Scope'",
            id="header-name-not-a-token",
        ),
    ],
)  # fmt: skip
def test_allow_lists(options: BackendOptions, problem: str | None) -> None:
    access = BackendAccess(
        allowed_query_parameters=["dedup"], allowed_custom_headers=["X-Scope-OrgID"]
    )
    assert access.check(options) == (options, problem)


def test_unsafe_ssl_only_where_the_server_allows_it() -> None:
    asked = BackendOptions(unsafe_ssl=True)
    assert BackendAccess().check(asked) == (BackendOptions(unsafe_ssl=False), None)
    assert BackendAccess(allow_unsafe_ssl=True).check(asked) == (asked, None)


def test_nothing_is_allowed_by_default() -> None:
    refused = BackendAccess().check(BackendOptions(custom_headers=(("X-Scope-OrgID", "b"),)))
    assert refused[1] is not None and "X-Scope-OrgID" in refused[1]


# -- a real Prometheus, stopped ---------------------------------------------------------------


def pid_of(server: PrometheusServer) -> int:
    process = server._process  # the fixture's own process handle
    assert process is not None
    return process.pid


def test_a_stopped_prometheus_answers_from_memory_then_refreshes_it(
    prometheus_factory: Callable[..., PrometheusServer], exporter: Exporter
) -> None:
    server = prometheus_factory()
    query = "sum(tidetest_hostile_demand)"
    exporter.set("tidetest_hostile_demand", 10.0)
    server.wait_for_value(query, 10.0)
    with PrometheusSource(
        timeout_seconds=10.0, answer_budget_seconds=BUDGET, coalesce_seconds=0.0
    ) as source:
        good = source.read(server.url, query)
        assert good.value == 10.0 and good.error is None
        exporter.set("tidetest_hostile_demand", 20.0)
        server.wait_for_value(query, 20.0)
        served = server.http_requests("/api/v1/query")
        os.kill(pid_of(server), signal.SIGSTOP)
        try:
            before = time.time()
            started = time.monotonic()
            held = source.read(server.url, query)
            assert time.monotonic() - started < BUDGET + SLACK
            assert (held.value, held.observed_at) == (10.0, good.observed_at)
            assert held.error is not None and held.error.kind is BackendErrorKind.TIMEOUT
        finally:
            os.kill(pid_of(server), signal.SIGCONT)
        # Resumed, Prometheus answers the request that waited; nobody reads it
        # directly, yet it becomes the last good value.
        wait_until(lambda: source.requests_in_flight() == 0)
        assert server.http_requests("/api/v1/query") == served + 1
        server.kill()
        reading = source.read(server.url, query)
        assert reading.value == 20.0
        assert reading.error is not None and reading.error.kind is BackendErrorKind.CONNECTION
        assert reading.observed_at is not None and before <= reading.observed_at <= time.time()


@pytest.fixture
def never_answers() -> Iterator[str]:
    """A loopback port whose kernel accepts connections that nobody ever reads."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_silent_socket_costs_no_caller_more_than_the_budget(never_answers: str) -> None:
    with PrometheusSource(timeout_seconds=30.0, answer_budget_seconds=BUDGET) as source:
        started = time.monotonic()
        reading = source.read(never_answers, "sum(up)")
        assert time.monotonic() - started < BUDGET + SLACK
    assert reading.error is not None and reading.error.kind is BackendErrorKind.TIMEOUT


def answers_once_with(reply: bytes) -> str:
    """A loopback port whose one connection is answered with `reply`, then closed."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve_one() -> None:
        with listener:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(reply)

    threading.Thread(target=serve_one, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize(
    "reply",
    [b"SECRET_TOKEN=hunter2 from-the-foreign-service\r\n\r\n", b"\x1b[2J\x1b[31mRED\x07 \x00\r\n"],
    ids=["a-secret", "control-bytes"],
)
def test_a_backend_that_is_not_http_is_named_without_echoing_its_bytes(reply: bytes) -> None:
    with PrometheusSource() as source:
        reading = source.read(answers_once_with(reply), "sum(up)")
    assert reading.error is not None and reading.error.kind is BackendErrorKind.CONNECTION
    message = str(reading.error)
    assert message.endswith(
        "connected, but no whole HTTP answer came (the answer is not HTTP (no valid status line))"
    )
    assert message.isprintable() and "hunter2" not in message and "RED" not in message


def test_refused_and_closed_without_an_answer_are_told_apart() -> None:
    """Both were "cannot connect", which sent an operator to check the network when the
    backend had answered the connection and then hung up."""
    with PrometheusSource() as source:
        closed = source.read(answers_once_with(b""), "sum(up)")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # nothing listens there once closed
        refused = source.read(f"http://127.0.0.1:{port}", "sum(up)")
    assert closed.error is not None and refused.error is not None
    assert "connected, but no whole HTTP answer came (" in str(closed.error)
    assert "cannot connect (" in str(refused.error)
    assert closed.error.kind is refused.error.kind is BackendErrorKind.CONNECTION


# -- the process ---------------------------------------------------------------------------


def test_the_server_exits_on_sigterm_within_its_grace_whatever_the_backend_does(
    never_answers: str, serve: Callable[..., LoopbackServer], tmp_path: Path
) -> None:
    dripping = serve(drip_body)
    port = free_port()
    env = os.environ | {
        "TIDESCALER_HOST": "127.0.0.1",
        "TIDESCALER_PORT": str(port),
        "TIDESCALER_METRICS_PORT": "0",
        "TIDESCALER_PROMETHEUS_URL": never_answers,
        "TIDESCALER_ALLOWED_PROMETHEUS_URLS": dripping.url,
        "TIDESCALER_QUERY_TIMEOUT_SECONDS": "60",
        "TIDESCALER_ANSWER_BUDGET": "0.5",
        "TIDESCALER_GRACE_SECONDS": "2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "scaler.cli", "serve"],
        env=env,
        cwd=ROOT,
        stderr=(tmp_path / "stderr").open("w"),  # the server's own log, shown on failure
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            stub = pb_grpc.ExternalScalerStub(channel)
            for address in (never_answers, dripping.url):
                metadata = {"query": "sum(up)", "threshold": "1", "prometheusAddress": address}
                request = pb.GetMetricsRequest(
                    scaledObjectRef=pb.ScaledObjectRef(
                        name="web", namespace="shop", scalerMetadata=metadata
                    )
                )
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as info:
                    stub.GetMetrics(request, timeout=3)
                # Nothing was ever observed: UNAVAILABLE at the budget, not KEDA's deadline.
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
                assert time.monotonic() - started < 0.5 + SLACK
        # Both requests are still stuck (60 s timeout) when the signal comes.
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        elapsed = time.monotonic() - started
        log = (tmp_path / "stderr").read_text()[-4000:]
        assert code == 0, log
        assert elapsed < 2 + 1.0, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_forecast_history_is_read_with_the_triggers_request_options(
    serve: Callable[..., LoopbackServer],
) -> None:
    backend = serve(by_tenant)
    options = BackendOptions(namespace="team-a", custom_headers=(("X-Scope-OrgID", "a"),))
    policy = replace(
        parse_policy({"query": "sum(up)", "threshold": "1", "forecast": "observe"}),
        backend=options,
    )
    source = PrometheusSource()
    forecasts = ForecastService(source)
    observer = Observer(source, forecasts, BackendAccess(allowed_custom_headers=["X-Scope-OrgID"]))
    try:
        assert observer.refusal(policy) is None
        observations, problems = observer.observe(policy, backend.url, time.time())
        assert problems == [] and observations.demand is not None
        assert observations.demand.value == 1.0
        wait_until(lambda: any(r.path.endswith("query_range") for r in backend.requests))
    finally:
        forecasts.close()
        source.close()
    for request in backend.requests:
        assert request.params["namespace"] == "team-a"
        assert request.headers["x-scope-orgid"] == "a"
        if request.path.endswith("query_range"):
            # Prometheus gives up on a slow query before the client does (30 s), so
            # that a slow query is told from a Prometheus that does not answer.
            assert request.params["timeout"] == "24.0"


def test_a_hung_backend_delays_no_other_backends_refits_and_is_asked_once_per_retry(
    serve: Callable[..., LoopbackServer],
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    """Six forecast series on a hung backend, registered first, then two on a real one.

    Refits used to run one after the other on one thread: the healthy backend's series
    waited for every hung fetch's timeout in turn (6 x 4 s here, 6 x 30 s by default)."""
    hung = serve(hang)
    now = time.time()
    healthy = prometheus_factory(start=False, scrape=False)
    healthy.backfill(
        openmetrics(
            [
                Series(
                    "refit_requests_per_second",
                    {},
                    [(t, 100.0) for t in grid(now - 3 * 86_400, now, 60)],
                )
            ]
        )
    )
    healthy.start()
    range_timeout = 4.0
    source = PrometheusSource(range_timeout_seconds=range_timeout)
    forecasts = ForecastService(source)
    refresher = forecasts.refresher

    def policy(query: str) -> Any:
        return parse_policy(
            {"query": query, "threshold": "1", "forecast": "on", "forecastHistory": "2d"}
        )

    hung_keys = []
    for i in range(6):
        query = f"sum(hung_{i})"
        forecasts.forecast_for(hung.url, query, policy(query), now)
        hung_keys.append(ForecastService.key(hung.url, query, policy(query)))
    healthy_keys = []
    for query in ("sum(refit_requests_per_second)", "max(refit_requests_per_second)"):
        forecasts.forecast_for(healthy.url, query, policy(query), now)
        healthy_keys.append(ForecastService.key(healthy.url, query, policy(query)))
    started = time.monotonic()
    try:
        wait_until(
            lambda: all(refresher.latest(key) is not None for key in healthy_keys),
            timeout_seconds=3 * range_timeout,
        )
        # Well before the first hung fetch times out.
        assert time.monotonic() - started < range_timeout - 1.0
        # The hung backend holds at most its share of the workers ...
        assert len(hung.requests) == refresher.per_backend < refresher.workers
        wait_until(
            lambda: (
                sum(refresher.status(k).state is ForecastState.FETCH_ERROR for k in hung_keys)  # type: ignore[union-attr]
                == len(hung_keys)
            ),
            timeout_seconds=3 * range_timeout,
        )
        # ... and once its fetches timed out, its other series wait out the retry delay
        # instead of each holding a worker for a timeout of its own.
        time.sleep(1.0)
        assert len(hung.requests) == refresher.per_backend
        messages = [refresher.status(k).message for k in hung_keys]  # type: ignore[union-attr]
        waiting = [m for m in messages if m.startswith("not fetched: the backend did not answer")]
        assert len(waiting) == len(hung_keys) - refresher.per_backend, messages
        # What an SRE sees on /metrics.
        registry = CollectorRegistry()
        registry.register(forecasts.collector())
        by_state = {
            state.value: registry.get_sample_value(
                "tidescaler_forecast_series", {"state": state.value}
            )
            for state in ForecastState
        }
        assert by_state["fetch_error"] == len(hung_keys)
        assert by_state["ok"] + by_state["no_periodicity"] == len(healthy_keys)  # type: ignore[operator]
        assert registry.get_sample_value("tidescaler_forecast_backends_down") == 1
    finally:
        forecasts.close()
        source.close()


def test_a_trigger_with_a_header_the_server_does_not_allow_is_refused() -> None:
    policy = replace(
        parse_policy({"query": "sum(up)", "threshold": "1"}),
        backend=BackendOptions(custom_headers=(("X-Scope-OrgID", "b"),)),
    )
    with PrometheusSource() as source:
        observer = Observer(source, access=BackendAccess(allowed_custom_headers=["X-Other"]))
        assert observer.refusal(policy) == (
            "customHeaders names 'X-Scope-OrgID', which this server does not allow "
            "(see --allowed-custom-headers)"
        )


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
prometheus_like = st.fixed_dictionaries(
    {"status": st.sampled_from(["success", "error"]), "data": json_values},
    optional={"errorType": json_values, "error": json_values},
)


class Reply:
    """What the shared backend answers next."""

    status = 200
    body = b"{}"

    def __call__(self, handler: Handler) -> None:
        handler.reply(self.status, self.body)


@pytest.fixture(scope="module")
def replying() -> Iterator[tuple[LoopbackServer, Reply]]:
    reply = Reply()
    server = LoopbackServer(reply)
    yield server, reply
    server.close()


@settings(max_examples=100, deadline=None)
@given(
    document=json_values | prometheus_like,
    status=st.sampled_from([200, 204, 400, 422, 500, 503]),
    ignore_null_values=st.booleans(),
)
def test_any_answer_gives_a_reading_with_a_short_printable_message(
    replying: tuple[LoopbackServer, Reply], document: Any, status: int, ignore_null_values: bool
) -> None:
    backend, reply = replying
    reply.status, reply.body = status, json.dumps(document).encode()
    with PrometheusSource(coalesce_seconds=0.0) as source:
        reading = source.read(backend.url, "q", ignore_null_values=ignore_null_values)
    if reading.error is None:
        assert reading.value is not None and math.isfinite(reading.value)
    else:
        assert reading.value is None
        problem = reading.error.problem
        assert problem.isprintable() and len(problem) <= 400, problem
