"""The dashboard against a live run: a real Prometheus scraping a running `tidescaler serve`.

The service is started as a separate process, exactly as in a pod, and driven
with real gRPC calls the way KEDA makes them (GetMetricSpec, GetMetrics,
IsActive) for a few ScaledObjects chosen to light every panel: a full policy
with cron, query and forecast, another of the same name in a second namespace
(whose cron floor wins, so its numbers and reason differ), a cron-only one, one
whose query the backend rejects, and one with a typo in its metadata; and a
second replica that decided for one of them once, as a replica KEDA's connection
has left keeps doing. Prometheus scrapes both replicas' /metrics every second
and the demand exporter the query reads. The test then checks every exported
metric's labels, that every PromQL expression in the dashboard (panels and
template variables) parses and returns data, and, with the variables filled in
as Grafana fills them, that each copy of the repeated per-ScaledObject row shows
one ScaledObject alone, named by namespace and name, from the replica that
decided last, and that the default selection repeats the row once.
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
# The same name in another namespace, the same signals; its cron floor of 9 wins (the
# query asks for 5), so its desired count and reason are not those of shop/checkout.
SAME_NAME = ("staging", "checkout")
SAME_NAME_FLOOR = 9
CRON_ONLY = ("shop", "nightly")
BROKEN_BACKEND = ("shop", "broken-backend")  # Prometheus rejects its query
TYPO = ("payments", "ledger")  # invalid metadata: never gets a decision
# A second replica that decided for shop/checkout once, before KEDA's connection moved to
# the first (it keeps exporting that decision for about 10 minutes): a cron floor of 33,
# none of the live numbers.
STALE_FLOOR = 33


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
            # A short lead (40 s with the 5 s polling interval and the query's metric lag):
            # forecasts are scored soon.
            "podStartupSeconds": "5",
            "maxReplicas": "40",
        },
        SAME_NAME: {
            **common,
            "timezone": "UTC",
            "start": start,
            "end": end,
            "desiredReplicas": str(SAME_NAME_FLOOR),
            "query": f"sum({DEMAND})",
            "threshold": str(THRESHOLD),
            "activationThreshold": "1",
            "forecast": "on",
            "forecastHistory": "2d",
            # A forecast series of its own (another quantile): its band and its
            # forecast errors are not shop/checkout's.
            "forecastQuantile": "0.9",
            "podStartupSeconds": "5",
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
    instance: str  # the replica KEDA calls, as Prometheus labels its series
    stale_instance: str  # the replica KEDA left (see STALE_FLOOR)


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
    stale_grpc_port, stale_metrics_port = free_port(), free_port()
    exporter.set(DEMAND, DEMAND_RPS, service="checkout")

    instance, stale_instance = f"127.0.0.1:{metrics_port}", f"127.0.0.1:{stale_metrics_port}"
    prometheus = PrometheusServer(
        directory / "prometheus", scrape_targets=[exporter.target, instance, stale_instance]
    )
    prometheus.backfill(_history(exporter, time.time()))
    prometheus.start()

    def serve(port: int, metrics: int, log: Path) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "scaler.cli",
            "serve",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--metrics-port={metrics}",
            f"--prometheus-url={prometheus.url}",
            "--polling-interval-seconds=5",
            "--log-format=text",
        ]
        # Only the flags above configure it: no TIDESCALER_* from the caller's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDESCALER_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with log.open("wb") as out:
            return subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    log, stale_log = directory / "tidescaler.log", directory / "stale.log"
    process = serve(grpc_port, metrics_port, log)
    stale = serve(stale_grpc_port, stale_metrics_port, stale_log)
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    stop = threading.Event()
    driver: threading.Thread | None = None
    try:
        with grpc.insecure_channel(f"127.0.0.1:{stale_grpc_port}") as stale_channel:
            _wait_serving(stale_channel, stale, stale_log)
            start, end = _window_around_now()
            namespace, name = FULL
            left = pb.ScaledObjectRef(
                name=name,
                namespace=namespace,
                scalerMetadata={
                    "timezone": "UTC",
                    "start": start,
                    "end": end,
                    "desiredReplicas": str(STALE_FLOOR),
                },
            )
            stale_stub = pb_grpc.ExternalScalerStub(stale_channel)  # type: ignore[no-untyped-call]
            stale_stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=left), timeout=3)
        _wait_serving(channel, process, log)
        metadata = _metadata(prometheus.url)
        run = LiveRun(prometheus, metadata, {}, set(), instance, stale_instance)
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
            prometheus.wait_for(name, lambda result: len(result) > 1, timeout_seconds=30)
        time.sleep(5)
        yield run
    finally:
        stop.set()
        if driver is not None:
            driver.join(timeout=10)
        channel.close()
        for server in (process, stale):
            server.terminate()
        for server in (process, stale):
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
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
        promql = (
            f'tidescaler_desired_replicas{{namespace="{namespace}",scaledobject="{name}",'
            f'instance="{live.instance}"}}'
        )
        (series,) = _eventually(live, promql)
        # The forecast's peak over the lead time moves with the clock, so the
        # full policy's answer may change between calls: the scraped value is
        # one of the answers given.
        assert int(float(series["value"][1])) in live.desired[key]
    assert live.desired[CRON_ONLY] == {3}
    assert live.desired[SAME_NAME] == {SAME_NAME_FLOOR}
    # 240 requests/s at 50 per replica: 5, or more when the forecast band is higher
    # (the first answers may still see the backfilled history's last value).
    assert max(live.desired[FULL]) >= math.ceil(DEMAND_RPS / THRESHOLD)


def test_exactly_one_reason_is_current_per_scaledobject(live: LiveRun) -> None:
    own = f'{{instance="{live.instance}"}}'
    result = _eventually(
        live, f"sum by (namespace, scaledobject) (tidescaler_decision_reason{own})"
    )
    assert {float(s["value"][1]) for s in result} == {1.0}
    reasons = {
        (s["metric"]["namespace"], s["metric"]["scaledobject"]): s["metric"]["reason"]
        for s in _eventually(live, f"tidescaler_decision_reason{own} == 1")
    }
    assert reasons[CRON_ONLY] == Reason.CRON.value
    assert reasons[BROKEN_BACKEND] == Reason.UNAVAILABLE.value
    assert reasons[FULL] in {Reason.QUERY.value, Reason.FORECAST.value}
    assert reasons[SAME_NAME] == Reason.CRON.value


def test_the_live_demand_is_exported(live: LiveRun) -> None:
    # Until the exporter's first scrape the query sees the backfilled history.
    live.prometheus.wait_for_value(
        'tidescaler_demand{namespace="shop",scaledobject="checkout"}',
        DEMAND_RPS,
        timeout_seconds=30,
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


def _rows() -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each row and the panels under it (in Grafana a row owns the panels up to the next)."""
    rows: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for panel in _dashboard()["panels"]:
        if panel["type"] == "row":
            rows.append((panel, []))
        else:
            assert rows, f"{panel['title']} is above the first row"
            rows[-1][1].append(panel)
    return rows


