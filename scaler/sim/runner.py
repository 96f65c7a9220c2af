"""Runs a scenario: traffic -> each policy's replicas -> the queue -> per-policy figures.

Figures are taken over the evaluation window (after `warmup_days`, which
gives the cluster state and the forecaster a history to start from); the
timeline keeps every step so that anyone can recompute them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from scaler.sim.policies import PolicyRun, SimInput, prepare, run_policy, static_peak
from scaler.sim.queue import QueueOutcome, simulate_queue
from scaler.sim.scenario import SWEEP_TIDESCALER, Scenario, ScenarioError, with_sweep_value
from scaler.sim.traffic import Traffic

FloatArray = np.ndarray
PolicyProgress = Callable[[str, float], None]


@dataclass(frozen=True)
class PolicyResult:
    """What one policy costs and what users feel, over the evaluation window."""

    policy: str
    replica_hours: float
    cost_vs_static_peak: float
    slo_violation_ratio: float  # requests slower than the SLO or failed, over all requests
    p50_latency_seconds: float
    p95_latency_seconds: float
    p99_latency_seconds: float
    mean_latency_seconds: float
    failed_requests: float
    failed_ratio: float
    scaling_actions: int
    mean_utilization: float  # requests served / capacity paid for (provisioned pods)
    peak_replicas: int
    wall_seconds: float
    detail: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "replica_hours": round(self.replica_hours, 3),
            "cost_vs_static_peak": round(self.cost_vs_static_peak, 4),
            "slo_violation_ratio": float(f"{self.slo_violation_ratio:.6g}"),
            "p50_latency_seconds": round(self.p50_latency_seconds, 5),
            "p95_latency_seconds": round(self.p95_latency_seconds, 5),
            "p99_latency_seconds": round(self.p99_latency_seconds, 5),
            "mean_latency_seconds": round(self.mean_latency_seconds, 5),
            "failed_requests": round(self.failed_requests, 1),
            "failed_ratio": float(f"{self.failed_ratio:.6g}"),
            "scaling_actions": self.scaling_actions,
            "mean_utilization": round(self.mean_utilization, 4),
            "peak_replicas": self.peak_replicas,
            "wall_seconds": round(self.wall_seconds, 3),
            "detail": self.detail,
        }


@dataclass(frozen=True, eq=False)
class Timeline:
    """Every simulation step: time, demand and each policy's pods (provisioned and ready)."""

    times: FloatArray
    rate: FloatArray
    provisioned: dict[str, np.ndarray]
    ready: dict[str, np.ndarray]
    step_seconds: float
    evaluated_from: int  # first step of the evaluation window


@dataclass(frozen=True, eq=False)
class SimulationResult:
    scenario: Scenario
    traffic_name: str
    policies: tuple[PolicyResult, ...]
    timeline: Timeline
    wall_seconds: float

    def policy(self, name: str) -> PolicyResult | None:
        for result in self.policies:
            if result.policy == name:
                return result
        return None


@dataclass(frozen=True)
class SweepPoint:
    parameter: str
    value: str
    policy: str
    replica_hours: float
    cost_vs_static_peak: float
    slo_violation_ratio: float
    p99_latency_seconds: float


def _evaluate(run: PolicyRun, sim: SimInput, first: int, static_hours: float) -> PolicyResult:
    scenario = sim.scenario
    dt = sim.step_seconds
    provisioned = run.replicas.provisioned[first:]
    ready = run.replicas.ready[first:]
    outcome = simulate_queue(sim.rate, run.replicas.ready, sim.service, dt)
    window = slice(first, None)
    arrivals = float(outcome.arrivals[window].sum())
    over = float(outcome.share_over(scenario.slo_ms / 1000.0)[window].sum())
    failed = float(outcome.failed[window].sum())
    served = float(outcome.served[window].sum())
    paid = float(provisioned.sum()) * dt * scenario.cluster.capacity_per_replica
    replica_hours = float(provisioned.sum()) * dt / 3600.0
    sub = _window(outcome, first)
    p50, p95, p99 = (float(q) for q in sub.latency_quantiles((0.5, 0.95, 0.99)))
    previous = run.replicas.provisioned[first - 1] if first > 0 else provisioned[0]
    actions = int(np.count_nonzero(np.diff(np.concatenate(([previous], provisioned)))))
    detail = dict(run.detail)
    if run.replicas.reasons:
        detail["hpa_reasons"] = dict(run.replicas.reasons)
    detail["ready_replica_hours"] = round(float(ready.sum()) * dt / 3600.0, 3)
    return PolicyResult(
        policy=run.name,
        replica_hours=replica_hours,
        cost_vs_static_peak=replica_hours / static_hours if static_hours > 0 else float("nan"),
        slo_violation_ratio=over / arrivals if arrivals > 0 else 0.0,
        p50_latency_seconds=p50,
        p95_latency_seconds=p95,
        p99_latency_seconds=p99,
        mean_latency_seconds=sub.mean_latency_seconds(),
        failed_requests=failed,
        failed_ratio=failed / arrivals if arrivals > 0 else 0.0,
        scaling_actions=actions,
        mean_utilization=served / paid if paid > 0 else 0.0,
        peak_replicas=int(provisioned.max()) if len(provisioned) else 0,
        wall_seconds=run.wall_seconds,
        detail=detail,
    )


