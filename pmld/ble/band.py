"""A virtual pmld band: the band's firmware serving a simulated night over a virtual radio.

:class:`VirtualBand` is a bumble peripheral on a :class:`~pmld.ble.virtual.VirtualRadio`
that serves the pmld GATT profile (``firmware_protocol/SPEC.md``): INFO (read), CONTROL
(write + indicate) and DATA (notify). Its firmware logic is
:class:`~pmld.ble.protocol.DeviceModel`, the same model the protocol's session vectors
check against the C reference; this module only supplies what a real band's hardware
would: an IMU that produces samples as time passes (from a simulated night's int16
counts), a crystal, a battery and a radio that sometimes misbehaves.

Time
----
Everything runs on a :class:`VirtualClock`: the night's true time (seconds since the
virtual band was powered on), ``speed`` times faster than real time, or, with
``speed=math.inf``, stepped by the band itself as fast as the link carries the samples
(the time between two steps is zero, so a reconnect costs no night time). The recorder
stamps arrivals with the same clock (:meth:`VirtualClock.now_ns`), so its clock fit
sees the band's true sampling rate, exactly as a host's UTC clock would.

The band's own clock (its crystal) runs ``clock_ppm`` fast or slow against true time
and drives the IMU: sample ``n`` after power-on is acquired at band time ``(n + 1) /
rate`` s, so a +80 ppm crystal delivers 100.008 samples per true second at 100 Hz, and
TIME_SYNC frames carry that clock.

Faults (:class:`BandFaults`)
----------------------------
Scheduled link drops during which the band is out of range (it keeps sampling into its
ring buffer: a drop shorter than the buffer loses nothing after RESUME, a longer one
loses exactly what was overwritten), notifications lost in the air or duplicated by a
stack, DATA frames damaged on the way (decoders see a reserved bit or a truncated
frame), extra frames of a type from a newer protocol minor, a crystal skew, and a small
ring buffer for overflows. The MTU is the central's choice (``client_kwargs(mtu=23)``).

Impostors: ``kind="old_protocol"`` serves INFO of protocol 0.9, ``kind="not_pmld"`` a
pmld-looking service whose INFO is something else, ``kind="foreign"`` a device with no
pmld service at all (a heart-rate strap).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from bumble import gatt
from bumble.att import Attribute
from bumble.device import Connection, Device

from ..night import Night
from .protocol import (
    CONTROL_UUID,
    DATA_UUID,
    INFO_UUID,
    SERVICE_UUID,
    AccRange,
    DeviceModel,
    FrameType,
    Info,
    State,
    StopCommand,
    encode_command,
    encode_info,
)
from .virtual import Fault, VirtualPeripheral, VirtualRadio

__all__ = [
    "BAND_KINDS",
    "BandFaults",
    "VirtualBand",
    "VirtualClock",
    "VirtualDeviceBase",
    "night_counts",
]

logger = logging.getLogger(__name__)

BAND_KINDS = ("pmld", "old_protocol", "not_pmld", "foreign")

#: The reference firmware's latency timer: a partial DATA frame leaves after 100 ms
#: (SPEC.md section 7.1).
LATENCY_TIMER_US = 100_000

#: Ring buffer of the reference band (SPEC.md section 14): 65536 samples, 11 min at 100 Hz.
DEFAULT_BUFFER_SAMPLES = 65536

#: Event-loop turns a stepped band waits after each step for the link to deliver.
DELIVERY_TURNS = 8

HEART_RATE_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HEART_RATE_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"


# --------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------
class VirtualClock:
    """True time of a virtual night, shared by the virtual band and the recorder.

    Parameters
    ----------
    start_ns : int
        UTC (ns since the Unix epoch) at elapsed time 0.
    speed : float
        Night seconds per real second; ``math.inf`` makes the clock stepped: it only
        moves when :meth:`advance_to` is called (by the virtual band, as it produces
        samples), so a night runs as fast as the link and the recorder go.
    """

    def __init__(self, start_ns: int, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.start_ns = int(start_ns)
        self.speed = float(speed)
        self.stepped = math.isinf(self.speed)
        self._real0 = time.monotonic()
        self._stepped_s = 0.0

    def elapsed_s(self) -> float:
        """Night seconds since elapsed time 0."""
        if self.stepped:
            return self._stepped_s
        return (time.monotonic() - self._real0) * self.speed

    def now_ns(self) -> int:
        """UTC now, as the host's clock on a virtual night reads it."""
        return self.start_ns + int(self.elapsed_s() * 1e9)

    def advance_to(self, elapsed_s: float) -> None:
        """Move a stepped clock forward (never back); no effect on a running clock."""
        if self.stepped and elapsed_s > self._stepped_s:
            self._stepped_s = float(elapsed_s)

    def real_s(self, night_s: float) -> float:
        """How long ``night_s`` night seconds last in real time (0 when stepped)."""
        return 0.0 if self.stepped else night_s / self.speed


