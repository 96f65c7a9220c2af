"""Fleet speed: 64 synthetic services (7 days at 1 minute) on one process vs a local Dask cluster.

Usage: python benchmarks/bench_fleet.py [--services N] [--days D] [--workers W]

Writes one trace file per service into a temporary folder, then evaluates the
fleet twice with the same code: serially in this process (the baseline), and
on a `distributed.LocalCluster` with one worker process per core. Reports both
wall times, the speed-up against the ideal (the worker count), and the
overhead of shipping work: the extra wall time per service of a fleet of tiny
services (one day at 1 hour, "too little history" at once) over a fleet of one,
which leaves out the cluster's start-up (reported apart).
Writes benchmarks/results/fleet.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from scaler.fleet.evaluate import FleetSettings
from scaler.fleet.execute import run_fleet, run_serial
from scaler.fleet.services import from_folder
from scaler.sim.traffic import TideSpec, synthetic_tide


def write_fleet(folder: Path, services: int, days: float, step: float) -> None:
    rng = np.random.default_rng(7)
    for i in range(services):
        spec = TideSpec(
            days=days,
            step_seconds=step,
            peak_rps=float(rng.uniform(50, 2000)),
            peak_to_valley=float(rng.uniform(2, 60)),
        )
        rate = synthetic_tide(spec, seed=i).rate_per_second
        stamps = 1_700_000_000 + step * np.arange(len(rate))
        counts = np.round(rate * step).astype(np.int64)
        with (folder / f"service-{i:03d}.csv").open("w", encoding="utf-8") as handle:
            handle.write("timestamp,requests\n")
            handle.writelines(f"{int(t)},{c}\n" for t, c in zip(stamps, counts, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=64)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    # Seven targets per policy, as the fleet swept before its default went to 1 % steps
    # (56 targets): this measures how the runner spreads work, and a service's time
    # grows in proportion to the targets swept.
    settings = FleetSettings(targets=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9))
    with tempfile.TemporaryDirectory() as tmp:
        big, tiny = Path(tmp, "big"), Path(tmp, "tiny")
        big.mkdir()
        tiny.mkdir()
        write_fleet(big, args.services, args.days, 60.0)
        write_fleet(tiny, args.services, 1.0, 3600.0)
        services, tiny_services = from_folder(big), from_folder(tiny)

        began = time.perf_counter()
        serial = run_serial(services, settings)
        serial_seconds = time.perf_counter() - began

        began = time.perf_counter()
        fleet = run_fleet(services, settings, workers=args.workers)
        cluster_seconds = time.perf_counter() - began

        began = time.perf_counter()
        run_fleet(tiny_services[:1], settings, workers=args.workers)
        one_tiny_seconds = time.perf_counter() - began
        began = time.perf_counter()
        run_fleet(tiny_services, settings, workers=args.workers)
        tiny_seconds = time.perf_counter() - began
    # Cluster start-up is paid once per run; what grows with the fleet is the rest.
    shipping = (tiny_seconds - one_tiny_seconds) / max(args.services - 1, 1)

    same = [r.recommendation for r in serial] == [r.recommendation for r in fleet.results]
    per_service = [r.wall_seconds for r in serial]
    speedup = serial_seconds / cluster_seconds
    lines = [
        "# Fleet benchmark",
        "",
        f"`python benchmarks/bench_fleet.py --services {args.services} --days {args.days:g} "
        f"--workers {args.workers}` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| services (days at 1 min each) | {args.services} ({args.days:g}) |",
        f"| one process, wall | {serial_seconds:.1f} s |",
        f"| median per service (one process) | {np.median(per_service):.2f} s |",
        f"| local Dask cluster ({fleet.workers} worker processes), wall "
        f"| {cluster_seconds:.1f} s |",
        f"| speed-up / ideal | {speedup:.2f}x / {fleet.workers}x "
        f"({100 * speedup / fleet.workers:.0f} % of ideal) |",
        f"| cluster start-up (one trivial service) | {one_tiny_seconds:.1f} s |",
        f"| shipping overhead per service (trivial services, start-up excluded) | "
        f"{shipping * 1000:.0f} ms |",
        f"| same recommendations on both paths | {'yes' if same else 'NO'} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / "fleet.md"
    out.write_text(text, encoding="utf-8")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
