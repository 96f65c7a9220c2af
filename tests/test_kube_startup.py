"""`podStartupSeconds: auto`: start-up measured from the scale target's pods, used as lead time.

Pods are built in the shape `kubectl get pod -o json` prints (conditions with
their lastTransitionTime, containerStatuses with restartCount) and served by
the stand-in API (tests/kube_api_stand_in.py) to the real `kubernetes` client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from kube_api_stand_in import KubeApiStandIn, deployment, forbidden, pod, scaled_object
from prometheus_client import CollectorRegistry

from scaler.engine import Observations, Sample, decide
from scaler.forecast.types import Forecast
from scaler.kube.api import KubeApi, KubeError, load_api_client
from scaler.kube.events import EventRecorder, NoEvents
from scaler.kube.service import start_kube
from scaler.kube.startup import StartupMeter, measure, pod_startup_seconds
from scaler.observe import Observer
from scaler.policy import PolicyError, parse_policy
from scaler.proto import externalscaler_pb2 as pb
from scaler.server import ScalerService, ServerConfig
from scaler.sources.prometheus import PrometheusSource

NOW = 1_790_000_000.0
LABELS = {"app.kubernetes.io/name": "web"}


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def web_pod(i: int, created: float, startup: float | None, restarts: int = 0) -> dict[str, object]:
    ready = None if startup is None else stamp(created + startup)
    return pod("shop", f"web-7d9f8b6c5d-{i:05d}", LABELS, stamp(created), ready, restarts=restarts)


# -- the measurement (pure) --


def test_one_pod_start_up_is_creation_to_ready() -> None:
    assert pod_startup_seconds(web_pod(1, NOW, 47.0)) == 47.0


@pytest.mark.parametrize(
    "candidate",
    [
        pytest.param(web_pod(1, NOW, None), id="not-ready-yet"),
        pytest.param(web_pod(2, NOW, 30.0, restarts=2), id="restarted-ready-marks-the-restart"),
        pytest.param({"metadata": {"name": "x"}, "status": {}}, id="no-creation-time"),
    ],
)
def test_pods_without_a_start_up_to_measure_are_left_out(candidate: dict[str, object]) -> None:
    assert pod_startup_seconds(candidate) is None


def test_p90_over_the_twenty_most_recent_ready_pods() -> None:
    # 30 pods over a day: the 10 oldest started slowly (an old image), the 20 recent in
    # 21..40 s; one recent pod is still starting and one restarted: both are left out.
    pods = [web_pod(i, NOW - 86400 + 600 * i, 180.0) for i in range(10)]
    pods += [web_pod(100 + i, NOW - 3600 + 60 * i, 21.0 + i) for i in range(20)]
    pods += [web_pod(200, NOW - 10, None), web_pod(201, NOW - 20, 5.0, restarts=1)]
    result = measure(pods, NOW)
    assert result is not None
    assert result.pods == 20
    # Nearest rank: the 18th of 20 sorted values 21..40 is 38.
    assert result.seconds == 38.0
    assert result.quantile == 0.9


def test_a_readiness_that_flapped_later_is_not_taken_for_start_up() -> None:
    """Kubernetes keeps the last Ready transition: a probe that failed for a moment hours
    after start (no restart) made the pod's whole age its start-up, and three such pods
    in twenty set a p90 of hours (the lead time, then the forecast off)."""
    pods = [web_pod(i, NOW - 3600 + 60 * i, 40.0) for i in range(17)]
    flapped = [web_pod(100 + i, NOW - 6 * 3600 + 60 * i, None) for i in range(3)]
    for flapping in flapped:  # Ready again a minute ago, containers started at creation
        status = flapping["status"]
        assert isinstance(status, dict)
        for condition in status["conditions"]:
            if condition["type"] == "Ready":
                condition.update(status="True", lastTransitionTime=stamp(NOW - 60))
                condition.pop("reason"), condition.pop("message")
    assert [pod_startup_seconds(p) for p in flapped] == [None, None, None]
    result = measure(pods + flapped, NOW)
    assert result is not None and result.seconds == 40.0 and result.pods == 17


def test_a_start_up_longer_than_a_policy_may_set_is_capped() -> None:
    slow = web_pod(1, NOW - 2 * 86400, 2 * 86400 - 5)
    status = slow["status"]
    assert isinstance(status, dict)
    # The image took two days to pull: the container started five seconds before Ready.
    status["containerStatuses"][0]["state"]["running"]["startedAt"] = stamp(NOW - 10)
    assert pod_startup_seconds(slow) == 86400.0


def test_no_ready_pod_gives_no_measurement() -> None:
    assert measure([web_pod(1, NOW, None)], NOW) is None


# -- the meter against the stand-in API --


@pytest.fixture
def stand_in() -> Iterator[KubeApiStandIn]:
    server = KubeApiStandIn().start()
    trigger = {"type": "external", "metadata": {"podStartupSeconds": "auto"}}
    server.scaledobjects[("shop", "web")] = scaled_object("shop", "web", [trigger])
    server.workloads[("deployments", "shop", "web")] = deployment("shop", "web")
    server.pods["shop"] = [web_pod(i, NOW - 900 + 60 * i, 40.0 + 5 * i) for i in range(10)]
    # Another workload's pods in the namespace must not count.
    server.pods["shop"].append(pod("shop", "db-0", {"app": "db"}, stamp(NOW), stamp(NOW + 900)))
    yield server
    server.close()


@pytest.fixture
def api(stand_in: KubeApiStandIn, tmp_path: Path) -> Iterator[KubeApi]:
    client = KubeApi(load_api_client(str(stand_in.kubeconfig(tmp_path))), timeout_seconds=2.0)
    yield client
    client.close()


def test_meter_finds_the_target_through_scale_target_ref_and_its_selector(
    stand_in: KubeApiStandIn, api: KubeApi
) -> None:
    meter = StartupMeter(api, clock=lambda: NOW)
    measurement = meter.refresh("shop", "web")
    assert measurement is not None
    assert (measurement.seconds, measurement.pods) == (80.0, 10)  # 9th of 40, 45 .. 85
    paths = [r.path for r in stand_in.requests if r.method == "GET"]
    assert paths == [
        "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects/web",
        "/apis/apps/v1/namespaces/shop/deployments/web/scale",
        "/api/v1/namespaces/shop/pods",
    ]
    assert stand_in.requests[-1].query["labelSelector"] == ["app.kubernetes.io/name=web"]


def test_pods_are_read_a_page_at_a_time_and_the_newest_found_on_any_page(
    stand_in: KubeApiStandIn, api: KubeApi
) -> None:
    """The whole pod list was read and parsed at once: 2,000 pods carrying 100 KB of
    annotations each took the scaler from 73 to 676 MB (its limit is 512Mi)."""
    old = [web_pod(i, NOW - 86400 + i, 300.0) for i in range(230)]
    new = [web_pod(1000 + i, NOW - 600 + i, 30.0 + i) for i in range(20)]
    stand_in.pods["shop"] = old + new  # the newest on the last page
    measurement = StartupMeter(api, clock=lambda: NOW).refresh("shop", "web")
    assert measurement is not None and measurement.pods == 20
    assert measurement.seconds == 47.0  # nearest rank 18 of 30..49: the old pods left out
    lists = [r for r in stand_in.requests if r.path.endswith("/pods")]
    assert [r.query["limit"] for r in lists] == [["100"], ["100"], ["100"]]
    assert "continue" not in lists[0].query and lists[2].query["continue"] == ["200"]


def test_pods_read_stop_at_the_bound(stand_in: KubeApiStandIn, api: KubeApi) -> None:
    stand_in.pods["shop"] = [web_pod(i, NOW - 86400 + i, 30.0) for i in range(250)]
    pods = list(api.pods("shop", "app.kubernetes.io/name=web", page=100, most=150))
    assert len(pods) == 150
    lists = [r for r in stand_in.requests if r.path.endswith("/pods")]
    assert [r.query["limit"] for r in lists] == [["100"], ["50"]]


def test_meter_follows_a_statefulset_target(stand_in: KubeApiStandIn, api: KubeApi) -> None:
    stand_in.scaledobjects[("shop", "web")] = scaled_object("shop", "web", [], kind="StatefulSet")
    stand_in.workloads[("statefulsets", "shop", "web")] = deployment(
        "shop", "web", kind="StatefulSet"
    )
    measurement = StartupMeter(api, clock=lambda: NOW).refresh("shop", "web")
    assert measurement is not None and measurement.pods == 10
    assert any(r.path.endswith("/statefulsets/web/scale") for r in stand_in.requests)


def test_an_unsupported_target_kind_does_not_hide_a_later_api_outage(
    stand_in: KubeApiStandIn, api: KubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    """A tenant's Rollout was logged under the process-wide "unreachable" line, so the
    API going away afterwards was never logged."""
    stand_in.scaledobjects[("shop", "canary")] = scaled_object(
        "shop", "canary", [], target="canary", kind="Rollout"
    )
    meter = StartupMeter(api, clock=lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="tidescaler.kube.startup"):
        assert meter.refresh("shop", "canary") is None
        stand_in.close()
        assert meter.refresh("shop", "web") is None
    errors = [str(r.__dict__.get("error")) for r in caplog.records]
    assert len(errors) == 2, errors
    assert "kind 'Rollout' is not supported" in errors[0]
    assert "get scaledobject shop/web" in errors[1]


def test_meter_measures_in_the_background_and_exports_the_gauge(
    stand_in: KubeApiStandIn, api: KubeApi
) -> None:
    meter = StartupMeter(api, clock=lambda: NOW).start()
    registry = CollectorRegistry()
    registry.register(meter.collector())
    try:
        assert meter.seconds_for("shop", "web") is None  # not measured yet: the caller waits
        assert meter.wait_measured("shop", "web", timeout=10) is not None
        assert meter.seconds_for("shop", "web") == 80.0
    finally:
        meter.close()
    labels = {"namespace": "shop", "scaledobject": "web"}
    assert registry.get_sample_value("tidescaler_pod_startup_seconds", labels) == 80.0
    assert registry.get_sample_value("tidescaler_pod_startup_measured_pods", labels) == 10


def test_meter_without_access_keeps_the_default_and_logs_once(
    stand_in: KubeApiStandIn, api: KubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in.fail("GET", r"/pods$", lambda _p: forbidden("list", "pods", "", "shop"))
    stand_in.scaledobjects[("shop", "api")] = scaled_object("shop", "api", [])
    meter = StartupMeter(api, clock=lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="tidescaler.kube.startup"):
        for _ in range(3):
            assert meter.refresh("shop", "web") is None
            assert meter.refresh("shop", "api") is None  # RBAC is one line, not one per object
    [line] = [r for r in caplog.records if r.name == "tidescaler.kube.startup"]
    assert 'cannot list resource "pods"' in line.__dict__["error"]


# -- the lead time: the engine and the server use the measured value and say so --

POLICY = {
    "query": "sum(rate(http_requests_total[1m]))",
    "threshold": "50",
    "forecast": "on",
    "podStartupSeconds": "auto",
}


def peak_at(seconds_ahead: float) -> Forecast:
    """A flat 100 req/s forecast with a 1000 req/s minute starting `seconds_ahead` from NOW."""
    upper = np.full(30, 100.0)
    upper[int(seconds_ahead // 60) + 1] = 1000.0
    return Forecast(NOW - 60, 60.0, upper, upper, 0.95, "test", NOW - 60)


@pytest.mark.parametrize(
    ("measured", "startup", "source", "replicas"),
    [
        pytest.param(None, 60.0, "default, not measured yet", 2, id="unmeasured-default-60s"),
        pytest.param(30.0, 30.0, "measured", 2, id="fast-pods-peak-beyond-lead"),
        pytest.param(200.0, 200.0, "measured", 20, id="slow-pods-see-the-peak"),
    ],
)
def test_measured_start_up_sets_the_lead_time(
    measured: float | None, startup: float, source: str, replicas: int
) -> None:
    # The 1000 req/s minute starts 180 s ahead: inside a 200 + 30 s lead, outside 90 s.
    observations = Observations(
        demand=Sample(100.0, NOW), forecast=peak_at(180.0), pod_startup_seconds=measured
    )
    decision = decide(parse_policy(POLICY), observations, NOW)
    assert (decision.pod_startup_seconds, decision.pod_startup_source) == (startup, source)
    assert decision.desired_replicas == replicas


@pytest.mark.parametrize("text", ["auto", " Auto "])
def test_podstartupseconds_auto_parses_with_the_60s_default_until_measured(text: str) -> None:
    forecast = parse_policy(POLICY | {"podStartupSeconds": text}).forecast
    assert (forecast.pod_startup_auto, forecast.pod_startup_seconds) == (True, 60.0)
    assert parse_policy(POLICY | {"podStartupSeconds": "90s"}).forecast.pod_startup_auto is False


def test_a_wrong_podstartupseconds_names_auto_among_what_is_accepted() -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(POLICY | {"podStartupSeconds": "soon"})
    assert error.value.problems == (
        "podStartupSeconds='soon': expected a duration such as 90s, 15m, 7d (at most 1d, or auto)",
    )


def test_a_deleted_target_drops_its_measurement(stand_in: KubeApiStandIn, api: KubeApi) -> None:
    meter = StartupMeter(api, clock=lambda: NOW)
    assert meter.refresh("shop", "web") is not None
    del stand_in.workloads[("deployments", "shop", "web")]
    assert meter.refresh("shop", "web") is None
    assert meter.seconds_for("shop", "web") is None


def test_names_that_came_and_went_never_stop_new_scaledobjects_being_measured(
    api: KubeApi,
) -> None:
    """Once max_scaledobjects names had been asked for (deleted ScaledObjects, names any
    gRPC client makes up), a new ScaledObject was never measured again."""
    meter = StartupMeter(api, clock=lambda: NOW, max_scaledobjects=3)
    for i in range(5):
        assert meter.seconds_for("shop", f"made-up-{i}") is None
        assert meter.refresh("shop", f"made-up-{i}") is None  # 404: forgotten
    meter.start()
    try:
        assert meter.seconds_for("shop", "web") is None  # not measured yet
        measurement = meter.wait_measured("shop", "web", timeout=10)
        assert measurement is not None
        assert meter.seconds_for("shop", "web") == measurement.seconds
    finally:
        meter.close()


def test_a_fixed_podstartupseconds_ignores_any_measurement() -> None:
    observations = Observations(demand=Sample(100.0, NOW), pod_startup_seconds=200.0)
    decision = decide(parse_policy(POLICY | {"podStartupSeconds": "45s"}), observations, NOW)
    assert (decision.pod_startup_seconds, decision.pod_startup_source) == (45.0, "policy")


def test_server_takes_the_measured_start_up_for_auto_policies(
    stand_in: KubeApiStandIn, api: KubeApi
) -> None:
    meter = StartupMeter(api, clock=lambda: NOW)
    window = {"timezone": "UTC", "start": "0 0 1 1 *", "end": "* * * * *", "desiredReplicas": "2"}
    service = ScalerService(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None),
        Observer(PrometheusSource()),
        pod_startup=meter.seconds_for,
    )
    ref = pb.ScaledObjectRef(
        name="web", namespace="shop", scalerMetadata=window | {"podStartupSeconds": "auto"}
    )
    before = service.decision_for(ref)
    assert (before.pod_startup_seconds, before.pod_startup_source) == (
        60.0,
        "default, not measured yet",
    )
    meter.refresh("shop", "web")
    after = service.decision_for(ref)
    assert (after.pod_startup_seconds, after.pod_startup_source) == (80.0, "measured")


def test_auto_without_kubernetes_access_says_it_will_never_be_measured() -> None:
    """It said "default, not measured yet" for ever, as if a measurement were coming."""
    window = {"timezone": "UTC", "start": "0 0 1 1 *", "end": "* * * * *", "desiredReplicas": "2"}
    service = ScalerService(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None), Observer(PrometheusSource())
    )
    ref = pb.ScaledObjectRef(
        name="web", namespace="shop", scalerMetadata=window | {"podStartupSeconds": "auto"}
    )
    decision = service.decision_for(ref)
    assert decision.pod_startup_seconds == 60.0
    assert decision.pod_startup_source == (
        "default, no Kubernetes API access to measure it (see --events, --kubeconfig)"
    )
    fixed = service.decision_for(
        pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=window)
    )
    assert fixed.pod_startup_source == "policy"


# -- wiring into `tidescaler serve` --


def test_serve_wiring_events_on_uses_the_kubeconfig(
    stand_in: KubeApiStandIn, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    parts = start_kube("on", kubeconfig=str(stand_in.kubeconfig(tmp_path)), registry=registry)
    try:
        assert isinstance(parts.events, EventRecorder)
        assert parts.startup is not None
        assert (
            registry.get_sample_value("tidescaler_kube_events_total", {"outcome": "created"}) == 0
        )
    finally:
        parts.close()


def test_serve_wiring_auto_outside_a_cluster_leaves_events_off(
    stand_in: KubeApiStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    parts = start_kube("auto", kubeconfig=str(stand_in.kubeconfig(tmp_path)))
    try:
        assert isinstance(parts.events, NoEvents) and parts.startup is not None
    finally:
        parts.close()


def test_serve_wiring_without_configuration_turns_both_off_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with caplog.at_level(logging.INFO, logger="tidescaler.kube"):
        parts = start_kube("auto")
    assert isinstance(parts.events, NoEvents) and parts.startup is None
    [line] = [r for r in caplog.records if r.name == "tidescaler.kube"]
    assert "Events and podStartupSeconds: auto are off" in line.getMessage()
    # Asked for, by --events on or a kubeconfig named: the caller refuses to start.
    with pytest.raises(KubeError, match="cannot read it"):
        start_kube("on", kubeconfig=str(tmp_path / "missing"))
    with pytest.raises(KubeError, match="cannot read it"):
        start_kube("off", kubeconfig=str(tmp_path / "missing"))
