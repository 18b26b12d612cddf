"""The pmld band's GATT protocol, version 1.0: codec and device-side reference model.

The byte-level specification is ``firmware_protocol/SPEC.md``; this module is its Python
implementation and agrees byte for byte with the C reference in ``firmware_protocol/c``
(both pass the JSON vectors in ``firmware_protocol/vectors``).

Host side (the recorder)
------------------------
decode_info(value)
    The INFO characteristic: checks that the device is a pmld band and speaks a
    protocol major version this pmld understands, then returns an :class:`Info`.
encode_command(cmd) / decode_reply(value)
    CONTROL: commands written by the host, replies indicated by the band.
decode_frame(value) / decode_frames(values, gyro=...)
    DATA notifications: one frame, or a batch decoded with vectorised NumPy (the fast
    path: >= 1 M samples/s). A batch never raises for a bad frame: it lists it under
    ``errors`` so that the recorder can count it and go on.

Device side (the virtual band)
------------------------------
:class:`RingBuffer` and :class:`DeviceModel` mirror ``pmld_ring`` and ``pmld_device``
of the C reference: the same commands give the same replies and the same calls of
``next_frame`` give the same notifications, byte for byte (``vectors/sessions.json``).

Every decoding failure raises :class:`ProtocolError`, an :class:`~pmld.errors.InputError`
with a one-line message and a machine-readable ``kind`` (the ``error`` of the vectors).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from ..errors import InputError

# -- identifiers ------------------------------------------------------------------------
PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0

#: Base UUID (uuid4, generated for pmld); bytes 2-3 of the first field name the
#: service (0x0001) and its characteristics.
BASE_UUID = "5b4f0000-dfd8-4ec7-903b-70957256f63d"


def _derived_uuid(alias: int) -> str:
    return f"5b4f{alias:04x}" + BASE_UUID[8:]


SERVICE_UUID = _derived_uuid(0x0001)
INFO_UUID = _derived_uuid(0x0002)  # read
CONTROL_UUID = _derived_uuid(0x0003)  # write with response + indicate
DATA_UUID = _derived_uuid(0x0004)  # notify

MAGIC = b"PMLD"

ATT_MIN_MTU = 23
ATT_MAX_MTU = 517
ATT_OVERHEAD = 3  # opcode + handle of a notification / indication

DATA_HEADER_SIZE = 8
MAX_SAMPLES_PER_FRAME = 63  # 6-bit count
TIME_SYNC_SIZE = 20
STATUS_SIZE = 20
SEQ_MODULUS = 1 << 16
INDEX_LIMIT = 1 << 32  # sample indices are u32 and never wrap within a session

BATTERY_UNKNOWN = 255
#: STATUS error code of a session stopped because its sample index would pass 2^32 - 1.
ERROR_INDEX_LIMIT = 0xFFFF
#: The reference firmware stops a session (and refuses START) at or below this charge.
BATTERY_STOP_PCT = 3
MAX_RATES = 16
MAX_RANGES = 8
MAX_STRING = 32

# bits of the DATA format byte
_DATA_COUNT_MASK = 0x3F
_DATA_GYRO = 0x40
_DATA_RESERVED = 0x80
# TIME_SYNC flags
_SYNC_CLOCK_SET = 0x01
# STATUS flags
_STATUS_STREAMING = 0x01
_STATUS_OVERFLOW = 0x02
# session flags (START command, GET_INFO reply)
SESSION_GYRO = 0x01
SESSION_STOP_ON_OVERFLOW = 0x02
_SESSION_RESERVED = 0xFC
# RESUME reply flags
_RESUME_STREAMING = 0x01
_RESUME_OVERWRITTEN = 0x02
# SET_TIME reply flags
_SETTIME_WAS_SET = 0x01
# INFO bitmasks
SENSOR_ACC = 0x01
SENSOR_GYRO = 0x02
FEATURE_STOP_ON_OVERFLOW = 0x01

REPLY_BIT = 0x80


class FrameType(IntEnum):
    """First byte of a notification on the DATA characteristic."""

    DATA = 0x01
    TIME_SYNC = 0x02
    STATUS = 0x03


class Opcode(IntEnum):
    """First byte of a command; its reply starts with ``opcode | 0x80``."""

    START = 0x01
    STOP = 0x02
    RESUME = 0x03
    GET_INFO = 0x04
    SET_TIME = 0x05


class Status(IntEnum):
    """Third byte of a reply."""

    OK = 0x00
    UNKNOWN_OPCODE = 0x01
    INVALID_LENGTH = 0x02
    INVALID_PARAMETER = 0x03
    UNSUPPORTED = 0x04
    BUSY = 0x05
    NOT_STREAMING = 0x06
    NO_SESSION = 0x07
    SESSION_MISMATCH = 0x08
    BATTERY_LOW = 0x09
    ERROR = 0x0A


STATUS_TEXT = {
    Status.OK: "ok",
    Status.UNKNOWN_OPCODE: "the band does not know this command",
    Status.INVALID_LENGTH: "the command has the wrong length",
    Status.INVALID_PARAMETER: "a parameter is malformed (reserved bits, inconsistent fields)",
    Status.UNSUPPORTED: "the band does not support this rate, range or option",
    Status.BUSY: "the band is streaming (STOP first)",
    Status.NOT_STREAMING: "the band is not streaming",
    Status.NO_SESSION: "the band has no session to resume (it was never started or restarted)",
    Status.SESSION_MISMATCH: "the band is in another session than the one asked for",
    Status.BATTERY_LOW: "the band's battery is too low",
    Status.ERROR: "internal error of the band",
}


class StopReason(IntEnum):
    """Why a session stopped (STATUS frames, GET_INFO reply)."""

    NONE = 0
    USER = 1
    BATTERY_LOW = 2
    BUFFER_OVERFLOW = 3
    ERROR = 4


class State(IntEnum):
    """Session state of the band (GET_INFO reply)."""

    IDLE = 0
    STREAMING = 1
    STOPPED = 2


#: Every ``ProtocolError.kind``; the C reference returns the same names.
ERROR_KINDS = (
    "truncated",  # fewer bytes than the fields need
    "length",  # more bytes than the fields need
    "unknown_type",  # unknown frame type, or not a reply
    "unknown_opcode",  # command/reply with an opcode this version does not define
    "bad_count",  # DATA frame with zero samples
    "reserved",  # a reserved bit or field is not zero
    "bad_value",  # a value outside its range, or fields that contradict each other
    "not_pmld",  # INFO is not a pmld INFO value
    "version_old",  # INFO protocol major older than this pmld
    "version_new",  # INFO protocol major newer than this pmld
)


class ProtocolError(InputError):
    """Bytes from (or for) a band that do not follow the pmld protocol.

    ``kind`` is one of :data:`ERROR_KINDS`. Frame errors concern one notification: a
    recorder drops that frame, counts it, and goes on; ``not_pmld`` and ``version_*``
    concern the device as a whole.
    """

    def __init__(self, kind: str, message: str):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown protocol error kind {kind!r}")
        self.kind = kind
        super().__init__(message)


# -- DATA characteristic: frames --------------------------------------------------------
@dataclass(eq=False)
class SampleFrame:
    """A DATA frame: ``count`` consecutive samples starting at ``first_index``.

    ``acc`` is an ``(n, 3)`` int16 array of accelerometer counts (x, y, z); ``gyro`` the
    matching ``(n, 3)`` gyroscope counts, or None.
    """

    seq: int
    first_index: int
    acc: np.ndarray
    gyro: np.ndarray | None = None

    @property
    def count(self) -> int:
        return int(self.acc.shape[0])

    @property
    def stop_index(self) -> int:
        """The index just after the last sample of this frame."""
        return self.first_index + self.count

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampleFrame):
            return NotImplemented
        return (
            self.seq == other.seq
            and self.first_index == other.first_index
            and np.array_equal(self.acc, other.acc)
            and (self.gyro is None) == (other.gyro is None)
            and (self.gyro is None or np.array_equal(self.gyro, other.gyro))
        )

    def __repr__(self) -> str:
        kind = "acc+gyro" if self.gyro is not None else "acc"
        return f"SampleFrame(seq={self.seq}, first_index={self.first_index}, {self.count} {kind})"


@dataclass(frozen=True)
class TimeSyncFrame:
    """Device clock at the acquisition of sample ``sample_index``.

    ``sample_time_us`` is the device clock (µs since 1970 UTC once SET_TIME has set it,
    ``clock_set``; µs since boot before), ``tx_delay_us`` the device clock time from that
    sample's acquisition to the building of this frame, so ``sample_time_us +
    tx_delay_us`` is when the frame left the firmware (for the lower-envelope fit).
    """

    seq: int
    sample_index: int
    sample_time_us: int
    tx_delay_us: int
    clock_set: bool


@dataclass(frozen=True)
class StatusFrame:
    """Band state: battery, ring buffer span, overflow and why streaming stopped."""

    seq: int
    streaming: bool
    overflow: bool
    battery_pct: int  # 0..100, or BATTERY_UNKNOWN
    stop_reason: StopReason
    error_code: int
    session_id: int
    oldest_index: int  # oldest sample still in the ring buffer (replayable)
    next_index: int  # index the next acquired sample will get

    @property
    def buffered_samples(self) -> int:
        return self.next_index - self.oldest_index


Frame = SampleFrame | TimeSyncFrame | StatusFrame

_DATA_HEAD = struct.Struct("<BBHI")
_INT16_LE = np.dtype("<i2")
_TIME_SYNC = struct.Struct("<BBHIQI")
_STATUS = struct.Struct("<BBHBBHIII")
_FRAME_NAMES = {t.value: t.name for t in FrameType}


def samples_per_frame(mtu: int, gyro: bool = False) -> int:
    """How many samples a full DATA frame holds at ATT MTU ``mtu`` (23..517)."""
    if not ATT_MIN_MTU <= mtu <= ATT_MAX_MTU:
        raise ValueError(f"ATT MTU must be {ATT_MIN_MTU}..{ATT_MAX_MTU}, got {mtu}")
    size = 12 if gyro else 6
    return min(MAX_SAMPLES_PER_FRAME, (mtu - ATT_OVERHEAD - DATA_HEADER_SIZE) // size)


def _check_uint(name: str, value: int, bits: int) -> int:
    value = int(value)
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} must fit in {bits} unsigned bits, got {value}")
    return value


def _int16_block(name: str, samples: Any) -> np.ndarray:
    array = np.asarray(samples)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3), got {array.shape}")
    if array.size and (array.min() < -32768 or array.max() > 32767):
        raise ValueError(f"{name} values must fit int16")
    return array.astype("<i2", copy=False)


def encode_frame(frame: Frame) -> bytes:
    """The notification bytes of ``frame``."""
    if isinstance(frame, SampleFrame):
        acc = _int16_block("acc", frame.acc)
        n = acc.shape[0]
        if not 1 <= n <= MAX_SAMPLES_PER_FRAME:
            raise ValueError(f"a DATA frame holds 1..{MAX_SAMPLES_PER_FRAME} samples, got {n}")
        fmt = n
        block = acc
        if frame.gyro is not None:
            gyro = _int16_block("gyro", frame.gyro)
            if gyro.shape != acc.shape:
                raise ValueError("gyro must have the same shape as acc")
            fmt |= _DATA_GYRO
            block = np.hstack([acc, gyro])
        head = _DATA_HEAD.pack(
            FrameType.DATA,
            fmt,
            _check_uint("seq", frame.seq, 16),
            _check_uint("first_index", frame.first_index, 32),
        )
        return head + np.ascontiguousarray(block, dtype="<i2").tobytes()
    if isinstance(frame, TimeSyncFrame):
        return _TIME_SYNC.pack(
            FrameType.TIME_SYNC,
            _SYNC_CLOCK_SET if frame.clock_set else 0,
            _check_uint("seq", frame.seq, 16),
            _check_uint("sample_index", frame.sample_index, 32),
            _check_uint("sample_time_us", frame.sample_time_us, 64),
            _check_uint("tx_delay_us", frame.tx_delay_us, 32),
        )
    if isinstance(frame, StatusFrame):
        _check_status_fields(frame, ValueError)
        return _STATUS.pack(
            FrameType.STATUS,
            (_STATUS_STREAMING if frame.streaming else 0)
            | (_STATUS_OVERFLOW if frame.overflow else 0),
            _check_uint("seq", frame.seq, 16),
            frame.battery_pct,
            int(frame.stop_reason),
            _check_uint("error_code", frame.error_code, 16),
            _check_uint("session_id", frame.session_id, 32),
            _check_uint("oldest_index", frame.oldest_index, 32),
            _check_uint("next_index", frame.next_index, 32),
        )
    raise TypeError(f"not a frame: {frame!r}")


def _check_status_fields(frame: StatusFrame, error) -> None:
    def fail(kind, message):
        raise ProtocolError(kind, message) if error is ProtocolError else ValueError(message)

    if not (0 <= frame.battery_pct <= 100 or frame.battery_pct == BATTERY_UNKNOWN):
        fail("bad_value", f"STATUS frame battery {frame.battery_pct}% is not 0..100 or 255")
    if frame.streaming and frame.stop_reason != StopReason.NONE:
        fail("bad_value", f"STATUS frame says streaming but gives stop reason {frame.stop_reason}")
    if not frame.streaming and frame.stop_reason == StopReason.NONE:
        fail("bad_value", "STATUS frame says not streaming but gives no stop reason")
    if frame.error_code and frame.stop_reason != StopReason.ERROR:
        fail("bad_value", f"STATUS frame has error code {frame.error_code} without an ERROR stop")
    if frame.session_id == 0:
        fail("bad_value", "STATUS frame has session id 0")
    if frame.oldest_index > frame.next_index:
        fail(
            "bad_value",
            f"STATUS frame oldest index {frame.oldest_index} is after next index "
            f"{frame.next_index}",
        )


def _frame_size_error(name: str, size: int, n: int) -> ProtocolError:
    if n < size:
        return ProtocolError("truncated", f"truncated {name} frame: {n} bytes, it has {size}")
    return ProtocolError("length", f"{name} frame length mismatch: {n} bytes, it has {size}")


def decode_frame(value: bytes | bytearray | memoryview) -> Frame:
    """Decode one DATA-characteristic notification; raise :class:`ProtocolError`."""
    data = value if type(value) is bytes else bytes(value)
    n = len(data)
    if n == 0:
        raise ProtocolError("truncated", "empty notification: no frame type byte")
    kind = data[0]
    if kind == FrameType.DATA:
        return _decode_data(data)
    if kind == FrameType.TIME_SYNC:
        if n != TIME_SYNC_SIZE:
            raise _frame_size_error("TIME_SYNC", TIME_SYNC_SIZE, n)
        _, flags, seq, index, time_us, delay_us = _TIME_SYNC.unpack(data)
        if flags & ~_SYNC_CLOCK_SET:
            raise ProtocolError(
                "reserved", f"TIME_SYNC frame flags 0x{flags:02x} set reserved bits"
            )
        return TimeSyncFrame(seq, index, time_us, delay_us, bool(flags & _SYNC_CLOCK_SET))
    if kind == FrameType.STATUS:
        if n != STATUS_SIZE:
            raise _frame_size_error("STATUS", STATUS_SIZE, n)
        _, flags, seq, battery, reason, error_code, session, oldest, nxt = _STATUS.unpack(data)
        if flags & ~(_STATUS_STREAMING | _STATUS_OVERFLOW):
            raise ProtocolError("reserved", f"STATUS frame flags 0x{flags:02x} set reserved bits")
        if reason not in StopReason._value2member_map_:
            raise ProtocolError("bad_value", f"STATUS frame has unknown stop reason {reason}")
        frame = StatusFrame(
            seq,
            bool(flags & _STATUS_STREAMING),
            bool(flags & _STATUS_OVERFLOW),
            battery,
            StopReason(reason),
            error_code,
            session,
            oldest,
            nxt,
        )
        _check_status_fields(frame, ProtocolError)
        return frame
    raise ProtocolError(
        "unknown_type",
        f"unknown frame type 0x{kind:02x} (protocol {PROTOCOL_MAJOR}.{PROTOCOL_MINOR} "
        "knows DATA 0x01, TIME_SYNC 0x02, STATUS 0x03)",
    )


def _data_layout(data: bytes) -> tuple[int, bool]:
    """Validate a DATA frame's header against its length; return (count, gyro)."""
    n = len(data)
    if n < DATA_HEADER_SIZE:
        raise ProtocolError(
            "truncated", f"truncated DATA frame: {n} bytes, shorter than its 8-byte header"
        )
    fmt = data[1]
    if fmt & _DATA_RESERVED:
        raise ProtocolError("reserved", f"DATA frame format byte 0x{fmt:02x} sets reserved bit 7")
    count = fmt & _DATA_COUNT_MASK
    gyro = bool(fmt & _DATA_GYRO)
    if count == 0:
        raise ProtocolError("bad_count", "DATA frame says it holds 0 samples (1..63 allowed)")
    need = count * (12 if gyro else 6)
    have = n - DATA_HEADER_SIZE
    if have != need:
        what = "truncated DATA frame" if have < need else "DATA frame length mismatch"
        hint = " (is the ATT MTU smaller than the band thinks?)" if have < need else ""
        raise ProtocolError(
            "truncated" if have < need else "length",
            f"{what}: header says {count} samples ({need} bytes) but {have} bytes follow{hint}",
        )
    return count, gyro


