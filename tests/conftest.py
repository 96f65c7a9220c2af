"""Shared fixtures: a real Prometheus server and a live exporter it scrapes.

`prometheus` is one server for the whole session (starting one takes a fraction
of a second, but backfilling restarts it, so modules share it and use their
own metric names). `prometheus_factory` makes extra servers that a test may
stop, kill and restart at will. `exporter` serves gauges that every server
made here scrapes each second.

    def test_demand(prometheus, exporter):
        exporter.set("shop_requests_per_second", 120.0)
        prometheus.wait_for_value("shop_requests_per_second", 120.0)
        ...

    def test_outage(prometheus_factory):
        server = prometheus_factory()  # started, scraping the exporter
        server.kill()
        server.start()  # same port, same data
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_server import (
    Exporter,
    PrometheusNotInstalled,
    PrometheusServer,
    require_binaries,
)


@pytest.fixture(scope="session")
def prometheus_binaries() -> tuple[str, str]:
    """Paths of `prometheus` and `promtool`; fails (not skips) when they are missing."""
    try:
        return require_binaries()
    except PrometheusNotInstalled as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture(scope="session")
def exporter() -> Iterator[Exporter]:
    server = Exporter()
    yield server
    server.close()


@pytest.fixture(scope="session")
def prometheus(
    prometheus_binaries: tuple[str, str],
    exporter: Exporter,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusServer]:
    """A started Prometheus shared by the session, scraping `exporter` every second."""
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"), scrape_targets=[exporter.target]
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prometheus_factory(
    prometheus_binaries: tuple[str, str],
    exporter: Exporter,
    tmp_path: Path,
) -> Iterator[Callable[..., PrometheusServer]]:
    """Make extra started servers (own port and data), killed at teardown.

    Call with `start=False` to backfill before the first start.
    """
    servers: list[PrometheusServer] = []

    def make(*, start: bool = True, scrape: bool = True) -> PrometheusServer:
        directory = tmp_path / f"prometheus-{len(servers)}"
        directory.mkdir()
        server = PrometheusServer(directory, scrape_targets=[exporter.target] if scrape else [])
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.kill()
