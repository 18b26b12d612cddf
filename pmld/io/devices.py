"""Import research-accelerometer files: Axivity .cwa, ActiGraph .gt3x, GENEActiv .bin.

The files are decoded by the `actfast <https://pypi.org/project/actfast/>`_ library
(MIT, Rust), the optional extra ``pmld[devices]``; this module turns what it returns
into :class:`~pmld.night.Night` objects on pmld's sampling model.

Format
    Detected from the file's content, not its name (:func:`detect_format`): a CWA file
    starts with its ``MD`` header block followed by ``AX`` data blocks (Open Movement,
    AX3 technical documentation); a GT3X file is a ZIP archive holding ``log.bin`` and
    ``info.txt`` (ActiGraph, GT3X-File-Format); a GENEActiv file is text beginning with
    ``Device Identity`` (Activinsights, GENEActiv instructions for use). Anything else
    that is text is left to the CSV importer (:mod:`pmld.io.csvimport`).

Sample times
    Every format stores time stamps per block of samples (CWA: a block of 80-120
    samples; GT3X: one second; GENEActiv: a page of 300), and the samples inside a block
    follow at the device's own rate, which can differ from the configured one by a few
    per cent (an AX3 configured for 100 Hz often samples at 99-101 Hz). Like Open
    Movement's converters, the samples of each block are spread evenly between its time
    stamp and the next block's (:func:`block_times_ns`), unless the next block starts
    more than :data:`BLOCK_RATE_TOLERANCE` away from where the configured rate puts it
    (a gap or a clock jump), in which case the configured rate is used. The samples are
    then placed on a uniform grid at the configured rate by :mod:`pmld.resample`: kept
    as they are when every one lies within 10 % of a period of a grid point, else
    interpolated linearly, never across an interval longer than ``max_gap_s``; longer
    intervals stay gaps (never filled). The effective rate is reported.

Clocks and time zones
    The three formats store local wall-clock time without a zone (actfast returns it as
    if it were UTC). The zone where the device was configured (``timezone``, IANA) turns
    it into UTC with the **UTC offset in force at the recording's start**, one fixed
    offset for the whole file (:func:`device_utc_offset`): a device clock set at
    configuration free-runs and does not follow a daylight-saving change during the
    recording, so converting each sample with the offset of its own date would invent a
    1 h gap (spring) or overlap (autumn). GENEActiv and GT3X files also record the
    offset at configuration; without ``timezone`` that offset is used (and the night's
    zone is the fixed-offset ``Etc/GMT`` zone); a CWA file records none, and its clock is
    then taken as UTC. The report says which.

Nights
    A recording longer than 24 h is split into nights keyed by the local date of the
    evening: noon-to-noon local windows, as GGIR does (van Hees et al. 2018; GGIR's
    "day" definition for sleep analysis). The windows are built in the IANA zone, so a
    window across a DST change lasts 23 or 25 h. Windows without data are skipped (and
    reported). A recording of at most 24 h is one night, keyed by
    :func:`pmld.night.evening_date`. ``Night.meta["night_date"]`` holds the key.

Damaged files
    actfast reads in its lenient mode: blocks that fail their checksum or cannot be
    parsed are skipped (they become gaps) and counted in a one-line notice; a file cut
    off inside a block loses that block (notice). A GT3X archive whose ZIP directory is
    lost (a truncated download) is salvaged from its local entries. A file with nothing
    readable is a one-line :class:`~pmld.errors.InputError`.

References
----------
Open Movement, "AX3 Sensor - Technical Documentation" (CWA file structure).
ActiGraph, "GT3X-File-Format" (log records, info.txt), github.com/actigraph.
Activinsights, "GENEActiv Instructions for Use", section "Understanding .bin files".
van Hees VT et al. (2018). Estimating sleep parameters using an accelerometer without
sleep diary. Sci Rep 8:12975 (noon-to-noon nights, GGIR).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from .. import resample
from ..errors import FormatError, InputError, UsageError
from ..night import SIDES, Night, Sensor, check_timezone, evening_date
from ._files import read_head

#: Format keys and the names used in messages.
FORMAT_NAMES = {
    "cwa": "Axivity CWA",
    "gt3x": "ActiGraph GT3X",
    "geneactiv": "GENEActiv BIN",
    "csv": "CSV",
}
DEVICE_FORMATS = ("cwa", "gt3x", "geneactiv")

#: What ``pmld import`` reads, for messages.
SUPPORTED_TEXT = "Axivity .cwa, ActiGraph .gt3x, GENEActiv .bin and CSV files"

#: The install hint when actfast is missing.
INSTALL_HINT = 'pip install "pmld[devices]"'

#: A block whose successor starts within this relative distance of where the configured
#: rate puts it has its samples spread evenly up to that successor; otherwise (a gap, a
#: clock jump) they keep the configured rate. Device rates are within about 2 % of their
#: configured rates (AX3: Open Movement; GENEActiv, ActiGraph: crystal clocks).
BLOCK_RATE_TOLERANCE = 0.05

#: Recordings up to this long are one night (no noon-to-noon split).
ONE_NIGHT_MAX_S = 24 * 3600.0

#: Hour of the local clock at which nights are cut (GGIR's noon-to-noon windows).
NIGHT_CUT_HOUR = 12

SPLIT_MODES = ("noon", "none")

_CWA_HEADER = 1024
_CWA_BLOCK = 512
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_OFFSET_PATTERN = re.compile(r"([+-])?\s*(\d{1,2}):(\d{2})")


# -- format detection ------------------------------------------------------------------
def detect_format(path: str | os.PathLike) -> str:
    """The format of a file from its content: ``"cwa"``, ``"gt3x"``, ``"geneactiv"``
    or ``"csv"``.

    Raises
    ------
    InputError
        The file is missing, not a file or unreadable.
    FormatError
        The content is none of the supported formats (the message names them), or a
        related format pmld cannot use (old NHANES GT3X, Genea, WAV, AGD/SQLite, HDF5).
    """
    source = Path(path)
    head = read_head(source, 4096)
    kind = _sniff(head, source)
    if kind is not None:
        return kind
    suffix = source.suffix.lower()
    if not head:
        if suffix in (".cwa", ".gt3x", ".bin"):
            raise InputError(
                f"is empty (0 bytes): not a {_suffix_format(suffix)} file", path=source
            )
        return "csv"  # the CSV importer says "empty" in its own words
    if suffix in (".csv", ".tsv", ".txt") or _looks_like_text(head):
        if suffix in (".cwa", ".gt3x", ".bin"):
            raise FormatError(
                f"has the extension {suffix} but its content is text, not a "
                f"{_suffix_format(suffix)} file (corrupt header?); pmld import reads "
                f"{SUPPORTED_TEXT}",
                path=source,
            )
        return "csv"
    if suffix in (".cwa", ".gt3x", ".bin"):
        raise FormatError(
            f"is not a {_suffix_format(suffix)} file (corrupt or unknown header); pmld "
            f"import reads {SUPPORTED_TEXT}",
            path=source,
        )
    raise FormatError(f"unrecognised content: pmld import reads {SUPPORTED_TEXT}", path=source)


def sniff_device_format(path: str | os.PathLike) -> str | None:
    """``"cwa"``, ``"gt3x"`` or ``"geneactiv"`` when the content is one of them, else
    None (without raising for other formats); for :func:`pmld.io.nightfile.open_night`."""
    source = Path(path)
    try:
        head = read_head(source, 4096)
        kind = _sniff(head, source)
    except (InputError, FormatError):
        return None
    return kind if kind in DEVICE_FORMATS else None


def _sniff(head: bytes, source: Path) -> str | None:
    """Device format from the first bytes, None for text or unknown content."""
    if head[:2] == b"MD":
        # The header block's length field is 1020; the first data block starts "AX".
        length_ok = len(head) >= 4 and struct.unpack_from("<H", head, 2)[0] == 1020
        block_ok = len(head) < _CWA_HEADER + 2 or head[_CWA_HEADER : _CWA_HEADER + 2] == b"AX"
        if length_ok or block_ok or source.suffix.lower() == ".cwa":
            return "cwa"
    if head[:4] == b"PK\x03\x04":
        return _sniff_zip(source)
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"Device Identity"):
        return "geneactiv"
    if head[:4] == b"GENE":
        raise FormatError(
            "is an original Genea .bin file, which pmld cannot read (only GENEActiv .bin)",
            path=source,
        )
    if head[:4] == b"RIFF":
        raise FormatError(
            "is a WAV file (an Axivity export?): import the .cwa file it came from",
            path=source,
        )
    if head[:16] == b"SQLite format 3\x00":
        raise FormatError(
            "is an SQLite database (an ActiGraph .agd of epoch counts?): pmld needs raw "
            "acceleration: import the .gt3x file",
            path=source,
        )
    if head[:8] == _HDF5_SIGNATURE:
        raise FormatError(
            "is an HDF5 file (a pmld night or summary?): nothing to import; give it to "
            "pmld analyze or pmld info",
            path=source,
        )
    return None


def _sniff_zip(source: Path) -> str:
    try:
        with zipfile.ZipFile(source) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        names = set(_local_entries(source))  # a damaged archive: look at its entries
    if "log.bin" in names:
        return "gt3x"
    if "activity.bin" in names:
        raise FormatError(
            "is a GT3X file in the old NHANES layout (activity.bin, firmware 2.5 or "
            "older), which actfast cannot read: convert it with ActiLife",
            path=source,
        )
    raise FormatError(
        f"is a ZIP archive without log.bin, not an ActiGraph .gt3x file; pmld import "
        f"reads {SUPPORTED_TEXT}",
        path=source,
    )


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 4  # a character cut at the end of the sample
    return True


def _suffix_format(suffix: str) -> str:
    return {".cwa": "Axivity CWA", ".gt3x": "ActiGraph GT3X", ".bin": "GENEActiv BIN"}[suffix]


# -- the report ------------------------------------------------------------------------
@dataclass
class DeviceReport:
    """What a device-file import found and did; ``lines()`` gives it as text."""

    path: str
    format: str
    device: dict[str, Any]
    samples_read: int
    fs_hz: float
    effective_fs_hz: float
    resampled: bool
    gap_count: int
    gap_total_s: float
    max_gap_s: float
    timezone: str
    timezone_source: str
    utc_offset_s: float
    start_utc: datetime
    end_utc: datetime
    nights: list[tuple[str, int, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary, one fact a line."""
        model = " ".join(
            str(self.device[k]) for k in ("model", "serial") if self.device.get(k) not in (None, "")
        )
        out = [
            f"source: {self.path} ({FORMAT_NAMES[self.format]}"
            + (f", {model}" if model else "")
            + f", {self.samples_read:,} samples)",
            f"rate: configured {self.fs_hz:g} Hz, effective {self.effective_fs_hz:.3f} Hz",
        ]
        if self.resampled:
            out.append(
                f"output: {self.fs_hz:g} Hz grid, resampled by linear interpolation "
                f"(not across intervals longer than {self.max_gap_s:g} s)"
            )
        else:
            out.append(f"output: {self.fs_hz:g} Hz grid, samples kept as they are")
        out.append(f"gaps: {self.gap_count} ({self.gap_total_s:.3f} s missing)")
        out.append(
            f"clock: device local time, UTC offset {_offset_text(self.utc_offset_s)} "
            f"({self.timezone_source}), time zone {self.timezone}"
        )
        start = self.start_utc.isoformat().replace("+00:00", "Z")
        end = self.end_utc.isoformat().replace("+00:00", "Z")
        hours = (self.end_utc - self.start_utc).total_seconds() / 3600
        out.append(f"recording: {start} to {end} ({hours:.2f} h)")
        for date, samples, hours in self.nights:
            out.append(f"night {date}: {samples:,} samples, {hours:.2f} h")
        out.extend(f"note: {note}" for note in self.notes)
        return out


