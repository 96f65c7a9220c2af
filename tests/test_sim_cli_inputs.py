"""`tidescaler simulate`: what it reads is never overwritten, a flag that would change
nothing is refused rather than ignored, the same setting has the same range as a flag
and in a sweep, and trigger metadata in a scenario file means what it says."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaler.cli import main
from scaler.sim.scenario import ScenarioError, load_scenario

START = 1_719_792_000  # 2024-07-01T00:00:00Z
STEP = 600  # two days at ten minutes: a run of about a second
# What --out holds after a run (report.md, the plots, result.json).
OUT_FILES = ("report.md", "frontier.png", "capacity.png", "capacity_zoom.png", "result.json")


def write_trace(path: Path) -> Path:
    rows = ["timestamp,requests"]
    for i in range(2 * 86400 // STEP):
        rows.append(f"{START + STEP * i},{6000 + 4000 * math.sin(2 * math.pi * i / 144):.0f}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def simulate(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of `tidescaler simulate` run in this process."""
    try:
        code = main(["simulate", "--warmup-days", "1", *argv])
    except SystemExit as exit_:  # argparse refusing a flag
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def only_error(err: str) -> str:
    """The one line on stderr, checked to be an error and the only line."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# -- --out never overwrites what the run reads ----------------------------------------------


def test_out_holding_the_trace_as_result_json_is_refused_and_the_trace_kept(
    tmp_path: Path,
) -> None:
    """The command as a user types it: a Prometheus export saved as result.json in the
    folder the report goes to."""
    folder = tmp_path / "rj"
    folder.mkdir()
    export = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {},
                    "values": [[START + 60 * i, str(5 + i % 7)] for i in range(3 * 1440)],
                }
            ],
        },
    }
    trace = folder / "result.json"
    trace.write_text(json.dumps(export), encoding="utf-8")
    before = trace.read_bytes()
    argv = ["simulate", "--trace", "rj/result.json", "--policies", "reactive", "--out", "rj"]
    done = subprocess.run(
        [sys.executable, "-m", "scaler.cli", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: --out rj: would overwrite rj/result.json, the trace, which this run reads; "
        "name another folder\n"
    )
    assert trace.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["result.json"]


@pytest.mark.parametrize("name", OUT_FILES)
def test_no_file_written_into_out_may_be_the_trace(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    out.mkdir()
    trace = write_trace(out / name)
    before = trace.read_bytes()
    code, _, err = simulate(
        ["--trace", str(trace), "--policies", "reactive", "--out", str(out)], capsys
    )
    assert code == 2
    assert only_error(err) == (
        f"error: --out {out}: would overwrite {out / name}, the trace, which this run reads; "
        "name another folder"
    )
    assert trace.read_bytes() == before
    assert [p.name for p in out.iterdir()] == [name]


def test_out_may_not_hold_the_scenario_file_or_its_trace_under_any_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    out.mkdir()
    # A scenario file that happens to be called report.md.
    scenario = out / "report.md"
    scenario.write_text("name: s\ntrace: ../tide.csv\n", encoding="utf-8")
    write_trace(tmp_path / "tide.csv")
    code, _, err = simulate([str(scenario), "--policies", "reactive", "--out", str(out)], capsys)
    assert code == 2
    assert f"would overwrite {out / 'report.md'}, the scenario file" in only_error(err)
    assert scenario.read_text(encoding="utf-8") == "name: s\ntrace: ../tide.csv\n"
    # The scenario's trace, reached through a hard link named like an output.
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: s\ntrace: tide.csv\n", encoding="utf-8")
    linked = tmp_path / "linked"
    linked.mkdir()
    os.link(tmp_path / "tide.csv", linked / "capacity.png")
    code, _, err = simulate([str(scenario), "--policies", "reactive", "--out", str(linked)], capsys)
    assert code == 2
    assert f"would overwrite {linked / 'capacity.png'}, the scenario's trace" in only_error(err)


def test_timeline_csv_may_not_be_a_file_out_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two outputs under one name: one write would replace the other."""
    trace = write_trace(tmp_path / "tide.csv")
    out = tmp_path / "report"
    out.mkdir()
    timeline = out / "report.md"
    argv = ["--trace", str(trace), "--policies", "reactive", "--out", str(out)]
    code, _, err = simulate([*argv, "--timeline-csv", str(timeline)], capsys)
    assert code == 2
    assert only_error(err) == (
        f"error: --timeline-csv {timeline}: is where --out writes report.md; name another file"
    )
    assert list(out.iterdir()) == []  # refused before the run: nothing written


