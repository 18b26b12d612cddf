"""Polar Measurement Data (pmld.ble.pmd): cross-checks, a slow reference, properties, bad input.

* against ``polar-python`` (an independent decoder) on frames of every ACC frame type it
  supports, with several FACTORs, many blocks and every delta bit width 2..16;
* against a slow bit-by-bit decoder written here from the protocol description, on random
  batches mixing good, truncated and malformed frames;
* encode -> decode identity and ``fill_acc_frame``'s budget (Hypothesis);
* control point commands, answers and settings.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polar_python.parsers.polar import parse_polar_data

from pmld.ble import pmd
from pmld.errors import InputError

ACC = 2
RAW_TYPES = (0x00, 0x01, 0x02)
DELTA_TYPES = (0x80, 0x81)
ALL_TYPES = RAW_TYPES + DELTA_TYPES
RAW_BYTES = {0x00: 1, 0x01: 2, 0x02: 3}
INT16 = (-(1 << 15), (1 << 15) - 1)


# -- helpers ------------------------------------------------------------------------------
def signed_width(values) -> int:
    """Smallest two's complement width holding every value (0 for no values)."""
    width = 0
    for v in np.asarray(values).reshape(-1).tolist():
        w = 1
        while not -(1 << (w - 1)) <= v < (1 << (w - 1)):
            w += 1
        width = max(width, w)
    return width


def walk(rng: np.random.Generator, n: int, widths: list[int], start=None) -> np.ndarray:
    """``n`` int16 samples whose successive deltas need exactly ``widths[i % len]`` bits.

    Each delta of width w has one channel at an extreme of w bits (-2**(w-1) or
    2**(w-1) - 1) and the others anywhere in w bits; the walk turns back at the int16
    limits so that it stays inside them.
    """
    cur = np.array(start if start is not None else rng.integers(-2000, 2000, 3), np.int64)
    out = [cur.copy()]
    for i in range(n - 1):
        w = widths[i % len(widths)]
        lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
        d = rng.integers(lo, hi + 1, 3)
        d[rng.integers(3)] = lo if rng.random() < 0.5 else hi
        nxt = cur + d
        bad = (nxt < INT16[0]) | (nxt > INT16[1])
        # mirror the offending channels: -lo > hi, so a flipped lo becomes hi + 1 -> clip
        d[bad] = np.clip(-d[bad], lo, hi)
        nxt = cur + d
        assert ((nxt >= INT16[0]) & (nxt <= INT16[1])).all()
        cur = nxt
        out.append(cur.copy())
    return np.array(out, np.int64)


def polar(frame: bytes, factor: float):
    return parse_polar_data(bytearray(frame), lambda measurement_type: factor)


def frame_blocks(frame: bytes) -> list[tuple[int, int, int]]:
    """(byte offset, bit width, count) of each block of a compressed frame."""
    pos, out = 16, []
    while pos < len(frame):
        bits, count = frame[pos], frame[pos + 1]
        out.append((pos, bits, count))
        pos += 2 + (bits * count * 3 + 7) // 8
    return out


def check_one_line(error) -> None:
    text = str(error)
    assert text and "\n" not in text


# -- a slow reference decoder, bit by bit, from the protocol description ---------------------
class RefError(Exception):
    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


def ref_signed(raw: bytes) -> int:
    value = 0
    for i, byte in enumerate(raw):
        value += byte << (8 * i)
    top = 1 << (8 * len(raw) - 1)
    return value - 2 * top if value >= top else value


def ref_decode(frame: bytes, factor: float = 1.0):
    """``(timestamp, frame type, unit_mg, [(x, y, z), ...])`` or raises RefError(kind)."""
    if len(frame) < 10:
        raise RefError("truncated")
    if frame[0] != ACC:
        raise RefError("not_acc")
    stamp = 0
    for i in range(8):
        stamp |= frame[1 + i] << (8 * i)
    ftype = frame[9]
    body = frame[10:]
    if ftype in RAW_BYTES:
        size = RAW_BYTES[ftype]
        if len(body) % (3 * size):
            raise RefError("truncated")
        channels = [ref_signed(body[i : i + size]) for i in range(0, len(body), size)]
        samples = [tuple(channels[i : i + 3]) for i in range(0, len(channels), 3)]
        return stamp, ftype, 1.0, samples
    if ftype not in (0x80, 0x81):
        raise RefError("unknown_frame_type")
    if len(body) < 6:
        raise RefError("truncated")
    last = [ref_signed(body[2 * c : 2 * c + 2]) for c in range(3)]
    samples = [tuple(last)]
    pos = 6
    while pos < len(body):
        if pos + 2 > len(body):
            raise RefError("truncated")
        width, count = body[pos], body[pos + 1]
        if width < 1 or width > 16:
            raise RefError("bad_bit_width")
        nbits = width * count * 3
        nbytes = nbits // 8 + (1 if nbits % 8 else 0)
        if pos + 2 + nbytes > len(body):
            raise RefError("truncated")
        payload = body[pos + 2 : pos + 2 + nbytes]
        bit = 0
        for _ in range(count):
            for c in range(3):
                value = 0
                for i in range(width):
                    byte, shift = divmod(bit, 8)
                    if payload[byte] >> shift & 1:
                        value |= 1 << i
                    bit += 1
                if value & (1 << (width - 1)):
                    value -= 1 << width
                last[c] += value
            samples.append(tuple(last))
        pos += 2 + nbytes
    unit = 1000.0 * factor if ftype == 0x80 else factor
    return stamp, ftype, unit, samples