def _repeated_row() -> dict[str, Any]:
    (row,) = [row for row, _ in _rows() if row.get("repeat")]
    return row


def _repeated_row_panels() -> list[dict[str, Any]]:
    """The panels of the row that repeats per ScaledObject."""
    return [panel for row, panels in _rows() if row.get("repeat") for panel in panels]


def _fleet_panels() -> list[dict[str, Any]]:
    return [
        panel for row, panels in _rows() if row["title"].startswith("Fleet") for panel in panels
    ]


def _expressions(panels: list[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    return [
        (f"{panel['title']}/{target['refId']}", target["expr"])
        for panel in (_panels() if panels is None else panels)
        for target in panel.get("targets", [])
    ]


# Grafana's built-in interval variables, as Grafana would fill them in for a
# short time range on a 1 s scrape interval.
GRAFANA_BUILTINS = {"$__rate_interval": "20s", "$__interval": "2s", "$__range": "1m"}


def _render(text: str, values: dict[str, str]) -> str:
    """An expression with the variables in `values` (already interpolated) filled in."""
    for name, value in GRAFANA_BUILTINS.items():
        text = text.replace(name, value)
    for name, value in values.items():
        text = text.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in text, f"unrendered variable in {text}"
    return text


# -- the template variables, as Grafana fills them in -------------------------------------


def _variables() -> dict[str, dict[str, Any]]:
    """The query variables, in the dashboard's order (each may use those before it)."""
    return {v["name"]: v for v in _dashboard()["templating"]["list"] if v["type"] == "query"}


_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def _interpolate(variable: dict[str, Any], values: list[str]) -> str:
    """Selected values as Grafana's Prometheus data source writes them into a query: as
    they are for a single-value variable, regex-escaped and ORed for one that may hold
    several (a repeated row's copy holds one of them)."""
    if not variable.get("multi") and not variable.get("includeAll"):
        (value,) = values
        return value.replace("\\", "\\\\").replace("'", "\\\\'")
    escaped = [
        _REGEX_SPECIAL.sub(lambda m: "\\\\" + m[0], v.replace("\\", "\\" * 4)) for v in values
    ]
    return escaped[0] if len(escaped) == 1 else f"({'|'.join(escaped)})"


def _all(variable: dict[str, Any], options: list[str]) -> str:
    allvalue: str | None = variable.get("allValue")
    return allvalue if allvalue else _interpolate(variable, options)


def _options(run: LiveRun, variable: dict[str, Any], values: dict[str, str]) -> list[str]:
    """The variable's options for the values chosen before it, as Grafana lists them."""
    match = _LABEL_VALUES.match(variable["query"]["query"])
    assert match, variable["query"]["query"]
    selector = _render(match["selector"], values)
    # Grafana runs label_values(selector, label) as this API call.
    params = urllib.parse.urlencode({"match[]": selector})
    url = f"{run.prometheus.url}/api/v1/label/{match['label']}/values?{params}"
    with urllib.request.urlopen(url, timeout=5) as response:
        options: list[str] = json.load(response)["data"]
    assert variable["sort"] == 1, "the test assumes alphabetical order"
    return sorted(options)


@dataclass
class Row:
    """One copy of the repeated row: its title and every variable as its queries see it."""

    title: str
    values: dict[str, str]


def _every_row(run: LiveRun) -> list[Row]:
    """Each copy of the repeated row under every selection a user can make of the other
    variables: each single value, all of a multi-value variable's values, All."""
    variables = _variables()
    repeat = _repeated_row()["repeat"]
    rows: list[Row] = []

    def walk(names: list[str], values: dict[str, str], shown: dict[str, str]) -> None:
        if not names:
            return
        name, rest = names[0], names[1:]
        variable = variables[name]
        options = _options(run, variable, values)
        if name == repeat:
            for option in options:
                here = {**values, name: _interpolate(variable, [option])}
                rows.append(Row(_render(_repeated_row()["title"], {**shown, name: option}), here))
                walk(rest, here, {**shown, name: option})
            return
        choices: list[tuple[str, str]] = [(_interpolate(variable, [o]), o) for o in options]
        if variable.get("multi") and len(options) > 1:
            choices.append((_interpolate(variable, options), ",".join(options)))
        if variable.get("includeAll"):
            choices.append((_all(variable, options), "All"))
        for value, text in choices:
            walk(rest, {**values, name: value}, {**shown, name: text})

    walk(list(variables), {}, {})
    return rows


_SELECTOR = re.compile(r"\b(?P<name>tidescaler_[a-z_]+)(?:\{[^}]*\})?")


def _scaledobjects_selected(run: LiveRun, expr: str) -> set[tuple[str, str]]:
    """The ScaledObjects (namespace, name) whose series the expression's selectors match."""
    pairs: set[tuple[str, str]] = set()
    for match in _SELECTOR.finditer(expr):
        if match["name"] in PER_SCALEDOBJECT:
            grouped = f"group by (namespace, scaledobject) ({match[0]})"
            for series in _query(run, grouped)["data"]["result"]:
                pairs.add((series["metric"]["namespace"], series["metric"]["scaledobject"]))
    return pairs


@pytest.fixture(scope="module")
def selection(live: LiveRun) -> dict[str, str]:
    """Namespace shop, and every ScaledObject in it selected."""
    variables = _variables()
    values = {"namespace": _interpolate(variables["namespace"], [FULL[0]])}
    options = _options(live, variables["scaledobject"], values)
    return {**values, "scaledobject": _interpolate(variables["scaledobject"], options)}


def _row_values(key: tuple[str, str]) -> dict[str, str]:
    """The variables as the repeated row's copy for ScaledObject `key` sees them."""
    variables = _variables()
    return {
        "namespace": _interpolate(variables["namespace"], [key[0]]),
        "scaledobject": _interpolate(variables["scaledobject"], [key[1]]),
    }


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
        "Decision age",
        "Demand against forecast",
        "Forecast error",
        "Decision reasons over time",
        "KEDA calls by method",
        "ScaledObjects tracked",
        "gRPC latency p50 / p99",
        "gRPC errors by code",
        "Backend errors by kind",
    } <= titles
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert {"datasource", "namespace", "scaledobject"} <= set(variables)
    for panel in _panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    (age,) = [panel for panel in _panels() if panel["title"] == "Decision age"]
    # Its series leave /metrics with the ScaledObject: it cannot grow when KEDA stops.
    assert "blank" in age["description"] and "KEDA calls by method" in age["description"]


@pytest.mark.parametrize("where,expr", _expressions(), ids=[w for w, _ in _expressions()])
def test_every_dashboard_expression_returns_data(
    live: LiveRun, selection: dict[str, str], where: str, expr: str
) -> None:
    _returns_data(live, _render(expr, selection))


ROW_EXPRESSIONS = _expressions(_repeated_row_panels())


@pytest.mark.parametrize("key", [FULL, SAME_NAME], ids="/".join)
@pytest.mark.parametrize("where,expr", ROW_EXPRESSIONS, ids=[w for w, _ in ROW_EXPRESSIONS])
def test_the_per_scaledobject_row_returns_data_for_the_full_policies(
    live: LiveRun, key: tuple[str, str], where: str, expr: str
) -> None:
    namespace, name = key
    result = _returns_data(live, _render(expr, _row_values(key)))
    for series in result:
        labels = series["metric"]
        assert labels.get("scaledobject", name) == name
        assert labels.get("namespace", namespace) == namespace


def test_each_copy_of_the_repeated_row_shows_one_scaledobject(live: LiveRun) -> None:
    """Under every selection (All included, where there is one), a copy of the repeated
    row selects the series of one ScaledObject, named in its title by namespace and
    name: shop/checkout and staging/checkout are never merged."""
    rows: list[tuple[Row, set[tuple[str, str]], set[tuple[str, str]]]] = []
    for row in _every_row(live):
        selected: set[tuple[str, str]] = set()  # whose series its selectors match
        returned: set[tuple[str, str]] = set()  # whose labels its results carry
        for where, expr in ROW_EXPRESSIONS:
            promql = _render(expr, row.values)
            assert _SELECTOR.search(promql), f"{where} reads no tidescaler series"
            selected |= _scaledobjects_selected(live, promql)
            for series in _query(live, promql)["data"]["result"]:
                labels = series["metric"]
                if "namespace" in labels or "scaledobject" in labels:
                    returned.add((labels.get("namespace", "?"), labels.get("scaledobject", "?")))
        rows.append((row, selected, returned))
    merged = {row.title: sorted(selected) for row, selected, _ in rows if len(selected) != 1}
    assert not merged, f"rows that do not show exactly one ScaledObject: {merged}"
    for row, selected, returned in rows:
        assert returned <= selected, (row.title, returned)
        ((namespace, name),) = selected
        assert f"{namespace}/{name}" in row.title, f"the row {row.title!r} shows {namespace}/{name}"
    shown = {pair for _, selected, _ in rows for pair in selected}
    assert {FULL, SAME_NAME, CRON_ONLY, BROKEN_BACKEND} <= shown


def test_same_named_scaledobjects_show_their_own_numbers(live: LiveRun) -> None:
    (replicas,) = [p for p in _repeated_row_panels() if p["title"] == "Replicas by signal"]
    (desired,) = [t["expr"] for t in replicas["targets"] if t["legendFormat"] == "desired"]
    (timeline,) = [p for p in _repeated_row_panels() if p["title"] == "Decision reason"]
    (reason,) = [t["expr"] for t in timeline["targets"]]
    for key in (FULL, SAME_NAME):
        (series,) = _returns_data(live, _render(desired, _row_values(key)))
        assert int(float(series["value"][1])) in live.desired[key], key
        reasons = {
            s["metric"]["reason"] for s in _returns_data(live, _render(reason, _row_values(key)))
        }
        if key == SAME_NAME:
            assert reasons == {Reason.CRON.value}
        else:
            assert len(reasons) == 1 and Reason.CRON.value not in reasons, reasons


def test_a_replica_keda_left_does_not_show(live: LiveRun) -> None:
    """KEDA keeps one connection to the Service's address; when it moves to the other
    replica, the first keeps exporting its last decision until the idle bound (about 10
    minutes). Each panel shows the replica that decided last: a maximum over replicas
    showed the stale floor of 33 and its reason beside the live ones."""
    namespace, name = FULL
    stale = _eventually(
        live,
        f'tidescaler_desired_replicas{{namespace="{namespace}",scaledobject="{name}",'
        f'instance="{live.stale_instance}"}}',
    )
    assert [float(s["value"][1]) for s in stale] == [STALE_FLOOR]
    panels = {panel["title"]: panel for panel in _panels()}
    exprs = {
        (title, target.get("legendFormat", "")): target["expr"]
        for title in ("Replicas by signal", "Desired replicas", "Decision reason")
        for target in panels[title]["targets"]
    }
    values = _row_values(FULL)
    for key in (
        ("Desired replicas", "{{namespace}}/{{scaledobject}}"),
        ("Replicas by signal", "desired"),
    ):
        (desired,) = _returns_data(live, _render(exprs[key], values))
        assert int(float(desired["value"][1])) in live.desired[FULL], key
    (floor,) = _returns_data(live, _render(exprs[("Replicas by signal", "window floor")], values))
    assert float(floor["value"][1]) == float(live.metadata[FULL]["desiredReplicas"])
    reasons = {
        s["metric"]["reason"]
        for s in _returns_data(live, _render(exprs[("Decision reason", "{{reason}}")], values))
    }
    assert Reason.CRON.value not in reasons and len(reasons) == 1, reasons
    # The fleet's count of ScaledObjects by reason counts shop/checkout once.
    (over_time,) = panels["Decision reasons over time"]["targets"]
    counted = sum(float(s["value"][1]) for s in _returns_data(live, _render(over_time["expr"], {})))
    assert counted == len(live.metadata) - 1  # every decided ScaledObject, once


def test_the_default_selection_repeats_one_row(live: LiveRun) -> None:
    """With no saved selection Grafana picks each variable's first option, which is All
    when the variable offers All: the row must repeat once, not once per ScaledObject."""
    repeat = _repeated_row()["repeat"]
    values: dict[str, str] = {}
    rows: list[str] = []
    for name, variable in _variables().items():
        options = _options(live, variable, values)
        current = (variable.get("current") or {}).get("value")
        chosen = [current] if isinstance(current, str) else current
        if not chosen:
            chosen = ["$__all"] if variable.get("includeAll") else options[:1]
        if chosen == ["$__all"]:
            chosen = options
            values[name] = _all(variable, options)
        else:
            values[name] = _interpolate(variable, chosen)
        if name == repeat:
            rows = chosen
    assert len(rows) == 1, f"the default selection repeats the row for {rows}"


def test_panels_that_show_several_scaledobjects_name_their_namespace(
    live: LiveRun, selection: dict[str, str]
) -> None:
    """Outside the repeated row a panel shows every selected ScaledObject, or all of them:
    each series keeps its namespace, and the legend says it."""
    repeated = {panel["title"] for panel in _repeated_row_panels()}
    for panel in _panels():
        if panel["title"] in repeated:
            continue
        for target in panel.get("targets", []):
            promql = _render(target["expr"], selection)
            for series in _query(live, promql)["data"]["result"]:
                if "scaledobject" in series["metric"]:
                    assert "namespace" in series["metric"], (panel["title"], promql)
                    legend = target.get("legendFormat", "__auto")
                    assert legend == "__auto" or "{{namespace}}" in legend, panel["title"]


def test_the_fleet_row_counts_calls_and_scaledobjects_across_namespaces(live: LiveRun) -> None:
    fleet = {panel["title"]: panel for panel in _fleet_panels()}
    for title, panel in fleet.items():
        for target in panel["targets"]:
            assert "$namespace" not in target["expr"], title  # every namespace, not the selected
            assert "$scaledobject" not in target["expr"], title

    (calls,) = fleet["KEDA calls by method"]["targets"]
    result = _returns_data(live, _render(calls["expr"], {}))
    calling = {s["metric"]["method"] for s in result if float(s["value"][1]) > 0}
    assert {"GetMetricSpec", "GetMetrics", "IsActive"} <= calling

    # Every ScaledObject but the one whose metadata is invalid has a decision; the replica
    # KEDA left tracks the one it decided for.
    decided = len(live.metadata) - 1
    per_instance, distinct = fleet["ScaledObjects tracked"]["targets"]
    tracked = {
        s["metric"]["instance"]: float(s["value"][1])
        for s in _returns_data(live, _render(per_instance["expr"], {}))
    }
    assert tracked == {live.instance: decided, live.stale_instance: 1}
    (series,) = _returns_data(live, _render(distinct["expr"], {}))
    assert float(series["value"][1]) == decided, distinct["expr"]


@pytest.mark.parametrize("variable", ["namespace", "scaledobject"])
def test_the_template_variables_list_the_live_scaledobjects(live: LiveRun, variable: str) -> None:
    variables = _variables()
    if variable == "namespace":
        assert _options(live, variables["namespace"], {}) == ["shop", "staging"]
        return
    for namespace, expected in (
        ("shop", ["broken-backend", "checkout", "nightly"]),
        ("staging", ["checkout"]),
    ):
        values = {"namespace": _interpolate(variables["namespace"], [namespace])}
        assert _options(live, variables["scaledobject"], values) == expected
