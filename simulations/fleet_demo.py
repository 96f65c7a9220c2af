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

from scaler.sim.traffic import (
    OpeningSpec,
    TideSpec,
    Traffic,
    opening,
    synthetic_tide,
    write_trace,
)

STEP_SECONDS = 900.0
START = TideSpec().start  # every generator's default: Monday 2024-01-01 00:00 UTC


def services() -> dict[str, Traffic]:
    """The traffic of each service, by name."""

    def tide(days: float, peak_to_valley: float, peak_rps: float, seed: int) -> Traffic:
        spec = TideSpec(
            days=days,
            step_seconds=STEP_SECONDS,
            peak_to_valley=peak_to_valley,
            peak_rps=peak_rps,
        )
        return synthetic_tide(spec, seed)

    flat = np.full(int(6 * 86400 / STEP_SECONDS), 80.0)
    return {
        "checkout": tide(6, 50.0, 400.0, 1),  # strong tides
        "search": tide(6, 3.0, 150.0, 2),  # mild tides
        "batch-api": Traffic(START, STEP_SECONDS, flat),  # flat
        "new-service": tide(1, 10.0, TideSpec().peak_rps, 3),  # one day
        "exchange": opening(OpeningSpec(days=6), seed=4),  # tenfold at 09:00 UTC on weekdays
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    for name, traffic in services().items():
        write_trace(traffic, args.folder / f"{name}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
