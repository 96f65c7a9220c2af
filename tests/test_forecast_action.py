"""The `forecastAction` key: its values, its default and the message a wrong value gets;
what `ramp` asks for, over any forecast window and observed demand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.forecast_action import LeadWindow, demand_to_provision
from scaler.policy import ForecastAction, PolicyError, parse_policy

QUERY = {"query": "sum(rate(requests_total[1m]))", "threshold": "100", "forecast": "on"}


@pytest.mark.parametrize(
    ("value", "action"),
    [
        ("ramp", ForecastAction.RAMP),
        ("floor", ForecastAction.FLOOR),
        (" Auto ", ForecastAction.AUTO),
    ],
    ids=["ramp", "floor", "auto-any-case"],
)
def test_forecast_action_values(value: str, action: ForecastAction) -> None:
    assert parse_policy(QUERY | {"forecastAction": value}).forecast.action is action


def test_forecast_action_defaults_to_ramp() -> None:
    assert parse_policy(QUERY).forecast.action is ForecastAction.RAMP


def test_unknown_forecast_action_names_key_value_and_choices() -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(QUERY | {"forecastAction": "always"})
    message = str(err.value)
    assert "forecastAction" in message and "always" in message
    assert "expected one of ramp, floor, auto" in message


LEVELS = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


@st.composite
def windows(draw: st.DrawFn) -> LeadWindow:
    median_now = draw(LEVELS)
    width = draw(LEVELS)
    peak_median = draw(LEVELS)
    return LeadWindow(median_now, median_now + width, peak_median, peak_median + width)


@given(windows(), LEVELS)
def test_ramp_asks_at_least_the_demand_and_never_more_than_demand_plus_the_rise(
    window: LeadWindow, demand: float
) -> None:
    wanted = demand_to_provision(ForecastAction.RAMP, window, demand)
    assert demand <= wanted <= demand + window.rise


@given(windows(), LEVELS)
def test_ramp_ahead_of_a_jump_asks_for_the_jump_whatever_the_demand_has_made_of_it(
    window: LeadWindow, demand: float
) -> None:
    wanted = demand_to_provision(ForecastAction.RAMP, window, demand)
    assert wanted >= min(window.peak_median, demand + window.rise)


@given(windows(), LEVELS, LEVELS)
def test_more_demand_never_lowers_the_ramp_by_more_than_the_band_width(
    window: LeadWindow, demand: float, more: float
) -> None:
    lower = demand_to_provision(ForecastAction.RAMP, window, demand)
    higher = demand_to_provision(ForecastAction.RAMP, window, demand + more)
    # Crossing the band during a predicted jump, the ask goes from demand + rise to the
    # jump's peak: a step down of at most the band's width now.
    assert higher >= lower - (window.upper_now - window.median_now) - 1e-9 * (1 + lower)