@dataclass
class DeviceImport:
    """The nights read from a device file and the report of the import."""

    nights: list[Night]
    report: DeviceReport


# -- clocks ----------------------------------------------------------------------------
def device_utc_offset(local_start: datetime, timezone: str) -> tuple[timedelta, str | None]:
    """The UTC offset in force in ``timezone`` at the naive local time ``local_start``.

    A device clock is set once, at configuration, and then free-runs: it does not follow
    a daylight-saving change during the recording. The offset at the recording's start
    therefore converts the whole file (one fixed offset), not the offset of each
    sample's own date.

    Returns
    -------
    offset : timedelta
        Local time minus UTC.
    note : str or None
        Set when the start's local time is ambiguous (the repeated autumn hour: the
        first, summer-time, occurrence is taken) or does not exist (the skipped spring
        hour: the offset before the change is taken).
    """
    zone = ZoneInfo(check_timezone(timezone))
    naive = local_start.replace(tzinfo=None)
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    offset = first.utcoffset() or timedelta(0)
    note = None
    if first.utcoffset() != second.utcoffset():
        round_trip = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if round_trip == naive:
            note = (
                f"the recording starts at {naive.isoformat(timespec='seconds')}, a local time "
                f"that occurs twice in {timezone}; the first (UTC{_offset_text(offset)}) is "
                "taken"
            )
        else:
            note = (
                f"the recording starts at {naive.isoformat(timespec='seconds')}, a local time "
                f"that does not exist in {timezone} (the clocks skip it); UTC"
                f"{_offset_text(offset)} is taken"
            )
    return offset, note


