"""The baseline of bench_grpc.py: the same proto and server set-up, constant answers.

What it costs is what gRPC itself costs; whatever tidescaler costs beyond it is
the engine's own work. It runs on grpc.aio like `tidescaler serve`, with the
same server options and garbage-collector settings, so a ratio against it
measures tidescaler's work and not a difference in server technology.
StreamIsActive sends `true` once and holds the stream open, as tidescaler's does
between changes.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import SERVER_OPTIONS, settle_garbage_collector

SPEC = pb.GetMetricSpecResponse(
    metricSpecs=[pb.MetricSpec(metricName="tidescaler", targetSize=1, targetSizeFloat=1.0)]
)
VALUE = pb.GetMetricsResponse(
    metricValues=[pb.MetricValue(metricName="tidescaler", metricValue=3, metricValueFloat=3.0)]
)


class NullScaler(pb_grpc.ExternalScalerServicer):
    async def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: object
    ) -> pb.GetMetricSpecResponse:
        return SPEC

    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: object
    ) -> pb.GetMetricsResponse:
        return VALUE

    async def IsActive(self, request: pb.ScaledObjectRef, context: object) -> pb.IsActiveResponse:
        return pb.IsActiveResponse(result=True)

    async def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: object
    ) -> AsyncIterator[pb.IsActiveResponse]:
        yield pb.IsActiveResponse(result=True)
        await asyncio.Event().wait()  # until the client goes or the server stops


async def serve(port: int) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    pb_grpc.add_ExternalScalerServicer_to_server(NullScaler(), server)  # type: ignore[no-untyped-call]
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    settle_garbage_collector()  # as `tidescaler serve` does once it runs
    done = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
    await done.wait()
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
