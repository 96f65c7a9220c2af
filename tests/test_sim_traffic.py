"""Generated traffic that punishes regret: tournaments, hourly months, sparse bursts, shifts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scaler.sim.scenario import ScenarioError, load_scenario, parse_scenario
from scaler.sim.traffic import (
    BurstySpec,
    HourlySpec,
    LevelShiftSpec,
    OpeningSpec,
    TournamentSpec,
    generate,
)

SIMULATIONS = Path(__file__).resolve().parent.parent / "simulations"
SPECS = [
    TournamentSpec(days=6),
    HourlySpec(days=21),
    BurstySpec(days=3),
    LevelShiftSpec(),
    OpeningSpec(days=7),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: type(s).__name__)
def test_generators_are_reproducible_from_their_seed(spec: object) -> None:
    a = generate(spec, 5)  # type: ignore[arg-type]
    b = generate(spec, 5)  # type: ignore[arg-type]
    c = generate(spec, 6)  # type: ignore[arg-type]
    assert np.array_equal(a.rate_per_second, b.rate_per_second)
    assert not np.array_equal(a.rate_per_second, c.rate_per_second)
    assert np.all(a.rate_per_second >= 0)
    assert len(a.rate_per_second) == round(spec.days * 86400 / a.step_seconds)  # type: ignore[attr-defined]


def test_tournament_matches_fall_at_different_hours_each_day() -> None:
    spec = TournamentSpec(days=14, noise=0.0, rest_day_probability=0.4)
    rate = generate(spec, 1).rate_per_second.reshape(14, 1440)
    busiest = rate.argmax(axis=1) // 60  # hour of each day's peak
    match_days = rate.max(axis=1) > 2 * spec.base_peak_rps
    assert len(set(busiest[match_days].tolist())) >= 5  # no fixed daily hour
    assert match_days.sum() < 14  # some rest days
    assert rate.max() > 3 * spec.base_peak_rps  # matches dwarf the base


def test_hourly_trace_is_flat_within_each_hour_and_grows() -> None:
    spec = HourlySpec(days=56, noise=0.0, holidays_per_month=0.0)
    traffic = generate(spec, 2)
    assert traffic.step_seconds == 3600.0
    on_grid = traffic.on_grid(15.0)
    assert np.all(on_grid.reshape(-1, 240) == on_grid.reshape(-1, 240)[:, :1])
    weeks = traffic.rate_per_second.reshape(8, 168).mean(axis=1)
    assert weeks[-1] / weeks[0] == pytest.approx(1 + spec.trend_per_month * 49 / 30, rel=0.02)


def test_bursty_trace_is_zero_most_of_the_time() -> None:
    rate = generate(BurstySpec(days=14), 3).rate_per_second
    assert (rate == 0).mean() > 0.9
    assert rate.max() > 100


def test_level_shift_changes_the_level_for_good() -> None:
    spec = LevelShiftSpec(days=21, shift_day=10.3, noise=0.0)
    rate = generate(spec, 4).rate_per_second.reshape(21, 1440)
    # Same weekdays a week apart (day 3 and day 10 before, day 11 and day 18 after... ).
    assert rate[17].mean() / rate[10 - 7].mean() == pytest.approx(spec.shift_factor, rel=1e-9)
    assert rate[9].mean() == pytest.approx(rate[2].mean(), rel=1e-9)


def test_opening_jumps_at_the_same_minute_on_weekdays_only() -> None:
    spec = OpeningSpec(days=7, noise=0.0)
    rate = generate(spec, 5).rate_per_second.reshape(7, 1440)  # Monday first
    nine, half_past_five = 9 * 60, 17 * 60 + 30
    for day in range(5):
        assert rate[day, nine - 1] == spec.closed_rps
        assert rate[day, nine + 2] == pytest.approx(spec.open_rps, rel=0.02)  # within 2 minutes
        assert rate[day, 15 * 60] == pytest.approx(
            spec.open_rps * spec.settle_share, rel=0.1
        )  # the rush settled
        assert rate[day, half_past_five + 1] == spec.closed_rps
    assert np.all(rate[5:] == spec.closed_rps)  # the weekend stays closed


def test_generated_scenarios_load_and_bad_generator_keys_are_refused() -> None:
    for name in ("tournament", "hourly", "bursty", "level-shift", "opening"):
        scenario = load_scenario(SIMULATIONS / f"synthetic-{name}.yaml")
        assert scenario.generator is not None and scenario.tide is None
        assert scenario.load_traffic().name == name
    with pytest.raises(ScenarioError, match=r"synthetic\.kind: 'storm' is not valid"):
        parse_scenario({"synthetic": {"kind": "storm"}}, "x.yaml")
    with pytest.raises(ScenarioError, match=r"synthetic\.bursts: unknown key"):
        parse_scenario({"synthetic": {"kind": "bursty", "bursts": 3}}, "x.yaml")
    with pytest.raises(ScenarioError, match=r"synthetic\.days: -1 is not valid"):
        parse_scenario({"synthetic": {"kind": "hourly", "days": -1}}, "x.yaml")
