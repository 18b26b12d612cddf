"""A virtual Polar band (Verity Sense or H10) streaming a simulated night over PMD.

:class:`VirtualPolarBand` is a bumble peripheral on a
:class:`~pmld.ble.virtual.VirtualRadio` that serves what a Polar Verity Sense or H10
serves to a third-party app: the Polar Measurement Data service (:mod:`pmld.ble.pmd`),
the Device Information, Battery and Heart Rate services, and an accelerometer that
measures a simulated night. It is for tests and for ``pmld record --virtual polar``;
the recorder talks to it through bleak exactly as it talks to a real band.

Time
----
As :class:`~pmld.ble.band.VirtualBand`: everything runs on a
:class:`~pmld.ble.band.VirtualClock` (paced ``speed`` times real time, or stepped by the
band as fast as the link goes). The band's crystal runs ``clock_ppm`` fast against true
time; its IMU runs from power-on: acquisition ``n`` since power-on is due at device time
``(n + 1) * (1 + sample_rate_ppm * 1e-6) / rate`` s and measures source sample
``first_sample + n`` (after a power cycle, the source has moved on by the acquisitions
the IMU would have made while off: the band stays on the ankle and the night goes on).
The IMU samples whether or not anyone listens; samples are *sent* only while the ACC
measurement is started, and a Polar band keeps no replay buffer: what is acquired before
START, during a disconnection or after the device stopped the measurement is never sent.

Frame timestamps are ns since 2000-01-01 of each frame's last sample:
``device_epoch_ns`` (by default the clock's start, as set by the phone app) plus the
device time since power-on. After a power cycle (:attr:`PolarFaults.power_off_at_s`) a
Verity Sense keeps its time; an H10 restarts its clock from
:attr:`PolarFaults.reset_time_ns` (0 by default: year 2000), so its timestamps jump back.

Frames
------
A frame is filled (:func:`~pmld.ble.pmd.fill_acc_frame`) up to the negotiated ATT MTU
(payload at most MTU - 3 bytes) and leaves when it is full (a raw frame holds its fixed
number, a compressed frame as soon as the next sample would not fit) or when its oldest
sample is ``latency_s`` (1 s) of device time old. At 52 Hz compressed (Verity) that is
one frame of ~53 samples a second; at MTU 247 raw int16 frames hold 39 samples. Samples
are in the unit of the frame type: raw (0x00..0x02) milli-g, 0x81 milli-g / FACTOR,
0x80 g / FACTOR; they saturate at the started range.

Life of a measurement
---------------------
* START (``02 02`` + settings) is answered with an indication after the write response;
  frames follow the answer. STOP (``03 02``) is answered and streaming stops; samples
  not yet framed are discarded.
* A disconnection (either side, out of range, power-off) ends the measurement: pending
  samples are discarded; after reconnecting the host must START again.
* :attr:`PolarFaults.device_stop_at_s`: the device stops the measurement on its own: it
  indicates ``01 02`` on the control point, discards pending samples and sends nothing
  more until the next START.
* End of the source night: a streaming band sends what is pending, sets
  :attr:`VirtualPolarBand.finished` and indicates ``01 02`` (as a device-initiated
  stop); a band that is not streaming just sets ``finished``. Any later START is
  answered INVALID_STATE (12): a host that STARTs again after this ``01 02``, as after
  any device stop, learns that the night is over.

Stepped clock: like the pmld band, the night moves on only while the band is streaming to
a subscribed host and has nothing ready to send (or while it is out of range / powered
off); it steps to the next scheduled fault or, earlier, to the time the next frame is due
(its oldest sample ``latency_s`` old, or a raw frame full); a band that is not streaming
steps by one second of samples. Compressed frames that fill up within a step leave at
its end. A reconnect or a host that has not STARTed yet costs no night time.

Which source sample is which
----------------------------
Every ACC frame handed to the link is logged in :attr:`PolarBandStats.frame_log`
(source index of its first sample, count, timestamp, fate); :meth:`PolarBandStats.runs`
and :meth:`PolarBandStats.source_indices` give the source indices of the samples the
host received (or should have), in order.

Deviations from the real devices
--------------------------------
Only ACC is simulated (other measurement types of the feature list answer
NOT_SUPPORTED). The H10 offers 25, 50, 100 and 200 Hz but streams only at its source
night's rate: another offered rate is answered INVALID_SAMPLE_RATE. STOP of a measurement
that is not running is answered SUCCESS. The SDK-mode and security settings are not
simulated. The heart-rate measurement never notifies.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bumble import core, gatt
from bumble.att import Attribute

from ..night import Night
from .band import VirtualClock, VirtualDeviceBase
from .pmd import (
    CONTROL_POINT_UUID,
    DATA_UUID,
    EPOCH_2000_NS,
    SERVICE_UUID,
    CpStatus,
    FrameType,
    MeasurementType,
    Op,
    PmdError,
    SettingType,
    decode_acc_frames,
    decode_settings,
    encode_acc_frame,
    encode_features,
    encode_response,
    fill_acc_frame,
    frame_unit_mg,
)
from .virtual import Fault, VirtualRadio, build_advertising_data

__all__ = [
    "POLAR_MODELS",
    "PolarBandStats",
    "PolarFaults",
    "PolarModel",
    "SentFrame",
    "VirtualPolarBand",
]

logger = logging.getLogger(__name__)

#: Device time after which a pending partial frame leaves (Verity sends every ~1-2 s).
DEFAULT_LATENCY_S = 1.0

HEART_RATE_SERVICE = core.UUID.from_16_bits(0x180D)
HEART_RATE_MEASUREMENT = core.UUID.from_16_bits(0x2A37)
DEVICE_INFORMATION_SERVICE = core.UUID.from_16_bits(0x180A)
MODEL_NUMBER = core.UUID.from_16_bits(0x2A24)
SERIAL_NUMBER = core.UUID.from_16_bits(0x2A25)
FIRMWARE_REVISION = core.UUID.from_16_bits(0x2A26)
MANUFACTURER_NAME = core.UUID.from_16_bits(0x2A29)
BATTERY_SERVICE = core.UUID.from_16_bits(0x180F)
BATTERY_LEVEL = core.UUID.from_16_bits(0x2A19)

_AD_SHORT_NAME = 0x08
_ADV_MAX = 31
_STOPPED = 0x01  # control point tag: the device stopped measurements on its own
_EPS = 1e-9  # seconds: events at float-rounded times


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolarModel:
    """What a Polar model offers (its PMD features and ACC settings) and how it is named."""

    key: str
    name_prefix: str  # advertised name: prefix + " " + device id
    model_number: str  # DIS 2A24
    firmware: str  # DIS 2A26
    features: tuple[int, ...]  # PMD measurement types
    rates_hz: tuple[int, ...]
    resolutions: tuple[int, ...]
    ranges_g: tuple[int, ...]
    channels: tuple[int, ...]
    frame_type: int  # the ACC frame type it streams by default
    keeps_time: bool  # its clock survives a power cycle
    other_measurement: int  # a measurement type for the "another measurement" fault

    def acc_settings(self) -> dict[int, list]:
        return {
            SettingType.SAMPLE_RATE: list(self.rates_hz),
            SettingType.RESOLUTION: list(self.resolutions),
            SettingType.RANGE: list(self.ranges_g),
            SettingType.CHANNELS: list(self.channels),
        }


POLAR_MODELS: dict[str, PolarModel] = {
    "verity": PolarModel(
        key="verity",
        name_prefix="Polar Sense",
        model_number="Polar Sense",
        firmware="2.1.8",
        features=(
            MeasurementType.PPG,
            MeasurementType.ACC,
            MeasurementType.PPI,
            MeasurementType.GYRO,
            MeasurementType.MAG,
        ),
        rates_hz=(52,),
        resolutions=(16,),
        ranges_g=(8,),
        channels=(3,),
        frame_type=FrameType.DELTA_MG,
        keeps_time=True,
        other_measurement=MeasurementType.PPG,
    ),
    "h10": PolarModel(
        key="h10",
        name_prefix="Polar H10",
        model_number="Polar H10",
        firmware="3.0.35",
        features=(MeasurementType.ECG, MeasurementType.ACC),
        rates_hz=(25, 50, 100, 200),
        resolutions=(16,),
        ranges_g=(2, 4, 8),
        channels=(3,),
        frame_type=FrameType.RAW_INT16,
        keeps_time=False,
        other_measurement=MeasurementType.ECG,
    ),
}

_RAW_BYTES = {FrameType.RAW_INT8: 1, FrameType.RAW_INT16: 2, FrameType.RAW_INT24: 3}


# --------------------------------------------------------------------------------------
# Faults and statistics
# --------------------------------------------------------------------------------------
@dataclass
class PolarFaults:
    """What goes wrong with a virtual Polar band. Zero, None or empty means never.

    Data-frame faults count ACC data frames handed to the link (from 1): the N-th,
    2N-th... frame is affected; a frame gets at most one fault, checked in the order
    drop, bad width, truncate, duplicate (so ``bad_width_every=2 * truncate_every``
    gives both kinds).

    Attributes
    ----------
    drop_every : int
        Every N-th data frame is lost in the air.
    duplicate_every : int
        Every N-th data frame is delivered twice (same bytes).
    truncate_every : int
        Every N-th data frame arrives cut short (its samples are lost: the decoder
        reports ``truncated``).
    bad_width_every : int
        Every N-th compressed data frame of 2 samples or more says bit width 17 in its
        first block header (its samples are lost: ``bad_bit_width``). No effect on raw
        frames.
    unknown_every : int
        After every N-th data frame an extra frame, alternately an ACC frame of the
        unknown frame type 0x7F and a frame of another measurement type (PPG on the
        Verity, ECG on the H10).
    disconnects : list of (at_s, for_s)
        Link drops at night time ``at_s``, the band out of range for ``for_s`` seconds.
    disconnect_every_s, disconnect_for_s : float
        A link drop every ``disconnect_every_s`` night seconds (from the first START),
        out of range for ``disconnect_for_s`` each time.
    max_disconnects : int
        At most this many periodic drops (0: unlimited).
    clock_ppm : float
        The device crystal is this many ppm fast (negative: slow) against true time.
    sample_rate_ppm : float
        The IMU's sampling period is this many ppm longer than nominal, measured on the
        device's own clock (its timestamps show a rate off nominal).
    device_stop_at_s : list of float
        Night times at which the device stops a running ACC measurement on its own
        (indication ``01 02``); the host is expected to START again.
    refuse_start : list of int
        Statuses answered to the first STARTs, one per START (e.g.
        ``[CpStatus.INVALID_STATE]``); later STARTs are handled normally.
    power_off_at_s, power_off_for_s : float
        A power cycle at night time ``power_off_at_s``: the link drops, the band is
        silent for ``power_off_for_s`` s, then advertises again. An H10's clock restarts
        from ``reset_time_ns``; a Verity Sense keeps its time.
    reset_time_ns : int
        Device time (ns since 2000-01-01) an H10 restarts its clock from after a power
        cycle.

    Scheduled disconnects and power-offs start counting at the first START (a time
    already passed then fires at once); device stops at or before a START are ignored.
    """

    drop_every: int = 0
    duplicate_every: int = 0
    truncate_every: int = 0
    bad_width_every: int = 0
    unknown_every: int = 0
    disconnects: list[tuple[float, float]] = field(default_factory=list)
    disconnect_every_s: float = 0.0
    disconnect_for_s: float = 5.0
    max_disconnects: int = 0
    clock_ppm: float = 0.0
    sample_rate_ppm: float = 0.0
    device_stop_at_s: list[float] = field(default_factory=list)
    refuse_start: list[int] = field(default_factory=list)
    power_off_at_s: float | None = None
    power_off_for_s: float = 10.0
    reset_time_ns: int = 0

    @staticmethod
    def _every(n: int, k: int) -> bool:
        return bool(n) and k % n == 0

    def data_fault(self, k: int, *, compressed: bool = True) -> str:
        """Fate of the ``k``-th data frame (from 1); a bad width needs a compressed one."""
        if self._every(self.drop_every, k):
            return "dropped"
        if compressed and self._every(self.bad_width_every, k):
            return "bad_width"
        if self._every(self.truncate_every, k):
            return "truncated"
        if self._every(self.duplicate_every, k):
            return "duplicated"
        return "sent"


#: Fates of a data frame in which the host gets its samples.
DELIVERED_FATES = ("sent", "duplicated")


@dataclass(slots=True)
class SentFrame:
    """One ACC data frame handed to the link.

    ``fate``: ``sent``, ``duplicated`` (delivered twice), ``dropped``, ``truncated``,
    ``bad_width`` or ``lost`` (nobody subscribed when it left). ``copies``: how many
    went on the air.
    """

    first: int  # source index of the first sample
    count: int
    timestamp_ns: int  # the frame's timestamp (device time of its last sample)
    fate: str
    copies: int

    @property
    def delivered(self) -> bool:
        return self.fate in DELIVERED_FATES and self.copies > 0


@dataclass
class PolarBandStats:
    """What the virtual Polar band did (for tests and benchmarks)."""

    acquired: int = 0  # samples acquired while a measurement was started
    frames: int = 0  # ACC data frames handed to the link
    samples_framed: int = 0  # samples in those frames
    dropped: int = 0
    duplicated: int = 0
    truncated: int = 0
    bad_width: int = 0
    unknown_sent: int = 0  # extra ACC frames of an unknown frame type on the air
    other_sent: int = 0  # extra frames of another measurement type on the air
    discarded: int = 0  # pending samples thrown away (STOP, disconnection, device stop)
    starts: int = 0  # STARTs answered SUCCESS
    refused: int = 0  # STARTs answered with an error
    stops: int = 0  # STOPs from the host
    device_stops: int = 0  # ``01 02`` indications (device stops and the night's end)
    disconnects: int = 0  # scheduled (out of range) drops performed
    power_cycles: int = 0
    commands: list[str] = field(default_factory=list)  # control point writes, hex
    frame_log: list[SentFrame] = field(default_factory=list)

    def runs(self, delivered: bool = True) -> list[tuple[int, int]]:
        """``(first source index, count)`` runs of consecutive samples, in send order.

        ``delivered=True``: only frames whose samples reach the host (sent or
        duplicated, counted once); False: every frame handed to the link.
        """
        out: list[tuple[int, int]] = []
        for f in self.frame_log:
            if delivered and not f.delivered:
                continue
            if out and out[-1][0] + out[-1][1] == f.first:
                out[-1] = (out[-1][0], out[-1][1] + f.count)
            else:
                out.append((f.first, f.count))
        return out

    def source_indices(self, delivered: bool = True) -> np.ndarray:
        """Source index of every sample (see :meth:`runs`), in send order."""
        runs = self.runs(delivered)
        if not runs:
            return np.zeros(0, np.int64)
        return np.concatenate([np.arange(a, a + n, dtype=np.int64) for a, n in runs])


@dataclass
class _Segment:
    """One power-on of the band."""

    t_on: float  # true night time of power-on
    src0: int  # source index of acquisition 0
    dev0_ns: int  # device time at power-on, ns since 2000-01-01


# --------------------------------------------------------------------------------------
# The band
# --------------------------------------------------------------------------------------
class VirtualPolarBand(VirtualDeviceBase):
    """A virtual Polar Verity Sense or H10 on a :class:`VirtualRadio`, streaming a night.

    Create with :meth:`create` (or :meth:`from_night`) inside the running event loop;
    close with :meth:`close`.

    Parameters
    ----------
    radio : VirtualRadio
    samples : ndarray, shape (n, 3), integers
        The night the accelerometer measures, in the unit of ``frame_type`` (see the
        module docstring; :meth:`from_night` converts from g).
    fs_hz : float
        Its sampling rate: one of the model's rates.
    clock : VirtualClock
    model : {"verity", "h10"}
    name : str, optional
        GAP name (default ``"Polar Sense <id>"`` / ``"Polar H10 <id>"``).
    address : str, optional
        Random static address; random by default.
    device_id : str, optional
        The 8 hex digits of the name (random by default).
    frame_type : int, optional
        ACC frame type streamed: default 0x81 (verity) or 0x01 (h10).
    factor : float
        FACTOR of compressed frames (0x80, 0x81); the START answer carries it when it
        is not 1.0. Must be 1.0 for raw frame types.
    faults : PolarFaults
    first_sample : int
        Source index of acquisition 0 after power-on.
    advertise_pmd : bool
        Advertise the PMD service UUID (with a shortened name, AD type 0x08, to fit 31
        bytes) instead of the complete name and the Heart Rate service.
    device_epoch_ns : int, optional
        Device time (ns since 2000-01-01) at power-on; default the clock's start.
    battery_pct, battery_drain_pct_per_h : float
        Battery at power-on and its drain per night hour.
    latency_s : float
        Device time after which a partial frame leaves.
    tick_s : float, optional
        Real seconds between pacing steps of a running clock (as the pmld band).
    """

    _label = "virtual Polar band"
    _logger = logger

    def __init__(
        self,
        radio: VirtualRadio,
        samples: np.ndarray,
        fs_hz: float,
        clock: VirtualClock,
        *,
        model: str = "verity",
        name: str | None = None,
        address: str | None = None,
        device_id: str | None = None,
        frame_type: int | None = None,
        factor: float = 1.0,
        faults: PolarFaults | None = None,
        first_sample: int = 0,
        advertise_pmd: bool = False,
        device_epoch_ns: int | None = None,
        battery_pct: float = 90.0,
        battery_drain_pct_per_h: float = 1.5,
        latency_s: float = DEFAULT_LATENCY_S,
        tick_s: float | None = None,
    ) -> None:
        if model not in POLAR_MODELS:
            raise ValueError(f"model must be one of {sorted(POLAR_MODELS)}, got {model!r}")
        self.spec = POLAR_MODELS[model]
        rate = int(round(fs_hz))
        if abs(rate - fs_hz) > 1e-9 or rate not in self.spec.rates_hz:
            raise ValueError(
                f"a {self.spec.model_number} samples at {self.spec.rates_hz} Hz, got {fs_hz} "
                "(simulate the night at one of those rates)"
            )
        self.frame_type = int(self.spec.frame_type if frame_type is None else frame_type)
        self.factor = float(factor)
        unit_mg = frame_unit_mg(self.frame_type, self.factor)  # raises for unknown types
        if self.frame_type in _RAW_BYTES and self.factor != 1.0:
            raise ValueError("FACTOR applies to compressed frame types (0x80, 0x81) only")
        if not self.factor > 0:
            raise ValueError(f"factor must be positive, got {factor}")
        self.unit_mg = unit_mg
        arr = np.asarray(samples)
        if arr.ndim != 2 or arr.shape[1] != 3 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError("samples must be an (n, 3) array of integers")
        lo, hi = self._type_limits()
        if arr.size and (arr.min() < lo or arr.max() > hi):
            raise ValueError(f"samples do not fit frame type 0x{self.frame_type:02x} ({lo}..{hi})")
        self.samples = np.ascontiguousarray(arr, dtype=np.int32)
        self.rate_hz = rate
        if device_id is None:
            device_id = f"{random.getrandbits(32):08X}"
        self.device_id = device_id.upper()
        super().__init__(
            radio,
            clock,
            name=name if name is not None else f"{self.spec.name_prefix} {self.device_id}",
            address=address,
            faults=faults or PolarFaults(),
            first_sample=first_sample,
            battery_pct=battery_pct,
            battery_drain_pct_per_h=battery_drain_pct_per_h,
            tick_s=tick_s,
        )
        self.advertise_pmd = bool(advertise_pmd)
        if device_epoch_ns is None:
            device_epoch_ns = clock.start_ns - EPOCH_2000_NS
        self.device_epoch_ns = int(device_epoch_ns)
        self.latency_s = float(latency_s)
        self.stats = PolarBandStats()
        # time
        self._period_s = (1.0 + self.faults.sample_rate_ppm * 1e-6) / rate  # device s
        self._period_ns = self._period_s * 1e9
        self.segments: list[_Segment] = [_Segment(0.0, self.first_sample, self.device_epoch_ns)]
        self._acquired = 0  # acquisitions since power-on
        self._exhausted = False
        self._ending = False
        # measurement
        self._streaming = False
        self._range_g = max(self.spec.ranges_g)
        self._clip = self._clip_limits(self._range_g)
        self._pend_m0 = 0  # acquisition index (this power-on) of the oldest pending sample
        self._pend_n = 0
        self._plan_key: tuple[int, int, int] | None = None
        self._plan = (0, False)
        self._refusals = deque(int(s) for s in self.faults.refuse_start)
        # faults (link drops: VirtualDeviceBase)
        self._stops = sorted(float(t) for t in self.faults.device_stop_at_s)
        self._power_off_at = self.faults.power_off_at_s
        self._off_until: float | None = None
        self._data_frames = 0
        self._extras = 0
        self._hook_fault = Fault.SEND

    # -- life cycle ----------------------------------------------------------------------
    @classmethod
    async def from_night(
        cls, radio: VirtualRadio, night: Night, clock: VirtualClock, **kwargs: Any
    ) -> VirtualPolarBand:
        """A band measuring a simulated night's (first) sensor.

        The night's g are converted to the unit of the frame type (``model``,
        ``frame_type`` and ``factor`` as for the constructor): raw types milli-g, 0x81
        milli-g / factor, 0x80 g / factor, rounded to integers. ``factor=1/4096`` with
        0x80 gives the simulator's int16 counts exactly.
        """
        key = kwargs.get("model", "verity")
        if key not in POLAR_MODELS:
            raise ValueError(f"model must be one of {sorted(POLAR_MODELS)}, got {key!r}")
        model = POLAR_MODELS[key]
        frame_type = kwargs.get("frame_type")
        frame_type = int(model.frame_type if frame_type is None else frame_type)
        factor = float(kwargs.get("factor", 1.0))
        unit_g = frame_unit_mg(frame_type, factor) / 1000.0
        samples = np.rint(night.sensor.acc_g.astype(np.float64) / unit_g).astype(np.int64)
        return await cls.create(radio, samples, night.sensor.fs_hz, clock, **kwargs)

    # -- public helpers ------------------------------------------------------------------
    @property
    def streaming(self) -> bool:
        """Whether the ACC measurement is started."""
        return self._streaming

    @property
    def source_position(self) -> int:
        """Source index of the IMU's next acquisition (while powered)."""
        return self.segments[-1].src0 + self._acquired

    def _segment_of(self, source_index: int) -> _Segment:
        seg = self.segments[0]
        for s in self.segments:
            if s.src0 <= source_index:
                seg = s
        return seg

    def true_utc_ns(self, source_index: int) -> int:
        """True UTC (ns since the Unix epoch) at which a source sample is acquired.

        By the power-on it falls in (a sample skipped while the band was off gets the
        time it would have been acquired at).
        """
        seg = self._segment_of(source_index)
        m = int(source_index) - seg.src0
        t = seg.t_on + (m + 1) * self._period_s / self._crystal
        return self.clock.start_ns + int(round(t * 1e9))

    def device_stamp_ns(self, source_index: int) -> int:
        """The device's timestamp (ns since 2000-01-01) of a source sample.

        A frame's timestamp is this of its last sample.
        """
        seg = self._segment_of(source_index)
        return seg.dev0_ns + int(round((int(source_index) - seg.src0 + 1) * self._period_ns))

    def advertising_data(self) -> bytes:
        """Name + Heart Rate service, or shortened name + PMD service (``advertise_pmd``)."""
        if not self.advertise_pmd:
            return build_advertising_data(self.name, [HEART_RATE_SERVICE])
        tail = build_advertising_data(None, [SERVICE_UUID])
        room = _ADV_MAX - len(tail) - 2
        short = self.name.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip()
        return bytes([len(short.encode()) + 1, _AD_SHORT_NAME]) + short.encode() + tail

    # -- GATT ----------------------------------------------------------------------------
    def _peripheral_kwargs(self) -> dict[str, Any]:
        return {"services": self._services(), "advertising_data": self.advertising_data()}

    def _services(self) -> list[gatt.Service]:
        props = gatt.Characteristic.Properties
        readable = Attribute.Permissions.READABLE
        self._control = gatt.Characteristic(
            CONTROL_POINT_UUID,
            props.READ | props.WRITE | props.INDICATE,
            readable | Attribute.Permissions.WRITEABLE,
            gatt.CharacteristicValue(read=self._on_control_read, write=self._on_control_write),
        )
        self._data = gatt.Characteristic(DATA_UUID, props.NOTIFY, readable, b"")
        pmd_service = gatt.Service(SERVICE_UUID, [self._control, self._data])
        dis = gatt.Service(
            DEVICE_INFORMATION_SERVICE,
            [
                gatt.Characteristic(MANUFACTURER_NAME, props.READ, readable, b"Polar Electro Oy"),
                gatt.Characteristic(
                    MODEL_NUMBER, props.READ, readable, self.spec.model_number.encode()
                ),
                gatt.Characteristic(SERIAL_NUMBER, props.READ, readable, self.serial.encode()),
                gatt.Characteristic(
                    FIRMWARE_REVISION, props.READ, readable, self.spec.firmware.encode()
                ),
            ],
        )
        battery = gatt.Service(
            BATTERY_SERVICE,
            [
                gatt.Characteristic(
                    BATTERY_LEVEL,
                    props.READ | props.NOTIFY,
                    readable,
                    gatt.CharacteristicValue(read=self._on_battery_read),
                )
            ],
        )
        heart_rate = gatt.Service(
            HEART_RATE_SERVICE,
            [gatt.Characteristic(HEART_RATE_MEASUREMENT, props.NOTIFY, readable, b"\x00\x3c")],
        )
        return [pmd_service, dis, battery, heart_rate]

    @property
    def serial(self) -> str:
        """DIS serial number (the device id)."""
        return self.device_id

    def battery_level(self) -> int:
        return self._battery_at(self.clock.elapsed_s())

    def _on_battery_read(self, connection: Any) -> bytes:
        return bytes([self.battery_level()])

    def _on_control_read(self, connection: Any) -> bytes:
        return encode_features(self.spec.features)

    def _on_disconnection(self) -> None:
        # the measurement ends with the link; nothing is kept for the next connection
        self._acquire_until(self.clock.elapsed_s())
        self._stop_streaming()

    def _notify_hook(self, index: int, value: bytes) -> Fault:
        return self._hook_fault

    # -- control point -------------------------------------------------------------------
    def _handle_command(self, value: bytes, elapsed: float) -> bytes:
        if len(value) < 2:
            op = value[0] if value else 0
            return encode_response(op, 0, CpStatus.INVALID_LENGTH)
        op, mtype = value[0], value[1]
        if op not in (Op.GET_SETTINGS, Op.START, Op.STOP):
            return encode_response(op, mtype, CpStatus.INVALID_OP_CODE)
        if mtype not in self.spec.features:
            return encode_response(op, mtype, CpStatus.INVALID_MEASUREMENT_TYPE)
        if mtype != MeasurementType.ACC:
            return encode_response(op, mtype, CpStatus.NOT_SUPPORTED)
        if op == Op.GET_SETTINGS:
            return encode_response(op, mtype, CpStatus.SUCCESS, self.spec.acc_settings())
        if op == Op.STOP:
            if self._streaming:
                self.stats.stops += 1
                self._stop_streaming()
            return encode_response(op, mtype, CpStatus.SUCCESS)
        status = self._check_start(value[2:])
        if status != CpStatus.SUCCESS:
            self.stats.refused += 1
            return encode_response(op, mtype, status)
        self._start_streaming(elapsed)
        extra = {SettingType.FACTOR: [self.factor]} if self.factor != 1.0 else None
        return encode_response(op, mtype, CpStatus.SUCCESS, extra)

    def _check_start(self, body: bytes) -> int:
        """Status of a START with these settings (and records its range)."""
        if self._refusals:
            return self._refusals.popleft()
        if self._exhausted:
            return CpStatus.INVALID_STATE
        assert self.peripheral is not None
        if self.peripheral.mtu <= 23:
            return CpStatus.INVALID_MTU
        if self._streaming:
            return CpStatus.ALREADY_IN_STATE
        try:
            settings = decode_settings(body)
        except PmdError:
            return CpStatus.INVALID_PARAMETER
        required = (SettingType.SAMPLE_RATE, SettingType.RESOLUTION, SettingType.RANGE)
        if any(len(settings.get(k, ())) != 1 for k in required):
            return CpStatus.INVALID_PARAMETER
        channels = settings.get(SettingType.CHANNELS, [3])
        if len(channels) != 1:
            return CpStatus.INVALID_PARAMETER
        rate = settings[SettingType.SAMPLE_RATE][0]
        if rate not in self.spec.rates_hz or rate != self.rate_hz:
            return CpStatus.INVALID_SAMPLE_RATE
        if settings[SettingType.RESOLUTION][0] not in self.spec.resolutions:
            return CpStatus.INVALID_RESOLUTION
        range_g = settings[SettingType.RANGE][0]
        if range_g not in self.spec.ranges_g:
            return CpStatus.INVALID_RANGE
        if channels[0] not in self.spec.channels:
            return CpStatus.INVALID_NUMBER_OF_CHANNELS
        self._range_g = int(range_g)
        self._clip = self._clip_limits(self._range_g)
        return CpStatus.SUCCESS

    def _start_streaming(self, elapsed: float) -> None:
        self._streaming = True
        self._pend_n = 0
        self._pend_m0 = self._acquired
        self._plan_key = None
        self.stats.starts += 1
        while self._stops and self._stops[0] <= elapsed + _EPS:
            self._stops.pop(0)  # a scheduled device stop before this START: nothing to stop
        self._note_start(elapsed)

    def _first_sample_utc_ns(self) -> int:
        return self.true_utc_ns(self.source_position)

    def _stop_streaming(self) -> None:
        self.stats.discarded += self._pend_n
        self._pend_n = 0
        self._streaming = False

    # -- the IMU and the crystal ---------------------------------------------------------
    def _type_limits(self) -> tuple[int, int]:
        width = _RAW_BYTES.get(self.frame_type)
        bits = 8 * width if width else 16
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def _clip_limits(self, range_g: int) -> tuple[int, int]:
        """Sample limits in frame units at a range (the accelerometer saturates)."""
        lo, hi = self._type_limits()
        full = int(math.floor(range_g * 1000.0 / self.unit_mg + 1e-9))
        return max(lo, -full), min(hi, full)

    def _dev_s(self, elapsed_s: float) -> float:
        """Device seconds since the current power-on at night time ``elapsed_s``."""
        return (elapsed_s - self.segments[-1].t_on) * self._crystal

    def _acq_time(self, m: int) -> float:
        """Night time at which acquisition ``m`` (of the current power-on) is due."""
        return self.segments[-1].t_on + (m + 1) * self._period_s / self._crystal

    def _stamp_ns(self, m: int) -> int:
        """Device timestamp (ns since 2000) of acquisition ``m`` of the current power-on."""
        return self.segments[-1].dev0_ns + int(round((m + 1) * self._period_ns))

    def _acquire_until(self, elapsed_s: float) -> None:
        """Let the IMU take every sample due by night time ``elapsed_s``."""
        if not self._on or self._exhausted:
            return
        due = int(math.floor(self._dev_s(elapsed_s) / self._period_s + 1e-6))
        new = due - self._acquired
        if new <= 0:
            return
        first = self._acquired
        self._acquired = due
        src0 = self.segments[-1].src0
        take = min(new, max(len(self.samples) - (src0 + first), 0))
        if self._streaming and take > 0:
            if self._pend_n == 0:
                self._pend_m0 = first
            self._pend_n += take
            self.stats.acquired += take
        if src0 + due >= len(self.samples):
            self._exhausted = True
            self._ending = True

    def _values(self, m0: int, n: int) -> np.ndarray:
        src = self.segments[-1].src0 + m0
        lo, hi = self._clip
        return np.clip(self.samples[src : src + n], lo, hi)

    def _frame_plan(self) -> tuple[int, bool]:
        """(samples in the next frame, whether it is full) for the pending samples."""
        assert self.peripheral is not None
        budget = self.peripheral.mtu - 3
        key = (self._pend_m0, self._pend_n, budget)
        if key == self._plan_key:
            return self._plan
        width = _RAW_BYTES.get(self.frame_type)
        if width is not None:
            cap = max(1, (budget - 10) // (3 * width))
            n_fit = min(self._pend_n, cap)
            full = self._pend_n >= cap
        else:
            bound = min(self._pend_n, (budget - 16) * 8 // 6 + 2)  # deltas take >= 6 bits
            n_fit = max(
                1, fill_acc_frame(self._values(self._pend_m0, bound), self.frame_type, budget)
            )
            full = n_fit < self._pend_n
        self._plan_key, self._plan = key, (n_fit, full)
        return self._plan

    def _latency_due(self, elapsed_s: float) -> bool:
        oldest = (self._pend_m0 + 1) * self._period_s
        return self._dev_s(elapsed_s) + _EPS >= oldest + self.latency_s

    def _ready(self, elapsed_s: float) -> bool:
        if not self._streaming or not self._pend_n:
            return False
        return self._frame_plan()[1] or self._latency_due(elapsed_s)

    # -- the radio -----------------------------------------------------------------------
    def _link_up(self) -> bool:
        p = self.peripheral
        return p is not None and p.is_connected

    def _sending(self) -> bool:
        """Streaming to a subscribed host, no answer on its way."""
        return self._streaming and not self._replies_pending and self._host_subscribed()

    async def _pump(self, elapsed_s: float, *, flush: bool = False) -> int:
        """Send every frame that is due (all pending with ``flush``); return how many."""
        if not self._streaming or self._replies_pending or not self._link_up():
            return 0
        sent = 0
        while self._streaming and self._pend_n and self._link_up():
            n, full = self._frame_plan()
            if not (full or flush or self._latency_due(elapsed_s)):
                break
            await self._send_frame(n)
            sent += 1
        return sent

    async def _send_frame(self, n: int) -> None:
        assert self.peripheral is not None and self._data is not None
        m0 = self._pend_m0
        values = self._values(m0, n)
        stamp = self._stamp_ns(m0 + n - 1)
        frame = encode_acc_frame(values, stamp, self.frame_type)
        first = self.segments[-1].src0 + m0
        self._pend_m0 += n
        self._pend_n -= n
        self._data_frames += 1
        k = self._data_frames
        fate = self.faults.data_fault(k, compressed=self.frame_type not in _RAW_BYTES and n >= 2)
        if fate == "truncated":
            frame = _truncate(frame)
        elif fate == "bad_width":  # the first block header: after header and reference
            frame = frame[:16] + bytes([17]) + frame[17:]
        self._hook_fault = {"dropped": Fault.DROP, "duplicated": Fault.DUPLICATE}.get(
            fate, Fault.SEND
        )
        try:
            copies = await self.peripheral.notify(self._data, frame)
        finally:
            self._hook_fault = Fault.SEND
        if fate != "dropped" and copies == 0:
            fate = "lost"
        self.stats.frames += 1
        self.stats.samples_framed += n
        if fate in ("dropped", "duplicated", "truncated", "bad_width"):
            setattr(self.stats, fate, getattr(self.stats, fate) + 1)
        self.stats.frame_log.append(SentFrame(first, n, stamp, fate, copies))
        if self.faults.unknown_every and k % self.faults.unknown_every == 0:
            await self._send_extra(stamp)

    async def _send_extra(self, stamp: int) -> None:
        assert self.peripheral is not None and self._data is not None
        self._extras += 1
        if self._extras % 2:
            extra = struct.pack("<BQB", MeasurementType.ACC, stamp, 0x7F) + bytes(12)
            self.stats.unknown_sent += await self.peripheral.notify(self._data, extra)
        else:
            mtype = self.spec.other_measurement
            extra = struct.pack("<BQB", mtype, stamp, 0x00) + bytes(30)
            self.stats.other_sent += await self.peripheral.notify(self._data, extra)

    async def _end(self, elapsed_s: float) -> None:
        """The source night is over: send what is pending, say stopped, finish."""
        self._ending = False
        if not self._streaming:
            self.finished.set()
            return
        await self._pump(elapsed_s, flush=True)
        await self._let_deliver()
        was_connected = self._link_up()
        self._stop_streaming()
        # set before the indication: a host that sees 01 02 can tell the end of the night
        self.finished.set()
        if was_connected:
            self.stats.device_stops += 1
            self._replies_pending += 1
            await self._indicate(bytes([_STOPPED, MeasurementType.ACC]))

    # -- faults --------------------------------------------------------------------------
    def _next_event(self) -> tuple[float, str] | None:
        """The earliest scheduled event (night time, kind)."""
        events: list[tuple[float, str]] = []
        if self._off_until is not None:
            events.append((self._off_until, "power_on"))
        if self._out_until is not None:
            events.append((self._out_until, "in_range"))
        if self._first_start_s is not None:
            if self._power_off_at is not None:
                events.append((self._power_off_at, "power_off"))
            if self._stops:
                events.append((self._stops[0], "device_stop"))
            if self._drops:
                events.append((self._drops[0][0], "drop"))
            periodic = self._periodic_drop_at()
            if periodic is not None:
                events.append((periodic, "periodic_drop"))
        return min(events) if events else None

    async def _faults_due(self, elapsed_s: float) -> None:
        """Perform every scheduled event due by night time ``elapsed_s``, in time order."""
        while True:
            event = self._next_event()
            if event is None or event[0] > elapsed_s + _EPS:
                return
            at, kind = event
            self._acquire_until(at)  # the IMU has measured up to the event
            if kind == "power_on":
                self._power_on(at)
                await self._maybe_advertise()
            elif kind == "in_range":
                self._out_until = None
                await self._maybe_advertise()
            elif kind == "power_off":
                self._power_off_at = None
                self.stats.power_cycles += 1
                self._stop_streaming()
                self._on = False
                self._off_until = at + self.faults.power_off_for_s
                await self._go_silent()
            elif kind == "device_stop":
                self._stops.pop(0)
                if self._streaming and self._link_up():
                    self.stats.device_stops += 1
                    self._stop_streaming()
                    self._send_reply(bytes([_STOPPED, MeasurementType.ACC]))
            else:  # a link drop: out of range (a drop while out of range lasts longer)
                await self._drop_link(at, periodic=kind == "periodic_drop")

    def _power_on(self, at: float) -> None:
        """A new power-on at night time ``at``: the IMU restarts, the source has moved on."""
        seg = self.segments[-1]
        skipped = int(math.floor((at - seg.t_on) * self._crystal / self._period_s + 1e-6))
        if self.spec.keeps_time:
            dev0 = seg.dev0_ns + int(round((at - seg.t_on) * self._crystal * 1e9))
        else:
            dev0 = int(self.faults.reset_time_ns)
        self.segments.append(_Segment(at, seg.src0 + skipped, dev0))
        self._acquired = 0
        self._pend_n = 0
        self._plan_key = None
        self._off_until = None
        self._on = True
        if seg.src0 + skipped >= len(self.samples) and not self._exhausted:
            self._exhausted = True
            self._ending = True

    # -- pacing --------------------------------------------------------------------------
    async def _paced_step(self, elapsed: float) -> None:
        await self._faults_due(elapsed)  # each event acquires up to its own time first
        self._acquire_until(elapsed)
        if self._ending and not self._replies_pending:
            await self._end(elapsed)
        await self._pump(elapsed)

    def _next_step(self, elapsed: float) -> float:
        """Where a stepped clock goes next: a due frame, an event, or 1 s of samples."""
        targets = []
        event = self._next_event()
        if event is not None:
            targets.append(event[0])
        if self._on and not self._exhausted:
            m = self._acquired
            # a second of samples, or more: a streaming band's next due frame comes first
            chunk = max(self.rate_hz, math.ceil(self.latency_s / self._period_s) + 1)
            targets.append(self._acq_time(m + chunk - 1))
            if self._streaming:
                oldest = self._pend_m0 if self._pend_n else m
                t_lat = (
                    self.segments[-1].t_on
                    + ((oldest + 1) * self._period_s + self.latency_s) / self._crystal
                )
                targets.append(t_lat)
                width = _RAW_BYTES.get(self.frame_type)
                if width is not None and self.peripheral is not None:
                    cap = max(1, (self.peripheral.mtu - 13) // (3 * width))
                    targets.append(self._acq_time(oldest + cap - 1))
        later = [t for t in targets if t > elapsed + _EPS]
        return min(later) if later else elapsed + 1.0

    async def _stepped_step(self, elapsed: float) -> None:
        """The night moves on once nothing is ready to send."""
        if self._ending:
            if self._replies_pending:
                await asyncio.sleep(0.001)
            else:
                await self._end(elapsed)
            return
        sending = self._sending()
        if sending and self._ready(elapsed):
            if await self._pump(elapsed):
                await self._let_deliver()
            else:
                await asyncio.sleep(0)
            return
        unattended = not self._on or self._out_until is not None
        if unattended or (sending and not self.finished.is_set()):
            self._step_to(self._next_step(elapsed))
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(0.001)  # waiting for the host (or the night is over)


def _truncate(frame: bytes) -> bytes:
    """``frame`` cut short so that it no longer decodes (about half of it)."""
    cut = max(1, len(frame) // 2)
    while cut > 1 and not decode_acc_frames([frame[:cut]]).errors:
        cut -= 1
    return frame[:cut]
