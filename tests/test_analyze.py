"""The night pipeline (``pmld.pipeline.analyze``) on simulated and hand-made nights.

Detection accuracy is measured against the simulator's ground truth; data problems
(gaps, NaN samples, a flat, clipped or too short signal) must give a flagged, valid
result, never an exception. Hand-made nights rotate gravity by a known angle at known
times, so the expected leg movements are exact.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from functools import cache

import h5py
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pmld
from pmld.errors import UsageError
from pmld.evaluate import event_agreement
from pmld.io.summary import read_summary
from pmld.night import Night, Sensor, make_annotations
from pmld.provenance import canonical_json
from pmld.score import plm_series, rules_preset, score_leg_movements, summarize
from pmld.simulate import simulate_night, truth_table

try:
    from pmld.pipeline import NightAnalysis, WindowParams, analyze
except ImportError:  # the module's first name
    from pmld.analyze import NightAnalysis, WindowParams, analyze  # type: ignore

from pmld.detect import DetectionParams

START = "2026-01-05T22:30:00+00:00"
FS = 25.0


# -- hand-made nights -------------------------------------------------------------------
def leg_acc(
    duration_s: float,
    fs: float = FS,
    onsets=(),
    lm_s: float = 1.5,
    angle_deg: float = 15.0,
    rolls=(),
    noise_g: float = 0.002,
    seed: int = 0,
) -> np.ndarray:
    """Ankle acceleration (g): gravity rotated by ``angle_deg`` about y during each LM
    (0.3 s smooth ramps), and by a lasting 60 degree roll about x at each ``rolls`` time
    (3 s), plus white noise."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    theta = np.zeros(n)
    for onset in onsets:
        x = t - onset
        envelope = np.clip(np.minimum(x, lm_s - x) / 0.3, 0, 1)
        envelope = envelope * envelope * (3 - 2 * envelope)
        theta = np.maximum(theta, np.deg2rad(angle_deg) * envelope)
    phi = np.zeros(n)
    for start in rolls:
        ramp = np.clip((t - start) / 3.0, 0, 1)
        phi += np.deg2rad(60.0) * ramp * ramp * (3 - 2 * ramp)
    acc = np.column_stack([np.cos(phi) * np.sin(theta), -np.sin(phi), np.cos(phi) * np.cos(theta)])
    return acc + rng.normal(0.0, noise_g, acc.shape)


def with_gap(acc: np.ndarray, fs: float, gap_from_s: float, gap_to_s: float, **kw) -> Sensor:
    """A sensor of ``acc`` whose samples from ``gap_from_s`` to ``gap_to_s`` are missing."""
    first, stop = int(round(gap_from_s * fs)), int(round(gap_to_s * fs))
    kept = np.concatenate([acc[:first], acc[stop:]])
    gaps = pd.DataFrame({"sample_index": [first], "missing_samples": [stop - first]})
    return Sensor(kept, fs, START, gaps=gaps, **kw)


PERIODIC = np.arange(20.0, 600.0, 20.0)  # 29 LMs, IMI 20 s: one PLM series


@cache
def simulated(scenario: str, seed: int, hours: float = 1.0, fs: float = FS) -> Night:
    return simulate_night(scenario, hours=hours, fs_hz=fs, seed=seed)


def truth_reference(night: Night, result: NightAnalysis) -> float:
    """PLM index of the simulator's truth in the result's window, scored by the same
    rules: every movement an LM, posture changes non-candidates (they break series)."""
    truth = truth_table(night)
    start, stop = result.night_info["window_start_s"], result.night_info["window_stop_s"]
    truth = truth[(truth["onset_s"] >= start) & (truth["onset_s"] < stop)].copy()
    truth["kind"] = np.where(truth["kind"] == "posture", "posture", "lm")
    scored = score_leg_movements(truth[["onset_s", "offset_s", "side", "kind"]], "wasm2016")
    return summarize(scored, stop - start)["plm_index"]


def overlaps(events: pd.DataFrame, lo: float, hi: float, tol: float = 1e-6) -> pd.DataFrame:
    return events[(events["onset_s"] < hi - tol) & (events["offset_s"] > lo + tol)]


