"""Speed and memory of analysing a night: load -> detect -> score -> summary written.

Method
------
* Speed: a simulated ``moderate`` night at 100 Hz is written as a pmld-raw file once;
  then the whole in-process path (``read_raw`` -> ``analyze`` -> ``to_hdf5``) is timed
  with ``time.perf_counter``, one warm-up run and the best and median of ``--repeat``
  runs. Interpreter start-up and imports are excluded.
* Scaling: the same for 1, 2, 4, 8, 16 and 24 h nights; time per hour should stay flat
  (linear growth).
* Memory: for the 8 h night, a fresh Python process runs the path once and reports
  (a) the tracemalloc peak of the path (NumPy reports its buffers to tracemalloc) and
  (b) the growth of the process's peak RSS over what it was after the imports.
* Scoring alone: 10,000 LMs, see ``bench_score.py``.

Run: ``python benchmarks/bench_analyze.py [--repeat 7] [--hours 1,2,4,8,16,24]``.
Targets (detection issue): 8 h at 100 Hz <= 0.2 s, peak memory <= 200 MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pmld.io.raw import read_raw, write_raw
from pmld.pipeline import analyze
from pmld.simulate import simulate_night

MEMORY_PROBE = r"""
import json, sys, tracemalloc
from pmld.io.raw import read_raw
from pmld.pipeline import analyze
import pmld.io.summary, scipy.sparse.csgraph  # everything the path loads lazily

def status(key):  # kB figures of this process from /proc (Linux)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
night_path, out_path = sys.argv[1], sys.argv[2]
base = status("VmRSS")
tracemalloc.start()
night = read_raw(night_path)
analyze(night).to_hdf5(out_path)
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({"tracemalloc_peak_mb": peak / 2**20, "rss_growth_mb": status("VmHWM") - base,
                  "rss_peak_mb": status("VmHWM"), "rss_after_imports_mb": base}))
"""


def time_path(night_path: Path, out_path: Path, repeat: int) -> list[float]:
    times = []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        analyze(read_raw(night_path)).to_hdf5(out_path)
        if i:  # the first run warms caches and lazy imports
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--hours", default="1,2,4,8,16,24")
    parser.add_argument("--fs", type=float, default=100.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{'hours':>5} {'best s':>8} {'median s':>9} {'ms per hour':>12}")
        for hours in [float(h) for h in args.hours.split(",")]:
            night_path = tmp / f"night-{hours:g}h.h5"
            write_raw(simulate_night("moderate", hours=hours, fs_hz=args.fs, seed=11), night_path)
            times = time_path(night_path, tmp / "out.plm.h5", args.repeat)
            best, median = min(times), statistics.median(times)
            print(f"{hours:5g} {best:8.3f} {median:9.3f} {1000 * median / hours:12.1f}")
            if hours == 8:
                probe = subprocess.run(
                    [sys.executable, "-c", MEMORY_PROBE, str(night_path), str(tmp / "m.plm.h5")],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                memory = json.loads(probe.stdout)
        if "memory" in locals():
            print(
                f"\n8 h at {args.fs:g} Hz, load -> summary written: tracemalloc peak "
                f"{memory['tracemalloc_peak_mb']:.0f} MB; process peak RSS "
                f"{memory['rss_peak_mb']:.0f} MB, of which {memory['rss_after_imports_mb']:.0f} MB "
                "is Python with NumPy, SciPy, pandas and h5py loaded, i.e. the path adds "
                f"{memory['rss_growth_mb']:.0f} MB"
            )


if __name__ == "__main__":
    main()
