"""The decision: one pure function from (policy, observations, now) to replicas.

`decide()` does no I/O and never reads the clock, so the service, the simulator
and the tests run the very same arithmetic. The pipeline, in order:

1. each signal turns its observation into a replica recommendation
   (query: ceil(demand / threshold); cpu/memory: the Kubernetes HPA's count, see
   replica_calculator; forecast: ceil(demand the forecast asks for / threshold), where
   `forecastAction` says what it asks for over [t, t + lead] (lead: pod start-up, one
   polling interval and the metric's lag, see lead_seconds; scaler/forecast_action:
   the observed demand plus the predicted rise, the band's peak, or the sharper of
   the band and what the observed demand alone would need);
   cron: the floor and ceiling of the active windows);
2. an observation older than the staleness bound is no observation; a signal
   that has none makes the decision unavailable (KEDA's fallback then acts)
   unless a healthy forecast can stand in for the demand; activity still stands
   when a signal that is there says active or only resource signals are missing
   (`active_known`). A resource signal whose pods exist but have no usage yet
   (a pod just started) is the HPA's metric it cannot compute: it recommends
   the current count, so the others may scale up but nothing scales down;
3. desired = max of the acting recommendations and the window floor, clamped
   to [minReplicas, min(maxReplicas, window ceiling)]; the value reported to the
   HPA (`metric_value`, target 1) is the demand in replicas before rounding up
   when the query or the forecast sets `desired`, so that the HPA's tolerance
   acts on the demand exactly as with KEDA's prometheus scaler, and `desired`
   itself otherwise (see metric_value_for);
4. activity (KEDA's 0 <-> 1) is decided separately: demand above
   activationThreshold, a window with a floor > 0, or (forecast on) the band
   above activationThreshold within the lead time (a forecast of an idle night
   has a zero band, so the workload still scales to zero).

The conservative rules: combine by max, round up, and a signal whose backend
fails holds its last good value (never lowering replicas) until it goes stale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from scaler.forecast.types import Forecast
from scaler.forecast_action import LeadWindow, demand_to_provision, lead_window
from scaler.policy import ForecastMode, Policy
from scaler.replica_calculator import (
    PodListing,
    PodState,
    Resource,
    current_pod_count,
    resource_replicas,
)
from scaler.schedule import KEDA_VALUE_OUTSIDE_WINDOW, CronWindow

_Frozen = TypeVar("_Frozen")


class Signal(StrEnum):
    CRON = "cron"
    QUERY = "query"
    CPU = "cpu"
    MEMORY = "memory"
    FORECAST = "forecast"


class SignalStatus(StrEnum):
    OK = "ok"  # fresh observation
    HELD = "held"  # backend failing: last good value, younger than the staleness bound
    FORECAST_FALLBACK = "forecast_fallback"  # demand stale, forecast stands in
    STALE = "stale"  # no observation younger than the staleness bound
    OBSERVE = "observe"  # forecast computed but not acted on (forecast: observe)
    NO_FORECAST = "no_forecast"  # forecast wanted but none is healthy
    INACTIVE = "inactive"  # cron: no window active


class Reason(StrEnum):
    """Why `desired_replicas` has its value: the winning signal or the rule that bound it."""

    CRON = "cron"
    QUERY = "query"
    CPU = "cpu"
    MEMORY = "memory"
    FORECAST = "forecast"
    MIN_REPLICAS = "min_replicas"
    MAX_REPLICAS = "max_replicas"
    WINDOW_CEILING = "window_ceiling"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class EngineSettings:
    """Server-wide settings the policy does not carry."""

    polling_interval_seconds: float = 30.0
    staleness_seconds: float = 120.0


@dataclass(frozen=True)
class Sample:
    """One value read from a backend and when it was read (Unix seconds)."""

    value: float
    observed_at: float
    error: str | None = None  # set when the latest read failed and this is the last good value


@dataclass(frozen=True)
class ResourceSample:
    """The selected pods and their usage by pod name, as the HPA sees them.

    `usage` was measured at `observed_at` over `window_seconds` (the CPU rate
    window); see `replica_calculator.resource_replicas` for what counts.
    """

    pods: tuple[PodState, ...]
    usage: Mapping[str, float]
    observed_at: float
    window_seconds: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Observations:
    """What the adapters saw. None means never observed (or no longer remembered)."""

    demand: Sample | None = None
    cpu: ResourceSample | None = None
    memory: ResourceSample | None = None
    # The pods listed without usage by the newest resource answers (see PodListing).
    cpu_listing: PodListing | None = None
    memory_listing: PodListing | None = None
    forecast: Forecast | None = None
    forecast_problem: str | None = None  # why there is no forecast, when there is none
    errors: dict[str, str] = field(default_factory=dict)  # signal -> latest backend error
    # Measured creation-to-Ready of the target's pods (podStartupSeconds: auto); None until
    # measured, and then why not when nothing will measure it (no Kubernetes API).
    pod_startup_seconds: float | None = None
    pod_startup_problem: str | None = None


@dataclass(frozen=True, init=False)
class SignalReading:
    """One signal's part in a decision."""

    signal: Signal
    status: SignalStatus
    replicas: int | None = None  # its recommendation; None when it has none
    value: float | None = None  # its input: demand, utilization %, band peak, window floor
    detail: str = ""

    def __init__(
        self,
        signal: Signal,
        status: SignalStatus,
        replicas: int | None = None,
        value: float | None = None,
        detail: str = "",
    ) -> None:
        # One dict update instead of the frozen __init__'s object.__setattr__ per field:
        # a reading or two is built on every call.
        self.__dict__.update(
            signal=signal, status=status, replicas=replicas, value=value, detail=detail
        )