def _decode_data(data: bytes) -> SampleFrame:
    count, gyro = _data_layout(data)
    _, _, seq, first = _DATA_HEAD.unpack_from(data)
    # the ndarray constructor is a view like np.frombuffer, at a third of its overhead
    block = np.ndarray((count, 6 if gyro else 3), _INT16_LE, data, DATA_HEADER_SIZE)
    if gyro:
        return SampleFrame(seq, first, block[:, :3], block[:, 3:])
    return SampleFrame(seq, first, block)


def seq_delta(previous: int, current: int) -> int:
    """Signed distance from sequence number ``previous`` to ``current`` (mod 2^16).

    1 is the next frame, 0 a duplicate, ``k > 1`` means ``k - 1`` notifications were
    lost, a negative value a frame older than ``previous`` (late or replayed by a stack).
    """
    delta = (current - previous) % SEQ_MODULUS
    return delta - SEQ_MODULUS if delta >= SEQ_MODULUS // 2 else delta


@dataclass(eq=False)
class FrameBatch:
    """Many notifications decoded at once (:func:`decode_frames`).

    DATA frames are flattened into arrays, one row per frame, in arrival order
    (``position`` is the frame's place in the input); their samples are concatenated in
    the same order in ``acc`` (and ``gyro`` for a gyroscope session), so frame ``k``'s
    samples are rows ``offsets[k]:offsets[k + 1]``. TIME_SYNC and STATUS frames are in
    ``others`` and frames that failed to decode in ``errors``, each with its position.
    """

    position: np.ndarray
    seq: np.ndarray
    first_index: np.ndarray
    count: np.ndarray
    acc: np.ndarray
    gyro: np.ndarray | None
    others: list[tuple[int, TimeSyncFrame | StatusFrame]] = field(default_factory=list)
    errors: list[tuple[int, ProtocolError]] = field(default_factory=list)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.count)])

    @property
    def n_samples(self) -> int:
        return int(self.acc.shape[0])


