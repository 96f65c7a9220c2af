"""Trace files as people export them, read into one regular series.

The one reader behind `tidescaler simulate --trace` and `tidescaler backtest
--trace`. It accepts

- CSV with `,`, `;` or tab between fields, with or without a header, with a
  UTF-8 byte-order mark or not; the time is the column named like a time
  (`timestamp`, `time`, `date`, ...) or else the first one, the value the
  column after it;
- timestamps in Unix seconds, milliseconds, microseconds or RFC 3339 /
  ISO 8601 (detected from the first row, and said in `Trace.notes`);
- a Prometheus range-query answer (`/api/v1/query_range` JSON) holding one
  series;
- any of these gzip-compressed, and `-` for standard input.

`values[i]` is the amount in the interval starting at `timestamps[i]`
(requests per interval; `unit="rate"` multiplies requests per second by the
interval). Rows may come in any order (they are sorted, with a note); a
timestamp listed twice is an error naming both lines; missing intervals are an
error unless `fill_missing` says how to fill them. Every error names the file,
the line (or series sample), the problem and the fix.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

import numpy as np
import numpy.typing as npt

Unit = Literal["count", "rate"]
FillMissing = Literal["error", "zero", "hold"]
UNITS: tuple[str, ...] = ("count", "rate")
FILL_MISSING: tuple[str, ...] = ("error", "zero", "hold")

# Header names taken as the time column, in the user's words (exports from
# Prometheus, Grafana, Datadog, CloudWatch, spreadsheets).
TIME_NAMES = frozenset(
    {"timestamp", "time", "ts", "date", "datetime", "_time", "@timestamp", "t", "unix", "epoch"}
)
# Unix timestamps above these magnitudes are milliseconds, microseconds: in
# seconds they would lie after the year 5138.
_MILLIS_FROM = 1e11
_MICROS_FROM = 1e14
_NANOS_FROM = 1e17
# Above this many intervals a trace is refused before it is laid out (8 bytes
# per interval per array; the simulator holds a few dozen arrays per step).
MAX_INTERVALS = 50_000_000


class TraceError(ValueError):
    """A trace that cannot be used; the message names the file, line, problem and fix."""


@dataclass(frozen=True, eq=False)
class Trace:
    """A series on a regular grid: `values[i]` covers [timestamps[i], timestamps[i] + step)."""

    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    step_seconds: float
    name: str  # the file's name, e.g. "nasa_1995_jul.csv"
    # What the reader detected or changed, one sentence each, for the user to see.
    notes: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())

    @property
    def stem(self) -> str:
        name = self.name[:-3] if self.name.endswith(".gz") else self.name
        return Path(name).stem


# -- timestamps -------------------------------------------------------------------------


@dataclass(frozen=True)
class _TimeFormat:
    name: str  # said to the user
    scale: float  # divide numbers by this to get seconds; 0 for text dates


def _detect_time_format(text: str) -> _TimeFormat | None:
    try:
        number = float(text)
    except ValueError:
        return _TimeFormat("RFC 3339", 0.0) if _parse_date(text) is not None else None
    if not math.isfinite(number):
        return None
    magnitude = abs(number)
    if magnitude >= _NANOS_FROM:
        return _TimeFormat("Unix nanoseconds", 1e9)
    if magnitude >= _MICROS_FROM:
        return _TimeFormat("Unix microseconds", 1e6)
    if magnitude >= _MILLIS_FROM:
        return _TimeFormat("Unix milliseconds", 1e3)
    return _TimeFormat("Unix seconds", 1.0)


def _parse_date(text: str) -> float | None:
    """Seconds of an RFC 3339 / ISO 8601 date; a date without offset is taken as UTC."""
    text = text.strip()
    if not text or not (text[0].isdigit() and "-" in text):
        return None
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _when(seconds: float) -> str:
    """A timestamp as people read it, for messages."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g} s"


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g}d"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


# -- opening ----------------------------------------------------------------------------


