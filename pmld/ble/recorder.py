"""The overnight recorder: a pmld band's samples to a pmld-raw night, whatever the link does.

:class:`Recorder` is an asyncio supervisor around bleak's public API
(:class:`bleak.BleakScanner`, :class:`bleak.BleakClient`). It finds the band, connects
with a fresh client every time, checks the band's INFO, subscribes to DATA and CONTROL,
starts a session (START) or continues one (RESUME from the next sample it needs), and
writes every sample to the crash-safe journal (:mod:`pmld.io.journal`) as it arrives.
When the link drops it reconnects with exponential backoff (1 s to 30 s, with jitter)
and RESUMEs: the band's ring buffer gives back what was missed; what it overwrote is an
exact gap. On Ctrl-C or SIGTERM it STOPs the band, takes the last samples, turns the
journal into the pmld-raw file and writes the nightly summary next to it.

The same code records from hardware and from a virtual band
(:mod:`pmld.ble.band` on :mod:`pmld.ble.virtual`): the only seams are the keyword
arguments given to ``BleakScanner``/``BleakClient`` (empty for real hardware) and the
host clock (UTC from the system; on a virtual night, the night's own time).

Data path
---------
The notification callbacks only stamp the host time and append to a queue (constant
time, as bleak's backends need). One consumer task takes everything queued at once,
decodes DATA notifications in a batch (:func:`~pmld.ble.protocol.decode_frames`, never
raising), accounts sequence numbers (lost and duplicated notifications), keeps the
samples it needs in index order and writes them in one journal record per batch, feeds
the live detector (:class:`~pmld.stream.StreamingDetector`) and applies CONTROL replies
in their place in the stream, so that a RESUME reply's gap is decided against exactly
the samples received before it. A hole inside a connection (a notification lost or
damaged) is refilled with a RESUME on the same link; a hole the band cannot refill
(overwritten in its ring buffer) is recorded as a gap of the exact size.

Files
-----
``NIGHT.h5.journal`` while recording (and ``NIGHT.h5.lock``: one recorder per night), then
``NIGHT.h5`` (pmld-raw) and ``NIGHT.plm.h5`` (the nightly summary). A journal left by a
crash is continued by the next ``pmld record`` on the same output, or turned into the
night by :func:`pmld.io.journal.repair`. A finished ``NIGHT.h5`` is never overwritten.

Memory does not grow with the night: the journal is written as samples come, the live
detector keeps about two minutes of block statistics, the queue holds what arrived since
the consumer's last turn, and the counters are scalars. Only the final step (journal ->
pmld-raw -> summary) loads the whole night, once.

Sample indices in the journal are the night's: ``night index = band index + offset``
where the offset is 0 for the first session and, when the band restarted its counter
(new session after a band reboot or after the recorder lost the session), the night
index of the new session's sample 0 estimated from the host clock.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from ..errors import InputError, PmldError, UsageError
from ..io import journal as journal_io
from .pmd import SERVICE_UUID as PMD_SERVICE_UUID
from .protocol import (
    BATTERY_UNKNOWN,
    CONTROL_UUID,
    DATA_UUID,
    INFO_UUID,
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    SERVICE_UUID,
    Command,
    ErrorReply,
    GetInfoCommand,
    GetInfoReply,
    Info,
    Opcode,
    ProtocolError,
    Reply,
    ResumeCommand,
    ResumeReply,
    SetTimeCommand,
    StartCommand,
    StartReply,
    State,
    Status,
    StatusFrame,
    StopCommand,
    StopReason,
    StopReply,
    TimeSyncFrame,
    decode_frames,
    decode_info,
    decode_reply,
    encode_command,
)

__all__ = [
    "BluetoothUnavailableError",
    "DeviceError",
    "FoundDevice",
    "HostClock",
    "NoBandFoundError",
    "NotAPmldBandError",
    "RecordOptions",
    "Recorder",
    "RecorderStats",
    "RecordingResult",
    "SystemClock",
    "DEVICE_KINDS",
    "advertised_kind",
    "find_any_band",
    "find_band",
    "scan_bands",
    "summary_path",
]

_DATA, _CONTROL = 0, 1
_ADDRESS = re.compile(
    r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$"
)


# --------------------------------------------------------------------------------------
# Errors: expected failures, one line each (exit code 2)
# --------------------------------------------------------------------------------------
class DeviceError(PmldError):
    """The band cannot be used: not found, not a pmld band, wrong protocol version."""


class NoBandFoundError(DeviceError):
    """Scanning found no pmld band (or not the one asked for)."""


class NotAPmldBandError(DeviceError):
    """The device connected to is not a pmld band, or speaks an incompatible version."""


class BluetoothUnavailableError(DeviceError):
    """The host's Bluetooth is off, missing or not reachable."""


def _bluetooth_problem(error: BaseException) -> BluetoothUnavailableError | None:
    """A clear error for 'Bluetooth is off / absent / unreachable', else None."""
    from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError, BleakError

    if isinstance(error, BleakBluetoothNotAvailableError):
        reason = getattr(error.reason, "name", str(error.reason)).lower().replace("_", " ")
        return BluetoothUnavailableError(
            f"Bluetooth is not available ({reason}): turn Bluetooth on (or plug in an "
            "adapter) and try again"
        )
    if isinstance(error, FileNotFoundError | ConnectionRefusedError) or (
        isinstance(error, BleakDBusError) and "org.bluez" in str(error)
    ):
        return BluetoothUnavailableError(
            "cannot reach the system's Bluetooth service (BlueZ over D-Bus): is there a "
            f"Bluetooth adapter and is the bluetooth service running? ({error})"
        )
    if isinstance(error, BleakError) and re.search(
        r"adapter|powered|turned off|not available", str(error), re.IGNORECASE
    ):
        return BluetoothUnavailableError(f"Bluetooth is not usable: {error}")
    return None


# --------------------------------------------------------------------------------------
# Clocks
# --------------------------------------------------------------------------------------
class HostClock(Protocol):
    """The host's UTC clock as the recorder reads it.

    ``now_ns`` stamps arrivals (UTC, ns since the Unix epoch); ``real_s`` converts a
    span of night time (backoff, timeouts) to real seconds to wait; ``speed`` is night
    seconds per real second (1 on a real night).
    """

    speed: float

    def now_ns(self) -> int: ...

    def real_s(self, night_s: float) -> float: ...