def test_encode(samples, stamp: int, ftype: int, widths) -> bytes:
    """An independent encoder (not pmd's): raw, or delta blocks at the given widths.

    ``widths`` is a list of (width, count) blocks for the deltas; a width may be larger
    than needed, or 1 (deltas in -1..0); the deltas must fit.
    """
    samples = np.asarray(samples, np.int64).reshape(-1, 3)
    out = bytearray([ACC]) + stamp.to_bytes(8, "little") + bytes([ftype])
    if ftype in RAW_BYTES:
        size = RAW_BYTES[ftype]
        for v in samples.reshape(-1).tolist():
            out += (v % (1 << (8 * size))).to_bytes(size, "little")
        return bytes(out)
    for v in samples[0].tolist():
        out += (v % 65536).to_bytes(2, "little")
    deltas = np.diff(samples, axis=0).tolist()
    at = 0
    for width, count in widths:
        bits = []
        for d in deltas[at : at + count]:
            for v in d:
                assert -(1 << (width - 1)) <= v < (1 << (width - 1)), (v, width)
                bits += [(v >> i) & 1 for i in range(width)]
        bits += [0] * (-len(bits) % 8)
        out += bytes([width, count])
        out += bytes(
            sum(b << i for i, b in enumerate(bits[j : j + 8])) for j in range(0, len(bits), 8)
        )
        at += count
    assert at == len(deltas)
    return bytes(out)


test_encode.__test__ = False  # a helper, not a test


# -- 1. cross-check against polar-python ----------------------------------------------------
FACTORS = {0x00: [1.0], 0x01: [1.0], 0x80: [1.0, 0.5, 1 / 4096], 0x81: [1.0, 0.5, 1 / 4096]}


def compare_with_polar(frame: bytes, factor: float) -> int:
    batch = pmd.decode_acc_frames([frame], factor)
    assert not batch.errors, batch.errors
    theirs = polar(frame, factor)
    assert theirs.timestamp == int(batch.timestamp_ns[0]) + pmd.EPOCH_2000_NS
    ours_mg = np.trunc(batch.values.astype(np.float64) * batch.unit_mg[0])
    expected = np.array(theirs.data, np.float64).reshape(-1, 3)
    np.testing.assert_array_equal(ours_mg, expected)
    assert batch.unit_mg[0] == pmd.frame_unit_mg(frame[9], factor)
    return len(expected)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ftype", [0x00, 0x01])
def test_raw_frames_agree_with_polar_python(ftype, seed):
    rng = np.random.default_rng(seed)
    lim = 1 << (8 * RAW_BYTES[ftype] - 1)
    for n in (1, 2, 13, 40, 80):
        samples = rng.integers(-lim, lim, (n, 3))
        samples[0] = [-lim, lim - 1, 0]  # the extremes of the type
        stamp = int(rng.integers(0, 1 << 62))
        frame = pmd.encode_acc_frame(samples, stamp, ftype)
        assert compare_with_polar(frame, 1.0) == n
        assert frame == test_encode(samples, stamp, ftype, [])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ftype", DELTA_TYPES)
