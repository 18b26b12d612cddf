"""``pmld batch`` and :func:`pmld.batch.run_batch`: real process pools, a real Dask
cluster, the real ``pmld`` command in subprocesses, real HDF5 files.

The nights are short simulated ones (0.3 h at 100 Hz, about 0.3 MB each), so that the
cost is the machinery (process and cluster start-up), not the analysis. One
``dask.distributed.LocalCluster`` serves the whole module.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import pmld
from pmld.batch import (
    COHORT_COLUMNS,
    BatchResult,
    _run_process,
    plan_batch,
    process_night,
    run_batch,
)
from pmld.cli import main as cli_main
from pmld.io.raw import write_raw
from pmld.io.summary import read_summary
from pmld.night import Night
from pmld.provenance import canonical_json, file_sha256
from pmld.simulate import simulate_night

PMLD = [sys.executable, "-m", "pmld.cli"]
GOOD = ["a.h5", "b.h5", "sub/c.h5", "sub/deeper/d.h5"]
BAD = {  # night -> words its one-line reason must contain
    "broken/corrupt.h5": ["not an HDF5 file"],
    "broken/truncated.h5": ["truncated"],
    "broken/empty.h5": ["empty"],
}


def run(*args, timeout=180, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PMLD, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def simulate(path: Path, seed: int, hours: float = 0.3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_raw(simulate_night("moderate", hours=hours, seed=seed), path)
    return path


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, Path]:
    """``good/``: four nights in nested folders; ``mixed/``: the same plus a corrupt, a
    truncated and an empty night; ``reference/``: what ``pmld analyze`` writes for each."""
    root = tmp_path_factory.mktemp("cohort")
    good, mixed = root / "good", root / "mixed"
    for seed, name in enumerate(GOOD, start=1):
        simulate(good / name, seed)
    shutil.copytree(good, mixed)
    broken = mixed / "broken"
    broken.mkdir()
    (broken / "corrupt.h5").write_bytes(b"\x00not hdf5\x00" * 1000)
    whole = (good / "a.h5").read_bytes()
    (broken / "truncated.h5").write_bytes(whole[: len(whole) // 2])
    empty = Night.from_arrays(np.zeros((0, 3), np.float32), 100.0, "2026-01-05T22:30:00+00:00")
    write_raw(empty, broken / "empty.h5")  # a valid file holding a night of no samples
    # a summary lying among the nights is never taken as a night
    (good / "sub" / "old.plm.h5").write_bytes(b"not a night")

    # what `pmld analyze` writes (its main, in this process: the same code as the command)
    reference = root / "reference"
    default = ["analyze", *[good / n for n in GOOD], "-o", reference / "default"]
    aasm = [
        "analyze", *[good / n for n in GOOD[:2]], "-o", reference / "aasm",
        "--rules", "aasm", "--set", "onset_ratio=5", "--params", _params_file(root),
    ]
    for args in (default, aasm):
        assert cli_main([str(a) for a in args]) == 0
    return {"root": root, "good": good, "mixed": mixed, "reference": reference}


def _params_file(root: Path) -> Path:
    path = root / "params.toml"
    path.write_text("[rules]\nmin_imi_s = 5.0\n")
    return path


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
    )
    yield cluster.scheduler_address
    cluster.close()


def same_summary(batch_file: Path, reference_file: Path) -> None:
    """The summary of ``pmld batch`` holds what ``pmld analyze`` wrote for the night."""
    got, want = read_summary(batch_file), read_summary(reference_file)
    for table in ("events", "series", "monolateral"):
        pd.testing.assert_frame_equal(getattr(got, table), getattr(want, table))
    assert got.indices.keys() == want.indices.keys()
    for key, value in want.indices.items():
        if isinstance(value, float) and np.isnan(value):
            assert np.isnan(got.indices[key]), key
        else:
            assert got.indices[key] == value, key
    assert got.parameters == want.parameters
    assert got.quality == want.quality
    assert got.input_sha256 == want.input_sha256 != ""
    for key in ("start_utc", "timezone", "sides", "duration_s", "rules", "pmld_version"):
        assert got.attrs[key] == want.attrs[key], key


def summary_path(out: Path, night: str) -> Path:
    return out / night.replace(".h5", ".plm.h5")


def mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob("*.plm.h5"))}


# -- the command, process pool ------------------------------------------------------------
def run_on_terminal(*args) -> tuple[int, str, str]:
    """``pmld ARGS`` with standard error on a pseudo-terminal of 100 x 30, as in a shell.

    Returns the exit code, standard output and what the terminal showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        result = subprocess.run(
            [*PMLD, *map(str, args)], stdout=subprocess.PIPE, stderr=slave, text=True,
            timeout=180,
        )
    finally:
        os.close(slave)
    reader.join(30)
    os.close(master)
    return result.returncode, result.stdout, b"".join(chunks).decode(errors="replace")


