"""`tidescaler simulate|backtest --from-cluster`: the what-if on a live workload, end to end.

The ScaledObject, its Deployment and pods come from the stand-in API
(tests/kube_api_stand_in.py, real object shapes, the real `kubernetes` client);
the query's history from a real Prometheus the test backfills with three days
of tides; the simulation is the simulator's own runner.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kube_api_stand_in import KubeApiStandIn, deployment, pod, scaled_object
from prometheus_server import CountingProxy, PrometheusServer, Series, grid, openmetrics

from scaler import backtest_cli
from scaler.cli import main
from scaler.kube.api import KubeError, load_api_client
from scaler.sim import hpa
from scaler.sim.from_cluster import hpa_behavior, pod_requests

pytestmark = pytest.mark.prometheus

QUERY = "shop_requests_per_second"
LABELS = {"app.kubernetes.io/name": "web"}
DAY = 86400.0


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tide(t: float) -> float:
    """A daily tide of 20..620 req/s peaking at 14:00 UTC."""
    return 20.0 + 600.0 * (0.5 + 0.5 * math.cos(2 * math.pi * ((t % DAY) / DAY - 14 / 24))) ** 3


@pytest.fixture(scope="module")
def history_prometheus(
    prometheus_binaries: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    now = time.time()
    times = grid(now - 3 * DAY, now - 60, 60)
    server = PrometheusServer(tmp_path_factory.mktemp("history"), scrape_targets=[])
    server.backfill(openmetrics([Series(QUERY, {}, [(t, tide(t)) for t in times])]))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stand_in() -> Iterator[KubeApiStandIn]:
    server = KubeApiStandIn().start()
    server.workloads[("deployments", "shop", "web")] = deployment("shop", "web")
    now = time.time()
    # Ten recent pods that took 30..75 s from creation to Ready: p90 is 70 s.
    server.pods["shop"] = [
        pod(
            "shop",
            f"web-{i}",
            LABELS,
            stamp(now - 3600 + 60 * i),
            stamp(now - 3600 + 60 * i + 30 + 5 * i),
        )
        for i in range(10)
    ]
    yield server
    server.close()


BEHAVIOR = {
    "scaleDown": {
        "stabilizationWindowSeconds": 600,
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
    }
}


def keda_prometheus_trigger(address: str) -> dict[str, object]:
    return {
        "type": "prometheus",
        "metadata": {"serverAddress": address, "query": QUERY, "threshold": "50"},
    }


def tidescaler_trigger(address: str, **keys: str) -> dict[str, object]:
    """An external trigger naming tidescaler, forecast on, with `keys` added."""
    metadata = {
        "scalerAddress": "tidescaler.tidescaler:9090",
        "prometheusAddress": address,
        "query": QUERY,
        "threshold": "50",
        "forecast": "on",
    }
    return {"type": "external", "metadata": metadata | keys}


def simulate(
    kubeconfig: Path, *extra: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, object]:
    status = main(
        [
            "simulate",
            "--from-cluster",
            "shop/web",
            "--start",
            "3d",
            "--kubeconfig",
            str(kubeconfig),
            "--policies",
            "static-peak,reactive,keda-cron,tidescaler",
            "--json",
            *extra,
        ]
    )
    out = capsys.readouterr()
    assert status == 0, out.err
    result: dict[str, object] = json.loads(out.out)
    return result


def test_keda_prometheus_trigger_is_simulated_as_reactive_against_its_migration(
    stand_in: KubeApiStandIn,
    history_prometheus: PrometheusServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stand_in.scaledobjects[("shop", "web")] = scaled_object(
        "shop",
        "web",
        [keda_prometheus_trigger(history_prometheus.url)],
        min_replicas=1,
        max_replicas=10,
        polling_interval=30,
        cooldown_period=300,
        behavior=BEHAVIOR,
    )
    result = simulate(stand_in.kubeconfig(tmp_path), capsys=capsys)
    cluster = result["from_cluster"]
    assert isinstance(cluster, dict)
    assert cluster["current"] == "reactive"
    assert cluster["pod_startup_seconds"] == 70.0 and cluster["pod_startup_measured"] is True
    assert cluster["tidescaler"] == {
        "query": QUERY,
        "threshold": "50",
        "prometheusAddress": history_prometheus.url,
        "forecast": "on",
        "podStartupSeconds": "auto",
    }
    settings = result["cluster"]
    assert isinstance(settings, dict)
    assert (settings["min_replicas"], settings["max_replicas"]) == (1, 10)
    assert settings["pod_startup"] == "70s"
    assert settings["capacity_per_replica"] == pytest.approx(50 / 0.7)
    traffic = result["traffic"]
    assert isinstance(traffic, dict)
    assert traffic["peak_requests_per_second"] == pytest.approx(620.0, abs=1.0)
    policies = {p["policy"]: p for p in result["policies"]}  # type: ignore[union-attr,index]
    assert list(policies) == ["static-peak", "reactive", "keda-cron", "tidescaler"]
    # The peak needs 620 / 50 -> 13 replicas; the ScaledObject's maxReplicaCount of 10 binds
    # every policy that goes through KEDA and the HPA (static-peak is sized without them).
    assert policies["static-peak"]["peak_replicas"] == 13
    assert policies["reactive"]["peak_replicas"] == 10
    assert policies["tidescaler"]["peak_replicas"] == 10
    # The tidescaler run planned with the measured start-up.
    assert policies["tidescaler"]["detail"]["metadata"]["podStartupSeconds"] == "70"
    # On a clean tide the forecast is ready before the peak: fewer requests over the SLO.
    assert (
        policies["tidescaler"]["slo_violation_ratio"] <= policies["reactive"]["slo_violation_ratio"]
    )


def test_tidescaler_trigger_with_auto_start_up_and_the_table_says_what_was_read(
    stand_in: KubeApiStandIn,
    history_prometheus: PrometheusServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trigger = tidescaler_trigger(history_prometheus.url, podStartupSeconds="auto", maxReplicas="20")
    stand_in.scaledobjects[("shop", "web")] = scaled_object("shop", "web", [trigger])
    status = main(
        [
            "simulate",
            "--from-cluster",
            "shop/web",
            "--start",
            "3d",
            "--kubeconfig",
            str(stand_in.kubeconfig(tmp_path)),
            "--policies",
            "reactive,tidescaler",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "ScaledObject shop/web -> deployment/web" in out
    assert "now: tidescaler; replicas 0..100, pollingInterval 30s, cooldownPeriod 300s" in out
    assert "requests cpu 500m, memory 256Mi; start-up p90 70s over 10 pods (measured)" in out
    assert f"history: {history_prometheus.url}, 3 days at 60s" in out
    assert "tidescaler" in out and "reactive" in out


def test_cron_only_scaledobject_needs_the_demand_query_and_runs_as_keda_cron(
    stand_in: KubeApiStandIn,
    history_prometheus: PrometheusServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cron = {
        "type": "cron",
        "metadata": {
            "timezone": "UTC",
            "start": "0 10 * * *",
            "end": "0 18 * * *",
            "desiredReplicas": "12",
        },
    }
    stand_in.scaledobjects[("shop", "web")] = scaled_object("shop", "web", [cron])
    kubeconfig = stand_in.kubeconfig(tmp_path)
    assert main(["simulate", "--from-cluster", "shop/web", "--kubeconfig", str(kubeconfig)]) == 2
    assert "a cron-only ScaledObject has no query; give --query" in capsys.readouterr().err
    result = simulate(
        kubeconfig,
        "--query",
        QUERY,
        "--threshold",
        "50",
        "--prometheus-url",
        history_prometheus.url,
        capsys=capsys,
    )
    cluster = result["from_cluster"]
    assert isinstance(cluster, dict) and cluster["current"] == "keda-cron"
    assert cluster["tidescaler"]["schedules"] == (
        "[{desiredReplicas: 12, end: 0 18 * * *, start: 0 10 * * *, timezone: UTC}]"
    )
    policies = {p["policy"]: p for p in result["policies"]}  # type: ignore[union-attr,index]
    assert policies["keda-cron"]["detail"]["triggers"] == [cron["metadata"]]


def test_backtest_from_cluster_scores_the_forecast_on_the_query_history(
    stand_in: KubeApiStandIn,
    history_prometheus: PrometheusServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stand_in.scaledobjects[("shop", "web")] = scaled_object(
        "shop", "web", [keda_prometheus_trigger(history_prometheus.url)]
    )
    status = main(
        [
            "backtest",
            "--from-cluster",
            "shop/web",
            "--start",
            "3d",
            "--kubeconfig",
            str(stand_in.kubeconfig(tmp_path)),
            "--min-history",
            "2d",
            "--history",
            "2d",
            "--horizons",
            "10m,1h",
            "--json",
        ]
    )
    out = capsys.readouterr()
    assert status == 0, out.err
    result = json.loads(out.out)
    assert result["trace"] == "shop/web"


def test_backtest_from_cluster_learns_from_the_triggers_forecast_history(
    stand_in: KubeApiStandIn,
    history_prometheus: PrometheusServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without --history the backtest scores the forecaster the trigger runs: its own
    forecastHistory, not the default."""
    trigger = tidescaler_trigger(history_prometheus.url, forecastHistory="2d")
    stand_in.scaledobjects[("shop", "web")] = scaled_object("shop", "web", [trigger])
    seen: list[float] = []
    real_run = backtest_cli.run

    def recording_run(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["history_seconds"])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(backtest_cli, "run", recording_run)
    kubeconfig = str(stand_in.kubeconfig(tmp_path))
    flags = ["--start", "3d", "--kubeconfig", kubeconfig, "--min-history", "2d", "--json"]
    assert main(["backtest", "--from-cluster", "shop/web", *flags, "--horizons", "1h"]) == 0
    assert seen == [2 * 86400.0]
    assert "a weekly pattern needs" not in capsys.readouterr().err


