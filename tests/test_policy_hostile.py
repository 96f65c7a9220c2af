"""Hostile trigger metadata: anyone who can write a ScaledObject can send it.

Every case is a clear PolicyError (INVALID_ARGUMENT on the wire) in milliseconds,
with a message that quotes only a short prefix of what was sent; memory stays
flat however many distinct maps pass; no number can overflow a decision.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
import tracemalloc
import zoneinfo
from collections.abc import Callable, Iterator

import grpc
import pytest
from cachetools import LRUCache
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from prometheus_server import Exporter, PrometheusServer

from scaler.engine import MAX_SIGNAL_REPLICAS, Observations, decide, replicas_for
from scaler.policy import (
    MAX_REPLICAS,
    Policy,
    PolicyError,
    cached_policy,
    clear_policy_cache,
    parse_policy,
)
from scaler.policy_limits import MAX_MESSAGE_BYTES
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import ServerConfig, start_server

QUERY = {"query": "sum(rate(http_requests_total[1m]))", "threshold": "100"}
CRON = {
    "timezone": "Europe/Berlin",
    "start": "0 8 * * *",
    "end": "0 20 * * *",
    "desiredReplicas": "5",
}
WINDOW = '{"start": "0 1 * * *", "end": "0 2 * * *", "timezone": "UTC", "desiredReplicas": 1}'


def billion_laughs() -> str:
    """The YAML alias bomb: nine levels of nine aliases to the level below (9^9 leaves)."""
    lines = ['- &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghi"
    for below, name in itertools.pairwise(names):
        lines.append(f"- &{name} [" + ",".join([f"*{below}"] * 9) + "]")
    return "\n".join(lines) + "\n"


BOMB = billion_laughs()
DEEP_JSON = "[" * 5000 + "]" * 5000
MANY_UNKNOWN = QUERY | {f"unknown_{i:03d}_" + "x" * 90: "v" for i in range(60)}

HOSTILE: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "yaml-alias-bomb": (
        {"schedules": BOMB},
        ("schedules: YAML anchors (&name) are not allowed",),
    ),
    "yaml-alias": ({"schedules": "- *a\n"}, ("schedules: YAML aliases (*name) are not allowed",)),
    "yaml-python-tag": (
        {"schedules": "- !!python/object/apply:os.system ['true']\n"},
        ("schedules: YAML tags (!name) are not allowed",),
    ),
    "json-depth-bomb": (
        {"schedules": DEEP_JSON},
        ("schedules: nested more than 4 levels deep",),
    ),
    "yaml-deep-blocks": (
        {"schedules": "".join("  " * i + "- \n" for i in range(50))},
        ("schedules: nested more than 4 levels deep",),
    ),
    "too-many-windows": (
        {"schedules": "[" + ",".join([WINDOW] * 51) + "]"},
        ("schedules: 51 windows, at most 50",),
    ),
    "too-many-values": (
        {"schedules": "[" + "1," * 3000 + "1]"},
        ("schedules: too many values (more than 800; at most 50 windows)",),
    ),
    "yaml-duplicate-key": (
        {"schedules": "- {start: 0 1 * * *, start: 0 2 * * *}"},
        ("schedules: key 'start' appears twice in one mapping",),
    ),
    "yaml-two-documents": (
        {"schedules": "- a\n---\n- b\n"},
        ("schedules: more than one YAML document",),
    ),
    "schedule-value-is-a-list": (
        {"schedules": "- {start: [1, 2], end: 0 2 * * *, timezone: UTC, desiredReplicas: 1}"},
        (
            "schedules[0].start: expected a single value, not a list or object",
            "schedules[0].start is required in every schedule",
        ),
    ),
    "megabyte-query": (
        QUERY | {"query": "x" * 2**20},
        ("query: the value is too long (1048576 bytes, at most 16384)",),
    ),
    "long-value": (
        QUERY | {"metricName": "m" * 5000},
        ("metricName: the value is too long (5000 bytes, at most 4096)",),
    ),
    "multibyte-value-counted-in-bytes": (
        QUERY | {"metricName": "é" * 2100},
        ("metricName: the value is too long (4200 bytes, at most 4096)",),
    ),
    "too-many-keys": (
        QUERY | {f"k{i}": "v" for i in range(70)},
        ("too many keys: 72 (at most 64)",),
    ),
    "long-key": (
        QUERY | {"k" * 200: "v"},
        (f"key {'k' * 60!r}… (200 bytes) is too long (at most 128 bytes)",),
    ),
    "whole-map-too-large": (
        QUERY
        | {
            "query": "q" * 16000,
            "forecastQuery": "q" * 16000,
            "schedules": "s" * 16000,
            "metricName": "m" * 4000,
            "podSelector": "p" * 4000,
            "namespace": "n" * 4000,
            "customHeaders": "c" * 4000,
            "queryParameters": "x" * 4000,
        },
        ("the metadata is too large (68097 bytes in all, at most 65536)",),
    ),
    "zone-is-a-directory": (
        CRON | {"timezone": "Europe"},
        ("timezone='Europe': expected an IANA time zone such as Europe/Berlin or UTC",),
    ),
    "zone-empty": (
        CRON | {"timezone": ""},
        ("timezone='': expected an IANA time zone such as Europe/Berlin or UTC",),
    ),
    "zone-parent-path": (
        CRON | {"timezone": "../etc"},
        ("timezone='../etc': expected an IANA time zone such as Europe/Berlin or UTC",),
    ),
    "zone-data-file": (
        CRON | {"timezone": "zone.tab"},
        ("timezone='zone.tab': expected an IANA time zone such as Europe/Berlin or UTC",),
    ),
    "zone-absurdly-long": (
        CRON | {"timezone": "a" * 4000},
        (
            f"timezone={'a' * 60!r}… (4000 bytes): expected an IANA time zone such as "
            "Europe/Berlin or UTC",
        ),
    ),
    "zone-directory-in-schedules": (
        {"schedules": "- {start: 0 1 * * *, end: 0 2 * * *, timezone: Europe, desiredReplicas: 1}"},
        (
            "schedules[0].timezone='Europe': expected an IANA time zone such as "
            "Europe/Berlin or UTC",
        ),
    ),
    "desired-2-pow-63": (
        CRON | {"desiredReplicas": str(2**63)},
        ("desiredReplicas='9223372036854775808': expected a whole number from 1 to 100000",),
    ),
    "desired-above-sane-max": (
        CRON | {"desiredReplicas": "100001"},
        ("desiredReplicas='100001': expected a whole number from 1 to 100000",),
    ),
    "min-1e19": (
        QUERY | {"minReplicas": "1e19"},
        ("minReplicas='1e19': expected a whole number from 0 to 100000",),
    ),
    "max-with-underscores": (
        QUERY | {"maxReplicas": "1_000"},
        ("maxReplicas='1_000': expected a whole number from 1 to 100000",),
    ),
    "desired-4000-digits": (
        CRON | {"desiredReplicas": "9" * 4000},
        (f"desiredReplicas={'9' * 60!r}… (4000 bytes): expected a whole number from 1 to 100000",),
    ),
    "threshold-other-script-digits": (
        QUERY | {"threshold": "１００"},
        ("threshold='１００': expected a number from 1e-9 to 1e15",),
    ),
    "threshold-underscores": (
        QUERY | {"threshold": "1_000"},
        ("threshold='1_000': expected a number from 1e-9 to 1e15",),
    ),
    "duration-other-script-digits": (
        QUERY | {"forecastHistory": "１d"},
        (
            "forecastHistory='１d': expected a duration such as 90s, 15m, 7d (more than 0, "
            "at most 90d)",
        ),
    ),
    "threshold-1e-20": (
        QUERY | {"threshold": "1e-20"},
        ("threshold='1e-20': expected a number from 1e-9 to 1e15",),
    ),
    "threshold-1e16": (
        QUERY | {"threshold": "1e16"},
        ("threshold='1e16': expected a number from 1e-9 to 1e15",),
    ),
    "threshold-nan": (
        QUERY | {"threshold": "nan"},
        ("threshold='nan': expected a number from 1e-9 to 1e15",),
    ),
    "activation-infinity": (
        QUERY | {"activationThreshold": "Infinity"},
        ("activationThreshold='Infinity': expected a number from 0 to 1e15",),
    ),
    "cpu-1e300-percent": (
        {"cpuUtilization": "1e300", "podSelector": 'namespace="shop"'},
        ("cpuUtilization='1e300': expected a percentage > 0, e.g. 70 (at most 10000)",),
    ),
    "pod-startup-two-days": (
        QUERY | {"podStartupSeconds": "2d"},
        ("podStartupSeconds='2d': expected a duration such as 90s, 15m, 7d (at most 1d, or auto)",),
    ),
    "forecast-history-a-year": (
        QUERY | {"forecastHistory": "365d"},
        (
            "forecastHistory='365d': expected a duration such as 90s, 15m, 7d "
            "(more than 0, at most 90d)",
        ),
    ),
    "cron-3000-digit-minute": (
        CRON | {"start": "9" * 3000 + " * * * *"},
        (
            f"start={'9' * 60!r}… (3008 bytes): expected a 5-field cron expression: value of "
            "3000 digits out of range 0-59 in minute field",
        ),
    ),
    "header-injection": (
        QUERY | {"customHeaders": "X-Scope-OrgID=a\x0d\x0aHost: evil"},
        (
            "customHeaders='X-Scope-OrgID=a\\r\\nHost: evil': the value of 'X-Scope-OrgID' may "
            "have printable ASCII characters only",
        ),
    ),
    "header-value-not-ascii": (
        QUERY | {"customHeaders": "X-Tenant=müller"},
        (
            "customHeaders='X-Tenant=müller': the value of 'X-Tenant' may have printable "
            "ASCII characters only",
        ),
    ),
    "namespace-injection": (
        QUERY | {"namespace": "shop&query=up"},
        (
            "namespace='shop&query=up': expected a Kubernetes namespace name "
            "(lower-case letters, digits, '-')",
        ),
    ),
    # Found by fuzzing: a lone surrogate escaped as UnicodeEncodeError (only through the
    # Python API; gRPC refuses it as invalid UTF-8 before the parser).
    "schedules-lone-surrogate": (
        {"schedules": "\ud800"},
        ("schedules: not valid text (it holds characters UTF-8 cannot encode)",),
    ),
    # Control bytes reached the message raw (gRPC status, logs, Events): now escaped.
    "cron-control-byte": (
        CRON | {"start": "0 0 * * \x1c"},
        (
            "start='0 0 * * \\x1c': expected a 5-field cron expression: '\\x1c' is not a "
            "number or a name (SUN-SAT; Sunday is 0, 7 is not accepted) in day-of-week field",
        ),
    ),
    "cron-zone-control-byte": (
        CRON | {"start": "TZ=\x07x 0 0 * * *"},
        (
            "start='TZ=\\x07x 0 0 * * *': expected a 5-field cron expression: unknown time "
            "zone '\\x07x' in TZ= prefix",
        ),
    ),
    "long-value-control-key": (
        {"\x00": "v" * 5000},
        ("'\\x00': the value is too long (5000 bytes, at most 4096)",),
    ),
    # int() refused the 5,000-digit step in words of its own (sys.set_int_max_str_digits).
    "schedules-step-of-5000-digits": (
        {
            "schedules": "- {start: '*/"
            + "1" * 5000
            + " * * * *', end: '0 9 * * *', timezone: UTC, desiredReplicas: '1'}"
        },
        (
            "schedules[0].start='*/1111111111111111111111111111111111111111111111111111111111'"
            "… (5010 bytes): expected a 5-field cron expression: step "
            "'111111111111111111111111111111111111111111111111111111111111'… (5000 bytes) in "
            "'*/1111111111111111111111111111111111111111111111111111111111'… (5002 bytes) is "
            "not a positive number in minute field",
        ),
    ),
    "address-with-newline": (
        QUERY | {"prometheusAddress": "http://prometheus:9090\n/evil"},
        (
            "prometheusAddress='http://prometheus:9090\\n/evil': "
            "expected an http:// or https:// URL",
        ),
    ),
}


def hostile_problems(metadata: dict[str, str]) -> tuple[str, ...]:
    with pytest.raises(PolicyError) as info:
        parse_policy(metadata)
    return info.value.problems


def fastest_ms(call: Callable[[], object], runs: int = 3) -> float:
    """Best of a few runs: the cost of the work, not of a busy shared machine."""
    best = math.inf
    for _ in range(runs):
        began = time.perf_counter()
        with contextlib.suppress(PolicyError):
            call()
        best = min(best, time.perf_counter() - began)
    return best * 1000


@pytest.mark.parametrize(("metadata", "expected"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_metadata_gives_exactly_this_message_in_milliseconds(
    metadata: dict[str, str], expected: tuple[str, ...]
) -> None:
    assert hostile_problems(metadata) == expected
    assert fastest_ms(lambda: parse_policy(metadata)) < 20


def test_the_alias_bomb_is_small_and_refused_in_well_under_a_millisecond_each() -> None:
    assert len(BOMB) < 440
    assert fastest_ms(lambda: parse_policy({"schedules": BOMB}), runs=20) < 2


def test_a_long_list_of_problems_is_cut_to_a_bounded_message() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(MANY_UNKNOWN)
    message = str(info.value)
    assert len(info.value.problems) == 60  # every problem is kept for the caller
    assert len(message.encode()) <= MAX_MESSAGE_BYTES
    assert message.endswith(" more problems")
    assert f"unknown key {'unknown_000_' + 'x' * 48!r}… (102 bytes)" in message


def test_no_problem_quotes_more_than_a_short_prefix() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(CRON | {"start": "1," * 1900 + "99 * * * *", "end": "x" * 4000})
    assert all(len(p) <= 400 for p in info.value.problems)
    assert len(str(info.value)) < 1000


def test_distinct_megabyte_maps_do_not_stay_in_memory() -> None:
    """300 distinct 1 MB invalid maps: rejected before they are hashed or cached."""
    clear_policy_cache()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(300):
            metadata = {"query": f"{i}" + "x" * 2**20, "threshold": "1"}
            with pytest.raises(PolicyError):
                cached_policy(metadata)
            del metadata
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 256 * 1024
    assert peak - before < 4 * 2**20  # one map at a time, never a pile of them


LARGE_INVALID_KEYS = (
    "metricName",
    "namespace",
    "customHeaders",
    "queryParameters",
    "timezone",
    "start",
    "end",
)


def test_the_cache_holds_a_bounded_number_of_bytes() -> None:
    """500 distinct invalid maps of 60 kB each (30 MB sent): what stays cached is bounded
    by the cache's 16 MiB (without the bound, all 30 MB would stay)."""
    clear_policy_cache()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(500):
            distinct = f"{i:05d}"  # every value a new string, nothing shared between maps
            metadata = {
                "query": distinct + "q" * 16000,
                "forecastQuery": distinct + "f" * 16000,
                "threshold": "0",
            } | {key: distinct + "v" * 4000 for key in LARGE_INVALID_KEYS}
            with pytest.raises(PolicyError):
                cached_policy(metadata)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        clear_policy_cache()
    assert after - before < 20 * 2**20