def decode_frames(values: Iterable[bytes], *, gyro: bool = False) -> FrameBatch:
    """Decode a batch of DATA-characteristic notifications with vectorised NumPy.

    ``gyro`` says whether the session was started with the gyroscope; a DATA frame
    that disagrees is an error. Bad frames never raise: they are returned in
    ``errors`` (a recorder counts and skips them).
    """
    values = values if isinstance(values, Sequence) else list(values)
    groups: dict[tuple[int, int], list[int]] = {}
    others: list[tuple[int, TimeSyncFrame | StatusFrame]] = []
    errors: list[tuple[int, ProtocolError]] = []
    data_type = int(FrameType.DATA)
    for pos, value in enumerate(values):
        if len(value) > 1 and value[0] == data_type:
            key = (len(value), value[1])
            bucket = groups.get(key)
            if bucket is None:
                groups[key] = [pos]
            else:
                bucket.append(pos)
            continue
        try:
            others.append((pos, decode_frame(value)))
        except ProtocolError as exc:
            errors.append((pos, exc))

    width = 6 if gyro else 3
    parts = []  # (positions, seq, first, count, samples)
    for (length, _fmt), positions in groups.items():
        try:
            count, has_gyro = _data_layout(bytes(values[positions[0]]))
            if has_gyro != gyro:
                raise ProtocolError(
                    "bad_value",
                    "DATA frame carries gyroscope samples but the session has no gyroscope"
                    if has_gyro
                    else "DATA frame lacks the gyroscope samples of this session",
                )
        except ProtocolError as exc:
            errors.extend((pos, exc) for pos in positions)
            continue
        dtype = np.dtype(
            [("head", "u1", 2), ("seq", "<u2"), ("first", "<u4"), ("s", "<i2", (count, width))]
        )
        assert dtype.itemsize == length
        records = np.frombuffer(b"".join(values[p] for p in positions), dtype=dtype)
        parts.append(
            (
                np.asarray(positions, dtype=np.int64),
                records["seq"],
                records["first"].astype(np.int64),
                np.full(len(positions), count, dtype=np.int64),
                records["s"].reshape(-1, width),
            )
        )
    errors.sort(key=lambda item: item[0])
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return FrameBatch(
            empty,
            np.zeros(0, np.uint16),
            empty,
            empty,
            np.zeros((0, 3), np.int16),
            np.zeros((0, 3), np.int16) if gyro else None,
            others,
            errors,
        )
    position = np.concatenate([p[0] for p in parts])
    seq = np.concatenate([p[1] for p in parts])
    first = np.concatenate([p[2] for p in parts])
    count = np.concatenate([p[3] for p in parts])
    samples = np.concatenate([p[4] for p in parts])
    if len(parts) > 1 or np.any(np.diff(position) < 0):
        order = np.argsort(position, kind="stable")
        sample_order = np.argsort(np.repeat(position, count), kind="stable")
        position, seq, first, count = position[order], seq[order], first[order], count[order]
        samples = samples[sample_order]
    samples = samples.astype(np.int16, copy=False)
    acc = samples[:, :3]
    return FrameBatch(
        position, seq, first, count, acc, samples[:, 3:] if gyro else None, others, errors
    )


# -- CONTROL characteristic: commands ---------------------------------------------------
def session_flags(gyro_range_dps: int, stop_on_overflow: bool) -> int:
    """The session flags byte of START and of the session state (SPEC.md)."""
    return (SESSION_GYRO if gyro_range_dps else 0) | (
        SESSION_STOP_ON_OVERFLOW if stop_on_overflow else 0
    )


@dataclass(frozen=True)
class StartCommand:
    """Start a new session: sampling at ``rate_hz`` with range +-``range_g``.

    ``gyro_range_dps`` > 0 also streams the gyroscope at that range.
    ``stop_on_overflow`` asks the band to stop (reason BUFFER_OVERFLOW) rather than
    overwrite samples it never sent.
    """

    token: int
    rate_hz: int
    range_g: int
    gyro_range_dps: int = 0
    stop_on_overflow: bool = False

    @property
    def gyro(self) -> bool:
        return self.gyro_range_dps > 0

    @property
    def flags(self) -> int:
        return session_flags(self.gyro_range_dps, self.stop_on_overflow)


@dataclass(frozen=True)
class StopCommand:
    token: int


@dataclass(frozen=True)
class ResumeCommand:
    """Send again from sample ``from_index`` of session ``session_id``, then go live."""

    token: int
    session_id: int
    from_index: int


@dataclass(frozen=True)
class GetInfoCommand:
    """Ask for the session state (the static capabilities are in INFO)."""

    token: int


@dataclass(frozen=True)
class SetTimeCommand:
    """Set the band's clock to ``utc_us`` (µs since 1970-01-01 UTC)."""

    token: int
    utc_us: int


Command = StartCommand | StopCommand | ResumeCommand | GetInfoCommand | SetTimeCommand

_START = struct.Struct("<BBHBBH")
_RESUME = struct.Struct("<BBII")
_SET_TIME = struct.Struct("<BBQ")
COMMAND_SIZES = {
    Opcode.START: _START.size,
    Opcode.STOP: 2,
    Opcode.RESUME: _RESUME.size,
    Opcode.GET_INFO: 2,
    Opcode.SET_TIME: _SET_TIME.size,
}


