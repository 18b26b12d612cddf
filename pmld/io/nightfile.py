"""Opening a night file, whether it was finished or its recording was interrupted."""

from __future__ import annotations

import os
from pathlib import Path

from ..night import Night
from .journal import journal_path, repair
from .raw import read_raw


def open_night(path: str | os.PathLike) -> tuple[Night, str | None]:
    """Read a pmld-raw night; rebuild it from its recording journal when needed.

    A recording writes ``NAME.h5.journal`` and turns it into ``NAME.h5`` when it stops.
    If the journal is there and the night file is missing or older (the recorder was
    killed, or is still running), the night file is rebuilt from the journal first.

    Returns
    -------
    night : Night
    notice : str or None
        One line saying that (and what) was repaired, for the user; None otherwise.
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
    return read_raw(path), None
