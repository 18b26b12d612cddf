"""The pmld band's BLE protocol: shared vectors, round trips, bad input, device model."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pmld.ble import protocol as p
from pmld.errors import InputError

VECTORS = Path(__file__).resolve().parents[1] / "firmware_protocol" / "vectors"
FILES = ("frames", "commands", "replies", "info", "sessions")


def load(name: str) -> list[dict]:
    return json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))["vectors"]


def ids(vector: dict) -> str:
    return vector["name"]


DECODERS = {
    "frames": (p.decode_frame, p.encode_frame, p.frame_from_dict),
    "commands": (p.decode_command, p.encode_command, p.command_from_dict),
    "replies": (p.decode_reply, p.encode_reply, p.reply_from_dict),
    "info": (p.decode_info, p.encode_info, p.info_from_dict),
}
ALL = [(name, v) for name in DECODERS for v in load(name)]


# -- identifiers --------------------------------------------------------------------------
def test_uuids_derive_from_one_random_base():
    base = uuid.UUID(p.BASE_UUID)
    assert base.version == 4 and base.variant == uuid.RFC_4122
    uuids = [p.SERVICE_UUID, p.INFO_UUID, p.CONTROL_UUID, p.DATA_UUID]
    assert len(set(uuids)) == 4
    for alias, text in enumerate(uuids, start=1):
        value = uuid.UUID(text)
        assert value.int == base.int | (alias << 96)
        assert str(value) == text


def test_c_header_names_the_same_uuids_and_version():
    header = (VECTORS.parent / "c" / "include" / "pmld_protocol.h").read_text()
    for name in ("SERVICE", "INFO", "CONTROL", "DATA"):
        assert f'"{getattr(p, name + "_UUID")}"' in header
    assert f"#define PMLD_PROTOCOL_MAJOR {p.PROTOCOL_MAJOR}" in header
    assert f"#define PMLD_PROTOCOL_MINOR {p.PROTOCOL_MINOR}" in header


# -- the shared vectors -------------------------------------------------------------------
def test_vector_counts():
    frames = load("frames")
    valid = sum(v["valid"] for name, v in ALL)
    assert valid >= 25 and len(ALL) - valid >= 15
    types = {v["decoded"]["type"] for v in frames if v["valid"]}
    assert types == {"DATA", "TIME_SYNC", "STATUS"}
    assert {v.get("mtu") for v in frames} >= {23, 247}


@pytest.mark.parametrize(("kind", "vector"), ALL, ids=[f"{k}:{v['name']}" for k, v in ALL])
def test_vector(kind, vector):
    decode, encode, from_dict = DECODERS[kind]
    raw = bytes.fromhex(vector["hex"])
    if not vector["valid"]:
        with pytest.raises(p.ProtocolError) as caught:
            decode(raw)
        assert caught.value.kind == vector["error"]
        assert str(caught.value) == vector["message"]
        return
    decoded = decode(raw)
    assert decoded == from_dict(vector["decoded"])
    assert p.to_dict(decoded) == vector["decoded"]
    if vector.get("roundtrip", True):
        assert encode(decoded) == raw
    if "mtu" in vector:
        assert len(raw) <= vector["mtu"] - p.ATT_OVERHEAD
        assert decoded.count == p.samples_per_frame(vector["mtu"], decoded.gyro is not None)


@pytest.mark.parametrize("vector", [v for v in load("commands") if not v["valid"]], ids=ids)
def test_device_replies_to_bad_commands_with_the_vector_status(vector):
    raw = bytes.fromhex(vector["hex"])
    reply = p.decode_reply(p.DeviceModel(reference_info()).handle_command(raw, 0))
    assert isinstance(reply, p.ErrorReply)
    assert reply.status == p.Status[vector["status"]]
    assert reply.opcode == (raw[0] & 0x7F if raw else 0)


@pytest.mark.parametrize("session", load("sessions"), ids=ids)
def test_session_script(session):
    """The device model reproduces every reply and notification of the script."""
    device = p.DeviceModel(
        p.decode_info(bytes.fromhex(session["info"])), session_seed=session["session_seed"]
    )
    for number, step in enumerate(session["steps"]):
        where = f"step {number} ({step['op']})"
        if step["op"] == "command":
            reply = device.handle_command(bytes.fromhex(step["hex"]), step["now_us"])
            assert reply.hex() == step["reply"], where
            p.decode_reply(reply)
        elif step["op"] == "samples":
            first = device.next_index
            times = step["t0_us"] + step["dt_us"] * np.arange(step["n"])
            kept = device.acquire(p.pattern_samples(first, step["n"], device.width), times)
            assert kept == step["kept"], where
        elif step["op"] == "poll":
            frames = []
            while not step["limit"] or len(frames) < step["limit"]:
                frame = device.next_frame(step["mtu"], step["now_us"], step["flush"])
                if frame is None:
                    break
                assert len(frame) <= step["mtu"] - p.ATT_OVERHEAD
                p.decode_frame(frame)
                frames.append(frame.hex())
            assert frames == step["frames"], where
        elif step["op"] == "disconnect":
            device.disconnect()
        elif step["op"] == "battery":
            device.set_battery(step["pct"])
        elif step["op"] == "fail":
            device.fail(step["code"])
        else:
            raise AssertionError(f"unknown op {step['op']}")


def test_committed_vectors_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("generate", VECTORS / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for name, text in generate.build().items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run firmware_protocol/vectors/generate.py"
        )


# -- messages -----------------------------------------------------------------------------
def test_error_messages_are_one_clear_line():
    frame = p.encode_frame(p.SampleFrame(1, 0, p.pattern_samples(0, 38)))
    with pytest.raises(
        p.ProtocolError,
        match=r"^truncated DATA frame: header says 38 samples "
        r"\(228 bytes\) but 120 bytes follow",
    ):
        p.decode_frame(frame[:128])
    with pytest.raises(p.ProtocolError, match=r"^unknown frame type 0x7f"):
        p.decode_frame(b"\x7f" + bytes(19))
    info = bytearray(p.encode_info(reference_info()))
    info[4:6] = b"\x00\x09"
    with pytest.raises(
        p.ProtocolError,
        match=r"^protocol version 0\.9 is older than this pmld supports \(1\.x\): update the "
        r"band's firmware$",
    ):
        p.decode_info(bytes(info))
    info[4:6] = b"\x02\x00"
    with pytest.raises(
        p.ProtocolError,
        match=r"is newer than this pmld supports \(1\.x\): "
        r"update pmld$",
    ):
        p.decode_info(bytes(info))
    with pytest.raises(p.ProtocolError, match=r"^not a pmld band"):
        p.decode_info(b"\x0f\x04\x00")
    error = p.ProtocolError("truncated", "x")
    assert isinstance(error, InputError) and error.exit_code == 2
    with pytest.raises(ValueError):
        p.ProtocolError("no such kind", "x")


def test_error_reply_messages():
    assert p.ErrorReply(p.Opcode.START, 1, p.Status.BUSY).message == (
        "START refused: BUSY (the band is streaming (STOP first))"
    )
    assert "status 0x2a (unknown" in p.ErrorReply(p.Opcode.STOP, 1, 0x2A).message
    assert p.ErrorReply(0x7E, 1, 1).message.startswith("opcode 0x7e refused")


# -- round trips (hypothesis) -------------------------------------------------------------
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)


@st.composite
def sample_frames(draw, mtu: int):
    gyro = draw(st.booleans())
    n = draw(st.integers(1, p.samples_per_frame(mtu, gyro)))
    block = hnp.arrays(np.int16, (n, 3))
    return p.SampleFrame(draw(u16), draw(u32), draw(block), draw(block) if gyro else None)


@st.composite
def status_frames(draw):
    streaming = draw(st.booleans())
    reason = p.StopReason.NONE if streaming else draw(st.sampled_from(list(p.StopReason)[1:]))
    error_code = draw(u16) if reason == p.StopReason.ERROR else 0
    oldest, nxt = sorted((draw(u32), draw(u32)))
    battery = draw(st.one_of(st.integers(0, 100), st.just(p.BATTERY_UNKNOWN)))
    session = draw(st.integers(1, 0xFFFFFFFF))
    return p.StatusFrame(
        draw(u16), streaming, draw(st.booleans()), battery, reason, error_code, session, oldest, nxt
    )


time_sync_frames = st.builds(p.TimeSyncFrame, u16, u32, u64, u32, st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(p.ATT_MIN_MTU, 247))
def test_frame_round_trip_at_every_mtu(data, mtu):
    frame = data.draw(st.one_of(sample_frames(mtu), time_sync_frames, status_frames()))
    raw = p.encode_frame(frame)
    assert len(raw) <= mtu - p.ATT_OVERHEAD
    assert p.decode_frame(raw) == frame


@given(st.integers(p.ATT_MIN_MTU, p.ATT_MAX_MTU), st.booleans())
def test_full_frames_fill_the_mtu(mtu, gyro):
    n = p.samples_per_frame(mtu, gyro)
    size = p.DATA_HEADER_SIZE + n * (12 if gyro else 6)
    assert size <= mtu - p.ATT_OVERHEAD
    assert n == p.MAX_SAMPLES_PER_FRAME or size + (12 if gyro else 6) > mtu - p.ATT_OVERHEAD


def test_frame_sizes_at_the_usual_mtus():
    table = {(23, False): 2, (23, True): 1, (185, False): 29, (247, False): 39, (247, True): 19}
    for (mtu, gyro), n in table.items():
        assert p.samples_per_frame(mtu, gyro) == n
    with pytest.raises(ValueError):
        p.samples_per_frame(22)


commands = st.one_of(
    st.builds(
        p.StartCommand,
        st.integers(0, 255),
        st.integers(1, 0xFFFF),
        st.integers(1, 255),
        st.one_of(st.just(0), st.integers(1, 0xFFFF)),
        st.booleans(),
    ),
    st.builds(p.StopCommand, st.integers(0, 255)),
    st.builds(p.ResumeCommand, st.integers(0, 255), u32, u32),
    st.builds(p.GetInfoCommand, st.integers(0, 255)),
    st.builds(p.SetTimeCommand, st.integers(0, 255), u64),
)


@st.composite
def replies(draw):
    token = draw(st.integers(0, 255))
    kind = draw(st.sampled_from(["error", "start", "stop", "resume", "info", "time"]))
    session = draw(st.integers(1, 0xFFFFFFFF))
    if kind == "error":
        return p.ErrorReply(draw(st.integers(0, 0x7F)), token, draw(st.integers(1, 255)))
    if kind == "start":
        return p.StartReply(token, session)
    if kind == "stop":
        return p.StopReply(token, draw(u32))
    if kind == "resume":
        a, b, c = sorted((draw(u32), draw(u32), draw(u32)))
        return p.ResumeReply(token, session, a, b, c, draw(st.booleans()))
    if kind == "time":
        return p.SetTimeReply(token, draw(u64), draw(st.booleans()))
    state = draw(st.sampled_from(list(p.State)))
    if state == p.State.IDLE:
        return p.GetInfoReply(token, state)
    reason = (
        p.StopReason.NONE
        if state == p.State.STREAMING
        else draw(st.sampled_from(list(p.StopReason)[1:]))
    )
    return p.GetInfoReply(
        token,
        state,
        session,
        draw(st.integers(1, 0xFFFF)),
        draw(st.integers(1, 255)),
        draw(st.one_of(st.just(0), st.integers(1, 0xFFFF))),
        draw(st.booleans()),
        reason,
        draw(u32),
    )


@settings(max_examples=300)
@given(commands)
def test_command_round_trip(cmd):
    raw = p.encode_command(cmd)
    assert len(raw) <= p.ATT_MIN_MTU - p.ATT_OVERHEAD
    assert p.decode_command(raw) == cmd


@settings(max_examples=300)
@given(replies())
def test_reply_round_trip(reply):
    raw = p.encode_reply(reply)
    assert len(raw) <= p.ATT_MIN_MTU - p.ATT_OVERHEAD  # indications work at any MTU
    assert p.decode_reply(raw) == reply


scales = st.floats(0.0625, 1048576.0, width=32)
text = st.text(max_size=10).filter(lambda s: len(s.encode()) <= p.MAX_STRING)


@st.composite
def infos(draw):
    rates = sorted(draw(st.sets(st.integers(1, 0xFFFF), min_size=1, max_size=p.MAX_RATES)))
    acc = sorted(draw(st.sets(st.integers(1, 255), min_size=1, max_size=p.MAX_RANGES)))
    gyro = sorted(draw(st.sets(st.integers(1, 0xFFFF), max_size=p.MAX_RANGES)))
    buffer = draw(st.integers(1, 0xFFFFFFFF))
    return p.Info(
        tuple(rates),
        tuple(p.AccRange(g, draw(scales)) for g in acc),
        tuple(p.GyroRange(r, draw(scales)) for r in gyro),
        buffer,
        draw(st.integers(1, 0xFFFFFFFF)) if gyro else 0,
        draw(text),
        draw(text),
        draw(text),
        draw(st.booleans()),
        draw(st.integers(1, 255)),
        draw(st.integers(1, 255)),
        minor=draw(st.integers(0, 255)),
    )


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(infos())
def test_info_round_trip(info):
    raw = p.encode_info(info)
    assert len(raw) <= 512
    assert p.decode_info(raw) == info


# -- random bytes -------------------------------------------------------------------------
def _canonical(decode, encode, raw: bytes) -> None:
    """Decoding raises nothing but ProtocolError; what decodes re-encodes to itself."""
    try:
        decoded = decode(raw)
    except p.ProtocolError:
        return
    assert encode(decoded) == raw


headed = st.tuples(st.sampled_from([0, 1, 2, 3, 0x7F, 0x81, 0x84]), st.binary(max_size=300))


@settings(max_examples=1500)
@given(st.one_of(st.binary(max_size=300), headed.map(lambda t: bytes([t[0]]) + t[1])))
def test_random_bytes_only_raise_protocol_error(raw):
    _canonical(p.decode_frame, p.encode_frame, raw)
    _canonical(p.decode_command, p.encode_command, raw)
    _canonical(p.decode_reply, p.encode_reply, raw)
    batch = p.decode_frames([raw, raw])
    assert len(batch.errors) + len(batch.others) + len(batch.position) == 2


@settings(max_examples=500)
@given(st.binary(min_size=14, max_size=120))
def test_random_info_only_raises_protocol_error(body):
    raw = bytearray(b"PMLD\x01\x00" + body)
    raw[6:8] = len(raw).to_bytes(2, "little")
    raw[8] &= 0x03
    raw[9] &= 0x01
    try:
        info = p.decode_info(bytes(raw))
    except p.ProtocolError:
        return
    assert p.encode_info(info) == bytes(raw)


# -- batch decoding -----------------------------------------------------------------------
def test_batch_decode_matches_frame_by_frame():
    frames = []
    first = 0
    for seq, n in enumerate([2, 2, 39, 1, 2, 39, 5]):
        frames.append(p.encode_frame(p.SampleFrame(seq, first, p.pattern_samples(first, n))))
        first += n
    frames.insert(3, p.encode_frame(p.TimeSyncFrame(99, 5, 123, 4, True)))
    frames.insert(5, b"\x7f" + bytes(19))
    frames.insert(6, frames[0][:10])
    frames.insert(
        8, p.encode_frame(p.SampleFrame(7, 0, *np.split(p.pattern_samples(0, 2, 6), 2, 1)))
    )
    batch = p.decode_frames(frames)
    assert [pos for pos, _ in batch.errors] == [5, 6, 8]
    assert [e.kind for _, e in batch.errors] == ["unknown_type", "truncated", "bad_value"]
    assert [pos for pos, _ in batch.others] == [3]
    singles = [(i, p.decode_frame(f)) for i, f in enumerate(frames) if i not in (3, 5, 6, 8)]
    assert batch.position.tolist() == [i for i, _ in singles]
    assert batch.seq.tolist() == [f.seq for _, f in singles]
    assert batch.first_index.tolist() == [f.first_index for _, f in singles]
    assert np.array_equal(batch.acc, np.concatenate([f.acc for _, f in singles]))
    assert np.array_equal(batch.acc, p.pattern_samples(0, first))
    assert batch.offsets[-1] == batch.n_samples == first
    assert batch.gyro is None


def test_batch_decode_of_a_gyro_session():
    block = p.pattern_samples(0, 20, 6)
    frames = [
        p.encode_frame(p.SampleFrame(0, 0, block[:19, :3], block[:19, 3:])),
        p.encode_frame(p.SampleFrame(1, 19, block[19:, :3], block[19:, 3:])),
        p.encode_frame(p.SampleFrame(2, 20, block[:2, :3])),
    ]
    batch = p.decode_frames(frames, gyro=True)
    assert np.array_equal(np.hstack([batch.acc, batch.gyro]), block)
    assert [e.kind for _, e in batch.errors] == ["bad_value"]
    empty = p.decode_frames([], gyro=True)
    assert empty.acc.shape == (0, 3) and empty.gyro.shape == (0, 3)


def test_seq_delta_wraps():
    assert p.seq_delta(0xFFFF, 0) == 1
    assert p.seq_delta(5, 5) == 0
    assert p.seq_delta(0xFFFE, 3) == 5
    assert p.seq_delta(3, 0xFFFE) == -5


# -- the device model ---------------------------------------------------------------------
def reference_info(**changes) -> p.Info:
    args = dict(
        rates_hz=(25, 50, 100, 200),
        acc_ranges=(p.AccRange(2, 16384.0), p.AccRange(8, 4096.0)),
        buffer_samples=1000,
        model="test",
        stop_on_overflow=True,
    )
    args.update(changes)
    return p.Info(**args)


def test_ring_buffer_replays_and_forgets():
    ring = p.RingBuffer(12)
    ring.append(p.pattern_samples(0, 3))
    ring.append(p.pattern_samples(3, 3))
    assert (ring.oldest_index, ring.next_index, ring.full) == (2, 6, True)
    assert np.array_equal(ring.read(2, 4), p.pattern_samples(2, 4))
    with pytest.raises(IndexError):
        ring.read(1, 1)
    ring.append(p.pattern_samples(6, 10))  # more than the capacity at once
    assert np.array_equal(ring.read(12, 4), p.pattern_samples(12, 4))
    ring.reset(6)
    assert ring.capacity == 2 and ring.next_index == 0


def test_device_refuses_an_info_it_cannot_serve():
    with pytest.raises(ValueError):
        p.DeviceModel(reference_info(buffer_samples_gyro=3))
    with pytest.raises(ValueError):
        p.DeviceModel(reference_info(buffer_samples=0))


def test_sequence_numbers_wrap_in_the_device():
    device = p.DeviceModel(reference_info())
    device.handle_command(p.encode_command(p.StartCommand(1, 100, 8)), 0)
    device.seq = 0xFFFF
    device.acquire(p.pattern_samples(0, 2), [10, 20])
    assert p.decode_frame(device.next_frame(23, 30)).seq == 0xFFFF
    assert p.decode_frame(device.next_frame(23, 30)).seq == 0


def test_sample_index_stops_short_of_the_u32_limit():
    device = p.DeviceModel(reference_info())
    device.handle_command(p.encode_command(p.StartCommand(1, 100, 8)), 0)
    device.ring.next_index = device.sent_until = device.cursor = p.INDEX_LIMIT - 3
    assert device.acquire(p.pattern_samples(0, 5), range(5)) == 2
    assert device.state == p.State.STOPPED and device.stop_reason == p.StopReason.ERROR
    status = p.decode_frame(device.next_frame(23, 10))
    assert status.error_code == p.ERROR_INDEX_LIMIT and status.next_index == p.INDEX_LIMIT - 1


class Host:
    """A minimal receiver: RESUMEs from what it holds and keeps exact gap accounting."""

    def __init__(self, device: p.DeviceModel, mtu: int):
        self.device, self.mtu = device, mtu
        self.samples: dict[int, np.ndarray] = {}
        self.expected = 0
        self.gaps: list[tuple[int, int]] = []
        self.overflow = False

    def receive(self, now_us: int, flush: bool, limit: int | None = None) -> None:
        got = 0
        while limit is None or got < limit:
            raw = self.device.next_frame(self.mtu, now_us, flush)
            if raw is None:
                return
            got += 1
            frame = p.decode_frame(raw)
            if isinstance(frame, p.StatusFrame):
                self.overflow = self.overflow or frame.overflow
            if isinstance(frame, p.SampleFrame):
                if frame.first_index > self.expected:
                    # the ring overwrote samples before the link could take them; the
                    # band said so in a STATUS frame first
                    assert self.overflow
                    self.gaps.append((self.expected, frame.first_index - self.expected))
                assert frame.first_index >= self.expected
                for k in range(frame.count):
                    self.samples[frame.first_index + k] = frame.acc[k]
                self.expected = frame.stop_index

    def lose(self, now_us: int, count: int) -> None:
        """Frames the band handed to its stack just before the link died."""
        for _ in range(count):
            self.device.next_frame(self.mtu, now_us, True)

    def resume(self, session_id: int) -> None:
        raw = self.device.handle_command(
            p.encode_command(p.ResumeCommand(0, session_id, self.expected)), 0
        )
        reply = p.decode_reply(raw)
        assert isinstance(reply, p.ResumeReply)
        if reply.overwritten:
            self.gaps.append((self.expected, reply.lost_samples))
        self.expected = reply.first_index


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 400), st.booleans(), st.booleans()), min_size=1, max_size=25),
    st.sampled_from([23, 100, 247]),
    st.randoms(use_true_random=False),
)
def test_drops_and_resumes_lose_nothing_the_ring_still_holds(plan, mtu, rng):
    """Every sample arrives exactly once, or lies in a gap the RESUME reply reported."""
    device = p.DeviceModel(reference_info(buffer_samples=300))
    start = p.decode_reply(device.handle_command(p.encode_command(p.StartCommand(1, 100, 8)), 0))
    host = Host(device, mtu)
    now = 0
    for n, drop, lossy in plan:
        times = now + 10_000 * np.arange(n)
        device.acquire(p.pattern_samples(device.next_index, n), times)
        now += 10_000 * n
        if drop:
            # the link dies; with `lossy`, the last frames the band sent are lost
            host.receive(now, flush=True, limit=rng.randint(0, 20))
            if lossy:
                host.lose(now, rng.randint(1, 10))
            device.disconnect()
            device.acquire(p.pattern_samples(device.next_index, n), now + 10_000 * np.arange(n))
            now += 10_000 * n
            host.resume(start.session_id)
        else:
            host.receive(now, flush=False)
    host.receive(now, flush=True)
    assert host.expected == device.next_index
    missing = sorted(set(range(device.next_index)) - set(host.samples))
    in_gaps = [i for first, n in host.gaps for i in range(first, first + n)]
    assert missing == in_gaps
    got = np.array([host.samples[i] for i in sorted(host.samples)]).reshape(-1, 3)
    assert np.array_equal(got, p.pattern_samples(0, device.next_index)[sorted(host.samples)])


def test_info_gives_the_sensor_device_metadata():
    info = reference_info(
        gyro_ranges=(p.GyroRange(2000, float(np.float32(16.4))),), buffer_samples_gyro=500
    )
    meta = info.device_metadata(8, 2000)
    assert meta["counts_per_g"] == 4096.0 and meta["range_g"] == 8
    assert meta["gyro_counts_per_dps"] == pytest.approx(16.4)
    assert meta["protocol"] == "pmld-ble 1.0"
    with pytest.raises(p.ProtocolError, match="no \\+-3 g range"):
        info.device_metadata(3)
