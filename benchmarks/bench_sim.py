"""Simulator speed: 30 days of a one-minute trace through all six policies.

Usage: python benchmarks/bench_sim.py [--repeats N]

The trace is a synthetic tide (peak-to-valley 10, flash crowds) so the run
needs nothing outside the package. Reports the median wall time of the whole
run over the repeats, split per policy (engine decisions, forecast refits and
the cluster loop; the queue evaluation is counted apart), then the median
wall time of a sweep of reactive and tidescaler over 3 targets and the 4
scale-down windows the published frontiers use (12 settings each, the
refits shared as in every sweep), and writes benchmarks/results/simulate.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

from scaler.sim.runner import simulate, sweep
from scaler.sim.scenario import parse_scenario

SCENARIO = {
    "name": "bench-30d",
    "synthetic": {"days": 30, "step_seconds": 60, "peak_rps": 1000, "peak_to_valley": 10},
    "warmup_days": 7,
    "cluster": {"capacity_per_replica": 50, "max_replicas": 200},
    "seed": 1,
}
SWEEP = {
    "target_utilization": [0.6, 0.7, 0.8],
    "scale_down_stabilization_seconds": [0, 120, 300, 600],
    "policies": ["reactive", "tidescaler"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scenario = parse_scenario(SCENARIO, "bench")
    traffic = scenario.load_traffic()
    totals: list[float] = []
    per_policy: dict[str, list[float]] = {}
    engine: list[float] = []
    fits: list[float] = []
    decisions = refits = 0
    for _ in range(args.repeats):
        began = time.perf_counter()
        result = simulate(scenario, traffic)
        totals.append(time.perf_counter() - began)
        for r in result.policies:
            per_policy.setdefault(r.policy, []).append(r.wall_seconds)
        tide = result.policy("tidescaler")
        assert tide is not None
        engine.append(float(tide.detail["engine_seconds"]))  # type: ignore[arg-type]
        fits.append(float(tide.detail["forecast_fit_seconds"]))  # type: ignore[arg-type]
        decisions = int(tide.detail["decisions"])  # type: ignore[call-overload]
        refits = int(tide.detail["forecast_fits"])  # type: ignore[call-overload]
    swept = parse_scenario({**SCENARIO, "sweep": SWEEP}, "bench")
    sweeps: list[float] = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        _, points = sweep(swept, traffic)
        sweeps.append(time.perf_counter() - began)
    total = statistics.median(totals)
    policy_sum = sum(statistics.median(v) for v in per_policy.values())
    simulated_days = len(traffic.rate_per_second) * traffic.step_seconds / 86400
    lines = [
        "# Simulator benchmark",
        "",
        "Command: `python benchmarks/bench_sim.py` "
        f"(median of {args.repeats} runs; Python {platform.python_version()}, "
        f"{platform.machine()}).",
        "",
        f"{simulated_days:g} days of a one-minute synthetic tide, all six policies, "
        f"{decisions:,} engine decisions (one per 30 s KEDA poll), {refits} forecast refits "
        f"(every {scenario.forecast_refit_seconds / 3600:g} h on 7 days of history), HPA "
        "sync every 15 s.",
        "",
        f"**Total: {total:.2f} s wall clock** "
        f"({simulated_days * 86400 / total / 86400:,.1f} simulated days per second).",
        "",
        "| part | median seconds |",
        "|---|---:|",
    ]
    for name, values in per_policy.items():
        lines.append(f"| {name} | {statistics.median(values):.2f} |")
    lines += [
        f"| of which tidescaler engine `decide()` | {statistics.median(engine):.2f} |",
        f"| of which tidescaler forecast refits | {statistics.median(fits):.2f} |",
        f"| queue model and figures (all policies), traffic | {total - policy_sum:.2f} |",
        "",
        f"**Sweep: {statistics.median(sweeps):.2f} s wall clock** for the run as given and "
        f"{len(points)} sweep points (reactive and tidescaler at targets 0.6/0.7/0.8 and "
        "scale-down windows 0/120/300/600 s).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).resolve().parent / "results" / "simulate.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