def test_out_beside_the_inputs_still_writes_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path / "tide.csv")
    argv = ["--trace", str(trace), "--policies", "reactive", "--out", str(tmp_path), "--json"]
    code, _, err = simulate(argv, capsys)
    assert code == 0, err
    assert {p.name for p in tmp_path.iterdir()} == {"tide.csv", *OUT_FILES}


# -- flags that would change nothing are refused, not ignored ---------------------------------


def test_peak_to_valley_without_a_tide_to_shape_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The bundled demo replays the NASA trace: the ratio would be dropped without a word.
    argv = ["--peak-to-valley", "5", "--days", "2", "--policies", "reactive"]
    code, out, err = simulate(argv, capsys)
    assert code == 2 and out == ""
    assert only_error(err) == (
        "error: --peak-to-valley=5 shapes generated traffic (--synthetic); the bundled demo "
        "replays its trace: add --synthetic, or drop the flag"
    )
    write_trace(tmp_path / "tide.csv")
    replays = tmp_path / "replays.yaml"
    replays.write_text("name: r\ntrace: tide.csv\n", encoding="utf-8")
    code, _, err = simulate([str(replays), "--peak-to-valley", "5"], capsys)
    assert code == 2 and f"{replays} replays its trace: add --synthetic" in only_error(err)
    hourly = tmp_path / "hourly.yaml"
    hourly.write_text("name: h\nsynthetic: {kind: hourly, days: 2}\n", encoding="utf-8")
    code, _, err = simulate([str(hourly), "--peak-to-valley", "5"], capsys)
    assert code == 2 and f"{hourly}'s synthetic traffic is not the tide" in only_error(err)


def test_a_query_without_traffic_to_fetch_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --prometheus-url the bundled demo ran, quietly, with the query's rate
    window as the metric lag: numbers of neither the user's traffic nor the demo."""
    query = 'sum(rate(http_requests_total{service="web"}[5m]))'
    code, out, err = simulate(["--query", query, "--days", "2", "--policies", "reactive"], capsys)
    assert code == 2 and out == ""
    assert only_error(err) == (
        "error: --query without --prometheus-url, --trace, --synthetic or a scenario file would "
        "simulate the bundled demo's traffic; add --prometheus-url URL to fetch your traffic "
        "with the query (or --trace FILE with its export)"
    )
    # With traffic of its own, the query is what the report's metadata carries.
    code, out, err = simulate(
        ["--synthetic", "--query", query, "--days", "2", "--policies", "reactive", "--json"],
        capsys,
    )
    assert code == 0, err


