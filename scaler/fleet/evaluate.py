"""One service of a fleet: forecast skill, both policies' frontiers, a recommendation.

`evaluate_service` runs on a worker. It loads the service's series, scores the
forecaster with the backtest of `tidescaler backtest`, sweeps reactive and
tidescaler with the simulator of `tidescaler simulate`, and returns a
`ServiceResult`: a few numbers and strings, all the driver keeps.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from scaler.fleet.services import PrometheusService, ServiceSource
from scaler.forecast import backtest
from scaler.sim.cluster import ClusterModel, PodStartup
from scaler.sim.floor import later_span_floors
from scaler.sim.frontier import budget_rows
from scaler.sim.policies import ForecastCache
from scaler.sim.runner import SweepPoint, sweep
from scaler.sim.scenario import (
    QUERY_PLACEHOLDER,
    Scenario,
    Sweep,
    parse_scenario,
    with_service,
)
from scaler.sim.traffic import Traffic
from scaler.traces import Trace

HOUR = 3600.0
DAY = 86400.0

POLICIES = ("reactive", "tidescaler")
# How far ahead the forecast's skill is scored.
SKILL_HORIZON = HOUR
# The coarse pass of the target search takes every this many targets.
REFINE_STRIDE = 10

# Recommendations, in the report's words.
USE_TIDESCALER = "use tidescaler"
KEEP_REACTIVE = "keep reactive"
TOO_LITTLE_HISTORY = "too little history"
# Every value 0: there is nothing to scale, and no per-replica capacity to derive.
NO_TRAFFIC = "no traffic"
# Neither policy meets the budget at any target swept: no figure to compare or total.
NO_SETTING = "no setting meets the budget"
FAILED = "failed"


@dataclass(frozen=True)
class FleetSettings:
    """What every service is evaluated with; part of each result's cache key."""

    violation_budget: float = 0.01  # share of requests over the SLO or failed
    min_history_days: float = 3.0
    min_saving: float = 0.05  # below this, predictive scaling is not worth a change
    # None: the simulator's default replica (50 req/s, 20 ms a request), with the
    # service's demand scaled so that its p99 needs `peak_replicas` of them.
    capacity_per_replica: float | None = None
    peak_replicas: int = 20
    pod_startup_seconds: float = 60.0
    slo_ms: float = 500.0
    # Both policies sweep the target in 1 % steps, as the simulator's scenarios do. With
    # 10 % steps the grid itself made savings: a policy whose forecast adds a little
    # headroom met the budget at a step where reactive's needed the next one down: the
    # fleet demo's tides showed +8.7 % and +6.2 %, which 1 % steps bring under +2 %.
    targets: tuple[float, ...] = tuple(round(0.40 + 0.01 * i, 2) for i in range(56))
    # Search the targets coarse to fine (a third of the runs, the same picks where
    # violations grow with the target; see _frontier_points) instead of running them all.
    refine: bool = True
    forecast_quantile: float = 0.95

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ServiceResult:
    """Everything the fleet report says about one service."""

    name: str
    recommendation: str
    days: float = 0.0
    step_seconds: float = 0.0
    peak_rps: float = 0.0
    capacity_per_replica: float = 0.0  # in the service's own requests/s
    demand_scale: float = 1.0  # the demand simulated is the service's times this
    forecast_smape: float | None = None
    baseline_smape: float | None = None
    baseline: str | None = None
    forecast_coverage: float | None = None
    reactive_replica_hours: float | None = None
    reactive_setting: str | None = None
    tidescaler_replica_hours: float | None = None
    tidescaler_setting: str | None = None
    saving: float | None = None  # 1 - tidescaler / reactive replica-hours at the budget
    # The budget floor on the same span: the cheapest schedule with foresight and pods
    # that start at once (scaler/sim/floor.py), in the same replica-hours.
    floor_replica_hours: float | None = None
    trigger_metadata: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    wall_seconds: float = 0.0
    # Why a service got no comparison (too little history, no traffic, no setting meets
    # the budget): said next to the recommendation, so that the report explains itself.
    reason: str | None = None
    # What reading its trace changed or doubts (gaps filled, a suspicious step): the
    # trace's warnings and fills, said in the report as `simulate` says them.
    input_notes: list[str] = field(default_factory=list)

    @property
    def forecast_skill(self) -> float | None:
        """1 - forecast sMAPE / best baseline sMAPE: > 0 when the forecast beats naive."""
        if self.forecast_smape is None or not self.baseline_smape:
            return None
        return 1.0 - self.forecast_smape / self.baseline_smape

    @property
    def room(self) -> float | None:
        """1 - floor / reactive replica-hours: the most any autoscaler could save over
        reactive at the budget (what the saving is out of)."""
        if self.floor_replica_hours is None or not self.reactive_replica_hours:
            return None
        return 1.0 - self.floor_replica_hours / self.reactive_replica_hours

    def as_dict(self) -> dict[str, object]:
        record = asdict(self)
        record["forecast_skill"] = self.forecast_skill
        record["room"] = self.room
        return record


