"""`tidescaler serve` refuses unusable start-up flags at once: one stderr line, exit 2.

Each bad value runs the real command in a subprocess. A server that started would
wait for SIGTERM, so exiting by itself within QUICK seconds means none was started.
The runs go two at a time, so the file stays near 10 s on two cores.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pkgutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

import scaler
from scaler.cli import build_parser, main, setup_logging
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
QUICK = 8.0  # seconds: an interpreter start and the imports, on a busy machine
ALWAYS = {"timezone": "UTC", "start": "0 0 1 1 *", "end": "* * * * *", "desiredReplicas": "3"}

# (case, flags, environment, what the one line must contain): the mistakes operators made.
BAD: list[tuple[str, tuple[str, ...], dict[str, str], tuple[str, ...]]] = [
    ("port-wraps", ("--port", "70000"), {}, ("argument --port:", "65535", "'70000'")),
    ("metrics-port", ("--metrics-port", "70000"), {}, ("argument --metrics-port:", "'70000'")),
    (
        "query-timeout-0",
        ("--query-timeout-seconds", "0"),
        {},
        ("argument --query-timeout-seconds:", "above 0 and at most 3600", "'0'"),
    ),
    (
        "answer-budget-inf",
        ("--answer-budget", "inf"),
        {},
        ("argument --answer-budget: must be a finite number of seconds", "60", "'inf'"),
    ),
    ("answer-budget-1e300", ("--answer-budget", "1e300"), {}, ("--answer-budget", "'1e300'")),
    (
        "staleness-negative",
        ("--staleness-seconds", "-5"),
        {},
        ("argument --staleness-seconds:", "between 0 and 86400", "'-5'"),
    ),
    ("coalesce-nan", ("--coalesce-seconds", "nan"), {}, ("--coalesce-seconds", "'nan'")),
    (
        "polling-nan",
        ("--polling-interval-seconds", "nan"),
        {},
        ("--polling-interval-seconds", "'nan'"),
    ),
    (
        "push-interval-inf",
        ("--push-interval-seconds", "inf"),
        {},
        ("--push-interval-seconds", "'inf'"),
    ),
    (
        "prometheus-url-no-scheme",
        ("--prometheus-url", "prometheus:9090"),
        {},
        ("argument --prometheus-url:", "http:// or https://", "'prometheus:9090'"),
    ),
    (
        "prometheus-url-garbage",
        ("--prometheus-url", "ht tp://x y"),
        {},
        ("argument --prometheus-url:", "'ht tp://x y'"),
    ),
    # The environment variable goes through the same check and is named in the line.
    (
        "env-answer-budget",
        (),
        {"TIDESCALER_ANSWER_BUDGET": "inf"},
        ("TIDESCALER_ANSWER_BUDGET='inf'", "finite number of seconds"),
    ),
]

# More of the same rules, checked in this process (an interpreter start costs ~1 s).
MORE = [
    (("--port", "-1"), ("argument --port:", "'-1'")),
    (("--port", "9090.5"), ("argument --port:", "'9090.5'")),
    (("--grace-seconds", "nan"), ("argument --grace-seconds:", "between 0 and 3600", "'nan'")),
    (("--forecast-refit-seconds", "0"), ("argument --forecast-refit-seconds:", "604800")),
    (("--max-workers", "100000"), ("argument --max-workers:", "between 1 and 4096")),
    (("--max-workers", "many"), ("argument --max-workers:", "'many'")),
    (("--answer-budget", "1000"), ("argument --answer-budget:", "at most 60 (a minute)")),
    (("--prometheus-url", "http://prometheus:99999"), ("--prometheus-url", "Port out of range")),
    (("--prometheus-url", "http://:9090"), ("--prometheus-url", "with a host")),
    (("--prometheus-url", "http://p:9090/?x=1"), ("--prometheus-url", "without ?query")),
    # The query endpoint, pasted whole: every trigger would get 404s.
    (
        ("--prometheus-url", "http://p:9090/prometheus/api/v1/query"),
        ("adds the /api/v1/... path itself", "did you mean 'http://p:9090/prometheus'?"),
    ),
    (
        ("--prometheus-url", "http://p:9090/api/v1/"),
        ("adds the /api/v1/... path itself", "did you mean 'http://p:9090'?"),
    ),
    (
        ("--allowed-prometheus-urls", "http://thanos:9090,,mimir:8080"),
        ("argument --allowed-prometheus-urls:", "'mimir:8080'"),
    ),
]


@dataclass(frozen=True)
class Exit:
    returncode: int | None  # None: still running after QUICK seconds (then killed)
    stderr: str


def _command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "scaler.cli", "serve", "--host", "127.0.0.1", *flags]


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    # Only the case's own TIDESCALER_* settings: none from the caller's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDESCALER_")}
    return env | {"PYTHONPATH": str(ROOT), "TIDESCALER_METRICS_PORT": "0", **extra}


def _run(flags: tuple[str, ...], env: Mapping[str, str]) -> Exit:
    try:
        done = subprocess.run(
            _command(*flags),
            env=_environment(env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=QUICK,
        )
    except subprocess.TimeoutExpired as err:  # (run() has killed it)
        stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
        return Exit(None, stderr)
    return Exit(done.returncode, done.stderr)


@pytest.fixture(scope="module")
def exits() -> dict[str, Exit]:
    """Every bad case's exit, run two at a time (the machine's two cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {case: pool.submit(_run, flags, env) for case, flags, env, _ in BAD}
        return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize(
    ("case", "fragments"), [(case, fragments) for case, _, _, fragments in BAD]
)
def test_a_bad_flag_stops_serve_with_one_line(
    exits: dict[str, Exit], case: str, fragments: tuple[str, ...]
) -> None:
    result = exits[case]
    assert result.returncode is not None, f"still running after {QUICK} s: {result.stderr}"
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tidescaler serve: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process too, no TIDESCALER_* setting from the caller's environment."""
    for name in [k for k in os.environ if k.startswith("TIDESCALER_")]:
        monkeypatch.delenv(name)


