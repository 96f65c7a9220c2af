"""Runs a scenario: traffic -> each policy's replicas -> the queue -> per-policy figures.

Figures are taken over the evaluation window (after `warmup_days`, which
gives the cluster state and the forecaster a history to start from); the
timeline keeps every step so that anyone can recompute them.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from scaler.policy import MAX_REPLICAS
from scaler.sim.policies import (
    ForecastCache,
    PolicyRun,
    SimInput,
    prepare,
    run_policy,
    static_peak,
)
from scaler.sim.queue import QueueOutcome, simulate_queue
from scaler.sim.scenario import (
    SWEEP_LABELS,
    SWEEP_TIDESCALER,
    Scenario,
    ScenarioError,
    setting_as_given,
    unreachable_slo,
    with_sweep_value,
)
from scaler.sim.traffic import Traffic

FloatArray = np.ndarray
PolicyProgress = Callable[[str, float], None]


@dataclass(frozen=True)
class Span:
    """One policy's figures over part of the evaluation window (walk-forward halves)."""

    replica_hours: float
    cost_vs_static_peak: float  # against static-peak over the same span
    slo_violation_ratio: float

    def as_dict(self) -> dict[str, float]:
        return {
            "replica_hours": round(self.replica_hours, 3),
            "cost_vs_static_peak": round(self.cost_vs_static_peak, 4),
            "slo_violation_ratio": float(f"{self.slo_violation_ratio:.6g}"),
        }


