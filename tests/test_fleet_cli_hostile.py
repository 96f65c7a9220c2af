"""`tidescaler fleet` under hostile input: settings refused before any work, services
named once, every service's outcome said for what it is, Ctrl-C stopped cleanly.

Tiny traces written here; the evaluations that run are on two targets, the Dask ones on
a one-worker local cluster.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from scaler.cli import build_parser, main
from scaler.fleet import cli as fleet_cli
from scaler.fleet import services as services_module
from scaler.fleet.evaluate import (
    FAILED,
    KEEP_REACTIVE,
    NO_SETTING,
    NO_TRAFFIC,
    TOO_LITTLE_HISTORY,
    USE_TIDESCALER,
    FleetSettings,
    ServiceResult,
    evaluate_service,
)
from scaler.fleet.execute import ResultCache, run_fleet
from scaler.fleet.report import markdown, report_json, totals, write_csv
from scaler.fleet.services import FileService, from_folder, from_prometheus

STEP = 900.0
START = 1_700_000_000
QUICK = FleetSettings(targets=(0.98, 0.99), refine=False)


def _write(path: Path, rate: np.ndarray) -> Path:
    lines = ["timestamp,requests"]
    lines += [f"{START + int(i * STEP)},{round(r * STEP)}" for i, r in enumerate(rate)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _tide(days: float) -> np.ndarray:
    t = np.arange(int(days * 86400 / STEP)) * STEP
    return 200.0 + 150.0 * np.sin(2 * math.pi * t / 86400)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    _write(root / "web.csv", _tide(4))
    return root


def _one_service(path: Path) -> FileService:
    (service,) = [s for s in from_folder(path.parent) if s.path == str(path.resolve())]
    return service


# -- flags: refused before any work, exit 2 ------------------------------------------------

ARGPARSE_REFUSED = [
    ("--workers", "-1"),  # LocalCluster(n_workers=-1) hung forever
    ("--workers", "0"),  # silently every core
    ("--workers", "100000"),
    ("--peak-replicas", "0"),
    ("--peak-replicas", "1000000"),  # every service failed: maxReplicas='3000000'
    ("--budget", "nan"),
    ("--budget", "1"),
    ("--budget", "-0.1"),
    ("--slo-ms", "nan"),
    ("--slo-ms", "inf"),
    ("--slo-ms", "0"),
    ("--min-saving", "1"),
    ("--min-saving", "nan"),
    ("--min-history", "0"),
    ("--min-history", "1h"),
    ("--capacity-per-replica", "0"),
    ("--capacity-per-replica", "inf"),
    ("--capacity-per-replica", "nan"),
    ("--pod-startup-seconds", "0"),
    ("--pod-startup-seconds", "1e9"),
    ("--pod-startup-seconds", "nan"),
    ("--end", "nan"),
    ("--end", "inf"),
    ("--since", "0"),
    ("--step", "0"),
    ("--targets", "0.95-0.3"),
    ("--targets", "0.3"),
    ("--targets", "0-0.5"),
    ("--targets", "0.3-1.5"),
    ("--targets", "low-high"),
    # Dask's own parser raised ValueError from inside the run: a traceback.
    ("--scheduler", "nonsense"),
    ("--scheduler", "tcp://dask-scheduler"),
    ("--scheduler", "tcp://dask-scheduler:99999"),
    ("--scheduler", "inproc://x"),
]


@pytest.mark.parametrize(("flag", "value"), ARGPARSE_REFUSED)
def test_every_numeric_flag_is_checked_by_the_parser(
    folder: Path, tmp_path: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fleet", "--traces", str(folder), "--out", str(tmp_path), f"{flag}={value}"])
    assert exit_.value.code == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert f"argument {flag}:" in error


SETTINGS_REFUSED = [
    # Every service failed or met no setting, and the run exited 0.
    (["--slo-ms", "1"], "--slo-ms 1 is not above the simulated replica's mean service time"),
    (["--slo-ms", "20000"], "above the simulated request timeout of 10000 ms"),
    (["--budget", "0"], "--budget 0 cannot be met by any setting"),
    (["--budget", "1e-12"], "give a --budget above 1.39e-11"),
    (["--capacity-per-replica", "0.01"], "1 / --capacity-per-replica"),
    # The floor named, never a value below it, and each fix that alone is enough.
    (
        ["--capacity-per-replica", "2.1"],
        "give a --budget above 0.35, or a --slo-ms above 2193, or a --capacity-per-replica "
        "above 9.21",
    ),
]


@pytest.mark.parametrize(("flags", "expected"), SETTINGS_REFUSED)
def test_settings_no_service_could_use_are_refused_in_one_line(
    folder: Path,
    tmp_path: Path,
    flags: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["fleet", "--traces", str(folder), "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err


def test_a_prometheus_span_of_absurdly_many_points_is_refused_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A century at one second: queries sent until killed, nothing said. Port 9 (discard)
    # answers nothing, so a request made would fail with another message.
    argv = ["fleet", "--prometheus-url", "http://127.0.0.1:9", "--query", "sum(up)"]
    argv += ["--since", "100y", "--step", "1s", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--since at --step 1s is 3.15e+09 points a service; at most 2,000,000" in err


# -- services -------------------------------------------------------------------------------


def test_two_files_of_one_service_name_are_refused_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # They were two identical rows "web", counted twice in the totals.
    _write(tmp_path / "web.csv", _tide(4))
    (tmp_path / "web.tsv").write_text((tmp_path / "web.csv").read_text().replace(",", "\t"))
    out = tmp_path / "out"
    assert main(["fleet", "--traces", str(tmp_path), "--out", str(out), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{tmp_path / 'web.csv'} and {tmp_path / 'web.tsv'} both name the service 'web'" in err


@pytest.mark.parametrize("flags", [["--since", "3d"], ["--step", "1m"], ["--end", "0"]])
def test_prometheus_span_flags_with_trace_files_are_refused_not_ignored(
    folder: Path, tmp_path: Path, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fleet", "--traces", str(folder), "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{flags[0]} shape(s) the history read from Prometheus" in err


def test_files_that_are_not_traces_are_said_and_an_upper_case_extension_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files the fleet does not read were dropped without a word, and WEB.CSV was not
    taken for a CSV at all. Off a terminal, progress lines come every few seconds while
    services run (they came only as each finished: a slow service said nothing)."""
    monkeypatch.setattr(fleet_cli, "PROGRESS_EVERY_SECONDS", 0.2)
    traces = tmp_path / "traces"
    traces.mkdir()
    _write(traces / "SHOP.CSV", _tide(4))
    (traces / "notes.txt").write_text("not a trace\n")
    (traces / "old.csv.bz2").write_bytes(b"BZh9")
    (traces / ".hidden").write_text("editor state\n")
    services = from_folder(traces)
    assert [service.name for service in services] == ["SHOP"]
    argv = ["fleet", "--traces", str(traces), "--out", str(tmp_path / "out"), "--no-cache"]
    argv += ["--budget", "0.5"]
    main(argv)
    err = capsys.readouterr().err
    assert "fleet: 1 service\n" in err
    assert "note: 2 files not read, not a trace (" in err
    assert ": notes.txt, old.csv.bz2" in err and ".hidden" not in err
    assert "fleet: 0/1 services 0% (" in err