def _open_binary(path: str) -> tuple[io.BufferedIOBase, str]:
    """The bytes of `path` (`-`: standard input), gunzipped when they are gzip."""
    raw: Any
    if path == "-":
        raw, name = sys.stdin.buffer, "<stdin>"
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
        except IsADirectoryError:
            raise TraceError(f"{path}: is a folder; give the trace file inside it") from None
        except FileNotFoundError:
            raise TraceError(
                f"{path}: cannot open: No such file or directory; check the path"
            ) from None
        except OSError as exc:
            raise TraceError(f"{path}: cannot open: {exc.strerror or exc}") from None
        name = path
    buffered: io.BufferedIOBase = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
    if buffered.peek(2)[:2] == b"\x1f\x8b":  # type: ignore[attr-defined]
        return gzip.GzipFile(fileobj=buffered, mode="rb"), name
    return buffered, name


# The shortest row of a trace, "1719792000,1\n", for the size check before reading.
_MIN_ROW_BYTES = 13


def _check_size(path: str) -> None:
    """Refuse, before reading, an uncompressed file with more rows than a trace may have."""
    if path == "-" or path.endswith(".gz"):
        return
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # opening it will say what is wrong
    if size / _MIN_ROW_BYTES > MAX_INTERVALS:
        raise TraceError(
            f"{path}: {size / 2**30:.1f} GiB is more than {MAX_INTERVALS:,} rows: too large to "
            "simulate in memory; aggregate to a coarser interval (e.g. one row per minute)"
        )


def _first_char(binary: io.BufferedIOBase, name: str) -> str:
    peek = getattr(binary, "peek", None)
    head: bytes = peek(64) if peek is not None else b""
    try:
        return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1].decode("ascii", errors="replace")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise TraceError(
            f"{name}: not a readable gzip file ({exc}); decompress it or re-export"
        ) from None


def read_trace(
    path: str | Path,
    *,
    unit: Unit | None = None,
    fill_missing: FillMissing = "error",
) -> Trace:
    """Read a trace file (see the module docstring); raises TraceError.

    `unit=None` reads a CSV as requests per interval and a Prometheus answer as
    requests per second (what a `rate()` query returns), with a note saying so.
    """
    if unit is not None and unit not in UNITS:
        raise TraceError(f"unit {unit!r}: expected one of {', '.join(UNITS)}")
    if fill_missing not in FILL_MISSING:
        raise TraceError(
            f"fill_missing {fill_missing!r}: expected one of {', '.join(FILL_MISSING)}"
        )
    _check_size(str(path))
    binary, name = _open_binary(str(path))
    display = Path(name).name if name != "<stdin>" else name
    try:
        first = _first_char(binary, name)
        text = io.TextIOWrapper(cast(IO[bytes], binary), encoding="utf-8-sig", newline="")
        try:
            if first in ("{", "["):
                samples = _prometheus_samples(text, name)
                default_unit: Unit = "rate"
            else:
                samples = _csv_samples(text, name)
                default_unit = "count"
        except UnicodeDecodeError as exc:
            raise TraceError(
                f"{name}: byte {exc.start} is not UTF-8 text; save the file as UTF-8 (or CSV "
                "UTF-8 in a spreadsheet)"
            ) from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise TraceError(
                f"{name}: cannot read ({exc}); check the file or re-export it"
            ) from None
    finally:
        if binary is not sys.stdin.buffer:
            binary.close()
    notes = list(samples.notes)
    warnings: list[str] = []
    chosen: Unit = unit or default_unit
    if unit is None:
        if default_unit == "rate":
            notes.append(
                "values read as requests per second (what a rate() query returns); "
                "pass --unit count if they are requests per interval"
            )
        elif samples.fractional:
            warnings.append(
                "values are not whole numbers, but are read as requests per interval; "
                "if they are requests per second (a rate), pass --unit rate"
            )
    return _on_grid(samples, display, name, chosen, fill_missing, notes, warnings)


# -- samples ----------------------------------------------------------------------------


