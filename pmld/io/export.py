"""Exports for other tools: BIDS ``events.tsv``, CSV and EDF+.

A nightly summary (``pmld-summary``) exports its events: every scored leg movement
(LM) labelled by its class, the PLM series, the lights, the sleep period, sleep/wake
spans, non-wear and the spans without data, as

``bids``
    a BIDS ``events.tsv`` (``onset``, ``duration``, ``trial_type`` and pmld's columns,
    ``n/a`` for missing values; onsets in seconds from the recording start) with the
    ``events.json`` sidecar that describes every column and the ``trial_type`` levels
    (BIDS specification, "Task events");
``csv``
    a plain CSV with the same rows, plus absolute UTC and local ISO 8601 times;
``edf``
    an annotation-only EDF+ file (EDF+ specification, Kemp & Olivan 2003), the way PSG
    labs exchange scorings.

A raw night (``pmld-raw``) exports its acceleration to EDF+ for PSG software: one int16
signal per ankle axis in g, with the events of a summary as annotations. EDF+C is
continuous: spans without data (gaps, an ankle that started later or stopped earlier)
are filled with 0 g and each is covered by a ``pmld: no data`` annotation, never
silently invented.

Time zone: EDF headers hold a local clock time without a UTC offset. pmld writes the
local wall-clock time of the recording start in the night's IANA zone (as PSG systems
do) and states the zone and its UTC offset in the header's recording field; annotation
onsets count in seconds from that start. ``pmld.io.reference.read_reference`` reads
all three formats back.

Every file is written atomically: a temporary file in the target's directory, then
:func:`os.replace`, so a failed export leaves no half-written file. The user guide is
``docs/exports.md``.

References
----------
BIDS specification, "Task events" (``events.tsv`` and its JSON sidecar).
https://bids-specification.readthedocs.io/en/stable/modality-specific-files/task-events.html
Kemp B, Olivan J (2003). European data format 'plus' (EDF+), an EDF alike standard
format for the exchange of physiological data. Clin Neurophysiol 114:1755-1761.
https://www.edfplus.info/specs/edfplus.html
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import h5py
import numpy as np
import pandas as pd

from .. import __version__
from ..errors import FormatError, InputError, UsageError
from ..night import Night, Sensor
from ._files import write_atomic
from ._hdf5 import attr_text

__all__ = [
    "EXPORT_FORMATS",
    "GAP_LABEL",
    "ExportResult",
    "edf_record_duration",
    "event_table",
    "export",
    "export_events",
    "export_raw_edf",
    "format_for",
]

#: The formats :func:`export` writes.
EXPORT_FORMATS = ("bids", "edf", "csv")

#: Output name endings and the format they imply.
SUFFIX_FORMATS = {".tsv": "bids", ".edf": "edf", ".csv": "csv"}

#: Label of a span without data (EDF annotations, event tables).
GAP_LABEL = "pmld: no data"

#: Value written into an EDF signal where there is no data (see :data:`GAP_LABEL`).
#: 0 g on all three axes cannot be a worn sensor at rest (gravity is 1 g), so a filled
#: span shows as a flat line at zero in a viewer, besides its annotation.
FILL_G = 0.0

#: Longest EDF data record tried (s) when looking for a whole number of samples per
#: record; EDF+ asks for records of at most 61440 bytes.
MAX_RECORD_S = 60
MAX_RECORD_BYTES = 61440

#: Words for the sides in EDF annotation texts; ``pmld.io.reference`` reads them back.
_SIDE_WORDS = {"left": "left", "right": "right", "both": "bilateral"}
_AXIS_SIDE = {"left": "L ankle", "right": "R ankle", "unknown": "ankle"}

#: The event-table columns, in order, with their BIDS sidecar descriptions.
#: ``onset``/``duration`` are BIDS's required columns; the rest are pmld's.
COLUMNS: dict[str, dict[str, Any]] = {
    "onset": {
        "LongName": "Onset",
        "Description": "Start of the event in seconds from the start of the recording "
        "(the first sample of the earliest ankle sensor)",
        "Units": "s",
    },
    "duration": {
        "LongName": "Duration",
        "Description": "Length of the event in seconds; 0 for an instant",
        "Units": "s",
    },
    "trial_type": {
        "LongName": "Event type",
        "Description": "What the event is (pmld's scoring of the ankle accelerometer)",
    },
    "side": {
        "LongName": "Side",
        "Description": "The leg: left, right, both (a bilateral LM: monolateral LMs "
        "merged by the scoring rules), or unknown",
        "Levels": {
            "left": "left leg",
            "right": "right leg",
            "both": "both legs (bilateral LM)",
            "unknown": "side not known",
        },
    },
    "candidate": {
        "LongName": "Candidate LM",
        "Description": "true when the LM is a candidate LM (CLM) by the scoring rules "
        "(WASM 2016: 0.5-10 s monolateral, up to 15 s bilateral)",
        "Levels": {"true": "a CLM", "false": "not a CLM"},
    },
    "plm": {
        "LongName": "Periodic LM",
        "Description": "true when the LM is part of a PLM series",
        "Levels": {"true": "in a PLM series", "false": "not in a PLM series"},
    },
    "short_imi": {
        "LongName": "Short inter-movement interval",
        "Description": "true for a CLM whose IMI is below the rules' minimum (10 s in WASM "
        "2016)",
        "Levels": {"true": "IMI below the minimum", "false": "IMI not below the minimum"},
    },
    "series_id": {
        "LongName": "PLM series",
        "Description": "Number of the PLM series (0, 1, ...) the LM belongs to, or that a "
        "'PLM series' row is",
    },
    "imi_s": {
        "LongName": "Inter-movement interval",
        "Description": "Onset-to-onset interval from the previous LM of any kind",
        "Units": "s",
    },
    "n_components": {
        "LongName": "Monolateral LMs",
        "Description": "Number of monolateral LMs merged into this LM",
    },
    "respiratory": {
        "LongName": "Respiratory-related",
        "Description": "true when the LM is associated with an apnea or hypopnea",
        "Levels": {"true": "respiratory-related", "false": "not respiratory-related"},
    },
    "arousal": {
        "LongName": "Arousal-associated",
        "Description": "true when the LM is associated with an arousal",
        "Levels": {"true": "with an arousal", "false": "without an arousal"},
    },
    "in_sleep": {
        "LongName": "In sleep",
        "Description": "true when the LM's onset is in sleep (the whole analysis window "
        "counts as sleep when sleep was not known)",
        "Levels": {"true": "in sleep", "false": "in wake"},
    },
    "peak_g": {
        "LongName": "Peak activity",
        "Description": "Peak of the detector's activity signal during the LM",
        "Units": "g",
    },
    "area_gs": {
        "LongName": "Activity area",
        "Description": "Integral of the detector's activity signal over the LM",
        "Units": "g*s",
    },
    "posture_change_deg": {
        "LongName": "Posture change",
        "Description": "Orientation of the sensor after the LM against before it",
        "Units": "deg",
    },
    "n_lms": {
        "LongName": "LMs in the series",
        "Description": "Number of LMs in a PLM series (rows 'PLM series')",
    },
    "mean_imi_s": {
        "LongName": "Mean IMI of the series",
        "Description": "Mean inter-movement interval in a PLM series (rows 'PLM series')",
        "Units": "s",
    },
    "source": {
        "LongName": "Source",
        "Description": "Where the event comes from: 'pmld' (pmld's scoring of the "
        "accelerometer), 'estimate' (pmld's estimate from the ankle), 'annotations' (a "
        "reference scoring or the user, carried over), 'window' (the analysis window) or "
        "'recording' (the data themselves)",
    },
}

#: The ``trial_type`` levels and their descriptions (the BIDS sidecar's ``Levels``).
TRIAL_TYPES = {
    "PLM": "leg movement (LM) in a PLM series: a run of at least 4 candidate LMs with "
    "onset-to-onset intervals of 10-90 s (WASM 2016 rules unless the summary says "
    "otherwise)",
    "CLM": "candidate LM not in a PLM series",
    "CLM short IMI": "candidate LM whose interval from the previous LM is below the "
    "minimum IMI (10 s): not counted in a series",
    "LM": "leg movement that is not a candidate (e.g. longer than 10 s)",
    "posture change": "posture change or large body movement: never a candidate LM",
    "PLM series": "span of a PLM series, from its first LM's onset to its last LM's offset",
    "lights off": "start of the analysis window (lights off)",
    "lights on": "end of the analysis window (lights on)",
    "sleep period": "the sleep period: from sleep onset to the final awakening",
    "sleep": "span of sleep",
    "wake": "span of wake",
    "nonwear": "the band was not worn (flagged, not deleted)",
    GAP_LABEL: "no data recorded (a gap, or an ankle that started later or stopped "
    "earlier than the other)",
}


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes
    ----------
    path : Path
        The file written.
    format : {'bids', 'edf', 'csv'}
    n_events : int
        Events (rows, or EDF annotations) written.
    extra_paths : list of Path
        Other files written (the BIDS ``events.json`` sidecar).
    notices : list of str
        One-line notices for the user (gaps filled, a summary of another file, ...).
    """

    path: Path
    format: str
    n_events: int
    extra_paths: list[Path] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the user."""
        also = "".join(f" and {p}" for p in self.extra_paths)
        return f"wrote {self.path}{also} ({self.format}, {self.n_events} events)"


# -- choosing the format ---------------------------------------------------------------
def format_for(output: str | os.PathLike, format: str | None = None) -> str:
    """The export format: ``format`` when given, else from the output's extension.

    ``.tsv`` is BIDS, ``.edf`` EDF+, ``.csv`` CSV.

    Raises
    ------
    UsageError
        An unknown format, or an extension that does not say.
    """
    if format is not None:
        name = str(format).lower()
        if name not in EXPORT_FORMATS:
            raise UsageError(
                f"unknown export format {format!r}; one of {', '.join(EXPORT_FORMATS)}"
            )
        return name
    suffix = Path(output).suffix.lower()
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    raise UsageError(
        f"cannot tell the export format from the name {Path(output).name!r}: name it .tsv "
        "(BIDS events), .edf (EDF+) or .csv, or give --format bids|edf|csv"
    )


# -- the event table ------------------------------------------------------------------
def _lm_class(events: pd.DataFrame) -> np.ndarray:
    """``trial_type`` of each scored LM (see :data:`TRIAL_TYPES`)."""
    n = len(events)

    def column(name: str) -> np.ndarray:
        if name not in events:
            return np.zeros(n, dtype=bool)
        return events[name].fillna(False).to_numpy(dtype=bool)

    posture = (
        events["kind"].astype(str).to_numpy() == "posture"
        if "kind" in events else np.zeros(n, dtype=bool)
    )
    candidate, plm, short = column("candidate"), column("plm"), column("short_imi")
    return np.select(
        [posture, plm, candidate & short, candidate],
        ["posture change", "PLM", "CLM short IMI", "CLM"],
        default="LM",
    ).astype(object)


def _frame(rows: dict[str, Any], n: int) -> pd.DataFrame:
    out = {}
    for name, value in rows.items():
        out[name] = np.broadcast_to(np.asarray(value, dtype=object), n).copy()
    return pd.DataFrame(out)


def event_table(summary) -> pd.DataFrame:
    """Every event of a nightly summary as one table, sorted by onset.

    Parameters
    ----------
    summary : pmld.io.summary.SummaryFile

    Returns
    -------
    DataFrame
        One row per event with the columns of :data:`COLUMNS` (``onset`` and
        ``duration`` in seconds from the summary's ``start_utc``); missing values are
        None. Rows: every scored LM (``trial_type`` by class: PLM, CLM, CLM short IMI,
        LM, posture change), every PLM series, lights off/on when the analysis window
        is not the whole recording, and when the summary has them the sleep period,
        sleep/wake spans, non-wear and spans without data.
    """
    parts = []
    events = summary.events
    if len(events):
        n = len(events)
        series_id = events["series_id"].to_numpy() if "series_id" in events else np.full(n, -1)
        lm = {
            "onset": events["onset_s"].to_numpy(float),
            "duration": events["duration_s"].to_numpy(float)
            if "duration_s" in events
            else (events["offset_s"] - events["onset_s"]).to_numpy(float),
            "trial_type": _lm_class(events),
            "side": events["side"].astype(str).to_numpy() if "side" in events else "unknown",
            "series_id": np.where(series_id >= 0, series_id, None),
            "source": "pmld",
        }
        for name in ("candidate", "plm", "short_imi", "respiratory", "arousal", "in_sleep"):
            if name in events:
                lm[name] = events[name].to_numpy(dtype=bool)
        for name in ("imi_s", "n_components", "peak_g", "area_gs", "posture_change_deg"):
            if name in events:
                lm[name] = events[name].to_numpy()
        parts.append(_frame(lm, n))
    series = summary.series
    if len(series):
        parts.append(_frame({
            "onset": series["onset_s"].to_numpy(float),
            "duration": (series["offset_s"] - series["onset_s"]).to_numpy(float),
            "trial_type": "PLM series",
            "side": None,
            "series_id": series["series_id"].to_numpy(),
            "n_lms": series["n_lms"].to_numpy() if "n_lms" in series else None,
            "mean_imi_s": series["mean_imi_s"].to_numpy() if "mean_imi_s" in series else None,
            "source": "pmld",
        }, len(series)))
    attrs = summary.attrs
    duration_s = float(attrs.get("duration_s", math.nan))
    start_s = float(attrs.get("window_start_s", 0.0))
    stop_s = float(attrs.get("window_stop_s", duration_s))
    if math.isfinite(start_s) and start_s > 0:
        parts.append(_frame({"onset": start_s, "duration": 0.0, "trial_type": "lights off",
                             "side": None, "source": "window"}, 1))
    if math.isfinite(stop_s) and math.isfinite(duration_s) and stop_s < duration_s:
        parts.append(_frame({"onset": stop_s, "duration": 0.0, "trial_type": "lights on",
                             "side": None, "source": "window"}, 1))
    sleep = summary.sleep or {}
    sleep_source = str(sleep.get("source", "none"))
    onset = _number(sleep.get("period_onset_s"))
    offset = _number(sleep.get("period_offset_s"))
    if math.isfinite(onset) and math.isfinite(offset) and offset >= onset:
        parts.append(_frame({"onset": onset, "duration": offset - onset,
                             "trial_type": "sleep period", "side": None,
                             "source": sleep_source}, 1))
    spans = sleep.get("spans")
    if spans is not None and len(spans):
        parts.append(_frame({
            "onset": spans["onset_s"].to_numpy(float),
            "duration": spans["duration_s"].to_numpy(float),
            "trial_type": spans["state"].astype(str).to_numpy(),
            "side": None,
            "source": sleep_source,
        }, len(spans)))
    for table, label, source in (
        (sleep.get("nonwear"), "nonwear", "estimate"),
        (summary.gaps, GAP_LABEL, "recording"),
    ):
        if table is not None and len(table):
            parts.append(_frame({
                "onset": table["onset_s"].to_numpy(float),
                "duration": table["duration_s"].to_numpy(float),
                "trial_type": label,
                "side": table["side"].astype(str).to_numpy(),
                "source": source,
            }, len(table)))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    for name in COLUMNS:
        if name not in frame:
            frame[name] = None
    frame = frame[list(COLUMNS)].astype(object)
    frame = frame.where(pd.notna(frame), None)
    if len(frame):
        order = np.lexsort((frame["trial_type"].astype(str).to_numpy(),
                            frame["onset"].to_numpy(float)))
        frame = frame.iloc[order].reset_index(drop=True)
    return frame


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _text(value, missing: str) -> str:
    """One cell: booleans lower case, floats shortest to the microsecond."""
    if value is None:
        return missing
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return missing
        return np.format_float_positional(float(value), precision=6, trim="-")
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def _edf_text(trial_type: str, side: str) -> str:
    """An EDF annotation text: the class and the side (``PLM left``, ``PLM bilateral``)."""
    word = _SIDE_WORDS.get(str(side))
    return f"{trial_type} {word}" if word else str(trial_type)


# -- atomic writing ---------------------------------------------------------------------
def _check_output(path: Path) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"cannot write {path}: the directory {directory} does not exist")
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory; give a file name")


# -- events: BIDS, CSV, EDF+ ------------------------------------------------------------
def export_events(summary, output: str | os.PathLike, format: str | None = None) -> ExportResult:
    """Write a nightly summary's events as BIDS ``events.tsv``, CSV or EDF+.

    Parameters
    ----------
    summary : pmld.io.summary.SummaryFile or path
        A summary read with :func:`pmld.io.summary.read_summary`, or its path.
    output : path
        The file to write. BIDS also writes the sidecar: ``*_events.tsv`` gets
        ``*_events.json`` (any other ``NAME.tsv`` gets ``NAME.json``).
    format : {'bids', 'edf', 'csv'}, optional
        Default: from the extension (:func:`format_for`).
    """
    from .summary import read_summary

    if not hasattr(summary, "events"):
        summary = read_summary(summary)
    output = Path(output)
    kind = format_for(output, format)
    _check_output(output)
    table = event_table(summary)
    start = _start_utc(summary.attrs, summary.path)
    zone = str(summary.attrs.get("timezone", "UTC") or "UTC")
    result = ExportResult(output, kind, len(table))
    if kind == "bids":
        sidecar = _sidecar_path(output)
        result.extra_paths.append(sidecar)
        write_atomic([
            (sidecar, lambda tmp: tmp.write_text(_bids_sidecar(table, start, zone),
                                                 encoding="utf-8")),
            (output, lambda tmp: tmp.write_text(_bids_tsv(table), encoding="utf-8")),
        ], fsync=True)
    elif kind == "csv":
        write_atomic([(output, lambda tmp: _csv(table, start, zone).to_csv(
            tmp, index=False, lineterminator="\n"))], fsync=True)
    else:
        edfio = _edfio()
        annotations = [
            edfio.EdfAnnotation(float(row.onset), _edf_duration(row.duration),
                                _edf_text(row.trial_type, row.side))
            for row in table.itertuples()
        ]
        meta = _json_attr(summary.attrs.get("night_meta_json"))
        edf = edfio.Edf(
            [],
            patient=_patient(edfio, meta),
            recording=_recording(edfio, start, zone, meta.get("model", "X")),
            starttime=_local_start(start, zone).time(),
            annotations=annotations,
        )
        write_atomic([(output, edf.write)], fsync=True)
    return result


def _start_utc(attrs: dict[str, Any], path: str) -> datetime:
    text = str(attrs.get("start_utc", ""))
    try:
        start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FormatError(f"has an unreadable start_utc {text!r}", path=path) from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return start.astimezone(UTC)


def _json_attr(value) -> dict[str, Any]:
    try:
        out = json.loads(str(value)) if value else {}
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _sidecar_path(output: Path) -> Path:
    return output.with_suffix(".json")


def _bids_tsv(table: pd.DataFrame) -> str:
    lines = ["\t".join(COLUMNS)]
    for row in table.itertuples(index=False):
        lines.append("\t".join(_text(value, "n/a") for value in row))
    return "\n".join(lines) + "\n"


def _bids_sidecar(table: pd.DataFrame, start: datetime, zone: str) -> str:
    sidecar = json.loads(json.dumps(COLUMNS))
    local = start.astimezone(ZoneInfo(zone))
    sidecar["onset"]["Description"] += (
        f": {start.isoformat()} (UTC), {local.isoformat()} local time in {zone}"
    )
    used = set(table["trial_type"].astype(str)) if len(table) else set()
    sidecar["trial_type"]["Levels"] = {
        name: text for name, text in TRIAL_TYPES.items() if name in used or name in (
            "PLM", "CLM", "CLM short IMI", "LM", "posture change", "PLM series")
    }
    return json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n"


def _csv(table: pd.DataFrame, start: datetime, zone: str) -> pd.DataFrame:
    out = pd.DataFrame({
        "onset_s": [_text(v, "") for v in table["onset"]],
        "duration_s": [_text(v, "") for v in table["duration"]],
        "label": table["trial_type"].astype(str),
    })
    for name in list(COLUMNS)[3:]:
        out[name] = [_text(v, "") for v in table[name]]
    when = [start + timedelta(seconds=float(s)) for s in table["onset"]]
    tz = ZoneInfo(zone)
    out["onset_utc"] = [w.isoformat(timespec="microseconds").replace("+00:00", "Z")
                        for w in when]
    out["onset_local"] = [w.astimezone(tz).isoformat(timespec="microseconds") for w in when]
    return out


def _edf_duration(value) -> float | None:
    value = _number(value)
    return value if math.isfinite(value) and value > 0 else None


# -- EDF header fields --------------------------------------------------------------------
def _edfio():
    try:
        import edfio
    except ImportError:
        raise UsageError('writing EDF+ needs the edfio package: pip install "pmld[research]"') \
            from None
    return edfio


def _local_start(start: datetime, zone: str) -> datetime:
    """The local wall-clock time of ``start`` in ``zone``, naive (what EDF stores)."""
    return start.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def _field(text: Any) -> str:
    """An EDF+ header subfield: printable ASCII, no spaces (EDF+ 2.1.3.3), 'X' if empty."""
    clean = "".join(c if 33 <= ord(c) < 127 else "_" for c in str(text).strip())
    return clean or "X"


def _patient(edfio, meta: dict[str, Any]):
    """Patient field: the subject code when the night has one, else ``X X X X``."""
    code = meta.get("subject") or meta.get("subject_id") or "X"
    return edfio.Patient(code=_field(code)[:40])


def _recording(edfio, start: datetime, zone: str, equipment: Any):
    """Recording field: ``Startdate dd-MMM-yyyy X X <equipment> pmld-<ver> <zone>``.

    The time zone and its UTC offset at the start go in an additional subfield, since
    the EDF start time is a local clock time without an offset.
    """
    local = start.astimezone(ZoneInfo(zone))
    offset = local.strftime("%z")
    extra = [f"pmld-{_field(__version__)}", f"tz={_field(zone)}(UTC{offset[:3]}:{offset[3:]})"]
    equipment = _field(equipment)[:20]
    while extra and len(f"Startdate 05-JAN-2026 X X {equipment} " + " ".join(extra)) > 80:
        extra.pop()
    return edfio.Recording(
        startdate=local.date(), equipment_code=equipment, additional=tuple(extra)
    )


# -- raw night to EDF+ ----------------------------------------------------------------------
def edf_record_duration(rates_hz: list[float], max_s: int = MAX_RECORD_S) -> int:
    """The shortest whole-second EDF data record holding a whole number of samples of
    every rate (EDF stores samples per data record as an integer).

    Raises
    ------
    InputError
        No record of 1 to ``max_s`` seconds does (a rate such as 99.987 Hz): resample.
    """
    for seconds in range(1, max_s + 1):
        if all(abs(fs * seconds - round(fs * seconds)) < 1e-6 for fs in rates_hz):
            return seconds
    rates = ", ".join(f"{fs:g} Hz" for fs in rates_hz)
    raise InputError(
        f"cannot be written as EDF: a data record of 1 to {max_s} s never holds a whole "
        f"number of samples at {rates}; resample the night to a whole rate first "
        "(e.g. pmld.resample, or pmld import --fs 100)"
    )


def _physical_range(sensor: Sensor) -> tuple[float, float, str | None]:
    """(min, max, notice): the sensor's range ±range_g, else the data's range."""
    data = sensor.acc_g
    lo = float(data.min()) if data.size else -1.0
    hi = float(data.max()) if data.size else 1.0
    lo, hi = min(lo, FILL_G), max(hi, FILL_G)
    range_g = _number(sensor.device.get("range_g"))
    if not math.isfinite(range_g) and _number(sensor.device.get("counts_per_g")) > 0:
        range_g = 32768.0 / _number(sensor.device.get("counts_per_g"))
    if math.isfinite(range_g) and range_g > 0:
        if lo >= -range_g and hi <= range_g:
            return -range_g, range_g, None
        wide = max(abs(lo), abs(hi))
        return -wide, wide, (
            f"{sensor.side} ankle: data reach {wide:.4g} g, beyond the sensor's range "
            f"±{range_g:g} g; the EDF's physical range is ±{wide:.4g} g"
        )
    if hi - lo < 1e-3:
        lo, hi = lo - 1.0, hi + 1.0
    # outward to 4 decimals so that the 8-character header holds the bounds
    return math.floor(lo * 1e4) / 1e4, math.ceil(hi * 1e4) / 1e4, None


def export_raw_edf(
    night: Night,
    output: str | os.PathLike,
    *,
    events=None,
    source: str | os.PathLike | None = None,
) -> ExportResult:
    """Write a night's acceleration as EDF+ (EDF+C), optionally with events.

    Parameters
    ----------
    night : Night
    output : path
    events : pmld.io.summary.SummaryFile or path, optional
        A nightly summary whose events (:func:`event_table`) become annotations, placed
        by their absolute times.
    source : path, optional
        The raw file ``night`` was read from; lets a summary of another file be noticed.

    Notes
    -----
    One signal per ankle axis (``L ankle X`` ...), physical dimension ``g``, physical
    range the sensor's ±range_g (else the data's range), digital int16 -32767..32767
    (symmetric, so that 0 g is digital 0).
    The data record is the shortest whole number of seconds (1 s at integral rates)
    holding a whole number of samples of every rate (:func:`edf_record_duration`).
    EDF+C is continuous: every span without data (a gap, an ankle that starts later or
    stops earlier, the end of the last data record) is filled with :data:`FILL_G` and
    covered by a :data:`GAP_LABEL` annotation; a notice says so. An ankle whose start is
    not on the other's sample grid is moved to the nearest sample (at most half a
    sample period), with a notice.
    """
    from .summary import read_summary

    edfio = _edfio()
    output = Path(output)
    _check_output(output)
    notices: list[str] = []
    for sensor in night.sensors:
        if sensor.timestamps_s is not None:
            raise InputError(
                f"the {sensor.side} sensor has per-sample times (irregular sampling); EDF "
                "needs a uniform rate: resample the night onto a grid first (pmld.resample)"
            )
    record_s = edf_record_duration([s.fs_hz for s in night.sensors])
    night_start = night.start_utc
    # where each sensor's grid point 0 falls in the EDF, in its own samples
    leads = []
    for sensor in night.sensors:
        exact = night.offset_s(sensor) * sensor.fs_hz
        lead = int(round(exact))
        shift = (lead - exact) / sensor.fs_hz
        if abs(shift) > 1e-6:
            notices.append(
                f"{sensor.side} ankle starts {night.offset_s(sensor):.6f} s after the other, "
                f"not on its sample grid: moved by {shift * 1000:+.3f} ms to the nearest "
                "sample"
            )
        leads.append(lead)
    end_s = max(
        (lead + s.n_samples + s.missing_samples) / s.fs_hz
        for lead, s in zip(leads, night.sensors, strict=True)
    )
    n_records = max(1, math.ceil(end_s / record_s - 1e-9))
    signals, gap_rows = [], []
    for lead, sensor in zip(leads, night.sensors, strict=True):
        per_record = int(round(sensor.fs_hz * record_s))
        total = n_records * per_record
        grid = lead + sensor.grid_index()
        lo, hi, notice = _physical_range(sensor)
        if notice:
            notices.append(notice)
        have = np.zeros(total, dtype=bool)
        have[grid] = True
        gap_rows += _runs_without_data(have, sensor.fs_hz, sensor.side)
        for axis, name in enumerate("XYZ"):
            data = np.full(total, FILL_G, dtype=np.float64)
            data[grid] = sensor.acc_g[:, axis]
            signals.append(edfio.EdfSignal(
                data, sensor.fs_hz,
                label=f"{_AXIS_SIDE.get(sensor.side, 'ankle')} {name}",
                transducer_type=_field(f"accelerometer {sensor.device.get('model', '')}")
                .replace("_", " "),
                physical_dimension="g",
                physical_range=(lo, hi),
                # symmetric, so that 0 g (the fill of spans without data) is digital 0
                digital_range=(-32767, 32767),
                prefiltering="",
            ))
    record_bytes = sum(2 * int(round(s.fs_hz * record_s)) * 3 for s in night.sensors)
    if record_bytes > MAX_RECORD_BYTES:
        notices.append(
            f"data records of {record_bytes} bytes exceed the EDF+ recommendation of "
            f"{MAX_RECORD_BYTES}; some EDF readers may refuse the file"
        )
    annotations = [
        edfio.EdfAnnotation(onset, duration, _edf_text(GAP_LABEL, side))
        for onset, duration, side in gap_rows
    ]
    if gap_rows:
        total_s = sum(d for _, d, _ in gap_rows)
        notices.append(
            f"{len(gap_rows)} span(s) without data ({total_s:.1f} s in all) filled with "
            f"{FILL_G:g} g and annotated '{GAP_LABEL}' (EDF+C is continuous)"
        )
    n_events = 0
    if events is not None:
        summary = events if hasattr(events, "events") else read_summary(events)
        shift_s = (_start_utc(summary.attrs, summary.path) - night_start).total_seconds()
        table = event_table(summary)
        if summary.input_sha256 and source is not None:
            from ..provenance import file_sha256

            if file_sha256(source) != summary.input_sha256:
                notices.append(
                    f"{summary.path} was made from another file than {source}; its events "
                    "are placed by their absolute times"
                )
        onsets = table["onset"].to_numpy(float) + shift_s if len(table) else np.zeros(0)
        stop = n_records * record_s
        inside = (onsets + table["duration"].to_numpy(float) >= 0) & (onsets <= stop) \
            if len(table) else np.zeros(0, dtype=bool)
        if len(table) and not inside.any():
            raise InputError(
                "its events do not overlap the night "
                f"({night_start.isoformat()}, {stop / 3600:.2f} h)", path=summary.path
            )
        if len(table) and (~inside).any():
            notices.append(f"{int((~inside).sum())} events outside the night left out")
        for row, onset in zip(table[inside].itertuples(), onsets[inside], strict=True):
            annotations.append(edfio.EdfAnnotation(
                float(onset), _edf_duration(row.duration), _edf_text(row.trial_type, row.side)
            ))
        n_events = int(inside.sum())
    meta = dict(night.meta)
    device = night.sensors[0].device
    equipment = "_".join(str(device[k]) for k in ("model", "serial") if device.get(k)) or "X"
    edf = edfio.Edf(
        signals,
        patient=_patient(edfio, meta),
        recording=_recording(edfio, night_start, night.timezone, equipment),
        starttime=_local_start(night_start, night.timezone).time(),
        data_record_duration=record_s,
        annotations=annotations,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_atomic([(output, edf.write)], fsync=True)
    return ExportResult(output, "edf", n_events + len(gap_rows), notices=notices)


def _runs_without_data(have: np.ndarray, fs_hz: float, side: str) -> list[tuple]:
    """``(onset_s, duration_s, side)`` of every run of False in ``have``."""
    edges = np.diff(np.concatenate([[1], have.view(np.int8), [1]]))
    starts = np.flatnonzero(edges == -1)
    stops = np.flatnonzero(edges == 1)
    return [(a / fs_hz, (b - a) / fs_hz, side) for a, b in zip(starts, stops, strict=True)]


# -- the command's entry point ---------------------------------------------------------------
def schema_of(path: str | os.PathLike) -> str | None:
    """The ``schema`` attribute of an HDF5 file, '' for HDF5 without one, None when the
    file is not HDF5 (or does not exist: the readers say so)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as h5:
            return attr_text(h5.attrs.get("schema")) or ""
    except OSError:
        return None


