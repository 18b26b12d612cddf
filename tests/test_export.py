"""Exports (pmld.io.export, ``pmld export``): BIDS events.tsv, CSV and EDF+.

Real files made by the real code (simulated nights, write_raw, analyze -> summary),
read back with pmld's own reference reader and with two independent EDF readers:
edfio (Python) and pyedflib (EDFlib, C).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import h5py
import numpy as np
import pandas as pd
import pytest

from pmld.errors import FormatError, InputError, UsageError
from pmld.io.export import (
    COLUMNS,
    GAP_LABEL,
    TRIAL_TYPES,
    edf_record_duration,
    event_table,
    export,
    export_raw_edf,
    format_for,
)
from pmld.io.raw import write_raw
from pmld.io.reference import read_reference
from pmld.io.summary import read_summary
from pmld.night import Night, Sensor
from pmld.pipeline import analyze
from pmld.simulate import simulate_night

edfio = pytest.importorskip("edfio")
pyedflib = pytest.importorskip("pyedflib")

ZONE = "Europe/Zurich"
#: The labels the reference reader's table may not know yet; everything else must map.
EXTRA: dict[str, str] = {}  # every exported label is in the reader's table


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A severe two-ankle night (30 min, 25 Hz), its raw file and its summary."""
    folder = tmp_path_factory.mktemp("export")
    night = simulate_night(
        "severe", hours=0.5, fs_hz=25, seed=3, bilateral=True, timezone=ZONE,
        start_utc="2026-01-05T22:30:00+00:00",
    )
    raw = folder / "night.h5"
    write_raw(night, raw)
    summary = folder / "night.plm.h5"
    analyze(night).to_hdf5(summary)
    return {"dir": folder, "night": night, "raw": raw, "summary": summary,
            "sum": read_summary(summary)}


def _lms(summary) -> pd.DataFrame:
    events = summary.events
    return events[events["kind"] == "lm"].sort_values("onset_s").reset_index(drop=True)


def _pyedf(path):
    reader = pyedflib.EdfReader(str(path))
    try:
        onsets, durations, texts = reader.readAnnotations()
        signals = [reader.readSignal(k) for k in range(reader.signals_in_file)]
        info = {
            "labels": reader.getSignalLabels(),
            "fs": list(reader.getSampleFrequencies()),
            "start": reader.getStartdatetime(),
            "dims": [reader.getPhysicalDimension(k) for k in range(reader.signals_in_file)],
            "pmin": [reader.getPhysicalMinimum(k) for k in range(reader.signals_in_file)],
            "pmax": [reader.getPhysicalMaximum(k) for k in range(reader.signals_in_file)],
        }
    finally:
        reader.close()
    return onsets, durations, list(texts), signals, info


# -- format choice -------------------------------------------------------------------
def test_format_from_extension_and_option():
    assert format_for("a_events.tsv") == "bids"
    assert format_for("a.EDF") == "edf"
    assert format_for("a.csv") == "csv"
    assert format_for("a.txt", "CSV") == "csv"
    with pytest.raises(UsageError, match="cannot tell the export format"):
        format_for("a.txt")
    with pytest.raises(UsageError, match="unknown export format 'json'"):
        format_for("a.tsv", "json")


def test_record_duration_whole_samples():
    assert edf_record_duration([100.0]) == 1
    assert edf_record_duration([12.5, 25.0]) == 2
    assert edf_record_duration([31.25]) == 4
    with pytest.raises(InputError, match="resample"):
        edf_record_duration([99.987])


