"""Cost/violation frontiers and the comparison of policies at equal SLO-violation budgets.

A policy's frontier is the set of its settings that no other setting of the same
policy beats on both cost and violations (Pareto filter). Policies are compared
frontier against frontier: for each violation budget, the cheapest setting of
each policy whose share of requests over the SLO (or failed) is within it.

Walk-forward (the default where runs carry their spans): the setting is chosen
on the tuning span (the first part of the evaluation window) and its cost and
violations are those of the later span, which the choice never saw, as a
setting tuned on past traffic meets future traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scaler.sim.runner import SweepPoint, cost_at_budget, walk_forward_pick

# Violation budgets considered (share of requests over the SLO or failed); a
# scenario reports those that fall inside the range its policies reach.
BUDGET_CANDIDATES = (0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
COMPARED = ("reactive", "tidescaler")
# Shares of requests over the SLO below this count as none when filtering: the
# queue model's tails leave traces such as 1e-9 that no budget tells apart.
NEGLIGIBLE = 1e-7


def pareto(points: Iterable[SweepPoint]) -> list[SweepPoint]:
    """The points not dominated in both cost and violations, by violations ascending.

    A point is dropped when another has no more violations and no more cost (and
    is not the same point): of equal points the first one given is kept. Along the
    result violations rise and cost falls strictly. Violations below NEGLIGIBLE
    count as none (the cheapest of those points stands for them all).
    """

    def level(p: SweepPoint) -> float:
        return p.slo_violation_ratio if p.slo_violation_ratio >= NEGLIGIBLE else 0.0

    ordered = sorted(points, key=lambda p: (level(p), p.replica_hours))
    kept: list[SweepPoint] = []
    for point in ordered:
        if not kept or point.replica_hours < kept[-1].replica_hours:
            kept.append(point)
    return kept


def frontiers(points: Iterable[SweepPoint]) -> dict[str, list[SweepPoint]]:
    """Each policy's Pareto frontier, policies in order of first appearance."""
    by_policy: dict[str, list[SweepPoint]] = {}
    for point in points:
        by_policy.setdefault(point.policy, []).append(point)
    return {name: pareto(mine) for name, mine in by_policy.items()}


def walk_forward(points: Iterable[SweepPoint]) -> bool:
    """Whether every point carries its tuning and later spans (walk-forward possible)."""
    given = list(points)
    return bool(given) and all(p.tuning is not None and p.later is not None for p in given)


def on_tuning_span(points: Iterable[SweepPoint]) -> list[SweepPoint]:
    """The points with the figures of their tuning span (what a walk-forward choice sees)."""
    out = []
    for p in points:
        t = p.tuning
        assert t is not None
        out.append(
            SweepPoint(
                p.parameter,
                p.value,
                p.policy,
                t.replica_hours,
                t.cost_vs_static_peak,
                t.slo_violation_ratio,
                p.p99_latency_seconds,
                p.settings,
                p.tuning,
                p.later,
            )
        )
    return out


def choose_budgets(
    points: Iterable[SweepPoint],
    policies: Sequence[str] = COMPARED,
    candidates: Sequence[float] = BUDGET_CANDIDATES,
) -> list[float]:
    """The candidate budgets inside the range the compared policies reach.

    A budget is kept when some compared policy meets it. Once every compared
    policy's cheapest setting meets a budget, looser budgets change no pick: only
    the first such budget is kept. With walk-forward points, on the tuning span.
    """
    given = list(points)
    if walk_forward(given):
        given = on_tuning_span(given)
    mine = [p for p in given if p.policy in policies]
    if not mine:
        return []
    low = min(p.slo_violation_ratio for p in mine)
    cheapest = [
        min(
            (p for p in mine if p.policy == name),
            key=lambda p: (p.replica_hours, p.slo_violation_ratio),
        ).slo_violation_ratio
        for name in dict.fromkeys(p.policy for p in mine)
    ]
    settled = max(cheapest)
    chosen: list[float] = []
    for budget in sorted(candidates):
        if budget < low:
            continue
        chosen.append(budget)
        if budget >= settled:
            break
    return chosen


