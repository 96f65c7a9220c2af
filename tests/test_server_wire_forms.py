"""A request's trigger found by the bytes it came in (see scaler.server._WireForms).

KEDA builds each ScaledObject's ScaledObjectRef once and sends that message on every
call; gRPC-go writes the metadata map starting at a random entry each time, so one
ref arrives in as many byte forms as rotations of its entries. The forms come from a
real Go client where Go and protobuf-go are installed (tests/go_client_forms, the
code protoc-gen-go generates from protos/externalscaler.proto, marshalled as gRPC-go
does), and are also written by hand, entry by entry; all over real gRPC.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from scaler.proto import externalscaler_pb2 as pb
from scaler.server import (
    FORM_ENTRY_BYTES,
    FORM_MAX_BYTES,
    RunningServer,
    ServerConfig,
    _ResolvedTriggers,
    _WireForms,
    start_server,
)

TESTS = Path(__file__).parent
GO_CLIENT = TESTS / "go_client_forms" / "main.go"
GOPATH = Path("/usr/share/gocode")
PROTOBUF_GO = GOPATH / "src" / "google.golang.org" / "protobuf"

WINDOW = {
    "timezone": "UTC",
    "start": "0 0 1 1 *",
    "end": "* * * * *",  # inside the window at any instant but New Year's first minute
    "desiredReplicas": "3",
    "scalerAddress": "tidescaler.tidescaler:9090",
    "minReplicas": "1",
}


def rotations(name: str, metadata: dict[str, str]) -> list[bytes]:
    """Every ScaledObjectRef byte form a Go client sends for this one map: the name and
    namespace, then the map entries starting at each entry in turn."""
    head = pb.ScaledObjectRef(name=name, namespace="shop").SerializeToString()
    entries = [
        pb.ScaledObjectRef(scalerMetadata={key: value}).SerializeToString()
        for key, value in metadata.items()
    ]
    return [head + b"".join(entries[i:] + entries[:i]) for i in range(len(entries))]


def metrics_request(ref: bytes, metric_name: str = "tidescaler") -> bytes:
    """A GetMetricsRequest's bytes around a ref's bytes, as they came."""
    field = pb.GetMetricsRequest(metricName=metric_name).SerializeToString()
    return _length_delimited(1, ref) + field


def _length_delimited(field: int, data: bytes) -> bytes:
    size, varint = len(data), bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        varint.append(byte | (0x80 if size else 0))
        if not size:
            break
    return bytes([field << 3 | 2]) + bytes(varint) + data


@pytest.fixture
def running() -> Iterator[RunningServer]:
    server = start_server(ServerConfig(host="127.0.0.1", port=0, metrics_port=None))
    yield server
    server.stop(0)


def raw_calls(port: int) -> tuple[grpc.Channel, dict[str, grpc.UnaryUnaryMultiCallable]]:
    """The three unary methods taking and returning bytes as they are."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    service = "/externalscaler.ExternalScaler/"
    return channel, {
        method: channel.unary_unary(service + method)
        for method in ("GetMetricSpec", "GetMetrics", "IsActive")
    }


def test_every_form_of_one_ref_is_one_trigger_and_one_answer(running: RunningServer) -> None:
    forms = rotations("web", WINDOW)
    assert len(set(forms)) == len(WINDOW)  # the rotations are distinct bytes
    channel, call = raw_calls(running.port)
    with channel:
        for _ in range(3):  # each form again and again, as KEDA's polls send them
            for form in forms:
                metrics = pb.GetMetricsResponse.FromString(
                    call["GetMetrics"](metrics_request(form), timeout=5)
                )
                assert metrics.metricValues[0].metricValue == 3
                assert metrics.metricValues[0].metricName == "tidescaler"
                assert pb.IsActiveResponse.FromString(call["IsActive"](form, timeout=5)).result
                spec = pb.GetMetricSpecResponse.FromString(call["GetMetricSpec"](form, timeout=5))
                assert spec.metricSpecs[0].targetSize == 1
    service = running.service
    assert len(service._resolved) == 1  # one ScaledObject, one trigger
    assert len(service._metrics_forms) == len(forms)
    assert len(service._ref_forms) == len(forms)


def test_a_form_remembers_the_metric_name_it_asked_for(running: RunningServer) -> None:
    (form, *_) = rotations("web", WINDOW)
    channel, call = raw_calls(running.port)
    with channel:
        for name in ("tidescaler", "s0-tidescaler", "", "tidescaler"):
            answer = pb.GetMetricsResponse.FromString(
                call["GetMetrics"](metrics_request(form, name), timeout=5)
            )
            assert answer.metricValues[0].metricName == (name or "tidescaler")


def test_a_form_whose_trigger_was_forgotten_is_resolved_again(running: RunningServer) -> None:
    """The trigger table has its own bound: a form it outlived finds no trigger and its
    request is decoded again."""
    service = running.service
    service._resolved = _ResolvedTriggers(limit=1, max_bytes=1 << 20)
    first = rotations("web", WINDOW)[0]
    other = rotations("api", WINDOW | {"desiredReplicas": "5"})[0]
    channel, call = raw_calls(running.port)
    with channel:
        for form, replicas in ((first, 3), (other, 5), (first, 3), (other, 5)):
            answer = pb.GetMetricsResponse.FromString(
                call["GetMetrics"](metrics_request(form), timeout=5)
            )
            assert answer.metricValues[0].metricValue == replicas
    assert len(service._resolved) == 1


