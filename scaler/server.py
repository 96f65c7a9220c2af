"""The KEDA external scaler: gRPC in, engine decisions out.

The servicer translates the four RPCs of KEDA's contract to and from the core
and owns nothing else: the policy comes from `cached_policy`, observations from
the `Observer`, the number from `decide()`. GetMetricSpec answers from the
metadata and the server's configuration alone, because KEDA's fallback never
engages when GetMetricSpec fails.

Concurrency: one asyncio event loop (grpc.aio) on its own thread holds every
call and every StreamIsActive stream, so an open stream costs a coroutine, not
a thread. A decision that may wait on Prometheus runs on a bounded pool of
daemon threads (`max_workers`; streams get a pool of their own, so thousands of
streams re-evaluating cannot delay a KEDA call); a decision whose answers are
all at hand (cron only, or Prometheus answers shared within --coalesce-seconds)
and GetMetricSpec run on the loop itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import gc
import hashlib
import logging
import os
import re
import socket
import threading
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from scaler.backend_access import BackendAccess
from scaler.engine import Decision, EngineSettings, Observations, Reason, decide, holds_until
from scaler.observe import BackendProblem, ForecastProvider, Observer
from scaler.policy import (
    NAMESPACE_NAME,
    BackendOptions,
    Policy,
    PolicyError,
    cached_policy,
    canonical_url,
    policy_bytes,
)
from scaler.policy_limits import MAX_MESSAGE_BYTES, utf8_len
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.sources.bounded_http import redacted_url
from scaler.sources.prometheus import PrometheusSource
from scaler.telemetry import RPC_BUCKETS, add_call, new_rpc_counts
from scaler.tls_files import TlsFiles, check_pair
from scaler.warnings_gate import WarningGate
from scaler.workers import DaemonThreadPool

if TYPE_CHECKING:
    from scaler.kube.events import ScalerEvents

log = logging.getLogger("tidescaler.server")

# Measured pod start-up of a ScaledObject's target (namespace, name) -> seconds or None.
PodStartupLookup = Callable[[str, str], float | None]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name


@dataclass(frozen=True)
class ServerConfig:
    host: str = "[::]"
    port: int = 9090
    metrics_port: int | None = 8080  # None: no /metrics endpoint
    prometheus_url: str | None = None
    allowed_prometheus_urls: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    polling_interval_seconds: float = 30.0
    staleness_seconds: float = 120.0
    query_timeout_seconds: float = 3.0
    coalesce_seconds: float = 5.0
    push_interval_seconds: float = 5.0
    # Threads that run decisions which may wait on Prometheus. Streams hold none: they
    # are coroutines, and their re-evaluations use a second pool of the same size.
    max_workers: int = 32
    grace_seconds: float = 10.0
    # After SIGTERM, how long to go on answering with health NOT_SERVING before the
    # listener closes: the Service's endpoints and KEDA's connection move first.
    drain_seconds: float = 0.0
    # Backend failure semantics: how long an RPC may wait on Prometheus, and
    # which request options (KEDA's prometheus keys) triggers may set.
    answer_budget_seconds: float = 1.0
    allowed_query_parameters: tuple[str, ...] = ()
    allowed_custom_headers: tuple[str, ...] = ()
    allow_unsafe_ssl: bool = False
    allowed: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        urls = {canonical_url(u) for u in self.allowed_prometheus_urls if u.strip()}
        if self.prometheus_url:
            urls.add(canonical_url(self.prometheus_url))
        object.__setattr__(self, "allowed", frozenset(urls))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: set both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if not self.answer_budget_seconds > 0:
            raise ValueError(f"--answer-budget must be > 0, got {self.answer_budget_seconds}")
        if self.max_workers < 1:
            raise ValueError(f"--max-workers must be >= 1, got {self.max_workers}")
        if not self.push_interval_seconds > 0:
            raise ValueError(
                f"--push-interval-seconds must be > 0, got {self.push_interval_seconds}"
            )
        if not self.grace_seconds >= 0:
            raise ValueError(f"--grace-seconds must be >= 0, got {self.grace_seconds}")
        if not self.drain_seconds >= 0:
            raise ValueError(f"--drain-seconds must be >= 0, got {self.drain_seconds}")

    @property
    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            polling_interval_seconds=self.polling_interval_seconds,
            staleness_seconds=self.staleness_seconds,
        )


# Kubernetes' own limits: a ScaledObject's name is a DNS subdomain, its namespace a DNS
# label. Names label metrics and logs and key tables kept per ScaledObject, so a longer
# one (any tenant's client can send megabytes) is refused rather than stored.
MAX_NAME_BYTES = 253
MAX_NAMESPACE_BYTES = 63


# ... and their characters (Kubernetes' IsDNS1123Subdomain and IsDNS1123Label): names
# go back into status messages, logs and Events, where a newline or an escape sequence
# from a client that is not KEDA could pass for something else. Empty is let through
# (a client may leave the namespace out).
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _name_problem(ref: pb.ScaledObjectRef) -> str | None:
    for what, text, limit, pattern, kind in (
        ("name", ref.name, MAX_NAME_BYTES, _NAME, "lower-case letters, digits, '-' and '.'"),
        (
            "namespace",
            ref.namespace,
            MAX_NAMESPACE_BYTES,
            NAMESPACE_NAME,
            "lower-case letters, digits and '-'",
        ),
    ):
        size = utf8_len(text)
        if size > limit:
            return (
                f"invalid ScaledObjectRef: the {what} is {size} bytes long, more than "
                f"Kubernetes allows ({limit})"
            )
        if text and not pattern.fullmatch(text):
            return (
                f"invalid ScaledObjectRef: the {what} {text[:40]!r} is not a Kubernetes "
                f"{what} ({kind}, starting and ending with a letter or digit)"
            )
    return None


def status_details(message: str) -> str:
    """`message` cut to MAX_MESSAGE_BYTES of UTF-8. Every message is meant to be short
    already; this is the last guard, since a gRPC client refuses a status message over
    its metadata limit (8 KiB) and reports RESOURCE_EXHAUSTED instead of the status."""
    if utf8_len(message) <= MAX_MESSAGE_BYTES:
        return message
    cut = message.encode("utf-8", "surrogatepass")[: MAX_MESSAGE_BYTES - 3]
    return cut.decode("utf-8", "ignore") + "..."


class RequestError(Exception):
    """A request the service refuses, with the gRPC status to refuse it with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Recent:
    """A dict bounded to the `limit` most recently used keys, safe across threads.

    Per-ScaledObject tables must not grow with every name that ever passed by:
    the least recently used key goes first, in O(1).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def swap(self, key: Hashable, value: object) -> object | None:
        """Store `value` under `key` (now the most recent); returns the value it replaces."""
        with self._lock:
            items = self._items
            old = items.get(key)
            if old is None:
                items[key] = value
                if len(items) > self.limit:
                    items.popitem(last=False)
            else:
                items.move_to_end(key)
                if old is not value:
                    items[key] = value
            return old

    def __len__(self) -> int:
        return len(self._items)


# A decision, when it was made and until when (exclusive) it is known to hold.
_Made = tuple[float, float, Decision]


# What the "decision changed" log line compares: replicas, reason, activity, availability.
_Logged = tuple[int, Reason, bool | None, bool]


class Trigger:
    """A valid trigger: its policy, the Prometheus address it may use and the request
    options sent there (the server's verdict on them cannot change), its latest decision
    while it holds (see `ScalerService._conclude`) and what was last logged of it."""

    __slots__ = ("address", "answer", "key", "last", "logged", "options", "policy", "ref", "used")

    def __init__(
        self,
        policy: Policy,
        address: str | None,
        options: BackendOptions,
        ref: pb.ScaledObjectRef,
        key: bytes = b"",
    ) -> None:
        self.policy = policy
        self.address = address
        self.options = options
        # The ScaledObjectRef it was resolved from and its canonical bytes (its key in
        # _ResolvedTriggers): any request whose ref has those bytes says the same, and
        # every byte form of it shares this one key (see _WireForms).
        self.ref = ref
        self.key = key
        # Each replaced whole (one store), so a reader on another thread sees one or the
        # other; two threads deciding at once may log one change twice, never miss it.
        self.last: _Made | None = None
        self.logged: _Logged | None = None
        # GetMetrics' latest answer: the decision, the metric name asked for, the response
        # serialized.
        self.answer: tuple[Decision, str, bytes] | None = None
        # Asked for since the table's eviction last passed it over (see _ResolvedTriggers);
        # a trigger is made because it is being asked for.
        self.used = True


class _ResolvedTriggers:
    """Valid triggers by the canonical bytes of their ScaledObjectRef, bounded in number
    and in bytes; safe across threads.

    KEDA sends the same ScaledObjectRef on every poll. Its deterministic serialisation
    (map entries sorted, done in C in well under a microsecond) identifies the name,
    namespace and metadata exactly, whatever order the client wrote the map in, so a
    repeat skips copying the map out of the protobuf, the size limits, hashing it for
    the policy cache and the allow-list checks: their verdict cannot have changed, as
    the server's configuration does not. Invalid triggers are never kept; they go
    through every check (and Event) each time.

    Eviction is the CLOCK algorithm (LRU's second-chance approximation): a look-up only
    marks its trigger used (as its making does), so every call's look-up is a dict read
    and a store, with no lock and no reordering (in a loaded server each touch of memory
    is a likely cache miss). Over a bound, the oldest trigger goes unless it was used
    since it was last passed over; then it goes to the young end, unmarked, and the next
    oldest is looked at.
    """

    def __init__(self, limit: int, max_bytes: int) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self._items: OrderedDict[bytes, Trigger] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # for `put`: a look-up needs none (one dict read)

    def get(self, key: bytes) -> Trigger | None:
        found = self._items.get(key)
        if found is not None:
            found.used = True
        return found

    def put(self, key: bytes, resolved: Trigger) -> None:
        with self._lock:
            items = self._items
            if key in items:
                return
            items[key] = resolved
            self._bytes += _resolved_bytes(key, resolved)
            while self._bytes > self.max_bytes or len(items) > self.limit:
                old, trigger = items.popitem(last=False)
                if trigger.used:
                    trigger.used = False  # its second chance
                    items[old] = trigger
                else:
                    self._bytes -= _resolved_bytes(old, trigger)

    def __contains__(self, key: bytes) -> bool:
        """Whether `key` is kept; unlike `get`, not a use."""
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def _resolved_bytes(key: bytes, trigger: Trigger) -> int:
    """What a kept trigger holds: its key, itself, and its policy (which it keeps alive
    after the policy cache has let it go)."""
    return len(key) + RESOLVED_ENTRY_BYTES + policy_bytes(trigger.policy)


class _WireForms:
    """The canonical key (and metric name) of a request, by the bytes it came in, so that
    a repeat is neither decoded nor its ScaledObjectRef serialized again.

    KEDA builds each ScaledObject's ScaledObjectRef once and sends that same message on
    every call. gRPC-go writes its metadata map in Go's map order, which starts at a
    random entry on each call, so one ref comes in a few byte forms, each again and
    again: at most as many as the map has entries up to 8, at most twice as many
    beyond (tests/test_server_wire_forms.py, with a Go client). Only forms of valid
    triggers are kept, up to FORM_MAX_BYTES each, within a bound in number and bytes;
    when full it starts empty (each form is then decoded once more). The event loop
    alone uses it.
    """

    def __init__(self, limit: int, max_bytes: int) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self._forms: dict[bytes, tuple[bytes, str]] = {}
        self._bytes = 0

    def get(self, data: bytes) -> tuple[bytes, str] | None:
        return self._forms.get(data)

    def put(self, data: bytes, key: bytes, metric_name: str = "") -> None:
        """Remember that `data` is the request of the trigger kept under `key` (that very
        bytes object: the table's own, not a copy)."""
        if len(data) > FORM_MAX_BYTES:
            return
        size = len(data) + FORM_ENTRY_BYTES
        if len(self._forms) >= self.limit or self._bytes + size > self.max_bytes:
            self._forms, self._bytes = {}, 0
        self._forms[data] = (key, metric_name)
        self._bytes += size

    def __len__(self) -> int:
        return len(self._forms)


# gRPC core cancels calls beyond 1,000 (hard limit 3,000) waiting to be picked up by the
# application; a restarting KEDA operator may open all its external-push streams at once.
MAX_PENDING_CALLS = 20_000
# How long stop() waits, beyond the grace, for the loop to finish its own stopping.
STOP_MARGIN_SECONDS = 0.5
SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),  # a busy port is an error, not a second listener
    ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
]

# CPython's collector runs on net allocations of container objects (default 700, 10, 10).
# A decision made afresh allocates a few dozen that live until its trigger's next
# decision, and each gRPC call some more: with the default, young collections promote
# thousands of decisions a second into the old generation, and every few seconds a
# full collection walks the whole heap (every policy, trigger and telemetry state) for
# tens of milliseconds, holding every call on the event loop. Ten thousand: most
# objects are freed by their reference count before a young collection sees them, a
# decision seldom lives to an older one, and a young collection stays short.
GC_THRESHOLDS = (10_000, 50, 10)


def settle_garbage_collector() -> None:
    """Once the server runs: what start-up made (modules, the gRPC, Prometheus and
    Kubernetes clients: tens of thousands of objects) leaves the collector's view for
    good, and it runs at GC_THRESHOLDS. For `tidescaler serve`, not for a process that
    embeds the server (its heap and its collector are its own business)."""
    gc.collect()  # start-up's own garbage goes first, not into the frozen set
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# A decision whose answers are at hand (policy cached, Prometheus answers shared within
# --coalesce-seconds) takes about 11 us of CPU (benchmarks/profile_serving.py; a few
# times that in a loaded server), less than handing it to a thread and back through
# the event loop; it runs on the loop. Only one that would wait on a backend
# goes to a decision thread, so a hung Prometheus never blocks the loop.

# The longest a decision is reused (see ScalerService._conclude): KEDA's GetMetrics and
# IsActive of one poll come milliseconds apart; a second keeps the decision's telemetry
# (its time, what it saw) at most that far behind.
REUSE_SECONDS = 1.0

# podStartupSeconds: auto without Kubernetes API access: the default, for good, and why.
NO_STARTUP_MEASURE = "no Kubernetes API access to measure it (see --events, --kubeconfig)"

# Bound of the per-address table of warnings; beyond it the least recent address is
# forgotten (at worst it is warned of once more).
WARNED_ADDRESSES = 1_000
# A ScaledObject's warning (invalid metadata, a backend error) is logged when it changes,
# else again after this long; the last said is remembered for this many topics.
WARNING_REPEAT_SECONDS = 300.0
WARNED_SCALEDOBJECTS = 10_000
# Valid triggers remembered by their ScaledObjectRef's bytes, counted with their policy
# (see _resolved_bytes); a typical ref is a few hundred bytes, a valid one at most ~64
# KiB. Each also holds its latest decision (about 1.5 KiB), so at most ~15 MiB beyond.
RESOLVED_TRIGGERS = 10_000
RESOLVED_BYTES = 32 * 1024 * 1024  # 10,000 typical triggers (~3 KiB each with the policy)
RESOLVED_ENTRY_BYTES = 512  # the Trigger, the dict's slot and the key's header
# Request byte forms remembered (see _WireForms), for each of the two request messages:
# 1,000 ScaledObjects with 8 metadata entries are 8,000 forms (~5 MiB).
FORMS = 65_536
FORMS_BYTES = 16 * 1024 * 1024
FORM_MAX_BYTES = 4096  # a typical request is a few hundred bytes
FORM_ENTRY_BYTES = 200  # the dict's slot, the tuple and the bytes' headers


def _undecodable(message: Any, err: DecodeError) -> RequestError:
    """INVALID_ARGUMENT for request bytes that are not `message` (a client that is not
    KEDA, or a broken one)."""
    name = message.DESCRIPTOR.full_name
    return RequestError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request is not a valid {name} message ({str(err)[:200]})",
    )


