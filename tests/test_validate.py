"""`tidescaler validate`: ScaledObjects checked offline against KEDA's CRD and the parser."""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import pytest
import yaml

from scaler.cli import main
from scaler.validate import scaledobject_schema, validate_text

ROOT = Path(__file__).resolve().parents[1]
KEDA = ROOT / "scaler" / "data" / "keda"
EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.yaml"))

GOOD = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: web, namespace: shop}
spec:
  scaleTargetRef: {name: web}
  triggers:
    - type: external
      metadata:
        scalerAddress: tidescaler.tidescaler.svc.cluster.local:9090
        query: sum(rate(http_requests_total{service="web"}[1m]))
        threshold: "100"
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    status = main(["validate", *argv])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def test_the_vendored_crds_are_the_ones_the_provenance_names() -> None:
    provenance = (KEDA / "PROVENANCE.md").read_text()
    assert "KEDA v2.20.2" in provenance
    for name in ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml"):
        digest = hashlib.sha256((KEDA / name).read_bytes()).hexdigest()
        assert f"| {name} | {digest} |" in provenance


def test_the_schema_is_keda_v1alpha1_and_requires_triggers() -> None:
    schema = scaledobject_schema()
    assert schema["properties"]["spec"]["required"] == ["scaleTargetRef", "triggers"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_passes(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run([str(path)], capsys)
    assert (status, out) == (0, [])
    assert "1 ScaledObject(s): no problem" in err


def test_one_line_per_problem_with_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = GOOD.replace(
        "  triggers:",
        "  pollingIntervall: 30\n  minReplicaCount: 5\n  maxReplicaCount: 2\n  triggers:",
    )
    bad = bad.replace('threshold: "100"', 'treshold: "100"\n        forecastQuantile: 2')
    path = tmp_path / "so.yaml"
    path.write_text(bad)
    status, out, _ = run([str(path)], capsys)
    where = f"{path}:doc 1: scaledobject shop/web"
    assert status == 1
    assert out == [
        f"{where}: spec.triggers[0].metadata.forecastQuantile: 2 is not of type 'string'; "
        "quote it: '2'",
        f"{where}: spec.pollingIntervall: unknown field 'pollingIntervall' "
        "(did you mean pollingInterval?)",
        f"{where}: spec: minReplicaCount must be less than or equal to maxReplicaCount",
        f"{where}: trigger[0]: unknown key 'treshold' (did you mean threshold?)",
        f"{where}: trigger[0]: threshold is required with query",
        f"{where}: trigger[0]: forecastQuantile='2': expected a quantile from 0.5 to 0.995, "
        "e.g. 0.95 (the band is calibrated on at most 1,000 backtest errors: a higher one "
        "would rest on a handful)",
    ]


def test_quote_it_shows_the_value_as_written_not_as_yaml_read_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = GOOD.replace(
        'threshold: "100"',
        'threshold: "100"\n        forecast: off\n        minReplicas: 010\n'
        "        podStartupSeconds: 60\n        forecastHistory:\n        metricLagSeconds: ~",
    )
    path = tmp_path / "so.yaml"
    path.write_text(bad)
    status, out, _ = run([str(path)], capsys)
    at = f"{path}:doc 1: scaledobject shop/web: spec.triggers[0].metadata"
    assert status == 1
    assert out == [
        f"{at}.forecast: False is not of type 'string'; quote it: 'off'",
        f"{at}.forecastHistory: None is not of type 'string'; the value is empty: write the "
        "value in quotes",
        f"{at}.metricLagSeconds: None is not of type 'string'; YAML reads ~ as null: write the "
        "value in quotes",
        f"{at}.minReplicas: 8 is not of type 'string'; quote it: '010'",
        f"{at}.podStartupSeconds: 60 is not of type 'string'; quote it: '60'",
        # The parser reads what the values say once quoted: `off` is a forecast mode, and
        # 010 ten replicas; an empty value is no duration.
        f"{path}:doc 1: scaledobject shop/web: trigger[0]: metricLagSeconds='': expected a "
        "duration such as 90s, 15m, 7d (at most 1h, or auto)",
        f"{path}:doc 1: scaledobject shop/web: trigger[0]: forecastHistory='': expected a "
        "duration such as 90s, 15m, 7d (more than 0, at most 90d)",
    ]


def test_quote_it_follows_anchors_merge_keys_and_kubectl_lists(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = """\
apiVersion: v1
kind: List
items:
  - apiVersion: keda.sh/v1alpha1
    kind: ScaledObject
    metadata: {name: web, namespace: shop}
    spec:
      scaleTargetRef: {name: web}
      triggers:
        - type: external
          metadata: &base
            scalerAddress: tidescaler:9090
            query: sum(rate(x[1m]))
            threshold: 0100
            forecast: on
        - type: external
          metadata:
            <<: *base
            threshold: 0200
"""
    problems, count = validate_text(text, "l.yaml")
    at = "l.yaml:doc 1: scaledobject shop/web: spec.triggers"
    assert count == 1
    assert problems == [
        f"{at}[0].metadata.forecast: True is not of type 'string'; quote it: 'on'",
        f"{at}[0].metadata.threshold: 64 is not of type 'string'; quote it: '0100'",
        # Merged from the anchor, and the key written after the merge, which wins.
        f"{at}[1].metadata.forecast: True is not of type 'string'; quote it: 'on'",
        f"{at}[1].metadata.threshold: 128 is not of type 'string'; quote it: '0200'",
    ]


def test_kubectl_list_output_and_several_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = yaml.safe_load(GOOD)
    missing = {**good, "metadata": {"name": "api", "namespace": "shop"}}
    missing["spec"] = {"scaleTargetRef": {"name": "api"}}
    # The shape `kubectl get scaledobjects -A -o yaml` prints.
    listing = {"apiVersion": "v1", "kind": "List", "items": [good, missing], "metadata": {}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump_all([deployment, listing, good]))
    status, out, err = run([str(path)], capsys)
    assert status == 1
    assert out == [
        f"{path}:doc 2: scaledobject shop/api: spec: 'triggers' is a required property "
        "(KEDA requires it)"
    ]
    assert "1 problem(s) in 3 ScaledObject(s)" in err


def test_other_external_scalers_are_left_alone_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = GOOD.replace("tidescaler.tidescaler.svc.cluster.local", "other-scaler.ops")
    other = other.replace("query:", "customKey:")
    path = tmp_path / "other.yaml"
    path.write_text(other)
    assert run([str(path)], capsys)[0] == 0
    status, out, _ = run(["--all-external", str(path)], capsys)
    assert status == 1 and any("unknown key 'customKey'" in line for line in out)


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(GOOD))
    assert run(["-"], capsys)[0] == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(GOOD.replace("scaleTargetRef", "scaleTarget")))
    status, out, _ = run(["-"], capsys)
    assert status == 1
    assert out[0].startswith("<stdin>:doc 1: scaledobject shop/web: ")


def test_a_file_not_in_utf8_and_a_missing_api_version_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("metadata: {name: caf\xe9}\n".encode("latin-1"))
    bare = tmp_path / "bare.yaml"
    bare.write_text(
        "kind: ScaledObject\nmetadata: {name: web, namespace: shop}\n"
        "spec: {scaleTargetRef: {name: web}, triggers: []}\n"
    )
    status, out, _ = run([str(latin), str(bare)], capsys)
    assert status == 1
    assert out[0] == f"{latin}: byte 20 is not UTF-8 text; save the file as UTF-8"
    assert any(
        line.endswith("apiVersion: missing; expected keda.sh/v1alpha1") for line in out[1:]
    ), out


def test_broken_yaml_and_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("spec:\n  triggers: [\n")
    status, out, _ = run([str(path), str(tmp_path / "nope.yaml")], capsys)
    assert status == 1
    assert out[0].startswith(f"{path}:3: not valid YAML (")
    assert (
        out[1]
        == f"{tmp_path / 'nope.yaml'}: cannot read (No such file or directory); check the path"
    )


def test_an_integer_too_long_to_read_is_a_problem_line_not_a_traceback() -> None:
    """PyYAML reads an unquoted integer with int(): past Python's 4,300-digit limit that
    raised ValueError out of the loader (a traceback, and nothing else checked)."""
    text = GOOD.replace("kind: ScaledObject", "kind: ScaledObject\nnote: " + "9" * 4301)
    problems, count = validate_text(text, "so.yaml")
    line = 1 + text[: text.index("note:")].count("\n")
    assert count == 0
    assert problems[0].startswith(f"so.yaml:{line}: not valid YAML (an integer that cannot be read")
    # Quoted, it is a string like any other: read, and the file checked as usual.
    assert validate_text(GOOD, "so.yaml") == ([], 1)


def test_a_wrong_api_version(capsys: pytest.CaptureFixture[str]) -> None:
    problems, count = validate_text(GOOD.replace("v1alpha1", "v1"), "so.yaml")
    assert count == 1
    assert problems == [
        "so.yaml:doc 1: scaledobject shop/web: apiVersion 'keda.sh/v1': expected keda.sh/v1alpha1"
    ]


def test_a_scaledobject_without_a_name() -> None:
    problems, _ = validate_text(GOOD.replace("name: web, ", ""), "so.yaml")
    assert problems == [
        "so.yaml:doc 1: scaledobject shop/<no name>: metadata.name: missing; every "
        "ScaledObject needs a name"
    ]


def test_a_scaledjob_naming_tidescaler_is_a_problem_and_other_scaledjobs_are_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = (
        GOOD.replace("kind: ScaledObject", "kind: ScaledJob")
        .replace("name: web, namespace: shop", "name: batch, namespace: shop")
        .replace("scaleTargetRef: {name: web}", "jobTargetRef: {template: {}}")
    )
    path = tmp_path / "jobs.yaml"
    path.write_text(f"{GOOD}---\n{job}")
    status, out, err = run([str(path)], capsys)
    assert status == 1
    assert out == [
        f"{path}:doc 2: scaledjob shop/batch: trigger[0]: tidescaler decides the replicas of a "
        "ScaledObject; KEDA reads a ScaledJob's metric as a number of Jobs to start, so this "
        "trigger would start Jobs on every poll: use a ScaledObject"
    ]
    assert "1 problem(s) in 1 ScaledObject(s) and 1 ScaledJob trigger(s)" in err
    # Inside the List kubectl prints too.
    listed = {"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(job)]}
    assert validate_text(yaml.safe_dump(listed), "l.yaml")[0][0].startswith(
        "l.yaml:doc 1: scaledjob shop/batch: trigger[0]: "
    )
    other = job.replace("tidescaler.tidescaler.svc.cluster.local", "queue-scaler.ops")
    path.write_text(other)
    status, out, err = run([str(path)], capsys)
    assert status == 0 and out == []
    assert "no ScaledObject (other kinds are not checked)" in err
