"""Benchmark of the BLE recorder (pmld.ble.recorder) against the virtual band.

Run::

    .venv/bin/python benchmarks/bench_record.py                  # everything (~6 min)
    .venv/bin/python benchmarks/bench_record.py --only speed --hours 1
    .venv/bin/python benchmarks/bench_record.py --only cpu --cpu-seconds 30
    .venv/bin/python benchmarks/bench_record.py --only kill --kills 10

What is measured (each part in its own process, so that memory figures are its own)
-----------------------------------------------------------------------------------
speed
    A simulated night (default 8 h at 100 Hz, MTU 247) recorded end to end at maximum
    speed (stepped virtual clock): virtual band, virtual link, bleak client, recorder,
    journal, live detector, then the pmld-raw file and the nightly summary. Reported:
    wall time of the recording and of the finish, the speed factor (night seconds per
    wall second, target >= 100x), whether the file's samples are bit-identical to the
    simulated source, the recorder's queue high-water mark, and memory: RSS sampled
    every second while streaming (bounded: it must not grow with the night) and the
    peak RSS of the process, which includes the simulated source (kept by the band,
    35 MB for 8 h) and the finish (the whole night is loaded once to write the file and
    analyse it).
cpu
    The same recorder at real-time speed (speed 1) for ``--cpu-seconds``: process CPU
    time over wall time while streaming, i.e. the share of one core. The virtual band
    and the virtual link (bumble's two host stacks) run in the same process, so this is
    an upper bound on the recorder's own share.
kill
    ``pmld record --virtual`` (speed 1) killed with SIGKILL at ``--kills`` random
    moments: does every journal open (``pmld.io.journal.repair``), and how old is the
    oldest sample that was reported received but is not in the file (target <= 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------
# one recording, in this process
# --------------------------------------------------------------------------------------
async def _record(hours: float, speed: float, mtu: int, duration: float | None, folder: Path):
    from pmld.ble.band import VirtualBand, VirtualClock
    from pmld.ble.recorder import Recorder, RecordOptions
    from pmld.ble.virtual import VirtualRadio
    from pmld.simulate import simulate_night

    night = simulate_night("moderate", hours=hours, seed=7)
    output = folder / "night.h5"
    clock = VirtualClock(int(night.start_utc.timestamp() * 1e9), speed)
    samples: list[tuple[float, float, float, int]] = []  # (wall, cpu, rss, samples)
    async with VirtualRadio() as radio:
        band = await VirtualBand.from_night(radio, night, clock)
        options = RecordOptions(output, duration_s=duration, summary=True)
        recorder = Recorder(
            options, clock=clock, scanner_kwargs=radio.scanner_kwargs(),
            client_kwargs=radio.client_kwargs(mtu=mtu), status=None,
        )
        finished_streaming = asyncio.Event()

        async def watch():
            while not finished_streaming.is_set():
                samples.append((time.perf_counter(), cpu_s(), rss_mb(), recorder.stats.samples))
                await asyncio.sleep(1.0)

        original_finish = recorder._finish

        def finish(error):  # stamp the moment streaming ended, then finish as usual
            finished_streaming.set()
            samples.append((time.perf_counter(), cpu_s(), rss_mb(), recorder.stats.samples))
            return original_finish(error)

        recorder._finish = finish  # measurement only; the recorder's code is unchanged
        watcher = asyncio.ensure_future(watch())
        started = time.perf_counter()
        result = await recorder.run()
        ended = time.perf_counter()
        await watcher
        await band.close()
    return night, result, samples, started, ended


def run_speed(args) -> dict:
    from pmld.io.raw import read_raw

    with tempfile.TemporaryDirectory() as tmp:
        night, result, samples, started, ended = asyncio.run(
            _record(args.hours, math.inf, args.mtu, None, Path(tmp))
        )
        streamed_at = next(s[0] for s in samples if s[3] >= result.stats.samples)
        stream_wall = streamed_at - started
        got = read_raw(result.output).sensor
        identical = bool(np.array_equal(got.acc_g, night.sensor.acc_g))
    night_s = args.hours * 3600
    rss = [s[2] for s in samples]
    quarter = max(1, len(rss) // 4)
    return {
        "night_h": args.hours,
        "samples": int(result.stats.samples),
        "stream_wall_s": round(stream_wall, 1),
        "finish_wall_s": round(ended - streamed_at, 1),
        "speed_factor": round(night_s / stream_wall, 1),
        "speed_factor_with_finish": round(night_s / (ended - started), 1),
        "bit_identical": identical,
        "max_queue_notifications": result.stats.max_queue,
        "rss_mb_streaming_first_quarter": round(max(rss[:quarter]), 1),
        "rss_mb_streaming_last_quarter": round(max(rss[-quarter:]), 1),
        "peak_rss_mb_process": round(peak_rss_mb(), 1),
    }


#: Recorder methods that hold all of its work (callbacks, consumer, supervisor, ticker).
RECORDER_ENTRY_POINTS = ("_on_data", "_on_control", "_consume", "_tick", "_stream")


def run_cpu(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        _, result, samples, _, _ = asyncio.run(
            _record(1.0, 1.0, args.mtu, args.cpu_seconds + 5, Path(tmp))
        )
    # skip the first 5 s (scan, connect, imports warming up)
    window = [s for s in samples if s[0] - samples[0][0] >= 5.0]
    (w0, c0, _, n0), (w1, c1, _, n1) = window[0], window[-1]
    share = 100 * (c1 - c0) / (w1 - w0)
    out = {
        "seconds": round(w1 - w0, 1),
        "samples_per_s": round((n1 - n0) / (w1 - w0), 1),
        "cpu_share_of_one_core_pct": round(share, 2),
        "note": "virtual band + both bumble host stacks + recorder in one process: upper bound",
    }
    out.update(_recorder_fraction(args))
    out["recorder_share_estimate_pct"] = round(share * out["recorder_fraction_of_cpu"], 2)
    return out


def _recorder_fraction(args) -> dict:
    """Which part of the busy CPU time is the recorder's, from a profiled 20 s run."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        profile.enable()
        asyncio.run(_record(1.0, 1.0, args.mtu, 20.0, Path(tmp)))
        profile.disable()
    stats = pstats.Stats(profile).stats
    busy = idle = recorder = 0.0
    for (filename, _, name), (_, _, tottime, cumtime, _) in stats.items():
        busy += tottime
        if name == "poll" or "select.epoll" in name:
            idle += tottime
        if filename.endswith("recorder.py") and name in RECORDER_ENTRY_POINTS:
            recorder += cumtime
        if name in ("_finish", "simulate_night"):  # outside the streaming window
            idle += cumtime
    busy -= idle
    return {"recorder_fraction_of_cpu": round(recorder / busy, 3) if busy else 0.0}


