"""CSV import and the resampler behind it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmld import resample
from pmld.errors import InputError, UsageError
from pmld.io.csvimport import ImportReport, read_accel_csv

GRAVITY = np.array([0.3, -0.2, 0.93])


def still(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return GRAVITY + rng.normal(0, 0.002, (n, 3))


def write(tmp_path, times, acc, name="accel.csv", columns=("time_s", "x", "y", "z"), fmt="%.6f"):
    frame = pd.DataFrame(np.asarray(acc, dtype=np.float64), columns=list(columns[-3:]))
    if times is not None:
        frame.insert(0, columns[0], times)
    path = tmp_path / name
    frame.to_csv(path, index=False, float_format=fmt)
    return path


def write_text(tmp_path, text, name="accel.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(kind, path, *words, **options):
    with pytest.raises(kind) as caught:
        read_accel_csv(path, **options)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for word in words:
        assert word in message, message
    return message


# -- regular files ---------------------------------------------------------------------
def test_regular_file(tmp_path):
    acc = still(1000)
    path = write(tmp_path, np.arange(1000) / 100, acc)
    night, report = read_accel_csv(path, side="left", timezone="Europe/Zurich")
    sensor = night.sensor
    assert sensor.fs_hz == 100.0 and sensor.side == "left" and night.timezone == "Europe/Zurich"
    np.testing.assert_allclose(sensor.acc_g, acc, atol=1e-6)
    assert sensor.acc_g.dtype == np.float32 and sensor.gaps.empty
    assert isinstance(report, ImportReport)
    assert report.rows_read == 1000 and not report.resampled
    assert report.output_fs_hz == 100.0 and report.effective_fs_hz == pytest.approx(100.0)
    assert report.jitter_ms == pytest.approx(0.0, abs=1e-3)
    assert report.gap_count == 0 and report.duplicates_dropped == 0
    assert report.units == "g" and report.median_magnitude_g == pytest.approx(1.0, abs=0.01)
    assert not report.start_known
    assert sensor.start_utc == datetime(2000, 1, 1, tzinfo=UTC)
    text = "\n".join(report.lines())
    assert "start: unknown" in text and "1,000 rows" in text and "100 Hz" in text
    assert night.meta["source_file"] == "accel.csv"


def test_start_utc_and_a_time_column_not_starting_at_zero(tmp_path):
    path = write(tmp_path, 5.0 + np.arange(300) / 50, still(300))
    night, report = read_accel_csv(path, start_utc="2026-03-01T23:00:00+01:00")
    assert night.sensor.start_utc == datetime(2026, 3, 1, 22, 0, 5, tzinfo=UTC)
    assert report.start_known and night.sensor.fs_hz == 50.0


def test_other_column_names_and_semicolons(tmp_path):
    acc = still(200)
    path = write(tmp_path, np.arange(200) / 25, acc, columns=("t", "ax", "ay", "az"))
    path.write_text(path.read_text().replace(",", ";"))
    night, _ = read_accel_csv(path, time_column="t", axes=("ax", "ay", "az"))
    assert night.sensor.fs_hz == 25.0
    np.testing.assert_allclose(night.sensor.acc_g, acc, atol=1e-6)


def test_no_time_column_with_a_rate(tmp_path):
    acc = still(500)
    path = write(tmp_path, None, acc)
    night, report = read_accel_csv(path, fs_hz=32)
    assert night.sensor.fs_hz == 32.0 and night.sensor.n_samples == 500
    assert "no time column" in report.time_source and not report.resampled
    refused(InputError, path, "no time column 'time_s'", "columns are: x, y, z")
    night, _ = read_accel_csv(path, time_column=None, fs_hz=10)
    assert night.sensor.duration_s == pytest.approx(50.0)


def test_iso_time_column(tmp_path):
    start = datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)  # Europe/Zurich DST change at 01:00
    zurich = ZoneInfo("Europe/Zurich")
    stamps = [(start + timedelta(seconds=i / 10)).astimezone(zurich).isoformat() for i in range(50)]
    assert stamps[0].endswith("+01:00") and stamps[-1].endswith("+02:00")
    path = write(tmp_path, stamps, still(50), columns=("time", "x", "y", "z"))
    night, report = read_accel_csv(path, time_column="time", timezone="Europe/Zurich")
    assert night.sensor.start_utc == start and report.start_known
    assert night.sensor.fs_hz == 10.0 and night.sensor.n_samples == 50


def test_iso_time_column_with_mixed_offsets(tmp_path):
    text = (
        "time,x,y,z\n2026-03-29T01:59:59.5+01:00,0,0,1\n2026-03-29T03:00:00+02:00,0,0,1\n"
        "2026-03-29T01:00:00.5Z,0,0,1\n"
    )
    night, _ = read_accel_csv(write_text(tmp_path, text), time_column="time")
    assert night.sensor.start_utc == datetime(2026, 3, 29, 0, 59, 59, 500000, tzinfo=UTC)
    assert night.sensor.fs_hz == 2.0 and night.sensor.n_samples == 3


def test_iso_times_without_offset_are_refused(tmp_path):
    text = "time,x,y,z\n2026-03-01T22:00:00,0,0,1\n2026-03-01T22:00:00.01,0,0,1\n"
    refused(InputError, write_text(tmp_path, text), "line 2", "no UTC offset", time_column="time")


def test_unix_time_column(tmp_path):
    t0 = datetime(2026, 3, 1, 21, 0, tzinfo=UTC).timestamp()
    path = write(tmp_path, t0 + np.arange(100) / 100, still(100), fmt="%.4f")
    night, report = read_accel_csv(path)
    assert night.sensor.start_utc == datetime(2026, 3, 1, 21, 0, tzinfo=UTC)
    assert any("Unix time" in note for note in report.notes)


# -- irregular times and gaps ----------------------------------------------------------
def test_jittered_times_are_resampled_by_interpolation(tmp_path):
    rng = np.random.default_rng(4)
    n = 2000
    times = np.arange(n) / 100 + rng.normal(0, 0.002, n)  # 20 % of a period
    times.sort()
    acc = np.column_stack([0.3 + 0.01 * times, -0.2 - 0.02 * times, 0.93 + 0 * times])
    path = write(tmp_path, times, acc, fmt="%.9f")
    night, report = read_accel_csv(path)
    assert report.resampled and report.output_fs_hz == 100.0
    assert report.jitter_ms == pytest.approx(2.0 * np.sqrt(2), rel=0.15)
    sensor = night.sensor
    grid_s = times[0] + np.arange(sensor.n_samples) / 100
    expected = np.column_stack([0.3 + 0.01 * grid_s, -0.2 - 0.02 * grid_s, 0.93 + 0 * grid_s])
    np.testing.assert_allclose(sensor.acc_g, expected, atol=1e-6)  # linear data: exact
    assert sensor.gaps.empty
    assert "interpolation" in "\n".join(report.lines())


def test_missing_samples_on_a_regular_grid_become_gaps(tmp_path):
    index = np.r_[0:1000, 1250:2000, 2001:2100]  # 2.5 s and one sample missing
    path = write(tmp_path, index / 100, still(index.size))
    night, report = read_accel_csv(path)
    gaps = night.sensor.gaps
    assert gaps["sample_index"].tolist() == [1000, 1750]
    assert gaps["missing_samples"].tolist() == [250, 1]
    assert not report.resampled
    assert report.gap_count == 2 and report.gap_total_s == pytest.approx(2.51)
    np.testing.assert_array_equal(night.sensor.grid_index(), index)


def test_long_gaps_in_irregular_data_are_not_interpolated(tmp_path):
    rng = np.random.default_rng(5)
    times = np.arange(3000) / 100 + rng.uniform(-0.003, 0.003, 3000)
    times[1000:] += 0.5  # shorter than max_gap_s: interpolated across
    times[2000:] += 3.0  # longer: a gap
    path = write(tmp_path, times, still(3000), fmt="%.9f")
    night, report = read_accel_csv(path, max_gap_s=1.0)
    relative = times - times[0]
    first_missing = int(np.floor(relative[1999] * 100)) + 1
    first_after = int(np.ceil(relative[2000] * 100))
    assert report.resampled and report.gap_count == 1
    gaps = night.sensor.gaps
    assert gaps["missing_samples"].tolist() == [first_after - first_missing]
    assert gaps["sample_index"].tolist() == [first_missing]
    assert night.sensor.duration_s == pytest.approx(relative[-1], abs=0.011)


def test_output_rate_can_be_chosen(tmp_path):
    path = write(tmp_path, np.arange(500) / 100, still(500))
    night, report = read_accel_csv(path, fs_hz=50)
    assert night.sensor.fs_hz == 50 and report.resampled and night.sensor.n_samples == 250
    assert any("aliasing" in note for note in report.notes)


def test_max_gap_shorter_than_the_sampling_interval(tmp_path):
    path = write(tmp_path, np.arange(50) * 10.0, still(50))
    refused(UsageError, path, "max_gap_s", "milliseconds")


# -- duplicates and order --------------------------------------------------------------
def test_exact_duplicate_rows_are_dropped(tmp_path):
    acc = still(100)
    times = np.arange(100) / 100
    rows = np.r_[0:50, 49, 50:70, 69, 69, 70:100]
    path = write(tmp_path, times[rows], acc[rows])
    night, report = read_accel_csv(path)
    assert report.duplicates_dropped == 3 and report.rows_read == 103
    np.testing.assert_allclose(night.sensor.acc_g, acc, atol=1e-6)
    assert "duplicate rows dropped: 3" in "\n".join(report.lines())


def test_duplicate_times_with_different_values_are_refused(tmp_path):
    acc = still(100)
    times = np.arange(100) / 100
    times[[40, 80]] = times[[39, 79]]
    path = write(tmp_path, times, acc)
    refused(
        InputError,
        path,
        "duplicate time 0.390 s with different values at lines 41 and 42",
        "1 more place (line 82)",
    )


def test_time_going_backwards_names_the_lines(tmp_path):
    times = np.arange(2000) / 100
    times[[1232, 1238, 1500, 1600]] = times[[1232, 1238, 1500, 1600]] - 0.05
    path = write(tmp_path, times, still(2000))
    message = refused(
        InputError,
        path,
        "time goes backwards at line 1234 (12.270 s after 12.310 s)",
        "and 3 more places (lines 1240, 1502, 1602)",
    )
    assert "sort the rows" in message


def test_line_numbers_count_blank_lines(tmp_path):
    text = "\ntime_s,x,y,z\n0,0,0,1\n\n 0.01,0,0,1\n   \n\t0.005,0,0,1\n"
    refused(InputError, write_text(tmp_path, text), "backwards at line 7")
    crlf = text.replace("\n", "\r\n").replace("0.005", "0.02") + "0.015,0,0,1"
    refused(InputError, write_text(tmp_path, crlf), "backwards at line 8")


# -- units -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("units", "factor"), [("mg", 1000.0), ("m/s2", 9.80665), ("m/s^2", 9.80665), ("g", 1.0)]
)
def test_units_are_converted_to_g(tmp_path, units, factor):
    acc = still(300)
    path = write(tmp_path, np.arange(300) / 100, acc * factor, fmt="%.8f")
    night, report = read_accel_csv(path, units=units)
    np.testing.assert_allclose(night.sensor.acc_g, acc, atol=1e-6)
    assert report.median_magnitude_g == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    ("factor", "given", "hint"),
    [
        (9.80665, "g", "looks like m/s2: pass --units m/s2"),
        (1000.0, "g", "looks like mg: pass --units mg"),
        (1.0, "mg", "looks like g: pass --units g"),
        (1.0, "m/s2", "looks like g: pass --units g"),
    ],
)
def test_wrong_units_are_detected(tmp_path, factor, given, hint):
    path = write(tmp_path, np.arange(300) / 100, still(300) * factor)
    refused(UsageError, path, hint, units=given)


def test_data_without_gravity(tmp_path):
    path = write(tmp_path, np.arange(300) / 100, still(300) * 0.01)
    refused(InputError, path, "not about 1 g")
    night, _ = read_accel_csv(path, check_units=False)
    assert night.sensor.n_samples == 300


def test_unknown_units_option(tmp_path):
    path = write(tmp_path, np.arange(30) / 10, still(30))
    with pytest.raises(UsageError, match="unknown units 'furlong'"):
        read_accel_csv(path, units="furlong")


# -- bad files -------------------------------------------------------------------------
def test_missing_file(tmp_path):
    refused(InputError, tmp_path / "absent.csv", "no such file")


def test_empty_file_and_header_only(tmp_path):
    refused(InputError, write_text(tmp_path, ""), "is empty")
    refused(InputError, write_text(tmp_path, "\n  \n"), "is empty")
    refused(InputError, write_text(tmp_path, "time_s,x,y,z\n"), "header but no data rows")


def test_missing_columns_are_listed(tmp_path):
    path = write_text(tmp_path, "t,ax,ay,az\n0,0,0,1\n0.1,0,0,1\n")
    refused(InputError, path, "no column 'x', 'y', 'z'", "columns are: t, ax, ay, az")
    refused(
        InputError,
        path,
        "no time column 'time_s'",
        "columns are: t, ax, ay, az",
        axes=("ax", "ay", "az"),
    )


def test_file_without_a_header(tmp_path):
    path = write_text(tmp_path, "0,0,0,1\n0.01,0,0,1\n")
    refused(InputError, path, "columns are: 0, 0, 0, 1", "needs a header line")


def test_text_in_a_number_column(tmp_path):
    text = "time_s,x,y,z\n0,0,0,1\n0.01,0,0,1\n0.02,0,oops,1\n0.03,0,0,1\n0.04,x,0,1\n"
    refused(
        InputError,
        write_text(tmp_path, text),
        "line 4, column 'y': 'oops' is not a number",
        "1 more line with text (line 6)",
    )


def test_text_in_the_time_column(tmp_path):
    text = "time_s,x,y,z\n0,0,0,1\n0.01,0,0,1\nnoon,0,0,1\n"
    refused(
        InputError, write_text(tmp_path, text), "line 4, column 'time_s': 'noon' is not a number"
    )


def test_empty_and_nan_values_name_the_lines(tmp_path):
    text = "time_s,x,y,z\n0,0,0,1\n0.01,,0,1\n0.02,0,0,1\n0.03,0,NaN,1\n,0,0,1\n0.05,0,0,inf\n"
    refused(
        InputError,
        write_text(tmp_path, text),
        "line 3, column 'x': empty, NaN or infinite value",
        "3 more lines (lines 5, 6, 7)",
    )


def test_fewer_than_two_samples(tmp_path):
    refused(InputError, write_text(tmp_path, "time_s,x,y,z\n0,0,0,1\n"), "at least 2")
    refused(InputError, write_text(tmp_path, "time_s,x,y,z\n0,0,0,1\n0,0,0,1\n"), "at least 2")


def test_not_text(tmp_path):
    path = tmp_path / "accel.csv"
    path.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe\x00\x00" * 20)
    refused(InputError, path, "not UTF-8")


def test_bad_options(tmp_path):
    path = write(tmp_path, np.arange(30) / 10, still(30))
    for options in (
        {"fs_hz": -1},
        {"max_gap_s": 0},
        {"side": "middle"},
        {"axes": ("x", "x", "z")},
        {"timezone": "Mars/Olympus"},
        {"start_utc": "2026-03-01T22:00:00"},
    ):
        with pytest.raises(UsageError):
            read_accel_csv(path, **options)


# -- the resampler ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rate", "grid"), [(99.7, 100.0), (51.5, 52.0), (127.0, 128.0), (37.1234, 37.12), (12.49, 12.5)]
)
def test_grid_rate(rate, grid):
    assert resample.grid_rate_hz(rate) == grid


def test_effective_rate_ignores_gaps():
    times = np.r_[np.arange(100) / 50, 100 + np.arange(100) / 50]
    assert resample.effective_rate_hz(times) == pytest.approx(50.0)
    assert resample.jitter_s(times, max_gap_s=1.0) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(0.002, 0.03), min_size=2, max_size=300),
    long_gaps=st.lists(st.tuples(st.integers(0, 299), st.floats(1.01, 5.0)), max_size=4),
    fs_hz=st.sampled_from([50.0, 100.0, 128.0]),
    slope=st.floats(-2, 2),
)
def test_resample_properties(steps, long_gaps, fs_hz, slope):
    steps = np.asarray(steps)
    for where, length in long_gaps:
        steps[where % steps.size] = length
    times = 3.0 + np.concatenate([[0.0], np.cumsum(steps)])
    values = np.column_stack([slope * times, 1.0 + 0 * times])
    out = resample.resample_uniform(times, values, fs_hz, max_gap_s=1.0)
    grid = np.arange(out.values.shape[0] + out.missing_samples)
    present = np.ones(grid.size, dtype=bool)
    for index, missing in zip(out.gap_index, out.gap_missing, strict=True):
        start = index + out.gap_missing[out.gap_index < index].sum()
        present[start : start + missing] = False
    grid_s = times[0] + grid[present] / fs_hz
    # Linear data are reproduced exactly; nothing is extrapolated past the last sample.
    np.testing.assert_allclose(out.values[:, 0], slope * grid_s, atol=1e-9)
    assert grid_s[-1] <= times[-1] + 1e-9 and out.start_s == times[0]
    # A grid point is missing exactly when it lies inside an interval longer than 1 s.
    missing_s = times[0] + grid[~present] / fs_hz
    left = np.searchsorted(times, missing_s, side="right") - 1
    assert np.all(np.diff(times)[left] > 1.0)
    inside_long = np.zeros(grid.size, dtype=bool)
    for i in np.flatnonzero(np.diff(times) > 1.0):
        inside_long |= (times[0] + grid / fs_hz > times[i] + 1e-9) & (
            times[0] + grid / fs_hz < times[i + 1] - 1e-9
        )
    assert np.array_equal(~present, inside_long)


@settings(max_examples=40, deadline=None)
@given(
    index=st.lists(st.integers(0, 5000), min_size=2, max_size=200, unique=True),
    fs_hz=st.sampled_from([25.0, 100.0, 128.0]),
)
def test_samples_on_the_grid_are_placed_not_interpolated(index, fs_hz):
    index = np.sort(np.asarray(index))
    index = index - index[0]
    times = np.round(10.0 + index / fs_hz, 3)  # timestamps written in milliseconds
    values = np.random.default_rng(0).normal(size=(index.size, 3))
    out = resample.to_grid(times, values, fs_hz)
    assert not out.interpolated
    np.testing.assert_array_equal(out.values, values)
    missing = np.diff(index) - 1
    assert out.gap_missing.tolist() == missing[missing > 0].tolist()
    assert out.gap_index.tolist() == (np.flatnonzero(missing > 0) + 1).tolist()
