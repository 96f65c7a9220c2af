"""`tidescaler simulate`: JSON shape, timeline CSV, report files, errors."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from scaler.sim.cli import add_simulate_parser
from scaler.sim.report import _coarse_grid_lines, _pick
from scaler.sim.runner import Span, SweepPoint

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
    printed = " ".join(capsys.readouterr().out.split())  # as one line, whatever the width
    assert "reactive" in printed
    assert "chosen on the first half of the days and measured on the second" in printed
    assert "Targets were swept in steps of up to 20 %" in printed  # 0.5, 0.7 (as given), 0.9
    for name in ("report.md", "frontier.png", "capacity.png", "capacity_zoom.png", "result.json"):
        assert (out / name).stat().st_size > 0
    written = json.loads((out / "result.json").read_text())
    assert written["schema_version"] == 1  # the file carries it as --json does
    sweep = written["sweep"]
    assert {(p["value"], p["policy"]) for p in sweep} == {
        ("0.5", "reactive"),
        ("0.5", "tidescaler"),
        ("0.9", "reactive"),
        ("0.9", "tidescaler"),
    }
    assert "forecast: 'on'" in (out / "report.md").read_text()


def deploy_blocks(report: str) -> dict[str, tuple[str, dict[str, str]]]:
    """report.md's "What to deploy": budget -> (the pick's header, its trigger metadata)."""
    section = report.split("## What to deploy", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, tuple[str, dict[str, str]]] = {}
    for part in section.split("Within ")[1:]:
        header, rest = part.split(":\n", 1)
        budgets, pick = header.split(" (", 1)
        metadata = yaml.safe_load(rest.split("```yaml\n", 1)[1].split("```", 1)[0])["metadata"]
        for budget in budgets.split(" or "):
            blocks[budget] = (pick, metadata)
    return blocks


def test_the_report_gives_each_budgets_pick_as_metadata_to_deploy(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The block to paste said `forecast: on` at the scenario's own target whatever the
    budget table recommended; each budget now gets its pick's target and the gate's word."""
    out = tmp_path / "out"
    argv = [str(scenario), "--policies", "reactive,tidescaler", "--out", str(out)]
    assert run([*argv, "--sweep", "target_utilization=0.4,0.55,0.9"]) == 0
    report = (out / "report.md").read_text()
    table = report.split("## Frontier against frontier", 1)[1].split("\n\n")[2]
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    blocks = deploy_blocks(report)
    assert rows and set(blocks) <= {cells[0].strip() for cells in rows}
    checked = 0
    for cells in rows:
        budget, word = cells[0].strip(), cells[-1].strip()
        if word == "-":  # neither policy meets this budget: nothing to deploy
            assert budget not in blocks
            continue
        pick, metadata = blocks[budget]
        # The gate's pick: tidescaler's where the forecast is on, reactive's where off.
        assert pick.startswith("tidescaler's pick" if word == "on" else "reactive's pick")
        assert metadata["forecast"] == word
        target = float(pick.split("target ")[1].rstrip("):"))
        assert float(metadata["threshold"]) == pytest.approx(target * 50)  # capacity 50
        assert metadata["query"] and metadata["maxReplicas"] == "40"
        checked += 1
    assert checked
    # The Results table's run is still given, and said not to be the one to deploy.
    simulated = report.split("## The tidescaler policy as simulated", 1)[1]
    assert "deploy a budget's block above instead" in simulated
    assert "threshold: '35'" in simulated  # the scenario's own 70 % of 50


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


# -- mistakes caught before the run, and what the run tells ---------------------------------


def trace_file(tmp_path: Path, days: float = 2, peak: float = 300.0) -> Path:
    """A daily tide at one minute, requests per minute."""
    path = tmp_path / "tide.csv"
    t0 = 1_719_792_000
    with path.open("w") as handle:
        handle.write("timestamp,requests\n")
        for i in range(int(days * 1440)):
            t = t0 + 60 * i
            rate = peak * (0.55 + 0.45 * math.cos(2 * math.pi * (t % 86400 - 50400) / 86400))
            handle.write(f"{t},{round(60 * rate)}\n")
    return path


