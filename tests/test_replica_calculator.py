"""The HPA's Resource-metric arithmetic, checked against Kubernetes' own test cases.

Every case of pkg/controller/podautoscaler/replica_calculator_test.go that
calls GetResourceReplicas without a `container` (the container-metric
variants select one container, which the pod-level signals here do not) is
ported with its upstream name, inputs and expected replica count and
utilization (newer Kubernetes gathers most of them in the table of
TestReplicaCalcResourceScale, same inputs), as are the resource cases of
TestReplicaCalcConfigurableTolerance (per-direction tolerances) and the
TestGroupPods table. The upstream harness builds pods
with two containers, each requesting `requests[i]` and using `levels[i]`
millicores; a pod's request and usage are the sums. Pods without an explicit
start time start at Go's zero time, every Ready condition last changed at the
zero time, and the metrics carry the zero timestamp with a one-minute window;
the tests run with a 2 min CPU initialization period and a 10 s initial
readiness delay. Hot pods start now, cool pods 3 min ago.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.replica_calculator import (
    CalculationReason,
    HpaSettings,
    PodPhase,
    PodState,
    current_pod_count,
    group_pods,
    milli,
    resource_replicas,
)

NOW = 1_700_000_000.0
GO_ZERO_TIME = -62_135_596_800.0  # time.Time{} in Unix seconds
HOT = NOW  # hotCPUCreationTime()
COOL = NOW - 180.0  # coolCPUCreationTime()
UPSTREAM_SETTINGS = HpaSettings(
    cpu_initialization_seconds=120.0, initial_readiness_delay_seconds=10.0
)
CONTAINERS_PER_POD = 2

R, P, F = PodPhase.RUNNING, PodPhase.PENDING, PodPhase.FAILED
T, N = True, False  # Ready condition status True / False


@dataclass
class Upstream:
    """One replicaCalcTestCase with a resource (CPU) metric."""

    current: int
    expected: int
    target: float
    requests: list[float]  # cores per container
    levels: list[int]  # millicores per container, for pods 0..len-1
    utilization: int | None
    readiness: list[bool] = field(default_factory=list)
    start: list[float] = field(default_factory=list)
    phase: list[PodPhase] = field(default_factory=list)
    deleting: list[bool] = field(default_factory=list)
    usage_pod_names: list[str] = field(default_factory=list)
    reason: CalculationReason | None = None
    tolerances: tuple[float, float] = (0.1, 0.1)  # Tolerances{scaleDown, scaleUp}

    def pods(self) -> list[PodState]:
        # Failed pods are not counted in currentReplicas; the harness lists them anyway.
        count = max(self.current, len(self.phase))
        return [
            PodState(
                name=f"test-pod-{i}",
                request=CONTAINERS_PER_POD * self.requests[i] if i < len(self.requests) else 0.0,
                ready=self.readiness[i] if i < len(self.readiness) else True,
                started_at=self.start[i] if self.start else GO_ZERO_TIME,
                ready_changed_at=GO_ZERO_TIME,
                phase=self.phase[i] if self.phase else R,
                deleting=self.deleting[i] if self.deleting else False,
            )
            for i in range(count)
        ]

    def usage(self) -> dict[str, float]:
        names = [
            self.usage_pod_names[i] if i < len(self.usage_pod_names) else f"test-pod-{i}"
            for i in range(len(self.levels))
        ]
        return {
            name: CONTAINERS_PER_POD * level / 1000.0
            for name, level in zip(names, self.levels, strict=True)
        }


def _computed_tolerance_case(margin: float) -> Upstream:
    """TestReplicaCalcComputedToleranceAlgImplementation, with Go's arithmetic."""
    start_pods = 10
    total_used = start_pods * 150
    total_requested = 2 * total_used
    requested_to_used = float(total_requested // total_used)
    per_pod_requested = total_requested // start_pods
    target = abs(1 / (requested_to_used * (1 - 0.1))) + margin
    percent = int(target * 100)
    used_ratio = total_used / (total_requested * target)
    final_pods = math.ceil(used_ratio * start_pods)
    offsets = [100, -100, 10, -10, 2, -2, 1, -1, 0, 0]
    return Upstream(
        current=start_pods,
        expected=final_pods if margin == 0.01 else start_pods,
        target=percent,
        requests=[(per_pod_requested + offset) / 1000 for offset in offsets],
        levels=[total_used // 10] * 10,
        utilization=total_used * 100 // total_requested,
    )


ONE = [1.0] * 7
CASES: dict[str, Upstream] = {
    "TestReplicaCalcDisjointResourcesMetrics": Upstream(
        1,
        1,
        100,
        [1.0],
        [100],
        None,
        usage_pod_names=["an-older-pod-name"],
        reason=CalculationReason.NO_REQUESTS,
    ),
    "TestReplicaCalcScaleUp": Upstream(3, 5, 30, ONE[:3], [300, 500, 700], 50),
    "TestReplicaCalcScaleUpUnreadyLessScale": Upstream(
        3, 4, 30, ONE[:3], [300, 500, 700], 60, readiness=[N, T, T]
    ),
    "TestReplicaCalcScaleUpHotCpuLessScale": Upstream(
        3, 4, 30, ONE[:3], [300, 500, 700], 60, start=[HOT, COOL, COOL]
    ),
    "TestReplicaCalcScaleUpUnreadyNoScale": Upstream(
        3, 3, 30, ONE[:3], [400, 500, 700], 40, readiness=[T, N, N]
    ),
    "TestReplicaCalcScaleHotCpuNoScale": Upstream(
        3, 3, 30, ONE[:3], [400, 500, 700], 40, readiness=[T, N, N], start=[COOL, HOT, HOT]
    ),
    "TestReplicaCalcScaleUpIgnoresFailedPods": Upstream(
        2, 4, 30, ONE[:4], [500, 700], 60, readiness=[T, T, N, N], phase=[R, R, F, F]
    ),
    "TestReplicaCalcScaleUpIgnoresDeletionPods": Upstream(
        2,
        4,
        30,
        ONE[:4],
        [500, 700],
        60,
        readiness=[T, T, N, N],
        phase=[R, R, R, R],
        deleting=[False, False, True, True],
    ),
    "TestReplicaCalcScaleDown": Upstream(5, 3, 50, ONE[:5], [100, 300, 500, 250, 250], 28),
    "TestReplicaCalcScaleDownExcludeUnreadyPods": Upstream(
        5, 2, 50, ONE[:5], [100, 300, 500, 250, 250], 30, readiness=[T, T, T, N, N]
    ),
    "TestReplicaCalcScaleDownExcludeUnscheduledPods": Upstream(
        5, 1, 50, ONE[:5], [100], 10, readiness=[T, N, N, N, N], phase=[R, P, P, P, P]
    ),
    "TestReplicaCalcScaleDownIgnoreHotCpuPods": Upstream(
        5, 2, 50, ONE[:5], [100, 300, 500, 250, 250], 30, start=[COOL, COOL, COOL, HOT, HOT]
    ),
    "TestReplicaCalcScaleDownIgnoresFailedPods": Upstream(
        5,
        3,
        50,
        ONE[:7],
        [100, 300, 500, 250, 250],
        28,
        readiness=[T, T, T, T, T, N, N],
        phase=[R, R, R, R, R, F, F],
    ),
    "TestReplicaCalcScaleDownIgnoresDeletionPods": Upstream(
        5,
        3,
        50,
        ONE[:7],
        [100, 300, 500, 250, 250],
        28,
        readiness=[T, T, T, T, T, N, N],
        phase=[R] * 7,
        deleting=[False] * 5 + [True, True],
    ),
    "TestReplicaCalcTolerance": Upstream(
        3,
        3,
        100,
        [0.9, 1.0, 1.1],
        [1010, 1030, 1020],
        102,
        reason=CalculationReason.WITHIN_TOLERANCE,
    ),
    # TestReplicaCalcConfigurableTolerance's cases (Kubernetes >= 1.33).
    "TestReplicaCalcConfigurableTolerance/Outside of a 0% tolerance": Upstream(
        3, 4, 100, [0.9, 1.0, 1.1], [909, 1010, 1111], 101, tolerances=(0.0, 0.0)
    ),
    "TestReplicaCalcConfigurableTolerance/Within a 200% scale-up tolerance": Upstream(
        3, 3, 100, [0.9, 1.0, 1.1], [1890, 1910, 1900], 190, tolerances=(0.1, 2.0)
    ),
    "TestReplicaCalcConfigurableTolerance/Outside 8% scale-up tolerance": Upstream(
        3, 4, 100, [0.9, 1.0, 1.1], [1100, 1080, 1090], 109, tolerances=(2.0, 0.08)
    ),
    "TestReplicaCalcConfigurableTolerance/Within a 36% scale-down tolerance": Upstream(
        3, 3, 100, [0.9, 1.0, 1.1], [660, 640, 650], 65, tolerances=(0.36, 0.1)
    ),
    "TestReplicaCalcConfigurableTolerance/Outside a 34% scale-down tolerance": Upstream(
        3, 2, 100, [0.9, 1.0, 1.1], [660, 640, 650], 65, tolerances=(0.34, 0.1)
    ),
    "TestReplicaCalcSuperfluousMetrics": Upstream(
        4, 24, 100, ONE[:4], [4000, 9500, 3000, 7000, 3200, 2000], 587
    ),
    "TestReplicaCalcMissingMetrics": Upstream(4, 3, 100, ONE[:4], [400, 95], 24),
    # Upstream the metrics client fails ("no metrics returned from resource metrics
    # API") and the HPA keeps the count; here the calculation says so.
    "TestReplicaCalcEmptyMetrics": Upstream(
        4, 4, 100, ONE[:4], [], None, reason=CalculationReason.NO_METRICS
    ),
    "TestReplicaCalcMissingMetricsNoChangeEq": Upstream(2, 2, 100, ONE[:2], [1000], 100),
    "TestReplicaCalcMissingMetricsNoChangeGt": Upstream(2, 2, 100, ONE[:2], [1900], 190),
    "TestReplicaCalcMissingMetricsNoChangeLt": Upstream(2, 2, 100, ONE[:2], [600], 60),
    "TestReplicaCalcMissingMetricsUnreadyChange": Upstream(
        3, 3, 50, ONE[:3], [100, 450], 45, readiness=[N, T, T]
    ),
    "TestReplicaCalcMissingMetricsHotCpuNoChange": Upstream(
        3, 3, 50, ONE[:3], [100, 450], 45, start=[HOT, COOL, COOL]
    ),
    "TestReplicaCalcMissingMetricsUnreadyScaleUp": Upstream(
        3, 4, 50, ONE[:3], [100, 2000], 200, readiness=[N, T, T]
    ),
    "TestReplicaCalcMissingMetricsHotCpuScaleUp": Upstream(
        3, 4, 50, ONE[:3], [100, 2000], 200, readiness=[N, T, T], start=[HOT, COOL, COOL]
    ),
    "TestReplicaCalcMissingMetricsUnreadyScaleDown": Upstream(
        4, 3, 50, ONE[:4], [100, 100, 100], 10, readiness=[N, T, T, T]
    ),
    "TestReplicaCalcMissingMetricsScaleDownTargetOver100": Upstream(
        4, 2, 300, [1.0, 1.0, 2.0, 2.0], [200, 100, 100], 6, readiness=[N, T, T, T]
    ),
    "TestReplicaCalcDuringRollingUpdateWithMaxSurge": Upstream(
        2,
        2,
        50,
        ONE[:3],
        [100, 100],
        10,
        phase=[R, R, R],
        reason=CalculationReason.REBALANCE_HOLDS,
    ),
    "TestReplicaCalcComputedToleranceAlgImplementation-scale": _computed_tolerance_case(0.01),
    "TestReplicaCalcComputedToleranceAlgImplementation-hold": _computed_tolerance_case(0.004),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_upstream_replica_calculator_case(case: Upstream) -> None:
    calculation = resource_replicas(
        case.pods(),
        case.usage(),
        "cpu",
        case.target,
        case.current,
        NOW,
        metrics_at=GO_ZERO_TIME,
        metric_window_seconds=60.0,
        settings=replace(
            UPSTREAM_SETTINGS,
            scale_down_tolerance=case.tolerances[0],
            scale_up_tolerance=case.tolerances[1],
        ),
    )
    assert calculation.replicas == case.expected
    assert calculation.utilization_percent == case.utilization
    if case.reason is not None:
        assert calculation.reason is case.reason


def test_the_computed_tolerance_case_scales_then_holds() -> None:
    # The two halves of the upstream test really are on either side of the tolerance.
    assert CASES["TestReplicaCalcComputedToleranceAlgImplementation-scale"].expected == 9
    assert CASES["TestReplicaCalcComputedToleranceAlgImplementation-hold"].expected == 10


# -- TestGroupPods -----------------------------------------------------------------------


@dataclass
class Grouping:
    pods: list[PodState]
    usage: dict[str, float]
    resource: str
    ready: int
    unready: set[str]
    missing: set[str]
    ignored: set[str]
    metrics_at: float = GO_ZERO_TIME
    window: float = 0.0


S = PodPhase.SUCCEEDED
GROUPINGS: dict[str, Grouping] = {
    "void": Grouping([], {}, "cpu", 0, set(), set(), set()),
    "count in a ready pod - memory": Grouping(
        [PodState("bentham", 1.0, ready=None, phase=S)],
        {"bentham": 0.001},
        "memory",
        1,
        set(),
        set(),
        set(),
        metrics_at=NOW,
        window=60,
    ),
    "unready a pod without ready condition - CPU": Grouping(
        [PodState("lucretius", 1.0, ready=None, started_at=NOW, phase=S)],
        {"lucretius": 0.001},
        "cpu",
        0,
        {"lucretius"},
        set(),
        set(),
    ),
    "count in a ready pod with fresh metrics during initialization period - CPU": Grouping(
        [PodState("bentham", 1.0, True, NOW - 60, NOW - 30, phase=S)],
        {"bentham": 0.001},
        "cpu",
        1,
        set(),
        set(),
        set(),
        metrics_at=NOW,
        window=30,
    ),
    "unready a ready pod without fresh metrics during initialization period - CPU": Grouping(
        [PodState("bentham", 1.0, True, NOW - 60, NOW - 30, phase=S)],
        {"bentham": 0.001},
        "cpu",
        0,
        {"bentham"},
        set(),
        set(),
        metrics_at=NOW,
        window=60,
    ),
    "unready an unready pod during initialization period - CPU": Grouping(
        [PodState("lucretius", 1.0, False, NOW - 600, NOW - 594, phase=S)],
        {"lucretius": 0.001},
        "cpu",
        0,
        {"lucretius"},
        set(),
        set(),
    ),
    "count in a ready pod without fresh metrics after initialization period - CPU": Grouping(
        [PodState("bentham", 1.0, True, NOW - 180, NOW - 180, phase=S)],
        {"bentham": 0.001},
        "cpu",
        1,
        set(),
        set(),
        set(),
        metrics_at=NOW - 120,
        window=60,
    ),
    "count in an unready pod that was ready after initialization period - CPU": Grouping(
        [PodState("lucretius", 1.0, False, NOW - 600, NOW - 540, phase=S)],
        {"lucretius": 0.001},
        "cpu",
        1,
        set(),
        set(),
        set(),
    ),
    "unready pod that has never been ready after initialization period - CPU": Grouping(
        # Upstream's name notwithstanding, a transition exactly at start + delay counts in.
        [PodState("lucretius", 1.0, False, NOW - 600, NOW - 590, phase=S)],
        {"lucretius": 0.001},
        "cpu",
        1,
        set(),
        set(),
        set(),
    ),
    "a missing pod": Grouping(
        [PodState("epicurus", 1.0, ready=None, started_at=NOW - 180, phase=S)],
        {},
        "cpu",
        0,
        set(),
        {"epicurus"},
        set(),
    ),
    "several pods": Grouping(
        [
            PodState("lucretius", 1.0, ready=None, started_at=NOW, phase=S),
            PodState("niccolo", 1.0, True, NOW - 180, NOW - 180, phase=S),
            PodState("epicurus", 1.0, ready=None, started_at=NOW - 180, phase=S),
        ],
        {"lucretius": 0.001, "niccolo": 0.001},
        "cpu",
        1,
        {"lucretius"},
        {"epicurus"},
        set(),
    ),
    "pending pods are unreadied": Grouping(
        [PodState("unscheduled", 1.0, ready=None, phase=P)],
        {},
        "cpu",
        0,
        {"unscheduled"},
        set(),
        set(),
    ),
    "ignore pods with deletion timestamps": Grouping(
        [PodState("deleted", 1.0, ready=None, phase=P, deleting=True)],
        {"deleted": 0.001},
        "cpu",
        0,
        set(),
        set(),
        {"deleted"},
    ),
    "ignore pods in a failed state": Grouping(
        [PodState("failed", 1.0, ready=None, phase=F)],
        {"failed": 0.001},
        "cpu",
        0,
        set(),
        set(),
        {"failed"},
    ),
}


@pytest.mark.parametrize("case", list(GROUPINGS.values()), ids=list(GROUPINGS))
def test_upstream_group_pods_case(case: Grouping) -> None:
    grouped = group_pods(
        case.pods,
        case.usage,
        case.resource,  # type: ignore[arg-type]
        NOW,
        case.metrics_at,
        case.window,
        UPSTREAM_SETTINGS,
    )
    assert grouped == (case.ready, case.unready, case.missing, case.ignored)


# -- the two cases the HPA and the old arithmetic disagreed on ----------------------------


def _pods(count: int, request: float = 1.0) -> list[PodState]:
    return [PodState(f"web-{i}", request, True, NOW - 3600, NOW - 3500) for i in range(count)]


def test_half_the_pods_without_usage_keep_the_count() -> None:
    # 10 pods, 5 report half their request, target 70 %: 50/70 = 0.71 says scale
    # down, but the missing pods counted at 100 % give (2.5 + 5) / 10 = 75 % -> 1.07,
    # inside the tolerance: the HPA keeps 10 where ceil(2.5 / 0.7) said 4.
    calculation = resource_replicas(
        _pods(10), {f"web-{i}": 0.5 for i in range(5)}, "cpu", 70, 10, NOW
    )
    assert calculation.replicas == 10
    assert calculation.reason is CalculationReason.REBALANCE_HOLDS


def test_71_percent_of_a_70_percent_target_is_within_tolerance() -> None:
    calculation = resource_replicas(_pods(1), {"web-0": 0.71}, "cpu", 70, 1, NOW)
    assert (calculation.replicas, calculation.utilization_percent) == (1, 71)
    assert calculation.reason is CalculationReason.WITHIN_TOLERANCE


def test_a_container_missing_its_request_keeps_the_count() -> None:
    # calculatePodRequests' "container missing requests" case: any container of any
    # listed pod without a request fails the calculation, the HPA keeps its count,
    # even where the pods that do request say scale up (160 % of an 80 % target).
    pods = _pods(2, request=0.5)
    pods[1] = replace(pods[1], missing_request=True)
    calculation = resource_replicas(pods, {"web-0": 0.8, "web-1": 0.8}, "cpu", 80, 2, NOW)
    assert (calculation.replicas, calculation.reason) == (2, CalculationReason.MISSING_REQUEST)
    assert calculation.utilization_percent is None
    # Without usage for any counted pod the HPA fails earlier, on the metrics.
    nothing = resource_replicas(pods, {}, "cpu", 80, 2, NOW)
    assert nothing.reason is CalculationReason.NO_METRICS


def test_memory_ignores_readiness_and_the_initialization_period() -> None:
    pods = [PodState("web-0", 2**30, ready=False, started_at=NOW, ready_changed_at=NOW)]
    calculation = resource_replicas(pods, {"web-0": 2**30}, "memory", 50, 1, NOW)
    assert (calculation.replicas, calculation.ready_pods) == (2, 1)
    cpu = resource_replicas(pods, {"web-0": 1.0}, "cpu", 50, 1, NOW)
    assert (cpu.replicas, cpu.reason) == (1, CalculationReason.NO_METRICS)


def test_current_count_is_the_active_pods_and_those_known_by_usage_only() -> None:
    pods = [
        PodState("a", 1.0),
        PodState("b", 1.0, phase=PodPhase.PENDING),
        PodState("c", 1.0, phase=PodPhase.FAILED),
        PodState("d", 1.0, phase=PodPhase.SUCCEEDED),
        PodState("e", 1.0, deleting=True),
    ]
    assert current_pod_count(pods, {"a": 0.1, "c": 0.1, "f": 0.1}) == 3  # a, b and f


def test_no_pods_keeps_the_count() -> None:
    calculation = resource_replicas([], {}, "cpu", 50, 0, NOW)
    assert (calculation.replicas, calculation.reason) == (0, CalculationReason.NO_PODS)


@pytest.mark.parametrize("target", [0.0, -5.0, math.inf, math.nan])
def test_a_target_that_is_not_positive_is_refused(target: float) -> None:
    with pytest.raises(ValueError, match="target_percent"):
        resource_replicas(_pods(1), {"web-0": 0.5}, "cpu", target, 1, NOW)


def test_a_tiny_target_gives_the_largest_count_not_an_overflow() -> None:
    calculation = resource_replicas(_pods(3), {"web-0": 0.5}, "cpu", 1e-320, 3, NOW)
    assert calculation.replicas == 2**31 - 1


def test_milli_rounds_up_like_a_quantity() -> None:
    assert (milli(0.71), milli(0.0001), milli(0.0011), milli(2**30)) == (710, 1, 2, 2**30 * 1000)


# -- properties ----------------------------------------------------------------------------

usages = st.lists(st.one_of(st.none(), st.floats(0, 8, allow_nan=False)), min_size=1, max_size=12)


@given(usages, st.integers(10, 300), st.floats(0, 4), st.integers(0, 11))
def test_more_usage_never_fewer_replicas(
    levels: list[float | None], target: int, extra: float, which: int
) -> None:
    pods = _pods(len(levels))
    usage = {pod.name: level for pod, level in zip(pods, levels, strict=True) if level is not None}
    more = dict(usage)
    name = pods[which % len(pods)].name
    if name in more:
        more[name] += extra
    before = resource_replicas(pods, usage, "cpu", target, len(pods), NOW)
    after = resource_replicas(pods, more, "cpu", target, len(pods), NOW)
    assert after.replicas >= before.replicas


@given(usages, st.integers(10, 300), st.integers(0, 11))
def test_missing_usage_never_lowers_replicas_below_the_count(
    levels: list[float | None], target: int, which: int
) -> None:
    # A pod whose usage vanishes counts as 100 % on a scale-down: with every pod
    # at or above the target, losing one pod's sample cannot bring a scale-down.
    pods = _pods(len(levels))
    busy = {
        pod.name: target / 100.0 * (1 + (level or 0))
        for pod, level in zip(pods, levels, strict=True)
    }
    del busy[pods[which % len(pods)].name]
    if not busy:
        return
    calculation = resource_replicas(pods, busy, "cpu", target, len(pods), NOW)
    assert calculation.replicas >= len(pods)
