"""A stand-in for the part of the Kubernetes API tidescaler uses, on 127.0.0.1.

No API server can run on the machines the suite runs on (no container engine,
no kube-apiserver package), so this small threaded HTTP server answers the
requests the real `kubernetes` client makes, with the object shapes a real API
server returns:

- ScaledObjects (keda.sh/v1alpha1) as `kubectl get scaledobject -o json` prints
  them: spec fields from KEDA's CRD (deploy/ examples are validated against it);
- Deployments and StatefulSets (apps/v1) and their `scale` subresource, whose
  `status.selector` is the label selector serialised as a string
  (autoscaling/v1 Scale in the Kubernetes API reference);
- PodList with pods carrying `status.conditions` (PodScheduled, Initialized,
  ContainersReady, Ready with `lastTransitionTime`) and `containerStatuses`
  with `restartCount`, as `kubectl get pods -o json` shows them;
- Events (core/v1): create (201, 409 AlreadyExists for a taken name) and
  strategic-merge PATCH (200, 404 NotFound for an expired one);
- errors as metav1.Status objects, `{"kind":"Status","apiVersion":"v1",
  "status":"Failure","message":...,"reason":...,"details":...,"code":...}`,
  with the messages the API server writes for 401 Unauthorized, 403 Forbidden
  (`events is forbidden: User "system:serviceaccount:..." cannot create resource
  "events" in API group "" in the namespace "..."`, as quoted in RBAC issues of
  many operators, e.g. cloudflare/origin-ca-issuer#206), 404 NotFound
  (`scaledobjects.keda.sh "web" not found`), 409 AlreadyExists and 429
  TooManyRequests (with Retry-After, as API Priority and Fairness answers).

Tests inject faults per route (`fail`), make the server hang (`hang`) or stop
it, and read back every request the client made.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Object = dict[str, Any]

SERVICE_ACCOUNT = "system:serviceaccount:tidescaler:tidescaler"


def status(code: int, reason: str, message: str, details: Object | None = None) -> Object:
    body: Object = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def forbidden(verb: str, resource: str, group: str, namespace: str) -> Object:
    return status(
        403,
        "Forbidden",
        f'{resource} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} resource '
        f'"{resource}" in API group "{group}" in the namespace "{namespace}"',
        {"kind": resource, **({"group": group} if group else {})},
    )


UNAUTHORIZED = status(401, "Unauthorized", "Unauthorized")
TOO_MANY_REQUESTS = status(
    429,
    "TooManyRequests",
    "Too many requests, please try again later.",
    {"retryAfterSeconds": 1},
)


def not_found(resource: str, group: str, name: str) -> Object:
    full = f"{resource}.{group}" if group else resource
    return status(
        404,
        "NotFound",
        f'{full} "{name}" not found',
        {"name": name, **({"group": group} if group else {}), "kind": resource},
    )


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    make: Callable[[str], Object]  # path -> Status body
    times: int | None  # None: every time


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections cut by `close` (a dead API server) are expected, not worth a trace."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | OSError):
            super().handle_error(request, client_address)


_ROUTE = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/namespaces/(?P<ns>[^/]+)/"
    r"(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


class KubeApiStandIn:
    """The stand-in server; objects live in plain dicts the tests fill."""

    def __init__(self) -> None:
        self.scaledobjects: dict[tuple[str, str], Object] = {}
        self.workloads: dict[tuple[str, str, str], Object] = {}  # (resource, ns, name)
        self.pods: dict[str, list[Object]] = {}
        self.events: dict[tuple[str, str], Object] = {}
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.released = threading.Event()
        self.released.set()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified when an Event is written
        self.connections: set[socket.socket] = set()
        self._version = 1000
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with stand_in.lock:
                    stand_in.connections.add(self.connection)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def _handle(self) -> None:
                body = self._body()
                stand_in.released.wait()
                code, answer, headers = stand_in.answer(
                    self.command, self.path, body, self.headers.get("Content-Type", "")
                )
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle --

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> KubeApiStandIn:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        # Keep-alive connections would go on being served: cut them, as a dead server does.
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self.connections.clear()
        self.released.set()

    def kubeconfig(self, directory: Path) -> Path:
        """A kubeconfig pointing the real client at this server with a bearer token."""
        path = directory / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
                    "users": [{"name": "tidescaler", "user": {"token": "stand-in-token"}}],
                    "contexts": [
                        {
                            "name": "stand-in",
                            "context": {"cluster": "stand-in", "user": "tidescaler"},
                        }
                    ],
                    "current-context": "stand-in",
                }
            )
        )
        return path

    # -- test controls --

    def fail(
        self, method: str, pattern: str, make: Callable[[str], Object], times: int | None = None
    ) -> None:
        """Answer requests matching `method` and the path regex with a Status error."""
        self.faults.append(Fault(method, re.compile(pattern), make, times))

    def hang(self) -> None:
        """Hold every request until `release` (an API server that stopped answering)."""
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def requests_of(self, method: str, prefix: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    def _events_about(self, namespace: str, name: str) -> list[Object]:
        return [
            e
            for e in self.events.values()
            if e["involvedObject"]["namespace"] == namespace and e["involvedObject"]["name"] == name
        ]

    def events_about(self, namespace: str, name: str) -> list[Object]:
        with self.lock:
            return self._events_about(namespace, name)

    def wait_for_events(
        self, namespace: str, name: str, count: int, timeout: float = 10.0
    ) -> list[Object]:
        """The Events about an object once there are at least `count` (or at `timeout`)."""
        with self.changed:
            self.changed.wait_for(
                lambda: len(self._events_about(namespace, name)) >= count, timeout
            )
            return self._events_about(namespace, name)

    # -- the API --

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def answer(
        self, method: str, raw_path: str, body: Any, content_type: str
    ) -> tuple[int, Object, dict[str, str]]:
        parts = urlsplit(raw_path)
        path, query = parts.path, parse_qs(parts.query)
        with self.lock:
            self.requests.append(Request(method, path, query, content_type, body))
            for fault in self.faults:
                if fault.method == method and fault.pattern.search(path):
                    if fault.times is not None:
                        if fault.times <= 0:
                            continue
                        fault.times -= 1
                    answer = fault.make(path)
                    headers = {"Retry-After": "1"} if answer["code"] == 429 else {}
                    return int(answer["code"]), answer, headers
            match = _ROUTE.match(path)
            if match is None:
                return (
                    404,
                    status(404, "NotFound", "the server could not find the requested resource"),
                    {},
                )
            return self._route(method, match.groupdict(), query, body)

    def _route(
        self, method: str, route: dict[str, Any], query: dict[str, list[str]], body: Any
    ) -> tuple[int, Object, dict[str, str]]:
        ns, resource, name, sub = route["ns"], route["resource"], route["name"], route["sub"]
        if resource == "scaledobjects" and method == "GET":
            found = self.scaledobjects.get((ns, name))
            if found is None:
                return 404, not_found("scaledobjects", "keda.sh", name), {}
            return 200, found, {}
        if resource in ("deployments", "statefulsets") and method == "GET":
            found = self.workloads.get((resource, ns, name))
            if found is None:
                return 404, not_found(resource, "apps", name), {}
            return 200, (scale_of(found) if sub == "scale" else found), {}
        if resource == "pods" and method == "GET" and name is None:
            selector = (query.get("labelSelector") or [""])[0]
            items = [p for p in self.pods.get(ns, []) if matches(p, selector)]
            # Chunked lists as the API server pages them: `limit`, and an opaque
            # `continue` token in the list's metadata while more remain.
            start = int((query.get("continue") or ["0"])[0])
            limit = int((query.get("limit") or ["0"])[0]) or len(items)
            page, rest = items[start : start + limit], items[start + limit :]
            metadata = {"resourceVersion": self._next_version()}
            if rest:
                metadata["continue"] = str(start + limit)
                metadata["remainingItemCount"] = len(rest)
            return (
                200,
                {"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": page},
                {},
            )
        if resource == "events" and method == "POST" and name is None:
            event_name = body["metadata"]["name"]
            if (ns, event_name) in self.events:
                return (
                    409,
                    status(
                        409,
                        "AlreadyExists",
                        f'events "{event_name}" already exists',
                        {"name": event_name, "kind": "events"},
                    ),
                    {},
                )
            created = json.loads(json.dumps(body))
            created["metadata"].update(
                uid=f"ev-{len(self.events)}",
                resourceVersion=self._next_version(),
                creationTimestamp=body.get("firstTimestamp"),
            )
            self.events[(ns, event_name)] = created
            self.changed.notify_all()
            return 201, created, {}
        if resource == "events" and method == "PATCH" and name is not None:
            existing = self.events.get((ns, name))
            if existing is None:
                return 404, not_found("events", "", name), {}
            existing.update(body)  # a strategic merge of top-level scalars
            existing["metadata"]["resourceVersion"] = self._next_version()
            self.changed.notify_all()
            return 200, existing, {}
        return 404, status(404, "NotFound", "the server could not find the requested resource"), {}


def selector_string(selector: Object) -> str:
    """`spec.selector.matchLabels` as the API server formats it in Scale.status.selector."""
    return ",".join(f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items()))


def scale_of(workload: Object) -> Object:
    meta = workload["metadata"]
    replicas = workload.get("spec", {}).get("replicas", 1)
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", "1"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": replicas},
        "status": {
            "replicas": workload.get("status", {}).get("replicas", replicas),
            "selector": selector_string(workload["spec"]["selector"]),
        },
    }


def matches(pod: Object, selector: str) -> bool:
    labels = pod["metadata"].get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


# -- object builders with the shapes of real objects --


def scaled_object(
    namespace: str,
    name: str,
    triggers: list[Object],
    *,
    target: str = "web",
    kind: str | None = None,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    polling_interval: int | None = None,
    cooldown_period: int | None = None,
    behavior: Object | None = None,
    uid: str = "5b0c8e52-4f1d-4d8e-9a53-8c3c2f1e7a10",
) -> Object:
    """A ScaledObject as the API server returns it (kubectl get scaledobject web -o json)."""
    ref: Object = {"name": target}
    if kind is not None:
        ref = {"apiVersion": "apps/v1", "kind": kind, "name": target}
    spec: Object = {"scaleTargetRef": ref, "triggers": triggers}
    for key, value in (
        ("minReplicaCount", min_replicas),
        ("maxReplicaCount", max_replicas),
        ("pollingInterval", polling_interval),
        ("cooldownPeriod", cooldown_period),
    ):
        if value is not None:
            spec[key] = value
    if behavior is not None:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior}}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": "48213",
            "generation": 1,
            "creationTimestamp": "2026-11-02T09:14:07Z",
            "finalizers": ["finalizer.keda.sh"],
            "labels": {"scaledobject.keda.sh/name": name},
        },
        "spec": spec,
        "status": {
            "scaleTargetKind": "apps/v1.Deployment",
            "scaleTargetGVKR": {
                "group": "apps",
                "version": "v1",
                "kind": "Deployment",
                "resource": "deployments",
            },
            "originalReplicaCount": 2,
            "hpaName": f"keda-hpa-{name}",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "ScaledObjectReady",
                    "message": "ScaledObject is defined correctly and is ready for scaling",
                },
                {
                    "type": "Active",
                    "status": "True",
                    "reason": "ScalerActive",
                    "message": "Scaling is performed because triggers are active",
                },
                {
                    "type": "Fallback",
                    "status": "False",
                    "reason": "NoFallbackFound",
                    "message": "No fallbacks are active on this scaled object",
                },
            ],
        },
    }


def deployment(
    namespace: str,
    name: str,
    *,
    replicas: int = 3,
    cpu_request: str = "500m",
    memory_request: str = "256Mi",
    kind: str = "Deployment",
) -> Object:
    """A Deployment (or StatefulSet) as kubectl get deployment web -o json prints it."""
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "0e1f6c9a-2b55-4f3e-b1a7-6a0d4c1e9b22",
            "resourceVersion": "48190",
            "generation": 4,
            "creationTimestamp": "2026-10-20T08:00:00Z",
            "labels": labels,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": f"registry.example.com/{name}:1.4.2",
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": cpu_request, "memory": memory_request},
                                "limits": {"memory": memory_request},
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
                                "periodSeconds": 5,
                            },
                        }
                    ],
                    "restartPolicy": "Always",
                },
            },
        },
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
    }


def pod(
    namespace: str,
    name: str,
    labels: dict[str, str],
    created: str,
    ready_at: str | None,
    *,
    restarts: int = 0,
) -> Object:
    """A pod as `kubectl get pod -o json` prints it: conditions in the kubelet's order."""
    ready = ready_at is not None
    conditions = [
        {
            "type": "PodReadyToStartContainers",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": created,
        },
        {
            "type": "Initialized",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": created,
        },
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "lastProbeTime": None,
            "lastTransitionTime": ready_at or created,
            **(
                {}
                if ready
                else {
                    "reason": "ContainersNotReady",
                    "message": "containers with unready status: [web]",
                }
            ),
        },
        {
            "type": "ContainersReady",
            "status": "True" if ready else "False",
            "lastProbeTime": None,
            "lastTransitionTime": ready_at or created,
        },
        {
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": created,
        },
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**labels, "pod-template-hash": "7d9f8b6c5d"},
            "creationTimestamp": created,
            "uid": f"uid-{name}",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-7d9f8b6c5d",
                    "controller": True,
                    "blockOwnerDeletion": True,
                    "uid": "rs-uid",
                }
            ],
        },
        "spec": {"containers": [{"name": "web", "image": "registry.example.com/web:1.4.2"}]},
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": conditions,
            "containerStatuses": [
                {
                    "name": "web",
                    "ready": ready,
                    "restartCount": restarts,
                    "started": ready,
                    "image": "registry.example.com/web:1.4.2",
                    "state": {"running": {"startedAt": created}},
                }
            ],
            "startTime": created,
            "qosClass": "Burstable",
        },
    }