def encode_command(cmd: Command) -> bytes:
    """The bytes the host writes to CONTROL."""
    token = _check_uint("token", cmd.token, 8)
    if isinstance(cmd, StartCommand):
        return _START.pack(
            Opcode.START,
            token,
            _check_uint("rate_hz", cmd.rate_hz, 16),
            _check_uint("range_g", cmd.range_g, 8),
            cmd.flags,
            _check_uint("gyro_range_dps", cmd.gyro_range_dps, 16),
        )
    if isinstance(cmd, StopCommand):
        return bytes((Opcode.STOP, token))
    if isinstance(cmd, ResumeCommand):
        return _RESUME.pack(
            Opcode.RESUME,
            token,
            _check_uint("session_id", cmd.session_id, 32),
            _check_uint("from_index", cmd.from_index, 32),
        )
    if isinstance(cmd, GetInfoCommand):
        return bytes((Opcode.GET_INFO, token))
    if isinstance(cmd, SetTimeCommand):
        return _SET_TIME.pack(Opcode.SET_TIME, token, _check_uint("utc_us", cmd.utc_us, 64))
    raise TypeError(f"not a command: {cmd!r}")


def decode_command(value: bytes | bytearray | memoryview) -> Command:
    """Decode a CONTROL write (the band's side); raise :class:`ProtocolError`."""
    data = bytes(value)
    if not data:
        raise ProtocolError("truncated", "empty command")
    op = data[0]
    if op not in Opcode._value2member_map_:
        raise ProtocolError("unknown_opcode", f"unknown command opcode 0x{op:02x}")
    opcode = Opcode(op)
    size = COMMAND_SIZES[opcode]
    if len(data) != size:
        kind = "truncated" if len(data) < size else "length"
        raise ProtocolError(kind, f"{opcode.name} command is {len(data)} bytes, it has {size}")
    if opcode == Opcode.START:
        _, token, rate, range_g, flags, gyro_range = _START.unpack(data)
        if flags & _SESSION_RESERVED:
            raise ProtocolError("reserved", f"START flags 0x{flags:02x} set reserved bits")
        if bool(flags & SESSION_GYRO) != (gyro_range > 0):
            raise ProtocolError(
                "bad_value",
                f"START gyro flag {int(bool(flags & SESSION_GYRO))} disagrees with gyro range "
                f"{gyro_range} dps",
            )
        if rate == 0 or range_g == 0:
            raise ProtocolError("bad_value", f"START with rate {rate} Hz and range {range_g} g")
        stop_on_overflow = bool(flags & SESSION_STOP_ON_OVERFLOW)
        return StartCommand(token, rate, range_g, gyro_range, stop_on_overflow)
    if opcode == Opcode.STOP:
        return StopCommand(data[1])
    if opcode == Opcode.RESUME:
        _, token, session, first = _RESUME.unpack(data)
        return ResumeCommand(token, session, first)
    if opcode == Opcode.GET_INFO:
        return GetInfoCommand(data[1])
    _, token, utc_us = _SET_TIME.unpack(data)
    return SetTimeCommand(token, utc_us)


# -- CONTROL characteristic: replies ----------------------------------------------------
@dataclass(frozen=True)
class ErrorReply:
    """A reply whose status is not OK (``status`` may be a code newer than this pmld)."""

    opcode: int
    token: int
    status: int

    @property
    def message(self) -> str:
        name = (
            Opcode(self.opcode).name
            if self.opcode in Opcode._value2member_map_
            else (f"opcode 0x{self.opcode:02x}")
        )
        if self.status in Status._value2member_map_:
            status = Status(self.status)
            return f"{name} refused: {status.name} ({STATUS_TEXT[status]})"
        return f"{name} refused with status 0x{self.status:02x} (unknown to this pmld)"


@dataclass(frozen=True)
class StartReply:
    token: int
    session_id: int


@dataclass(frozen=True)
class StopReply:
    token: int
    end_index: int  # samples acquired in the session: indices 0..end_index-1


@dataclass(frozen=True)
class ResumeReply:
    """The band sends samples ``first_index``.. then live ones (``streaming``).

    ``first_index > from_index`` (``overwritten``) means samples ``from_index ..
    first_index - 1`` were overwritten in the ring buffer: an exact, final gap.
    """

    token: int
    session_id: int
    from_index: int
    first_index: int
    next_index: int
    streaming: bool

    @property
    def overwritten(self) -> bool:
        return self.first_index > self.from_index

    @property
    def lost_samples(self) -> int:
        return self.first_index - self.from_index


@dataclass(frozen=True)
class GetInfoReply:
    """The band's session state; all zero but ``state`` when IDLE."""

    token: int
    state: State
    session_id: int = 0
    rate_hz: int = 0
    range_g: int = 0
    gyro_range_dps: int = 0
    stop_on_overflow: bool = False
    stop_reason: StopReason = StopReason.NONE
    next_index: int = 0

    @property
    def flags(self) -> int:
        return session_flags(self.gyro_range_dps, self.stop_on_overflow)


@dataclass(frozen=True)
class SetTimeReply:
    token: int
    previous_us: int  # the device clock just before it was set
    was_set: bool  # the clock had been set before (else previous_us counts from boot)


Reply = ErrorReply | StartReply | StopReply | ResumeReply | GetInfoReply | SetTimeReply

_REPLY_HEAD = struct.Struct("<BBB")
_RESUME_REPLY = struct.Struct("<BBBBIIII")
_GET_INFO_REPLY = struct.Struct("<BBBBBBBHHII")
_SET_TIME_REPLY = struct.Struct("<BBBQB")
REPLY_SIZES = {
    Opcode.START: 7,
    Opcode.STOP: 7,
    Opcode.RESUME: _RESUME_REPLY.size,
    Opcode.GET_INFO: _GET_INFO_REPLY.size,
    Opcode.SET_TIME: _SET_TIME_REPLY.size,
}


def encode_reply(reply: Reply) -> bytes:
    """The bytes the band indicates on CONTROL."""
    token = _check_uint("token", reply.token, 8)
    if isinstance(reply, ErrorReply):
        status = _check_uint("status", reply.status, 8)
        if status == Status.OK:
            raise ValueError("an ErrorReply needs a status other than OK")
        return _REPLY_HEAD.pack(_check_uint("opcode", reply.opcode, 8) | REPLY_BIT, token, status)
    if isinstance(reply, StartReply):
        return _REPLY_HEAD.pack(Opcode.START | REPLY_BIT, token, Status.OK) + struct.pack(
            "<I", _check_uint("session_id", reply.session_id, 32)
        )
    if isinstance(reply, StopReply):
        return _REPLY_HEAD.pack(Opcode.STOP | REPLY_BIT, token, Status.OK) + struct.pack(
            "<I", _check_uint("end_index", reply.end_index, 32)
        )
    if isinstance(reply, ResumeReply):
        if not reply.from_index <= reply.first_index <= reply.next_index:
            raise ValueError("RESUME reply needs from_index <= first_index <= next_index")
        return _RESUME_REPLY.pack(
            Opcode.RESUME | REPLY_BIT,
            token,
            Status.OK,
            (_RESUME_STREAMING if reply.streaming else 0)
            | (_RESUME_OVERWRITTEN if reply.overwritten else 0),
            _check_uint("session_id", reply.session_id, 32),
            _check_uint("from_index", reply.from_index, 32),
            _check_uint("first_index", reply.first_index, 32),
            _check_uint("next_index", reply.next_index, 32),
        )
    if isinstance(reply, GetInfoReply):
        _check_get_info(reply, ValueError)
        return _GET_INFO_REPLY.pack(
            Opcode.GET_INFO | REPLY_BIT,
            token,
            Status.OK,
            int(reply.state),
            reply.flags,
            _check_uint("range_g", reply.range_g, 8),
            int(reply.stop_reason),
            _check_uint("rate_hz", reply.rate_hz, 16),
            _check_uint("gyro_range_dps", reply.gyro_range_dps, 16),
            _check_uint("session_id", reply.session_id, 32),
            _check_uint("next_index", reply.next_index, 32),
        )
    if isinstance(reply, SetTimeReply):
        return _SET_TIME_REPLY.pack(
            Opcode.SET_TIME | REPLY_BIT,
            token,
            Status.OK,
            _check_uint("previous_us", reply.previous_us, 64),
            _SETTIME_WAS_SET if reply.was_set else 0,
        )
    raise TypeError(f"not a reply: {reply!r}")


