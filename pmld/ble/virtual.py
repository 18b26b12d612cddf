"""A virtual Bluetooth LE radio: real bleak client code against simulated peripherals.

The recorder talks to a band through bleak's public API (:class:`bleak.BleakScanner`,
:class:`bleak.BleakClient`). This module gives bleak a backend that runs over bumble's
virtual controllers instead of an operating system's Bluetooth stack, so the tests and a
no-hardware demo drive the very same recorder code as a real night: advertising and
scanning, connection, ATT MTU exchange, GATT discovery, reads, writes, notifications,
indications and link loss all go through a complete BLE host stack (bumble's) on both
sides, in one process and one asyncio event loop.

Use
---
Everything lives in one running event loop; create the radio inside it::

    radio = VirtualRadio()
    band = await radio.add_peripheral(
        "pmld-band", services=[my_gatt_service], service_uuids=[SERVICE_UUID]
    )
    device = await BleakScanner.find_device_by_name("pmld-band", **radio.scanner_kwargs())
    async with BleakClient(device, **radio.client_kwargs()) as client:
        await client.start_notify(DATA_UUID, on_data)
        ...
        await band.notify(data_characteristic, frame)   # the peripheral side
    await radio.close()

``radio.scanner_kwargs()`` is ``{"backend": BumbleScanner, "radio": radio}`` and
``radio.client_kwargs(mtu=23)`` adds ``mtu``; bleak 3.x passes keyword arguments it
does not know to the backend class. A recorder that accepts ``scanner_kwargs`` and
``client_kwargs`` dictionaries (empty for real hardware) needs no other seam.

The peripheral side is plain bumble (:class:`bumble.device.Device`,
:class:`bumble.gatt.Service`, :class:`bumble.gatt.Characteristic`), wrapped in a
:class:`VirtualPeripheral` that adds link control and fault injection: drop the link
at any time (:meth:`VirtualPeripheral.disconnect`), stop advertising (out of range),
and drop, duplicate or disconnect at chosen notifications (:class:`FaultPlan`).

Behaviour of the bleak backend (and where it follows a real stack)
-----------------------------------------------------------------
* The disconnected callback fires on every loss of the link, also after the client's
  own :meth:`~bleak.BleakClient.disconnect`, as on BlueZ: keep a flag for intentional
  disconnects. It is scheduled with ``loop.call_soon`` and has run when ``disconnect()``
  returns.
* ``mtu`` (default 247) is requested right after connecting; ``mtu=23`` skips the
  exchange, and notifications are then cut to 20 bytes (ATT_MTU - 3) by the peripheral
  as on a real link. :attr:`~bleak.BleakClient.mtu_size` and
  ``max_write_without_response_size`` report the negotiated value.
* ``start_notify`` on a characteristic already started raises :class:`BleakError`
  (as CoreBluetooth does); use a fresh :class:`~bleak.BleakClient` per connection.
  Notifications are preferred over indications when a characteristic offers both.
* An ATT error from the peripheral raises :class:`bleak.exc.BleakGATTProtocolError`;
  an operation cut short by the link dropping raises :class:`BleakError`; an unknown
  characteristic raises :class:`bleak.exc.BleakCharacteristicNotFoundError` (bleak's
  own check). A connect that does not complete within ``timeout`` raises
  :class:`TimeoutError`, like bleak's platform backends.
* A write without response longer than ATT_MTU - 3 raises :class:`BleakError`, where a
  real stack would refuse or truncate it.
* Pairing is not simulated: ``pair=True`` is ignored with a warning, :meth:`pair` and
  :meth:`unpair` raise :class:`BleakError`.

What the virtual link does not model
------------------------------------
Radio timing: there are no connection intervals, no packets-per-event limit and no
air-time; packets move as fast as the event loop runs. Use it for protocol logic and
for faster-than-real-time replays, not to estimate a real link's throughput or
latency. bumble's virtual controller sends no scan response data: everything a scanner
should see goes into the 31-byte advertising data (see :func:`build_advertising_data`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bumble import att, core, gatt, hci
from bumble.controller import Controller
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

__all__ = [
    "ATT_DEFAULT_MTU",
    "BumbleClient",
    "BumbleScanner",
    "Fault",
    "FaultPlan",
    "NotifyHook",
    "VirtualPeripheral",
    "VirtualRadio",
    "build_advertising_data",
]

logger = logging.getLogger(__name__)

ATT_DEFAULT_MTU = 23
"""ATT_MTU before any exchange (Bluetooth Core 5.4, Vol 3, Part F, 3.2.8)."""

DEFAULT_MTU = 247
"""MTU the client requests: 251-byte LE data PDUs minus the 4-byte L2CAP header, the
value phones and BlueZ commonly settle on; it carries 244 bytes per notification."""

LEGACY_ADVERTISING_DATA_MAX = 31
"""Bytes of advertising data in a legacy advertising PDU (Core 5.4, Vol 6, Part B, 2.3.1)."""

CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"

# AD types (Bluetooth Assigned Numbers, "Common Data Types").
_AD_UUID16 = (0x02, 0x03)
_AD_UUID32 = (0x04, 0x05)
_AD_UUID128 = (0x06, 0x07)
_AD_SHORT_NAME = 0x08
_AD_COMPLETE_NAME = 0x09
_AD_TX_POWER = 0x0A
_AD_SERVICE_DATA16 = 0x16
_AD_SERVICE_DATA32 = 0x20
_AD_SERVICE_DATA128 = 0x21
_AD_MANUFACTURER = 0xFF


# --------------------------------------------------------------------------------------
# UUIDs and advertising data
# --------------------------------------------------------------------------------------
def _to_bleak_uuid(value: core.UUID) -> str:
    """bumble's UUID (little-endian bytes) -> bleak's lower-case 128-bit string."""
    return str(uuid.UUID(bytes=bytes(reversed(value.uuid_128_bytes))))


def _uuid_from_le_bytes(data: bytes) -> str:
    return _to_bleak_uuid(core.UUID.from_bytes(data))


def _to_bumble_uuid(value: str | core.UUID) -> core.UUID:
    return value if isinstance(value, core.UUID) else core.UUID(str(value))


def build_advertising_data(
    name: str | None, service_uuids: Iterable[str | core.UUID] = ()
) -> bytes:
    """Legacy advertising data with the complete local name and the service UUIDs.

    Parameters
    ----------
    name : str or None
        Complete local name (AD type 0x09), or None to leave it out.
    service_uuids : iterable of str or bumble UUID
        Service UUIDs to list (complete lists, AD types 0x03 / 0x05 / 0x07).

    Returns
    -------
    bytes
        The AD structures, at most 31 bytes.

    Raises
    ------
    ValueError
        When the data does not fit in 31 bytes. A 128-bit UUID takes 18 bytes, which
        leaves 11 characters of name. bumble's virtual controller sends no scan
        response, so the name cannot be moved there.
    """
    structures: list[bytes] = []
    if name:
        structures.append(bytes([_AD_COMPLETE_NAME]) + name.encode("utf-8"))
    by_size: dict[int, list[bytes]] = {2: [], 4: [], 16: []}
    for value in service_uuids:
        raw = _to_bumble_uuid(value).uuid_bytes
        by_size[len(raw)].append(raw)
    for size, ad_type in ((2, _AD_UUID16[1]), (4, _AD_UUID32[1]), (16, _AD_UUID128[1])):
        if by_size[size]:
            structures.append(bytes([ad_type]) + b"".join(by_size[size]))
    data = b"".join(bytes([len(s)]) + s for s in structures)
    if len(data) > LEGACY_ADVERTISING_DATA_MAX:
        raise ValueError(
            f"advertising data is {len(data)} bytes, more than the "
            f"{LEGACY_ADVERTISING_DATA_MAX} of a legacy advertisement: use a shorter name "
            "or advertise fewer service UUIDs"
        )
    return data


def _parse_advertisement(
    structures: Iterable[tuple[int, bytes]],
) -> tuple[str | None, list[str], dict[str, bytes], dict[int, bytes], int | None]:
    """AD structures -> (local name, service UUIDs, service data, manufacturer data, tx)."""
    name: str | None = None
    short_name: str | None = None
    uuids: list[str] = []
    service_data: dict[str, bytes] = {}
    manufacturer: dict[int, bytes] = {}
    tx_power: int | None = None
    for ad_type, value in structures:
        ad_type = int(ad_type)
        if ad_type == _AD_COMPLETE_NAME and name is None:
            name = value.decode("utf-8", errors="replace")
        elif ad_type == _AD_SHORT_NAME and short_name is None:
            short_name = value.decode("utf-8", errors="replace")
        elif ad_type in _AD_UUID16 + _AD_UUID32 + _AD_UUID128:
            size = 2 if ad_type in _AD_UUID16 else 4 if ad_type in _AD_UUID32 else 16
            for i in range(0, len(value) - size + 1, size):
                text = _uuid_from_le_bytes(value[i : i + size])
                if text not in uuids:
                    uuids.append(text)
        elif ad_type in (_AD_SERVICE_DATA16, _AD_SERVICE_DATA32, _AD_SERVICE_DATA128):
            size = {_AD_SERVICE_DATA16: 2, _AD_SERVICE_DATA32: 4}.get(ad_type, 16)
            if len(value) >= size:
                service_data[_uuid_from_le_bytes(value[:size])] = bytes(value[size:])
        elif ad_type == _AD_MANUFACTURER and len(value) >= 2:
            manufacturer[int.from_bytes(value[:2], "little")] = bytes(value[2:])
        elif ad_type == _AD_TX_POWER and len(value) == 1:
            tx_power = int.from_bytes(value, "little", signed=True)
    return name or short_name, uuids, service_data, manufacturer, tx_power


def _parse_address(address: str | hci.Address) -> hci.Address:
    """A bleak address string -> bumble Address; random unless suffixed ``/P``."""
    if isinstance(address, hci.Address):
        return address
    try:
        return hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS)
    except (ValueError, core.InvalidArgumentError) as error:
        raise BleakError(f"not a Bluetooth address: {address!r}") from error


def _address_text(address: hci.Address) -> str:
    return address.to_string(with_type_qualifier=False)


# --------------------------------------------------------------------------------------
# The radio
# --------------------------------------------------------------------------------------
class VirtualRadio:
    """A simulated Bluetooth LE medium with one central and any number of peripherals.

    Every device has its own bumble virtual :class:`~bumble.controller.Controller` on
    one :class:`~bumble.link.LocalLink`. The central (used by :class:`BumbleScanner`
    and :class:`BumbleClient`) is created and powered on when first needed.

    Must be created inside the running event loop that will use it (bumble's
    controllers bind to it), and closed with :meth:`close` (or ``async with``).

    Parameters
    ----------
    acl_packet_length : int
        LE ACL data packet length the virtual controllers report to their hosts. With
        bumble's default of 27 a 251-byte ATT PDU is split into ten HCI fragments;
        251 (a controller with LE Data Length Extension) carries it in one and is
        5-10 times faster (benchmarks/bench_ble_virtual.py). bleak sees no difference.
    advertising_interval_ms : float
        Advertising interval of the peripherals. A connection completes on the
        peripheral's next advertisement, so this bounds scan and connect latency.
        bumble's controller will not go below 10 ms.
    central_name : str
        GAP name of the central.
    """

    def __init__(
        self,
        *,
        acl_packet_length: int = 251,
        advertising_interval_ms: float = 20.0,
        central_name: str = "pmld-host",
    ) -> None:
        asyncio.get_running_loop()  # bumble's controllers need one: fail early without
        self.link = LocalLink()
        self.acl_packet_length = int(acl_packet_length)
        self.advertising_interval_ms = float(advertising_interval_ms)
        self.central_name = central_name
        self.peripherals: list[VirtualPeripheral] = []
        self._controllers: weakref.WeakKeyDictionary[Device, Controller] = (
            weakref.WeakKeyDictionary()
        )
        self._central: Device | None = None
        self._central_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._scanners: set[BumbleScanner] = set()
        self._client_connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._scan_lock = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> VirtualRadio:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # devices ------------------------------------------------------------------------
    def create_device(self, name: str, address: str | hci.Address | None = None) -> Device:
        """A bumble Device with its own virtual controller on this radio (not powered).

        Parameters
        ----------
        name : str
            GAP device name (also served by the Generic Access service).
        address : str or bumble Address, optional
            Random static address such as ``"C0:00:00:00:00:01"``; a fresh random static
            address when omitted.
        """
        self._check_open()
        controller = Controller(f"{name}-controller", link=self.link)
        controller.le_acl_data_packet_length = self.acl_packet_length
        if address is None:
            bd_address = hci.Address.generate_static_address()
        else:
            bd_address = _parse_address(address)
        host = Host(controller, AsyncPipeSink(controller))
        device = Device(name=name, address=bd_address, host=host)
        self._controllers[device] = controller
        return device

    async def add_peripheral(
        self,
        device: Device | str,
        *,
        services: Sequence[gatt.Service] = (),
        service_uuids: Iterable[str | core.UUID] | None = None,
        advertising_data: bytes | None = None,
        advertise: bool = True,
        advertise_after_disconnect: bool = True,
    ) -> VirtualPeripheral:
        """Power on a peripheral, add its GATT services and start advertising.

        Parameters
        ----------
        device : bumble Device or str
            A device from :meth:`create_device` (to configure it first), or a name for
            a new one.
        services : sequence of bumble gatt.Service
            GATT services to serve (bumble adds a CCCD to every notify/indicate
            characteristic).
        service_uuids : iterable of str, optional
            Service UUIDs to advertise; by default those of ``services``.
        advertising_data : bytes, optional
            Raw advertising data, replacing the name + UUIDs built by
            :func:`build_advertising_data`.
        advertise : bool
            Start advertising now.
        advertise_after_disconnect : bool
            Advertise again whenever the link drops, as a band waiting for the phone.
        """
        if isinstance(device, str):
            device = self.create_device(device)
        elif device not in self._controllers:
            raise ValueError("the device is not on this radio: make it with create_device()")
        if services:
            device.add_services(services)
        if advertising_data is None:
            if service_uuids is None:
                service_uuids = [service.uuid for service in services]
            advertising_data = build_advertising_data(device.name, service_uuids)
        peripheral = VirtualPeripheral(
            self, device, advertising_data, advertise_after_disconnect=advertise_after_disconnect
        )
        await device.power_on()
        self.peripherals.append(peripheral)
        if advertise:
            await peripheral.start_advertising()
        return peripheral

    async def central(self) -> Device:
        """The central's bumble Device, powered on at the first call."""
        self._check_open()
        async with self._central_lock:
            if self._central is None:
                device = self.create_device(self.central_name)
                await device.power_on()
                self._central = device
            return self._central

    # bleak plumbing -----------------------------------------------------------------
    def scanner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that make a :class:`bleak.BleakScanner` use this radio."""
        return {"backend": BumbleScanner, "radio": self}

    def client_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments that make a :class:`bleak.BleakClient` use this radio.

        ``extra`` is passed on too, e.g. ``mtu=23`` to skip the MTU exchange.
        """
        return {"backend": BumbleClient, "radio": self, **extra}

    async def _scanner_started(self, scanner: BumbleScanner, active: bool) -> Device:
        central = await self.central()
        async with self._scan_lock:
            if not self._scanners:
                await central.start_scanning(active=active, filter_duplicates=False)
            self._scanners.add(scanner)
        return central

    async def _scanner_stopped(self, scanner: BumbleScanner) -> None:
        async with self._scan_lock:
            if scanner not in self._scanners:
                return
            self._scanners.discard(scanner)
            if not self._scanners and self._central is not None and not self._closed:
                await self._central.stop_scanning()

    async def _cancel_pending_connection(self, central: Device, peer: hci.Address) -> None:
        """Undo a timed-out connection attempt.

        bumble's virtual controller acknowledges LE Create Connection Cancel but keeps
        the request: the next advertisement from ``peer`` would still complete it, and
        the next connect would be refused. We own that controller, so clear it, then
        drop a connection that completed in the meantime.
        """
        controller = self._controllers[central]
        controller.pending_le_connection = None
        for _ in range(3):  # let already-queued HCI events reach the host
            await asyncio.sleep(0)
        for connection in list(central.connections.values()):
            if connection.peer_address == peer and connection not in self._client_connections:
                try:
                    await connection.disconnect()
                except Exception:  # best-effort cleanup of a stray link
                    logger.debug("could not drop stray connection to %s", peer, exc_info=True)

    # shutdown -----------------------------------------------------------------------
    async def close(self) -> None:
        """Drop every link, stop advertising and scanning."""
        if self._closed:
            return
        for peripheral in self.peripherals:
            await peripheral.close()
        if self._central is not None:
            for connection in list(self._central.connections.values()):
                try:
                    await connection.disconnect()
                except Exception:  # shutting down anyway
                    logger.debug("disconnect at close failed", exc_info=True)
            if self._scanners:
                self._scanners.clear()
                await self._central.stop_scanning()
        self._closed = True
        for _ in range(3):
            await asyncio.sleep(0)

    def _check_open(self) -> None:
        if self._closed:
            raise BleakError("the virtual radio is closed")


