"""Provenance: what every pmld output file records so that a result can be reproduced.

An output carries the pmld version, the fully resolved parameters, and the SHA-256 of
its input, so that re-running on the same input with the same parameters can be
recognised (and skipped) and gives the same result.
"""

from __future__ import annotations

import hashlib
import json
import math
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


def strict_json(value: Any) -> Any:
    """``value`` made fit for strict JSON: NaN and infinities as null (JSON has
    neither), NumPy scalars and arrays as Python numbers and lists, mapping keys as
    strings."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if getattr(value, "ndim", 0) and hasattr(value, "tolist"):  # a NumPy array
        return [strict_json(v) for v in value.tolist()]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
