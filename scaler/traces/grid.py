"""Samples laid on a regular grid: sorted, duplicates refused, gaps filled or named."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from scaler.traces.model import MAX_INTERVALS, FillMissing, Samples, Trace, TraceError, Unit
from scaler.traces.timestamps import duration_text, when


def on_grid(
    samples: Samples,
    display: str,
    name: str,
    unit: Unit,
    fill: FillMissing,
    notes: list[str],
    warnings: list[str],
) -> Trace:
    """The samples as a Trace on their grid (the most common interval), in requests per
    interval; raises TraceError naming the first duplicate, off-grid row or gap."""
    where = samples.where

    def at(n: int) -> str:
        return f"{name}:{n}" if where == "line" else f"{name}: {where} {n}"

    times = np.frombuffer(samples.times, dtype=np.float64) if samples.times else np.zeros(0)
    values = np.frombuffer(samples.values, dtype=np.float64) if samples.values else np.zeros(0)
    lines = np.frombuffer(samples.lines, dtype=np.int64) if samples.lines else np.zeros(0, np.int64)
    if len(times) < 2:
        raise TraceError(
            f"{name}: {len(times)} data row(s); needs at least 2 rows to know the interval"
        )
    diffs = np.diff(times)
    if (diffs < 0).any():
        first_line = int(lines[int(np.flatnonzero(diffs < 0)[0]) + 1])
        order = np.argsort(times, kind="stable")
        times, values, lines = times[order], values[order], lines[order]
        notes.append(f"rows were not in time order (first at {where} {first_line}); sorted them")
        diffs = np.diff(times)
    same = np.flatnonzero(diffs == 0)
    if len(same):
        i = int(same[0])
        a, b = sorted((int(lines[i]), int(lines[i + 1])))
        raise TraceError(
            f"{at(b)}: timestamp {when(float(times[i]))} is also on {where} {a}; keep one of "
            "the two rows (or add them into one)"
        )
    step = grid_step(diffs)
    if step <= 0:
        raise TraceError(f"{name}: cannot find the interval between rows; check the timestamps")
    # Every row on the grid start + k * step.
    k = (times - times[0]) / step
    ks = np.rint(k)
    off = np.flatnonzero(np.abs(k - ks) > 1e-6)
    if len(off):
        i = int(off[0])
        raise TraceError(
            f"{at(int(lines[i]))}: timestamp {when(float(times[i]))} is off the grid of one "
            f"row every {duration_text(step)} (the previous row is "
            f"{float(times[i] - times[i - 1]):g}s "
            f"earlier); export on a regular step (Prometheus: step={duration_text(step)})"
        )
    index = ks.astype(np.int64)
    count = int(index[-1]) + 1
    if count > MAX_INTERVALS:
        raise TraceError(
            f"{name}: {count:,} intervals of {duration_text(step)} from {when(float(times[0]))} to "
            f"{when(float(times[-1]))}: too many to hold in memory; check the timestamps' unit, "
            "or aggregate to a coarser interval"
        )
    missing = count - len(times)
    if missing:
        gaps = np.flatnonzero(np.diff(index) > 1)
        i = int(gaps[0]) + 1
        if fill == "error":
            raise TraceError(
                f"{at(int(lines[i]))}: {int(index[i] - index[i - 1] - 1)} interval(s) of "
                f"{duration_text(step)} missing before {when(float(times[i]))} (after {where} "
                f"{int(lines[i - 1])}), {missing} in all; write the missing intervals as rows, "
                "or pass --fill-missing zero (no traffic) or --fill-missing hold (repeat the "
                "last value)"
            )
        full = np.zeros(count, dtype=np.float64)
        full[index] = values
        if fill == "hold":
            # The index of the last present row at or before each interval.
            present = np.zeros(count, dtype=np.int64)
            present[index] = index
            np.maximum.accumulate(present, out=present)
            full = full[present]
        notes.append(
            f"filled {missing} missing interval(s) in {len(gaps)} gap(s) "
            f"({'with 0' if fill == 'zero' else 'holding the last value'})"
        )
        values = full
    else:
        values = np.array(values, dtype=np.float64)
    grid = times[0] + step * np.arange(count, dtype=np.float64)
    if unit == "rate":
        values = values * step
    if step >= 60_000 and step % 1000 == 0:
        warnings.append(
            f"one row every {duration_text(step)} ({step:g} s): if the timestamps are "
            "milliseconds, "
            f"the interval is {duration_text(step / 1000)}; write Unix seconds or RFC 3339 dates"
        )
    return Trace(
        timestamps=grid,
        values=values,
        step_seconds=float(step),
        name=display,
        notes=tuple(notes),
        warnings=tuple(warnings),
    )


def grid_step(diffs: npt.NDArray[np.float64]) -> float:
    """The grid's step: the most common positive difference between neighbours."""
    positive = diffs[diffs > 0]
    if not len(positive):
        return 0.0
    rounded = np.round(positive, 6)
    values, counts = np.unique(rounded, return_counts=True)
    best = values[counts == counts.max()]
    return float(best.min())


def from_series(
    timestamps: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    step_seconds: float,
    name: str,
    *,
    unit: Unit,
    fill_missing: FillMissing,
    notes: Sequence[str] = (),
) -> Trace:
    """A trace from a series already on a grid with NaN for gaps (a Prometheus range answer).

    Leading and trailing gaps are trimmed (the series began or ended inside the
    range); gaps inside are filled by `fill_missing` or are an error naming them.
    """
    present = np.flatnonzero(np.isfinite(values))
    if len(present) < 2:
        raise TraceError(
            f"{name}: {len(present)} sample(s) in the range; needs at least 2: check the query "
            "returns data between --start and --end"
        )
    notes = list(notes)
    first, last = int(present[0]), int(present[-1])
    if first or last < len(values) - 1:
        notes.append(
            f"no data before {when(float(timestamps[first]))} or after "
            f"{when(float(timestamps[last]))}: trimmed to the span with data"
        )
    samples = Samples(where="sample", name=name)
    for i in present:
        samples.add(float(timestamps[i]), float(values[i]), int(i) + 1)
    # The grid is the query's step, not the most common difference between samples.
    trace = on_grid(samples, name, name, unit, fill_missing, notes, [])
    if not math.isclose(trace.step_seconds, step_seconds):
        # Only possible when every sample is more than one step apart.
        raise TraceError(
            f"{name}: samples are {trace.step_seconds:g}s apart but the step is {step_seconds:g}s; "
            "pass a --step equal to the series' resolution"
        )
    return trace
