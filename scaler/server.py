"""The KEDA external scaler: gRPC in, engine decisions out.

The servicer translates the four RPCs of KEDA's contract to and from the core
and owns nothing else: the policy comes from `cached_policy`, observations from
the `Observer`, the number from `decide()`. GetMetricSpec answers from the
metadata and the server's configuration alone, because KEDA's fallback never
engages when GetMetricSpec fails.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scaler.engine import Decision, EngineSettings, decide
from scaler.observe import BackendProblem, ForecastProvider, Observer
from scaler.policy import Policy, PolicyError, cached_policy
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.sources.prometheus import PrometheusSource

if TYPE_CHECKING:
    from scaler.kube.events import ScalerEvents

log = logging.getLogger("tidescaler.server")

# Measured pod start-up of a ScaledObject's target (namespace, name) -> seconds or None.
PodStartupLookup = Callable[[str, str], float | None]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name

R = TypeVar("R")


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
    # Every StreamIsActive stream (type: external-push) holds a worker thread for its
    # lifetime; threads start only when needed, so a large bound costs nothing idle.
    max_workers: int = 1024
    grace_seconds: float = 10.0
    allowed: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        urls = {_normalise_url(u) for u in self.allowed_prometheus_urls if u.strip()}
        if self.prometheus_url:
            urls.add(_normalise_url(self.prometheus_url))
        object.__setattr__(self, "allowed", frozenset(urls))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: set both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")

    @property
    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            polling_interval_seconds=self.polling_interval_seconds,
            staleness_seconds=self.staleness_seconds,
        )


def _normalise_url(url: str) -> str:
    return url.strip().rstrip("/")


class RequestError(Exception):
    """A request the service refuses, with the gRPC status to refuse it with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ScalerService(pb_grpc.ExternalScalerServicer):
    """The four RPCs of KEDA's external scaler contract."""

    def __init__(
        self,
        config: ServerConfig,
        observer: Observer,
        *,
        telemetry: Any | None = None,
        clock: Callable[[], float] = time.time,
        stopping: threading.Event | None = None,
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
        self.stopping = stopping or threading.Event()
        self.settings = config.engine_settings
        self._last_logged: dict[tuple[str, str], tuple[int, str, bool, bool]] = {}

    # -- the core path, gRPC-free ------------------------------------------------

    def policy_for(self, ref: pb.ScaledObjectRef) -> tuple[Policy, str | None]:
        """The policy and the Prometheus address it may use; RequestError if invalid."""
        try:
            policy = cached_policy(ref.scalerMetadata)
        except PolicyError as err:
            if self.events is not None:
                self.events.policy_invalid(ref, str(err))
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
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
        address = _normalise_url(address)
        if address not in self.config.allowed:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid tidescaler trigger metadata: prometheusAddress={address!r} is not "
                "allowed by this server (allowed: "
                + (", ".join(sorted(self.config.allowed)) or "none")
                + "; see --allowed-prometheus-urls)",
            )
        return policy, address

    def decision_for(self, ref: pb.ScaledObjectRef) -> Decision:
        policy, address = self.policy_for(ref)
        now = self.clock()
        observations, problems = self.observer.observe(policy, address, now)
        if self.pod_startup is not None and policy.forecast.pod_startup_auto:
            measured = self.pod_startup(ref.namespace, ref.name)
            observations = replace(observations, pod_startup_seconds=measured)
        decision = decide(policy, observations, now, self.settings)
        self._report(ref, decision, observations.demand.value if observations.demand else None, now)
        for problem in problems:
            self._report_backend_error(ref, problem)
        if self.events is not None:
            self.events.decision(ref, decision)
            for problem in problems:
                self.events.backend_failing(ref, problem.signal.value, problem.message)
        if self.telemetry is not None and decision.forecast_upper is not None:
            errors = self.observer.forecast_errors(policy, address)
            if errors is not None:
                self.telemetry.record_forecast_error(
                    ref.namespace,
                    ref.name,
                    errors.smape / 100.0,
                    errors.under_rate,
                    errors.coverage,
                )
        if not decision.available:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE,
                f"{ref.namespace}/{ref.name}: no usable observation ({decision.detail})",
            )
        return decision

    def _report(
        self, ref: pb.ScaledObjectRef, decision: Decision, demand: float | None, now: float
    ) -> None:
        if self.telemetry is not None:
            self.telemetry.record_decision(ref.namespace, ref.name, decision, demand, now)
        key = (ref.namespace, ref.name)
        state = (
            decision.desired_replicas,
            decision.reason.value,
            decision.active,
            decision.available,
        )
        if self._last_logged.get(key) != state:
            if len(self._last_logged) > 50_000:
                self._last_logged.clear()
            self._last_logged[key] = state
            log.info(
                "decision changed",
                extra={
                    "namespace": ref.namespace,
                    "scaledobject": ref.name,
                    "desired_replicas": decision.desired_replicas,
                    "active": decision.active,
                    "reason": decision.reason.value,
                    "available": decision.available,
                    "detail": decision.detail,
                    "pod_startup_seconds": decision.pod_startup_seconds,
                    "pod_startup_source": decision.pod_startup_source,
                    "signals": {
                        r.signal.value: {"status": r.status.value, "replicas": r.replicas}
                        for r in decision.signals
                    },
                },
            )

    def _report_backend_error(self, ref: pb.ScaledObjectRef, problem: BackendProblem) -> None:
        if self.telemetry is not None:
            self.telemetry.record_backend_error(ref.namespace, ref.name, problem.kind)
        log.warning(
            "backend error",
            extra={
                "namespace": ref.namespace,
                "scaledobject": ref.name,
                "signal": problem.signal.value,
                "kind": problem.kind,
                "error": problem.message,
            },
        )

    # -- RPCs -------------------------------------------------------------------

    def _call(self, method: str, context: grpc.ServicerContext, body: Callable[[], R]) -> R:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return body()
        except RequestError as err:
            code = err.code
            context.abort(err.code, str(err))
        except Exception as err:  # the service never crashes on a request
            code = grpc.StatusCode.INTERNAL
            log.exception("internal error", extra={"method": method})
            context.abort(
                grpc.StatusCode.INTERNAL, f"internal error: {err.__class__.__name__}: {err}"
            )
        finally:
            if self.telemetry is not None:
                self.telemetry.record_rpc(method, code.name, time.perf_counter() - started)
        raise AssertionError("unreachable: context.abort raises")

    def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> pb.GetMetricSpecResponse:
        def body() -> pb.GetMetricSpecResponse:
            policy, _ = self.policy_for(request)  # configuration only, never a backend
            spec = pb.MetricSpec(metricName=policy.metric_name, targetSize=1, targetSizeFloat=1.0)
            return pb.GetMetricSpecResponse(metricSpecs=[spec])

        return self._call("GetMetricSpec", context, body)

    def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.ServicerContext
    ) -> pb.GetMetricsResponse:
        def body() -> pb.GetMetricsResponse:
            decision = self.decision_for(request.scaledObjectRef)
            desired = decision.desired_replicas
            name = (
                request.metricName
                or cached_policy(request.scaledObjectRef.scalerMetadata).metric_name
            )
            value = pb.MetricValue(
                metricName=name, metricValue=desired, metricValueFloat=float(desired)
            )
            return pb.GetMetricsResponse(metricValues=[value])

        return self._call("GetMetrics", context, body)

    def IsActive(
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> pb.IsActiveResponse:
        return self._call(
            "IsActive",
            context,
            lambda: pb.IsActiveResponse(result=self.decision_for(request).active),
        )

    def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> Iterator[pb.IsActiveResponse]:
        """Send the state at once, then re-evaluate every push interval and send changes."""
        # Invalid metadata ends the stream with INVALID_ARGUMENT before anything is sent.
        self._call("StreamIsActive", context, lambda: self.policy_for(request))
        last: bool | None = None
        while context.is_active() and not self.stopping.is_set():
            try:
                active: bool | None = self.decision_for(request).active
            except RequestError as err:
                if err.code is grpc.StatusCode.INVALID_ARGUMENT:
                    context.abort(err.code, str(err))
                active = None  # backend trouble: say nothing rather than something wrong
            except Exception:
                log.exception("internal error", extra={"method": "StreamIsActive"})
                active = None
            if active is not None and active != last:
                last = active
                yield pb.IsActiveResponse(result=active)
            self.stopping.wait(self.config.push_interval_seconds)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror}") from None


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS (or mutual TLS when a client CA is given) from PEM files; None for plaintext."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    pair = [(_read(config.tls_key), _read(config.tls_cert))]
    if config.tls_client_ca is None:
        return grpc.ssl_server_credentials(pair)
    return grpc.ssl_server_credentials(
        pair, root_certificates=_read(config.tls_client_ca), require_client_auth=True
    )