# The most replicas a service's peak may need at its capacity: static-peak's replica
# counts are int64 and summed over every step, which stays exact below this (a trace of a
# million steps). Above it the trace holds a glitch, not a demand.
MAX_PEAK_REPLICAS_COUNTED = 1e12


def evaluate_service(source: ServiceSource, settings: FleetSettings) -> ServiceResult:
    """Evaluate one service; a failure becomes a result with `error`, never an exception."""
    began = time.perf_counter()
    try:
        trace = source.load()
        result = _evaluate(trace, settings)
        result = replace(result, input_notes=[*trace.fills, *trace.warnings])
        if result.trigger_metadata:
            # A trigger without its query is refused: the service's own series where the
            # fleet read it from Prometheus, else a marked placeholder.
            query = (
                source.series_query()
                if isinstance(source, PrometheusService)
                else QUERY_PLACEHOLDER
            )
            result = replace(result, trigger_metadata={"query": query, **result.trigger_metadata})
    except Exception as error:  # one bad service must not stop the fleet
        # A problem of the input (its trace, its values) reads as the message alone; any
        # other failure keeps its exception's name, which says where to look.
        named = "" if isinstance(error, ValueError) else f"{type(error).__name__}: "
        result = ServiceResult(source.name, FAILED, error=f"{named}{str(error)[:500]}")
    return replace(result, name=source.name, wall_seconds=time.perf_counter() - began)


