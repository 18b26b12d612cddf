"""Batch re-analysis of a cohort: wall time with 1 and 2 workers, and memory per worker.

Method
------
* Cohort: 40 simulated one-ankle nights of 8 h at 100 Hz (the five one-ankle scenarios
  healthy, moderate, severe, noisy and restless x 8 seeds), written as pmld-raw files
  (about 7.5 MB each, 300 MB in all). 100 Hz is the default rate of the pmld band and
  the largest per-night load the project meets (Polar bands record at 50-52 Hz), so
  it gives the upper bound of the memory per worker; 8 h is a whole night. The
  cohort is simulated once into ``--data`` and reused.
* Runs: ``pmld.batch.run_batch(cohort, fresh_output_dir, jobs=J, engine=E,
  force=True, progress=False)`` for E in (process, dask) and J in (1, 2), ``--repeat``
  times each, interleaved (1, 2, 1, 2, ...) so that a change of machine load hits both;
  the figures are the best and the median wall time of the call, start-up of the pool
  or of the local Dask cluster included (it is part of what a user waits for; the
  one-off start of the process pool's forkserver, about 1 s per command, is not: see
  ``warm_up``), and the
  speed-up best(J=1) / best(J=2) (the best run is the one least disturbed by other
  work on a shared machine; the median speed-up is printed too). Every run also writes
  the cohort table.
* Start-up: the same calls on a cohort of one 3-minute night at 25 Hz give each
  configuration's fixed cost (start and shut-down of the pool or cluster, the first
  night's imports in a worker, planning, writing the cohort tables); "after start-up"
  is the speed-up of the medians with each configuration's own fixed cost taken off:
  the speed-up a large cohort approaches.
* Up to date: one more run over the finished outputs (every night skipped: hash the
  input, read the summary's attributes).
* Memory: each worker reports its peak resident set (``ru_maxrss``) after each night;
  the figure is the largest over the workers of a run ("peak RSS per worker"). The
  up-to-date run's workers never load a night, so their peak is the baseline of a
  worker (interpreter, NumPy, pandas, SciPy, h5py; Dask's worker adds its own).
* Load: the machine is shared. Printed with every run: ``os.getloadavg()`` before it
  and "other CPU", the CPU time the rest of the machine used during it (all CPU time in
  /proc/stat minus that of the batch's own processes). ``--max-load L`` waits (up to
  10 min) for a 1-minute load below L before each run; ``--max-other F`` runs a
  measurement again (up to ``--retries`` times) when other processes used more than
  the share F of the CPUs during it, and keeps the last attempt.

Run: ``python benchmarks/bench_batch.py [--repeat 3] [--nights 40] [--hours 8] [--fs 100]
[--engines process,dask] [--max-load 0.5] [--max-other 0.05] [--data DIR] [--json FILE]``.
Target (issue 6): speed-up >= 1.7x for 2 workers over 1 with both engines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SCENARIOS = ("healthy", "moderate", "severe", "noisy", "restless")


def _simulate(args) -> str:
    from pmld.io.raw import write_raw
    from pmld.simulate import simulate_night

    path, scenario, seed, hours, fs = args
    write_raw(simulate_night(scenario, hours=hours, fs_hz=fs, seed=seed), path)
    return path


def make_cohort(data: Path, nights: int, hours: float, fs: float) -> list[Path]:
    folder = data / f"cohort-{nights}x{hours:g}h-{fs:g}hz"
    paths = [
        folder / SCENARIOS[i % len(SCENARIOS)] / f"night{i:02d}.h5" for i in range(nights)
    ]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"simulating {len(missing)} nights of {hours:g} h at {fs:g} Hz into {folder} ...",
              flush=True)
        for p in missing:
            p.parent.mkdir(parents=True, exist_ok=True)
        jobs = [
            (str(p), SCENARIOS[paths.index(p) % len(SCENARIOS)], 100 + paths.index(p), hours, fs)
            for p in missing
        ]
        with ProcessPoolExecutor() as pool:
            list(pool.map(_simulate, jobs))
    size = sum(p.stat().st_size for p in paths) / 1e6
    print(f"cohort: {nights} nights, {size:.0f} MB in {folder}", flush=True)
    return folder


def disturbance(run: dict) -> float:
    """Share of the machine's CPU capacity other processes used during a run."""
    if run["cpu_other_s"] is None:
        return 0.0
    return run["cpu_other_s"] / (run["wall_s"] * (os.cpu_count() or 1))


def wait_for_load(max_load: float | None) -> None:
    if max_load is None:
        return
    deadline = time.monotonic() + 600
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(5)