# -- detection against the simulator's truth --------------------------------------------
# Bounds: event F1 of kind 'lm' detections against the truth's leg movements (sleep and
# wake), per ankle, measured on 1 h nights at 25 Hz for seeds 0-11 before writing this
# test. Lowest F1 seen: healthy 0.905, moderate 0.923, severe 0.928, noisy 0.854,
# restless 0.769, bilateral 0.925 (after the posture fix 2b02f90: 0.923, 0.946, 0.963,
# 0.857, 0.900, 0.952). The bound is the first minimum less 0.05, so a detector change
# that loses a few percent on every night fails, while the seeds used here
# (deterministic) do not sit on the edge.
F1_BOUNDS = {
    "healthy": 0.85,
    "moderate": 0.87,
    "severe": 0.87,
    "noisy": 0.80,
    "restless": 0.72,
    "bilateral": 0.87,
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scenario", sorted(F1_BOUNDS))
def test_detected_lms_agree_with_the_simulated_truth(scenario, seed):
    night = simulated(scenario, seed)
    result = analyze(night)
    truth = truth_table(night)
    truth_lms = truth[truth["kind"] != "posture"]
    detected = result.monolateral[result.monolateral["kind"] == "lm"]
    matched = n_truth = n_detected = 0
    for side in night.sides:
        agreement = event_agreement(
            truth_lms[truth_lms["side"] == side].reset_index(drop=True),
            detected[detected["side"] == side].reset_index(drop=True),
        )
        matched += agreement.matched
        n_truth += agreement.n_reference
        n_detected += agreement.n_detected
    assert n_truth > 10
    f1 = 2 * matched / (n_truth + n_detected)
    assert f1 >= F1_BOUNDS[scenario], (scenario, seed, f1, matched, n_truth, n_detected)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_plm_index_is_close_to_the_truth_scored_by_the_same_rules(seed):
    # Measured on 2 h moderate nights (seeds 0-9): largest difference 1.1/h around
    # 25-30/h. Bound: 5/h or 20 %, a third of a severity band.
    night = simulated("moderate", seed, hours=2.0, fs=10.0)
    result = analyze(night)
    reference = truth_reference(night, result)
    assert 15 < reference < 45
    assert abs(result.indices["plm_index"] - reference) <= max(5.0, 0.2 * reference)


def test_bilateral_night_merges_the_two_ankles():
    night = simulated("bilateral", 0)
    result = analyze(night)
    assert set(result.monolateral["side"]) == {"left", "right"}
    assert set(result.events["side"]) <= {"left", "right", "both"}
    assert (result.events["side"] == "both").sum() > 5
    assert (result.events.loc[result.events["side"] == "both", "n_components"] >= 2).all()
    assert result.night_info["sides"] == ["left", "right"]


# -- posture changes ----------------------------------------------------------------------
def test_posture_changes_in_sleep_are_rarely_candidate_lms():
    # A posture change that leaves the ankle almost where it was (a lasting change under
    # posture_angle_deg = 5 degrees) is scored as an LM. Measured on 40 two-hour nights
    # (moderate, severe, restless, healthy; seeds 0-9): 6 of 96 posture changes in sleep
    # became candidates, all with a lasting change of 1.9-4.8 degrees. On the nights
    # below, 2 of 29. Bound: 15 %.
    checked = candidates = 0
    for scenario in ("moderate", "severe", "restless"):
        for seed in range(4):
            night = simulated(scenario, seed, hours=2.0, fs=10.0)
            result = analyze(night)
            truth = truth_table(night)
            lms = truth[truth["kind"] != "posture"]
            wake = night.annotation("wake")
            for posture in truth[truth["kind"] == "posture"].itertuples():
                in_wake = (
                    (wake["onset_s"] <= posture.onset_s)
                    & (posture.onset_s < wake["onset_s"] + wake["duration_s"])
                ).any()
                if in_wake:  # body movements in wake may look like LMs: not a rule here
                    continue
                checked += 1
                events = overlaps(result.events, posture.onset_s, posture.offset_s)
                # a candidate that overlaps a true LM too is that LM
                candidates += any(
                    event.candidate and overlaps(lms, event.onset_s, event.offset_s).empty
                    for event in events.itertuples()
                )
    assert checked >= 20
    assert candidates <= 0.15 * checked, (candidates, checked)


def test_a_roll_over_is_a_posture_event_that_breaks_the_series():
    # LMs every 20 s with a pause of 60 s in which the sleeper rolls over (310-313 s)
    onsets = np.concatenate([PERIODIC[PERIODIC <= 280], PERIODIC[PERIODIC >= 340]])
    result = analyze(Night.from_arrays(leg_acc(620, onsets=onsets, rolls=[310.0]), FS, START))
    events = result.events
    roll = overlaps(events, 310.0, 313.0)
    assert len(roll) == 1
    assert roll["kind"].iloc[0] == "posture" and not roll["candidate"].iloc[0]
    assert roll["posture_change_deg"].iloc[0] == pytest.approx(60, abs=3)
    assert events["candidate"].sum() == len(onsets)
    # every LM is a PLM, in two series: the roll breaks the run (IMIs of 30 s around it)
    assert result.indices["plm_count"] == len(onsets)
    assert result.indices["plm_series_count"] == 2


def test_an_lm_a_few_seconds_before_a_roll_over_is_still_an_lm():
    # Regression (found by this test, fixed in 2b02f90): the orientation "after" an LM
    # was taken baseline_s / 2 = 10 s after its offset, so an LM that ends 3.4 s before
    # the sleeper rolls over was called a posture change (60 degrees) and dropped out of
    # its series.
    result = analyze(Night.from_arrays(leg_acc(620, onsets=PERIODIC, rolls=[305.0]), FS, START))
    lm = overlaps(result.events, 300.0, 301.5)
    assert len(lm) == 1
    assert lm["kind"].iloc[0] == "lm" and lm["candidate"].iloc[0]
    assert result.indices["plm_count"] == len(PERIODIC)


# -- gaps and missing samples -----------------------------------------------------------
def test_gap_is_not_analysed_time_and_no_lm_straddles_it():
    # the gap cuts the LM of 300-301.5 s in the middle
    acc = leg_acc(620, onsets=PERIODIC)
    sensor = with_gap(acc, FS, 300.8, 306.0)
    result = analyze(Night([sensor]))
    assert result.indices["analyzed_hours"] * 3600 == pytest.approx(sensor.recorded_s)
    assert result.indices["analyzed_hours"] * 3600 == pytest.approx(620 - 5.2)
    assert overlaps(result.events, 300.8, 306.0).empty
    assert overlaps(result.monolateral, 300.8, 306.0).empty


def test_a_long_gap_ends_a_series_and_a_short_one_does_not():
    acc = leg_acc(620, onsets=PERIODIC)
    long_gap = analyze(Night([with_gap(acc, FS, 305.0, 311.0)]))  # 6 s >= break_gap_s
    short_gap = analyze(Night([with_gap(acc, FS, 305.0, 308.0)]))  # 3 s
    for result in (long_gap, short_gap):
        assert result.indices["lm_count"] == 29
        assert result.indices["plm_count"] == 29
    assert long_gap.indices["plm_series_count"] == 2
    series = long_gap.events["series_id"].to_numpy()
    assert (series[long_gap.events["onset_s"] < 305] == 0).all()
    assert (series[long_gap.events["onset_s"] > 311] == 1).all()
    assert short_gap.indices["plm_series_count"] == 1
    # break_gap_s is a parameter: 10 s lets the 6 s gap through
    tolerant = analyze(Night([with_gap(acc, FS, 305.0, 311.0)]), break_gap_s=10.0)
    assert tolerant.indices["plm_series_count"] == 1


def test_nonrespiratory_series_ids_stay_unique_across_a_gap():
    # BUG: analyze renumbers series_id across the stretches between long gaps but not
    # series_id_nonresp, so the second series reuses id 0 and plm_series(nonresp=True)
    # makes one series of two that the gap separated.
    acc = leg_acc(620, onsets=PERIODIC)
    events = analyze(Night([with_gap(acc, FS, 305.0, 311.0)])).events
    before = events.loc[events["onset_s"] < 305, "series_id_nonresp"]
    after = events.loc[events["onset_s"] > 311, "series_id_nonresp"]
    assert set(before).isdisjoint(set(after))
    assert len(plm_series(events, nonresp=True)) == 2


def test_sleep_time_counts_only_recorded_time():
    # BUG: with a user's sleep annotation, sleep time is the overlap of the sleep span
    # with the islands of data, holes shorter than break_gap_s included, so time without
    # data counts as sleep (and is taken off the wake time).
    rng = np.random.default_rng(0)
    data_s, hole_s, periods = 16.0, 4.0, 30
    seg = int(data_s * FS)
    acc = np.tile([0.0, 0.0, 1.0], (seg * periods, 1)) + rng.normal(0, 0.002, (seg * periods, 3))
    gaps = pd.DataFrame(
        {
            "sample_index": [seg * k for k in range(1, periods)],
            "missing_samples": [int(hole_s * FS)] * (periods - 1),
        }
    )
    night = Night(
        [Sensor(acc, FS, START, gaps=gaps)],
        annotations=make_annotations([0.0], [300.0], "sleep", source="user"),
    )
    result = analyze(night)
    assert result.indices["analyzed_hours"] * 3600 == pytest.approx(periods * data_s)
    # 0-300 s holds 15 periods of 16 s of data
    assert result.indices["sleep_h"] * 3600 == pytest.approx(15 * data_s)
    assert result.indices["wake_h"] * 3600 == pytest.approx(15 * data_s)


def test_nan_samples_are_missing_data_with_a_flag():
    acc = leg_acc(620, onsets=PERIODIC).astype(np.float32)
    first, n_nan = 7510, 188  # 300.4-307.92 s, from inside the LM at 300 s
    acc[first : first + n_nan] = np.nan
    result = analyze(Night.from_arrays(acc, FS, START))
    assert any(f"{n_nan} samples with NaN" in flag for flag in result.quality["flags"])
    assert result.indices["analyzed_hours"] * 3600 == pytest.approx(620 - n_nan / FS)
    assert overlaps(result.events, 300.4, 307.92).empty
    # 7.5 s >= break_gap_s: the NaN run ends the series like a gap
    assert result.indices["plm_series_count"] == 2


def test_an_all_nan_night_gives_a_flagged_result():
    # BUG: with no finite sample analysed time is 0 and summarize() raises
    # "analyzed_s must be positive, got 0.0" instead of a flagged result.
    acc = np.full((int(600 * FS), 3), np.nan, dtype=np.float32)
    result = analyze(Night.from_arrays(acc, FS, START))
    assert result.indices["lm_count"] == 0
    assert np.isnan(result.indices["plm_index"])
    assert result.quality["flags"]


def test_a_window_inside_a_gap_gives_a_flagged_result():
    # BUG: same cause: lights off and on inside a gap leave no analysed time.
    acc = leg_acc(620, onsets=PERIODIC)
    night = Night([with_gap(acc, FS, 200.0, 400.0)])
    result = analyze(night, lights_off_s=250.0, lights_on_s=350.0)
    assert result.indices["analyzed_hours"] == 0
    assert np.isnan(result.indices["plm_index"])
    assert any("too short" in flag for flag in result.quality["flags"])


def _recorded_in_window(sensor: Sensor, offset_s: float, start: float, stop: float) -> float:
    times = sensor.grid_index() / sensor.fs_hz + offset_s
    covered = np.minimum(times + 1 / sensor.fs_hz, stop) - np.maximum(times, start)
    return float(np.clip(covered, 0, None).sum())


_BASE = simulate_night("moderate", hours=0.2, fs_hz=10.0, seed=5).sensor
_N = _BASE.n_samples


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    gaps=st.lists(st.tuples(st.integers(0, _N), st.integers(1, 2000)), max_size=6),
    first=st.integers(0, _N // 2),
    lights_off=st.one_of(st.none(), st.floats(0, 600)),
    lights_on=st.one_of(st.none(), st.floats(100, 1500)),
)
def test_any_gap_table_gives_analysed_time_equal_to_recorded_time(
    gaps, first, lights_off, lights_on
):
    acc = _BASE.acc_g[first:]
    table = dict(g for g in gaps if g[0] <= len(acc))
    frame = pd.DataFrame(sorted(table.items()), columns=["sample_index", "missing_samples"])
    sensor = Sensor(acc, _BASE.fs_hz, _BASE.start_utc, side="right", gaps=frame)
    night = Night([sensor])
    start = 0.0 if lights_off is None else lights_off
    stop = night.duration_s if lights_on is None else min(lights_on, night.duration_s)
    if stop <= start:
        return  # an empty window is a UsageError by design
    recorded = _recorded_in_window(sensor, 0.0, start, stop)
    if recorded == 0:
        return  # see test_a_window_inside_a_gap_gives_a_flagged_result
    result = analyze(night, lights_off_s=lights_off, lights_on_s=lights_on)
    assert result.indices["analyzed_hours"] * 3600 == pytest.approx(recorded, abs=1e-6)
    spans = sensor.gap_spans_s()
    for lo, hi in spans:
        assert overlaps(result.events, lo, hi).empty
    # no PLM series runs across a gap of break_gap_s or more
    for _, series in result.events[result.events["series_id"] >= 0].groupby("series_id"):
        first_onset, last_onset = series["onset_s"].min(), series["onset_s"].max()
        for lo, hi in spans:
            assert not (hi - lo >= 5.0 and first_onset < lo and hi <= last_onset)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    runs=st.lists(st.tuples(st.integers(0, _N - 1), st.integers(1, 3000)), min_size=1, max_size=5)
)
def test_any_nan_runs_are_missing_data(runs):
    acc = _BASE.acc_g.copy()
    for index, length in runs:
        acc[index : index + length] = np.nan
    finite = np.isfinite(acc).all(axis=1)
    if not finite.any():
        return  # see test_an_all_nan_night_gives_a_flagged_result
    result = analyze(Night.from_arrays(acc, _BASE.fs_hz, _BASE.start_utc))
    assert result.indices["analyzed_hours"] * 3600 == pytest.approx(finite.sum() / _BASE.fs_hz)
    assert any(f"{(~finite).sum()} samples with NaN" in f for f in result.quality["flags"])
    nan_times = np.flatnonzero(~finite) / _BASE.fs_hz
    for event in result.events.itertuples():
        inside = (nan_times > event.onset_s + 1e-6) & (nan_times < event.offset_s - 1e-6)
        assert not inside.any()


