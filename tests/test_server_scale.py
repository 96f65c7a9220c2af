"""The service at scale: thousands of open streams, a hundred thousand names, a stuck backend.

Real gRPC over loopback; the hung Prometheus is a real listening socket that
accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from serve_process import stopped

from scaler.observe import Observer
from scaler.policy import parse_policy, policy_bytes
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import (
    RESOLVED_ENTRY_BYTES,
    RESOLVED_TRIGGERS,
    STOP_MARGIN_SECONDS,
    ScalerService,
    ServerConfig,
    Trigger,
    _ResolvedTriggers,
    start_server,
)
from scaler.sources.prometheus import PrometheusSource
from scaler.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[1]
ALWAYS = {"timezone": "UTC", "start": "0 0 1 1 *", "end": "* * * * *", "desiredReplicas": "3"}


def ref(name: str, metadata: dict[str, str] = ALWAYS) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace="shop", scalerMetadata=metadata)


def timed_ms(call: object) -> float:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return (time.perf_counter() - started) * 1000


@pytest.fixture
def hung_prometheus() -> Iterator[str]:
    """A port that accepts TCP connections (kernel backlog) and never says a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_two_thousand_open_streams_leave_unary_calls_and_health_fast() -> None:
    threads_before = threading.active_count()
    running = start_server(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None, push_interval_seconds=1.0)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            streams = [stub.StreamIsActive(ref(f"so-{i}"), timeout=60) for i in range(2000)]
            assert all(next(stream).result is True for stream in streams)
            # A stream is a coroutine, not a thread: the server's thread count does not
            # follow the streams (the two decision pools hold 2 x 32).
            assert threading.active_count() - threads_before < 100

            spec = [timed_ms(lambda: stub.GetMetricSpec(ref("web"), timeout=1)) for _ in range(30)]
            checks = [
                timed_ms(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1))
                for _ in range(30)
            ]
            value = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref("web")), timeout=1)
            assert value.metricValues[0].metricValue == 3
            assert statistics.median(spec) < 200, spec
            assert statistics.median(checks) < 200, checks

            # Shutdown ends every stream at once (OK), without waiting for the grace period.
            started = time.perf_counter()
            running.stop(30)
            assert time.perf_counter() - started < 10
            for stream in streams[:50]:
                assert list(stream) == []  # nothing more, then a clean end
                assert stream.code() is grpc.StatusCode.OK
    finally:
        running.stop(0)


def test_health_says_not_serving_while_draining(hung_prometheus: str) -> None:
    running = start_server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            prometheus_url=hung_prometheus,
            query_timeout_seconds=30.0,
        )
    )
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        metadata = {"query": "sum(up)", "threshold": "1"}
        # A call stuck on the backend keeps the server draining for the grace period.
        stuck = stub.GetMetrics.future(
            pb.GetMetricsRequest(scaledObjectRef=ref("web", metadata)), timeout=30
        )
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        statuses = iter(watch)
        assert next(statuses).status == health_pb2.HealthCheckResponse.SERVING
        stopper = threading.Thread(target=running.stop, args=(3.0,))
        started = time.perf_counter()
        stopper.start()
        draining = next(statuses).status
        stopper.join()
        elapsed = time.perf_counter() - started
    # A watcher hears NOT_SERVING as soon as shutdown begins (load balancers move on).
    assert draining == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError):
        stuck.result()
    # The stuck decision was abandoned at the end of the grace period, not waited for.
    assert elapsed < 3.0 + 2.0