# -- the event table -------------------------------------------------------------------
def test_event_table_classes_follow_the_scoring(files):
    summary = files["sum"]
    table = event_table(summary)
    assert list(table.columns) == list(COLUMNS)
    assert np.all(np.diff(table["onset"].to_numpy(float)) >= 0)
    rows = table[table["source"] == "pmld"]
    lm_rows = rows[rows["trial_type"] != "PLM series"].reset_index(drop=True)
    events = summary.events.sort_values("onset_s", kind="stable").reset_index(drop=True)
    assert len(lm_rows) == len(events)
    # each class from the summary's own flags
    for row, event in zip(lm_rows.itertuples(), events.itertuples(), strict=True):
        assert row.onset == pytest.approx(event.onset_s)
        if event.kind == "posture":
            assert row.trial_type == "posture change"
        elif event.plm:
            assert row.trial_type == "PLM" and row.series_id == event.series_id
        elif event.candidate:
            assert row.trial_type == ("CLM short IMI" if event.short_imi else "CLM")
        else:
            assert row.trial_type == "LM"
        assert row.side == event.side
    assert (table["trial_type"] == "PLM series").sum() == len(summary.series)
    assert set(table["trial_type"]) <= set(TRIAL_TYPES)
    # the simulator's lights come through the analysis window
    lights = table[table["trial_type"].isin(["lights off", "lights on"])]
    assert lights["onset"].tolist() == [
        summary.attrs["window_start_s"], summary.attrs["window_stop_s"]
    ]


def test_event_table_adds_sleep_nonwear_and_gaps(files):
    summary = read_summary(files["summary"])
    summary.sleep = {
        "source": "estimate", "period_onset_s": 300.0, "period_offset_s": 1500.0,
        "spans": pd.DataFrame({"onset_s": [300.0, 900.0], "duration_s": [600.0, 600.0],
                               "state": ["sleep", "wake"]}),
        "nonwear": pd.DataFrame({"side": ["left"], "onset_s": [10.0], "duration_s": [50.0]}),
    }
    summary.gaps = pd.DataFrame({"side": ["right"], "onset_s": [20.0], "duration_s": [2.5]})
    table = event_table(summary)
    period = table[table["trial_type"] == "sleep period"]
    assert period[["onset", "duration"]].to_numpy(float).tolist() == [[300.0, 1200.0]]
    assert table[table["trial_type"] == "wake"]["onset"].tolist() == [900.0]
    nonwear = table[table["trial_type"] == "nonwear"]
    assert nonwear[["side", "duration"]].to_numpy().tolist() == [["left", 50.0]]
    gap = table[table["trial_type"] == GAP_LABEL]
    assert gap[["side", "onset", "duration"]].to_numpy().tolist() == [["right", 20.0, 2.5]]


# -- BIDS ---------------------------------------------------------------------------------
def test_bids_round_trip_through_the_reference_reader(files, tmp_path):
    out = tmp_path / "sub-01_task-sleep_events.tsv"
    result = export(files["summary"], out)
    sidecar = tmp_path / "sub-01_task-sleep_events.json"
    assert result.format == "bids" and result.extra_paths == [sidecar]
    header = out.read_text().splitlines()[0].split("\t")
    assert header[:3] == ["onset", "duration", "trial_type"]
    frame = pd.read_csv(out, sep="\t", na_values=["n/a"], keep_default_na=False)
    assert frame["onset"].notna().all() and frame["duration"].notna().all()
    # BIDS sidecar: every column described, every trial_type level described
    described = json.loads(sidecar.read_text())
    assert set(described) == set(header)
    assert set(frame["trial_type"]) <= set(described["trial_type"]["Levels"])
    assert "2026-01-05T22:30:00+00:00" in described["onset"]["Description"]
    reference = read_reference(out, label_map=EXTRA)
    assert reference.format == "bids" and not reference.unknown
    lms = reference.annotations[reference.annotations["label"] == "lm"]
    truth = _lms(files["sum"])
    np.testing.assert_allclose(lms["onset_s"].to_numpy(), truth["onset_s"], atol=1e-6)
    np.testing.assert_allclose(lms["duration_s"].to_numpy(), truth["duration_s"], atol=1e-6)
    assert lms["side"].tolist() == truth["side"].tolist()
    assert reference.counts()["plm_series"] == len(files["sum"].series)


