"""Regenerate the pmld BLE protocol test vectors (the JSON files beside this script).

Run from the repository root::

    .venv/bin/python firmware_protocol/vectors/generate.py          # rewrite the files
    .venv/bin/python firmware_protocol/vectors/generate.py --check  # fail if they differ

Valid vectors are encoded with :mod:`pmld.ble.protocol`; the C reference encodes their
``decoded`` meaning independently and must give the same bytes. Invalid vectors are
valid bytes mutated by hand here; the script checks that the Python decoder rejects
each with its stated ``error`` kind. Sessions are scripts run on
:class:`~pmld.ble.protocol.DeviceModel`; the C ``pmld_device`` must reproduce every
reply and notification.
"""

from __future__ import annotations

import argparse
import functools
import json
import struct
import sys
from pathlib import Path

import numpy as np

from pmld.ble import protocol as p

HERE = Path(__file__).resolve().parent
UTC_2026_03_01_2230 = 1_772_404_200_000_000  # 2026-03-01T22:30:00Z in µs


def f32(value: float) -> float:
    return float(np.float32(value))


def samples(first: int, n: int, width: int = 3) -> np.ndarray:
    return p.pattern_samples(first, n, width)


# -- valid and invalid bytes ------------------------------------------------------------
def invalid_vector(out: list, decode, name, raw: bytes, error: str, note: str, **extra) -> None:
    """Append a vector that ``decode`` must refuse with the error kind ``error``."""
    try:
        decode(raw)
    except p.ProtocolError as exc:
        assert exc.kind == error, (name, exc.kind, str(exc))
        out.append(
            {
                "name": name,
                "valid": False,
                "hex": raw.hex(),
                "error": error,
                **extra,
                "message": str(exc),
                "note": note,
            }
        )
        return
    raise AssertionError(f"{name} decodes")


