"""Tests of the sleep period, sleep/wake and non-wear estimate (pmld.sleep).

Nights come from the simulator with an evening and a morning out of bed; the truth is
its ``sleep_onset_s`` / ``final_awakening_s`` and ``wake`` / ``nonwear`` annotations.
They are short (4 h in bed) and sampled at 25 Hz to keep the file fast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmld.detect import detect_leg_movements
from pmld.errors import InputError, UsageError
from pmld.night import Night, Sensor
from pmld.simulate import simulate_night
from pmld.sleep import EPOCH_COLUMNS, SleepEstimate, SleepParams, estimate_sleep

FS = 25.0
BED_H = 4.0


def _detect(night: Night) -> pd.DataFrame:
    frames = []
    for sensor in night.sensors:
        found = detect_leg_movements(sensor.acc_g, sensor.fs_hz)
        found["onset_s"] += night.offset_s(sensor)
        found["offset_s"] += night.offset_s(sensor)
        found["side"] = sensor.side
        frames.append(found)
    return pd.concat(frames, ignore_index=True)


def _true_sleep(night: Night, times_s: np.ndarray) -> np.ndarray:
    """Whether each time is asleep in the simulator's truth."""
    wake = night.annotation("wake")
    start = wake["onset_s"].to_numpy()
    end = start + wake["duration_s"].to_numpy()
    awake = ((times_s[:, None] >= start) & (times_s[:, None] < end)).any(axis=1)
    onset, final = night.meta["sleep_onset_s"], night.meta["final_awakening_s"]
    return ~awake & (times_s >= onset) & (times_s < final)


def _agreement(night: Night, est: SleepEstimate) -> float:
    """Sleep/wake epoch agreement inside the true sleep period."""
    ep = est.epochs[est.epochs["side"] == night.sides[0]]
    mid = ep["onset_s"].to_numpy() + 15.0
    inside = (mid >= night.meta["sleep_onset_s"]) & (mid < night.meta["final_awakening_s"])
    truth = _true_sleep(night, mid)
    return float((ep["sleep"].to_numpy()[inside] == truth[inside]).mean())


@pytest.fixture(scope="module")
def nights():
    out = {}
    for scenario, seed in (("healthy", 3), ("moderate", 4), ("severe", 5)):
        night = simulate_night(
            scenario, hours=BED_H, fs_hz=FS, seed=seed, evening_h=1.5, morning_h=0.5
        )
        out[scenario] = (night, _detect(night))
    return out


# -- the sleep period -------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["healthy", "moderate", "severe"])
def test_period_matches_the_simulated_sleep_period(nights, scenario):
    night, movements = nights[scenario]
    est = estimate_sleep(night, movements=movements)
    assert est.period is not None, est.info["flags"]
    onset_err = abs(est.period[0] - night.meta["sleep_onset_s"])
    offset_err = abs(est.period[1] - night.meta["final_awakening_s"])
    # The evening (1.5 h) and the morning are awake: a period spilling into them fails.
    assert onset_err < 30 * 60 and offset_err < 30 * 60, (onset_err, offset_err)
    assert est.period[0] > night.meta["lights_off_s"] - 10 * 60


@pytest.mark.parametrize("scenario", ["healthy", "moderate", "severe"])
def test_sleep_wake_agreement_inside_the_period(nights, scenario):
    night, movements = nights[scenario]
    est = estimate_sleep(night, movements=movements)
    assert _agreement(night, est) >= 0.85


def test_periodic_leg_movements_do_not_turn_sleep_into_wake(nights):
    night, movements = nights["severe"]
    with_lms = _agreement(night, estimate_sleep(night, movements=movements))
    without = estimate_sleep(night)
    assert any("no leg movements given" in f for f in without.info["flags"])
    assert with_lms > _agreement(night, without) + 0.05
    assert estimate_sleep(night, movements=movements).info["explained_movements"] > 50


