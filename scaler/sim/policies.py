"""The six policies compared: each turns the traffic into replicas over time.

- `static-peak`: a fixed count sized for the peak at the shared per-replica target;
- `keda-cron`: KEDA cron triggers (one window per trigger, the HPA takes the max),
  evaluated with the service's KEDA-parity cron rules;
- `reactive`: KEDA's prometheus scaler (value = demand, target = threshold) through the HPA;
- `hpa-cpu`: an HPA on CPU utilization (a pod's CPU follows the requests it serves);
- `tidescaler`: the real engine (`scaler.engine.decide`) at every KEDA poll, fed the
  lagged demand and the latest forecast, refit periodically on the history the
  policy could have seen; its answer goes to the HPA with target 1;
- `oracle`: at every step the fewest replicas whose latency tail meets the SLO,
  knowing the demand exactly and with no start-up: the cost floor.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from scaler.engine import EngineSettings, Observations, Sample, decide, lead_seconds
from scaler.forecast.types import Forecast
from scaler.policy import Policy, parse_policy
from scaler.schedule import CronWindow
from scaler.sim.cluster import (
    CpuSignal,
    MetricSignal,
    Replicas,
    fixed_replicas,
    observed_rate,
    run_cluster,
)
from scaler.sim.queue import ServiceModel, tail_share
from scaler.sim.scenario import Scenario, ScenarioError, unreachable_slo
from scaler.sim.traffic import Traffic

FloatArray = np.ndarray
Progress = Callable[[float], None]


@dataclass(frozen=True, eq=False)
class SimInput:
    """The traffic on the simulation grid and what the metric pipeline shows of it."""

    scenario: Scenario
    traffic: Traffic  # native grid, as the trace has it
    start: float
    step_seconds: float  # the HPA sync period
    rate: FloatArray  # true demand per step (requests/s)
    observed: FloatArray  # what a rate() query returns at each step (lagged)
    service: ServiceModel

    @property
    def steps(self) -> int:
        return len(self.rate)

    @property
    def poll_every(self) -> int:
        return max(1, round(self.scenario.cluster.polling_interval_seconds / self.step_seconds))


def prepare(scenario: Scenario, traffic: Traffic) -> SimInput:
    cluster = scenario.cluster
    step = cluster.hpa_sync_seconds
    rate = traffic.on_grid(step)
    service = cluster.service
    return SimInput(
        scenario=scenario,
        traffic=traffic,
        start=traffic.start,
        step_seconds=step,
        rate=rate,
        observed=observed_rate(rate, step, cluster),
        service=service,
    )


@dataclass(frozen=True, eq=False)
class PolicyRun:
    """One policy's replicas over time and what it took to compute them."""

    name: str
    replicas: Replicas
    wall_seconds: float
    detail: dict[str, object] = field(default_factory=dict)


def _polls(sim: SimInput) -> FloatArray:
    """Times of the KEDA polling ticks."""
    ticks = math.ceil(sim.steps / sim.poll_every)
    out: FloatArray = sim.start + sim.step_seconds * sim.poll_every * np.arange(ticks)
    return out


def static_peak(sim: SimInput) -> PolicyRun:
    """One fixed count for the peak at the target: the cost every other policy is
    measured against. At least min replicas (and one: a fixed deployment does not scale
    to zero), but not capped by max replicas, a bound of the autoscaler that a
    deployment sized for its peak does not have."""
    began = time.perf_counter()
    need = math.ceil(round(float(sim.rate.max()) / sim.scenario.threshold, 9))
    count = max(need, sim.scenario.cluster.hpa_min_replicas, 1)
    replicas = fixed_replicas(np.full(sim.steps, count, dtype=np.int64))
    return PolicyRun("static-peak", replicas, time.perf_counter() - began, {"replicas": count})


def oracle(sim: SimInput) -> PolicyRun:
    """Fewest replicas per step with P(latency > SLO) <= oracle_tail, stationary, no start-up."""
    began = time.perf_counter()
    scenario = sim.scenario
    why = unreachable_slo(scenario)
    if why is not None:  # the search below would never end
        raise ScenarioError(why)
    slo = scenario.slo_ms / 1000.0
    capacity = scenario.cluster.capacity_per_replica
    # Distinct demand values share one search (a trace holds each interval's rate several times).
    values, inverse = np.unique(sim.rate, return_inverse=True)
    needed = np.ceil(values / capacity).astype(np.int64)
    needed[(needed * capacity <= values) & (values > 0)] += 1
    pending = np.flatnonzero(values > 0)
    while len(pending):
        share = tail_share(values[pending], needed[pending], sim.service, slo)
        short = share > scenario.oracle_tail
        needed[pending[short]] += 1
        pending = pending[short]
    replicas = fixed_replicas(needed[inverse])
    return PolicyRun("oracle", replicas, time.perf_counter() - began)


