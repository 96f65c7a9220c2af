"""Samples laid on a regular grid: sorted, duplicates refused, gaps filled or named."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from scaler.traces.model import (
    FILLED,
    MAX_INTERVALS,
    FillMissing,
    Samples,
    Trace,
    TraceError,
    Unit,
)
from scaler.traces.prometheus_json import FIX_QUERY, check_sample
from scaler.traces.timestamps import duration_text, when

HOUR = 3600.0
# Rows at most this share of the step off the grid are a clock's jitter (a scrape a
# few milliseconds late) and are snapped onto it; further off, the trace is refused.
JITTER_SHARE = 0.01
# A time off the grid by more than this share of the step is not on it (float noise).
EXACT_SHARE = 1e-6
DST_FIX = "export the times in UTC or with their UTC offset (e.g. 2024-03-31T03:00:00+02:00)"
# At least this many intervals in a row of one length other than the grid's step are a
# stretch recorded at another resolution, not rows lost: filling its "gaps" would change
# the traffic (zero: a fifth of it at 5m among 1m rows; hold: five times it).
MIN_STEP_RUN = 12
# Neighbouring intervals this close (a share of the longer one) are of one length: jitter.
SAME_INTERVAL_SHARE = 2 * JITTER_SHARE


def on_grid(
    samples: Samples,
    display: str,
    name: str,
    unit: Unit,
    fill: FillMissing,
    notes: list[str],
    warnings: list[str],
    *,
    refuse_step_change: bool = True,
) -> Trace:
    """The samples as a Trace on their grid (the most common interval), in requests per
    interval; raises TraceError naming the first duplicate, change of step, off-grid row
    or gap. `refuse_step_change` False leaves a stretch at another step to the gap rules."""
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
    naive = samples.naive_dates
    diffs = np.diff(times)
    in_file_order = diffs
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
        if naive and _repeated_hour(times, same, in_file_order, grid_step(diffs)):
            raise TraceError(
                f"{at(b)}: timestamp {when(float(times[i]))} is also on {where} {a}, and the "
                "dates have no UTC offset: this looks like local time across a daylight-saving "
                f"change (clocks going back repeat an hour), not a duplicate row; {DST_FIX} "
                "instead of deleting rows"
            )
        raise TraceError(
            f"{at(b)}: timestamp {when(float(times[i]))} is also on {where} {a}; keep one of "
            "the two rows (or add them into one)"
        )
    step = grid_step(diffs)
    if step <= 0:
        raise TraceError(f"{name}: cannot find the interval between rows; check the timestamps")
    change = _step_change(times, lines, diffs, step, at) if refuse_step_change else None
    if change is not None:
        raise change
    # Every row on the grid start + k * step.
    origin = float(times[0])
    k = (times - times[0]) / step
    ks = np.rint(k)
    if (np.abs(k - ks) > EXACT_SHARE).any():
        snapped = _snapped(times, diffs)
        if snapped is None:
            raise _off_grid(times, lines, step, at)
        step, origin, ks, worst = snapped
        notes.append(
            f"timestamps were up to {_offset_text(worst)} off the grid of one row every "
            f"{duration_text(step)}; snapped them onto it"
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
        # A naive date's hour-long gap is named first: it is no gap in the traffic.
        hours = _hour_gaps(index, gaps, step) if naive else gaps[:0]
        i = int((hours if len(hours) else gaps)[0]) + 1
        lost = (
            f"{int(index[i] - index[i - 1] - 1)} interval(s) of {duration_text(step)} missing "
            f"before {when(float(times[i]))} (after {where} {int(lines[i - 1])})"
        )
        if fill == "error" and len(hours):
            raise TraceError(
                f"{at(int(lines[i]))}: {lost}, exactly one hour, and the dates have no UTC "
                "offset: this looks like local time across a daylight-saving change (clocks "
                f"going forward skip an hour), not an hour without traffic; {DST_FIX}; pass "
                "--fill-missing only if that hour really went unrecorded"
            )
        if len(hours):
            warnings.append(
                f"{lost}: exactly one hour in dates without a UTC offset, which looks like a "
                f"daylight-saving change: the filled hour is not real traffic; {DST_FIX}"
            )
        if fill == "error":
            raise TraceError(
                f"{at(int(lines[i]))}: {lost}, {missing} in all; write the missing intervals as "
                "rows, or pass --fill-missing zero (no traffic) or --fill-missing hold (repeat "
                "the last value)"
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
            f"{FILLED}{missing} missing interval(s) in {len(gaps)} gap(s) "
            f"({'with 0' if fill == 'zero' else 'holding the last value'})"
        )
        values = full
    else:
        values = np.array(values, dtype=np.float64)
    grid = origin + step * np.arange(count, dtype=np.float64)
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


def _repeated_hour(
    times: npt.NDArray[np.float64],
    same: npt.NDArray[np.intp],
    in_file_order: npt.NDArray[np.float64],
    step: float,
) -> bool:
    """Whether duplicate times are one hour written twice, as clocks going back write it.

    Either the file jumps back by exactly an hour (the row after 02:59 is 02:00 again),
    or, sorted, the duplicated times are one whole hour of consecutive intervals.
    """
    if not 0 < step <= HOUR:
        return False
    if np.isclose(in_file_order, step - HOUR, rtol=0.0, atol=1e-6).any():
        return True
    span = float(times[same[-1]] - times[same[0]])
    return math.isclose(len(same) * step, HOUR) and math.isclose(span, HOUR - step)


def _hour_gaps(
    index: npt.NDArray[np.int64], gaps: npt.NDArray[np.intp], step: float
) -> npt.NDArray[np.intp]:
    """The gaps (positions in `index`) whose missing intervals make exactly one hour."""
    missing = (index[gaps + 1] - index[gaps] - 1) * step
    hours: npt.NDArray[np.intp] = gaps[np.isclose(missing, HOUR, rtol=0.0, atol=1e-6)]
    return hours


def _offset_text(seconds: float) -> str:
    """0.004 -> "4 ms", 1.5 -> "1.5 s": never "2e+03 ms"."""
    return f"{seconds * 1000:.3g} ms" if seconds < 1.0 else f"{seconds:.3g} s"


def _snapped(
    times: npt.NDArray[np.float64], diffs: npt.NDArray[np.float64]
) -> tuple[float, float, npt.NDArray[np.float64], float] | None:
    """(step, origin, interval numbers, largest offset) when every row is within
    JITTER_SHARE of a regular grid; None when the rows are not on any grid.

    The step is the median interval rounded to a whole second (to a millisecond when
    that does not fit), and the grid's origin is rounded likewise, so that jittered
    rows land on the times a clean export would have written. When that step fits
    no grid, the median over two and three intervals is tried: jitter that alternates
    (+0.9 s, -0.9 s, ...) puts the median of single intervals off the step.
    """
    positive = diffs[diffs > 0]
    if not len(positive):
        return None

    def medians() -> Iterator[float]:  # the wider ones only if the first fits no grid
        yield float(np.median(positive))
        for span in (2, 3):
            wide = (times[span:] - times[:-span]) / span
            if len(wide[wide > 0]):
                yield float(np.median(wide[wide > 0]))

    tried: set[float] = set()
    for median, digits in ((m, d) for m in medians() for d in (0, 3)):
        step = round(median, digits)
        if step <= 0 or (digits == 0 and median < 1.0) or step in tried:
            continue
        tried.add(step)
        first = np.rint((times - times[0]) / step)
        origin = round(float(times[0] + np.median(times - times[0] - first * step)), digits)
        k = np.rint((times - origin) / step)
        offset = np.abs(times - origin - k * step)
        # Two rows snapped onto one interval are not jitter: refuse as off the grid.
        if offset.max() <= JITTER_SHARE * step and (np.diff(k) > 0).all():
            return step, origin + float(k[0]) * step, k - k[0], float(offset.max())
    return None


def _step_change(
    times: npt.NDArray[np.float64],
    lines: npt.NDArray[np.int64],
    diffs: npt.NDArray[np.float64],
    step: float,
    at: Callable[[int], str],
) -> TraceError | None:
    """The error naming where the rows' interval changes for good (two days at 5m, then
    1m), or None when every other interval is a gap or jitter on the one grid.

    A change is a run of MIN_STEP_RUN or more intervals of one length other than the
    step; the first such run in time is named, at the row where it begins or ends.
    """
    if len(diffs) < MIN_STEP_RUN:
        return None
    same = np.abs(np.diff(diffs)) <= SAME_INTERVAL_SHARE * np.maximum(diffs[1:], diffs[:-1])
    starts = np.flatnonzero(np.concatenate(([True], ~same)))
    ends = np.append(starts[1:], len(diffs))
    other = (ends - starts >= MIN_STEP_RUN) & ~np.isclose(
        diffs[starts], step, rtol=SAME_INTERVAL_SHARE, atol=0.0
    )
    if not other.any():
        return None
    first = int(np.argmax(other))
    begin, end = int(starts[first]), int(ends[first])
    if begin == 0 and end == len(diffs):
        return None  # one run from end to end is the grid itself
    run = round(float(np.median(diffs[begin:end])), 3)
    # Rows before `row` are one step apart, rows from it on the other (or the reverse).
    row, before, after = (begin, step, run) if begin else (end, run, step)
    coarse = duration_text(max(before, after))
    return TraceError(
        f"{at(int(lines[row]))}: the interval between rows changes from "
        f"{duration_text(before)} to {duration_text(after)} at {when(float(times[row]))}: "
        f"filling the gaps between the {coarse} rows would change the traffic; resample "
        f"the trace to one step of {coarse} (add up the counts, or average the rates, of "
        f"each {coarse}) and read it again"
    )


def _off_grid(
    times: npt.NDArray[np.float64],
    lines: npt.NDArray[np.int64],
    step: float,
    at: Callable[[int], str],
) -> TraceError:
    """The error naming the first row off the grid of one row every `step`.

    When the most common interval is a jittered step (60.003 s for 60 s), the grid
    said is the clean step and the row named is the first one beyond the jitter.
    """
    median = float(np.median(np.diff(times)))
    nominal = round(median) if median >= 1.0 else round(median, 3)
    grids = [(step, EXACT_SHARE)]
    if 0 < nominal != step and abs(step - nominal) <= JITTER_SHARE * nominal:
        grids.insert(0, (float(nominal), JITTER_SHARE))
    for every, share in grids:
        k = (times - times[0]) / every
        off = np.flatnonzero(np.abs(k - np.rint(k)) > share)
        if len(off):
            break
    i = int(off[0])
    return TraceError(
        f"{at(int(lines[i]))}: timestamp {when(float(times[i]))} is off the grid of one "
        f"row every {duration_text(every)} (the previous row is "
        f"{float(times[i] - times[i - 1]):g}s "
        f"earlier); export on a regular step (Prometheus: step={duration_text(every)})"
    )


def from_series(
    timestamps: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    step_seconds: float,
    name: str,
    *,
    unit: Unit,
    fill_missing: FillMissing,
    notes: Sequence[str] = (),
    present: npt.NDArray[np.bool_] | None = None,
) -> Trace:
    """A trace from a series already on a grid (a Prometheus range answer).

    `present` marks the points that had a sample (default: those not NaN). Their values
    are checked as a query_range file's are: +Inf, -Inf or a negative value is an error
    naming the sample, and NaN (0/0 in the query) is a gap like a missing sample.
    Leading and trailing gaps are trimmed (the series began or ended inside the range);
    gaps inside are filled by `fill_missing` or are an error naming them.
    """
    if present is None:
        present = ~np.isnan(values)
    refused = present & (np.isinf(values) | (values < 0))
    if refused.any():
        i = int(np.argmax(refused))
        check_sample(
            name, i + 1, float(timestamps[i]), float(values[i]), _written(values[i]), FIX_QUERY
        )
    usable = present & ~np.isnan(values)
    kept = np.flatnonzero(usable)
    if len(kept) < 2:
        raise TraceError(
            f"{name}: {len(kept)} sample(s) in the range; needs at least 2: check the query "
            "returns data between --start and --end"
        )
    notes = list(notes)
    first, last = int(kept[0]), int(kept[-1])
    if first or last < len(values) - 1:
        notes.append(
            f"no data before {when(float(timestamps[first]))} or after "
            f"{when(float(timestamps[last]))}: trimmed to the span with data"
        )
    if fill_missing == "error":
        _refuse_nan(timestamps, usable, present, first, last, name)
    samples = Samples(where="sample", name=name)
    for k in kept.tolist():
        samples.add(float(timestamps[k]), float(values[k]), k + 1)
    # The grid is the query's step: a stretch of gaps is the query's doing, said as gaps.
    trace = on_grid(samples, name, name, unit, fill_missing, notes, [], refuse_step_change=False)
    if not math.isclose(trace.step_seconds, step_seconds):
        # Only possible when every sample is more than one step apart.
        raise TraceError(
            f"{name}: samples are {trace.step_seconds:g}s apart but the step is {step_seconds:g}s; "
            "pass a --step equal to the series' resolution"
        )
    return trace


def _written(value: float) -> str:
    """A value as Prometheus writes it: +Inf, -Inf, -5."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:g}"


def _refuse_nan(
    timestamps: npt.NDArray[np.float64],
    usable: npt.NDArray[np.bool_],
    present: npt.NDArray[np.bool_],
    first: int,
    last: int,
    name: str,
) -> None:
    """When the first gap inside the span is a NaN sample, not a missing one, say so:
    the query returned 0/0 there, which --fill-missing fills as it fills a gap."""
    lacking = np.flatnonzero(~usable[first : last + 1])
    if not len(lacking) or not present[first + int(lacking[0])]:
        return  # no gap, or a missing sample: on_grid names it
    i = first + int(lacking[0])
    nans = int((present & ~usable)[first : last + 1].sum())
    raise TraceError(
        f"{name}: sample {i + 1} at {when(float(timestamps[i]))}: value NaN (the query "
        f"divides 0 by 0 there?), {nans} in all, leaves the interval without a number; pass "
        "--fill-missing zero (no traffic) or --fill-missing hold (repeat the last value), or "
        "fix the query so that it returns a number there"
    )
