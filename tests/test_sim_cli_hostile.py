"""`tidescaler simulate` against hostile input: absurd numbers, bad sweeps, bad files and
unwritable outputs each get one clear line and exit 2 (never a traceback), and --json
stays strict JSON."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scaler.cli import main
from scaler.cli_support import OutputPathError, check_output_dir, check_output_file
from scaler.sim.cluster import ClusterModel
from scaler.sim.policies import _hourly_windows, prepare
from scaler.sim.report import _percents, dumps
from scaler.sim.scenario import parse_scenario
from scaler.sim.traffic import Traffic

START = 1_719_792_000  # 2024-07-01T00:00:00Z
STEP = 600  # two days at ten minutes: 288 rows, a fast run


def write_trace(path: Path, value: float | None = None) -> Path:
    rows = ["timestamp,requests"]
    for i in range(2 * 86400 // STEP):
        count = value if value is not None else 6000 + 4000 * math.sin(2 * math.pi * i / 144)
        rows.append(f"{START + STEP * i},{count:.6g}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return write_trace(tmp_path / "two_days.csv")


def simulate(
    argv: list[str], capsys: pytest.CaptureFixture[str], policies: str = "reactive"
) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of `tidescaler simulate` run in this process."""
    try:
        code = main(["simulate", "--policies", policies, "--warmup-days", "1", *argv])
    except SystemExit as exit_:  # argparse refusing a flag
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str) -> str:
    """The error line, checked to be the only one besides argparse's usage."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


# -- 1. demand no replica count carries; keda-cron windows capped at max replicas ---------


@pytest.mark.parametrize("value", ["1e300", "1e12"])
def test_absurd_demand_is_refused_up_front(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_trace(tmp_path / "huge.csv", float(value))
    code, _, err = simulate(["--trace", str(path)], capsys, "static-peak,keda-cron,reactive")
    assert code == 2
    assert "needs more than 100,000 replicas" in one_error(err)


def test_hourly_cron_windows_never_ask_above_max_replicas() -> None:
    scenario = parse_scenario(
        {"trace": "x.csv", "cluster": {"max_replicas": 30}, "policies": ["keda-cron"]}, "t"
    )
    traffic = Traffic(float(START), 600.0, np.full(288, 1e5))  # needs ~2,900 replicas
    triggers = _hourly_windows(prepare(scenario, traffic))
    assert triggers and {t["desiredReplicas"] for t in triggers} == {"30"}


def test_peak_above_max_replicas_runs_with_a_note(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--trace", str(trace), "--scale", "100", "--max-replicas", "3", "--json"]
    code, out, err = simulate(argv, capsys, "keda-cron,reactive")
    assert code == 0, err
    assert "more than max replicas 3" in err
    assert json.loads(out)["policies"][0]["peak_replicas"] <= 3


# -- 2. every numeric flag finite and in range; scenario keys too; strict JSON -----------

FLOAT_FLAGS = [
    "--capacity-per-replica",
    "--scale",
    "--days",
    "--warmup-days",
    "--service-time-ms",
    "--polling-interval-seconds",
    "--request-timeout-seconds",
    "--cooldown-seconds",
    "--pod-startup-seconds",
    "--slo-ms",
    "--target-utilization",
    "--peak-to-valley",
]


@pytest.mark.parametrize("flag", FLOAT_FLAGS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_flags_are_refused(
    trace: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = simulate(["--trace", str(trace), f"{flag}={value}"], capsys)
    assert code == 2
    line = one_error(err)
    assert flag in line and "finite" in line


# The flags bounded by the scenario's table of highs (the target's bound is its own range,
# peak-to-valley shapes generated traffic only, pod start-up is checked with the trigger's).
BOUNDED_FLAGS = [
    f
    for f in FLOAT_FLAGS
    if f not in {"--pod-startup-seconds", "--target-utilization", "--peak-to-valley"}
]


@pytest.mark.parametrize("flag", BOUNDED_FLAGS)
def test_absurdly_large_flags_are_refused(
    trace: Path, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = simulate(["--trace", str(trace), flag, "1e308"], capsys)
    assert code == 2
    assert f"{flag}=1e+308: expected at most" in one_error(err)


def test_tiny_service_time_and_huge_capacity_are_refused(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = simulate(["--trace", str(trace), "--service-time-ms", "1e-308"], capsys)
    assert code == 2 and "expected at least" in one_error(err)
    # 1e9 req/s at the default 20 ms is 2e7 requests at once: hours in the queue model.
    code, _, err = simulate(["--trace", str(trace), "--capacity-per-replica", "1e9"], capsys)
    assert code == 2 and "more than 10,000" in err and "Traceback" not in err


def test_a_capacity_too_small_for_the_slo_names_the_flags_that_mend_it(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 0.5 req/s a replica at one request at a time is a 2 s mean service, over a 500 ms SLO.
    code, _, err = simulate(
        ["--trace", str(trace), "--capacity-per-replica", "0.5", "--slo-ms", "500"], capsys
    )
    assert code == 2
    assert "slo_ms=500 is not above the mean service time 2000 ms" in err
    assert "capacity_per_replica=0.5 req/s" in err
    assert "--capacity-per-replica" in err and "--slo-ms" in err and "Traceback" not in err
    # A longer SLO mends it (the oracle is not run, so only the service-time rule applies).
    mended = ["--trace", str(trace), "--capacity-per-replica", "0.5", "--slo-ms", "20000"]
    mended += ["--request-timeout-seconds", "60"]
    assert simulate(mended, capsys)[0] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--sweep", "target_utilization=0.5,nan"],
        ["--sweep", "threshold=inf"],
        ["--sweep", "threshold=1e-300"],
    ],
)
def test_bad_sweep_numbers_are_refused(
    trace: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = simulate(["--trace", str(trace), *argv], capsys)
    assert code == 2
    one_error(err)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("warmup_days: .nan", "warmup_days"),
        ("days: .nan", "days"),
        ("cluster: {capacity_per_replica: .nan}", "cluster.capacity_per_replica"),
        ("cluster: {capacity_per_replica: .inf}", "cluster.capacity_per_replica"),
        ("slo_ms: .nan", "slo_ms"),
        ("target_utilization: .nan", "target_utilization"),
        ("cluster: {max_replicas: 100000000000000000000}", "cluster.max_replicas"),
        ("scale: 1.0e+300", "scale"),
    ],
)
def test_non_finite_and_absurd_scenario_keys_are_refused(
    trace: Path, text: str, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = trace.parent / "s.yaml"
    path.write_text(f"name: t\ntrace: {trace.name}\n{text}\n", encoding="utf-8")
    code, _, err = simulate([str(path)], capsys)
    assert code == 2
    assert f"{key}: " in err and "Traceback" not in err


def test_json_has_no_nan_or_infinity_tokens() -> None:
    text = dumps({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -math.inf}})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": {"d": None}}


def test_simulate_json_is_strict(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = simulate(["--trace", str(trace), "--json"], capsys, "reactive,tidescaler")
    assert code == 0, err

    def refuse(token: str) -> None:
        raise ValueError(token)

    json.loads(out, parse_constant=refuse)  # NaN / Infinity / -Infinity would raise


# -- 3. negative seed -------------------------------------------------------------------


def test_negative_seed_is_a_clean_error(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = simulate(["--trace", str(trace), "--seed", "-1"], capsys)
    assert code == 2
    assert "--seed=-1: expected a whole number >= 0" in one_error(err)


# -- 4. every sweep value checked before the first run -----------------------------------


@pytest.mark.parametrize(
    ("sweep", "named"),
    [
        ("forecastHistory=1d,7d,120d", "sweep forecastHistory=120d:"),
        # Refused as the sweep is read, whichever policies run (as --pod-startup-seconds is).
        ("pod_startup_seconds=60,90000", "pod_startup_seconds='90000': expected seconds from 0"),
        ("podStartupSeconds=abc", "sweep podStartupSeconds=abc:"),
        ("forecastQuantile=0.9,0.95", None),
    ],
)
def test_sweep_values_are_checked_before_any_run(
    trace: Path,
    sweep: str,
    named: str | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import scaler.sim.runner as runner

    runs: list[object] = []
    real = runner.simulate

    def counted(*args: Any, **kwargs: Any) -> Any:
        runs.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "simulate", counted)
    code, _, err = simulate(
        ["--trace", str(trace), "--sweep", sweep, "--days", "2"], capsys, "reactive,tidescaler"
    )
    if named is None:
        assert code == 0, err
        return
    assert code == 2
    assert named in err and "Traceback" not in err
    assert runs == []  # refused before the scenario as given ran


# -- 5. a scenario file that is not UTF-8 -----------------------------------------------


def test_a_key_given_twice_in_a_scenario_file_is_refused_on_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # YAML keeps the last silently: this was a run at 100 ms.
    path = tmp_path / "twice.yaml"
    path.write_text("name: twice\nsynthetic: {}\nslo_ms: 500\nslo_ms: 100\n")
    code, _, err = simulate([str(path)], capsys)
    assert code == 2
    assert one_error(err) == f"error: {path}:4: not valid YAML (key 'slo_ms' appears twice)"


def test_latin1_scenario_gets_a_clear_message(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = trace.parent / "latin1.yaml"
    path.write_bytes(f"name: caf\xe9\ntrace: {trace.name}\n".encode("latin-1"))
    code, _, err = simulate([str(path)], capsys)
    assert code == 2
    assert "is not UTF-8 text" in one_error(err)


# -- 6. output paths checked for writing before the work ---------------------------------


@pytest.mark.parametrize(
    ("flag", "path"),
    [("--out", "/proc/rt_out"), ("--timeline-csv", "/proc/rt.csv"), ("--out", "/proc/a/b/c")],
)
def test_unwritable_outputs_fail_before_the_work(
    trace: Path, flag: str, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = simulate(["--trace", str(trace), flag, path], capsys)
    assert code == 2
    assert f"{flag} {path}: cannot write there" in one_error(err)
    assert "rep-h" not in out  # nothing was simulated


@pytest.mark.parametrize("command", ["simulate", "backtest"])
def test_a_dash_for_an_output_file_is_refused_not_written_as_a_file(
    trace: Path, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # --trace - reads stdin; "--timeline-csv -" wrote a file named "-".
    monkeypatch.chdir(tmp_path)
    flag = "--timeline-csv" if command == "simulate" else "--forecasts-csv"
    assert main([command, "--trace", str(trace), flag, "-"]) == 2
    assert f"{flag} -: standard output carries the report here" in one_error(
        capsys.readouterr().err
    )
    assert not (tmp_path / "-").exists()


def test_output_checks_leave_no_trace_behind(tmp_path: Path) -> None:
    check_output_dir(str(tmp_path / "new" / "deeper"), "--out")
    check_output_file(str(tmp_path / "t.csv"), "--timeline-csv")
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "keep.csv"
    existing.write_text("data", encoding="utf-8")
    check_output_file(str(existing), "--timeline-csv")
    assert existing.read_text(encoding="utf-8") == "data"


def test_read_only_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root writes anywhere, so the refusal is simulated at the open the check makes.
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", denied)
    with pytest.raises(OutputPathError, match=r"cannot write there \(Permission denied"):
        check_output_dir(str(tmp_path), "--out")
    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(OutputPathError, match=r"cannot write there \(Permission denied"):
        check_output_file(str(tmp_path / "x.csv"), "--timeline-csv")


def test_full_disk_at_the_end_is_one_line(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    code, _, err = simulate(["--trace", str(trace), "--timeline-csv", "/dev/full"], capsys)
    assert code == 1
    assert "--timeline-csv /dev/full: cannot write (No space left on device)" in one_error(err)


def test_an_output_that_is_the_trace_read_is_refused_and_the_trace_kept(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = trace.read_bytes()
    # The same file under another name (a link, a detour) is the same file.
    link = tmp_path / "link.csv"
    link.symlink_to(trace)
    detour = str(trace.parent / ".." / trace.parent.name / trace.name)
    for output in (str(trace), str(link), detour):
        code, _, err = simulate(["--trace", str(trace), "--timeline-csv", output], capsys)
        assert code == 2
        assert f"--timeline-csv {output}: is the trace, which this run reads" in one_error(err)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"name: s\ntrace: {trace.name}\n", encoding="utf-8")
    code, _, err = simulate([str(scenario), "--timeline-csv", str(trace)], capsys)
    assert code == 2 and "is the scenario's trace, which this run reads" in one_error(err)
    code, _, err = simulate([str(scenario), "--timeline-csv", str(scenario)], capsys)
    assert code == 2 and "is the scenario file, which this run reads" in one_error(err)
    code = main(["backtest", "--trace", str(trace), "--forecasts-csv", str(link)])
    assert code == 2
    assert "--forecasts-csv" in capsys.readouterr().err
    assert trace.read_bytes() == before


def test_a_scenario_s_trace_is_read_with_the_unit_and_fill_missing_flags(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = trace.read_text(encoding="utf-8").splitlines()
    gappy = tmp_path / "gappy.csv"
    gappy.write_text("\n".join(rows[:100] + rows[110:]) + "\n", encoding="utf-8")
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: s\ntrace: gappy.csv\n", encoding="utf-8")
    code, _, err = simulate([str(scenario)], capsys)
    assert code == 2 and "or pass --fill-missing zero" in one_error(err)
    code, _, err = simulate([str(scenario), "--fill-missing", "zero", "--json"], capsys)
    assert code == 0, err
    assert "note: gappy.csv: filled 10 missing interval(s) in 1 gap(s) (with 0)" in err
    costs = {}
    for unit in ("count", "rate"):
        code, out, err = simulate(
            [str(scenario), "--fill-missing", "hold", "--unit", unit, "--json"], capsys
        )
        assert code == 0, err
        (reactive,) = json.loads(out)["policies"]
        costs[unit] = reactive["replica_hours"]
    # Read as requests per second rather than per 10-minute interval: 600 times the traffic.
    assert costs["rate"] > 50 * costs["count"]


def test_a_tuning_span_without_traffic_chooses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A service launched mid-trace: nothing on the first 1.5 days, so nothing in the
    # tuning half of the second (evaluated) day. 0 over 0 used to read as 0 % over the
    # SLO, within every budget: the cheapest setting was "chosen" blind.
    path = write_trace(tmp_path / "launch.csv")
    rows = path.read_text(encoding="utf-8").splitlines()
    quiet = len(rows[1:]) * 3 // 4
    rows[1 : 1 + quiet] = [f"{row.split(',')[0]},0" for row in rows[1 : 1 + quiet]]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    argv = ["--trace", str(path), "--sweep", "target_utilization=0.6,0.95"]
    code, out, err = simulate(argv, capsys, policies="reactive,tidescaler")
    assert code == 0, err
    text = " ".join(out.split())
    assert "No request in the tuning span (the first half of the evaluated days)" in text
    assert "cannot" in text
    code, out, err = simulate([*argv, "--json"], capsys, policies="reactive,tidescaler")
    data = json.loads(out)
    spans = [p["tuning_span"] for p in data["sweep"]]
    assert spans and all(span["slo_violation_ratio"] is None for span in spans)


def test_a_forecast_that_never_fitted_is_said(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = simulate(["--trace", str(trace)], capsys, policies="reactive,tidescaler")
    assert code == 0 and "forecast never fitted" not in err
    short = tmp_path / "two_hours.csv"
    short.write_text("\n".join(trace.read_text(encoding="utf-8").splitlines()[:13]) + "\n")
    argv = ["--trace", str(short), "--warmup-days", "0"]
    code, _, err = simulate(argv, capsys, policies="reactive,tidescaler")
    assert code == 0
    assert "warning: tidescaler's forecast never fitted" in " ".join(err.split())


def test_two_shares_said_side_by_side_are_told_apart() -> None:
    # "reactive cannot (best 0.04%)" at tidescaler's "0.04%" read as a contradiction.
    assert _percents(0.00041, 0.00043) == ("0.041%", "0.043%")
    assert _percents(0.0004, 0.0004) == ("0.04%", "0.04%")  # equal: equal
    assert _percents(0.01, 0.02) == ("1.00%", "2.00%")  # apart already: as before


def test_backtest_checks_its_output_folder_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OutputPathError):
        check_output_dir("/proc/bt_out", "--out")


# -- 7. alias bombs and huge values in scenario files ------------------------------------

BOMB = """a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
name: *g
"""


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (BOMB, "anchors"),
        ("name: *x\n", "aliases"),
        ("name: [1\n", "not valid YAML"),
        ("name: t\nsweep: " + "[" * 500 + "]" * 500 + "\n", "nested more than"),
        ("name: [" + ",".join(["1"] * 30_000) + "]\n", "more than 20000 values"),
    ],
)
def test_hostile_yaml_is_refused_cheaply(
    trace: Path, text: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = trace.parent / "bomb.yaml"
    path.write_text(f"trace: {trace.name}\n" + text, encoding="utf-8")
    code, _, err = simulate([str(path)], capsys)
    assert code == 2
    assert said in err and len(err) < 500


def test_errors_quote_a_short_prefix(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = trace.parent / "long.yaml"
    long_list = "[" + ",".join(["12345"] * 5000) + "]"
    path.write_text(f"trace: {trace.name}\nname: {long_list}\n{'k' * 900}: 1\n", "utf-8")
    code, _, err = simulate([str(path)], capsys)
    assert code == 2
    assert "name: [" in err and len(err) < 1500


# -- 8. a sweep over one policy shows its points -----------------------------------------


def test_single_policy_sweep_prints_its_points(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--trace", str(trace), "--sweep", "target_utilization=0.5,0.6,0.9"]
    code, out, err = simulate(argv, capsys, "reactive")
    assert code == 0, err
    for value in ("0.5", "0.6", "0.9"):
        assert f"target {value}" in out


# -- 9. all-zero traffic -----------------------------------------------------------------


def test_zero_traffic_warning_and_summary_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_trace(tmp_path / "zeros.csv", 0.0)
    code, out, err = simulate(["--trace", str(path)], capsys, "reactive,tidescaler,static-peak")
    assert code == 0, err
    assert "every policy runs at most one replica" not in err
    assert "zero throughout" in err and "run no replica" in err
    assert "-x" not in out and "nan" not in out
    assert "ran no replicas, so there is no ratio" in " ".join(out.split())
    assert ClusterModel().min_replicas == 0  # what the warning's wording assumes here


# -- round 2: control characters and tags in a scenario file ----------------------------


def test_control_character_in_scenario_says_which_and_where(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = trace.parent / "ansi.yaml"
    path.write_text(f"name: x\ntrace: {trace.name}\n# \x1b[31mred\n", encoding="utf-8")
    code, _, err = simulate([str(path)], capsys)
    assert code == 2
    line = one_error(err)
    assert f"{path}:3: not valid YAML (unacceptable character #x001b" in line


def test_yaml_tags_in_scenario_are_refused(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = trace.parent / "tag.yaml"
    path.write_text(f"name: x\ntrace: {trace.name}\ndays: !!float 2\n", encoding="utf-8")
    code, _, err = simulate([str(path)], capsys)
    assert code == 2
    assert f"{path}:3: YAML tags ('tag:yaml.org,2002:float') are not allowed" in one_error(err)


def test_dangling_symlink_output_is_written_through(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (trace.parent / "real").mkdir()
    link = trace.parent / "link.csv"
    link.symlink_to("real/timeline.csv")
    check_output_file(str(link), "--timeline-csv")  # the target's folder is writable
    assert not (trace.parent / "real" / "timeline.csv").exists()  # the check leaves nothing
    loop = trace.parent / "loop.csv"
    loop.symlink_to("loop.csv")
    with pytest.raises(OutputPathError, match="symlink loop"):
        check_output_file(str(loop), "--timeline-csv")


def test_an_output_folder_named_by_a_dangling_symlink_is_made_where_it_points(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """mkdir does not follow a dangling symlink: this failed with "File exists"."""
    link = trace.parent / "report"
    link.symlink_to("reports/today")
    check_output_dir(str(link), "--out")
    assert not (trace.parent / "reports").exists()  # the check leaves nothing behind
    code, _, err = simulate(["--trace", str(trace), "--out", str(link)], capsys)
    assert code == 0, err
    assert (trace.parent / "reports" / "today" / "report.md").is_file()
    loop = trace.parent / "loop"
    loop.symlink_to("loop")
    with pytest.raises(OutputPathError, match="symlink loop"):
        check_output_dir(str(loop), "--out")
    # realpath reads "gone/.." as the parent; the kernel finds no "gone": refused now,
    # not after the run.
    odd = trace.parent / "odd"
    odd.symlink_to("gone/../reports")
    with pytest.raises(OutputPathError, match="cannot write there"):
        check_output_dir(str(odd), "--out")


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--days", "36500.0001", "--days=36500.0001: expected at most 36500"),
        ("--scale", "1000000000001", "--scale=1000000000001: expected at most 1e+12"),
    ],
)
def test_a_value_just_past_a_bound_is_quoted_as_typed(
    trace: Path, flag: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = simulate(["--trace", str(trace), flag, value], capsys)
    assert code == 2
    assert expected in one_error(err)


@pytest.mark.parametrize(
    "command",
    [
        ["simulate", "--trace"],
        ["backtest", "--trace"],
        ["fleet", "--traces"],
    ],
    ids=["simulate", "backtest", "fleet"],
)
@pytest.mark.parametrize("name", ["exports[/tmp].csv", "web[prod].csv", "[bold]x"])
def test_a_name_with_brackets_is_shown_as_it_is(
    command: list[str], name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The terminal library reads "[...]" as markup: "[/tmp]" crashed the error print,
    # "[prod]" vanished from the path it named.
    missing = tmp_path / name
    code = main([*command, str(missing)])
    _, err = capsys.readouterr()
    assert code == 2
    assert str(missing) in one_error(err)


def test_a_flag_can_mend_what_the_scenario_file_breaks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The file's SLO is out of the oracle's reach; --slo-ms mends it. The file used to be
    # checked before the flags applied, so the run was refused for the file's value.
    scenario = tmp_path / "tight.yaml"
    scenario.write_text("name: tight\nsynthetic: {}\nslo_ms: 30\npolicies: [oracle]\n")
    argv = ["simulate", str(scenario), "--days", "1", "--warmup-days", "0"]
    assert main(argv) == 2
    assert "the SLO is unreachable" in capsys.readouterr().err
    assert main([*argv, "--slo-ms", "500"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_days_beyond_the_trace_are_said_not_silently_dropped(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = simulate(["--trace", str(trace), "--days", "5"], capsys)
    assert code == 0
    assert "warning: --days 5: the traffic holds 2.00 days; all of it is simulated" in err
    code, _, err = simulate(["--trace", str(trace), "--days", "2"], capsys)
    assert code == 0 and "the traffic holds" not in err


def test_a_typo_in_the_tidescaler_block_is_found_when_tidescaler_does_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text('name: typo\nsynthetic: {}\ntidescaler:\n  treshold: "5"\n')
    code, _, err = simulate([str(path), "--days", "1"], capsys)  # --policies reactive
    assert code == 2
    assert "tidescaler: unknown key 'treshold' (did you mean threshold?)" in err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--start", "7d"], "--start applies to --prometheus-url only; --trace reads the file's"),
        (
            ["--end", "2024-07-02T00:00:00Z", "--step", "5m"],
            "--end, --step apply to --prometheus-url only",
        ),
        (["--peak-to-valley", "20"], "--peak-to-valley=20 shapes generated traffic"),
    ],
    ids=["start", "end-and-step", "peak-to-valley"],
)
def test_flags_that_cannot_shape_a_trace_file_are_refused_not_ignored(
    trace: Path, flags: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = simulate(["--trace", str(trace), *flags], capsys)
    assert code == 2
    assert expected in one_error(err)
    assert "rep-h" not in out


def test_the_terminal_summary_says_the_gate_three_decimals_and_the_budgets_nobody_meets(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary printed t/r to two decimals (a 0.2 % loss read 1.00), left out what
    the gate deploys (only report.md and --json said it), and budgets below the first
    one met vanished without a word."""
    sweep = ["--sweep", "target_utilization=0.6,0.7,0.8", "--slo-ms", "60"]
    code, out, err = simulate(["--trace", str(trace), *sweep], capsys, "reactive,tidescaler")
    assert code == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.strip().startswith("budget"))
    assert header.split()[-3:] == ["t/r", "floor", "forecast"]
    rows = lines[lines.index(header) + 1 :]
    budget_rows = [line for line in rows if line.strip().endswith((" on", " off", " -"))]
    assert budget_rows, out
    for line in budget_rows:
        ratio, floor = line.split()[-3:-1]
        assert ratio == "-" or re.fullmatch(r"\d\.\d{3}", ratio), line
        assert floor == "-" or re.fullmatch(r"\d\.\d{3}", floor), line
    text = " ".join(out.split())
    assert "No setting of either policy keeps requests over the SLO within" in text
    assert "(fewest: reactive " in text and ", tidescaler " in text
    # Without a sweep the budget rows are the second half's: said, as the table is not.
    code, out, _ = simulate(["--trace", str(trace)], capsys, "reactive,tidescaler")
    assert code == 0
    text = " ".join(out.split())
    assert "measured on the second half of the days (the table above is the whole window)" in text
    # One setting each, with budgets it cannot meet: not "no setting of either policy"
    # (other settings were not tried).
    code, out, _ = simulate(
        ["--trace", str(trace), "--slo-ms", "60"], capsys, "reactive,tidescaler"
    )
    assert code == 0
    text = " ".join(out.split())
    assert "No setting of either policy" not in text
    assert "Neither policy at the setting run keeps requests over the SLO within" in text
    assert "--sweep tries others." in text
