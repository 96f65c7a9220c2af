"""deploy/: the kustomize base and the example ScaledObjects are valid and agree with each other.

Built-in kinds are checked against the Kubernetes OpenAPI schemas that
kubernetes-validate ships (strict: unknown fields fail); ScaledObjects against
the openAPIV3Schema of KEDA's own CRD (the copy in scaler/data/keda/); the
PodMonitor (an optional component), whose schema is not shipped,
by the fields the Prometheus operator reads. The example triggers must be
accepted by tidescaler's own policy parser, exactly as the server would see
them from KEDA.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kustomize_render import render, render_docs

from scaler.policy import parse_policy
from scaler.validate import scaledobject_schema

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PODMONITOR_COMPONENT = DEPLOY / "components" / "podmonitor"
EXAMPLES = sorted((DEPLOY / "examples").glob("*.yaml"))
DASHBOARD = DEPLOY / "grafana" / "tidescaler-dashboard.json"
KUBERNETES_VERSION = "1.32.0"
KUBECTL = shutil.which("kubectl")

Manifest = dict[str, Any]


def load_all(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@cache
def kustomize_build() -> str:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@cache
def base_manifests() -> tuple[Manifest, ...]:
    """The base as kustomize builds it: kubectl's build where kubectl exists, else ours."""
    if KUBECTL is not None:
        return tuple(doc for doc in yaml.safe_load_all(kustomize_build()) if doc)
    return tuple(render_docs(DEPLOY))


@cache
def podmonitor() -> Manifest:
    """The optional component's PodMonitor, as an overlay adding it gets it."""
    (doc,) = load_all(PODMONITOR_COMPONENT / "podmonitor.yaml")
    return doc


def by_kind(kind: str) -> Manifest:
    if kind == "PodMonitor":
        return podmonitor()
    found = [doc for doc in base_manifests() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def example_documents() -> list[tuple[str, Manifest]]:
    return [(f"{path.name}#{i}", doc) for path in EXAMPLES for i, doc in enumerate(load_all(path))]


def scaledobjects() -> list[tuple[str, Manifest]]:
    return [(name, doc) for name, doc in example_documents() if doc["kind"] == "ScaledObject"]


CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}


def test_the_kustomize_base_builds() -> None:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the kustomize build is not checked")
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(kustomize_build()) if doc)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Namespace",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]


def test_there_is_an_example_for_each_migration_and_the_full_policy() -> None:
    assert [path.name for path in EXAMPLES] == [
        "cron-migrated.yaml",
        "prometheus-migrated.yaml",
        "tidal-forecast.yaml",
    ]