# -- CSV ----------------------------------------------------------------------------------
def test_csv_has_absolute_times_and_round_trips(files, tmp_path):
    out = tmp_path / "night-events.csv"
    export(files["summary"], out)
    frame = pd.read_csv(out, keep_default_na=False)
    start = datetime.fromisoformat("2026-01-05T22:30:00+00:00")
    for row in frame.head(20).itertuples():
        utc = datetime.fromisoformat(row.onset_utc.replace("Z", "+00:00"))
        assert utc == start + timedelta(seconds=float(row.onset_s))
        local = datetime.fromisoformat(row.onset_local)
        assert local == utc and local.utcoffset() == timedelta(hours=1)  # CET in January
    reference = read_reference(out, label_map=EXTRA)
    lms = reference.annotations[reference.annotations["label"] == "lm"]
    np.testing.assert_allclose(lms["onset_s"].to_numpy(), _lms(files["sum"])["onset_s"],
                               atol=1e-6)


# -- EDF+ annotations from a summary -----------------------------------------------------------
def test_edf_events_read_back_by_edfio_pyedflib_and_pmld(files, tmp_path):
    out = tmp_path / "night-events.edf"
    result = export(files["summary"], out)
    table = event_table(files["sum"])
    assert result.n_events == len(table)
    onsets, durations, texts, _, info = _pyedf(out)
    np.testing.assert_allclose(onsets, table["onset"].to_numpy(float), atol=1e-6)
    expected = table["duration"].to_numpy(float)
    np.testing.assert_allclose(np.where(durations < 0, 0, durations), expected, atol=1e-6)
    first_lm = next(k for k, t in enumerate(table["trial_type"]) if t in ("PLM", "CLM", "LM"))
    side = {"left": " left", "right": " right", "both": " bilateral"}.get(
        table["side"][first_lm], "")
    assert texts[first_lm] == table["trial_type"][first_lm] + side
    # the header's start is the local clock time (Europe/Zurich, UTC+1 in January)
    assert info["start"] == datetime(2026, 1, 5, 23, 30, 0)
    edf = edfio.read_edf(out)
    assert str(edf.reserved).startswith("EDF+")
    assert [a.text for a in edf.annotations] == texts
    assert edf.patient.code == "X"
    assert any(field.startswith("tz=Europe/Zurich") for field in edf.recording.additional)
    reference = read_reference(out, label_map=EXTRA)
    # a time of day with its date: placed in the night's zone it is the night's start
    assert reference.start_for(files["night"])[0] == files["night"].start_utc
    lms = reference.annotations[reference.annotations["label"] == "lm"]
    truth = _lms(files["sum"])
    np.testing.assert_allclose(lms["onset_s"].to_numpy(), truth["onset_s"], atol=1e-6)
    assert lms["side"].tolist() == truth["side"].tolist()
    assert set(reference.unknown) <= {t for t in texts if t.startswith("posture change")}


# -- EDF+ of a raw night --------------------------------------------------------------------
def test_raw_edf_samples_start_and_events(files, tmp_path):
    out = tmp_path / "night.edf"
    result = export(files["raw"], out, events=files["summary"])
    assert result.notices == []
    night = files["night"]
    onsets, _, texts, signals, info = _pyedf(out)
    assert info["labels"] == [f"{s} ankle {a}" for s in "LR" for a in "XYZ"]
    assert info["fs"] == [25.0] * 6 and info["dims"] == ["g"] * 6
    assert info["pmin"] == [-8.0] * 6 and info["pmax"] == [8.0] * 6
    assert info["start"] == datetime(2026, 1, 5, 23, 30, 0)
    step = 16.0 / 65534  # one digital step of +-8 g in int16
    for k, signal in enumerate(signals):
        acc = night.ankle("left" if k < 3 else "right").acc_g[:, k % 3]
        assert len(signal) == len(acc)
        assert np.abs(signal - acc).max() <= step
    edf = edfio.read_edf(out)
    assert np.abs(edf.signals[0].data - night.ankle("left").acc_g[:, 0]).max() <= step
    table = event_table(files["sum"])
    assert len(texts) == len(table) == result.n_events
    np.testing.assert_allclose(onsets, table["onset"].to_numpy(float), atol=1e-6)
    reference = read_reference(out, label_map=EXTRA)
    lms = reference.annotations[reference.annotations["label"] == "lm"]
    np.testing.assert_allclose(lms["onset_s"].to_numpy(), _lms(files["sum"])["onset_s"],
                               atol=1e-6)


def _night_with(sensors, zone="UTC") -> Night:
    return Night(sensors, timezone=zone)


