"""Cron windows: parser errors, robfig's Next() on named cases, KEDA's activity rule,
and the per-window cache. Expected instants were checked against robfig/cron v3
(tests/test_schedule_parity.py asks the library itself, for these and random cases)."""

# Table rows read best one case per line.
# ruff: noqa: E501

from __future__ import annotations

import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.schedule import (
    ZERO_TIME,
    CronError,
    CronSchedule,
    CronWindow,
    keda_cron_active,
)

FIELDS = "(minute hour day-of-month month day-of-week)"


def at(iso: str) -> float:
    """Unix seconds of an ISO 8601 instant with its UTC offset."""
    return datetime.fromisoformat(iso).timestamp()


# --- Parser ---------------------------------------------------------------------

INVALID = [
    ("empty", "", f"empty expression; expected 5 fields {FIELDS}"),
    ("blank", "   ", f"expected exactly 5 fields {FIELDS}, got 0"),
    ("four-fields", "0 6 * *", f"expected exactly 5 fields {FIELDS}, got 4"),
    ("seconds-field", "0 0 6 * * *", f"expected exactly 5 fields {FIELDS}, got 6"),
    (
        "descriptor",
        "@daily",
        f"'@daily' is a descriptor, which KEDA does not accept; write 5 fields {FIELDS}",
    ),
    ("minute-61", "61 * * * *", "value 61 out of range 0-59 in minute field"),
    ("hour-24", "0 24 * * *", "value 24 out of range 0-23 in hour field"),
    ("day-of-month-0", "0 0 0 * *", "value 0 out of range 1-31 in day-of-month field"),
    ("month-13", "0 0 1 13 *", "value 13 out of range 1-12 (JAN-DEC) in month field"),
    (
        "day-of-week-7",
        "0 0 * * 7",
        "value 7 out of range 0-6 (SUN-SAT; Sunday is 0, 7 is not accepted) in day-of-week field",
    ),
    ("range-end-out-of-range", "50-61 * * * *", "value 61 out of range 0-59 in minute field"),
    ("start-step-out-of-range", "61/5 * * * *", "value 61 out of range 0-59 in minute field"),
    ("reversed-range", "0 22-2 * * *", "range '22-2' starts after it ends in hour field"),
    (
        "reversed-names",
        "0 0 * * fri-mon",
        "range 'fri-mon' starts after it ends in day-of-week field",
    ),
    ("step-zero", "*/0 * * * *", "step '0' in '*/0' is not a positive number in minute field"),
    (
        "step-negative",
        "0/-5 * * * *",
        "step '-5' in '0/-5' is not a positive number in minute field",
    ),
    (
        "step-name",
        "0 0 * jan/feb *",
        "step 'feb' in 'jan/feb' is not a positive number in month field",
    ),
    ("two-slashes", "*/2/3 * * * *", "'*/2/3' has more than one '/' in minute field"),
    ("two-hyphens", "1-2-3 * * * *", "'1-2-3' has more than one '-' in minute field"),
    ("missing-range-start", "-5 * * * *", "'-5' is missing a number in minute field"),
    ("name-in-minute", "jan * * * *", "'jan' is not a number in minute field"),
    (
        "long-month-name",
        "0 0 * January *",
        "'January' is not a number or a name (JAN-DEC) in month field",
    ),
    (
        "bad-range-end",
        "0 0 * * mon-x",
        "'x' in 'mon-x' is not a number or a name (SUN-SAT; Sunday is 0, 7 is not accepted)"
        " in day-of-week field",
    ),
    ("last-day-L", "0 0 L * *", "'L' is not a number in day-of-month field"),
    ("unknown-tz-prefix", "TZ=Mars/Base 0 0 * * *", "unknown time zone 'Mars/Base' in TZ= prefix"),
    ("tz-prefix-directory", "TZ=America 0 0 * * *", "unknown time zone 'America' in TZ= prefix"),
    (
        "tz-prefix-alone",
        "TZ=UTC",
        "'TZ=UTC': a TZ= prefix must be followed by a space and 5 fields",
    ),
]