def test_valid_policies_of_many_windows_stay_within_the_cache_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Distinct valid maps of fifty cron windows (4 KB sent each): a parsed policy holds
    ~36 KiB, several times what the cache counted it at, so a tenant rewriting a comment
    in its metadata kept ~100 MB under the 16 MiB bound. Here with a 2 MiB bound."""
    import scaler.policy as policy_module

    bound = 2 * 2**20
    monkeypatch.setattr(
        policy_module, "_cache", LRUCache(maxsize=bound, getsizeof=lambda entry: entry[0])
    )
    window = {"start": "0 0 29 2 *", "end": "0 1 29 2 *", "timezone": "UTC"}
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(200):
            schedules = json.dumps([window | {"desiredReplicas": "1"}] * 50) + f"\n# {i}"
            policy = cached_policy({"schedules": schedules})
            assert len(policy.windows) == 50
            del policy
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1.5 * bound, (after - before) / 2**20


def test_a_cache_hit_takes_microseconds() -> None:
    clear_policy_cache()
    metadata = QUERY | CRON | {"scalerAddress": "tidescaler:9090", "minReplicas": "1"}
    first = cached_policy(metadata)
    rounds = 2000
    batches = []
    for _ in range(3):  # best of three batches: the cost of a hit, not of a busy machine
        began = time.perf_counter()
        for _ in range(rounds):
            assert cached_policy(dict(metadata)) is first
        batches.append((time.perf_counter() - began) / rounds * 1e6)
    assert min(batches) < 50, f"{min(batches):.1f} µs per cache hit"


def test_an_invalid_map_raises_a_fresh_error_each_time() -> None:
    clear_policy_cache()
    errors = []
    for _ in range(3):
        with pytest.raises(PolicyError) as info:
            cached_policy({"query": "up"})
        errors.append(info.value)
    assert errors[0] is not errors[1] and errors[0].problems == errors[2].problems


@pytest.mark.parametrize(
    ("demand", "threshold", "expected"),
    [
        (1e300, 1e-9, MAX_SIGNAL_REPLICAS),
        (1e308, 1e-20, MAX_SIGNAL_REPLICAS),  # what a parser bug could let through
        (float("inf"), 1.0, 0),  # no measurement, not a huge one
        (2**31 * 10.0, 10.0, MAX_SIGNAL_REPLICAS),
        (300.0000000001, 100.0, 3),
    ],
)
def test_replicas_for_clamps_instead_of_overflowing(
    demand: float, threshold: float, expected: int
) -> None:
    assert replicas_for(demand, threshold) == expected


def test_largest_numbers_a_policy_accepts_give_a_bounded_decision() -> None:
    policy = parse_policy(
        {"query": "up", "threshold": "1e-9", "maxReplicas": str(MAX_REPLICAS)}
        | {"minReplicas": str(MAX_REPLICAS)}
    )
    assert policy.max_replicas == MAX_REPLICAS
    decision = decide(policy, Observations(), 0.0)
    assert decision.desired_replicas <= MAX_REPLICAS


# -- fuzzing: any map of strings is a Policy or a PolicyError, quickly -------------

KEYS = st.sampled_from(
    [
        "timezone",
        "start",
        "end",
        "desiredReplicas",
        "schedules",
        "query",
        "threshold",
        "activationThreshold",
        "minReplicas",
        "maxReplicas",
        "forecastHistory",
        "podStartupSeconds",
        "customHeaders",
        "queryParameters",
        "timeout",
        "namespace",
        "serverAddress",
        "unsafeSsl",
    ]
)
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["1", "0", "-1", "1e19", "1e-20", str(2**63), "nan", "Europe", "../etc"]),
    st.sampled_from(["0 8 * * *", "*/5 * * * 1-5", "TZ=Europe 0 8 * * *", "@daily"]),
    st.sampled_from(["- {start: 0 1 * * *}", "[{}]", "- &a x\n- *a", "[[[[[[]]]]]]"]),
)


def assert_policy_or_policy_error(metadata: dict[str, str]) -> None:
    began = time.perf_counter()
    try:
        policy = parse_policy(metadata)
    except PolicyError as err:
        assert err.problems
        assert len(str(err).encode("utf-8", "surrogatepass")) <= MAX_MESSAGE_BYTES
    else:
        assert isinstance(policy, Policy)
    if time.perf_counter() - began >= 0.05:  # a busy machine, or really slow? ask again
        assert fastest_ms(lambda: parse_policy(metadata)) < 50


def _explicit(test: Callable[[dict[str, str]], None]) -> Callable[[dict[str, str]], None]:
    for metadata, _ in HOSTILE.values():
        test = example(metadata=metadata)(test)
    return example(metadata=MANY_UNKNOWN)(test)


@settings(max_examples=300, deadline=None)
@given(
    metadata=st.one_of(
        st.dictionaries(st.text(max_size=30), st.text(max_size=60), max_size=8),
        st.dictionaries(KEYS, VALUES, max_size=8),
    )
)
@_explicit
def test_any_metadata_is_a_policy_or_a_policy_error(metadata: dict[str, str]) -> None:
    assert_policy_or_policy_error(metadata)


# -- on the wire: what a KEDA client sees -----------------------------------------


@pytest.fixture(scope="module")
def stub() -> Iterator[pb_grpc.ExternalScalerStub]:
    running = start_server(
        ServerConfig(
            host="127.0.0.1", port=0, metrics_port=None, prometheus_url="http://127.0.0.1:9"
        )
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield pb_grpc.ExternalScalerStub(channel)
    finally:
        running.stop(0)


@pytest.mark.parametrize(
    "case",
    [
        "yaml-alias-bomb",
        "json-depth-bomb",
        "megabyte-query",
        "zone-is-a-directory",
        "desired-2-pow-63",
        "threshold-1e-20",
        "header-injection",
    ],
)
def test_hostile_metadata_is_invalid_argument_on_the_wire(
    stub: pb_grpc.ExternalScalerStub, case: str
) -> None:
    metadata, expected = HOSTILE[case]
    request = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=metadata)
    for call in (stub.GetMetricSpec, stub.IsActive):
        began = time.perf_counter()
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=3)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "invalid tidescaler trigger metadata: " + "; ".join(expected)
        assert time.perf_counter() - began < 1.0


def test_a_long_list_of_problems_stays_invalid_argument_on_the_wire(
    stub: pb_grpc.ExternalScalerStub,
) -> None:
    request = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=MANY_UNKNOWN)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=request), timeout=3)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert len((info.value.details() or "").encode()) <= MAX_MESSAGE_BYTES


LONG_NAMES = ",".join(f"{'p' * 180}{i}=1" for i in range(20))
LONG_OPTION_NAMES = (
    QUERY | {"queryParameters": "名" * 1_300 + "=1"},
    QUERY | {"queryParameters": LONG_NAMES, "customHeaders": "X-" + LONG_NAMES},
)


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        # Valid policies whose Prometheus cannot be reached: the backend error names the query.
        (QUERY | {"query": "vector(1) # " + "x" * 16_000}, grpc.StatusCode.UNAVAILABLE),
        (QUERY | {"query": "vector(1) # " + "é" * 5_000}, grpc.StatusCode.UNAVAILABLE),
        # Option names the server does not allow: the refusal names each of them.
        *((metadata, grpc.StatusCode.INVALID_ARGUMENT) for metadata in LONG_OPTION_NAMES),
    ],
    ids=["long-query", "long-utf8-query", "long-parameter-name", "many-long-option-names"],
)
def test_long_queries_and_option_names_keep_every_status_message_short(
    stub: pb_grpc.ExternalScalerStub, metadata: dict[str, str], code: grpc.StatusCode
) -> None:
    """Messages quote a prefix of what the tenant wrote: quoted whole, they pass a gRPC
    client's 8 KiB metadata limit, and the client sees RESOURCE_EXHAUSTED instead."""
    ref = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=metadata)
    for call, request in (
        (stub.GetMetrics, pb.GetMetricsRequest(scaledObjectRef=ref)),
        (stub.IsActive, ref),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=3)
        assert info.value.code() is code
        details = info.value.details() or ""
        assert 0 < len(details.encode()) <= MAX_MESSAGE_BYTES
        assert "…" in details or "..." in details


