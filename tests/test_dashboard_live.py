"""The dashboard against a live run: a real Prometheus scraping a running `tidescaler serve`.

The service is started as a separate process, exactly as in a pod, and driven
with real gRPC calls the way KEDA makes them (GetMetricSpec, GetMetrics,
IsActive) for a few ScaledObjects chosen to light every panel: a full policy
with cron, query and forecast, a cron-only one, one whose query the backend
rejects, and one with a typo in its metadata. Prometheus scrapes the service's
/metrics every second and the demand exporter the query reads. The test then
checks every exported metric's labels, and that every PromQL expression in the
dashboard (panels and template variables) parses and returns data.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_server import Exporter, PrometheusServer, Series, free_port, grid, openmetrics

from scaler.engine import Reason
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "tidescaler-dashboard.json"

DEMAND = "tidescaler_dashboard_demand_rps"  # own name: the exporter is shared by the session
DEMAND_RPS = 240.0
THRESHOLD = 50.0

FULL = ("shop", "checkout")  # cron floor, query, forecast, maxReplicas
CRON_ONLY = ("shop", "nightly")
BROKEN_BACKEND = ("shop", "broken-backend")  # Prometheus rejects its query
TYPO = ("payments", "ledger")  # invalid metadata: never gets a decision


def _window_around_now() -> tuple[str, str]:
    """A daily cron window that is active for the next hours (start 1 h ago, end in 3 h)."""
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=3)
    return f"{start.minute} {start.hour} * * *", f"{end.minute} {end.hour} * * *"


def _metadata(prometheus_url: str) -> dict[tuple[str, str], dict[str, str]]:
    start, end = _window_around_now()
    common = {"scalerAddress": "tidescaler.tidescaler.svc.cluster.local:9090"}
    return {
        FULL: {
            **common,
            "timezone": "UTC",
            "start": start,
            "end": end,
            "desiredReplicas": "2",
            "query": f"sum({DEMAND})",
            "threshold": str(THRESHOLD),
            "activationThreshold": "1",
            "forecast": "on",
            "forecastHistory": "2d",
            "podStartupSeconds": "5",  # lead 10 s: forecasts are scored soon
            "maxReplicas": "40",
        },
        CRON_ONLY: {
            **common,
            "timezone": "UTC",
            "start": start,
            "end": end,
            "desiredReplicas": "3",
        },
        BROKEN_BACKEND: {
            **common,
            "prometheusAddress": prometheus_url,
            "query": f"sum(rate({DEMAND}[",  # a PromQL syntax error: HTTP 400 from Prometheus
            "threshold": "10",
        },
        TYPO: {**common, "query": f"sum({DEMAND})", "treshold": "10"},
    }


def _history(exporter: Exporter, now: float) -> str:
    """Two and a half days of a daily tide in the demand series, for the forecast to learn."""
    times = grid(now - 2.5 * 86400, now - 120, 60.0)
    samples = [
        (t, DEMAND_RPS * (0.6 + 0.4 * math.sin(2 * math.pi * (t % 86400) / 86400))) for t in times
    ]
    labels = {"job": "exporter", "instance": exporter.target, "service": "checkout"}
    return openmetrics([Series(DEMAND, labels, samples)])


@dataclass
class LiveRun:
    prometheus: PrometheusServer
    metadata: dict[tuple[str, str], dict[str, str]]
    desired: dict[tuple[str, str], set[int]]  # every GetMetrics answer per ScaledObject
    codes: set[tuple[str, str]]  # (method, code) seen by the driver


def _wait_serving(channel: grpc.Channel, process: subprocess.Popen[bytes], log: Path) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"tidescaler serve exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"tidescaler serve not SERVING after 30 s:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.1)


def _drive(
    stub: pb_grpc.ExternalScalerStub,
    metadata: dict[tuple[str, str], dict[str, str]],
    desired: dict[tuple[str, str], set[int]],
    codes: set[tuple[str, str]],
    stop: threading.Event,
) -> None:
    """Call as KEDA's polling loop does, only faster: spec, metrics, activity, per ScaledObject."""
    while not stop.is_set():
        for (namespace, name), meta in metadata.items():
            ref = pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=meta)
            calls: list[tuple[str, Any]] = [
                ("GetMetricSpec", lambda r=ref: stub.GetMetricSpec(r, timeout=3)),
                (
                    "GetMetrics",
                    lambda r=ref: stub.GetMetrics(
                        pb.GetMetricsRequest(scaledObjectRef=r, metricName="tidescaler"), timeout=3
                    ),
                ),
                ("IsActive", lambda r=ref: stub.IsActive(r, timeout=3)),
            ]
            for method, call in calls:
                try:
                    response = call()
                    codes.add((method, "OK"))
                    if method == "GetMetrics":
                        value = int(response.metricValues[0].metricValue)
                        desired.setdefault((namespace, name), set()).add(value)
                except grpc.RpcError as err:
                    codes.add((method, err.code().name))
        stop.wait(0.2)