def _check_get_info(reply: GetInfoReply, error) -> None:
    def fail(message):
        raise ProtocolError("bad_value", message) if error is ProtocolError else ValueError(message)

    if reply.state == State.IDLE:
        if (
            reply.session_id
            or reply.rate_hz
            or reply.range_g
            or reply.gyro_range_dps
            or reply.stop_on_overflow
            or reply.stop_reason
            or reply.next_index
        ):
            fail("GET_INFO reply for an IDLE band has session fields that are not zero")
        return
    if reply.session_id == 0 or reply.rate_hz == 0 or reply.range_g == 0:
        fail("GET_INFO reply has a session without session id, rate or range")
    if (reply.state == State.STREAMING) != (reply.stop_reason == StopReason.NONE):
        fail(f"GET_INFO reply: state {reply.state.name} with stop reason {reply.stop_reason.name}")


def decode_reply(value: bytes | bytearray | memoryview) -> Reply:
    """Decode a CONTROL indication (the host's side); raise :class:`ProtocolError`."""
    data = bytes(value)
    n = len(data)
    if n < 3:
        raise ProtocolError("truncated", f"truncated reply: {n} bytes, a reply has at least 3")
    op, token, status = _REPLY_HEAD.unpack_from(data)
    if not op & REPLY_BIT:
        raise ProtocolError(
            "unknown_type", f"not a reply: first byte 0x{op:02x} lacks the reply bit 0x80"
        )
    op &= ~REPLY_BIT
    if status != Status.OK:
        if n != 3:
            raise ProtocolError("length", f"error reply is {n} bytes, it has 3")
        return ErrorReply(op, token, status)
    if op not in Opcode._value2member_map_:
        raise ProtocolError("unknown_opcode", f"OK reply to unknown opcode 0x{op:02x}")
    opcode = Opcode(op)
    size = REPLY_SIZES[opcode]
    if n != size:
        kind = "truncated" if n < size else "length"
        raise ProtocolError(kind, f"{opcode.name} reply is {n} bytes, it has {size}")
    if opcode == Opcode.START:
        (session,) = struct.unpack_from("<I", data, 3)
        if session == 0:
            raise ProtocolError("bad_value", "START reply gives session id 0")
        return StartReply(token, session)
    if opcode == Opcode.STOP:
        return StopReply(token, struct.unpack_from("<I", data, 3)[0])
    if opcode == Opcode.RESUME:
        _, _, _, flags, session, from_index, first, nxt = _RESUME_REPLY.unpack(data)
        if flags & ~(_RESUME_STREAMING | _RESUME_OVERWRITTEN):
            raise ProtocolError("reserved", f"RESUME reply flags 0x{flags:02x} set reserved bits")
        if not from_index <= first <= nxt:
            raise ProtocolError(
                "bad_value",
                f"RESUME reply indices out of order: from {from_index}, first {first}, next {nxt}",
            )
        if bool(flags & _RESUME_OVERWRITTEN) != (first > from_index):
            raise ProtocolError(
                "bad_value",
                f"RESUME reply overwritten flag disagrees with from {from_index}, first {first}",
            )
        if session == 0:
            raise ProtocolError("bad_value", "RESUME reply gives session id 0")
        return ResumeReply(token, session, from_index, first, nxt, bool(flags & _RESUME_STREAMING))
    if opcode == Opcode.GET_INFO:
        (_, _, _, state, flags, range_g, reason, rate, gyro_range, session, nxt) = (
            _GET_INFO_REPLY.unpack(data)
        )
        if flags & _SESSION_RESERVED:
            raise ProtocolError("reserved", f"GET_INFO reply flags 0x{flags:02x} set reserved bits")
        if state not in State._value2member_map_:
            raise ProtocolError("bad_value", f"GET_INFO reply has unknown state {state}")
        if reason not in StopReason._value2member_map_:
            raise ProtocolError("bad_value", f"GET_INFO reply has unknown stop reason {reason}")
        if bool(flags & SESSION_GYRO) != (gyro_range > 0):
            raise ProtocolError(
                "bad_value", "GET_INFO reply gyro flag disagrees with its gyro range"
            )
        reply = GetInfoReply(
            token,
            State(state),
            session,
            rate,
            range_g,
            gyro_range,
            bool(flags & SESSION_STOP_ON_OVERFLOW),
            StopReason(reason),
            nxt,
        )
        _check_get_info(reply, ProtocolError)
        return reply
    _, _, _, previous, flags = _SET_TIME_REPLY.unpack(data)
    if flags & ~_SETTIME_WAS_SET:
        raise ProtocolError("reserved", f"SET_TIME reply flags 0x{flags:02x} set reserved bits")
    return SetTimeReply(token, previous, bool(flags & _SETTIME_WAS_SET))


# -- INFO characteristic ----------------------------------------------------------------
@dataclass(frozen=True)
class AccRange:
    range_g: int
    counts_per_g: float  # a float32 value


@dataclass(frozen=True)
class GyroRange:
    range_dps: int
    counts_per_dps: float  # a float32 value


@dataclass(frozen=True)
class Info:
    """The band's static description (the INFO characteristic)."""

    rates_hz: tuple[int, ...]
    acc_ranges: tuple[AccRange, ...]
    gyro_ranges: tuple[GyroRange, ...] = ()
    buffer_samples: int = 0  # ring capacity in accelerometer-only samples
    buffer_samples_gyro: int = 0  # ring capacity in acc+gyro samples (0 without gyro)
    model: str = ""
    firmware: str = ""
    serial: str = ""
    stop_on_overflow: bool = False  # the band supports START's stop-on-overflow option
    time_sync_interval_s: int = 1
    status_interval_s: int = 5
    major: int = PROTOCOL_MAJOR
    minor: int = PROTOCOL_MINOR

    @property
    def has_gyro(self) -> bool:
        return bool(self.gyro_ranges)

    def counts_per_g(self, range_g: int) -> float:
        for item in self.acc_ranges:
            if item.range_g == range_g:
                return item.counts_per_g
        raise ProtocolError("bad_value", f"the band has no +-{range_g} g range")

    def counts_per_dps(self, range_dps: int) -> float:
        for item in self.gyro_ranges:
            if item.range_dps == range_dps:
                return item.counts_per_dps
        raise ProtocolError("bad_value", f"the band has no +-{range_dps} dps gyroscope range")

    def device_metadata(self, range_g: int, gyro_range_dps: int = 0) -> dict[str, Any]:
        """The ``Sensor.device`` dict of a session started with these ranges."""
        meta: dict[str, Any] = {
            "model": self.model,
            "firmware": self.firmware,
            "serial": self.serial,
            "protocol": f"pmld-ble {self.major}.{self.minor}",
            "range_g": range_g,
            "counts_per_g": self.counts_per_g(range_g),
        }
        if gyro_range_dps:
            meta["gyro_range_dps"] = gyro_range_dps
            meta["gyro_counts_per_dps"] = self.counts_per_dps(gyro_range_dps)
        return meta


_INFO_HEAD = struct.Struct("<4sBBHBBBBII")


def _check_info(info: Info, error) -> None:
    def fail(kind, message):
        raise ProtocolError(kind, message) if error is ProtocolError else ValueError(message)

    if not 1 <= len(info.rates_hz) <= MAX_RATES:
        fail("bad_value", f"INFO lists {len(info.rates_hz)} rates (1..{MAX_RATES} allowed)")
    if any(r <= 0 for r in info.rates_hz) or list(info.rates_hz) != sorted(set(info.rates_hz)):
        fail("bad_value", f"INFO rates {list(info.rates_hz)} are not positive and ascending")
    if not 1 <= len(info.acc_ranges) <= MAX_RANGES:
        fail("bad_value", f"INFO lists {len(info.acc_ranges)} ranges (1..{MAX_RANGES} allowed)")
    if len(info.gyro_ranges) > MAX_RANGES:
        fail("bad_value", f"INFO lists {len(info.gyro_ranges)} gyroscope ranges")
    for label, values, scales in (
        ("acc", [r.range_g for r in info.acc_ranges], [r.counts_per_g for r in info.acc_ranges]),
        (
            "gyro",
            [r.range_dps for r in info.gyro_ranges],
            [r.counts_per_dps for r in info.gyro_ranges],
        ),
    ):
        if any(v <= 0 for v in values) or values != sorted(set(values)):
            fail("bad_value", f"INFO {label} ranges {values} are not positive and ascending")
        if any(not (math.isfinite(s) and s > 0) for s in scales):
            fail("bad_value", f"INFO {label} scales {scales} are not finite and positive")
    if info.buffer_samples <= 0:
        fail("bad_value", "INFO gives a ring buffer of 0 samples")
    if info.has_gyro != (info.buffer_samples_gyro > 0):
        fail("bad_value", "INFO gyroscope ranges and gyroscope buffer size disagree")
    if not (1 <= info.time_sync_interval_s <= 255 and 1 <= info.status_interval_s <= 255):
        fail("bad_value", "INFO TIME_SYNC and STATUS intervals must be 1..255 s")
    for name in ("model", "firmware", "serial"):
        if len(getattr(info, name).encode()) > MAX_STRING:
            fail("bad_value", f"INFO {name} is longer than {MAX_STRING} bytes")


