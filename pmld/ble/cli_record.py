"""``pmld scan`` and ``pmld record``: the command-line side of the BLE recorder.

:func:`add_parsers` adds both subcommands to ``pmld``'s parser. Expected failures raise
:class:`~pmld.errors.PmldError` subclasses, which ``pmld`` prints in one line (exit
code 2). A clean stop (Ctrl-C, SIGTERM, ``--duration``, the band stopped) exits 0.

With ``--virtual`` nothing needs a Bluetooth adapter: a virtual band
(:mod:`pmld.ble.band`) on a virtual radio (:mod:`pmld.ble.virtual`) serves a simulated
night (:func:`pmld.simulate.simulate_night`), ``--speed`` times faster than real time,
to the very recorder that talks to hardware.

Run without ``pmld``'s hook as ``python -m pmld.ble.cli_record record ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = ["VIRTUAL_KINDS", "add_parsers", "device_choice", "main", "make_recorder"]

#: What ``--virtual`` can be: the pmld band, or a Polar band (polar = verity).
VIRTUAL_KINDS = ("pmld", "polar", "verity", "h10")
#: Sampling rate of each virtual band when --fs is not given.
VIRTUAL_RATE = {"pmld": 100, "polar": 52, "verity": 52, "h10": 50}


def add_parsers(subparsers: Any) -> None:
    """Add ``scan`` and ``record`` to ``pmld``'s subcommands."""
    p = subparsers.add_parser(
        "scan",
        help="list the pmld and Polar bands in range",
        description="Scan for Bluetooth LE devices advertising the pmld band service or "
        "Polar Measurement Data (a Polar Verity Sense or H10).",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to scan (default 5)")
    p.add_argument("--all", action="store_true", help="list every device, not only bands")
    p.add_argument(
        "--virtual", action="store_true", help="scan a virtual radio with a virtual band"
    )
    p.set_defaults(func=cmd_scan)

    p = subparsers.add_parser(
        "record",
        help="record a night from a pmld or Polar band over Bluetooth LE",
        description="Record a night from an ankle band: a pmld band, or a Polar Verity "
        "Sense or H10 (Polar Measurement Data). Reconnects by itself when the link drops; "
        "a pmld band gives back what it buffered meanwhile, a Polar band keeps nothing. "
        "What is lost is recorded as exact gaps. Samples go to NIGHT.h5.journal as they "
        "arrive, so "
        "a crash loses at most the last second: running the same command again continues "
        "the night. Ctrl-C or SIGTERM stops the band, writes the pmld-raw night and its "
        "nightly summary (NIGHT.plm.h5).",
        epilog="Exit codes: 0 stopped cleanly, 1 internal error, 2 no band / not a pmld "
        "or Polar band / unusable options.",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="night file to write (.h5)")
    p.add_argument(
        "--device",
        metavar="KIND|NAME|ADDRESS",
        help="which band: 'pmld' or 'polar' (the first of that kind in range), 'auto' (the "
        "first pmld or Polar band; the default), or a band's name or Bluetooth address",
    )
    p.add_argument(
        "--fs", type=int,
        help="sampling rate in Hz (default: pmld band 100, Polar Verity Sense 52, Polar H10 50)",
    )
    p.add_argument(
        "--range", type=int, dest="range_g", help="accelerometer range in g (default 8)"
    )
    p.add_argument("--side", choices=("left", "right", "unknown"), default="unknown")
    p.add_argument("--tz", default="UTC", help="IANA time zone of the night (default UTC)")
    p.add_argument("--duration", type=float, help="stop after this many seconds of night")
    p.add_argument("--no-summary", action="store_true", help="do not write the nightly summary")
    p.add_argument(
        "--scan-timeout", type=float, default=10.0,
        help="seconds to look for the band before giving up (default 10)",
    )
    p.add_argument(
        "--status-every", type=float, default=60.0,
        help="seconds between status lines when stderr is not a terminal (default 60)",
    )
    p.add_argument("--quiet", action="store_true", help="no live status line")
    v = p.add_argument_group("virtual band (no hardware)")
    v.add_argument(
        "--virtual", nargs="?", const="pmld", choices=VIRTUAL_KINDS, metavar="BAND",
        help="record from a virtual band: pmld (the default), polar (a Polar Verity Sense, "
        "delta-compressed frames), verity, or h10 (a Polar H10, raw frames)",
    )
    v.add_argument("--scenario", default="moderate", help="simulated night (see pmld simulate)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--hours", type=float, default=8.0, help="length of the simulated night")
    v.add_argument(
        "--speed", default="1",
        help="night seconds per real second, or 'max' (as fast as the link goes); default 1",
    )
    v.add_argument("--mtu", type=int, default=247, help="ATT MTU the host asks for (23..517)")
    v.add_argument(
        "--buffer", type=int, default=65536, help="band ring buffer in samples (default 65536)"
    )
    v.add_argument("--drop-every", type=int, default=0, help="lose every N-th notification")
    v.add_argument("--duplicate-every", type=int, default=0, help="deliver every N-th twice")
    v.add_argument("--corrupt-every", type=int, default=0, help="damage every N-th DATA frame")
    v.add_argument(
        "--unknown-every", type=int, default=0, help="add a frame of unknown type every N"
    )
    v.add_argument(
        "--disconnect-every", type=float, default=0.0,
        help="drop the link every S night seconds",
    )
    v.add_argument(
        "--disconnect-for", type=float, default=5.0,
        help="night seconds the band stays out of range at each drop (default 5)",
    )
    v.add_argument("--max-disconnects", type=int, default=0, help="at most N drops (0: no limit)")
    v.add_argument("--skew-ppm", type=float, default=0.0, help="band crystal error in ppm")
    v.add_argument(
        "--reboot-at", type=float, help="the band reboots at this night second (new session)"
    )
    v.add_argument(
        "--reboot-for", type=float, default=10.0, help="night seconds a reboot takes (default 10)"
    )
    v.add_argument(
        "--device-stop-at", type=float, action="append", metavar="S",
        help="a virtual Polar band stops streaming on its own at this night second "
        "(repeatable)",
    )
    v.add_argument(
        "--band", default="pmld", choices=("pmld", "old_protocol", "not_pmld", "foreign"),
        help="what the virtual device is (impostors test the refusals)",
    )
    p.set_defaults(func=cmd_record)


# --------------------------------------------------------------------------------------
# scan
# --------------------------------------------------------------------------------------
def cmd_scan(args: argparse.Namespace) -> int:
    from .recorder import NoBandFoundError, scan_bands

    async def run() -> list:
        if not args.virtual:
            return await scan_bands(args.timeout, all_devices=args.all)
        from .band import VirtualBand, VirtualClock
        from .polar_band import VirtualPolarBand
        from .virtual import VirtualRadio

        _quiet_virtual_radio()
        async with VirtualRadio() as radio:
            clock = VirtualClock(time.time_ns())
            counts = _zeros_night()
            bands = [
                await VirtualBand.create(radio, counts, 100.0, clock, name="pmld-band"),
                await VirtualPolarBand.create(radio, counts, 52.0, clock, device_id="1A2B3C4D"),
                await VirtualBand.create(
                    radio, counts, 100.0, clock, name="hr-strap", kind="foreign"
                ),
            ]
            try:
                return await scan_bands(args.timeout, radio.scanner_kwargs(), all_devices=args.all)
            finally:
                for band in bands:
                    await band.close()

    devices = asyncio.run(run())
    if not devices:
        raise NoBandFoundError(
            f"no {'device' if args.all else 'pmld or Polar band'} found in {args.timeout:g} s: "
            "is the band charged, switched on and near this computer?"
        )
    for d in devices:
        rssi = "" if d.rssi is None else f"{d.rssi} dBm"
        kind = {"pmld": "pmld band", "polar": "Polar band"}.get(d.kind or "", "other device")
        print(f"{d.name or '(no name)':20s} {d.address:20s} {rssi:>8s}  {kind}")
    return 0


def _zeros_night():
    import numpy as np

    return np.zeros((1000, 3), np.int16)


# --------------------------------------------------------------------------------------
# record
# --------------------------------------------------------------------------------------
def _speed(text: str) -> float:
    if str(text).lower() in ("max", "inf"):
        return math.inf
    try:
        speed = float(text)
    except ValueError:
        raise UsageError(f"--speed takes a number or 'max', got {text!r}") from None
    if not speed > 0:
        raise UsageError(f"--speed must be positive, got {text}")
    return speed


def record_options(args: argparse.Namespace):
    from ..night import check_timezone
    from .recorder import RecordOptions

    if args.fs is not None and args.fs <= 0:
        raise UsageError(f"--fs must be a positive number of Hz, got {args.fs}")
    if args.range_g is not None and args.range_g <= 0:
        raise UsageError(f"--range must be a positive number of g, got {args.range_g}")
    _, target = device_choice(args.device)
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration must be positive, got {args.duration}")
    return RecordOptions(
        output=Path(args.output),
        device=target,
        rate_hz=args.fs,
        range_g=args.range_g,
        side=args.side,
        timezone=check_timezone(args.tz),
        scan_timeout_s=args.scan_timeout,
        duration_s=args.duration,
        summary=not args.no_summary,
        status_every_s=args.status_every,
    )


def device_choice(device: str | None) -> tuple[str, str | None]:
    """``--device`` -> (kind, name or address): 'pmld'/'polar'/'auto' or a band's name."""
    from .recorder import DEVICE_KINDS

    if device is None or device.lower() == "auto":
        return "auto", None
    if device.lower() in DEVICE_KINDS:
        return device.lower(), None
    return "auto", device


async def make_recorder(kind: str, options, **kwargs: Any):
    """The recorder for a kind of band; 'auto' scans first and picks by advertisement.

    ``kwargs`` go to the recorder (``scanner_kwargs`` is also used for the scan).
    """
    from .polar_recorder import PolarRecorder, polar_model
    from .recorder import DEVICE_KINDS, Recorder, find_any_band

    if kind == "auto":
        found, found_kind = await find_any_band(
            options.device, options.scan_timeout_s, kwargs.get("scanner_kwargs"), DEVICE_KINDS
        )
        if found_kind is None:  # a device named on the command line, not recognised
            found_kind = "polar" if polar_model(found.name) else "pmld"
        kind = found_kind
        options.device = found.address
    cls = PolarRecorder if kind == "polar" else Recorder
    return cls(options, **kwargs)


def _quiet_virtual_radio() -> None:
    """bumble's virtual controller logs errors for links that a drop took away: in a
    virtual radio with induced drops that is expected, and it would alarm a user."""
    import logging

    logging.getLogger("bumble").setLevel(logging.CRITICAL)


def cmd_record(args: argparse.Namespace) -> int:
    options = record_options(args)
    status = None if args.quiet else sys.stderr
    if args.virtual:
        _quiet_virtual_radio()
        result = asyncio.run(_record_virtual(args, options, status))
    else:
        kind, _ = device_choice(args.device)

        async def run():
            recorder = await make_recorder(kind, options, status=status)
            return await recorder.run(install_signal_handlers=True)

        result = asyncio.run(run())
    for line in result.lines():
        print(line)
    return 0


def virtual_rate(args: argparse.Namespace) -> int:
    """The virtual band's sampling rate: --fs, or its kind's usual rate."""
    return int(args.fs) if args.fs is not None else VIRTUAL_RATE[args.virtual]


def virtual_setup(args: argparse.Namespace, output: Path, speed: float) -> dict[str, Any]:
    """The simulated night and where a virtual band starts in it.

    A new recording starts the night with the band's first session. A recording
    continued after a crash finds the night where the journal left it plus the real
    time since (times ``speed``): the band has been on the ankle all along.
    """
    import numpy as np

    from ..clock import fit_sample_clock
    from ..io.journal import journal_path, read_journal
    from ..simulate import simulate_night

    fs = virtual_rate(args)
    night = simulate_night(args.scenario, hours=args.hours, fs_hz=float(fs), seed=args.seed)
    start_ns = int(night.start_utc.timestamp() * 1e9)
    setup = {"night": night, "start_ns": start_ns, "first_sample": 0, "continuous": False}
    journal = journal_path(output)
    if journal.exists() and journal.stat().st_size > 0:
        contents = read_journal(journal)
        if contents.blocks:
            last = np.array([b[0] + len(b[2]) - 1 for b in contents.blocks], np.int64)
            hosts = np.array([b[1] for b in contents.blocks], np.int64)
            fit = fit_sample_clock(last, hosts, float(fs))
            away_s = max(0.0, time.time() - journal.stat().st_mtime)
            away_night_s = away_s * speed if math.isfinite(speed) else 1.0
            clock_start = int(hosts.max() + away_night_s * 1e9)
            setup["start_ns"] = clock_start
            setup["first_sample"] = int(round((clock_start - fit.start_ns) / 1e9 * fs))
            setup["continuous"] = True
    return setup


async def _record_virtual(args: argparse.Namespace, options, status):
    from .band import VirtualClock
    from .virtual import VirtualRadio

    speed = _speed(args.speed)
    if not 23 <= args.mtu <= 517:
        raise UsageError(f"--mtu must be 23..517, got {args.mtu}")
    kind, _ = device_choice(args.device)
    setup = virtual_setup(args, options.output, speed)
    clock = VirtualClock(setup["start_ns"], speed)
    async with VirtualRadio() as radio:
        if args.virtual == "pmld":
            band = await _virtual_pmld_band(args, radio, setup, clock, options.device)
        else:
            band = await _virtual_polar_band(args, radio, setup, clock, options.device)
        recorder = await make_recorder(
            kind,
            options,
            clock=clock,
            scanner_kwargs=radio.scanner_kwargs(),
            client_kwargs=radio.client_kwargs(mtu=args.mtu),
            status=status,
        )

        async def night_over() -> None:  # a Polar band has no "session ended" of its own
            await band.finished.wait()
            recorder.request_stop("the simulated night is over")

        watcher = asyncio.ensure_future(night_over()) if args.virtual != "pmld" else None
        try:
            return await recorder.run(install_signal_handlers=True)
        finally:
            if watcher is not None:
                watcher.cancel()
            await band.close()


async def _virtual_pmld_band(args, radio, setup, clock, name):
    from .band import BandFaults, VirtualBand

    faults = BandFaults(
        drop_every=args.drop_every,
        duplicate_every=args.duplicate_every,
        corrupt_every=args.corrupt_every,
        unknown_every=args.unknown_every,
        disconnect_every_s=args.disconnect_every,
        disconnect_for_s=args.disconnect_for,
        max_disconnects=args.max_disconnects,
        clock_ppm=args.skew_ppm,
        reboot_at_s=args.reboot_at,
        reboot_for_s=args.reboot_for,
    )
    return await VirtualBand.from_night(
        radio,
        setup["night"],
        clock,
        name=name or "pmld-band",
        faults=faults,
        buffer_samples=args.buffer,
        first_sample=setup["first_sample"],
        continuous=setup["continuous"],
        kind=args.band,
    )


async def _virtual_polar_band(args, radio, setup, clock, name):
    from .polar_band import PolarFaults, VirtualPolarBand

    if args.band != "pmld":
        raise UsageError("--band (the impostors) applies to the virtual pmld band only")
    faults = PolarFaults(
        drop_every=args.drop_every,
        duplicate_every=args.duplicate_every,
        truncate_every=args.corrupt_every,
        bad_width_every=2 * args.corrupt_every,
        unknown_every=args.unknown_every,
        disconnect_every_s=args.disconnect_every,
        disconnect_for_s=args.disconnect_for,
        max_disconnects=args.max_disconnects,
        clock_ppm=args.skew_ppm,
        power_off_at_s=args.reboot_at,
        power_off_for_s=args.reboot_for,
        device_stop_at_s=list(args.device_stop_at or []),
    )
    return await VirtualPolarBand.from_night(
        radio,
        setup["night"],
        clock,
        model="h10" if args.virtual == "h10" else "verity",
        name=name,
        faults=faults,
        first_sample=setup["first_sample"],
    )


# --------------------------------------------------------------------------------------
# standalone
# --------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pmld.ble.cli_record scan|record ...``: the same as ``pmld scan|record``."""
    from ..cli import main as pmld_main

    return pmld_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
