"""Cron windows with the exact semantics of KEDA's cron scaler.

KEDA evaluates `start`/`end` with the Go library robfig/cron v3 (v3.0.1); this
module re-implements that library's parser and `SpecSchedule.Next()`, including
Go's `time.Date` normalisation on daylight-saving days, so that a tidescaler
window is active at exactly the instants a KEDA cron trigger with the same
metadata is. `CronWindow.is_active` caches its answer until it can next change,
because the server asks it for every window on every request.
"""

# What KEDA does, read from its cron scaler (keda-scalers/cron_scaler.go on the
# main branch; the activity rule is the one PR 6166 introduced in v2.16; the file
# could not be pinned to the v2.20.2 tag):
#   - `start`/`end` go through cron.NewParser(Minute|Hour|Dom|Month|Dow): no
#     descriptors, no seconds field, but robfig's optional "TZ=<zone> " or
#     "CRON_TZ=<zone> " prefix is accepted and overrides `timezone`.
#   - now = time.Now().In(timezone); nextStart, nextEnd = Next(now) of each;
#     if nextStart before nextEnd: active = now after nextStart and before nextEnd
#     else:                         active = now after nextStart or before nextEnd.
#     KEDA reads the clock once for `now` and once more per Next() call; we use
#     one reading. With ordinary instants (both after now) this is "active iff
#     nextStart is not before nextEnd", equal counting as active. The zero time
#     (a schedule that matches nothing within five years) is not compared like
#     any other instant: a start that never fires gives active whenever the end
#     fires (now is after year 1), an end that never fires gives inactive, and
#     neither firing gives active.
#   - The metric value is desiredReplicas when active and 0 otherwise, with target
#     1 (KEDA >= 2.18, kedacore/keda PR #6888; before it the value outside was 1);
#     see KEDA_VALUE_OUTSIDE_WINDOW.

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scaler.policy_limits import quote

# robfig/cron returns Go's zero time (0001-01-01 00:00:00 UTC) when nothing matches
# within five years; how KEDA's rule treats it is described above.
ZERO_TIME = -62135596800.0
_ZERO = -62135596800

# KEDA's cron scaler reports this value outside its window (it is what a cron
# trigger contributes to the HPA there), and desiredReplicas inside. It is 0 since
# KEDA 2.18 (kedacore/keda PR #6888, "return zero metric value by default"; its
# cron_scaler_test.go expects 0 outside); KEDA 2.17 and older reported 1.
KEDA_VALUE_OUTSIDE_WINDOW = 0

_DAY = 86400
_STAR = 1 << 63  # robfig marks a field written as * or ? (without a step > 1) with bit 63
_FIELD_NAMES = "minute hour day-of-month month day-of-week"