class _OneQuery:
    """PrometheusConnect with one answer: series whose label values coincide."""

    def __init__(self, url: str) -> None:
        self._session = self

    def custom_query(self, query: str, params: dict[str, str]) -> list[dict[str, Any]]:
        return [
            {"metric": {"service": "web"}, "value": [0, "1"]},
            {"metric": {"job": "web"}, "value": [0, "1"]},
        ]

    def close(self) -> None:
        pass


def test_prometheus_services_whose_values_coincide_get_distinct_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services_module, "PrometheusConnect", _OneQuery)
    found = from_prometheus("http://prometheus:9090", "q", 0.0, 86400.0, 300.0)
    assert [s.name for s in found] == ['job="web"', 'service="web"']


def test_a_service_without_traffic_says_so_not_too_little_history(tmp_path: Path) -> None:
    result = evaluate_service(_one_service(_write(tmp_path / "zero.csv", 0 * _tide(4))), QUICK)
    assert result.recommendation == NO_TRAFFIC and result.reason == "every value is 0"
    short = evaluate_service(_one_service(_write(tmp_path / "short.csv", _tide(1))), QUICK)
    assert short.recommendation == TOO_LITTLE_HISTORY
    assert short.reason is not None and "under the 3 days of --min-history" in short.reason


def test_a_service_no_setting_of_either_policy_meets_says_so(folder: Path) -> None:
    # At 98-99 % of capacity queues build: far above a budget of one in a billion.
    (web,) = from_folder(folder)
    strict = FleetSettings(targets=(0.98, 0.99), refine=False, violation_budget=1e-9)
    result = evaluate_service(web, strict)
    assert result.recommendation == NO_SETTING, result
    assert result.reactive_replica_hours is None and result.tidescaler_replica_hours is None
    assert result.reason is not None and "fewest violations at the targets swept" in result.reason