def frame_vectors() -> list[dict]:
    out: list[dict] = []

    def valid(name, frame, note, mtu=None):
        item = {"name": name, "valid": True, "hex": p.encode_frame(frame).hex()}
        if mtu is not None:
            item["mtu"] = mtu
        item["decoded"] = p.to_dict(frame)
        item["note"] = note
        out.append(item)

    def data(seq, first, n, gyro=False):
        block = samples(first, n, 6 if gyro else 3)
        return p.SampleFrame(seq, first, block[:, :3], block[:, 3:] if gyro else None)

    valid("data_mtu23_acc", data(0, 0, 2), "full frame at the minimum MTU: 2 samples, 20 bytes", 23)
    valid("data_mtu23_gyro", data(1, 2, 1, True), "acc+gyro at MTU 23: 1 sample, 20 bytes", 23)
    valid("data_mtu247_acc", data(7, 1000, 39), "full frame at MTU 247: 39 samples, 242 bytes", 247)
    valid("data_mtu247_gyro", data(8, 1039, 19, True), "acc+gyro at MTU 247: 19 samples", 247)
    valid("data_mtu185_acc", data(9, 20, 29), "full frame at MTU 185 (iOS): 29 samples", 185)
    valid("data_mtu517_acc_capped", data(10, 40, 63), "MTU 517: capped at 63 samples", 517)
    valid("data_mtu517_gyro", data(11, 103, 42, True), "acc+gyro at MTU 517: 42 samples", 517)
    valid("data_single_sample", data(12, 5, 1), "a partial frame sent on the latency timer")
    valid(
        "data_int16_extremes",
        p.SampleFrame(13, 6, np.array([[-32768, 32767, 0], [-1, 1, -32768]], np.int16)),
        "sample values at the int16 limits",
    )
    valid(
        "data_gyro_extremes",
        p.SampleFrame(
            14,
            7,
            np.array([[32767, -32768, 1]], np.int16),
            np.array([[-32768, 32767, -1]], np.int16),
        ),
        "gyroscope values at the int16 limits",
    )
    valid("data_seq_max", data(0xFFFF, 2000, 2), "sequence number 65535, last before the wrap")
    valid("data_seq_wrapped", data(0, 2002, 2), "the frame after seq 65535 has seq 0")
    valid(
        "data_8h_200hz",
        data(1234, 5_759_998, 2),
        "the last samples of an 8 h night at 200 Hz (index 5,759,999): far from the u32 limit",
    )
    valid(
        "data_index_max",
        data(77, 0xFFFFFFFF - 2, 2),
        "the last two samples a session can hold (indices 4294967293, 4294967294)",
    )
    valid(
        "time_sync_boot_clock",
        p.TimeSyncFrame(2, 99, 12_345_678, 850, False),
        "device clock not set: µs since boot",
    )
    valid(
        "time_sync_utc",
        p.TimeSyncFrame(3, 360_000, UTC_2026_03_01_2230 + 3_600_000_123, 1_200, True),
        "clock set by SET_TIME: µs since 1970 UTC",
    )
    valid(
        "time_sync_max",
        p.TimeSyncFrame(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF, True),
        "every field at its maximum",
    )
    valid(
        "status_streaming",
        p.StatusFrame(4, True, False, 87, p.StopReason.NONE, 0, 0x12345678, 0, 1500),
        "streaming, nothing overwritten",
    )
    valid(
        "status_overflow",
        p.StatusFrame(5, True, True, 64, p.StopReason.NONE, 0, 0x12345678, 40_000, 100_000),
        "streaming; never-sent samples were overwritten, the oldest held is 40000",
    )
    valid(
        "status_stop_user",
        p.StatusFrame(6, False, False, 80, p.StopReason.USER, 0, 7, 0, 2_880_000),
        "stopped by the STOP command",
    )
    valid(
        "status_stop_battery",
        p.StatusFrame(7, False, False, 2, p.StopReason.BATTERY_LOW, 0, 7, 0, 10),
        "stopped: battery low",
    )
    valid(
        "status_stop_overflow",
        p.StatusFrame(8, False, False, 50, p.StopReason.BUFFER_OVERFLOW, 0, 7, 0, 65_536),
        "stopped by the stop-on-overflow option: the buffer is full of unsent samples",
    )
    valid(
        "status_stop_error",
        p.StatusFrame(9, False, False, 50, p.StopReason.ERROR, 0x0102, 7, 5, 10),
        "stopped: sensor error 0x0102 (device-specific code)",
    )
    valid(
        "status_battery_unknown",
        p.StatusFrame(
            0xFFFF, True, False, p.BATTERY_UNKNOWN, p.StopReason.NONE, 0, 0xFFFFFFFF, 0, 0
        ),
        "battery level unknown (255), seq 65535, nothing acquired yet",
    )

    invalid = functools.partial(invalid_vector, out, p.decode_frame)

    full247 = p.encode_frame(data(7, 1000, 39))
    frame38 = p.encode_frame(data(1, 0, 38))
    sync = p.encode_frame(p.TimeSyncFrame(2, 99, 12_345_678, 850, False))
    status = p.encode_frame(p.StatusFrame(4, True, False, 87, p.StopReason.NONE, 0, 9, 0, 1500))

    def status_with(**fields):
        raw = bytearray(status)
        for offset, value in fields.values():
            raw[offset] = value
        return bytes(raw)

    invalid("empty", b"", "truncated", "a zero-length notification")
    invalid("data_header_truncated", full247[:5], "truncated", "shorter than the 8-byte header")
    invalid(
        "data_cut_to_mtu23",
        full247[:20],
        "truncated",
        "a 39-sample frame cut to 20 bytes by a stack that never exchanged the MTU",
    )
    invalid(
        "data_truncated_38",
        frame38[:128],
        "truncated",
        "header says 38 samples (228 bytes) but 120 bytes follow",
    )
    invalid("data_extra_byte", full247 + b"\x00", "length", "one byte more than 39 samples")
    invalid("data_odd_length", full247[:-1], "truncated", "one byte missing")
    invalid("data_zero_count", bytes([1, 0x00]) + full247[2:8], "bad_count", "count 0")
    invalid(
        "data_zero_count_gyro",
        bytes([1, 0x40]) + full247[2:8],
        "bad_count",
        "gyro flag with count 0",
    )
    invalid(
        "data_reserved_bit",
        bytes([1, full247[1] | 0x80]) + full247[2:],
        "reserved",
        "format byte bit 7 set",
    )
    invalid(
        "data_gyro_flag_acc_payload",
        bytes([1, 39 | 0x40]) + full247[2:],
        "truncated",
        "gyro flag set on a frame that carries accelerometer samples only",
    )
    invalid("unknown_type_7f", bytes([0x7F]) + full247[1:20], "unknown_type", "frame type 0x7f")
    invalid("unknown_type_00", bytes(20), "unknown_type", "frame type 0x00 (all zeros)")
    invalid(
        "unknown_type_04",
        bytes([0x04]) + sync[1:],
        "unknown_type",
        "a type a later minor version may add: skip and count",
    )
    invalid(
        "reply_on_data",
        bytes.fromhex("81010001000000"),
        "unknown_type",
        "a CONTROL reply is not a DATA-characteristic frame",
    )
    invalid("time_sync_truncated", sync[:19], "truncated", "19 of 20 bytes")
    invalid("time_sync_too_long", sync + b"\x00", "length", "21 bytes")
    invalid("time_sync_reserved", sync[:1] + b"\x02" + sync[2:], "reserved", "flag bit 1")
    invalid("status_truncated", status[:12], "truncated", "12 of 20 bytes")
    invalid("status_too_long", status + b"\x00\x00", "length", "22 bytes")
    invalid("status_reserved", status_with(flags=(1, 0x05)), "reserved", "flag bit 2")
    invalid(
        "status_unknown_stop_reason",
        status_with(flags=(1, 0x00), reason=(5, 9)),
        "bad_value",
        "stop reason 9",
    )
    invalid("status_battery_101", status_with(battery=(4, 101)), "bad_value", "battery 101 %")
    invalid(
        "status_streaming_with_reason",
        status_with(reason=(5, 1)),
        "bad_value",
        "streaming flag with stop reason USER",
    )
    invalid(
        "status_stopped_without_reason",
        status_with(flags=(1, 0x00)),
        "bad_value",
        "not streaming and stop reason NONE",
    )
    invalid(
        "status_error_code_without_error",
        status_with(code=(6, 0x33)),
        "bad_value",
        "error code with stop reason NONE",
    )
    invalid("status_session_zero", status_with(s0=(8, 0)), "bad_value", "session id 0")
    invalid(
        "status_oldest_after_next",
        status_with(oldest=(14, 1)),
        "bad_value",
        "oldest index 65536 > next index 1500",
    )
    return out


