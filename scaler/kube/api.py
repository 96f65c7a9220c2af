"""The Kubernetes API as tidescaler uses it: a handful of reads and two writes, plain dicts out.

One configured `kubernetes` client (in-cluster service account, or a kubeconfig
for local runs) with a timeout on every request and no retries: callers are
background loops that try again on their own schedule, and a hung API server
must never hold a thread for long. Every failure becomes one `KubeError` that
carries the HTTP status (None when the server could not be reached) and the
message of the API server's Status object, so logs say what RBAC is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from kubernetes import client, config

Object = dict[str, Any]

KEDA_GROUP = "keda.sh"
KEDA_VERSION = "v1alpha1"


class KubeError(Exception):
    """A failed API request: `status` is the HTTP code, None if the server was unreachable."""

    def __init__(
        self,
        what: str,
        message: str,
        status: int | None = None,
        reason: str = "",
        *,
        about_object: bool = False,
    ):
        super().__init__(f"{what}: {message}")
        self.status = status
        self.reason = reason
        # A problem of one object as it is (a kind not supported, no selector), not of
        # the API: logged per object, never taken for the API being unreachable.
        self.about_object = about_object

    @property
    def forbidden(self) -> bool:
        return self.status in (401, 403)

    @property
    def not_found(self) -> bool:
        return self.status == 404


def in_cluster() -> bool:
    """True when running in a pod with a service account (the kubelet sets this variable)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster configuration in a pod, otherwise the kubeconfig (KUBECONFIG or ~/.kube/config).

    Raises KubeError when neither is usable.
    """
    configuration = client.Configuration()
    if kubeconfig is not None:
        problem = _kubeconfig_problem(kubeconfig)
        if problem is not None:
            raise KubeError("Kubernetes configuration", problem)
    try:
        if kubeconfig is None and context is None and in_cluster():
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except (config.ConfigException, OSError, TypeError, ValueError) as err:
        message = str(err)
        if kubeconfig is None and "No configuration found" in message:
            # The library says only "Invalid kube-config file. No configuration found.":
            # neither where it looked nor what to do, and there was no file at all.
            message = _no_kubeconfig_found()
        raise KubeError("Kubernetes configuration", message) from None
    # One attempt per call: the loops that call retry on their own schedule.
    configuration.retries = 0
    return client.ApiClient(configuration)


def _no_kubeconfig_found() -> str:
    """Where the client looked for a kubeconfig and found none, and what to do about it."""
    # What the client read (at import): KUBECONFIG, a list of paths, else ~/.kube/config.
    where = str(config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
    looked = f"KUBECONFIG={where}" if os.environ.get("KUBECONFIG") is not None else where
    return (
        f"no kubeconfig found (looked at {looked}); pass --kubeconfig FILE or set KUBECONFIG "
        "(or run inside a cluster)"
    )


def _kubeconfig_problem(path: str) -> str | None:
    """Why the kubeconfig file at `path` cannot be used, named; None if it may be.

    The client library says neither which file it could not find nor, for a file
    that is not a kubeconfig, more than a Python error about item assignment.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as err:
        return f"--kubeconfig {path}: cannot read it ({err.strerror or err})"
    except (yaml.YAMLError, UnicodeDecodeError):
        return f"--kubeconfig {path}: not YAML, so not a kubeconfig"
    if not isinstance(data, dict):
        return (
            f"--kubeconfig {path}: not a kubeconfig (expected a mapping with clusters, "
            "contexts and users)"
        )
    return None


