"""The virtual Polar band (pmld.ble.polar_band), driven through bleak's public API only.

A small PMD host written here (not the recorder) talks to the band over the virtual
radio, so that these tests pin down the band's behaviour on its own: what it advertises,
its GATT services, its control point answers, the frames it streams (decoded with
pmd.decode_acc_frames against the source night) and its faults.
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest

pytest.importorskip("bumble")

from bleak import BleakClient, BleakScanner  # noqa: E402

from pmld.ble import pmd  # noqa: E402
from pmld.ble.band import VirtualClock, night_counts  # noqa: E402
from pmld.ble.pmd import (  # noqa: E402
    CONTROL_POINT_UUID,
    DATA_UUID,
    SERVICE_UUID,
    ControlResponse,
    CpStatus,
    Features,
    FrameType,
    MeasurementStopped,
    MeasurementType,
    SettingType,
)
from pmld.ble.polar_band import PolarFaults, VirtualPolarBand  # noqa: E402
from pmld.ble.virtual import VirtualRadio  # noqa: E402
from pmld.simulate import simulate_night  # noqa: E402

T0_NS = 1_767_652_200_000_000_000
WAIT_S = 5.0
HR_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
EPOCH = T0_NS - pmd.EPOCH_2000_NS  # the band's default device epoch


def uuid16(value: int) -> str:
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


_NIGHTS: dict[tuple[float, int], object] = {}


def night_at(fs_hz: int, minutes: float = 2.0):
    key = (minutes, fs_hz)
    if key not in _NIGHTS:
        _NIGHTS[key] = simulate_night("moderate", hours=minutes / 60, fs_hz=fs_hz, seed=7)
    return _NIGHTS[key]


def mg(night) -> np.ndarray:
    return np.rint(night.sensor.acc_g.astype(np.float64) * 1000).astype(np.int64)


class Host:
    """A minimal PMD host over bleak: collects data frames and control point values."""

    def __init__(self, client: BleakClient):
        self.client = client
        self.frames: list[bytes] = []
        self.cp: asyncio.Queue[bytes] = asyncio.Queue()
        self.cp_log: list[bytes] = []

    @classmethod
    async def connect(cls, radio: VirtualRadio, mtu: int = 247) -> Host:
        device = await BleakScanner.find_device_by_filter(
            lambda d, adv: (adv.local_name or "").startswith("Polar"),
            timeout=WAIT_S,
            **radio.scanner_kwargs(),
        )
        assert device is not None
        client = BleakClient(device, **radio.client_kwargs(mtu=mtu))
        await client.connect()
        host = cls(client)
        await client.start_notify(DATA_UUID, lambda _, v: host.frames.append(bytes(v)))
        await client.start_notify(CONTROL_POINT_UUID, lambda _, v: host._on_cp(bytes(v)))
        return host

    def _on_cp(self, value: bytes) -> None:
        self.cp_log.append(value)
        self.cp.put_nowait(value)

    async def next_cp(self, timeout: float = WAIT_S) -> bytes:
        return await asyncio.wait_for(self.cp.get(), timeout)

    async def command(self, value: bytes) -> bytes:
        await self.client.write_gatt_char(CONTROL_POINT_UUID, value, response=True)
        return await self.next_cp()

    async def start(self, rate_hz: int = 52, range_g: int | None = 8, **kw) -> ControlResponse:
        raw = await self.command(pmd.encode_start(rate_hz=rate_hz, range_g=range_g, **kw))
        answer = pmd.decode_control(raw)
        assert isinstance(answer, ControlResponse)
        return answer

    async def wait_stopped(self, timeout: float = 20.0) -> None:
        """Wait for the device's ``01 02`` (it stopped the measurement)."""
        answer = pmd.decode_control(await self.next_cp(timeout))
        assert answer == MeasurementStopped((MeasurementType.ACC,))

    async def close(self) -> None:
        if self.client.is_connected:
            await self.client.disconnect()


def dedupe(frames: list[bytes]) -> list[bytes]:
    """Drop duplicated notifications (the same bytes twice in a row)."""
    out: list[bytes] = []
    for f in frames:
        if not out or out[-1] != f:
            out.append(f)
    return out


