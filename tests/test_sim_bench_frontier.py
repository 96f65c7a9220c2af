"""The frontier benchmark's machinery on a tiny scenario: walk-forward picks, ratios, targets."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_frontier.py"

TINY = {
    "name": "tiny",
    "synthetic": {"days": 2.0, "step_seconds": 60, "peak_rps": 250, "peak_to_valley": 5},
    "warmup_days": 1,
    "cluster": {"capacity_per_replica": 50, "max_replicas": 30, "min_replicas": 1},
    "tidescaler": {"forecastHistory": "1d", "minReplicas": "1"},
    "policies": ["reactive", "tidescaler", "oracle"],
    "forecast_refit_seconds": 21600,
    "sweep": {
        "target_utilization": [0.5, 0.85],
        "scale_down_stabilization_seconds": [300],
        "policies": ["reactive", "tidescaler"],
    },
    "seed": 9,
}


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_frontier", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def violations(bench: ModuleType, path: Path, **changes: Any) -> dict[str, float]:
    """Each swept policy's violations summed over its settings, the scenario run with
    `_run`'s `changes` (startup=..., routing=...)."""
    points = bench._run(path, **changes).points
    return {
        name: sum(p.slo_violation_ratio for p in points if p.policy == name)
        for name in ("reactive", "tidescaler")
    }


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """The tiny scenario as a file."""
    written = tmp_path / "tiny.yaml"
    written.write_text(yaml.safe_dump(TINY))
    return written


