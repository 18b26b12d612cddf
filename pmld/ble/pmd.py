"""Polar Measurement Data (PMD): the GATT protocol of Polar's H10 and Verity Sense.

Written from Polar's public BLE SDK documentation (``polarofficial/polar-ble-sdk``,
"PMD specification for 3rd party") and checked in the tests against an independent
decoder (``polar-python``). Only what pmld needs is here: the accelerometer (ACC).

Service ``FB005C80-02E7-F387-1CAD-8ACD2D8DF0C8``:

* control point ``...5C81`` (read, write, indicate). Reading it gives the features,
  ``0F <bitmask>`` (bit 2: ACC). Commands are ``op type [settings]``: 01 GET the
  settings a measurement offers, 02 START it with chosen settings, 03 STOP it. The
  answer is indicated: ``F0 op type status more [settings]``. An indication starting
  with ``01`` instead says that the device stopped measurements on its own (the types
  follow).
* data ``...5C82`` (notify). A frame is ``type u8, timestamp u64 (ns since
  2000-01-01 of the LAST sample in the frame), frame type u8`` then samples. Raw ACC
  frame types 0, 1, 2 hold int8, int16 or int24 x/y/z in milli-g. With bit 7 set the
  frame is delta-compressed: one reference sample of 16-bit channels, then blocks of
  ``[bit width u8, count u8]`` followed by ``count`` samples of signed deltas of that
  width, packed least significant bit first. Compressed type 0 is in g times FACTOR,
  compressed type 1 in milli-g times FACTOR (FACTOR is the float32 setting 5 of the
  START answer; 1.0 when absent).

Settings are ``[setting type, count, values...]``: 0 sample rate (u16 Hz), 1 resolution
(u16 bits), 2 range (u16 g), 3 range in milli-units (u32), 4 channels (u8), 5 factor
(float32), 6 security (16 bytes).

Decoding never raises for a bad frame in a batch (:func:`decode_acc_frames`): a frame
that is truncated, of an unknown frame type, with a delta bit width outside 1..16, or of
another measurement type is listed with a :class:`PmdError` so that the recorder counts
it and goes on. The batch decoder is vectorised (headers are walked in Python, every
bit of every block is unpacked by NumPy in one go): several million samples a second.

The encoder (:func:`encode_acc_frame`) is the device side, for the virtual Polar band
and for tests.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import accumulate

import numpy as np

from ..errors import InputError

__all__ = [
    "CONTROL_POINT_UUID",
    "DATA_UUID",
    "EPOCH_2000_NS",
    "SERVICE_UUID",
    "AccBatch",
    "ControlResponse",
    "CpStatus",
    "Features",
    "FrameType",
    "MeasurementStopped",
    "MeasurementType",
    "Op",
    "PmdError",
    "SettingType",
    "decode_acc_frame",
    "decode_acc_frames",
    "decode_control",
    "decode_settings",
    "encode_acc_frame",
    "encode_features",
    "encode_get_settings",
    "encode_response",
    "encode_settings",
    "encode_start",
    "encode_stop",
    "fill_acc_frame",
    "frame_unit_mg",
]

SERVICE_UUID = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
CONTROL_POINT_UUID = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
DATA_UUID = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"

#: 2000-01-01T00:00:00Z in ns since the Unix epoch (the PMD timestamps' epoch).
EPOCH_2000_NS = 946_684_800 * 1_000_000_000

HEADER = struct.Struct("<BQB")  # measurement type, timestamp, frame type
HEADER_SIZE = HEADER.size  # 10
FEATURES_TAG = 0x0F
RESPONSE_TAG = 0xF0
STOPPED_TAG = 0x01
COMPRESSED = 0x80
MAX_BIT_WIDTH = 16  # the ACC resolution: a wider delta cannot be a 16-bit signal's
_BIT_WEIGHTS = [np.int64(1) << np.arange(b, dtype=np.int64) for b in range(MAX_BIT_WIDTH + 1)]
_FEW = 8  # up to this many blocks or frames are decoded one by one (less overhead)


class MeasurementType(IntEnum):
    ECG = 0
    PPG = 1
    ACC = 2
    PPI = 3
    GYRO = 5
    MAG = 6
    SDK_MODE = 9


class Op(IntEnum):
    GET_SETTINGS = 1
    START = 2
    STOP = 3


class SettingType(IntEnum):
    SAMPLE_RATE = 0
    RESOLUTION = 1
    RANGE = 2
    RANGE_MILLIUNIT = 3
    CHANNELS = 4
    FACTOR = 5
    SECURITY = 6


_SETTING_FORMAT = {
    SettingType.SAMPLE_RATE: "<H",
    SettingType.RESOLUTION: "<H",
    SettingType.RANGE: "<H",
    SettingType.RANGE_MILLIUNIT: "<I",
    SettingType.CHANNELS: "<B",
    SettingType.FACTOR: "<f",
    SettingType.SECURITY: "16s",
}


class CpStatus(IntEnum):
    SUCCESS = 0
    INVALID_OP_CODE = 1
    INVALID_MEASUREMENT_TYPE = 2
    NOT_SUPPORTED = 3
    INVALID_LENGTH = 4
    INVALID_PARAMETER = 5
    ALREADY_IN_STATE = 6
    INVALID_RESOLUTION = 7
    INVALID_SAMPLE_RATE = 8
    INVALID_RANGE = 9
    INVALID_MTU = 10
    INVALID_NUMBER_OF_CHANNELS = 11
    INVALID_STATE = 12
    DEVICE_IN_CHARGER = 13


_STATUS_TEXT = {
    CpStatus.INVALID_OP_CODE: "the device does not know this command",
    CpStatus.INVALID_MEASUREMENT_TYPE: "the device has no such measurement",
    CpStatus.NOT_SUPPORTED: "not supported by this device",
    CpStatus.INVALID_LENGTH: "the command had the wrong length",
    CpStatus.INVALID_PARAMETER: "a setting was refused",
    CpStatus.ALREADY_IN_STATE: "the measurement is already in that state",
    CpStatus.INVALID_RESOLUTION: "resolution refused",
    CpStatus.INVALID_SAMPLE_RATE: "sample rate refused",
    CpStatus.INVALID_RANGE: "range refused",
    CpStatus.INVALID_MTU: "the link's MTU is too small (PMD needs more than 23)",
    CpStatus.INVALID_NUMBER_OF_CHANNELS: "number of channels refused",
    CpStatus.INVALID_STATE: "the device is in a state that refuses it",
    CpStatus.DEVICE_IN_CHARGER: "the device is in its charger",
}


class FrameType(IntEnum):
    """ACC frame types (the byte after the timestamp)."""

    RAW_INT8 = 0x00
    RAW_INT16 = 0x01
    RAW_INT24 = 0x02
    DELTA_G = 0x80  # compressed type 0: g x factor
    DELTA_MG = 0x81  # compressed type 1: milli-g x factor


_RAW_WIDTH = {FrameType.RAW_INT8: 1, FrameType.RAW_INT16: 2, FrameType.RAW_INT24: 3}
ERROR_KINDS = (
    "truncated",
    "unknown_frame_type",
    "bad_bit_width",
    "not_acc",
    "bad_response",
)


# plain ints for the decoder's per-frame loop (an IntEnum lookup costs more)
_ACC = int(MeasurementType.ACC)
_DELTA_G = int(FrameType.DELTA_G)
_DELTA_MG = int(FrameType.DELTA_MG)
_DELTA_TYPES = (_DELTA_G, _DELTA_MG)


class PmdError(InputError):
    """Bytes from a Polar device that do not follow PMD; ``kind`` in :data:`ERROR_KINDS`."""

    def __init__(self, kind: str, message: str):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown PMD error kind {kind!r}")
        self.kind = kind
        super().__init__(message)


def frame_unit_mg(frame_type: int, factor: float = 1.0) -> float:
    """Milli-g per integer unit of an ACC frame type (FACTOR from the START answer)."""
    if frame_type in _RAW_WIDTH:
        return 1.0
    if frame_type == FrameType.DELTA_G:
        return 1000.0 * factor
    if frame_type == FrameType.DELTA_MG:
        return float(factor)
    raise PmdError("unknown_frame_type", f"ACC frame type 0x{frame_type:02x} is not known")


# --------------------------------------------------------------------------------------
# Control point
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Features:
    """The control point's read value: the measurements the device offers."""

    types: frozenset[int]

    @property
    def acc(self) -> bool:
        return MeasurementType.ACC in self.types


