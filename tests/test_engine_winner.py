"""Which recommendation wins: the highest; on a tie the earliest signal (query, cpu,
memory, forecast), and a measured signal before the window floor."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from test_engine import NOW, QUERY, SETTINGS, WINDOW_NOW, demand, pods, schedules

from scaler.engine import Observations, Reason, _winner, decide
from scaler.policy import parse_policy

REASONS = [Reason.QUERY, Reason.CPU, Reason.MEMORY, Reason.FORECAST]


def reference(acting: list[tuple[int, Reason]], floor: int | None) -> tuple[int, Reason]:
    candidates = acting + ([(floor, Reason.CRON)] if floor is not None else [])
    return max(candidates, key=lambda c: c[0], default=(0, Reason.MIN_REPLICAS))


@given(
    st.lists(st.tuples(st.integers(0, 4), st.sampled_from(REASONS)), max_size=4),
    st.none() | st.integers(0, 4),
)
def test_winner_is_the_first_highest(acting: list[tuple[int, Reason]], floor: int | None) -> None:
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
