"""What users feel: latency and failed requests from demand and ready capacity.

Each ready replica runs `servers_per_replica` workers (its concurrency) with
exponential service times (mean `1/mu`). How requests reach them is the routing:

- `random`: each request goes to a ready pod picked at random, as kube-proxy
  spreads connections to a Service, so the Poisson arrivals split evenly and
  every pod is its own M/M/k queue with k = its concurrency and lambda / pods;
- `pooled`: one shared queue in front of every worker (a work queue), M/M/c
  with c = pods x concurrency.

Below capacity a step is that stationary queue (Erlang C); at or above
capacity, and until the excess has drained, the queue is a fluid backlog that
grows at (demand - capacity) and delays every request by backlog / capacity.
A request that would wait longer than the timeout fails; with no ready
replica at all, every request fails (no endpoint to reach).

Per step the model keeps a small latency mixture (stationary part, fluid part,
failures), so shares over the SLO, mean latency and percentiles are exact for
the model and fully vectorised; only overloaded stretches need a sequential
pass, and they are short.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FloatArray = np.ndarray


ROUTINGS = ("random", "pooled")


@dataclass(frozen=True)
class ServiceModel:
    """Per-replica service: `capacity_per_replica` = servers_per_replica x mu requests/s."""

    capacity_per_replica: float  # requests/s one ready replica serves at full load
    servers_per_replica: int  # concurrent workers per replica (its concurrency)
    timeout_seconds: float = 10.0
    routing: str = "pooled"  # random: a queue per pod; pooled: one shared queue

    def __post_init__(self) -> None:
        if self.routing not in ROUTINGS:
            raise ValueError(f"routing={self.routing!r}: expected one of {', '.join(ROUTINGS)}")
        if self.servers_per_replica < 1 or self.capacity_per_replica <= 0:
            raise ValueError(
                f"servers_per_replica={self.servers_per_replica}, capacity_per_replica="
                f"{self.capacity_per_replica:g}: expected at least one worker and capacity > 0"
            )

    @property
    def service_time_seconds(self) -> float:
        """Mean service time of one request (concurrency / capacity)."""
        return self.servers_per_replica / self.capacity_per_replica

    def queues(self, rate: FloatArray, replicas: np.ndarray) -> tuple[np.ndarray, FloatArray]:
        """Servers of one queue and the arrival rate it gets, per step (replicas > 0)."""
        r = np.asarray(replicas, dtype=np.int64)
        if self.routing == "random":
            servers = np.full(r.shape, self.servers_per_replica, dtype=np.int64)
            return servers, np.asarray(rate, dtype=np.float64) / np.maximum(r, 1)
        return r * self.servers_per_replica, np.asarray(rate, dtype=np.float64)

    @property
    def mu(self) -> float:
        """Service rate of one worker (1 / mean service time)."""
        return self.capacity_per_replica / self.servers_per_replica

    @classmethod
    def from_service_time(
        cls,
        capacity_per_replica: float,
        service_time_seconds: float,
        timeout_seconds: float,
        routing: str = "pooled",
        concurrency: int | None = None,
    ) -> ServiceModel:
        """Workers per replica = `concurrency`, or capacity x mean service time (Little's
        law) rounded, at least 1."""
        servers = concurrency or max(1, round(capacity_per_replica * service_time_seconds))
        return cls(capacity_per_replica, servers, timeout_seconds, routing)


def erlang_c(servers: FloatArray, offered_load: FloatArray) -> FloatArray:
    """Probability of waiting in M/M/c, for arrays of c (servers) and a = lambda / mu.

    Erlang B by its stable recursion B(k) = a B(k-1) / (k + a B(k-1)), run once
    over k = 1..max(c) on all entries sorted by c (each entry stops at its own
    c), then C = B / (1 - rho (1 - B)). Entries with a >= c get 1 (no steady state).
    """
    c = np.asarray(servers, dtype=np.int64)
    a = np.asarray(offered_load, dtype=np.float64)
    out = np.ones(c.shape, dtype=np.float64)
    ok = (c > 0) & (a < c)
    out[(c > 0) & (a <= 0)] = 0.0
    ok &= a > 0
    if not ok.any():
        return out
    idx = np.flatnonzero(ok)
    order = np.argsort(c[idx], kind="stable")
    cs = c[idx][order]
    as_ = a[idx][order]
    b = np.ones(len(cs))
    # starts[k] = first sorted entry whose c >= k: the entries still recursing at step k.
    k_max = int(cs[-1])
    starts = np.searchsorted(cs, np.arange(1, k_max + 1), side="left")
    for k in range(1, k_max + 1):
        s = starts[k - 1]
        ab = as_[s:] * b[s:]
        b[s:] = ab / (k + ab)
    rho = as_ / cs
    result = np.empty(len(cs))
    result[order] = b / (1.0 - rho * (1.0 - b))
    out[idx] = result
    return out


def _sum_of_exponentials_tail(theta: FloatArray, mu: float, t: float | FloatArray) -> FloatArray:
    """P(X + Y > t) for X ~ Exp(theta), Y ~ Exp(mu) independent."""
    same = np.abs(theta - mu) < 1e-9 * mu
    safe = np.where(same, theta + 1.0, theta)
    general = (safe * np.exp(-mu * t) - mu * np.exp(-safe * t)) / (safe - mu)
    equal = (1.0 + mu * t) * np.exp(-mu * t)
    result: FloatArray = np.where(same, equal, general)
    return result


@dataclass(frozen=True, eq=False)
class QueueOutcome:
    """Per simulation step: how many requests and which latency mixture they met."""

    step_seconds: float
    mu: float
    timeout_seconds: float
    arrivals: FloatArray  # requests arriving in the step
    stationary_requests: FloatArray  # of which met a stationary M/M/c queue
    wait_probability: FloatArray  # Erlang C of that queue
    wait_rate: FloatArray  # c mu - lambda: waits are Exp(wait_rate) when they wait
    fluid_requests: FloatArray  # of which met a backlog and were served
    fluid_wait_seconds: FloatArray  # the (deterministic) wait behind that backlog
    failed: FloatArray  # of which failed (timeout, or no ready replica)
    served: FloatArray  # requests completed in the step (for utilization)

    def share_over(self, latency_seconds: float) -> FloatArray:
        """Per step, the expected number of requests slower than `latency_seconds` (or failed)."""
        t = latency_seconds
        mu = self.mu
        service_tail = np.exp(-mu * t)
        stationary = (1.0 - self.wait_probability) * service_tail + self.wait_probability * (
            _sum_of_exponentials_tail(self.wait_rate, mu, t)
        )
        fluid = np.where(
            self.fluid_wait_seconds >= t,
            1.0,
            np.exp(-mu * np.maximum(t - self.fluid_wait_seconds, 0.0)),
        )
        over_timeout = t >= self.timeout_seconds
        failed = self.failed if not over_timeout else np.zeros_like(self.failed)
        result: FloatArray = (
            self.stationary_requests * stationary + self.fluid_requests * fluid + failed
        )
        return result

    def total_over(self, latency_seconds: float) -> float:
        return float(self.share_over(latency_seconds).sum())

    def mean_latency_seconds(self) -> float:
        """Mean latency of served requests (failed ones are counted apart)."""
        mean_wait = np.where(
            self.stationary_requests > 0,
            self.wait_probability / np.maximum(self.wait_rate, 1e-12),
            0.0,
        )
        served = self.stationary_requests.sum() + self.fluid_requests.sum()
        if served <= 0:
            return 0.0
        total = (
            (self.stationary_requests * mean_wait).sum()
            + (self.fluid_requests * self.fluid_wait_seconds).sum()
            + served / self.mu
        )
        return float(total / served)

    def latency_quantile(self, q: float) -> float:
        """The q-quantile of latency over all requests, failed ones counted at the timeout."""
        return float(self.latency_quantiles((q,))[0])

    def latency_quantiles(self, qs: tuple[float, ...]) -> FloatArray:
        """Several latency quantiles at once (one bisection over a vector of latencies)."""
        total = float(self.arrivals.sum())
        if total <= 0:
            return np.zeros(len(qs))
        targets = (1.0 - np.asarray(qs, dtype=np.float64)) * total
        ceiling = self.timeout_seconds + 50.0 / self.mu
        # Every latency is at least a service time, so each quantile is at least the
        # service time's own: a floor that also lets negligible steps be pruned.
        floors = -np.log(np.clip(1.0 - np.asarray(qs, dtype=np.float64), 1e-300, 1.0)) / self.mu
        floors = np.where(float(self.failed.sum()) >= targets, 0.0, floors)
        sub = _Compact(self, float(floors.min()), float(targets.min()) * 1e-7)
        lo, hi = floors.copy(), np.full(len(qs), ceiling)
        beyond = sub.over(hi) > targets
        # Bisection on the mixture's tail: 24 halvings of ~10 s reach below a millisecond.
        for _ in range(24):
            mid = 0.5 * (lo + hi)
            above = sub.over(mid) > targets
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        result: FloatArray = np.where(beyond, ceiling, hi)
        return result


def _runs(*columns: FloatArray) -> tuple[np.ndarray, np.ndarray]:
    """Start index of each run of equal consecutive rows, and each row's run number."""
    change = np.ones(len(columns[0]), dtype=bool)
    for column in columns:
        change[1:] |= column[1:] != column[:-1]
    return np.flatnonzero(change), np.cumsum(change) - 1