@dataclass(frozen=True)
class ControlResponse:
    """``F0 op type status more [settings]``."""

    op: int
    measurement: int
    status: int
    more: bool = False
    settings: dict[int, list] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == CpStatus.SUCCESS

    @property
    def factor(self) -> float:
        values = self.settings.get(SettingType.FACTOR)
        return float(values[0]) if values else 1.0

    def status_text(self) -> str:
        try:
            status = CpStatus(self.status)
        except ValueError:
            return f"status {self.status} (unknown)"
        text = _STATUS_TEXT.get(status, status.name.lower())
        return f"status {self.status} {status.name}: {text}"

    def describe(self) -> str:
        try:
            op = Op(self.op).name
        except ValueError:
            op = f"op {self.op}"
        return f"{op} of measurement {self.measurement}: {self.status_text()}"


@dataclass(frozen=True)
class MeasurementStopped:
    """The device stopped these measurements on its own (``01 types...``)."""

    types: tuple[int, ...]


def encode_features(types: Iterable[int]) -> bytes:
    mask = 0
    for t in types:
        mask |= 1 << int(t)
    return bytes([FEATURES_TAG]) + mask.to_bytes(max(1, (mask.bit_length() + 7) // 8), "little")


def encode_settings(settings: Mapping[int, Sequence]) -> bytes:
    """``{setting type: [values]}`` -> ``[type, count, values...]...``"""
    out = bytearray()
    for kind, values in settings.items():
        fmt = _SETTING_FORMAT[SettingType(kind)]
        values = list(values)
        out += bytes([int(kind), len(values)])
        for value in values:
            out += struct.pack(fmt, value)
    return bytes(out)


def decode_settings(data: bytes) -> dict[int, list]:
    """The settings list of a GET or START answer (or of a START command)."""
    out: dict[int, list] = {}
    pos = 0
    data = bytes(data)
    while pos < len(data):
        if pos + 2 > len(data):
            raise PmdError("bad_response", f"settings cut off at byte {pos}")
        kind, count = data[pos], data[pos + 1]
        pos += 2
        try:
            fmt = _SETTING_FORMAT[SettingType(kind)]
        except ValueError:
            raise PmdError("bad_response", f"unknown setting type {kind}") from None
        size = struct.calcsize(fmt)
        if pos + size * count > len(data):
            raise PmdError("bad_response", f"setting {kind} cut off ({count} values)")
        values = [struct.unpack_from(fmt, data, pos + i * size)[0] for i in range(count)]
        out.setdefault(kind, []).extend(values)
        pos += size * count
    return out


def encode_get_settings(measurement: int = MeasurementType.ACC) -> bytes:
    return bytes([Op.GET_SETTINGS, int(measurement)])


def encode_start(
    measurement: int = MeasurementType.ACC,
    *,
    rate_hz: int,
    resolution: int = 16,
    range_g: int | None = None,
    channels: int = 3,
) -> bytes:
    settings: dict[int, list] = {
        SettingType.SAMPLE_RATE: [int(rate_hz)],
        SettingType.RESOLUTION: [int(resolution)],
    }
    if range_g is not None:
        settings[SettingType.RANGE] = [int(range_g)]
    settings[SettingType.CHANNELS] = [int(channels)]
    return bytes([Op.START, int(measurement)]) + encode_settings(settings)


def encode_stop(measurement: int = MeasurementType.ACC) -> bytes:
    return bytes([Op.STOP, int(measurement)])


def encode_response(
    op: int, measurement: int, status: int, settings: Mapping[int, Sequence] | None = None
) -> bytes:
    """A control point answer (device side)."""
    body = encode_settings(settings) if settings else b""
    return bytes([RESPONSE_TAG, int(op), int(measurement), int(status), 0]) + body


def decode_control(value: bytes) -> Features | ControlResponse | MeasurementStopped:
    """A control point value: its read value, an answer, or a device-initiated stop."""
    value = bytes(value)
    if not value:
        raise PmdError("bad_response", "empty control point value")
    tag = value[0]
    if tag == FEATURES_TAG:
        if len(value) < 2:
            raise PmdError("bad_response", "features value without a bitmask")
        mask = int.from_bytes(value[1:], "little")
        return Features(frozenset(i for i in range(mask.bit_length()) if mask >> i & 1))
    if tag == STOPPED_TAG:
        return MeasurementStopped(tuple(value[1:]))
    if tag != RESPONSE_TAG:
        raise PmdError("bad_response", f"control point value starts with 0x{tag:02x}")
    if len(value) < 4:
        raise PmdError("bad_response", f"control point answer of {len(value)} bytes is too short")
    op, measurement, status = value[1], value[2], value[3]
    more = len(value) > 4 and value[4] != 0
    settings = decode_settings(value[5:]) if len(value) > 5 and status == 0 else {}
    return ControlResponse(op, measurement, status, more, settings)


# --------------------------------------------------------------------------------------
# Data frames: decoding
# --------------------------------------------------------------------------------------
@dataclass(eq=False)
class AccBatch:
    """ACC frames decoded together.

    ``values`` holds every sample of every good frame, in frame order, as int32 in the
    frame's unit (``unit_mg`` per frame); frame ``k`` is rows ``offsets[k]:offsets[k+1]``.
    ``timestamp_ns`` is the device time (ns since 2000-01-01) of each frame's last
    sample. ``errors`` lists ``(position, PmdError)`` of the frames dropped.
    """

    position: np.ndarray  # index of each good frame in the input list
    timestamp_ns: np.ndarray  # int64
    frame_type: np.ndarray  # uint8
    unit_mg: np.ndarray  # float64
    offsets: np.ndarray  # int64, n_frames + 1
    values: np.ndarray  # (n, 3) int32
    errors: list[tuple[int, PmdError]] = field(default_factory=list)

    @property
    def count(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_samples(self) -> int:
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return len(self.position)


def decode_acc_frame(value: bytes, factor: float = 1.0) -> tuple[int, np.ndarray, float]:
    """One ACC frame -> ``(timestamp_ns, values (n, 3) int32, unit_mg)``; raises PmdError."""
    batch = decode_acc_frames([value], factor)
    if batch.errors:
        raise batch.errors[0][1]
    return int(batch.timestamp_ns[0]), batch.values, float(batch.unit_mg[0])


def decode_acc_frames(values: Sequence[bytes], factor: float = 1.0) -> AccBatch:
    """Decode ACC notifications in one go (never raises for a bad frame)."""
    n_in = len(values)
    data = b"".join(bytes(v) if not isinstance(v, bytes) else v for v in values)
    starts = [0, *accumulate(len(v) for v in values)]
    errors: list[tuple[int, PmdError]] = []
    position: list[int] = []
    stamps: list[int] = []
    ftypes: list[int] = []
    counts: list[int] = []
    # raw frames: (output row, byte start, n samples, width); compressed: the reference
    # (output row, byte start) and blocks (output row of first delta, bit start, width,
    # n samples)
    raw_parts: list[tuple[int, int, int, int]] = []
    refs: list[tuple[int, int]] = []
    comp_frames: list[tuple[int, int]] = []  # (first row, n samples)
    blocks: list[tuple[int, int, int, int]] = []
    row = 0
    unpack = HEADER.unpack_from
    for k in range(n_in):
        base, end = starts[k], starts[k + 1]
        size = end - base
        if size < HEADER_SIZE:
            errors.append((k, PmdError("truncated", f"frame of {size} bytes, header needs 10")))
            continue
        mtype, stamp, ftype = unpack(data, base)
        if mtype != _ACC:
            errors.append((k, PmdError("not_acc", f"a frame of measurement type {mtype}")))
            continue
        payload = base + HEADER_SIZE
        width = _RAW_WIDTH.get(ftype)
        if width is not None:
            step = 3 * width
            body = end - payload
            if body % step:
                errors.append(
                    (k, PmdError("truncated", f"raw frame body of {body} bytes is not "
                                 f"whole samples of {step} bytes"))
                )
                continue
            n = body // step
            raw_parts.append((row, payload, n, width))
        elif ftype in _DELTA_TYPES:
            if payload + 6 > end:
                errors.append((k, PmdError("truncated", "compressed frame without its reference")))
                continue
            pos = payload + 6
            n = 1
            frame_blocks = []
            error = None
            while pos < end:
                if pos + 2 > end:
                    error = PmdError("truncated", f"block header cut off at byte {pos - base}")
                    break
                bits, cnt = data[pos], data[pos + 1]
                if not 1 <= bits <= MAX_BIT_WIDTH:
                    error = PmdError(
                        "bad_bit_width",
                        f"delta bit width {bits} at byte {pos - base} (1..{MAX_BIT_WIDTH} allowed)",
                    )
                    break
                nbytes = (bits * cnt * 3 + 7) // 8
                if pos + 2 + nbytes > end:
                    error = PmdError(
                        "truncated",
                        f"block of {cnt} samples x {bits} bits needs {nbytes} bytes, "
                        f"{end - pos - 2} left",
                    )
                    break
                if cnt:
                    frame_blocks.append((row + n, (pos + 2) * 8, bits, cnt))
                    n += cnt
                pos += 2 + nbytes
            if error is not None:
                errors.append((k, error))
                continue
            refs.append((row, payload))
            comp_frames.append((row, n))
            blocks.extend(frame_blocks)
        else:
            errors.append(
                (k, PmdError("unknown_frame_type", f"ACC frame type 0x{ftype:02x} is not known"))
            )
            continue
        position.append(k)
        stamps.append(stamp)
        ftypes.append(ftype)
        counts.append(n)
        row += n
    out = np.zeros((row, 3), np.int64)
    buf = np.frombuffer(data, np.uint8)
    for r0, b0, n, width in raw_parts:
        if width == 2:
            out[r0 : r0 + n] = np.frombuffer(data, "<i2", 3 * n, b0).reshape(n, 3)
        elif width == 1:
            out[r0 : r0 + n] = np.frombuffer(data, np.int8, 3 * n, b0).reshape(n, 3)
        else:
            b = buf[b0 : b0 + 9 * n].reshape(n, 3, 3).astype(np.int64)
            v = b[..., 0] | b[..., 1] << 8 | b[..., 2] << 16
            out[r0 : r0 + n] = v - ((v & 0x800000) << 1)
    if refs:
        ref = np.asarray(refs, np.int64)
        idx = ref[:, 1][:, None] + np.arange(6)
        ref_bytes = buf[idx].astype(np.int64)
        ref_val = ref_bytes[:, 0::2] | ref_bytes[:, 1::2] << 8
        out[ref[:, 0]] = ref_val - ((ref_val & 0x8000) << 1)
    if len(blocks) > _FEW:
        _unpack_deltas(buf, np.asarray(blocks, np.int64), out)
    else:  # a notification or two, as a live recorder sees them: block by block
        for r0, bit0, bits, cnt in blocks:
            out[r0 : r0 + cnt] = _block_deltas(buf, bit0 // 8, bits, cnt)
    # each compressed frame: reference + cumulative deltas
    if len(refs) > _FEW:
        lens = np.asarray([n for _, n in comp_frames], np.int64)
        starts_c = np.asarray([r for r, _ in comp_frames], np.int64)
        for_rows = np.repeat(starts_c, lens) + _ramp(lens)
        cs = np.cumsum(out[for_rows], axis=0)
        first = np.cumsum(lens) - lens
        before = np.where(first[:, None] > 0, cs[np.maximum(first - 1, 0)], 0)
        out[for_rows] = cs - np.repeat(before, lens, axis=0)
    else:
        for r0, n in comp_frames:
            np.cumsum(out[r0 : r0 + n], axis=0, out=out[r0 : r0 + n])
    offsets = np.array([0, *accumulate(counts)], np.int64)
    ftype_arr = np.asarray(ftypes, np.uint8)
    units = {_DELTA_G: 1000.0 * factor, _DELTA_MG: float(factor)}
    unit = np.array([units.get(t, 1.0) for t in ftypes], np.float64)
    return AccBatch(
        position=np.asarray(position, np.int64),
        timestamp_ns=np.asarray(stamps, np.uint64).astype(np.int64),
        frame_type=ftype_arr,
        unit_mg=unit,
        offsets=offsets,
        values=out.astype(np.int32),
        errors=errors,
    )


def _ramp(lengths: np.ndarray) -> np.ndarray:
    """0..n-1 for each n in ``lengths``, concatenated."""
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _block_deltas(buf: np.ndarray, byte0: int, bits: int, cnt: int) -> np.ndarray:
    """One block's ``cnt`` x 3 signed deltas of ``bits`` bits, from byte ``byte0``."""
    nvals = 3 * cnt
    raw = np.unpackbits(buf[byte0 : byte0 + (nvals * bits + 7) // 8], bitorder="little")
    v = raw[: nvals * bits].reshape(nvals, bits) @ _BIT_WEIGHTS[bits]
    v -= (v >> (bits - 1) & 1) << bits
    return v.reshape(cnt, 3)


def _unpack_deltas(buf: np.ndarray, blocks: np.ndarray, out: np.ndarray) -> None:
    """Write every block's deltas into ``out`` (rows from each block's first row)."""
    for bits in np.unique(blocks[:, 2]):
        group = blocks[blocks[:, 2] == bits]
        nvals = group[:, 3] * 3
        first_bit = group[:, 1]
        lo = int(first_bit.min()) // 8
        hi = int((first_bit + nvals * bits).max() + 7) // 8
        allbits = np.unpackbits(buf[lo:hi], bitorder="little")
        value_start = np.repeat(first_bit - lo * 8, nvals) + _ramp(nvals) * int(bits)
        gathered = allbits[value_start[:, None] + np.arange(int(bits))]
        v = gathered.astype(np.int64) @ (np.int64(1) << np.arange(int(bits), dtype=np.int64))
        v -= (v >> (int(bits) - 1) & 1) << int(bits)
        flat_row = np.repeat(group[:, 0] * 3, nvals) + _ramp(nvals)
        out.reshape(-1)[flat_row] = v


# --------------------------------------------------------------------------------------
# Data frames: encoding (device side)
# --------------------------------------------------------------------------------------
def _bit_width(deltas: np.ndarray) -> int:
    """Smallest signed width (>= 2, as Polar's own decoders need) holding every delta."""
    if deltas.size == 0:
        return 2
    # (int.bit_length of a negative number is its magnitude's: keep hi >= 0, lo <= -1)
    hi = max(int(deltas.max()), 0)
    lo = min(int(deltas.min()), -1)
    need = max(hi.bit_length(), (-lo - 1).bit_length()) + 1
    return max(2, need)


def _pack(values: np.ndarray, bits: int) -> bytes:
    v = values.astype(np.int64).reshape(-1) & ((1 << bits) - 1)
    bitmat = (v[:, None] >> np.arange(bits)) & 1
    return np.packbits(bitmat.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def encode_acc_frame(
    samples: np.ndarray,
    timestamp_ns: int,
    frame_type: int = FrameType.RAW_INT16,
    *,
    block_samples: int = 255,
) -> bytes:
    """One ACC frame of ``samples`` ((n, 3) integers in the frame type's unit).

    ``timestamp_ns`` is the device time of the last sample (ns since 2000-01-01). A
    compressed frame takes ``samples[0]`` as its 16-bit reference and splits the deltas
    into blocks of at most ``block_samples`` (<= 255), each at its own bit width.
    """
    samples = np.asarray(samples, np.int64).reshape(-1, 3)
    head = HEADER.pack(MeasurementType.ACC, int(timestamp_ns), int(frame_type))
    width = _RAW_WIDTH.get(int(frame_type))
    if width is not None:
        lim = 1 << (8 * width - 1)
        if samples.size and (samples.min() < -lim or samples.max() >= lim):
            raise ValueError(f"samples do not fit int{8 * width}")
        if width == 1:
            return head + samples.astype(np.int8).tobytes()
        if width == 2:
            return head + samples.astype("<i2").tobytes()
        v = samples.reshape(-1) & 0xFFFFFF
        b = np.stack([v & 0xFF, v >> 8 & 0xFF, v >> 16], axis=1).astype(np.uint8)
        return head + b.tobytes()
    if int(frame_type) not in (FrameType.DELTA_G, FrameType.DELTA_MG):
        raise ValueError(f"unknown ACC frame type {frame_type}")
    if len(samples) == 0:
        raise ValueError("a compressed frame needs at least its reference sample")
    if samples.min() < -32768 or samples.max() > 32767:
        raise ValueError("samples do not fit the 16-bit reference")
    if not 1 <= block_samples <= 255:
        raise ValueError("block_samples must be 1..255")
    out = bytearray(head)
    out += samples[0].astype("<i2").tobytes()
    deltas = np.diff(samples, axis=0)
    for i in range(0, len(deltas), block_samples):
        block = deltas[i : i + block_samples]
        bits = _bit_width(block)
        if bits > MAX_BIT_WIDTH:
            raise ValueError(
                f"a delta in samples {i + 1}..{i + len(block)} needs {bits} bits (PMD allows "
                f"{MAX_BIT_WIDTH}): start a new frame there (fill_acc_frame does)"
            )
        out += bytes([bits, len(block)]) + _pack(block, bits)
    return bytes(out)


def fill_acc_frame(
    samples: np.ndarray, frame_type: int, budget: int, *, block_samples: int = 255
) -> int:
    """How many of ``samples`` (from the first) fit a frame of at most ``budget`` bytes.

    Raw frames hold a fixed number; a compressed frame as many as its deltas' widths
    allow (one block per ``block_samples``, each at the width its deltas need), and
    stops before a sample whose delta from the previous one needs more than 16 bits (a
    jump of more than 32767 units, which only a new frame's reference can carry).
    """
    samples = np.asarray(samples, np.int64).reshape(-1, 3)
    n_have = len(samples)
    width = _RAW_WIDTH.get(int(frame_type))
    if width is not None:
        return max(0, min(n_have, (budget - HEADER_SIZE) // (3 * width)))
    room = budget - HEADER_SIZE - 6
    if room < 0 or n_have == 0:
        return 0
    deltas = np.diff(samples, axis=0)
    if not len(deltas):
        return 1
    mag = np.maximum(deltas, -deltas - 1).max(axis=1)  # per sample, what sets the width
    need = np.where(mag > 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int64) + 2, 2)
    need = np.maximum(need, 2)
    too_wide = np.flatnonzero(need > MAX_BIT_WIDTH)
    if len(too_wide):
        need = need[: too_wide[0]]
    taken = 0
    while taken < len(need) and room >= 2:
        block = need[taken : taken + block_samples]
        running = np.maximum.accumulate(block)
        cost = (running * 3 * np.arange(1, len(block) + 1) + 7) // 8
        fits = np.flatnonzero(cost <= room - 2)
        if not len(fits):
            break
        k = int(fits[-1]) + 1
        room -= 2 + int(cost[k - 1])
        taken += k
        if k < len(block):
            break
    return 1 + taken


def max_frame_samples(mtu: int, frame_type: int) -> int:
    """Samples of a raw frame that fit one notification at this ATT MTU."""
    width = _RAW_WIDTH.get(int(frame_type), 2)
    return max(0, (mtu - 3 - HEADER_SIZE) // (3 * width))
