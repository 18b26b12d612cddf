"""The virtual band (pmld.ble.band), driven through bleak's public API only.

A small host written here (not the recorder) speaks the protocol to the band, so that
these tests pin down the band's behaviour on its own: what it advertises, its INFO, the
samples it streams, its clock, its ring buffer and its faults.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

pytest.importorskip("bumble")

from bleak import BleakClient, BleakScanner  # noqa: E402

from pmld.ble.band import BandFaults, VirtualBand, VirtualClock, night_counts  # noqa: E402
from pmld.ble.protocol import (  # noqa: E402
    CONTROL_UUID,
    DATA_UUID,
    INFO_UUID,
    SERVICE_UUID,
    ProtocolError,
    ResumeCommand,
    ResumeReply,
    SampleFrame,
    StartCommand,
    StartReply,
    StatusFrame,
    TimeSyncFrame,
    decode_frame,
    decode_info,
    decode_reply,
    encode_command,
)
from pmld.ble.virtual import VirtualRadio  # noqa: E402
from pmld.simulate import simulate_night  # noqa: E402

T0_NS = 1_767_652_200_000_000_000
WAIT_S = 5.0


def pattern(n: int) -> np.ndarray:
    """A night of int16 counts where sample i says i (x), -i (y) and i % 7 (z)."""
    i = np.arange(n)
    return np.column_stack([i % 32768, -(i % 32768), i % 7]).astype(np.int16)


class Host:
    """A minimal pmld host over bleak: collects frames and replies."""

    def __init__(self, client: BleakClient):
        self.client = client
        self.frames: list[bytes] = []
        self.replies: asyncio.Queue = asyncio.Queue()

    @classmethod
    async def connect(cls, radio: VirtualRadio, mtu: int = 247) -> Host:
        device = await BleakScanner.find_device_by_filter(
            lambda d, adv: SERVICE_UUID in adv.service_uuids, timeout=WAIT_S,
            **radio.scanner_kwargs(),
        )
        assert device is not None
        client = BleakClient(device, **radio.client_kwargs(mtu=mtu))
        await client.connect()
        host = cls(client)
        await client.start_notify(CONTROL_UUID, lambda _, v: host.replies.put_nowait(bytes(v)))
        await client.start_notify(DATA_UUID, lambda _, v: host.frames.append(bytes(v)))
        return host

    async def command(self, cmd):
        await self.client.write_gatt_char(CONTROL_UUID, encode_command(cmd), response=True)
        return decode_reply(await asyncio.wait_for(self.replies.get(), WAIT_S))

    def decoded(self):
        return [decode_frame(f) for f in self.frames]

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """(first index of each DATA frame, all samples) in arrival order."""
        data = [f for f in self.decoded() if isinstance(f, SampleFrame)]
        return np.array([f.first_index for f in data]), np.concatenate([f.acc for f in data])

    async def wait_samples(self, n: int) -> None:
        async with asyncio.timeout(WAIT_S * 4):
            while sum(f.count for f in self.decoded() if isinstance(f, SampleFrame)) < n:
                await asyncio.sleep(0.01)


def test_the_band_advertises_the_service_and_serves_a_valid_info():
    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, 1.0)
            band = await VirtualBand.create(
                radio, pattern(100), 50.0, clock, counts_per_g=4096.0, range_g=8,
                buffer_samples=1234,
            )
            host = await Host.connect(radio)
            info = decode_info(await host.client.read_gatt_char(INFO_UUID))
            assert info.rates_hz == (50,) and info.buffer_samples == 1234
            assert info.counts_per_g(8) == 4096.0 and info.model == "pmld-virtual"
            await host.client.disconnect()
            await band.close()

    asyncio.run(main())


def test_streamed_samples_are_the_nights_counts_in_order():
    night = simulate_night("moderate", hours=2 / 60, seed=3)
    counts, fs_hz, counts_per_g = night_counts(night)
    np.testing.assert_array_equal(counts / np.float32(counts_per_g), night.sensor.acc_g)

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)  # stepped: as fast as the link goes
            band = await VirtualBand.from_night(radio, night, clock)
            host = await Host.connect(radio)
            reply = await host.command(StartCommand(1, 100, 8))
            assert isinstance(reply, StartReply)
            await asyncio.wait_for(band.finished.wait(), WAIT_S * 4)
            await host.wait_samples(len(counts))
            firsts, samples = host.samples()
            assert np.all(np.diff(firsts) > 0)
            np.testing.assert_array_equal(samples, counts)
            # the stepped clock moved by the night's length, not by real time
            assert clock.elapsed_s() == pytest.approx(len(counts) / fs_hz, abs=2.0)
            await host.client.disconnect()
            await band.close()

    asyncio.run(main())


def test_a_paced_band_runs_at_speed_times_real_time():
    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, 50.0)
            band = await VirtualBand.create(radio, pattern(100_000), 100.0, clock)
            host = await Host.connect(radio)
            await host.command(StartCommand(1, 100, 8))
            t0 = clock.elapsed_s()
            await asyncio.sleep(0.5)  # 25 s of night
            acquired = band.stats.acquired
            night_s = clock.elapsed_s() - t0
            # the band samples at pacing steps (every 20 ms real, 1 s of night here), and
            # START was handled a little before its reply reached us
            tick_samples = 100 * band.tick_s * clock.speed
            assert abs(acquired - 100 * night_s) <= 1.5 * tick_samples
            await host.client.disconnect()
            await band.close()

    asyncio.run(main())


def test_the_crystal_skew_shows_in_samples_per_true_second_and_in_time_sync():
    ppm = 250.0

    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            band = await VirtualBand.create(
                radio, pattern(120_000), 100.0, clock, faults=BandFaults(clock_ppm=ppm)
            )
            host = await Host.connect(radio)
            await host.command(StartCommand(1, 100, 8))
            progress = []  # (true night time, samples acquired), read between steps
            while not band.finished.is_set():
                progress.append((clock.elapsed_s(), band.stats.acquired))
                await asyncio.sleep(0.002)
            syncs = [f for f in host.decoded() if isinstance(f, TimeSyncFrame)]
            index = np.array([s.sample_index for s in syncs], dtype=float)
            device_us = np.array([s.sample_time_us for s in syncs], dtype=float)
            # index -> band clock: exactly the nominal period in band microseconds
            slope = np.polyfit(index, device_us, 1)[0]
            assert slope == pytest.approx(10_000.0, abs=0.01)
            # samples per true second: 100 * (1 + ppm)
            t, n = np.array(progress[len(progress) // 10 :]).T
            true_rate = np.polyfit(t, n, 1)[0]
            assert (true_rate / 100.0 - 1) * 1e6 == pytest.approx(ppm, abs=5)
            await host.client.disconnect()
            await band.close()

    asyncio.run(main())


def test_after_a_long_drop_resume_reports_exactly_what_was_overwritten():
    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            faults = BandFaults(disconnects=[(10.0, 50.0)])  # 50 s out of range
            band = await VirtualBand.create(
                radio, pattern(8000), 100.0, clock, buffer_samples=2000, faults=faults
            )
            host = await Host.connect(radio)
            start = await host.command(StartCommand(1, 100, 8))
            async with asyncio.timeout(WAIT_S):
                while host.client.is_connected:
                    await asyncio.sleep(0.01)
            firsts, samples = host.samples()
            held = len(samples)
            host2 = await Host.connect(radio)
            reply = await host2.command(ResumeCommand(2, start.session_id, held))
            assert isinstance(reply, ResumeReply) and reply.overwritten
            # the ring holds the newest 2000 samples: everything older is gone for good
            assert reply.first_index == reply.next_index - 2000
            assert reply.lost_samples == reply.first_index - held
            frames = host2.decoded()
            await host2.wait_samples(reply.next_index - reply.first_index)
            frames = host2.decoded()
            assert isinstance(frames[0], StatusFrame) and frames[0].overflow
            data = [f for f in frames if isinstance(f, SampleFrame)]
            assert data[0].first_index == reply.first_index
            np.testing.assert_array_equal(data[0].acc[0], pattern(8000)[reply.first_index])
            assert band.stats.disconnects == 1
            await host2.client.disconnect()
            await band.close()

    asyncio.run(main())


def test_corrupt_and_unknown_frames_fail_to_decode_with_their_kind():
    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, math.inf)
            faults = BandFaults(corrupt_every=5, unknown_every=7)
            band = await VirtualBand.create(radio, pattern(3000), 100.0, clock, faults=faults)
            host = await Host.connect(radio)
            await host.command(StartCommand(1, 100, 8))
            await asyncio.wait_for(band.finished.wait(), WAIT_S * 4)
            await asyncio.sleep(0.05)
            kinds = []
            for value in host.frames:
                try:
                    decode_frame(value)
                except ProtocolError as error:
                    kinds.append(error.kind)
            assert kinds.count("unknown_type") == band.stats.unknown_sent > 0
            assert kinds.count("reserved") + kinds.count("truncated") == band.stats.corrupted > 0
            assert {"reserved", "truncated"} <= set(kinds)
            await host.client.disconnect()
            await band.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("kind", "kinds"),
    [("old_protocol", "version_old"), ("not_pmld", "not_pmld")],
)
def test_impostor_infos_are_refused_by_the_decoder(kind, kinds):
    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, 1.0)
            band = await VirtualBand.create(radio, pattern(10), 100.0, clock, kind=kind)
            host = await Host.connect(radio)
            with pytest.raises(ProtocolError) as caught:
                decode_info(await host.client.read_gatt_char(INFO_UUID))
            assert caught.value.kind == kinds
            await host.client.disconnect()
            await band.close()

    asyncio.run(main())


def test_a_foreign_device_has_no_pmld_service():
    async def main():
        async with VirtualRadio() as radio:
            clock = VirtualClock(T0_NS, 1.0)
            band = await VirtualBand.create(
                radio, pattern(10), 100.0, clock, kind="foreign", name="hr-strap"
            )
            device = await BleakScanner.find_device_by_name(
                "hr-strap", timeout=WAIT_S, **radio.scanner_kwargs()
            )
            async with BleakClient(device, **radio.client_kwargs()) as client:
                assert SERVICE_UUID not in {s.uuid for s in client.services}
            await band.close()

    asyncio.run(main())
