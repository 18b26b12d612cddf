"""The ``pmld`` command, run as a user runs it: the installed console script in a
subprocess, on real files, with the outputs read back through the library.

Expected failures must be one line on standard error, ``pmld: <file>: <problem>``,
exit code 2 and no traceback (pmld.errors).

Most of a call is Python starting up and importing NumPy, pandas and SciPy, so the
commands run in four session-wide stages, each stage's commands side by side: A
simulates the nights, B writes the hand-made inputs and imports the CSVs, C runs every
other command, D shows what C wrote. The tests then check the results.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import pmld
from pmld.detect import DetectionParams
from pmld.io.events import read_lm_csv
from pmld.io.raw import read_raw, write_raw
from pmld.io.summary import read_summary
from pmld.night import Night
from pmld.provenance import canonical_json, file_sha256
from pmld.score import rules_preset, score_leg_movements, summarize
from pmld.signal import CalibrationParams
from pmld.simulate import truth_table
from pmld.sleep import SleepParams

try:
    from pmld.pipeline import WindowParams, analyze
except ImportError:  # the module's first name
    from pmld.analyze import WindowParams, analyze  # type: ignore

_SCRIPT = shutil.which("pmld", path=str(Path(sys.executable).parent))
PMLD = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "pmld.cli"]
SIM_START = "2026-01-05T22:30:00+00:00"  # the simulator's default start
FS = 25  # the moderate night's rate


def run(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PMLD, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def run_all(jobs: dict) -> dict:
    """Run independent commands ``{key: (args, cwd)}`` side by side."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {key: pool.submit(run, *args, cwd=cwd) for key, (args, cwd) in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def fails(result: subprocess.CompletedProcess, name: str, *words: str) -> str:
    """Check the one-line error of an expected failure; return the line."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("pmld: "), line
    assert name in line, f"{name!r} not named in: {line}"
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in: {line}"
    return line


def write_accel_csv(path: Path, acc: np.ndarray, fs: float, keep=None) -> None:
    times = np.arange(len(acc)) / fs
    frame = pd.DataFrame({"time_s": times, "x": acc[:, 0], "y": acc[:, 1], "z": acc[:, 2]})
    if keep is not None:
        frame = frame[keep]
    frame.to_csv(path, index=False, float_format="%.7f")


# -- stage A: simulated nights -------------------------------------------------------------
@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="session")
def sims(work) -> dict:
    results = run_all(
        {
            # one hour of a moderate PLM disorder: the night most tests look at
            "moderate": (
                [
                    "simulate",
                    "--scenario",
                    "moderate",
                    "--hours",
                    1,
                    "--fs",
                    FS,
                    "--seed",
                    2,
                    "-o",
                    "moderate.h5",
                    "--truth",
                    "moderate.truth.csv",
                ],
                work,
            ),  # fmt: skip
            # 12 min at 10 Hz for option tests
            "small": (
                ["simulate", "--hours", 0.2, "--fs", 10, "--seed", 4, "-o", "small.h5"],
                work,
            ),
            "both": (
                [
                    "simulate",
                    "--scenario",
                    "bilateral",
                    "--hours",
                    0.5,
                    "--fs",
                    10,
                    "--seed",
                    1,
                    "-o",
                    "both.h5",
                ],
                work,
            ),  # fmt: skip
            "list": (["simulate", "--list"], work),
        }
    )
    for result in results.values():
        succeeded(result)
    return results


# -- stage B: hand-made inputs and imports -------------------------------------------------
WORKED_CASE = "onset_s,offset_s,side\n0,1,L\n20,21,L\n25,26,L\n45,46,L\n65,66,L\n85,86,L\n"
PARAMS_TOML = (
    "[detection]\nonset_min_g = 0.02\n"
    '[rules]\nname = "strict"\nmin_series_count = 3\n'
    "[window]\nclip_fraction = 0.05\n"
)


@pytest.fixture(scope="session")
def files(work, sims) -> dict:
    night = read_raw(work / "moderate.h5")
    acc = night.sensor.acc_g
    device = night.sensor.device
    # CSV exports of the moderate night: 12 min whole, 20 min with 300-400 s missing, 30 s
    write_accel_csv(work / "export.csv", acc[: 12 * 60 * FS], FS)
    times = np.arange(20 * 60 * FS) / FS
    write_accel_csv(work / "gappy.csv", acc[: 20 * 60 * FS], FS, (times < 300) | (times >= 400))
    write_accel_csv(work / "short.csv", acc[: 30 * FS], FS)
    # irregular timestamps at about 50 Hz
    rng = np.random.default_rng(1)
    t = np.cumsum(rng.uniform(0.015, 0.025, 3000))
    t -= t[0]
    pd.DataFrame(
        {"time_s": t, "x": 0.1 * np.sin(t), "y": np.zeros_like(t), "z": np.full_like(t, 0.99)}
    ).to_csv(work / "jitter.csv", index=False, float_format="%.5f")
    # an exact repeat of a row (line 5 repeats line 4)
    rows = [f"{k / 50:.2f},0,0,1" for k in range(10)]
    (work / "repeat.csv").write_text("\n".join(["time_s,x,y,z", *rows[:3], rows[2], *rows[3:]]))
    (work / "back.csv").write_text("time_s,x,y,z\n0,0,0,1\n0.02,0,0,1\n0.04,0,0,1\n0.03,0,0,1\n")
    (work / "dup.csv").write_text("time_s,x,y,z\n0,0,0,1\n0.02,0,0,1\n0.02,0.5,0,1\n0.04,0,0,1\n")
    # nights the simulator does not make: all zero, clipped, each ankle on its own
    write_raw(Night.from_arrays(np.zeros((10 * 60 * FS, 3)), FS, SIM_START), work / "zero.h5")
    clipped = acc[: 10 * 60 * FS].copy()
    limit = device["range_g"] - 1 / device["counts_per_g"]  # int16 saturation
    for start in range(0, 600, 20):  # a violent second every 20 s at full scale: 5 %
        clipped[start * FS : (start + 1) * FS] = limit * np.array([1, -1, 1])
    write_raw(Night.from_arrays(clipped, FS, SIM_START, device=device), work / "clipped.h5")
    both = read_raw(work / "both.h5")
    for sensor in both.sensors:
        one = Night([sensor], timezone=both.timezone, annotations=both.annotations, meta=both.meta)
        write_raw(one, work / f"ankle_{sensor.side}.h5")
    # leg movement tables for `pmld score`
    (work / "worked.csv").write_text(WORKED_CASE)
    truth = pd.read_csv(work / "moderate.truth.csv")
    truth = truth.assign(kind=np.where(truth["kind"] == "posture", "posture", "lm"))
    truth[["onset_s", "offset_s", "side", "kind"]].to_csv(work / "lms.csv", index=False)
    (work / "none.csv").write_text("onset_s,offset_s,side\n")
    (work / "badside.csv").write_text("onset_s,offset_s,side\n0,1,X\n")
    (work / "badorder.csv").write_text("onset_s,offset_s,side\n5,1,L\n")
    (work / "params.toml").write_text(PARAMS_TOML)
    # files in the way of outputs
    for folder, source in (("a", "small.h5"), ("b", "both.h5")):
        (work / folder).mkdir()
        shutil.copy(work / source, work / folder / "night.h5")
    shutil.copy(work / "small.h5", work / "precious.h5")
    (work / "results").write_text("not a directory\n")
    _bad_files(work / "bad", work / "moderate.h5")

    imports = run_all(
        {
            "export": (
                [
                    "import",
                    "export.csv",
                    "-o",
                    "imported.h5",
                    "--side",
                    "left",
                    "--start",
                    SIM_START,
                    "--tz",
                    "Europe/Zurich",
                ],
                work,
            ),  # fmt: skip
            "gappy": (["import", "gappy.csv", "-o", "gappy.h5", "--start", SIM_START], work),
            "short": (["import", "short.csv", "-o", "short.h5"], work),
            "jitter": (["import", "jitter.csv", "-o", "jitter.h5"], work),
            "repeat": (["import", "repeat.csv", "-o", "repeat.h5"], work),
        }
    )
    for key in ("gappy", "short"):  # later stages need them
        succeeded(imports[key])
    return imports


def _bad_files(folder: Path, night_file: Path) -> None:
    folder.mkdir()
    (folder / "empty.csv").write_text("")
    (folder / "header.csv").write_text("time_s,x,y,z\n")
    (folder / "text.csv").write_text("time_s,x,y,z\n0,0,0,1\n0.01,abc,0,1\n0.02,0,0,1\n")
    (folder / "nan.csv").write_text("time_s,x,y,z\n0,0,0,1\n0.01,nan,0,1\n0.02,0,0,1\n")
    (folder / "notes.h5").write_text("not HDF5 at all\n")
    with h5py.File(folder / "other.h5", "w") as h5:
        h5.attrs["schema"] = "someone-else"
        h5["data"] = np.arange(3)
    raw = night_file.read_bytes()
    (folder / "truncated.h5").write_bytes(raw[: len(raw) // 3])
    shutil.copy(night_file, folder / "future.h5")
    with h5py.File(folder / "future.h5", "a") as h5:
        h5.attrs["schema_version"] = "2.0"
    night = read_raw(night_file)
    short = Night.from_arrays(night.sensor.acc_g[: 120 * FS], FS, SIM_START)
    analyze(short).to_hdf5(folder / "summary.plm.h5")
    shutil.copy(folder / "summary.plm.h5", folder / "future.plm.h5")
    with h5py.File(folder / "future.plm.h5", "a") as h5:
        h5.attrs["schema_version"] = "2.0"
    shutil.copy(night_file, folder / "raw.h5")
    (folder / "lm_text.csv").write_text("onset_s,offset_s,side\n1,2,L\nsoon,3,L\n")
    (folder / "lm_columns.csv").write_text("start,stop\n1,2\n")
    (folder / "broken.toml").write_text("rules = [\n")


# -- stage C: everything else --------------------------------------------------------------
BAD_INPUTS = [
    # (command, file in bad/, words the message must hold)
    ("import", "empty.csv", ["empty"]),
    ("import", "header.csv", []),
    ("import", "text.csv", ["line 3", "'x'", "not a number"]),
    ("import", "nan.csv", ["line 3", "NaN"]),
    ("import", "missing.csv", ["no such file"]),
    ("info", "notes.h5", ["not an HDF5"]),
    ("info", "other.h5", ["not a pmld-raw", "someone-else"]),
    ("info", "truncated.h5", ["truncated"]),
    ("info", "future.h5", ["2.0"]),
    ("info", "missing.h5", ["no such file"]),
    ("analyze", "notes.h5", ["not an HDF5"]),
    ("analyze", "other.h5", ["not a pmld-raw"]),
    ("analyze", "summary.plm.h5", ["not a pmld-raw"]),
    ("analyze", "missing.h5", ["no such file"]),
    ("show", "raw.h5", ["not a pmld-summary"]),
    ("show", "future.plm.h5", ["2.0"]),
    ("show", "missing.plm.h5", ["no such file"]),
    ("score", "empty.csv", ["empty"]),
    ("score", "lm_text.csv", ["line 3", "not a number"]),
    ("score", "lm_columns.csv", ["onset_s"]),
    ("score", "missing.csv", ["no such file"]),
]
_OUTPUT = {"import": ["-o", "out.h5"], "analyze": ["-o", "out.plm.h5"], "score": ["-o", "out.csv"]}

# Option errors on a good night: options, a name the message must hold, words
BAD_OPTIONS = {
    "unknown parameter": (["--set", "no_such_parameter=1"], "", ["unknown parameter"]),
    "set without =": (["--set", "onset_ratio"], "", ["NAME=VALUE"]),
    "unknown preset": (["--rules", "bogus"], "", ["bogus", "wasm2016"]),
    "missing toml": (["--params", "none.toml"], "none.toml", ["no such"]),
    "broken toml": (["--params", "bad/broken.toml"], "broken.toml", ["TOML"]),
    "empty window": (["--lights-off", "5000"], "", ["window is empty"]),
    "missing right ankle": (["--right", "nowhere.h5"], "nowhere.h5", ["no such file"]),
    "right with two nights": (["small.h5", "--right", "small.h5"], "", ["--right"]),
}
WINDOW_SETTINGS = ["clip_fraction=abc", "lights_off_s=abc", "break_gap_s=abc"]
SET_OPTIONS = ["--rules", "aasm", "--set", "min_imi_s=6", "--set", "break_gap_s=7.5"]


def _commands(work: Path) -> dict:
    jobs = {
        "moderate": ["analyze", "moderate.h5", "-o", "moderate.plm.h5", "--json"],
        "again": ["analyze", "moderate.h5", "-o", "again.plm.h5"],
        "info": ["info", "moderate.h5"],
        "info json": ["info", "moderate.h5", "--json"],
        "set": ["analyze", "small.h5", "-o", "set.plm.h5", *SET_OPTIONS,
                "--set", "onset_ratio=5.0"],
        "set int": ["analyze", "small.h5", "-o", "setint.plm.h5", *SET_OPTIONS,
                    "--set", "onset_ratio=5"],
        "toml": ["analyze", "small.h5", "-o", "toml.plm.h5", "--params", "params.toml"],
        "toml and options": ["analyze", "small.h5", "-o", "override.plm.h5", "--params",
                             "params.toml", "--rules", "wasm2016", "--set", "min_series_count=5"],
        "lights": ["analyze", "moderate.h5", "-o", "lights.plm.h5", "--lights-off", "22:40",
                   "--lights-on", "1800"],
        "gap": ["analyze", "gappy.h5", "-o", "gappy.plm.h5"],
        "gap info": ["info", "gappy.h5", "--json"],
        "window in gap": ["analyze", "gappy.h5", "-o", "ingap.plm.h5", "--lights-off", "320",
                          "--lights-on", "380"],
        "left and right": ["analyze", "ankle_left.h5", "--right", "ankle_right.h5",
                           "-o", "lr.plm.h5"],
        "two-sensor file": ["analyze", "both.h5", "-o", "both.plm.h5"],
        "many": ["analyze", "small.h5", "short.h5", "-o", "many", "--json"],
        "mixed": ["analyze", "small.h5", "bad/summary.plm.h5", "short.h5", "-o", "mixed"],
        "late": ["analyze", "gappy.h5", "small.h5", "-o", "late", "--lights-off", "1000"],
        "same name": ["analyze", "a/night.h5", "b/night.h5", "-o", "same", "--json"],
        "precious": ["analyze", "precious.h5", "-o", "precious.h5"],
        "results": ["analyze", "small.h5", "short.h5", "-o", "results"],
        "short": ["analyze", "short.h5", "-o", "short.plm.h5"],
        "zero": ["analyze", "zero.h5", "-o", "zero.plm.h5"],
        "clipped": ["analyze", "clipped.h5", "-o", "clipped.plm.h5"],
        "score wasm": ["score", "worked.csv", "-o", "wasm.csv"],
        "score aasm": ["score", "worked.csv", "-o", "aasm.csv", "--rules", "aasm", "--json"],
        "score lms": ["score", "lms.csv", "-o", "scored.csv", "--hours", 1, "--json"],
        "score none": ["score", "none.csv", "-o", "none_scored.csv", "--json"],
        "score none 8 h": ["score", "none.csv", "-o", "none8.csv", "--hours", 8, "--json"],
        "score bad side": ["score", "badside.csv", "-o", "badside_scored.csv"],
        "score bad order": ["score", "badorder.csv", "-o", "badorder_scored.csv"],
        "import back": ["import", "back.csv", "-o", "back.h5"],
        "import dup": ["import", "dup.csv", "-o", "dup.h5"],
        "no command": [],
        "version": ["--version"],
        "simulate without -o": ["simulate"],
    }  # fmt: skip
    jobs = {key: (args, work) for key, args in jobs.items()}
    for command, name, _ in BAD_INPUTS:
        jobs[command, name] = ([command, name, *_OUTPUT.get(command, [])], work / "bad")
    for number, (key, (options, _, _)) in enumerate(BAD_OPTIONS.items()):
        jobs[key] = (["analyze", "small.h5", *options, "-o", f"option-{number}.plm.h5"], work)
    for number, setting in enumerate(WINDOW_SETTINGS):
        jobs[setting] = (["analyze", "small.h5", "--set", setting, "-o", f"w{number}.plm.h5"], work)
    return jobs


@pytest.fixture(scope="session")
def cli(work, files) -> dict:
    return run_all(_commands(work))


# -- stage D: reading what stage C wrote ---------------------------------------------------
@pytest.fixture(scope="session")
def shown(work, cli) -> dict:
    succeeded(cli["moderate"])
    return run_all(
        {
            "show": (["show", "moderate.plm.h5"], work),
            "show json": (["show", "moderate.plm.h5", "--json", "--events"], work),
            "info": (["info", "moderate.plm.h5"], work),
        }
    )


# -- simulate, info ---------------------------------------------------------------------------
def test_simulate_writes_the_night_and_its_truth(work, sims):
    night = read_raw(work / "moderate.h5")
    sensor = night.sensor
    assert sensor.fs_hz == FS and sensor.n_samples == 3600 * FS and sensor.side == "right"
    assert night.meta["scenario"] == "moderate" and night.meta["seed"] == 2
    truth = pd.read_csv(work / "moderate.truth.csv")
    assert list(truth.columns) == ["onset_s", "offset_s", "duration_s", "side", "kind", "series"]
    n_lm = int((truth["kind"] == "lm").sum())
    assert f"{n_lm} leg movements in the truth" in sims["moderate"].stdout
    # the CSV is the truth of the file's own annotations
    from_file = truth_table(night)
    np.testing.assert_allclose(truth["onset_s"], from_file["onset_s"], atol=1e-3)
    assert truth["kind"].tolist() == from_file["kind"].tolist()
    for name in ("healthy", "moderate", "severe", "noisy", "restless", "bilateral"):
        assert name in sims["list"].stdout
    assert read_raw(work / "both.h5").sides == ["left", "right"]


def test_info_describes_the_night(work, cli):
    text = succeeded(cli["info"]).stdout
    assert "pmld-raw" in text and "25 Hz" in text and "no gaps" in text
    info = json.loads(succeeded(cli["info json"]).stdout)
    (sensor,) = info["sensors"]
    assert sensor["samples"] == 3600 * FS and sensor["fs_hz"] == FS
    assert sensor["gaps"] == 0 and sensor["recorded_h"] == pytest.approx(1.0)
    assert info["start_utc"] == SIM_START
    night = read_raw(work / "moderate.h5")
    assert info["lights_off_s"] == pytest.approx(night.meta["lights_off_s"])


# -- analyze ---------------------------------------------------------------------------------
def test_analyze_plm_index_is_close_to_the_truth(work, cli):
    # Reference: the simulator's movements inside the analysis window scored by the same
    # rules (posture changes as non-candidates, which break series). Measured on 1 h
    # moderate nights, seeds 0-9: the detector is within 5.6/h of it. Bound: 6/h or 25 %.
    succeeded(cli["moderate"])
    summary = read_summary(work / "moderate.plm.h5")
    start, stop = summary.attrs["window_start_s"], summary.attrs["window_stop_s"]
    truth = pd.read_csv(work / "moderate.truth.csv")
    truth = truth[(truth["onset_s"] >= start) & (truth["onset_s"] < stop)]
    truth = truth.assign(kind=np.where(truth["kind"] == "posture", "posture", "lm"))
    reference = summarize(score_leg_movements(truth, "wasm2016"), stop - start)["plm_index"]
    detected = summary.indices["plm_index"]
    assert 15 < reference < 50
    assert abs(detected - reference) <= max(6.0, 0.25 * reference), (detected, reference)
    assert summary.indices["analyzed_hours"] == pytest.approx((stop - start) / 3600)


def test_analyze_json_and_text_match_the_summary_file(work, cli):
    summary = read_summary(work / "moderate.plm.h5")
    printed = json.loads(succeeded(cli["moderate"]).stdout)
    assert printed["night"] == "moderate.h5" and printed["summary_file"] == "moderate.plm.h5"
    for key in ("plm_index", "plm_count", "lm_count", "clm_count", "analyzed_hours"):
        assert printed[key] == pytest.approx(summary.indices[key]), key
    assert printed["rules"] == "wasm2016" and printed["flags"] == []
    assert summary.indices["plm_count"] == int(summary.events["plm"].sum())
    text = succeeded(cli["again"]).stdout
    assert text.startswith("moderate.h5: PLM index ")
    assert f"{summary.indices['plm_index']:.1f}/h" in text and "-> again.plm.h5" in text


def test_summary_records_version_parameters_and_input_hash(work, cli):
    succeeded(cli["moderate"])
    summary = read_summary(work / "moderate.plm.h5")
    attrs = summary.attrs
    sha = file_sha256(work / "moderate.h5")
    assert attrs["pmld_version"] == pmld.__version__
    assert attrs["input_sha256"] == sha
    assert json.loads(attrs["inputs_json"]) == [{"path": "moderate.h5", "sha256": sha}]
    assert summary.parameters == {
        "rules_preset": "wasm2016",
        "detection": DetectionParams().to_dict(),
        "rules": rules_preset("wasm2016").to_dict(),
        "window": WindowParams().to_dict(),
        "calibration": CalibrationParams().to_dict(),
        "sleep": SleepParams().to_dict(),
    }
    assert attrs["parameters_json"] == canonical_json(summary.parameters)


def test_analysing_again_gives_the_same_events_and_indices(work, cli):
    succeeded(cli["moderate"])
    succeeded(cli["again"])
    first, second = read_summary(work / "moderate.plm.h5"), read_summary(work / "again.plm.h5")
    pd.testing.assert_frame_equal(first.events, second.events)
    pd.testing.assert_frame_equal(first.monolateral, second.monolateral)
    assert canonical_json(first.indices) == canonical_json(second.indices)
    for key in ("parameters_json", "input_sha256", "pmld_version", "start_utc"):
        assert first.attrs[key] == second.attrs[key], key


def test_show_prints_the_summary(work, shown):
    summary = read_summary(work / "moderate.plm.h5")
    text = succeeded(shown["show"]).stdout
    assert "pmld-summary 1.1" in text
    assert f"PLM index  {summary.indices['plm_index']:.1f}/h" in text
    assert summary.attrs["input_sha256"] in text
    printed = json.loads(succeeded(shown["show json"]).stdout)
    assert printed["indices"]["plm_count"] == summary.indices["plm_count"]
    assert printed["parameters_json"] == summary.attrs["parameters_json"]
    assert [e["onset_s"] for e in printed["events"]] == summary.events["onset_s"].tolist()
    assert [e["plm"] for e in printed["events"]] == summary.events["plm"].tolist()
    assert succeeded(shown["info"]).stdout == text  # info on a summary shows it


def test_set_and_params_land_in_the_parameters(work, cli, sims):
    succeeded(cli["set"])
    parameters = read_summary(work / "set.plm.h5").parameters
    assert parameters["rules_preset"] == "aasm"
    assert parameters["detection"]["onset_ratio"] == 5.0
    assert parameters["rules"]["min_imi_s"] == 6.0
    assert parameters["rules"]["bilateral_mode"] == "aasm"  # the rest of the preset
    assert parameters["window"]["break_gap_s"] == 7.5
    # and they are what was used: the library with the same parameters agrees
    expected = analyze(read_raw(work / "small.h5"), "aasm", onset_ratio=5.0, min_imi_s=6.0,
                       break_gap_s=7.5)  # fmt: skip
    pd.testing.assert_frame_equal(
        read_summary(work / "set.plm.h5").events, expected.events, check_dtype=False
    )

    succeeded(cli["toml"])
    parameters = read_summary(work / "toml.plm.h5").parameters
    assert parameters["rules_preset"] == "strict"
    assert parameters["detection"]["onset_min_g"] == 0.02
    assert parameters["rules"]["min_series_count"] == 3
    assert parameters["rules"]["max_imi_s"] == 40.0  # strict preset
    assert parameters["window"]["clip_fraction"] == 0.05
    # the command line wins over the file
    succeeded(cli["toml and options"])
    parameters = read_summary(work / "override.plm.h5").parameters
    assert parameters["rules_preset"] == "wasm2016"
    assert parameters["rules"]["min_series_count"] == 5
    assert parameters["rules"]["max_imi_s"] == 90.0
    assert parameters["detection"]["onset_min_g"] == 0.02


def test_a_parameter_given_as_integer_or_decimal_is_recorded_the_same(work, cli):
    # BUG: --set onset_ratio=5 stores the int 5 (DetectionParams does not coerce), 5.0
    # the float: the same analysis gets two parameters_json, so "already analysed with
    # these parameters" (input_sha256 + parameters_json) misses.
    succeeded(cli["set"])
    succeeded(cli["set int"])
    as_float, as_int = read_summary(work / "set.plm.h5"), read_summary(work / "setint.plm.h5")
    pd.testing.assert_frame_equal(as_int.events, as_float.events)
    assert as_int.attrs["parameters_json"] == as_float.attrs["parameters_json"]


@pytest.mark.parametrize("key", list(BAD_OPTIONS))
def test_bad_options_are_one_line_errors(work, cli, key):
    _, name, words = BAD_OPTIONS[key]
    fails(cli[key], name, *words)
    assert not (work / f"option-{list(BAD_OPTIONS).index(key)}.plm.h5").exists()


@pytest.mark.parametrize("setting", WINDOW_SETTINGS)
def test_a_window_parameter_that_is_not_a_number_is_a_one_line_error(cli, setting):
    # BUG: window parameters are not validated: clip_fraction=abc and lights_off_s=abc
    # crash with a TypeError / ValueError traceback (exit 1); break_gap_s=abc is
    # accepted and written into parameters_json (exit 0).
    fails(cli[setting], "", setting.split("=")[0])


def test_lights_window_shrinks_the_analysed_hours(work, cli):
    # lights off at 22:40 local (a UTC night starting 22:30) = 600 s, on at 1800 s
    succeeded(cli["lights"])
    succeeded(cli["moderate"])
    window = read_summary(work / "lights.plm.h5")
    whole = read_summary(work / "moderate.plm.h5")
    assert window.attrs["window_start_s"] == 600 and window.attrs["window_stop_s"] == 1800
    assert window.indices["analyzed_hours"] == pytest.approx(1200 / 3600)
    assert window.indices["analyzed_hours"] < whole.indices["analyzed_hours"]
    onsets = window.events["onset_s"]
    assert ((onsets >= 600) & (onsets < 1800)).all()
    assert window.parameters["window"]["lights_off_s"] == 600


def test_a_gap_is_not_analysed_time(work, cli):
    succeeded(cli["gap"])
    summary = read_summary(work / "gappy.plm.h5")
    # 20 min imported with 300-400 s missing and no lights annotations
    assert summary.attrs["window_start_s"] == 0 and summary.attrs["window_stop_s"] == 1200
    assert summary.indices["analyzed_hours"] == pytest.approx(1100 / 3600)
    events = summary.events
    assert ((events["offset_s"] <= 300 + 1e-6) | (events["onset_s"] >= 400 - 1e-6)).all()
    assert len(events) > 5


def test_a_lights_window_inside_a_gap_gives_a_flagged_summary(work, cli):
    # BUG: no recorded time in the window; summarize() raises "analyzed_s must be
    # positive, got 0.0", printed as the whole error, naming neither file nor reason.
    succeeded(cli["window in gap"])
    summary = read_summary(work / "ingap.plm.h5")
    assert summary.indices["analyzed_hours"] == 0
    assert any("too short" in flag for flag in summary.quality["flags"])


def test_right_ankle_file_is_combined_with_the_left(work, cli):
    succeeded(cli["left and right"])
    succeeded(cli["two-sensor file"])
    combined, direct = read_summary(work / "lr.plm.h5"), read_summary(work / "both.plm.h5")
    assert combined.attrs["sides"] == "left,right"
    assert set(combined.monolateral["side"]) == {"left", "right"}
    assert (combined.events["side"] == "both").any()
    inputs = json.loads(combined.attrs["inputs_json"])
    assert [i["path"] for i in inputs] == ["ankle_left.h5", "ankle_right.h5"]
    assert inputs[1]["sha256"] == file_sha256(work / "ankle_right.h5")
    assert combined.attrs["input_sha256"] == file_sha256(work / "ankle_left.h5")
    # the same night as the two-sensor file, so the same result
    pd.testing.assert_frame_equal(combined.events, direct.events)


def test_several_nights_go_to_a_directory(work, cli):
    printed = json.loads(succeeded(cli["many"]).stdout)
    assert [p["night"] for p in printed] == ["small.h5", "short.h5"]
    for entry in printed:
        summary = read_summary(work / entry["summary_file"])
        assert summary.indices["lm_count"] == entry["lm_count"]
    assert sorted(p.name for p in (work / "many").iterdir()) == ["short.plm.h5", "small.plm.h5"]


def test_a_bad_night_among_several_is_reported_and_the_others_done(work, cli):
    result = cli["mixed"]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("pmld: bad/summary.plm.h5:") and "pmld-raw" in lines[0]
    assert lines[1] == "pmld: 1 of 3 nights failed"
    assert sorted(p.name for p in (work / "mixed").iterdir()) == ["short.plm.h5", "small.plm.h5"]


def test_a_failing_night_among_several_is_named(cli):
    # BUG: errors raised after reading (here: lights off after the end of the 12 min
    # night) are printed without the night's name; with several nights the user cannot
    # tell which one failed.
    result = cli["late"]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if "nights failed" not in line]
    assert len(failed) == 1 and "small.h5" in failed[0], result.stderr


def test_nights_with_the_same_file_name_get_their_own_summaries(work, cli):
    # BUG: a summary is named after the night's file name only: a/night.h5 and
    # b/night.h5 both write same/night.plm.h5 and the second silently replaces the first.
    result = cli["same name"]
    if result.returncode == 0:
        files = {entry["summary_file"] for entry in json.loads(result.stdout)}
        assert len(files) == 2, files
        hashes = {read_summary(work / f).attrs["input_sha256"] for f in files}
        assert len(hashes) == 2
    else:
        fails(result, "night.h5")


def test_analyze_does_not_overwrite_its_input(work, cli):
    # BUG: -o may name the input itself; the raw night is replaced by its summary.
    with h5py.File(work / "precious.h5") as h5:
        assert h5.attrs["schema"] == "pmld-raw", "the night was overwritten"
    fails(cli["precious"], "precious.h5")


def test_an_output_that_is_an_existing_file_is_a_one_line_error(cli):
    # BUG: for several nights (or an -o without a suffix) the output is made a directory
    # with mkdir(exist_ok=True); an existing file there raises FileExistsError (exit 1).
    fails(cli["results"], "results")


# -- bad nights: a summary with the reason, not a crash ------------------------------------
def test_a_night_shorter_than_a_minute_gives_a_summary_with_the_reason(work, files, cli):
    succeeded(files["short"])
    result = succeeded(cli["short"])
    assert "too short" in result.stdout
    summary = read_summary(work / "short.plm.h5")
    assert any("too short" in flag for flag in summary.quality["flags"])
    assert np.isnan(summary.indices["plm_index"]) and np.isnan(summary.indices["lm_index"])
    assert summary.indices["analyzed_hours"] == pytest.approx(30 / 3600)


def test_a_night_shorter_than_a_minute_is_not_given_a_severity(work, cli):
    # BUG: severity_band is chosen before analyze() sets the indices to NaN, so a night
    # that could not be analysed is printed and stored as "<15" (normal).
    assert "<15" not in succeeded(cli["short"]).stdout
    assert read_summary(work / "short.plm.h5").indices["severity_band"] == "unknown"


def test_an_all_zero_night_gives_a_flagged_summary(work, cli):
    assert "flat" in succeeded(cli["zero"]).stdout
    summary = read_summary(work / "zero.plm.h5")
    assert any("flat" in flag for flag in summary.quality["flags"])
    assert summary.indices["lm_count"] == 0 and len(summary.events) == 0
    assert summary.indices["analyzed_hours"] == pytest.approx(10 / 60)


def test_a_clipped_night_gives_a_flagged_summary(work, cli):
    assert "clipped" in succeeded(cli["clipped"]).stdout
    summary = read_summary(work / "clipped.plm.h5")
    assert any("clipped" in flag for flag in summary.quality["flags"])
    fraction = summary.quality["sensors"]["unknown"]["clipped_fraction"]
    assert fraction == pytest.approx(0.05, abs=0.005)


# -- score ---------------------------------------------------------------------------------
def test_score_worked_case_differs_between_wasm2016_and_aasm(work, cli):
    # the scoring guide's worked case: onsets 0, 20, 25, 45, 65, 85 s (1 s LMs):
    # WASM 2016 -> 0 PLMs (the 5 s IMI breaks the run); AASM (IMI 5-90 s) -> 6
    wasm, aasm = succeeded(cli["score wasm"]), succeeded(cli["score aasm"])
    assert "6 LMs, 6 candidates, 0 PLMs" in wasm.stdout and "rules wasm2016" in wasm.stdout
    assert json.loads(aasm.stdout)["plm_count"] == 6
    scored_wasm, scored_aasm = pd.read_csv(work / "wasm.csv"), pd.read_csv(work / "aasm.csv")
    expected = ["onset_s", "offset_s", "side", "candidate", "imi_s", "plm", "series_id"]
    assert list(scored_wasm.columns[:7]) == expected
    assert scored_wasm["onset_s"].tolist() == [0, 20, 25, 45, 65, 85]
    assert scored_wasm["side"].tolist() == ["left"] * 6
    assert scored_wasm["candidate"].all()
    assert scored_wasm["imi_s"].tolist()[1:] == [20, 5, 20, 20, 20]
    assert not scored_wasm["plm"].any() and (scored_wasm["series_id"] == -1).all()
    assert scored_aasm["plm"].all() and (scored_aasm["series_id"] == 0).all()


def test_score_counts_match_summarize(work, cli):
    printed = json.loads(succeeded(cli["score lms"]).stdout)
    scored = pd.read_csv(work / "scored.csv")
    expected = summarize(score_leg_movements(read_lm_csv(work / "lms.csv")), 3600.0)
    assert printed["plm_count"] == int(scored["plm"].sum()) == expected["plm_count"] > 10
    assert printed["lm_count"] == len(scored) == expected["lm_count"]
    assert printed["plm_index"] == pytest.approx(expected["plm_index"])
    assert scored.loc[scored["plm"], "series_id"].nunique() == expected["plm_series_count"]
    assert (scored.loc[~scored["plm"], "series_id"] == -1).all()


def test_score_a_night_without_leg_movements(work, cli):
    # BUG: a CSV with the header only (a night with no LMs) fails with "pmld:
    # analyzed_s must be positive, got 0.0", naming no file: without --hours the
    # analysed time is "first onset to last offset", 0 here.
    assert json.loads(succeeded(cli["score none 8 h"]).stdout)["plm_index"] == 0
    result = cli["score none"]
    if result.returncode == 0:
        assert pd.read_csv(work / "none_scored.csv").empty
        assert json.loads(result.stdout)["lm_count"] == 0
    else:
        fails(result, "none.csv", "--hours")


@pytest.mark.parametrize(
    "key, name, words",
    [
        ("score bad side", "badside.csv", ["side", "line 2"]),
        ("score bad order", "badorder.csv", ["offset", "line 2"]),
    ],
)
def test_score_row_errors_name_the_file_and_line(cli, key, name, words):
    # BUG: these rows pass read_lm_csv and are refused by score_leg_movements, whose
    # message says "leg movements: row 0: ..." without the file, and counts rows from
    # 0 where read_lm_csv counts lines of the file.
    fails(cli[key], name, *words)


# -- import --------------------------------------------------------------------------------
def test_import_round_trips_a_simulated_night(work, files):
    result = succeeded(files["export"])
    assert "effective rate 25.000 Hz" in result.stdout and "wrote imported.h5" in result.stdout
    acc = read_raw(work / "moderate.h5").sensor.acc_g[: 12 * 60 * FS]
    imported = read_raw(work / "imported.h5")
    sensor = imported.sensor
    assert sensor.fs_hz == FS and sensor.side == "left" and sensor.n_samples == len(acc)
    assert len(sensor.gaps) == 0
    assert imported.start_utc.isoformat() == SIM_START
    assert imported.timezone == "Europe/Zurich"
    with h5py.File(work / "imported.h5") as h5:
        step = 1 / h5["sensors/left/acc"].attrs["counts_per_g"]
    # CSV with 7 decimals, then int16 counts of the file's own scale
    assert np.abs(sensor.acc_g - acc).max() <= step / 2 + 1e-6


def test_import_keeps_a_long_hole_as_a_gap(files, cli):
    assert "gaps: 1 (100.000 s missing)" in succeeded(files["gappy"]).stdout
    info = json.loads(succeeded(cli["gap info"]).stdout)
    (sensor,) = info["sensors"]
    assert sensor["gaps"] == 1
    assert sensor["gap_total_s"] == pytest.approx(100, abs=0.05)
    assert sensor["longest_gap_s"] == pytest.approx(100, abs=0.05)
    assert sensor["duration_h"] * 3600 == pytest.approx(1200, abs=0.05)
    assert sensor["recorded_h"] * 3600 == pytest.approx(1100, abs=0.05)


def test_import_resamples_irregular_timestamps(work, files):
    result = succeeded(files["jitter"])
    reported = float(result.stdout.split("effective rate ")[1].split(" Hz")[0])
    assert reported == pytest.approx(1 / 0.02, rel=0.01)
    assert "resampled" in result.stdout and "jitter" in result.stdout
    sensor = read_raw(work / "jitter.h5").sensor
    assert sensor.fs_hz == 50 and sensor.is_uniform and len(sensor.gaps) == 0
    grid = np.arange(sensor.n_samples) / 50
    assert np.abs(sensor.acc_g[:, 0] - 0.1 * np.sin(grid)).max() < 1e-3


def test_import_refuses_time_going_backwards_naming_the_line(cli):
    fails(cli["import back"], "back.csv", "backwards", "line 5")


def test_import_refuses_conflicting_duplicates_naming_the_lines(cli):
    fails(cli["import dup"], "dup.csv", "duplicate", "lines 3 and 4")


def test_import_reports_the_lines_of_dropped_duplicates(work, files):
    # Issue 2: duplicates are reported with line numbers. An exact repeat is dropped
    # and only counted ("exact duplicate rows dropped: 1"): which line went is not said.
    result = succeeded(files["repeat"])
    assert "duplicate rows dropped: 1" in result.stdout
    assert read_raw(work / "repeat.h5").sensor.n_samples == 10
    assert "line 5" in result.stdout, result.stdout


# -- unusable input: one line naming the file, exit 2 ---------------------------------------
@pytest.mark.parametrize("command, name, words", BAD_INPUTS)
def test_unusable_input_is_one_line_naming_the_file(work, cli, command, name, words):
    fails(cli[command, name], name, *words)
    assert not any(p.name.startswith("out") for p in (work / "bad").iterdir())


def test_no_command_prints_help_and_version_prints_the_version(cli):
    assert cli["no command"].returncode == 2
    assert "usage: pmld" in cli["no command"].stdout
    assert succeeded(cli["version"]).stdout.strip() == f"pmld {pmld.__version__}"
    fails(cli["simulate without -o"], "", "-o")