class SystemClock:
    """UTC read once from the system, then advanced by the monotonic clock.

    A night is stamped on one smooth clock: a step of the system time (NTP, a user)
    in the middle of the night would otherwise look like a jump of the band's clock.
    """

    speed = 1.0

    def __init__(self) -> None:
        self._wall0 = time.time_ns()
        self._mono0 = time.monotonic_ns()

    def now_ns(self) -> int:
        return self._wall0 + (time.monotonic_ns() - self._mono0)

    def real_s(self, night_s: float) -> float:
        return night_s


# --------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FoundDevice:
    """A device seen while scanning."""

    name: str | None
    address: str
    rssi: int | None
    kind: str | None  # "pmld", "polar", or None for any other device

    @property
    def pmld(self) -> bool:
        return self.kind == "pmld"


#: Kinds of band ``pmld record`` records from.
DEVICE_KINDS = ("pmld", "polar")
HEART_RATE_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"


def advertised_kind(name: str | None, service_uuids) -> str | None:
    """What an advertisement says the device is: ``pmld``, ``polar`` or None.

    A pmld band advertises the pmld service. A Polar band advertises the PMD service,
    or (as the H10 and Verity Sense do) the Heart Rate service under a name beginning
    with "Polar "; whether it streams acceleration is only known once connected.
    """
    uuids = {str(u).lower() for u in service_uuids}
    if SERVICE_UUID in uuids:
        return "pmld"
    if PMD_SERVICE_UUID in uuids:
        return "polar"
    if name and name.startswith("Polar ") and HEART_RATE_SERVICE in uuids:
        return "polar"
    return None


async def scan_bands(
    timeout_s: float = 5.0,
    scanner_kwargs: dict[str, Any] | None = None,
    *,
    all_devices: bool = False,
) -> list[FoundDevice]:
    """Scan for ``timeout_s`` and list the bands pmld records from (pmld bands and Polar
    bands; every device with ``all_devices``)."""
    from bleak import BleakScanner

    try:
        found = await BleakScanner.discover(
            timeout=timeout_s, return_adv=True, **(scanner_kwargs or {})
        )
    except Exception as error:
        problem = _bluetooth_problem(error)
        if problem is not None:
            raise problem from None
        raise
    devices = []
    for device, adv in found.values():
        name = adv.local_name or device.name
        kind = advertised_kind(name, adv.service_uuids)
        if kind is not None or all_devices:
            devices.append(FoundDevice(name, device.address, adv.rssi, kind))
    return sorted(devices, key=lambda d: (d.kind is None, -(d.rssi or -999), d.address))


async def find_band(
    device: str | None,
    timeout_s: float = 10.0,
    scanner_kwargs: dict[str, Any] | None = None,
    kinds: tuple[str, ...] = ("pmld",),
):
    """Scan for a band: by address, by name, or the first of ``kinds`` advertising.

    Returns a :class:`bleak.backends.device.BLEDevice`; raises
    :class:`NoBandFoundError` when nothing matched within ``timeout_s`` and
    :class:`BluetoothUnavailableError` when the host cannot scan. The kind of a band
    found is :func:`advertised_kind` of its advertisement (see :func:`find_any_band`).
    """
    device_found, _ = await find_any_band(device, timeout_s, scanner_kwargs, kinds)
    return device_found


async def find_any_band(
    device: str | None,
    timeout_s: float = 10.0,
    scanner_kwargs: dict[str, Any] | None = None,
    kinds: tuple[str, ...] = DEVICE_KINDS,
):
    """:func:`find_band`, returning ``(BLEDevice, kind)`` (kind None: not recognised)."""
    from bleak import BleakScanner

    kwargs = scanner_kwargs or {}
    seen: dict[str, str | None] = {}

    def kind_of(d, adv) -> str | None:
        kind = advertised_kind(adv.local_name or d.name, adv.service_uuids)
        seen[d.address] = kind
        return kind

    def wanted(d, adv) -> bool:
        kind = kind_of(d, adv)
        if device is None:
            return kind in kinds
        if _ADDRESS.match(device):
            return d.address.lower() == device.lower()
        return device in (adv.local_name, d.name)

    try:
        found = await BleakScanner.find_device_by_filter(wanted, timeout=timeout_s, **kwargs)
    except Exception as error:
        problem = _bluetooth_problem(error)
        if problem is not None:
            raise problem from None
        raise
    if found is None:
        what = (
            f"no {' or '.join(k if k == 'pmld' else k.capitalize() for k in kinds)} band found"
            if device is None
            else f"no device {device!r} found"
        )
        raise NoBandFoundError(
            f"{what} within {timeout_s:g} s: is the band charged, switched on and near "
            "this computer? (`pmld scan` lists the bands in range)"
        )
    return found, seen.get(found.address)


# --------------------------------------------------------------------------------------
# Options, counters, result
# --------------------------------------------------------------------------------------
@dataclass
class RecordOptions:
    """How to record.

    Attributes
    ----------
    output : Path
        The pmld-raw night file; its journal is ``output + ".journal"`` while recording.
    device : str or None
        Band name or address; None takes the first band advertising the pmld service.
    rate_hz, range_g : int or None
        Sampling rate and accelerometer range to START the band with; None takes the
        device's default (a pmld band: 100 Hz, 8 g; a Polar band: see
        :mod:`pmld.ble.polar_recorder`).
    side, timezone : str
        Written into the night (ankle side, IANA time zone).
    scan_timeout_s : float
        Real seconds the first scan may take before "no pmld band found".
    connect_timeout_s, command_timeout_s : float
        Real seconds for a connection and for a command's reply.
    backoff_min_s, backoff_max_s : float
        Reconnect backoff in night seconds (doubling from min to max, +-25 % jitter).
    stall_s : float
        Night seconds without any notification after which a link is dropped and
        made again (a band streams TIME_SYNC every second and STATUS every few).
    duration_s : float or None
        Stop after this much night time.
    summary : bool
        Write the nightly summary (``NAME.plm.h5``) after the night.
    status_every_s : float
        Real seconds between status lines when stderr is not a terminal.
    drain_timeout_s : float
        Real seconds to wait for the band's last samples after STOP.
    """

    output: Path
    device: str | None = None
    rate_hz: int | None = None
    range_g: int | None = None
    side: str = "unknown"
    timezone: str = "UTC"
    scan_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 5.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0
    stall_s: float = 20.0
    duration_s: float | None = None
    summary: bool = True
    status_every_s: float = 60.0
    drain_timeout_s: float = 15.0
    seed: int | None = None  # of the backoff jitter