@dataclass(frozen=True)
class Decision:
    desired_replicas: int
    active: bool
    reason: Reason
    signals: tuple[SignalReading, ...]
    available: bool = True
    # Whether `active` holds: always when available; when unavailable, if a signal that is
    # there makes the workload active whatever the missing one would say (a window with a
    # floor, demand above activation), or only resource signals are missing (they never
    # decide activity beside a query). IsActive answers then; GetMetrics is UNAVAILABLE.
    active_known: bool = True
    detail: str = ""  # human-readable why, for logs and UNAVAILABLE messages
    floor: int = 0
    ceiling: int | None = None
    forecast_median: float | None = None  # at now + lead, for telemetry
    forecast_upper: float | None = None
    # The pod start-up the lead time was built on, and where it came from: "policy"
    # (podStartupSeconds), "measured" or "default, not measured yet" (auto).
    pod_startup_seconds: float | None = None
    pod_startup_source: str = "policy"
    # The policy's metric lag, the third part of the lead time (with start-up and polling).
    metric_lag_seconds: float = 0.0
    # What GetMetrics reports (target 1): ceil(metric_value) == desired_replicas; None
    # means desired_replicas itself (see metric_value_for).
    metric_value: float | None = None

    @property
    def hpa_value(self) -> float:
        """The GetMetrics value: the HPA asks for ceil(it) replicas, outside its tolerance."""
        return float(self.desired_replicas) if self.metric_value is None else self.metric_value

    def signal(self, signal: Signal) -> SignalReading | None:
        for reading in self.signals:
            if reading.signal is signal:
                return reading
        return None


# The most replicas a signal can ask for: Kubernetes keeps replica counts in an int32.
# A huge demand over a tiny threshold (1e300 / 1e-9) clamps here instead of overflowing.
MAX_SIGNAL_REPLICAS = 2**31 - 1


def replicas_for(load: float, per_replica: float) -> int:
    """ceil(load / per_replica), robust to float noise such as 3.0000000000000004,
    and at most MAX_SIGNAL_REPLICAS."""
    if 0.0 < load < math.inf and per_replica > 0:  # also False for nan
        ratio = load / per_replica
        if ratio < MAX_SIGNAL_REPLICAS:
            # Rounding to 6 decimals can only change the ceiling when the ratio is a hair
            # above a whole number: anywhere else skip the (costly) decimal rounding.
            whole = math.floor(ratio)
            fraction = ratio - whole  # exact
            if fraction > 2e-6:
                return whole + 1
            if fraction == 0.0:
                return whole
            return min(math.ceil(round(ratio, 6)), MAX_SIGNAL_REPLICAS)
        return MAX_SIGNAL_REPLICAS  # also catches inf
    if load <= 0 or not math.isfinite(load):
        return 0
    return MAX_SIGNAL_REPLICAS  # per_replica <= 0 (or nan): any load is too much


def _in_replicas(load: float, per_replica: float) -> float:
    """load / per_replica, the demand in replicas before rounding up (inf where the
    division is not a number: metric_value_for then reports the whole count)."""
    if per_replica > 0 and math.isfinite(load):
        return max(load, 0.0) / per_replica
    return math.inf