def test_the_evening_and_morning_are_not_sleep(nights):
    night, movements = nights["moderate"]
    est = estimate_sleep(night, movements=movements)
    ep = est.epochs
    out_of_bed = night.annotation("out_of_bed")
    for onset, duration in zip(out_of_bed["onset_s"], out_of_bed["duration_s"], strict=True):
        inside = (ep["onset_s"] >= onset) & (ep["onset_s"] + 30 <= onset + duration)
        assert inside.sum() > 0
        assert not ep.loc[inside, "sleep"].any()
        assert not ep.loc[inside, "in_period"].any()


def test_epoch_table_shape_and_invariants(nights):
    night, movements = nights["healthy"]
    est = estimate_sleep(night, movements=movements)
    ep = est.epochs
    assert list(ep.columns) == list(EPOCH_COLUMNS)
    assert len(ep) == int(np.ceil(night.duration_s / 30.0))
    assert (ep["duration_s"] == 30.0).all()
    assert not (ep["sleep"] & ~ep["in_period"]).any()
    assert ep["angle_deg"].between(0, 180).all()
    lo, hi = est.period
    assert ep.loc[ep["in_period"], "onset_s"].min() >= lo - 30
    assert ep.loc[ep["in_period"], "onset_s"].max() < hi
    # Spans add up to the epochs, and the summary to the spans.
    assert est.sleep["duration_s"].sum() == pytest.approx(ep["sleep"].sum() * 30.0)
    assert est.summary()["sleep_h"] == pytest.approx(est.sleep["duration_s"].sum() / 3600)
    assert est.get_mask(est.sleep["onset_s"].to_numpy() + 1).all()
    assert not est.get_mask(np.array([lo - 3600.0])).any()
    assert est.info["params"] == SleepParams().to_dict()


def test_night_starting_at_lights_off_finds_its_period():
    night = simulate_night("moderate", hours=BED_H, fs_hz=FS, seed=9)
    est = estimate_sleep(night, movements=_detect(night))
    assert est.period is not None
    assert abs(est.period[0] - night.meta["sleep_onset_s"]) < 30 * 60
    assert abs(est.period[1] - night.meta["final_awakening_s"]) < 30 * 60


# -- non-wear ---------------------------------------------------------------------------


def _overlap_s(frame: pd.DataFrame, onset: float, duration: float) -> float:
    lo = np.maximum(frame["onset_s"].to_numpy(), onset)
    hi = np.minimum((frame["onset_s"] + frame["duration_s"]).to_numpy(), onset + duration)
    return float(np.clip(hi - lo, 0, None).sum())


def test_nonwear_in_the_evening_is_found_and_not_taken_for_sleep():
    span = (1200.0, 4200.0)
    night = simulate_night(
        "moderate", hours=BED_H, fs_hz=FS, seed=6, evening_h=2.0, morning_h=0.5, nonwear=[span]
    )
    est = estimate_sleep(night, movements=_detect(night))
    assert _overlap_s(est.nonwear, *span) >= 0.9 * span[1]
    assert est.nonwear["duration_s"].sum() <= span[1] + 120.0
    ep = est.epochs
    assert not (ep["nonwear"] & ep["sleep"]).any()
    assert est.period is not None and est.period[0] > span[0] + span[1]
    assert any("non-wear" in f for f in est.info["flags"])


def test_nonwear_after_getting_up_does_not_stretch_the_period():
    bed_end = (1.0 + BED_H) * 3600.0
    span = (bed_end + 300.0, 4000.0)
    night = simulate_night(
        "healthy", hours=BED_H, fs_hz=FS, seed=7, evening_h=1.0, morning_h=1.5, nonwear=[span]
    )
    est = estimate_sleep(night, movements=_detect(night))
    assert _overlap_s(est.nonwear, *span) >= 0.9 * span[1]
    assert est.period[1] < span[0] + 60.0


def test_sleep_is_not_taken_for_nonwear(nights):
    for night, movements in nights.values():
        est = estimate_sleep(night, movements=movements)
        assert est.nonwear.empty
        assert not est.epochs["nonwear"].any()


