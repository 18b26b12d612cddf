"""Speed of a threshold sweep: 100 parameter combinations x 20 nights of 8 h.

Method
------
* Data: 20 nights of 8 h at 100 Hz simulated once (seeds 2000.., the six scenarios in
  turn, so 3-4 of each, two-ankle nights included) and written as pmld-raw files, each
  with its reference as a BIDS ``events.tsv`` (``onset, duration, trial_type=LM, side``:
  the simulator's leg movements in sleep and wake). Simulating and writing are not
  timed. ``--dir`` keeps the files for the next run.
* Grid (100 combinations, realistic ranges around the defaults): ``onset_min_g`` 0.01,
  0.0125, 0.015, 0.0175, 0.02 x ``offset_min_g`` 0.004, 0.006 x ``posture_angle_deg`` 3,
  4, 5, 7, 10 x ``min_imi_s`` 5, 10: 50 different detections and, for each, two
  scorings. No swept parameter changes the activity signal, so each night needs one.
* Each run does what ``pmld sweep`` does, in this process, timed with
  ``time.perf_counter`` phase by phase: checking the grid and every night and reference
  (``plan_sweep``, ``load_nights``: each night is read and its reference aligned), the
  sweep (``run_sweep``: each worker reads its night again, computes the activity signal,
  then runs every combination) and writing the two Parquet tables.
* Figures, for ``--jobs 1`` and ``--jobs 2``:
  - *first pass*: the checking plus the same sweep with one combination (the fixed cost
    of the nights: reading twice, activity signal, one combination);
  - *per combination per night*: (total sweep time - one-combination sweep time) / 99 /
    20, the wall-clock cost of each extra combination on one night; and the workers'
    own mean time per combination (``SweepResult.timings``), which does not depend on
    how the nights share the cores;
  - *total*: checking + sweep + writing, wall clock.
* The machine is shared: the load average (``os.getloadavg``) before and after each run
  is printed with the figures, and the process CPU time of the ``--jobs 1`` runs.

Run: ``python benchmarks/bench_sweep.py [--nights 20] [--hours 8] [--jobs 1,2] [--dir DIR]``.
Target (issue 6): 100 combinations x 20 nights in <= 60 s after the first pass, i.e.
<= 30 ms per extra combination per night.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from pmld.io.raw import write_raw
from pmld.simulate import SCENARIOS, simulate_night, truth_table
from pmld.sweep import load_nights, plan_sweep, run_sweep, write_sweep

GRID = {
    "onset_min_g": [0.01, 0.0125, 0.015, 0.0175, 0.02],
    "offset_min_g": [0.004, 0.006],
    "posture_angle_deg": [3.0, 4.0, 5.0, 7.0, 10.0],
    "min_imi_s": [5.0, 10.0],
}


def make_nights(folder: Path, count: int, hours: float) -> list[Path]:
    """Simulated nights and their BIDS references (kept if already there)."""
    refs = folder / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    scenarios = list(SCENARIOS)
    paths = []
    for i in range(count):
        scenario = scenarios[i % len(scenarios)]
        path = folder / f"night{i:02d}-{scenario}-{hours:g}h.h5"
        ref = refs / f"{path.name.removesuffix('.h5')}_events.tsv"
        if not (path.exists() and ref.exists()):
            night = simulate_night(scenario, hours=hours, seed=2000 + i)
            write_raw(night, path)
            truth = truth_table(night)
            lms = truth[truth["kind"] != "posture"]
            pd.DataFrame(
                {
                    "onset": lms["onset_s"],
                    "duration": lms["duration_s"],
                    "trial_type": "LM",
                    "side": lms["side"],
                }
            ).to_csv(ref, sep="\t", index=False, float_format="%.3f")
        paths.append(path)
    return paths


def one_run(paths, refs: Path, grid: dict, jobs: int, out: Path) -> dict:
    load_before = os.getloadavg()[0]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    plan = plan_sweep(grid)
    nights = load_nights(paths, refs, jobs=jobs, plan=plan)
    t1 = time.perf_counter()
    result = run_sweep(nights, plan, jobs=jobs)
    t2 = time.perf_counter()
    write_sweep(result, out)
    t3 = time.perf_counter()
    return {
        "combinations": len(plan.combinations),
        "check_s": t1 - t0,
        "sweep_s": t2 - t1,
        "write_s": t3 - t2,
        "total_s": t3 - t0,
        "cpu_s": time.process_time() - cpu0,
        "worker_first_pass_s": float(result.timings["prepare_s"].mean()),
        "worker_per_combination_ms": float(
            1000 * result.timings["combinations_s"].sum() / len(plan.combinations) / len(paths)
        ),
        "load": (load_before, os.getloadavg()[0]),
        "f1_best": float(result.ranked("f1")["f1_mean"].iloc[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=20)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--jobs", default="1,2")
    parser.add_argument("--dir", type=Path, help="keep the simulated nights here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        t0 = time.perf_counter()
        paths = make_nights(folder, args.nights, args.hours)
        print(
            f"{len(paths)} nights of {args.hours:g} h at 100 Hz ready in "
            f"{time.perf_counter() - t0:.0f} s (not timed below); {os.cpu_count()} CPUs"
        )
        n = len(paths)
        for jobs in (int(j) for j in args.jobs.split(",")):
            single = {name: values[:1] for name, values in GRID.items()}
            base = one_run(paths, folder / "refs", single, jobs, Path(tmp) / "one.parquet")
            full = one_run(paths, folder / "refs", GRID, jobs, Path(tmp) / "sweep.parquet")
            k = full["combinations"]
            first_pass = base["check_s"] + base["sweep_s"]
            extra_ms = 1000 * (full["sweep_s"] - base["sweep_s"]) / (k - 1) / n
            print(
                f"\n--jobs {jobs}: {k} combinations x {n} nights\n"
                f"  first pass (check every night and reference, then one combination): "
                f"{first_pass:.1f} s (check {base['check_s']:.1f} s, sweep "
                f"{base['sweep_s']:.1f} s; a worker's first pass per night "
                f"{base['worker_first_pass_s']:.2f} s)\n"
                f"  per extra combination per night: {extra_ms:.1f} ms wall clock; "
                f"workers' own mean {full['worker_per_combination_ms']:.1f} ms\n"
                f"  after the first pass: {full['total_s'] - first_pass:.1f} s "
                f"(target <= 60 s)\n"
                f"  total: {full['total_s']:.1f} s (check {full['check_s']:.1f} s, sweep "
                f"{full['sweep_s']:.1f} s, write {full['write_s']:.2f} s)"
                + (f"; CPU {full['cpu_s']:.1f} s" if jobs == 1 else "")
                + f"\n  load average {base['load'][0]:.2f} before, {full['load'][1]:.2f} "
                f"after; best mean F1 {full['f1_best']:.3f}"
            )


if __name__ == "__main__":
    main()
