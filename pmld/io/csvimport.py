"""Import acceleration from a CSV file into a :class:`~pmld.night.Night`.

The expected file has a header line and one row per sample::

    time_s,x,y,z
    0.00,0.012,-0.031,0.998
    0.01,0.011,-0.030,1.001

Column names are chosen with ``time_column`` and ``axes``; the separator (comma,
semicolon or tab) is taken from the header line. The time column holds seconds from
the start, or ISO 8601 times with a UTC offset (then they give the absolute start).
Without a time column, ``fs_hz`` says the rows are uniform at that rate.

Irregular timestamps are brought onto a uniform grid by :mod:`pmld.resample`
(linear interpolation, never across more than ``max_gap_s``; longer intervals become
gaps). Every expected problem (missing file, missing column, text or empty values,
time going backwards, conflicting duplicates, wrong units) is a one-line
:class:`~pmld.errors.InputError` or :class:`~pmld.errors.UsageError` naming the file
and, where it helps, the lines (1-based lines of the file, the header included).

Lines that are empty or only white space are skipped (and not counted as rows); quoted
fields with line breaks inside are not supported.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from .. import resample
from ..errors import InputError, UsageError
from ..night import SIDES, Night, Sensor, as_utc, check_timezone

#: Factors from each accepted unit to g (standard gravity, ISO 80000-3).
STANDARD_GRAVITY = 9.80665
UNITS_TO_G = {"g": 1.0, "mg": 1e-3, "m/s2": 1.0 / STANDARD_GRAVITY}
_UNIT_ALIASES = {
    "m/s^2": "m/s2",
    "m/s**2": "m/s2",
    "m/s²": "m/s2",
    "ms2": "m/s2",
    "ms-2": "m/s2",
    "m s-2": "m/s2",
    "mps2": "m/s2",
}

#: The absolute start used when the file does not give one.
DEFAULT_START_UTC = datetime(2000, 1, 1, tzinfo=UTC)

#: Median magnitude (in g) accepted as "gravity plus movement" by the unit check.
GRAVITY_BAND_G = (0.5, 2.0)

#: Time values above this (seconds, about 1973) are read as Unix time.
_UNIX_TIME_FLOOR_S = 1e8

_ISO_PATTERN = re.compile(r"^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_NA_STRINGS = {
    "",
    "nan",
    "-nan",
    "na",
    "n/a",
    "null",
    "none",
    "#n/a",
    "#na",
    "<na>",
    "-na",
    "1.#ind",
    "-1.#ind",
    "1.#qnan",
    "-1.#qnan",
}
_SHOW_LINES = 5
_WHITE_SPACE = np.zeros(256, dtype=bool)
_WHITE_SPACE[[9, 10, 11, 12, 13, 32]] = True


@dataclass
class ImportReport:
    """What an import found and did; ``lines()`` gives it as text for a user."""

    path: str
    rows_read: int
    effective_fs_hz: float
    output_fs_hz: float
    jitter_ms: float
    gap_count: int
    gap_total_s: float
    duplicates_dropped: int
    resampled: bool
    units: str
    median_magnitude_g: float
    time_source: str
    start_utc: datetime
    start_known: bool
    max_gap_s: float
    notes: list[str] = field(default_factory=list)
    duplicate_lines: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary, one fact a line."""
        out = [
            f"source: {self.path} ({self.rows_read:,} rows)",
            f"time: {self.time_source}; effective rate {self.effective_fs_hz:.3f} Hz, "
            f"jitter {self.jitter_ms:.3f} ms",
            f"units: {self.units} (median magnitude {self.median_magnitude_g:.3f} g)",
        ]
        if self.resampled:
            out.append(
                f"output: {self.output_fs_hz:g} Hz grid, resampled by linear interpolation "
                f"(not across intervals longer than {self.max_gap_s:g} s)"
            )
        else:
            out.append(
                f"output: {self.output_fs_hz:g} Hz grid, samples kept as they are "
                "(already on the grid)"
            )
        out.append(f"gaps: {self.gap_count} ({self.gap_total_s:.3f} s missing)")
        where = f" ({_lines_text(self.duplicate_lines)})" if self.duplicate_lines else ""
        out.append(f"exact duplicate rows dropped: {self.duplicates_dropped}{where}")
        when = self.start_utc.isoformat().replace("+00:00", "Z")
        if self.start_known:
            out.append(f"start: {when}")
        else:
            out.append(f"start: unknown; {when} used (give start_utc to set it)")
        out.extend(f"note: {note}" for note in self.notes)
        return out


