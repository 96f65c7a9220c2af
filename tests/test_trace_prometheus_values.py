"""A series fetched with `--prometheus-url` is checked as the same answer in a file is.

A real Prometheus holds the odd values (it stores -5, +Inf, -Inf and NaN as any
float); the series fetched from it must be refused, or read, exactly as the
query_range answer saved to a file and given to `--trace`.
"""

from __future__ import annotations

import math
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from prometheus_server import PrometheusServer, Series, grid, openmetrics

from scaler.cli import main
from scaler.sources.prometheus import PrometheusSource
from scaler.trace_query import Range, query_trace
from scaler.traces import FillMissing

pytestmark = pytest.mark.prometheus

METRIC = "tidescaler_value_checks_rps"  # own name: the server is shared
STEP = 60.0
POINTS = 360  # six hours of one-minute samples
ODD = 100  # the sample that holds the odd value (0-based): "sample 101"
RATE = 100.0
# What each series holds at ODD; "hole" has no samples there for 20 minutes.
ODD_VALUES = {"neg": -5.0, "inf": math.inf, "neginf": -math.inf, "nan": math.nan, "hole": None}
HOLE = 20


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def series(prometheus: PrometheusServer) -> Iterator[tuple[str, float, float]]:
    """Six hours at 100 requests/s, one series per case, ending two hours ago."""
    end = math.floor((time.time() - 7200) / STEP) * STEP
    start = end - (POINTS - 1) * STEP
    times = grid(start, end, STEP)
    backfilled = []
    for case, odd in ODD_VALUES.items():
        samples = []
        for i, t in enumerate(times):
            if odd is None and ODD <= i < ODD + HOLE:
                continue
            samples.append((t, odd if i == ODD and odd is not None else RATE))
        backfilled.append(Series(METRIC, {"case": case}, samples))
    prometheus.backfill(openmetrics(backfilled))
    yield prometheus.url, start, end


def query(case: str) -> str:
    return f'{METRIC}{{case="{case}"}}'


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    err = capsys.readouterr().err
    return status, err


def fetched(command: str, span: tuple[str, float, float], case: str, *more: str) -> list[str]:
    url, start, end = span
    return [
        command, "--prometheus-url", url, "--query", query(case),
        "--start", iso(start), "--end", iso(end), "--step", "1m", *more,
    ]  # fmt: skip


def saved_answer(span: tuple[str, float, float], case: str, path: Path) -> Path:
    """The query_range answer as Prometheus gives it, written to `path` unchanged."""
    url, start, end = span
    params = urllib.parse.urlencode(
        {"query": query(case), "start": start, "end": end, "step": STEP}
    )
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=10) as answer:
        path.write_bytes(answer.read())
    return path


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if not line.startswith(("note:", "warning:"))]


@pytest.mark.parametrize("command", ["simulate", "backtest"])
def test_a_negative_sample_is_refused_as_in_the_saved_answer(
    series: tuple[str, float, float],
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It ran on -5 requests/s without a word, where the same answer in a file is refused.
    _, start, _ = series
    expected = (
        f"error: prometheus: sample {ODD + 1} at {iso(start + ODD * STEP)}: value -5 is "
        "negative; query rate() or increase() of the counter, not the counter itself"
    )
    for fill in ("error", "zero"):
        status, err = run(fetched(command, series, "neg", "--fill-missing", fill), capsys)
        assert (status, errors(err)) == (2, [expected]), err
    path = saved_answer(series, "neg", tmp_path / "neg.json")
    status, err = run([command, "--trace", str(path)], capsys)
    assert (status, errors(err)) == (2, [expected.replace("prometheus:", f"{path}:")]), err


@pytest.mark.parametrize(("case", "written"), [("inf", "+Inf"), ("neginf", "-Inf")])
@pytest.mark.parametrize("fill", ["error", "zero", "hold"])
def test_an_infinite_sample_is_an_error_whatever_fill_missing_says(
    series: tuple[str, float, float],
    case: str,
    written: str,
    fill: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # +Inf became "1 interval(s) missing", and under --fill-missing zero no traffic at all.
    _, start, _ = series
    status, err = run(fetched("backtest", series, case, "--fill-missing", fill), capsys)
    assert status == 2
    assert errors(err) == [
        f"error: prometheus: sample {ODD + 1} at {iso(start + ODD * STEP)}: value {written} is "
        "not finite (the query divides by zero there?); fix the query so that it returns a "
        "number there"
    ]


def test_an_infinite_sample_in_the_saved_answer_is_refused_too(
    series: tuple[str, float, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, start, _ = series
    path = saved_answer(series, "inf", tmp_path / "inf.json")
    status, err = run(["backtest", "--trace", str(path), "--fill-missing", "zero"], capsys)
    assert status == 2
    assert errors(err) == [
        f"error: {path}: sample {ODD + 1} at {iso(start + ODD * STEP)}: value +Inf is not "
        "finite (the query divides by zero there?); fix the query, or remove the sample and "
        "pass --fill-missing"
    ]


def test_a_nan_sample_is_named_as_nan_not_as_a_missing_one(
    series: tuple[str, float, float], capsys: pytest.CaptureFixture[str]
) -> None:
    _, start, _ = series
    status, err = run(fetched("simulate", series, "nan"), capsys)
    assert status == 2
    assert errors(err) == [
        f"error: prometheus: sample {ODD + 1} at {iso(start + ODD * STEP)}: value NaN (the "
        "query divides 0 by 0 there?), 1 in all, leaves the interval without a number; pass "
        "--fill-missing zero (no traffic) or --fill-missing hold (repeat the last value), or "
        "fix the query so that it returns a number there"
    ]
    # A sample that is not there at all keeps the message of a gap.
    status, err = run(fetched("simulate", series, "hole"), capsys)
    assert status == 2
    (line,) = errors(err)
    assert line.startswith("error: prometheus: sample ") and "NaN" not in line
    assert " interval(s) of 1m missing before " in line and "pass --fill-missing zero" in line


@pytest.mark.parametrize(("fill", "filled"), [("zero", 0.0), ("hold", RATE * STEP)])
def test_a_nan_sample_is_filled_as_fill_missing_says(
    series: tuple[str, float, float], fill: FillMissing, filled: float
) -> None:
    url, start, end = series
    trace = query_trace(url, query("nan"), Range(start, end, STEP), fill_missing=fill)
    assert len(trace.values) == POINTS and trace.timestamps[0] == start
    assert trace.values[ODD] == filled
    assert np.all(np.delete(trace.values, ODD) == RATE * STEP)
    assert trace.fills == (
        "filled 1 missing interval(s) in 1 gap(s) "
        f"({'with 0' if fill == 'zero' else 'holding the last value'})",
    )


def test_the_live_servers_range_still_reads_every_non_finite_value_as_a_gap(
    series: tuple[str, float, float],
) -> None:
    url, start, end = series
    with PrometheusSource() as source:
        for case in ("neg", "inf", "neginf", "nan"):
            _, values = source.range(url, query(case), start, end, STEP)
            _, raw, present = source.range_samples(url, query(case), start, end, STEP)
            assert present.all(), case
            odd = ODD_VALUES[case]
            assert odd is not None
            if math.isfinite(odd):
                assert values[ODD] == raw[ODD] == odd
            else:
                assert math.isnan(values[ODD]), case
                assert raw[ODD] == odd or (math.isnan(odd) and math.isnan(raw[ODD]))
            assert np.all(np.delete(values, ODD) == RATE)
