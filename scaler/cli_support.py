"""What every long-running subcommand needs: output paths checked before the work,
and progress that shows both on a terminal and in a CI log.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import select
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from rich.text import Text

from scaler.durations import parse_duration

# JSON outputs carry this; it changes when a field changes meaning or goes away.
SCHEMA_VERSION = 1
# Without a terminal, one progress line at most this often (CI logs stay short).
PROGRESS_EVERY_SECONDS = 5.0


def error_text(message: object) -> Text:
    """ "error: MESSAGE" for a Rich console, the message verbatim (see `labelled`)."""
    return labelled("error:", "red", message)


def warning_text(message: object) -> Text:
    """ "warning: MESSAGE" for a Rich console, the message verbatim (see `labelled`)."""
    return labelled("warning:", "yellow", message)


def labelled(label: str, style: str, message: object) -> Text:
    """`label` in `style`, then `message` as it is: messages carry paths, flags and
    values from the user, which Rich would otherwise read as markup ("[/x]" in a
    file name crashes the print, "[prod]" vanishes from it)."""
    return Text.assemble((label, style), " ", str(message))


URL_SHAPE = "an http:// or https:// base URL with a host (e.g. http://prometheus:9090)"


_QUERY_API = re.compile(r"/api/v1(/[a-z_]+)?/?$")


def url_problem(text: str) -> str | None:
    """Why `text` is not a Prometheus base URL tidescaler can append /api/v1/... to."""
    url = text.strip()
    if any(c.isspace() for c in url):
        return f"must be {URL_SHAPE}, without spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is the check: 99999 or 'abc' raise)
    except ValueError as err:
        return f"must be {URL_SHAPE}: {err}"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"must be {URL_SHAPE}"
    if parts.query or parts.fragment:
        return f"must be {URL_SHAPE}, without ?query or #fragment"
    # The query API itself pasted in (.../api/v1 or .../api/v1/query): not a base URL
    # that happens to contain /api/v1 (the API server's service proxy).
    api = _QUERY_API.search(parts.path)
    if api is not None:
        # Without ?query or #fragment the URL ends with its path.
        base = url[: len(url) - len(parts.path) + api.start()]
        return (
            f"must be {URL_SHAPE}: tidescaler adds the /api/v1/... path itself "
            f"(did you mean {base!r}?)"
        )
    return None


def prometheus_url_arg(text: str) -> str:
    """An argparse type: one base URL, or blank for none."""
    if not text.strip():
        return ""
    problem = url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
    return text


def duration_arg(text: str) -> float:
    """An argparse type: a duration such as 90s, 15m, 7d (or plain seconds)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def finite_float(text: str) -> float:
    """An argparse type: a finite number. float() takes "nan", "inf" and "1e999" (inf),
    which pass every `x <= 0` check and crash or poison the run later; the ranges of
    each flag are checked where the flag is used, with the flag's own message."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:60]!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text[:60]!r}: expected a finite number")
    return value


class OutputPathError(ValueError):
    """An output flag that names a path the run could not write at its end."""


def _reason(err: OSError) -> str:
    return err.strerror or err.__class__.__name__


def check_output_file(path: str | None, flag: str) -> None:
    """A file the run will write: its folder must exist, it must not be a folder, and it
    must be writable (tried now, so that a run does not fail after the work)."""
    if not path:
        return
    if path == "-":  # --trace - reads stdin; an output of "-" would be a file of that name
        raise OutputPathError(
            f"{flag} -: standard output carries the report here; name a file (e.g. {flag} out.csv)"
        )
    # A symlink is written through, so its target is what is checked (a dangling link to
    # a file not yet made is fine when the target's folder is writable). realpath does
    # not raise on a loop; the open below then fails with the loop's own reason.
    target = Path(os.path.realpath(path))
    if target.is_symlink():  # what realpath leaves of a loop
        raise OutputPathError(f"{flag} {path}: a symlink loop; name a file or fix the link")
    if target.is_dir():
        raise OutputPathError(f"{flag} {path}: is a folder; name a file inside it")
    parent = target.parent
    if not parent.is_dir():
        raise OutputPathError(
            f"{flag} {path}: folder {parent} does not exist; create it or pick another path"
        )
    try:
        if target.exists():
            if target.is_file():
                # Append mode changes nothing, yet fails as the write would (permissions).
                with target.open("a"):
                    pass
            elif not os.access(target, os.W_OK):  # a device or pipe: opening may block
                raise PermissionError(13, "Permission denied")
        else:
            with target.open("x"):
                pass
            target.unlink()
    except OSError as err:
        raise OutputPathError(f"{flag} {path}: cannot write there ({_reason(err)})") from None


Inputs = Iterable[tuple[str, str | Path | None]]


def check_not_an_input(path: str | None, flag: str, inputs: Inputs) -> None:
    """An output file must not be a file the run reads: writing it would destroy the
    input (and a later run would read the output as traffic). `inputs` are (what it is,
    its path) pairs; stdin (-) and absent ones are skipped."""
    if not path:
        return
    what = _input_at(path, inputs)
    if what is not None:
        raise OutputPathError(f"{flag} {path}: is {what}, which this run reads; name another file")


def check_folder_not_an_input(
    folder: str | None, names: Iterable[str], flag: str, inputs: Inputs
) -> None:
    """`check_not_an_input` for each file a run writes into `folder` (`names`), before
    any of them is written: one of them may be the very file the run reads."""
    if not folder:
        return
    inputs = list(inputs)
    for name in names:
        path = os.path.join(folder, name)
        what = _input_at(path, inputs)
        if what is not None:
            raise OutputPathError(
                f"{flag} {folder}: would overwrite {path}, {what}, which this run reads; "
                "name another folder"
            )


def check_file_not_in_folder_output(
    path: str | None, flag: str, folder: str | None, names: Iterable[str], folder_flag: str
) -> None:
    """An output file must not be one a run also writes into its output folder: one
    write would replace the other."""
    if not path or not folder:
        return
    for name in names:
        if _same_file(path, os.path.join(folder, name)):
            raise OutputPathError(
                f"{flag} {path}: is where {folder_flag} writes {name}; name another file"
            )


def _input_at(path: str, inputs: Inputs) -> str | None:
    """What input `path` is (its `what`), or None when it is none of them."""
    for what, source in inputs:
        if source is None or str(source) in ("", "-"):
            continue
        if _same_file(path, source):
            return what
    return None


def _same_file(a: str | Path, b: str | Path) -> bool:
    """One file under two names: the same path once links are resolved, or (a hard
    link, a case-insensitive disk) the same file on disk."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # either one does not exist (yet): not the same file
        return False


