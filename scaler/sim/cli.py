"""`tidescaler simulate`: a scenario file and/or flags in, table, JSON, CSV, plots and report out.

The traffic comes from a scenario file, a trace file (`--trace FILE|-`), a
Prometheus (`--prometheus-url` and `--query`) or the tide generator
(`--synthetic`). With none of them it runs the demo scenario bundled
with the package, so the command works on a fresh install.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from scaler.cli_support import (
    OutputPathError,
    ProgressLines,
    check_file_not_in_folder_output,
    check_folder_not_an_input,
    check_not_an_input,
    check_output_dir,
    check_output_file,
    error_text,
    finite_float,
    given,
    track_given,
    warning_text,
)
from scaler.policy import MAX_REPLICAS, longest_range_seconds
from scaler.sim.cluster import ClusterModel, PodStartup
from scaler.sim.sanity import SanityError, check_memory, check_slo, peak_warning
from scaler.sim.scenario import (
    HIGHS,
    LOWS,
    MAX_CONCURRENCY,
    POLICY_NAMES,
    Scenario,
    ScenarioError,
    Sweep,
    bundled_scenario_path,
    check_scenario,
    load_scenario,
    merge_sweeps,
    parse_scenario,
    parse_sweep,
    swept_policies,
    with_service,
)
from scaler.sim.traffic import TideSpec, Traffic
from scaler.trace_input import (
    add_trace_source_arguments,
    check_trace_source,
    describe,
    load_trace,
    say_notes,
    wants_trace,
)
from scaler.traces import Trace, TraceError, read_trace

if TYPE_CHECKING:  # the runner is imported when a simulation runs
    from scaler.sim.runner import SimulationResult

DEFAULT_CLUSTER = ClusterModel()

# The bundled demo draws reactive's and tidescaler's frontiers over a few targets, so
# that the first run already compares them at equal violations (in a few seconds).
DEMO_SWEEP = Sweep(
    (("target_utilization", ("0.5", "0.6", "0.8", "0.9")),), ("reactive", "tidescaler")
)


def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="replay traffic through KEDA + HPA + pods and compare policies on cost and latency",
        description="Replay a trace (or synthetic tides) through a model of KEDA, the HPA, pod "
        "start-up and a queue, driving the tidescaler engine, and compare policies on cost "
        "(replica-hours) and what users feel (latency, SLO violations, failed requests). "
        "Traffic comes from a scenario, --trace (a file or -), --prometheus-url with --query, "
        "or --synthetic; with none of them, runs the bundled demo scenario.",
    )
    p.add_argument(
        "scenario", nargs="?", metavar="SCENARIO.yaml", help="scenario file (default: none)"
    )
    source = p.add_mutually_exclusive_group()
    add_trace_source_arguments(p, source)
    source.add_argument("--synthetic", action="store_true", help="generated diurnal + weekly tides")
    p.add_argument(
        "--peak-to-valley",
        type=finite_float,
        metavar="R",
        help=f"synthetic tide ratio, 2..100 (default: {TideSpec().peak_to_valley:g})",
    )
    p.add_argument(
        "--days",
        type=finite_float,
        metavar="D",
        help="simulate only the first D days (default: all)",
    )
    p.add_argument(
        "--capacity-per-replica",
        type=finite_float,
        metavar="RPS",
        help="requests/s one replica serves at full load (default: the scenario's, else "
        f"{DEFAULT_CLUSTER.capacity_per_replica:g})",
    )
    p.add_argument(
        "--pod-startup-seconds",
        type=finite_float,
        metavar="S",
        help="decision-to-Ready time of a new pod (default: the scenario's, else "
        f"{DEFAULT_CLUSTER.pod_startup.seconds:g})",
    )
    p.add_argument(
        "--min-replicas",
        type=int,
        metavar="N",
        help="ScaledObject minReplicaCount (default: the scenario's, else "
        f"{DEFAULT_CLUSTER.min_replicas})",
    )
    p.add_argument(
        "--max-replicas",
        type=int,
        metavar="N",
        help="ScaledObject maxReplicaCount (default: the scenario's, else "
        f"{DEFAULT_CLUSTER.max_replicas})",
    )
    p.add_argument(
        "--polling-interval-seconds",
        type=finite_float,
        metavar="S",
        help="KEDA's pollingInterval, a multiple of the HPA sync period (default: the "
        f"scenario's, else {DEFAULT_CLUSTER.polling_interval_seconds:g})",
    )
    p.add_argument(
        "--cooldown-seconds",
        type=finite_float,
        metavar="S",
        help="KEDA's cooldownPeriod before scaling to zero (default: the scenario's, else "
        f"{DEFAULT_CLUSTER.cooldown_seconds:g})",
    )
    p.add_argument(
        "--service-time-ms",
        type=finite_float,
        metavar="MS",
        help="mean service time of one request; with --capacity-per-replica or "
        "--concurrency-per-pod it fixes the third (default: the scenario's, else "
        f"{DEFAULT_CLUSTER.service_time_ms:g})",
    )
    p.add_argument(
        "--concurrency-per-pod",
        type=int,
        metavar="N",
        help="requests one pod serves at once (default: the scenario's, else capacity x "
        "service time)",
    )
    p.add_argument(
        "--routing",
        choices=("random", "pooled"),
        help="random: each pod its own queue, as kube-proxy spreads HTTP requests; pooled: one "
        f"shared queue (default: the scenario's, else {DEFAULT_CLUSTER.routing})",
    )
    p.add_argument(
        "--request-timeout-seconds",
        type=finite_float,
        metavar="S",
        help="a request waiting longer fails (default: the scenario's, else "
        f"{DEFAULT_CLUSTER.timeout_seconds:g})",
    )
    p.add_argument(
        "--warmup-days",
        type=finite_float,
        metavar="D",
        help="days simulated before the scores start, for the forecaster's history "
        "(default: the scenario's, else 1)",
    )
    p.add_argument(
        "--slo-ms",
        type=finite_float,
        metavar="MS",
        help="latency SLO in milliseconds (default: the scenario's, else 500)",
    )
    p.add_argument(
        "--policies",
        metavar="a,b",
        help=f"subset of {','.join(POLICY_NAMES)} (default: all)",
    )
    p.add_argument(
        "--target-utilization",
        type=finite_float,
        metavar="F",
        help="per-replica target of every policy, as a share of capacity (default: the "
        "scenario's, else 0.7)",
    )
    p.add_argument(
        "--scale", type=finite_float, metavar="F", help="multiply the traffic by F (default: 1)"
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed of the generator and pod start-ups (default: the scenario's, else 0)",
    )
    p.add_argument(
        "--sweep",
        metavar="PARAM=v1,v2,...",
        action="append",
        help="rerun over a parameter (repeat for a grid): target_utilization, threshold, "
        "pod_startup_seconds and scale_down_stabilization_seconds move every policy; "
        "forecastQuantile, podStartupSeconds and forecastHistory tidescaler only (default: none)",
    )
    p.add_argument(
        "--sweep-policies",
        metavar="a,b",
        help="policies the sweep reruns (default: all but oracle)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument(
        "--timeline-csv",
        metavar="FILE",
        help="write every step's demand and replicas (default: none)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write report.md, PNG plots and result.json into this folder (default: none)",
    )
    from scaler.sim.from_cluster import add_from_cluster_arguments

    add_from_cluster_arguments(p)
    # Refused with generated traffic, where they change nothing (see _refuse_trace_flags).
    track_given(p, "--unit", "--fill-missing")
    p.set_defaults(func=run_simulate)
    return p


# Flags that set a scenario key, checked against that key's sane range (scenario.HIGHS).
_FLAG_KEYS = (
    ("--capacity-per-replica", "capacity_per_replica"),
    ("--service-time-ms", "service_time_ms"),
    ("--request-timeout-seconds", "timeout_seconds"),
    ("--pod-startup-seconds", "pod_startup_seconds"),
    ("--polling-interval-seconds", "polling_interval_seconds"),
    ("--cooldown-seconds", "cooldown_seconds"),
    ("--slo-ms", "slo_ms"),
    ("--days", "days"),
    ("--warmup-days", "warmup_days"),
    ("--scale", "scale"),
)


def _check_ranges(args: argparse.Namespace) -> None:
    """Each numeric flag within its key's sane range (finite already: `finite_float`);
    the lower ends (> 0, >= 0) are checked where each flag is applied."""
    for flag, key in _FLAG_KEYS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is None:
            continue
        # The value as typed (repr is the shortest text that reads back as it): :g
        # rounds 36500.0001 to 36500, the very bound it is refused against.
        typed = repr(value).removesuffix(".0")
        if value > HIGHS[key]:
            raise ScenarioError(f"{flag}={typed}: expected at most {HIGHS[key]:g}")
        if key in LOWS and 0 < value < LOWS[key]:
            raise ScenarioError(f"{flag}={typed}: expected at least {LOWS[key]:g}")


def build_scenario(args: argparse.Namespace) -> Scenario:
    """The scenario file (or the bundled demo, or defaults) with the flags applied."""
    _check_ranges(args)
    demo = False
    trace_label = args.trace or args.prometheus_url
    # The rules across keys are checked once the flags are applied (below): a flag may
    # be what mends them (--slo-ms for an SLO the file's cluster cannot reach).
    if args.scenario:
        scenario = load_scenario(args.scenario, cross_check=False)
    elif trace_label or args.synthetic:
        name = "synthetic"
        if args.prometheus_url:
            name = "prometheus"
        elif args.trace:
            name = "stdin" if args.trace == "-" else Path(args.trace.removesuffix(".gz")).stem
        data: dict[str, Any] = {"name": name}
        if trace_label:
            data["trace"] = trace_label
        else:
            data["synthetic"] = {}
        scenario = parse_scenario(data, "flags", Path.cwd(), cross_check=False)
    else:
        if args.query:
            # The demo's traffic with the user's query's rate window is neither theirs
            # nor the demo: most likely the --prometheus-url of a two-line example got lost.
            raise ScenarioError(
                "--query without --prometheus-url, --trace, --synthetic or a scenario file "
                "would simulate the bundled demo's traffic; add --prometheus-url URL to "
                "fetch your traffic with the query (or --trace FILE with its export)"
            )
        scenario = load_scenario(bundled_scenario_path(), cross_check=False)
        demo = True
    if trace_label:
        scenario = replace(scenario, traffic_source=trace_label, tide=None)
    scenario = _with_tide(args, scenario)
    _refuse_trace_flags(args, scenario)
    cluster = scenario.cluster
    if args.capacity_per_replica is not None:
        if args.capacity_per_replica <= 0:
            raise ScenarioError(
                f"--capacity-per-replica={args.capacity_per_replica:g}: expected > 0"
            )
        cluster = replace(cluster, capacity_per_replica=args.capacity_per_replica)
    if args.service_time_ms is not None or args.concurrency_per_pod is not None:
        if args.service_time_ms is not None and args.service_time_ms <= 0:
            raise ScenarioError(f"--service-time-ms={args.service_time_ms:g}: expected > 0")
        if args.concurrency_per_pod is not None and not (
            1 <= args.concurrency_per_pod <= MAX_CONCURRENCY
        ):
            raise ScenarioError(
                f"--concurrency-per-pod={args.concurrency_per_pod}: expected 1 to "
                f"{MAX_CONCURRENCY:,}"
            )
        cluster = with_service(
            cluster,
            capacity_per_replica=args.capacity_per_replica,
            service_time_ms=args.service_time_ms,
            concurrency_per_pod=args.concurrency_per_pod,
        )
    if args.routing is not None:
        cluster = replace(cluster, routing=args.routing)
    if args.pod_startup_seconds is not None:
        if args.pod_startup_seconds < 0:
            raise ScenarioError(
                f"--pod-startup-seconds={args.pod_startup_seconds:g}: expected >= 0"
            )
        cluster = replace(cluster, pod_startup=PodStartup(seconds=args.pod_startup_seconds))
    cluster = _cluster_flags(args, cluster)
    scenario = replace(scenario, cluster=cluster)
    if args.warmup_days is not None:
        if args.warmup_days < 0:
            raise ScenarioError(f"--warmup-days={args.warmup_days:g}: expected >= 0")
        scenario = replace(scenario, warmup_days=args.warmup_days)
    if args.slo_ms is not None:
        if args.slo_ms <= 0:
            raise ScenarioError(f"--slo-ms={args.slo_ms:g}: expected > 0")
        scenario = replace(scenario, slo_ms=args.slo_ms)
    if args.target_utilization is not None:
        if not 0 < args.target_utilization <= 1:
            raise ScenarioError(
                f"--target-utilization={args.target_utilization:g}: expected 0 < F <= 1"
            )
        scenario = replace(scenario, target_utilization=args.target_utilization)
    if args.scale is not None:
        if args.scale <= 0:
            raise ScenarioError(f"--scale={args.scale:g}: expected > 0")
        scenario = replace(scenario, scale=args.scale)
    if args.days is not None:
        if args.days <= 0:
            raise ScenarioError(f"--days={args.days:g}: expected > 0")
        scenario = replace(scenario, days=args.days)
    if args.seed is not None:
        if args.seed < 0:  # numpy's generators take no negative seed
            raise ScenarioError(f"--seed={args.seed}: expected a whole number >= 0")
        scenario = replace(scenario, seed=args.seed)
    if args.query:
        # The query shown in the report's ScaledObject is the user's, and so is the rate
        # window every policy's metric trails the demand by (reactive's as the forecast's).
        scenario = replace(scenario, tidescaler={**scenario.tidescaler, "query": args.query})
        window = longest_range_seconds(args.query)
        if window:
            cluster = replace(scenario.cluster, rate_window_seconds=window)
            scenario = replace(scenario, cluster=cluster)
    if args.policies:
        names = tuple(dict.fromkeys(n.strip() for n in args.policies.split(",") if n.strip()))
        unknown = [n for n in names if n not in POLICY_NAMES]
        if unknown or not names:
            raise ScenarioError(
                f"--policies={args.policies}: {', '.join(unknown) or 'empty'} not known; "
                f"expected any of {','.join(POLICY_NAMES)}"
            )
        scenario = replace(scenario, policies=names)
    scenario = _with_sweep(args, scenario, demo)
    problems = check_scenario(scenario)
    if problems:
        raise ScenarioError("invalid scenario:\n  " + "\n  ".join(problems))
    return scenario


def _with_tide(args: argparse.Namespace, scenario: Scenario) -> Scenario:
    """The synthetic tide of --synthetic (or of the scenario) shaped by --peak-to-valley,
    which is refused where there is no tide to shape."""
    ratio = args.peak_to_valley
    if ratio is not None and not args.synthetic and scenario.tide is None:
        fix = "add --synthetic, or drop the flag"
        if wants_trace(args):
            replays = "the traffic of --trace or --prometheus-url is replayed as it is"
            fix = "drop the flag"
        elif scenario.generator is not None:
            replays = f"{_scenario_name(scenario)}'s synthetic traffic is not the tide"
        else:
            replays = f"{_scenario_name(scenario)} replays its trace"
        raise ScenarioError(
            f"--peak-to-valley={ratio:g} shapes generated traffic (--synthetic); {replays}: {fix}"
        )
    if not args.synthetic and ratio is None:
        return scenario
    tide = scenario.tide or TideSpec()
    if ratio is not None:
        if not 2.0 <= ratio <= 100.0:
            raise ScenarioError(f"--peak-to-valley={ratio:g}: expected 2 to 100")
        tide = replace(tide, peak_to_valley=ratio)
    return replace(scenario, tide=tide, traffic_source="synthetic")


def _refuse_trace_flags(args: argparse.Namespace, scenario: Scenario) -> None:
    """--unit and --fill-missing say how to read a trace: with generated traffic there is
    none, and a flag that changes nothing must not look as if it had been applied."""
    if wants_trace(args) or (scenario.tide is None and scenario.generator is None):
        return
    source = "--synthetic" if args.synthetic else f"{_scenario_name(scenario)}'s synthetic traffic"
    for flag in ("--unit", "--fill-missing"):
        if given(args, flag):
            raise ScenarioError(
                f"{flag} says how to read a trace, and the traffic here is generated "
                f"({source}): drop {flag}, or give the trace with --trace"
            )


def _with_sweep(args: argparse.Namespace, scenario: Scenario, demo: bool) -> Scenario:
    """--sweep, else the scenario's own sweep, else the demo's, rerunning the policies of
    --sweep-policies: refused when there is no sweep for it to apply to."""
    policies = None
    if args.sweep_policies is not None:
        policies = tuple(n.strip() for n in args.sweep_policies.split(",") if n.strip())
    if args.sweep:
        sweeps = [parse_sweep(s) for s in args.sweep]
        return replace(scenario, sweep=merge_sweeps(sweeps, policies))
    if scenario.sweep is not None:
        if policies is None:
            return scenario
        return replace(scenario, sweep=merge_sweeps([scenario.sweep], policies))
    if demo:
        sweep = DEMO_SWEEP if policies is None else merge_sweeps([DEMO_SWEEP], policies)
        demo_sweep = replace(scenario, sweep=sweep)
        if policies is None and not swept_policies(demo_sweep):
            return scenario  # only the oracle or static-peak run: nothing to sweep
        return demo_sweep
    if policies is not None:
        raise ScenarioError(
            f"--sweep-policies={args.sweep_policies} names the policies a sweep reruns, and "
            "there is no sweep: add --sweep PARAM=v1,v2,..., or drop --sweep-policies"
        )
    return scenario


def _scenario_name(scenario: Scenario) -> str:
    """The scenario as the user knows it: a file they gave, or the bundled demo."""
    return (
        "the bundled demo" if scenario.origin == str(bundled_scenario_path()) else scenario.origin
    )


def _cluster_flags(args: argparse.Namespace, cluster: ClusterModel) -> ClusterModel:
    """The cluster settings given as flags, checked as the scenario file's keys are."""
    if args.min_replicas is not None:
        if not 0 <= args.min_replicas <= MAX_REPLICAS:
            raise ScenarioError(
                f"--min-replicas={args.min_replicas}: expected 0 to {MAX_REPLICAS:,}"
            )
        cluster = replace(cluster, min_replicas=args.min_replicas)
    if args.max_replicas is not None:
        # KEDA's maxReplicaCount, as the tidescaler policy checks maxReplicas.
        if not 1 <= args.max_replicas <= MAX_REPLICAS:
            raise ScenarioError(
                f"--max-replicas={args.max_replicas}: expected 1 to {MAX_REPLICAS:,}"
            )
        cluster = replace(cluster, max_replicas=args.max_replicas)
    if cluster.min_replicas > cluster.max_replicas:
        raise ScenarioError(
            f"min replicas {cluster.min_replicas} is above max replicas {cluster.max_replicas}; "
            "check --min-replicas and --max-replicas"
        )
    for flag, field_name, value in (
        ("--cooldown-seconds", "cooldown_seconds", args.cooldown_seconds),
        ("--request-timeout-seconds", "timeout_seconds", args.request_timeout_seconds),
    ):
        if value is not None:
            if value <= 0:
                raise ScenarioError(f"{flag}={value:g}: expected > 0")
            cluster = replace(cluster, **{field_name: value})
    if args.polling_interval_seconds is not None:
        ratio = args.polling_interval_seconds / cluster.hpa_sync_seconds
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            raise ScenarioError(
                f"--polling-interval-seconds={args.polling_interval_seconds:g}: expected a whole "
                f"multiple of the HPA sync period, {cluster.hpa_sync_seconds:g}s"
            )
        cluster = replace(cluster, polling_interval_seconds=args.polling_interval_seconds)
    return cluster


