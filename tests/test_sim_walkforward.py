"""Walk-forward frontiers with equal tuning budgets.

Settings are chosen on the tuning span (first half of the evaluation window) and
reported on the later span. The scale-down stabilization window is the HPA's, so
it moves every policy: swept with the target, both policies get the very same
settings; a forecast key moves tidescaler alone.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from scaler.sim.frontier import GATED, BudgetRow, budget_rows, choose_budgets, gated_pick, with_gate
from scaler.sim.runner import Span, SweepPoint, sweep, walk_forward_pick
from scaler.sim.scenario import ScenarioError, parse_scenario

SMALL: dict[str, Any] = {
    "name": "walk",
    "synthetic": {
        "days": 2.5,
        "step_seconds": 60,
        "peak_rps": 300,
        "peak_to_valley": 6,
        "flash_crowds_per_week": 4,
    },
    "warmup_days": 1,
    "cluster": {"capacity_per_replica": 50, "max_replicas": 40, "min_replicas": 1},
    "tidescaler": {"forecastHistory": "1d", "minReplicas": "1"},
    "policies": ["static-peak", "reactive", "tidescaler", "oracle"],
    "forecast_refit_seconds": 21600,
    "sweep": {
        "target_utilization": [0.5, 0.8],
        "scale_down_stabilization_seconds": [0, 600],
    },
    "seed": 4,
}


def point(
    label: str, tuning: tuple[float, float], later: tuple[float, float], policy: str = "reactive"
) -> SweepPoint:
    """A point with (replica-hours, violations) on each span; whole-window figures summed."""
    hours = tuning[0] + later[0]
    return SweepPoint(
        "x",
        label,
        policy,
        hours,
        hours / 100.0,
        (tuning[1] + later[1]) / 2,
        0.1,
        (("target_utilization", label),),
        Span(tuning[0], tuning[0] / 50.0, tuning[1]),
        Span(later[0], later[0] / 50.0, later[1]),
    )


def test_walk_forward_chooses_on_the_tuning_span_and_reports_the_later_one() -> None:
    points = [
        # Cheapest within 1 % over the whole window, but over budget when tuning.
        point("0.9", (30.0, 0.012), (28.0, 0.001)),
        # Within budget when tuning: chosen, then misses the budget later.
        point("0.7", (40.0, 0.008), (41.0, 0.02)),
        point("0.5", (55.0, 0.001), (56.0, 0.0005)),
    ]
    pick = walk_forward_pick(points, "reactive", 0.01)
    assert pick is not None and pick.value == "0.7"
    [row] = budget_rows(points, [0.01], ("reactive",))
    assert row.walk_forward and row.picks["reactive"] is pick
    assert row.cost("reactive") == 41.0  # the later span's cost, not the tuning span's
    # Whole-window choice (no spans) would have taken the point tuning ruled out.
    plain = [
        SweepPoint(p.parameter, p.value, p.policy, p.replica_hours, 0.0, p.slo_violation_ratio, 0)
        for p in points
    ]
    [whole] = budget_rows(plain, [0.01], ("reactive",))
    assert not whole.walk_forward and whole.picks["reactive"].value == "0.9"  # type: ignore[union-attr]
    # Budgets are chosen from what tuning sees.
    assert choose_budgets(points, ("reactive",)) == [0.001, 0.005, 0.01, 0.02]


def test_both_policies_get_the_same_settings_and_the_spans_add_up() -> None:
    scenario = parse_scenario(SMALL, "walk.yaml")
    result, points = sweep(scenario)
    runs = Counter(p.policy for p in points)
    assert runs["reactive"] == runs["tidescaler"] == 4
    assert "oracle" not in runs
    by_policy = {
        name: {p.settings: p for p in points if p.policy == name}
        for name in ("reactive", "tidescaler")
    }
    assert set(by_policy["reactive"]) == set(by_policy["tidescaler"])
    assert {dict(s)["scale_down_stabilization_seconds"] for s in by_policy["reactive"]} == {
        "0",
        "600",
    }
    # The window moves both: holding replicas 600 s longer costs more than not at all.
    for mine in by_policy.values():
        for target in ("0.5", "0.8"):
            at = ("target_utilization", target)
            short = mine[(at, ("scale_down_stabilization_seconds", "0"))]
            long = mine[(at, ("scale_down_stabilization_seconds", "600"))]
            assert long.replica_hours > short.replica_hours
    # Spans split the evaluation window: hours add up, costs use static-peak per span.
    for p in points:
        assert p.tuning is not None and p.later is not None
        assert p.tuning.replica_hours + p.later.replica_hours == pytest.approx(p.replica_hours)
    tune_static, later_static = result.static_span_hours
    assert tune_static + later_static == pytest.approx(result.static_peak_hours)
    some = points[0]
    assert some.later is not None
    assert some.later.cost_vs_static_peak == pytest.approx(some.later.replica_hours / later_static)


def test_a_forecast_key_moves_tidescaler_alone() -> None:
    data = {**SMALL, "sweep": {"target_utilization": [0.5, 0.8], "forecastQuantile": [0.8, 0.95]}}
    _, points = sweep(parse_scenario(data, "walk.yaml"))
    runs = Counter(p.policy for p in points)
    assert runs["tidescaler"] == 4 and runs["reactive"] == 2
    assert all("forecastQuantile" not in dict(p.settings) for p in points if p.policy == "reactive")


def test_a_bad_stabilization_window_is_refused() -> None:
    data = {**SMALL, "sweep": {"scale_down_stabilization_seconds": [-5]}}
    with pytest.raises(ScenarioError, match="expected seconds from 0 to 3600"):
        parse_scenario(data, "walk.yaml")


def test_the_gate_keeps_the_forecast_only_where_it_paid_on_the_tuning_span() -> None:
    def row(*points: SweepPoint) -> BudgetRow:
        [only] = budget_rows(list(points), [0.01])
        return with_gate(only)

    reactive = point("r", (50.0, 0.005), (52.0, 0.006))
    # Cheaper on the tuning span: the forecast stays on, whatever the later span says.
    cheaper = point("t", (48.0, 0.004), (53.0, 0.007), "tidescaler")
    gated = row(reactive, cheaper)
    assert gated.picks[GATED] is cheaper and gated.cost(GATED) == 53.0
    # Dearer on the tuning span: off, though it would have been cheaper later (the gate
    # never sees the span it is reported on).
    dearer = point("t", (51.0, 0.004), (40.0, 0.001), "tidescaler")
    gated = row(reactive, dearer)
    assert gated.picks[GATED] is reactive and gated.ratio(GATED, "reactive") == 1.0
    # A tie keeps it off: the forecast must pay to be on.
    tied = point("t", (50.0, 0.003), (51.0, 0.003), "tidescaler")
    assert row(reactive, tied).picks[GATED] is reactive
    # Only one policy meets the budget on the tuning span: that one.
    over = point("t", (30.0, 0.05), (30.0, 0.05), "tidescaler")
    assert row(reactive, over).picks[GATED] is reactive
    assert row(point("r", (30.0, 0.05), (30.0, 0.05)), cheaper).picks[GATED] is cheaper
    assert row(point("r", (30.0, 0.05), (30.0, 0.05)), over).picks[GATED] is None
    # Without spans the whole window decides.
    plain = [
        SweepPoint("x", "r", "reactive", 50.0, 0.5, 0.004, 0.1),
        SweepPoint("x", "t", "tidescaler", 49.0, 0.49, 0.004, 0.1),
    ]
    [whole] = budget_rows(plain, [0.01])
    assert gated_pick(whole) is plain[1]