@pytest.mark.usefixtures("own_environment")
@pytest.mark.parametrize(("flags", "fragments"), MORE)
def test_more_bad_flags_in_process(
    flags: tuple[str, ...], fragments: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", *flags])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tidescaler serve: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.usefixtures("own_environment")
@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TIDESCALER_LOG_LEVEL", "verbose", "expected one of debug, info, warning, error"),
        ("TIDESCALER_LOG_FORMAT", "xml", "expected one of json, text"),
        ("TIDESCALER_EVENTS", "maybe", "expected one of auto, on, off"),
        ("TIDESCALER_ALLOW_UNSAFE_SSL", "enabled", "expected one of 1, on, true, yes or"),
    ],
)
def test_an_environment_variable_outside_its_choices_is_refused(
    name: str,
    value: str,
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # argparse checks a flag's choices but not a default's: a level of "verbose" crashed
    # at start, a format of "xml" or a yes/no of "enabled" passed unnoticed.
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        main(["serve"])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"environment variable {name}={value!r}: {expected}" in lines[0]


@pytest.mark.usefixtures("own_environment")
@pytest.mark.parametrize(("value", "allowed"), [("yes", True), ("OFF", False), ("", False)])
def test_yes_no_environment_variables_read_both_ways(
    value: str, allowed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDESCALER_ALLOW_UNSAFE_SSL", value)
    parser = build_parser()
    args = parser.parse_args(["serve"])
    assert args.allow_unsafe_ssl is allowed


@pytest.mark.usefixtures("own_environment")
def test_a_base_url_that_only_contains_the_api_path_is_taken() -> None:
    """Through the API server's service proxy a Prometheus base URL contains /api/v1."""
    proxied = (
        "https://kubernetes.default.svc/api/v1/namespaces/monitoring/services/"
        "prometheus-k8s:9090/proxy"
    )
    assert build_parser().parse_args(["serve", "--prometheus-url", proxied]).prometheus_url == (
        proxied
    )


@pytest.mark.usefixtures("own_environment")
def test_a_misspelled_environment_variable_is_named_with_the_one_meant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TIDESCALER_PROMETEUS_URL was ignored without a word: the server started without a
    Prometheus and only said so as "no --prometheus-url"."""
    monkeypatch.setenv("TIDESCALER_PROMETEUS_URL", "http://prometheus:9090")
    monkeypatch.setenv("TIDESCALER_PROMETHEUS_URL", "http://prometheus:9090")
    monkeypatch.setenv("TIDESCALER_NOTHING_LIKE_IT", "1")
    args = build_parser().parse_args(["serve"])
    assert args.prometheus_url == "http://prometheus:9090"
    assert args.unknown_environment == [
        "environment variable TIDESCALER_NOTHING_LIKE_IT sets no flag and is ignored",
        "environment variable TIDESCALER_PROMETEUS_URL sets no flag and is ignored "
        "(did you mean TIDESCALER_PROMETHEUS_URL?)",
    ]
    monkeypatch.delenv("TIDESCALER_PROMETEUS_URL")
    monkeypatch.delenv("TIDESCALER_NOTHING_LIKE_IT")
    assert build_parser().parse_args(["serve"]).unknown_environment == []


@pytest.mark.usefixtures("own_environment")
def test_the_same_port_for_grpc_and_metrics_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--host", "127.0.0.1", "--port", "9", "--metrics-port", "9"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "tidescaler serve: error: argument --metrics-port: 9 is the gRPC --port too; "
        "give /metrics a port of its own, or 0 for none"
    ]


@pytest.mark.usefixtures("own_environment")
def test_allow_list_names_no_trigger_could_use_are_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Allowing `step` or `Host` reads as allowing them, but a trigger can never set
    either: the operator learns it at start, not from a tenant's refused trigger."""
    argv = ["serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"]
    assert main([*argv, "--allowed-query-parameters", "dedup,step"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "tidescaler serve: --allowed-query-parameters: 'step' is a parameter tidescaler sets "
        "itself (end, query, start, step, time, timeout); no trigger can set it"
    ]
    monkeypatch.setenv("TIDESCALER_ALLOWED_CUSTOM_HEADERS", "X-Scope-OrgID,Content-Length,a b")
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "tidescaler serve: --allowed-custom-headers: 'Content-Length' frames the request; no "
        "trigger can set it; --allowed-custom-headers: 'a b' is not an HTTP header name"
    ]


@pytest.fixture
def edge_server() -> Iterator[subprocess.Popen[str]]:
    """serve with every checked flag at an edge of its range, and --port 0 (any free one)."""
    flags = (
        "--port", "0",
        "--polling-interval-seconds", "86400",
        "--staleness-seconds", "0",
        "--query-timeout-seconds", "3600",
        "--coalesce-seconds", "0",
        "--push-interval-seconds", "3600",
        "--forecast-refit-seconds", "604800",
        "--max-workers", "4096",
        "--grace-seconds", "0",
        "--prometheus-url", "https://reader@prometheus.example:9443/prefix/",
        "--allowed-prometheus-urls", " http://[::1]:9090/ ,,http://thanos:10902,",
        "--log-format", "json",
        "--events", "off",
    )  # fmt: skip
    process = subprocess.Popen(
        _command(*flags),
        env=_environment({"TIDESCALER_ANSWER_BUDGET": "60"}),  # the top, from the environment
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_edge_values_still_serve(edge_server: subprocess.Popen[str]) -> None:
    assert edge_server.stderr is not None
    start: dict[str, object] = {}
    for line in edge_server.stderr:  # the start line comes first; a refusal ends the stream
        entry = json.loads(line) if line.startswith("{") else {}
        if entry.get("message") == "serving":
            start = entry
            break
    assert start, "serve exited without a start line"
    host, _, port = str(start["grpc_address"]).rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0  # --port 0: a free port, named here
    assert start["answer_budget_seconds"] == 60.0
    assert start["metrics_port"] is None
    assert start["allowed_prometheus_urls"] == [
        "http://[::1]:9090",
        "http://thanos:10902",
        # User information in a URL is a credential: logged without it.
        "https://***@prometheus.example:9443/prefix",
    ]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        ref = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=ALWAYS)
        stub = pb_grpc.ExternalScalerStub(channel)
        reply = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref), timeout=3)
        assert reply.metricValues[0].metricValue == 3
    edge_server.send_signal(signal.SIGTERM)
    assert edge_server.wait(timeout=10) == 0