def _offset_text(offset: timedelta | float) -> str:
    seconds = offset.total_seconds() if isinstance(offset, timedelta) else float(offset)
    sign = "-" if seconds < 0 else "+"
    minutes = int(round(abs(seconds) / 60))
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_offset(text: str | None) -> timedelta | None:
    """'GMT -05:00', '-05:00:00', '01:00:00' -> timedelta; None when absent or odd."""
    if not text:
        return None
    match = _OFFSET_PATTERN.search(str(text))
    if not match:
        return None
    sign, hours, minutes = match.groups()
    value = timedelta(hours=int(hours), minutes=int(minutes))
    if value > timedelta(hours=14):
        return None
    return -value if sign == "-" else value


def _fixed_offset_zone(offset: timedelta) -> str | None:
    """The IANA ``Etc/GMT`` zone of a whole-hour offset (note the POSIX sign: Etc/GMT+5
    is UTC-05:00); None for other offsets."""
    seconds = int(offset.total_seconds())
    if seconds == 0:
        return "UTC"
    if seconds % 3600:
        return None
    hours = seconds // 3600
    return f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"


def dst_changes(start_utc: datetime, end_utc: datetime, timezone: str) -> list[datetime]:
    """UTC times within ``[start_utc, end_utc]`` at which ``timezone``'s offset changes."""
    zone = ZoneInfo(timezone)
    changes: list[datetime] = []
    hour = timedelta(hours=1)
    t = start_utc
    previous = t.astimezone(zone).utcoffset()
    while t < end_utc:  # hourly steps: offsets change on whole hours (or half hours)
        nxt = min(t + hour, end_utc)
        offset = nxt.astimezone(zone).utcoffset()
        if offset != previous:
            lo, hi = t, nxt
            while (hi - lo) > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(zone).utcoffset() == previous:
                    lo = mid
                else:
                    hi = mid
            changes.append(hi.replace(second=0, microsecond=0))
            previous = offset
        t = nxt
    return changes