# Go's strings.Fields splits on unicode.IsSpace; Python's str.split() also splits
# on \x1c-\x1f, which Go keeps inside a field.
_GO_SPACE = re.compile("[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
# strconv.Atoi: an optional sign, then ASCII digits only.
_GO_INT = re.compile(r"[+-]?[0-9]+")


class CronError(ValueError):
    """A cron expression KEDA would reject; the message says what is wrong (no key name)."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None
    hint: str = ""


_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field(
    "month",
    1,
    12,
    {
        name: number
        for number, name in enumerate(
            ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
            start=1,
        )
    },
    " (JAN-DEC)",
)
_DOW = _Field(
    "day-of-week",
    0,
    6,
    {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6},
    " (SUN-SAT; Sunday is 0, 7 is not accepted)",
)


def _out_of_range(value: int | str, f: _Field) -> CronError:
    shown = value if len(str(value)) <= 20 else f"of {len(str(value))} digits"
    return CronError(f"value {shown} out of range {f.low}-{f.high}{f.hint} in {f.name} field")


def _without_leading_zeros(text: str) -> str:
    """A Go integer's text without its leading zeros (its sign kept): strconv.Atoi
    reads "0000000000000000000000005" as 5, however many zeros come first."""
    sign = text[:1] if text[:1] in ("+", "-") else ""
    return sign + (text[len(sign) :].lstrip("0") or "0")


def _number(text: str, f: _Field, element: str) -> int:
    if f.names is not None:
        # Go's strings.ToLower maps U+0130 to "i"; Python's lower() does not.
        named = f.names.get(text.replace("\u0130", "i").lower())
        if named is not None:
            return named
    if not _GO_INT.fullmatch(text):
        what = f"a number or a name{f.hint}" if f.names is not None else "a number"
        if not text:
            raise CronError(f"{quote(element)} is missing a number in {f.name} field")
        inside = f" in {quote(element)}" if text != element else ""
        raise CronError(f"{quote(text)}{inside} is not {what} in {f.name} field")
    text = _without_leading_zeros(text)
    if len(text) > 20:  # beyond strconv.Atoi's int64 whatever the digits (and int()'s limit)
        raise _out_of_range(text, f)
    value = int(text)
    if value >= 1 << 63:  # beyond strconv.Atoi's int64
        raise _out_of_range(value, f)
    return value


def _parse_element(element: str, f: _Field) -> int:
    """robfig's getRange: `*`, `?`, `N`, `N-M`, each optionally `/step`."""
    range_and_step = element.split("/")
    low_high = range_and_step[0].split("-")
    star = low_high[0] in ("*", "?")
    if len(range_and_step) > 2:
        raise CronError(f"{quote(element)} has more than one '/' in {f.name} field")
    if star:
        # robfig ignores anything after "*-" or "?-", so "*-5" means "*".
        start, end = f.low, f.high
    else:
        if len(low_high) > 2:
            raise CronError(f"{quote(element)} has more than one '-' in {f.name} field")
        start = _number(low_high[0], f, element)
        end = start if len(low_high) == 1 else _number(low_high[1], f, element)
    step = 1
    if len(range_and_step) == 2:
        step_text = range_and_step[1]
        digits = _without_leading_zeros(step_text)
        # (the length first: int() refuses over 4,300 digits, in words of its own)
        if (
            not _GO_INT.fullmatch(step_text)
            or len(digits) > 20
            or int(digits) <= 0
            or int(digits) >= 1 << 63
        ):
            raise CronError(
                f"step {quote(step_text)} in {quote(element)} is not a positive number "
                f"in {f.name} field"
            )
        step = int(digits)
        if len(low_high) == 1:
            # "N/step" means "N-max/step".
            if start > f.high:
                raise _out_of_range(start, f)
            end = f.high
        if step > 1:
            star = False  # "*/2" is not a star field for the day-matching rule
    for value in (start, end):
        if not f.low <= value <= f.high:
            raise _out_of_range(value, f)
    if start > end:
        raise CronError(f"range {quote(element)} starts after it ends in {f.name} field")
    bits = 0
    for value in range(start, end + 1, step):
        bits |= 1 << value
    return bits | (_STAR if star else 0)


def _parse_field(text: str, f: _Field) -> int:
    # strings.FieldsFunc drops empty elements: "1,,2" is "1,2" and "," matches nothing.
    bits = 0
    for element in text.split(","):
        if element:
            bits |= _parse_element(element, f)
    return bits


def _zone_override(expression: str) -> tuple[ZoneInfo | None, str]:
    """robfig's optional "TZ=<zone> " / "CRON_TZ=<zone> " prefix."""
    if not expression.startswith(("TZ=", "CRON_TZ=")):
        return None, expression
    space = expression.find(" ")
    if space < 0:
        raise CronError(
            f"{quote(expression)}: a TZ= prefix must be followed by a space and 5 fields"
        )
    name = expression[expression.index("=") + 1 : space]
    rest = expression[space:].strip(" \t\n\v\f\r")
    if name == "Local":  # Go's time.Local: the schedule then uses the window's zone
        return None, rest
    try:
        return ZoneInfo(name or "UTC"), rest
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown time zone {quote(name)} in TZ= prefix") from None


@dataclass(frozen=True)
class CronSchedule:
    """A parsed 5-field cron expression (robfig/cron v3 standard parser)."""

    expression: str
    _minute_bits: int = field(init=False, repr=False, compare=False)
    _hour_bits: int = field(init=False, repr=False, compare=False)
    _dom_bits: int = field(init=False, repr=False, compare=False)
    _month_bits: int = field(init=False, repr=False, compare=False)
    _dow_bits: int = field(init=False, repr=False, compare=False)
    # Set by a TZ= prefix; the schedule then ignores the zone it is evaluated in.
    zone_override: ZoneInfo | None = field(init=False, repr=False, compare=False)
    # False when no instant can ever match (KEDA's Next() returns the zero time).
    can_match: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expression = self.expression
        if not expression:
            raise CronError(f"empty expression; expected 5 fields ({_FIELD_NAMES})")
        location, spec = _zone_override(expression)
        if spec.startswith("@"):
            raise CronError(
                f"{quote(spec.split()[0])} is a descriptor, which KEDA does not accept;"
                f" write 5 fields ({_FIELD_NAMES})"
            )
        fields = [f for f in _GO_SPACE.split(spec) if f]
        if len(fields) != 5:
            raise CronError(f"expected exactly 5 fields ({_FIELD_NAMES}), got {len(fields)}")
        bits = [
            _parse_field(text, f)
            for text, f in zip(fields, (_MINUTE, _HOUR, _DOM, _MONTH, _DOW), strict=True)
        ]
        for name, value in zip(
            ("_minute_bits", "_hour_bits", "_dom_bits", "_month_bits", "_dow_bits"),
            bits,
            strict=True,
        ):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "zone_override", location)
        object.__setattr__(self, "can_match", _can_match(*bits))

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        return cls(expression)

    def next_after(self, t: float, zone: ZoneInfo) -> float:
        """robfig's Next(t) evaluated in `zone`, as Unix seconds (ZERO_TIME if none)."""
        return float(self._next(t, zone))

    def _day_matches(self, day: int, weekday: int) -> bool:
        dom = self._dom_bits >> day & 1
        dow = self._dow_bits >> weekday & 1
        if (self._dom_bits | self._dow_bits) & _STAR:
            return bool(dom and dow)
        return bool(dom or dow)

    def _next(self, t: float, zone: ZoneInfo) -> int:
        """SpecSchedule.Next, loop for loop; `u` is Go's time.Time as Unix seconds."""
        if not self.can_match:
            return _ZERO  # Next() would search five years and find nothing
        loc = self.zone_override or zone
        u = math.floor(t) + 1  # "the upcoming second"
        added = False
        year, month, day, hour, minute, second, weekday = _local(loc, u)
        year_limit = year + 5
        while True:  # robfig's WRAP label
            if year > year_limit:
                return _ZERO
            wrapped = False
            while not self._month_bits >> month & 1:
                if not added:
                    added = True
                    u = _go_date(loc, year, month, 1, 0, 0, 0)
                    year, month, day, hour, minute, second, weekday = _local(loc, u)
                u = _go_date(loc, year, month + 1, day, hour, minute, second)  # AddDate(0, 1, 0)
                year, month, day, hour, minute, second, weekday = _local(loc, u)
                if month == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not self._day_matches(day, weekday):
                if not added:
                    added = True
                    u = _go_date(loc, year, month, day, 0, 0, 0)
                    year, month, day, hour, minute, second, weekday = _local(loc, u)
                u = _go_date(loc, year, month, day + 1, hour, minute, second)  # AddDate(0, 0, 1)
                year, month, day, hour, minute, second, weekday = _local(loc, u)
                # Where local midnight does not exist robfig moves to the closest
                # midnight by adding real hours (after noon) or subtracting them.
                if hour != 0:
                    u += (24 - hour) * 3600 if hour > 12 else -hour * 3600
                    year, month, day, hour, minute, second, weekday = _local(loc, u)
                if day == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not self._hour_bits >> hour & 1:
                if not added:
                    added = True
                    u = _go_date(loc, year, month, day, hour, 0, 0)
                    year, month, day, hour, minute, second, weekday = _local(loc, u)
                # Real time, not wall-clock time: a skipped hour is never seen.
                u = _advance(loc, u, 3600, _units_to_next(self._hour_bits, hour, 24))
                year, month, day, hour, minute, second, weekday = _local(loc, u)
                if hour == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not self._minute_bits >> minute & 1:
                if not added:
                    added = True
                    u -= u % 60  # Truncate(time.Minute) works on absolute time
                u = _advance(loc, u, 60, _units_to_next(self._minute_bits, minute, 60))
                year, month, day, hour, minute, second, weekday = _local(loc, u)
                if minute == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            # The standard parser fixes the seconds field to 0.
            while second != 0:
                added = True
                u = _advance(loc, u, 1, 60 - second)
                year, month, day, hour, minute, second, weekday = _local(loc, u)
                if second == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            return u


