"""Events on the ScaledObject: what is said, how often (client-go's rules), and never in the way.

The Kubernetes API is the stand-in of tests/kube_api_stand_in.py (no API server
can run here), driven through the real `kubernetes` client; decisions come from
the real engine; the RPC tests run the real gRPC server over loopback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kube_api_stand_in import (
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    KubeApiStandIn,
    forbidden,
    scaled_object,
)

from scaler.engine import Decision, Observations, Sample, decide
from scaler.forecast.types import Forecast
from scaler.kube.api import KubeApi, load_api_client
from scaler.kube.correlator import AGGREGATE_PREFIX, Correlator, EventSpec, ObjectRef
from scaler.kube.events import EventRecorder, Narrator
from scaler.kube.startup import parse_time
from scaler.observe import Observer
from scaler.policy import parse_policy
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import RequestError, ScalerService, ServerConfig, start_server
from scaler.sources.prometheus import PrometheusSource

NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z
KEY = ("shop", "web")
CLOSED_PORT = "http://127.0.0.1:9"  # discard: nothing listens, connections are refused
ROOT = Path(__file__).resolve().parents[1]
UID = "5b0c8e52-4f1d-4d8e-9a53-8c3c2f1e7a10"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def stand_in() -> Iterator[KubeApiStandIn]:
    server = KubeApiStandIn().start()
    server.scaledobjects[KEY] = scaled_object(*KEY, [], uid=UID)
    yield server
    server.close()


@pytest.fixture
def api(stand_in: KubeApiStandIn, tmp_path: Path) -> Iterator[KubeApi]:
    client = KubeApi(load_api_client(str(stand_in.kubeconfig(tmp_path))), timeout_seconds=2.0)
    yield client
    client.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorder(api: KubeApi, clock: Clock) -> Iterator[EventRecorder]:
    events = EventRecorder(api, clock=clock, instance="tidescaler-0")
    yield events
    events.close()


class Ref:
    namespace, name = KEY


# -- the correlator: client-go's rules, on an injected clock --


def test_identical_events_keep_one_name_and_count_up() -> None:
    clock = Clock()
    correlator = Correlator(clock)
    ref = ObjectRef(*KEY, UID)
    spec = EventSpec("Warning", "BackendFailing", "query: connection refused")
    first = correlator.correlate(ref, spec)
    clock.t += 30
    second = correlator.correlate(ref, spec)
    assert (first.count, second.count) == (1, 2)
    assert second.name == first.name and second.first_timestamp == first.first_timestamp
    assert second.is_update and not first.is_update


def test_spam_filter_allows_a_burst_of_25_then_one_event_per_five_minutes() -> None:
    clock = Clock()
    correlator = Correlator(clock)
    ref = ObjectRef(*KEY, UID)
    results = [correlator.correlate(ref, EventSpec("Normal", f"Reason{i}", "m")) for i in range(30)]
    assert [r.skip for r in results] == [False] * 25 + [True] * 5
    clock.t += 299
    assert correlator.correlate(ref, EventSpec("Normal", "Late", "m")).skip
    clock.t += 2  # 301 s after the burst: one token back, and only one
    assert not correlator.correlate(ref, EventSpec("Normal", "Later", "m")).skip
    assert correlator.correlate(ref, EventSpec("Normal", "Latest", "m")).skip
    # The bucket is per object: another ScaledObject still has its burst.
    other = ObjectRef("shop", "checkout", "uid-2")
    assert not correlator.correlate(other, EventSpec("Normal", "Reason0", "m")).skip


def test_similar_events_are_combined_from_the_tenth_distinct_message() -> None:
    clock = Clock()
    correlator = Correlator(clock)
    ref = ObjectRef(*KEY, UID)
    results = []
    for i in range(12):
        clock.t += 1
        results.append(correlator.correlate(ref, EventSpec("Normal", "PreScaling", f"to {i}")))
    assert [r.aggregated for r in results] == [False] * 9 + [True] * 3
    combined = results[9:]
    assert combined[0].message == AGGREGATE_PREFIX + "to 9"
    assert [r.count for r in combined] == [1, 2, 3]  # one combined Event, counting up
    assert len({r.name for r in combined}) == 1
    # After 10 quiet minutes the group starts afresh.
    clock.t += 601
    fresh = correlator.correlate(ref, EventSpec("Normal", "PreScaling", "to 20"))
    assert not fresh.aggregated and fresh.message == "to 20"


# -- the recorder against the stand-in API, through the real client --


def test_event_is_created_on_the_scaledobject_with_its_uid(
    recorder: EventRecorder, stand_in: KubeApiStandIn
) -> None:
    recorder.record(*KEY, EventSpec("Warning", "PolicyInvalid", "threshold is required"))
    [event] = stand_in.events_about(*KEY)
    assert event["involvedObject"] == {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "name": "web",
        "namespace": "shop",
        "uid": UID,
    }
    assert (event["type"], event["reason"], event["message"]) == (
        "Warning",
        "PolicyInvalid",
        "threshold is required",
    )
    assert event["count"] == 1
    # The client sends RFC 3339 times (it renders UTC as +00:00, which the API server accepts).
    assert parse_time(event["firstTimestamp"]) == parse_time(event["lastTimestamp"]) == NOW
    assert event["source"] == {"component": "tidescaler"}
    assert (event["reportingComponent"], event["reportingInstance"]) == (
        "tidescaler",
        "tidescaler-0",
    )
    assert event["metadata"]["name"].startswith("web.")


def test_repeated_event_bumps_count_and_last_timestamp_with_a_strategic_merge_patch(
    recorder: EventRecorder, stand_in: KubeApiStandIn, clock: Clock
) -> None:
    spec = EventSpec("Warning", "BackendFailing", "query: connection refused")
    for _ in range(3):
        recorder.record(*KEY, spec)
        clock.t += 30
    [event] = stand_in.events_about(*KEY)
    assert event["count"] == 3
    assert parse_time(event["firstTimestamp"]) == NOW
    assert event["lastTimestamp"] == "2026-09-21T14:14:20Z"
    patches = stand_in.requests_of("PATCH", "/api/v1/namespaces/shop/events/")
    assert len(patches) == 2 and len(stand_in.requests_of("POST")) == 1
    assert patches[0].content_type == "application/strategic-merge-patch+json"
    assert patches[-1].body == {
        "count": 3,
        "lastTimestamp": "2026-09-21T14:14:20Z",
        "message": "query: connection refused",
    }
    assert (recorder.counts.written, recorder.counts.updated) == (1, 2)


def test_expired_event_is_created_anew_when_the_patch_finds_it_gone(
    recorder: EventRecorder, stand_in: KubeApiStandIn
) -> None:
    spec = EventSpec("Normal", "CronWindowOpened", "cron window opened: floor 10 replicas")
    recorder.record(*KEY, spec)
    stand_in.events.clear()  # the API server's event TTL (1 h by default) removed it
    recorder.record(*KEY, spec)
    [event] = stand_in.events_about(*KEY)
    assert event["count"] == 2
    assert [r.method for r in stand_in.requests if "/events" in r.path] == ["POST", "PATCH", "POST"]


def test_two_triggers_of_one_scaledobject_tell_two_stories(
    recorder: EventRecorder, stand_in: KubeApiStandIn, clock: Clock
) -> None:
    """KEDA allows several triggers; one story per ScaledObject made a cron trigger that
    works and a query trigger whose Prometheus is down flap Unavailable/Available on every
    poll (false messages, and the burst allowance spent on noise)."""
    cron = {"timezone": "UTC", "start": "0 0 1 1 *", "end": "* * * * *", "desiredReplicas": "2"}
    down = {"query": "sum(rate(http_requests_total[1m]))", "threshold": "50"}
    service = ScalerService(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None, prometheus_url=CLOSED_PORT),
        Observer(PrometheusSource()),
        events=recorder,
        clock=clock,
    )
    for _ in range(12):  # six minutes of KEDA polling both triggers
        for metadata in (cron, down):
            with contextlib.suppress(RequestError):
                service.decision_for(
                    pb.ScaledObjectRef(namespace=KEY[0], name=KEY[1], scalerMetadata=metadata)
                )
        clock.t += 30.0
    assert recorder.flush(30)
    events = stand_in.events_about(*KEY)
    # The query trigger's story, told once: no "usable again" from the cron trigger.
    assert sorted(e["reason"] for e in events) == ["BackendFailing", "DecisionUnavailable"]
    assert [e["count"] for e in events] == [1, 1]


def test_a_throttled_api_writes_no_event_about_an_object_it_did_not_confirm(
    recorder: EventRecorder, stand_in: KubeApiStandIn, clock: Clock
) -> None:
    """A 429 on reading the ScaledObject wrote the Event anyway (without its uid), also
    for names that do not exist, and cached the missing uid for ten minutes."""
    stand_in.fail("GET", r"/scaledobjects/", lambda _path: TOO_MANY_REQUESTS, times=2)
    recorder.record(*KEY, EventSpec("Warning", "PolicyInvalid", "while throttled"))
    recorder.record("other-team", "made-up", EventSpec("Warning", "PolicyInvalid", "spoof"))
    assert stand_in.events == {} and recorder.counts.failed == 2
    clock.t += 60.0  # the API answers again
    recorder.record(*KEY, EventSpec("Warning", "PolicyInvalid", "later"))
    recorder.record("other-team", "made-up", EventSpec("Warning", "PolicyInvalid", "spoof"))
    (event,) = stand_in.events_about(*KEY)
    assert event["involvedObject"]["uid"] == UID and event["message"] == "later"
    assert stand_in.events_about("other-team", "made-up") == []
    assert recorder.counts.no_object == 1


@pytest.mark.parametrize(
    ("status", "counted_as_failed"),
    [
        pytest.param(UNAUTHORIZED, True, id="401-unauthorized"),
        pytest.param(forbidden("create", "events", "", "shop"), True, id="403-forbidden"),
        pytest.param(TOO_MANY_REQUESTS, True, id="429-too-many-requests"),
    ],
)
def test_refused_writes_are_counted_and_logged_once(
    recorder: EventRecorder,
    stand_in: KubeApiStandIn,
    caplog: pytest.LogCaptureFixture,
    status: dict[str, object],
    counted_as_failed: bool,
) -> None:
    stand_in.fail("POST", r"/events$", lambda _path: status)
    with caplog.at_level(logging.WARNING, logger="tidescaler.kube.events"):
        for i in range(5):
            recorder.record(*KEY, EventSpec("Warning", "PolicyInvalid", f"problem {i}"))
    assert recorder.counts.failed == 5
    assert recorder.counts.written == 0
    warnings = [r for r in caplog.records if r.name == "tidescaler.kube.events"]
    assert len(warnings) == 1
    assert str(status["message"]) in warnings[0].__dict__["error"]


def test_name_taken_409_is_given_up_like_client_go(
    recorder: EventRecorder, stand_in: KubeApiStandIn
) -> None:
    stand_in.fail(
        "POST",
        r"/events$",
        lambda path: {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'events "web.1" already exists',
            "reason": "AlreadyExists",
            "details": {"name": "web.1", "kind": "events"},
            "code": 409,
        },
        times=1,
    )
    spec = EventSpec("Normal", "PreScaling", "pre-scaling to 12 replicas")
    recorder.record(*KEY, spec)
    assert recorder.counts.failed == 0 and not stand_in.events
    recorder.record(*KEY, spec)  # the next occurrence starts a new Event
    [event] = stand_in.events_about(*KEY)
    assert event["count"] == 1


def test_event_without_read_access_to_scaledobjects_is_written_without_uid(
    recorder: EventRecorder, stand_in: KubeApiStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in.fail(
        "GET", r"/scaledobjects/", lambda _p: forbidden("get", "scaledobjects", "keda.sh", "shop")
    )
    with caplog.at_level(logging.WARNING, logger="tidescaler.kube.events"):
        recorder.record(*KEY, EventSpec("Warning", "PolicyInvalid", "a"))
        recorder.record(*KEY, EventSpec("Warning", "PolicyInvalid", "b"))
    events = stand_in.events_about(*KEY)
    assert len(events) == 2 and all("uid" not in e["involvedObject"] for e in events)
    assert sum("cannot read ScaledObjects" in r.getMessage() for r in caplog.records) == 1


def test_no_event_is_written_about_a_scaledobject_that_does_not_exist(
    recorder: EventRecorder, stand_in: KubeApiStandIn
) -> None:
    """Anyone who can reach the gRPC port names the namespace and the ScaledObject: an
    Event about one the API server does not have (404) would be theirs to write, in any
    namespace the scaler's RBAC reaches."""
    for i in range(30):
        recorder.record("kube-system", f"no-such-{i}", EventSpec("Warning", "PolicyInvalid", "x"))
    recorder.record(*KEY, EventSpec("Warning", "PolicyInvalid", "threshold is required"))
    assert [e["involvedObject"]["name"] for e in stand_in.events.values()] == ["web"]
    assert (recorder.counts.no_object, recorder.counts.written) == (30, 1)


