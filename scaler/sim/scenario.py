"""Scenario files: one YAML document names the traffic, the cluster, the SLO and the policies.

Every key is read here, with its default and the message a wrong value gets
(the file, the key, the value and what is expected). The `tidescaler` section
is trigger metadata exactly as a ScaledObject carries it, checked by the
service's own parser, so what was simulated can be pasted into a cluster.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import reprlib
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from scaler.policy import (
    MAX_FORECAST_QUANTILE,
    MAX_REPLICAS,
    PolicyError,
    parse_forecast_quantile,
    parse_policy,
)
from scaler.sim.cluster import ClusterModel, PodStartup
from scaler.sim.queue import ROUTINGS
from scaler.sim.traffic import (
    GENERATORS,
    GeneratorSpec,
    TideSpec,
    Traffic,
    generate,
    read_trace,
    synthetic_tide,
)

POLICY_NAMES = ("static-peak", "keda-cron", "reactive", "hpa-cpu", "tidescaler", "oracle")
BUNDLED_PREFIX = "bundled:"
DEMO_SCENARIO = "demo.yaml"
# The query of trigger metadata written for a user whose simulation needed none.
QUERY_PLACEHOLDER = "<your PromQL: total requests/s of the service>"

# Sweepable parameters: the per-replica target moves every policy; tidescaler
# metadata keys move only the tidescaler policy.
SWEEP_ALL = ("target_utilization", "threshold")
SWEEP_TIDESCALER = ("forecastQuantile", "podStartupSeconds", "forecastHistory")
# Cluster parameters move every policy they touch. The HPA's scale-down stabilization
# window (ScaledObject advanced.horizontalPodAutoscalerConfig.behavior) is set on a
# ScaledObject whatever its trigger: it is a knob of every policy that goes through the
# HPA, tidescaler's as much as reactive's.
SWEEP_CLUSTER = ("pod_startup_seconds", "scale_down_stabilization_seconds")
# Requests one pod serves at once: beyond this the queue model's M/M/k sums get slow
# and no real pod comes close.
MAX_CONCURRENCY = 10_000
# The sane range of a number a scenario may give (by key, in a file or as a flag): far
# beyond any real cluster, yet small enough that counts derived from them (steps,
# replicas, workers per pod) stay finite whole numbers.
HIGHS = {
    "capacity_per_replica": 1e9,
    "service_time_ms": 3_600_000.0,  # an hour per request
    "timeout_seconds": 86_400.0,
    "pod_startup_seconds": 86_400.0,  # podStartupSeconds allows at most a day
    "polling_interval_seconds": 86_400.0,
    "hpa_sync_seconds": 3_600.0,
    "cooldown_seconds": 30 * 86_400.0,
    "scrape_interval_seconds": 86_400.0,
    "rate_window_seconds": 86_400.0,
    "slo_ms": 86_400_000.0,
    "days": 36_500.0,  # a century
    "warmup_days": 36_500.0,
    "forecast_refit_seconds": 365 * 86_400.0,
    "scale": 1e12,
}
LOWS = {"service_time_ms": 1e-3}  # a microsecond: capacity stays finite
# Every combination of a sweep is checked before the first run when there are at most
# this many (each check parses the policy once, well under a millisecond); beyond it,
# every value of every axis is checked against the scenario as given.
MAX_CHECKED_COMBINATIONS = 5_000


class ScenarioError(ValueError):
    """An invalid scenario; the message names the file, key and value and what is expected."""


# A scenario file is a few dozen values (a long sweep a few hundred): far more than that,
# or nesting far deeper, is a mistake or an attack, refused while reading.
MAX_YAML_NODES = 20_000
MAX_YAML_DEPTH = 20
_YAML_LOADER: type[Any] = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class _UniqueKeys(_YAML_LOADER):  # type: ignore[misc]
    """The safe loader, refusing a key given twice in one mapping (YAML would keep the
    last silently: `slo_ms: 500` then `slo_ms: 100` is a run at 100 ms)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {short(key)} appears twice", key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def construct_document(self, node: yaml.Node) -> Any:
        _metadata_as_written(node)
        return super().construct_document(node)


# The scenario keys that hold trigger metadata (a mapping, or a list of them).
METADATA_KEYS = ("tidescaler", "keda_cron")


def _metadata_as_written(root: yaml.Node) -> None:
    """Read the unquoted values of trigger metadata as the text written: metadata is
    map<string,string>, so `forecast: off` means off (YAML would read false) and
    `minReplicas: 010` means 010 (YAML would read the octal 8), as in a ScaledObject
    where they are quoted."""
    if not isinstance(root, yaml.MappingNode):
        return
    for key, value in root.value:
        if not isinstance(key, yaml.ScalarNode) or key.value not in METADATA_KEYS:
            continue
        blocks = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for block in blocks:
            if not isinstance(block, yaml.MappingNode):
                continue  # refused by the scenario's own check, with its message
            for _, item in block.value:
                if isinstance(item, yaml.ScalarNode) and not item.style:  # plain: None or ""
                    item.tag = "tag:yaml.org,2002:str"


# Values quoted in messages are cut short: a wrong value may be megabytes long.
_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
_SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6
_SHORT.maxlevel = 2