def _units_to_next(bits: int, current: int, limit: int) -> int:
    """Steps of one from `current` to the next value in `bits`, or to `limit` (the
    wrap to 0), whichever comes first."""
    ahead = (bits >> (current + 1)) & ((1 << (limit - current - 1)) - 1)
    return (ahead & -ahead).bit_length() if ahead else limit - current


def _advance(zone: ZoneInfo, u: int, unit: int, count: int) -> int:
    """`count` of robfig's one-unit steps at once, where that is provably the same.

    Each step adds `unit` seconds of real time and re-reads the local clock; the
    loops stop at a matching value or at a wrap to 0. With the same whole-minute
    UTC offset at both ends there is no offset change in between (none since 1972
    came within two days of another), so the local clock advances exactly
    `count` units and passes neither a match nor a wrap. Otherwise: one step.
    """
    if count > 1:
        offset = _utc_offset(zone, u)
        target = u + unit * count
        if offset % 60 == 0 and _utc_offset(zone, target) == offset:
            return target
    return u + unit


def _can_match(minutes: int, hours: int, dom: int, months: int, dow: int) -> bool:
    """False only when no calendar day or time can ever satisfy the fields."""
    if not (minutes & ~_STAR and hours & ~_STAR and months & ~_STAR):
        return False
    longest = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    dom_possible = any(
        months >> m & 1 and dom & ((1 << (longest[m] + 1)) - 2) for m in range(1, 13)
    )
    dow_possible = bool(dow & ~_STAR)
    if (dom | dow) & _STAR:
        return dom_possible and dow_possible
    return dom_possible or dow_possible


