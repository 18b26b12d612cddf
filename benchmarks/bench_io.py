"""Benchmark of pmld's file layer: the raw night file and the CSV import.

Run::

    .venv/bin/python benchmarks/bench_io.py            # 8 h at 100 Hz
    .venv/bin/python benchmarks/bench_io.py --hours 1 --repeat 3 --no-csv

Method
------
* The night: 8 h at 100 Hz from ``pmld.simulate.simulate_night`` when that module is
  there, else from :func:`synthetic_night` below: gravity on a tilted axis, a slow
  drift of 10 mg (an hour-long sinusoid per axis) and white noise of 2 mg, quantised to
  int16 counts of a +-8 g range (4096 counts/g), as a device would deliver it.
* Times: each operation runs once as a warm-up (page cache, imports, thread pool), then
  ``--repeat`` times; the best ``time.perf_counter`` interval is reported (the least
  disturbed run; the mean is shown too).
* Memory: ``tracemalloc`` peak of one further run (NumPy's buffers are traced; libhdf5's
  own small buffers are not) and the process's peak RSS (``resource.getrusage``).
* Size: bytes on disk of the written file (1 MB = 10^6 bytes).

Targets (from the design brief), for one sensor over 8 h at 100 Hz and scaled in
proportion to sensors x hours x rate: file <= 10 MB, read into a Night <= 0.1 s on a
2-core machine, CSV import of an 8 h night "a few seconds".
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pmld import resample
from pmld.io.csvimport import read_accel_csv
from pmld.io.raw import read_raw, write_raw
from pmld.night import Night, make_annotations

RANGE_G = 8.0
COUNTS_PER_G = 32768 / RANGE_G


def synthetic_night(hours: float = 8.0, fs_hz: float = 100.0, seed: int = 0) -> Night:
    """A still night as an ankle sensor records it: tilted gravity, drift, 2 mg noise."""
    rng = np.random.default_rng(seed)
    n = int(round(hours * 3600 * fs_hz))
    t_h = np.arange(n) / fs_hz / 3600.0
    gravity = np.array([0.35, -0.25, 0.9])
    gravity /= np.linalg.norm(gravity)
    acc = np.empty((n, 3), dtype=np.float64)
    for axis, period_h in enumerate((1.0, 0.7, 1.3)):
        drift = 0.010 * np.sin(2 * np.pi * t_h / period_h + axis)
        acc[:, axis] = gravity[axis] + drift + rng.normal(0.0, 0.002, n)
    counts = np.clip(np.rint(acc * COUNTS_PER_G), -32768, 32767).astype(np.int16)
    return Night.from_arrays(
        (counts / COUNTS_PER_G).astype(np.float32),
        fs_hz,
        "2026-03-01T22:30:00+01:00",
        side="right",
        timezone="Europe/Zurich",
        device={"model": "synthetic", "range_g": RANGE_G, "counts_per_g": COUNTS_PER_G},
        annotations=make_annotations(np.arange(0, hours * 3600, 30.0), 1.0, "lm"),
        meta={"generator": "benchmarks/bench_io.py", "seed": seed},
    )


def make_night(
    hours: float, fs_hz: float, seed: int, synthetic: bool, scenario: str | None = None
) -> tuple[Night, str]:
    """The simulator's night when ``pmld.simulate`` is there, else the synthetic one."""
    if not synthetic:
        try:
            from pmld import simulate
        except ImportError:
            pass
        else:
            scenarios = getattr(simulate, "SCENARIOS", {})
            if scenario is None:
                scenario = "moderate" if "moderate" in scenarios else next(iter(scenarios), None)
            try:
                night = simulate.simulate_night(scenario, hours=hours, fs_hz=fs_hz, seed=seed)
            except Exception as exc:  # the simulator is written in parallel
                print(f"(pmld.simulate failed: {exc!r}; using the synthetic night)")
            else:
                return night, f"pmld.simulate.simulate_night({scenario!r})"
    return synthetic_night(hours, fs_hz, seed), "bench_io.synthetic_night"


def plain_h5py_read(path: Path) -> list[np.ndarray]:
    """The samples decoded by libhdf5 alone (one thread), scaled to float32 g."""
    out = []
    with h5py.File(path, "r") as h5:
        for group in h5["sensors"].values():
            dataset = group["acc"]
            out.append(
                np.divide(dataset[()], np.float32(dataset.attrs["counts_per_g"]), dtype=np.float32)
            )
    return out


