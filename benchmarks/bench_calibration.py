"""Calibration benchmark: speed per night and recovery of known sensor errors.

Method
------
1. Speed: :func:`pmld.signal.autocalibrate` on simulated 8 h, 100 Hz ``moderate`` nights
   (seeds 0-4; 2.88 M samples each), wall time of the whole call (epoch statistics + the
   sphere fit), median and maximum of 3 repeats per night.
2. Recovery, multi-posture recordings: N synthetic recordings of 24 still postures in
   random orientations (2 min each, 100 Hz, 2 mg white noise), measured through random
   per-axis gains (1 +- 3 %, uniform) and offsets (+-80 mg, uniform). The recovered
   offset and scale are compared with the exact inverse of the sensor errors
   (``offset = -bias / gain``, ``scale = 1 / gain``).
3. One ankle night: the ``moderate``, ``healthy`` and ``restless`` scenarios, seeds
   0-9: how often autocalibration succeeds and why it fails, and the distance of the
   recovered offset from the simulator's fixed offset (the simulator also adds a slow
   random-walk drift of tens of mg, which no fixed calibration can remove).

Run: ``.venv/bin/python benchmarks/bench_calibration.py [N]`` (N defaults to 100).
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np

from pmld.signal import autocalibrate
from pmld.simulate import simulate_night


def speed() -> None:
    times = []
    for seed in range(5):
        sensor = simulate_night("moderate", hours=8, fs_hz=100, seed=seed).sensor
        segments = list(sensor.segments())
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            cal = autocalibrate(sensor.acc_g, sensor.fs_hz, segments=segments)
            runs.append(time.perf_counter() - t0)
        times.append(np.median(runs))
        print(f"  seed {seed}: {np.median(runs) * 1000:.0f} ms (max {max(runs) * 1000:.0f}), "
              f"{cal.status}, {cal.details.get('iterations', '-')} iterations")
    print(f"speed, 8 h 100 Hz night: median {np.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms")


def recovery(n: int) -> None:
    rng = np.random.default_rng(2014)
    fs, hold = 100.0, 12000
    offset_err, scale_err, after = [], [], []
    failures = 0
    for _ in range(n):
        ups = rng.standard_normal((24, 3))
        ups /= np.linalg.norm(ups, axis=1, keepdims=True)
        gain = 1 + rng.uniform(-0.03, 0.03, 3)
        bias = rng.uniform(-0.08, 0.08, 3)
        true = np.repeat(ups, hold, axis=0) + 0.002 * rng.standard_normal((24 * hold, 3))
        acc = (true * gain + bias).astype(np.float32)
        cal = autocalibrate(acc, fs)
        if cal.status != "autocalibrated":
            failures += 1
            continue
        offset_err.append(np.abs(cal.offset_g + bias / gain).max())
        scale_err.append(np.abs(cal.scale - 1 / gain).max())
        after.append(cal.error_after_g)
    q = lambda v: np.percentile(v, [50, 95, 100])  # noqa: E731
    print(f"recovery over {n} multi-posture recordings: {failures} failed; worst-axis offset "
          f"error median/95th/max {' / '.join(f'{v * 1000:.3f}' for v in q(offset_err))} mg; "
          f"scale error {' / '.join(f'{v:.5f}' for v in q(scale_err))}; error after "
          f"{' / '.join(f'{v * 1000:.3f}' for v in q(after))} mg")


def ankle_nights() -> None:
    reasons = collections.Counter()
    offset_err = []
    for scenario in ("moderate", "healthy", "restless"):
        for seed in range(10):
            sensor = simulate_night(scenario, hours=8, fs_hz=100, seed=seed).sensor
            cal = autocalibrate(sensor.acc_g, sensor.fs_hz, segments=sensor.segments())
            if cal.status == "autocalibrated":
                reasons["autocalibrated"] += 1
                gain = np.array([sensor.device[f"sim_gain_{a}"] for a in "xyz"])
                bias = np.array([sensor.device[f"sim_offset_g_{a}"] for a in "xyz"])
                offset_err.append(np.abs(cal.offset_g + bias / gain).max())
            else:
                reasons[cal.details["problem"]] += 1
    print(f"one simulated ankle night (30 nights): {dict(reasons)}")
    if offset_err:
        print(f"  when autocalibrated, worst-axis offset distance from the simulator's fixed "
              f"offset: median {np.median(offset_err) * 1000:.1f} mg, max "
              f"{max(offset_err) * 1000:.1f} mg (drift included)")


if __name__ == "__main__":
    speed()
    recovery(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
    ankle_nights()
