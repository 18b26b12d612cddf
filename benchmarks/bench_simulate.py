"""Speed, memory and ground-truth figures of the night simulator.

Run ``python benchmarks/bench_simulate.py`` from the repository root.

Method
------
* Speed: for every scenario, one warm-up call of ``simulate_night(name, hours=8,
  fs_hz=100, seed=0)``, then the best of ``--repeat`` (3) calls timed with
  :func:`time.perf_counter` (wall) and :func:`time.process_time` (CPU of this process).
  The best of several runs filters out other load on the machine.
* Memory: one more call per scenario under :mod:`tracemalloc` (NumPy reports its
  buffers to it); the peak includes the returned night.
* Ground truth: the same scenarios for ``--seeds`` (10) seeds. The truth does not depend
  on the sampling rate, so these nights are made at 10 Hz. The LMs are scored with a
  small WASM 2016 reference scorer written here (bilateral merge when the gap is
  < 0.5 s; CLM 0.5-10 s, bilateral <= 15 s of <= 4 LMs; 10 s <= IMI <= 90 s; runs of
  >= 4; a non-candidate breaks a run; a short-IMI CLM cannot start one): it is a sanity
  check of the generator, not pmld's scorer.
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc

import numpy as np

from pmld.simulate import SCENARIOS, simulate_night, truth_table


def merge_legs(lms):
    """Merge LMs of different legs that overlap or are < 0.5 s apart (WASM 2016).

    A movement joins the current event when it is on another leg than the event's last
    member and starts less than 0.5 s after the event's offset; merging chains.
    """
    events = []
    for onset, offset, duration, side in lms.sort_values("onset_s")[
        ["onset_s", "offset_s", "duration_s", "side"]
    ].itertuples(index=False):
        last = events[-1] if events else None
        if last is not None and side != last["side"] and onset - last["off"] < 0.5:
            last.update(
                off=max(last["off"], offset),
                parts=last["parts"] + 1,
                longest=max(last["longest"], duration),
                side=side,
            )
        else:
            events.append(
                {"on": onset, "off": offset, "parts": 1, "longest": duration, "side": side}
            )
    return events


def plm_flags(events) -> np.ndarray:
    flags = np.zeros(len(events), dtype=bool)
    run: list[int] = []
    previous = None
    for i, e in enumerate(events):
        span = e["off"] - e["on"]
        if e["parts"] == 1:
            candidate = 0.5 <= span <= 10.0
        else:
            candidate = span <= 15.0 and e["parts"] <= 4 and e["longest"] <= 10.0
        imi = math.inf if previous is None else e["on"] - previous
        previous = e["on"]
        if candidate and run and 10.0 - 1e-9 <= imi <= 90.0 + 1e-9:
            run.append(i)
            continue
        if len(run) >= 4:
            flags[run] = True
        run = [i] if candidate and imi >= 10.0 - 1e-9 else []
    if len(run) >= 4:
        flags[run] = True
    return flags


def truth_figures(night) -> dict[str, float]:
    truth = truth_table(night)
    tst_h = night.meta["tst_s"] / 3600.0
    sleep_lm = truth[truth["kind"] == "lm"]
    events = merge_legs(truth[truth["kind"] != "posture"])
    flags = plm_flags(events)
    onsets = np.array([e["on"] for e in events])
    wake = night.annotation("wake")
    in_wake = np.zeros(len(onsets), dtype=bool)
    for onset, duration in zip(wake["onset_s"], wake["duration_s"], strict=True):
        in_wake |= (onsets >= onset) & (onsets < onset + duration)
    lights = (onsets >= night.meta["lights_off_s"]) & (onsets < night.meta["lights_on_s"])
    plms = flags & ~in_wake & lights
    imis = []
    for _, group in sleep_lm[sleep_lm["series"] >= 0].groupby("series"):
        # One onset per movement: the second leg of a bilateral LM starts <= 0.5 s later.
        onsets = np.sort(group["onset_s"].to_numpy())
        onsets = onsets[np.concatenate([[True], np.diff(onsets) > 0.6])]
        imis.append(np.diff(onsets))
    imis = np.concatenate(imis) if imis else np.zeros(0)
    periodic = imis[(imis >= 10) & (imis <= 90)]
    sleep_events = ~in_wake & lights
    return {
        "tst_h": tst_h,
        "lm_per_h": sleep_events.sum() / tst_h,
        "series_lm_per_h": len(sleep_lm[sleep_lm["series"] >= 0]) / tst_h,
        "plms_index": plms.sum() / tst_h,
        "series": len(night.annotation("plm_series")),
        "imi_median_s": float(np.median(periodic)) if len(periodic) else math.nan,
        "ln_imi_mean": float(np.log(periodic).mean()) if len(periodic) else math.nan,
        "short_imi": float((imis < 10).mean()) if len(imis) else math.nan,
        "wake_moves": float((truth["kind"] == "wake_movement").sum()),
        "postures": float((truth["kind"] == "posture").sum()),
        "artifacts": float(len(night.annotation("artifact"))),
        "bilateral_share": float(np.mean([e["parts"] > 1 for e in events])) if events else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--hours", type=float, default=8.0)
    args = parser.parse_args()

    print(f"Speed: {args.hours:g} h at 100 Hz, seed 0, best of {args.repeat} after a warm-up")
    print(
        f"{'scenario':<10} {'sensors':>7} {'wall s':>7} {'cpu s':>7} {'Msamples/s':>10} "
        f"{'peak MB':>8}"
    )
    for name in SCENARIOS:
        simulate_night(name, hours=args.hours, seed=0)
        wall, cpu = [], []
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            night = simulate_night(name, hours=args.hours, seed=0)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        del night
        tracemalloc.start()
        night = simulate_night(name, hours=args.hours, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        samples = sum(s.n_samples for s in night.sensors)
        print(
            f"{name:<10} {len(night.sensors):>7} {min(wall):>7.2f} {min(cpu):>7.2f} "
            f"{samples / min(wall) / 1e6:>10.1f} {peak / 1e6:>8.0f}"
        )
        del night

    print()
    print(f"Ground truth: {args.hours:g} h nights, seeds 0-{args.seeds - 1}, mean (min-max)")
    keys = [
        "tst_h",
        "lm_per_h",
        "series_lm_per_h",
        "plms_index",
        "series",
        "imi_median_s",
        "ln_imi_mean",
        "short_imi",
        "wake_moves",
        "postures",
        "artifacts",
        "bilateral_share",
    ]
    print(f"{'scenario':<10} " + " ".join(f"{k:>18}" for k in keys))
    for name in SCENARIOS:
        rows = [
            truth_figures(simulate_night(name, hours=args.hours, fs_hz=10.0, seed=seed))
            for seed in range(args.seeds)
        ]
        cells = []
        for k in keys:
            values = np.array([r[k] for r in rows], dtype=float)
            cells.append(
                f"{np.nanmean(values):.2f} ({np.nanmin(values):.1f}-{np.nanmax(values):.1f})"
            )
        print(f"{name:<10} " + " ".join(f"{c:>18}" for c in cells))


if __name__ == "__main__":
    main()
