"""Honesty rules of the simulator: every policy sees only what it would see in production.

The query signal lags by the scrape interval plus the rate window; no policy's
decision moves before a change of demand could have been scraped; the forecaster
learns from the scraped series, never from the true demand.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from scaler.engine import EngineSettings, lead_seconds
from scaler.policy import parse_policy
from scaler.sim.cluster import ClusterModel, observed_rate
from scaler.sim.policies import ForecastFeed, prepare, run_policy
from scaler.sim.scenario import parse_scenario

SCENARIO: dict[str, Any] = {
    "name": "honesty",
    "synthetic": {
        "days": 3,
        "step_seconds": 60,
        "peak_rps": 400,
        "peak_to_valley": 8,
        "noise": 0.05,
        "flash_crowds_per_week": 0,
    },
    "warmup_days": 2,
    "cluster": {"capacity_per_replica": 50, "max_replicas": 80, "min_replicas": 1},
    "tidescaler": {"forecastHistory": "2d", "minReplicas": "1"},
    "forecast_refit_seconds": 10800,
    "seed": 5,
}


@pytest.mark.parametrize(("scrape", "window"), [(0.0, 60.0), (30.0, 60.0), (15.0, 120.0)])
def test_query_signal_lags_by_scrape_interval_plus_rate_window(
    scrape: float, window: float
) -> None:
    step = 15.0
    model = ClusterModel(scrape_interval_seconds=scrape, rate_window_seconds=window)
    assert model.metric_lag_seconds == scrape + window
    rate = np.zeros(200)
    jump = 100  # demand steps from 0 to 100 req/s at the start of step 100
    rate[jump:] = 100.0
    seen = observed_rate(rate, step, model)
    times = step * (np.arange(200) - jump)  # seconds since the jump
    # Nothing of the step is seen while it is running (not even with a 0 s scrape)...
    assert np.all(seen[times <= scrape] == 0.0)
    assert seen[times == scrape + step][0] > 0.0
    # ...and the whole change is seen exactly once the documented lag has passed.
    assert np.all(seen[times < model.metric_lag_seconds] < 100.0)
    assert np.all(seen[times >= model.metric_lag_seconds] == pytest.approx(100.0))


@pytest.mark.parametrize("offset", [7, 8], ids=["between-polls", "on-a-poll"])
@pytest.mark.parametrize("policy", ["reactive", "tidescaler", "hpa-cpu"])
def test_no_decision_moves_before_a_change_of_demand_could_be_scraped(
    policy: str, offset: int
) -> None:
    scenario = parse_scenario(SCENARIO, "honesty.yaml")
    traffic = scenario.load_traffic()
    sim = prepare(scenario, traffic)
    # From step `change` on, demand triples (a surge the policies cannot know about).
    # Six hours before the end; on either parity of the 30 s polling grid (2 steps).
    change = sim.steps - 6 * 240 + offset
    surged = sim.rate.copy()
    surged[change:] *= 3.0
    other = dataclasses.replace(
        sim, rate=surged, observed=observed_rate(surged, sim.step_seconds, scenario.cluster)
    )
    before = run_policy(policy, sim).replicas.provisioned
    after = run_policy(policy, other).replicas.provisioned
    scrape_steps = round(scenario.cluster.scrape_interval_seconds / sim.step_seconds)
    unseen = change + scrape_steps + 1  # first step whose query could include the surge
    assert np.array_equal(before[:unseen], after[:unseen])
    assert not np.array_equal(before[unseen:], after[unseen:])  # the surge is acted on


def test_forecaster_learns_from_the_scraped_series_not_the_true_demand() -> None:
    scenario = parse_scenario(SCENARIO, "honesty.yaml")
    sim = prepare(scenario, scenario.load_traffic())
    # The query answers a flat 123 req/s while the true demand follows its tides.
    flat = dataclasses.replace(sim, observed=np.full(sim.steps, 123.0))
    policy = parse_policy(scenario.tidescaler_metadata())
    settings = EngineSettings(polling_interval_seconds=30.0)
    feed = ForecastFeed(
        observed=flat.observed,
        start=sim.start,
        sim_step=sim.step_seconds,
        policy=policy,
        refit_seconds=scenario.forecast_refit_seconds,
        reach_seconds=scenario.cluster.metric_lag_seconds,
        lead_seconds=lead_seconds(policy, settings),
    )
    now = sim.start + 2.5 * 86400
    forecast, problem = feed.at(now)
    assert problem is None and forecast is not None
    assert np.allclose(forecast.median, 123.0, rtol=0.02)
    assert float(sim.rate.max()) > 2 * 123.0  # the true demand was nothing like it


def test_forecast_history_is_the_range_query_with_its_gaps() -> None:
    scenario = parse_scenario(SCENARIO, "honesty.yaml")
    sim = prepare(scenario, scenario.load_traffic())
    policy = parse_policy(scenario.tidescaler_metadata())
    feed = ForecastFeed(
        observed=sim.observed,
        start=sim.start,
        sim_step=sim.step_seconds,
        policy=policy,
        refit_seconds=scenario.forecast_refit_seconds,
        reach_seconds=scenario.cluster.metric_lag_seconds,
        lead_seconds=90.0,
    )
    now = sim.start + 3600.0 + 7.0
    values, step, end = feed.history(now)
    assert step == 30.0  # the service's grid for two days of history
    assert end == np.floor(now / step) * step and end <= now
    assert len(values) == round(2 * 86400 / step)
    # Before the first scrape covers a whole rate window there is nothing: gaps.
    reach = scenario.cluster.metric_lag_seconds
    times = end - step * np.arange(len(values) - 1, -1, -1)
    assert np.all(np.isnan(values[times - reach < sim.start]))
    known = times - reach >= sim.start
    assert known.sum() == pytest.approx((3600.0 - reach) / step, abs=1)
    # Every known point is the query's answer at that time, never the true demand.
    index = np.floor((times[known] - sim.start) / sim.step_seconds).astype(int)
    assert np.array_equal(values[known], sim.observed[index])
    assert not np.allclose(values[known], sim.rate[index])