def night_counts(night: Night) -> tuple[np.ndarray, float, float]:
    """A simulated night's first sensor as int16 counts, with its rate and counts/g.

    The simulator quantises to int16 counts of ``device['counts_per_g']``, so the
    counts come back exactly.
    """
    sensor = night.sensor
    counts_per_g = float(sensor.device.get("counts_per_g", 4096.0))
    counts = np.rint(sensor.acc_g.astype(np.float64) * counts_per_g)
    if np.any(counts > 32767) or np.any(counts < -32768):
        raise ValueError("the night's samples do not fit int16 counts at its counts_per_g")
    return counts.astype(np.int16), sensor.fs_hz, counts_per_g


# --------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------
@dataclass
class BandFaults:
    """What goes wrong with a virtual band. Zero or empty means never.

    Attributes
    ----------
    drop_every : int
        Every N-th notification is lost in the air (the band's ``seq`` still counts it).
    duplicate_every : int
        Every N-th notification is delivered twice (same bytes, same ``seq``).
    corrupt_every : int
        Every N-th DATA frame arrives damaged: alternately with the reserved format bit
        set and cut to 20 bytes (the two failures a host can see; BLE's CRC catches bit
        errors in the air).
    unknown_every : int
        After every N-th notification, an extra frame of type 0x7F (as a band of a newer
        protocol minor might send); it does not take a ``seq``.
    disconnects : list of (at_s, for_s)
        Link drops at night time ``at_s``, the band out of range for ``for_s`` seconds.
    disconnect_every_s, disconnect_for_s : float
        A link drop every ``disconnect_every_s`` night seconds (from the first START),
        out of range for ``disconnect_for_s`` each time.
    max_disconnects : int
        At most this many periodic drops (0: unlimited).
    clock_ppm : float
        The band's crystal is this many parts per million fast (negative: slow); it
        drives the IMU and the band clock.
    reboot_at_s, reboot_for_s : float
        The band reboots at night time ``reboot_at_s`` (its session, ring buffer and
        sequence numbers are gone) and is back ``reboot_for_s`` later, idle.
    """

    drop_every: int = 0
    duplicate_every: int = 0
    corrupt_every: int = 0
    unknown_every: int = 0
    disconnects: list[tuple[float, float]] = field(default_factory=list)
    disconnect_every_s: float = 0.0
    disconnect_for_s: float = 5.0
    max_disconnects: int = 0
    clock_ppm: float = 0.0
    reboot_at_s: float | None = None
    reboot_for_s: float = 10.0

    def notify_hook(self, index: int, value: bytes) -> Fault:
        if self.drop_every and index % self.drop_every == self.drop_every - 1:
            return Fault.DROP
        if self.duplicate_every and index % self.duplicate_every == self.duplicate_every - 1:
            return Fault.DUPLICATE
        return Fault.SEND


@dataclass
class BandStats:
    """What the virtual band did (for tests and benchmarks)."""

    acquired: int = 0  # samples acquired while a session was streaming
    frames: int = 0  # notifications handed to the link (before faults)
    corrupted: int = 0  # damaged DATA notifications put on the air
    unknown_sent: int = 0  # notifications of an unknown type put on the air
    disconnects: int = 0  # scheduled drops performed
    reboots: int = 0
    commands: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# What the virtual bands share
