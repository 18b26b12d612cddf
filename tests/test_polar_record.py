"""Recording from a Polar band (pmld.ble.polar_recorder) end to end over the virtual radio.

A virtual Polar Verity Sense or H10 (pmld.ble.polar_band) serves a simulated night over
PMD; the recorder talks to it with the real bleak client through pmld's bumble backend.
The band logs which source sample went into which frame and what became of the frame,
so every test checks the night the recorder wrote sample by sample against what the
band delivered: a Polar band keeps no replay buffer, so what was lost must be a gap of
exactly the lost samples.
"""

from __future__ import annotations

import asyncio
import io
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bumble")

from pmld.ble.band import VirtualBand, VirtualClock  # noqa: E402
from pmld.ble.cli_record import make_recorder  # noqa: E402
from pmld.ble.pmd import CpStatus, FrameType  # noqa: E402
from pmld.ble.polar_band import PolarFaults, VirtualPolarBand  # noqa: E402
from pmld.ble.polar_recorder import NotAPolarBandError, PolarRecorder  # noqa: E402
from pmld.ble.recorder import (  # noqa: E402
    DeviceError,
    NoBandFoundError,
    Recorder,
    RecordingResult,
    RecordOptions,
    summary_path,
)
from pmld.ble.virtual import VirtualRadio  # noqa: E402
from pmld.io.journal import journal_path  # noqa: E402
from pmld.io.raw import read_raw  # noqa: E402
from pmld.io.summary import read_summary  # noqa: E402
from pmld.provenance import file_sha256  # noqa: E402
from pmld.simulate import simulate_night  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PMLD = [sys.executable, "-m", "pmld.cli"]
RATE = {"verity": 52, "h10": 50}
_NIGHTS: dict = {}


def night_of(hours: float, fs: int, seed: int = 3):
    key = (hours, fs, seed)
    if key not in _NIGHTS:
        _NIGHTS[key] = simulate_night("moderate", hours=hours, fs_hz=float(fs), seed=seed)
    return _NIGHTS[key]


@dataclass
class Recording:
    night: object
    output: Path
    result: RecordingResult
    band: VirtualPolarBand
    recorder: Recorder
    status: str

    def sensor(self):
        return read_raw(self.output).sensor

    def recorded_source_index(self) -> np.ndarray:
        """Source index of every recorded sample, if the first one is right."""
        delivered = np.unique(self.band.stats.source_indices())
        return self.sensor().grid_index() + delivered[0]


def record(
    tmp_path: Path,
    *,
    hours: float = 0.1,
    model: str = "verity",
    fs: int | None = None,
    faults: PolarFaults | None = None,
    mtu: int = 247,
    options: dict | None = None,
    kind: str = "polar",
    band_kwargs: dict | None = None,
    output: Path | None = None,
    stop_after_samples: int | None = None,
) -> Recording:
    fs = fs or RATE[model]
    night = night_of(hours, fs)
    output = output or tmp_path / "night.h5"
    status = io.StringIO()

    async def main():
        clock = VirtualClock(int(night.start_utc.timestamp() * 1e9), math.inf)
        async with VirtualRadio() as radio:
            band = await VirtualPolarBand.from_night(
                radio, night, clock, model=model, faults=faults or PolarFaults(),
                **(band_kwargs or {}),
            )
            opts = RecordOptions(output, scan_timeout_s=3.0, status_every_s=0.5)
            for key, value in (options or {}).items():
                setattr(opts, key, value)
            try:
                recorder = await make_recorder(
                    kind,
                    opts,
                    clock=clock,
                    scanner_kwargs=radio.scanner_kwargs(),
                    client_kwargs=radio.client_kwargs(mtu=mtu),
                    status=status,
                )

                async def night_over():
                    await band.finished.wait()
                    recorder.request_stop("night over")

                async def enough():
                    while recorder.stats.samples < stop_after_samples:
                        await asyncio.sleep(0.01)
                    recorder.request_stop("enough")

                watch = asyncio.ensure_future(night_over() if not stop_after_samples else enough())
                try:
                    result = await asyncio.wait_for(recorder.run(), 120)
                finally:
                    watch.cancel()
            finally:
                await band.close()
            return result, band, recorder

    result, band, recorder = asyncio.run(main())
    return Recording(night, output, result, band, recorder, status.getvalue())