def command_vectors() -> list[dict]:
    out: list[dict] = []

    def valid(name, cmd, note):
        out.append(
            {
                "name": name,
                "valid": True,
                "hex": p.encode_command(cmd).hex(),
                "decoded": p.to_dict(cmd),
                "note": note,
            }
        )

    valid("start_acc", p.StartCommand(1, 100, 8), "100 Hz, +-8 g, accelerometer only")
    valid(
        "start_gyro_stop_on_overflow",
        p.StartCommand(2, 200, 16, 2000, True),
        "200 Hz, +-16 g, gyroscope +-2000 dps, stop rather than overwrite unsent samples",
    )
    valid("stop", p.StopCommand(3), "STOP")
    valid("resume", p.ResumeCommand(4, 0x12345678, 5_759_999), "RESUME session 0x12345678")
    valid("resume_from_zero", p.ResumeCommand(0xFF, 1, 0), "RESUME from the first sample")
    valid("get_info", p.GetInfoCommand(5), "GET_INFO (session state)")
    valid("set_time", p.SetTimeCommand(6, UTC_2026_03_01_2230), "SET_TIME 2026-03-01T22:30:00Z")

    def invalid(name, raw: bytes, error: str, status: str, note: str):
        invalid_vector(out, p.decode_command, name, raw, error, note, status=status)

    start = p.encode_command(p.StartCommand(1, 100, 8))
    invalid("empty", b"", "truncated", "INVALID_LENGTH", "a zero-length write")
    invalid("start_truncated", start[:7], "truncated", "INVALID_LENGTH", "7 of 8 bytes")
    invalid("start_too_long", start + b"\x00", "length", "INVALID_LENGTH", "9 bytes")
    invalid(
        "start_reserved_flags",
        start[:5] + b"\x04" + start[6:],
        "reserved",
        "INVALID_PARAMETER",
        "flag bit 2",
    )
    invalid(
        "start_gyro_flag_without_range",
        start[:5] + b"\x01" + start[6:],
        "bad_value",
        "INVALID_PARAMETER",
        "gyro flag with gyro range 0",
    )
    invalid(
        "start_gyro_range_without_flag",
        start[:6] + struct.pack("<H", 500),
        "bad_value",
        "INVALID_PARAMETER",
        "gyro range 500 dps without the gyro flag",
    )
    invalid(
        "start_rate_zero",
        start[:2] + b"\x00\x00" + start[4:],
        "bad_value",
        "INVALID_PARAMETER",
        "rate 0 Hz",
    )
    invalid("unknown_opcode_06", bytes([6, 9]), "unknown_opcode", "UNKNOWN_OPCODE", "opcode 0x06")
    invalid(
        "opcode_with_reply_bit",
        bytes([0x81, 9]) + start[2:],
        "unknown_opcode",
        "UNKNOWN_OPCODE",
        "a reply written back as a command",
    )
    invalid("stop_too_long", bytes([2, 3, 0]), "length", "INVALID_LENGTH", "STOP with a payload")
    invalid("stop_without_token", bytes([2]), "truncated", "INVALID_LENGTH", "no token byte")
    invalid(
        "resume_truncated",
        p.encode_command(p.ResumeCommand(4, 1, 2))[:6],
        "truncated",
        "INVALID_LENGTH",
        "no from_index",
    )
    invalid(
        "set_time_truncated",
        p.encode_command(p.SetTimeCommand(6, 1))[:9],
        "truncated",
        "INVALID_LENGTH",
        "7-byte time",
    )
    return out