def add_scaler_service(service: ScalerService, server: grpc.aio.Server) -> None:
    """The four methods of externalscaler.proto, passing bytes both ways.

    Each method decodes its own request, so that bytes that are not its message are
    answered INVALID_ARGUMENT like any bad input (gRPC answers a deserializer that
    raises with UNKNOWN and an error-level traceback per call), and returns its answer
    serialized: the few distinct answers are serialized once and shared by every call
    that gives them, instead of once per call."""
    unary, stream = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
    methods = (
        ("IsActive", unary),
        ("StreamIsActive", stream),
        ("GetMetricSpec", unary),
        ("GetMetrics", unary),
    )
    handlers = {name: kind(getattr(service, name)) for name, kind in methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _record_nothing(method: str, code: str, seconds: float) -> None:
    """The RPC recorder of a service without telemetry."""


def _unavailable(ref: pb.ScaledObjectRef, decision: Decision) -> RequestError:
    return RequestError(
        grpc.StatusCode.UNAVAILABLE,
        f"{ref.namespace}/{ref.name}: no usable observation ({decision.detail})",
    )


def _named(ref: pb.ScaledObjectRef) -> tuple[str, str] | None:
    """The ScaledObject's (namespace, name), when the request names both (a resource
    signal reads its HPA to tell a workload at zero; see `at_zero_query`)."""
    namespace, name = ref.namespace, ref.name
    return (namespace, name) if namespace and name else None


def _ref(data: bytes) -> pb.ScaledObjectRef:
    """The ScaledObjectRef in a request's bytes; RequestError if they are not one."""
    try:
        return REF(data)
    except DecodeError as err:
        raise _undecodable(pb.ScaledObjectRef, err) from None


REF: Callable[[bytes], pb.ScaledObjectRef] = pb.ScaledObjectRef.FromString
GET_METRICS_REQUEST: Callable[[bytes], pb.GetMetricsRequest] = pb.GetMetricsRequest.FromString


class ScalerService(pb_grpc.ExternalScalerServicer):
    """The four RPCs of KEDA's external scaler contract, as grpc.aio coroutines that
    take a request's bytes and answer bytes (see `add_scaler_service`).

    `decision_for` and `trigger_for` are plain functions (the first may block on
    Prometheus); the RPC methods hand blocking ones to `calls` or `streams`.
    """

    def __init__(
        self,
        config: ServerConfig,
        observer: Observer,
        *,
        telemetry: Any | None = None,
        clock: Callable[[], float] = time.time,
        calls: Executor | None = None,
        streams: Executor | None = None,
        events: ScalerEvents | None = None,
        pod_startup: PodStartupLookup | None = None,
    ) -> None:
        self.config = config
        # Kubernetes integration, both optional: Events (enqueue-only calls) and the
        # measured start-up for podStartupSeconds: auto (a dict read).
        self.events = events
        self.pod_startup = pod_startup
        self.observer = observer
        self.telemetry = telemetry
        self.clock = clock
        self.calls = calls
        self.streams = streams
        self.settings = config.engine_settings
        # Set on the loop when shutdown starts: every stream ends at once.
        self.stopping = asyncio.Event()
        self._warned_addresses = _Recent(WARNED_ADDRESSES)
        self._warnings = WarningGate(every=WARNING_REPEAT_SECONDS, keys=WARNED_SCALEDOBJECTS)
        self._resolved = _ResolvedTriggers(RESOLVED_TRIGGERS, RESOLVED_BYTES)
        # By the bytes of a GetMetricsRequest, and of a ScaledObjectRef (IsActive,
        # GetMetricSpec): one message's bytes may parse as the other's.
        self._metrics_forms = _WireForms(FORMS, FORMS_BYTES)
        self._ref_forms = _WireForms(FORMS, FORMS_BYTES)
        # Each call's count and duration (method, status code name, seconds), bound once.
        self._record_rpc: Callable[[str, str, float], None] = (
            _record_nothing if telemetry is None else telemetry.rpc_recorder()
        )
        # The OK calls of the three unary methods, counted inline on the event loop (see
        # `add_call`): the lock and the frames of `_record_rpc` cost a loaded server
        # several per cent of its calls/s.
        self._spec_ok, self._metrics_ok, self._active_ok = (
            new_rpc_counts(0.0) if telemetry is None else telemetry.rpc_counts(method, "OK")
            for method in ("GetMetricSpec", "GetMetrics", "IsActive")
        )

    # -- the core path, gRPC-free ------------------------------------------------

    def trigger_for(self, ref: pb.ScaledObjectRef) -> Trigger:
        """The policy and the Prometheus address it may use; RequestError if invalid."""
        key = ref.SerializeToString(deterministic=True)
        trigger = self._resolved.get(key)
        if trigger is None:
            trigger = self._new_trigger(ref, key)
        return trigger

    def _new_trigger(self, ref: pb.ScaledObjectRef, key: bytes) -> Trigger:
        """The trigger of a ScaledObjectRef not seen (or forgotten): resolved and kept."""
        policy, address = self._resolve(ref)
        trigger = Trigger(policy, address, self.observer.options_for(policy), ref, key)
        self._resolved.put(key, trigger)
        return trigger

    def _resolve(self, ref: pb.ScaledObjectRef) -> tuple[Policy, str | None]:
        problem = _name_problem(ref)
        if problem is not None:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            policy = cached_policy(ref.scalerMetadata)
        except PolicyError as err:
            message = str(err)
            if self.events is not None:
                self.events.policy_invalid(ref, message)
            self._warn("invalid trigger metadata", ref, ("invalid",), message, error=message)
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, message) from None
        needs_prometheus = (
            policy.query is not None or policy.resources is not None
        ) or policy.forecast_query is not None
        address = policy.prometheus_address or self.config.prometheus_url
        if not needs_prometheus:
            return policy, None
        if address is None:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid tidescaler trigger metadata: prometheusAddress is not set and the "
                "server has no --prometheus-url",
            )
        address = canonical_url(address)
        if address not in self.config.allowed:
            self._warn_foreign_address(ref, address)
            # The allow-list is the operator's business, not the caller's: it goes to the log.
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid tidescaler trigger metadata: {policy.prometheus_address_key}="
                f"{redacted_url(address)[:200]!r} is "
                "not allowed by this server (ask its operator to add it to "
                "--allowed-prometheus-urls)",
            )
        refused = self.observer.refusal(policy)
        if refused is not None:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, f"invalid tidescaler trigger metadata: {refused}"
            )
        return policy, address

    def _warn_foreign_address(self, ref: pb.ScaledObjectRef, address: str) -> None:
        if self._warned_addresses.swap(address, True) is None:
            log.warning(
                "prometheusAddress not allowed",
                extra={
                    "namespace": ref.namespace,
                    "scaledobject": ref.name,
                    "prometheus_address": redacted_url(address)[:200],
                    "allowed_prometheus_urls": sorted(map(redacted_url, self.config.allowed)),
                },
            )

    def decision_for(self, ref: pb.ScaledObjectRef) -> Decision:
        """The decision for `ref` now (perhaps unavailable: GetMetrics answers UNAVAILABLE
        then, and IsActive unless `activity_of` knows); RequestError if invalid."""
        decision = self._decide_now(ref, None)[1]
        assert decision is not None  # without a pool it is always made here
        return decision

    def _decision(self, ref: pb.ScaledObjectRef, trigger: Trigger) -> Decision:
        now = self.clock()
        policy, address, options = trigger.policy, trigger.address, trigger.options
        unchanged = now + self.observer.unchanged_for(policy, address, options)
        observed = self.observer.observe(
            policy, address, now, options, tenant=ref.namespace, scaled_object=_named(ref)
        )
        return self._conclude(ref, trigger, now, unchanged, *observed)

    def _conclude(
        self,
        ref: pb.ScaledObjectRef,
        trigger: Trigger,
        now: float,
        unchanged: float,
        observations: Observations,
        problems: list[BackendProblem],
    ) -> Decision:
        """The decision from what was observed, reported to logs, telemetry and Events.

        KEDA asks GetMetrics and then IsActive for a ScaledObject on every poll and every
        HPA sync, milliseconds apart. The second is answered with the decision the first
        made (see `_decided`) while nothing it was made from can have changed: the
        observations are known the same until `unchanged` (Observer.unchanged_for of the
        very answers read, or as of before they were read), no backend problem came with
        them, the start-up is not measured (podStartupSeconds: auto), and the clock has
        not reached `holds_until` (a window's edge, a reading going stale, the forecast's
        next point), nor gone REUSE_SECONDS on, nor back. It was reported when made; a
        reuse reports nothing."""
        policy = trigger.policy
        if policy.forecast.pod_startup_auto:
            if self.pod_startup is not None:
                measured = self.pod_startup(ref.namespace, ref.name)
                observations = replace(observations, pod_startup_seconds=measured)
            else:
                observations = replace(observations, pod_startup_problem=NO_STARTUP_MEASURE)
        decision = decide(policy, observations, now, self.settings)
        if now < unchanged and not problems and not policy.forecast.pod_startup_auto:
            until = min(
                unchanged,
                now + REUSE_SECONDS,
                holds_until(policy, observations, now, self.settings),
            )
            trigger.last = (now, until, decision)
        self._report(
            ref, trigger, decision, observations.demand.value if observations.demand else None, now
        )
        for problem in problems:
            self._report_backend_error(ref, problem)
        if self.events is not None:
            self.events.decision(ref, decision)
            for problem in problems:
                self.events.backend_failing(ref, problem.signal.value, problem.shown)
        if self.telemetry is not None and decision.forecast_upper is not None:
            errors = self.observer.forecast_errors(policy, trigger.address)
            if errors is not None:
                self.telemetry.record_forecast_error(
                    ref.namespace,
                    ref.name,
                    errors.smape / 100.0,
                    errors.under_rate,
                    errors.coverage,
                )
        return decision

    @staticmethod
    def activity_of(ref: pb.ScaledObjectRef, decision: Decision) -> bool:
        """Whether `ref` is active (IsActive); RequestError when a missing signal could
        change the answer (an available decision always knows)."""
        if not decision.active_known:
            raise _unavailable(ref, decision)
        return decision.active

    def _report(
        self,
        ref: pb.ScaledObjectRef,
        trigger: Trigger,
        decision: Decision,
        demand: float | None,
        now: float,
    ) -> None:
        namespace, name = ref.namespace, ref.name  # each read of a protobuf field makes a str
        if self.telemetry is not None:
            self.telemetry.record_decision(namespace, name, decision, demand, now)
        # Activity no RPC could tell (a missing demand) is logged as unknown, not inactive.
        active = decision.active if decision.active_known else None
        state = (decision.desired_replicas, decision.reason, active, decision.available)
        changed = trigger.logged != state
        trigger.logged = state
        if changed and log.isEnabledFor(logging.INFO):  # the fields cost more than the check
            log.info(
                "decision changed",
                extra={
                    "namespace": namespace,
                    "scaledobject": name,
                    "desired_replicas": decision.desired_replicas,
                    "active": active,
                    "reason": decision.reason.value,
                    "available": decision.available,
                    "detail": decision.detail,
                    "pod_startup_seconds": decision.pod_startup_seconds,
                    "pod_startup_source": decision.pod_startup_source,
                    "signals": {
                        r.signal.value: {
                            "status": r.status.value,
                            "replicas": r.replicas,
                            **({"detail": r.detail} if r.detail else {}),
                        }
                        for r in decision.signals
                    },
                },
            )

    def _report_backend_error(self, ref: pb.ScaledObjectRef, problem: BackendProblem) -> None:
        if self.telemetry is not None:
            self.telemetry.record_backend_error(ref.namespace, ref.name, problem.kind)
        self._warn(
            "backend error",
            ref,
            ("backend", problem.signal.value),
            problem.kind,
            signal=problem.signal.value,
            kind=problem.kind,
            error=problem.message,
        )

    def _warn(
        self,
        event: str,
        ref: pb.ScaledObjectRef,
        topic: tuple[str, ...],
        what: str,
        **fields: object,
    ) -> None:
        """Log a warning about `ref`'s `topic` when `what` it says changed, or again after
        WARNING_REPEAT_SECONDS; within the gate's rate (see scaler.warnings_gate)."""
        if not log.isEnabledFor(logging.WARNING):
            return
        namespace, name = ref.namespace, ref.name
        # Per trigger: a ScaledObject with two tidescaler triggers saying different
        # things would otherwise change what its key says on every call.
        trigger = hashlib.blake2b(ref.SerializeToString(deterministic=True), digest_size=8)
        key = (namespace, name, trigger.digest(), *topic)
        held_back = self._warnings.admit(key, what, self.clock())
        if held_back is None:
            return
        extra: dict[str, object] = {"namespace": namespace, "scaledobject": name, **fields}
        if held_back:
            extra["warnings_held_back"] = held_back
        log.warning(event, extra=extra)

    def _decide_now(
        self, ref: pb.ScaledObjectRef, pool: Executor | None
    ) -> tuple[Trigger, Decision | None]:
        """The trigger and `_decided`."""
        trigger = self.trigger_for(ref)
        return trigger, self._decided(ref, trigger, pool)

    def _decided(
        self, ref: pb.ScaledObjectRef, trigger: Trigger, pool: Executor | None
    ) -> Decision | None:
        """The trigger's latest decision while that holds; else, when every answer it
        needs is at hand (or there is no `pool`), the decision made here; else None: it
        goes to `pool`, as it may wait on Prometheus up to the answer budget."""
        now = self.clock()
        last = trigger.last
        if last is not None and last[0] <= now < last[1]:
            return last[2]  # it still holds (see `_conclude`)
        address = trigger.address
        if address is None or pool is None:
            # Configuration and the clock only: never blocks, not worth a thread hop.
            return self._decision(ref, trigger)
        observed = self.observer.observe_at_hand(
            trigger.policy, address, now, trigger.options, tenant=ref.namespace,
            scaled_object=_named(ref),
        )  # fmt: skip
        if observed is None:
            return None
        observations, problems, unchanged_for = observed
        return self._conclude(ref, trigger, now, now + unchanged_for, observations, problems)

    async def _decide_elsewhere(
        self, ref: pb.ScaledObjectRef, trigger: Trigger, pool: Executor
    ) -> Decision:
        return await asyncio.wrap_future(pool.submit(self._decision, ref, trigger))

    async def _decide(self, ref: pb.ScaledObjectRef, pool: Executor | None) -> Decision:
        """`decision_for`: here when every answer it needs is at hand, else on `pool`."""
        trigger, decision = self._decide_now(ref, pool)
        if decision is None:
            assert pool is not None
            decision = await self._decide_elsewhere(ref, trigger, pool)
        return decision

    # -- RPCs -------------------------------------------------------------------
    # Each RPC does its work inline (no nested coroutine on the warm path) and hands any
    # failure to `_fail`, which answers it with the right status.

    def _record(self, method: str, code: str, started: float) -> None:
        """Count the call under its status code's name (OK, INVALID_ARGUMENT, ...)."""
        self._record_rpc(method, code, time.perf_counter() - started)

    async def _fail(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        err: BaseException,
        started: float,
    ) -> NoReturn:
        """Record the failed call and end it: the request's own status, CANCELLED passed
        on, anything else INTERNAL (the service never crashes on a request)."""
        if isinstance(err, RequestError):
            self._record(method, err.code.name, started)
            await context.abort(err.code, status_details(str(err)))
        elif isinstance(err, asyncio.CancelledError):
            # The client gave up or the server is stopping.
            self._record(method, "CANCELLED", started)
            raise err
        elif isinstance(err, Exception):
            self._record(method, "INTERNAL", started)
            log.exception("internal error", extra={"method": method}, exc_info=err)
            await context.abort(
                grpc.StatusCode.INTERNAL,
                status_details(f"internal error: {err.__class__.__name__}: {err}"),
            )
        else:
            self._record(method, "UNKNOWN", started)
            raise err
        raise AssertionError("unreachable: context.abort raises")

    async def GetMetricSpec(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter()
        try:
            # Configuration only, never a backend.
            form = self._ref_forms.get(request)
            if form is None or (trigger := self._resolved.get(form[0])) is None:
                trigger = self._ref_request(request)
            response = _spec_response(trigger.policy.metric_name)
        except BaseException as err:
            await self._fail("GetMetricSpec", context, err, started)
        add_call(self._spec_ok, time.perf_counter() - started)
        return response

    # The unary methods find the trigger of a request by its bytes (see _WireForms) and
    # decode only a form not seen; GetMetrics and IsActive check the decision and count
    # the call inline (as `activity_of` and `add_call` do): in a loaded server every
    # Python frame on the path of every call costs a microsecond or so.

    def _ref_request(self, request: bytes) -> Trigger:
        """The trigger of a ScaledObjectRef's bytes in a form not seen (or forgotten)."""
        trigger = self.trigger_for(_ref(request))
        self._ref_forms.put(request, trigger.key)
        return trigger

    def _metrics_request(self, request: bytes) -> tuple[Trigger, str]:
        """The trigger and metric name of a GetMetricsRequest's bytes in a form not seen."""
        try:
            message = GET_METRICS_REQUEST(request)
        except DecodeError as err:
            raise _undecodable(pb.GetMetricsRequest, err) from None
        trigger = self.trigger_for(message.scaledObjectRef)
        self._metrics_forms.put(request, trigger.key, message.metricName)
        return trigger, message.metricName

    async def GetMetrics(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter()
        try:
            form = self._metrics_forms.get(request)
            if form is not None and (trigger := self._resolved.get(form[0])) is not None:
                name = form[1]
            else:
                trigger, name = self._metrics_request(request)
            ref = trigger.ref
            decision = self._decided(ref, trigger, self.calls)
            if decision is None:
                assert self.calls is not None
                decision = await self._decide_elsewhere(ref, trigger, self.calls)
            if not decision.available:
                raise _unavailable(ref, decision)
            answer = trigger.answer
            if answer is not None and answer[0] is decision and answer[1] == name:
                response = answer[2]  # the same decision, asked again
            else:
                response = _metrics_response(
                    name or trigger.policy.metric_name,
                    decision.desired_replicas,
                    decision.hpa_value,
                )
                if len(name) <= KEPT_NAME_CHARS:  # the name comes from the caller
                    trigger.answer = (decision, name, response)
        except BaseException as err:
            await self._fail("GetMetrics", context, err, started)
        elapsed = time.perf_counter() - started
        counts = self._metrics_ok
        counts[bisect_left(RPC_BUCKETS, elapsed)] += 1
        counts[-2] += elapsed
        return response

    async def IsActive(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter()
        try:
            form = self._ref_forms.get(request)
            if form is None or (trigger := self._resolved.get(form[0])) is None:
                trigger = self._ref_request(request)
            ref = trigger.ref
            decision = self._decided(ref, trigger, self.calls)
            if decision is None:
                assert self.calls is not None
                decision = await self._decide_elsewhere(ref, trigger, self.calls)
            if not decision.active_known:
                raise _unavailable(ref, decision)
            response = ACTIVE if decision.active else INACTIVE
        except BaseException as err:
            await self._fail("IsActive", context, err, started)
        elapsed = time.perf_counter() - started
        counts = self._active_ok
        counts[bisect_left(RPC_BUCKETS, elapsed)] += 1
        counts[-2] += elapsed
        return response

    async def StreamIsActive(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Send the state at once, then re-evaluate every push interval and send changes.

        Ends (OK) when the server starts shutting down; KEDA then reconnects, to
        another replica if this one is going away.
        """

        # Invalid metadata ends the stream with INVALID_ARGUMENT before anything is sent.
        started = time.perf_counter()
        try:
            ref = _ref(request)
            self.trigger_for(ref)
        except BaseException as err:
            await self._fail("StreamIsActive", context, err, started)
        self._record("StreamIsActive", "OK", started)
        last: bool | None = None
        while not self.stopping.is_set():
            active: bool | None = None
            try:
                active = self.activity_of(ref, await self._decide(ref, self.streams))
            except RequestError as err:
                if err.code is grpc.StatusCode.INVALID_ARGUMENT:
                    await context.abort(err.code, status_details(str(err)))
                # Backend trouble: say nothing rather than something wrong.
            except Exception:
                log.exception("internal error", extra={"method": "StreamIsActive"})
            if active is not None and active != last:
                last = active
                yield ACTIVE if active else INACTIVE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.config.push_interval_seconds)


# Answers go out serialized (see `add_scaler_service`). The few distinct ones are
# serialized once and shared by every call that gives them. A metric name comes from
# the request and may be anything: only short ones are kept.
ACTIVE: bytes = pb.IsActiveResponse(result=True).SerializeToString()
INACTIVE: bytes = pb.IsActiveResponse(result=False).SerializeToString()
RESPONSES_KEPT = 4096
KEPT_NAME_CHARS = 256


def _metrics_response(metric_name: str, replicas: int, value: float) -> bytes:
    if len(metric_name) > KEPT_NAME_CHARS:
        return _build_metrics_response(metric_name, replicas, value)
    return _kept_metrics_response(metric_name, replicas, value)


def _build_metrics_response(metric_name: str, replicas: int, value: float) -> bytes:
    # KEDA >= 2.17 reads the float (the demand in replicas, see Decision.metric_value);
    # an older KEDA reads the int, the whole count, as before.
    metric = pb.MetricValue(metricName=metric_name, metricValue=replicas, metricValueFloat=value)
    answer: bytes = pb.GetMetricsResponse(metricValues=[metric]).SerializeToString()
    return answer


_kept_metrics_response = functools.lru_cache(maxsize=RESPONSES_KEPT)(_build_metrics_response)


@functools.lru_cache(maxsize=RESPONSES_KEPT)
def _spec_response(metric_name: str) -> bytes:
    # policy.metric_name: bounded by the policy's own limits.
    spec = pb.MetricSpec(metricName=metric_name, targetSize=1, targetSizeFloat=1.0)
    answer: bytes = pb.GetMetricSpecResponse(metricSpecs=[spec]).SerializeToString()
    return answer


def check_tls_files(config: ServerConfig) -> None:
    """Refuse unreadable, malformed or mismatched PEM files before serving with them."""
    if config.tls_cert is not None and config.tls_key is not None:
        check_pair(config.tls_cert, config.tls_key, config.tls_client_ca)


def tls_files(
    config: ServerConfig, on_load: Callable[[str, float | None], None] | None = None
) -> TlsFiles | None:
    """The TLS files to serve (followed as they are rotated); None for plaintext."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    return TlsFiles(config.tls_cert, config.tls_key, config.tls_client_ca, on_load=on_load)


def bind_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on, in the operating system's words; None if it can.

    gRPC only says "failed to bind" (and logs a multi-line error of its own);
    binding a plain socket the same way first names the reason (address in
    use, permission denied, no such address).
    """
    bare = host.strip("[]")
    try:
        infos = socket.getaddrinfo(bare or None, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        return f"cannot resolve {host!r}: {err.strerror}"
    family, kind, proto, _, address = infos[0]
    try:
        probe = socket.socket(family, kind, proto)
    except OSError as err:
        if err.errno == errno.EAFNOSUPPORT and bare == "::":
            # No IPv6 on this host: gRPC listens on IPv4's wildcard instead, and so may we.
            return bind_problem("0.0.0.0", port)
        return os.strerror(err.errno) if err.errno else str(err)
    with probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return "address already in use (another process listens on that port)"
            return os.strerror(err.errno) if err.errno else str(err)
    return None


@dataclass
class RunningServer:
    """A started gRPC server on its own event-loop thread, usable from plain threads."""

    server: grpc.aio.Server
    port: int
    service: ScalerService
    health: health_aio.HealthServicer
    source: PrometheusSource
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    pools: tuple[DaemonThreadPool, ...]
    tls: TlsFiles | None = None  # request_reload() on SIGHUP

    def responsive(self, timeout: float) -> bool:
        """Whether the event loop, which answers every call, runs a callback within
        `timeout` seconds: a wedged or dead loop answers nothing, whatever health says."""
        if self.loop.is_closed() or not self.thread.is_alive():
            return False
        ran = threading.Event()
        try:
            self.loop.call_soon_threadsafe(ran.set)
        except RuntimeError:  # closed meanwhile
            return False
        return ran.wait(timeout)

    def not_serving(self, timeout: float) -> None:
        """Health answers NOT_SERVING from now on; every RPC is still served (the drain
        before `stop`). Waits at most `timeout` seconds for the loop to take it."""
        if self.loop.is_closed():
            return
        change = asyncio.run_coroutine_threadsafe(self.health.enter_graceful_shutdown(), self.loop)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            change.result(timeout)

    def stop(self, grace: float | None = None) -> None:
        """Graceful: report NOT_SERVING, end streams, finish calls in flight.

        Returns within `grace` seconds (plus a moment): calls still running then
        are cancelled, and a decision stuck on a backend is abandoned on its
        daemon thread rather than waited for.
        """
        if self.loop.is_closed():
            return
        # Every wait is bounded when a grace is given: a starved or blocked loop
        # thread must not hold the process past the grace Kubernetes allows.
        bound = None if grace is None else grace + STOP_MARGIN_SECONDS
        try:
            asyncio.run_coroutine_threadsafe(self._stop(grace), self.loop).result(bound)
        except concurrent.futures.TimeoutError:
            log.warning("graceful stop overran the grace period", extra={"grace_seconds": grace})
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(None if grace is None else STOP_MARGIN_SECONDS)
            if not self.thread.is_alive():  # a running loop cannot be closed
                self.loop.close()
            for pool in self.pools:
                pool.shutdown(wait=False, cancel_futures=True)
            self.source.close()

    async def _stop(self, grace: float | None) -> None:
        self.service.stopping.set()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def start_server(
    config: ServerConfig,
    *,
    telemetry: Any | None = None,
    forecasts: ForecastProvider | None = None,
    source: PrometheusSource | None = None,
    clock: Callable[[], float] = time.time,
    events: ScalerEvents | None = None,
    pod_startup: PodStartupLookup | None = None,
    tls_on_load: Callable[[str, float | None], None] | None = None,
) -> RunningServer:
    """Build and start the gRPC server on a new event-loop thread; returns once it listens.

    Raises ValueError for unusable TLS files and OSError when the port cannot be
    listened on, each with a one-line message naming the problem. With TLS, the
    files are followed as they change (`tls_on_load` is told of each read).
    """
    tls = tls_files(config, tls_on_load)
    # Before anything starts: fail fast and clean.
    credentials = tls.credentials() if tls is not None else None
    source = source or PrometheusSource(
        timeout_seconds=config.query_timeout_seconds,
        coalesce_seconds=config.coalesce_seconds,
        answer_budget_seconds=config.answer_budget_seconds,
    )
    pools = (
        DaemonThreadPool(config.max_workers, "decide"),
        DaemonThreadPool(config.max_workers, "stream"),
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grpc-aio", daemon=True)
    thread.start()
    access = BackendAccess(
        allowed_query_parameters=config.allowed_query_parameters,
        allowed_custom_headers=config.allowed_custom_headers,
        allow_unsafe_ssl=config.allow_unsafe_ssl,
    )
    observer = Observer(source, forecasts, access)

    async def start() -> tuple[grpc.aio.Server, int, ScalerService, health_aio.HealthServicer]:
        service = ScalerService(
            config,
            observer,
            telemetry=telemetry,
            clock=clock,
            calls=pools[0],
            streams=pools[1],
            events=events,
            pod_startup=pod_startup,
        )
        server = grpc.aio.server(options=SERVER_OPTIONS)
        add_scaler_service(service, server)
        health_servicer = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        address = f"{config.host}:{config.port}"
        problem = bind_problem(config.host, config.port)
        if problem is not None:
            raise OSError(f"cannot listen on {address} (--port): {problem}")
        try:
            if credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, credentials)
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"cannot listen on {address} (--port): gRPC could not bind it")
        await server.start()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        return server, port, service, health_servicer

    try:
        server, port, service, health_servicer = asyncio.run_coroutine_threadsafe(
            start(), loop
        ).result()
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        for pool in pools:
            pool.shutdown(wait=False)
        raise
    log.info(
        "grpc listening",
        extra={
            "address": f"{config.host}:{port}",
            "tls": credentials is not None,
            "mutual_tls": config.tls_client_ca is not None,
        },
    )
    return RunningServer(server, port, service, health_servicer, source, loop, thread, pools, tls)
