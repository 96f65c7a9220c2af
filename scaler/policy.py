"""Trigger metadata -> one typed, immutable Policy.

KEDA hands an external scaler the trigger's `metadata` as map<string,string>.
Every rule about a key lives here: its name, default, range and message. The
parser collects every problem before failing and reports them all at once, so a
user fixes a ScaledObject in one round trip; an unknown key is an error with a
did-you-mean, because a typo must never silently disable a signal.

The map is untrusted (anyone who can write a ScaledObject sends it): sizes are
checked before anything is parsed (scaler.policy_limits), every number has a
sane range so that no decision can overflow, and messages quote only a short
prefix of a value.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cachetools import LRUCache

from scaler.durations import parse_decimal, parse_duration
from scaler.policy_limits import bounded_message, quote, size_problems
from scaler.policy_text import MAX_WINDOWS, Node, TextError, load_schedules, parse_pairs
from scaler.schedule import CronError, CronSchedule, CronWindow
from scaler.sources.resources import validate_pod_selector

T = TypeVar("T")

_MAX_PROBLEM_CHARS = 400

# Bounds on every number, so that no value in a decision can overflow (documented).
MAX_REPLICAS = 100_000  # desiredReplicas, minReplicas, maxReplicas
MIN_THRESHOLD, MAX_THRESHOLD = 1e-9, 1e15  # threshold; activationThreshold is 0..1e15
MAX_PERCENT = 10_000.0  # cpuUtilization, memoryUtilization
MAX_POD_STARTUP_SECONDS = 86_400.0
MAX_METRIC_LAG_SECONDS = 3_600.0
# The band is calibrated on at most 1,000 backtest errors at each horizon (the
# forecaster's selection origins): above this quantile it would rest on fewer than 5.
MAX_FORECAST_QUANTILE = 0.995
QUANTILE_EXPECTED = (
    f"expected a quantile from 0.5 to {MAX_FORECAST_QUANTILE:g}, e.g. 0.95 (the band is "
    "calibrated on at most 1,000 backtest errors: a higher one would rest on a handful)"
)
# metricLagSeconds: auto assumes this scrape interval (kube-prometheus-stack's default).
ASSUMED_SCRAPE_SECONDS = 30.0
MAX_FORECAST_HISTORY_SECONDS = 90 * 86_400.0
MAX_TIMEOUT_MS = 60_000


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
    """Invalid trigger metadata; `problems` lists every problem found.

    Each problem is cut to a few hundred characters and the message to 2 KiB
    ("and N more problems"), so it always fits a gRPC status.
    """

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(
            p if len(p) <= _MAX_PROBLEM_CHARS else p[: _MAX_PROBLEM_CHARS - 1] + "…"
            for p in problems
        )
        super().__init__(bounded_message("invalid tidescaler trigger metadata: ", self.problems))


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


# forecastHistory when a trigger does not say (the backtest scores the same by default).
DEFAULT_FORECAST_HISTORY_SECONDS = 7 * 86400.0


@dataclass(frozen=True)
class ForecastPolicy:
    mode: ForecastMode = ForecastMode.OFF
    query: str | None = None  # the series to learn; defaults to the query signal's
    history_seconds: float = DEFAULT_FORECAST_HISTORY_SECONDS
    pod_startup_seconds: float = 60.0
    pod_startup_auto: bool = False  # podStartupSeconds: auto (measured from the target's pods)
    quantile: float = 0.95
    action: ForecastAction = ForecastAction.RAMP
    # How far the query's answer trails demand (scrape interval plus half the rate window):
    # the forecast learns that lagged series, so it looks this much further ahead.
    metric_lag_seconds: float = 0.0


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

    def __post_init__(self) -> None:
        # Hashed two or three times per request (the allow-list verdicts, the shared
        # answers' keys): once here instead of a tuple of every field each time.
        object.__setattr__(self, "_hash", hash(self._values()))

    def _values(self) -> tuple[object, ...]:
        return (
            self.namespace,
            self.query_parameters,
            self.custom_headers,
            self.timeout_seconds,
            self.unsafe_ssl,
        )

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined,no-any-return]

    def __repr__(self) -> str:
        # Header and parameter values may be credentials (a bearer token): names only,
        # wherever these options are printed (logs, keys of shared answers).
        return (
            f"BackendOptions(namespace={self.namespace!r}, "
            f"query_parameters={[name for name, _ in self.query_parameters]!r}, "
            f"custom_headers={[name for name, _ in self.custom_headers]!r}, "
            f"timeout_seconds={self.timeout_seconds!r}, unsafe_ssl={self.unsafe_ssl!r})"
        )

    def __reduce__(self) -> tuple[type[BackendOptions], tuple[object, ...]]:
        # Built anew where unpickled: string hashes differ from one process to the next.
        return (BackendOptions, self._values())


@dataclass(frozen=True, eq=False)
class Policy:
    """Everything one trigger asks for. Built only by `parse_policy`."""

    windows: tuple[CronWindow, ...] = ()
    query: QueryPolicy | None = None
    resources: ResourcePolicy | None = None
    forecast: ForecastPolicy = ForecastPolicy()
    prometheus_address: str | None = None  # None: the server's --prometheus-url
    # The key the address was written under (KEDA's serverAddress, or prometheusAddress):
    # a message about the address names the key the user wrote, not one they did not.
    prometheus_address_key: str = "prometheusAddress"
    backend: BackendOptions = BackendOptions()
    min_replicas: int = 0
    max_replicas: int | None = None
    metric_name: str = "tidescaler"

    @property
    def resource_only(self) -> bool:
        """Only cpu/memory signals: such a policy never deactivates (KEDA's cpu scaler)."""
        return self.resources is not None and self.query is None and not self.windows

    @cached_property  # read on every decision; the fields it comes from never change
    def forecast_query(self) -> str | None:
        if self.forecast.mode is ForecastMode.OFF:
            return None
        return self.forecast.query or (self.query.query if self.query else None)


# Keys of KEDA's own external trigger (its connection to the scaler), which KEDA passes
# along in scalerMetadata with the rest: tidescaler reads none of them. (`unsafeSsl` is
# one too, and tidescaler's for Prometheus as well: see BackendAccess.)
KEDA_KEYS = frozenset(
    {"scalerAddress", "enableTLS", "caCert", "tlsClientCert", "tlsClientKey", "tlsCertFile"}
)

# Keys of KEDA's prometheus scaler that tidescaler cannot honour: a clear "no"
# rather than "unknown key", so that a migration knows what to change.
UNSUPPORTED_KEYS = {
    "awsRegion": "awsRegion is not supported by tidescaler: it does not sign requests for "
    "Amazon Managed Prometheus; point prometheusAddress at a Prometheus it can reach as is",
    "identityOwner": "identityOwner is not supported by tidescaler: it has no AWS pod identity "
    "to use; point prometheusAddress at a Prometheus it can reach as is",
    "authModes": "authModes is not supported by tidescaler: KEDA does not pass "
    "TriggerAuthentication secrets to an external scaler; point prometheusAddress at a "
    "Prometheus it can reach without credentials",
}

KNOWN_KEYS = (
    "timezone",
    "start",
    "end",
    "desiredReplicas",
    "schedules",
    "prometheusAddress",
    "serverAddress",
    "namespace",
    "queryParameters",
    "customHeaders",
    "timeout",
    "unsafeSsl",
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
    "metricLagSeconds",
    "minReplicas",
    "maxReplicas",
    "metricName",
)

# Go's strconv.ParseBool (what KEDA uses) accepts 1/t/true and 0/f/false; "yes"/"on" are ours.
_TRUE = {"true", "1", "yes", "on", "t"}
_FALSE = {"false", "0", "no", "off", "f"}
# strconv.Atoi style: optional sign, ASCII digits only (no "1_000", no "1e3", no "5.0").
_WHOLE = re.compile(r"[+-]?[0-9]+")
# IANA names: components of letters, digits, "_", "+", "-" (no ".", so no "..", no files).
_ZONE = re.compile(r"[A-Za-z0-9_+-]{1,30}(/[A-Za-z0-9_+-]{1,30}){0,3}")
# A Kubernetes namespace (DNS-1123 label), what Thanos' `namespace` parameter names.
NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# RFC 9110 token: the characters a header name may have.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers that frame the request itself; never a tenant's to set.
FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# URL parameters tidescaler itself sends with every instant or range query: never a
# trigger's to set (refused when the metadata is read, so `validate` says so too).
RESERVED_QUERY_PARAMETERS = frozenset({"query", "time", "timeout", "start", "end", "step"})


# -- value parsers: each returns the value or raises ValueError("expected ...") --


def _whole(lowest: int, highest: int = MAX_REPLICAS) -> Callable[[str], int]:
    expectation = f"expected a whole number from {lowest} to {highest}"

    def parse(text: str) -> int:
        stripped = text.strip()
        # Leading zeros are fine (Go's Atoi, in KEDA, reads "005" as 5); more than 12
        # significant digits is out of range anyway, and never worth converting.
        if not _WHOLE.fullmatch(stripped):
            raise ValueError(expectation)
        digits = stripped.lstrip("+-").lstrip("0") or "0"
        if len(digits) > 12:
            raise ValueError(expectation)
        value = -int(digits) if stripped.startswith("-") else int(digits)
        if not lowest <= value <= highest:
            raise ValueError(expectation)
        return value

    return parse


def _bounded_number(lowest: float, highest: float, shown: str) -> Callable[[str], float]:
    expectation = f"expected a number from {shown}"

    def parse(text: str) -> float:
        try:
            value = parse_decimal(text)
        except ValueError:
            raise ValueError(expectation) from None
        if not math.isfinite(value) or not lowest <= value <= highest:
            raise ValueError(expectation)
        return value

    return parse


_threshold = _bounded_number(MIN_THRESHOLD, MAX_THRESHOLD, "1e-9 to 1e15")
_activation_threshold = _bounded_number(0.0, MAX_THRESHOLD, "0 to 1e15")


def _percent(text: str) -> float:
    expectation = "expected a percentage > 0, e.g. 70 (at most 10000)"
    try:
        value = parse_decimal(text.strip().removesuffix("%"))
    except ValueError:
        raise ValueError(expectation) from None
    if not math.isfinite(value) or not 0 < value <= MAX_PERCENT:
        raise ValueError(expectation)
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true or false")


def parse_forecast_quantile(text: str) -> float:
    """forecastQuantile's value; ValueError saying what is expected."""
    try:
        value = parse_decimal(text)
    except ValueError:
        raise ValueError(QUANTILE_EXPECTED) from None
    if not 0.5 <= value <= MAX_FORECAST_QUANTILE:
        raise ValueError(QUANTILE_EXPECTED)
    return value


def _bounded_duration(lowest_exclusive: bool, highest: float, shown: str) -> Callable[[str], float]:
    expectation = f"expected a duration such as 90s, 15m, 7d ({shown})"

    def parse(text: str) -> float:
        try:
            seconds = parse_duration(text)
        except ValueError:
            raise ValueError(expectation) from None
        if seconds > highest or (lowest_exclusive and seconds <= 0):
            raise ValueError(expectation)
        return seconds

    return parse


_forecast_history = _bounded_duration(
    True, MAX_FORECAST_HISTORY_SECONDS, "more than 0, at most 90d"
)
_pod_startup = _bounded_duration(False, MAX_POD_STARTUP_SECONDS, "at most 1d, or auto")
_metric_lag = _bounded_duration(False, MAX_METRIC_LAG_SECONDS, "at most 1h, or auto")
# A PromQL range or subquery selector: [5m], [1h30m], [10m:1m].
# No bracket inside one: each try stops at the next bracket, so a crafted query such as
# "[1:" x 5000 costs linear time, not quadratic.
_RANGE = re.compile(r"\[\s*([0-9][0-9a-z.]*)\s*(?::[^\]\[]*)?\]")


def metric_lag_of(query: str) -> float:
    """metricLagSeconds: auto, how far a query's answer trails the demand it measures.

    A sample is on average half a scrape interval old when scraped and Prometheus
    sees it one scrape later (ASSUMED_SCRAPE_SECONDS in all), and a rate over a
    window is centred half the window back: the longest range selector counts.
    """
    lag = ASSUMED_SCRAPE_SECONDS + (longest_range_seconds(query) or 0.0) / 2
    return min(lag, MAX_METRIC_LAG_SECONDS)


def longest_range_seconds(query: str) -> float | None:
    """The longest range selector (`[5m]`, `[1h:1m]`) in a PromQL query, or None."""
    ranges = []
    for match in _RANGE.finditer(query):
        try:
            ranges.append(parse_duration(match.group(1)))
        except ValueError:
            continue  # not a duration: PromQL would refuse the query anyway
    return max(ranges, default=None)


def _zone(text: str) -> ZoneInfo:
    expectation = "expected an IANA time zone such as Europe/Berlin or UTC"
    name = text.strip()
    if not _ZONE.fullmatch(name):
        raise ValueError(expectation)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a directory
        raise ValueError(expectation) from None


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


def canonical_url(url: str) -> str:
    """`url` as allow-lists compare it: trimmed, without a trailing "/", and with the
    scheme and host in lower case, as URLs compare (`HTTPS://Prometheus` is
    `https://prometheus`); the credentials and path are kept as written."""
    url = url.strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]  # the path, query and fragment, as written
    userinfo, at, host = authority.rpartition("@")
    return f"{scheme.lower()}://{userinfo}{at}{host.lower()}{tail}"


