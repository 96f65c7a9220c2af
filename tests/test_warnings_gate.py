"""Warnings caused by ScaledObjects: once per change, again after a while, within a rate."""

from __future__ import annotations

import pytest

from scaler.warnings_gate import WarningGate


def test_a_warning_is_said_when_it_changes_or_after_a_while() -> None:
    gate = WarningGate(every=300.0)
    assert gate.admit("shop/web", "timeout", 0.0) == 0
    assert gate.admit("shop/web", "timeout", 10.0) is None  # said, and recently
    assert gate.admit("shop/web", "connection", 20.0) == 0  # says something new
    assert gate.admit("shop/web", "connection", 319.0) is None
    assert gate.admit("shop/web", "connection", 320.0) == 0  # a while later: said again
    assert gate.admit("shop/api", "connection", 320.0) == 0  # each key its own
    # A clock stepped back does not silence the key for as long as the step.
    assert gate.admit("shop/api", "connection", 100.0) == 0


def test_all_warnings_together_keep_to_the_rate_and_the_next_says_how_many_were_held() -> None:
    gate = WarningGate(every=300.0, per_second=2.0, burst=3.0)
    said = [gate.admit(f"team/app-{i}", "timeout", 0.0) for i in range(10)]
    assert said == [0, 0, 0] + [None] * 7
    assert gate.admit("team/app-10", "timeout", 0.4) is None  # 0.8 of a token
    assert gate.admit("team/app-11", "timeout", 0.5) == 8  # the ones held back
    assert gate.admit("team/app-12", "timeout", 0.5) is None
    # A clock stepped back refills nothing.
    assert gate.admit("team/app-13", "timeout", -50.0) is None
    assert gate.admit("team/app-14", "timeout", 100.0) == 2
    # Held-back warnings were not remembered as said: they come out when there is room.
    assert gate.admit("team/app-5", "timeout", 100.0) == 0


def test_keys_beyond_the_bound_are_forgotten_least_recent_first() -> None:
    gate = WarningGate(every=300.0, keys=2, burst=100.0)
    for key in ("a", "b", "c"):
        assert gate.admit(key, "x", 0.0) == 0
    assert gate.admit("c", "x", 1.0) is None
    assert gate.admit("b", "x", 1.0) is None
    assert gate.admit("a", "x", 1.0) == 0  # forgotten: said once more


@pytest.mark.parametrize(
    "settings",
    [{"every": 0.0}, {"every": 1.0, "keys": 0}, {"every": 1.0, "per_second": 0.0}],
)
def test_nonsense_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        WarningGate(**settings)  # type: ignore[arg-type]
