"""Presenting a simulation: terminal table, JSON, timeline CSV, PNG plots, Markdown report.

Plots use matplotlib's Agg backend (files only, no display). The headline
compares policies at equal or fewer SLO violations, never on cost alone: with
a sweep, each policy's cheapest setting within each violation budget (its
cost/violation frontier against the other's).
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scaler.cli_support import SCHEMA_VERSION, make_folder
from scaler.sim.floor import Floor, result_floors
from scaler.sim.frontier import (
    BUDGET_CANDIDATES,
    COMPARED,
    BudgetRow,
    Matched,
    base_point,
    budget_rows,
    choose_budgets,
    forecast_on,
    frontiers,
    gated_pick,
    match,
    on_tuning_span,
    walk_forward,
)
from scaler.sim.runner import SimulationResult, SweepPoint, base_points
from scaler.sim.scenario import QUERY_PLACEHOLDER, Scenario, with_sweep_value

_COLORS = {
    "static-peak": "#7f7f7f",
    "keda-cron": "#9467bd",
    "reactive": "#1f77b4",
    "hpa-cpu": "#ff7f0e",
    "tidescaler": "#2ca02c",
    "oracle": "#d62728",
}


def _percents(a: float, b: float) -> tuple[str, str]:
    """`_percent` of two different shares, with as many digits as tell them apart: a
    best of 0.04% against a level of 0.04% reads as a contradiction."""
    shown = _percent(a), _percent(b)
    if a == b or shown[0] != shown[1] or not (math.isfinite(a) and math.isfinite(b)):
        return shown
    for digits in range(3, 7):
        shown = f"{100 * a:.{digits}f}%", f"{100 * b:.{digits}f}%"
        if shown[0] != shown[1]:
            break
    return shown


def _percent(x: float) -> str:
    if not math.isfinite(x):  # undefined (nothing to compare against), not a share
        return "-"
    if x == 0:
        return "0"
    if x < 0.0001:
        return f"{100 * x:.1e}%"
    return f"{100 * x:.2f}%"


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:,.0f}"


def _compact(x: float) -> str:
    """A count in at most 5 characters: 950, 12.3k, 1.30M."""
    if x < 10_000:
        return f"{x:,.0f}"
    if x < 1_000_000:
        return f"{x / 1000:.1f}k" if x < 100_000 else f"{x / 1000:.0f}k"
    return f"{x / 1e6:.2f}M" if x < 1e8 else f"{x / 1e6:.0f}M"


def render_table(
    result: SimulationResult, console: Console, points: list[SweepPoint] | None = None
) -> None:
    """The per-policy table (fits 80 columns), then the comparison at equal violations."""
    scenario = result.scenario
    table = Table(
        title=f"{escape(scenario.name)}: {escape(result.traffic_name)}, "
        f"SLO {scenario.slo_ms:g} ms,\n"
        f"target {100 * scenario.target_utilization:g}% of "
        f"{scenario.cluster.capacity_per_replica:g} req/s per replica",
        caption="cost: replica-hours vs static-peak; >SLO: requests over the SLO\n"
        "or failed; latency in ms; acts: scaling actions; util: served/paid",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 0, 0, 1),
    )
    for column, justify in (
        ("policy", "left"),
        ("rep-h", "right"),
        ("cost", "right"),
        (">SLO", "right"),
        ("p50", "right"),
        ("p95", "right"),
        ("p99", "right"),
        ("failed", "right"),
        ("acts", "right"),
        ("util", "right"),
    ):
        table.add_column(
            column,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=True,
            min_width=11 if column == "policy" else None,
        )
    for r in result.policies:
        table.add_row(
            r.policy,
            _compact(r.replica_hours),
            f"{r.cost_vs_static_peak:.3f}",
            _percent(r.slo_violation_ratio),
            _ms(r.p50_latency_seconds),
            _ms(r.p95_latency_seconds),
            _ms(r.p99_latency_seconds),
            _compact(r.failed_requests),
            _compact(r.scaling_actions),
            f"{100 * r.mean_utilization:.0f}%",
        )
    console.print(table)
    for line in summary_lines(result, points or []):
        console.print(line, highlight=False, markup=False, soft_wrap=not console.is_terminal)


def _pick(point: SweepPoint | None, best: float | None, budget: float) -> str:
    """A budget pick: cost vs static-peak and setting; walk-forward picks show the later
    span (cost, and the violations the setting met there, marked `over` where they
    exceed the budget: the choice, made on the earlier span, did not hold)."""
    if point is None:
        return "cannot" + (f" (best {_percent(best)})" if best is not None else "")
    if point.later is not None:
        later = point.later
        over = " over" if later.slo_violation_ratio > budget else ""
        return (
            f"{later.cost_vs_static_peak:.3f} ({point.label}; "
            f"{_percent(later.slo_violation_ratio)}{over})"
        )
    return f"{point.cost_vs_static_peak:.3f} ({point.label})"


def _pick_cost(point: SweepPoint | None) -> str:
    """The pick's cost vs static-peak (later span when walk-forward)."""
    if point is None:
        return "-"
    span = point.later
    return f"{(span.cost_vs_static_peak if span is not None else point.cost_vs_static_peak):.3f}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _cost(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


