"""PrometheusSource against a real Prometheus server.

Values come from series backfilled with promtool or scraped from the test's
own exporter, and are read back through the source exactly as the scaler
reads them. Only answers a real Prometheus never gives (a bare HTTP 400 page,
malformed JSON, a server that never answers) come from loopback stubs.
"""

from __future__ import annotations

import http.server
import math
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import pytest
from prometheus_server import (
    CountingProxy,
    Exporter,
    PrometheusServer,
    Series,
    cadvisor_pod,
    free_port,
    grid,
    kube_state_metrics_pod,
    openmetrics,
)

from scaler.replica_calculator import PodPhase
from scaler.sources.prometheus import (
    NO_OPTIONS,
    BackendError,
    BackendErrorKind,
    PrometheusSource,
    Reading,
)
from scaler.sources.resources import (
    requests_per_pod_query,
    usage_per_pod_query,
    validate_pod_selector,
)

pytestmark = pytest.mark.prometheus

MIB = 1024.0 * 1024.0
DAY = 86_400.0
DEMAND = "tidetest_shop_requests_per_second"
TIDE = "tidetest_tide_requests_per_second"


def tide(t: float, day_start: float) -> float:
    """A diurnal curve, rounded so that it survives the text round trip exactly."""
    return round(100.0 + 90.0 * math.sin(2 * math.pi * (t - day_start) / DAY), 3)


