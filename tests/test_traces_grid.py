"""Traces from real exporters: odd intervals, daylight-saving changes, jitter.

Trace intervals that neither divide nor are divided by the 15 s simulation step are
resampled keeping every request; local dates across a daylight-saving change are
named as such instead of advising --fill-missing or deleting rows; timestamps a few
milliseconds off a regular grid are snapped onto it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from scaler.cli import main
from scaler.sim.traffic import Traffic
from scaler.traces import TraceError, read_trace

T0 = 1_719_792_000  # 2024-07-01T00:00:00Z
SIM_STEP = 15.0
DST = "daylight-saving change"


# -- trace intervals that are neither a multiple nor a divisor of the step ----------


def covered_requests(rate: np.ndarray, interval: float, seconds: float) -> float:
    """Requests of a trace held constant within each interval, over its first `seconds`."""
    cumulative = np.concatenate(([0.0], np.cumsum(rate * interval)))
    return float(np.interp(seconds, interval * np.arange(len(rate) + 1), cumulative))


@pytest.mark.parametrize("interval", [10.0, 20.0, 7.0, 2419.0])
def test_resampling_keeps_every_request(interval: float) -> None:
    rate = np.random.default_rng(int(interval)).uniform(0.0, 500.0, int(3 * 86400 / interval))
    out = Traffic(T0, interval, rate).on_grid(SIM_STEP)
    # A partial last step is dropped, as the whole-divisor path drops it.
    assert len(out) == int(len(rate) * interval // SIM_STEP)
    expected = covered_requests(rate, interval, len(out) * SIM_STEP)
    assert out.sum() * SIM_STEP == pytest.approx(expected, rel=1e-12)
    if (len(rate) * interval) % SIM_STEP == 0:
        assert out.sum() * SIM_STEP == pytest.approx((rate * interval).sum(), rel=1e-12)
    assert np.all(out >= 0)


@pytest.mark.parametrize("interval", [10.0, 20.0, 7.0, 2419.0])
def test_a_constant_rate_stays_exactly_constant(interval: float) -> None:
    rate = np.full(int(86400 / interval), 3.7)
    out = Traffic(T0, interval, rate).on_grid(SIM_STEP)
    assert len(out) > 0 and np.all(out == 3.7)


def test_a_step_change_lands_in_the_right_simulation_steps() -> None:
    # 10 s intervals: 1 req/s for 90 s, then 5 req/s. The step [75, 90) is all before,
    # [90, 105) all after; with the change at 95 s, [90, 105) is a third before.
    rate = np.array([1.0] * 9 + [5.0] * 9)
    assert Traffic(T0, 10.0, rate).on_grid(SIM_STEP).tolist() == [1.0] * 6 + [5.0] * 6
    rate = np.array([1.0] * 19 + [5.0] * 11)  # change at 190 s, inside [180, 195)
    out = Traffic(T0, 10.0, rate).on_grid(SIM_STEP)
    assert out[:12].tolist() == [1.0] * 12
    assert out[12] == pytest.approx((10 * 1.0 + 5 * 5.0) / 15)
    assert out[13:].tolist() == [5.0] * 7


def test_a_coarse_odd_interval_is_held_across_steps() -> None:
    # 2419 s intervals: step 161 ([2415, 2430)) straddles the change at 2419 s.
    out = Traffic(T0, 2419.0, np.array([2.0, 6.0])).on_grid(SIM_STEP)
    assert len(out) == 2 * 2419 // 15
    assert out[:161].tolist() == [2.0] * 161
    assert out[161] == pytest.approx((4 * 2.0 + 11 * 6.0) / 15)
    assert out[162:].tolist() == [6.0] * (len(out) - 162)


@pytest.mark.parametrize("interval", [15.0, 60.0, 3600.0])
def test_whole_multiples_are_repeated_as_before(interval: float) -> None:
    rate = np.random.default_rng(1).uniform(0.0, 100.0, 500)
    out = Traffic(T0, interval, rate).on_grid(SIM_STEP)
    assert np.array_equal(out, np.repeat(rate, round(interval / SIM_STEP)))


@pytest.mark.parametrize("interval", [1.0, 5.0, 7.5])
def test_whole_divisors_are_averaged_as_before(interval: float) -> None:
    rate = np.random.default_rng(2).uniform(0.0, 100.0, 1003)
    k = round(SIM_STEP / interval)
    n = len(rate) // k
    out = Traffic(T0, interval, rate).on_grid(SIM_STEP)
    assert np.array_equal(out, rate[: n * k].reshape(n, k).mean(axis=1))


def test_simulate_runs_a_10s_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hours = np.arange(2 * 24 * 360) / 360.0
    counts = np.rint(1000 * (1.1 + np.sin(2 * np.pi * hours / 24))).astype(int)
    path = tmp_path / "step10.csv"
    rows = "".join(f"{T0 + 10 * i},{c}\n" for i, c in enumerate(counts))
    path.write_text(f"timestamp,requests\n{rows}")
    assert main(["simulate", "--trace", str(path), "--policies", "reactive"]) == 0
    assert "whole multiple" not in capsys.readouterr().err


# -- local dates across a daylight-saving change ------------------------------------


def local_rows(start: datetime, minutes: int, clock_shift_at: int, shift: int) -> str:
    """One row a minute of naive local dates whose clock jumps by `shift` minutes
    after `clock_shift_at` minutes (+60: clocks forward, -60: clocks back)."""
    rows = []
    for m in range(minutes):
        local = start + timedelta(minutes=m + (shift if m >= clock_shift_at else 0))
        rows.append(f"{local:%Y-%m-%d %H:%M:%S},{100 + m % 7}\n")
    return "time,requests\n" + "".join(rows)


def refused(path: Path, **options: str) -> str:
    with pytest.raises(TraceError) as err:
        read_trace(path, **options)  # type: ignore[arg-type]
    return str(err.value)


def test_clocks_forward_in_naive_dates_is_named_not_filled(tmp_path: Path) -> None:
    path = tmp_path / "spring.csv"
    path.write_text(local_rows(datetime(2024, 3, 31, 0, 0), 240, 120, 60))
    message = refused(path)
    assert "spring.csv:122: 60 interval(s) of 1m missing before " in message
    assert DST in message and "with their UTC offset" in message
    assert "pass --fill-missing zero" not in message
    # Filling anyway works, with a warning that the filled hour is made up.
    trace = read_trace(path, fill_missing="zero")
    assert len(trace.values) == 300
    assert any(DST in warning for warning in trace.warnings)


def test_clocks_back_in_naive_dates_is_named_not_deduplicated(tmp_path: Path) -> None:
    path = tmp_path / "autumn.csv"
    path.write_text(local_rows(datetime(2024, 10, 27, 1, 0), 240, 120, -60))
    message = refused(path)
    assert "is also on line" in message
    assert DST in message and "with their UTC offset" in message
    assert "keep one of the two rows" not in message


def test_clocks_back_sorted_by_the_exporter_is_named(tmp_path: Path) -> None:
    path = tmp_path / "autumn.csv"
    lines = local_rows(datetime(2024, 10, 27, 1, 0), 240, 120, -60).splitlines(keepends=True)
    path.write_text(lines[0] + "".join(sorted(lines[1:])))
    assert DST in refused(path)


def test_one_hour_gap_in_unix_seconds_says_nothing_of_daylight_saving(tmp_path: Path) -> None:
    path = tmp_path / "epoch.csv"
    times = [T0 + 60 * m for m in range(120)] + [T0 + 60 * m for m in range(180, 240)]
    path.write_text("timestamp,requests\n" + "".join(f"{t},5\n" for t in times))
    message = refused(path)
    assert "60 interval(s) of 1m missing" in message and "pass --fill-missing zero" in message
    assert DST not in message
    assert not read_trace(path, fill_missing="zero").warnings


def test_dates_with_an_offset_across_a_change_are_read_as_before(tmp_path: Path) -> None:
    start = datetime(2024, 10, 26, 23, 0, tzinfo=UTC)
    berlin = ZoneInfo("Europe/Berlin")
    rows = "".join(
        f"{(start + timedelta(minutes=m)).astimezone(berlin).isoformat()},1\n" for m in range(240)
    )
    path = tmp_path / "offset.csv"
    path.write_text("time,requests\n" + rows)
    trace = read_trace(path)
    assert len(trace.values) == 240 and not trace.warnings


def test_a_plain_duplicate_in_naive_dates_keeps_its_message(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(
        "time,requests\n2024-07-01 00:00:00,1\n2024-07-01 00:01:00,1\n2024-07-01 00:01:00,2\n"
    )
    message = refused(path)
    assert "keep one of the two rows" in message and DST not in message


# -- jitter --------------------------------------------------------------------------


def test_millisecond_jitter_is_snapped_onto_the_grid(tmp_path: Path) -> None:
    jitter = np.random.default_rng(3).uniform(-0.005, 0.005, 1440)
    values = np.arange(1440) % 97
    path = tmp_path / "jitter.csv"
    rows = "".join(
        f"{T0 + 60 * i + j:.3f},{v}\n" for i, (j, v) in enumerate(zip(jitter, values, strict=True))
    )
    path.write_text("time,requests\n" + rows)
    trace = read_trace(path)
    assert trace.step_seconds == 60.0
    assert np.array_equal(trace.timestamps, T0 + 60.0 * np.arange(1440))
    assert np.array_equal(trace.values, values)
    assert any("snapped them onto it" in note for note in trace.notes)


@pytest.mark.parametrize("rows", [600, 601])
def test_jitter_that_alternates_is_snapped_onto_the_clean_step(tmp_path: Path, rows: int) -> None:
    # Every other row 0.9 s late (0.3 % of 5 min): single intervals alternate 300.9 s and
    # 299.1 s, so their median is either, not the step; it was refused as off a grid of 301 s.
    path = tmp_path / "alternating.csv"
    times = [T0 + 300 * i + (0.9 if i % 2 else 0.0) for i in range(rows)]
    path.write_text("time,requests\n" + "".join(f"{t:.1f},{i % 7}\n" for i, t in enumerate(times)))
    trace = read_trace(path)
    assert trace.step_seconds == 300.0
    assert np.array_equal(trace.timestamps, T0 + 300.0 * np.arange(rows))
    assert trace.values.tolist() == [i % 7 for i in range(rows)]


def test_jitter_with_a_late_first_row_and_a_gap(tmp_path: Path) -> None:
    times = [T0 + 0.004, T0 + 59.997, T0 + 120.002, T0 + 240.001, T0 + 299.999]
    path = tmp_path / "jitter.csv"
    path.write_text("time,requests\n" + "".join(f"{t:.3f},1\n" for t in times))
    trace = read_trace(path, fill_missing="zero")
    assert trace.timestamps.tolist() == [T0 + 60.0 * i for i in range(6)]
    assert trace.values.tolist() == [1, 1, 1, 0, 1, 1]


@pytest.mark.parametrize(
    "offsets",
    [
        [0, 60, 120, 150, 240],  # a row between two grid times
        [0, 61, 119, 183, 238, 300],  # seconds of scatter, not milliseconds
        [0, 13, 77, 90, 160, 171],  # no grid at all
    ],
)
def test_irregular_rows_are_still_refused(tmp_path: Path, offsets: list[int]) -> None:
    path = tmp_path / "irregular.csv"
    path.write_text("timestamp,requests\n" + "".join(f"{T0 + o},1\n" for o in offsets))
    assert "is off the grid of one row every" in refused(path)


def test_too_much_jitter_names_the_clean_step(tmp_path: Path) -> None:
    # Most intervals are 60.003 s, but one row is 2 s off: refused, saying 1m.
    times = [T0 + 60.003 * i for i in range(10)] + [T0 + 602.0]
    path = tmp_path / "drift.csv"
    path.write_text("time,requests\n" + "".join(f"{t:.3f},1\n" for t in times))
    message = refused(path)
    assert "drift.csv:12: " in message and "one row every 1m " in message


@pytest.mark.parametrize("step", [60.0, 0.25, 2.5])
def test_an_exact_grid_is_read_as_before(tmp_path: Path, step: float) -> None:
    path = tmp_path / "exact.csv"
    start = T0 + 0.125
    path.write_text("time,requests\n" + "".join(f"{start + step * i!r},{i}\n" for i in range(50)))
    trace = read_trace(path)
    assert trace.step_seconds == step
    assert np.array_equal(trace.timestamps, start + step * np.arange(50))
    assert not any("snapped" in note for note in trace.notes)
