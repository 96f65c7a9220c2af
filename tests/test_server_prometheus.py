"""The service against a real Prometheus: demand, resources, failures, recovery, forecast."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import grpc
import pytest
from prometheus_server import (
    Exporter,
    PrometheusServer,
    Series,
    cadvisor_pod,
    grid,
    kube_state_metrics_pod,
    openmetrics,
)
from serve_process import serve_process, stopped

from scaler.forecast_service import ForecastService
from scaler.policy import canonical_url, parse_policy
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import RunningServer, ServerConfig, start_server
from scaler.sources.bounded_http import redacted_url
from scaler.sources.prometheus import PrometheusSource

pytestmark = pytest.mark.prometheus


def ref(metadata: dict[str, str], name: str = "checkout") -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace="shop", scalerMetadata=metadata)


def metrics_value(stub: pb_grpc.ExternalScalerStub, metadata: dict[str, str]) -> float:
    """The GetMetrics float, checked against the int: the HPA asks for ceil(float)."""
    response = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(metadata)), timeout=5)
    value = response.metricValues[0]
    assert math.ceil(value.metricValueFloat) == value.metricValue
    return value.metricValueFloat


def metrics(stub: pb_grpc.ExternalScalerStub, metadata: dict[str, str]) -> int:
    return math.ceil(metrics_value(stub, metadata))


def serve(prometheus_url: str, **config: float) -> RunningServer:
    return start_server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            prometheus_url=prometheus_url,
            **config,  # type: ignore[arg-type]
        )
    )


@pytest.fixture
def connect() -> Iterator[Callable[[RunningServer], pb_grpc.ExternalScalerStub]]:
    channels: list[grpc.Channel] = []

    def make(server: RunningServer) -> pb_grpc.ExternalScalerStub:
        channels.append(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        return pb_grpc.ExternalScalerStub(channels[-1])

    yield make
    for channel in channels:
        channel.close()


def test_demand_query_drives_replicas_and_activity(
    prometheus: PrometheusServer,
    exporter: Exporter,
    connect: Callable[..., pb_grpc.ExternalScalerStub],
) -> None:
    query = 'sum(e2e_requests_per_second{service="checkout"})'
    metadata = {"query": query, "threshold": "100", "activationThreshold": "5"}
    server = serve(prometheus.url, coalesce_seconds=0.0)
    stub = connect(server)
    try:
        exporter.set("e2e_requests_per_second", 250.0, service="checkout")
        prometheus.wait_for_value(query, 250.0)
        # 2.5 replicas' worth of demand: 3 replicas, and the HPA sees 2.5 as it would see
        # 250 against a target of 100 from KEDA's prometheus scaler (its tolerance acts
        # on the demand, not on the rounded count).
        assert metrics_value(stub, metadata) == 2.5
        assert metrics(stub, metadata) == 3
        assert stub.IsActive(ref(metadata), timeout=5).result is True

        exporter.set("e2e_requests_per_second", 3.0, service="checkout")
        prometheus.wait_for_value(query, 3.0)
        assert metrics(stub, metadata) == 1
        assert stub.IsActive(ref(metadata), timeout=5).result is False  # 3 <= activation 5
    finally:
        server.stop(0)


def test_empty_result_and_multiple_series(
    prometheus: PrometheusServer,
    exporter: Exporter,
    connect: Callable[..., pb_grpc.ExternalScalerStub],
) -> None:
    server = serve(prometheus.url)
    stub = connect(server)
    try:
        empty = {"query": "sum(no_such_series_anywhere)", "threshold": "10"}
        # sum() of nothing is an empty vector: 0 with ignoreNullValues (KEDA's default) ...
        assert metrics(stub, empty) == 0
        assert stub.IsActive(ref(empty), timeout=5).result is False
        # ... and an error without it: nothing was ever observed, so UNAVAILABLE.
        with pytest.raises(grpc.RpcError) as info:
            metrics(stub, empty | {"ignoreNullValues": "false"})
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE

        exporter.set("e2e_multi", 1.0, zone="a")
        exporter.set("e2e_multi", 2.0, zone="b")
        prometheus.wait_for("e2e_multi", lambda result: len(result) == 2, timeout_seconds=15)
        with pytest.raises(grpc.RpcError) as info:
            metrics(stub, {"query": "e2e_multi", "threshold": "1"})
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "2 series" in (info.value.details() or "")
    finally:
        server.stop(0)


def test_resource_signals_from_cadvisor_and_kube_state_metrics(
    prometheus_factory: Callable[..., PrometheusServer],
    connect: Callable[..., pb_grpc.ExternalScalerStub],
) -> None:
    now = time.time()
    times = grid(now - 1800, now, 15)
    series: list[Series] = []
    # Three pods of "web" use 0.3 cores and 400 MiB each, request 0.5 cores and 512 MiB.
    for i in range(3):
        pod = f"web-{i}"
        series += cadvisor_pod("shop", pod, {"app": (0.3, 400 * 2**20)}, times)
        series += kube_state_metrics_pod("shop", pod, {"app": (0.5, 512 * 2**20)}, times)
    # Another workload in the namespace that the selector must leave out.
    series += cadvisor_pod("shop", "db-0", {"db": (4.0, 8 * 2**30)}, times)
    series += kube_state_metrics_pod("shop", "db-0", {"db": (4.0, 8 * 2**30)}, times)
    prometheus = prometheus_factory(start=False, scrape=False)
    prometheus.backfill(openmetrics(series))
    prometheus.start()
    server = serve(prometheus.url)
    stub = connect(server)
    selector = 'namespace="shop",pod=~"web-.*"'
    try:
        # HPA: ceil(0.9 cores used / (50% x 0.5 cores)) = ceil(3.6) = 4
        assert metrics(stub, {"cpuUtilization": "50", "podSelector": selector}) == 4
        # ceil(1200 MiB / (60% x 512 MiB)) = ceil(3.90625) = 4; at 80%: ceil(2.93) = 3
        assert metrics(stub, {"memoryUtilization": "60", "podSelector": selector}) == 4
        assert metrics(stub, {"memoryUtilization": "80", "podSelector": selector}) == 3
        # A resource-only policy never deactivates.
        only_cpu = {"cpuUtilization": "50", "podSelector": selector}
        assert stub.IsActive(ref(only_cpu), timeout=5).result is True
    finally:
        server.stop(0)


def test_prometheus_killed_mid_run_then_back(
    prometheus_factory: Callable[..., PrometheusServer],
    exporter: Exporter,
    connect: Callable[..., pb_grpc.ExternalScalerStub],
) -> None:
    prometheus = prometheus_factory()
    query = 'sum(e2e_outage_requests{service="cart"})'
    metadata = {"query": query, "threshold": "10"}
    exporter.set("e2e_outage_requests", 42.0, service="cart")
    prometheus.wait_for_value(query, 42.0)
    staleness = 3.0
    server = serve(
        prometheus.url, coalesce_seconds=0.0, staleness_seconds=staleness, query_timeout_seconds=1.0
    )
    stub = connect(server)
    try:
        assert metrics(stub, metadata) == 5
        prometheus.kill()
        killed_at = time.monotonic()
        # The last good value stands in while it is younger than the staleness bound.
        assert metrics(stub, metadata) == 5
        # GetMetricSpec depends on configuration only: fast with the backend gone.
        started = time.perf_counter()
        spec = stub.GetMetricSpec(ref(metadata), timeout=3)
        assert spec.metricSpecs[0].targetSize == 1
        assert time.perf_counter() - started < 0.2
        # Past the bound: UNAVAILABLE, so that KEDA's fallback can act.
        time.sleep(max(0.0, staleness + 0.5 - (time.monotonic() - killed_at)))
        with pytest.raises(grpc.RpcError) as info:
            metrics(stub, metadata)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "cannot connect" in (info.value.details() or "")

        exporter.set("e2e_outage_requests", 95.0, service="cart")
        prometheus.start()
        prometheus.wait_for_value(query, 95.0, timeout_seconds=30)
        assert metrics(stub, metadata) == 10
    finally:
        server.stop(0)


def test_a_stopped_prometheus_costs_no_call_more_than_the_answer_budget(
    prometheus_factory: Callable[..., PrometheusServer],
    exporter: Exporter,
    connect: Callable[..., pb_grpc.ExternalScalerStub],
) -> None:
    """SIGSTOP: Prometheus' kernel still accepts connections, and nothing answers.

    KEDA's call must not hit its 3 s deadline: the held value answers within
    the budget while it is younger than the staleness bound, then UNAVAILABLE
    (so that KEDA's fallback acts), also within the budget.
    """
    prometheus = prometheus_factory()
    query = 'sum(e2e_stopped_requests{service="cart"})'
    metadata = {"query": query, "threshold": "10"}
    exporter.set("e2e_stopped_requests", 42.0, service="cart")
    prometheus.wait_for_value(query, 42.0)
    staleness = 4.0
    server = serve(
        prometheus.url,
        coalesce_seconds=0.0,
        staleness_seconds=staleness,
        query_timeout_seconds=30.0,
        answer_budget_seconds=1.0,
    )
    stub = connect(server)
    process = prometheus._process  # the fixture's own process handle
    assert process is not None
    try:
        assert metrics(stub, metadata) == 5
        good_at = time.monotonic()
        os.kill(process.pid, signal.SIGSTOP)
        for _ in range(2):
            started = time.perf_counter()
            assert metrics(stub, metadata) == 5
            assert time.perf_counter() - started < 1.3
        # Every call joined the one request still waiting; none piled up.
        assert server.source.requests_in_flight() == 1
        time.sleep(max(0.0, staleness + 0.2 - (time.monotonic() - good_at)))
        started = time.perf_counter()
        with pytest.raises(grpc.RpcError) as info:
            metrics(stub, metadata)
        assert time.perf_counter() - started < 1.3
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "no answer within the answer budget (1 s)" in (info.value.details() or "")
    finally:
        os.kill(process.pid, signal.SIGCONT)
    try:
        exporter.set("e2e_stopped_requests", 95.0, service="cart")
        prometheus.wait_for_value(query, 95.0)
        assert metrics(stub, metadata) == 10
    finally:
        server.stop(0)


def test_forecast_raises_capacity_before_the_backfilled_peak(
    prometheus_factory: Callable[..., PrometheusServer],
    connect: Callable[..., pb_grpc.ExternalScalerStub],
) -> None:
    """A week of daily tides; the peak of today is 40 minutes ahead.

    Reactive scaling sees today's still-low demand; the forecast has learnt
    the tide and provisions now for the demand 20 minutes of pod start-up
    plus one polling interval ahead.
    """
    now = time.time()
    day = 86400.0
    peak_at = now + 2400.0

    def demand(t: float) -> float:
        # valley 20 req/s, peak 1000 req/s: a tide of ratio 50
        phase = 2 * math.pi * (t - peak_at) / day
        return 20.0 + 980.0 * ((1 + math.cos(phase)) / 2) ** 4

    times = grid(now - 7 * day, now, 60)
    series = [
        Series("e2e_tide_requests_per_second", {"service": "web"}, [(t, demand(t)) for t in times])
    ]
    prometheus = prometheus_factory(start=False, scrape=False)
    prometheus.backfill(openmetrics(series))
    prometheus.start()

    source = PrometheusSource()
    forecasts = ForecastService(source, polling_interval_seconds=30.0)
    server = start_server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            prometheus_url=prometheus.url,
            staleness_seconds=600.0,
        ),
        forecasts=forecasts,
        source=source,
    )
    stub = connect(server)
    query = 'sum(e2e_tide_requests_per_second{service="web"})'
    metadata = {
        "query": query,
        "threshold": "10",
        "forecast": "on",
        "podStartupSeconds": "20m",
        "forecastHistory": "7d",
    }
    try:
        reactive = metrics(stub, {"query": query, "threshold": "10"})
        # The backfill ends now; Prometheus serves its last sample (within its 5 min lookback).
        assert reactive == math.ceil(demand(times[-1]) / 10 - 1e-9)
        deadline = time.monotonic() + 60
        predictive = metrics(stub, metadata)
        while predictive <= reactive and time.monotonic() < deadline:
            time.sleep(0.5)  # the first fit runs in the background, never on this call
            predictive = metrics(stub, metadata)
        ahead = math.ceil(demand(now + 1230) / 10)
        assert predictive > reactive
        # Provisioned for (about) the demand at the end of the lead time, not for the peak
        # beyond it, nor wildly above.
        assert 0.8 * ahead <= predictive <= 1.6 * ahead, (reactive, predictive, ahead)
    finally:
        server.stop(0)
        forecasts.close()


def test_credentials_in_the_prometheus_url_never_reach_a_caller(
    prometheus: PrometheusServer,
    connect: Callable[..., pb_grpc.ExternalScalerStub],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An operator's --prometheus-url may carry basic-auth credentials; messages built from
    the address reach tenants (gRPC status details, Events in their namespace). Any tenant
    could read them by sending a query Prometheus rejects."""
    with_password = prometheus.url.replace("http://", "http://admin:s3cret@")
    server = serve(with_password, coalesce_seconds=0.0)
    stub = connect(server)
    try:
        # The credentials are used: the same Prometheus answers through them.
        assert metrics(stub, {"query": "vector(7)", "threshold": "1"}) == 7
        with caplog.at_level("INFO"), pytest.raises(grpc.RpcError) as info:
            metrics(stub, {"query": "sum(", "threshold": "1"})
        message = info.value.details() or ""
        assert "s3cret" not in message and "admin" not in message
        # The tenant is told it is the server's Prometheus; the log names it, redacted.
        assert "the server's Prometheus" in message and "127.0.0.1" not in message, message
        assert "parse error" in message  # the tenant still learns what is wrong
        assert "s3cret" not in caplog.text
        [logged] = [r for r in caplog.records if r.getMessage() == "backend error"]
        assert "Prometheus at http://***@127.0.0.1:" in logged.error  # type: ignore[attr-defined]
    finally:
        server.stop(0)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://admin:s3cret@prom:9090/api", "http://***@prom:9090/api"),
        ("https://token@prom", "https://***@prom"),
        ("http://prom:9090", "http://prom:9090"),
        ("http://a:b@c@prom:9090", "http://***@prom:9090"),
    ],
)
def test_addresses_are_shown_without_credentials(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_serve_says_at_start_whether_its_prometheus_answers(prometheus: PrometheusServer) -> None:
    """A wrong or unreachable --prometheus-url started without a word: the first sign was a
    warning per ScaledObject once KEDA called. Now one line at start says which."""

    def first_lines(url: str) -> list[dict[str, object]]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = serve_process(port, f"--prometheus-url={url}")
        time.sleep(3.0)  # the check runs beside serving; a refused connection is at once
        text = stopped(process)
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    answered = [
        line for line in first_lines(prometheus.url) if "--prometheus-url" in str(line["message"])
    ]
    assert [line["message"] for line in answered] == ["--prometheus-url answers queries"]
    refused = [
        line
        for line in first_lines("http://127.0.0.1:9")
        if "--prometheus-url" in str(line["message"])
    ]
    assert [(line["level"], line["prometheus_url"]) for line in refused] == [
        ("warning", "http://127.0.0.1:9")
    ]
    assert "cannot connect" in str(refused[0]["error"])


def test_a_workload_whose_series_is_gone_at_night_sleeps_with_the_forecast_on(
    prometheus_factory: Callable[..., PrometheusServer],
    connect: Callable[..., pb_grpc.ExternalScalerStub],
) -> None:
    """Eight days of business hours, and no sample at all at night: `sum(...)` over a
    workload's own pods has no series while it is at zero pods. It is 02:00 now. The
    query reads the empty result as 0 (ignoreNullValues); the forecast, which has seen
    every night empty, must read them so too, or it keeps the workload awake all night
    at the evening's last level."""
    now = time.time()
    day, hour = 86400.0, 3600.0
    midnight = now - 2 * hour  # the pattern's midnight before now

    def demand(t: float) -> float | None:
        hours = ((t - midnight) % day) / hour
        if not 6.0 <= hours < 22.0:
            return None  # no sample: the pods are gone
        return 20.0 + 380.0 * math.sin(math.pi * (hours - 6.0) / 16.0)

    samples = [(t, v) for t in grid(now - 8 * day, now, 60) if (v := demand(t)) is not None]
    prometheus = prometheus_factory(start=False, scrape=False)
    prometheus.backfill(openmetrics([Series("e2e_pod_requests", {"service": "web"}, samples)]))
    prometheus.start()

    source = PrometheusSource()
    forecasts = ForecastService(source, polling_interval_seconds=30.0)
    config = ServerConfig(host="127.0.0.1", port=0, metrics_port=None)
    server = start_server(
        replace(config, prometheus_url=prometheus.url), forecasts=forecasts, source=source
    )
    stub = connect(server)
    query = 'sum(e2e_pod_requests{service="web"})'
    metadata = {"query": query, "threshold": "50", "forecast": "on"}
    metadata |= {"podStartupSeconds": "60", "forecastHistory": "7d"}
    key = ForecastService.key(canonical_url(prometheus.url), query, parse_policy(metadata))
    try:
        assert stub.IsActive(ref(metadata), timeout=5).result is False  # reactive: 0
        deadline = time.monotonic() + 90
        while forecasts.refresher.latest(key) is None:
            assert time.monotonic() < deadline, forecasts.refresher.status(key)
            stub.IsActive(ref(metadata), timeout=5)  # keeps the series asked for
            time.sleep(0.5)
        forecast = forecasts.refresher.latest(key)
        assert forecast is not None
        night = forecast.window(now, now + 2 * hour)
        assert float(forecast.median[night.start : night.stop].max()) == 0.0
        # With the forecast in, still asleep (it was awake all night before).
        assert stub.IsActive(ref(metadata), timeout=5).result is False
        assert metrics(stub, metadata) == 0
    finally:
        server.stop(0)
        forecasts.close()