# -- sample times ----------------------------------------------------------------------
def block_times_ns(times_ns: np.ndarray, step_ns: float) -> tuple[np.ndarray, float]:
    """Sample times with each block's samples spread evenly up to the next block.

    ``times_ns`` are the reader's sample times: each block's time stamp plus multiples of
    the configured period. A new block starts wherever the interval between samples is
    not the reader's period (blocks that happen to follow at exactly the configured
    rate merge, harmlessly). A block whose successor starts within
    :data:`BLOCK_RATE_TOLERANCE` of where the configured rate puts it gets the period
    ``(next start - start) / samples``; the others, and the last block (which takes the
    period of the block before it when that one was spread), keep the configured period.

    Returns
    -------
    times : ndarray of float64
        Nanoseconds, the same epoch as the input.
    step_ns : float
        The mean period of the spread blocks (the device's effective period), or
        ``step_ns`` when there are none.
    """
    times = np.asarray(times_ns, dtype=np.int64)
    n = times.size
    if n < 2:
        return times.astype(np.float64), float(step_ns)
    steps = np.diff(times)
    # The reader's own period: its most common interval (integer ns, maybe truncated).
    values, counts = np.unique(steps[: min(steps.size, 100_000)], return_counts=True)
    reader_step = values[np.argmax(counts)]
    starts = np.concatenate([[0], np.flatnonzero(steps != reader_step) + 1])
    block_n = np.diff(np.concatenate([starts, [n]]))
    block_t = times[starts].astype(np.float64)
    span = np.diff(block_t)
    expected = block_n[:-1] * float(step_ns)
    spread = np.abs(span / expected - 1.0) <= BLOCK_RATE_TOLERANCE
    period = np.full(block_n.size, float(step_ns))
    period[:-1][spread] = span[spread] / block_n[:-1][spread]
    if block_n.size > 1 and spread[-1]:
        period[-1] = period[-2]
    within = np.arange(n) - np.repeat(starts, block_n)
    out = np.repeat(block_t, block_n) + within * np.repeat(period, block_n)
    if spread.any():
        effective = float(span[spread].sum() / block_n[:-1][spread].sum())
    else:
        effective = float(step_ns)
    return out, effective


# -- reading ---------------------------------------------------------------------------
@dataclass
class _Raw:
    """What one device file holds, before time zones and grids."""

    format: str
    times_ns: np.ndarray  # local wall-clock ns, as read
    values: np.ndarray  # (n, 3) acc in g, or (n, 6) acc + gyro (dps)
    has_gyro: bool
    fs_hz: float
    device: dict[str, Any]
    stated_offset: timedelta | None
    notes: list[str]


def _actfast():
    try:
        import actfast
    except ImportError:
        raise UsageError(
            f"reading Axivity, ActiGraph and GENEActiv files needs the actfast library: "
            f"{INSTALL_HINT}"
        ) from None
    return actfast


def _series(result: dict, name: str, source: Path, empty: str) -> tuple[dict, np.ndarray]:
    """actfast's time series ``name`` and its sample times (ns); with fewer than two
    samples, the one line ``empty`` (plus actfast's first warning)."""
    table = result["timeseries"].get(name, {})
    times = np.asarray(table.get("datetime", np.zeros(0, np.int64)))
    if times.size < 2:
        raise InputError(empty + _warning_hint(result["warnings"]), path=source)
    return table, times


def _call_actfast(path: Path, kind: str) -> dict:
    actfast = _actfast()
    try:
        return actfast.read(str(path), lenient=True)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - actfast (Rust) may raise a PanicException
        message = " ".join(str(exc).split()) or type(exc).__name__
        if "failed to fill whole buffer" in message or "header" in message.lower():
            message = f"truncated or corrupt header ({message})"
        raise InputError(
            f"cannot read this {FORMAT_NAMES[kind]} file: {message}", path=path
        ) from None


def read_device(
    path: str | os.PathLike,
    *,
    timezone: str | None = None,
    side: str = "unknown",
    max_gap_s: float = 1.0,
    split: str = "noon",
) -> DeviceImport:
    """Read an Axivity .cwa, ActiGraph .gt3x or GENEActiv .bin file into nights.

    Parameters
    ----------
    path : path
        The device file; its format is detected from the content.
    timezone : str, optional
        IANA zone where the device was configured. Default: the offset the file records
        (GENEActiv, GT3X), else UTC; the report says which.
    side : {'left', 'right', 'unknown'}
        Ankle the device was on.
    max_gap_s : float
        Longest interval between samples interpolated across; longer ones are gaps.
    split : {'noon', 'none'}
        ``noon``: a recording longer than 24 h becomes one night per noon-to-noon local
        window. ``none``: one night for the whole file.

    Returns
    -------
    DeviceImport
        ``nights`` (in time order, each with ``meta["night_date"]``) and ``report``.

    Raises
    ------
    InputError
        Missing, empty, truncated beyond use, or corrupt file.
    FormatError
        Not a supported device file.
    UsageError
        Invalid option, or actfast is not installed.
    """
    source = Path(path)
    if side not in SIDES:
        raise UsageError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    if not (max_gap_s > 0):
        raise UsageError(f"max_gap_s must be positive, got {max_gap_s}")
    if split not in SPLIT_MODES:
        raise UsageError(f"split must be one of {', '.join(SPLIT_MODES)}, got {split!r}")
    if timezone is not None:
        check_timezone(timezone)
    kind = detect_format(source)
    if kind not in DEVICE_FORMATS:
        raise FormatError(
            f"is not a device file (it looks like CSV): pmld import reads {SUPPORTED_TEXT}",
            path=source,
        )
    raw = _READERS[kind](source)
    return _to_nights(source, raw, timezone, side, float(max_gap_s), split)


