"""Presenting a simulation: terminal table, JSON, timeline CSV, PNG plots, Markdown report.

Plots use matplotlib's Agg backend (files only, no display). The headline
compares policies at equal or fewer SLO violations, never on cost alone: with
a sweep, each policy's cheapest configuration within a violation budget.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from scaler.sim.runner import SimulationResult, SweepPoint, cost_at_budget

_COLORS = {
    "static-peak": "#7f7f7f",
    "keda-cron": "#9467bd",
    "reactive": "#1f77b4",
    "hpa-cpu": "#ff7f0e",
    "tidescaler": "#2ca02c",
    "oracle": "#d62728",
}


def _percent(x: float) -> str:
    if x == 0:
        return "0"
    if x < 0.0001:
        return f"{100 * x:.1e}%"
    return f"{100 * x:.2f}%"


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:,.0f}"


def render_table(result: SimulationResult, console: Console) -> None:
    scenario = result.scenario
    table = Table(
        title=f"{scenario.name}: {result.traffic_name}, SLO {scenario.slo_ms:g} ms, "
        f"target {100 * scenario.target_utilization:g}% of "
        f"{scenario.cluster.capacity_per_replica:g} req/s per replica",
    )
    for column, justify in (
        ("policy", "left"),
        ("replica-hours", "right"),
        ("vs static-peak", "right"),
        ("over SLO", "right"),
        ("p50 ms", "right"),
        ("p95 ms", "right"),
        ("p99 ms", "right"),
        ("failed", "right"),
        ("scaling actions", "right"),
        ("utilization", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in result.policies:
        table.add_row(
            r.policy,
            f"{r.replica_hours:,.0f}",
            f"{r.cost_vs_static_peak:.3f}",
            _percent(r.slo_violation_ratio),
            _ms(r.p50_latency_seconds),
            _ms(r.p95_latency_seconds),
            _ms(r.p99_latency_seconds),
            f"{r.failed_requests:,.0f}",
            f"{r.scaling_actions:,}",
            f"{100 * r.mean_utilization:.0f}%",
        )
    console.print(table)
    for line in headline(result, []):
        console.print(line)


def headline(result: SimulationResult, points: list[SweepPoint]) -> list[str]:
    """tidescaler's cost relative to static-peak and to reactive at equal or fewer violations."""
    lines: list[str] = []
    tide = result.policy("tidescaler")
    if tide is None:
        return lines
    lines.append(
        f"tidescaler costs {tide.cost_vs_static_peak:.3f}x static-peak with "
        f"{_percent(tide.slo_violation_ratio)} of requests over the SLO."
    )
    reactive = result.policy("reactive")
    if reactive is None:
        return lines
    every = _all_points(result, points)
    budget = reactive.slo_violation_ratio
    best_tide = cost_at_budget(every, "tidescaler", budget)
    best_reactive = cost_at_budget(every, "reactive", budget)
    if best_tide is not None and best_reactive is not None:
        lines.append(
            f"At reactive's violation level ({_percent(budget)}) tidescaler costs "
            f"{best_tide.replica_hours / best_reactive.replica_hours:.3f}x reactive "
            f"({best_tide.replica_hours:,.0f} vs {best_reactive.replica_hours:,.0f} replica-hours)."
        )
    tide_budget = tide.slo_violation_ratio
    matching = cost_at_budget(every, "reactive", tide_budget)
    if matching is not None:
        lines.append(
            f"At tidescaler's violation level ({_percent(tide_budget)}) reactive costs "
            f"{matching.replica_hours / tide.replica_hours:.3f}x tidescaler"
            + (f" ({matching.parameter}={matching.value})." if matching.value != "base" else ".")
        )
    else:
        lines.append(
            f"No reactive configuration{' in the sweep' if points else ''} reaches tidescaler's "
            f"violation level ({_percent(tide_budget)}); its best is "
            f"{_percent(min(p.slo_violation_ratio for p in every if p.policy == 'reactive'))}."
        )
    return lines


def _all_points(result: SimulationResult, points: list[SweepPoint]) -> list[SweepPoint]:
    base = [
        SweepPoint(
            "base",
            "base",
            r.policy,
            r.replica_hours,
            r.cost_vs_static_peak,
            r.slo_violation_ratio,
            r.p99_latency_seconds,
        )
        for r in result.policies
    ]
    return base + list(points)


