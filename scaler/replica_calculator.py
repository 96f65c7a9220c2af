"""The Kubernetes HPA's replica count for a Resource metric with a utilization target.

A pure port of `GetResourceReplicas` and `groupPods` in Kubernetes'
pkg/controller/podautoscaler/replica_calculator.go (and
`GetResourceUtilizationRatio` in metrics/utilization.go), so that the
cpuUtilization / memoryUtilization signals recommend what an HPA on the same
pods would. In short:

- pods being deleted and Failed pods are ignored; Pending pods are unready;
  a pod without a usage sample is missing;
- for CPU, a pod is unready too when it has no Ready condition or start time,
  when it is inside the CPU initialization period (default 5 min after start)
  and either not ready or ready for less than one metric window, or when it
  is past that period, not ready and has never been ready (its readiness
  last changed within the initial readiness delay, default 30 s, of start);
- utilization = floor(100 x sum of usage / sum of requests) over the pods with
  usage (integer percent, as the HPA), ratio = utilization / target;
- without unready pods on a scale-up and without missing pods: the current
  count if the ratio is within the tolerance (0.1 each way) of 1, else
  ceil(ratio x ready pods);
- otherwise the ratio is recomputed with missing pods at 100 % of their
  request (or the target if above 100 %) on a scale-down and 0 % on a
  scale-up, and unready pods at 0 % on a scale-up; if that lands within the
  tolerance or flips the direction, the current count stays, else
  ceil(new ratio x pods counted), unless that would move against the
  direction.

Usage and requests are compared in milli-units (millicores, millibytes) as
integers, like the HPA's `MilliValue()`, so the integer-percent truncation
matches the HPA at the boundaries (71 % of a 70 % target stays within
tolerance). Where the HPA returns an error (no pods, no usage for any counted
pod), the recommendation is the current count: the HPA does not scale then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Resource = Literal["cpu", "memory"]


class PodPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class PodState:
    """What the HPA's pod lister knows of one pod of the selection.

    `request` is the sum of its containers' requests (cores or bytes).
    `ready` is the status of its Ready condition (None: no such condition).
    `started_at` is its status.startTime (None: not started). `ready_changed_at`
    is the Ready condition's last transition time; None when unknown, which
    counts as the start time (a pod that is not ready then has never been ready).
    `missing_request`: one of its containers requests nothing of the resource,
    which makes the HPA's calculatePodRequests fail for the whole selection.
    """

    name: str
    request: float
    ready: bool | None = True
    started_at: float | None = None
    ready_changed_at: float | None = None
    phase: PodPhase = PodPhase.RUNNING
    deleting: bool = False
    missing_request: bool = False


@dataclass(frozen=True)
class HpaSettings:
    """kube-controller-manager's flags for the calculation, with their defaults."""

    # --horizontal-pod-autoscaler-tolerance, or per direction the behavior's
    # scaleDown/scaleUp tolerance (Kubernetes >= 1.33).
    scale_down_tolerance: float = 0.1
    scale_up_tolerance: float = 0.1
    cpu_initialization_seconds: float = (
        300.0  # --horizontal-pod-autoscaler-cpu-initialization-period
    )
    initial_readiness_delay_seconds: float = 30.0  # --...-initial-readiness-delay


class CalculationReason(StrEnum):
    """Why the calculation gave its count; exported as a label, so short and stable."""

    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    UNCHANGED = "unchanged"  # outside the tolerance, but the count rounds to the current one
    WITHIN_TOLERANCE = "within_tolerance"
    # The recomputation with missing or unready pods fell within the tolerance or
    # reversed the direction: no change.
    REBALANCE_HOLDS = "rebalance_holds"
    NO_PODS = "no_pods"  # the selection has no pods: the HPA errors and keeps the count
    NO_METRICS = "no_metrics"  # no usage for any counted pod: likewise
    NO_REQUESTS = "no_requests"  # the pods with usage request nothing: likewise
    # A container of a selected pod has no request for the resource: the HPA's
    # calculatePodRequests errors ("missing request for cpu in container ...") and the
    # HPA keeps the count.
    MISSING_REQUEST = "missing_request"