def test_table_gives_walk_forward_picks_ratios_and_targets(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    bench.ROOT = tmp_path  # where the default results file would go
    assert bench.main([str(path), "--jobs", "1"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^\[1/1\] tiny: \d+ s \(\d+ s since the start\)$", err, re.M), err
    # Only the full run writes the default results file; a run of named scenarios
    # writes where --out says (next test), else only to stdout.
    assert not (tmp_path / "benchmarks").exists()
    rows = [line for line in out.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 2 and rows[0].startswith("| tiny | 0.1% |") and "| 1% |" in rows[1]
    outcome = bench._run(path)
    assert outcome.oracle_later_hours is not None and outcome.oracle_later_hours > 0
    rows_by_budget = [
        bench.with_gate(row)
        for row in bench.budget_rows(
            outcome.points, bench.BUDGETS, ("reactive", "tidescaler"), walk=True
        )
    ]
    for line, row in zip(rows, rows_by_budget, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        ratio, to_oracle, reactive_to_oracle, reactive_to_floor = cells[4:8]
        # The gated column: the forecast on only where its pick was cheaper on the first
        # half (the tuning span), its cost over reactive's on the second.
        tide_pick, reactive_pick = row.picks["tidescaler"], row.picks["reactive"]
        if tide_pick is not None and reactive_pick is not None:
            on = tide_pick.tuning.replica_hours < reactive_pick.tuning.replica_hours
            chosen = tide_pick if on else reactive_pick
            assert cells[8].endswith("(on)" if on else "(off)"), cells[8]
            assert float(cells[8].split()[0]) == pytest.approx(
                chosen.later.replica_hours / reactive_pick.later.replica_hours, abs=0.006
            )
        tide, reactive = row.cost("tidescaler"), row.cost("reactive")
        if tide is not None and reactive is not None:
            assert float(ratio) == pytest.approx(tide / reactive, abs=0.006)
        if tide is not None:
            assert float(to_oracle) == pytest.approx(tide / outcome.oracle_later_hours, abs=0.006)
            # No lower bound here: the oracle holds every instant within its tail (0.1 %),
            # so a policy within an aggregate budget may cost less than it.
            # Both policies sweep the same settings: the target and the down-window.
            assert re.search(r"target 0\.(5|85)\b", cells[3]) and "down-window 300" in cells[3]
        if reactive is not None:
            assert "down-window 300" in cells[2]
            assert float(reactive_to_oracle) == pytest.approx(
                reactive / outcome.oracle_later_hours, abs=0.006
            )
            # The budget floor on the same span, under every swept setting within it there.
            found = outcome.floors[row.budget]
            assert found is not None
            floor_hours, bound_hours = found
            assert float(reactive_to_floor) == pytest.approx(reactive / floor_hours, abs=0.006)
            assert 0 < bound_hours <= floor_hours
            for point in outcome.points:
                if point.later is not None and point.later.slo_violation_ratio <= row.budget:
                    assert point.later.replica_hours >= bound_hours
    assert "tidescaler at most 1x reactive on every scenario and budget" in out
    # Each loss is named with its ratio to three decimals (the table's two can read 1.00).
    expected = []
    for row in rows_by_budget:
        ratio, tide = row.ratio("tidescaler", "reactive"), row.cost("tidescaler")
        reactive = row.cost("reactive")
        if ratio is not None and ratio > 1.0:
            expected.append(f"tiny at {100 * row.budget:g} % ({ratio:.3f}x)")
        elif tide is None and reactive is not None:
            expected.append(f"tiny at {100 * row.budget:g} % (only reactive meets it)")
    verdict = "**met**" if not expected else f"**not met** ({'; '.join(expected)})"
    assert f"every scenario and budget: {verdict}" in out
    assert "median scenario at 0.1 %: tidescaler / reactive" in out
    gated_expected = [
        f"tiny at {100 * row.budget:g} % ({row.ratio(bench.GATED, 'reactive'):.3f}x)"
        for row in rows_by_budget
        if (row.ratio(bench.GATED, "reactive") or 0.0) > 1.0
    ]
    gated_verdict = (
        "**met**" if not gated_expected else f"**not met** ({'; '.join(gated_expected)})"
    )
    assert (
        f"the first half), at most 1x reactive on every scenario and budget: {gated_verdict}" in out
    )
    assert "median scenario at 1 %: tidescaler / oracle" in out
    if any(row.cost("reactive") is not None for row in rows_by_budget[:1]):
        assert "room at 0.1 %: on the median scenario where reactive meets the budget" in out
        assert "the budget floor at 0.1 %: on the median scenario where reactive" in out
        assert re.search(r"the least median at 0\.1 % any schedule .* \d\.\d{3}x reactive", out)
    assert "the floor against every swept setting of both policies" in out


def test_set_moves_tidescaler_alone_and_cannot_read_stored_results(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.main(["--from-results", "--set", "forecastAction=ramp"])
    assert "cannot read stored results" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--set", "forecastAction"])
    assert "expected KEY=VALUE" in capsys.readouterr().err
    runs = {
        action: bench._run(path, (("forecastAction", action),)).points
        for action in ("floor", "auto")
    }

    def hours(action: str, policy: str) -> list[float]:
        return [p.replica_hours for p in runs[action] if p.policy == policy]

    # The band held as a floor at all times costs more over a tide than auto's ramp.
    assert sum(hours("floor", "tidescaler")) > sum(hours("auto", "tidescaler"))
    assert hours("floor", "reactive") == hours("auto", "reactive")


def test_pod_startup_slows_both_policies_and_cannot_read_stored_results(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.main(["--from-results", "--pod-startup-seconds", "300"])
    assert "cannot read stored results" in capsys.readouterr().err

    fast, slow = violations(bench, path), violations(bench, path, startup=600.0)
    # Pods that start late leave both policies short on every rise.
    assert slow["reactive"] > fast["reactive"]
    assert slow["tidescaler"] > fast["tidescaler"]


def test_pooled_routing_leaves_fewer_violations_and_cannot_read_stored_results(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.main(["--from-results", "--routing", "pooled"])
    assert "cannot read stored results" in capsys.readouterr().err

    per_pod, pooled = violations(bench, path), violations(bench, path, routing="pooled")
    # One shared queue has no pod left idle while another queues: at the same replicas
    # (the same settings and traffic), fewer requests wait past the SLO.
    assert pooled["reactive"] < per_pod["reactive"]
    assert pooled["tidescaler"] < per_pod["tidescaler"]


def test_seed_draws_other_traffic_row_by_row_and_cannot_read_stored_results(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.main(["--from-results", "--seed", "1"])
    assert "cannot read stored results" in capsys.readouterr().err

    def hours(outcome: Any) -> list[float]:
        return [p.replica_hours for p in outcome.points]

    own, same, other = bench._run(path), bench._run(path, seed=9), bench._run(path, seed=10)
    assert (own.name, same.name, other.name) == ("tiny", "tiny (seed 9)", "tiny (seed 10)")
    assert hours(same) == hours(own)  # the scenario's own seed is 9: the same draws
    assert hours(other) != hours(own)  # another seed, other traffic

    out_file = tmp_path / "f.md"
    args = [str(path), "--seed", "9", "--seed", "10", "--jobs", "2", "--out", str(out_file)]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert out_file.read_text(encoding="utf-8") == out.removesuffix("\n")  # the table, as printed
    assert "| tiny (seed 9) | 0.1% |" in out and "| tiny (seed 10) | 0.1% |" in out
    assert f"--seed 9 --seed 10 {path}`" in out
