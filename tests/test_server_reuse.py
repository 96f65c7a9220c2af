"""A decision is reused only while nothing it was made from can have changed.

KEDA asks GetMetrics and then IsActive for the same ScaledObject on every poll; the
server answers the second from the first's decision. These tests hold the edges of
that reuse over real gRPC, with the server's clock in the test's hands: a window
opening, the reuse's time limit, a clock stepping back. (That the bound itself is
sound for every policy is property-tested in test_engine_holds.py.)
"""

from __future__ import annotations

import logging
import math
import time

import grpc
import pytest
from prometheus_server import Exporter, PrometheusServer

from scaler.observe import Observer
from scaler.policy import parse_policy
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import REUSE_SECONDS, ScalerService, ServerConfig, start_server
from scaler.sources.prometheus import PrometheusSource

OPENS = 1_700_001_000.0  # 2023-11-14 22:30:00 UTC
WINDOW = {
    "timezone": "UTC",
    "start": "30 22 * * *",
    "end": "45 22 * * *",
    "desiredReplicas": "4",
    "minReplicas": "1",
}
REF = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=WINDOW)
CONFIG = ServerConfig(host="127.0.0.1", port=0, metrics_port=None)


def test_a_window_opening_within_the_reuse_time_counts_at_once() -> None:
    clock = [OPENS - 0.4]
    running = start_server(CONFIG, clock=lambda: clock[0])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            request = pb.GetMetricsRequest(scaledObjectRef=REF, metricName="tidescaler")

            def replicas() -> int:
                return int(stub.GetMetrics(request, timeout=5).metricValues[0].metricValue)

            assert replicas() == 1
            assert stub.IsActive(REF, timeout=5).result is False
            clock[0] = OPENS + 0.05  # 0.45 s later: within the reuse time, past the edge
            assert replicas() == 4
            assert stub.IsActive(REF, timeout=5).result is True
            clock[0] = OPENS - 0.2  # the clock stepped back (NTP): decided afresh
            assert replicas() == 1
    finally:
        running.stop(0)


def test_a_reused_answer_names_the_metric_each_request_asks_for() -> None:
    """GetMetrics keeps its latest response beside the decision; a repeat that asks for
    another metric name (or none: the policy's) gets that name, not the kept one."""
    clock = [OPENS + 60]  # inside the window: 4 replicas
    running = start_server(CONFIG, clock=lambda: clock[0])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)

            def answer(name: str) -> tuple[str, int]:
                request = pb.GetMetricsRequest(scaledObjectRef=REF, metricName=name)
                value = stub.GetMetrics(request, timeout=5).metricValues[0]
                return value.metricName, value.metricValue

            for name in ("tidescaler", "tidescaler", "s0-other", "", "x" * 5000, "tidescaler"):
                assert answer(name) == (name or "tidescaler", 4)
            clock[0] = OPENS + 20 * 60  # the window closed: a new decision, a new answer
            assert answer("tidescaler") == ("tidescaler", 1)
            assert answer("tidescaler") == ("tidescaler", 1)
    finally:
        running.stop(0)


def test_a_repeat_is_the_same_decision_until_the_reuse_time_ends() -> None:
    clock = [OPENS + 60]
    service = ScalerService(CONFIG, Observer(PrometheusSource()), clock=lambda: clock[0])
    first = service.decision_for(REF)
    clock[0] += REUSE_SECONDS / 2
    assert service.decision_for(REF) is first  # KEDA's IsActive after its GetMetrics
    clock[0] += REUSE_SECONDS
    again = service.decision_for(REF)
    # Made afresh (so its telemetry is at most the reuse time old), and the same answer.
    assert again is not first
    assert again == first
    # Another ScaledObject with the same metadata has a decision of its own.
    other = pb.ScaledObjectRef(name="cart", namespace="shop", scalerMetadata=WINDOW)
    assert service.decision_for(other) is not again


