"""deploy/rbac.yaml grants exactly what tidescaler's Kubernetes features use, and nothing more.

Every feature runs against the stand-in API (tests/kube_api_stand_in.py) through
the real `kubernetes` client; each request it makes is turned into the RBAC
permission the API server would check (verb, API group, resource). The
ClusterRole must allow each of them, and allow nothing that none of them used.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kube_api_stand_in import KubeApiStandIn, Request, deployment, pod, scaled_object

from scaler.kube.api import KubeApi, load_api_client
from scaler.kube.correlator import EventSpec
from scaler.kube.events import EventRecorder
from scaler.kube.startup import StartupMeter
from scaler.sim.from_cluster import read_workload

ROOT = Path(__file__).resolve().parents[1]
RBAC = ROOT / "deploy" / "rbac.yaml"
KUBERNETES_VERSION = "1.32.0"

Permission = tuple[str, str, str]  # verb, API group, resource[/subresource]

_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)/namespaces/[^/]+/(?P<resource>[^/]+)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


def permission(request: Request) -> Permission:
    """The RBAC check the API server makes for one request (its request info)."""
    match = _PATH.match(request.path)
    assert match, request.path
    named = match["name"] is not None
    verb = {
        ("GET", True): "get",
        ("GET", False): "list",
        ("POST", False): "create",
        ("PATCH", True): "patch",
    }[(request.method, named)]
    resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
    return verb, match["group"] or "", resource


def documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc]


def granted() -> set[Permission]:
    (role,) = [d for d in documents() if d["kind"] == "ClusterRole"]
    return {
        (verb, group, resource)
        for rule in role["rules"]
        for verb in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


@pytest.fixture
def stand_in() -> Iterator[KubeApiStandIn]:
    server = KubeApiStandIn().start()
    labels = {"app.kubernetes.io/name": "web"}
    trigger = {"type": "external", "metadata": {"query": "up", "threshold": "1"}}
    server.scaledobjects[("shop", "web")] = scaled_object("shop", "web", [trigger])
    server.scaledobjects[("shop", "db")] = scaled_object(
        "shop", "db", [trigger], target="db", kind="StatefulSet"
    )
    server.workloads[("deployments", "shop", "web")] = deployment("shop", "web")
    server.workloads[("statefulsets", "shop", "db")] = deployment("shop", "db", kind="StatefulSet")
    server.pods["shop"] = [
        pod("shop", "web-1", labels, "2026-11-30T00:00:00Z", "2026-11-30T00:00:40Z")
    ]
    yield server
    server.close()


def test_the_clusterrole_grants_exactly_what_the_features_use(
    stand_in: KubeApiStandIn, tmp_path: Path
) -> None:
    api = KubeApi(load_api_client(str(stand_in.kubeconfig(tmp_path))))
    try:
        # podStartupSeconds: auto, for a Deployment and a StatefulSet target.
        meter = StartupMeter(api)
        meter.refresh("shop", "web")
        meter.refresh("shop", "db")
        # Events: a new one, then the same again (a count bump).
        recorder = EventRecorder(api)
        spec = EventSpec("Warning", "BackendFailing", "query: connection refused")
        recorder.record("shop", "web", spec)
        recorder.record("shop", "web", spec)
        recorder.close()
        served = {permission(r) for r in stand_in.requests}
        # simulate --from-cluster runs with its user's kubeconfig, not the server's
        # account: what it needs beyond the server is the README's, not the role's.
        read_workload(api, "shop", "web")
        read_workload(api, "shop", "db")
    finally:
        api.close()
    assert served == granted()
    assert served == {
        ("create", "", "events"),
        ("patch", "", "events"),
        ("get", "keda.sh", "scaledobjects"),
        ("get", "apps", "deployments/scale"),
        ("get", "apps", "statefulsets/scale"),
        ("list", "", "pods"),
    }
    what_if = {permission(r) for r in stand_in.requests} - served
    assert what_if == {("get", "apps", "deployments"), ("get", "apps", "statefulsets")}


@pytest.mark.parametrize("doc", documents(), ids=lambda d: d["kind"])
def test_rbac_manifests_validate_strictly(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_binding_gives_the_role_to_the_servers_service_account() -> None:
    (binding,) = [d for d in documents() if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "tidescaler",
    }
    deployment_doc = yaml.safe_load((ROOT / "deploy" / "deployment.yaml").read_text())
    pod_spec = deployment_doc["spec"]["template"]["spec"]
    kustomization = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": pod_spec["serviceAccountName"],
            "namespace": kustomization["namespace"],
        }
    ]
    assert "rbac.yaml" in kustomization["resources"]
    # Without a token the API cannot be reached at all.
    assert pod_spec["automountServiceAccountToken"] is True
    account = yaml.safe_load((ROOT / "deploy" / "serviceaccount.yaml").read_text())
    assert account["automountServiceAccountToken"] is True


def test_a_strict_validation_would_catch_a_wrong_rule() -> None:
    (role,) = [d for d in documents() if d["kind"] == "ClusterRole"]
    broken = {**role, "rules": [{**role["rules"][0], "verb": ["get"]}]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
