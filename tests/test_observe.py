"""The Observer against a real Prometheus: what it hands the engine, and what it shares."""

from __future__ import annotations

import time

import pytest
from prometheus_server import Exporter, PrometheusServer

from scaler.engine import Observations, Sample, Signal
from scaler.observe import Observer
from scaler.policy import parse_policy
from scaler.sources.prometheus import PrometheusSource

pytestmark = pytest.mark.prometheus

QUERY = 'tidetest_observe_depth{queue="orders"}'


def test_policies_reading_one_answer_share_its_observations(
    prometheus: PrometheusServer, exporter: Exporter
) -> None:
    exporter.set("tidetest_observe_depth", 37.0, queue="orders")
    prometheus.wait_for_value(QUERY, 37.0)
    now = time.time()
    clock = [now]  # the evaluation time the source sends
    with PrometheusSource(clock=lambda: clock[0], coalesce_seconds=5.0) as source:
        observer = Observer(source)
        small = parse_policy({"query": QUERY, "threshold": "10"})
        large = parse_policy({"query": QUERY, "threshold": "20", "minReplicas": "1"})
        first, problems = observer.observe(small, prometheus.url, now)
        assert problems == []
        assert first == Observations(demand=Sample(37.0, now, None), errors={})
        # Another policy reading the same answer: the very same observations.
        assert observer.observe(large, prometheus.url, now)[0] is first
        # At hand too, with how long that answer stays the shared one: the source's clock
        # stands still, so the whole coalescing interval.
        options = observer.options_for(large)
        assert observer.observe_at_hand(large, prometheus.url, now, options) == (first, [], 5.0)

        # A policy that reads more than the query gets its own.
        with_cpu = parse_policy(
            {
                "query": QUERY,
                "threshold": "10",
                "cpuUtilization": "50",
                "podSelector": 'namespace="nowhere"',
            }
        )
        own, cpu_problems = observer.observe(with_cpu, prometheus.url, now)
        assert own is not first and own.demand == first.demand
        assert [p.signal for p in cpu_problems] == [Signal.CPU]  # no such pods here

        # A new answer (past twice --coalesce-seconds): new observations of the new value.
        exporter.set("tidetest_observe_depth", 41.0, queue="orders")
        prometheus.wait_for_value(QUERY, 41.0)
        clock[0] = time.time() + 11.0
        later, _ = observer.observe(small, prometheus.url, clock[0])
        assert later is not first
        assert later.demand == Sample(41.0, clock[0], None)
