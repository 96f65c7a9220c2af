"""Demand series for the simulator: trace CSV files and a seeded tide generator.

A `Traffic` is requests per second on a regular grid (`step_seconds`), the form
every other part of the simulator consumes. Traces are read from the
`timestamp,requests` CSV format (requests per interval, regular grid); the
generator draws diurnal and weekly tides with a chosen peak-to-valley ratio,
multiplicative noise and flash crowds from an explicit seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaler import traces


@dataclass(frozen=True, eq=False)
class Traffic:
    """Requests per second, `rate_per_second[i]` over [start + i*step, start + (i+1)*step)."""

    start: float
    step_seconds: float
    rate_per_second: np.ndarray
    name: str = "traffic"

    @property
    def end(self) -> float:
        return self.start + self.step_seconds * len(self.rate_per_second)

    @property
    def duration_seconds(self) -> float:
        return self.step_seconds * len(self.rate_per_second)

    def scaled(self, factor: float) -> Traffic:
        return Traffic(self.start, self.step_seconds, self.rate_per_second * factor, self.name)

    def clipped(self, days: float | None) -> Traffic:
        """The first `days` of the series (all of it when None or longer)."""
        if days is None:
            return self
        n = min(len(self.rate_per_second), max(1, int(days * 86400 / self.step_seconds)))
        return Traffic(self.start, self.step_seconds, self.rate_per_second[:n], self.name)

    def on_grid(self, step_seconds: float) -> np.ndarray:
        """Rate per second on the simulation grid of `step_seconds`, preserving requests.

        A trace interval that is a whole multiple of the step is held within it; a
        whole divisor is averaged into steps. Any other interval (10 s or 20 s scrapes
        against a 15 s step, a Prometheus UI step of 2419 s) is resampled.
        """
        # The two exact paths stay as they were: published simulation results depend
        # on these arrays bit for bit.
        ratio = self.step_seconds / step_seconds
        if abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1:
            return np.repeat(self.rate_per_second, round(ratio))
        inverse = step_seconds / self.step_seconds
        if abs(inverse - round(inverse)) < 1e-9:
            k = round(inverse)
            n = len(self.rate_per_second) // k
            return np.asarray(self.rate_per_second[: n * k].reshape(n, k).mean(axis=1))
        return self._resampled(step_seconds)

    def _resampled(self, step_seconds: float) -> np.ndarray:
        """The rate on a grid of `step_seconds` unrelated to the trace's interval.

        The rate is constant within each trace interval, so the cumulative request
        count is exact at trace boundaries and linear between them: interpolating it
        at the step boundaries and differencing keeps every request. A partial last
        step is dropped, as the whole-divisor path drops it.
        """
        rate = np.asarray(self.rate_per_second, dtype=np.float64)
        n = len(rate)
        # The tolerance keeps a last step that ends on the trace's end despite rounding.
        steps = math.floor(n * self.step_seconds / step_seconds + 1e-9)
        if steps <= 0:
            return np.zeros(0)
        cumulative = np.concatenate(([0.0], np.cumsum(rate * self.step_seconds)))
        edges = self.step_seconds * np.arange(n + 1, dtype=np.float64)
        bounds = step_seconds * np.arange(steps + 1, dtype=np.float64)
        out: np.ndarray = np.diff(np.interp(bounds, edges, cumulative)) / step_seconds
        # Where every trace interval a step overlaps has the same rate, that rate is
        # the answer: set it exactly instead of leaving the differencing's rounding.
        first = np.clip(np.floor(bounds[:-1] / self.step_seconds).astype(np.int64), 0, n - 1)
        last = np.clip(np.ceil(bounds[1:] / self.step_seconds).astype(np.int64) - 1, first, n - 1)
        changes = np.concatenate(([0], np.cumsum(rate[1:] != rate[:-1])))
        flat = changes[last] == changes[first]
        out[flat] = rate[first[flat]]
        return out


def read_trace(path: str | Path) -> Traffic:
    """Read a `timestamp,requests` CSV (requests per interval, regular grid) as requests/s."""
    trace = traces.read_trace(path)
    rate = trace.values / trace.step_seconds
    return Traffic(float(trace.timestamps[0]), trace.step_seconds, rate, name=trace.stem)


def write_trace(traffic: Traffic, path: str | Path) -> None:
    """Write `traffic` in the trace CSV format (requests per interval, rounded)."""
    counts = np.rint(traffic.rate_per_second * traffic.step_seconds).astype(np.int64)
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        handle.write("timestamp,requests\n")
        for i, count in enumerate(counts):
            handle.write(f"{int(traffic.start + i * traffic.step_seconds)},{int(count)}\n")


@dataclass(frozen=True)
class TideSpec:
    """Parameters of a synthetic tide; `peak_rps` is the weekday diurnal peak before noise."""

    days: float = 14.0
    step_seconds: float = 60.0
    peak_rps: float = 200.0
    peak_to_valley: float = 10.0
    weekend_factor: float = 0.6  # weekend peak relative to a weekday peak
    noise: float = 0.05  # standard deviation of the multiplicative log-normal noise
    flash_crowds_per_week: float = 1.0
    flash_crowd_magnitude: float = 3.0  # peak multiplier of a flash crowd
    flash_crowd_minutes: float = 30.0  # total duration (fast rise, slower decay)
    peak_hour_utc: float = 14.0
    start: float = 1_704_067_200.0  # 2024-01-01T00:00:00Z, a Monday


def synthetic_tide(spec: TideSpec, seed: int = 0) -> Traffic:
    """Diurnal + weekly tide with noise and flash crowds, reproducible from `seed`.

    The daily shape is a raised cosine mapped so that the weekday minimum is
    peak / peak_to_valley exactly: demand varies on a log scale, as real tides
    do (long quiet night, broad day).
    """
    if not 1.0 <= spec.peak_to_valley <= 1000.0:
        raise ValueError(f"peak_to_valley={spec.peak_to_valley:g}: expected 1..1000")
    rng = np.random.default_rng(seed)
    n = int(spec.days * 86400 / spec.step_seconds)
    t = spec.start + spec.step_seconds * np.arange(n)
    hours = ((t % 86400) / 3600.0 - spec.peak_hour_utc) % 24.0
    # 1 at the peak hour, 0 twelve hours away.
    shape = 0.5 * (1.0 + np.cos(2.0 * np.pi * hours / 24.0))
    log_ratio = math.log(spec.peak_to_valley)
    rate = spec.peak_rps * np.exp(-log_ratio * (1.0 - shape))
    weekday = ((t // 86400).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    rate = np.where(weekday >= 5, rate * spec.weekend_factor, rate)
    if spec.noise > 0:
        rate = rate * np.exp(rng.normal(0.0, spec.noise, n) - spec.noise**2 / 2.0)
    expected = spec.flash_crowds_per_week * spec.days / 7.0
    for _ in range(int(rng.poisson(expected)) if expected > 0 else 0):
        at = rng.uniform(0, spec.days * 86400)
        rise = 0.2 * spec.flash_crowd_minutes * 60.0
        decay = 0.8 * spec.flash_crowd_minutes * 60.0
        dt = t - spec.start - at
        envelope = np.where(
            dt < 0,
            np.clip(1.0 + dt / rise, 0.0, 1.0),
            np.exp(-np.maximum(dt, 0.0) / (decay / 3.0)),
        )
        rate = rate * (1.0 + (spec.flash_crowd_magnitude - 1.0) * envelope)
    name = f"synthetic-pv{spec.peak_to_valley:g}"
    return Traffic(spec.start, spec.step_seconds, rate, name=name)


# ------------------------------------------------------------ cases that punish regret
#
# Traffic on which a forecast can mislead: what happened yesterday at this hour is
# not what happens today. Every generator draws from its own seeded numpy Generator.

DAY = 86400.0


def _diurnal(t: np.ndarray, peak_rps: float, peak_to_valley: float, peak_hour: float) -> np.ndarray:
    """The tide's daily shape: peak at `peak_hour` UTC, valley peak / peak_to_valley."""
    hours = ((t % DAY) / 3600.0 - peak_hour) % 24.0
    shape = 0.5 * (1.0 + np.cos(2.0 * np.pi * hours / 24.0))
    out: np.ndarray = peak_rps * np.exp(-math.log(peak_to_valley) * (1.0 - shape))
    return out


