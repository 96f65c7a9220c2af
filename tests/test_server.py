"""The KEDA contract end to end: real gRPC over loopback with a client generated from the proto."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from certs import Pki, make_pki
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from serve_process import serve_process, stopped

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import SERVICE_NAME, RunningServer, ServerConfig, start_server
from scaler.sources.prometheus import BackendError, BackendErrorKind
from scaler.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[1]
# Inside its window at any instant of the year but New Year's first minute: the next end
# (every minute) always comes before the next start (once a year).
ALWAYS = {"timezone": "UTC", "start": "0 0 1 1 *", "end": "* * * * *", "desiredReplicas": "3"}
# KEDA sends its own keys along with the user's.
KEDA_KEYS = {"scalerAddress": "tidescaler.tidescaler:9090", "enableTLS": "false"}


def ref(metadata: dict[str, str], name: str = "web") -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace="shop", scalerMetadata=KEDA_KEYS | metadata)


def start(config: ServerConfig | None = None, **kwargs: object) -> RunningServer:
    return start_server(
        config or ServerConfig(host="127.0.0.1", port=0, metrics_port=None), **kwargs
    )  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[RunningServer]:
    running = start(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            prometheus_url="http://127.0.0.1:9",
            push_interval_seconds=0.2,
        )
    )
    yield running
    running.stop(0)


@pytest.fixture
def stub(server: RunningServer) -> Iterator[pb_grpc.ExternalScalerStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.ExternalScalerStub(channel)


def test_get_metric_spec_target_one_int_and_float(stub: pb_grpc.ExternalScalerStub) -> None:
    response = stub.GetMetricSpec(ref(ALWAYS | {"metricName": "web-capacity"}), timeout=3)
    assert len(response.metricSpecs) == 1
    spec = response.metricSpecs[0]
    assert (spec.metricName, spec.targetSize, spec.targetSizeFloat) == ("web-capacity", 1, 1.0)


def test_cron_policy_reports_desired_replicas_in_both_fields(
    stub: pb_grpc.ExternalScalerStub,
) -> None:
    response = stub.GetMetrics(
        pb.GetMetricsRequest(scaledObjectRef=ref(ALWAYS), metricName="tidescaler"), timeout=3
    )
    assert len(response.metricValues) == 1
    value = response.metricValues[0]
    assert (value.metricName, value.metricValue, value.metricValueFloat) == ("tidescaler", 3, 3.0)
    assert stub.IsActive(ref(ALWAYS), timeout=3).result is True


def test_inactive_cron_window(stub: pb_grpc.ExternalScalerStub) -> None:
    # Starts once a year at Jan 1 00:00 and ends a minute later: inactive on any test day
    # but that minute.
    never = {"timezone": "UTC", "start": "0 0 1 1 *", "end": "1 0 1 1 *", "desiredReplicas": "4"}
    assert stub.IsActive(ref(never), timeout=3).result is False
    value = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(never)), timeout=3)
    assert value.metricValues[0].metricValue == 0  # what KEDA's cron scaler (>= 2.18) reports


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        pytest.param(
            {"query": "up", "treshold": "3"},
            "unknown key 'treshold' (did you mean threshold?)",
            id="typo",
        ),
        pytest.param(
            ALWAYS | {"desiredReplicas": "many"},
            "desiredReplicas='many': expected a whole number from 1 to 100000",
            id="bad-value",
        ),
        pytest.param(
            {"query": "up", "threshold": "3", "prometheusAddress": "http://169.254.169.254"},
            "prometheusAddress='http://169.254.169.254' is not allowed",
            id="not-allowed",
        ),
        pytest.param({}, "no signal", id="empty"),
    ],
)
def test_invalid_metadata_is_invalid_argument_on_every_rpc(
    stub: pb_grpc.ExternalScalerStub, metadata: dict[str, str], fragment: str
) -> None:
    calls = [
        lambda: stub.GetMetricSpec(ref(metadata), timeout=3),
        lambda: stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(metadata)), timeout=3),
        lambda: stub.IsActive(ref(metadata), timeout=3),
        lambda: next(iter(stub.StreamIsActive(ref(metadata), timeout=3))),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in (info.value.details() or "")


def test_an_edited_trigger_counts_at_once_and_map_order_does_not_matter(
    server: RunningServer, stub: pb_grpc.ExternalScalerStub
) -> None:
    """The server remembers each valid trigger it resolved; an edit is a new trigger."""

    def replicas(metadata: dict[str, str]) -> int:
        request = pb.GetMetricsRequest(scaledObjectRef=ref(metadata), metricName="tidescaler")
        return stub.GetMetrics(request, timeout=3).metricValues[0].metricValue

    assert replicas(ALWAYS) == 3
    assert replicas(ALWAYS | {"desiredReplicas": "5"}) == 5
    # Valid a moment ago, invalid now: refused on every call, never from memory.
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as info:
            replicas(ALWAYS | {"desiredReplicas": "zero"})
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    # The same map with its entries written in another order (as a Go client may write
    # it) is the same trigger: the wire bytes are put together entry by entry.
    def written_in_order(entries: list[tuple[str, str]]) -> bytes:
        head = pb.ScaledObjectRef(name="web", namespace="shop").SerializeToString()
        return head + b"".join(
            pb.ScaledObjectRef(scalerMetadata={key: value}).SerializeToString()
            for key, value in entries
        )

    entries = sorted((KEDA_KEYS | ALWAYS).items())
    forward, backward = written_in_order(entries), written_in_order(entries[::-1])
    assert forward != backward
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        is_active = channel.unary_unary(
            "/externalscaler.ExternalScaler/IsActive",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.IsActiveResponse.FromString,
        )
        assert is_active(forward, timeout=3).result is True
        assert is_active(backward, timeout=3).result is True
    assert len(server.service._resolved) == 2


def test_an_unexpected_error_is_internal_counted_and_the_server_keeps_serving() -> None:
    def broken_lookup(namespace: str, name: str) -> float | None:
        raise RuntimeError(f"lookup of {namespace}/{name} broke")

    telemetry = Telemetry()
    running = start(telemetry=telemetry, pod_startup=broken_lookup)
    auto = ALWAYS | {"podStartupSeconds": "auto"}  # the only policy that asks the lookup
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            for call in (
                lambda: stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(auto)), timeout=3),
                lambda: stub.IsActive(ref(auto), timeout=3),
            ):
                with pytest.raises(grpc.RpcError) as info:
                    call()
                assert info.value.code() is grpc.StatusCode.INTERNAL
                assert info.value.details() == (
                    "internal error: RuntimeError: lookup of shop/web broke"
                )
            assert stub.IsActive(ref(ALWAYS), timeout=3).result is True
    finally:
        running.stop(0)
    requests = telemetry.registry.get_sample_value
    for method, code, count in (
        ("GetMetrics", "INTERNAL", 1),
        ("IsActive", "INTERNAL", 1),
        ("IsActive", "OK", 1),
    ):
        labels = {"method": method, "code": code}
        assert requests("tidescaler_grpc_requests_total", labels) == count, labels


def test_every_ok_call_is_counted_and_timed_from_zero() -> None:
    """The unary methods count their OK calls inline (no lock, no recorder frame): the
    series are there at zero from the start, and each call adds one and its time."""
    telemetry = Telemetry()
    running = start(telemetry=telemetry)
    sample = telemetry.registry.get_sample_value
    methods = ("GetMetricSpec", "GetMetrics", "IsActive")
    try:
        for method in methods:
            labels = {"method": method, "code": "OK"}
            assert sample("tidescaler_grpc_requests_total", labels) == 0, labels
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            for _ in range(3):
                stub.GetMetricSpec(ref(ALWAYS), timeout=3)
                stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(ALWAYS)), timeout=3)
                stub.IsActive(ref(ALWAYS), timeout=3)
            stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(ALWAYS)), timeout=3)
    finally:
        running.stop(0)
    for method, count in zip(methods, (3, 4, 3), strict=True):
        labels = {"method": method, "code": "OK"}
        assert sample("tidescaler_grpc_requests_total", labels) == count, labels
        assert sample("tidescaler_grpc_request_duration_seconds_count", labels) == count
        assert (
            sample("tidescaler_grpc_request_duration_seconds_bucket", labels | {"le": "+Inf"})
            == count
        )
        assert 0 < sample("tidescaler_grpc_request_duration_seconds_sum", labels) < count * 3


def test_a_broken_scaledobject_is_logged_once_per_problem_not_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """KEDA asks every poll and every HPA sync: invalid metadata and a Prometheus that
    refuses connections were logged on every call (or, for invalid metadata, never).
    Each is logged when it appears and when what it says changes; the counters count
    every call."""
    telemetry = Telemetry()
    running = start(
        ServerConfig(
            host="127.0.0.1", port=0, metrics_port=None, prometheus_url="http://127.0.0.1:9"
        ),
        telemetry=telemetry,
    )
    typo = ALWAYS | {"desiredReplicas": "three"}
    refused = {"query": "sum(up)", "threshold": "10"}
    try:
        with (
            caplog.at_level(logging.WARNING, logger="tidescaler"),
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        ):
            stub = pb_grpc.ExternalScalerStub(channel)
            for metadata, code in ((typo, "INVALID_ARGUMENT"), (refused, "UNAVAILABLE")):
                for _ in range(4):
                    with pytest.raises(grpc.RpcError) as info:
                        stub.GetMetrics(
                            pb.GetMetricsRequest(scaledObjectRef=ref(metadata)), timeout=5
                        )
                    assert info.value.code().name == code
            with pytest.raises(grpc.RpcError):  # another problem of the same ScaledObject
                stub.IsActive(ref(typo | {"timezone": "Mars/Olympus"}), timeout=5)
    finally:
        running.stop(0)
    said = [(r.getMessage(), getattr(r, "scaledobject", None)) for r in caplog.records]
    assert said.count(("invalid trigger metadata", "web")) == 2, said
    assert said.count(("backend error", "web")) == 1, said
    [first, second] = [r for r in caplog.records if r.getMessage() == "invalid trigger metadata"]
    assert "desiredReplicas" in first.error  # type: ignore[attr-defined]
    assert "Mars/Olympus" in second.error  # type: ignore[attr-defined]
    sample = telemetry.registry.get_sample_value
    labels = {"method": "GetMetrics", "code": "INVALID_ARGUMENT"}
    assert sample("tidescaler_grpc_requests_total", labels) == 4
    errors = sample(
        "tidescaler_backend_errors_total",
        {"namespace": "shop", "scaledobject": "web", "kind": "connection"},
    )
    assert errors is not None and errors >= 2


# Bytes no ScaledObjectRef decodes from: field 1 (name) holding invalid UTF-8, and a
# length that runs past the end.
BROKEN_REQUESTS = (b"\x0a\x02\xff\xfe", b"\x0a\x7fshort")


def test_a_request_that_is_not_the_message_is_invalid_argument_counted_and_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """gRPC answered bytes its deserializer refuses with UNKNOWN and an error-level
    traceback per call, uncounted: any client could fill the log."""
    telemetry = Telemetry()
    running = start(telemetry=telemetry)
    methods = ("GetMetricSpec", "GetMetrics", "IsActive")
    try:
        with (
            caplog.at_level(logging.WARNING),
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        ):
            for method in methods:
                call = channel.unary_unary(f"/{SERVICE_NAME}/{method}")
                for data in BROKEN_REQUESTS:
                    with pytest.raises(grpc.RpcError) as info:
                        call(data, timeout=3)
                    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, method
                    wanted = "GetMetricsRequest" if method == "GetMetrics" else "ScaledObjectRef"
                    assert f"is not a valid externalscaler.{wanted} message" in (
                        info.value.details() or ""
                    )
            stream = channel.unary_stream(f"/{SERVICE_NAME}/StreamIsActive")
            with pytest.raises(grpc.RpcError) as info:
                list(stream(BROKEN_REQUESTS[0], timeout=3))
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            # Whole requests still work on the same connection.
            stub = pb_grpc.ExternalScalerStub(channel)
            assert stub.IsActive(ref(ALWAYS), timeout=3).result is True
    finally:
        running.stop(0)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    requests = telemetry.registry.get_sample_value
    for method in methods:
        labels = {"method": method, "code": "INVALID_ARGUMENT"}
        assert requests("tidescaler_grpc_requests_total", labels) == 2, labels


def test_no_prometheus_configured_is_invalid_argument() -> None:
    running = start()
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
            pytest.raises(grpc.RpcError) as info,
        ):
            pb_grpc.ExternalScalerStub(channel).GetMetricSpec(
                ref({"query": "up", "threshold": "1"}), timeout=3
            )
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "no --prometheus-url" in (info.value.details() or "")
    finally:
        running.stop(0)


def test_get_metric_spec_answers_at_once_with_backend_down(
    stub: pb_grpc.ExternalScalerStub,
) -> None:
    # The configured Prometheus (port 9, discard) does not exist: GetMetricSpec must not care.
    metadata = {"query": "sum(up)", "threshold": "10"}
    started = time.perf_counter()
    for _ in range(20):
        stub.GetMetricSpec(ref(metadata), timeout=3)
    assert (time.perf_counter() - started) / 20 < 0.05
    with pytest.raises(grpc.RpcError) as info:
        stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(metadata)), timeout=5)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "shop/web" in (info.value.details() or "")


def test_a_tenant_is_not_shown_where_the_servers_own_prometheus_is() -> None:
    """A backend error names the Prometheus asked. A trigger on the server's
    --prometheus-url is told "the server's Prometheus" (the operator's address, like the
    allow-list, goes to the log); one that named its own prometheusAddress sees it."""
    refused = BackendError(
        BackendErrorKind.CONNECTION, "http://prom:9090", "up", "cannot connect (for 'prom')"
    )
    # What the forecast's problem says too (it is shared by triggers of both kinds).
    assert refused.public() == (
        "Prometheus at http://prom:9090, query 'up': cannot connect (the server's log says why)"
    )
    default, named = "http://127.0.0.1:9", "http://127.0.0.1:7"
    running = start(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            prometheus_url=default,
            allowed_prometheus_urls=(named,),
        )
    )
    query = {"query": "sum(up)", "threshold": "10"}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            # A connection failure's own words (an OS or TLS error may name hosts) are
            # left out too; the trigger that chose its address gets them.
            for metadata, shown, hidden in (
                (query, "the server's Prometheus", "127.0.0.1:9"),
                (query, "cannot connect (the server's log says why)", "refused"),
                (query | {"prometheusAddress": named}, f"Prometheus at {named}", "server's"),
                (query | {"prometheusAddress": named}, "Connection refused", "log says why"),
            ):
                request = pb.GetMetricsRequest(scaledObjectRef=ref(metadata))
                with pytest.raises(grpc.RpcError) as info:
                    stub.GetMetrics(request, timeout=5)
                details = info.value.details() or ""
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
                assert shown in details and hidden not in details, details
    finally:
        running.stop(0)


def test_an_active_window_answers_activity_while_the_demand_is_unknown(
    stub: pb_grpc.ExternalScalerStub, caplog: pytest.LogCaptureFixture
) -> None:
    """Prometheus down (port 9): the count is UNAVAILABLE (a window's floor alone could
    lower a workload running above it), but a window with desiredReplicas makes the
    workload active whatever the demand, so IsActive and the stream say so (they were
    UNAVAILABLE and silent); without an active window they stay unknown."""
    window = {"schedules": json.dumps([ALWAYS])}
    metadata = {"query": "sum(up)", "threshold": "10"} | window
    with pytest.raises(grpc.RpcError) as info:
        stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(metadata)), timeout=5)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert stub.IsActive(ref(metadata), timeout=5).result is True
    stream = stub.StreamIsActive(ref(metadata), timeout=5)
    assert next(iter(stream)).result is True
    stream.cancel()
    query_only = {"query": "sum(up)", "threshold": "10"}
    with (
        caplog.at_level(logging.INFO, logger="tidescaler.server"),
        pytest.raises(grpc.RpcError) as info,
    ):
        stub.IsActive(ref(query_only, name="unknown"), timeout=5)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    # Logged as unknown, not as inactive.
    [logged] = [
        r
        for r in caplog.records
        if r.getMessage() == "decision changed" and r.scaledobject == "unknown"  # type: ignore[attr-defined]
    ]
    assert logged.active is None and logged.available is False  # type: ignore[attr-defined]


def test_stream_is_active_sends_state_at_once(stub: pb_grpc.ExternalScalerStub) -> None:
    stream = stub.StreamIsActive(ref(ALWAYS), timeout=5)
    started = time.perf_counter()
    first = next(iter(stream))
    assert first.result is True
    assert time.perf_counter() - started < 1.0
    stream.cancel()


def test_a_stream_counts_once_when_it_opens_and_its_life_stays_out_of_the_latency() -> None:
    """What the README's metrics table says: counted when open, with the time to open."""
    telemetry = Telemetry()
    running = start(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None, push_interval_seconds=0.05),
        telemetry=telemetry,
    )
    sample = telemetry.registry.get_sample_value
    ok = {"method": "StreamIsActive", "code": "OK"}
    bad = {"method": "StreamIsActive", "code": "INVALID_ARGUMENT"}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            stream = stub.StreamIsActive(ref(ALWAYS), timeout=10)
            assert next(iter(stream)).result is True
            assert sample("tidescaler_grpc_requests_total", ok) == 1  # while it is open
            time.sleep(0.5)  # ten re-evaluations: none is another call
            stream.cancel()
            broken = stub.StreamIsActive(ref({"start": "not cron"}), timeout=10)
            with pytest.raises(grpc.RpcError) as failed:
                next(iter(broken))
            assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        running.stop(0)
    assert sample("tidescaler_grpc_requests_total", ok) == 1
    assert sample("tidescaler_grpc_requests_total", bad) == 1
    # The stream was open for half a second: its recorded time is the opening only.
    assert sample("tidescaler_grpc_request_duration_seconds_sum", ok) < 0.25


