"""The analysis with calibration, the sleep estimate and non-wear (issue 7): what
``analyze`` does with them, what the summary records, and the command line."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from functools import cache

import numpy as np
import pandas as pd
import pytest

from pmld.errors import UsageError
from pmld.io.calibration import write_device_calibration
from pmld.io.raw import write_raw
from pmld.io.summary import read_summary
from pmld.night import make_annotations
from pmld.pipeline import analyze
from pmld.signal import Calibration
from pmld.simulate import simulate_night

FS = 25.0


@cache
def _day_night():
    """An evening, 6 h in bed and a morning, the band off for 90 min in the evening
    (non-wear is looked for in windows of 60 min: a shorter one is not found)."""
    return simulate_night(
        "moderate", hours=6, fs_hz=FS, seed=11, evening_h=3, morning_h=1,
        start_local="2026-03-10T18:30", timezone="Europe/Berlin",
        nonwear=[(1200.0, 5400.0)],
    )


def day_night():
    return copy.deepcopy(_day_night())


def without_lights(night):
    keep = ~night.annotations["label"].isin(["lights_off", "lights_on"])
    night.annotations = night.annotations[keep].reset_index(drop=True)
    return night


def test_without_lights_the_window_is_the_estimated_sleep_period():
    night = without_lights(day_night())
    result = analyze(night)
    sleep = result.sleep
    assert sleep["source"] == "estimate"
    onset, offset = sleep["period_onset_s"], sleep["period_offset_s"]
    assert result.night_info["window_start_s"] == pytest.approx(onset)
    assert result.night_info["window_stop_s"] == pytest.approx(offset)
    truth_onset, truth_offset = night.meta["sleep_onset_s"], night.meta["final_awakening_s"]
    assert abs(onset - truth_onset) < 30 * 60 and abs(offset - truth_offset) < 30 * 60
    # PLMS and PLMW are per hour of estimated sleep and wake inside the window
    events = result.events
    plm_sleep = int((events["plm"] & events["in_sleep"]).sum())
    plm_wake = int((events["plm"] & ~events["in_sleep"]).sum())
    assert result.indices["plms_index"] == pytest.approx(plm_sleep / sleep["sleep_h"])
    if sleep["wake_h"] > 0:
        assert result.indices["plmw_index"] == pytest.approx(plm_wake / sleep["wake_h"])
    assert sleep["sleep_h"] + sleep["wake_h"] == pytest.approx(result.indices["analyzed_hours"])
    spans = sleep["spans"]
    assert set(spans["state"]) <= {"sleep", "wake"}
    assert spans["duration_s"].sum() == pytest.approx(offset - onset)
    asleep = spans.loc[spans["state"] == "sleep", "duration_s"].sum() / 3600
    assert asleep == pytest.approx(sleep["sleep_h"], abs=1e-6)


def test_the_evening_nonwear_is_flagged_and_the_epochs_cover_the_night(tmp_path):
    night = without_lights(day_night())
    result = analyze(night, lights_off_s=0.0, lights_on_s=night.duration_s)
    nonwear = result.sleep["nonwear"]
    assert len(nonwear) >= 1
    # found where the band lay on the table, and its time is not analysed
    first = nonwear.iloc[0]
    assert abs(first["onset_s"] - 1200) < 600
    assert abs(first["duration_s"] - 5400) < 900
    assert result.sleep["nonwear_h"] == pytest.approx(nonwear["duration_s"].sum() / 3600)
    recorded_h = night.duration_s / 3600
    assert result.indices["analyzed_hours"] == pytest.approx(
        recorded_h - result.sleep["nonwear_h"], abs=1e-6
    )
    # the raw data are untouched: flagged, never deleted
    assert np.isfinite(night.sensor.acc_g[int(3000 * FS)]).all()
    epochs = result.epochs
    assert epochs["onset_s"].min() == 0.0
    assert epochs["onset_s"].max() + 30 >= night.duration_s - 30
    inside = (epochs["onset_s"] >= first["onset_s"]) & (
        epochs["onset_s"] + 30 <= first["onset_s"] + first["duration_s"]
    )
    assert epochs.loc[inside, "nonwear"].all()
    assert not epochs["gap"].any()
    assert (epochs["activity_g"].dropna() >= 0).all()
    path = tmp_path / "night.plm.h5"
    result.to_hdf5(path)
    back = read_summary(path)
    pd.testing.assert_frame_equal(back.epochs, result.epochs, check_dtype=False)
    assert back.sleep["source"] == "estimate"
    pd.testing.assert_frame_equal(
        back.sleep["nonwear"], result.sleep["nonwear"], check_dtype=False
    )


def test_a_night_never_worn_says_so_and_gives_no_indices():
    still = np.tile(np.array([0.02, -0.01, 0.999], np.float32), (int(3 * 3600 * FS), 1))
    rng = np.random.default_rng(0)
    still += rng.normal(0, 0.002, still.shape).astype(np.float32)
    from pmld.night import Night

    night = Night.from_arrays(still, FS, "2026-03-10T21:00:00+01:00", side="right",
                              timezone="Europe/Berlin")
    result = analyze(night)
    flags = result.quality["flags"] + result.sleep["flags"]
    assert any("not worn" in flag or "no wear" in flag or "never worn" in flag
               for flag in flags), flags
    assert np.isnan(result.indices["plm_index"])
    assert result.indices["severity_band"] == "unknown"


def test_hypnogram_annotations_win_and_sleep_none_counts_the_window():
    night = day_night()
    tst = night.meta["sleep_onset_s"]
    rows = make_annotations(
        [tst], [night.meta["final_awakening_s"] - tst], "sleep", source="reference"
    )
    night.add_annotations(rows)
    by_reference = analyze(night)
    assert by_reference.sleep["source"] == "annotations"
    assert by_reference.sleep["sleep_h"] == pytest.approx(
        (night.meta["final_awakening_s"] - tst) / 3600, rel=0.02
    )
    estimated = analyze(night, sleep_source="estimate")
    assert estimated.sleep["source"] == "estimate"
    whole = analyze(night, sleep_source="none")
    assert whole.sleep["source"] == "none"
    assert whole.indices["plms_index"] == pytest.approx(whole.indices["plm_index"])
    with pytest.raises(UsageError, match="no sleep/wake annotations"):
        analyze(without_lights(day_night()), sleep_source="annotations")


def test_calibration_is_applied_and_recorded():
    night = day_night()
    sensor = night.sensor
    result = analyze(night)
    (record,) = result.calibration
    assert record["side"] == sensor.side
    assert record["status"] in ("autocalibrated", "none")
    assert record["reason"]
    off = analyze(night, **{"calibration.mode": "off"})
    assert off.calibration[0]["status"] == "none"
    assert off.calibration[0]["reason"] == "calibration off"
    assert off.parameters["calibration"]["mode"] == "off"


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "pmld.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )


def test_cli_device_calibration_sleep_option_and_night_date(tmp_path):
    night = day_night()
    sensor = night.sensor
    sensor.device["serial"] = "A1"
    # a sensor off by a known gain and offset: a stored calibration undoes it
    sensor.acc_g[:] = sensor.acc_g * np.float32(1.04) + np.float32(0.05)
    raw = tmp_path / "night.h5"
    write_raw(night, raw)
    stored = Calibration(
        offset_g=np.full(3, -0.05 / 1.04), scale=np.full(3, 1 / 1.04), status="autocalibrated",
        reason="test", error_before_g=0.05, error_after_g=0.002, n_points=100,
        device={"serial": "A1"},
    )
    device_file = tmp_path / "band-A1.json"
    write_device_calibration(device_file, stored)
    out = tmp_path / "out.plm.h5"
    done = _cli("analyze", raw, "-o", out, "--device-calibration", device_file,
                "--set", "calibration.min_points=100000", "--sleep", "estimate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = read_summary(out)
    (record,) = summary.calibration
    assert record["status"] == "stored"
    assert record["source"].endswith("band-A1.json")
    assert record["error_after_g"] < record["error_before_g"]
    assert summary.sleep["source"] == "estimate"
    assert summary.parameters["window"]["sleep_source"] == "estimate"
    assert summary.attrs["night_date"] == "2026-03-10"
    shown = _cli("show", out, cwd=tmp_path)
    assert "calibrated right: stored" in shown.stdout
    assert "estimated from the ankle" in shown.stdout
    as_json = json.loads(_cli("show", out, "--json", cwd=tmp_path).stdout)
    assert as_json["sleep"]["source"] == "estimate"
    # one line for a bad choice, before any work
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    for bad in (["--sleep", "dream"], ["--device-calibration", tmp_path / "none.json"],
                ["--device-calibration", corrupt], ["--set", "epoch_s=5"]):
        done = _cli("analyze", raw, "-o", tmp_path / "x.plm.h5", *bad, cwd=tmp_path)
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "ambiguous" in done.stderr and "calibration.epoch_s" in done.stderr


def test_summary_and_report_files_get_the_users_usual_permissions(tmp_path):
    import os
    import stat

    from pmld.plot import write_report

    night = simulate_night("healthy", hours=0.5, fs_hz=FS, seed=2)
    summary = tmp_path / "night.plm.h5"
    analyze(night).to_hdf5(summary)
    report = tmp_path / "night.html"
    write_report(summary, report)
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (summary, report):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
