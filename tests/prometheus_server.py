"""A real Prometheus for the tests, and the things it reads.

`PrometheusServer` runs the `prometheus` binary (Debian package `prometheus`)
on a free loopback port with its own data directory and configuration; it can
be stopped, killed and started again on the same port and data, for outage
tests. `backfill()` writes historical series with `promtool tsdb
create-blocks-from openmetrics`. `Exporter` is a prometheus_client HTTP server
that Prometheus scrapes every second, for live series. `CountingProxy` sits in
front of a server to count (and optionally slow down) the requests that reach
it. The `cadvisor_pod` and `kube_state_metrics_pod` helpers make series with
the names and labels those exporters use in a cluster, including the rows a
resource query must ignore.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.parser import text_string_to_metric_families

INSTALL_HINT = (
    "the Prometheus server binaries `prometheus` and `promtool` are not on PATH; "
    "run the test command from the README, which installs the Debian package `prometheus`"
)


class PrometheusNotInstalled(RuntimeError):
    pass


def require_binaries() -> tuple[str, str]:
    """Paths of `prometheus` and `promtool`, or PrometheusNotInstalled."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        raise PrometheusNotInstalled(INSTALL_HINT)
    return prometheus, promtool


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- series and OpenMetrics ----------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One series to backfill: samples are (unix seconds, value)."""

    name: str
    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]]


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _format_labels(labels: Mapping[str, str]) -> str:
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    inner = ",".join(f'{key}="{escape(value)}"' for key, value in sorted(labels.items()))
    return f"{{{inner}}}" if inner else ""


def openmetrics(series: Iterable[Series]) -> str:
    """OpenMetrics text for promtool: each metric family's lines together, `# EOF` last."""
    families: dict[str, list[Series]] = defaultdict(list)
    for one in series:
        families[one.name].append(one)
    lines: list[str] = []
    for name, members in families.items():
        # Stored types do not matter to the TSDB; gauge accepts any name and value.
        lines.append(f"# TYPE {name} gauge")
        for one in members:
            labels = _format_labels(one.labels)
            lines.extend(
                f"{name}{labels} {_format_value(value)} {_format_value(timestamp)}"
                for timestamp, value in sorted(one.samples)
            )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def grid(start: float, end: float, step_seconds: float) -> list[float]:
    """start, start + step, ... <= end."""
    count = math.floor((end - start) / step_seconds + 1e-9) + 1
    return [start + i * step_seconds for i in range(count)]


def cadvisor_pod(
    namespace: str,
    pod: str,
    containers: Mapping[str, tuple[float, float]],
    times: Sequence[float],
    *,
    node: str = "node-1",
) -> list[Series]:
    """cAdvisor series of one pod; `containers` maps name -> (CPU cores, working set bytes).

    The CPU counter grows by exactly `cores` per second from `times[0]`, so its
    rate is `cores`. Like the kubelet, it also exports the pod's own cgroup
    (container="", the sum of its containers) and the pause container
    (container="POD"), which a resource query must not count.
    """
    uid = f"uid-{namespace}-{pod}"
    rows = dict(containers)
    rows[""] = (
        math.fsum(cpu for cpu, _ in containers.values()),
        math.fsum(memory for _, memory in containers.values()),
    )
    rows["POD"] = (0.001, 1024.0 * 1024.0)
    out: list[Series] = []
    for container, (cores, memory_bytes) in rows.items():
        labels = {
            "job": "kubelet",
            "metrics_path": "/metrics/cadvisor",
            "instance": f"{node}:10250",
            "node": node,
            "namespace": namespace,
            "pod": pod,
            "container": container,
            "id": f"/kubepods/pod{uid}/{container or ''}".rstrip("/"),
            "image": f"registry.example/{container or 'pod'}:1.0" if container else "",
            "name": f"k8s_{container}_{pod}_{namespace}" if container else "",
        }
        labels = {key: value for key, value in labels.items() if value != ""} | {
            "container": container
        }
        out.append(
            Series(
                "container_cpu_usage_seconds_total",
                labels | {"cpu": "total"},
                [(t, 1000.0 + cores * (t - times[0])) for t in times],
            )
        )
        out.append(
            Series(
                "container_memory_working_set_bytes",
                labels,
                [(t, memory_bytes) for t in times],
            )
        )
    return out