@pytest.mark.parametrize(
    ("expression", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_expression_is_rejected_with_exact_message(expression: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        CronSchedule.parse(expression)
    assert str(caught.value) == message


# Forms robfig accepts although they look wrong; KEDA accepts them, so must we.
ACCEPTED_ODDITIES = [
    ("leading-comma", ",5 * * * *"),
    ("empty-list-item", "1,,2 * * * *"),
    ("plus-sign", "+5 * * * *"),
    ("leading-zero", "05 09 * * *"),
    # strconv.Atoi reads any number of leading zeros; the 20-character bound of a value
    # is for its digits after them.
    ("many-leading-zeros", "000000000000000000000005 8 * * *"),
    ("step-with-many-leading-zeros", "0/0000000000000000000000015 * * * *"),
    ("star-range-ignored", "*-3 * * * *"),
    ("step-beyond-field", "*/61 * * * *"),
    ("mixed-case-names", "0 0 * jAn-MaR sUn,SAT"),
    ("question-marks", "0 0 ? * ?"),
    ("tabs-between-fields", "0\t6 *  * \t*"),
    ("cron-tz-prefix", "CRON_TZ=Asia/Tokyo 0 9 * * *"),
]


@pytest.mark.parametrize(
    "expression", [c[1] for c in ACCEPTED_ODDITIES], ids=[c[0] for c in ACCEPTED_ODDITIES]
)
def test_robfig_oddities_are_accepted(expression: str) -> None:
    assert CronSchedule.parse(expression).expression == expression


def test_parse_and_constructor_agree() -> None:
    assert CronSchedule.parse("0 6 * * *") == CronSchedule("0 6 * * *")
    with pytest.raises(CronError):
        CronSchedule("0 6 * *")


# --- Next() -----------------------------------------------------------------------

NEXT = [
    # id, expression, zone, after, expected next firing
    ("daily", "30 6 * * *", "Europe/Berlin", "2024-05-01T07:00:00+02:00", "2024-05-02T06:30:00+02:00"),
    ("same-minute-is-not-next", "30 6 * * *", "UTC", "2024-05-01T06:30:00+00:00", "2024-05-02T06:30:00+00:00"),
    ("fraction-of-second-before", "30 6 * * *", "UTC", "2024-05-01T06:29:59.999+00:00", "2024-05-01T06:30:00+00:00"),
    ("weekdays-skip-weekend", "0 9 * * 1-5", "Europe/Berlin", "2024-05-03T10:00:00+02:00", "2024-05-06T09:00:00+02:00"),
    ("berlin-spring-forward-skips-the-day", "30 2 * * *", "Europe/Berlin", "2024-03-30T03:00:00+01:00", "2024-04-01T02:30:00+02:00"),
    ("new-york-spring-forward-skips-the-day", "30 2 * * *", "America/New_York", "2024-03-09T12:00:00-05:00", "2024-03-11T02:30:00-04:00"),
    ("berlin-fall-back-first-occurrence", "30 2 * * *", "Europe/Berlin", "2024-10-27T01:00:00+02:00", "2024-10-27T02:30:00+02:00"),
    ("berlin-fall-back-fires-again-in-repeated-hour", "30 2 * * *", "Europe/Berlin", "2024-10-27T02:30:00+02:00", "2024-10-27T02:30:00+01:00"),
    ("new-york-fall-back-first-occurrence", "30 1 * * *", "America/New_York", "2024-11-03T00:00:00-04:00", "2024-11-03T01:30:00-04:00"),
    ("new-york-fall-back-fires-again", "30 1 * * *", "America/New_York", "2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00"),
    ("lord-howe-half-hour-gap-keeps-2-45", "45 2 * * *", "Australia/Lord_Howe", "2024-10-06T00:30:00+10:30", "2024-10-06T02:45:00+11:00"),
    ("lord-howe-half-hour-gap-skips-2-15", "15 2 * * *", "Australia/Lord_Howe", "2024-10-06T00:30:00+10:30", "2024-10-07T02:15:00+11:00"),
    ("santiago-missing-midnight-skipped", "0 0 * * *", "America/Santiago", "2024-09-07T12:00:00-04:00", "2024-09-09T00:00:00-03:00"),
    # robfig steps back from 01:00 to 23:00 of the day before and then over the day.
    ("cairo-dst-day-is-skipped", "0 12 * * 5", "Africa/Cairo", "2024-04-25T12:00:00+02:00", "2024-05-03T12:00:00+03:00"),
    ("dom-and-dow-match-either", "0 0 13 * 5", "UTC", "2024-09-01T00:00:00+00:00", "2024-09-06T00:00:00+00:00"),
    ("step-2-is-not-a-star", "0 0 */2 * 1", "UTC", "2024-05-05T12:00:00+00:00", "2024-05-06T00:00:00+00:00"),
    ("step-1-is-a-star", "0 0 */1 * 1", "UTC", "2024-05-07T12:00:00+00:00", "2024-05-13T00:00:00+00:00"),
    ("question-mark-is-a-star", "0 0 ? * 1", "UTC", "2024-05-07T12:00:00+00:00", "2024-05-13T00:00:00+00:00"),
    ("n-slash-step-runs-to-max", "5/20 * * * *", "UTC", "2024-05-07T10:26:00+00:00", "2024-05-07T10:45:00+00:00"),
    ("month-and-weekday-names", "0 8 * jan-Mar Mon", "Europe/Berlin", "2024-03-30T00:00:00+01:00", "2025-01-06T08:00:00+01:00"),
    ("leap-day", "0 12 29 2 *", "UTC", "2024-03-01T00:00:00+00:00", "2028-02-29T12:00:00+00:00"),
    ("fixed-offset-zone", "0 9 * * *", "Asia/Kolkata", "2024-05-01T10:00:00+05:30", "2024-05-02T09:00:00+05:30"),
    ("tz-prefix-overrides-zone", "TZ=America/New_York 0 9 * * *", "Europe/Berlin", "2024-05-01T00:00:00+02:00", "2024-05-01T09:00:00-04:00"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [c[1:] for c in NEXT],
    ids=[c[0] for c in NEXT],
)
def test_next_after(expression: str, zone: str, after: str, expected: str) -> None:
    got = CronSchedule.parse(expression).next_after(at(after), ZoneInfo(zone))
    assert got == at(expected)


@pytest.mark.parametrize(
    "expression",
    ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 , * *"],
    ids=["february-30", "31st-of-short-months", "empty-field"],
)
def test_schedule_matching_nothing_returns_zero_time(expression: str) -> None:
    schedule = CronSchedule.parse(expression)
    assert schedule.next_after(at("2024-05-01T00:00:00+00:00"), ZoneInfo("UTC")) == ZERO_TIME


# --- KEDA's activity rule ---------------------------------------------------------

WINDOWS = [
    # id, start, end, zone, now, active
    ("inside-day-window", "0 9 * * *", "0 17 * * *", "Europe/Berlin", "2024-05-02T12:00:00+02:00", True),
    ("before-day-window", "0 9 * * *", "0 17 * * *", "Europe/Berlin", "2024-05-02T08:59:59+02:00", False),
    ("at-start-is-active", "0 9 * * *", "0 17 * * *", "Europe/Berlin", "2024-05-02T09:00:00+02:00", True),
    ("just-before-end-is-active", "0 9 * * *", "0 17 * * *", "Europe/Berlin", "2024-05-02T16:59:59.5+02:00", True),
    ("at-end-is-inactive", "0 9 * * *", "0 17 * * *", "Europe/Berlin", "2024-05-02T17:00:00+02:00", False),
    ("across-midnight-evening", "0 22 * * *", "0 6 * * *", "Europe/Berlin", "2024-05-02T23:30:00+02:00", True),
    ("across-midnight-night", "0 22 * * *", "0 6 * * *", "Europe/Berlin", "2024-05-03T03:00:00+02:00", True),
    ("across-midnight-noon", "0 22 * * *", "0 6 * * *", "Europe/Berlin", "2024-05-03T12:00:00+02:00", False),
    ("weekday-window-friday", "0 9 * * 1-5", "0 17 * * 1-5", "America/New_York", "2024-05-03T12:00:00-04:00", True),
    ("weekday-window-saturday", "0 9 * * 1-5", "0 17 * * 1-5", "America/New_York", "2024-05-04T12:00:00-04:00", False),
    # KEDA issue 4677: a weekday start with a daily end stays active over the weekend.
    ("weekday-start-daily-end-saturday", "30 6 * * 1-5", "10 22 * * *", "Europe/Prague", "2024-05-04T12:00:00+02:00", True),
    ("start-missing-on-spring-forward", "30 2 * * *", "30 3 * * *", "Europe/Berlin", "2024-03-31T03:15:00+02:00", True),
    # The zero time (nothing within five years) under KEDA's two branches (cron_scaler.go:
    # if next start before next end, after start and before end; else after start or
    # before end): a start that never fires is before any end, so the window is active
    # until the end and after; an end that never fires leaves it inactive.
    ("start-never-fires", "0 0 30 2 *", "0 6 * * *", "UTC", "2024-05-02T12:00:00+00:00", True),
    ("end-never-fires", "0 6 * * *", "0 0 30 2 *", "UTC", "2024-05-02T12:00:00+00:00", False),
    ("neither-fires", "0 0 30 2 *", "0 0 31 2 *", "UTC", "2024-05-02T12:00:00+00:00", True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("start", "end", "zone", "now", "active"),
    [c[1:] for c in WINDOWS],
    ids=[c[0] for c in WINDOWS],
)
def test_window_activity_follows_keda(
    start: str, end: str, zone: str, now: str, active: bool
) -> None:
    window = CronWindow(CronSchedule.parse(start), CronSchedule.parse(end), ZoneInfo(zone), 5)
    assert window.is_active(at(now)) is active
    assert keda_cron_active(window.start, window.end, window.zone, at(now)) is active


# --- The cache --------------------------------------------------------------------

CACHE_ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Africa/Cairo",
    "America/Havana",
]
CACHE_SPECS = [
    "0 9 * * *",
    "0 17 * * *",
    "30 2 * * *",
    "0 0 * * *",
    "0 22 * * *",
    "0 6 * * 1-5",
    "0 12 * * 5",
    "*/20 * * * *",
    "30 1 * * 0,6",
    "0 0 1 * *",
    "0 0 30 2 *",
    "45 23 * * *",
]
# Around daylight-saving changes, where robfig's search is least regular.
CACHE_STARTS = [
    "2024-03-31T00:00:00+01:00",  # Berlin spring forward
    "2024-10-26T12:00:00+02:00",  # Berlin fall back
    "2024-11-02T12:00:00-04:00",  # New York fall back
    "2024-09-07T12:00:00-04:00",  # Santiago, midnight skipped
    "2024-04-25T00:00:00+02:00",  # Cairo, midnight skipped
    "2024-10-05T12:00:00+10:30",  # Lord Howe, 30-minute change
    "2024-12-31T12:00:00+00:00",  # new year
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.sampled_from(CACHE_SPECS),
    end=st.sampled_from(CACHE_SPECS),
    zone=st.sampled_from(CACHE_ZONES),
    origin=st.sampled_from(CACHE_STARTS),
    moves=st.lists(
        st.one_of(
            st.floats(0, 3 * 3600),  # forward a little
            st.floats(-1.5, 1.5),  # around the previous instant
            st.sampled_from(["edge"]),  # onto the next instant the answer may change
            st.floats(-2 * 86400, 0),  # back in time
        ),
        min_size=20,
        max_size=60,
    ),
)
def test_cached_answer_equals_fresh_computation(
    start: str, end: str, zone: str, origin: str, moves: list[float | str]
) -> None:
    window = CronWindow(CronSchedule.parse(start), CronSchedule.parse(end), ZoneInfo(zone), 3)
    now = at(origin)
    for move in moves:
        if move == "edge":
            now = window.next_transition(now) - 0.5
        else:
            assert isinstance(move, float)
            now += move
        expected = keda_cron_active(window.start, window.end, window.zone, now)
        assert window.is_active(now) is expected, (now, move)
        assert window.is_active(now) is expected  # and again, from the cache


def test_cache_survives_a_dense_day_across_a_dst_change() -> None:
    window = CronWindow(
        CronSchedule.parse("30 2 * * *"),
        CronSchedule.parse("0 3 * * *"),
        ZoneInfo("Europe/Berlin"),
        2,
    )
    start = at("2024-03-30T20:00:00+01:00")
    for step in range(0, 16 * 3600, 97):
        now = start + step
        assert window.is_active(now) is keda_cron_active(window.start, window.end, window.zone, now)


def test_next_transition_is_after_now_and_answer_holds_until_then() -> None:
    window = CronWindow(
        CronSchedule.parse("0 9 * * 1-5"), CronSchedule.parse("0 17 * * 1-5"), ZoneInfo("UTC"), 4
    )
    now = at("2024-05-03T12:00:00+00:00")
    assert window.next_transition(now) == at("2024-05-03T17:00:00+00:00")
    assert window.is_active(at("2024-05-03T16:59:59.9+00:00"))
    assert not window.is_active(at("2024-05-03T17:00:00+00:00"))


def test_concurrent_readers_agree_with_the_fresh_answer() -> None:
    window = CronWindow(
        CronSchedule.parse("0 22 * * *"),
        CronSchedule.parse("0 6 * * *"),
        ZoneInfo("Europe/Berlin"),
        1,
    )
    instants = [at("2024-05-02T20:00:00+02:00") + 600 * i for i in range(60)]
    expected = [keda_cron_active(window.start, window.end, window.zone, t) for t in instants]
    failures: list[float] = []

    def read() -> None:
        for t, want in zip(instants, expected, strict=True):
            if window.is_active(t) is not want:
                failures.append(t)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_window_firing_years_ahead_is_cheap_to_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """29 February is over a year away: finding the first UTC offset change before it
    probed every day up to it, two zones here: 1,337 offset look-ups for a first answer
    (a policy of fifty such windows cost ~40 ms on the event loop). The answer is now
    kept at most a week and worked out again then; what is left is robfig's own search
    for the next firing."""
    import scaler.schedule as schedule

    lookups, counting = 0, False
    offset = schedule._utc_offset

    def counted(zone: ZoneInfo, t: int) -> int:
        nonlocal lookups
        lookups += counting
        return offset(zone, t)

    monkeypatch.setattr(schedule, "_utc_offset", counted)
    window = CronWindow(
        CronSchedule.parse("TZ=UTC 0 0 29 2 *"),
        CronSchedule.parse("TZ=Etc/GMT-14 0 1 29 2 *"),
        ZoneInfo("UTC"),
        1,
    )
    now = at("2026-12-03T10:00:00+00:00")
    expected = keda_cron_active(window.start, window.end, window.zone, now)
    counting = True
    assert window.is_active(now) is expected
    counting = False
    assert lookups < 600, lookups
    for step in range(0, 30 * 86400, 6 * 3600):  # a month, every six hours: still right
        t = now + step
        assert window.is_active(t) is keda_cron_active(window.start, window.end, window.zone, t)
        assert t < window.next_transition(t) <= t + 7 * 86400 + 1