# Walk-forward: settings are chosen on the first part of the evaluation window (the
# tuning span) and reported on the rest (the later span).
TUNING_SHARE = 0.5


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
    tuning: Span | None = None  # the first part of the evaluation window
    later: Span | None = None  # the rest, where walk-forward picks are reported

    def as_dict(self) -> dict[str, object]:
        return {
            "tuning_span": None if self.tuning is None else self.tuning.as_dict(),
            "later_span": None if self.later is None else self.later.as_dict(),
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
    static_peak_hours: float = float("nan")  # replica-hours of static-peak at this target
    static_span_hours: tuple[float, float] = (float("nan"), float("nan"))  # tuning, later

    def policy(self, name: str) -> PolicyResult | None:
        for result in self.policies:
            if result.policy == name:
                return result
        return None


@dataclass(frozen=True)
class SweepPoint:
    """One policy at one setting: a point of the cost/violation plane.

    `cost_vs_static_peak` is relative to static-peak of the scenario as given (its
    own target), the same yardstick for every point of a sweep. `parameter` and
    `value` name the setting ("base" for the scenario as given; parameters joined
    with "+" and values with "," when several are swept); `settings` holds every
    swept parameter's value, the scenario's own value for the run as given.
    """

    parameter: str
    value: str
    policy: str
    replica_hours: float
    cost_vs_static_peak: float
    slo_violation_ratio: float
    p99_latency_seconds: float
    settings: tuple[tuple[str, str], ...] = ()
    tuning: Span | None = None  # figures on the tuning span (walk-forward choice)
    later: Span | None = None  # figures on the later span (walk-forward report)

    @property
    def label(self) -> str:
        """Short name of the setting, e.g. `target 0.6, q 0.9`."""
        if not self.settings:
            return self.value
        return ", ".join(f"{SWEEP_LABELS.get(k, k)} {v}" for k, v in self.settings)

    @property
    def is_base(self) -> bool:
        return self.parameter == "base"


def evaluated_from(scenario: Scenario, step_seconds: float) -> int:
    """First step of the evaluation window: the steps of `warmup_days` come before it."""
    return round(scenario.warmup_days * 86400 / step_seconds)


def tuning_split(first: int, steps: int) -> int:
    """First step of the later span: the evaluation window split at TUNING_SHARE."""
    return first + int((steps - first) * TUNING_SHARE)


def _span(
    outcome: QueueOutcome,
    provisioned: np.ndarray,
    window: slice,
    slo: float,
    dt: float,
    static_hours: float,
) -> Span:
    arrivals = float(outcome.arrivals[window].sum())
    over = float(outcome.share_over(slo)[window].sum())
    hours = float(provisioned[window].sum()) * dt / 3600.0
    return Span(
        replica_hours=hours,
        cost_vs_static_peak=hours / static_hours if static_hours > 0 else float("nan"),
        # No request in the span is no evidence either way, not a span within every budget:
        # a setting chosen on it would be chosen blind.
        slo_violation_ratio=over / arrivals if arrivals > 0 else math.nan,
    )


def _evaluate(
    run: PolicyRun,
    sim: SimInput,
    first: int,
    static_hours: float,
    static_spans: tuple[float, float] = (float("nan"), float("nan")),
) -> PolicyResult:
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
    split = tuning_split(first, sim.steps)
    slo = scenario.slo_ms / 1000.0
    every = run.replicas.provisioned
    tuning = _span(outcome, every, slice(first, split), slo, dt, static_spans[0])
    later = _span(outcome, every, slice(split, None), slo, dt, static_spans[1])
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
        tuning=tuning,
        later=later,
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


def lowest_threshold(scenario: Scenario) -> float:
    """The smallest per-replica target of the scenario and of every setting it sweeps."""
    thresholds = [scenario.threshold]
    for name, values in scenario.sweep.axes if scenario.sweep is not None else ():
        if name == "target_utilization":
            thresholds += [float(v) * scenario.cluster.capacity_per_replica for v in values]
        elif name == "threshold":
            thresholds += [float(v) for v in values]
    return min(thresholds)


def demand_problem(scenario: Scenario, traffic: Traffic) -> str | None:
    """Why no replica count could carry the traffic (its peak needs more replicas than
    any ScaledObject may have, at the lowest target swept), or None. Such a peak is a
    wrong unit or scale, and would overflow the replica counts of every policy."""
    rate = traffic.rate_per_second
    peak = float(np.max(rate)) if len(rate) else 0.0
    threshold = lowest_threshold(scenario)
    if math.isfinite(peak) and peak / threshold <= MAX_REPLICAS:
        return None
    return (
        f"the traffic's peak, {peak:.3g} requests/s, needs more than {MAX_REPLICAS:,} replicas "
        f"at {threshold:.3g} requests/s each (the most a ScaledObject allows); check --scale, "
        "--unit (counts per interval or a rate) and --capacity-per-replica"
    )


def capacity_note(scenario: Scenario, traffic: Traffic) -> str | None:
    """A note when the peak needs more replicas than max replicas: every autoscaled policy
    is clamped there and overloads, while static-peak is sized for the peak regardless."""
    rate = traffic.rate_per_second
    peak = float(np.max(rate)) if len(rate) else 0.0
    need = math.ceil(round(peak / scenario.threshold, 9))
    most = scenario.cluster.max_replicas
    if need <= most:
        return None
    return (
        f"the traffic's peak, {peak:.3g} requests/s, needs {need:,} replicas at the target, "
        f"more than max replicas {most:,}: the autoscaled policies stop at {most:,} and "
        "overload (keda-cron windows are capped there too); raise --max-replicas or check "
        "--scale and --capacity-per-replica"
    )


def simulate(
    scenario: Scenario,
    traffic: Traffic | None = None,
    progress: PolicyProgress | None = None,
    policies: tuple[str, ...] | None = None,
    forecast_cache: ForecastCache | None = None,
    check_demand: bool = True,
) -> SimulationResult:
    """Run every policy of `scenario` (or `policies`) on its traffic. `check_demand`
    False skips demand_problem, for callers that size capacity themselves (fleet): the
    autoscaled policies stop at max replicas, and static-peak at MAX_REPLICAS."""
    began = time.perf_counter()
    if "oracle" in (policies or scenario.policies):
        why = unreachable_slo(scenario)
        if why is not None:  # say so before any policy runs
            raise ScenarioError(why)
    traffic = traffic if traffic is not None else scenario.load_traffic()
    problem = demand_problem(scenario, traffic) if check_demand else None
    if problem is not None:  # callers other than the CLI (bench, from-cluster) get it here
        raise ScenarioError(f"{scenario.origin}: {problem}")
    sim = prepare(scenario, traffic)
    first = evaluated_from(scenario, sim.step_seconds)
    if first >= sim.steps and first == 0:
        raise ScenarioError(
            f"{scenario.origin}: the traffic is shorter than one simulation step "
            f"({sim.step_seconds:g} s): nothing to evaluate; give a longer trace"
        )
    if first >= sim.steps:
        raise ScenarioError(
            f"{scenario.origin}: warmup_days={scenario.warmup_days:g} leaves nothing to evaluate "
            f"in {sim.steps * sim.step_seconds / 86400:.2f} days of traffic; pass a smaller "
            "--warmup-days (the forecast learns during it) or a longer trace"
        )
    static_run = static_peak(sim)
    static_hours = float(static_run.replicas.provisioned[first:].sum()) * sim.step_seconds / 3600.0
    split = tuning_split(first, sim.steps)
    static_spans = (
        float(static_run.replicas.provisioned[first:split].sum()) * sim.step_seconds / 3600.0,
        float(static_run.replicas.provisioned[split:].sum()) * sim.step_seconds / 3600.0,
    )
    results = []
    provisioned: dict[str, np.ndarray] = {}
    ready: dict[str, np.ndarray] = {}
    for name in policies or scenario.policies:

        def report(fraction: float, name: str = name) -> None:
            if progress is not None:
                progress(name, fraction)

        run = static_run if name == "static-peak" else run_policy(name, sim, report, forecast_cache)
        result = _evaluate(run, sim, first, static_hours, static_spans)
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
        static_peak_hours=static_hours,
        static_span_hours=static_spans,
    )