def test_many_push_streams_do_not_starve_unary_calls() -> None:
    # KEDA holds one StreamIsActive stream per external-push trigger, for good.
    running = start(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None, push_interval_seconds=0.5)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            streams = [
                stub.StreamIsActive(ref(ALWAYS, name=f"so-{i}"), timeout=20) for i in range(150)
            ]
            for stream in streams:
                assert next(iter(stream)).result is True
            started = time.perf_counter()
            value = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(ALWAYS)), timeout=3)
            assert value.metricValues[0].metricValue == 3
            assert time.perf_counter() - started < 1.0
            for stream in streams:
                stream.cancel()
    finally:
        running.stop(0)


def test_stream_is_active_pushes_changes() -> None:
    clock = [1_700_000_000.0]  # 2023-11-14 22:13:20 UTC
    running = start(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None, push_interval_seconds=0.05),
        clock=lambda: clock[0],
    )
    window = {
        "timezone": "UTC",
        "start": "15 22 * * *",
        "end": "30 22 * * *",
        "desiredReplicas": "2",
    }
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stream = pb_grpc.ExternalScalerStub(channel).StreamIsActive(ref(window), timeout=10)
            states = iter(stream)
            assert next(states).result is False
            clock[0] += 120  # 22:15:20, inside the window
            assert next(states).result is True
            clock[0] += 1800  # 22:45:20, after it
            assert next(states).result is False
            stream.cancel()
    finally:
        running.stop(0)


