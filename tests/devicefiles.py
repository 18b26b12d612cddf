"""Writers of Axivity .cwa, ActiGraph .gt3x and GENEActiv .bin files, for the tests.

Written from the manufacturers' public format descriptions (no code taken from any
reader):

- Axivity CWA: Open Movement, "AX3 Sensor - Technical Documentation"
  (``Docs/ax3/ax3-technical.md``): a 1024-byte ``MD`` header, then 512-byte ``AX``
  data blocks with a packed local timestamp, a sample-rate/range code, 80 unpacked
  (3 x int16) or 120 packed (10-bit + shared exponent) samples in 1/256 g, and a
  16-bit checksum that makes the word-wise sum of the block zero.
- ActiGraph GT3X: ActiGraph, "GT3X-File-Format" (``README.md``, ``info.txt.md``,
  ``LogRecords/Activity.md``, ``LogRecords/Parameters.md``): a ZIP archive with
  ``info.txt`` (key: value lines, times in .NET ticks) and ``log.bin`` (records: 0x1E,
  type, local Unix-time seconds, payload size, payload, 1's-complement XOR checksum);
  ACTIVITY records hold one second of 12-bit YXZ samples, the PARAMETERS record the
  sample rate and the accelerometer scale as an SSP float.
- GENEActiv BIN: Activinsights, "GENEActiv Instructions for Use" (section
  "Understanding .bin files"): a 59-line text header, then pages of 300 measurements,
  each a "Recorded Data" sub-header with its Page Time and one line of hex: 6 bytes per
  measurement = x, y, z (12 bits), light (10 bits), button (1 bit), reserved (1 bit);
  ``g = (value * 100 - offset) / gain``.

Every writer returns the acceleration exactly as the file stores it (after the format's
quantisation), so a test can check a reader sample by sample.

All device times here are local wall-clock times (naive ``datetime``), as the devices
store them.
"""

from __future__ import annotations

import io
import struct
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

_EPOCH = datetime(1970, 1, 1)
_DOTNET_EPOCH_S = 62_135_596_800  # seconds from 0001-01-01 to 1970-01-01


def _local_ns(when: datetime) -> int:
    """Naive local time as integer nanoseconds since 1970-01-01 (no zone applied)."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def sample_times_ns(
    start: datetime, n: int, fs_hz: float, gaps: dict[int, float] | None = None
) -> np.ndarray:
    """Local times (ns) of ``n`` samples at ``fs_hz`` from ``start``; ``gaps`` maps a
    sample index to seconds of missing time inserted just before it."""
    times = np.round(np.arange(n) * (1e9 / fs_hz)).astype(np.int64) + _local_ns(start)
    for index, seconds in sorted((gaps or {}).items()):
        times[index:] += int(round(seconds * 1e9))
    return times


def _segments(times_ns: np.ndarray, fs_hz: float) -> list[tuple[int, int]]:
    """(first, stop) index ranges of samples without a hole longer than 1.5 periods."""
    step = np.diff(times_ns)
    cut = np.flatnonzero(step > 1.5e9 / fs_hz) + 1
    bounds = np.concatenate([[0], cut, [times_ns.size]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# -- Axivity CWA -----------------------------------------------------------------------
CWA_RATE_CODES = {6.25: 6, 12.5: 7, 25.0: 8, 50.0: 9, 100.0: 10, 200.0: 11, 400.0: 12}
CWA_RANGE_BITS = {16: 0, 8: 1, 4: 2, 2: 3}


def cwa_timestamp(when: datetime) -> int:
    """Pack a local time: (MSB) YYYYYYMM MMDDDDDh hhhhmmmm mmssssss (LSB)."""
    return (
        ((when.year - 2000) & 0x3F) << 26
        | (when.month & 0x0F) << 22
        | (when.day & 0x1F) << 17
        | (when.hour & 0x1F) << 12
        | (when.minute & 0x3F) << 6
        | (when.second & 0x3F)
    )


def _cwa_timestamps(seconds: np.ndarray) -> np.ndarray:
    """:func:`cwa_timestamp` of many local times given as seconds since 1970."""
    moments = np.asarray(seconds, dtype="datetime64[s]")
    days = moments.astype("datetime64[D]")
    months = moments.astype("datetime64[M]")
    year = moments.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    of_day = (moments - days).astype(np.int64)
    return (
        ((year - 2000) & 0x3F) << 26
        | month << 22
        | day << 17
        | (of_day // 3600) << 12
        | (of_day // 60 % 60) << 6
        | of_day % 60
    ).astype(np.uint32)


def _cwa_quantise(acc_g: np.ndarray, packed: bool, range_g: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts in 1/256 g as stored (and, packed, the 10-bit values and exponents)."""
    counts = np.rint(np.asarray(acc_g, dtype=np.float64) * 256.0).astype(np.int64)
    counts = np.clip(counts, -range_g * 256, range_g * 256 - 1)
    if not packed:
        return counts, counts
    # Shared exponent: the smallest e for which every axis fits 10 signed bits
    # (x >> e in -512..511, i.e. max(x, -x - 1) < 512 << e).
    need = np.maximum(counts.max(axis=1), -counts.min(axis=1) - 1)
    exponent = (need >= 512).astype(np.int64) + (need >= 1024) + (need >= 2048)
    mantissa = np.clip(np.floor_divide(counts, 1 << exponent[:, None]), -512, 511)
    stored = mantissa << exponent[:, None]
    word = (
        (exponent.astype(np.uint32) << 30)
        | ((mantissa[:, 2] & 0x3FF).astype(np.uint32) << 20)
        | ((mantissa[:, 1] & 0x3FF).astype(np.uint32) << 10)
        | (mantissa[:, 0] & 0x3FF).astype(np.uint32)
    )
    return stored, word


