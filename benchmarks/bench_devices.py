"""Benchmark of the device-file import: .cwa, .gt3x and .bin into a Night and a pmld-raw file.

Run::

    .venv/bin/python benchmarks/bench_devices.py               # 8 h at 100 Hz, 3 runs
    .venv/bin/python benchmarks/bench_devices.py --hours 1 --repeat 1

Method
------
* Inputs: one night of 8 h at 100 Hz (2.88 M samples) of a lying ankle with leg
  movements (``tests/devicefiles.ankle_signal``), written by the test writers
  (``tests/devicefiles.py``, from the public format descriptions) as an Axivity AX3
  .cwa (packed, fractional block times, +-8 g), an ActiGraph .gt3x (ZIP, one ACTIVITY
  record a second, 256 LSB/g) and a GENEActiv .bin (300-sample hex pages). Writing the
  inputs is not timed.
* Each measurement runs in a fresh Python process (``subprocess``), so that one
  format's memory does not count in the next and every run pays the same cold start of
  actfast; the imports of NumPy/pandas/pmld happen before the clock starts.
* Times (``time.perf_counter``): ``read`` = :func:`pmld.io.devices.read_device` with
  ``timezone="Europe/London"`` (actfast decoding, block times, UTC, the 100 Hz grid,
  a Night); ``write`` = :func:`pmld.io.raw.write_raw` of that night (int16 + shuffle +
  gzip, fsync); ``total`` = both, what ``pmld import FILE -o night.h5`` does after
  start-up. ``--repeat`` processes per format; the median and the best are printed.
* Memory: the process's peak resident set (``VmHWM`` of ``/proc/self/status``; Linux)
  at the end, and its rise above the peak measured just before the read (the import's
  own peak: actfast's arrays, the block times, the grid, the night, the writer).

Target (issue 7): import of an 8 h, 100 Hz .cwa <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

_CHILD = r"""
import json, sys, time
from pmld.io.devices import read_device
from pmld.io.raw import write_raw

def hwm_kb():
    # The high-water mark of this process's own memory: ru_maxrss would carry the
    # parent's peak over fork + exec on Linux.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))

path, out = sys.argv[1], sys.argv[2]
base_kb = hwm_kb()
t0 = time.perf_counter()
result = read_device(path, timezone="Europe/London")
t1 = time.perf_counter()
write_raw(result.nights[0], out)
t2 = time.perf_counter()
peak_kb = hwm_kb()
sensor = result.nights[0].sensor
print(json.dumps({"read_s": t1 - t0, "write_s": t2 - t1, "peak_mb": peak_kb / 1024,
                  "rise_mb": (peak_kb - base_kb) / 1024, "samples": sensor.n_samples,
                  "nights": len(result.nights), "resampled": result.nights[0].meta["resampled"]}))
"""


def make_inputs(folder: Path, hours: float) -> dict[str, Path]:
    import devicefiles as dev

    fs = 100
    n = int(hours * 3600 * fs)
    acc = dev.ankle_signal(n, fs, seed=11)
    start = datetime(2024, 11, 5, 22, 0)
    paths = {"cwa": folder / "night.cwa", "gt3x": folder / "night.gt3x",
             "bin": folder / "night.bin"}
    dev.write_cwa(paths["cwa"], acc, start, fs_hz=fs)
    dev.write_gt3x(paths["gt3x"], acc[: n - n % fs], start, fs_hz=fs)
    dev.write_geneactiv(paths["bin"], acc, start, fs_hz=fs)
    return paths


def measure(path: Path, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(out)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pmld-bench-devices-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        paths = make_inputs(folder, args.hours)
        print(f"inputs: {args.hours:g} h at 100 Hz written in {time.perf_counter() - t0:.1f} s "
              "(not timed below)")
        for kind, path in paths.items():
            print(f"  {kind:5s} {path.stat().st_size / 1e6:7.1f} MB")
        print(f"{'format':6s} {'read s':>14s} {'write s':>14s} {'total s':>14s} "
              f"{'peak MB':>8s} {'rise MB':>8s}  samples")
        for kind, path in paths.items():
            runs = [measure(path, folder / f"{kind}.h5") for _ in range(args.repeat)]
            read = [r["read_s"] for r in runs]
            write = [r["write_s"] for r in runs]
            total = [r["read_s"] + r["write_s"] for r in runs]

            def cell(values):
                return f"{statistics.median(values):6.2f} ({min(values):5.2f})"

            last = runs[-1]
            print(f"{kind:6s} {cell(read)} {cell(write)} {cell(total)} "
                  f"{max(r['peak_mb'] for r in runs):8.0f} {max(r['rise_mb'] for r in runs):8.0f}"
                  f"  {last['samples']:,} ({last['nights']} night, resampled {last['resampled']})")
        print("median (best) of", args.repeat, "fresh processes; target: cwa total <= 2 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