def encode_info(info: Info) -> bytes:
    """The INFO characteristic value."""
    _check_info(info, ValueError)
    body = bytearray()
    body += struct.pack("<B", len(info.rates_hz))
    body += struct.pack(f"<{len(info.rates_hz)}H", *info.rates_hz)
    body += struct.pack("<B", len(info.acc_ranges))
    for acc in info.acc_ranges:
        body += struct.pack("<Bf", _check_uint("range_g", acc.range_g, 8), acc.counts_per_g)
    body += struct.pack("<B", len(info.gyro_ranges))
    for gyro in info.gyro_ranges:
        range_dps = _check_uint("range_dps", gyro.range_dps, 16)
        body += struct.pack("<Hf", range_dps, gyro.counts_per_dps)
    for text in (info.model, info.firmware, info.serial):
        raw = text.encode()
        body += struct.pack("<B", len(raw)) + raw
    total = _INFO_HEAD.size + len(body)
    head = _INFO_HEAD.pack(
        MAGIC,
        info.major,
        info.minor,
        total,
        SENSOR_ACC | (SENSOR_GYRO if info.has_gyro else 0),
        FEATURE_STOP_ON_OVERFLOW if info.stop_on_overflow else 0,
        info.time_sync_interval_s,
        info.status_interval_s,
        _check_uint("buffer_samples", info.buffer_samples, 32),
        _check_uint("buffer_samples_gyro", info.buffer_samples_gyro, 32),
    )
    return head + bytes(body)


def check_version(major: int, minor: int) -> None:
    """Raise :class:`ProtocolError` when this pmld cannot talk to a band of that version."""
    if major < PROTOCOL_MAJOR:
        raise ProtocolError(
            "version_old",
            f"protocol version {major}.{minor} is older than this pmld supports "
            f"({PROTOCOL_MAJOR}.x): update the band's firmware",
        )
    if major > PROTOCOL_MAJOR:
        raise ProtocolError(
            "version_new",
            f"protocol version {major}.{minor} is newer than this pmld supports "
            f"({PROTOCOL_MAJOR}.x): update pmld",
        )


def decode_info(value: bytes | bytearray | memoryview) -> Info:
    """Decode the INFO characteristic; raise :class:`ProtocolError`.

    Checks, in this order: the ``PMLD`` magic (else ``not_pmld``), the protocol major
    (``version_old`` / ``version_new``), the length, then every field. Bytes after the
    fields this version knows are ignored when the band's minor version is newer.
    """
    data = bytes(value)
    n = len(data)
    if n < 6 or data[:4] != MAGIC:
        if n >= 4 and data[:4] != MAGIC or n < 4 and data != MAGIC[:n]:
            raise ProtocolError(
                "not_pmld",
                f"not a pmld band: INFO starts with {data[:4].hex(' ') or 'nothing'}, "
                f'not "PMLD" (50 4d 4c 44)',
            )
        raise ProtocolError("truncated", f"truncated INFO: {n} bytes")
    major, minor = data[4], data[5]
    check_version(major, minor)
    if n < _INFO_HEAD.size:
        raise ProtocolError("truncated", f"truncated INFO: {n} bytes, its header has 20")
    (_, _, _, total, sensors, features, sync_s, status_s, buffer, buffer_gyro) = (
        _INFO_HEAD.unpack_from(data)
    )
    if total != n:
        kind = "truncated" if n < total else "length"
        raise ProtocolError(kind, f"INFO is {n} bytes but says it has {total}")
    if not sensors & SENSOR_ACC:
        raise ProtocolError("bad_value", "INFO says the band has no accelerometer")
    if sensors & ~(SENSOR_ACC | SENSOR_GYRO):
        raise ProtocolError("reserved", f"INFO sensor bits 0x{sensors:02x} set reserved bits")
    if features & ~FEATURE_STOP_ON_OVERFLOW:
        raise ProtocolError("reserved", f"INFO feature bits 0x{features:02x} set reserved bits")
    pos = _INFO_HEAD.size

    def take(fmt: str) -> tuple:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > n:
            raise ProtocolError("truncated", f"truncated INFO: its lists run past {n} bytes")
        values = struct.unpack_from(fmt, data, pos)
        pos += size
        return values

    (n_rates,) = take("<B")
    rates = take(f"<{n_rates}H")
    (n_ranges,) = take("<B")
    acc = tuple(AccRange(*take("<Bf")) for _ in range(n_ranges))
    (n_gyro,) = take("<B")
    gyro = tuple(GyroRange(*take("<Hf")) for _ in range(n_gyro))
    texts = []
    for name in ("model", "firmware", "serial"):
        (length,) = take("<B")
        raw = take(f"<{length}s")[0]
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError("bad_value", f"INFO {name} is not UTF-8: {raw!r}") from None
    if pos != n and minor <= PROTOCOL_MINOR:
        raise ProtocolError(
            "length", f"INFO has {n - pos} bytes after its last field (protocol {major}.{minor})"
        )
    info = Info(
        tuple(rates),
        acc,
        gyro,
        buffer,
        buffer_gyro,
        *texts,
        stop_on_overflow=bool(features & FEATURE_STOP_ON_OVERFLOW),
        time_sync_interval_s=sync_s,
        status_interval_s=status_s,
        major=major,
        minor=minor,
    )
    if bool(sensors & SENSOR_GYRO) != info.has_gyro:
        raise ProtocolError("bad_value", "INFO gyroscope bit disagrees with its gyroscope ranges")
    _check_info(info, ProtocolError)
    return info


# -- dictionaries (the vectors' "decoded" meaning; also handy for logs) -----------------
def to_dict(message: Frame | Command | Reply | Info) -> dict[str, Any]:
    """A JSON-ready dict of any decoded message (the form used by the vectors)."""
    if isinstance(message, SampleFrame):
        return {
            "type": "DATA",
            "seq": message.seq,
            "first_index": message.first_index,
            "acc": np.asarray(message.acc).tolist(),
            "gyro": None if message.gyro is None else np.asarray(message.gyro).tolist(),
        }
    if isinstance(message, TimeSyncFrame):
        return {"type": "TIME_SYNC", **_fields(message)}
    if isinstance(message, StatusFrame):
        out = {"type": "STATUS", **_fields(message)}
        out["stop_reason"] = message.stop_reason.name
        return out
    if isinstance(message, Info):
        out = _fields(message)
        out["rates_hz"] = list(message.rates_hz)
        out["acc_ranges"] = [[r.range_g, r.counts_per_g] for r in message.acc_ranges]
        out["gyro_ranges"] = [[r.range_dps, r.counts_per_dps] for r in message.gyro_ranges]
        return out
    name = type(message).__name__
    for opcode in Opcode:
        title = "".join(part.title() for part in opcode.name.split("_"))
        if name == f"{title}Command":
            return {"opcode": opcode.name, **_fields(message)}
        if name == f"{title}Reply":
            out = {"opcode": opcode.name, "status": "OK", **_fields(message)}
            if "state" in out:
                out["state"] = State(out["state"]).name
            if "stop_reason" in out:
                out["stop_reason"] = StopReason(out["stop_reason"]).name
            return out
    if isinstance(message, ErrorReply):
        opcode = (
            Opcode(message.opcode).name
            if message.opcode in Opcode._value2member_map_
            else message.opcode
        )
        status = (
            Status(message.status).name
            if message.status in Status._value2member_map_
            else message.status
        )
        return {"opcode": opcode, "token": message.token, "status": status}
    raise TypeError(f"cannot convert {message!r}")


def _fields(obj) -> dict[str, Any]:
    out = {}
    for name in obj.__dataclass_fields__:
        value = getattr(obj, name)
        out[name] = int(value) if isinstance(value, IntEnum) else value
    return out


def _enum(cls, value):
    return cls[value] if isinstance(value, str) else cls(value)