# -- bad signals --------------------------------------------------------------------------
def test_an_all_zero_signal_is_flagged_flat_with_no_lms(tmp_path):
    result = analyze(Night.from_arrays(np.zeros((int(600 * FS), 3)), FS, START))
    assert result.indices["lm_count"] == 0 and len(result.events) == 0
    assert any("flat" in flag for flag in result.quality["flags"])
    result.to_hdf5(tmp_path / "flat.plm.h5")
    back = read_summary(tmp_path / "flat.plm.h5")
    assert back.quality["flags"] == result.quality["flags"]
    assert back.indices["lm_count"] == 0


def test_a_clipped_signal_is_flagged():
    night = simulated("moderate", 1, hours=0.2)
    device = dict(night.sensor.device)
    assert device["range_g"] == 8.0
    limit = device["range_g"] - 1 / device["counts_per_g"]  # int16 saturation
    acc = night.sensor.acc_g.copy()
    fs = night.sensor.fs_hz
    for start in np.arange(10, 700, 30.0):  # violent 1 s bursts every 30 s: 3.3 %
        burst = slice(int(start * fs), int((start + 1) * fs))
        acc[burst] = limit * np.sign(np.sin(np.arange(burst.stop - burst.start)))[:, None]
    result = analyze(Night.from_arrays(acc, night.sensor.fs_hz, START, device=device))
    assert any("clipped" in flag for flag in result.quality["flags"])
    assert result.quality["sensors"]["unknown"]["clipped_fraction"] > 0.01