def read_device_night(
    path: str | os.PathLike, *, timezone: str | None = None, side: str = "unknown",
    max_gap_s: float = 1.0,
) -> tuple[Night, DeviceReport]:
    """One night from a device file; a :class:`FormatError` when the file holds several
    (split it with ``pmld import FILE -o DIR`` first)."""
    result = read_device(path, timezone=timezone, side=side, max_gap_s=max_gap_s)
    if len(result.nights) != 1:
        dates = [n.meta["night_date"] for n in result.nights]
        raise FormatError(
            f"holds {len(dates)} nights ({dates[0]} to {dates[-1]}): write one file per "
            f"night with 'pmld import {Path(path).name} -o DIR' first",
            path=path,
        )
    return result.nights[0], result.report


# -- per format ------------------------------------------------------------------------
def _read_cwa(source: Path) -> _Raw:
    size = source.stat().st_size
    if size < _CWA_HEADER:
        raise InputError(
            f"is truncated: the 1024-byte CWA header is incomplete ({size} bytes)", path=source
        )
    with open(source, "rb") as handle:
        header = handle.read(_CWA_HEADER)
        first_block = handle.read(2)
    if struct.unpack_from("<H", header, 2)[0] != 1020 and first_block != b"AX":
        raise InputError("corrupt CWA header (wrong block length, no data block)", path=source)
    notes: list[str] = []
    blocks, tail = divmod(size - _CWA_HEADER, _CWA_BLOCK)
    if blocks == 0:
        raise InputError("has a CWA header but no data block: no samples", path=source)
    result = _call_actfast(source, "cwa")
    meta = result["metadata"]
    table, times = _series(result, "high_frequency", source,
                           f"no readable samples in {blocks} data block(s)")
    configuration = meta.get("configuration", {})
    device_meta = meta.get("device", {})
    # The rate code gives 12.5 and 6.25 Hz rounded in actfast's text: take it from the
    # header's rate byte.
    rate_code = header[36]
    fs_hz = 3200.0 / (1 << (15 - (rate_code & 0x0F)))
    range_g = float(16 >> (rate_code >> 6))
    acc = np.asarray(table["acceleration"], dtype=np.float32)
    gyro = table.get("gyroscope")
    values = acc if gyro is None else np.hstack([acc, np.asarray(gyro, dtype=np.float32)])
    device = {
        "format": FORMAT_NAMES["cwa"],
        "model": f"Axivity {device_meta.get('hardware_type', 'AX3')}",
        "serial": str(device_meta.get("device_id", "")),
        "firmware": str(device_meta.get("firmware_revision", "")),
        "session_id": str(device_meta.get("session_id", "")),
        "fs_configured_hz": fs_hz,
        "range_g": range_g,
    }
    for key in ("logging_start", "logging_end"):
        if configuration.get(key):
            device[key + "_local"] = str(configuration[key]).replace("+00:00", "")
    annotation = meta.get("session", {}).get("annotation")
    if annotation:
        device["annotation"] = str(annotation)
    skipped = _count_skipped(result["warnings"])
    if skipped:
        notes.append(
            f"{skipped} damaged data block(s) skipped (checksum or header), about "
            f"{skipped * 120 / fs_hz:.1f} s of samples at most: kept as gaps"
        )
    if tail:
        notes.append(
            f"the file ends inside a data block: its last {tail} bytes (part of one "
            f"512-byte block, at most {120 / fs_hz:.1f} s of samples) were dropped "
            "(truncated copy?)"
        )
    return _Raw("cwa", times, values, gyro is not None, fs_hz, device, None, notes)


def _read_gt3x(source: Path) -> _Raw:
    notes: list[str] = []
    target = source
    workdir = None
    try:
        try:
            with zipfile.ZipFile(source) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            names = []
        if "log.bin" not in names or "info.txt" not in names:
            workdir = Path(tempfile.mkdtemp(prefix="pmld-gt3x-"))
            target, salvage_note = _salvage_gt3x(source, workdir)
            notes.append(salvage_note)
        result = _call_actfast(target, "gt3x")
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    meta = result["metadata"]
    info = meta.get("info", {})
    table, times = _series(result, "acceleration", source,
                           "no readable acceleration records in log.bin")
    acc = np.asarray(table["acceleration"], dtype=np.float32)
    fs_hz = _number(info.get("Sample Rate"))
    if not fs_hz:
        fs_hz = float(resample.grid_rate_hz(resample.effective_rate_hz(times[:10_000] / 1e9)))
        notes.append(f"info.txt gives no sample rate: {fs_hz:g} Hz taken from the records")
    scale = _number(info.get("Acceleration Scale"))
    high = _number(info.get("Acceleration Max"))
    serial = str(info.get("Serial Number", ""))
    if not scale:
        # ActiGraph: NEO/CLE serials use 341 LSB/g (+-6 g), MOS serials 256 LSB/g (+-8 g).
        scale = 341.0 if serial[:3] in ("NEO", "CLE") else 256.0
    device = {
        "format": FORMAT_NAMES["gt3x"],
        "model": f"ActiGraph {info.get('Device Type', '')}".strip(),
        "serial": serial,
        "firmware": str(info.get("Firmware", "")),
        "fs_configured_hz": float(fs_hz),
        "range_g": float(high) if high else (6.0 if scale == 341.0 else 8.0),
        # 12-bit samples in 1/scale g: 16 x scale counts per g stores them exactly.
        "counts_per_g": 16.0 * float(scale),
        "lsb_per_g": float(scale),
    }
    for key, name in (("Battery Voltage", "battery_v"), ("Board Revision", "board_revision"),
                      ("Subject Name", "subject"), ("Unexpected Resets", "unexpected_resets")):
        if info.get(key) not in (None, ""):
            device[name] = str(info[key])
    stated = _parse_offset(info.get("TimeZone"))
    warnings = result["warnings"]
    if warnings:
        notes.append(
            f"log.bin ends in a damaged or cut record ({_first_warning(warnings)}): the "
            "records before it were read"
        )
    last_ticks = _number(info.get("Last Sample Time"))
    if last_ticks:
        last_ns = int((int(last_ticks) - 621_355_968_000_000_000) * 100)
        lost_s = (last_ns - int(times[-1])) / 1e9 - 1.0
        if lost_s > 1.0:
            notes.append(
                f"info.txt says the last sample is {lost_s / 3600:.2f} h after the last "
                "one read: that part is missing (truncated file?)"
                if lost_s >= 360
                else f"info.txt says the last sample is {lost_s:.0f} s after the last one "
                "read: that part is missing (truncated file?)"
            )
    return _Raw("gt3x", times, acc, False, float(fs_hz), device, stated, notes)