def metric_value_for(desired: int, demand_in_replicas: float) -> float:
    """The value to report for `desired` replicas set by a demand of `demand_in_replicas`
    (load / threshold, before rounding up).

    KEDA's prometheus scaler reports the demand and lets the HPA round: within its
    tolerance (+-10 % of the current count) the HPA keeps its replicas, outside it asks
    for ceil(demand / target). Reporting the rounded-up count instead would move that
    band up by the rounding (at 10 pods a demand of 8.95 pods' worth scales to 9, but a
    reported 9 keeps 10), which costs replicas with no latency to show for it. The
    value is the demand itself, kept within [desired - 1 + 0.002, desired]: KEDA
    truncates it to whole thousandths (its precision, which can lose the last one
    too), and the HPA's ceiling of what is left must still be `desired`.
    """
    if desired <= 0:
        return 0.0
    if not demand_in_replicas < desired:  # also nan
        return float(desired)
    return max(desired - 1 + 0.002, demand_in_replicas)


def pod_startup(
    policy: Policy, measured: float | None = None, problem: str | None = None
) -> tuple[float, str]:
    """The pod start-up to plan with and its source (policy, measured, or the auto default,
    with `problem`: why it is not measured, when it never will be)."""
    if not policy.forecast.pod_startup_auto:
        return policy.forecast.pod_startup_seconds, "policy"
    if measured is None:
        return policy.forecast.pod_startup_seconds, f"default, {problem or 'not measured yet'}"
    return measured, "measured"


def lead_seconds(
    policy: Policy, settings: EngineSettings, measured_startup: float | None = None
) -> float:
    """How far ahead the forecast looks: pod start-up plus one polling interval (how far
    ahead capacity must be decided), plus the metric's lag (the forecast learns the
    lagged series the query returns, so what it predicts shows that much late)."""
    return _lead(policy, settings, pod_startup(policy, measured_startup)[0])


def _lead(policy: Policy, settings: EngineSettings, startup_seconds: float) -> float:
    return startup_seconds + settings.polling_interval_seconds + policy.forecast.metric_lag_seconds


def _fresh(observed_at: float, now: float, settings: EngineSettings) -> bool:
    # An observation from the future means the clock stepped back (NTP) by more than its
    # age: counting it fresh until the clock catches up could hold an old value for as
    # long as the step; within the staleness bound of it, it still counts.
    return -settings.staleness_seconds <= now - observed_at <= settings.staleness_seconds


def _built(cls: type[_Frozen], **fields: object) -> _Frozen:
    """cls(**fields) for a frozen dataclass without its __init__, which sets each field
    through object.__setattr__ (a decision's twelve cost ~1 us a call). Every field must
    be given: nothing is defaulted."""
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance


# What the cron signal says, by (the policy's windows, bit i set iff window i is active):
# it depends on nothing else, and CronWindow caches its activity, so a warm call looks
# it up instead of rebuilding the same frozen reading. Keyed by the windows tuple itself
# (held, so its id cannot be reused); emptied when full, so policies that come and go
# cannot grow it without bound (~600 bytes an entry). A fleet of more cron triggers than
# it holds only loses the saving: every miss builds the part as before.
CronPart = tuple[int, int | None, bool, SignalReading | None]
_CRON_PARTS: dict[tuple[tuple[CronWindow, ...], int], CronPart] = {}
_CRON_PARTS_MAX = 4096
_NO_CRON: CronPart = (0, None, False, None)


def _cron(policy: Policy, now: float) -> CronPart:
    """Floor, ceiling and activity of the windows active at `now`, and their reading."""
    windows = policy.windows
    if not windows:
        return _NO_CRON
    active, bit = 0, 1
    for window in windows:
        if window.is_active(now):
            active |= bit
        bit <<= 1
    key = (windows, active)
    part = _CRON_PARTS.get(key)
    if part is None:
        part = _cron_part(windows, active)
        if len(_CRON_PARTS) >= _CRON_PARTS_MAX:
            _CRON_PARTS.clear()
        _CRON_PARTS[key] = part
    return part


