"""`tidescaler backtest`: output shapes, recomputable forecasts, clear errors on bad traces."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_series import Tide, generate

from scaler.forecast import backtest
from scaler.traces import Trace, read_trace

STEP = 1800.0
T0 = 1_600_000_200.0


@pytest.fixture(scope="module")
def trace_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    y = generate(
        Tide(
            days=11,
            step_seconds=STEP,
            valley=3.5,
            peak_to_valley=20,
            poisson=False,
            relative_noise=0.15,
        ),
        np.random.default_rng(21),
    )
    path = tmp_path_factory.mktemp("traces") / "tide.csv"
    with path.open("w") as handle:
        handle.write("timestamp,cpu_cores\n")
        for i, v in enumerate(y):
            handle.write(f"{T0 + i * STEP:.0f},{v:.4f}\n")
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = backtest.main(args)
    out, err = capsys.readouterr()
    return status, out, err


def test_json_has_one_result_per_horizon_and_method(
    trace_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(["--trace", str(trace_csv), "--horizons", "1h,1d", "--json"], capsys)
    assert status == 0
    doc = json.loads(out)
    rows = doc["results"]
    methods = ["tidescaler", "seasonal_naive_day", "seasonal_naive_week", "last_value"]
    assert [(r["horizon_seconds"], r["method"]) for r in rows] == [
        (h, m) for h in (3600.0, 86400.0) for m in methods
    ]
    for r in rows:
        assert {"horizon_seconds", "method", "smape", "mase", "under_rate", "coverage"} <= set(r)
        assert 0 <= r["smape"] <= 2 and r["mase"] > 0 and 0 <= r["under_rate"] <= 1
        assert (r["coverage"] is None) == (r["method"] != "tidescaler")
    assert doc["origins"] == 96  # hourly from day 7 to the end of day 11


def test_forecasts_csv_recomputes_the_reported_scores(
    trace_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "forecasts.csv"
    status, out, _ = _run(
        [
            "--trace",
            str(trace_csv),
            "--horizons",
            "1h,6h",
            "--json",
            "--forecasts-csv",
            str(out_csv),
        ],
        capsys,
    )
    assert status == 0
    reported = {
        r["horizon_seconds"]: r for r in json.loads(out)["results"] if r["method"] == "tidescaler"
    }
    actual = {}
    with trace_csv.open() as handle:
        for row in csv.DictReader(handle):
            actual[float(row["timestamp"])] = float(row["cpu_cores"])
    with out_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["origin", "target", "horizon_seconds", "median", "upper"]
    for h, r in reported.items():
        mine = [row for row in rows if float(row["horizon_seconds"]) == h]
        a = np.array([actual[float(row["target"])] for row in mine])
        f = np.array([float(row["median"]) for row in mine])
        u = np.array([float(row["upper"]) for row in mine])
        assert all(float(row["target"]) - float(row["origin"]) == h for row in mine)
        assert r["smape"] == pytest.approx(backtest.smape(a, f) / 100, rel=1e-9)  # a ratio
        assert r["coverage"] == pytest.approx(float(np.mean(a <= u)))
        assert r["under_rate"] == pytest.approx(float(np.mean(a > f)))


def test_table_and_plot(
    trace_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(
        ["--trace", str(trace_csv), "--horizons", "1h", "--out", str(tmp_path / "plots")], capsys
    )
    assert status == 0
    assert "tidescaler" in out and "seasonal_naive_week" in out and "coverage" in out
    png = tmp_path / "plots" / "backtest_tide.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_horizons_finer_than_the_step_are_rounded_up(trace_csv: Path) -> None:
    result = backtest.run(read_trace(trace_csv), [600.0, 1800.0, 3600.0], stride_seconds=6 * 3600.0)
    assert result.horizons_seconds == (1800.0, 3600.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("", "empty file", id="empty"),
        pytest.param("time,value\n", ":1: header 'time,value' has no data rows", id="header"),
        pytest.param(
            "timestamp,requests\n0,1\n60,x\n", ":3: value 'x' is not a number", id="value"
        ),
        pytest.param("timestamp,requests\n0,1\n60,-3\n", ":3: value -3 is negative", id="negative"),
        pytest.param("timestamp,requests\n0,1\n60\n", ":3: 1 field(s) '60'", id="fields"),
        pytest.param(
            "timestamp,requests\n0,1\n0,1\n",
            ":3: timestamp 1970-01-01T00:00:00Z is also on line 2",
            id="order",
        ),
        pytest.param(
            "timestamp,requests\n0,1\n60,1\n180,1\n",
            ":4: 1 interval(s) of 1m missing before 1970-01-01T00:03:00Z",
            id="gap",
        ),
        pytest.param("timestamp,requests\n0,nan\n", ":2: value 'nan' is not a number", id="nan"),
        pytest.param("timestamp,requests\n0,1\n", "1 data row(s); needs at least 2", id="short"),
    ],
)
def test_bad_csv_is_rejected_naming_file_line_and_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    status, out, err = _run(["--trace", str(path)], capsys)
    assert status == 2
    assert out == ""
    flat = " ".join(err.split())
    assert f"{path}" in flat.replace(" ", "") or str(path) in flat
    assert message in flat


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _run(["--trace", str(tmp_path / "nope.csv")], capsys)
    assert status == 2 and "nope.csv: cannot open" in " ".join(err.split())


def test_trace_too_short_for_the_history_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "short.csv"
    path.write_text("timestamp,requests\n" + "".join(f"{i * 60},{i % 7}\n" for i in range(100)))
    status, _, err = _run(["--trace", str(path)], capsys)
    assert status == 2 and "no origin after 7 days of history" in " ".join(err.split())


def test_bad_horizon_is_rejected_by_the_parser(
    trace_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        backtest.main(["--trace", str(trace_csv), "--horizons", "10 minutes"])
    assert "not a duration" in capsys.readouterr().err


def test_a_method_without_scored_origins_shows_dashes_not_nan() -> None:
    from rich.console import Console

    trace = Trace(
        timestamps=np.array([0.0, 60.0]), values=np.ones(2), step_seconds=60.0, name="web"
    )
    scores = (
        backtest.Score(3600.0, "tidescaler", 12.5, 0.8, 0.4, 0.95, 30),
        backtest.Score(3600.0, "seasonal_naive_week", np.nan, np.nan, np.nan, None, 0),
    )
    result = backtest.BacktestResult(trace, 0.95, (3600.0,), 30, 1.0, scores, {}, {})
    console = Console(width=200, record=True)
    console.print(backtest.render_table(result))
    text = console.export_text()
    assert "nan" not in text.lower()
    week = next(line for line in text.splitlines() if "seasonal_naive_week" in line)
    assert week.count("-") >= 3 and "12.5" in text
