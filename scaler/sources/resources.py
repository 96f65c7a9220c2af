"""PromQL for the resource signals (cpuUtilization, memoryUtilization).

The HPA computes utilization from the pods' usage and their resource requests.
In a cluster watched by Prometheus those come from cAdvisor
(`container_cpu_usage_seconds_total`, `container_memory_working_set_bytes`) and
kube-state-metrics (`kube_pod_container_resource_requests`). The builders here
return one series per pod (labels `namespace`, `pod`) so that the caller can
keep only the pods that report both usage and requests, as the HPA counts only
pods it has metrics for; `resource_query` asks for both in one request, which
keeps them consistent and the read within one timeout. The user's
`podSelector` is pasted into PromQL, so it is validated against a strict
grammar first: it can select series, never add operators or functions.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

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


def resource_query(
    resource: ResourceName, pod_selector: str, *, cpu_rate_window_seconds: float = 120.0
) -> str:
    """Usage and requests per pod in one query, told apart by the label `signal`.

    Series with signal="used" are `usage_per_pod_query`'s, signal="requested"
    `requests_per_pod_query`'s.
    """
    used = usage_per_pod_query(
        resource, pod_selector, cpu_rate_window_seconds=cpu_rate_window_seconds
    )
    requested = requests_per_pod_query(resource, pod_selector)
    return (
        f'label_replace({used}, "signal", "used", "", "")'
        f' or label_replace({requested}, "signal", "requested", "", "")'
    )
