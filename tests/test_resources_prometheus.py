"""Resource signals end to end: a real Prometheus, backfilled with cAdvisor and
kube-state-metrics series, read by the server over gRPC.

The series carry the labels and shapes the kubelet's cAdvisor endpoint and
kube-state-metrics v2 export (see prometheus_server.cadvisor_pod and
kube_state_metrics_pod; the pod status series below follow kube-state-metrics'
pod store: one `kube_pod_status_ready` series per condition status and one
`kube_pod_status_phase` series per phase, 1 for the current one,
`kube_pod_status_ready_time` only while the pod is ready,
`kube_pod_deletion_timestamp` only while it terminates). The clock of the
server and of its Prometheus source stands at a past instant, so that the
backfill is what every query sees and the series can be made to vanish by
moving the clock past their end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from prometheus_server import (
    PrometheusServer,
    Series,
    cadvisor_pod,
    grid,
    kube_state_metrics_hpa,
    kube_state_metrics_pod,
    openmetrics,
)

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.replica_calculator import PodPhase, PodState
from scaler.server import RunningServer, ServerConfig, start_server
from scaler.sources.prometheus import BackendErrorKind, PrometheusSource

pytestmark = pytest.mark.prometheus

# A past hour on the 15 s grid: away from the live head, and rate() windows are exact.
AT = math.floor(time.time() / 3600) * 3600 - 2 * 3600.0
TIMES = grid(AT - 1800, AT, 15)
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


def pod_status(
    namespace: str,
    pod: str,
    times: list[float],
    *,
    ready: bool = True,
    ready_since: float = AT - 3500,
    started: float = AT - 3600,
    phase: str = "Running",
    deleting_since: float | None = None,
) -> list[Series]:
    """kube-state-metrics' status series of one pod."""
    base = {
        "job": "kube-state-metrics",
        "instance": "10.0.0.9:8080",
        "namespace": namespace,
        "pod": pod,
        "uid": f"uid-{namespace}-{pod}",
    }

    def constant(name: str, value: float, **labels: str) -> Series:
        return Series(name, base | labels, [(t, value) for t in times])

    out = [
        constant("kube_pod_status_ready", float(ready), condition="true"),
        constant("kube_pod_status_ready", float(not ready), condition="false"),
        constant("kube_pod_status_ready", 0.0, condition="unknown"),
        constant("kube_pod_start_time", started),
        constant("kube_pod_created", started - 5),
    ]
    out += [constant("kube_pod_status_phase", float(p == phase), phase=p) for p in PHASES]
    if ready:
        out.append(constant("kube_pod_status_ready_time", ready_since))
    if deleting_since is not None:
        out.append(constant("kube_pod_deletion_timestamp", deleting_since))
    return out


def workload_pod(
    namespace: str,
    pod: str,
    *,
    cores: float | None,
    request: float = 1.0,
    usage_times: list[float] = TIMES,
    **status: object,
) -> list[Series]:
    """Requests, status and (unless `cores` is None) cAdvisor usage of one pod."""
    series = kube_state_metrics_pod(namespace, pod, {"app": (request, 2**30)}, TIMES)
    series += pod_status(namespace, pod, TIMES, **status)  # type: ignore[arg-type]
    if cores is not None:
        series += cadvisor_pod(namespace, pod, {"app": (cores, 2**29)}, usage_times)
    return series


def backfill() -> list[Series]:
    series: list[Series] = []
    # 10 pods requesting a core each; only 5 report usage, half a core each.
    for i in range(10):
        series += workload_pod("fleet", f"web-{i}", cores=0.5 if i < 5 else None)
    # One pod at 71 % of its request.
    series += workload_pod("edge", "web-0", cores=0.71)
    # A scale-up with pods that must not count as they are: web-2 started 20 s ago
    # and is not ready yet (0 % on a scale-up), web-3 is Pending (likewise), web-4
    # Failed and web-5 terminating (both ignored, though they report usage).
    series += workload_pod("warmup", "web-0", cores=2.0)
    series += workload_pod("warmup", "web-1", cores=2.0)
    series += workload_pod(
        "warmup",
        "web-2",
        cores=2.0,
        usage_times=grid(AT - 30, AT, 15),
        ready=False,
        started=AT - 20,
    )
    series += workload_pod("warmup", "web-3", cores=None, ready=False, phase="Pending")
    series += workload_pod("warmup", "web-4", cores=2.0, ready=False, phase="Failed")
    series += workload_pod("warmup", "web-5", cores=2.0, deleting_since=AT - 10)
    # A workload just woken from zero: its one pod exists (Pending) and has no usage yet.
    series += workload_pod("waking", "web-0", cores=None, ready=False, phase="Pending")
    # Two pods at 80 % of the app's request, each with a sidecar that requests nothing
    # and uses as much again: the HPA refuses to compute ("missing request for cpu in
    # container sidecar"), where dividing all usage by the app's request alone would
    # read 160 % and double the pods.
    for i in range(2):
        pod = f"web-{i}"
        series += kube_state_metrics_pod(
            "sidecars", pod, {"app": (0.5, 2**30)}, TIMES, without_requests=["sidecar"]
        )
        series += pod_status("sidecars", pod, TIMES)
        series += cadvisor_pod(
            "sidecars", pod, {"app": (0.4, 2**29), "sidecar": (0.4, 2**28)}, TIMES
        )
    # KEDA's HPAs as kube-state-metrics exports them: shop/asleep's workload is at zero;
    # shop/renamed's runs 3 pods the podSelector no longer matches (a renamed
    # Deployment); shop/unknown's HPA is not exported (kube-state-metrics not scraped).
    series.append(kube_state_metrics_hpa("shop", "keda-hpa-asleep", 0, TIMES))
    series.append(kube_state_metrics_hpa("shop", "keda-hpa-renamed", 3, TIMES))
    return series