@pytest.mark.parametrize(
    ("flag", "make", "message"),
    [
        ("--out", "file", "--out {path}: is a file, not a folder; name a folder"),
        ("--timeline-csv", "missing", "--timeline-csv {path}: folder {parent} does not exist"),
        ("--timeline-csv", "folder", "--timeline-csv {path}: is a folder; name a file inside it"),
    ],
    ids=["out-is-a-file", "timeline-in-missing-folder", "timeline-is-a-folder"],
)
def test_output_paths_are_checked_before_the_run(
    scenario: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    make: str,
    message: str,
) -> None:
    path = tmp_path / ("missing/timeline.csv" if make == "missing" else "target")
    if make == "file":
        path.write_text("keep me")
    elif make == "folder":
        path.mkdir()
    began = time.perf_counter()
    assert run([str(scenario), flag, str(path)]) == 2
    assert time.perf_counter() - began < 1.0  # before the simulation, not after
    err = capsys.readouterr().err
    assert message.format(path=path, parent=path.parent) in err
    assert "Traceback" not in err and err.count("\n") == 1
    if make == "file":
        assert path.read_text() == "keep me"


def test_an_slo_no_replica_count_meets_fails_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.perf_counter()
    assert run(["--trace", str(trace_file(tmp_path)), "--capacity-per-replica", "13"]) == 2
    assert time.perf_counter() - began < 1.0
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: invalid scenario: flags: the SLO is unreachable at this capacity")
    assert "capacity_per_replica=13 req/s with concurrency_per_pod=1" in err
    assert "Reachable with slo_ms above 531.4" in err
    # Without the oracle nothing loops: the same text is a warning and the run goes on.
    argv = ["--trace", str(trace_file(tmp_path)), "--capacity-per-replica", "13"]
    assert run([*argv, "--policies", "static-peak", "--json"]) == 0
    assert "the SLO is unreachable at this capacity" in capsys.readouterr().err
    # The bound is exact for the model: at the suggested SLO the run goes through.
    assert run([*argv, "--slo-ms", "532", "--policies", "oracle", "--json"]) == 0