def test_batch_command_matches_analyze_and_reports_bad_nights(cohort, tmp_path):
    out = tmp_path / "out"
    code, stdout, terminal = run_on_terminal("batch", cohort["mixed"], "-o", out, "--jobs", "2")
    assert code == 2, terminal  # some nights failed
    assert "Traceback" not in terminal
    lines = [line.strip() for line in re.split(r"[\r\n]+", terminal)]
    # each failed night: one line naming it and why; then the count
    failures = [line for line in lines if line.startswith("pmld: ") and "broken/" in line]
    assert len(failures) == len(BAD), terminal
    for night, words in BAD.items():
        (line,) = [f for f in failures if night in f]
        assert line.startswith(f"pmld: {cohort['mixed'] / night}: "), line
        for word in words:
            assert word in line, line
    assert f"pmld: {len(BAD)} of {len(GOOD) + len(BAD)} nights failed" in lines
    assert "7/7" in terminal and "night/s" in terminal  # tqdm's bar on the terminal
    assert "4 analysed, 0 up to date (skipped), 3 failed" in stdout

    for night in GOOD:  # OUTPUT_DIR/<relative path stem>.plm.h5, as pmld analyze wrote it
        name = Path(night).name.replace(".h5", ".plm.h5")
        same_summary(summary_path(out, night), cohort["reference"] / "default" / name)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.plm.h5")) == sorted(
        n.replace(".h5", ".plm.h5") for n in GOOD
    )
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporaries

    # the cohort table, CSV and Parquet
    csv = pd.read_csv(out / "cohort.csv")
    parquet = pd.read_parquet(out / "cohort.parquet")
    assert list(csv.columns) == list(COHORT_COLUMNS) == list(parquet.columns)
    assert csv["path"].tolist() == sorted([*GOOD, *BAD]) == parquet["path"].tolist()
    for frame in (csv, parquet):
        rows = frame.set_index("path")
        for night in GOOD:
            row = rows.loc[night]
            summary = read_summary(summary_path(out, night))
            assert row["status"] == "ok"
            assert pd.isna(row["error"]) or row["error"] == ""
            assert row["input_sha256"] == file_sha256(cohort["mixed"] / night)
            assert row["start_utc"] == "2026-01-05T22:30:00+00:00"
            assert row["start_local"] == "2026-01-05T22:30:00+00:00"
            assert row["night_date"] == "2026-01-05"
            assert row["timezone"] == "UTC"
            assert row["duration_h"] == pytest.approx(0.3)
            for key in ("analyzed_hours", "plm_index", "plms_index", "lm_index"):
                assert row[key] == pytest.approx(summary.indices[key]), key
            for key in ("lm_count", "clm_count", "plm_count", "plm_series_count"):
                assert row[key] == summary.indices[key], key
            assert row["severity_band"] == summary.indices["severity_band"]
            assert bool(row["abnormal"]) == summary.indices["abnormal"]
            window = summary.attrs["window_stop_s"] - summary.attrs["window_start_s"]
            gap = 1 - summary.indices["analyzed_hours"] * 3600 / window
            assert row["gap_fraction"] == pytest.approx(max(0.0, gap), abs=1e-9)
            flags = [*summary.quality["flags"], *summary.sleep.get("flags", [])]
            assert row["flag_count"] == len(flags)
            assert row["sleep_source"] == summary.sleep["source"]
            for key in ("sleep_h", "wake_h", "nonwear_h", "plmw_index"):
                expected = (summary.indices if key == "plmw_index" else summary.sleep)[key]
                assert row[key] == pytest.approx(expected, nan_ok=True), key
            assert row["pmld_version"] == pmld.__version__
            assert row["summary"] == night.replace(".h5", ".plm.h5")
        for night, words in BAD.items():
            row = rows.loc[night]
            assert row["status"] == "failed"
            assert all(word in row["error"] for word in words)
            assert pd.isna(row["plm_index"]) and pd.isna(row["summary"])
    assert str(parquet["plm_count"].dtype) == "Int64"  # Parquet keeps the types
    pd.testing.assert_frame_equal(
        csv[["plm_index", "analyzed_hours", "gap_fraction"]],
        parquet[["plm_index", "analyzed_hours", "gap_fraction"]],
    )