# -- the narrator: decisions of the real engine in, Events out --


def forecast(
    level: float, now_level: float | None = None, start: float = NOW - 60, points: int = 20
) -> Forecast:
    """A forecast whose median is `level` from the next minute on (`now_level` until then)."""
    median = np.full(points, level)
    if now_level is not None:
        median[:2] = now_level  # [NOW - 60, NOW + 60): what is expected now
    return Forecast(start, 60.0, median, median * 1.25, 0.95, "test", start)


QUERY = {"query": "sum(rate(http_requests_total[1m]))", "threshold": "50"}


def decision(metadata: dict[str, str], observations: Observations, now: float = NOW) -> Decision:
    return decide(parse_policy(metadata), observations, now)


def test_pre_scaling_says_to_how_many_for_which_demand_and_by_when() -> None:
    narrator = Narrator(polling_interval_seconds=30)
    policy = QUERY | {"forecast": "on", "podStartupSeconds": "90"}
    calm = decision(policy, Observations(demand=Sample(180.0, NOW), forecast=forecast(190.0)))
    assert narrator.decision(KEY, calm, NOW) == []
    rising = decision(
        policy, Observations(demand=Sample(200.0, NOW), forecast=forecast(600.0, now_level=200.0))
    )
    [event] = narrator.decision(KEY, rising, NOW)
    assert (event.type, event.reason) == ("Normal", "PreScaling")
    assert event.message == (
        "pre-scaling to 12 replicas ahead of a predicted peak: forecast demand up to 600 by "
        "14:16:20Z (lead 180s: pod start-up 90s from the policy + polling 30s + metric lag 60s); "
        "current demand 200 needs 4"
    )
    # The same answer on the next poll is no news.
    assert narrator.decision(KEY, rising, NOW + 30) == []


