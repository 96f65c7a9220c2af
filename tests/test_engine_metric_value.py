"""The value GetMetrics reports (target 1): the demand in replicas before rounding up
when the query or the forecast sets the count, so that the HPA's tolerance acts on the
demand exactly as it does behind KEDA's prometheus scaler; a whole count when a bound,
a window floor or a resource signal sets it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_engine import NOW, QUERY, SETTINGS, WINDOW_NOW, band, demand, pods, schedules

from scaler.engine import Observations, Reason, decide, metric_value_for
from scaler.policy import parse_policy


def keda_then_hpa(value: float) -> int:
    """What KEDA (GenerateMetricInMili: int64(value * 1000) milli-units) and then the HPA
    (ceil(usage / target), target 1) make of a reported value outside the tolerance."""
    milli = int(value * 1000)  # Go's conversion truncates toward zero
    return math.ceil(milli / 1000)


@given(st.integers(1, 2**31 - 1), st.floats(0, 1, exclude_min=True))
def test_the_hpa_asks_for_the_count_whatever_the_fraction(desired: int, share: float) -> None:
    demand_in_replicas = desired - 1 + share
    value = metric_value_for(desired, demand_in_replicas)
    assert desired - 1 < value <= desired
    assert keda_then_hpa(value) == desired
    assert value >= demand_in_replicas  # never below the demand


@pytest.mark.parametrize(
    ("desired", "demand_in_replicas", "value"),
    [
        (9, 8.95, 8.95),
        (9, 8.9501, 8.9501),  # KEDA truncates it to 8.950: still 9 replicas
        (9, 8.0000001, 8.002),  # kept clear of 8 after KEDA truncates to thousandths
        (9, 9.0, 9.0),
        (9, 12.0, 9.0),  # a count bound below the demand is reported whole
        (9, math.inf, 9.0),
        (9, math.nan, 9.0),
        (0, 0.0, 0.0),
    ],
)
def test_metric_value_for_table(desired: int, demand_in_replicas: float, value: float) -> None:
    assert metric_value_for(desired, demand_in_replicas) == pytest.approx(value, abs=1e-12)


def test_the_query_reports_its_demand_in_replicas() -> None:
    decision = decide(parse_policy(QUERY), Observations(demand=demand(895)), NOW, SETTINGS)
    assert (decision.desired_replicas, decision.reason) == (9, Reason.QUERY)
    assert decision.hpa_value == 8.95


@pytest.mark.parametrize(
    ("extra", "desired", "reason"),
    [
        pytest.param({"minReplicas": "12"}, 12, Reason.MIN_REPLICAS, id="min-replicas"),
        pytest.param({"minReplicas": "9"}, 9, Reason.QUERY, id="min-replicas-tied"),
        pytest.param({"maxReplicas": "5"}, 5, Reason.MAX_REPLICAS, id="max-replicas"),
        pytest.param({"maxReplicas": "9"}, 9, Reason.QUERY, id="max-replicas-tied"),
        pytest.param(
            {"schedules": schedules(WINDOW_NOW | {"desiredReplicas": 9})},
            9,
            Reason.QUERY,
            id="window-floor-tied",
        ),
        pytest.param(
            {"schedules": schedules(WINDOW_NOW | {"desiredReplicas": 11})},
            11,
            Reason.CRON,
            id="window-floor",
        ),
    ],
)
def test_a_bound_or_a_floor_is_reported_whole(
    extra: dict[str, str], desired: int, reason: Reason
) -> None:
    # A floor of 9 reported as 8.95 would let the HPA stay at 8 pods (8.95 / 8 is within
    # its tolerance): a bound must be reached, so it is reported as a whole count.
    policy = parse_policy(QUERY | extra)
    decision = decide(policy, Observations(demand=demand(895)), NOW, SETTINGS)
    assert (decision.desired_replicas, decision.reason) == (desired, reason)
    assert decision.hpa_value == float(desired)


def test_a_resource_signal_is_reported_whole() -> None:
    # The HPA's own calculation already applied its tolerance to the pods' usage.
    policy = parse_policy(QUERY | {"cpuUtilization": "50", "podSelector": 'namespace="shop"'})
    observations = Observations(demand=demand(250), cpu=pods([0.75, 0.75]))  # cpu asks 3
    decision = decide(policy, observations, NOW, SETTINGS)
    assert (decision.desired_replicas, decision.hpa_value) == (3, 3.0)


def test_the_forecast_reports_the_demand_it_provisions_for() -> None:
    # A median rising from 500 to 620 within the lead time: the ramp asks for the demand
    # now plus that rise, 505 + 120 = 625 (6.25 replicas' worth), above the query's 5.05.
    policy = parse_policy(QUERY | {"forecast": "on", "forecastAction": "ramp"})
    median = [500.0] + [620.0] * 119
    forecast = band(median, [m * 1.2 for m in median])
    decision = decide(policy, Observations(demand=demand(505), forecast=forecast), NOW, SETTINGS)
    assert (decision.desired_replicas, decision.reason) == (7, Reason.FORECAST)
    assert decision.hpa_value == pytest.approx(6.25, abs=0.002)


def test_an_unavailable_decision_reports_its_zero() -> None:
    decision = decide(parse_policy(QUERY), Observations(), NOW, SETTINGS)
    assert not decision.available
    assert decision.hpa_value == 0.0
