"""`tidescaler fleet` on a real Dask cluster: known answers, failures, resume, Prometheus.

The clusters here are real: `distributed.LocalCluster` worker processes, and
for the "remote" path a scheduler and workers started as separate processes
with Dask's own command-line tools, reached only through their address.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from prometheus_server import PrometheusServer, Series, free_port, openmetrics

from scaler.cli import main
from scaler.fleet.evaluate import (
    FAILED,
    KEEP_REACTIVE,
    TOO_LITTLE_HISTORY,
    USE_TIDESCALER,
    FleetSettings,
    ServiceResult,
    evaluate_service,
)
from scaler.fleet.execute import ResultCache, run_fleet
from scaler.fleet.report import markdown
from scaler.fleet.services import FleetInputError, ServiceSource, from_folder, from_prometheus
from scaler.policy import parse_policy
from scaler.sim.scenario import QUERY_PLACEHOLDER
from scaler.sim.traffic import OpeningSpec, TideSpec, opening, synthetic_tide, write_trace
from scaler.sources.prometheus import PrometheusSource

pytestmark = pytest.mark.slow

STEP = 900.0
# Targets in 1 % steps as by default, over a narrower range (the picks here lie in it).
TARGETS = tuple(round(0.60 + 0.01 * i, 2) for i in range(31))
SETTINGS = FleetSettings(targets=TARGETS, min_history_days=3.0, min_saving=0.03)


def _write_trace(path: Path, rate: np.ndarray, start: float = 1_700_000_000.0) -> None:
    lines = ["timestamp,requests"]
    lines += [f"{int(start + i * STEP)},{round(r * STEP)}" for i, r in enumerate(rate)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _tides(days: float, peak_to_valley: float, seed: int) -> np.ndarray:
    spec = TideSpec(days=days, step_seconds=STEP, peak_to_valley=peak_to_valley, peak_rps=400.0)
    return synthetic_tide(spec, seed).rate_per_second


@pytest.fixture(scope="module")
def fleet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fleet")
    _write_trace(folder / "flat.csv", np.full(int(5 * 86400 / STEP), 200.0))
    _write_trace(folder / "tides.csv", _tides(6, 50.0, 1))
    _write_trace(folder / "short.csv", _tides(1, 10.0, 2))
    (folder / "broken.csv").write_text("timestamp,requests\n1700000000,5\nnoon,7\n")
    (folder / "notes.txt").write_text("not a trace")
    return folder


def test_folder_lists_one_service_per_trace_file(fleet_folder: Path) -> None:
    names = [s.name for s in from_folder(fleet_folder)]
    assert names == ["broken", "flat", "short", "tides"]


def test_folder_errors_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(FleetInputError, match="not a folder"):
        from_folder(tmp_path / "missing")
    with pytest.raises(FleetInputError, match="no trace files"):
        from_folder(tmp_path)


def test_local_cluster_gives_known_answers_and_records_failures(
    fleet_folder: Path, tmp_path: Path
) -> None:
    services = from_folder(fleet_folder)
    seen: list[str] = []
    fleet = run_fleet(
        services,
        SETTINGS,
        workers=2,
        cache=ResultCache(tmp_path / "cache"),
        on_result=lambda r, cached: seen.append(r.name),
    )
    by_name = {r.name: r for r in fleet.results}
    assert fleet.workers == 2 and fleet.computed == 4 and fleet.cached == 0
    assert sorted(seen) == sorted(by_name)  # every result streamed back
    assert by_name["short"].recommendation == TOO_LITTLE_HISTORY
    assert by_name["broken"].recommendation == FAILED
    assert "noon" in (by_name["broken"].error or "")
    assert not (by_name["broken"].error or "").startswith("TraceError")  # the message alone
    # Flat traffic: a forecast has nothing to add, so reactive stays.
    assert by_name["flat"].recommendation == KEEP_REACTIVE
    # Strong tides on a 15-minute grid: the forecast beats naive, but reactive at its
    # best target already follows a tide, so the forecast saves too little to switch.
    # (With targets in 10 % steps this service showed a saving of over 5 %: a step
    # of the grid, not the forecast, which is why the default sweeps 1 % steps.)
    tides = by_name["tides"]
    assert tides.forecast_skill is not None and tides.forecast_skill > 0
    assert tides.recommendation == KEEP_REACTIVE, tides
    assert tides.saving is not None and abs(tides.saving) < SETTINGS.min_saving
    assert tides.trigger_metadata == {}
    # The room: what a schedule with foresight and instant pods would save over reactive on
    # the same span, within the same budget; more than the forecast's saving.
    assert tides.floor_replica_hours is not None and tides.reactive_replica_hours is not None
    assert 0 < tides.floor_replica_hours < tides.reactive_replica_hours
    assert tides.room == pytest.approx(1 - tides.floor_replica_hours / tides.reactive_replica_hours)
    assert tides.room is not None and tides.room > tides.saving
    # Said in the report, and kept by the cache (a rerun reads the same room back).
    assert by_name["flat"].room is not None
    kept = ResultCache(tmp_path / "kept")
    kept.put("tides", tides)
    read_back = kept.get("tides")
    assert read_back is not None and read_back.room == tides.room
    assert "| room |" in markdown(fleet.results, SETTINGS, "")


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> ServiceSource:
    """Six days at one-minute steps, tenfold within two minutes at 09:00 every weekday."""
    folder = tmp_path_factory.mktemp("exchange")
    write_trace(opening(OpeningSpec(days=6), seed=1), folder / "exchange.csv")
    (service,) = from_folder(folder)
    return service


@pytest.fixture(scope="module")
def exchange_result(exchange: ServiceSource) -> ServiceResult:
    """The exchange evaluated with the default coarse-to-fine search (shared: it takes long)."""
    return evaluate_service(exchange, SETTINGS)


def test_a_jump_at_a_minute_history_tells_is_where_the_forecast_pays(
    exchange_result: ServiceResult,
) -> None:
    # Reactive needs a lower target to absorb each opening; tidescaler has the pods
    # ready when it comes.
    result = exchange_result
    assert result.recommendation == USE_TIDESCALER, result
    assert result.saving is not None and result.saving >= SETTINGS.min_saving
    assert result.trigger_metadata["forecast"] == "on"
    assert float(result.trigger_metadata["threshold"]) > 0
    # What a user pastes is a trigger the server takes once the placeholder is their query
    # (without a query it was refused: threshold and forecast need one).
    assert result.trigger_metadata["query"] == QUERY_PLACEHOLDER
    pasted = {**result.trigger_metadata, "query": "sum(rate(http_requests_total[1m]))"}
    assert parse_policy(pasted).forecast.mode.value == "on"
    # Capacity in the service's own requests/s, as the threshold is (it was reported as the
    # simulated replica's, whatever the service).
    assert result.capacity_per_replica == pytest.approx(result.peak_rps / SETTINGS.peak_replicas)


def test_where_only_tidescaler_meets_the_budget_the_row_says_why_there_is_no_saving(
    exchange: ServiceSource,
) -> None:
    """A "use tidescaler" with no saving and no reactive setting read as nothing: the row
    says reactive's fewest violations, and down to which target it was swept."""
    tight = FleetSettings(violation_budget=0.003, targets=(0.4, 0.5, 0.6), refine=False)
    result = evaluate_service(exchange, tight)
    assert result.recommendation == USE_TIDESCALER and result.reactive_setting is None
    assert result.saving is None and result.tidescaler_setting is not None
    assert result.reason is not None
    assert result.reason.startswith("no reactive setting meets the budget: its fewest violations")
    assert result.reason.endswith("of requests, at targets down to 0.4")
    assert f"{USE_TIDESCALER} ({result.reason})" in markdown([result], tight, "")