@pytest.mark.parametrize(
    "doc",
    [
        *[pytest.param(doc, id=f"base:{doc['kind']}") for doc in base_manifests()],
        *[pytest.param(doc, id=f"example:{name}") for name, doc in example_documents()],
    ],
)
def test_every_manifest_validates_against_its_schema(doc: Manifest) -> None:
    if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
        # Not in kubernetes-validate's schemas; checked by the tests below.
        assert doc["metadata"]["name"]
        return
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field() -> None:
    # Guards the test above: validation must actually look at the fields.
    deployment = json.loads(json.dumps(by_kind("Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name,doc", scaledobjects(), ids=[n for n, _ in scaledobjects()])
def test_every_scaledobject_validates_against_kedas_crd(name: str, doc: Manifest) -> None:
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    jsonschema.validate(doc, scaledobject_schema())


def test_the_crd_schema_rejects_a_scaledobject_without_triggers() -> None:
    _, doc = scaledobjects()[0]
    broken = {**doc, "spec": {k: v for k, v in doc["spec"].items() if k != "triggers"}}
    with pytest.raises(jsonschema.ValidationError, match="triggers"):
        jsonschema.validate(broken, scaledobject_schema())


@pytest.mark.parametrize("name,doc", scaledobjects(), ids=[n for n, _ in scaledobjects()])
def test_every_example_trigger_is_accepted_by_the_policy_parser(name: str, doc: Manifest) -> None:
    triggers = [t for t in doc["spec"]["triggers"] if t["type"] in {"external", "external-push"}]
    assert triggers, f"{name} has no tidescaler trigger"
    for trigger in triggers:
        # KEDA passes the whole metadata map, scalerAddress included; the
        # parser itself knows which keys are KEDA's.
        parse_policy(trigger["metadata"])


@pytest.mark.parametrize("name,doc", scaledobjects(), ids=[n for n, _ in scaledobjects()])
def test_every_example_points_at_the_service(name: str, doc: Manifest) -> None:
    service = by_kind("Service")
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    address = (
        f"{service['metadata']['name']}.{service['metadata']['namespace']}"
        f".svc.cluster.local:{grpc_port}"
    )
    for trigger in doc["spec"]["triggers"]:
        assert trigger["metadata"]["scalerAddress"] == address


def test_the_full_example_uses_every_kind_of_signal_and_the_forecast() -> None:
    (doc,) = [doc for name, doc in scaledobjects() if name.startswith("tidal-forecast")]
    policy = parse_policy(doc["spec"]["triggers"][0]["metadata"])
    assert policy.windows and policy.query and policy.resources
    assert policy.forecast.mode.value == "on"


def pod_spec() -> Manifest:
    spec: Manifest = by_kind("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> Manifest:
    containers: list[Manifest] = pod_spec()["containers"]
    assert len(containers) == 1
    return containers[0]


def container_ports() -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container()["ports"]}


def test_the_deployment_runs_serve_on_the_documented_ports() -> None:
    ports = container_ports()
    assert ports == {"grpc": 9090, "metrics": 8080}
    assert "--port=9090" in container()["args"]
    assert "--metrics-port=8080" in container()["args"]


def test_probes_use_the_grpc_health_service_on_the_grpc_port() -> None:
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container()[probe]["grpc"]["port"] == container_ports()["grpc"], probe


def test_the_pod_is_locked_down() -> None:
    pod = pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources = container()["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert {"cpu", "memory"} <= set(resources["limits"])
    assert pod_spec()["serviceAccountName"] == by_kind("ServiceAccount")["metadata"]["name"]


def test_service_and_podmonitor_select_the_deployments_pods() -> None:
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = by_kind("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(container_ports())

    monitor = by_kind("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    # The metrics' own `namespace` label (the ScaledObject's) must win over the
    # target's, or the dashboard's namespace variable shows the scaler's.
    assert endpoint["honorLabels"] is True
    pdb = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_dashboard_configmap_carries_the_json_for_the_grafana_sidecar() -> None:
    configmap = by_kind("ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "tidescaler"
    (text,) = configmap["data"].values()
    assert json.loads(text) == json.loads(DASHBOARD.read_text())


def test_every_namespaced_object_lands_in_the_tidescaler_namespace() -> None:
    namespace = by_kind("Namespace")["metadata"]["name"]
    for doc in base_manifests():
        if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == namespace, doc["kind"]


def test_the_readme_overlay_sets_the_image_and_the_prometheus_url(tmp_path: Path) -> None:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the README's overlay is not built")
    readme = (DEPLOY.parent / "README.md").read_text()
    block = re.search(r"```yaml\n *# my-tidescaler/kustomization.yaml\n(.*?)```", readme, re.S)
    assert block, "the overlay example is missing from README.md"
    overlay = yaml.safe_load(textwrap.dedent(block[1]))
    assert overlay["components"] == [
        "../tidescaler/deploy/components/podmonitor",
        "../tidescaler/deploy/components/networkpolicy",
    ]
    overlay["resources"] = [os.path.relpath(DEPLOY, tmp_path)]
    overlay["components"] = [
        os.path.relpath(DEPLOY / "components" / name, tmp_path)
        for name in ("podmonitor", "networkpolicy")
    ]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    result = subprocess.run(
        [KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    built_docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    for kind in ("PodMonitor", "NetworkPolicy"):
        assert [d["metadata"]["namespace"] for d in built_docs if d["kind"] == kind] == [
            "tidescaler"
        ]
    (deployment,) = [d for d in built_docs if d["kind"] == "Deployment"]
    (built,) = deployment["spec"]["template"]["spec"]["containers"]
    image = overlay["images"][0]
    assert built["image"] == f"{image['newName']}:{image['newTag']}"
    env = {e["name"]: e["value"] for e in built["env"]}
    assert env["TIDESCALER_PROMETHEUS_URL"] == "http://prometheus-operated.monitoring.svc:9090"
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_install_yaml_is_the_rendered_base() -> None:
    """Fails when deploy/ changed without `make deploy/install.yaml`."""
    assert (DEPLOY / "install.yaml").read_text() == render(DEPLOY), (
        "deploy/install.yaml is stale: run `make deploy/install.yaml`"
    )


def test_the_python_rendering_matches_kustomize() -> None:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the renderer is not compared with kustomize")
    assert list(base_manifests()) == render_docs(DEPLOY)


def test_the_base_applies_without_the_prometheus_operator() -> None:
    kinds = {doc["kind"] for doc in base_manifests()}
    assert "PodMonitor" not in kinds
    assert {api for api, _ in CRD_KINDS if api.startswith("monitoring.coreos.com")}.isdisjoint(
        doc["apiVersion"] for doc in base_manifests()
    )


def test_an_overlay_adds_the_podmonitor_component(tmp_path: Path) -> None:
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, tmp_path)],
        "components": [os.path.relpath(PODMONITOR_COMPONENT, tmp_path)],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    if KUBECTL is not None:
        result = subprocess.run(
            [KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    else:
        docs = [*render_docs(DEPLOY), podmonitor()]
    (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    assert monitor["metadata"]["namespace"] == "tidescaler"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tidescaler"


NETWORKPOLICY_COMPONENT = DEPLOY / "components" / "networkpolicy"


def overlay_with(component: Path, tmp_path: Path) -> list[Manifest]:
    """The base plus `component`, as an overlay adding it gets them (kubectl's build where
    kubectl exists, else the base and the component's files as written)."""
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, tmp_path)],
        "components": [os.path.relpath(component, tmp_path)],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    if KUBECTL is None:
        # Without kubectl: the component's resources as written, and its patches merged
        # map into map (what a strategic merge does where a patch sets no list).
        spec = yaml.safe_load((component / "kustomization.yaml").read_text())
        docs = [*render_docs(DEPLOY)]
        for patch in (
            doc for p in spec.get("patches", []) for doc in load_all(component / p["path"])
        ):
            (target,) = [
                d
                for d in docs
                if (d["kind"], d["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])
            ]
            _merge_maps(target, patch)
        return [*docs, *(doc for f in spec["resources"] for doc in load_all(component / f))]
    result = subprocess.run(
        [KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _merge_maps(into: Manifest, patch: Manifest) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge_maps(into[key], value)
        else:
            assert not isinstance(value, list), "a list in a patch needs kustomize's own merge"
            into[key] = value


def test_the_networkpolicy_component_lets_only_keda_and_monitoring_in(tmp_path: Path) -> None:
    """Anyone who can reach port 9090 can have the scaler run PromQL against the
    Prometheus it reads (any namespace, any query): the component closes it to KEDA."""
    docs = overlay_with(NETWORKPOLICY_COMPONENT, tmp_path)
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    assert policy["metadata"]["namespace"] == "tidescaler"
    spec = policy["spec"]
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress"]  # egress (Prometheus, the API) unchanged
    allowed = {
        (rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], port)
        for rule in spec["ingress"]
        for port in (p["port"] for p in rule["ports"])
    }
    assert allowed == {("keda", "grpc"), ("monitoring", "metrics")}
    # The ports it names are the container's, and every one of them is covered.
    assert {port for _, port in allowed} == set(container_ports())
    # The base alone has none: it applies wherever NetworkPolicy is not enforced.
    assert "NetworkPolicy" not in {doc["kind"] for doc in base_manifests()}


def test_the_priority_component_schedules_the_scaler_ahead_of_workloads(tmp_path: Path) -> None:
    """On a full cluster a pod of default priority waits behind (or is preempted for) the
    workloads it scales; the component gives the scaler's pods a class above them."""
    docs = overlay_with(DEPLOY / "components" / "priority", tmp_path)
    (priority,) = [d for d in docs if d["kind"] == "PriorityClass"]
    kubernetes_validate.validate(priority, KUBERNETES_VERSION, strict=True)
    assert "namespace" not in priority["metadata"]  # cluster-scoped
    assert 0 < priority["value"] < 2_000_000_000  # above workloads, below system classes
    assert priority["globalDefault"] is False  # other pods keep their priority
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    spec = deployment["spec"]["template"]["spec"]
    assert spec["priorityClassName"] == priority["metadata"]["name"]
    # The patch adds the class and leaves the rest of the pod as the base has it.
    assert {k: v for k, v in spec.items() if k != "priorityClassName"} == pod_spec()
    assert "priorityClassName" not in pod_spec()  # the base: cluster-specific, left out


def test_the_replicas_spread_over_nodes_and_zones() -> None:
    """Every workload's scaling goes through these two replicas: one node or one zone
    going away must not take both."""
    spread = pod_spec()["topologySpreadConstraints"]
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert {c["topologyKey"] for c in spread} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        # A preference: a cluster with one node or one zone still schedules both.
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"


def test_the_pod_gets_no_service_links() -> None:
    """Kubernetes sets TIDESCALER_PORT=tcp://... for the Service `tidescaler` unless told
    not to; the server reads TIDESCALER_* as its flags."""
    assert pod_spec()["enableServiceLinks"] is False
