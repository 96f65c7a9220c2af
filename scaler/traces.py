"""Trace CSV files: `timestamp,<value>` on a regular grid of Unix seconds.

The one reader behind `tidescaler simulate --trace` and `tidescaler backtest
--trace`. `values[i]` is the amount in the interval starting at
`timestamps[i]` (requests, or any non-negative quantity such as CPU cores or
queue depth); intervals the source did not list must be written as rows, so a
gap is never silently skipped. Every error names the file, the line and what
is wrong.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt


class TraceError(ValueError):
    """A trace file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, eq=False)
class Trace:
    """A series on a regular grid: `values[i]` covers [timestamps[i], timestamps[i] + step)."""

    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    step_seconds: float
    name: str  # the file's name, e.g. "nasa_1995_jul.csv"

    @property
    def stem(self) -> str:
        return Path(self.name).stem


def _number(text: str, path: Path, line: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{path}:{line}: {what} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(f"{path}:{line}: {what} {text.strip()!r} is not finite")
    return value


def read_trace(path: str | Path) -> Trace:
    """Read a `timestamp,<value>` CSV; raises TraceError naming file, line and problem."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot open: {exc.strerror or exc}") from None
    times: list[float] = []
    values: list[float] = []
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise TraceError(f"{path}: empty file; expected a header 'timestamp,requests'")
            if len(header) != 2 or header[0].strip().lower() != "timestamp":
                raise TraceError(
                    f"{path}:1: header {','.join(header)!r}; expected 'timestamp,requests' "
                    "(a timestamp column and one value column)"
                )
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != 2:
                    raise TraceError(f"{path}:{line}: {len(row)} fields; expected 2")
                t = _number(row[0], path, line, "timestamp")
                v = _number(row[1], path, line, "value")
                if v < 0:
                    raise TraceError(f"{path}:{line}: value {row[1].strip()} is negative")
                if times and t <= times[-1]:
                    raise TraceError(
                        f"{path}:{line}: timestamp {row[0].strip()} does not increase "
                        f"(previous {times[-1]:g})"
                    )
                if len(times) >= 2 and not math.isclose(
                    t - times[-1], times[1] - times[0], rel_tol=1e-9, abs_tol=1e-6
                ):
                    raise TraceError(
                        f"{path}:{line}: timestamp {row[0].strip()} is off the grid: step "
                        f"{t - times[-1]:g}s, expected {times[1] - times[0]:g}s "
                        "(write missing intervals as rows)"
                    )
                times.append(t)
                values.append(v)
        except UnicodeDecodeError:
            raise TraceError(f"{path}: not a UTF-8 text file") from None
        except csv.Error as exc:
            raise TraceError(f"{path}:{reader.line_num}: {exc}") from None
    if len(times) < 2:
        raise TraceError(
            f"{path}: {len(times)} data rows; needs at least 2 rows to know the interval"
        )
    return Trace(
        timestamps=np.asarray(times, dtype=np.float64),
        values=np.asarray(values, dtype=np.float64),
        step_seconds=times[1] - times[0],
        name=path.name,
    )