@dataclass
class _Samples:
    """Raw (time, value, where) triples as read, before sorting and the grid."""

    times: array[float] = field(default_factory=lambda: array("d"))
    values: array[float] = field(default_factory=lambda: array("d"))
    lines: array[int] = field(default_factory=lambda: array("q"))
    where: str = "line"  # how `lines` are said: "line" N or "sample" N
    name: str = ""  # the file, for messages
    notes: list[str] = field(default_factory=list)
    fractional: bool = False

    def add(self, t: float, v: float, line: int) -> None:
        self.times.append(t)
        self.values.append(v)
        self.lines.append(line)
        if len(self.times) > MAX_INTERVALS:
            raise TraceError(
                f"{self.name}: more than {MAX_INTERVALS:,} rows: too large to simulate in memory; "
                "aggregate to a coarser interval (e.g. one row per minute)"
            )


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in ("\t", ";", ",")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_samples(text: IO[str], name: str) -> _Samples:
    lines: Iterator[str] = iter(text)
    first_line = ""
    skipped = 0
    for raw in lines:
        if raw.strip():
            first_line = raw
            break
        skipped += 1
    if not first_line:
        raise TraceError(
            f"{name}: empty file; expected rows of time,value (e.g. 'timestamp,requests')"
        )
    delimiter = _delimiter(first_line)
    reader = csv.reader(_chain([first_line], lines), delimiter=delimiter)
    samples = _Samples(name=name)
    said = {"\t": "tab", ";": "';'", ",": "','"}[delimiter]
    header = next(reader)
    offset = skipped  # reader.line_num counts from the first non-blank line
    time_col, value_col = 0, 1
    data_first: list[str] | None = None
    if _detect_time_format(header[0].strip()) is None or len(header) < 2:
        names = [cell.strip().lower() for cell in header]
        named = [i for i, n in enumerate(names) if n in TIME_NAMES]
        if named:
            time_col = named[0]
        if len(header) < 2 + time_col or time_col + 1 >= len(header):
            raise TraceError(
                f"{name}:{1 + offset}: header {delimiter.join(header)!r} has no value column after "
                f"the time column; expected two columns such as 'timestamp{delimiter}requests'"
            )
        value_col = time_col + 1
        if _detect_time_format(header[time_col].strip()) is not None and not named:
            data_first = header  # no header after all: the first row is data
        else:
            samples.notes.append(
                f"columns: time from {header[time_col].strip()!r}, value from "
                f"{header[value_col].strip()!r} ({said}-separated)"
            )
    else:
        data_first = header
    if data_first is not None:
        samples.notes.append(
            f"no header: time from column 1, value from column 2 ({said}-separated)"
        )
    fmt: _TimeFormat | None = None
    rows: Iterable[list[str]] = _chain([data_first], reader) if data_first is not None else reader
    decimal_comma = delimiter != ","
    for row in rows:
        line = reader.line_num + offset
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) <= max(time_col, value_col):
            raise TraceError(
                f"{name}:{line}: {len(row)} field(s) {delimiter.join(row)!r}; expected a time "
                f"and a value separated by {said}"
            )
        cell_t, cell_v = row[time_col].strip(), row[value_col].strip()
        if fmt is None:
            fmt = _detect_time_format(cell_t)
            if fmt is None:
                raise TraceError(
                    f"{name}:{line}: time {cell_t!r} is neither a Unix timestamp nor an RFC 3339 "
                    "date; write e.g. 1719792000 or 2024-07-01T00:00:00Z"
                )
            samples.notes.append(f"timestamps read as {fmt.name}")
            if fmt.scale == 0.0 and not _has_offset(cell_t):
                samples.notes.append("dates without a UTC offset read as UTC")
        samples.add(_time(cell_t, fmt, name, line), _value(cell_v, name, line, decimal_comma), line)
        if not samples.fractional and not float(samples.values[-1]).is_integer():
            samples.fractional = True
    if not samples.times and data_first is None:
        raise TraceError(
            f"{name}:{1 + offset}: header {delimiter.join(header)!r} has no data rows; export "
            "the rows under it"
        )
    return samples


def _has_offset(text: str) -> bool:
    return text.endswith(("z", "Z")) or (len(text) > 19 and text[-6] in "+-" and text[-3] == ":")


