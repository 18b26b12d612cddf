"""The recorder (pmld.ble.recorder) end to end: real bleak API over the virtual radio.

Every test records a simulated night from a virtual band (pmld.ble.band) with the very
recorder code that talks to hardware; nothing of the recorder is replaced. Most nights
run on a stepped clock (``speed=inf``: as fast as the link goes, no night time lost to
the virtual link's latency), a few paced (``speed`` times real time), and the crash and
signal tests run ``pmld record --virtual`` in a subprocess.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bumble")

from bleak.backends.scanner import BaseBleakScanner  # noqa: E402
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason  # noqa: E402

from pmld.ble.band import BandFaults, VirtualBand, VirtualClock  # noqa: E402
from pmld.ble.recorder import (  # noqa: E402
    BluetoothUnavailableError,
    NoBandFoundError,
    NotAPmldBandError,
    Recorder,
    RecordingResult,
    RecordOptions,
    summary_path,
)
from pmld.ble.virtual import VirtualRadio  # noqa: E402
from pmld.errors import UsageError  # noqa: E402
from pmld.io.journal import journal_path, read_journal, repair  # noqa: E402
from pmld.io.raw import read_raw  # noqa: E402
from pmld.io.summary import read_summary  # noqa: E402
from pmld.simulate import simulate_night  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_NIGHTS: dict = {}


def night_of(hours: float, seed: int = 1):
    key = (hours, seed)
    if key not in _NIGHTS:
        _NIGHTS[key] = simulate_night("moderate", hours=hours, seed=seed)
    return _NIGHTS[key]


@dataclass
class Recording:
    night: object
    output: Path
    result: RecordingResult
    band: VirtualBand | None
    status: str

    @property
    def source(self) -> np.ndarray:
        return self.night.sensor.acc_g

    def sensor(self):
        return read_raw(self.output).sensor


def record(
    tmp_path: Path,
    *,
    hours: float = 0.1,
    speed: float = math.inf,
    mtu: int = 247,
    buffer: int = 65536,
    faults: BandFaults | None = None,
    kind: str = "pmld",
    band_name: str = "pmld-band",
    with_band: bool = True,
    options: dict | None = None,
    scanner_kwargs: dict | None = None,
) -> Recording:
    night = night_of(hours)
    output = tmp_path / "night.h5"
    status = io.StringIO()

    async def main():
        clock = VirtualClock(int(night.start_utc.timestamp() * 1e9), speed)
        async with VirtualRadio() as radio:
            band = None
            if with_band:
                band = await VirtualBand.from_night(
                    radio, night, clock, faults=faults or BandFaults(), buffer_samples=buffer,
                    kind=kind, name=band_name,
                )
            opts = RecordOptions(output, scan_timeout_s=3.0, status_every_s=0.5)
            for key, value in (options or {}).items():
                setattr(opts, key, value)
            recorder = Recorder(
                opts,
                clock=clock,
                scanner_kwargs=scanner_kwargs or radio.scanner_kwargs(),
                client_kwargs=radio.client_kwargs(mtu=mtu),
                status=status,
            )
            try:
                result = await asyncio.wait_for(recorder.run(), 120)
            finally:
                if band is not None:
                    await band.close()
            return result, band

    result, band = asyncio.run(main())
    return Recording(night, output, result, band, status.getvalue())


# --------------------------------------------------------------------------------------
# A night, bit for bit
# --------------------------------------------------------------------------------------
def test_a_night_is_recorded_bit_identical_with_its_summary(tmp_path):
    rec = record(tmp_path, hours=0.2)
    sensor = rec.sensor()
    assert np.array_equal(sensor.acc_g, rec.source)
    assert len(sensor.gaps) == 0 and sensor.fs_hz == pytest.approx(100.0, abs=1e-6)
    assert sensor.device["model"] == "pmld-virtual" and sensor.device["counts_per_g"] == 4096.0
    assert not journal_path(rec.output).exists()
    summary = read_summary(summary_path(rec.output))
    assert summary.indices["analyzed_hours"] == pytest.approx(0.2, abs=0.01)
    assert rec.result.summary_path == summary_path(rec.output)
    assert rec.result.stats.samples == len(rec.source)
    assert rec.result.stop_reason == "the band stopped its session (USER)"
    assert "samples" in rec.status and "LM" in rec.status  # the live status line


def test_a_paced_night_at_200x_with_drops_is_bit_identical(tmp_path):
    """Real-time pacing (times 200): backoff and timeouts run on the scaled clock."""
    faults = BandFaults(disconnect_every_s=90, disconnect_for_s=20, max_disconnects=3)
    started = time.monotonic()
    rec = record(tmp_path, hours=0.1, speed=200.0, faults=faults, options={"summary": False})
    wall = time.monotonic() - started
    assert np.array_equal(rec.sensor().acc_g, rec.source)
    assert rec.result.stats.link_drops == 3 and rec.result.stats.gaps == 0
    assert wall < 0.1 * 3600 / 200 + 5  # the night's 1.8 s, plus setting up
    assert rec.result.summary_path is None


def test_twenty_drops_shorter_than_the_buffer_lose_nothing(tmp_path):
    faults = BandFaults(disconnect_every_s=50, disconnect_for_s=20, max_disconnects=20)
    rec = record(tmp_path, hours=0.3, faults=faults, options={"summary": False})
    stats = rec.result.stats
    assert rec.band.stats.disconnects == 20
    assert stats.link_drops == 20 and stats.resumes == 20 and stats.connections == 21
    sensor = rec.sensor()
    assert len(sensor.gaps) == 0 and stats.gaps == 0
    assert np.array_equal(sensor.acc_g, rec.source)


def test_drops_longer_than_the_buffer_are_exactly_the_gaps(tmp_path):
    # 30 s of ring buffer, 60 s out of range four times: 30 s lost each time
    faults = BandFaults(disconnect_every_s=200, disconnect_for_s=60, max_disconnects=4)
    rec = record(tmp_path, hours=0.3, buffer=3000, faults=faults, options={"summary": False})
    sensor = rec.sensor()
    gaps = sensor.gaps
    assert len(gaps) == 4 and rec.result.stats.gaps == 4
    np.testing.assert_allclose(gaps["missing_samples"], 3000, atol=100)
    # every sample sits at its true place: the gaps are exactly the lost spans
    grid = sensor.grid_index()
    assert sensor.n_samples + sensor.missing_samples == len(rec.source)
    assert np.array_equal(sensor.acc_g, rec.source[grid])
    assert rec.result.stats.gap_samples == sensor.missing_samples
    assert rec.result.stats.band_overflow


def test_mtu_23_carries_two_samples_a_frame(tmp_path):
    rec = record(tmp_path, hours=0.03, mtu=23, options={"summary": False})
    assert np.array_equal(rec.sensor().acc_g, rec.source)
    assert rec.result.stats.data_frames >= len(rec.source) // 2


def test_lost_duplicated_damaged_and_unknown_frames_are_counted_and_recovered(tmp_path):
    faults = BandFaults(drop_every=300, duplicate_every=7, corrupt_every=200, unknown_every=250)
    rec = record(tmp_path, hours=0.2, faults=faults, options={"summary": False})
    stats = rec.result.stats
    assert np.array_equal(rec.sensor().acc_g, rec.source)  # nothing lost, nothing twice
    assert stats.duplicate_notifications > 0
    assert stats.lost_notifications > 0 and 0 < stats.packet_loss < 0.01
    assert stats.bad_frames["unknown_type"] == rec.band.stats.unknown_sent
    assert stats.bad_frames["reserved"] + stats.bad_frames["truncated"] == rec.band.stats.corrupted
    assert stats.hole_resumes > 0
    assert "bad frames" in "\n".join(rec.result.lines())


def test_the_bands_clock_skew_is_recovered_in_rate_and_start(tmp_path):
    """+80 ppm over 20 minutes.

    Tolerance: on the stepped clock the virtual link adds no night time, so arrival
    stamps are late only by the wait from a sample's acquisition to the step that sends
    it, under one sample period (10 ms). Along the lower envelope that bounds the start
    error by ~10 ms and the rate error by 10 ms / 1200 s = 8 ppm in the worst case; the
    fit's median slope does far better, so 2 ppm is asserted (the skew itself is 80).
    """
    rec = record(tmp_path, hours=1 / 3, faults=BandFaults(clock_ppm=80.0),
                 options={"summary": False})
    sensor = rec.sensor()
    skew_ppm = (sensor.fs_hz / 100.0 - 1) * 1e6
    assert skew_ppm == pytest.approx(80.0, abs=2.0)
    start_error_ms = (sensor.start_utc.timestamp() * 1e9 - rec.band.first_sample_utc_ns) / 1e6
    assert abs(start_error_ms) < 15
    assert np.array_equal(sensor.acc_g, rec.source)


def test_a_band_that_reboots_starts_a_new_session_placed_after_a_gap(tmp_path):
    """The band's counter starts again from 0: the journal's indices stay the night's."""
    faults = BandFaults(reboot_at_s=300.0, reboot_for_s=30.0)
    rec = record(tmp_path, hours=0.2, faults=faults, options={"summary": False})
    stats = rec.result.stats
    assert rec.band.stats.reboots == 1 and stats.sessions == 2
    sensor = rec.sensor()
    assert len(sensor.gaps) == 1
    first, missing = (int(v) for v in sensor.gaps.iloc[0])
    assert first == pytest.approx(30_000, abs=300)  # what arrived before the reboot
    assert missing == pytest.approx(3000, abs=300)  # 30 s away, plus reconnecting
    np.testing.assert_array_equal(sensor.acc_g[:first], rec.source[:first])
    # after the gap, the samples sit where the night's clock puts them (+-1 sample)
    grid = sensor.grid_index()
    after = sensor.acc_g[first:]
    shifts = [d for d in (-1, 0, 1)
              if np.array_equal(after, rec.source[grid[first] + d : grid[first] + d + len(after)])]
    assert shifts, "the new session is misplaced in the night"
    assert "a new session continues the night" in "\n".join(rec.result.lines())