def _cron_part(windows: tuple[CronWindow, ...], active: int) -> CronPart:
    """The cron signal of `windows` when those whose bit is set in `active` are active."""
    floor, ceiling, any_floor_active = 0, None, False
    for i, window in enumerate(windows):
        if not active >> i & 1:
            continue
        if window.desired_replicas is not None:
            floor = max(floor, window.desired_replicas)
            any_floor_active = any_floor_active or window.desired_replicas > 0
        if window.max_replicas is not None:
            ceiling = window.max_replicas if ceiling is None else min(ceiling, window.max_replicas)
    active_windows = any_floor_active or ceiling is not None
    reading = SignalReading(
        Signal.CRON,
        SignalStatus.OK if active_windows else SignalStatus.INACTIVE,
        replicas=floor,
        value=float(floor),
        detail="" if ceiling is None else f"ceiling {ceiling}",
    )
    return floor, ceiling, any_floor_active, reading


# A recommendation: (replicas, the signal, its demand in replicas before rounding up; the
# replicas themselves for a signal that counts pods rather than demand).
Recommendation = tuple[int, Reason, float]


def _winner(acting: list[Recommendation], floor: int | None) -> tuple[int, Reason, float]:
    """The highest recommendation, the earliest on a tie, with the highest demand among
    the tied (the HPA must see the largest wish for that count); the window floor (None:
    no windows) wins when strictly higher, and makes the value a whole count when equal:
    a floor must hold exactly. (A loop: max() with a key costs ~0.6 us more.)"""
    desired, reason, demand = acting[0] if acting else (0, Reason.MIN_REPLICAS, 0.0)
    for replicas, why, wish in acting:
        if replicas > desired:
            desired, reason, demand = replicas, why, wish
        elif replicas == desired and wish > demand:
            demand = wish
    if floor is not None and (floor >= desired or not acting):
        if floor > desired or not acting:
            reason = Reason.CRON
        desired, demand = floor, float(floor)
    return desired, reason, demand