def reply_vectors() -> list[dict]:
    out: list[dict] = []

    def valid(name, reply, note, roundtrip=True):
        item = {
            "name": name,
            "valid": True,
            "hex": p.encode_reply(reply).hex(),
            "decoded": p.to_dict(reply),
            "note": note,
        }
        if not roundtrip:
            item["roundtrip"] = False
        out.append(item)

    valid("start_ok", p.StartReply(1, 0x12345678), "session 0x12345678 started")
    valid("stop_ok", p.StopReply(3, 2_880_000), "stopped after 2,880,000 samples (8 h at 100 Hz)")
    valid(
        "resume_ok",
        p.ResumeReply(4, 0x12345678, 1000, 1000, 1500, True),
        "replays 1000..1499 then goes on live",
    )
    valid(
        "resume_overwritten",
        p.ResumeReply(4, 0x12345678, 1000, 35_000, 100_000, True),
        "samples 1000..34999 were overwritten: an exact gap of 34000 samples",
    )
    valid(
        "resume_stopped",
        p.ResumeReply(5, 7, 10, 10, 64, False),
        "a stopped session: replays 10..63, then nothing",
    )
    valid("get_info_idle", p.GetInfoReply(5, p.State.IDLE), "no session since boot")
    valid(
        "get_info_streaming",
        p.GetInfoReply(
            5, p.State.STREAMING, 0x12345678, 100, 8, 0, False, p.StopReason.NONE, 123_456
        ),
        "streaming 100 Hz +-8 g",
    )
    valid(
        "get_info_stopped_gyro",
        p.GetInfoReply(6, p.State.STOPPED, 9, 200, 16, 2000, True, p.StopReason.BATTERY_LOW, 77),
        "stopped by low battery; gyro session with stop-on-overflow",
    )
    valid("set_time_first", p.SetTimeReply(6, 3_000_000, False), "the clock counted from boot")
    valid("set_time_again", p.SetTimeReply(7, UTC_2026_03_01_2230, True), "the clock had been set")
    valid("error_busy", p.ErrorReply(p.Opcode.START, 1, p.Status.BUSY), "START while streaming")
    valid(
        "error_unsupported",
        p.ErrorReply(p.Opcode.START, 2, p.Status.UNSUPPORTED),
        "a rate or range the band lacks",
    )
    valid(
        "error_session_mismatch",
        p.ErrorReply(p.Opcode.RESUME, 4, p.Status.SESSION_MISMATCH),
        "the band restarted: a new START is needed",
    )
    valid(
        "error_unknown_opcode",
        p.ErrorReply(0x7E, 9, p.Status.UNKNOWN_OPCODE),
        "reply to opcode 0x7e, echoed",
    )
    valid(
        "error_future_status",
        p.ErrorReply(p.Opcode.STOP, 3, 0x2A),
        "a status code from a later minor version: reported as unknown, not a decode error",
    )

    invalid = functools.partial(invalid_vector, out, p.decode_reply)

    resume = p.encode_reply(p.ResumeReply(4, 0x12345678, 1000, 1000, 1500, True))
    info = p.encode_reply(p.GetInfoReply(5, p.State.IDLE))
    invalid("too_short", bytes([0x81, 1]), "truncated", "2 bytes")
    invalid(
        "no_reply_bit",
        bytes([0x01, 1, 0, 1, 0, 0, 0]),
        "unknown_type",
        "a command echoed instead of a reply",
    )
    invalid("error_with_payload", bytes([0x81, 1, 5, 0]), "length", "BUSY with a payload byte")
    invalid("start_truncated", bytes([0x81, 1, 0, 1, 0, 0]), "truncated", "session id 3 bytes")
    invalid("start_session_zero", bytes([0x81, 1, 0, 0, 0, 0, 0]), "bad_value", "session id 0")
    invalid("ok_unknown_opcode", bytes([0x86, 1, 0]), "unknown_opcode", "OK reply to opcode 6")
    invalid("resume_reserved_flags", resume[:3] + b"\x05" + resume[4:], "reserved", "flag bit 2")
    invalid(
        "resume_overwritten_inconsistent",
        resume[:3] + b"\x03" + resume[4:],
        "bad_value",
        "overwritten flag but first index == from index",
    )
    invalid(
        "resume_first_after_next",
        resume[:12] + struct.pack("<I", 2000) + resume[16:],
        "bad_value",
        "first index 2000 after next index 1500",
    )
    invalid(
        "get_info_idle_with_session",
        info[:11] + b"\x01" + info[12:],
        "bad_value",
        "IDLE with a session id",
    )
    invalid("get_info_unknown_state", info[:3] + b"\x07" + info[4:], "bad_value", "state 7")
    invalid("get_info_too_long", info + b"\x00", "length", "20 bytes")
    invalid("set_time_reserved", bytes([0x85, 1, 0]) + bytes(8) + b"\x02", "reserved", "flag bit 1")
    return out