def check_stream(band: VirtualPolarBand, frames: list[bytes], factor: float = 1.0):
    """Good frames hold exactly the source samples the band says it delivered, stamped
    with the device time of each frame's last sample. Returns (batch, source indices)."""
    batch = pmd.decode_acc_frames(dedupe(frames), factor)
    idx = band.stats.source_indices()
    assert batch.n_samples == len(idx) > 0
    np.testing.assert_array_equal(batch.values, band.samples[idx])
    last = idx[batch.offsets[1:] - 1]
    expected = np.array([band.device_stamp_ns(int(i)) for i in last], np.int64)
    np.testing.assert_array_equal(batch.timestamp_ns, expected)
    return batch, idx


def gaps(idx: np.ndarray) -> list[tuple[int, int]]:
    """(last index before, first index after) of each jump in the source indices."""
    at = np.flatnonzero(np.diff(idx) != 1)
    return [(int(idx[i]), int(idx[i + 1])) for i in at]


# --------------------------------------------------------------------------------------
# Advertising and GATT
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["verity", "h10"])
@pytest.mark.parametrize("advertise_pmd", [False, True])
def test_scanning_finds_the_band_by_its_polar_name_and_uuids(model, advertise_pmd):
    name = {"verity": "Polar Sense 1A2B3C4D", "h10": "Polar H10 1A2B3C4D"}[model]
    rate = {"verity": 52, "h10": 25}[model]

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, 1.0)
            band = await VirtualPolarBand.create(
                radio,
                np.zeros((100, 3), np.int16),
                rate,
                clock,
                model=model,
                device_id="1a2b3c4d",
                advertise_pmd=advertise_pmd,
            )
            assert band.name == name
            found = await BleakScanner.discover(
                timeout=0.3, return_adv=True, **radio.scanner_kwargs()
            )
            ((device, adv),) = found.values()
            if advertise_pmd:  # a shortened name next to the 128-bit PMD UUID
                assert adv.service_uuids == [SERVICE_UUID]
                assert name.startswith(adv.local_name) and len(adv.local_name) == 11
            else:
                assert adv.local_name == name
                assert adv.service_uuids == [HR_SERVICE]
            async with BleakClient(device, **radio.client_kwargs()) as client:
                services = {s.uuid for s in client.services}
                assert {SERVICE_UUID, HR_SERVICE, uuid16(0x180A), uuid16(0x180F)} <= services
            await band.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("model", "rate", "features", "settings"),
    [
        (
            "verity",
            52,
            {
                MeasurementType.PPG,
                MeasurementType.ACC,
                MeasurementType.PPI,
                MeasurementType.GYRO,
                MeasurementType.MAG,
            },
            {0: [52], 1: [16], 2: [8], 4: [3]},
        ),
        (
            "h10",
            100,
            {MeasurementType.ECG, MeasurementType.ACC},
            {0: [25, 50, 100, 200], 1: [16], 2: [2, 4, 8], 4: [3]},
        ),
    ],
)
def test_device_information_battery_features_and_settings(model, rate, features, settings):
    model_number = {"verity": b"Polar Sense", "h10": b"Polar H10"}[model]

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, 1.0)
            band = await VirtualPolarBand.create(
                radio,
                np.zeros((100, 3), np.int16),
                rate,
                clock,
                model=model,
                device_id="0BADCAFE",
                battery_pct=77,
            )
            host = await Host.connect(radio)
            read = host.client.read_gatt_char
            assert await read(uuid16(0x2A24)) == model_number
            assert await read(uuid16(0x2A29)) == b"Polar Electro Oy"
            assert await read(uuid16(0x2A25)) == b"0BADCAFE"
            assert len(await read(uuid16(0x2A26))) > 0
            assert await read(uuid16(0x2A19)) == bytes([77])
            cp = await read(CONTROL_POINT_UUID)
            assert cp[0] == 0x0F
            assert pmd.decode_control(cp) == Features(frozenset(features))
            raw = await host.command(pmd.encode_get_settings())
            assert raw[:5] == bytes([0xF0, 0x01, 0x02, 0x00, 0x00])
            answer = pmd.decode_control(raw)
            assert answer.ok and answer.settings == settings
            await host.close()
            await band.close()

    asyncio.run(main())