STATUS = re.compile(r"\| ([\d,]+) samples \|")


def run_kill(args) -> dict:
    from pmld.errors import PmldError
    from pmld.io.journal import journal_path, read_journal, repair
    from pmld.io.raw import read_raw

    rng = np.random.default_rng(args.seed)
    trials = []
    for _ in range(args.kills):
        with tempfile.TemporaryDirectory() as tmp:
            output = Path(tmp) / "night.h5"
            child = subprocess.Popen(
                [sys.executable, "-m", "pmld.ble.cli_record", "record", "--virtual", "--hours",
                 "1", "--speed", "1", "--status-every", "0.1", "--no-summary", "-o",
                 str(output)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            )
            reports: list[tuple[float, int]] = []

            def read(child=child, reports=reports):
                for line in child.stderr:
                    match = STATUS.search(line)
                    if match:
                        reports.append((time.monotonic(), int(match.group(1).replace(",", ""))))

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            while not (reports and reports[-1][1] > 0):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.2, 8.0))
            killed = time.monotonic()
            child.send_signal(signal.SIGKILL)
            child.wait()
            reader.join(2)
            held = read_journal(journal_path(output)).n_received
            late = [t for t, n in reports if n > held]
            lost_s = killed - min(late) if late else 0.0
            received = max(n for _, n in reports)
            try:
                repair(output)
                opened, message = read_raw(output).sensor.n_samples == held, ""
            except PmldError as error:  # a journal with no samples yet says so
                opened, message = False, str(error)
            trials.append(
                {"recording_s": round(killed - reports[0][0], 2), "held": held,
                 "last_reported": received, "lost_s": round(lost_s, 2), "opens": opened,
                 **({"message": message} if message else {})}
            )
    return {
        "kills": len(trials),
        "all_open": all(t["opens"] for t in trials),
        "max_lost_s": max(t["lost_s"] for t in trials),
        "trials": trials,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("speed", "cpu", "kill"))
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--mtu", type=int, default=247)
    parser.add_argument("--cpu-seconds", type=float, default=60.0)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.only:
        out = {"speed": run_speed, "cpu": run_cpu, "kill": run_kill}[args.only](args)
        print(json.dumps(out))
        return
    results = {}
    for part in ("speed", "cpu", "kill"):
        command = [sys.executable, __file__, "--only", part, "--hours", str(args.hours),
                   "--mtu", str(args.mtu), "--cpu-seconds", str(args.cpu_seconds),
                   "--kills", str(args.kills), "--seed", str(args.seed)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"{part} failed:\n{done.stderr}")
        results[part] = json.loads(done.stdout.strip().splitlines()[-1])
        if not args.json:
            print(f"{part}: {json.dumps(results[part], indent=1)}", flush=True)
    if args.json:
        print(json.dumps(results))
        return
    s, c, k = results["speed"], results["cpu"], results["kill"]
    print(
        f"\n{s['night_h']:g} h night at 100 Hz recorded at {s['speed_factor']:.0f}x real time "
        f"({s['stream_wall_s']} s, + {s['finish_wall_s']} s to write the file and summary), "
        f"bit-identical: {s['bit_identical']}; streaming RSS {s['rss_mb_streaming_first_quarter']}"
        f" -> {s['rss_mb_streaming_last_quarter']} MB, peak {s['peak_rss_mb_process']} MB\n"
        f"real time: {c['cpu_share_of_one_core_pct']}% of one core (band + link + recorder)\n"
        f"SIGKILL x{k['kills']}: all open {k['all_open']}, at most {k['max_lost_s']} s lost"
    )


if __name__ == "__main__":
    main()