def _evaluate(trace: Trace, settings: FleetSettings) -> ServiceResult:
    step = trace.step_seconds
    days = len(trace.values) * step / DAY
    rate = trace.values / step
    peak = float(np.quantile(rate, 0.99)) if len(rate) else 0.0
    if peak <= 0 and len(rate):
        # Traffic in under 1 % of the intervals: still traffic, sized by its largest value.
        peak = float(np.max(rate))
    base = ServiceResult(
        trace.name, TOO_LITTLE_HISTORY, days=days, step_seconds=step, peak_rps=peak
    )
    if days < settings.min_history_days:
        return replace(
            base,
            reason=f"{_days(days, '.3g')}, under the {_days(settings.min_history_days, 'g')} "
            "of --min-history",
        )
    needed = _skill_intervals(step, settings)
    if len(trace.values) < needed:
        # Just over --min-history (1.0 to 1.04 days at 1d): no forecast to score yet.
        return replace(
            base,
            reason=f"{_days(days, '.4g')}, under the {_days(needed * step / DAY, '.4g')} "
            f"needed to score the forecast an hour ahead after "
            f"{_skill_history(settings) / DAY:g}d of history",
        )
    if not peak > 0:
        return replace(base, recommendation=NO_TRAFFIC, reason="every value is 0")
    if settings.capacity_per_replica is not None:
        capacity, scale = settings.capacity_per_replica, 1.0
    else:
        # Only the shape of the demand decides whether a forecast pays; simulate it at a
        # size where whole replicas do not dominate, on a replica of known service time.
        capacity = ClusterModel().capacity_per_replica
        scale = settings.peak_replicas * capacity / peak
    # Reported in the service's own requests/s (the simulation runs the demand scaled).
    base = replace(base, capacity_per_replica=capacity / scale, demand_scale=scale)

    highest = float(np.max(rate))
    if not highest * scale / capacity <= MAX_PEAK_REPLICAS_COUNTED:
        # Said in fleet's terms: the demand as the trace gives it, against its own p99
        # (what fleet sizes from) or the --capacity-per-replica given.
        if settings.capacity_per_replica is None:
            why = f"{highest / peak:.3g} times its p99 of {peak:.3g} requests/s"
        else:
            why = (
                f"more than {MAX_PEAK_REPLICAS_COUNTED:.0e} replicas of --capacity-per-replica "
                f"{capacity:g}"
            )
        raise ValueError(
            f"its highest demand, {highest:.3g} requests/s, is {why}: not a demand any "
            "replica count carries; a glitch in the trace? remove that row"
        )
    base = _with_forecast_skill(base, trace, settings)
    scenario = fleet_scenario(trace.name, capacity, settings)
    traffic = Traffic(float(trace.timestamps[0]), step, rate * scale, trace.name)
    points = _frontier_points(scenario, traffic, settings)
    # Walk-forward: each policy's setting is chosen on the first half of the span and
    # its cost reported on the second, as the simulator's published frontiers are.
    (row,) = budget_rows(points, [settings.violation_budget], POLICIES)
    reactive, tide = row.picks["reactive"], row.picks["tidescaler"]
    reactive_hours, tide_hours = row.cost("reactive"), row.cost("tidescaler")

    if reactive is None and tide is None:
        return replace(base, recommendation=NO_SETTING, reason=_fewest_violations(points, settings))
    budget = settings.violation_budget
    floor = later_span_floors(scenario, (budget,), traffic)[budget]
    saving = None
    if reactive_hours and tide_hours is not None:
        saving = 1.0 - tide_hours / reactive_hours
    wins = tide is not None and (
        reactive is None or (saving is not None and saving >= settings.min_saving)
    )
    reason = None
    if reactive is None and tide is not None:
        # No saving to show: say why, and that a target below those swept might have
        # let reactive meet the budget after all.
        ratios = [p.slo_violation_ratio for p in points if p.policy == "reactive"]
        fewest = f"{100 * min(ratios):.3g} %" if ratios else "none"
        reason = (
            f"no reactive setting meets the budget: its fewest violations {fewest} of "
            f"requests, at targets down to {min(settings.targets):g}"
        )
    metadata: dict[str, str] = {}
    if wins and tide is not None:
        target = float(dict(tide.settings).get("target_utilization", scenario.target_utilization))
        metadata = {
            "threshold": f"{target * capacity / scale:.4g}",  # in the service's own units
            "forecast": "on",
            "podStartupSeconds": f"{settings.pod_startup_seconds:g}",
            "forecastQuantile": f"{settings.forecast_quantile:g}",
        }
    return replace(
        base,
        recommendation=USE_TIDESCALER if wins else KEEP_REACTIVE,
        reactive_replica_hours=reactive_hours,
        reactive_setting=reactive.label if reactive else None,
        tidescaler_replica_hours=tide_hours,
        tidescaler_setting=tide.label if tide else None,
        saving=saving,
        floor_replica_hours=None if floor is None else floor.replica_hours,
        trigger_metadata=metadata,
        reason=reason,
    )


def _days(days: float, spec: str) -> str:
    """`days` formatted by `spec`, with "day" or "days" as the number reads."""
    text = format(days, spec)
    return f"{text} day" if text == "1" else f"{text} days"


