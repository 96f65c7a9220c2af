"""`tidescaler fleet`: evaluate many services at once and say where a forecast pays."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from scaler.cli_support import (
    PROGRESS_EVERY_SECONDS,
    OutputPathError,
    ProgressLines,
    check_output_dir,
    error_text,
    prometheus_url_arg,
)
from scaler.durations import parse_duration
from scaler.fleet.evaluate import FAILED, FleetSettings, ServiceResult, fleet_scenario
from scaler.fleet.execute import MAX_WORKERS, ResultCache, run_fleet
from scaler.fleet.report import describe_left_out, totals, write_report
from scaler.fleet.services import (
    TRACE_SUFFIXES,
    FleetInputError,
    ServiceSource,
    from_folder,
    from_prometheus,
    skipped_files,
)
from scaler.policy import MAX_POD_STARTUP_SECONDS, MAX_REPLICAS
from scaler.sim.cluster import ClusterModel
from scaler.sim.scenario import ScenarioError, check_scenario, with_service
from scaler.trace_input import add_unit_argument
from scaler.traces import FILL_MISSING

DAY = 86400.0
# Every service simulates up to 3 x --peak-replicas replicas (fleet_scenario), which
# the trigger metadata must accept as maxReplicas.
MAX_PEAK_REPLICAS = MAX_REPLICAS // 3
# Under a day of history the walk-forward halves hold less than a daily cycle each and
# the forecast's skill is scored from too few origins to mean anything.
MIN_HISTORY_SECONDS = DAY
EXIT_ALL_FAILED = 1
INTERRUPTED = 130  # as every tidescaler command stopped by Ctrl-C (128 + SIGINT)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _ratio(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:  # (NaN fails this too)
        raise argparse.ArgumentTypeError(f"{text!r}: expected a ratio in [0, 1), e.g. 0.01")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number > 0")
    return value


def _startup_seconds(text: str) -> float:
    value = _number(text)
    if not 0 < value <= MAX_POD_STARTUP_SECONDS:  # what podStartupSeconds accepts
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected seconds above 0 and at most {MAX_POD_STARTUP_SECONDS:g} (a day)"
        )
    return value


def _unix_seconds(text: str) -> float:
    value = _number(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected finite Unix seconds >= 0")
    return value


def _whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected a whole number from {low} to {high}"
            )
        return value

    return parse


def _duration_from(low: float, shown: str) -> Callable[[str], float]:
    """An argparse type: a duration of at least `low` seconds (`shown` in the error)."""

    def parse(text: str) -> float:
        try:
            value = parse_duration(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if value < low or value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a duration of at least {shown}")
        return value

    return parse


def add_fleet_parser(subparsers: Any) -> argparse.ArgumentParser:
    defaults = FleetSettings()
    p: argparse.ArgumentParser = subparsers.add_parser(
        "fleet",
        help="evaluate many services and recommend where predictive scaling pays",
        description="For every service (a trace file in a folder, or a label set of one "
        "Prometheus query with a by (...) clause), backtest the forecaster and compare the "
        "cheapest reactive and tidescaler settings within a violation budget; write a ranked "
        "fleet report (Markdown, JSON, CSV, PNG). Work runs on a Dask cluster: local with "
        "every core by default, or the scheduler given by --scheduler.",
    )
    source = p.add_argument_group("services (one of)")
    source.add_argument(
        "--traces", metavar="DIR", help="a folder with one trace file per service (default: none)"
    )
    source.add_argument(
        "--fill-missing",
        choices=FILL_MISSING,
        default="error",
        help="missing intervals in the trace files or Prometheus series: error names the first "
        "one; zero writes no traffic; hold repeats the last value (default: %(default)s)",
    )
    add_unit_argument(source)
    source.add_argument(
        "--prometheus-url",
        metavar="URL",
        type=prometheus_url_arg,
        help="Prometheus to read from (default: none)",
    )
    source.add_argument(
        "--query",
        metavar="PROMQL",
        help="one series per service, e.g. sum by (service) (rate(http_requests_total[5m])) "
        "(default: none)",
    )
    source.add_argument(
        "--since",
        type=_duration_from(1.0, "1s"),
        default=None,
        metavar="DURATION",
        help="history to read from Prometheus (default: 14d)",
    )
    source.add_argument(
        "--step",
        type=_duration_from(1.0, "1s"),
        default=None,
        metavar="DURATION",
        help="resolution of that history (default: 5m)",
    )
    source.add_argument(
        "--end",
        type=_unix_seconds,
        metavar="UNIX_SECONDS",
        help="end of the history; now floored to the hour, so that a rerun within the hour "
        "resumes from the cache (default: now)",
    )
    judge = p.add_argument_group("judgement")
    judge.add_argument(
        "--budget",
        type=_ratio,
        default=defaults.violation_budget,
        help="share of requests allowed over the SLO or failed (default: %(default)s)",
    )
    judge.add_argument(
        "--targets",
        type=_target_range,
        default=None,
        metavar="LOW-HIGH",
        help="per-replica targets swept for both policies, in 1 %% steps, e.g. 0.3-0.95 "
        "(default: 0.4-0.95)",
    )
    judge.add_argument(
        "--slo-ms",
        type=_positive,
        default=defaults.slo_ms,
        help="latency SLO in milliseconds (default: %(default)s)",
    )
    judge.add_argument(
        "--min-saving",
        type=_ratio,
        default=defaults.min_saving,
        help="recommend tidescaler only from this saving on (default: %(default)s)",
    )
    judge.add_argument(
        "--min-history",
        type=_duration_from(MIN_HISTORY_SECONDS, "1d"),
        default="3d",
        metavar="DURATION",
        help="shorter services get 'too little history'; at least 1d (default: %(default)s)",
    )
    judge.add_argument(
        "--capacity-per-replica",
        type=_positive,
        metavar="RPS",
        help="requests/s one replica serves (default: each service's p99 demand / --peak-replicas)",
    )
    judge.add_argument(
        "--peak-replicas",
        type=_whole(1, MAX_PEAK_REPLICAS),
        default=defaults.peak_replicas,
        help=f"replicas at a service's peak when capacity is not given, 1 to {MAX_PEAK_REPLICAS} "
        "(default: %(default)s)",
    )
    judge.add_argument(
        "--pod-startup-seconds",
        type=_startup_seconds,
        default=defaults.pod_startup_seconds,
        help="decision-to-Ready time of a new pod (default: %(default)s)",
    )
    run = p.add_argument_group("execution")
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        type=_scheduler_address,
        help="a Dask scheduler, e.g. tcp://dask-scheduler:8786 (default: a local cluster)",
    )
    run.add_argument(
        "--workers",
        type=_whole(1, MAX_WORKERS),
        metavar="N",
        help=f"local worker processes, 1 to {MAX_WORKERS} (default: every core)",
    )
    run.add_argument(
        "--out",
        default="fleet-report",
        metavar="DIR",
        help="where fleet.md, fleet.json, fleet.csv and savings.png go; not the --traces folder "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--cache", metavar="DIR", help="finished services, for resuming (default: OUT/.cache)"
    )
    run.add_argument(
        "--no-cache", action="store_true", help="recompute every service (default: off)"
    )
    p.set_defaults(func=run_fleet_command)
    return p


def _scheduler_address(text: str) -> str:
    """An argparse type: a Dask scheduler's address, checked as Dask will read it."""
    from distributed.comm.addressing import parse_address, parse_host_port

    shape = "expected tcp://HOST:PORT or tls://HOST:PORT, e.g. tcp://dask-scheduler:8786"
    try:
        scheme, location = parse_address(text.strip())
        if scheme not in ("tcp", "tls"):
            raise ValueError(f"{scheme}:// is not a network address")
        host, port = parse_host_port(location)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text[:100]!r}: {err}; {shape}") from None
    if not host or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text[:100]!r}: no host or a port out of range; {shape}")
    return text.strip()


