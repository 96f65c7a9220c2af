"""Where a fleet's services come from: a folder of trace files or one Prometheus query.

A `ServiceSource` is what is shipped to a worker: small (a path, or a query
and a label set), loaded there, so that the driver never holds any service's
series and a worker holds one at a time.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from scaler.trace_query import MAX_RANGE_POINTS, range_points
from scaler.traces import FillMissing, Trace, Unit, from_series, read_trace

TRACE_SUFFIXES = (".csv", ".csv.gz", ".json", ".json.gz", ".tsv")


class FleetInputError(ValueError):
    """The fleet's input cannot be used; the message says what and how to fix it."""


@dataclass(frozen=True)
class FileService:
    """One service whose traffic is a trace file."""

    name: str
    path: str
    size: int
    mtime_ns: int
    fill_missing: FillMissing = "error"
    unit: Unit | None = None  # None: the file's own (count for CSV, rate for Prometheus)

    def identity(self) -> str:
        # Gaps filled otherwise are other traffic.
        return f"{self.content_identity()}:{self.fill_missing}"

    def content_identity(self) -> str:
        """The file alone, whatever fills its gaps: a trace without gaps is the same
        traffic under every --fill-missing."""
        # Content is fingerprinted by size and modification time: cheap on the
        # driver, and a changed file is evaluated again. Values read in another unit
        # are other traffic (said only when given, so that older cache keys still hold).
        unit = f":unit={self.unit}" if self.unit else ""
        return f"file:{self.path}:{self.size}:{self.mtime_ns}{unit}"

    def load(self) -> Trace:
        return read_trace(self.path, unit=self.unit, fill_missing=self.fill_missing)


@dataclass(frozen=True)
class PrometheusService:
    """One label set of a `by (...)` query, fetched by the worker that evaluates it."""

    name: str
    labels: tuple[tuple[str, str], ...]
    url: str
    query: str
    start: float
    end: float
    step_seconds: float
    fill_missing: FillMissing = "error"
    unit: Unit | None = None  # None: rate, what a rate() query returns

    def identity(self) -> str:
        # Gaps filled otherwise are other traffic.
        return json.dumps([*json.loads(self.content_identity()), self.fill_missing])

    def content_identity(self) -> str:
        """The series alone, whatever fills its gaps (as a file's)."""
        return json.dumps(
            [
                "prometheus",
                self.url,
                self.query,
                self.labels,
                self.start,
                self.end,
                self.step_seconds,
                self.unit or "rate",
            ]
        )

    def series_query(self) -> str:
        """The query restricted to this label set, in plain PromQL.

        `label_replace(vector(1), ...)` builds a one-sample vector carrying the
        label set, and `and on(...)` keeps only the series that match it.
        """
        selector = "vector(1)"
        for label, value in self.labels:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            selector = f'label_replace({selector}, "{label}", "{escaped}", "", "")'
        names = ", ".join(label for label, _ in self.labels)
        return f"({self.query}) and on({names}) {selector}"

    def load(self) -> Trace:
        from scaler.sources.prometheus import PrometheusSource

        with PrometheusSource() as source:
            times, values, present = source.range_samples(
                self.url, self.series_query(), self.start, self.end, self.step_seconds
            )
        # Read as `simulate --prometheus-url` reads its series: the time before the
        # service's first sample is no history (trimmed, not zero traffic), a gap inside
        # is filled as --fill-missing says or fails the service naming it, and +Inf or
        # negative values are refused.
        return from_series(
            times,
            values,
            self.step_seconds,
            self.name,
            unit=self.unit or "rate",
            fill_missing=self.fill_missing,
            present=present,
        )


ServiceSource = FileService | PrometheusService