def export(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    format: str | None = None,
    events: str | os.PathLike | None = None,
) -> ExportResult:
    """Export a pmld file: a summary's events (BIDS, CSV, EDF+) or a raw night (EDF+).

    Parameters
    ----------
    source : path
        A nightly summary (``*.plm.h5``, schema pmld-summary) or a raw night (``*.h5``,
        pmld-raw).
    output : path
    format : {'bids', 'edf', 'csv'}, optional
        Default from the output's extension.
    events : path, optional
        With a raw night: a summary whose events go into the EDF+ as annotations.

    Raises
    ------
    InputError, FormatError, UsageError
        One line each: not a pmld file, a newer major version, a missing output
        directory, an unknown format, a raw night to another format than EDF+.
    """
    from .nightfile import open_night
    from .summary import SUMMARY_SCHEMA, read_summary

    source, output = Path(source), Path(output)
    kind = format_for(output, format)
    _check_output(output)
    schema = schema_of(source)
    if schema == SUMMARY_SCHEMA:
        if events is not None:
            raise UsageError("--events goes with a raw night (pmld-raw); this is a summary")
        return export_events(read_summary(source), output, kind)
    if schema not in (None, "pmld-raw"):
        raise FormatError(
            f"is HDF5 but not a pmld file (schema attribute {schema or 'missing'}): export "
            "reads a pmld-raw night (.h5) or a pmld-summary (.plm.h5)", path=source
        )
    if kind != "edf":
        raise UsageError(
            f"a raw night exports to EDF+ only (-o NAME.edf); for {kind.upper()} events "
            "analyse it (pmld analyze) and export the summary"
        )
    summary = read_summary(events) if events is not None else None
    try:
        night, notice = open_night(source)
    except FormatError as error:
        if schema is None and source.is_file():
            raise FormatError(
                f"is not a pmld file ({str(error).removeprefix(f'{source}: ')}): export "
                "reads a pmld-raw night (.h5) or a pmld-summary (.plm.h5)", path=source
            ) from None
        raise
    result = export_raw_edf(night, output, events=summary, source=source)
    if notice:
        result.notices.insert(0, notice)
    return result