@pytest.fixture(scope="module")
def seeded(
    prometheus_binaries: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("resources"))
    server.backfill(openmetrics(backfill()))
    server.start()
    yield server
    server.kill()


@dataclass
class Clock:
    now: float = AT

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def serve(
    seeded: PrometheusServer,
) -> Iterator[Callable[..., tuple[pb_grpc.ExternalScalerStub, Clock]]]:
    running: list[tuple[RunningServer, grpc.Channel]] = []

    def make(**config: float) -> tuple[pb_grpc.ExternalScalerStub, Clock]:
        clock = Clock()
        server = start_server(
            ServerConfig(
                host="127.0.0.1",
                port=0,
                metrics_port=None,
                prometheus_url=seeded.url,
                **config,  # type: ignore[arg-type]
            ),
            source=PrometheusSource(coalesce_seconds=0.0, clock=clock),
            clock=clock,
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        running.append((server, channel))
        return pb_grpc.ExternalScalerStub(channel), clock

    yield make
    for server, channel in running:
        channel.close()
        server.stop(0)


def metrics(stub: pb_grpc.ExternalScalerStub, metadata: dict[str, str], name: str = "web") -> int:
    ref = pb.ScaledObjectRef(name=name, namespace="shop", scalerMetadata=metadata)
    response = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref), timeout=5)
    return int(response.metricValues[0].metricValue)


def cpu(namespace: str, target: int) -> dict[str, str]:
    return {"cpuUtilization": str(target), "podSelector": f'namespace="{namespace}"'}


def test_pods_without_usage_do_not_lower_replicas(serve: Callable[..., tuple]) -> None:
    stub, _ = serve()
    # ceil(2.5 cores / (70 % x 1 core)) would be 4; the HPA counts the 5 silent pods
    # at 100 % on a scale-down: 75 % / 70 % is within its tolerance, 10 stay.
    assert metrics(stub, cpu("fleet", 70)) == 10


def test_71_percent_of_a_70_percent_target_keeps_one_pod(serve: Callable[..., tuple]) -> None:
    stub, _ = serve()
    assert metrics(stub, cpu("edge", 70)) == 1  # ceil(0.71 / 0.7) would be 2
    assert metrics(stub, cpu("edge", 50)) == 2  # 142 %: outside the tolerance


def test_unready_pending_failed_and_terminating_pods_on_a_scale_up(
    serve: Callable[..., tuple],
) -> None:
    stub, _ = serve()
    # web-0 and web-1 at 200 % of a 50 % target; web-2 (unready) and web-3 (Pending)
    # count at 0 %: 4 cores / 4 cores requested = 100 % -> ceil(2 x 4) = 8. Counting
    # web-2's usage as it is would say more, and so would counting web-5's (12).
    assert metrics(stub, cpu("warmup", 50)) == 8


def test_a_container_without_a_request_keeps_the_count_as_the_hpa_does(
    serve: Callable[..., tuple],
) -> None:
    stub, _ = serve()
    # Two pods running: the count stays, whatever the target.
    assert metrics(stub, cpu("sidecars", 50)) == 2
    assert metrics(stub, cpu("sidecars", 10)) == 2


def test_pod_status_read_from_kube_state_metrics(seeded: PrometheusServer) -> None:
    with PrometheusSource(coalesce_seconds=0.0, clock=lambda: AT) as source:
        reading = source.read_resource(seeded.url, 'namespace="warmup"', "cpu")
    assert reading.error is None and reading.observed_at == AT
    assert reading.window_seconds == 120.0
    assert reading.pods == (
        PodState("warmup/web-0", 1.0, True, AT - 3600, AT - 3500),
        PodState("warmup/web-1", 1.0, True, AT - 3600, AT - 3500),
        PodState("warmup/web-2", 1.0, False, AT - 20, None),
        PodState("warmup/web-3", 1.0, False, AT - 3600, None, PodPhase.PENDING),
        PodState("warmup/web-4", 1.0, False, AT - 3600, None, PodPhase.FAILED),
        PodState("warmup/web-5", 1.0, True, AT - 3600, AT - 3500, deleting=True),
    )
    assert reading.usage is not None
    assert sorted(reading.usage) == [f"warmup/web-{i}" for i in (0, 1, 2, 4, 5)]
    # web-2's counter starts 30 s before the query: rate() over 120 s extrapolates
    # only half a scrape interval before the first sample, 60 x 37.5 / 30 / 120 cores.
    expected = {name: 2.0 for name in reading.usage} | {"warmup/web-2": 0.625}
    assert reading.usage == pytest.approx(expected, rel=1e-9)


