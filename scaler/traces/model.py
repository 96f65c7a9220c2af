"""What a trace is once read: a series on a regular grid, and the error for one that is not."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

Unit = Literal["count", "rate"]
FillMissing = Literal["error", "zero", "hold"]
UNITS: tuple[str, ...] = ("count", "rate")
FILL_MISSING: tuple[str, ...] = ("error", "zero", "hold")

# Above this many intervals a trace is refused before it is laid out (8 bytes
# per interval per array; the simulator holds a few dozen arrays per step).
MAX_INTERVALS = 50_000_000


class TraceError(ValueError):
    """A trace that cannot be used; the message names the file, line, problem and fix."""


# How the note of intervals filled by --fill-missing begins (grid.py writes it).
FILLED = "filled "


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
    def fills(self) -> tuple[str, ...]:
        """The notes saying that missing intervals were filled (values that were not read)."""
        return tuple(note for note in self.notes if note.startswith(FILLED))

    @property
    def stem(self) -> str:
        name = self.name[:-3] if self.name.endswith(".gz") else self.name
        return Path(name).stem


@dataclass
class Samples:
    """Raw (time, value, where) triples as read, before sorting and the grid."""

    times: array[float] = field(default_factory=lambda: array("d"))
    values: array[float] = field(default_factory=lambda: array("d"))
    lines: array[int] = field(default_factory=lambda: array("q"))
    where: str = "line"  # how `lines` are said: "line" N or "sample" N
    name: str = ""  # the file, for messages
    notes: list[str] = field(default_factory=list)
    fractional: bool = False
    # Dates without a UTC offset, read as UTC: usually local wall-clock time, where a
    # daylight-saving change shows as an hour missing or written twice.
    naive_dates: bool = False

    def add(self, t: float, v: float, line: int) -> None:
        self.times.append(t)
        self.values.append(v)
        self.lines.append(line)
        if len(self.times) > MAX_INTERVALS:
            raise TraceError(
                f"{self.name}: more than {MAX_INTERVALS:,} rows: too large to simulate in memory; "
                "aggregate to a coarser interval (e.g. one row per minute)"
            )
