"""`holds_until`: how long a decision stays the decision when nothing new is observed.

The server answers a repeated call (KEDA asks GetMetrics, then IsActive, for the same
ScaledObject within milliseconds) with the decision it made, as long as the
observations are the same ones and the clock has not reached `holds_until`. So the
bound must be sound (every instant before it decides the same) and tight enough to
be worth having (it is the first instant something can change, not a guess).
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scaler.engine import (
    EngineSettings,
    Observations,
    ResourceSample,
    Sample,
    decide,
    holds_until,
)
from scaler.forecast.types import Forecast
from scaler.policy import PolicyError, parse_policy
from scaler.replica_calculator import PodListing, PodState

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC, a Tuesday
SETTINGS = EngineSettings(polling_interval_seconds=30, staleness_seconds=120)
SELECTOR = 'namespace="shop"'


def _pods(count: int, observed_at: float) -> tuple[PodState, ...]:
    return tuple(
        PodState(f"shop/web-{i}", 1.0, True, observed_at - 3600, observed_at - 3500)
        for i in range(count)
    )


windows = st.lists(
    st.fixed_dictionaries(
        {
            "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
            "start": st.builds("{} {} * * *".format, st.integers(0, 59), st.integers(0, 23)),
            "end": st.builds("{} {} * * *".format, st.integers(0, 59), st.integers(0, 23)),
            "desiredReplicas": st.integers(0, 5).map(str),
        }
    ),
    max_size=2,
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, str], Observations]:
    metadata: dict[str, str] = {}
    chosen = draw(windows)
    if chosen:
        metadata["schedules"] = json.dumps(chosen)
    observations: dict[str, object] = {}
    if draw(st.booleans()) or not chosen:
        metadata |= {"query": "sum(rate(requests_total[1m]))", "threshold": "100"}
        if draw(st.booleans()):
            observed_at = NOW + draw(st.floats(-400, 400))
            observations["demand"] = Sample(draw(st.floats(0, 5000)), observed_at)
        mode = draw(st.sampled_from(["off", "on", "observe"]))
        metadata |= {"forecast": mode, "podStartupSeconds": str(draw(st.integers(0, 900)))}
        if mode != "off" and draw(st.booleans()):
            step = draw(st.sampled_from([1.0, 60.0, 300.0, 3600.0]))
            length = draw(st.integers(1, 200))
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            median = rng.uniform(0, 3000, length)
            observations["forecast"] = Forecast(
                NOW + draw(st.floats(-3 * 3600, 3600)),
                step,
                median,
                median * rng.uniform(1.0, 1.5, length),
                0.95,
                "test",
                NOW - 60,
            )
    if draw(st.booleans()):
        metadata |= {"cpuUtilization": "60", "podSelector": SELECTOR}
        if draw(st.booleans()):
            observed_at = NOW + draw(st.floats(-400, 400))
            count = draw(st.integers(1, 4))
            usage = {f"shop/web-{i}": draw(st.floats(0, 2)) for i in range(count)}
            observations["cpu"] = ResourceSample(_pods(count, observed_at), usage, observed_at)
        if draw(st.booleans()):
            observed_at = NOW + draw(st.floats(-400, 400))
            observations["cpu_listing"] = PodListing(_pods(2, observed_at), observed_at)
    return metadata, Observations(**observations)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(cases(), st.floats(0.0, 1.0, exclude_max=True), st.booleans())
def test_every_instant_before_the_bound_decides_the_same(
    case: tuple[dict[str, str], Observations], share: float, near_the_bound: bool
) -> None:
    metadata, observations = case
    try:
        policy = parse_policy(metadata)
    except PolicyError:  # a window that starts and ends at the same minute
        assume(False)
        raise
    until = holds_until(policy, observations, NOW, SETTINGS)
    if until <= NOW:
        return
    span = min(until - NOW, 3 * 86400.0)
    # Anywhere before the bound, or within its last second, where a late bound would show.
    later = NOW + (span - share * min(span, 1.0) if near_the_bound else share * span)
    assert decide(policy, observations, later, SETTINGS) == decide(
        policy, observations, NOW, SETTINGS
    )


def test_a_window_holds_until_it_opens_and_no_longer() -> None:
    window = {"timezone": "UTC", "start": "0 23 * * *", "end": "0 1 * * *", "desiredReplicas": "3"}
    policy = parse_policy({"schedules": json.dumps([window])})
    opens = 1_700_002_800.0  # 23:00 UTC that day
    until = holds_until(policy, Observations(), NOW, SETTINGS)
    assert opens - 0.01 < until <= opens
    assert decide(policy, Observations(), until - 1, SETTINGS).desired_replicas == 0
    assert decide(policy, Observations(), opens + 1, SETTINGS).desired_replicas == 3


def test_a_reading_holds_until_it_goes_stale() -> None:
    policy = parse_policy({"query": "q", "threshold": "10"})
    observations = Observations(demand=Sample(95.0, NOW - 100))
    until = holds_until(policy, observations, NOW, SETTINGS)
    assert NOW + 19.99 < until <= NOW + 20
    assert decide(policy, observations, NOW + 19.9, SETTINGS).desired_replicas == 10
    assert not decide(policy, observations, NOW + 20.1, SETTINGS).available
    # Already stale: it stays stale, so nothing bounds the (unavailable) decision.
    assert holds_until(policy, Observations(demand=Sample(95.0, NOW - 500)), NOW, SETTINGS) > 1e300


def test_a_forecast_holds_until_the_lead_window_moves_on_its_grid() -> None:
    policy = parse_policy(
        {"query": "q", "threshold": "10", "forecast": "on", "podStartupSeconds": "90"}
    )
    # Lead: 90 s start-up + 30 s polling + 30 s metric lag (the default) = 150 s; a point
    # every 60 s from NOW on, rising, so the band's peak moves with the lead window's end.
    rising = np.arange(100, dtype=float) * 10
    forecast = Forecast(NOW, 60.0, rising, rising + 5, 0.95, "test", NOW - 60)
    observations = Observations(demand=Sample(100.0, NOW), forecast=forecast)
    until = holds_until(policy, observations, NOW, SETTINGS)
    # now + 150 reaches the next point (NOW + 3 * 60) at NOW + 30.
    assert NOW + 29.99 < until <= NOW + 30
    assert decide(policy, observations, NOW + 31, SETTINGS) != decide(
        policy, observations, NOW, SETTINGS
    )
