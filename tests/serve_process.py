"""`tidescaler serve` in a child process on loopback, for tests of the whole program."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def serve_process(port: int, *flags: str) -> subprocess.Popen[str]:
    """Started with JSON logs on a pipe (stderr) and no /metrics; the caller ends it."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scaler.cli",
            "serve",
            "--host=127.0.0.1",
            f"--port={port}",
            "--metrics-port=0",
            "--log-format=json",
            *flags,
        ],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )


def stopped(process: subprocess.Popen[str]) -> str:
    """SIGTERM, a clean exit checked, and all it wrote on stderr; killed if it hangs."""
    try:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.stderr.read() if process.stderr else ""