def test_a_peak_below_one_replica_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = trace_file(tmp_path, peak=10.0)
    assert run(["--trace", str(path), "--policies", "static-peak,reactive", "--json"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "warning: the traffic's peak, 10 requests/s, is below one replica's target of 35 "
        "requests/s: every policy runs at most one replica" in err
    )


def test_a_peak_below_one_replica_that_scales_to_zero_is_not_said_to_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # At min replicas 0 the policies differ in when they scale to zero (reactive failed
    # requests where tidescaler had none), and the warning said "they will not differ".
    path = trace_file(tmp_path, peak=10.0)
    assert run(["--trace", str(path), "--min-replicas", "0", "--policies", "reactive"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "every policy runs at most one replica: they differ only in when they scale to zero" in err
    )
    assert "will not differ" not in err


def test_a_peak_below_one_replica_at_min_replicas_says_what_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = trace_file(tmp_path, peak=10.0)
    argv = ["--trace", str(path), "--min-replicas", "5", "--max-replicas", "5", "--json"]
    assert run([*argv, "--policies", "reactive,static-peak,hpa-cpu"]) == 0
    out, err = capsys.readouterr()
    err = " ".join(err.split())
    assert "at most one replica" not in err
    assert (
        "below one replica's target of 35 requests/s: every policy but the oracle stays at "
        "min replicas 5 and they will not differ; lower --min-replicas" in err
    )
    # What the warning says is what ran: static-peak too holds five replicas.
    policies = {p["policy"]: p for p in json.loads(out)["policies"]}
    assert {p["peak_replicas"] for p in policies.values()} == {5}
    assert policies["static-peak"]["replica_hours"] == policies["reactive"]["replica_hours"]


def test_a_grid_too_large_for_memory_is_refused_with_the_days_that_fit() -> None:
    from scaler.sim.sanity import BYTES_PER_STEP, SanityError, check_memory
    from scaler.sim.scenario import parse_scenario
    from scaler.sim.traffic import Traffic

    scenario = parse_scenario({"name": "big", "synthetic": {}}, "flags", Path.cwd())
    year = Traffic(0.0, 60.0, np.zeros(365 * 1440))
    steps = 365 * 86400 / scenario.cluster.hpa_sync_seconds
    check_memory(scenario, year, available=int(steps * BYTES_PER_STEP) + 1)
    with pytest.raises(SanityError) as err:
        check_memory(scenario, year, available=int(steps * BYTES_PER_STEP / 10))
    assert "365 days of traffic need about" in str(err.value)
    assert "pass --days 36 or less" in str(err.value)


def test_an_address_space_limit_is_memory_the_check_counts(tmp_path: Path) -> None:
    # A process under `ulimit -v` (prlimit --as) cannot map what the machine has free:
    # a year at one minute must be refused before the work, in one line, not run into
    # numpy's MemoryError with a traceback.
    path = tmp_path / "year.csv"
    minutes = np.arange(365 * 1440)
    np.savetxt(
        path,
        np.column_stack([1_704_067_200 + 60 * minutes, 100 + minutes % 1440]),
        fmt="%d",
        delimiter=",",
        header="timestamp,requests",
        comments="",
    )
    limit = 450 * 2**20

    def limited() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scaler.cli",
            "simulate",
            "--trace",
            str(path),
            "--policies",
            "reactive",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limited,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "365 days of traffic need about" in done.stderr and "pass --days" in done.stderr


def test_running_out_of_memory_after_the_checks_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checks estimate; an allocation that fails anyway (another process took the
    # memory meanwhile) ends the command with one line. Simulated: no test can make the
    # machine run out of memory at a chosen point.
    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError

    from scaler.cli import main

    monkeypatch.setattr("scaler.sim.runner.sweep", exhausted)
    assert main(["simulate", "--trace", str(trace_file(tmp_path)), "--policies", "reactive"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        "tidescaler simulate: out of memory; pass --days to simulate fewer days, or run it "
        "with more memory"
    )
    assert all(line.startswith("note: ") for line in err.splitlines()[:-1]), err


def test_stdin_trace_and_json_schema_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = trace_file(tmp_path).read_text().replace(",", ";")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert run(["--trace", "-", "--policies", "static-peak", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["schema_version"] == 1
    assert data["input"]["name"] == "<stdin>"
    assert (
        "columns: time from 'timestamp', value from 'requests' (';'-separated)"
        in (data["input"]["notes"])
    )
    assert "note: <stdin>: timestamps read as Unix seconds" in captured.err


def test_the_report_scaledobject_uses_the_users_query_or_a_marked_placeholder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = trace_file(tmp_path)
    base = ["--trace", str(path), "--policies", "tidescaler", "--days", "2"]
    assert run([*base, "--out", str(tmp_path / "a")]) == 0
    assert "query: '<your PromQL: total requests/s of the service>'" in (
        (tmp_path / "a" / "report.md").read_text()
    )
    assert "metric lag 90 s (scrape + rate window)" in (tmp_path / "a" / "report.md").read_text()
    query = 'sum(rate(nginx_http_requests_total{app="shop"}[2m]))'
    assert run([*base, "--query", query, "--out", str(tmp_path / "b")]) == 0
    report = (tmp_path / "b" / "report.md").read_text()
    assert f"query: {query}" in report
    # Every policy's metric trails the demand by that query's window, not the default's.
    assert "metric lag 150 s (scrape + rate window)" in report


def test_a_ctrl_c_python_cannot_raise_prints_no_traceback() -> None:
    """A Ctrl-C that lands in a finalizer or a weakref callback (an import's module lock,
    as in the test below, now and then) cannot be raised: Python printed "Exception
    ignored in ..." and its traceback. The CLI remembers the interrupt and drops that
    report; any other such report still prints."""
    script = (
        "import sys\n"
        "from scaler import cli\n"
        "sys.unraisablehook = cli._quiet_interrupts(sys.unraisablehook)\n"
        "class Interrupted:\n"
        "    def __del__(self):\n"
        "        raise KeyboardInterrupt\n"
        "class Broken:\n"
        "    def __del__(self):\n"
        "        raise ValueError('a real bug')\n"
        "Interrupted()\n"
        "Broken()\n"
        "print('went on')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "went on\n"
    assert "KeyboardInterrupt" not in done.stderr
    assert "ValueError: a real bug" in done.stderr  # not everything is dropped


def test_ctrl_c_exits_130_with_one_line(tmp_path: Path) -> None:
    path = trace_file(tmp_path, days=28)
    process = subprocess.Popen(
        [sys.executable, "-m", "scaler.cli", "simulate", "--trace", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        # As at a terminal: a test run in the background inherits SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    # The trace's notes come from inside the run: the interrupt lands in the work.
    assert process.stderr.readline().startswith("note: tide.csv:")
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130
    assert rest.splitlines()[-1] == "tidescaler simulate: interrupted"
    assert "Traceback" not in rest


def test_ctrl_c_swallowed_inside_the_work_still_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Python drops a KeyboardInterrupt raised in a finalizer (or a library may catch
    # it): the command then finishes normally, yet the user asked it to stop.
    from scaler import cli

    def swallows_the_interrupt(args: argparse.Namespace) -> int:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)  # the handler runs here and raises
        except KeyboardInterrupt:
            pass
        return 0

    parser = argparse.ArgumentParser(prog="tidescaler")
    parser.add_subparsers(dest="command").add_parser("work").set_defaults(
        func=swallows_the_interrupt
    )
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    # As at a terminal (a test run in the background inherits SIGINT ignored).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert cli.main(["work"]) == 130
        assert capsys.readouterr().err.strip() == "tidescaler work: interrupted"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    finally:
        signal.signal(signal.SIGINT, before)


def test_progress_lines_without_a_terminal_every_few_seconds() -> None:
    from scaler.cli_support import ProgressLines

    now = [0.0]
    stream = io.StringIO()
    lines = ProgressLines(stream, "simulate", every_seconds=5.0, clock=lambda: now[0])
    for second in range(12):
        now[0] = float(second)
        lines.update("reactive", second / 12)
    assert stream.getvalue().splitlines() == [
        "simulate: reactive 42% (5s elapsed)",
        "simulate: reactive 83% (10s elapsed)",
    ]


def test_cluster_settings_as_flags(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        str(scenario), "--json", "--policies", "reactive",
        "--min-replicas", "2", "--max-replicas", "30", "--polling-interval-seconds", "60",
        "--cooldown-seconds", "120", "--request-timeout-seconds", "5", "--warmup-days", "0.5",
    ]  # fmt: skip
    assert run(argv) == 0
    cluster = json.loads(capsys.readouterr().out)["cluster"]
    assert (cluster["min_replicas"], cluster["max_replicas"]) == (2, 30)
    assert cluster["polling_interval_seconds"] == 60.0
    assert (cluster["cooldown_seconds"], cluster["timeout_seconds"]) == (120.0, 5.0)
    assert run([str(scenario), "--min-replicas", "5", "--max-replicas", "3"]) == 2
    assert "min replicas 5 is above max replicas 3" in capsys.readouterr().err
    assert run([str(scenario), "--polling-interval-seconds", "20"]) == 2
    assert "expected a whole multiple of the HPA sync period, 15s" in " ".join(
        capsys.readouterr().err.split()
    )


def test_service_time_concurrency_and_routing_as_flags(
    scenario: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        str(scenario), "--json", "--policies", "reactive", "--capacity-per-replica", "50",
        "--service-time-ms", "100", "--routing", "pooled",
    ]  # fmt: skip
    assert run(argv) == 0
    cluster = json.loads(capsys.readouterr().out)["cluster"]
    # 50 req/s at 100 ms each: five requests in service at once per pod.
    assert cluster["concurrency_per_pod"] == 5
    assert cluster["routing"] == "pooled"
    assert run([str(scenario), "--json", "--policies", "reactive", "--concurrency-per-pod", "4",
                "--service-time-ms", "50"]) == 0  # fmt: skip
    cluster = json.loads(capsys.readouterr().out)["cluster"]
    assert cluster["capacity_per_replica"] == pytest.approx(80.0)
    # Two of the three that do not make a whole number of workers: say how to fix it.
    assert run([str(scenario), "--capacity-per-replica", "50", "--service-time-ms", "30"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "is 1.5 requests in service at once, not a whole number of workers" in err
    assert run([str(scenario), "--service-time-ms", "0"]) == 2
    assert "--service-time-ms=0: expected > 0" in capsys.readouterr().err


def test_a_fine_grid_of_targets_is_not_warned_about() -> None:
    def point(target: str) -> SweepPoint:
        return SweepPoint(
            "target_utilization", target, "reactive", 1.0, 1.0, 0.0, 0.1,
            settings=(("target_utilization", target),),
        )  # fmt: skip

    fine = [point(f"{t / 100:g}") for t in range(50, 96)]
    assert _coarse_grid_lines(fine) == []
    gapped = [p for p in fine if p.value != "0.7"]  # one step of 2 %
    assert _coarse_grid_lines(gapped) == []
    coarse = [point("0.5"), point("0.6"), point("0.8")]
    (line,) = _coarse_grid_lines(coarse)
    assert line.startswith("Targets were swept in steps of up to 20 %")


def test_a_pick_past_its_budget_on_the_later_half_is_marked_over() -> None:
    """The README's tables marked such picks; the summary and report.md did not."""

    def pick(later_violations: float) -> SweepPoint:
        return SweepPoint(
            "target_utilization", "0.7", "reactive", 10.0, 0.5, 0.0008, 0.1,
            settings=(("target_utilization", "0.7"),),
            tuning=Span(10.0, 0.5, 0.0008), later=Span(10.0, 0.4, later_violations),
        )  # fmt: skip

    assert _pick(pick(0.0011), None, 0.001) == "0.400 (target 0.7; 0.11% over)"
    assert _pick(pick(0.0009), None, 0.001) == "0.400 (target 0.7; 0.09%)"
    assert _pick(pick(0.001), None, 0.001) == "0.400 (target 0.7; 0.10%)"  # at it: within
    assert _pick(None, 0.004, 0.001) == "cannot (best 0.40%)"


def test_run_all_renders_its_budget_rows_with_the_reports_marks(scenario: Path) -> None:
    """simulations/run_all.py renders the summary rows with the report's helpers; a change
    of their signature broke it after every scenario had run (23 minutes in)."""
    import importlib.util

    from scaler.sim.runner import simulate
    from scaler.sim.scenario import load_scenario

    path = Path(__file__).resolve().parent.parent / "simulations" / "run_all.py"
    spec = importlib.util.spec_from_file_location("run_all", path)
    assert spec is not None and spec.loader is not None
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    result = simulate(load_scenario(scenario), policies=("reactive", "tidescaler"))
    rows = run_all._budget_rows(result, [])
    assert rows and all(row.startswith("| ") and row.endswith(" |") for row in rows)
    assert "(base; " in rows[0]  # each pick with its later-half violations