@dataclass(frozen=True)
class Seeded:
    """Where the backfilled data sits in time."""

    server: PrometheusServer
    at: float  # an instant with samples at and before it, on the 15 s grid
    day_start: float
    gap: tuple[float, float]  # no samples of TIDE in [gap[0], gap[1])

    @property
    def url(self) -> str:
        return self.server.url

    def source(self, **kwargs: float) -> PrometheusSource:
        """A source whose clock stands still at `at`, so every query sees the backfill."""
        return PrometheusSource(clock=lambda: self.at, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def seeded(prometheus: PrometheusServer) -> Seeded:
    # Hours in the past, on an hour boundary: away from the live head, and
    # aligned with the 15 s grid so that rate() over whole windows is exact.
    at = math.floor(time.time() / 3600) * 3600 - 3 * 3600.0
    recent = grid(at - 600, at, 15)
    series = [
        Series(DEMAND, {"service": "shop"}, [(t, 1234.5) for t in recent]),
        Series("tidetest_multi", {"zone": "a"}, [(t, 1.0) for t in recent]),
        Series("tidetest_multi", {"zone": "b"}, [(t, 2.0) for t in recent]),
        Series("tidetest_nan", {}, [(t, math.nan) for t in recent]),
    ]
    web = {"app": (0.25, 200 * MIB), "sidecar": (0.05, 50 * MIB)}
    web_requests = {"app": (0.5, 256 * MIB), "sidecar": (0.1, 64 * MIB)}
    for namespace, pod in [("shop", "web-1"), ("shop", "web-2"), ("other", "web-1")]:
        series += cadvisor_pod(namespace, pod, web, recent)
        series += kube_state_metrics_pod(namespace, pod, web_requests, recent)
    # Selected by name but not by the pod regex.
    series += cadvisor_pod("shop", "api-1", {"api": (2.0, 1024 * MIB)}, recent)
    series += kube_state_metrics_pod("shop", "api-1", {"api": (4.0, 2048 * MIB)}, recent)
    # Requests known, no usage yet: the HPA counts it as a pod without metrics.
    series += kube_state_metrics_pod("shop", "web-3", web_requests, recent)

    day_start = at - 26 * 3600
    gap = (day_start + 10 * 3600, day_start + 11 * 3600)
    series.append(
        Series(
            TIDE,
            {"service": "shop"},
            [
                (t, tide(t, day_start))
                for t in grid(day_start, day_start + DAY, 15)
                if not gap[0] <= t < gap[1]
            ],
        )
    )
    prometheus.backfill(openmetrics(series))
    return Seeded(prometheus, at, day_start, gap)


# -- instant queries: KEDA's conversion rules -------------------------------------------


def test_instant_returns_the_backfilled_value(seeded: Seeded) -> None:
    with seeded.source() as source:
        assert source.instant(seeded.url, f"sum({DEMAND})") == 1234.5
        assert source.read(seeded.url, f"sum({DEMAND})") == Reading(1234.5, seeded.at, None)


def test_ready_says_when_a_read_would_not_wait(seeded: Seeded) -> None:
    clock = [seeded.at]
    query = f"sum({DEMAND})"
    with PrometheusSource(clock=lambda: clock[0], coalesce_seconds=5.0) as source:
        assert not source.ready(seeded.url, query)  # never asked: a read would fetch
        assert source.read(seeded.url, query).value == 1234.5
        assert source.ready(seeded.url, query)  # the shared answer is at hand
        assert not source.ready(seeded.url, "sum(other)")  # another query is not
        assert not source.resource_ready(seeded.url, 'namespace="shop"', "cpu")
        clock[0] += 11.0  # past the answer's use (twice --coalesce-seconds with refresh-ahead)
        assert not source.ready(seeded.url, query)


def test_shared_at_hand_reads_only_what_would_not_wait(seeded: Seeded) -> None:
    clock = [seeded.at]
    query = f"sum({DEMAND})"
    with PrometheusSource(clock=lambda: clock[0], coalesce_seconds=5.0) as source:
        assert source.shared_at_hand(seeded.url, query) is None
        assert source.requests_in_flight() == 0 and not source.ready(seeded.url, query)
        fetched = source.read(seeded.url, query)
        assert source.shared_at_hand(seeded.url, query) == (fetched, 5.0)
        assert fetched == Reading(1234.5, seeded.at)
        clock[0] += 11.0  # past the answer's use: not at hand, and nothing started
        assert source.shared_at_hand(seeded.url, query) is None
        assert source.requests_in_flight() == 0
        fetched = source.read(seeded.url, query)
        clock[0] += 6.0  # past --coalesce-seconds: still served, and one refresh starts
        assert source.shared_at_hand(seeded.url, query) == (fetched, -1.0)
        assert source._flights[(seeded.url, query, NO_OPTIONS)].refreshing


def test_instant_returns_the_scraped_value(
    prometheus: PrometheusServer, exporter: Exporter
) -> None:
    exporter.set("tidetest_queue_depth", 37.0, queue="orders")
    prometheus.wait_for_value("tidetest_queue_depth", 37.0)
    with PrometheusSource() as source:
        before = time.time()
        reading = source.read(prometheus.url, 'tidetest_queue_depth{queue="orders"}')
    assert reading.value == 37.0
    assert reading.error is None
    assert reading.observed_at is not None and before <= reading.observed_at <= time.time()


def test_scalar_result_is_read_like_a_vector(seeded: Seeded) -> None:
    with seeded.source() as source:
        assert source.instant(seeded.url, f"scalar(sum({DEMAND})) * 2") == 2469.0


def test_empty_result_is_zero_when_null_values_are_ignored(seeded: Seeded) -> None:
    with seeded.source() as source:
        assert source.instant(seeded.url, "tidetest_does_not_exist") == 0.0


def test_empty_result_is_an_error_when_null_values_count(seeded: Seeded) -> None:
    with seeded.source() as source, pytest.raises(BackendError) as raised:
        source.instant(seeded.url, "tidetest_does_not_exist", ignore_null_values=False)
    error = raised.value
    assert error.kind is BackendErrorKind.NULL_VALUE
    assert error.address == seeded.url
    assert error.query == "tidetest_does_not_exist"
    assert str(error) == (
        f"Prometheus at {seeded.url}, query 'tidetest_does_not_exist': the result is empty "
        "(the target may be lost); set ignoreNullValues to true to count this as 0"
    )


@pytest.mark.parametrize("ignore_null_values", [True, False], ids=["ignore", "strict"])
def test_more_than_one_series_is_an_error_telling_to_aggregate(
    seeded: Seeded, ignore_null_values: bool
) -> None:
    with seeded.source() as source, pytest.raises(BackendError) as raised:
        source.instant(seeded.url, "tidetest_multi", ignore_null_values=ignore_null_values)
    assert raised.value.kind is BackendErrorKind.MULTIPLE_SERIES
    assert "returns 2 series but must return one; aggregate it" in str(raised.value)


NOT_FINITE = [
    pytest.param("tidetest_nan", "nan", id="stored-NaN"),
    pytest.param("0 / 0", "nan", id="scalar-NaN"),
    pytest.param("vector(1) / 0", "inf", id="vector-plus-Inf"),
    pytest.param("-1 / 0", "-inf", id="scalar-minus-Inf"),
]


@pytest.mark.parametrize(("query", "shown"), NOT_FINITE)
def test_not_finite_is_zero_when_null_values_are_ignored(
    seeded: Seeded, query: str, shown: str
) -> None:
    with seeded.source() as source:
        assert source.instant(seeded.url, query) == 0.0


@pytest.mark.parametrize(("query", "shown"), NOT_FINITE)
def test_not_finite_is_an_error_when_null_values_count(
    seeded: Seeded, query: str, shown: str
) -> None:
    with seeded.source() as source, pytest.raises(BackendError) as raised:
        source.instant(seeded.url, query, ignore_null_values=False)
    assert raised.value.kind is BackendErrorKind.NULL_VALUE
    assert f"the query returns {shown};" in str(raised.value)


def test_invalid_promql_is_a_query_error_with_prometheus_message(seeded: Seeded) -> None:
    with seeded.source() as source, pytest.raises(BackendError) as raised:
        source.instant(seeded.url, "sum(")
    assert raised.value.kind is BackendErrorKind.QUERY_ERROR
    assert raised.value.status_code == 400
    assert "Prometheus rejects the query (HTTP 400): bad_data:" in str(raised.value)
    assert "parse error" in str(raised.value)


def test_string_result_is_a_query_error(seeded: Seeded) -> None:
    with seeded.source() as source, pytest.raises(BackendError) as raised:
        source.instant(seeded.url, '"twelve"')
    assert raised.value.kind is BackendErrorKind.QUERY_ERROR
    assert "the query returns 'twelve', not a number" in str(raised.value)


def test_range_vector_in_an_instant_query_is_a_query_error(seeded: Seeded) -> None:
    with seeded.source() as source, pytest.raises(BackendError) as raised:
        source.instant(seeded.url, f"sum({DEMAND})[1m:15s]")
    assert raised.value.kind is BackendErrorKind.QUERY_ERROR
    assert "range vector" in str(raised.value)


# -- resource signals ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "used", "requested", "window"),
    [
        # web-1 and web-2 in shop: app + sidecar each; not the pod-level and
        # pause rows, not other/web-1, not api-1. web-3 has requests but no usage:
        # listed, its usage missing (the HPA's "missing pod").
        pytest.param("cpu", 0.25 + 0.05, 0.5 + 0.1, 120.0, id="cpu"),
        pytest.param("memory", 250 * MIB, 320 * MIB, 0.0, id="memory"),
    ],
)
def test_resource_reading_lists_the_selected_pods(
    seeded: Seeded, resource: str, used: float, requested: float, window: float
) -> None:
    with seeded.source() as source:
        reading = source.read_resource(
            seeded.url,
            'namespace="shop",pod=~"web-.*"',
            resource,  # type: ignore[arg-type]
        )
    assert reading.error is None
    assert reading.pods is not None and reading.usage is not None
    # No kube-state-metrics status series here: every pod counts as ready and started.
    assert [(pod.name, pod.ready, pod.phase) for pod in reading.pods] == [
        (f"shop/web-{i}", True, PodPhase.RUNNING) for i in (1, 2, 3)
    ]
    assert [pod.request for pod in reading.pods] == pytest.approx([requested] * 3, rel=1e-9)
    assert reading.usage == pytest.approx({"shop/web-1": used, "shop/web-2": used}, rel=1e-9)
    assert (reading.observed_at, reading.window_seconds) == (seeded.at, window)