def _window(outcome: QueueOutcome, first: int) -> QueueOutcome:
    """The queue outcome restricted to the evaluation window."""
    w = slice(first, None)
    return QueueOutcome(
        step_seconds=outcome.step_seconds,
        mu=outcome.mu,
        timeout_seconds=outcome.timeout_seconds,
        arrivals=outcome.arrivals[w],
        stationary_requests=outcome.stationary_requests[w],
        wait_probability=outcome.wait_probability[w],
        wait_rate=outcome.wait_rate[w],
        fluid_requests=outcome.fluid_requests[w],
        fluid_wait_seconds=outcome.fluid_wait_seconds[w],
        failed=outcome.failed[w],
        served=outcome.served[w],
    )


def simulate(
    scenario: Scenario,
    traffic: Traffic | None = None,
    progress: PolicyProgress | None = None,
    policies: tuple[str, ...] | None = None,
) -> SimulationResult:
    """Run every policy of `scenario` (or `policies`) on its traffic."""
    began = time.perf_counter()
    traffic = traffic if traffic is not None else scenario.load_traffic()
    sim = prepare(scenario, traffic)
    first = round(scenario.warmup_days * 86400 / sim.step_seconds)
    if first >= sim.steps:
        raise ScenarioError(
            f"{scenario.origin}: warmup_days={scenario.warmup_days:g} leaves nothing to evaluate "
            f"in {sim.steps * sim.step_seconds / 86400:.2f} days of traffic"
        )
    static_run = static_peak(sim)
    static_hours = float(static_run.replicas.provisioned[first:].sum()) * sim.step_seconds / 3600.0
    results = []
    provisioned: dict[str, np.ndarray] = {}
    ready: dict[str, np.ndarray] = {}
    for name in policies or scenario.policies:

        def report(fraction: float, name: str = name) -> None:
            if progress is not None:
                progress(name, fraction)

        run = static_run if name == "static-peak" else run_policy(name, sim, report)
        result = _evaluate(run, sim, first, static_hours)
        results.append(result)
        provisioned[name] = run.replicas.provisioned
        ready[name] = run.replicas.ready
        if progress is not None:
            progress(name, 1.0)
    timeline = Timeline(
        times=sim.start + sim.step_seconds * np.arange(sim.steps),
        rate=sim.rate,
        provisioned=provisioned,
        ready=ready,
        step_seconds=sim.step_seconds,
        evaluated_from=first,
    )
    return SimulationResult(
        scenario=scenario,
        traffic_name=traffic.name,
        policies=tuple(results),
        timeline=timeline,
        wall_seconds=time.perf_counter() - began,
    )


def sweep(
    scenario: Scenario,
    traffic: Traffic | None = None,
    progress: PolicyProgress | None = None,
) -> tuple[SimulationResult, list[SweepPoint]]:
    """The scenario as given, plus one run per value of its sweep (frontier points)."""
    traffic = traffic if traffic is not None else scenario.load_traffic()
    base = simulate(scenario, traffic, progress)
    points: list[SweepPoint] = []
    if scenario.sweep is None:
        return base, points
    parameter = scenario.sweep.parameter
    only_tidescaler = parameter in SWEEP_TIDESCALER
    for value in scenario.sweep.values:
        variant = with_sweep_value(replace(scenario, sweep=None), parameter, value)
        policies = ("tidescaler",) if only_tidescaler else None
        if only_tidescaler and "tidescaler" not in scenario.policies:
            break
        result = simulate(variant, traffic, progress, policies)
        for r in result.policies:
            points.append(
                SweepPoint(
                    parameter,
                    value,
                    r.policy,
                    r.replica_hours,
                    r.cost_vs_static_peak,
                    r.slo_violation_ratio,
                    r.p99_latency_seconds,
                )
            )
    return base, points


def cost_at_budget(points: list[SweepPoint], policy: str, budget: float) -> SweepPoint | None:
    """The cheapest configuration of `policy` with SLO violations at or below `budget`."""
    eligible = [p for p in points if p.policy == policy and p.slo_violation_ratio <= budget]
    return min(eligible, key=lambda p: p.replica_hours) if eligible else None
