"""PromQL for the resource signals (cpuUtilization, memoryUtilization).

The HPA computes utilization from the pods' usage and their resource requests,
and decides which pods count from their status (replica_calculator.go). In a
cluster watched by Prometheus those come from cAdvisor
(`container_cpu_usage_seconds_total`, `container_memory_working_set_bytes`) and
kube-state-metrics: `kube_pod_container_resource_requests` for the requests,
`kube_pod_status_ready`, `kube_pod_status_ready_time`, `kube_pod_start_time`
(else `kube_pod_created`), `kube_pod_status_phase` and
`kube_pod_deletion_timestamp` for the status, `kube_pod_container_info` for the
containers that request nothing (the HPA refuses to compute then), and
`kube_horizontalpodautoscaler_status_current_replicas` of the ScaledObject's HPA
to tell a workload at zero from pods not selected. `resource_query`
asks for all of
them in one request, one series per pod and kind told apart by the label
`signal`, which keeps them consistent, within one timeout and coalescable;
`pods_from_signals` turns the answer into the HPA's inputs. The user's
`podSelector` is pasted into PromQL, so it is validated against a strict
grammar first: it can select series, never add operators or functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from scaler.replica_calculator import MAX_QUANTITY, PodPhase, PodState

ResourceName = Literal["cpu", "memory"]
RESOURCE_NAMES: tuple[str, ...] = get_args(ResourceName)

# cAdvisor exports a pod-level cgroup row with container="" (the sum of the
# pod's containers) and, on Docker-based nodes, the pause container as
# container="POD"; counting either would inflate usage.
_REAL_CONTAINERS = 'container!="",container!="POD"'

_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_OPERATOR = r"=~|!~|!=|="
# A double-quoted PromQL string: any character but a quote, backslash or line
# break, or a backslash escape.
_VALUE = r'"(?:[^"\\\n]|\\.)*"'
_MATCHER = re.compile(rf"\s*(?P<label>{_LABEL})\s*(?P<op>{_OPERATOR})\s*(?P<value>{_VALUE})\s*")

SELECTOR_EXPECTED = (
    'a comma-separated list of label matchers such as namespace="shop",pod=~"web-.*" '
    "(operators = != =~ !~, values in double quotes)"
)


def validate_pod_selector(text: str) -> str | None:
    """Return what is wrong with a `podSelector`, or None if it is valid.

    The message does not name the key; the policy parser adds it.
    """
    if not text.strip():
        return f"is empty; expected {SELECTOR_EXPECTED}"
    position = 0
    while True:
        match = _MATCHER.match(text, position)
        if match is None:
            return f"is not valid at character {position + 1}; expected {SELECTOR_EXPECTED}"
        if match.group("label") == "__name__":
            return "must not match __name__: the metric names are chosen by the resource signal"
        position = match.end()
        if position == len(text):
            return None
        if text[position] != ",":
            return f"is not valid at character {position + 1}; expected {SELECTOR_EXPECTED}"
        position += 1


def _checked(pod_selector: str) -> str:
    problem = validate_pod_selector(pod_selector)
    if problem is not None:
        raise ValueError(f"podSelector {pod_selector!r} {problem}")
    return pod_selector.strip()


def _checked_resource(resource: str) -> None:
    if resource not in RESOURCE_NAMES:
        raise ValueError(f"resource {resource!r} is not one of {', '.join(RESOURCE_NAMES)}")


def usage_per_pod_query(
    resource: ResourceName, pod_selector: str, *, cpu_rate_window_seconds: float = 120.0
) -> str:
    """Current usage per pod: CPU in cores, memory in bytes (working set, as the HPA)."""
    _checked_resource(resource)
    selector = f"{_REAL_CONTAINERS},{_checked(pod_selector)}"
    if resource == "cpu":
        window = f"{max(round(cpu_rate_window_seconds), 1)}s"
        return (
            f"sum by (namespace, pod) "
            f"(rate(container_cpu_usage_seconds_total{{{selector}}}[{window}]))"
        )
    return f"sum by (namespace, pod) (container_memory_working_set_bytes{{{selector}}})"


def requests_per_pod_query(resource: ResourceName, pod_selector: str) -> str:
    """Resource requests per pod (sum over its containers): cores or bytes."""
    _checked_resource(resource)
    selector = f'resource="{resource}",{_REAL_CONTAINERS},{_checked(pod_selector)}'
    return f"sum by (namespace, pod) (kube_pod_container_resource_requests{{{selector}}})"


def unrequested_per_pod_query(resource: ResourceName, pod_selector: str) -> str:
    """Per pod, how many of its containers have no request for `resource`:
    kube-state-metrics exports no request series for them. (Sidecars declared as
    restartable init containers, which the HPA also counts, are not seen here.)"""
    _checked_resource(resource)
    selector = _checked(pod_selector)
    return (
        f"count by (namespace, pod) (kube_pod_container_info{{{selector}}} "
        f"unless on (namespace, pod, container) "
        f'kube_pod_container_resource_requests{{resource="{resource}",{selector}}})'
    )


def pod_status_queries(pod_selector: str) -> dict[str, str]:
    """kube-state-metrics' status of the selected pods, one query per `signal` label.

    ready: the Ready condition whose series is 1 (label `condition`: true, false
    or unknown); ready_time: when it last became true; started / created: start
    and creation times; phase: the current phase (label `phase`); deleting: the
    deletion timestamp, present only while a pod terminates.
    """
    selector = _checked(pod_selector)
    return {
        "ready": f"max by (namespace, pod, condition) (kube_pod_status_ready{{{selector}}} == 1)",
        "ready_time": f"max by (namespace, pod) (kube_pod_status_ready_time{{{selector}}})",
        "started": f"max by (namespace, pod) (kube_pod_start_time{{{selector}}})",
        "created": f"max by (namespace, pod) (kube_pod_created{{{selector}}})",
        "phase": f"max by (namespace, pod, phase) (kube_pod_status_phase{{{selector}}} == 1)",
        "deleting": f"max by (namespace, pod) (kube_pod_deletion_timestamp{{{selector}}})",
    }


# KEDA names the HPA of a ScaledObject keda-hpa-<name> (unless the ScaledObject sets
# spec.advanced.horizontalPodAutoscalerConfig.name); a Kubernetes name or namespace.
KEDA_HPA_PREFIX = "keda-hpa-"
_KUBERNETES_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")

ScaledObjectName = tuple[str, str]  # (namespace, name)


def at_zero_query(scaled_object: ScaledObjectName) -> str:
    """One series while the ScaledObject's HPA, as kube-state-metrics exports it, has 0
    current replicas: KEDA has scaled the workload to zero.

    An answer with no pod series is a workload at zero only with this: without it the
    pods may be there under names the podSelector no longer matches (a renamed
    Deployment), or kube-state-metrics not scraped, and reading no pod as zero would
    lower the replicas of a running workload."""
    namespace, name = scaled_object
    for text in scaled_object:
        if not _KUBERNETES_NAME.fullmatch(text):
            raise ValueError(f"{text[:40]!r} is not a Kubernetes name")
    return (
        "kube_horizontalpodautoscaler_status_current_replicas"
        f'{{namespace="{namespace}",horizontalpodautoscaler="{KEDA_HPA_PREFIX}{name}"}} == 0'
    )


def resource_query(
    resource: ResourceName,
    pod_selector: str,
    *,
    cpu_rate_window_seconds: float = 120.0,
    scaled_object: ScaledObjectName | None = None,
) -> str:
    """Usage, requests and pod status in one query, told apart by the label `signal`.

    Series with signal="used" are `usage_per_pod_query`'s, signal="requested"
    `requests_per_pod_query`'s, signal="at_zero" `at_zero_query`'s (with
    `scaled_object`), the others `pod_status_queries`'.
    """
    parts = {
        "used": usage_per_pod_query(
            resource, pod_selector, cpu_rate_window_seconds=cpu_rate_window_seconds
        ),
        "requested": requests_per_pod_query(resource, pod_selector),
        "unrequested": unrequested_per_pod_query(resource, pod_selector),
    } | pod_status_queries(pod_selector)
    if scaled_object is not None:
        parts["at_zero"] = at_zero_query(scaled_object)
    return " or ".join(
        f'label_replace({query}, "signal", "{signal}", "", "")' for signal, query in parts.items()
    )


@dataclass(frozen=True)
class PodSeries:
    """One series of `resource_query`'s answer: its value and the labels that matter."""

    value: float
    condition: str = ""  # of signal="ready"
    phase: str = ""  # of signal="phase"


