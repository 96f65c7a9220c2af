"""Serves the demand series bench_grpc.py queries, in a process of its own.

Kept out of the benchmark's client process so that Prometheus' scrapes do not
take the client's interpreter lock in the middle of a timed call.
"""

from __future__ import annotations

import argparse
import signal
import threading

from prometheus_client import CollectorRegistry, Gauge, start_http_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--services", type=int, default=10)
    args = parser.parse_args()
    registry = CollectorRegistry()
    gauge = Gauge("bench_requests_per_second", "demand", ["service"], registry=registry)
    for s in range(args.services):
        gauge.labels(service=f"svc{s}").set(100.0 + 10 * s)
    server, _ = start_http_server(args.port, addr="127.0.0.1", registry=registry)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.shutdown()


if __name__ == "__main__":
    main()
