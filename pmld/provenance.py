"""Provenance: what every pmld output file records so that a result can be reproduced.

An output carries the pmld version, the fully resolved parameters, and the SHA-256 of
its input, so that re-running on the same input with the same parameters can be
recognised (and skipped) and gives the same result.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as ``sha256:<hex>``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal parameters give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=jsonable)


def jsonable(value: Any) -> Any:
    """``json.dumps`` fallback: NumPy scalars, datetimes and paths as plain values."""
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def stamp(**extra: Any) -> dict[str, Any]:
    """The provenance attributes common to every output file."""
    return {
        "pmld_version": __version__,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def user_file_mode() -> int:
    """The permissions a new file gets from ``open()`` under the current umask
    (``tempfile.mkstemp`` makes its files 0600: a file renamed into place from one must
    be given these, or nobody else can read the summary or report)."""
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