class _Compact:
    """The requests of an outcome grouped by latency law, for repeated tail evaluations.

    A waiting request's latency is Exp(theta) + Exp(mu), whose tail is
    (theta e^{-mu t} - mu e^{-theta t}) / (theta - mu): summed over steps, the
    first term is one constant times e^{-mu t}, so each evaluation costs one
    exponential per step. Steps with theta close to mu (where that split would
    cancel badly) keep the exact form.
    """

    def __init__(
        self, outcome: QueueOutcome, t_floor: float = 0.0, negligible: float = 0.0
    ) -> None:
        mu = self.mu = outcome.mu
        self.timeout = outcome.timeout_seconds
        ns = outcome.stationary_requests
        pw = outcome.wait_probability
        waiting = (ns > 0) & (pw > 1e-15)
        no_wait = float((ns * (1.0 - pw)).sum())
        pw_w, theta_w = pw[waiting], outcome.wait_rate[waiting]
        # Steps that repeat the same queue (same trace interval, same replicas) merge.
        firsts, run_of = _runs(pw_w, theta_w)
        weight = np.bincount(run_of, weights=ns[waiting] * pw_w)
        theta = theta_w[firsts]
        if negligible > 0 and len(weight):
            # Drop the groups whose tails beyond t_floor together stay below `negligible`.
            tails = weight * _sum_of_exponentials_tail(theta, mu, t_floor)
            order = np.argsort(tails)
            dropped = np.cumsum(tails[order]) <= negligible
            keep = np.ones(len(tails), dtype=bool)
            keep[order[dropped]] = False
            weight, theta = weight[keep], theta[keep]
        near = np.abs(theta - mu) < 0.05 * mu
        self.exact_weight = weight[near][:, None]
        self.exact_theta = theta[near][:, None]
        far_w, far_theta = weight[~near], theta[~near]
        self.service_weight = no_wait + float((far_w * far_theta / (far_theta - mu)).sum())
        self.split_weight = (far_w * mu / (far_theta - mu))[:, None]
        self.split_theta = far_theta[:, None]
        fluid = outcome.fluid_requests > 0
        self.nf = outcome.fluid_requests[fluid][:, None]
        self.wf = outcome.fluid_wait_seconds[fluid][:, None]
        self.failed = float(outcome.failed.sum())

    def over(self, t: FloatArray) -> FloatArray:
        """Requests slower than each latency in `t` (failed ones count below the timeout)."""
        mu = self.mu
        ts = t[None, :]
        total = self.service_weight * np.exp(-mu * t)
        if len(self.split_weight):
            total = total - (self.split_weight * np.exp(-self.split_theta * ts)).sum(axis=0)
        if len(self.exact_weight):
            total = total + (
                self.exact_weight * _sum_of_exponentials_tail(self.exact_theta, mu, ts)
            ).sum(axis=0)
        if len(self.nf):
            tail = np.exp(-mu * np.maximum(ts - self.wf, 0.0))
            total = total + (self.nf * tail).sum(axis=0)
        result: FloatArray = total + np.where(t < self.timeout, self.failed, 0.0)
        return result


