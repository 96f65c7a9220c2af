"""deploy/alerts: the alerting rules are valid, fire when they should and only then, read
metrics the service exports, and ship unchanged as the Prometheus Operator component.

`promtool check rules` checks the rule file; `promtool test rules` runs the unit tests
in tests/data/tidescaler-rules-test.yaml (each alert fires for its situation with the
annotations it renders, and stays silent for the healthy series beside it), and each
alert made never to fire, or to fire for the healthy series too (its threshold dropped),
must fail them. Every metric, label and label value the rules read must be one that
`tidescaler serve` exports (or the scrape adds). The PrometheusRule in
deploy/components/alerts holds the rule file's groups verbatim under `spec:`

    python tests/test_alerts.py   # writes them there again after the rule file changed

and is checked against the fields the operator's CRD declares (its schema is not
shipped with this repository or any package installed here, so the fields are written
out below, strictly: a misspelt key, which the API server would silently prune, fails).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
import yaml
from kustomize_render import render_docs
from prometheus_client import CollectorRegistry

from scaler.engine import Decision, Reason, Signal, SignalReading, SignalStatus
from scaler.forecast_service import _SeriesCollector
from scaler.sources.prometheus import BackendErrorKind
from scaler.telemetry import Telemetry
from scaler.tls_files import tls_metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "alerts" / "tidescaler-rules.yaml"
COMPONENT = DEPLOY / "components" / "alerts"
PROMETHEUS_RULE = COMPONENT / "prometheusrule.yaml"
PODMONITOR = DEPLOY / "components" / "podmonitor" / "podmonitor.yaml"
UNIT_TESTS = Path(__file__).resolve().parent / "data" / "tidescaler-rules-test.yaml"
KUBECTL = shutil.which("kubectl")

Doc = dict[str, Any]


def load(path: Path) -> Doc:
    doc: Doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def rules() -> list[Doc]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]]


def alert_names() -> list[str]:
    return sorted({rule["alert"] for rule in rules()})


# -- the PrometheusRule, generated from the rule file ---------------------------------


def prometheus_rule_spec(rules_text: str) -> str:
    """The rule file's groups (from `groups:` on, comments included) as `spec:`'s body."""
    start = re.search(r"^groups:\n", rules_text, re.M)
    assert start, f"{RULES} has no top-level `groups:`"
    lines = rules_text[start.start() :].splitlines(keepends=True)
    return "".join(f"  {line}" if line.strip() else line for line in lines)


def prometheus_rule_text(current: str, rules_text: str) -> str:
    """`current` (the component's file) with its `spec:` made the rule file's groups."""
    head, found, _ = current.partition("\nspec:\n")
    assert found, f"{PROMETHEUS_RULE} has no top-level `spec:`"
    return f"{head}\nspec:\n{prometheus_rule_spec(rules_text)}"


def test_the_prometheusrule_holds_the_rule_files_groups_verbatim() -> None:
    current = PROMETHEUS_RULE.read_text(encoding="utf-8")
    assert load(PROMETHEUS_RULE)["spec"]["groups"] == load(RULES)["groups"], (
        f"{PROMETHEUS_RULE} is stale: run `python tests/test_alerts.py`"
    )
    # Comments included (the reasons for each rule go along).
    assert current == prometheus_rule_text(current, RULES.read_text(encoding="utf-8")), (
        f"{PROMETHEUS_RULE} is stale: run `python tests/test_alerts.py`"
    )


def test_the_generator_notices_a_changed_rule_file() -> None:
    current = PROMETHEUS_RULE.read_text(encoding="utf-8")
    changed = RULES.read_text(encoding="utf-8").replace("for: 5m", "for: 6m", 1)
    regenerated = yaml.safe_load(prometheus_rule_text(current, changed))
    assert regenerated["spec"]["groups"] == yaml.safe_load(changed)["groups"]
    assert regenerated["spec"]["groups"] != load(PROMETHEUS_RULE)["spec"]["groups"]
    assert regenerated["metadata"] == load(PROMETHEUS_RULE)["metadata"]


# -- the component renders -------------------------------------------------------------

DURATION = r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
# The fields of monitoring.coreos.com/v1 PrometheusRule that the operator's CRD declares
# (spec.groups[] and their rules), not its schema itself: no copy of it is at hand.
PROMETHEUS_RULE_SCHEMA: Doc = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": STRINGS,
                "annotations": STRINGS,
            },
        },
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": DURATION},
                            "limit": {"type": "integer"},
                            "query_offset": {"type": "string", "pattern": DURATION},
                            "partial_response_strategy": {"type": "string"},
                            "labels": STRINGS,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "minLength": 1},
                                        "record": {"type": "string", "minLength": 1},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": {"type": "string", "pattern": DURATION},
                                        "keep_firing_for": {
                                            "type": "string",
                                            "pattern": DURATION,
                                        },
                                        "labels": STRINGS,
                                        "annotations": STRINGS,
                                    },
                                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def overlay(tmp_path: Path, *, base: bool) -> Path:
    """An overlay adding the alerts (and the PodMonitor) to the base, or the alerts alone."""
    doc: Doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "components": [os.path.relpath(COMPONENT, tmp_path)],
    }
    if base:
        doc["resources"] = [os.path.relpath(DEPLOY, tmp_path)]
        doc["components"].insert(0, os.path.relpath(PODMONITOR.parent, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def the_prometheus_rule(docs: list[Doc]) -> Doc:
    found = [doc for doc in docs if doc["kind"] == "PrometheusRule"]
    assert len(found) == 1, f"expected one PrometheusRule, found {len(found)}"
    return found[0]


def check_rendered(rule: Doc) -> None:
    jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    assert rule["metadata"]["namespace"] == "tidescaler"
    assert rule["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tidescaler"
    assert rule["spec"]["groups"] == load(RULES)["groups"]


def test_the_component_renders_with_the_projects_renderer(tmp_path: Path) -> None:
    check_rendered(the_prometheus_rule(render_docs(overlay(tmp_path, base=False))))


def test_an_overlay_adds_the_alerts_to_the_base_with_kustomize(tmp_path: Path) -> None:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the kustomize build is not checked")
    result = subprocess.run(
        [KUBECTL, "kustomize", str(overlay(tmp_path, base=True))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    check_rendered(the_prometheus_rule(docs))
    assert {"PodMonitor", "Deployment"} <= {doc["kind"] for doc in docs}


def test_the_schema_rejects_a_misspelt_rule_field() -> None:
    # Guards the check above: the API server would prune the field without a word.
    rule = load(PROMETHEUS_RULE)
    rule["spec"]["groups"][0]["rules"][0]["annotation"] = {"summary": "x"}
    with pytest.raises(jsonschema.ValidationError, match="annotation"):
        jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)


def test_the_prometheus_that_scrapes_tidescaler_selects_its_rules() -> None:
    monitor, rule = load(PODMONITOR), load(PROMETHEUS_RULE)
    assert rule["metadata"]["labels"]["release"] == monitor["metadata"]["labels"]["release"]
    # `up` of the PodMonitor's job, which the operator names "<namespace>/<name>".
    job = f"{monitor['metadata']['namespace']}/{monitor['metadata']['name']}"
    (target_down,) = [r for r in rules() if r["alert"] == "TidescalerTargetDown"]
    assert f'up{{job="{job}"}}' in target_down["expr"]


# -- the rules read what the service exports --------------------------------------------


class _NoForecasts:
    def census(self) -> tuple[dict[Any, int], int]:
        return {}, 0


@cache
def exported() -> dict[str, set[str]]:
    """Every sample name `tidescaler serve` exports, with its label names."""
    registry = CollectorRegistry()
    telemetry = Telemetry(registry, clock=lambda: 1_700_000_000.0)
    decision = Decision(
        desired_replicas=2,
        active=True,
        reason=Reason.QUERY,
        signals=(SignalReading(Signal.QUERY, SignalStatus.OK, replicas=2, value=1.0),),
        floor=1,
        ceiling=10,
    )
    telemetry.record_decision("shop", "web", decision, 1.0, 1_700_000_000.0)
    telemetry.record_backend_error("shop", "web", BackendErrorKind.TIMEOUT.value)
    telemetry.record_rpc("GetMetrics", "INVALID_ARGUMENT", 0.01)
    tls_metrics(registry)("loaded", 1_800_000_000.0)
    registry.register(_SeriesCollector(_NoForecasts()))  # type: ignore[arg-type]
    names: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


# Labels the scrape adds (the PodMonitor's target labels).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint"}
SELECTOR = re.compile(r"\b(tidescaler_\w+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
LABEL_VALUES = {
    "code": {code.name for code in grpc.StatusCode},
    "kind": {kind.value for kind in BackendErrorKind},
}


def test_absent_has_a_metric_every_instance_exports_from_the_start() -> None:
    registry = CollectorRegistry()
    Telemetry(registry)
    assert registry.get_sample_value("tidescaler_scaledobjects") == 0
    (down,) = [r for r in rules() if r["alert"] == "TidescalerDown"]
    assert down["expr"] == "absent(tidescaler_scaledobjects)"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: f"{r['alert']}:{r['labels']['severity']}")
def test_every_rule_reads_metrics_and_labels_that_exist(rule: Doc) -> None:
    expr = rule["expr"]
    used = SELECTOR.findall(expr)
    if not used:
        assert expr.startswith("up{"), expr  # Prometheus' own, of the scrape
        return
    labels = set(TARGET_LABELS)
    for name, matchers in used:
        assert name in exported(), f"{name} is not exported"
        labels |= exported()[name]
        for label, op, value in MATCHER.findall(matchers):
            assert label in exported()[name], f"{name} has no label {label}"
            allowed = LABEL_VALUES.get(label)
            if allowed is not None:
                assert set(value.split("|")) <= allowed, f"{label}{op}{value!r}"
    for grouping in GROUPING.findall(expr):
        assert {g.strip() for g in grouping.split(",") if g.strip()} <= labels, grouping


@pytest.mark.parametrize("rule", rules(), ids=lambda r: f"{r['alert']}:{r['labels']['severity']}")
def test_every_alert_has_a_severity_a_delay_and_says_what_to_do(rule: Doc) -> None:
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert re.fullmatch(DURATION, rule["for"]) and rule["for"] != "0"
    assert set(rule["annotations"]) == {"summary", "description"}
    if "scaledobject" in SELECTOR.sub("", rule["expr"]):
        # Per-ScaledObject alerts name it.
        text = rule["annotations"]["summary"]
        assert "{{ $labels.namespace }}/{{ $labels.scaledobject }}" in text


# -- promtool ---------------------------------------------------------------------------


def promtool(binaries: tuple[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binaries[1], *map(str, args)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.prometheus
def test_promtool_checks_the_rule_file(prometheus_binaries: tuple[str, str]) -> None:
    result = promtool(prometheus_binaries, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@pytest.mark.prometheus
def test_promtool_unit_tests_pass(prometheus_binaries: tuple[str, str]) -> None:
    result = promtool(prometheus_binaries, "test", "rules", UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_unit_tests_that_fire_it_and_keep_it_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in load(UNIT_TESTS)["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert firing == silent == set(alert_names())


def mutated(tmp_path: Path, alert: str, change: Callable[[str], str]) -> Path:
    """The unit tests, run against the rule file with `alert`'s expressions changed."""
    groups = load(RULES)
    for group in groups["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = change(rule["expr"])
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(groups))
    tests = load(UNIT_TESTS)
    tests["rule_files"] = [str(rules_file)]
    tests_file = tmp_path / "tests.yaml"
    tests_file.write_text(yaml.safe_dump(tests))
    return tests_file


def assert_unit_tests_fail(
    binaries: tuple[str, str], tmp_path: Path, alert: str, change: Callable[[str], str]
) -> None:
    result = promtool(binaries, "test", "rules", mutated(tmp_path, alert, change))
    assert result.returncode != 0, f"the unit tests pass with {alert} changed"
    assert f"alertname: {alert}," in result.stdout + result.stderr


@pytest.mark.prometheus
@pytest.mark.parametrize("alert", alert_names())
def test_the_unit_tests_fail_when_an_alert_never_fires(
    alert: str, tmp_path: Path, prometheus_binaries: tuple[str, str]
) -> None:
    assert_unit_tests_fail(prometheus_binaries, tmp_path, alert, lambda expr: "vector(1) < 0")


# The comparison an expression ends with: without it, the alert fires for the healthy
# series too (ones that have been healthy for longer than its `for`).
THRESHOLD = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.* ]+$")


def test_every_alert_but_absent_ends_with_its_threshold() -> None:
    without = {rule["alert"] for rule in rules() if not THRESHOLD.search(rule["expr"])}
    assert without == {"TidescalerDown"}  # absent() is its own condition


@pytest.mark.prometheus
@pytest.mark.parametrize("alert", [a for a in alert_names() if a != "TidescalerDown"])
def test_the_unit_tests_fail_when_an_alert_fires_for_healthy_series(
    alert: str, tmp_path: Path, prometheus_binaries: tuple[str, str]
) -> None:
    assert_unit_tests_fail(
        prometheus_binaries, tmp_path, alert, lambda expr: THRESHOLD.sub("", expr)
    )


if __name__ == "__main__":
    current = PROMETHEUS_RULE.read_text(encoding="utf-8")
    PROMETHEUS_RULE.write_text(
        prometheus_rule_text(current, RULES.read_text(encoding="utf-8")), encoding="utf-8"
    )
    sys.stdout.write(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}\n")