def test_batch_command_resolves_parameters_as_analyze_does(cohort, tmp_path):
    out = tmp_path / "out"
    result = run(
        "batch", cohort["good"], "-o", out, "--pattern", "*.h5", "--quiet",
        "--rules", "aasm", "--set", "onset_ratio=5", "--params", _params_file(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # --quiet
    for night in GOOD[:2]:  # --pattern '*.h5': the top level only
        same_summary(summary_path(out, night), cohort["reference"] / "aasm" / night.replace(
            ".h5", ".plm.h5"))
    assert read_summary(out / "a.plm.h5").parameters["rules"]["min_imi_s"] == 5.0
    assert not (out / "sub").exists()
    # and the resolution the skip rule compares with is the one analyze stored
    tasks = plan_batch(cohort["good"], out, rules="aasm", params={"onset_ratio": 5,
                                                                  "min_imi_s": 5.0})
    assert tasks[0].parameters_json == canonical_json(read_summary(out / "a.plm.h5").parameters)


def test_usage_errors_are_one_line_before_any_work(cohort, tmp_path, capsys, monkeypatch):
    result = run("batch", cohort["good"], "-o", tmp_path / "o1", "--set", "no_such=1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("pmld: unknown parameter 'no_such'")
    assert len(result.stderr.splitlines()) == 1
    cases = {
        "no night files matching": ["--pattern", "*.edf"],
        "cannot connect to the Dask scheduler": ["--scheduler", "tcp://127.0.0.1:9"],
        "--jobs must be at least 1": ["--jobs", "0"],
        "is not a usable glob": ["--pattern", "a/**b"],
    }
    for words, extra in cases.items():
        assert cli_main(["batch", str(cohort["good"]), "-o", str(tmp_path / "o2"), *extra]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("pmld: ") and words in err, err
    assert cli_main(["batch", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o3")]) == 2
    assert "no such directory" in capsys.readouterr().err
    # without dask.distributed: one line naming the extra
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    assert cli_main(["batch", str(cohort["good"]), "-o", str(tmp_path / "o4"),
                     "--engine", "dask"]) == 2
    assert capsys.readouterr().err == (
        'pmld: the dask engine needs dask.distributed: pip install "pmld[dask]"\n'
    )
    assert not list(tmp_path.rglob("*.plm.h5"))


def test_without_tqdm_and_pyarrow(cohort, tmp_path, monkeypatch):
    """Plain progress lines on a terminal without tqdm; CSV only without pyarrow."""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    (tmp_path / "cohort.parquet").write_bytes(b"stale")
    result = run_batch(cohort["good"], tmp_path, jobs=2)
    lines = terminal.getvalue().splitlines()
    assert [line.split("]")[0] for line in lines] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert result.notes == [
        'pyarrow is not installed (pip install "pmld[research]"): wrote cohort.csv only '
        "and removed the stale cohort.parquet"
    ]
    assert result.cohort_parquet is None and not (tmp_path / "cohort.parquet").exists()
    monkeypatch.undo()  # pandas' CSV reader wants pyarrow when it was there at import
    assert len(pd.read_csv(tmp_path / "cohort.csv")) == len(GOOD)


# -- idempotency (the API, a real process pool) ------------------------------------------
def test_second_run_skips_and_changes_recompute(cohort, tmp_path):
    nights, out = tmp_path / "nights", tmp_path / "out"
    shutil.copytree(cohort["good"], nights)

    first = run_batch(nights, out, jobs=2, progress=False)
    assert isinstance(first, BatchResult) and first.exit_code == 0
    assert [o.status for o in first.outcomes] == ["ok"] * len(GOOD)
    assert all(o.worker_peak_rss_mb and o.worker_peak_rss_mb > 50 for o in first.outcomes)
    parquet = pd.read_parquet(out / "cohort.parquet")
    pd.testing.assert_frame_equal(first.cohort, parquet, check_dtype=False)
    written = mtimes(out)

    # the same again: every night skipped, nothing rewritten, the same cohort rows
    again = run_batch(nights, out, jobs=2, progress=False)
    assert [o.status for o in again.outcomes] == ["skipped"] * len(GOOD)
    assert mtimes(out) == written
    pd.testing.assert_frame_equal(
        again.cohort.drop(columns="status"), first.cohort.drop(columns="status")
    )
    # a touched input has the same bytes: still up to date (the rule is the content hash)
    os.utime(nights / "a.h5", ns=(time.time_ns(), time.time_ns()))
    assert {o.status for o in run_batch(nights, out, jobs=2, progress=False).outcomes} == {
        "skipped"
    }
    assert mtimes(out) == written

    # another parameter value: every night again
    changed = run_batch(nights, out, jobs=2, params={"onset_ratio": 5}, progress=False)
    assert [o.status for o in changed.outcomes] == ["ok"] * len(GOOD)
    assert read_summary(out / "a.plm.h5").parameters["detection"]["onset_ratio"] == 5
    assert all(mtimes(out)[k] > v for k, v in written.items())
    assert {o.status for o in run_batch(
        nights, out, jobs=2, params={"onset_ratio": 5.0}, progress=False).outcomes} == {"skipped"}

    # another night under the same name (new bytes): that night only
    simulate(nights / "sub" / "c.h5", seed=99)
    # a summary by another pmld version, or a damaged one: redone (not a failure)
    with h5py.File(out / "a.plm.h5", "a") as h5:
        h5.attrs["pmld_version"] = "0.0.1"
    (out / "b.plm.h5").write_bytes((out / "b.plm.h5").read_bytes()[:1000])
    redo = run_batch(nights, out, jobs=2, params={"onset_ratio": 5}, progress=False)
    status = {o.path: o.status for o in redo.outcomes}
    assert status == {"a.h5": "ok", "b.h5": "ok", "sub/c.h5": "ok", "sub/deeper/d.h5": "skipped"}
    assert read_summary(out / "sub" / "c.plm.h5").input_sha256 == file_sha256(
        nights / "sub" / "c.h5")
    assert read_summary(out / "a.plm.h5").attrs["pmld_version"] == pmld.__version__

    # force: everything again, one night at a time in one worker
    forced = run_batch(nights, out, jobs=1, params={"onset_ratio": 5}, force=True,
                       progress=False)
    assert [o.status for o in forced.outcomes] == ["ok"] * len(GOOD)
    assert len({o.worker_pid for o in forced.outcomes}) == 1


def test_a_list_of_files_keeps_their_relative_paths(cohort, tmp_path):
    files = [cohort["good"] / n for n in ("a.h5", "sub/deeper/d.h5")]
    result = run_batch(files, tmp_path, jobs=1, progress=False)
    assert result.exit_code == 0
    assert result.cohort["path"].tolist() == ["a.h5", "sub/deeper/d.h5"]
    same_summary(tmp_path / "sub" / "deeper" / "d.plm.h5",
                 cohort["reference"] / "default" / "d.plm.h5")


def _kill_on_c(task):
    """A night that kills its worker process outright (as the OOM killer would)."""
    if task.relative == "sub/c.h5":
        os.kill(os.getpid(), signal.SIGKILL)
    return process_night(task)


def test_a_worker_that_dies_fails_its_night_only(cohort, tmp_path):
    tasks = plan_batch(cohort["good"], tmp_path)
    outcomes = []
    _run_process(tasks, 2, outcomes.append, func=_kill_on_c)
    status = {o.path: o.status for o in outcomes}
    assert status == {"a.h5": "ok", "b.h5": "ok", "sub/c.h5": "failed", "sub/deeper/d.h5": "ok"}
    (dead,) = [o for o in outcomes if o.status == "failed"]
    assert "worker process died" in dead.error
    assert not (tmp_path / "sub" / "c.plm.h5").exists()


# -- Dask ---------------------------------------------------------------------------------
def test_dask_scheduler_and_engine_match_analyze(cohort, dask_cluster, tmp_path):
    jobs = {
        "scheduler": ["batch", cohort["good"], "-o", tmp_path / "sched",
                      "--scheduler", dask_cluster],
        "engine": ["batch", cohort["mixed"], "-o", tmp_path / "local", "--engine", "dask",
                   "--jobs", "2"],
    }
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(jobs, pool.map(lambda a: run(*a), jobs.values()), strict=True))
    assert results["scheduler"].returncode == 0, results["scheduler"].stderr
    assert "(Dask, an existing Dask cluster): 4 analysed" in results["scheduler"].stdout
    assert results["engine"].returncode == 2, results["engine"].stderr
    assert "(Dask, 2 workers): 4 analysed, 0 up to date (skipped), 3 failed" in (
        results["engine"].stdout)
    assert "Traceback" not in results["engine"].stderr + results["scheduler"].stderr
    for night in GOOD:
        reference = cohort["reference"] / "default" / Path(night).name.replace(".h5", ".plm.h5")
        same_summary(summary_path(tmp_path / "sched", night), reference)
        same_summary(summary_path(tmp_path / "local", night), reference)
    local = pd.read_csv(tmp_path / "local" / "cohort.csv").set_index("path")
    assert (local.loc[list(BAD), "status"] == "failed").all()
    for night, words in BAD.items():
        assert all(word in local.loc[night, "error"] for word in words)

    # what one engine wrote is up to date for the other
    written = mtimes(tmp_path / "sched")
    again = run_batch(cohort["good"], tmp_path / "sched", scheduler=dask_cluster, progress=False)
    assert again.count("skipped") == len(GOOD) and again.jobs is None
    assert mtimes(tmp_path / "sched") == written
    assert {o.status for o in run_batch(
        cohort["good"], tmp_path / "sched", jobs=2, progress=False).outcomes} == {"skipped"}
    assert mtimes(tmp_path / "sched") == written


# -- interruption -------------------------------------------------------------------------
def test_ctrl_c_keeps_finished_summaries_and_no_partial_file(cohort, tmp_path):
    nights, out = tmp_path / "nights", tmp_path / "out"
    nights.mkdir()
    total = 96  # the same nights under many names: the batch takes ~10 s, Ctrl-C comes first
    for i in range(total):
        shutil.copyfile(cohort["good"] / GOOD[i % len(GOOD)], nights / f"n{i:02d}.h5")
    process = subprocess.Popen(
        [*PMLD, "batch", str(nights), "-o", str(out), "--jobs", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # as from a terminal: a test run started in the background (`cmd &` in a script)
        # ignores SIGINT, and an ignored signal would be inherited
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.plm.h5"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C on a terminal: the whole group
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1].startswith("pmld: interrupted: ")
    done = sorted(out.glob("*.plm.h5"))
    assert 2 <= len(done) < total
    assert [p.name for p in out.iterdir() if not p.name.endswith(".plm.h5")] == []  # no tmp
    for path in done:  # every file there is a whole summary
        night = nights / path.name.replace(".plm.h5", ".h5")
        assert read_summary(path).input_sha256 == file_sha256(night)
    # running again finishes the batch; what was done is skipped
    result = run_batch(nights, out, jobs=2, progress=False)
    assert result.count("skipped") == len(done) and result.count("ok") == total - len(done)
