"""Device files (Axivity .cwa, ActiGraph .gt3x, GENEActiv .bin) into nights.

The inputs are written by tests/devicefiles.py from the public format descriptions and
read back through actfast, the library pmld uses: the samples must come back as the
writer stored them, at the device's own times, with its metadata, gaps kept, the clock
converted with the offset at the start (DST nights), multi-day files cut into
noon-to-noon nights, and damaged files either read in part with a notice or refused in
one line. The CLI runs as a user runs it (subprocess), its commands side by side.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import devicefiles as dev
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmld.errors import FormatError, InputError, UsageError
from pmld.io.devices import (
    block_times_ns,
    detect_format,
    device_utc_offset,
    noon_windows,
    read_device,
    read_device_night,
)
from pmld.io.nightfile import open_night
from pmld.io.raw import read_raw, write_raw

pytest.importorskip("actfast")

_SCRIPT = shutil.which("pmld", path=str(Path(sys.executable).parent))
PMLD = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "pmld.cli"]
LONDON = "Europe/London"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def no_gaps(sensor) -> bool:
    return len(sensor.gaps) == 0


# -- Axivity CWA -----------------------------------------------------------------------
@pytest.mark.parametrize(("packed", "fractional"), [(True, True), (False, False)])
def test_cwa_samples_times_and_metadata_come_back(tmp_path, packed, fractional):
    fs = 100
    acc = dev.ankle_signal(fs * 600, fs, seed=1)
    path = tmp_path / "night.cwa"
    stored = dev.write_cwa(
        path, acc, datetime(2024, 1, 15, 22, 30), fs_hz=fs, packed=packed,
        fractional=fractional, device_id=43123, session_id=7, firmware=45,
    )
    result = read_device(path, timezone="Europe/Zurich", side="left")
    night = result.nights[0]
    sensor = night.sensor
    assert len(result.nights) == 1
    np.testing.assert_array_equal(sensor.acc_g, stored.astype(np.float32))
    # The format's quantisation: 1/256 g, coarser by the shared exponent when packed.
    assert np.max(np.abs(stored - acc)) <= (8 if packed else 0.5) / 256
    assert sensor.start_utc == utc("2024-01-15T21:30:00")  # 22:30 CET = 21:30 UTC
    assert sensor.fs_hz == fs and no_gaps(sensor) and sensor.side == "left"
    assert sensor.n_samples == len(acc)
    assert sensor.device["serial"] == "43123" and sensor.device["model"] == "Axivity AX3"
    assert sensor.device["firmware"] == "45" and sensor.device["range_g"] == 8.0
    assert sensor.device["session_id"] == "7"
    assert night.timezone == "Europe/Zurich" and night.meta["night_date"] == "2024-01-15"
    assert night.meta["source_format"] == "cwa" and night.meta["resampled"] == "no"
    assert result.report.effective_fs_hz == pytest.approx(fs, rel=1e-5)


def test_cwa_gap_is_kept_and_never_filled(tmp_path):
    fs = 50
    acc = dev.ankle_signal(fs * 300, fs, seed=2)
    hole_at = 120 * 50  # a block boundary (packed: 120 samples a block)
    times = dev.sample_times_ns(datetime(2024, 2, 1, 23, 0), len(acc), fs, {hole_at: 90.0})
    path = tmp_path / "gap.cwa"
    stored = dev.write_cwa(path, acc, datetime(2024, 2, 1, 23, 0), fs_hz=fs, times_ns=times)
    result = read_device(path, timezone="UTC")
    sensor = result.nights[0].sensor
    assert sensor.gaps["sample_index"].tolist() == [hole_at]
    assert sensor.gaps["missing_samples"].tolist() == [90 * fs]
    np.testing.assert_array_equal(sensor.acc_g, stored.astype(np.float32))
    assert result.report.gap_count == 1 and result.report.gap_total_s == pytest.approx(90)


def test_cwa_device_rate_off_the_configured_rate_keeps_device_time(tmp_path):
    """An AX3 configured for 100 Hz that samples at 99 Hz: the block times say so."""
    fs, true_fs = 100, 99.0
    n = int(true_fs * 600)
    t = np.arange(n) / true_fs
    acc = np.column_stack([0.5 * np.sin(2 * np.pi * t / 20), np.full(n, -0.2), np.full(n, 0.9)])
    start = datetime(2024, 3, 4, 22, 0)
    path = tmp_path / "slow.cwa"
    dev.write_cwa(path, acc, start, fs_hz=fs, times_ns=dev.sample_times_ns(start, n, true_fs))
    result = read_device(path, timezone="UTC")
    sensor = result.nights[0].sensor
    assert result.report.effective_fs_hz == pytest.approx(true_fs, rel=2e-4)
    assert result.nights[0].meta["resampled"] == "yes"
    assert sensor.fs_hz == fs
    # The recording lasts what the device's clock says (not n / 100 s) ...
    assert sensor.duration_s == pytest.approx(n / true_fs, abs=0.03)
    # ... and each grid sample is the signal at its time (quantised to 1/256 g).
    grid_t = sensor.times_s()
    np.testing.assert_allclose(
        sensor.acc_g[:, 0], 0.5 * np.sin(2 * np.pi * grid_t / 20), atol=4 / 256
    )


def test_block_times_spread_samples_up_to_the_next_block():
    step = 10_000_000  # 100 Hz
    # Blocks of 4 samples, each 4.1 periods after the previous: a 97.6 Hz device.
    starts = np.arange(5) * 41_000_000
    times = (starts[:, None] + np.arange(4) * step).ravel()
    spread, effective = block_times_ns(times, step)
    np.testing.assert_allclose(np.diff(spread), 10_250_000)
    assert effective == pytest.approx(10_250_000)
    # A block 60 s later is a gap: its predecessor keeps the configured period.
    times[-4:] += 60_000_000_000
    spread, _ = block_times_ns(times, step)
    np.testing.assert_allclose(np.diff(spread[12:16]), step)
    np.testing.assert_allclose(np.diff(spread[:13]), 10_250_000)


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(
        st.tuples(*[st.floats(-7.99, 7.99, allow_nan=False)] * 3), min_size=2, max_size=300
    ),
    packed=st.booleans(),
)
def test_cwa_any_values_round_trip_within_the_quantisation(tmp_path_factory, values, packed):
    acc = np.array(values)
    path = tmp_path_factory.mktemp("cwa") / "p.cwa"
    stored = dev.write_cwa(path, acc, datetime(2024, 5, 1, 22, 0), fs_hz=50, packed=packed)
    sensor = read_device(path, timezone="UTC").nights[0].sensor
    np.testing.assert_array_equal(sensor.acc_g, stored.astype(np.float32))
    exponent_step = np.where(np.abs(acc).max(axis=1) >= 2, 8, 1) / 256 if packed else 1 / 256
    assert np.all(np.abs(stored - acc).max(axis=1) <= exponent_step + 1e-12)


# -- ActiGraph GT3X --------------------------------------------------------------------
def test_gt3x_samples_metadata_and_missing_seconds(tmp_path):
    fs = 30
    acc = dev.ankle_signal(fs * 600, fs, seed=3)
    path = tmp_path / "ag.gt3x"
    stored = dev.write_gt3x(
        path, acc, datetime(2024, 6, 10, 22, 0), fs_hz=fs, missing_seconds=range(100, 130),
        lsb_per_g=341.0, range_g=6.0, serial="NEO1C16110020", device_type="GT3XPlus",
        time_zone="02:00:00",
    )
    result = read_device(path, timezone="Europe/Berlin")
    sensor = result.nights[0].sensor
    np.testing.assert_allclose(sensor.acc_g, stored, atol=1e-6)
    assert sensor.start_utc == utc("2024-06-10T20:00:00")  # CEST
    assert sensor.gaps["sample_index"].tolist() == [100 * fs]
    assert sensor.gaps["missing_samples"].tolist() == [30 * fs]
    assert sensor.device["serial"] == "NEO1C16110020"
    assert sensor.device["model"] == "ActiGraph GT3XPlus"
    assert sensor.device["range_g"] == 6.0 and sensor.device["lsb_per_g"] == 341.0
    # Through a pmld-raw file: 16 x 341 counts per g keep the 12-bit samples exactly.
    write_raw(result.nights[0], tmp_path / "ag.h5")
    back = read_raw(tmp_path / "ag.h5").sensor
    np.testing.assert_array_equal(back.acc_g, sensor.acc_g)
    assert back.gaps.equals(sensor.gaps)
    assert not any("offset" in note for note in result.report.notes)  # +02:00 agrees


def test_gt3x_without_tz_uses_the_offset_it_records(tmp_path):
    path = tmp_path / "ag.gt3x"
    dev.write_gt3x(path, dev.ankle_signal(30 * 60, 30), datetime(2024, 1, 8, 22, 0),
                   time_zone="-05:00:00")
    result = read_device(path)
    night = result.nights[0]
    assert night.sensor.start_utc == utc("2024-01-09T03:00:00")
    assert night.timezone == "Etc/GMT+5"  # POSIX sign: UTC-05:00
    assert night.meta["night_date"] == "2024-01-08"
    assert any("offset the file records" in note for note in result.report.notes)


# -- GENEActiv BIN ---------------------------------------------------------------------
def test_geneactiv_calibrated_samples_and_metadata(tmp_path):
    fs = 100
    acc = dev.ankle_signal(fs * 900, fs, seed=4)
    path = tmp_path / "ga.bin"
    stored = dev.write_geneactiv(path, acc, datetime(2024, 7, 1, 22, 15), fs_hz=fs,
                                 time_zone="GMT +01:00", serial="054321")
    result = read_device(path, timezone=LONDON, side="right")
    sensor = result.nights[0].sensor
    np.testing.assert_allclose(sensor.acc_g, stored, atol=2e-6)  # float32 of the reader
    # The format's quantisation: 100 / gain g (about 4 mg).
    assert np.max(np.abs(stored - acc)) <= 0.5 * 100 / 25010 + 1e-9
    assert sensor.start_utc == utc("2024-07-01T21:15:00")
    assert no_gaps(sensor) and sensor.n_samples == len(acc)
    assert sensor.device["serial"] == "054321" and sensor.device["range_g"] == 8.0
    assert sensor.device["model"] == "GENEActiv 1.2"
    assert sensor.device["location"] == "left ankle"


def test_format_comes_from_content_not_name(tmp_path):
    acc = dev.ankle_signal(3000, 100)
    dev.write_geneactiv(tmp_path / "export.csv", acc, datetime(2024, 7, 1, 22, 0))
    dev.write_cwa(tmp_path / "night.dat", acc, datetime(2024, 7, 1, 22, 0))
    dev.write_gt3x(tmp_path / "x.zip", dev.ankle_signal(300, 30), datetime(2024, 7, 1, 22, 0))
    assert detect_format(tmp_path / "export.csv") == "geneactiv"
    assert detect_format(tmp_path / "night.dat") == "cwa"
    assert detect_format(tmp_path / "x.zip") == "gt3x"
    (tmp_path / "a.csv").write_text("time_s,x,y,z\n0,0,0,1\n")
    assert detect_format(tmp_path / "a.csv") == "csv"
    (tmp_path / "blob.dat").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(FormatError, match="unrecognised content.*cwa.*gt3x.*bin.*CSV"):
        detect_format(tmp_path / "blob.dat")


# -- clocks and DST --------------------------------------------------------------------
def test_offset_at_the_start_and_the_odd_local_times():
    offset, note = device_utc_offset(datetime(2024, 10, 26, 21, 0), LONDON)
    assert offset == timedelta(hours=1) and note is None
    offset, note = device_utc_offset(datetime(2024, 10, 27, 1, 30), LONDON)  # occurs twice
    assert offset == timedelta(hours=1) and "twice" in note
    offset, note = device_utc_offset(datetime(2024, 3, 31, 1, 30), LONDON)  # skipped
    assert offset == timedelta(0) and "does not exist" in note


@pytest.mark.parametrize(
    ("start", "hours", "start_utc", "night_date"),
    [
        # Autumn: configured in BST; the device clock keeps BST after 02:00 BST.
        (datetime(2024, 10, 26, 21, 0), 10, "2024-10-26T20:00:00", "2024-10-26"),
        # Spring: configured in GMT; the device clock keeps GMT after 01:00 GMT.
        (datetime(2024, 3, 30, 22, 0), 9, "2024-03-30T22:00:00", "2024-03-30"),
    ],
)
def test_dst_night_has_no_gap_or_overlap(tmp_path, start, hours, start_utc, night_date):
    fs = 25
    n = fs * 3600 * hours
    path = tmp_path / "dst.cwa"
    stored = dev.write_cwa(path, dev.ankle_signal(n, fs), start, fs_hz=fs)
    result = read_device(path, timezone=LONDON)
    night = result.nights[0]
    sensor = night.sensor
    assert sensor.start_utc == utc(start_utc)
    assert no_gaps(sensor) and sensor.n_samples == n  # no fake hour missing or doubled
    assert night.duration_s == pytest.approx(hours * 3600, abs=1e-3)
    np.testing.assert_array_equal(sensor.acc_g, stored.astype(np.float32))
    assert night.meta["night_date"] == night_date
    assert any("daylight saving" in note for note in result.report.notes)


# -- multi-day files -------------------------------------------------------------------
@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """66 h at 12.5 Hz from Friday 25 Oct 2024 15:00 BST, across the end of BST."""
    folder = tmp_path_factory.mktemp("week")
    fs = 12.5
    n = int(fs * 3600 * 66)
    path = folder / "week.cwa"
    stored = dev.write_cwa(path, dev.ankle_signal(n, fs, seed=5), datetime(2024, 10, 25, 15),
                           fs_hz=fs)
    return path, stored, fs


def test_multi_day_file_splits_into_noon_to_noon_nights(week):
    path, stored, fs = week
    result = read_device(path, timezone=LONDON)
    dates = [night.meta["night_date"] for night in result.nights]
    assert dates == ["2024-10-25", "2024-10-26", "2024-10-27"]
    assert [night.meta["window_h"] for night in result.nights] == [24.0, 25.0, 24.0]
    first, middle, last = (night.sensor for night in result.nights)
    assert first.start_utc == utc("2024-10-25T14:00:00")  # 15:00 BST
    assert middle.start_utc == utc("2024-10-26T11:00:00")  # noon BST
    assert last.start_utc == utc("2024-10-27T12:00:00")  # noon GMT
    assert middle.n_samples == 25 * 3600 * fs  # the 25 h night, whole
    # Every sample in exactly one night, in order, nothing lost or doubled.
    joined = np.concatenate([s.acc_g for s in (first, middle, last)])
    np.testing.assert_array_equal(joined, stored.astype(np.float32))
    assert first.end_utc == middle.start_utc and middle.end_utc == last.start_utc


def test_spring_window_lasts_23_hours():
    windows = noon_windows(utc("2024-03-30T13:00:00"), utc("2024-03-31T13:00:00"), LONDON)
    assert windows[0][0] == "2024-03-30"
    assert (windows[0][2] - windows[0][1]) == timedelta(hours=23)


def test_split_none_keeps_one_night_and_open_night_refuses_many(week):
    path, stored, _ = week
    whole = read_device(path, timezone=LONDON, split="none").nights
    assert len(whole) == 1 and whole[0].sensor.n_samples == len(stored)
    with pytest.raises(FormatError, match="3 nights.*pmld import week.cwa -o DIR"):
        open_night(path, timezone=LONDON)
    with pytest.raises(FormatError, match="3 nights"):
        read_device_night(path)


def test_empty_window_is_skipped_with_a_note(tmp_path):
    fs = 6.25
    start = datetime(2024, 1, 10, 20, 0)
    n = int(fs * 3600 * 40)  # 40 h of samples with 30 h missing in the middle: 70 h
    hole = int(fs * 3600 * 14)
    hole -= hole % 120
    times = dev.sample_times_ns(start, n, fs, {hole: 30 * 3600.0})
    path = tmp_path / "hole.cwa"
    dev.write_cwa(path, dev.ankle_signal(n, fs), start, fs_hz=fs, times_ns=times)
    result = read_device(path, timezone="UTC")
    dates = [night.meta["night_date"] for night in result.nights]
    assert dates == ["2024-01-10", "2024-01-12", "2024-01-13"]
    assert any("2024-01-11: no data" in note for note in result.report.notes)


# -- damaged files (Python API) --------------------------------------------------------
def test_truncated_cwa_keeps_the_intact_blocks(tmp_path):
    fs = 100
    acc = dev.ankle_signal(fs * 120, fs)
    path = tmp_path / "cut.cwa"
    stored = dev.write_cwa(path, acc, datetime(2024, 1, 1, 22, 0), fs_hz=fs)
    data = path.read_bytes()
    path.write_bytes(data[: 1024 + 512 * 50 + 200])  # 50 whole blocks and a piece
    result = read_device(path, timezone="UTC")
    sensor = result.nights[0].sensor
    np.testing.assert_array_equal(sensor.acc_g, stored[: 50 * 120].astype(np.float32))
    assert any("ends inside a data block" in note for note in result.report.notes)


def test_corrupt_cwa_block_becomes_a_gap(tmp_path):
    fs = 100
    path = tmp_path / "bad.cwa"
    stored = dev.write_cwa(path, dev.ankle_signal(fs * 120, fs), datetime(2024, 1, 1, 22), fs_hz=fs)
    data = bytearray(path.read_bytes())
    data[1024 + 512 * 10 + 100] ^= 0xFF  # one flipped byte: checksum fails
    path.write_bytes(bytes(data))
    result = read_device(path, timezone="UTC")
    sensor = result.nights[0].sensor
    assert sensor.gaps["sample_index"].tolist() == [10 * 120]
    assert sensor.gaps["missing_samples"].tolist() == [120]
    keep = np.r_[0 : 10 * 120, 11 * 120 : len(stored)]
    np.testing.assert_array_equal(sensor.acc_g, stored[keep].astype(np.float32))
    assert any("1 damaged data block" in note for note in result.report.notes)


def test_truncated_gt3x_is_salvaged(tmp_path):
    fs = 30
    path = tmp_path / "cut.gt3x"
    stored = dev.write_gt3x(path, dev.ankle_signal(fs * 1200, fs), datetime(2024, 1, 1, 22),
                            fs_hz=fs)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    result = read_device(path, timezone="UTC")
    sensor = result.nights[0].sensor
    assert 0 < sensor.n_samples < len(stored)
    np.testing.assert_allclose(sensor.acc_g, stored[: sensor.n_samples], atol=1e-6)
    notes = " ".join(result.report.notes)
    assert "damaged (truncated?)" in notes and "info.txt is lost" in notes


def test_truncated_geneactiv_keeps_the_whole_pages(tmp_path):
    path = tmp_path / "cut.bin"
    stored = dev.write_geneactiv(path, dev.ankle_signal(100 * 60, 100), datetime(2024, 1, 1, 22))
    text = path.read_bytes()
    path.write_bytes(text[: len(text) - 5000])  # into the last page's data
    result = read_device(path, timezone="UTC")
    sensor = result.nights[0].sensor
    assert sensor.n_samples < len(stored)
    np.testing.assert_allclose(sensor.acc_g, stored[: sensor.n_samples], atol=2e-6)
    assert result.report.notes and "page" in " ".join(result.report.notes)


@pytest.mark.parametrize(
    ("name", "content", "error", "words"),
    [
        ("empty.cwa", b"", InputError, "empty"),
        ("short.cwa", b"MD\xfc\x03" + bytes(300), InputError, "header is incomplete"),
        ("header.cwa", b"MD\xfc\x03" + bytes(1020), InputError, "no data block"),
        ("notzip.gt3x", b"PK\x03\x04" + bytes(100), FormatError, "without log.bin"),
        ("head.bin", b"Device Identity\r\nDevice Type:GENEActiv\r\n", InputError, "header"),
        ("noise.bin", bytes(range(256)) * 8, FormatError, "not a GENEActiv BIN"),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path, name, content, error, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error, match=words) as caught:
        read_device(path)
    assert "\n" not in str(caught.value) and name in str(caught.value)


def test_zip_without_log_bin_is_not_gt3x(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "photos.gt3x", "w") as archive:
        archive.writestr("a.txt", "hello")
    with pytest.raises(FormatError, match="without log.bin"):
        read_device(tmp_path / "photos.gt3x")


def test_options_are_checked():
    with pytest.raises(UsageError, match="time zone"):
        read_device("x.cwa", timezone="Mars/Olympus")
    with pytest.raises(UsageError, match="split"):
        read_device("x.cwa", split="midnight")


# -- the command line ------------------------------------------------------------------
def run(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PMLD, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300,
        env=env,
    )


def succeeded(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def fails(result, name, *words):
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pmld: ") and name in lines[0], lines[0]
    for word in words:
        assert word.lower() in lines[0].lower(), f"{word!r} not in {lines[0]}"
    return lines[0]


@pytest.fixture(scope="module")
def cli(tmp_path_factory, week):
    """Write the inputs, then run every command side by side."""
    work = tmp_path_factory.mktemp("cli")
    shutil.copy(week[0], work / "week.cwa")
    fs = 50
    night_acc = dev.ankle_signal(fs * 1800, fs, seed=6)
    stored = dev.write_cwa(work / "night.cwa", night_acc, datetime(2024, 10, 26, 23, 0),
                           fs_hz=fs)
    dev.write_gt3x(work / "ag.gt3x", dev.ankle_signal(30 * 600, 30), datetime(2024, 3, 1, 22))
    dev.write_geneactiv(work / "ga.bin", dev.ankle_signal(100 * 300, 100),
                        datetime(2024, 3, 1, 22), time_zone="GMT +00:00")
    (work / "noise.dat").write_bytes(bytes(range(256)) * 8)
    data = (work / "night.cwa").read_bytes()
    (work / "cut.cwa").write_bytes(data[: len(data) - 300])
    (work / "empty.cwa").write_bytes(b"")
    (work / "a.csv").write_text("time_s,x,y,z\n" + "".join(
        f"{k / 25:.2f},0.01,-0.02,0.99\n" for k in range(500)))
    # actfast hidden: a package of that name whose import fails, first on the path.
    fake = work / "no_actfast" / "actfast"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named actfast')\n")
    hidden = {**os.environ, "PYTHONPATH": str(work / "no_actfast")}
    jobs = {
        "night": (["import", "night.cwa", "-o", "night.h5", "--tz", LONDON, "--side", "left"],
                  None),
        "week dir": (["import", "week.cwa", "-o", "nights", "--tz", LONDON], None),
        "week file": (["import", "week.cwa", "-o", "week.h5", "--tz", LONDON], None),
        "week none": (["import", "week.cwa", "-o", "whole.h5", "--tz", LONDON, "--split",
                       "none"], None),
        "gt3x": (["import", "ag.gt3x", "-o", "ag.h5", "--range-g", "4"], None),
        "bin": (["import", "ga.bin", "-o", "ga.h5"], None),
        "info": (["info", "night.cwa"], None),
        "cut": (["import", "cut.cwa", "-o", "cut.h5"], None),
        "empty": (["import", "empty.cwa", "-o", "e.h5"], None),
        "noise": (["import", "noise.dat", "-o", "n.h5"], None),
        "csv option": (["import", "night.cwa", "-o", "x.h5", "--units", "mg"], None),
        "csv": (["import", "a.csv", "-o", "a.h5"], None),
        "no actfast": (["import", "night.cwa", "-o", "y.h5"], hidden),
    }
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {
            key: pool.submit(run, *args, cwd=work, env=env) for key, (args, env) in jobs.items()
        }
        results = {key: future.result() for key, future in futures.items()}
    return work, results, stored


def test_cli_imports_a_night(cli):
    work, results, stored = cli
    out = succeeded(results["night"]).stdout
    assert "Axivity CWA" in out and "effective 50.000 Hz" in out and "wrote night.h5" in out
    night = read_raw(work / "night.h5")
    assert night.meta["night_date"] == "2024-10-26" and night.timezone == LONDON
    assert night.sensor.side == "left"
    assert night.sensor.start_utc == utc("2024-10-26T22:00:00")
    np.testing.assert_array_equal(night.sensor.acc_g, stored.astype(np.float32))


def test_cli_writes_one_file_per_night(cli, week):
    work, results, _ = cli
    out = succeeded(results["week dir"]).stdout
    names = sorted(p.name for p in (work / "nights").iterdir())
    assert names == [f"week.2024-10-{d}.h5" for d in (25, 26, 27)]
    middle = read_raw(work / "nights" / "week.2024-10-26.h5")
    assert middle.meta["night_date"] == "2024-10-26" and middle.meta["window_h"] == 25.0
    assert middle.sensor.n_samples == 25 * 3600 * week[2]
    assert "daylight saving" in out
    fails(results["week file"], "week.cwa", "3 nights", "-o", "--split none")
    succeeded(results["week none"])
    assert read_raw(work / "whole.h5").sensor.n_samples == len(week[1])


def test_cli_other_formats_and_options(cli):
    work, results, _ = cli
    out = succeeded(results["gt3x"]).stdout
    assert "ActiGraph GT3X" in out and "UTC offset +01:00 (recorded in the file)" in out
    gt3x = read_raw(work / "ag.h5")
    assert gt3x.sensor.device["range_g"] == 4.0
    assert gt3x.sensor.device["range_g_recorded"] == 8.0
    succeeded(results["bin"])
    assert read_raw(work / "ga.h5").sensor.device["model"] == "GENEActiv 1.2"
    info = succeeded(results["info"])
    assert "Axivity CWA file read directly" in info.stderr and "2024-10-26" in info.stderr
    csv = succeeded(results["csv"])
    assert "wrote a.h5" in csv.stdout and read_raw(work / "a.h5").timezone == "UTC"
    fails(results["csv option"], "--units", "CSV files only")


def test_cli_bad_input(cli):
    _, results, _ = cli
    cut = succeeded(results["cut"])
    assert "ends inside a data block" in cut.stdout
    fails(results["empty"], "empty.cwa", "empty")
    fails(results["noise"], "noise.dat", "unrecognised", ".cwa", ".gt3x", ".bin", "CSV")
    fails(results["no actfast"], "actfast", 'pip install "pmld[devices]"')