def test_pre_scaling_names_a_measured_start_up() -> None:
    narrator = Narrator(polling_interval_seconds=30)
    policy = QUERY | {"forecast": "on", "podStartupSeconds": "auto"}
    observations = Observations(
        demand=Sample(100.0, NOW),
        forecast=forecast(500.0, now_level=100.0),
        pod_startup_seconds=42.0,
    )
    [event] = narrator.decision(KEY, decision(policy, observations), NOW)
    # The query's metric lag (auto: 30 s + half its 1m range) is part of the lead too.
    assert "(lead 132s: pod start-up 42s measured + polling 30s + metric lag 60s)" in event.message


def test_reactive_scale_up_is_not_called_pre_scaling() -> None:
    narrator = Narrator()
    up = decision(QUERY, Observations(demand=Sample(900.0, NOW)))
    assert narrator.decision(KEY, up, NOW) == []


def test_cron_window_opening_and_closing() -> None:
    narrator = Narrator()
    # 14:13:20 UTC is inside 14:00-15:00 and outside 15:00-16:00.
    window = {
        "timezone": "UTC",
        "start": "0 14 * * *",
        "end": "0 15 * * *",
        "desiredReplicas": "10",
    }
    inside = decision(window, Observations(), NOW)
    outside = decision(window, Observations(), NOW + 3600)
    assert narrator.decision(KEY, outside, NOW - 3600) == []  # first sight: no change to tell
    [opened] = narrator.decision(KEY, inside, NOW)
    assert (opened.reason, opened.message) == (
        "CronWindowOpened",
        "cron window opened: floor 10 replicas",
    )
    [closed] = narrator.decision(KEY, outside, NOW + 3600)
    assert closed.reason == "CronWindowClosed"


