"""The detector's rules on hand-made activity signals, and on hand-made acceleration."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmld.detect import (
    Activity,
    DetectionParams,
    activity_signal,
    detect_leg_movements,
    find_leg_movements,
    thresholds,
)
from pmld.errors import UsageError
from pmld.evaluate import event_agreement, match_events

STEP = 0.1
ONSET, OFFSET = 0.05, 0.02


def _activity(levels):
    """An Activity of 0.1 s blocks from (seconds, level) pieces, resting orientation."""
    values = np.concatenate([np.full(int(round(s / STEP)), v, np.float32) for s, v in levels])
    orientation = np.tile(np.float32([0, 0, 1]), (values.size, 1))
    return Activity(values, values.copy(), orientation, STEP)


def _find(levels, **params):
    return find_leg_movements(_activity(levels), ONSET, OFFSET, DetectionParams(**params))


def test_an_lm_spans_onset_crossing_to_the_start_of_the_quiet_stretch():
    lms = _find([(10, 0.0), (0.3, 0.03), (2.0, 0.1), (0.5, 0.03), (10, 0.0)])
    assert len(lms) == 1
    # onset where the onset threshold is first reached, not where the offset one is
    assert lms["onset_s"].iloc[0] == pytest.approx(10.3)
    # the 0.03 tail is above the offset threshold: the LM ends when it drops below
    assert lms["offset_s"].iloc[0] == pytest.approx(12.8)
    assert lms["peak_g"].iloc[0] == pytest.approx(0.1)


def test_a_dip_shorter_than_the_offset_hold_does_not_end_the_lm():
    lms = _find([(10, 0.0), (1.0, 0.1), (0.4, 0.0), (1.0, 0.1), (10, 0.0)])
    assert len(lms) == 1 and lms["duration_s"].iloc[0] == pytest.approx(2.4)


def test_a_dip_as_long_as_the_offset_hold_ends_the_lm():
    lms = _find([(10, 0.0), (1.0, 0.1), (0.5, 0.0), (1.0, 0.1), (10, 0.0)])
    assert lms["onset_s"].tolist() == pytest.approx([10.0, 11.5])
    assert lms["duration_s"].tolist() == pytest.approx([1.0, 1.0])


def test_movements_shorter_than_half_a_second_are_not_lms():
    assert len(_find([(10, 0.0), (0.4, 0.1), (10, 0.0)], shape_window_s=0)) == 0
    assert len(_find([(10, 0.0), (0.5, 0.1), (10, 0.0)], shape_window_s=0)) == 1


def test_activity_that_never_reaches_the_onset_threshold_is_no_lm():
    assert len(_find([(10, 0.0), (3.0, 0.04), (10, 0.0)])) == 0


def test_the_shape_rule_drops_spiky_activity_without_a_sustained_half_second():
    spiky = [(10, 0.0)] + [(0.1, 0.1), (0.1, 0.0)] * 6 + [(10, 0.0)]
    assert len(_find(spiky, shape_window_s=0, offset_hold_s=0.5)) == 1
    assert len(_find(spiky, shape_window_s=0.5)) == 0


def test_an_lm_running_to_the_end_of_the_signal_is_kept():
    lms = _find([(10, 0.0), (2.0, 0.1)])
    assert len(lms) == 1 and lms["offset_s"].iloc[0] == pytest.approx(12.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.1, 5.0), st.sampled_from([0.0, 0.01, 0.03, 0.1])),
                min_size=1, max_size=30))
def test_lms_are_ordered_disjoint_long_enough_and_reach_the_onset(pieces):
    activity = _activity(pieces)
    lms = find_leg_movements(activity, ONSET, OFFSET, DetectionParams())
    if not len(lms):
        return
    assert np.all(lms["duration_s"] >= 0.5 - 1e-9)
    assert np.all(lms["onset_s"].to_numpy()[1:] >= lms["offset_s"].to_numpy()[:-1] + 0.5 - 1e-9)
    assert np.all(lms["peak_g"] >= ONSET - 1e-6)


def _still(seconds, fs=100.0, tilt_deg=30.0):
    n = int(seconds * fs)
    g = np.array([np.sin(np.radians(tilt_deg)), 0.0, np.cos(np.radians(tilt_deg))])
    return np.tile(g, (n, 1)).astype(np.float32)


def _rotate_about_y(acc, start, stop, angle_deg, fs=100.0, keep=False):
    """Rotate the gravity vector over [start, stop) s, smoothly out and back (or not)."""
    i0, i1 = int(start * fs), int(stop * fs)
    phase = np.linspace(0, 1, i1 - i0)
    profile = np.sin(np.pi * phase) if not keep else np.minimum(phase * 2, 1)
    angles = np.radians(angle_deg) * profile
    out = acc.copy()
    x, z = acc[i0:i1, 0], acc[i0:i1, 2]
    out[i0:i1, 0] = x * np.cos(angles) + z * np.sin(angles)
    out[i0:i1, 2] = -x * np.sin(angles) + z * np.cos(angles)
    if keep:
        a = np.radians(angle_deg)
        x, z = acc[i1:, 0], acc[i1:, 2]
        out[i1:, 0] = x * np.cos(a) + z * np.sin(a)
        out[i1:, 2] = -x * np.sin(a) + z * np.cos(a)
    return out


def test_a_dorsiflexion_is_found_in_pure_orientation_change():
    rng = np.random.default_rng(0)
    acc = _rotate_about_y(_still(120), 60.0, 62.0, 15.0)
    acc += rng.normal(0, 0.002, acc.shape).astype(np.float32)
    lms = detect_leg_movements(acc, 100.0)
    assert len(lms) == 1
    lm = lms.iloc[0]
    assert lm["kind"] == "lm"
    assert 59.8 <= lm["onset_s"] <= 60.5 and 61.5 <= lm["offset_s"] <= 62.3
    assert lm["peak_angle_deg"] == pytest.approx(15.0, abs=2.0)
    # the magnitude hardly changes: an ENMO-style signal would have missed it
    magnitude = np.linalg.norm(acc, axis=1)
    assert np.ptp(magnitude[5900:6300]) < 0.03


def test_a_lasting_rotation_is_a_posture_change_not_an_lm():
    rng = np.random.default_rng(1)
    acc = _rotate_about_y(_still(120), 60.0, 63.0, 60.0, keep=True)
    acc += rng.normal(0, 0.002, acc.shape).astype(np.float32)
    lms = detect_leg_movements(acc, 100.0)
    assert len(lms) >= 1
    first = lms.iloc[0]
    assert first["kind"] == "posture"
    assert first["posture_change_deg"] == pytest.approx(60.0, abs=5.0)


def test_a_gyroscope_sees_a_rotation_about_the_gravity_axis():
    # Turning the foot about the vertical moves no gravity between the axes.
    acc = _still(60, tilt_deg=0.0) + np.random.default_rng(2).normal(0, 0.002, (6000, 3))
    gyro = np.zeros((6000, 3), np.float32)
    gyro[3000:3150, 2] = 40.0  # deg/s about z (vertical) for 1.5 s
    assert len(detect_leg_movements(acc, 100.0)) == 0
    lms = detect_leg_movements(acc, 100.0, gyro_dps=gyro)
    assert len(lms) == 1 and lms["onset_s"].iloc[0] == pytest.approx(30.0, abs=0.3)


def test_sensor_noise_raises_the_floor_but_not_the_thresholds_by_much():
    rng = np.random.default_rng(3)
    params = DetectionParams()
    floors = []
    for sigma in (0.002, 0.012):
        acc = _still(300) + rng.normal(0, sigma, (30000, 3)).astype(np.float32)
        activity = activity_signal(acc, 100.0, params)
        floors.append(float(np.percentile(activity.activity_g, params.floor_percentile)))
    # 12 mg white noise alone would give a floor near 0.02 g without the variance floor
    assert floors[1] < 0.01
    onset, offset = thresholds(floors[1], params)
    assert offset < onset < 0.04


def test_a_flat_signal_gives_no_lms_and_no_error():
    assert len(detect_leg_movements(np.zeros((6000, 3)), 100.0)) == 0
    assert len(detect_leg_movements(np.zeros((5, 3)), 100.0)) == 0


def test_parameters_are_validated_with_their_names():
    with pytest.raises(UsageError, match="onset_ratio"):
        DetectionParams(onset_ratio=-1)
    with pytest.raises(UsageError, match="offset threshold"):
        DetectionParams(offset_min_g=0.5)
    with pytest.raises(UsageError, match="unknown detection parameter"):
        DetectionParams.from_dict({"onset": 3})
    assert DetectionParams.from_dict(DetectionParams().to_dict()) == DetectionParams()


def _events(spans):
    return pd.DataFrame(spans, columns=["onset_s", "offset_s"])


def test_matching_is_one_to_one_by_largest_overlap():
    ref = _events([(0, 2), (10, 12)])
    det = _events([(1, 3), (1.5, 2.5), (20, 21)])
    pairs = match_events(ref, det)
    assert pairs.tolist() == [[0, 0]]
    agreement = event_agreement(ref, det)
    assert (agreement.matched, agreement.sensitivity, agreement.ppv) == (1, 0.5, 1 / 3)
    assert agreement.f1 == pytest.approx(2 * 1 / 5)


def test_matching_with_tolerance_pairs_near_misses():
    ref, det = _events([(0, 1)]), _events([(1.2, 2)])
    assert len(match_events(ref, det)) == 0
    assert len(match_events(ref, det, tolerance_s=0.5)) == 1


def test_a_calibration_applied_to_the_block_statistics_equals_calibrated_samples():
    rng = np.random.default_rng(7)
    fs, n = 100.0, 60_000
    acc = np.tile(np.float32([0.1, -0.2, 0.97]), (n, 1))
    acc += rng.normal(0, 0.004, (n, 3)).astype(np.float32)
    for start in range(3_000, n - 500, 2_300):  # leg movements
        acc[start : start + 150] += rng.normal(0, 0.2, (150, 3)).astype(np.float32)
    scale = np.float32([1.02, 0.98, 1.01])
    offset = np.float32([0.03, -0.05, 0.02])
    copied = activity_signal(acc * scale + offset, fs)
    mapped = activity_signal(acc, fs, calibration=(scale, offset))
    for a, b in [(mapped.activity_g, copied.activity_g), (mapped.deviation_g, copied.deviation_g),
                 (mapped.orientation, copied.orientation)]:
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    plain = activity_signal(acc, fs)
    assert not np.allclose(plain.orientation, mapped.orientation, atol=1e-3)