def reference_info(**changes) -> p.Info:
    args = dict(
        rates_hz=(25, 50, 100, 200),
        acc_ranges=(
            p.AccRange(2, 16384.0),
            p.AccRange(4, 8192.0),
            p.AccRange(8, 4096.0),
            p.AccRange(16, 2048.0),
        ),
        gyro_ranges=(),
        buffer_samples=65_536,
        buffer_samples_gyro=0,
        model="pmld-ref",
        firmware="1.0.0",
        serial="A1B2C3",
        stop_on_overflow=True,
        time_sync_interval_s=1,
        status_interval_s=5,
    )
    args.update(changes)
    return p.Info(**args)


GYRO_INFO = dict(
    rates_hz=(12, 26, 52, 104, 208, 416, 833, 1666),
    acc_ranges=(
        p.AccRange(2, f32(16393.44)),
        p.AccRange(4, f32(8196.72)),
        p.AccRange(8, f32(4098.36)),
        p.AccRange(16, f32(2049.18)),
    ),
    gyro_ranges=(
        p.GyroRange(125, f32(228.5714)),
        p.GyroRange(250, f32(114.2857)),
        p.GyroRange(500, f32(57.14286)),
        p.GyroRange(1000, f32(28.57143)),
        p.GyroRange(2000, f32(14.28571)),
    ),
    buffer_samples=174_762,
    buffer_samples_gyro=87_381,
    model="Ankle IMU \u00b5-band",
    firmware="2.3.1-rc1",
    serial="SN-000042",
    stop_on_overflow=False,
    time_sync_interval_s=2,
    status_interval_s=10,
)


