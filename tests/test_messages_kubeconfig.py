"""Without any Kubernetes configuration, a command that needs the API says what to do.

The client library's own words, "Invalid kube-config file. No configuration found.",
name neither where it looked nor the flag or variable that would fix it. Run as a user
runs them: a real process, HOME an empty folder, KUBECONFIG unset, not in a pod.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ADVICE = "pass --kubeconfig FILE or set KUBECONFIG (or run inside a cluster)"


def run_cli(tmp_path: Path, *argv: str, kubeconfig: str | None = None) -> tuple[int, str]:
    """(exit status, standard error) of `tidescaler argv...` in a bare environment."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    env |= {"HOME": str(home), "PYTHONPATH": str(ROOT), "COLUMNS": "400"}
    if kubeconfig is not None:
        env["KUBECONFIG"] = kubeconfig
    done = subprocess.run(
        [sys.executable, "-m", "scaler.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("simulate", "--from-cluster", "shop/web", "--prometheus-url", "http://127.0.0.1:9090"),
        ("backtest", "--from-cluster", "shop/web"),
    ],
    ids=["simulate", "backtest"],
)
def test_no_kubeconfig_says_where_it_looked_and_what_to_do(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    status, err = run_cli(tmp_path, *argv)
    assert status == 2
    assert err.strip() == (
        "error: Kubernetes configuration: no kubeconfig found (looked at ~/.kube/config); " + ADVICE
    )


def test_a_kubeconfig_variable_naming_no_file_is_named(tmp_path: Path) -> None:
    missing = f"{tmp_path}/a{os.pathsep}{tmp_path}/b"
    status, err = run_cli(tmp_path, "backtest", "--from-cluster", "shop/web", kubeconfig=missing)
    assert status == 2
    assert f"(looked at KUBECONFIG={missing}); {ADVICE}" in err


def test_serve_asked_for_events_gives_the_same_advice(tmp_path: Path) -> None:
    # Refused before any port opens: the API was asked for and there is none.
    status, err = run_cli(tmp_path, "serve", "--events", "on", "--port", "0", "--metrics-port", "0")
    assert status == 2
    assert "--events on: no Kubernetes API: Kubernetes configuration: no kubeconfig found" in err
    assert ADVICE in err
