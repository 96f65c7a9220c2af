"""`simulate` and `backtest` straight from Prometheus: the real server, a backfilled week."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from prometheus_server import PrometheusServer, Series, free_port, grid, openmetrics

from scaler.cli import main

pytestmark = pytest.mark.prometheus

METRIC = "tidescaler_traces_requests_per_second"  # own name: the server is shared
STEP = 60.0
DAYS = 7


def demand(t: np.ndarray) -> np.ndarray:
    """A daily tide between 20 and 180 requests/s, peak at 14:00 UTC."""
    return 100.0 + 80.0 * np.cos(2 * math.pi * ((t % 86400) - 14 * 3600) / 86400)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def week(prometheus: PrometheusServer) -> Iterator[tuple[str, float, float]]:
    """A week of one-minute samples of METRIC, split over two pods, ending an hour ago."""
    end = math.floor((time.time() - 3600) / STEP) * STEP
    start = end - DAYS * 86400 + STEP
    times = grid(start, end, STEP)
    values = demand(np.asarray(times))
    series = [
        Series(
            METRIC, {"pod": pod}, [(t, float(v) / 2) for t, v in zip(times, values, strict=True)]
        )
        for pod in ("web-0", "web-1")
    ]
    prometheus.backfill(openmetrics(series))
    yield prometheus.url, start, end


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, " ".join(err.split())


def test_simulate_runs_on_the_query_answer(
    week: tuple[str, float, float], capsys: pytest.CaptureFixture[str]
) -> None:
    url, start, end = week
    query = f"sum({METRIC})"
    status, out, err = run(
        [
            "simulate",
            "--prometheus-url", url,
            "--query", query,
            "--start", iso(start),
            "--end", iso(end),
            "--step", "1m",
            "--policies", "static-peak,reactive,tidescaler",
            "--json",
        ],
        capsys,
    )  # fmt: skip
    assert status == 0, err
    data = json.loads(out)
    assert data["schema_version"] == 1
    traffic = data["traffic"]
    assert traffic["start"] == iso(start)
    assert traffic["peak_requests_per_second"] == pytest.approx(180.0, rel=1e-3)
    assert traffic["mean_requests_per_second"] == pytest.approx(100.0, rel=1e-2)
    assert data["input"]["intervals"] == DAYS * 1440
    assert data["input"]["step_seconds"] == 60.0
    assert "values read as requests per second" in " ".join(data["input"]["notes"])
    assert [p["policy"] for p in data["policies"]] == ["static-peak", "reactive", "tidescaler"]
    assert "note: prometheus: 10,080 points of 60s from" in err


def test_simulate_report_carries_the_users_query(
    week: tuple[str, float, float], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url, _, end = week
    out_dir = tmp_path / "report"
    query = f"sum({METRIC})"
    status, _, err = run(
        [
            "simulate",
            "--prometheus-url", url,
            "--query", query,
            "--start", iso(end - 3 * 86400),
            "--end", iso(end),
            "--policies", "static-peak,tidescaler",
            "--out", str(out_dir),
        ],
        capsys,
    )  # fmt: skip
    assert status == 0, err
    report = (out_dir / "report.md").read_text(encoding="utf-8")
    assert f"query: {query}" in report


def test_backtest_runs_on_the_query_answer(
    week: tuple[str, float, float], capsys: pytest.CaptureFixture[str]
) -> None:
    url, start, end = week
    status, out, err = run(
        [
            "backtest",
            "--prometheus-url", url,
            "--query", f"sum({METRIC})",
            "--start", iso(start),
            "--end", iso(end),
            "--min-history", "5d",
            "--horizons", "1h",
            "--stride", "12h",
            "--json",
        ],
        capsys,
    )  # fmt: skip
    assert status == 0, err
    data = json.loads(out)
    assert data["schema_version"] == 1
    assert data["step_seconds"] == 60.0
    tidescaler = next(r for r in data["results"] if r["method"] == "tidescaler")
    # A noiseless daily tide: the forecaster is within a few percent (sMAPE as a ratio).
    assert 0 <= tidescaler["smape"] < 0.05


def test_several_series_say_how_to_aggregate(
    week: tuple[str, float, float], capsys: pytest.CaptureFixture[str]
) -> None:
    url, start, end = week
    status, out, err = run(
        ["simulate", "--prometheus-url", url, "--query", METRIC, "--start", iso(start),
         "--end", iso(end)],
        capsys,
    )  # fmt: skip
    assert (status, out) == (2, "")
    assert err == (
        f"error: --query '{METRIC}' returns several series; the trace is one series: aggregate "
        "in the query, e.g. sum(rate(http_requests_total[1m])) or sum by () (...)"
    )


def test_a_query_with_no_data_in_the_range(
    week: tuple[str, float, float], capsys: pytest.CaptureFixture[str]
) -> None:
    url, start, _ = week
    status, _, err = run(
        ["backtest", "--prometheus-url", url, "--query", f"sum({METRIC})",
         "--start", iso(start - 10 * 86400), "--end", iso(start - 9 * 86400)],
        capsys,
    )  # fmt: skip
    assert status == 2
    assert "error: prometheus: 0 sample(s) in the range; needs at least 2: check the query " in err


def test_an_unreachable_prometheus_names_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    status, _, err = run(
        ["simulate", "--prometheus-url", url, "--query", "sum(up)", "--start", "1d"], capsys
    )
    assert status == 2
    assert err.startswith(f"error: --prometheus-url {url}: cannot connect")
    assert err.endswith("check the URL and that it is reachable")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prometheus-url", "http://127.0.0.1:9"], "--prometheus-url needs --query"),
        (
            ["--prometheus-url", "http://127.0.0.1:9", "--query", "up", "--start", "last week"],
            "--start 'last week': expected now, Unix seconds, an RFC 3339 date",
        ),
        (
            ["--prometheus-url", "http://127.0.0.1:9", "--query", "up", "--step", "0s"],
            "--step '0s': expected a duration > 0",
        ),
        (
            ["--prometheus-url", "http://127.0.0.1:9", "--query", "up", "--start", "now"],
            "--start 'now' is not before --end 'now'",
        ),
        (
            # 1.8e12 points: it sent queries until it was killed, saying nothing.
            [
                "--prometheus-url",
                "http://127.0.0.1:9",
                "--query",
                "up",
                "--step",
                "1ms",
                "--start",
                "0",
            ],
            "at --step '1ms' is 1.",  # 1.8e+12 in 2026; "points; at most" below
        ),
    ],
    ids=["no-query", "bad-start", "zero-step", "empty-range", "too-many-points"],
)
def test_flag_mistakes_before_any_request(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("simulate", "backtest"):
        status, _, err = run([command, *argv], capsys)
        assert status == 2 and message in err, (command, err)
        if "1ms" in argv:
            assert "e+12 points; at most 2,000,000 are read" in err


@pytest.mark.parametrize("command", ["simulate", "backtest", "fleet"])
def test_a_prometheus_url_without_a_scheme_is_refused_as_serve_refuses_it(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to reach the HTTP library: "No connection adapters were found".
    with pytest.raises(SystemExit) as info:
        main([command, "--prometheus-url", "localhost:9090", "--query", "up"])
    assert info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "argument --prometheus-url: must be an http:// or https:// base URL with a host "
        "(e.g. http://prometheus:9090), got 'localhost:9090'"
    ) in err