def write_cwa(
    path: str | Path,
    acc_g: np.ndarray,
    start: datetime,
    *,
    fs_hz: float = 100.0,
    times_ns: np.ndarray | None = None,
    range_g: int = 8,
    packed: bool = True,
    fractional: bool = True,
    device_id: int = 43123,
    session_id: int = 7,
    firmware: int = 45,
    annotation: str = "_sc=7&_p=left+ankle",
) -> np.ndarray:
    """Write an AX3 .cwa file; return the stored acceleration in g.

    ``times_ns``: local time of every sample (default: uniform at ``fs_hz`` from
    ``start``); a block is closed early at a hole, so holes fall between blocks. With
    ``fractional`` the block time carries a 1/32768 s fraction (newer firmware); without
    it, the whole-second time is given at the sample nearest to a whole second.
    """
    acc_g = np.asarray(acc_g, dtype=np.float64)
    n = len(acc_g)
    if times_ns is None:
        times_ns = sample_times_ns(start, n, fs_hz)
    stored, payload = _cwa_quantise(acc_g, packed, range_g)
    per_block = 120 if packed else 80
    rate_byte = CWA_RATE_CODES[float(fs_hz)] | (CWA_RANGE_BITS[range_g] << 6)

    header = bytearray(b"\xff" * 1024)
    struct.pack_into("<2sHB", header, 0, b"MD", 1020, 0x00)
    struct.pack_into("<HIH", header, 5, device_id & 0xFFFF, session_id, device_id >> 16)
    first_local = _EPOCH + timedelta(microseconds=int(times_ns[0]) // 1000)
    last_local = _EPOCH + timedelta(microseconds=int(times_ns[-1]) // 1000)
    struct.pack_into(
        "<III", header, 13, cwa_timestamp(first_local), cwa_timestamp(last_local), 0
    )
    header[25:36] = bytes(11)
    header[36] = rate_byte
    struct.pack_into("<IBh", header, 37, cwa_timestamp(first_local), firmware, -1)
    text = annotation.encode()[:448]
    header[64:512] = text + b" " * (448 - len(text))

    starts_list, counts_list = [], []
    for first, stop in _segments(times_ns, fs_hz):
        block_starts = np.arange(first, stop, per_block)
        starts_list.append(block_starts)
        counts_list.append(np.minimum(per_block, stop - block_starts))
    starts = np.concatenate(starts_list)
    counts = np.concatenate(counts_list)
    n_blocks = starts.size
    t0 = times_ns[starts].astype(np.int64)
    if fractional:
        whole, rest = np.divmod(t0, 1_000_000_000)
        frac15 = np.rint(rest * (32768 / 1e9)).astype(np.int64)
        carry = frac15 == 32768
        whole[carry] += 1
        frac15[carry] = 0
        # The firmware moves the offset back by the whole samples in the fraction (a
        # reader that ignores the fraction is then close); a full reader adds them back.
        offset = -(((frac15 << 1) * int(fs_hz)) >> 16)
        device_word = 0x8000 | frac15
    else:
        # The whole-second time holds at the sample nearest to the next whole second.
        whole = -(-t0 // 1_000_000_000)
        offset = np.rint((whole * 1_000_000_000 - t0) * fs_hz / 1e9).astype(np.int64)
        device_word = np.full(n_blocks, device_id & 0x7FFF)
    block_head = np.zeros(
        n_blocks,
        dtype=np.dtype(
            {
                "names": ["magic", "length", "device", "session", "sequence", "time",
                          "light", "temperature", "events", "battery", "rate", "axes",
                          "offset", "count"],
                "formats": ["S2", "<u2", "<u2", "<u4", "<u4", "<u4", "<u2", "<u2", "u1",
                            "u1", "u1", "u1", "<i2", "<u2"],
                "offsets": [0, 2, 4, 6, 10, 14, 18, 20, 22, 23, 24, 25, 26, 28],
                "itemsize": 512,
            }
        ),
    )  # fmt: skip
    block_head["magic"] = b"AX"
    block_head["length"] = 508
    block_head["device"] = device_word
    block_head["session"] = session_id
    block_head["sequence"] = np.arange(n_blocks)
    block_head["time"] = _cwa_timestamps(whole)
    block_head["light"] = 300  # top 3 bits 0: AX3 accelerometer scale 1/256 g
    block_head["temperature"] = 512
    block_head["battery"] = 200
    block_head["rate"] = rate_byte
    block_head["axes"] = 0x30 if packed else 0x32
    block_head["offset"] = offset
    block_head["count"] = counts
    blocks = block_head.view(np.uint8).reshape(n_blocks, 512).copy()
    # Sample data: row b holds samples starts[b] .. starts[b] + counts[b].
    within = np.arange(per_block)
    take = np.minimum(starts[:, None] + within, len(payload) - 1)
    used = within < counts[:, None]
    if packed:
        data = np.where(used, payload[take], 0).astype("<u4")
        blocks[:, 30:510] = data.view(np.uint8).reshape(n_blocks, 480)
    else:
        data = np.where(used[:, :, None], payload[take], 0).astype("<i2")
        blocks[:, 30:510] = data.view(np.uint8).reshape(n_blocks, 480)
    words = blocks.view("<u2")
    words[:, 255] = (-words[:, :255].sum(axis=1, dtype=np.int64)) & 0xFFFF
    with open(path, "wb") as handle:
        handle.write(bytes(header))
        handle.write(blocks.tobytes())
    return stored / 256.0


# -- ActiGraph GT3X --------------------------------------------------------------------
def ssp_encode(value: float) -> int:
    """ActiGraph's SSP float: 24-bit two's-complement fraction (2^23 x mantissa in
    [0.5, 1)) and an 8-bit two's-complement exponent (Parameters.md)."""
    if abs(value) < 2.0**-23:
        return 0
    mantissa, exponent = np.frexp(abs(value))  # value = mantissa * 2**exponent
    code = int(mantissa * 2**23)
    if value < 0:
        code = -code
    return (code & 0xFFFFFF) | ((int(exponent) & 0xFF) << 24)


def _gt3x_record(record_type: int, timestamp: int, payload: bytes) -> bytes:
    head = struct.pack("<BBIH", 0x1E, record_type, timestamp & 0xFFFFFFFF, len(payload))
    check = int(np.bitwise_xor.reduce(np.frombuffer(head + payload, dtype=np.uint8)))
    return head + payload + bytes([~check & 0xFF])


def _pack_12bit(values: np.ndarray) -> bytes:
    """12-bit two's-complement values, most significant bit first."""
    values = np.asarray(values, dtype=np.int64) & 0xFFF
    if values.size % 2:
        values = np.append(values, 0)  # the last nibble is unused
    a, b = values[0::2], values[1::2]
    out = np.empty((a.size, 3), dtype=np.uint8)
    out[:, 0] = a >> 4
    out[:, 1] = ((a & 0xF) << 4) | (b >> 8)
    out[:, 2] = b & 0xFF
    return out.tobytes()


def dotnet_ticks(when: datetime) -> int:
    """.NET ticks (100 ns since 0001-01-01) of a naive local time."""
    return (_local_ns(when) // 100) + _DOTNET_EPOCH_S * 10_000_000


def write_gt3x(
    path: str | Path,
    acc_g: np.ndarray,
    start: datetime,
    *,
    fs_hz: int = 30,
    missing_seconds: tuple[int, ...] = (),
    lsb_per_g: float = 256.0,
    range_g: float = 8.0,
    serial: str = "MOS2E21234567",
    device_type: str = "wGT3XBT",
    firmware: str = "1.9.2",
    time_zone: str = "01:00:00",
    extra_info: dict[str, str] | None = None,
) -> np.ndarray:
    """Write a .gt3x file (one ACTIVITY record a second); return the stored acceleration.

    ``start`` must be on a whole second; ``acc_g`` must hold whole seconds of samples.
    ``missing_seconds`` lists record indices (seconds from ``start``, counting the
    missing ones) that the device did not write (e.g. idle sleep), giving gaps.
    """
    acc_g = np.asarray(acc_g, dtype=np.float64)
    if len(acc_g) % fs_hz or start.microsecond:
        raise ValueError("whole seconds of samples from a whole second, please")
    counts = np.clip(np.rint(acc_g * lsb_per_g), -2048, 2047).astype(np.int64)
    stored = counts / lsb_per_g
    first_second = int(_local_ns(start) // 1_000_000_000)

    log = io.BytesIO()
    log.write(_gt3x_record(0x06, first_second, b'{"MetadataType":"Bio","SubjectName":"t1"}'))
    parameters = b"".join(
        struct.pack("<HHI", space, ident, value)
        for space, ident, value in (
            (0, 55, ssp_encode(lsb_per_g)),  # ACCEL_SCALE
            (0, 13, 0x01090002),  # FIRMWARE_VERSION
            (1, 10, fs_hz),  # SAMPLE_RATE
            (1, 2, 0),  # FEATURE_ENABLE
        )
    )
    log.write(_gt3x_record(0x15, first_second, parameters))
    seconds = len(acc_g) // fs_hz
    second = 0
    for k in range(seconds):
        while second in missing_seconds:
            second += 1
        yxz = counts[k * fs_hz : (k + 1) * fs_hz][:, [1, 0, 2]]
        log.write(_gt3x_record(0x00, first_second + second, _pack_12bit(yxz.ravel())))
        if k % 60 == 0:
            log.write(_gt3x_record(0x02, first_second + second, struct.pack("<H", 4012)))
        second += 1
    last = start + timedelta(seconds=second)
    info = {
        "Serial Number": serial,
        "Device Type": device_type,
        "Firmware": firmware,
        "Battery Voltage": "4.01",
        "Sample Rate": str(fs_hz),
        "Start Date": str(dotnet_ticks(start)),
        "Stop Date": "0",
        "Last Sample Time": str(dotnet_ticks(last)),
        "TimeZone": time_zone,
        "Download Date": str(dotnet_ticks(last + timedelta(hours=2))),
        "Board Revision": "5",
        "Unexpected Resets": "0",
        "Acceleration Scale": f"{lsb_per_g:.1f}",
        "Acceleration Min": f"{-range_g:.1f}",
        "Acceleration Max": f"{range_g:.1f}",
        "Subject Name": "t1",
        **(extra_info or {}),
    }
    text = "".join(f"{key}: {value}\n" for key, value in info.items())
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("log.bin", log.getvalue())
        archive.writestr("info.txt", text)
    return stored


# -- GENEActiv BIN ---------------------------------------------------------------------
GENEACTIV_PAGE = 300
GENEACTIV_CALIBRATION = {
    "x gain": 25548, "x offset": -1120, "y gain": 25302, "y offset": 430,
    "z gain": 25010, "z offset": 980, "Volts": 300, "Lux": 800,
}  # fmt: skip


def _geneactiv_time(ns: int) -> str:
    when = _EPOCH + timedelta(microseconds=ns // 1000)
    return when.strftime("%Y-%m-%d %H:%M:%S:") + f"{when.microsecond // 1000:03d}"


def write_geneactiv(
    path: str | Path,
    acc_g: np.ndarray,
    start: datetime,
    *,
    fs_hz: float = 100.0,
    times_ns: np.ndarray | None = None,
    time_zone: str = "GMT +01:00",
    serial: str = "054321",
    calibration: dict[str, int] | None = None,
    newline: str = "\r\n",
) -> np.ndarray:
    """Write a GENEActiv .bin file; return the stored (calibrated) acceleration in g.

    Each page holds 300 measurements and its own Page Time (ms), the time of its first
    measurement; holes in ``times_ns`` must fall on page boundaries.
    """
    cal = {**GENEACTIV_CALIBRATION, **(calibration or {})}
    acc_g = np.asarray(acc_g, dtype=np.float64)
    n = len(acc_g)
    if times_ns is None:
        times_ns = sample_times_ns(start, n, fs_hz)
    gains = np.array([cal["x gain"], cal["y gain"], cal["z gain"]], dtype=np.float64)
    offsets = np.array([cal["x offset"], cal["y offset"], cal["z offset"]], dtype=np.float64)
    raw = np.clip(np.rint((acc_g * gains + offsets) / 100.0), -2048, 2047).astype(np.int64)
    stored = (raw * 100.0 - offsets) / gains
    light = (np.arange(n) % 1024).astype(np.int64)
    word = (
        ((raw[:, 0] & 0xFFF) << 36)
        | ((raw[:, 1] & 0xFFF) << 24)
        | ((raw[:, 2] & 0xFFF) << 12)
        | (light << 2)
    ).astype(">u8")
    sample_bytes = word.view(np.uint8).reshape(n, 8)[:, 2:]
    pages = -(-n // GENEACTIV_PAGE)

    header = [
        "Device Identity", f"Device Unique Serial Code:{serial}", "Device Type:GENEActiv",
        "Device Model:1.2", "Device Firmware Version:Ver06.17 15June23",
        "Calibration Date:2024-01-10 10:00:00:000", "",
        "Device Capabilities", "Accelerometer Range:-8 to 8",
        "Accelerometer Resolution:0.0039", "Accelerometer Units:g",
        "Light Meter Range:0 to 20000", "Light Meter Resolution:3 to 48",
        "Light Meter Units:lux", "Temperature Sensor Range:0 to 70",
        "Temperature Sensor Resolution:0.1", "Temperature Sensor Units:deg. C", "",
        "Configuration Info", f"Measurement Frequency:{fs_hz:g} Hz",
        "Measurement Period:168 Hours", f"Start Time:{_geneactiv_time(int(times_ns[0]))}",
        f"Time Zone:{time_zone}", "",
        "Trial Info", "Study Centre:pmld", "Study Code:t", "Investigator ID:",
        "Exercise Type:", "Config Operator ID:", "Config Time:2024-01-10 09:00:00:000",
        "Config Notes:", "Extract Operator ID:", "Extract Time:2024-01-20 09:00:00:000",
        "Extract Notes:", "",
        "Subject Info", "Device Location Code:left ankle", "Subject Code:t1",
        "Date of Birth:1960-01-01", "Sex:female", "Height:", "Weight:",
        "Handedness Code:", "Subject Notes:", "",
        "Calibration Data", *(f"{key}:{value}" for key, value in cal.items()), "",
        "Memory Status", f"Number of Pages:{pages}", "",
    ]  # fmt: skip
    assert len(header) == 59, len(header)
    lines = list(header)
    for page in range(pages):
        first = page * GENEACTIV_PAGE
        stop = min(n, first + GENEACTIV_PAGE)
        lines += [
            "Recorded Data",
            f"Device Unique Serial Code:{serial}",
            f"Sequence Number:{page}",
            f"Page Time:{_geneactiv_time(int(times_ns[first]))}",
            "Unassigned:",
            "Temperature:26.5",
            "Battery voltage:4.0500",
            "Device Status:Recording",
            f"Measurement Frequency:{fs_hz:.1f}",
            sample_bytes[first:stop].tobytes().hex().upper(),
        ]
    with open(path, "w", newline="") as handle:
        handle.write(newline.join(lines) + newline)
    return stored


# -- test signals ----------------------------------------------------------------------
def ankle_signal(n: int, fs_hz: float, seed: int = 0) -> np.ndarray:
    """A lying ankle (gravity mostly on z) with slow sway, noise and a few leg movements,
    in g: enough structure that a misplaced or reordered sample shows."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs_hz
    acc = np.empty((n, 3))
    acc[:, 0] = 0.15 + 0.05 * np.sin(2 * np.pi * t / 600.0)
    acc[:, 1] = -0.25 + 0.03 * np.cos(2 * np.pi * t / 900.0)
    acc[:, 2] = 0.95
    acc += rng.normal(0, 0.01, size=(n, 3))
    for onset in rng.uniform(0, t[-1], size=max(1, n // int(30 * fs_hz))):
        k = int(onset * fs_hz)
        width = int(1.5 * fs_hz)
        acc[k : k + width] += rng.normal(0, 0.4, size=(len(acc[k : k + width]), 3))
    return acc


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)
