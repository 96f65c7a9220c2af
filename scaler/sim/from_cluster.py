"""`simulate --from-cluster NAMESPACE/SCALEDOBJECT` (and `backtest --from-cluster`).

Reads what a what-if needs from the cluster and its Prometheus, then hands it
to the simulator's own scenario and runner (nothing here simulates):

- the ScaledObject: its trigger (tidescaler's external trigger, or KEDA's own
  cron or prometheus triggers), minReplicaCount, maxReplicaCount,
  pollingInterval, cooldownPeriod and the HPA behavior KEDA copies into the HPA;
- its scale target's pod requests and the measured pod start-up (p90 creation
  to Ready over the recent pods, as `podStartupSeconds: auto` measures it);
- the history of the trigger's query over `--since` (default 14 days) through
  `PrometheusSource.range`.

A ScaledObject on KEDA's cron trigger is simulated as `keda-cron` (its own
windows), one on KEDA's prometheus trigger as `reactive`; both are compared
with the tidescaler policy they would migrate to (the same query and threshold,
the windows as `schedules` floors, the forecast on).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import yaml

from scaler.cli_support import error_text, finite_float
from scaler.kube.api import KubeApi, KubeError, Object, ScaleTarget, load_api_client, scale_target
from scaler.kube.startup import StartupMeasurement, StartupMeter
from scaler.policy import KEDA_KEYS, BackendOptions, PolicyError, parse_policy
from scaler.sim import hpa
from scaler.sim.cluster import ClusterModel, PodStartup
from scaler.sim.scenario import POLICY_NAMES, Scenario, ScenarioError, check_scenario
from scaler.sim.traffic import Traffic
from scaler.sources.bounded_http import redacted_url
from scaler.sources.prometheus import BackendError, PrometheusSource
from scaler.traces import Trace
from scaler.validate import DEFAULT_SCALER_NAME

# ScaledObject defaults (KEDA): keda-contract.md §4.
DEFAULT_POLLING_SECONDS = 30.0
DEFAULT_COOLDOWN_SECONDS = 300.0
DEFAULT_MAX_REPLICAS = 100
DEFAULT_STARTUP_SECONDS = 60.0
HPA_SYNC_SECONDS = 15.0
# The trigger's threshold is taken as this share of what one replica can serve, unless
# --capacity-per-replica says otherwise (the simulator's default target utilization).
DEFAULT_TARGET_UTILIZATION = 0.7
TIDESCALER_ONLY_KEYS = ("cpuUtilization", "memoryUtilization", "podSelector")
# KEDA prometheus keys a tidescaler trigger reads the same way.
KEDA_PROMETHEUS_KEYS = (
    "query",
    "threshold",
    "activationThreshold",
    "ignoreNullValues",
    "namespace",
    "queryParameters",
    "customHeaders",
    "timeout",
    "unsafeSsl",
)


class FromClusterError(ValueError):
    """Something the what-if cannot be built from; the message says what and where."""


@dataclass(frozen=True)
class PodRequests:
    cpu_cores: float | None
    memory_bytes: float | None

    def describe(self) -> str:
        cpu = f"cpu {self.cpu_cores * 1000:g}m" if self.cpu_cores is not None else "cpu unset"
        memory = (
            f"memory {self.memory_bytes / 2**20:g}Mi"
            if self.memory_bytes is not None
            else "memory unset"
        )
        return f"{cpu}, {memory}"


@dataclass(frozen=True)
class ClusterWorkload:
    """A ScaledObject and its workload as the simulator needs them."""

    namespace: str
    name: str
    current: str  # the simulated name of what runs now: tidescaler, keda-cron or reactive
    tidescaler: dict[str, str]  # the tidescaler trigger metadata (current or migrated to)
    keda_cron: tuple[dict[str, str], ...] | None
    query: str
    threshold: float
    prometheus_address: str | None
    backend: BackendOptions  # the trigger's request options (headers, tenancy, TLS)
    min_replicas: int
    max_replicas: int
    polling_interval_seconds: float
    cooldown_seconds: float
    behavior: hpa.Behavior
    target: ScaleTarget
    requests: PodRequests
    startup: StartupMeasurement | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def startup_seconds(self) -> float:
        return self.startup.seconds if self.startup is not None else DEFAULT_STARTUP_SECONDS


# -- reading the cluster --


def _quantity(text: Any) -> float | None:
    """A Kubernetes quantity (500m, 2, 256Mi, 1G) as a number; None if absent or unreadable."""
    if text is None:
        return None
    raw = str(text).strip()
    binary = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
    decimal = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    decimal |= {"P": 1e15, "E": 1e18}
    try:
        for suffix, factor in binary.items():
            if raw.endswith(suffix):
                return float(raw[: -len(suffix)]) * factor
        if raw and raw[-1] in decimal:
            return float(raw[:-1]) * decimal[raw[-1]]
        return float(raw)
    except ValueError:
        return None


def pod_requests(workload: Object) -> PodRequests:
    """Requests summed over the pod template's containers (init containers not counted)."""
    spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    cpu = memory = 0.0
    cpu_seen = memory_seen = False
    for container in spec.get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        c, m = _quantity(requests.get("cpu")), _quantity(requests.get("memory"))
        if c is not None:
            cpu, cpu_seen = cpu + c, True
        if m is not None:
            memory, memory_seen = memory + m, True
    return PodRequests(cpu if cpu_seen else None, memory if memory_seen else None)