FLOOR_NOTE = (
    "floor: the cheapest schedule within the budget, found knowing the demand in advance with "
    "pods that start at once (cost vs static-peak): the room any autoscaler has."
)


@dataclass(frozen=True)
class Comparison:
    """tidescaler against reactive, frontier against frontier."""

    points: list[SweepPoint]  # the scenario as given, then the sweep
    budgets: list[BudgetRow]
    at_reactive: Matched | None  # cheapest tidescaler at reactive's violations as given
    at_tidescaler: Matched | None  # cheapest reactive at tidescaler's violations as given
    # Each budget's floor (the cheapest schedule with foresight) over the span the picks
    # are measured on, and static-peak's replica-hours there (the costs' unit).
    floors: dict[float, Floor | None]
    static_hours: float

    def floor_cost(self, budget: float) -> float | None:
        """The floor's cost relative to static-peak (None: no schedule meets the budget)."""
        floor = self.floors.get(budget)
        if floor is None or not self.static_hours > 0:
            return None
        return floor.replica_hours / self.static_hours

    @property
    def swept(self) -> bool:
        return any(not p.is_base for p in self.points)


def compare(result: SimulationResult, points: list[SweepPoint]) -> Comparison:
    every = _all_points(result, points)
    present = [name for name in COMPARED if result.policy(name) is not None]
    budgets = budget_rows(every, choose_budgets(every, present), present)
    reactive, tide = base_point(every, "reactive"), base_point(every, "tidescaler")
    at_reactive = at_tidescaler = None
    if reactive is not None and tide is not None:
        at_reactive = match(every, reactive, "tidescaler")
        at_tidescaler = match(every, tide, "reactive")
    later = any(row.walk_forward for row in budgets)
    floors = _floors(result, tuple(row.budget for row in budgets), later)
    static = result.static_span_hours[1] if later else result.static_peak_hours
    return Comparison(every, budgets, at_reactive, at_tidescaler, floors, static)


# The summary, report.md and result.json each compare the same result (hashed by
# identity), and its floors cost about a second on two months of traffic: kept once.
@functools.lru_cache(maxsize=1)
def _floors(
    result: SimulationResult, budgets: tuple[float, ...], later: bool
) -> dict[float, Floor | None]:
    return result_floors(result, budgets, later) if budgets else {}


def _best(points: list[SweepPoint], policy: str) -> float | None:
    """The policy's fewest violations (on the tuning span, where walk-forward chooses)."""
    levels = [
        p.tuning.slo_violation_ratio if p.tuning is not None else p.slo_violation_ratio
        for p in points
        if p.policy == policy
    ]
    levels = [level for level in levels if not math.isnan(level)]  # spans without traffic
    return min(levels) if levels else None


def _blind_tuning_lines(points: list[SweepPoint]) -> list[str]:
    """What to say when the tuning span had no traffic: walk-forward cannot choose."""
    spans = [p.tuning for p in points if p.tuning is not None]
    if not spans or not all(math.isnan(span.slo_violation_ratio) for span in spans):
        return []
    return [
        "No request in the tuning span (the first half of the evaluated days): no setting "
        "can be chosen there for the later half. Simulate days with traffic in both halves "
        "(--days, --warmup-days)."
    ]


