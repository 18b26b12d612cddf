"""File plumbing shared by pmld's readers and writers: the first bytes of a file, and
writing outputs atomically."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import InputError, PmldError


def read_head(source: Path, size: int) -> bytes:
    """The first ``size`` bytes of a file, with a one-line error when there is none to
    read (missing, a directory, unreadable)."""
    if not source.exists():
        raise InputError("no such file", path=source)
    if not source.is_file():
        raise InputError("is not a file", path=source)
    try:
        with open(source, "rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=source) from None


def write_atomic(
    targets: Sequence[tuple[Path, Callable[[Path], None]]], *, fsync: bool = False
) -> None:
    """Write each target under a temporary name in its directory, then rename them all.

    ``write(tmp)`` creates the file at ``tmp`` (so it gets the usual permissions under
    the user's umask). A failure before the renames leaves nothing behind: the
    temporary files are removed, and an ``OSError`` becomes a one-line
    :class:`PmldError` naming the first target. ``fsync`` flushes each file to disk
    before the renames.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for target, write in targets:
            target = Path(target)
            tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
            temps.append((tmp, target))
            write(tmp)
            if fsync:
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
        for tmp, target in temps:
            os.replace(tmp, target)
    except OSError as exc:
        raise PmldError(f"cannot write: {exc.strerror or exc}", path=targets[0][0]) from None
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