def _rules(raw: Any, default: hpa.ScalingRules, where: str) -> hpa.ScalingRules:
    if not isinstance(raw, dict):
        return default
    policies = default.policies
    if raw.get("policies"):
        try:
            policies = tuple(
                hpa.ScalingPolicy(str(p["type"]), int(p["value"]), float(p["periodSeconds"]))
                for p in raw["policies"]
            )
        except (KeyError, TypeError, ValueError):
            raise FromClusterError(
                f"{where}.policies: expected a list of {{type, value, periodSeconds}}"
            ) from None
    window = raw.get("stabilizationWindowSeconds", default.stabilization_window_seconds)
    if isinstance(window, bool) or not isinstance(window, int | float) or window < 0:
        raise FromClusterError(
            f"{where}.stabilizationWindowSeconds={window!r}: expected seconds >= 0"
        )
    return hpa.ScalingRules(
        float(window),
        policies,
        str(raw.get("selectPolicy") or default.select_policy),
    )


def hpa_behavior(spec: Object) -> hpa.Behavior:
    """`advanced.horizontalPodAutoscalerConfig.behavior`, with the HPA's defaults filled in."""
    advanced = spec.get("advanced") or {}
    behavior = (advanced.get("horizontalPodAutoscalerConfig") or {}).get("behavior") or {}
    where = "spec.advanced.horizontalPodAutoscalerConfig.behavior"
    return hpa.Behavior(
        scale_up=_rules(behavior.get("scaleUp"), hpa.DEFAULT_BEHAVIOR.scale_up, f"{where}.scaleUp"),
        scale_down=_rules(
            behavior.get("scaleDown"), hpa.DEFAULT_BEHAVIOR.scale_down, f"{where}.scaleDown"
        ),
    )


def _number(spec: Object, key: str, default: float, where: str) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FromClusterError(f"{where}: spec.{key}={value!r}: expected a number >= 0")
    return float(value)


def _metadata(trigger: Object) -> dict[str, str]:
    return {str(k): str(v) for k, v in (trigger.get("metadata") or {}).items()}


def _triggers(scaled_object: Object, where: str) -> dict[str, list[dict[str, str]]]:
    by_type: dict[str, list[dict[str, str]]] = {}
    for trigger in (scaled_object.get("spec") or {}).get("triggers") or []:
        kind = str(trigger.get("type") or "")
        kind = "external" if kind == "external-push" else kind
        by_type.setdefault(kind, []).append(_metadata(trigger))
    if not by_type:
        raise FromClusterError(f"{where}: spec.triggers is empty")
    return by_type


