"""Checks run before a simulation starts, so a hopeless run fails in the first second.

- An SLO no replica count can meet (`scenario.unreachable_slo`): the oracle
  would add replicas forever.
- A peak below one replica's capacity: every policy runs at most one replica, and the
  comparison says nothing.
- A grid too large for memory: the simulator keeps a few dozen numbers per
  HPA sync step and policy.
"""

from __future__ import annotations

import math

from scaler.sim.scenario import Scenario, unreachable_slo
from scaler.sim.traffic import Traffic

# Bytes the simulator holds per step of the HPA grid with every policy: peak RSS grew
# by about 270 bytes per step from 7 days to a year at one minute (72 MB to 630 MB),
# taken with half again as headroom.
BYTES_PER_STEP = 400


class SanityError(ValueError):
    """A run that cannot produce a useful answer; the message says which flag to change."""


def check_slo(scenario: Scenario) -> str | None:
    """Raise SanityError when the oracle is simulated and could never meet the SLO (it would
    add replicas forever); without the oracle, return the same text as a warning."""
    problem = unreachable_slo(scenario)
    if problem is not None and "oracle" in scenario.policies:
        raise SanityError(problem)
    return problem


def peak_warning(scenario: Scenario, traffic: Traffic) -> str | None:
    """A warning when the whole trace fits in one replica at its target."""
    peak = float(traffic.rate_per_second.max()) if len(traffic.rate_per_second) else 0.0
    if peak >= scenario.threshold:
        return None
    return (
        f"the traffic's peak, {peak:.3g} requests/s, is below one replica's target of "
        f"{scenario.threshold:g} requests/s: every policy runs at most one replica and they will "
        "not differ; lower --capacity-per-replica, raise --scale, or check --unit "
        "(a rate read as counts per interval is too small by the interval)"
    )


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None (no check)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(scenario: Scenario, traffic: Traffic, available: int | None = None) -> None:
    """Raise SanityError when the simulation grid would not fit in the memory available."""
    steps = traffic.duration_seconds / scenario.cluster.hpa_sync_seconds
    need = steps * BYTES_PER_STEP
    available = available_memory_bytes() if available is None else available
    if available is None or need <= available:
        return
    days = traffic.duration_seconds / 86400.0
    fits = available / BYTES_PER_STEP * scenario.cluster.hpa_sync_seconds / 86400.0
    raise SanityError(
        f"{days:,.0f} days of traffic need about {need / 2**30:.1f} GiB to simulate, more than "
        f"the {available / 2**30:.1f} GiB available; pass --days {max(1, math.floor(fits)):d} "
        "or less (or check the timestamps' unit)"
    )