def test_clipped_fraction_counts_samples_not_values():
    # BUG: the clipped fraction is np.mean over every axis value, so a sample clipped
    # on one axis counts a third: 2.5 % of samples clipped read as 0.8 %, under the
    # 1 % threshold, and the night is not flagged although the flag speaks of samples.
    night = simulated("moderate", 1, hours=0.2)
    device = dict(night.sensor.device)
    limit = device["range_g"] - 1 / device["counts_per_g"]
    acc = night.sensor.acc_g.copy()
    acc[::40, 0] = limit  # 2.5 % of the samples, one axis each
    result = analyze(Night.from_arrays(acc, night.sensor.fs_hz, START, device=device))
    assert result.quality["sensors"]["unknown"]["clipped_fraction"] == pytest.approx(
        0.025, abs=0.002
    )
    assert any("clipped" in flag for flag in result.quality["flags"])


def test_a_night_shorter_than_a_minute_is_flagged_with_nan_indices(tmp_path):
    acc = leg_acc(30, onsets=[5.0, 25.0])
    result = analyze(Night.from_arrays(acc, FS, START))
    assert any("too short" in flag for flag in result.quality["flags"])
    for key, value in result.indices.items():
        if key.endswith("_index"):
            assert np.isnan(value), key
    result.to_hdf5(tmp_path / "short.plm.h5")
    back = read_summary(tmp_path / "short.plm.h5")
    assert np.isnan(back.indices["plm_index"])
    assert any("too short" in flag for flag in back.quality["flags"])