def read_accel_csv(
    path: str | os.PathLike,
    *,
    time_column: str | None = "time_s",
    axes: Sequence[str] = ("x", "y", "z"),
    units: str = "g",
    fs_hz: float | None = None,
    side: str = "unknown",
    start_utc: datetime | str | None = None,
    timezone: str = "UTC",
    max_gap_s: float = 1.0,
    check_units: bool = True,
) -> tuple[Night, ImportReport]:
    """Read acceleration from a CSV file into a one-sensor :class:`Night`.

    Parameters
    ----------
    path : path
        The CSV file (UTF-8, header line first).
    time_column : str or None
        Column of times: seconds from the start (float) or ISO 8601 times with a UTC
        offset. None, or a name the file lacks while ``fs_hz`` is given: the rows are
        taken as uniform at ``fs_hz``.
    axes : three str
        Columns of the x, y and z acceleration.
    units : {'g', 'mg', 'm/s2'}
        Units of the acceleration columns; converted to g.
    fs_hz : float, optional
        Output grid rate. Default: the effective rate (1 / median interval) snapped to a
        common device rate within 2 % or rounded to 0.01 Hz (:mod:`pmld.resample`).
    side : {'left', 'right', 'unknown'}
        Ankle the sensor was on.
    start_utc : datetime or ISO 8601 str with offset, optional
        Absolute time of time 0 of a seconds time column. Default: 2000-01-01T00:00Z,
        and the report says that the start is unknown.
    timezone : str
        IANA time zone of the night (for local clock times in reports).
    max_gap_s : float
        Longest interval between samples interpolated across; longer ones are gaps.
    check_units : bool
        Refuse data whose median magnitude is not about 1 g (gravity), with a hint at
        the right units. Turn off only for data known to be right.

    Returns
    -------
    night : Night
    report : ImportReport

    Raises
    ------
    InputError
        The file is missing, empty, lacks a column, holds text, empty or non-finite
        values, time going backwards or duplicate times with different values, or
        fewer than 2 samples.
    UsageError
        An invalid option, or units that do not fit the data.
    """
    source = Path(path)
    unit = _check_units_name(units)
    axes = _check_axes(axes)
    if fs_hz is not None and not (np.isfinite(fs_hz) and fs_hz > 0):
        raise UsageError(f"sampling rate must be a positive number of Hz, got {fs_hz}")
    if not (max_gap_s > 0):
        raise UsageError(f"max_gap_s must be positive, got {max_gap_s}")
    if side not in SIDES:
        raise UsageError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    check_timezone(timezone)
    start = None if start_utc is None else as_utc(start_utc)

    table = _CsvTable(source)
    missing_axes = [a for a in axes if a not in table.columns]
    if missing_axes:
        raise InputError(
            f"no column {_names(missing_axes)} (columns are: {', '.join(table.columns)}); "
            + (
                "the file needs a header line"
                if table.header_is_numbers
                else "choose the axes columns"
            ),
            path=source,
        )
    if time_column is not None and time_column not in table.columns:
        if fs_hz is None:
            raise InputError(
                f"no time column {time_column!r} (columns are: {', '.join(table.columns)}); "
                "name the time column, or give the sampling rate if rows are uniform",
                path=source,
            )
        time_column = None
    notes: list[str] = []

    values, times_s, absolute_start = table.read(list(axes), time_column)
    rows_read = len(values)
    if rows_read == 0:
        raise InputError("has a header but no data rows", path=source)
    _check_finite(table, values, times_s, list(axes), time_column)

    if time_column is None:
        times_s = np.arange(rows_read, dtype=np.float64) / fs_hz
        time_source = f"no time column: rows uniform at {fs_hz:g} Hz"
    elif absolute_start is not None:
        time_source = f"column {time_column!r} (ISO 8601 times)"
    else:
        time_source = f"column {time_column!r} (seconds)"

    _check_order(table, times_s)
    values, times_s, duplicate_lines = _drop_duplicates(table, values, times_s)
    dropped = len(duplicate_lines)
    if len(values) < 2:
        raise InputError(f"has {len(values)} sample(s); at least 2 are needed", path=source)

    median_raw = float(np.median(np.sqrt(np.einsum("ij,ij->i", values, values))))
    median_g = median_raw * UNITS_TO_G[unit]
    if check_units:
        _check_gravity(source, unit, median_raw)
    values = values * UNITS_TO_G[unit]

    # Absolute start: file times, then start_utc, then Unix-looking seconds, then default.
    start_known = True
    if absolute_start is not None:
        if start is not None:
            notes.append("start_utc ignored: the time column gives absolute times")
        start = absolute_start
        start_source = "time column"
    elif start is not None:
        start = start + timedelta(seconds=float(times_s[0]))
        start_source = "start_utc"
    elif time_column is not None and times_s[0] > _UNIX_TIME_FLOOR_S:
        start = datetime.fromtimestamp(float(times_s[0]), UTC)
        start_source = "unix time column"
        notes.append("time values read as Unix time (seconds since 1970-01-01T00:00Z)")
    else:
        start = DEFAULT_START_UTC + timedelta(seconds=float(times_s[0]))
        start_source = "default"
        start_known = False
    times_s = times_s - times_s[0]

    effective_hz = resample.effective_rate_hz(times_s)
    median_step_s = 1.0 / effective_hz
    if max_gap_s < median_step_s:
        hint = " Is the time column in milliseconds?" if median_step_s >= 2 else ""
        raise UsageError(
            f"the median interval between samples ({median_step_s:.4g} s) is longer than "
            f"max_gap_s ({max_gap_s:g} s): every interval would be a gap.{hint}",
            path=source,
        )
    grid_hz = float(fs_hz) if fs_hz is not None else resample.grid_rate_hz(effective_hz)
    if grid_hz < 0.8 * effective_hz:
        notes.append(
            f"output rate {grid_hz:g} Hz is below the source rate {effective_hz:.3g} Hz: "
            "linear interpolation does not low-pass filter, expect aliasing"
        )
    grid = resample.to_grid(times_s, values, grid_hz, max_gap_s=max_gap_s)

    sensor = Sensor(
        grid.values.astype(np.float32),
        grid_hz,
        start + timedelta(seconds=grid.start_s),
        side=side,
        gaps=pd.DataFrame({"sample_index": grid.gap_index, "missing_samples": grid.gap_missing}),
    )
    meta = {
        "source_file": source.name,
        "source_format": "csv",
        "source_units": unit,
        "start_source": start_source,
        "resampled": "yes" if grid.interpolated else "no",
    }
    night = Night([sensor], timezone=timezone, meta=meta)
    report = ImportReport(
        path=str(source),
        rows_read=rows_read,
        effective_fs_hz=effective_hz,
        output_fs_hz=grid_hz,
        jitter_ms=1000.0 * resample.jitter_s(times_s, max_gap_s),
        gap_count=int(grid.gap_index.size),
        gap_total_s=grid.missing_samples / grid_hz,
        duplicates_dropped=dropped,
        duplicate_lines=duplicate_lines,
        resampled=grid.interpolated,
        units=unit,
        median_magnitude_g=median_g,
        time_source=time_source,
        start_utc=sensor.start_utc,
        start_known=start_known,
        max_gap_s=float(max_gap_s),
        notes=notes,
    )
    return night, report