@pytest.fixture(scope="module")
def live(
    prometheus_binaries: tuple[str, str],
    exporter: Exporter,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveRun]:
    directory = tmp_path_factory.mktemp("dashboard-live")
    grpc_port, metrics_port = free_port(), free_port()
    exporter.set(DEMAND, DEMAND_RPS, service="checkout")

    prometheus = PrometheusServer(
        directory / "prometheus",
        scrape_targets=[exporter.target, f"127.0.0.1:{metrics_port}"],
    )
    prometheus.backfill(_history(exporter, time.time()))
    prometheus.start()

    log = directory / "tidescaler.log"
    command = [
        sys.executable,
        "-m",
        "scaler.cli",
        "serve",
        "--host=127.0.0.1",
        f"--port={grpc_port}",
        f"--metrics-port={metrics_port}",
        f"--prometheus-url={prometheus.url}",
        "--polling-interval-seconds=5",
        "--log-format=text",
    ]
    # Only the flags above configure it: no TIDESCALER_* from the caller's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDESCALER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    stop = threading.Event()
    driver: threading.Thread | None = None
    try:
        _wait_serving(channel, process, log)
        metadata = _metadata(prometheus.url)
        run = LiveRun(prometheus, metadata, {}, set())
        scaler_stub = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        driver = threading.Thread(
            target=_drive,
            args=(scaler_stub, metadata, run.desired, run.codes, stop),
            daemon=True,
        )
        driver.start()
        # Every series of the run, scraped at least a few times: rate() over the
        # dashboard's interval needs two samples that differ.
        for name in ("tidescaler_desired_replicas", "tidescaler_grpc_requests_total"):
            prometheus.wait_for(name, lambda result: len(result) > 0, timeout_seconds=30)
        time.sleep(5)
        yield run
    finally:
        stop.set()
        if driver is not None:
            driver.join(timeout=10)
        channel.close()
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        prometheus.stop()


def _eventually(run: LiveRun, promql: str, timeout_seconds: float = 60.0) -> list[Any]:
    """Some series (forecast, forecast error) appear only after a background refit."""
    try:
        return run.prometheus.wait_for(promql, lambda r: len(r) > 0, timeout_seconds)
    except TimeoutError:
        pytest.fail(f"{promql} returned no data within {timeout_seconds} s of a live run")


def _label_sets(run: LiveRun, name: str) -> list[dict[str, str]]:
    return [
        {k: v for k, v in series["metric"].items() if k not in {"__name__", "job", "instance"}}
        for series in _eventually(run, name)
    ]


# -- the metrics -------------------------------------------------------------------------

SO_LABELS = {"namespace", "scaledobject"}

