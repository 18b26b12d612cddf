"""Speed of ``pmld export``.

Method: simulate an 8 h, 100 Hz one-ankle night (``pmld.simulate``, scenario
``severe``), write it as pmld-raw, analyse it into a summary; then time, once each on
the real files (wall clock, ``time.perf_counter``): the raw night to EDF+ with the
summary's events as annotations (reading the raw file included), and the summary's
events to BIDS (events.tsv + events.json), CSV and EDF+ annotations (reading the
summary included). Prints the seconds, the output sizes and the event count.

Run: ``.venv/bin/python benchmarks/bench_export.py``
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pmld.io.export import export
from pmld.io.raw import write_raw
from pmld.pipeline import analyze
from pmld.simulate import simulate_night


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        night = simulate_night("severe", hours=8, fs_hz=100, seed=7)
        raw, summary = folder / "night.h5", folder / "night.plm.h5"
        write_raw(night, raw)
        analyze(night).to_hdf5(summary)
        jobs = [
            ("raw 8 h 100 Hz -> EDF+ (+ events)", raw, folder / "night.edf", summary),
            ("events -> BIDS events.tsv + json", summary, folder / "n_events.tsv", None),
            ("events -> CSV", summary, folder / "n.csv", None),
            ("events -> EDF+ annotations", summary, folder / "n_events.edf", None),
        ]
        for name, source, out, events in jobs:
            t0 = time.perf_counter()
            result = export(source, out, events=events)
            seconds = time.perf_counter() - t0
            size = out.stat().st_size / 1e6
            print(f"{name:38s} {seconds:6.2f} s  {size:7.2f} MB  {result.n_events} events")


if __name__ == "__main__":
    main()
