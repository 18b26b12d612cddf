"""Device calibration files (JSON, schema ``pmld-device-calibration``).

A device calibration is pooled from several recordings of one sensor by ``pmld calibrate``
and used when a night of that sensor cannot be autocalibrated
(:func:`pmld.signal.choose_calibration`). Layout and method: docs/calibration.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import FormatError, InputError, UsageError
from ..night import Calibration
from ..provenance import stamp, strict_json
from ._files import write_atomic

__all__ = [
    "CALIBRATION_SCHEMA",
    "CALIBRATION_VERSION",
    "read_device_calibration",
    "read_device_calibrations",
    "write_device_calibration",
]

#: Schema name and version of a device calibration file (``pmld calibrate -o``).
CALIBRATION_SCHEMA = "pmld-device-calibration"
CALIBRATION_VERSION = "1.0"


def write_device_calibration(
    path: str | os.PathLike,
    calibration: Calibration,
    *,
    inputs: Iterable[dict[str, Any]] = (),
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a device calibration file (JSON), atomically.

    Parameters
    ----------
    path : path
    calibration : Calibration
        An ``autocalibrated`` result of pooled recordings of one device.
    inputs : iterable of dict
        The recordings it was computed from: ``path``, ``sha256``, ``n_points``, ...
    params : mapping, optional
        The calibration parameters used (``CalibrationParams.to_dict()``), recorded for
        provenance.

    Returns
    -------
    dict
        What was written.

    Raises
    ------
    UsageError
        ``calibration`` is not a successful autocalibration.
    PmldError
        The file cannot be written.
    """
    if calibration.status != "autocalibrated":
        raise UsageError("only a successful autocalibration can be stored")
    entry = calibration.to_dict()
    entry["source"] = ""
    content = {
        "schema": CALIBRATION_SCHEMA,
        "schema_version": CALIBRATION_VERSION,
        **stamp(),
        "device": dict(calibration.device),
        "calibrations": [entry],
        "params": dict(params or {}),
        "inputs": [dict(item) for item in inputs],
    }
    text = json.dumps(strict_json(content), indent=2, sort_keys=False) + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    write_atomic([(Path(path), write)])
    return content


def read_device_calibration(path: str | os.PathLike) -> list[Calibration]:
    """Read a device calibration file written by :func:`write_device_calibration`.

    Returns
    -------
    list of Calibration
        One per device the file holds (``pmld calibrate`` writes one), with ``source``
        set to ``path`` and the file's creation time in ``details["created_utc"]``.

    Raises
    ------
    InputError
        The file is missing or unreadable.
    FormatError
        Not JSON, not a device calibration, or a schema version this pmld cannot read.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such device calibration file", path=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {getattr(exc, 'strerror', None) or exc}",
                         path=source) from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"not a valid JSON device calibration (line {exc.lineno}: {exc.msg})", path=source
        ) from None
    if not isinstance(content, dict) or content.get("schema") != CALIBRATION_SCHEMA:
        raise FormatError(f"not a {CALIBRATION_SCHEMA} file (pmld calibrate -o writes one)",
                          path=source)
    version = str(content.get("schema_version", ""))
    if version.split(".")[0] != CALIBRATION_VERSION.split(".")[0]:
        raise FormatError(
            f"device calibration schema version {version or '?'} is not readable by this "
            f"pmld (it reads {CALIBRATION_VERSION.split('.')[0]}.x): update pmld",
            path=source,
        )
    entries = content.get("calibrations")
    if not isinstance(entries, list) or not entries:
        raise FormatError("holds no calibration", path=source)
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise FormatError("a calibration entry is not an object", path=source)
        try:
            calibration = Calibration.from_dict(entry)
        except FormatError as exc:
            raise FormatError(str(exc), path=source) from None
        calibration.source = str(source)
        if content.get("created_utc"):
            calibration.details["created_utc"] = str(content["created_utc"])
        out.append(calibration)
    return out


def read_device_calibrations(paths: Iterable[str | os.PathLike]) -> list[Calibration]:
    """The calibrations of several device calibration files, in order (for
    ``CalibrationParams.device_files``); errors as for :func:`read_device_calibration`."""
    return [calibration for path in paths for calibration in read_device_calibration(path)]
