"""Tests of the night simulator (pmld.simulate)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmld.errors import UsageError
from pmld.night import Night
from pmld.simulate import SCENARIOS, simulate_night, truth_table

TRUTH_COLUMNS = ["onset_s", "offset_s", "duration_s", "side", "kind", "series"]


def _noise_g(acc: np.ndarray) -> np.ndarray:
    """Robust white-noise SD per axis, from the median absolute first difference."""
    step = np.diff(acc.astype(np.float64), axis=0)
    return np.median(np.abs(step), axis=0) / 0.6745 / math.sqrt(2)


def _quiet_mask(night: Night, n: int, fs: float, margin_s: float = 3.0) -> np.ndarray:
    """Samples at least ``margin_s`` from every annotated movement or artefact."""
    quiet = np.ones(n, dtype=bool)
    ann = night.annotations
    busy = ann[ann["label"].isin(["lm", "posture", "artifact"])]
    for onset, duration in zip(busy["onset_s"], busy["duration_s"], strict=True):
        i0 = max(0, int((onset - margin_s) * fs))
        i1 = min(n, int((onset + duration + margin_s) * fs) + 1)
        quiet[i0:i1] = False
    return quiet


def _wasm_plm_onsets(truth: pd.DataFrame) -> np.ndarray:
    """Onsets of PLMs among monolateral LMs by WASM 2016 rules (a small reference scorer).

    CLM: 0.5-10 s; a series is >= 4 consecutive CLMs with 10 s <= IMI <= 90 s; a
    non-candidate LM breaks it and a short-IMI CLM cannot start one.
    """
    lms = truth[truth["kind"] != "posture"].sort_values("onset_s")
    onset = lms["onset_s"].to_numpy()
    candidate = (lms["duration_s"].to_numpy() >= 0.5) & (lms["duration_s"].to_numpy() <= 10.0)
    plm = np.zeros(len(onset), dtype=bool)
    run: list[int] = []
    for i in range(len(onset)):
        imi = math.inf if i == 0 else onset[i] - onset[i - 1]
        if candidate[i] and run and 10.0 <= imi <= 90.0:
            run.append(i)
            continue
        if len(run) >= 4:
            plm[run] = True
        run = [i] if candidate[i] and imi >= 10.0 else []
    if len(run) >= 4:
        plm[run] = True
    return onset[plm]


def _sleep_hours(night: Night) -> float:
    return night.meta["tst_s"] / 3600.0


def _plms_index(night: Night) -> float:
    truth = truth_table(night)
    onsets = _wasm_plm_onsets(truth)
    wake = night.annotation("wake")
    in_wake = np.zeros(len(onsets), dtype=bool)
    for onset, duration in zip(wake["onset_s"], wake["duration_s"], strict=True):
        in_wake |= (onsets >= onset) & (onsets < onset + duration)
    return float((~in_wake).sum()) / _sleep_hours(night)


# -- structure, dtypes, quantisation ---------------------------------------------------


def test_shapes_dtypes_and_metadata():
    night = simulate_night("moderate", hours=0.5, fs_hz=50.0, seed=1)
    assert isinstance(night, Night)
    assert night.sides == ["right"]
    sensor = night.sensor
    assert sensor.acc_g.shape == (90_000, 3)
    assert sensor.acc_g.dtype == np.float32
    assert sensor.fs_hz == 50.0
    assert np.isfinite(sensor.acc_g).all()
    assert sensor.device["model"] == "pmld-sim"
    assert sensor.device["range_g"] == 8.0
    assert sensor.device["counts_per_g"] == 4096.0
    assert sensor.device["scenario"] == "moderate"
    assert sensor.device["seed"] == 1
    for key in ("scenario", "seed", "hours", "fs_hz", "tst_s", "lights_off_s", "lights_on_s"):
        assert key in night.meta
    assert night.meta["scenario"] == "moderate" and night.meta["hours"] == 0.5
    assert night.start_utc.isoformat() == "2026-01-05T22:30:00+00:00"
    assert set(night.annotations["source"]) == {"simulator"}


@pytest.mark.parametrize("range_g", [8.0, 4.0, 2.0])
def test_values_are_int16_counts(range_g):
    night = simulate_night("noisy", hours=0.25, seed=2, range_g=range_g)
    acc = night.sensor.acc_g.astype(np.float64)
    counts = acc * (32768.0 / range_g)
    assert np.array_equal(counts, np.round(counts))
    assert counts.min() >= -32768 and counts.max() <= 32767
    assert night.sensor.device["resolution_g"] == pytest.approx(range_g / 32768.0)


def test_start_time_and_timezone_are_passed_through():
    night = simulate_night(
        "healthy", hours=0.1, start_utc="2026-03-01T23:00:00+01:00", timezone="Europe/Zurich"
    )
    assert night.start_utc.isoformat() == "2026-03-01T22:00:00+00:00"
    assert night.timezone == "Europe/Zurich"


# -- determinism -----------------------------------------------------------------------


def test_same_seed_gives_bit_identical_nights():
    a = simulate_night("bilateral", hours=0.3, seed=11)
    b = simulate_night("bilateral", hours=0.3, seed=11)
    for sa, sb in zip(a.sensors, b.sensors, strict=True):
        assert np.array_equal(sa.acc_g.view(np.uint32), sb.acc_g.view(np.uint32))
        assert sa.device == sb.device
    pd.testing.assert_frame_equal(a.annotations, b.annotations)
    assert a.meta == b.meta


def test_different_seeds_differ():
    a = simulate_night("moderate", hours=0.2, seed=1)
    b = simulate_night("moderate", hours=0.2, seed=2)
    assert not np.array_equal(a.sensor.acc_g, b.sensor.acc_g)


def test_truth_does_not_depend_on_sampling_rate():
    slow = simulate_night("severe", hours=1.0, fs_hz=10.0, seed=5)
    fast = simulate_night("severe", hours=1.0, fs_hz=100.0, seed=5)
    pd.testing.assert_frame_equal(truth_table(slow), truth_table(fast))


# -- the physics of the signal ---------------------------------------------------------


@pytest.mark.parametrize("scenario, tolerance", [("moderate", 0.03), ("noisy", 0.12)])
def test_magnitude_near_one_g_at_rest(scenario, tolerance):
    night = simulate_night(scenario, hours=0.5, seed=3)
    acc = night.sensor.acc_g
    quiet = _quiet_mask(night, len(acc), night.sensor.fs_hz)
    assert quiet.mean() > 0.5
    magnitude = np.linalg.norm(acc[quiet].astype(np.float64), axis=1)
    assert abs(np.median(magnitude) - 1.0) < tolerance
    # Gravity is spread over the axes by the random mount, not sitting on one axis.
    assert np.sum(np.abs(np.median(acc[quiet], axis=0)) > 0.05) >= 2


def test_noisy_has_more_noise_than_moderate():
    moderate = _noise_g(simulate_night("moderate", hours=0.25, seed=4).sensor.acc_g)
    noisy = _noise_g(simulate_night("noisy", hours=0.25, seed=4).sensor.acc_g)
    assert np.all((moderate > 0.001) & (moderate < 0.004))
    assert np.all(noisy > 3 * moderate)


def test_leg_movements_show_in_the_signal():
    night = simulate_night("moderate", hours=1.0, seed=6)
    acc = night.sensor.acc_g.astype(np.float64)
    fs = night.sensor.fs_hz
    truth = truth_table(night)
    lms = truth[truth["kind"] == "lm"]
    assert len(lms) > 10
    deviation = []
    for onset, offset in zip(lms["onset_s"], lms["offset_s"], strict=True):
        i0, i1 = int(onset * fs), int(offset * fs)
        baseline = np.median(acc[max(0, i0 - int(fs)) : i0], axis=0)
        deviation.append(np.linalg.norm(acc[i0:i1] - baseline, axis=1).max())
    # 2 mg noise: every LM moves the signal by well over 10 times that.
    assert np.quantile(deviation, 0.05) > 0.02


def test_artifacts_only_in_noisy_and_never_leg_movements():
    noisy = simulate_night("noisy", hours=1.0, seed=8)
    clean = simulate_night("moderate", hours=1.0, seed=8)
    artifacts = noisy.annotation("artifact")
    assert len(artifacts) > 5
    assert clean.annotation("artifact").empty
    # The artefacts do not change the movements: same truth as the clean night.
    pd.testing.assert_frame_equal(truth_table(noisy), truth_table(clean))


# -- ground truth ----------------------------------------------------------------------


def test_lights_annotations():
    night = simulate_night("moderate", hours=1.0, seed=9)
    total = night.duration_s
    off, on = night.annotation("lights_off"), night.annotation("lights_on")
    assert len(off) == 1 and len(on) == 1
    assert 0 < off["onset_s"].iloc[0] <= 360 and off["duration_s"].iloc[0] == 0
    assert total - 360 <= on["onset_s"].iloc[0] < total and on["duration_s"].iloc[0] == 0
    assert night.annotation("wake")["onset_s"].iloc[0] == 0.0


def test_truth_table_columns_and_kinds():
    night = simulate_night("restless", hours=1.0, seed=10)
    truth = truth_table(night)
    assert list(truth.columns) == TRUTH_COLUMNS
    assert set(truth["kind"]) <= {"lm", "posture", "wake_movement"}
    assert {"lm", "posture", "wake_movement"} <= set(truth["kind"])
    assert truth["series"].dtype == np.int64 and truth["series"].min() >= -1
    assert np.allclose(truth["offset_s"], truth["onset_s"] + truth["duration_s"])
    assert truth["onset_s"].is_monotonic_increasing
    assert set(truth.loc[truth["kind"] == "posture", "side"]) == {"unknown"}
    assert set(truth.loc[truth["kind"] != "posture", "side"]) == {"right"}
    assert (truth.loc[truth["kind"] != "lm", "series"] == -1).all()
    # The lm rows of the annotations are exactly the lm and wake_movement rows.
    assert (truth["kind"] != "posture").sum() == len(night.annotation("lm"))
    # Wake movements start inside wake spans, sleep LMs outside them.
    wake = night.annotation("wake")
    for onset, kind in zip(truth["onset_s"], truth["kind"], strict=True):
        inside = ((onset >= wake["onset_s"]) & (onset < wake["onset_s"] + wake["duration_s"])).any()
        if kind == "wake_movement":
            assert inside
        elif kind == "lm":
            assert not inside


def test_truth_table_needs_simulator_annotations():
    night = Night.from_arrays(np.zeros((100, 3), dtype=np.float32), 10.0)
    with pytest.raises(UsageError, match="simulator"):
        truth_table(night)


def test_series_spans_hold_their_lms_and_no_posture_change():
    night = simulate_night("severe", hours=3.0, fs_hz=10.0, seed=12)
    truth = truth_table(night)
    spans = night.annotation("plm_series")
    assert len(spans) >= 2
    assert sorted(truth.loc[truth["series"] >= 0, "series"].unique()) == list(range(len(spans)))
    for k, (onset, duration) in enumerate(zip(spans["onset_s"], spans["duration_s"], strict=True)):
        members = truth[truth["series"] == k]
        assert len(members) >= 4
        assert members["onset_s"].min() == pytest.approx(onset)
        assert members["offset_s"].max() == pytest.approx(onset + duration)
        postures = truth[
            (truth["kind"] == "posture")
            & (truth["offset_s"] > onset)
            & (truth["onset_s"] < onset + duration)
        ]
        assert postures.empty


def _series_imis(truth: pd.DataFrame) -> np.ndarray:
    imis = [
        np.diff(np.sort(group["onset_s"].to_numpy()))
        for _, group in truth[truth["series"] >= 0].groupby("series")
    ]
    return np.concatenate(imis)


@pytest.mark.parametrize("scenario, low, high", [("moderate", 3.05, 3.4), ("severe", 2.95, 3.3)])
def test_series_imis_are_rls_like(scenario, low, high):
    imis = np.concatenate(
        [
            _series_imis(truth_table(simulate_night(scenario, hours=8.0, fs_hz=10.0, seed=seed)))
            for seed in range(3)
        ]
    )
    assert len(imis) > 200
    periodic = imis[(imis >= 10.0) & (imis <= 90.0)]
    short = imis[imis < 10.0]
    assert len(periodic) / len(imis) > 0.85  # the rest are short-IMI doublets
    assert len(short) > 0 and short.min() > 1.0
    assert low < np.log(periodic).mean() < high
    assert 0.2 < np.log(periodic).std() < 0.45
    assert 15.0 <= np.median(periodic) <= 35.0


def test_plm_indices_are_ordered_and_in_range():
    index = {
        name: np.mean(
            [
                _plms_index(simulate_night(name, hours=8.0, fs_hz=10.0, seed=seed))
                for seed in range(3)
            ]
        )
        for name in ("healthy", "moderate", "severe")
    }
    assert index["healthy"] < index["moderate"] < index["severe"]
    assert index["healthy"] <= 5.0
    assert 15.0 <= index["moderate"] <= 40.0
    assert 55.0 <= index["severe"] <= 110.0


def test_more_series_in_the_first_half_of_the_night():
    first = second = 0
    for seed in range(3):
        night = simulate_night("severe", hours=8.0, fs_hz=10.0, seed=seed)
        truth = truth_table(night)
        onsets = truth.loc[truth["series"] >= 0, "onset_s"]
        middle = (night.meta["lights_off_s"] + night.meta["lights_on_s"]) / 2
        first += (onsets < middle).sum()
        second += (onsets >= middle).sum()
    assert first > 1.2 * second


def test_restless_has_more_wake_and_posture_changes():
    def counts(name):
        truth = truth_table(simulate_night(name, hours=8.0, fs_hz=10.0, seed=13))
        return (truth["kind"] == "wake_movement").sum(), (truth["kind"] == "posture").sum()

    wake_moderate, posture_moderate = counts("moderate")
    wake_restless, posture_restless = counts("restless")
    assert wake_restless > 2 * wake_moderate
    assert posture_restless > 2 * posture_moderate


def test_lms_last_half_a_second_and_do_not_overlap_on_a_leg():
    night = simulate_night("bilateral", hours=2.0, fs_hz=10.0, seed=14)
    truth = truth_table(night)
    lms = truth[truth["kind"] != "posture"]
    assert lms["duration_s"].min() >= 0.5
    assert lms["duration_s"].max() > 10.0 or (lms["duration_s"] > 5.0).any()
    for _, leg in lms.groupby("side"):
        leg = leg.sort_values("onset_s")
        assert (leg["onset_s"].to_numpy()[1:] - leg["offset_s"].to_numpy()[:-1] >= 0.5 - 1e-9).all()


# -- two ankles ------------------------------------------------------------------------


def test_bilateral_night_has_two_distinct_sensors():
    night = simulate_night("bilateral", hours=0.5, seed=15)
    assert night.sides == ["left", "right"]
    left, right = night.ankle("left"), night.ankle("right")
    assert left.acc_g.shape == right.acc_g.shape
    assert left.device["sim_mount_quaternion_wxyz"] != right.device["sim_mount_quaternion_wxyz"]
    quiet = _quiet_mask(night, left.n_samples, left.fs_hz)
    g_left = np.median(left.acc_g[quiet], axis=0)
    g_right = np.median(right.acc_g[quiet], axis=0)
    cos = g_left @ g_right / np.linalg.norm(g_left) / np.linalg.norm(g_right)
    assert math.degrees(math.acos(min(1.0, cos))) > 10.0


def test_bilateral_lms_share_onsets_within_half_a_second():
    night = simulate_night("bilateral", hours=8.0, fs_hz=10.0, seed=16)
    truth = truth_table(night)
    lms = truth[truth["kind"] == "lm"]
    left = np.sort(lms.loc[lms["side"] == "left", "onset_s"].to_numpy())
    right = np.sort(lms.loc[lms["side"] == "right", "onset_s"].to_numpy())
    assert len(left) > 50 and len(right) > 50
    idx = np.clip(np.searchsorted(right, left), 1, len(right) - 1)
    nearest = np.minimum(np.abs(right[idx] - left), np.abs(right[idx - 1] - left))
    paired = (nearest <= 0.5 + 1e-9).sum()
    movements = len(left) + len(right) - paired
    assert 0.2 < paired / movements < 0.5


def test_bilateral_option_overrides_the_scenario():
    assert simulate_night("bilateral", hours=0.1, bilateral=False).sides == ["right"]
    two = simulate_night("moderate", hours=0.1, bilateral=True)
    assert two.sides == ["left", "right"]


def test_a_scenario_object_can_be_passed():
    quiet = replace(SCENARIOS["moderate"], name="quiet", noise_g=0.0005, plm_index=0.0)
    night = simulate_night(quiet, hours=1.0, seed=17)
    assert night.meta["scenario"] == "quiet"
    assert night.annotation("plm_series").empty
    assert np.all(_noise_g(night.sensor.acc_g) < 0.001)


def test_scenarios_are_documented():
    assert {"healthy", "moderate", "severe", "noisy", "restless", "bilateral"} <= set(SCENARIOS)
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name
        assert len(scenario.description) > 40
    assert SCENARIOS["bilateral"].bilateral and not SCENARIOS["moderate"].bilateral


# -- input validation ------------------------------------------------------------------


def test_unknown_scenario_lists_the_known_ones():
    with pytest.raises(UsageError) as info:
        simulate_night("nightmare")
    for name in SCENARIOS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hours": 0.0},
        {"hours": -1.0},
        {"hours": math.nan},
        {"hours": 0.001},
        {"hours": 100.0},
        {"fs_hz": 0.0},
        {"fs_hz": -100.0},
        {"fs_hz": math.inf},
        {"fs_hz": 5.0},
        {"range_g": 0.0},
        {"range_g": 1.0},
        {"seed": -1},
        {"seed": 1.5},
        {"bilateral": "yes"},
        {"start_utc": "2026-01-05T22:30:00"},
        {"timezone": "Mars/Olympus"},
        {"hours": 24.0, "fs_hz": 1000.0},
    ],
)
def test_bad_arguments_raise_usage_errors(kwargs):
    with pytest.raises(UsageError):
        simulate_night("moderate", **kwargs)


@pytest.mark.parametrize(
    "change",
    [
        {"noise_g": -0.001},
        {"bilateral_fraction": 1.5},
        {"imi_range_s": (90.0, 10.0)},
        {"series_max_lms": 3},
        {"lm_duration_median_s": 0.0},
        {"plm_index": math.nan},
    ],
)
def test_bad_scenarios_raise_usage_errors(change):
    with pytest.raises(UsageError):
        replace(SCENARIOS["moderate"], **change)


# -- any seed, length and rate gives a valid night --------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=st.sampled_from(sorted(SCENARIOS)),
    seed=st.integers(0, 2**32),
    hours=st.floats(1.0 / 60.0, 0.15),
    fs_hz=st.sampled_from([10.0, 25.0, 50.0, 64.0, 100.0]),
    range_g=st.sampled_from([2.0, 4.0, 8.0, 16.0]),
)
def test_any_seed_and_length_give_a_valid_night(scenario, seed, hours, fs_hz, range_g):
    night = simulate_night(scenario, hours=hours, fs_hz=fs_hz, seed=seed, range_g=range_g)
    n = int(round(hours * 3600 * fs_hz))
    for sensor in night.sensors:
        acc = sensor.acc_g
        assert acc.shape == (n, 3) and acc.dtype == np.float32
        assert np.isfinite(acc).all()
        counts = acc.astype(np.float64) * (32768.0 / range_g)
        assert np.array_equal(counts, np.round(counts))
    ann = night.annotations
    assert (ann["onset_s"] >= 0).all()
    assert (ann["onset_s"] + ann["duration_s"] <= night.duration_s + 1e-6).all()
    lights_off = night.annotation("lights_off")["onset_s"].iloc[0]
    lights_on = night.annotation("lights_on")["onset_s"].iloc[0]
    assert 0 < lights_off < lights_on < night.duration_s
    assert 0 <= night.meta["tst_s"] <= lights_on - lights_off
    truth = truth_table(night)
    lms = truth[truth["kind"] != "posture"]
    assert (lms["duration_s"] >= 0.5).all()
    assert set(lms["side"]) <= set(night.sides)


def test_side_puts_the_same_night_on_the_left_ankle():
    right = simulate_night("moderate", hours=0.1, fs_hz=50.0, seed=9)
    left = simulate_night("moderate", hours=0.1, fs_hz=50.0, seed=9, side="left")
    assert left.sides == ["left"] and right.sides == ["right"]
    np.testing.assert_array_equal(left.sensor.acc_g, right.sensor.acc_g)
    lms = left.annotations[left.annotations["label"] == "lm"]
    assert len(lms) and set(lms["side"]) == {"left"}
    with pytest.raises(UsageError, match="one-sensor"):
        simulate_night("bilateral", hours=0.1, side="left")


# -- out of bed, non-wear and local start times ------------------------------------------

# SHA-256 (first 16 hex digits) of the samples and of the annotation table of nights made
# by the simulator as committed before the out-of-bed options existed (0f3cdb9): with
# those options off a night must stay bit-identical (same random streams, same
# arithmetic). Recompute with git show 0f3cdb9:pmld/simulate.py only if the change of
# the existing scenarios is intended.
_COMMITTED_HASHES = [
    (("moderate", 0.5, 100.0, 3, None), "80991f62dba38b1e", "df502c7b4b86fe0c"),
    (("bilateral", 0.4, 50.0, 1, None), "4fffbb79e5a9d7b6", "3d1d48607ad1e464"),
    (("noisy", 0.3, 64.0, 5, None), "43cab8873d5dc222", "0d0767df82d2a28a"),
    (("severe", 0.6, 25.0, 11, None), "3aae5391bdd321d7", "a2ab91631183ed78"),
    (("healthy", 0.2, 100.0, 0, "left"), "c5f7cb55da03803e", "8fd0375376283842"),
]


@pytest.mark.parametrize(("case", "samples_hash", "truth_hash"), _COMMITTED_HASHES)
def test_nights_without_the_new_options_are_bit_identical(case, samples_hash, truth_hash):
    import hashlib

    scenario, hours, fs_hz, seed, side = case
    night = simulate_night(scenario, hours=hours, fs_hz=fs_hz, seed=seed, side=side)
    digest = hashlib.sha256()
    for sensor in night.sensors:
        digest.update(sensor.acc_g.tobytes())
    assert digest.hexdigest()[:16] == samples_hash
    assert hashlib.sha256(night.annotations.to_csv().encode()).hexdigest()[:16] == truth_hash
    # The explicit defaults of the new options change nothing either.
    again = simulate_night(
        scenario, hours=hours, fs_hz=fs_hz, seed=seed, side=side, evening_h=0.0,
        morning_h=0.0, nonwear=(),
    )
    for a, b in zip(night.sensors, again.sensors, strict=True):
        assert np.array_equal(a.acc_g, b.acc_g)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(np.degrees(np.arccos(np.clip(a @ b, -1, 1))))


@pytest.fixture(scope="module")
def day_night():
    return simulate_night("moderate", hours=2.0, fs_hz=25.0, seed=5, evening_h=1.0, morning_h=0.5)


def test_evening_and_morning_extend_the_recording_and_are_awake(day_night):
    night = day_night
    fs = 25.0
    assert night.sensor.acc_g.shape == (int(3.5 * 3600 * fs), 3)
    meta = night.meta
    assert meta["evening_h"] == 1.0 and meta["morning_h"] == 0.5 and meta["hours"] == 2.0
    assert 3600.0 < meta["lights_off_s"] < meta["sleep_onset_s"]
    assert meta["final_awakening_s"] < meta["lights_on_s"] < 3.0 * 3600.0
    out = night.annotation("out_of_bed").sort_values("onset_s")
    assert out["onset_s"].tolist() == [0.0, 3.0 * 3600.0]
    assert out["duration_s"].tolist() == pytest.approx([3600.0, 1800.0])
    wake = night.annotation("wake").sort_values("onset_s")
    assert wake["onset_s"].iloc[0] == 0.0
    assert wake["onset_s"].iloc[0] + wake["duration_s"].iloc[0] == pytest.approx(
        meta["sleep_onset_s"]
    )
    last = wake.iloc[-1]
    assert last["onset_s"] + last["duration_s"] == pytest.approx(night.duration_s)
    truth = truth_table(night)
    assert truth["onset_s"].min() > 3600.0  # movements of the night lie in bed
    # tst is unchanged by the evening: sleep only in bed
    assert meta["tst_s"] < 2.0 * 3600.0


def test_walking_swings_the_shank_and_lying_is_not_upright(day_night):
    night = day_night
    acc = night.sensor.acc_g.astype(np.float64)
    fs = 25.0
    walks = night.annotation("walking")
    assert len(walks) >= 2
    assert (walks["onset_s"] + walks["duration_s"] <= 3600.0 + 1e-6).sum() + (
        walks["onset_s"] >= 3.0 * 3600.0
    ).sum() == len(walks)
    longest = walks.sort_values("duration_s").iloc[-1]
    i0 = int((longest["onset_s"] + 2) * fs)
    i1 = int((longest["onset_s"] + longest["duration_s"] - 2) * fs)
    walking = acc[i0:i1]
    assert walking.std(axis=0).max() > 0.15  # gait: swing and heel strikes
    assert np.linalg.norm(walking, axis=1).max() > 1.2  # heel strikes jolt the band
    # Standing or walking the shank is near vertical; asleep in bed it is near horizontal:
    # gravity in the sensor frame is far from the lying direction when upright.
    asleep = night.meta["sleep_onset_s"] + 600.0
    lying = acc[int(asleep * fs) : int((asleep + 30) * fs)].mean(axis=0)
    assert _angle_deg(walking.mean(axis=0), lying) > 30.0


def test_nonwear_span_is_still_and_hides_the_leg_movements():
    span = (2.5 * 3600.0, 3000.0)
    night = simulate_night(
        "moderate", hours=3.0, fs_hz=25.0, seed=2, evening_h=0.5, nonwear=[span]
    )
    fs = 25.0
    acc = night.sensor.acc_g.astype(np.float64)
    inner = acc[int((span[0] + 20) * fs) : int((span[0] + span[1] - 20) * fs)]
    assert inner.std(axis=0).max() < 0.004  # sensor noise (2 mg) and slow drift only
    assert abs(np.linalg.norm(inner.mean(axis=0)) - 1.0) < 0.05
    rows = night.annotation("nonwear")
    assert len(rows) == 1 and rows["side"].iloc[0] == "right"
    assert rows[["onset_s", "duration_s"]].iloc[0].tolist() == list(span)
    lms = night.annotation("lm")
    ends = lms["onset_s"] + lms["duration_s"]
    assert not ((lms["onset_s"] < span[0] + span[1]) & (ends > span[0])).any()
    # the same night without non-wear has movements there
    worn = simulate_night("moderate", hours=3.0, fs_hz=25.0, seed=2, evening_h=0.5)
    lms = worn.annotation("lm")
    ends = lms["onset_s"] + lms["duration_s"]
    assert ((lms["onset_s"] < span[0] + span[1]) & (ends > span[0])).any()


def test_nonwear_on_one_ankle_of_two():
    night = simulate_night(
        "bilateral", hours=1.0, fs_hz=20.0, seed=3, nonwear=[(600.0, 1200.0, "left")]
    )
    rows = night.annotation("nonwear")
    assert rows["side"].tolist() == ["left"]
    fs = 20.0
    left = night.ankle("left").acc_g[int(630 * fs) : int(1770 * fs)]
    right = night.ankle("right").acc_g[int(630 * fs) : int(1770 * fs)]
    assert left.std(axis=0).max() < 0.004
    assert right.std(axis=0).max() > left.std(axis=0).max()


def test_start_local_follows_the_time_zone_rules():
    night = simulate_night(
        "healthy", hours=0.1, start_local="2026-03-28T19:30", timezone="Europe/Zurich"
    )
    assert night.start_utc.isoformat() == "2026-03-28T18:30:00+00:00"  # CET, UTC+1
    summer = simulate_night(
        "healthy", hours=0.1, start_local="2026-03-29T19:30", timezone="Europe/Zurich"
    )
    assert summer.start_utc.isoformat() == "2026-03-29T17:30:00+00:00"  # CEST, UTC+2


def test_out_of_bed_nights_are_deterministic():
    kwargs = dict(hours=0.5, fs_hz=20.0, seed=4, evening_h=0.3, morning_h=0.2,
                  nonwear=[(60.0, 300.0)])
    a, b = simulate_night("restless", **kwargs), simulate_night("restless", **kwargs)
    assert np.array_equal(a.sensor.acc_g, b.sensor.acc_g)
    pd.testing.assert_frame_equal(a.annotations, b.annotations)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"evening_h": -1.0}, "evening_h"),
        ({"morning_h": 13.0}, "morning_h"),
        ({"evening_h": "2"}, "evening_h"),
        ({"nonwear": [(0.0, 30.0)]}, "at least 60 s"),
        ({"nonwear": [(0.0, 4000.0)]}, "inside the recording"),
        ({"nonwear": [(0.0, 600.0, "left")]}, "nonwear side"),
        ({"nonwear": [(0.0, 600.0), (300.0, 600.0)]}, "overlap"),
        ({"nonwear": [(0.0,)]}, "nonwear span"),
        ({"nonwear": "all"}, "nonwear"),
        ({"start_local": "2026-01-05T22:00+01:00"}, "UTC offset"),
        ({"start_local": "tonight"}, "ISO 8601"),
        ({"start_local": "2026-01-05T22:00", "start_utc": "2026-01-05T21:00Z"}, "not both"),
    ],
)
def test_bad_out_of_bed_arguments_raise_usage_errors(kwargs, message):
    with pytest.raises(UsageError, match=message) as err:
        simulate_night("healthy", hours=1.0, fs_hz=10.0, **kwargs)
    assert "\n" not in str(err.value)