# -- options -----------------------------------------------------------------------------
def _check_units_name(units: str) -> str:
    key = str(units).strip()
    key = _UNIT_ALIASES.get(key.lower(), key if key in ("g", "mg") else key.lower())
    if key not in UNITS_TO_G:
        raise UsageError(f"unknown units {units!r}: use one of {', '.join(UNITS_TO_G)}")
    return key


def _check_axes(axes: Sequence[str] | str) -> tuple[str, str, str]:
    if isinstance(axes, str):
        axes = [a.strip() for a in axes.split(",")]
    axes = tuple(str(a) for a in axes)
    if len(axes) != 3 or len(set(axes)) != 3:
        raise UsageError(f"axes must name three different columns, got {list(axes)}")
    return axes  # type: ignore[return-value]


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _lines_text(lines: Sequence[int]) -> str:
    """'line 7' or 'lines 7, 9, ...' (the first few of them)."""
    shown = ", ".join(str(n) for n in lines[:_SHOW_LINES])
    more = ", ..." if len(lines) > _SHOW_LINES else ""
    return f"line{'s' if len(lines) > 1 else ''} {shown}{more}"


def _more(count: int, what: str, lines: Sequence[int]) -> str:
    """' and 3 more places (lines 7, 9, 12)' for ``count`` further occurrences."""
    if count <= 0:
        return ""
    return f" and {count} more {what}{'s' if count > 1 else ''} ({_lines_text(lines)})"