def summary_lines(result: SimulationResult, points: list[SweepPoint]) -> list[str]:
    """A few lines for the terminal: the budget table and the match at the target as given."""
    comparison = compare(result, points)
    lines: list[str] = []
    if not comparison.budgets or len(comparison.budgets[0].picks) < 2:
        # Without both reactive and tidescaler there is no frontier against frontier;
        # a sweep still has its points to show, whichever policies ran.
        return headline(result, points) + sweep_lines(points)
    target = f"{100 * result.scenario.target_utilization:g}%"
    forward = walk_forward(comparison.points)
    if comparison.swept and forward:
        lines.append(
            "Cheapest setting within each violation budget, chosen on the first half of the "
            "days and measured on the second (cost vs static-peak there; requests over the "
            "SLO there, 'over' where past the budget):"
        )
    elif comparison.swept:
        lines.append("Cheapest setting within each violation budget (cost vs static-peak):")
    elif forward:
        lines.append(
            f"Within each violation budget, one setting per policy (target {target}), "
            "measured on the second half of the days (the table above is the whole "
            "window); --sweep target_utilization=0.4,0.5,... draws frontiers:"
        )
    else:
        lines.append(
            f"Within each violation budget, one setting per policy (target {target}); "
            "--sweep target_utilization=0.4,0.5,... draws frontiers:"
        )
    best = {name: _best(comparison.points, name) for name in COMPARED}
    cells = [
        (
            _percent(row.budget),
            _pick(row.picks.get("reactive"), best["reactive"], row.budget),
            _pick(row.picks.get("tidescaler"), best["tidescaler"], row.budget),
            row,
        )
        for row in comparison.budgets
    ]
    width = max([len(c[1]) for c in cells] + [len(c[2]) for c in cells] + [10])
    # Three decimals: two showed 1.00 for a pick 0.2 % dearer than reactive's. With walk-
    # forward picks, what the gate deploys at each budget (as report.md and --json say).
    gate = forward and comparison.swept
    lines.append(
        f"  {'budget':>7}  {'reactive':<{width}}  {'tidescaler':<{width}}  {'t/r':>5}  floor"
        + ("  forecast" if gate else "")
    )
    for budget, reactive, tide, row in cells:
        ratio = row.ratio("tidescaler", "reactive")
        shown = "-" if ratio is None else f"{ratio:.3f}"
        word = f"  {_gate_word(row) or '-'}" if gate else ""
        floor = _cost(comparison.floor_cost(row.budget))
        lines.append(
            f"  {budget:>7}  {reactive:<{width}}  {tide:<{width}}  {shown:>5}  {floor:>5}{word}"
        )
    lines.append(FLOOR_NOTE)
    lines.extend(_unmet_budget_lines(comparison.points))
    lines.extend(_blind_tuning_lines(comparison.points))
    lines.extend(_match_lines(comparison, target))
    lines.extend(_coarse_grid_lines(comparison.points))
    return lines


def _unmet_budget_lines(points: list[SweepPoint]) -> list[str]:
    """A line when budgets below those shown were met by no setting of either policy
    (the table starts at the first budget some policy meets, and said nothing of why)."""
    given = on_tuning_span(points) if walk_forward(points) else points
    fewest = {
        name: min((p.slo_violation_ratio for p in given if p.policy == name), default=None)
        for name in COMPARED
    }
    known = [v for v in fewest.values() if v is not None]
    if not known:
        return []
    unmet = [b for b in BUDGET_CANDIDATES if b < min(known)]
    if not unmet:
        return []
    best = ", ".join(f"{name} {_percent(v)}" for name, v in fewest.items() if v is not None)
    if all(p.is_base for p in given):  # one setting each: other settings were not tried
        return [
            f"Neither policy at the setting run keeps requests over the SLO within "
            f"{_percent(max(unmet))} or less (fewest: {best}); --sweep tries others."
        ]
    return [
        f"No setting of either policy keeps requests over the SLO within {_percent(max(unmet))} "
        f"or less (fewest: {best})."
    ]


# Targets further apart than this make differences of their own between two policies: one
# just misses a budget at a target and pays for the whole step to the next.
FINE_TARGET_STEP = 0.025


def _coarse_grid_lines(points: list[SweepPoint]) -> list[str]:
    """A warning when the targets compared were swept in coarse steps."""
    targets = sorted(
        {
            round(float(value), 6)
            for p in points
            for name, value in p.settings
            if name == "target_utilization"
        }
    )
    steps = [b - a for a, b in itertools.pairwise(targets)]
    if not steps or max(steps) <= FINE_TARGET_STEP + 1e-9:
        return []
    return [
        f"Targets were swept in steps of up to {100 * max(steps):.0f} %: at that grain a "
        "step of the grid can pass for a saving (or a loss). Sweep in 1 % steps before "
        "trusting a ratio (--sweep target_utilization=0.5,0.51,0.52,...,0.95, every value "
        "written out)."
    ]


def sweep_lines(points: list[SweepPoint]) -> list[str]:
    """Every swept point, policy by policy: cost vs static-peak, share over the SLO, p99."""
    if not points:
        return []
    width = max(len(p.label) for p in points)
    lines = ["Sweep (cost vs static-peak as given, requests over the SLO or failed, p99 ms):"]
    for p in points:
        lines.append(
            f"  {p.policy:<11}  {p.label:<{width}}  {p.cost_vs_static_peak:.3f}  "
            f"{_percent(p.slo_violation_ratio):>7}  {_ms(p.p99_latency_seconds)}"
        )
    return lines


def _match_lines(comparison: Comparison, target: str) -> list[str]:
    lines = []
    for m, mine, other in (
        (comparison.at_reactive, "reactive", "tidescaler"),
        (comparison.at_tidescaler, "tidescaler", "reactive"),
    ):
        if m is None:
            continue
        level, best = _percents(m.reference.slo_violation_ratio, m.best_violation or 0.0)
        text = f"At {mine}'s violations at target {target} ({level}): "
        if m.pick is not None and m.ratio is None:  # the reference costs nothing
            text += (
                f"{other} {m.pick.cost_vs_static_peak:.3f} ({m.pick.label or 'as given'}); "
                f"{mine} ran no replicas, so there is no ratio."
            )
        elif m.pick is not None:
            text += (
                f"{other} {m.pick.cost_vs_static_peak:.3f} ({m.pick.label or 'as given'}), "
                f"{_ratio(m.ratio)}x {mine}."
            )
        else:
            text += f"{other} cannot (best {best})."
        lines.append(text)
    return lines


