"""Frontier against frontier: tidescaler's forecast actions against reactive, same tuning budget.

Usage: python benchmarks/bench_forecast_action.py [--synthetic-only | --no-synthetic]
                                                  [--actions ramp,floor,auto]
                                                  [--budgets 0.001,0.01] [SCENARIO.yaml ...]
       python benchmarks/bench_forecast_action.py --write-trace synthetic-night-zero CSV

For every scenario (default: simulations/*.yaml) and every synthetic shape below,
reactive and tidescaler (each `forecastAction`) are run over the same grid of
per-replica targets (40 % to 95 %), and nothing else is tuned: same tuning
budget for every policy, the forecast quantile at its default. For each
violation budget the cheapest setting of each policy within it is picked and
the table gives their cost ratio (tidescaler / reactive; `inf`: only reactive
meets the budget, `-`: neither does, `0`: only tidescaler does).

The synthetic shapes punish a policy that pays for its forecast where the
forecast cannot help: tournament matches at a different hour each day
(unpredictable by a daily model), a level shift, a sparse bursty series that
is zero most of the time, a workload with exactly zero traffic every night.
Settings are picked on the span they are reported on (no walk-forward): the
figures compare policies, they do not predict a cost on unseen traffic.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from scaler.sim.policies import ForecastCache
from scaler.sim.runner import SweepPoint, cost_at_budget, simulate
from scaler.sim.scenario import Scenario, load_scenario, with_sweep_value
from scaler.sim.traffic import Traffic, write_trace

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("0.4", "0.45", "0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95")
START = 1_704_067_200.0  # 2024-01-01T00:00:00Z, a Monday
DAY = 86_400.0


def _minutes(days: int) -> np.ndarray:
    return START + 60.0 * np.arange(days * 1440)


def _diurnal(t: np.ndarray, peak_hour: float, width_hours: float) -> np.ndarray:
    """A raised cosine of `width_hours` around `peak_hour`, 0 outside it."""
    hours = ((t % DAY) / 3600.0 - peak_hour + 12.0) % 24.0 - 12.0
    inside = np.abs(hours) < width_hours / 2
    return np.where(inside, 0.5 * (1.0 + np.cos(2.0 * np.pi * hours / width_hours)), 0.0)


def night_zero(days: int = 21, seed: int = 3) -> Traffic:
    """Business hours only: demand from about 06:00 to 22:00 UTC, exactly zero at night."""
    rng = np.random.default_rng(seed)
    t = _minutes(days)
    shape = _diurnal(t, 14.0, 16.0) ** 0.7
    weekday = ((t // DAY).astype(np.int64) + 3) % 7
    level = np.where(weekday >= 5, 0.5, 1.0) * 800.0
    rate = level * shape * np.exp(rng.normal(0.0, 0.05, len(t)))
    rate = np.where(shape > 0.003, rate, 0.0)
    return Traffic(START, 60.0, rate, name="synthetic-night-zero")


def tournament(days: int = 21, seed: int = 5) -> Traffic:
    """A steady base with two-hour matches at a different hour each day (x6 the base)."""
    rng = np.random.default_rng(seed)
    t = _minutes(days)
    base = 150.0 * (0.6 + 0.4 * _diurnal(t, 15.0, 24.0))
    rate = base.copy()
    for day in range(days):
        for _ in range(int(rng.integers(1, 3))):
            start = START + day * DAY + rng.uniform(8, 22) * 3600.0
            ramp = np.clip((t - start) / 600.0, 0.0, 1.0) * np.clip((start + 7200 - t) / 900, 0, 1)
            rate = rate + 750.0 * ramp
    rate = rate * np.exp(rng.normal(0.0, 0.05, len(t)))
    return Traffic(START, 60.0, rate, name="synthetic-tournament")


def level_shift(days: int = 21, seed: int = 11) -> Traffic:
    """A daily tide (peak/valley 10) whose level doubles at noon on day 12 and stays there."""
    rng = np.random.default_rng(seed)
    t = _minutes(days)
    shape = _diurnal(t, 14.0, 24.0)
    rate = 500.0 * np.exp(-math.log(10.0) * (1.0 - shape))
    rate = np.where(t >= START + 11.5 * DAY, 2.0 * rate, rate)
    rate = rate * np.exp(rng.normal(0.0, 0.05, len(t)))
    return Traffic(START, 60.0, rate, name="synthetic-level-shift")


def sparse_bursts(days: int = 21, seed: int = 13) -> Traffic:
    """Zero most of the time; about eight bursts a day (5-40 minutes, 50-600 req/s) at random."""
    rng = np.random.default_rng(seed)
    t = _minutes(days)
    rate = np.zeros(len(t))
    for _ in range(int(rng.poisson(8 * days))):
        at = int(rng.integers(0, len(t)))
        length = int(rng.integers(5, 41))
        rate[at : at + length] += rng.uniform(50.0, 600.0)
    rate = rate * np.exp(rng.normal(0.0, 0.05, len(t)))
    return Traffic(START, 60.0, rate, name="synthetic-sparse-bursts")


SYNTHETIC = {
    "synthetic-night-zero": night_zero,
    "synthetic-tournament": tournament,
    "synthetic-level-shift": level_shift,
    "synthetic-sparse-bursts": sparse_bursts,
}


def synthetic_scenario(template: Scenario, name: str) -> Scenario:
    """The template's cluster and SLO, minimum 0 replicas, on a synthetic shape."""
    cluster = replace(template.cluster, min_replicas=0, max_replicas=200)
    meta = {k: v for k, v in template.tidescaler.items() if k not in ("minReplicas",)}
    meta["maxReplicas"] = "200"
    return replace(template, name=name, cluster=cluster, tidescaler=meta, warmup_days=7, sweep=None)