# --------------------------------------------------------------------------------------
class VirtualDeviceBase:
    """What the virtual bands share: life cycle, control indications, link drops, pacing.

    Base of :class:`VirtualBand` and :class:`~pmld.ble.polar_band.VirtualPolarBand`: the
    clock, the peripheral and its task, the battery, the scheduled and periodic link
    drops (``faults.disconnects``, ``disconnect_every_s``, ``disconnect_for_s``,
    ``max_disconnects``, from the first START) and the paced and stepped loops. A
    subclass supplies its GATT profile and firmware through the hooks below. ``faults``
    needs those fields and ``clock_ppm``; ``stats`` needs ``commands`` and ``disconnects``.
    """

    _label = "virtual band"  # who crashed, in the log
    _logger = logger
    faults: Any
    stats: Any

    def __init__(
        self,
        radio: VirtualRadio,
        clock: VirtualClock,
        *,
        name: str,
        address: str | None,
        faults: Any,
        first_sample: int,
        battery_pct: float,
        battery_drain_pct_per_h: float,
        tick_s: float | None,
    ) -> None:
        self.radio = radio
        self.clock = clock
        self.name = name
        self.address = address
        self.faults = faults
        self.first_sample = int(first_sample)
        if tick_s is None:  # finer steps only when a step would hold many samples
            tick_s = 0.05 if clock.speed <= 5 else 0.02
        self.tick_s = float(tick_s)
        self.battery_pct = float(battery_pct)
        self.battery_drain_pct_per_h = float(battery_drain_pct_per_h)
        #: true UTC (ns) at which the first sample streamed after the first START was acquired
        self.first_sample_utc_ns: int | None = None
        self.finished = asyncio.Event()  # the night's samples are all acquired
        self.peripheral: VirtualPeripheral | None = None
        self._control: gatt.Characteristic | None = None
        self._data: gatt.Characteristic | None = None
        self._crystal = 1.0 + self.faults.clock_ppm * 1e-6  # device seconds per true second
        self._on = True  # powered (a band that is off does not advertise)
        self._replies_pending = 0  # a reply goes out before the frames that follow it
        self._first_start_s: float | None = None
        self._drops = sorted((float(a), float(b)) for a, b in self.faults.disconnects)
        self._next_periodic_drop: float | None = None
        self._periodic_drops = 0
        self._out_until: float | None = None  # out of range until this night time
        self._task: asyncio.Task[Any] | None = None
        self._closing = False

    # -- life cycle ----------------------------------------------------------------------
    @classmethod
    async def create(cls, radio: VirtualRadio, *args: Any, **kwargs: Any) -> Self:
        """Build the band, power it on and start advertising and sampling."""
        band = cls(radio, *args, **kwargs)
        await band.start()
        return band

    async def start(self) -> None:
        device = self.radio.create_device(self.name, self.address)
        self.peripheral = await self.radio.add_peripheral(device, **self._peripheral_kwargs())
        self.peripheral.notify_hook = self._notify_hook
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        if self._runs_firmware():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.peripheral is not None:
            await self.peripheral.close()

    # -- what a band supplies ------------------------------------------------------------
    def _peripheral_kwargs(self) -> dict[str, Any]:
        """Keywords of :meth:`VirtualRadio.add_peripheral`: services, advertising."""
        raise NotImplementedError

    def _runs_firmware(self) -> bool:
        """Whether the band samples and streams (a pacing task runs)."""
        return True

    def _notify_hook(self, index: int, value: bytes) -> Fault:
        raise NotImplementedError

    def _on_disconnection(self) -> None:
        raise NotImplementedError

    def _handle_command(self, value: bytes, elapsed_s: float) -> bytes:
        """Handle a control write at night time ``elapsed_s``; return the answer."""
        raise NotImplementedError

    def _first_sample_utc_ns(self) -> int:
        """True UTC (ns) of the first sample streamed, at the first START."""
        raise NotImplementedError

    def _acquire_until(self, elapsed_s: float) -> None:
        """Let the IMU take every sample due by night time ``elapsed_s``."""
        raise NotImplementedError

    async def _faults_due(self, elapsed_s: float) -> None:
        """Perform the scheduled faults due by night time ``elapsed_s``."""
        raise NotImplementedError

    async def _paced_step(self, elapsed_s: float) -> None:
        """One tick of a running clock, at night time ``elapsed_s``."""
        raise NotImplementedError

    async def _stepped_step(self, elapsed_s: float) -> None:
        """One turn of a stepped clock, after the faults due at ``elapsed_s``."""
        raise NotImplementedError

    # -- GATT ----------------------------------------------------------------------------
    def _on_connection(self, connection: Connection) -> None:
        connection.on(Connection.EVENT_DISCONNECTION, lambda reason: self._on_disconnection())

    def _on_control_write(self, connection: Any, value: bytes) -> None:
        elapsed = self.clock.elapsed_s()
        self._acquire_until(elapsed)  # what was acquired so far belongs to the old state
        value = bytes(value)
        self.stats.commands.append(value.hex())
        reply = self._handle_command(value, elapsed)
        # bumble sends the write response when this callback returns; the answer follows
        # as an indication, and no notification goes out before it
        self._send_reply(reply)

    def _send_reply(self, value: bytes) -> None:
        """Indicate ``value`` on the control characteristic; nothing is sent before it."""
        assert self.peripheral is not None
        self._replies_pending += 1
        self.peripheral.spawn(self._indicate(value))

    async def _indicate(self, value: bytes) -> None:
        assert self.peripheral is not None and self._control is not None
        try:
            await self.peripheral.indicate(self._control, value)
        finally:
            self._replies_pending -= 1

    def _battery_at(self, elapsed_s: float) -> int:
        """Battery level (%) at night time ``elapsed_s``."""
        pct = self.battery_pct - self.battery_drain_pct_per_h * elapsed_s / 3600.0
        return int(min(100, max(0, round(pct))))

    def _note_start(self, elapsed_s: float) -> None:
        """A START succeeded at ``elapsed_s``: the first one starts the fault schedule."""
        if self._first_start_s is not None:
            return
        self._first_start_s = elapsed_s
        self.first_sample_utc_ns = self._first_sample_utc_ns()
        if self.faults.disconnect_every_s > 0:
            self._next_periodic_drop = elapsed_s + self.faults.disconnect_every_s

    # -- the radio -----------------------------------------------------------------------
    def _host_subscribed(self) -> bool:
        """Connected, with the host subscribed to the data characteristic."""
        p = self.peripheral
        return (
            p is not None
            and p.is_connected
            and self._data is not None
            and p.is_subscribed(self._data)
        )

    async def _go_silent(self) -> None:
        """Drop the link (or stop advertising) without advertising again."""
        assert self.peripheral is not None
        if self.peripheral.is_connected:
            await self.peripheral.disconnect(advertise=False)
        elif self.peripheral.is_advertising:
            await self.peripheral.stop_advertising()

    async def _maybe_advertise(self) -> None:
        """Advertise again if powered, in range and neither connected nor advertising."""
        p = self.peripheral
        assert p is not None
        if self._on and self._out_until is None and not p.is_connected and not p.is_advertising:
            await p.start_advertising()

    def _periodic_drop_at(self) -> float | None:
        """Night time of the next periodic link drop (None: none left)."""
        limit = self.faults.max_disconnects
        if self._next_periodic_drop is None or (limit and self._periodic_drops >= limit):
            return None
        return self._next_periodic_drop

    async def _drop_link(self, at_s: float, *, periodic: bool) -> None:
        """The next scheduled (or periodic) link drop: out of range from night time ``at_s``."""
        if periodic:
            assert self._next_periodic_drop is not None
            self._periodic_drops += 1
            self._next_periodic_drop += self.faults.disconnect_every_s
            for_s = self.faults.disconnect_for_s
        else:
            for_s = self._drops.pop(0)[1]
        self.stats.disconnects += 1
        until = at_s + for_s
        self._out_until = until if self._out_until is None else max(self._out_until, until)
        await self._go_silent()

    # -- pacing --------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            if self.clock.stepped:
                await self._run_stepped()
            else:
                await self._run_paced()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in the band: make it visible, the test will fail
            self._logger.exception("%s %s crashed", self._label, self.name)
            raise

    async def _run_paced(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.tick_s)
            await self._paced_step(self.clock.elapsed_s())

    async def _run_stepped(self) -> None:
        """As fast as the link goes: the night moves on once the band has sent it all."""
        while not self._closing:
            elapsed = self.clock.elapsed_s()
            await self._faults_due(elapsed)
            await self._stepped_step(elapsed)

    def _step_to(self, elapsed_s: float) -> None:
        """Move a stepped clock to ``elapsed_s``, the IMU measuring up to it."""
        self.clock.advance_to(elapsed_s)
        self._acquire_until(elapsed_s)

    async def _let_deliver(self) -> None:
        """Yield until what was just notified has reached the central.

        A stepped clock must not move on before the recorder has stamped the arrivals of
        this step: the virtual link hands a packet on through a few ``call_soon`` hops
        (host -> controller -> link -> controller -> host), so a few turns of the loop.
        """
        for _ in range(DELIVERY_TURNS):
            await asyncio.sleep(0)