def test_backend_failing_tells_the_value_held_then_unavailable_then_recovery() -> None:
    narrator = Narrator()
    ok = decision(QUERY, Observations(demand=Sample(300.0, NOW)))
    held = decision(
        QUERY,
        Observations(
            demand=Sample(300.0, NOW - 40, error="connection refused"),
            errors={"query": "connection refused"},
        ),
    )
    stale = decision(QUERY, Observations(errors={"query": "connection refused"}))
    assert narrator.decision(KEY, ok, NOW) == []
    assert narrator.decision(KEY, held, NOW) == []
    [failing] = narrator.backend_failing(KEY, "query", "connection refused")
    assert (failing.type, failing.reason) == ("Warning", "BackendFailing")
    assert failing.message == (
        "query: connection refused; holding the last good value 300 (6 replicas) until it is "
        "older than the staleness bound"
    )
    assert narrator.backend_failing(KEY, "query", "connection refused") == []  # once
    [unavailable] = narrator.decision(KEY, stale, NOW + 200)
    assert (unavailable.type, unavailable.reason) == ("Warning", "DecisionUnavailable")
    assert "KEDA's fallback" in unavailable.message and "connection refused" in unavailable.message
    assert narrator.decision(KEY, stale, NOW + 230) == []
    recovered = narrator.decision(KEY, ok, NOW + 260)
    assert [e.reason for e in recovered] == ["DecisionAvailable", "BackendRecovered"]


