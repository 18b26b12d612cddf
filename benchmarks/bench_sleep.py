"""Benchmark of the sleep period, sleep/wake and non-wear estimate (pmld.sleep).

Method
------
Simulated nights (pmld.simulate) at 100 Hz with 8 h in bed:

* Set A: every scenario x 3 seeds with an evening (2-4 h) and a morning (1-2.5 h)
  out of bed, started at a local time between 18:00 and 21:00 (Europe/Zurich, dates
  through the year, DST included); every second night has the band off for 65-100 min
  in the evening or right after getting up.
* Set B: every scenario x 2 seeds recorded from a few minutes before lights-off to a
  few minutes after lights-on (no evening or morning).

For each night the detector (pmld.detect.detect_leg_movements) finds the leg
movements, and :func:`pmld.sleep.estimate_sleep` gets them. Against the simulator's
truth (``sleep_onset_s``, ``final_awakening_s``, ``wake`` and ``nonwear`` rows):

* sleep-period onset and offset error (min): median of the absolute error, 90th
  percentile, largest;
* 30 s epochs: accuracy and Cohen's kappa of sleep vs not-sleep over the whole
  recording (epochs with data) and inside the true sleep period; the same without the
  movements (every angle change over 5 degrees is wake evidence);
* non-wear: sensitivity (true non-wear time flagged) and specificity (worn time not
  flagged), pooled over the nights;
* runtime of estimate_sleep per night (the detector and the simulator not included).

Run: ``.venv/bin/python benchmarks/bench_sleep.py`` (about 2-4 minutes).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from pmld.detect import detect_leg_movements
from pmld.simulate import SCENARIOS, simulate_night
from pmld.sleep import estimate_sleep

FS_HZ = 100.0
BED_H = 8.0


def _movements(night) -> pd.DataFrame:
    frames = []
    for sensor in night.sensors:
        found = detect_leg_movements(sensor.acc_g, sensor.fs_hz)
        found["onset_s"] += night.offset_s(sensor)
        found["offset_s"] += night.offset_s(sensor)
        found["side"] = sensor.side
        frames.append(found)
    return pd.concat(frames, ignore_index=True)


def _in_spans(times: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    start = frame["onset_s"].to_numpy()
    end = start + frame["duration_s"].to_numpy()
    return ((times[:, None] >= start) & (times[:, None] < end)).any(axis=1)


def _kappa(truth: np.ndarray, estimate: np.ndarray) -> float:
    n = truth.size
    if n == 0:
        return float("nan")
    observed = np.mean(truth == estimate)
    p_t, p_e = truth.mean(), estimate.mean()
    expected = p_t * p_e + (1 - p_t) * (1 - p_e)
    return float((observed - expected) / (1 - expected)) if expected < 1 else float("nan")


def _score(night, est) -> dict:
    side = night.sides[0]
    ep = est.epochs[est.epochs["side"] == side]
    mid = ep["onset_s"].to_numpy() + 15.0
    so, fa = night.meta["sleep_onset_s"], night.meta["final_awakening_s"]
    truth = ~_in_spans(mid, night.annotation("wake")) & (mid >= so) & (mid < fa)
    has_data = np.isfinite(ep["angle_deg"].to_numpy())
    sleep = ep["sleep"].to_numpy()
    inside = (mid >= so) & (mid < fa) & has_data
    out = {
        "acc": float(np.mean(truth[has_data] == sleep[has_data])),
        "kappa": _kappa(truth[has_data], sleep[has_data]),
        "acc_in": float(np.mean(truth[inside] == sleep[inside])),
        "onset_err_min": np.nan,
        "offset_err_min": np.nan,
    }
    if est.period is not None:
        out["onset_err_min"] = (est.period[0] - so) / 60.0
        out["offset_err_min"] = (est.period[1] - fa) / 60.0
    # non-wear, per sensor, in seconds of 30 s epochs
    tp = fn = fp = tn = 0.0
    truth_nw = night.annotation("nonwear")
    for s in night.sides:
        e = est.epochs[est.epochs["side"] == s]
        m = e["onset_s"].to_numpy() + 15.0
        true_off = _in_spans(m, truth_nw[truth_nw["side"] == s])
        flagged = e["nonwear"].to_numpy()
        tp += np.sum(true_off & flagged) * 30
        fn += np.sum(true_off & ~flagged) * 30
        fp += np.sum(~true_off & flagged) * 30
        tn += np.sum(~true_off & ~flagged) * 30
    out.update(tp=tp, fn=fn, fp=fp, tn=tn)
    return out


def _night_set(with_day: bool):
    rng = np.random.default_rng(2026)
    plan = []
    seeds = (101, 102, 103) if with_day else (201, 202)
    for k, scenario in enumerate(SCENARIOS):
        for j, seed in enumerate(seeds):
            if not with_day:
                plan.append((scenario, seed, {}))
                continue
            evening_h = float(rng.uniform(2.0, 4.0))
            morning_h = float(rng.uniform(1.0, 2.5))
            day = 1 + int(rng.integers(0, 360))
            date = pd.Timestamp("2026-01-01") + pd.Timedelta(days=day)
            clock = float(rng.uniform(18.0, 21.0))
            start = (date + pd.Timedelta(hours=clock)).strftime("%Y-%m-%dT%H:%M")
            kwargs = {
                "evening_h": evening_h,
                "morning_h": morning_h,
                "start_local": start,
                "timezone": "Europe/Zurich",
            }
            if (k + j) % 2 == 1:
                length = float(rng.uniform(65.0, 100.0)) * 60.0
                if rng.random() < 0.5 and evening_h * 3600 > length + 900:
                    onset = float(rng.uniform(300.0, evening_h * 3600 - length - 600))
                else:
                    morning_start = (evening_h + BED_H) * 3600.0
                    length = min(length, morning_h * 3600.0 - 400.0)
                    onset = morning_start + 300.0
                if length >= 3900.0:
                    kwargs["nonwear"] = [(onset, length)]
            plan.append((scenario, seed, kwargs))
    return plan


def _run(with_day: bool) -> pd.DataFrame:
    rows = []
    for scenario, seed, kwargs in _night_set(with_day):
        night = simulate_night(scenario, hours=BED_H, fs_hz=FS_HZ, seed=seed, **kwargs)
        movements = _movements(night)
        t0 = time.perf_counter()
        est = estimate_sleep(night, movements=movements)
        runtime = time.perf_counter() - t0
        plain = estimate_sleep(night)
        row = {"scenario": scenario, "seed": seed, "hours": night.duration_s / 3600.0}
        row.update(_score(night, est))
        row["acc_no_movements"] = _score(night, plain)["acc"]
        row["kappa_no_movements"] = _score(night, plain)["kappa"]
        row["runtime_s"] = runtime
        row["runtime_s_per_8h"] = runtime * 8.0 / (night.duration_s / 3600.0) / len(night.sides)
        row["nonwear_given"] = "nonwear" in kwargs
        row["flags"] = "; ".join(est.info["flags"])
        rows.append(row)
        print(
            f"  {scenario:9s} seed {seed}: {row['hours']:.1f} h, onset "
            f"{row['onset_err_min']:+.1f} min, offset {row['offset_err_min']:+.1f} min, "
            f"acc {row['acc']:.3f}, kappa {row['kappa']:.2f}, {runtime:.2f} s",
            flush=True,
        )
    return pd.DataFrame(rows)


def _report(name: str, table: pd.DataFrame) -> None:
    onset = table["onset_err_min"].abs()
    offset = table["offset_err_min"].abs()
    print(f"\n{name}: {len(table)} nights, {table['period_found'].sum()} with a period")
    print(
        f"  sleep-period onset |error| min: median {onset.median():.1f}, "
        f"90th pct {onset.quantile(0.9):.1f}, max {onset.max():.1f}"
    )
    print(
        f"  sleep-period offset |error| min: median {offset.median():.1f}, "
        f"90th pct {offset.quantile(0.9):.1f}, max {offset.max():.1f}"
    )
    print(
        f"  sleep/wake 30 s epochs, whole recording: accuracy {table['acc'].mean():.3f}, "
        f"kappa {table['kappa'].mean():.3f} (mean over nights); inside the true period "
        f"accuracy {table['acc_in'].mean():.3f}"
    )
    print(
        f"  without the detector's movements: accuracy {table['acc_no_movements'].mean():.3f}, "
        f"kappa {table['kappa_no_movements'].mean():.3f}"
    )
    for scenario, part in table.groupby("scenario", sort=False):
        print(
            f"    {scenario:9s} acc {part['acc'].mean():.3f} kappa {part['kappa'].mean():.2f} "
            f"onset {part['onset_err_min'].abs().median():.1f} "
            f"offset {part['offset_err_min'].abs().median():.1f} min"
        )
    tp, fn, fp, tn = (table[c].sum() for c in ("tp", "fn", "fp", "tn"))
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    print(
        f"  non-wear: sensitivity {sens:.3f} ({tp / 3600:.1f} of {(tp + fn) / 3600:.1f} h), "
        f"specificity {spec:.4f} ({fp / 3600:.2f} h of {(tn + fp) / 3600:.1f} h worn flagged)"
    )
    print(
        f"  estimate_sleep runtime per night: median {table['runtime_s'].median():.2f} s, "
        f"max {table['runtime_s'].max():.2f} s (per 8 h at 100 Hz of one sensor: median "
        f"{table['runtime_s_per_8h'].median():.2f} s)"
    )


def main() -> None:
    t0 = time.perf_counter()
    print("Set A: evening and morning out of bed, some non-wear")
    a = _run(True)
    print("Set B: recorded from lights-off to lights-on")
    b = _run(False)
    for table in (a, b):
        table["period_found"] = table["onset_err_min"].notna()
    _report("Set A (with evening and morning)", a)
    _report("Set B (lights-off to lights-on)", b)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