def test_peak_to_valley_still_shapes_the_tide(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tide = tmp_path / "tide.yaml"
    tide.write_text("name: t\nsynthetic: {days: 2}\n", encoding="utf-8")
    for argv in (["--synthetic"], [str(tide)]):
        code, out, err = simulate(
            [*argv, "--peak-to-valley", "5", "--days", "2", "--policies", "reactive", "--json"],
            capsys,
        )
        assert code == 0, err
        assert json.loads(out)["traffic"]["name"] == "synthetic-pv5"


@pytest.mark.parametrize(
    "flags",
    [["--unit", "rate"], ["--fill-missing", "zero"], ["--fill-missing", "error"]],
    ids=["unit", "fill-missing", "fill-missing-as-its-default"],
)
def test_trace_reading_flags_with_generated_traffic_are_refused(
    tmp_path: Path, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Even given as its default value: the user asked for something that cannot happen.
    code, out, err = simulate(["--synthetic", "--days", "2", *flags], capsys)
    assert code == 2 and out == ""
    assert only_error(err) == (
        f"error: {flags[0]} says how to read a trace, and the traffic here is generated "
        f"(--synthetic): drop {flags[0]}, or give the trace with --trace"
    )
    tide = tmp_path / "tide.yaml"
    tide.write_text("name: t\nsynthetic: {days: 2}\n", encoding="utf-8")
    code, _, err = simulate([str(tide), *flags], capsys)
    assert code == 2
    assert f"generated ({tide}'s synthetic traffic): drop {flags[0]}" in only_error(err)


def test_generated_traffic_runs_with_the_reading_flags_left_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = simulate(
        ["--synthetic", "--days", "2", "--policies", "reactive", "--json"], capsys
    )
    assert code == 0, err
    assert [p["policy"] for p in json.loads(out)["policies"]] == ["reactive"]


def test_sweep_policies_without_a_sweep_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path / "tide.csv")
    code, out, err = simulate(["--trace", str(trace), "--sweep-policies", "reactive"], capsys)
    assert code == 2 and out == ""
    assert only_error(err) == (
        "error: --sweep-policies=reactive names the policies a sweep reruns, and there is no "
        "sweep: add --sweep PARAM=v1,v2,..., or drop --sweep-policies"
    )


def test_sweep_policies_applies_to_the_scenario_s_own_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_trace(tmp_path / "tide.csv")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\ntrace: tide.csv\npolicies: [reactive, hpa-cpu]\n"
        "sweep: {target_utilization: [0.5, 0.8]}\n",
        encoding="utf-8",
    )
    swept = {}
    for extra in ([], ["--sweep-policies", "hpa-cpu"]):
        code, out, err = simulate([str(scenario), *extra, "--json"], capsys)
        assert code == 0, err
        swept[len(extra)] = {p["policy"] for p in json.loads(out)["sweep"]}
    assert swept == {0: {"reactive", "hpa-cpu"}, 2: {"hpa-cpu"}}


# -- one range for pod start-up, as a flag and in a sweep -------------------------------------


def test_a_pod_start_up_of_zero_is_accepted_as_a_flag_and_in_a_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path / "tide.csv")
    base = ["--trace", str(trace), "--policies", "reactive", "--json"]
    code, out, err = simulate([*base, "--pod-startup-seconds", "0"], capsys)
    assert code == 0, err
    (flagged,) = json.loads(out)["policies"]
    code, out, err = simulate([*base, "--sweep", "pod_startup_seconds=0,60"], capsys)
    assert code == 0, err
    points = {p["value"]: p for p in json.loads(out)["sweep"]}
    # The sweep's run at 0 is the run of the flag at 0 (pods Ready at once).
    assert points["0"]["replica_hours"] == flagged["replica_hours"]
    assert points["0"]["slo_violation_ratio"] == flagged["slo_violation_ratio"]


@pytest.mark.parametrize("value", ["-1", "90000"])
def test_a_pod_start_up_out_of_range_is_refused_both_ways(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path / "tide.csv")
    base = ["--trace", str(trace), "--policies", "reactive"]
    code, _, err = simulate([*base, f"--pod-startup-seconds={value}"], capsys)
    assert code == 2 and f"--pod-startup-seconds={value}: expected" in only_error(err)
    code, _, err = simulate([*base, "--sweep", f"pod_startup_seconds={value}"], capsys)
    assert code == 2
    assert only_error(err) == (
        f"error: pod_startup_seconds='{value}': expected seconds from 0 to 86400"
    )


# -- trigger metadata in a scenario file, as written --------------------------------------


def test_unquoted_trigger_metadata_means_the_text_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nsynthetic: {days: 2}\npolicies: [tidescaler]\n"
        "tidescaler:\n  forecast: off\n  minReplicas: 010\n  forecastQuantile: 0.90\n"
        "keda_cron:\n  - {timezone: UTC, start: 0 8 * * *, end: 0 9 * * *, desiredReplicas: 03}\n"
        "warmup_days: on\n",  # outside trigger metadata YAML's reading stands (refused below)
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError, match="warmup_days"):
        load_scenario(path)
    path.write_text(path.read_text(encoding="utf-8").replace("warmup_days: on\n", ""))
    scenario = load_scenario(path)
    assert dict(scenario.tidescaler) == {
        "forecast": "off",  # not YAML's false ("false" is not a forecast mode)
        "minReplicas": "010",  # not the octal 8
        "forecastQuantile": "0.90",
    }
    assert scenario.keda_cron is not None
    assert scenario.keda_cron[0]["desiredReplicas"] == "03"
    code, out, err = simulate([str(path), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["policies"][0]["policy"] == "tidescaler"
