"""`tidescaler serve` through real gRPC, against a null servicer, in three parts.

1. Latency and throughput: 1,000 distinct ScaledObjects (a cron window + a
   Prometheus query each, warm cache) call GetMetrics the way KEDA does: one
   shared connection, one call after the other; then with several client
   threads. The same calls go to `null_server.py` (same proto, same grpc.aio
   server set-up, constant answers) in interleaved rounds of the same run, so
   machine noise hits both alike. A third server, `empty_handler_serve.py`
   (tidescaler's process with GetMetrics answering a constant), splits the gap:
   the process around a call against the decision itself. Then KEDA's own cycle:
   GetMetricSpec, GetMetrics and IsActive for one ScaledObject after another,
   10,000 of them, so that each comes round again seconds later (as KEDA's
   polls do: its GetMetrics is decided afresh, its IsActive reuses that decision),
   with several client threads, against the null servicer.
2. Streams: 5,000 StreamIsActive streams held open (as KEDA holds one per
   external-push trigger) while GetMetricSpec, GetMetrics, IsActive and the
   health check are timed, on both servers.
3. Churn: 100,000 distinct ScaledObject names pass through tidescaler over
   time; calls/s and the server's resident memory when 1,000, 10,000 and
   100,000 names have been seen.

    python benchmarks/bench_grpc.py [--rounds 9] [--objects 1000] [--streams 5000]
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from prometheus_server import PrometheusServer, free_port  # noqa: E402

from scaler.proto import externalscaler_pb2 as pb  # noqa: E402
from scaler.proto import externalscaler_pb2_grpc as pb_grpc  # noqa: E402

SERVICES = 10
T = TypeVar("T")


def metadata_of(i: int) -> dict[str, str]:
    return {
        "scalerAddress": "tidescaler:9090",
        "timezone": "Europe/Berlin",
        "start": f"{i % 60} 8 * * 1-5",
        "end": f"{i % 60} 20 * * 1-5",
        "desiredReplicas": str(1 + i % 5),
        "query": f'sum(bench_requests_per_second{{service="svc{i % SERVICES}"}})',
        "threshold": "10",
        "maxReplicas": "100",
    }


def scaled_objects(count: int) -> list[pb.GetMetricsRequest]:
    return [
        pb.GetMetricsRequest(
            scaledObjectRef=pb.ScaledObjectRef(
                name=f"app-{i}", namespace=f"team-{i % 20}", scalerMetadata=metadata_of(i)
            ),
            metricName="tidescaler",
        )
        for i in range(count)
    ]


def scaler_stub(channel: grpc.Channel) -> pb_grpc.ExternalScalerStub:
    return pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]


def wait_ready(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=30)


def sequential_latencies(port: int, requests: list[pb.GetMetricsRequest]) -> np.ndarray:
    """Seconds per GetMetrics call, one after the other over one connection (KEDA's way)."""
    out = np.empty(len(requests))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = scaler_stub(channel).GetMetrics
        for i, request in enumerate(requests):
            started = time.perf_counter()
            call(request, timeout=3)
            out[i] = time.perf_counter() - started
    return out


def run_clients(workers: list[threading.Thread]) -> float:
    """Start the client threads together and wait for all: the seconds they took."""
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started


# What one client sends for an object, and how many calls that is.
Send = Callable[[pb_grpc.ExternalScalerStub, pb.GetMetricsRequest], int]


def get_metrics(stub: pb_grpc.ExternalScalerStub, request: pb.GetMetricsRequest) -> int:
    stub.GetMetrics(request, timeout=3)
    return 1


def keda_poll(stub: pb_grpc.ExternalScalerStub, request: pb.GetMetricsRequest) -> int:
    """What KEDA sends for a ScaledObject on every poll and HPA sync."""
    stub.GetMetricSpec(request.scaledObjectRef, timeout=3)
    stub.GetMetrics(request, timeout=3)
    stub.IsActive(request.scaledObjectRef, timeout=3)
    return 3


def throughput(
    port: int,
    requests: list[pb.GetMetricsRequest],
    threads: int,
    seconds: float,
    send: Send = get_metrics,
) -> float:
    """Calls per second with `threads` clients sharing one connection, each going through
    `requests` with `send` (by default one GetMetrics each)."""
    counts = [0] * threads
    stop = time.perf_counter() + seconds
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = scaler_stub(channel)

        def client(k: int) -> None:
            i = k
            while time.perf_counter() < stop:
                counts[k] += send(stub, requests[i % len(requests)])
                i += threads

        seconds_taken = run_clients(
            [threading.Thread(target=client, args=(k,)) for k in range(threads)]
        )
        return sum(counts) / seconds_taken


def check_values(port: int, requests: list[pb.GetMetricsRequest]) -> None:
    """The benchmark measures real answers: every object gets a positive replica count."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = scaler_stub(channel).GetMetrics
        for request in requests:
            value = call(request, timeout=3).metricValues[0]
            assert value.metricValue >= 1 and value.metricValueFloat == value.metricValue


def percentile_ms(samples: np.ndarray, q: float) -> float:
    return float(np.percentile(samples, q) * 1000)


def in_round_order(servers: list[T], round_index: int) -> list[T]:
    """The servers rotated by the round: each goes first, second, ... in turn."""
    shift = round_index % len(servers)
    return servers[shift:] + servers[:shift]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU time each thread of a process has used so far (Linux /proc)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended in between
            continue
        out[task.name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def busiest_thread_seconds(before: dict[str, float], after: dict[str, float]) -> float:
    """CPU time of the thread that used the most between two `thread_cpu_seconds`."""
    return max(used - before.get(tid, 0.0) for tid, used in after.items())


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


# -- part 2: streams ---------------------------------------------------------------


def timed_calls(call: Callable[[], object], count: int) -> np.ndarray:
    out = np.empty(count)
    for i in range(count):
        started = time.perf_counter()
        call()
        out[i] = time.perf_counter() - started
    return out


def with_open_streams(
    port: int, pid: int, requests: list[pb.GetMetricsRequest], streams: int, calls: int
) -> tuple[dict[str, np.ndarray], float, float]:
    """Open `streams` StreamIsActive streams, then time each unary method and health.

    Returns seconds per call by method, the seconds it took to open the streams
    (each has sent its first state) and the server's resident MiB with them open.
    """
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = scaler_stub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        started = time.perf_counter()
        opened = [
            stub.StreamIsActive(
                pb.ScaledObjectRef(
                    name=f"push-{i}", namespace="push", scalerMetadata=metadata_of(i)
                ),
                timeout=600,
            )
            for i in range(streams)
        ]
        for stream in opened:
            next(stream)
        open_seconds = time.perf_counter() - started
        ref = requests[0].scaledObjectRef
        check = health_pb2.HealthCheckRequest()
        methods: dict[str, Callable[[], object]] = {
            "GetMetricSpec": lambda: stub.GetMetricSpec(ref, timeout=3),
            "GetMetrics": lambda: stub.GetMetrics(requests[0], timeout=3),
            "IsActive": lambda: stub.IsActive(ref, timeout=3),
            "health Check": lambda: health.Check(check, timeout=3),
        }
        out = {name: timed_calls(call, calls) for name, call in methods.items()}
        resident = rss_mib(pid)
        for stream in opened:
            stream.cancel()
    return out, open_seconds, resident


# -- part 3: churn -------------------------------------------------------------------


def churn_calls(call: grpc.UnaryUnaryMultiCallable, names: range, threads: int) -> float:
    """GetMetrics once for each name in `names` (8 clients on one channel); calls per second."""
    counter = itertools.count(names.start)
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next(counter)
            if i >= names.stop:
                return
            ref = pb.ScaledObjectRef(
                name=f"churn-{i}", namespace=f"team-{i % 100}", scalerMetadata=metadata_of(i)
            )
            call(pb.GetMetricsRequest(scaledObjectRef=ref), timeout=3)

    return len(names) / run_clients([threading.Thread(target=client) for _ in range(threads)])


def churn(
    port: int, null_port: int, pid: int, threads: int, window: int, parts: int = 8
) -> list[tuple[int, float, float, float]]:
    """At 1k/10k/100k names seen: (names seen, calls/s, null calls/s, server RSS MiB).

    Calls/s is the median over `parts` slices of the last `window` new names
    before the mark (one noisy slice on a shared machine must not decide it).
    Every mark has slices of the same size, and each server keeps one channel
    for the whole run: a channel opened per slice, or slices of different
    sizes, would weigh connection set-up differently at each mark. The null
    servicer gets each slice's names right after (or right before, in
    alternate slices), as a yardstick for how busy the machine was then.
    """
    rows = []
    seen = 0
    step = max(1, window // parts)
    with (
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
        grpc.insecure_channel(f"127.0.0.1:{null_port}") as null_channel,
    ):
        servers = [
            scaler_stub(channel).GetMetrics,
            scaler_stub(null_channel).GetMetrics,
        ]
        for checkpoint in (1_000, 10_000, 100_000):
            first = max(seen, checkpoint - window)
            if first > seen:
                churn_calls(servers[0], range(seen, first), threads)  # unmeasured stretch
            rates: list[float] = []
            null_rates: list[float] = []
            for n, start in enumerate(range(first, checkpoint, step)):
                names = range(start, min(start + step, checkpoint))
                pair = [(servers[0], rates), (servers[1], null_rates)]
                for call, bucket in pair if n % 2 == 0 else pair[::-1]:
                    bucket.append(churn_calls(call, names, threads))
            seen = checkpoint
            rows.append(
                (checkpoint, statistics.median(rates), statistics.median(null_rates), rss_mib(pid))
            )
    return rows


def serve_command(port: int, prometheus_url: str, extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scaler.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        "0",
        "--prometheus-url",
        prometheus_url,
        "--log-level",
        "warning",
        *extra.split(),
    ]


def start_demand(
    workdir: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], PrometheusServer]:
    """The demand exporter (SERVICES services) and a Prometheus scraping it every 5 s,
    returned once the first service's demand shows in Prometheus."""
    exporter_port = free_port()
    exporter = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "demand_exporter.py"),
            "--port",
            str(exporter_port),
            "--services",
            str(SERVICES),
        ],
        env=env,
    )
    prometheus = PrometheusServer(
        workdir, scrape_targets=[f"127.0.0.1:{exporter_port}"], scrape_interval_seconds=5.0
    )
    try:
        prometheus.start()
        prometheus.wait_for_value(
            'sum(bench_requests_per_second{service="svc0"})', 100.0, timeout_seconds=60
        )
    except BaseException:
        prometheus.stop()
        exporter.terminate()
        raise
    return exporter, prometheus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--keda-objects", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--throughput-seconds", type=float, default=2.0)
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--stream-calls", type=int, default=300)
    parser.add_argument("--churn-window", type=int, default=1000)
    parser.add_argument("--serve-args", default="", help="extra flags for tidescaler serve")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "grpc.md")
    args = parser.parse_args()
    # Thousands of streams are one connection here, but leave room anyway.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    env = os.environ | {"PYTHONPATH": str(ROOT)}
    workdir = Path(tempfile.mkdtemp(prefix="tidescaler-bench-"))
    (workdir / "prometheus").mkdir()
    exporter, prometheus = start_demand(workdir / "prometheus", env)

    scaler_port, null_port, empty_port = free_port(), free_port(), free_port()
    scaler_process = subprocess.Popen(
        serve_command(scaler_port, prometheus.url, args.serve_args), env=env, cwd=ROOT
    )
    empty_process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "empty_handler_serve.py"),
            *serve_command(empty_port, prometheus.url, args.serve_args)[3:],
        ],
        env=env,
        cwd=ROOT,
    )
    null_process = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "null_server.py"), "--port", str(null_port)],
        env=env,
        cwd=ROOT,
    )
    processes = [exporter, scaler_process, null_process, empty_process]
    try:
        wait_ready(scaler_port)
        wait_ready(null_port)
        wait_ready(empty_port)
        requests = scaled_objects(args.objects)
        check_values(scaler_port, requests)  # also warms the policy and query caches
        sequential_latencies(null_port, requests)
        sequential_latencies(empty_port, requests)

        # Part 1: latency, then throughput, interleaved rounds, each round in another order.
        scaler: list[np.ndarray] = []
        null: list[np.ndarray] = []
        empty: list[np.ndarray] = []
        trio: list[tuple[list[np.ndarray], int]] = [
            (scaler, scaler_port),
            (null, null_port),
            (empty, empty_port),
        ]
        for r in range(args.rounds):
            for bucket, port in in_round_order(trio, r):
                bucket.append(sequential_latencies(port, requests))
        # Per-round percentiles, then the median over rounds: one noisy round on a shared
        # machine must not decide the figure.
        s_p50 = statistics.median(percentile_ms(s, 50) for s in scaler)
        s_p99 = statistics.median(percentile_ms(s, 99) for s in scaler)
        n_p50 = statistics.median(percentile_ms(n, 50) for n in null)
        n_p99 = statistics.median(percentile_ms(n, 99) for n in null)
        e_p50 = statistics.median(percentile_ms(e, 50) for e in empty)
        e_p99 = statistics.median(percentile_ms(e, 99) for e in empty)
        p50_ratio = statistics.median(
            percentile_ms(s, 50) / percentile_ms(n, 50) for s, n in zip(scaler, null, strict=True)
        )
        p99_ratio = statistics.median(
            percentile_ms(s, 99) / percentile_ms(n, 99) for s, n in zip(scaler, null, strict=True)
        )
        s_rates: list[float] = []
        n_rates: list[float] = []
        e_rates: list[float] = []
        # Server CPU per call during the throughput rounds: where a throughput gap comes from.
        # The busiest thread is the event loop, which runs every handler: when it is
        # saturated, its CPU per call is what bounds the calls per second.
        pids = (scaler_process.pid, null_process.pid, empty_process.pid)
        cpu_per_call: dict[int, list[float]] = {pid: [] for pid in pids}
        loop_per_call: dict[int, list[float]] = {pid: [] for pid in pids}
        rates = [
            (s_rates, scaler_port, scaler_process.pid),
            (n_rates, null_port, null_process.pid),
            (e_rates, empty_port, empty_process.pid),
        ]
        for r in range(args.rounds):
            for rate_bucket, port, pid in in_round_order(rates, r):
                cpu_before, threads_before = cpu_seconds(pid), thread_cpu_seconds(pid)
                rate = throughput(port, requests, args.threads, args.throughput_seconds)
                used = cpu_seconds(pid) - cpu_before
                loop = busiest_thread_seconds(threads_before, thread_cpu_seconds(pid))
                rate_bucket.append(rate)
                cpu_per_call[pid].append(used / (rate * args.throughput_seconds))
                loop_per_call[pid].append(loop / (rate * args.throughput_seconds))
        s_rps, n_rps = statistics.median(s_rates), statistics.median(n_rates)
        e_rps = statistics.median(e_rates)
        s_cpu, n_cpu, e_cpu = (statistics.median(cpu_per_call[pid]) * 1e6 for pid in pids)
        s_loop, n_loop, e_loop = (statistics.median(loop_per_call[pid]) * 1e6 for pid in pids)
        rps_ratio = statistics.median(s / n for s, n in zip(s_rates, n_rates, strict=True))
        empty_ratio = statistics.median(e / n for e, n in zip(e_rates, n_rates, strict=True))

        # Part 1, KEDA's cycle: many more objects, so that each comes round seconds later.
        keda_requests = scaled_objects(args.keda_objects)
        check_values(scaler_port, keda_requests)  # parsed and answered once, as in steady state
        keda_rates: dict[int, list[float]] = {scaler_port: [], null_port: []}
        for r in range(args.rounds):
            for port in in_round_order([scaler_port, null_port], r):
                keda_rates[port].append(
                    throughput(
                        port, keda_requests, args.threads, args.throughput_seconds, keda_poll
                    )
                )
        keda_rps = statistics.median(keda_rates[scaler_port])
        keda_null_rps = statistics.median(keda_rates[null_port])
        keda_ratio = statistics.median(
            s / n for s, n in zip(keda_rates[scaler_port], keda_rates[null_port], strict=True)
        )

        # Part 3 (run before part 2, whose thousands of closing streams would disturb it):
        # churn of names through tidescaler.
        churned = churn(scaler_port, null_port, scaler_process.pid, args.threads, args.churn_window)

        # Part 2: streams, one server after the other (each holds them on its own).
        streamed = {}
        memory = {}  # resident MiB before and with the streams open
        for name, port, pid in (
            ("tidescaler", scaler_port, scaler_process.pid),
            ("null servicer", null_port, null_process.pid),
        ):
            before = rss_mib(pid)
            streamed[name] = with_open_streams(port, pid, requests, args.streams, args.stream_calls)
            memory[name] = (before, streamed[name][2])

    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)
        prometheus.stop()

    rows = [
        ("tidescaler", s_p50, s_p99, s_rps, s_cpu, s_loop),
        ("null servicer", n_p50, n_p99, n_rps, n_cpu, n_loop),
        ("tidescaler, GetMetrics answering a constant", e_p50, e_p99, e_rps, e_cpu, e_loop),
    ]
    stream_rows = []
    for method in streamed["tidescaler"][0]:
        ours, theirs = streamed["tidescaler"][0][method], streamed["null servicer"][0][method]
        stream_rows.append(
            f"| {method} | {percentile_ms(ours, 50):.3f} | {percentile_ms(ours, 99):.3f} "
            f"| {percentile_ms(theirs, 50):.3f} | {percentile_ms(theirs, 99):.3f} |"
        )
    lines = [
        f"**Latency and throughput.** GetMetrics over real gRPC on loopback, {args.objects} "
        f"distinct ScaledObjects (cron + query), warm cache, {args.rounds} interleaved rounds "
        f"of {args.objects} calls each (percentiles per round, median over rounds); "
        f"throughput with {args.threads} client threads, {args.rounds} interleaved rounds of "
        f"{args.throughput_seconds:g} s (median), with the server's CPU time per call in "
        "those rounds (median), all of it and its event-loop thread's (the busiest one).",
        "",
        "| server | p50 (ms) | p99 (ms) | throughput (calls/s) | server CPU per call (us) "
        "| event loop's CPU per call (us) |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {p50:.3f} | {p99:.3f} | {rps:,.0f} | {cpu:.0f} | {loop:.0f} |"
            for name, p50, p99, rps, cpu, loop in rows
        ),
        "",
        f"Ratios tidescaler / null (median over rounds): p50 {p50_ratio:.2f}, "
        f"p99 {p99_ratio:.2f}; throughput {rps_ratio:.2f}. Each object is asked again "
        f"every {args.objects / s_rps:.2f} s in the throughput rounds, so most calls there "
        "reuse the decision of the call before (a decision holds at most 1 s).",
        "",
        f"**KEDA's cycle.** {args.keda_objects:,} distinct ScaledObjects, each asked "
        "GetMetricSpec, GetMetrics and IsActive in turn, as KEDA does on every poll and "
        f"every HPA sync, by {args.threads} client threads; {args.rounds} interleaved rounds "
        f"of {args.throughput_seconds:g} s (median). Each object comes round again every "
        f"{args.keda_objects / (keda_rps / 3):.1f} s, so its GetMetrics is decided afresh "
        f"and its IsActive reuses that decision. Calls/s: tidescaler {keda_rps:,.0f}, null "
        f"servicer {keda_null_rps:,.0f}; ratio {keda_ratio:.2f}.",
        "",
        f"Targets: p50 ratio <= 1.16 ({'met' if p50_ratio <= 1.16 else 'NOT met'}), "
        f"throughput ratio >= 0.95: GetMetrics alone "
        f"{'met' if rps_ratio >= 0.95 else 'NOT met'}, KEDA's cycle "
        f"{'met' if keda_ratio >= 0.95 else 'NOT met'}.",
        "",
        "Where the throughput gap lies: tidescaler's own process with GetMetrics answering "
        f"a constant reaches {empty_ratio:.2f} of the null servicer's calls/s (its threads, "
        "telemetry and background work); the decision itself (policy lookup, observation, "
        f"engine, telemetry records) adds {s_loop - e_loop:.0f} us of event-loop CPU per call.",
        "",
        f"**{args.streams:,} open StreamIsActive streams** (cron + query each, re-evaluated "
        f"every 5 s by tidescaler), then {args.stream_calls} calls of each method one after "
        "the other on the same connection (percentiles over those calls).",
        "",
        "| call | tidescaler p50 (ms) | p99 (ms) | null p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|---:|",
        *stream_rows,
        "",
        f"Opening all streams (each has sent its first state): tidescaler "
        f"{streamed['tidescaler'][1]:.1f} s, null {streamed['null servicer'][1]:.1f} s. "
        "Resident memory before and with the streams open: "
        + "; ".join(
            f"{name} {before:.0f} -> {during:.0f} MiB "
            f"({(during - before) * 1024 / args.streams:.0f} KiB a stream)"
            for name, (before, during) in memory.items()
        )
        + ".",
        "",
        f"**Churn.** GetMetrics for 100,000 distinct ScaledObject names, one after the other "
        f"in name order with {args.threads} client threads on one channel per server; calls/s "
        f"over the last {args.churn_window:,} new names before each mark (median of 8 slices "
        "of equal size at every mark), the null servicer's calls/s for each slice's names "
        "right after or right before it, alternately (how busy the machine was), and "
        "tidescaler's resident memory there.",
        "",
        "| names seen | calls/s | null calls/s (same names) | ratio | tidescaler RSS (MiB) |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {seen:,} | {rate:,.0f} | {null_rate:,.0f} | {rate / null_rate:.2f} | {rss:.0f} |"
            for seen, rate, null_rate, rss in churned
        ),
        "",
        "Ratio at 100,000 names / at 1,000: "
        f"{(churned[-1][1] / churned[-1][2]) / (churned[0][1] / churned[0][2]):.2f}; "
        f"resident memory {churned[-1][3] - churned[0][3]:+.0f} MiB.",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n\nCommand: `python benchmarks/bench_grpc.py`\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