def test_resource_reading_is_one_request(seeded: Seeded) -> None:
    # Usage, requests and pod status in one evaluation: consistent, and within one timeout.
    proxy = CountingProxy(seeded.url)
    try:
        with seeded.source() as source:
            reading = source.read_resource(proxy.url, 'namespace="shop",pod=~"web-.*"', "cpu")
        assert reading.pods is not None and len(reading.pods) == 3
        assert proxy.count() == 1
    finally:
        proxy.close()


def test_resource_reading_without_pods_is_no_reading(seeded: Seeded) -> None:
    with seeded.source() as source:
        reading = source.read_resource(seeded.url, 'namespace="nowhere"', "cpu")
    assert (reading.pods, reading.usage, reading.observed_at) == (None, None, None)
    assert reading.error is not None and reading.error.kind is BackendErrorKind.NULL_VALUE
    assert "no cpu usage series for the selected pods" in str(reading.error)


def test_resource_reading_refuses_an_unvalidated_selector(seeded: Seeded) -> None:
    with seeded.source() as source, pytest.raises(ValueError, match="podSelector"):
        source.read_resource(seeded.url, 'namespace="shop"} or vector(1e9) #', "cpu")


@pytest.mark.parametrize(
    "selector",
    [
        'namespace="shop"',
        'namespace="shop",pod=~"web-.*"',
        ' namespace = "shop" , pod !~ "canary-.*" , container != "istio-proxy" ',
        'app_kubernetes_io_name="web",pod=~"web-\\\\d+"',
        'label="with \\" quote"',
    ],
)
def test_valid_pod_selectors(selector: str) -> None:
    assert validate_pod_selector(selector) is None


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        pytest.param("", "is empty", id="empty"),
        pytest.param("namespace=shop", "not valid at character 1", id="unquoted"),
        pytest.param("namespace='shop'", "not valid at character 1", id="single-quotes"),
        pytest.param('namespace="shop",', "not valid at character 18", id="trailing-comma"),
        pytest.param('namespace=="shop"', "not valid at character 1", id="bad-operator"),
        pytest.param('__name__="up"', "must not match __name__", id="metric-name"),
        pytest.param(
            'namespace="shop"} or vector(1e9) or up{a="b"',
            "not valid at character 17",
            id="injection-close-brace",
        ),
        pytest.param(
            'namespace="shop"}[5m]) > 0 or (up{a="b"', "not valid at character 17", id="injection"
        ),
        pytest.param('{namespace="shop"}', "not valid at character 1", id="braces"),
    ],
)
def test_invalid_pod_selectors(selector: str, problem: str) -> None:
    message = validate_pod_selector(selector)
    assert message is not None and problem in message