def _result(name: str, recommendation: str, reactive: float | None = None) -> ServiceResult:
    tide = None if reactive is None else 0.9 * reactive
    return ServiceResult(
        name, recommendation, reactive_replica_hours=reactive, tidescaler_replica_hours=tide
    )


def test_totals_say_which_services_they_leave_out_and_why() -> None:
    results = [
        _result("a", USE_TIDESCALER, 100.0),
        _result("b", KEEP_REACTIVE, 50.0),
        _result("c", NO_SETTING),
        _result("d", NO_TRAFFIC),
        _result("e", FAILED),
        _result("f", USE_TIDESCALER),  # tidescaler meets the budget, reactive does not
    ]
    t = totals(results)
    assert (t.services, t.compared) == (6, 2)
    assert t.reactive_replica_hours == 150.0 and t.recommended_replica_hours == 140.0
    assert t.left_out == {
        FAILED: 1,
        NO_SETTING: 1,
        NO_TRAFFIC: 1,
        "use tidescaler, no reactive setting meets the budget": 1,
    }
    text = markdown(results, FleetSettings(), "")
    assert "over 2 of the 6 services (left out: 1 failed, 1 no setting meets the budget" in text
    assert report_json(results, FleetSettings())["totals"]["left_out"] == t.left_out  # type: ignore[index]


def test_totals_of_a_fleet_where_nothing_compares_are_not_zero_replica_hours() -> None:
    # It said "0.0 replica-hours with reactive scaling everywhere".
    text = markdown([_result("c", NO_SETTING), _result("d", NO_SETTING)], FleetSettings(), "")
    assert "No service has replica-hours to total (left out: 2 no setting meets the budget)" in text
    assert "0.0 replica-hours" not in text


# -- runs on a local Dask cluster -------------------------------------------------------------


def test_a_run_where_every_service_failed_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = tmp_path / "traces"
    traces.mkdir()
    for name in ("a", "b"):
        (traces / f"{name}.csv").write_text("timestamp,requests\n1700000000,5\nnoon,7\n")
    flags = ["--out", str(tmp_path / "out"), "--no-cache", "--workers", "1"]
    assert main(["fleet", "--traces", str(traces), *flags]) == 1
    assert "error: every service failed (2)" in capsys.readouterr().err


def test_gaps_in_the_fleet_s_traces_are_filled_as_fill_missing_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = tmp_path / "traces"
    traces.mkdir()
    path = _write(traces / "gappy.csv", _tide(1))
    rows = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(rows[:50] + rows[53:]) + "\n", encoding="utf-8")
    # The failure names the flag, and the flag exists on this command.
    flags = ["--out", str(tmp_path / "out"), "--no-cache", "--workers", "1"]
    assert main(["fleet", "--traces", str(traces), *flags]) == 1
    assert "or pass --fill-missing zero" in capsys.readouterr().err
    (plain,) = from_folder(traces)
    (zero,) = from_folder(traces, "zero")
    (hold,) = from_folder(traces, "hold")
    assert len({plain.identity(), zero.identity(), hold.identity()}) == 3  # cached apart
    filled = zero.load().values, hold.load().values
    assert len(filled[0]) == len(filled[1]) == len(rows) - 1
    assert filled[0][49:52].tolist() == [0.0, 0.0, 0.0]
    assert filled[1][49:52].tolist() == [filled[1][48]] * 3