def frontier_points(
    scenario: Scenario, traffic: Traffic, actions: list[str]
) -> tuple[list[SweepPoint], float]:
    cache = ForecastCache()  # shared by every run over this traffic
    points: list[SweepPoint] = []
    plain = replace(scenario, sweep=None)
    oracle_hours = math.nan
    for target in TARGETS:
        variant = with_sweep_value(plain, "target_utilization", target)
        result = simulate(variant, traffic, None, ("reactive", "oracle"), cache)
        for r in result.policies:
            if r.policy == "oracle":
                oracle_hours = r.replica_hours
                continue
            points.append(
                SweepPoint("t", target, "reactive", r.replica_hours, 0.0, r.slo_violation_ratio, 0)
            )
        for action in actions:
            meta = dict(variant.tidescaler) | {"forecastAction": action}
            run = replace(variant, tidescaler=meta)
            r = simulate(run, traffic, None, ("tidescaler",), cache).policies[0]
            points.append(
                SweepPoint("t", target, action, r.replica_hours, 0.0, r.slo_violation_ratio, 0)
            )
    return points, oracle_hours


def _ratio(points: list[SweepPoint], policy: str, budget: float, oracle: float) -> str:
    mine, theirs = (
        cost_at_budget(points, policy, budget),
        cost_at_budget(points, "reactive", budget),
    )
    if mine is None:
        return "-" if theirs is None else "inf"
    vs_oracle = f"{mine.replica_hours / oracle:.2f}" if oracle > 0 else "-"
    if theirs is None:
        return f"0 ({vs_oracle})"
    return f"{mine.replica_hours / theirs.replica_hours:.2f} ({vs_oracle})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", type=Path)
    parser.add_argument("--synthetic-only", action="store_true")
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument("--actions", default="ramp,floor,auto")
    parser.add_argument("--budgets", default="0.001,0.01")
    parser.add_argument(
        "--write-trace", nargs=2, metavar=("SHAPE", "CSV"), help="write a synthetic trace"
    )
    args = parser.parse_args(argv)
    if args.write_trace:
        shape, path = args.write_trace
        write_trace(SYNTHETIC[shape](), path)
        return 0
    actions = [a.strip() for a in args.actions.split(",") if a.strip()]
    budgets = [float(b) for b in args.budgets.split(",")]
    files = (
        [] if args.synthetic_only else (args.scenarios or sorted(ROOT.glob("simulations/*.yaml")))
    )
    template = load_scenario(ROOT / "simulations" / "synthetic-pv100.yaml")
    cases: list[tuple[Scenario, Traffic]] = []
    for path in files:
        scenario = load_scenario(path)
        cases.append((scenario, scenario.load_traffic()))
    for name, make in SYNTHETIC.items():
        if not args.no_synthetic and not any(s.name == name for s, _ in cases):
            cases.append((synthetic_scenario(template, name), make()))
    header = " | ".join(f"{a} @ {b:.1%}" for b in budgets for a in actions)
    print(f"| scenario | {header} |")
    print("|---|" + "---:|" * (len(budgets) * len(actions)))
    for scenario, traffic in cases:
        began = time.perf_counter()
        points, oracle = frontier_points(scenario, traffic, actions)
        cells = [_ratio(points, a, b, oracle) for b in budgets for a in actions]
        print(
            f"| {scenario.name} | "
            + " | ".join(cells)
            + f" |  ({time.perf_counter() - began:.0f} s)"
        )
        sys.stdout.flush()
    print("cells: tidescaler / reactive cost at the budget (tidescaler / oracle in brackets)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
