"""Event tables on disk: leg-movement lists as CSV."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

LM_REQUIRED = ("onset_s", "offset_s", "side")


def read_lm_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV of leg movements with columns ``onset_s, offset_s, side``.

    Optional columns (``kind``, amplitudes, ...) are kept. Every problem is a one-line
    :class:`~pmld.errors.InputError` naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=path)
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError("is empty: expected a header onset_s,offset_s,side", path=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(f"is not a readable CSV ({error})", path=path) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in LM_REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(
            f"lacks column(s) {', '.join(missing)}; it has {', '.join(frame.columns)}",
            path=path,
        )
    for column in ("onset_s", "offset_s"):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna().to_numpy()
        if bad.any():
            line = int(np.flatnonzero(bad)[0]) + 2  # 1-based, after the header
            raise InputError(
                f"line {line}: {column} is {frame[column].iloc[line - 2]!r}, not a number"
                + (f" ({int(bad.sum())} such lines)" if bad.sum() > 1 else ""),
                path=path,
            )
        frame[column] = numbers.astype("float64")
    # Check here what the scorer would refuse, so the message names the file and line.
    side = frame["side"].fillna("").astype(str).str.strip().str.lower()
    bad_side = ~side.isin(["left", "right", "unknown", "l", "r", "u", ""]).to_numpy()
    if bad_side.any():
        row = int(np.flatnonzero(bad_side)[0])
        raise InputError(
            f"line {row + 2}: side is {frame['side'].iloc[row]!r}, not L, R, left, right "
            "or unknown",
            path=path,
        )
    backwards = (frame["offset_s"] < frame["onset_s"]).to_numpy()
    if backwards.any():
        row = int(np.flatnonzero(backwards)[0])
        raise InputError(
            f"line {row + 2}: offset_s {frame['offset_s'].iloc[row]:g} is before onset_s "
            f"{frame['onset_s'].iloc[row]:g}",
            path=path,
        )
    return frame