# --------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mtu", [247, 64])
def test_verity_streams_the_night_exactly_in_compressed_frames(mtu):
    night = night_at(52)

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            band = await VirtualPolarBand.from_night(radio, night, clock)
            host = await Host.connect(radio, mtu=mtu)
            raw = await host.command(pmd.encode_start(rate_hz=52, range_g=8))
            assert raw == bytes([0xF0, 0x02, 0x02, 0x00, 0x00])  # no FACTOR at 1.0
            await asyncio.wait_for(band.finished.wait(), 20)
            await host.wait_stopped()  # the night is over: 01 02
            assert max(len(f) for f in host.frames) <= mtu - 3
            batch, idx = check_stream(band, host.frames)
            np.testing.assert_array_equal(idx, np.arange(len(night.sensor.acc_g)))
            np.testing.assert_array_equal(batch.values, mg(night))
            assert set(batch.frame_type.tolist()) == {FrameType.DELTA_MG}
            assert np.all(batch.unit_mg == 1.0)
            # last-sample convention at exactly 52 Hz from the device epoch
            last = batch.offsets[1:] - 1
            np.testing.assert_array_equal(
                batch.timestamp_ns, EPOCH + np.rint((last + 1) * 1e9 / 52).astype(np.int64)
            )
            assert band.first_sample_utc_ns == T0_NS + round(1e9 / 52)
            counts = batch.count
            if mtu == 247:  # a frame about every second (latency), full ones earlier
                assert counts.max() <= 53 and np.median(counts) == 53
            else:  # small frames fill up before the latency
                assert np.median(counts) < 53
            # the stepped clock moved by the night's length
            assert clock.elapsed_s() == pytest.approx(len(idx) / 52, abs=1.5)
            assert band.stats.device_stops == 1 and not band.streaming
            # the night is over: a new START is refused
            assert (await host.start()).status == CpStatus.INVALID_STATE
            await host.close()
            await band.close()

    asyncio.run(main())


def test_h10_streams_raw_int16_milli_g_at_its_nights_rate_only():
    night = night_at(100, minutes=1.0)

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            band = await VirtualPolarBand.from_night(radio, night, clock, model="h10")
            host = await Host.connect(radio)
            # offered, but not the rate of this band's night
            assert (await host.start(rate_hz=50)).status == CpStatus.INVALID_SAMPLE_RATE
            answer = await host.start(rate_hz=100, range_g=8)
            assert answer.ok and answer.factor == 1.0
            await asyncio.wait_for(band.finished.wait(), 20)
            await host.wait_stopped()
            batch, idx = check_stream(band, host.frames)
            np.testing.assert_array_equal(batch.values, mg(night))
            assert set(batch.frame_type.tolist()) == {FrameType.RAW_INT16}
            # 244 bytes: 10 of header and 39 samples of 6 bytes
            assert batch.count[:-1].tolist() == [39] * (len(batch) - 1)
            await host.close()
            await band.close()

    asyncio.run(main())


def test_delta_g_frames_with_factor_1_over_4096_carry_the_simulators_counts():
    night = night_at(52)
    counts, _, counts_per_g = night_counts(night)
    assert counts_per_g == 4096.0

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            band = await VirtualPolarBand.from_night(
                radio, night, clock, frame_type=FrameType.DELTA_G, factor=1 / 4096
            )
            host = await Host.connect(radio)
            answer = await host.start()
            assert answer.ok and answer.settings[SettingType.FACTOR] == [1 / 4096]
            await asyncio.wait_for(band.finished.wait(), 20)
            await host.wait_stopped()
            batch, _ = check_stream(band, host.frames, answer.factor)
            np.testing.assert_array_equal(batch.values, counts)
            assert np.all(batch.unit_mg == 1000 / 4096)
            await host.close()
            await band.close()

    asyncio.run(main())


def test_a_paced_band_sends_a_frame_about_every_second_until_stop():
    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, 20.0)
            samples = np.tile(np.arange(100_000)[:, None] % 50, (1, 3)).astype(np.int16)
            band = await VirtualPolarBand.create(radio, samples, 52, clock)
            host = await Host.connect(radio)
            assert (await host.start()).ok
            async with asyncio.timeout(WAIT_S):
                while len(host.frames) < 6:
                    await asyncio.sleep(0.01)
            raw = await host.command(pmd.encode_stop())
            assert raw == bytes([0xF0, 0x03, 0x02, 0x00, 0x00])
            assert not band.streaming
            n = len(host.frames)
            await asyncio.sleep(0.3)  # 6 s of night
            assert len(host.frames) == n
            batch, idx = check_stream(band, host.frames)
            # frames leave at pacing ticks (0.4 s of night here) once 1 s old
            spacing = np.diff(batch.timestamp_ns) / 1e9
            assert np.all((spacing > 0.9) & (spacing < 1.6))
            # what was acquired before START was never sent: the stream began at START
            assert idx[0] > 0 and band.first_sample_utc_ns == band.true_utc_ns(int(idx[0]))
            await host.close()
            await band.close()

    asyncio.run(main())


