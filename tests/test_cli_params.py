"""`pmld params` prints TOML that `--params` reads back to the same parameters."""

import json
import subprocess
import sys
from pathlib import Path

import h5py

from pmld.io.raw import write_raw
from pmld.simulate import simulate_night

PMLD = str(Path(sys.executable).parent / "pmld")


def test_params_round_trip_through_analyze(tmp_path):
    night = tmp_path / "n.h5"
    write_raw(simulate_night("moderate", hours=0.2, seed=5), night)
    printed = subprocess.run(
        [PMLD, "params", "--rules", "aasm", "--set", "onset_ratio=5", "--set", "break_gap_s=7"],
        capture_output=True, text=True, check=True,
    ).stdout
    toml = tmp_path / "p.toml"
    toml.write_text(printed)
    subprocess.run([PMLD, "analyze", str(night), "-o", str(tmp_path / "a.plm.h5"),
                    "--params", str(toml)], capture_output=True, text=True, check=True)
    subprocess.run([PMLD, "analyze", str(night), "-o", str(tmp_path / "b.plm.h5"),
                    "--rules", "aasm", "--set", "onset_ratio=5", "--set", "break_gap_s=7"],
                   capture_output=True, text=True, check=True)
    with h5py.File(tmp_path / "a.plm.h5") as a, h5py.File(tmp_path / "b.plm.h5") as b:
        from_file = json.loads(a.attrs["parameters_json"])
        from_options = json.loads(b.attrs["parameters_json"])
    assert from_file == from_options
    assert from_file["rules_preset"] == "aasm"
    assert from_file["detection"]["onset_ratio"] == 5.0
    assert from_file["window"]["break_gap_s"] == 7.0
    assert from_file["rules"]["min_imi_s"] == 5.0  # AASM's, from the preset


def test_import_range_lets_the_analysis_flag_clipping(tmp_path):
    import numpy as np
    import pandas as pd

    t = np.arange(0, 120, 0.02)
    y = np.where((t % 10) < 1, 2.0, 0.0)  # 10 % of the samples at +2 g
    frame = pd.DataFrame({"time_s": t, "x": 0.0, "y": y, "z": 1.0})
    frame.to_csv(tmp_path / "clip.csv", index=False)
    flags = {}
    for name, extra in (("with", ["--range-g", "2"]), ("without", [])):
        night = tmp_path / f"{name}.h5"
        subprocess.run([PMLD, "import", str(tmp_path / "clip.csv"), "-o", str(night), *extra],
                       capture_output=True, text=True, check=True)
        subprocess.run([PMLD, "analyze", str(night), "-o", str(tmp_path / f"{name}.plm.h5")],
                       capture_output=True, text=True, check=True)
        with h5py.File(tmp_path / f"{name}.plm.h5") as h5:
            flags[name] = json.loads(h5["quality"].attrs["flags"])
    assert any("clipped" in flag for flag in flags["with"])
    assert not any("clipped" in flag for flag in flags["without"])


def test_usage_errors_are_one_line_with_exit_code_2():
    for argv in (["analyze"], ["simulate", "--hours", "x", "-o", "a.h5"], ["frobnicate"]):
        result = subprocess.run([PMLD, *argv], capture_output=True, text=True)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pmld: "), result.stderr
        assert "Traceback" not in result.stderr