def _environment(workload: Object, container: Any) -> dict[str, str | None]:
    """The environment KEDA reads `...FromEnv` keys from: the container named by
    `scaleTargetRef.envSourceContainerName`, else the first; None for a `valueFrom`."""
    spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    chosen = (
        next((c for c in containers if c.get("name") == container), None) if container else None
    )
    chosen = chosen or (containers[0] if containers else {})
    return {
        str(item.get("name")): None if "valueFrom" in item else str(item.get("value", ""))
        for item in chosen.get("env") or []
        if isinstance(item, dict)
    }


def _from_env(
    metadata: dict[str, str],
    environment: dict[str, str | None],
    overridden: set[str],
    where: str,
) -> dict[str, str]:
    """`metadata` with each `<key>FromEnv` replaced by the variable's value, as KEDA
    resolves them before calling a scaler."""
    out = {k: v for k, v in metadata.items() if not (k.endswith("FromEnv") and len(k) > 7)}
    for key, variable in metadata.items():
        if not (key.endswith("FromEnv") and len(key) > 7):
            continue
        base = key[: -len("FromEnv")]
        if base in out or base in overridden:
            continue
        value = environment.get(variable)
        if value is None:
            how = (
                "from a Secret or ConfigMap (valueFrom)"
                if variable in environment
                else "from no plain env entry of the container (envFrom, or not set)"
            )
            raise FromClusterError(
                f"{where}: trigger key {key} reads {variable!r} {how}, which --from-cluster "
                "does not read: give the value on the command line (--query, --threshold, "
                "--prometheus-url)"
            )
        out[base] = value
    return out


