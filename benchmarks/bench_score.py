"""Speed of PLM scoring (pmld.score).

Target: scoring 10,000 leg movements takes <= 20 ms.

Run either way:

    .venv/bin/pytest benchmarks/bench_score.py            # pytest-benchmark tables
    .venv/bin/python benchmarks/bench_score.py            # plain figures

The real patient night (shared/data/real-night-lms.csv beside the repo) is timed too
when it is present.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pmld.score import imi_histograms, score_leg_movements, summarize

TARGET_10K_S = 0.020
REAL_NIGHT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-night-lms.csv"


def synthetic_lms(n_lms: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """A night-like table of ``n_lms`` monolateral LMs on two legs, shuffled.

    Bouts of periodic LMs on the right leg (IMI log-normal around 25 s) separated by
    quiet minutes; about half of them have a left-leg partner a few tenths of a second
    away (bilateral LMs), 4% last more than 10 s, and 1% are posture changes.
    """
    rng = np.random.default_rng(seed)
    n_right = int(n_lms / 1.5)
    imi = rng.lognormal(np.log(25.0), 0.45, n_right)
    bout_breaks = rng.random(n_right) < 0.03
    imi[bout_breaks] += rng.uniform(120.0, 900.0, bout_breaks.sum())
    right_onset = np.cumsum(imi)
    right_duration = rng.lognormal(np.log(2.0), 0.5, n_right)
    long_lm = rng.random(n_right) < 0.04
    right_duration[long_lm] = rng.uniform(10.0, 25.0, long_lm.sum())
    n_left = n_lms - n_right
    partners = np.sort(rng.choice(n_right, n_left, replace=False))
    left_onset = right_onset[partners] + rng.normal(0.3, 0.8, n_left)
    left_duration = rng.lognormal(np.log(1.8), 0.5, n_left)
    onset = np.r_[right_onset, left_onset]
    duration = np.maximum(np.r_[right_duration, left_duration], 0.5)
    kind = np.where(rng.random(n_lms) < 0.01, "posture", "lm")
    lms = pd.DataFrame(
        {
            "onset_s": onset,
            "offset_s": onset + duration,
            "side": np.r_[np.full(n_right, "right"), np.full(n_left, "left")],
            "kind": kind,
            "peak_g": rng.gamma(2.0, 0.05, n_lms),
        }
    )
    return lms.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def night_events(lms: pd.DataFrame, seed: int = 1) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    end = float(lms["offset_s"].max())
    apnea_onset = np.sort(rng.uniform(0.0, end, 400))
    arousal_onset = np.sort(rng.uniform(0.0, end, 600))
    wake_every = end / 8
    return {
        "respiratory": pd.DataFrame({"onset_s": apnea_onset, "duration_s": 18.0}),
        "arousals": pd.DataFrame({"onset_s": arousal_onset, "duration_s": 6.0}),
        "sleep": pd.DataFrame(
            {"onset_s": np.arange(8) * wake_every, "duration_s": wake_every * 0.9}
        ),
    }


@pytest.fixture(scope="module")
def lms_10k():
    return synthetic_lms()


@pytest.fixture(scope="module")
def real_night():
    if not REAL_NIGHT.exists():
        pytest.skip(f"real-night data not found at {REAL_NIGHT}")
    return pd.read_csv(REAL_NIGHT)


def test_score_10k(benchmark, lms_10k):
    scored = benchmark(score_leg_movements, lms_10k)
    assert len(scored) > 0
    assert benchmark.stats.stats.median <= TARGET_10K_S


def test_score_10k_with_events(benchmark, lms_10k):
    events = night_events(lms_10k)
    benchmark(score_leg_movements, lms_10k, **events)
    assert benchmark.stats.stats.median <= TARGET_10K_S


def test_summarize_10k(benchmark, lms_10k):
    scored = score_leg_movements(lms_10k)
    analyzed_s = float(lms_10k["offset_s"].max())
    benchmark(lambda: (summarize(scored, analyzed_s), imi_histograms(scored)))


def test_score_real_night(benchmark, real_night):
    benchmark(score_leg_movements, real_night)


def _time(function, repeat: int = 50) -> tuple[float, float]:
    function()  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> int:
    lms = synthetic_lms()
    events = night_events(lms)
    scored = score_leg_movements(lms)
    analyzed_s = float(lms["offset_s"].max())
    cases = {
        "score 10,000 LMs": lambda: score_leg_movements(lms),
        "score 10,000 LMs + respiratory/arousal/sleep": lambda: score_leg_movements(lms, **events),
        "summarize + histograms (10,000 LMs)": lambda: (
            summarize(scored, analyzed_s),
            imi_histograms(scored),
        ),
    }
    if REAL_NIGHT.exists():
        night = pd.read_csv(REAL_NIGHT)
        cases["score real night (974 LMs)"] = lambda: score_leg_movements(night)
    print(f"10,000 LMs -> {len(scored)} scored, {int(scored['plm'].sum())} PLMs")
    worst = 0.0
    for name, function in cases.items():
        median, best = _time(function)
        print(f"{name:48s} median {median * 1e3:7.2f} ms   min {best * 1e3:7.2f} ms")
        if name.startswith("score 10,000"):
            worst = max(worst, median)
    verdict = "meets" if worst <= TARGET_10K_S else "MISSES"
    print(f"target: 10,000 LMs in <= {TARGET_10K_S * 1e3:.0f} ms: {verdict}")
    return 0 if worst <= TARGET_10K_S else 1


if __name__ == "__main__":
    sys.exit(main())
