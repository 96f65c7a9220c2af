"""CSV as people export it: `,` `;` or tab, a header or none, the time column named or first."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from scaler.traces.model import Samples, TraceError
from scaler.traces.timestamps import (
    TimeFormat,
    detect_time_format,
    has_offset,
    parse_time_cell,
    when,
)

# Unix seconds below this (1971-01-01) are more likely a count than a time.
YEAR_1971 = 365 * 86400.0

# Header names taken as the time column, in the user's words (exports from
# Prometheus, Grafana, Datadog, CloudWatch, spreadsheets).
TIME_NAMES = frozenset(
    {"timestamp", "time", "ts", "date", "datetime", "_time", "@timestamp", "t", "unix", "epoch"}
)


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in ("\t", ";", ",")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def csv_samples(text: IO[str], name: str) -> Samples:
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
    offset = skipped  # reader.line_num counts from the first non-blank line
    guarded = _guarded(reader, name, offset)
    samples = Samples(name=name)
    said = {"\t": "tab", ";": "';'", ",": "','"}[delimiter]
    header = next(guarded)
    time_col, value_col = 0, 1
    data_first: list[str] | None = None
    if detect_time_format(header[0].strip()) is None or len(header) < 2:
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
        if detect_time_format(header[time_col].strip()) is not None and not named:
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
    fmt: TimeFormat | None = None
    rows: Iterable[list[str]] = _chain([data_first], guarded) if data_first is not None else guarded
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
            fmt = detect_time_format(cell_t)
            if fmt is None:
                raise TraceError(
                    f"{name}:{line}: time {cell_t!r} is neither a Unix timestamp nor an RFC 3339 "
                    "date; write e.g. 1719792000 or 2024-07-01T00:00:00Z"
                )
            samples.notes.append(f"timestamps read as {fmt.name}")
            if fmt.scale == 0.0 and not has_offset(cell_t):
                samples.naive_dates = True
                samples.notes.append("dates without a UTC offset read as UTC")
        seconds = parse_time_cell(cell_t, fmt, name, line)
        try:
            value = _value(cell_v, name, line, decimal_comma)
        except TraceError:
            # Text where the value should be, on a row with extra columns or on the first
            # two rows: the columns are not time,value, which no edit of one cell fixes.
            if _is_text(cell_v) and (
                len(row) > 2 or (not samples.times and _next_is_text(rows, value_col))
            ):
                columns = header if data_first is None else None
                raise TraceError(_layout(name, line, row, columns, value_col, delimiter)) from None
            raise
        samples.add(seconds, value, line)
        if not samples.fractional and not float(samples.values[-1]).is_integer():
            samples.fractional = True
    if fmt is not None and fmt.scale == 1.0 and samples.times and min(samples.times) < YEAR_1971:
        # 0, 1, 2, ... reads as seconds after 1970: most likely a row or minute count.
        samples.notes.append(
            f"timestamps start at {when(min(samples.times))}: if the time column counts rows "
            "or minutes (0, 1, 2, ...) rather than giving Unix times, it is read as seconds; "
            "write real times"
        )
    if not samples.times and data_first is None:
        raise TraceError(
            f"{name}:{1 + offset}: header {delimiter.join(header)!r} has no data rows; export "
            "the rows under it"
        )
    return samples


def _guarded(reader: Any, name: str, offset: int) -> Iterator[list[str]]:
    """The reader's rows, with what the csv module refuses (e.g. a field over its size
    limit) said as a TraceError naming the line."""
    while True:
        try:
            row: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise TraceError(
                f"{name}:{reader.line_num + offset}: not readable as CSV ({exc}); a trace row is "
                "a time and a value, e.g. 1719792000,42"
            ) from None
        yield row


def _is_text(cell: str) -> bool:
    """A cell that is no number in any spelling the reader takes (not empty, not NaN)."""
    if not cell:
        return False
    try:
        float(cell.replace(",", ".", 1))
    except ValueError:
        return True
    return False


def _next_is_text(rows: Iterable[list[str]], value_col: int) -> bool:
    """Whether the next non-blank row's value is text too (or there is none); consumes
    rows, so only for an error already found."""
    for row in iter(rows):
        if row and any(cell.strip() for cell in row):
            return value_col >= len(row) or _is_text(row[value_col].strip())
    return True


def _layout(
    name: str, line: int, row: list[str], header: list[str] | None, value_col: int, delimiter: str
) -> str:
    """The error for columns that are not time,value: what the file has, what is expected."""
    column = f"column {value_col + 1}"
    if header is not None and value_col < len(header) and header[value_col].strip():
        column += f" ({header[value_col].strip()!r})"
    numeric = [
        i
        for i, cell in enumerate(row)
        if i > value_col and cell.strip() and not _is_text(cell.strip())
    ]
    if numeric:
        i = numeric[0]
        label = (
            repr(header[i].strip()) if header is not None and i < len(header) else f"column {i + 1}"
        )
        fix = f"{label} holds numbers: keep only the time column and that one"
    else:
        fix = f"export the number of requests in {column}"
    if len(row) > 2:
        fix = f"this row has {len(row)} columns; {fix}, one series per file"
    return (
        f"{name}:{line}: {column} holds {row[value_col].strip()[:60]!r}, not a number of requests; "
        f"a trace is two columns, the time then the value (e.g. 'timestamp{delimiter}requests'): "
        f"{fix}"
    )


def _chain(first: Sequence[Any], rest: Iterable[Any]) -> Iterator[Any]:
    yield from first
    yield from rest


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