# --------------------------------------------------------------------------------------
# The peripheral side
# --------------------------------------------------------------------------------------
class Fault(enum.Enum):
    """What a :data:`NotifyHook` does with one notification."""

    SEND = "send"
    DROP = "drop"  # never sent, as if lost in the air
    DUPLICATE = "duplicate"  # sent twice
    DISCONNECT = "disconnect"  # the link drops instead of this notification


NotifyHook = Callable[[int, bytes], Fault]
"""Called with (index, value) for every :meth:`VirtualPeripheral.notify`; the index
counts notify calls over the peripheral's lifetime, across reconnections, from 0."""


@dataclass
class FaultPlan:
    """A :data:`NotifyHook` from sets of notification indices.

    Example: ``FaultPlan(drop={10, 11}, duplicate={20}, disconnect_at={500})`` loses
    the 11th and 12th notifications, sends the 21st twice, and drops the link instead
    of sending the 501st (which is then not sent at all).
    """

    drop: set[int] = field(default_factory=set)
    duplicate: set[int] = field(default_factory=set)
    disconnect_at: set[int] = field(default_factory=set)

    def __call__(self, index: int, value: bytes) -> Fault:
        if index in self.disconnect_at:
            return Fault.DISCONNECT
        if index in self.drop:
            return Fault.DROP
        if index in self.duplicate:
            return Fault.DUPLICATE
        return Fault.SEND


