"""The budget floor: the cheapest replicas a clairvoyant scheduler finds for a budget.

The oracle policy holds every step's latency tail under `oracle_tail`; a violation
budget counts requests over the whole span, so a scheduler that knew the future
could spend it where a replica buys the fewest violations and run cheaper than the
oracle. The floor is that schedule, found by Lagrangian relaxation of the budget:
at a price `lam` per violated request, each step takes the replica count that
minimises `replicas + lam x demand x share over the SLO`, and the price is bisected
until the schedule, replayed through the simulator's own queue (`simulate_queue`,
backlog carried from step to step), meets the budget. It has no start-up delay and
sees the true demand: what it costs is the room any autoscaler has.

Its `bound_seconds` is the Lagrangian dual at the prices bisected: by weak duality no
schedule that keeps every step below its capacity meets the budget for less, whatever
it knows, and the floor's own cost is within 0.1 % of it on the scenarios in
simulations/. A schedule could go under it only by running steps at or over capacity,
whose backlog carries into the steps after them; no swept setting of any policy there
does (tests/test_sim_floor.py holds both to random schedules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from scaler.sim.policies import prepare
from scaler.sim.queue import ServiceModel, simulate_queue, tail_share
from scaler.sim.runner import SimulationResult, evaluated_from, tuning_split
from scaler.sim.scenario import Scenario
from scaler.sim.traffic import Traffic

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Replica counts priced per demand level: from 0 up to this utilisation of their
# capacity (lower ones are never cheaper at any budget worth stating).
LOWEST_UTILISATION = 0.25
EXTRA_REPLICAS = 3
BISECTIONS = 40


@dataclass(frozen=True)
class Floor:
    """The cheapest schedule found within `budget` and what it does."""

    replicas: IntArray  # per step
    replica_seconds: float
    # No schedule that keeps every step below capacity costs less (Lagrangian duality),
    # whatever it knows: the floor's own cost is within (replica_seconds - this) of the best.
    bound_seconds: float
    violation_ratio: float  # requests over the SLO or failed / requests, replayed

    @property
    def replica_hours(self) -> float:
        return self.replica_seconds / 3600.0

    @property
    def bound_hours(self) -> float:
        return self.bound_seconds / 3600.0


def _price_table(
    values: FloatArray, service: ServiceModel, slo: float, utilisation: float
) -> tuple[IntArray, FloatArray]:
    """Per distinct demand, the replica counts priced, from 0 up to `utilisation` of their
    capacity (a row padded with its last), and the share over the SLO at each: the
    stationary queue's below capacity, 1 at or above it. (A step a little over capacity
    is mild on its own, but its backlog carries into the next: priced alone, such steps
    looked nearly free, and the replayed schedule missed every budget.)"""
    capacity = service.capacity_per_replica
    tops = np.maximum(
        np.ceil(values / (capacity * utilisation)),
        np.ceil(values / capacity) + EXTRA_REPLICAS,
    ).astype(np.int64)
    tops[values <= 0] = 0
    width = int(tops.max()) + 1
    counts = np.minimum(np.arange(width, dtype=np.int64)[None, :], tops[:, None])
    grid = np.broadcast_to(values[:, None], counts.shape)
    shares = tail_share(grid.ravel(), counts.ravel(), service, slo)
    return counts, shares.reshape(counts.shape)


def budget_floor(
    rate: FloatArray,
    service: ServiceModel,
    slo_seconds: float,
    step_seconds: float,
    budget: float,
) -> Floor | None:
    """The cheapest schedule found for `rate` (req/s per step) with at most `budget` of
    its requests over `slo_seconds` or failed, replayed through the simulator's queue;
    None when even the most replicas priced miss the budget."""
    return budget_floors(rate, service, slo_seconds, step_seconds, (budget,))[budget]


def budget_floors(
    rate: FloatArray,
    service: ServiceModel,
    slo_seconds: float,
    step_seconds: float,
    budgets: tuple[float, ...],
) -> dict[float, Floor | None]:
    """`budget_floor` for each of `budgets`, the replica counts priced once for all."""
    for budget in budgets:
        if not 0.0 <= budget < 1.0:
            raise ValueError(f"budget={budget!r}: expected a share of requests in [0, 1)")
    rate = np.asarray(rate, dtype=np.float64)
    if float(rate.sum()) <= 0:
        idle = Floor(np.zeros(len(rate), dtype=np.int64), 0.0, 0.0, 0.0)
        return dict.fromkeys(budgets, idle)
    floors: dict[float, Floor | None] = {}
    pending = list(budgets)
    utilisation = LOWEST_UTILISATION
    while pending:
        pricing = _Pricing(rate, service, slo_seconds, step_seconds, utilisation)
        widen = []
        for budget in pending:
            found = pricing.solve(budget)
            if found is None:
                floors[budget] = None
            elif found[1]:
                floors[budget] = found[0]
            elif utilisation < 1e-3:  # no bound claimed rather than a wrong one
                floors[budget] = replace(found[0], bound_seconds=0.0)
            else:
                # More replicas than priced could lower some step's Lagrangian (the
                # price of what they save exceeds a replica): price more of them.
                widen.append(budget)
        pending = widen
        utilisation /= 4.0
    return floors


class _Pricing:
    """Replica counts priced for every distinct demand of `rate`, up to `utilisation`."""

    def __init__(
        self,
        rate: FloatArray,
        service: ServiceModel,
        slo: float,
        step: float,
        utilisation: float,
    ) -> None:
        self.rate, self.service, self.slo, self.step = rate, service, slo, step
        self.total = float(rate.sum()) * step
        self.values, self.inverse = np.unique(rate, return_inverse=True)
        self.counts, self.shares = _price_table(self.values, service, slo, utilisation)
        self.rows = np.arange(len(self.values))
        self.steps_at = np.bincount(self.inverse, minlength=len(self.values))
        # Past some price every step takes the count with its least share: the schedule
        # every budget's search ends at, and what it misses by (the same for all budgets).
        self.most = self.counts[self.rows, np.argmin(self.shares, axis=1)][self.inverse]
        self.most_missed = self.replayed(self.most)

    def schedule(self, price: float) -> IntArray:
        cost = self.counts + price * self.values[:, None] * self.shares
        chosen: IntArray = self.counts[self.rows, np.argmin(cost, axis=1)][self.inverse]
        return chosen

    def dual(self, price: float, budget: float) -> float:
        """The Lagrangian lower bound at `price` in replica-seconds: every step's least
        replicas + price x violations, less the price of the whole budget."""
        cost = self.counts + price * self.values[:, None] * self.shares
        least = float((cost.min(axis=1) * self.steps_at).sum())
        return (least - price * budget * self.total / self.step) * self.step

    def replayed(self, replicas: IntArray) -> float:
        outcome = simulate_queue(self.rate, replicas, self.service, self.step)
        return outcome.total_over(self.slo) / self.total

    def solve(self, budget: float) -> tuple[Floor, bool] | None:
        """The floor within `budget`, and whether its bound holds for every replica count
        (not only those priced); None if no schedule priced meets the budget."""
        step = self.step
        most = self.most
        if self.most_missed > budget:  # nothing priced meets it
            return None
        # The price from 0 (no replicas) up to one where the schedule meets the budget (a
        # demand of 1e-100 req/s needs a price past 1e100 before a replica is worth it).
        low, high = 0.0, 1.0
        while self.replayed(self.schedule(high)) > budget:
            if high > 1e300:  # demand too close to 0 for any finite price: the most
                used = float(most.sum()) * step
                return Floor(most, used, 0.0, self.most_missed), True
            low, high = high, high * 1e3
        for _ in range(BISECTIONS):
            mid = math.sqrt(low * high) if low > 0 else high / 1e6
            if self.replayed(self.schedule(mid)) > budget:
                low = mid
            else:
                high = mid
            if high / max(low, 1e-300) < 1.0001:
                break
        bound, price = max((self.dual(low, budget), low), (self.dual(high, budget), high))
        # The share no replica count goes below: a request's own service time over the SLO.
        least_share = math.exp(-self.service.mu * self.slo)
        sound = bool(np.all(price * self.values * (self.shares[:, -1] - least_share) < 1.0))
        replicas = self.schedule(high)
        floor = Floor(
            replicas=replicas,
            replica_seconds=float(replicas.sum()) * step,
            bound_seconds=max(bound, 0.0),
            violation_ratio=self.replayed(replicas),
        )
        return floor, sound


def later_span_floors(
    scenario: Scenario, budgets: tuple[float, ...], traffic: Traffic | None = None
) -> dict[float, Floor | None]:
    """The budget floor of each budget over the later span (the walk-forward half that
    settings are reported on) of `traffic` (by default the scenario's own)."""
    sim = prepare(scenario, traffic if traffic is not None else scenario.load_traffic())
    rate = sim.rate[tuning_split(evaluated_from(scenario, sim.step_seconds), sim.steps) :]
    return budget_floors(rate, sim.service, scenario.slo_ms / 1000.0, sim.step_seconds, budgets)


def result_floors(
    result: SimulationResult, budgets: tuple[float, ...], later: bool
) -> dict[float, Floor | None]:
    """The budget floor of each budget over `result`'s evaluation window, or over its
    later span (`later`: where walk-forward picks are reported)."""
    timeline = result.timeline
    start = timeline.evaluated_from
    if later:
        start = tuning_split(start, len(timeline.rate))
    slo = result.scenario.slo_ms / 1000.0
    service = result.scenario.cluster.service
    return budget_floors(timeline.rate[start:], service, slo, timeline.step_seconds, budgets)