def _refused_by_every_call(stub: pb_grpc.ExternalScalerStub, ref: pb.ScaledObjectRef) -> list[str]:
    """GetMetricSpec, GetMetrics and IsActive each refuse `ref` with INVALID_ARGUMENT:
    their status details."""
    refusals = []
    for call, request in (
        (stub.GetMetricSpec, ref),
        (stub.GetMetrics, pb.GetMetricsRequest(scaledObjectRef=ref)),
        (stub.IsActive, ref),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=3)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        refusals.append(info.value.details() or "")
    return refusals


def test_names_kubernetes_would_not_allow_are_refused_without_echoing_them(
    stub: pb_grpc.ExternalScalerStub,
) -> None:
    """Names come back in status messages, logs and Events: a newline or an escape
    sequence there could pass for another line. KEDA only ever sends real names."""
    for name, namespace, expected in (
        ("web\n\x1b[31mFAKE\x00", "shop", "the name 'web\\n\\x1b[31mFAKE\\x00' is not"),
        ("web", "shop\r\nx", "the namespace 'shop\\r\\nx' is not a Kubernetes namespace"),
        ("Web", "shop", "the name 'Web' is not a Kubernetes name"),
        ("web", "sh.op", "the namespace 'sh.op' is not"),
        ("-web", "shop", "starting and ending with a letter or digit"),
    ):
        ref = pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=CRON)
        for details in _refused_by_every_call(stub, ref):
            assert expected in details
            assert not any(c in details for c in "\n\r\x1b\x00")
    dotted = pb.ScaledObjectRef(name="web.v2", namespace="shop-eu", scalerMetadata=CRON)
    assert len(stub.GetMetricSpec(dotted, timeout=3).metricSpecs) == 1