def test_raw_edf_gaps_filled_and_annotated(tmp_path):
    rng = np.random.default_rng(1)
    acc = np.round(rng.normal(0, 0.3, (50 * 60, 3)) * 4096) / 4096
    start = datetime(2026, 3, 1, 22, 0, tzinfo=ZoneInfo("UTC"))
    # 10 s of data, 2.5 s missing, then the rest; the end is not a whole record
    gaps = pd.DataFrame({"sample_index": [500], "missing_samples": [125]})
    sensor = Sensor(acc[:2990], 50.0, start, side="right", gaps=gaps,
                    device={"range_g": 8.0, "model": "test band"})
    raw = tmp_path / "gappy.h5"
    write_raw(_night_with([sensor]), raw)
    out = tmp_path / "gappy.edf"
    result = export(raw, out)
    assert any("filled with 0 g" in n and GAP_LABEL in n for n in result.notices)
    onsets, durations, texts, signals, info = _pyedf(out)
    # grid: 2990 samples + 125 missing = 3115 -> 63 records of 1 s (3150), 35 at the end
    assert len(signals[0]) == 3150 and info["labels"][0] == "R ankle X"
    assert texts == [f"{GAP_LABEL} right"] * 2
    np.testing.assert_allclose(onsets, [10.0, 3115 / 50], atol=1e-9)
    np.testing.assert_allclose(durations, [2.5, 35 / 50], atol=1e-9)
    step = 16.0 / 65534
    assert np.abs(signals[0][:500] - acc[:500, 0]).max() <= step
    assert np.all(signals[0][500:625] == 0.0)
    assert np.abs(signals[0][625:3115] - acc[500:2990, 0]).max() <= step
    edf = edfio.read_edf(out)
    assert [(a.onset, a.text) for a in edf.annotations][0] == (10.0, f"{GAP_LABEL} right")


def test_two_ankles_different_starts_and_rates(tmp_path):
    rng = np.random.default_rng(2)
    start = datetime(2026, 3, 1, 22, 0, tzinfo=ZoneInfo("UTC"))
    left = Sensor(rng.normal(0, 0.2, (50 * 20, 3)), 50.0, start, side="left")
    right = Sensor(rng.normal(0, 0.2, (25 * 16, 3)), 25.0, start + timedelta(seconds=2),
                   side="right")
    out = tmp_path / "two.edf"
    result = export_raw_edf(_night_with([left, right]), out)
    onsets, durations, texts, signals, info = _pyedf(out)
    assert info["fs"] == [50.0] * 3 + [25.0] * 3
    assert len(signals[0]) == 1000 and len(signals[3]) == 500
    # the right ankle: 2 s of no data before, 2 s after (ends at 18 s of 20)
    assert sorted(zip(onsets, durations, texts, strict=True)) == [
        (0.0, 2.0, f"{GAP_LABEL} right"), (18.0, 2.0, f"{GAP_LABEL} right")
    ]
    lo, hi = info["pmin"][3], info["pmax"][3]
    step = (hi - lo) / 65534
    assert np.abs(signals[3][50:450] - right.acc_g[:, 0]).max() <= step
    left_step = (info["pmax"][0] - info["pmin"][0]) / 65534
    assert np.abs(signals[0] - left.acc_g[:, 0]).max() <= left_step
    assert len(result.notices) == 1  # the gaps; both starts are on the grid


def test_off_grid_start_is_moved_with_a_notice(tmp_path):
    start = datetime(2026, 3, 1, 22, 0, tzinfo=ZoneInfo("UTC"))
    left = Sensor(np.zeros((250, 3)), 25.0, start, side="left")
    right = Sensor(np.zeros((250, 3)), 25.0, start + timedelta(seconds=1.013), side="right")
    result = export_raw_edf(_night_with([left, right]), tmp_path / "x.edf")
    assert any("not on its sample grid" in n and "-13.000 ms" in n for n in result.notices)


