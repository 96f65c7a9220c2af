"""The `forecastAction` key: its values, its default and the message a wrong value gets;
what `ramp` asks for, over any forecast window, median noise and observed demand."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from scaler.forecast_action import RISE_SIGNIFICANCE, LeadWindow, demand_to_provision
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
    noise = draw(st.one_of(st.just(0.0), LEVELS))
    return LeadWindow(median_now, median_now + width, peak_median, peak_median + width, noise)


@given(windows(), LEVELS)
def test_ramp_asks_at_least_the_demand_and_never_more_than_demand_plus_the_rise(
    window: LeadWindow, demand: float
) -> None:
    wanted = demand_to_provision(ForecastAction.RAMP, window, demand)
    assert demand <= wanted <= demand + window.rise


@given(windows(), LEVELS)
# A jump from 0 to 100 with noise 10 that the demand (50) has half made: 80 asked.
@example(LeadWindow(0.0, 10.0, 100.0, 110.0, 10.0), 50.0)
# demand + (peak - demand) rounded one unit in the last place below the peak.
@example(LeadWindow(0.0, 0.0, 524289.5320457608, 524289.5320457608, 0.0), 1.0051078065880574)
def test_ramp_ahead_of_a_jump_asks_for_the_jump_whatever_the_demand_has_made_of_it(
    window: LeadWindow, demand: float
) -> None:
    wanted = demand_to_provision(ForecastAction.RAMP, window, demand)
    # (the jump's peak beyond the median's noise, as every rise)
    assert wanted >= min(window.significant_peak, demand + window.rise)


@given(windows(), LEVELS, LEVELS)
def test_more_demand_never_lowers_the_ramp_by_more_than_the_band_width(
    window: LeadWindow, demand: float, more: float
) -> None:
    lower = demand_to_provision(ForecastAction.RAMP, window, demand)
    higher = demand_to_provision(ForecastAction.RAMP, window, demand + more)
    # Crossing the band during a predicted jump, the ask goes from demand + rise to the
    # jump's peak: a step down of at most the band's width now.
    assert higher >= lower - (window.upper_now - window.median_now) - 1e-9 * (1 + lower)


@given(windows(), LEVELS)
def test_ramp_within_the_median_noise_is_exactly_reactive(
    window: LeadWindow, demand: float
) -> None:
    # A climb no larger than the median's noise allows for is no rise: the demand alone
    # (the noise set a hair above the climb's share, so rounding cannot leave a rise).
    climb = (window.peak_median - window.median_now) / RISE_SIGNIFICANCE * (1 + 1e-9)
    noisy = LeadWindow(
        window.median_now,
        window.upper_now,
        window.peak_median,
        window.peak_upper,
        max(window.median_noise, climb),
    )
    assert noisy.rise == 0.0
    assert demand_to_provision(ForecastAction.RAMP, noisy, demand) == demand


@given(windows(), LEVELS)
def test_a_rise_beyond_the_noise_counts_less_the_noise_margin(
    window: LeadWindow, demand: float
) -> None:
    margin = RISE_SIGNIFICANCE * window.median_noise
    expected = max(0.0, window.peak_median - window.median_now - margin)
    assert window.rise == pytest.approx(expected, rel=1e-9, abs=1e-9 * (1 + window.peak_median))
    quiet = LeadWindow(window.median_now, window.upper_now, window.peak_median, window.peak_upper)
    assert window.rise <= quiet.rise


@given(windows(), LEVELS, LEVELS)
# Hypothesis' case from when a jump was told from a tide after the noise margin: the quiet
# window's jump of 83,487, already made by the demand, asked for nothing more, while the
# same window with noise kept a rise of 1 (within the band's width), added it to the
# demand and asked for 83,488.
@example(LeadWindow(0.0, 1.0, 83_487.0, 83_488.0), 83_487.0, 41_743.0)
def test_more_noise_never_asks_for_more(window: LeadWindow, demand: float, more: float) -> None:
    noisier = LeadWindow(
        window.median_now,
        window.upper_now,
        window.peak_median,
        window.peak_upper,
        window.median_noise + more,
    )
    assert demand_to_provision(ForecastAction.RAMP, noisier, demand) <= demand_to_provision(
        ForecastAction.RAMP, window, demand
    )