def decide(
    policy: Policy,
    observations: Observations,
    now: float,
    settings: EngineSettings = EngineSettings(),
) -> Decision:
    """The replica count and activity for `policy` at `now` (see the module docstring)."""
    readings: list[SignalReading] = []
    acting: list[Recommendation] = []
    missing: list[str] = []
    active = False
    demand_missing = False  # the one missing signal that could have made the policy active

    floor, ceiling, cron_active, cron_reading = _cron(policy, now)
    if cron_reading:
        readings.append(cron_reading)
        active = active or cron_active

    startup_seconds, startup_source = pod_startup(
        policy, observations.pod_startup_seconds, observations.pod_startup_problem
    )
    lead = _lead(policy, settings, startup_seconds)
    forecast_window: LeadWindow | None = None
    if policy.forecast.mode is not ForecastMode.OFF and observations.forecast is not None:
        forecast_window = lead_window(observations.forecast, now, lead)
    observed_demand: float | None = None

    query = policy.query
    if query is not None:
        demand = observations.demand
        if demand is not None and _fresh(demand.observed_at, now, settings):
            value = observed_demand = max(demand.value, 0.0)
            status = SignalStatus.HELD if demand.error else SignalStatus.OK
            replicas = replicas_for(value, query.threshold)
            readings.append(
                SignalReading(Signal.QUERY, status, replicas, value, demand.error or "")
            )
            acting.append((replicas, Reason.QUERY, _in_replicas(value, query.threshold)))
            active = active or value > query.activation_threshold
        elif forecast_window is not None and policy.forecast.mode is ForecastMode.ON:
            # Failure semantics: a healthy forecast stands in for stale demand (not in
            # observe mode, whose forecast never acts).
            upper = forecast_window.peak_upper
            replicas = replicas_for(upper, query.threshold)
            detail = observations.errors.get(Signal.QUERY, "demand is stale")
            readings.append(
                SignalReading(Signal.QUERY, SignalStatus.FORECAST_FALLBACK, replicas, upper, detail)
            )
            acting.append((replicas, Reason.FORECAST, _in_replicas(upper, query.threshold)))
            active = active or upper > query.activation_threshold
        else:
            detail = observations.errors.get(Signal.QUERY) or "no demand observed yet"
            readings.append(SignalReading(Signal.QUERY, SignalStatus.STALE, detail=detail))
            missing.append(f"query: {detail}")
            demand_missing = True

    resources = policy.resources
    if resources is not None:
        resource_signals: tuple[
            tuple[Signal, Resource, float | None, ResourceSample | None, PodListing | None], ...
        ]
        resource_signals = (
            (
                Signal.CPU,
                "cpu",
                resources.cpu_utilization_percent,
                observations.cpu,
                observations.cpu_listing,
            ),
            (
                Signal.MEMORY,
                "memory",
                resources.memory_utilization_percent,
                observations.memory,
                observations.memory_listing,
            ),
        )
        for signal, resource, target, sample, listing in resource_signals:
            if target is None:
                continue
            if sample is not None and _fresh(sample.observed_at, now, settings):
                # The HPA's own arithmetic (tolerance, missing and unready pods), as of
                # the reading: a held reading recommends what it did when fresh.
                calculation = resource_replicas(
                    sample.pods,
                    sample.usage,
                    resource,
                    target,
                    current_pod_count(sample.pods, sample.usage),
                    sample.observed_at,
                    metric_window_seconds=sample.window_seconds,
                )
                status = SignalStatus.HELD if sample.error else SignalStatus.OK
                utilization = calculation.utilization_percent
                readings.append(
                    SignalReading(
                        signal,
                        status,
                        calculation.replicas,
                        None if utilization is None else float(utilization),
                        f"{sample.error}; {calculation.detail}"
                        if sample.error
                        else calculation.detail,
                    )
                )
                acting.append(
                    (calculation.replicas, Reason(signal.value), float(calculation.replicas))
                )
            elif (
                listing is not None
                and _fresh(listing.observed_at, now, settings)
                and (count := current_pod_count(listing.pods, {})) > 0
            ):
                # Pods without any usage: the HPA cannot compute this metric, and with
                # several metrics it then scales up by the others and never down, which is
                # this signal recommending the current count (as its calculator does). No
                # current pod (all terminating or finished) is no count to hold.
                detail = (
                    f"no {resource} usage for the {count} current pod(s) yet: their count "
                    "is held, other signals may scale up"
                )
                readings.append(SignalReading(signal, SignalStatus.HELD, count, None, detail))
                acting.append((count, Reason(signal.value), float(count)))
            else:
                detail = observations.errors.get(signal) or "no usage observed yet"
                readings.append(SignalReading(signal, SignalStatus.STALE, detail=detail))
                missing.append(f"{signal.value}: {detail}")
        if policy.resource_only:
            active = True  # at zero pods there is no usage to measure: never deactivate

    forecast_median = forecast_upper = None
    if policy.forecast.mode is not ForecastMode.OFF and query is not None:
        if forecast_window is None:
            detail = observations.forecast_problem or (
                "no forecast yet"
                if observations.forecast is None
                else "forecast does not cover the lead time"
            )
            readings.append(SignalReading(Signal.FORECAST, SignalStatus.NO_FORECAST, detail=detail))
        else:
            forecast_median = forecast_window.peak_median
            forecast_upper = forecast_window.peak_upper
            # Without a fresh demand (it is stale and the forecast stands in) the band's peak
            # is all there is to go by.
            forecast = observations.forecast
            headroom = forecast.last_value_headroom(lead) if forecast is not None else None
            band_floor = forecast.band_floor if forecast is not None else 0.0
            wanted = (
                forecast_upper
                if observed_demand is None
                else demand_to_provision(
                    policy.forecast.action, forecast_window, observed_demand, headroom, band_floor
                )
            )
            replicas = replicas_for(wanted, query.threshold)
            detail = f"{policy.forecast.action.value}: provision for {wanted:.6g}"
            if policy.forecast.mode is ForecastMode.ON:
                readings.append(
                    SignalReading(
                        Signal.FORECAST, SignalStatus.OK, replicas, forecast_upper, detail
                    )
                )
                acting.append((replicas, Reason.FORECAST, _in_replicas(wanted, query.threshold)))
                # Active where the forecast asks for capacity, or its median expects
                # demand within the lead time (the band alone: a valley of stray requests).
                active = active or max(wanted, forecast_median) > query.activation_threshold
            else:
                readings.append(
                    SignalReading(
                        Signal.FORECAST, SignalStatus.OBSERVE, replicas, forecast_upper, detail
                    )
                )

    upper_bound = policy.max_replicas
    if ceiling is not None:
        upper_bound = ceiling if upper_bound is None else min(upper_bound, ceiling)

    if missing:
        # Activity stands when a signal that is there says active, or when only resource
        # signals are missing (they never decide activity beside a query).
        active_known = active or not demand_missing
        return _built(
            Decision,
            desired_replicas=0,
            active=active and active_known,
            reason=Reason.UNAVAILABLE,
            signals=tuple(readings),
            available=False,
            active_known=active_known,
            detail="; ".join(missing),
            floor=floor,
            ceiling=upper_bound,
            forecast_median=forecast_median,
            forecast_upper=forecast_upper,
            pod_startup_seconds=startup_seconds,
            pod_startup_source=startup_source,
            metric_lag_seconds=policy.forecast.metric_lag_seconds,
            metric_value=None,
        )

    # The winner: the highest recommendation; on a tie a measured signal beats the window
    # floor, and among signals the order above (query, cpu, memory, forecast).
    if policy.windows and query is None and resources is None and not cron_active:
        # A policy of cron windows alone is a KEDA cron trigger: outside its windows KEDA's
        # cron scaler (>= 2.18) reports 0 and is inactive, so KEDA scales to zero.
        floor = KEDA_VALUE_OUTSIDE_WINDOW
    desired, reason, wish = _winner(acting, floor if policy.windows else None)
    if desired <= policy.min_replicas:
        # A bound is reported as a whole count: the HPA must reach it, not stop within
        # its tolerance short of it.
        if desired < policy.min_replicas:
            reason = Reason.MIN_REPLICAS
        desired, wish = policy.min_replicas, float(policy.min_replicas)
    if upper_bound is not None and desired >= upper_bound:
        if desired > upper_bound:
            bound_by_window = ceiling is not None and (
                policy.max_replicas is None or ceiling < policy.max_replicas
            )
            reason = Reason.WINDOW_CEILING if bound_by_window else Reason.MAX_REPLICAS
        desired, wish = upper_bound, float(upper_bound)

    return _built(
        Decision,
        desired_replicas=desired,
        active=active,
        reason=reason,
        signals=tuple(readings),
        available=True,
        active_known=True,
        detail="",
        floor=floor,
        ceiling=upper_bound,
        forecast_median=forecast_median,
        forecast_upper=forecast_upper,
        pod_startup_seconds=startup_seconds,
        pod_startup_source=startup_source,
        metric_lag_seconds=policy.forecast.metric_lag_seconds,
        metric_value=metric_value_for(desired, wish),
    )