def _times(days: float, step_seconds: float, start: float) -> np.ndarray:
    """The start of every step of `days` days."""
    out: np.ndarray = start + step_seconds * np.arange(int(days * DAY / step_seconds))
    return out


def _noisy(rate: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    if noise <= 0:
        return rate
    out: np.ndarray = rate * np.exp(rng.normal(0.0, noise, len(rate)) - noise**2 / 2.0)
    return out


@dataclass(frozen=True)
class TournamentSpec:
    """Matches of a tournament at different hours each day over a small diurnal base.

    Each day has 0 to `max_matches_per_day` matches (none on a rest day), each
    kicking off at a random hour between `first_hour_utc` and `last_hour_utc`;
    the audience arrives over `ramp_minutes` before kick-off, stays for
    `match_minutes` (a dip at half-time) and leaves over `ramp_minutes`.
    """

    days: float = 21.0
    step_seconds: float = 60.0
    base_peak_rps: float = 120.0
    base_peak_to_valley: float = 4.0
    match_peak_rps: float = 900.0  # audience at a typical match (x0.5..1.5 per match)
    max_matches_per_day: int = 3
    rest_day_probability: float = 0.2
    match_minutes: float = 110.0
    ramp_minutes: float = 15.0
    first_hour_utc: float = 11.0
    last_hour_utc: float = 21.0
    noise: float = 0.05
    start: float = 1_704_067_200.0


def tournament(spec: TournamentSpec, seed: int = 0) -> Traffic:
    rng = np.random.default_rng(seed)
    t = _times(spec.days, spec.step_seconds, spec.start)
    rate = _diurnal(t, spec.base_peak_rps, spec.base_peak_to_valley, 19.0)
    ramp = spec.ramp_minutes * 60.0
    length = spec.match_minutes * 60.0
    for day in range(math.ceil(spec.days)):
        if rng.random() < spec.rest_day_probability:
            continue
        for _ in range(int(rng.integers(1, spec.max_matches_per_day + 1))):
            hour = rng.uniform(spec.first_hour_utc, spec.last_hour_utc)
            kickoff = spec.start + day * DAY + round(hour * 4) * 900.0  # on a quarter hour
            audience = spec.match_peak_rps * rng.uniform(0.5, 1.5)
            since = t - kickoff
            envelope = np.clip(
                np.minimum((since + ramp) / ramp, (length + ramp - since) / ramp), 0, 1
            )
            half_time = np.abs(since - length / 2) < 450.0  # 15 minutes at 60 %
            envelope = np.where(half_time, 0.6 * envelope, envelope)
            rate = rate + audience * envelope
    rate = _noisy(rate, spec.noise, rng)
    return Traffic(spec.start, spec.step_seconds, rate, name="tournament")


@dataclass(frozen=True)
class HourlySpec:
    """An hourly trace over months: tides, weekends, a slow trend, holidays, noise.

    Demand is held flat within each hour (as hourly logs give it), so every hour
    boundary is a step; `holidays_per_month` weekdays run at the weekend level.
    """

    days: float = 84.0
    peak_rps: float = 800.0
    peak_to_valley: float = 3.0
    weekend_factor: float = 0.7
    trend_per_month: float = 0.08  # relative growth of demand per 30 days
    holidays_per_month: float = 1.0
    noise: float = 0.08
    peak_hour_utc: float = 15.0
    start: float = 1_704_067_200.0

    @property
    def step_seconds(self) -> float:
        return 3600.0


def hourly(spec: HourlySpec, seed: int = 0) -> Traffic:
    rng = np.random.default_rng(seed)
    n = int(spec.days * 24)
    t = spec.start + 3600.0 * np.arange(n)
    # The level at the middle of each hour (an hourly count averages over it).
    rate = _diurnal(t + 1800.0, spec.peak_rps, spec.peak_to_valley, spec.peak_hour_utc)
    day = ((t - spec.start) // DAY).astype(np.int64)
    weekday = ((t // DAY).astype(np.int64) + 3) % 7
    quiet = weekday >= 5
    holidays = rng.random(math.ceil(spec.days)) < spec.holidays_per_month / 30.0
    quiet |= holidays[day]
    rate = np.where(quiet, rate * spec.weekend_factor, rate)
    rate = rate * (1.0 + spec.trend_per_month * (t - spec.start) / (30 * DAY))
    rate = _noisy(rate, spec.noise, rng)
    return Traffic(spec.start, 3600.0, rate, name="hourly")


@dataclass(frozen=True)
class BurstySpec:
    """Zero most of the time; bursts at random times (Poisson), of random size and length."""

    days: float = 14.0
    step_seconds: float = 60.0
    bursts_per_day: float = 6.0
    burst_rps: float = 300.0  # median burst height (log-normal, sigma 0.6)
    burst_minutes: float = 8.0  # mean burst length (exponential, at least a minute)
    start: float = 1_704_067_200.0


def bursty(spec: BurstySpec, seed: int = 0) -> Traffic:
    rng = np.random.default_rng(seed)
    n = int(spec.days * DAY / spec.step_seconds)
    rate = np.zeros(n)
    count = int(rng.poisson(spec.bursts_per_day * spec.days))
    for _ in range(count):
        at = int(rng.integers(0, n))
        steps = max(1, round(rng.exponential(spec.burst_minutes) * 60.0 / spec.step_seconds))
        height = spec.burst_rps * float(np.exp(rng.normal(0.0, 0.6)))
        rate[at : at + steps] += height
    return Traffic(spec.start, spec.step_seconds, rate, name="bursty")


@dataclass(frozen=True)
class LevelShiftSpec:
    """A tide whose level changes for good on `shift_day` (a launch, a lost customer)."""

    days: float = 21.0
    step_seconds: float = 60.0
    peak_rps: float = 400.0
    peak_to_valley: float = 5.0
    weekend_factor: float = 0.8
    shift_day: float = 12.3  # a weekday, in the morning
    shift_factor: float = 2.5
    noise: float = 0.05
    peak_hour_utc: float = 14.0
    start: float = 1_704_067_200.0


def level_shift(spec: LevelShiftSpec, seed: int = 0) -> Traffic:
    rng = np.random.default_rng(seed)
    t = _times(spec.days, spec.step_seconds, spec.start)
    rate = _diurnal(t, spec.peak_rps, spec.peak_to_valley, spec.peak_hour_utc)
    weekday = ((t // DAY).astype(np.int64) + 3) % 7
    rate = np.where(weekday >= 5, rate * spec.weekend_factor, rate)
    rate = np.where(t - spec.start >= spec.shift_day * DAY, rate * spec.shift_factor, rate)
    rate = _noisy(rate, spec.noise, rng)
    return Traffic(spec.start, spec.step_seconds, rate, name="level-shift")


@dataclass(frozen=True)
class OpeningSpec:
    """Demand that jumps at the same minute every working day: a market opening, ticket
    sales, a shift's log-ins. Closed (nights, weekends) at `closed_rps`; at
    `open_hour_utc` it rises to `open_rps` within `jump_minutes`, the opening rush
    settles to `settle_share` of it with an e-folding time of `rush_minutes`, and
    at `close_hour_utc` it falls back within `jump_minutes`.

    The case a forecast is for: the jump is faster than any reaction, and it
    comes at a time that history tells.
    """

    days: float = 21.0
    step_seconds: float = 60.0
    closed_rps: float = 40.0
    open_rps: float = 400.0
    settle_share: float = 0.6
    rush_minutes: float = 120.0
    open_hour_utc: float = 9.0
    close_hour_utc: float = 17.5
    jump_minutes: float = 2.0
    noise: float = 0.05
    start: float = 1_704_067_200.0


def opening(spec: OpeningSpec, seed: int = 0) -> Traffic:
    rng = np.random.default_rng(seed)
    t = _times(spec.days, spec.step_seconds, spec.start)
    minutes = (t % DAY) / 60.0
    since_open = minutes - spec.open_hour_utc * 60.0
    until_close = spec.close_hour_utc * 60.0 - minutes
    jump = max(spec.jump_minutes, 1e-9)
    open_share = np.clip(np.minimum(since_open, until_close) / jump, 0.0, 1.0)
    rush = spec.settle_share + (1.0 - spec.settle_share) * np.exp(
        -np.maximum(since_open, 0.0) / spec.rush_minutes
    )
    rate = spec.closed_rps + (spec.open_rps * rush - spec.closed_rps) * open_share
    weekday = ((t // DAY).astype(np.int64) + 3) % 7
    rate = np.where(weekday >= 5, spec.closed_rps, rate)
    rate = _noisy(rate, spec.noise, rng)
    return Traffic(spec.start, spec.step_seconds, rate, name="opening")


GeneratorSpec = TournamentSpec | HourlySpec | BurstySpec | LevelShiftSpec | OpeningSpec

# `synthetic: {kind: ...}` in a scenario: the spec of each kind of generated traffic.
GENERATORS: dict[str, type[GeneratorSpec]] = {
    "tournament": TournamentSpec,
    "hourly": HourlySpec,
    "bursty": BurstySpec,
    "level-shift": LevelShiftSpec,
    "opening": OpeningSpec,
}


def generate(spec: GeneratorSpec, seed: int = 0) -> Traffic:
    """The traffic of a generator spec, reproducible from `seed`."""
    if isinstance(spec, TournamentSpec):
        return tournament(spec, seed)
    if isinstance(spec, HourlySpec):
        return hourly(spec, seed)
    if isinstance(spec, BurstySpec):
        return bursty(spec, seed)
    if isinstance(spec, OpeningSpec):
        return opening(spec, seed)
    return level_shift(spec, seed)