@dataclass(frozen=True)
class Calculation:
    replicas: int
    reason: CalculationReason
    utilization_percent: int | None  # the HPA's currentUtilization; None when it has none
    ready_pods: int = 0
    unready_pods: int = 0
    missing_pods: int = 0
    ignored_pods: int = 0

    @property
    def detail(self) -> str:
        """Short text for logs and UNAVAILABLE messages."""
        counts = (
            f"{self.ready_pods} ready, {self.unready_pods} unready, "
            f"{self.missing_pods} without usage, {self.ignored_pods} ignored"
        )
        if self.utilization_percent is None:
            return f"{self.reason.value}: {counts}"
        return f"{self.reason.value} at {self.utilization_percent}%: {counts}"


@dataclass(frozen=True)
class PodListing:
    """The selected pods of an answer that had no usage for any of them: pods that
    exist but are not measured (yet), as after a scale from zero before the first
    scrape of the new pod's usage."""

    pods: tuple[PodState, ...]
    observed_at: float


def current_pod_count(pods: Sequence[PodState], usage: Mapping[str, float]) -> int:
    """The workload's current replicas as its ReplicaSet counts them: its active pods.

    Pods being deleted and pods that finished (Failed, Succeeded) are not replicas.
    A pod with usage but missing from `pods` (its status not exported yet or any
    more) still runs: it counts, as the HPA's count comes from the workload, not
    from the pods it lists.
    """
    listed = {pod.name for pod in pods}
    active = sum(
        1
        for pod in pods
        if not pod.deleting and pod.phase not in (PodPhase.FAILED, PodPhase.SUCCEEDED)
    )
    return active + sum(1 for name in usage if name not in listed)


# The largest quantity whose milli-value Kubernetes can hold (an int64). A usage or a
# request above it is no measurement a pod can make.
MAX_QUANTITY = (2**63 - 1) / 1000.0


def milli(value: float) -> int:
    """A quantity in milli-units, rounded up like Kubernetes' Quantity.MilliValue()."""
    # round() first: 0.71 * 1000 is 710.0000000000001, which must stay 710. Capped, so a
    # value near the float limit cannot become an infinity that ceil() refuses.
    return math.ceil(round(min(value, MAX_QUANTITY) * 1000.0, 6))


def group_pods(
    pods: Sequence[PodState],
    usage: Mapping[str, float],
    resource: Resource,
    now: float,
    metrics_at: float,
    metric_window_seconds: float,
    settings: HpaSettings,
) -> tuple[int, set[str], set[str], set[str]]:
    """groupPods: the ready count and the unready, missing and ignored pod names."""
    ready_count = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleting or pod.phase is PodPhase.FAILED:
            ignored.add(pod.name)
            continue
        if pod.phase is PodPhase.PENDING:
            unready.add(pod.name)
            continue
        if pod.name not in usage:
            missing.add(pod.name)
            continue
        if resource == "cpu" and _cpu_unready(
            pod, now, metrics_at, metric_window_seconds, settings
        ):
            unready.add(pod.name)
            continue
        ready_count += 1
    return ready_count, unready, missing, ignored


def _cpu_unready(
    pod: PodState, now: float, metrics_at: float, window: float, settings: HpaSettings
) -> bool:
    if pod.ready is None or pod.started_at is None:
        return True
    changed_at = pod.started_at if pod.ready_changed_at is None else pod.ready_changed_at
    if pod.started_at + settings.cpu_initialization_seconds > now:
        # Still initializing: ignore the sample unless the pod is ready and one full
        # metric window was collected since it became so.
        return not pod.ready or metrics_at < changed_at + window
    # Past it: ignore only a pod that is not ready and has never been ready.
    return not pod.ready and pod.started_at + settings.initial_readiness_delay_seconds > changed_at


def _utilization(
    metrics: Mapping[str, int], requests: Mapping[str, int], target_percent: float
) -> tuple[float, int] | None:
    """GetResourceUtilizationRatio: (ratio, integer percent), or None if nothing is requested."""
    used_total = requested_total = 0
    for name, used in metrics.items():
        request = requests.get(name)
        if request is None:
            continue  # a sample of a pod outside the selection counts nowhere here
        used_total += used
        requested_total += request
    if requested_total == 0:
        return None
    utilization = used_total * 100 // requested_total
    return utilization / target_percent, utilization


