"""replicas_for skips the decimal rounding where it cannot change the answer: the
answer must stay that of ceil(round(load / per_replica, 6)), clamped, everywhere."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from scaler.engine import MAX_SIGNAL_REPLICAS, replicas_for


def reference(load: float, per_replica: float) -> int:
    """The rule as first written, without the shortcut."""
    if load <= 0 or not math.isfinite(load):
        return 0
    ratio = load / per_replica if per_replica > 0 else math.inf
    if not ratio < MAX_SIGNAL_REPLICAS:
        return MAX_SIGNAL_REPLICAS
    return min(math.ceil(round(ratio, 6)), MAX_SIGNAL_REPLICAS)


@given(st.floats(), st.floats())
@example(300.00000000000006, 100.0)  # float noise just above a whole ratio
@example(3.0000005, 1.0)  # rounds down to 3
@example(3.0000015, 1.0)  # rounds up to 3.000002
@example(3.000002, 1.0)
@example(2.9999996, 1.0)
@example(2147483646.5, 1.0)
@example(2147483647.0, 1.0)
@example(1e300, 1e-9)
@example(5.0, 0.0)
@example(5.0, -1.0)
@example(5.0, math.nan)
@example(math.nan, 1.0)
@example(math.inf, 1.0)
@example(5e-324, 1.0)
def test_replicas_for_equals_the_rounded_ceiling(load: float, per_replica: float) -> None:
    assert replicas_for(load, per_replica) == reference(load, per_replica)


@given(
    st.integers(0, 10**9),
    st.floats(-1e-5, 1e-5, allow_nan=False),
    st.floats(1e-3, 1e4, allow_nan=False),
)
def test_replicas_for_near_whole_ratios(whole: int, noise: float, per_replica: float) -> None:
    load = (whole + noise) * per_replica
    assert replicas_for(load, per_replica) == reference(load, per_replica)
