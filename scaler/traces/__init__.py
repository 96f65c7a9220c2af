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

import gzip
import io
import os
import sys
import zlib
from pathlib import Path
from typing import IO, Any, cast

from scaler.traces.csv_text import csv_samples
from scaler.traces.grid import from_series, on_grid
from scaler.traces.model import (
    FILL_MISSING,
    MAX_INTERVALS,
    UNITS,
    FillMissing,
    Trace,
    TraceError,
    Unit,
)
from scaler.traces.prometheus_json import prometheus_samples

__all__ = [
    "FILL_MISSING",
    "MAX_INTERVALS",
    "UNITS",
    "FillMissing",
    "Trace",
    "TraceError",
    "Unit",
    "from_series",
    "read_trace",
]


def _open_binary(path: str) -> tuple[io.BufferedIOBase, io.BufferedIOBase, str]:
    """The bytes of `path` (`-`: standard input), gunzipped when they are gzip, and the
    file under them (closing a GzipFile leaves the file it reads open)."""
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
        return gzip.GzipFile(fileobj=buffered, mode="rb"), buffered, name
    return buffered, buffered, name


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


# What reading a damaged file raises: gzip.BadGzipFile (an OSError) for a bad header,
# EOFError for a truncated or cut stream, zlib.error for corrupt deflate data.
_READ_ERRORS = (OSError, EOFError, zlib.error)


def _first_char(binary: io.BufferedIOBase, name: str) -> str:
    peek = getattr(binary, "peek", None)
    try:
        # On a gzip file, peeking decompresses: a damaged one fails here.
        head: bytes = peek(64) if peek is not None else b""
    except _READ_ERRORS as exc:
        raise TraceError(
            f"{name}: not a readable gzip file ({exc or type(exc).__name__}); check the file "
            "(gzip -t), decompress it or re-export it"
        ) from None
    for magic, kind, fix in _NOT_TEXT:
        if head.startswith(magic):
            raise TraceError(f"{name}: is {kind}; {fix}")
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1].decode("ascii", errors="replace")


# Files that are not UTF-8 text by their first bytes, said as what they are (else they
# fail as "byte N is not UTF-8 text", which points at the wrong fix). gzip is read as is.
_NOT_TEXT = (
    (b"PK\x03\x04", "a zip archive", "unpack it and give the trace inside (or gzip it)"),
    (b"\xfd7zXZ\x00", "an xz archive", "decompress it (xz -d) or gzip it instead"),
    (b"BZh", "a bzip2 archive", "decompress it (bunzip2) or gzip it instead"),
    (b"\xff\xfe", "UTF-16 text", "save it as UTF-8 (or CSV UTF-8 in a spreadsheet)"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8 (or CSV UTF-8 in a spreadsheet)"),
)


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
    binary, underlying, name = _open_binary(str(path))
    display = Path(name).name if name != "<stdin>" else name
    try:
        first = _first_char(binary, name)
        text = io.TextIOWrapper(cast(IO[bytes], binary), encoding="utf-8-sig", newline="")
        try:
            if first in ("{", "["):
                samples = prometheus_samples(text, name)
                default_unit: Unit = "rate"
            else:
                samples = csv_samples(text, name)
                default_unit = "count"
        except UnicodeDecodeError as exc:
            raise TraceError(
                f"{name}: byte {exc.start} is not UTF-8 text; save the file as UTF-8 (or CSV "
                "UTF-8 in a spreadsheet)"
            ) from None
        except _READ_ERRORS as exc:
            raise TraceError(
                f"{name}: cannot read ({exc or type(exc).__name__}); check the file or re-export it"
            ) from None
    finally:
        for stream in (binary, underlying):
            if stream is not sys.stdin.buffer:
                stream.close()
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
    return on_grid(samples, display, name, chosen, fill_missing, notes, warnings)