def _read_geneactiv(source: Path) -> _Raw:
    notes: list[str] = []
    result = _call_actfast(source, "geneactiv")
    meta = result["metadata"]
    table, times = _series(result, "high_frequency", source,
                           "no readable pages after the header")
    configuration = meta.get("Configuration Info", {})
    identity = meta.get("Device Identity", {})
    capabilities = meta.get("Device Capabilities", {})
    fs_hz = _number(str(configuration.get("Measurement Frequency", "")).split(" ")[0])
    if not fs_hz:
        raise InputError(
            "corrupt GENEActiv header: no Measurement Frequency in Configuration Info",
            path=source,
        )
    range_text = str(capabilities.get("Accelerometer Range", ""))
    range_g = max((abs(float(v)) for v in re.findall(r"-?\d+(?:\.\d+)?", range_text)), default=8.0)
    acc = np.asarray(table["acceleration"], dtype=np.float32)
    device = {
        "format": FORMAT_NAMES["geneactiv"],
        "model": f"{identity.get('Device Type', 'GENEActiv').strip()} "
        f"{identity.get('Device Model', '').strip()}".strip(),
        "serial": str(identity.get("Device Unique Serial Code", "")).strip(),
        "firmware": str(identity.get("Device Firmware Version", "")).strip(),
        "fs_configured_hz": float(fs_hz),
        "range_g": float(range_g),
        "factory_calibration": "applied (header Calibration Data)",
    }
    if identity.get("Calibration Date"):
        device["calibration_date"] = str(identity["Calibration Date"]).strip()
    location = meta.get("Subject Info", {}).get("Device Location Code", "")
    if str(location).strip():
        device["location"] = str(location).strip()
    stated = _parse_offset(configuration.get("Time Zone"))
    pages_said = _number(meta.get("Memory Status", {}).get("Number of Pages"))
    pages_read = result["timeseries"].get("low_frequency", {}).get("datetime", np.zeros(0)).size
    if result["warnings"]:
        notes.append(
            f"the file ends inside a page ({_first_warning(result['warnings'])}): that page "
            "was dropped (truncated copy?)"
        )
    per_page = 300
    last_page = times.size - (pages_read - 1) * per_page if pages_read else 0
    if pages_read and 0 < last_page < per_page:
        notes.append(
            f"the last page holds {last_page} of {per_page} measurements (file cut inside "
            "its data line?)"
        )
    if pages_said and pages_read < pages_said:
        notes.append(f"the header announces {int(pages_said)} pages, {pages_read} were read")
    return _Raw("geneactiv", times, acc, False, float(fs_hz), device, stated, notes)


_READERS = {"cwa": _read_cwa, "gt3x": _read_gt3x, "geneactiv": _read_geneactiv}


def _number(text: Any) -> float | None:
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _count_skipped(warnings: list[str]) -> int:
    return sum(1 for w in warnings if "sector" in w or "magic" in w or "checksum" in w)


def _first_warning(warnings: list[str]) -> str:
    return " ".join(str(warnings[0]).split())[:160] if warnings else ""


def _warning_hint(warnings: list[str]) -> str:
    if not warnings:
        return ""
    return f" ({len(warnings)} problem(s), first: {_first_warning(warnings)})"


# -- GT3X salvage ----------------------------------------------------------------------
def _local_entries(source: Path) -> dict[str, bytes]:
    """The entries of a ZIP file read from their local headers, as far as they go
    (a truncated archive has lost its central directory at the end)."""
    try:
        data = source.read_bytes()
    except OSError:
        return {}
    entries: dict[str, bytes] = {}
    position = 0
    while True:
        position = data.find(b"PK\x03\x04", position)
        if position < 0 or position + 30 > len(data):
            break
        (_, flags, method, _, _, _, packed_size, _, name_len, extra_len) = struct.unpack_from(
            "<HHHHHIIIHH", data, position + 4
        )
        name = data[position + 30 : position + 30 + name_len].decode("utf-8", "replace")
        start = position + 30 + name_len + extra_len
        # With a data descriptor (flag bit 3) the size is unknown here: read to the end.
        stop = len(data) if (flags & 0x08 or packed_size == 0) else start + packed_size
        body = data[start:stop]
        if method == 8:
            inflater = zlib.decompressobj(-15)
            try:
                content = inflater.decompress(body)
            except zlib.error:
                content = b""
        elif method == 0:
            content = body
        else:
            content = b""
        entries[name] = content
        position = max(start, position + 4) if stop <= position else stop
    return entries


