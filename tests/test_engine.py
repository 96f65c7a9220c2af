"""decide(): table cases in the style of the HPA replica calculator, and invariants."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from synthetic_series import business_hours

from scaler.engine import (
    Decision,
    EngineSettings,
    Observations,
    Reason,
    ResourceSample,
    Sample,
    Signal,
    SignalStatus,
    decide,
)
from scaler.forecast.forecaster import fit
from scaler.forecast.types import Forecast
from scaler.policy import parse_policy
from scaler.replica_calculator import PodListing, PodState

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC, a Tuesday
SETTINGS = EngineSettings(polling_interval_seconds=30, staleness_seconds=120)
QUERY = {"query": "sum(rate(requests_total[1m]))", "threshold": "100"}
# 22:00-23:00 UTC contains NOW; 06:00-07:00 UTC does not.
WINDOW_NOW = {"timezone": "UTC", "start": "0 22 * * *", "end": "0 23 * * *"}
WINDOW_LATER = {"timezone": "UTC", "start": "0 6 * * *", "end": "0 7 * * *"}


def schedules(*windows: dict[str, object]) -> str:
    import json

    return json.dumps(list(windows))


def demand(value: float, age: float = 0.0, error: str | None = None) -> Sample:
    return Sample(value, NOW - age, error)


def pods(
    usage: list[float | None],
    request: float = 1.0,
    age: float = 0.0,
    error: str | None = None,
) -> ResourceSample:
    """Pods web-0, web-1, ... requesting `request` each, ready for an hour, with `usage`
    (None: no usage series for that pod)."""
    states = tuple(
        PodState(f"shop/web-{i}", request, True, NOW - 3600, NOW - 3500) for i in range(len(usage))
    )
    used = {f"shop/web-{i}": value for i, value in enumerate(usage) if value is not None}
    return ResourceSample(states, used, NOW - age, 120.0, error)


def band(
    median: float | list[float],
    upper: float | list[float],
    step: float = 60.0,
    last_value_band: tuple[tuple[float, float], ...] = (),
    noise: float = 0.0,
) -> Forecast:
    """A forecast starting at NOW covering 2 hours at `step` seconds (median noise `noise`)."""
    n = int(7200 / step)
    med = np.full(n, median, dtype=float) if np.isscalar(median) else np.asarray(median, float)
    up = np.full(n, upper, dtype=float) if np.isscalar(upper) else np.asarray(upper, float)
    return Forecast(
        NOW,
        step,
        med,
        up,
        0.95,
        "test",
        NOW - 60,
        last_value_band=last_value_band,
        median_noise=noise,
    )


@dataclass
class Case:
    metadata: dict[str, str]
    observations: Observations
    desired: int
    reason: Reason
    active: bool
    statuses: dict[Signal, SignalStatus] = field(default_factory=dict)


CASES = {
    "query-rounds-up": Case(QUERY, Observations(demand=demand(250)), 3, Reason.QUERY, True),
    "query-exact-multiple-no-float-noise": Case(
        QUERY | {"threshold": "0.1"}, Observations(demand=demand(0.3)), 3, Reason.QUERY, True
    ),
    "zero-demand-inactive": Case(QUERY, Observations(demand=demand(0)), 0, Reason.QUERY, False),
    "negative-demand-is-zero": Case(QUERY, Observations(demand=demand(-5)), 0, Reason.QUERY, False),
    "min-replicas-floor": Case(
        QUERY | {"minReplicas": "2"}, Observations(demand=demand(50)), 2, Reason.MIN_REPLICAS, True
    ),
    "below-activation-threshold": Case(
        QUERY | {"activationThreshold": "10"},
        Observations(demand=demand(5)),
        1,
        Reason.QUERY,
        False,
    ),
    "max-replicas-clamps": Case(
        QUERY | {"maxReplicas": "4"},
        Observations(demand=demand(1000)),
        4,
        Reason.MAX_REPLICAS,
        True,
    ),
    "cron-floor-wins": Case(
        QUERY | {"schedules": schedules(WINDOW_NOW | {"desiredReplicas": 5})},
        Observations(demand=demand(100)),
        5,
        Reason.CRON,
        True,
        {Signal.CRON: SignalStatus.OK},
    ),
    "cron-floor-outside-window": Case(
        QUERY | {"schedules": schedules(WINDOW_LATER | {"desiredReplicas": 5})},
        Observations(demand=demand(100)),
        1,
        Reason.QUERY,
        True,
        {Signal.CRON: SignalStatus.INACTIVE},
    ),
    "cron-ceiling-in-window": Case(
        QUERY | {"schedules": schedules(WINDOW_NOW | {"maxReplicas": 3}), "maxReplicas": "20"},
        Observations(demand=demand(1000)),
        3,
        Reason.WINDOW_CEILING,
        True,
    ),
    "keda-cron-only-inside": Case(
        WINDOW_NOW | {"desiredReplicas": "7"}, Observations(), 7, Reason.CRON, True
    ),
    # KEDA's cron scaler (>= 2.18) reports 0 outside its window and is inactive: parity.
    "keda-cron-only-outside": Case(
        WINDOW_LATER | {"desiredReplicas": "7"}, Observations(), 0, Reason.CRON, False
    ),
    "cpu-hpa-arithmetic": Case(
        # 4 pods at 100 % of their request, target 50 %: ratio 2, ceil(2 x 4) = 8
        {"cpuUtilization": "50", "podSelector": 'namespace="shop"'},
        Observations(cpu=pods([0.5] * 4, request=0.5)),
        8,
        Reason.CPU,
        True,
    ),
    "cpu-within-tolerance-keeps-the-count": Case(
        # 71 % against 70 %: ratio 1.014, inside the HPA's tolerance of 0.1 -> 1, not 2
        {"cpuUtilization": "70", "podSelector": 'namespace="shop"'},
        Observations(cpu=pods([0.71])),
        1,
        Reason.CPU,
        True,
    ),
    "cpu-missing-pods-do-not-lower": Case(
        # 10 pods, 5 report half their request, target 70 %: the HPA counts the silent
        # pods at 100 % on a scale-down, 75 % / 70 % is within tolerance -> 10, not 4
        {"cpuUtilization": "70", "podSelector": 'namespace="shop"'},
        Observations(cpu=pods([0.5] * 5 + [None] * 5)),
        10,
        Reason.CPU,
        True,
    ),
    "cpu-unready-pod-at-zero-on-scale-up": Case(
        # web-2 just started and is not ready: 0 % on a scale-up. 2 pods at 200 % of a
        # 50 % target say 8; with the third at 0 %: 400 / 3 = 133 % -> ceil(2.66 x 3) = 8,
        # and a third pod using as much would say 12.
        {"cpuUtilization": "50", "podSelector": 'namespace="shop"'},
        Observations(
            cpu=ResourceSample(
                (
                    *pods([2.0, 2.0]).pods,
                    PodState("shop/web-2", 1.0, False, NOW - 20, NOW - 20),
                ),
                {"shop/web-0": 2.0, "shop/web-1": 2.0, "shop/web-2": 2.0},
                NOW,
                120.0,
            )
        ),
        8,
        Reason.CPU,
        True,
    ),
    "cpu-pods-whose-requests-vanished-still-count": Case(
        # 4 pods at the 50 % target, but kube-state-metrics lists only 2 of them: the
        # other two still run (they report usage), so the count stays 4, not 2.
        {"cpuUtilization": "50", "podSelector": 'namespace="shop"'},
        Observations(
            cpu=ResourceSample(
                pods([0.5, 0.5]).pods,
                {f"shop/web-{i}": 0.5 for i in range(4)},
                NOW,
                120.0,
            )
        ),
        4,
        Reason.CPU,
        True,
    ),
    "resource-only-never-deactivates": Case(
        {"memoryUtilization": "80", "podSelector": 'namespace="shop"'},
        Observations(memory=pods([0.0], request=2**30)),
        0,
        Reason.MEMORY,
        True,
    ),
    "max-of-query-and-cpu": Case(
        QUERY | {"cpuUtilization": "50", "podSelector": 'pod=~"web-.*"'},
        Observations(demand=demand(250), cpu=pods([2.0, 2.0])),
        8,
        Reason.CPU,
        True,
    ),
    "backend-down-holds-last-good": Case(
        QUERY,
        Observations(
            demand=demand(250, age=100, error="connection refused"),
            errors={"query": "connection refused"},
        ),
        3,
        Reason.QUERY,
        True,
        {Signal.QUERY: SignalStatus.HELD},
    ),
    "forecast-floor-holds-the-band-peak": Case(
        QUERY | {"forecast": "on", "forecastAction": "floor"},
        Observations(demand=demand(100), forecast=band(300, 420)),
        5,
        Reason.FORECAST,
        True,
        {Signal.FORECAST: SignalStatus.OK},
    ),
    "forecast-ramp-on-a-flat-forecast-is-reactive": Case(
        QUERY | {"forecast": "on"},
        Observations(demand=demand(100), forecast=band(300, 420)),
        1,
        Reason.QUERY,
        True,
        {Signal.FORECAST: SignalStatus.OK},
    ),
    "forecast-ramp-adds-the-rise-predicted-within-the-lead": Case(
        QUERY | {"forecast": "on"},
        # The median climbs from 200 to 400 in the minute starting at NOW + 60 s (within
        # 60 s start-up + 30 s polling): capacity for 250 observed + 200 predicted.
        Observations(demand=demand(250), forecast=band([200.0] + [400.0] * 119, 500)),
        5,
        Reason.FORECAST,
        True,
    ),
    "forecast-ramp-ignores-a-rise-within-the-median-noise": Case(
        # 100 -> 140 is less than twice the median's noise (25): no rise, the reactive 1
        # (counted, 140 would ask for 2).
        QUERY | {"forecast": "on"},
        Observations(demand=demand(100), forecast=band([100.0] + [140.0] * 119, 300, noise=25)),
        1,
        Reason.QUERY,
        True,
    ),
    "forecast-ramp-adds-only-the-rise-beyond-the-median-noise": Case(
        # 200 -> 400 with noise 25: 150 of the rise counts, 250 + 150 -> 4 (not 5).
        QUERY | {"forecast": "on"},
        Observations(demand=demand(250), forecast=band([200.0] + [400.0] * 119, 500, noise=25)),
        4,
        Reason.FORECAST,
        True,
    ),
    "forecast-ramp-counts-the-rise-from-demand-that-ran-ahead-of-the-band": Case(
        # A predicted jump (200 -> 700, beyond the band's width now) that came a minute
        # early: 600 observed is above the band now (upper 300), so only the 100 still to
        # come is added (700 -> 7), not the whole predicted rise again (600 + 500 -> 11).
        QUERY | {"forecast": "on"},
        Observations(
            demand=demand(600), forecast=band([200.0] + [700.0] * 119, [300.0] + [800.0] * 119)
        ),
        7,
        Reason.FORECAST,
        True,
    ),
    "forecast-ramp-adds-a-gentle-rise-in-full-above-the-band": Case(
        # A rise within the band's width (200 -> 250, band 100 wide) is a tide, not a jump:
        # demand above the band (400) still gets all of it (450 -> 5).
        QUERY | {"forecast": "on"},
        Observations(
            demand=demand(400), forecast=band([200.0] + [250.0] * 119, [300.0] + [350.0] * 119)
        ),
        5,
        Reason.FORECAST,
        True,
    ),
    "forecast-ramp-ignores-a-predicted-fall": Case(
        QUERY | {"forecast": "on"},
        Observations(demand=demand(250), forecast=band([400.0] + [100.0] * 119, 500)),
        3,
        Reason.QUERY,
        True,
    ),
    "forecast-ramp-ignores-a-rise-beyond-the-lead": Case(
        # lead 60 s start-up + 30 s polling + 60 s lag ([1m] rate: 30 s + half of 60 s);
        # the rise starts at 180 s.
        QUERY | {"forecast": "on"},
        Observations(demand=demand(250), forecast=band([200.0] * 3 + [900.0] * 117, 1000)),
        3,
        Reason.QUERY,
        True,
    ),
    "forecast-ramp-looks-ahead-by-the-metric-lag-too": Case(
        # The rise at 120 s is within start-up + polling + lag (150 s): 250 + 700 -> 10.
        QUERY | {"forecast": "on"},
        Observations(demand=demand(250), forecast=band([200.0] * 2 + [900.0] * 118, 1000)),
        10,
        Reason.FORECAST,
        True,
    ),
    "forecast-ramp-without-lag-ignores-the-rise-past-start-up-and-polling": Case(
        QUERY | {"forecast": "on", "metricLagSeconds": "0"},
        Observations(demand=demand(250), forecast=band([200.0] * 2 + [900.0] * 118, 1000)),
        3,
        Reason.QUERY,
        True,
    ),
    "forecast-auto-takes-the-band-where-it-is-sharper-than-the-last-value": Case(
        # The observed demand would need +80 % to cover the next 90 s at the quantile;
        # the band needs only 330: capacity for 330.
        QUERY | {"forecast": "on", "forecastAction": "auto"},
        Observations(
            demand=demand(250), forecast=band(300, 330, last_value_band=((60, 0.8), (120, 0.8)))
        ),
        4,
        Reason.FORECAST,
        True,
    ),
    "forecast-auto-never-asks-more-than-the-last-value-needs": Case(
        # A wide band (900) against +10 % for the observed demand: 275, as reactive.
        QUERY | {"forecast": "on", "forecastAction": "auto"},
        Observations(
            demand=demand(250), forecast=band(300, 900, last_value_band=((60, 0.1), (120, 0.1)))
        ),
        3,
        Reason.QUERY,
        True,
    ),
    "forecast-auto-without-a-last-value-band-is-ramp": Case(
        QUERY | {"forecast": "on", "forecastAction": "auto"},
        Observations(demand=demand(250), forecast=band(300, 900)),
        3,
        Reason.QUERY,
        True,
    ),
    "forecast-of-an-idle-night-lets-the-workload-scale-to-zero": Case(
        QUERY | {"forecast": "on"},
        Observations(demand=demand(0), forecast=band(0, 0)),
        0,
        Reason.QUERY,
        False,
        {Signal.FORECAST: SignalStatus.OK},
    ),
    "forecast-wakes-the-workload-a-lead-time-before-the-morning": Case(
        QUERY | {"forecast": "on"},
        Observations(demand=demand(0), forecast=band([0.0] + [150.0] * 119, [0.0] + [200.0] * 119)),
        2,
        Reason.FORECAST,
        True,
    ),
    "forecast-observe-never-acts": Case(
        QUERY | {"forecast": "observe"},
        Observations(demand=demand(100), forecast=band(300, 420)),
        1,
        Reason.QUERY,
        True,
        {Signal.FORECAST: SignalStatus.OBSERVE},
    ),
    "forecast-rise-beyond-lead-does-not-wake": Case(
        QUERY | {"forecast": "on"},
        Observations(demand=demand(0), forecast=band(0, [0.0] * 60 + [50.0] * 60)),
        0,
        Reason.QUERY,
        False,  # the band rises after the lead time (60 s start-up + 30 s polling): not yet
    ),
    "forecast-stands-in-for-stale-demand": Case(
        QUERY | {"forecast": "on"},
        Observations(
            demand=demand(900, age=600), forecast=band(150, 180), errors={"query": "timeout"}
        ),
        2,
        Reason.FORECAST,
        True,
        {Signal.QUERY: SignalStatus.FORECAST_FALLBACK},
    ),
    "no-forecast-reactive-unchanged": Case(
        QUERY | {"forecast": "on"},
        Observations(demand=demand(250), forecast_problem="too little history (2h of 1d)"),
        3,
        Reason.QUERY,
        True,
        {Signal.FORECAST: SignalStatus.NO_FORECAST},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decision_table(case: Case) -> None:
    decision = decide(parse_policy(case.metadata), case.observations, NOW, SETTINGS)
    assert decision.available, decision.detail
    assert (decision.desired_replicas, decision.reason, decision.active) == (
        case.desired,
        case.reason,
        case.active,
    )
    for signal, status in case.statuses.items():
        reading = decision.signal(signal)
        assert reading is not None and reading.status is status, decision.signals


def test_lead_window_reaches_forecast_peak_that_starts_within_lead() -> None:
    # The peak starts 80 s ahead: within 60 s start-up + 30 s polling, so it counts.
    upper = [10.0] * 120
    upper[1] = 999.0  # the minute starting at NOW + 60 s
    decision = decide(
        parse_policy(QUERY | {"forecast": "on", "forecastAction": "floor"}),
        Observations(demand=demand(0), forecast=band(0, upper)),
        NOW + 20,
        SETTINGS,
    )
    assert decision.desired_replicas == 10 and decision.active
    assert decision.forecast_upper == 999.0


@pytest.mark.parametrize(
    ("action", "median", "active"),
    [
        ("ramp", 0.0, False),  # stray requests: a band over a median of 0
        ("ramp", 0.5, True),  # demand expected within the lead time (KEDA: one pod)
        ("floor", 0.0, True),  # the band is the floor: active with it
    ],
)
def test_a_band_alone_over_a_median_of_zero_keeps_a_ramp_inactive(
    action: str, median: float, active: bool
) -> None:
    """A valley of a few stray requests an hour has a band never quite 0: the workload was
    held active (one pod) all night where reactive KEDA releases it."""
    decision = decide(
        parse_policy(QUERY | {"forecast": "on", "forecastAction": action}),
        Observations(demand=demand(0), forecast=band(median, 2.0)),
        NOW + 20,
        SETTINGS,
    )
    assert decision.active is active
    assert decision.forecast_upper == 2.0


def test_idle_nights_scale_to_zero_and_wake_a_lead_time_before_the_morning() -> None:
    # A real forecast of a workload with exactly zero traffic every night, fitted at 01:00.
    midnight = 1_704_067_200.0  # 2024-01-01T00:00:00Z
    y = business_hours(9, midnight)
    fitted_until = 7 * 1440 + 60
    fitted = fit(y[:fitted_until], 60.0, quantile=0.95, now=midnight + fitted_until * 60.0)
    forecast = fitted.forecast(6 * 3600)
    policy = parse_policy(QUERY | {"forecast": "on"})
    lead = 60 + SETTINGS.polling_interval_seconds  # podStartupSeconds defaults to 60
    polls = fitted.now + 30.0 * np.arange(6 * 120)
    demand_at = [float(y[int((t - midnight) // 60)]) for t in polls]
    decisions = [
        decide(policy, Observations(demand=Sample(d, t), forecast=forecast), t, SETTINGS)
        for t, d in zip(polls, demand_at, strict=True)
    ]
    first_demand = polls[next(i for i, d in enumerate(demand_at) if d > 0)]
    first_active = polls[next(i for i, dec in enumerate(decisions) if dec.active)]
    night = [dec for t, dec in zip(polls, decisions, strict=True) if t < fitted.now + 3 * 3600]
    assert all(not dec.active and dec.desired_replicas == 0 for dec in night)
    assert first_active <= first_demand - lead
    assert first_active >= first_demand - 3600  # not hours early either


def test_stale_demand_without_forecast_is_unavailable() -> None:
    decision = decide(
        parse_policy(QUERY),
        Observations(demand=demand(250, age=121, error="timeout"), errors={"query": "timeout"}),
        NOW,
        SETTINGS,
    )
    assert not decision.available
    assert decision.reason is Reason.UNAVAILABLE
    assert "timeout" in decision.detail


@pytest.mark.parametrize(("age", "available"), [(-30, True), (-120, True), (-3600, False)])
def test_demand_from_the_future_counts_only_within_the_staleness_bound(
    age: float, available: bool
) -> None:
    """A clock stepped back (NTP) makes the last good value look younger than zero: held
    as fresh until the clock caught up, it would stand for the size of the step."""
    decision = decide(
        parse_policy(QUERY),
        Observations(demand=demand(250, age=age, error="timeout"), errors={"query": "timeout"}),
        NOW,
        SETTINGS,
    )
    assert decision.available is available


def test_observe_mode_forecast_does_not_stand_in_for_stale_demand() -> None:
    decision = decide(
        parse_policy(QUERY | {"forecast": "observe"}),
        Observations(
            demand=demand(900, age=600), forecast=band(150, 180), errors={"query": "timeout"}
        ),
        NOW,
        SETTINGS,
    )
    assert not decision.available
    assert decision.forecast_upper == 180  # still computed and exported


def test_never_observed_is_unavailable() -> None:
    decision = decide(parse_policy(QUERY), Observations(), NOW, SETTINGS)
    assert not decision.available and "no demand observed yet" in decision.detail


def test_every_decision_records_each_signal() -> None:
    metadata = QUERY | {
        "cpuUtilization": "50",
        "memoryUtilization": "80",
        "podSelector": 'namespace="a"',
        "forecast": "observe",
        "schedules": schedules(WINDOW_NOW | {"desiredReplicas": 2}),
    }
    decision = decide(
        parse_policy(metadata),
        Observations(
            demand=demand(250),
            cpu=pods([1.0]),
            memory=pods([3e9], request=1e9),
            forecast=band(1, 2),
        ),
        NOW,
        SETTINGS,
    )
    assert {r.signal for r in decision.signals} == set(Signal)
    assert decision.signal(Signal.QUERY).replicas == 3  # type: ignore[union-attr]
    assert decision.signal(Signal.CPU).replicas == 2  # type: ignore[union-attr]
    assert decision.signal(Signal.MEMORY).replicas == 4  # type: ignore[union-attr]
    assert decision.desired_replicas == 4 and decision.reason is Reason.MEMORY


# -- invariants ------------------------------------------------------------------

bounds = st.tuples(st.integers(0, 20), st.integers(0, 80)).map(lambda t: (t[0], t[0] + t[1] + 1))
demands = st.floats(min_value=0, max_value=1e6, allow_nan=False)
thresholds = st.floats(min_value=0.01, max_value=1e4, allow_nan=False)


def _decide(min_r: int, max_r: int, threshold: float, value: float, **extra: str) -> Decision:
    metadata = {
        "query": "q",
        "threshold": repr(threshold),
        "minReplicas": str(min_r),
        "maxReplicas": str(max_r),
    } | extra
    return decide(parse_policy(metadata), Observations(demand=demand(value)), NOW, SETTINGS)


@given(bounds, thresholds, demands)
def test_bounds_always_hold(limits: tuple[int, int], threshold: float, value: float) -> None:
    decision = _decide(*limits, threshold, value)
    assert limits[0] <= decision.desired_replicas <= limits[1]


@given(bounds, thresholds, demands, demands)
def test_more_demand_never_gives_fewer_replicas(
    limits: tuple[int, int], threshold: float, a: float, b: float
) -> None:
    low, high = sorted((a, b))
    assert (
        _decide(*limits, threshold, low).desired_replicas
        <= _decide(*limits, threshold, high).desired_replicas
    )


@given(bounds, thresholds, demands, st.floats(min_value=0, max_value=120))
def test_missing_data_never_lowers_replicas(
    limits: tuple[int, int], threshold: float, value: float, later: float
) -> None:
    policy = parse_policy(
        {
            "query": "q",
            "threshold": repr(threshold),
            "minReplicas": str(limits[0]),
            "maxReplicas": str(limits[1]),
        }
    )
    fresh = decide(policy, Observations(demand=Sample(value, NOW)), NOW, SETTINGS)
    held = decide(
        policy,
        Observations(
            demand=Sample(value, NOW, "connection refused"), errors={"query": "connection refused"}
        ),
        NOW + later,
        SETTINGS,
    )
    assert held.available
    assert held.desired_replicas >= fresh.desired_replicas


# -- resource signals: held readings and invariants -----------------------------------

CPU_ONLY = {"cpuUtilization": "50", "podSelector": 'namespace="shop"'}


def test_a_vanished_resource_reading_is_held_until_stale() -> None:
    policy = parse_policy(CPU_ONLY)
    error = "no cpu usage series for the selected pods"
    held = decide(
        policy,
        Observations(cpu=pods([1.0] * 3, age=100, error=error), errors={"cpu": error}),
        NOW,
        SETTINGS,
    )
    reading = held.signal(Signal.CPU)
    assert held.available and held.desired_replicas == 6  # 200 % of 50 % x 3 pods
    assert reading is not None and reading.status is SignalStatus.HELD
    assert error in reading.detail

    stale = decide(
        policy,
        Observations(cpu=pods([1.0] * 3, age=121, error=error), errors={"cpu": error}),
        NOW,
        SETTINGS,
    )
    assert not stale.available and error in stale.detail


QUERY_AND_CPU = QUERY | {"cpuUtilization": "70", "podSelector": 'namespace="shop"'}
NO_CPU = "no cpu usage series for the selected pods (0 with a request series)"


def listed(count: int, age: float = 0.0) -> PodListing:
    """`count` pods that exist (a request series each) without any usage yet."""
    states = tuple(PodState(f"shop/web-{i}", 1.0, False, NOW - 20, None) for i in range(count))
    return PodListing(states, NOW - age)


@pytest.mark.parametrize(("level", "active"), [(250, True), (0, False)])
def test_at_zero_pods_cpu_beside_a_query_never_hides_activity(level: float, active: bool) -> None:
    """At zero pods there is no usage to measure: the count is unavailable, but the
    query alone decides activity (resource signals never deactivate beside a query), so
    the workload wakes when demand comes back and stays asleep while it does not."""
    decision = decide(
        parse_policy(QUERY_AND_CPU | {"activationThreshold": "1"}),
        Observations(demand=demand(level), errors={"cpu": NO_CPU}),
        NOW,
        SETTINGS,
    )
    assert not decision.available and "cpu: " in decision.detail
    assert decision.active_known and decision.active is active


def test_an_active_window_keeps_a_workload_active_when_its_demand_is_unknown() -> None:
    down = Observations(errors={"query": "connection refused"})
    policy = parse_policy(QUERY | {"schedules": schedules(WINDOW_NOW | {"desiredReplicas": 4})})
    decision = decide(policy, down, NOW, SETTINGS)
    assert not decision.available  # a count of 4 could lower a workload at 30
    assert decision.active_known and decision.active
    # Outside the window nothing says active, and the demand might: unknown.
    later = parse_policy(QUERY | {"schedules": schedules(WINDOW_LATER | {"desiredReplicas": 4})})
    outside = decide(later, down, NOW, SETTINGS)
    assert not outside.available and not outside.active_known and not outside.active


@pytest.mark.parametrize(
    ("level", "desired", "reason"), [(2950, 30, Reason.QUERY), (0, 2, Reason.CPU)]
)
def test_pods_without_usage_hold_their_count_as_the_hpa_does(
    level: float, desired: int, reason: Reason
) -> None:
    """Two pods just started, their usage not scraped yet: the HPA cannot compute CPU, so
    it scales up by the other metrics and never down; the CPU signal holds the count."""
    decision = decide(
        parse_policy(QUERY_AND_CPU),
        Observations(demand=demand(level), cpu_listing=listed(2), errors={"cpu": NO_CPU}),
        NOW,
        SETTINGS,
    )
    assert decision.available, decision.detail
    assert decision.desired_replicas == desired and decision.reason is reason
    reading = decision.signal(Signal.CPU)
    assert reading is not None and reading.status is SignalStatus.HELD
    assert reading.replicas == 2 and "no cpu usage for the 2 current pod(s)" in reading.detail


def test_a_held_reading_beats_the_listing_and_a_stale_listing_is_no_observation() -> None:
    policy = parse_policy(CPU_ONLY)
    held = decide(
        policy,
        Observations(cpu=pods([1.0] * 3, age=100, error=NO_CPU), cpu_listing=listed(1)),
        NOW,
        SETTINGS,
    )
    assert held.available and held.desired_replicas == 6  # the held 200 % of 50 % x 3 pods
    stale = decide(policy, Observations(cpu_listing=listed(1, age=121)), NOW, SETTINGS)
    assert not stale.available


def test_a_listing_of_pods_that_all_go_away_is_no_count_to_hold() -> None:
    """Terminating or finished pods are no replicas: a listing of only those would have
    recommended 0, and scaled the workload down on missing data."""
    going = tuple(
        PodState(f"shop/web-{i}", 1.0, True, NOW - 3600, NOW - 3500, deleting=True)
        for i in range(5)
    )
    decision = decide(
        parse_policy(CPU_ONLY),
        Observations(cpu_listing=PodListing(going, NOW), errors={"cpu": NO_CPU}),
        NOW,
        SETTINGS,
    )
    assert not decision.available and decision.reason is Reason.UNAVAILABLE


cpu_levels = st.lists(st.one_of(st.none(), st.floats(0, 4)), min_size=1, max_size=10)


@given(cpu_levels, st.integers(10, 200), st.floats(0, 4), st.integers(0, 9))
def test_more_cpu_usage_never_gives_fewer_replicas(
    levels: list[float | None], target: int, extra: float, which: int
) -> None:
    policy = parse_policy(CPU_ONLY | {"cpuUtilization": str(target)})
    more = list(levels)
    index = which % len(levels)
    more[index] = None if levels[index] is None else levels[index] + extra  # type: ignore[operator]
    before = decide(policy, Observations(cpu=pods(levels)), NOW, SETTINGS)
    after = decide(policy, Observations(cpu=pods(more)), NOW, SETTINGS)
    assert after.desired_replicas >= before.desired_replicas


@given(cpu_levels, st.integers(10, 200), st.floats(min_value=0, max_value=120))
def test_missing_resource_data_never_lowers_replicas(
    levels: list[float | None], target: int, later: float
) -> None:
    policy = parse_policy(CPU_ONLY | {"cpuUtilization": str(target)})
    fresh = decide(policy, Observations(cpu=pods(levels)), NOW, SETTINGS)
    error = "connection refused"
    held = decide(
        policy,
        Observations(cpu=pods(levels, error=error), errors={"cpu": error}),
        NOW + later,
        SETTINGS,
    )
    assert held.available
    assert held.desired_replicas >= fresh.desired_replicas