def _chain(first: Sequence[Any], rest: Iterable[Any]) -> Iterator[Any]:
    yield from first
    yield from rest


def _time(text: str, fmt: _TimeFormat, name: str, line: int) -> float:
    if fmt.scale == 0.0:
        seconds = _parse_date(text)
        if seconds is None:
            raise TraceError(
                f"{name}:{line}: time {text!r} is not an RFC 3339 date like the rows before; "
                "write every time in one format, e.g. 2024-07-01T00:00:00Z"
            )
        return seconds
    try:
        number = float(text)
    except ValueError:
        raise TraceError(
            f"{name}:{line}: time {text!r} is not a number like the rows before ({fmt.name}); "
            "write every time in one format"
        ) from None
    if not math.isfinite(number):
        raise TraceError(f"{name}:{line}: time {text!r} is not finite; remove the row")
    return number / fmt.scale


def _value(text: str, name: str, line: int, decimal_comma: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        # Spreadsheets in many locales write decimals with a comma when fields use ';'.
        if decimal_comma and text.count(",") == 1 and "." not in text:
            return _value(text.replace(",", "."), name, line, False)
        if not text:
            raise TraceError(
                f"{name}:{line}: the value is empty; write 0 or use --fill-missing for a gap"
            ) from None
        raise TraceError(
            f"{name}:{line}: value {text!r} is not a number; write a plain number such as 42 or 3.5"
        ) from None
    if math.isnan(value):
        raise TraceError(
            f"{name}:{line}: value {text!r} is not a number; drop the row and pass --fill-missing "
            "zero|hold, or write 0"
        )
    if not math.isfinite(value):
        raise TraceError(f"{name}:{line}: value {text!r} is not finite; write a number")
    if value < 0:
        raise TraceError(
            f"{name}:{line}: value {text} is negative; requests cannot be negative (a counter "
            "reset? export rate() or increase() instead of the raw counter)"
        )
    return value


def _prometheus_samples(text: IO[str], name: str) -> _Samples:
    try:
        document = json.load(text)
    except json.JSONDecodeError as exc:
        raise TraceError(
            f"{name}:{exc.lineno}: not valid JSON ({exc.msg}); export the query_range answer "
            "unchanged, or a CSV"
        ) from None
    data: Any = document
    if isinstance(document, dict) and "status" in document:
        if document.get("status") != "success":
            raise TraceError(
                f"{name}: Prometheus answered {document.get('status')!r}: "
                f"{document.get('error', 'no error text')}; fix the query and export again"
            )
        data = document.get("data")
    result: Any
    if isinstance(data, dict) and "result" in data:
        kind = data.get("resultType")
        if kind in ("vector", "scalar", "string"):
            raise TraceError(
                f"{name}: a {kind} (an instant query) has one value per series; export a range "
                "query (/api/v1/query_range with start, end and step)"
            )
        result = data["result"]
    elif isinstance(data, list):
        result = data
    else:
        raise TraceError(
            f"{name}: JSON without data.result; expected a Prometheus /api/v1/query_range answer "
            '({"status":"success","data":{"resultType":"matrix","result":[...]}})'
        )
    if not isinstance(result, list) or not result:
        raise TraceError(
            f"{name}: the answer holds no series; check the query returns data over the range"
        )
    if len(result) > 1:
        labels = [_labels(s) for s in result[:3]]
        more = ", ..." if len(result) > 3 else ""
        raise TraceError(
            f"{name}: {len(result)} series ({', '.join(labels)}{more}); "
            "the trace is one series: aggregate in the query, e.g. sum(rate(http_requests_total"
            '{service="web"}[1m])) instead of rate(...) alone'
        )
    series = result[0]
    if not isinstance(series, dict) or not isinstance(series.get("values"), list):
        raise TraceError(
            f"{name}: series 1 has no 'values' list; expected a range query answer (matrix)"
        )
    samples = _Samples(where="sample", name=name)
    samples.notes.append("Prometheus range query answer: timestamps read as Unix seconds")
    for i, pair in enumerate(series["values"], start=1):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise TraceError(
                f'{name}: sample {i}: {pair!r} is not [time, "value"]; export the answer unchanged'
            )
        try:
            t, v = float(pair[0]), float(pair[1])
        except (TypeError, ValueError):
            raise TraceError(
                f'{name}: sample {i}: {pair!r} is not [time, "value"] with numbers; export the '
                "answer unchanged"
            ) from None
        if not math.isfinite(v):
            continue  # NaN or Inf: a gap, filled by --fill-missing like an absent sample
        if v < 0:
            raise TraceError(
                f"{name}: sample {i} at {_when(t)}: value {pair[1]} is negative; query rate() or "
                "increase() of the counter, not the counter itself"
            )
        samples.add(t, v, i)
    if not samples.times:
        raise TraceError(f"{name}: the series has no finite sample; check the query over the range")
    return samples


def _labels(series: Any) -> str:
    metric = series.get("metric", {}) if isinstance(series, dict) else {}
    inner = (
        ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()))
        if isinstance(metric, dict)
        else ""
    )
    return "{" + inner + "}"


