"""Detection and scoring accuracy against the simulator's ground truth.

Method
------
For every scenario and seed (seeds 1000.., never used by the tests) an 8 h night at
100 Hz is simulated and analysed with the default parameters (rules wasm2016).

* Event level, per ankle: the detector's LMs (``kind == 'lm'``, before the bilateral
  merge) against the truth's ``lm`` rows of that leg, in sleep and in wake alike (a PSG
  scorer scores both), matched one-to-one by overlap (:mod:`pmld.evaluate`).
* Night level: the PLMS index (PLMs in sleep per hour of sleep). To measure the
  detector and not the sleep estimate (``bench_sleep.py`` measures that), both sides
  get the reference hypnogram a PSG would give: the simulator's wake spans are added to
  the night as ``reference`` annotations before analysis, and the truth LMs (with the
  posture changes as non-candidate movements) are scored by the same rules over the
  same sleep.

Run: ``python benchmarks/bench_accuracy.py [--seeds 5] [--hours 8]``. Prints a table
per scenario and the overall figures against the targets of the detection issue
(F1 >= 0.95 clean, >= 0.85 noisy/restless; median |PLM index error| <= 1/h).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from pmld.evaluate import event_agreement
from pmld.night import complement_spans, make_annotations
from pmld.pipeline import analyze
from pmld.score import score_leg_movements, summarize
from pmld.simulate import SCENARIOS, simulate_night, truth_table

HARD = {"noisy", "restless"}


def truth_plms_index(night, truth, start_s, stop_s, sleep):
    rows = truth[(truth["onset_s"] >= start_s) & (truth["onset_s"] < stop_s)]
    rows = rows.assign(kind=np.where(rows["kind"] == "posture", "posture", "lm"))
    scored = score_leg_movements(rows[["onset_s", "offset_s", "side", "kind"]], sleep=sleep)
    sleep_s = float(
        np.clip(
            np.minimum(sleep["onset_s"] + sleep["duration_s"], stop_s)
            - np.maximum(sleep["onset_s"], start_s),
            0,
            None,
        ).sum()
    )
    return summarize(scored, stop_s - start_s, sleep_s=sleep_s, wake_s=stop_s - start_s - sleep_s)


def evaluate_night(scenario: str, seed: int, hours: float, **params) -> dict:
    night = simulate_night(scenario, hours=hours, seed=seed)
    truth = truth_table(night)
    wake = night.annotation("wake")
    night.add_annotations(
        make_annotations(wake["onset_s"], wake["duration_s"], "wake", source="reference")
    )
    t0 = time.perf_counter()
    result = analyze(night, **params)
    elapsed = time.perf_counter() - t0
    row = {"scenario": scenario, "seed": seed, "analyze_s": elapsed}
    f1s, sens, ppvs = [], [], []
    for side in night.sides:
        ref = truth[(truth["kind"].isin(["lm", "wake_movement"])) & (truth["side"] == side)]
        det = result.monolateral[
            (result.monolateral["side"] == side) & (result.monolateral["kind"] == "lm")
        ]
        agreement = event_agreement(ref.reset_index(drop=True), det.reset_index(drop=True))
        f1s.append(agreement.f1)
        sens.append(agreement.sensitivity)
        ppvs.append(agreement.ppv)
        row["onset_err_s"] = agreement.onset_error_median_s
    row.update(f1=float(np.mean(f1s)), sensitivity=float(np.mean(sens)), ppv=float(np.mean(ppvs)))
    start_s = result.night_info["window_start_s"]
    stop_s = result.night_info["window_stop_s"]
    sleep = complement_spans(wake, night.duration_s)
    true_idx = truth_plms_index(night, truth, start_s, stop_s, sleep)
    row["plms_index_truth"] = true_idx["plms_index"]
    row["plms_index_pmld"] = result.indices["plms_index"]
    row["plms_error"] = row["plms_index_pmld"] - row["plms_index_truth"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    rows = []
    for scenario in args.scenarios.split(","):
        for seed in range(1000, 1000 + args.seeds):
            rows.append(evaluate_night(scenario, seed, args.hours))
    table = pd.DataFrame(rows)
    per = table.groupby("scenario", sort=False).agg(
        nights=("seed", "size"),
        f1_mean=("f1", "mean"),
        f1_min=("f1", "min"),
        sensitivity=("sensitivity", "mean"),
        ppv=("ppv", "mean"),
        onset_err_s=("onset_err_s", "median"),
        plms_truth=("plms_index_truth", "mean"),
        plms_pmld=("plms_index_pmld", "mean"),
        plms_abs_err_median=("plms_error", lambda e: float(np.median(np.abs(e)))),
        plms_bias=("plms_error", "mean"),
    )
    pd.set_option("display.width", 160)
    print(per.round(3).to_string())
    clean = table[~table["scenario"].isin(HARD)]
    hard = table[table["scenario"].isin(HARD)]
    print(
        f"\n{len(table)} nights of {args.hours:g} h. F1 clean: mean {clean['f1'].mean():.3f} "
        f"(target >= 0.95); F1 noisy/restless: mean {hard['f1'].mean():.3f} (target >= 0.85); "
        f"median |PLMS index error| {np.median(np.abs(table['plms_error'])):.2f}/h "
        f"(target <= 1/h); analysis {table['analyze_s'].median():.2f} s median per night"
    )


if __name__ == "__main__":
    main()