# The lowest target a sweep may start at: below it a replica idles most of its capacity.
MIN_TARGET = 0.05


def _target_range(text: str) -> tuple[float, ...]:
    """`LOW-HIGH` as targets in 1 % steps, both ends included (0.3-0.95)."""
    low_text, dash, high_text = text.strip().partition("-")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LOW-HIGH, two shares of capacity such as 0.3-0.95, got {text[:40]!r}"
        ) from None
    if not dash or not (MIN_TARGET <= low < high <= 1.0):
        raise argparse.ArgumentTypeError(
            f"expected LOW-HIGH with {MIN_TARGET:g} <= LOW < HIGH <= 1, got {text[:40]!r}"
        )
    steps = round((high - low) / 0.01)
    return tuple(round(low + 0.01 * i, 2) for i in range(steps + 1))


def settings_from(args: argparse.Namespace) -> FleetSettings:
    targets = {} if args.targets is None else {"targets": args.targets}
    settings = FleetSettings(
        **targets,
        violation_budget=args.budget,
        min_history_days=args.min_history / DAY,
        min_saving=args.min_saving,
        capacity_per_replica=args.capacity_per_replica,
        peak_replicas=args.peak_replicas,
        pod_startup_seconds=args.pod_startup_seconds,
        slo_ms=args.slo_ms,
    )
    check_settings(settings)
    return settings