def kube_state_metrics_pod(
    namespace: str,
    pod: str,
    requests: Mapping[str, tuple[float, float]],
    times: Sequence[float],
    *,
    node: str = "node-1",
    without_requests: Sequence[str] = (),
) -> list[Series]:
    """kube-state-metrics' `kube_pod_container_resource_requests` and
    `kube_pod_container_info` of one pod.

    `requests` maps container -> (CPU cores, memory bytes), with the labels
    kube-state-metrics v2 writes (resource, unit, container, uid, node);
    `without_requests` names containers that request nothing: they have an info
    series and no request series, as kube-state-metrics exports them.
    """
    out: list[Series] = []

    def labels(container: str) -> dict[str, str]:
        return {
            "job": "kube-state-metrics",
            "instance": "10.0.0.9:8080",
            "namespace": namespace,
            "pod": pod,
            "uid": f"uid-{namespace}-{pod}",
            "container": container,
        }

    for container in [*requests, *without_requests]:
        info = labels(container) | {
            "image": f"registry.example/{container}:1.0",
            "image_spec": f"registry.example/{container}:1.0",
            "container_id": f"containerd://{namespace}-{pod}-{container}",
        }
        out.append(Series("kube_pod_container_info", info, [(t, 1.0) for t in times]))
    for container, (cores, memory_bytes) in requests.items():
        base = labels(container) | {"node": node}
        out.append(
            Series(
                "kube_pod_container_resource_requests",
                base | {"resource": "cpu", "unit": "core"},
                [(t, cores) for t in times],
            )
        )
        out.append(
            Series(
                "kube_pod_container_resource_requests",
                base | {"resource": "memory", "unit": "byte"},
                [(t, memory_bytes) for t in times],
            )
        )
    return out


def kube_state_metrics_hpa(
    namespace: str, name: str, current_replicas: float, times: Sequence[float]
) -> Series:
    """kube-state-metrics' `kube_horizontalpodautoscaler_status_current_replicas` of one
    HPA (KEDA names a ScaledObject's keda-hpa-<name>)."""
    labels = {
        "job": "kube-state-metrics",
        "instance": "10.0.0.9:8080",
        "namespace": namespace,
        "horizontalpodautoscaler": name,
    }
    return Series(
        "kube_horizontalpodautoscaler_status_current_replicas",
        labels,
        [(t, current_replicas) for t in times],
    )


# -- the live exporter -----------------------------------------------------------------


class Exporter:
    """A prometheus_client /metrics server on a free loopback port with its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._gauges: dict[str, Gauge] = {}
        self._lock = threading.Lock()
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = int(self._server.server_port)

    @property
    def target(self) -> str:
        """host:port, as a Prometheus static target."""
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set gauge `name` (created on first use with these label names) to `value`."""
        with self._lock:
            gauge = self._gauges.get(name)
            if gauge is None:
                gauge = Gauge(name, name, sorted(labels), registry=self.registry)
                self._gauges[name] = gauge
        (gauge.labels(**labels) if labels else gauge).set(value)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- the server --------------------------------------------------------------------


