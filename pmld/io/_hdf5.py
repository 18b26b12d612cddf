"""HDF5 plumbing shared by pmld's file formats: checked opening and column tables."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..errors import FormatError, InputError

_STR = h5py.string_dtype("utf-8")


@contextlib.contextmanager
def open_checked(path: str | os.PathLike, schema: str, version: str) -> Iterator[h5py.File]:
    """Open ``path`` for reading and check its ``schema`` and major version.

    Every failure is a one-line :class:`~pmld.errors.InputError` naming the file: a
    missing file, a file that is not HDF5 or is truncated, another schema, or a newer
    major version than ``version``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path=path)
    if path.is_dir():
        raise InputError("is a directory, not a file", path=path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise FormatError(_why_unreadable(path, error), path=path) from None
    with h5:
        check_schema(h5, path, schema, version)
        try:
            yield h5
        except (OSError, RuntimeError) as error:  # damaged chunks surface on read
            raise FormatError(f"is damaged or truncated ({error})", path=path) from None


def check_schema(h5: h5py.File, source: Path, schema: str, version: str) -> None:
    """Refuse a file of another schema or of a major version this pmld does not read."""
    found = attr_text(h5.attrs.get("schema"))
    if found != schema:
        what = "missing" if found is None else repr(found)
        raise FormatError(f"is HDF5 but not a {schema} file (schema attribute {what})", path=source)
    found_version = attr_text(h5.attrs.get("schema_version"))
    read_major = int(version.split(".")[0])
    try:
        major = int(str(found_version).split(".")[0])
    except ValueError:
        raise FormatError(
            f"{schema} file with an unreadable schema_version {found_version!r}", path=source
        ) from None
    if major > read_major:
        raise FormatError(
            f"is {schema} {found_version}; this pmld reads {read_major}.x: upgrade pmld",
            path=source,
        )
    if major < read_major:
        raise FormatError(
            f"is {schema} {found_version}, older than this pmld reads ({read_major}.x)",
            path=source,
        )


def _why_unreadable(path: Path, error: OSError) -> str:
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head != b"\x89HDF\r\n\x1a\n":
        if not head:
            return "is empty (0 bytes), not an HDF5 file"
        return "is not an HDF5 file"
    return "is an HDF5 file that cannot be opened: truncated or damaged (" + str(error) + ")"


def attr_plain(value):
    """An HDF5 attribute as a plain Python value: bytes decoded, NumPy scalars and 0-d
    arrays unwrapped, anything else as it is."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.shape == ():
        return value.item()
    return value


def attr_text(value) -> str | None:
    """An HDF5 attribute as text: bytes decoded, 0-d arrays unwrapped, None kept."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return attr_text(value.item())
    return str(value)


def write_table(
    parent: h5py.Group, name: str, frame: pd.DataFrame, units: Mapping[str, str] | None = None
) -> h5py.Group:
    """Store a DataFrame as a group with one dataset per column (order kept)."""
    group = parent.create_group(name)
    group.attrs["columns"] = np.array(list(frame.columns), dtype=_STR)
    group.attrs["n_rows"] = len(frame)
    for column, series in frame.items():
        values = series.to_numpy()
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            data = _text_array(values)
        elif values.dtype == bool:
            data = values.astype(np.bool_)
        else:
            data = values
        dataset = group.create_dataset(str(column), data=data)
        if units and column in units:
            dataset.attrs["unit"] = units[column]
    return group


def _text_array(values: np.ndarray) -> np.ndarray:
    """``str`` of every value, as an array h5py stores as UTF-8 variable-length text."""
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values.astype(_STR)  # all str already
    return np.array([str(v) for v in values], dtype=_STR)


def read_table(group: h5py.Group) -> pd.DataFrame:
    """Read a table written by :func:`write_table`."""
    columns = [attr_text(c) for c in group.attrs["columns"]]
    data = {}
    for column in columns:
        dataset = group[column]
        if h5py.check_string_dtype(dataset.dtype):
            data[column] = pd.Series(dataset.asstr()[()], dtype=object)
        else:
            data[column] = dataset[()]
    return pd.DataFrame(data, columns=columns)