def test_detach_then_record_again_resumes_the_bands_session(tmp_path):
    """The laptop goes away, the band goes on: the next run takes back its buffer."""
    night = night_of(0.2)
    output = tmp_path / "night.h5"

    async def main():
        clock = VirtualClock(int(night.start_utc.timestamp() * 1e9), math.inf)
        async with VirtualRadio() as radio:
            band = await VirtualBand.from_night(radio, night, clock)

            def recorder():
                opts = RecordOptions(output, scan_timeout_s=3.0, summary=False)
                return Recorder(opts, clock=clock, scanner_kwargs=radio.scanner_kwargs(),
                                client_kwargs=radio.client_kwargs(), status=None)

            first = recorder()
            task = asyncio.ensure_future(first.run())
            while first.stats.samples < 20_000:
                await asyncio.sleep(0.01)
            first.detach("laptop closed")
            detached = await task
            held = read_journal(journal_path(output)).n_received
            # the band records 3 more minutes (in its 11 min buffer) with no host
            await band.peripheral.disconnect()
            target = clock.elapsed_s() + 180
            while clock.elapsed_s() < target:
                clock.advance_to(clock.elapsed_s() + 1)
                await asyncio.sleep(0)
            second = await recorder().run()
            await band.close()
            return detached, held, second

    detached, held, second = asyncio.run(main())
    assert detached.output is None and "continue" in detached.lines()[-2]
    assert held >= 20_000
    assert second.stats.resumes >= 1 and second.stats.sessions == 0
    sensor = read_raw(output).sensor
    assert len(sensor.gaps) == 0
    assert np.array_equal(sensor.acc_g, night.sensor.acc_g)


