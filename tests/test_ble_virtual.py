"""The bleak backend over bumble's virtual radio (pmld.ble.virtual).

Everything on the central side goes through bleak's public API only (BleakScanner,
BleakClient), as the recorder does; the peripheral is a small bumble GATT server
defined here. Each test runs its own event loop with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import (
    BleakCharacteristicNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

pytest.importorskip("bumble")

from bumble import gatt, hci  # noqa: E402
from bumble.att import Attribute  # noqa: E402

from pmld.ble.virtual import (  # noqa: E402
    BumbleClient,
    Fault,
    FaultPlan,
    VirtualPeripheral,
    VirtualRadio,
    build_advertising_data,
)

# A test profile (UUIDs made up for these tests only).
SERVICE_UUID = "3a6f0001-5f8e-4c1b-9d2a-7e40c5b1a001"
INFO_UUID = "3a6f0002-5f8e-4c1b-9d2a-7e40c5b1a001"  # read
CONTROL_UUID = "3a6f0003-5f8e-4c1b-9d2a-7e40c5b1a001"  # write + indicate
DATA_UUID = "3a6f0004-5f8e-4c1b-9d2a-7e40c5b1a001"  # notify
SECRET_UUID = "3a6f0005-5f8e-4c1b-9d2a-7e40c5b1a001"  # read, needs authentication
COMMAND_UUID = "3a6f0006-5f8e-4c1b-9d2a-7e40c5b1a001"  # write without response
SLOW_UUID = "3a6f0007-5f8e-4c1b-9d2a-7e40c5b1a001"  # read that answers only when released
OTHER_SERVICE_UUID = "3a6f1001-5f8e-4c1b-9d2a-7e40c5b1a001"
ABSENT_UUID = "3a6f0fff-5f8e-4c1b-9d2a-7e40c5b1a001"
INFO_VALUE = b"virtual band v1"
NAME = "test-band"
WAIT_S = 5.0


@dataclass
class Band:
    """The peripheral side of the test profile."""

    peripheral: VirtualPeripheral
    control: gatt.Characteristic
    data: gatt.Characteristic
    commands: list[bytes] = field(default_factory=list)
    slow_read_started: asyncio.Event = field(default_factory=asyncio.Event)
    slow_read_release: asyncio.Event = field(default_factory=asyncio.Event)

    async def stream(self, count: int, size: int = 244) -> None:
        """Notify ``count`` frames: a 4-byte counter padded to ``size`` bytes."""
        for index in range(count):
            frame = index.to_bytes(4, "little") + bytes(range(size - 4))
            await self.peripheral.notify(self.data, frame)


async def add_band(radio: VirtualRadio, name: str = NAME) -> Band:
    band: Band

    def on_control_write(connection, value: bytes) -> None:
        # Answer a command with an indication, as a band's control point does.
        band.peripheral.spawn(band.peripheral.indicate(band.control, b"\xf0" + value))

    def on_command_write(connection, value: bytes) -> None:
        band.commands.append(bytes(value))

    async def on_slow_read(connection) -> bytes:
        band.slow_read_started.set()
        await band.slow_read_release.wait()
        return b"late"

    control = gatt.Characteristic(
        CONTROL_UUID,
        gatt.Characteristic.Properties.WRITE | gatt.Characteristic.Properties.INDICATE,
        Attribute.Permissions.WRITEABLE,
        gatt.CharacteristicValue(write=on_control_write),
    )
    data = gatt.Characteristic(
        DATA_UUID, gatt.Characteristic.Properties.NOTIFY, Attribute.Permissions.READABLE, b""
    )
    service = gatt.Service(
        SERVICE_UUID,
        [
            gatt.Characteristic(
                INFO_UUID,
                gatt.Characteristic.Properties.READ,
                Attribute.Permissions.READABLE,
                INFO_VALUE,
            ),
            control,
            data,
            gatt.Characteristic(
                SECRET_UUID,
                gatt.Characteristic.Properties.READ,
                Attribute.Permissions.READ_REQUIRES_AUTHENTICATION,
                b"secret",
            ),
            gatt.Characteristic(
                COMMAND_UUID,
                gatt.Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
                Attribute.Permissions.WRITEABLE,
                gatt.CharacteristicValue(write=on_command_write),
            ),
            gatt.Characteristic(
                SLOW_UUID,
                gatt.Characteristic.Properties.READ,
                Attribute.Permissions.READABLE,
                gatt.CharacteristicValue(read=on_slow_read),
            ),
        ],
    )
    peripheral = await radio.add_peripheral(name, services=[service])
    band = Band(peripheral, control, data)
    return band


async def find_band(radio: VirtualRadio, name: str = NAME):
    device = await BleakScanner.find_device_by_name(name, timeout=WAIT_S, **radio.scanner_kwargs())
    assert device is not None
    return device


class Collector:
    """A notification callback recording what bleak delivers."""

    def __init__(self, expected: int | None = None) -> None:
        self.values: list[bytearray] = []
        self.senders: list[str] = []
        self.expected = expected
        self.done = asyncio.Event()

    def __call__(self, sender, value: bytearray) -> None:
        self.senders.append(sender.uuid)
        self.values.append(value)
        if self.expected is not None and len(self.values) >= self.expected:
            self.done.set()

    async def wait(self, count: int | None = None) -> None:
        if count is not None:
            self.expected = count
            if len(self.values) >= count:
                return
            self.done.clear()
        await asyncio.wait_for(self.done.wait(), WAIT_S)

    def counters(self) -> list[int]:
        return [int.from_bytes(value[:4], "little") for value in self.values]


# --------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------
def test_scan_finds_the_band_by_name_and_by_service_uuid():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            await radio.add_peripheral("other", service_uuids=[OTHER_SERVICE_UUID])

            by_name = await find_band(radio)
            assert by_name.address == band.peripheral.address
            assert by_name.name == NAME

            by_uuid = await BleakScanner.find_device_by_filter(
                lambda device, adv: SERVICE_UUID in adv.service_uuids,
                timeout=WAIT_S,
                **radio.scanner_kwargs(),
            )
            assert by_uuid is not None and by_uuid.address == band.peripheral.address

            found = await BleakScanner.discover(
                timeout=0.2, return_adv=True, service_uuids=[SERVICE_UUID], **radio.scanner_kwargs()
            )
            assert set(found) == {band.peripheral.address}
            device, adv = found[band.peripheral.address]
            assert adv.local_name == NAME
            assert adv.service_uuids == [SERVICE_UUID]

            everything = await BleakScanner.discover(timeout=0.2, **radio.scanner_kwargs())
            assert {d.name for d in everything} == {NAME, "other"}

    asyncio.run(main())


def test_scanning_for_an_absent_name_times_out_with_none():
    async def main():
        async with VirtualRadio() as radio:
            await add_band(radio)
            start = time.monotonic()
            device = await BleakScanner.find_device_by_name(
                "no-such-band", timeout=0.3, **radio.scanner_kwargs()
            )
            assert device is None
            assert 0.25 < time.monotonic() - start < 2.0

    asyncio.run(main())


def test_advertising_data_must_fit_a_legacy_advertisement():
    assert len(build_advertising_data("pmld-band1", [SERVICE_UUID])) == 30
    with pytest.raises(ValueError, match="31"):
        build_advertising_data("a-name-far-too-long", [SERVICE_UUID])


# --------------------------------------------------------------------------------------
# Connection, discovery, MTU
# --------------------------------------------------------------------------------------
def test_connect_discovers_the_profile_and_negotiates_mtu_247():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            device = await find_band(radio)
            async with BleakClient(device, timeout=WAIT_S, **radio.client_kwargs()) as client:
                assert client.is_connected
                assert client.mtu_size == 247
                assert band.peripheral.mtu == 247
                service = client.services.get_service(SERVICE_UUID)
                assert service is not None
                props = {c.uuid: c.properties for c in service.characteristics}
                assert props[INFO_UUID] == ["read"]
                assert props[CONTROL_UUID] == ["write", "indicate"]
                assert props[DATA_UUID] == ["notify"]
                assert props[COMMAND_UUID] == ["write-without-response"]
                data = client.services.get_characteristic(DATA_UUID)
                assert [d.uuid for d in data.descriptors] == [
                    "00002902-0000-1000-8000-00805f9b34fb"
                ]
                assert data.max_write_without_response_size == 244
                assert await client.read_gatt_char(INFO_UUID) == bytearray(INFO_VALUE)
                # the GAP device name, a 16-bit UUID
                assert await client.read_gatt_char("2a00") == NAME.encode()
                assert await client.read_gatt_char(INFO_UUID, use_cached=True) == INFO_VALUE

                await client.start_notify(DATA_UUID, Collector())
                cccd = data.descriptors[0]
                assert await client.read_gatt_descriptor(cccd) == bytearray(b"\x01\x00")
                with pytest.raises(ValueError):  # bleak's own rule: use start_notify
                    await client.write_gatt_descriptor(cccd, b"\x00\x00")
            assert not client.is_connected

            only = BleakClient(
                device, services=[SERVICE_UUID], timeout=WAIT_S, **radio.client_kwargs()
            )
            async with only:
                assert [s.uuid for s in only.services] == [SERVICE_UUID]

    asyncio.run(main())


def test_forced_mtu_23_cuts_a_100_byte_notification_to_20_bytes():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            device = await find_band(radio)
            client = BleakClient(device, timeout=WAIT_S, **radio.client_kwargs(mtu=23))
            async with client:
                assert client.mtu_size == 23
                got = Collector(expected=1)
                await client.start_notify(DATA_UUID, got)
                await band.peripheral.wait_for_subscription(band.data, timeout=WAIT_S)
                frame = bytes(range(100))
                assert await band.peripheral.notify(band.data, frame) == 1
                await got.wait()
                assert got.values == [bytearray(frame[:20])]
                assert got.senders == [DATA_UUID]

    asyncio.run(main())


def test_connect_times_out_when_the_band_is_silent_then_succeeds_when_it_advertises():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            await band.peripheral.stop_advertising()
            client = BleakClient(band.peripheral.address, timeout=0.3, **radio.client_kwargs())
            with pytest.raises(TimeoutError):
                await client.connect()
            assert not client.is_connected
            await band.peripheral.start_advertising()
            # by address string, with no scan
            async with BleakClient(
                band.peripheral.address, timeout=WAIT_S, **radio.client_kwargs()
            ) as client:
                assert await client.read_gatt_char(INFO_UUID) == bytearray(INFO_VALUE)

    asyncio.run(main())


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def test_500_notifications_arrive_complete_and_in_order():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            device = await find_band(radio)
            async with BleakClient(device, timeout=WAIT_S, **radio.client_kwargs()) as client:
                got = Collector()
                await client.start_notify(DATA_UUID, got)
                await band.peripheral.wait_for_subscription(band.data, timeout=WAIT_S)
                await band.stream(500)
                await got.wait(500)
                assert got.counters() == list(range(500))
                assert all(len(value) == 244 for value in got.values)
                assert band.peripheral.notifications_sent == 500

                await client.stop_notify(DATA_UUID)
                await asyncio.sleep(0.05)
                assert not band.peripheral.is_subscribed(band.data)
                assert await band.peripheral.notify(band.data, b"late") == 0

    asyncio.run(main())


def test_async_notification_callbacks_are_supported():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            device = await find_band(radio)
            received: asyncio.Queue[bytearray] = asyncio.Queue()

            async def on_data(sender, value: bytearray) -> None:
                await received.put(value)

            async with BleakClient(device, timeout=WAIT_S, **radio.client_kwargs()) as client:
                await client.start_notify(DATA_UUID, on_data)
                await band.peripheral.wait_for_subscription(band.data, timeout=WAIT_S)
                await band.stream(3, size=8)
                values = [await asyncio.wait_for(received.get(), WAIT_S) for _ in range(3)]
                assert [int.from_bytes(v[:4], "little") for v in values] == [0, 1, 2]

    asyncio.run(main())


def test_write_with_response_is_answered_by_an_indication():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            device = await find_band(radio)
            async with BleakClient(device, timeout=WAIT_S, **radio.client_kwargs()) as client:
                replies = Collector(expected=1)
                await client.start_notify(CONTROL_UUID, replies)
                assert band.peripheral.is_subscribed(band.control, indicate=True)
                await client.write_gatt_char(CONTROL_UUID, b"\x02\x01", response=True)
                await replies.wait()
                assert replies.values == [bytearray(b"\xf0\x02\x01")]

                await client.write_gatt_char(COMMAND_UUID, b"\x03", response=False)
                await client.write_gatt_char(COMMAND_UUID, bytearray(b"\x04"), response=False)
                await asyncio.sleep(0.05)
                assert band.commands == [b"\x03", b"\x04"]
                with pytest.raises(BleakError, match="exceeds"):
                    await client.write_gatt_char(COMMAND_UUID, bytes(245), response=False)

    asyncio.run(main())


def test_an_indication_cut_short_by_link_loss_returns_false_at_once():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            device = await find_band(radio)
            client = BleakClient(device, timeout=WAIT_S, **radio.client_kwargs())
            await client.connect()
            await client.start_notify(CONTROL_UUID, Collector())
            indication = asyncio.create_task(band.peripheral.indicate(band.control, b"\x01"))
            await band.peripheral.disconnect()
            assert await asyncio.wait_for(indication, 1.0) is False  # not 30 s later
            assert not client.is_connected

    asyncio.run(main())


def test_starting_notifications_twice_raises():
    async def main():
        async with VirtualRadio() as radio:
            await add_band(radio)
            device = await find_band(radio)
            async with BleakClient(device, timeout=WAIT_S, **radio.client_kwargs()) as client:
                await client.start_notify(DATA_UUID, Collector())
                with pytest.raises(BleakError, match="already started"):
                    await client.start_notify(DATA_UUID, Collector())
                with pytest.raises(BleakError, match="neither notify nor indicate"):
                    await client.start_notify(INFO_UUID, Collector())

    asyncio.run(main())


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------
def test_read_errors_raise_bleak_errors():
    async def main():
        async with VirtualRadio() as radio:
            await add_band(radio)
            device = await find_band(radio)
            async with BleakClient(device, timeout=WAIT_S, **radio.client_kwargs()) as client:
                with pytest.raises(BleakCharacteristicNotFoundError):
                    await client.read_gatt_char(ABSENT_UUID)
                with pytest.raises(BleakGATTProtocolError) as error:
                    await client.read_gatt_char(SECRET_UUID)
                assert error.value.code == BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION
            with pytest.raises(BleakError, match="Not connected"):
                await client.read_gatt_char(INFO_UUID)

    asyncio.run(main())


def test_a_read_cut_short_by_link_loss_raises_bleak_error_not_cancelled_error():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            device = await find_band(radio)
            client = BleakClient(device, timeout=WAIT_S, **radio.client_kwargs())
            await client.connect()
            read = asyncio.create_task(client.read_gatt_char(SLOW_UUID))
            await asyncio.wait_for(band.slow_read_started.wait(), WAIT_S)
            await band.peripheral.disconnect()
            with pytest.raises(BleakError, match="disconnected"):
                await asyncio.wait_for(read, WAIT_S)
            band.slow_read_release.set()

    asyncio.run(main())


def test_a_client_without_the_radio_is_refused():
    with pytest.raises(BleakError, match="radio"):
        BleakClient("C0:00:00:00:00:01", backend=BumbleClient)


# --------------------------------------------------------------------------------------
# Link loss and reconnection
# --------------------------------------------------------------------------------------
def test_peripheral_disconnect_fires_the_callback_and_a_fresh_client_reconnects():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            device = await find_band(radio)
            lost: list[BleakClient] = []
            lost_event = asyncio.Event()

            def on_disconnect(client: BleakClient) -> None:
                lost.append(client)
                lost_event.set()

            first = BleakClient(device, on_disconnect, timeout=WAIT_S, **radio.client_kwargs())
            await first.connect()
            got = Collector()
            await first.start_notify(DATA_UUID, got)
            await band.peripheral.wait_for_subscription(band.data, timeout=WAIT_S)
            await band.stream(10)
            await got.wait(10)

            await band.peripheral.disconnect(hci.HCI_CONNECTION_TIMEOUT_ERROR)
            await asyncio.wait_for(lost_event.wait(), WAIT_S)
            assert lost == [first]
            assert not first.is_connected
            with pytest.raises(BleakError):
                await first.read_gatt_char(INFO_UUID)

            # the band advertises again; reconnect with a fresh client, as on BlueZ
            device = await find_band(radio)
            second = BleakClient(device, on_disconnect, timeout=WAIT_S, **radio.client_kwargs())
            await second.connect()
            again = Collector()
            await second.start_notify(DATA_UUID, again)
            await band.peripheral.wait_for_subscription(band.data, timeout=WAIT_S)
            await band.stream(5)
            await again.wait(5)
            assert again.counters() == list(range(5))
            assert got.counters() == list(range(10))  # nothing leaked to the old client
            await second.disconnect()
            assert lost == [first, second]  # BlueZ-like: our own disconnect fires it too

    asyncio.run(main())


def test_fault_plan_drops_duplicates_and_disconnects():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            band.peripheral.notify_hook = FaultPlan(drop={3, 4}, duplicate={6}, disconnect_at={9})
            device = await find_band(radio)
            lost = asyncio.Event()
            client = BleakClient(
                device, lambda _: lost.set(), timeout=WAIT_S, **radio.client_kwargs()
            )
            await client.connect()
            got = Collector()
            await client.start_notify(DATA_UUID, got)
            await band.peripheral.wait_for_subscription(band.data, timeout=WAIT_S)
            await band.stream(12)
            await asyncio.wait_for(lost.wait(), WAIT_S)
            assert got.counters() == [0, 1, 2, 5, 6, 6, 7, 8]
            assert not client.is_connected
            assert band.peripheral.notify_calls == 12
            assert band.peripheral.notifications_sent == 8

    asyncio.run(main())


def test_a_notify_hook_is_any_callable():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            band.peripheral.notify_hook = lambda index, value: (
                Fault.DROP if index % 2 else Fault.SEND
            )
            device = await find_band(radio)
            async with BleakClient(device, timeout=WAIT_S, **radio.client_kwargs()) as client:
                got = Collector()
                await client.start_notify(DATA_UUID, got)
                await band.peripheral.wait_for_subscription(band.data, timeout=WAIT_S)
                await band.stream(6)
                await got.wait(3)
                await asyncio.sleep(0.05)
                assert got.counters() == [0, 2, 4]

    asyncio.run(main())


def test_a_band_out_of_range_is_not_found_until_it_advertises_again():
    async def main():
        async with VirtualRadio() as radio:
            band = await add_band(radio)
            device = await find_band(radio)
            async with BleakClient(device, timeout=WAIT_S, **radio.client_kwargs()) as client:
                await band.peripheral.disconnect(hci.HCI_CONNECTION_TIMEOUT_ERROR, advertise=False)
                assert not client.is_connected
            assert not band.peripheral.is_advertising
            assert (
                await BleakScanner.find_device_by_name(NAME, timeout=0.2, **radio.scanner_kwargs())
                is None
            )
            await band.peripheral.start_advertising()
            assert (await find_band(radio)).address == band.peripheral.address

    asyncio.run(main())