def test_health_and_reflection(server: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "externalscaler.ExternalScaler"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=3).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=3
        )
        names = {s.name for s in next(iter(answers)).list_services_response.service}
        assert {"externalscaler.ExternalScaler", "grpc.health.v1.Health"} <= names


# -- TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_channel(
    port: int, pki: Pki, cert: Path | None = None, key: Path | None = None
) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_cert.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


def test_tls_handshake(pki: Pki) -> None:
    running = start(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            tls_cert=pki.server_cert,
            tls_key=pki.server_key,
        )
    )
    try:
        with _tls_channel(running.port, pki) as channel:
            spec = pb_grpc.ExternalScalerStub(channel).GetMetricSpec(ref(ALWAYS), timeout=3)
            assert spec.metricSpecs[0].targetSizeFloat == 1.0
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as plain:
            with pytest.raises(grpc.RpcError) as info:
                pb_grpc.ExternalScalerStub(plain).GetMetricSpec(ref(ALWAYS), timeout=2)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(0)


def test_mutual_tls_requires_a_client_certificate_from_the_ca(pki: Pki) -> None:
    running = start(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            tls_cert=pki.server_cert,
            tls_key=pki.server_key,
            tls_client_ca=pki.ca_cert,
        )
    )
    try:
        with _tls_channel(running.port, pki, pki.client_cert, pki.client_key) as channel:
            response = pb_grpc.ExternalScalerStub(channel).IsActive(ref(ALWAYS), timeout=3)
            assert response.result is True
        for cert, key in ((None, None), (pki.other_client_cert, pki.other_client_key)):
            with _tls_channel(running.port, pki, cert, key) as channel:
                with pytest.raises(grpc.RpcError) as info:
                    pb_grpc.ExternalScalerStub(channel).IsActive(ref(ALWAYS), timeout=2)
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(0)


