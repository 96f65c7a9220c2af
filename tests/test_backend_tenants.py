"""One tenant's slow queries cannot take every request slot of a backend.

The backend is a real HTTP server on loopback written here. It stands in for a
Prometheus that answers some queries slowly: a query with the marker `slow` in
it is answered only when the test ends (or after a minute), any other at once
with a valid instant-query answer. A real Prometheus cannot be made that slow
for chosen queries only.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator

import grpc
import pytest

from scaler.engine import Signal
from scaler.observe import Observer
from scaler.policy import parse_policy
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import ServerConfig, start_server
from scaler.sources.prometheus import BackendErrorKind, PrometheusSource

MARKER = "slow"
SLOW_SECONDS = 60.0
FAST_VALUE = "12"
BUDGET = 0.3
SLACK = 0.3  # scheduling on a shared machine; far below any budget


def instant_answer(value: str) -> bytes:
    series = {"metric": {}, "value": [time.time(), value]}
    data = {"resultType": "vector", "result": [series]}
    return json.dumps({"status": "success", "data": data}).encode()


class SlowHandler(http.server.BaseHTTPRequestHandler):
    server: SlowBackend

    def do_GET(self) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))["query"]
        with self.server.lock:
            self.server.queries.append(query)
        if MARKER in query:
            self.server.release.wait(SLOW_SECONDS)
        body = instant_answer(FAST_VALUE)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on us

    def log_message(self, format: str, *args: object) -> None:
        pass


class SlowBackend(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SlowHandler)
        self.lock = threading.Lock()
        self.queries: list[str] = []
        self.release = threading.Event()  # answers every slow query at once
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True).start()

    def asked(self, marker: str = MARKER) -> list[str]:
        with self.lock:
            return [query for query in self.queries if marker in query]

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


@pytest.fixture
def backend() -> Iterator[SlowBackend]:
    server = SlowBackend()
    yield server
    server.close()


def wait_until(condition: Callable[[], bool], timeout_seconds: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


# -- end to end: KEDA's calls from two namespaces --------------------------------------------


def scaled_object(namespace: str, name: str, query: str) -> pb.ScaledObjectRef:
    # KEDA's `timeout` key: the trigger's own request timeout, here the most allowed.
    metadata = {"query": query, "threshold": "4", "timeout": "60000"}
    return pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=metadata)


def get_metrics(stub: pb_grpc.ExternalScalerStub, ref: pb.ScaledObjectRef) -> grpc.Future:
    return stub.GetMetrics.future(pb.GetMetricsRequest(scaledObjectRef=ref), timeout=5)


def unavailable(call: grpc.Future) -> str:
    """The details of a call that must have failed with UNAVAILABLE."""
    with pytest.raises(grpc.RpcError) as raised:
        call.result()
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE, raised.value.details()
    return str(raised.value.details())


def test_one_namespace_cannot_take_every_request_slot_of_a_backend(
    backend: SlowBackend,
) -> None:
    """A namespace with 16 ScaledObjects of distinct slow queries held every one of the
    backend's 16 request slots for a minute, and a fresh ScaledObject of any other
    namespace was UNAVAILABLE as "the backend is busy"."""
    running = start_server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            prometheus_url=backend.url,
            answer_budget_seconds=BUDGET,
        )
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            greedy = [scaled_object("greedy", f"so-{i}", f"sum({MARKER}_{i})") for i in range(16)]
            for call in [get_metrics(stub, ref) for ref in greedy]:
                unavailable(call)
            # A quarter of the 16 slots went to the slow namespace; its other queries
            # were never sent.
            assert len(backend.asked()) == 4
            busy = unavailable(get_metrics(stub, scaled_object("greedy", "so-16", "sum(slow_x)")))
            assert (
                "this namespace already has 4 requests to this backend unanswered; "
                "not queueing another" in busy
            )
            assert "the backend is busy" not in busy

            # Another namespace's fresh ScaledObject is answered: ceil(12 / 4).
            started = time.monotonic()
            fresh = get_metrics(stub, scaled_object("shop", "web", "sum(http_requests)"))
            assert fresh.result().metricValues[0].metricValue == 3
            assert time.monotonic() - started < BUDGET + SLACK

            # An identical query still shares the request in flight, whoever sent it:
            # it waits for that answer, and is never refused as the sender's.
            shared = backend.asked()[0]
            joined = unavailable(get_metrics(stub, scaled_object("shop", "api", shared)))
            assert "no answer within the answer budget" in joined
            assert "this namespace" not in joined
            assert backend.asked(shared) == [shared]
            assert len(backend.asked()) == 4
    finally:
        running.stop(0)


# -- the source: how slots are counted -------------------------------------------------------


def test_a_tenant_at_its_share_is_busy_alone_and_gets_slots_back_when_answered(
    backend: SlowBackend,
) -> None:
    with PrometheusSource(
        timeout_seconds=SLOW_SECONDS,
        answer_budget_seconds=0.2,
        coalesce_seconds=0.0,
        max_requests_per_address=8,
        max_requests=16,
    ) as source:
        for query in ("sum(slow_a)", "sum(slow_b)"):
            pending = source.read(backend.url, query, tenant="greedy")
            assert pending.error is not None and pending.error.kind is BackendErrorKind.TIMEOUT
        started = time.monotonic()
        busy = source.read(backend.url, "sum(slow_c)", tenant="greedy")
        assert time.monotonic() - started < 0.1, "a tenant at its share is not waited on"
        assert busy.error is not None and busy.error.kind is BackendErrorKind.TIMEOUT
        assert busy.error.problem == (
            "this namespace already has 2 requests to this backend unanswered; not queueing another"
        )
        assert source.read(backend.url, "sum(up)", tenant="shop").value == float(FAST_VALUE)

        # Calls without a tenant are held to the address's limit only, as before.
        for i in range(6):
            source.read(backend.url, f"sum(slow_{i})", deadline=time.monotonic())
        assert source.requests_in_flight() == 8
        full = source.read(backend.url, "sum(up) + 1", tenant="shop")
        assert full.error is not None
        assert "the backend is busy: 8 requests to it are still unanswered" in str(full.error)
        wait_until(lambda: len(backend.asked()) == 8)

        # Once its answers arrive, the tenant's slots are its again.
        backend.release.set()
        wait_until(lambda: source.requests_in_flight() == 0)
        for query in ("sum(slow_c)", "sum(slow_d)"):
            assert source.read(backend.url, query, tenant="greedy").value == float(FAST_VALUE)

        # An empty namespace (a client that is not KEDA) is a tenant like any other.
        backend.release.clear()
        for query in ("sum(slow_e)", "sum(slow_f)"):
            source.read(backend.url, query, tenant="")
        nameless = source.read(backend.url, "sum(slow_g)", tenant="")
        assert nameless.error is not None
        assert "this namespace already has 2" in str(nameless.error)
        backend.release.set()


def test_a_tenant_holds_at_most_a_quarter_of_all_slots_across_addresses(
    backend: SlowBackend,
) -> None:
    """Through several allowed addresses, one namespace could hold a quarter of each and
    so every slot of the source; it holds a quarter of all slots (4 of 16) in all."""
    # Three addresses of one backend (it answers any path): the tenant's two slots at
    # each of the first two are its four of all sixteen.
    addresses = [f"{backend.url}/{name}" for name in ("a", "b", "c")]
    with PrometheusSource(
        timeout_seconds=SLOW_SECONDS,
        answer_budget_seconds=0.05,
        max_requests_per_address=8,
        max_requests=16,
    ) as source:
        for address in addresses[:2]:
            for i in range(2):
                source.read(address, f"sum(slow_{i})", tenant="greedy")
        assert source.requests_in_flight() == 4
        started = time.monotonic()
        busy = source.read(addresses[2], "sum(slow_x)", tenant="greedy")
        assert time.monotonic() - started < 0.1, "a tenant at its share is not waited on"
        assert busy.error is not None and busy.error.kind is BackendErrorKind.TIMEOUT
        assert busy.error.problem == (
            "this namespace already has 4 requests to its backends unanswered; not queueing another"
        )
        wait_until(lambda: len(backend.asked()) == 4)
        # The third address has every slot free for any other namespace.
        assert source.read(addresses[2], "sum(up)", tenant="shop").value == float(FAST_VALUE)
        # Answered, the tenant's slots are its again, at any address.
        backend.release.set()
        wait_until(lambda: source.requests_in_flight() == 0)
        assert source.read(addresses[2], "sum(slow_x)", tenant="greedy").value == float(FAST_VALUE)


def test_a_background_refresh_is_charged_to_the_tenant_whose_call_starts_it(
    backend: SlowBackend,
) -> None:
    clock = [time.time()]
    with PrometheusSource(
        timeout_seconds=SLOW_SECONDS,
        answer_budget_seconds=0.1,
        coalesce_seconds=5.0,
        clock=lambda: clock[0],
        max_requests_per_address=4,
    ) as source:
        assert source.read(backend.url, "sum(up)", tenant="greedy").value == float(FAST_VALUE)
        source.read(backend.url, "sum(slow_a)", tenant="greedy")  # its one slot of four
        clock[0] += 6.0  # the answer is due for a refresh, and still served meanwhile
        at_hand = source.shared_at_hand(backend.url, "sum(up)", tenant="greedy")
        assert at_hand is not None and at_hand[0].value == float(FAST_VALUE)
        time.sleep(0.1)
        assert len(backend.asked("sum(up)")) == 1, "no slot is left for its refresh"
        # Another tenant's call starts the refresh: the answer is shared all the same.
        assert source.shared_at_hand(backend.url, "sum(up)", tenant="shop") is not None
        wait_until(lambda: len(backend.asked("sum(up)")) == 2)


def test_the_observer_charges_every_query_of_a_decision_to_its_namespace(
    backend: SlowBackend,
) -> None:
    slow = parse_policy(
        {
            "query": "sum(slow_demand)",
            "threshold": "1",
            "cpuUtilization": "50",
            "memoryUtilization": "50",
            "podSelector": 'namespace="slow"',
        }
    )
    fresh = parse_policy({"query": "sum(http_requests)", "threshold": "1"})
    with PrometheusSource(
        timeout_seconds=SLOW_SECONDS,
        answer_budget_seconds=BUDGET,
        max_requests_per_address=8,
        max_requests=16,
    ) as source:
        observer = Observer(source)
        _, problems = observer.observe(slow, backend.url, time.time(), tenant="greedy")
        # Query, CPU and memory: three requests, two of them sent (its share of eight).
        by_signal = {problem.signal: problem.message for problem in problems}
        assert set(by_signal) == {Signal.QUERY, Signal.CPU, Signal.MEMORY}
        refused = [m for m in by_signal.values() if "this namespace already has 2" in m]
        assert len(refused) == 1
        wait_until(lambda: len(backend.asked()) == 2)
        observations, problems = observer.observe(fresh, backend.url, time.time(), tenant="shop")
        assert problems == []
        assert observations.demand is not None
        assert observations.demand.value == float(FAST_VALUE)


@pytest.mark.parametrize("slots, share", [(1, 1), (3, 1), (16, 4), (40, 10)])
def test_every_tenant_gets_a_quarter_of_an_addresss_slots_and_at_least_one(
    backend: SlowBackend, slots: int, share: int
) -> None:
    with PrometheusSource(
        timeout_seconds=SLOW_SECONDS,
        answer_budget_seconds=0.05,
        max_requests_per_address=slots,
        max_requests=64,
    ) as source:
        for i in range(share + 1):
            source.read(backend.url, f"sum(slow_{i})", tenant="greedy")
        assert source.requests_in_flight() == share
        wait_until(lambda: len(backend.asked()) == share)
