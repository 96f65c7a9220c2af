"""The `forecastAction` key: its values, its default and the message a wrong value gets."""

from __future__ import annotations

import pytest

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