def test_a_night_shorter_than_a_minute_gets_no_severity_band():
    # BUG: analyze() sets the indices to NaN after summarize() chose the band from the
    # real index, so a night that could not be analysed is reported as "<15" (normal).
    # summarize() itself calls a NaN index "unknown".
    result = analyze(Night.from_arrays(leg_acc(30, onsets=[5.0, 25.0]), FS, START))
    assert result.indices["severity_band"] == "unknown"
    assert result.summary()["severity_band"] == "unknown"


# -- gyroscope ---------------------------------------------------------------------------
def test_a_gyroscope_only_movement_is_detected():
    # the accelerometer sees only gravity and noise; the leg turns 40 deg/s for 2 s
    n = int(600 * FS)
    rng = np.random.default_rng(3)
    acc = np.tile([0.0, 0.0, 1.0], (n, 1)) + rng.normal(0, 0.002, (n, 3))
    gyro = rng.normal(0, 0.5, (n, 3)) + [1.0, -0.5, 0.3]  # noise and a bias
    t = np.arange(n) / FS
    onsets = np.arange(30.0, 570.0, 25.0)
    for onset in onsets:
        inside = (t >= onset) & (t < onset + 2.0)
        gyro[inside, 1] += 40 * np.sin(np.pi * (t[inside] - onset) / 2.0)
    with_gyro = analyze(Night.from_arrays(acc, FS, START, gyro_dps=gyro))
    without = analyze(Night.from_arrays(acc, FS, START))
    assert without.indices["lm_count"] == 0
    events = with_gyro.events
    assert len(events) == len(onsets)
    assert np.abs(events["onset_s"].to_numpy() - onsets).max() < 0.5
    assert events["candidate"].all()
    assert with_gyro.indices["plm_count"] == len(onsets)