def test_crystal_and_sampling_skews_show_in_timestamps_and_true_times():
    clock_ppm, rate_ppm = 300.0, -120.0

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            faults = PolarFaults(clock_ppm=clock_ppm, sample_rate_ppm=rate_ppm)
            band = await VirtualPolarBand.create(
                radio, np.zeros((52 * 120, 3), np.int16), 52, clock, faults=faults
            )
            host = await Host.connect(radio)
            assert (await host.start()).ok
            await asyncio.wait_for(band.finished.wait(), 20)
            batch, idx = check_stream(band, host.frames)
            last = idx[batch.offsets[1:] - 1]
            # the device's timestamps: the sampling period is off nominal on its own clock
            slope = np.polyfit(last, batch.timestamp_ns.astype(float), 1)[0]
            assert (slope * 52 / 1e9 - 1) * 1e6 == pytest.approx(rate_ppm, abs=0.5)
            # true time: the period on the device clock, shortened by the fast crystal
            period_true = (1 + rate_ppm * 1e-6) / 52 / (1 + clock_ppm * 1e-6)
            assert band.first_sample_utc_ns == T0_NS + round(period_true * 1e9)
            assert clock.elapsed_s() == pytest.approx(len(idx) * period_true, abs=1.5)
            await host.close()
            await band.close()

    asyncio.run(main())


# --------------------------------------------------------------------------------------
# Control point errors
# --------------------------------------------------------------------------------------
def test_start_errors_and_other_answers():
    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, 1.0)
            band = await VirtualPolarBand.create(
                radio, np.zeros((52 * 600, 3), np.int16), 52, clock
            )
            host = await Host.connect(radio, mtu=23)
            assert (await host.start()).status == CpStatus.INVALID_MTU
            await host.close()
            host = await Host.connect(radio)
            assert (await host.start(rate_hz=26)).status == CpStatus.INVALID_SAMPLE_RATE
            assert (await host.start(range_g=4)).status == CpStatus.INVALID_RANGE
            assert (await host.start(range_g=None)).status == CpStatus.INVALID_PARAMETER
            assert (await host.start(resolution=12)).status == CpStatus.INVALID_RESOLUTION
            assert (await host.start(channels=2)).status == CpStatus.INVALID_NUMBER_OF_CHANNELS
            raw = await host.command(bytes([0x09, MeasurementType.ACC]))
            assert raw == bytes([0xF0, 0x09, 0x02, CpStatus.INVALID_OP_CODE, 0x00])
            ppg = pmd.decode_control(await host.command(pmd.encode_get_settings(1)))
            assert ppg.status == CpStatus.NOT_SUPPORTED  # offered, not simulated
            ecg = pmd.decode_control(await host.command(pmd.encode_get_settings(0)))
            assert ecg.status == CpStatus.INVALID_MEASUREMENT_TYPE  # not a Verity's
            assert band.stats.starts == 0 and not host.frames
            assert (await host.start()).ok
            assert (await host.start()).status == CpStatus.ALREADY_IN_STATE
            assert band.streaming
            await host.close()
            await band.close()

    asyncio.run(main())


def test_refuse_start_answers_the_first_starts_with_the_given_statuses():
    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            faults = PolarFaults(refuse_start=[CpStatus.INVALID_STATE, CpStatus.DEVICE_IN_CHARGER])
            band = await VirtualPolarBand.create(
                radio, np.zeros((52 * 30, 3), np.int16), 52, clock, faults=faults
            )
            host = await Host.connect(radio)
            assert (await host.start()).status == CpStatus.INVALID_STATE
            assert (await host.start()).status == CpStatus.DEVICE_IN_CHARGER
            assert not band.streaming and clock.elapsed_s() == 0.0
            assert (await host.start()).ok
            await asyncio.wait_for(band.finished.wait(), 20)
            assert band.stats.refused == 2 and band.stats.starts == 1
            await host.close()
            await band.close()

    asyncio.run(main())


