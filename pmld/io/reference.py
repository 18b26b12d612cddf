"""Reference scoring from polysomnography (PSG): import and alignment onto a night.

A PSG lab scores leg movements (LMs), respiratory events, arousals, sleep stages and
lights off/on; this module reads such a scoring from the files labs exchange, maps its
labels onto pmld's annotation labels (:data:`pmld.night.ANNOTATION_LABELS`) and puts
it on a night's clock, so that :func:`pmld.analyze` uses the reference's hypnogram and
respiratory events and an evaluation can compare pmld's LMs with the reference's.

Formats
-------
``bids``
    BIDS ``events.tsv``: columns ``onset`` and ``duration`` in seconds from the start
    of the recording (``n/a`` allowed for ``duration``), the label in ``trial_type``.
``csv``
    Generic CSV/TSV (comma, tab or semicolon): an onset column (``onset``, ``start``,
    ``time``, ...), a duration column or an end column (``end``, ``stop``,
    ``offset``), a label column (``label``, ``type``, ``event``, ``trial_type``, ...)
    and optionally a side column (``side``, ``channel``, ``location``). Onsets are
    seconds, clock times (``23:10:05``) or ISO 8601 date-times. Lines before the header
    (an export's preamble) are skipped.
``edf``
    EDF+ (or BDF+) with an ``EDF Annotations`` signal, read with ``edfio`` (the
    ``research`` extra); the header's start date and time is the reference's start.
``nsrr``
    NSRR XML (``PSGAnnotation/ScoredEvents/ScoredEvent`` with ``EventConcept``,
    ``Start`` and ``Duration`` in seconds; ``Recording Start Time`` with ``ClockTime``).

Clock
-----
A reference's onsets count from its own time base. ``offset_s`` is added to every
onset (reference time + offset = night time). When the reference's absolute start is
known (EDF header, NSRR ``Recording Start Time``, date-time onsets, or ``start_utc``
given by the user), :func:`align_reference` places it by that; otherwise the reference
is assumed to start when the night starts. Wall-clock starts without a UTC offset (EDF
headers, NSRR clock times, naive date-times) are read in the night's time zone.

``docs/reference-import.md`` is the user's guide, with the full label table.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import struct
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ..errors import FormatError, InputError, PmldError, UsageError
from ..night import (
    ANNOTATION_COLUMNS,
    ANNOTATION_LABELS,
    Night,
    as_utc,
    check_timezone,
    empty_annotations,
)
from ..provenance import file_sha256
from ._files import read_head

__all__ = [
    "FORMATS",
    "IGNORE",
    "LABEL_TABLE",
    "REFERENCE_SUFFIXES",
    "Reference",
    "ReferenceOverlap",
    "align_reference",
    "attach_reference",
    "classify_label",
    "find_reference",
    "label_table",
    "read_reference",
    "reference_lms",
    "reference_overlap",
]

#: The formats :func:`read_reference` reads (``format="auto"`` guesses one).
FORMATS = ("bids", "csv", "edf", "nsrr")

#: A label map value that drops the label (counted in :attr:`Reference.ignored`).
IGNORE = "ignore"

#: File name endings :func:`find_reference` considers.
REFERENCE_SUFFIXES = (".tsv", ".csv", ".txt", ".edf", ".bdf", ".xml")

#: Annotation source of everything imported here.
SOURCE = "reference"

#: Columns of :attr:`Reference.annotations`: the night's annotation columns + original.
REFERENCE_COLUMNS = (*ANNOTATION_COLUMNS, "original")

#: Consecutive sleep (or wake) spans closer than this merge into one span (s).
MERGE_TOLERANCE_S = 1e-3

_ACTION_HINT = (
    "map them with --map 'LABEL=pmld_label' (Python: label_map={...}) or drop them with "
    "--ignore-unknown (on_unknown='ignore'); 'pmld annotate --list-labels' shows the "
    "built-in table"
)


# -- the label table ---------------------------------------------------------------------
def _entries(label: str, *keys: str, stage: str | None = None) -> dict[str, tuple[str, str | None]]:
    return {key: (label, stage) for key in keys}


def _stage_keys(*names: str, bare: bool = True) -> list[str]:
    """Spellings of one sleep stage: 'N2', 'Stage N2', 'Sleep stage N2' (and the bare
    name when ``bare``; a bare digit or 'unknown' would catch unrelated labels)."""
    keys = []
    for name in names:
        keys += [name] if bare else []
        keys += [f"stage {name}", f"sleep stage {name}"]
    return keys


#: Built-in, case-insensitive map from a normalised PSG label to ``(pmld label, stage)``.
#: Keys are lower case with every run of punctuation and spaces made one space (so
#: "Limb Movement (Left)" is "limb movement left"); a label naming a side (left, right,
#: L, R, ...) is looked up without it, and the side goes to the annotation. ``stage`` is
#: the hypnogram code of sleep-stage labels (W, N1, N2, N3, R, N; ``?`` unscored, ``MT``
#: movement time). Label ``ignore``: a PSG event pmld knows and does not use.
LABEL_TABLE: dict[str, tuple[str, str | None]] = {
    # leg movements (AASM/WASM, Compumedics/NSRR, Embla/RemLogic)
    **_entries(
        "lm",
        "lm", "lms", "leg movement", "leg movements", "limb movement", "limb movements",
        "legmovement", "limbmovement", "leg move", "leg movement event",
        "plm", "plms", "periodic leg movement", "periodic leg movements",
        "periodic limb movement", "periodic limb movements", "periodic limb movement in sleep",
        "clm", "candidate leg movement", "candidate limb movement",
        "isolated leg movement", "isolated limb movement", "isolated lm", "lm isolated",
        "tibialis emg activity", "anterior tibialis activity",
        # pmld's own exports (pmld export)
        "clm short imi", "lm short imi",
    ),
    "llm": ("lm", None),  # left LM / right LM (sides set below)
    "rlm": ("lm", None),
    **_entries(
        "plm_series", "plm series", "plms series", "plm train", "periodic limb movement series",
        "periodic leg movement series",
    ),
    **_entries(
        "posture", "body movement", "large body movement", "position change",
        "body position change", "posture change",
    ),
    # respiratory events
    **_entries(
        "apnea", "apnea", "obstructive apnea", "central apnea", "mixed apnea",
        "apnea obstructive", "apnea central", "apnea mixed", "apnea unclassified",
        "unclassified apnea", "apnea unspecified", "unspecified apnea", "sleep apnea event",
    ),
    **_entries(
        "hypopnea", "hypopnea", "obstructive hypopnea", "central hypopnea", "mixed hypopnea",
        "hypopnea obstructive", "hypopnea central", "hypopnea mixed", "hypopnea 3",
        "hypopnea 4", "hypopnea 3 rule", "hypopnea 4 rule",
    ),
    # arousals; a RERA ends in an arousal (see docs/reference-import.md)
    **_entries(
        "arousal", "arousal", "arousals", "asda arousal", "arousal asda", "eeg arousal",
        "arousal eeg", "cortical arousal", "micro arousal", "microarousal",
        "spontaneous arousal", "arousal spontaneous", "arousal spont", "arousal asp",
        "respiratory arousal", "arousal respiratory", "arousal resp", "arousal ares",
        "arousal resulting from respiratory effort", "arousal standard",
        "external arousal", "arousal external arousal", "arousal external",
        "arousal plm", "plm arousal", "arousal lm", "lm arousal", "arousal limb movement",
        "limb movement arousal", "leg movement arousal", "arousal leg movement",
        "rera", "reras", "respiratory effort related arousal",
        "respiratory effort related arousals",
    ),
    **_entries("nonwear", "nonwear", "non wear", "not worn", "device not worn", "off body"),
    # lights
    **_entries("lights_off", "lights off", "lights out", "lightsoff", "lights off time",
               "light off", "licht aus"),
    **_entries("lights_on", "lights on", "lightson", "lights on time", "light on",
               "licht an", "licht ein"),
    # sleep stages (AASM, R&K, NSRR, RemLogic "SLEEP-S2"); R&K stage 4 is AASM N3
    **_entries("wake", *_stage_keys("w", "wake", "s0"), *_stage_keys("0", bare=False),
               "awake", "wakefulness", "sleep s0", stage="W"),
    **_entries("sleep", *_stage_keys("n1", "s1", "nrem1", "nrem 1"),
               *_stage_keys("1", bare=False), "stage 1 sleep", "sleep s1", stage="N1"),
    **_entries("sleep", *_stage_keys("n2", "s2", "nrem2", "nrem 2"),
               *_stage_keys("2", bare=False), "stage 2 sleep", "sleep s2", stage="N2"),
    **_entries("sleep", *_stage_keys("n3", "s3", "nrem3", "nrem 3"),
               *_stage_keys("3", bare=False), "stage 3 sleep", "sleep s3", "slow wave sleep",
               "sws", stage="N3"),
    **_entries("sleep", *_stage_keys("n4", "s4", "nrem4", "nrem 4"),
               *_stage_keys("4", bare=False), "stage 4 sleep", "sleep s4", stage="N3"),
    **_entries("sleep", *_stage_keys("r", "rem"), *_stage_keys("5", bare=False), "rem sleep",
               "sleep rem", "sleep stage rem sleep", stage="R"),
    **_entries("sleep", *_stage_keys("nrem"), *_stage_keys("n", bare=False), "nrem sleep",
               "non rem", "non rem sleep", stage="N"),
    "sleep": ("sleep", None),
    # "Sleep stage ?" (Sleep-EDF) normalises to "sleep stage"
    **_entries(IGNORE, *_stage_keys("unscored"), *_stage_keys("unknown", "x", bare=False),
               "?", "stage", "sleep stage", "not scored", "sleep unscored", "unscored 9",
               stage="?"),
    **_entries(IGNORE, *_stage_keys("mt", "movement time"), "sleep mt", "movement 6",
               stage="MT"),
    # PSG events pmld knows and does not use (counted as ignored, never an error)
    **_entries(
        IGNORE, "spo2 desaturation", "desaturation", "oxygen desaturation", "desat",
        "spo2 artifact", "respiratory artifact",
        "snore", "snoring", "periodic breathing", "cheyne stokes breathing",
        "cheyne stokes respiration", "bradycardia", "sinus bradycardia", "tachycardia",
        "sinus tachycardia", "narrow complex tachycardia", "wide complex tachycardia",
        "asystole", "atrial fibrillation", "recording start", "recording starts",
        "start recording", "recording end", "recording ends", "end recording",
        "recording start time",
        # pmld's own exports: spans that are not events of a PSG scoring
        "sleep period", "pmld no data",
    ),
}

#: Sides implied by a few one-word labels.
_LABEL_SIDES = {"llm": "left", "rlm": "right"}

_LEFT = {"left", "l", "lt", "lft", "sx", "links", "lleg", "lat", "ltib", "lemg", "gauche"}
_RIGHT = {"right", "r", "rt", "rgt", "dx", "rechts", "rleg", "rat", "rtib", "remg", "droite"}
_BOTH = {"bilateral", "both", "bil", "bilat", "lr", "rl"}
_SIDE_WORDS = _LEFT | _RIGHT | _BOTH
#: Spellings normalised before lookup.
_SPELLINGS = {"apnoea": "apnea", "hypopnoea": "hypopnea", "artefact": "artifact"}


def _norm(text: str) -> str:
    """Lower case, punctuation and spaces as one space; British spellings made US."""
    key = re.sub(r"[\W_]+", " ", str(text).lower()).strip()
    if not key:
        return str(text).strip().lower()  # "?" stays "?"
    return " ".join(_SPELLINGS.get(word, word) for word in key.split())


def _side_of(text: str | None) -> str:
    """left, right, both or unknown, from a label or a channel/location name."""
    if text is None:
        return "unknown"
    words = set(_norm(text).split())
    left, right = bool(words & _LEFT), bool(words & _RIGHT)
    if words & _BOTH or (left and right):
        return "both"
    return "left" if left else "right" if right else "unknown"


def _candidates(text: str) -> list[str]:
    """Keys to try: the whole label, then each part of an NSRR 'a|b' concept."""
    keys = [_norm(text)]
    if "|" in text:
        keys += [_norm(part) for part in text.split("|") if part.strip()]
    return list(dict.fromkeys(keys))


#: Labels that may name a side ("PLM left", "posture change right", "nonwear left").
_SIDED_LABELS = {"lm", "posture", "nonwear", "plm_series"}


def _lookup(key: str, table: dict[str, Any]) -> tuple[Any, str | None]:
    """``(value, side)`` for a key, trying it without its side words for labels that
    can have a side (and for stage-less ignored ones, such as pmld's "no data right")."""
    if key in table:
        return table[key], _LABEL_SIDES.get(key)
    words = key.split()
    kept = [w for w in words if w not in _SIDE_WORDS]
    if kept and len(kept) < len(words):
        value = table.get(" ".join(kept))
        label, stage = value if isinstance(value, tuple) else (value, None)
        if label in _SIDED_LABELS or (label == IGNORE and stage is None):
            return value, _side_of(key)
    return None, None


def classify_label(
    text: str, label_map: dict[str, str] | None = None
) -> tuple[str | None, str, str | None]:
    """What pmld makes of a reference label.

    Returns ``(label, side, stage)``: the pmld label (``'ignore'`` for a known label
    pmld does not use, None for an unknown one), the side it names (``'left'``,
    ``'right'``, ``'both'`` or ``'unknown'``; only for leg movements), and its hypnogram
    code when the built-in table knows it as a sleep stage. ``label_map`` (as for
    :func:`read_reference`) comes first.
    """
    return _classify(text, _normalise_label_map(label_map))


def _classify(text: str, label_map: dict[str, str]) -> tuple[str | None, str, str | None]:
    keys = _candidates(text)
    stage = None
    for key in keys:
        value, _ = _lookup(key, LABEL_TABLE)
        if value is not None:
            stage = value[1]
            break
    if label_map:
        for key in keys:
            value, side = _lookup(key, {k: (v, None) for k, v in label_map.items()})
            if value is not None:
                label = value[0]
                if label == "lm" and side in (None, "unknown"):
                    side = _side_of(text)
                return label, (side or "unknown") if label == "lm" else "unknown", stage
    for key in keys:
        value, side = _lookup(key, LABEL_TABLE)
        if value is not None:
            label = value[0]
            if label == "lm" and side in (None, "unknown"):
                side = _side_of(text)
            return label, (side or "unknown") if label == "lm" else "unknown", stage
    return None, "unknown", None


def label_table() -> pd.DataFrame:
    """The built-in label table as a DataFrame (``key, label, stage``), for docs/CLI."""
    rows = [(key, label, stage or "") for key, (label, stage) in LABEL_TABLE.items()]
    frame = pd.DataFrame(rows, columns=["key", "label", "stage"])
    order = {name: i for i, name in enumerate([*ANNOTATION_LABELS, IGNORE])}
    return frame.sort_values(
        ["label", "key"], key=lambda s: s.map(order) if s.name == "label" else s
    ).reset_index(drop=True)


def _normalise_label_map(label_map: dict[str, str] | None) -> dict[str, str]:
    if not label_map:
        return {}
    if not isinstance(label_map, dict):
        raise UsageError(f"label_map must be a dict {{label: pmld label}}, got {label_map!r}")
    allowed = [*ANNOTATION_LABELS, IGNORE]
    out = {}
    for original, target in label_map.items():
        if not str(original).strip():
            raise UsageError("label map: an empty label cannot be mapped")
        value = re.sub(r"[\s-]+", "_", str(target).strip().lower())
        if value not in allowed:
            raise UsageError(
                f"label map: {original!r} -> {target!r}: not a pmld label; use one of "
                f"{', '.join(allowed)}"
            )
        out[_norm(str(original))] = value
    return out


# -- the result ----------------------------------------------------------------------------
def _empty_reference_annotations() -> pd.DataFrame:
    return empty_annotations().assign(original=pd.Series(dtype="object"))


def _empty_hypnogram() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "onset_s": pd.Series(dtype="float64"),
            "duration_s": pd.Series(dtype="float64"),
            "stage": pd.Series(dtype="object"),
            "original": pd.Series(dtype="object"),
        }
    )


