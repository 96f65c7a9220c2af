"""Background refits of registered series, and the rolling error of past forecasts.

`ForecastRefresher` keeps one forecast per registered series and refits it
on a schedule: at once after registration (and so after a restart), then
every `refit_seconds`. The request path only reads `latest(key)` and
`status(key)`, which never fetch or fit. Fetches run on a few daemon worker
threads, at most half of them on one backend. A backend that did not answer
(`backend_down`: no answer at all, connection refused) is asked again only
after `retry_seconds`, and then by one fetch at a time across all such
backends: hung Prometheus servers hold at most one worker between them once
they have failed, and the series of other backends are refit on time. Fits
run one at a time. History is fetched
through an injected function, incrementally (only the new part plus a little
overlap for late samples), and in chunks small enough for a Prometheus range
query; it is capped by the series' history window, so memory per series is
bounded. Series nobody read for `idle_seconds` are dropped. A fetch or fit
error keeps the last good forecast (it still covers the lead time for a
while) and says what went wrong.

`ForecastErrorTracker` is the telemetry hook: it remembers the median and
band forecast for now + lead and, once the demand at that time is known,
folds the error into a bounded rolling window (sMAPE, under-prediction rate,
band coverage).
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from scaler.forecast.forecaster import (
    DEFAULT_SETTINGS,
    ForecasterSettings,
    InsufficientHistory,
)
from scaler.forecast.forecaster import fit as fit_forecaster
from scaler.forecast.models import FloatArray
from scaler.forecast.types import Forecast
from scaler.sources.prometheus import BackendError

log = logging.getLogger("tidescaler.forecast")

Fetch = Callable[[float, float, float], tuple[np.ndarray, np.ndarray]]
Clock = Callable[[], float]
# Whether a fetch error says the backend itself is not answering (not just this query).
BackendDown = Callable[[BaseException], bool]


def _never_down(exc: BaseException) -> bool:
    return False


def _named(key: Hashable) -> str:
    """A series key for a log line: keys carry tenants' queries, up to kilobytes long."""
    text = str(key)
    return text if len(text) <= 300 else text[:300] + "..."


class ForecastState(Enum):
    """Why a series has the forecast it has (or none)."""

    PENDING = "pending"  # registered, first fit not done yet
    OK = "ok"
    NO_PERIODICITY = "no_periodicity"  # forecast from a recent-level model
    TOO_LITTLE_HISTORY = "too_little_history"
    FIT_ERROR = "fit_error"
    FETCH_ERROR = "fetch_error"


@dataclass(frozen=True)
class SeriesStatus:
    state: ForecastState
    message: str
    last_attempt: float | None
    last_success: float | None

    @property
    def healthy(self) -> bool:
        return self.state in (ForecastState.OK, ForecastState.NO_PERIODICITY)


@dataclass(frozen=True)
class SeriesConfig:
    """How to learn one series: history window, grid step, band quantile, forecast length."""

    history_seconds: float
    step_seconds: float
    quantile: float
    horizon_seconds: float
    # A step without any sample between the history's first and last ones is demand 0
    # (a query read with KEDA's ignoreNullValues: see `absent_as_zero`).
    absent_is_zero: bool = False


@dataclass(eq=False)
class _Series:
    fetch: Fetch
    config: SeriesConfig
    registered_at: float
    last_read: float
    next_due: float
    grid_end: float | None = None
    values: FloatArray = field(default_factory=lambda: np.zeros(0))
    backend: Hashable = None
    forecast: Forecast | None = None
    status: SeriesStatus = field(
        default_factory=lambda: SeriesStatus(ForecastState.PENDING, "first fit pending", None, None)
    )
    running: bool = False
    probe: bool = False  # the fetch in flight retries a backend that did not answer


