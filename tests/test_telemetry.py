"""Telemetry: exact metric names, labels and values after each record_*, and bounded cardinality."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
import urllib.request
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scaler import telemetry as telemetry_module
from scaler.engine import Decision, Reason, Signal, SignalReading, SignalStatus
from scaler.server import bind_problem
from scaler.telemetry import RPC_BUCKETS, RPC_LABELS, Telemetry, add_call


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(
    clock: FakeClock | None = None, **kwargs: float | int
) -> tuple[Telemetry, CollectorRegistry, FakeClock]:
    clock = clock or FakeClock()
    registry = CollectorRegistry()
    return Telemetry(registry, clock=clock, **kwargs), registry, clock  # type: ignore[arg-type]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def series(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    return [
        dict(sample.labels)
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    ]


SO = {"namespace": "shop", "scaledobject": "checkout"}

DECISION = Decision(
    desired_replicas=7,
    active=True,
    reason=Reason.FORECAST,
    signals=(
        SignalReading(Signal.CRON, SignalStatus.OK, replicas=3, value=3.0),
        SignalReading(Signal.QUERY, SignalStatus.HELD, replicas=5, value=420.0, detail="timeout"),
        SignalReading(Signal.CPU, SignalStatus.STALE, detail="no usage observed yet"),
        SignalReading(Signal.FORECAST, SignalStatus.OK, replicas=7, value=610.0),
    ),
    floor=3,
    ceiling=20,
    forecast_median=480.0,
    forecast_upper=610.0,
)


def test_record_decision_exports_every_per_scaledobject_gauge() -> None:
    telemetry, registry, clock = make()
    telemetry.record_decision("shop", "checkout", DECISION, 420.0, clock.now)

    assert value(registry, "tidescaler_desired_replicas", **SO) == 7
    assert value(registry, "tidescaler_active", **SO) == 1
    assert value(registry, "tidescaler_available", **SO) == 1
    assert value(registry, "tidescaler_floor_replicas", **SO) == 3
    assert value(registry, "tidescaler_ceiling_replicas", **SO) == 20
    assert value(registry, "tidescaler_demand", **SO) == 420.0
    assert value(registry, "tidescaler_forecast_median", **SO) == 480.0
    assert value(registry, "tidescaler_forecast_upper", **SO) == 610.0
    assert value(registry, "tidescaler_last_decision_timestamp_seconds", **SO) == clock.now
    assert value(registry, "tidescaler_scaledobjects") == 1


def test_signal_replicas_has_one_series_per_signal_with_a_recommendation() -> None:
    telemetry, registry, clock = make()
    telemetry.record_decision("shop", "checkout", DECISION, 420.0, clock.now)

    assert value(registry, "tidescaler_signal_replicas", signal="cron", **SO) == 3
    assert value(registry, "tidescaler_signal_replicas", signal="query", **SO) == 5
    assert value(registry, "tidescaler_signal_replicas", signal="forecast", **SO) == 7
    # cpu has no recommendation (stale): no series rather than a misleading 0
    assert value(registry, "tidescaler_signal_replicas", signal="cpu", **SO) is None


def test_signal_status_marks_each_signals_status() -> None:
    telemetry, registry, clock = make()
    telemetry.record_decision("shop", "checkout", DECISION, 420.0, clock.now)

    assert sorted(
        (labels["signal"], labels["status"])
        for labels in series(registry, "tidescaler_signal_status")
    ) == [("cpu", "stale"), ("cron", "ok"), ("forecast", "ok"), ("query", "held")]


def test_decision_reason_exports_only_the_current_reason() -> None:
    telemetry, registry, clock = make()
    telemetry.record_decision("shop", "checkout", DECISION, 420.0, clock.now)

    assert series(registry, "tidescaler_decision_reason") == [{**SO, "reason": "forecast"}]
    assert value(registry, "tidescaler_decision_reason", reason="forecast", **SO) == 1


def test_the_latest_decision_replaces_the_previous_one() -> None:
    telemetry, registry, clock = make()
    telemetry.record_decision("shop", "checkout", DECISION, 420.0, clock.now)
    later = Decision(
        desired_replicas=0,
        active=False,
        reason=Reason.UNAVAILABLE,
        signals=(SignalReading(Signal.QUERY, SignalStatus.STALE, detail="timeout"),),
        available=False,
        active_known=False,
    )
    clock.now += 30
    telemetry.record_decision("shop", "checkout", later, None, clock.now)

    # No count went to KEDA and the activity is unknown: gaps, not zeros that would read
    # as a scale to zero on the dashboard.
    assert value(registry, "tidescaler_desired_replicas", **SO) is None
    assert value(registry, "tidescaler_active", **SO) is None
    assert value(registry, "tidescaler_available", **SO) == 0
    assert value(registry, "tidescaler_decision_reason", reason="unavailable", **SO) == 1
    assert value(registry, "tidescaler_decision_reason", reason="forecast", **SO) is None
    # gone with the decision that carried them
    assert value(registry, "tidescaler_demand", **SO) is None
    assert value(registry, "tidescaler_forecast_upper", **SO) is None
    assert value(registry, "tidescaler_ceiling_replicas", **SO) is None
    assert series(registry, "tidescaler_signal_replicas") == []
    # A window keeps it active although the count is unavailable: IsActive answered.
    clock.now += 30
    telemetry.record_decision(
        "shop", "checkout", replace(later, active=True, active_known=True), None, clock.now
    )
    assert value(registry, "tidescaler_active", **SO) == 1
    assert value(registry, "tidescaler_desired_replicas", **SO) is None


def test_forecast_error_gauges_are_ratios() -> None:
    telemetry, registry, _ = make()
    telemetry.record_forecast_error("shop", "checkout", smape=0.12, under_rate=0.4, coverage=0.93)

    assert value(registry, "tidescaler_forecast_smape_ratio", **SO) == 0.12
    assert value(registry, "tidescaler_forecast_under_prediction_ratio", **SO) == 0.4
    assert value(registry, "tidescaler_forecast_band_coverage_ratio", **SO) == 0.93


def test_forecast_coverage_is_optional() -> None:
    telemetry, registry, _ = make()
    telemetry.record_forecast_error("shop", "checkout", smape=0.12, under_rate=0.4)
    assert value(registry, "tidescaler_forecast_band_coverage_ratio", **SO) is None


def test_backend_errors_are_counted_by_kind() -> None:
    telemetry, registry, _ = make()
    for kind in ("timeout", "timeout", "http_status", "multiple_series"):
        telemetry.record_backend_error("shop", "checkout", kind)

    assert value(registry, "tidescaler_backend_errors_total", kind="timeout", **SO) == 2
    assert value(registry, "tidescaler_backend_errors_total", kind="http_status", **SO) == 1
    assert value(registry, "tidescaler_backend_errors_total", kind="multiple_series", **SO) == 1
    assert value(registry, "tidescaler_backend_errors_total", kind="connection", **SO) is None


def test_rpc_requests_and_latency_by_method_and_code() -> None:
    telemetry, registry, _ = make()
    telemetry.record_rpc("GetMetrics", "OK", 0.003)
    telemetry.record_rpc("GetMetrics", "OK", 0.2)
    telemetry.record_rpc("GetMetricSpec", "INVALID_ARGUMENT", 0.0002)

    ok = {"method": "GetMetrics", "code": "OK"}
    bad = {"method": "GetMetricSpec", "code": "INVALID_ARGUMENT"}
    assert value(registry, "tidescaler_grpc_requests_total", **ok) == 2
    assert value(registry, "tidescaler_grpc_requests_total", **bad) == 1
    assert value(registry, "tidescaler_grpc_request_duration_seconds_count", **ok) == 2
    assert value(registry, "tidescaler_grpc_request_duration_seconds_sum", **ok) == pytest.approx(
        0.203
    )
    assert value(registry, "tidescaler_grpc_request_duration_seconds_bucket", le="0.005", **ok) == 1
    assert value(registry, "tidescaler_grpc_request_duration_seconds_bucket", le="0.25", **ok) == 2
    assert (
        value(registry, "tidescaler_grpc_request_duration_seconds_bucket", le="0.0005", **bad) == 1
    )


# Durations on and around every bucket bound, where `le` (at or below) decides.
_BOUNDARY_SECONDS = [b + d for b in RPC_BUCKETS for d in (-1e-9, 0.0, 1e-9)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["GetMetrics", "IsActive", "GetMetricSpec"]),
            st.sampled_from(["OK", "INVALID_ARGUMENT", "UNAVAILABLE"]),
            st.one_of(
                st.sampled_from(_BOUNDARY_SECONDS),
                st.floats(min_value=0.0, max_value=30.0, allow_nan=False),
            ),
        ),
        max_size=40,
    )
)
def test_rpc_series_are_prometheus_clients_own(calls: list[tuple[str, str, float]]) -> None:
    """The plain counts export exactly what prometheus_client's Counter and Histogram
    with the same names, labels and buckets export for the same calls, whether counted
    through `record_rpc` or `add_call`."""
    telemetry, registry, _ = make(clock=FakeClock(time.time()))
    reference = CollectorRegistry()
    names = {"namespace": "tidescaler", "subsystem": "grpc", "registry": reference}
    counter = Counter(
        "requests", "gRPC requests handled, by method and status code.", RPC_LABELS, **names
    )
    histogram = Histogram(
        "request_duration_seconds",
        "gRPC request handling time, by method and status code.",
        RPC_LABELS,
        buckets=RPC_BUCKETS,
        **names,
    )
    for i, (method, code, seconds) in enumerate(calls):
        if i % 2:  # as the server counts its OK calls: inline, on the counts themselves
            add_call(telemetry.rpc_counts(method, code), seconds)
        else:
            telemetry.record_rpc(method, code, seconds)
        counter.labels(method, code).inc()
        histogram.labels(method, code).observe(seconds)

    def grpc_lines(registry: CollectorRegistry) -> list[str]:
        # Creation times differ by when each was made; the rest must match exactly.
        return [
            line.rsplit(" ", 1)[0] if "_created" in line else line
            for line in generate_latest(registry).decode().splitlines()
            if "tidescaler_grpc" in line
        ]

    assert grpc_lines(registry) == grpc_lines(reference)


def test_rpc_counts_lose_nothing_under_concurrent_callers() -> None:
    telemetry, registry, _ = make()
    per_thread, threads = 20_000, 4

    def calls() -> None:
        for _ in range(per_thread):
            telemetry.record_rpc("GetMetrics", "OK", 0.001)

    workers = [threading.Thread(target=calls) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ok = {"method": "GetMetrics", "code": "OK"}
    assert value(registry, "tidescaler_grpc_requests_total", **ok) == per_thread * threads
    assert value(registry, "tidescaler_grpc_request_duration_seconds_sum", **ok) == pytest.approx(
        0.001 * per_thread * threads
    )


def test_idle_scaledobjects_stop_being_exported() -> None:
    telemetry, registry, clock = make(idle_seconds=600)
    telemetry.record_decision("shop", "checkout", DECISION, 1.0, clock.now)
    telemetry.record_backend_error("shop", "checkout", "timeout")
    telemetry.record_forecast_error("shop", "checkout", 0.1, 0.0)
    clock.now += 300
    telemetry.record_decision("shop", "cart", DECISION, 1.0, clock.now)

    clock.now += 300  # checkout idle exactly 600 s: still exported
    assert value(registry, "tidescaler_desired_replicas", **SO) == 7

    clock.now += 1
    assert value(registry, "tidescaler_desired_replicas", **SO) is None
    assert value(registry, "tidescaler_backend_errors_total", kind="timeout", **SO) is None
    assert value(registry, "tidescaler_forecast_smape_ratio", **SO) is None
    assert {
        labels["scaledobject"] for labels in series(registry, "tidescaler_decision_reason")
    } == {"cart"}
    assert value(registry, "tidescaler_scaledobjects") == 1
    assert telemetry.tracked() == 1


def test_a_scaledobject_seen_again_after_pruning_is_exported_again() -> None:
    telemetry, registry, clock = make(idle_seconds=60)
    telemetry.record_decision("shop", "checkout", DECISION, 1.0, clock.now)
    clock.now += 120
    assert telemetry.prune() == 1
    telemetry.record_decision("shop", "checkout", DECISION, 2.0, clock.now)
    assert value(registry, "tidescaler_demand", **SO) == 2.0


def test_cardinality_is_bounded_by_max_scaledobjects_evicting_the_longest_unseen() -> None:
    telemetry, registry, clock = make(idle_seconds=3600, max_scaledobjects=100)
    for i in range(250):
        clock.now += 1
        telemetry.record_decision("ns", f"so-{i}", DECISION, 1.0, clock.now)

    assert telemetry.tracked() == 100
    names = {labels["scaledobject"] for labels in series(registry, "tidescaler_desired_replicas")}
    assert names == {f"so-{i}" for i in range(150, 250)}
    assert len(series(registry, "tidescaler_decision_reason")) == 100


def test_churning_names_never_grow_the_exposition_beyond_the_bound() -> None:
    telemetry, registry, clock = make(idle_seconds=600, max_scaledobjects=1000)
    for i in range(5000):
        clock.now += 0.5
        telemetry.record_decision("ns", f"job-{i}", DECISION, 1.0, clock.now)
        telemetry.record_backend_error("ns", f"job-{i}", "timeout")
    # 600 s idle at one name per 0.5 s: at most 1201 would be live; the cap is lower
    assert telemetry.tracked() == 1000
    clock.now += 601
    assert len(series(registry, "tidescaler_desired_replicas")) == 0
    assert len(series(registry, "tidescaler_backend_errors_total")) == 0


def test_two_telemetries_on_fresh_registries_do_not_share_state() -> None:
    first, first_registry, clock = make()
    _, second_registry, _ = make(clock)
    first.record_decision("shop", "checkout", DECISION, 1.0, clock.now)
    first.record_rpc("IsActive", "OK", 0.001)
    assert value(second_registry, "tidescaler_desired_replicas", **SO) is None
    assert (
        value(second_registry, "tidescaler_grpc_requests_total", method="IsActive", code="OK")
        is None
    )
    assert value(first_registry, "tidescaler_desired_replicas", **SO) == 7


def test_names_follow_prometheus_conventions() -> None:
    telemetry, registry, clock = make()
    telemetry.record_decision("shop", "checkout", DECISION, 1.0, clock.now)
    telemetry.record_forecast_error("shop", "checkout", 0.1, 0.0)
    telemetry.record_backend_error("shop", "checkout", "timeout")
    telemetry.record_rpc("GetMetrics", "OK", 0.001)
    for family in registry.collect():
        assert family.name.startswith("tidescaler_"), family.name
        assert family.documentation, family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        if family.name not in {"tidescaler_scaledobjects"} and not family.name.startswith(
            "tidescaler_grpc_"
        ):
            for sample in family.samples:
                assert {"namespace", "scaledobject"} <= set(sample.labels), sample


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="idle_seconds"):
        Telemetry(CollectorRegistry(), idle_seconds=0)
    with pytest.raises(ValueError, match="max_scaledobjects"):
        Telemetry(CollectorRegistry(), max_scaledobjects=0)


def test_recording_is_cheap_on_the_request_path() -> None:
    # A loose bound (the budget is ~2 µs): catches accidental formatting or
    # per-call allocation of label sets, not scheduler noise.
    telemetry, _, clock = make()
    telemetry.record_decision("shop", "checkout", DECISION, 1.0, clock.now)
    telemetry.record_rpc("GetMetrics", "OK", 0.001)
    n = 20_000
    started = time.perf_counter()
    for _ in range(n):
        telemetry.record_decision("shop", "checkout", DECISION, 1.0, clock.now)
    per_decision = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for _ in range(n):
        telemetry.record_rpc("GetMetrics", "OK", 0.001)
    per_rpc = (time.perf_counter() - started) / n
    assert per_decision < 10e-6, per_decision
    assert per_rpc < 20e-6, per_rpc


def test_metrics_are_served_over_http() -> None:
    telemetry, _, clock = make()
    telemetry.record_decision("shop", "checkout", DECISION, 420.0, clock.now)
    server, thread = telemetry.start_http_server(0, addr="127.0.0.1")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["tidescaler_desired_replicas"].samples[0].value == 7
    assert families["tidescaler_demand"].samples[0].labels == SO


def test_idle_connections_to_metrics_hold_a_bounded_number_of_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each connection holds a thread until its request is read: clients that connect and
    send nothing held one each, for as long as they liked."""
    monkeypatch.setattr(telemetry_module._MetricsRequestHandler, "timeout", 1.0)
    telemetry, _, clock = make()
    telemetry.record_decision("shop", "checkout", DECISION, 420.0, clock.now)
    server, thread = telemetry.start_http_server(0, addr="127.0.0.1")
    port = server.server_address[1]
    before = threading.active_count()
    idle = []
    try:
        for _ in range(3 * telemetry_module.METRICS_CONNECTIONS):
            connection = socket.create_connection(("127.0.0.1", port))
            connection.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
            idle.append(connection)
        time.sleep(0.3)
        assert threading.active_count() - before <= telemetry_module.METRICS_CONNECTIONS
        # An idle connection is closed after the read timeout, and its slot freed.
        idle[0].settimeout(5.0)
        assert idle[0].recv(1024) == b""
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    assert b"tidescaler_desired_replicas" in r.read()
                break
            except OSError:
                assert time.monotonic() < deadline, "no slot came free"
                time.sleep(0.2)
    finally:
        for connection in idle:
            connection.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_client_dripping_its_headers_is_cut_at_the_request_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The read timeout is per read: a header line every 0.2 s never trips a 5 s one, and
    32 such clients held every slot of /metrics for as long as they kept dripping."""
    monkeypatch.setattr(telemetry_module._MetricsRequestHandler, "timeout", 5.0)
    monkeypatch.setattr(telemetry_module._MetricsRequestHandler, "read_deadline", 1.0)
    telemetry, _, _ = make()
    server, thread = telemetry.start_http_server(0, addr="127.0.0.1")
    port = server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port)) as drip:
            drip.sendall(b"GET /metrics HTTP/1.1\r\n")
            started = time.monotonic()
            cut = False
            while time.monotonic() - started < 6.0:
                try:
                    drip.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    cut = True
                    break
                drip.settimeout(0.2)
                try:
                    if drip.recv(1024) == b"":
                        cut = True
                        break
                except TimeoutError:
                    pass
            assert cut, "the dripping client was never cut"
            assert time.monotonic() - started < 3.0
        # A whole request within the deadline is answered as before.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_metrics_listen_on_ipv6_and_ipv4_with_the_default_host() -> None:
    """`serve` binds /metrics to --host, "[::]" by default: an IPv6-only cluster's scraper
    reaches it, and so does an IPv4 one (dual stack). It was 0.0.0.0, IPv4 only."""
    telemetry, _, clock = make()
    telemetry.record_decision("shop", "checkout", DECISION, 420.0, clock.now)
    server, thread = telemetry.start_http_server(0, addr="[::]")
    port = server.server_address[1]
    try:
        for url in (f"http://[::1]:{port}/metrics", f"http://127.0.0.1:{port}/metrics"):
            with urllib.request.urlopen(url, timeout=5) as response:
                assert b"tidescaler_desired_replicas" in response.read(), url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_on_a_host_without_ipv6_the_default_host_serves_metrics_on_ipv4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Such a host refuses IPv6 sockets: gRPC falls back to IPv4 for "[::]", and so must
    /metrics and the start-up port check (both raised EAFNOSUPPORT: a traceback)."""
    real_socket = socket.socket

    def ipv4_only(family: int = socket.AF_INET, *args: Any, **kwargs: Any) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
        return real_socket(family, *args, **kwargs)

    monkeypatch.setattr(socket, "socket", ipv4_only)
    assert bind_problem("[::]", 0) is None
    telemetry, _, clock = make()
    telemetry.record_decision("shop", "checkout", DECISION, 420.0, clock.now)
    server, thread = telemetry.start_http_server(0, addr="[::]")
    port = server.server_address[1]
    monkeypatch.setattr(socket, "socket", real_socket)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"tidescaler_desired_replicas" in response.read()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_without_a_registry_a_fresh_one_is_made_never_the_global_default() -> None:
    from prometheus_client import REGISTRY

    first, second = Telemetry(), Telemetry()
    assert first.registry is not REGISTRY
    assert first.registry is not second.registry
    first.record_rpc("IsActive", "OK", 0.001)
    assert (
        REGISTRY.get_sample_value(
            "tidescaler_grpc_requests_total", {"method": "IsActive", "code": "OK"}
        )
        is None
    )
