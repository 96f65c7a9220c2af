"""Forecasts for the service: Prometheus history in, background refits, latest out.

Each distinct (Prometheus, series, history, quantile) is one forecast series,
shared by every ScaledObject that asks for it. The request path registers the
series (cheap, once) and reads the latest forecast; the refresher thread does
the range queries and the fits. Past forecasts at now + lead are scored
against the demand seen when that time comes, for the forecast-error metric.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterator
from functools import partial
from typing import NamedTuple

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.engine import EngineSettings, lead_seconds
from scaler.forecast.refresher import (
    ForecastErrors,
    ForecastErrorTracker,
    ForecastRefresher,
    ForecastState,
)
from scaler.forecast.types import Forecast
from scaler.policy import (
    MAX_METRIC_LAG_SECONDS,
    MAX_POD_STARTUP_SECONDS,
    BackendOptions,
    Policy,
)
from scaler.sources.bounded_http import redacted_url
from scaler.sources.prometheus import BackendError, BackendErrorKind, PrometheusSource

# A fit sees at most this many points: 14 days at one minute, a few milliseconds.
MAX_HISTORY_POINTS = 20_160
MIN_STEP_SECONDS = 30.0


def history_step_seconds(history_seconds: float) -> float:
    """Grid step of the history: 30 s or coarser so that the fit stays cheap."""
    step = max(MIN_STEP_SECONDS, history_seconds / MAX_HISTORY_POINTS)
    return float(math.ceil(step / 15.0) * 15)  # a multiple of a usual scrape interval


def horizon_seconds(polling_interval_seconds: float, refit_seconds: float) -> float:
    """How far ahead each forecast reaches: the longest lead a policy may have (pod
    start-up up to a day, the metric's lag, a polling interval) even when the forecast
    is two refits old; more than the day the dashboard shows."""
    return (
        MAX_POD_STARTUP_SECONDS
        + MAX_METRIC_LAG_SECONDS
        + polling_interval_seconds
        + 2 * refit_seconds
    )


def absent_is_zero(policy: Policy) -> bool:
    """Whether a step of the forecast's history without a sample is demand 0: as the
    query's empty result is with ignoreNullValues (the default; see absent_as_zero)."""
    return policy.query is None or policy.query.ignore_null_values


def backend_down(exc: BaseException) -> bool:
    """A fetch error that says the Prometheus itself is not answering, not just one query.

    A slow query on a Prometheus that works is not one: range queries ask
    Prometheus to give up before the client does, so it answers with its own
    timeout error, which is that query's problem."""
    return isinstance(exc, BackendError) and exc.kind in (
        BackendErrorKind.TIMEOUT,
        BackendErrorKind.CONNECTION,
    )


class SeriesKey(NamedTuple):
    """One forecast series: what is fetched, how, and how it is fitted."""

    address: str
    query: str
    backend: BackendOptions
    history_seconds: float
    quantile: float
    absent_is_zero: bool = True  # the query's ignoreNullValues

    def __repr__(self) -> str:
        # Without the credentials an operator's URL may carry (the options hide values).
        return (
            f"SeriesKey(address={redacted_url(self.address)!r}, query={self.query!r}, "
            f"backend={self.backend!r}, history_seconds={self.history_seconds!r}, "
            f"quantile={self.quantile!r}, absent_is_zero={self.absent_is_zero!r})"
        )

    def __str__(self) -> str:
        """How log lines name the series: the query, where, and what sets it apart."""
        extra = [] if self.backend == BackendOptions() else [f"options {self.backend!r}"]
        extra.append(f"history {self.history_seconds:g} s, quantile {self.quantile:g}")
        return f"{self.query!r} at {redacted_url(self.address)} ({'; '.join(extra)})"


class ForecastService:
    def __init__(
        self,
        source: PrometheusSource,
        *,
        refit_seconds: float = 600.0,
        polling_interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
        refresher: ForecastRefresher | None = None,
        max_series: int = 2_000,
        start: bool = True,
    ) -> None:
        self.source = source
        self._settings = EngineSettings(polling_interval_seconds=polling_interval_seconds)
        self.refresher = refresher or ForecastRefresher(
            refit_seconds=refit_seconds,
            max_series=max_series,
            backend_down=backend_down,
            clock=clock,
        )
        self._horizon_seconds = horizon_seconds(
            polling_interval_seconds, self.refresher.refit_seconds
        )
        self.tracker = ForecastErrorTracker()
        self._registered: set[Hashable] = set()
        self._pruned_at = clock()
        if start:
            self.refresher.start()

    @staticmethod
    def key(address: str, query: str, policy: Policy) -> Hashable:
        # The request options are part of the series: another tenant's headers
        # may read other data.
        return SeriesKey(
            address,
            query,
            policy.backend,
            policy.forecast.history_seconds,
            policy.forecast.quantile,
            absent_is_zero(policy),
        )

    def forecast_for(
        self, address: str, query: str, policy: Policy, now: float, demand: float | None = None
    ) -> tuple[Forecast | None, str | None]:
        """The latest forecast of `query` and, when there is none, why."""
        key = self.key(address, query, policy)
        if key not in self._registered or self.refresher.status(key) is None:
            if len(self._registered) > 10_000:  # series the refresher dropped as idle
                self._registered.clear()
            if now - self._pruned_at > 60.0:
                # Series the refresher dropped as idle take their error scores with them.
                self._pruned_at = now
                self.tracker.prune(now - self.refresher.idle_seconds)
            registered = self.refresher.register(
                key,
                partial(self.source.range, address, query, options=policy.backend),
                history_seconds=policy.forecast.history_seconds,
                step_seconds=history_step_seconds(policy.forecast.history_seconds),
                quantile=policy.forecast.quantile,
                horizon_seconds=self._horizon_seconds,
                # One tenant's options (headers, TLS) may fail where another's work.
                backend=(address, policy.backend),
                absent_is_zero=absent_is_zero(policy),
            )
            if not registered:
                return None, (
                    f"this server forecasts at most {self.refresher.max_series} series and "
                    "all are taken (--max-forecast-series)"
                )
            self._registered.add(key)
        forecast = self.refresher.latest(key)
        if demand is not None:
            self.tracker.record_actual(key, now, demand)
        if forecast is None:
            status = self.refresher.status(key)
            return None, status.message if status else "no forecast yet"
        target = now + lead_seconds(policy, self._settings)
        point = forecast.window(target, target)
        if point.stop > point.start:
            self.tracker.record_forecast(
                key, target, float(forecast.median[point.start]), float(forecast.upper[point.start])
            )
        return forecast, None

    def collector(self) -> Collector:
        """The refresher's series by state and its backends that are down, for /metrics."""
        return _SeriesCollector(self.refresher)

    def errors(self, address: str, query: str, policy: Policy) -> ForecastErrors | None:
        return self.tracker.errors(self.key(address, query, policy))

    def close(self) -> None:
        self.refresher.close()


class _SeriesCollector(Collector):
    def __init__(self, refresher: ForecastRefresher) -> None:
        self._refresher = refresher

    def collect(self) -> Iterator[Metric]:
        states, down = self._refresher.census()
        series = GaugeMetricFamily(
            "tidescaler_forecast_series",
            "Forecast series refit in the background, by state (ok, fetch_error, ...).",
            labels=["state"],
        )
        for state in ForecastState:
            series.add_metric([state.value], states.get(state, 0))
        yield series
        yield GaugeMetricFamily(
            "tidescaler_forecast_backends_down",
            "Backends (Prometheus address and request options) whose history fetch got no "
            "answer; their series wait for the retry delay.",
            value=down,
        )