def info_vectors() -> list[dict]:
    out: list[dict] = []

    def valid(name, info, note, raw=None):
        item = {
            "name": name,
            "valid": True,
            "hex": (raw or p.encode_info(info)).hex(),
            "decoded": p.to_dict(info),
            "note": note,
        }
        if raw is not None:
            item["roundtrip"] = False
            assert p.decode_info(raw) == info
        out.append(item)

    acc_only = reference_info()
    gyro = reference_info(**GYRO_INFO)
    valid("acc_only", acc_only, "the reference band: accelerometer, 4 rates, 4 ranges")
    valid("with_gyro", gyro, "LSM6DS-like band: non-integer scales as float32, UTF-8 model")
    newer = reference_info(minor=3)
    raw = bytearray(p.encode_info(newer)) + b"\x01\x02\x03"
    raw[6:8] = struct.pack("<H", len(raw))
    valid(
        "newer_minor_trailing",
        newer,
        "protocol 1.3 appends 3 bytes: a 1.0 host ignores them",
        bytes(raw),
    )
    valid(
        "minimal",
        reference_info(
            rates_hz=(50,),
            acc_ranges=(p.AccRange(8, 4096.0),),
            buffer_samples=1,
            model="",
            firmware="",
            serial="",
            stop_on_overflow=False,
        ),
        "one rate, one range, empty strings",
    )

    invalid = functools.partial(invalid_vector, out, p.decode_info)

    good = p.encode_info(acc_only)

    def patched(offset, new: bytes, base=good):
        return base[:offset] + new + base[offset + len(new) :]

    invalid(
        "not_pmld_polar",
        bytes.fromhex("0f0400"),
        "not_pmld",
        "a Polar PMD control point value: not a pmld band",
    )
    invalid("not_pmld_text", b"Hello BLE world, I am a lamp", "not_pmld", "some other device")
    invalid("empty", b"", "truncated", "a zero-length value")
    invalid("magic_only", b"PMLD", "truncated", "the magic and nothing else")
    invalid("version_0_9", patched(4, b"\x00\x09"), "version_old", "protocol 0.9")
    invalid("version_2_0", patched(4, b"\x02\x00"), "version_new", "protocol 2.0")
    invalid("header_truncated", good[:12], "truncated", "12 of the 20 header bytes")
    invalid("length_says_more", good[:-1], "truncated", "the length field says one more byte")
    invalid(
        "trailing_same_minor",
        patched(6, struct.pack("<H", len(good) + 2)) + b"\x00\x00",
        "length",
        "2 unknown bytes after the serial although the minor is not newer",
    )
    invalid("no_accelerometer", patched(8, b"\x00"), "bad_value", "sensor bits 0")
    invalid("reserved_sensor_bit", patched(8, b"\x05"), "reserved", "sensor bit 2")
    invalid("reserved_feature_bit", patched(9, b"\x03"), "reserved", "feature bit 1")
    invalid("gyro_bit_without_ranges", patched(8, b"\x03"), "bad_value", "gyro bit, no gyro range")
    invalid(
        "rates_descending",
        patched(21, struct.pack("<4H", 200, 100, 50, 25)),
        "bad_value",
        "rates must ascend",
    )
    invalid("list_runs_past_end", patched(20, b"\x20"), "truncated", "32 rates announced")
    zero_buffer = patched(12, b"\x00\x00\x00\x00")
    invalid("buffer_zero", zero_buffer, "bad_value", "a ring buffer of 0 samples")
    bad_utf8 = bytearray(good)
    bad_utf8[-6] = 0xFF  # inside the serial "A1B2C3"
    invalid("serial_not_utf8", bytes(bad_utf8), "bad_value", "serial is not UTF-8")
    return out


# -- session scripts --------------------------------------------------------------------
class Script:
    """Drive a DeviceModel and record every step with its expected output."""

    def __init__(self, name: str, info: p.Info, seed: int, note: str):
        self.device = p.DeviceModel(info, session_seed=seed)
        self.info_hex = p.encode_info(info).hex()
        self.item = {
            "name": name,
            "note": note,
            "info": self.info_hex,
            "session_seed": seed,
            "steps": [],
        }

    def command(self, cmd, now_us: int) -> bytes:
        raw = cmd if isinstance(cmd, bytes) else p.encode_command(cmd)
        reply = self.device.handle_command(raw, now_us)
        self.item["steps"].append(
            {"op": "command", "now_us": now_us, "hex": raw.hex(), "reply": reply.hex()}
        )
        return reply

    def samples(self, n: int, t0_us: int, dt_us: int) -> int:
        width = self.device.width
        first = self.device.next_index
        kept = self.device.acquire(samples(first, n, width), t0_us + dt_us * np.arange(n))
        self.item["steps"].append(
            {"op": "samples", "n": n, "t0_us": t0_us, "dt_us": dt_us, "kept": kept}
        )
        return kept

    def poll(self, mtu: int, now_us: int, flush: bool = False, limit: int | None = None):
        """Poll until no frame (or ``limit`` frames); record them as one step."""
        frames = []
        while limit is None or len(frames) < limit:
            frame = self.device.next_frame(mtu, now_us, flush)
            if frame is None:
                break
            frames.append(frame.hex())
        step = {
            "op": "poll",
            "mtu": mtu,
            "now_us": now_us,
            "flush": flush,
            "limit": 0 if limit is None else limit,
            "frames": frames,
        }
        self.item["steps"].append(step)
        return frames

    def disconnect(self):
        self.device.disconnect()
        self.item["steps"].append({"op": "disconnect"})

    def battery(self, pct: int):
        self.device.set_battery(pct)
        self.item["steps"].append({"op": "battery", "pct": pct})

    def fail(self, code: int):
        self.device.fail(code)
        self.item["steps"].append({"op": "fail", "code": code})


