"""Benchmark: time to write a night report (HTML, PNG, PDF) and a cohort report.

Method
------
1. Simulate an 8 h night at 100 Hz on both ankles (:func:`pmld.simulate.simulate_night`,
   seed 7) with the ``severe`` scenario, and with a denser variant of it (``DENSE``:
   about 1,700 merged LMs, 2,400 per ankle), analyse each with the default rules
   (:func:`pmld.analyze`) and write its summary. Not timed: the report reads only the
   summary.
2. Cold: run ``pmld report NIGHT.plm.h5 -o night.<fmt>`` as a user does, once per
   format, in a fresh Python process (interpreter start, imports of pmld, h5py and
   matplotlib, reading the summary, drawing, writing). Wall time of the process.
3. Warm: in this process, after one untimed report, :func:`pmld.plot.write_night_report`
   three times per format; the median is reported (reading the summary, drawing and
   writing; matplotlib already imported).
4. Cohort: a 200-night cohort table (the night's row repeated with PLMS indices drawn
   from a lognormal) written as CSV, and ``pmld report cohort.csv -o cohort.html``
   timed cold.

Run: ``.venv/bin/python benchmarks/bench_report.py`` (under a minute on 2 cores).
The target is <= 3 s per night report, cold, on the 2-core machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

#: A denser night than ``severe`` (more series, isolated LMs and wake movements): the
#: stress case for the leg-movement panels.
DENSE = {
    "plm_index": 200.0, "imi_log_mean": 2.8, "short_imi_fraction": 0.15,
    "isolated_lms_per_hour": 150.0, "wake_movements_per_min": 6.0,
    "wake_spans_per_hour": 3.0, "series_median_lms": 80.0,
}


def bench_night(tmp: Path, scenario, label: str) -> Path:
    from pmld.io.summary import read_summary
    from pmld.pipeline import analyze
    from pmld.plot import write_night_report
    from pmld.simulate import simulate_night

    began = time.perf_counter()
    night = simulate_night(scenario, hours=8.0, fs_hz=100.0, seed=7, bilateral=True,
                           timezone="Europe/Berlin")
    summary_path = tmp / f"{label}.plm.h5"
    analyze(night).to_hdf5(summary_path)
    summary = read_summary(summary_path)
    ind = summary.indices
    print(
        f"\n{label}: 8 h at 100 Hz, two ankles: {len(summary.events)} LMs "
        f"({len(summary.monolateral)} per-ankle), {ind['plm_count']} PLMs in "
        f"{ind['plm_series_count']} series, PLMS index {ind['plms_index']:.1f}/h; schema "
        f"{summary.attrs['schema_version']}, epochs "
        f"{'yes' if summary.epochs is not None else 'no'} (simulated and analysed in "
        f"{time.perf_counter() - began:.1f} s, not timed)"
    )
    print("  cold (a fresh `pmld report` process per format):")
    for fmt in ("html", "png", "pdf"):
        out = tmp / f"{label}-cold.{fmt}"
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pmld.cli", "report", str(summary_path), "-o", str(out)],
            check=True, capture_output=True,
        )
        seconds = time.perf_counter() - t
        print(f"    {fmt:4s} {seconds:5.2f} s   {out.stat().st_size / 1e3:7.0f} kB")
    print("  warm (write_night_report in this process, median of 3):")
    write_night_report(summary_path, tmp / "warmup.html")
    for fmt in ("html", "png", "pdf"):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            write_night_report(summary_path, tmp / f"{label}-warm.{fmt}")
            times.append(time.perf_counter() - t)
        print(f"    {fmt:4s} {statistics.median(times):5.2f} s  "
              f"(min {min(times):.2f}, max {max(times):.2f})")
    return summary_path


def main() -> None:
    from dataclasses import replace

    from pmld.batch import COHORT_COLUMNS
    from pmld.io.summary import read_summary
    from pmld.simulate import SCENARIOS

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        summary_path = bench_night(tmp, "severe", "severe")
        bench_night(tmp, replace(SCENARIOS["severe"], name="severe-dense", **DENSE),
                    "severe-dense")
        summary = read_summary(summary_path)

        rng = np.random.default_rng(1)
        n = 200
        row = {c: None for c in COHORT_COLUMNS}
        row.update(status="ok", rules="wasm2016", pmld_version=summary.attrs["pmld_version"],
                   analyzed_hours=7.5, flag_count=0)
        table = pd.DataFrame([row] * n)
        table["path"] = [f"site{i % 4}/night{i:03d}.h5" for i in range(n)]
        table["summary"] = [p.replace(".h5", ".plm.h5") for p in table["path"]]
        table["plms_index"] = rng.lognormal(2.3, 0.9, n)
        table["plm_index"] = table["plms_index"]
        table.loc[::25, "status"] = "failed"
        table.loc[::25, ["plms_index", "plm_index"]] = np.nan
        table.loc[::25, "error"] = "is not an HDF5 file"
        table.loc[::7, "flag_count"] = 1
        table.loc[::7, "flags"] = "right: 500 samples with NaN treated as missing data"
        csv = tmp / "cohort.csv"
        table.to_csv(csv, index=False)
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pmld.cli", "report", str(csv), "-o", str(tmp / "c.html")],
            check=True, capture_output=True,
        )
        print(f"\ncohort of {n} nights, cold `pmld report cohort.csv`: "
              f"{time.perf_counter() - t:.2f} s, {(tmp / 'c.html').stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