# -- masks ---------------------------------------------------------------------------------
def test_get_mask_marks_the_times_inside_lms_and_plms():
    onsets = np.concatenate([[5.0], PERIODIC[PERIODIC >= 100]])  # an isolated LM first
    result = analyze(Night.from_arrays(leg_acc(620, onsets=onsets), FS, START))
    events = result.events
    middles = ((events["onset_s"] + events["offset_s"]) / 2).to_numpy()
    assert result.get_mask(middles, "lm").all()
    between = middles[:-1] + 8.0
    assert not result.get_mask(between, "lm").any()
    plm_mask = result.get_mask(middles, "plm")
    assert plm_mask.tolist() == events["plm"].tolist()
    assert not plm_mask[0] and plm_mask[1:].all()


def test_get_mask_with_overlapping_lms_of_two_legs():
    # BUG: get_mask looks only at the LM with the latest onset before each time, so a
    # time inside a long LM that a shorter LM of the other leg starts inside of is
    # missed. AASM rules leave such LMs unmerged (onsets 6 s apart).
    left = leg_acc(300, onsets=[100.0], lm_s=8.0, seed=1)
    right = leg_acc(300, onsets=[106.0], lm_s=1.5, seed=2)
    night = Night([Sensor(left, FS, START, side="left"), Sensor(right, FS, START, side="right")])
    result = analyze(night, "aasm")
    assert len(result.events) == 2
    assert result.get_mask(np.array([103.0, 106.5, 107.9]), "lm").all()


_LMS = st.lists(
    st.tuples(st.floats(0, 300), st.floats(0.5, 12), st.sampled_from(["left", "right"])),
    max_size=25,
)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(lms=_LMS, probes=st.lists(st.floats(0, 320), min_size=1, max_size=30))
def test_get_mask_is_true_exactly_inside_some_lm(lms, probes):
    template = _template_result()
    frame = pd.DataFrame(lms, columns=["onset_s", "duration_s", "side"])
    frame["offset_s"] = frame["onset_s"] + frame["duration_s"]
    events = score_leg_movements(frame[["onset_s", "offset_s", "side"]], rules_preset("aasm"))
    result = dataclasses.replace(template, events=events)
    times = np.array(probes)
    onset = events["onset_s"].to_numpy()[:, None]
    offset = events["offset_s"].to_numpy()[:, None]
    expected = ((onset <= times) & (times < offset)).any(axis=0)
    assert result.get_mask(times, "lm").tolist() == expected.tolist()


@cache
def _template_result() -> NightAnalysis:
    return analyze(Night.from_arrays(leg_acc(120, onsets=[30.0]), FS, START))