def test_python_warnings_are_json_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """A warning from a library (numpy overflowing on a tenant's extreme series) is one
    JSON line like every other log line, not bare text in the middle of them."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info", "json")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            np.exp(np.array([1e308]))  # overflow encountered in exp
        lines = capsys.readouterr().err.splitlines()
    finally:
        logging.captureWarnings(False)
        root.handlers[:], level = saved
        root.setLevel(level)
    [entry] = [json.loads(line) for line in lines]
    assert (entry["level"], entry["logger"]) == ("warning", "py.warnings")
    assert "overflow encountered in exp" in entry["message"]


def test_every_logger_is_under_tidescaler() -> None:
    """Two modules logged as `scaler.*` (the certificate-expiry warning among them), so a
    filter on `tidescaler.*` missed them."""
    for module in pkgutil.walk_packages(scaler.__path__, "scaler."):
        importlib.import_module(module.name)
    names = [name for name in logging.root.manager.loggerDict if name.split(".")[0] == "scaler"]
    assert names == []


@pytest.mark.usefixtures("own_environment")
@pytest.mark.parametrize(
    ("given", "listened"),
    [
        ("::", "[::]"),
        ("::1", "[::1]"),
        ("[::]", "[::]"),
        ("0.0.0.0", "0.0.0.0"),
        ("localhost", "localhost"),
    ],
)
def test_an_ipv6_host_is_taken_with_or_without_brackets(given: str, listened: str) -> None:
    """`--host ::` failed with gRPC's own "Misformatted domain name" line and "could not
    bind": gRPC wants IPv6 addresses in brackets."""
    assert build_parser().parse_args(["serve", "--host", given]).host == listened


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["serve", "--prometheus-address", "http://p:9090"],
            "unrecognized arguments: --prometheus-address (did you mean --prometheus-url?) "
            "http://p:9090",
        ),
        (["serve", "--metrics_port=3"], "--metrics_port=3 (did you mean --metrics-port?)"),
        # Nothing close enough (the scenario is positional): no guess.
        (["simulate", "--scenaro", "x.yaml"], "unrecognized arguments: --scenaro"),
    ],
)
def test_an_unknown_flag_is_named_with_the_one_likely_meant(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert said in err
    assert ("did you mean" in err) == ("did you mean" in said)


# What a pod gets for the Service `tidescaler` in its namespace, unless the pod spec
# sets enableServiceLinks: false (the shipped Deployment does; a hand-written one may not).
SERVICE_LINKS = {
    "TIDESCALER_SERVICE_HOST": "10.96.12.34",
    "TIDESCALER_SERVICE_PORT": "9090",
    "TIDESCALER_SERVICE_PORT_GRPC": "9090",
    "TIDESCALER_SERVICE_PORT_METRICS": "8080",
    "TIDESCALER_PORT": "tcp://10.96.12.34:9090",
    "TIDESCALER_PORT_9090_TCP": "tcp://10.96.12.34:9090",
    "TIDESCALER_PORT_9090_TCP_PROTO": "tcp",
    "TIDESCALER_PORT_9090_TCP_PORT": "9090",
    "TIDESCALER_PORT_9090_TCP_ADDR": "10.96.12.34",
    "TIDESCALER_PORT_8080_TCP": "tcp://10.96.12.34:8080",
}


@pytest.mark.usefixtures("own_environment")
def test_kubernetes_service_links_are_not_read_as_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TIDESCALER_PORT=tcp://10.96.12.34:9090, set by Kubernetes for the Service, was read
    as --port: serve stopped at start with 'invalid port' in any pod with service links."""
    for name, value in SERVICE_LINKS.items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(["serve"])
    assert args.port == 9090 and args.metrics_port == 8080
    assert args.unknown_environment == []  # and no warning for any of them
    monkeypatch.setenv("TIDESCALER_PORT", "9191")  # a real setting still counts
    assert build_parser().parse_args(["serve"]).port == 9191
