"""`tidescaler serve` as an operator meets it: start line, errors, logs, help.

Each error case runs the real command in a subprocess and checks the exit code
and that stderr is exactly one line naming the problem.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from certs import Pki, make_pki

from scaler import __version__
from scaler.cli import build_parser
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import ServerConfig, start_server

ROOT = Path(__file__).resolve().parents[1]
ALWAYS = {"timezone": "UTC", "start": "0 0 1 1 *", "end": "* * * * *", "desiredReplicas": "3"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process (here: this one) listens on."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        yield taken.getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve(*flags: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaler.cli", "serve", "--host", "127.0.0.1", *flags],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tidescaler serve: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_busy_grpc_port(busy_port: int) -> None:
    result = serve("--port", str(busy_port), "--metrics-port", "0")
    assert_one_line_error(result, f"127.0.0.1:{busy_port}", "--port", "address already in use")


@pytest.mark.parametrize("events", ["on", "auto"])
def test_kubernetes_asked_for_but_not_configured_stops_serve_with_one_line(
    events: str, tmp_path: Path
) -> None:
    """`--events on` or a named kubeconfig is the operator asking for the Kubernetes API:
    without it, serve used to start anyway, saying so in one INFO line."""
    missing = tmp_path / "no-such-kubeconfig"
    flags = ("--port", str(free_port()), "--metrics-port", "0", "--events", events)
    result = serve(*flags, "--kubeconfig", str(missing))
    asked = "--events on" if events == "on" else "--kubeconfig"
    assert_one_line_error(result, f"{asked}: no Kubernetes API:", str(missing), "cannot read it")


def test_busy_metrics_port(busy_port: int) -> None:
    result = serve("--port", str(free_port()), "--metrics-port", str(busy_port))
    assert_one_line_error(result, f":{busy_port}", "--metrics-port", "address already in use")


def test_certificate_that_does_not_match_its_key(pki: Pki) -> None:
    flags = ("--port", str(free_port()), "--metrics-port", "0", "--tls-cert")
    result = serve(*flags, str(pki.server_cert), "--tls-key", str(pki.client_key))
    assert_one_line_error(result, f"--tls-key {pki.client_key} is not the key of --tls-cert")


@pytest.mark.parametrize("problem", ["missing", "directory", "not-pem"])
def test_unusable_certificate_file(pki: Pki, tmp_path: Path, problem: str) -> None:
    cert = {"missing": tmp_path / "nope.pem", "directory": tmp_path, "not-pem": tmp_path / "x"}[
        problem
    ]
    if problem == "not-pem":
        cert.write_text("not a certificate\n")
    flags = ("--port", str(free_port()), "--metrics-port", "0", "--tls-cert")
    result = serve(*flags, str(cert), "--tls-key", str(pki.server_key))
    expected = {
        "missing": f"cannot read --tls-cert {cert}: No such file or directory",
        "directory": f"cannot read --tls-cert {cert}: Is a directory",
        "not-pem": "not a PEM certificate and its private key",
    }[problem]
    assert_one_line_error(result, expected)


def test_unusable_client_ca(pki: Pki, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("garbage\n")
    flags = ("--port", str(free_port()), "--metrics-port", "0")
    tls = ("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))
    result = serve(*flags, *tls, "--tls-client-ca", str(ca))
    assert_one_line_error(result, f"--tls-client-ca {ca}: not a PEM CA certificate")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        (
            "--max-workers",
            "0",
            "error: argument --max-workers: must be a whole number between 1 and 4096, got '0'",
        ),
        (
            "--push-interval-seconds",
            "0",
            "error: argument --push-interval-seconds: must be a finite number of seconds "
            "above 0 and at most 3600 (an hour), got '0'",
        ),
        (
            "--grace-seconds",
            "-1",
            "error: argument --grace-seconds: must be a finite number of seconds between 0 "
            "and 3600 (an hour), got '-1'",
        ),
    ],
)
def test_out_of_range_settings(flag: str, value: str, message: str) -> None:
    result = serve("--port", str(free_port()), "--metrics-port", "0", flag, value)
    assert_one_line_error(result, message)


def test_start_line_warning_and_text_logs_carry_every_field() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "scaler.cli", "serve", "--host", "127.0.0.1"],
        env=os.environ
        | {
            "PYTHONPATH": str(ROOT),
            "TIDESCALER_PORT": str(port),
            "TIDESCALER_METRICS_PORT": "0",
            "TIDESCALER_LOG_FORMAT": "text",
        },
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            ref = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=ALWAYS)
            stub = pb_grpc.ExternalScalerStub(channel)
            stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref), timeout=3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    lines = (process.stderr.read() if process.stderr else "").splitlines()
    start = next(line for line in lines if "tidescaler: serving" in line)
    for field in (
        f"version={__version__}",
        f"grpc_address=127.0.0.1:{port}",
        "metrics_port=null",
        "prometheus_url=null",
        "allowed_prometheus_urls=[]",
        "tls=false",
        "mutual_tls=false",
    ):
        assert f" {field}" in start, start
    assert "asctime=" not in start  # the time is written once, at the start
    # ... in UTC, said so (a container's local zone is anyone's guess).
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO tidescaler: serving ", start)
    warning = next(line for line in lines if " WARNING " in line)
    assert "no --prometheus-url" in warning and "only cron triggers work" in warning
    decision = next(line for line in lines if "decision changed" in line)
    for field in ("namespace=shop", "scaledobject=web", "desired_replicas=3", "reason=cron"):
        assert f" {field}" in decision, decision
    assert ' signals={"cron":' in decision


def test_every_serve_flag_has_help_showing_its_default() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve_parser = subparsers.choices["serve"]
    flags = [a for a in serve_parser._actions if a.dest != "help"]
    assert len(flags) >= 18
    for action in flags:
        assert action.help and "default" in action.help, action.option_strings
    text = serve_parser.format_help()
    assert "(default: 9090)" in text and "(default: 32)" in text


@pytest.mark.parametrize("key", ["prometheusAddress", "serverAddress"])
def test_a_foreign_prometheus_address_is_refused_without_telling_the_allow_list(
    caplog: pytest.LogCaptureFixture, key: str
) -> None:
    """The message names the key written: KEDA's serverAddress was refused as
    "prometheusAddress=...", a key the user never wrote."""
    running = start_server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            prometheus_url="http://prometheus.internal:9090",
            allowed_prometheus_urls=("http://thanos.internal:9090",),
        )
    )
    metadata = {"query": "up", "threshold": "1", key: "http://169.254.169.254"}
    ref = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=metadata)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="tidescaler.server"),
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        ):
            stub = pb_grpc.ExternalScalerStub(channel)
            for _ in range(3):
                with pytest.raises(grpc.RpcError) as info:
                    stub.GetMetricSpec(ref, timeout=3)
                assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                details = info.value.details() or ""
                assert f"{key}='http://169.254.169.254' is not allowed" in details
                assert details.count("Address") == 1  # not the key the user did not write
                assert "internal" not in details  # neither allowed address leaks
    finally:
        running.stop(0)
    warnings = [r for r in caplog.records if r.getMessage() == "prometheusAddress not allowed"]
    assert len(warnings) == 1  # once per address, not once per call
    assert warnings[0].allowed_prometheus_urls == [  # type: ignore[attr-defined]
        "http://prometheus.internal:9090",
        "http://thanos.internal:9090",
    ]
    assert warnings[0].scaledobject == "web"  # type: ignore[attr-defined]


def test_an_allowed_address_is_recognised_whatever_the_case_of_its_scheme_and_host() -> None:
    """URLs compare with the scheme and host in any case: `HTTPS://Thanos.Internal` is
    the allowed `https://thanos.internal` (it was refused as foreign)."""
    running = start_server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            allowed_prometheus_urls=("https://THANOS.internal:9090/",),
        )
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            for address in ("HTTPS://Thanos.Internal:9090", "https://thanos.internal:9090/"):
                metadata = {"query": "up", "threshold": "1", "prometheusAddress": address}
                ref = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=metadata)
                assert stub.GetMetricSpec(ref, timeout=3).metricSpecs[0].targetSize == 1
            # The path is not a host: written otherwise, it is another address.
            other = {"query": "up", "threshold": "1"}
            other["prometheusAddress"] = "https://thanos.internal:9090/Other"
            ref = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=other)
            with pytest.raises(grpc.RpcError) as info:
                stub.GetMetricSpec(ref, timeout=3)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        running.stop(0)