# --------------------------------------------------------------------------------------
# The band
# --------------------------------------------------------------------------------------
class VirtualBand(VirtualDeviceBase):
    """A virtual pmld band on a :class:`VirtualRadio`, streaming a simulated night.

    Create with :meth:`create` inside the running event loop; close with :meth:`close`.

    Parameters
    ----------
    radio : VirtualRadio
    counts : ndarray, shape (n, 3), int16
        The night the IMU measures, in counts (:func:`night_counts`).
    fs_hz : float
        Its sampling rate (an integer number of Hz: the band offers only this rate).
    clock : VirtualClock
    counts_per_g : float
        Scale of ``counts`` (INFO's ±range entry for ``range_g``).
    range_g : int
        The accelerometer range the band offers.
    name : str
        Advertised name (at most 11 characters with the 128-bit service UUID).
    faults : BandFaults
    buffer_samples : int
        Ring buffer capacity (samples).
    first_sample : int
        Index in ``counts`` of the first sample served.
    continuous : bool
        False: the night starts at the first START (session sample 0 is
        ``counts[first_sample]``). True: the night runs from power-on, acquisition
        ``n`` being ``counts[first_sample + n]`` whenever a session takes it (a band
        that was already on the ankle, e.g. when a recorder continues a night).
    kind : str
        One of :data:`BAND_KINDS` (``pmld``, or an impostor for the refusal paths).
    battery_pct, battery_drain_pct_per_h : float
        Battery at power-on and its drain per night hour.
    tick_s : float, optional
        Real seconds between two pacing steps of a running clock: 50 ms up to 5x real
        time (half the firmware's 100 ms latency timer), else 20 ms.
    session_seed : int, optional
        Session ids are ``session_seed + number of STARTs`` (random by default).
    """

    def __init__(
        self,
        radio: VirtualRadio,
        counts: np.ndarray,
        fs_hz: float,
        clock: VirtualClock,
        *,
        counts_per_g: float = 4096.0,
        range_g: int = 8,
        name: str = "pmld-band",
        address: str | None = None,
        faults: BandFaults | None = None,
        buffer_samples: int = DEFAULT_BUFFER_SAMPLES,
        first_sample: int = 0,
        continuous: bool = False,
        kind: str = "pmld",
        battery_pct: float = 95.0,
        battery_drain_pct_per_h: float = 4.0,
        tick_s: float | None = None,
        session_seed: int | None = None,
    ) -> None:
        if kind not in BAND_KINDS:
            raise ValueError(f"kind must be one of {BAND_KINDS}, got {kind!r}")
        rate = int(round(fs_hz))
        if abs(rate - fs_hz) > 1e-9 or rate <= 0:
            raise ValueError(f"a band samples at an integer rate in Hz, got {fs_hz}")
        super().__init__(
            radio,
            clock,
            name=name,
            address=address,
            faults=faults or BandFaults(),
            first_sample=first_sample,
            battery_pct=battery_pct,
            battery_drain_pct_per_h=battery_drain_pct_per_h,
            tick_s=tick_s,
        )
        self.counts = np.ascontiguousarray(counts, dtype=np.int16).reshape(-1, 3)
        self.rate_hz = rate
        self.kind = kind
        self.continuous = continuous
        self.stats = BandStats()
        if session_seed is None:  # as a band's firmware would: new ids after each boot
            session_seed = random.getrandbits(32)
        self.info = Info(
            rates_hz=(rate,),
            acc_ranges=(AccRange(int(range_g), float(np.float32(counts_per_g))),),
            buffer_samples=int(buffer_samples),
            model="pmld-virtual",
            firmware="sim-1.0",
            serial=f"V{session_seed & 0xFFFF:04X}",
            stop_on_overflow=True,
        )
        self.model = DeviceModel(self.info, session_seed=session_seed)
        self._boot_us = 1_000_000  # band clock at power-on (µs since boot)
        self._acquired = 0  # acquisitions (IMU samples) since power-on
        self._source = self.first_sample  # next index of `counts` the IMU measures
        self._started = continuous  # has the night begun for the IMU
        self._next_flush_us = 0
        self._data_frames = 0
        self._notify_count = 0
        self._corruptions = 0

    # -- life cycle ----------------------------------------------------------------------
    @classmethod
    async def from_night(
        cls, radio: VirtualRadio, night: Night, clock: VirtualClock, **kwargs: Any
    ) -> VirtualBand:
        """A band serving a simulated night's (first) sensor."""
        counts, fs_hz, counts_per_g = night_counts(night)
        range_g = int(round(float(night.sensor.device.get("range_g", 32768 / counts_per_g))))
        kwargs.setdefault("counts_per_g", counts_per_g)
        kwargs.setdefault("range_g", range_g)
        return await cls.create(radio, counts, fs_hz, clock, **kwargs)

    def _runs_firmware(self) -> bool:
        return self.kind in ("pmld", "not_pmld")

    @property
    def source_position(self) -> int:
        """Index in ``counts`` of the next sample the IMU will measure."""
        return self._source

    # -- GATT ----------------------------------------------------------------------------
    def _peripheral_kwargs(self) -> dict[str, Any]:
        services, uuids = self._services()
        return {"services": services, "service_uuids": uuids}

    def _services(self) -> tuple[list[gatt.Service], list[str]]:
        props = gatt.Characteristic.Properties
        if self.kind == "foreign":
            measurement = gatt.Characteristic(
                HEART_RATE_MEASUREMENT, props.NOTIFY, Attribute.Permissions.READABLE, b"\x00\x3c"
            )
            return [gatt.Service(HEART_RATE_SERVICE, [measurement])], [HEART_RATE_SERVICE]
        info = encode_info(self.info)
        if self.kind == "old_protocol":
            info = info[:4] + bytes([0, 9]) + info[6:]
        elif self.kind == "not_pmld":
            info = b"HRM1" + info[4:]
        self._control = gatt.Characteristic(
            CONTROL_UUID,
            props.WRITE | props.INDICATE,
            Attribute.Permissions.WRITEABLE,
            gatt.CharacteristicValue(write=self._on_control_write),
        )
        self._data = gatt.Characteristic(
            DATA_UUID, props.NOTIFY, Attribute.Permissions.READABLE, b""
        )
        service = gatt.Service(
            SERVICE_UUID,
            [
                gatt.Characteristic(INFO_UUID, props.READ, Attribute.Permissions.READABLE, info),
                self._control,
                self._data,
            ],
        )
        return [service], [SERVICE_UUID]

    def _on_disconnection(self) -> None:
        self.model.disconnect()

    def _handle_command(self, value: bytes, elapsed_s: float) -> bytes:
        before = self.model.state
        reply = self.model.handle_command(value, self._band_us(elapsed_s))
        if before != State.STREAMING and self.model.state == State.STREAMING:
            self._started = True  # the night begins with the first START
            self._note_start(elapsed_s)
        return reply

    def _first_sample_utc_ns(self) -> int:
        # sample 0 is the next acquisition, due at band time (n + 1) / rate
        band_s = (self._acquired + 1) / self.rate_hz
        return self.clock.start_ns + int(round(band_s / self._crystal * 1e9))

    def _notify_hook(self, index: int, value: bytes) -> Fault:
        return self.faults.notify_hook(index, value)

    # -- the IMU and the crystal ---------------------------------------------------------
    def _band_us(self, elapsed_s: float) -> int:
        """The band's clock (µs since boot) at night time ``elapsed_s``."""
        return self._boot_us + round(elapsed_s * 1e6 * self._crystal)

    def _acquire_until(self, elapsed_s: float) -> None:
        """Hand the IMU's samples due by night time ``elapsed_s`` to the firmware."""
        band_elapsed_us = self._band_us(elapsed_s) - self._boot_us
        due = band_elapsed_us * self.rate_hz // 1_000_000  # sample n is due at (n+1)/rate
        new = due - self._acquired
        if new <= 0:
            return
        first = self._acquired
        self._acquired = due
        self._set_battery(elapsed_s)
        if not self._started:
            return
        available = len(self.counts) - self._source
        n = min(new, max(available, 0))
        if n > 0:
            samples = self.counts[self._source : self._source + n]
            times = self._boot_us + (np.arange(first + 1, first + n + 1) * 1_000_000) // (
                self.rate_hz
            )
            self.stats.acquired += self.model.acquire(samples, times)
        self._source += new
        if self._source >= len(self.counts) and not self.finished.is_set():
            # the night is over: the sleeper presses the band's button
            if self.model.state == State.STREAMING:
                self.model.handle_command(encode_command(StopCommand(0)), self._band_us(elapsed_s))
            self.finished.set()

    def _set_battery(self, elapsed_s: float) -> None:
        self.model.set_battery(self._battery_at(elapsed_s))

    # -- the radio -----------------------------------------------------------------------
    async def _pump(self, elapsed_s: float, *, flush: bool | None = None) -> int:
        """Send every notification the firmware has ready; return how many."""
        if not self._host_subscribed() or self.model.cursor is None or self._replies_pending:
            return 0
        assert self.peripheral is not None and self._data is not None
        now_us = self._band_us(elapsed_s)
        if flush is None:
            flush = now_us >= self._next_flush_us
        if flush:
            self._next_flush_us = now_us + LATENCY_TIMER_US
        sent = 0
        mtu = self.peripheral.mtu
        while True:
            frame = self.model.next_frame(mtu, now_us, flush)
            if frame is None:
                break
            self.stats.frames += 1
            corrupt = False
            if frame[0] == FrameType.DATA:
                self._data_frames += 1
                every = self.faults.corrupt_every
                if every and self._data_frames % every == 0:
                    frame, corrupt = self._corrupt(frame), True
            copies = await self.peripheral.notify(self._data, frame)
            if corrupt:
                self.stats.corrupted += copies  # as they went on the air
            sent += 1
            self._notify_count += 1
            every = self.faults.unknown_every
            if every and self._notify_count % every == 0:
                unknown = b"\x7f\x00" + bytes(18)
                self.stats.unknown_sent += await self.peripheral.notify(self._data, unknown)
            if not self._host_subscribed():
                break
        return sent

    def _corrupt(self, frame: bytes) -> bytes:
        self._corruptions += 1
        if self._corruptions % 2:
            return frame[:1] + bytes([frame[1] | 0x80]) + frame[2:]  # reserved bit
        return frame[:20] if len(frame) > 20 else frame[:-1]  # truncated

    async def _faults_due(self, elapsed_s: float) -> None:
        """Start and end scheduled drops (one at a time: out of range, none starts)."""
        if self._out_until is not None:
            if elapsed_s >= self._out_until:
                self._out_until = None
                await self._maybe_advertise()
            return
        if self._first_start_s is None:
            return
        reboot = self.faults.reboot_at_s
        if reboot is not None and self.stats.reboots == 0 and elapsed_s >= reboot:
            self.stats.reboots += 1
            self.model = DeviceModel(self.info, session_seed=random.getrandbits(32))
            self._replies_pending = 0
            self._out_until = elapsed_s + self.faults.reboot_for_s  # not a scheduled drop
            await self._go_silent()
            return
        if self._drops and elapsed_s >= self._drops[0][0]:
            await self._drop_link(elapsed_s, periodic=False)
            return
        due = self._periodic_drop_at()
        if due is not None and elapsed_s >= due:
            await self._drop_link(elapsed_s, periodic=True)

    # -- pacing --------------------------------------------------------------------------
    async def _paced_step(self, elapsed_s: float) -> None:
        self._acquire_until(elapsed_s)  # what is due reaches the firmware before a reboot
        await self._faults_due(elapsed_s)
        await self._pump(elapsed_s)

    async def _stepped_step(self, elapsed_s: float) -> None:
        out_of_range = self._out_until is not None
        model = self.model
        # a reply on its way is stamped by the host before the night moves on
        sending = self._host_subscribed() and model.cursor is not None and not self._replies_pending
        caught_up = sending and model.cursor >= model.next_index
        if out_of_range or (caught_up and model.state == State.STREAMING):
            if self.finished.is_set() and not out_of_range:
                await asyncio.sleep(0.001)  # nothing more to measure
                return
            # one band second of samples per step, ending exactly when its last one is due
            chunk = max(1, self.rate_hz)
            elapsed_s = max(elapsed_s, (self._acquired + chunk) / self.rate_hz / self._crystal)
            self._step_to(elapsed_s)
            if sending and await self._pump(elapsed_s, flush=True):
                await self._let_deliver()
            else:
                await asyncio.sleep(0)
        elif sending:
            if await self._pump(elapsed_s, flush=True) == 0:
                await asyncio.sleep(0.001)
            else:
                await asyncio.sleep(0)
        else:
            await asyncio.sleep(0.001)  # waiting for the host
