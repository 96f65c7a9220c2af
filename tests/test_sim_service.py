"""Service keys of a scenario: capacity, service time, concurrency and routing agree,
and an SLO no replica count can meet stops the oracle with a clear error."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from scaler.sim.policies import oracle, prepare
from scaler.sim.runner import simulate
from scaler.sim.scenario import ScenarioError, parse_scenario

BASE: dict[str, Any] = {
    "name": "service",
    "synthetic": {"days": 1.5, "step_seconds": 60, "peak_rps": 300, "peak_to_valley": 5},
    "warmup_days": 1,
    "seed": 2,
}


def scenario_with(cluster: dict[str, Any], **top: Any) -> Any:
    return parse_scenario({**BASE, "cluster": cluster, **top}, "service.yaml")


@pytest.mark.parametrize(
    ("cluster", "capacity", "service_ms", "concurrency"),
    [
        ({}, 50.0, 20.0, 1),
        ({"capacity_per_replica": 40}, 40.0, 25.0, 1),
        ({"service_time_ms": 100}, 10.0, 100.0, 1),
        ({"capacity_per_replica": 80, "service_time_ms": 50}, 80.0, 50.0, 4),
        ({"capacity_per_replica": 80, "concurrency_per_pod": 8}, 80.0, 100.0, 8),
        ({"service_time_ms": 250, "concurrency_per_pod": 10}, 40.0, 250.0, 10),
        (
            {"capacity_per_replica": 40, "service_time_ms": 250, "concurrency_per_pod": 10},
            40,
            250,
            10,
        ),
    ],
)
def test_any_two_of_capacity_service_time_and_concurrency_give_the_third(
    cluster: dict[str, Any], capacity: float, service_ms: float, concurrency: int
) -> None:
    scenario = scenario_with(cluster, slo_ms=3000)  # reachable with 250 ms per request
    assert scenario.cluster.capacity_per_replica == pytest.approx(capacity)
    assert scenario.service_time_seconds == pytest.approx(service_ms / 1000.0)
    assert scenario.concurrency_per_pod == concurrency
    service = prepare(scenario, scenario.load_traffic()).service
    assert service.servers_per_replica == concurrency
    assert service.service_time_seconds == pytest.approx(service_ms / 1000.0)


def test_routing_is_random_unless_pooled_is_asked_for() -> None:
    assert scenario_with({}).routing == "random"
    assert prepare(scenario_with({}), scenario_with({}).load_traffic()).service.routing == "random"
    assert scenario_with({"routing": "pooled"}).routing == "pooled"


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        (
            {"capacity_per_replica": 13, "service_time_ms": 20},
            "capacity_per_replica=13 x service_time_ms=20 is 0.26 requests in service at once",
        ),
        (
            {"capacity_per_replica": 50, "service_time_ms": 100, "concurrency_per_pod": 2},
            "capacity_per_replica=50 does not match concurrency_per_pod=2 / service_time_ms=100",
        ),
        ({"routing": "round-robin"}, "cluster.routing: 'round-robin' is not valid, expected one"),
        ({"concurrency_per_pod": 0}, "cluster.concurrency_per_pod: 0 is not valid"),
    ],
)
def test_inconsistent_service_keys_are_refused(cluster: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=r"service\.yaml") as caught:
        scenario_with(cluster)
    assert message in str(caught.value)


def test_an_unreachable_slo_is_refused_up_front_naming_what_would_reach_it() -> None:
    # 13 req/s, one at a time: 76.9 ms per request; P(service > 0.5 s) = e^-6.5 = 0.15 %.
    with pytest.raises(ScenarioError) as caught:
        scenario_with({"capacity_per_replica": 13})
    text = str(caught.value)
    assert "SLO is unreachable" in text
    assert "capacity_per_replica=13" in text and "76.92 ms" in text and "slo_ms=500" in text
    assert "slo_ms above 531.4" in text and "capacity_per_replica above 13.82" in text
    # Without the oracle among the policies nothing needs the SLO to be reachable.
    scenario_with({"capacity_per_replica": 13}, policies=["reactive"])


def test_the_oracle_stops_when_capacity_is_changed_after_parsing() -> None:
    # The command line sets the capacity on a parsed scenario (--capacity-per-replica 13).
    scenario = scenario_with({})
    changed = dataclasses.replace(
        scenario, cluster=dataclasses.replace(scenario.cluster, capacity_per_replica=13.0)
    )
    with pytest.raises(ScenarioError, match="SLO is unreachable"):
        simulate(changed)
    with pytest.raises(ScenarioError, match="SLO is unreachable"):
        oracle(prepare(changed, changed.load_traffic()))
    # One request more per second and it is reachable again, and the search ends.
    reachable = dataclasses.replace(
        scenario, cluster=dataclasses.replace(scenario.cluster, capacity_per_replica=14.0)
    )
    assert oracle(prepare(reachable, reachable.load_traffic())).replicas.ready.max() > 0