def assert_exact(rec: Recording, tolerance_g: float) -> None:
    """Every delivered sample at its source position, nothing else, values within
    ``tolerance_g`` of the source."""
    delivered = np.unique(rec.band.stats.source_indices())
    recorded = rec.recorded_source_index()
    assert len(recorded) == len(delivered)
    np.testing.assert_array_equal(recorded, delivered)
    source = rec.night.sensor.acc_g[recorded]
    err = np.abs(rec.sensor().acc_g.astype(np.float64) - source.astype(np.float64)).max()
    assert err <= tolerance_g, err
    # gaps: one per hole in the delivered indices, of its exact size
    holes = np.diff(delivered) - 1
    gaps = rec.sensor().gaps
    np.testing.assert_array_equal(gaps["missing_samples"].to_numpy(), holes[holes > 0])


MG = 0.0005 + 1e-6  # half a milli-g (and float32)


# --------------------------------------------------------------------------------------
def test_verity_night_is_the_source_within_a_milli_g(tmp_path):
    rec = record(tmp_path, hours=0.1)
    assert isinstance(rec.recorder, PolarRecorder)
    assert_exact(rec, MG)
    sensor = rec.sensor()
    assert sensor.fs_hz == pytest.approx(52.0, abs=1e-3)
    assert sensor.device["protocol"] == "polar-pmd"
    assert sensor.device["model"] == "Polar Sense"
    assert sensor.device["manufacturer"] == "Polar Electro Oy"
    assert sensor.device["counts_per_g"] == 1000.0
    assert sensor.device["range_g"] == 8
    assert len(sensor.gaps) == 0
    assert rec.result.stats.sessions == 1 and rec.result.stats.bad_frame_count == 0
    assert rec.recorder.mtu == 247  # the exchange the virtual link made
    # the band was STARTed with the Verity's defaults
    assert "0202000134000101100002010800040103" in rec.band.stats.commands
    summary = read_summary(summary_path(rec.output))
    assert summary.input_sha256.endswith(file_sha256(rec.output).split(":")[-1])
    assert not journal_path(rec.output).exists()
    # a UTC start within a frame of the true first sample
    first = rec.band.true_utc_ns(int(rec.recorded_source_index()[0]))
    assert abs(sensor.start_utc.timestamp() * 1e9 - first) < 1.5e9


def test_g_frames_with_factor_are_bit_exact(tmp_path):
    # compressed type 0 in g x FACTOR; 1/4096 makes the simulator's own int16 counts
    rec = record(tmp_path, band_kwargs={"frame_type": FrameType.DELTA_G, "factor": 1 / 4096})
    assert rec.sensor().device["counts_per_g"] == 4096.0
    assert_exact(rec, 0.0)


def test_h10_raw_frames_with_every_fault_give_exact_gaps(tmp_path):
    faults = PolarFaults(
        drop_every=23,
        duplicate_every=17,
        truncate_every=29,
        unknown_every=13,
        disconnects=[(60.0, 12.5), (200.0, 3.0)],
        clock_ppm=60.0,
        sample_rate_ppm=400.0,  # its timestamps show a rate 400 ppm off 50 Hz
    )
    rec = record(tmp_path, model="h10", hours=0.12, faults=faults)
    assert_exact(rec, MG)
    s = rec.result.stats
    assert rec.sensor().device["model"] == "Polar H10"
    assert s.bad_frames["truncated"] == rec.band.stats.truncated > 0
    assert s.bad_frames["unknown_frame_type"] + s.bad_frames["not_acc"] == (
        rec.band.stats.unknown_sent + rec.band.stats.other_sent
    )
    assert s.duplicate_frames == rec.band.stats.duplicated > 0
    assert s.link_drops == 2 and s.sessions == 3
    assert "first bad frame truncated" in "\n".join(rec.result.lines())
    assert "dropped a bad frame" in rec.status  # said once, as it happened


def test_compressed_frames_with_bad_bit_width_are_counted_and_skipped(tmp_path):
    faults = PolarFaults(bad_width_every=7, truncate_every=11, drop_every=19)
    rec = record(tmp_path, faults=faults)
    assert_exact(rec, MG)
    assert rec.result.stats.bad_frames["bad_bit_width"] == rec.band.stats.bad_width > 0


def test_band_stopping_on_its_own_is_started_again(tmp_path):
    rec = record(tmp_path, faults=PolarFaults(device_stop_at_s=[100.0, 250.0]))
    assert_exact(rec, MG)
    assert rec.result.stats.device_stops == 2
    assert rec.result.stats.sessions == 3
    assert "stopped streaming on its own" in rec.status
    assert "2 stop(s) by the band" in "\n".join(rec.result.lines())