def test_resource_queries_exclude_pause_and_pod_rows() -> None:
    assert usage_per_pod_query("cpu", 'namespace="shop"', cpu_rate_window_seconds=60) == (
        "sum by (namespace, pod) (rate(container_cpu_usage_seconds_total"
        '{container!="",container!="POD",namespace="shop"}[60s]))'
    )
    assert requests_per_pod_query("memory", 'namespace="shop"') == (
        "sum by (namespace, pod) (kube_pod_container_resource_requests"
        '{resource="memory",container!="",container!="POD",namespace="shop"})'
    )


# -- range queries -------------------------------------------------------------------


def test_range_returns_the_backfilled_day_with_gaps_as_nan(seeded: Seeded) -> None:
    start, end = seeded.day_start, seeded.day_start + DAY
    with seeded.source() as source:
        times, values = source.range(seeded.url, f"sum({TIDE})", start, end, 15)
    assert len(times) == len(values) == 5761
    np.testing.assert_array_equal(times, np.arange(start, end + 1, 15.0))
    # Prometheus' 5 minute lookback carries the last sample into the gap's start.
    in_gap = (times >= seeded.gap[0] + 300) & (times < seeded.gap[1])
    outside = (times < seeded.gap[0]) | (times >= seeded.gap[1])
    assert np.isnan(values[in_gap]).all()
    expected = np.array([tide(t, seeded.day_start) for t in times[outside]])
    np.testing.assert_array_equal(values[outside], expected)