def test_each_trigger_logs_its_own_decision_changes(caplog: pytest.LogCaptureFixture) -> None:
    """A ScaledObject may carry two tidescaler triggers (same name, other metadata): each
    logs "decision changed" when its own decision changes, not whenever KEDA asks the
    other one in between."""
    clock = [OPENS + 60]  # inside the window: 4 replicas
    service = ScalerService(CONFIG, Observer(PrometheusSource()), clock=lambda: clock[0])
    smaller = pb.ScaledObjectRef(
        name="web", namespace="shop", scalerMetadata=WINDOW | {"desiredReplicas": "2"}
    )

    def logged() -> list[int]:
        return [
            r.desired_replicas  # type: ignore[attr-defined]
            for r in caplog.records
            if r.getMessage() == "decision changed"
        ]

    with caplog.at_level(logging.INFO, logger="tidescaler.server"):
        for _ in range(3):  # past the reuse time each round: decided afresh every call
            assert service.decision_for(REF).desired_replicas == 4
            assert service.decision_for(smaller).desired_replicas == 2
            clock[0] += 2 * REUSE_SECONDS
        assert logged() == [4, 2]
        clock[0] = OPENS + 20 * 60  # the window has closed: both change, once each
        for _ in range(2):
            assert service.decision_for(REF).desired_replicas == 1
            assert service.decision_for(smaller).desired_replicas == 1
            clock[0] += 2 * REUSE_SECONDS
        assert logged() == [4, 2, 1, 1]


@pytest.mark.prometheus
def test_a_decision_is_reused_no_longer_than_the_shared_answer_it_was_made_from(
    prometheus: PrometheusServer, exporter: Exporter
) -> None:
    query = 'sum(reuse_requests_per_second{service="cart"})'
    exporter.set("reuse_requests_per_second", 250.0, service="cart")
    prometheus.wait_for_value(query, 250.0)
    clock = [time.time()]
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        prometheus_url=prometheus.url,
        coalesce_seconds=0.5,
    )
    source = PrometheusSource(coalesce_seconds=0.5, clock=lambda: clock[0])
    service = ScalerService(config, Observer(source), clock=lambda: clock[0])
    cart = pb.ScaledObjectRef(
        name="cart", namespace="shop", scalerMetadata={"query": query, "threshold": "100"}
    )
    try:
        # The first call waits for the answer: not known to hold, as it was not at hand.
        assert service.decision_for(cart).desired_replicas == 3
        clock[0] += 0.1
        first = service.decision_for(cart)
        assert first.desired_replicas == 3
        clock[0] += 0.2
        assert service.decision_for(cart) is first  # the same shared answer
        exporter.set("reuse_requests_per_second", 30.0, service="cart")
        prometheus.wait_for_value(query, 30.0)
        # The answer is 0.6 s old, past the coalescing interval (a refresh may be on its
        # way): decided afresh, within the reuse time.
        clock[0] += 0.3
        again = service.decision_for(cart)
        assert again is not first
        # The refresh lands in the background; the decision follows it at once.
        deadline = time.monotonic() + 10
        while again.desired_replicas != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
            clock[0] += 0.01
            again = service.decision_for(cart)
        assert again.desired_replicas == 1
    finally:
        source.close()


@pytest.mark.parametrize(
    ("metadata", "address", "expected"),
    [
        (WINDOW, None, math.inf),  # nothing to read
        # A pod's usage, or a refit, can land at any moment: never known to hold.
        ({"cpuUtilization": "60", "podSelector": 'namespace="shop"'}, "http://p:9090", -math.inf),
        ({"query": "q", "threshold": "1", "forecast": "observe"}, "http://p:9090", -math.inf),
        ({"query": "q", "threshold": "1"}, "http://p:9090", -math.inf),  # no answer at hand
    ],
)
def test_what_observations_are_known_to_hold(
    metadata: dict[str, str], address: str | None, expected: float
) -> None:
    source = PrometheusSource()
    try:
        assert Observer(source).unchanged_for(parse_policy(metadata), address) == expected
    finally:
        source.close()