@dataclass
class RecorderStats:
    """Everything the recorder counted."""

    connections: int = 0
    link_drops: int = 0  # links lost that we did not drop ourselves
    connect_failures: int = 0
    notifications: int = 0  # on DATA, all types, as delivered
    data_frames: int = 0
    samples: int = 0  # new samples written (duplicates excluded)
    duplicate_frames: int = 0  # DATA frames whose samples were all held already
    duplicate_notifications: int = 0  # repeated seq
    lost_notifications: int = 0  # seq jumps (the samples are recovered by index)
    discarded_frames: int = 0  # frames past a hole while its RESUME was pending
    bad_frames: dict[str, int] = field(default_factory=dict)  # by error kind
    first_bad: dict[str, str] = field(default_factory=dict)  # "frame kind" -> first message
    bad_replies: int = 0
    hole_resumes: int = 0  # RESUMEs on a live link to refill a hole
    resumes: int = 0  # RESUMEs after a reconnect
    sessions: int = 0  # STARTs
    gaps: int = 0
    gap_samples: int = 0
    time_syncs: int = 0
    status_frames: int = 0
    battery_pct: int | None = None
    band_overflow: bool = False
    tail_lost: int = 0  # samples the band took after STOP that never arrived
    max_queue: int = 0  # most notifications waiting for the consumer at once
    lm_count: int = 0
    plm_count: int = 0
    plm_index: float = float("nan")
    # Polar (PMD) bands
    device_kind: str = "pmld"
    device_stops: int = 0  # the device stopped streaming on its own
    start_refusals: int = 0  # START answered with an error status
    clock_resets: int = 0  # the device's clock jumped: placed by the host clock

    @property
    def packet_loss(self) -> float:
        """Notifications lost / sent, from the sequence numbers."""
        total = self.notifications - self.duplicate_notifications + self.lost_notifications
        return self.lost_notifications / total if total else 0.0

    @property
    def bad_frame_count(self) -> int:
        return sum(self.bad_frames.values())

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["packet_loss"] = self.packet_loss
        return out


@dataclass
class RecordingResult:
    """What :meth:`Recorder.run` produced."""

    output: Path | None
    summary_path: Path | None
    stop_reason: str
    stats: RecorderStats
    report: dict[str, Any] = field(default_factory=dict)  # from journal_to_night
    summary: dict[str, Any] | None = None
    messages: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The final report, a few lines for a person."""
        s = self.stats
        out = []
        if self.output is not None and self.report:
            r = self.report
            fs = r.get("clock_fs_hz", float("nan"))
            gap_s = r.get("missing_samples", 0) / fs if fs == fs and fs else 0.0
            out.append(
                f"recorded {self.output}: {r['samples_kept']:,} samples, fitted rate "
                f"{fs:.4f} Hz (clock {r.get('clock_skew_ppm', 0.0) + 0.0:+.1f} ppm), "
                f"{r.get('gaps', 0)} gap(s), {gap_s:.1f} s missing"
            )
        elif s.samples:
            out.append(f"{s.samples:,} samples recorded; the night is not finished")
        else:
            out.append("no night was written: no samples were received")
        bad = ", ".join(f"{n} {k}" for k, n in sorted(s.bad_frames.items())) or "none"
        if s.device_kind == "polar":
            out.append(
                f"link: {s.connections} connection(s), {s.link_drops} drop(s), "
                f"{s.gaps} gap(s) of samples lost (a Polar band keeps no replay buffer), "
                f"{s.duplicate_frames} duplicate frame(s) dropped, bad frames: {bad}"
            )
            extra = [
                f"{n} {what}"
                for n, what in (
                    (s.device_stops, "stop(s) by the band, started again"),
                    (s.start_refusals, "START(s) refused"),
                    (s.clock_resets, "clock jump(s) bridged by the host clock"),
                )
                if n
            ]
            if extra:
                out.append("band: " + ", ".join(extra))
        else:
            out.append(
                f"link: {s.connections} connection(s), {s.link_drops} drop(s), "
                f"{100 * s.packet_loss:.3f}% notifications lost (their samples taken again), "
                f"{s.duplicate_notifications} duplicate(s) dropped, bad frames: {bad}"
            )
        for key, message in s.first_bad.items():
            out.append(f"  first bad {key}: {message}")
        if s.tail_lost:
            out.append(f"the last {s.tail_lost} samples after STOP did not arrive")
        out.extend(self.messages)
        if self.summary_path is not None and self.summary is not None:
            m = self.summary
            out.append(
                f"summary: PLM index {m.get('plm_index', float('nan')):.1f}/h "
                f"({m.get('plm_count')} PLMs), LM index {m.get('lm_index', float('nan')):.1f}/h "
                f"-> {self.summary_path}"
            )
        out.append(f"stopped: {self.stop_reason}")
        return out


def summary_path(output: Path) -> Path:
    """``night.h5`` -> ``night.plm.h5`` (as ``pmld analyze`` names it)."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".h5") + ".plm.h5")


class _Stopped(Exception):
    """A stop was requested while waiting for something."""


