"""The cron part of a decision is looked up, not rebuilt: the lookup must never change
a decision. Checked over whole days (one with a daylight-saving change) against
decisions made with the lookup emptied before every call, and against the floor and
ceiling worked out here from the windows' own activity."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from scaler import engine
from scaler.engine import (
    EngineSettings,
    Observations,
    Sample,
    Signal,
    SignalStatus,
    decide,
)
from scaler.policy import Policy, parse_policy

SETTINGS = EngineSettings(polling_interval_seconds=30, staleness_seconds=120)
QUERY = {"query": "sum(rate(requests_total[1m]))", "threshold": "10"}
BERLIN = "Europe/Berlin"


def _policies() -> list[Policy]:
    windows = [
        {"timezone": BERLIN, "start": "0 8 * * *", "end": "0 20 * * *", "desiredReplicas": "2"},
        {
            "timezone": BERLIN,
            "start": "30 11 * * *",
            "end": "0 14 * * *",
            "desiredReplicas": "5",
            "maxReplicas": "8",
        },
        {"timezone": BERLIN, "start": "0 19 * * *", "end": "0 23 * * *", "maxReplicas": "4"},
        {
            "timezone": "America/New_York",
            "start": "0 22 * * *",
            "end": "0 3 * * *",
            "desiredReplicas": "0",
            "maxReplicas": "6",
        },
        {"timezone": BERLIN, "start": "15 1 * * *", "end": "45 3 * * *", "desiredReplicas": "3"},
    ]
    return [
        # A cron trigger alone (0 outside its window, as KEDA's cron scaler).
        parse_policy(
            {"timezone": BERLIN, "start": "0 8 * * *", "end": "0 20 * * *", "desiredReplicas": "3"}
        ),
        parse_policy(QUERY | {"schedules": json.dumps(windows[:1])}),
        parse_policy(QUERY | {"schedules": json.dumps(windows[1:3]), "maxReplicas": "7"}),
        parse_policy(QUERY | {"schedules": json.dumps(windows), "minReplicas": "1"}),
    ]


def _day(year: int, month: int, day: int, step: float = 300.0) -> list[float]:
    start = datetime(year, month, day, tzinfo=UTC).timestamp()
    return [start + i * step for i in range(int(86400 / step))]


def _expected_cron(policy: Policy, now: float) -> tuple[int, int | None]:
    active = [window for window in policy.windows if window.is_active(now)]
    floor = max((w.desired_replicas or 0 for w in active), default=0)
    ceilings = [w.max_replicas for w in active if w.max_replicas is not None]
    return floor, min(ceilings) if ceilings else None


# An ordinary Wednesday, and the night Berlin moves its clocks forward (01:15-03:45
# local does not fully exist).
@pytest.mark.parametrize("day", [(2026, 11, 18), (2026, 3, 29)])
def test_decisions_equal_with_and_without_the_cron_lookup(day: tuple[int, int, int]) -> None:
    policies = _policies()
    demands = [0.0, 35.0, 200.0]
    calls = [
        (policy, Observations(demand=Sample(demands[i % len(demands)], now - 5)), now)
        for now in _day(*day)
        for i, policy in enumerate(policies)
    ]
    engine._CRON_PARTS.clear()
    warm = [decide(policy, observations, now, SETTINGS) for policy, observations, now in calls]
    for (policy, observations, now), decision in zip(calls, warm, strict=True):
        engine._CRON_PARTS.clear()
        assert decide(policy, observations, now, SETTINGS) == decision, (policy, now)
        cron = decision.signal(Signal.CRON)
        assert cron is not None
        floor, ceiling = _expected_cron(policy, now)
        assert cron.replicas == floor
        assert cron.detail == ("" if ceiling is None else f"ceiling {ceiling}")
        state = SignalStatus.OK if floor > 0 or ceiling is not None else SignalStatus.INACTIVE
        assert cron.status is state


def test_the_cron_reading_is_shared_while_the_windows_stay_as_they_are() -> None:
    policy = _policies()[3]
    observations = Observations(demand=Sample(35.0, 0.0))
    day = _day(2026, 11, 18)
    readings = [
        decide(policy, observations, now, SETTINGS).signal(Signal.CRON) for now in day[48:60]
    ]
    # 04:00-05:00 UTC: the same windows are active throughout, so one reading serves all.
    assert all(reading is readings[0] for reading in readings)
    afternoon = decide(policy, observations, day[150], SETTINGS).signal(Signal.CRON)
    assert afternoon is not readings[0] and afternoon != readings[0]


def test_the_cron_lookup_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_CRON_PARTS_MAX", 8)
    engine._CRON_PARTS.clear()
    observations = Observations(demand=Sample(35.0, 0.0))
    now = _day(2026, 11, 18)[150]
    for _ in range(20):
        policy = _policies()[1]  # a new policy every time, as when policies change
        decision = decide(policy, observations, now, SETTINGS)
        assert 1 <= len(engine._CRON_PARTS) <= 8
        engine._CRON_PARTS.clear()
        assert decide(policy, observations, now, SETTINGS) == decision
