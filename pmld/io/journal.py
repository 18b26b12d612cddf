"""The recording journal: an append-only file that survives a killed recorder.

An HDF5 file being written when its process dies can be left unreadable, so a recording
goes first to a journal beside the output (``night.h5.journal``) and becomes a pmld-raw
file only when the recording stops, or later by :func:`repair` when it did not stop
cleanly.

Layout (little-endian)
----------------------
File header::

    8 bytes  magic b"PMLDJRNL"
    u16      journal format version (1)
    u32      length N of the header JSON
    N bytes  header JSON: nominal fs_hz, side, time zone, device (model, serial,
             firmware, range_g, counts_per_g), counts_per_dps when there is a gyroscope,
             recorder information

Then records, each::

    u16      record magic 0x4A52 ("RJ")
    u8       type (SAMPLES=1, GAP=2, TIME_SYNC=3, EVENT=4)
    u8       reserved (0)
    u32      payload length L
    u32      CRC-32 of the payload
    L bytes  payload

* SAMPLES: u64 first sample index, u64 host arrival time (ns since the Unix epoch, UTC),
  u32 count n, u8 flags (bit 0: gyroscope follows), then n x 3 int16 acceleration
  counts, then n x 3 int16 gyroscope counts if flagged.
* GAP: u64 first missing sample index, u64 count: samples the recorder knows it cannot
  recover (e.g. overwritten in the band's buffer before a reconnect).
* TIME_SYNC: u64 sample index, u64 device clock (us) when that sample was acquired,
  u64 host time (ns UTC) no earlier than its acquisition: the arrival of the band's
  TIME_SYNC frame less the band's own delay from acquisition to sending. These points
  join the arrival stamps of the samples in the clock fit.
* EVENT: JSON (connections, drops, status reports, the recorder's stop reason).

A record is only believed if it is complete and its CRC matches. A write torn by a
kill leaves an incomplete record at the end, which is dropped (and cut off when the
recording continues); a damaged record in the middle is skipped by searching for the
next record that checks out. Both are counted. Sample indices are the night's: when a
band restarts its own counter, the recorder maps it past what the night already holds. The
writer flushes to the operating system at least every ``flush_s`` (1 s; a writer that goes
quiet calls :meth:`JournalWriter.tick`), which is all a SIGKILL needs, and calls ``fsync``
every ``fsync_s`` (5 s) against power loss. The first samples are flushed at once, so a
journal killed at any moment after them holds a night that opens.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..clock import fit_sample_clock
from ..errors import FormatError, InputError
from ..night import Night, Sensor, empty_annotations, make_annotations

MAGIC = b"PMLDJRNL"
VERSION = 1
RECORD_MAGIC = 0x4A52
SAMPLES, GAP, TIME_SYNC, EVENT = 1, 2, 3, 4
_RECORD = struct.Struct("<HBBII")
_SAMPLES = struct.Struct("<QQIB")
_GAP = struct.Struct("<QQ")
_TIME_SYNC = struct.Struct("<QQQ")
_HEADER = struct.Struct("<8sHI")


def journal_path(output: str | os.PathLike) -> Path:
    """The journal that belongs to an output file: ``night.h5`` -> ``night.h5.journal``."""
    return Path(str(output) + ".journal")


class JournalWriter:
    """Append records to a journal; O(1) memory whatever the length of the night.

    Opening an existing journal appends to it (a recording continued after a crash);
    its header must agree on rate and side. Records torn by an earlier crash are cut
    off first, so the file stays readable to its end. ``existing`` passes the
    journal's contents when the caller has just read them (they are not read again).

    Writes are flushed when a record is written ``flush_s`` after the last flush; a
    writer that may go quiet (a recorder waiting for its band) calls :meth:`tick`
    about every second so that what it wrote last reaches the file all the same.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        header: dict[str, Any],
        *,
        flush_s: float = 1.0,
        fsync_s: float = 5.0,
        existing: JournalContents | None = None,
    ) -> None:
        self.path = Path(path)
        self.flush_s = flush_s
        self.fsync_s = fsync_s
        self.resumed = self.path.exists() and self.path.stat().st_size > 0
        if self.resumed:
            if existing is None:
                existing = read_journal(self.path)
            for key in ("fs_hz", "side"):
                if key in header and existing.header.get(key) != header[key]:
                    raise InputError(
                        f"cannot continue this recording: it has {key}="
                        f"{existing.header.get(key)!r}, the band now gives {header[key]!r}",
                        path=self.path,
                    )
            self.header = existing.header
            self.next_index = existing.next_index
            self._file = open(self.path, "r+b")  # noqa: SIM115 (kept open: a stream)
            self._file.truncate(existing.valid_bytes)
            self._file.seek(existing.valid_bytes)
        else:
            self.header = dict(header)
            self.next_index = 0
            self._file = open(self.path, "wb")  # noqa: SIM115
            text = json.dumps(self.header, sort_keys=True).encode()
            self._file.write(_HEADER.pack(MAGIC, VERSION, len(text)) + text)
            self._file.flush()
            os.fsync(self._file.fileno())
        now = time.monotonic()
        self._last_flush = now
        self._last_fsync = now
        self._samples_flushed = False

    def _record(self, kind: int, payload: bytes) -> None:
        self._file.write(
            _RECORD.pack(RECORD_MAGIC, kind, 0, len(payload), zlib.crc32(payload)) + payload
        )
        self._maybe_flush()

    def write_samples(
        self,
        first_index: int,
        acc_counts: np.ndarray,
        host_ns: int,
        gyro_counts: np.ndarray | None = None,
    ) -> None:
        """Samples ``first_index ...`` as int16 counts, with the host arrival time."""
        acc = np.ascontiguousarray(acc_counts, dtype="<i2")
        flags = 0
        body = acc.tobytes()
        if gyro_counts is not None:
            flags |= 1
            body += np.ascontiguousarray(gyro_counts, dtype="<i2").tobytes()
        header = _SAMPLES.pack(int(first_index), int(host_ns), len(acc), flags)
        self._record(SAMPLES, header + body)
        self.next_index = max(self.next_index, int(first_index) + len(acc))
        if not self._samples_flushed:
            # the first samples reach the file at once: from then on, a kill at any
            # moment leaves a night that opens
            self._samples_flushed = True
            self._file.flush()

    def write_gap(self, first_index: int, count: int) -> None:
        self._record(GAP, _GAP.pack(int(first_index), int(count)))

    def write_time_sync(self, sample_index: int, device_us: int, host_ns: int) -> None:
        self._record(TIME_SYNC, _TIME_SYNC.pack(int(sample_index), int(device_us), int(host_ns)))

    def write_event(self, **event: Any) -> None:
        event.setdefault("host_utc", datetime.now(UTC).isoformat())
        self._record(EVENT, json.dumps(event, sort_keys=True, default=str).encode())

    def tick(self) -> None:
        """Flush (and fsync) if due, whether or not records were written lately."""
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self.flush_s:
            self._file.flush()
            self._last_flush = now
            if now - self._last_fsync >= self.fsync_s:
                os.fsync(self._file.fileno())
                self._last_fsync = now

    def flush(self, sync: bool = True) -> None:
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class JournalContents:
    """What a journal holds, as read back."""

    path: Path
    header: dict[str, Any]
    blocks: list[tuple[int, int, np.ndarray, np.ndarray | None]] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    time_syncs: list[tuple[int, int, int]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    valid_bytes: int = 0
    dropped_bytes: int = 0
    damaged_bytes: int = 0
    next_index: int = 0

    @property
    def n_received(self) -> int:
        return sum(len(b[2]) for b in self.blocks)


_RECORD_MAGIC_BYTES = struct.pack("<H", RECORD_MAGIC)


def _record_at(data: memoryview, pos: int) -> tuple[int, int, memoryview] | None:
    """The complete record with a good CRC at ``pos``, as (end, type, payload)."""
    if pos + _RECORD.size > len(data):
        return None
    magic, kind, reserved, length, crc = _RECORD.unpack_from(data, pos)
    end = pos + _RECORD.size + length
    if magic != RECORD_MAGIC or reserved != 0 or end > len(data):
        return None
    payload = data[pos + _RECORD.size : end]
    if zlib.crc32(payload) != crc:
        return None
    return end, kind, payload


def _records(data: memoryview, start: int) -> Iterator[tuple[int, int, int, memoryview]]:
    """Yield (skipped bytes, end offset, type, payload) of every intact record.

    A damaged record is skipped by searching forward for the next position where a
    whole record checks out, so one bad spot loses only itself.
    """
    pos = start
    raw = data.obj if isinstance(data.obj, bytes) else bytes(data)
    while pos < len(data):
        found = _record_at(data, pos)
        skipped = 0
        if found is None:
            probe = pos + 1
            while True:
                probe = raw.find(_RECORD_MAGIC_BYTES, probe)
                if probe < 0:
                    return
                found = _record_at(data, probe)
                if found is not None:
                    skipped = probe - pos
                    pos = probe
                    break
                probe += 1
        end, kind, payload = found
        yield skipped, end, kind, payload
        pos = end


def read_journal(path: str | os.PathLike) -> JournalContents:
    """Read every intact record of a journal."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    if len(raw) < _HEADER.size or raw[:8] != MAGIC:
        raise FormatError("is not a pmld recording journal", path=path)
    _, version, length = _HEADER.unpack_from(raw, 0)
    if version > VERSION:
        raise FormatError(
            f"is a journal of format {version}; this pmld reads {VERSION}: upgrade pmld",
            path=path,
        )
    try:
        header = json.loads(raw[_HEADER.size : _HEADER.size + length])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FormatError(
            "has a damaged header: the recording cannot be recovered", path=path
        ) from None
    out = JournalContents(path=path, header=header)
    pos = _HEADER.size + length
    out.valid_bytes = pos
    data = memoryview(raw)
    for skipped, end, kind, payload in _records(data, pos):
        out.damaged_bytes += skipped
        if kind == SAMPLES:
            first, host_ns, n, flags = _SAMPLES.unpack_from(payload, 0)
            body = np.frombuffer(payload, dtype="<i2", offset=_SAMPLES.size)
            acc = body[: n * 3].reshape(n, 3)
            gyro = body[n * 3 : n * 6].reshape(n, 3) if flags & 1 else None
            out.blocks.append((first, host_ns, acc, gyro))
            out.next_index = max(out.next_index, first + n)
        elif kind == GAP:
            out.gaps.append(_GAP.unpack_from(payload, 0))
        elif kind == TIME_SYNC:
            out.time_syncs.append(_TIME_SYNC.unpack_from(payload, 0))
        elif kind == EVENT:
            out.events.append(json.loads(bytes(payload)))
        out.valid_bytes = end
    out.dropped_bytes = len(raw) - out.valid_bytes
    return out


def journal_to_night(contents: JournalContents) -> tuple[Night, dict[str, Any]]:
    """Assemble a Night from a journal: samples by index, gaps, clock fitted to UTC.

    Duplicate samples (the same index received twice, e.g. a replay overlapping what
    had arrived) are kept once. Every index not received is a gap.
    """
    header = contents.header
    nominal = float(header["fs_hz"])
    if not contents.blocks:
        raise InputError(
            "holds no samples: the recording stopped before the band sent any",
            path=contents.path,
        )
    firsts = np.array([b[0] for b in contents.blocks], dtype=np.int64)
    counts = np.array([len(b[2]) for b in contents.blocks], dtype=np.int64)
    hosts = np.array([b[1] for b in contents.blocks], dtype=np.int64)
    index = np.repeat(firsts, counts) + (
        np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    acc = np.concatenate([b[2] for b in contents.blocks])
    has_gyro = all(b[3] is not None for b in contents.blocks)
    gyro = np.concatenate([b[3] for b in contents.blocks]) if has_gyro else None
    order = np.argsort(index, kind="stable")
    index = index[order]
    unique = np.r_[True, index[1:] != index[:-1]]
    keep = order[unique]
    duplicates = int((~unique).sum())
    index = index[unique]
    acc = acc[keep]
    gyro = gyro[keep] if gyro is not None else None
    # Clock: the last sample of each packet was sent when the packet left; a TIME_SYNC
    # point is a sample's acquisition seen from the host, less the band's own delay.
    fit_index = firsts + counts - 1
    if contents.time_syncs:
        syncs = np.array(contents.time_syncs, dtype=np.int64).reshape(-1, 3)
        fit_index = np.concatenate([fit_index, syncs[:, 0]])
        hosts = np.concatenate([hosts, syncs[:, 2]])
    fit = fit_sample_clock(fit_index, hosts, nominal)
    start_ns = fit.start_ns + int(round(index[0] / fit.fs_hz * 1e9))
    jumps = np.flatnonzero(np.diff(index) > 1)
    gaps = pd.DataFrame(
        {
            "sample_index": jumps + 1,
            "missing_samples": index[jumps + 1] - index[jumps] - 1,
        }
    )
    device = dict(header.get("device", {}))
    counts_per_g = float(device.get("counts_per_g", 4096.0))
    sensor = Sensor(
        acc.astype(np.float32) / np.float32(counts_per_g),
        fit.fs_hz,
        datetime.fromtimestamp(start_ns / 1e9, tz=UTC),
        side=header.get("side", "unknown"),
        gyro_dps=None
        if gyro is None
        else gyro.astype(np.float32) / np.float32(float(header.get("counts_per_dps", 16.4))),
        gaps=gaps,
        device=device,
    )
    annotations = empty_annotations()
    lights = [e for e in contents.events if e.get("event") in ("lights_off", "lights_on")]
    if lights:
        t0 = start_ns / 1e9
        annotations = make_annotations(
            [datetime.fromisoformat(e["host_utc"]).timestamp() - t0 for e in lights],
            0.0,
            [e["event"] for e in lights],
            source="recorder",
        )
    report = {
        "samples_received": int(contents.n_received),
        "samples_kept": int(len(index)),
        "duplicates_dropped": duplicates,
        "gaps": int(len(gaps)),
        "missing_samples": int(gaps["missing_samples"].sum()) if len(gaps) else 0,
        "first_sample_index": int(index[0]),
        "clock_fs_hz": fit.fs_hz,
        "clock_skew_ppm": fit.skew_ppm,
        "clock_residual_ms": fit.residual_ms,
        "torn_bytes_at_end": int(contents.dropped_bytes),
        "damaged_bytes_skipped": int(contents.damaged_bytes),
    }
    meta = {
        **{k: v for k, v in header.get("meta", {}).items()},
        "source_format": "pmld-journal",
        "nominal_fs_hz": nominal,
        "clock_skew_ppm": round(fit.skew_ppm, 3) + 0.0,  # never "-0.0"
    }
    night = Night(
        [sensor], timezone=header.get("timezone", "UTC"), annotations=annotations, meta=meta
    )
    return night, report


def repair(output: str | os.PathLike) -> dict[str, Any]:
    """Build ``output`` (pmld-raw) from its journal, atomically; keep the journal.

    Returns the assembly report. The journal is left in place so that a recording can
    be continued; :func:`finish` removes it after a clean stop.
    """
    from .raw import write_raw

    contents = read_journal(journal_path(output))
    night, report = journal_to_night(contents)
    write_raw(night, output)
    return report


def finish(output: str | os.PathLike) -> dict[str, Any]:
    """Write the final pmld-raw file from the journal and remove the journal."""
    report = repair(output)
    journal_path(output).unlink()
    return report