def headline(result: SimulationResult, points: list[SweepPoint]) -> list[str]:
    """tidescaler's cost relative to static-peak and to reactive at equal or fewer violations."""
    lines: list[str] = []
    tide = result.policy("tidescaler")
    if tide is None:
        return lines
    target = f"{100 * result.scenario.target_utilization:g}%"
    lines.append(
        f"tidescaler at the {target} target costs {tide.cost_vs_static_peak:.3f}x static-peak "
        f"with {_percent(tide.slo_violation_ratio)} of requests over the SLO."
    )
    if result.policy("reactive") is None:
        return lines
    comparison = compare(result, points)
    best = {name: _best(comparison.points, name) for name in COMPARED}
    for row in comparison.budgets:
        r, t = row.picks.get("reactive"), row.picks.get("tidescaler")
        text = f"Within {_percent(row.budget)} over the SLO: "
        text += (
            f"reactive {_pick(r, best['reactive'], row.budget)}, "
            f"tidescaler {_pick(t, best['tidescaler'], row.budget)}"
        )
        ratio = row.ratio("tidescaler", "reactive")
        text += f"; tidescaler/reactive {ratio:.3f}." if ratio is not None else "."
        lines.append(text)
    lines.extend(_blind_tuning_lines(comparison.points))
    lines.extend(_match_lines(comparison, target))
    lines.extend(_coarse_grid_lines(comparison.points))
    return lines


def _all_points(result: SimulationResult, points: list[SweepPoint]) -> list[SweepPoint]:
    return base_points(result) + list(points)


def _point_json(p: SweepPoint) -> dict[str, Any]:
    return {
        "parameter": p.parameter,
        "value": p.value,
        "policy": p.policy,
        "settings": dict(p.settings),
        "replica_hours": round(p.replica_hours, 3),
        "cost_vs_static_peak": round(p.cost_vs_static_peak, 4),
        "slo_violation_ratio": float(f"{p.slo_violation_ratio:.6g}"),
        "p99_latency_seconds": round(p.p99_latency_seconds, 5),
        "tuning_span": None if p.tuning is None else p.tuning.as_dict(),
        "later_span": None if p.later is None else p.later.as_dict(),
    }


def _matched_json(m: Matched | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "reference": _point_json(m.reference),
        "policy": m.policy,
        "cheapest": None if m.pick is None else _point_json(m.pick),
        "cost_ratio": None if m.ratio is None else round(m.ratio, 4),
        "best_violation_ratio": m.best_violation,
    }


def comparison_json(result: SimulationResult, points: list[SweepPoint]) -> dict[str, Any]:
    """The `frontier` (Pareto points per policy) and `budgets` sections of the JSON."""
    comparison = compare(result, points)
    budgets = []
    for row in comparison.budgets:
        entry: dict[str, Any] = {"budget": row.budget, "walk_forward": row.walk_forward}
        for name, pick in row.picks.items():
            entry[name] = None if pick is None else _point_json(pick)
        ratio = row.ratio("tidescaler", "reactive")
        entry["tidescaler_vs_reactive"] = None if ratio is None else round(ratio, 4)
        tide = row.picks.get("tidescaler")
        cost = _pick_cost(tide)
        entry["tidescaler_vs_static_peak"] = None if tide is None else float(cost)
        entry["forecast"] = _gate_word(row)
        floor, floor_cost = comparison.floors.get(row.budget), comparison.floor_cost(row.budget)
        entry["floor"] = (
            None
            if floor is None
            else {
                "replica_hours": round(floor.replica_hours, 3),
                "vs_static_peak": None if floor_cost is None else round(floor_cost, 4),
                "lower_bound_replica_hours": round(floor.bound_hours, 3),
                "slo_violation_ratio": round(floor.violation_ratio, 6),
            }
        )
        budgets.append(entry)
    return {
        "frontier": {
            name: [_point_json(p) for p in front]
            for name, front in frontiers(comparison.points).items()
        },
        "budgets": budgets,
        "at_reactive_violations": _matched_json(comparison.at_reactive),
        "at_tidescaler_violations": _matched_json(comparison.at_tidescaler),
    }