def test_another_fill_missing_recomputes_only_the_services_it_fills(tmp_path: Path) -> None:
    """Every service was computed again when --fill-missing changed, gaps or not."""
    traces = tmp_path / "traces"
    traces.mkdir()
    _write(traces / "whole.csv", _tide(1))
    rows = _write(traces / "gappy.csv", _tide(1)).read_text(encoding="utf-8").splitlines()
    (traces / "gappy.csv").write_text("\n".join(rows[:50] + rows[53:]) + "\n", encoding="utf-8")
    cache = tmp_path / "cache"

    def run(fill: str) -> dict[str, tuple[bool, ServiceResult]]:
        seen: dict[str, tuple[bool, ServiceResult]] = {}
        run_fleet(
            from_folder(traces, fill),  # type: ignore[arg-type]
            QUICK,
            workers=1,
            cache=ResultCache(cache),
            on_result=lambda r, cached: seen.update({r.name: (cached, r)}),
        )
        return seen

    first = run("zero")
    assert not first["whole"][0] and not first["gappy"][0]
    assert any(note.startswith("filled") for note in first["gappy"][1].input_notes)
    second = run("hold")
    assert second["whole"][0] and second["whole"][1] == first["whole"][1]  # from the cache
    assert not second["gappy"][0]  # other traffic: computed again, and said so
    assert any(note.startswith("filled") for note in second["gappy"][1].input_notes)
    assert second["gappy"][1].input_notes != first["gappy"][1].input_notes  # other values
    third = run("zero")
    assert third["whole"][0] and third["gappy"][0]
    assert third["gappy"][1] == first["gappy"][1]