# --------------------------------------------------------------------------------------
# Device stops, disconnections, power cycles: nothing is replayed
# --------------------------------------------------------------------------------------
def test_a_device_stop_indicates_01_02_and_sends_nothing_until_the_next_start():
    night = night_at(52)

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            faults = PolarFaults(device_stop_at_s=[20.0])
            band = await VirtualPolarBand.from_night(radio, night, clock, faults=faults)
            host = await Host.connect(radio)
            assert (await host.start()).ok
            await host.wait_stopped()
            assert not band.streaming and band.stats.device_stops == 1
            n = len(host.frames)
            await asyncio.sleep(0.05)
            assert len(host.frames) == n  # the stepped night waits for the host
            assert clock.elapsed_s() == pytest.approx(20.0)
            batch = pmd.decode_acc_frames(host.frames)
            assert band.device_stamp_ns(band.stats.source_indices()[-1]) <= EPOCH + 20e9
            assert batch.timestamp_ns[-1] <= EPOCH + 20e9
            assert (await host.start()).ok  # the host starts again
            await asyncio.wait_for(band.finished.wait(), 20)
            await host.wait_stopped()
            _, idx = check_stream(band, host.frames)
            # one gap: the samples pending at the stop, never sent
            ((before, after),) = gaps(idx)
            assert after - before - 1 == band.stats.discarded > 0
            assert after == 20 * 52  # the first sample acquired after 20 s
            assert idx[-1] == len(night.sensor.acc_g) - 1
            await host.close()
            await band.close()

    asyncio.run(main())


def test_a_disconnection_loses_what_was_not_sent_and_the_host_must_start_again():
    night = night_at(52)

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            faults = PolarFaults(disconnects=[(10.0, 5.0)])
            band = await VirtualPolarBand.from_night(radio, night, clock, faults=faults)
            host = await Host.connect(radio)
            assert (await host.start()).ok
            async with asyncio.timeout(WAIT_S):
                while host.client.is_connected:
                    await asyncio.sleep(0.01)
            assert not band.streaming and band.stats.disconnects == 1
            host2 = await Host.connect(radio)  # found once back in range, 5 s later
            assert clock.elapsed_s() == pytest.approx(15.0)
            await asyncio.sleep(0.05)
            assert not host2.frames  # no replay, no stream before START
            assert (await host2.start()).ok
            await asyncio.wait_for(band.finished.wait(), 20)
            await host2.wait_stopped()
            _, idx = check_stream(band, host.frames + host2.frames)
            ((before, after),) = gaps(idx)
            # acquired by 10 s: 520 samples; those not yet framed were discarded
            assert before + 1 + band.stats.discarded == 10 * 52
            assert after == 15 * 52  # the first sample acquired after the host came back
            assert band.true_utc_ns(after) == T0_NS + round((after + 1) * 1e9 / 52)
            await host2.close()
            await band.close()

    asyncio.run(main())


@pytest.mark.parametrize("model", ["verity", "h10"])
def test_a_power_cycle_drops_the_link_and_an_h10_restarts_its_clock(model):
    rate = {"verity": 52, "h10": 25}[model]
    night = night_at(rate)

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            faults = PolarFaults(power_off_at_s=10.0, power_off_for_s=5.0)
            band = await VirtualPolarBand.from_night(
                radio, night, clock, model=model, faults=faults
            )
            host = await Host.connect(radio)
            assert (await host.start(rate_hz=rate)).ok
            async with asyncio.timeout(WAIT_S):
                while host.client.is_connected:
                    await asyncio.sleep(0.01)
            host2 = await Host.connect(radio)
            assert (await host2.start(rate_hz=rate)).ok
            await asyncio.wait_for(band.finished.wait(), 20)
            await host2.wait_stopped()
            assert band.stats.power_cycles == 1 and band.stats.disconnects == 0
            _, idx = check_stream(band, host.frames + host2.frames)
            # the IMU restarted at 15 s on the source as it is then
            assert band.segments[1].src0 == 15 * rate
            ((before, after),) = gaps(idx)
            assert before < 10 * rate and after == 15 * rate
            ts1 = pmd.decode_acc_frames(host.frames).timestamp_ns
            ts2 = pmd.decode_acc_frames(host2.frames).timestamp_ns
            first_after = band.device_stamp_ns(after)
            if model == "h10":  # the clock restarted from 0 (year 2000): a jump back
                assert first_after == round(1e9 / rate)
                assert ts2[0] < ts1[-1]
            else:  # the Verity kept its time
                assert first_after == EPOCH + round((after + 1) * 1e9 / rate)
                assert ts2[0] > ts1[-1]
            await host2.close()
            await band.close()

    asyncio.run(main())