def test_a_still_leg_inside_the_period_stays_sleep():
    """A band on the nightstand for 70 min mid-sleep reads as sleep (the 75 % rule)."""
    night = simulate_night("healthy", hours=6, fs_hz=FS, seed=8, nonwear=[(3 * 3600.0, 4200.0)])
    est = estimate_sleep(night, movements=_detect(night))
    assert est.nonwear.empty
    assert est.period is not None


def test_two_ankles_nonwear_per_side_one_sleep_estimate():
    span = (600.0, 4200.0, "left")
    night = simulate_night(
        "bilateral", hours=BED_H, fs_hz=FS, seed=2, evening_h=1.5, morning_h=0.5, nonwear=[span]
    )
    est = estimate_sleep(night, movements=_detect(night))
    assert set(est.nonwear["side"]) == {"left"}
    assert _overlap_s(est.nonwear, span[0], span[1]) >= 0.9 * span[1]
    left = est.epochs[est.epochs["side"] == "left"]
    right = est.epochs[est.epochs["side"] == "right"]
    assert len(left) == len(right)
    assert (left["sleep"].to_numpy() == right["sleep"].to_numpy()).all()
    assert not right["nonwear"].any()
    assert est.period is not None
    assert abs(est.period[0] - night.meta["sleep_onset_s"]) < 30 * 60


def test_a_night_never_worn_has_no_period():
    night = simulate_night("healthy", hours=2.0, fs_hz=FS, seed=1, nonwear=[(0.0, 7200.0)])
    est = estimate_sleep(night)
    assert est.period is None
    assert est.sleep.empty
    assert est.epochs["nonwear"].mean() > 0.95
    assert any("no sleep period" in f for f in est.info["flags"])


# -- edge cases ---------------------------------------------------------------------------


def test_a_short_recording_has_no_still_block():
    night = simulate_night("moderate", hours=0.4, fs_hz=FS, seed=1)
    est = estimate_sleep(night, SleepParams(nonwear=False))
    assert est.period is None
    assert est.sleep.empty and not est.epochs["sleep"].any()
    assert any("min of usable data" in f and "no sleep period" in f for f in est.info["flags"])


def test_constant_activity_has_no_period():
    """Walking all night: no still block, one flag, no sleep."""
    fs, hours = 10.0, 2.0
    t = np.arange(int(hours * 3600 * fs)) / fs
    swing = np.deg2rad(25) * np.sin(2 * np.pi * 0.9 * t)
    acc = np.column_stack([np.cos(swing), np.sin(swing), 0.05 * np.sin(2 * np.pi * 0.13 * t)])
    est = estimate_sleep(Night.from_arrays(acc, fs, side="right"))
    assert est.period is None
    assert any("no still block" in f for f in est.info["flags"])


def test_gaps_are_neither_sleep_nor_wake(nights):
    night, movements = nights["healthy"]
    sensor = night.sensor
    lo_s = night.meta["sleep_onset_s"] + 3600.0
    i0, i1 = int(lo_s * FS), int((lo_s + 1200.0) * FS)  # 20 min without data
    acc = np.concatenate([sensor.acc_g[:i0], sensor.acc_g[i1:]])
    gaps = pd.DataFrame({"sample_index": [i0], "missing_samples": [i1 - i0]})
    holed = Night(
        [Sensor(acc, FS, sensor.start_utc, side=sensor.side, gaps=gaps)],
        annotations=night.annotations,
        meta=night.meta,
    )
    est = estimate_sleep(holed, movements=movements)
    ep = est.epochs
    in_gap = (ep["onset_s"] >= lo_s + 30) & (ep["onset_s"] + 30 <= lo_s + 1170)
    assert in_gap.sum() >= 35
    assert not ep.loc[in_gap, "sleep"].any()
    assert ep.loc[in_gap, "angle_deg"].isna().all()
    # A 20 min gap does not split the period, and its time counts neither way.
    assert est.period[0] < lo_s < est.period[1]
    full = estimate_sleep(night, movements=movements)
    assert est.info["sleep_s"] + est.info["wake_s"] <= (
        full.info["sleep_s"] + full.info["wake_s"] - 1100.0
    )