def _salvage_gt3x(source: Path, workdir: Path) -> tuple[Path, str]:
    entries = _local_entries(source)
    if not entries.get("log.bin"):
        raise InputError(
            "is a damaged GT3X archive: its log.bin cannot be recovered", path=source
        )
    rebuilt = workdir / "salvaged.gt3x"
    with zipfile.ZipFile(rebuilt, "w", compression=zipfile.ZIP_STORED) as archive:
        # ActiGraph writes log.bin first: a cut archive may have lost info.txt; the
        # records then give the rate (the PARAMETERS record gives the scale).
        archive.writestr("info.txt", entries.get("info.txt", b""))
        archive.writestr("log.bin", entries["log.bin"])
    note = (
        f"the ZIP archive is damaged (truncated?): {len(entries['log.bin']):,} bytes of "
        "log.bin recovered from its local entry"
    )
    if not entries.get("info.txt"):
        note += "; info.txt is lost (serial, model, firmware unknown)"
    return rebuilt, note


# -- nights ----------------------------------------------------------------------------
def noon_windows(
    start_utc: datetime, end_utc: datetime, timezone: str
) -> list[tuple[str, datetime, datetime]]:
    """Noon-to-noon local windows covering ``[start_utc, end_utc)``, as
    ``(evening date, start UTC, end UTC)``; a window across a DST change lasts 23 or
    25 h."""
    zone = ZoneInfo(timezone)
    cut = timedelta(hours=NIGHT_CUT_HOUR)
    first = (start_utc.astimezone(zone).replace(tzinfo=None) - cut).date()
    last = (end_utc.astimezone(zone).replace(tzinfo=None) - cut).date()
    windows = []
    day = first
    while day <= last:
        lo = datetime(day.year, day.month, day.day, NIGHT_CUT_HOUR, tzinfo=zone)
        nxt = day + timedelta(days=1)
        hi = datetime(nxt.year, nxt.month, nxt.day, NIGHT_CUT_HOUR, tzinfo=zone)
        windows.append((day.isoformat(), lo.astimezone(UTC), hi.astimezone(UTC)))
        day = nxt
    return windows


def _clean_order(times_ns: np.ndarray, values: np.ndarray, notes: list[str]):
    """Drop samples at or before an earlier sample's time (the device clock was set
    back); say so."""
    running = np.maximum.accumulate(times_ns)
    keep = np.ones(times_ns.size, dtype=bool)
    keep[1:] = times_ns[1:] > running[:-1]
    dropped = int((~keep).sum())
    if dropped:
        where = int(np.flatnonzero(~keep)[0])
        back_s = (running[where - 1] - times_ns[where]) / 1e9
        notes.append(
            f"the device clock goes back {back_s:.3f} s after sample {where:,}: {dropped:,} "
            "sample(s) at times already covered were dropped"
        )
        return times_ns[keep], values[keep]
    return times_ns, values


