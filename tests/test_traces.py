"""Trace files as people export them: each format read, each mistake one clear message."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scaler.traces import TraceError, read_trace

T0 = 1_719_792_000  # 2024-07-01T00:00:00Z


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def prometheus_answer(
    *series: list[tuple[float, str]], labels: list[dict[str, str]] | None = None
) -> str:
    """A /api/v1/query_range answer as Prometheus writes it (recorded shape)."""
    names = labels or [{} for _ in series]
    return json.dumps(
        {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [
                    {"metric": name, "values": [[t, v] for t, v in values]}
                    for name, values in zip(names, series, strict=True)
                ],
            },
        }
    )


# -- formats ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "detected"),
    [
        (f"timestamp,requests\n{T0},10\n{T0 + 60},20\n", "Unix seconds"),
        (f"timestamp,requests\n{T0}000,10\n{T0 + 60}000,20\n", "Unix milliseconds"),
        (
            "time,requests\n2024-07-01T00:00:00Z,10\n2024-07-01T00:01:00Z,20\n",
            "RFC 3339",
        ),
        (
            "time,requests\n2024-07-01T02:00:00+02:00,10\n2024-07-01T02:01:00+02:00,20\n",
            "RFC 3339",
        ),
    ],
    ids=["seconds", "milliseconds", "rfc3339-utc", "rfc3339-offset"],
)
def test_timestamp_formats_are_detected_and_said(tmp_path: Path, text: str, detected: str) -> None:
    trace = read_trace(write(tmp_path, text))
    assert trace.timestamps.tolist() == [T0, T0 + 60]
    assert trace.values.tolist() == [10, 20]
    assert trace.step_seconds == 60
    assert f"timestamps read as {detected}" in trace.notes


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (f"timestamp;requests\n{T0};10\n{T0 + 60};20\n", "';'-separated"),
        (f"timestamp\trequests\n{T0}\t10\n{T0 + 60}\t20\n", "tab-separated"),
        (f"\ufefftimestamp,requests\n{T0},10\n{T0 + 60},20\n", "','-separated"),
    ],
    ids=["semicolon", "tab", "bom"],
)
def test_separators_and_a_bom(tmp_path: Path, text: str, said: str) -> None:
    trace = read_trace(write(tmp_path, text))
    assert trace.values.tolist() == [10, 20]
    assert any(said in note and "'timestamp'" in note for note in trace.notes)


def test_a_decimal_comma_with_semicolons(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, f"time;rps\n{T0};1,5\n{T0 + 60};2,25\n"), unit="rate")
    assert trace.values.tolist() == [90.0, 135.0]


def test_no_header_takes_the_first_two_columns(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, f"{T0},10\n{T0 + 60},20\n"))
    assert trace.values.tolist() == [10, 20]
    assert any("no header" in note for note in trace.notes)


def test_a_named_time_column_and_the_value_after_it(tmp_path: Path) -> None:
    text = f"host,time,requests,errors\nweb,{T0},10,1\nweb,{T0 + 60},20,2\n"
    trace = read_trace(write(tmp_path, text))
    assert trace.values.tolist() == [10, 20]
    assert "columns: time from 'time', value from 'requests' (','-separated)" in trace.notes


def test_a_grafana_csv_download(tmp_path: Path) -> None:
    # Grafana's "Inspect > Data > Download CSV": quoted header, local dates without offset.
    text = (
        '"Time","sum(rate(http_requests_total[1m]))"\n'
        '"2024-07-01 00:00:00",1.5\n"2024-07-01 00:01:00",2\n'
    )
    trace = read_trace(write(tmp_path, text), unit="rate")
    assert trace.timestamps.tolist() == [T0, T0 + 60]
    assert trace.values.tolist() == [90.0, 120.0]
    assert "dates without a UTC offset read as UTC" in trace.notes


def test_gzip_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = f"timestamp,requests\n{T0},10\n{T0 + 60},20\n"
    packed = tmp_path / "trace.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    trace = read_trace(packed)
    assert trace.values.tolist() == [10, 20] and trace.stem == "trace"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(text.encode()))))
    trace = read_trace("-")
    assert trace.values.tolist() == [10, 20] and trace.name == "<stdin>"


def test_a_prometheus_range_answer_is_read_as_a_rate(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        prometheus_answer([(T0, "1.5"), (T0 + 60, "2"), (T0 + 120, "0.5")]),
        "export.json",
    )
    trace = read_trace(path)
    assert trace.values.tolist() == [90.0, 120.0, 30.0]  # requests per minute
    assert any("requests per second" in note for note in trace.notes)
    assert read_trace(path, unit="count").values.tolist() == [1.5, 2.0, 0.5]


def test_unit_rate_multiplies_by_the_interval(tmp_path: Path) -> None:
    path = write(tmp_path, f"timestamp,rps\n{T0},2.5\n{T0 + 300},1\n")
    assert read_trace(path, unit="rate").values.tolist() == [750.0, 300.0]
    # Read as counts, fractional values draw a warning that names the fix.
    assert "pass --unit rate" in read_trace(path).warnings[0]


def test_unsorted_rows_are_sorted_with_a_note(tmp_path: Path) -> None:
    text = f"timestamp,requests\n{T0 + 120},3\n{T0},1\n{T0 + 60},2\n"
    trace = read_trace(write(tmp_path, text))
    assert trace.values.tolist() == [1, 2, 3]
    assert "rows were not in time order (first at line 3); sorted them" in trace.notes


@pytest.mark.parametrize(
    ("fill", "values"),
    [("zero", [1, 0, 0, 4]), ("hold", [1, 1, 1, 4])],
)
def test_missing_intervals_filled_on_request(tmp_path: Path, fill: str, values: list[int]) -> None:
    # The grid is one minute (the most common interval); two minutes are missing.
    text = f"timestamp,requests\n{T0},1\n{T0 + 180},4\n{T0 + 240},5\n{T0 + 300},6\n"
    path = write(tmp_path, text)
    trace = read_trace(path, fill_missing=fill)  # type: ignore[arg-type]
    assert trace.values.tolist()[:4] == values
    assert any("filled 2 missing interval(s) in 1 gap(s)" in note for note in trace.notes)


def test_a_year_at_one_minute_is_read_into_two_arrays(tmp_path: Path) -> None:
    n = 365 * 24 * 60
    path = tmp_path / "year.csv"
    with path.open("w") as handle:
        handle.write("timestamp,requests\n")
        handle.writelines(f"{T0 + 60 * i},{i % 500}\n" for i in range(n))
    trace = read_trace(path)
    assert len(trace.values) == n and trace.values.dtype == np.float64
    assert trace.values[-1] == (n - 1) % 500


# -- mistakes: one message naming the line, the problem and the fix ----------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "trace.csv: empty file; expected rows of time,value"),
        ("timestamp,requests\n", "trace.csv:1: header 'timestamp,requests' has no data rows"),
        (
            "requests\n10\n",
            "trace.csv:1: header 'requests' has no value column after the time column",
        ),
        (
            f"timestamp,requests\n{T0},1\n{T0 + 60},1\n{T0 + 60},2\n",
            "trace.csv:4: timestamp 2024-07-01T00:01:00Z is also on line 3; keep one of the two",
        ),
        (
            f"timestamp,requests\n{T0},1\n{T0 + 60},1\n{T0 + 240},2\n",
            "trace.csv:4: 2 interval(s) of 1m missing before 2024-07-01T00:04:00Z (after line 3)"
            ", 2 in all; write the missing intervals as rows, or pass --fill-missing zero",
        ),
        (
            f"timestamp,requests\n{T0},1\n{T0 + 60},1\n{T0 + 120},1\n{T0 + 150},1\n",
            "trace.csv:5: timestamp 2024-07-01T00:02:30Z is off the grid of one row every 1m",
        ),
        (
            f"timestamp,requests\n{T0},1\n{T0 + 60},-4\n",
            "trace.csv:3: value -4 is negative; requests cannot be negative (a counter reset? "
            "export rate() or increase()",
        ),
        (
            f"timestamp,requests\n{T0},1\n{T0 + 60},many\n",
            "trace.csv:3: value 'many' is not a number; write a plain number",
        ),
        (
            f"timestamp,requests\n{T0},1\n{T0 + 60},\n",
            "trace.csv:3: the value is empty; write 0 or use --fill-missing for a gap",
        ),
        (
            f"timestamp,requests\n{T0},1\nyesterday,2\n",
            "trace.csv:3: time 'yesterday' is not a number like the rows before (Unix seconds)",
        ),
        (
            "timestamp,requests\nyesterday,2\n",
            "trace.csv:2: time 'yesterday' is neither a Unix timestamp nor an RFC 3339 date; "
            "write e.g. 1719792000 or 2024-07-01T00:00:00Z",
        ),
        (f"timestamp,requests\n{T0}\n", "trace.csv:2: 1 field(s) '1719792000'; expected a time"),
        (f"timestamp,requests\n{T0},1\n", "trace.csv: 1 data row(s); needs at least 2 rows"),
    ],
    ids=[
        "empty",
        "header-only",
        "one-column",
        "duplicate",
        "gap",
        "off-grid",
        "negative",
        "not-a-number",
        "empty-value",
        "mixed-time",
        "unknown-time",
        "one-field",
        "one-row",
    ],
)
def test_rejected_files_name_line_problem_and_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TraceError) as err:
        read_trace(write(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_file_and_a_folder(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"nope\.csv: cannot open: No such file"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match="is a folder; give the trace file inside it"):
        read_trace(tmp_path)


def test_not_utf8_says_how_to_save_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("zeit;anfragen\n1719792000;1\n1719792060;2\n# \xe9\n".encode("latin-1"))
    with pytest.raises(TraceError, match="is not UTF-8 text; save the file as UTF-8"):
        read_trace(path)


def test_several_prometheus_series_say_how_to_aggregate(tmp_path: Path) -> None:
    text = prometheus_answer([(T0, "1")], [(T0, "2")], labels=[{"pod": "web-1"}, {"pod": "web-2"}])
    with pytest.raises(TraceError) as err:
        read_trace(write(tmp_path, text, "export.json"))
    assert str(err.value).endswith(
        'export.json: 2 series ({pod="web-1"}, {pod="web-2"}); the trace is one series: '
        'aggregate in the query, e.g. sum(rate(http_requests_total{service="web"}[1m])) '
        "instead of rate(...) alone"
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            '{"status":"success","data":{"resultType":"vector","result":[]}}',
            "a vector (an instant query) has one value per series; export a range query",
        ),
        (
            '{"status":"error","errorType":"bad_data","error":"parse error"}',
            "Prometheus answered 'error': parse error; fix the query and export again",
        ),
        ('{"status":"success"', "export.json:1: not valid JSON"),
        (
            '{"status":"success","data":{"resultType":"matrix","result":[]}}',
            "the answer holds no series; check the query returns data over the range",
        ),
    ],
    ids=["instant-query", "error-answer", "truncated", "no-series"],
)
def test_prometheus_answers_that_are_not_a_trace(
    tmp_path: Path, document: str, message: str
) -> None:
    with pytest.raises(TraceError, match=None) as err:
        read_trace(write(tmp_path, document, "export.json"))
    assert message in str(err.value)


def test_a_gap_in_a_prometheus_answer_names_the_sample(tmp_path: Path) -> None:
    text = prometheus_answer([(T0, "1"), (T0 + 60, "NaN"), (T0 + 120, "1"), (T0 + 180, "1")])
    path = write(tmp_path, text, "export.json")
    with pytest.raises(TraceError, match=r"export.json: sample 3: 1 interval\(s\) of 1m missing"):
        read_trace(path)
    assert read_trace(path, fill_missing="zero").values.tolist() == [60, 0, 60, 60]


@pytest.mark.parametrize("infinite", ["+Inf", "-Inf"])
def test_an_infinite_sample_in_a_prometheus_answer_is_refused(
    tmp_path: Path, infinite: str
) -> None:
    # It was a gap, which --fill-missing zero turned into no demand at all.
    text = prometheus_answer([(T0, "1"), (T0 + 60, infinite), (T0 + 120, "1")])
    path = write(tmp_path, text, "export.json")
    for fill in ("error", "zero", "hold"):
        with pytest.raises(TraceError) as err:
            read_trace(path, fill_missing=fill)  # type: ignore[arg-type]
        assert "export.json: sample 2 at" in str(err.value)
        assert f"value {infinite} is not finite (the query divides by zero there?)" in str(
            err.value
        )


def test_a_step_that_looks_like_milliseconds_warns(tmp_path: Path) -> None:
    # Relative timestamps in milliseconds: too small to be detected by magnitude.
    trace = read_trace(write(tmp_path, "timestamp,requests\n0,1\n60000,2\n120000,3\n"))
    assert trace.warnings == (
        "one row every 1000m (60000 s): if the timestamps are milliseconds, the interval is 1m; "
        "write Unix seconds or RFC 3339 dates",
    )


def test_a_file_too_large_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scaler.traces as traces

    path = write(tmp_path, f"timestamp,requests\n{T0},1\n{T0 + 60},2\n")
    monkeypatch.setattr(traces, "MAX_INTERVALS", 2)  # the file holds ~3 rows of 13 bytes
    with pytest.raises(TraceError, match="is more than 2 rows: too large to simulate in memory"):
        read_trace(path)


def test_a_row_count_for_a_time_column_is_pointed_out(tmp_path: Path) -> None:
    """A `minute` column 0, 1, 2, ... is valid Unix time (1970, one second apart) and
    simulates a day of traffic as 24 minutes: the note says what was read."""
    counted = read_trace(write(tmp_path, "minute,requests\n0,10\n1,12\n2,14\n3,9\n"))
    assert counted.step_seconds == 1
    assert any(
        note.startswith("timestamps start at 1970-01-01T00:00:00Z: if the time column counts")
        for note in counted.notes
    )
    real = read_trace(write(tmp_path, f"time,requests\n{T0:.0f},10\n{T0 + 60:.0f},20\n"))
    assert not any(note.startswith("timestamps start at") for note in real.notes)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("zip", "is a zip archive; unpack it"),
        ("xz", "is an xz archive; decompress it (xz -d)"),
        ("bz2", "is a bzip2 archive; decompress it (bunzip2)"),
        ("utf-16", "is UTF-16 text; save it as UTF-8"),
    ],
)
def test_archives_and_utf16_are_named_for_what_they_are(
    tmp_path: Path, content: str, said: str
) -> None:
    """They failed as "byte 10 is not UTF-8 text", which points at the wrong fix."""
    text = "time,requests\n1700000000,5\n1700000060,6\n"
    path = tmp_path / f"trace.{content}"
    if content == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("trace.csv", text)
    elif content == "xz":
        path.write_bytes(lzma.compress(text.encode()))
    elif content == "bz2":
        path.write_bytes(bz2.compress(text.encode()))
    else:
        path.write_bytes(text.encode("utf-16"))
    with pytest.raises(TraceError) as refused:
        read_trace(path)
    assert str(refused.value).startswith(f"{path}: {said}")
