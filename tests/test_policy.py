"""The trigger metadata parser: every key's rule and message."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from dataclasses import fields, replace

import pytest

from scaler.policy import (
    BackendOptions,
    ForecastMode,
    PolicyError,
    cached_policy,
    canonical_url,
    parse_policy,
)

QUERY = {"query": "sum(rate(http_requests_total[1m]))", "threshold": "100"}
CRON = {
    "timezone": "Europe/Berlin",
    "start": "0 8 * * *",
    "end": "0 20 * * *",
    "desiredReplicas": "5",
}


def problems(metadata: dict[str, str]) -> tuple[str, ...]:
    with pytest.raises(PolicyError) as info:
        parse_policy(metadata)
    return info.value.problems


def test_query_policy_with_defaults() -> None:
    policy = parse_policy(QUERY)
    assert policy.query is not None
    assert policy.query.threshold == 100.0
    assert policy.query.activation_threshold == 0.0
    assert policy.query.ignore_null_values is True
    assert policy.min_replicas == 0 and policy.max_replicas is None
    assert policy.metric_name == "tidescaler"
    assert policy.forecast.mode is ForecastMode.OFF
    assert policy.forecast.pod_startup_seconds == 60.0
    assert policy.forecast.quantile == 0.95
    assert policy.forecast.history_seconds == 7 * 86400


def test_keda_cron_metadata_is_accepted_unchanged() -> None:
    policy = parse_policy(CRON | {"scalerAddress": "tidescaler:9090", "enableTLS": "false"})
    assert len(policy.windows) == 1
    assert policy.windows[0].desired_replicas == 5
    assert policy.windows[0].max_replicas is None


def test_keda_external_trigger_tls_keys_are_accepted_and_ignored() -> None:
    """KEDA's external trigger takes its TLS settings for the connection to the scaler
    from the same metadata map (a PEM chain runs to kilobytes) and passes them along."""
    pem = "-----BEGIN CERTIFICATE-----\n" + "A" * 64 * 120 + "\n-----END CERTIFICATE-----\n"
    keda = {
        "scalerAddress": "tidescaler:9090",
        "caCert": pem,
        "tlsClientCert": pem,
        "tlsClientKey": pem.replace("CERTIFICATE", "PRIVATE KEY"),
        "tlsCertFile": "/etc/tls/cert.pem",
    }
    policy, plain = parse_policy(CRON | keda), parse_policy(CRON)
    for part in fields(policy):  # windows compare by identity: each parse makes its own
        if part.name != "windows":
            assert getattr(policy, part.name) == getattr(plain, part.name), part.name
    assert [repr(w) for w in policy.windows] == [repr(w) for w in plain.windows]
    too_long = r"caCert: the value is too long \(20000 bytes, at most 16384\)"
    with pytest.raises(PolicyError, match=too_long):
        parse_policy(CRON | keda | {"caCert": "A" * 20_000})


def test_full_tidal_policy() -> None:
    policy = parse_policy(
        QUERY
        | {
            "schedules": '[{"start": "0 8 * * 1-5", "end": "0 18 * * 1-5", "timezone": "UTC",'
            ' "desiredReplicas": 4}, {"start": "0 0 * * *", "end": "0 6 * * *",'
            ' "timezone": "UTC", "maxReplicas": 3}]',
            "forecast": "on",
            "forecastHistory": "14d",
            "podStartupSeconds": "90s",
            "forecastQuantile": "0.9",
            "minReplicas": "1",
            "maxReplicas": "50",
            "activationThreshold": "5",
            "ignoreNullValues": "false",
            "prometheusAddress": "http://prometheus:9090/",
        }
    )
    assert [(w.desired_replicas, w.max_replicas) for w in policy.windows] == [(4, None), (None, 3)]
    assert policy.forecast.mode is ForecastMode.ON
    assert policy.forecast.history_seconds == 14 * 86400
    assert policy.forecast.pod_startup_seconds == 90
    assert policy.forecast_query == QUERY["query"]
    assert policy.prometheus_address == "http://prometheus:9090"
    assert policy.query is not None and policy.query.ignore_null_values is False


@pytest.mark.parametrize(
    ("metadata", "lag"),
    [
        # auto: a 30 s scrape interval plus half the longest range selector.
        pytest.param({"query": "sum(rate(x[1m]))"}, 60.0, id="rate-1m"),
        pytest.param({"query": "sum(rate(x[5m])) / sum(rate(y[1m30s]))"}, 180.0, id="longest"),
        pytest.param({"query": "max_over_time(rate(x[2m])[10m:1m])"}, 330.0, id="subquery"),
        pytest.param({"query": "sum(queue_depth)"}, 30.0, id="gauge"),
        pytest.param(
            {"query": "sum(queue_depth)", "forecastQuery": "sum(rate(x[4m]))"},
            150.0,
            id="the-series-learned",
        ),
        pytest.param({"query": "sum(rate(x[1m]))", "metricLagSeconds": "45s"}, 45.0, id="given"),
        pytest.param({"query": "sum(rate(x[1m]))", "metricLagSeconds": "0"}, 0.0, id="none"),
        pytest.param({"query": "sum(rate(x[30d]))"}, 3600.0, id="at-most-1h"),
    ],
)
def test_metric_lag_is_given_or_read_from_the_query(metadata: dict[str, str], lag: float) -> None:
    policy = parse_policy(metadata | {"threshold": "10", "forecast": "on"})
    assert policy.forecast.metric_lag_seconds == lag


@pytest.mark.parametrize("value", ["-5s", "2h", "soon", "1e400"])
def test_a_bad_metric_lag_names_the_key_and_what_is_expected(value: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(QUERY | {"metricLagSeconds": value})
    assert f"metricLagSeconds={value!r}: expected a duration such as 90s" in str(err.value)
    assert "at most 1h, or auto" in str(err.value)


def test_schedules_accept_yaml() -> None:
    policy = parse_policy(
        {
            "schedules": "- start: 0 8 * * *\n  end: 0 9 * * *\n"
            "  timezone: UTC\n  desiredReplicas: 2\n"
        }
    )
    assert policy.windows[0].desired_replicas == 2


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param(
            QUERY | {"treshold": "5"},
            "unknown key 'treshold' (did you mean threshold?)",
            id="typo-did-you-mean",
        ),
        pytest.param(
            QUERY | {"podstartupseconds": "5"},
            "unknown key 'podstartupseconds' (did you mean podStartupSeconds?)",
            id="wrong-case",
        ),
        pytest.param(QUERY | {"colour": "red"}, "unknown key 'colour'", id="unknown-no-hint"),
        pytest.param({"query": "up"}, "threshold is required with query", id="threshold-required"),
        pytest.param(
            QUERY | {"threshold": "-3"},
            "threshold='-3': expected a number from 1e-9 to 1e15",
            id="threshold-negative",
        ),
        pytest.param(
            QUERY | {"threshold": "0"},
            "threshold='0': expected a number from 1e-9 to 1e15",
            id="threshold-zero",
        ),
        pytest.param(
            QUERY | {"activationThreshold": "lots"},
            "activationThreshold='lots': expected a number from 0 to 1e15",
            id="activation-not-number",
        ),
        pytest.param(
            QUERY | {"ignoreNullValues": "maybe"},
            "ignoreNullValues='maybe': expected true or false",
            id="bool",
        ),
        pytest.param(
            QUERY | {"forecast": "auto"},
            "forecast='auto': expected one of off, observe, on",
            id="mode",
        ),
        pytest.param(
            QUERY | {"forecastQuantile": "95"},
            "forecastQuantile='95': expected a quantile from 0.5 to 0.995, e.g. 0.95",
            id="quantile-percent",
        ),
        pytest.param(
            # A band at 0.999 would rest on one or two backtest errors at each horizon.
            QUERY | {"forecastQuantile": "0.999"},
            "forecastQuantile='0.999': expected a quantile from 0.5 to 0.995, e.g. 0.95 (the "
            "band is calibrated on at most 1,000 backtest errors",
            id="quantile-beyond-its-errors",
        ),
        pytest.param(
            QUERY | {"forecastHistory": "a week"},
            "forecastHistory='a week': expected a duration such as 90s, 15m, 7d"
            " (more than 0, at most 90d)",
            id="history-duration",
        ),
        pytest.param(
            QUERY | {"minReplicas": "4", "maxReplicas": "2"},
            "minReplicas=4 is above maxReplicas=2",
            id="min-above-max",
        ),
        pytest.param(
            QUERY | {"maxReplicas": "2.5"},
            "maxReplicas='2.5': expected a whole number from 1 to 100000",
            id="max-not-int",
        ),
        pytest.param(
            QUERY | {"prometheusAddress": "prometheus:9090"},
            "prometheusAddress='prometheus:9090': expected an http:// or https:// URL",
            id="address-scheme",
        ),
        pytest.param(
            QUERY | {"prometheusAddress": "http://"},
            "prometheusAddress='http://': expected an http:// or https:// URL",
            id="address-without-host",
        ),
        pytest.param({}, "no signal: set a cron window", id="no-signal"),
        pytest.param({"threshold": "5"}, "threshold is set but query is not", id="threshold-alone"),
        pytest.param(
            {"cpuUtilization": "70"},
            "podSelector is required with cpuUtilization or memoryUtilization",
            id="cpu-needs-selector",
        ),
        pytest.param(
            {"cpuUtilization": "seventy", "podSelector": 'namespace="a"'},
            "cpuUtilization='seventy': expected a percentage > 0, e.g. 70",
            id="cpu-not-number",
        ),
        pytest.param(
            {"forecast": "on", "cpuUtilization": "70", "podSelector": 'namespace="a"'},
            "forecast=on needs query and threshold",
            id="forecast-needs-query",
        ),
        pytest.param(
            CRON | {"timezone": "Mars/Olympus"},
            "timezone='Mars/Olympus': expected an IANA time zone such as Europe/Berlin or UTC",
            id="bad-zone",
        ),
        pytest.param(
            CRON | {"desiredReplicas": "0"},
            "desiredReplicas='0': expected a whole number from 1 to 100000",
            id="keda-desired-nonzero",
        ),
        pytest.param(
            {k: v for k, v in CRON.items() if k != "timezone"},
            "timezone is required for a cron window",
            id="cron-needs-zone",
        ),
        pytest.param(
            CRON | {"end": "0 8 * * *"}, "start and end must differ", id="start-equals-end"
        ),
        pytest.param(
            CRON | {"start": "0 25 * * *"}, "start='0 25 * * *': expected a 5-field cron", id="cron"
        ),
        pytest.param(
            {"schedules": "[{start: 0 1 * * *, end: 0 2 * * *, timezone: UTC}]"},
            "schedules[0].needs desiredReplicas and/or maxReplicas",
            id="schedule-needs-a-bound",
        ),
        pytest.param(
            {
                "schedules": '[{"start": "0 1 * * *", "end": "0 2 * * *", "timezone": "UTC",'
                ' "desiredReplica": 3}]'
            },
            "schedules[0].desiredReplica: unknown key (did you mean desiredReplicas?)",
            id="schedule-key-typo",
        ),
        pytest.param(
            {"schedules": "{}"}, "schedules: expected a non-empty list", id="schedules-dict"
        ),
        pytest.param(
            QUERY
            | {
                "schedules": '[{"start": "0 1 * * *", "end": "0 2 * * *", "timezone": "UTC",'
                ' "maxReplicas": 1}]',
                "minReplicas": "2",
            },
            "schedules[0]: maxReplicas=1 is below minReplicas=2",
            id="window-ceiling-below-min",
        ),
        pytest.param(
            QUERY | {"thresholdFromEnv": "7"},
            "thresholdFromEnv and threshold are both set; keep one",
            id="from-env-twice",
        ),
    ],
)
def test_invalid_metadata_names_key_value_and_expectation(
    metadata: dict[str, str], expected: str
) -> None:
    found = problems(metadata)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize("quantile", ["0.5", "0.995"])
def test_forecast_quantile_takes_both_its_bounds(quantile: str) -> None:
    policy = parse_policy(QUERY | {"forecast": "on", "forecastQuantile": quantile})
    assert policy.forecast.quantile == float(quantile)


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"query": "up", "threshold": "x", "minReplicas": "-1", "forcast": "on"})
    assert len(found) == 3, found
    assert any("forcast" in p and "did you mean forecast?" in p for p in found)
    assert any(p.startswith("threshold='x'") for p in found)
    assert any(p.startswith("minReplicas='-1'") for p in found)


def test_from_env_keys_resolved_by_keda_are_used() -> None:
    policy = parse_policy({"query": "up", "thresholdFromEnv": "12"})
    assert policy.query is not None and policy.query.threshold == 12


def test_resource_only_policy() -> None:
    policy = parse_policy({"cpuUtilization": "70", "podSelector": 'namespace="shop",pod=~"web-.*"'})
    assert policy.resources is not None
    assert policy.resources.cpu_utilization_percent == 70
    assert policy.resource_only


def test_pod_selector_cannot_inject_promql() -> None:
    found = problems({"cpuUtilization": "70", "podSelector": 'pod="a"}) or vector(1'})
    assert any(p.startswith("podSelector=") for p in found), found


def test_parsing_is_cached_per_distinct_metadata() -> None:
    first = cached_policy(dict(QUERY))
    assert cached_policy(dict(QUERY)) is first
    assert cached_policy(QUERY | {"minReplicas": "1"}) is not first


def test_cached_errors_raise_every_time() -> None:
    for _ in range(2):
        with pytest.raises(PolicyError):
            cached_policy({"query": "up"})


def test_backend_options_hash_by_value_and_survive_pickling() -> None:
    # They key the allow-list verdicts and the shared Prometheus answers: equal options
    # must find one entry, also after a trip to another process (string hashes differ).
    a = BackendOptions(namespace="team-a", custom_headers=(("X-Scope-OrgID", "a"),))
    b = BackendOptions(namespace="team-a", custom_headers=(("X-Scope-OrgID", "a"),))
    table = {a: "verdict"}
    assert b == a and table[b] == "verdict"
    assert BackendOptions(namespace="team-b") not in table
    made_elsewhere = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pickle, sys; from scaler.policy import BackendOptions; "
            "sys.stdout.buffer.write(pickle.dumps(BackendOptions(namespace='team-a', "
            "custom_headers=(('X-Scope-OrgID', 'a'),))))",
        ],
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    ).stdout
    copied = pickle.loads(made_elsewhere)
    assert copied == a and table[copied] == "verdict"
    assert replace(a, unsafe_ssl=True) not in table
    assert hash(replace(a, unsafe_ssl=True)) == hash(
        BackendOptions(
            namespace="team-a", custom_headers=(("X-Scope-OrgID", "a"),), unsafe_ssl=True
        )
    )


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://Prom.Example:9090/", "https://prom.example:9090"),
        ("http://Alice:PW@Prom:9090/Api", "http://Alice:PW@prom:9090/Api"),
        ("http://Host?Tenant=A", "http://host?Tenant=A"),
        ("http://Host#Frag", "http://host#Frag"),
        (" http://[::1]:9090/ ", "http://[::1]:9090"),
    ],
)
def test_urls_compare_with_scheme_and_host_in_lower_case_and_the_rest_as_written(
    url: str, canonical: str
) -> None:
    assert canonical_url(url) == canonical


def test_whole_numbers_with_leading_zeros_read_as_kedas_atoi_reads_them() -> None:
    """Go's strconv.Atoi (KEDA) reads "0000000000005" as 5; only the significant digits
    count towards the length bound."""
    window = {"timezone": "UTC", "start": "0 8 * * *", "end": "0 9 * * *"}
    for written in ("5", "05", "0000000000005", "0" * 3000 + "5", "+005"):
        policy = parse_policy(window | {"desiredReplicas": written})
        assert policy.windows[0].desired_replicas == 5, written
    # Past CPython's 4,300-digit limit of int() too: a schedules value may be 16 KiB.
    padded = window | {"desiredReplicas": "0" * 6000 + "5"}
    policy = parse_policy({"schedules": json.dumps([padded])})
    assert policy.windows[0].desired_replicas == 5
    for written in ("1" + "0" * 12, "0" * 5 + "9" * 13):
        with pytest.raises(PolicyError, match="expected a whole number from 1 to 100000"):
            parse_policy(window | {"desiredReplicas": written})


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({"serverAddress": "http://prom:9090"}, "serverAddress"),
        ({"prometheusAddress": "http://prom:9090"}, "prometheusAddress"),
        # Both, and equal (allowed): ours is read first.
        (
            {"serverAddress": "http://prom:9090", "prometheusAddress": "http://prom:9090"},
            "prometheusAddress",
        ),
    ],
    ids=["keda", "ours", "both"],
)
def test_the_policy_keeps_the_key_its_address_came_under(
    metadata: dict[str, str], key: str
) -> None:
    # Messages about the address name the key the user wrote.
    policy = parse_policy({"query": "up", "threshold": "1"} | metadata)
    assert (policy.prometheus_address, policy.prometheus_address_key) == ("http://prom:9090", key)


@pytest.mark.parametrize("address", ["http://a", "HTTP://A/", "https://a", "http://a:9090"])
def test_a_one_letter_host_is_an_address(address: str) -> None:
    """A Service may be called `a`: `http://a` was refused for being as short as
    `https://`, while `https://a` was not."""
    policy = parse_policy({"query": "up", "threshold": "1", "serverAddress": address})
    assert policy.prometheus_address is not None
    assert policy.prometheus_address.lower().startswith(("http://a", "https://a"))
