"""The daemon thread pool that runs decisions which may block on a backend."""

from __future__ import annotations

import asyncio
import threading

import pytest

from scaler.workers import DaemonThreadPool


def test_results_and_errors_come_back_through_the_event_loop() -> None:
    pool = DaemonThreadPool(2, "test")

    async def run() -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(pool, lambda: 6 * 7)
        with pytest.raises(ValueError, match="bad") as info:
            await loop.run_in_executor(pool, _fail)
        return value, str(info.value)

    try:
        assert asyncio.run(run()) == (42, "bad")
    finally:
        pool.shutdown()


def _fail() -> None:
    raise ValueError("bad")


def test_a_stuck_job_holds_neither_shutdown_nor_the_queued_jobs_behind_it() -> None:
    pool = DaemonThreadPool(1, "test")
    release = threading.Event()
    started = threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(30)

    running = pool.submit(stuck)
    assert started.wait(5)
    queued = pool.submit(lambda: 1)
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    assert not running.done()
    # A daemon: the interpreter abandons it at exit instead of waiting for it.
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("test-"))
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: 1)
    release.set()
    assert running.result(timeout=5) is None


def test_a_job_whose_caller_gave_up_before_it_started_is_skipped() -> None:
    pool = DaemonThreadPool(1, "test")
    release = threading.Event()
    ran: list[int] = []
    try:
        pool.submit(release.wait, 30)
        gave_up = pool.submit(ran.append, 1)
        assert gave_up.cancel()
        after = pool.submit(ran.append, 2)
        release.set()
        after.result(timeout=5)
        assert ran == [2]
    finally:
        release.set()
        pool.shutdown()


def test_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="at least 1 worker"):
        DaemonThreadPool(0, "test")