def test_names_passing_through_keep_every_table_bounded_and_calls_flat() -> None:
    telemetry = Telemetry(idle_seconds=3600.0, max_scaledobjects=10_000)
    source = PrometheusSource()
    service = ScalerService(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None),
        Observer(source),
        telemetry=telemetry,
    )
    names = 30_000
    block = 5_000
    seconds: list[float] = []
    traced: list[int] = []  # Python memory in use after each block
    tracemalloc.start()
    try:
        started = time.perf_counter()
        for i in range(names):
            service.decision_for(ref(f"job-{i}"))
            if (i + 1) % block == 0:
                now = time.perf_counter()
                seconds.append(now - started)
                traced.append(tracemalloc.get_traced_memory()[0])
                started = time.perf_counter()
    finally:
        tracemalloc.stop()
        source.close()
    assert telemetry.tracked() == 10_000
    assert len(service._resolved) == RESOLVED_TRIGGERS
    # Once the bounds are reached (10,000 names), memory stays where it is.
    assert traced[-1] - traced[2] < 512 * 1024, traced
    # Past the bounds, a name costs what it cost before them (the old table scanned
    # itself on every insertion once full: about ten times slower by then).
    assert seconds[-1] < 2.0 * seconds[0], seconds


def test_the_trigger_table_forgets_what_was_not_asked_for_first() -> None:
    """Over its bound the table gives each trigger asked for since eviction last passed
    it over a second chance (the CLOCK algorithm): a ScaledObject KEDA keeps polling
    stays while one not asked for goes, oldest first."""
    table = _ResolvedTriggers(limit=3, max_bytes=1 << 20)
    policy = parse_policy(
        {"timezone": "UTC", "start": "0 8 * * *", "end": "0 20 * * *", "desiredReplicas": "2"}
    )
    options = Observer(PrometheusSource()).options_for(policy)

    def put(key: bytes) -> None:
        table.put(key, Trigger(policy, None, options, pb.ScaledObjectRef()))

    def kept() -> list[bytes]:
        return [key for key in (b"a", b"b", b"c", b"d", b"e", b"f") if key in table]

    for key in (b"a", b"b", b"c", b"d"):
        put(key)
    # Each was asked for when made: a whole pass clears the marks, then the oldest goes.
    assert kept() == [b"b", b"c", b"d"]
    assert table.get(b"b") is not None  # KEDA polls b again
    put(b"e")
    assert kept() == [b"b", b"d", b"e"]  # c, older than d and not asked for, went
    put(b"f")
    assert kept() == [b"b", b"e", b"f"]  # then d; b's mark was spent on its second chance
    put(b"a")
    assert kept() == [b"a", b"e", b"f"]
    # The byte bound holds as the count bound does.
    small = _ResolvedTriggers(
        limit=100, max_bytes=2 * (1000 + RESOLVED_ENTRY_BYTES + policy_bytes(policy))
    )
    for i in range(5):
        small.put(bytes([i]) * 1000, Trigger(policy, None, options, pb.ScaledObjectRef()))
        assert len(small) <= 2
    assert bytes([4]) * 1000 in small


def serve_process(*flags: str) -> tuple[int, subprocess.Popen[str]]:
    """`tidescaler serve` as operators run it, on a free loopback port, metrics off."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "scaler.cli", "serve", "--host", "127.0.0.1"),
            *("--port", str(port), "--metrics-port", "0", *flags),
        ],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    return port, process


def _scraped(metrics_port: int) -> dict[str, float]:
    """The served /metrics samples without labels other than `generation`, by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as page:
        families = text_string_to_metric_families(page.read().decode())
    return {
        sample.name + "".join(f"/{v}" for v in sample.labels.values()): sample.value
        for family in families
        for sample in family.samples
        if set(sample.labels) <= {"generation"}
    }


