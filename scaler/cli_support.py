"""What every long-running subcommand needs: output paths checked before the work,
and progress that shows both on a terminal and in a CI log.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from scaler.durations import parse_duration

# JSON outputs carry this; it changes when a field changes meaning or goes away.
SCHEMA_VERSION = 1
# Without a terminal, one progress line at most this often (CI logs stay short).
PROGRESS_EVERY_SECONDS = 5.0


def duration_arg(text: str) -> float:
    """An argparse type: a duration such as 90s, 15m, 7d (or plain seconds)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class OutputPathError(ValueError):
    """An output flag that names a path the run could not write at its end."""


def check_output_file(path: str | None, flag: str) -> None:
    """A file the run will write: its folder must exist and it must not be a folder."""
    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise OutputPathError(f"{flag} {path}: is a folder; name a file inside it")
    parent = target.parent
    if not parent.is_dir():
        raise OutputPathError(
            f"{flag} {path}: folder {parent} does not exist; create it or pick another path"
        )


def check_output_dir(path: str | None, flag: str) -> None:
    """A folder the run will fill: it may not exist yet, but must not be a file."""
    if not path:
        return
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{flag} {path}: is a file, not a folder; name a folder")
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputPathError(f"{flag} {path}: {parent} is a file, not a folder")


class ProgressLines:
    """Progress as plain lines on stderr, at most one per `every_seconds` (for logs)."""

    def __init__(
        self,
        stream: TextIO,
        what: str,
        every_seconds: float = PROGRESS_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._what = what
        self._every = every_seconds
        self._clock = clock
        self._began = clock()
        self._last = self._began

    def update(self, task: str, fraction: float) -> None:
        now = self._clock()
        if now - self._last < self._every:
            return
        self._last = now
        self._stream.write(
            f"{self._what}: {task} {100 * fraction:.0f}% ({now - self._began:.0f}s elapsed)\n"
        )
        self._stream.flush()
