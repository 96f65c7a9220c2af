"""The README tells the truth about the command line: flag tables and the quick tour.

The flag tables (marked `<!-- flags: COMMAND -->`) must list exactly the
options argparse has, with the defaults the help shows; the quick tour's
commands run exactly as written, against a real Prometheus holding a
backfilled week of `http_requests_total`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_server import PrometheusServer, Series, grid, openmetrics

from scaler.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS = ("serve", "simulate", "backtest", "validate", "fleet")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def table_rows(command: str) -> list[list[str]]:
    marker = f"<!-- flags: {command} -->\n"
    assert marker in README, f"README has no flag table for {command}"
    rows = []
    for line in README.split(marker, 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def long_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        option: action
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help",)
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_is_in_the_readme_table_and_nothing_else(command: str) -> None:
    documented = {
        flag for row in table_rows(command) for flag in re.findall(r"`(--[a-z][a-z-]*)", row[0])
    }
    assert documented == set(long_options(subcommands()[command]))


@pytest.mark.parametrize("command", ("simulate", "backtest", "validate", "fleet"))
def test_help_shows_every_default_and_the_table_agrees(command: str) -> None:
    parser = subcommands()[command]
    rows = {
        re.findall(r"`(--[a-z-]+)", row[0])[0]: row
        for row in table_rows(command)
        if "`--" in row[0]
    }
    for option, action in long_options(parser).items():
        if isinstance(action, argparse._StoreTrueAction) and option in ("--json", "--synthetic"):
            assert rows[option][1] == "off"
            continue
        text = (action.help or "") % {"default": action.default}
        found = re.search(r"\(default: ([^)]*)\)$", text)
        assert found, f"{command} {option}: the help does not show the default"
        assert rows[option][1] == found[1], f"{command} {option}: README says {rows[option][1]}"


def test_help_text_renders_for_every_command() -> None:
    for command, parser in subcommands().items():
        assert "--help" in parser.format_help(), command


# -- the quick tour ---------------------------------------------------------------------------


def quick_tour() -> str:
    section = README.split("### Quick tour", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the quick tour has no sh block"
    return block[1]


@pytest.fixture
def web_traffic(prometheus_factory: Callable[..., PrometheusServer]) -> PrometheusServer:
    """Eight days of `http_requests_total{service="web"}` at 1 minute, up to a minute ago."""
    end = math.floor(time.time() / 60) * 60 - 60
    times = grid(end - 8 * 86400, end, 60)
    total, samples = 0.0, []
    for t in times:
        rate = 100 + 80 * math.cos(2 * math.pi * ((t % 86400) - 14 * 3600) / 86400)
        total += rate * 60
        samples.append((t, total))
    server = prometheus_factory(start=False, scrape=False)
    server.backfill(openmetrics([Series("http_requests_total", {"service": "web"}, samples)]))
    server.start()
    return server


@pytest.mark.prometheus
@pytest.mark.slow
def test_the_quick_tour_runs_as_written(web_traffic: PrometheusServer, tmp_path: Path) -> None:
    # `tidescaler` on PATH runs this checkout (not an installed copy).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "tidescaler"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m scaler.cli "$@"\n')
    shim.chmod(0o755)
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "PROMETHEUS": web_traffic.url,
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", quick_tour()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # 1 and 2 print their tables, 3 its scores; 2 wrote a report with the user's query.
    assert result.stdout.count("static-peak") >= 2
    assert "prometheus: 8 origins, band q=0.95" in result.stdout
    assert "note: web.json: values read as requests per second" in " ".join(result.stderr.split())
    report = (tmp_path / "report" / "report.md").read_text()
    assert 'query: sum(rate(http_requests_total{service="web"}[5m]))' in report
    export = json.loads((tmp_path / "web.json").read_text())
    assert len(export["data"]["result"][0]["values"]) == 7 * 1440 + 1
    assert "ScaledObject(s): no problem" in result.stderr
