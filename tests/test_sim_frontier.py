"""Frontiers and budgets: Pareto filter, budget choice, cheapest picks, sweeps over a grid."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scaler.sim import runner
from scaler.sim.cli import add_simulate_parser
from scaler.sim.frontier import budget_rows, choose_budgets, frontiers, match, pareto
from scaler.sim.policies import ForecastCache, prepare, tidescaler
from scaler.sim.report import result_json
from scaler.sim.runner import SweepPoint, sweep
from scaler.sim.scenario import (
    ScenarioError,
    Sweep,
    common_tuning_budget,
    load_scenario,
    parse_scenario,
    with_sweep_value,
)


def pt(label: str, violations: float, hours: float, policy: str = "reactive") -> SweepPoint:
    return SweepPoint("x", label, policy, hours, hours / 100.0, violations, 0.1)


# (label, violations, replica-hours) in, labels kept (fewest violations first) out.
PARETO_CASES = [
    ([], []),
    ([("a", 0.01, 50)], ["a"]),
    # b is dominated by a (more violations, more cost); c is cheaper with more violations.
    ([("a", 0.01, 50), ("b", 0.02, 60), ("c", 0.03, 40)], ["a", "c"]),
    # Input order does not matter; the result runs from fewest violations to cheapest.
    ([("c", 0.03, 40), ("a", 0.01, 50), ("d", 0.0, 90)], ["d", "a", "c"]),
    # Same violations: only the cheaper; same cost: only the fewer violations.
    ([("a", 0.01, 50), ("b", 0.01, 45), ("c", 0.02, 45)], ["b"]),
    # Equal points: the first one given stays.
    ([("a", 0.01, 50), ("b", 0.01, 50)], ["a"]),
    # Shares below one in ten million count as none: the cheapest of them stands.
    ([("a", 1e-9, 90), ("b", 3e-10, 95), ("c", 5e-8, 80), ("d", 1e-6, 70)], ["c", "d"]),
    # A sweep whose cost does not fall as the target rises (noise): joined in order it
    # zig-zags; filtered it is a staircase.
    (
        [("0.4", 0.002, 80), ("0.5", 0.004, 70), ("0.6", 0.003, 75), ("0.7", 0.02, 72)],
        ["0.4", "0.6", "0.5"],
    ),
]


@pytest.mark.parametrize(("given", "kept"), PARETO_CASES)
def test_pareto_keeps_exactly_the_undominated_points(
    given: list[tuple[str, float, float]], kept: list[str]
) -> None:
    front = pareto([pt(*g) for g in given])
    assert [p.value for p in front] == kept
    costs = [p.replica_hours for p in front]
    assert costs == sorted(costs, reverse=True)


def test_frontiers_are_per_policy() -> None:
    points = [
        pt("a", 0.01, 50, "reactive"),
        pt("b", 0.001, 40, "tidescaler"),
        pt("c", 0.02, 60, "reactive"),
        pt("d", 0.0005, 45, "tidescaler"),
    ]
    fronts = frontiers(points)
    assert list(fronts) == ["reactive", "tidescaler"]
    assert [p.value for p in fronts["reactive"]] == ["a"]
    assert [p.value for p in fronts["tidescaler"]] == ["d", "b"]


BUDGET_CASES = [
    # (violation level and replica-hours of each reactive point, budgets kept)
    ([], []),
    # Nothing reaches 0.01 %: left out. The cheapest point (1.5 %) meets 2 %: looser
    # budgets change no pick, so 2 % is the last.
    ([(0.0003, 90), (0.0150, 60)], [0.001, 0.005, 0.01, 0.02]),
    # Budgets run up to the cheapest point's level (30 %: past every candidate).
    ([(1e-9, 90), (0.3, 50)], [0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]),
    # The cheapest point has the fewest violations: one budget says it all.
    ([(0.00005, 50), (0.02, 60)], [0.0001]),
    # Nobody meets even 20 %: no budget.
    ([(0.25, 80), (0.3, 70)], []),
    # A level exactly on a budget meets it; equal costs: the fewer violations count.
    ([(0.001, 80), (0.004, 70), (0.03, 70)], [0.001, 0.005]),
]


@pytest.mark.parametrize(("levels", "budgets"), BUDGET_CASES)
def test_budgets_fall_inside_the_range_reached(
    levels: list[tuple[float, float]], budgets: list[float]
) -> None:
    points = [pt(str(i), v, hours, "reactive") for i, (v, hours) in enumerate(levels)]
    points.append(pt("other", 1e-12, 1.0, "oracle"))  # not a compared policy: ignored
    assert choose_budgets(points) == budgets


def test_budgets_run_until_every_compared_policy_settles() -> None:
    points = [
        pt("r", 0.0002, 50, "reactive"),
        pt("t-safe", 0.0002, 90, "tidescaler"),
        pt("t-cheap", 0.03, 40, "tidescaler"),
    ]
    assert choose_budgets(points) == [0.001, 0.005, 0.01, 0.02, 0.05]
    assert choose_budgets(points, policies=("reactive",)) == [0.001]


def test_budget_rows_pick_the_cheapest_within_each_budget() -> None:
    points = [
        pt("r0.4", 0.004, 100, "reactive"),
        pt("r0.6", 0.012, 80, "reactive"),
        pt("r0.8", 0.030, 70, "reactive"),
        pt("t0.4", 0.0002, 120, "tidescaler"),
        pt("t0.6", 0.003, 90, "tidescaler"),
        pt("t0.8", 0.009, 75, "tidescaler"),
        pt("t0.9", 0.009, 78, "tidescaler"),  # same violations as t0.8, dearer
    ]
    rows = budget_rows(points, choose_budgets(points))
    got = [
        (
            row.budget,
            *(None if p is None else p.value for p in row.picks.values()),
            None
            if row.ratio("tidescaler", "reactive") is None
            else round(row.ratio("tidescaler", "reactive") or 0, 4),
        )
        for row in rows
    ]
    assert got == [
        (0.001, None, "t0.4", None),
        (0.005, "r0.4", "t0.6", 0.9),
        (0.01, "r0.4", "t0.8", 0.75),
        (0.02, "r0.6", "t0.8", 0.9375),
        (0.05, "r0.8", "t0.8", round(75 / 70, 4)),
    ]


def test_match_finds_the_cheapest_with_no_more_violations() -> None:
    reference = SweepPoint("base", "base", "reactive", 80.0, 0.8, 0.012, 0.1)
    points = [
        reference,
        pt("t0.6", 0.003, 90, "tidescaler"),
        pt("t0.8", 0.012, 75, "tidescaler"),  # exactly reactive's level: allowed
        pt("t0.9", 0.013, 60, "tidescaler"),
    ]
    m = match(points, reference, "tidescaler")
    assert m.pick is not None and m.pick.value == "t0.8"
    assert m.ratio == pytest.approx(75 / 80)
    tight = SweepPoint("base", "base", "tidescaler", 90.0, 0.9, 0.0001, 0.1)
    m = match([*points, tight], tight, "reactive")
    assert m.pick is None and m.best_violation == pytest.approx(0.012)


SMALL = """
name: frontier-small
synthetic: {days: 2, step_seconds: 300, peak_rps: 300, peak_to_valley: 20, noise: 0.05}
warmup_days: 1
cluster: {capacity_per_replica: 50, max_replicas: 40}
forecast_refit_seconds: 43200
policies: [static-peak, reactive, tidescaler, oracle]
seed: 2
"""


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "frontier-small.yaml"
    path.write_text(SMALL, encoding="utf-8")
    return path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tidescaler")
    add_simulate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", *argv])
    return int(args.func(args))


def test_json_grid_sweep_adds_frontier_and_budgets(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        str(small),
        "--json",
        "--sweep",
        "target_utilization=0.5,0.9",
        "--sweep",
        "forecastQuantile=0.8,0.99",
    ]
    assert run(argv) == 0
    data = json.loads(capsys.readouterr().out)
    # `policies` is as before: one entry per policy of the scenario as given.
    assert [p["policy"] for p in data["policies"]] == [
        "static-peak",
        "reactive",
        "tidescaler",
        "oracle",
    ]
    # The target moves every policy but oracle; the quantile multiplies tidescaler only.
    runs = {(p["policy"], p["value"]) for p in data["sweep"]}
    assert runs == {
        ("static-peak", "0.5"),
        ("static-peak", "0.9"),
        ("reactive", "0.5"),
        ("reactive", "0.9"),
        ("tidescaler", "0.5,0.8"),
        ("tidescaler", "0.5,0.99"),
        ("tidescaler", "0.9,0.8"),
        ("tidescaler", "0.9,0.99"),
    }
    tide = [p for p in data["sweep"] if p["policy"] == "tidescaler"]
    assert {p["parameter"] for p in tide} == {"target_utilization+forecastQuantile"}
    assert {"target_utilization": "0.5", "forecastQuantile": "0.8"} in [p["settings"] for p in tide]
    # Sweep costs share one yardstick: static-peak at the scenario's own target.
    static = {
        p["value"]: p["cost_vs_static_peak"] for p in data["sweep"] if p["policy"] == "static-peak"
    }
    assert static["0.5"] > 1.0 > static["0.9"]
    hours = data["static_peak_replica_hours"]
    for p in data["sweep"]:
        assert p["cost_vs_static_peak"] == pytest.approx(p["replica_hours"] / hours, abs=1e-3)
    # Frontiers: per policy, Pareto-filtered (violations up, cost down), base included.
    assert set(data["frontier"]) == {"static-peak", "reactive", "tidescaler", "oracle"}
    for front in data["frontier"].values():
        v = [p["slo_violation_ratio"] for p in front]
        c = [p["replica_hours"] for p in front]
        assert v == sorted(v) and c == sorted(c, reverse=True)
    base_tide = [p for p in data["frontier"]["tidescaler"] if p["value"] == "base"]
    for p in base_tide:
        assert p["settings"] == {"target_utilization": "0.7", "forecastQuantile": "0.95"}
    # Budgets: each entry names the cheapest pick of each compared policy (or null).
    for entry in data["budgets"]:
        assert set(entry) == {
            "budget",
            "walk_forward",
            "reactive",
            "tidescaler",
            "tidescaler_vs_reactive",
            "tidescaler_vs_static_peak",
            "forecast",
            "floor",
        }
        # Walk-forward: chosen within the budget on the tuning span, costed on the later one.
        assert entry["walk_forward"] is True
        for name in ("reactive", "tidescaler"):
            pick = entry[name]
            if pick is not None:
                assert pick["tuning_span"]["slo_violation_ratio"] <= entry["budget"]
        # What to deploy: the forecast on only where it cost less on the tuning span.
        tuning_hours = {
            name: entry[name]["tuning_span"]["replica_hours"]
            for name in ("reactive", "tidescaler")
            if entry[name] is not None
        }
        if len(tuning_hours) == 2:
            pays = tuning_hours["tidescaler"] < tuning_hours["reactive"]
            assert entry["forecast"] == ("on" if pays else "off")
        elif tuning_hours:
            assert entry["forecast"] == ("on" if "tidescaler" in tuning_hours else "off")
        else:
            assert entry["forecast"] is None
        if entry["reactive"] and entry["tidescaler"]:
            assert entry["tidescaler_vs_reactive"] == pytest.approx(
                entry["tidescaler"]["later_span"]["replica_hours"]
                / entry["reactive"]["later_span"]["replica_hours"],
                abs=1e-3,
            )
    assert data["at_reactive_violations"]["reference"]["policy"] == "reactive"
    assert data["at_tidescaler_violations"]["policy"] == "reactive"


def test_table_fits_80_columns_without_cutting_policy_names(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The per-policy table fits a terminal; the summary after it is written line by line
    as it is, not wrapped at 80 columns, so a budget row piped to a file stays one line."""
    assert run([str(small), "--sweep", "target_utilization=0.5,0.9"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    first_summary = next(i for i, line in enumerate(lines) if line.startswith("Cheapest setting"))
    assert all(len(line) <= 80 for line in lines[:first_summary])
    assert "…" not in out
    for name in ("static-peak", "reactive", "tidescaler", "oracle"):
        assert f" {name} " in out
    header = next(line for line in lines if line.strip().startswith("budget"))
    budget_rows = lines[lines.index(header) + 1 :]
    assert budget_rows and budget_rows[0].strip()[0].isdigit()  # the first budget, whole
    assert lines[first_summary].endswith("past the budget):")  # the sentence on one line


def test_forecast_cache_changes_nothing_but_the_time(small: Path) -> None:
    scenario = load_scenario(small)
    traffic = scenario.load_traffic()
    sim = prepare(scenario, traffic)
    cache = ForecastCache()
    first = tidescaler(sim, cache=cache)
    again = tidescaler(sim, cache=cache)
    fresh = tidescaler(sim)
    assert cache.refits and len(cache.answers) == 1
    assert np.array_equal(again.replicas.provisioned, fresh.replicas.provisioned)
    assert np.array_equal(first.replicas.provisioned, fresh.replicas.provisioned)
    assert again.detail["forecast_fits"] == fresh.detail["forecast_fits"]
    assert again.detail["forecast_models"] == fresh.detail["forecast_models"]
    # The HPA's scale-down window acts after KEDA's poll: the engine's answers are reused,
    # and the replicas are those of a run of its own.
    slow = with_sweep_value(scenario, "scale_down_stabilization_seconds", "600")
    reused = tidescaler(prepare(slow, traffic), cache=cache)
    assert len(cache.answers) == 1
    alone = tidescaler(prepare(slow, traffic))
    assert np.array_equal(reused.replicas.provisioned, alone.replicas.provisioned)
    assert not np.array_equal(reused.replicas.provisioned, fresh.replicas.provisioned)
    # Another target, another start-up or another series is another answer.
    for other in (
        with_sweep_value(scenario, "target_utilization", "0.5"),
        with_sweep_value(scenario, "podStartupSeconds", "300"),
        replace(scenario, scale=2.0),
    ):
        before = len(cache.answers)
        changed = tidescaler(prepare(other, other.load_traffic()), cache=cache)
        assert len(cache.answers) == before + 1
        own = tidescaler(prepare(other, other.load_traffic()))
        assert np.array_equal(changed.replicas.provisioned, own.replicas.provisioned)


def test_sweep_policies_limit_what_is_rerun(small: Path) -> None:
    text = small.read_text() + "sweep:\n  target_utilization: [0.6]\n  policies: [reactive]\n"
    small.write_text(text)
    _, points = sweep(load_scenario(small))
    assert [(p.policy, p.value) for p in points] == [("reactive", "0.6")]


def test_a_sweeps_wall_time_is_the_whole_runs(small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """result.json's `wall_seconds` gave the base run's time alone (6 s of a 183 s sweep)."""
    pause, runs = 0.05, []
    simulate = runner.simulate

    def slower(*args: Any, **kwargs: Any) -> Any:
        result = simulate(*args, **kwargs)
        runs.append(result)
        time.sleep(pause)  # after the run: outside the time it measures itself
        return result

    monkeypatch.setattr(runner, "simulate", slower)
    small.write_text(small.read_text() + "sweep:\n  target_utilization: [0.5, 0.6, 0.7]\n")
    result, points = sweep(load_scenario(small))
    assert len(runs) >= 4 and points
    assert result.wall_seconds >= pause * len(runs) + sum(r.wall_seconds for r in runs)
    assert result_json(result, points)["wall_seconds"] == round(result.wall_seconds, 3)


@pytest.mark.parametrize(
    ("sweep_yaml", "message"),
    [
        ("{target_utilization: [0.5], threshold: [20]}", "both set the per-replica target"),
        (
            "{forecastQuantile: [0.4]}",
            "forecastQuantile='0.4': expected a number from 0.5 to 0.995",
        ),
        ("{target_utilization: [0.5], policies: [magic]}", "policies: magic not known"),
        ("{target_utilization: 0.5}", "sweep.target_utilization: 0.5 is not valid"),
    ],
    ids=["two-targets", "quantile", "policy", "not-a-list"],
)
def test_bad_grids_are_refused(sweep_yaml: str, message: str) -> None:
    data = {"synthetic": {}, "sweep": __import__("yaml").safe_load(sweep_yaml)}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, "grid.yaml")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("axes", "words"),
    [
        (
            (
                ("target_utilization", ("0.4", "0.425", "0.45")),
                ("scale_down_stabilization_seconds", ("0", "300")),
            ),
            "6 settings: the per-replica target (40 % to 45 %, in steps of 2.5 %) and the "
            "HPA's scale-down stabilization window (0/300 s)",
        ),
        # Uneven steps are listed rather than summarised as a range.
        (
            (("target_utilization", ("0.5", "0.6", "0.9")),),
            "3 settings: the per-replica target (50/60/90 %)",
        ),
        ((("pod_startup_seconds", ("30", "60")),), "2 settings: pod_startup_seconds (30/60)"),
    ],
)
def test_reports_say_what_the_sweep_gave_each_policy(
    axes: tuple[tuple[str, tuple[str, ...]], ...], words: str
) -> None:
    assert Sweep(axes).tuning_budget() == words


def test_scenarios_that_sweep_differently_are_not_summarised_as_one() -> None:
    a = Sweep((("target_utilization", ("0.5", "0.6")),))
    b = Sweep((("target_utilization", ("0.5", "0.7")),))
    assert common_tuning_budget([a, a]) == a.tuning_budget()
    assert common_tuning_budget([a, b]) == "each scenario's own sweep (see its file)"