def check_settings(settings: FleetSettings) -> None:
    """FleetInputError when no service could be evaluated with `settings`.

    Checked once, before any work: otherwise every service fails (or meets no
    setting) for the same reason, after minutes on the cluster.
    """
    capacity = settings.capacity_per_replica
    if capacity is None:
        capacity = ClusterModel().capacity_per_replica
        cluster = ClusterModel()
        service_of = "the simulated replica's mean service time"
        remedy = "give a longer --slo-ms"
    else:
        try:
            cluster = with_service(ClusterModel(), capacity_per_replica=capacity)
        except ScenarioError as error:
            raise FleetInputError(f"--capacity-per-replica {capacity:g}: {error}") from None
        service_of = "the mean service time of one request, 1 / --capacity-per-replica"
        remedy = "give a longer --slo-ms or a larger --capacity-per-replica"
    service_ms = 1000.0 * cluster.service_time_seconds
    timeout_ms = 1000.0 * cluster.timeout_seconds
    if settings.slo_ms <= service_ms:
        raise FleetInputError(
            f"--slo-ms {settings.slo_ms:g} is not above {service_of}, {service_ms:.4g} ms: "
            f"most requests would miss it at any number of replicas; {remedy}"
        )
    if settings.slo_ms > timeout_ms:
        raise FleetInputError(
            f"--slo-ms {settings.slo_ms:g} is above the simulated request timeout of "
            f"{timeout_ms:g} ms (a request waiting longer fails); give --slo-ms {timeout_ms:g} "
            "or less"
        )
    # Service times are exponential: however many replicas run, this share of requests
    # takes longer than the SLO on its own, so a budget at or below it is never met.
    floor = math.exp(-settings.slo_ms / service_ms)
    if settings.violation_budget <= floor:
        # The fixes, each alone enough: a budget above the floor (below 1, which --budget
        # allows), an SLO past -ln(budget) mean service times (within the timeout), or,
        # when capacity is given, a replica fast enough for the SLO.
        budget = settings.violation_budget
        fixes = []
        if floor < 0.99:
            fixes.append(f"a --budget above {floor:.3g}")
        need = -math.log(budget) if budget > 0 else math.inf
        slo_needed = need * service_ms
        if slo_needed < timeout_ms:
            fixes.append(f"a --slo-ms above {slo_needed:.4g}")
        if settings.capacity_per_replica is not None and math.isfinite(need):
            fixes.append(f"a --capacity-per-replica above {need * 1000.0 / settings.slo_ms:.4g}")
        remedy = ", or ".join(fixes) if fixes else "a longer --slo-ms"
        raise FleetInputError(
            f"--budget {budget:g} cannot be met by any setting: with a mean "
            f"service time of {service_ms:.4g} ms, a share {floor:.3g} of requests exceeds "
            f"--slo-ms {settings.slo_ms:g} however many replicas run; give {remedy}"
        )
    # Whatever else the simulator or the trigger metadata would refuse, once for all.
    scenario = fleet_scenario("fleet", capacity, settings)
    problems = check_scenario(scenario)
    if problems:
        raise FleetInputError("the settings cannot be simulated: " + "; ".join(problems))