def frame_from_dict(d: dict[str, Any]) -> Frame:
    kind = d["type"]
    if kind == "DATA":
        acc = np.asarray(d["acc"], dtype=np.int16).reshape(-1, 3)
        gyro = None if d.get("gyro") is None else np.asarray(d["gyro"], np.int16).reshape(-1, 3)
        return SampleFrame(d["seq"], d["first_index"], acc, gyro)
    if kind == "TIME_SYNC":
        return TimeSyncFrame(
            d["seq"], d["sample_index"], d["sample_time_us"], d["tx_delay_us"], d["clock_set"]
        )
    if kind == "STATUS":
        return StatusFrame(
            d["seq"],
            d["streaming"],
            d["overflow"],
            d["battery_pct"],
            _enum(StopReason, d["stop_reason"]),
            d["error_code"],
            d["session_id"],
            d["oldest_index"],
            d["next_index"],
        )
    raise ValueError(f"unknown frame type {kind!r}")


def command_from_dict(d: dict[str, Any]) -> Command:
    args = {k: v for k, v in d.items() if k != "opcode"}
    classes = {
        "START": StartCommand,
        "STOP": StopCommand,
        "RESUME": ResumeCommand,
        "GET_INFO": GetInfoCommand,
        "SET_TIME": SetTimeCommand,
    }
    return classes[d["opcode"]](**args)


def reply_from_dict(d: dict[str, Any]) -> Reply:
    status = d["status"]
    if status != "OK":
        opcode = d["opcode"]
        return ErrorReply(
            Opcode[opcode] if isinstance(opcode, str) else opcode,
            d["token"],
            Status[status] if isinstance(status, str) else status,
        )
    args = {k: v for k, v in d.items() if k not in ("opcode", "status")}
    if "state" in args:
        args["state"] = _enum(State, args["state"])
    if "stop_reason" in args:
        args["stop_reason"] = _enum(StopReason, args["stop_reason"])
    classes = {
        "START": StartReply,
        "STOP": StopReply,
        "RESUME": ResumeReply,
        "GET_INFO": GetInfoReply,
        "SET_TIME": SetTimeReply,
    }
    return classes[d["opcode"]](**args)


def info_from_dict(d: dict[str, Any]) -> Info:
    args = dict(d)
    args["rates_hz"] = tuple(args["rates_hz"])
    args["acc_ranges"] = tuple(AccRange(int(g), float(c)) for g, c in args["acc_ranges"])
    args["gyro_ranges"] = tuple(GyroRange(int(r), float(c)) for r, c in args["gyro_ranges"])
    return Info(**args)


# -- device side: the reference model of the band's firmware ----------------------------
#: Coefficients of :func:`pattern_samples` (the conformance scripts' test signal).
_PATTERN_MUL = np.array([37, 101, 53, 7, 211, 139], dtype=np.int64)
_PATTERN_ADD = np.array([0, 7, 1000, 3, 5, 11], dtype=np.int64)


def pattern_samples(first_index: int, n: int, width: int = 3) -> np.ndarray:
    """The deterministic test signal of ``vectors/sessions.json``, shape ``(n, width)``.

    Value of axis ``a`` at sample index ``i``: ``(i * M[a] + A[a]) % 4001 - 2000``.
    """
    index = np.arange(first_index, first_index + n, dtype=np.int64)[:, None]
    values = (index * _PATTERN_MUL[:width] + _PATTERN_ADD[:width]) % 4001 - 2000
    return values.astype(np.int16)


class RingBuffer:
    """Fixed storage of ``capacity_values`` int16 values holding the newest samples.

    Sample ``i`` of a session lives in slot ``i % capacity``; samples older than
    ``next_index - capacity`` have been overwritten. Mirrors ``pmld_ring``.
    """

    def __init__(self, capacity_values: int):
        self._storage = np.zeros(capacity_values, dtype=np.int16)
        self.width = 3
        self.capacity = capacity_values // 3
        self.next_index = 0

    def reset(self, width: int) -> None:
        """Empty the buffer for samples of ``width`` int16 values (3 or 6)."""
        self.width = width
        self.capacity = len(self._storage) // width
        self.next_index = 0

    @property
    def _slots(self) -> np.ndarray:
        return self._storage[: self.capacity * self.width].reshape(self.capacity, self.width)

    @property
    def oldest_index(self) -> int:
        return max(0, self.next_index - self.capacity)

    @property
    def full(self) -> bool:
        return self.next_index - self.oldest_index == self.capacity

    def append(self, samples: np.ndarray) -> None:
        """Store samples ``next_index ..``, overwriting the oldest when full."""
        samples = np.asarray(samples, dtype=np.int16).reshape(-1, self.width)
        n = len(samples)
        keep = samples[-self.capacity :] if n > self.capacity else samples
        first = self.next_index + n - len(keep)
        slots = (first + np.arange(len(keep))) % self.capacity
        self._slots[slots] = keep
        self.next_index += n

    def read(self, first: int, n: int) -> np.ndarray:
        """Samples ``first .. first + n - 1`` (all must still be held)."""
        if first < self.oldest_index or first + n > self.next_index:
            raise IndexError(
                f"samples {first}..{first + n - 1} are not in the ring "
                f"({self.oldest_index}..{self.next_index - 1})"
            )
        slots = (first + np.arange(n)) % self.capacity
        return self._slots[slots].copy()


_KIND_STATUS = {
    "truncated": Status.INVALID_LENGTH,
    "length": Status.INVALID_LENGTH,
    "unknown_opcode": Status.UNKNOWN_OPCODE,
    "reserved": Status.INVALID_PARAMETER,
    "bad_value": Status.INVALID_PARAMETER,
}


