"""`tidescaler simulate`: JSON shape, timeline CSV, report files, errors."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from scaler.sim.cli import add_simulate_parser

SCENARIO = """
name: cli-small
synthetic: {days: 2, step_seconds: 300, peak_rps: 300, peak_to_valley: 20, noise: 0.05}
warmup_days: 1
cluster: {capacity_per_replica: 50, max_replicas: 40}
forecast_refit_seconds: 43200
seed: 2
"""

FIELDS = {
    "policy",
    "replica_hours",
    "cost_vs_static_peak",
    "slo_violation_ratio",
    "p99_latency_seconds",
    "failed_requests",
    "scaling_actions",
    "mean_utilization",
}


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tidescaler")
    add_simulate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", *argv])
    return int(args.func(args))


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "cli-small.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


def test_json_lists_every_policy_with_the_documented_fields(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timeline = tmp_path / "timeline.csv"
    assert run([str(scenario), "--json", "--timeline-csv", str(timeline)]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [p["policy"] for p in data["policies"]]
    assert names == ["static-peak", "keda-cron", "reactive", "hpa-cpu", "tidescaler", "oracle"]
    for entry in data["policies"]:
        assert set(entry) >= FIELDS
    # Anyone can recompute replica-hours from the timeline.
    with timeline.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    step = float(rows[0]["step_seconds"])
    for entry in data["policies"]:
        pods = sum(int(r[f"{entry['policy']}_pods"]) for r in rows if r["evaluated"] == "1")
        assert pods * step / 3600.0 == pytest.approx(entry["replica_hours"], abs=1e-3)


def test_flags_override_the_scenario(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        str(scenario),
        "--json",
        "--policies",
        "reactive,oracle",
        "--target-utilization",
        "0.5",
        "--capacity-per-replica",
        "100",
        "--slo-ms",
        "300",
        "--scale",
        "2",
        "--pod-startup-seconds",
        "30",
    ]
    assert run(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["policy"] for p in data["policies"]] == ["reactive", "oracle"]
    assert data["threshold"] == 50.0
    assert data["slo_ms"] == 300.0
    assert data["cluster"]["pod_startup"] == "30s"
    assert data["traffic"]["scale"] == 2.0


def test_out_writes_report_plots_and_sweep(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = [
        str(scenario),
        "--policies",
        "reactive,tidescaler",
        "--out",
        str(out),
        "--sweep",
        "target_utilization=0.5,0.9",
    ]
    assert run(argv) == 0
    assert "reactive" in capsys.readouterr().out
    for name in ("report.md", "frontier.png", "capacity.png", "capacity_zoom.png", "result.json"):
        assert (out / name).stat().st_size > 0
    sweep = json.loads((out / "result.json").read_text())["sweep"]
    assert {(p["value"], p["policy"]) for p in sweep} == {
        ("0.5", "reactive"),
        ("0.5", "tidescaler"),
        ("0.9", "reactive"),
        ("0.9", "tidescaler"),
    }
    assert "forecast: 'on'" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policies", "reactive,magic"], "--policies=reactive,magic: magic not known"),
        (["--sweep", "colour=1,2"], "'colour' cannot be swept"),
        (["--target-utilization", "1.5"], "--target-utilization=1.5: expected 0 < F <= 1"),
    ],
    ids=["policy", "sweep", "target"],
)
def test_bad_flags_exit_2_with_a_message(
    scenario: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([str(scenario), *argv]) == 2
    assert message in capsys.readouterr().err.replace("\n", " ")


def test_missing_trace_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--trace", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: cannot open: No such file" in capsys.readouterr().err.replace("\n", "")