def load_traffic(args: argparse.Namespace, scenario: Scenario) -> tuple[Traffic, Trace | None]:
    """The traffic the flags name (a file, stdin or Prometheus), else the scenario's.

    A scenario's trace file is read like --trace: --unit and --fill-missing apply, and
    the reader's notes are said."""
    if wants_trace(args):
        trace = load_trace(args, sys.stderr)
    else:
        path = scenario.trace_file()
        if path is None:
            return scenario.load_traffic(), None
        trace = read_trace(path, unit=args.unit, fill_missing=args.fill_missing)
        say_notes(trace, sys.stderr)
    traffic = Traffic(
        float(trace.timestamps[0]),
        trace.step_seconds,
        trace.values / trace.step_seconds,
        name=scenario.name,
    )
    return traffic.clipped(scenario.days).scaled(scenario.scale), trace


def run_simulate(args: argparse.Namespace) -> int:
    from scaler.sim.report import (
        OUTPUT_FILES,
        dumps,
        render_table,
        result_json,
        write_outputs,
        write_timeline_csv,
    )
    from scaler.sim.runner import capacity_note, demand_problem, sweep

    if args.from_cluster:  # the what-if on a live workload (scaler/sim/from_cluster.py)
        from scaler.sim.from_cluster import run_simulate as run_from_cluster

        return run_from_cluster(args)
    err = Console(stderr=True, soft_wrap=True)
    try:
        check_output_dir(args.out, "--out")
        check_output_file(args.timeline_csv, "--timeline-csv")
        check_trace_source(args)
        scenario = build_scenario(args)
        inputs = [("the scenario file", args.scenario), ("the trace", args.trace)]
        if not args.prometheus_url:
            inputs.append(("the scenario's trace", scenario.trace_file()))
        check_not_an_input(args.timeline_csv, "--timeline-csv", inputs)
        check_folder_not_an_input(args.out, OUTPUT_FILES, "--out", inputs)
        check_file_not_in_folder_output(
            args.timeline_csv, "--timeline-csv", args.out, OUTPUT_FILES, "--out"
        )
        slo_warning = check_slo(scenario)
        traffic, trace = load_traffic(args, scenario)
        check_memory(scenario, traffic)
        problem = demand_problem(scenario, traffic)
        if problem is not None:
            raise ScenarioError(problem)
    except (ScenarioError, TraceError, SanityError, OutputPathError) as error:
        err.print(error_text(error), highlight=False)
        return 2
    warnings = (
        slo_warning,
        _peak_warning(scenario, traffic),
        capacity_note(scenario, traffic),
        _short_traffic_note(args, traffic),
    )
    for warning in warnings:
        if warning:
            err.print(warning_text(warning), highlight=False)
    progress = Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    lines = None if err.is_terminal else ProgressLines(sys.stderr, "simulate")
    tasks: dict[str, Any] = {}

    def report(policy: str, fraction: float) -> None:
        if lines is not None:
            lines.update(policy, fraction)
            return
        if policy not in tasks:
            tasks[policy] = progress.add_task(policy, total=1.0)
        progress.update(tasks[policy], completed=fraction)

    try:
        with progress:
            result, points = sweep(scenario, traffic, report)
    except (ScenarioError, TraceError) as error:
        err.print(error_text(error), highlight=False)
        return 2
    blind = _no_forecast_warning(result)
    if blind:
        err.print(warning_text(blind), highlight=False)
    if args.json:
        data = result_json(result, points)
        if trace is not None:
            data["input"] = describe(trace)
        sys.stdout.write(dumps(data) + "\n")
    else:
        render_table(result, Console(), points)
    # The paths were checked before the run; a disk that fills up meanwhile still fails here.
    flag = "--timeline-csv"
    try:
        if args.timeline_csv:
            write_timeline_csv(result, Path(args.timeline_csv))
        flag = "--out"
        if args.out:
            command = "tidescaler simulate " + " ".join(
                shlex.quote(a) for a in (sys.argv[2:] if len(sys.argv) > 2 else [])
            )
            written = write_outputs(result, points, Path(args.out), command.strip())
            if not args.json:
                Console().print(f"wrote {', '.join(str(p) for p in written)}", markup=False)
    except OSError as error:
        path = args.timeline_csv if flag == "--timeline-csv" else args.out
        reason = error.strerror or error.__class__.__name__
        err.print(error_text(f"{flag} {path}: cannot write ({reason})"), highlight=False)
        return 1
    return 0