def test_nans_are_skipped(nights):
    night, movements = nights["healthy"]
    acc = night.sensor.acc_g.copy()
    acc[::7, 1] = np.nan
    est = estimate_sleep(night, acc_by_side={"right": acc}, movements=movements)
    ref = estimate_sleep(night, movements=movements)
    assert est.period is not None
    assert abs(est.period[0] - ref.period[0]) <= 300 and abs(est.period[1] - ref.period[1]) <= 300
    acc[: int(3600 * FS)] = np.nan  # the first hour unusable
    est = estimate_sleep(night, acc_by_side={"right": acc}, movements=movements)
    first = est.epochs[est.epochs["onset_s"] < 3500]
    assert first["angle_deg"].isna().all() and not first["sleep"].any()


def test_calibrated_acceleration_is_used(nights):
    night, movements = nights["moderate"]
    off = estimate_sleep(
        night, acc_by_side={"right": np.zeros_like(night.sensor.acc_g)}, movements=movements
    )
    assert off.period is None  # no gravity in the data given: nothing usable


def test_a_calibration_applied_to_the_bins_equals_calibrated_samples(nights):
    night, movements = nights["moderate"]
    scale = np.array([1.03, 0.97, 1.01])
    offset = np.array([0.02, -0.04, 0.01])
    acc = night.sensor.acc_g.astype(np.float64)
    copied = estimate_sleep(night, acc_by_side={"right": acc * scale + offset},
                            movements=movements)
    mapped = estimate_sleep(night, calibration_by_side={"right": (scale, offset)},
                            movements=movements)
    assert mapped.period == copied.period
    pd.testing.assert_frame_equal(mapped.epochs, copied.epochs, rtol=1e-6)
    # and the calibration does something: an offset of 0.3 g moves every angle
    moved = estimate_sleep(night, calibration_by_side={"right": (scale, offset + 0.3)},
                           movements=movements)
    assert not np.allclose(moved.epochs["angle_deg"], mapped.epochs["angle_deg"],
                           equal_nan=True)


# -- argument checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"epoch_s": 0},
        {"epoch_s": 7.0},
        {"threshold_percentile": 101},
        {"threshold_min_deg": 1.0, "threshold_max_deg": 0.5},
        {"min_coverage": 0},
        {"nonwear_sleep_fraction": 1.5},
        {"periodic_imi_s": (90.0, 10.0)},
        {"periodic_min_lms": 2.5},
        {"nonwear_min_axes": 4},
        {"wake_angle_deg": float("nan")},
        {"nonwear": "yes"},
        {"median_window_s": "5 min"},
    ],
)
def test_bad_parameters_raise_one_line_usage_errors(change):
    with pytest.raises(UsageError) as err:
        SleepParams(**change)
    assert "\n" not in str(err.value)
    assert next(iter(change)) in str(err.value)


def test_bad_arguments(nights):
    night, _ = nights["healthy"]
    with pytest.raises(UsageError, match="SleepParams"):
        estimate_sleep(night, {"epoch_s": 30})
    with pytest.raises(UsageError, match="shape"):
        estimate_sleep(night, acc_by_side={"right": np.zeros((10, 3))})
    with pytest.raises(InputError, match="offset_s"):
        estimate_sleep(night, movements=pd.DataFrame({"onset_s": [1.0]}))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    hours=st.floats(0.3, 1.5),
    scenario=st.sampled_from(["healthy", "restless", "bilateral", "noisy"]),
)
def test_any_short_night_gives_a_consistent_estimate(seed, hours, scenario):
    night = simulate_night(scenario, hours=hours, fs_hz=10.0, seed=seed, evening_h=0.2)
    est = estimate_sleep(night)
    ep = est.epochs
    assert len(ep) == len(night.sides) * int(np.ceil(night.duration_s / 30.0))
    assert not (ep["sleep"] & ~ep["in_period"]).any()
    if est.period is None:
        assert not ep["sleep"].any() and est.info["flags"]
    else:
        assert 0 <= est.period[0] < est.period[1] <= night.duration_s
    assert est.info["sleep_s"] + est.info["wake_s"] <= night.duration_s + 1e-6
