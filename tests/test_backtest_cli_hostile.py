"""`tidescaler backtest` under hostile flags: spans the forecaster cannot use are refused
up front, naming the flag at fault, and forecasts it could not make are not left silent.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from scaler.backtest_cli import (
    fine_step_note,
    forecaster_min_history,
    rounding_note,
    unscored_note,
)
from scaler.cli import main
from scaler.forecast.backtest import run
from scaler.traces import Trace, TraceError

STEP = 300.0
START = 1_700_000_000


def _rate(days: float) -> np.ndarray:
    t = np.arange(int(days * 86400 / STEP)) * STEP
    return 100.0 + 60.0 * np.sin(2 * math.pi * t / 86400)


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("backtest") / "two_days.csv"
    lines = ["timestamp,requests"]
    lines += [f"{START + int(i * STEP)},{round(r * STEP)}" for i, r in enumerate(_rate(2))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _backtest(trace_file: Path, *flags: str) -> list[str]:
    return ["backtest", "--trace", str(trace_file), "--stride", "6h", *flags]


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize("history", ["0", "1m", "1h", "2h59m"])
def test_a_history_the_forecaster_cannot_use_is_refused_with_the_minimum(
    trace_file: Path, history: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to give a tidescaler row of NaN with n 0 and no reason.
    flags = _backtest(trace_file, "--min-history", "1d", "--horizons", "1h", "--history", history)
    assert main(flags) == 2
    error = _error(capsys)
    assert "--history" in error and "at least 3h" in error and "5m step" in error


def test_a_min_history_shorter_than_the_forecaster_needs_is_refused(
    trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_backtest(trace_file, "--min-history", "1h", "--horizons", "1h")) == 2
    assert "--min-history 1h is shorter than the forecaster needs: at least 3h" in _error(capsys)


def test_the_minimum_follows_the_step() -> None:
    # 24 points: over 3 h at 5 minutes, a day at an hour; a 10 s step is averaged to 60 s.
    assert forecaster_min_history(300.0) == 3 * 3600.0
    assert forecaster_min_history(3600.0) == 86400.0
    assert forecaster_min_history(10.0) == 3 * 3600.0


def test_a_horizon_longer_than_the_trace_blames_the_horizon(
    trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to say "use a longer trace or a shorter --min-history".
    assert main(_backtest(trace_file, "--min-history", "1d", "--horizons", "1h,30d")) == 2
    error = _error(capsys)
    assert error.startswith("error: --horizons: 30d is not shorter than the trace")
    assert "up to 1d" in error and "shorter --min-history" not in error


def test_a_horizon_past_the_trace_after_min_history_names_both_flags(
    trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before, this horizon's rows had n 0 and NaN scores, without a word.
    assert main(_backtest(trace_file, "--min-history", "1d", "--horizons", "1h,36h")) == 2
    error = _error(capsys)
    assert "--horizons 36h after --min-history 1d" in error
    assert "horizons up to 1d" in error and "a shorter --min-history (at most 12h" in error


def test_a_min_history_as_long_as_the_trace_says_so(
    trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_backtest(trace_file, "--horizons", "1h")) == 2  # --min-history 7d
    error = _error(capsys)
    assert "no origin after 7 days of history" in error and "a shorter --min-history" in error


@pytest.mark.parametrize("history", ["400d", "1e20", "1e300"])
def test_a_min_history_of_any_length_past_the_trace_is_the_same_error(
    trace_file: Path, history: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1e300 s used to end in numpy's "Maximum allowed size exceeded" traceback.
    assert main(_backtest(trace_file, "--min-history", history, "--horizons", "1h")) == 2
    error = _error(capsys)
    assert error.startswith("error: two_days.csv: 576 rows (2.0 days) leave no origin after ")
    assert error.endswith(" days of history; use a longer trace or a shorter --min-history")


def test_the_backtest_itself_refuses_a_history_past_any_index() -> None:
    trace = Trace(START + np.arange(576) * STEP, _rate(2) * STEP, STEP, "two_days")
    with pytest.raises(TraceError, match=r"leave no origin after 1\.15741e\+295 days"):
        run(trace, [3600.0], min_history_seconds=1e300)


def test_a_stride_of_zero_is_refused(trace_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["backtest", "--trace", str(trace_file), "--stride", "0"])
    assert exit_.value.code == 2
    assert "--stride" in capsys.readouterr().err


def test_usable_spans_still_run_without_a_note(
    trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = _backtest(trace_file, "--min-history", "1d", "--horizons", "1h", "--history", "3h")
    assert main([*flags, "--json"]) == 0
    captured = capsys.readouterr()
    assert '"tidescaler"' in captured.out and "no forecast" not in captured.err


def test_origins_the_forecaster_skipped_are_noted() -> None:
    # A gap in the history before some origins: fewer than 24 finite points in 3 h.
    values = _rate(2) * STEP
    values[int(30 * 3600 / STEP) : int(33 * 3600 / STEP)] = np.nan
    trace = Trace(START + np.arange(len(values)) * STEP, values, STEP, "gappy")
    result = run(
        trace,
        [3600.0],
        stride_seconds=3600.0,
        min_history_seconds=86400.0,
        history_seconds=3 * 3600.0,
    )
    note = unscored_note(result)
    assert note is not None and "no forecast at some origins (1h: " in note
    assert "24 finite points" in note


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_write_that_fails_at_the_end_is_one_line(
    trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = _backtest(trace_file, "--min-history", "1d", "--horizons", "1h")
    assert main([*flags, "--forecasts-csv", "/dev/full"]) == 1
    assert "cannot write the output" in _error(capsys)


def test_the_default_history_is_a_triggers_and_a_long_trace_says_a_week_needs_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The backtest scored 28 days of history by default while a trigger learns from 7:
    a planner read a forecaster the service does not run. Now the default is the
    trigger's, and a trace long enough to tell says a weekly pattern needs more."""
    path = tmp_path / "three_weeks.csv"
    step = 3600
    rows = ["timestamp,requests"]
    rows += [f"{START + i * step},{100 + (i % 24)}" for i in range(22 * 24)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    flags = ["--stride", "7d", "--horizons", "1h", "--json"]
    assert main(["backtest", "--trace", str(path), *flags]) == 0
    err = capsys.readouterr().err
    assert "learns from 7d of history at each origin, as a trigger without forecastHistory" in err
    assert "a weekly pattern needs 14d or more: compare --history 28d" in err
    assert main(["backtest", "--trace", str(path), *flags, "--history", "28d"]) == 0
    assert "weekly pattern" not in capsys.readouterr().err
    # A trace too short for two weeks after --min-history has nothing to compare: no note.
    short = tmp_path / "two_weeks.csv"
    short.write_text("\n".join(rows[: 14 * 24 + 1]) + "\n", encoding="utf-8")
    assert main(["backtest", "--trace", str(short), *flags]) == 0
    assert "weekly pattern" not in capsys.readouterr().err


def test_horizons_and_stride_off_the_trace_step_are_said_as_scored() -> None:
    """A 10m horizon on an hourly trace is scored at 1h (its row reads '1h'): said."""
    assert rounding_note([3600.0, 600.0], 5400.0, 3600.0) == (
        "note: on this trace's 1h grid --horizons 10m is scored at 1h, --stride 90m is 2h"
    )
    assert rounding_note([300.0, 3600.0], 3600.0, 300.0) is None
    assert rounding_note([90.0], 60.0, 60.0) == (
        "note: on this trace's 1m grid --horizons 90s is scored at 2m"
    )


def test_the_rounding_note_reaches_the_user(
    trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_backtest(trace_file, "--horizons", "7m", "--min-history", "1d")) == 0
    err = capsys.readouterr().err
    assert f"grid --horizons 7m is scored at {int(math.ceil(420 / STEP) * STEP / 60)}m" in err


def test_a_trace_finer_than_the_forecasters_step_is_said_to_be_scored_finer() -> None:
    """10 s data: the band is set on 1 m averages and scored on single 10 s values,
    which it covers less often; at 1 m and coarser nothing is said."""
    note = fine_step_note(10.0)
    assert note is not None
    assert note.startswith("note: the forecaster averages this trace's 10s intervals into 1m")
    assert fine_step_note(60.0) is None and fine_step_note(300.0) is None
