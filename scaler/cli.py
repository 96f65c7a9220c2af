"""The `tidescaler` command: serve | simulate | backtest | validate.

Every flag of `serve` can also be set by an environment variable named
TIDESCALER_ plus the flag in upper case with dashes as underscores
(`--prometheus-url` -> TIDESCALER_PROMETHEUS_URL); a flag given on the command
line wins over the environment.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from scaler import __version__
from scaler.cli_support import closed_stdout_quietly, prometheus_url_arg, url_problem

ENV_PREFIX = "TIDESCALER_"

# Attributes of a LogRecord that are not user-supplied `extra` fields.
# (`message` and `asctime` are set on the record by formatting it.)
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


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


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...`: the same fields as the JSON lines.

    Values with spaces, quotes or `=` and structured ones are written as JSON, so
    a line still splits unambiguously into fields (logfmt style).
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # UTC, said by the Z: a container's local zone is anyone's guess.
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{key}={_text_value(value)}"
            for key, value in vars(record).items()
            if key not in _RECORD_FIELDS
        ]
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback after the fields
        return head + " " + " ".join(fields) + newline + rest


def _text_value(value: object) -> str:
    if isinstance(value, str):
        plain = value and not any(c in value for c in ' "=\n\t')
        return value if plain else json.dumps(value)
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    return json.dumps(value, default=str, separators=(",", ":"))


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Python warnings (numpy's overflow on a tenant's extreme series, say) are log
    # records too: without this they reach stderr as bare multi-line text.
    logging.captureWarnings(True)


# What a yes/no environment variable may say (an empty value means no).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


def _env_name(option: str) -> str:
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


# What Kubernetes sets in every pod for a Service named `tidescaler` in its namespace
# (Docker-style service links): TIDESCALER_SERVICE_HOST, TIDESCALER_SERVICE_PORT[_GRPC],
# TIDESCALER_PORT=tcp://10.0.0.1:9090, TIDESCALER_PORT_9090_TCP[_PROTO|_PORT|_ADDR].
# None is a setting: TIDESCALER_PORT read as --port stopped the shipped Deployment.
_SERVICE_LINK_NAME = re.compile(
    rf"{ENV_PREFIX}(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)(_\w+)?)"
)
_SERVICE_LINK_VALUE = re.compile(r"(tcp|udp|sctp)://", re.IGNORECASE)


def _service_link(name: str, value: str) -> bool:
    """Whether an environment variable is one Kubernetes set for a Service, not a flag."""
    return bool(
        _SERVICE_LINK_NAME.fullmatch(name)
        or (name == f"{ENV_PREFIX}PORT" and _SERVICE_LINK_VALUE.match(value.strip()))
    )


def unknown_environment(parser: argparse.ArgumentParser) -> list[str]:
    """One line per TIDESCALER_ variable that sets no flag (a typo is otherwise ignored
    without a word), with the likeliest meant."""
    known = [
        _env_name(long_options[0])
        for action in parser._actions
        if (long_options := [o for o in action.option_strings if o.startswith("--")])
        and action.dest != "help"
    ]
    lines = []
    names = (
        n
        for n, value in os.environ.items()
        if n.startswith(ENV_PREFIX) and n not in known and not _service_link(n, value)
    )
    for name in sorted(names):
        # Compared without the prefix every name shares, which would make anything close.
        close = difflib.get_close_matches(
            name.removeprefix(ENV_PREFIX), [k.removeprefix(ENV_PREFIX) for k in known], n=1
        )
        hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
        lines.append(f"environment variable {name[:80]} sets no flag and is ignored{hint}")
    return lines


def apply_environment(parser: argparse.ArgumentParser) -> None:
    """Let TIDESCALER_<FLAG> set each flag's default (flags still win)."""
    for action in parser._actions:
        long_options = [o for o in action.option_strings if o.startswith("--")]
        if not long_options or action.dest == "help":
            continue
        name = _env_name(long_options[0])
        if name not in os.environ or _service_link(name, os.environ[name]):
            continue
        raw = os.environ[name]
        if isinstance(action, argparse._StoreTrueAction):
            word = raw.strip().lower()
            if word not in TRUE_WORDS | FALSE_WORDS:
                parser.error(
                    f"environment variable {name}={raw[:60]!r}: expected one of "
                    f"{', '.join(sorted(TRUE_WORDS))} or {', '.join(sorted(FALSE_WORDS - {''}))}"
                )
            action.default = word in TRUE_WORDS
            continue
        try:
            value = action.type(raw) if callable(action.type) else raw
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            # (the range checks of serve's flags raise ArgumentTypeError, for argparse)
            parser.error(f"environment variable {name}={raw[:60]!r}: {err}")
        if action.choices is not None and value not in action.choices:
            # argparse checks a flag's choices, not a default's: an unchecked level or
            # format would start the server wrong or crash it later.
            parser.error(
                f"environment variable {name}={raw[:60]!r}: expected one of "
                f"{', '.join(map(str, action.choices))}"
            )
        action.default = value
        action.required = False