def _own_axes(names: list[str], policy: str) -> list[str]:
    """The swept parameters that move `policy`: the shared ones and its own."""
    own = {"tidescaler": SWEEP_TIDESCALER}.get(policy, ())
    return [n for n in names if n not in SWEEP_TIDESCALER or n in own]


def base_points(result: SimulationResult) -> list[SweepPoint]:
    """Every policy of the scenario as given, as points labelled with its own settings."""
    scenario = result.scenario
    names = [name for name, _ in scenario.sweep.axes] if scenario.sweep else []
    points = []
    for r in result.policies:
        settings = tuple((n, setting_as_given(scenario, n)) for n in _own_axes(names, r.policy))
        points.append(
            SweepPoint(
                "base",
                "base",
                r.policy,
                r.replica_hours,
                r.cost_vs_static_peak,
                r.slo_violation_ratio,
                r.p99_latency_seconds,
                settings,
                r.tuning,
                r.later,
            )
        )
    return points


def sweep(
    scenario: Scenario,
    traffic: Traffic | None = None,
    progress: PolicyProgress | None = None,
    forecast_cache: ForecastCache | None = None,
    check_demand: bool = True,
) -> tuple[SimulationResult, list[SweepPoint]]:
    """The scenario as given, plus one run per combination of its sweep (frontier points).

    Every policy runs once per combination of the parameters that move it: the
    shared ones (the per-replica target, the pod start-up, the HPA's scale-down
    stabilization window) and its own (tidescaler's forecast keys). A sweep of shared
    parameters alone gives every policy the same settings, so that the forecast is
    the only difference between reactive and tidescaler. Runs that differ
    only in the threshold share the forecaster's refits (same history, same
    quantile: same forecast), and so do the runs of later sweeps of the same traffic
    given the same `forecast_cache`. Costs are relative to static-peak of the
    scenario as given, over the same span. The result's `wall_seconds` is the whole
    run's, sweep included (each policy's own stays its base run's).
    """
    began = time.perf_counter()
    traffic = traffic if traffic is not None else scenario.load_traffic()
    cache = ForecastCache() if forecast_cache is None else forecast_cache
    base = simulate(scenario, traffic, progress, forecast_cache=cache, check_demand=check_demand)
    points: list[SweepPoint] = []
    if scenario.sweep is None:
        return base, points
    yardstick = base.static_peak_hours
    tune_stick, later_stick = base.static_span_hours
    swept = scenario.sweep.policies or tuple(p for p in scenario.policies if p != "oracle")
    swept = tuple(p for p in scenario.policies if p in swept)
    own = {"tidescaler": SWEEP_TIDESCALER}
    shared_axes = [(n, v) for n, v in scenario.sweep.axes if n not in SWEEP_TIDESCALER]
    own_axes = {
        name: [(n, v) for n, v in scenario.sweep.axes if n in keys] for name, keys in own.items()
    }
    with_own = tuple(p for p in swept if own_axes.get(p))
    plain_policies = tuple(p for p in swept if p not in with_own)
    plain = replace(scenario, sweep=None)

    def rescaled(span: Span | None, stick: float) -> Span | None:
        if span is None:
            return None
        cost = span.replica_hours / stick if stick > 0 else float("nan")
        return Span(span.replica_hours, cost, span.slo_violation_ratio)

    def record(result: SimulationResult, settings: tuple[tuple[str, str], ...]) -> None:
        for r in result.policies:
            names = _own_axes([n for n, _ in settings], r.policy)
            mine = tuple((n, v) for n, v in settings if n in names)
            points.append(
                SweepPoint(
                    "+".join(n for n, _ in mine),
                    ",".join(v for _, v in mine),
                    r.policy,
                    r.replica_hours,
                    r.replica_hours / yardstick if yardstick > 0 else float("nan"),
                    r.slo_violation_ratio,
                    r.p99_latency_seconds,
                    mine,
                    rescaled(r.tuning, tune_stick),
                    rescaled(r.later, later_stick),
                )
            )

    def combos(axes: list[tuple[str, tuple[str, ...]]]) -> int:
        count = 1
        for _, values in axes:
            count *= len(values)
        return count

    per_shared = (1 if plain_policies else 0) + sum(combos(own_axes[p]) for p in with_own)
    total = combos(shared_axes) * per_shared
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress("sweep", done / max(total, 1))

    shared_names = [n for n, _ in shared_axes]
    for shared_values in itertools.product(*(v for _, v in shared_axes)):
        variant = plain
        for name, value in zip(shared_names, shared_values, strict=True):
            variant = with_sweep_value(variant, name, value)
        shared_settings = tuple(zip(shared_names, shared_values, strict=True))
        if plain_policies:
            record(
                simulate(variant, traffic, None, plain_policies, cache, check_demand),
                shared_settings,
            )
            advance()
        for policy in with_own:
            axes = own_axes[policy]
            for values in itertools.product(*(v for _, v in axes)):
                mine = variant
                for (name, _), value in zip(axes, values, strict=True):
                    mine = with_sweep_value(mine, name, value)
                settings = shared_settings + tuple(
                    (name, value) for (name, _), value in zip(axes, values, strict=True)
                )
                record(simulate(mine, traffic, None, (policy,), cache, check_demand), settings)
                advance()
    return replace(base, wall_seconds=time.perf_counter() - began), points


def cost_at_budget(points: list[SweepPoint], policy: str, budget: float) -> SweepPoint | None:
    """The cheapest configuration of `policy` with SLO violations at or below `budget`.

    Ties on cost go to fewer violations, then to the earlier point.
    """
    eligible = [p for p in points if p.policy == policy and p.slo_violation_ratio <= budget]
    if not eligible:
        return None
    return min(eligible, key=lambda p: (p.replica_hours, p.slo_violation_ratio))


def walk_forward_pick(points: list[SweepPoint], policy: str, budget: float) -> SweepPoint | None:
    """The setting of `policy` chosen on the tuning span: the cheapest there whose
    violations there are within `budget` (to be reported on the later span).

    Ties on cost go to fewer violations, then to the earlier point. Points without
    spans are not candidates.
    """
    eligible = [
        p
        for p in points
        if p.policy == policy and p.tuning is not None and p.tuning.slo_violation_ratio <= budget
    ]
    if not eligible:
        return None
    return min(
        eligible,
        key=lambda p: (p.tuning.replica_hours, p.tuning.slo_violation_ratio),  # type: ignore[union-attr]
    )