@dataclass(frozen=True)
class BudgetRow:
    """The cheapest setting of each policy within one violation budget (None: none meets it).

    Walk-forward rows chose on the tuning span; their costs are the later span's.
    """

    budget: float
    picks: dict[str, SweepPoint | None]
    walk_forward: bool = False

    def cost(self, policy: str) -> float | None:
        """Replica-hours of the pick (on the later span when walk-forward)."""
        pick = self.picks.get(policy)
        if pick is None:
            return None
        if self.walk_forward:
            assert pick.later is not None
            return pick.later.replica_hours
        return pick.replica_hours

    def ratio(self, policy: str, other: str) -> float | None:
        """Cost of `policy` over cost of `other` at this budget, when both meet it."""
        a, b = self.cost(policy), self.cost(other)
        if a is None or b is None or b <= 0:
            return None
        return a / b


GATED = "tidescaler, gated"


def forecast_on(row: BudgetRow, min_saving: float = 0.0) -> bool | None:
    """Whether the gate turns the forecast on at this budget: tidescaler as deployed
    after a simulation of one's own history keeps the forecast only where its pick costs
    less than reactive's on the span the choice sees (the tuning span, walk-forward).

    With the forecast off tidescaler moves replicas exactly as reactive does, so the
    gate adds one yes/no choice to tidescaler's settings, made on the past, never on
    the span reported. A tie keeps it off: the forecast must pay to be on (by at least
    `min_saving`, a share of reactive's cost, when one is given; none by default, as
    measured in the README). Where only one policy meets the budget, that one; None
    where neither does.
    """
    tide, react = row.picks.get("tidescaler"), row.picks.get("reactive")
    if tide is None or react is None:
        return None if tide is None and react is None else tide is not None

    def seen(point: SweepPoint) -> float:
        if row.walk_forward:
            assert point.tuning is not None
            return point.tuning.replica_hours
        return point.replica_hours

    return seen(tide) < seen(react) * (1.0 - min_saving)


def gated_pick(row: BudgetRow, min_saving: float = 0.0) -> SweepPoint | None:
    """The gate's pick: tidescaler's where `forecast_on`, else reactive's."""
    on = forecast_on(row, min_saving)
    if on is None:
        return None
    return row.picks.get("tidescaler") if on else row.picks.get("reactive")


def with_gate(row: BudgetRow, min_saving: float = 0.0) -> BudgetRow:
    """The row with the gated pick added under GATED."""
    picks = {**row.picks, GATED: gated_pick(row, min_saving)}
    return BudgetRow(row.budget, picks, row.walk_forward)


def budget_rows(
    points: Sequence[SweepPoint],
    budgets: Sequence[float],
    policies: Sequence[str] = COMPARED,
    walk: bool | None = None,
) -> list[BudgetRow]:
    """One row per budget; walk-forward (`walk`, default: when every point has spans)."""
    given = list(points)
    forward = walk_forward(given) if walk is None else walk
    pick = walk_forward_pick if forward else cost_at_budget
    return [
        BudgetRow(budget, {name: pick(given, name, budget) for name in policies}, forward)
        for budget in budgets
    ]


@dataclass(frozen=True)
class Matched:
    """The cheapest setting of `policy` with no more violations than `reference`."""

    reference: SweepPoint
    policy: str
    pick: SweepPoint | None
    best_violation: float | None  # the policy's fewest violations, when it cannot match

    @property
    def ratio(self) -> float | None:
        if self.pick is None or self.reference.replica_hours <= 0:
            return None
        return self.pick.replica_hours / self.reference.replica_hours


def match(points: Sequence[SweepPoint], reference: SweepPoint, policy: str) -> Matched:
    pick = cost_at_budget(list(points), policy, reference.slo_violation_ratio)
    levels = [p.slo_violation_ratio for p in points if p.policy == policy]
    return Matched(reference, policy, pick, min(levels) if pick is None and levels else None)


def base_point(points: Sequence[SweepPoint], policy: str) -> SweepPoint | None:
    """The policy at the scenario as given (its own target)."""
    for point in points:
        if point.policy == policy and point.is_base:
            return point
    return None
