"""`tidescaler validate` on hostile YAML (it reads pull requests in CI): alias bombs,
deep nesting and keys given twice are each one problem line and exit status 1, found in
milliseconds, while ordinary anchors and merge keys keep working."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from scaler.validate import run_validate, validate_text

HEAD = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: web, namespace: shop}
"""
GOOD = (
    HEAD
    + """\
spec:
  scaleTargetRef: {name: web}
  triggers:
    - type: external
      metadata:
        scalerAddress: tidescaler.tidescaler.svc.cluster.local:9090
        query: sum(rate(http_requests_total{service="web"}[1m]))
        threshold: "100"
"""
)


def validate(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str]]:
    path = tmp_path / "so.yaml"
    path.write_text(text, encoding="utf-8")
    status = run_validate(argparse.Namespace(files=[str(path)], all_external=False))
    lines = capsys.readouterr().out.splitlines()
    return status, [line.replace(f"{path}", "so.yaml", 1) for line in lines]


def test_the_good_one_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(tmp_path, GOOD, capsys) == (0, [])


# -- alias bombs -------------------------------------------------------------------------


def bomb(levels: int) -> str:
    lines = ["  x0: &a0 [1,1,1,1,1,1,1,1,1,1]"]
    for i in range(1, levels + 1):
        lines.append(f"  x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    return (
        HEAD
        + "spec:\n  scaleTargetRef: {name: a}\n"
        + "\n".join(lines)
        + (f"\n  triggers: *a{levels}\n")
    )


@pytest.mark.parametrize("levels", [5, 8, 30])
def test_an_alias_bomb_is_refused_in_milliseconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], levels: int
) -> None:
    began = time.perf_counter()
    status, lines = validate(tmp_path, bomb(levels), capsys)
    assert time.perf_counter() - began < 1.0
    assert status == 1
    # Refused where the expanded values pass 100,000: at x4 (10 * 11,111 from aliases).
    assert lines == [
        "so.yaml:10: YAML aliases expand to more than 100,000 values (an alias bomb?); write "
        "the values out, or alias fewer and smaller ones"
    ]


def test_many_small_aliases_add_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # No single alias is large; together they expand past the bound.
    anchor = "  x: &a [" + ",".join(["1"] * 1000) + "]\n"
    uses = "".join(f"  y{i}: *a\n" for i in range(101))
    text = HEAD + "spec:\n  scaleTargetRef: {name: a}\n" + anchor + uses
    status, lines = validate(tmp_path, text, capsys)
    assert status == 1
    assert lines[0].endswith(
        "an alias bomb?); write the values out, or alias fewer and smaller ones"
    )


def test_an_alias_inside_its_own_anchor_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = HEAD + "spec: &s\n  scaleTargetRef: {name: a}\n  triggers: []\n  advanced: *s\n"
    status, lines = validate(tmp_path, text, capsys)
    assert status == 1
    assert lines == [
        "so.yaml:7: alias *s is inside the value &s names, an endless structure that kubectl "
        "refuses; write the value out"
    ]


def test_ordinary_anchors_and_merge_keys_still_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: web, namespace: shop}
spec:
  scaleTargetRef: {name: web}
  triggers:
    - type: external
      metadata: &common
        scalerAddress: tidescaler.tidescaler.svc.cluster.local:9090
        query: sum(rate(http_requests_total{service="web"}[1m]))
        threshold: "100"
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: api, namespace: shop}
spec:
  scaleTargetRef: {name: api}
  triggers:
    - type: external
      metadata:
        <<: &base {scalerAddress: "tidescaler:9090", threshold: "50"}
        query: sum(rate(http_requests_total{service="api"}[1m]))
    - type: external
      metadata:
        <<: *base
        query: sum(rate(http_requests_total{service="api"}[1m]))
        threshold: "not a number"