# --- Go's time package on Unix seconds ------------------------------------------


def _utc_offset(zone: ZoneInfo, u: int) -> int:
    offset = datetime.fromtimestamp(u, zone).utcoffset()
    assert offset is not None
    return offset.days * _DAY + offset.seconds


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date; `day` may overflow."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468 + day - 1


def _local(zone: ZoneInfo, u: int) -> tuple[int, int, int, int, int, int, int]:
    """(year, month, day, hour, minute, second, weekday with Sunday 0) of u in zone."""
    days, secs = divmod(u + _utc_offset(zone, u), _DAY)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    hour, rest = divmod(secs, 3600)
    return year, month, day, hour, rest // 60, rest % 60, (days + 4) % 7


def _go_date(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int, second: int
) -> int:
    """time.Date: fields may overflow; a local time that does not exist or exists
    twice is resolved the way Go does it, from the offset at the naive-UTC instant."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    naive = _days_from_civil(year, month, day) * _DAY + hour * 3600 + minute * 60 + second
    # Go looks the offset up at `naive` read as UTC, and looks again at the
    # corrected instant only if that falls outside the zone period it found; both
    # cases come to the offset in force at naive - offset(naive).
    return naive - _utc_offset(zone, naive - _utc_offset(zone, naive))


# Longer than any daylight-saving change (two hours, Antarctica/Troll).
_NEAR_CHANGE = 3 * 3600
# The longest a window's answer is kept before it is worked out again, however far its
# next firing: finding the first UTC offset change before a firing probes every day up
# to it, and a window that next fires on 29 February is a year or more away (a policy
# of fifty such windows cost ~40 ms on the event loop). A week of probes instead.
_HOLD_AT_MOST = 7 * _DAY


def _first_offset_change(zone: ZoneInfo, after: int, horizon: float) -> float:
    """First instant in (after, horizon] with another UTC offset than at `after`,
    else infinity. Probes a day apart: since 1972 no zone has had two offset
    changes within two days of each other."""
    offset = _utc_offset(zone, after)
    probe = after
    while probe < horizon:
        nxt = probe + _DAY
        if _utc_offset(zone, nxt) != offset:
            same, changed = probe, nxt
            while changed - same > 1:
                mid = (same + changed) // 2
                if _utc_offset(zone, mid) == offset:
                    same = mid
                else:
                    changed = mid
            return changed
        probe = nxt
    return math.inf


def _year_rollover(zone: ZoneInfo, year: int) -> int:
    """First instant whose local year in zone is after `year`."""
    naive = _days_from_civil(year + 1, 1, 1) * _DAY
    before, after = naive - 16 * 3600, naive + 16 * 3600  # no UTC offset exceeds 16 h
    while after - before > 1:
        mid = (before + after) // 2
        if _local(zone, mid)[0] > year:
            after = mid
        else:
            before = mid
    return after


# --- Windows ------------------------------------------------------------------


def keda_cron_active(start: CronSchedule, end: CronSchedule, zone: ZoneInfo, now: float) -> bool:
    """KEDA's cron activity at `now`, computed afresh (no cache)."""
    return _keda_rule(now, start._next(now, zone), end._next(now, zone))