def _hourly_windows(sim: SimInput) -> tuple[dict[str, str], ...]:
    """KEDA cron triggers a planner would write from the trace: one per UTC hour, floor at
    the 90th percentile over days of that hour's peak need (planned with hindsight)."""
    threshold = sim.scenario.threshold
    # A cron trigger cannot ask for more than the ScaledObject's maxReplicaCount allows
    # (the HPA would clamp it anyway, and KEDA refuses desiredReplicas beyond its range).
    most = sim.scenario.cluster.max_replicas
    per_hour = round(3600 / sim.step_seconds)
    offset = int((sim.start % 86400) // sim.step_seconds)
    # Align to whole UTC hours: pad the front so index 0 is midnight.
    padded = np.concatenate((np.full(offset, np.nan), sim.rate))
    hours = len(padded) // per_hour
    if hours == 0:
        return ()
    peaks = np.nanmax(
        np.where(np.isnan(padded[: hours * per_hour]), -1.0, padded[: hours * per_hour]).reshape(
            hours, per_hour
        ),
        axis=1,
    )
    triggers = []
    for hour in range(24):
        seen = peaks[hour::24]
        seen = seen[seen >= 0]
        if not len(seen):
            continue
        need = min(most, math.ceil(round(float(np.quantile(seen, 0.9)) / threshold, 9)))
        if need <= 0:
            continue
        triggers.append(
            {
                "timezone": "UTC",
                "start": f"0 {hour} * * *",
                "end": f"0 {(hour + 1) % 24} * * *",
                "desiredReplicas": str(need),
            }
        )
    return tuple(triggers)


def window_active(window: CronWindow, times: FloatArray) -> np.ndarray:
    """`window.is_active` at each of the sorted `times`, asked once per stretch between firings.

    Between two firings of its start or end schedule a window keeps its state
    (both `Next` answers stay the same), so one question per stretch suffices.
    """
    out = np.zeros(len(times), dtype=bool)
    i = 0
    while i < len(times):
        t = float(times[i])
        state = window.is_active(t)
        change = min(window.start.next_after(t, window.zone), window.end.next_after(t, window.zone))
        j = int(np.searchsorted(times, change, side="left")) if change > t else i + 1
        j = max(j, i + 1)
        out[i:j] = state
        i = j
    return out


def keda_cron(sim: SimInput) -> PolicyRun:
    began = time.perf_counter()
    scenario = sim.scenario
    triggers = scenario.keda_cron if scenario.keda_cron is not None else _hourly_windows(sim)
    windows = [parse_policy(dict(t)).windows[0] for t in triggers]
    polls = _polls(sim)
    value = np.zeros(len(polls))
    for window in windows:
        desired = float(window.desired_replicas or 0)
        inside = window_active(window, polls)
        value = np.maximum(value, np.where(inside, desired, 0.0))
    signal = MetricSignal(value=value, active=value > 0, target=1.0)
    replicas = run_cluster(signal, scenario.cluster, sim.start, sim.steps, scenario.seed)
    detail: dict[str, object] = {"triggers": [dict(t) for t in triggers]}
    return PolicyRun("keda-cron", replicas, time.perf_counter() - began, detail)


def reactive(sim: SimInput) -> PolicyRun:
    began = time.perf_counter()
    scenario = sim.scenario
    value = sim.observed[:: sim.poll_every]
    signal = MetricSignal(value=value, active=value > 0.0, target=scenario.threshold)
    replicas = run_cluster(signal, scenario.cluster, sim.start, sim.steps, scenario.seed)
    return PolicyRun("reactive", replicas, time.perf_counter() - began)


def hpa_cpu(sim: SimInput) -> PolicyRun:
    began = time.perf_counter()
    scenario = sim.scenario
    signal = CpuSignal(rate_per_second=sim.rate, target_percent=100.0 * scenario.target_utilization)
    replicas = run_cluster(signal, scenario.cluster, sim.start, sim.steps, scenario.seed)
    return PolicyRun("hpa-cpu", replicas, time.perf_counter() - began)


# A refit: (forecast, problem, model, fits, failures).
Refit = tuple[Forecast | None, str | None, str | None, int, int]


@dataclass(frozen=True, eq=False)
class EngineAnswers:
    """What tidescaler told KEDA at every poll of one run, and how it got there."""

    value: FloatArray
    active: npt.NDArray[np.bool_]
    detail: dict[str, object]


@dataclass
class ForecastCache:
    """Work shared by the runs of one sweep over one traffic.

    `refits`: the forecaster fitted on the very same history (runs that differ only
    in the threshold); the key holds everything `fit` and the horizon depend on.
    `answers`: tidescaler's answer at every poll, a pure function of its trigger,
    the engine settings and the query's series, so runs that differ only in what
    happens after KEDA (the HPA's scale-down window, the pods) reuse it; the key
    holds all of those, the series as a digest of its values.
    """

    refits: dict[tuple[float, ...], Refit] = field(default_factory=dict)
    answers: dict[tuple[object, ...], EngineAnswers] = field(default_factory=dict)


def query_history(
    observed: FloatArray,
    start: float,
    sim_step: float,
    end: float,
    count: int,
    step: float,
    reach_seconds: float,
) -> FloatArray:
    """What a Prometheus range query of the demand returns: `count` points on the grid
    of `step` ending at `end`, each the query's answer at that time (`observed`, the
    lagged, scraped series on the simulation grid). A point whose window reaches
    before the first scraped sample (`reach_seconds` = scrape interval + rate
    window) or past the simulated span is missing (NaN): a gap, as in production.
    """
    times = end - step * np.arange(count - 1, -1, -1, dtype=np.float64)
    index = np.floor((times - start) / sim_step + 1e-9).astype(np.int64)
    known = (times - reach_seconds >= start - 1e-9) & (index < len(observed))
    out: FloatArray = np.full(count, np.nan)
    out[known] = observed[index[known]]
    return out


@dataclass
class ForecastFeed:
    """Refits the forecaster every `refit_seconds` on the history the policy could see.

    The history is what the service's refresher would fetch: the policy's query
    over `forecastHistory` by range query, on the service's own grid step, as
    Prometheus answers it (`observed`: lagged by the scrape interval, averaged
    over the rate window, missing before the first scrape). Never the true demand.
    Between refits the engine reads the latest forecast, as the refresher does.
    """

    observed: FloatArray  # the query's answer at each simulation step
    start: float
    sim_step: float
    policy: Policy
    refit_seconds: float
    reach_seconds: float  # scrape interval + rate window: how far back a point looks
    lead_seconds: float
    fit_seconds: float = 0.0
    fits: int = 0
    failures: int = 0
    last_problem: str | None = None
    models: Counter[str] = field(default_factory=Counter)
    cache: ForecastCache | None = None
    _next_refit: float = -math.inf
    _forecast: Forecast | None = None

    def at(self, now: float) -> tuple[Forecast | None, str | None]:
        if now >= self._next_refit:
            self._refit(now)
            base = self.start
            self._next_refit = (
                base + (math.floor((now - base) / self.refit_seconds) + 1) * self.refit_seconds
            )
        return self._forecast, self.last_problem if self._forecast is None else None

    def history(self, now: float) -> tuple[FloatArray, float, float]:
        """(values, grid step, end time) the refresher would fit on at `now`."""
        # The service's own grid step (imported here: the forecaster is optional).
        from scaler.forecast_service import history_step_seconds

        step = history_step_seconds(self.policy.forecast.history_seconds)
        end = math.floor(now / step) * step  # as the refresher aligns its grid
        count = max(1, round(self.policy.forecast.history_seconds / step))
        values = query_history(
            self.observed, self.start, self.sim_step, end, count, step, self.reach_seconds
        )
        return values, step, end

    def _refit(self, now: float) -> None:
        key = (
            self.policy.forecast.quantile,
            self.policy.forecast.history_seconds,
            self.refit_seconds,
            self.reach_seconds,
            self.lead_seconds,
            now,
        )
        if self.cache is not None and key in self.cache.refits:
            self._forecast, self.last_problem, model, fits, failures = self.cache.refits[key]
            self.fits += fits
            self.failures += failures
            if model is not None:
                self.models[model] += 1
            return
        fits, failures = self.fits, self.failures
        self._compute(now)
        if self.cache is not None:
            model = self._forecast.model if self._forecast is not None else None
            self.cache.refits[key] = (
                self._forecast,
                self.last_problem,
                model,
                self.fits - fits,
                self.failures - failures,
            )

    def _compute(self, now: float) -> None:
        try:
            from scaler.forecast.forecaster import fit
        except ImportError as err:  # the forecaster is an optional part of a build
            self._forecast, self.last_problem = None, f"forecaster unavailable: {err}"
            return
        values, step, end = self.history(now)
        if np.count_nonzero(np.isfinite(values)) < 2:
            self._forecast, self.last_problem = None, "no history yet"
            return
        began = time.perf_counter()
        try:
            fitted = fit(values, step, quantile=self.policy.forecast.quantile, now=end)
            horizon = (now - end) + self.refit_seconds + self.lead_seconds + 2 * step
            self._forecast = fitted.forecast(horizon)
            self.last_problem = None
            self.models[self._forecast.model] += 1
        except ValueError as err:  # InsufficientHistory and other refusals to fit
            self._forecast, self.last_problem = None, str(err)
            self.failures += 1
        self.fits += 1
        self.fit_seconds += time.perf_counter() - began


def tidescaler(
    sim: SimInput, progress: Progress | None = None, cache: ForecastCache | None = None
) -> PolicyRun:
    """The engine at every KEDA poll; the HPA gets its answer with target 1."""
    began = time.perf_counter()
    scenario = sim.scenario
    metadata = scenario.tidescaler_metadata()
    settings = EngineSettings(polling_interval_seconds=scenario.cluster.polling_interval_seconds)
    answers = None
    if cache is not None:
        key = _answers_key(sim, metadata, settings)
        answers = cache.answers.get(key)
    if answers is None:
        answers = engine_answers(sim, metadata, settings, progress, cache)
        if cache is not None:
            cache.answers[key] = answers
    signal = MetricSignal(value=answers.value, active=answers.active, target=1.0)
    replicas = run_cluster(signal, scenario.cluster, sim.start, sim.steps, scenario.seed)
    return PolicyRun("tidescaler", replicas, time.perf_counter() - began, dict(answers.detail))


def _answers_key(
    sim: SimInput, metadata: dict[str, str], settings: EngineSettings
) -> tuple[object, ...]:
    """Everything `engine_answers` depends on (the query's series as a digest)."""
    scenario = sim.scenario
    digest = hashlib.blake2b(sim.observed.tobytes(), digest_size=16).hexdigest()
    return (
        tuple(sorted(metadata.items())),
        settings,
        scenario.forecast_refit_seconds,
        scenario.cluster.metric_lag_seconds,
        sim.start,
        sim.step_seconds,
        sim.steps,
        sim.poll_every,
        digest,
    )


def engine_answers(
    sim: SimInput,
    metadata: dict[str, str],
    settings: EngineSettings,
    progress: Progress | None = None,
    cache: ForecastCache | None = None,
) -> EngineAnswers:
    """`decide()` at every KEDA poll on the query's series and the forecaster's refits."""
    scenario = sim.scenario
    policy = parse_policy(metadata)
    feed = ForecastFeed(
        observed=sim.observed,
        start=sim.start,
        sim_step=sim.step_seconds,
        policy=policy,
        refit_seconds=scenario.forecast_refit_seconds,
        reach_seconds=scenario.cluster.metric_lag_seconds,
        lead_seconds=lead_seconds(policy, settings),
        cache=cache,
    )
    wants_forecast = policy.forecast_query is not None
    polls = _polls(sim)
    observed = sim.observed[:: sim.poll_every]
    value = np.zeros(len(polls))
    active = np.zeros(len(polls), dtype=bool)
    reasons: Counter[str] = Counter()
    engine_seconds = 0.0
    last_value, last_active = 0.0, False
    report_every = max(1, len(polls) // 100)
    for k, now in enumerate(polls.tolist()):
        forecast, problem = feed.at(now) if wants_forecast else (None, None)
        observations = Observations(
            demand=Sample(float(observed[k]), now), forecast=forecast, forecast_problem=problem
        )
        t0 = time.perf_counter()
        decision = decide(policy, observations, now, settings)
        engine_seconds += time.perf_counter() - t0
        if decision.available:
            last_value = decision.hpa_value
        if decision.active_known:
            last_active = decision.active
        # Unavailable: GetMetrics fails and the HPA keeps its replicas (the last value);
        # IsActive answers while the activity is known.
        value[k], active[k] = last_value, last_active
        reasons[decision.reason.value] += 1
        if progress is not None and k % report_every == 0:
            progress(k / len(polls))
    detail: dict[str, object] = {
        "metadata": metadata,
        "decisions": len(polls),
        "engine_seconds": engine_seconds,
        "forecast_fits": feed.fits,
        "forecast_failures": feed.failures,
        "forecast_fit_seconds": feed.fit_seconds,
        "forecast_models": dict(feed.models.most_common()),
        "winning_signal": dict(reasons.most_common()),
    }
    return EngineAnswers(value, active, detail)


def run_policy(
    name: str,
    sim: SimInput,
    progress: Progress | None = None,
    forecast_cache: ForecastCache | None = None,
) -> PolicyRun:
    """One policy's run; `forecast_cache` shares forecaster refits between runs of a sweep."""
    if name == "tidescaler":
        return tidescaler(sim, progress, forecast_cache)
    builders: dict[str, Callable[[SimInput], PolicyRun]] = {
        "static-peak": static_peak,
        "keda-cron": keda_cron,
        "reactive": reactive,
        "hpa-cpu": hpa_cpu,
        "oracle": oracle,
    }
    run = builders[name](sim)
    if progress is not None:
        progress(1.0)
    return run