def service_key(
    source: ServiceSource, settings: Mapping[str, object], version: str, *, filled: bool = True
) -> str:
    """Cache key of one service's result: its inputs and every setting that moves it; with
    `filled` False, of a result whose trace had no gap to fill (any --fill-missing)."""
    identity = source.identity() if filled else source.content_identity()
    blob = json.dumps([identity, dict(sorted(settings.items())), version], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def from_folder(
    folder: str | Path, fill_missing: FillMissing = "error", unit: Unit | None = None
) -> list[FileService]:
    """Every trace file directly in `folder`, one service each, named by file stem; missing
    intervals in them are treated as `fill_missing` says, values read in `unit`."""
    root = Path(folder)
    if not root.is_dir():
        raise FleetInputError(f"{root}: not a folder; give a folder of trace files (CSV)")
    services = []
    first_file: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        if not path.is_file() or not _is_trace(path):
            continue
        stat = path.stat()
        name = path.name
        for suffix in TRACE_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        # Two files of one name (web.csv, web.tsv) would be two rows "web" that the
        # totals add up: most likely one service exported twice. Refuse, naming both.
        if name in first_file:
            raise FleetInputError(
                f"{first_file[name]} and {path} both name the service {name!r} (a service is "
                "named by its file name without the extension); keep one, or rename the other"
            )
        first_file[name] = path
        services.append(
            FileService(
                name, str(path.resolve()), stat.st_size, stat.st_mtime_ns, fill_missing, unit
            )
        )
    if not services:
        raise FleetInputError(
            f"{root}: no trace files ({', '.join(TRACE_SUFFIXES)}); write one file per service"
        )
    return services


def _is_trace(path: Path) -> bool:
    return path.name.lower().endswith(TRACE_SUFFIXES)  # WEB.CSV is a CSV too


def skipped_files(folder: str | Path) -> list[Path]:
    """The files directly in `folder` that `from_folder` does not read (not hidden ones),
    to be said rather than dropped without a word."""
    return [
        path
        for path in sorted(Path(folder).iterdir())
        if path.is_file() and not path.name.startswith(".") and not _is_trace(path)
    ]


def from_prometheus(
    url: str,
    query: str,
    start: float,
    end: float,
    step_seconds: float,
    fill_missing: FillMissing = "error",
    unit: Unit | None = None,
) -> list[PrometheusService]:
    """One service per label set the query returns at `end` (an instant query); gaps in
    their series are treated as `fill_missing` says, values read in `unit` (default rate)."""
    if not math.isfinite(step_seconds) or step_seconds <= 0:
        raise FleetInputError(f"--step must be a duration > 0, got {step_seconds:g} s")
    if end <= start:
        raise FleetInputError("--since must give a span > 0")
    points = range_points(start, end, step_seconds)
    if points > MAX_RANGE_POINTS:
        raise FleetInputError(
            f"--since at --step {step_seconds:g}s is {points:.3g} points a service; at most "
            f"{MAX_RANGE_POINTS:,} are read: give a shorter --since or a coarser --step"
        )
    # One instant query lists the services; each worker fetches its own range.
    client = PrometheusConnect(url=url.rstrip("/"))
    try:
        result = client.custom_query(query, params={"time": repr(float(end)), "timeout": "30"})
    except (PrometheusApiClientException, requests.RequestException) as error:
        raise FleetInputError(f"Prometheus at {url}: {str(error)[:300]}") from None
    finally:
        client._session.close()
    label_sets = _label_sets(result)
    if not label_sets:
        raise FleetInputError(
            f"the query returns no series at the end of the span: {query!r}; "
            "it should return one series per service, e.g. sum by (service) (rate(...[5m]))"
        )
    names = [_name(labels) for labels in label_sets]
    if len(set(names)) < len(names):
        # Label values alone can coincide ({service="web"} and {job="web"}, or values
        # with a "/"): every service is then named by its labels in full.
        names = [_full_name(labels) for labels in label_sets]
    return [
        PrometheusService(name, labels, url, query, start, end, step_seconds, fill_missing, unit)
        for name, labels in zip(names, label_sets, strict=True)
    ]


def _label_sets(result: object) -> list[tuple[tuple[str, str], ...]]:
    if not isinstance(result, list):
        raise FleetInputError(
            "the query returns a scalar; it must return one series per service, "
            "e.g. sum by (service) (rate(http_requests_total[5m]))"
        )
    sets = []
    for series in result:
        labels = series.get("metric", {}) if isinstance(series, dict) else {}
        labels = {k: str(v) for k, v in labels.items() if k != "__name__"}
        if not labels:
            raise FleetInputError(
                "the query returns a series without labels; aggregate by the labels that "
                "name a service, e.g. sum by (namespace, service) (...)"
            )
        sets.append(tuple(sorted(labels.items())))
    return sorted(set(sets))


def _name(labels: Sequence[tuple[str, str]]) -> str:
    return "/".join(value for _, value in labels)


def _full_name(labels: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{label}={json.dumps(value)}" for label, value in labels)
