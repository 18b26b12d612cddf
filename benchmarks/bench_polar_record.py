"""Benchmark: a night recorded from a virtual Polar band (pmld.ble.polar_recorder).

Run::

    .venv/bin/python benchmarks/bench_polar_record.py            # Verity 8 h + H10 8 h
    .venv/bin/python benchmarks/bench_polar_record.py --model verity --hours 1 --faults

Method
------
A simulated night (``moderate``, seed 7) at the model's rate (Verity Sense 52 Hz,
delta-compressed 0x81 frames in milli-g; H10 50 Hz raw int16 frames) is served by the
virtual Polar band (pmld.ble.polar_band) on a stepped virtual clock, i.e. as fast as the
virtual link carries it, and recorded end to end by ``PolarRecorder`` through the real
bleak client: link, decoding, journal, live detector, then the pmld-raw file and the
nightly summary. Everything runs in this one process (the band and both bumble host
stacks included), so the speed is a lower bound for the recorder alone.

Reported:

* ``speed_factor``: night seconds per wall second until the last sample was journalled
  (target >= 100x); ``..._with_finish`` includes writing the file and the summary.
* ``max_error_mg``: the largest difference between a recorded sample and the source
  night, in milli-g (the source is in g; the band quantises it to its unit, 1 milli-g:
  target <= 0.5 milli-g, half the quantisation step).
* ``samples_placed_exactly``: every recorded sample sits at the grid position of the
  source sample the band sent in it (from the band's frame log), and every gap has the
  exact size of what was lost.
* ``--faults`` adds link drops every 20 min (30 s out of range), a device-initiated
  stop every 90 min, and 1 frame in 97 dropped, 1 in 131 truncated, 1 in 173 with a bad
  bit width, and the band's sampling 250 ppm off its nominal rate.
* Peak RSS of the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

RATES = {"verity": 52, "h10": 50}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


async def _record(model: str, hours: float, faults_on: bool, folder: Path):
    from pmld.ble.band import VirtualClock
    from pmld.ble.polar_band import PolarFaults, VirtualPolarBand
    from pmld.ble.polar_recorder import PolarRecorder
    from pmld.ble.recorder import RecordOptions
    from pmld.ble.virtual import VirtualRadio
    from pmld.simulate import simulate_night

    night = simulate_night("moderate", hours=hours, fs_hz=float(RATES[model]), seed=7)
    faults = PolarFaults()
    if faults_on:
        night_s = hours * 3600
        faults = PolarFaults(
            disconnect_every_s=1200.0,
            disconnect_for_s=30.0,
            device_stop_at_s=list(np.arange(5400.0, night_s, 5400.0)),
            drop_every=97,
            truncate_every=131,
            bad_width_every=173,
            sample_rate_ppm=250.0,
        )
    clock = VirtualClock(int(night.start_utc.timestamp() * 1e9), math.inf)
    async with VirtualRadio() as radio:
        band = await VirtualPolarBand.from_night(radio, night, clock, model=model, faults=faults)
        recorder = PolarRecorder(
            RecordOptions(folder / "night.h5"),
            clock=clock,
            scanner_kwargs=radio.scanner_kwargs(),
            client_kwargs=radio.client_kwargs(mtu=247),
            status=None,
        )
        streamed: list[float] = []

        async def night_over():
            await band.finished.wait()
            streamed.append(time.perf_counter())
            recorder.request_stop("night over")

        watcher = asyncio.ensure_future(night_over())
        started = time.perf_counter()
        result = await recorder.run()
        ended = time.perf_counter()
        watcher.cancel()
        await band.close()
    return night, band, result, started, streamed[0] if streamed else ended, ended


def run(model: str, hours: float, faults_on: bool) -> dict:
    from pmld.io.raw import read_raw

    with tempfile.TemporaryDirectory() as tmp:
        night, band, result, started, streamed_at, ended = asyncio.run(
            _record(model, hours, faults_on, Path(tmp))
        )
        sensor = read_raw(result.output).sensor
        delivered = np.unique(band.stats.source_indices())
        recorded = sensor.grid_index() + delivered[0]
        exact = len(recorded) == len(delivered) and bool(np.array_equal(recorded, delivered))
        holes = np.diff(delivered) - 1
        exact = exact and bool(
            np.array_equal(sensor.gaps["missing_samples"].to_numpy(), holes[holes > 0])
        )
        error = np.abs(
            sensor.acc_g.astype(np.float64) - night.sensor.acc_g[recorded].astype(np.float64)
        ).max()
    night_s = hours * 3600
    s = result.stats
    return {
        "model": model,
        "night_h": hours,
        "faults": faults_on,
        "samples": int(s.samples),
        "gaps": int(s.gaps),
        "gap_samples": int(s.gap_samples),
        "bad_frames": dict(s.bad_frames),
        "device_stops": s.device_stops,
        "link_drops": s.link_drops,
        "stream_wall_s": round(streamed_at - started, 1),
        "speed_factor": round(night_s / (streamed_at - started), 1),
        "speed_factor_with_finish": round(night_s / (ended - started), 1),
        "max_error_mg": round(1000 * float(error), 4),
        "samples_placed_exactly": exact,
        "peak_rss_mb_process": round(peak_rss_mb(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("verity", "h10", "both"), default="both")
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--faults", action="store_true", help="with link and frame faults")
    args = parser.parse_args()
    models = ("verity", "h10") if args.model == "both" else (args.model,)
    for model in models:
        print(json.dumps(run(model, args.hours, args.faults)), flush=True)


if __name__ == "__main__":
    main()
