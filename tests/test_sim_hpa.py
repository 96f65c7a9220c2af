"""The HPA model reproduces the Kubernetes rules: tolerance, stabilization, rate policies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from scaler.sim import hpa
from scaler.sim.cluster import ClusterModel, MetricSignal, run_cluster
from scaler.sim.hpa import HpaReason, ScaleEvent, ScalingPolicy, ScalingRules


@pytest.mark.parametrize(
    ("value", "target", "current", "expected"),
    [
        (105.0, 10.0, 10, 10),  # ratio 1.05: within tolerance
        (109.0, 10.0, 10, 10),  # ratio 1.09: just inside
        (111.0, 10.0, 10, 12),  # outside: ceil(value / target)
        (91.0, 10.0, 10, 10),
        (89.0, 10.0, 10, 9),
        (108.0, 1.0, 100, 100),  # a wish of 108 at 100 replicas does nothing
        (25.0, 1.0, 0, 25),
        (0.0, 10.0, 4, 0),
    ],
    ids=["within", "edge", "up", "within-down", "down", "108-of-100", "from-zero", "zero"],
)
def test_average_value_tolerance(value: float, target: float, current: int, expected: int) -> None:
    assert hpa.average_value_replicas(value, target, current, 0.1) == expected


@given(
    st.integers(0, 10**6),
    st.one_of(
        st.floats(-3e-9, 3e-9),  # float noise around a whole number
        st.floats(0.0, 1.0, exclude_max=True),
    ),
)
@example(3, 4.440892098500626e-16)  # 3.0000000000000004
@example(3, 2e-9)
@example(3, -1e-10)
@example(0, 0.0)
def test_the_fast_ceiling_is_the_rounded_one(whole: int, offset: float) -> None:
    ratio = whole + offset
    if ratio < 0:
        ratio = -ratio
    assert hpa.ceil_ratio(ratio) == math.ceil(round(ratio, 9))


@pytest.mark.parametrize(
    ("utilization", "ready", "unready", "current", "expected"),
    [
        (90.0, 10, 0, 10, 13),  # ceil(90 / 70 x 10)
        (72.0, 10, 0, 10, 10),  # within tolerance
        (35.0, 10, 0, 10, 5),
        (90.0, 10, 5, 15, 15),  # unready at 0 %: 0.857 flips to scale-down -> no change
        (150.0, 10, 5, 15, 22),  # ceil(150 x 10 / (70 x 15) x 15)
        (35.0, 10, 5, 15, 5),  # scale-down ignores unready pods
    ],
    ids=["up", "tolerance", "down", "unready-flips", "unready-up", "unready-down"],
)
def test_resource_utilization(
    utilization: float, ready: int, unready: int, current: int, expected: int
) -> None:
    assert (
        hpa.resource_utilization_replicas(utilization, 70.0, ready, unready, current, 0.1)
        == expected
    )


@pytest.mark.parametrize(
    ("history", "now", "current", "desired", "expected"),
    [
        ([(0.0, 10), (100.0, 8), (200.0, 6)], 290.0, 10, 5, 10),  # highest in 300 s wins
        ([(0.0, 10), (100.0, 8), (200.0, 6)], 350.0, 10, 5, 8),  # t=0 left the window
        ([(0.0, 10)], 300.0, 10, 5, 5),  # exactly 300 s old: out (After(cutoff))
        ([(0.0, 3)], 10.0, 3, 9, 9),  # scale-up: no stabilization by default
    ],
    ids=["held", "window-moves", "window-edge", "up-immediate"],
)
def test_stabilization_window(
    history: list[tuple[float, int]], now: float, current: int, desired: int, expected: int
) -> None:
    assert hpa.stabilize(history, now, current, desired) == expected


@pytest.mark.parametrize(
    ("current", "events", "expected"),
    [
        (10, [], 20),  # 100 % beats 4 pods
        (2, [], 6),  # 4 pods beat 100 %
        (0, [], 4),
        (14, [ScaleEvent(90.0, 4)], 20),  # period start was 10: max(10 + 4, 2 x 10)
        (14, [ScaleEvent(85.0, 4)], 28),  # the event is exactly 15 s old: not counted
    ],
    ids=["percent", "pods", "zero", "in-period", "period-edge"],
)
def test_scale_up_limit(current: int, events: list[ScaleEvent], expected: int) -> None:
    assert hpa.scale_up_limit(current, events, 100.0, hpa.DEFAULT_BEHAVIOR.scale_up) == expected


@pytest.mark.parametrize(
    ("desired", "current", "min_r", "max_r", "expected", "reason"),
    [
        (50, 10, 1, 100, 20, HpaReason.SCALE_UP_LIMIT),
        (50, 10, 1, 15, 15, HpaReason.TOO_MANY_REPLICAS),
        (0, 10, 1, 100, 1, HpaReason.TOO_FEW_REPLICAS),  # 100 % per 15 s: down to the minimum
        (12, 10, 1, 100, 12, HpaReason.DESIRED_WITHIN_RANGE),
    ],
    ids=["up-limit", "max", "min", "within"],
)
def test_rate_limits_and_bounds(
    desired: int, current: int, min_r: int, max_r: int, expected: int, reason: HpaReason
) -> None:
    assert hpa.apply_rate_limits(desired, current, min_r, max_r, [], 100.0) == (expected, reason)


def test_custom_scale_down_policy_removes_one_pod_per_minute() -> None:
    behavior = hpa.Behavior(
        scale_up=hpa.DEFAULT_BEHAVIOR.scale_up,
        scale_down=ScalingRules(0.0, (ScalingPolicy("Pods", 1, 60.0),)),
    )
    assert hpa.apply_rate_limits(3, 10, 1, 100, [], 100.0, behavior) == (
        9,
        HpaReason.SCALE_DOWN_LIMIT,
    )
    recent = [ScaleEvent(70.0, -1)]
    assert hpa.apply_rate_limits(3, 9, 1, 100, recent, 100.0, behavior)[0] == 9


def test_normalize_holds_a_scale_down_while_a_higher_wish_is_in_the_window() -> None:
    assert hpa.normalize([(90.0, 40)], [], 100.0, 10, 5, 1, 100) == (10, HpaReason.STABILIZED)
    # Once the window has passed, the scale-down goes through at once (100 % per 15 s).
    assert hpa.normalize([(90.0, 40)], [], 400.0, 10, 5, 1, 100) == (
        5,
        HpaReason.DESIRED_WITHIN_RANGE,
    )


def _reference_loop(values: np.ndarray, model: ClusterModel, start: float) -> list[int]:
    """The cluster's replica count by the plain functions (no deques, no inlining)."""
    current, out = 1, []
    recommendations: list[tuple[float, int]] = []
    events: list[ScaleEvent] = []
    for n, value in enumerate(values):
        now = start + n * model.hpa_sync_seconds
        wish = hpa.average_value_replicas(float(value), 10.0, current, model.tolerance)
        final, _ = hpa.normalize(
            recommendations, events, now, current, wish, model.hpa_min_replicas, model.max_replicas
        )
        recommendations.append((now, wish))
        if final != current:
            events.append(ScaleEvent(now, final - current))
        current = final
        out.append(current)
    return out


def test_cluster_loop_equals_the_plain_hpa_functions() -> None:
    rng = np.random.default_rng(5)
    model = ClusterModel(polling_interval_seconds=15.0, min_replicas=1, max_replicas=60)
    values = np.abs(np.cumsum(rng.normal(0, 30, 2000))) + rng.uniform(0, 40, 2000)
    signal = MetricSignal(value=values, active=np.ones(len(values), dtype=bool), target=10.0)
    replicas = run_cluster(signal, model, 0.0, len(values))
    assert replicas.provisioned.tolist() == _reference_loop(values, model, 0.0)