def test_range_longer_than_prometheus_allows_is_fetched_in_chunks(seeded: Seeded) -> None:
    start, end, step = seeded.day_start, seeded.day_start + DAY, 5.0
    # Prometheus itself refuses this in one request (17,281 points > 11,000).
    params = {"query": f"sum({TIDE})", "start": start, "end": end, "step": step}
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(
            f"{seeded.url}/api/v1/query_range?{urllib.parse.urlencode(params)}", timeout=10
        )
    assert refused.value.code == 400
    with seeded.source() as source:
        times, values = source.range(seeded.url, f"sum({TIDE})", start, end, step)
    assert len(times) == 17_281
    # Between samples Prometheus returns the latest one at or before t.
    before_gap = times < seeded.gap[0]
    latest = seeded.day_start + np.floor((times[before_gap] - seeded.day_start) / 15) * 15
    expected = np.array([tide(t, seeded.day_start) for t in latest])
    np.testing.assert_array_equal(values[before_gap], expected)


def test_range_of_several_series_is_an_error(seeded: Seeded) -> None:
    with seeded.source() as source, pytest.raises(BackendError) as raised:
        source.range(seeded.url, "tidetest_multi", seeded.at - 300, seeded.at, 15)
    assert raised.value.kind is BackendErrorKind.MULTIPLE_SERIES


def test_range_of_nothing_is_all_nan(seeded: Seeded) -> None:
    with seeded.source() as source:
        times, values = source.range(seeded.url, "tidetest_none", seeded.at - 60, seeded.at, 15)
    assert len(times) == 5 and np.isnan(values).all()


# -- coalescing ----------------------------------------------------------------------