DEFAULT_SINCE_SECONDS = 14 * 86_400.0  # --since
DEFAULT_STEP_SECONDS = 300.0  # --step


def services_from(args: argparse.Namespace) -> list[ServiceSource]:
    prometheus = args.prometheus_url or args.query
    if bool(args.traces) == bool(prometheus):
        raise FleetInputError(
            "give either --traces DIR or --prometheus-url URL with --query PROMQL"
        )
    if args.traces:
        unused = [
            flag
            for flag, value in (("--since", args.since), ("--step", args.step), ("--end", args.end))
            if value is not None
        ]
        if unused:
            raise FleetInputError(
                f"{', '.join(unused)} shape(s) the history read from Prometheus; trace files "
                "are read as they are: leave them out with --traces"
            )
        return list(from_folder(args.traces, args.fill_missing, args.unit))
    if not (args.prometheus_url and args.query):
        raise FleetInputError("--prometheus-url and --query go together")
    end = args.end if args.end is not None else math.floor(time.time() / 3600) * 3600.0
    since = DEFAULT_SINCE_SECONDS if args.since is None else args.since
    step = DEFAULT_STEP_SECONDS if args.step is None else args.step
    return list(
        from_prometheus(
            args.prometheus_url, args.query, end - since, end, step, args.fill_missing, args.unit
        )
    )


