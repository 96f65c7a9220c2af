"""From resource_query's series to the HPA's inputs (no Prometheus needed)."""

from __future__ import annotations

import math

import pytest

from scaler.engine import MAX_SIGNAL_REPLICAS, Observations, ResourceSample, decide
from scaler.policy import parse_policy
from scaler.replica_calculator import MAX_QUANTITY, PodPhase, PodState, milli
from scaler.sources.resources import (
    PodSeries,
    at_zero_query,
    pods_from_signals,
    resource_query,
)


def test_status_series_become_pod_states() -> None:
    signals = {
        "requested": {
            "shop/a": PodSeries(1.0),
            "shop/b": PodSeries(0.5),
            "shop/c": PodSeries(0.25),
            "shop/d": PodSeries(math.inf),  # not a request: the pod is not listed
        },
        "used": {"shop/a": PodSeries(0.4), "shop/b": PodSeries(-1.0), "shop/x": PodSeries(0.1)},
        "ready": {
            "shop/a": PodSeries(1.0, condition="true"),
            "shop/b": PodSeries(1.0, condition="unknown"),  # groupPods sets aside only false
            "shop/c": PodSeries(1.0, condition="false"),
        },
        "ready_time": {"shop/a": PodSeries(900.0)},
        "started": {"shop/a": PodSeries(800.0)},
        "created": {"shop/a": PodSeries(790.0), "shop/b": PodSeries(700.0)},
        "phase": {
            "shop/a": PodSeries(1.0, phase="Running"),
            "shop/c": PodSeries(1.0, phase="Terminating"),  # no phase Kubernetes has
        },
        "deleting": {"shop/b": PodSeries(1000.0)},
    }
    pods, usage = pods_from_signals(signals)
    assert pods == (
        PodState("shop/a", 1.0, True, 800.0, 900.0, PodPhase.RUNNING),
        PodState("shop/b", 0.5, True, 700.0, None, PodPhase.RUNNING, deleting=True),
        PodState("shop/c", 0.25, False, None, None, PodPhase.UNKNOWN),
    )
    # A negative usage is no measurement; a pod known by its usage only stays in.
    assert usage == {"shop/a": 0.4, "shop/x": 0.1}


def test_usage_or_requests_no_pod_can_have_are_no_measurement() -> None:
    # Found by fuzzing: a finite 1e306 became an infinity in milli-units, and the decision
    # an INTERNAL error. Past what a Kubernetes quantity holds (an int64 of milli-units) a
    # value is no measurement, as an infinite one is.
    pods, usage = pods_from_signals(
        {
            "requested": {"shop/a": PodSeries(1.0), "shop/b": PodSeries(1e306)},
            "used": {"shop/a": PodSeries(1e306), "shop/b": PodSeries(0.5)},
        }
    )
    assert [pod.name for pod in pods] == ["shop/a"]  # shop/b's request is no request
    assert usage == {"shop/b": 0.5}  # shop/a's usage is missing
    edge = MAX_QUANTITY
    pods, usage = pods_from_signals(
        {"requested": {"shop/a": PodSeries(edge)}, "used": {"shop/a": PodSeries(edge)}}
    )
    assert usage == {"shop/a": edge} and milli(edge) <= 2**63 + 2048  # a float's step there


def test_any_finite_usage_gives_a_bounded_decision() -> None:
    policy = parse_policy({"memoryUtilization": "70", "podSelector": 'pod="a"'})
    for used, requested in ((1e306, 1.0), (1.0, 1e306), (1e305, 1e-9), (1.7e308, 1e-300)):
        pods = (PodState("a", requested, True, -math.inf, -math.inf),)
        sample = ResourceSample(pods, {"a": used}, 0.0)
        decision = decide(policy, Observations(memory=sample), 0.0)
        assert 0 <= decision.desired_replicas <= MAX_SIGNAL_REPLICAS, (used, requested)
        assert math.isfinite(decision.hpa_value)


def test_without_status_series_every_pod_is_ready_and_long_started() -> None:
    pods, usage = pods_from_signals(
        {"requested": {"shop/a": PodSeries(1.0)}, "used": {"shop/a": PodSeries(0.3)}}
    )
    assert pods == (PodState("shop/a", 1.0, True, -math.inf, -math.inf),)
    assert usage == {"shop/a": 0.3}


def test_one_query_carries_every_signal() -> None:
    query = resource_query("memory", 'namespace="shop"')
    for signal in (
        "used",
        "requested",
        "unrequested",
        "ready",
        "ready_time",
        "started",
        "created",
        "phase",
        "deleting",
    ):
        assert f'"signal", "{signal}"' in query
    assert "container_memory_working_set_bytes" in query
    # Once per signal, twice in the containers that request nothing (info unless requests).
    assert query.count('namespace="shop"') == 10


def test_a_workload_at_zero_is_read_from_kedas_hpa() -> None:
    assert at_zero_query(("shop", "web-1")) == (
        "kube_horizontalpodautoscaler_status_current_replicas"
        '{namespace="shop",horizontalpodautoscaler="keda-hpa-web-1"} == 0'
    )
    query = resource_query("cpu", 'namespace="shop"', scaled_object=("shop", "web"))
    assert '"signal", "at_zero"' in query and "keda-hpa-web" in query
    assert '"at_zero"' not in resource_query("cpu", 'namespace="shop"')
    # Names reach PromQL: only Kubernetes names do.
    for bad in (("shop", 'web"} or vector(1) #'), ("Shop", "web"), ("shop", "")):
        with pytest.raises(ValueError, match="not a Kubernetes name"):
            at_zero_query(bad)