def test_compressed_frames_agree_with_polar_python(ftype, seed):
    rng = np.random.default_rng(100 + seed)
    seen_widths: set[int] = set()
    for factor in FACTORS[ftype]:
        # every width 2..16 in its own blocks of a few samples, then random orders
        plans = [list(range(2, 17)), rng.permutation(np.arange(2, 17)).tolist(), [16, 2, 16]]
        for widths in plans:
            for block_samples in (1, 3, 7, 255):
                per_block = 1 if block_samples == 255 else block_samples
                steps = [w for w in widths for _ in range(per_block)]
                samples = walk(rng, len(steps) + 1, steps)
                stamp = int(rng.integers(0, 1 << 62))
                frame = pmd.encode_acc_frame(samples, stamp, ftype, block_samples=block_samples)
                blocks = frame_blocks(frame)
                seen_widths.update(bits for _, bits, _ in blocks)
                assert len(blocks) == -(-(len(samples) - 1) // block_samples)
                assert compare_with_polar(frame, factor) == len(samples)
                ours = pmd.decode_acc_frames([frame]).values
                np.testing.assert_array_equal(ours, samples)
    assert seen_widths == set(range(2, 17))


@pytest.mark.parametrize("ftype", DELTA_TYPES)
def test_compressed_extremes_and_single_sample_agree_with_polar_python(ftype):
    lo, hi = INT16
    extreme = [
        [[lo, hi, 0]],  # reference only
        [[hi, lo, -1]],
        # deltas of -32768 and 32767, the 16-bit extremes
        [[lo, hi, 0], [-1, -1, lo], [hi - 1, lo, -1], [-2, -1, hi - 1], [0, 0, 0]],
        [[0, 0, 0], [hi, lo + 1, 1], [0, 0, 0]],  # deltas of +-32767
        [[-16384, 16383, 0], [16383, -16384, 0]],  # +-32767 again, around zero
    ]
    for factor in FACTORS[ftype]:
        for rows in extreme:
            samples = np.array(rows, np.int64)
            for block_samples in (1, 255):
                frame = pmd.encode_acc_frame(samples, 123, ftype, block_samples=block_samples)
                if len(samples) == 1:
                    assert len(frame) == 16
                assert compare_with_polar(frame, factor) == len(samples)
                np.testing.assert_array_equal(pmd.decode_acc_frames([frame]).values, samples)


def test_hand_encoded_frames_agree_with_polar_python():
    """Our own encoder's frames (wider than needed widths, empty blocks) read the same."""
    rng = np.random.default_rng(7)
    for trial in range(30):
        n = int(rng.integers(2, 40))
        samples = walk(rng, n, [int(rng.integers(2, 12))])
        need = max(2, signed_width(np.diff(samples, axis=0)))
        plan, left = [], n - 1
        while left:
            count = int(min(left, rng.integers(1, 9)))
            plan.append((int(rng.integers(need, 17)), count))
            if rng.random() < 0.2:
                plan.append((int(rng.integers(2, 17)), 0))
            left -= count
        ftype = DELTA_TYPES[trial % 2]
        frame = test_encode(samples, int(rng.integers(0, 1 << 63)), ftype, plan)
        assert compare_with_polar(frame, 0.5) == n
        np.testing.assert_array_equal(pmd.decode_acc_frames([frame]).values, samples)


def test_frames_agree_with_polar_python_random_seeds():
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        ftype = int(rng.choice(list(FACTORS)))
        factor = float(rng.choice(FACTORS[ftype]))
        n = int(rng.integers(1, 120))
        if ftype in RAW_BYTES:
            lim = 1 << (8 * RAW_BYTES[ftype] - 1)
            samples = rng.integers(-lim, lim, (n, 3))
            frame = pmd.encode_acc_frame(samples, int(rng.integers(0, 1 << 63)), ftype)
        else:
            samples = walk(rng, n, rng.integers(2, 17, 5).tolist())
            frame = pmd.encode_acc_frame(
                samples,
                int(rng.integers(0, 1 << 63)),
                ftype,
                block_samples=int(rng.integers(1, 256)),
            )
        assert compare_with_polar(frame, factor) == n


# -- 2. the vectorised batch decoder against the slow reference -----------------------------
def random_good_frame(rng: np.random.Generator) -> bytes:
    ftype = int(rng.choice(ALL_TYPES))
    stamp = int(rng.integers(0, 1 << 63)) * int(rng.integers(1, 3))  # all 64 bits
    n = int(rng.integers(0 if ftype in RAW_BYTES else 1, 70))
    if ftype in RAW_BYTES:
        lim = 1 << (8 * RAW_BYTES[ftype] - 1)
        return test_encode(rng.integers(-lim, lim, (n, 3)), stamp, ftype, [])
    plan, left = [], n - 1
    while left or rng.random() < 0.1:
        count = int(min(left, rng.integers(0, 30)))
        plan.append((int(rng.integers(1, 17)), count))
        left -= count
    deltas = []
    for width, count in plan:
        deltas.append(rng.integers(-(1 << (width - 1)), 1 << (width - 1), (count, 3)))
    start = rng.integers(*INT16, endpoint=True, size=(1, 3))
    samples = np.cumsum(np.concatenate([start] + deltas), axis=0)  # may leave int16
    return test_encode(samples, stamp, ftype, plan)


def random_bad_frame(rng: np.random.Generator, good: bytes) -> bytes:
    kind = int(rng.integers(6))
    if kind == 0:  # cut anywhere
        return good[: int(rng.integers(0, len(good) + 1))]
    if kind == 1:  # another measurement type
        return bytes([int(rng.choice([0, 1, 3, 5, 6, 9, 255]))]) + good[1:]
    if kind == 2:  # another frame type
        return good[:9] + bytes([int(rng.integers(256))]) + good[10:]
    if kind == 3 and good[9] & 0x80 and len(good) > 17:  # a first block's width
        return good[:16] + bytes([int(rng.choice([0, 17, int(rng.integers(17, 256))]))]) + good[17:]
    if kind == 4:  # extra bytes
        return good + bytes(rng.integers(0, 256, int(rng.integers(1, 5))).tolist())
    return bytes([ACC]) + bytes(rng.integers(0, 256, int(rng.integers(0, 80))).tolist())


def check_against_reference(frames: list[bytes], factor: float) -> tuple[int, int]:
    batch = pmd.decode_acc_frames(frames, factor)
    positions, stamps, ftypes, units, offsets, values = [], [], [], [], [0], []
    kinds = {}
    for k, frame in enumerate(frames):
        try:
            stamp, ftype, unit, samples = ref_decode(frame, factor)
        except RefError as e:
            kinds[k] = e.kind
            continue
        positions.append(k)
        stamps.append(stamp)
        ftypes.append(ftype)
        units.append(unit)
        offsets.append(offsets[-1] + len(samples))
        values.extend(samples)
    assert {k: e.kind for k, e in batch.errors} == kinds
    assert [k for k, _ in batch.errors] == sorted(kinds)
    for _, e in batch.errors:
        assert isinstance(e, pmd.PmdError) and isinstance(e, InputError)
        check_one_line(e)
    np.testing.assert_array_equal(batch.position, positions)
    assert batch.timestamp_ns.dtype == np.int64
    np.testing.assert_array_equal(batch.timestamp_ns.astype(np.uint64), np.array(stamps, np.uint64))
    np.testing.assert_array_equal(batch.frame_type, np.array(ftypes, np.uint8))
    np.testing.assert_array_equal(batch.unit_mg, np.array(units, np.float64))
    np.testing.assert_array_equal(batch.offsets, offsets)
    np.testing.assert_array_equal(batch.count, np.diff(offsets))
    assert batch.n_samples == offsets[-1] and len(batch) == len(positions)
    assert batch.values.shape == (offsets[-1], 3) and batch.values.dtype == np.int32
    np.testing.assert_array_equal(batch.values, np.array(values, np.int64).reshape(-1, 3))
    return len(positions), len(kinds)


def test_batch_decoder_equals_reference_on_random_batches():
    rng = np.random.default_rng(2024)
    good = bad = 0
    for _ in range(120):
        frames = []
        for _ in range(int(rng.integers(0, 40))):
            frame = random_good_frame(rng)
            if rng.random() < 0.3:
                frame = random_bad_frame(rng, frame)
            frames.append(frame if rng.random() < 0.8 else bytearray(frame))
        factor = float(rng.choice([1.0, 0.5, 1 / 4096, 0.001]))
        g, b = check_against_reference(frames, factor)
        good, bad = good + g, bad + b
    assert good > 1000 and bad > 200


def test_batch_decoder_equals_reference_on_pmd_encoded_batches():
    rng = np.random.default_rng(5)
    for _ in range(30):
        frames = []
        for _ in range(int(rng.integers(1, 25))):
            ftype = int(rng.choice(ALL_TYPES))
            if ftype in RAW_BYTES:
                lim = 1 << (8 * RAW_BYTES[ftype] - 1)
                samples = rng.integers(-lim, lim, (int(rng.integers(0, 50)), 3))
                frames.append(pmd.encode_acc_frame(samples, int(rng.integers(1 << 40)), ftype))
            else:
                samples = walk(rng, int(rng.integers(1, 60)), rng.integers(2, 17, 4).tolist())
                frames.append(
                    pmd.encode_acc_frame(
                        samples,
                        int(rng.integers(1 << 40)),
                        ftype,
                        block_samples=int(rng.integers(1, 256)),
                    )
                )
        check_against_reference(frames, 1.0)


def test_reference_decoder_agrees_with_polar_python():
    """The reference itself, checked against the other independent decoder."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        frame = random_good_frame(rng)
        if frame[9] == 0x02:
            continue  # polar-python has no raw int24 ACC
        # polar-python does not sign-extend 1-bit deltas: widen them to 2 bits
        if frame[9] & 0x80 and any(bits == 1 for _, bits, _ in frame_blocks(frame)):
            continue
        stamp, _, unit, samples = ref_decode(frame, 0.5)
        theirs = polar(frame, 0.5)
        assert theirs.timestamp == stamp + pmd.EPOCH_2000_NS
        expected = np.trunc(np.array(samples, np.float64).reshape(-1, 3) * unit)
        np.testing.assert_array_equal(np.array(theirs.data, np.float64).reshape(-1, 3), expected)


# -- 3. properties ------------------------------------------------------------------------
def samples_strategy(lo: int, hi: int, min_rows: int):
    return st.integers(min_rows, 60).flatmap(
        lambda n: st.lists(st.tuples(*[st.integers(lo, hi)] * 3), min_size=n, max_size=n)
    )


@st.composite
def walks(draw, min_rows: int = 1):
    """int16 random walks with steps of mixed magnitudes (bit widths 2..16)."""
    n = draw(st.integers(min_rows, 120))
    start = draw(st.tuples(*[st.integers(*INT16)] * 3))
    scale = draw(st.lists(st.integers(0, 15), min_size=1, max_size=6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    steps = [int(scale[i % len(scale)]) + 1 for i in range(max(n - 1, 0))]
    return walk(rng, n, steps or [2], start=start)


PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    ftype=st.sampled_from(RAW_TYPES),
    data=st.data(),
    stamp=st.integers(0, 2**64 - 1),
)
def test_raw_round_trip(ftype, data, stamp):
    lim = 1 << (8 * RAW_BYTES[ftype] - 1)
    samples = np.array(data.draw(samples_strategy(-lim, lim - 1, 0)), np.int64).reshape(-1, 3)
    frame = pmd.encode_acc_frame(samples, stamp, ftype)
    assert len(frame) == 10 + 3 * RAW_BYTES[ftype] * len(samples)
    t, values, unit = pmd.decode_acc_frame(frame)
    np.testing.assert_array_equal(values, samples)
    assert unit == pmd.frame_unit_mg(ftype)
    assert t % (1 << 64) == stamp


@PROPERTY
@given(
    ftype=st.sampled_from(DELTA_TYPES),
    data=st.data(),
    stamp=st.integers(0, 2**64 - 1),
    block_samples=st.integers(1, 255),
    factor=st.sampled_from([1.0, 0.5, 1 / 4096]),
)
def test_compressed_round_trip(ftype, data, stamp, block_samples, factor):
    if data.draw(st.booleans()):
        samples = data.draw(walks())
    else:  # anywhere in int16: a delta may need 17 bits, which PMD cannot carry
        samples = np.array(data.draw(samples_strategy(*INT16, 1)), np.int64).reshape(-1, 3)
    if signed_width(np.diff(samples, axis=0)) > 16:
        with pytest.raises(ValueError, match="bits"):
            pmd.encode_acc_frame(samples, stamp, ftype, block_samples=block_samples)
        return
    frame = pmd.encode_acc_frame(samples, stamp, ftype, block_samples=block_samples)
    deltas = np.diff(samples, axis=0)
    blocks = frame_blocks(frame)
    assert sum(count for _, _, count in blocks) == len(deltas)
    for i, (_, bits, count) in enumerate(blocks):
        assert 1 <= count <= block_samples
        # each block at the smallest width its deltas need (2 at least)
        block = deltas[i * block_samples : i * block_samples + count]
        assert bits == max(2, signed_width(block))
    t, values, unit = pmd.decode_acc_frame(frame, factor)
    np.testing.assert_array_equal(values, samples)
    assert unit == pmd.frame_unit_mg(ftype, factor)
    assert t % (1 << 64) == stamp


def test_block_width_is_the_smallest_that_holds_the_deltas():
    """Negative deltas only: -2**(w-1) needs w bits, not w + 1."""
    for w in range(2, 17):
        low = -(1 << (w - 1))
        for deltas in ([low, low, low], [low, -1, low], [low, 0, -2], [(1 << (w - 1)) - 1, low, 0]):
            samples = np.array([[0, 0, 0], deltas])
            frame = pmd.encode_acc_frame(samples, 0, 0x81)
            assert frame_blocks(frame) == [(16, w, 1)]
            assert pmd.fill_acc_frame(samples, 0x81, len(frame)) == 2
            assert pmd.fill_acc_frame(samples, 0x81, len(frame) - 1) == 1
            np.testing.assert_array_equal(pmd.decode_acc_frames([frame]).values, samples)


def encodes_within(samples, ftype, budget, block_samples) -> bool:
    try:
        return len(pmd.encode_acc_frame(samples, 0, ftype, block_samples=block_samples)) <= budget
    except ValueError:  # a 17-bit delta: never fits a frame
        return False


@PROPERTY
@given(
    ftype=st.sampled_from(ALL_TYPES),
    data=st.data(),
    budget=st.integers(16, 514),
    block_samples=st.sampled_from([1, 2, 5, 17, 255]),
)
def test_fill_acc_frame_fills_the_budget(ftype, data, budget, block_samples):
    if ftype in RAW_BYTES:
        lim = 1 << (8 * RAW_BYTES[ftype] - 1)
        n = data.draw(st.integers(0, 200))
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        samples = rng.integers(-lim, lim, (n, 3))
    elif data.draw(st.integers(0, 4)):
        samples = data.draw(walks(min_rows=0))
    else:
        samples = np.array(data.draw(samples_strategy(*INT16, 0)), np.int64).reshape(-1, 3)
    k = pmd.fill_acc_frame(samples, ftype, budget, block_samples=block_samples)
    assert 0 <= k <= len(samples)
    if ftype & 0x80:
        assert k >= min(1, len(samples))
    if k:
        assert encodes_within(samples[:k], ftype, budget, block_samples)
    if k < len(samples):
        assert not encodes_within(samples[: k + 1], ftype, budget, block_samples)


def test_fill_acc_frame_splits_a_stream_into_decodable_frames():
    rng = np.random.default_rng(3)
    samples = walk(rng, 3000, [2, 3, 5, 9, 16, 4, 2, 2])
    samples[1500] = [INT16[0], INT16[1], 0]  # a jump no 16-bit delta can carry
    samples[1501] = [INT16[1], INT16[0], 0]
    for ftype in (0x01, 0x81):
        frames, at = [], 0
        while at < len(samples):
            k = pmd.fill_acc_frame(samples[at:], ftype, 244)
            assert k >= 1
            frames.append(pmd.encode_acc_frame(samples[at : at + k], at + k - 1, ftype))
            assert len(frames[-1]) <= 244
            at += k
        batch = pmd.decode_acc_frames(frames)
        assert not batch.errors
        np.testing.assert_array_equal(batch.values, samples)
        np.testing.assert_array_equal(batch.timestamp_ns, batch.offsets[1:] - 1)
        # one notification at a time (a live recorder's usual call) and in small groups
        # take the decoder's block-by-block path; the result is the same
        for size in (1, 3):
            parts = [pmd.decode_acc_frames(frames[i : i + size]).values
                     for i in range(0, len(frames), size)]
            np.testing.assert_array_equal(np.concatenate(parts), samples)


def test_encoder_refuses_what_it_cannot_encode():
    with pytest.raises(ValueError):
        pmd.encode_acc_frame([[128, 0, 0]], 0, 0x00)
    with pytest.raises(ValueError):
        pmd.encode_acc_frame([[0, -32769, 0]], 0, 0x01)
    with pytest.raises(ValueError):
        pmd.encode_acc_frame([[0, 0, 1 << 23]], 0, 0x02)
    with pytest.raises(ValueError):
        pmd.encode_acc_frame([[32768, 0, 0]], 0, 0x81)
    with pytest.raises(ValueError):
        pmd.encode_acc_frame(np.zeros((0, 3)), 0, 0x80)
    with pytest.raises(ValueError):
        pmd.encode_acc_frame([[INT16[0], 0, 0], [INT16[1], 0, 0]], 0, 0x81)  # 17-bit delta
    with pytest.raises(ValueError):
        pmd.encode_acc_frame(np.zeros((2, 3)), 0, 0x81, block_samples=256)
    for ftype in (0x03, 0x7F, 0x82):
        with pytest.raises(ValueError):
            pmd.encode_acc_frame(np.zeros((2, 3)), 0, ftype)
        with pytest.raises(pmd.PmdError) as info:
            pmd.frame_unit_mg(ftype)
        assert info.value.kind == "unknown_frame_type"


# -- 4. bad input -------------------------------------------------------------------------
def good_pair(rng):
    a = pmd.encode_acc_frame(walk(rng, 9, [3, 8]), 11, 0x81, block_samples=3)
    b = pmd.encode_acc_frame(rng.integers(-300, 300, (5, 3)), 22, 0x01)
    return a, b


def check_batch_with(bad: bytes, kind: str | None, good: tuple[bytes, bytes], factor=1.0):
    """``[good0, bad, good1]``: bad is listed (or decodes, kind None), the good decode."""
    batch = pmd.decode_acc_frames([good[0], bad, good[1]], factor)
    alone = [pmd.decode_acc_frames([g], factor) for g in good]
    if kind is None:
        assert not batch.errors
        np.testing.assert_array_equal(batch.position, [0, 1, 2])
        keep = [0, 2]
    else:
        assert [(k, e.kind) for k, e in batch.errors] == [(1, kind)]
        check_one_line(batch.errors[0][1])
        np.testing.assert_array_equal(batch.position, [0, 2])
        keep = [0, 1]
        with pytest.raises(pmd.PmdError) as info:
            pmd.decode_acc_frame(bad, factor)
        assert info.value.kind == kind
    for slot, single in zip(keep, alone, strict=True):
        rows = slice(batch.offsets[slot], batch.offsets[slot + 1])
        np.testing.assert_array_equal(batch.values[rows], single.values)
        assert batch.timestamp_ns[slot] == single.timestamp_ns[0]
        assert batch.frame_type[slot] == single.frame_type[0]
    return batch


def test_truncated_compressed_frames_at_every_length():
    rng = np.random.default_rng(8)
    good = good_pair(rng)
    for widths, block_samples in (([2, 9, 16], 4), ([16], 1), ([5], 255)):
        samples = walk(rng, 13, widths)
        frame = pmd.encode_acc_frame(samples, 99, 0x81, block_samples=block_samples)
        blocks = frame_blocks(frame)
        assert len(blocks) >= 1
        ends = {16: 1}  # whole frames: byte length -> samples
        for pos, bits, count in blocks:
            ends[pos + 2 + (bits * count * 3 + 7) // 8] = ends[max(ends)] + count
        for cut in range(len(frame)):
            part = frame[:cut]
            if cut in ends:
                batch = check_batch_with(part, None, good)
                rows = slice(batch.offsets[1], batch.offsets[2])
                np.testing.assert_array_equal(batch.values[rows], samples[: ends[cut]])
            else:
                check_batch_with(part, "truncated", good)
        assert ends[len(frame)] == len(samples)


@pytest.mark.parametrize("ftype", RAW_TYPES)
def test_raw_frames_cut_at_every_length(ftype):
    rng = np.random.default_rng(ftype)
    good = good_pair(rng)
    lim = 1 << (8 * RAW_BYTES[ftype] - 1)
    samples = rng.integers(-lim, lim, (4, 3))
    frame = pmd.encode_acc_frame(samples, 5, ftype)
    step = 3 * RAW_BYTES[ftype]
    for cut in range(len(frame) + 1):
        part = frame[:cut]
        if cut >= 10 and (cut - 10) % step == 0:
            batch = check_batch_with(part, None, good)
            assert batch.count[1] == (cut - 10) // step
        else:
            check_batch_with(part, "truncated", good)


def test_unknown_frame_types():
    good = good_pair(np.random.default_rng(1))
    frame = pmd.encode_acc_frame(np.zeros((4, 3), np.int64), 5, 0x81)
    known = set(ALL_TYPES)
    for ftype in range(256):
        if ftype in known:
            continue
        bad = frame[:9] + bytes([ftype]) + frame[10:]
        batch = check_batch_with(bad, "unknown_frame_type", good)
        assert f"{ftype:02x}" in str(batch.errors[0][1])
    for ftype in (0x03, 0x7F, 0x82):
        check_batch_with(bytes([ACC]) + bytes(8) + bytes([ftype]), "unknown_frame_type", good)


def test_bad_bit_widths():
    rng = np.random.default_rng(2)
    good = good_pair(rng)
    frame = pmd.encode_acc_frame(walk(rng, 9, [4]), 5, 0x80, block_samples=4)
    blocks = frame_blocks(frame)
    assert len(blocks) == 2
    for pos, _, _ in blocks:
        for bits in [0, *range(17, 256)]:
            bad = frame[:pos] + bytes([bits]) + frame[pos + 1 :]
            batch = check_batch_with(bad, "bad_bit_width", good, factor=0.5)
            assert str(bits) in str(batch.errors[0][1])
    # width 0 with no samples and wide widths without their payload are still refused
    for bits in (0, 17, 255):
        check_batch_with(frame[:16] + bytes([bits, 0]), "bad_bit_width", good)
        check_batch_with(frame[:16] + bytes([bits, 200]), "bad_bit_width", good)


def test_other_measurement_types_and_empty_frames():
    good = good_pair(np.random.default_rng(4))
    frame = pmd.encode_acc_frame(np.zeros((4, 3), np.int64), 5, 0x01)
    for mtype in (0, 1, 3, 5, 6, 9, 255):
        batch = check_batch_with(bytes([mtype]) + frame[1:], "not_acc", good)
        assert str(mtype) in str(batch.errors[0][1])
    for cut in range(10):
        check_batch_with(frame[:cut], "truncated", good)
    check_batch_with(b"", "truncated", good)
    check_batch_with(bytes([0]) + bytes(8), "truncated", good)  # short beats not_acc


def test_a_batch_of_only_bad_frames_and_an_empty_batch():
    frames = [b"", b"\x02", bytes([ACC]) + bytes(8) + b"\x7f", bytes([0]) + bytes(9)]
    batch = pmd.decode_acc_frames(frames)
    assert [k for k, _ in batch.errors] == [0, 1, 2, 3]
    assert [e.kind for _, e in batch.errors] == [
        "truncated",
        "truncated",
        "unknown_frame_type",
        "not_acc",
    ]
    for empty in (batch, pmd.decode_acc_frames([])):
        assert len(empty) == 0 and empty.n_samples == 0
        assert empty.values.shape == (0, 3)
        np.testing.assert_array_equal(empty.offsets, [0])


def test_pmd_error_kinds_are_checked():
    with pytest.raises(ValueError):
        pmd.PmdError("no_such_kind", "x")
    error = pmd.PmdError("truncated", "cut")
    assert isinstance(error, InputError) and error.kind == "truncated"


# -- 5. control point ---------------------------------------------------------------------
def test_commands_bytes():
    # Polar's documented START for a Verity Sense: ACC, 52 Hz, 16 bit, 8 g, 3 channels
    assert pmd.encode_start(rate_hz=52, resolution=16, range_g=8, channels=3) == bytes.fromhex(
        "02 02 00 01 34 00 01 01 10 00 02 01 08 00 04 01 03"
    )
    assert pmd.encode_start(pmd.MeasurementType.ACC, rate_hz=200, range_g=2) == bytes.fromhex(
        "02 02 00 01 c8 00 01 01 10 00 02 01 02 00 04 01 03"
    )
    # without a range: no setting 2
    assert pmd.encode_start(rate_hz=25) == bytes.fromhex("02 02 00 01 19 00 01 01 10 00 04 01 03")
    assert pmd.encode_get_settings() == bytes.fromhex("01 02")
    assert pmd.encode_get_settings(pmd.MeasurementType.ECG) == bytes.fromhex("01 00")
    assert pmd.encode_stop() == bytes.fromhex("03 02")
    assert pmd.encode_stop(pmd.MeasurementType.PPG) == bytes.fromhex("03 01")
    # a START command's settings read back
    start = pmd.encode_start(rate_hz=52, resolution=16, range_g=8, channels=3)
    assert pmd.decode_settings(start[2:]) == {0: [52], 1: [16], 2: [8], 4: [3]}


def test_features():
    features = pmd.decode_control(bytes.fromhex("0F 05"))
    assert isinstance(features, pmd.Features)
    assert features.types == {pmd.MeasurementType.ECG, pmd.MeasurementType.ACC}
    assert features.acc
    not_acc = pmd.decode_control(bytes.fromhex("0F 01"))
    assert not not_acc.acc and not_acc.types == {pmd.MeasurementType.ECG}
    # two bytes of bitmask: bit 9 is SDK mode
    wide = pmd.decode_control(bytes.fromhex("0F 26 02"))
    assert wide.types == {1, 2, 5, 9}
    for types in ({0, 2}, {2}, {1, 2, 5, 9}, set(), {0, 1, 2, 3, 5, 6, 9}):
        encoded = pmd.encode_features(types)
        assert encoded[0] == 0x0F
        assert pmd.decode_control(encoded).types == types
    assert pmd.encode_features({0, 2}) == bytes.fromhex("0F 05")
    with pytest.raises(pmd.PmdError) as info:
        pmd.decode_control(b"\x0f")
    assert info.value.kind == "bad_response"


def test_responses():
    answer = pmd.decode_control(bytes.fromhex("F0 02 02 00 00"))
    assert isinstance(answer, pmd.ControlResponse)
    assert (answer.op, answer.measurement, answer.status) == (pmd.Op.START, 2, 0)
    assert answer.ok and not answer.more and answer.settings == {}
    assert answer.factor == 1.0
    assert "START" in answer.describe()
    # a START answer with FACTOR (setting 5, float32)
    for factor in (1 / 4096, 0.5, 1.0, 2.44140625e-4):
        value = bytes.fromhex("F0 02 02 00 00 05 01") + struct.pack("<f", factor)
        answer = pmd.decode_control(value)
        assert answer.ok and answer.factor == struct.unpack("<f", struct.pack("<f", factor))[0]
        assert pmd.encode_response(2, 2, 0, {5: [factor]}) == value
    # a GET answer: the settings on offer, several values each, "more" set
    offer = {0: [25, 50, 100, 200], 1: [16], 2: [2, 4, 8], 4: [3]}
    value = bytes.fromhex("F0 01 02 00 01") + pmd.encode_settings(offer)
    answer = pmd.decode_control(value)
    assert answer.op == pmd.Op.GET_SETTINGS and answer.more and answer.settings == offer
    # an error answer carries no settings; status only
    refused = pmd.decode_control(bytes.fromhex("F0 02 02 0A 00"))
    assert not refused.ok and refused.status == pmd.CpStatus.INVALID_MTU
    assert "INVALID_MTU" in refused.describe()
    short = pmd.decode_control(bytes.fromhex("F0 03 02 06"))
    assert short.status == pmd.CpStatus.ALREADY_IN_STATE and not short.more


def test_measurement_stopped():
    stopped = pmd.decode_control(bytes.fromhex("01 02"))
    assert isinstance(stopped, pmd.MeasurementStopped)
    assert stopped.types == (pmd.MeasurementType.ACC,)
    assert pmd.decode_control(bytes.fromhex("01 00 02")).types == (0, 2)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00",
        "FF 01",
        "F0",
        "F0 02",
        "F0 02 02",
        "F0 02 02 00 00 05",
        "F0 02 02 00 00 05 01 00",
        "F0 02 02 00 00 07 01 00",
        "F0 01 02 00 00 00 02 34 00",
    ],
)
def test_garbage_on_the_control_point(value):
    with pytest.raises(pmd.PmdError) as info:
        pmd.decode_control(bytes.fromhex(value))
    assert info.value.kind == "bad_response"
    check_one_line(info.value)


def test_settings_round_trip():
    cases = [
        {},
        {0: [52]},
        {0: [25, 50, 100, 200], 1: [16], 2: [2, 4, 8, 16], 4: [3]},
        {3: [2000, 4000, 8000, 16000], 5: [0.000244140625]},
        {6: [bytes(range(16))], 0: [1, 65535]},
    ]
    for case in cases:
        encoded = pmd.encode_settings(case)
        assert pmd.decode_settings(encoded) == case
    # a setting type repeated: the values add up
    twice = pmd.encode_settings({0: [25]}) + pmd.encode_settings({0: [50]})
    assert pmd.decode_settings(twice) == {0: [25, 50]}
    # each type's size, from the protocol: u16 rate/resolution/range, u32, u8, f32, 16 bytes
    sizes = {0: 2, 1: 2, 2: 2, 3: 4, 4: 1, 5: 4}
    for kind, size in sizes.items():
        assert len(pmd.encode_settings({kind: [1, 2]})) == 2 + 2 * size
    with pytest.raises(pmd.PmdError):
        pmd.decode_settings(bytes.fromhex("00 01 34"))
    with pytest.raises(pmd.PmdError):
        pmd.decode_settings(bytes.fromhex("00"))
    with pytest.raises(pmd.PmdError):
        pmd.decode_settings(bytes.fromhex("09 01 00"))


def test_status_text():
    texts = set()
    for status in pmd.CpStatus:
        answer = pmd.ControlResponse(pmd.Op.START, 2, int(status))
        text = answer.status_text()
        assert str(int(status)) in text and status.name in text
        assert answer.ok == (status == pmd.CpStatus.SUCCESS)
        texts.add(text)
    assert len(texts) == len(pmd.CpStatus)
    mtu = pmd.ControlResponse(pmd.Op.START, 2, 10).status_text()
    assert "INVALID_MTU" in mtu and "MTU" in mtu.split(":", 1)[1]
    for unknown in (14, 99, 255):
        text = pmd.ControlResponse(pmd.Op.START, 2, unknown).status_text()
        assert str(unknown) in text and "unknown" in text
        assert "\n" not in text
    assert "op 7" in pmd.ControlResponse(7, 2, 0).describe()