def run_together(count: int, call: Callable[[], object]) -> list[object]:
    """Run `call` in `count` threads released at once; results or exceptions, in order."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_identical_queries_within_the_window_share_one_request(seeded: Seeded) -> None:
    now = [seeded.at]
    query = f"sum({DEMAND}) + 0"
    with PrometheusSource(coalesce_seconds=5.0, clock=lambda: now[0]) as source:
        before = seeded.server.http_requests("/api/v1/query")
        readings = run_together(64, lambda: source.read(seeded.url, query))
        # Both ignoreNullValues settings convert the same answer.
        source.instant(seeded.url, query, ignore_null_values=False)
        assert seeded.server.http_requests("/api/v1/query") - before == 1
        assert readings == [Reading(1234.5, seeded.at, None)] * 64

        now[0] += 5.0  # the window has passed: served once more while one refresh runs
        assert source.read(seeded.url, query).observed_at == seeded.at
        deadline = time.monotonic() + 10
        while source.read(seeded.url, query).observed_at != seeded.at + 5.0:
            assert time.monotonic() < deadline, "the background refresh never landed"
            time.sleep(0.01)
        assert seeded.server.http_requests("/api/v1/query") - before == 2

        now[0] += 10.0  # two windows old: too old to serve, fetched inline
        assert source.read(seeded.url, query).observed_at == seeded.at + 15.0
        source.instant(seeded.url, f"sum({DEMAND}) + 1")  # a different query
        assert seeded.server.http_requests("/api/v1/query") - before == 4


def test_without_refresh_ahead_an_expired_answer_is_fetched_inline(seeded: Seeded) -> None:
    now = [seeded.at]
    query = f"sum({DEMAND}) + 2"
    with PrometheusSource(
        coalesce_seconds=5.0, clock=lambda: now[0], refresh_ahead=False
    ) as source:
        before = seeded.server.http_requests("/api/v1/query")
        assert source.read(seeded.url, query).observed_at == seeded.at
        now[0] += 5.0
        assert source.read(seeded.url, query).observed_at == seeded.at + 5.0
        assert seeded.server.http_requests("/api/v1/query") - before == 2


def test_concurrent_callers_wait_for_the_request_in_flight(seeded: Seeded) -> None:
    # Without any caching window, callers that arrive while a slow request is
    # in flight still share it.
    proxy = CountingProxy(seeded.url, delay_seconds=0.5)
    try:
        with seeded.source(coalesce_seconds=0.0) as source:
            values = run_together(32, lambda: source.instant(proxy.url, f"sum({DEMAND})"))
            assert values == [1234.5] * 32
            assert proxy.count() == 1
            source.instant(proxy.url, f"sum({DEMAND})")
            assert proxy.count() == 2
    finally:
        proxy.close()


# -- failures --------------------------------------------------------------------------


@pytest.fixture
def silent_address() -> Iterator[str]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_backend_that_never_answers_times_out_within_the_bound(silent_address: str) -> None:
    with PrometheusSource(timeout_seconds=0.5) as source:
        started = time.monotonic()
        outcomes = run_together(8, lambda: source.read(silent_address, "up"))
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    for outcome in outcomes:
        assert isinstance(outcome, Reading)
        assert (outcome.value, outcome.observed_at) == (None, None)
        assert outcome.error is not None
        assert outcome.error.kind is BackendErrorKind.TIMEOUT
        assert str(outcome.error) == (
            f"Prometheus at {silent_address}, query 'up': "
            "no complete answer within the timeout (0.5 s)"
        )


def test_a_closed_port_is_a_connection_error() -> None:
    address = f"http://127.0.0.1:{free_port()}"
    with PrometheusSource() as source, pytest.raises(BackendError) as raised:
        source.instant(address, "up")
    assert raised.value.kind is BackendErrorKind.CONNECTION
    assert raised.value.address == address


@dataclass
class Stub:
    """Answers every request with a fixed status and body, counting requests."""

    url: str
    requests: list[str]


@pytest.fixture
def stub() -> Iterator[Callable[[int, bytes], Stub]]:
    # A real Prometheus answers a well-formed query with its own JSON; a bare
    # error page or broken JSON comes from a proxy or a broken backend in
    # front of it, which only a stub can play.
    servers: list[http.server.ThreadingHTTPServer] = []

    def make(status: int, body: bytes) -> Stub:
        seen: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                time.sleep(0.2)  # long enough for concurrent callers to pile up
                self.send_response(status)
                html = body.startswith(b"<")
                self.send_header("Content-Type", "text/html" if html else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return Stub(f"http://127.0.0.1:{server.server_address[1]}", seen)

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "body", "kind", "problem"),
    [
        pytest.param(
            400, b"<html>400 Bad Request</html>", BackendErrorKind.HTTP_STATUS,
            "HTTP status 400: not a Prometheus answer (content type 'text/html')", id="400-page",
        ),
        pytest.param(
            503,
            b'{"status": "error", "errorType": "unavailable", "error": "overloaded"}',
            BackendErrorKind.HTTP_STATUS,
            "HTTP status 503: unavailable: overloaded",
            id="503-prometheus-error",
        ),
        pytest.param(
            200, b'{"status": "success", "data": {"resu', BackendErrorKind.BAD_RESPONSE,
            "the response is not a Prometheus query result (content type 'application/json')",
            id="truncated-json",
        ),
        pytest.param(
            200, b'{"status": "success", "data": {"resultType": "vector", "result": 7}}',
            BackendErrorKind.BAD_RESPONSE, "the result is a int, not a list of series",
            id="result-not-a-list",
        ),
        pytest.param(
            200,
            b'{"status": "success", "data": {"resultType": "vector",'
            b' "result": [{"metric": {}, "value": 5}]}}',
            BackendErrorKind.BAD_RESPONSE, "the series' value is not a [time, value] pair",
            id="value-not-a-pair",
        ),
        pytest.param(
            200,
            b'{"status": "success", "data": {"resultType": "vector",'
            b' "result": [{"metric": {}, "value": [1, "many"]}]}}',
            BackendErrorKind.BAD_RESPONSE, "the query returns 'many', not a number",
            id="value-not-a-number",
        ),
    ],
)  # fmt: skip
def test_answers_that_are_not_query_results(
    stub: Callable[[int, bytes], Stub],
    status: int,
    body: bytes,
    kind: BackendErrorKind,
    problem: str,
) -> None:
    backend = stub(status, body)
    with PrometheusSource() as source:
        outcomes = run_together(8, lambda: source.read(backend.url, "sum(up)"))
    assert len(backend.requests) == 1, "the failure is shared, not retried by each caller"
    for outcome in outcomes:
        assert isinstance(outcome, Reading) and outcome.error is not None
        assert outcome.error.kind is kind
        assert str(outcome.error).startswith(f"Prometheus at {backend.url}, query 'sum(up)': ")
        assert problem in str(outcome.error)
        if kind is BackendErrorKind.HTTP_STATUS:
            assert outcome.error.status_code == status


def test_outage_keeps_the_last_good_value_and_recovers(
    prometheus_factory: Callable[..., PrometheusServer], exporter: Exporter
) -> None:
    server = prometheus_factory(start=False)
    recent = grid(math.floor(time.time() / 15) * 15 - 600, math.floor(time.time() / 15) * 15, 15)
    server.backfill(
        openmetrics(
            cadvisor_pod("shop", "web-1", {"app": (0.5, 300 * MIB)}, recent)
            + kube_state_metrics_pod("shop", "web-1", {"app": (1.0, 512 * MIB)}, recent)
        )
    )
    server.start()
    exporter.set("tidetest_outage_demand", 5.0)
    server.wait_for_value("tidetest_outage_demand", 5.0)
    offset = [0.0]
    with PrometheusSource(
        coalesce_seconds=0.0,
        last_good_ttl_seconds=60.0,
        clock=lambda: time.time() + offset[0],
    ) as source:
        good = source.read(server.url, "tidetest_outage_demand")
        assert good.value == 5.0 and good.error is None and good.observed_at is not None
        memory = source.read_resource(server.url, 'namespace="shop"', "memory")
        assert memory.error is None and memory.pods is not None
        assert [(pod.name, pod.request) for pod in memory.pods] == [("shop/web-1", 512 * MIB)]
        assert memory.usage == {"shop/web-1": 300 * MIB}

        server.kill()
        during = source.read(server.url, "tidetest_outage_demand")
        assert (during.value, during.observed_at) == (5.0, good.observed_at)
        assert during.error is not None and during.error.kind is BackendErrorKind.CONNECTION
        held = source.read_resource(server.url, 'namespace="shop"', "memory")
        assert held == replace(memory, error=held.error)
        assert held.error is not None and held.error.kind is BackendErrorKind.CONNECTION

        # Not read for longer than the TTL: forgotten.
        offset[0] += 61.0
        source.read(server.url, "tidetest_unrelated")
        forgotten = source.read(server.url, "tidetest_outage_demand")
        assert (forgotten.value, forgotten.observed_at) == (None, None)
        assert forgotten.error is not None

        exporter.set("tidetest_outage_demand", 7.0)
        server.start()
        server.wait_for_value("tidetest_outage_demand", 7.0)
        back = source.read(server.url, "tidetest_outage_demand")
        assert back.value == 7.0 and back.error is None
        assert back.observed_at is not None and back.observed_at > good.observed_at