def _replicas(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FromClusterError(
            f"{where}: cron trigger desiredReplicas={text!r}: expected a whole number"
        ) from None


def _migrated(
    triggers: dict[str, list[dict[str, str]]],
    query_override: str | None,
    threshold_override: float | None,
    where: str,
) -> tuple[str, dict[str, str], tuple[dict[str, str], ...] | None, list[str]]:
    """What runs now (its simulated name), the tidescaler metadata to compare, the cron
    triggers, and notes for the user."""
    notes: list[str] = []
    external = triggers.get("external", [])
    # Other external scalers (the HTTP add-on, ...) share the trigger type: tidescaler's
    # is the one whose scalerAddress names it, as `tidescaler validate` reads them.
    ours = [t for t in external if DEFAULT_SCALER_NAME in t.get("scalerAddress", "").lower()]
    if external and not ours and len(external) == 1:
        ours = external  # a Service named otherwise: the one external trigger is taken
    if ours:
        metadata = {k: v for k, v in ours[0].items() if k not in KEDA_KEYS}
        if len(ours) > 1:
            notes.append("several tidescaler triggers: the first is simulated")
        dropped = [k for k in TIDESCALER_ONLY_KEYS if k in metadata]
        if dropped:
            notes.append(f"{', '.join(dropped)}: resource signals are not simulated (see hpa-cpu)")
            metadata = {k: v for k, v in metadata.items() if k not in dropped}
        return "tidescaler", metadata, None, notes
    cron: tuple[dict[str, str], ...] = tuple(
        {str(k): t[k] for k in ("timezone", "start", "end", "desiredReplicas") if k in t}
        for t in triggers.get("cron", [])
    )
    if "prometheus" in triggers:
        keda = triggers["prometheus"][0]
        # The request options too: on Thanos, Mimir or Cortex they choose whose data
        # the query reads.
        metadata = {key: keda[key] for key in KEDA_PROMETHEUS_KEYS if key in keda}
        if "serverAddress" in keda:
            metadata["prometheusAddress"] = keda["serverAddress"]
        if cron:
            notes.append("cron and prometheus triggers: simulated as reactive, cron windows kept")
        current = "reactive"
    elif cron:
        if query_override is None:
            raise FromClusterError(
                f"{where}: a cron-only ScaledObject has no query; give --query (the demand its "
                "windows serve) and --threshold (what one replica carries)"
            )
        metadata = {}
        current = "keda-cron"
    else:
        found = ", ".join(sorted(triggers))
        if external:
            found += " (no external trigger's scalerAddress names tidescaler)"
        raise FromClusterError(
            f"{where}: no tidescaler (external), cron or prometheus trigger to simulate "
            f"(found {found})"
        )
    if cron:
        windows = [
            {
                "timezone": t.get("timezone", "UTC"),
                "start": t.get("start", ""),
                "end": t.get("end", ""),
                "desiredReplicas": _replicas(t.get("desiredReplicas", "0"), where),
            }
            for t in cron
        ]
        metadata["schedules"] = yaml.safe_dump(windows, default_flow_style=True).strip()
    if query_override is not None:
        metadata["query"] = query_override
    if threshold_override is not None:
        metadata["threshold"] = f"{threshold_override:g}"
    metadata.setdefault("forecast", "on")
    metadata.setdefault("podStartupSeconds", "auto")
    return current, metadata, cron or None, notes


def read_workload(
    api: KubeApi,
    namespace: str,
    name: str,
    *,
    query: str | None = None,
    threshold: float | None = None,
    now: float | None = None,
    prometheus_url: str | None = None,
) -> ClusterWorkload:
    """The ScaledObject, its target and its pods' start-up; raises FromClusterError."""
    where = f"scaledobject {namespace}/{name}"
    try:
        scaled_object = api.scaled_object(namespace, name)
        target = scale_target(scaled_object)
        workload = api.workload(target)
    except KubeError as err:
        raise FromClusterError(str(err)) from None
    requests = pod_requests(workload)
    spec = scaled_object.get("spec") or {}
    environment = _environment(
        workload, (spec.get("scaleTargetRef") or {}).get("envSourceContainerName")
    )
    overridden = {k for k, v in (("query", query), ("threshold", threshold)) if v is not None}
    if prometheus_url is not None:
        overridden |= {"prometheusAddress", "serverAddress"}
    triggers = {
        kind: [_from_env(m, environment, overridden, where) for m in found]
        for kind, found in _triggers(scaled_object, where).items()
    }
    current, metadata, cron, notes = _migrated(triggers, query, threshold, where)
    try:
        policy = parse_policy(metadata)
    except PolicyError as err:
        raise FromClusterError(f"{where}: the tidescaler trigger: {err}") from None
    if policy.query is None:
        raise FromClusterError(
            f"{where}: the tidescaler policy has no query to replay; give --query and --threshold"
        )
    meter = StartupMeter(api, clock=(lambda: now) if now is not None else time.time)
    startup = meter.refresh(namespace, name)
    if startup is None:
        notes.append(
            f"pod start-up not measured (no Ready pods readable): {DEFAULT_STARTUP_SECONDS:g}s"
        )
    return ClusterWorkload(
        namespace=namespace,
        name=name,
        current=current,
        tidescaler=metadata,
        keda_cron=cron,
        query=policy.query.query,
        threshold=policy.query.threshold,
        prometheus_address=policy.prometheus_address,
        backend=policy.backend,
        min_replicas=int(_number(spec, "minReplicaCount", 0, where)),
        max_replicas=int(_number(spec, "maxReplicaCount", DEFAULT_MAX_REPLICAS, where)),
        polling_interval_seconds=_number(spec, "pollingInterval", DEFAULT_POLLING_SECONDS, where),
        cooldown_seconds=_number(spec, "cooldownPeriod", DEFAULT_COOLDOWN_SECONDS, where),
        behavior=hpa_behavior(spec),
        target=target,
        requests=requests,
        startup=startup,
        notes=tuple(notes),
    )


# -- the history --


@dataclass(frozen=True)
class History:
    times: np.ndarray
    rate: np.ndarray  # the query's value per step, gaps filled
    step_seconds: float
    gaps: int
    address: str


def read_history(
    workload: ClusterWorkload,
    *,
    prometheus_url: str | None,
    since_seconds: float,
    step_seconds: float,
    now: float,
    query: str | None = None,
) -> History:
    """The query over [now - since, now] on a `step` grid; gaps are held at the last value."""
    address = prometheus_url or workload.prometheus_address
    if address is None:
        raise FromClusterError(
            "the trigger names no Prometheus (prometheusAddress/serverAddress): give "
            "--prometheus-url"
        )
    end = math.floor(now / step_seconds) * step_seconds
    source = PrometheusSource(timeout_seconds=30.0, coalesce_seconds=0.0)
    try:
        times, values = source.range(
            address,
            query or workload.query,
            end - since_seconds,
            end,
            step_seconds,
            options=workload.backend,
        )
    except BackendError as err:
        raise FromClusterError(f"Prometheus {redacted_url(address)}: {err}") from None
    finally:
        source.close()
    missing = ~np.isfinite(values)
    if missing.all():
        raise FromClusterError(
            f"Prometheus {redacted_url(address)}: no samples of {query or workload.query!r} "
            f"in the last {since_seconds / 86400:g} days"
        )
    # Hold the last value over a gap (the first ones take the first value seen), as a
    # scrape gap does not mean the demand went to zero.
    index = np.where(missing, 0, np.arange(len(values)))
    np.maximum.accumulate(index, out=index)
    filled = values[index]
    first = int(np.argmax(~missing))
    filled[:first] = values[first]
    return History(times, np.maximum(filled, 0.0), step_seconds, int(missing.sum()), address)


# -- the scenario --


def scenario_for(
    workload: ClusterWorkload,
    history: History,
    *,
    capacity_per_replica: float | None = None,
    slo_ms: float = 500.0,
    policies: tuple[str, ...] | None = None,
) -> Scenario:
    """The simulator's scenario for this workload: its bounds, timing and start-up."""
    capacity = capacity_per_replica or workload.threshold / DEFAULT_TARGET_UTILIZATION
    utilization = workload.threshold / capacity
    if not 0 < utilization <= 1:
        raise FromClusterError(
            f"threshold {workload.threshold:g} is above --capacity-per-replica={capacity:g}"
        )
    # KEDA polls on pollingInterval; the simulator polls on whole HPA syncs (15 s).
    polling = max(HPA_SYNC_SECONDS, round(workload.polling_interval_seconds / 15) * 15.0)
    metadata = dict(workload.tidescaler)
    if metadata.get("podStartupSeconds", "").strip().lower() == "auto":
        metadata["podStartupSeconds"] = f"{workload.startup_seconds:g}"
    cluster = ClusterModel(
        capacity_per_replica=capacity,
        pod_startup=PodStartup(seconds=workload.startup_seconds),
        polling_interval_seconds=polling,
        hpa_sync_seconds=HPA_SYNC_SECONDS,
        cooldown_seconds=workload.cooldown_seconds,
        min_replicas=workload.min_replicas,
        max_replicas=workload.max_replicas,
        behavior=workload.behavior,
    )
    days = len(history.rate) * history.step_seconds / 86400
    chosen = policies or tuple(dict.fromkeys(("static-peak", workload.current, *POLICY_NAMES)))
    scenario = Scenario(
        name=f"{workload.namespace}/{workload.name}",
        description=f"from the cluster: {workload.current} now",
        traffic_source="cluster",
        tide=None,
        scale=1.0,
        days=None,
        # A day of warm-up when there is history for it, never more than a quarter.
        warmup_days=min(1.0, days / 4),
        cluster=cluster,
        slo_ms=slo_ms,
        target_utilization=utilization,
        policies=chosen,
        tidescaler=metadata,
        keda_cron=workload.keda_cron,
        forecast_refit_seconds=3 * 3600.0,
        oracle_tail=0.001,
        seed=0,
        origin=f"scaledobject {workload.namespace}/{workload.name}",
    )
    problems = check_scenario(scenario)
    if problems:
        raise ScenarioError("invalid scenario:\n  " + "\n  ".join(problems))
    return scenario


def traffic_for(workload: ClusterWorkload, history: History) -> Traffic:
    days = len(history.rate) * history.step_seconds / 86400
    return Traffic(
        float(history.times[0]), history.step_seconds, history.rate, f"{days:.3g} days of its query"
    )


def describe(workload: ClusterWorkload, history: History | None = None) -> list[str]:
    """What was read, in the words of the ScaledObject, for the top of the report."""
    behavior = workload.behavior
    down = behavior.scale_down
    lines = [
        f"ScaledObject {workload.namespace}/{workload.name} -> {workload.target.describe()}",
        f"  now: {workload.current}; replicas {workload.min_replicas}..{workload.max_replicas}, "
        f"pollingInterval {workload.polling_interval_seconds:g}s, cooldownPeriod "
        f"{workload.cooldown_seconds:g}s, scaleDown stabilization "
        f"{down.stabilization_window_seconds:g}s",
        f"  pods: requests {workload.requests.describe()}; start-up "
        + (
            f"p{100 * workload.startup.quantile:g} {workload.startup.seconds:g}s over "
            f"{workload.startup.pods} pods (measured)"
            if workload.startup is not None
            else f"{DEFAULT_STARTUP_SECONDS:g}s (default, not measured)"
        ),
        f"  demand: {workload.query} / threshold {workload.threshold:g} per replica",
    ]
    if history is not None:
        lines.append(
            f"  history: {redacted_url(history.address)}, "
            f"{len(history.rate) * history.step_seconds / 86400:.3g}"
            f" days at {history.step_seconds:g}s, {history.gaps} missing points held"
        )
    if workload.current != "tidescaler":
        lines.append(
            "  compared with the tidescaler trigger it would migrate to: "
            + ", ".join(f"{k}={v}" for k, v in workload.tidescaler.items())
        )
    lines.extend(f"  note: {note}" for note in workload.notes)
    return lines


# -- the commands --


def add_from_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """The flags `--from-cluster` brings to `simulate` and `backtest`.

    The history's span and step are the shared --start/--end/--step, and
    --prometheus-url (the trigger's own address by default) and --query (the
    demand of a cron-only ScaledObject) are the shared traffic flags.
    """
    g = p.add_argument_group("from the cluster")
    g.add_argument(
        "--from-cluster",
        metavar="NAMESPACE/SCALEDOBJECT",
        help="read the ScaledObject, its workload and its query's history (--start to --end) "
        "from the cluster (default: none)",
    )
    g.add_argument("--kubeconfig", help="kubeconfig (default: KUBECONFIG, else in-cluster)")
    g.add_argument(
        "--threshold",
        type=finite_float,
        help="what one replica carries, with --query for a cron-only ScaledObject (default: none)",
    )


def _history_span(args: argparse.Namespace) -> tuple[float, float, float]:
    """(now, since_seconds, step_seconds) from the shared --start/--end/--step flags."""
    from scaler.trace_query import parse_range
    from scaler.traces import TraceError

    if getattr(args, "trace", None):
        raise FromClusterError("--from-cluster reads the traffic itself; drop --trace")
    try:
        span = parse_range(args.start, args.end, args.step)
    except TraceError as err:
        raise FromClusterError(str(err)) from None
    if span.step_seconds % HPA_SYNC_SECONDS:
        raise FromClusterError(f"--step={args.step!r}: expected a whole multiple of 15s")
    return span.end, span.end - span.start, span.step_seconds


def _target(text: str) -> tuple[str, str]:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise FromClusterError(f"--from-cluster={text!r}: expected NAMESPACE/SCALEDOBJECT")
    return namespace, name


def _workload_of(
    args: argparse.Namespace, namespace: str, name: str, now: float
) -> ClusterWorkload:
    """`read_workload` through the command line's kubeconfig and overrides."""
    try:
        api = KubeApi(load_api_client(args.kubeconfig), timeout_seconds=10.0)
    except KubeError as err:
        raise FromClusterError(str(err)) from None
    try:
        return read_workload(
            api,
            namespace,
            name,
            query=args.query,
            threshold=args.threshold,
            now=now,
            prometheus_url=args.prometheus_url,
        )
    finally:
        api.close()


def load(args: argparse.Namespace, now: float | None = None) -> tuple[ClusterWorkload, History]:
    """The workload and its history for the parsed command line; raises FromClusterError."""
    namespace, name = _target(args.from_cluster)
    span_end, since, step = _history_span(args)
    if (args.query is None) != (args.threshold is None) and args.threshold is not None:
        raise FromClusterError("--threshold goes with --query")
    now = span_end if now is None else now
    workload = _workload_of(args, namespace, name, now)
    history = read_history(
        workload,
        prometheus_url=args.prometheus_url,
        since_seconds=since,
        step_seconds=step,
        now=now,
    )
    return workload, history


def run_simulate(args: argparse.Namespace) -> int:
    """`tidescaler simulate --from-cluster ...`: the what-if on the live workload."""
    from rich.console import Console

    from scaler.sim.report import render_table, result_json, write_outputs
    from scaler.sim.runner import sweep

    err = Console(stderr=True)
    try:
        workload, history = load(args)
        policies = None
        if args.policies:
            policies = tuple(n.strip() for n in args.policies.split(",") if n.strip())
            unknown = [n for n in policies if n not in POLICY_NAMES]
            if unknown:
                raise FromClusterError(
                    f"--policies: {', '.join(unknown)} not known; expected any of "
                    f"{','.join(POLICY_NAMES)}"
                )
        scenario = scenario_for(
            workload,
            history,
            capacity_per_replica=args.capacity_per_replica,
            slo_ms=args.slo_ms or 500.0,
            policies=policies,
        )
        if args.days is not None:
            scenario = replace(scenario, days=args.days)
        result, points = sweep(scenario, traffic_for(workload, history))
    except (FromClusterError, ScenarioError) as error:
        err.print(error_text(error), highlight=False, soft_wrap=True)
        return 2
    if args.json:
        out = result_json(result, points)
        out["from_cluster"] = {
            "read": describe(workload, history),
            "current": workload.current,
            "tidescaler": workload.tidescaler,
            "pod_startup_seconds": workload.startup_seconds,
            "pod_startup_measured": workload.startup is not None,
        }
        import json

        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        console = Console()
        for line in describe(workload, history):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
        console.print()
        render_table(result, console, points)
    if args.out:
        from pathlib import Path

        write_outputs(
            result, points, Path(args.out), "tidescaler simulate " + " ".join(sys.argv[2:])
        )
    return 0


def backtest_trace(args: argparse.Namespace) -> tuple[Trace, float]:
    """The forecast series (forecastQuery, else query) of the ScaledObject as a backtest
    trace, and the history its forecaster learns from (the trigger's forecastHistory)."""
    namespace, name = _target(args.from_cluster)
    now, since, step = _history_span(args)
    workload = _workload_of(args, namespace, name, now)
    policy = parse_policy(workload.tidescaler)
    series = policy.forecast_query or workload.query
    history = read_history(
        workload,
        prometheus_url=args.prometheus_url,
        since_seconds=since,
        step_seconds=step,
        now=now,
        query=series,
    )
    trace = Trace(history.times, history.rate, history.step_seconds, f"{namespace}/{name}")
    return trace, policy.forecast.history_seconds