def test_names_longer_than_kubernetes_allows_are_refused(
    stub: pb_grpc.ExternalScalerStub,
) -> None:
    """Names label metrics and logs and key per-ScaledObject tables: a client sending
    megabyte names one after the other would grow them all. Kubernetes' own limits."""
    accepted = pb.ScaledObjectRef(name="w" * 253, namespace="n" * 63, scalerMetadata=CRON)
    assert len(stub.GetMetricSpec(accepted, timeout=3).metricSpecs) == 1
    for name, namespace, expected in (
        ("w" * 254, "shop", "the name is 254 bytes long, more than Kubernetes allows (253)"),
        ("web", "n" * 64, "the namespace is 64 bytes long, more than Kubernetes allows (63)"),
        ("w" * 2**20, "shop", "the name is 1048576 bytes long"),
    ):
        ref = pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=CRON)
        for details in _refused_by_every_call(stub, ref):
            assert expected in details


def test_a_crafted_query_is_read_in_milliseconds() -> None:
    """PromQL is not parsed, but its range selectors are read for the metric's lag: a
    backtracking pattern took a second on this one."""
    for query in (
        "[1:" * 5_400,
        "[1" + "1" * 16_000,
        "[1:" + "a" * 16_000,
        "x[" + "1" * 15_990 + "x]",  # not a number, not a duration: each part read once
        "x[1s" + "1" * 15_990 + "x]",
    ):
        assert fastest_ms(lambda q=query: parse_policy(QUERY | {"query": q})) < 20
    # The duration keys: refused as fast, and the message quotes a short prefix only.
    durations = ("podStartupSeconds", "forecastHistory", "metricLagSeconds")
    hostile = {key: "1" * 4000 + "x" for key in durations}
    assert fastest_ms(lambda: parse_policy(QUERY | hostile)) < 20
    with pytest.raises(PolicyError) as refused:
        parse_policy(QUERY | hostile)
    assert sorted(p.split("=")[0] for p in refused.value.problems) == sorted(durations)
    assert len(str(refused.value)) < 1000