def test_a_host_that_reconnects_and_restarts_gets_what_the_band_delivered():
    """Periodic drops, a device stop and a power cycle, all in one night."""
    night = night_at(52, minutes=3.0)

    async def session(radio, band, frames: list[bytes]) -> None:
        host = await Host.connect(radio)
        assert (await host.start()).ok
        while host.client.is_connected and not band.finished.is_set():
            try:
                answer = pmd.decode_control(await host.next_cp(0.02))
            except TimeoutError:
                continue
            if answer == MeasurementStopped((MeasurementType.ACC,)):
                again = await host.start()  # the device stopped: start again
                if band.finished.is_set():  # ... unless the night is over
                    assert again.status == CpStatus.INVALID_STATE
                    break
                assert again.ok
        await asyncio.sleep(0.01)
        frames.extend(host.frames)
        await host.close()

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            faults = PolarFaults(
                disconnect_every_s=30.0,
                disconnect_for_s=4.0,
                max_disconnects=2,
                device_stop_at_s=[75.0],
                power_off_at_s=100.0,
                power_off_for_s=6.0,
            )
            band = await VirtualPolarBand.from_night(radio, night, clock, faults=faults)
            frames: list[bytes] = []
            async with asyncio.timeout(20):
                while not band.finished.is_set():
                    await session(radio, band, frames)
            stats = band.stats
            assert (stats.disconnects, stats.power_cycles, stats.device_stops) == (2, 1, 2)
            assert stats.starts == 5
            _, idx = check_stream(band, frames)
            # first samples after each gap: back in range at 34 s and 64 s, the restart
            # at 75 s, power on at 106 s
            assert [after for _, after in gaps(idx)] == [34 * 52, 64 * 52, 75 * 52, 106 * 52]
            assert idx[-1] == len(night.sensor.acc_g) - 1
            await band.close()

    asyncio.run(main())


# --------------------------------------------------------------------------------------
# Data faults
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    ["drop_every", "duplicate_every", "truncate_every", "bad_width_every", "unknown_every"],
)
def test_each_data_fault_does_what_it_says(fault):
    night = night_at(52)

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            faults = PolarFaults(**{fault: 5})
            band = await VirtualPolarBand.from_night(radio, night, clock, faults=faults)
            host = await Host.connect(radio)
            assert (await host.start()).ok
            await asyncio.wait_for(band.finished.wait(), 20)
            await host.wait_stopped()
            stats = band.stats
            affected = stats.frames // 5
            batch = pmd.decode_acc_frames(host.frames)
            kinds = [e.kind for _, e in batch.errors]
            if fault == "drop_every":
                assert stats.dropped == affected
                assert len(host.frames) == stats.frames - affected and not kinds
            elif fault == "duplicate_every":
                assert stats.duplicated == affected
                assert len(host.frames) == stats.frames + affected and not kinds
            elif fault == "truncate_every":
                assert kinds == ["truncated"] * affected == ["truncated"] * stats.truncated
            elif fault == "bad_width_every":
                assert kinds == ["bad_bit_width"] * affected == ["bad_bit_width"] * stats.bad_width
            else:
                assert stats.unknown_sent + stats.other_sent == affected
                assert kinds.count("unknown_frame_type") == stats.unknown_sent > 0
                assert kinds.count("not_acc") == stats.other_sent > 0
            _, idx = check_stream(band, host.frames)
            lost = fault in ("drop_every", "truncate_every", "bad_width_every")
            assert len(idx) == len(night.sensor.acc_g) - (
                sum(f.count for f in stats.frame_log if not f.delivered) if lost else 0
            )
            assert len(gaps(idx)) == (affected if lost else 0)
            await host.close()
            await band.close()

    asyncio.run(main())


# --------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------
def test_a_stepped_night_streams_far_faster_than_real_time():
    night = night_at(52, minutes=20.0)

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            band = await VirtualPolarBand.from_night(radio, night, clock)
            host = await Host.connect(radio)
            t0 = time.perf_counter()
            assert (await host.start()).ok
            await asyncio.wait_for(band.finished.wait(), 30)
            wall = time.perf_counter() - t0
            await host.wait_stopped()
            assert pmd.decode_acc_frames(host.frames).n_samples == len(night.sensor.acc_g)
            assert 20 * 60 / wall >= 300, f"only {20 * 60 / wall:.0f}x real time"
            await host.close()
            await band.close()

    asyncio.run(main())