def test_the_history_is_read_with_the_triggers_request_options(
    stand_in: KubeApiStandIn,
    history_prometheus: PrometheusServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On Thanos, Mimir or Cortex the options choose whose data a query reads: without
    them the what-if ran on another tenant's traffic."""
    proxy = CountingProxy(history_prometheus.url)
    trigger = keda_prometheus_trigger(proxy.url)
    trigger["metadata"] = {
        **trigger["metadata"],  # type: ignore[dict-item]
        "customHeaders": "X-Scope-OrgID=shop",
        "namespace": "team-a",
    }
    stand_in.scaledobjects[("shop", "web")] = scaled_object("shop", "web", [trigger])
    try:
        result = simulate(stand_in.kubeconfig(tmp_path), capsys=capsys)
    finally:
        proxy.close()
    assert result["from_cluster"]["tidescaler"]["customHeaders"] == "X-Scope-OrgID=shop"  # type: ignore[index]
    history = [seen for seen in proxy.seen if seen[0] == "/api/v1/query_range"]
    assert history
    for _, params, headers in history:
        assert headers["x-scope-orgid"] == "shop" and params["namespace"] == "team-a"


def test_the_tidescaler_trigger_is_told_from_other_external_scalers(
    stand_in: KubeApiStandIn,
    history_prometheus: PrometheusServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    http_add_on = {
        "type": "external",
        "metadata": {
            "scalerAddress": "keda-add-ons-http-external-scaler.keda:9090",
            "hosts": "web.example.com",
        },
    }
    ours = {
        "type": "external",
        "metadata": {
            "scalerAddress": "tidescaler.tidescaler.svc.cluster.local:9090",
            "query": QUERY,
            "threshold": "50",
            "prometheusAddress": history_prometheus.url,
        },
    }
    stand_in.scaledobjects[("shop", "web")] = scaled_object("shop", "web", [http_add_on, ours])
    result = simulate(stand_in.kubeconfig(tmp_path), capsys=capsys)
    assert result["from_cluster"]["current"] == "tidescaler"  # type: ignore[index]
    assert result["from_cluster"]["tidescaler"]["threshold"] == "50"  # type: ignore[index]


def _with_environment(stand_in: KubeApiStandIn, env: list[dict[str, object]]) -> None:
    web = deployment("shop", "web")
    web["spec"]["template"]["spec"]["containers"][0]["env"] = env  # type: ignore[index]
    stand_in.workloads[("deployments", "shop", "web")] = web


def test_keys_from_the_workloads_environment_are_resolved_as_keda_does(
    stand_in: KubeApiStandIn,
    history_prometheus: PrometheusServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """KEDA fills `<key>FromEnv` from the scale target's container before calling a
    scaler; the variable's name was replayed as the query."""
    _with_environment(
        stand_in,
        [{"name": "DEMAND_QUERY", "value": QUERY}, {"name": "WEB_THRESHOLD", "value": "50"}],
    )
    trigger = {
        "type": "prometheus",
        "metadata": {
            "serverAddress": history_prometheus.url,
            "queryFromEnv": "DEMAND_QUERY",
            "thresholdFromEnv": "WEB_THRESHOLD",
        },
    }
    stand_in.scaledobjects[("shop", "web")] = scaled_object("shop", "web", [trigger])
    result = simulate(stand_in.kubeconfig(tmp_path), capsys=capsys)
    migrated = result["from_cluster"]["tidescaler"]  # type: ignore[index]
    assert migrated["query"] == QUERY and migrated["threshold"] == "50"


def test_a_key_from_a_secret_in_the_environment_is_named(
    stand_in: KubeApiStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = {"secretKeyRef": {"name": "web", "key": "query"}}
    _with_environment(stand_in, [{"name": "DEMAND_QUERY", "valueFrom": secret}])
    trigger = {
        "type": "prometheus",
        "metadata": {"serverAddress": "http://127.0.0.1:9", "queryFromEnv": "DEMAND_QUERY"},
    }
    stand_in.scaledobjects[("shop", "web")] = scaled_object("shop", "web", [trigger])
    kubeconfig = str(stand_in.kubeconfig(tmp_path))
    assert main(["simulate", "--from-cluster", "shop/web", "--kubeconfig", kubeconfig]) == 2
    assert (
        "trigger key queryFromEnv reads 'DEMAND_QUERY' from a Secret or ConfigMap (valueFrom), "
        "which --from-cluster does not read" in capsys.readouterr().err
    )


def test_unknown_scaledobject_is_a_clear_error(
    stand_in: KubeApiStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = str(stand_in.kubeconfig(tmp_path))
    assert main(["simulate", "--from-cluster", "shop/gone", "--kubeconfig", kubeconfig]) == 2
    assert 'scaledobjects.keda.sh "gone" not found' in capsys.readouterr().err
    assert main(["simulate", "--from-cluster", "web", "--kubeconfig", kubeconfig]) == 2
    assert "expected NAMESPACE/SCALEDOBJECT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"pollingInterval": "30s"},
            "spec.pollingInterval='30s': expected a number >= 0",
            id="polling-interval-as-text",
        ),
        pytest.param(
            {
                "advanced": {
                    "horizontalPodAutoscalerConfig": {
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": "5m"}}
                    }
                }
            },
            "behavior.scaleDown.stabilizationWindowSeconds='5m': expected seconds >= 0",
            id="stabilization-window-as-text",
        ),
        pytest.param(
            {"triggers": [{"type": "cpu", "metadata": {"value": "60"}}]},
            "no tidescaler (external), cron or prometheus trigger to simulate (found cpu)",
            id="only-a-cpu-trigger",
        ),
    ],
)
def test_what_cannot_be_simulated_is_named(
    stand_in: KubeApiStandIn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, object],
    message: str,
) -> None:
    scaled = scaled_object("shop", "web", [keda_prometheus_trigger("http://127.0.0.1:9")])
    scaled["spec"].update(change)
    stand_in.scaledobjects[("shop", "web")] = scaled
    kubeconfig = str(stand_in.kubeconfig(tmp_path))
    assert main(["simulate", "--from-cluster", "shop/web", "--kubeconfig", kubeconfig]) == 2
    assert message in capsys.readouterr().err


# -- pure readers of the objects --


def test_hpa_behavior_fills_the_kubernetes_defaults_around_what_is_set() -> None:
    behavior = hpa_behavior({"advanced": {"horizontalPodAutoscalerConfig": {"behavior": BEHAVIOR}}})
    assert behavior.scale_up == hpa.DEFAULT_BEHAVIOR.scale_up
    assert behavior.scale_down == hpa.ScalingRules(
        600.0, (hpa.ScalingPolicy("Pods", 2, 60.0),), "Max"
    )
    assert hpa_behavior({}) == hpa.DEFAULT_BEHAVIOR


def test_pod_requests_are_summed_over_containers() -> None:
    web = deployment("shop", "web", cpu_request="250m", memory_request="1Gi")
    containers = web["spec"]["template"]["spec"]["containers"]
    containers.append({"name": "proxy", "resources": {"requests": {"cpu": "0.1"}}})
    requests = pod_requests(web)
    assert requests.cpu_cores == pytest.approx(0.35)
    assert requests.memory_bytes == 2**30
    assert requests.describe() == "cpu 350m, memory 1024Mi"


# Keep the fixture factory type importable for type checkers of this module.
_ = Callable


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read it (No such file or directory)"),
        ("just text\n", "not a kubeconfig (expected a mapping with clusters, contexts and users)"),
        ("key: [unclosed\n", "not YAML, so not a kubeconfig"),
    ],
    ids=["missing", "not-a-mapping", "not-yaml"],
)
def test_an_unusable_kubeconfig_is_named_with_what_is_wrong(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    # The client library said "Invalid kube-config file" without the path, or
    # "'str' object does not support item assignment".
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KubeError) as info:
        load_api_client(str(path))
    assert str(info.value) == f"Kubernetes configuration: --kubeconfig {path}: {expected}"