def resource_replicas(
    pods: Sequence[PodState],
    usage: Mapping[str, float],
    resource: Resource,
    target_percent: float,
    current_replicas: int,
    now: float,
    *,
    metrics_at: float | None = None,
    metric_window_seconds: float = 60.0,
    settings: HpaSettings = HpaSettings(),
) -> Calculation:
    """GetResourceReplicas: the replica count an HPA with this utilization target wants.

    `usage` maps pod names to their usage (cores or bytes); a pod of `pods`
    without an entry is missing, an entry without a pod is a sample of a pod the
    lister does not know (the HPA counts it in the final pod count only).
    `metrics_at` is when the usage was measured (default `now`) and
    `metric_window_seconds` the window it averages over (the rate window).
    """
    if target_percent <= 0 or not math.isfinite(target_percent):
        raise ValueError(f"target_percent must be a positive number, got {target_percent}")
    if not pods:
        return Calculation(current_replicas, CalculationReason.NO_PODS, None)
    measured_at = now if metrics_at is None else metrics_at
    ready_count, unready, missing, ignored = group_pods(
        pods, usage, resource, now, measured_at, metric_window_seconds, settings
    )
    counts = {
        "ready_pods": ready_count,
        "unready_pods": len(unready),
        "missing_pods": len(missing),
        "ignored_pods": len(ignored),
    }
    metrics = {
        name: milli(value)
        for name, value in usage.items()
        if name not in ignored and name not in unready
    }
    if not metrics:
        return Calculation(current_replicas, CalculationReason.NO_METRICS, None, **counts)
    if any(pod.missing_request for pod in pods):
        return Calculation(current_replicas, CalculationReason.MISSING_REQUEST, None, **counts)
    requests = {pod.name: milli(pod.request) for pod in pods}
    measured = _utilization(metrics, requests, target_percent)
    if measured is None:
        return Calculation(current_replicas, CalculationReason.NO_REQUESTS, None, **counts)
    ratio, utilization = measured

    def result(replicas: int, reason: CalculationReason) -> Calculation:
        return Calculation(replicas, reason, utilization, **counts)

    def direction(replicas: int) -> CalculationReason:
        if replicas > current_replicas:
            return CalculationReason.SCALE_UP
        if replicas < current_replicas:
            return CalculationReason.SCALE_DOWN
        return CalculationReason.UNCHANGED

    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if _within(ratio, settings):
            return result(current_replicas, CalculationReason.WITHIN_TOLERANCE)
        replicas = _ceil(ratio * ready_count)
        return result(replicas, direction(replicas))

    if missing:
        if ratio < 1.0:
            # Scale-down: a pod without usage counts as using all of its request
            # (or the target, if that is above 100 %).
            fallback = max(100, math.floor(target_percent))
            for name in missing:
                metrics[name] = requests[name] * fallback // 100
        elif ratio > 1.0:
            for name in missing:
                metrics[name] = 0
    if scale_up_with_unready:
        for name in unready:
            metrics[name] = 0

    remeasured = _utilization(metrics, requests, target_percent)
    assert remeasured is not None  # the requests only grew
    new_ratio, _ = remeasured
    if (
        _within(new_ratio, settings)
        or (ratio < 1.0 and new_ratio > 1.0)
        or (ratio > 1.0 and new_ratio < 1.0)
    ):
        return result(current_replicas, CalculationReason.REBALANCE_HOLDS)
    replicas = _ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and replicas > current_replicas) or (
        new_ratio > 1.0 and replicas < current_replicas
    ):
        return result(current_replicas, CalculationReason.REBALANCE_HOLDS)
    return result(replicas, direction(replicas))


# The HPA's replica counts are int32; a tiny target can make the ratio infinite.
MAX_REPLICAS = 2**31 - 1


def _ceil(value: float) -> int:
    return math.ceil(min(value, MAX_REPLICAS))


def _within(ratio: float, settings: HpaSettings) -> bool:
    """Tolerances.isWithin: too small a change to act on."""
    return 1.0 - settings.scale_down_tolerance <= ratio <= 1.0 + settings.scale_up_tolerance