def _address(text: str) -> str:
    address = canonical_url(text)
    if (
        not address.startswith(("http://", "https://"))
        or not _has_host(address)
        or any(c.isspace() or not c.isprintable() for c in address)
    ):
        raise ValueError("expected an http:// or https:// URL")
    return address


def _has_host(address: str) -> bool:
    """Whether an http(s) URL names a host (a Service may be called `a`)."""
    try:
        return bool(urllib.parse.urlsplit(address).hostname)
    except ValueError:  # a malformed port or IPv6 literal
        return False


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a non-empty value")
    return text.strip()


def _selector(text: str) -> str:
    problem = validate_pod_selector(text)
    if problem:
        raise ValueError(problem)
    return text.strip()


def _namespace(text: str) -> str | None:
    name = text.strip()
    if not name:
        return None  # KEDA treats an empty value as not set
    if not NAMESPACE_NAME.fullmatch(name):
        raise ValueError("expected a Kubernetes namespace name (lower-case letters, digits, '-')")
    return name


def _query_parameters(text: str) -> tuple[tuple[str, str], ...]:
    if not text.strip():
        return ()
    try:
        pairs = parse_pairs(text)
    except TextError as err:
        raise ValueError(f"expected name=value,name=value: {err}") from None
    for name, _ in pairs:
        if name in RESERVED_QUERY_PARAMETERS:
            raise ValueError(
                f"{name[:40]!r} is a parameter tidescaler sets itself "
                f"({', '.join(sorted(RESERVED_QUERY_PARAMETERS))})"
            )
    return pairs