def test_clients_failing_the_tls_handshake_add_no_lines_to_json_logs(pki: Pki) -> None:
    """gRPC's core logged every failed handshake in its own format (any client can fail
    one), breaking the one JSON object per line of the logs."""
    port = _free_port()
    process = serve_process(
        port,
        f"--tls-cert={pki.server_cert}",
        f"--tls-key={pki.server_key}",
        f"--tls-client-ca={pki.ca_cert}",
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # ready: a good client is answered
            try:
                with _tls_channel(port, pki, pki.client_cert, pki.client_key) as channel:
                    pb_grpc.ExternalScalerStub(channel).IsActive(ref(ALWAYS), timeout=2)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        for _ in range(5):
            with (
                _tls_channel(port, pki, pki.other_client_cert, pki.other_client_key) as channel,
                pytest.raises(grpc.RpcError),
            ):
                pb_grpc.ExternalScalerStub(channel).IsActive(ref(ALWAYS), timeout=2)
    finally:
        lines = stopped(process).splitlines()
    assert lines and all(line.startswith("{") for line in lines), lines[:3]


def test_tls_flags_must_come_in_pairs(pki: Pki) -> None:
    with pytest.raises(ValueError, match="--tls-cert and --tls-key go together"):
        ServerConfig(tls_cert=pki.server_cert)
    with pytest.raises(ValueError, match="needs --tls-cert"):
        ServerConfig(tls_client_ca=pki.ca_cert)


# -- the process -----------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_process_env_config_json_logs_and_graceful_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = os.environ | {
        "TIDESCALER_HOST": "127.0.0.1",
        "TIDESCALER_PORT": str(port),
        "TIDESCALER_METRICS_PORT": "0",
        "TIDESCALER_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "scaler.cli", "serve"],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            stub = pb_grpc.ExternalScalerStub(channel)
            assert (
                stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(ALWAYS)), timeout=3)
                .metricValues[0]
                .metricValue
                == 3
            )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    import json

    lines = [
        json.loads(line)
        for line in (process.stderr.read() if process.stderr else "").splitlines()
        if line.startswith("{")
    ]
    messages = [line["message"] for line in lines]
    assert "serving" in messages and "shutting down" in messages and "stopped" in messages
    decision = next(line for line in lines if line["message"] == "decision changed")
    assert decision["scaledobject"] == "web" and decision["desired_replicas"] == 3
    assert decision["reason"] == "cron"