class VirtualPeripheral:
    """A bumble peripheral on a :class:`VirtualRadio`, with link control and faults.

    Made by :meth:`VirtualRadio.add_peripheral`. It serves one central at a time (a
    connected peripheral stops advertising, as a band does).

    Attributes
    ----------
    device : bumble Device
        The peripheral's bumble device; use its GATT API directly when needed.
    notify_hook : NotifyHook or None
        Fault injection for :meth:`notify` (see :class:`FaultPlan`).
    max_queued_packets : int
        :meth:`notify` waits for the link to drain once this many packets are queued
        in the peripheral's host, bounding memory when a producer outruns the link.
    notify_calls, notifications_sent : int
        Counters of :meth:`notify` calls and of notifications actually sent.
    """

    def __init__(
        self,
        radio: VirtualRadio,
        device: Device,
        advertising_data: bytes,
        *,
        advertise_after_disconnect: bool = True,
    ) -> None:
        self.radio = radio
        self.device = device
        self.advertising_data = advertising_data
        self.advertise_after_disconnect = advertise_after_disconnect
        self.notify_hook: NotifyHook | None = None
        self.max_queued_packets = 128
        self.notify_calls = 0
        self.notifications_sent = 0
        self._connection: Connection | None = None
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._disconnected.set()
        self._advertising = False
        self._readvertise: bool | None = None
        self._closing = False
        self._subscriptions: dict[int, tuple[bool, bool]] = {}
        self._subscription_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        device.on("characteristic_subscription", self._on_subscription)

    # state --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.device.name

    @property
    def address(self) -> str:
        """The address as bleak reports it (``BLEDevice.address``)."""
        return _address_text(self.device.random_address)

    @property
    def connection(self) -> Connection | None:
        return self._connection

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    @property
    def is_advertising(self) -> bool:
        return self._advertising

    @property
    def mtu(self) -> int:
        """The current link's ATT_MTU (23 when not connected)."""
        return ATT_DEFAULT_MTU if self._connection is None else self._connection.att_mtu

    def is_subscribed(self, characteristic: gatt.Characteristic, *, indicate: bool = False) -> bool:
        """Whether the connected central enabled notifications (or indications)."""
        notify_on, indicate_on = self._subscriptions.get(characteristic.handle, (False, False))
        return indicate_on if indicate else notify_on

    # advertising and link control ---------------------------------------------------
    async def start_advertising(self) -> None:
        interval = self.radio.advertising_interval_ms
        await self.device.start_advertising(
            advertising_data=self.advertising_data,
            advertising_interval_min=interval,
            advertising_interval_max=interval,
            auto_restart=False,
        )
        self._advertising = True

    async def stop_advertising(self) -> None:
        """Stop advertising: with :meth:`disconnect`, the band is out of range."""
        self._advertising = False
        await self.device.stop_advertising()

    async def disconnect(
        self,
        reason: int = hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR,
        *,
        advertise: bool | None = None,
    ) -> None:
        """Drop the link from the peripheral's side.

        Parameters
        ----------
        reason : int
            HCI reason the central sees, e.g. ``hci.HCI_CONNECTION_TIMEOUT_ERROR`` (0x08)
            for a band gone out of range, or the default 0x13 (remote user terminated).
        advertise : bool, optional
            Whether to advertise again afterwards; default ``advertise_after_disconnect``.
            ``False`` keeps the band silent until :meth:`start_advertising`.
        """
        connection = self._connection
        if connection is None:
            return
        self._readvertise = advertise
        try:
            await connection.disconnect(reason)
        except core.BaseBumbleError:
            logger.debug("peripheral disconnect raced with the link going", exc_info=True)
        await self._disconnected.wait()

    async def wait_for_connection(self, timeout: float | None = None) -> Connection:
        async with asyncio.timeout(timeout):
            while self._connection is None:
                await self._connected.wait()
            return self._connection

    async def wait_for_disconnection(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._disconnected.wait()

    async def wait_for_subscription(
        self,
        characteristic: gatt.Characteristic,
        *,
        indicate: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Wait until the central has enabled notifications (or indications)."""
        async with asyncio.timeout(timeout):
            while not self.is_subscribed(characteristic, indicate=indicate):
                self._subscription_changed.clear()
                await self._subscription_changed.wait()

    # data ---------------------------------------------------------------------------
    async def notify(self, characteristic: gatt.Characteristic, value: bytes) -> int:
        """Send one notification, through :attr:`notify_hook`.

        The value is cut to ATT_MTU - 3 bytes by bumble, as by a real stack. Nothing is
        sent when no central is connected and subscribed.

        Returns
        -------
        int
            Notifications actually sent: 0 (dropped, not subscribed, disconnected),
            1, or 2 (duplicated).
        """
        index = self.notify_calls
        self.notify_calls += 1
        action = Fault.SEND if self.notify_hook is None else self.notify_hook(index, value)
        if action is Fault.DISCONNECT:
            await self.disconnect()
            return 0
        connection = self._connection
        if connection is None or not self.is_subscribed(characteristic):
            return 0
        copies = {Fault.SEND: 1, Fault.DROP: 0, Fault.DUPLICATE: 2}[action]
        for _ in range(copies):
            await self.device.notify_subscriber(connection, characteristic, value)
        self.notifications_sent += copies
        queue = connection.data_packet_queue
        if queue is not None and queue.pending >= self.max_queued_packets:
            await connection.drain()
        return copies

    async def indicate(self, characteristic: gatt.Characteristic, value: bytes) -> bool:
        """Send one indication and wait for the central's confirmation.

        Returns
        -------
        bool
            True once confirmed; False when no central is connected and subscribed to
            indications, or when the link drops before the confirmation (bumble alone
            would wait out its 30 s ATT timeout).
        """
        connection = self._connection
        if connection is None or not self.is_subscribed(characteristic, indicate=True):
            return False
        indication = self.device.indicate_subscriber(connection, characteristic, value)
        try:
            await connection.cancel_on_disconnection(indication)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return False
        return True

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        """Run a coroutine as a task owned by this peripheral (awaited at close).

        Handy in a GATT write callback that must answer with an indication: bumble
        sends the write response only after the callback returns.
        """
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self, timeout: float = 1.0) -> None:
        """Let spawned tasks finish, drop the link and stop advertising.

        Tasks still running after ``timeout`` seconds are cancelled. (Cancelling a task
        in the middle of a bumble HCI command makes bumble log an InvalidStateError
        when the command completes, hence the wait.)
        """
        self._closing = True
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
        if self._connection is not None:
            await self.disconnect(advertise=False)
        if self._advertising:
            await self.stop_advertising()

    # bumble events ------------------------------------------------------------------
    def _on_connection(self, connection: Connection) -> None:
        if connection.role != hci.Role.PERIPHERAL:
            return
        self._connection = connection
        self._advertising = False  # the controller stops advertising on connection
        self._subscriptions = {}
        self._disconnected.clear()
        self._connected.set()
        connection.on(
            Connection.EVENT_DISCONNECTION,
            lambda reason, c=connection: self._on_disconnection(c, reason),
        )

    def _on_disconnection(self, connection: Connection, reason: int) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        self._subscriptions = {}
        self._connected.clear()
        self._disconnected.set()
        self._subscription_changed.set()
        readvertise = self._readvertise
        if readvertise is None:
            readvertise = self.advertise_after_disconnect
        self._readvertise = None
        if readvertise and not self._closing:
            self.spawn(self.start_advertising())

    def _on_subscription(
        self, connection: Any, characteristic: gatt.Characteristic, notify: bool, indicate: bool
    ) -> None:
        if connection is not self._connection:
            return
        self._subscriptions[characteristic.handle] = (bool(notify), bool(indicate))
        self._subscription_changed.set()


# --------------------------------------------------------------------------------------
# bleak backend: scanner
# --------------------------------------------------------------------------------------
def _require_radio(radio: Any, what: str) -> VirtualRadio:
    if not isinstance(radio, VirtualRadio):
        raise BleakError(
            f"{what} needs radio=<VirtualRadio>: pass **radio.scanner_kwargs() or "
            "**radio.client_kwargs()"
        )
    return radio


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend over a :class:`VirtualRadio`.

    Use as ``BleakScanner(backend=BumbleScanner, radio=radio)``, or
    ``BleakScanner.find_device_by_name(name, **radio.scanner_kwargs())``. Reports local
    name, service UUIDs, service data, manufacturer data and TX power from the
    advertising data; RSSI is bumble's fixed -50 dBm.
    """

    def __init__(
        self,
        detection_callback: Any,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        radio: VirtualRadio | None = None,
        **kwargs: Any,  # bluez=, cb= and other platforms' arguments are ignored
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._radio = _require_radio(radio, "BumbleScanner")
        self._active = scanning_mode != "passive"
        self._central: Device | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        central = await self._radio._scanner_started(self, self._active)
        central.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        self._central = central

    async def stop(self) -> None:
        if self._central is not None:
            self._central.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
            self._central = None
        await self._radio._scanner_stopped(self)

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        name, uuids, service_data, manufacturer, tx_power = _parse_advertisement(
            advertisement.data.ad_structures
        )
        if not self.is_allowed_uuid(uuids):
            return
        data = AdvertisementData(
            local_name=name,
            manufacturer_data=manufacturer,
            service_data=service_data,
            service_uuids=uuids,
            tx_power=tx_power,
            rssi=advertisement.rssi,
            platform_data=(advertisement,),
        )
        address = _address_text(advertisement.address)
        device = self.create_or_update_device(
            address, address, name, advertisement.address, data
        )
        self.call_detection_callbacks(device, data)


# --------------------------------------------------------------------------------------
# bleak backend: client
# --------------------------------------------------------------------------------------
def _properties(bits: int) -> list[Any]:
    return [name for bit, name in CHARACTERISTIC_PROPERTIES.items() if bits & bit]


class BumbleClient(BaseBleakClient):
    """bleak client backend over a :class:`VirtualRadio`.

    Use as ``BleakClient(device, backend=BumbleClient, radio=radio, mtu=247)`` or
    ``BleakClient(device, **radio.client_kwargs())``; ``device`` is a
    :class:`~bleak.backends.device.BLEDevice` from :class:`BumbleScanner` or an address
    string. See the module docstring for how it behaves next to bleak's platform
    backends.

    Parameters
    ----------
    radio : VirtualRadio
        The radio to connect over.
    mtu : int
        ATT_MTU to request after connecting (default 247); 23 or less skips the
        exchange.
    """

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        disconnected_callback: Callable[[], None] | None = None,
        services: set[str] | None = None,
        *,
        timeout: float = 10.0,
        radio: VirtualRadio | None = None,
        mtu: int = DEFAULT_MTU,
        **kwargs: Any,  # bluez=, winrt= and other platforms' arguments are ignored
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._radio = _require_radio(radio, "BumbleClient")
        self._requested_mtu = int(mtu)
        self._service_filter = None if services is None else set(services)
        if isinstance(address_or_ble_device, BLEDevice):
            details = address_or_ble_device.details
            self._peer_address = (
                details if isinstance(details, hci.Address) else _parse_address(self.address)
            )
            self._name = address_or_ble_device.name
        else:
            self._peer_address = _parse_address(address_or_ble_device)
            self._name = None
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._mtu = ATT_DEFAULT_MTU
        self._notify_subscribers: dict[int, Callable[[bytes], None]] = {}
        self._disconnected = asyncio.Event()
        self._disconnected.set()

    # info ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name or self.address

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    # connection ---------------------------------------------------------------------
    async def connect(self, pair: bool = False, **kwargs: Any) -> None:
        if self._connection is not None:
            return
        if pair:
            logger.warning("the virtual radio does not simulate pairing; connecting without")
        timeout = kwargs.get("timeout", self._timeout)
        central = await self._radio.central()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                async with self._radio._connect_lock:
                    connection = await central.connect(self._peer_address, timeout=None)
        except TimeoutError:
            await self._radio._cancel_pending_connection(central, self._peer_address)
            raise TimeoutError(
                f"no connection to {self.address} within {timeout:g} s: is the "
                "peripheral advertising?"
            ) from None
        except core.BaseBumbleError as error:
            raise BleakError(f"connecting to {self.address} failed: {error}") from error

        self._radio._client_connections.add(connection)
        self._attach(connection)
        try:
            async with asyncio.timeout_at(max(deadline, loop.time() + 5.0)):
                peer = self._require_peer()
                if self._requested_mtu > ATT_DEFAULT_MTU:
                    await self._gatt("MTU exchange", peer.request_mtu(self._requested_mtu))
                self._mtu = connection.att_mtu
                await self._gatt("service discovery", peer.discover_all())
                self.services = self._build_services(peer)
        except BaseException:
            await self.disconnect()
            raise

    def _attach(self, connection: Connection) -> None:
        self._connection = connection
        self._peer = Peer(connection)
        self._disconnected.clear()
        connection.on(
            Connection.EVENT_DISCONNECTION,
            lambda reason, c=connection: self._on_disconnection(c, reason),
        )

    def _on_disconnection(self, connection: Connection, reason: int) -> None:
        if connection is not self._connection:
            return
        logger.debug("link to %s lost (HCI reason 0x%02X)", self.address, reason)
        self._connection = None
        self._peer = None
        self._notify_subscribers.clear()
        self._disconnected.set()
        if self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback)

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            await connection.disconnect()
        except core.BaseBumbleError:
            logger.debug("disconnect raced with the link going", exc_info=True)
        await self._disconnected.wait()
        await asyncio.sleep(0)  # let the disconnected callback run before we return

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise BleakError("the virtual radio does not simulate pairing")

    async def unpair(self) -> None:
        raise BleakError("the virtual radio does not simulate pairing")

    # GATT ---------------------------------------------------------------------------
    def _require_peer(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def _gatt(self, what: str, operation: Any) -> Any:
        """Await a bumble GATT operation, translating its failures into bleak's."""
        try:
            return await operation
        except att.ATT_Error as error:
            raise BleakGATTProtocolError(error.error_code) from error
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # bumble cancels a pending ATT request when the link drops; our own task
            # was not cancelled, so report it as the disconnection it is.
            if self._connection is None and task is not None and not task.cancelling():
                raise BleakError(f"{what} failed: disconnected") from None
            raise
        except core.TimeoutError as error:
            raise BleakError(f"{what} failed: ATT timeout") from error

    def _build_services(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        for service_proxy in peer.services:
            service_uuid = _to_bleak_uuid(service_proxy.uuid)
            if self._service_filter is not None and service_uuid not in self._service_filter:
                continue
            service = BleakGATTService(service_proxy, service_proxy.handle, service_uuid)
            collection.add_service(service)
            for char_proxy in service_proxy.characteristics:
                characteristic = BleakGATTCharacteristic(
                    char_proxy,
                    char_proxy.handle,
                    _to_bleak_uuid(char_proxy.uuid),
                    _properties(int(char_proxy.properties)),
                    self._max_write_without_response_size,
                    service,
                )
                collection.add_characteristic(characteristic)
                for desc_proxy in char_proxy.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            desc_proxy,
                            desc_proxy.handle,
                            _to_bleak_uuid(desc_proxy.type),
                            characteristic,
                        )
                    )
        return collection

    def _max_write_without_response_size(self) -> int:
        return self._mtu - 3

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        if use_cached:
            cached = peer.gatt_client.cached_values.get(characteristic.handle)
            if cached is not None:
                return bytearray(cached[1])
        value = await self._gatt("read", peer.read_value(characteristic.obj))
        return bytearray(value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        if use_cached:
            cached = peer.gatt_client.cached_values.get(descriptor.handle)
            if cached is not None:
                return bytearray(cached[1])
        return bytearray(await self._gatt("descriptor read", peer.read_value(descriptor.handle)))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        peer = self._require_peer()
        value = bytes(data)
        if not response and len(value) > self._mtu - 3:
            raise BleakError(
                f"write without response of {len(value)} bytes exceeds ATT_MTU - 3 = "
                f"{self._mtu - 3}"
            )
        await self._gatt(
            "write", peer.write_value(characteristic.obj, value, with_response=response)
        )

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        peer = self._require_peer()
        await self._gatt(
            "descriptor write", peer.write_value(descriptor.handle, bytes(data), with_response=True)
        )

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        peer = self._require_peer()
        if characteristic.handle in self._notify_subscribers:
            raise BleakError(
                f"notifications already started on {characteristic.uuid}: use a fresh "
                "BleakClient per connection"
            )
        if not {"notify", "indicate"} & set(characteristic.properties):
            raise BleakError(f"{characteristic.uuid} supports neither notify nor indicate")
        if characteristic.get_descriptor(CCCD_UUID) is None:
            raise BleakError(f"{characteristic.uuid} has no CCCD to enable notifications with")

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        proxy: CharacteristicProxy[bytes] = characteristic.obj
        self._notify_subscribers[characteristic.handle] = on_value
        try:
            await self._gatt(
                "start_notify", peer.gatt_client.subscribe(proxy, on_value, prefer_notify=True)
            )
        except BaseException:
            self._notify_subscribers.pop(characteristic.handle, None)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        peer = self._require_peer()
        on_value = self._notify_subscribers.pop(characteristic.handle, None)
        if on_value is None:
            return
        await self._gatt(
            "stop_notify", peer.gatt_client.unsubscribe(characteristic.obj, on_value)
        )
