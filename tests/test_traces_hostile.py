"""Hostile or damaged trace files: each refused with one clear line, never a traceback.

Corrupt gzip, nesting deep enough to exhaust recursion, times that are not finite or
out of range, compact UTC offsets, and columns that are not time,value.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scaler.traces import TraceError, read_trace

T0 = 1_719_792_000  # 2024-07-01T00:00:00Z
# The times an RFC 3339 date can write, years 1 to 9999: the range both readers take.
MIN_SECONDS = datetime(1, 1, 1, tzinfo=UTC).timestamp()
MAX_SECONDS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()

# A warning (numpy's overflow in the grid) is a symptom of a time that got through.
pytestmark = pytest.mark.filterwarnings("error")


def refused(path: Path) -> str:
    with pytest.raises(TraceError) as err:
        read_trace(path)
    message = str(err.value)
    assert "\n" not in message
    assert len(message) < 600, message
    return message


def answer(values: list[list[Any]]) -> str:
    return json.dumps(
        {
            "status": "success",
            "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]},
        }
    )


def minutes(n: int, start: float = T0) -> list[list[Any]]:
    return [[start + 60 * i, "5"] for i in range(n)]


# -- gzip --------------------------------------------------------------------------------

CSV = "".join(f"{T0 + 60 * i},{i}\n" for i in range(200)).encode()


def _bad_block() -> bytes:
    data = bytearray(gzip.compress(CSV))
    data[10] = 0xFF  # the first deflate block's type bits: 11, which deflate does not define
    return bytes(data)


def _bad_crc() -> bytes:
    data = bytearray(gzip.compress(CSV))
    data[-8] ^= 0xFF  # the trailer's CRC-32
    return bytes(data)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"\x1f\x8bjunk", "not a readable gzip file"),  # EOFError while peeking
        (b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"\xff\xff\xff", "not a readable gzip file"),
        (_bad_block(), "not a readable gzip file"),  # zlib.error while peeking
        (gzip.compress(CSV)[:-20], "cannot read"),  # truncated: EOFError while reading
        (_bad_crc(), "cannot read"),  # BadGzipFile at the end
    ],
    ids=["magic-then-junk", "header-then-junk", "bad-deflate", "truncated", "bad-crc"],
)
@pytest.mark.parametrize("name", ["trace.csv.gz", "trace"])
def test_a_damaged_gzip_file_is_one_clear_line(
    tmp_path: Path, content: bytes, said: str, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    message = refused(path)
    assert message.startswith(f"{path}: {said} (")
    assert "re-export" in message


def test_a_damaged_gzip_json_answer_too(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(answer(minutes(500)).encode()))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "answer.json.gz"
    path.write_bytes(bytes(data))
    message = refused(path)
    assert "not a readable gzip file" in message or "cannot read" in message


# -- nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [2_000, 100_000])
@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_json_nested_deeper_than_recursion_is_refused(
    tmp_path: Path, depth: int, opening: str
) -> None:
    path = tmp_path / "deep.json"
    path.write_text(opening * depth)
    assert refused(path) == f"{path}: JSON nested too deep to read; export the query_range " + (
        "answer unchanged, or a CSV"
    )


def test_a_deep_value_inside_a_sample_is_shown_short(tmp_path: Path) -> None:
    # Nested as deep as the json module reads; the message shows only its first levels.
    deep = "[" * 600 + "]" * 600
    path = tmp_path / "deep_sample.json"
    path.write_text(answer([]).replace('"values": []', f'"values": [[{T0}, "1"], {deep}]'))
    message = refused(path)
    assert "sample 2: [[[[...]]]] is not [time" in message


def test_a_long_sample_is_shown_short(tmp_path: Path) -> None:
    path = tmp_path / "long.json"
    path.write_text(answer([[T0, "1"], [T0 + 60, "1", *range(100_000)]]))
    assert "sample 2: [" in refused(path)


# -- times -------------------------------------------------------------------------------

BAD_TIMES: list[Any] = [
    "NaN",
    "nan",
    "Inf",
    "-Infinity",
    1e300,
    -1e300,
    "1e300",
    MAX_SECONDS + 1,
    MIN_SECONDS - 1,
    1e12,  # milliseconds where Prometheus writes seconds: year 33658
]


@pytest.mark.parametrize("bad", BAD_TIMES)
@pytest.mark.parametrize("at", [0, 5, 9], ids=["first", "middle", "last"])
def test_a_prometheus_time_not_finite_or_out_of_range_names_the_sample(
    tmp_path: Path, bad: Any, at: int
) -> None:
    values = minutes(10)
    values[at][0] = bad
    path = tmp_path / "answer.json"
    path.write_text(answer(values))
    message = refused(path)
    assert message.startswith(f"{path}: sample {at + 1}: time ")
    assert "is not finite" in message or "is outside the years 1 to 9999" in message


@pytest.mark.parametrize("bad", ["NaN", 1e300])
def test_a_bad_time_is_refused_even_on_a_gap(tmp_path: Path, bad: Any) -> None:
    values = minutes(10)
    values[4] = [bad, "NaN"]  # a NaN value is a gap, but its time is still read
    path = tmp_path / "answer.json"
    path.write_text(answer(values))
    assert "sample 5: time" in refused(path)


@pytest.mark.parametrize(
    "pair", [[True, "1"], [T0 + 120, True], [None, "1"], [[T0 + 120], "1"], [T0 + 120, None]]
)
def test_a_time_or_value_that_is_not_a_number_is_refused(tmp_path: Path, pair: Any) -> None:
    values = minutes(5)
    values[2] = pair  # bools are numbers to float(): True would be 1
    path = tmp_path / "answer.json"
    path.write_text(answer(values))
    assert "sample 3:" in refused(path)


@pytest.mark.parametrize(
    "bad", ["1e300", "-1e300", "1e16", "-1e16", str(int(MAX_SECONDS) + 1), "1e308"]
)
def test_a_csv_time_out_of_range_names_the_line(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(f"timestamp,requests\n{T0},1\n{T0 + 60},2\n{bad},3\n{T0 + 120},4\n")
    assert refused(path) == (
        f"{path}:4: time {bad!r} (Unix seconds) is outside the years 1 to 9999; write every "
        "time in one format like the rows before, or remove the row"
    )


@pytest.mark.parametrize(
    "start", [-1_000_000.0, MIN_SECONDS, MAX_SECONDS - 600], ids=["before-1970", "year-1", "9999"]
)
def test_times_inside_the_range_are_read(tmp_path: Path, start: float) -> None:
    path = tmp_path / "answer.json"
    path.write_text(answer(minutes(10, start)))
    trace = read_trace(path)
    assert trace.timestamps[0] == start
    assert len(trace.values) == 10


# -- UTC offsets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamp", "offset_said"),
    [
        ("2024-07-01T02:0{m}:00+02:00", True),
        ("2024-07-01T02:0{m}:00+0200", True),
        ("2024-07-01T02:0{m}:00+02", True),
        ("2024-06-30T20:3{m}:00-0330", True),
        ("2024-07-01T00:0{m}:00Z", True),
        ("2024-07-01T00:0{m}:00.000z", True),
        ("2024-07-01 00:0{m}:00+00:00", True),
        ("2024-07-01T00:0{m}:00", False),
        ("2024-07-01 00:0{m}:00", False),
    ],
)
def test_every_utc_offset_form_counts_as_an_offset(
    tmp_path: Path, stamp: str, offset_said: bool
) -> None:
    rows = "".join(f"{stamp.format(m=m)},{m}\n" for m in range(3))
    path = tmp_path / "trace.csv"
    path.write_text(f"time,requests\n{rows}")
    trace = read_trace(path)
    assert ("dates without a UTC offset read as UTC" not in trace.notes) is offset_said
    assert np.array_equal(trace.timestamps, T0 + 60.0 * np.arange(3))


# -- columns -----------------------------------------------------------------------------


def test_three_columns_say_the_layout_not_a_number(tmp_path: Path) -> None:
    path = tmp_path / "three_cols.csv"
    path.write_text(f"timestamp,service,requests\n{T0},web,3000\n{T0 + 60},web,3010\n")
    message = refused(path)
    assert message == (
        f"{path}:2: column 2 ('service') holds 'web', not a number of requests; a trace is two "
        "columns, the time then the value (e.g. 'timestamp,requests'): this row has 3 columns; "
        "'requests' holds numbers: keep only the time column and that one, one series per file"
    )


def test_three_columns_without_a_header(tmp_path: Path) -> None:
    path = tmp_path / "three_cols.csv"
    path.write_text(f"{T0};web;3000\n{T0 + 60};web;3010\n")
    message = refused(path)
    assert message.startswith(f"{path}:1: column 2 holds 'web', not a number of requests")
    assert "(e.g. 'timestamp;requests')" in message
    assert "column 3 holds numbers" in message


def test_a_text_value_column_says_the_layout(tmp_path: Path) -> None:
    path = tmp_path / "status.csv"
    path.write_text(f"timestamp,status\n{T0},ok\n{T0 + 60},ok\n")
    message = refused(path)
    assert "a trace is two columns, the time then the value" in message
    assert "write a plain number" not in message


def test_one_bad_cell_still_says_write_a_number(tmp_path: Path) -> None:
    # Text in one cell of a two-column file is a typo, not a layout.
    for rows in (f"{T0},abc\n{T0 + 60},2\n", f"{T0},1\n{T0 + 60},abc\n"):
        path = tmp_path / "typo.csv"
        path.write_text(f"timestamp,requests\n{rows}")
        message = refused(path)
        assert "value 'abc' is not a number; write a plain number" in message


def test_a_field_over_the_csv_limit_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(f'timestamp,requests\n{T0},1\n{T0 + 60},"{"x" * 200_000}"\n')
    message = refused(path)
    assert message.startswith(f"{path}:3: not readable as CSV (field larger than field limit")


# -- dates whose UTC offset takes them outside the years 1 to 9999 -----------------------


@pytest.mark.parametrize(
    ("first", "bad", "side"),
    [
        ("0001-01-01T01:00:00+01:00", "0001-01-01T00:59:00+01:00", "before the year 1"),
        ("9999-12-31T18:00:00-05:00", "9999-12-31T19:00:00-05:00", "after the year 9999"),
    ],
)
def test_a_date_outside_the_years_once_in_utc_is_refused(
    tmp_path: Path, first: str, bad: str, side: str
) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(f"timestamp,requests\n{first},1\n{bad},2\n")
    assert refused(path) == (
        f"{path}:3: time {bad!r} is {side} in UTC (years 1 to 9999 only); remove the row"
    )