class PrometheusServer:
    """One `prometheus` process on 127.0.0.1:port with data and config under `directory`.

    Not started by the constructor. `start()` after `stop()` or `kill()` reuses
    the port and the data directory, like a pod restarted in place.
    """

    def __init__(
        self,
        directory: Path,
        *,
        scrape_targets: Sequence[str] = (),
        scrape_interval_seconds: float = 1.0,
        port: int | None = None,
    ) -> None:
        self.prometheus_binary, self.promtool_binary = require_binaries()
        self.directory = directory
        self.data_dir = directory / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file = directory / "prometheus.yml"
        self.log_file = directory / "prometheus.log"
        self.port = port if port is not None else free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config(scrape_targets, scrape_interval_seconds)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_config(self, targets: Sequence[str], interval_seconds: float) -> None:
        # JSON is YAML, and needs no YAML writer.
        interval = f"{max(round(interval_seconds * 1000), 1)}ms"
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": "exporter",
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "static_configs": [{"targets": list(targets)}],
                }
            ]
            if targets
            else [],
        }
        self.config_file.write_text(json.dumps(config, indent=2))

    # -- lifecycle --

    def start(self, timeout_seconds: float = 30.0) -> None:
        if self.running:
            raise RuntimeError(f"Prometheus on port {self.port} is already running")
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    self.prometheus_binary,
                    f"--config.file={self.config_file}",
                    f"--storage.tsdb.path={self.data_dir}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    # Backfilled history may be weeks old; keep all of it.
                    "--storage.tsdb.retention.time=90d",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.wait_ready(timeout_seconds)

    def wait_ready(self, timeout_seconds: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"Prometheus exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Prometheus on port {self.port} not ready after {timeout_seconds} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout_seconds: float = 15.0) -> None:
        """Graceful shutdown (SIGTERM): the head is flushed."""
        self._end(signal.SIGTERM, timeout_seconds)

    def kill(self) -> None:
        """SIGKILL, as a crashed or evicted server; the WAL is replayed on the next start."""
        self._end(signal.SIGKILL, 15.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, how: signal.Signals, timeout_seconds: float) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(how)
        try:
            process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- data --

    def backfill(self, openmetrics_text: str) -> None:
        """Write historical series into the data directory (restarting a running server).

        Prometheus only loads blocks at start, so a running server is stopped
        before and started after.
        """
        was_running = self.running
        if was_running:
            self.stop()
        with tempfile.NamedTemporaryFile(
            "w", suffix=".om", dir=self.directory, delete=False
        ) as source:
            source.write(openmetrics_text)
        try:
            completed = subprocess.run(
                [
                    self.promtool_binary,
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    source.name,
                    str(self.data_dir),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            os.unlink(source.name)
        if completed.returncode != 0:
            raise RuntimeError(
                f"promtool could not backfill (exit {completed.returncode}):\n"
                f"{completed.stdout}\n{completed.stderr}"
            )
        if was_running:
            self.start()

    # -- looking inside (plain HTTP, independent of the code under test) --

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]] | list[Any]:
        """The raw `data.result` of an instant query."""
        params = {"query": promql}
        if at is not None:
            params["time"] = repr(at)
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5.0) as response:
            document = json.load(response)
        result: list[Any] = document["data"]["result"]
        return result

    def wait_for(
        self,
        promql: str,
        condition: Callable[[list[Any]], bool],
        timeout_seconds: float = 15.0,
    ) -> list[Any]:
        """Poll an instant query until `condition(result)` holds (e.g. a scrape arrived)."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            result = self.query(promql)
            if condition(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{promql!r} still gives {result!r} after {timeout_seconds} s")
            time.sleep(0.1)

    def wait_for_value(self, promql: str, value: float, timeout_seconds: float = 15.0) -> None:
        """Wait until the query returns exactly one series whose value is `value`."""
        self.wait_for(
            promql,
            lambda result: len(result) == 1 and float(result[0]["value"][1]) == value,
            timeout_seconds,
        )

    def http_requests(self, handler: str = "/api/v1/query") -> float:
        """Prometheus' own count of requests served by `handler`, over all status codes."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5.0) as response:
            text = response.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            if family.name != "prometheus_http_requests":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("handler") == handler:
                    total += sample.value
        return total


# -- a counting, delaying reverse proxy ------------------------------------------------


@dataclass
class CountingProxy:
    """Forwards GET requests to `upstream` after `delay_seconds`, counting them by path
    and keeping what each asked (`seen`)."""

    upstream: str
    delay_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Every request: path, query parameters, headers (names in lower case).
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                path = url.path
                headers = {k.lower(): v for k, v in self.headers.items()}
                with proxy._lock:
                    proxy.counts[path] += 1
                    proxy.seen.append((path, dict(urllib.parse.parse_qsl(url.query)), headers))
                time.sleep(proxy.delay_seconds)
                try:
                    with urllib.request.urlopen(proxy.upstream + self.path, timeout=10) as up:
                        status, body = up.status, up.read()
                except urllib.error.HTTPError as error:
                    status, body = error.code, error.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, path: str = "/api/v1/query") -> int:
        with self._lock:
            return self.counts[path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