# --------------------------------------------------------------------------------------
# Bad input and refusals
# --------------------------------------------------------------------------------------
def test_a_band_of_an_older_protocol_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(NotAPmldBandError, match=r"protocol version 0\.9 is older .*firmware"):
        record(tmp_path, kind="old_protocol")
    assert not journal_path(tmp_path / "night.h5").exists()
    assert not (tmp_path / "night.h5").exists()
    assert list(tmp_path.iterdir()) == []  # no journal, no lock file left behind


def test_a_device_that_is_not_a_pmld_band_is_refused(tmp_path):
    with pytest.raises(NotAPmldBandError, match="is not a pmld band: it offers no pmld service"):
        record(tmp_path, kind="foreign", band_name="hr-strap", options={"device": "hr-strap"})
    with pytest.raises(NotAPmldBandError, match='not a pmld band: INFO starts with 48 52 4d 31'):
        record(tmp_path, kind="not_pmld")


def test_no_band_found_is_a_clear_error(tmp_path):
    with pytest.raises(NoBandFoundError, match="no pmld band found within 0.5 s"):
        record(tmp_path, with_band=False, options={"scan_timeout_s": 0.5})
    with pytest.raises(NoBandFoundError, match="no device 'left-ankle' found"):
        record(tmp_path, options={"scan_timeout_s": 0.5, "device": "left-ankle"})
    assert not journal_path(tmp_path / "night.h5").exists()