# --------------------------------------------------------------------------------------
# The recorder
# --------------------------------------------------------------------------------------
class Recorder:
    """Record a night from a pmld band (see the module docstring).

    Parameters
    ----------
    options : RecordOptions
    clock : HostClock, optional
        Default :class:`SystemClock`.
    scanner_kwargs, client_kwargs : dict, optional
        Passed to every :class:`bleak.BleakScanner` / :class:`bleak.BleakClient`
        (``radio.scanner_kwargs()`` / ``radio.client_kwargs()`` for a virtual radio;
        empty for hardware).
    status : TextIO, optional
        Where the live status line goes (default ``sys.stderr``); None for silence.
    detector : bool
        Run the live leg-movement detector (its counts appear in the status line).
    """

    def __init__(
        self,
        options: RecordOptions,
        *,
        clock: HostClock | None = None,
        scanner_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        status: TextIO | None = sys.stderr,
        detector: bool = True,
    ) -> None:
        self.options = options
        self._resolve_defaults()
        self.output = Path(options.output)
        self.journal_file = journal_io.journal_path(self.output)
        self.clock: HostClock = clock or SystemClock()
        self.scanner_kwargs = dict(scanner_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.status_stream = status
        self.use_detector = detector
        self.stats = RecorderStats()
        self.link_state = "starting"
        self.info: Info | None = None
        self.device_name: str | None = None
        self.device_address: str | None = None
        self._rng = random.Random(options.seed)
        self._period_ns = 1e9 / options.rate_hz if options.rate_hz else float("nan")
        # journal and night position
        self._journal: journal_io.JournalWriter | None = None
        self._continuation: dict[str, Any] | None = None
        self._night_next = 0  # next night index the journal lacks at its end
        self._recent = collections.deque(maxlen=256)  # (night index, host ns) of records
        # session (band indices)
        self.session_id = 0
        self._offset = 0  # night index of band index 0 in this session
        self._expected = 0  # next band index needed
        self._last_seq: int | None = None
        self._resuming = False
        self._starting = False  # a START is on its way: hold DATA until its reply
        self._held: list[list] = []
        self._band_stop: tuple[StopReason, int] | None = None  # reason, final next_index
        self._band_next = 0
        self._tx_ratio = 1.0
        # queue between the callbacks and the consumer
        self._inbox: collections.deque = collections.deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._changed = asyncio.Event()
        self._last_arrival = time.monotonic()
        # commands
        self._token = 0
        self._pending: dict[int, asyncio.Future] = {}
        self._client: Any = None
        # control
        self._stop_requested = asyncio.Event()
        self._stop_reason = ""
        self._force = False
        self._detach = False
        self._band_ended: str | None = None
        self._tasks: set[asyncio.Task] = set()
        self._started_ns = 0
        self._detector = None
        self._counts_per_g = 1.0
        self._messages: list[str] = []
        self._event_log_budget = 50  # bad-frame messages written to the journal
        self._status_prev = (time.monotonic(), 0, 0)

    def _resolve_defaults(self) -> None:
        """A pmld band's defaults: 100 Hz, 8 g."""
        if self.options.rate_hz is None:
            self.options.rate_hz = 100
        if self.options.range_g is None:
            self.options.range_g = 8

    # -- public -----------------------------------------------------------------------
    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop the recording cleanly (STOP, last samples, file, summary)."""
        if self._stop_requested.is_set():
            self._force = True  # a second request: do not wait for the band's drain
            return
        self._stop_reason = reason
        self._stop_requested.set()

    def detach(self, reason: str = "detached") -> None:
        """Stop recording but leave the band streaming and the journal in place.

        The night is not finished: ``pmld record`` on the same output later continues
        it, RESUMEs the band's session and takes back what its ring buffer still holds
        (as after a crash, but with everything received written).
        """
        self._detach = True
        self.request_stop(reason)

    async def run(self, *, install_signal_handlers: bool = False) -> RecordingResult:
        """Record until stopped (signal, :meth:`request_stop`, duration, band stopped)."""
        lock = self._lock_night()
        try:
            self._prepare_output()
            return await self._run(install_signal_handlers)
        finally:
            with contextlib.suppress(OSError):
                self.lock_file.unlink()
            lock.close()

    @property
    def lock_file(self) -> Path:
        return Path(str(self.output) + ".lock")

    def _lock_night(self):
        """Hold an exclusive lock beside the output: one recorder per night at a time.

        A lock file rather than the journal itself, so that no empty journal exists
        while the band is looked for (``pmld info`` would take it for a broken one).
        The lock dies with the process, also on SIGKILL; a stale lock file is reused.
        """
        check_output_writable(self.output)
        handle = open(self.lock_file, "ab")  # noqa: SIM115 (held until the end)
        try:
            import fcntl
        except ImportError:  # no flock on this platform: no guard
            return handle
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise UsageError(
                f"{self.output} is being recorded by another pmld record right now: stop "
                "that one first, or record to another file"
            ) from None
        return handle

    async def _run(self, install_signal_handlers: bool) -> RecordingResult:
        self._started_ns = self.clock.now_ns()
        loop = asyncio.get_running_loop()
        handled = []
        if install_signal_handlers:
            for sig, name in ((signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")):
                try:
                    loop.add_signal_handler(sig, self.request_stop, f"{name} received")
                    handled.append(sig)
                except (NotImplementedError, RuntimeError):  # not the main thread
                    pass
        consumer = self._spawn(self._consume())
        ticker = self._spawn(self._tick())
        error: BaseException | None = None
        try:
            await self._supervise()
        except BaseException as exc:  # finish the night whatever happened, then re-raise
            error = exc
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
        await self._drain_inbox()
        for task in (consumer, ticker):
            task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._journal is not None:  # a recording took place: its last status
            self._status_line(final=True)
        result = self._finish(error)
        if error is not None:
            raise error
        return result

    # -- output and continuation -------------------------------------------------------
    def _prepare_output(self) -> None:
        output = self.output
        if self.journal_file.exists() and self.journal_file.stat().st_size > 0:
            contents = journal_io.read_journal(self.journal_file)
            self._continuation = self._continuation_state(contents)
            self._messages.append(
                f"continued the interrupted recording in {self.journal_file} "
                f"({contents.n_received:,} samples held)"
                + (
                    f"; {contents.dropped_bytes} torn bytes at its end were dropped"
                    if contents.dropped_bytes
                    else ""
                )
            )
        elif output.exists():
            raise UsageError(
                f"{output} already holds a finished recording: choose another -o, or "
                "delete or move that file first"
            )

    def _continuation_state(self, contents: journal_io.JournalContents) -> dict[str, Any]:
        header = contents.header
        fs = float(header.get("fs_hz", self.options.rate_hz))
        if abs(fs - self.options.rate_hz) > 1e-9:
            raise UsageError(
                f"{self.journal_file}: this night is recorded at {fs:g} Hz; continue it "
                f"at that rate (--fs {fs:g}), or record to another file"
            )
        sessions = [e for e in contents.events if e.get("event") == "session"]
        last = sessions[-1] if sessions else {}
        if contents.blocks:
            firsts = np.array([b[0] + len(b[2]) - 1 for b in contents.blocks], np.int64)
            hosts = np.array([b[1] for b in contents.blocks], np.int64)
            tail = slice(max(0, len(firsts) - 256), None)
            for index, host in zip(firsts[tail], hosts[tail], strict=True):
                self._recent.append((int(index), int(host)))
        # the night goes on from the journal's end, in the band session it last recorded
        self._night_next = contents.next_index
        self.session_id = int(last.get("session_id", 0))
        self._offset = int(last.get("index_offset", 0))
        self._expected = max(0, contents.next_index - self._offset)
        return {"existing": contents}

    def _open_journal(self, info: Info) -> None:
        self._open_journal_for(
            info.device_metadata(self.options.range_g), f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}"
        )

    def _open_journal_for(self, device: dict[str, Any], protocol: str) -> None:
        """Open (or continue) the journal; ``device`` holds ``counts_per_g``."""
        if self._journal is not None:
            return
        opts = self.options
        header = {
            "fs_hz": float(opts.rate_hz),
            "side": opts.side,
            "timezone": opts.timezone,
            "device": device,
            "recorder": {
                "program": "pmld record",
                "protocol": protocol,
                "device_name": self.device_name,
                "device_address": self.device_address,
            },
            "meta": {"recorded_by": "pmld record"},
        }
        existing = None
        if self._continuation is not None:
            existing = self._continuation.pop("existing", None)
        self._journal = journal_io.JournalWriter(self.journal_file, header, existing=existing)
        self._counts_per_g = float(self._journal.header["device"]["counts_per_g"])
        if self.use_detector:
            from ..stream import StreamingDetector

            # Faster than real time, detect every minute of data rather than every 5 s:
            # the same movements (the detector keeps ~2 min of context) at a sixth of
            # the cost, and a status line a minute behind is still live enough.
            every = 5.0 if self.clock.speed <= 10 else 60.0
            self._detector = StreamingDetector(float(opts.rate_hz), detect_every_s=every)
        self._event("recording", resumed=self._journal.resumed, output=str(self.output))

    def _event(self, name: str, **fields: Any) -> None:
        if self._journal is not None:
            utc = self.clock.now_ns() / 1e9
            from datetime import UTC, datetime

            self._journal.write_event(
                event=name, host_utc=datetime.fromtimestamp(utc, tz=UTC).isoformat(), **fields
            )

    # -- supervisor -------------------------------------------------------------------
    async def _supervise(self) -> None:
        failures = 0
        first = True
        while not self._stop_requested.is_set() and self._band_ended is None:
            streamed = False
            try:
                device = await self._interruptible(self._find(first))
                streamed = await self._session(device)
            except _Stopped:
                break
            except (DeviceError, UsageError):
                raise
            except ProtocolError as error:
                raise NotAPmldBandError(self._device_text() + f": {error}") from None
            except Exception as error:
                if first:
                    problem = _bluetooth_problem(error)
                    if problem is not None:
                        raise problem from None
                if not self._is_link_error(error):
                    raise
                self.stats.connect_failures += 1
                self.link_state = f"reconnecting ({_short(error)})"
                self._event("link_error", error=_short(error))
            if streamed or self.session_id:
                first = False
            failures = 0 if streamed else failures + 1
            if self._stop_requested.is_set() or self._band_ended is not None:
                break
            delay = min(
                self.options.backoff_max_s,
                self.options.backoff_min_s * 2 ** max(0, failures - 1),
            )
            delay *= 1.0 + self._rng.uniform(-0.25, 0.25)
            self.link_state = f"reconnecting in {delay:.1f} s"
            try:
                await self._interruptible(asyncio.sleep(self.clock.real_s(delay)))
            except _Stopped:
                break

    @staticmethod
    def _is_link_error(error: BaseException) -> bool:
        from bleak.exc import BleakError

        return isinstance(error, BleakError | TimeoutError | OSError | EOFError)

    async def _interruptible(self, awaitable):
        """Await something unless a stop is requested first (then raise _Stopped)."""
        task = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._stop_requested.wait())
        try:
            done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise _Stopped

    async def _find(self, first: bool):
        self.link_state = "scanning"
        target = self.options.device
        if not first and self.device_address:
            target = self.device_address  # the band we record from, not any band
        timeout = self.options.scan_timeout_s
        try:
            return await find_band(target, timeout, self.scanner_kwargs)
        except NoBandFoundError:
            if first and not self.session_id:
                raise
            raise TimeoutError("band not in range") from None

    def _device_text(self) -> str:
        name = self.device_name or "the device"
        return f"{name} ({self.device_address})" if self.device_address else name

    async def _session(self, device) -> bool:
        """One connection: set up, stream until it ends. True if samples arrived."""
        from bleak import BleakClient

        lost = asyncio.Event()
        intentional = False

        def on_disconnect(_client) -> None:
            if not intentional:
                self.stats.link_drops += 1
                self._event("link_lost")
                self.link_state = "link lost"
            lost.set()
            self._changed.set()
            self._fail_pending()

        self.device_name = device.name or self.device_name
        self.device_address = device.address
        self.link_state = "connecting"
        client = BleakClient(
            device,
            disconnected_callback=on_disconnect,
            timeout=self.options.connect_timeout_s,
            **self.client_kwargs,
        )
        await self._interruptible(client.connect())
        samples_before = self.stats.samples
        try:
            self.stats.connections += 1
            await self._setup(client)
            self.link_state = "streaming"
            outcome = await self._stream(lost)
            if outcome in ("stop", "band_ended") and not lost.is_set() and not self._detach:
                await self._stop_band(lost)
        finally:
            self._client = None
            self._fail_pending()
            if client.is_connected:
                intentional = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.disconnect(), self.options.connect_timeout_s)
            if self.link_state == "streaming":
                self.link_state = "disconnected"
        return self.stats.samples > samples_before

    async def _setup(self, client) -> None:
        """INFO, subscriptions, then START or RESUME."""
        uuids = {s.uuid.lower() for s in client.services}
        if SERVICE_UUID not in uuids:
            raise NotAPmldBandError(
                f"{self._device_text()} is not a pmld band: it offers no pmld service "
                f"({SERVICE_UUID}); `pmld scan` lists the pmld bands in range"
            )
        try:
            info = decode_info(await client.read_gatt_char(INFO_UUID))
        except ProtocolError as error:
            raise NotAPmldBandError(f"{self._device_text()}: {error}") from None
        self._check_info(info)
        self.info = info
        self._open_journal(info)
        self._tx_ratio = 1.0
        await client.start_notify(CONTROL_UUID, self._on_control)
        await client.start_notify(DATA_UUID, self._on_data)
        self._client = client
        self._last_arrival = time.monotonic()
        await self._drain_inbox()  # what the last link left is processed first
        # `seq` runs on across a RESUME: its jump counts what the drop swallowed
        self._resuming = False
        state = await self._command(client, GetInfoCommand)
        if not isinstance(state, GetInfoReply):
            raise NotAPmldBandError(f"{self._device_text()}: GET_INFO {_reply_text(state)}")
        ours = self.session_id and state.state != State.IDLE and state.session_id == self.session_id
        if ours:
            drained = state.state == State.STOPPED and state.next_index <= self._expected
            if drained and state.stop_reason in (StopReason.USER, StopReason.BATTERY_LOW):
                self._band_ended = f"the band's session had ended ({state.stop_reason.name})"
                return
            if not drained:
                self._band_stop = None
                self._resuming = True  # frames past `expected` before the reply: wait
                reply = await self._command(
                    client, lambda t: ResumeCommand(t, self.session_id, self._expected)
                )
                if isinstance(reply, ResumeReply):
                    self.stats.resumes += 1
                    self._event(
                        "resume",
                        session_id=self.session_id,
                        from_index=reply.from_index,
                        first_index=reply.first_index,
                        next_index=reply.next_index,
                    )
                    return
                self._event("resume_refused", reply=_reply_text(reply))
        elif self.session_id:
            self._messages.append(
                "the band lost the session (it restarted, or another host started it): "
                "a new session continues the night after a gap"
            )
            self._event("session_lost", band_state=state.state.name)
        await self._start(client, state)

    def _check_info(self, info: Info) -> None:
        opts = self.options
        if opts.rate_hz not in info.rates_hz:
            raise DeviceError(
                f"{self._device_text()} samples at "
                f"{'/'.join(str(r) for r in info.rates_hz)} Hz, not {opts.rate_hz} Hz: "
                "choose one of these with --fs"
            )
        if all(r.range_g != opts.range_g for r in info.acc_ranges):
            raise DeviceError(
                f"{self._device_text()} offers ranges "
                f"{'/'.join(str(r.range_g) for r in info.acc_ranges)} g, not {opts.range_g} g"
            )

    async def _start(self, client, state: GetInfoReply) -> None:
        if state.state == State.STREAMING:  # someone else's session: end it first
            await self._command(client, StopCommand)
        else:
            with contextlib.suppress(TimeoutError):  # a nicety: the band's clock in UTC
                await self._command(
                    client, lambda t: SetTimeCommand(t, self.clock.now_ns() // 1000)
                )
        self._band_stop = None
        self._starting = True
        try:
            reply = await self._command(
                client, lambda t: StartCommand(t, self.options.rate_hz, self.options.range_g)
            )
        except BaseException:
            self._release_start()
            raise
        if not isinstance(reply, StartReply):
            if isinstance(reply, ErrorReply) and reply.status == Status.BATTERY_LOW:
                self._band_ended = "the band's battery is too low to start"
                self._messages.append(self._band_ended + ": charge it")
                return
            raise DeviceError(f"{self._device_text()}: START {_reply_text(reply)}")

    def _fail_pending(self) -> None:
        """The link is gone: commands waiting for a reply fail now, not at their timeout."""
        from bleak.exc import BleakError

        for future in self._pending.values():
            if not future.done():
                future.set_exception(BleakError("the link dropped before the reply"))

    async def _command(self, client, make: Callable[[int], Command]) -> Reply:
        self._token = self._token % 255 + 1
        command = make(self._token)
        return await self._write_and_wait(
            client, CONTROL_UUID, encode_command(command), self._token
        )

    async def _write_and_wait(self, client, uuid: str, payload: bytes, key: int):
        """Write a command and wait for the reply that :meth:`_process_reply` files
        under ``key`` in ``_pending`` (failed at once when the link drops)."""
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            await client.write_gatt_char(uuid, payload, response=True)
            return await asyncio.wait_for(future, self.options.command_timeout_s)
        finally:
            self._pending.pop(key, None)

    async def _band_events(self, lost: asyncio.Event) -> str | None:
        """What the band did on its own: an outcome for :meth:`_stream` to return,
        ``"again"`` to look once more, or None. A pmld band: a session it stopped."""
        if self._band_stop is None or self._expected < self._band_stop[1]:
            return None
        reason = self._band_stop[0]
        if reason in (StopReason.USER, StopReason.BATTERY_LOW):
            self._band_ended = f"the band stopped its session ({reason.name})"
            return "band_ended"
        # overflow stop or error: a new session continues the night
        self._messages.append(f"the band stopped ({reason.name}); started again")
        self._event("band_stopped", reason=reason.name)
        client = self._client
        if client is None:
            return "lost"
        state = await self._command(client, GetInfoCommand)
        if isinstance(state, GetInfoReply):
            await self._start(client, state)
        return "again"

    async def _stream(self, lost: asyncio.Event) -> str:
        """Wait until the link is lost, a stop is asked, the band ends or stalls."""
        stall_real = max(2.0, self.clock.real_s(self.options.stall_s))
        while True:
            if self._stop_requested.is_set():
                return "stop"
            if lost.is_set():
                return "lost"
            if self._band_ended is not None:
                return "band_ended"
            outcome = await self._band_events(lost)
            if outcome == "again":
                continue
            if outcome is not None:
                return outcome
            if time.monotonic() - self._last_arrival > stall_real:
                self._event("stall")
                self.link_state = "stalled"
                return "stall"
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.25)

    async def _stop_band(self, lost: asyncio.Event) -> None:
        """STOP the band and take the samples it still has."""
        client = self._client
        if client is None:
            return
        self.link_state = "stopping"
        end = None
        if self._band_stop is None:
            try:
                reply = await self._command(client, StopCommand)
            except Exception as error:  # the link went: nothing to drain
                self._event("stop_failed", error=_short(error))
                return
            if isinstance(reply, StopReply):
                end = reply.end_index
        if end is None:
            end = self._band_stop[1] if self._band_stop is not None else self._expected
        deadline = time.monotonic() + self.options.drain_timeout_s
        while self._expected < end and not lost.is_set() and not self._force:
            if time.monotonic() > deadline:
                break
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.1)
        await self._drain_inbox()
        self.stats.tail_lost += max(0, end - self._expected)

    # -- callbacks (constant time) ----------------------------------------------------
    def _on_data(self, _characteristic, value: bytearray) -> None:
        self._inbox.append((self.clock.now_ns(), value, _DATA))
        self._idle.clear()
        self._wakeup.set()

    def _on_control(self, _characteristic, value: bytearray) -> None:
        self._inbox.append((self.clock.now_ns(), value, _CONTROL))
        self._idle.clear()
        self._wakeup.set()

    async def _drain_inbox(self) -> None:
        while not self._idle.is_set():
            await self._idle.wait()

    # -- consumer -----------------------------------------------------------------------
    async def _consume(self) -> None:
        while True:
            if not self._inbox:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            items = self._inbox
            self._inbox = collections.deque()
            self.stats.max_queue = max(self.stats.max_queue, len(items))
            self._last_arrival = time.monotonic()
            self._process(items)
            self._changed.set()
            await asyncio.sleep(0)  # let the link and the supervisor run between batches

    def _process(self, items) -> None:
        run: list = []
        for item in items:
            if item[2] == _DATA:
                run.append(item)
                continue
            if run:
                self._process_data(run)
                run = []
            self._process_reply(item[0], item[1])
        if run:
            self._process_data(run)

    def _process_reply(self, host_ns: int, value: bytes) -> None:
        try:
            reply = decode_reply(value)
        except ProtocolError as error:
            self.stats.bad_replies += 1
            self._bad_event("reply", error)
            return
        if isinstance(reply, StartReply):
            self._begin_session(reply.session_id, host_ns)
            self._starting = False
            held, self._held = self._held, []
            for run in held:
                self._process_data(run)
        elif isinstance(reply, ErrorReply) and reply.opcode == Opcode.START:
            self._release_start()
        elif isinstance(reply, ResumeReply):
            self._resuming = False
            if reply.session_id == self.session_id and reply.first_index > self._expected:
                self._gap(self._expected, reply.first_index - self._expected, "overwritten")
                self._expected = reply.first_index
        elif isinstance(reply, ErrorReply) and reply.opcode == Opcode.RESUME:
            self._resuming = False
        future = self._pending.get(reply.token)
        if future is not None and not future.done():
            future.set_result(reply)

    def _release_start(self) -> None:
        """A START that failed: what was held for it belongs to no session."""
        self._starting = False
        self.stats.discarded_frames += sum(len(run) for run in self._held)
        self._held = []

    def _begin_session(self, session_id: int, host_ns: int) -> None:
        """A START reply: the band numbers from 0 again; place it in the night."""
        previous = self._night_next
        offset = 0
        if previous > 0:
            last = previous - 1
            missing = int(round((host_ns - self._time_of_index(last)) / self._period_ns))
            offset = last + max(1, missing)
        self.stats.sessions += 1
        self.session_id = session_id
        self._offset = offset
        self._expected = 0
        self._last_seq = None
        self._resuming = False
        self._band_stop = None
        if offset > previous:
            self._gap(previous, offset - previous, "session restart", night=True)
        self._event(
            "session",
            session_id=session_id,
            index_offset=offset,
            address=self.device_address,
            rate_hz=self.options.rate_hz,
            range_g=self.options.range_g,
        )

    def _time_of_index(self, night_index: int) -> int:
        """Host time of a night sample, from the least-delayed recent arrivals."""
        if not self._recent:
            return self.clock.now_ns()
        best = min(host - index * self._period_ns for index, host in self._recent)
        return int(best + night_index * self._period_ns)

    def _gap(self, first: int, n: int, why: str, *, night: bool = False) -> None:
        """Record ``n`` samples from ``first`` (a band index, or a night index) as lost."""
        if not night:
            first += self._offset
        if n <= 0:
            return
        self.stats.gaps += 1
        self.stats.gap_samples += n
        assert self._journal is not None
        self._journal.write_gap(first, n)
        self._event("gap", first_index=first, count=n, why=why)
        if self._detector is not None:
            self._detector.gap(n)

    def _bad_event(self, what: str, error: ProtocolError) -> None:
        """Say it once per kind (status stream, final report); journal the first 50."""
        key = f"{what} {error.kind}"
        if key not in self.stats.first_bad:
            self.stats.first_bad[key] = str(error)
            self._notice(f"dropped a bad {what} ({error}); counting them and going on")
        if self._event_log_budget > 0:
            self._event_log_budget -= 1
            self._event("bad_" + what, kind=error.kind, message=str(error))

    def _notice(self, text: str) -> None:
        """A message on its own line of the status stream."""
        stream = self.status_stream
        if stream is None:
            return
        try:
            stream.write(("\n" if _isatty(stream) else "") + f"pmld: {text}\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    def _process_data(self, run: list) -> None:
        if self._starting:
            self._held.append(run)
            return
        stamps = np.fromiter((item[0] for item in run), np.int64, len(run))
        values = [item[1] for item in run]
        self.stats.notifications += len(values)
        batch = decode_frames(values)
        for _, error in batch.errors:
            kind = error.kind
            self.stats.bad_frames[kind] = self.stats.bad_frames.get(kind, 0) + 1
            self._bad_event("frame", error)
        n_data = len(batch.position)
        self.stats.data_frames += n_data
        # sequence numbers, in arrival order over every frame type
        if batch.others:
            pos = np.concatenate([batch.position, [p for p, _ in batch.others]])
            seq = np.concatenate([batch.seq.astype(np.int64), [f.seq for _, f in batch.others]])
            seq = seq[np.argsort(pos, kind="stable")]
        else:
            seq = batch.seq.astype(np.int64)
        if len(seq):
            previous = seq[0] - 1 if self._last_seq is None else self._last_seq
            delta = np.diff(np.concatenate([[previous], seq])) % 65536
            self.stats.duplicate_notifications += int((delta == 0).sum())
            jumps = delta[(delta > 1) & (delta < 32768)]
            self.stats.lost_notifications += int((jumps - 1).sum())
            fresh = np.flatnonzero((delta > 0) & (delta < 32768))
            if len(fresh):
                self._last_seq = int(seq[fresh[-1]])
        for pos, frame in batch.others:
            if isinstance(frame, TimeSyncFrame):
                self._on_time_sync(frame, int(stamps[pos]))
            else:
                self._on_status(frame)
        if n_data and self.session_id:
            self._accept(batch, stamps)

    def _accept(self, batch, stamps: np.ndarray) -> None:
        first = batch.first_index
        count = batch.count
        stop = first + count
        expected = self._expected
        if first[0] == expected and np.array_equal(first[1:], stop[:-1]):
            keep_rows = slice(0, batch.n_samples)  # the common case: all new, in order
            frames = np.arange(len(first))
            self._expected = int(stop[-1])
        else:
            rows: list[np.ndarray] = []
            kept: list[int] = []
            offsets = batch.offsets
            for k in range(len(first)):
                f, s = int(first[k]), int(stop[k])
                if s <= expected:
                    self.stats.duplicate_frames += 1
                    continue
                if f > expected:
                    self.stats.discarded_frames += 1
                    if not self._resuming:
                        self._resume_hole(expected)
                    continue
                rows.append(np.arange(offsets[k] + expected - f, offsets[k + 1]))
                kept.append(k)
                expected = s
            self._expected = expected
            if not kept:
                return
            keep_rows = np.concatenate(rows)
            frames = np.asarray(kept)
        acc = batch.acc[keep_rows]
        n = len(acc)
        last_band = self._expected - 1
        # least-delayed arrival, carried to the record's last sample
        frame_last = stop[frames] - 1
        arrival = stamps[batch.position[frames]]
        host_ns = int(np.min(arrival + (last_band - frame_last) * self._period_ns))
        night_first = self._offset + self._expected - n
        assert self._journal is not None
        self._journal.write_samples(night_first, acc, host_ns)
        self._night_next = max(self._night_next, night_first + n)
        self._recent.append((night_first + n - 1, host_ns))
        self.stats.samples += n
        if self._detector is not None:
            self._detector.push(acc.astype(np.float32) / np.float32(self._counts_per_g))

    def _resume_hole(self, from_index: int) -> None:
        client = self._client
        if client is None:
            return
        self._resuming = True
        self.stats.hole_resumes += 1
        session = self.session_id

        async def resume() -> None:
            try:
                reply = await self._command(
                    client, lambda t: ResumeCommand(t, session, from_index)
                )
                if isinstance(reply, ErrorReply):
                    self._event("resume_refused", reply=_reply_text(reply))
            except Exception as error:  # the link went; the reconnect RESUMEs anyway
                self._event("resume_failed", error=_short(error))
                self._resuming = False

        self._spawn(resume())

    def _on_time_sync(self, frame: TimeSyncFrame, host_ns: int) -> None:
        self.stats.time_syncs += 1
        if self._journal is None or not self.session_id:
            return
        host_at_sample = host_ns - frame.tx_delay_us * 1000
        self._journal.write_time_sync(
            self._offset + frame.sample_index, frame.sample_time_us, host_at_sample
        )

    def _on_status(self, frame: StatusFrame) -> None:
        self.stats.status_frames += 1
        if frame.battery_pct != BATTERY_UNKNOWN:
            self.stats.battery_pct = frame.battery_pct
        if frame.session_id != self.session_id:
            return
        self._band_next = frame.next_index
        if frame.overflow and not self.stats.band_overflow:
            self.stats.band_overflow = True
            self._event("band_overflow", oldest_index=frame.oldest_index)
        if not frame.streaming:
            if self._band_stop is None:
                self._event("band_stop", reason=frame.stop_reason.name, next_index=frame.next_index)
            self._band_stop = (frame.stop_reason, frame.next_index)
        else:
            self._band_stop = None

    # -- background ---------------------------------------------------------------------
    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _tick(self) -> None:
        tty = self.status_stream is not None and _isatty(self.status_stream)
        every = 1.0 if tty else self.options.status_every_s
        next_status = time.monotonic() + min(every, 1.0)
        while True:
            await asyncio.sleep(0.25)
            if self._journal is not None:
                self._journal.tick()
            duration = self.options.duration_s
            if duration is not None and (self.clock.now_ns() - self._started_ns) / 1e9 >= duration:
                self.request_stop(f"--duration {duration:g} s reached")
            if time.monotonic() >= next_status:
                next_status += every
                self._status_line()

    def status(self) -> dict[str, Any]:
        """The numbers of the status line."""
        s = self.stats
        if self._detector is not None:
            live = self._detector.status()
            s.lm_count, s.plm_count, s.plm_index = live.lm_count, live.plm_count, live.plm_index
        now = time.monotonic()
        night_now = self.clock.now_ns()
        then, night_then, samples_then = self._status_prev
        self._status_prev = (now, night_now, s.samples)
        span = (night_now - night_then) / 1e9 if night_then else 0.0
        rate = (s.samples - samples_then) / span if span > 0 else float("nan")
        return {
            "elapsed_s": (night_now - self._started_ns) / 1e9,
            "link": self.link_state,
            "rate_hz": rate,
            "samples": s.samples,
            "packet_loss": s.packet_loss,
            "gaps": s.gaps,
            "gap_s": s.gap_samples / self.options.rate_hz if self.options.rate_hz else 0.0,
            "battery_pct": s.battery_pct,
            "lm": s.lm_count,
            "plm": s.plm_count,
            "plm_index": s.plm_index,
            "bad_frames": s.bad_frame_count,
            "lag_samples": max(0, self._band_next - self._expected),
        }

    def _status_line(self, final: bool = False) -> None:
        stream = self.status_stream
        if stream is None:
            return
        st = self.status()
        elapsed = int(st["elapsed_s"])
        battery = "?" if st["battery_pct"] is None else f"{st['battery_pct']}%"
        plm_index = st["plm_index"]
        rate = f"{st['rate_hz']:.1f} Hz" if st["rate_hz"] == st["rate_hz"] else "-- Hz"
        line = (
            f"rec {elapsed // 3600:d}:{elapsed % 3600 // 60:02d}:{elapsed % 60:02d} | "
            f"{st['link']} | {rate} | {st['samples']:,} samples | "
            f"loss {100 * st['packet_loss']:.2f}% | gaps {st['gaps']} "
            f"({st['gap_s']:.1f} s) | battery {battery} | LM {st['lm']} PLM {st['plm']}"
            + (f" ({plm_index:.0f}/h)" if plm_index == plm_index else "")
            + (f" | bad frames {st['bad_frames']}" if st["bad_frames"] else "")
        )
        try:
            if _isatty(stream):
                stream.write("\r" + line[:200].ljust(120) + ("\n" if final else ""))
            else:
                stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):  # stderr closed: keep recording anyway
            pass

    # -- the end --------------------------------------------------------------------------
    def _finish(self, error: BaseException | None) -> RecordingResult:
        reason = self._stop_reason or self._band_ended or (
            f"error: {error}" if error is not None else "stopped"
        )
        result = RecordingResult(None, None, reason, self.stats, messages=self._messages)
        if self._detector is not None:
            with contextlib.suppress(Exception):
                self._detector.finish()
            live = self._detector.status()
            self.stats.lm_count, self.stats.plm_count = live.lm_count, live.plm_count
        if self._journal is None:
            return result
        if self._detach:
            self._event("detach", reason=reason)
            self._journal.close()
            result.messages.append(
                f"the band goes on recording; {self.journal_file} holds the night so far: "
                "run the same pmld record again to continue it"
            )
            return result
        self._event(
            "stop", reason=reason, stats=json.loads(json.dumps(self.stats.to_dict(), default=str))
        )
        self._journal.close()
        contents = journal_io.read_journal(self.journal_file)
        if not contents.blocks:
            self.journal_file.unlink()
            return result
        from ..io.raw import write_raw

        night, report = journal_io.journal_to_night(contents)
        write_raw(night, self.output)
        self.journal_file.unlink()
        result.output = self.output
        result.report = report
        if self.options.summary:
            result.summary_path, result.summary = self._write_summary(night)
        return result

    def _write_summary(self, night) -> tuple[Path | None, dict[str, Any] | None]:
        from ..pipeline import analyze
        from ..provenance import file_sha256

        path = summary_path(self.output)
        try:
            analysis = analyze(night)
        except PmldError as error:
            self._messages.append(f"no nightly summary: {error}")
            return None, None
        analysis.inputs = [{"path": str(self.output), "sha256": file_sha256(self.output)}]
        analysis.to_hdf5(path)
        return path, analysis.summary()


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _reply_text(reply: Reply) -> str:
    if isinstance(reply, ErrorReply):
        return reply.message
    return f"unexpected reply {type(reply).__name__}"


def _short(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def check_output_writable(output: Path) -> None:
    """Fail early, with a clear message, when the output cannot be written."""
    folder = Path(output).parent
    if not folder.exists():
        raise UsageError(f"{folder}: no such directory for the output")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{folder}: not writable")