def short(value: Any) -> str:
    """repr of `value` cut to a short prefix (reprlib never builds the whole repr)."""
    text = _SHORT.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def load_yaml(text: str, where: str) -> Any:
    """One YAML document, read as the trigger metadata's `schedules` are
    (scaler/policy_text.py): the event stream is checked first, anchors, aliases
    and tags refused and nodes and depth bounded, so an alias bomb or deep nesting
    costs milliseconds instead of gigabytes; then the (small) document is built."""
    nodes = depth = 0
    try:
        for event in yaml.parse(text, Loader=_YAML_LOADER):
            if isinstance(event, yaml.AliasEvent):
                raise ScenarioError(f"{where}: YAML aliases (*name) are not allowed")
            if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
                raise ScenarioError(f"{where}: YAML anchors (&name) are not allowed")
            if (
                isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent)
                and event.tag is not None
                and not _implicit_tag(event)
            ):
                at = event.start_mark.line + 1 if event.start_mark is not None else 0
                raise ScenarioError(
                    f"{where}:{at}: YAML tags ({short(event.tag)}) are not allowed; "
                    "write the plain value"
                )
            if isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
                nodes += 1
                if nodes > MAX_YAML_NODES:
                    raise ScenarioError(
                        f"{where}: more than {MAX_YAML_NODES} values; not a scenario file?"
                    )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise ScenarioError(f"{where}: nested more than {MAX_YAML_DEPTH} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_UniqueKeys)  # a safe loader (see _UniqueKeys)
    except yaml.reader.ReaderError as err:
        # A control character (an ANSI escape, a NUL): no problem_mark, but the error's
        # first line says which character, and its position where.
        at = text.count("\n", 0, err.position) + 1
        problem = str(err).splitlines()[0][:80] if str(err) else err.__class__.__name__
        raise ScenarioError(f"{where}:{at}: not valid YAML ({problem})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = str(getattr(err, "problem", None) or err.__class__.__name__)[:80]
        raise ScenarioError(f"{where}{line}: not valid YAML ({problem})") from None


def _implicit_tag(event: yaml.ScalarEvent | yaml.CollectionStartEvent) -> bool:
    """A tag the parser gave itself (\"!\" on a quoted scalar), not one the user wrote
    (as scaler/policy_text.py tells them apart)."""
    return event.tag == "!" or (
        isinstance(event, yaml.CollectionStartEvent) and bool(event.implicit)
    )


# Short names for labels of swept settings (plots, tables).
SWEEP_LABELS = {
    "target_utilization": "target",
    "threshold": "threshold",
    "forecastQuantile": "q",
    "podStartupSeconds": "lead",
    "forecastHistory": "history",
    "pod_startup_seconds": "startup",
    "scale_down_stabilization_seconds": "down-window",
}


@dataclass(frozen=True)
class Sweep:
    """A grid over one or more parameters (every combination is run).

    Parameters that only move the tidescaler policy (its trigger metadata) multiply
    only the tidescaler runs; the others are run once per value of the parameters
    that move them. `policies` limits which policies are swept (default: every
    policy of the scenario but `oracle`, which no swept parameter moves).
    """

    axes: tuple[tuple[str, tuple[str, ...]], ...]
    policies: tuple[str, ...] | None = None

    @property
    def parameter(self) -> str:
        return "+".join(name for name, _ in self.axes)

    @property
    def values(self) -> tuple[str, ...]:
        return self.axes[0][1] if len(self.axes) == 1 else ()

    def describe(self) -> str:
        return "; ".join(f"{name} {', '.join(values)}" for name, values in self.axes)

    def tuning_budget(self) -> str:
        """The settings every swept policy gets, in words: "92 settings: the per-replica
        target (40 % to 95 %, in steps of 2.5 %) and ...", for reports."""
        count = math.prod(len(values) for _, values in self.axes)
        return f"{count} settings: " + " and ".join(_axis_words(n, v) for n, v in self.axes)


def _axis_words(name: str, values: tuple[str, ...]) -> str:
    if name == "target_utilization":
        percents = [float(v) * 100 for v in values]
        steps = {round(b - a, 6) for a, b in itertools.pairwise(percents)}
        if len(steps) == 1:
            return (
                f"the per-replica target ({percents[0]:g} % to {percents[-1]:g} %, "
                f"in steps of {steps.pop():g} %)"
            )
        return "the per-replica target (" + "/".join(f"{p:g}" for p in percents) + " %)"
    if name == "scale_down_stabilization_seconds":
        return "the HPA's scale-down stabilization window (" + "/".join(values) + " s)"
    return f"{name} ({'/'.join(values)})"


def common_tuning_budget(sweeps: list[Sweep | None]) -> str:
    """`Sweep.tuning_budget` of scenarios that all sweep alike, else says they do not."""
    budgets = {"no settings" if s is None else s.tuning_budget() for s in sweeps}
    return budgets.pop() if len(budgets) == 1 else "each scenario's own sweep (see its file)"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    traffic_source: str  # a trace path, "bundled:NAME" or "synthetic"
    tide: TideSpec | None
    scale: float
    days: float | None
    warmup_days: float
    cluster: ClusterModel
    slo_ms: float
    target_utilization: float
    policies: tuple[str, ...]
    tidescaler: Mapping[str, str]
    keda_cron: tuple[Mapping[str, str], ...] | None
    forecast_refit_seconds: float
    oracle_tail: float
    seed: int
    sweep: Sweep | None = None
    origin: str = "flags"  # where the scenario came from, for messages and reports
    base_dir: Path | None = field(default=None, compare=False)
    generator: GeneratorSpec | None = None  # synthetic traffic other than the tide

    @property
    def service_time_seconds(self) -> float:
        """Mean service time of one request (concurrency per pod / capacity per replica)."""
        return self.cluster.service_time_seconds

    @property
    def routing(self) -> str:
        return self.cluster.routing

    @property
    def concurrency_per_pod(self) -> int:
        return self.cluster.concurrency

    @property
    def threshold(self) -> float:
        """The per-replica target in requests/s shared by every policy."""
        return self.target_utilization * self.cluster.capacity_per_replica

    def trace_file(self) -> Path | None:
        """The trace file the scenario replays (None: generated traffic, or stdin)."""
        if self.generator is not None or self.tide is not None or self.traffic_source == "-":
            return None
        return resolve_trace(self.traffic_source, self.base_dir)

    def load_traffic(self) -> Traffic:
        if self.generator is not None and self.tide is None:
            traffic = generate(self.generator, self.seed)
        elif self.tide is not None:
            traffic = synthetic_tide(self.tide, self.seed)
        else:
            traffic = read_trace(resolve_trace(self.traffic_source, self.base_dir))
        return traffic.clipped(self.days).scaled(self.scale)

    def tidescaler_metadata(self) -> dict[str, str]:
        """The trigger metadata simulated, with the shared defaults filled in."""
        metadata = dict(self.tidescaler)
        metadata.setdefault("query", 'sum(rate(http_requests_total{service="web"}[1m]))')
        metadata.setdefault("threshold", f"{self.threshold:g}")
        metadata.setdefault("forecast", "on")
        metadata.setdefault("podStartupSeconds", f"{self.cluster.pod_startup.seconds:g}")
        metadata.setdefault("maxReplicas", str(self.cluster.max_replicas))
        if self.cluster.min_replicas:
            metadata.setdefault("minReplicas", str(self.cluster.min_replicas))
        return metadata


def resolve_trace(source: str, base_dir: Path | None) -> Path:
    """A trace path relative to the scenario file, or a trace bundled with the package."""
    if source.startswith(BUNDLED_PREFIX):
        name = source[len(BUNDLED_PREFIX) :]
        return Path(str(resources.files("scaler") / "data" / name))
    path = Path(source)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def bundled_scenario_path() -> Path:
    return Path(str(resources.files("scaler") / "data" / DEMO_SCENARIO))


class _Keys:
    """Reads one mapping of a scenario, collecting problems with the file and key path."""

    def __init__(self, data: Mapping[str, Any], origin: str, where: str = "") -> None:
        self.data = data
        self.origin = origin
        self.where = where
        self.problems: list[str] = []

    def _problem(self, key: str, value: Any, expected: str) -> None:
        self.problems.append(
            f"{self.origin}: {self.where}{str(key)[:60]}: {short(value)} is not valid, "
            f"expected {expected}"
        )

    def number(
        self,
        key: str,
        default: float,
        *,
        low: float | None = None,
        high: float | None = None,
        positive: bool = False,
    ) -> float:
        if key not in self.data:
            return default
        value = self.data[key]
        if low is None and key in LOWS:
            low = LOWS[key]
        expected = "a number" + (" > 0" if positive else "")
        if low is not None and high is not None:
            expected = f"a number from {low:g} to {high:g}"
        elif low is not None:
            expected = f"a number >= {low:g}"
        if high is None and key in HIGHS:
            high = HIGHS[key]
            expected += f" (at most {high:g})"
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._problem(key, value, expected)
            return default
        number = float(value)
        if (
            not math.isfinite(number)  # .nan and .inf pass every comparison below
            or (positive and number <= 0)
            or (low is not None and number < low)
            or (high is not None and number > high)
        ):
            self._problem(key, value, expected)
            return default
        return number

    def integer(self, key: str, default: int, low: int = 0, high: int | None = None) -> int:
        if key not in self.data:
            return default
        value = self.data[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            expected = f"a whole number >= {low}"
            if high is not None:
                expected = f"a whole number from {low} to {high}"
            self._problem(key, value, expected)
            return default
        return value

    def text(self, key: str, default: str) -> str:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, str) or not value.strip():
            self._problem(key, value, "a non-empty string")
            return default
        return value

    def unknown(self, known: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.problems.append(
                    f"{self.origin}: {self.where}{str(key)[:60]}: unknown key{hint}; "
                    f"known keys: {', '.join(known)}"
                )


_TOP_KEYS = (
    "name",
    "description",
    "trace",
    "synthetic",
    "scale",
    "days",
    "warmup_days",
    "cluster",
    "slo_ms",
    "target_utilization",
    "policies",
    "tidescaler",
    "keda_cron",
    "forecast_refit_seconds",
    "oracle_tail",
    "seed",
    "sweep",
)
_CLUSTER_KEYS = (
    "capacity_per_replica",
    "service_time_ms",
    "concurrency_per_pod",
    "routing",
    "timeout_seconds",
    "pod_startup_seconds",
    "pod_startup",
    "polling_interval_seconds",
    "hpa_sync_seconds",
    "tolerance",
    "cooldown_seconds",
    "scrape_interval_seconds",
    "rate_window_seconds",
    "min_replicas",
    "max_replicas",
)
_SYNTHETIC_KEYS = (
    "days",
    "step_seconds",
    "peak_rps",
    "peak_to_valley",
    "weekend_factor",
    "noise",
    "flash_crowds_per_week",
    "flash_crowd_magnitude",
    "flash_crowd_minutes",
    "peak_hour_utc",
)


def _service(keys: _Keys, data: Mapping[str, Any]) -> tuple[float, float, int | None]:
    """Capacity per replica, service time and concurrency per pod, kept consistent.

    capacity = concurrency / service time: any two give the third; one alone
    comes with one request at a time; all three must agree (within 1 %). The
    concurrency is kept only when given (otherwise the cluster derives it from
    the other two, so that changing one of them later stays consistent).
    """
    default = ClusterModel()
    capacity = keys.number("capacity_per_replica", default.capacity_per_replica, positive=True)
    service_ms = keys.number("service_time_ms", default.service_time_ms, positive=True)
    concurrency = keys.integer("concurrency_per_pod", 1, low=1, high=MAX_CONCURRENCY)
    given = {
        k for k in ("capacity_per_replica", "service_time_ms", "concurrency_per_pod") if k in data
    }
    where = f"{keys.origin}: {keys.where}"
    if given == {"capacity_per_replica", "service_time_ms"}:
        at_once = capacity * service_ms / 1000.0
        whole = round(at_once)
        if whole > MAX_CONCURRENCY:
            keys.problems.append(
                f"{where}capacity_per_replica={capacity:g} x service_time_ms={service_ms:g} "
                f"is {at_once:.3g} requests in service at once, more than {MAX_CONCURRENCY:,}"
            )
            return capacity, 1000.0 / capacity, None
        if whole < 1 or abs(at_once - whole) > 0.01 * whole:
            keys.problems.append(
                f"{where}capacity_per_replica={capacity:g} x service_time_ms={service_ms:g} "
                f"is {at_once:.3g} requests in service at once, not a whole number of workers: "
                f"set concurrency_per_pod, or service_time_ms={1000.0 / capacity:.4g} "
                "(one request at a time)"
            )
            return capacity, 1000.0 / capacity, None
        return capacity, service_ms, None
    if len(given) == 3 and abs(concurrency / (service_ms / 1000.0) - capacity) > 0.01 * capacity:
        keys.problems.append(
            f"{where}capacity_per_replica={capacity:g} does not match concurrency_per_pod="
            f"{concurrency} / service_time_ms={service_ms:g} "
            f"({concurrency / service_ms * 1000.0:.4g} req/s): give two of the three"
        )
    mine = concurrency if "concurrency_per_pod" in given else None
    if "capacity_per_replica" in given or "service_time_ms" not in given:
        return capacity, concurrency / capacity * 1000.0, mine
    return concurrency / service_ms * 1000.0, service_ms, mine


def with_service(
    cluster: ClusterModel,
    *,
    capacity_per_replica: float | None = None,
    service_time_ms: float | None = None,
    concurrency_per_pod: int | None = None,
    origin: str = "flags",
) -> ClusterModel:
    """`cluster` with the given ones of capacity, service time and concurrency per pod,
    the others derived by the scenario file's rule; ScenarioError when they disagree."""
    data = {
        key: value
        for key, value in (
            ("capacity_per_replica", capacity_per_replica),
            ("service_time_ms", service_time_ms),
            ("concurrency_per_pod", concurrency_per_pod),
        )
        if value is not None
    }
    if not data:
        return cluster
    keys = _Keys(data, origin)
    capacity, service_ms, concurrency = _service(keys, data)
    if keys.problems:
        raise ScenarioError("; ".join(keys.problems))
    return replace(
        cluster,
        capacity_per_replica=capacity,
        service_time_ms=service_ms,
        concurrency_per_pod=concurrency,
    )


def _generator(spec: Mapping[str, Any], keys: _Keys) -> GeneratorSpec | None:
    """`synthetic: {kind: NAME, ...}`: the generator's own parameters, numbers each."""
    kind = spec.get("kind")
    if kind not in GENERATORS:
        keys._problem("synthetic.kind", kind, f"one of tide, {', '.join(GENERATORS)}")
        return None
    cls = GENERATORS[str(kind)]
    sub = _Keys(spec, keys.origin, "synthetic.")
    fields = [f for f in dataclasses.fields(cls) if f.name != "start"]
    sub.unknown(("kind", *(f.name for f in fields)))
    values: dict[str, Any] = {}
    defaults = cls()
    for f in fields:
        default = getattr(defaults, f.name)
        if isinstance(default, int) and not isinstance(default, bool):
            values[f.name] = sub.integer(f.name, default, low=0)
        elif f.name in ("days", "step_seconds"):
            values[f.name] = sub.number(f.name, default, positive=True)
        else:
            values[f.name] = sub.number(f.name, default, low=0.0)
    keys.problems.extend(sub.problems)
    return cls(**values)


def _pod_startup(keys: _Keys, data: Mapping[str, Any]) -> PodStartup:
    fixed = keys.number("pod_startup_seconds", 60.0, low=0.0)
    spec = data.get("pod_startup")
    if spec is None:
        return PodStartup(seconds=fixed)
    if not isinstance(spec, Mapping):
        keys._problem(
            "pod_startup",
            spec,
            "a mapping such as {distribution: lognormal, median: 60, sigma: 0.3}",
        )
        return PodStartup(seconds=fixed)
    sub = _Keys(spec, keys.origin, keys.where + "pod_startup.")
    sub.unknown(("distribution", "seconds", "median", "sigma", "low", "high"))
    distribution = sub.text("distribution", "fixed")
    result = PodStartup(seconds=fixed)
    if distribution == "fixed":
        result = PodStartup(seconds=sub.number("seconds", fixed, low=0.0))
    elif distribution == "lognormal":
        result = PodStartup(
            seconds=sub.number("median", fixed, positive=True),
            distribution="lognormal",
            sigma=sub.number("sigma", 0.3, low=0.0),
        )
    elif distribution == "uniform":
        low = sub.number("low", 0.0, low=0.0)
        high = sub.number("high", fixed, low=0.0)
        if high < low:
            sub.problems.append(f"{keys.origin}: {sub.where}high: {high:g} is below low {low:g}")
        result = PodStartup(seconds=(low + high) / 2, distribution="uniform", low=low, high=high)
    else:
        sub._problem("distribution", distribution, "fixed, lognormal or uniform")
    keys.problems.extend(sub.problems)
    return result


def parse_scenario(
    data: Any, origin: str, base_dir: Path | None = None, *, cross_check: bool = True
) -> Scenario:
    """A Scenario from parsed YAML, or ScenarioError listing every problem.

    `cross_check=False` leaves out the rules across keys (`check_scenario`), for a
    caller that changes the scenario first (command-line flags) and checks it then.
    """
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{origin}: expected a mapping of scenario keys at the top level")
    keys = _Keys(data, origin)
    keys.unknown(_TOP_KEYS)

    tide: TideSpec | None = None
    generator: GeneratorSpec | None = None
    source = "synthetic"
    if "trace" in data and "synthetic" in data:
        keys.problems.append(
            f"{origin}: trace and synthetic are both set; a scenario has one traffic source"
        )
    if "trace" in data:
        source = keys.text("trace", "")
    elif isinstance(data.get("synthetic"), Mapping) and data["synthetic"].get("kind", "tide") != (
        "tide"
    ):
        generator = _generator(data["synthetic"], keys)
    elif "synthetic" in data:
        spec = data["synthetic"]
        if not isinstance(spec, Mapping):
            keys._problem("synthetic", spec, "a mapping of tide parameters")
            spec = {}
        spec = {k: v for k, v in spec.items() if k != "kind"}
        sub = _Keys(spec, origin, "synthetic.")
        sub.unknown(_SYNTHETIC_KEYS)
        base = TideSpec()
        tide = TideSpec(
            days=sub.number("days", base.days, positive=True),
            step_seconds=sub.number("step_seconds", base.step_seconds, positive=True),
            peak_rps=sub.number("peak_rps", base.peak_rps, positive=True),
            peak_to_valley=sub.number("peak_to_valley", base.peak_to_valley, low=1.0, high=1000.0),
            weekend_factor=sub.number("weekend_factor", base.weekend_factor, positive=True),
            noise=sub.number("noise", base.noise, low=0.0),
            flash_crowds_per_week=sub.number(
                "flash_crowds_per_week", base.flash_crowds_per_week, low=0.0
            ),
            flash_crowd_magnitude=sub.number(
                "flash_crowd_magnitude", base.flash_crowd_magnitude, low=1.0
            ),
            flash_crowd_minutes=sub.number(
                "flash_crowd_minutes", base.flash_crowd_minutes, positive=True
            ),
            peak_hour_utc=sub.number("peak_hour_utc", base.peak_hour_utc, low=0.0, high=24.0),
        )
        keys.problems.extend(sub.problems)
    else:
        keys.problems.append(
            f"{origin}: needs trace (a CSV path or bundled:NAME) or synthetic (tide parameters)"
        )

    cluster_data = data.get("cluster", {})
    if not isinstance(cluster_data, Mapping):
        keys._problem("cluster", cluster_data, "a mapping of cluster parameters")
        cluster_data = {}
    c = _Keys(cluster_data, origin, "cluster.")
    c.unknown(_CLUSTER_KEYS)
    default = ClusterModel()
    capacity, service_ms, concurrency = _service(c, cluster_data)
    routing = c.text("routing", default.routing)
    if routing not in ROUTINGS:
        c._problem("routing", routing, f"one of {', '.join(ROUTINGS)}")
        routing = default.routing
    cluster = ClusterModel(
        capacity_per_replica=capacity,
        service_time_ms=service_ms,
        concurrency_per_pod=concurrency,
        routing=routing,
        timeout_seconds=c.number("timeout_seconds", default.timeout_seconds, positive=True),
        pod_startup=_pod_startup(c, cluster_data),
        polling_interval_seconds=c.number(
            "polling_interval_seconds", default.polling_interval_seconds, positive=True
        ),
        hpa_sync_seconds=c.number("hpa_sync_seconds", default.hpa_sync_seconds, positive=True),
        tolerance=c.number("tolerance", default.tolerance, low=0.0, high=1.0),
        cooldown_seconds=c.number("cooldown_seconds", default.cooldown_seconds, low=0.0),
        scrape_interval_seconds=c.number(
            "scrape_interval_seconds", default.scrape_interval_seconds, low=0.0
        ),
        rate_window_seconds=c.number(
            "rate_window_seconds", default.rate_window_seconds, positive=True
        ),
        min_replicas=c.integer("min_replicas", default.min_replicas, high=MAX_REPLICAS),
        max_replicas=c.integer("max_replicas", default.max_replicas, low=1, high=MAX_REPLICAS),
    )
    keys.problems.extend(c.problems)
    if cluster.min_replicas > cluster.max_replicas:
        keys.problems.append(
            f"{origin}: cluster.min_replicas={cluster.min_replicas} is above "
            f"cluster.max_replicas={cluster.max_replicas}"
        )
    poll_ratio = cluster.polling_interval_seconds / cluster.hpa_sync_seconds
    if abs(poll_ratio - round(poll_ratio)) > 1e-9 or round(poll_ratio) < 1:
        keys.problems.append(
            f"{origin}: cluster.polling_interval_seconds={cluster.polling_interval_seconds:g} "
            "must be a "
            f"whole multiple of cluster.hpa_sync_seconds={cluster.hpa_sync_seconds:g}"
        )

    policies: tuple[str, ...] = POLICY_NAMES
    if "policies" in data:
        raw = data["policies"]
        if isinstance(raw, str):
            raw = [p.strip() for p in raw.split(",") if p.strip()]
        if not isinstance(raw, list) or not raw:
            keys._problem("policies", raw, f"a non-empty list of {', '.join(POLICY_NAMES)}")
        else:
            chosen = []
            for name in raw:
                if name not in POLICY_NAMES:
                    close = difflib.get_close_matches(str(name), POLICY_NAMES, n=1, cutoff=0.5)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    keys.problems.append(
                        f"{origin}: policies: {short(name)} is not a policy{hint}; "
                        f"expected any of {', '.join(POLICY_NAMES)}"
                    )
                elif name not in chosen:
                    chosen.append(name)
            policies = tuple(chosen) or POLICY_NAMES

    tidescaler: dict[str, str] = {}
    if "tidescaler" in data:
        raw_meta = data["tidescaler"]
        if not isinstance(raw_meta, Mapping):
            keys._problem(
                "tidescaler",
                raw_meta,
                "trigger metadata: a mapping of string keys to string values",
            )
        else:
            tidescaler = {str(k): _metadata_value(v) for k, v in raw_meta.items()}

    keda_cron: tuple[Mapping[str, str], ...] | None = None
    if "keda_cron" in data:
        raw_cron = data["keda_cron"]
        if not isinstance(raw_cron, list) or not all(isinstance(t, Mapping) for t in raw_cron):
            keys._problem(
                "keda_cron",
                raw_cron,
                "a list of KEDA cron trigger metadata (timezone, start, end, desiredReplicas)",
            )
        else:
            keda_cron = tuple({str(k): _metadata_value(v) for k, v in t.items()} for t in raw_cron)

    sweep = None
    if "sweep" in data:
        sweep = _parse_sweep_mapping(data["sweep"], keys)

    days_value = keys.number("days", 0.0, positive=True) if "days" in data else None
    scenario = Scenario(
        name=keys.text("name", Path(origin).stem if origin != "flags" else "simulation"),
        description=keys.text("description", ""),
        traffic_source=source,
        tide=tide,
        scale=keys.number("scale", 1.0, positive=True),
        days=days_value,
        warmup_days=keys.number("warmup_days", 1.0, low=0.0),
        cluster=cluster,
        slo_ms=keys.number("slo_ms", 500.0, positive=True),
        target_utilization=keys.number("target_utilization", 0.7, low=0.01, high=1.0),
        policies=policies,
        tidescaler=tidescaler,
        keda_cron=keda_cron,
        forecast_refit_seconds=keys.number("forecast_refit_seconds", 3 * 3600.0, positive=True),
        oracle_tail=keys.number("oracle_tail", 0.001, low=0.0, high=0.5),
        seed=keys.integer("seed", 0),
        sweep=sweep,
        origin=origin,
        base_dir=base_dir,
        generator=generator,
    )
    if cross_check:
        keys.problems.extend(check_scenario(scenario))
    if keys.problems:
        raise ScenarioError("invalid scenario:\n  " + "\n  ".join(keys.problems))
    return scenario


def _metadata_value(value: Any) -> str:
    """Trigger metadata is map<string,string>: YAML numbers and booleans become their text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def unreachable_slo(scenario: Scenario) -> str | None:
    """Why no number of replicas meets the oracle's SLO tail, or None when some does.

    However many replicas run, a request still takes its own service time, which
    is exponential: P(latency > SLO) never falls below exp(-SLO / service time).
    """
    import math

    cluster = scenario.cluster
    service = cluster.service_time_seconds
    slo = scenario.slo_ms / 1000.0
    tail = scenario.oracle_tail
    floor = math.exp(-slo / service)
    if floor < tail:
        return None
    if tail <= 0:
        return (
            f"{scenario.origin}: oracle_tail=0 cannot be met: with exponential service times "
            "some requests always exceed any SLO; give oracle_tail > 0"
        )
    needed = math.log(1.0 / tail)  # SLO / service time must exceed this
    return (
        f"{scenario.origin}: the SLO is unreachable at this capacity: at "
        f"capacity_per_replica={cluster.capacity_per_replica:g} req/s with "
        f"concurrency_per_pod={cluster.concurrency} (mean service time {service * 1000:.4g} ms) "
        f"a request's own service exceeds slo_ms={scenario.slo_ms:g} with probability "
        f"{floor:.3g}, at or above oracle_tail={tail:g}, however many replicas run. "
        f"Reachable with slo_ms above {service * needed * 1000:.4g}, or a mean service time "
        f"below {slo / needed * 1000:.4g} ms (capacity_per_replica above "
        f"{cluster.concurrency * needed / slo:.4g} at this concurrency), or oracle_tail above "
        f"{floor:.3g}"
    )


def check_scenario(scenario: Scenario) -> list[str]:
    """Cross-key rules, including the tidescaler metadata through the service's own parser."""
    problems = []
    origin = scenario.origin
    cluster = scenario.cluster
    if cluster.concurrency > MAX_CONCURRENCY:  # the queue model would take hours
        return [
            f"{origin}: capacity_per_replica={cluster.capacity_per_replica:g} at "
            f"service_time_ms={cluster.service_time_ms:g} is {cluster.concurrency:,} requests "
            f"in service at once per pod, more than {MAX_CONCURRENCY:,}; give the service "
            "time (--service-time-ms) or concurrency per pod (--concurrency-per-pod) too"
        ]
    service_time = scenario.cluster.service_time_seconds
    if scenario.slo_ms / 1000.0 <= service_time:
        problems.append(
            f"{origin}: slo_ms={scenario.slo_ms:g} is not above the mean service time "
            f"{service_time * 1000.0:g} ms (concurrency_per_pod={cluster.concurrency} / "
            f"capacity_per_replica={cluster.capacity_per_replica:g} req/s): most requests "
            "would violate it; raise capacity_per_replica (--capacity-per-replica) or slo_ms "
            "(--slo-ms), or give service_time_ms (--service-time-ms)"
        )
    elif "oracle" in scenario.policies and (why := unreachable_slo(scenario)) is not None:
        problems.append(why)
    if scenario.cluster.timeout_seconds * 1000.0 < scenario.slo_ms:
        problems.append(
            f"{origin}: cluster.timeout_seconds={scenario.cluster.timeout_seconds:g} is below "
            f"slo_ms={scenario.slo_ms:g}"
        )
    # A tidescaler block written in the file is checked even when the policy does not run
    # this time: a typo in it (`treshold`) would otherwise wait for the run that uses it.
    if "tidescaler" in scenario.policies or scenario.tidescaler:
        metadata = scenario.tidescaler_metadata()
        try:
            policy = parse_policy(metadata)
        except PolicyError as err:
            problems.extend(f"{origin}: tidescaler: {p}" for p in err.problems)
        else:
            if policy.resources is not None:
                problems.append(
                    f"{origin}: tidescaler: cpuUtilization/memoryUtilization are not simulated; "
                    "compare with the hpa-cpu policy instead"
                )
            if policy.query is None:
                problems.append(
                    f"{origin}: tidescaler: the simulated policy needs query and threshold"
                )
    if scenario.keda_cron is not None and "keda-cron" in scenario.policies:
        for i, trigger in enumerate(scenario.keda_cron):
            extra = set(trigger) - {"timezone", "start", "end", "desiredReplicas"}
            if extra:
                problems.append(
                    f"{origin}: keda_cron[{i}]: {', '.join(sorted(extra))}: "
                    "not a KEDA cron scaler key "
                    "(timezone, start, end, desiredReplicas)"
                )
                continue
            try:
                parse_policy(dict(trigger))
            except PolicyError as err:
                problems.extend(f"{origin}: keda_cron[{i}]: {p}" for p in err.problems)
    if scenario.sweep is not None and not problems:
        problems.extend(check_sweep(scenario))
    return problems


def swept_policies(scenario: Scenario) -> tuple[str, ...]:
    """The policies a sweep reruns, in the scenario's order (default: all but oracle)."""
    assert scenario.sweep is not None
    chosen = scenario.sweep.policies or tuple(p for p in scenario.policies if p != "oracle")
    return tuple(p for p in scenario.policies if p in chosen)


def check_sweep(scenario: Scenario) -> list[str]:
    """Every setting of the sweep checked as the scenario is, before the first run: a
    value the policy refuses (forecastHistory=120d, a start-up above a day) would
    otherwise stop the sweep partway, with the runs before it lost."""
    sweep = scenario.sweep
    assert sweep is not None
    if not swept_policies(scenario):
        # Otherwise the sweep would silently not run (and the report suggest --sweep).
        named = ", ".join(sweep.policies or ("every policy but oracle",))
        return [
            f"{scenario.origin}: the sweep reruns {named}, and none of them is among the "
            f"policies run ({', '.join(scenario.policies)}); add it to the policies "
            "(--policies) or sweep one of those (--sweep-policies)"
        ]
    base = replace(scenario, sweep=None, policies=swept_policies(scenario))
    if math.prod(len(values) for _, values in sweep.axes) <= MAX_CHECKED_COMBINATIONS:
        grids = [
            list(zip([n for n, _ in sweep.axes], combo, strict=True))
            for combo in itertools.product(*(v for _, v in sweep.axes))
        ]
    else:
        grids = [[(name, value)] for name, values in sweep.axes for value in values]
    problems: list[str] = []
    for grid in grids:
        variant = base
        try:
            for name, value in grid:
                variant = with_sweep_value(variant, name, value)
        except ValueError as err:  # a value with_sweep_value cannot read
            found = [f"{err}"]
        else:
            found = check_scenario(variant)
        setting = ", ".join(f"{name}={value[:60]}" for name, value in grid)
        for problem in found:
            text = problem.removeprefix(f"{scenario.origin}: ")
            line = f"{scenario.origin}: sweep {setting}: {text}"
            if line not in problems:
                problems.append(line)
        if len(problems) >= 10:  # enough to say what is wrong
            break
    return problems


def parse_sweep(text: str) -> Sweep:
    """`PARAM=v1,v2,...` for one of the sweepable parameters."""
    if "=" not in text:
        raise ScenarioError(
            f"{short(text)}: expected PARAM=v1,v2,... (e.g. target_utilization=0.5,0.6,0.7)"
        )
    param, _, raw = text.partition("=")
    param = (
        param.strip().replace("-", "_")
        if param.strip() in ("target-utilization", "pod-startup-seconds")
        else param.strip()
    )
    known = SWEEP_ALL + SWEEP_TIDESCALER + SWEEP_CLUSTER
    if param not in known:
        close = difflib.get_close_matches(param, known, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ScenarioError(
            f"{short(param)} cannot be swept{hint}; expected one of {', '.join(known)}"
        )
    values = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    if not values:
        raise ScenarioError(f"{short(text)}: no values after {param}=")
    if param == "scale_down_stabilization_seconds":
        for v in values:
            try:
                seconds = float(v)
            except ValueError:
                raise ScenarioError(f"{param}={short(v)}: expected seconds (a number)") from None
            if not 0 <= seconds <= 3600:
                raise ScenarioError(f"{param}={short(v)}: expected seconds from 0 to 3600")
    elif param in SWEEP_ALL + SWEEP_CLUSTER or param == "forecastQuantile":
        for v in values:
            try:
                number = float(v)
            except ValueError:
                raise ScenarioError(f"{param}={short(v)}: expected a number") from None
            if not math.isfinite(number):  # nan passes `<= 0`; inf would overflow counts
                raise ScenarioError(f"{param}={short(v)}: expected a finite number")
            if param == "forecastQuantile":
                try:
                    parse_forecast_quantile(str(v))  # what the policy accepts
                except ValueError:
                    raise ScenarioError(
                        f"{param}={short(v)}: expected a number from 0.5 to "
                        f"{MAX_FORECAST_QUANTILE:g}"
                    ) from None
            elif param == "pod_startup_seconds":
                # The range of the scenario key and of --pod-startup-seconds: 0 is a pod
                # Ready at once (the simulator starts it in the same step).
                if not 0 <= number <= HIGHS[param]:
                    raise ScenarioError(
                        f"{param}={short(v)}: expected seconds from 0 to {HIGHS[param]:g}"
                    )
            elif number <= 0 or (param == "target_utilization" and number > 1):
                expected = "a number in (0, 1]" if param == "target_utilization" else "a number > 0"
                raise ScenarioError(f"{param}={short(v)}: expected {expected}")
    return Sweep(((param, values),))


def merge_sweeps(sweeps: list[Sweep], policies: tuple[str, ...] | None = None) -> Sweep:
    """One grid from several one-parameter sweeps (at most one per parameter)."""
    axes: list[tuple[str, tuple[str, ...]]] = []
    for sweep in sweeps:
        axes.extend(sweep.axes)
    names = [name for name, _ in axes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ScenarioError(f"{', '.join(repeated)} swept twice; give each parameter once")
    if "target_utilization" in names and "threshold" in names:
        raise ScenarioError(
            "target_utilization and threshold both set the per-replica target; sweep one of them"
        )
    if policies is not None:
        unknown = [p for p in policies if p not in POLICY_NAMES]
        if unknown or not policies:
            raise ScenarioError(
                f"policies: {', '.join(unknown) or 'empty'} not known; "
                f"expected any of {', '.join(POLICY_NAMES)}"
            )
    return Sweep(tuple(axes), policies)


def _parse_sweep_mapping(raw: Any, keys: _Keys) -> Sweep | None:
    """`sweep:` as `"PARAM=v1,v2"` or a mapping `{PARAM: [v1, v2], ..., policies: [...]}`."""
    origin = keys.origin
    try:
        if isinstance(raw, str):
            return parse_sweep(raw)
        if not isinstance(raw, Mapping) or not raw:
            keys._problem("sweep", raw, "PARAM: [v1, v2, ...] (one or more parameters)")
            return None
        policies: tuple[str, ...] | None = None
        sweeps = []
        for param, values in raw.items():
            if param == "policies":
                if isinstance(values, str):
                    values = [v.strip() for v in values.split(",") if v.strip()]
                if not isinstance(values, list):
                    keys._problem("sweep.policies", values, "a list of policy names")
                    return None
                policies = tuple(str(v) for v in values)
                continue
            if not isinstance(values, list) or not values:
                keys._problem(f"sweep.{param}", values, "a non-empty list of values")
                return None
            sweeps.append(parse_sweep(f"{param}=" + ",".join(str(v) for v in values)))
        if not sweeps:
            keys._problem("sweep", raw, "at least one PARAM: [v1, v2, ...]")
            return None
        return merge_sweeps(sweeps, policies)
    except ScenarioError as err:
        keys.problems.append(f"{origin}: sweep: {err}")
        return None


def with_sweep_value(scenario: Scenario, parameter: str, value: str) -> Scenario:
    """The scenario with one swept parameter set."""
    if parameter == "target_utilization":
        meta = {k: v for k, v in scenario.tidescaler.items() if k != "threshold"}
        return replace(scenario, target_utilization=float(value), tidescaler=meta)
    if parameter == "threshold":
        target = float(value) / scenario.cluster.capacity_per_replica
        meta = {k: v for k, v in scenario.tidescaler.items() if k != "threshold"}
        return replace(scenario, target_utilization=target, tidescaler=meta)
    if parameter == "pod_startup_seconds":
        startup = replace(scenario.cluster.pod_startup, seconds=float(value))
        return replace(scenario, cluster=replace(scenario.cluster, pod_startup=startup))
    if parameter == "scale_down_stabilization_seconds":
        behavior = scenario.cluster.behavior
        down = replace(behavior.scale_down, stabilization_window_seconds=float(value))
        cluster = replace(scenario.cluster, behavior=replace(behavior, scale_down=down))
        return replace(scenario, cluster=cluster)
    meta = dict(scenario.tidescaler)
    meta[parameter] = value
    return replace(scenario, tidescaler=meta)


def load_scenario(path: str | Path, *, cross_check: bool = True) -> Scenario:
    """Read and check a scenario file (`cross_check`: see `parse_scenario`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read scenario ({err.strerror})") from None
    except UnicodeDecodeError as err:  # as trace files say it (scaler/traces)
        raise ScenarioError(
            f"{path}: byte {err.start} is not UTF-8 text; save the file as UTF-8"
        ) from None
    return parse_scenario(
        load_yaml(text, str(path)), str(path), path.parent, cross_check=cross_check
    )


def setting_as_given(scenario: Scenario, parameter: str) -> str:
    """The scenario's own value of a sweepable parameter, as a sweep value would spell it."""
    if parameter == "target_utilization":
        return f"{scenario.target_utilization:g}"
    if parameter == "threshold":
        return f"{scenario.threshold:g}"
    if parameter == "pod_startup_seconds":
        return f"{scenario.cluster.pod_startup.seconds:g}"
    if parameter == "scale_down_stabilization_seconds":
        return f"{scenario.cluster.behavior.scale_down.stabilization_window_seconds:g}"
    metadata = scenario.tidescaler_metadata()
    if parameter in metadata:
        return metadata[parameter]
    try:
        policy = parse_policy(metadata)
    except PolicyError:
        return "default"
    if parameter == "forecastQuantile":
        return f"{policy.forecast.quantile:g}"
    if parameter == "forecastHistory":
        return f"{policy.forecast.history_seconds / 86400:g}d"
    return "default"