def test_the_coarse_to_fine_search_picks_what_the_full_sweep_picks(
    fleet_folder: Path, exchange: ServiceSource, exchange_result: ServiceResult
) -> None:
    tides = next(s for s in from_folder(fleet_folder) if s.name == "tides")
    # The full sweeps are the slow part: both at once, one per core.
    full_sweeps = run_fleet([tides, exchange], replace(SETTINGS, refine=False), workers=2)
    quick_picks = (evaluate_service(tides, SETTINGS), exchange_result)
    pairs = zip((tides, exchange), quick_picks, full_sweeps.results, strict=True)
    for service, quick, full in pairs:
        assert quick.reactive_setting == full.reactive_setting, service.name
        assert quick.tidescaler_setting == full.tidescaler_setting, service.name
        assert quick.saving == full.saving and quick.recommendation == full.recommendation


def test_the_default_sweep_is_fine_enough_not_to_make_savings_of_its_own() -> None:
    targets = np.array(FleetSettings().targets)
    assert targets.min() <= 0.4 and targets.max() >= 0.95
    assert np.all(np.diff(targets) <= 0.01 + 1e-9)


def test_rerun_resumes_from_the_cache_and_retries_failures(
    fleet_folder: Path, tmp_path: Path
) -> None:
    cache = ResultCache(tmp_path / "cache")
    services = [s for s in from_folder(fleet_folder) if s.name in {"short", "broken", "flat"}]
    # What is cached is at stake here, not the search: a coarser sweep is enough.
    coarse = replace(SETTINGS, targets=TARGETS[::5])
    first = run_fleet(services, coarse, workers=1, cache=cache)
    again = run_fleet(services, coarse, workers=1, cache=cache)
    # Finished services come from the cache; the failed one is tried again.
    assert first.computed == 3
    assert again.computed == 1 and again.cached == 2
    assert [r.as_dict() for r in again.results if r.name != "broken"] == [
        r.as_dict() for r in first.results if r.name != "broken"
    ]
    # Other settings are other inputs: nothing is reused.
    other = run_fleet(services, replace(coarse, violation_budget=0.02), workers=1, cache=cache)
    assert other.computed == 3


