"""Render deploy/'s kustomize base in Python: the features the base uses, no more.

kustomize itself is not packaged for Debian or PyPI, and kubectl (which embeds
it) may be missing; this renderer makes `deploy/install.yaml` reproducible
anywhere, and tests/test_deploy.py checks it against `kubectl kustomize` where
kubectl exists. Supported: `resources` (files), `components` (files),
`namespace` (with ServiceAccount subjects of role bindings), `labels` without
selectors or templates, `images`, and `configMapGenerator` from files without
a name hash. Anything else is an error naming the key, so the renderer never
silently differs from kustomize.

    python tests/kustomize_render.py deploy > deploy/install.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HEADER = (
    "# Rendered from the kustomize base in this folder: apply it with\n"
    "# `kubectl apply -f install.yaml` (or any tool that applies plain manifests).\n"
    "# Do not edit: change the base and run `make deploy/install.yaml`.\n"
)
SUPPORTED = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "components",
    "images",
    "configMapGenerator",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# kustomize's legacy order: these kinds first, in this order, then the rest by kind.
ORDER_FIRST = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


class Unsupported(ValueError):
    pass


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _kustomization(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(data) - SUPPORTED
    if unknown:
        raise Unsupported(f"{folder}/kustomization.yaml: {sorted(unknown)} not supported here")
    return data


def _resources(folder: Path, names: list[str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in names:
        path = folder / name
        if path.is_dir():
            raise Unsupported(f"{path}: a folder as a resource is not supported here")
        docs.extend(_load(path))
    return docs


def _generated_configmaps(folder: Path, generators: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for gen in generators:
        options = gen.get("options", {})
        if not options.get("disableNameSuffixHash") or set(gen) - {"name", "files", "options"}:
            raise Unsupported(f"configMapGenerator {gen.get('name')}: only hash-less files")
        data = {}
        for entry in gen["files"]:
            key, _, file = entry.rpartition("=") if "=" in entry else ("", "", entry)
            data[key or Path(file).name] = (folder / file).read_text(encoding="utf-8")
        metadata: dict[str, Any] = {"name": gen["name"]}
        if options.get("labels"):
            metadata["labels"] = dict(options["labels"])
        if options.get("annotations"):
            metadata["annotations"] = dict(options["annotations"])
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    return out


def _set_image(pod_spec: dict[str, Any], images: list[dict[str, Any]]) -> None:
    for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        name = container["image"].split("@")[0].rsplit(":", 1)[0]
        for image in images:
            if image["name"] == name:
                container["image"] = f"{image.get('newName', name)}:{image['newTag']}"


def render_docs(folder: Path) -> list[dict[str, Any]]:
    """The base in `folder` as kustomize builds it (see the module docstring for the subset)."""
    k = _kustomization(folder)
    docs = _resources(folder, k.get("resources", []))
    for component in k.get("components", []):
        c = _kustomization(folder / component)
        docs.extend(_resources(folder / component, c.get("resources", [])))
    docs.extend(_generated_configmaps(folder, k.get("configMapGenerator", [])))
    namespace = k.get("namespace")
    for doc in docs:
        meta = doc.setdefault("metadata", {})
        if namespace and doc["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = namespace
        if namespace and doc["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            for subject in doc.get("subjects", []):
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = namespace
        for label in k.get("labels", []):
            if label.get("includeSelectors") or label.get("includeTemplates"):
                raise Unsupported("labels with includeSelectors/includeTemplates")
            meta.setdefault("labels", {}).update(label["pairs"])
        if doc["kind"] in POD_TEMPLATE_KINDS:
            _set_image(doc["spec"]["template"]["spec"], k.get("images", []))
    rank = {kind: i for i, kind in enumerate(ORDER_FIRST)}
    last = {kind: i for i, kind in enumerate(ORDER_LAST)}

    def key(doc: dict[str, Any]) -> tuple[int, int, str, str, str]:
        kind = doc["kind"]
        group = 0 if kind in rank else (2 if kind in last else 1)
        position = rank.get(kind, last.get(kind, 0))
        meta = doc["metadata"]
        return (group, position, kind, meta.get("namespace", ""), meta["name"])

    return sorted(docs, key=key)


def render(folder: Path) -> str:
    """install.yaml's text: the header and every object, as YAML documents."""
    return HEADER + yaml.safe_dump_all(render_docs(folder), sort_keys=True, width=1000)


if __name__ == "__main__":
    sys.stdout.write(render(Path(sys.argv[1] if len(sys.argv) > 1 else "deploy")))