def test_invalid_requests_leave_no_form_and_are_refused_each_time(running: RunningServer) -> None:
    broken = rotations("web", WINDOW | {"desiredReplicas": "many"})
    channel, call = raw_calls(running.port)
    with channel:
        for _ in range(2):
            for form in broken:
                for method, data in (
                    ("GetMetrics", metrics_request(form)),
                    ("IsActive", form),
                    ("GetMetricSpec", form),
                ):
                    with pytest.raises(grpc.RpcError) as refused:
                        call[method](data, timeout=5)
                    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                    assert "desiredReplicas" in (refused.value.details() or "")
            # Bytes that are no message at all.
            with pytest.raises(grpc.RpcError) as refused:
                call["IsActive"](b"\xff\xff\xff", timeout=5)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    service = running.service
    assert len(service._metrics_forms) == len(service._ref_forms) == 0
    assert len(service._resolved) == 0


def test_the_forms_are_bounded_in_number_and_in_bytes() -> None:
    forms = _WireForms(limit=4, max_bytes=1 << 20)
    for i in range(10):
        forms.put(b"form-%d" % i, b"key")
        assert len(forms) <= 4
    assert forms.get(b"form-9") == (b"key", "")  # the latest is always kept
    by_bytes = _WireForms(limit=1000, max_bytes=3 * (1000 + FORM_ENTRY_BYTES))
    for i in range(10):
        by_bytes.put(bytes([i]) * 1000, b"k" * 1000)
        assert len(by_bytes) <= 3
    assert by_bytes.get(bytes([9]) * 1000) == (b"k" * 1000, "")
    # A form over the size bound is not kept (it is decoded on every call).
    forms.put(b"x" * (FORM_MAX_BYTES + 1), b"key")
    assert forms.get(b"x" * (FORM_MAX_BYTES + 1)) is None


def test_a_tenant_sending_a_new_form_on_every_call_cannot_grow_the_forms(
    running: RunningServer,
) -> None:
    """Unknown fields make every request a new form of one ScaledObject: each is kept
    until the bound, then the forms start again, and every answer is right."""
    service = running.service
    service._metrics_forms = _WireForms(limit=50, max_bytes=1 << 20)
    (form, *_) = rotations("web", WINDOW)
    channel, call = raw_calls(running.port)
    with channel:
        for i in range(200):
            unknown = _length_delimited(15, b"%d" % i)  # field 15: not in the message
            answer = pb.GetMetricsResponse.FromString(
                call["GetMetrics"](metrics_request(form) + unknown, timeout=5)
            )
            assert answer.metricValues[0].metricValue == 3
            assert len(service._metrics_forms) <= 50
    assert len(service._resolved) == 1


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/go_client_forms built against the Go code generated from our proto."""
    go, plugin = shutil.which("go"), shutil.which("protoc-gen-go")
    if go is None or plugin is None or not PROTOBUF_GO.is_dir():
        pytest.skip(
            "a Go client's byte forms need Go, protobuf-go and protoc-gen-go (Debian packages "
            "golang-go, golang-google-protobuf-dev, protoc-gen-go); run the README's test "
            "command (make test), which installs them"
        )
    work = tmp_path_factory.mktemp("go-client")
    generated = work / "src" / "externalscaler"
    generated.mkdir(parents=True)
    program = work / "src" / "goclientforms"
    program.mkdir()
    shutil.copy(GO_CLIENT, program / "main.go")
    protoc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{TESTS.parent / 'protos'}",
            f"--plugin=protoc-gen-go={plugin}",
            f"--go_out={generated}",
            "externalscaler.proto",
        ],
        capture_output=True,
        text=True,
    )
    assert protoc.returncode == 0, protoc.stderr
    binary = work / "go_client_forms"
    env = {
        **os.environ,
        "GOPATH": f"{work}{os.pathsep}{GOPATH}",
        "GO111MODULE": "off",
        "GOFLAGS": "",
        # Compiled packages kept between runs, beside the cron oracle's.
        "GOCACHE": str(TESTS / ".oracle" / "go-build"),
    }
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=program, env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    return binary


def go_forms(client: Path, name: str, metadata: dict[str, str]) -> list[bytes]:
    """The distinct bytes of one ScaledObjectRef message marshalled 20,000 times."""
    pairs = [f"{key}={value}" for key, value in metadata.items()]
    out = subprocess.run(
        [str(client), "20000", name, "shop", *pairs], capture_output=True, text=True, check=True
    )
    return [bytes.fromhex(line) for line in out.stdout.split()]


def test_a_go_clients_forms_of_one_ref_are_few_and_one_trigger(
    go_client: Path, running: RunningServer
) -> None:
    forms = go_forms(go_client, "web", WINDOW)
    # Each is the same message (a map's order is not part of it) ...
    expected = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=WINDOW)
    assert all(pb.ScaledObjectRef.FromString(form) == expected for form in forms)
    # ... in at most as many forms as the map has entries (the README's claim).
    assert 1 < len(forms) <= len(WINDOW)
    channel, call = raw_calls(running.port)
    with channel:
        for _ in range(3):
            for form in forms:
                metrics = pb.GetMetricsResponse.FromString(
                    call["GetMetrics"](metrics_request(form), timeout=5)
                )
                assert metrics.metricValues[0].metricValue == 3
                assert pb.IsActiveResponse.FromString(call["IsActive"](form, timeout=5)).result
    service = running.service
    assert len(service._resolved) == 1
    assert len(service._metrics_forms) == len(service._ref_forms) == len(forms)


@pytest.mark.parametrize("entries", [9, 13])
def test_a_larger_map_comes_in_a_bounded_number_of_forms(go_client: Path, entries: int) -> None:
    metadata = {f"key{i}": f"value{i}" for i in range(entries)}
    forms = go_forms(go_client, "web", metadata)
    assert len(forms) <= 2 * entries  # 10 and 16 with Go 1.19
