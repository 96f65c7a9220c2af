"""`podStartupSeconds: auto`: the lead time measured from the scale target's recent pods.

For each pod, start-up is the time from its creation to its Ready condition
turning true (`status.conditions[Ready].lastTransitionTime -
metadata.creationTimestamp`). A pod whose containers restarted is left out: its
Ready transition then marks the restart, not the start-up. So is a pod that
turned Ready more than `MAX_READY_AFTER_START` after its containers started:
the Ready time kept is the last transition, so a readiness probe that failed
for a moment hours later (without a restart) would count the pod's whole age
as its start-up; and the result is capped at the longest `podStartupSeconds`
a policy may set (1 day). The measurement is
a high percentile (nearest rank, p90 by default) over the most recently created
N pods (20), so one slow node does not set the lead time and a change of image
shows within a few roll-outs.

`StartupMeter` keeps one measurement per ScaledObject and refreshes it in a
background thread; the request path only reads a dict (`seconds_for`). Until a
ScaledObject has a measurement the engine uses the policy's default (60 s) and
says so in the decision.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.kube.api import KubeApi, KubeError, Object, scale_target
from scaler.policy import MAX_POD_STARTUP_SECONDS

log = logging.getLogger("tidescaler.kube.startup")

DEFAULT_PODS = 20
DEFAULT_QUANTILE = 0.9
# Containers started, then Ready this much later at most: longer is taken for a
# readiness that flapped since (the first Ready time is not kept by Kubernetes).
MAX_READY_AFTER_START = 1800.0


def parse_time(text: Any) -> float | None:
    """RFC 3339 (`2026-11-30T01:47:46Z`) to Unix seconds; None if absent or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def pod_startup_seconds(pod: Object) -> float | None:
    """Creation to Ready of one pod, or None if it is not Ready or restarted since."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    created = parse_time(metadata.get("creationTimestamp"))
    if created is None:
        return None
    started = created
    for container in status.get("containerStatuses") or []:
        if int(container.get("restartCount") or 0) > 0:
            return None
        running = (container.get("state") or {}).get("running") or {}
        started = max(started, parse_time(running.get("startedAt")) or created)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            ready = parse_time(condition.get("lastTransitionTime"))
            if ready is None or ready < created or ready - started > MAX_READY_AFTER_START:
                return None
            return min(ready - created, MAX_POD_STARTUP_SECONDS)
    return None


@dataclass(frozen=True)
class StartupMeasurement:
    seconds: float  # the percentile
    pods: int  # how many pods it was taken over
    quantile: float
    measured_at: float


def measure(
    pods: Iterable[Object],
    now: float,
    count: int = DEFAULT_PODS,
    quantile: float = DEFAULT_QUANTILE,
) -> StartupMeasurement | None:
    """The `quantile` of start-up over the `count` most recently created Ready pods."""
    timed: list[tuple[float, float]] = []
    for pod in pods:
        seconds = pod_startup_seconds(pod)
        created = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
        if seconds is not None and created is not None:
            timed.append((created, seconds))
    if not timed:
        return None
    recent = sorted(timed, reverse=True)[:count]
    values = sorted(seconds for _, seconds in recent)
    # Nearest rank: an observed value, never an interpolation below the slow pods.
    rank = max(1, math.ceil(quantile * len(values)))
    return StartupMeasurement(values[rank - 1], len(values), quantile, now)


class StartupMeter:
    """Measured start-up per ScaledObject, refreshed in the background.

    `seconds_for` registers a ScaledObject on first use and returns what is
    known (None until measured); a daemon thread measures every registered
    ScaledObject every `refresh_seconds`. Without access to the API (403, no
    configuration) it logs once per kind of problem and keeps the default.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        refresh_seconds: float = 300.0,
        pods: int = DEFAULT_PODS,
        quantile: float = DEFAULT_QUANTILE,
        clock: Callable[[], float] = time.time,
        max_scaledobjects: int = 10_000,
    ) -> None:
        self.api = api
        self.refresh_seconds = refresh_seconds
        self.pods = pods
        self.quantile = quantile
        self.clock = clock
        self.max_scaledobjects = max_scaledobjects
        self._measured: dict[tuple[str, str], StartupMeasurement] = {}
        # Least recently asked first; past max_scaledobjects the oldest goes, so names
        # that came and went (deleted ScaledObjects, made-up names) never fill it.
        self._wanted: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._logged: set[tuple[str, str]] = set()  # (scaledobject key, problem kind)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._refreshed = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- the request path: dict reads only --

    def seconds_for(self, namespace: str, name: str) -> float | None:
        key = (namespace, name)
        if key in self._wanted:
            self._wanted.move_to_end(key)
        else:
            self._wanted[key] = None
            self._wake.set()  # measure a newcomer now, not at the next refresh
            while len(self._wanted) > self.max_scaledobjects:
                gone, _ = self._wanted.popitem(last=False)
                self._measured.pop(gone, None)
        measurement = self._measured.get(key)
        return measurement.seconds if measurement is not None else None

    def measurement(self, namespace: str, name: str) -> StartupMeasurement | None:
        return self._measured.get((namespace, name))

    def wait_measured(self, namespace: str, name: str, timeout: float) -> StartupMeasurement | None:
        """Block until the ScaledObject has a measurement (or `timeout`); for tools and tests."""
        with self._refreshed:
            self._refreshed.wait_for(lambda: (namespace, name) in self._measured, timeout)
        return self._measured.get((namespace, name))

    # -- background --

    def start(self) -> StartupMeter:
        self._thread = threading.Thread(target=self._loop, name="pod-startup", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        next_full = 0.0
        tried: set[tuple[str, str]] = set()
        while not self._stop.is_set():
            self._wake.clear()
            now = self.clock()
            full = now >= next_full
            if full:
                tried.clear()
                next_full = now + self.refresh_seconds
            # A full pass every refresh_seconds; in between, newcomers only (a ScaledObject
            # that could not be measured waits for the next full pass).
            for key in list(self._wanted):
                if self._stop.is_set():
                    return
                if key not in tried:
                    tried.add(key)
                    self.refresh(*key)
            self._wake.wait(max(0.0, next_full - self.clock()))

    def refresh(self, namespace: str, name: str) -> StartupMeasurement | None:
        """Measure one ScaledObject now (the background loop calls this)."""
        measurement = self._measure(namespace, name)
        with self._refreshed:
            self._refreshed.notify_all()
        return measurement

    def _measure(self, namespace: str, name: str) -> StartupMeasurement | None:
        try:
            scaled_object = self.api.scaled_object(namespace, name)
            target = scale_target(scaled_object)
            selector = str(((self.api.scale(target).get("status") or {}).get("selector")) or "")
            if not selector:
                raise KubeError(
                    f"{target.describe()}/scale", "status.selector is empty", about_object=True
                )
            # Pages are read as the measurement goes: only each pod's two times are kept.
            pods = self.api.pods(namespace, selector)
            measurement = measure(pods, self.clock(), self.pods, self.quantile)
        except KubeError as err:
            if err.not_found:
                # Gone: no stale lead time, and not asked again until KEDA asks for it.
                self._measured.pop((namespace, name), None)
                self._wanted.pop((namespace, name), None)
            # No access (RBAC, no route to the API) is one line for the process; a problem
            # of one ScaledObject (its target missing) one line for that object.
            if err.forbidden:
                key = ("", "forbidden")
            elif err.about_object:
                key = (f"{namespace}/{name}", "object")
            elif err.status is None:
                key = ("", "unreachable")
            else:
                key = (f"{namespace}/{name}", str(err.status))
            if key not in self._logged:
                if len(self._logged) > 10_000:
                    self._logged.clear()
                self._logged.add(key)
                log.warning(
                    "cannot measure pod start-up; using podStartupSeconds default",
                    extra={"namespace": namespace, "scaledobject": name, "error": str(err)},
                )
            return None
        if measurement is not None:
            previous = self._measured.get((namespace, name))
            self._measured[(namespace, name)] = measurement
            if previous is None or previous.seconds != measurement.seconds:
                log.info(
                    "pod start-up measured",
                    extra={
                        "namespace": namespace,
                        "scaledobject": name,
                        "target": target.describe(),
                        "pod_startup_seconds": measurement.seconds,
                        "pods": measurement.pods,
                    },
                )
        return measurement

    # -- telemetry --

    def collector(self) -> Collector:
        return _StartupCollector(self)


class _StartupCollector(Collector):
    def __init__(self, meter: StartupMeter) -> None:
        self.meter = meter

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "tidescaler_pod_startup_seconds",
            "Measured creation-to-Ready time of the scale target's recent pods "
            "(the percentile used as lead time when podStartupSeconds is auto).",
            labels=("namespace", "scaledobject"),
        )
        pods = GaugeMetricFamily(
            "tidescaler_pod_startup_measured_pods",
            "Pods the start-up measurement was taken over.",
            labels=("namespace", "scaledobject"),
        )
        for (namespace, name), measurement in list(self.meter._measured.items()):
            gauge.add_metric((namespace, name), measurement.seconds)
            pods.add_metric((namespace, name), measurement.pods)
        yield gauge
        yield pods
