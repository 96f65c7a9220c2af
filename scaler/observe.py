"""Gathers the observations one policy needs from the adapters.

The bridge between the outside world and the pure engine: it asks the
Prometheus source for demand and resource usage (the source coalesces and
remembers last good values) and the forecast refresher for the latest
forecast, and hands back plain `Observations`. Nothing here blocks on a fit,
and nothing waits on Prometheus longer than the source's answer budget. The
trigger's request options (KEDA's prometheus keys) go to the source as the
server's `BackendAccess` lets them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

from scaler.backend_access import BackendAccess
from scaler.engine import Observations, ResourceSample, Sample, Signal
from scaler.forecast.refresher import ForecastErrors
from scaler.forecast.types import Forecast
from scaler.policy import BackendOptions, Policy, ResourcePolicy
from scaler.sources.bounded_http import redacted_url
from scaler.sources.prometheus import NO_TENANT, BackendError, PrometheusSource, Reading
from scaler.sources.resources import ResourceName, ScaledObjectName


class ForecastProvider(Protocol):
    """Where the request path reads forecasts; fitting happens elsewhere."""

    def forecast_for(
        self, address: str, query: str, policy: Policy, now: float, demand: float | None = None
    ) -> tuple[Forecast | None, str | None]:
        """The latest forecast for the series, or None and why there is none.

        `demand` is the series' value now when the caller has it, to score past forecasts.
        """
        ...

    def errors(self, address: str, query: str, policy: Policy) -> ForecastErrors | None:
        """Rolling error of the series' past forecasts against what happened."""
        ...


# Good readings whose observations are kept (a few hundred bytes each).
READINGS_KEPT = 10_000


@dataclass(frozen=True)
class BackendProblem:
    signal: Signal
    kind: str
    message: str  # for the server's log: names the Prometheus asked
    shown: str  # for the ScaledObject's owner (an Event): see `for_tenant`


def for_tenant(policy: Policy, address: str, error: BackendError | str) -> str:
    """A backend error as the ScaledObject's owner sees it (status messages, Events).

    Errors name the Prometheus they came from. A trigger that set its own
    prometheusAddress sees that address and the whole error; one that uses the
    server's --prometheus-url is told "the server's Prometheus", without a connection
    failure's own words (they may name hosts): where that Prometheus is, is the
    operator's business (the server's log has it), as the allow-list is."""
    if policy.prometheus_address is not None:
        return str(error)
    text = error.public() if isinstance(error, BackendError) else error
    return text.replace(f"Prometheus at {redacted_url(address)}", "the server's Prometheus")


def _wanted_resources(resources: ResourcePolicy) -> list[tuple[Signal, ResourceName]]:
    """The resource signals the policy sets a target for, and the resource each reads."""
    targets: tuple[tuple[Signal, ResourceName, float | None], ...] = (
        (Signal.CPU, "cpu", resources.cpu_utilization_percent),
        (Signal.MEMORY, "memory", resources.memory_utilization_percent),
    )
    return [(signal, name) for signal, name, target in targets if target is not None]