@pytest.fixture()
def dask_scheduler(tmp_path: Path) -> Iterator[str]:
    """A Dask scheduler and two workers as separate processes, as on a real cluster."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    scheduler = subprocess.Popen(
        [
            str(bin_dir / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = subprocess.Popen(
        [
            str(bin_dir / "dask"),
            "worker",
            address,
            "--nworkers",
            "2",
            "--nthreads",
            "1",
            "--no-dashboard",
            "--local-directory",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in (workers, scheduler):
            process.terminate()
        for process in (workers, scheduler):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_cluster_path_gives_the_same_report_as_the_local_default(
    fleet_folder: Path, tmp_path: Path, dask_scheduler: str
) -> None:
    # One service simulated with the default sweep, one too short, one failing: what is
    # at stake is the path, so one full simulation is enough (and each costs seconds).
    folder = tmp_path / "traces"
    folder.mkdir()
    for name in ("flat", "short", "broken"):
        (folder / f"{name}.csv").write_bytes((fleet_folder / f"{name}.csv").read_bytes())
    local_out, remote_out = tmp_path / "local", tmp_path / "remote"
    common = ["fleet", "--traces", str(folder), "--no-cache"]
    assert main([*common, "--out", str(local_out), "--workers", "2"]) == 0
    assert main([*common, "--out", str(remote_out), "--scheduler", dask_scheduler]) == 0

    def services(out: Path) -> list[dict[str, object]]:
        document = json.loads((out / "fleet.json").read_text())
        assert document["schema_version"] == 2
        return [{k: v for k, v in s.items() if k != "wall_seconds"} for s in document["services"]]

    reported = services(remote_out)
    assert reported == services(local_out)
    by_name = {s["name"]: s for s in reported}
    assert by_name["flat"]["recommendation"] == KEEP_REACTIVE
    assert by_name["flat"]["reactive_setting"] is not None
    assert by_name["short"]["recommendation"] == TOO_LITTLE_HISTORY
    assert by_name["broken"]["recommendation"] == FAILED
    assert (remote_out / "savings.png").stat().st_size > 1000
    csv_rows = (remote_out / "fleet.csv").read_text().splitlines()
    assert csv_rows[0].startswith("name,recommendation,saving") and len(csv_rows) == 4
    assert "| flat |" in (remote_out / "fleet.md").read_text()


def test_fleet_from_one_prometheus_query(
    prometheus_binaries: tuple[str, str], tmp_path: Path
) -> None:
    end = math.floor(time.time() / STEP) * STEP
    start = end - 4 * 86400
    series = []
    for service, peak in (("checkout", 400.0), ("search", 120.0)):
        rate = _tides(5, 20.0, 3)[: int((end - start) / STEP) + 1] * peak / 400.0
        samples = [(start + i * STEP, float(r)) for i, r in enumerate(rate)]
        series.append(Series("shop_rps", {"service": service, "pod": "a"}, samples))
    server = PrometheusServer(tmp_path / "prometheus")
    server.backfill(openmetrics(series))
    server.start()
    try:
        query = "sum by (service) (shop_rps)"
        services = from_prometheus(server.url, query, start, end, STEP)
        assert [s.name for s in services] == ["checkout", "search"]
        trace = services[1].load()
        assert trace.step_seconds == STEP and len(trace.values) == len(rate)
        # Each worker fetched only its own service's series.
        assert np.nanmax(trace.values) == pytest.approx(np.max(rate) * STEP, rel=1e-6)
        # The query a recommended service's trigger metadata carries: its own series alone.
        with PrometheusSource(clock=lambda: end) as source:
            last = source.instant(server.url, services[1].series_query())
        assert last == pytest.approx(trace.values[-1] / STEP, rel=1e-6)
        # The fetch is at stake here, not the search: a coarser sweep is enough.
        fleet = run_fleet(services, replace(SETTINGS, targets=TARGETS[::5]), workers=1)
        assert [r.recommendation for r in fleet.results] != [FAILED, FAILED]
        assert all(r.days == pytest.approx(len(rate) * STEP / 86400) for r in fleet.results)
    finally:
        server.stop()


def test_prometheus_query_without_a_by_clause_is_refused(
    prometheus: PrometheusServer,
) -> None:
    now = time.time()
    with pytest.raises(FleetInputError, match="by"):
        from_prometheus(prometheus.url, "vector(1)", now - 86400, now, STEP)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", "--out", str(tmp_path)]) == 2
    assert "either --traces" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["fleet", "--traces", str(tmp_path), "--out", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err