def test_ctrl_c_stops_the_fleet_in_one_line_with_status_130(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    traces.mkdir()
    for seed in range(4):  # full default sweeps: tens of seconds each, still running at ^C
        _write(traces / f"s{seed}.csv", _tide(6) * (1 + 0.1 * seed))
    command = [sys.executable, "-m", "scaler.cli", "fleet", "--traces", str(traces)]
    command += ["--out", str(tmp_path / "out"), "--no-cache", "--workers", "1"]
    # A session of its own: SIGINT to its process group is Ctrl-C on a terminal.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # As at a terminal: a test run in the background inherits SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            children = psutil.Process(process.pid).children(recursive=True)
            if any("spawn_main" in " ".join(c.cmdline()) for c in children):
                break
            time.sleep(0.2)
        time.sleep(4)  # the worker registers and starts on a service
        assert process.poll() is None
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    # Nothing but the command's own lines: no worker's or Dask's warnings either.
    assert all(line.startswith(("fleet:", "interrupted")) for line in err.splitlines()), err
    (line,) = [line for line in err.splitlines() if "interrupted" in line]
    assert "nothing is kept (--no-cache)" in line and "cached" not in line


# -- round 2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "missing-parent", "read-only"])
def test_an_unusable_cache_is_refused_before_any_work(
    folder: Path,
    tmp_path: Path,
    kind: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    if kind == "file":
        cache.write_text("not a folder", encoding="utf-8")
    elif kind == "missing-parent":
        cache = Path("/proc/nocache")
    else:  # root writes anywhere: the refusal is simulated at the check's write
        import scaler.cli_support as support

        def denied(*args: object, **kwargs: object) -> None:
            raise OSError(30, "Read-only file system")

        real = support.check_output_dir

        def only_cache(path: str | None, flag: str) -> None:
            if flag == "--cache":
                monkeypatch.setattr(support.tempfile, "TemporaryFile", denied)
            real(path, flag)

        monkeypatch.setattr("scaler.fleet.cli.check_output_dir", only_cache)
    argv = ["fleet", "--traces", str(folder), "--out", str(tmp_path / "o"), "--cache", str(cache)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --cache {cache}: "), err


def test_out_equal_to_traces_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path / "web.csv", _tide(4))
    assert main(["fleet", "--traces", str(tmp_path), "--out", f"{tmp_path}/"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the --traces folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.csv"]  # nothing written


def test_a_spike_beyond_any_scaledobject_is_still_evaluated(tmp_path: Path) -> None:
    # Fleet sizes capacity from the p99: one interval 10^6 times the rest needs more
    # replicas than a ScaledObject allows; the policies stop at max replicas, as before.
    rate = _tide(4)
    rate[200] = 1e6 * rate.max()
    result = evaluate_service(_one_service(_write(tmp_path / "spike.csv", rate)), QUICK)
    assert result.recommendation != FAILED, result.error
    rate[200] = 1e300  # not a demand: refused in fleet's terms
    result = evaluate_service(_one_service(_write(tmp_path / "glitch.csv", rate)), QUICK)
    assert result.recommendation == FAILED
    assert result.error is not None and "a glitch in the trace? remove that row" in result.error
    assert "--scale" not in result.error and "--unit" not in result.error


def test_gaps_filled_by_fill_missing_are_said_per_service(tmp_path: Path) -> None:
    """`--fill-missing hold` filled a service's gaps without a word anywhere: its row read
    like a clean trace's."""
    path = _write(tmp_path / "gappy.csv", _tide(4))
    rows = path.read_text().splitlines()
    path.write_text("\n".join(rows[:50] + rows[54:]) + "\n", encoding="utf-8")  # an hour out
    [service] = from_folder(tmp_path, "hold")
    result = evaluate_service(service, QUICK)
    assert result.input_notes == [
        "filled 4 missing interval(s) in 1 gap(s) (holding the last value)"
    ]
    assert "- gappy: filled 4 missing interval(s)" in markdown([result], QUICK, "")
    assert report_json([result], QUICK)["services"][0]["input_notes"] == result.input_notes


def test_fleet_json_and_csv_give_smape_as_a_ratio_as_backtest_does(tmp_path: Path) -> None:
    """fleet.json said 3.2997 (per cent) where backtest --json says 0.033 (a ratio)."""
    result = ServiceResult("web", KEEP_REACTIVE, forecast_smape=3.3, baseline_smape=4.4)
    document = report_json([result], QUICK)
    [record] = document["services"]  # type: ignore[misc]
    assert document["schema_version"] == 2
    assert record["forecast_smape"] == pytest.approx(0.033)
    assert record["baseline_smape"] == pytest.approx(0.044)
    assert record["forecast_skill"] == pytest.approx(0.25)  # a ratio either way
    write_csv([result], tmp_path / "fleet.csv")
    header, row = (tmp_path / "fleet.csv").read_text().splitlines()
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert float(values["forecast_smape"]) == pytest.approx(0.033)


def test_the_targets_swept_can_be_given(folder: Path, tmp_path: Path) -> None:
    """The sweep stopped at 0.40 whatever the service: a pick there may be the sweep's
    edge, and a service that needs lower targets could not be asked for them."""
    parser = build_parser()
    argv = ["fleet", "--traces", str(folder), "--out", str(tmp_path), "--targets", "0.3-0.5"]
    settings = fleet_cli.settings_from(parser.parse_args(argv))
    assert settings.targets == tuple(round(0.30 + 0.01 * i, 2) for i in range(21))
    default = fleet_cli.settings_from(parser.parse_args(argv[:-2]))
    assert default.targets == FleetSettings().targets


def test_a_busy_dask_port_is_not_a_warning_on_the_fleets_stderr() -> None:
    """The local cluster's scheduler listened on Dask's 8787 even without a dashboard;
    with that port taken (another fleet, a notebook) it printed a UserWarning."""
    from scaler.fleet.execute import dask_client

    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        except OSError:
            pass  # taken already: the case itself
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with dask_client(None, 1) as client:
                assert client.submit(sum, [1, 2]).result(timeout=60) == 3  # type: ignore[attr-defined]
    assert not [w for w in caught if "8787" in str(w.message)], [str(w.message) for w in caught]
