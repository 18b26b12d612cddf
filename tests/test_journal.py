"""The recording journal: round trips, torn and damaged records, a real SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pmld.clock import fit_sample_clock
from pmld.errors import FormatError, InputError
from pmld.io.journal import (
    JournalWriter,
    finish,
    journal_path,
    journal_to_night,
    read_journal,
    repair,
)
from pmld.io.raw import read_raw

HEADER = {"fs_hz": 100.0, "side": "left", "timezone": "Europe/Zurich",
          "device": {"model": "test band", "counts_per_g": 4096.0, "range_g": 8.0}}
T0 = 1_767_650_000_000_000_000


def _block(rng, first, n):
    return rng.integers(-4000, 4000, (n, 3), dtype=np.int16)


def _write(path, blocks, **kw):
    with JournalWriter(path, HEADER, **kw) as writer:
        for first, counts in blocks:
            host = T0 + int((first + len(counts) - 1) / 100.0 * 1e9) + 20_000_000
            writer.write_samples(first, counts, host)


def test_samples_gaps_and_duplicates_come_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    blocks = [(i, _block(rng, i, 36)) for i in range(0, 3600, 36)]
    blocks = blocks[:40] + blocks[45:]  # 5 packets lost for good: 180 samples
    blocks.insert(10, blocks[8])  # a packet received twice
    path = tmp_path / "n.h5.journal"
    _write(path, blocks)
    night, report = journal_to_night(read_journal(path))
    sensor = night.sensor
    unique = {f: c for f, c in blocks}
    expected = np.concatenate([unique[f] for f in sorted(unique)]) / np.float32(4096.0)
    np.testing.assert_array_equal(sensor.acc_g, expected.astype(np.float32))
    assert sensor.gaps.to_dict("list") == {"sample_index": [40 * 36], "missing_samples": [180]}
    assert report["duplicates_dropped"] == 36
    assert sensor.side == "left" and night.timezone == "Europe/Zurich"
    # the clock: sample 0 at T0 (the arrival delay of 20 ms is the fit's floor)
    start_ns = sensor.start_utc.timestamp() * 1e9
    assert abs(start_ns - (T0 + 20e6)) < 1e6


def test_a_torn_last_record_is_dropped_and_cut_off_when_the_recording_continues(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "n.h5.journal"
    _write(path, [(i, _block(rng, i, 36)) for i in range(0, 360, 36)])
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size - 50)  # the last record is torn
    contents = read_journal(path)
    assert contents.n_received == 9 * 36 and contents.dropped_bytes > 0
    with JournalWriter(path, HEADER) as writer:  # continue the night
        assert writer.resumed and writer.next_index == 9 * 36
        writer.write_samples(9 * 36, _block(rng, 0, 36), T0 + 4_000_000_000)
    again = read_journal(path)
    assert again.n_received == 10 * 36 and again.dropped_bytes == 0


def test_a_damaged_record_in_the_middle_loses_only_itself(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "n.h5.journal"
    _write(path, [(i, _block(rng, i, 36)) for i in range(0, 3600, 36)])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    contents = read_journal(path)
    assert contents.n_received == 99 * 36
    assert contents.damaged_bytes > 0 and contents.dropped_bytes == 0


def test_the_first_samples_reach_the_file_at_once(tmp_path):
    """A recorder killed just after its first samples leaves a night that opens."""
    path = tmp_path / "n.h5.journal"
    writer = JournalWriter(path, HEADER, flush_s=60.0)
    writer.write_samples(0, np.ones((36, 3), np.int16), T0)
    assert read_journal(path).n_received == 36  # read while the writer is still open
    writer.write_samples(36, np.ones((36, 3), np.int16), T0 + 10**9)
    assert read_journal(path).n_received == 36  # later ones wait for the next flush
    writer.close()
    assert read_journal(path).n_received == 72


def test_tick_flushes_a_quiet_writer(tmp_path):
    path = tmp_path / "n.h5.journal"
    writer = JournalWriter(path, HEADER, flush_s=0.05)
    writer.write_samples(0, np.ones((36, 3), np.int16), T0)
    writer.write_samples(36, np.ones((36, 3), np.int16), T0 + 10**9)
    time.sleep(0.1)
    writer.tick()  # nothing written since, but the last record is due
    assert read_journal(path).n_received == 72
    writer.close()


def test_time_sync_points_join_the_clock_fit(tmp_path):
    """Blocks all arrive 2 s late (a replay); TIME_SYNC points say when samples were."""
    path = tmp_path / "n.h5.journal"
    with JournalWriter(path, HEADER) as writer:
        for first in range(0, 36_000, 360):
            host = T0 + int((first + 359) / 100.0 * 1e9) + 2_000_000_000
            writer.write_samples(first, np.zeros((360, 3), np.int16), host)
            writer.write_time_sync(first + 359, 0, T0 + int((first + 359) / 100.0 * 1e9))
    night, _ = journal_to_night(read_journal(path))
    start_ns = night.sensor.start_utc.timestamp() * 1e9
    assert abs(start_ns - T0) < 1e6


def test_continuing_with_another_rate_is_refused(tmp_path):
    path = tmp_path / "n.h5.journal"
    _write(path, [(0, np.zeros((10, 3), np.int16))])
    with pytest.raises(InputError, match="fs_hz"):
        JournalWriter(path, {**HEADER, "fs_hz": 50.0})


def test_not_a_journal_and_no_samples_are_clear_errors(tmp_path):
    bad = tmp_path / "x.journal"
    bad.write_bytes(b"hello world, not a journal")
    with pytest.raises(FormatError, match="not a pmld recording journal"):
        read_journal(bad)
    empty = tmp_path / "e.h5.journal"
    JournalWriter(empty, HEADER).close()
    with pytest.raises(InputError, match="no samples"):
        journal_to_night(read_journal(empty))


def test_repair_and_finish_make_a_raw_night(tmp_path):
    rng = np.random.default_rng(3)
    output = tmp_path / "night.h5"
    _write(journal_path(output), [(i, _block(rng, i, 36)) for i in range(0, 720, 36)])
    report = repair(output)
    assert read_raw(output).sensor.n_samples == 720 and journal_path(output).exists()
    assert report["samples_kept"] == 720
    finish(output)
    assert not journal_path(output).exists() and read_raw(output).sensor.n_samples == 720


def test_clock_fit_finds_the_skew_despite_late_replays():
    rng = np.random.default_rng(4)
    true_fs = 100.0 * (1 - 50e-6)  # a crystal 50 ppm slow
    index = np.arange(35, 8 * 3600 * 100, 36)
    arrival = T0 + index / true_fs * 1e9 + rng.exponential(20e6, index.size) + 5e6
    arrival[1000:1200] += 30e9  # a replay after a reconnect arrives late
    fit = fit_sample_clock(index, arrival.astype(np.int64), 100.0)
    assert fit.skew_ppm == pytest.approx(-50, abs=1)
    end_error_ms = (fit.time_ns(index[-1]) - (T0 + index[-1] / true_fs * 1e9)) / 1e6
    assert 0 <= end_error_ms < 10  # the fit can only see the least delay (5 ms)


WRITER = r"""
import sys, time, numpy as np
from pmld.io.journal import JournalWriter
path = sys.argv[1]
rng = np.random.default_rng(0)
w = JournalWriter(path, {"fs_hz": 100.0, "side": "right", "device": {"counts_per_g": 4096.0}})
print("ready", flush=True)
i = 0
while True:  # a fast recorder: 36 samples every 5 ms (7200 samples/s)
    w.write_samples(i, rng.integers(-100, 100, (36, 3), dtype=np.int16), time.time_ns())
    i += 36
    time.sleep(0.005)
"""


@pytest.mark.parametrize("trial", range(5))
def test_sigkill_at_a_random_moment_loses_at_most_the_last_flush(tmp_path, trial):
    rng = np.random.default_rng(100 + trial)
    path = tmp_path / "night.h5.journal"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "ready"
    time.sleep(rng.uniform(0.3, 2.5))
    killed_ns = time.time_ns()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    contents = read_journal(path)
    assert contents.n_received > 0
    last_arrival = max(block[1] for block in contents.blocks)
    lost_s = (killed_ns - last_arrival) / 1e9
    assert lost_s <= 5.0, f"lost {lost_s:.2f} s"
    night, _ = journal_to_night(contents)  # and the night assembles
    assert night.sensor.n_samples == contents.n_received