class DeviceModel:
    """The band's firmware logic, byte-compatible with ``pmld_device`` (C reference).

    The caller supplies time (``now_us``: the band's monotonic clock in µs), samples
    (:meth:`acquire`), CONTROL writes (:meth:`handle_command`, which returns the reply to
    indicate) and asks for the next notification with :meth:`next_frame` whenever the
    link can take one. Nothing is sent before START or RESUME, nor after
    :meth:`disconnect`, until the next RESUME.
    """

    def __init__(self, info: Info, *, session_seed: int = 0):
        _check_info(info, ValueError)
        capacity_values = info.buffer_samples * 3
        gyro_capacity = capacity_values // 6 if info.has_gyro else 0
        if info.buffer_samples_gyro != gyro_capacity:
            raise ValueError(
                f"INFO says {info.buffer_samples_gyro} gyro samples; a ring of "
                f"{info.buffer_samples} acc samples holds {gyro_capacity}"
            )
        self.info = info
        self.ring = RingBuffer(capacity_values)
        self.session_seed = session_seed & 0xFFFFFFFF
        self.start_count = 0
        self.state = State.IDLE
        self.session_id = 0
        self.rate_hz = self.range_g = self.gyro_range_dps = 0
        self.stop_on_overflow = False
        self.cursor: int | None = None  # next index to send; None: not sending
        self.sent_until = 0  # every index below this was sent at least once
        self.seq = 0
        self.overflow = False
        self.stop_reason = StopReason.NONE
        self.error_code = 0
        self.battery_pct = BATTERY_UNKNOWN
        self.clock_offset_us = 0
        self.clock_set = False
        self.last_sample_us = 0  # monotonic time of the newest sample
        self.sync_pending = False
        self.status_pending = False
        self.next_sync_us = 0
        self.next_status_us = 0

    # -- time and state ----------------------------------------------------------------
    def device_time_us(self, mono_us: int) -> int:
        return (mono_us + self.clock_offset_us) % (1 << 64)

    @property
    def width(self) -> int:
        return 6 if self.gyro_range_dps else 3

    @property
    def next_index(self) -> int:
        return self.ring.next_index

    def _stop(self, reason: StopReason, error_code: int = 0) -> None:
        self.state = State.STOPPED
        self.stop_reason = reason
        self.error_code = error_code
        self.status_pending = True

    def disconnect(self) -> None:
        """The link dropped: stop sending (sampling goes on) until the next RESUME."""
        self.cursor = None

    def set_battery(self, pct: int) -> None:
        self.battery_pct = pct
        if self.state == State.STREAMING and pct != BATTERY_UNKNOWN and pct <= BATTERY_STOP_PCT:
            self._stop(StopReason.BATTERY_LOW)

    def fail(self, error_code: int) -> None:
        """A sensor or firmware fault: a streaming session stops with reason ERROR."""
        if self.state == State.STREAMING:
            self._stop(StopReason.ERROR, error_code & 0xFFFF)

    # -- acquisition -------------------------------------------------------------------
    def acquire(self, samples: np.ndarray, times_us: Sequence[int] | np.ndarray) -> int:
        """Store samples acquired at monotonic ``times_us``; return how many were kept.

        Outside STREAMING nothing is kept. A sample that would overwrite one the host has
        not been sent yet (at or after the send cursor; while disconnected, one never
        sent) stops the session with stop-on-overflow (BUFFER_OVERFLOW; it and the rest
        are dropped); otherwise it raises the overflow flag and overwrites the oldest.
        """
        if self.state != State.STREAMING:
            return 0
        samples = np.asarray(samples, dtype=np.int16).reshape(-1, self.width)
        n = len(samples)
        if n == 0:
            return 0
        # Sample k of the block overwrites index next + k - capacity: a loss for the host
        # when that index is at or after the send cursor (while sending) or was never
        # sent (while the link is down and the host's position is unknown).
        pending = self.cursor if self.cursor is not None else self.sent_until
        first_unsent_overwrite = max(0, pending + self.ring.capacity - self.next_index)
        # next_index must stay a u32: the last index a session can hold is 2^32 - 2
        room = INDEX_LIMIT - 1 - self.next_index
        kept = min(n, room)
        reason = StopReason.ERROR
        if first_unsent_overwrite < kept:
            if self.stop_on_overflow:
                kept = first_unsent_overwrite
                reason = StopReason.BUFFER_OVERFLOW
            elif not self.overflow:
                self.overflow = True
                self.status_pending = True
        if kept:
            self.ring.append(samples[:kept])
            self.last_sample_us = int(times_us[kept - 1])
        if kept < n:
            self._stop(reason, ERROR_INDEX_LIMIT if reason == StopReason.ERROR else 0)
        return kept

    # -- commands ----------------------------------------------------------------------
    def handle_command(self, value: bytes, now_us: int) -> bytes:
        """Execute a CONTROL write and return the reply to indicate (always one)."""
        data = bytes(value)
        opcode = data[0] if data else 0
        token = data[1] if len(data) > 1 else 0
        try:
            cmd = decode_command(data)
        except ProtocolError as exc:
            return encode_reply(ErrorReply(opcode, token, _KIND_STATUS[exc.kind]))
        reply = self._execute(cmd, now_us)
        return encode_reply(reply)

    def _execute(self, cmd: Command, now_us: int) -> Reply:
        if isinstance(cmd, StartCommand):
            return self._start(cmd, now_us)
        if isinstance(cmd, StopCommand):
            if self.state != State.STREAMING:
                return ErrorReply(Opcode.STOP, cmd.token, Status.NOT_STREAMING)
            self._stop(StopReason.USER)
            return StopReply(cmd.token, self.next_index)
        if isinstance(cmd, ResumeCommand):
            return self._resume(cmd)
        if isinstance(cmd, GetInfoCommand):
            if self.state == State.IDLE:
                return GetInfoReply(cmd.token, State.IDLE)
            return GetInfoReply(
                cmd.token,
                self.state,
                self.session_id,
                self.rate_hz,
                self.range_g,
                self.gyro_range_dps,
                self.stop_on_overflow,
                self.stop_reason,
                self.next_index,
            )
        assert isinstance(cmd, SetTimeCommand)
        if self.state == State.STREAMING:
            return ErrorReply(Opcode.SET_TIME, cmd.token, Status.BUSY)
        previous = self.device_time_us(now_us)
        was_set = self.clock_set
        self.clock_offset_us = cmd.utc_us - now_us
        self.clock_set = True
        return SetTimeReply(cmd.token, previous, was_set)

    def _start(self, cmd: StartCommand, now_us: int) -> Reply:
        info = self.info
        if self.state == State.STREAMING:
            return ErrorReply(Opcode.START, cmd.token, Status.BUSY)
        gyro_ok = not cmd.gyro or any(r.range_dps == cmd.gyro_range_dps for r in info.gyro_ranges)
        if (
            cmd.rate_hz not in info.rates_hz
            or all(r.range_g != cmd.range_g for r in info.acc_ranges)
            or not gyro_ok
            or (cmd.stop_on_overflow and not info.stop_on_overflow)
        ):
            return ErrorReply(Opcode.START, cmd.token, Status.UNSUPPORTED)
        if self.battery_pct != BATTERY_UNKNOWN and self.battery_pct <= BATTERY_STOP_PCT:
            return ErrorReply(Opcode.START, cmd.token, Status.BATTERY_LOW)
        self.start_count += 1
        self.session_id = (self.session_seed + self.start_count) & 0xFFFFFFFF or 1
        self.state = State.STREAMING
        self.rate_hz, self.range_g = cmd.rate_hz, cmd.range_g
        self.gyro_range_dps = cmd.gyro_range_dps
        self.stop_on_overflow = cmd.stop_on_overflow
        self.ring.reset(self.width)
        self.cursor = 0
        self.sent_until = 0
        self.seq = 0
        self.overflow = False
        self.stop_reason = StopReason.NONE
        self.error_code = 0
        self.sync_pending = True
        self.status_pending = False
        self.next_status_us = now_us + info.status_interval_s * 1_000_000
        return StartReply(cmd.token, self.session_id)

    def _resume(self, cmd: ResumeCommand) -> Reply:
        if self.state == State.IDLE:
            return ErrorReply(Opcode.RESUME, cmd.token, Status.NO_SESSION)
        if cmd.session_id != self.session_id:
            return ErrorReply(Opcode.RESUME, cmd.token, Status.SESSION_MISMATCH)
        if cmd.from_index > self.next_index:
            return ErrorReply(Opcode.RESUME, cmd.token, Status.INVALID_PARAMETER)
        first = max(cmd.from_index, self.ring.oldest_index)
        self.cursor = first
        self.status_pending = True
        self.sync_pending = self.state == State.STREAMING
        return ResumeReply(
            cmd.token,
            self.session_id,
            cmd.from_index,
            first,
            self.next_index,
            self.state == State.STREAMING,
        )

    # -- notifications -----------------------------------------------------------------
    def _status_frame(self) -> StatusFrame:
        return StatusFrame(
            self.seq,
            self.state == State.STREAMING,
            self.overflow,
            self.battery_pct,
            self.stop_reason,
            self.error_code,
            self.session_id,
            self.ring.oldest_index,
            self.next_index,
        )

    def next_frame(self, mtu: int, now_us: int, flush: bool = False) -> bytes | None:
        """The next notification to send at ATT MTU ``mtu``, or None.

        Order: a due STATUS (pending event, or ``status_interval_s`` elapsed), a due
        TIME_SYNC (first sample after START/RESUME, or ``time_sync_interval_s`` elapsed,
        while streaming), then a DATA frame: full (``samples_per_frame``), or partial when
        ``flush`` (the firmware's latency timer) or the session has stopped.
        """
        if self.cursor is None:
            return None
        spf = samples_per_frame(mtu, self.gyro_range_dps > 0)
        frame: Frame | None = None
        if self.status_pending or now_us >= self.next_status_us:
            frame = self._status_frame()
            self.status_pending = False
            self.next_status_us = now_us + self.info.status_interval_s * 1_000_000
        elif (
            self.state == State.STREAMING
            and self.next_index > 0
            and (self.sync_pending or now_us >= self.next_sync_us)
        ):
            frame = TimeSyncFrame(
                self.seq,
                self.next_index - 1,
                self.device_time_us(self.last_sample_us),
                min(max(now_us - self.last_sample_us, 0), 0xFFFFFFFF),
                self.clock_set,
            )
            self.sync_pending = False
            self.next_sync_us = now_us + self.info.time_sync_interval_s * 1_000_000
        else:
            # samples overwritten while waiting for the link are skipped (the host sees
            # the jump in first_index; STATUS says overflow)
            self.cursor = max(self.cursor, self.ring.oldest_index)
            n = min(self.next_index - self.cursor, spf)
            if n > 0 and (n == spf or flush or self.state == State.STOPPED):
                block = self.ring.read(self.cursor, n)
                frame = SampleFrame(
                    self.seq,
                    self.cursor,
                    block[:, :3],
                    block[:, 3:] if self.width == 6 else None,
                )
                self.cursor += n
                self.sent_until = max(self.sent_until, self.cursor)
        if frame is None:
            return None
        self.seq = (self.seq + 1) % SEQ_MODULUS
        return encode_frame(frame)
