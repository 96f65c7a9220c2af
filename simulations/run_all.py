"""Regenerate simulations/results/ and simulations/README.md from the scenario files.

Usage: python simulations/run_all.py [SCENARIO.yaml ...]

Each scenario runs as given plus its sweep; its report, plots and JSON go to
results/<name>/, and README.md gathers the headline of every scenario.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from scaler.sim.report import _percent, headline, write_outputs
from scaler.sim.runner import SimulationResult, SweepPoint, cost_at_budget, sweep
from scaler.sim.scenario import load_scenario

HERE = Path(__file__).resolve().parent


def _summary_row(result: SimulationResult, points: list[SweepPoint]) -> str:
    cells = [f"[{result.scenario.name}](results/{result.scenario.name}/report.md)"]
    for name in ("reactive", "hpa-cpu", "keda-cron", "tidescaler", "oracle"):
        r = result.policy(name)
        cells.append(
            "-" if r is None else f"{r.cost_vs_static_peak:.3f} / {_percent(r.slo_violation_ratio)}"
        )
    tide, reactive = result.policy("tidescaler"), result.policy("reactive")
    compared = "-"
    if tide is not None and reactive is not None:
        every = [
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
        ] + points
        budget = tide.slo_violation_ratio
        best_reactive = cost_at_budget(every, "reactive", budget)
        if best_reactive is not None:
            compared = (
                f"{tide.replica_hours / best_reactive.replica_hours:.3f} "
                f"(reactive at target {best_reactive.value})"
            )
        else:
            best = min(p.slo_violation_ratio for p in every if p.policy == "reactive")
            compared = f"reactive never that low (best {_percent(best)})"
    cells.append(compared)
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or sorted(HERE.glob("*.yaml"))
    rows = []
    for path in files:
        began = time.perf_counter()
        scenario = load_scenario(path)
        result, points = sweep(scenario)
        out = HERE / "results" / scenario.name
        command = (
            f"tidescaler simulate simulations/{path.name} --out simulations/results/{scenario.name}"
        )
        write_outputs(result, points, out, command)
        rows.append(_summary_row(result, points))
        print(f"{scenario.name}: {time.perf_counter() - began:.1f} s")
        for line in headline(result, points):
            print("  " + line)
    readme = [
        "# Simulations",
        "",
        "Scenario files (`*.yaml`) for every shared trace and for synthetic tides at",
        "peak-to-valley 10 and 100, and their published results in `results/`.",
        "Regenerate everything with one command from the repository root:",
        "",
        "```",
        "python simulations/run_all.py",
        "```",
        "",
        "One scenario: `tidescaler simulate simulations/nasa-1995-jul.yaml --out DIR`.",
        "Traces under `traces/` are copies of real logs; see `traces/README.md` for",
        "their sources and terms (the NASA trace is bundled with the package).",
        "",
        "## Summary",
        "",
        "Cost relative to static-peak / share of requests over the SLO (or failed), every",
        "policy at the same per-replica target (70 % of capacity). The last column is",
        "tidescaler's cost relative to the cheapest reactive configuration of the sweep",
        "(targets 40 % to 90 %) that has no more SLO violations than tidescaler.",
        "",
        "| scenario | reactive | hpa-cpu | keda-cron | tidescaler | oracle "
        "| tidescaler vs reactive at <= violations |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    if not argv:
        (HERE / "README.md").write_text("\n".join(readme), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