def busy_cpu_s() -> float | None:
    """CPU time used by every process on the machine so far (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU time of this process and of its children that have ended (Dask's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


_WARM = set()


def warm_up(cohort: Path, engine: str) -> None:
    """Start the process pool's forkserver (once per process, imports pmld) untimed.

    The first pool of a process starts a forkserver that imports pmld, NumPy, pandas,
    SciPy and h5py (about 1 s), reused by every later pool of that process: ``pmld
    batch`` pays it once per command, like the interpreter's own start-up, which is not
    timed either. A local Dask cluster cannot be kept warm between runs: its start-up
    is in every Dask figure.
    """
    from pmld.batch import run_batch

    if engine == "process" and engine not in _WARM:
        first = next(iter(sorted(cohort.rglob("*.h5"))))
        with tempfile.TemporaryDirectory() as scratch:
            run_batch([first], scratch, jobs=1, engine=engine, progress=False)
        _WARM.add(engine)


def one_run(cohort: Path, out: Path, engine: str, jobs: int, force: bool = True) -> dict:
    from pmld.batch import run_batch

    warm_up(cohort, engine)
    load = os.getloadavg()
    busy, own = busy_cpu_s(), own_cpu_s()
    began = time.perf_counter()
    result = run_batch(cohort, out, jobs=jobs, engine=engine, force=force, progress=False)
    wall = time.perf_counter() - began
    busy = None if busy is None else busy_cpu_s() - busy
    own = own_cpu_s() - own
    if engine == "process":  # pool workers are the forkserver's children, not ours
        own += sum(o.cpu_seconds for o in result.outcomes)
    assert result.exit_code == 0, [o.error for o in result.failed]
    per_worker: dict[int, float] = {}
    for o in result.outcomes:
        if o.worker_peak_rss_mb is not None:
            per_worker[o.worker_pid] = max(per_worker.get(o.worker_pid, 0.0),
                                           o.worker_peak_rss_mb)
    return {
        "engine": engine,
        "jobs": jobs,
        "wall_s": wall,
        "night_s_median": statistics.median(o.seconds for o in result.outcomes),
        "statuses": {s: result.count(s) for s in ("ok", "skipped", "failed")},
        "workers": len(per_worker),
        "peak_rss_per_worker_mb": max(per_worker.values()) if per_worker else None,
        "cpu_nights_s": sum(o.cpu_seconds for o in result.outcomes),
        # CPU used by everything else on the machine meanwhile (other users)
        "cpu_other_s": None if busy is None else max(0.0, busy - own),
        "cpu_own_s": own,
        "loadavg_before": [round(x, 2) for x in load],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


CONFIGS = (("1 worker, 1 CPU", 1, True), ("1 worker", 1, False), ("2 workers", 2, False))


def pinned_run(cohort: Path, out: Path, engine: str, jobs: int) -> dict:
    """``one_run`` in a fresh process confined to CPU 0 (with its workers)."""
    import subprocess

    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from bench_batch import one_run\n"
        "from pathlib import Path\n"
        "if __name__ == '__main__':\n"
        f"    print(json.dumps(one_run(Path({str(cohort)!r}), Path({str(out)!r}), "
        f"{engine!r}, {jobs})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {0}),
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nights", type=int, default=40)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--fs", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", default="process,dask")
    parser.add_argument("--max-load", type=float, help="wait for a 1-min load below this")
    parser.add_argument("--max-other", type=float, default=1.0,
                        help="run again when other processes used more than this share of "
                        "the CPUs during a run (e.g. 0.05)")
    parser.add_argument("--retries", type=int, default=5, help="for --max-other")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "pmld-bench")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from pmld.batch import peak_rss_mb

    pinnable = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1
    configs = [c for c in CONFIGS if pinnable or not c[2]]
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()}", flush=True)
    cohort = make_cohort(args.data, args.nights, args.hours, args.fs)
    work = Path(tempfile.mkdtemp(prefix="pmld-bench-batch-"))
    runs = []
    try:
        for engine in args.engines.split(","):
            for rep in range(args.repeat):
                for label, jobs, pinned in configs:
                    out = work / f"{engine}-{jobs}-{pinned}-{rep}"
                    for attempt in range(args.retries + 1):
                        wait_for_load(args.max_load)
                        shutil.rmtree(out, ignore_errors=True)
                        if pinned:
                            run = pinned_run(cohort, out, engine, jobs)
                        else:
                            run = one_run(cohort, out, engine, jobs)
                        run.update(attempt=attempt, config=label)
                        if disturbance(run) <= args.max_other:
                            break
                        print(f"{engine:7s} {label}: disturbed (other processes used "
                              f"{disturbance(run):.0%} of the CPUs), again", flush=True)
                    runs.append(run)
                    print(
                        f"{engine:7s} {label:16s} run {rep + 1}: {run['wall_s']:6.2f} s, "
                        f"{run['night_s_median']:.2f} s/night in a worker, CPU of the nights "
                        f"{run['cpu_nights_s']:.1f} s ({run['cpu_nights_s'] / run['wall_s']:.2f}"
                        f" cores), peak RSS per worker {run['peak_rss_per_worker_mb']:.0f} MB, "
                        f"other CPU meanwhile {run['cpu_other_s']:.1f} s, load before "
                        f"{run['loadavg_before']}",
                        flush=True,
                    )
                    if rep < args.repeat - 1 or jobs == 1:
                        shutil.rmtree(out)
            wait_for_load(args.max_load)
            skip = one_run(cohort, work / f"{engine}-2-False-{args.repeat - 1}", engine, 2,
                           force=False)
            skip.update(up_to_date_run=True, config="2 workers, up to date")
            runs.append(skip)
            print(
                f"{engine:7s} 2 workers, up to date: {skip['wall_s']:.2f} s for "
                f"{skip['statuses']['skipped']} skipped nights, peak RSS per worker "
                f"{skip['peak_rss_per_worker_mb']:.0f} MB (baseline)",
                flush=True,
            )
        # The fixed cost of a command: the same call on a cohort of one 3-minute night
        # (pool or cluster start-up and shut-down, the first night's imports in each
        # worker, planning, the cohort tables), median of --repeat runs.
        tiny = make_cohort(args.data, 1, 0.05, 25.0)
        for engine in args.engines.split(","):
            for label, jobs, pinned in configs:
                for rep in range(args.repeat):
                    out = work / f"startup-{engine}-{jobs}-{pinned}-{rep}"
                    wait_for_load(args.max_load)
                    run = (pinned_run if pinned else one_run)(tiny, out, engine, jobs)
                    run.update(config=label, startup_run=True)
                    runs.append(run)
                    shutil.rmtree(out, ignore_errors=True)
                print(f"{engine:7s} {label:16s} start-up (one tiny night): "
                      f"{statistics.median(r['wall_s'] for r in runs if r.get('startup_run') and r['engine'] == engine and r['config'] == label):.2f} s",  # noqa: E501
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.nights} nights of {args.hours:g} h at {args.fs:g} Hz; best / median of "
          f"{args.repeat} runs; main process peak RSS {peak_rss_mb():.0f} MB")
    summary = {}
    for engine in args.engines.split(","):
        walls = {
            label: [
                r["wall_s"] for r in runs
                if r["engine"] == engine and r["config"] == label and not r.get("startup_run")
            ]
            for label, _, _ in configs
        }
        timed = [
            r for r in runs
            if r["engine"] == engine and not r.get("up_to_date_run") and not r.get("startup_run")
        ]
        startup = {
            label: statistics.median(
                r["wall_s"] for r in runs
                if r["engine"] == engine and r.get("startup_run") and r["config"] == label
            )
            for label, _, _ in configs
        }
        skip = next(r for r in runs if r["engine"] == engine and r.get("up_to_date_run"))
        entry = {
            "wall_s": walls,
            "cores_used": {
                label: statistics.median(
                    r["cpu_nights_s"] / r["wall_s"] for r in timed if r["config"] == label)
                for label, _, _ in configs
            },
            "peak_rss_per_worker_mb": max(r["peak_rss_per_worker_mb"] for r in timed),
            "baseline_rss_per_worker_mb": skip["peak_rss_per_worker_mb"],
            "up_to_date_run_s": skip["wall_s"],
            "startup_s": startup,
        }
        two = walls["2 workers"]
        for label in walls:
            if label != "2 workers":
                entry[f"speedup_vs_{label}"] = {
                    "best": min(walls[label]) / min(two),
                    "median": statistics.median(walls[label]) / statistics.median(two),
                    # the nights' share: each configuration's fixed start-up taken off
                    "after_startup": (statistics.median(walls[label]) - startup[label])
                    / (statistics.median(two) - startup["2 workers"]),
                }
        summary[engine] = entry
        print(f"\n{engine}:")
        for label, values in walls.items():
            line = (f"  {label:16s} {min(values):6.2f} s / {statistics.median(values):6.2f} s, "
                    f"{entry['cores_used'][label]:.2f} cores busy, start-up "
                    f"{startup[label]:.2f} s")
            if label != "2 workers":
                speed = entry[f"speedup_vs_{label}"]
                line += (f"; 2 workers are {speed['best']:.2f}x / {speed['median']:.2f}x "
                         f"faster ({speed['after_startup']:.2f}x after start-up)")
            print(line)
        print(f"  peak RSS per worker {entry['peak_rss_per_worker_mb']:.0f} MB (before any "
              f"night {entry['baseline_rss_per_worker_mb']:.0f} MB); everything up to date: "
              f"{entry['up_to_date_run_s']:.2f} s")
    print(f"load average at the end {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