# How far inside each instant at which an answer may change `holds_until` stops: the
# float arithmetic of the comparisons it mirrors must not make it a hair too late.
_HOLD_MARGIN_SECONDS = 1e-3


def holds_until(
    policy: Policy,
    observations: Observations,
    now: float,
    settings: EngineSettings = EngineSettings(),
) -> float:
    """Until when (exclusive) `decide(policy, observations, t)` is the decision at `now`
    for every t >= now, given the same observations: the clock enters a decision only
    through the windows (their next transition), each reading's staleness bound and the
    forecast's grid (which points the lead window covers). inf when nothing there can
    change; may be <= now, then the decision holds for `now` alone."""
    until = math.inf
    for window in policy.windows:
        until = min(until, window.next_transition(now))
    staleness = settings.staleness_seconds
    # The same observations decide() reads, and only those (a reading it does not look
    # at cannot change the answer).
    readings: list[Sample | ResourceSample | PodListing | None] = []
    if policy.query is not None:
        readings.append(observations.demand)
    if policy.resources is not None:
        readings += (
            observations.cpu,
            observations.memory,
            observations.cpu_listing,
            observations.memory_listing,
        )
    for reading in readings:
        if reading is None:
            continue
        observed_at = reading.observed_at
        if now < observed_at - staleness:  # from the future: fresh once within the bound
            until = min(until, observed_at - staleness)
        elif now <= observed_at + staleness:  # fresh until the bound is passed
            until = min(until, observed_at + staleness)
    forecast = observations.forecast
    if policy.forecast.mode is not ForecastMode.OFF and forecast is not None:
        startup, _ = pod_startup(
            policy, observations.pod_startup_seconds, observations.pod_startup_problem
        )
        until = min(
            until, _lead_window_holds_until(forecast, now, _lead(policy, settings, startup))
        )
    return until - _HOLD_MARGIN_SECONDS


def _lead_window_holds_until(forecast: Forecast, now: float, lead: float) -> float:
    """Until when `lead_window(forecast, t, lead)` is the window at `now`, for t >= now.

    The window's first and last points move when now, or now + lead, reaches the next
    point of the grid (the same floor division as Forecast.window). Where the forecast
    begins and ends are points of that grid, so whether it covers the lead time changes
    only there too."""
    start, step = forecast.start, forecast.step_seconds
    until = math.inf
    for edge in (now, now + lead):
        next_point = start + ((edge - start) // step + 1) * step
        until = min(until, next_point - (edge - now))
    return until
