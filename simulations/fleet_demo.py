"""Write the five synthetic services of the README's fleet report into a folder.

Usage: python simulations/fleet_demo.py fleet-demo/
       tidescaler fleet --traces fleet-demo/ --out fleet-report/

Six days (one day for the new service) on a 15-minute grid, and on a one-minute
grid for the exchange, whose jump at the opening lasts two minutes; seeded, so
the report in the README can be made again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from scaler.sim.traffic import OpeningSpec, TideSpec, opening, synthetic_tide

STEP_SECONDS = 900.0
START = 1_700_000_000


def services() -> dict[str, tuple[float, np.ndarray]]:
    """Step (seconds) and requests per second of each service, by name."""

    def tide(days: float, peak_to_valley: float, peak_rps: float, seed: int) -> np.ndarray:
        spec = TideSpec(
            days=days, step_seconds=STEP_SECONDS, peak_to_valley=peak_to_valley, peak_rps=peak_rps
        )
        return synthetic_tide(spec, seed).rate_per_second

    exchange = opening(OpeningSpec(days=6), seed=4).rate_per_second  # tenfold at 09:00
    return {
        "checkout": (STEP_SECONDS, tide(6, 50.0, 400.0, 1)),  # strong tides
        "search": (STEP_SECONDS, tide(6, 3.0, 150.0, 2)),  # mild tides
        "batch-api": (STEP_SECONDS, np.full(int(6 * 86400 / STEP_SECONDS), 80.0)),  # flat
        "new-service": (STEP_SECONDS, tide(1, 10.0, TideSpec().peak_rps, 3)),  # one day
        "exchange": (60.0, exchange),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    for name, (step, rate) in services().items():
        rows = (f"{START + int(i * step)},{round(r * step)}" for i, r in enumerate(rate))
        (args.folder / f"{name}.csv").write_text(
            "timestamp,requests\n" + "\n".join(rows) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