PER_SCALEDOBJECT = {
    "tidescaler_desired_replicas": SO_LABELS,
    "tidescaler_signal_replicas": SO_LABELS | {"signal"},
    "tidescaler_signal_status": SO_LABELS | {"signal", "status"},
    "tidescaler_decision_reason": SO_LABELS | {"reason"},
    "tidescaler_active": SO_LABELS,
    "tidescaler_available": SO_LABELS,
    "tidescaler_floor_replicas": SO_LABELS,
    "tidescaler_ceiling_replicas": SO_LABELS,
    "tidescaler_demand": SO_LABELS,
    "tidescaler_forecast_median": SO_LABELS,
    "tidescaler_forecast_upper": SO_LABELS,
    "tidescaler_forecast_smape_ratio": SO_LABELS,
    "tidescaler_forecast_under_prediction_ratio": SO_LABELS,
    "tidescaler_forecast_band_coverage_ratio": SO_LABELS,
    "tidescaler_last_decision_timestamp_seconds": SO_LABELS,
    "tidescaler_backend_errors_total": SO_LABELS | {"kind"},
}
SERVICE = {
    "tidescaler_grpc_requests_total": {"method", "code"},
    "tidescaler_grpc_request_duration_seconds_bucket": {"method", "code", "le"},
    "tidescaler_grpc_request_duration_seconds_count": {"method", "code"},
    "tidescaler_grpc_request_duration_seconds_sum": {"method", "code"},
    "tidescaler_scaledobjects": set(),
}


@pytest.mark.parametrize("name", sorted(PER_SCALEDOBJECT))
def test_every_per_scaledobject_metric_is_scraped_with_its_labels(live: LiveRun, name: str) -> None:
    label_sets = _label_sets(live, name)
    for labels in label_sets:
        assert set(labels) == PER_SCALEDOBJECT[name], labels
        # A ScaledObject whose metadata is invalid never gets a decision.
        assert (labels["namespace"], labels["scaledobject"]) != TYPO


@pytest.mark.parametrize("name", sorted(SERVICE))
def test_every_service_metric_is_scraped_with_its_labels(live: LiveRun, name: str) -> None:
    for labels in _label_sets(live, name):
        assert set(labels) == SERVICE[name], labels


def test_desired_replicas_is_what_getmetrics_answered(live: LiveRun) -> None:
    for key in (FULL, CRON_ONLY):
        namespace, name = key
        promql = f'tidescaler_desired_replicas{{namespace="{namespace}",scaledobject="{name}"}}'
        (series,) = _eventually(live, promql)
        # The forecast's peak over the lead time moves with the clock, so the
        # full policy's answer may change between calls: the scraped value is
        # one of the answers given.
        assert int(float(series["value"][1])) in live.desired[key]
    assert live.desired[CRON_ONLY] == {3}
    # 240 requests/s at 50 per replica: 5, or more when the forecast band is higher
    # (the first answers may still see the backfilled history's last value).
    assert max(live.desired[FULL]) >= math.ceil(DEMAND_RPS / THRESHOLD)


def test_exactly_one_reason_is_current_per_scaledobject(live: LiveRun) -> None:
    result = _eventually(live, "sum by (namespace, scaledobject) (tidescaler_decision_reason)")
    assert {float(s["value"][1]) for s in result} == {1.0}
    reasons = {
        (s["metric"]["scaledobject"], s["metric"]["reason"])
        for s in _eventually(live, "tidescaler_decision_reason == 1")
    }
    assert ("nightly", Reason.CRON.value) in reasons
    assert ("broken-backend", Reason.UNAVAILABLE.value) in reasons
    (full_reason,) = [reason for name, reason in reasons if name == FULL[1]]
    assert full_reason in {Reason.QUERY.value, Reason.FORECAST.value}


def test_the_live_demand_is_exported(live: LiveRun) -> None:
    # Until the exporter's first scrape the query sees the backfilled history.
    live.prometheus.wait_for_value(
        'tidescaler_demand{scaledobject="checkout"}', DEMAND_RPS, timeout_seconds=30
    )


def test_the_rejected_query_is_counted_as_a_backend_error(live: LiveRun) -> None:
    result = _eventually(live, 'tidescaler_backend_errors_total{scaledobject="broken-backend"}')
    assert all(float(s["value"][1]) > 0 for s in result)


def test_refused_requests_are_counted_by_code(live: LiveRun) -> None:
    assert ("GetMetricSpec", "INVALID_ARGUMENT") in live.codes
    assert ("GetMetrics", "UNAVAILABLE") in live.codes
    codes = {
        (s["metric"]["method"], s["metric"]["code"])
        for s in _eventually(live, "tidescaler_grpc_requests_total")
    }
    assert live.codes <= codes


