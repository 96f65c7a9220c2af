"""Background refits against an injected fetch and clock, and the forecast-error tracker."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from synthetic_series import Tide, business_hours, expected_demand

from scaler.engine import EngineSettings, lead_seconds
from scaler.forecast.refresher import (
    ForecastErrorTracker,
    ForecastRefresher,
    ForecastState,
    absent_as_zero,
)
from scaler.forecast_service import ForecastService
from scaler.policy import Policy, parse_policy
from scaler.sources.prometheus import PrometheusSource

STEP = 300.0
DAY = 86_400.0
T0 = 1_700_006_400.0  # a multiple of the step


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TidalSource:
    """A fetch function over a noiseless tide, recording every call."""

    def __init__(self, *, fail: bool = False, start: float = T0 - 10 * DAY) -> None:
        self.fail = fail
        self.start = start
        self.calls: list[tuple[float, float, float]] = []
        self.tide = expected_demand(Tide(days=30, step_seconds=STEP, valley=20, peak_to_valley=10))

    def __call__(self, start: float, end: float, step: float) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append((start, end, step))
        if self.fail:
            raise ConnectionError("prometheus unreachable")
        times = np.arange(max(start, self.start), end + step / 2, step)
        idx = ((times - (T0 - 10 * DAY)) // STEP).astype(int)
        return times, self.tide[idx]


def _refresher(clock: Clock, **kwargs: float) -> ForecastRefresher:
    return ForecastRefresher(clock=clock, **kwargs)  # type: ignore[arg-type]


def _register(r: ForecastRefresher, key: str, fetch: object, history: float = 7 * DAY) -> None:
    r.register(key, fetch, history_seconds=history, step_seconds=STEP, quantile=0.95)  # type: ignore[arg-type]


def test_a_registered_series_is_fit_at_once_and_then_on_schedule() -> None:
    clock, source = Clock(), TidalSource()
    r = _refresher(clock, refit_seconds=600.0)
    _register(r, "shop", source)
    assert r.latest("shop") is None
    assert r.status("shop").state is ForecastState.PENDING  # type: ignore[union-attr]
    assert r.refresh_due() == 1
    fc = r.latest("shop")
    assert fc is not None and fc.start == T0 and fc.periodicity.startswith("daily")
    status = r.status("shop")
    assert status is not None and status.state is ForecastState.OK and status.healthy
    clock.now += 599
    assert r.refresh_due() == 0
    clock.now += 1
    assert r.refresh_due() == 1
    assert r.latest("shop").start == T0 + 600  # type: ignore[union-attr]


def test_later_refits_fetch_only_the_new_part() -> None:
    clock, source = Clock(), TidalSource()
    r = _refresher(clock, refit_seconds=600.0, overlap_seconds=600.0)
    _register(r, "shop", source)
    r.refresh_due()
    first = list(source.calls)
    assert first[0][0] == T0 - 7 * DAY + STEP and first[-1][1] == T0
    source.calls.clear()
    clock.now += 600
    r.refresh_due()
    assert source.calls == [(T0 - 600, T0 + 600, STEP)]


def test_long_histories_are_fetched_in_chunks() -> None:
    clock, source = Clock(), TidalSource()
    r = _refresher(clock, max_points_per_fetch=500)
    _register(r, "shop", source)
    r.refresh_due()
    points = [round((end - start) / step) + 1 for start, end, step in source.calls]
    assert max(points) <= 500 and sum(points) == 7 * 288


def test_fetch_error_keeps_the_last_forecast_and_says_why() -> None:
    clock, source = Clock(), TidalSource()
    r = _refresher(clock, refit_seconds=600.0, retry_seconds=60.0)
    _register(r, "shop", source)
    r.refresh_due()
    good = r.latest("shop")
    source.fail = True
    clock.now += 600
    r.refresh_due()
    status = r.status("shop")
    assert status is not None and status.state is ForecastState.FETCH_ERROR
    assert "prometheus unreachable" in status.message
    assert status.last_success == T0
    assert r.latest("shop") is good
    clock.now += 60  # retried sooner than the refit interval
    assert r.refresh_due() == 1


def test_too_little_history_is_reported() -> None:
    clock = Clock()
    r = _refresher(clock)
    _register(r, "new", TidalSource(start=T0 - 3600))
    r.refresh_due()
    status = r.status("new")
    assert status is not None and status.state is ForecastState.TOO_LITTLE_HISTORY
    assert r.latest("new") is None


def test_series_without_periodicity_is_reported_with_its_forecast() -> None:
    clock = Clock()
    r = _refresher(clock)
    noise = np.random.default_rng(1).normal(50, 5, 3000)

    def fetch(start: float, end: float, step: float) -> tuple[np.ndarray, np.ndarray]:
        times = np.arange(start, end + step / 2, step)
        return times, noise[: len(times)]

    _register(r, "flat", fetch, history=2 * DAY)
    r.refresh_due()
    status = r.status("flat")
    assert status is not None and status.state is ForecastState.NO_PERIODICITY
    assert "no periodicity" in status.message
    assert r.latest("flat") is not None


def test_fit_error_is_reported() -> None:
    clock = Clock()
    r = _refresher(clock)

    def broken(start: float, end: float, step: float) -> tuple[np.ndarray, np.ndarray]:
        return np.array([start, end]), np.array([1.0])

    _register(r, "odd", broken)
    r.refresh_due()
    status = r.status("odd")
    assert status is not None and status.state is ForecastState.FETCH_ERROR
    assert "2 times and 1 values" in status.message


def test_series_nobody_reads_are_dropped() -> None:
    clock = Clock()
    r = _refresher(clock, idle_seconds=3600.0)
    _register(r, "a", TidalSource())
    _register(r, "b", TidalSource())
    r.refresh_due()
    clock.now += 3000
    r.latest("a")
    clock.now += 1000
    r.refresh_due()
    assert r.keys() == ["a"]
    assert r.status("b") is None


def test_reregistering_with_another_config_refits_at_once() -> None:
    clock, source = Clock(), TidalSource()
    r = _refresher(clock)
    _register(r, "shop", source)
    r.refresh_due()
    r.register("shop", source, history_seconds=7 * DAY, step_seconds=STEP, quantile=0.99)
    assert r.refresh_due() == 1
    assert r.latest("shop").quantile == 0.99  # type: ignore[union-attr]


def test_the_daemon_thread_fits_without_the_caller_waiting() -> None:
    done = threading.Event()
    source = TidalSource()

    def fetch(start: float, end: float, step: float) -> tuple[np.ndarray, np.ndarray]:
        out = source(start, end, step)
        if end >= T0:
            done.set()
        return out

    r = _refresher(Clock())
    r.start()
    try:
        _register(r, "shop", fetch)
        assert done.wait(10.0)
        for _ in range(200):
            if r.latest("shop") is not None:
                break
            threading.Event().wait(0.02)
        assert r.latest("shop") is not None
    finally:
        r.close()


# ------------------------------------------------------------ error tracker


def test_error_tracker_scores_forecasts_when_their_time_comes() -> None:
    t = ForecastErrorTracker(window=10, tolerance_seconds=60.0)
    t.record_forecast("k", 100.0, median=10.0, upper=12.0)
    t.record_forecast("k", 130.0, median=10.0, upper=12.0)
    assert t.errors("k") is None
    t.record_actual("k", 100.0, 10.0)  # exact
    t.record_actual("k", 131.0, 15.0)  # above band
    e = t.errors("k")
    assert e is not None and e.count == 2
    assert e.smape == pytest.approx(100.0 * (0.0 + 2 * 5 / 25) / 2)
    assert e.under_rate == 0.5
    assert e.coverage == 0.5


def test_error_tracker_drops_forecasts_whose_actual_never_came() -> None:
    t = ForecastErrorTracker(tolerance_seconds=60.0)
    t.record_forecast("k", 100.0, 10.0, 12.0)
    t.record_actual("k", 500.0, 10.0)
    assert t.errors("k") is None


def test_error_tracker_memory_is_bounded() -> None:
    t = ForecastErrorTracker(window=5, max_pending=3)
    for i in range(100):
        t.record_forecast("k", float(i), 1.0, 2.0)
    for i in range(100):
        t.record_forecast("j", float(i), 1.0, 2.0)
        t.record_actual("j", float(i), 1.0)
    e = t.errors("j")
    assert e is not None and e.count == 5
    t.prune(older_than=1e9)
    assert t.errors("j") is None


def test_forecasts_offered_faster_than_the_tracker_holds_are_still_scored() -> None:
    """Two ScaledObjects on one series, polled fast, offered more forecasts within the lead
    time than the tracker holds: it dropped the oldest, the next to be scored, so none
    ever came due and the error metrics never appeared."""
    t = ForecastErrorTracker(window=100, max_pending=20, tolerance_seconds=60.0)
    lead, now = 40.0, 1000.0
    for _ in range(400):  # 10 calls a second for 40 s: 400 forecasts within one lead
        now += 0.1
        t.record_forecast("k", now + lead, median=10.0, upper=12.0)
        t.record_actual("k", now, 10.0)
    assert t.errors("k") is None  # nothing due yet
    for _ in range(400):
        now += 0.1
        t.record_forecast("k", now + lead, median=10.0, upper=12.0)
        t.record_actual("k", now, 11.0)
    scored = t.errors("k")
    assert scored is not None and scored.count >= 5
    assert scored.coverage == 1.0 and scored.under_rate == 1.0  # 11 against a median of 10


@pytest.mark.parametrize("lead", [30.0, 600.0, 2000.0])
def test_scores_come_steadily_when_the_lead_holds_more_forecasts_than_the_tracker(
    lead: float,
) -> None:
    """A pod start-up of many minutes: a lead time longer than the queue holds at one
    forecast a second. Refusing forecasts while the queue was full scored them in bursts,
    max_pending in a row, then none for a whole lead time."""
    max_pending = 20
    t = ForecastErrorTracker(window=10_000, max_pending=max_pending, tolerance_seconds=60.0)
    now, counts = 0.0, []
    for _ in range(int(4 * lead)):  # one GetMetrics a second for four lead times
        now += 1.0
        t.record_forecast("k", now + lead, median=10.0, upper=12.0)
        t.record_actual("k", now, 10.0)
        scored = t.errors("k")
        counts.append(0 if scored is None else scored.count)
    scoring = np.flatnonzero(np.diff(counts))  # the seconds at which a score came
    assert len(scoring) >= 2 * max_pending  # three lead times of scores, at least
    # Evenly: no silence much longer than the lead time split over the queue.
    assert np.diff(scoring).max() <= max(1.0, 4 * lead / max_pending)
    assert t.errors("k").smape == 0.0  # type: ignore[union-attr]


def test_the_spacing_starts_again_at_a_second_once_nothing_is_pending() -> None:
    t = ForecastErrorTracker(window=10_000, max_pending=10, tolerance_seconds=60.0)
    for second in range(1, 200):  # lead 100 s: the spacing grows to 16 s
        t.record_forecast("k", second + 100.0, median=1.0, upper=2.0)
    t.record_actual("k", 400.0, 1.0)  # everything pending is due (and too old to score)
    for second in range(400, 420):  # lead 5 s, one a second: all kept, all scored
        t.record_forecast("k", second + 5.0, median=1.0, upper=2.0)
        t.record_actual("k", float(second), 1.0)
    scored = t.errors("k")
    assert scored is not None and scored.count == 15


def test_error_summary_follows_every_new_score() -> None:
    t = ForecastErrorTracker(window=10, tolerance_seconds=60.0)
    t.record_forecast("k", 100.0, median=10.0, upper=12.0)
    t.record_actual("k", 100.0, 10.0)
    first = t.errors("k")
    assert first is not None and (first.count, first.smape, first.coverage) == (1, 0.0, 1.0)
    assert t.errors("k") is first  # asked again with nothing new: the same summary
    t.record_forecast("k", 200.0, median=10.0, upper=12.0)
    t.record_actual("k", 200.0, 30.0)  # above the band, and the median under-predicted
    second = t.errors("k")
    assert second is not None and second.count == 2
    assert second.coverage == 0.5 and second.under_rate == 0.5


def test_series_past_the_limit_are_not_registered_until_one_is_dropped() -> None:
    clock = Clock()
    r = _refresher(clock, idle_seconds=3600.0, max_series=2)
    fetch = TidalSource()
    for key in ("a", "b"):
        assert r.register(key, fetch, history_seconds=7 * DAY, step_seconds=STEP, quantile=0.95)
    assert not r.register("c", fetch, history_seconds=7 * DAY, step_seconds=STEP, quantile=0.95)
    assert r.status("c") is None and sorted(r.keys()) == ["a", "b"]  # type: ignore[type-var]
    # A registered series is kept, also with another configuration.
    assert r.register("a", fetch, history_seconds=8 * DAY, step_seconds=STEP, quantile=0.95)
    clock.now += 2 * 3600.0
    r.latest("a")
    r.refresh_due()  # "b" was not read for an hour: dropped, its slot free
    assert r.register("c", fetch, history_seconds=7 * DAY, step_seconds=STEP, quantile=0.95)


def _trigger(query: str) -> Policy:
    return parse_policy({"query": query, "threshold": "10", "forecast": "on"})


def test_the_service_says_when_the_forecast_series_are_all_taken() -> None:
    with PrometheusSource() as source:
        service = ForecastService(source, max_series=1, start=False)
        address = "http://127.0.0.1:9"
        forecast, problem = service.forecast_for(address, "sum(a)", _trigger("sum(a)"), T0)
        assert forecast is None and problem == "first fit pending"
        forecast, problem = service.forecast_for(address, "sum(b)", _trigger("sum(b)"), T0)
        assert forecast is None and problem is not None
        assert "at most 1 series and all are taken (--max-forecast-series)" in problem


def test_the_error_scores_of_dropped_series_are_dropped_too() -> None:
    clock = Clock()
    with PrometheusSource() as source:
        service = ForecastService(source, clock=clock, start=False)
        key = "kept-for-a-while"
        service.tracker.record_forecast(key, T0 + 60, 10.0, 12.0)
        service.tracker.record_actual(key, T0 + 60, 11.0)
        assert service.tracker.errors(key) is not None
        clock.now += 2 * 3600.0  # longer than the refresher keeps a series nobody reads
        service.forecast_for("http://127.0.0.1:9", "sum(a)", _trigger("sum(a)"), clock.now)
        assert service.tracker.errors(key) is None


def test_every_due_series_of_one_backend_is_refit_within_its_share_of_workers() -> None:
    clock = Clock()
    r = _refresher(clock, workers=2)
    source = TidalSource()
    for key in "abcde":
        r.register(
            key, source, history_seconds=7 * DAY, step_seconds=STEP, quantile=0.95, backend="one"
        )
    assert r.per_backend == 1
    assert r.refresh_due() == 5
    assert all(r.latest(key) is not None for key in "abcde")


def test_a_failing_query_does_not_hold_back_the_other_series_of_its_backend() -> None:
    clock = Clock()
    r = _refresher(clock, backend_down=lambda exc: isinstance(exc, TimeoutError))  # type: ignore[arg-type]
    bad = TidalSource(fail=True)  # ConnectionError: this query's problem, not the backend's
    good = TidalSource()
    r.register("bad", bad, history_seconds=7 * DAY, step_seconds=STEP, quantile=0.95, backend="one")
    r.register(
        "good", good, history_seconds=7 * DAY, step_seconds=STEP, quantile=0.95, backend="one"
    )
    assert r.refresh_due() == 2
    assert r.status("bad").state is ForecastState.FETCH_ERROR  # type: ignore[union-attr]
    assert r.latest("good") is not None


def test_a_backend_that_is_down_is_asked_again_after_the_retry_delay() -> None:
    clock = Clock()

    class Hung(TidalSource):
        def __call__(self, start: float, end: float, step: float) -> tuple[np.ndarray, np.ndarray]:
            self.calls.append((start, end, step))
            if self.fail:
                raise TimeoutError("no answer")
            return super().__call__(start, end, step)

    r = _refresher(
        clock,
        workers=2,
        retry_seconds=60.0,
        backend_down=lambda exc: isinstance(exc, TimeoutError),  # type: ignore[arg-type]
    )
    sources = {key: Hung(fail=True) for key in "abc"}
    for key, fetch in sources.items():
        r.register(
            key, fetch, history_seconds=7 * DAY, step_seconds=STEP, quantile=0.95, backend="one"
        )
    other = TidalSource()
    r.register(
        "other", other, history_seconds=7 * DAY, step_seconds=STEP, quantile=0.95, backend="two"
    )
    # One of the three is asked; it times out; the others wait; the other backend is refit.
    assert r.refresh_due() == 2
    assert sum(len(s.calls) for s in sources.values()) == 1
    assert r.latest("other") is not None
    waiting = [k for k in "abc" if not sources[k].calls]
    for key in waiting:
        status = r.status(key)
        assert status is not None and status.state is ForecastState.FETCH_ERROR
        assert status.message == (
            "not fetched: the backend did not answer another series' history fetch; "
            "next try in 60 s"
        )
    clock.now += 59
    assert r.refresh_due() == 0
    for fetch in sources.values():
        fetch.fail = False
    clock.now += 1
    assert r.refresh_due() == 3  # the backend answers again: all three refit
    assert all(r.latest(key) is not None for key in "abc")


def test_backends_that_did_not_answer_share_one_worker_for_their_retries() -> None:
    clock = Clock()
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def hung(start: float, end: float, step: float) -> tuple[np.ndarray, np.ndarray]:
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        raise TimeoutError("no answer")

    r = _refresher(
        clock,
        workers=4,
        retry_seconds=60.0,
        backend_down=lambda exc: isinstance(exc, TimeoutError),  # type: ignore[arg-type]
    )
    for i in range(6):
        r.register(
            f"hung-{i}",
            hung,
            history_seconds=7 * DAY,
            step_seconds=STEP,
            quantile=0.95,
            backend=f"down-{i}",
        )
    assert r.refresh_due() == 6  # first failures: nothing is known yet, up to 4 at once
    assert running[1] > 1
    running[1] = 0
    clock.now += 60.0
    healthy = TidalSource()
    r.register(
        "ok", healthy, history_seconds=7 * DAY, step_seconds=STEP, quantile=0.95, backend="up"
    )
    assert r.refresh_due() == 7  # every retry, one after the other, beside the healthy fit
    assert running[1] == 1
    assert r.latest("ok") is not None


class _TidalPrometheus:
    """The service's history fetch (`PrometheusSource.range`) over `TidalSource`."""

    def __init__(self) -> None:
        self.tide = TidalSource()

    def range(
        self, address: str, query: str, start: float, end: float, step: float, **_: object
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.tide(start, end, step)


def test_a_forecast_covers_the_longest_lead_a_policy_may_have_until_it_is_two_refits_old() -> None:
    clock = Clock()
    service = ForecastService(_TidalPrometheus(), clock=clock, start=False)  # type: ignore[arg-type]
    policy = parse_policy(
        {
            "query": "sum(a)",
            "threshold": "10",
            "forecast": "on",
            "podStartupSeconds": "1d",
            "metricLagSeconds": "1h",
        }
    )
    address = "http://127.0.0.1:9"
    assert service.forecast_for(address, "sum(a)", policy, clock.now) == (None, "first fit pending")
    assert service.refresher.refresh_due() == 1
    lead = lead_seconds(policy, EngineSettings(polling_interval_seconds=30.0))
    assert lead > DAY
    clock.now += 2 * service.refresher.refit_seconds - 1.0  # refits late: still covered
    forecast, problem = service.forecast_for(address, "sum(a)", policy, clock.now)
    assert problem is None and forecast is not None
    assert forecast.end >= clock.now + lead


def test_a_failed_history_fetch_is_logged_without_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An operator's URL may carry a password and a tenant's headers a bearer token: the
    refresher's log lines name the series without either."""
    policy = parse_policy(
        {
            "query": "sum(a)",
            "threshold": "10",
            "forecast": "on",
            "customHeaders": "Authorization=Bearer TOPSECRETTOKEN",
        }
    )
    address = "http://alice:s3cr3tPW@127.0.0.1:9"  # the discard port: refused
    with PrometheusSource() as source:
        service = ForecastService(source, start=False)
        assert service.forecast_for(address, "sum(a)", policy, T0)[0] is None
        with caplog.at_level("WARNING"):
            assert service.refresher.refresh_due() == 1
    lines = [record.getMessage() for record in caplog.records]
    assert any("history fetch failed" in line for line in lines), lines
    text = "\n".join(lines)
    assert "forecast 'sum(a)' at http://***@127.0.0.1:9 (options BackendOptions(" in text
    assert "custom_headers=['Authorization']" in text
    assert "s3cr3tPW" not in text and "TOPSECRETTOKEN" not in text


# -- a series with no samples while its workload sleeps ----------------------------------

MIDNIGHT = 1_704_067_200.0  # 2024-01-01T00:00:00Z


class BusinessHoursSource:
    """Requests/s from 06:00 to 22:00 UTC and no sample at all at night: what
    `sum(rate(...))` over a workload's own pods gives once it is at zero pods."""

    def __init__(self) -> None:
        self.values = business_hours(10, MIDNIGHT)
        self.values[self.values == 0.0] = np.nan  # absent, not 0

    def __call__(self, start: float, end: float, step: float) -> tuple[np.ndarray, np.ndarray]:
        times = np.arange(start, end + step / 2, step)
        index = np.round((times - MIDNIGHT) / 60.0).astype(np.int64)
        inside = (index >= 0) & (index < len(self.values))
        out = np.full(len(times), np.nan)
        out[inside] = self.values[index[inside]]
        return times, out


def _night_forecast(absent_is_zero: bool) -> np.ndarray:
    clock = Clock(MIDNIGHT + 8 * DAY + 2 * 3600)  # 02:00, four hours into the night
    r = _refresher(clock)
    r.register(
        "web",
        BusinessHoursSource(),
        history_seconds=7 * DAY,
        step_seconds=60.0,
        quantile=0.95,
        horizon_seconds=3 * 3600,
        absent_is_zero=absent_is_zero,
    )
    assert r.refresh_due() == 1
    forecast = r.latest("web")
    assert forecast is not None
    night = forecast.window(clock.now, clock.now + 3 * 3600)  # 02:00 to 05:00
    return np.asarray(forecast.median[night.start : night.stop])


def test_a_night_without_samples_is_forecast_idle_as_the_query_reads_it() -> None:
    """The query reads an empty result as 0 (ignoreNullValues, the default): the forecast
    of the nights it has seen empty must say idle, or it keeps the workload awake."""
    assert np.all(_night_forecast(absent_is_zero=True) == 0.0)
    # Left unknown, the nights took the evening's last level.
    assert np.all(_night_forecast(absent_is_zero=False) > 1.0)


def test_only_steps_between_the_first_and_last_samples_read_as_zero() -> None:
    nan = np.nan
    history = np.array([nan, nan, 5.0, nan, nan, 7.0, nan, 3.0, nan, nan])
    filled = absent_as_zero(history)
    assert np.array_equal(
        filled, np.array([nan, nan, 5.0, 0.0, 0.0, 7.0, 0.0, 3.0, nan, nan]), equal_nan=True
    )
    assert np.isnan(history[3])  # the held history is not changed
    # A query that stopped matching a day ago still ages out: its trailing steps stay
    # unknown, whatever came before.
    assert np.array_equal(
        absent_as_zero(np.array([nan, 4.0, nan])), [nan, 4.0, nan], equal_nan=True
    )
    assert np.isnan(absent_as_zero(np.full(5, nan))).all()