class PoweredOffScanner(BaseBleakScanner):
    """A bleak scanner backend whose adapter is switched off (as bleak reports it)."""

    def __init__(self, detection_callback, service_uuids, scanning_mode="active", **kwargs):
        super().__init__(detection_callback, service_uuids)

    async def start(self) -> None:
        raise BleakBluetoothNotAvailableError(
            "Bluetooth is turned off", BleakBluetoothNotAvailableReason.POWERED_OFF
        )

    async def stop(self) -> None:
        pass


def test_bluetooth_off_is_a_clear_error(tmp_path):
    with pytest.raises(BluetoothUnavailableError, match=r"powered off.*turn Bluetooth on"):
        record(tmp_path, with_band=False, scanner_kwargs={"backend": PoweredOffScanner})


def test_pmld_scan_without_a_radio_fails_in_one_line():
    """On this machine there may be no adapter (or no BlueZ): one line, exit 2."""
    done = subprocess.run(
        [sys.executable, "-m", "pmld.ble.cli_record", "scan", "--timeout", "1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    if done.returncode == 0:
        pytest.skip("this machine has a working Bluetooth adapter")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pmld: "), done.stderr
    assert re.search("Bluetooth|no pmld band found", lines[0])


def test_an_existing_finished_night_is_not_overwritten(tmp_path):
    (tmp_path / "night.h5").write_bytes(b"a finished night")
    with pytest.raises(UsageError, match="already holds a finished recording"):
        record(tmp_path)
    assert (tmp_path / "night.h5").read_bytes() == b"a finished night"
    assert not journal_path(tmp_path / "night.h5").exists()


def test_two_recorders_on_one_night_are_refused(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    output = tmp_path / "night.h5"
    lock = Path(str(output) + ".lock")
    with open(lock, "ab") as held:  # another recorder holds the night
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UsageError, match="being recorded by another pmld record"):
            record(tmp_path)
        assert lock.exists()  # not taken from its holder
    record(tmp_path, hours=0.02, options={"summary": False})  # a stale lock file is fine
    assert not lock.exists()


# --------------------------------------------------------------------------------------
# Signals and crashes: `pmld record --virtual` in a subprocess
# --------------------------------------------------------------------------------------
STATUS_SAMPLES = re.compile(r"\| ([\d,]+) samples \|")


class Child:
    """A recorder subprocess whose status lines are read, with their arrival times."""

    def __init__(self, args: list[str]):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pmld.ble.cli_record", "record", "--virtual", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )
        self.reports: list[tuple[float, int]] = []  # (monotonic time, samples received)
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line)
            match = STATUS_SAMPLES.search(line)
            if match:
                self.reports.append((time.monotonic(), int(match.group(1).replace(",", ""))))

    def wait_for_samples(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not (self.reports and self.reports[-1][1] >= n):
            assert self.process.poll() is None, "".join(self.stderr)
            assert time.monotonic() < deadline, "".join(self.stderr)
            time.sleep(0.02)

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        out, _ = self.process.communicate(timeout=timeout)
        self._reader.join(5)
        return self.process.returncode, out


def test_sigterm_stops_cleanly_with_the_night_and_its_summary(tmp_path):
    output = tmp_path / "night.h5"
    child = Child(["--hours", "1", "--speed", "100", "--seed", "1", "--status-every", "0.2",
                   "-o", str(output)])
    child.wait_for_samples(9000)  # 90 s of night: enough for a summary
    child.process.send_signal(signal.SIGTERM)
    code, out = child.finish()
    assert code == 0, "".join(child.stderr)
    assert "stopped: SIGTERM received" in out
    sensor = read_raw(output).sensor
    source = night_of(1.0).sensor.acc_g
    assert sensor.n_samples >= 9000 and len(sensor.gaps) == 0
    assert np.array_equal(sensor.acc_g, source[: sensor.n_samples])  # STOP drained it all
    assert read_summary(summary_path(output)).indices["analyzed_hours"] > 0
    assert not journal_path(output).exists()


KILLS = 2


@pytest.mark.parametrize("trial", range(KILLS))
def test_sigkill_at_a_random_moment_then_the_night_continues(tmp_path, trial):
    rng = np.random.default_rng(1000 + trial)
    output = tmp_path / "night.h5"
    child = Child(["--hours", "1", "--speed", "1", "--seed", "1", "--status-every", "0.1",
                   "--no-summary", "-o", str(output)])
    child.wait_for_samples(1)
    time.sleep(rng.uniform(0.5, 6.0))
    killed = time.monotonic()
    child.process.kill()
    child.finish()
    # every sample reported received more than 5 s before the kill is in the journal
    held = read_journal(journal_path(output)).n_received
    late = [t for t, n in child.reports if n > held]
    lost_s = killed - min(late) if late else 0.0
    assert lost_s <= 5.0, f"samples received {lost_s:.2f} s before the kill were lost"
    report = repair(output)  # what `pmld` does with a night left by a crash
    sensor = read_raw(output).sensor
    source = night_of(1.0).sensor.acc_g
    assert sensor.n_samples == held == report["samples_kept"]
    assert np.array_equal(sensor.acc_g, source[:held])

    # the same command again continues the night: both runs, a gap between them. The
    # band's night goes on while the second recorder starts (30 night seconds for every
    # second it takes on a loaded machine), so the night is long enough for that.
    again = Child(["--hours", "1", "--speed", "30", "--seed", "1", "--duration", "200",
                   "--no-summary", "--status-every", "1", "-o", str(output)])
    code, out = again.finish(timeout=90)
    assert code == 0, "".join(again.stderr)
    assert "continued the interrupted recording" in out
    sensor = read_raw(output).sensor
    assert sensor.n_samples > held + 3000
    assert len(sensor.gaps) == 1 and sensor.gaps["sample_index"][0] == held
    np.testing.assert_array_equal(sensor.acc_g[:held], source[:held])
    # the second run's samples are the night's from where the band had got to
    grid = sensor.grid_index()
    tail = sensor.acc_g[held : held + 2000]
    shifts = [d for d in range(-60, 61)
              if np.array_equal(tail, source[grid[held] + d : grid[held] + d + 2000])]
    assert shifts, "the second run's samples are not the simulated night's"
    assert abs(shifts[0]) <= 60