def _frontier_points(
    scenario: Scenario, traffic: Traffic, settings: FleetSettings
) -> list[SweepPoint]:
    """Both policies' sweep points over `settings.targets`.

    With `refine`, every tenth target first; then, for each policy, the targets
    between its pick there and the next one swept above it: a higher target is
    cheaper, so only those can beat the pick within the budget, and a lower one
    cannot. Where violations grow with the target (they do, up to noise between
    neighbouring targets) the picks are those of the full sweep, for about a third
    of its runs.
    """
    targets = sorted(set(settings.targets))
    cache = ForecastCache()

    def run(values: list[float], policies: tuple[str, ...]) -> list[SweepPoint]:
        if not values:
            return []
        grid = Sweep((("target_utilization", tuple(f"{t:g}" for t in values)),), policies)
        # No demand_problem refusal (check_demand=False): it speaks of simulate's --scale,
        # which fleet does not have, and fleet sizes capacity itself (from the
        # service's p99, or --capacity-per-replica). A peak above every ScaledObject's
        # reach is then a spike far above the service's usual demand; the autoscaled
        # policies stop at the fleet's max replicas and are judged on it, as fleet always
        # did, rather than the whole service being dropped. _evaluate refuses only peaks
        # too large to count in replicas, in fleet's terms.
        return sweep(
            replace(scenario, sweep=grid), traffic, forecast_cache=cache, check_demand=False
        )[1]

    if not settings.refine or len(targets) <= 2 * REFINE_STRIDE:
        return run(targets, POLICIES)
    coarse = targets[::REFINE_STRIDE]
    if coarse[-1] != targets[-1]:
        coarse.append(targets[-1])
    points = run(coarse, POLICIES)
    (row,) = budget_rows(points, [settings.violation_budget], POLICIES)
    for policy in POLICIES:
        pick = row.picks[policy]
        if pick is None:
            continue  # not even the lowest coarse target met the budget
        low = float(dict(pick.settings)["target_utilization"])
        high = min((t for t in coarse if t > low), default=math.inf)
        points += run([t for t in targets if low < t < high], (policy,))
    return points


def _fewest_violations(points: list[SweepPoint], settings: FleetSettings) -> str:
    """Each policy's fewest violations over the targets swept, against the budget."""
    fewest = []
    for policy in POLICIES:
        ratios = [p.slo_violation_ratio for p in points if p.policy == policy]
        if ratios:
            fewest.append(f"{policy} {100 * min(ratios):.3g} %")
    return (
        f"fewest violations at the targets swept: {', '.join(fewest)} of requests, over a "
        f"budget of {100 * settings.violation_budget:g} %"
    )


def fleet_scenario(name: str, capacity: float, settings: FleetSettings) -> Scenario:
    """The simulator's scenario every service runs in (capacity: per replica, req/s)."""
    scenario = parse_scenario(
        {
            "name": name,
            "synthetic": {},
            "slo_ms": settings.slo_ms,
            "policies": ["reactive", "tidescaler"],
            "tidescaler": {"forecastQuantile": f"{settings.forecast_quantile:g}"},
        },
        f"fleet service {name}",
    )
    cluster = replace(
        with_service(scenario.cluster, capacity_per_replica=capacity),
        pod_startup=PodStartup(seconds=settings.pod_startup_seconds),
        max_replicas=max(100, 3 * settings.peak_replicas),
    )
    return replace(scenario, cluster=cluster, traffic_source="fleet", tide=None)


def _with_forecast_skill(
    result: ServiceResult, trace: Trace, settings: FleetSettings
) -> ServiceResult:
    """sMAPE of the forecaster and of the best baseline one hour ahead, and band coverage;
    the trace must hold at least `_skill_intervals`."""
    scored = backtest.run(
        trace,
        [SKILL_HORIZON],
        quantile=settings.forecast_quantile,
        stride_seconds=3 * HOUR,
        min_history_seconds=_skill_history(settings),
    )
    ours = [s for s in scored.scores if s.method == backtest.TIDESCALER]
    others = [
        s for s in scored.scores if s.method != backtest.TIDESCALER and math.isfinite(s.smape)
    ]
    best = min(others, key=lambda s: s.smape, default=None)
    return replace(
        result,
        forecast_smape=_finite(ours[0].smape) if ours else None,
        forecast_coverage=_finite(ours[0].coverage) if ours else None,
        baseline_smape=_finite(best.smape) if best else None,
        baseline=best.method if best else None,
    )


def _skill_history(settings: FleetSettings) -> float:
    """Seconds of history before the first forecast the skill is scored on."""
    return min(settings.min_history_days, 2.0) * DAY


def _skill_intervals(step: float, settings: FleetSettings) -> int:
    """The fewest intervals whose forecast skill can be scored: the backtest's first
    origin closes `_skill_history`, and the hour forecast from it must be in the trace
    (a trace of exactly --min-history 1d has no such hour). As backtest.run counts them."""
    history = max(math.ceil(_skill_history(settings) / step), 1)
    return history + max(1, math.ceil(SKILL_HORIZON / step - 1e-9))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