def simulate_queue(
    rate_per_second: FloatArray,
    ready_replicas: FloatArray,
    service: ServiceModel,
    step_seconds: float,
) -> QueueOutcome:
    """Latency mixture per step for demand `rate_per_second` met by `ready_replicas`."""
    lam = np.asarray(rate_per_second, dtype=np.float64)
    ready = np.asarray(ready_replicas, dtype=np.int64)
    n = len(lam)
    mu = service.mu
    servers = ready * service.servers_per_replica
    kappa = servers * mu  # requests/s the ready replicas complete at full load
    arrivals = lam * step_seconds

    stationary_requests = arrivals.copy()
    fluid_requests = np.zeros(n)
    fluid_wait = np.zeros(n)
    failed = np.zeros(n)
    served = arrivals.copy()

    # Sequential pass over overloaded stretches only: from each step where demand
    # reaches capacity until the backlog it built has drained.
    overloaded = np.flatnonzero((lam >= kappa) & (lam > 0))
    timeout = service.timeout_seconds
    position = 0
    for first in overloaded.tolist():
        if first < position:
            continue
        backlog = 0.0
        i = first
        while i < n:
            rate = float(lam[i])
            cap = float(kappa[i])
            if backlog <= 0.0 and not (rate >= cap and rate > 0.0):
                break
            a = float(arrivals[i])
            if cap <= 0.0:
                # No endpoint: what arrives fails, and what waited is lost with the pods.
                failed[i] = a + backlog
                stationary_requests[i] = 0.0
                served[i] = 0.0
                backlog = 0.0
                i += 1
                continue
            limit = cap * timeout
            end = backlog + (rate - cap) * step_seconds
            if end <= 0.0:
                # Drains within the step: the first part meets the backlog, the rest a
                # stationary queue.
                # (Demand exactly at capacity with no backlog: served at once, as a fluid.)
                part = min(backlog / (cap - rate) / step_seconds, 1.0) if cap > rate else 1.0
                fluid_requests[i] = a * part
                fluid_wait[i] = 0.5 * backlog / cap
                stationary_requests[i] = a - fluid_requests[i]
                served[i] = a + backlog
                backlog = 0.0
                i += 1
                continue
            lost = max(end - limit, 0.0)
            end = min(end, limit)
            failed[i] = lost
            fluid_requests[i] = a - lost
            fluid_wait[i] = min(0.5 * (backlog + end) / cap, timeout)
            stationary_requests[i] = 0.0
            served[i] = cap * step_seconds
            backlog = end
            i += 1
        position = i

    stationary = stationary_requests > 0
    wait_probability = np.zeros(n)
    wait_rate = np.full(n, mu)
    if stationary.any():
        c, lam_queue = service.queues(lam[stationary], ready[stationary])
        load = lam_queue / mu
        # Consecutive steps often repeat (c, load): compute each distinct run once.
        change = np.ones(len(c), dtype=bool)
        change[1:] = (c[1:] != c[:-1]) | (load[1:] != load[:-1])
        firsts = np.flatnonzero(change)
        run_of = np.cumsum(change) - 1
        pw = erlang_c(c[firsts], load[firsts])[run_of]
        theta = np.maximum(c * mu - lam_queue, 1e-12)
        wait_probability[stationary] = pw
        wait_rate[stationary] = theta
        # Requests that would wait past the timeout fail rather than being served.
        timed_out = stationary_requests[stationary] * pw * np.exp(-theta * timeout)
        failed[stationary] += timed_out
        served[stationary] -= timed_out
    return QueueOutcome(
        step_seconds=step_seconds,
        mu=mu,
        timeout_seconds=timeout,
        arrivals=arrivals,
        stationary_requests=stationary_requests,
        wait_probability=wait_probability,
        wait_rate=wait_rate,
        fluid_requests=fluid_requests,
        fluid_wait_seconds=fluid_wait,
        failed=failed,
        served=served,
    )


def tail_share(
    rate_per_second: FloatArray, replicas: FloatArray, service: ServiceModel, latency_seconds: float
) -> FloatArray:
    """Per step, the stationary share of requests slower than `latency_seconds`.

    1 where the step is overloaded (no steady state).
    """
    lam = np.asarray(rate_per_second, dtype=np.float64)
    r = np.asarray(replicas, dtype=np.int64)
    mu = service.mu
    share = np.ones(len(lam))
    ok = r * service.servers_per_replica * mu > lam
    share[lam <= 0] = 0.0
    ok &= lam > 0
    if ok.any():
        c, lam_queue = service.queues(lam[ok], r[ok])
        pw = erlang_c(c, lam_queue / mu)
        theta = c * mu - lam_queue
        share[ok] = (1.0 - pw) * np.exp(-mu * latency_seconds) + pw * _sum_of_exponentials_tail(
            theta, mu, latency_seconds
        )
    return share