def test_every_iana_time_zone_is_still_accepted() -> None:
    """The name check in front of ZoneInfo refuses paths and files, not real zones."""
    refused = []
    for name in sorted(zoneinfo.available_timezones()):
        try:
            parse_policy(CRON | {"timezone": name})
        except PolicyError:
            refused.append(name)
    assert refused == []


# -- every RPC, fuzzed, against a real Prometheus ---------------------------------

FUZZ_METRIC = "fuzz_requests_per_second"
FUZZ_QUERY = {"query": f"sum({FUZZ_METRIC})", "threshold": "100"}
# What a client may be answered: the answer, its own mistake, or no usable data yet.
# Never INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED (KEDA's 3 s).
EXPECTED_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAVAILABLE}


@pytest.fixture(scope="module")
def live_stub(
    prometheus: PrometheusServer, exporter: Exporter
) -> Iterator[pb_grpc.ExternalScalerStub]:
    exporter.set(FUZZ_METRIC, 250.0)
    prometheus.wait_for_value(f"sum({FUZZ_METRIC})", 250.0)
    running = start_server(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=None, prometheus_url=prometheus.url)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield pb_grpc.ExternalScalerStub(channel)
    finally:
        running.stop(0)


def _outcome(call: Callable[[], object]) -> tuple[grpc.StatusCode, object]:
    try:
        return grpc.StatusCode.OK, call()
    except grpc.RpcError as err:
        details = err.details() or ""
        assert err.code() in EXPECTED_CODES, (err.code(), details[:300])
        # Short enough for gRPC's trailers: a long quote would turn into RESOURCE_EXHAUSTED.
        assert 0 < len(details.encode()) <= 2 * MAX_MESSAGE_BYTES, details[:300]
        return err.code(), details