def session_vectors() -> list[dict]:
    out = []
    ms = 1000
    dt = 10 * ms  # 100 Hz

    s = Script(
        "basic_acc",
        reference_info(),
        0x1000,
        "SET_TIME, START, stream at MTU 23 then 247, periodic TIME_SYNC and STATUS, STOP, drain",
    )
    s.command(p.GetInfoCommand(1), 0)
    s.command(p.SetTimeCommand(2, UTC_2026_03_01_2230), 500)
    s.command(p.StartCommand(3, 100, 8), 1000)
    s.poll(23, 1500)  # nothing yet
    s.samples(10, 2000, dt)
    s.poll(23, 95_000)
    s.samples(5, 102_000, dt)
    s.poll(23, 150_000)  # two full frames, one sample left
    s.poll(247, 151_000, flush=True)
    s.samples(150, 152_000, dt)
    s.poll(247, 1_700_000)  # TIME_SYNC due (1 s)
    s.samples(400, 1_702_000, dt)
    s.poll(247, 5_800_000, flush=True)  # STATUS due (5 s)
    s.command(p.GetInfoCommand(4), 5_900_000)
    s.command(p.StopCommand(5), 6_000_000)
    s.samples(3, 6_002_000, dt)  # ignored: stopped
    s.poll(247, 6_100_000)
    s.command(p.GetInfoCommand(6), 6_200_000)
    out.append(s.item)

    s = Script(
        "reconnect_resume",
        reference_info(),
        0xFFFFFFFE,
        "drop mid-stream; RESUME "
        "from the last held sample replays the ring, then live; session id wraps",
    )
    s.command(p.StartCommand(1, 100, 8), 0)
    s.samples(100, 10_000, dt)
    s.poll(247, 1_000_000, limit=2)  # TIME_SYNC and one DATA frame, then the link drops
    s.disconnect()
    s.samples(300, 1_010_000, dt)
    s.poll(247, 4_000_000)  # nothing: not sending
    reply = p.decode_reply(s.command(p.ResumeCommand(2, 0x12345678, 0), 4_000_000))
    assert isinstance(reply, p.ErrorReply)
    s.command(p.ResumeCommand(3, s.device.session_id, 39), 4_000_000)
    s.poll(247, 4_001_000, flush=True)
    s.disconnect()
    s.command(p.ResumeCommand(4, s.device.session_id, 390), 4_100_000)
    s.poll(23, 4_101_000, flush=True)
    s.command(p.StartCommand(5, 100, 8), 4_200_000)  # BUSY
    s.command(p.StopCommand(6), 4_300_000)
    s.command(p.StartCommand(7, 50, 2), 4_400_000)  # a new session (seed + 2 wraps to 0 -> 1)
    s.samples(4, 4_410_000, 20 * ms)
    s.poll(23, 4_500_000)
    out.append(s.item)

    small = reference_info(buffer_samples=64)
    s = Script(
        "overflow_overwrite",
        small,
        7,
        "a 64-sample ring: a long drop overwrites unsent samples; RESUME reports the exact gap",
    )
    s.command(p.StartCommand(1, 100, 8), 0)
    s.samples(30, 10_000, dt)
    s.poll(247, 400_000)
    s.disconnect()
    s.samples(200, 410_000, dt)
    s.command(p.ResumeCommand(2, s.device.session_id, 30), 2_410_000)
    s.poll(247, 2_410_500, flush=True)
    s.samples(60, 2_420_000, dt)  # overwrites only samples already sent: no event
    s.poll(247, 3_400_000, flush=True)
    out.append(s.item)

    s = Script(
        "stop_on_overflow",
        small,
        0,
        "the band stops (BUFFER_OVERFLOW) rather than overwrite; RESUME drains the stopped session",
    )
    s.command(p.StartCommand(1, 100, 8, 0, True), 0)
    s.disconnect()
    s.samples(100, 10_000, dt)
    s.command(p.GetInfoCommand(2), 1_100_000)
    s.command(p.ResumeCommand(3, s.device.session_id, 0), 1_200_000)
    s.poll(247, 1_200_100)
    s.command(p.StopCommand(4), 1_300_000)  # NOT_STREAMING
    out.append(s.item)

    gyro_info = reference_info(**GYRO_INFO)
    s = Script(
        "gyro_session",
        gyro_info,
        0xABCDEF,
        "acc+gyro at MTU 23 and 247; unsupported and malformed STARTs first",
    )
    s.command(p.StartCommand(1, 100, 8, 2000), 0)  # UNSUPPORTED: 100 Hz not offered
    s.command(p.StartCommand(2, 104, 8, 300), 0)  # UNSUPPORTED gyro range
    s.command(p.StartCommand(3, 104, 8, 2000, True), 0)  # UNSUPPORTED stop-on-overflow
    s.command(bytes.fromhex("010468000801" + "0000"), 0)  # INVALID_PARAMETER
    s.command(p.StartCommand(4, 104, 8, 2000), 0)
    s.samples(21, 5_000, 9_615)
    s.poll(23, 250_000)
    s.poll(247, 250_000, flush=True)
    s.samples(40, 260_000, 9_615)
    s.poll(247, 700_000, flush=True)
    out.append(s.item)

    s = Script(
        "battery_and_errors",
        reference_info(),
        0x42,
        "every refusal; battery-low stop; sensor fault",
    )
    s.command(b"", 0)
    s.command(bytes([0x02]), 0)
    s.command(bytes([0x06, 0x11]), 0)
    s.command(bytes([0x81, 0x12, 0]), 0)
    s.command(p.StopCommand(1), 0)  # NOT_STREAMING
    s.command(p.ResumeCommand(2, 5, 0), 0)  # NO_SESSION
    s.command(p.StartCommand(3, 60, 8), 0)  # UNSUPPORTED rate
    s.command(p.StartCommand(4, 100, 3), 0)  # UNSUPPORTED range
    s.command(p.StartCommand(5, 100, 8, 250), 0)  # UNSUPPORTED: no gyro
    s.battery(3)
    s.command(p.StartCommand(6, 100, 8), 0)  # BATTERY_LOW
    s.battery(40)
    s.command(p.StartCommand(7, 100, 8), 10)
    s.command(p.SetTimeCommand(8, UTC_2026_03_01_2230), 20)  # BUSY while streaming
    s.samples(7, 1_000, dt)
    s.command(p.ResumeCommand(9, s.device.session_id, 8), 100_000)  # INVALID_PARAMETER
    s.poll(23, 100_000)
    s.battery(3)  # stops
    s.samples(5, 80_000, dt)  # ignored
    s.poll(23, 200_000)
    s.command(p.SetTimeCommand(10, UTC_2026_03_01_2230), 300_000)
    s.command(p.SetTimeCommand(11, UTC_2026_03_01_2230 + 1_000_000), 1_300_000)
    s.battery(p.BATTERY_UNKNOWN)
    s.command(p.StartCommand(12, 25, 16), 1_400_000)
    s.samples(3, 1_440_000, 40 * ms)
    s.poll(23, 1_600_000, flush=True)
    s.fail(0x0102)
    s.poll(23, 1_700_000)
    s.command(p.GetInfoCommand(13), 1_800_000)
    out.append(s.item)
    return out


# -- writing ----------------------------------------------------------------------------
def dump(kind: str, items: list[dict]) -> str:
    """One vector per line: easy to diff, still plain JSON for the C reader."""
    lines = ",\n".join("  " + json.dumps(item, ensure_ascii=False) for item in items)
    header = json.dumps({"protocol": f"{p.PROTOCOL_MAJOR}.{p.PROTOCOL_MINOR}", "kind": kind})
    return header[:-1] + ', "vectors": [\n' + lines + "\n]}\n"


def build() -> dict[str, str]:
    return {
        "frames.json": dump("frame", frame_vectors()),
        "commands.json": dump("command", command_vectors()),
        "replies.json": dump("reply", reply_vectors()),
        "info.json": dump("info", info_vectors()),
        "sessions.json": dump("session", session_vectors()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for name, text in build().items():
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale vectors: {', '.join(stale)} (run {Path(__file__).name})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