# Pods by "namespace/pod", by signal.
Signals = Mapping[str, Mapping[str, PodSeries]]

_PHASES = {phase.value: phase for phase in PodPhase}


def pods_from_signals(signals: Signals) -> tuple[tuple[PodState, ...], dict[str, float]]:
    """The HPA's inputs from `resource_query`'s series: the pods and their usage.

    The pods are those with a request series, as the HPA lists the pods of its
    selector and needs each one's request, and those with a container that
    requests nothing (`missing_request`: the HPA's calculation fails for the
    selection). A pod without a Ready series has no Ready condition, one without
    a start time has not started (the HPA ignores both for CPU), unless
    kube-state-metrics' status series are missing altogether: then every pod
    counts as ready and long started, which is the plain arithmetic. A Ready
    condition whose status is unknown counts as ready, as in groupPods, which
    only sets aside pods whose condition is false. `kube_pod_status_ready_time`
    is the Ready condition's last transition; recent kube-state-metrics export
    it for ready pods only, so an unready pod without it counts as never ready,
    and a ready pod without it as ready since it started.
    """
    # An infinite, negative or absurdly large usage or request is no measurement (a
    # counter reset, a bad exporter): such a pod's usage is missing, and a pod without a
    # request unknown.
    requested = {
        name: series
        for name, series in signals.get("requested", {}).items()
        if 0 <= series.value <= MAX_QUANTITY
    }
    usage = {
        name: series.value
        for name, series in signals.get("used", {}).items()
        if 0 <= series.value <= MAX_QUANTITY
    }
    # A pod with a container that requests nothing: the HPA cannot compute (a pod whose
    # containers all request nothing has no request series, and is listed from here).
    unrequested = {name for name, series in signals.get("unrequested", {}).items() if series.value}
    status_known = any(signals.get(kind) for kind in ("ready", "started", "created", "phase"))
    pods: list[PodState] = []
    for name in sorted(requested.keys() | unrequested):
        request = requested.get(name)
        request_value = 0.0 if request is None else request.value
        missing_request = name in unrequested
        if not status_known:
            pods.append(
                PodState(
                    name, request_value, True, -math.inf, -math.inf, missing_request=missing_request
                )
            )
            continue
        ready = signals.get("ready", {}).get(name)
        started = signals.get("started", {}).get(name) or signals.get("created", {}).get(name)
        ready_time = signals.get("ready_time", {}).get(name)
        phase = signals.get("phase", {}).get(name)
        pods.append(
            PodState(
                name,
                request_value,
                ready=None if ready is None else ready.condition != "false",
                started_at=None if started is None else started.value,
                ready_changed_at=None if ready_time is None else ready_time.value,
                phase=PodPhase.RUNNING
                if phase is None
                else _PHASES.get(phase.phase, PodPhase.UNKNOWN),
                deleting=name in signals.get("deleting", {}),
                missing_request=missing_request,
            )
        )
    return tuple(pods), usage