def _to_nights(
    source: Path, raw: _Raw, timezone: str | None, side: str, max_gap_s: float, split: str
) -> DeviceImport:
    notes = list(raw.notes)
    step_ns = 1e9 / raw.fs_hz
    times_ns, effective_step = block_times_ns(raw.times_ns, step_ns)
    times_ns, values = _clean_order(times_ns, raw.values, notes)
    if times_ns.size < 2:
        raise InputError("has fewer than 2 samples", path=source)

    # Local wall clock -> UTC with one offset: the one in force at the start.
    local_start = datetime(1970, 1, 1) + timedelta(microseconds=float(times_ns[0]) / 1000)
    if timezone is not None:
        offset, note = device_utc_offset(local_start, timezone)
        zone_name, zone_source = timezone, "--tz at the start of the recording"
        if note:
            notes.append(note)
        if raw.stated_offset is not None and raw.stated_offset != offset:
            notes.append(
                f"the file records UTC offset {_offset_text(raw.stated_offset)} but "
                f"{timezone} was {_offset_text(offset)} at the start: the time zone given "
                "is used"
            )
    elif raw.stated_offset is not None:
        offset = raw.stated_offset
        fixed = _fixed_offset_zone(offset)
        zone_name = fixed or "UTC"
        zone_source = "recorded in the file"
        notes.append(
            f"no time zone given: the offset the file records (UTC{_offset_text(offset)}) "
            f"converts the clock; local times and night dates use {zone_name}, without "
            "daylight saving: give the zone with --tz (e.g. Europe/London)"
        )
    else:
        offset = timedelta(0)
        zone_name, zone_source = "UTC", "no time zone given: clock taken as UTC"
        notes.append(
            "no time zone given and the file records none: the device clock is taken as "
            "UTC; give the zone where the device was configured with --tz (e.g. "
            "Europe/London)"
        )
    epoch_utc = datetime(1970, 1, 1, tzinfo=UTC) - offset
    start_utc = epoch_utc + timedelta(microseconds=float(times_ns[0]) / 1000)
    end_utc = epoch_utc + timedelta(microseconds=(float(times_ns[-1]) + step_ns) / 1000)
    changes = dst_changes(start_utc, end_utc, zone_name) if timezone is not None else []
    for change in changes:
        after = _offset_text(change.astimezone(ZoneInfo(zone_name)).utcoffset())
        notes.append(
            f"daylight saving changes in {zone_name} at "
            f"{change.isoformat().replace('+00:00', 'Z')} (to UTC{after}) during the "
            f"recording: the device clock does not follow it, so the offset at the start "
            f"(UTC{_offset_text(offset)}) converts the whole file (no gap, no overlap)"
        )

    # Seconds from the first sample (float64 keeps 0.1 us over a year).
    seconds = (times_ns - times_ns[0]) / 1e9
    if split == "noon" and (end_utc - start_utc).total_seconds() > ONE_NIGHT_MAX_S:
        windows = noon_windows(start_utc, end_utc, zone_name)
        split_text = "noon-to-noon"
    else:
        split_text = "none" if split == "none" else "one night (24 h or less)"
        windows = [(evening_date(start_utc, (end_utc - start_utc).total_seconds(), zone_name),
                    start_utc, end_utc + timedelta(seconds=1))]

    nights: list[Night] = []
    night_rows: list[tuple[str, int, float]] = []
    gap_count, gap_total_s, resampled = 0, 0.0, False
    for date, lo, hi in windows:
        lo_s = (lo - start_utc).total_seconds()
        hi_s = (hi - start_utc).total_seconds()
        first, stop = np.searchsorted(seconds, [lo_s, hi_s], side="left")
        if stop - first < 2:
            if len(windows) > 1:
                notes.append(f"night {date}: no data in its noon-to-noon window, skipped")
            continue
        grid = resample.to_grid(
            seconds[first:stop] - seconds[first], values[first:stop], raw.fs_hz,
            max_gap_s=max_gap_s,
        )
        resampled = resampled or grid.interpolated
        gap_count += int(grid.gap_index.size)
        gap_total_s += grid.missing_samples / raw.fs_hz
        grid_values = np.asarray(grid.values, dtype=np.float32)
        sensor = Sensor(
            grid_values[:, :3],
            raw.fs_hz,
            start_utc + timedelta(seconds=float(seconds[first])),
            side=side,
            gyro_dps=grid_values[:, 3:6] if raw.has_gyro else None,
            gaps=pd.DataFrame(
                {"sample_index": grid.gap_index, "missing_samples": grid.gap_missing}
            ),
            device=dict(raw.device),
        )
        meta = {
            "source_file": source.name,
            "source_format": raw.format,
            "night_date": date,
            "night_split": split_text,
            "device_clock_utc_offset": _offset_text(offset),
            "timezone_source": zone_source,
            "resampled": "yes" if grid.interpolated else "no",
            "effective_fs_hz": round(1e9 / effective_step, 4),
        }
        if len(windows) > 1:
            meta["window_start_utc"] = lo.isoformat().replace("+00:00", "Z")
            meta["window_end_utc"] = hi.isoformat().replace("+00:00", "Z")
            meta["window_h"] = round((hi - lo).total_seconds() / 3600, 3)
        nights.append(Night([sensor], timezone=zone_name, meta=meta))
        night_rows.append((date, sensor.n_samples, sensor.duration_s / 3600))
    if not nights:
        raise InputError("no night with data", path=source)

    report = DeviceReport(
        path=str(source),
        format=raw.format,
        device=dict(raw.device),
        samples_read=int(raw.times_ns.size),
        fs_hz=raw.fs_hz,
        effective_fs_hz=1e9 / effective_step,
        resampled=resampled,
        gap_count=gap_count,
        gap_total_s=gap_total_s,
        max_gap_s=max_gap_s,
        timezone=zone_name,
        timezone_source=zone_source,
        utc_offset_s=offset.total_seconds(),
        start_utc=start_utc,
        end_utc=end_utc,
        nights=night_rows,
        notes=notes,
    )
    return DeviceImport(nights=nights, report=report)


def night_file_names(
    source: str | os.PathLike, output: str | os.PathLike, nights: list[Night]
) -> list[Path]:
    """Where ``pmld import`` writes each night.

    ``output`` is a directory (an existing one, or a path without an ``.h5`` suffix,
    created here): ``DIR/<stem>.<night date>.h5`` per night (``DIR/<stem>.h5`` for
    ``--split none``). ``output`` is a ``.h5`` file: that file, for one night only.
    """
    target = Path(output)
    stem = Path(source).stem
    as_file = target.suffix.lower() in (".h5", ".hdf5") and not target.is_dir()
    if as_file:
        if len(nights) > 1:
            dates = [n.meta.get("night_date", "") for n in nights]
            raise UsageError(
                f"{Path(source).name} holds {len(nights)} nights ({dates[0]} to "
                f"{dates[-1]}): give a directory with -o to write one file per night, or "
                "--split none for one file"
            )
        return [target]
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create directory {target}: {exc.strerror or exc}") from None
    names = []
    for night in nights:
        if night.meta.get("night_split") == "none":
            names.append(target / f"{stem}.h5")
        else:
            names.append(target / f"{stem}.{night.meta['night_date']}.h5")
    return names
