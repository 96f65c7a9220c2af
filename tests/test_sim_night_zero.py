"""The night-zero scenario in the simulator: with the forecast on, the workload scales to
zero every night and is ready again before the morning's first requests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from scaler.sim.runner import simulate
from scaler.sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "simulations" / "synthetic-night-zero.yaml"


def test_forecast_on_sleeps_at_night_and_is_ready_before_the_morning() -> None:
    scenario = replace(load_scenario(SCENARIO), days=10.0, sweep=None)
    result = simulate(scenario, policies=("reactive", "tidescaler"))
    timeline = result.timeline
    step = timeline.step_seconds
    hour = ((timeline.times % 86_400) / 3600).astype(int)
    evaluated = np.arange(len(timeline.times)) >= timeline.evaluated_from
    tide_provisioned = timeline.provisioned["tidescaler"]
    # Every evaluated night (01:00-04:00 UTC, no demand at all) costs nothing.
    night = evaluated & (hour >= 1) & (hour < 4)
    assert night.any() and not timeline.rate[night].any()
    assert not tide_provisioned[night].any()
    # Every evaluated morning: a pod was asked for at least a pod start-up before the
    # first request and is ready when it comes; reactive only reacts once it has seen it.
    lead_steps = round(60 / step)
    mornings = np.flatnonzero(
        evaluated[1:] & (timeline.rate[1:] > 0) & (timeline.rate[:-1] == 0) & (hour[1:] < 12)
    )
    mornings = mornings + 1
    assert len(mornings) >= 2
    for first in mornings.tolist():
        assert tide_provisioned[first - lead_steps] > 0
        assert timeline.ready["tidescaler"][first] > 0
        assert timeline.ready["reactive"][first] == 0
