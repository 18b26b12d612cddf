"""Opening a night whose recording was interrupted rebuilds it from the journal."""

import os

import numpy as np

from pmld.io.journal import JournalWriter, journal_path
from pmld.io.nightfile import open_night
from pmld.io.raw import write_raw
from pmld.simulate import simulate_night

HEADER = {"fs_hz": 50.0, "side": "right", "device": {"counts_per_g": 4096.0}}
T0 = 1_767_650_000_000_000_000


def _journal(output, n_blocks, first=0):
    rng = np.random.default_rng(first)
    with JournalWriter(journal_path(output), HEADER) as writer:
        for i in range(first, first + 25 * n_blocks, 25):
            counts = rng.integers(-50, 50, (25, 3), dtype=np.int16)
            writer.write_samples(i, counts, T0 + int((i + 24) / 50 * 1e9) + 3_000_000)


def test_a_finished_night_opens_without_a_notice(tmp_path):
    path = tmp_path / "n.h5"
    write_raw(simulate_night("healthy", hours=0.05, seed=1), path)
    night, notice = open_night(path)
    assert notice is None and night.sensor.n_samples > 0


def test_an_unfinished_recording_is_rebuilt_with_a_notice(tmp_path):
    path = tmp_path / "n.h5"
    _journal(path, 100)
    night, notice = open_night(path)
    assert night.sensor.n_samples == 2500 and path.exists()
    assert "did not finish" in notice and "2,500 samples" in notice
    # once rebuilt, and nothing newer in the journal, it opens quietly
    os.utime(journal_path(path), (1, 1))
    assert open_night(path)[1] is None


def test_a_journal_newer_than_the_night_file_wins(tmp_path):
    path = tmp_path / "n.h5"
    _journal(path, 100)
    open_night(path)  # the first repair
    os.utime(path, (1, 1))
    _journal(path, 40, first=2500)  # the recording went on
    night, notice = open_night(path)
    assert night.sensor.n_samples == 3500 and notice is not None
