"""Events on the ScaledObject: why tidescaler scaled, or why it could not.

The server tells a `ScalerEvents` what happened on each request (`decision`,
`policy_invalid`, `backend_failing`); those calls only put an item on a bounded
queue and return, so an Event never slows an RPC down or makes it fail: when
the queue is full the item is dropped and counted. One background thread turns
the stream of decisions into the few Events an SRE wants (the narrator: what
changed since the last decision of that ScaledObject), runs them through the
client-go correlator (aggregation, count bumps, spam filter) and writes them
with the Kubernetes API. Without API access it logs once and goes on.

Events written, `kubectl describe scaledobject` shows them:

- Normal  PreScaling          ahead of a predicted peak: to how many, for which demand, by when
- Normal  CronWindowOpened / CronWindowClosed
- Warning BackendFailing      a backend fails; the last good value (or the forecast) is held
- Normal  BackendRecovered
- Warning DecisionUnavailable no usable observation: GetMetrics answers UNAVAILABLE, KEDA's
                              fallback acts
- Normal  DecisionAvailable
- Warning PolicyInvalid       once per distinct problem, not on every poll
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.engine import Decision, Reason, Signal, SignalStatus
from scaler.kube.api import KubeApi, KubeError, Object
from scaler.kube.correlator import Correlated, Correlator, EventSpec, Lru, ObjectRef

log = logging.getLogger("tidescaler.kube.events")

COMPONENT = "tidescaler"
NORMAL, WARNING = "Normal", "Warning"
UID_TTL_SECONDS = 600.0


class Ref(Protocol):
    """Anything naming a ScaledObject (KEDA's ScaledObjectRef does)."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...


class ScalerEvents(Protocol):
    """What the server reports; every method returns at once (enqueue only)."""

    def decision(self, ref: Ref, decision: Decision) -> None: ...

    def policy_invalid(self, ref: Ref, message: str) -> None: ...

    def backend_failing(self, ref: Ref, signal: str, message: str) -> None: ...


class NoEvents:
    """`--events off`, or no API access: nothing is recorded."""

    def decision(self, ref: Ref, decision: Decision) -> None:
        pass

    def policy_invalid(self, ref: Ref, message: str) -> None:
        pass

    def backend_failing(self, ref: Ref, signal: str, message: str) -> None:
        pass


# -- the narrator: decisions in, the few Events worth telling out (pure) --


@dataclass
class _Story:
    """What the narrator remembers of one ScaledObject."""

    desired: int | None = None
    available: bool | None = None
    window_open: bool | None = None
    decision: Decision | None = None
    failing: set[str] = field(default_factory=set)
    invalid: set[str] = field(default_factory=set)


def _metadata(ref: Ref) -> Mapping[str, str] | None:
    metadata: Mapping[str, str] | None = getattr(ref, "scalerMetadata", None)
    return metadata


def _clock_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%SZ")


# A ScaledObject, and which of its triggers (a digest of the trigger's metadata): two
# tidescaler triggers on one object tell two stories, not one that flaps between them.
StoryKey = Hashable


def trigger_digest(metadata: Mapping[str, str] | None) -> bytes:
    """A short, stable name for a trigger's metadata."""
    if not metadata:
        return b""
    digest = hashlib.blake2b(digest_size=16)
    for key, value in sorted(metadata.items()):
        digest.update(key.encode() + b"\0" + value.encode() + b"\0")
    return digest.digest()


class Narrator:
    """Turns one ScaledObject's decisions into Events, on changes only."""

    def __init__(self, polling_interval_seconds: float = 30.0) -> None:
        self.polling_interval_seconds = polling_interval_seconds
        self._stories: Lru[StoryKey, _Story] = Lru()

    def _story(self, key: StoryKey) -> _Story:
        story = self._stories.get(key)
        if story is None:
            story = _Story()
            self._stories.put(key, story)
        return story

    def decision(self, key: StoryKey, decision: Decision, now: float) -> list[EventSpec]:
        story = self._story(key)
        out: list[EventSpec] = []
        cron = decision.signal(Signal.CRON)
        if cron is not None:
            is_open = cron.status is SignalStatus.OK
            if story.window_open is not None and is_open != story.window_open:
                if is_open:
                    bounds = f"floor {decision.floor} replicas" + (
                        f", {cron.detail}" if cron.detail else ""
                    )
                    out.append(
                        EventSpec(NORMAL, "CronWindowOpened", f"cron window opened: {bounds}")
                    )
                else:
                    out.append(
                        EventSpec(
                            NORMAL, "CronWindowClosed", "cron window closed: its floor is lifted"
                        )
                    )
            story.window_open = is_open

        if not decision.available:
            if story.available is not False:
                out.append(
                    EventSpec(
                        WARNING,
                        "DecisionUnavailable",
                        f"no usable observation ({decision.detail}); GetMetrics answers "
                        "UNAVAILABLE, so KEDA's fallback replicas apply if the ScaledObject "
                        "sets a fallback",
                    )
                )
        else:
            if story.available is False:
                out.append(
                    EventSpec(
                        NORMAL,
                        "DecisionAvailable",
                        f"observations usable again: {decision.desired_replicas} replicas "
                        f"({decision.reason.value})",
                    )
                )
            out.extend(self._pre_scaling(story, decision, now))
            story.desired = decision.desired_replicas

        for reading in decision.signals:
            if reading.status is SignalStatus.OK and reading.signal.value in story.failing:
                story.failing.discard(reading.signal.value)
                out.append(
                    EventSpec(
                        NORMAL, "BackendRecovered", f"{reading.signal.value}: backend answers again"
                    )
                )
        story.available = decision.available
        story.decision = decision
        return out

    def _pre_scaling(self, story: _Story, decision: Decision, now: float) -> list[EventSpec]:
        if decision.reason is not Reason.FORECAST or decision.forecast_upper is None:
            return []
        if story.desired is not None and decision.desired_replicas <= story.desired:
            return []
        query = decision.signal(Signal.QUERY)
        if query is None or query.replicas is None or query.replicas >= decision.desired_replicas:
            return []  # the forecast is not ahead of the demand: plain reactive scaling
        # The demand the forecast expects (its median's peak over the lead time); the
        # upper band is the margin on top, not the prediction.
        predicted = (
            decision.forecast_upper
            if decision.forecast_median is None
            else decision.forecast_median
        )
        startup = decision.pod_startup_seconds or 0.0
        polling = self.polling_interval_seconds
        lag = decision.metric_lag_seconds
        lead = startup + polling + lag  # as the engine's (engine.lead_seconds)
        source = {"policy": "from the policy"}.get(
            decision.pod_startup_source, decision.pod_startup_source
        )
        return [
            EventSpec(
                NORMAL,
                "PreScaling",
                f"pre-scaling to {decision.desired_replicas} replicas ahead of a predicted peak: "
                f"forecast demand up to {predicted:.4g} by {_clock_time(now + lead)} "
                f"(lead {lead:g}s: pod start-up {startup:g}s {source} + polling {polling:g}s"
                f" + metric lag {lag:g}s); "
                f"current demand {query.value or 0:.4g} needs {query.replicas}",
            )
        ]

    def backend_failing(self, key: StoryKey, signal: str, message: str) -> list[EventSpec]:
        story = self._story(key)
        if signal in story.failing:
            return []
        story.failing.add(signal)
        held = ""
        known = signal in Signal.__members__.values()
        reading = (
            story.decision.signal(Signal(signal)) if story.decision is not None and known else None
        )
        if reading is not None and reading.status is SignalStatus.HELD:
            held = (
                f"; holding the last good value {reading.value or 0:.4g} ({reading.replicas} "
                "replicas) until it is older than the staleness bound"
            )
        elif reading is not None and reading.status is SignalStatus.FORECAST_FALLBACK:
            held = f"; the forecast stands in ({reading.replicas} replicas)"
        elif reading is not None and reading.status is SignalStatus.STALE:
            held = "; no good value to hold"
        return [EventSpec(WARNING, "BackendFailing", f"{signal}: {message}{held}")]

    def policy_invalid(self, key: StoryKey, message: str) -> list[EventSpec]:
        story = self._story(key)
        if message in story.invalid:
            return []
        if len(story.invalid) > 16:
            story.invalid.clear()
        story.invalid.add(message)
        return [EventSpec(WARNING, "PolicyInvalid", message)]


# -- the recorder: queue, narrator, correlator, API --


@dataclass
class RecorderCounts:
    written: int = 0
    updated: int = 0
    dropped: int = 0  # queue full
    spam_filtered: int = 0
    failed: int = 0
    no_object: int = 0  # the ScaledObject does not exist: nothing written


class EventRecorder:
    """A `ScalerEvents` that writes Events through the Kubernetes API from a background thread."""

    def __init__(
        self,
        api: KubeApi,
        *,
        polling_interval_seconds: float = 30.0,
        queue_size: int = 1000,
        clock: Callable[[], float] = time.time,
        instance: str | None = None,
        correlator: Correlator | None = None,
    ) -> None:
        self.api = api
        self.clock = clock
        self.instance = instance or socket.gethostname()
        self.narrator = Narrator(polling_interval_seconds)
        self.correlator = correlator or Correlator(clock)
        self.counts = RecorderCounts()
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(queue_size)
        self._uids: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._logged: set[tuple[str, str]] = set()
        self._dropped_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="kube-events", daemon=True)
        self._thread.start()

    # -- the request path: enqueue only --

    def _put(self, item: tuple[Any, ...]) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._dropped_lock:  # many request threads may drop at once
                self.counts.dropped += 1

    # The trigger's metadata travels as it is; its digest is taken on the background thread.
    def decision(self, ref: Ref, decision: Decision) -> None:
        self._put(("decision", ref.namespace, ref.name, _metadata(ref), decision, self.clock()))

    def policy_invalid(self, ref: Ref, message: str) -> None:
        self._put(("invalid", ref.namespace, ref.name, _metadata(ref), message, self.clock()))

    def backend_failing(self, ref: Ref, signal: str, message: str) -> None:
        item = ("failing", ref.namespace, ref.name, _metadata(ref), (signal, message))
        self._put((*item, self.clock()))

    # -- lifecycle --

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far has been handled; False on timeout."""
        with self._queue.all_tasks_done:
            return self._queue.all_tasks_done.wait_for(
                lambda: self._queue.unfinished_tasks == 0, timeout
            )

    def close(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    # -- the background thread --

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._handle(*item)
            except Exception:  # a bug here must not stop later events
                log.exception("event recorder error")
            finally:
                self._queue.task_done()

    def _handle(
        self,
        kind: str,
        namespace: str,
        name: str,
        metadata: Mapping[str, str] | None,
        payload: Any,
        at: float,
    ) -> None:
        key = (namespace, name, trigger_digest(metadata))
        if kind == "decision":
            specs = self.narrator.decision(key, payload, at)
        elif kind == "invalid":
            specs = self.narrator.policy_invalid(key, payload)
        else:
            specs = self.narrator.backend_failing(key, *payload)
        for spec in specs:
            self.record(namespace, name, spec, at)

    def record(self, namespace: str, name: str, spec: EventSpec, at: float | None = None) -> None:
        """Correlate and write one Event (runs on the background thread)."""
        try:
            uid = self._uid(namespace, name)
        except KubeError:  # whether it exists is unknown for now (logged)
            self.counts.failed += 1
            return
        if uid is None:
            # Any client of the gRPC port can name any namespace and name: an Event about
            # a ScaledObject that does not exist would be theirs to write into it.
            self.counts.no_object += 1
            return
        ref = ObjectRef(namespace, name, uid)
        result = self.correlator.correlate(ref, spec)
        if result.skip:
            self.counts.spam_filtered += 1
            return
        at = self.clock() if at is None else at
        try:
            written = self._write(ref, spec, result, at)
        except KubeError as err:
            self.correlator.forget(result)
            if err.status == 409:
                return  # AlreadyExists: client-go gives up on the event too
            self.counts.failed += 1
            self._log_once(err, "cannot write Events; tidescaler goes on without them")
            return
        meta = written.get("metadata") or {}
        self.correlator.written(
            result, str(meta.get("name") or result.name), int(written.get("count") or result.count)
        )

    def _write(self, ref: ObjectRef, spec: EventSpec, result: Correlated, at: float) -> Object:
        stamp = _rfc3339(at)
        if result.is_update:
            try:
                written = self.api.patch_event(
                    ref.namespace,
                    result.name,
                    {"count": result.count, "lastTimestamp": stamp, "message": result.message},
                )
                self.counts.updated += 1
                return written
            except KubeError as err:
                if not err.not_found:
                    raise
                # The Event expired (the API server keeps them an hour): write it anew.
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": result.name, "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                **({"uid": ref.uid} if ref.uid else {}),
            },
            "reason": spec.reason,
            "message": result.message,
            "type": spec.type,
            "count": result.count,
            "firstTimestamp": _rfc3339(result.first_timestamp),
            "lastTimestamp": stamp,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
        }
        written = self.api.create_event(ref.namespace, event)
        self.counts.written += 1
        return written

    def _uid(self, namespace: str, name: str) -> str | None:
        """The ScaledObject's uid (`kubectl describe` lists only Events that carry it);
        "" when reading it is forbidden (Events are written without it), None when it
        does not exist (no Event is written). KubeError when the API cannot say now."""
        now = self.clock()
        cached = self._uids.get((namespace, name))
        if cached is not None and now - cached[1] < UID_TTL_SECONDS:
            return cached[0]
        uid: str | None
        try:
            uid = str(
                (self.api.scaled_object(namespace, name).get("metadata") or {}).get("uid") or ""
            )
        except KubeError as err:
            if err.not_found:
                uid = None
            elif err.forbidden:
                # RBAC without `get scaledobjects` (the deployed role has it): Events
                # go out without the uid rather than not at all.
                self._log_once(
                    err,
                    "cannot read ScaledObjects; Events are written without the object's uid "
                    "(kubectl get events shows them, kubectl describe does not)",
                )
                uid = cached[0] if cached is not None else ""
            else:
                # Throttled (429), unreachable, a server error: whether the object exists
                # is unknown. One known before keeps its uid; an unknown one gets no
                # Event (the 404 guard must not open while the API is busy). Nothing is
                # cached: the next Event asks again.
                self._log_once(err, "cannot read ScaledObjects for now; Events wait for it")
                if cached is None:
                    raise
                return cached[0]
        if len(self._uids) > 10_000:
            self._uids.clear()
        self._uids[(namespace, name)] = (uid, now)
        return uid

    def _log_once(self, err: KubeError, message: str) -> None:
        kind = (
            "forbidden"
            if err.forbidden
            else "unreachable"
            if err.status is None
            else f"status {err.status}"
        )
        if (message, kind) in self._logged:
            return
        self._logged.add((message, kind))
        log.warning(message, extra={"problem": kind, "error": str(err)})

    # -- telemetry --

    def collector(self) -> Collector:
        return _RecorderCollector(self)


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _RecorderCollector(Collector):
    def __init__(self, recorder: EventRecorder) -> None:
        self.recorder = recorder

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "tidescaler_kube_events",
            "Kubernetes Events by outcome: created, updated (count bumped), dropped (queue "
            "full), spam_filtered (client-go's per-object token bucket), failed (API error), "
            "no_object (the ScaledObject does not exist: none written).",
            labels=("outcome",),
        )
        counts = self.recorder.counts
        for outcome, value in (
            ("created", counts.written),
            ("updated", counts.updated),
            ("dropped", counts.dropped),
            ("spam_filtered", counts.spam_filtered),
            ("failed", counts.failed),
            ("no_object", counts.no_object),
        ):
            family.add_metric((outcome,), value)
        yield family