# -- the grid ---------------------------------------------------------------------------


def _on_grid(
    samples: _Samples,
    display: str,
    name: str,
    unit: Unit,
    fill: FillMissing,
    notes: list[str],
    warnings: list[str],
) -> Trace:
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
            f"{at(b)}: timestamp {_when(float(times[i]))} is also on {where} {a}; keep one of "
            "the two rows (or add them into one)"
        )
    step = _step(diffs)
    if step <= 0:
        raise TraceError(f"{name}: cannot find the interval between rows; check the timestamps")
    # Every row on the grid start + k * step.
    k = (times - times[0]) / step
    ks = np.rint(k)
    off = np.flatnonzero(np.abs(k - ks) > 1e-6)
    if len(off):
        i = int(off[0])
        raise TraceError(
            f"{at(int(lines[i]))}: timestamp {_when(float(times[i]))} is off the grid of one "
            f"row every {_duration(step)} (the previous row is {float(times[i] - times[i - 1]):g}s "
            f"earlier); export on a regular step (Prometheus: step={_duration(step)})"
        )
    index = ks.astype(np.int64)
    count = int(index[-1]) + 1
    if count > MAX_INTERVALS:
        raise TraceError(
            f"{name}: {count:,} intervals of {_duration(step)} from {_when(float(times[0]))} to "
            f"{_when(float(times[-1]))}: too many to hold in memory; check the timestamps' unit, "
            "or aggregate to a coarser interval"
        )
    missing = count - len(times)
    if missing:
        gaps = np.flatnonzero(np.diff(index) > 1)
        i = int(gaps[0]) + 1
        if fill == "error":
            raise TraceError(
                f"{at(int(lines[i]))}: {int(index[i] - index[i - 1] - 1)} interval(s) of "
                f"{_duration(step)} missing before {_when(float(times[i]))} (after {where} "
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
            f"one row every {_duration(step)} ({step:g} s): if the timestamps are milliseconds, "
            f"the interval is {_duration(step / 1000)}; write Unix seconds or RFC 3339 dates"
        )
    return Trace(
        timestamps=grid,
        values=values,
        step_seconds=float(step),
        name=display,
        notes=tuple(notes),
        warnings=tuple(warnings),
    )


def _step(diffs: npt.NDArray[np.float64]) -> float:
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
            f"no data before {_when(float(timestamps[first]))} or after "
            f"{_when(float(timestamps[last]))}: trimmed to the span with data"
        )
    samples = _Samples(where="sample", name=name)
    for i in present:
        samples.add(float(timestamps[i]), float(values[i]), int(i) + 1)
    # The grid is the query's step, not the most common difference between samples.
    trace = _on_grid(samples, name, name, unit, fill_missing, notes, [])
    if not math.isclose(trace.step_seconds, step_seconds):
        # Only possible when every sample is more than one step apart.
        raise TraceError(
            f"{name}: samples are {trace.step_seconds:g}s apart but the step is {step_seconds:g}s; "
            "pass a --step equal to the series' resolution"
        )
    return trace
