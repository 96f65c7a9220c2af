"""The queue model against queueing theory: Erlang C, and a SimPy discrete-event run."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
import simpy

from scaler.sim.queue import ServiceModel, erlang_c, simulate_queue, tail_share


def erlang_c_textbook(c: int, a: float) -> float:
    """P(wait) of M/M/c from the closed form, summed in log space for large c."""
    log_terms = [k * math.log(a) - math.lgamma(k + 1) for k in range(c)]
    log_last = c * math.log(a) - math.lgamma(c + 1) + math.log(c / (c - a))
    top = max([*log_terms, log_last])
    total = sum(math.exp(t - top) for t in log_terms) + math.exp(log_last - top)
    return math.exp(log_last - top) / total


GRID = [(c, rho) for c in (1, 2, 5, 10, 50, 200) for rho in (0.3, 0.5, 0.7, 0.9, 0.95)]


@pytest.mark.parametrize(("servers", "utilization"), GRID, ids=[f"c{c}-rho{r}" for c, r in GRID])
def test_mmc_waiting_time_matches_erlang_c(servers: int, utilization: float) -> None:
    # One worker per replica, so replicas = servers; constant demand for an hour.
    service = ServiceModel(capacity_per_replica=10.0, servers_per_replica=1, timeout_seconds=1e6)
    rate = utilization * servers * service.mu
    steps = 240
    outcome = simulate_queue(np.full(steps, rate), np.full(steps, servers), service, 15.0)
    mean_wait = outcome.mean_latency_seconds() - 1.0 / service.mu
    expected = erlang_c_textbook(servers, rate / service.mu) / (servers * service.mu - rate)
    assert mean_wait == pytest.approx(expected, rel=0.05)
    # The waiting-time tail P(W > t) = C exp(-(c mu - lambda) t), through the latency tail.
    assert erlang_c(np.array([servers]), np.array([rate / service.mu]))[0] == pytest.approx(
        erlang_c_textbook(servers, rate / service.mu), rel=1e-6
    )


def test_erlang_c_edge_cases() -> None:
    out = erlang_c(np.array([0, 3, 3, 4]), np.array([1.0, 0.0, 3.0, 5.0]))
    assert out.tolist() == [1.0, 0.0, 1.0, 1.0]


def _simpy_latencies(
    rate: np.ndarray, servers: np.ndarray, mu: float, step: float, seed: int
) -> np.ndarray:
    """FIFO M/M/c with piecewise-constant arrival rate and a fixed server count per run."""
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    pool = simpy.Resource(env, capacity=int(servers[0]))
    latencies: list[float] = []

    def request(env: simpy.Environment) -> Generator[simpy.Event, Any, None]:
        arrived = env.now
        with pool.request() as slot:
            yield slot
            yield env.timeout(rng.exponential(1.0 / mu))
        latencies.append(env.now - arrived)

    def arrivals(env: simpy.Environment) -> Generator[simpy.Event, Any, None]:
        t = 0.0
        end = step * len(rate)
        while True:
            t += rng.exponential(1.0 / rate[min(int(t // step), len(rate) - 1)])
            if t >= end:
                return
            yield env.timeout(t - env.now)
            env.process(request(env))

    env.process(arrivals(env))
    env.run()
    return np.asarray(latencies)


def test_discrete_event_run_agrees_on_mean_and_p99_latency() -> None:
    service = ServiceModel(capacity_per_replica=50.0, servers_per_replica=5, timeout_seconds=60.0)
    step = 15.0
    # 20 minutes; the rate changes every minute between 60 % and 85 % of capacity.
    per_minute = np.array([60.0, 70.0, 80.0, 85.0, 75.0, 65.0] * 4)[:20]
    rate = np.repeat(per_minute, 4)
    replicas = np.full(len(rate), 2)
    outcome = simulate_queue(rate, replicas, service, step)
    latencies = _simpy_latencies(rate, replicas * service.servers_per_replica, service.mu, step, 3)
    assert outcome.mean_latency_seconds() == pytest.approx(float(latencies.mean()), rel=0.10)
    assert outcome.latency_quantile(0.99) == pytest.approx(
        float(np.quantile(latencies, 0.99)), rel=0.10
    )


def test_overload_builds_a_backlog_and_requests_past_the_timeout_fail() -> None:
    service = ServiceModel(capacity_per_replica=10.0, servers_per_replica=1, timeout_seconds=5.0)
    rate = np.array([5.0] * 4 + [20.0] * 8 + [5.0] * 20)
    outcome = simulate_queue(rate, np.full(len(rate), 1), service, 15.0)
    # Excess 10 req/s for 120 s; the backlog is capped at 5 s x 10 req/s = 50 requests.
    assert outcome.failed.sum() == pytest.approx(10.0 * 120 - 50.0, rel=0.01)
    assert outcome.fluid_wait_seconds.max() == pytest.approx(5.0)
    assert outcome.latency_quantile(0.99) >= 5.0


def test_no_ready_replica_fails_every_request() -> None:
    service = ServiceModel(capacity_per_replica=10.0, servers_per_replica=1)
    rate = np.array([3.0, 3.0, 3.0])
    outcome = simulate_queue(rate, np.array([0, 0, 1]), service, 15.0)
    assert outcome.failed[:2].tolist() == [45.0, 45.0]
    assert outcome.failed[2] < 1e-6


def test_random_routing_is_a_queue_per_pod_and_pooled_one_shared_queue() -> None:
    # 30 pods at 95 % load, one request at a time each, SLO 0.5 s.
    per_pod = ServiceModel(50.0, 1, 1e6, routing="random")
    pooled = ServiceModel(50.0, 1, 1e6, routing="pooled")
    rate = np.array([0.95 * 30 * 50.0])
    # Each pod is M/M/1 with lambda / 30: its latency is Exp(mu - lambda / 30).
    random_share = tail_share(rate, np.array([30]), per_pod, 0.5)[0]
    assert random_share == pytest.approx(math.exp(-(50.0 - 47.5) * 0.5), rel=1e-9)
    assert tail_share(rate, np.array([30]), pooled, 0.5)[0] < 1e-9
    # With k workers per pod each pod is M/M/k: Erlang C of (k, lambda / pods / mu).
    four = ServiceModel(100.0, 4, 1e6, routing="random")
    outcome = simulate_queue(np.full(4, 240.0), np.full(4, 3), four, 15.0)
    assert outcome.wait_probability[0] == pytest.approx(
        erlang_c_textbook(4, 80.0 / four.mu), rel=1e-9
    )
    assert outcome.wait_rate[0] == pytest.approx(4 * four.mu - 80.0)


def test_service_model_rejects_an_unknown_routing() -> None:
    with pytest.raises(ValueError, match="routing='round-robin': expected one of random, pooled"):
        ServiceModel(50.0, 1, routing="round-robin")


def _simpy_random_routing(
    rate: np.ndarray, pods: int, per_pod: int, mu: float, step: float, seed: int
) -> np.ndarray:
    """Poisson arrivals, each sent to a pod picked at random; each pod a FIFO M/M/k."""
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    queues = [simpy.Resource(env, capacity=per_pod) for _ in range(pods)]
    latencies: list[float] = []

    def request(env: simpy.Environment, pod: simpy.Resource) -> Generator[simpy.Event, Any, None]:
        arrived = env.now
        with pod.request() as slot:
            yield slot
            yield env.timeout(rng.exponential(1.0 / mu))
        latencies.append(env.now - arrived)

    def arrivals(env: simpy.Environment) -> Generator[simpy.Event, Any, None]:
        t = 0.0
        end = step * len(rate)
        while True:
            t += rng.exponential(1.0 / rate[min(int(t // step), len(rate) - 1)])
            if t >= end:
                return
            yield env.timeout(t - env.now)
            env.process(request(env, queues[int(rng.integers(pods))]))

    env.process(arrivals(env))
    env.run()
    return np.asarray(latencies)


@pytest.mark.parametrize("per_pod", [1, 3])
def test_random_routing_agrees_with_a_discrete_event_run(per_pod: int) -> None:
    service = ServiceModel(50.0, per_pod, timeout_seconds=60.0, routing="random")
    step = 15.0
    # 12 minutes on 3 pods; the rate changes every minute between 55 % and 85 % of capacity.
    per_minute = np.array([82.0, 105.0, 120.0, 127.0, 112.0, 97.0] * 2)
    rate = np.repeat(per_minute, 4)
    pods = np.full(len(rate), 3)
    outcome = simulate_queue(rate, pods, service, step)
    latencies = _simpy_random_routing(rate, 3, per_pod, service.mu, step, 11)
    assert outcome.mean_latency_seconds() == pytest.approx(float(latencies.mean()), rel=0.10)
    assert outcome.latency_quantile(0.99) == pytest.approx(
        float(np.quantile(latencies, 0.99)), rel=0.10
    )
    slo = 3.0 / service.mu  # three service times: a tail a pooled queue would hardly show
    simulated = float((latencies > slo).mean())
    assert outcome.total_over(slo) / float(outcome.arrivals.sum()) == pytest.approx(
        simulated, rel=0.12
    )
    pooled = simulate_queue(rate, pods, dataclasses.replace(service, routing="pooled"), step)
    assert pooled.total_over(slo) < 0.7 * outcome.total_over(slo)
