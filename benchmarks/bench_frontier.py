"""Frontier against frontier, walk-forward: tidescaler against reactive and the oracle.

Usage: python benchmarks/bench_frontier.py [--jobs N] [--from-results]
       [--set KEY=VALUE ...] [--pod-startup-seconds S] [--routing pooled]
       [--seed N ...] [SCENARIO.yaml ...]

For every scenario in simulations/ (the shared traces and the generated cases
that punish regret), both policies sweep the very same settings (the
per-replica target and the HPA's scale-down stabilization window), under the scenario's queueing
(random routing: a queue per pod; `--routing pooled` for one shared queue, as
consumers of a work queue have). At each violation budget (0.1 % and 1 % of
requests over the SLO or failed) each policy's setting is the cheapest within the
budget on the first half of the evaluation window; the table gives that
setting's cost and violations on the second half, which the choice never saw,
tidescaler's cost over reactive's and over the oracle's (the fewest replicas
meeting the SLO at every instant, no start-up: the cost floor).

`--seed N` (repeatable) runs every scenario again with seed N instead of its own:
a generated scenario gets other traffic of the same kind (other match hours, another
day for the shift, other noise), a trace scenario other pod start-ups; each
(scenario, seed) is a row of its own, so the targets are checked on draws the
published settings never saw.

`--from-results` reads the runs that `python simulations/run_all.py` stored in
simulations/results/*/result.json instead of running them again (same runs).
Writes benchmarks/results/frontier.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from scaler.sim.floor import later_span_floors
from scaler.sim.frontier import GATED, BudgetRow, budget_rows, forecast_on, with_gate
from scaler.sim.runner import Span, SweepPoint, sweep
from scaler.sim.scenario import (
    SWEEP_LABELS,
    Scenario,
    Sweep,
    common_tuning_budget,
    load_scenario,
    with_sweep_value,
)

ROOT = Path(__file__).resolve().parent.parent
SIMULATIONS = ROOT / "simulations"
BUDGETS = (0.001, 0.01)
# Targets of the comparison (what the policy should reach; reported, not assumed).
AT_MOST_REACTIVE = 1.0  # every scenario and budget (or reactive cannot meet it)
MEDIAN_AT_TIGHT = 0.85  # median scenario at 0.1 %, tidescaler / reactive
MEDIAN_VS_ORACLE = 1.5  # median scenario at 1 %, tidescaler / oracle
ROUTING_WORDS = {
    "random": "random routing (a queue per pod)",
    "pooled": "pooled routing (one shared queue, as consumers of a work queue)",
}


@dataclass(frozen=True)
class Outcome:
    """One scenario's sweep: every swept point and the oracle's later span."""

    name: str
    points: list[SweepPoint]
    oracle_later_hours: float | None
    seconds: float
    sweep: Sweep | None
    # The budget floor on the later span per budget: its replica-hours and the lower bound
    # under it (None: no schedule meets the budget).
    floors: dict[float, tuple[float, float] | None]


def _floors(scenario: Scenario) -> dict[float, tuple[float, float] | None]:
    floors = later_span_floors(scenario, BUDGETS)
    return {b: None if f is None else (f.replica_hours, f.bound_hours) for b, f in floors.items()}


def _run(
    path: Path,
    metadata: tuple[tuple[str, str], ...] = (),
    startup: float | None = None,
    routing: str | None = None,
    seed: int | None = None,
) -> Outcome:
    """One scenario's sweep, its tidescaler trigger metadata updated with `metadata`, and
    with `startup` its pods' start-up (the cluster's and the trigger's), with `routing`
    its queueing, with `seed` its generator's and start-ups' draws."""
    began = time.perf_counter()
    scenario = load_scenario(path)
    name = scenario.name
    if seed is not None:
        scenario = replace(scenario, seed=seed)
        name = f"{name} (seed {seed})"
    if startup is not None:
        scenario = with_sweep_value(scenario, "pod_startup_seconds", f"{startup:g}")
        metadata = (*metadata, ("podStartupSeconds", f"{startup:g}"))
    if routing is not None:
        scenario = replace(scenario, cluster=replace(scenario.cluster, routing=routing))
    if metadata:
        scenario = replace(scenario, tidescaler={**scenario.tidescaler, **dict(metadata)})
    result, points = sweep(scenario)
    oracle = result.policy("oracle")
    later = None if oracle is None or oracle.later is None else oracle.later.replica_hours
    return Outcome(
        name, points, later, time.perf_counter() - began, scenario.sweep, _floors(scenario)
    )


def _span(data: dict[str, float] | None) -> Span | None:
    if data is None:
        return None
    return Span(data["replica_hours"], data["cost_vs_static_peak"], data["slo_violation_ratio"])


def _stored(path: Path) -> Outcome:
    """The runs of a scenario as simulations/run_all.py stored them."""
    scenario = load_scenario(path)
    name = scenario.name
    data = json.loads((SIMULATIONS / "results" / name / "result.json").read_text())
    points = [
        SweepPoint(
            p["parameter"],
            p["value"],
            p["policy"],
            p["replica_hours"],
            p["cost_vs_static_peak"],
            p["slo_violation_ratio"],
            p["p99_latency_seconds"],
            tuple(p["settings"].items()),
            _span(p.get("tuning_span")),
            _span(p.get("later_span")),
        )
        for p in data["sweep"]
    ]
    oracle = [p for p in data["policies"] if p["policy"] == "oracle"]
    later = oracle[0].get("later_span") if oracle else None
    hours = None if later is None else later["replica_hours"]
    return Outcome(name, points, hours, 0.0, scenario.sweep, _floors(scenario))


def _hindsight(outcome: Outcome) -> list[tuple[float, str]]:
    """Per budget, the cheapest swept setting of any policy within the budget on the later
    span (picked with hindsight) over the floor there: a check on the floor itself."""
    found = []
    for budget in BUDGETS:
        floor = outcome.floors.get(budget)
        within_budget = [
            p.later.replica_hours
            for p in outcome.points
            if p.later is not None and p.later.slo_violation_ratio <= budget
        ]
        if floor is not None and floor[0] > 0 and within_budget:
            found.append((min(within_budget) / floor[0], f"{outcome.name} at {100 * budget:g} %"))
    return found


def _least_reachable(floor: tuple[float, float] | None, reactive: float | None) -> float:
    """The least cost over reactive's that a schedule keeping every step below capacity
    can reach within the budget: the floor's bound over reactive's cost; 0 where reactive
    cannot meet the budget and a schedule can, 1 where none can (as the medians count)."""
    if floor is None:
        return 1.0
    return floor[1] / reactive if reactive is not None else 0.0


def _setting(point: SweepPoint) -> str:
    return ", ".join(f"{SWEEP_LABELS.get(k, k)} {v}" for k, v in point.settings)


def _cell(row: BudgetRow, policy: str, best: float | None) -> str:
    pick = row.picks.get(policy)
    if pick is None:
        return "cannot" + (f" (best {100 * best:.2f}%)" if best is not None else "")
    assert pick.later is not None
    miss = " **over**" if pick.later.slo_violation_ratio > row.budget else ""
    return (
        f"{pick.later.cost_vs_static_peak:.3f} ({_setting(pick)}; "
        f"{100 * pick.later.slo_violation_ratio:.3f}%{miss})"
    )


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _for_median(row: BudgetRow, policy: str) -> float:
    """`policy`'s cost over reactive's as the medians count it: infinite where only
    reactive meets the budget, 1.0 where neither does, 0.0 where only `policy` does."""
    if row.cost(policy) is None:
        return math.inf if row.cost("reactive") is not None else 1.0
    ratio = row.ratio(policy, "reactive")
    return ratio if ratio is not None else 0.0


def _median(values: list[float]) -> float | None:
    """The median scenario; of an even count the worse of the middle two (no averaging
    of a ratio with a scenario where a policy cannot meet the budget)."""
    return statistics.median_high(values) if values else None


def _first_half_saving(row: BudgetRow) -> str:
    """What the forecast saved on the span the gate sees, and the ratio reported later."""
    tide, react = row.picks["tidescaler"], row.picks["reactive"]
    assert tide is not None and react is not None and tide.tuning and react.tuning
    saving = 1.0 - tide.tuning.replica_hours / react.tuning.replica_hours
    later = row.ratio("tidescaler", "reactive")
    shown = "-" if later is None else f"{later:.3f}x"
    return f"first-half saving {100 * saving:.2f} %, second half {shown} reactive"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", type=Path)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--from-results", action="store_true")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tidescaler trigger metadata for every scenario, e.g. forecastAction=floor or "
        "metricLagSeconds=0 (repeatable; the default results file is not written)",
    )
    parser.add_argument(
        "--pod-startup-seconds",
        type=float,
        metavar="S",
        help="every scenario's pods take S seconds to start, and the trigger says so "
        "(podStartupSeconds); the default results file is not written",
    )
    parser.add_argument(
        "--routing",
        choices=sorted(ROUTING_WORDS),
        help="every scenario's queueing: random (a queue per pod, as kube-proxy spreads "
        "HTTP requests) or pooled (one shared queue, as for consumers of a work queue); "
        "the default results file is not written",
    )
    parser.add_argument(
        "--seed",
        action="append",
        type=int,
        default=[],
        metavar="N",
        help="run every scenario with seed N instead of its own: generated traffic drawn "
        "anew, and pod start-ups (repeatable, one row per scenario and seed; the default "
        "results file is not written)",
    )
    parser.add_argument(
        "--gate-min-saving",
        type=float,
        default=0.0,
        metavar="F",
        help="the gate turns the forecast on only for a first-half saving of at least F (a "
        "share, 0.005 is 0.5 %%) over reactive (default: 0, any saving; the default "
        "results file is not written otherwise)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the table here too (default: benchmarks/results/frontier.md, and only "
        "for the standard run: every scenario, no --set, --routing, --seed or start-up)",
    )
    args = parser.parse_args(argv)
    files = args.scenarios or sorted(SIMULATIONS.glob("*.yaml"))
    began = time.perf_counter()
    metadata = tuple(tuple(item.split("=", 1)) for item in args.set)
    if any(len(pair) != 2 or not pair[0] for pair in metadata):
        parser.error(f"--set {' '.join(args.set)}: expected KEY=VALUE, e.g. forecastAction=floor")
    changed = (
        bool(metadata)
        or args.pod_startup_seconds is not None
        or args.routing is not None
        or bool(args.seed)
    )
    if args.from_results and changed:
        parser.error(
            "--set, --pod-startup-seconds, --routing and --seed run the scenarios; they "
            "cannot read stored results"
        )
    run = partial(_run, metadata=metadata, startup=args.pod_startup_seconds, routing=args.routing)
    # Every (scenario, seed) pair, scenario by scenario: the table groups a scenario's seeds.
    seeds: list[int | None] = list(args.seed) or [None]
    jobs = [(path, seed) for path in files for seed in seeds]

    def progress(outcome: Outcome, done: int) -> None:
        # A full run takes most of an hour: say what has finished as it does.
        elapsed = time.perf_counter() - began
        print(
            f"[{done}/{len(jobs)}] {outcome.name}: {outcome.seconds:.0f} s "
            f"({elapsed:.0f} s since the start)",
            file=sys.stderr,
            flush=True,
        )

    if args.from_results:
        outcomes = [_stored(path) for path in files]
    elif args.jobs <= 1 or len(jobs) == 1:
        outcomes = []
        for path, seed in jobs:
            outcomes.append(run(path, seed=seed))
            progress(outcomes[-1], len(outcomes))
    else:
        with ProcessPoolExecutor(max_workers=min(args.jobs, len(jobs))) as pool:
            futures = [pool.submit(run, path, seed=seed) for path, seed in jobs]
            for done, future in enumerate(as_completed(futures), 1):
                progress(future.result(), done)
            outcomes = [future.result() for future in futures]
    wall = time.perf_counter() - began
    tuning = common_tuning_budget([outcome.sweep for outcome in outcomes])

    lines: list[str] = []
    ratios: dict[float, list[float]] = {b: [] for b in BUDGETS}
    vs_oracle: dict[float, list[float]] = {b: [] for b in BUDGETS}
    # How close reactive already is to the cost floor: the room any forecast has.
    reactive_vs_oracle: dict[float, list[float]] = {b: [] for b in BUDGETS}
    # ... and to the budget floor (the cheapest clairvoyant schedule within the budget).
    reactive_vs_floor: dict[float, list[float]] = {b: [] for b in BUDGETS}
    reactive_vs_bound: dict[float, list[float]] = {b: [] for b in BUDGETS}
    floor_gaps: list[float] = []  # floor / bound: how far the floor can be from the best
    # Per budget and scenario, the least cost over reactive's any stable schedule can reach
    # (bound / reactive; 0 where reactive cannot and something can; 1 where nothing can).
    reachable: dict[float, list[float]] = {b: [] for b in BUDGETS}
    # The cheapest swept setting of any policy within each budget on the second half (chosen
    # with hindsight), over the floor there: a check on the floor itself.
    hindsight: list[tuple[float, str]] = []
    losses: list[str] = []
    # The forecast gated on the tuning span: on only where its pick beat reactive's there.
    gated_ratios: dict[float, list[float]] = {b: [] for b in BUDGETS}
    gated_losses: list[str] = []
    margin_offs: list[str] = []  # cells the --gate-min-saving margin turns off
    for outcome in outcomes:
        rows = [
            with_gate(row, args.gate_min_saving)
            for row in budget_rows(outcome.points, BUDGETS, ("reactive", "tidescaler"), walk=True)
        ]
        best = {
            name: min(
                (
                    p.tuning.slo_violation_ratio
                    for p in outcome.points
                    if p.policy == name and p.tuning
                ),
                default=None,
            )
            for name in ("reactive", "tidescaler")
        }
        hindsight.extend(_hindsight(outcome))
        floor_gaps.extend(f[0] / f[1] for f in outcome.floors.values() if f is not None and f[1])
        for i, row in enumerate(rows):
            ratio = row.ratio("tidescaler", "reactive")
            tide = row.cost("tidescaler")
            oracle = outcome.oracle_later_hours
            to_oracle = tide / oracle if tide is not None and oracle else None
            react = row.cost("reactive")
            react_to_oracle = react / oracle if react is not None and oracle else None
            if react_to_oracle is not None:
                reactive_vs_oracle[row.budget].append(react_to_oracle)
            found = outcome.floors.get(row.budget)
            react_to_floor = None
            if found is not None and react is not None:
                react_to_floor = react / found[0]
                reactive_vs_floor[row.budget].append(react_to_floor)
                reactive_vs_bound[row.budget].append(react / found[1] if found[1] else math.inf)
            reachable[row.budget].append(_least_reachable(found, react))
            ratios[row.budget].append(_for_median(row, "tidescaler"))
            vs_oracle[row.budget].append(to_oracle if to_oracle is not None else math.inf)
            where = f"{outcome.name} at {100 * row.budget:g} %"
            if (ratio is not None and ratio > AT_MOST_REACTIVE) or (
                tide is None and react is not None
            ):
                # Three decimals: the table's two can show 1.00 for a cell just above.
                how = "only reactive meets it" if ratio is None else f"{ratio:.3f}x"
                losses.append(f"{where} ({how})")
            gated_ratio = row.ratio(GATED, "reactive")
            on = forecast_on(row, args.gate_min_saving)  # None: neither meets the budget
            gated_cell = "-"
            if on is not None:
                shown = _fmt(gated_ratio) if gated_ratio is not None else "only tidescaler"
                gated_cell = f"{shown} ({'on' if on else 'off'})"
            gated_ratios[row.budget].append(_for_median(row, GATED))
            if args.gate_min_saving and on is False and forecast_on(row) is True:
                margin_offs.append(f"{where} ({_first_half_saving(row)})")
            if gated_ratio is not None and gated_ratio > AT_MOST_REACTIVE:
                gated_losses.append(f"{where} ({gated_ratio:.3f}x)")
            lines.append(
                f"| {outcome.name if i == 0 else ''} | {100 * row.budget:g}% | "
                f"{_cell(row, 'reactive', best['reactive'])} | "
                f"{_cell(row, 'tidescaler', best['tidescaler'])} | {_fmt(ratio)} | "
                f"{_fmt(to_oracle)} | {_fmt(react_to_oracle)} | {_fmt(react_to_floor)} | "
                f"{gated_cell} |"
            )

    def med(values: list[float]) -> str:
        m = _median(values)
        if m is None:
            return "-"
        if math.isinf(m):
            return "tidescaler cannot meet the budget"
        return "reactive cannot meet the budget" if m == 0.0 else f"{m:.2f}"

    tight, loose = BUDGETS
    median_tight = _median(ratios[tight])
    median_oracle = _median(vs_oracle[loose])

    def within(value: float | None, limit: float) -> str:
        return "**met**" if value is not None and value <= limit else "**not met**"

    def none_above(named: list[str]) -> str:
        return "**met**" if not named else f"**not met** ({'; '.join(named)})"

    gated_tight = _median(gated_ratios[tight])
    verdicts = [
        f"- tidescaler at most {AT_MOST_REACTIVE:g}x reactive on every scenario and budget: "
        + none_above(losses),
        f"- median scenario at {100 * tight:g} %: tidescaler / reactive {med(ratios[tight])} "
        f"(target <= {MEDIAN_AT_TIGHT}): " + within(median_tight, MEDIAN_AT_TIGHT),
        f"- median scenario at {100 * loose:g} %: tidescaler / oracle {med(vs_oracle[loose])} "
        f"(target <= {MEDIAN_VS_ORACLE}): " + within(median_oracle, MEDIAN_VS_ORACLE),
        "- with the forecast gated (on only where its pick cost less than reactive's on the "
        f"first half), at most {AT_MOST_REACTIVE:g}x reactive on every scenario and budget: "
        + none_above(gated_losses),
        f"- with the gate, median scenario at {100 * tight:g} %: / reactive "
        f"{med(gated_ratios[tight])} (target <= {MEDIAN_AT_TIGHT}): "
        + within(gated_tight, MEDIAN_AT_TIGHT),
    ]
    if args.gate_min_saving:
        verdicts.append(
            f"- turned off by the {100 * args.gate_min_saving:g} % margin (on without it): "
            + (", ".join(margin_offs) or "none")
        )
    room = _median(reactive_vs_oracle[tight])
    if room is not None:
        verdicts.append(
            f"- room at {100 * tight:g} %: on the median scenario where reactive meets the "
            f"budget it costs {room:.2f}x the oracle, so {MEDIAN_AT_TIGHT}x reactive would be "
            f"{MEDIAN_AT_TIGHT * room:.2f}x the oracle"
        )
    floor_room = _median(reactive_vs_floor[tight])
    if floor_room is not None:
        below = sum(MEDIAN_AT_TIGHT * r < 1.0 for r in reactive_vs_bound[tight])
        verdicts.append(
            f"- the budget floor at {100 * tight:g} %: on the median scenario where reactive "
            f"meets the budget it costs {floor_room:.2f}x the floor, so {MEDIAN_AT_TIGHT}x "
            f"reactive would be {MEDIAN_AT_TIGHT * floor_room:.2f}x the floor; "
            f"{MEDIAN_AT_TIGHT}x reactive is below the floor's lower bound (no schedule that "
            f"keeps every step below capacity costs less) on {below} of "
            f"{len(reactive_vs_bound[tight])} such scenarios; the floor is at most "
            f"{max(floor_gaps):.4f}x its bound"
        )
        least_median = _median(reachable[tight])
        if least_median is not None:
            verdicts.append(
                f"- the least median at {100 * tight:g} % any schedule that keeps every step "
                f"below capacity can reach, each scenario at its bound: {least_median:.3f}x "
                f"reactive (target <= {MEDIAN_AT_TIGHT})"
            )
    if hindsight:
        least, where = min(hindsight)
        verdicts.append(
            f"- the floor against every swept setting of both policies picked with hindsight "
            f"(the cheapest within the budget on the second half itself): the least is "
            f"{least:.3f}x the floor ({where}); "
            + (
                "none costs less"
                if least >= 1.0
                else f"{sum(r < 1.0 for r, _ in hindsight)} cells cost less"
            )
        )
    command = "python benchmarks/bench_frontier.py" + (
        " --from-results (after python simulations/run_all.py)" if args.from_results else ""
    )
    command += "".join(f" --set {item}" for item in args.set)
    if args.pod_startup_seconds is not None:
        command += f" --pod-startup-seconds {args.pod_startup_seconds:g}"
    if args.routing is not None:
        command += f" --routing {args.routing}"
    command += "".join(f" --seed {seed}" for seed in args.seed)
    if args.gate_min_saving:
        command += f" --gate-min-saving {args.gate_min_saving:g}"
    command += "".join(f" {path}" for path in args.scenarios)
    timing = (
        f"{wall:.0f} s wall clock with {args.jobs} processes"
        if not args.from_results
        else "runs read from simulations/results"
    )
    which = "The scenarios named" if args.scenarios else "Every scenario in `simulations/`"
    text = "\n".join(
        [
            "# Frontier against frontier (walk-forward)",
            "",
            f"Command: `{command}` ({timing}; Python {platform.python_version()}, "
            f"{platform.machine()}).",
            "",
            *textwrap.wrap(
                f"{which}, {ROUTING_WORDS[args.routing or 'random']}. "
                f"Both policies sweep the same {tuning}, so the forecast is the only "
                "difference between them. At each budget a policy's setting is the cheapest "
                "within the budget on the first half of the evaluation window; the cells give "
                "that setting's cost relative to static-peak and its share of requests over "
                "the SLO on the second half, which the choice never saw (**over**: the pick "
                "missed its budget there). `cannot`: no setting met the budget on the first "
                "half (the fewest violations it reached there in brackets). Ratios are "
                "replica-hours on the second half; the oracle is the cost floor (the fewest "
                "replicas meeting the SLO at every instant, no start-up delay); the budget "
                "floor is the cheapest schedule a clairvoyant scheduler finds within the "
                "budget on the second half (it spends the budget where a replica saves the "
                "fewest violations; no start-up delay; `scaler/sim/floor.py`). Gated: "
                "tidescaler as deployed after a simulation of one's own history, the "
                "forecast on (tidescaler's pick) only where that pick cost less than "
                "reactive's on the first half, else off (reactive's pick: with the forecast "
                "off tidescaler moves replicas exactly as reactive does); its cost over "
                "reactive's on the second half, and whether the forecast is on.",
                width=84,
            ),
            "",
            "| scenario | budget | reactive | tidescaler | tidescaler / reactive "
            "| tidescaler / oracle | reactive / oracle | reactive / floor | gated / reactive |",
            "|---|---:|---|---|---:|---:|---:|---:|---:|",
            *lines,
            "",
            "Targets (medians count a policy that cannot meet a budget as infinitely costly,",
            "and tidescaler as cheaper where only reactive cannot):",
            "",
            *verdicts,
            "",
        ]
    )
    print(text)
    out = args.out
    if out is None and not args.scenarios and not changed and not args.gate_min_saving:
        out = ROOT / "benchmarks" / "results" / "frontier.md"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