def _keda_rule(now: float, next_start: int, next_end: int) -> bool:
    if next_start < next_end:
        return next_start < now < next_end
    return now > next_start or now < next_end


@dataclass(frozen=True, eq=False)
class CronWindow:
    """One window: active iff KEDA's rule says so; a floor and/or a ceiling inside."""

    start: CronSchedule
    end: CronSchedule
    zone: ZoneInfo
    desired_replicas: int | None = None
    max_replicas: int | None = None
    # (valid_from, valid_until, active), swapped whole so that concurrent readers
    # never see a torn state and no lock is needed.
    _cache: tuple[float, float, bool] = field(
        default=(math.inf, -math.inf, False), init=False, repr=False, compare=False
    )

    def is_active(self, now: float) -> bool:
        valid_from, valid_until, active = self._cache
        if valid_from <= now < valid_until:
            return active
        return self._refresh(now)[2]

    def next_transition(self, now: float) -> float:
        """The earliest instant after `now` at which is_active may change (it need
        not: it can also be a daylight-saving change or a start inside the window)."""
        valid_from, valid_until, _ = self._cache
        if not valid_from <= now < valid_until:
            valid_from, valid_until, _ = self._refresh(now)
        return max(valid_until, math.floor(now) + 1.0)

    def _refresh(self, now: float) -> tuple[float, float, bool]:
        """Recompute at `now` and work out how long the answer stays valid.

        Next() depends only on the next whole second after now, and the search
        it does from any later instant meets the same candidates, so the answer
        holds until the earlier of the two next firings. Two of robfig's
        quirks break that argument and bound the cache earlier: a schedule that
        finds nothing (the zero time) only looks five calendar years ahead, so
        the answer can change when the local year does; and the search enters a
        day differently from before and from inside a daylight-saving change
        (robfig skips a day whose midnight does not exist), so the answer is
        recomputed at every UTC offset change, and for three hours either side of
        one it holds for the current second only. It is kept a week at most
        (_HOLD_AT_MOST), so the offset changes are looked for that far only.
        """
        floor_now = math.floor(now)
        next_start = self.start._next(now, self.zone)
        next_end = self.end._next(now, self.zone)
        active = _keda_rule(now, next_start, next_end)
        valid_until = math.inf
        zones = {s.zone_override or self.zone for s in (self.start, self.end)}
        for schedule, found in ((self.start, next_start), (self.end, next_end)):
            if found != _ZERO:
                valid_until = min(valid_until, found)
            else:
                loc = schedule.zone_override or self.zone
                year = _local(loc, floor_now + 1)[0]
                valid_until = min(valid_until, _year_rollover(loc, year) - 1)
        valid_until = min(valid_until, floor_now + _HOLD_AT_MOST)
        for zone in zones:
            change = _first_offset_change(zone, floor_now, valid_until)
            # Searching from the change instant itself already differs.
            valid_until = min(valid_until, change - 1)
            offset = _utc_offset(zone, floor_now + 1)
            if (
                _utc_offset(zone, floor_now + 1 - _NEAR_CHANGE) != offset
                or _utc_offset(zone, floor_now + 1 + _NEAR_CHANGE) != offset
            ):
                # Near a change robfig's search can change its answer at an instant
                # that is neither a firing nor a change: just after one (Lord Howe's
                # half-hour fall-back, at the end of the repeated half hour), and
                # inside the first pass of a repeated hour before one (Troll's
                # two-hour fall-back: a search that truncates to the hour there lands
                # on the second pass, and skips firings a search from a second later
                # meets). The answer holds for this second only.
                valid_until = min(valid_until, floor_now + 1)
        state = (float(floor_now), float(valid_until), active)
        object.__setattr__(self, "_cache", state)
        return state
