"""Opening a night file, whether it was finished or its recording was interrupted, or a
device file (Axivity .cwa, ActiGraph .gt3x, GENEActiv .bin) that holds one night."""

from __future__ import annotations

import os
from pathlib import Path

from ..night import Night
from .devices import FORMAT_NAMES, read_device_night, sniff_device_format
from .journal import journal_path, repair
from .raw import read_raw


def open_night(
    path: str | os.PathLike, *, timezone: str | None = None
) -> tuple[Night, str | None]:
    """Read a pmld-raw night; rebuild it from its recording journal when needed.

    A recording writes ``NAME.h5.journal`` and turns it into ``NAME.h5`` when it stops.
    If the journal is there and the night file is missing or older (the recorder was
    killed, or is still running), the night file is rebuilt from the journal first.

    A device file (recognised by its content, :func:`pmld.io.devices.sniff_device_format`)
    is read with :func:`pmld.io.devices.read_device_night` when it holds one night; a
    multi-night file is refused with a one-line :class:`~pmld.errors.FormatError` that
    says to split it with ``pmld import FILE -o DIR`` first (taking its first night
    silently would analyse a part of the file without saying so).

    Parameters
    ----------
    path : path
    timezone : str, optional
        Device files only: the IANA zone where the device was configured (see
        :func:`pmld.io.devices.read_device`).

    Returns
    -------
    night : Night
    notice : str or None
        One line saying that (and what) was repaired, or how a device file was read,
        for the user; None otherwise.
    """
    path = Path(path)
    journal = journal_path(path)
    if journal.exists() and (
        not path.exists() or journal.stat().st_mtime > path.stat().st_mtime
    ):
        report = repair(path)
        torn = report.get("torn_bytes_at_end", 0)
        damaged = report.get("damaged_bytes_skipped", 0)
        extra = "".join(
            [
                f", a torn last record of {torn} bytes dropped" if torn else "",
                f", {damaged} damaged bytes skipped" if damaged else "",
            ]
        )
        notice = (
            f"{path}: the recording did not finish (or is still running); rebuilt from "
            f"{journal.name}: {report['samples_kept']:,} samples, {report['gaps']} gaps"
            f"{extra}"
        )
        return read_raw(path), notice
    if path.is_file() and sniff_device_format(path) is not None:
        night, report = read_device_night(path, timezone=timezone)
        notice = (
            f"{path}: {FORMAT_NAMES[report.format]} file read directly as the night of "
            f"{night.meta['night_date']}"
        )
        if report.notes:
            notice += "; " + "; ".join(report.notes)
        return night, notice
    return read_raw(path), None
