"""`tidescaler backtest`'s table cuts no name and no number, however narrow the output.

rich fitted the table to 80 columns (a pipe, a CI log) by cutting its widest column,
the method names: seasonal_naive_day and seasonal_naive_week both became
"seasonal_naive_…", which cannot be told apart.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from scaler.backtest_cli import print_table
from scaler.cli import main
from scaler.forecast.backtest import BASELINES, TIDESCALER, BacktestResult, Score
from scaler.traces import Trace

METHODS = (TIDESCALER, *BASELINES)


def wide_result() -> BacktestResult:
    """Scores as wide as a bad baseline makes them: MASE 1014.596 and more."""
    trace = Trace(np.array([0.0, 3600.0]), np.ones(2), 3600.0, "shop/web")
    horizons = (600.0, 3600.0, 86400.0)
    scores = tuple(
        Score(h, m, 187.5, 1014.596 * (i + 1), 0.5, 0.953 if m == TIDESCALER else None, 12345)
        for h in horizons
        for i, m in enumerate(METHODS)
    )
    return BacktestResult(trace, 0.95, horizons, 12345, 1.0, scores, {}, {})


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
@pytest.mark.parametrize("width", [40, 60, 80])
def test_every_method_name_and_score_is_whole(terminal: bool, width: int) -> None:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=terminal, color_system=None)
    print_table(wide_result(), console)
    text = out.getvalue()
    assert "…" not in text
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert len(rows) == 3 * len(METHODS)
    for method in METHODS:  # each row's own name, whole: the two seasonal ones differ
        assert sum(f"│ {method} " in row for row in rows) == 3
    for value in ("1014.596", "4058.384", "12345", "95.3"):
        assert value in text
    assert console.width == width  # the console is left as it was


def test_a_terminal_wide_enough_gets_the_table_unchanged() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True, color_system=None)
    print_table(wide_result(), console)
    header = next(line for line in out.getvalue().splitlines() if "horizon" in line)
    assert "sMAPE %" in header and "coverage %" in header  # no header wrapped


def test_a_narrow_terminal_wraps_headers_before_it_grows_past_its_edge() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    print_table(wide_result(), console)
    lines = out.getvalue().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert any("coverage" in line and "%" not in line for line in lines)  # wrapped


@pytest.fixture
def nine_days(tmp_path: Path) -> Path:
    path = tmp_path / "nine_days.csv"
    rows = ["timestamp,requests"]
    for i in range(9 * 24):
        rate = 100.0 + 60.0 * math.sin(2 * math.pi * i / 24)
        rows.append(f"{1_700_000_000 + 3600 * i},{round(rate * 3600)}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_the_command_piped_at_40_columns_prints_whole_names(
    nine_days: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # what rich takes as the width of a pipe
    flags = ["--horizons", "1h,1d", "--min-history", "8d", "--stride", "1h"]
    assert main(["backtest", "--trace", str(nine_days), *flags]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    for method in METHODS:
        assert f"│ {method} " in out
