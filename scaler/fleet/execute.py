"""Ship one task per service to a Dask cluster, stream results back, cache them.

Local by default (a `distributed.LocalCluster` with one single-threaded worker
process per core: the simulator is numpy- and Python-bound, so processes, not
threads); `scheduler` names a running Dask scheduler (`tcp://host:8786`), for
example one deployed by the Dask Kubernetes operator or Helm chart. Every
finished service is written to the cache at once, so a rerun with the same
inputs and settings recomputes nothing that finished.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scaler import __version__
from scaler.cli_support import make_folder
from scaler.fleet.evaluate import FAILED, FleetSettings, ServiceResult, evaluate_service
from scaler.fleet.services import ServiceSource, service_key
from scaler.traces.model import FILLED

OnResult = Callable[[ServiceResult, bool], None]  # (result, came from the cache)
# Local worker processes; more is a typo, not a setting (each is a Python process).
MAX_WORKERS = 1024
# Part of every cache key: a change of what a result says (new recommendations, a
# reason) or of how its input is read makes the cached results of the same version
# stale. 4: a trace whose step changes is refused (a filled one was cached). 5: trigger
# metadata carries the query.
RESULT_FORMAT = 5


@dataclass(frozen=True)
class FleetRun:
    results: tuple[ServiceResult, ...]
    computed: int  # services evaluated in this run
    cached: int  # services read from the cache
    workers: int


class ResultCache:
    """One JSON file per (service inputs, settings, version) under `folder`."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        if folder is not None:
            make_folder(folder)

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.json"

    def get(self, key: str) -> ServiceResult | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            record.pop("forecast_skill", None)
            record.pop("room", None)
            return ServiceResult(**record)
        except (ValueError, TypeError):
            return None  # a torn or older file: evaluate again

    def put(self, key: str, result: ServiceResult) -> None:
        path = self._path(key)
        if path is None:
            return
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(result.as_dict()), encoding="utf-8")
        temporary.replace(path)  # atomic: an interrupted run leaves no torn result


@contextmanager
def dask_client(scheduler: str | None, workers: int | None) -> Iterator[object]:
    """A client of the named scheduler, or of a local cluster with `workers` processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        # LocalCluster(n_workers=-1) starts no worker and waits forever; 0 means all cores.
        raise ValueError(f"workers must be from 1 to {MAX_WORKERS}, got {workers}")
    count = workers or os.cpu_count() or 1
    with _workers_ignore_ctrl_c():
        cluster = LocalCluster(
            n_workers=count,
            threads_per_worker=1,
            processes=True,
            # No dashboard; the scheduler's HTTP server (health, metrics) on a free loopback
            # port, where it took Dask's 8787 and warned on stderr when that was busy.
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            host="127.0.0.1",
            # Errors only: on Ctrl-C the workers and nannies logged the cancelled tasks and
            # the kill of a busy worker as warnings, in lines longer than the one that says
            # the run was interrupted. A service that fails is reported with its error.
            silence_logs=logging.ERROR,
        )
    with cluster, Client(cluster) as client:
        yield client


@contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Worker processes started within ignore SIGINT.

    Ctrl-C on a terminal signals the whole process group: each worker printed its own
    KeyboardInterrupt traceback. A process inherits an ignored signal (through exec,
    and Python keeps it ignored), so the workers ignore it and the driver, which gets
    it as ever once this returns, stops them. A Ctrl-C during the start (a second or
    two) is lost with them; only the main thread may change signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        # (None: a handler installed outside Python; Python's own is the closest.)
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


def run_fleet(
    services: Sequence[ServiceSource],
    settings: FleetSettings,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    cache: ResultCache | None = None,
    on_result: OnResult | None = None,
) -> FleetRun:
    """Evaluate every service; results in the order of `services`."""
    from distributed import as_completed

    cache = cache or ResultCache(None)
    settings_key = settings.as_dict()
    version = f"{__version__}/{RESULT_FORMAT}"
    keys = [service_key(s, settings_key, version) for s in services]
    # A trace without gaps gives the same result under every --fill-missing: kept apart
    # from the fill mode, so that changing it recomputes only the services it fills.
    whole = [service_key(s, settings_key, version, filled=False) for s in services]
    results: dict[int, ServiceResult] = {}
    for index, key in enumerate(keys):
        hit = cache.get(key) or cache.get(whole[index])
        if hit is not None:
            results[index] = hit
            if on_result is not None:
                on_result(hit, True)
    todo = [i for i in range(len(services)) if i not in results]
    worker_count = 0
    if todo:
        with dask_client(scheduler, workers) as client:
            worker_count = len(client.scheduler_info()["workers"])  # type: ignore[attr-defined]
            futures = {
                client.submit(  # type: ignore[attr-defined]
                    evaluate_service, services[i], settings, key=f"service-{keys[i]}", pure=False
                ): i
                for i in todo
            }
            for future in as_completed(futures):
                index = futures[future]
                error = future.exception()
                if error is not None:  # a worker died or the task could not be shipped
                    result = ServiceResult(
                        services[index].name, FAILED, error=f"{type(error).__name__}: {error}"
                    )
                else:
                    result = future.result()
                    if result.recommendation != FAILED:  # a failure is retried on a rerun
                        filled = any(note.startswith(FILLED) for note in result.input_notes)
                        cache.put(keys[index] if filled else whole[index], result)
                results[index] = result
                if on_result is not None:
                    on_result(result, False)
    return FleetRun(
        tuple(results[i] for i in range(len(services))),
        computed=len(todo),
        cached=len(services) - len(todo),
        workers=worker_count,
    )


def run_serial(
    services: Sequence[ServiceSource], settings: FleetSettings
) -> tuple[ServiceResult, ...]:
    """Every service in this process, one after another: the baseline of the benchmark."""
    return tuple(evaluate_service(s, settings) for s in services)
