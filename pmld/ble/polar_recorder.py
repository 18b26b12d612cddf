"""Recording a night from a Polar band (Verity Sense, H10) over Polar Measurement Data.

:class:`PolarRecorder` is the overnight :class:`~pmld.ble.recorder.Recorder` (same
supervisor, reconnect backoff, crash-safe journal, live detector, pmld-raw night and
nightly summary) speaking PMD (:mod:`pmld.ble.pmd`) instead of the pmld band protocol.

Per connection: read the device information (model, serial, firmware) and the control
point's features (the device must offer ACC), subscribe to the control point
(indications) and the data characteristic, GET the ACC settings, START with a rate and
range (defaults per model below), and take the frames. On a stop it sends STOP.

Defaults (the rate is the one the device offers that is nearest when the model's is not
offered; ``--fs``/``--range`` choose others):

=================  ======  =======  ==========================================
model              rate    range    why
=================  ======  =======  ==========================================
Polar Verity Sense 52 Hz   8 g      its only ACC rate outside SDK mode
Polar H10          50 Hz   8 g      leg movements last >= 0.5 s: 50 Hz is ample,
                                    and half the radio traffic of 100 Hz
other              ~52 Hz  largest
=================  ======  =======  ==========================================

Samples in the night
--------------------
A PMD frame carries the device time of its last sample; the samples before it are one
sample period apart. Polar keeps no replay buffer: whatever the device measured while
the link was down, or while it was not streaming, is lost. pmld places every frame on
the night's sample grid by its device time, ``index = anchor + round((t - t_anchor) /
period)``, from the last sample kept, so that a lost notification, a dropped link or a
device-initiated stop becomes a gap of exactly the samples missed. The period is the
device's own, estimated from the frames that follow each other without a gap (a band
sampling 0.1 % off its nominal rate would otherwise miscount a one-hour drop by 187
samples at 52 Hz). When the device clock cannot be trusted (an H10 restarts it from
zero after a power-off; any jump that disagrees with the host clock by more than
max(30 s, 1 %)), the frame is placed by the host clock instead, the gap is estimated
and a notice says so.

The device time of one frame a minute goes to the journal as a time-sync record, so a
recording continued after a crash places its first frame by the device clock as well.

Values are kept as the device sent them (milli-g, or the FACTOR-scaled units of the
compressed frames) in int16 counts with ``counts_per_g`` = 1000 / (milli-g per unit);
decoded values equal the device's to its quantisation step.

Bad input: a frame that is truncated, of an unknown frame type, with a delta bit width
outside 1..16 or of another measurement is dropped, counted (``bad_frames`` by kind),
said once in the status stream, and its samples become part of the gap the next frame
reveals. A START refused with an error status is counted and said; a refused rate or
range ends the recording at once (a wrong option), anything else is retried after a
reconnect, up to :data:`MAX_START_REFUSALS` times in a row; INVALID_MTU ends it too (the
host's Bluetooth stack did not negotiate the larger MTU that PMD needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import numpy as np

from ..errors import UsageError
from . import pmd
from .pmd import (
    CONTROL_POINT_UUID,
    DATA_UUID,
    ControlResponse,
    CpStatus,
    Features,
    MeasurementStopped,
    MeasurementType,
    Op,
    PmdError,
    SettingType,
)
from .recorder import DeviceError, Recorder, _short

__all__ = ["MAX_START_REFUSALS", "NotAPolarBandError", "PolarRecorder", "polar_model"]

DEVICE_INFORMATION = {
    "model": "00002a24-0000-1000-8000-00805f9b34fb",
    "serial": "00002a25-0000-1000-8000-00805f9b34fb",
    "firmware": "00002a26-0000-1000-8000-00805f9b34fb",
    "manufacturer": "00002a29-0000-1000-8000-00805f9b34fb",
}
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"

#: START refusals in a row (with no samples between) before the recording gives up.
MAX_START_REFUSALS = 10
#: Device time that disagrees with the host clock by more than this is not trusted.
CLOCK_TOLERANCE_S = 30.0
CLOCK_TOLERANCE_FRACTION = 0.01
#: Night seconds to wait before STARTing again after the band stopped on its own.
RESTART_AFTER_S = 1.0
#: A frame's device time goes to the journal at most this often (night seconds).
TIME_SYNC_EVERY_S = 60.0

_MODEL_DEFAULTS = {"verity": 52, "h10": 50}
_REFUSED_SETTINGS = (
    CpStatus.INVALID_SAMPLE_RATE,
    CpStatus.INVALID_RANGE,
    CpStatus.INVALID_RESOLUTION,
    CpStatus.INVALID_NUMBER_OF_CHANNELS,
    CpStatus.INVALID_PARAMETER,
)


class NotAPolarBandError(DeviceError):
    """The device does not offer Polar Measurement Data with acceleration."""


def polar_model(*names: str | None) -> str | None:
    """``"verity"``, ``"h10"`` or None from a device name or model number string."""
    for name in names:
        text = (name or "").lower()
        if "sense" in text or "verity" in text:
            return "verity"
        if "h10" in text:
            return "h10"
    return None


class PolarRecorder(Recorder):
    """Record a night from a Polar band (see the module docstring).

    Takes the same arguments as :class:`~pmld.ble.recorder.Recorder`;
    ``options.device`` is the band's name or address (None: the first Polar band
    advertising), ``options.rate_hz`` / ``range_g`` None for the model's defaults.
    """

    kind = "polar"

    def __init__(self, options, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.stats.device_kind = "polar"
        self.model: str | None = None
        self.device_info: dict[str, str] = {}
        self.features: Features | None = None
        self.offered: dict[int, list] = {}
        self.mtu: int | None = None
        self._rate_chosen = options.rate_hz is not None
        self._factor = 1.0
        self._streaming = False  # START answered on this link
        self._device_stopped = False
        self._early_events: list[tuple[str, dict[str, Any]]] = []
        # placement on the night's grid: the last sample kept
        self._anchor_index: int | None = None
        self._anchor_dev_ns = 0
        self._anchor_host_ns = 0
        self._stream_last_ts: int | None = None  # previous frame of this stream
        self._sum_dt_ns = 0
        self._sum_n = 0
        self._last_sync_dev_ns: int | None = None
        self._refusals_in_row = 0
        self._unit_mg: float | None = None  # of the journal's counts

    def _resolve_defaults(self) -> None:
        """Chosen per model once the device's settings are known (:meth:`_choose`)."""

    # -- scanning ---------------------------------------------------------------------
    async def _find(self, first: bool):
        from .recorder import NoBandFoundError, find_band

        self.link_state = "scanning"
        target = self.options.device
        if not first and self.device_address:
            target = self.device_address
        try:
            return await find_band(
                target, self.options.scan_timeout_s, self.scanner_kwargs, kinds=("polar",)
            )
        except NoBandFoundError:
            if first and self._anchor_index is None and self._continuation is None:
                raise
            raise TimeoutError("band not in range") from None

    # -- journal ------------------------------------------------------------------------
    def _continuation_state(self, contents) -> dict[str, Any]:
        header = contents.header
        device = header.get("device", {})
        if device.get("protocol") != "polar-pmd":
            raise UsageError(
                f"{self.journal_file}: this night was recorded from a "
                f"{device.get('protocol', 'different')} device, not a Polar band: record "
                "to another file"
            )
        if self.options.rate_hz is None:
            self.options.rate_hz = int(round(float(header["fs_hz"])))
            self._rate_chosen = True
            self._period_ns = 1e9 / self.options.rate_hz
        if self.options.range_g is None and device.get("range_g"):
            self.options.range_g = int(device["range_g"])
        state = super()._continuation_state(contents)
        self._unit_mg = 1000.0 / float(device["counts_per_g"])
        if not contents.blocks:
            return state
        last_block = max(contents.blocks, key=lambda b: b[0] + len(b[2]))
        self._anchor_index = int(last_block[0] + len(last_block[2]) - 1)
        self._anchor_host_ns = int(last_block[1])
        self._anchor_dev_ns = -1  # unknown unless a time-sync says: placed by the host
        if contents.time_syncs:
            # the journal's last sample on the device clock, from its last time-sync
            syncs = np.asarray(contents.time_syncs, np.int64).reshape(-1, 3)
            nominal = 1e9 / self.options.rate_hz
            if len(syncs) >= 2:  # the device's period, from the time-syncs
                di = int(syncs[-1, 0] - syncs[0, 0])
                dt = int(syncs[-1, 1] - syncs[0, 1]) * 1000
                if di > 0 and abs(dt / di - nominal) < 0.01 * nominal:
                    self._sum_dt_ns, self._sum_n = dt, di
            index, device_us = int(syncs[-1, 0]), int(syncs[-1, 1])
            self._anchor_dev_ns = device_us * 1000 + int(
                round((self._anchor_index - index) * self._period_dev_ns())
            )
            self._last_sync_dev_ns = device_us * 1000
        return state

    def _event(self, name: str, **fields: Any) -> None:
        if self._journal is None:
            self._early_events.append((name, fields))
            return
        super()._event(name, **fields)

    def _open_polar_journal(self, unit_mg: float) -> None:
        opts = self.options
        device = {
            "model": self.device_info.get("model") or self.device_name or "Polar",
            "manufacturer": self.device_info.get("manufacturer", "Polar Electro Oy"),
            "firmware": self.device_info.get("firmware", ""),
            "serial": self.device_info.get("serial", ""),
            "protocol": "polar-pmd",
            "range_g": opts.range_g,
            "counts_per_g": 1000.0 / unit_mg,
            "pmd_factor": self._factor,
        }
        self._open_journal_for(device, "polar-pmd")
        assert self._journal is not None
        self._unit_mg = 1000.0 / float(self._journal.header["device"]["counts_per_g"])
        early, self._early_events = self._early_events, []
        for name, fields in early:
            super()._event(name, **fields)

    # -- connection ---------------------------------------------------------------------
    async def _setup(self, client) -> None:
        uuids = {s.uuid.lower() for s in client.services}
        if pmd.SERVICE_UUID not in uuids:
            raise NotAPolarBandError(
                f"{self._device_text()} is not a Polar band with Polar Measurement Data: it "
                f"offers no PMD service ({pmd.SERVICE_UUID}); `pmld scan` lists the bands"
            )
        if not self.device_info:
            await self._read_device_information(client)
        raw = await client.read_gatt_char(CONTROL_POINT_UUID)
        try:
            features = pmd.decode_control(raw)
        except PmdError as error:
            raise NotAPolarBandError(f"{self._device_text()}: PMD features: {error}") from None
        if not isinstance(features, Features):
            raise NotAPolarBandError(
                f"{self._device_text()}: its PMD control point reads {bytes(raw).hex()}, "
                "not a feature list"
            )
        self.features = features
        if not features.acc:
            names = ", ".join(_type_name(t) for t in sorted(features.types)) or "none"
            raise NotAPolarBandError(
                f"{self._device_text()} streams no acceleration over PMD (it offers: "
                f"{names}); pmld needs a Polar Verity Sense, H10 or another band with ACC"
            )
        self.mtu = _negotiated_mtu(client)
        self._streaming = False
        self._device_stopped = False
        await client.start_notify(CONTROL_POINT_UUID, self._on_control)
        await client.start_notify(DATA_UUID, self._on_data)
        self._client = client
        self._last_arrival = time.monotonic()
        await self._drain_inbox()
        answer = await self._pmd(client, pmd.encode_get_settings(MeasurementType.ACC))
        if not answer.ok:
            raise NotAPolarBandError(
                f"{self._device_text()}: GET of the ACC settings: {answer.status_text()}"
            )
        self.offered = answer.settings
        self._choose()
        await self._start_acc(client)

    async def _read_device_information(self, client) -> None:
        for key, uuid in DEVICE_INFORMATION.items():
            with contextlib.suppress(Exception):
                value = await client.read_gatt_char(uuid)
                self.device_info[key] = bytes(value).decode("utf-8", "replace").strip("\0 ")
        with contextlib.suppress(Exception):
            self.stats.battery_pct = int((await client.read_gatt_char(BATTERY_LEVEL))[0])
        self.model = polar_model(self.device_info.get("model"), self.device_name)

    def _choose(self) -> None:
        """Rate and range: the user's, else the model's defaults among those offered."""
        opts = self.options
        rates = sorted(int(r) for r in self.offered.get(SettingType.SAMPLE_RATE, []))
        ranges = sorted(int(r) for r in self.offered.get(SettingType.RANGE, []))
        if not rates:
            raise NotAPolarBandError(f"{self._device_text()} offers no ACC sample rate")
        if self._rate_chosen:
            if opts.rate_hz not in rates:
                raise DeviceError(
                    f"{self._device_text()} streams acceleration at "
                    f"{'/'.join(map(str, rates))} Hz, not {opts.rate_hz} Hz: choose one of "
                    "these with --fs"
                )
        else:
            want = _MODEL_DEFAULTS.get(self.model or "", 52)
            opts.rate_hz = min(rates, key=lambda r: (abs(r - want), r))
            self._rate_chosen = True
        self._period_ns = 1e9 / opts.rate_hz
        if ranges:
            if opts.range_g is None:
                opts.range_g = 8 if 8 in ranges else ranges[-1]
            elif opts.range_g not in ranges:
                raise DeviceError(
                    f"{self._device_text()} offers ranges {'/'.join(map(str, ranges))} g, "
                    f"not {opts.range_g} g: choose one of these with --range"
                )

    async def _start_acc(self, client) -> None:
        opts = self.options
        resolution = int((self.offered.get(SettingType.RESOLUTION) or [16])[0])
        channels = int((self.offered.get(SettingType.CHANNELS) or [3])[0])
        ranges = self.offered.get(SettingType.RANGE)
        command = pmd.encode_start(
            MeasurementType.ACC,
            rate_hz=opts.rate_hz,
            resolution=resolution,
            range_g=opts.range_g if ranges else None,
            channels=channels,
        )
        self._starting = True
        try:
            answer = await self._pmd(client, command)
            if answer.status == CpStatus.ALREADY_IN_STATE:  # another host left it running
                await self._pmd(client, pmd.encode_stop(MeasurementType.ACC))
                self._starting = True
                answer = await self._pmd(client, command)
        except BaseException:
            self._release_start()
            raise
        if not answer.ok:
            self._release_start()
            self.stats.start_refusals += 1
            self._refusals_in_row += 1
            text = f"{self._device_text()} refused START: {answer.status_text()}"
            self._event("start_refused", status=answer.status, message=text)
            if answer.status in _REFUSED_SETTINGS:
                raise DeviceError(text + " (check --fs and --range)")
            if answer.status == CpStatus.INVALID_MTU:
                raise DeviceError(
                    f"{text}: this computer's Bluetooth stack kept the link at MTU "
                    f"{self.mtu or 23}; PMD streams need a larger MTU"
                )
            if self._refusals_in_row >= MAX_START_REFUSALS:
                raise DeviceError(f"{text}, {self._refusals_in_row} times in a row: giving up")
            self._notice(f"{text}; counting it and trying again")
            from bleak.exc import BleakError

            raise BleakError(text)
        self.stats.sessions += 1
        self._event(
            "session",
            rate_hz=opts.rate_hz,
            range_g=opts.range_g,
            factor=self._factor,
            mtu=self.mtu,
            address=self.device_address,
            model=self.device_info.get("model") or self.device_name,
        )

    async def _pmd(self, client, payload: bytes) -> ControlResponse:
        """Write a control point command and wait for its answer (matched by op)."""
        return await self._write_and_wait(client, CONTROL_POINT_UUID, payload, payload[0])

    async def _band_events(self, lost: asyncio.Event) -> str | None:
        """A Polar band that stopped streaming on its own is STARTed again."""
        if not self._device_stopped:
            return None
        self._device_stopped = False
        self.stats.device_stops += 1
        self._notice("the band stopped streaming on its own; starting it again")
        # a moment first: a band that stopped for a reason may refuse at once
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._stop_requested.wait(), max(0.05, self.clock.real_s(RESTART_AFTER_S))
            )
        client = self._client
        if not (self._stop_requested.is_set() or lost.is_set() or client is None):
            await self._drain_inbox()
            await self._start_acc(client)
        return "again"

    async def _stop_band(self, lost: asyncio.Event) -> None:
        client = self._client
        if client is None or not self._streaming:
            return
        self.link_state = "stopping"
        try:
            answer = await self._pmd(client, pmd.encode_stop(MeasurementType.ACC))
            if not answer.ok:
                self._event("stop_refused", message=answer.status_text())
        except Exception as error:
            self._event("stop_failed", error=_short(error))
        self._streaming = False
        await self._drain_inbox()

    # -- consumer -------------------------------------------------------------------------
    def _process_reply(self, host_ns: int, value: bytes) -> None:
        try:
            message = pmd.decode_control(value)
        except PmdError as error:
            self.stats.bad_replies += 1
            self._bad_event("reply", error)
            return
        if isinstance(message, MeasurementStopped):
            if MeasurementType.ACC in message.types:
                self._streaming = False
                self._device_stopped = True
                self._event("device_stop")
            return
        if not isinstance(message, ControlResponse):
            return
        if message.op == Op.START:
            self._starting = False
            if message.ok:  # a new stream: what follows is in this answer's units
                self._factor = message.factor
                self._streaming = True
                self._stream_last_ts = None
                held, self._held = self._held, []
                for run in held:
                    self._process_data(run)
            else:
                self._held = []
        future = self._pending.get(message.op)
        if future is not None and not future.done():
            future.set_result(message)

    def _process_data(self, run: list) -> None:
        if self._starting:
            self._held.append(run)
            return
        stamps = [item[0] for item in run]
        values = [item[1] for item in run]
        self.stats.notifications += len(values)
        batch = pmd.decode_acc_frames(values, self._factor)
        for _, error in batch.errors:
            kind = error.kind
            self.stats.bad_frames[kind] = self.stats.bad_frames.get(kind, 0) + 1
            self._bad_event("frame", error)
        self.stats.data_frames += len(batch)
        offsets = batch.offsets
        for k in range(len(batch)):
            rows = batch.values[offsets[k] : offsets[k + 1]]
            self._accept_frame(
                int(batch.timestamp_ns[k]),
                rows,
                float(batch.unit_mg[k]),
                int(stamps[batch.position[k]]),
            )

    def _period_dev_ns(self) -> float:
        """The device's sample period in its own time, from gap-free frame pairs."""
        nominal = self._period_ns
        if self._sum_n >= 10 * self.options.rate_hz:
            return self._sum_dt_ns / self._sum_n
        return nominal

    def _accept_frame(self, ts: int, rows: np.ndarray, unit_mg: float, host_ns: int) -> None:
        n = len(rows)
        if n == 0:
            return
        if self._journal is None:
            self._open_polar_journal(unit_mg)
        period = self._period_dev_ns()
        anchor = self._anchor_index
        if anchor is None:  # the night's first sample
            last = n - 1
        else:
            dev_dt = ts - self._anchor_dev_ns
            steps = int(round(dev_dt / period))
            trusted = self._anchor_dev_ns >= 0 and steps >= 0
            if trusted and steps != n:  # a gap or an overlap: does the host agree?
                host_dt = host_ns - self._anchor_host_ns
                tolerance = max(CLOCK_TOLERANCE_S * 1e9, CLOCK_TOLERANCE_FRACTION * abs(host_dt))
                trusted = abs(dev_dt - host_dt) <= tolerance
            if trusted:
                last = anchor + steps
                if self._stream_last_ts is not None and steps == n:
                    self._sum_dt_ns += dev_dt
                    self._sum_n += n
            else:
                self.stats.clock_resets += 1
                missing = int(round((host_ns - self._time_of_index(anchor)) / self._period_ns))
                last = anchor + max(n, missing)
                self._notice(
                    "the band's clock jumped (it restarted?): the gap before "
                    f"{self._device_text()}'s next samples is estimated from this computer's "
                    "clock"
                )
                self._event("clock_jump", device_ns=ts, night_index=last)
        self._stream_last_ts = ts
        first = last - n + 1
        if anchor is not None:
            if last <= anchor:  # everything held already
                self.stats.duplicate_frames += 1
                return
            if first <= anchor:
                rows = rows[anchor + 1 - first :]
                first = anchor + 1
            elif first > anchor + 1:
                self._gap(anchor + 1, first - anchor - 1, "lost", night=True)
        counts = self._to_counts(rows, unit_mg)
        assert self._journal is not None
        self._journal.write_samples(first, counts, host_ns)
        self._night_next = max(self._night_next, last + 1)
        self._recent.append((last, host_ns))
        self.stats.samples += len(counts)
        self._refusals_in_row = 0
        self._anchor_index, self._anchor_dev_ns, self._anchor_host_ns = last, ts, host_ns
        every = TIME_SYNC_EVERY_S * 1e9
        if self._last_sync_dev_ns is None or abs(ts - self._last_sync_dev_ns) >= every:
            self._journal.write_time_sync(last, ts // 1000, host_ns)
            self._last_sync_dev_ns = ts
        if self._detector is not None:
            self._detector.push(counts.astype(np.float32) / np.float32(self._counts_per_g))

    def _to_counts(self, rows: np.ndarray, unit_mg: float) -> np.ndarray:
        """Frame values -> the journal's int16 counts (rescaled if the unit changed)."""
        unit = self._unit_mg or unit_mg
        if unit_mg != unit:
            rows = np.rint(rows * (unit_mg / unit))
        if rows.size and (rows.max() > 32767 or rows.min() < -32768):
            self.stats.bad_frames["clipped"] = self.stats.bad_frames.get("clipped", 0) + 1
            rows = np.clip(rows, -32768, 32767)
        return rows.astype(np.int16)


def _negotiated_mtu(client) -> int | None:
    """The link's ATT MTU as far as bleak tells it (None when it does not).

    BlueZ can report ``mtu_size`` 23 after a larger exchange, while a characteristic's
    ``max_write_without_response_size`` (MTU - 3) follows the exchange, so the larger
    of the two is taken. Only for reporting: pmld leaves the MTU exchange to the
    operating system's stack, and only the band's INVALID_MTU answer stops a recording.
    """
    values = []
    with contextlib.suppress(Exception):  # a backend that cannot tell yet
        values.append(int(client.mtu_size or 0))
    with contextlib.suppress(Exception):
        char = client.services.get_characteristic(CONTROL_POINT_UUID)
        values.append(int(char.max_write_without_response_size or 0) + 3)
    best = max(values, default=0)
    return best if best > 3 else None


def _type_name(t: int) -> str:
    try:
        return MeasurementType(t).name
    except ValueError:
        return f"type {t}"