def _no_forecast_warning(result: SimulationResult) -> str | None:
    """A warning when tidescaler's forecast was on and never fitted: the comparison with
    reactive then says nothing about forecasting."""
    tide = result.policy("tidescaler")
    if tide is None:
        return None
    metadata = tide.detail.get("metadata")
    if not isinstance(metadata, dict) or str(metadata.get("forecast", "off")) == "off":
        return None
    fits, failures = tide.detail.get("forecast_fits"), tide.detail.get("forecast_failures")
    if not isinstance(fits, int) or not isinstance(failures, int) or fits > failures:
        return None
    return (
        f"tidescaler's forecast never fitted ({fits} refit(s), none with a forecast: too "
        "little history before and during the evaluated days), so tidescaler ran without "
        "one; give it more history (a longer trace, --warmup-days)"
    )


def _short_traffic_note(args: argparse.Namespace, traffic: Traffic) -> str | None:
    """Said when --days asks for more than the traffic holds (it is all simulated)."""
    held = traffic.duration_seconds / 86400.0
    if args.days is None or args.days <= held + traffic.step_seconds / 86400.0:
        return None
    return f"--days {args.days:g}: the traffic holds {held:.2f} days; all of it is simulated"


def _peak_warning(scenario: Scenario, traffic: Traffic) -> str | None:
    """`sanity.peak_warning`, said truthfully when there is no traffic at all: policies
    that scale to zero then run no replica, and the others keep their least."""
    rate = traffic.rate_per_second
    if len(rate) and float(rate.max()) > 0:
        return peak_warning(scenario, traffic)
    least = scenario.cluster.min_replicas
    runs = (
        "the autoscaled policies scale to zero and run no replica, static-peak and hpa-cpu keep one"
        if least == 0
        else f"every policy but the oracle stays at min replicas {least}"
    )
    return (
        f"the traffic is zero throughout: {runs}, and the comparison says nothing; "
        "check the trace (and --unit, --query or --scale)"
    )