# -- the file --------------------------------------------------------------------------
class _CsvTable:
    """A CSV file's header, separator and (on demand) the line number of each row."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise InputError("no such file", path=path)
        if not path.is_file():
            raise InputError("is not a file", path=path)
        header, self.header_line = self._header()
        self.sep = max((",", ";", "\t"), key=header.count)
        names = next(csv.reader([header], delimiter=self.sep))
        self.raw_columns = names
        self.columns = [n.strip().lstrip("\ufeff").strip() for n in names]
        self._line_numbers: np.ndarray | None = None

    @property
    def header_is_numbers(self) -> bool:
        """True when the first line looks like data, not column names."""
        try:
            [float(name) for name in self.columns]
        except ValueError:
            return False
        return True

    def _header(self) -> tuple[str, int]:
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        return line.rstrip("\r\n"), number
        except UnicodeDecodeError:
            raise InputError("is not UTF-8 text (is it a CSV file?)", path=self.path) from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", path=self.path) from None
        raise InputError("is empty", path=self.path)

    def _raw_name(self, column: str) -> str:
        return self.raw_columns[self.columns.index(column)]

    def _read_csv(self, columns: list[str], dtype) -> pd.DataFrame:
        raw = [self._raw_name(c) for c in columns]
        try:
            frame = pd.read_csv(
                self.path,
                sep=self.sep,
                usecols=raw,
                dtype=dtype
                if not isinstance(dtype, dict)
                else {self._raw_name(k): v for k, v in dtype.items()},
                engine="c",
                encoding="utf-8",
                na_filter=dtype is not str,
                keep_default_na=dtype is not str,
            )
        except pd.errors.EmptyDataError:
            raise InputError("is empty", path=self.path) from None
        except pd.errors.ParserError as exc:
            raise InputError(f"is not valid CSV: {_first_line(exc)}", path=self.path) from None
        except UnicodeDecodeError:
            raise InputError("is not UTF-8 text (is it a CSV file?)", path=self.path) from None
        frame.columns = [self.columns[self.raw_columns.index(c)] for c in frame.columns]
        return frame

    def read(
        self, axes: list[str], time_column: str | None
    ) -> tuple[np.ndarray, np.ndarray | None, datetime | None]:
        """Axes as float64 (n, 3), times in seconds (or None), absolute start (ISO)."""
        if time_column is not None and self._time_is_iso(time_column):
            return self._read_iso(axes, time_column)
        columns = axes + ([time_column] if time_column else [])
        try:
            frame = self._read_csv(columns, dict.fromkeys(columns, "float64"))
        except ValueError:
            raise self._text_error(columns) from None
        values = frame[axes].to_numpy(dtype=np.float64)
        times = frame[time_column].to_numpy(dtype=np.float64) if time_column else None
        return values, times, None

    def _time_is_iso(self, time_column: str) -> bool:
        try:
            head = pd.read_csv(
                self.path, sep=self.sep, usecols=[self._raw_name(time_column)], dtype=str, nrows=5
            )
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
            return False  # the full read reports it
        first = head.iloc[:, 0].dropna()
        return bool(len(first)) and bool(_ISO_PATTERN.match(str(first.iloc[0])))

    def _read_iso(
        self, axes: list[str], time_column: str
    ) -> tuple[np.ndarray, np.ndarray, datetime]:
        try:
            frame = self._read_csv(
                axes + [time_column], {**dict.fromkeys(axes, "float64"), time_column: str}
            )
        except ValueError:
            raise self._text_error(axes) from None
        try:
            stamps = pd.to_datetime(frame[time_column], format="ISO8601")
        except (ValueError, TypeError, OverflowError):
            stamps = None  # text, or offsets that differ (a DST change): look closer
        if stamps is None or stamps.dt.tz is None:
            stamps = self._check_iso(frame[time_column], time_column)
        else:
            stamps = stamps.dt.tz_convert("UTC")
        first = stamps.dropna()
        origin = first.iloc[0] if len(first) else pd.Timestamp(0, tz="UTC")
        seconds = (stamps - origin).dt.total_seconds().to_numpy(dtype=np.float64)
        values = frame[axes].to_numpy(dtype=np.float64)
        return values, seconds, origin.to_pydatetime()

    def _check_iso(self, column: pd.Series, name: str) -> pd.Series:
        """Parse ISO 8601 times one by one: name the first that is not one or that has
        no UTC offset; return them in UTC."""
        text = column.astype(str).str.strip()
        stamps = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        bad = stamps.isna().to_numpy() & ~text.str.lower().isin(_NA_STRINGS).to_numpy()
        if bad.any():
            rows = np.flatnonzero(bad)
            lines = self.line_numbers()[rows]
            raise InputError(
                f"line {lines[0]}, column {name!r}: {text.iloc[rows[0]]!r} is not an "
                "ISO 8601 time" + _more(len(rows) - 1, "line", lines[1:]),
                path=self.path,
            )
        has_offset = text.str.contains(r"(?:Z|[+-]\d\d(?::?\d\d)?)$", regex=True)
        naive = ~has_offset.to_numpy() & ~stamps.isna().to_numpy()
        if naive.any():
            row = int(np.flatnonzero(naive)[0])
            raise InputError(
                f"line {self.line_numbers()[row]}, column {name!r}: {text.iloc[row]!r} has "
                "no UTC offset; pmld does not guess time zones: add the offset (e.g. +01:00 "
                "or Z) or use seconds and a start time",
                path=self.path,
            )
        return stamps

    def _text_error(self, columns: list[str]) -> InputError:
        """Find the first cell of ``columns`` that is text, not a number."""
        frame = self._read_csv(columns, str)
        found: list[tuple[int, str, str]] = []
        for column in columns:
            text = frame[column].astype(str).str.strip()
            numbers = pd.to_numeric(text, errors="coerce")
            bad = numbers.isna() & ~text.str.lower().isin(_NA_STRINGS)
            found.extend((int(r), column, text.iloc[r]) for r in np.flatnonzero(bad.to_numpy()))
        if not found:
            return InputError("has values that are not numbers", path=self.path)
        found.sort()
        lines = self.line_numbers()
        row, column, value = found[0]
        more = sorted({int(lines[r]) for r, _, _ in found[1:]} - {int(lines[row])})
        return InputError(
            f"line {lines[row]}, column {column!r}: {value!r} is not a number"
            + _more(len(more), "line with text", more),
            path=self.path,
        )

    def line_numbers(self) -> np.ndarray:
        """File line (1-based, header counted) of every data row pandas returns.

        pandas skips blank lines, so row ``i`` is the ``i``-th non-blank line after the
        header. Computed from the bytes, only when an error needs line numbers.
        """
        if self._line_numbers is None:
            data = np.frombuffer(self.path.read_bytes(), dtype=np.uint8)
            ends = np.flatnonzero(data == 10)
            if data.size and data[-1] != 10:
                ends = np.append(ends, data.size)
            starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
            blank = ends == starts
            if data.size:
                content = ~_WHITE_SPACE[data]
                # Whether each line holds anything but white space (its newline is white).
                found = np.logical_or.reduceat(content, np.minimum(starts, data.size - 1))
                blank |= ~found
            numbers = np.flatnonzero(~blank) + 1
            self._line_numbers = numbers[numbers > self.header_line]
        return self._line_numbers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- checks ----------------------------------------------------------------------------
def _check_finite(
    table: _CsvTable,
    values: np.ndarray,
    times_s: np.ndarray | None,
    axes: list[str],
    time_column: str | None,
) -> None:
    bad_cells = ~np.isfinite(values)
    bad = bad_cells.any(axis=1)
    if times_s is not None:
        bad |= ~np.isfinite(times_s)
    if not bad.any():
        return
    rows = np.flatnonzero(bad)
    lines = table.line_numbers()[rows]
    first = int(rows[0])
    columns = [a for a, b in zip(axes, bad_cells[first], strict=True) if b]
    if times_s is not None and not np.isfinite(times_s[first]):
        columns.insert(0, time_column)
    raise InputError(
        f"line {lines[0]}, column {_names(columns)}: empty, NaN or infinite value"
        + _more(len(rows) - 1, "line", lines[1:])
        + ": remove or fill those rows",
        path=table.path,
    )


def _check_order(table: _CsvTable, times_s: np.ndarray) -> None:
    steps = np.diff(times_s)
    back = np.flatnonzero(steps < 0)
    if not back.size:
        return
    lines = table.line_numbers()[back + 1]
    row = int(back[0])
    message = (
        f"time goes backwards at line {lines[0]} ({times_s[row + 1]:.3f} s after "
        f"{times_s[row]:.3f} s)"
    )
    message += _more(back.size - 1, "place", lines[1:])
    raise InputError(message + ": sort the rows or fix the clock", path=table.path)


def _drop_duplicates(
    table: _CsvTable, values: np.ndarray, times_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Drop rows that repeat the previous row exactly; refuse repeated times whose
    values differ (which of them would be right?)."""
    repeat = np.flatnonzero(np.diff(times_s) == 0)
    if not repeat.size:
        return values, times_s, []
    same = np.all(values[repeat] == values[repeat + 1], axis=1)
    conflict = repeat[~same]
    if conflict.size:
        lines = table.line_numbers()
        row = int(conflict[0])
        message = (
            f"duplicate time {times_s[row]:.3f} s with different values at lines "
            f"{lines[row]} and {lines[row + 1]}"
        )
        message += _more(conflict.size - 1, "place", lines[conflict[1:] + 1])
        raise InputError(message + ": remove the wrong rows", path=table.path)
    keep = np.ones(len(times_s), dtype=bool)
    keep[repeat + 1] = False
    dropped_lines = [int(n) for n in table.line_numbers()[repeat + 1]]
    return values[keep], times_s[keep], dropped_lines


def _check_gravity(source: Path, unit: str, median_raw: float) -> None:
    """Refuse data whose median magnitude is not about 1 g, naming the units that fit.

    Over a night a worn sensor is mostly still, so the median magnitude of the
    acceleration is gravity: 1 g (9.81 m/s2, 1000 mg).
    """
    low, high = GRAVITY_BAND_G
    median_g = median_raw * UNITS_TO_G[unit]
    if low <= median_g <= high:
        return
    fits = [u for u, f in UNITS_TO_G.items() if u != unit and low <= median_raw * f <= high]
    if fits:
        raise UsageError(
            f"median acceleration magnitude is {median_raw:.4g} {unit}, not about 1 g: "
            f"looks like {fits[0]}: pass --units {fits[0]}",
            path=source,
        )
    raise InputError(
        f"median acceleration magnitude is {median_g:.4g} g, not about 1 g (gravity): "
        "check the axes columns and the units (pmld needs raw acceleration with gravity)",
        path=source,
    )