# Policies that parse, with a query Prometheus answers (or refuses, or finds nothing
# for), so the fuzz reaches decide() and the backend's failures.
FUZZ_BASES = st.sampled_from(
    [
        {},
        FUZZ_QUERY,
        CRON,
        CRON | FUZZ_QUERY,
        {"query": "sum(", "threshold": "1"},
        {"query": "sum(fuzz_no_such_metric)", "threshold": "1"},
    ]
)
NUMERIC_KEYS = st.sampled_from(
    ["threshold", "activationThreshold", "minReplicas", "maxReplicas", "desiredReplicas"]
)
NUMBERS = st.one_of(
    st.integers(-10, 10**7).map(str),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(repr),
    st.sampled_from(["1e-20", "1e19", str(2**63), "0.001", "inf", "nan"]),
)


def _sendable(metadata: dict[str, str]) -> bool:
    """Whether gRPC can carry these strings at all (protobuf strings are UTF-8)."""
    try:
        for key, value in metadata.items():
            key.encode()
            value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _explicit_wire(
    test: Callable[[pb_grpc.ExternalScalerStub, dict[str, str], str], None],
) -> Callable[[pb_grpc.ExternalScalerStub, dict[str, str], str], None]:
    for metadata, _ in HOSTILE.values():
        if not _sendable(metadata):
            continue  # the gRPC client refuses text that is not UTF-8 before any request
        test = example(metadata=metadata, name="web")(test)
    for metadata in LONG_OPTION_NAMES:
        test = example(metadata=metadata, name="web")(test)
    return example(metadata=MANY_UNKNOWN, name="web")(test)