def test_start_refused_with_an_error_status_is_counted_and_the_night_goes_on(tmp_path):
    faults = PolarFaults(refuse_start=[CpStatus.INVALID_STATE, CpStatus.DEVICE_IN_CHARGER])
    rec = record(tmp_path, faults=faults)
    assert rec.result.stats.start_refusals == 2
    assert "INVALID_STATE" in rec.status and "DEVICE_IN_CHARGER" in rec.status
    assert_exact(rec, MG)


def test_a_rate_the_band_does_not_offer_is_a_one_line_error(tmp_path):
    with pytest.raises(DeviceError) as info:
        record(tmp_path, options={"rate_hz": 100})
    message = str(info.value)
    assert "52 Hz, not 100 Hz" in message and "--fs" in message and "\n" not in message
    assert not (tmp_path / "night.h5").exists()


def test_h10_rate_and_range_are_chosen_from_what_it_offers(tmp_path):
    rec = record(tmp_path, model="h10", fs=100, hours=0.03, options={"rate_hz": 100,
                                                                     "range_g": 4})
    assert rec.sensor().fs_hz == pytest.approx(100.0, abs=1e-3)
    assert rec.sensor().device["range_g"] == 4
    assert_exact(rec, MG)
    with pytest.raises(DeviceError, match="offers ranges 2/4/8 g, not 16 g"):
        record(tmp_path / "x", model="h10", hours=0.03, options={"range_g": 16},
               output=tmp_path / "other.h5")


def test_mtu_23_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(DeviceError) as info:
        record(tmp_path, mtu=23)
    assert "INVALID_MTU" in str(info.value) and "MTU 23" in str(info.value)


def test_h10_clock_reset_after_power_off_is_bridged_by_the_host_clock(tmp_path):
    faults = PolarFaults(power_off_at_s=150.0, power_off_for_s=20.0)
    rec = record(tmp_path, model="h10", hours=0.1, faults=faults)
    assert rec.result.stats.clock_resets == 1
    assert "clock jumped" in rec.status
    delivered = np.unique(rec.band.stats.source_indices())
    recorded = rec.recorded_source_index()
    assert len(recorded) == len(delivered)
    before = delivered < delivered[np.argmax(np.diff(delivered)) + 1]
    np.testing.assert_array_equal(recorded[before], delivered[before])  # exact before
    error = recorded[~before] - delivered[~before]
    assert np.ptp(error) == 0  # the samples after it stay together
    assert abs(int(error[0])) <= 50  # within a second: the host clock's precision here


def test_verity_keeps_its_clock_through_a_power_off(tmp_path):
    rec = record(tmp_path, faults=PolarFaults(power_off_at_s=150.0, power_off_for_s=20.0))
    assert rec.result.stats.clock_resets == 0
    assert_exact(rec, MG)


@pytest.mark.parametrize("advertise_pmd", [False, True])
def test_auto_detection_picks_the_polar_recorder(tmp_path, advertise_pmd):
    rec = record(tmp_path, hours=0.02, kind="auto", band_kwargs={"advertise_pmd": advertise_pmd})
    assert isinstance(rec.recorder, PolarRecorder)
    assert_exact(rec, MG)


def test_auto_detection_and_kinds_with_a_pmld_band(tmp_path):
    night = night_of(0.02, 100)

    async def main():
        clock = VirtualClock(int(night.start_utc.timestamp() * 1e9), math.inf)
        async with VirtualRadio() as radio:
            band = await VirtualBand.from_night(radio, night, clock)
            try:
                kw = {"scanner_kwargs": radio.scanner_kwargs(), "status": None}
                auto = await make_recorder("auto", RecordOptions(tmp_path / "a.h5"), **kw)
                assert type(auto) is Recorder
                assert auto.options.device == band.peripheral.address
                polar = await make_recorder(
                    "polar", RecordOptions(tmp_path / "b.h5", scan_timeout_s=1.0), clock=clock,
                    client_kwargs=radio.client_kwargs(), **kw,
                )
                with pytest.raises(NoBandFoundError, match="no Polar band found"):
                    await polar.run()
            finally:
                await band.close()

    asyncio.run(main())


