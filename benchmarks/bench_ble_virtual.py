"""Benchmark of notification throughput over the virtual BLE radio (pmld.ble.virtual).

Run::

    .venv/bin/python benchmarks/bench_ble_virtual.py               # the full matrix
    .venv/bin/python benchmarks/bench_ble_virtual.py --count 5000 --repeat 1
    .venv/bin/python benchmarks/bench_ble_virtual.py --profile     # where the time goes

Why
---
The recorder must be able to replay a simulated 8 h night at 100 Hz at >= 100x real
time through the virtual band: about 30,000 samples/s, i.e. about 820 notifications/s
of 36 samples. (Counting 3-axis samples, 8 h x 100 Hz x 100 = 10,000 samples/s, or 280
notifications/s of 36 samples; the design figure of 820/s is the stricter one and is the
target here.)

Method
------
* One :class:`~pmld.ble.virtual.VirtualRadio`, one peripheral with a notify
  characteristic, one :class:`bleak.BleakClient` through the public bleak API with the
  bumble backend, MTU 247, 244-byte payloads (a 4-byte counter + padding).
* The notification callback is constant-time, as the recorder's must be: it stamps
  ``time.monotonic_ns()`` and appends to a deque.
* Peak: the peripheral notifies as fast as it can (its host queue bounded by
  ``max_queued_packets``, the default backpressure); the rate is notifications received
  over the time from the first ``notify`` to the last callback. Each configuration runs
  once as a warm-up, then ``--repeat`` times; the best run is reported (the least
  disturbed), with the mean.
* Paced: the peripheral sends at the target rate (820/s) in 10 ms bursts for a few
  seconds; reported are the achieved rate, the send->callback latency (median, p99, max)
  and the event loop's CPU time per notification, hence the share of one core the link
  takes at that rate (all of it runs in the one event loop the recorder shares).
* Order and completeness are checked in every run.

Knobs measured: ``acl_packet_length`` of the virtual controllers (27, bumble's default:
a 251-byte ATT PDU goes in 10 HCI fragments; 251: one), and the peripheral's
``max_queued_packets``. bumble's virtual link (``bumble.link.LocalLink``) has no
artificial delay: it hands packets on with ``loop.call_soon``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import pstats
import statistics
import sys
import time

from bleak import BleakClient, BleakScanner
from bumble import gatt
from bumble.att import Attribute

from pmld.ble.virtual import VirtualRadio

SERVICE_UUID = "5c3e0001-8a4d-4f3a-b7a6-2d1f9e0c4b01"
DATA_UUID = "5c3e0002-8a4d-4f3a-b7a6-2d1f9e0c4b01"
TARGET_PER_S = 820
PAYLOAD = 244
MTU = 247


async def setup(acl_packet_length: int, max_queued_packets: int, mtu: int):
    radio = VirtualRadio(acl_packet_length=acl_packet_length)
    data = gatt.Characteristic(
        DATA_UUID, gatt.Characteristic.Properties.NOTIFY, Attribute.Permissions.READABLE, b""
    )
    band = await radio.add_peripheral("bench-band", services=[gatt.Service(SERVICE_UUID, [data])])
    band.max_queued_packets = max_queued_packets
    device = await BleakScanner.find_device_by_name(
        "bench-band", timeout=5, **radio.scanner_kwargs()
    )
    client = BleakClient(device, timeout=5, **radio.client_kwargs(mtu=mtu))
    await client.connect()
    arrivals: collections.deque[tuple[int, bytearray]] = collections.deque()

    def on_data(sender, value: bytearray) -> None:
        arrivals.append((time.monotonic_ns(), value))

    await client.start_notify(DATA_UUID, on_data)
    await band.wait_for_subscription(data, timeout=5)
    return radio, band, data, client, arrivals


def frames(count: int, size: int) -> list[bytes]:
    padding = bytes(size - 4)
    return [index.to_bytes(4, "little") + padding for index in range(count)]


def check_order(arrivals, count: int, size: int) -> None:
    counters = [int.from_bytes(value[:4], "little") for _, value in arrivals]
    if counters != list(range(count)):
        raise AssertionError(f"lost or reordered notifications: {len(counters)}/{count}")
    if any(len(value) != size for _, value in arrivals):
        raise AssertionError("a notification arrived truncated")


async def wait_for(arrivals, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(arrivals) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(arrivals)}/{count} notifications arrived")
        await asyncio.sleep(0.001)


async def peak_run(acl: int, max_queued: int, count: int, size: int, mtu: int) -> float:
    radio, band, data, client, arrivals = await setup(acl, max_queued, mtu)
    try:
        payloads = frames(count, size)
        start_ns = time.monotonic_ns()
        for payload in payloads:
            await band.notify(data, payload)
        await wait_for(arrivals, count, timeout_s=120)
        elapsed_s = (arrivals[-1][0] - start_ns) / 1e9
        check_order(arrivals, count, size)
        return count / elapsed_s
    finally:
        await client.disconnect()
        await radio.close()


async def paced_run(rate_per_s: float, seconds: float, size: int, mtu: int) -> dict[str, float]:
    radio, band, data, client, arrivals = await setup(251, 128, mtu)
    try:
        count = int(rate_per_s * seconds)
        payloads = frames(count, size)
        sent_ns: list[int] = []
        burst_s = 0.010
        per_burst = max(1, round(rate_per_s * burst_s))
        loop = asyncio.get_running_loop()
        cpu0 = time.process_time()
        start = loop.time()
        for first in range(0, count, per_burst):
            await asyncio.sleep(max(0.0, start + first / rate_per_s - loop.time()))
            for payload in payloads[first : first + per_burst]:
                sent_ns.append(time.monotonic_ns())
                await band.notify(data, payload)
        await wait_for(arrivals, count, timeout_s=60)
        cpu_s = time.process_time() - cpu0
        wall_s = (arrivals[-1][0] - sent_ns[0]) / 1e9
        check_order(arrivals, count, size)
        latency_ms = sorted((t - s) / 1e6 for (t, _), s in zip(arrivals, sent_ns, strict=True))
        return {
            "rate": count / wall_s,
            "lat_median_ms": statistics.median(latency_ms),
            "lat_p99_ms": latency_ms[int(0.99 * (len(latency_ms) - 1))],
            "lat_max_ms": latency_ms[-1],
            "cpu_us_per_notification": cpu_s / count * 1e6,
        }
    finally:
        await client.disconnect()
        await radio.close()


_DEBUG_STRING_FUNCTIONS = {"__str__", "__repr__", "format_fields", "stringify_field",
                           "format_field_value", "to_string", "color", "_color_code", "_join"}


def print_profile(stats: pstats.Stats) -> None:
    """Own time by package, and bumble's share spent building debug strings."""
    by_package: collections.Counter[str] = collections.Counter()
    debug_strings = 0.0
    total = 0.0
    for (filename, _, function), (_, _, own_s, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        total += own_s
        path = filename.replace("\\", "/")
        packages = ("bumble", "bleak", "pmld", "asyncio", "pyee")
        package = next((name for name in packages if f"/{name}/" in path), "other")
        by_package[package] += own_s
        in_formatting = function in _DEBUG_STRING_FUNCTIONS or (
            function == "<genexpr>" and path.endswith(("bumble/colors.py", "bumble/hci.py"))
        )
        if package == "bumble" and in_formatting:
            debug_strings += own_s
    print(f"profiled own time {total:.2f} s:")
    for package, own_s in by_package.most_common():
        label = "other (builtins, stdlib)" if package == "other" else package
        print(f"  {label:<25} {100 * own_s / total:5.1f}%")
    print(
        f"bumble building debug-log strings that logging then discards (f-strings, colors, "
        f"packet __str__; builtins not counted): {100 * debug_strings / total:.1f}% of all"
    )


def silence_bumble_debug_strings() -> None:
    """Diagnostic only: make the strings bumble builds for its debug logs cost nothing.

    bumble formats every HCI packet and ATT PDU into f-strings passed to
    ``logger.debug`` (evaluated even when debug logging is off). This patches the
    formatting out of the process to measure what it costs; not for production use.
    """
    from bumble import att, controller, device, gatt_client, gatt_server, hci, host

    hci.HCI_Packet.__str__ = lambda self: ""  # type: ignore[method-assign]
    hci.HCI_Object.__str__ = lambda self: ""  # type: ignore[method-assign]
    att.ATT_PDU.__str__ = lambda self: ""  # type: ignore[method-assign]
    for module in (controller, device, gatt_client, gatt_server, host):
        if hasattr(module, "color"):
            module.color = lambda text, *a, **k: text  # type: ignore[attr-defined]


def best_of(repeat: int, run) -> tuple[float, float]:
    asyncio.run(run())  # warm-up
    rates = [asyncio.run(run()) for _ in range(repeat)]
    return max(rates), statistics.fmean(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="notifications per peak run")
    parser.add_argument("--payload", type=int, default=PAYLOAD)
    parser.add_argument("--mtu", type=int, default=MTU)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    parser.add_argument(
        "--profile", action="store_true", help="profile one peak run: where the time goes"
    )
    parser.add_argument(
        "--without-bumble-debug-strings",
        action="store_true",
        help="diagnostic: measure with bumble's eagerly built debug strings patched out",
    )
    args = parser.parse_args(argv)
    if args.payload > args.mtu - 3:
        parser.error(f"a {args.payload}-byte payload does not fit MTU {args.mtu}")

    print(f"virtual BLE link, bleak API, MTU {args.mtu}, {args.payload}-byte notifications")
    print(f"python {sys.version.split()[0]}; target {TARGET_PER_S} notifications/s\n")

    if args.without_bumble_debug_strings:
        silence_bumble_debug_strings()
        print("(diagnostic: bumble's debug strings disabled by monkeypatching)\n")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(peak_run(251, 128, args.count, args.payload, args.mtu))
        profiler.disable()
        print_profile(pstats.Stats(profiler))
        return 0

    print(f"{'acl_packet_length':>17} {'max_queued':>10} {'best /s':>9} {'mean /s':>9} "
          f"{'MB/s':>6} {'x target':>8}")
    best_251 = 0.0
    for acl, max_queued, count in (
        (27, 128, max(1000, args.count // 10)),  # bumble's default fragments 10x: slow
        (251, 32, args.count),
        (251, 128, args.count),
        (251, 1024, args.count),
    ):
        best, mean = best_of(
            args.repeat,
            lambda acl=acl, max_queued=max_queued, count=count: peak_run(
                acl, max_queued, count, args.payload, args.mtu
            ),
        )
        if acl == 251:
            best_251 = max(best_251, best)
        print(f"{acl:>17} {max_queued:>10} {best:>9.0f} {mean:>9.0f} "
              f"{best * args.payload / 1e6:>6.2f} {best / TARGET_PER_S:>8.1f}")

    paced = asyncio.run(paced_run(TARGET_PER_S, args.paced_seconds, args.payload, args.mtu))
    core_share = paced["cpu_us_per_notification"] * TARGET_PER_S / 1e6
    print(
        f"\npaced at {TARGET_PER_S}/s for {args.paced_seconds:g} s: achieved "
        f"{paced['rate']:.0f}/s; latency median {paced['lat_median_ms']:.2f} ms, "
        f"p99 {paced['lat_p99_ms']:.2f} ms, max {paced['lat_max_ms']:.2f} ms; "
        f"{paced['cpu_us_per_notification']:.0f} us CPU per notification "
        f"= {100 * core_share:.0f}% of one core"
    )
    verdict = "meets" if best_251 >= TARGET_PER_S else "MISSES"
    print(
        f"\n{verdict} the target: peak {best_251:.0f}/s = {best_251 / TARGET_PER_S:.1f}x of "
        f"{TARGET_PER_S}/s; the recorder has {100 * (1 - core_share):.0f}% of the core left "
        "at the target rate"
    )
    return 0 if best_251 >= TARGET_PER_S else 1


if __name__ == "__main__":
    sys.exit(main())