class ForecastRefresher:
    """Refits registered series in the background; the request path only reads."""

    def __init__(
        self,
        *,
        refit_seconds: float = 600.0,
        retry_seconds: float = 60.0,
        idle_seconds: float = 3600.0,
        overlap_seconds: float = 600.0,
        max_points_per_fetch: int = 10_000,
        max_series: int = 2_000,
        workers: int = 4,
        backend_down: BackendDown = _never_down,
        clock: Clock = time.time,
        settings: ForecasterSettings = DEFAULT_SETTINGS,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.refit_seconds = refit_seconds
        self.retry_seconds = retry_seconds
        self.idle_seconds = idle_seconds
        self.overlap_seconds = overlap_seconds
        self.max_points_per_fetch = max_points_per_fetch
        # Fits run one after the other, each a fraction of a second: this many fit
        # within the default refit interval, and distinct forecastQuery values sent in
        # a loop cannot hold memory and delay everyone's refits without bound.
        self.max_series = max_series
        self.workers = workers
        # A slow or hung backend may hold this many workers, never all of them.
        self.per_backend = max(1, workers // 2)
        self.settings = settings
        self._backend_down = backend_down
        self._clock = clock
        self._lock = threading.Lock()
        self._series: dict[Hashable, _Series] = {}
        self._in_flight: Counter[Hashable] = Counter()
        # Backends whose last fetch found them not answering, and until when they wait;
        # an entry goes when a fetch from that backend succeeds.
        self._down_until: dict[Hashable, float] = {}
        self._probing = 0  # fetches in flight to such backends
        # Fits hold the GIL for parts of their work: one at a time leaves the other
        # core to the request path.
        self._fit_lock = threading.Lock()
        self._tasks: queue.SimpleQueue[tuple[Hashable, _Series, Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self._pool: list[threading.Thread] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------- request path

    def register(
        self,
        key: Hashable,
        fetch: Fetch,
        *,
        history_seconds: float,
        step_seconds: float,
        quantile: float,
        horizon_seconds: float = 86_400.0,
        backend: Hashable = None,
        absent_is_zero: bool = False,
    ) -> bool:
        """Start (or keep) refitting `key`; a changed config refits at once. Never blocks.

        `backend` names where `fetch` reads from (a Prometheus address): the
        series of one backend share its limit of workers and its retry delay.
        False, and nothing registered, when `max_series` other series are registered."""
        config = SeriesConfig(
            history_seconds, step_seconds, quantile, horizon_seconds, absent_is_zero
        )
        now = self._clock()
        with self._lock:
            series = self._series.get(key)
            if series is not None and series.config == config:
                series.fetch = fetch
                series.last_read = now
                return True
            if series is None and len(self._series) >= self.max_series:
                return False
            self._series[key] = _Series(fetch, config, now, now, now, backend=backend)
        self._wake.set()
        return True

    def unregister(self, key: Hashable) -> None:
        with self._lock:
            self._series.pop(key, None)

    def latest(self, key: Hashable) -> Forecast | None:
        """The last good forecast of `key`, or None (see `status`)."""
        with self._lock:
            series = self._series.get(key)
            if series is None:
                return None
            series.last_read = self._clock()
            return series.forecast

    def status(self, key: Hashable) -> SeriesStatus | None:
        """Why `key` has the forecast it has; None when it is not registered."""
        with self._lock:
            series = self._series.get(key)
            return None if series is None else series.status

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._series)

    def census(self) -> tuple[Counter[ForecastState], int]:
        """How many series are in each state, and how many backends are down now."""
        with self._lock:
            states = Counter(s.status.state for s in self._series.values())
            return states, len(self._down_until)

    # ---------------------------------------------------------- background

    def start(self) -> None:
        """Refit in daemon threads until `close()`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="forecast-refit", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop refitting. A fetch still waiting on a backend is left to its daemon thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for _ in self._pool:
            self._tasks.put(None)
        self._pool = []

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._dispatch_due(self._clock())
            except Exception:  # the loop must survive anything a series does
                log.exception("forecast refresh pass failed")
            self._wake.wait(self._seconds_to_next_due())

    def _seconds_to_next_due(self) -> float:
        """Until the next series a worker could take; a finished fetch wakes the loop too."""
        now = self._clock()
        with self._lock:
            if sum(self._in_flight.values()) >= self.workers:
                return self.refit_seconds
            dues = [t for s in self._series.values() if (t := self._free_at(s, now)) is not None]
        if not dues:
            return self.refit_seconds
        return min(max(min(dues) - now, 0.05), self.refit_seconds)

    def _free_at(self, series: _Series, now: float) -> float | None:
        """When `series` may go to a worker; None while only a finished fetch can free it.

        The lock is held. A backend that did not answer waits out its retry delay;
        then one fetch, across all such backends, tries again (a probe), so
        Prometheus servers that are down hold at most one worker between them.
        """
        if series.running or self._in_flight[series.backend] >= self.per_backend:
            return None
        down_until = self._down_until.get(series.backend)
        if down_until is None:
            return series.next_due
        if down_until > now:
            return max(series.next_due, down_until)
        return None if self._probing else series.next_due

    def refresh_due(self) -> int:
        """Drop idle series, then refit every series that is due, and wait for them.

        Returns how many were refit; a series of a backend that is waiting out
        its retry delay is left for later."""
        started: list[Future[None]] = []
        seen: set[Hashable] = set()
        while True:
            new = self._dispatch_due(self._clock(), exclude=seen)
            started += new
            pending = [f for f in started if not f.done()]
            if not new and not pending:
                return len(started)
            if pending:
                wait(pending, return_when=FIRST_COMPLETED)

    def _dispatch_due(self, now: float, exclude: set[Hashable] | None = None) -> list[Future[None]]:
        """Hand due series to the workers, within the per-backend limit; returns at once."""
        started: list[Future[None]] = []
        with self._lock:
            for key in [
                k for k, s in self._series.items() if now - s.last_read > self.idle_seconds
            ]:
                log.info("forecast series %s idle, dropped", _named(key))
                del self._series[key]
            if self._down_until:  # backends of series all dropped are forgotten
                live = {s.backend for s in self._series.values()}
                for backend in [b for b in self._down_until if b not in live]:
                    del self._down_until[backend]
            due = sorted(
                (
                    (s.next_due, k, s)
                    for k, s in self._series.items()
                    if s.next_due <= now and not s.running
                ),
                key=lambda item: item[0],
            )
            for _, key, series in due:
                if exclude is not None and key in exclude:
                    continue
                if sum(self._in_flight.values()) >= self.workers:
                    break
                free_at = self._free_at(series, now)
                if free_at is not None and free_at > now:  # its backend's retry delay
                    if series.status.state is not ForecastState.FETCH_ERROR:
                        series.status = SeriesStatus(
                            ForecastState.FETCH_ERROR,
                            "not fetched: the backend did not answer another series' history "
                            f"fetch; next try in {free_at - now:.0f} s",
                            series.status.last_attempt,
                            series.status.last_success,
                        )
                    continue
                if free_at is None:
                    continue
                series.running = True
                series.probe = series.backend in self._down_until
                self._probing += series.probe
                self._in_flight[series.backend] += 1
                future: Future[None] = Future()
                started.append(future)
                if exclude is not None:
                    exclude.add(key)
                self._tasks.put((key, series, future))
            while len(self._pool) < min(self.workers, sum(self._in_flight.values())):
                worker = threading.Thread(
                    target=self._work, name=f"forecast-fetch-{len(self._pool)}", daemon=True
                )
                worker.start()
                self._pool.append(worker)
        return started

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            key, series, future = task
            try:
                self._refresh(key, series)
            except Exception:  # a worker must survive anything a series does
                log.exception("forecast %s: refresh failed", _named(key))
            finally:
                with self._lock:
                    series.running = False
                    self._probing -= series.probe
                    series.probe = False
                    self._in_flight[series.backend] -= 1
                    if self._in_flight[series.backend] <= 0:
                        del self._in_flight[series.backend]
                future.set_result(None)
                self._wake.set()

    def _refresh(self, key: Hashable, series: _Series) -> None:
        cfg = series.config
        now = self._clock()
        end = math.floor(now / cfg.step_seconds) * cfg.step_seconds
        try:
            values = self._history(series, end)
        except Exception as exc:  # fetch may raise anything; report, keep the last forecast
            if self._backend_down(exc):
                # The other series of this backend wait out the retry delay instead of
                # each holding a worker until its own timeout.
                with self._lock:
                    self._down_until[series.backend] = self._clock() + self.retry_seconds
            # The problem reaches the ScaledObjects' owners; the log keeps every word.
            told = exc.public() if isinstance(exc, BackendError) else str(exc)
            self._finish(series, ForecastState.FETCH_ERROR, f"fetch failed: {told}", now, None)
            log.warning("forecast %s: history fetch failed: %s", _named(key), exc)
            return
        with self._lock:
            self._down_until.pop(series.backend, None)
        if cfg.absent_is_zero:
            values = absent_as_zero(values)
        try:
            with self._fit_lock:
                fitted = fit_forecaster(
                    values,
                    cfg.step_seconds,
                    quantile=cfg.quantile,
                    now=end,
                    settings=self.settings,
                )
                forecast = fitted.forecast(cfg.horizon_seconds)
        except InsufficientHistory as exc:
            self._finish(series, ForecastState.TOO_LITTLE_HISTORY, str(exc), now, None)
            return
        except Exception as exc:
            self._finish(series, ForecastState.FIT_ERROR, f"fit failed: {exc}", now, None)
            log.exception("forecast %s: fit failed", _named(key))
            return
        if forecast.periodicity == "none":
            self._finish(series, ForecastState.NO_PERIODICITY, forecast.note, now, forecast)
        else:
            message = f"{forecast.model} ({forecast.periodicity})"
            self._finish(series, ForecastState.OK, message, now, forecast)

    def _finish(
        self,
        series: _Series,
        state: ForecastState,
        message: str,
        now: float,
        forecast: Forecast | None,
    ) -> None:
        ok = forecast is not None
        with self._lock:
            if ok:
                series.forecast = forecast
            last_success = now if ok else series.status.last_success
            series.status = SeriesStatus(state, message, now, last_success)
            wait = self.refit_seconds if ok or state is ForecastState.TOO_LITTLE_HISTORY else None
            series.next_due = now + (wait if wait is not None else self.retry_seconds)

    def _history(self, series: _Series, end: float) -> FloatArray:
        """History on the grid ending at `end`, fetching only what is not held yet."""
        cfg = series.config
        step = cfg.step_seconds
        n = max(1, round(cfg.history_seconds / step))
        start = end - (n - 1) * step
        values = np.full(n, np.nan)
        fetch_from = start
        held = len(series.values)
        if series.grid_end is not None and held and series.grid_end <= end:
            offset = round((series.grid_end - (held - 1) * step - start) / step)
            new_idx = np.arange(held) + offset
            inside = (new_idx >= 0) & (new_idx < n)
            if inside.any():
                values[new_idx[inside]] = series.values[inside]
                overlap = max(1, round(self.overlap_seconds / step))
                fetch_from = max(start, series.grid_end - overlap * step)
        chunk = self.max_points_per_fetch * step
        t0 = fetch_from
        while t0 <= end:
            t1 = min(end, t0 + chunk - step)
            times, got = series.fetch(t0, t1, step)
            times = np.asarray(times, dtype=np.float64).ravel()
            got = np.asarray(got, dtype=np.float64).ravel()
            if times.shape != got.shape:
                raise ValueError(f"fetch returned {len(times)} times and {len(got)} values")
            idx = np.round((times - start) / step).astype(np.int64)
            inside = (idx >= 0) & (idx < n)
            values[idx[inside]] = got[inside]
            t0 = t1 + step
        series.grid_end = end
        series.values = values
        return values


def absent_as_zero(values: FloatArray) -> FloatArray:
    """The history with every step that has no sample, between its first and last
    samples, read as 0: what the query itself answers for an empty result with KEDA's
    ignoreNullValues (the default). `sum(rate(...))` over a workload's own pods has no
    series at all while it is at zero pods: left unknown, every night would be forecast
    at the evening's last level, and the forecast would keep the workload awake. Steps
    after the last sample stay unknown, so a query that stopped matching still ages out
    of its forecast ("no data for the last ... h")."""
    finite = np.flatnonzero(np.isfinite(values))
    if len(finite) < 2:
        return values
    first, last = finite[0], finite[-1]
    filled = values.copy()
    inside = filled[first : last + 1]
    inside[np.isnan(inside)] = 0.0
    return filled


# ------------------------------------------------------------- error tracker


@dataclass(frozen=True)
class ForecastErrors:
    """Rolling error of past forecasts: sMAPE in percent, rates as fractions."""

    smape: float
    under_rate: float
    coverage: float
    count: int


# Pending forecasts of one series are at least this far apart in target time: every
# GetMetrics of every ScaledObject on the series offers one. The tracker widens the
# spacing for a lead time longer than its queue holds at this one.
PENDING_SPACING_SECONDS = 1.0


@dataclass(eq=False)
class _Track:
    pending: deque[tuple[float, float, float]]
    scored: deque[tuple[float, bool, bool]]
    updated: float
    # Every GetMetrics of every ScaledObject on the series asks; scores change only
    # when a forecast's target time arrives.
    summary: ForecastErrors | None = None
    # How far apart pending forecasts are kept (see ForecastErrorTracker.record_forecast).
    spacing: float = PENDING_SPACING_SECONDS


class ForecastErrorTracker:
    """Scores forecasts for now + lead against the demand seen when that time comes.

    `record_forecast` stores (target time, median, upper); `record_actual`
    scores every pending forecast whose target has been reached, against the
    first demand seen at or after the target (within `tolerance_seconds`;
    older ones are dropped unscored). Memory is bounded per key by
    `max_pending` and `window`; pending forecasts are kept at least a second apart,
    further when the lead time holds more than `max_pending` of them, so the scores
    spread evenly over time; `prune` drops keys not updated for a while.
    """

    def __init__(
        self,
        *,
        window: int = 360,
        max_pending: int = 512,
        tolerance_seconds: float = 120.0,
    ) -> None:
        if max_pending < 2:
            raise ValueError(f"max_pending must be at least 2, got {max_pending}")
        self.window = window
        self.max_pending = max_pending
        self.tolerance_seconds = tolerance_seconds
        self._lock = threading.Lock()
        self._tracks: dict[Hashable, _Track] = {}

    def _track(self, key: Hashable, now: float) -> _Track:
        track = self._tracks.get(key)
        if track is None:
            track = _Track(deque(), deque(maxlen=self.window), now)
            self._tracks[key] = track
        track.updated = now
        return track

    def record_forecast(
        self, key: Hashable, target_time: float, median: float, upper: float
    ) -> None:
        with self._lock:
            track = self._track(key, target_time)
            pending = track.pending
            if not pending:
                track.spacing = PENDING_SPACING_SECONDS  # a lead time unknown again
            elif target_time < pending[-1][0] + track.spacing:
                return  # one forecast a `spacing` is enough
            if len(pending) >= self.max_pending:
                # Full: the lead time holds more forecasts than the queue at this
                # spacing (a lead of minutes). Keep every other one, the oldest (next
                # to be scored) first, and space new ones twice as far: the scores stay
                # spread over time. Refusing new ones until the queue drained scored
                # forecasts in bursts a lead time apart; dropping the oldest (a bounded
                # deque) scored none.
                track.pending = pending = deque(itertools.islice(pending, 0, None, 2))
                track.spacing *= 2.0
                if target_time < pending[-1][0] + track.spacing:
                    return
            pending.append((target_time, median, upper))

    def record_actual(self, key: Hashable, time_seconds: float, value: float) -> None:
        if not math.isfinite(value):
            return
        with self._lock:
            track = self._tracks.get(key)
            if track is None:
                return
            track.updated = max(track.updated, time_seconds)
            while track.pending and track.pending[0][0] <= time_seconds:
                target, median, upper = track.pending.popleft()
                if time_seconds - target > self.tolerance_seconds:
                    continue
                denom = abs(value) + abs(median)
                term = 0.0 if denom == 0 else 2.0 * abs(value - median) / denom
                track.scored.append((term, value > median, value <= upper))
                track.summary = None

    def errors(self, key: Hashable) -> ForecastErrors | None:
        with self._lock:
            track = self._tracks.get(key)
            if track is None or not track.scored:
                return None
            if track.summary is None:
                terms = np.array([s[0] for s in track.scored])
                under = np.array([s[1] for s in track.scored])
                covered = np.array([s[2] for s in track.scored])
                track.summary = ForecastErrors(
                    smape=float(100.0 * terms.mean()),
                    under_rate=float(under.mean()),
                    coverage=float(covered.mean()),
                    count=len(terms),
                )
            return track.summary

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._tracks.pop(key, None)

    def prune(self, older_than: float) -> None:
        """Drop keys last updated before `older_than` (a time on the same clock)."""
        with self._lock:
            for key in [k for k, t in self._tracks.items() if t.updated < older_than]:
                del self._tracks[key]
