"""What `tidescaler fleet` reads: Prometheus series as traces are read, --unit, a service
just over --min-history, and a --cache that would be read as a service.

A real Prometheus serves the series; trace files are written here. Nothing here runs
the Dask cluster: services are loaded and evaluated in this process.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from prometheus_server import PrometheusServer, Series, grid, openmetrics

from scaler.cli import build_parser, main
from scaler.fleet.cli import check_cache, services_from
from scaler.fleet.evaluate import (
    FAILED,
    TOO_LITTLE_HISTORY,
    FleetSettings,
    evaluate_service,
)
from scaler.fleet.services import (
    FileService,
    FleetInputError,
    PrometheusService,
    from_folder,
    service_key,
)
from scaler.sim.traffic import TideSpec, synthetic_tide, write_trace
from scaler.traces import TraceError

STEP = 300.0
DAY = 86400.0
QUICK = FleetSettings(targets=(0.98, 0.99), refine=False)
METRIC = "tidescaler_fleet_inputs_rps"  # own name: the server is shared
HOLE = slice(500, 524)  # two hours without samples in the "gappy" service


def tide(times: np.ndarray) -> np.ndarray:
    return 200.0 + 150.0 * np.sin(2 * math.pi * (times % DAY) / DAY)


@pytest.fixture(scope="module")
def fleet_series(prometheus: PrometheusServer) -> Iterator[tuple[str, float]]:
    """Four days of "old" and "gappy" (two hours missing), and "new", which began 1.5
    days before the end; the end two hours ago, on the step."""
    end = math.floor((time.time() - 7200) / STEP) * STEP
    times = np.asarray(grid(end - 4 * DAY, end, STEP))
    keep = {
        "old": np.ones(len(times), dtype=bool),
        "new": times >= end - 1.5 * DAY,
        "gappy": np.ones(len(times), dtype=bool),
    }
    keep["gappy"][HOLE] = False
    series = [
        Series(
            METRIC,
            {"service": name},
            [(float(t), float(v)) for t, v in zip(times[kept], tide(times[kept]), strict=True)],
        )
        for name, kept in keep.items()
    ]
    prometheus.backfill(openmetrics(series))
    yield prometheus.url, end


def prometheus_services(url: str, end: float, *flags: str) -> dict[str, PrometheusService]:
    args = build_parser().parse_args(
        ["fleet", "--prometheus-url", url, "--query", f"sum by (service) ({METRIC})",
         "--since", "4d", "--step", "5m", "--end", str(int(end)), *flags]
    )  # fmt: skip
    found = services_from(args)
    assert all(isinstance(s, PrometheusService) for s in found)
    return {s.name: s for s in found if isinstance(s, PrometheusService)}


def test_one_day_of_history_reads_as_one_day(tmp_path: Path) -> None:
    # The report's cell read "1 days, under the 3 days of --min-history".
    write_trace(synthetic_tide(TideSpec(days=1, step_seconds=900.0), seed=1), tmp_path / "a.csv")
    (service,) = from_folder(tmp_path)
    result = evaluate_service(service, QUICK)
    assert result.reason == "1 day, under the 3 days of --min-history"
    one = evaluate_service(service, replace(QUICK, min_history_days=1.5))
    assert one.reason == "1 day, under the 1.5 days of --min-history"


def test_time_before_a_service_existed_is_no_history_not_quiet_traffic(
    fleet_series: tuple[str, float],
) -> None:
    # Filled with 0, "new" read as four days: "no setting meets the budget".
    url, end = fleet_series
    new = prometheus_services(url, end)["new"]
    trace = new.load()
    assert trace.timestamps[0] == end - 1.5 * DAY and trace.timestamps[-1] == end
    assert np.all(trace.values > 0)
    result = evaluate_service(new, QUICK)
    assert result.recommendation == TOO_LITTLE_HISTORY, result
    assert result.days == pytest.approx((1.5 * DAY + STEP) / DAY)
    assert result.reason == "1.5 days, under the 3 days of --min-history"


def test_a_gap_inside_a_prometheus_series_fails_the_service_naming_it(
    fleet_series: tuple[str, float],
) -> None:
    url, end = fleet_series
    gappy = prometheus_services(url, end)["gappy"]
    with pytest.raises(TraceError):
        gappy.load()
    result = evaluate_service(gappy, QUICK)
    assert result.recommendation == FAILED
    assert result.error is not None
    assert re.fullmatch(
        r"gappy: sample \d+: \d+ interval\(s\) of 5m missing before \S+ \(after sample \d+\), "
        r"\d+ in all; write the missing intervals as rows, or pass --fill-missing zero \(no "
        r"traffic\) or --fill-missing hold \(repeat the last value\)",
        result.error,
    ), result.error


def test_fill_missing_fills_a_prometheus_series_gaps(fleet_series: tuple[str, float]) -> None:
    # --fill-missing was ignored with --prometheus-url: every gap became 0.
    url, end = fleet_series
    zero = prometheus_services(url, end, "--fill-missing", "zero")["gappy"]
    hold = prometheus_services(url, end, "--fill-missing", "hold")["gappy"]
    assert (zero.fill_missing, hold.fill_missing) == ("zero", "hold")
    zeroed, held = zero.load(), hold.load()
    assert len(zeroed.values) == len(held.values) == 4 * 288 + 1
    # The tide never reaches 0: the zeros are the intervals filled, inside the hole.
    filled = np.flatnonzero(zeroed.values == 0)
    assert len(filled) and HOLE.start <= filled[0] and filled[-1] < HOLE.stop
    assert np.array_equal(filled, np.arange(filled[0], filled[-1] + 1))
    assert np.all(held.values[filled] == held.values[filled[0] - 1])
    assert np.delete(held.values, filled).tolist() == np.delete(zeroed.values, filled).tolist()
    assert zeroed.fills == (f"filled {len(filled)} missing interval(s) in 1 gap(s) (with 0)",)
    # Another fill is other traffic: not the same cached result.
    settings = QUICK.as_dict()
    assert service_key(zero, settings, "v") != service_key(hold, settings, "v")


def write_rates(path: Path, rps: float, rows: int, step: int = 60) -> Path:
    lines = ["timestamp,requests_per_second"]
    lines += [f"{1_700_000_000 + i * step},{rps}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_unit_rate_reads_a_requests_per_second_column(tmp_path: Path) -> None:
    # fleet's note said "pass --unit rate", which fleet refused as an unknown argument.
    write_rates(tmp_path / "web.csv", 2.5, 120)
    as_rate = services_from(build_parser().parse_args(["fleet", "--traces", str(tmp_path),
                                                        "--unit", "rate"]))  # fmt: skip
    as_default = services_from(build_parser().parse_args(["fleet", "--traces", str(tmp_path)]))
    (rate,), (default,) = as_rate, as_default
    assert isinstance(rate, FileService) and rate.unit == "rate"
    trace = rate.load()
    assert np.all(trace.values == 2.5 * 60) and not trace.warnings
    read = default.load()
    assert np.all(read.values == 2.5)
    assert any("pass --unit rate" in warning for warning in read.warnings)
    settings = QUICK.as_dict()
    assert service_key(rate, settings, "v") != service_key(default, settings, "v")
    assert service_key(rate, settings, "v", filled=False) != service_key(
        default, settings, "v", filled=False
    )


def test_fleet_unit_takes_the_choices_simulate_takes(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for command in ("simulate", "fleet"):
        with pytest.raises(SystemExit) as info:
            parser.parse_args([command, "--unit", "per-hour"])
        assert info.value.code == 2
        assert "argument --unit: invalid choice: 'per-hour' (choose from" in capsys.readouterr().err
    args = parser.parse_args(["fleet", "--traces", ".", "--unit", "count"])
    assert args.unit == "count"


JUST_OVER = FleetSettings(targets=(0.98, 0.99), refine=False, min_history_days=1.0)


@pytest.mark.parametrize("rows", [96, 97, 99])
def test_a_service_of_one_day_at_min_history_1d_has_too_little_history(
    tmp_path: Path, rows: int
) -> None:
    # 1.0 to 1.04 days "failed: ... leave no origin ... use a shorter --min-history".
    write_rates(tmp_path / "day.csv", 40.0, rows, step=900)
    (service,) = from_folder(tmp_path, unit="rate")
    result = evaluate_service(service, JUST_OVER)
    assert result.recommendation == TOO_LITTLE_HISTORY, result.error
    days = f"{rows * 900 / DAY:.4g}"
    assert result.reason == (
        f"{days} day{'' if days == '1' else 's'}, under the 1.042 days needed to score the "
        "forecast an hour ahead after 1d of history"
    )


def test_a_service_long_enough_to_score_is_evaluated(tmp_path: Path) -> None:
    # One day of history and the hour forecast from its end: 96 + 4 intervals of 15m.
    t = np.arange(100) * 900.0
    lines = ["timestamp,requests"] + [
        f"{1_700_000_000 + int(s)},{round(900 * (200 + 150 * math.sin(2 * math.pi * s / DAY)))}"
        for s in t
    ]
    (tmp_path / "web.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (service,) = from_folder(tmp_path)
    result = evaluate_service(service, JUST_OVER)
    assert result.recommendation not in (FAILED, TOO_LITTLE_HISTORY), result
    assert result.forecast_smape is not None


def test_a_cache_in_the_traces_folder_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The second run read the cached result (NAME.json) as a service.
    traces = tmp_path / "traces"
    traces.mkdir()
    write_rates(traces / "web.csv", 2.5, 120)
    for given in (str(traces), f"{traces}/", f"{traces}/."):
        argv = ["fleet", "--traces", str(traces), "--cache", given, "--out", str(tmp_path / "o"),
                "--workers", "1", "--targets", "0.9-0.95"]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == (
            f"error: --cache {given} is the --traces folder: the results cached there would be "
            "read as services by the next run; give another --cache, e.g. --cache "
            f"{Path(given) / '.cache'}, or leave it out (default: OUT/.cache)\n"
        )
    assert [p.name for p in traces.iterdir()] == ["web.csv"]  # nothing written
    assert not (tmp_path / "o").exists()


def test_a_cache_below_the_traces_folder_is_not_read_so_not_refused(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "0123456789abcdef01234567.json").write_text("{}", encoding="utf-8")
    write_rates(tmp_path / "web.csv", 2.5, 120)
    check_cache(str(tmp_path / "sub"), str(tmp_path))
    check_cache(str(tmp_path), None)  # --prometheus-url: no folder to read
    assert [s.name for s in from_folder(tmp_path)] == ["web"]
    link = tmp_path.parent / f"{tmp_path.name}-link"
    link.symlink_to(tmp_path)
    try:
        with pytest.raises(FleetInputError, match="is the --traces folder"):
            check_cache(str(link), str(tmp_path))
    finally:
        link.unlink()