class Observer:
    def __init__(
        self,
        source: PrometheusSource,
        forecasts: ForecastProvider | None = None,
        access: BackendAccess | None = None,
    ) -> None:
        self.source = source
        self.forecasts = forecasts
        self.access = access or BackendAccess()
        # id(reading) -> (reading, observations); see `_of_good_reading`. The entry holds
        # the reading, so its id cannot be reused while the entry exists.
        self._by_reading: dict[int, tuple[Reading, Observations]] = {}

    def refusal(self, policy: Policy) -> str | None:
        """Why the server refuses the policy's request options (headers, parameters), or None."""
        return self.access.check(policy.backend)[1]

    def options_for(self, policy: Policy) -> BackendOptions:
        """The request options sent for `policy`: those the server lets through. The
        server's configuration does not change, so a caller may keep them."""
        return self.access.check(policy.backend)[0]

    def _as_sent(self, policy: Policy) -> Policy:
        """The policy with the request options the server lets through (history reads too)."""
        options, _ = self.access.check(policy.backend)
        return policy if options is policy.backend else replace(policy, backend=options)

    def _resources_ready(
        self,
        policy: Policy,
        address: str,
        options: BackendOptions,
        scaled_object: ScaledObjectName | None,
    ) -> bool:
        resources = policy.resources
        if resources is None:
            return True
        return all(
            self.source.resource_ready(
                address, resources.pod_selector, name, options=options, scaled_object=scaled_object
            )
            for _, name in _wanted_resources(resources)
        )

    def observe_at_hand(
        self,
        policy: Policy,
        address: str,
        now: float,
        options: BackendOptions,
        *,
        tenant: str = NO_TENANT,
        scaled_object: ScaledObjectName | None = None,
    ) -> tuple[Observations, list[BackendProblem], float] | None:
        """`observe` when it would not wait on a backend (every answer it needs is at
        hand), with `unchanged_for` of what it read; else None, having started nothing
        but the background refresh of an answer due for one (charged to `tenant`).
        Forecasts never wait, they are refit in the background. The warm request path:
        one pass over the source, with the `options_for` the caller kept."""
        query = policy.query
        reading = None
        unchanged = -math.inf
        if query is not None:
            at_hand = self.source.shared_at_hand(
                address,
                query.query,
                ignore_null_values=query.ignore_null_values,
                options=options,
                tenant=tenant,
            )
            if at_hand is None:
                return None
            reading, shared = at_hand
            if policy.resources is None and policy.forecast_query is None:
                unchanged = shared
        if policy.resources is not None and not self._resources_ready(
            policy, address, options, scaled_object
        ):
            return None
        observed = self._observe(policy, address, now, options, reading, tenant, scaled_object)
        return *observed, unchanged

    def unchanged_for(
        self, policy: Policy, address: str | None, options: BackendOptions | None = None
    ) -> float:
        """How many more seconds what `observe` returns for `policy` is known to stay what
        it would return now: for ever when it reads no backend; while the shared answer of
        a query (its only signal) is younger than the coalescing interval, as no newer
        one is asked for before then; -inf otherwise (resources, forecasts: a refit may
        land at any time), and when no answer is at hand."""
        if address is None:
            return math.inf
        query = policy.query
        if query is None or policy.resources is not None or policy.forecast_query is not None:
            return -math.inf
        if options is None:
            options = self.options_for(policy)
        return self.source.shared_for(address, query.query, options=options)

    def observe(
        self,
        policy: Policy,
        address: str | None,
        now: float,
        options: BackendOptions | None = None,
        *,
        tenant: str = NO_TENANT,
        scaled_object: ScaledObjectName | None = None,
    ) -> tuple[Observations, list[BackendProblem]]:
        """Everything `decide()` needs for `policy`, and what went wrong getting it.

        `address` is the Prometheus to ask (None when the policy needs none); `options`
        the policy's `options_for`, when the caller kept them; `tenant` the namespace of
        the ScaledObject asking, charged with the requests this sends (one tenant may
        hold only a share of a backend's request slots); `scaled_object` its (namespace,
        name), which tells the resource signals a workload at zero (see `at_zero_query`).
        """
        if options is None:
            options = self.options_for(policy)
        return self._observe(policy, address, now, options, None, tenant, scaled_object)

    def _start(
        self,
        policy: Policy,
        address: str,
        options: BackendOptions,
        tenant: str,
        scaled_object: ScaledObjectName | None,
    ) -> None:
        """Send every query `policy` reads whose answer is not shared already."""
        if policy.query is not None:
            self.source.start(address, policy.query.query, options=options, tenant=tenant)
        resources = policy.resources
        if resources is not None:
            for _, name in _wanted_resources(resources):
                self.source.start_resource(
                    address,
                    resources.pod_selector,
                    name,
                    options=options,
                    tenant=tenant,
                    scaled_object=scaled_object,
                )

    def _observe(
        self,
        policy: Policy,
        address: str | None,
        now: float,
        options: BackendOptions,
        reading: Reading | None,
        tenant: str,
        scaled_object: ScaledObjectName | None = None,
    ) -> tuple[Observations, list[BackendProblem]]:
        """`observe`, with the query's reading when the caller already has it."""
        demand = cpu = memory = None
        cpu_listing = memory_listing = None
        forecast: Forecast | None = None
        forecast_problem: str | None = None
        errors: dict[str, str] = {}
        problems: list[BackendProblem] = []

        deadline = None
        if reading is None and address is not None:
            # One answer budget for the whole decision, not one per signal: every query
            # is sent before any is waited for, and all waits end at the same time.
            self._start(policy, address, options, tenant, scaled_object)
            deadline = self.source.deadline()
        if policy.query is not None and address is not None:
            if reading is None:
                reading = self.source.read(
                    address,
                    policy.query.query,
                    ignore_null_values=policy.query.ignore_null_values,
                    options=options,
                    deadline=deadline,
                    tenant=tenant,
                )
            if reading.error is None and policy.resources is None and policy.forecast_query is None:
                return self._of_good_reading(reading), []
            if reading.error is not None:
                shown = for_tenant(policy, address, reading.error)
                errors[Signal.QUERY] = shown
                problems.append(
                    BackendProblem(Signal.QUERY, str(reading.error.kind), str(reading.error), shown)
                )
            if reading.value is not None and reading.observed_at is not None:
                error = errors.get(Signal.QUERY) if reading.error else None
                demand = Sample(reading.value, reading.observed_at, error)

        resources = policy.resources
        if resources is not None and address is not None:
            for signal, resource in _wanted_resources(resources):
                usage = self.source.read_resource(
                    address,
                    resources.pod_selector,
                    resource,
                    options=options,
                    deadline=deadline,
                    tenant=tenant,
                    scaled_object=scaled_object,
                )
                if usage.error is not None:
                    shown = for_tenant(policy, address, usage.error)
                    errors[signal] = shown
                    problems.append(
                        BackendProblem(signal, str(usage.error.kind), str(usage.error), shown)
                    )
                if (
                    usage.pods is not None
                    and usage.usage is not None
                    and usage.observed_at is not None
                ):
                    error = errors.get(signal) if usage.error else None
                    sample = ResourceSample(
                        usage.pods, usage.usage, usage.observed_at, usage.window_seconds, error
                    )
                    if signal is Signal.CPU:
                        cpu = sample
                    else:
                        memory = sample
                if signal is Signal.CPU:
                    cpu_listing = usage.listing
                else:
                    memory_listing = usage.listing

        forecast_query = policy.forecast_query
        if forecast_query is not None and address is not None:
            if self.forecasts is None:
                forecast_problem = "this server runs without a forecaster"
            else:
                same_series = policy.query is not None and forecast_query == policy.query.query
                forecast, forecast_problem = self.forecasts.forecast_for(
                    address,
                    forecast_query,
                    self._as_sent(policy),
                    now,
                    demand.value
                    if same_series and demand is not None and not demand.error
                    else None,
                )
                if forecast_problem is not None:
                    forecast_problem = for_tenant(policy, address, forecast_problem)

        return Observations(
            demand=demand,
            cpu=cpu,
            memory=memory,
            cpu_listing=cpu_listing,
            memory_listing=memory_listing,
            forecast=forecast,
            forecast_problem=forecast_problem,
            errors=errors,
        ), problems

    def _of_good_reading(self, reading: Reading) -> Observations:
        """The observations of a policy that reads one query and nothing else, from a good
        reading. The source shares one good reading among all callers of an answer, and
        the observations depend on nothing else, so they are made once per reading."""
        known = self._by_reading.get(id(reading))
        if known is not None and known[0] is reading:
            return known[1]
        demand = None
        if reading.value is not None and reading.observed_at is not None:
            demand = Sample(reading.value, reading.observed_at, None)
        observations = Observations(demand=demand, errors={})
        if len(self._by_reading) >= READINGS_KEPT:
            self._by_reading.clear()  # answers are replaced every few seconds: start afresh
        self._by_reading[id(reading)] = (reading, observations)
        return observations

    def forecast_errors(self, policy: Policy, address: str | None) -> ForecastErrors | None:
        query = policy.forecast_query
        if self.forecasts is None or query is None or address is None:
            return None
        return self.forecasts.errors(address, query, self._as_sent(policy))