def _custom_headers(text: str) -> tuple[tuple[str, str], ...]:
    if not text.strip():
        return ()
    try:
        pairs = parse_pairs(text)
    except TextError as err:
        raise ValueError(f"expected Name=value,Name=value: {err}") from None
    seen: set[str] = set()
    for name, value in pairs:
        if not HEADER_NAME.fullmatch(name):
            raise ValueError(f"{quote(name)} is not a valid HTTP header name")
        if name.lower() in seen:  # header names are case-insensitive: one header, twice
            raise ValueError(f"{quote(name)} is given twice (header names ignore case)")
        seen.add(name.lower())
        if name.lower() in FRAMING_HEADERS:
            raise ValueError(f"{name!r} frames the request and cannot be set")
        if not all(c == "\t" or " " <= c <= "~" for c in value):  # what an HTTP client sends
            raise ValueError(f"the value of {name!r} may have printable ASCII characters only")
    return pairs


def _timeout_ms(text: str) -> float | None:
    """KEDA's `timeout`: whole milliseconds; 0 (or empty) means the server's default."""
    stripped = text.strip()
    if not stripped:
        return None
    expectation = (
        f"expected whole milliseconds from 0 to {MAX_TIMEOUT_MS} (0: the server's default)"
    )
    if not _WHOLE.fullmatch(stripped) or len(stripped) > 12:
        raise ValueError(expectation)
    milliseconds = int(stripped)
    if not 0 <= milliseconds <= MAX_TIMEOUT_MS:
        raise ValueError(expectation)
    return milliseconds / 1000 if milliseconds else None


