"""The fleet report: per-service rows, fleet totals, a ranked plot; Markdown, JSON, CSV."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scaler import __version__
from scaler.cli_support import make_folder
from scaler.fleet.evaluate import USE_TIDESCALER, FleetSettings, ServiceResult

# Why a service is not in the fleet totals when tidescaler is recommended for it: its
# saving has no reactive figure to be measured against.
NO_REACTIVE = "use tidescaler, no reactive setting meets the budget"

SCHEMA_VERSION = 2  # 2: sMAPE as a ratio, as backtest --json gives it
CSV_FIELDS = (
    "name",
    "recommendation",
    "saving",
    "room",
    "reactive_replica_hours",
    "tidescaler_replica_hours",
    "reactive_setting",
    "tidescaler_setting",
    "forecast_skill",
    "forecast_smape",
    "baseline_smape",
    "baseline",
    "forecast_coverage",
    "days",
    "step_seconds",
    "peak_rps",
    "capacity_per_replica",
    "error",
    "reason",
)


@dataclass(frozen=True)
class FleetTotals:
    services: int
    recommendations: dict[str, int]
    # Replica-hours over the evaluated span if every service kept reactive, and if
    # the recommended ones moved to tidescaler.
    reactive_replica_hours: float
    recommended_replica_hours: float
    # Services without both figures (no reactive cost to total), by why: counting them
    # as zero would make a fleet of failures look like a fleet that costs nothing.
    left_out: dict[str, int]

    @property
    def compared(self) -> int:
        return self.services - sum(self.left_out.values())

    @property
    def saving(self) -> float | None:
        if self.reactive_replica_hours <= 0:
            return None
        return 1.0 - self.recommended_replica_hours / self.reactive_replica_hours


def totals(results: Sequence[ServiceResult]) -> FleetTotals:
    reactive = recommended = 0.0
    left_out: Counter[str] = Counter()
    for r in results:
        if r.reactive_replica_hours is None:
            left_out[NO_REACTIVE if r.recommendation == USE_TIDESCALER else r.recommendation] += 1
            continue
        reactive += r.reactive_replica_hours
        if r.recommendation == USE_TIDESCALER and r.tidescaler_replica_hours is not None:
            recommended += r.tidescaler_replica_hours
        else:
            recommended += r.reactive_replica_hours
    counts = Counter(r.recommendation for r in results)
    return FleetTotals(
        len(results),
        dict(sorted(counts.items())),
        reactive,
        recommended,
        dict(sorted(left_out.items())),
    )


def describe_left_out(t: FleetTotals) -> str:
    """Services not in the totals, by why: '1 failed, 2 too little history' ('' if none)."""
    return ", ".join(f"{n} {why}" for why, n in t.left_out.items())


def ranked(results: Sequence[ServiceResult]) -> list[ServiceResult]:
    """Largest saving first; services without a saving last, by name."""
    return sorted(results, key=lambda r: (r.saving is None, -(r.saving or 0.0), r.name))


def report_json(results: Sequence[ServiceResult], settings: FleetSettings) -> dict[str, object]:
    t = totals(results)
    return {
        "schema_version": SCHEMA_VERSION,
        "tidescaler_version": __version__,
        "settings": settings.as_dict(),
        "totals": {
            "services": t.services,
            "recommendations": t.recommendations,
            "reactive_replica_hours": t.reactive_replica_hours,
            "recommended_replica_hours": t.recommended_replica_hours,
            "saving": t.saving,
            "compared": t.compared,
            "left_out": t.left_out,
        },
        "services": [_shares(r.as_dict()) for r in ranked(results)],
    }


def _shares(record: dict[str, object]) -> dict[str, object]:
    """A service's record as written: sMAPE as a ratio (0 to 2), as backtest --json and the
    metrics give it (the forecaster scores it in per cent)."""
    for key in ("forecast_smape", "baseline_smape"):
        value = record.get(key)
        if isinstance(value, float):
            record[key] = value / 100.0
    return record


def write_csv(results: Sequence[ServiceResult], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in ranked(results):
            writer.writerow(_shares(r.as_dict()))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f} %"


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _totals_line(t: FleetTotals) -> str:
    left_out = describe_left_out(t)
    if t.compared == 0:
        return f"No service has replica-hours to total (left out: {left_out})."
    line = (
        f"Fleet total over the evaluated span: {_num(t.reactive_replica_hours)} replica-hours "
        f"with reactive scaling everywhere, {_num(t.recommended_replica_hours)} with the "
        f"recommendations (saving {_pct(t.saving).lstrip('+')})"
    )
    if left_out:
        line += f", over {t.compared} of the {t.services} services (left out: {left_out})"
    return line + "."


def markdown(results: Sequence[ServiceResult], settings: FleetSettings, command: str) -> str:
    t = totals(results)
    lines = [
        "# Fleet report",
        "",
        f"`{command}`" if command else "",
        "",
        f"{t.services} services at a violation budget of "
        f"{100 * settings.violation_budget:g} % of requests (SLO {settings.slo_ms:g} ms). "
        + ", ".join(f"{n} {k}" for k, n in t.recommendations.items())
        + ".",
        "",
        _totals_line(t),
        "",
        "![savings](savings.png)",
        "",
        "| service | recommendation | saving | room | reactive replica-h (setting) | "
        "tidescaler replica-h (setting) | forecast skill | coverage |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ranked(results):
        lines.append(
            f"| {r.name} | {r.recommendation}"
            + (f" ({r.error})" if r.error else "")
            + (f" ({r.reason})" if r.reason else "")
            + f" | {_pct(r.saving)} | {_pct(r.room)}"
            f" | {_num(r.reactive_replica_hours)} ({r.reactive_setting or '—'})"
            f" | {_num(r.tidescaler_replica_hours)} ({r.tidescaler_setting or '—'})"
            f" | {_pct(r.forecast_skill)} | {_pct(r.forecast_coverage).lstrip('+')} |"
        )
    noted = [r for r in ranked(results) if r.input_notes]
    if noted:
        lines += ["", "## Input notes", ""]
        lines += [f"- {r.name}: {note}" for r in noted for note in r.input_notes]
    chosen = [r for r in ranked(results) if r.trigger_metadata]
    if chosen:
        lines += [
            "",
            "## Trigger metadata for the services that should move",
            "",
            "Paste into a ScaledObject trigger of `type: external` (add `scalerAddress`; the "
            "query must give the service's total requests per second, the unit of `threshold`).",
            "",
        ]
        for r in chosen:
            lines += [f"**{r.name}**", "", "```yaml"]
            lines += [f'{k}: "{v}"' for k, v in r.trigger_metadata.items()]
            lines += ["```", ""]
    lines += [
        "",
        "Saving: 1 - tidescaler / reactive replica-hours, each policy at the cheapest setting "
        "within the budget on the first half of the history, costed on the second half (the "
        "totals too). Room: 1 - floor / reactive replica-hours, the floor being the cheapest "
        "schedule within the budget on that half found knowing the demand in advance with pods "
        "that start at once: the most any autoscaler could save there. Forecast skill: 1 - "
        "forecaster sMAPE / best naive baseline sMAPE one hour "
        "ahead (positive: the forecast beats naive). Coverage: share of actual values under the "
        "forecast's upper band.",
    ]
    return "\n".join(lines) + "\n"


def plot_savings(results: Sequence[ServiceResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in ranked(results) if r.saving is not None]
    height = max(2.5, 0.25 * len(rows) + 1.0)
    fig, ax = plt.subplots(figsize=(8, height))
    names = [r.name for r in rows][::-1]
    values = [100 * (r.saving or 0.0) for r in rows][::-1]
    colors = ["#2a9d8f" if r.recommendation == USE_TIDESCALER else "#adb5bd" for r in rows][::-1]
    if not rows:  # an empty pair of axes read as a broken plot
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "No service has both policies within the budget: no saving to show\n"
            "(fleet.md says why for each)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return
    ax.barh(names, values, color=colors)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("replica-hours saved by tidescaler vs reactive at the budget (%)")
    ax.set_title("Which services gain from predictive scaling (green: recommended)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    results: Sequence[ServiceResult], settings: FleetSettings, out: Path, command: str
) -> list[Path]:
    make_folder(out)
    paths = [out / "fleet.md", out / "fleet.json", out / "fleet.csv", out / "savings.png"]
    paths[0].write_text(markdown(results, settings, command), encoding="utf-8")
    paths[1].write_text(json.dumps(report_json(results, settings), indent=2) + "\n", "utf-8")
    write_csv(results, paths[2])
    plot_savings(results, paths[3])
    return paths