def test_vanished_series_hold_the_last_reading_until_stale(
    serve: Callable[..., tuple],
) -> None:
    stub, clock = serve(staleness_seconds=600.0)
    assert metrics(stub, cpu("fleet", 70)) == 10
    # Past the end of every series (and Prometheus' 5 min lookback): the query is
    # empty. The last reading is held, not dropped ...
    clock.now = AT + 400
    assert metrics(stub, cpu("fleet", 70)) == 10
    # ... until it is older than the staleness bound: then KEDA's fallback decides.
    clock.now = AT + 601
    with pytest.raises(grpc.RpcError) as raised:
        metrics(stub, cpu("fleet", 70))
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "no cpu usage series" in (raised.value.details() or "")


def test_a_workload_at_zero_pods_wakes_and_scales_by_its_query_before_cpu_is_measured(
    serve: Callable[..., tuple],
) -> None:
    """The README's own trigger (query, cpuUtilization, minReplicaCount 0): at zero pods
    nothing has usage, yet the query decides activity and GetMetrics answers (KEDA asks
    IsActive only after a GetMetrics that answers: an UNAVAILABLE one kept the workload at
    zero for good); once KEDA has started one pod, the CPU signal holds that pod until it
    is measured and the query scales up past it."""
    stub, _ = serve()
    awake = {"query": "vector(500)", "threshold": "100", "activationThreshold": "1"}
    ref = pb.ScaledObjectRef(
        name="asleep", namespace="shop", scalerMetadata=awake | cpu("nobody", 70)
    )
    # No pod, and KEDA's HPA counts none: nothing for CPU to add.
    assert metrics(stub, awake | cpu("nobody", 70), name="asleep") == 5
    assert stub.IsActive(ref, timeout=5).result is True
    # The one pod KEDA started, not measured yet: the query's 5 win, and with a demand
    # below one pod's worth the pod is kept (the HPA never scales down on a metric it
    # cannot compute).
    assert metrics(stub, awake | cpu("waking", 70), name="asleep") == 5
    assert metrics(stub, awake | {"query": "vector(0)"} | cpu("waking", 70), name="asleep") == 1
    idle = awake | cpu("nobody", 70) | {"query": "vector(0)"}
    quiet = pb.ScaledObjectRef(name="asleep", namespace="shop", scalerMetadata=idle)
    assert metrics(stub, idle, name="asleep") == 0
    assert stub.IsActive(quiet, timeout=5).result is False


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("renamed", "the HPA counts 3 pods: they run under names the selector misses"),
        ("unknown", "no HPA series: kube-state-metrics not scraped, or a custom HPA name"),
    ],
)
def test_no_pod_selected_is_not_zero_unless_kedas_hpa_says_so(
    serve: Callable[..., tuple], name: str, why: str
) -> None:
    """A podSelector that stopped matching (the Deployment renamed) must not read as a
    workload at zero: CPU would recommend 0 and lower a running workload's replicas.
    Without KEDA's HPA at 0 the count is not given (KEDA's fallback acts)."""
    stub, _ = serve()
    with pytest.raises(grpc.RpcError) as raised:
        metrics(stub, cpu("nobody", 70) | {"query": "vector(150)", "threshold": "100"}, name)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE, why
    assert "no cpu usage series" in (raised.value.details() or "")


def test_an_empty_answer_is_an_error_of_the_reading(seeded: PrometheusServer) -> None:
    with PrometheusSource(coalesce_seconds=0.0, clock=lambda: AT + 400) as source:
        reading = source.read_resource(seeded.url, 'namespace="fleet"', "cpu")
    assert (reading.pods, reading.usage, reading.observed_at) == (None, None, None)
    assert reading.error is not None and reading.error.kind is BackendErrorKind.NULL_VALUE


def test_callers_sharing_an_answer_share_its_reading(seeded: PrometheusServer) -> None:
    # A thousand ScaledObjects on one workload read one answer: it is turned into pods
    # once (about 40 ms for 1,000 pods), not once per call.
    with PrometheusSource(coalesce_seconds=60.0, clock=lambda: AT) as source:
        first = source.read_resource(seeded.url, 'namespace="fleet"', "cpu")
        second = source.read_resource(seeded.url, 'namespace="fleet"', "cpu")
    assert first.error is None and second is first