def test_subsecond_start_and_local_time(tmp_path):
    start = datetime(2026, 7, 1, 21, 15, 7, 250000, tzinfo=ZoneInfo("UTC"))
    sensor = Sensor(np.full((100, 3), 0.5), 25.0, start, side="unknown",
                    device={"range_g": 4.0})
    out = tmp_path / "sub.edf"
    export_raw_edf(_night_with([sensor], "America/New_York"), out)
    edf = edfio.read_edf(out)
    # EDT (UTC-4) in July: the header holds the local clock time, to the microsecond
    assert edf.startdatetime.replace(tzinfo=None) == datetime(2026, 7, 1, 17, 15, 7, 250000)
    assert edf.labels[:3] == ("ankle X", "ankle Y", "ankle Z")
    assert edf.signals[0].physical_min == -4.0
    onsets, _, _, signals, _ = _pyedf(out)
    assert np.abs(signals[0] - 0.5).max() <= 8.0 / 65534


def test_non_integral_rate_refused_and_nothing_written(tmp_path):
    sensor = Sensor(np.zeros((100, 3)), 99.987, datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")))
    with pytest.raises(InputError, match="resample"):
        export_raw_edf(_night_with([sensor]), tmp_path / "x.edf")
    assert list(tmp_path.iterdir()) == []


def test_raw_night_to_bids_refused(files, tmp_path):
    with pytest.raises(UsageError, match="EDF\\+ only"):
        export(files["raw"], tmp_path / "x_events.tsv")


def test_events_of_another_night_refused(files, tmp_path):
    start = datetime(2025, 1, 1, tzinfo=ZoneInfo("UTC"))
    raw = tmp_path / "other.h5"
    write_raw(_night_with([Sensor(np.zeros((250, 3)), 25.0, start)]), raw)
    with pytest.raises(InputError, match="do not overlap"):
        export(raw, tmp_path / "x.edf", events=files["summary"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.h5"]


def test_newer_major_version_and_foreign_hdf5_refused(files, tmp_path):
    newer = tmp_path / "newer.plm.h5"
    newer.write_bytes(files["summary"].read_bytes())
    with h5py.File(newer, "a") as h5:
        h5.attrs["schema_version"] = "2.0"
    with pytest.raises(FormatError, match="upgrade pmld"):
        export(newer, tmp_path / "x.tsv")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5.attrs["schema"] = "nwb"
    with pytest.raises(FormatError, match="not a pmld file"):
        export(foreign, tmp_path / "x.edf")


# -- the command ---------------------------------------------------------------------------
def _pmld(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pmld.cli", "export", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_exports_and_says_what_it_wrote(files, tmp_path):
    out = tmp_path / "n_events.tsv"
    done = _pmld(files["summary"], "-o", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out} and {out.with_suffix('.json')} (bids")
    done = _pmld(files["raw"], "-o", tmp_path / "n.dat", "--format", "edf",
                 "--events", files["summary"])
    assert done.returncode == 0, done.stderr
    assert edfio.read_edf(tmp_path / "n.dat").labels[0] == "L ankle X"


@pytest.mark.parametrize(
    "case, message",
    [
        ("text", "is not a pmld file"),
        ("missing_dir", "does not exist"),
        ("format", "invalid choice: 'json'"),
        ("extension", "cannot tell the export format"),
        ("raw_to_csv", "EDF+ only"),
        ("events_with_summary", "--events goes with a raw night"),
        ("no_file", "no such file"),
    ],
)
def test_cli_errors_are_one_line_exit_2(files, tmp_path, case, message):
    text = tmp_path / "notes.h5"
    text.write_text("not a night\n")
    args = {
        "text": [text, "-o", tmp_path / "x.edf"],
        "missing_dir": [files["summary"], "-o", tmp_path / "nowhere" / "x.tsv"],
        "format": [files["summary"], "-o", tmp_path / "x.tsv", "--format", "json"],
        "extension": [files["summary"], "-o", tmp_path / "x.txt"],
        "raw_to_csv": [files["raw"], "-o", tmp_path / "x.csv"],
        "events_with_summary": [files["summary"], "-o", tmp_path / "x.edf", "--events",
                                files["summary"]],
        "no_file": [tmp_path / "absent.h5", "-o", tmp_path / "x.edf"],
    }[case]
    done = _pmld(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pmld: ") and message in lines[0]
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.h5"]