def test_fresh_decisions_never_set_off_a_full_collection() -> None:
    """A full (generation 2) collection walks the whole heap, holding every call on the
    event loop for tens of milliseconds. Under CPython's default thresholds, decisions
    for 15,000 ScaledObjects set off several; as served, none. The process's own
    metrics (memory, CPU, collections) are on /metrics beside the decisions'."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = int(probe.getsockname()[1])
    # Warnings only: a "decision changed" line per name would fill the unread stderr pipe.
    port, process = serve_process("--metrics-port", str(metrics_port), "--log-level", "warning")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            stub = pb_grpc.ExternalScalerStub(channel)
            stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref("warm")), timeout=5)
            before = _scraped(metrics_port)
            for first in range(0, 15_000, 500):
                calls = [
                    stub.GetMetrics.future(
                        pb.GetMetricsRequest(scaledObjectRef=ref(f"job-{i}")), timeout=30
                    )
                    for i in range(first, first + 500)
                ]
                assert all(c.result().metricValues[0].metricValue == 3 for c in calls)
            after = _scraped(metrics_port)
    finally:
        stopped(process)
    assert after["python_gc_collections_total/2"] == before["python_gc_collections_total/2"]
    assert after["python_gc_collections_total/0"] > before["python_gc_collections_total/0"]
    assert after["process_resident_memory_bytes"] > 10 * 2**20
    assert after["process_cpu_seconds_total"] > before["process_cpu_seconds_total"]


def test_sigterm_exits_within_grace_with_a_decision_stuck_on_a_hung_backend(
    hung_prometheus: str,
) -> None:
    port, process = serve_process(
        "--prometheus-url", hung_prometheus, "--query-timeout-seconds", "60",
        "--grace-seconds", "2", "--push-interval-seconds", "0.2",
    )  # fmt: skip
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            stub = pb_grpc.ExternalScalerStub(channel)
            metadata = {"query": "sum(up)", "threshold": "1"}
            stuck = [
                stub.GetMetrics.future(
                    pb.GetMetricsRequest(scaledObjectRef=ref(f"web-{i}", metadata)), timeout=60
                )
                for i in range(4)
            ]
            stream = stub.StreamIsActive(ref("stream", metadata), timeout=60)
            stub.GetMetricSpec(ref("web", metadata), timeout=3)  # the server is up and answering
            time.sleep(0.5)  # let the calls reach the hung backend (nothing to wait on)
            assert not any(call.done() for call in stuck)
            started = time.perf_counter()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=15)
            elapsed = time.perf_counter() - started
            stream.cancel()
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    assert elapsed < 2.0 + 1.5, elapsed
    stderr = process.stderr.read() if process.stderr else ""
    assert "Traceback" not in stderr


def test_calls_stuck_on_a_hung_backend_leave_health_and_other_calls_fast(
    hung_prometheus: str,
) -> None:
    running = start_server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            prometheus_url=hung_prometheus,
            query_timeout_seconds=30.0,
            max_workers=4,
        )
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            # More stuck calls than decision threads: the rest queue, none holds the loop.
            stuck = [
                stub.GetMetrics.future(
                    pb.GetMetricsRequest(
                        scaledObjectRef=ref(f"web-{i}", {"query": f"q{i}", "threshold": "1"})
                    ),
                    timeout=5,
                )
                for i in range(20)
            ]
            checks = [
                timed_ms(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1))
                for _ in range(20)
            ]
            value = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref("cron")), timeout=1)
            assert value.metricValues[0].metricValue == 3
            assert statistics.median(checks) < 50, checks
            assert not any(call.done() for call in stuck)
            for call in stuck:
                call.cancel()
    finally:
        running.stop(0)


class _AnswersOnceThenHangs(BaseHTTPRequestHandler):
    """A Prometheus that gives one good answer to the query under test (`sum(up)`), then
    never answers it again; any other query (serve's own check at start) is answered."""

    answered = threading.Event()
    hung = threading.Event()
    release = threading.Event()

    def do_GET(self) -> None:
        under_test = "sum(up)" in urllib.parse.unquote_plus(self.path)
        if under_test and self.answered.is_set():
            self.hung.set()
            self.release.wait(60)  # hung: holds the connection, says nothing
            return
        if under_test:
            self.answered.set()
        body = json.dumps(
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "5"]}]},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_sigterm_exits_within_grace_with_a_background_refresh_stuck_on_a_hung_backend() -> None:
    # The second read of the query finds its shared answer old and refreshes it in the
    # background: that refresh, not a call, is what hangs here.
    http = ThreadingHTTPServer(("127.0.0.1", 0), _AnswersOnceThenHangs)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    port, process = serve_process(
        "--prometheus-url", f"http://127.0.0.1:{http.server_address[1]}",
        "--query-timeout-seconds", "60", "--coalesce-seconds", "0.5", "--grace-seconds", "2",
    )  # fmt: skip
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            stub = pb_grpc.ExternalScalerStub(channel)
            request = pb.GetMetricsRequest(
                scaledObjectRef=ref("web", {"query": "sum(up)", "threshold": "1"})
            )
            assert stub.GetMetrics(request, timeout=5).metricValues[0].metricValue == 5
            time.sleep(0.7)  # past the coalescing interval: the clock is the condition
            refreshing = stub.GetMetrics.future(request, timeout=60)  # starts the hung refresh
            assert _AnswersOnceThenHangs.hung.wait(10)
            started = time.perf_counter()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=20)
            elapsed = time.perf_counter() - started
            refreshing.cancel()
    finally:
        if process.poll() is None:
            process.kill()
        _AnswersOnceThenHangs.release.set()
        http.shutdown()
        http.server_close()
    assert code == 0
    assert elapsed < 2.0 + 1.5, elapsed
    assert "Traceback" not in (process.stderr.read() if process.stderr else "")


