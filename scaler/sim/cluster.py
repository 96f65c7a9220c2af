"""KEDA + HPA + pods: from a policy's metric to provisioned and ready replicas over time.

One sequential pass per policy on the HPA sync grid (15 s by default):

1. pods whose start-up has finished become ready;
2. on KEDA's polling ticks (30 s) the policy's metric value and activity are
   refreshed (KEDA with cached metrics: the HPA reads the value of the last
   poll), and KEDA's activation acts: active at 0 replicas scales to
   max(minReplicaCount, 1), inactive for the cooldown period scales to 0;
3. at every sync with at least one replica the HPA turns the value into a
   recommendation (tolerance), stabilizes it and applies the rate policies and
   bounds (`hpa`);
4. new pods are created with a start-up delay (fixed or drawn per pod); removed
   pods are the not-yet-ready ones first, newest first, as a ReplicaSet does.

Stabilization uses monotone deques, equal to `hpa.stabilize` but O(1) per sync;
rate limits go through `hpa.apply_rate_limits` whenever the count would change.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from scaler.sim import hpa
from scaler.sim.queue import ServiceModel

FloatArray = np.ndarray
IntArray = np.ndarray


@dataclass(frozen=True)
class PodStartup:
    """Decision-to-Ready time of a new pod: fixed, or drawn per pod (seeded)."""

    seconds: float = 60.0
    distribution: str = "fixed"  # fixed | lognormal | uniform
    sigma: float = 0.3  # lognormal: sigma of log(seconds), `seconds` is the median
    low: float = 0.0  # uniform bounds
    high: float = 0.0

    def draw(self, rng: np.random.Generator, size: int) -> FloatArray:
        if self.distribution == "lognormal":
            out: FloatArray = self.seconds * np.exp(rng.normal(0.0, self.sigma, size))
            return out
        if self.distribution == "uniform":
            out = rng.uniform(self.low, self.high, size)
            return out
        return np.full(size, self.seconds)

    def describe(self) -> str:
        if self.distribution == "lognormal":
            return f"lognormal, median {self.seconds:g}s, sigma {self.sigma:g}"
        if self.distribution == "uniform":
            return f"uniform {self.low:g}..{self.high:g}s"
        return f"{self.seconds:g}s"


@dataclass(frozen=True)
class ClusterModel:
    """Everything between the metric and a ready pod (keda-contract.md §3, §4)."""

    capacity_per_replica: float = 50.0  # requests/s one replica serves at full load
    service_time_ms: float = 20.0  # mean service time of one request
    concurrency_per_pod: int | None = None  # requests a pod serves at once (None: derived)
    routing: str = "random"  # random: a queue per pod (kube-proxy); pooled: one shared queue
    timeout_seconds: float = 10.0  # a request waiting longer fails
    pod_startup: PodStartup = field(default_factory=PodStartup)
    polling_interval_seconds: float = 30.0
    hpa_sync_seconds: float = 15.0
    tolerance: float = 0.1
    cooldown_seconds: float = 300.0
    scrape_interval_seconds: float = 30.0  # the metric's age when queried...
    rate_window_seconds: float = 60.0  # ...and the window a rate() averages over
    min_replicas: int = 0  # ScaledObject minReplicaCount
    max_replicas: int = 100  # ScaledObject maxReplicaCount
    behavior: hpa.Behavior = hpa.DEFAULT_BEHAVIOR

    @property
    def metric_lag_seconds(self) -> float:
        """How far back a query's answer reaches: scrape interval plus rate window.

        A change of demand starts to show one scrape interval after it happens and
        is fully seen once the rate window has passed too.
        """
        return self.scrape_interval_seconds + self.rate_window_seconds

    @property
    def metric_mean_age_seconds(self) -> float:
        """Mean age of what a query returns: scrape delay plus half the rate window."""
        return self.scrape_interval_seconds + self.rate_window_seconds / 2.0

    @property
    def concurrency(self) -> int:
        """Requests one pod serves at once: as given, or capacity x service time (Little)."""
        if self.concurrency_per_pod is not None:
            return self.concurrency_per_pod
        return max(1, round(self.capacity_per_replica * self.service_time_ms / 1000.0))

    @property
    def service_time_seconds(self) -> float:
        """The mean service time the queue model uses: concurrency / capacity per replica.

        Equal to `service_time_ms` when the scenario is consistent (the parser checks
        it); a capacity changed alone keeps the concurrency and moves the service time.
        """
        return self.concurrency / self.capacity_per_replica

    @property
    def hpa_min_replicas(self) -> int:
        return max(self.min_replicas, 1)

    @property
    def service(self) -> ServiceModel:
        """The queue model of one ready pod and of how requests reach the pods."""
        return ServiceModel(
            self.capacity_per_replica, self.concurrency, self.timeout_seconds, self.routing
        )


def observed_rate(rate: FloatArray, step_seconds: float, model: ClusterModel) -> FloatArray:
    """What a `rate(...[window])` query returns at each step: the mean over the window
    ending one scrape interval before the step starts (zero before the series starts).

    Step n covers [t_n, t_n + step): at t_n the newest scraped sample is from
    t_n - scrape, so the step itself (and with a 0 s scrape, the interval just
    starting) is never part of the answer.
    """
    lag = max(0, round(model.scrape_interval_seconds / step_seconds))
    window = max(1, round(model.rate_window_seconds / step_seconds))
    cumulative = np.concatenate(([0.0], np.cumsum(rate)))
    n = len(rate)
    end = np.clip(np.arange(n) - lag, 0, n)
    begin = np.clip(end - window, 0, n)
    out: FloatArray = (cumulative[end] - cumulative[begin]) / window
    return out


@dataclass(frozen=True, eq=False)
class Replicas:
    """Per step: pods that exist (what is paid for) and pods that are ready (serve)."""

    provisioned: IntArray
    ready: IntArray
    scaling_actions: int
    reasons: dict[str, int] = field(default_factory=dict)


def fixed_replicas(replicas: IntArray) -> Replicas:
    """Replicas set directly (static capacity, or the oracle: no start-up delay)."""
    r = np.asarray(replicas, dtype=np.int64)
    actions = int(np.count_nonzero(np.diff(r)))
    return Replicas(provisioned=r, ready=r, scaling_actions=actions)


@dataclass(frozen=True, eq=False)
class MetricSignal:
    """A KEDA trigger as the HPA sees it: AverageValue `value` against `target`.

    `value` and `active` are indexed by polling tick (tick k at step k x ticks).
    """

    value: FloatArray
    active: np.ndarray
    target: float


@dataclass(frozen=True, eq=False)
class CpuSignal:
    """A Resource (CPU) metric with a utilization target, from the demand served."""

    rate_per_second: FloatArray  # true demand per step
    target_percent: float


def run_cluster(
    signal: MetricSignal | CpuSignal,
    model: ClusterModel,
    start: float,
    steps: int,
    seed: int = 0,
) -> Replicas:
    """Replicas over `steps` HPA syncs starting at `start` (see the module docstring)."""
    dt = model.hpa_sync_seconds
    poll_every = max(1, round(model.polling_interval_seconds / dt))
    rng = np.random.default_rng(seed)
    startup_draws = model.pod_startup.draw(rng, 4096)
    draw_index = 0

    provisioned_out = np.zeros(steps, dtype=np.int64)
    ready_out = np.zeros(steps, dtype=np.int64)
    reasons: dict[str, int] = {}

    is_cpu = isinstance(signal, CpuSignal)
    cpu_lag = max(0, round(model.metric_mean_age_seconds / dt))
    capacity = model.capacity_per_replica
    tolerance = model.tolerance
    behavior = model.behavior
    up_window = behavior.scale_up.stabilization_window_seconds
    down_window = behavior.scale_down.stabilization_window_seconds
    min_r = model.hpa_min_replicas
    max_r = model.max_replicas
    cooldown = model.cooldown_seconds
    scale_to_zero = model.min_replicas == 0

    if is_cpu:
        assert isinstance(signal, CpuSignal)
        demand = signal.rate_per_second
        values: FloatArray = np.zeros(0)
        actives: np.ndarray = np.ones(0, dtype=bool)
        target = signal.target_percent
        current = min_r  # a CPU-scaled workload never goes to zero
    else:
        assert isinstance(signal, MetricSignal)
        demand = np.zeros(0)
        values, actives, target = signal.value, signal.active, signal.target
        current = 0 if scale_to_zero else min_r

    # Pods: ready ones are only counted; starting ones keep their ready time, in
    # creation order (so the newest is last).
    ready = current
    starting: list[float] = []
    events: list[hpa.ScaleEvent] = []
    # Monotone deques of (time, recommendation) for the stabilization windows.
    window_max: deque[tuple[float, int]] = deque()
    window_min: deque[tuple[float, int]] = deque()
    next_ready = float("inf")
    last_active = -1e300
    event_horizon = max(
        (p.period_seconds for r in (behavior.scale_up, behavior.scale_down) for p in r.policies),
        default=0.0,
    )
    value = 0.0
    active = False
    actions = 0
    served_utilization = np.zeros(steps)

    for n in range(steps):
        now = start + n * dt
        if next_ready <= now:
            still = [t for t in starting if t > now]
            ready += len(starting) - len(still)
            starting = still
            next_ready = min(starting) if starting else float("inf")
        desired = current

        if not is_cpu and n % poll_every == 0:
            k = n // poll_every
            value = float(values[k])
            active = bool(actives[k])
            if active:
                last_active = now
                if current == 0:
                    desired = min_r
                    reasons["keda_activation"] = reasons.get("keda_activation", 0) + 1
            elif current > 0 and scale_to_zero and now - last_active >= cooldown:
                desired = 0
                window_max.clear()
                window_min.clear()
                reasons["keda_cooldown"] = reasons.get("keda_cooldown", 0) + 1

        if current > 0 and desired == current:
            if is_cpu:
                m = n - cpu_lag
                if m >= 0 and ready_out[m] > 0:
                    utilization = served_utilization[m]
                    starting_then = int(provisioned_out[m] - ready_out[m])
                    wish = hpa.resource_utilization_replicas(
                        utilization, target, int(ready_out[m]), starting_then, current, tolerance
                    )
                else:
                    wish = current
            else:
                # hpa.average_value_replicas, inlined: this line runs at every sync.
                if abs(1.0 - value / (target * current)) <= tolerance:
                    wish = current
                else:
                    wish = hpa.ceil_ratio(value / target)
            # Stabilization (equal to hpa.stabilize): lowest wish in the up window,
            # highest in the down window, the new one included.
            while window_max and window_max[0][0] <= now - down_window:
                window_max.popleft()
            while window_min and window_min[0][0] <= now - up_window:
                window_min.popleft()
            down_rec = max(wish, window_max[0][1]) if window_max else wish
            up_rec = min(wish, window_min[0][1]) if window_min else wish
            while window_max and window_max[-1][1] <= wish:
                window_max.pop()
            window_max.append((now, wish))
            while window_min and window_min[-1][1] >= wish:
                window_min.pop()
            window_min.append((now, wish))
            stabilized = current
            if stabilized < up_rec:
                stabilized = up_rec
            if stabilized > down_rec:
                stabilized = down_rec
            if stabilized != current or current > max_r or current < min_r:
                if stabilized != wish:
                    reasons[hpa.HpaReason.STABILIZED] = reasons.get(hpa.HpaReason.STABILIZED, 0) + 1
                while events and events[0].timestamp <= now - event_horizon:
                    events.pop(0)
                final, why = hpa.apply_rate_limits(
                    stabilized, current, min_r, max_r, events, now, behavior
                )
                if final != stabilized:
                    reasons[why] = reasons.get(why, 0) + 1
                desired = final
                if desired != current:
                    events.append(hpa.ScaleEvent(now, desired - current))

        if desired != current:
            actions += 1
            if desired > current:
                count = desired - current
                if draw_index + count > len(startup_draws):
                    startup_draws = model.pod_startup.draw(rng, max(4096, count))
                    draw_index = 0
                new = startup_draws[draw_index : draw_index + count]
                draw_index += count
                starting.extend((now + new).tolist())
                next_ready = min(starting)
                # A pod with zero start-up is ready at once.
                if next_ready <= now:
                    still = [t for t in starting if t > now]
                    ready += len(starting) - len(still)
                    starting = still
                    next_ready = min(starting) if starting else float("inf")
            else:
                remove = current - desired
                from_starting = min(remove, len(starting))
                if from_starting:
                    del starting[len(starting) - from_starting :]
                    next_ready = min(starting) if starting else float("inf")
                ready -= remove - from_starting
            current = desired

        provisioned_out[n] = current
        ready_out[n] = ready
        if is_cpu:
            served = min(float(demand[n]), ready * capacity) if ready > 0 else 0.0
            served_utilization[n] = 100.0 * served / (ready * capacity) if ready > 0 else 0.0

    return Replicas(
        provisioned=provisioned_out,
        ready=ready_out,
        scaling_actions=actions,
        reasons={str(k): v for k, v in reasons.items()},
    )
