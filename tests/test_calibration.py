"""Calibration to local gravity (pmld.signal), device calibration files
(pmld.io.calibration) and ``pmld calibrate``.

Synthetic still postures with a known offset and gain must be recovered; the failures
(too few still epochs, poor coverage, wrong units) must say why; a stored calibration is
used only for its own device serial; the command runs by subprocess on real pmld-raw
files.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmld.errors import FormatError, InputError, UsageError
from pmld.io.calibration import (
    CALIBRATION_SCHEMA,
    read_device_calibration,
    read_device_calibrations,
    write_device_calibration,
)
from pmld.io.raw import write_raw
from pmld.night import Night, Sensor
from pmld.signal import (
    Calibration,
    CalibrationParams,
    _fit_sphere,
    _sphere_step,
    autocalibrate,
    calibrate_points,
    choose_calibration,
    still_points,
)
from pmld.simulate import simulate_night

FS = 50.0
EPOCH_N = int(10 * FS)


def unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def postures_signal(
    ups: np.ndarray, gain, bias, *, epochs_each: int = 4, noise_g: float = 0.002, seed: int = 0,
    fs: float = FS,
) -> np.ndarray:
    """Still postures (gravity ``ups``), each held ``epochs_each`` 10 s epochs, measured by a
    sensor with per-axis ``gain`` and ``bias``: raw = true * gain + bias."""
    rng = np.random.default_rng(seed)
    epoch_n = int(10 * fs)
    true = np.repeat(ups, epochs_each * epoch_n, axis=0)
    true = true + noise_g * rng.standard_normal(true.shape)
    return (true * np.asarray(gain) + np.asarray(bias)).astype(np.float32)


def truth(gain, bias) -> tuple[np.ndarray, np.ndarray]:
    """The calibration that undoes raw = true * gain + bias: raw * scale + offset."""
    gain, bias = np.asarray(gain, float), np.asarray(bias, float)
    return -bias / gain, 1.0 / gain


# -- recovery ---------------------------------------------------------------------------


def test_known_offset_and_scale_are_recovered():
    rng = np.random.default_rng(1)
    gain, bias = [1.03, 0.97, 1.01], [0.04, -0.03, 0.02]
    acc = postures_signal(unit_vectors(30, rng), gain, bias)
    cal = autocalibrate(acc, FS)
    offset, scale = truth(gain, bias)
    assert cal.status == "autocalibrated", cal.reason
    np.testing.assert_allclose(cal.offset_g, offset, atol=1e-3)
    np.testing.assert_allclose(cal.scale, scale, atol=1e-3)
    assert cal.error_before_g > 0.02
    assert cal.error_after_g < 0.002
    assert cal.n_points == 120
    assert "120 still epochs" in cal.reason
    # applying it puts the still points on the unit sphere
    calibrated = cal.apply(acc)
    assert calibrated.dtype == np.float32
    means = calibrated.reshape(-1, EPOCH_N, 3).mean(axis=1)
    assert np.abs(np.linalg.norm(means, axis=1) - 1).max() < 0.005


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    gain=st.lists(st.floats(0.9, 1.1), min_size=3, max_size=3),
    bias=st.lists(st.floats(-0.1, 0.1), min_size=3, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_random_sensor_errors_and_orientations_are_recovered(gain, bias, seed):
    rng = np.random.default_rng(seed)
    # the six faces (coverage) tilted at random, plus random orientations
    faces = np.vstack([np.eye(3), -np.eye(3)]) + 0.2 * rng.standard_normal((6, 3))
    ups = np.vstack([faces, rng.standard_normal((20, 3))])
    ups /= np.linalg.norm(ups, axis=1, keepdims=True)
    rotation = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    ups = ups @ rotation.T
    noise = 0.002 * rng.standard_normal((len(ups), 3)) / math.sqrt(EPOCH_N)
    points = np.repeat(ups + noise, 2, axis=0) * np.asarray(gain) + np.asarray(bias)
    cal = calibrate_points(points)
    offset, scale = truth(gain, bias)
    assert cal.status == "autocalibrated", cal.reason
    np.testing.assert_allclose(cal.offset_g, offset, atol=2e-3)
    np.testing.assert_allclose(cal.scale, scale, atol=2e-3)
    assert cal.error_after_g < cal.error_before_g or cal.error_before_g < 1e-3


def test_apply_convention_and_identity():
    cal = Calibration(offset_g=[0.1, -0.2, 0.0], scale=[2.0, 1.0, 0.5], status="stored")
    acc = np.array([[1.0, 1.0, 1.0], [np.nan, 0.0, 2.0]], dtype=np.float32)
    out = cal.apply(acc)
    np.testing.assert_allclose(out[0], [2.1, 0.8, 0.5], rtol=1e-6)
    assert np.isnan(out[1, 0]) and out[1, 2] == pytest.approx(1.0)
    none = Calibration(status="none", reason="calibration off")
    assert none.apply(acc) is acc  # nothing applied, nothing copied


# -- failures say why -------------------------------------------------------------------


def test_too_few_still_epochs():
    rng = np.random.default_rng(2)
    acc = postures_signal(unit_vectors(6, rng), [1, 1, 1], [0, 0, 0], epochs_each=2)
    # movement everywhere else: 0.1 g noise is far above the 13 mg SD criterion
    moving = (rng.standard_normal((EPOCH_N * 100, 3)) * 0.1 + [0, 0, 1]).astype(np.float32)
    cal = autocalibrate(np.vstack([acc, moving]), FS)
    assert cal.status == "none"
    assert cal.details["problem"] == "too_few_points"
    assert "too few still epochs: 12 of 112 epochs" in cal.reason
    assert "40 needed" in cal.reason
    np.testing.assert_array_equal(cal.scale, 1.0)


def test_poor_coverage_names_the_axis_and_side():
    rng = np.random.default_rng(3)
    # gravity always has a positive z component: no point beyond -0.3 g on z
    ups = unit_vectors(40, rng)
    ups[:, 2] = np.abs(ups[:, 2]) + 0.35
    ups /= np.linalg.norm(ups, axis=1, keepdims=True)
    cal = autocalibrate(postures_signal(ups, [1.02, 1, 1], [0.01, 0, 0]), FS)
    assert cal.status == "none"
    assert cal.details["problem"] == "coverage"
    assert "no still point beyond 0.3 g towards -z (" in cal.reason
    assert not np.isnan(cal.error_before_g) and cal.error_after_g == cal.error_before_g


def test_wrong_units_metres_per_second_squared():
    rng = np.random.default_rng(4)
    acc = postures_signal(unit_vectors(30, rng), [1, 1, 1], [0, 0, 0]) * np.float32(9.80665)
    cal = autocalibrate(acc, FS)
    assert cal.status == "none"
    assert cal.details["problem"] == "units"
    assert "not in g" in cal.reason and "9.81" in cal.reason and "m/s^2" in cal.reason


def test_error_after_too_large_fails():
    rng = np.random.default_rng(5)
    ups = unit_vectors(40, rng)
    # gravity of 1 +- 5 % per posture (e.g. a sensor whose error changes with temperature)
    ups *= rng.choice([0.95, 1.05], size=(40, 1))
    cal = autocalibrate(postures_signal(ups, [1, 1, 1], [0, 0, 0]), FS)
    assert cal.status == "none"
    assert cal.details["problem"] == "error_too_large"
    assert "above the 10 mg limit" in cal.reason


def test_nan_samples_and_gaps():
    rng = np.random.default_rng(6)
    gain, bias = [0.98, 1.02, 1.0], [0.02, 0.01, -0.03]
    acc = postures_signal(unit_vectors(30, rng), gain, bias, epochs_each=4)  # 120 epochs
    acc[5] = np.nan  # ruins the first epoch only
    whole = still_points(acc, FS)
    assert whole.n_epochs == 119  # the epoch holding a NaN is left out
    # A gap after 1.5 epochs: epochs are cut from each gap-free stretch separately, so
    # the first stretch holds one epoch (the NaN one) and the second 118, a quarter of
    # which straddle two postures and are not still.
    cut = int(1.5 * EPOCH_N)
    sensor = Sensor(acc, FS, "2024-01-01T22:00:00+00:00", gaps=[(cut, 123)])
    found = still_points(acc, FS, segments=sensor.segments())
    assert found.n_epochs == (len(acc) - cut) // EPOCH_N == 118
    assert len(found.points) <= 118 - 29
    cal = autocalibrate(acc, FS, segments=sensor.segments())
    offset, scale = truth(gain, bias)
    assert cal.status == "autocalibrated", cal.reason
    np.testing.assert_allclose(cal.offset_g, offset, atol=2e-3)
    np.testing.assert_allclose(cal.scale, scale, atol=2e-3)


# -- one simulated ankle night ----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 3])
def test_simulated_ankle_night_reports_what_happened(seed):
    night = simulate_night("moderate", hours=8, seed=seed)
    sensor = night.sensor
    cal = autocalibrate(sensor.acc_g, sensor.fs_hz, segments=sensor.segments())
    points = still_points(sensor.acc_g, sensor.fs_hz, segments=sensor.segments()).points
    crit = CalibrationParams().sphere_crit_g
    covered = (points.min(axis=0) < -crit).all() and (points.max(axis=0) > crit).all()
    if not covered:
        assert cal.status == "none" and cal.details["problem"] == "coverage", cal.reason
        assert "poor sphere coverage" in cal.reason
    else:
        assert cal.status in ("autocalibrated", "none")
        if cal.status == "autocalibrated":
            assert cal.error_after_g < min(cal.error_before_g, 0.01)
            # the simulator's fixed offsets: within its drift (tens of mg over a night)
            gain = np.array([sensor.device[f"sim_gain_{a}"] for a in "xyz"])
            bias = np.array([sensor.device[f"sim_offset_g_{a}"] for a in "xyz"])
            offset, scale = truth(gain, bias)
            assert np.abs(cal.offset_g - offset).max() < 0.05
            assert np.abs(cal.scale - scale).max() < 0.05
        else:
            assert cal.reason.startswith("autocalibration failed: ")
    assert seed != 3 or not covered  # seed 3 never shows gravity towards +z


# -- choose_calibration ------------------------------------------------------------------


def _stored(serial: str, offset=(0.01, 0.02, 0.03), scale=(1.01, 0.99, 1.0)) -> Calibration:
    return Calibration(
        offset_g=offset, scale=scale, status="autocalibrated", reason="pooled",
        error_before_g=0.02, error_after_g=0.002, n_points=500, device={"serial": serial},
        source=f"{serial}.json",
    )


def _one_posture_night() -> np.ndarray:
    rng = np.random.default_rng(7)
    return postures_signal(unit_vectors(1, rng), [1.01, 0.99, 1.0], [0.01, 0.02, 0.03],
                           epochs_each=60)


def test_stored_calibration_used_when_autocalibration_fails():
    acc = _one_posture_night()
    cal = choose_calibration(acc, FS, CalibrationParams(), device={"serial": "A1"},
                             stored=[_stored("B2"), _stored("A1")])
    assert cal.status == "stored"
    assert cal.source == "A1.json"
    assert "stored calibration of device A1 from A1.json" in cal.reason
    assert "poor sphere coverage" in cal.reason
    np.testing.assert_allclose(cal.offset_g, [0.01, 0.02, 0.03])
    assert cal.n_points == 60 and math.isfinite(cal.error_after_g)


def test_stored_calibration_of_another_serial_is_not_used():
    acc = _one_posture_night()
    cal = choose_calibration(acc, FS, CalibrationParams(), device={"serial": "A1"},
                             stored=[_stored("B2")])
    assert cal.status == "none"
    assert "device B2 not used: this sensor is device A1" in cal.reason
    np.testing.assert_array_equal(cal.offset_g, 0.0)
    no_serial = choose_calibration(acc, FS, CalibrationParams(), stored=[_stored("B2")])
    assert no_serial.status == "none" and "no device serial" in no_serial.reason


def test_autocalibration_wins_over_stored_and_off_does_nothing():
    rng = np.random.default_rng(8)
    acc = postures_signal(unit_vectors(30, rng), [1.02, 1, 1], [0.02, 0, 0])
    auto = choose_calibration(acc, FS, CalibrationParams(), device={"serial": "A1"},
                              stored=[_stored("A1")])
    assert auto.status == "autocalibrated" and auto.device == {"serial": "A1"}
    off = choose_calibration(acc, FS, CalibrationParams(mode="off"), stored=[_stored("A1")])
    assert off.status == "none" and off.reason == "calibration off"
    assert math.isnan(off.error_before_g)


def test_device_files_in_params(tmp_path):
    path = tmp_path / "a1.json"
    write_device_calibration(path, _stored("A1"))
    params = CalibrationParams(device_files=(str(path),))
    assert params.to_dict()["device_files"] == [str(path)]
    assert CalibrationParams.from_dict(params.to_dict()) == params
    stored = read_device_calibrations(params.device_files)
    cal = choose_calibration(_one_posture_night(), FS, params, device={"serial": "A1"},
                             stored=stored)
    assert cal.status == "stored" and cal.source == str(path)


def test_choose_calibration_reads_no_file(tmp_path):
    # signal.py opens no file: paths, and device_files left unread, are refused
    path = tmp_path / "a1.json"
    write_device_calibration(path, _stored("A1"))
    acc = _one_posture_night()
    with pytest.raises(UsageError, match="must be Calibration objects"):
        choose_calibration(acc, FS, CalibrationParams(), device={"serial": "A1"},
                           stored=[str(path)])
    with pytest.raises(UsageError, match="device_files are not read by choose_calibration"):
        choose_calibration(acc, FS, CalibrationParams(device_files=(str(path),)),
                           device={"serial": "A1"})


def test_analyze_reads_device_files_and_names_a_bad_one(tmp_path):
    from pmld.pipeline import analyze

    night = simulate_night("healthy", hours=0.5, fs_hz=FS, seed=1)
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "other"}')
    with pytest.raises(FormatError, match="not a pmld-device-calibration file") as info:
        analyze(night, **{"calibration.device_files": [str(bad)]})
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_params_are_checked():
    with pytest.raises(UsageError, match="mode"):
        CalibrationParams(mode="always")
    with pytest.raises(UsageError, match="still_sd_g"):
        CalibrationParams(still_sd_g=-1)
    with pytest.raises(UsageError, match="unknown calibration parameter"):
        CalibrationParams.from_dict({"spherecrit": 0.3})


# -- the device file ----------------------------------------------------------------------


def test_device_file_round_trip(tmp_path):
    path = tmp_path / "dev.json"
    original = _stored("A1")
    original.error_before_g = math.nan  # strict JSON: written as null, read as NaN
    write_device_calibration(path, original, inputs=[{"path": "x.h5", "sha256": "sha256:0"}])
    content = json.loads(path.read_text())
    assert content["schema"] == CALIBRATION_SCHEMA and content["schema_version"] == "1.0"
    assert content["pmld_version"] and content["created_utc"]
    (back,) = read_device_calibration(path)
    np.testing.assert_array_equal(back.offset_g, original.offset_g)
    np.testing.assert_array_equal(back.scale, original.scale)
    assert back.serial == "A1" and back.source == str(path)
    assert math.isnan(back.error_before_g) and back.n_points == 500
    again = Calibration.from_dict(back.to_dict())
    np.testing.assert_array_equal(again.offset_g, back.offset_g)
    assert (again.status, again.reason, again.device) == (back.status, back.reason, back.device)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not a valid JSON device calibration"),
        ('{"schema": "other"}', "not a pmld-device-calibration file"),
        ('{"schema": "pmld-device-calibration", "schema_version": "2.0", "calibrations": []}',
         "schema version 2.0 is not readable"),
        ('{"schema": "pmld-device-calibration", "schema_version": "1.0", "calibrations": '
         '[{"offset_g": [0, 0], "scale": [1, 1, 1]}]}', "3 numbers"),
    ],
)
def test_corrupt_device_file_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(FormatError, match=message) as info:
        read_device_calibration(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError, match="no such"):
        read_device_calibration(tmp_path / "missing.json")


# -- pmld calibrate, by subprocess on real pmld-raw files -----------------------------------


def _raw_file(path, acc, serial, *, side="right", fs=FS):
    device = {"serial": serial, "model": "test-band", "range_g": 8.0}
    sensor = Sensor(acc, fs, "2024-03-01T22:00:00+00:00", side=side, device=device)
    write_raw(Night([sensor], timezone="Europe/Zurich"), path)
    return path


def _pmld(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pmld.cli", "calibrate", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_pools_recordings_writes_and_reads_back(tmp_path):
    rng = np.random.default_rng(9)
    gain, bias = [1.02, 0.98, 1.01], [0.03, -0.02, 0.01]
    ups = unit_vectors(24, rng)
    # each recording alone covers only half the sphere (z > 0, then z < 0)
    up_half = ups.copy()
    up_half[:, 2] = np.abs(up_half[:, 2])
    down_half = up_half * [1, 1, -1]
    a = _raw_file(tmp_path / "a.h5", postures_signal(up_half, gain, bias, seed=1), "A1")
    b = _raw_file(tmp_path / "b.h5", postures_signal(down_half, gain, bias, seed=2), "A1")
    alone = _pmld(a)
    assert alone.returncode == 2
    assert alone.stderr.count("\n") == 1 and "poor sphere coverage" in alone.stderr
    assert "towards -z" in alone.stderr
    out = tmp_path / "dev.json"
    done = _pmld(a, b, "-o", out)
    assert done.returncode == 0, done.stderr
    assert "device A1 (test-band): 192 still epochs from 2 recordings" in done.stdout
    (cal,) = read_device_calibration(out)
    offset, scale = truth(gain, bias)
    np.testing.assert_allclose(cal.offset_g, offset, atol=1.5e-3)
    np.testing.assert_allclose(cal.scale, scale, atol=1.5e-3)
    content = json.loads(out.read_text())
    assert [i["path"] for i in content["inputs"]] == [str(a), str(b)]
    assert all(i["sha256"].startswith("sha256:") for i in content["inputs"])
    assert content["device"] == {"serial": "A1", "model": "test-band"}
    # the stored file then calibrates a night of that device that cannot calibrate itself
    night = postures_signal(up_half[:1], gain, bias, epochs_each=50)
    chosen = choose_calibration(night, FS, CalibrationParams(), device={"serial": "A1"},
                                stored=read_device_calibration(out))
    assert chosen.status == "stored"
    assert chosen.error_after_g < 0.003 < chosen.error_before_g
    # --json reports without writing
    report = _pmld(a, b, "--json")
    assert report.returncode == 0
    assert json.loads(report.stdout)["calibration"]["status"] == "autocalibrated"


def test_cli_refuses_mixed_devices_unless_one_is_chosen(tmp_path):
    rng = np.random.default_rng(10)
    acc = postures_signal(unit_vectors(24, rng), [1, 1, 1.02], [0, 0.01, 0])
    a = _raw_file(tmp_path / "a.h5", acc, "A1")
    b = _raw_file(tmp_path / "b.h5", acc, "B2")
    mixed = _pmld(a, b)
    assert mixed.returncode == 2 and mixed.stderr.count("\n") == 1
    assert "2 devices (A1: 1 recording; B2: 1 recording)" in mixed.stderr
    assert "--device" in mixed.stderr
    picked = _pmld(a, b, "--device", "B2")
    assert picked.returncode == 0, picked.stderr
    assert picked.stdout.startswith("device B2")
    missing = _pmld(a, "--device", "Z9")
    assert missing.returncode == 2 and "no sensor of device Z9" in missing.stderr


def test_cli_failures_are_one_line(tmp_path):
    rng = np.random.default_rng(11)
    few = _raw_file(tmp_path / "few.h5",
                    postures_signal(unit_vectors(3, rng), [1, 1, 1], [0, 0, 0]), "A1")
    done = _pmld(few)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "cannot calibrate device A1 (test-band) from 1 recording: too few still epochs: 12"\
        in done.stderr
    corrupt = tmp_path / "x.h5"
    corrupt.write_bytes(b"not hdf5")
    bad = _pmld(corrupt)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert _pmld(tmp_path / "none.h5").stderr.strip().endswith("no such file")


def test_simulated_sensor_without_serial_is_refused(tmp_path):
    night = simulate_night("moderate", hours=0.25, seed=1, fs_hz=25)
    path = tmp_path / "sim.h5"
    write_raw(night, path)
    done = _pmld(path)
    assert done.returncode == 2 and "no device serial" in done.stderr


def test_replace_keeps_params_frozen():
    params = replace(CalibrationParams(), min_points=10)
    assert params.min_points == 10
    with pytest.raises(AttributeError):
        params.min_points = 3  # type: ignore[misc]


def test_the_accelerated_fit_ends_at_the_fixed_point_where_plain_repetition_stops_short():
    # an ankle night whose still points make plain repetition slow (about 1800 fits)
    params = CalibrationParams()
    night = simulate_night("moderate", hours=8, fs_hz=25, seed=11)
    points = still_points(night.sensor.acc_g, 25, params,
                          segments=night.sensor.segments()).points
    raw, floor = np.ascontiguousarray(points.T), 1 / params.max_weight
    offset, scale, fits, converged = _fit_sphere(points, params)
    assert converged and fits < 100
    x = np.concatenate([offset, scale])
    assert np.abs(_sphere_step(raw, x, floor, weighted=True)[1] - x).max() < 1e-8
    # plain repetition under the same stopping rule: many more fits, and it stops while
    # one more fit still moves the parameters
    y, previous = np.concatenate([np.zeros(3), np.ones(3)]), math.inf
    for plain_fits in range(params.max_iter + 1):
        residual, fit = _sphere_step(raw, y, floor, weighted=plain_fits > 0)
        if abs(previous - residual) < params.tol_g:
            break
        previous, y = residual, fit
    assert plain_fits > 10 * fits
    assert np.abs(_sphere_step(raw, y, floor, weighted=True)[1] - y).max() > 1e-8
    assert np.abs(y[:3] - offset).max() < 1e-3  # the same calibration, to 1 mg