# -- the dashboard -----------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _expressions() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']}/{target['refId']}", target["expr"])
        for panel in _panels()
        for target in panel.get("targets", [])
    ]


def _repeated_row_titles() -> set[str]:
    """Titles of the panels inside the row that repeats per ScaledObject."""
    titles: set[str] = set()
    inside = False
    for panel in _dashboard()["panels"]:
        if panel["type"] == "row":
            inside = panel.get("repeat") == "scaledobject"
        elif inside:
            titles.add(panel["title"])
    return titles


# Grafana's built-in interval variables, as Grafana would fill them in for a
# short time range on a 1 s scrape interval.
GRAFANA_BUILTINS = {"$__rate_interval": "20s", "$__interval": "2s", "$__range": "1m"}


def _render(expr: str, namespace: str, scaledobject: str) -> str:
    for name, value in GRAFANA_BUILTINS.items():
        expr = expr.replace(name, value)
    expr = expr.replace("$namespace", namespace).replace("$scaledobject", scaledobject)
    assert "$" not in expr, f"unrendered variable in {expr}"
    return expr


def _query(run: LiveRun, promql: str) -> dict[str, Any]:
    url = f"{run.prometheus.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            document: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as err:
        body = json.load(err)
        pytest.fail(f"Prometheus rejected {promql}: {body.get('errorType')}: {body.get('error')}")
    return document


def _returns_data(run: LiveRun, promql: str, timeout_seconds: float = 60.0) -> list[Any]:
    """Poll until the expression returns at least one finite sample (it parsed on the first try)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        document = _query(run, promql)
        assert document["status"] == "success", document
        result: list[Any] = document["data"]["result"]
        if any(math.isfinite(float(s["value"][1])) for s in result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{promql} returned no finite data within {timeout_seconds} s: {result}")
        time.sleep(0.5)


def test_the_dashboard_has_the_panels_an_sre_needs() -> None:
    titles = {panel["title"] for panel in _panels()}
    assert {
        "Replicas by signal",
        "Desired replicas",
        "Winning signal / reason",
        "Demand against forecast",
        "Forecast error",
        "Decision reasons over time",
        "gRPC latency p50 / p99",
        "gRPC errors by code",
        "Backend errors by kind",
    } <= titles
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert {"datasource", "namespace", "scaledobject"} <= set(variables)
    for panel in _panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.parametrize("where,expr", _expressions(), ids=[w for w, _ in _expressions()])
def test_every_dashboard_expression_returns_data_for_all_scaledobjects(
    live: LiveRun, where: str, expr: str
) -> None:
    _returns_data(live, _render(expr, ".*", ".*"))


@pytest.mark.parametrize(
    "where,expr",
    [(w, e) for w, e in _expressions() if w.split("/")[0] in _repeated_row_titles()],
    ids=[w for w, _ in _expressions() if w.split("/")[0] in _repeated_row_titles()],
)
def test_the_per_scaledobject_row_returns_data_for_the_full_policy(
    live: LiveRun, where: str, expr: str
) -> None:
    namespace, name = FULL
    result = _returns_data(live, _render(expr, namespace, name))
    for series in result:
        labels = series["metric"]
        assert labels.get("scaledobject", name) == name
        assert labels.get("namespace", namespace) == namespace


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


@pytest.mark.parametrize("variable", ["namespace", "scaledobject"])
def test_the_template_variables_list_the_live_scaledobjects(live: LiveRun, variable: str) -> None:
    (definition,) = [
        v["query"]["query"] for v in _dashboard()["templating"]["list"] if v["name"] == variable
    ]
    match = _LABEL_VALUES.match(definition)
    assert match, definition
    selector = _render(match["selector"], ".*", ".*")
    # Grafana runs label_values(selector, label) as this API call.
    params = urllib.parse.urlencode({"match[]": selector})
    url = f"{live.prometheus.url}/api/v1/label/{match['label']}/values?{params}"
    with urllib.request.urlopen(url, timeout=5) as response:
        values = set(json.load(response)["data"])
    expected = {"namespace": {"shop"}, "scaledobject": {"checkout", "nightly", "broken-backend"}}
    assert values == expected[variable]
