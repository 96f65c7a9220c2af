"""The JSON answer of a Prometheus range query (`/api/v1/query_range`), one series."""

from __future__ import annotations

import json
import math
import reprlib
from typing import IO, Any

from scaler.traces.model import Samples, TraceError
from scaler.traces.timestamps import time_problem, when

# How a sample is shown in a message: a few levels and items, never the whole of a
# hostile one (a long or deeply nested list).
_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxstring, _SHOW.maxother = 3, 4, 40, 40


def _shown(value: Any) -> str:
    return _SHOW.repr(value)


def _text(value: Any) -> str:
    """A string as written (Prometheus's labels and error text), anything else shown short."""
    return value if isinstance(value, str) else _shown(value)


def _number(value: Any) -> float:
    """A time or value as Prometheus writes it (a number or a numeric string); not a bool,
    which float() would take as 0 or 1."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(value)
    return float(value)


# How to be rid of an infinite value: in a file the sample can go (and its gap be
# filled); a series fetched from Prometheus comes back as the query returns it.
REMOVE_SAMPLE = "fix the query, or remove the sample and pass --fill-missing"
FIX_QUERY = "fix the query so that it returns a number there"


def check_sample(name: str, i: int, t: float, v: float, written: str, inf_fix: str) -> None:
    """Refuse a sample no trace may hold: +Inf or -Inf, or a negative value. NaN is not
    checked here: Prometheus writes it for 0/0, and a trace reads it as a gap."""
    if math.isinf(v):
        # x/0 in the query: no demand to fill a gap with, and --fill-missing zero
        # would have made an infinite demand none at all.
        raise TraceError(
            f"{name}: sample {i} at {when(t)}: value {written} is not finite (the query "
            f"divides by zero there?); {inf_fix}"
        )
    if v < 0:
        raise TraceError(
            f"{name}: sample {i} at {when(t)}: value {written} is negative; query rate() or "
            "increase() of the counter, not the counter itself"
        )


def prometheus_samples(text: IO[str], name: str) -> Samples:
    try:
        document = json.load(text)
    except RecursionError:
        # The json module nests by recursion; an answer is 5 levels deep, so this is not one.
        raise TraceError(
            f"{name}: JSON nested too deep to read; export the query_range answer unchanged, "
            "or a CSV"
        ) from None
    except json.JSONDecodeError as exc:
        raise TraceError(
            f"{name}:{exc.lineno}: not valid JSON ({exc.msg}); export the query_range answer "
            "unchanged, or a CSV"
        ) from None
    data: Any = document
    if isinstance(document, dict) and "status" in document:
        if document.get("status") != "success":
            raise TraceError(
                f"{name}: Prometheus answered {_shown(document.get('status'))}: "
                f"{_text(document.get('error', 'no error text'))}; fix the query and export again"
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
    samples = Samples(where="sample", name=name)
    samples.notes.append("Prometheus range query answer: timestamps read as Unix seconds")
    for i, pair in enumerate(series["values"], start=1):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise TraceError(
                f'{name}: sample {i}: {_shown(pair)} is not [time, "value"]; export the answer '
                "unchanged"
            )
        try:
            t, v = _number(pair[0]), _number(pair[1])
        except (TypeError, ValueError):
            raise TraceError(
                f'{name}: sample {i}: {_shown(pair)} is not [time, "value"] with numbers; export '
                "the answer unchanged"
            ) from None
        # Checked before the value: a gap (NaN value) at a NaN time is still no time.
        problem = time_problem(t)
        if problem is not None:
            raise TraceError(
                f"{name}: sample {i}: time {_shown(pair[0])} {problem}; Prometheus writes Unix "
                "seconds: export the answer unchanged, or remove the sample"
            )
        if math.isnan(v):
            continue  # what Prometheus writes for 0/0: a gap, filled by --fill-missing
        check_sample(name, i, t, v, str(pair[1]), REMOVE_SAMPLE)
        samples.add(t, v, i)
    if not samples.times:
        raise TraceError(f"{name}: the series has no finite sample; check the query over the range")
    return samples


def _labels(series: Any) -> str:
    metric = series.get("metric", {}) if isinstance(series, dict) else {}
    inner = (
        ",".join(f'{k}="{_text(v)}"' for k, v in sorted(metric.items()))
        if isinstance(metric, dict)
        else ""
    )
    return "{" + inner + "}"