"""
    status, lines = validate(tmp_path, text, capsys)
    # The merged keys are read: the override of the second trigger is checked.
    assert status == 1
    assert len(lines) == 1
    assert lines[0].startswith("so.yaml:doc 2: scaledobject shop/api: trigger[1]: threshold=")


# -- nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [70, 900, 100_000])
@pytest.mark.parametrize(
    "form",
    ["flow-list", "flow-map", "block-map"],
)
def test_deep_nesting_is_one_problem_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int, form: str
) -> None:
    if form == "flow-list":
        nested = "[" * depth + "]" * depth
    elif form == "flow-map":
        nested = "{a: " * depth + "1" + "}" * depth
    else:
        # Block nesting costs a line per level: 900 levels already is 400 kB.
        nested = "".join(f"\n{'  ' * (i + 2)}k{i}:" for i in range(min(depth, 900))) + " 1"
    text = HEAD + "spec:\n  scaleTargetRef: {name: a}\n  triggers: []\n  advanced: " + nested
    began = time.perf_counter()
    status, lines = validate(tmp_path, text, capsys)
    assert time.perf_counter() - began < 2.0
    assert status == 1
    assert len(lines) == 1
    assert lines[0].endswith(
        "nested more than 64 levels deep (a ScaledObject needs about 10); remove the extra nesting"
    )


def test_nesting_within_the_bound_is_checked_as_usual(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = HEAD + "spec:\n  scaleTargetRef: {name: a}\n  triggers: []\n  extra: " + "[" * 50
    text += "]" * 50 + "\n"
    status, lines = validate(tmp_path, text, capsys)
    assert status == 1
    assert "so.yaml:doc 1: scaledobject shop/web: spec.extra: unknown field 'extra'" in lines


# -- duplicate keys ----------------------------------------------------------------------


def test_a_trigger_with_two_metadata_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace(
        "    - type: external\n",
        "    - type: external\n      metadata:\n        scalerAddress: tidescaler:9090\n"
        '        threshold: "nope"\n',
    )
    status, lines = validate(tmp_path, text, capsys)
    assert status == 1
    assert lines == [
        "so.yaml:doc 1: scaledobject shop/web: spec.triggers[0].metadata: given twice (lines 8 "
        "and 11); YAML keeps only the last, and kubectl rejects duplicate fields: keep one"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            GOOD.replace('threshold: "100"', 'threshold: "100"\n        "threshold": "5"'),
            "so.yaml:doc 1: scaledobject shop/web: spec.triggers[0].metadata.threshold: given "
            "twice (lines 11 and 12)",
        ),
        (
            GOOD + "spec: {}\n",
            "so.yaml:doc 1: scaledobject shop/web: spec: given twice (lines 4 and 12)",
        ),
        (
            GOOD.replace("metadata: {name: web, namespace: shop}", "metadata: {name: a, name: b}"),
            "so.yaml:doc 1: scaledobject default/b: metadata.name: given twice (lines 3 and 3)",
        ),
        (
            "kind: ConfigMap\nkind: ConfigMap\n---\n" + GOOD,
            "so.yaml:doc 1: kind: given twice (lines 1 and 2)",
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n  - kind: ConfigMap\n  - "
            + GOOD.replace("\n", "\n    ").replace(
                "  scaleTargetRef:",
                "  pollingInterval: 5\n      pollingInterval: 6\n      scaleTargetRef:",
            ),
            "so.yaml:doc 1: scaledobject shop/web: spec.pollingInterval: given twice (lines 9 "
            "and 10)",
        ),
        (
            HEAD + "spec:\n  scaleTargetRef: {name: a}\n  triggers: [{type: cpu, type: cpu}]\n",
            "so.yaml:doc 1: scaledobject shop/web: spec.triggers[0].type: given twice (lines 6 "
            "and 6)",
        ),
    ],
    ids=["quoted-and-plain", "top-level", "flow-map", "other-kind", "list-item", "flow-trigger"],
)
def test_a_key_given_twice_at_any_level_is_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    status, lines = validate(tmp_path, text, capsys)
    assert status == 1
    assert (
        f"{problem}; YAML keeps only the last, and kubectl rejects duplicate fields: keep one"
        in (lines)
    )


def test_the_same_key_in_different_mappings_is_fine() -> None:
    text = GOOD + "---\n" + GOOD.replace("name: web", "name: api")
    assert validate_text(text, "so.yaml") == ([], 2)


@pytest.mark.parametrize("char", ["\x1b", "\x00"])
def test_a_control_character_is_one_line_and_other_files_are_still_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], char: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("name: web}", f"name: {char}[31mweb}}", 1), encoding="utf-8")
    other = tmp_path / "other.yaml"
    other.write_text(GOOD.replace('"100"', "100"), encoding="utf-8")
    status = run_validate(argparse.Namespace(files=[str(bad), str(other)], all_external=False))
    lines = capsys.readouterr().out.splitlines()
    assert status == 1
    code = f"#x{ord(char):04x}"
    assert lines[0].startswith(f"{bad}:5: not valid YAML (unacceptable character {code}")
    assert any(line.startswith(f"{other}:doc 1:") for line in lines[1:])