@dataclass(eq=False)
class Reference:
    """A reference scoring read from a file.

    Attributes
    ----------
    path : str
    format : {'bids', 'csv', 'edf', 'nsrr'}
    start_utc : datetime or None
        Absolute (aware, UTC) start of the reference's time base, when the file gives
        it with a UTC offset or the user gave it (``start_utc=``).
    annotations : DataFrame
        ``onset_s`` (seconds from the reference's time base start, ``offset_s``
        applied), ``duration_s``, ``label`` (pmld label), ``side`` (``left``,
        ``right``, ``both`` or ``unknown``; for LMs), ``source`` (``'reference'``),
        ``original`` (the file's label). Sleep stages are merged into ``sleep`` and
        ``wake`` spans (consecutive epochs of either kind joined).
    unknown : dict
        Labels the table does not know, with their counts, dropped because
        ``on_unknown='ignore'``.
    sha256 : str
        ``sha256:<hex>`` of the file.
    start_local : datetime or None
        Naive wall-clock start (EDF header, naive date-time onsets): read in the
        night's time zone when aligned.
    start_clock : time or None
        Time of day only (NSRR ``ClockTime`` with a blank date, clock-time onsets, an
        EDF+ with an anonymised date): placed on the date that puts it nearest the
        night's start, in the night's time zone.
    start_source : str
        Where the start came from, for messages.
    duration_s : float or None
        Length of the recording the reference scored, when the file says.
    offset_s : float
        The offset added to every onset.
    ignored : dict
        Labels dropped because the table or the label map says ``ignore``, with counts.
    hypnogram : DataFrame
        The sleep-stage epochs as scored (``onset_s, duration_s, stage, original``;
        stage W, N1, N2, N3, R, N, ``?`` or MT), same time base as ``annotations``.
    n_events : int
        Events read from the file (before mapping and merging).
    timezone : str or None
        IANA time zone of ``start_local``/``start_clock``; None: the night's.
    """

    path: str
    format: str
    start_utc: datetime | None
    annotations: pd.DataFrame
    unknown: dict[str, int]
    sha256: str
    start_local: datetime | None = None
    start_clock: time | None = None
    start_source: str = ""
    duration_s: float | None = None
    offset_s: float = 0.0
    ignored: dict[str, int] = field(default_factory=dict)
    hypnogram: pd.DataFrame = field(default_factory=_empty_hypnogram)
    n_events: int = 0
    timezone: str | None = None

    def start_for(self, night: Night) -> tuple[datetime | None, str]:
        """The reference's absolute start on ``night``'s clock, and where it came from.

        ``None`` when unknown: the reference is then taken to start with the night.
        """
        if self.start_utc is not None:
            return self.start_utc, self.start_source
        zone_name = self.timezone or night.timezone
        zone = ZoneInfo(zone_name)
        if self.start_local is not None:
            start = self.start_local.replace(tzinfo=zone).astimezone(UTC)
            return start, f"{self.start_source}, read in {zone_name}"
        if self.start_clock is not None:
            day = night.start_local.date()
            options = [
                datetime.combine(day + timedelta(days=d), self.start_clock, tzinfo=zone)
                for d in (-1, 0, 1)
            ]
            start = min(
                (o.astimezone(UTC) for o in options),
                key=lambda o: abs((o - night.start_utc).total_seconds()),
            )
            return start, (
                f"{self.start_source}, a time of day read in {zone_name} on the date "
                "nearest the night's start"
            )
        return None, "no start in the file: assumed to be the night's start"

    def counts(self) -> dict[str, int]:
        """Annotations per pmld label."""
        return {str(k): int(v) for k, v in self.annotations["label"].value_counts().items()}


