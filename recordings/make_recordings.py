"""Regenerate the example nights in this folder from the simulator (fixed seeds).

Run from the repository root: ``python recordings/make_recordings.py``. The samples and
annotations come out identical on every run (the simulator is deterministic); only the
files' creation-time attributes differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pmld.io.raw import write_raw
from pmld.simulate import simulate_night, truth_table

HERE = Path(__file__).resolve().parent
SEED = 2026
START = "2026-01-05T22:30:00+01:00"
ZONE = "Europe/Zurich"

#: name -> (scenario, hours, sampling rate in Hz)
NIGHTS = {
    "moderate": ("moderate", 8.0, 25.0),
    "healthy-1h": ("healthy", 1.0, 50.0),
    "severe-1h": ("severe", 1.0, 50.0),
    "noisy-1h": ("noisy", 1.0, 50.0),
    "restless-1h": ("restless", 1.0, 50.0),
    "bilateral-1h": ("bilateral", 1.0, 50.0),
}


def make_nights() -> None:
    for name, (scenario, hours, fs_hz) in NIGHTS.items():
        night = simulate_night(
            scenario, hours=hours, fs_hz=fs_hz, seed=SEED, start_utc=START, timezone=ZONE
        )
        write_raw(night, HERE / f"{name}.h5")
        truth_table(night).to_csv(HERE / f"{name}.truth.csv", index=False, float_format="%.3f")
        print(f"{name}: {night!r}")


def make_csv() -> None:
    """Six minutes of a band with jittered timestamps and a 20 s drop-out, as CSV."""
    night = simulate_night("severe", hours=6 / 60, fs_hz=50.0, seed=SEED)
    sensor = night.sensor
    rng = np.random.default_rng(SEED)
    times = sensor.times_s() + rng.normal(0.0, 0.002, sensor.n_samples)
    keep = (times < 200.0) | (times >= 220.0)
    frame = pd.DataFrame(
        {
            "time_s": np.round(times[keep], 4),
            "x": sensor.acc_g[keep, 0],
            "y": sensor.acc_g[keep, 1],
            "z": sensor.acc_g[keep, 2],
        }
    )
    frame.to_csv(HERE / "band-export.csv", index=False, float_format="%.5f")
    print(f"band-export.csv: {len(frame)} rows")


if __name__ == "__main__":
    make_nights()
    make_csv()
