"""Trigger metadata -> one typed, immutable Policy.

KEDA hands an external scaler the trigger's `metadata` as map<string,string>.
Every rule about a key lives here: its name, default, range and message. The
parser collects every problem before failing and reports them all at once, so a
user fixes a ScaledObject in one round trip; an unknown key is an error with a
did-you-mean, because a typo must never silently disable a signal.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from scaler.durations import parse_duration
from scaler.schedule import CronError, CronSchedule, CronWindow
from scaler.sources.resources import validate_pod_selector

T = TypeVar("T")


class ForecastMode(StrEnum):
    OFF = "off"
    OBSERVE = "observe"  # compute, export and log; never act
    ON = "on"


class ForecastAction(StrEnum):
    """How a forecast that is on acts (policy key `forecastAction`)."""

    RAMP = "ramp"  # the observed demand plus the rise the median predicts over the lead time
    FLOOR = "floor"  # the band's peak over the lead time as a floor, at all times
    AUTO = "auto"  # ramp, plus the band where it is sharper than the demand observed now


class PolicyError(ValueError):
    """Invalid trigger metadata; `problems` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid tidescaler trigger metadata: " + "; ".join(problems))


@dataclass(frozen=True)
class QueryPolicy:
    """The business-metric signal (KEDA prometheus scaler semantics)."""

    query: str
    threshold: float
    activation_threshold: float = 0.0
    ignore_null_values: bool = True


@dataclass(frozen=True)
class ResourcePolicy:
    """CPU/memory utilization targets of the selected pods (HPA semantics)."""

    pod_selector: str
    cpu_utilization_percent: float | None = None
    memory_utilization_percent: float | None = None


@dataclass(frozen=True)
class ForecastPolicy:
    mode: ForecastMode = ForecastMode.OFF
    query: str | None = None  # the series to learn; defaults to the query signal's
    history_seconds: float = 7 * 86400.0
    pod_startup_seconds: float = 60.0
    quantile: float = 0.95
    action: ForecastAction = ForecastAction.AUTO


@dataclass(frozen=True)
class BackendOptions:
    """How to talk to Prometheus for this trigger (KEDA prometheus scaler keys).

    `namespace` is sent as the `namespace` URL parameter (Thanos Querier
    tenancy); `query_parameters` and `custom_headers` are extra URL parameters
    and HTTP headers, used only where the server allows their names;
    `timeout_seconds` bounds one HTTP request (KEDA's `timeout`, given in ms);
    `unsafe_ssl` skips certificate checks where the server allows it.
    """

    namespace: str | None = None
    query_parameters: tuple[tuple[str, str], ...] = ()
    custom_headers: tuple[tuple[str, str], ...] = ()
    timeout_seconds: float | None = None
    unsafe_ssl: bool = False


@dataclass(frozen=True, eq=False)
class Policy:
    """Everything one trigger asks for. Built only by `parse_policy`."""

    windows: tuple[CronWindow, ...] = ()
    query: QueryPolicy | None = None
    resources: ResourcePolicy | None = None
    forecast: ForecastPolicy = ForecastPolicy()
    prometheus_address: str | None = None  # None: the server's --prometheus-url
    backend: BackendOptions = BackendOptions()
    min_replicas: int = 0
    max_replicas: int | None = None
    metric_name: str = "tidescaler"

    @property
    def resource_only(self) -> bool:
        """Only cpu/memory signals: such a policy never deactivates (KEDA's cpu scaler)."""
        return self.resources is not None and self.query is None and not self.windows

    @property
    def forecast_query(self) -> str | None:
        if self.forecast.mode is ForecastMode.OFF:
            return None
        return self.forecast.query or (self.query.query if self.query else None)


# Keys that KEDA itself puts into scalerMetadata for an external trigger.
KEDA_KEYS = frozenset({"scalerAddress", "enableTLS", "unsafeSsl"})

KNOWN_KEYS = (
    "timezone",
    "start",
    "end",
    "desiredReplicas",
    "schedules",
    "prometheusAddress",
    "query",
    "threshold",
    "activationThreshold",
    "ignoreNullValues",
    "cpuUtilization",
    "memoryUtilization",
    "podSelector",
    "forecast",
    "forecastQuery",
    "forecastHistory",
    "podStartupSeconds",
    "forecastQuantile",
    "forecastAction",
    "minReplicas",
    "maxReplicas",
    "metricName",
)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


# -- value parsers: each returns the value or raises ValueError("expected ...") --


