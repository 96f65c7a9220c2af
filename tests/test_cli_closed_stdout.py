"""A reader that stops early (`tidescaler ... | head`) ends a subcommand quietly: status 1,
as Python's own recipe and Rich's tables end, and no BrokenPipeError traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The subcommands run as `tidescaler` runs them, each through `closed_stdout_quietly`.
THROUGH_THE_GUARD = """\
import sys
from scaler.cli import build_parser
from scaler.cli_support import closed_stdout_quietly
args = build_parser().parse_args(sys.argv[1:])
sys.exit(closed_stdout_quietly(args.func, args))
"""

SCALEDOBJECT = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: web}
spec:
  scaleTargetRef: {name: web}
  triggers:
    - type: external
      metadata: {scalerAddress: "tidescaler:9090", query: "sum(rate(x[1m]))", threshold: 10}
"""


def run_into_a_closed_pipe(code: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -c code argv...` with standard output a pipe nobody reads any more."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first byte: every write fails
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            timeout=120,
        )
    finally:
        os.close(write_end)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "tide.csv"
    rows = ["timestamp,requests"]
    rows += [f"{1_700_000_000 + 3600 * i},{100 + 50 * (i % 24 > 8)}" for i in range(5 * 24)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("table", [False, True], ids=["json", "rich-table"])
def test_backtest_into_a_closed_pipe_ends_quietly(tmp_path: Path, trace: Path, table: bool) -> None:
    argv = ["backtest", "--trace", str(trace), "--min-history", "2d", "--horizons", "1h"]
    done = run_into_a_closed_pipe(
        THROUGH_THE_GUARD, *argv, *([] if table else ["--json"]), cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert "Exception ignored" not in done.stderr


def test_validate_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    path = tmp_path / "so.yaml"
    path.write_text(SCALEDOBJECT, encoding="utf-8")
    done = run_into_a_closed_pipe(THROUGH_THE_GUARD, "validate", str(path), cwd=tmp_path)
    assert done.returncode == 1
    # Not even the summary: the command stopped at the first line nobody would read.
    assert done.stderr == ""


def test_a_broken_pipe_while_stdout_is_read_is_not_hidden(tmp_path: Path) -> None:
    """A BrokenPipeError of a socket, say, is a failure to show, not a reader gone."""
    code = """\
import argparse, sys
from scaler.cli_support import closed_stdout_quietly
def fails(args):
    raise BrokenPipeError(32, "Broken pipe (a socket)")
sys.exit(closed_stdout_quietly(fails, argparse.Namespace()))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "Broken pipe (a socket)" in done.stderr


def test_the_status_of_a_command_is_passed_on(tmp_path: Path) -> None:
    code = """\
import argparse, sys
from scaler.cli_support import closed_stdout_quietly
def prints(args):
    print("all of it")
    return 3
sys.exit(closed_stdout_quietly(prints, argparse.Namespace()))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "all of it\n", "")
