"""`tidescaler fleet`: evaluate many services at once and say where a forecast pays."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
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

from scaler.cli_support import OutputPathError, ProgressLines, check_output_dir, duration_arg
from scaler.fleet.evaluate import FleetSettings, ServiceResult
from scaler.fleet.execute import ResultCache, run_fleet
from scaler.fleet.report import totals, write_report
from scaler.fleet.services import FleetInputError, ServiceSource, from_folder, from_prometheus


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a ratio in [0, 1), e.g. 0.01")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number > 0")
    return value


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
        "--prometheus-url", metavar="URL", help="Prometheus to read from (default: none)"
    )
    source.add_argument(
        "--query",
        metavar="PROMQL",
        help="one series per service, e.g. sum by (service) (rate(http_requests_total[5m])) "
        "(default: none)",
    )
    source.add_argument(
        "--since",
        type=duration_arg,
        default="14d",
        metavar="DURATION",
        help="history to read from Prometheus (default: %(default)s)",
    )
    source.add_argument(
        "--step",
        type=duration_arg,
        default="5m",
        metavar="DURATION",
        help="resolution of that history (default: %(default)s)",
    )
    source.add_argument(
        "--end",
        type=float,
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
        type=duration_arg,
        default="3d",
        metavar="DURATION",
        help="shorter services get 'too little history' (default: %(default)s)",
    )
    judge.add_argument(
        "--capacity-per-replica",
        type=_positive,
        metavar="RPS",
        help="requests/s one replica serves (default: each service's p99 demand / --peak-replicas)",
    )
    judge.add_argument(
        "--peak-replicas",
        type=int,
        default=defaults.peak_replicas,
        help="replicas at a service's peak when capacity is not given (default: %(default)s)",
    )
    judge.add_argument(
        "--pod-startup-seconds",
        type=_positive,
        default=defaults.pod_startup_seconds,
        help="decision-to-Ready time of a new pod (default: %(default)s)",
    )
    run = p.add_argument_group("execution")
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a Dask scheduler, e.g. tcp://dask-scheduler:8786 (default: a local cluster)",
    )
    run.add_argument(
        "--workers", type=int, metavar="N", help="local worker processes (default: every core)"
    )
    run.add_argument(
        "--out",
        default="fleet-report",
        metavar="DIR",
        help="where fleet.md, fleet.json, fleet.csv and savings.png go (default: %(default)s)",
    )
    run.add_argument(
        "--cache", metavar="DIR", help="finished services, for resuming (default: OUT/.cache)"
    )
    run.add_argument(
        "--no-cache", action="store_true", help="recompute every service (default: off)"
    )
    p.set_defaults(func=run_fleet_command)
    return p


def settings_from(args: argparse.Namespace) -> FleetSettings:
    if args.peak_replicas < 1:
        raise FleetInputError(f"--peak-replicas={args.peak_replicas}: expected >= 1")
    return FleetSettings(
        violation_budget=args.budget,
        min_history_days=args.min_history / 86400.0,
        min_saving=args.min_saving,
        capacity_per_replica=args.capacity_per_replica,
        peak_replicas=args.peak_replicas,
        pod_startup_seconds=args.pod_startup_seconds,
        slo_ms=args.slo_ms,
    )


def services_from(args: argparse.Namespace) -> list[ServiceSource]:
    prometheus = args.prometheus_url or args.query
    if bool(args.traces) == bool(prometheus):
        raise FleetInputError(
            "give either --traces DIR or --prometheus-url URL with --query PROMQL"
        )
    if args.traces:
        return list(from_folder(args.traces))
    if not (args.prometheus_url and args.query):
        raise FleetInputError("--prometheus-url and --query go together")
    end = args.end if args.end is not None else math.floor(time.time() / 3600) * 3600.0
    return list(from_prometheus(args.prometheus_url, args.query, end - args.since, end, args.step))


def run_fleet_command(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    out = Path(args.out)
    try:
        check_output_dir(args.out, "--out")
        settings = settings_from(args)
        services = services_from(args)
    except (FleetInputError, OutputPathError) as error:
        err.print(f"[red]error:[/red] {error}", highlight=False)
        return 2
    cache = ResultCache(None if args.no_cache else Path(args.cache or out / ".cache"))
    err.print(f"fleet: {len(services)} services", highlight=False)

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
    done = [0, 0]  # finished, of which from the cache
    lines = None if err.is_terminal else ProgressLines(sys.stderr, "fleet")

    def on_result(result: ServiceResult, cached: bool) -> None:
        done[0] += 1
        done[1] += cached
        progress.update(task, completed=done[0])
        if result.error:
            err.print(f"{result.name}: failed: {result.error}", highlight=False)
        if lines is not None:
            lines.update(f"{done[0]}/{len(services)} services", done[0] / len(services))

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
        err.print("interrupted: finished services are cached; rerun to resume", highlight=False)
        return 130
    except OSError as error:
        err.print(f"[red]error:[/red] cannot reach the Dask scheduler: {error}", highlight=False)
        return 2
    command = "tidescaler fleet " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    written = write_report(fleet.results, settings, out, command.strip())
    t = totals(fleet.results)
    saving = "—" if t.saving is None else f"{100 * t.saving:.1f} %"
    Console().print(
        f"{t.services} services ({fleet.computed} evaluated on {fleet.workers} workers, "
        f"{fleet.cached} from the cache): "
        + ", ".join(f"{n} {k}" for k, n in t.recommendations.items())
        + f"; fleet saving {saving}. Wrote {', '.join(str(p) for p in written)}",
        highlight=False,
    )
    return 0
