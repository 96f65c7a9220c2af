"""A trace whose resolution changes (days at 5m, then days at 1m) is refused, naming where.

Its coarse rows looked like gaps on the fine grid: --fill-missing zero piled each
5 minutes of traffic into one minute (peaks 5x), hold repeated it five times (mean
3x). Gaps on one constant grid keep their message and their fills.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from scaler.cli import main
from scaler.traces import FillMissing, TraceError, read_trace

START = 1_700_006_400  # 2023-11-15T00:00:00Z
FILLS = ["error", "zero", "hold"]


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write(path: Path, times: list[int] | np.ndarray, value: int = 300) -> Path:
    rows = "".join(f"{int(t)},{value}\n" for t in times)
    path.write_text("timestamp,requests\n" + rows, encoding="utf-8")
    return path


def stretch(start: int, hours: float, step: int) -> list[int]:
    return list(range(start, start + int(hours * 3600), step))


def refused(path: Path, fill: FillMissing) -> str:
    with pytest.raises(TraceError) as info:
        read_trace(path, fill_missing=fill)
    return str(info.value)


def step_change(path: Path, line: int, at: float, before: str, after: str) -> str:
    coarse = "5m"
    return (
        f"{path}:{line}: the interval between rows changes from {before} to {after} at "
        f"{iso(at)}: filling the gaps between the {coarse} rows would change the traffic; "
        f"resample the trace to one step of {coarse} (add up the counts, or average the rates, "
        f"of each {coarse}) and read it again"
    )


@pytest.mark.parametrize("fill", FILLS)
def test_five_minutes_then_one_minute_is_refused_at_the_change(
    tmp_path: Path, fill: FillMissing
) -> None:
    # Two days at 5m, then two days at 1m: the 1m rows are the most common interval.
    change = START + 2 * 86400
    times = stretch(START, 48, 300) + stretch(change, 48, 60)
    path = write(tmp_path / "mixed.csv", times)
    # The last 5m row, on line 2 + 576, is where the rows start coming every minute.
    assert refused(path, fill) == step_change(path, 578, change, "5m", "1m")


@pytest.mark.parametrize("fill", FILLS)
def test_one_minute_then_five_minutes_is_refused_at_the_change(
    tmp_path: Path, fill: FillMissing
) -> None:
    change = START + 2 * 86400
    times = stretch(START, 48, 60) + stretch(change, 24, 300)
    path = write(tmp_path / "mixed.csv", times)
    assert refused(path, fill) == step_change(path, 2 + 2880, change, "1m", "5m")


def test_a_stretch_at_a_finer_step_is_named_not_called_off_the_grid(tmp_path: Path) -> None:
    # Mostly 5m rows: the 1m ones were "off the grid of one row every 5m".
    change = START + 3 * 86400
    times = stretch(START, 72, 300) + stretch(change, 6, 60)
    path = write(tmp_path / "mixed.csv", times)
    assert refused(path, "error") == step_change(path, 2 + 864, change, "5m", "1m")


def test_the_command_says_it_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change = START + 2 * 86400
    path = write(tmp_path / "mixed.csv", stretch(START, 48, 300) + stretch(change, 48, 60))
    for command in ("simulate", "backtest"):
        assert main([command, "--trace", str(path), "--fill-missing", "zero"]) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert errors == [f"error: {step_change(path, 578, change, '5m', '1m')}"], err


def test_gaps_on_one_grid_keep_their_message_and_their_fills(tmp_path: Path) -> None:
    """Rows lost here and there, an hour lost, every fifth minute lost, and a dozen
    rows two minutes apart: gaps, not another resolution."""
    times = np.arange(START, START + 86400, 60)
    lost = np.zeros(len(times), dtype=bool)
    lost[1:500] = np.random.default_rng(7).random(499) < 0.2  # a fifth of the rows
    lost[600:660] = True  # an hour
    lost[800:900:5] = True  # every fifth minute for 100 minutes
    lost[1000:1022:2] = True  # every other minute, 11 times in a row
    kept = times[~lost]
    path = write(tmp_path / "gappy.csv", kept)
    message = refused(path, "error")
    first = int(np.flatnonzero(lost)[0])
    assert message.startswith(
        f"{path}:{first + 2}: 1 interval(s) of 1m missing before {iso(times[first + 1])} "
        f"(after line {first + 1}), {int(lost.sum())} in all; "
    ), message
    assert message.endswith(
        "write the missing intervals as rows, or pass --fill-missing zero (no traffic) or "
        "--fill-missing hold (repeat the last value)"
    )
    trace = read_trace(path, fill_missing="zero")
    assert trace.step_seconds == 60 and len(trace.values) == int(kept[-1] - kept[0]) // 60 + 1
    assert trace.values.sum() == 300 * len(kept)


def test_a_jittered_grid_with_gaps_is_still_snapped_and_filled(tmp_path: Path) -> None:
    times = np.arange(START, START + 6 * 3600, 60).astype(float)
    times += np.random.default_rng(3).uniform(-0.3, 0.3, len(times))  # 0.5 % of the step
    kept = np.delete(times, np.s_[100:130])
    path = tmp_path / "jitter.csv"
    path.write_text(
        "timestamp,requests\n" + "".join(f"{t:.3f},300\n" for t in kept), encoding="utf-8"
    )
    trace = read_trace(path, fill_missing="hold")
    assert trace.step_seconds == 60 and len(trace.values) == len(times)
    assert trace.fills == ("filled 30 missing interval(s) in 1 gap(s) (holding the last value)",)
