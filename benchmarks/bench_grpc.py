"""`tidescaler serve` through real gRPC, against a null servicer, in three parts.

1. Latency and throughput: 1,000 distinct ScaledObjects (a cron window + a
   Prometheus query each, warm cache) call GetMetrics the way KEDA does: one
   shared connection, one call after the other; then with several client
   threads. The same calls go to `null_server.py` (same proto, same grpc.aio
   server set-up, constant answers) in interleaved rounds of the same run, so
   machine noise hits both alike. A third server, `empty_handler_serve.py`
   (tidescaler's process with GetMetrics answering a constant), splits the gap:
   the process around a call against the decision itself; a fourth,
   `default_gc_serve.py`, keeps CPython's garbage-collector settings instead of
   tidescaler's (see `settle_garbage_collector`). Throughput goes to
   three processes of each server (`--processes`): a process's calls/s sits
   several per cent off another's of the same code for its whole life (where
   the scheduler puts its threads, its hash seed: not pinned down), as much as
   the gap being measured. Then KEDA's own cycle:
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

    python benchmarks/bench_grpc.py [--rounds 9] [--processes 3] [--objects 1000] [--streams 5000]
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
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from prometheus_server import PrometheusServer, free_port  # noqa: E402

from scaler.proto import externalscaler_pb2 as pb  # noqa: E402
from scaler.proto import externalscaler_pb2_grpc as pb_grpc  # noqa: E402

SERVICES = 10
TIDESCALER = "tidescaler"
NULL = "null servicer"
CONSTANT = "tidescaler, GetMetrics answering a constant"
DEFAULT_GC = "tidescaler, CPython's default garbage collector"
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


@dataclass(frozen=True)
class Served:
    """One server process of one kind (tidescaler, the null servicer, ...)."""

    kind: str
    port: int
    process: subprocess.Popen[bytes]
    metrics_port: int | None = None  # tidescaler's /metrics


def full_collections(served: Served) -> float:
    """How many full (generation 2) garbage collections the server has run, from its
    /metrics (python_gc_collections_total)."""
    assert served.metrics_port is not None
    url = f"http://127.0.0.1:{served.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as page:
        for family in text_string_to_metric_families(page.read().decode()):
            for sample in family.samples:
                if (
                    sample.name == "python_gc_collections_total"
                    and sample.labels.get("generation") == "2"
                ):
                    return float(sample.value)
    raise RuntimeError(f"no python_gc_collections_total on {url}")


def rate_rounds(
    servers: list[Served], rounds: int, measure: Callable[[Served], float]
) -> list[dict[Served, float]]:
    """`measure` of every server in each round, each round in another order."""
    return [
        {served: measure(served) for served in in_round_order(servers, r)} for r in range(rounds)
    ]


def kind_rates(results: list[dict[Served, float]], kind: str) -> list[float]:
    """Per round, the median over the processes of `kind`."""
    return [
        statistics.median(rate for served, rate in result.items() if served.kind == kind)
        for result in results
    ]


def ratio_over_rounds(results: list[dict[Served, float]], kind: str, baseline: str) -> float:
    """The median over rounds of `kind`'s calls/s over `baseline`'s, each the median of
    its processes in that round: one process's luck shifts its calls/s by several per
    cent for its whole life."""
    return statistics.median(
        a / b for a, b in zip(kind_rates(results, kind), kind_rates(results, baseline), strict=True)
    )


def process_spread(results: list[dict[Served, float]], kind: str) -> str:
    """The lowest and highest of `kind`'s processes' median calls/s over rounds."""
    medians = [
        statistics.median(result[served] for result in results)
        for served in results[0]
        if served.kind == kind
    ]
    return f"{min(medians):,.0f}-{max(medians):,.0f}"


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
    parser.add_argument(
        "--processes", type=int, default=3, help="server processes of each kind for throughput"
    )
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

    def served_with_metrics(script: str | None) -> Callable[[int, int], list[str]]:
        """`tidescaler serve` (or `script`, which runs it) with /metrics on a port."""

        def command(port: int, metrics_port: int) -> list[str]:
            serve = serve_command(
                port, prometheus.url, f"{args.serve_args} --metrics-port {metrics_port}"
            )
            return serve if script is None else [sys.executable, script, *serve[3:]]

        return command

    commands: dict[str, Callable[[int, int], list[str]]] = {
        TIDESCALER: served_with_metrics(None),
        NULL: lambda port, _: [
            sys.executable,
            str(ROOT / "benchmarks" / "null_server.py"),
            "--port",
            str(port),
        ],
        CONSTANT: served_with_metrics(str(ROOT / "benchmarks" / "empty_handler_serve.py")),
        DEFAULT_GC: served_with_metrics(str(ROOT / "benchmarks" / "default_gc_serve.py")),
    }
    servers: list[Served] = []
    try:
        for _ in range(args.processes):
            for kind, command in commands.items():
                port, metrics_port = free_port(), free_port()
                process = subprocess.Popen(command(port, metrics_port), env=env, cwd=ROOT)
                servers.append(Served(kind, port, process, None if kind == NULL else metrics_port))
        first = {kind: next(s for s in servers if s.kind == kind) for kind in commands}
        scaler_port, null_port = first[TIDESCALER].port, first[NULL].port
        scaler_pid = first[TIDESCALER].process.pid
        requests = scaled_objects(args.objects)
        for served in servers:
            wait_ready(served.port)
            if served.kind in (TIDESCALER, DEFAULT_GC):
                check_values(served.port, requests)  # also warms the policy and query caches
            else:
                sequential_latencies(served.port, requests)

        # Part 1: latency (the first process of each kind), interleaved rounds, each round
        # in another order.
        latencies: dict[str, list[np.ndarray]] = {kind: [] for kind in commands}
        for r in range(args.rounds):
            for served in in_round_order(list(first.values()), r):
                latencies[served.kind].append(sequential_latencies(served.port, requests))
        # Per-round percentiles, then the median over rounds: one noisy round on a shared
        # machine must not decide the figure.
        p50 = {k: statistics.median(percentile_ms(x, 50) for x in v) for k, v in latencies.items()}
        p99 = {k: statistics.median(percentile_ms(x, 99) for x in v) for k, v in latencies.items()}
        scaler, null = latencies[TIDESCALER], latencies[NULL]
        p50_ratio = statistics.median(
            percentile_ms(s, 50) / percentile_ms(n, 50) for s, n in zip(scaler, null, strict=True)
        )
        p99_ratio = statistics.median(
            percentile_ms(s, 99) / percentile_ms(n, 99) for s, n in zip(scaler, null, strict=True)
        )

        # Throughput, every process of every kind. Server CPU per call during those rounds
        # shows where a throughput gap comes from. The busiest thread is the event loop,
        # which runs every handler: when it is saturated, its CPU per call is what bounds
        # the calls per second.
        cpu_per_call: dict[str, list[float]] = {kind: [] for kind in commands}
        loop_per_call: dict[str, list[float]] = {kind: [] for kind in commands}

        def measured(served: Served) -> float:
            pid = served.process.pid
            cpu_before, threads_before = cpu_seconds(pid), thread_cpu_seconds(pid)
            rate = throughput(served.port, requests, args.threads, args.throughput_seconds)
            calls = rate * args.throughput_seconds
            cpu_per_call[served.kind].append((cpu_seconds(pid) - cpu_before) / calls)
            loop = busiest_thread_seconds(threads_before, thread_cpu_seconds(pid))
            loop_per_call[served.kind].append(loop / calls)
            return rate

        loop_results = rate_rounds(servers, args.rounds, measured)
        rps = {kind: statistics.median(kind_rates(loop_results, kind)) for kind in commands}
        cpu = {kind: statistics.median(v) * 1e6 for kind, v in cpu_per_call.items()}
        loop_cpu = {kind: statistics.median(v) * 1e6 for kind, v in loop_per_call.items()}
        rps_ratio = ratio_over_rounds(loop_results, TIDESCALER, NULL)
        empty_ratio = ratio_over_rounds(loop_results, CONSTANT, NULL)

        # Part 1, KEDA's cycle: many more objects, so that each comes round seconds later.
        keda_requests = scaled_objects(args.keda_objects)
        keda_servers = [s for s in servers if s.kind in (TIDESCALER, NULL, DEFAULT_GC)]
        for served in keda_servers:
            if served.kind != NULL:  # parsed and answered once, as in steady state
                check_values(served.port, keda_requests)
        collected = [s for s in keda_servers if s.kind != NULL]
        collections_before = {served: full_collections(served) for served in collected}
        keda_results = rate_rounds(
            keda_servers,
            args.rounds,
            lambda served: throughput(
                served.port, keda_requests, args.threads, args.throughput_seconds, keda_poll
            ),
        )
        full = {kind: 0.0 for kind in (TIDESCALER, DEFAULT_GC)}
        for served in collected:
            full[served.kind] += full_collections(served) - collections_before[served]
        keda_calls = {
            kind: sum(r for result in keda_results for s, r in result.items() if s.kind == kind)
            * args.throughput_seconds
            for kind in full
        }
        keda_rps = statistics.median(kind_rates(keda_results, TIDESCALER))
        keda_null_rps = statistics.median(kind_rates(keda_results, NULL))
        keda_ratio = ratio_over_rounds(keda_results, TIDESCALER, NULL)
        keda_default_gc_ratio = ratio_over_rounds(keda_results, DEFAULT_GC, NULL)

        # Part 3 (run before part 2, whose thousands of closing streams would disturb it):
        # churn of names through tidescaler.
        churned = churn(scaler_port, null_port, scaler_pid, args.threads, args.churn_window)

        # Part 2: streams, one server after the other (each holds them on its own).
        streamed = {}
        memory = {}  # resident MiB before and with the streams open
        for name, port, pid in (
            ("tidescaler", scaler_port, scaler_pid),
            ("null servicer", null_port, first[NULL].process.pid),
        ):
            before = rss_mib(pid)
            streamed[name] = with_open_streams(port, pid, requests, args.streams, args.stream_calls)
            memory[name] = (before, streamed[name][2])

    finally:
        for process in [exporter, *(served.process for served in servers)]:
            process.terminate()
            process.wait(timeout=15)
        prometheus.stop()

    rows = [(kind, p50[kind], p99[kind], rps[kind], cpu[kind], loop_cpu[kind]) for kind in commands]
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
        f"throughput with {args.threads} client threads against {args.processes} processes "
        f"of each server, {args.rounds} interleaved rounds of {args.throughput_seconds:g} s "
        "(per round the median of the processes, then the median over rounds), with the "
        "server's CPU time per call in those rounds (median), all of it and its event-loop "
        "thread's (the busiest one).",
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
        f"every {args.objects / rps[TIDESCALER]:.2f} s in the throughput rounds, so most "
        "calls there reuse the decision of the call before (a decision holds at most 1 s). "
        "Each process's median calls/s over the rounds, lowest-highest: tidescaler "
        f"{process_spread(loop_results, TIDESCALER)}, null servicer "
        f"{process_spread(loop_results, NULL)}.",
        "",
        f"**KEDA's cycle.** {args.keda_objects:,} distinct ScaledObjects, each asked "
        "GetMetricSpec, GetMetrics and IsActive in turn, as KEDA does on every poll and "
        f"every HPA sync, by {args.threads} client threads against {args.processes} "
        f"processes of each server; {args.rounds} interleaved rounds of "
        f"{args.throughput_seconds:g} s (medians as above). Each object comes round again "
        f"every {args.keda_objects / (keda_rps / 3):.1f} s, so its GetMetrics is decided "
        "afresh and its IsActive reuses that decision. Calls/s: tidescaler "
        f"{keda_rps:,.0f} (processes {process_spread(keda_results, TIDESCALER)}), null "
        f"servicer {keda_null_rps:,.0f} ({process_spread(keda_results, NULL)}); ratio "
        f"{keda_ratio:.2f}; with CPython's default garbage collector "
        f"{keda_default_gc_ratio:.2f}. Full garbage collections (each walks the whole heap, "
        "every call waiting) over those rounds: tidescaler "
        f"{full[TIDESCALER]:.0f} in {keda_calls[TIDESCALER]:,.0f} calls, with CPython's "
        f"default collector {full[DEFAULT_GC]:.0f} in {keda_calls[DEFAULT_GC]:,.0f}.",
        "",
        f"Targets: p50 ratio <= 1.16 ({'met' if p50_ratio <= 1.16 else 'NOT met'}), "
        f"throughput ratio >= 0.95: GetMetrics alone "
        f"{'met' if rps_ratio >= 0.95 else 'NOT met'}, KEDA's cycle "
        f"{'met' if keda_ratio >= 0.95 else 'NOT met'}.",
        "",
        "Where the throughput gap lies: tidescaler's own process with GetMetrics answering "
        f"a constant reaches {empty_ratio:.2f} of the null servicer's calls/s (its threads, "
        "telemetry and background work); the decision itself (policy lookup, observation, "
        f"engine, telemetry records) adds {loop_cpu[TIDESCALER] - loop_cpu[CONSTANT]:.0f} us "
        "of event-loop CPU per call. With CPython's default garbage collector instead of "
        "tidescaler's settings (GetMetrics alone) it reaches "
        f"{ratio_over_rounds(loop_results, DEFAULT_GC, NULL):.2f}.",
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
