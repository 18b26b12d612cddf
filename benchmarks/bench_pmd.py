"""Benchmark of the Polar PMD codec (pmld.ble.pmd): ACC decode throughput in samples/s.

Run either way::

    .venv/bin/python benchmarks/bench_pmd.py                   # plain figures
    .venv/bin/python benchmarks/bench_pmd.py --hours 8 --repeat 9
    .venv/bin/pytest benchmarks/bench_pmd.py                   # pytest-benchmark tables

Method
------
* The signal: ``simulate_night("moderate", hours=1, fs_hz=52, seed=1)`` (a Verity
  Sense's 52 Hz), ``night.sensor.acc_g`` rounded to integer milli-g (what a band at
  16 bit / 8 g sends, in the unit of frame types 0x01 and 0x81 with FACTOR 1).
* The frames: what a band sends over ATT MTU 247, i.e. notifications of at most 244
  bytes. Each frame takes as many samples as fit (:func:`pmd.fill_acc_frame`) and is
  built by :func:`pmd.encode_acc_frame`, stamped with its last sample's time (ns since
  2000-01-01), for the delta-compressed type 0x81 (blocks of up to 255 samples, each at
  the width its deltas need) and for raw int16, type 0x01 (39 samples a frame).
* Decoding: the night's frames are split into batches of 1, 10, 100 and 1000
  notifications and each batch goes to :func:`pmd.decode_acc_frames` (the recorder's
  path: the BLE callback only queues bytes, a task decodes whatever has queued up,
  usually one notification at 52 Hz; larger batches are what a recorder catching up
  after a stall sees). The output of one full pass is
  checked against the signal, sample for sample, and the timestamps too.
* Times: ``time.perf_counter`` around one pass over the whole night; one warm-up pass,
  then ``--repeat`` passes; reported are the median (and best) pass. Samples/s = the
  night's samples / median pass time. Interpreter start-up, the simulation and encoding
  are excluded (encoding is timed once, for information).

Target (PMD issue): decoding >= 1,000,000 samples/s, for every batch size including 1.
At 52 Hz a band sends about one compressed notification every 2.5 s, so a live
recorder usually decodes one notification per call; the decoder takes a few blocks or
frames one by one (less fixed cost) and many of them in one vectorised pass.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from pmld.ble import pmd
from pmld.simulate import simulate_night

TARGET_SAMPLES_PER_S = 1_000_000
BUDGET = 244  # ATT MTU 247 - 3
BATCHES = (1, 10, 100, 1000)
FRAME_TYPES = {"compressed 0x81": pmd.FrameType.DELTA_MG, "raw 0x01": pmd.FrameType.RAW_INT16}
EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)


def night_samples(hours: float, fs_hz: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) int milli-g of a simulated night and each sample's PMD time (ns since 2000)."""
    sensor = simulate_night("moderate", hours=hours, fs_hz=fs_hz, seed=seed).sensor
    mg = np.rint(sensor.acc_g.astype(np.float64) * 1000.0).astype(np.int64)
    start_ns = (sensor.start_utc - EPOCH_2000) // timedelta(microseconds=1) * 1000
    stamps = start_ns + np.round(np.arange(len(mg)) * 1e9 / sensor.fs_hz).astype(np.int64)
    return mg, stamps


def encode_night(mg: np.ndarray, stamps: np.ndarray, frame_type: int) -> list[bytes]:
    """The night as the notifications of a band (at most ``BUDGET`` bytes each)."""
    window = 8 * BUDGET  # more samples than any frame of BUDGET bytes can hold
    frames: list[bytes] = []
    at = 0
    while at < len(mg):
        k = pmd.fill_acc_frame(mg[at : at + window], frame_type, BUDGET)
        if k < 1:
            raise RuntimeError("no sample fits a frame")
        frames.append(pmd.encode_acc_frame(mg[at : at + k], int(stamps[at + k - 1]), frame_type))
        at += k
    return frames


def batches(frames: list[bytes], size: int) -> list[list[bytes]]:
    return [frames[i : i + size] for i in range(0, len(frames), size)]


def decode_all(chunks: list[list[bytes]]) -> int:
    samples = 0
    for chunk in chunks:
        samples += pmd.decode_acc_frames(chunk).n_samples
    return samples


def check(frames: list[bytes], mg: np.ndarray, stamps: np.ndarray) -> None:
    batch = pmd.decode_acc_frames(frames)
    assert not batch.errors, batch.errors[:3]
    assert max(len(f) for f in frames) <= BUDGET
    assert np.array_equal(batch.values, mg), "decoded samples differ from the signal"
    assert np.array_equal(batch.timestamp_ns, stamps[batch.offsets[1:] - 1])


def timed(function, repeat: int) -> list[float]:
    function()  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--fs", type=float, default=52.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    mg, stamps = night_samples(args.hours, args.fs, args.seed)
    n = len(mg)
    print(
        f"pmld PMD codec: {args.hours:g} h moderate night at {args.fs:g} Hz ({n:,} samples), "
        f"notifications <= {BUDGET} bytes, median of {args.repeat} passes; "
        f"target: decode >= {TARGET_SAMPLES_PER_S:,} samples/s at every batch size"
    )
    ok = True
    rows = []
    for label, frame_type in FRAME_TYPES.items():
        start = time.perf_counter()
        frames = encode_night(mg, stamps, frame_type)
        encode_s = time.perf_counter() - start
        check(frames, mg, stamps)
        size = sum(len(f) for f in frames)
        rows.append(
            (
                f"{label}: {len(frames):,} frames, {n / len(frames):.1f} samples and "
                f"{size / n:.2f} bytes per sample; encode",
                f"{n / encode_s:,.0f} samples/s",
                "",
                "",
            )
        )
        for batch in BATCHES:
            chunks = batches(frames, batch)
            times = timed(lambda c=chunks: decode_all(c), args.repeat)
            assert decode_all(chunks) == n
            median, best = statistics.median(times), min(times)
            rate = n / median
            verdict = "ok" if rate >= TARGET_SAMPLES_PER_S else "BELOW TARGET"
            ok &= rate >= TARGET_SAMPLES_PER_S
            rows.append(
                (
                    f"{label}: decode in batches of {batch}",
                    f"{rate:,.0f} samples/s",
                    f"best {n / best:,.0f}",
                    verdict,
                )
            )
    width = max(len(r[0]) for r in rows)
    for name, value, best, verdict in rows:
        print(f"{name:<{width}}  {value:>20}  {best:>18}  {verdict}")
    return 0 if ok else 1


# -- pytest-benchmark -----------------------------------------------------------------------
try:
    import pytest
except ImportError:  # pragma: no cover - plain runs need no pytest
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="module")
    def night_frames():
        mg, stamps = night_samples(1.0, 52.0, 1)
        frames = {ft: encode_night(mg, stamps, ft) for ft in FRAME_TYPES.values()}
        for f in frames.values():
            check(f, mg, stamps)
        return len(mg), frames

    @pytest.mark.parametrize("batch", BATCHES)
    @pytest.mark.parametrize("frame_type", list(FRAME_TYPES.values()), ids=list(FRAME_TYPES))
    def test_decode_night(benchmark, night_frames, frame_type, batch):
        n, frames = night_frames
        chunks = batches(frames[frame_type], batch)
        assert benchmark(decode_all, chunks) == n
        assert n / benchmark.stats.stats.median >= TARGET_SAMPLES_PER_S


if __name__ == "__main__":
    sys.exit(main())