def _int_at_least(lowest: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected a whole number >= {lowest}") from None
        if value < lowest:
            raise ValueError(f"expected a whole number >= {lowest}")
        return value

    return parse


def _number(*, positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        expectation = "a number > 0" if positive else "a number >= 0"
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected {expectation}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise ValueError(f"expected {expectation}")
        return value

    return parse


def _percent(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise ValueError("expected a percentage > 0, e.g. 70") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("expected a percentage > 0, e.g. 70")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true or false")


def _quantile(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("expected a quantile strictly between 0.5 and 1, e.g. 0.95") from None
    if not 0.5 <= value < 1:
        raise ValueError("expected a quantile strictly between 0.5 and 1, e.g. 0.95")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError("expected a duration such as 90s, 15m, 7d") from None


def _positive_duration(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise ValueError("expected a duration > 0 such as 90s, 15m, 7d")
    return seconds


def _zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as Europe/Berlin or UTC") from None


def _cron(text: str) -> CronSchedule:
    try:
        return CronSchedule.parse(text)
    except CronError as err:
        raise ValueError(f"expected a 5-field cron expression: {err}") from None


def _forecast_mode(text: str) -> ForecastMode:
    try:
        return ForecastMode(text.strip().lower())
    except ValueError:
        raise ValueError("expected one of off, observe, on") from None


def _forecast_action(text: str) -> ForecastAction:
    try:
        return ForecastAction(text.strip().lower())
    except ValueError:
        raise ValueError("expected one of ramp, floor, auto") from None


def _address(text: str) -> str:
    address = text.strip().rstrip("/")
    if not address.startswith(("http://", "https://")) or len(address) <= len("https://"):
        raise ValueError("expected an http:// or https:// URL")
    return address


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a non-empty value")
    return text.strip()


def _selector(text: str) -> str:
    problem = validate_pod_selector(text)
    if problem:
        raise ValueError(problem)
    return text.strip()


class _Reader:
    """Reads keys from one metadata map, collecting problems instead of raising."""

    def __init__(self, metadata: Mapping[str, str], where: str = "") -> None:
        self.metadata = metadata
        self.where = where
        self.problems: list[str] = []

    def has(self, key: str) -> bool:
        return key in self.metadata

    def get(self, key: str, parse: Callable[[str], T], default: T) -> T:
        if key not in self.metadata:
            return default
        raw = self.metadata[key]
        try:
            return parse(str(raw))
        except ValueError as err:
            self.problems.append(f"{self.where}{key}={raw!r}: {err}")
            return default

    def require(self, key: str, parse: Callable[[str], T], why: str) -> T | None:
        if key not in self.metadata:
            self.problems.append(f"{self.where}{key} is required {why}")
            return None
        return self.get(key, parse, None)


def _resolve_from_env(metadata: Mapping[str, str], problems: list[str]) -> dict[str, str]:
    """KEDA resolves `<key>FromEnv` from the target's env and passes it under that name."""
    resolved: dict[str, str] = {}
    for key, value in metadata.items():
        base = key.removesuffix("FromEnv")
        if key.endswith("FromEnv") and base in KNOWN_KEYS:
            if base in metadata:
                problems.append(f"{key} and {base} are both set; keep one")
            resolved[base] = value
        else:
            resolved.setdefault(key, value)
    return resolved


def _unknown_keys(metadata: Mapping[str, str]) -> list[str]:
    problems = []
    for key in sorted(metadata):
        if key in KNOWN_KEYS or key in KEDA_KEYS:
            continue
        close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.6)
        if not close:
            lowered = {k.lower(): k for k in KNOWN_KEYS}
            close = [lowered[key.lower()]] if key.lower() in lowered else []
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"unknown key {key!r}{hint}")
    return problems


def _window(reader: _Reader, why: str, *, floor_required: bool) -> CronWindow | None:
    zone = reader.require("timezone", _zone, why)
    start = reader.require("start", _cron, why)
    end = reader.require("end", _cron, why)
    desired = reader.get("desiredReplicas", _int_at_least(1 if floor_required else 0), None)
    ceiling = reader.get("maxReplicas", _int_at_least(0), None)
    if floor_required and not reader.has("desiredReplicas"):
        reader.problems.append(f"{reader.where}desiredReplicas is required {why}")
    if not floor_required and desired is None and ceiling is None and not reader.problems:
        reader.problems.append(f"{reader.where}needs desiredReplicas and/or maxReplicas")
    if start is not None and end is not None and start.expression == end.expression:
        reader.problems.append(
            f"{reader.where}start and end must differ (both {start.expression!r})"
        )
    if desired is not None and ceiling is not None and desired > ceiling:
        reader.problems.append(
            f"{reader.where}desiredReplicas={desired} is above maxReplicas={ceiling} "
            "of the same window"
        )
    if zone is None or start is None or end is None:
        return None
    return CronWindow(
        start=start, end=end, zone=zone, desired_replicas=desired, max_replicas=ceiling
    )


def _schedules(text: str, problems: list[str]) -> list[tuple[str, CronWindow]]:
    try:
        entries: Any = json.loads(text)
    except ValueError:
        try:
            entries = yaml.safe_load(text)
        except yaml.YAMLError as err:
            problems.append(f"schedules: not valid YAML or JSON ({err.__class__.__name__})")
            return []
    if not isinstance(entries, list) or not entries:
        problems.append("schedules: expected a non-empty list of {start, end, timezone, ...}")
        return []
    windows = []
    allowed = {"start", "end", "timezone", "desiredReplicas", "maxReplicas"}
    for i, entry in enumerate(entries):
        where = f"schedules[{i}]."
        if not isinstance(entry, dict):
            problems.append(f"schedules[{i}]: expected an object with start, end, timezone")
            continue
        for key in sorted(set(entry) - allowed):
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{where}{key}: unknown key{hint}")
        reader = _Reader({k: str(v) for k, v in entry.items() if k in allowed}, where)
        window = _window(reader, "in every schedule", floor_required=False)
        problems.extend(reader.problems)
        if window is not None:
            windows.append((f"schedules[{i}]", window))
    return windows


def parse_policy(metadata: Mapping[str, str]) -> Policy:
    """Build the policy of one trigger, or raise PolicyError listing every problem."""
    problems: list[str] = []
    meta = _resolve_from_env(metadata, problems)
    problems.extend(_unknown_keys(meta))
    r = _Reader(meta)

    named_windows: list[tuple[str, CronWindow]] = []
    single_window_keys = ("timezone", "start", "end", "desiredReplicas")
    if any(r.has(k) for k in single_window_keys):
        window = _window(r, "for a cron window (with timezone, start, end)", floor_required=True)
        if window is not None:
            named_windows.append(("the cron window", window))
    if r.has("schedules"):
        named_windows.extend(_schedules(meta["schedules"], problems))
    windows = [window for _, window in named_windows]

    query = None
    if r.has("query"):
        text = r.get("query", _text, "")
        threshold = r.require("threshold", _number(positive=True), "with query")
        if text and threshold is not None:
            query = QueryPolicy(
                query=text,
                threshold=threshold,
                activation_threshold=r.get("activationThreshold", _number(positive=False), 0.0),
                ignore_null_values=r.get("ignoreNullValues", _boolean, True),
            )
    else:
        for key in ("threshold", "activationThreshold", "ignoreNullValues"):
            if r.has(key):
                problems.append(f"{key} is set but query is not; {key} belongs to the query signal")

    resources = None
    cpu = r.get("cpuUtilization", _percent, None)
    memory = r.get("memoryUtilization", _percent, None)
    if r.has("cpuUtilization") or r.has("memoryUtilization"):
        selector = r.require("podSelector", _selector, "with cpuUtilization or memoryUtilization")
        if selector and (cpu is not None or memory is not None):
            resources = ResourcePolicy(selector, cpu, memory)
    elif r.has("podSelector"):
        problems.append("podSelector is set but neither cpuUtilization nor memoryUtilization is")

    forecast = ForecastPolicy(
        mode=r.get("forecast", _forecast_mode, ForecastMode.OFF),
        query=r.get("forecastQuery", _text, None),
        history_seconds=r.get("forecastHistory", _positive_duration, 7 * 86400.0),
        pod_startup_seconds=r.get("podStartupSeconds", _duration, 60.0),
        quantile=r.get("forecastQuantile", _quantile, 0.95),
        action=r.get("forecastAction", _forecast_action, ForecastAction.AUTO),
    )
    if forecast.mode is not ForecastMode.OFF and not r.has("query"):
        problems.append(
            f"forecast={forecast.mode.value} needs query and threshold: the forecast is of the "
            "demand that query measures, and threshold turns it into replicas"
        )

    min_replicas = r.get("minReplicas", _int_at_least(0), 0)
    max_replicas = r.get("maxReplicas", _int_at_least(1), None)
    if max_replicas is not None and min_replicas > max_replicas:
        problems.append(f"minReplicas={min_replicas} is above maxReplicas={max_replicas}")
    for name, window in named_windows:
        if window.max_replicas is not None and window.max_replicas < min_replicas:
            problems.append(
                f"{name}: maxReplicas={window.max_replicas} is below minReplicas={min_replicas}"
            )
        if (
            window.desired_replicas is not None
            and max_replicas is not None
            and window.desired_replicas > max_replicas
        ):
            problems.append(
                f"{name}: desiredReplicas={window.desired_replicas} is above "
                f"maxReplicas={max_replicas}"
            )

    if not (windows or query or resources) and not problems:
        problems.append(
            "no signal: set a cron window (timezone, start, end, desiredReplicas) or schedules, "
            "query with threshold, or cpuUtilization/memoryUtilization with podSelector"
        )

    policy = Policy(
        windows=tuple(windows),
        query=query,
        resources=resources,
        forecast=forecast,
        prometheus_address=r.get("prometheusAddress", _address, None),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        metric_name=r.get("metricName", _text, "tidescaler"),
    )
    problems.extend(r.problems)
    if problems:
        raise PolicyError(problems)
    return policy


@lru_cache(maxsize=4096)
def _parse_cached(items: frozenset[tuple[str, str]]) -> Policy | PolicyError:
    try:
        return parse_policy(dict(items))
    except PolicyError as err:
        return err


def cached_policy(metadata: Mapping[str, str]) -> Policy:
    """parse_policy, memoised per distinct metadata (KEDA sends the same map every poll)."""
    result = _parse_cached(frozenset(metadata.items()))
    if isinstance(result, PolicyError):
        raise result
    return result
