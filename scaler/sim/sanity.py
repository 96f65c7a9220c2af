"""Checks run before a simulation starts, so a hopeless run fails in the first second.

- An SLO no replica count can meet (`scenario.unreachable_slo`): the oracle
  would add replicas forever.
- A peak below one replica's capacity: every policy runs at most one replica (or stays at
  min replicas), and the comparison says nothing.
- A grid too large for memory: the simulator keeps a few dozen numbers per
  HPA sync step and policy.
"""

from __future__ import annotations

import math
import resource

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
    least = scenario.cluster.min_replicas
    if least > 1:
        # Every policy but the oracle (the cost floor, which ignores the replica range)
        # is held up at min replicas, static-peak included.
        runs = f"every policy but the oracle stays at min replicas {least} and they will not differ"
        fixes = "lower --min-replicas or --capacity-per-replica, raise --scale"
    elif least == 1:
        runs = "every policy runs at most one replica and they will not differ"
        fixes = "lower --capacity-per-replica, raise --scale"
    else:
        # Scaled to zero, the policies still differ in when they wake (and what that costs).
        runs = "every policy runs at most one replica: they differ only in when they scale to zero"
        fixes = "lower --capacity-per-replica, raise --scale"
    return (
        f"the traffic's peak, {peak:.3g} requests/s, is below one replica's target of "
        f"{scenario.threshold:g} requests/s: {runs}; {fixes}, "
        "or check --unit (a rate read as counts per interval is too small by the interval)"
    )


def available_memory_bytes() -> int | None:
    """What this process may still allocate (Linux): the least of the machine's
    MemAvailable, its container's memory limit less what the container uses (a pod's
    limit: /proc/meminfo shows the node's memory), and its address-space limit
    (ulimit -v) less what it has mapped. None when none of them is known (no check)."""
    known = [
        value
        for value in (
            _meminfo_bytes("/proc/meminfo", "MemAvailable:"),
            _cgroup_room(),
            _address_space_room(),
        )
        if value is not None
    ]
    return min(known) if known else None


def _meminfo_bytes(path: str, key: str) -> int | None:
    """A `Key: N kB` line of a /proc status file, in bytes."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_room() -> int | None:
    """The cgroup's memory limit less its usage (v2, else v1), or None without a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit = _read_int(limit_file)
        if limit is None or limit >= 2**60:  # v1 writes "no limit" as a huge number
            continue
        return max(0, limit - (_read_int(usage_file) or 0))
    return None


def _address_space_room() -> int | None:
    """RLIMIT_AS less the address space already mapped, or None without a limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    mapped = _meminfo_bytes("/proc/self/status", "VmSize:") or 0
    return max(0, soft - mapped)


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