def _optional_boolean(text: str) -> bool:
    return _boolean(text) if text.strip() else False  # KEDA: empty means not set


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
            return parse(raw)
        except ValueError as err:
            self.problems.append(f"{self.where}{key}={quote(raw)}: {err}")
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
        if key in UNSUPPORTED_KEYS:
            problems.append(UNSUPPORTED_KEYS[key])
            continue
        close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.6)
        if not close:
            lowered = {k.lower(): k for k in KNOWN_KEYS}
            close = [lowered[key.lower()]] if key.lower() in lowered else []
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"unknown key {quote(key)}{hint}")
    return problems


def _window(reader: _Reader, why: str, *, floor_required: bool) -> CronWindow | None:
    zone = reader.require("timezone", _zone, why)
    start = reader.require("start", _cron, why)
    end = reader.require("end", _cron, why)
    desired = reader.get("desiredReplicas", _whole(1 if floor_required else 0), None)
    ceiling = reader.get("maxReplicas", _whole(0), None)
    if floor_required and not reader.has("desiredReplicas"):
        reader.problems.append(f"{reader.where}desiredReplicas is required {why}")
    if not floor_required and desired is None and ceiling is None and not reader.problems:
        reader.problems.append(f"{reader.where}needs desiredReplicas and/or maxReplicas")
    if start is not None and end is not None and start.expression == end.expression:
        reader.problems.append(
            f"{reader.where}start and end must differ (both {quote(start.expression)})"
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


_WINDOW_KEYS = ("start", "end", "timezone", "desiredReplicas", "maxReplicas")


def _schedules(text: str, problems: list[str]) -> list[tuple[str, CronWindow]]:
    try:
        entries: Node = load_schedules(text)
    except TextError as err:
        problems.append(f"schedules: {err}")
        return []
    if not isinstance(entries, list) or not entries:
        problems.append("schedules: expected a non-empty list of {start, end, timezone, ...}")
        return []
    if len(entries) > MAX_WINDOWS:
        problems.append(f"schedules: {len(entries)} windows, at most {MAX_WINDOWS}")
        return []
    windows = []
    for i, entry in enumerate(entries):
        where = f"schedules[{i}]."
        if not isinstance(entry, dict):
            problems.append(f"schedules[{i}]: expected an object with start, end, timezone")
            continue
        for key in sorted(set(entry) - set(_WINDOW_KEYS)):
            close = difflib.get_close_matches(key, _WINDOW_KEYS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            shown = key if key.isprintable() and len(key) <= 60 else quote(key)
            problems.append(f"{where}{shown}: unknown key{hint}")
        values = {}
        for key in _WINDOW_KEYS:
            if key not in entry:
                continue
            value = entry[key]
            if not isinstance(value, str):
                problems.append(f"{where}{key}: expected a single value, not a list or object")
                continue
            values[key] = value
        reader = _Reader(values, where)
        window = _window(reader, "in every schedule", floor_required=False)
        problems.extend(reader.problems)
        if window is not None:
            windows.append((f"schedules[{i}]", window))
    return windows


def _prometheus_address(r: _Reader, problems: list[str]) -> tuple[str | None, str]:
    """`prometheusAddress`, or KEDA's name for it, `serverAddress`; both must agree.

    Returns the address and the key it was given under (prometheusAddress when both are).
    """
    ours = r.get("prometheusAddress", _address, None)
    keda = r.get("serverAddress", _address, None)
    if ours is not None and keda is not None and ours != keda:
        problems.append(
            "serverAddress and prometheusAddress are both set and differ; keep one "
            "(serverAddress is KEDA's name for prometheusAddress)"
        )
    if ours is None and keda is not None:
        return keda, "serverAddress"
    return ours, "prometheusAddress"


def _backend(r: _Reader) -> BackendOptions:
    namespace = r.get("namespace", _namespace, None)
    no_pairs: tuple[tuple[str, str], ...] = ()
    parameters = r.get("queryParameters", _query_parameters, no_pairs)
    # `namespace` in queryParameters means what the namespace key means (the same URL
    # parameter, always allowed): one parameter, checked as a namespace name.
    for name, value in parameters:
        if name != "namespace":
            continue
        try:
            given = _namespace(value)
        except ValueError as err:
            r.problems.append(f"queryParameters namespace={quote(value)}: {err}")
            continue
        if namespace is not None and given != namespace:
            r.problems.append(
                "namespace and queryParameters' namespace are both set and differ; keep one"
            )
        namespace = namespace or given
    return BackendOptions(
        namespace=namespace,
        query_parameters=tuple((n, v) for n, v in parameters if n != "namespace"),
        custom_headers=r.get("customHeaders", _custom_headers, ()),
        timeout_seconds=r.get("timeout", _timeout_ms, None),
        unsafe_ssl=r.get("unsafeSsl", _optional_boolean, False),
    )


def parse_policy(metadata: Mapping[str, str]) -> Policy:
    """Build the policy of one trigger, or raise PolicyError listing every problem."""
    too_large = size_problems(metadata)
    if too_large:
        raise PolicyError(too_large)  # nothing of an oversized map is parsed
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
        threshold = r.require("threshold", _threshold, "with query")
        if text and threshold is not None:
            query = QueryPolicy(
                query=text,
                threshold=threshold,
                activation_threshold=r.get("activationThreshold", _activation_threshold, 0.0),
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

    # podStartupSeconds: auto -> measured from the scale target's pods, 60 s until then.
    startup_auto = str(r.metadata.get("podStartupSeconds", "")).strip().lower() == "auto"
    startup = 60.0 if startup_auto else r.get("podStartupSeconds", _pod_startup, 60.0)
    lag_auto = str(r.metadata.get("metricLagSeconds", "auto")).strip().lower() == "auto"
    forecast_query = r.get("forecastQuery", _text, None)
    learned = forecast_query or str(r.metadata.get("query", ""))
    lag = metric_lag_of(learned) if lag_auto else r.get("metricLagSeconds", _metric_lag, 0.0)
    forecast = ForecastPolicy(
        mode=r.get("forecast", _forecast_mode, ForecastMode.OFF),
        query=forecast_query,
        history_seconds=r.get(
            "forecastHistory", _forecast_history, DEFAULT_FORECAST_HISTORY_SECONDS
        ),
        pod_startup_seconds=startup,
        pod_startup_auto=startup_auto,
        quantile=r.get("forecastQuantile", parse_forecast_quantile, 0.95),
        action=r.get("forecastAction", _forecast_action, ForecastAction.RAMP),
        metric_lag_seconds=lag,
    )
    if forecast.mode is not ForecastMode.OFF and not r.has("query"):
        problems.append(
            f"forecast={forecast.mode.value} needs query and threshold: the forecast is of the "
            "demand that query measures, and threshold turns it into replicas"
        )

    min_replicas = r.get("minReplicas", _whole(0), 0)
    max_replicas = r.get("maxReplicas", _whole(1), None)
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

    if not (windows or query or resources) and not problems and not r.problems:
        problems.append(
            "no signal: set a cron window (timezone, start, end, desiredReplicas) or schedules, "
            "query with threshold, or cpuUtilization/memoryUtilization with podSelector"
        )

    prometheus_address, prometheus_address_key = _prometheus_address(r, problems)
    policy = Policy(
        windows=tuple(windows),
        query=query,
        resources=resources,
        forecast=forecast,
        prometheus_address=prometheus_address,
        prometheus_address_key=prometheus_address_key,
        backend=_backend(r),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        metric_name=r.get("metricName", _text, "tidescaler"),
    )
    problems.extend(r.problems)
    if problems:
        raise PolicyError(problems)
    return policy


# -- the cache: KEDA sends the same map on every poll ---------------------------

# Bounded by the memory its entries hold, not by their number: a cached map is at
# most MAX_METADATA_BYTES, so many distinct large maps cannot pin more than this.
_CACHE_BYTES = 16 * 1024 * 1024
_ENTRY_OVERHEAD = 2048  # the cache's own bookkeeping, an error's tuple

# What a parsed policy holds (tracemalloc: ~1.4 KiB for a cron window and a query, ~36
# KiB for fifty windows, ~49 KiB once each window has cached its answer), for the
# caches that keep policies to count it.
POLICY_BYTES = 1024
WINDOW_BYTES = 1024


def policy_bytes(policy: Policy) -> int:
    """About what `policy` holds in memory: its windows are most of a large one."""
    return POLICY_BYTES + WINDOW_BYTES * len(policy.windows)


_Result = Policy | tuple[str, ...]  # a policy, or the problems of an invalid map
_cache: LRUCache[frozenset[tuple[str, str]], tuple[int, _Result]] = LRUCache(
    maxsize=_CACHE_BYTES, getsizeof=lambda entry: entry[0]
)
_cache_lock = threading.Lock()


def _cost(metadata: Mapping[str, str], result: _Result) -> int:
    size = _ENTRY_OVERHEAD + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in metadata.items())
    if isinstance(result, tuple):
        return size + sum(sys.getsizeof(p) for p in result)
    return size + policy_bytes(result)


def cached_policy(metadata: Mapping[str, str]) -> Policy:
    """parse_policy, memoised per distinct metadata (KEDA sends the same map every poll).

    An oversized map is rejected before it is hashed or kept; what is kept is
    bounded in bytes (_CACHE_BYTES), valid and invalid maps alike."""
    if not isinstance(metadata, dict):
        # gRPC's map is read through Python-level iteration: copy it once, not per check.
        metadata = dict(metadata)
    too_large = size_problems(metadata)
    if too_large:
        raise PolicyError(too_large)
    key = frozenset(metadata.items())
    with _cache_lock:
        entry = _cache.get(key)
    if entry is None:
        try:
            result: _Result = parse_policy(metadata)
        except PolicyError as err:
            result = err.problems
        with _cache_lock:
            _cache[key] = (_cost(metadata, result), result)
    else:
        result = entry[1]
    if isinstance(result, tuple):
        raise PolicyError(result)  # a fresh error each time: no traceback piles up on one
    return result


def clear_policy_cache() -> None:
    with _cache_lock:
        _cache.clear()