def timed(function, repeat: int) -> tuple[float, float, object]:
    result = function()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), statistics.fmean(times), result


def traced_peak_mb(function) -> float:
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def write_csv(night: Night, path: Path) -> None:
    sensor = night.sensors[0]
    frame = pd.DataFrame(sensor.acc_g.astype(np.float64), columns=["x", "y", "z"])
    frame.insert(0, "time_s", sensor.times_s())
    frame.to_csv(path, index=False, float_format="%.6f")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--fs", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--csv-repeat", type=int, default=3)
    parser.add_argument("--no-csv", action="store_true", help="skip the CSV import")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", help="simulator scenario (default: moderate)")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="use this script's still night even if pmld.simulate exists",
    )
    args = parser.parse_args(argv)

    night, origin = make_night(args.hours, args.fs, args.seed, args.synthetic, args.scenario)
    n = sum(s.n_samples for s in night.sensors)
    print(
        f"night: {origin}, {args.hours:g} h at {args.fs:g} Hz, {n:,} samples, "
        f"{len(night.sensors)} sensor(s); {os.cpu_count()} CPUs"
    )

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "night.h5"
        best, mean, _ = timed(lambda: write_raw(night, path), max(1, args.repeat // 2))
        size_mb = path.stat().st_size / 1e6
        share = len(night.sensors) * args.hours / 8.0 * args.fs / 100.0
        rows.append(
            ("raw file size", f"{size_mb:.2f} MB", f"<= {10 * share:.3g} MB", size_mb <= 10 * share)
        )
        rows.append(("write_raw", f"{best:.3f} s (mean {mean:.3f})", "", None))
        best, mean, back = timed(lambda: read_raw(path), args.repeat)
        peak = traced_peak_mb(lambda: read_raw(path))
        rows.append(
            (
                "read_raw -> Night",
                f"{best:.3f} s (mean {mean:.3f})",
                f"<= {0.1 * share:.3g} s",
                best <= 0.1 * share,
            )
        )
        rows.append(("read_raw peak (tracemalloc)", f"{peak:.0f} MB", "", None))
        best, mean, _ = timed(lambda: plain_h5py_read(path), args.repeat)
        rows.append(
            (
                "  for comparison: samples via plain h5py",
                f"{best:.3f} s (mean {mean:.3f})",
                "",
                None,
            )
        )
        exact = all(
            np.array_equal(a.acc_g, b.acc_g)
            for a, b in zip(night.sensors, back.sensors, strict=True)
        )
        rows.append(("round trip exact", str(exact), "True", exact))

        sensor = night.sensors[0]
        jittered = sensor.times_s() + np.random.default_rng(1).normal(
            0, 0.3 / args.fs, sensor.n_samples
        )
        jittered.sort()
        best, mean, grid = timed(
            lambda: resample.to_grid(jittered, sensor.acc_g, args.fs), args.repeat
        )
        rows.append(("resample_uniform (30 % jitter)", f"{best:.3f} s (mean {mean:.3f})", "", None))

        if not args.no_csv:
            csv_path = Path(folder) / "night.csv"
            start = time.perf_counter()
            write_csv(night, csv_path)
            made = time.perf_counter() - start
            csv_mb = csv_path.stat().st_size / 1e6
            best, mean, (imported, report) = timed(
                lambda: read_accel_csv(csv_path, side="right"), args.csv_repeat
            )
            peak = traced_peak_mb(lambda: read_accel_csv(csv_path, side="right"))
            rows.append(
                (
                    f"CSV file ({csv_mb:.0f} MB, written in {made:.1f} s)",
                    f"{report.rows_read:,} rows",
                    "",
                    None,
                )
            )
            rows.append(("read_accel_csv", f"{best:.2f} s (mean {mean:.2f})", "a few s", best <= 5))
            rows.append(("read_accel_csv peak (tracemalloc)", f"{peak:.0f} MB", "", None))
            rows.append(("CSV import resampled", str(report.resampled), "", None))

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("process peak RSS", f"{rss_mb:.0f} MB", "", None))
    width = max(len(r[0]) for r in rows)
    for name, value, target, ok in rows:
        verdict = "" if ok is None else ("  ok" if ok else "  MISSED")
        target = f"  (target {target})" if target else ""
        print(f"{name:<{width}}  {value}{target}{verdict}")
    return 0 if all(r[3] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
