"""KEDA's own metadata tables, ported: a KEDA trigger pasted into tidescaler is
accepted or rejected as KEDA does, with tidescaler's message.

Sources (kedacore/keda, main branch, read through the code search; the files
could not be pinned to the v2.20 tag):
- pkg/scalers/cron_scaler_test.go: `testCronMetadata` (in the version after
  PR #6888, which made the value outside a window 0), `TestIsActive`,
  `TestIsActiveRange`, `TestGetMetrics`, `TestGetMetricsRange`.
- pkg/scalers/prometheus_scaler_test.go: `testPromMetadata` and the `authModes`
  cases of `testPrometheusAuthMetadata`; prometheus_scaler.go for the keys
  (`timeout` in whole milliseconds, negative rejected, 0 meaning the default;
  `awsRegion`); scalersconfig/typed_config.go for `k1=v1,k2=v2` lists and for
  an empty value counting as not set.

Ids name the upstream case (its comment in the Go table, or its index).
Not ported: `TestCronGetMetricSpecForScaling` and `prometheusMetricIdentifiers`
(names KEDA gives its own scalers' metrics; an external scaler's metric is named
by GetMetricSpec, here `metricName`), and `testPromQueryResult` (how a
Prometheus answer becomes a value: the Prometheus source's tests).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scaler.engine import Observations, decide
from scaler.policy import BackendOptions, PolicyError, parse_policy

ACCEPTED = None  # expected problems of a trigger KEDA accepts


def outcome(metadata: dict[str, str]) -> tuple[str, ...] | None:
    try:
        parse_policy(metadata)
    except PolicyError as err:
        return err.problems
    return ACCEPTED


# -- cron_scaler_test.go ------------------------------------------------------------

VALID_CRON = {
    "timezone": "Etc/UTC",
    "start": "0 0 * * Thu",
    "end": "59 23 * * Thu",
    "desiredReplicas": "10",
}
VALID_CRON_2 = {  # active in even hours
    "timezone": "Etc/UTC",
    "start": "0 */2 * * *",
    "end": "0 1-23/2 * * *",
    "desiredReplicas": "10",
}
KOLKATA = {"timezone": "Asia/Kolkata"}

CRON_TABLE = [
    pytest.param(
        {},
        (
            "no signal: set a cron window (timezone, start, end, desiredReplicas) or "
            "schedules, query with threshold, or cpuUtilization/memoryUtilization with "
            "podSelector",
        ),
        id="0-empty",
    ),
    pytest.param(VALID_CRON, ACCEPTED, id="1-validCronMetadata"),
    pytest.param(VALID_CRON_2, ACCEPTED, id="2-validCronMetadata2"),
    pytest.param(
        KOLKATA | {"start": "30 * * * *", "end": "45 * * * *"},
        ("desiredReplicas is required for a cron window (with timezone, start, end)",),
        id="3-no-desiredReplicas",
    ),
    pytest.param(
        {"start": "30 * * * *", "end": "45 * * * *", "desiredReplicas": "10"},
        ("timezone is required for a cron window (with timezone, start, end)",),
        id="4-no-timezone",
    ),
    pytest.param(
        KOLKATA | {"start": "30-33 * * * *", "end": "45 * * * *", "desiredReplicas": "10"},
        ACCEPTED,
        id="5-start-range",
    ),
    pytest.param(
        KOLKATA | {"start": "30 * * * *", "end": "45-50 * * * *", "desiredReplicas": "10"},
        ACCEPTED,
        id="6-end-range",
    ),
    pytest.param(
        KOLKATA | {"start": "-30 * * * *", "end": "45 * * * *", "desiredReplicas": "10"},
        (
            "start='-30 * * * *': expected a 5-field cron expression: '-30' is missing a "
            "number in minute field",
        ),
        id="7-start-negative-minute",
    ),
    pytest.param(
        KOLKATA | {"start": "30 * * * *", "end": "-50 * * * *", "desiredReplicas": "10"},
        (
            "end='-50 * * * *': expected a 5-field cron expression: '-50' is missing a "
            "number in minute field",
        ),
        id="8-end-negative-minute",
    ),
    pytest.param(
        KOLKATA | {"start": "30 * * * *", "end": "50 * * -3 *", "desiredReplicas": "10"},
        (
            "end='50 * * -3 *': expected a 5-field cron expression: '-3' is missing a "
            "number in month field",
        ),
        id="9-end-negative-month",
    ),
    pytest.param(
        KOLKATA | {"start": "30 * * * *", "end": "30 * * * *", "desiredReplicas": "10"},
        ("start and end must differ (both '30 * * * *')",),
        id="10-start-equals-end",
    ),
]


@pytest.mark.parametrize(("metadata", "expected"), CRON_TABLE)
def test_keda_cron_metadata_table(
    metadata: dict[str, str], expected: tuple[str, ...] | None
) -> None:
    assert outcome(metadata) == expected


def utc(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("metadata", "instant", "active", "value"),
    [
        # TestIsActive / TestGetMetrics: active on Thursdays, 10 inside, 0 outside.
        pytest.param(VALID_CRON, utc(2026, 11, 26, 12, 0), True, 10, id="TestGetMetrics-Thursday"),
        pytest.param(VALID_CRON, utc(2026, 11, 27, 12, 0), False, 0, id="TestGetMetrics-Friday"),
        # TestIsActiveRange / TestGetMetricsRange: active in even hours.
        pytest.param(
            VALID_CRON_2, utc(2026, 11, 30, 4, 30), True, 10, id="TestGetMetricsRange-even"
        ),
        pytest.param(
            VALID_CRON_2, utc(2026, 11, 30, 5, 30), False, 0, id="TestGetMetricsRange-odd"
        ),
    ],
)
def test_keda_cron_activity_and_value(
    metadata: dict[str, str], instant: float, active: bool, value: int
) -> None:
    """Since KEDA 2.18 (PR #6888) the value outside the window is 0, not 1."""
    decision = decide(parse_policy(metadata), Observations(), instant)
    assert (decision.active, decision.desired_replicas) == (active, value)


def test_schedules_is_tidescaler_only_and_accepted() -> None:
    """Intentional difference: several windows go in one `schedules` key (KEDA has none)."""
    policy = parse_policy(
        {
            "schedules": "- {start: 0 0 * * Thu, end: 59 23 * * Thu, timezone: Etc/UTC, "
            "desiredReplicas: 10}"
        }
    )
    assert policy.windows[0].desired_replicas == 10


# -- prometheus_scaler_test.go ------------------------------------------------------

PROM = {
    "serverAddress": "http://localhost:9090",
    "metricName": "http_requests_total",
    "threshold": "100",
    "query": "up",
}

PROMETHEUS_TABLE = [
    pytest.param(
        {},
        (
            "no signal: set a cron window (timezone, start, end, desiredReplicas) or "
            "schedules, query with threshold, or cpuUtilization/memoryUtilization with "
            "podSelector",
        ),
        id="0-empty",
    ),
    # `metricName` is accepted: KEDA ignores it, tidescaler names its MetricSpec with it.
    pytest.param(PROM, ACCEPTED, id="1-all-properly-formed"),
    pytest.param(
        {k: v for k, v in PROM.items() if k != "metricName"} | {"namespace": "foo"},
        ACCEPTED,
        id="2-with-namespace",
    ),
    pytest.param(PROM | {"ignoreNullValues": "false"}, ACCEPTED, id="3-with-ignoreNullValues"),
    pytest.param(PROM | {"activationThreshold": "50"}, ACCEPTED, id="4-with-activationThreshold"),
    pytest.param(
        PROM | {"serverAddress": ""},
        ("serverAddress='': expected an http:// or https:// URL",),
        id="5-missing-serverAddress",
    ),
    pytest.param(
        {k: v for k, v in PROM.items() if k != "threshold"},
        ("threshold is required with query",),
        id="6-missing-threshold",
    ),
    pytest.param(
        PROM | {"threshold": "one"},
        ("threshold='one': expected a number from 1e-9 to 1e15",),
        id="7-malformed-threshold",
    ),
    pytest.param(
        PROM | {"activationThreshold": "one"},
        ("activationThreshold='one': expected a number from 0 to 1e15",),
        id="8-malformed-activationThreshold",
    ),
    pytest.param(
        PROM | {"query": ""}, ("query='': expected a non-empty value",), id="9-missing-query"
    ),
    pytest.param(
        PROM | {"ignoreNullValues": "xxxx"},
        ("ignoreNullValues='xxxx': expected true or false",),
        id="10-ignoreNullValues-wrong-value",
    ),
    pytest.param(
        PROM | {"serverAddress": "https://localhost:9090", "unsafeSsl": "true"},
        ACCEPTED,
        id="11-unsafeSsl",
    ),
    pytest.param(
        PROM | {"customHeaders": "key1=value1,key2=value2"}, ACCEPTED, id="12-customHeaders"
    ),
    pytest.param(
        PROM | {"customHeaders": "key1=value1,key2"},
        (
            "customHeaders='key1=value1,key2': expected Name=value,Name=value: "
            "'key2' is not name=value",
        ),
        id="13-customHeaders-wrong-format",
    ),
    pytest.param(
        PROM | {"queryParameters": "key1=value1,key2=value2"}, ACCEPTED, id="14-queryParameters"
    ),
    pytest.param(
        PROM | {"queryParameters": "key1=value1,key2"},
        (
            "queryParameters='key1=value1,key2': expected name=value,name=value: "
            "'key2' is not name=value",
        ),
        id="15-queryParameters-wrong-format",
    ),
    pytest.param(PROM | {"timeout": "1000"}, ACCEPTED, id="16-valid-timeout"),
    pytest.param(
        PROM | {"timeout": "-1"},
        ("timeout='-1': expected whole milliseconds from 0 to 60000 (0: the server's default)",),
        id="17-negative-timeout",
    ),
    pytest.param(
        PROM | {"timeout": "a"},
        ("timeout='a': expected whole milliseconds from 0 to 60000 (0: the server's default)",),
        id="18-timeout-not-a-number",
    ),
]


@pytest.mark.parametrize(("metadata", "expected"), PROMETHEUS_TABLE)
def test_keda_prometheus_metadata_table(
    metadata: dict[str, str], expected: tuple[str, ...] | None
) -> None:
    assert outcome(metadata) == expected


AUTH_MODES_REFUSED = (
    "authModes is not supported by tidescaler: KEDA does not pass TriggerAuthentication "
    "secrets to an external scaler; point prometheusAddress at a Prometheus it can reach "
    "without credentials",
)


@pytest.mark.parametrize(
    "modes",
    [
        pytest.param("tls", id="success-TLS"),
        pytest.param("bearer", id="success-bearer-default"),
        pytest.param("basic", id="success-basicAuth"),
        pytest.param("tls, basic", id="tls-and-basic"),
        pytest.param("custom", id="success-custom-auth"),
    ],
)
def test_keda_auth_modes_are_refused_clearly(modes: str) -> None:
    """Intentional difference: KEDA accepts these with a TriggerAuthentication, whose
    secrets it never sends to an external scaler."""
    assert outcome(PROM | {"authModes": modes}) == AUTH_MODES_REFUSED


def test_keda_prometheus_keys_fill_the_backend_options() -> None:
    policy = parse_policy(
        PROM
        | {
            "namespace": "foo",
            "queryParameters": " key1 = value1 , key2=value2",
            "customHeaders": "X-Client-Id=cid,X-Tenant-Id=tid",
            "timeout": "1000",
            "unsafeSsl": "true",
        }
    )
    assert policy.prometheus_address == "http://localhost:9090"
    assert policy.backend == BackendOptions(
        namespace="foo",
        query_parameters=(("key1", "value1"), ("key2", "value2")),
        custom_headers=(("X-Client-Id", "cid"), ("X-Tenant-Id", "tid")),
        timeout_seconds=1.0,
        unsafe_ssl=True,
    )


@pytest.mark.parametrize(
    ("metadata", "backend"),
    [
        # typed_config.go: an empty (or blank) value counts as not set.
        pytest.param(
            {"namespace": " ", "queryParameters": "", "customHeaders": "", "timeout": ""},
            BackendOptions(),
            id="empty-means-not-set",
        ),
        # prometheus_scaler.go: only timeout > 0 replaces the default.
        pytest.param({"timeout": "0"}, BackendOptions(), id="timeout-0-is-the-default"),
        # strconv.ParseBool's short forms.
        pytest.param({"unsafeSsl": "t"}, BackendOptions(unsafe_ssl=True), id="parsebool-t"),
        pytest.param({"unsafeSsl": "F"}, BackendOptions(), id="parsebool-F"),
        # A value may be empty (KEDA sends an empty header).
        pytest.param(
            {"customHeaders": "X-Empty="},
            BackendOptions(custom_headers=(("X-Empty", ""),)),
            id="empty-header-value",
        ),
        # The namespace URL parameter, however it is written, is one parameter.
        pytest.param(
            {"queryParameters": "namespace=team-a,dedup=true"},
            BackendOptions(namespace="team-a", query_parameters=(("dedup", "true"),)),
            id="namespace-in-queryParameters",
        ),
        pytest.param(
            {"namespace": "team-a", "queryParameters": "namespace=team-a"},
            BackendOptions(namespace="team-a"),
            id="namespace-twice-alike",
        ),
    ],
)
def test_keda_value_forms(metadata: dict[str, str], backend: BackendOptions) -> None:
    assert parse_policy(PROM | metadata).backend == backend


def test_without_a_server_address_the_servers_prometheus_url_is_used() -> None:
    """Intentional difference: KEDA requires serverAddress; tidescaler falls back to
    the server's --prometheus-url (None here)."""
    policy = parse_policy({"query": "up", "threshold": "100"})
    assert policy.prometheus_address is None


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param(
            PROM | {"prometheusAddress": "http://localhost:9090/"},
            ACCEPTED,
            id="alias-both-same",
        ),
        pytest.param(
            PROM | {"prometheusAddress": "http://thanos:9090"},
            (
                "serverAddress and prometheusAddress are both set and differ; keep one "
                "(serverAddress is KEDA's name for prometheusAddress)",
            ),
            id="alias-both-different",
        ),
        pytest.param(
            PROM | {"awsRegion": "eu-west-1"},
            (
                "awsRegion is not supported by tidescaler: it does not sign requests for "
                "Amazon Managed Prometheus; point prometheusAddress at a Prometheus it can "
                "reach as is",
            ),
            id="awsRegion",
        ),
        pytest.param(
            PROM | {"identityOwner": "operator"},
            (
                "identityOwner is not supported by tidescaler: it has no AWS pod identity to "
                "use; point prometheusAddress at a Prometheus it can reach as is",
            ),
            id="identityOwner",
        ),
        # Stricter than KEDA, each for a reason given in the message.
        pytest.param(
            PROM | {"customHeaders": "a=1,a=2"},
            ("customHeaders='a=1,a=2': expected Name=value,Name=value: 'a' is given twice",),
            id="duplicate-name",
        ),
        pytest.param(
            PROM | {"customHeaders": "X-Scope-OrgID=a,x-scope-orgid=b"},
            (
                "customHeaders='X-Scope-OrgID=a,x-scope-orgid=b': 'x-scope-orgid' is given "
                "twice (header names ignore case)",
            ),
            id="duplicate-name-in-another-case",
        ),
        pytest.param(
            PROM | {"namespace": "team-a", "queryParameters": "namespace=team-b"},
            ("namespace and queryParameters' namespace are both set and differ; keep one",),
            id="namespace-twice-differing",
        ),
        pytest.param(
            PROM | {"queryParameters": "namespace=Team_B"},
            (
                "queryParameters namespace='Team_B': expected a Kubernetes namespace name "
                "(lower-case letters, digits, '-')",
            ),
            id="namespace-parameter-not-a-namespace",
        ),
        pytest.param(
            PROM | {"customHeaders": "=1"},
            ("customHeaders='=1': expected Name=value,Name=value: empty name in '=1'",),
            id="empty-name",
        ),
        pytest.param(
            PROM | {"customHeaders": "X Bad=1"},
            ("customHeaders='X Bad=1': 'X Bad' is not a valid HTTP header name",),
            id="header-name-not-a-token",
        ),
        pytest.param(
            PROM | {"customHeaders": "Host=evil"},
            ("customHeaders='Host=evil': 'Host' frames the request and cannot be set",),
            id="framing-header",
        ),
        pytest.param(
            PROM | {"queryParameters": "query=vector(1)"},
            (
                "queryParameters='query=vector(1)': 'query' is a parameter tidescaler sets "
                "itself (end, query, start, step, time, timeout)",
            ),
            id="query-parameter-named-query",
        ),
        pytest.param(  # refused where the metadata is read, so `validate` says so too
            PROM | {"queryParameters": "step=1m"},
            (
                "queryParameters='step=1m': 'step' is a parameter tidescaler sets "
                "itself (end, query, start, step, time, timeout)",
            ),
            id="query-parameter-named-step",
        ),
        pytest.param(
            PROM | {"namespace": "Foo_Bar"},
            (
                "namespace='Foo_Bar': expected a Kubernetes namespace name "
                "(lower-case letters, digits, '-')",
            ),
            id="namespace-not-a-namespace",
        ),
        pytest.param(
            PROM | {"timeout": "60001"},
            (
                "timeout='60001': expected whole milliseconds from 0 to 60000 "
                "(0: the server's default)",
            ),
            id="timeout-above-a-minute",
        ),
    ],
)
def test_keda_prometheus_keys_edges(
    metadata: dict[str, str], expected: tuple[str, ...] | None
) -> None:
    assert outcome(metadata) == expected


def test_server_address_from_env_is_resolved() -> None:
    policy = parse_policy(
        {"query": "up", "threshold": "1", "serverAddressFromEnv": "http://prom:9090"}
    )
    assert policy.prometheus_address == "http://prom:9090"


def test_negative_desired_replicas_is_refused() -> None:
    """Intentional difference: KEDA's Validate only refuses 0, so it takes "-5" (and
    then reports -5 inside the window); a negative replica count means nothing."""
    assert outcome(VALID_CRON | {"desiredReplicas": "-5"}) == (
        "desiredReplicas='-5': expected a whole number from 1 to 100000",
    )