def _status_message(body: Any) -> tuple[str, str]:
    """The `message` and `reason` of a Kubernetes Status body, or the raw text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        status = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "no message", ""
    if isinstance(status, dict):
        return str(status.get("message") or text[:300]), str(status.get("reason") or "")
    return text[:300], ""


@dataclass(frozen=True)
class ScaleTarget:
    """A ScaledObject's `scaleTargetRef`, with KEDA's defaults (apps/v1 Deployment)."""

    namespace: str
    name: str
    kind: str = "Deployment"
    api_version: str = "apps/v1"

    def describe(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


class KubeApi:
    """The reads and writes tidescaler makes; each raises KubeError, never anything else."""

    def __init__(self, api_client: client.ApiClient, timeout_seconds: float = 5.0) -> None:
        self.api_client = api_client
        self.timeout = (timeout_seconds, timeout_seconds)
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Object:
        try:
            response = method(
                *args, _preload_content=False, _request_timeout=self.timeout, **kwargs
            )
            data = json.loads(response.data)
        except client.ApiException as err:
            message, reason = _status_message(err.body)
            raise KubeError(what, message, err.status, reason) from None
        except ValueError as err:
            raise KubeError(what, f"not a JSON answer: {err}") from None
        except Exception as err:  # urllib3 connection errors, timeouts, TLS
            raise KubeError(what, f"{err.__class__.__name__}: {err}") from None
        if not isinstance(data, dict):
            raise KubeError(what, "the answer is not a JSON object")
        return data

    # -- reads --

    def scaled_object(self, namespace: str, name: str) -> Object:
        return self._call(
            f"get scaledobject {namespace}/{name}",
            self.custom.get_namespaced_custom_object,
            KEDA_GROUP,
            KEDA_VERSION,
            namespace,
            "scaledobjects",
            name,
        )

    def workload(self, target: ScaleTarget) -> Object:
        """The Deployment or StatefulSet a ScaledObject scales."""
        what = f"get {target.describe()} in {target.namespace}"
        if target.kind == "Deployment":
            return self._call(
                what, self.apps.read_namespaced_deployment, target.name, target.namespace
            )
        if target.kind == "StatefulSet":
            return self._call(
                what, self.apps.read_namespaced_stateful_set, target.name, target.namespace
            )
        raise KubeError(
            what,
            f"scale target kind {target.kind!r} is not supported (Deployment, StatefulSet)",
            about_object=True,
        )

    def scale(self, target: ScaleTarget) -> Object:
        """The target's scale subresource: replicas and the pod selector as a string."""
        what = f"get {target.describe()}/scale in {target.namespace}"
        if target.kind == "Deployment":
            method = self.apps.read_namespaced_deployment_scale
        elif target.kind == "StatefulSet":
            method = self.apps.read_namespaced_stateful_set_scale
        else:
            raise KubeError(
                what,
                f"scale target kind {target.kind!r} is not supported (Deployment, StatefulSet)",
                about_object=True,
            )
        return self._call(what, method, target.name, target.namespace)

    def pods(
        self, namespace: str, label_selector: str, *, page: int = 100, most: int = 10_000
    ) -> Iterator[Object]:
        """The pods matching the selector, `page` at a time and `most` in all.

        A page at a time keeps memory to one page (pods carry whatever annotations
        their owner gave them); the caller keeps only what it needs of each."""
        token: str | None = None
        read = 0
        while read < most:
            data = self._call(
                f"list pods in {namespace} ({label_selector})",
                self.core.list_namespaced_pod,
                namespace,
                label_selector=label_selector,
                limit=min(page, most - read),
                **({"_continue": token} if token else {}),
            )
            items = [item for item in data.get("items") or [] if isinstance(item, dict)]
            read += len(items)
            yield from items
            token = str((data.get("metadata") or {}).get("continue") or "")
            if not token or not items:
                return

    # -- writes --

    def create_event(self, namespace: str, event: Object) -> Object:
        return self._call(
            f"create event in {namespace}", self.core.create_namespaced_event, namespace, event
        )

    def patch_event(self, namespace: str, name: str, patch: Object) -> Object:
        # client-go sends a strategic merge patch of count, lastTimestamp and message.
        return self._call(
            f"patch event {namespace}/{name}",
            self.core.patch_namespaced_event,
            name,
            namespace,
            patch,
            _content_type="application/strategic-merge-patch+json",
        )


def scale_target(scaled_object: Object) -> ScaleTarget:
    """The ScaledObject's `spec.scaleTargetRef`; raises KubeError if it has none."""
    metadata = scaled_object.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    ref = (scaled_object.get("spec") or {}).get("scaleTargetRef") or {}
    name = ref.get("name")
    if not isinstance(name, str) or not name:
        raise KubeError(
            f"scaledobject {namespace}/{metadata.get('name')}",
            "spec.scaleTargetRef.name is missing",
            about_object=True,
        )
    return ScaleTarget(
        namespace=namespace,
        name=name,
        kind=str(ref.get("kind") or "Deployment"),
        api_version=str(ref.get("apiVersion") or "apps/v1"),
    )
