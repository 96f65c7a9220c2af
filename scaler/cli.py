"""The `tidescaler` command: serve | simulate | backtest.

Every flag of `serve` can also be set by an environment variable named
TIDESCALER_ plus the flag in upper case with dashes as underscores
(`--prometheus-url` -> TIDESCALER_PROMETHEUS_URL); a flag given on the command
line wins over the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scaler import __version__

ENV_PREFIX = "TIDESCALER_"

# Attributes of a LogRecord that are not user-supplied `extra` fields.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with every `extra` field, for log pipelines."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _env_name(option: str) -> str:
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def apply_environment(parser: argparse.ArgumentParser) -> None:
    """Let TIDESCALER_<FLAG> set each flag's default (flags still win)."""
    for action in parser._actions:
        long_options = [o for o in action.option_strings if o.startswith("--")]
        if not long_options or action.dest == "help":
            continue
        name = _env_name(long_options[0])
        if name not in os.environ:
            continue
        raw = os.environ[name]
        if isinstance(action, argparse._StoreTrueAction):
            action.default = raw.strip().lower() in {"1", "true", "yes", "on"}
            continue
        try:
            action.default = action.type(raw) if callable(action.type) else raw
        except (TypeError, ValueError) as err:
            parser.error(f"environment variable {name}={raw!r}: {err}")
        action.required = False


def _add_serve_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the KEDA external scaler (gRPC)",
        description="Run the KEDA external scaler. Every flag has a TIDESCALER_<FLAG> "
        "environment equivalent, e.g. TIDESCALER_PROMETHEUS_URL.",
    )
    p.add_argument("--host", default="[::]", help="address to listen on (default: all)")
    p.add_argument("--port", type=int, default=9090, help="gRPC port (default 9090)")
    p.add_argument(
        "--metrics-port", type=int, default=8080, help="Prometheus /metrics port; 0 disables"
    )
    p.add_argument("--prometheus-url", help="Prometheus used when a trigger sets no address")
    p.add_argument(
        "--allowed-prometheus-urls",
        default="",
        help="comma-separated Prometheus base URLs triggers may name in prometheusAddress "
        "(the --prometheus-url is always allowed; nothing else is by default)",
    )
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve TLS")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument("--tls-client-ca", type=Path, help="PEM CA: require client certificates (mTLS)")
    p.add_argument(
        "--polling-interval-seconds",
        type=float,
        default=30.0,
        help="the ScaledObjects' pollingInterval; part of the forecast lead time (default 30)",
    )
    p.add_argument(
        "--staleness-seconds",
        type=float,
        default=120.0,
        help="how long a last good value stands in for a failing backend (default 120)",
    )
    p.add_argument("--query-timeout-seconds", type=float, default=3.0)
    p.add_argument(
        "--coalesce-seconds",
        type=float,
        default=5.0,
        # Prometheus itself only changes once per scrape interval (15-30 s), so a few
        # seconds of sharing costs no freshness and spares it most requests.
        help="identical queries within this interval share one Prometheus request (default 5)",
    )
    p.add_argument(
        "--push-interval-seconds",
        type=float,
        default=5.0,
        help="how often StreamIsActive re-evaluates (external-push)",
    )
    p.add_argument("--forecast-refit-seconds", type=float, default=600.0)
    p.add_argument(
        "--max-workers",
        type=int,
        default=1024,
        help="gRPC worker threads; each external-push stream holds one (default 1024)",
    )
    p.add_argument("--grace-seconds", type=float, default=10.0)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="json", choices=["json", "text"])
    apply_environment(p)
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from scaler.forecast_service import ForecastService
    from scaler.server import ServerConfig, start_server
    from scaler.sources.prometheus import PrometheusSource
    from scaler.telemetry import Telemetry

    setup_logging(args.log_level, args.log_format)
    log = logging.getLogger("tidescaler")
    try:
        config = ServerConfig(
            host=args.host,
            port=args.port,
            metrics_port=args.metrics_port or None,
            prometheus_url=args.prometheus_url,
            allowed_prometheus_urls=tuple(args.allowed_prometheus_urls.split(",")),
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            polling_interval_seconds=args.polling_interval_seconds,
            staleness_seconds=args.staleness_seconds,
            query_timeout_seconds=args.query_timeout_seconds,
            coalesce_seconds=args.coalesce_seconds,
            push_interval_seconds=args.push_interval_seconds,
            max_workers=args.max_workers,
            grace_seconds=args.grace_seconds,
        )
    except ValueError as err:
        print(f"tidescaler serve: {err}", file=sys.stderr)
        return 2

    telemetry = Telemetry()
    if config.metrics_port:
        telemetry.start_http_server(config.metrics_port)
    source = PrometheusSource(
        timeout_seconds=config.query_timeout_seconds, coalesce_seconds=config.coalesce_seconds
    )
    forecasts = ForecastService(
        source,
        refit_seconds=args.forecast_refit_seconds,
        polling_interval_seconds=config.polling_interval_seconds,
    )
    try:
        running = start_server(config, telemetry=telemetry, forecasts=forecasts, source=source)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"tidescaler serve: {err}", file=sys.stderr)
        return 2

    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("shutting down", extra={"signal": signal.Signals(signum).name})
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    done.wait()
    running.stop(config.grace_seconds)
    forecasts.close()
    log.info("stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidescaler",
        description="Predictive autoscaling for tidal traffic: KEDA external scaler, "
        "cost/latency simulator and forecast backtest.",
    )
    parser.add_argument("--version", action="version", version=f"tidescaler {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve_parser(subparsers)
    from scaler.sim.cli import add_simulate_parser

    add_simulate_parser(subparsers)
    from scaler.forecast.backtest import add_backtest_parser

    add_backtest_parser(subparsers)
    from scaler.fleet.cli import add_fleet_parser

    add_fleet_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
