"""Cost/violation frontiers and the comparison of policies at equal SLO-violation budgets.

A policy's frontier is the set of its settings that no other setting of the same
policy beats on both cost and violations (Pareto filter). Policies are compared
frontier against frontier: for each violation budget, the cheapest setting of
each policy whose share of requests over the SLO (or failed) is within it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scaler.sim.runner import SweepPoint, cost_at_budget

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


def choose_budgets(
    points: Iterable[SweepPoint],
    policies: Sequence[str] = COMPARED,
    candidates: Sequence[float] = BUDGET_CANDIDATES,
) -> list[float]:
    """The candidate budgets inside the range the compared policies reach.

    A budget is kept when some compared policy meets it. Once every compared
    policy's cheapest setting meets a budget, looser budgets change no pick: only
    the first such budget is kept.
    """
    mine = [p for p in points if p.policy in policies]
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
    """The cheapest setting of each policy within one violation budget (None: none meets it)."""

    budget: float
    picks: dict[str, SweepPoint | None]

    def ratio(self, policy: str, other: str) -> float | None:
        """Cost of `policy` over cost of `other` at this budget, when both meet it."""
        a, b = self.picks.get(policy), self.picks.get(other)
        if a is None or b is None or b.replica_hours <= 0:
            return None
        return a.replica_hours / b.replica_hours


def budget_rows(
    points: Sequence[SweepPoint],
    budgets: Sequence[float],
    policies: Sequence[str] = COMPARED,
) -> list[BudgetRow]:
    return [
        BudgetRow(budget, {name: cost_at_budget(list(points), name, budget) for name in policies})
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