def test_invalid_policy_is_told_once_per_problem() -> None:
    narrator = Narrator()
    assert len(narrator.policy_invalid(KEY, "threshold is required")) == 1
    assert narrator.policy_invalid(KEY, "threshold is required") == []
    assert len(narrator.policy_invalid(KEY, "query is required")) == 1


# -- the request path: never slowed down, never failed --

ALWAYS = {"timezone": "UTC", "start": "0 0 1 1 *", "end": "* * * * *", "desiredReplicas": "3"}


def metrics_request(metadata: dict[str, str]) -> pb.GetMetricsRequest:
    ref = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=metadata)
    return pb.GetMetricsRequest(scaledObjectRef=ref, metricName="tidescaler")


def latencies(stub: pb_grpc.ExternalScalerStub, metadata: dict[str, str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        stub.GetMetrics(metrics_request(metadata), timeout=3)
        out.append(time.perf_counter() - began)
    return out


def test_rpcs_are_not_slowed_by_a_hanging_api_and_events_beyond_the_queue_are_dropped(
    stand_in: KubeApiStandIn, api: KubeApi
) -> None:
    recorder = EventRecorder(api, queue_size=8)
    running = start_server(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None), events=recorder
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            baseline = latencies(stub, ALWAYS, 30)
            stand_in.hang()
            # Invalid metadata: every call enqueues a PolicyInvalid the writer cannot deliver.
            bad = {"threshold": "10"}
            began = time.perf_counter()
            for _ in range(40):
                with pytest.raises(grpc.RpcError) as refused:
                    stub.GetMetrics(metrics_request(bad), timeout=3)
                assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            refused_seconds = time.perf_counter() - began
            hanging = latencies(stub, ALWAYS, 30)
    finally:
        stand_in.release()
        running.stop(0)
        recorder.close()
    # The writer holds one request against the hanging API (2 s timeout), so 40 refusals
    # would take > 2 s if the RPC waited on it; they are answered in a fraction of that.
    assert refused_seconds < 1.0
    assert statistics.median(hanging) < statistics.median(baseline) + 0.01
    assert max(hanging) < 0.5  # the writer is stuck for 2 s per request meanwhile
    assert recorder.counts.dropped > 0


def test_rpcs_answer_with_the_api_down_and_the_server_logs_it_once(
    stand_in: KubeApiStandIn, api: KubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in.close()
    recorder = EventRecorder(api)
    running = start_server(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None), events=recorder
    )
    try:
        with (
            caplog.at_level(logging.WARNING, logger="tidescaler.kube.events"),
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        ):
            stub = pb_grpc.ExternalScalerStub(channel)
            for i in range(5):
                with pytest.raises(grpc.RpcError):
                    stub.GetMetrics(metrics_request(QUERY | {"threshold": f"x{i}"}), timeout=3)
            assert (
                stub.GetMetrics(metrics_request(ALWAYS), timeout=3).metricValues[0].metricValue == 3
            )
            assert recorder.flush(10)
    finally:
        running.stop(0)
        recorder.close()
    assert recorder.counts.failed == 5
    kinds = [
        r.__dict__.get("problem") for r in caplog.records if r.name == "tidescaler.kube.events"
    ]
    # One line, for reading ScaledObjects: no Event is tried for an object the API could
    # not confirm (an unreachable or throttling API must not open the 404 guard).
    assert kinds.count("unreachable") == 1


def test_invalid_policy_over_grpc_becomes_one_event_on_the_scaledobject(
    stand_in: KubeApiStandIn, api: KubeApi
) -> None:
    recorder = EventRecorder(api)
    running = start_server(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None), events=recorder
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            for _ in range(10):  # KEDA polls on, the problem stays the same
                with pytest.raises(grpc.RpcError):
                    stub.GetMetrics(metrics_request({"query": "up"}), timeout=3)
        assert recorder.flush(10)
    finally:
        running.stop(0)
        recorder.close()
    [event] = stand_in.events_about(*KEY)
    assert (event["type"], event["reason"], event["count"]) == ("Warning", "PolicyInvalid", 1)
    assert event["message"].startswith("invalid tidescaler trigger metadata: ")
    assert "threshold is required with query" in event["message"]
    assert event["involvedObject"]["uid"] == UID


def test_serve_with_events_on_writes_events_through_its_kubeconfig(
    stand_in: KubeApiStandIn, tmp_path: Path
) -> None:
    port = free_port()
    env = os.environ | {
        "TIDESCALER_HOST": "127.0.0.1",
        "TIDESCALER_PORT": str(port),
        "TIDESCALER_METRICS_PORT": "0",
        "TIDESCALER_LOG_FORMAT": "json",
        "TIDESCALER_EVENTS": "on",
        "TIDESCALER_KUBECONFIG": str(stand_in.kubeconfig(tmp_path)),
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
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
            with pytest.raises(grpc.RpcError):
                stub.GetMetrics(metrics_request({"query": "up"}), timeout=3)
        [event] = stand_in.wait_for_events(*KEY, count=1, timeout=20)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert (event["reason"], event["involvedObject"]["uid"]) == ("PolicyInvalid", UID)
    messages = [
        json.loads(line)["message"]
        for line in (process.stderr.read() if process.stderr else "").splitlines()
        if line.startswith("{")
    ]
    assert "writing Events on ScaledObjects" in messages


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=900.0), min_size=1, max_size=200),
    reasons=st.lists(st.sampled_from(["PreScaling", "BackendFailing", "CronWindowOpened"])),
)
def test_no_object_ever_gets_more_than_the_burst_plus_one_event_per_five_minutes(
    gaps: list[float], reasons: list[str]
) -> None:
    clock = Clock()
    correlator = Correlator(clock)
    ref = ObjectRef(*KEY, UID)
    written = 0
    for i, gap in enumerate(gaps):
        clock.t += gap
        reason = reasons[i % len(reasons)] if reasons else "PreScaling"
        if not correlator.correlate(ref, EventSpec("Normal", reason, f"m{i % 13}")).skip:
            written += 1
        assert written <= 25 + (clock.t - NOW) / 300.0 + 1e-9


def test_a_dead_backend_over_grpc_tells_unavailable_and_failing_once(
    stand_in: KubeApiStandIn, api: KubeApi
) -> None:
    recorder = EventRecorder(api)
    config = ServerConfig(
        host="127.0.0.1", port=0, metrics_port=None, prometheus_url="http://127.0.0.1:9"
    )
    running = start_server(config, events=recorder)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            for _ in range(5):
                with pytest.raises(grpc.RpcError) as refused:
                    stub.GetMetrics(metrics_request(QUERY), timeout=5)
                assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert recorder.flush(10)
    finally:
        running.stop(0)
        recorder.close()
    events = {e["reason"]: e for e in stand_in.events_about(*KEY)}
    assert set(events) == {"DecisionUnavailable", "BackendFailing"}
    assert all(e["type"] == "Warning" and e["count"] == 1 for e in events.values())
    assert "KEDA's fallback" in events["DecisionUnavailable"]["message"]
    assert events["BackendFailing"]["message"].startswith("query: ")
    assert events["BackendFailing"]["message"].endswith("; no good value to hold")