def result_json(result: SimulationResult, points: list[SweepPoint]) -> dict[str, Any]:
    scenario = result.scenario
    timeline = result.timeline
    cluster = scenario.cluster
    return {
        "schema_version": SCHEMA_VERSION,
        "scenario": scenario.name,
        "source": scenario.origin,
        "traffic": {
            "name": result.traffic_name,
            "start": _iso(timeline.times[0]),
            "end": _iso(timeline.times[-1] + timeline.step_seconds),
            "evaluated_from": _iso(timeline.times[timeline.evaluated_from]),
            "peak_requests_per_second": round(float(timeline.rate.max()), 3),
            "mean_requests_per_second": round(float(timeline.rate.mean()), 3),
            "scale": scenario.scale,
        },
        "slo_ms": scenario.slo_ms,
        "target_utilization": scenario.target_utilization,
        "threshold": scenario.threshold,
        "cluster": {
            "capacity_per_replica": cluster.capacity_per_replica,
            "service_time_ms": round(cluster.service_time_seconds * 1000.0, 6),
            "concurrency_per_pod": cluster.concurrency,
            "routing": cluster.routing,
            "timeout_seconds": cluster.timeout_seconds,
            "pod_startup": cluster.pod_startup.describe(),
            "polling_interval_seconds": cluster.polling_interval_seconds,
            "hpa_sync_seconds": cluster.hpa_sync_seconds,
            "tolerance": cluster.tolerance,
            "cooldown_seconds": cluster.cooldown_seconds,
            "metric_lag_seconds": cluster.metric_lag_seconds,
            "min_replicas": cluster.min_replicas,
            "max_replicas": cluster.max_replicas,
        },
        "seed": scenario.seed,
        "policies": [r.as_dict() for r in result.policies],
        "static_peak_replica_hours": round(result.static_peak_hours, 3),
        "sweep": [_point_json(p) for p in points],
        **comparison_json(result, points),
        "headline": headline(result, points),
        "wall_seconds": round(result.wall_seconds, 3),
    }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def strict_json(data: Any) -> Any:
    """`data` with every NaN and infinity as None: JSON has no such tokens, and strict
    parsers (jq, JavaScript's JSON.parse, Go) refuse Python's NaN/Infinity."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: strict_json(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [strict_json(value) for value in data]
    if isinstance(data, np.generic):
        return strict_json(data.item())
    return data


def dumps(data: Any) -> str:
    """Strict JSON text of `data` (see strict_json), indented."""
    return json.dumps(strict_json(data), indent=2, allow_nan=False)


def write_json(result: SimulationResult, points: list[SweepPoint], path: Path) -> None:
    path.write_text(dumps(result_json(result, points)) + "\n", encoding="utf-8")


def write_timeline_csv(result: SimulationResult, path: Path) -> None:
    """One row per step: time, demand, and each policy's ready and provisioned pods.

    replica-hours of a policy = sum of its `_pods` column over rows with
    `evaluated` = 1, times step_seconds / 3600.
    """
    timeline = result.timeline
    names = list(timeline.provisioned)
    header = ["timestamp", "step_seconds", "evaluated", "demand_per_second"]
    for name in names:
        header += [f"{name}_ready", f"{name}_pods"]
    columns = [
        timeline.times.astype(np.int64).astype(str),
        np.full(len(timeline.times), f"{timeline.step_seconds:g}"),
        (np.arange(len(timeline.times)) >= timeline.evaluated_from).astype(np.int64).astype(str),
        np.char.mod("%.4f", timeline.rate),
    ]
    for name in names:
        columns.append(timeline.ready[name].astype(str))
        columns.append(timeline.provisioned[name].astype(str))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(zip(*columns, strict=True))


def plot_capacity(result: SimulationResult, path: Path, days: float | None = None) -> None:
    """Demand against each policy's ready capacity over time (one panel per policy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    timeline = result.timeline
    scenario = result.scenario
    first = timeline.evaluated_from
    last = len(timeline.times)
    if days is not None:
        span = int(days * 86400 / timeline.step_seconds)
        # The busiest stretch of the evaluation window: where capacity decisions matter.
        daily = max(1, int(86400 / timeline.step_seconds))
        peak = first + int(np.argmax(timeline.rate[first:]))
        first = max(first, min(peak - daily // 2, last - span))
        last = min(last, first + span)
    times = [datetime.fromtimestamp(float(t), UTC) for t in timeline.times[first:last]]
    names = list(timeline.ready)
    fig, axes = plt.subplots(
        len(names), 1, figsize=(11, 1.9 * len(names) + 0.8), sharex=True, squeeze=False
    )
    demand = timeline.rate[first:last]
    capacity = scenario.cluster.capacity_per_replica
    for ax, name in zip(axes[:, 0], names, strict=True):
        ready = timeline.ready[name][first:last] * capacity
        ax.fill_between(times, 0, demand, color="#cccccc", step="post", label="demand")
        ax.plot(
            times,
            ready,
            color=_COLORS.get(name, "black"),
            lw=0.9,
            drawstyle="steps-post",
            label="ready capacity",
        )
        over = demand > ready
        ax.fill_between(
            times,
            ready,
            demand,
            where=over,
            color="#d62728",
            alpha=0.5,
            step="post",
            label="overload",
        )
        r = result.policy(name)
        title = (
            name
            if r is None
            else (
                f"{name}: {r.cost_vs_static_peak:.3f}x static-peak, "
                f"{_percent(r.slo_violation_ratio)} over SLO"
            )
        )
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel("req/s", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper right", ncols=3)
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))  # type: ignore[no-untyped-call]
    fig.suptitle(f"{scenario.name}: demand vs ready capacity", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_frontier(result: SimulationResult, points: list[SweepPoint], path: Path) -> None:
    """Cost against SLO violations: every run as a dot, each policy's frontier as a step line.

    The step line is the cheapest cost the policy reaches within each violation
    budget (its Pareto-filtered points); the diamond is the policy as given (its
    own target). Costs are relative to static-peak of the scenario as given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comparison = compare(result, points)
    every = comparison.points
    floor = 1e-7
    fig, ax = plt.subplots(figsize=(8, 5.2))
    fronts = frontiers(every)
    right = max([max(p.slo_violation_ratio, floor) for p in every] + [floor]) * 2.5
    picked = {
        id(pick) for row in comparison.budgets for pick in row.picks.values() if pick is not None
    }
    for name, front in fronts.items():
        mine = [p for p in every if p.policy == name]
        color = _COLORS.get(name, "black")
        xs = [max(p.slo_violation_ratio, floor) for p in mine if not p.is_base]
        ys = [p.cost_vs_static_peak for p in mine if not p.is_base]
        if xs:
            ax.plot(xs, ys, "o", color=color, ms=2.5, alpha=0.3)
        if len(mine) > 1:
            fx = [max(p.slo_violation_ratio, floor) for p in front] + [right]
            fy = [p.cost_vs_static_peak for p in front] + [front[-1].cost_vs_static_peak]
            ax.plot(fx, fy, color=color, lw=1.4, drawstyle="steps-post", alpha=0.9)
            ax.plot(fx[:-1], fy[:-1], "o", color=color, ms=3.5)
        for p in front:
            if id(p) in picked:
                ax.annotate(
                    p.label or "as given",
                    (max(p.slo_violation_ratio, floor), p.cost_vs_static_peak),
                    fontsize=6,
                    color=color,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        for p in mine:
            if p.is_base:
                ax.plot(
                    max(p.slo_violation_ratio, floor),
                    p.cost_vs_static_peak,
                    "D",
                    color=color,
                    mec="black",
                    mew=0.6,
                    ms=7,
                    label=name,
                )
    top = max([p.cost_vs_static_peak for p in every if p.is_base] + [0.0])
    ax.set_ylim(0.0, 1.08 * top if top > 0 else None)
    for row in comparison.budgets:
        ax.axvline(row.budget, color="#999999", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlim(right=right)
    ax.set_xlabel(f"share of requests over the SLO or failed (log; {floor:g} = none)")
    ax.set_ylabel("cost (replica-hours) relative to static-peak as given")
    sweep = result.scenario.sweep
    subtitle = f"\nsweep: {sweep.describe()}" if sweep is not None and points else ""
    target = f"{100 * result.scenario.target_utilization:g}%"
    ax.set_title(
        f"{result.scenario.name}: cost vs SLO violations (step lines: frontiers; diamonds: "
        f"target {target}; dotted: budgets; labelled: cheapest within a budget){subtitle}",
        fontsize=8,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(
    result: SimulationResult, points: list[SweepPoint], out_dir: Path, command: str
) -> Path:
    """report.md with the table, the headline, the plots and the policy as simulated."""
    scenario = result.scenario
    data = result_json(result, points)
    lines = [
        f"# Simulation: {scenario.name}",
        "",
        scenario.description.strip() or "",
        "",
        f"Reproduce: `{command}`",
        "",
        "## Setup",
        "",
        f"- Traffic: {result.traffic_name} x {scenario.scale:g}, {data['traffic']['start']} to "
        f"{data['traffic']['end']}, evaluated from {data['traffic']['evaluated_from']} "
        f"(peak {data['traffic']['peak_requests_per_second']:,} req/s, mean "
        f"{data['traffic']['mean_requests_per_second']:,} req/s).",
        f"- Replica: {scenario.cluster.capacity_per_replica:g} req/s at full load "
        f"({scenario.cluster.concurrency} at once, mean service "
        f"{scenario.cluster.service_time_seconds * 1000.0:g} ms), timeout "
        f"{scenario.cluster.timeout_seconds:g} s; pod start-up "
        f"{scenario.cluster.pod_startup.describe()}; routing {scenario.cluster.routing} "
        f"({'a queue per pod' if scenario.cluster.routing == 'random' else 'one shared queue'}).",
        f"- KEDA polling {scenario.cluster.polling_interval_seconds:g} s, cooldown "
        f"{scenario.cluster.cooldown_seconds:g} s; HPA sync "
        f"{scenario.cluster.hpa_sync_seconds:g} s, "
        f"tolerance {scenario.cluster.tolerance:g}, default behavior; metric lag "
        f"{scenario.cluster.metric_lag_seconds:g} s (scrape + rate window); "
        f"replicas {scenario.cluster.min_replicas}.."
        f"{scenario.cluster.max_replicas}.",
        f"- SLO: latency under {scenario.slo_ms:g} ms. Per-replica target for every policy: "
        f"{100 * scenario.target_utilization:g}% of capacity ({scenario.threshold:g} req/s).",
        "",
        "## Results",
        "",
        "| policy | replica-hours | vs static-peak | over SLO | p50 ms | p99 ms | failed "
        "| scaling actions | utilization |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.policies:
        lines.append(
            f"| {r.policy} | {r.replica_hours:,.0f} | {r.cost_vs_static_peak:.3f} | "
            f"{_percent(r.slo_violation_ratio)} | {_ms(r.p50_latency_seconds)} | "
            f"{_ms(r.p99_latency_seconds)} | {r.failed_requests:,.0f} | {r.scaling_actions:,} | "
            f"{100 * r.mean_utilization:.0f}% |"
        )
    compared = compare(result, points)  # one comparison for the budget table and the paste
    comparison = _markdown_comparison(result, compared, points)
    # With the budget table below, the headline's first line is enough here.
    said = data["headline"][:1] if comparison else data["headline"]
    lines += ["", *[f"- {line}" for line in said], "", *comparison]
    lines += [
        "## Plots",
        "",
        "![cost against SLO violations](frontier.png)",
        "",
        "![demand against ready capacity, busiest two days](capacity_zoom.png)",
        "",
        "![demand against ready capacity, whole evaluation window](capacity.png)",
        "",
    ]
    lines += _deploy_lines(result, compared)
    cron = result.policy("keda-cron")
    if cron is not None and scenario.keda_cron is None:
        lines += [
            "keda-cron: one KEDA cron trigger per UTC hour, desiredReplicas at the 90th percentile "
            "over days of that hour's peak need (planned with hindsight of the whole trace).",
            "",
        ]
    lines += [
        "Model notes: below capacity each pod is its own M/M/k queue (routing random) or all "
        "pods share one M/M/c queue (routing pooled), fluid backlog above; a request "
        "waiting past the timeout fails, and with no ready replica every request fails. Cost is "
        "provisioned pods (starting ones included); oracle has no start-up delay.",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _gate_word(row: BudgetRow) -> str | None:
    """`on` or `off`: the forecast as the gate deploys it at this budget (None: neither
    policy meets it)."""
    on = forecast_on(row)
    return None if on is None else ("on" if on else "off")


def _pasted(scenario: Scenario, metadata: dict[str, str]) -> dict[str, str]:
    """Trigger metadata as a user pastes it: the query placeholder where the simulation
    needed none (the user's cluster needs theirs, not an example)."""
    if "query" not in scenario.tidescaler:
        metadata["query"] = QUERY_PLACEHOLDER
    return metadata


def _yaml_block(metadata: dict[str, str]) -> list[str]:
    return ["```yaml", yaml.safe_dump({"metadata": metadata}, sort_keys=False).rstrip(), "```"]


def deploy_metadata(scenario: Scenario, pick: SweepPoint, forecast: bool) -> dict[str, str]:
    """The trigger metadata of a budget's pick: the scenario with the pick's settings, the
    forecast on where the gate keeps it (tidescaler's pick), off where reactive's won
    (`forecast: off` moves replicas as reactive does)."""
    for name, value in pick.settings:
        scenario = with_sweep_value(scenario, name, value)
    metadata = scenario.tidescaler_metadata()
    metadata["forecast"] = "on" if forecast else "off"
    return _pasted(scenario, metadata)


def _deploy_lines(result: SimulationResult, comparison: Comparison) -> list[str]:
    """What to paste: each budget's pick where budgets were compared, else the policy the
    Results table ran."""
    tide = result.policy("tidescaler")
    if tide is None:
        return []
    scenario = result.scenario
    lines: list[str] = []
    picked: list[tuple[float, SweepPoint, bool]] = []
    for row in comparison.budgets:
        pick, on = gated_pick(row), forecast_on(row)
        if len(row.picks) == 2 and pick is not None and on is not None:
            picked.append((row.budget, pick, on))
    if picked:
        lines += [
            "## What to deploy",
            "",
            "Each budget's pick above as trigger metadata: paste the block of your budget into a "
            "ScaledObject trigger of `type: external` (add `scalerAddress`).",
            "",
        ]
        # Budgets whose picks deploy the same metadata share one block.
        blocks: list[tuple[list[str], SweepPoint, dict[str, str]]] = []
        for budget, pick, on in picked:
            metadata = deploy_metadata(scenario, pick, on)
            if blocks and blocks[-1][2] == metadata and blocks[-1][1].settings == pick.settings:
                blocks[-1][0].append(_percent(budget))
            else:
                blocks.append(([_percent(budget)], pick, metadata))
        for budgets, pick, metadata in blocks:
            setting = pick.label or "as given"
            lines += [f"Within {' or '.join(budgets)} ({pick.policy}'s pick: {setting}):", ""]
            window = dict(pick.settings).get("scale_down_stabilization_seconds")
            if window is not None:
                lines += [
                    "Also set the ScaledObject's `advanced.horizontalPodAutoscalerConfig.behavior"
                    f".scaleDown.stabilizationWindowSeconds: {window}`.",
                    "",
                ]
            lines += [*_yaml_block(metadata), ""]
    simulated: Any = tide.detail.get("metadata", {})
    lines += [
        "## The tidescaler policy as simulated",
        "",
        "The trigger metadata of the Results table's run"
        + (" (the scenario's own setting; deploy a budget's block above instead)" if picked else "")
        + (
            ":"
            if picked
            else "; paste it into a ScaledObject trigger of `type: external` (add `scalerAddress`):"
        ),
        "",
        *_yaml_block(_pasted(scenario, dict(simulated))),
        "",
        f"Winning signal per decision: {tide.detail.get('winning_signal')}; forecast refits: "
        f"{tide.detail.get('forecast_fits')} ({tide.detail.get('forecast_failures')} without a "
        "forecast).",
        "",
    ]
    return lines


def _markdown_comparison(
    result: SimulationResult, comparison: Comparison, points: list[SweepPoint]
) -> list[str]:
    lines: list[str] = []
    sweep = result.scenario.sweep
    if comparison.budgets and len(comparison.budgets[0].picks) == 2:
        best = {name: _best(comparison.points, name) for name in COMPARED}
        lines += [
            "## Frontier against frontier",
            "",
            "Walk-forward: each policy's setting is the cheapest whose share of requests "
            "over the SLO (or failed) is within the budget on the first half of the "
            "evaluation window"
            + (f" (sweep: {sweep.describe()})" if sweep is not None and points else "")
            + "; its cost (relative to static-peak at the scenario's own target) and, in "
            "brackets, its violations are those of the second half, which the choice never "
            "saw. A pick may miss its budget there: that is what tuning on the past costs. "
            "Forecast: what to deploy at that budget, `on` where tidescaler's pick cost less "
            "than reactive's on the first half, else `off` (`forecast: off` moves replicas "
            "as reactive does).",
            "",
            "| budget | reactive | tidescaler | tidescaler / reactive | tidescaler / static-peak "
            "| floor / static-peak | forecast |",
            "|---:|---|---|---:|---:|---:|---|",
        ]
        for row in comparison.budgets:
            r, t = row.picks.get("reactive"), row.picks.get("tidescaler")
            lines.append(
                f"| {_percent(row.budget)} | {_pick(r, best['reactive'], row.budget)} | "
                f"{_pick(t, best['tidescaler'], row.budget)} "
                f"| {_ratio(row.ratio('tidescaler', 'reactive'))} "
                f"| {_pick_cost(t)} | {_cost(comparison.floor_cost(row.budget))} "
                f"| {_gate_word(row) or '-'} |"
            )
        lines += [
            "",
            FLOOR_NOTE,
            "",
            *_match_lines(comparison, f"{100 * result.scenario.target_utilization:g}%"),
        ]
        lines.append("")
    fronts = frontiers(comparison.points)
    if any(len(front) > 1 for front in fronts.values()) or points:
        lines += [
            "### Each policy's frontier",
            "",
            "Settings not beaten on both cost and violations by another setting of the same "
            "policy, fewest violations first (every run is in result.json, under `sweep`).",
            "",
            "| policy | setting | vs static-peak | over SLO | p99 ms |",
            "|---|---|---:|---:|---:|",
        ]
        for name, front in fronts.items():
            for p in front:
                setting = p.label + (" (as given)" if p.is_base else "")
                lines.append(
                    f"| {name} | {setting or 'as given'} | {p.cost_vs_static_peak:.3f} | "
                    f"{_percent(p.slo_violation_ratio)} | {_ms(p.p99_latency_seconds)} |"
                )
        lines.append("")
    return lines


# Every file `write_outputs` writes into --out, in the order it lists them (checked
# against the inputs before the run: one may be the trace being read).
OUTPUT_FILES = ("report.md", "frontier.png", "capacity.png", "capacity_zoom.png", "result.json")


def write_outputs(
    result: SimulationResult, points: list[SweepPoint], out_dir: Path, command: str
) -> list[Path]:
    make_folder(out_dir)
    plot_capacity(result, out_dir / "capacity.png")
    plot_capacity(result, out_dir / "capacity_zoom.png", days=2.0)
    plot_frontier(result, points, out_dir / "frontier.png")
    write_json(result, points, out_dir / "result.json")
    write_markdown(result, points, out_dir, command)
    return [out_dir / name for name in OUTPUT_FILES]


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
