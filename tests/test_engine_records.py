"""Decisions and readings skip the frozen dataclass __init__ (for speed): what decide()
returns must still be exactly what the dataclass constructors build, every field set,
on the available and the unavailable path."""

from __future__ import annotations

from dataclasses import fields

import pytest
from test_engine import CASES, NOW, QUERY, SETTINGS

from scaler.engine import (
    Decision,
    Observations,
    Signal,
    SignalReading,
    SignalStatus,
    decide,
)
from scaler.policy import parse_policy

CALLS = {name: (case.metadata, case.observations) for name, case in CASES.items()}
CALLS["unavailable"] = (QUERY, Observations(errors={"query": "connection refused"}))


def _rebuilt(decision: Decision) -> Decision:
    """The same decision through the dataclass constructors."""
    values = {f.name: getattr(decision, f.name) for f in fields(Decision)}
    values["signals"] = tuple(
        SignalReading(**{f.name: getattr(r, f.name) for f in fields(SignalReading)})
        for r in decision.signals
    )
    return Decision(**values)


@pytest.mark.parametrize("name", CALLS)
def test_decide_builds_what_the_constructors_build(name: str) -> None:
    metadata, observations = CALLS[name]
    decision = decide(parse_policy(metadata), observations, NOW, SETTINGS)
    assert set(vars(decision)) == {f.name for f in fields(Decision)}
    for reading in decision.signals:
        assert set(vars(reading)) == {f.name for f in fields(SignalReading)}
    rebuilt = _rebuilt(decision)
    assert rebuilt == decision and hash(rebuilt) == hash(decision)
    assert repr(rebuilt) == repr(decision)
    assert decision.available is (name != "unavailable")


def test_signal_reading_keeps_its_defaults_and_stays_frozen() -> None:
    reading = SignalReading(Signal.QUERY, SignalStatus.STALE)
    assert (reading.replicas, reading.value, reading.detail) == (None, None, "")
    assert reading == SignalReading(Signal.QUERY, SignalStatus.STALE, None, None, "")
    with pytest.raises(AttributeError):
        reading.replicas = 3  # type: ignore[misc]