@dataclass(frozen=True)
class ReferenceOverlap:
    """How a reference lies on a night's clock (see :func:`reference_overlap`)."""

    reference_start_utc: datetime
    reference_end_utc: datetime
    night_start_utc: datetime
    night_end_utc: datetime
    overlap_s: float
    shift_s: float
    start_source: str
    events_total: int
    events_outside: int
    start_known: bool = True

    @property
    def time_base_utc(self) -> datetime:
        """The instant the reference's onsets (before ``offset_s``) count from."""
        return self.night_start_utc + timedelta(seconds=self.shift_s)

    @property
    def overlaps(self) -> bool:
        point = self.reference_end_utc == self.reference_start_utc
        if point:
            return self.night_start_utc <= self.reference_start_utc <= self.night_end_utc
        return self.overlap_s > 0

    @property
    def partial(self) -> bool:
        """True when part of the reference lies outside the night."""
        return (
            self.reference_start_utc < self.night_start_utc
            or self.reference_end_utc > self.night_end_utc
            or self.events_outside > 0
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["time_base_utc"] = self.time_base_utc
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        out["partial"] = self.partial
        return out

    def spans(self, with_source: bool = True) -> str:
        reference = (format_utc(self.reference_start_utc), format_utc(self.reference_end_utc))
        night = (format_utc(self.night_start_utc), format_utc(self.night_end_utc))
        source = f"; reference start: {self.start_source}" if with_source else ""
        return (
            f"the reference spans {reference[0]} to {reference[1]}, the night {night[0]} to "
            f"{night[1]} (UTC{source})"
        )

    def line(self, with_source: bool = True) -> str:
        """One line for the user (``with_source``: say where the reference start came from)."""
        parts = [f"{self.overlap_s / 3600:.2f} h in common"]
        lead = (self.night_start_utc - self.reference_start_utc).total_seconds()
        if lead > 0:
            parts.append(f"the reference starts {_duration(lead)} before the night")
        trail = (self.reference_end_utc - self.night_end_utc).total_seconds()
        if trail > 0:
            parts.append(f"ends {_duration(trail)} after it")
        if self.events_outside:
            parts.append(
                f"{self.events_outside} of {self.events_total} annotations lie outside the "
                "night (kept)"
            )
        kind = "partial overlap" if self.partial else "overlap"
        return f"{kind}: {'; '.join(parts)}; {self.spans(with_source)}"


def format_utc(when: datetime) -> str:
    """``2026-01-05T22:30:00Z``."""
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# -- reading: the common part --------------------------------------------------------------
@dataclass
class _Events:
    """What a format reader returns: events on the file's time base, and its start."""

    onset_s: np.ndarray
    duration_s: np.ndarray
    original: list[str]
    side_text: list[str | None]
    where: list[str]  # "line 7", "event 12", ... for messages
    start_utc: datetime | None = None
    start_local: datetime | None = None
    start_clock: time | None = None
    start_source: str = ""
    duration_total_s: float | None = None
    absolute_onsets: str | None = None  # "date-time"/"clock time" when onsets carry a clock


def read_reference(
    path: str | os.PathLike,
    *,
    format: str = "auto",
    offset_s: float = 0.0,
    start_utc: datetime | str | None = None,
    label_map: dict[str, str] | None = None,
    on_unknown: str = "error",
    default_label: str | None = None,
    timezone: str | None = None,
) -> Reference:
    """Read a reference scoring (PSG events) and map its labels to pmld's.

    Parameters
    ----------
    path : path
        A BIDS ``events.tsv``, a CSV/TSV, an EDF+ file or an NSRR XML file.
    format : {'auto', 'bids', 'csv', 'edf', 'nsrr'}
        ``auto`` goes by the content and the name.
    offset_s : float
        Seconds added to every onset: reference time + offset = night time.
    start_utc : datetime or str, optional
        Absolute start of the reference's time base (ISO 8601 with a UTC offset),
        overriding the file's; refused for files whose onsets are clock times or
        date-times (they carry their own clock; shift them with ``offset_s``).
    label_map : dict, optional
        ``{file label: pmld label or 'ignore'}``, case-insensitive, before the built-in
        table (:data:`LABEL_TABLE`).
    on_unknown : {'error', 'ignore'}
        Labels neither the map nor the table knows: raise an :class:`InputError`
        listing them, or drop them and count them in :attr:`Reference.unknown`.
    default_label : str, optional
        The label of every row of a CSV that has no label column (e.g. ``'lm'`` for a
        list of leg movements ``onset_s, offset_s, side``).
    timezone : str, optional
        IANA time zone of the file's wall-clock times without a UTC offset (EDF header,
        NSRR ClockTime, naive date-times); default: the night's, when aligned.

    Raises
    ------
    InputError
        Missing, unreadable, truncated or malformed file (one line, naming the file and
        the line or event), onsets that are not numbers, negative durations, unknown
        labels (``on_unknown='error'``), a file without events.
    UsageError
        Invalid arguments.
    """
    source = Path(path)
    if format not in ("auto", *FORMATS):
        raise UsageError(f"unknown reference format {format!r}; one of auto, {', '.join(FORMATS)}")
    if on_unknown not in ("error", "ignore"):
        raise UsageError(f"on_unknown must be 'error' or 'ignore', got {on_unknown!r}")
    try:
        offset_s = float(offset_s)
    except (TypeError, ValueError):
        raise UsageError(f"offset must be a number of seconds, got {offset_s!r}") from None
    if not math.isfinite(offset_s):
        raise UsageError(f"offset must be a finite number of seconds, got {offset_s}")
    user_start = as_utc(start_utc) if start_utc is not None else None
    if timezone is not None:
        check_timezone(timezone)
    mapping = _normalise_label_map(label_map)
    if default_label is not None:
        default_label = _normalise_label_map({"row": default_label})["row"]
    head = read_head(source, 4096)
    if not head:
        raise InputError("is empty", path=source)
    kind = _detect_format(source, head) if format == "auto" else format
    try:
        if kind == "edf":
            events = _read_edf(source)
        elif kind == "nsrr":
            events = _read_nsrr(source)
        else:
            # BIDS by name or by request: seconds only; a TSV that merely has onset and
            # duration columns may carry clock times
            strict = format == "bids" or source.name.lower().endswith("events.tsv")
            events = _read_table(
                source, bids=kind == "bids", strict=strict, default_label=default_label
            )
            if kind == "bids" and events.absolute_onsets:
                kind = "csv"
    except PmldError as error:
        if error.path is None:
            raise type(error)(str(error), path=source) from None
        raise
    if user_start is not None:
        if events.absolute_onsets:
            raise UsageError(
                f"{source}: its onsets are {events.absolute_onsets}s, which carry their own "
                "clock; shift them with --offset (offset_s) instead of giving a start"
            )
        events.start_utc, events.start_local, events.start_clock = user_start, None, None
        events.start_source = "given by the user"
    reference = _build(source, kind, events, offset_s, mapping, on_unknown)
    reference.timezone = timezone
    return reference


def _detect_format(source: Path, head: bytes) -> str:
    suffix = source.suffix.lower()
    if head.startswith(b"0       ") or head.startswith(b"\xffBIOSEMI"):
        return "edf"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<") or suffix == ".xml":
        return "nsrr"
    if suffix in (".edf", ".bdf", ".rec"):
        return "edf"
    if b"\0" in head:
        raise FormatError(
            "is binary and neither EDF+ nor XML: give --format (bids, csv, edf, nsrr)",
            path=source,
        )
    first = text.decode("utf-8", "replace").splitlines()[0] if text else ""
    columns = [_column_key(c) for c in first.split("\t")]
    if source.name.lower().endswith("events.tsv") or (
        "\t" in first and "onset" in columns and "duration" in columns
    ):
        return "bids"
    return "csv"


def _build(
    source: Path,
    kind: str,
    events: _Events,
    offset_s: float,
    mapping: dict[str, str],
    on_unknown: str,
) -> Reference:
    n = len(events.original)
    if n == 0:
        raise InputError("contains no events", path=source)
    onset = np.asarray(events.onset_s, dtype=np.float64)
    duration = np.asarray(events.duration_s, dtype=np.float64)
    bad = ~np.isfinite(onset)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{events.where[row]}: the onset is not a number", path=source)
    bad = ~np.isfinite(duration) | (duration < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{events.where[row]}: the duration {duration[row]:g} is negative or not a number",
            path=source,
        )
    codes, uniques = pd.factorize(pd.Series(events.original, dtype=object))
    labels, sides, stages = [], [], []
    for text in uniques:
        label, side, stage = _classify(str(text), mapping)
        labels.append(label)
        sides.append(side)
        stages.append(stage)
    counts = np.bincount(codes, minlength=len(uniques))
    unknown = {
        str(uniques[k]): int(counts[k]) for k in range(len(uniques)) if labels[k] is None
    }
    if unknown and on_unknown == "error":
        listed = sorted(unknown.items(), key=lambda item: (-item[1], item[0]))
        shown = ", ".join(f"{text!r} ({count})" for text, count in listed[:5])
        more = f" and {len(listed) - 5} more" if len(listed) > 5 else ""
        raise InputError(
            f"{len(listed)} label{'s' if len(listed) != 1 else ''} pmld does not know: "
            f"{shown}{more}; {_ACTION_HINT}",
            path=source,
        )
    ignored = {
        str(uniques[k]): int(counts[k]) for k in range(len(uniques)) if labels[k] == IGNORE
    }
    row_label = np.array(labels, dtype=object)[codes]
    row_side = np.array(sides, dtype=object)[codes]
    # a side or channel column overrides the label's side (leg movements only)
    side_codes, side_texts = pd.factorize(pd.Series(events.side_text, dtype=object))
    if len(side_texts):
        column_side = np.array([*(_side_of(t) for t in side_texts), "unknown"], dtype=object)
        from_column = column_side[side_codes]  # code -1 (no value) -> "unknown"
        use = (row_label == "lm") & (from_column != "unknown")
        row_side[use] = from_column[use]
    row_side[row_label != "lm"] = "unknown"
    onset = onset + offset_s
    stage_rows = np.array([stages[c] is not None for c in codes], dtype=bool)
    hypnogram = pd.DataFrame(
        {
            "onset_s": onset[stage_rows],
            "duration_s": duration[stage_rows],
            "stage": [stages[c] for c in codes[stage_rows]],
            "original": [str(uniques[c]) for c in codes[stage_rows]],
        }
    )
    hypnogram = hypnogram.sort_values("onset_s", kind="stable").reset_index(drop=True)
    keep = np.array([label not in (None, IGNORE) for label in row_label], dtype=bool)
    frame = pd.DataFrame(
        {
            "onset_s": onset[keep],
            "duration_s": duration[keep],
            "label": row_label[keep],
            "side": row_side[keep],
            "source": SOURCE,
            "original": np.asarray(events.original, dtype=object)[keep],
        }
    )
    frame = _merge_sleep_wake(frame)
    return Reference(
        path=str(source),
        format=kind,
        start_utc=events.start_utc,
        annotations=frame,
        unknown=unknown,
        sha256=file_sha256(source),
        start_local=events.start_local,
        start_clock=events.start_clock,
        start_source=events.start_source,
        duration_s=events.duration_total_s,
        offset_s=offset_s,
        ignored=ignored,
        hypnogram=hypnogram if len(hypnogram) else _empty_hypnogram(),
        n_events=n,
    )


def _merge_sleep_wake(frame: pd.DataFrame) -> pd.DataFrame:
    """Join consecutive (or overlapping) sleep spans, and wake spans, into one span each."""
    frame = frame.sort_values("onset_s", kind="stable").reset_index(drop=True)
    spans = frame["label"].isin(["sleep", "wake"]).to_numpy()
    if not spans.any():
        return frame if len(frame) else _empty_reference_annotations()
    merged = []
    for label in ("sleep", "wake"):
        rows = frame[frame["label"] == label]
        if not len(rows):
            continue
        start = rows["onset_s"].to_numpy()
        end = start + rows["duration_s"].to_numpy()
        reach = np.maximum.accumulate(end)
        new = np.ones(len(rows), dtype=bool)
        new[1:] = start[1:] > reach[:-1] + MERGE_TOLERANCE_S
        group = np.cumsum(new) - 1
        originals = rows["original"].to_numpy()
        for g in range(int(group[-1]) + 1):
            members = group == g
            lo = float(start[members][0])
            hi = float(reach[members][-1])
            names = ", ".join(dict.fromkeys(str(o) for o in originals[members]))
            merged.append((lo, hi - lo, label, "unknown", SOURCE, names))
    spans_frame = pd.DataFrame(merged, columns=list(REFERENCE_COLUMNS))
    out = pd.concat([frame[~spans], spans_frame], ignore_index=True)
    out["onset_s"] = out["onset_s"].astype("float64")
    out["duration_s"] = out["duration_s"].astype("float64")
    return out.sort_values("onset_s", kind="stable").reset_index(drop=True)


# -- CSV / TSV / BIDS ----------------------------------------------------------------------
_ONSET_COLUMNS = (
    "onset", "onset_s", "onset_sec", "onset_time", "start", "start_s", "start_sec",
    "start_time", "starttime", "begin", "begin_s", "time", "time_s", "timestamp", "clock_time",
)
_DURATION_COLUMNS = ("duration", "duration_s", "duration_sec", "dur", "length", "length_s")
_END_COLUMNS = (
    "end", "end_s", "end_time", "endtime", "stop", "stop_s", "stop_time", "offset", "offset_s",
    "offset_time",
)
_LABEL_COLUMNS = (
    "trial_type", "label", "event", "event_type", "event_name", "type", "description",
    "annotation", "name", "event_concept", "eventconcept",
)
_SIDE_COLUMNS = ("side", "channel", "leg", "limb", "location", "signal_location")
_NA = {"", "n/a", "na", "nan", "none", "null", "-"}
_CLOCK = re.compile(r"^(\d{1,2})[:.](\d{2})(?:[:.](\d{2}(?:[.,]\d+)?))?$")


def _column_key(name: str) -> str:
    """'Duration[s]' -> 'duration', 'Start Time' -> 'start_time', 'Onset (s)' -> 'onset'."""
    text = re.sub(r"[\[(].*?[\])]", "", str(name)).strip().lower()
    return re.sub(r"[\W]+", "_", text).strip("_")


def _pick(columns: list[str], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in columns:
            return columns.index(name)
    return None


def _decode_text(source: Path) -> str:
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=source) from None
    if b"\0" in data:
        raise FormatError("is not a text file (it holds NUL bytes)", path=source)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _read_table(
    source: Path, *, bids: bool, strict: bool, default_label: str | None
) -> _Events:
    """Events from a BIDS events.tsv (``bids``; ``strict``: numeric onsets only) or a
    generic CSV/TSV."""
    text = _decode_text(source)
    lines = text.splitlines()
    header = None
    onset_names = ("onset",) if strict else _ONSET_COLUMNS
    # the header: an onset column and a label, duration or end column (a preamble line
    # such as "Start Time:<tab>22:30:00" has no second one)
    others = (*_LABEL_COLUMNS, *_DURATION_COLUMNS, *_END_COLUMNS)
    for number, line in enumerate(lines[:60]):
        for delimiter in sorted(("\t", ",", ";"), key=line.count, reverse=True):
            cells = next(csv.reader([line], delimiter=delimiter), [])
            columns = [_column_key(c) for c in cells]
            if _pick(columns, onset_names) is not None and _pick(columns, others) is not None:
                header = (number, delimiter, columns)
                break
        if header:
            break
    if header is None:
        first = lines[0][:80] if lines else ""
        if bids:
            raise InputError(
                f"has no 'onset' column (BIDS events.tsv needs onset, duration; first line "
                f"{first!r})"
            )
        raise InputError(
            f"has no onset column (one of onset, start, time, ...; first line {first!r})"
        )
    number, delimiter, columns = header
    onset_col = _pick(columns, onset_names)
    duration_col = _pick(columns, ("duration",) if bids else _DURATION_COLUMNS)
    end_col = None if bids else _pick(columns, _END_COLUMNS)
    if bids and duration_col is None:
        raise InputError("has no 'duration' column (BIDS events.tsv needs onset, duration)")
    label_col = _pick(columns, _LABEL_COLUMNS)
    side_col = _pick(columns, _SIDE_COLUMNS)
    if label_col is None and default_label is None:
        raise InputError(
            f"has no label column (one of {', '.join(_LABEL_COLUMNS[:5])}, ...; it has "
            f"{', '.join(columns)}); for a list of one kind of event give its label "
            "(--label lm / default_label='lm')"
        )
    width = len(columns)
    rows, where = [], []
    reader = csv.reader(io.StringIO("\n".join(lines[number + 1 :])), delimiter=delimiter)
    for row in reader:
        line = number + 1 + reader.line_num
        if len(row) == width:
            rows.append(row)
            where.append(f"line {line}")
            continue
        if not "".join(row).strip():
            continue
        if len(row) < width or "".join(row[width:]).strip():
            raise InputError(
                f"line {line}: {len(row)} fields where the header has {width} (truncated or "
                "malformed)"
            )
        rows.append(row[:width])
        where.append(f"line {line}")

    def column(index: int | None) -> list[str]:
        return [row[index].strip() for row in rows] if index is not None else []

    onset_text = column(onset_col)
    events = _Events(
        onset_s=np.zeros(0),
        duration_s=np.zeros(0),
        original=[],
        side_text=[],
        where=where,
    )
    comma = delimiter != ","
    onset, end_kind = _parse_times(
        onset_text, where, "onset", events, numeric_only=strict, decimal_comma=comma
    )
    if duration_col is not None:
        duration = _parse_seconds(
            column(duration_col), where, "duration", na_zero=True, decimal_comma=comma
        )
    elif end_col is not None:
        end = _parse_end(column(end_col), onset_text, onset, where, end_kind, comma)
        duration = end - onset
        negative = duration < 0
        if negative.any():
            row = int(np.flatnonzero(negative)[0])
            raise InputError(f"{where[row]}: the end is before the onset")
    else:
        duration = np.zeros(len(rows))
    if label_col is not None:
        original = [cell if cell else "(empty)" for cell in column(label_col)]
    else:
        original = [default_label] * len(rows)
    events.onset_s = onset
    events.duration_s = duration
    events.original = original
    events.side_text = column(side_col) if side_col is not None else [None] * len(rows)
    return events


def _parse_seconds(
    values: list[str],
    where: list[str],
    what: str,
    *,
    na_zero: bool,
    decimal_comma: bool = False,
    kind_hint: str = "",
) -> np.ndarray:
    """Numbers of seconds (vectorised); ``n/a``/empty is 0 when ``na_zero``."""
    text = pd.Series(values, dtype=object)
    if decimal_comma:  # "11,5" in a semicolon- or tab-separated European export
        text = text.str.replace(r"^([-+]?\d*),(\d+)$", r"\1.\2", regex=True)
    missing = text.str.lower().isin(_NA).to_numpy()
    if missing.any() and not na_zero:
        k = int(np.flatnonzero(missing)[0])
        raise InputError(f"{where[k]}: the {what} is {values[k] or 'empty'!r}, not a number")
    numbers = np.array(pd.to_numeric(text.where(~missing, "0"), errors="coerce"), np.float64)
    bad = ~np.isfinite(numbers)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{where[k]}: the {what} {values[k]!r} is not a number{kind_hint}")
    numbers[missing] = 0.0
    return numbers


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _parse_clock(value: str) -> float | None:
    match = _CLOCK.match(value)
    if not match:
        return None
    hours, minutes = int(match[1]), int(match[2])
    seconds = float(match[3].replace(",", ".")) if match[3] else 0.0  # 23:10:05,250 too
    if hours > 23 or minutes > 59 or seconds >= 61:
        return None
    return hours * 3600 + minutes * 60 + seconds


def _parse_datetime(value: str) -> datetime | None:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _parse_times(
    values: list[str],
    where: list[str],
    what: str,
    events: _Events,
    *,
    numeric_only: bool,
    decimal_comma: bool = False,
) -> tuple[np.ndarray, str]:
    """Onsets as seconds on the file's time base, and the kind (seconds/clock/datetime).

    Sets the time base start on ``events`` for clock times and date-times.
    """
    if not values:
        return np.zeros(0), "seconds"
    for k, value in enumerate(values):
        if value.lower() in _NA:
            raise InputError(f"{where[k]}: the {what} is {value or 'empty'!r}, not a time")
    # the first onset says which kind they all are
    like = f" like the first (on {where[0]})"
    if numeric_only or _is_number(values[0]):
        hint = "" if numeric_only else f" of seconds{like}"
        seconds = _parse_seconds(
            values, where, what, na_zero=False, decimal_comma=decimal_comma, kind_hint=hint
        )
        return seconds, "seconds"
    if _parse_clock(values[0]) is not None:
        clocks = [_parse_clock(v) for v in values]
        for k, clock in enumerate(clocks):
            if clock is None:
                raise InputError(f"{where[k]}: the {what} {values[k]!r} is not a clock time{like}")
        of_day = np.asarray(clocks, dtype=np.float64)
        anchor = _clock_anchor(of_day)
        events.start_clock = (datetime.min + timedelta(seconds=anchor)).time()
        events.start_source = "the file's clock times"
        events.absolute_onsets = "clock time"
        return np.mod(of_day - anchor, 86400.0), "clock"
    stamps = []
    for k, value in enumerate(values):
        stamp = _parse_datetime(value)
        if stamp is None:
            raise InputError(
                f"{where[k]}: the {what} {value!r} is not seconds, a clock time (HH:MM:SS) or "
                "an ISO 8601 date-time" + (f"{like}" if k else "")
            )
        stamps.append(stamp)
    aware = {s.tzinfo is not None for s in stamps}
    if len(aware) > 1:
        raise InputError(
            f"the {what}s mix date-times with and without a UTC offset"
        )
    events.absolute_onsets = "date-time"
    if aware == {True}:
        utc = [s.astimezone(UTC) for s in stamps]
        base = min(utc)
        events.start_utc = base
        events.start_source = "the file's date-times"
        return np.array([(s - base).total_seconds() for s in utc]), "datetime"
    base = min(stamps)
    events.start_local = base
    events.start_source = "the file's date-times (no UTC offset)"
    return np.array([(s - base).total_seconds() for s in stamps]), "datetime"


def _clock_anchor(of_day: np.ndarray) -> float:
    """The recording's start as a time of day: just after the longest circular gap.

    A night crosses midnight; sorting times of day and cutting at the largest gap
    between consecutive ones (going round the clock) finds where the scoring begins,
    whatever the order of the rows.
    """
    ordered = np.unique(of_day)
    if ordered.size == 1:
        return float(ordered[0])
    gaps = np.diff(np.concatenate([ordered, [ordered[0] + 86400.0]]))
    return float(ordered[(int(np.argmax(gaps)) + 1) % ordered.size])


def _parse_end(
    values: list[str],
    onset_text: list[str],
    onset: np.ndarray,
    where: list[str],
    kind: str,
    decimal_comma: bool = False,
) -> np.ndarray:
    for k, value in enumerate(values):
        if value.lower() in _NA:
            raise InputError(f"{where[k]}: the end is {value or 'empty'!r}, not a time")
    if kind == "seconds":
        return _parse_seconds(values, where, "end", na_zero=False, decimal_comma=decimal_comma)
    out = np.empty(len(values))
    for k, value in enumerate(values):
        if kind == "clock":
            end, start = _parse_clock(value), _parse_clock(onset_text[k])
            if end is None:
                raise InputError(
                    f"{where[k]}: the end {value!r} is not a clock time like the onset"
                )
            out[k] = onset[k] + (end - start) % 86400.0
        else:
            end, start = _parse_datetime(value), _parse_datetime(onset_text[k])
            if end is None or (end.tzinfo is None) != (start.tzinfo is None):
                raise InputError(
                    f"{where[k]}: the end {value!r} is not a date-time like the onset"
                )
            out[k] = onset[k] + (end - start).total_seconds()
    return out


# -- EDF+ ----------------------------------------------------------------------------------
def _read_edf(source: Path) -> _Events:
    try:
        import edfio
    except ImportError:
        raise UsageError(
            'reading EDF+ needs the edfio package: pip install "pmld[research]"'
        ) from None
    with open(source, "rb") as handle:
        bdf = handle.read(8) == b"\xffBIOSEMI"
    reader = edfio.read_bdf if bdf else edfio.read_edf
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            edf = reader(source, lazy_load_data=True)
            annotations = edf.annotations
        except (ValueError, IndexError, KeyError, EOFError, OSError, UnicodeDecodeError,
                struct.error) as exc:
            raise FormatError(
                f"is not a readable EDF+ file ({_one_line(exc)})", path=source
            ) from None
    for warning in caught:
        message = str(warning.message)
        if "truncated" in message.lower() or "header indicates" in message.lower():
            raise FormatError(f"is truncated ({_one_line(message)})", path=source)
    if not str(edf.reserved).strip().startswith(("EDF+", "BDF+")):
        raise FormatError(
            "is a plain EDF file without an 'EDF Annotations' signal: reference events come "
            "in EDF+ (EDF+C or EDF+D) files",
            path=source,
        )
    events = _Events(
        onset_s=np.array([a.onset for a in annotations], dtype=np.float64),
        duration_s=np.array(
            [0.0 if a.duration is None else a.duration for a in annotations], dtype=np.float64
        ),
        original=[a.text.strip() or "(empty)" for a in annotations],
        side_text=[None] * len(annotations),
        where=[f"annotation {k + 1}" for k in range(len(annotations))],
        start_source="the EDF header",
    )
    try:
        events.duration_total_s = float(edf.duration) or None
    except (ValueError, TypeError, ZeroDivisionError):
        events.duration_total_s = None
    try:
        events.start_local = edf.startdatetime.replace(tzinfo=None)
    except edfio.AnonymizedDateError:
        start_time = edf.starttime
        if start_time != time(0, 0):
            events.start_clock = start_time.replace(tzinfo=None)
            events.start_source = "the EDF header (date anonymised)"
        else:
            events.start_source = ""
    except (ValueError, TypeError) as exc:
        raise FormatError(
            f"has an unreadable start date or time ({_one_line(exc)})", path=source
        ) from None
    return events


def _one_line(exc: BaseException | str) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- NSRR XML ------------------------------------------------------------------------------
class _RefusedXml(Exception):
    pass


def _parse_xml_safely(data: bytes):
    """An ElementTree from XML bytes; DTDs, entities and external references refused."""
    import xml.etree.ElementTree as ElementTree
    from xml.parsers import expat

    parser = expat.ParserCreate()
    builder = ElementTree.TreeBuilder()

    def refuse(*_args):
        raise _RefusedXml("it declares a DTD or entities, which pmld does not read")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.buffer_text = True
    parser.Parse(data, True)
    return builder.close()


def _read_nsrr(source: Path) -> _Events:
    data = source.read_bytes()
    try:
        root = _parse_xml_safely(data)
    except _RefusedXml as exc:
        raise FormatError(f"is refused: {exc}", path=source) from None
    except Exception as exc:  # expat.ExpatError and its relatives
        from xml.parsers.expat import ExpatError

        if not isinstance(exc, ExpatError):
            raise
        raise FormatError(
            f"is not well-formed XML (truncated or corrupt: {_one_line(exc)})", path=source
        ) from None
    tag = _local(root.tag)
    if tag != "PSGAnnotation":
        raise FormatError(
            f"is XML but not an NSRR annotation file (root element <{tag}>, expected "
            "<PSGAnnotation>)",
            path=source,
        )
    container = next((c for c in root if _local(c.tag) == "ScoredEvents"), None)
    if container is None:
        raise FormatError("has no <ScoredEvents> element", path=source)
    onsets, durations, originals, sides, where = [], [], [], [], []
    events = _Events(np.zeros(0), np.zeros(0), [], [], [])
    for number, element in enumerate(
        (e for e in container if _local(e.tag) == "ScoredEvent"), start=1
    ):
        fields = {_local(child.tag): (child.text or "").strip() for child in element}
        concept = fields.get("EventConcept", "")
        label = f"event {number}" + (f" ({concept})" if concept else "")
        if _norm(concept) == "recording start time":
            clock = fields.get("ClockTime", "")
            _nsrr_start(clock, events, label, source)
            total = fields.get("Duration", "")
            if total and _is_number(total) and float(total) > 0:
                events.duration_total_s = float(total)
            continue
        if not concept:
            raise InputError(f"{label}: no <EventConcept>", path=source)
        for name in ("Start", "Duration"):
            value = fields.get(name)
            if value is None:
                raise InputError(f"{label}: no <{name}>", path=source)
            if not _is_number(value):
                raise InputError(f"{label}: <{name}> {value!r} is not a number", path=source)
        onsets.append(float(fields["Start"]))
        durations.append(float(fields["Duration"]))
        originals.append(concept)
        sides.append(fields.get("SignalLocation") or None)
        where.append(label)
    events.onset_s = np.asarray(onsets, dtype=np.float64)
    events.duration_s = np.asarray(durations, dtype=np.float64)
    events.original = originals
    events.side_text = sides
    events.where = where
    return events


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _nsrr_start(clock: str, events: _Events, label: str, source: Path) -> None:
    """``ClockTime`` of ``Recording Start Time``: 'dd.mm.yy HH.MM.SS', date often blank."""
    text = clock.strip()
    if not text:
        return
    stamp = _parse_datetime(text)
    if stamp is not None:
        if stamp.tzinfo is not None:
            events.start_utc = stamp.astimezone(UTC)
        else:
            events.start_local = stamp
        events.start_source = "the XML's Recording Start Time"
        return
    parts = text.split()
    seconds = _parse_clock(parts[-1])
    if seconds is None:
        raise InputError(f"{label}: ClockTime {clock!r} is not a time of day", path=source)
    of_day = (datetime.min + timedelta(seconds=seconds)).time()
    day = _nsrr_date(parts[0]) if len(parts) > 1 else None
    events.start_source = "the XML's Recording Start Time"
    if day is not None:
        events.start_local = datetime.combine(day, of_day)
    else:
        events.start_clock = of_day


def _nsrr_date(text: str) -> date | None:
    match = re.match(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{2,4})$", text)
    if not match:
        return None
    day, month, year = int(match[1]), int(match[2]), int(match[3])
    if year < 100:
        year += 2000 if year < 85 else 1900  # the EDF convention
    try:
        return date(year, month, day)
    except ValueError:
        return None  # 00.00.00: de-identified


# -- alignment -----------------------------------------------------------------------------
def reference_overlap(reference: Reference, night: Night) -> ReferenceOverlap:
    """Where the reference lies on the night's clock, and how much of it overlaps."""
    start, source = reference.start_for(night)
    shift = 0.0 if start is None else (start - night.start_utc).total_seconds()
    frame = reference.annotations
    onset = frame["onset_s"].to_numpy() + shift
    end = onset + frame["duration_s"].to_numpy()
    bounds_lo, bounds_hi = [], []
    if len(frame):
        bounds_lo.append(float(onset.min()))
        bounds_hi.append(float(end.max()))
    if reference.duration_s:
        bounds_lo.append(reference.offset_s + shift)
        bounds_hi.append(reference.offset_s + shift + reference.duration_s)
    if not bounds_lo:
        bounds_lo = bounds_hi = [reference.offset_s + shift]
    lo, hi = min(bounds_lo), max(bounds_hi)
    night_s = night.duration_s
    outside = int(np.sum((end < 0) | (onset > night_s)))
    return ReferenceOverlap(
        reference_start_utc=night.start_utc + timedelta(seconds=lo),
        reference_end_utc=night.start_utc + timedelta(seconds=hi),
        night_start_utc=night.start_utc,
        night_end_utc=night.end_utc,
        overlap_s=max(0.0, min(hi, night_s) - max(lo, 0.0)),
        shift_s=shift,
        start_source=source,
        events_total=len(frame),
        events_outside=outside,
        start_known=start is not None,
    )


def align_reference(reference: Reference, night: Night) -> pd.DataFrame:
    """The reference's annotations on the night's clock (seconds from ``night.start_utc``).

    ``night`` is a :class:`~pmld.night.Night` or any object with its clock attributes
    ``start_utc``, ``end_utc``, ``duration_s``, ``timezone`` and ``start_local`` (e.g. a
    summary's night clock); the same holds for :func:`reference_overlap` and
    :meth:`Reference.start_for`.

    Nothing is clipped: annotations before or after the night keep their times (negative
    onsets, onsets past the end), and every label is kept. The overlap report is in
    ``aligned.attrs["overlap"]`` (a dict, see :class:`ReferenceOverlap`).

    Raises
    ------
    InputError
        The reference has no annotations, or it does not overlap the night at all (the
        message gives both spans in UTC).
    """
    if not len(reference.annotations):
        dropped = sum(reference.ignored.values()) + sum(reference.unknown.values())
        raise InputError(
            f"has no annotations to align (all {dropped} events were ignored)",
            path=reference.path,
        )
    overlap = reference_overlap(reference, night)
    if not overlap.overlaps:
        raise InputError(
            f"does not overlap the night: {overlap.spans()}; shift it with --offset "
            "(offset_s) or give its start with --reference-start (start_utc)",
            path=reference.path,
        )
    aligned = reference.annotations.copy()
    aligned["onset_s"] = aligned["onset_s"] + overlap.shift_s
    aligned = aligned.reset_index(drop=True)
    aligned.attrs["overlap"] = overlap.to_dict()
    return aligned


def attach_reference(night: Night, reference: Reference, *, replace: bool = True) -> Night:
    """A new night with the reference's annotations (source ``'reference'``) attached.

    The night's other annotations are kept; ``replace=True`` drops annotations of an
    earlier reference (source ``'reference'``) first. The sensors are shared with
    ``night``, not copied. ``meta`` records the reference file, format, SHA-256 and the
    shift applied (``reference_*`` keys).
    """
    aligned = align_reference(reference, night)
    keep = night.annotations
    if replace:
        keep = keep[keep["source"] != SOURCE]
    annotations = pd.concat([keep, aligned[list(ANNOTATION_COLUMNS)]], ignore_index=True)
    overlap = aligned.attrs["overlap"]
    meta = {
        **night.meta,
        "reference_file": str(reference.path),
        "reference_format": reference.format,
        "reference_sha256": reference.sha256,
        "reference_shift_s": float(overlap["shift_s"]),
        "reference_offset_s": float(reference.offset_s),
    }
    return Night(list(night.sensors), timezone=night.timezone, annotations=annotations, meta=meta)


def reference_lms(
    reference_or_aligned: Reference | pd.DataFrame, night: Night | None = None
) -> pd.DataFrame:
    """The reference's leg movements as ``onset_s, offset_s, side`` for scoring.

    From a :class:`Reference` with a ``night``: on the night's clock; without one: on
    the reference's time base. From a DataFrame (aligned annotations, or a night's
    annotation table): its rows of source ``'reference'``, times as they are (``night``
    is not used). ``side`` is ``left``, ``right`` or ``unknown`` (a
    bilateral reference LM is ``unknown``: pmld merges monolateral LMs itself).
    """
    if isinstance(reference_or_aligned, Reference):
        if night is not None:
            frame = align_reference(reference_or_aligned, night)
        else:
            frame = reference_or_aligned.annotations
    elif isinstance(reference_or_aligned, pd.DataFrame):
        frame = reference_or_aligned
    else:
        raise UsageError(
            "reference_lms takes a Reference or an annotation DataFrame, got "
            f"{type(reference_or_aligned).__name__}"
        )
    rows = frame[frame["label"] == "lm"]
    if "source" in rows.columns:
        rows = rows[rows["source"] == SOURCE]
    onset = rows["onset_s"].to_numpy(dtype=np.float64)
    side = rows["side"].astype(str).str.lower().to_numpy(dtype=object)
    out = pd.DataFrame(
        {
            "onset_s": onset,
            "offset_s": onset + rows["duration_s"].to_numpy(dtype=np.float64),
            "side": np.where(np.isin(side, ["left", "right"]), side, "unknown").astype(object),
        }
    )
    return out.sort_values(["onset_s", "offset_s"], kind="stable").reset_index(drop=True)


# -- finding a night's reference -----------------------------------------------------------
def _night_stem(night_path: Path) -> str:
    name = night_path.name
    for suffix in (".plm.h5", ".h5.journal", ".h5", ".hdf5"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return night_path.stem


def find_reference(night_path: str | os.PathLike, reference_dir: str | os.PathLike) -> Path:
    """The reference file of a night, matched by name.

    ``night.h5`` or ``night.plm.h5`` matches ``night.tsv``, ``night.csv``,
    ``night.txt``, ``night.edf``, ``night.bdf`` or ``night.xml`` in ``reference_dir``
    first; failing that, the same stem followed by a suffix beginning with ``_``, ``-``
    or ``.`` (``night_events.tsv``, ``night-nsrr.xml``, ``night.scoring.csv``). Names
    compare case-insensitively.

    Raises
    ------
    InputError
        No such directory, no match, or more than one match at the same level.
    """
    folder = Path(reference_dir)
    if not folder.is_dir():
        raise InputError("is not a directory of reference files", path=folder)
    stem = _night_stem(Path(night_path)).lower()
    exact, suffixed = [], []
    for entry in sorted(folder.iterdir()):
        name = entry.name.lower()
        if not entry.is_file() or not name.endswith(REFERENCE_SUFFIXES):
            continue
        base = name[: name.rindex(".")]
        if base == stem:
            exact.append(entry)
        elif base.startswith(stem) and base[len(stem)] in "_-.":
            suffixed.append(entry)
    for matches in (exact, suffixed):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(m.name for m in matches)
            raise InputError(
                f"{len(matches)} reference files match night {Path(night_path).name}: {names}; "
                "name the reference file instead of the directory",
                path=folder,
            )
    raise InputError(
        f"no reference file for night {Path(night_path).name} (looked for {stem}"
        f"{{{','.join(REFERENCE_SUFFIXES)}}} and {stem}_*/-*/.* with those endings)",
        path=folder,
    )


def summarize_annotations(frame: pd.DataFrame) -> list[str]:
    """One line per label: counts, sides of LMs, total hours of sleep/wake spans."""
    lines = []
    order = {name: i for i, name in enumerate(ANNOTATION_LABELS)}
    for label in sorted(frame["label"].unique(), key=lambda x: (order.get(x, 99), x)):
        rows = frame[frame["label"] == label]
        text = f"{label:<11s} {len(rows):6d}"
        if label == "lm":
            sides = Counter(rows["side"])
            text += " (" + ", ".join(f"{k} {sides[k]}" for k in sorted(sides)) + ")"
        elif label in ("sleep", "wake"):
            text += f" span{'s' if len(rows) != 1 else ''}, {rows['duration_s'].sum() / 3600:.2f} h"
        elif label in ("apnea", "hypopnea", "arousal"):
            kinds = Counter(rows["original"]) if "original" in rows else Counter()
            if len(kinds) > 1:
                text += " (" + ", ".join(f"{k} {v}" for k, v in kinds.most_common(4)) + ")"
        lines.append(text)
    return lines
