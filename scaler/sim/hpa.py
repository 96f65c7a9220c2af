"""The Kubernetes HPA's arithmetic as pure functions (replica_calculator.go, horizontal.go).

Each function takes plain numbers and returns the replica count and, where a
rule changed it, why. The cluster model calls them once per HPA sync; the
tests state the Kubernetes rules as tables against them. Defaults are the HPA
defaults of keda-contract.md §4: tolerance 0.1; scale up by at most 4 pods or
100 % per 15 s (whichever is more); scale down after a 300 s stabilization
window by at most 100 % per 15 s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class HpaReason(StrEnum):
    """Why the HPA's answer differs from the metric's wish (the HPA's condition reasons)."""

    DESIRED_WITHIN_RANGE = "desired_within_range"
    WITHIN_TOLERANCE = "within_tolerance"
    STABILIZED = "scale_down_stabilized"
    SCALE_UP_LIMIT = "scale_up_limit"
    SCALE_DOWN_LIMIT = "scale_down_limit"
    TOO_MANY_REPLICAS = "too_many_replicas"
    TOO_FEW_REPLICAS = "too_few_replicas"


@dataclass(frozen=True)
class ScalingPolicy:
    """One HPA behavior policy: `value` pods or percent per `period_seconds`."""

    kind: str  # "Pods" or "Percent"
    value: int
    period_seconds: float


@dataclass(frozen=True)
class ScalingRules:
    stabilization_window_seconds: float
    policies: tuple[ScalingPolicy, ...]
    select_policy: str = "Max"  # Max: the policy allowing the largest change; Min; Disabled


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules
    scale_down: ScalingRules


DEFAULT_BEHAVIOR = Behavior(
    scale_up=ScalingRules(
        0.0, (ScalingPolicy("Pods", 4, 15.0), ScalingPolicy("Percent", 100, 15.0))
    ),
    scale_down=ScalingRules(300.0, (ScalingPolicy("Percent", 100, 15.0),)),
)


@dataclass(frozen=True)
class ScaleEvent:
    """A change of the scale target's replicas made by the HPA at `timestamp`."""

    timestamp: float
    change: int  # > 0 added, < 0 removed


def ceil_ratio(ratio: float) -> int:
    """ceil(round(ratio, 9)): the HPA's replica count for a usage ratio, robust to float
    noise such as 3.0000000000000004. The decimal rounding is skipped where it cannot
    move the ceiling (2e-9 or more above a whole number): this runs at every HPA sync
    of a simulation, and round() is its costliest step."""
    whole = math.floor(ratio)
    fraction = ratio - whole
    if fraction > 2e-9:
        return whole + 1
    if fraction == 0.0:
        return whole
    return math.ceil(round(ratio, 9))


def average_value_replicas(
    value: float, target: float, current_replicas: int, tolerance: float = 0.1
) -> int:
    """External metric of type AverageValue: ceil(value / target) unless within tolerance.

    The ratio value / (target x current) within 1 +- tolerance keeps the current count.
    """
    if current_replicas <= 0:
        return ceil_ratio(value / target) if value > 0 else 0
    usage_ratio = value / (target * current_replicas)
    if abs(1.0 - usage_ratio) <= tolerance:
        return current_replicas
    return ceil_ratio(value / target)


def resource_utilization_replicas(
    utilization_percent_ready: float,
    target_percent: float,
    ready_pods: int,
    unready_pods: int,
    current_replicas: int,
    tolerance: float = 0.1,
) -> int:
    """Resource metric (CPU) with a utilization target, as replica_calculator.go.

    `utilization_percent_ready` is the mean over pods with metrics (the ready ones).
    Unready pods are ignored, except that on a scale-up they are counted back at
    0 % usage; if that flips the direction or lands within tolerance, nothing changes.
    """
    if ready_pods <= 0:
        return current_replicas
    usage_ratio = utilization_percent_ready / target_percent
    if unready_pods == 0 or usage_ratio <= 1.0:
        if abs(1.0 - usage_ratio) <= tolerance:
            return current_replicas
        return math.ceil(round(usage_ratio * ready_pods, 9))
    new_ratio = (
        utilization_percent_ready * ready_pods / (target_percent * (ready_pods + unready_pods))
    )
    if abs(1.0 - new_ratio) <= tolerance or new_ratio < 1.0:
        return current_replicas
    new_replicas = math.ceil(round(new_ratio * (ready_pods + unready_pods), 9))
    # The HPA never lets the correction reverse the scale direction.
    return max(new_replicas, current_replicas)


def stabilize(
    recommendations: Sequence[tuple[float, int]],
    now: float,
    current_replicas: int,
    desired_replicas: int,
    behavior: Behavior = DEFAULT_BEHAVIOR,
) -> int:
    """stabilizeRecommendationWithBehaviors: scale up to the lowest, down to the highest
    recommendation within each window (the new `desired_replicas` included)."""
    up_cutoff = now - behavior.scale_up.stabilization_window_seconds
    down_cutoff = now - behavior.scale_down.stabilization_window_seconds
    up_recommendation = down_recommendation = desired_replicas
    for timestamp, replicas in recommendations:
        if timestamp > up_cutoff:
            up_recommendation = min(up_recommendation, replicas)
        if timestamp > down_cutoff:
            down_recommendation = max(down_recommendation, replicas)
    recommendation = current_replicas
    if recommendation < up_recommendation:
        recommendation = up_recommendation
    if recommendation > down_recommendation:
        recommendation = down_recommendation
    return recommendation


def _changes_in_period(events: Sequence[ScaleEvent], now: float, period: float) -> tuple[int, int]:
    """Pods added and removed by events strictly after now - period."""
    cutoff = now - period
    added = sum(e.change for e in events if e.timestamp > cutoff and e.change > 0)
    removed = -sum(e.change for e in events if e.timestamp > cutoff and e.change < 0)
    return added, removed


def scale_up_limit(
    current_replicas: int, events: Sequence[ScaleEvent], now: float, rules: ScalingRules
) -> int:
    """calculateScaleUpLimitWithScalingRules."""
    if rules.select_policy == "Disabled":
        return current_replicas
    pick_max = rules.select_policy != "Min"
    result = -1 if pick_max else 2**31 - 1
    for policy in rules.policies:
        added, removed = _changes_in_period(events, now, policy.period_seconds)
        period_start = current_replicas - added + removed
        if policy.kind == "Pods":
            proposed = period_start + policy.value
        else:
            proposed = math.ceil(period_start * (1.0 + policy.value / 100.0))
        result = max(result, proposed) if pick_max else min(result, proposed)
    return result


def scale_down_limit(
    current_replicas: int, events: Sequence[ScaleEvent], now: float, rules: ScalingRules
) -> int:
    """calculateScaleDownLimitWithBehaviors."""
    if rules.select_policy == "Disabled":
        return current_replicas
    pick_max = rules.select_policy != "Min"  # Max: the policy allowing the most removal
    result = 2**31 - 1 if pick_max else -1
    for policy in rules.policies:
        added, removed = _changes_in_period(events, now, policy.period_seconds)
        period_start = current_replicas - added + removed
        if policy.kind == "Pods":
            proposed = period_start - policy.value
        else:
            proposed = int(period_start * (1.0 - policy.value / 100.0))
        result = min(result, proposed) if pick_max else max(result, proposed)
    return result


def apply_rate_limits(
    desired_replicas: int,
    current_replicas: int,
    min_replicas: int,
    max_replicas: int,
    events: Sequence[ScaleEvent],
    now: float,
    behavior: Behavior = DEFAULT_BEHAVIOR,
) -> tuple[int, HpaReason]:
    """convertDesiredReplicasWithBehaviorRate: the rate policies and min/max bounds."""
    if desired_replicas > current_replicas:
        limit = max(
            scale_up_limit(current_replicas, events, now, behavior.scale_up), current_replicas
        )
        if max_replicas > limit:
            maximum, reason = limit, HpaReason.SCALE_UP_LIMIT
        else:
            maximum, reason = max_replicas, HpaReason.TOO_MANY_REPLICAS
        if desired_replicas > maximum:
            return maximum, reason
    elif desired_replicas < current_replicas:
        limit = min(
            scale_down_limit(current_replicas, events, now, behavior.scale_down), current_replicas
        )
        if min_replicas < limit:
            minimum, reason = limit, HpaReason.SCALE_DOWN_LIMIT
        else:
            minimum, reason = min_replicas, HpaReason.TOO_FEW_REPLICAS
        if desired_replicas < minimum:
            return minimum, reason
    return desired_replicas, HpaReason.DESIRED_WITHIN_RANGE


def normalize(
    recommendations: Sequence[tuple[float, int]],
    events: Sequence[ScaleEvent],
    now: float,
    current_replicas: int,
    desired_replicas: int,
    min_replicas: int,
    max_replicas: int,
    behavior: Behavior = DEFAULT_BEHAVIOR,
) -> tuple[int, HpaReason]:
    """normalizeDesiredReplicasWithBehaviors: stabilization, then rate limits and bounds.

    The caller stores (now, desired_replicas) in `recommendations` afterwards.
    """
    stabilized = stabilize(recommendations, now, current_replicas, desired_replicas, behavior)
    reason = (
        HpaReason.STABILIZED if stabilized != desired_replicas else HpaReason.DESIRED_WITHIN_RANGE
    )
    final, rate_reason = apply_rate_limits(
        stabilized, current_replicas, min_replicas, max_replicas, events, now, behavior
    )
    if final != stabilized:
        reason = rate_reason
    return final, reason