def check_cache(cache: str | None, traces: str | None) -> None:
    """FleetInputError when --cache is the --traces folder: its results (NAME.json) would be
    read as services by the next run. A cache in a folder below it is not: only the files
    directly in --traces are read."""
    # realpath, not resolve(): a symlink loop is check_output_dir's to name, not a traceback.
    if cache and traces and os.path.realpath(cache) == os.path.realpath(traces):
        raise FleetInputError(
            f"--cache {cache} is the --traces folder: the results cached there would be read "
            "as services by the next run; give another --cache, e.g. "
            f"--cache {Path(cache) / '.cache'}, or leave it out (default: OUT/.cache)"
        )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def run_fleet_command(args: argparse.Namespace) -> int:
    err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long
    out = Path(args.out)
    try:
        check_output_dir(args.out, "--out")
        if args.traces and Path(args.traces).resolve() == out.resolve():
            # Refused rather than skipping fleet.csv and fleet.json when reading: a rerun
            # would otherwise read the last report as services, and a service's own
            # fleet.csv would be taken for a report (skipped, then overwritten).
            raise FleetInputError(
                f"--out {args.out} is the --traces folder: fleet.csv and fleet.json written "
                "there would be read as services by the next run; give another --out, e.g. "
                f"--out {out / 'fleet-report'}"
            )
        if not args.no_cache:
            check_cache(args.cache, args.traces)
            # Created and written while services finish: a folder that cannot be would
            # otherwise fail after the work (or as "cannot reach the Dask scheduler").
            check_output_dir(args.cache or str(out / ".cache"), "--cache")
        settings = settings_from(args)
        services = services_from(args)
    except (FleetInputError, OutputPathError) as error:
        err.print(error_text(error), highlight=False)
        return 2
    cache = ResultCache(None if args.no_cache else Path(args.cache or out / ".cache"))
    err.print(f"fleet: {_count(len(services), 'service')}", highlight=False, markup=False)
    if args.traces:
        skipped = skipped_files(args.traces)
        if skipped:
            names = ", ".join(path.name for path in skipped[:5])
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            err.print(
                f"note: {_count(len(skipped), 'file')} not read, not a trace "
                f"({', '.join(TRACE_SUFFIXES)}): {names}{more}",
                highlight=False,
                markup=False,
            )

    progress = Progress(
        TextColumn("services"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = progress.add_task("services", total=len(services))
    done = [0, 0, 0]  # finished, of which from the cache, of which failed
    lines = None if err.is_terminal else ProgressLines(sys.stderr, "fleet", PROGRESS_EVERY_SECONDS)

    def on_result(result: ServiceResult, cached: bool) -> None:
        done[0] += 1
        done[1] += cached
        progress.update(task, completed=done[0])
        if result.error:
            done[2] += 1
            err.print(f"{result.name}: failed: {result.error}", highlight=False, markup=False)
        for note in result.input_notes:
            err.print(f"note: {result.name}: {note}", highlight=False, markup=False)
        if lines is not None:
            lines.update(f"{done[0]}/{len(services)} services", done[0] / len(services))

    finished = threading.Event()
    if lines is not None:
        # A line every few seconds while services run, not only as each finishes: a
        # slow service said nothing for minutes in a log.
        progress_lines = lines

        def heartbeat() -> None:
            while not finished.wait(PROGRESS_EVERY_SECONDS):
                progress_lines.update(
                    f"{done[0]}/{len(services)} services", done[0] / len(services)
                )

        threading.Thread(target=heartbeat, name="fleet-progress", daemon=True).start()
    try:
        with progress:
            fleet = run_fleet(
                services,
                settings,
                scheduler=args.scheduler,
                workers=args.workers,
                cache=cache,
                on_result=on_result,
            )
    except KeyboardInterrupt:
        # One line, true of this run's cache (the Dask workers ignore the Ctrl-C: the
        # driver stops them, so no worker traceback either).
        if cache.folder is None:
            kept = "nothing is kept (--no-cache); a rerun evaluates every service again"
        else:
            kept = f"finished services are cached in {cache.folder}; rerun to resume"
            if done[2]:
                kept += f" ({done[2]} of them failed: failures are not cached)"
        err.print(
            f"interrupted after {done[0]} of {_count(len(services), 'service')}: {kept}",
            highlight=False,
            markup=False,
        )
        return INTERRUPTED
    except OSError as error:
        err.print(error_text(f"cannot reach the Dask scheduler: {error}"), highlight=False)
        return 2
    finally:
        finished.set()
    command = "tidescaler fleet " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    try:
        written = write_report(fleet.results, settings, out, command.strip())
    except OSError as error:  # checked writable first, so a full disk or a vanished folder
        err.print(error_text(f"cannot write the report: {error}"), highlight=False)
        return 1
    t = totals(fleet.results)
    saving = "—" if t.saving is None else f"{100 * t.saving:.1f} %"
    left_out = ""
    if t.left_out:  # say what the saving is over, and why the others are not in it
        left_out = f" over {t.compared} of {t.services} (left out: {describe_left_out(t)})"
    Console().print(
        f"{_count(t.services, 'service')} ({fleet.computed} evaluated on {fleet.workers} "
        "workers, "
        f"{fleet.cached} from the cache): "
        + ", ".join(f"{n} {k}" for k, n in t.recommendations.items())
        + f"; fleet saving {saving}{left_out}. Wrote {', '.join(str(p) for p in written)}",
        highlight=False,
        markup=False,
    )
    if fleet.results and all(r.recommendation == FAILED for r in fleet.results):
        # Nothing was evaluated: a script must not take the report for an answer.
        err.print(error_text(f"every service failed ({len(fleet.results)})"), highlight=False)
        return EXIT_ALL_FAILED
    return 0