# -- the summary file and provenance ------------------------------------------------------
def test_summary_file_round_trip(tmp_path):
    night = simulated("bilateral", 1, hours=0.5)
    result = analyze(night)
    path = tmp_path / "night.plm.h5"
    result.to_hdf5(path)
    back = read_summary(path)
    pd.testing.assert_frame_equal(back.events, result.events, check_dtype=False)
    pd.testing.assert_frame_equal(
        back.series, result.series.reset_index(drop=True), check_dtype=False
    )
    pd.testing.assert_frame_equal(back.monolateral, result.monolateral, check_dtype=False)
    assert set(back.indices) == set(result.indices)
    for key, value in result.indices.items():
        if isinstance(value, float) and np.isnan(value):
            assert np.isnan(back.indices[key]), key
        else:
            assert back.indices[key] == value, key
    assert set(back.histograms) == set(result.histograms)
    for key, value in result.histograms.items():
        np.testing.assert_array_equal(back.histograms[key], value)
    assert back.quality == json.loads(canonical_json(result.quality))
    assert back.parameters == json.loads(canonical_json(result.parameters))
    assert back.attrs["sides"] == "left,right"


def test_summary_records_its_provenance(tmp_path):
    night = simulated("moderate", 0, hours=0.5)
    result = analyze(night, "aasm", onset_ratio=5.0, break_gap_s=7.0)
    result.inputs = [{"path": "night.h5", "sha256": "sha256:" + "ab" * 32}]
    path = tmp_path / "night.plm.h5"
    result.to_hdf5(path)
    attrs = read_summary(path).attrs
    assert attrs["schema"] == "pmld-summary" and attrs["schema_version"] == "1.1"
    assert attrs["pmld_version"] == pmld.__version__
    assert datetime.fromisoformat(attrs["created_utc"]).tzinfo is not None
    assert attrs["start_utc"] == night.start_utc.isoformat()
    assert attrs["timezone"] == "UTC" and attrs["sides"] == "right"
    assert attrs["input_sha256"] == "sha256:" + "ab" * 32
    assert json.loads(attrs["inputs_json"]) == result.inputs
    assert attrs["rules"] == "aasm"
    parameters = json.loads(attrs["parameters_json"])
    assert attrs["parameters_json"] == canonical_json(parameters)
    assert parameters["rules_preset"] == "aasm"
    assert parameters["detection"] == {**DetectionParams().to_dict(), "onset_ratio": 5.0}
    assert parameters["rules"] == rules_preset("aasm").to_dict()
    assert parameters["window"] == {**WindowParams().to_dict(), "break_gap_s": 7.0}
    assert json.loads(attrs["night_meta_json"])["scenario"] == "moderate"
    assert attrs["window_start_s"] == pytest.approx(night.meta["lights_off_s"])
    assert attrs["window_stop_s"] == pytest.approx(night.meta["lights_on_s"])


def test_analysing_twice_gives_identical_events_and_indices():
    night = simulated("severe", 2, hours=0.5)
    first, second = analyze(night), analyze(night)
    pd.testing.assert_frame_equal(first.events, second.events)
    pd.testing.assert_frame_equal(first.monolateral, second.monolateral)
    assert canonical_json(first.indices) == canonical_json(second.indices)
    assert first.parameters == second.parameters


def test_parameter_overrides_are_routed_and_validated():
    night = Night.from_arrays(leg_acc(120, onsets=[30.0, 60.0]), FS, START)
    result = analyze(night, "strict", onset_min_g=0.02, min_series_count=3, clip_fraction=0.05)
    assert result.parameters["detection"]["onset_min_g"] == 0.02
    assert result.parameters["rules"]["min_series_count"] == 3
    assert result.parameters["rules"]["max_imi_s"] == 40.0  # from the strict preset
    assert result.parameters["window"]["clip_fraction"] == 0.05
    with pytest.raises(UsageError, match="unknown parameter 'onset_ratioo'"):
        analyze(night, onset_ratioo=4.0)
    with pytest.raises(UsageError, match="min_imi_s"):
        analyze(night, min_imi_s=-1.0)


@pytest.mark.parametrize(
    "name, value",
    [
        ("clip_fraction", "abc"),
        ("break_gap_s", "abc"),
        ("break_gap_s", -5.0),
        ("lights_off_s", "x"),
    ],
)
def test_window_parameters_are_validated_like_the_others(name, value):
    # BUG: WindowParams has no checks: text or negative values are accepted (and
    # recorded in parameters_json) or crash later with a TypeError / ValueError.
    night = Night.from_arrays(leg_acc(120, onsets=[30.0, 60.0]), FS, START)
    with pytest.raises(UsageError, match=name):
        analyze(night, **{name: value})


