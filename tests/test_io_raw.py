"""The pmld-raw HDF5 night file: round trips, refusals, atomic writing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import h5py
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pmld.errors import FormatError, InputError, PmldError
from pmld.io import raw
from pmld.io.raw import RAW_SCHEMA, RAW_VERSION, is_raw, read_raw, write_raw
from pmld.night import Night, Sensor, make_annotations

START = "2026-03-01T22:30:00.123456+01:00"


def quantised(n: int, counts_per_g: float = 4096.0, seed: int = 0) -> np.ndarray:
    """Still-sensor samples on the int16 grid of ``counts_per_g``, as a device gives."""
    rng = np.random.default_rng(seed)
    acc = np.array([0.3, -0.2, 0.93]) + rng.normal(0, 0.003, (n, 3))
    counts = np.clip(np.rint(acc * counts_per_g), -32768, 32767)
    return (counts / counts_per_g).astype(np.float32)


def one_sensor_night(n: int = 3000, **kwargs) -> Night:
    options = {
        "side": "right",
        "timezone": "Europe/Zurich",
        "device": {"model": "sim", "serial": "A1", "range_g": 8, "counts_per_g": 4096},
        "meta": {"subject": "s01", "seed": 7, "hours": 0.5},
        "annotations": make_annotations(
            [1.0, 5.5], [0.0, 2.25], ["lights_off", "lm"], side=["unknown", "right"], source="psg"
        ),
    }
    options.update(kwargs)
    return Night.from_arrays(quantised(n), 100.0, START, **options)


def two_sensor_night() -> Night:
    rng = np.random.default_rng(3)
    start = datetime(2026, 3, 1, 21, 30, tzinfo=UTC)
    gyro_counts = rng.integers(-3000, 3000, (5000, 3))
    left = Sensor(
        quantised(5000, seed=1),
        50.0,
        start,
        side="left",
        gyro_dps=(gyro_counts / (32768 / 2000)).astype(np.float32),
        gaps=pd.DataFrame({"sample_index": [100, 4000], "missing_samples": [25, 7]}),
        device={"model": "imu", "range_g": 8, "gyro_range_dps": 2000},
    )
    times = np.cumsum(rng.uniform(0.008, 0.012, 4000))
    right = Sensor(
        quantised(4000, 2048.0, seed=2),
        100.0,
        start + timedelta(seconds=2.5),
        side="right",
        timestamps_s=times - times[0],
        device={"model": "phone", "range_g": 16},
    )
    annotations = make_annotations(
        [0.0, 12.0, 30.0],
        [3600.0, 1.5, 0.75],
        ["sleep", "lm", "Beinbewegung ü 脚"],
        side=["unknown", "left", "right"],
        source=["psg", "scorer A", "simulator"],
    )
    return Night(
        [left, right],
        timezone="America/New_York",
        annotations=annotations,
        meta={"study": "test", "note": "two ankles"},
    )


def assert_same_night(a: Night, b: Night) -> None:
    assert a.timezone == b.timezone
    assert a.meta == b.meta
    assert a.sides == b.sides
    pd.testing.assert_frame_equal(a.annotations, b.annotations)
    for x, y in zip(a.sensors, b.sensors, strict=True):
        np.testing.assert_array_equal(x.acc_g, y.acc_g)
        assert x.fs_hz == y.fs_hz
        assert x.start_utc == y.start_utc
        assert x.side == y.side
        assert x.device == y.device
        pd.testing.assert_frame_equal(x.gaps, y.gaps)
        if x.gyro_dps is None:
            assert y.gyro_dps is None
        else:
            np.testing.assert_array_equal(x.gyro_dps, y.gyro_dps)
        if x.timestamps_s is None:
            assert y.timestamps_s is None
        else:
            np.testing.assert_array_equal(x.timestamps_s, y.timestamps_s)


# -- round trips -----------------------------------------------------------------------
def test_round_trip_one_sensor_is_exact(tmp_path):
    night = one_sensor_night()
    path = tmp_path / "night.h5"
    write_raw(night, path)
    back = read_raw(path)
    assert_same_night(night, back)
    assert back.start_local.isoformat() == "2026-03-01T22:30:00.123456+01:00"
    assert back.sensor.acc_g.dtype == np.float32


def test_round_trip_two_sensors_gyro_gaps_irregular_times(tmp_path):
    night = two_sensor_night()
    path = tmp_path / "two.h5"
    write_raw(night, path)
    back = read_raw(path)
    assert_same_night(night, back)
    assert back.ankle("left").missing_samples == 32
    assert not back.ankle("right").is_uniform


def test_sensor_order_is_kept(tmp_path):
    night = two_sensor_night()
    night.sensors.reverse()
    write_raw(night, tmp_path / "n.h5")
    assert read_raw(tmp_path / "n.h5").sides == ["right", "left"]


def test_empty_annotations_and_meta(tmp_path):
    night = Night.from_arrays(quantised(10), 25.0)
    write_raw(night, tmp_path / "n.h5")
    back = read_raw(tmp_path / "n.h5")
    assert back.annotations.empty and back.meta == {}
    assert back.sensor.side == "unknown" and back.timezone == "UTC"


def test_long_night_takes_the_threaded_read_path_and_matches_h5py(tmp_path):
    n = 2 * raw.CHUNK_ROWS + 1234  # three chunks, the last one partial
    night = one_sensor_night(n)
    path = tmp_path / "long.h5"
    write_raw(night, path)
    with h5py.File(path, "r") as h5:
        counts = h5["sensors/right/acc"][()]
        assert h5["sensors/right/acc"].chunks == (raw.CHUNK_ROWS, 3)
    expected = (counts / 4096.0).astype(np.float32)
    back = read_raw(path)
    np.testing.assert_array_equal(back.sensor.acc_g, expected)
    np.testing.assert_array_equal(back.sensor.acc_g, night.sensor.acc_g)


@pytest.mark.parametrize("counts_per_g", [4096.0, 1000.0, 256.0, 16.384, 3.0])
def test_samples_on_the_device_grid_round_trip_exactly(tmp_path, counts_per_g):
    acc = quantised(2000, counts_per_g)
    night = Night.from_arrays(acc, 100.0, device={"counts_per_g": counts_per_g})
    write_raw(night, tmp_path / "n.h5")
    np.testing.assert_array_equal(read_raw(tmp_path / "n.h5").sensor.acc_g, acc)
    with h5py.File(tmp_path / "n.h5", "r") as h5:
        assert h5["sensors/unknown/acc"].attrs["quantisation_error"] == 0.0


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    counts=hnp.arrays(np.int16, st.tuples(st.integers(1, 300), st.just(3))),
    range_g=st.sampled_from([2, 4, 8, 16]),
)
def test_any_int16_counts_round_trip_exactly(tmp_path, counts, range_g):
    scale = 32768 / range_g
    acc = (counts / scale).astype(np.float32)
    night = Night.from_arrays(acc, 50.0, device={"range_g": range_g})
    path = tmp_path / "h.h5"
    write_raw(night, path)
    np.testing.assert_array_equal(read_raw(path).sensor.acc_g, acc)


@pytest.mark.parametrize(
    ("scenario", "range_g"), [("bilateral", 8.0), ("noisy", 6.0), ("severe", 16.0)]
)
def test_simulated_nights_round_trip_exactly(tmp_path, scenario, range_g):
    simulate = pytest.importorskip("pmld.simulate")
    night = simulate.simulate_night(scenario, hours=0.05, fs_hz=100, seed=2, range_g=range_g)
    write_raw(night, tmp_path / "sim.h5")
    assert_same_night(night, read_raw(tmp_path / "sim.h5"))


def test_without_device_scale_the_finest_range_that_holds_the_data_is_used(tmp_path):
    acc = np.array([[0.0, 0.0, 1.0], [5.0, -3.0, 0.5], [0.1234567, 0.0, 1.0]], np.float32)
    write_raw(Night.from_arrays(acc, 10.0), tmp_path / "n.h5")
    with h5py.File(tmp_path / "n.h5", "r") as h5:
        dataset = h5["sensors/unknown/acc"]
        assert dataset.attrs["counts_per_g"] == 4096.0  # +-8 g holds 5 g
        assert dataset.attrs["conversion"] == 1 / 4096
        assert 0 < dataset.attrs["quantisation_error"] <= 0.5 / 4096
    back = read_raw(tmp_path / "n.h5").sensor.acc_g
    np.testing.assert_allclose(back, acc, atol=0.5 / 4096)


def test_data_beyond_the_device_range_are_not_clipped(tmp_path):
    acc = quantised(100)
    acc[10] = [3.5, -2.5, 0.0]
    night = Night.from_arrays(acc, 10.0, device={"range_g": 2})
    write_raw(night, tmp_path / "n.h5")
    with h5py.File(tmp_path / "n.h5", "r") as h5:
        assert h5["sensors/unknown/acc"].attrs["counts_per_g"] == 8192.0
        assert "device range" in h5["sensors/unknown/acc"].attrs["scale_note"]
    back = read_raw(tmp_path / "n.h5").sensor.acc_g
    np.testing.assert_allclose(back, acc, atol=0.5 / 8192)


def test_layout_and_attributes_follow_the_schema(tmp_path):
    night = two_sensor_night()
    path = tmp_path / "n.h5"
    write_raw(night, path)
    with h5py.File(path, "r") as h5:
        assert h5.attrs["schema"] == RAW_SCHEMA == "pmld-raw"
        assert h5.attrs["schema_version"] == RAW_VERSION == "1.0"
        assert h5.attrs["timezone"] == "America/New_York"
        assert json.loads(h5.attrs["meta"]) == night.meta
        assert h5.attrs["pmld_version"]
        datetime.fromisoformat(h5.attrs["created_utc"])
        left = h5["sensors/left"]
        assert left.attrs["fs_hz"] == 50.0
        assert left.attrs["start_ns"] == int(night.sensors[0].start_utc.timestamp()) * 10**9
        assert datetime.fromisoformat(left.attrs["start_utc"]) == night.sensors[0].start_utc
        acc = left["acc"]
        assert acc.dtype == np.int16 and acc.shape == (5000, 3)
        assert acc.compression == "gzip" and acc.shuffle and acc.chunks is not None
        assert acc.attrs["unit"] == "g" and acc.attrs["conversion"] == 1 / 4096
        assert left["gyro"].attrs["unit"] == "deg/s"
        assert left["gyro"].attrs["counts_per_dps"] == 32768 / 2000
        assert left["gaps/sample_index"].dtype == np.int64
        assert list(left["gaps/missing_samples"][()]) == [25, 7]
        assert "time_s" not in left and h5["sensors/right/time_s"].attrs["unit"] == "s"
        notes = h5["annotations"]
        assert list(notes.attrs["columns"]) == list(night.annotations.columns)
        assert notes["onset_s"].attrs["unit"] == "s"
        assert h5py.check_string_dtype(notes["label"].dtype).encoding == "utf-8"


def test_numpy_scalars_in_meta_are_stored_as_numbers(tmp_path):
    night = one_sensor_night(meta={"seed": np.int64(3), "gain": np.float32(0.5)})
    write_raw(night, tmp_path / "n.h5")
    assert read_raw(tmp_path / "n.h5").meta == {"seed": 3, "gain": 0.5}


def test_is_raw(tmp_path):
    write_raw(one_sensor_night(), tmp_path / "n.h5")
    (tmp_path / "t.txt").write_text("hello")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["x"] = 1
    assert is_raw(tmp_path / "n.h5")
    assert not is_raw(tmp_path / "t.txt")
    assert not is_raw(tmp_path / "other.h5")
    assert not is_raw(tmp_path / "absent.h5")
    assert not is_raw(tmp_path)


# -- refusals --------------------------------------------------------------------------
def check_refusal(path, kind, *words):
    with pytest.raises(kind) as caught:
        read_raw(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message
    return message


def test_missing_file(tmp_path):
    message = check_refusal(tmp_path / "absent.h5", InputError, "no such file")
    assert not isinstance(InputError(message), FormatError)


def test_directory_is_not_a_file(tmp_path):
    check_refusal(tmp_path, InputError, "not a file")


def test_not_hdf5(tmp_path):
    path = tmp_path / "night.h5"
    path.write_text("time_s,x,y,z\n0,0,0,1\n")
    check_refusal(path, FormatError, "not an HDF5 file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.h5"
    path.write_bytes(b"")
    check_refusal(path, FormatError, "not an HDF5 file")


def test_hdf5_of_another_schema(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5["data"] = np.arange(3)
    check_refusal(path, FormatError, "is HDF5 but not a pmld-raw file", "schema attribute missing")
    with h5py.File(path, "a") as h5:
        h5.attrs["schema"] = "pmld-summary"
    check_refusal(path, FormatError, "not a pmld-raw file (schema attribute 'pmld-summary')")


def set_version(path, version):
    with h5py.File(path, "a") as h5:
        h5.attrs["schema_version"] = version


def test_newer_major_version_is_refused(tmp_path):
    path = tmp_path / "n.h5"
    write_raw(one_sensor_night(), path)
    set_version(path, "2.0")
    message = check_refusal(path, FormatError)
    assert message == f"{path}: is pmld-raw 2.0; this pmld reads 1.x: upgrade pmld"


@pytest.mark.parametrize("version", ["0.9", "one", ""])
def test_older_or_unreadable_versions_are_refused(tmp_path, version):
    path = tmp_path / "n.h5"
    write_raw(one_sensor_night(), path)
    set_version(path, version)
    check_refusal(path, FormatError, "pmld-raw")


def test_newer_minor_version_is_read_and_its_additions_ignored(tmp_path):
    night = one_sensor_night()
    path = tmp_path / "n.h5"
    write_raw(night, path)
    set_version(path, "1.7")
    with h5py.File(path, "a") as h5:
        h5["sensors/right/temperature_c"] = np.zeros(10)
        h5["sensors/right"].attrs["calibration"] = "{}"
        h5.create_group("summaries")
    assert_same_night(night, read_raw(path))


def test_truncated_file(tmp_path):
    path = tmp_path / "n.h5"
    write_raw(one_sensor_night(3 * raw.CHUNK_ROWS), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    check_refusal(path, FormatError, "truncated or corrupt")


def test_corrupt_chunk(tmp_path):
    path = tmp_path / "n.h5"
    write_raw(one_sensor_night(3 * raw.CHUNK_ROWS), path)
    with h5py.File(path, "r") as h5:
        offset = h5["sensors/right/acc"].id.get_chunk_info(1).byte_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 4096] = bytes(4096)
    path.write_bytes(bytes(data))
    check_refusal(path, FormatError, "truncated or corrupt")


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("sensors/right/acc", "lacks /sensors/right/acc"),
        ("sensors/right/gaps", "lacks /sensors/right/gaps"),
        ("sensors/right/gaps/missing_samples", "lacks /sensors/right/gaps/missing_samples"),
        ("annotations", "lacks /annotations"),
        ("annotations/label", "lacks /annotations/label"),
        ("sensors", "lacks /sensors"),
    ],
)
def test_missing_datasets(tmp_path, item, words):
    path = tmp_path / "n.h5"
    write_raw(one_sensor_night(), path)
    with h5py.File(path, "a") as h5:
        del h5[item]
    check_refusal(path, FormatError, words)


def test_missing_or_bad_attributes(tmp_path):
    path = tmp_path / "n.h5"
    write_raw(one_sensor_night(), path)
    with h5py.File(path, "a") as h5:
        del h5["sensors/right"].attrs["fs_hz"]
    check_refusal(path, FormatError, "/sensors/right lacks attribute fs_hz")
    write_raw(one_sensor_night(), path)
    with h5py.File(path, "a") as h5:
        h5["sensors/right"].attrs["fs_hz"] = -5.0
    check_refusal(path, FormatError, "/sensors/right", "sampling rate")
    write_raw(one_sensor_night(), path)
    with h5py.File(path, "a") as h5:
        h5.attrs["meta"] = "{not json"
    check_refusal(path, FormatError, "meta is not JSON")


def test_wrong_shape(tmp_path):
    path = tmp_path / "n.h5"
    write_raw(one_sensor_night(), path)
    with h5py.File(path, "a") as h5:
        del h5["sensors/right/acc"]
        h5["sensors/right/acc"] = np.zeros((10, 2), np.int16)
    check_refusal(path, FormatError, "/sensors/right/acc has shape (10, 2)")


def test_sample_count_mismatch(tmp_path):
    path = tmp_path / "n.h5"
    write_raw(one_sensor_night(), path)
    with h5py.File(path, "a") as h5:
        h5["sensors/right"].attrs["n_samples"] = 5
    check_refusal(path, FormatError, "has 3000 samples but n_samples says 5")


def test_no_sensor(tmp_path):
    path = tmp_path / "n.h5"
    write_raw(one_sensor_night(), path)
    with h5py.File(path, "a") as h5:
        del h5["sensors/right"]
    check_refusal(path, FormatError, "no sensor")


# -- atomic writing --------------------------------------------------------------------
def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_failure_mid_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "n.h5"
    old = one_sensor_night()
    write_raw(old, path)
    before = path.read_bytes()
    # Sensors are written before the annotations; a label that is not valid Unicode
    # (a lone surrogate) fails after most of the file has been written.
    bad = two_sensor_night()
    bad.annotations.loc[1, "label"] = "lm \ud800"
    with pytest.raises(InputError, match="not valid Unicode") as caught:
        write_raw(bad, path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before
    assert_same_night(old, read_raw(path))
    assert leftovers(tmp_path) == []


def test_failure_leaves_no_file_when_there_was_none(tmp_path):
    path = tmp_path / "n.h5"
    with pytest.raises(InputError, match="cannot store meta"):
        write_raw(one_sensor_night(meta={"when": object()}), path)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_samples_are_refused(tmp_path):
    night = one_sensor_night()
    night.sensor.acc_g[5, 1] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        write_raw(night, tmp_path / "n.h5")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_directory(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "n.h5"
    with pytest.raises(PmldError, match="cannot write") as caught:
        write_raw(one_sensor_night(), target)
    assert str(target) in str(caught.value)
    assert not target.parent.exists()


def test_overwrite_replaces_the_file(tmp_path):
    path = tmp_path / "n.h5"
    write_raw(one_sensor_night(), path)
    write_raw(two_sensor_night(), path)
    assert read_raw(path).sides == ["left", "right"]
    assert leftovers(tmp_path) == []