@dataclass
class RunningServer:
    """A started gRPC server and the pieces a caller may need to stop or inspect it."""

    server: grpc.Server
    port: int
    service: ScalerService
    health: health.HealthServicer
    source: PrometheusSource
    stopping: threading.Event

    def stop(self, grace: float | None = None) -> None:
        """Graceful: report NOT_SERVING, end streams, finish calls in flight."""
        self.stopping.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.source.close()


def start_server(
    config: ServerConfig,
    *,
    telemetry: Any | None = None,
    forecasts: ForecastProvider | None = None,
    source: PrometheusSource | None = None,
    clock: Callable[[], float] = time.time,
    events: ScalerEvents | None = None,
    pod_startup: PodStartupLookup | None = None,
) -> RunningServer:
    """Build and start the gRPC server; returns once it listens."""
    source = source or PrometheusSource(
        timeout_seconds=config.query_timeout_seconds, coalesce_seconds=config.coalesce_seconds
    )

    observer = Observer(source, forecasts)
    stopping = threading.Event()
    service = ScalerService(
        config,
        observer,
        telemetry=telemetry,
        clock=clock,
        stopping=stopping,
        events=events,
        pod_startup=pod_startup,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="grpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_ExternalScalerServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
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
    credentials = server_credentials(config)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving",
        extra={
            "address": f"{config.host}:{port}",
            "tls": credentials is not None,
            "mutual_tls": config.tls_client_ca is not None,
        },
    )
    return RunningServer(server, port, service, health_servicer, source, stopping)
