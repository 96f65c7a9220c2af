"""The budget floor: within its budget when replayed, and a lower bound no schedule beats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from scaler.cli import main
from scaler.sim.floor import budget_floor
from scaler.sim.queue import ServiceModel, simulate_queue, tail_share

STEP = 15.0
SLO = 0.5
RANDOM = ServiceModel(capacity_per_replica=50.0, servers_per_replica=1, routing="random")
POOLED = ServiceModel(capacity_per_replica=50.0, servers_per_replica=2, routing="pooled")


def violations(rate: np.ndarray, replicas: np.ndarray, service: ServiceModel) -> float:
    """Share of requests over the SLO or failed, as the simulator counts it."""
    outcome = simulate_queue(rate, replicas, service, STEP)
    return outcome.total_over(SLO) / (float(rate.sum()) * STEP)


def least_within(value: float, service: ServiceModel, share: float) -> int:
    """The fewest replicas whose stationary share over the SLO at `value` is <= `share`."""
    r = 1
    while tail_share(np.array([value]), np.array([r]), service, SLO)[0] > share:
        r += 1
    return r


@pytest.mark.parametrize("service", [RANDOM, POOLED], ids=["random", "pooled"])
def test_constant_demand_takes_the_fewest_replicas_within_the_budget(service: ServiceModel) -> None:
    rate = np.full(200, 420.0)
    floor = budget_floor(rate, service, SLO, STEP, 0.001)
    assert floor is not None
    needed = least_within(420.0, service, 0.001)
    # Every step alike: the cheapest schedule is the count that just meets the budget.
    assert set(floor.replicas.tolist()) == {needed}
    assert floor.replica_seconds == needed * 200 * STEP
    assert floor.violation_ratio <= 0.001
    assert floor.bound_seconds <= floor.replica_seconds


def test_the_budget_is_spent_where_a_replica_saves_least_so_the_floor_beats_the_oracle() -> None:
    # A day of tide at 15 s steps: the oracle holds each step's tail within the budget,
    # the floor only the total, so it costs less and still meets the budget replayed.
    t = np.arange(5760) * STEP
    rate = 30.0 + 570.0 * np.sin(np.pi * (t % 86400) / 86400) ** 4
    oracle = np.array([least_within(v, RANDOM, 0.01) for v in rate])
    floor = budget_floor(rate, RANDOM, SLO, STEP, 0.01)
    assert floor is not None
    oracle_seconds = float(oracle.sum()) * STEP
    assert floor.replica_seconds < 0.98 * oracle_seconds
    assert floor.violation_ratio <= 0.01
    assert violations(rate, oracle, RANDOM) <= 0.01
    assert floor.bound_seconds <= floor.replica_seconds <= 1.005 * floor.bound_seconds
    # A tighter budget costs more.
    tighter = budget_floor(rate, RANDOM, SLO, STEP, 0.001)
    assert tighter is not None and tighter.replica_seconds > floor.replica_seconds


def test_zero_demand_costs_nothing_and_bad_budgets_are_named() -> None:
    floor = budget_floor(np.zeros(10), RANDOM, SLO, STEP, 0.01)
    assert floor is not None and floor.replica_seconds == 0.0 and not floor.replicas.any()
    for budget in (-0.1, 1.0, math.nan):
        with pytest.raises(ValueError, match="budget="):
            budget_floor(np.ones(10), RANDOM, SLO, STEP, budget)


def test_a_budget_below_the_service_time_tail_is_unreachable() -> None:
    # With a 20 ms mean service time, exp(-0.05 / 0.02) = 8 % of requests take over 50 ms
    # however many replicas run: a 1 % budget at that SLO cannot be met.
    assert budget_floor(np.full(20, 100.0), RANDOM, 0.05, STEP, 0.01) is None


@settings(max_examples=60, deadline=None)
@given(
    levels=st.lists(st.floats(0.0, 600.0), min_size=5, max_size=60),
    budget=st.sampled_from([0.0005, 0.001, 0.01, 0.05]),
    extra=st.lists(st.integers(0, 3), min_size=60, max_size=60),
    nudge=st.lists(st.integers(-1, 1), min_size=60, max_size=60),
    pooled=st.booleans(),
)
def test_no_stable_schedule_within_the_budget_costs_less_than_the_bound(
    levels: list[float], budget: float, extra: list[int], nudge: list[int], pooled: bool
) -> None:
    service = POOLED if pooled else RANDOM
    rate = np.repeat(np.array(levels), 4)
    floor = budget_floor(rate, service, SLO, STEP, budget)
    if float(rate.sum()) == 0:
        assert floor is not None and floor.replica_seconds == 0
        return
    assert floor is not None
    assert floor.violation_ratio <= budget
    assert floor.bound_seconds <= floor.replica_seconds + 1e-6
    # Any schedule that keeps every step below capacity: a few replicas more than that.
    stable = np.floor(rate / service.capacity_per_replica).astype(np.int64) + 1
    stable[rate == 0] = 0
    spare = np.resize(np.array(extra, dtype=np.int64), len(rate))
    candidate = stable + spare
    # ... and the floor's own schedule moved a replica up or down here and there.
    nudged = np.maximum(
        floor.replicas + np.resize(np.array(nudge, dtype=np.int64), len(rate)), stable
    )
    for name, other in (("spare", candidate), ("nudged", nudged)):
        within = violations(rate, other, service) <= budget
        event(f"the {name} schedule meets the budget: {within}")
        if within:
            assert float(other.sum()) * STEP >= floor.bound_seconds - 1e-6


def test_simulate_reports_each_budgets_floor_under_every_pick_within_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Three days of a tide at one-minute steps; the first is warm-up, then walk-forward.
    start = 1_700_000_000
    rows = ["timestamp,requests"]
    for i in range(3 * 1440):
        rows.append(f"{start + 60 * i},{6000 + 5000 * math.sin(2 * math.pi * i / 1440):.6g}")
    trace = tmp_path / "tide.csv"
    trace.write_text("\n".join(rows) + "\n", encoding="utf-8")
    argv = ["simulate", "--trace", str(trace), "--warmup-days", "1", "--json"]
    sweep = ["--sweep", "target_utilization=0.5,0.6,0.7,0.8,0.9"]
    assert main([*argv, "--policies", "static-peak,reactive,tidescaler", *sweep]) == 0
    budgets = json.loads(capsys.readouterr().out)["budgets"]
    assert budgets
    for entry in budgets:
        floor = entry["floor"]
        assert floor is not None, entry
        assert floor["slo_violation_ratio"] <= entry["budget"]
        assert floor["lower_bound_replica_hours"] <= floor["replica_hours"]
        for name in ("reactive", "tidescaler"):
            pick = entry[name]
            if pick is None:
                continue
            later = pick["later_span"]
            # Measured on the same span as the picks (the later half): cheaper than each.
            assert floor["replica_hours"] < later["replica_hours"]
            assert floor["vs_static_peak"] < later["cost_vs_static_peak"]