# -- serve's flags: refused at start-up unless usable ------------------------------------------
# Each bound is far past any sane setting, and low enough that deadlines and waits built
# from it stay within what time arithmetic accepts (`inf` or 1e300 seconds used to start
# and then fail every call with "timestamp out of range").
MINUTE, HOUR, DAY, WEEK = 60.0, 3600.0, 86400.0, 604800.0
_SPANS = {MINUTE: "a minute", HOUR: "an hour", DAY: "a day", WEEK: "a week"}
MAX_WORKERS = 4096  # threads per pool; more is a typo, not a setting


class _OneLineErrorParser(argparse.ArgumentParser):
    """serve's parser: a refused flag gets the one stderr line and exit code 2 that every
    other start-up mistake (busy port, bad certificate) gets, not argparse's usage too."""

    def error(self, message: str) -> NoReturn:
        sys.exit(_fail(f"error: {message}"))


def _seconds(low: float, high: float, *, above_low: bool) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds from `low` (or above it) to `high`."""
    span = f" ({_SPANS[high]})" if high in _SPANS else ""
    if above_low:
        wanted = f"above {low:g} and at most {high:g}{span}"
    else:
        wanted = f"between {low:g} and {high:g}{span}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan  # refused below, with the same message
        too_low = value <= low if above_low else value < low
        if not math.isfinite(value) or value > high or too_low:
            raise argparse.ArgumentTypeError(
                f"must be a finite number of seconds {wanted}, got {text!r}"
            )
        return value

    return parse


def _whole(low: int, high: int, what: str, note: str = "") -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high` (`what` and `note` for the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = high + 1  # refused below, with the same message
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be {what} between {low} and {high}{note}, got {text!r}"
            )
        return value

    return parse


def _prometheus_urls(text: str) -> str:
    """An argparse type: comma-separated base URLs (blank entries ignored, as before)."""
    for item in text.split(","):
        problem = url_problem(item) if item.strip() else None
        if problem:
            raise argparse.ArgumentTypeError(f"each URL {problem}, got {item.strip()!r}")
    return text


def _add_serve_parser(subparsers: Any) -> None:
    # add_parser builds every subcommand with the one class `subparsers` holds: swap in the
    # one-line errors for serve only (the other subcommands keep argparse's usage line).
    parser_class = subparsers._parser_class
    subparsers._parser_class = _OneLineErrorParser
    try:
        p = subparsers.add_parser(
            "serve",
            help="run the KEDA external scaler (gRPC)",
            description="Run the KEDA external scaler. Every flag has a TIDESCALER_<FLAG> "
            "environment equivalent, e.g. TIDESCALER_PROMETHEUS_URL.",
        )
    finally:
        subparsers._parser_class = parser_class
    p.add_argument(
        "--host",
        type=_listen_host,
        default="[::]",
        help="address to listen on (default: %(default)s, all)",
    )
    p.add_argument(
        "--port",
        type=_whole(0, 65535, "a port number", " (0: any free one, named in the start line)"),
        default=9090,
        help="gRPC port (default: %(default)s)",
    )
    p.add_argument(
        "--metrics-port",
        type=_whole(0, 65535, "a port number", " (0: no /metrics)"),
        default=8080,
        help="Prometheus /metrics port, at --host; 0 disables (default: %(default)s)",
    )
    p.add_argument(
        "--prometheus-url",
        type=prometheus_url_arg,
        help="Prometheus used when a trigger sets no prometheusAddress (default: none; "
        "triggers must then name an allowed address)",
    )
    p.add_argument(
        "--allowed-prometheus-urls",
        type=_prometheus_urls,
        default="",
        help="comma-separated Prometheus base URLs triggers may name in prometheusAddress; "
        "the --prometheus-url is always allowed (default: none besides it)",
    )
    p.add_argument(
        "--tls-cert",
        type=Path,
        help="PEM certificate: serve TLS, re-read when renewed (default: none, plaintext)",
    )
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert (default: none)")
    p.add_argument(
        "--tls-client-ca",
        type=Path,
        help="PEM CA: require client certificates it signed, mutual TLS (default: none)",
    )
    p.add_argument(
        "--polling-interval-seconds",
        type=_seconds(0, DAY, above_low=True),
        default=30.0,
        help="the ScaledObjects' pollingInterval; part of the forecast lead time "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--staleness-seconds",
        type=_seconds(0, DAY, above_low=False),  # 0: a failing backend is never covered
        default=120.0,
        help="how long a last good value stands in for a failing backend (default: %(default)s)",
    )
    p.add_argument(
        "--query-timeout-seconds",
        type=_seconds(0, HOUR, above_low=True),
        default=3.0,
        help="timeout of one Prometheus HTTP request (default: %(default)s)",
    )
    p.add_argument(
        "--answer-budget",
        # At most a minute, 20 times KEDA's 3 s deadline: more is likely milliseconds (1000).
        type=_seconds(0, MINUTE, above_low=True),
        default=1.0,
        help="seconds an RPC waits on Prometheus before answering from the last good value "
        "while the request goes on, well inside KEDA's 3 s (default: %(default)s)",
    )
    p.add_argument(
        "--allowed-query-parameters",
        default="",
        help="comma-separated URL parameter names triggers may set in queryParameters "
        "(none by default; namespace is always allowed)",
    )
    p.add_argument(
        "--allowed-custom-headers",
        default="",
        help="comma-separated HTTP header names triggers may set in customHeaders "
        "(case-insensitive; none by default)",
    )
    p.add_argument(
        "--allow-unsafe-ssl",
        action="store_true",
        help="let triggers skip certificate checks towards Prometheus with unsafeSsl "
        "(default: off)",
    )
    p.add_argument(
        "--coalesce-seconds",
        type=_seconds(0, HOUR, above_low=False),  # 0: no sharing
        default=5.0,
        # Prometheus itself only changes once per scrape interval (15-30 s), so a few
        # seconds of sharing costs no freshness and spares it most requests.
        help="identical queries within this interval share one Prometheus request "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--push-interval-seconds",
        type=_seconds(0, HOUR, above_low=True),
        default=5.0,
        help="how often each StreamIsActive stream (external-push) re-evaluates "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--forecast-refit-seconds",
        type=_seconds(0, WEEK, above_low=True),  # (0 would refit in a busy loop)
        default=600.0,
        help="how often each forecast is refit in the background (default: %(default)s)",
    )
    p.add_argument(
        "--max-forecast-series",
        type=_whole(1, 1_000_000, "a whole number"),
        default=2000,
        help="distinct forecast series (forecastQuery, history, quantile) refit in the "
        "background; a trigger past it runs without a forecast (default: %(default)s)",
    )
    p.add_argument(
        "--max-workers",
        type=_whole(1, MAX_WORKERS, "a whole number"),
        default=32,
        help="threads that run decisions which may wait on Prometheus, and as many again for "
        "streams' re-evaluations; streams themselves hold no thread (default: %(default)s)",
    )
    p.add_argument(
        "--drain-seconds",
        type=_seconds(0, HOUR, above_low=False),
        default=0.0,
        help="after SIGTERM, how long to go on answering with health NOT_SERVING before "
        "closing the listener, so that Service endpoints and KEDA's connection move to "
        "other replicas first; a second signal ends it (default: %(default)s)",
    )
    p.add_argument(
        "--grace-seconds",
        type=_seconds(0, HOUR, above_low=False),
        default=10.0,
        help="after SIGTERM, how long calls in flight may finish before the process exits "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log level written (default: %(default)s)",
    )
    p.add_argument(
        "--log-format",
        default="json",
        choices=["json", "text"],
        help="json: one object per line; text: key=value fields (default: %(default)s)",
    )
    p.add_argument(
        "--events",
        default="auto",
        choices=["auto", "on", "off"],
        help="write Kubernetes Events on ScaledObjects (auto: on when running in a cluster) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--kubeconfig", help="kubeconfig for runs outside a cluster (default: KUBECONFIG)"
    )
    apply_environment(p)
    p.set_defaults(func=run_serve, unknown_environment=unknown_environment(p))


def _listen_host(text: str) -> str:
    """--host as gRPC takes it: an IPv6 address in brackets (`::` is `[::]`), since
    gRPC reads `:::9090` as a host name and refuses it."""
    host = text.strip()
    if not host:
        raise argparse.ArgumentTypeError("expected an address or host name, e.g. [::] or 0.0.0.0")
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _fail(message: str) -> int:
    """The one line an operator sees for a configuration they must fix; exit code 2."""
    print(f"tidescaler serve: {message}", file=sys.stderr)
    return 2


def run_serve(args: argparse.Namespace) -> int:
    # gRPC's core logs in its own format to stderr; at its INFO level every client that
    # fails the TLS handshake adds a line (any client can), which breaks the one JSON
    # object per line of --log-format json. Errors still show; an operator may override.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from prometheus_client import GCCollector, ProcessCollector

    from scaler.backend_access import allow_list_problems
    from scaler.forecast_service import ForecastService
    from scaler.server import (
        ServerConfig,
        bind_problem,
        check_tls_files,
        settle_garbage_collector,
        start_server,
    )
    from scaler.sources.prometheus import PrometheusSource
    from scaler.telemetry import Telemetry
    from scaler.tls_files import tls_metrics

    # /metrics listens at --host too, so it would take the port from gRPC; caught later,
    # the refusal came after Kubernetes set-up had logged.
    if args.metrics_port and args.metrics_port == args.port:
        return _fail(
            f"error: argument --metrics-port: {args.metrics_port} is the gRPC --port too; "
            "give /metrics a port of its own, or 0 for none"
        )
    unusable = allow_list_problems(
        _names(args.allowed_query_parameters), _names(args.allowed_custom_headers)
    )
    if unusable:
        return _fail("; ".join(unusable))
    setup_logging(args.log_level, args.log_format)
    log = logging.getLogger("tidescaler")
    for line in args.unknown_environment:
        log.warning(line)
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
            drain_seconds=args.drain_seconds,
            answer_budget_seconds=args.answer_budget,
            allowed_query_parameters=_names(args.allowed_query_parameters),
            allowed_custom_headers=_names(args.allowed_custom_headers),
            allow_unsafe_ssl=args.allow_unsafe_ssl,
        )
        check_tls_files(config)
    except ValueError as err:
        return _fail(str(err))
    # Before anything else starts and logs: a busy port is the whole story.
    busy = bind_problem(config.host, config.port)
    if busy is not None:
        return _fail(f"cannot listen on {config.host}:{config.port} (--port): {busy}")

    telemetry = Telemetry()
    # The process's own health beside its decisions: CPU, memory, open files, collections.
    ProcessCollector(registry=telemetry.registry)
    GCCollector(registry=telemetry.registry)
    # Whether the gRPC health service says SERVING and the event loop still answers,
    # for /healthz beside /metrics.
    serving = threading.Event()
    loop_checks: list[Callable[[float], bool]] = []

    def serving_now() -> bool:
        return serving.is_set() and all(check(HEALTHZ_LOOP_SECONDS) for check in loop_checks)

    if config.metrics_port:
        # /metrics listens where gRPC does (--host): an IPv6-only cluster reaches both.
        try:
            telemetry.start_http_server(config.metrics_port, addr=config.host, serving=serving_now)
        except OSError as err:
            problem = bind_problem(config.host, config.metrics_port) or err.strerror or str(err)
            return _fail(
                f"cannot serve /metrics on {config.host}:{config.metrics_port} "
                f"(--metrics-port): {problem}"
            )
    source = PrometheusSource(
        timeout_seconds=config.query_timeout_seconds,
        coalesce_seconds=config.coalesce_seconds,
        answer_budget_seconds=config.answer_budget_seconds,
    )
    forecasts = ForecastService(
        source,
        refit_seconds=args.forecast_refit_seconds,
        polling_interval_seconds=config.polling_interval_seconds,
        max_series=args.max_forecast_series,
    )
    telemetry.registry.register(forecasts.collector())
    from scaler.kube.api import KubeError
    from scaler.kube.service import start_kube

    try:
        kube = start_kube(
            args.events,
            kubeconfig=args.kubeconfig,
            polling_interval_seconds=config.polling_interval_seconds,
            registry=telemetry.registry,
        )
    except KubeError as err:
        forecasts.close()
        asked = "--events on" if args.events == "on" else "--kubeconfig"
        return _fail(f"{asked}: no Kubernetes API: {err}")
    done = threading.Event()
    hurry = threading.Event()  # a second signal, or Ctrl-C: no drain

    def on_signal(signum: int, _frame: object) -> None:
        if done.is_set() or signum == signal.SIGINT:
            hurry.set()
        if not done.is_set():
            log.info("shutting down", extra={"signal": signal.Signals(signum).name})
        done.set()

    # Before the port opens: a SIGTERM from then on is a graceful stop, never the
    # default's instant death (start-up's last work, a full collection, comes later).
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        running = start_server(
            config,
            telemetry=telemetry,
            forecasts=forecasts,
            source=source,
            events=kube.events,
            pod_startup=kube.startup.seconds_for if kube.startup else None,
            tls_on_load=tls_metrics(telemetry.registry) if config.tls_cert else None,
        )
    except (OSError, ValueError, RuntimeError) as err:
        forecasts.close()
        kube.close()
        return _fail(str(err))
    loop_checks.append(running.responsive)
    serving.set()
    _log_start(log, config, running.port)
    if config.prometheus_url:
        threading.Thread(
            target=_check_prometheus,
            args=(log, source, config.prometheus_url),
            name="prometheus-check",
            daemon=True,
        ).start()

    def on_hangup(_signum: int, _frame: object) -> None:
        # The conventional "reload": with TLS, the files are read again on the next
        # connection (they are also followed as they change). Without a handler the
        # signal would end the process at once, with no graceful drain.
        log.info(
            "SIGHUP: TLS files will be read again" if running.tls else "SIGHUP: nothing to reload"
        )
        if running.tls is not None:
            running.tls.request_reload()

    signal.signal(signal.SIGHUP, on_hangup)
    settle_garbage_collector()
    done.wait()
    serving.clear()  # /healthz: not serving from the signal on, as health once it drains
    _exit_past(
        time.monotonic() + config.drain_seconds + config.grace_seconds + SHUTDOWN_MARGIN_SECONDS,
        log,
    )
    if config.drain_seconds > 0 and not hurry.is_set():
        running.not_serving(timeout=min(1.0, config.drain_seconds))
        log.info("draining", extra={"drain_seconds": config.drain_seconds})
        hurry.wait(config.drain_seconds)
    deadline = time.monotonic() + config.grace_seconds
    running.stop(config.grace_seconds)
    forecasts.refresher.close(timeout=max(0.0, deadline - time.monotonic()))
    kube.close()
    log.info("stopped")
    _exit_now(0)


def _log_start(log: logging.Logger, config: Any, port: int) -> None:
    """One line that says what this process serves and whom it trusts."""
    from scaler.sources.bounded_http import redacted_url

    allowed = sorted(map(redacted_url, config.allowed))
    log.info(
        "serving",
        extra={
            "version": __version__,
            "grpc_address": f"{config.host}:{port}",
            "metrics_port": config.metrics_port,
            "prometheus_url": config.prometheus_url and redacted_url(config.prometheus_url),
            "allowed_prometheus_urls": allowed,
            "allowed_query_parameters": list(config.allowed_query_parameters),
            "allowed_custom_headers": list(config.allowed_custom_headers),
            "allow_unsafe_ssl": config.allow_unsafe_ssl,
            "answer_budget_seconds": config.answer_budget_seconds,
            "tls": config.tls_cert is not None,
            "mutual_tls": config.tls_client_ca is not None,
        },
    )
    if not config.prometheus_url:
        log.warning(
            "no --prometheus-url: triggers with a query or resource signal must name an "
            "allowed prometheusAddress"
            + ("" if allowed else ", and none is allowed, so only cron triggers work"),
            extra={"allowed_prometheus_urls": allowed},
        )


def _check_prometheus(log: logging.Logger, source: Any, url: str) -> None:
    """One query of --prometheus-url at start, off the serving path: a wrong address or
    path is one line now, not a warning per ScaledObject once KEDA calls."""
    from scaler.sources.bounded_http import redacted_url
    from scaler.sources.prometheus import BackendError

    shown = redacted_url(url)
    try:
        source.instant(url, "vector(1)")
    except BackendError as err:
        log.warning(
            "--prometheus-url does not answer queries (asked without any trigger's "
            "headers or parameters); triggers on it will be unavailable until it does",
            extra={"prometheus_url": shown, "error": str(err)},
        )
    else:
        log.info("--prometheus-url answers queries", extra={"prometheus_url": shown})


# /healthz answers 503 when the event loop has not run a callback within this long.
HEALTHZ_LOOP_SECONDS = 1.0

# Past the grace period, how long the orderly shutdown may still run before the
# process exits regardless (well inside the usual SIGKILL margin).
SHUTDOWN_MARGIN_SECONDS = 0.75


def _exit_past(deadline: float, log: logging.Logger) -> None:
    """Exit (status 1) at `deadline` (monotonic) if the orderly shutdown has not ended by then.

    Every wait of the shutdown is bounded already; this is the guarantee that
    does not depend on any of them, e.g. on an event-loop thread starved of CPU.
    """

    def overran() -> None:
        log.error("shutdown overran the grace period; exiting now")
        _exit_now(1)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), overran)
    timer.daemon = True
    timer.start()


def _exit_now(code: int) -> NoReturn:
    """Exit at once, without waiting for any thread, once the orderly shutdown is done.

    A thread still running then can only be stuck on a backend that never
    answers, and the interpreter would wait for it at exit (concurrent.futures
    joins its workers even when they are daemons), past the grace period
    Kubernetes allows before SIGKILL.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
    from scaler.backtest_cli import add_backtest_parser

    add_backtest_parser(subparsers)
    from scaler.validate import add_validate_parser

    add_validate_parser(subparsers)
    from scaler.fleet.cli import add_fleet_parser

    add_fleet_parser(subparsers)
    return parser


INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """parse_args, with the flag likely meant for each unknown one (argparse has no
    suggestions before Python 3.14)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        actions = parser._subparsers._group_actions if parser._subparsers else []
        command = next(
            (a.choices[args.command] for a in actions if isinstance(a.choices, dict)), parser
        )
        options = [o for a in command._actions for o in a.option_strings if o.startswith("--")]
        hints = [
            f"{flag} (did you mean {close[0]}?)"
            if (close := difflib.get_close_matches(flag.split("=")[0], options, 1, 0.75))
            else flag
            for flag in unknown
        ]
        command.error(f"unrecognized arguments: {' '.join(hints)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    # Ctrl-C is remembered as well as raised: a KeyboardInterrupt that lands in a
    # finalizer (__del__, a weakref callback) is printed and dropped by Python, and the
    # work would go on to exit 0 as if it had not been asked to stop. Only where Ctrl-C
    # is Python's own to handle: a background job that ignores SIGINT keeps ignoring it.
    interrupted = threading.Event()
    previous = None
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):

        def on_interrupt(signum: int, frame: object) -> None:
            interrupted.set()
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_interrupt)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_interrupts(previous_hook)
    try:
        result: int = closed_stdout_quietly(args.func, args)
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except MemoryError:
        # Past the checks made before a run (the memory it will need against what is
        # available): a traceback here would say nothing more than this.
        fewer = "pass --days to simulate fewer days" if args.command == "simulate" else None
        print(
            f"tidescaler {args.command}: out of memory; "
            f"{fewer or 'give it less data'}, or run it with more memory",
            file=sys.stderr,
        )
        return 1
    finally:
        sys.unraisablehook = previous_hook
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupted.is_set() and result != INTERRUPTED:  # (a command may say so itself)
        return _interrupted(args.command)
    return result


def _quiet_interrupts(
    previous: Callable[[Any], object],
) -> Callable[[Any], object]:
    """sys.unraisablehook that drops a Ctrl-C Python could not raise (it landed in a
    finalizer or a weakref callback: "Exception ignored in ..." and a traceback on
    stderr): main() remembers it and ends the run with the one interrupted line.
    Anything else goes to `previous`."""

    def hook(unraisable: Any) -> object:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            return None
        return previous(unraisable)

    return hook


def _interrupted(command: str) -> int:
    # Ctrl-C is the user's choice, not a failure to explain with a traceback.
    print(f"tidescaler {command}: interrupted", file=sys.stderr)
    return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
