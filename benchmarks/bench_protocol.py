"""Benchmark of the BLE protocol codec: decode throughput in samples per second.

Run::

    .venv/bin/python benchmarks/bench_protocol.py              # 10 min at 100 Hz
    .venv/bin/python benchmarks/bench_protocol.py --minutes 60 --repeat 3

Method
------
* The stream: ``--minutes`` of accelerometer samples (the protocol's test pattern,
  ``pattern_samples``) served by :class:`pmld.ble.protocol.DeviceModel` as a band does,
  in full DATA frames at ATT MTU 23 (2 samples per frame, the worst case), 185 and 247
  (39 samples), with the TIME_SYNC (1 s) and STATUS (5 s) frames interleaved. Serving
  it is timed too (the virtual band's cost per sample).
* Decoding: ``decode_frame`` one notification at a time (what a naive notification
  handler would do), and ``decode_frames`` on the whole list (the recorder's path: the
  BLE callback only queues bytes, a task decodes what has queued up).
* Times: one warm-up run, then ``--repeat`` runs; the best ``time.perf_counter``
  interval is reported. Samples/s = decoded samples / best time.

Target (design brief): decoding >= 1,000,000 samples/s. A band at 200 Hz delivers 200
samples/s, so the target leaves the recorder's decoding under 0.02 % of one core.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from pmld.ble import protocol as p

TARGET_SAMPLES_PER_S = 1_000_000


def serve(minutes: float, fs_hz: int, mtu: int) -> tuple[list[bytes], int, float]:
    """The notifications of a band streaming ``minutes`` at ``fs_hz`` over ATT MTU ``mtu``."""
    info = p.Info(rates_hz=(fs_hz,), acc_ranges=(p.AccRange(8, 4096.0),), buffer_samples=1 << 16)
    device = p.DeviceModel(info)
    device.handle_command(p.encode_command(p.StartCommand(1, fs_hz, 8)), 0)
    n = int(minutes * 60 * fs_hz)
    per_frame = p.samples_per_frame(mtu)
    block = max(per_frame, fs_hz // 10)  # the firmware is polled every 100 ms
    dt_us = 1_000_000 // fs_hz
    frames: list[bytes] = []
    start = time.perf_counter()
    for first in range(0, n, block):
        count = min(block, n - first)
        times = (first + np.arange(count)) * dt_us
        device.acquire(p.pattern_samples(first, count), times)
        now = int(times[-1]) + 1
        while (frame := device.next_frame(mtu, now)) is not None:
            frames.append(frame)
    while (frame := device.next_frame(mtu, n * dt_us, flush=True)) is not None:
        frames.append(frame)
    return frames, n, time.perf_counter() - start


def one_by_one(frames: list[bytes]) -> int:
    samples = 0
    for raw in frames:
        frame = p.decode_frame(raw)
        if isinstance(frame, p.SampleFrame):
            samples += frame.count
    return samples


def batched(frames: list[bytes]) -> int:
    return p.decode_frames(frames).n_samples


def timed(function, repeat: int) -> tuple[float, object]:
    result = function()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    rows = []
    ok = True
    for mtu in (23, 185, 247):
        frames, n, serve_s = serve(args.minutes, args.fs, mtu)
        data = sum(1 for f in frames if f[0] == p.FrameType.DATA)
        rows.append(
            (
                f"MTU {mtu}: serve {n:,} samples in {len(frames):,} notifications ({data:,} DATA)",
                f"{n / serve_s:,.0f} samples/s",
                "",
            )
        )
        for label, function in (
            ("decode_frame, one by one", one_by_one),
            ("decode_frames, batch", batched),
        ):
            best, samples = timed(lambda f=function, fr=frames: f(fr), args.repeat)
            assert samples == n, (label, samples, n)
            rate = n / best
            verdict = "ok" if rate >= TARGET_SAMPLES_PER_S else "below target"
            if label.startswith("decode_frames"):
                ok &= rate >= TARGET_SAMPLES_PER_S
            rows.append((f"MTU {mtu}: {label}", f"{rate:,.0f} samples/s", verdict))
        check = p.decode_frames(frames)
        assert np.array_equal(check.acc, p.pattern_samples(0, n))
        assert not check.errors
    width = max(len(r[0]) for r in rows)
    print(
        f"pmld BLE codec, {args.minutes:g} min at {args.fs} Hz, best of {args.repeat}; "
        f"target: decode >= {TARGET_SAMPLES_PER_S:,} samples/s"
    )
    for name, value, verdict in rows:
        print(f"{name:<{width}}  {value:>20}  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
