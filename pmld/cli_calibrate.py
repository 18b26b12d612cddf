"""``pmld calibrate``: a stored calibration of one device from several of its recordings.

Thin: it opens the recordings, pools the still epochs of one device (matched by serial)
with :func:`pmld.signal.still_points`, fits them with :func:`pmld.signal.calibrate_points`
and writes :func:`pmld.io.calibration.write_device_calibration`. Method and file:
docs/calibration.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from .errors import InputError, UsageError
from .provenance import strict_json

EPILOG = """\
One night at the ankle rarely shows gravity in enough directions to calibrate the sensor
(supine, prone and the two sides lie in one plane of the leg). Pool recordings of the
same device instead, ideally with the band also turned by hand into six orientations
(each face up for a minute):

  pmld calibrate night1.h5 night2.h5 turned.h5 -o band-A12345.json

and give band-A12345.json to the analysis of that band's nights (docs/calibration.md).

Exit codes: 0 calibrated; 2 unusable input or options, or the calibration failed (the
message says why: too few still epochs, poor coverage on which axis, not converged,
error after calibration too large).
"""


def add_parsers(subparsers: Any) -> None:
    """Add ``calibrate`` to ``pmld``'s parser."""
    p = subparsers.add_parser(
        "calibrate",
        help="calibrate one device to local gravity from several of its recordings",
        description="Pool the still 10 s epochs of one device's recordings (pmld-raw "
        "night files, or any file pmld opens) and fit per-axis offset and scale so that "
        "gravity measures 1 g in every orientation (van Hees et al. 2014). With -o, write "
        "the result as a device calibration file (JSON) for pmld analyze to fall back on "
        "when a night cannot be autocalibrated.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", type=Path, nargs="+", metavar="FILE", help="recordings of the device")
    p.add_argument(
        "-o", "--output", type=Path, metavar="DEVICE_JSON",
        help="write the device calibration here (default: only report it)",
    )
    p.add_argument(
        "--device", metavar="SERIAL",
        help="calibrate the device with this serial when FILES hold several devices",
    )
    p.add_argument(
        "--still-sd", type=float, metavar="G", default=None,
        help="an epoch is still when every axis's SD is below G (default 0.013 g)",
    )
    p.add_argument(
        "--min-points", type=int, metavar="N", default=None,
        help="fewest still epochs to fit (default 40)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from .io.calibration import write_device_calibration
    from .io.nightfile import open_night
    from .provenance import file_sha256
    from .signal import CalibrationParams, calibrate_points, still_points

    overrides: dict[str, Any] = {}
    if args.still_sd is not None:
        if not math.isfinite(args.still_sd) or args.still_sd <= 0:
            raise UsageError(f"--still-sd must be a positive number of g, got {args.still_sd}")
        overrides["still_sd_g"] = args.still_sd
    if args.min_points is not None:
        if args.min_points < 1:
            raise UsageError(f"--min-points must be at least 1, got {args.min_points}")
        overrides["min_points"] = args.min_points
    params = CalibrationParams(**overrides)
    seen: set[Path] = set()
    for path in args.files:
        if path.resolve() in seen:
            raise UsageError(f"{path}: given twice")
        seen.add(path.resolve())
        if not path.exists():
            raise InputError("no such file", path=path)
    if args.output is not None:
        directory = args.output.parent if str(args.output.parent) else Path(".")
        if not directory.is_dir():
            raise UsageError(f"{args.output}: directory {directory} does not exist")

    # -- read every file and group its sensors by device serial
    sensors: list[tuple[Path, Any]] = []
    for path in args.files:
        night, notice = open_night(path)
        if notice:
            print(f"pmld: {notice}", file=sys.stderr)
        for sensor in night.sensors:
            sensors.append((path, sensor))
    by_serial: dict[str, list[tuple[Path, Any]]] = {}
    for path, sensor in sensors:
        serial = sensor.device.get("serial")
        serial = "" if serial is None else str(serial).strip()
        by_serial.setdefault(serial, []).append((path, sensor))
    if args.device is not None:
        chosen = by_serial.get(str(args.device))
        if not chosen:
            known = ", ".join(sorted(s or "(no serial)" for s in by_serial))
            raise UsageError(f"no sensor of device {args.device} in FILES (they hold: {known})")
        serial = str(args.device)
    else:
        if "" in by_serial:
            path = by_serial[""][0][0]
            raise InputError(
                "a sensor has no device serial, so a calibration of it could not be matched "
                "to its device later; import the recording with its device metadata",
                path=path,
            )
        if len(by_serial) > 1:
            listing = "; ".join(
                f"{serial}: {len(items)} recording{'s' if len(items) != 1 else ''}"
                for serial, items in sorted(by_serial.items())
            )
            raise UsageError(
                f"FILES hold {len(by_serial)} devices ({listing}); calibrate one at a time "
                "with --device SERIAL"
            )
        serial = next(iter(by_serial))
        chosen = by_serial[serial]

    # -- pool the still epochs
    import numpy as np

    pooled, inputs, models = [], [], set()
    n_epochs = 0
    for path, sensor in chosen:
        found = still_points(
            sensor.acc_g, sensor.fs_hz, params, segments=list(sensor.segments())
        )
        magnitude = found.median_magnitude_g
        if math.isfinite(magnitude) and not 0.5 <= magnitude <= 2.0:
            raise InputError(
                f"the {sensor.side} sensor's acceleration is not in g (median magnitude "
                f"{magnitude:.3g}, not about 1)",
                path=path,
            )
        pooled.append(found.points)
        n_epochs += found.n_epochs
        if sensor.device.get("model"):
            models.add(str(sensor.device["model"]))
        inputs.append(
            {
                "path": str(path),
                "sha256": file_sha256(path),
                "side": sensor.side,
                "start_utc": sensor.start_utc.isoformat(),
                "hours": round(sensor.duration_s / 3600.0, 4),
                "n_points": int(len(found.points)),
            }
        )
    device = {"serial": serial}
    if models:
        device["model"] = ", ".join(sorted(models))
    points = np.concatenate(pooled) if pooled else np.zeros((0, 3))
    calibration = calibrate_points(points, params, n_epochs=n_epochs, device=device)
    label = f"device {serial}" + (f" ({device['model']})" if "model" in device else "")
    if calibration.status != "autocalibrated":
        reason = calibration.reason.removeprefix("autocalibration failed: ")
        raise InputError(
            f"cannot calibrate {label} from {len(chosen)} recording"
            f"{'s' if len(chosen) != 1 else ''}: {reason}"
        )
    written = None
    if args.output is not None:
        written = write_device_calibration(
            args.output, calibration, inputs=inputs, params=params.to_dict()
        )
    if args.json:
        out = {"device": device, "calibration": calibration.to_dict(), "inputs": inputs}
        if written is not None:
            out["output"] = str(args.output)
        print(json.dumps(strict_json(out), indent=2))
        return 0
    offset = ", ".join(f"{v * 1000:+.1f}" for v in calibration.offset_g)
    scale = ", ".join(f"{v:.4f}" for v in calibration.scale)
    print(
        f"{label}: {calibration.n_points} still epochs from {len(chosen)} recording"
        f"{'s' if len(chosen) != 1 else ''}; offset ({offset}) mg, scale ({scale}); error "
        f"{calibration.error_before_g * 1000:.1f} -> {calibration.error_after_g * 1000:.1f} mg"
    )
    if written is not None:
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["calibrate", *sys.argv[1:]]))