def make_folder(path: Path) -> None:
    """`mkdir -p` of an output folder, also through a symlink to a folder not made yet."""
    # mkdir does not follow a dangling symlink (it fails with "File exists"): the folder
    # made is the one the link points to, as a write through the link would expect.
    Path(os.path.realpath(path)).mkdir(parents=True, exist_ok=True)


def check_output_dir(path: str | None, flag: str) -> None:
    """A folder the run will fill: it may not exist yet, but must not be a file, and a
    file must be creatable in it (tried now; folders created for the try are removed)."""
    if not path:
        return
    target = Path(os.path.realpath(path))
    if target.is_symlink():  # what realpath leaves of a loop
        raise OutputPathError(f"{flag} {path}: a symlink loop; name a folder or fix the link")
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{flag} {path}: is a file, not a folder; name a folder")
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputPathError(f"{flag} {path}: {parent} is a file, not a folder")
    missing = [p for p in (target, *target.parents) if not p.exists()]
    try:
        make_folder(target)
        # Through the path as given, as the run will write: realpath reads "gone/.."
        # in a link as its parent, where the kernel finds no "gone".
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise OutputPathError(f"{flag} {path}: cannot write there ({_reason(err)})") from None
    finally:
        for made in missing:  # deepest first: leave the disk as it was
            with contextlib.suppress(OSError):  # not empty: not ours to remove
                made.rmdir()


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


# -- flags given on the command line, told from flags left at their default --------------------

_GIVEN = "given_options"  # the namespace attribute that holds them


def track_given(parser: argparse.ArgumentParser, *options: str) -> None:
    """Make each of `options` note, when the command line gives it, that it was given, for
    `given`: a flag whose default is a value (--fill-missing error) cannot be told from one
    that was left alone by its value, and one that has no effect must be refused only then."""
    wanted = set(options)
    for action in parser._actions:
        if wanted & set(action.option_strings):
            action.__class__ = _noting(type(action))


def given(args: argparse.Namespace, option: str) -> bool:
    """Whether the command line gave `option` (one that `track_given` tracks)."""
    return option in getattr(args, _GIVEN, ())


def _noting(kind: type[argparse.Action]) -> type[argparse.Action]:
    """`kind` of argparse action that also notes its option strings as given."""

    class Noting(kind):  # type: ignore[valid-type,misc]
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: object,
            option_string: str | None = None,
        ) -> None:
            super().__call__(parser, namespace, values, option_string)
            # A new set each time: a subcommand's namespace is copied onto the main one.
            noted = set(getattr(namespace, _GIVEN, ())) | set(self.option_strings)
            setattr(namespace, _GIVEN, noted)

    Noting.__name__ = f"Noting{kind.__name__}"
    return Noting


# -- a reader that stops early: `tidescaler ... | head` -----------------------------------------

# The exit status when standard output is closed before the output is all written: what
# Python's own recipe (the signal module's "Note on SIGPIPE") and Rich, which prints the
# tables, exit with, so every subcommand and every output ends the same way.
STDOUT_CLOSED = 1


def closed_stdout_quietly(
    command: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """Run a subcommand; when whatever reads its output stops early (`| head`), end with
    status STDOUT_CLOSED and no traceback instead of a BrokenPipeError."""
    try:
        status = command(args)
        sys.stdout.flush()  # output still buffered fails here, not as Python exits
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket's, say: a real failure, not the reader going away
        _stdout_to_devnull()
        return STDOUT_CLOSED
    return status


def _stdout_closed() -> bool:
    """Whether nothing reads standard output any more (a pipe whose reader has gone)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no poll, or no file: assume it is
        return True
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in events)


def _stdout_to_devnull() -> None:
    """Point standard output at /dev/null: Python flushes it again as it exits, which
    would fail the same way and print "Exception ignored ... BrokenPipeError"."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
