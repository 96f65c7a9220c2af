"""CPU per GetMetrics call inside the servicer, without the network.

Builds the `ScalerService` that `tidescaler serve` builds (telemetry, forecast
service, Prometheus source, allow-lists) against a real Prometheus scraping the
same demand series as bench_grpc.py, warms it with the same 1,000 distinct
ScaledObjects, then runs the GetMetrics coroutine directly on each request's
wire bytes, with whatever gRPC would do around it: tidescaler's methods decode
their request and answer serialized bytes themselves; the null servicer's
request is parsed and its answer serialized as its generated registration does.
So the difference is tidescaler's own Python work per call. The calls come
round to each object within a second, so most reuse the decision of the call
before; a second measurement turns reuse off (every call decided afresh, as
the first of KEDA's GetMetrics and IsActive is). CPU time (process_time) is the
figure: it is robust to other load on the machine, unlike wall-clock ratios.

    python benchmarks/profile_serving.py [--calls 20000] [--profile 25]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_grpc import scaled_objects, start_demand  # noqa: E402
from null_server import NullScaler  # noqa: E402

from scaler import server  # noqa: E402
from scaler.backend_access import BackendAccess  # noqa: E402
from scaler.forecast_service import ForecastService  # noqa: E402
from scaler.observe import Observer  # noqa: E402
from scaler.proto import externalscaler_pb2 as pb  # noqa: E402
from scaler.server import ScalerService, ServerConfig  # noqa: E402
from scaler.sources.prometheus import PrometheusSource  # noqa: E402
from scaler.telemetry import Telemetry  # noqa: E402
from scaler.workers import DaemonThreadPool  # noqa: E402

# A call as gRPC makes it: the request's wire bytes in, the answer's bytes out.
Handler = Callable[[bytes, Any], Awaitable[bytes]]


class _Context:
    """What a warm, valid call uses of grpc.aio's context: nothing (abort raises)."""

    async def abort(self, code: object, details: str) -> None:
        raise RuntimeError(f"call aborted: {code} {details}")


def build_service(prometheus_url: str) -> tuple[ScalerService, PrometheusSource]:
    """The servicer as `tidescaler serve --prometheus-url URL` builds it (no Kubernetes)."""
    config = ServerConfig(prometheus_url=prometheus_url, metrics_port=None)
    source = PrometheusSource(
        timeout_seconds=config.query_timeout_seconds,
        coalesce_seconds=config.coalesce_seconds,
        answer_budget_seconds=config.answer_budget_seconds,
    )
    forecasts = ForecastService(
        source, refit_seconds=300.0, polling_interval_seconds=config.polling_interval_seconds
    )
    access = BackendAccess(
        allowed_query_parameters=config.allowed_query_parameters,
        allowed_custom_headers=config.allowed_custom_headers,
        allow_unsafe_ssl=config.allow_unsafe_ssl,
    )
    pool = DaemonThreadPool(4, "decide")
    service = ScalerService(
        config,
        Observer(source, forecasts, access),
        telemetry=Telemetry(),
        calls=pool,
        streams=pool,
    )
    return service, source


def null_get_metrics() -> Handler:
    """The null servicer's GetMetrics with the generated registration's (de)serializers."""
    null, parse = NullScaler(), pb.GetMetricsRequest.FromString

    async def call(data: bytes, context: Any) -> bytes:
        answer: bytes = (await null.GetMetrics(parse(data), context)).SerializeToString()
        return answer

    return call


async def run_calls(handler: Handler, wire: list[bytes], calls: int) -> None:
    context = _Context()
    n = len(wire)
    for i in range(calls):
        await handler(wire[i % n], context)


def cpu_per_call(
    loop: asyncio.AbstractEventLoop, handler: Handler, wire: list[bytes], calls: int
) -> float:
    """Microseconds of this process' CPU per call."""
    started = time.process_time()
    loop.run_until_complete(run_calls(handler, wire, calls))
    return (time.process_time() - started) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, help="print the top N of a cProfile")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tidescaler-profile-"))
    exporter, prometheus = start_demand(workdir)
    try:
        service, source = build_service(prometheus.url)
        requests = scaled_objects(args.objects)
        wire = [request.SerializeToString() for request in requests]
        loop = asyncio.new_event_loop()
        for data in wire:  # warm: policies parsed, every query answered once
            answer = loop.run_until_complete(service.GetMetrics(data, _Context()))
            assert pb.GetMetricsResponse.FromString(answer).metricValues[0].metricValue >= 1
        null = null_get_metrics()
        ours, afresh, theirs = [], [], []
        reuse_seconds = server.REUSE_SECONDS
        for _ in range(args.repeats):
            ours.append(cpu_per_call(loop, service.GetMetrics, wire, args.calls))
            server.REUSE_SECONDS = 0.0  # every decision holds for its own instant only
            time.sleep(reuse_seconds)  # the decisions held until now have run out
            afresh.append(cpu_per_call(loop, service.GetMetrics, wire, args.calls))
            server.REUSE_SECONDS = reuse_seconds
            theirs.append(cpu_per_call(loop, null, wire, args.calls))
        ours_us, theirs_us = statistics.median(ours), statistics.median(theirs)
        afresh_us = statistics.median(afresh)
        print(
            f"GetMetrics, {args.calls} calls x {args.repeats} (median), CPU per call: "
            f"tidescaler {ours_us:.1f} us (each decided afresh: {afresh_us:.1f} us), "
            f"null servicer {theirs_us:.1f} us, difference {ours_us - theirs_us:.1f} us"
        )
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            loop.run_until_complete(run_calls(service.GetMetrics, wire, args.calls))
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(args.profile)
        loop.close()
        source.close()
    finally:
        prometheus.stop()
        exporter.terminate()
        exporter.wait(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
