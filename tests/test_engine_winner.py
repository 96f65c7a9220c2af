"""Which recommendation wins: the highest; on a tie the earliest signal (query, cpu,
memory, forecast), and a measured signal before the window floor; the value reported
is the highest demand among the tied, or the floor's whole count when it ties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from test_engine import NOW, QUERY, SETTINGS, WINDOW_NOW, demand, pods, schedules

from scaler.engine import Observations, Reason, _winner, decide
from scaler.policy import parse_policy

REASONS = [Reason.QUERY, Reason.CPU, Reason.MEMORY, Reason.FORECAST]


def reference(
    acting: list[tuple[int, Reason, float]], floor: int | None
) -> tuple[int, Reason, float]:
    candidates = [(r, why) for r, why, _ in acting]
    candidates += [(floor, Reason.CRON)] if floor is not None else []
    desired, reason = max(candidates, key=lambda c: c[0], default=(0, Reason.MIN_REPLICAS))
    if floor is not None and floor == desired:
        return desired, reason, float(floor)  # a floor holds as a whole count
    tied = [wish for r, _, wish in acting if r == desired]
    return desired, reason, max(tied, default=0.0)


@st.composite
def recommendation(draw: st.DrawFn) -> tuple[int, Reason, float]:
    replicas = draw(st.integers(0, 4))
    # Its demand in replicas rounds up to it.
    wish = 0.0 if replicas == 0 else draw(st.floats(replicas - 1, replicas, exclude_min=True))
    return replicas, draw(st.sampled_from(REASONS)), wish


@given(st.lists(recommendation(), max_size=4), st.none() | st.integers(0, 4))
def test_winner_is_the_first_highest(
    acting: list[tuple[int, Reason, float]], floor: int | None
) -> None:
    assert _winner(acting, floor) == reference(acting, floor)


def test_a_measured_signal_wins_a_tie_with_the_window_floor() -> None:
    policy = parse_policy(QUERY | {"schedules": schedules(WINDOW_NOW | {"desiredReplicas": 3})})
    decision = decide(policy, Observations(demand=demand(300)), NOW, SETTINGS)
    assert (decision.desired_replicas, decision.reason) == (3, Reason.QUERY)
    decision = decide(policy, Observations(demand=demand(200)), NOW, SETTINGS)
    assert (decision.desired_replicas, decision.reason) == (3, Reason.CRON)


def test_query_wins_a_tie_with_cpu() -> None:
    policy = parse_policy(QUERY | {"cpuUtilization": "50", "podSelector": 'namespace="shop"'})
    # Two pods at 75% of a 50% target: the HPA asks for 3; 300 / 100 asks for 3 too.
    observations = Observations(demand=demand(300), cpu=pods([0.75, 0.75]))
    decision = decide(policy, observations, NOW, SETTINGS)
    assert (decision.desired_replicas, decision.reason) == (3, Reason.QUERY)
    observations = Observations(demand=demand(200), cpu=pods([0.75, 0.75]))
    decision = decide(policy, observations, NOW, SETTINGS)
    assert (decision.desired_replicas, decision.reason) == (3, Reason.CPU)