def test_a_held_event_loop_is_not_responsive() -> None:
    """/healthz asks `responsive`: a loop that runs no callback answers no call, whatever
    the health service last said."""
    running = start_server(ServerConfig(host="127.0.0.1", port=0, metrics_port=None))
    try:
        assert running.responsive(1.0)
        running.loop.call_soon_threadsafe(time.sleep, 1.5)  # held, as by a stuck callback
        time.sleep(0.1)
        assert not running.responsive(0.3)
        time.sleep(1.5)
        assert running.responsive(1.0)
    finally:
        running.stop(0)
    assert not running.responsive(0.1)  # stopped: nothing answers


def test_stop_keeps_to_its_grace_when_the_event_loop_thread_is_held() -> None:
    # A loop thread starved of CPU or held by a callback must not hold the process past
    # the grace Kubernetes allows before SIGKILL: every wait of stop() is bounded.
    running = start_server(ServerConfig(host="127.0.0.1", port=0, metrics_port=None))
    running.loop.call_soon_threadsafe(time.sleep, 5)
    started = time.perf_counter()
    running.stop(0.2)
    elapsed = time.perf_counter() - started
    running.thread.join(10)  # the held callback ends; the loop stops as it was asked
    assert not running.thread.is_alive()
    assert elapsed < 0.2 + 2 * STOP_MARGIN_SECONDS + 0.5, elapsed
    # The graceful stop the held loop never ran is still pending on it: run it here, so
    # the gRPC server is shut down and no coroutine is left for the garbage collector
    # to warn about in whichever test runs next (a process would simply exit).
    pending = asyncio.all_tasks(running.loop)
    if pending:
        running.loop.run_until_complete(asyncio.wait(pending, timeout=5))
    running.loop.close()


def test_a_shutdown_that_overruns_its_grace_still_exits() -> None:
    # The last guarantee of `serve`: whatever the shutdown waits on, the process ends.
    script = (
        "import logging, sys, time\n"
        "from scaler.cli import _exit_past\n"
        "logging.basicConfig(stream=sys.stderr)\n"
        "_exit_past(time.monotonic() + 0.3, logging.getLogger('tidescaler'))\n"
        "time.sleep(30)  # a shutdown stuck for good\n"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=20,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 1
    assert "shutdown overran the grace period" in done.stderr
    assert elapsed < 10, elapsed