def result_json(result: SimulationResult, points: list[SweepPoint]) -> dict[str, Any]:
    scenario = result.scenario
    timeline = result.timeline
    cluster = scenario.cluster
    return {
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
            "service_time_ms": cluster.service_time_ms,
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
        "sweep": [
            {
                "parameter": p.parameter,
                "value": p.value,
                "policy": p.policy,
                "replica_hours": round(p.replica_hours, 3),
                "cost_vs_static_peak": round(p.cost_vs_static_peak, 4),
                "slo_violation_ratio": float(f"{p.slo_violation_ratio:.6g}"),
                "p99_latency_seconds": round(p.p99_latency_seconds, 5),
            }
            for p in points
        ],
        "headline": headline(result, points),
        "wall_seconds": round(result.wall_seconds, 3),
    }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(result: SimulationResult, points: list[SweepPoint], path: Path) -> None:
    path.write_text(json.dumps(result_json(result, points), indent=2) + "\n", encoding="utf-8")


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
    """Cost against SLO violations: one point per policy and run, sweeps joined in order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = _all_points(result, points)
    floor = 1e-7
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for name in dict.fromkeys(p.policy for p in every):
        mine = [p for p in every if p.policy == name]
        swept = [p for p in mine if p.parameter != "base"]
        color = _COLORS.get(name, "black")
        if len(swept) > 1:
            xs = [max(p.slo_violation_ratio, floor) for p in swept]
            ys = [p.cost_vs_static_peak for p in swept]
            ax.plot(xs, ys, "-o", color=color, ms=3, lw=1, alpha=0.7)
            for p, x, y in zip(swept, xs, ys, strict=True):
                ax.annotate(
                    p.value,
                    (x, y),
                    fontsize=6,
                    color=color,
                    xytext=(3, 2),
                    textcoords="offset points",
                )
        base = [p for p in mine if p.parameter == "base"]
        for p in base:
            ax.plot(
                max(p.slo_violation_ratio, floor),
                p.cost_vs_static_peak,
                "D",
                color=color,
                ms=7,
                label=name,
            )
    ax.set_xscale("log")
    ax.set_xlabel(f"share of requests over the SLO or failed (log; {floor:g} = none)")
    ax.set_ylabel("cost (replica-hours) relative to static-peak")
    sweep = result.scenario.sweep
    subtitle = f", sweep {sweep.parameter}" if sweep is not None and points else ""
    ax.set_title(f"{result.scenario.name}: cost vs SLO violations{subtitle}", fontsize=10)
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
        f"- Replica: {scenario.cluster.capacity_per_replica:g} req/s at full load, mean service "
        f"{scenario.cluster.service_time_ms:g} ms, timeout {scenario.cluster.timeout_seconds:g} s; "
        f"pod start-up {scenario.cluster.pod_startup.describe()}.",
        f"- KEDA polling {scenario.cluster.polling_interval_seconds:g} s, cooldown "
        f"{scenario.cluster.cooldown_seconds:g} s; HPA sync "
        f"{scenario.cluster.hpa_sync_seconds:g} s, "
        f"tolerance {scenario.cluster.tolerance:g}, default behavior; metric lag "
        f"{scenario.cluster.metric_lag_seconds:g} s; replicas {scenario.cluster.min_replicas}.."
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
    lines += ["", *[f"- {line}" for line in data["headline"]], ""]
    if points:
        lines += [
            f"### Sweep of {points[0].parameter}",
            "",
            "| value | policy | vs static-peak | over SLO | p99 ms |",
            "|---|---|---:|---:|---:|",
        ]
        for p in points:
            lines.append(
                f"| {p.value} | {p.policy} | {p.cost_vs_static_peak:.3f} | "
                f"{_percent(p.slo_violation_ratio)} | {_ms(p.p99_latency_seconds)} |"
            )
        lines.append("")
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
    tide = result.policy("tidescaler")
    if tide is not None:
        metadata = tide.detail.get("metadata", {})
        lines += [
            "## The tidescaler policy as simulated",
            "",
            "Paste into a ScaledObject trigger of `type: external` (add `scalerAddress`):",
            "",
            "```yaml",
            yaml.safe_dump({"metadata": metadata}, sort_keys=False).rstrip(),
            "```",
            "",
            f"Winning signal per decision: {tide.detail.get('winning_signal')}; forecast refits: "
            f"{tide.detail.get('forecast_fits')} ({tide.detail.get('forecast_failures')} without a "
            "forecast).",
            "",
        ]
    cron = result.policy("keda-cron")
    if cron is not None and scenario.keda_cron is None:
        lines += [
            "keda-cron: one KEDA cron trigger per UTC hour, desiredReplicas at the 90th percentile "
            "over days of that hour's peak need (planned with hindsight of the whole trace).",
            "",
        ]
    lines += [
        "Model notes: M/M/c waiting (Erlang C) below capacity, fluid backlog above; a request "
        "waiting past the timeout fails, and with no ready replica every request fails. Cost is "
        "provisioned pods (starting ones included); oracle has no start-up delay.",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_outputs(
    result: SimulationResult, points: list[SweepPoint], out_dir: Path, command: str
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_capacity(result, out_dir / "capacity.png")
    plot_capacity(result, out_dir / "capacity_zoom.png", days=2.0)
    plot_frontier(result, points, out_dir / "frontier.png")
    write_json(result, points, out_dir / "result.json")
    report = write_markdown(result, points, out_dir, command)
    return [
        report,
        out_dir / "frontier.png",
        out_dir / "capacity.png",
        out_dir / "capacity_zoom.png",
        out_dir / "result.json",
    ]


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