def test_lights_window_limits_the_analysis():
    night = simulated("moderate", 0)
    whole = analyze(night, lights_off_s=0.0, lights_on_s=night.duration_s)
    assert whole.indices["analyzed_hours"] == pytest.approx(1.0)
    default = analyze(night)  # the night's lights_off / lights_on annotations
    expected = (night.meta["lights_on_s"] - night.meta["lights_off_s"]) / 3600
    assert default.indices["analyzed_hours"] == pytest.approx(expected)
    window = analyze(night, lights_off_s=600.0, lights_on_s=1800.0)
    assert window.indices["analyzed_hours"] == pytest.approx(1200 / 3600)
    onsets = window.events["onset_s"]
    assert ((onsets >= 600) & (onsets < 1800)).all()
    inside = whole.events[(whole.events["onset_s"] >= 600) & (whole.events["onset_s"] < 1800)]
    assert len(window.events) == len(inside)
    with pytest.raises(UsageError, match="window is empty"):
        analyze(night, lights_off_s=1800.0, lights_on_s=600.0)


def test_a_stuck_sensor_gives_unknown_indices_not_zero():
    flat = np.tile([0.0, 0.0, 1.0], (int(600 * FS), 1))
    result = analyze(Night.from_arrays(flat, FS, START))
    assert np.isnan(result.indices["plm_index"]) and result.indices["severity_band"] == "unknown"
    assert any("indices are unknown" in flag for flag in result.quality["flags"])


def test_a_moving_gyroscope_means_the_sensor_is_not_flat():
    n = int(600 * FS)
    gyro = np.zeros((n, 3))
    for onset in PERIODIC:
        gyro[int(onset * FS) : int((onset + 1.5) * FS), 2] = 40.0
    night = Night.from_arrays(np.tile([0.0, 0.0, 1.0], (n, 1)), FS, START, gyro_dps=gyro)
    result = analyze(night)
    assert not any("flat" in flag for flag in result.quality["flags"])
    assert result.indices["lm_count"] == len(PERIODIC)


def test_a_damaged_summary_names_what_is_missing(tmp_path):
    import h5py

    from pmld.errors import FormatError
    from pmld.io.summary import read_summary

    path = tmp_path / "n.plm.h5"
    analyze(Night.from_arrays(leg_acc(200, onsets=PERIODIC[:5]), FS, START)).to_hdf5(path)
    with h5py.File(path, "a") as h5:
        del h5["quality"]
    with pytest.raises(FormatError, match="/quality is missing"):
        read_summary(path)


def test_reference_lights_win_over_the_simulators():
    night = simulate_night("moderate", hours=0.5, seed=4)
    sim = night.annotations
    assert (sim["label"] == "lights_off").any()  # the simulator's own lights
    ref = make_annotations([600.0, 1500.0], 0.0, ["lights_off", "lights_on"], source="reference")
    both = dataclasses.replace(night, annotations=pd.concat([sim, ref], ignore_index=True))
    summary = pmld.analyze(both).summary()
    assert summary["analyzed_hours"] == pytest.approx(900.0 / 3600.0, abs=1e-6)
    # without the reference, the simulator's lights set the window
    own = pmld.analyze(night).summary()["analyzed_hours"]
    assert own != pytest.approx(900.0 / 3600.0, abs=1e-3)


def test_summary_gaps_night_date_and_a_version_1_0_file(tmp_path):
    night = simulated("moderate", 0, hours=0.5)
    sensor = night.sensors[0]
    fs = sensor.fs_hz
    sensor.acc_g[int(100 * fs) : int(110 * fs)] = np.nan  # 10 s of NaN: missing data
    result = analyze(night)
    path = tmp_path / "night.plm.h5"
    result.to_hdf5(path)
    back = read_summary(path)
    offset = night.offset_s(sensor)
    gaps = back.gaps
    assert len(gaps) == 1 and gaps["side"].iloc[0] == sensor.side
    assert gaps["onset_s"].iloc[0] == pytest.approx(100 + offset, abs=1 / fs)
    assert gaps["duration_s"].iloc[0] == pytest.approx(10, abs=1 / fs)
    assert back.attrs["night_date"] == night.night_date
    # a file of schema 1.0 has none of 1.1's groups: it reads with empty ones
    with h5py.File(path, "r+") as h5:
        for name in ("gaps", "sleep", "calibration", "epochs"):
            if name in h5:
                del h5[name]
        del h5.attrs["night_date"]
        h5.attrs["schema_version"] = "1.0"
    old = read_summary(path)
    assert old.gaps is None and old.epochs is None and old.sleep == {} and old.calibration == []
    pd.testing.assert_frame_equal(old.events, back.events)