def _http(port: int, path: str) -> tuple[int, str]:
    """Status and body of a GET on loopback (an error status is an answer too)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _health(port: int) -> int:
    """The health status over a new connection (a probe's view of the listener)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = health_pb2.HealthCheckRequest(service="")
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=3).status)


def test_sigterm_drains_with_health_not_serving_while_every_call_is_still_answered() -> None:
    """The listener closed at SIGTERM: a probe or a KEDA that reconnected through a Service
    whose endpoints had not caught up yet was refused, not told NOT_SERVING."""
    port, metrics_port = _free_port(), _free_port()
    # Health must turn within the drain, with room for a loaded machine (a test process
    # and a busy neighbour took 1.5 s once).
    process = serve_process(
        port, "--drain-seconds=4", "--grace-seconds=1", f"--metrics-port={metrics_port}"
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            stub = pb_grpc.ExternalScalerStub(channel)
            request = pb.GetMetricsRequest(scaledObjectRef=ref(ALWAYS))
            assert _health(port) == health_pb2.HealthCheckResponse.SERVING
            # The plaintext probe beside /metrics (for a gRPC port that speaks TLS only).
            assert _http(metrics_port, "/healthz") == (200, "serving\n")
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            while _health(port) != health_pb2.HealthCheckResponse.NOT_SERVING:
                assert time.monotonic() - signalled < 3, "health never said NOT_SERVING"
                time.sleep(0.05)
            assert _http(metrics_port, "/healthz") == (503, "not serving\n")
            assert _http(metrics_port, "/metrics")[0] == 200  # still scraped while draining
            # Draining: the same connection and new ones are still answered in full.
            assert stub.GetMetrics(request, timeout=3).metricValues[0].metricValue == 3
            assert process.poll() is None
        assert process.wait(timeout=10) == 0
        # Gone after the drain and the grace, not before the drain.
        assert 4 <= time.monotonic() - signalled < 4 + 1 + 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = process.stderr.read() if process.stderr else ""
    assert '"message": "draining"' in log and '"drain_seconds": 4' in log


def test_sigterm_the_moment_the_port_opens_is_a_graceful_stop() -> None:
    """The signal handlers were installed after start-up's last work (a full garbage
    collection): a SIGTERM as the port opened killed the process with no drain."""
    port = _free_port()
    process = serve_process(port, "--drain-seconds=0.2", "--grace-seconds=1")
    try:
        opened = time.monotonic() + 20
        while True:  # as a Service's endpoints or a test would see it, as early as can be
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < opened, "the port never opened"
            time.sleep(0.001)
    except BaseException:
        process.kill()
        process.wait()
        raise
    log = stopped(process)  # SIGTERM, a clean exit checked (killed if it hangs)
    assert '"message": "shutting down"' in log and '"message": "stopped"' in log


def test_a_second_signal_ends_the_drain() -> None:
    port = _free_port()
    process = serve_process(port, "--drain-seconds=60", "--grace-seconds=1")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while _health(port) != health_pb2.HealthCheckResponse.NOT_SERVING:
            assert time.monotonic() - signalled < 1.5
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - signalled < 1 + 3
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_two_broken_triggers_of_one_scaledobject_are_each_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """KEDA asks each trigger of a ScaledObject in turn: with one key per ScaledObject,
    two triggers saying different things changed what it said on every call, and every
    call was logged."""
    running = start()
    first = ALWAYS | {"desiredReplicas": "three"}
    second = ALWAYS | {"timezone": "Mars/Olympus"}
    try:
        with (
            caplog.at_level(logging.WARNING, logger="tidescaler"),
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        ):
            stub = pb_grpc.ExternalScalerStub(channel)
            for _ in range(3):
                for metadata in (first, second):
                    with pytest.raises(grpc.RpcError):
                        stub.IsActive(ref(metadata), timeout=5)
    finally:
        running.stop(0)
    logged = [r for r in caplog.records if r.getMessage() == "invalid trigger metadata"]
    assert len(logged) == 2, [r.error for r in logged]  # type: ignore[attr-defined]


def test_the_decision_log_says_why_a_signal_has_nothing_to_say(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The forecast's reason (no history, Prometheus refused, ...) was left out of the
    "decision changed" line: only its status was logged."""
    running = start(
        ServerConfig(
            host="127.0.0.1", port=0, metrics_port=None, prometheus_url="http://127.0.0.1:9"
        )
    )
    policy = ALWAYS | {"query": "sum(up)", "threshold": "10", "forecast": "on"}
    try:
        with (
            caplog.at_level(logging.INFO, logger="tidescaler"),
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        ):
            assert pb_grpc.ExternalScalerStub(channel).IsActive(ref(policy), timeout=5).result
    finally:
        running.stop(0)
    [decision] = [r for r in caplog.records if r.getMessage() == "decision changed"]
    signals = decision.signals  # type: ignore[attr-defined]
    assert signals["forecast"]["status"] == "no_forecast"
    assert signals["forecast"]["detail"] == "this server runs without a forecaster"
    assert "cannot connect" in signals["query"]["detail"]
    assert "detail" not in signals["cron"]  # nothing to add: no empty field