@settings(max_examples=150, deadline=None)
@given(
    metadata=st.one_of(
        st.builds(
            lambda base, more: base | more, FUZZ_BASES, st.dictionaries(KEYS, VALUES, max_size=6)
        ),
        st.builds(
            lambda base, more: base | more,
            FUZZ_BASES,
            st.dictionaries(NUMERIC_KEYS, NUMBERS, max_size=3),
        ),
        st.dictionaries(st.text(max_size=30), st.text(max_size=60), max_size=8),
    ),
    # Mostly names KEDA could send (each valid one goes on to the metadata), some not.
    name=st.one_of(
        st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,40}[a-z0-9])?", fullmatch=True),
        st.text(min_size=1, max_size=80),
    ),
)
@_explicit_wire
def test_every_rpc_answers_any_metadata_with_an_expected_status(
    live_stub: pb_grpc.ExternalScalerStub, metadata: dict[str, str], name: str
) -> None:
    """GetMetricSpec, GetMetrics, IsActive and StreamIsActive over real gRPC: an answer,
    INVALID_ARGUMENT or UNAVAILABLE with a short message, each within KEDA's 3 s, and
    the four agree on whether the metadata is valid."""
    ref = pb.ScaledObjectRef(name=name, namespace="fuzz", scalerMetadata=metadata)
    spec_code, spec = _outcome(lambda: live_stub.GetMetricSpec(ref, timeout=3))
    metrics_code, metrics = _outcome(
        lambda: live_stub.GetMetrics(
            pb.GetMetricsRequest(scaledObjectRef=ref, metricName=name), timeout=3
        )
    )
    active_code, _ = _outcome(lambda: live_stub.IsActive(ref, timeout=3))

    event(f"GetMetrics {metrics_code.name}")  # the mix: --hypothesis-show-statistics
    # Validity is decided from the metadata alone, the same way for every call.
    invalid = spec_code is grpc.StatusCode.INVALID_ARGUMENT
    assert (metrics_code is grpc.StatusCode.INVALID_ARGUMENT) == invalid
    assert (active_code is grpc.StatusCode.INVALID_ARGUMENT) == invalid
    assert spec_code is not grpc.StatusCode.UNAVAILABLE  # configuration only, no backend
    if spec_code is grpc.StatusCode.OK:
        assert isinstance(spec, pb.GetMetricSpecResponse) and len(spec.metricSpecs) == 1
    if metrics_code is grpc.StatusCode.OK:
        assert isinstance(metrics, pb.GetMetricsResponse)
        value = metrics.metricValues[0]
        # Without maxReplicas only the ScaledObject bounds it, but never past an int32.
        assert 0 <= value.metricValue <= MAX_SIGNAL_REPLICAS
        assert 0 <= value.metricValueFloat <= MAX_SIGNAL_REPLICAS

    stream = live_stub.StreamIsActive(ref, timeout=3)
    try:
        if invalid:
            with pytest.raises(grpc.RpcError) as info:
                next(stream)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        elif active_code is grpc.StatusCode.OK:
            assert isinstance(next(stream), pb.IsActiveResponse)  # the state, at once
        # UNAVAILABLE: the stream says nothing rather than something wrong.
    finally:
        stream.cancel()