def test_a_polar_strap_without_pmd_is_refused_in_one_line(tmp_path):
    night = night_of(0.02, 100)

    async def main():
        clock = VirtualClock(int(night.start_utc.timestamp() * 1e9), math.inf)
        async with VirtualRadio() as radio:
            strap = await VirtualBand.from_night(
                radio, night, clock, kind="foreign", name="Polar H9"
            )
            try:
                recorder = await make_recorder(
                    "auto",
                    RecordOptions(tmp_path / "n.h5", scan_timeout_s=2.0),
                    clock=clock,
                    scanner_kwargs=radio.scanner_kwargs(),
                    client_kwargs=radio.client_kwargs(),
                    status=None,
                )
                assert isinstance(recorder, PolarRecorder)
                with pytest.raises(NotAPolarBandError, match="offers no PMD service"):
                    await recorder.run()
            finally:
                await strap.close()

    asyncio.run(main())
    assert not (tmp_path / "n.h5").exists()


def test_a_continued_recording_places_its_samples_by_the_device_clock(tmp_path):
    """Detach (the journal stays), then record on into the same night: exact gap."""
    night = night_of(0.1, 52)
    output = tmp_path / "night.h5"

    async def main():
        clock = VirtualClock(int(night.start_utc.timestamp() * 1e9), math.inf)
        async with VirtualRadio() as radio:
            band = await VirtualPolarBand.from_night(radio, night, clock)
            kw = {
                "clock": clock,
                "scanner_kwargs": radio.scanner_kwargs(),
                "client_kwargs": radio.client_kwargs(mtu=247),
                "status": None,
            }
            try:
                first = PolarRecorder(RecordOptions(output), **kw)

                async def detach_later():
                    while first.stats.samples < 52 * 150:
                        await asyncio.sleep(0.01)
                    first.detach()

                task = asyncio.ensure_future(detach_later())
                await first.run()
                task.cancel()
                assert journal_path(output).exists() and not output.exists()
                second = PolarRecorder(RecordOptions(output), **kw)

                async def stop_at_end():
                    await band.finished.wait()
                    second.request_stop("night over")

                task = asyncio.ensure_future(stop_at_end())
                result = await second.run()
                task.cancel()
                return band, result
            finally:
                await band.close()

    band, result = asyncio.run(main())
    rec = Recording(night, output, result, band, None, "")
    assert any("continued the interrupted recording" in m for m in result.messages)
    delivered = np.unique(band.stats.source_indices())
    recorded = rec.recorded_source_index()
    # the frame on the air when the first recorder let go may be lost, nothing else
    assert np.isin(recorded, delivered).all()
    assert 0 <= len(delivered) - len(recorded) <= 130
    source = night.sensor.acc_g[recorded].astype(np.float64)
    assert np.abs(rec.sensor().acc_g - source).max() <= MG  # every sample in its place


def test_pmld_record_virtual_polar_from_the_command_line(tmp_path):
    out = tmp_path / "night.h5"
    run = subprocess.run(
        [*PMLD, "record", "--virtual", "polar", "--hours", "0.05",
         "--speed", "max", "--quiet", "-o", str(out), "--disconnect-every", "60",
         "--disconnect-for", "5", "--corrupt-every", "9", "--device-stop-at", "100"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    assert "recorded" in run.stdout and "gap(s)" in run.stdout
    assert "1 stop(s) by the band" in run.stdout
    info = subprocess.run(
        [*PMLD, "info", str(out)], capture_output=True, text=True,
        timeout=60, cwd=ROOT,
    )
    assert "Polar Sense" in info.stdout and "52 Hz" in info.stdout
    assert summary_path(out).exists()


def test_pmld_record_device_polar_without_one_is_one_line(tmp_path):
    run = subprocess.run(
        [*PMLD, "record", "--virtual", "--device", "polar", "--hours",
         "0.02", "--speed", "max", "--scan-timeout", "1", "--quiet", "-o", str(tmp_path / "n.h5")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Polar band found" in lines[0], run.stderr


def test_fault_options_of_the_pmld_band_only_are_refused_for_polar(tmp_path):
    run = subprocess.run(
        [*PMLD, "record", "--virtual", "h10", "--band", "foreign",
         "-o", str(tmp_path / "n.h5")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert run.returncode == 2 and "--band" in run.stderr



def test_pmld_scan_lists_polar_bands_by_kind():
    run = subprocess.run(
        [*PMLD, "scan", "--virtual", "--timeout", "1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    kinds = {line.split()[0]: line.rsplit("  ", 1)[-1].strip() for line in run.stdout.splitlines()}
    assert kinds == {"pmld-band": "pmld band", "Polar": "Polar band"}  # no other device
