"""What Kubernetes Events cost an RPC: GetMetrics latency with Events off, on, and on with
the API server hanging.

Three servers in one process, each on its own port: one without Events, one
writing Events to a healthy API (the stand-in of tests/kube_api_stand_in.py),
one writing to an API that holds every request. KEDA's calls (GetMetrics of a
cron policy, every other one with a new problem in its metadata, one after the
other on one connection) go to the three in interleaved rounds, so machine
noise hits all alike. Every call enqueues work for the Event writer; every
other call an Event to write. Reported: p50 and p99 per server, and what the
writer did (created, dropped because the queue was full).

    python benchmarks/bench_kube_events.py [--rounds 5] [--calls 400]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from kube_api_stand_in import KubeApiStandIn, scaled_object  # noqa: E402

from scaler.kube.api import KubeApi, load_api_client  # noqa: E402
from scaler.kube.events import EventRecorder  # noqa: E402
from scaler.proto import externalscaler_pb2 as pb  # noqa: E402
from scaler.proto import externalscaler_pb2_grpc as pb_grpc  # noqa: E402
from scaler.server import ServerConfig, start_server  # noqa: E402

WINDOW = {"timezone": "UTC", "start": "0 0 1 1 *", "end": "* * * * *", "desiredReplicas": "3"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()

    healthy, hanging = KubeApiStandIn().start(), KubeApiStandIn().start()
    for stand_in in (healthy, hanging):
        stand_in.scaledobjects[("shop", "web")] = scaled_object("shop", "web", [])
    hanging.hang()
    directory = Path(tempfile.mkdtemp())
    recorders = {}
    for label, stand_in in (("on", healthy), ("on, API hanging", hanging)):
        where = directory / label.replace(" ", "_").replace(",", "")
        where.mkdir()
        api = KubeApi(load_api_client(str(stand_in.kubeconfig(where))), timeout_seconds=5.0)
        recorders[label] = EventRecorder(api)
    config = ServerConfig(host="127.0.0.1", port=0, metrics_port=None)
    servers = {
        "off": start_server(config),
        **{label: start_server(config, events=r) for label, r in recorders.items()},
    }
    channels = {k: grpc.insecure_channel(f"127.0.0.1:{s.port}") for k, s in servers.items()}
    stubs = {
        k: pb_grpc.ExternalScalerStub(c)  # type: ignore[no-untyped-call]
        for k, c in channels.items()
    }
    samples: dict[str, list[float]] = {k: [] for k in servers}
    serial = itertools.count()
    try:
        for _ in range(args.rounds):
            for label, stub in stubs.items():
                for i in range(args.calls):
                    # Every other call has a new problem in its metadata: a PolicyInvalid
                    # Event each time, so the writer has work (and, on a hanging API, a
                    # queue that fills up).
                    metadata = WINDOW if i % 2 else {"query": "up", "threshold": f"x{next(serial)}"}
                    ref = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=metadata)
                    request = pb.GetMetricsRequest(scaledObjectRef=ref)
                    began = time.perf_counter()
                    try:
                        stub.GetMetrics(request, timeout=3)
                    except grpc.RpcError as err:
                        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, err
                    samples[label].append(time.perf_counter() - began)
    finally:
        hanging.release()
        for channel in channels.values():
            channel.close()
        for server in servers.values():
            server.stop(0)
        for recorder in recorders.values():
            recorder.close()
        healthy.close()
        hanging.close()
    print(f"GetMetrics, {args.rounds} rounds x {args.calls} calls per server")
    print(f"{'events':<18}{'p50 ms':>9}{'p99 ms':>9}")
    for label, values in samples.items():
        p50, p99 = np.percentile(np.array(values) * 1000, [50, 99])
        print(f"{label:<18}{p50:>9.3f}{p99:>9.3f}")
    for label, recorder in recorders.items():
        c = recorder.counts
        print(
            f"writer ({label}): created {c.written}, updated {c.updated}, "
            f"spam-filtered {c.spam_filtered}, dropped (queue full) {c.dropped}"
        )
    base = statistics.median(samples["off"])
    worst = statistics.median(samples["on, API hanging"])
    print(f"median with the API hanging / without Events: {worst / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
