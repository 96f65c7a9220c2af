"""The baseline of bench_grpc.py: the same proto and server set-up, constant answers.

What it costs is what gRPC itself costs; whatever tidescaler costs beyond it is
the engine's own work.
"""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures

import grpc

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc

SPEC = pb.GetMetricSpecResponse(
    metricSpecs=[pb.MetricSpec(metricName="tidescaler", targetSize=1, targetSizeFloat=1.0)]
)
VALUE = pb.GetMetricsResponse(
    metricValues=[pb.MetricValue(metricName="tidescaler", metricValue=3, metricValueFloat=3.0)]
)


class NullScaler(pb_grpc.ExternalScalerServicer):
    def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: object
    ) -> pb.GetMetricSpecResponse:
        return SPEC

    def GetMetrics(self, request: pb.GetMetricsRequest, context: object) -> pb.GetMetricsResponse:
        return VALUE

    def IsActive(self, request: pb.ScaledObjectRef, context: object) -> pb.IsActiveResponse:
        return pb.IsActiveResponse(result=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-workers", type=int, default=64)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.max_workers))
    pb_grpc.add_ExternalScalerServicer_to_server(NullScaler(), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(0)


if __name__ == "__main__":
    main()
