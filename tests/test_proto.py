"""The committed generated code matches protos/externalscaler.proto, which matches KEDA's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scaler.proto import externalscaler_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iscaler/proto=protos",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            "protos/externalscaler.proto",
        ],
        cwd=ROOT,
        check=True,
    )
    for name in ("externalscaler_pb2.py", "externalscaler_pb2_grpc.py", "externalscaler_pb2.pyi"):
        generated = (tmp_path / "scaler" / "proto" / name).read_text()
        committed = (ROOT / "scaler" / "proto" / name).read_text()
        assert generated == committed, f"scaler/proto/{name} is stale: run `make proto`"


def test_wire_contract_matches_keda() -> None:
    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    assert service.full_name == "externalscaler.ExternalScaler"
    methods = {
        m.name: (m.input_type.name, m.output_type.name, m.server_streaming) for m in service.methods
    }
    assert methods == {
        "IsActive": ("ScaledObjectRef", "IsActiveResponse", False),
        "StreamIsActive": ("ScaledObjectRef", "IsActiveResponse", True),
        "GetMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", False),
        "GetMetrics": ("GetMetricsRequest", "GetMetricsResponse", False),
    }
    fields = {
        (m, f.name): (f.number, f.type, f.is_repeated)
        for m, d in pb.DESCRIPTOR.message_types_by_name.items()
        for f in d.fields
    }
    F = pb.DESCRIPTOR.message_types_by_name["MetricSpec"].fields_by_name["targetSize"]
    string, int64, double, boolean, message = (
        F.TYPE_STRING,
        F.TYPE_INT64,
        F.TYPE_DOUBLE,
        F.TYPE_BOOL,
        F.TYPE_MESSAGE,
    )
    expected = {
        ("ScaledObjectRef", "name"): (1, string),
        ("ScaledObjectRef", "namespace"): (2, string),
        ("ScaledObjectRef", "scalerMetadata"): (3, message),
        ("IsActiveResponse", "result"): (1, boolean),
        ("GetMetricSpecResponse", "metricSpecs"): (1, message),
        ("MetricSpec", "metricName"): (1, string),
        ("MetricSpec", "targetSize"): (2, int64),
        ("MetricSpec", "targetSizeFloat"): (3, double),
        ("GetMetricsRequest", "scaledObjectRef"): (1, message),
        ("GetMetricsRequest", "metricName"): (2, string),
        ("GetMetricsResponse", "metricValues"): (1, message),
        ("MetricValue", "metricName"): (1, string),
        ("MetricValue", "metricValue"): (2, int64),
        ("MetricValue", "metricValueFloat"): (3, double),
    }
    assert {k: v[:2] for k, v in fields.items()} == expected
    assert {k for k, v in fields.items() if v[2] and k[1] != "scalerMetadata"} == {
        ("GetMetricSpecResponse", "metricSpecs"),
        ("GetMetricsResponse", "metricValues"),
    }
    meta = pb.DESCRIPTOR.message_types_by_name["ScaledObjectRef"].fields_by_name["scalerMetadata"]
    assert meta.message_type.GetOptions().map_entry
    assert pb.DESCRIPTOR.package == "externalscaler"
