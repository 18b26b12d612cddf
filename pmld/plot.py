"""Figures and reports: the night report of a summary file, and the cohort report.

``write_night_report(summary, "night.html")`` draws one night from its pmld-summary
file alone (``pmld analyze`` writes it; docs/summary-format.md): the whole night on
the night's local clock, a zoom on a representative PLM series, the IMI histograms,
the indices against the clinical cut-off and severity bands, the quality flags,
calibration, sleep source, parameters and provenance. ``write_cohort_report(table,
"cohort.html")`` draws a cohort from the table ``pmld batch`` writes. The command is
``pmld report``; docs/report.md describes every panel.

Formats
-------
``html``
    One self-contained file: figures inline as base64 PNG, inline CSS, no script and no
    external address, so it can be mailed or archived as it is.
``png``
    One multi-panel figure.
``pdf``
    The same figure on page 1, then the indices, quality, sleep and calibration, and
    the full parameters and provenance as text pages.

Figures are drawn with matplotlib's object interface (``matplotlib.figure.Figure`` on
the Agg canvas, the PDF backend for PDF files): no pyplot, no GUI backend, nothing
global is changed. matplotlib is imported when a figure is drawn; without it the
reports stop with one line naming ``pip install "pmld[research]"``.

References
----------
The rules behind the indices, histograms and cut-offs:

.. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards for
   recording and scoring leg movements in polysomnograms developed by a joint task
   force from the IRLSSG", Sleep Medicine 26 (2016) 86-95.
.. [2] R. B. Berry et al., "The AASM Manual for the Scoring of Sleep and Associated
   Events", version 2.x, American Academy of Sleep Medicine.
.. [3] R. Ferri et al., "Computer-assisted detection of nocturnal leg motor activity in
   patients with restless legs syndrome and periodic leg movements during sleep",
   Sleep 29 (2006) 759-769.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import math
import os
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from .errors import FormatError, InputError, UsageError
from .io._files import write_atomic

__all__ = [
    "ADULT_CUTOFF_PER_H",
    "LM_CLASSES",
    "REPORT_FORMATS",
    "SEVERITY_BANDS",
    "cohort_figure",
    "cohort_html",
    "default_night_report",
    "input_kind",
    "lm_classes",
    "night_figure",
    "night_html",
    "read_cohort_table",
    "report_format",
    "representative_series",
    "severity_band",
    "write_cohort_report",
    "write_night_report",
    "write_report",
]

#: The formats a report is written in, chosen by the output's extension.
REPORT_FORMATS = ("html", "png", "pdf")
_SUFFIXES = {".html": "html", ".htm": "html", ".png": "png", ".pdf": "pdf"}

#: PLMS index above which an adult's night is abnormal, per hour of sleep (AASM [2]_;
#: 5/h is used for children).
ADULT_CUTOFF_PER_H = 15.0

#: Severity bands of the PLMS index used in the literature: (low, high, label), low
#: inclusive. The labels are those the summary's ``severity_band`` uses.
SEVERITY_BANDS = (
    (0.0, 15.0, "<15"),
    (15.0, 30.0, "15-29.9"),
    (30.0, 50.0, "30-49.9"),
    (50.0, math.inf, ">=50"),
)
_BAND_COLOURS = ("#d9ead3", "#fff2cc", "#fce5cd", "#f4cccc")

#: How each LM is drawn: class -> (legend label, colour). The class of an LM is
#: given by :func:`lm_classes`.
LM_CLASSES = {
    "plm": ("PLM (in a series)", "#c62828"),
    "isolated": ("candidate LM not in a series", "#1565c0"),
    "short_imi": ("short-IMI candidate LM", "#ef6c00"),
    "noncandidate": ("non-candidate (long) LM", "#616161"),
    "posture": ("posture change", "#8e24aa"),
}
_SIDE_COLOURS = {"left": "#00897b", "right": "#d84315", "both": "#37474f", "unknown": "#37474f"}
_SLEEP_COLOURS = {"sleep": "#283593", "wake": "#ffb74d"}
_GAP_COLOUR = "#b0bec5"
_NONWEAR_COLOUR = "#795548"
#: Left margin of the night's panels (figure fraction): room for the lane labels.
_LEFT = 0.085
_OUTSIDE_COLOUR = "#eceff1"

#: Longest stretch of a PLM series the zoom panel shows (seconds, with its margins).
ZOOM_MAX_S = 480.0
_ZOOM_MARGIN_S = 30.0

_NOT_IN_FILE = "not in this file"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_PARQUET_MAGIC = b"PAR1"
_EXTRA = 'pip install "pmld[research]"'


# -- small helpers ----------------------------------------------------------------------
def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(value: Any, spec: str = ".1f") -> str:
    """A number for a reader: ``n/a`` for NaN and missing values."""
    if value is None or value is pd.NA:
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    number = _number(value)
    if not math.isfinite(number):
        return "n/a"
    if spec == "d":
        return str(int(round(number)))
    return format(number, spec)


def _hours(seconds: float) -> str:
    """A duration for a reader: ``6.2 min`` under an hour, else ``7 h 05 min``."""
    if not math.isfinite(seconds):
        return "n/a"
    if seconds < 3600:
        return f"{seconds / 60.0:.1f} min"
    minutes = int(round(seconds / 60.0))
    return f"{minutes // 60} h {minutes % 60:02d} min"


def severity_band(plms_index: float) -> str | None:
    """The severity band (:data:`SEVERITY_BANDS`) of a PLMS index; None for NaN.

    Examples
    --------
    >>> severity_band(14.99), severity_band(15.0), severity_band(50.0)
    ('<15', '15-29.9', '>=50')
    """
    value = _number(plms_index)
    if not math.isfinite(value):
        return None
    for low, high, label in SEVERITY_BANDS:
        if low <= value < high:
            return label
    return SEVERITY_BANDS[0][2]  # a negative index cannot happen; keep it in the first band


def lm_classes(events: pd.DataFrame) -> np.ndarray:
    """The drawing class of every scored LM (a key of :data:`LM_CLASSES`).

    ``posture`` for posture changes (``kind == 'posture'``, never candidates); ``plm``
    for LMs in a PLM series; ``short_imi`` for candidates with an IMI below the rules'
    minimum (never PLMs, WASM 2016 [1]_); ``isolated`` for the other candidates;
    ``noncandidate`` for LMs that are not candidates (too long, or bilateral LMs of
    too many parts), which break a series.

    Parameters
    ----------
    events : DataFrame
        ``/events/leg_movements`` of a summary (columns ``candidate``, ``plm``,
        ``short_imi``, ``kind``; missing columns count as False / ``lm``).

    Returns
    -------
    ndarray of str
    """
    n = len(events)

    def flag(name: str) -> np.ndarray:
        if name not in events:
            return np.zeros(n, dtype=bool)
        return events[name].fillna(False).to_numpy(dtype=bool)

    candidate, plm, short = flag("candidate"), flag("plm"), flag("short_imi")
    out = np.full(n, "noncandidate", dtype=object)
    out[candidate & ~plm & ~short] = "isolated"
    out[candidate & short & ~plm] = "short_imi"
    out[plm] = "plm"
    if "kind" in events:
        out[events["kind"].astype(str).to_numpy() == "posture"] = "posture"
    return out


def representative_series(series: pd.DataFrame) -> pd.Series | None:
    """The PLM series to zoom on: the first whose length (``n_lms``) is the median.

    With an even number of series the lower median is taken, so the choice is always
    a series that exists. None when there is no series.
    """
    if series is None or not len(series) or "n_lms" not in series:
        return None
    ordered = series.sort_values("onset_s", kind="stable").reset_index(drop=True)
    lengths = ordered["n_lms"].to_numpy(dtype=float)
    median = np.sort(lengths)[(lengths.size - 1) // 2]
    return ordered.iloc[int(np.flatnonzero(lengths == median)[0])]


class _Clock:
    """Seconds from the night's start <-> local clock time in the night's time zone."""

    _STEPS_S = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)

    def __init__(self, start_utc: str | None, timezone: str | None):
        self.note = ""
        try:
            start = datetime.fromisoformat(str(start_utc))
            if start.tzinfo is None:
                start = start.replace(tzinfo=UTC)
        except (TypeError, ValueError):
            start = datetime(1970, 1, 1, tzinfo=UTC)
            self.note = "start time unknown: the clock counts from 00:00"
        try:
            self.zone = ZoneInfo(str(timezone)) if timezone else ZoneInfo("UTC")
            self.zone_name = str(timezone) if timezone else "UTC"
        except (ZoneInfoNotFoundError, ValueError):
            self.zone, self.zone_name = ZoneInfo("UTC"), "UTC"
            self.note = f"time zone {timezone!r} unknown: times in UTC"
        self.start = start.astimezone(UTC)

    def local(self, seconds: float) -> datetime:
        return (self.start + timedelta(seconds=float(seconds))).astimezone(self.zone)

    def text(self, seconds: float, with_date: bool = False) -> str:
        if not math.isfinite(_number(seconds)):
            return "n/a"
        when = self.local(seconds)
        return when.strftime("%Y-%m-%d %H:%M:%S %Z" if with_date else "%H:%M:%S")

    def ticks(self, t0: float, t1: float, max_ticks: int = 10) -> tuple[list[float], list[str]]:
        """Ticks at round local clock times (whole hours, 30 min, ...) between t0 and
        t1, and their labels. Worked out on the local wall clock, so a night across a
        DST change or in a zone with a 30 or 45 min offset still gets round labels."""
        span = max(float(t1) - float(t0), 1.0)
        step = next((s for s in self._STEPS_S if span / s <= max_ticks), self._STEPS_S[-1])
        first = self.local(t0).replace(tzinfo=None)
        midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
        k = math.ceil((first - midnight).total_seconds() / step)
        found: dict[float, str] = {}
        # loop over ticks (a dozen), not samples; the slack covers a DST hour
        for _ in range(int(span / step) + 8):
            naive = midnight + timedelta(seconds=k * step)
            k += 1
            for fold in (0, 1):
                aware = naive.replace(tzinfo=self.zone, fold=fold)
                utc = aware.astimezone(UTC)
                if utc.astimezone(self.zone).replace(tzinfo=None) != naive:
                    continue  # a wall-clock time skipped by a DST change
                seconds = (utc - self.start).total_seconds()
                if t0 <= seconds <= t1:
                    found[seconds] = naive.strftime("%H:%M" if step >= 60 else "%H:%M:%S")
        positions = sorted(found)
        return positions, [found[p] for p in positions]

    def axis_label(self, seconds: float) -> str:
        offset = self.local(seconds).strftime("%z")
        offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
        return f"local time, {self.zone_name} ({offset})"


def _matplotlib():
    """matplotlib's Figure and Agg canvas, or a one-line error naming the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(f"reports need matplotlib: {_EXTRA}") from None
    return Figure, FigureCanvasAgg


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Small fonts for dense panels, only while a figure is drawn and saved."""
    import matplotlib

    with matplotlib.rc_context(
        {
            "font.size": 8,
            "axes.titlesize": 9,
            "axes.labelsize": 8,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "legend.fontsize": 7,
            "axes.spines.top": False,
            "axes.spines.right": False,
            # Type 3 fonts in PDF: embedding TrueType (42) costs half a second a report
            "pdf.fonttype": 3,
        }
    ):
        yield


def _note(ax, text: str) -> None:
    """A grey note in the middle of an axis (a panel without data)."""
    ax.text(
        0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center",
        color="0.45", fontsize=8, style="italic",
    )


# -- what a night report draws from -----------------------------------------------------
class _NightView:
    """A summary file, read once into what the panels need."""

    def __init__(self, summary, threshold: float):
        self.summary = summary
        self.threshold = float(threshold)
        attrs = summary.attrs
        self.attrs = attrs
        self.clock = _Clock(attrs.get("start_utc"), attrs.get("timezone"))
        self.events = summary.events
        self.series = summary.series
        self.indices = dict(summary.indices)
        self.sides = [s for s in str(attrs.get("sides", "")).split(",") if s]
        ends = [_number(attrs.get("duration_s"))]
        if len(self.events):
            ends.append(float(self.events["offset_s"].max()))
        self.duration_s = max([e for e in ends if math.isfinite(e)] or [1.0])
        self.window = (
            _number(attrs.get("window_start_s")),
            _number(attrs.get("window_stop_s")),
        )
        rules = summary.parameters.get("rules", {}) if summary.parameters else {}
        self.min_imi_s = _number(rules.get("min_imi_s", 10.0))
        self.max_imi_s = _number(rules.get("max_imi_s", 90.0))
        self.version = str(attrs.get("schema_version", ""))
        self.epochs = summary.epochs if getattr(summary, "epochs", None) is not None else None
        self.gaps = getattr(summary, "gaps", None)
        self.sleep = dict(getattr(summary, "sleep", None) or {})
        self.calibration = list(getattr(summary, "calibration", None) or [])
        self.classes = lm_classes(self.events)
        self.plms = _number(self.indices.get("plms_index"))
        self.band = self.indices.get("severity_band") or severity_band(self.plms)
        if isinstance(self.band, float):
            self.band = severity_band(self.plms)

    @property
    def name(self) -> str:
        name = Path(self.summary.path).name
        return name.removesuffix(".plm.h5").removesuffix(".h5")

    @property
    def night_date(self) -> str:
        return str(self.attrs.get("night_date") or self.clock.local(0).date().isoformat())

    @property
    def abnormal(self) -> bool | None:
        return None if not math.isfinite(self.plms) else bool(self.plms > self.threshold)

    @property
    def sleep_source(self) -> str:
        return str(self.sleep.get("source") or "")

    def title(self) -> str:
        return (
            f"{self.name}: night of {self.night_date}, "
            f"{self.clock.text(0)} to {self.clock.text(self.duration_s)} "
            f"({self.clock.zone_name}), {', '.join(self.sides) or 'no ankle'}"
        )

    def verdict(self) -> str:
        if self.abnormal is None:
            return "PLMS index n/a (see the quality flags)"
        word = "abnormal" if self.abnormal else "not abnormal"
        return (
            f"PLMS index {self.plms:.1f}/h: {word} (cut-off > {self.threshold:g}/h), "
            f"band {self.band}"
        )

    def flags(self) -> list[str]:
        out = [str(f) for f in self.summary.quality.get("flags", [])]
        out += [f"sleep: {f}" for f in self.sleep.get("flags", []) or []]
        return out

    def table(self, name: str) -> pd.DataFrame | None:
        """A sleep table (``spans`` or ``nonwear``) when the file has one."""
        value = self.sleep.get(name)
        return value if isinstance(value, pd.DataFrame) else None


def _as_view(summary, threshold: float) -> _NightView:
    if isinstance(summary, str | os.PathLike):
        from .io.summary import read_summary

        summary = read_summary(summary)
    return _NightView(summary, threshold)


# -- the panels -------------------------------------------------------------------------
def _shade_outside_window(ax, view: _NightView) -> None:
    start, stop = view.window
    if math.isfinite(start) and start > 0:
        ax.axvspan(0, start, color=_OUTSIDE_COLOUR, zorder=0, lw=0)
    if math.isfinite(stop) and stop < view.duration_s:
        ax.axvspan(stop, view.duration_s, color=_OUTSIDE_COLOUR, zorder=0, lw=0)


def _spans(frame: pd.DataFrame | None, side: str | None = None) -> list[tuple[float, float]]:
    if frame is None or not len(frame):
        return []
    if side is not None and "side" in frame:
        frame = frame[frame["side"].astype(str) == side]
    onset = frame["onset_s"].to_numpy(dtype=float)
    duration = frame["duration_s"].to_numpy(dtype=float)
    keep = np.isfinite(onset) & np.isfinite(duration)
    return list(zip(onset[keep], duration[keep], strict=True))


def _draw_strip(ax, view: _NightView) -> None:
    """Lanes: the analysis window (lights off-on), the sleep period, sleep/wake,
    non-wear and missing data per ankle."""
    lanes: list[tuple[str, list, str, str]] = []  # label, spans, colour, note
    start, stop = view.window
    window = [(start, stop - start)] if math.isfinite(start) and math.isfinite(stop) else []
    lanes.append(("lights off-on", window, "#90a4ae", "" if window else _NOT_IN_FILE))
    on, off = _number(view.sleep.get("period_onset_s")), _number(view.sleep.get("period_offset_s"))
    period = [(on, off - on)] if math.isfinite(on) and math.isfinite(off) else []
    has_sleep = bool(view.sleep_source) or view.table("spans") is not None and len(
        view.table("spans")
    )
    period_note = "" if period else ("none found" if view.sleep_source else _NOT_IN_FILE)
    lanes.append(("sleep period", period, "#5c6bc0", period_note))
    spans = view.table("spans")
    if spans is not None and len(spans):
        states = spans["state"].astype(str)
        sleep_spans = [("sleep", _spans(spans[states == "sleep"])),
                       ("wake", _spans(spans[states == "wake"]))]
    else:
        sleep_spans = []
    if view.sleep_source == "none":
        note = "not known: the whole window counts as sleep"
    elif not has_sleep:
        note = _NOT_IN_FILE
    else:
        note = "" if sleep_spans else "no spans"
    lanes.append(("sleep / wake", sleep_spans, "", note))
    nonwear = view.table("nonwear")
    if nonwear is None and view.epochs is not None and "nonwear" in view.epochs:
        nonwear = _epoch_runs(view.epochs, "nonwear")
    for side in view.sides or ["unknown"]:
        label = f"non-wear {side}" if len(view.sides) > 1 else "non-wear"
        spans_side = _spans(nonwear, side)
        note = _NOT_IN_FILE if nonwear is None else ("" if spans_side else "none")
        lanes.append((label, spans_side, _NONWEAR_COLOUR, note))
    for side in view.sides or ["unknown"]:
        label = f"no data {side}" if len(view.sides) > 1 else "no data"
        spans_side = _spans(view.gaps, side)
        note = _NOT_IN_FILE if view.gaps is None else ("" if spans_side else "none")
        lanes.append((label, spans_side, _GAP_COLOUR, note))
    n = len(lanes)
    for i, (label, spans_, colour, note) in enumerate(lanes):
        y = n - 1 - i
        if label == "sleep / wake":
            for state, items in spans_:
                if items:
                    ax.broken_barh(items, (y - 0.35, 0.7), color=_SLEEP_COLOURS[state], lw=0)
        elif spans_:
            ax.broken_barh(spans_, (y - 0.35, 0.7), color=colour, lw=0)
        if note:
            ax.text(
                view.duration_s * 0.005, y, note, va="center", ha="left", fontsize=7,
                color="0.45", style="italic",
            )
    if window:
        y = n - 1
        ax.text(start, y, f" lights off {view.clock.text(start)[:5]}", va="center", ha="left",
                fontsize=7, color="white", clip_on=True)
        ax.text(stop, y, f"lights on {view.clock.text(stop)[:5]} ", va="center", ha="right",
                fontsize=7, color="white", clip_on=True)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_yticks(range(n), [lane[0] for lane in reversed(lanes)])
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    ax.set_title("the night: window, sleep, wear and data", loc="left")


def _epoch_runs(epochs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Runs of epochs where ``column`` is True, per side, as onset/duration spans."""
    rows = []
    for side, part in epochs.groupby(epochs["side"].astype(str), sort=False):
        part = part.sort_values("onset_s")
        flag = part[column].fillna(False).to_numpy(dtype=bool)
        if not flag.any():
            continue
        onset = part["onset_s"].to_numpy(dtype=float)
        end = onset + part["duration_s"].to_numpy(dtype=float)
        edges = np.diff(np.concatenate([[0], flag.astype(np.int8), [0]]))
        first, stop = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        for a, b in zip(first, stop, strict=True):
            rows.append((side, onset[a], end[b - 1] - onset[a]))
    return pd.DataFrame(rows, columns=["side", "onset_s", "duration_s"])


def _draw_epochs(ax_activity, ax_angle, view: _NightView) -> None:
    """Activity and posture angle per 30 s epoch and ankle (``/epochs``, schema 1.1)."""
    ax_activity.set_ylabel("activity (g)")
    ax_angle.set_ylabel("posture angle (deg)")
    epochs = view.epochs
    if epochs is None or not len(epochs):
        note = f"activity per epoch: {_NOT_IN_FILE} (schema 1.0, or sleep not estimated)"
        _note(ax_activity, note)
        _note(ax_angle, f"posture angle per epoch: {_NOT_IN_FILE}")
        ax_activity.set_yticks([])
        ax_angle.set_yticks([])
        return
    sides = epochs["side"].astype(str) if "side" in epochs else pd.Series("unknown", epochs.index)
    drew = {"activity_g": False, "angle_deg": False}
    for side in pd.unique(sides):
        part = epochs[sides == side].sort_values("onset_s")
        x = part["onset_s"].to_numpy(dtype=float)
        missing = np.zeros(len(part), dtype=bool)
        if "gap" in part:
            missing |= part["gap"].fillna(False).to_numpy(dtype=bool)
        colour = _SIDE_COLOURS.get(side, "#37474f")
        for ax, column in ((ax_activity, "activity_g"), (ax_angle, "angle_deg")):
            if column not in part:
                continue
            y = part[column].to_numpy(dtype=float).copy()
            if column == "activity_g":
                y = np.maximum(y, 1e-4)  # log scale: a flat epoch sits on the floor
            y[missing] = np.nan
            ax.step(x, y, where="post", color=colour, lw=0.7, label=side)
            drew[column] = True
    if drew["activity_g"]:
        ax_activity.set_yscale("log")
        if len(pd.unique(sides)) > 1:
            ax_activity.legend(loc="upper right", ncols=2, frameon=False)
    else:
        _note(ax_activity, f"activity per epoch: {_NOT_IN_FILE}")
    if not drew["angle_deg"]:
        _note(ax_angle, f"posture angle per epoch: {_NOT_IN_FILE}")


def _lm_lanes(view: _NightView) -> list[str]:
    """The LM raster's lanes, bottom to top."""
    present = set(view.events["side"].astype(str)) if len(view.events) else set()
    lanes = [s for s in ("right", "both", "left", "unknown") if s in present or s in view.sides]
    if not lanes:
        lanes = ["unknown"]
    return lanes + ["PLM series"]


def _draw_lms(ax, view: _NightView) -> None:
    """Every LM as a mark in its leg's lane, coloured by class; PLM series as bars."""
    lanes = _lm_lanes(view)
    y_of = {name: i for i, name in enumerate(lanes)}
    events = view.events
    if len(events):
        onset = events["onset_s"].to_numpy(dtype=float)
        y = events["side"].astype(str).map(y_of).fillna(y_of.get("unknown", 0)).to_numpy(float)
        for cls, (label, colour) in LM_CLASSES.items():
            mine = view.classes == cls
            if mine.any():
                # one rasterized scatter per class: thousands of marks stay light in a PDF
                ax.scatter(
                    onset[mine], y[mine], marker="|", s=90, linewidths=0.7, color=colour,
                    label=f"{label} ({int(mine.sum())})", rasterized=True, zorder=3,
                )
    else:
        ax.text(view.duration_s * 0.005, 0, "no leg movements", va="center", fontsize=7,
                color="0.45", style="italic")
    if len(view.series):
        spans = _spans(view.series)
        ax.broken_barh(spans, (y_of["PLM series"] - 0.3, 0.6), color=LM_CLASSES["plm"][1],
                       alpha=0.55, lw=0)
    else:
        ax.text(view.duration_s * 0.005, y_of["PLM series"], "no PLM series", va="center",
                fontsize=7, color="0.45", style="italic")
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ax.set_yticks(range(len(lanes)), lanes)
    ax.tick_params(axis="y", length=0)


def _set_clock_axis(ax, view: _NightView, t0: float, t1: float, max_ticks: int = 12) -> None:
    positions, labels = view.clock.ticks(t0, t1, max_ticks)
    ax.set_xlim(t0, t1)
    ax.set_xticks(positions, labels)


def _draw_window_marks(axes, view: _NightView) -> None:
    start, stop = view.window
    for ax in axes:
        _shade_outside_window(ax, view)
        for t in (start, stop):
            if math.isfinite(t) and 0 < t < view.duration_s:
                ax.axvline(t, color="#455a64", lw=0.8, ls="--", zorder=1)


def _draw_overview(axes, view: _NightView) -> None:
    ax_strip, ax_activity, ax_angle, ax_lms = axes
    _draw_strip(ax_strip, view)
    _draw_epochs(ax_activity, ax_angle, view)
    _draw_lms(ax_lms, view)
    _draw_window_marks(axes, view)
    for ax in axes:
        _set_clock_axis(ax, view, 0.0, view.duration_s)
    for ax in axes[:-1]:
        ax.tick_params(axis="x", labelbottom=False)
    ax_lms.set_xlabel(view.clock.axis_label(0.0))


def _draw_zoom(ax, view: _NightView) -> None:
    """A representative PLM series: each LM's span in its leg's lane, and its IMI."""
    chosen = representative_series(view.series)
    if chosen is None:
        _note(ax, "no PLM series in this night: nothing to zoom on")
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_title("a PLM series", loc="left")
        return
    onset, offset = float(chosen["onset_s"]), float(chosen["offset_s"])
    t0 = onset - _ZOOM_MARGIN_S
    t1 = min(offset + _ZOOM_MARGIN_S, t0 + ZOOM_MAX_S)
    events = view.events
    start = events["onset_s"].to_numpy(dtype=float)
    stop = events["offset_s"].to_numpy(dtype=float)
    inside = (stop >= t0) & (start <= t1)
    lanes = _lm_lanes(view)[:-1]
    y_of = {name: i for i, name in enumerate(lanes)}
    sides = events["side"].astype(str).to_numpy()
    rows = np.flatnonzero(inside)
    y = np.array([y_of.get(sides[i], 0) for i in rows], dtype=float)
    for cls, (label, colour) in LM_CLASSES.items():
        mine = view.classes[rows] == cls
        if mine.any():
            ax.barh(y[mine], (stop - start)[rows][mine], left=start[rows][mine], height=0.5,
                    color=colour, label=label, zorder=3)
    imi_y = len(lanes) - 0.2
    imis = events["imi_s"].to_numpy(dtype=float) if "imi_s" in events else np.full(len(events),
                                                                                      np.nan)
    # the IMI of an LM runs from the previous LM's onset to its own (WASM 2016 [1]_)
    for i in rows:
        imi = imis[i]
        if not math.isfinite(imi) or start[i] - imi < t0 or start[i] > t1:
            continue
        colour = LM_CLASSES[view.classes[i]][1]
        ax.annotate(
            "", xy=(start[i], imi_y), xytext=(start[i] - imi, imi_y),
            arrowprops={"arrowstyle": "|-|", "color": colour, "lw": 0.6,
                        "shrinkA": 0, "shrinkB": 0, "mutation_scale": 3},
        )
        ax.text(start[i] - imi / 2, imi_y + 0.12, f"{imi:.0f}", ha="center", va="bottom",
                fontsize=6, color=colour)
    ax.axvspan(onset, offset, color=LM_CLASSES["plm"][1], alpha=0.06, lw=0, zorder=0)
    ax.set_ylim(-0.6, len(lanes) + 0.5)
    ax.set_yticks([*range(len(lanes)), imi_y], [*lanes, "IMI (s)"])
    ax.tick_params(axis="y", length=0)
    _set_clock_axis(ax, view, t0, t1, max_ticks=10)
    ax.set_xlabel(view.clock.axis_label(t0))
    cut = " (the first 8 min)" if offset + _ZOOM_MARGIN_S > t1 else ""
    ax.set_title(
        f"PLM series {int(chosen['series_id'])} of {len(view.series)} (median length): "
        f"{int(chosen['n_lms'])} LMs over {_hours(offset - onset)}, mean IMI "
        f"{_fmt(chosen.get('mean_imi_s'), '.1f')} s{cut}",
        loc="left",
    )


def _draw_histograms(ax_imi, ax_ln, view: _NightView) -> None:
    """IMI (2 s bins, 0-90 s) and ln(IMI) (0.1 bins, 0-4.5) histograms of CLM-to-CLM
    IMIs as the summary stores them, with the rules' IMI limits marked."""
    hist = view.summary.histograms
    panels = (
        (ax_imi, "imi_counts", "imi_edges_s", "IMI (s)", lambda v: v),
        (ax_ln, "ln_imi_counts", "ln_imi_edges", "ln(IMI / 1 s)", np.log),
    )
    for ax, counts_key, edges_key, xlabel, transform in panels:
        ax.set_xlabel(xlabel)
        ax.set_ylabel("IMIs")
        if counts_key not in hist or edges_key not in hist:
            _note(ax, f"histogram {_NOT_IN_FILE}")
            continue
        counts = np.asarray(hist[counts_key], dtype=float)
        edges = np.asarray(hist[edges_key], dtype=float)
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#5c6bc0",
               edgecolor="white", linewidth=0.3)
        # a little room past the last edge, so that a limit drawn there (90 s) shows
        ax.set_xlim(edges[0], edges[-1] + 0.015 * (edges[-1] - edges[0]))
        ax.yaxis.get_major_locator().set_params(integer=True)
        for limit, word in ((view.min_imi_s, "min"), (view.max_imi_s, "max")):
            if math.isfinite(limit) and limit > 0:
                x = float(transform(limit))
                ax.axvline(x, color="#c62828", lw=0.9, ls="--")
                ax.annotate(
                    f"{limit:g} s", (x, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(-2 if word == "max" else 2, -10), textcoords="offset points",
                    ha="right" if word == "max" else "left", fontsize=7, color="#c62828",
                )
        total = int(counts.sum())
        if total == 0:
            _note(ax, "no CLM-to-CLM IMIs below 90 s")
        ax.set_title(
            f"{'IMI' if counts_key == 'imi_counts' else 'ln(IMI)'} histogram, {total} IMIs",
            loc="left",
        )
    mean, sd = _number(view.indices.get("ln_imi_mean")), _number(view.indices.get("ln_imi_sd"))
    if math.isfinite(mean):
        ax_ln.axvline(mean, color="#263238", lw=0.8)
        ax_ln.annotate(
            f"mean {mean:.2f} (SD {_fmt(sd, '.2f')})", (mean, 0.75),
            xycoords=("data", "axes fraction"), xytext=(-3, 0), textcoords="offset points",
            ha="right", fontsize=7,
        )


def _draw_gauge(ax, value: float, threshold: float, title: str = "PLMS index") -> None:
    """A horizontal scale of the severity bands with the cut-off and the night's value."""
    top = max(70.0, value * 1.1 if math.isfinite(value) else 0.0)
    for (low, high, label), colour in zip(SEVERITY_BANDS, _BAND_COLOURS, strict=True):
        right = min(high, top)
        ax.axvspan(low, right, color=colour, lw=0)
        ax.text((low + right) / 2, 0.2, label, ha="center", va="center", fontsize=7,
                color="0.3")
    ax.axvline(threshold, color="#c62828", lw=1.2)
    ax.text(threshold, 1.02, f"cut-off > {threshold:g}/h", transform=ax.get_xaxis_transform(),
            ha="center", va="bottom", fontsize=7, color="#c62828")
    if math.isfinite(value):
        ax.plot([value], [0.65], marker="v", markersize=9, color="#212121")
        ax.text(value, 0.82, f"{value:.1f}/h", ha="center", va="bottom", fontsize=8,
                weight="bold")
    else:
        _note(ax, f"{title} n/a")
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1.1)
    ax.set_yticks([])
    ax.set_xlabel(f"{title} (per hour of sleep)")
    for side in ("left", "top", "right"):
        ax.spines[side].set_visible(False)


# -- the night's text -------------------------------------------------------------------
#: The indices a night report lists: (key, label, format, meaning).
INDEX_ROWS = (
    ("plms_index", "PLMS index", ".1f", "PLMs in sleep per hour of sleep"),
    ("plmw_index", "PLMW index", ".1f", "PLMs in wake inside the sleep period per hour of wake"),
    ("plm_index", "PLM index", ".1f", "PLMs per hour analysed"),
    ("plm_index_nonresp", "PLM index, resp. CLMs removed", ".1f",
     "PLMs per hour with respiratory-related CLMs removed (WASM 2016)"),
    ("lm_index", "LM index", ".1f", "leg movements per hour analysed"),
    ("clm_index", "CLM index", ".1f", "candidate LMs per hour analysed"),
    ("short_imi_index", "short-IMI CLM index", ".1f", "candidate LMs with IMI < the minimum, /h"),
    ("isolated_clm_index", "isolated CLM index", ".1f", "candidate LMs in no series, /h"),
    ("periodicity_index", "periodicity index (WASM)", ".2f", "PLMs / CLMs"),
    ("periodicity_index_ferri2006", "periodicity index (Ferri 2006)", ".2f",
     "fraction of IMIs in runs of >= 3 IMIs of 10-90 s"),
    ("ln_imi_mean", "ln(IMI) mean", ".2f", "CLM-to-CLM IMIs of 10-90 s"),
    ("ln_imi_sd", "ln(IMI) SD", ".2f", "CLM-to-CLM IMIs of 10-90 s"),
    ("plm_series_count", "PLM series", "d", ""),
    ("mean_series_length", "mean series length", ".1f", "LMs per series"),
    ("lm_count", "LMs", "d", ""),
    ("clm_count", "candidate LMs", "d", ""),
    ("plm_count", "PLMs", "d", ""),
    ("plms_count", "PLMs in sleep", "d", ""),
    ("plmw_count", "PLMs in wake", "d", ""),
    ("short_imi_count", "short-IMI CLMs", "d", ""),
    ("isolated_clm_count", "isolated CLMs", "d", ""),
    ("analyzed_hours", "analysed time", ".2f", "hours of data in the analysis window"),
    ("sleep_h", "sleep time", ".2f", "hours the PLMS index is per"),
    ("wake_h", "wake time", ".2f", "hours the PLMW index is per"),
)
_UNITS = {
    "plms_index": "/h", "plmw_index": "/h", "plm_index": "/h", "plm_index_nonresp": "/h",
    "lm_index": "/h", "clm_index": "/h", "short_imi_index": "/h", "isolated_clm_index": "/h",
    "analyzed_hours": "h", "sleep_h": "h", "wake_h": "h",
}
_LEGS = (("left", "left"), ("right", "right"), ("bilateral", "bilateral"), ("unknown", "unknown"))


def _index_lines(view: _NightView, width: int = 38) -> list[str]:
    lines = [view.verdict(), ""]
    for key, label, spec, _ in INDEX_ROWS:
        if key in view.indices:
            value = _fmt(view.indices[key], spec)
            lines.append(f"{label:<{width}} {value:>7} {_UNITS.get(key, '')}")
    lines.append("LMs/PLMs by leg:")
    lines.append("  " + ", ".join(
        f"{word} {_fmt(view.indices.get(f'{key}_lm_count'), 'd')}/"
        f"{_fmt(view.indices.get(f'{key}_plm_count'), 'd')}" for key, word in _LEGS
    ))
    return lines


def _sleep_lines(view: _NightView) -> list[str]:
    source = view.sleep_source
    if not source:
        return [f"sleep source: {_NOT_IN_FILE} (the whole window counts as sleep)"]
    meaning = {
        "annotations": "sleep/wake annotations (reference scoring or the user)",
        "estimate": "estimated from the ankle",
        "none": "not known: the whole window counts as sleep",
    }.get(source, source)
    lines = [f"sleep source: {source}: {meaning}"]
    if view.sleep.get("method"):
        lines.append(f"method: {view.sleep['method']}")
    on, off = view.sleep.get("period_onset_s"), view.sleep.get("period_offset_s")
    if math.isfinite(_number(on)) and math.isfinite(_number(off)):
        lines.append(f"sleep period: {view.clock.text(on)} to {view.clock.text(off)}")
    else:
        lines.append("sleep period: none found")
    lines.append(
        f"sleep {_fmt(view.sleep.get('sleep_h'), '.2f')} h, wake "
        f"{_fmt(view.sleep.get('wake_h'), '.2f')} h, non-wear "
        f"{_fmt(view.sleep.get('nonwear_h'), '.2f')} h"
    )
    return lines


def _calibration_rows(view: _NightView) -> list[dict[str, str]]:
    rows = []
    for i, entry in enumerate(view.calibration):
        if not isinstance(entry, dict):
            continue
        side = entry.get("side") or (view.sides[i] if i < len(view.sides) else "")
        rows.append(
            {
                "ankle": str(side),
                "status": str(entry.get("status", "")),
                "reason": str(entry.get("reason", "")),
                "error before -> after (g)": f"{_fmt(entry.get('error_before_g'), '.4f')} -> "
                f"{_fmt(entry.get('error_after_g'), '.4f')}",
                "points": _fmt(entry.get("n_points"), "d"),
                "offset (g)": _vector(entry.get("offset_g"), ".4f"),
                "scale": _vector(entry.get("scale"), ".4f"),
                "device": _device(entry.get("device")),
                "stored file": str(entry.get("source", "") or ""),
            }
        )
    return rows


def _vector(value: Any, spec: str) -> str:
    try:
        return "[" + ", ".join(_fmt(v, spec) for v in value) + "]"
    except TypeError:
        return _fmt(value, spec)


def _device(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if v not in (None, ""))
    return "" if value is None else str(value)


def _provenance(view: _NightView) -> list[tuple[str, str]]:
    attrs = view.attrs
    return [
        ("summary file", str(view.summary.path)),
        ("schema", f"{attrs.get('schema', '')} {attrs.get('schema_version', '')}"),
        ("pmld version", str(attrs.get("pmld_version", ""))),
        ("created (UTC)", str(attrs.get("created_utc", ""))),
        ("input SHA-256", str(attrs.get("input_sha256", "") or "n/a")),
        ("inputs", str(attrs.get("inputs_json", "[]"))),
        ("recording start (UTC)", str(attrs.get("start_utc", ""))),
        ("time zone", str(attrs.get("timezone", ""))),
        ("night date", view.night_date),
        ("recording length", _hours(_number(attrs.get("duration_s")))),
        ("analysis window", f"{view.clock.text(view.window[0])} to "
         f"{view.clock.text(view.window[1])}"),
        ("rules", str(attrs.get("rules", ""))),
        ("night metadata", str(attrs.get("night_meta_json", "{}"))),
    ]


def _parameters_text(view: _NightView) -> str:
    return json.dumps(view.summary.parameters or {}, indent=2, sort_keys=True)


# -- the night figure -------------------------------------------------------------------
def night_figure(summary, *, threshold: float = ADULT_CUTOFF_PER_H, dpi: float = 90.0):
    """The whole night report as one multi-panel matplotlib figure.

    Parameters
    ----------
    summary : SummaryFile or path
        A pmld-summary file (:func:`pmld.io.summary.read_summary`), schema 1.0 or 1.1.
    threshold : float
        PLMS index above which the night is abnormal (15/h for adults [2]_, 5 for
        children).
    dpi : float
        The figure's resolution (for saving it as PNG).

    Returns
    -------
    matplotlib.figure.Figure
        On the Agg canvas: the overview on the local clock (window, sleep period,
        sleep/wake, non-wear, missing data, activity and posture angle per epoch, every
        LM by class, PLM series), a zoom on the series of median length, the IMI and
        ln(IMI) histograms, the PLMS index on the severity bands, and the indices and
        flags as text.
    """
    view = _as_view(summary, threshold)
    with _style():
        return _night_figure(view, dpi)


def _night_figure(view: _NightView, dpi: float):
    Figure, Canvas = _matplotlib()
    # fixed margins: constrained layout would double the drawing time of this figure
    fig = Figure(figsize=(13.0, 15.0), dpi=dpi)
    Canvas(fig)
    grid = fig.add_gridspec(
        6, 3, height_ratios=[4.6, 0.2, 1.4, 1.5, 0.55, 0.8], width_ratios=[1, 1, 0.95],
        left=_LEFT, right=0.98, top=0.925, bottom=0.01, hspace=0.38, wspace=0.18,
    )
    rows = grid[0, :].subgridspec(4, 1, height_ratios=[1.5, 0.9, 0.9, 1.2], hspace=0.12)
    overview = [fig.add_subplot(rows[0])]
    overview += [fig.add_subplot(rows[i], sharex=overview[0]) for i in (1, 2, 3)]
    _draw_overview(overview, view)
    handles, labels = overview[3].get_legend_handles_labels()
    legend_ax = fig.add_subplot(grid[1, :])
    legend_ax.axis("off")
    if handles:
        legend_ax.legend(handles, labels, loc="center", ncols=5, frameon=False)
    _draw_zoom(fig.add_subplot(grid[2, :]), view)
    _draw_histograms(fig.add_subplot(grid[3, 0]), fig.add_subplot(grid[3, 1]), view)
    _draw_gauge(fig.add_subplot(grid[4, :2]), view.plms, view.threshold)
    text_ax = fig.add_subplot(grid[3:, 2])
    text_ax.axis("off")
    flags = view.flags()
    lines = (
        _index_lines(view, width=30)[2:]
        + [""]
        + _sleep_lines(view)
        + ["", f"quality flags ({len(flags)}):"]
        + [f"- {f}" for f in flags[:8]]
        + ([f"... and {len(flags) - 8} more"] if len(flags) > 8 else [])
        + (["- none"] if not flags else [])
    )
    # cut, not wrapped: the full text is in the HTML and PDF reports
    text = "\n".join(line if len(line) <= 62 else line[:61] + "~" for line in lines)
    text_ax.text(0, 1, text, va="top", ha="left", family="monospace", fontsize=6.5,
                 transform=text_ax.transAxes)
    foot_ax = fig.add_subplot(grid[5, :2])
    foot_ax.axis("off")
    cal = _calibration_rows(view)
    cal_text = "; ".join(
        f"{r['ankle'] or 'ankle'}: {r['status']} ({textwrap.shorten(r['reason'], 60)})"
        for r in cal
    ) or _NOT_IN_FILE
    foot = [
        f"calibration: {cal_text}",
        f"rules: {view.attrs.get('rules', '')}; pmld {view.attrs.get('pmld_version', '')}; "
        f"summary written {view.attrs.get('created_utc', '')}",
        f"input: {view.attrs.get('input_sha256', '') or 'n/a'}",
        "full parameters and provenance: the HTML or PDF report, or `pmld show`",
    ]
    foot_ax.text(0, 1, "\n".join(foot), va="top", ha="left", fontsize=7,
                 transform=foot_ax.transAxes)
    fig.suptitle(f"{view.title()}\n{view.verdict()}", x=0.01, y=0.998, ha="left", va="top",
                 fontsize=11)
    return fig


def _text_page(Figure, title: str, lines: list[str], fontsize: float = 7.0):
    """A portrait page of monospace text (PDF report)."""
    fig = Figure(figsize=(8.27, 11.69))
    fig.text(0.06, 0.965, title, fontsize=11, weight="bold", va="top")
    wrapped: list[str] = []
    for line in lines:
        wrapped += textwrap.wrap(line, 118, subsequent_indent="    ") or [""]
    per_page = 100
    fig.text(0.06, 0.94, "\n".join(wrapped[:per_page]), family="monospace", fontsize=fontsize,
             va="top")
    return fig, wrapped[per_page:]


def _pdf_pages(view: _NightView):
    """The text pages after the figure: indices and findings, then parameters."""
    Figure, _ = _matplotlib()
    flags = view.flags()
    first = (
        ["INDICES", *_index_lines(view), "", "SLEEP", *_sleep_lines(view), "",
         f"QUALITY FLAGS ({len(flags)})", *([f"- {f}" for f in flags] or ["- none"]), "",
         "CALIBRATION"]
        + [", ".join(f"{k}: {v}" for k, v in row.items()) for row in _calibration_rows(view)]
        + ([] if view.calibration else [f"calibration: {_NOT_IN_FILE}"])
        + ["", "PER ANKLE (detector)", json.dumps(view.summary.quality.get("sensors", {}),
                                                  indent=1, sort_keys=True)]
    )
    second = (
        ["PROVENANCE", *[f"{k}: {v}" for k, v in _provenance(view)], "", "PARAMETERS"]
        + _parameters_text(view).splitlines()
    )
    pages = []
    for title, lines in ((f"{view.name}: indices and findings", first),
                         (f"{view.name}: parameters and provenance", second)):
        rest = [line for block in lines for line in block.splitlines() or [""]]
        n = 0
        while rest or n == 0:
            fig, rest = _text_page(Figure, title + (f" ({n + 1})" if n else ""), rest)
            pages.append(fig)
            n += 1
    return pages


# -- the night's HTML ---------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:1.5em auto;
max-width:1200px;padding:0 1em;color:#212121;line-height:1.4}
h1{font-size:1.45em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;
border-bottom:1px solid #cfd8dc;padding-bottom:.2em}
.sub{color:#546e7a;margin-top:0}
img{max-width:100%;height:auto;display:block}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #cfd8dc;padding:.2em .6em;text-align:left;vertical-align:top}
th{background:#eceff1}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-size:1.2em;padding:.6em 1em;border-radius:4px;display:inline-block}
.abnormal{background:#f4cccc}.normal{background:#d9ead3}.unknown{background:#eceff1}
.gauge{position:relative;height:26px;width:100%;max-width:700px;margin:1.8em 0 2.2em 0;
display:flex}
.gauge div.band{height:100%;font-size:.75em;color:#455a64;text-align:center;
line-height:26px}
.gauge .cut{position:absolute;top:-6px;bottom:-6px;border-left:2px solid #c62828}
.gauge .cut span{position:absolute;top:-1.5em;left:-3em;width:6em;text-align:center;
font-size:.75em;color:#c62828}
.gauge .mark{position:absolute;top:-8px;bottom:-8px;border-left:3px solid #212121}
.gauge .mark span{position:absolute;bottom:-1.6em;left:-3em;width:6em;text-align:center;
font-weight:bold;font-size:.8em}
pre{background:#f5f5f5;padding:.6em;font-size:.8em;overflow-x:auto;white-space:pre-wrap}
ul.flags li{margin:.1em 0}.muted{color:#78909c;font-style:italic}
.legend span{display:inline-block;margin-right:1.2em}
.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:middle}
footer{margin-top:2em;color:#78909c;font-size:.8em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _png_uri(fig, dpi: float) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(fig, dpi: float, alt: str) -> str:
    return f'<img src="{_png_uri(fig, dpi)}" alt="{_e(alt)}">'


def _html_table(rows: list[dict[str, Any]], numeric: set[str] = frozenset()) -> str:
    if not rows:
        return f'<p class="muted">{_NOT_IN_FILE}</p>'
    head = "".join(f"<th>{_e(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{_e(v)}</td>' if k in numeric else f"<td>{v}</td>"
            if isinstance(v, _Raw) else f"<td>{_e(v)}</td>"
            for k, v in row.items()
        ) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


class _Raw(str):
    """HTML already escaped (a link)."""


def _gauge_html(value: float, threshold: float) -> str:
    """The severity bands as a CSS bar with the cut-off and the value marked (no image,
    no script)."""
    top = max(70.0, value * 1.1 if math.isfinite(value) else 0.0)
    bands = "".join(
        f'<div class="band" style="width:{(min(high, top) - low) / top * 100:.2f}%;'
        f'background:{colour}">{_e(label)}</div>'
        for (low, high, label), colour in zip(SEVERITY_BANDS, _BAND_COLOURS, strict=True)
    )
    cut = (f'<div class="cut" style="left:{threshold / top * 100:.2f}%">'
           f"<span>cut-off {threshold:g}/h</span></div>")
    mark = (
        f'<div class="mark" style="left:{value / top * 100:.2f}%"><span>{value:.1f}/h</span></div>'
        if math.isfinite(value) else ""
    )
    return f'<div class="gauge">{bands}{cut}{mark}</div>'


def night_html(summary, *, threshold: float = ADULT_CUTOFF_PER_H, dpi: float = 80.0) -> str:
    """The night report as one self-contained HTML page (figures inline as PNG).

    Parameters
    ----------
    summary : SummaryFile or path
    threshold : float
        PLMS index above which the night is abnormal (15/h adults [2]_).
    dpi : float
        Resolution of the inline figures.

    Returns
    -------
    str
    """
    view = _as_view(summary, threshold)
    with _style():
        return _night_html(view, dpi)


def _night_html(view: _NightView, dpi: float) -> str:
    Figure, Canvas = _matplotlib()
    parts: list[str] = []
    add = parts.append
    add(f"<h1>pmld night report: {_e(view.name)}</h1>")
    add(f'<p class="sub">{_e(view.title())}. Rules {_e(view.attrs.get("rules", ""))}; '
        f"analysed {_fmt(view.indices.get('analyzed_hours'), '.2f')} h. "
        f"{_e(view.clock.note)}</p>")
    css = {True: "abnormal", False: "normal", None: "unknown"}[view.abnormal]
    add(f'<p class="verdict {css}">{_e(view.verdict())}</p>')
    add(_gauge_html(view.plms, view.threshold))
    add(f"<p>Severity bands of the PLMS index (per hour of sleep): "
        f"{', '.join(b[2] for b in SEVERITY_BANDS)}; clinical cut-off &gt; "
        f"{view.threshold:g}/h (adults; 5/h is used for children).</p>")

    # the night at a glance
    fig = Figure(figsize=(13.0, 7.0))
    Canvas(fig)
    grid = fig.add_gridspec(4, 1, height_ratios=[1.5, 0.9, 0.9, 1.2], left=_LEFT, right=0.98,
                            top=0.95, bottom=0.08, hspace=0.12)
    axes = [fig.add_subplot(grid[0])]
    axes += [fig.add_subplot(grid[i], sharex=axes[0]) for i in (1, 2, 3)]
    _draw_overview(axes, view)
    add("<h2>The night</h2>")
    add(_img(fig, dpi, "the whole night on the local clock"))
    legend = "".join(
        f'<span><i style="background:{colour}"></i>{_e(label)} '
        f"({int((view.classes == cls).sum())})</span>"
        for cls, (label, colour) in LM_CLASSES.items()
    )
    add(f'<p class="legend">{legend}</p>')
    add("<p>Top: the analysis window (lights off to on; outside it shaded), the sleep "
        "period, sleep and wake, non-wear and spans without data per ankle. Middle: mean "
        "activity and posture angle per 30 s epoch and ankle. Bottom: every leg movement "
        "as a mark in its leg's lane (both = a bilateral LM), coloured by class, and the "
        "PLM series as bars.</p>")

    fig = Figure(figsize=(13.0, 2.8))
    Canvas(fig)
    fig.subplots_adjust(left=_LEFT, right=0.98, top=0.88, bottom=0.2)
    _draw_zoom(fig.add_subplot(), view)
    add("<h2>A PLM series</h2>")
    add(_img(fig, dpi, "zoom on a representative PLM series"))
    add("<p>The series of median length (a few minutes of it, with 30 s either side): "
        "each LM's span in its leg's lane and, above, its IMI in seconds (onset to onset "
        "from the previous LM of any kind).</p>")

    fig = Figure(figsize=(13.0, 3.0))
    Canvas(fig)
    fig.subplots_adjust(left=_LEFT, right=0.98, top=0.88, bottom=0.18, wspace=0.15)
    _draw_histograms(fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2), view)
    add("<h2>Inter-movement intervals</h2>")
    add(_img(fig, dpi, "IMI and ln(IMI) histograms"))
    add(f"<p>CLM-to-CLM IMIs below 90 s in 2 s bins, and ln(IMI) in 0.1 bins; dashed: "
        f"the rules' limits ({_fmt(view.min_imi_s, 'g')} s and {_fmt(view.max_imi_s, 'g')} "
        "s). In restless legs syndrome the main peak lies at 15-30 s (WASM 2016).</p>")

    # indices
    add("<h2>Indices</h2>")
    rows = [
        {"index": label, "value": _fmt(view.indices[key], spec),
         "unit": _UNITS.get(key, ""), "meaning": meaning}
        for key, label, spec, meaning in INDEX_ROWS if key in view.indices
    ]
    add(_html_table(rows, numeric={"value"}))
    legs = [
        {"": what, **{word: _fmt(view.indices.get(f"{key}_{kind}_count"), "d")
                      for key, word in _LEGS}}
        for what, kind in (("LMs", "lm"), ("PLMs", "plm"))
    ]
    add("<p>By leg (bilateral: LMs of both legs merged into one):</p>")
    add(_html_table(legs, numeric={w for _, w in _LEGS}))

    # sleep, quality, calibration
    add("<h2>Sleep</h2>")
    add("<p>" + "<br>".join(_e(line) for line in _sleep_lines(view)) + "</p>")
    add("<h2>Quality</h2>")
    flags = view.flags()
    if flags:
        add('<ul class="flags">' + "".join(f"<li>{_e(f)}</li>" for f in flags) + "</ul>")
    else:
        add("<p>No quality flags.</p>")
    sensors = view.summary.quality.get("sensors", {}) or {}
    sensor_rows = [
        {"ankle": side, **{k: _fmt(v, ".4g") if isinstance(v, float) else str(v)
                           for k, v in info.items()}}
        for side, info in sensors.items() if isinstance(info, dict)
    ]
    if sensor_rows:
        add("<p>Detector per ankle (resting floor and thresholds in g):</p>")
        add(_html_table(sensor_rows))
    add("<h2>Calibration</h2>")
    add(_html_table(_calibration_rows(view)))

    # provenance
    add("<h2>Provenance</h2>")
    add(_html_table([{"item": k, "value": v} for k, v in _provenance(view)]))
    add("<h2>Parameters</h2>")
    add(f"<pre>{_e(_parameters_text(view))}</pre>")
    add("<footer>Written by pmld from the summary file alone. Indices and rules: "
        "WASM 2016 (Ferri et al., Sleep Medicine 26:86-95); AASM Manual v2.x; "
        "periodicity index (Ferri 2006): Ferri et al., Sleep 29:759-769.</footer>")
    return _page(f"pmld night report: {view.name}", parts)


def _page(title: str, parts: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


# -- writing a report -------------------------------------------------------------------
def report_format(output: str | os.PathLike, fmt: str | None = None) -> str:
    """The format of a report: ``fmt`` when given, else by the output's extension.

    Raises
    ------
    UsageError
        An unknown format or extension.
    """
    if fmt is not None:
        fmt = str(fmt).lower().lstrip(".")
        if fmt not in REPORT_FORMATS:
            raise UsageError(f"--format must be one of {', '.join(REPORT_FORMATS)}, got {fmt!r}")
        return fmt
    suffix = Path(output).suffix.lower()
    if suffix not in _SUFFIXES:
        what = f"extension {suffix!r}" if suffix else "no extension"
        raise UsageError(
            f"{output}: {what}; a report is written as .html, .png or .pdf (or give --format)"
        )
    return _SUFFIXES[suffix]


def _check_output(output: Path) -> None:
    directory = output.parent if str(output.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"{output}: directory {directory} does not exist")
    if output.is_dir():
        raise UsageError(f"{output}: is a directory; give the report's file name")


def write_night_report(
    summary,
    output: str | os.PathLike,
    *,
    fmt: str | None = None,
    threshold: float = ADULT_CUTOFF_PER_H,
) -> Path:
    """Write a night's report (HTML, PNG or PDF) from its summary file alone.

    Parameters
    ----------
    summary : SummaryFile or path
        A pmld-summary file (schema 1.0 or 1.1).
    output : path
        The report; its extension (``.html``, ``.png``, ``.pdf``) chooses the format
        unless ``fmt`` is given.
    fmt : {'html', 'png', 'pdf'}, optional
    threshold : float
        PLMS index above which the night is abnormal (15/h adults [2]_; 5 children).

    Returns
    -------
    Path
        ``output``, written atomically.

    Raises
    ------
    UsageError
        Unknown format, missing directory, matplotlib missing.
    InputError
        The summary is missing, not a pmld-summary file or damaged.
    """
    output = Path(output)
    fmt = report_format(output, fmt)
    _check_output(output)
    _matplotlib()
    view = _as_view(summary, threshold)
    with _style():
        if fmt == "html":
            text = _night_html(view, 80.0)
            write_atomic([(output, lambda tmp: tmp.write_text(text, encoding="utf-8"))])
        elif fmt == "png":
            fig = _night_figure(view, 90.0)
            write_atomic([(output, lambda tmp: fig.savefig(tmp, format="png"))])
        else:
            from matplotlib.backends.backend_pdf import PdfPages

            figures = [_night_figure(view, 90.0), *_pdf_pages(view)]

            def write_pdf(tmp: Path) -> None:
                with PdfPages(tmp, metadata=_pdf_metadata(view.name, view.attrs)) as pdf:
                    for figure in figures:
                        pdf.savefig(figure, dpi=150)

            write_atomic([(output, write_pdf)])
    return output


def _pdf_metadata(name: str, attrs: dict[str, Any]) -> dict[str, str]:
    return {
        "Title": f"pmld report: {name}",
        "Creator": f"pmld {attrs.get('pmld_version', '')}".strip(),
        "Subject": "periodic limb movements",
    }


# -- the cohort -------------------------------------------------------------------------
def input_kind(path: str | os.PathLike) -> str:
    """What a report's input is, by its content: ``'summary'`` (an HDF5 pmld-summary),
    ``'parquet'`` or ``'csv'`` (a cohort table).

    Raises
    ------
    InputError
        A missing or empty file, a directory, another HDF5 schema (a raw night says to
        run ``pmld analyze`` first), or a file that is neither.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path=path)
    if path.is_dir():
        raise InputError(
            "is a directory; pmld report takes a summary (NAME.plm.h5) or a cohort table "
            "(cohort.csv or cohort.parquet)", path=path,
        )
    with open(path, "rb") as handle:
        head = handle.read(65536)
    if not head:
        raise InputError("is empty (0 bytes)", path=path)
    if head.startswith(_HDF5_MAGIC):
        _check_summary_schema(path)
        return "summary"
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    first = text.splitlines()[0] if text else ""
    columns = {c.strip().strip('"') for c in first.split(",")}
    if {"path", "status"} <= columns:
        return "csv"
    raise FormatError(
        "is neither a pmld summary (HDF5 NAME.plm.h5) nor a cohort table (the cohort.csv "
        "or cohort.parquet pmld batch writes)", path=path,
    )


def _check_summary_schema(path: Path) -> None:
    """Say what an HDF5 file of another pmld schema is (the reader says the rest)."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            schema = h5.attrs.get("schema")
    except OSError:
        return  # read_summary gives the one-line reason (truncated, damaged)
    if isinstance(schema, bytes):
        schema = schema.decode(errors="replace")
    if schema == "pmld-raw":
        raise FormatError(
            "is a raw night (pmld-raw), not a summary: run `pmld analyze` on it and report "
            "the NAME.plm.h5 it writes", path=path,
        )


def read_cohort_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read the cohort table ``pmld batch`` writes (CSV or Parquet, told by content),
    with the column types of :data:`pmld.batch.COHORT_COLUMNS`.

    Columns the table lacks (an older pmld) are added empty; ``path`` and ``status``
    are required.

    Raises
    ------
    InputError
        Not a cohort table, or unreadable; UsageError when Parquet needs pyarrow.
    """
    from .batch import COHORT_COLUMNS

    path = Path(path)
    kind = input_kind(path)
    if kind == "summary":
        raise FormatError("is a nightly summary, not a cohort table", path=path)
    try:
        if kind == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise UsageError(
                    f"{path}: reading Parquet needs pyarrow: {_EXTRA} (or give cohort.csv)"
                ) from None
            frame = pd.read_parquet(path, engine="pyarrow")
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, OSError, pd.errors.ParserError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FormatError(f"cannot be read as a cohort table ({first})", path=path) from None
    missing = [c for c in ("path", "status") if c not in frame]
    if missing:
        raise FormatError(
            f"is not a pmld cohort table: no {', '.join(missing)} column", path=path
        )
    for column, dtype in COHORT_COLUMNS.items():
        values = frame[column] if column in frame else pd.Series(pd.NA, index=frame.index)
        if dtype == "float64":
            frame[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        elif dtype == "Int64":
            frame[column] = pd.to_numeric(values, errors="coerce").round().astype("Int64")
        elif dtype == "boolean":
            text = values.astype("string").str.lower()
            frame[column] = text.map({"true": True, "false": False, "1": True, "0": False},
                                     na_action="ignore").astype("boolean")
        else:
            frame[column] = values.astype("string")
    return frame


def _cohort_stats(table: pd.DataFrame, threshold: float) -> dict[str, Any]:
    status = table["status"].fillna("").astype(str)
    plms = table["plms_index"].to_numpy(dtype=float, na_value=np.nan)
    usable = np.isfinite(plms)
    flagged = table["flag_count"].fillna(0).to_numpy(dtype=float) > 0
    bands = {label: 0 for _, _, label in SEVERITY_BANDS}
    for value in plms[usable]:
        bands[severity_band(value)] += 1
    values = plms[usable]
    return {
        "nights": len(table),
        "ok": int((status == "ok").sum()),
        "skipped": int((status == "skipped").sum()),
        "failed": int((status == "failed").sum()),
        "flagged": int(flagged.sum()),
        "with_index": int(usable.sum()),
        "no_index": int((~usable & (status != "failed")).sum()),
        "abnormal": int((values > threshold).sum()),
        "median": float(np.median(values)) if values.size else math.nan,
        "q1": float(np.percentile(values, 25)) if values.size else math.nan,
        "q3": float(np.percentile(values, 75)) if values.size else math.nan,
        "bands": bands,
    }


def cohort_figure(table: pd.DataFrame, *, threshold: float = ADULT_CUTOFF_PER_H,
                  dpi: float = 90.0):
    """The distribution of the PLMS index over a cohort's nights: a histogram (5/h
    bins) over the severity bands with the cut-off, and the band counts.

    Parameters
    ----------
    table : DataFrame
        The cohort table (:func:`read_cohort_table`).
    threshold : float
        The cut-off drawn (15/h adults [2]_).

    Returns
    -------
    matplotlib.figure.Figure
    """
    with _style():
        return _cohort_figure(table, threshold, dpi)


def _cohort_figure(table: pd.DataFrame, threshold: float, dpi: float):
    Figure, Canvas = _matplotlib()
    stats = _cohort_stats(table, threshold)
    fig = Figure(figsize=(11.0, 3.6), dpi=dpi)
    Canvas(fig)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.9, bottom=0.14, wspace=0.18)
    ax, ax_bands = fig.subplots(1, 2, width_ratios=[2.3, 1])
    values = table["plms_index"].to_numpy(dtype=float, na_value=np.nan)
    values = values[np.isfinite(values)]
    top = max(70.0, float(np.ceil((values.max() if values.size else 0) / 5.0) * 5 + 5))
    for (low, high, _), colour in zip(SEVERITY_BANDS, _BAND_COLOURS, strict=True):
        ax.axvspan(low, min(high, top), color=colour, lw=0, zorder=0)
    if values.size:
        ax.hist(values, bins=np.arange(0.0, top + 5.0, 5.0), color="#5c6bc0",
                edgecolor="white", linewidth=0.4, zorder=2)
    else:
        _note(ax, "no night with a PLMS index")
    ax.axvline(threshold, color="#c62828", lw=1.2, zorder=3)
    ax.annotate(f"cut-off > {threshold:g}/h: {stats['abnormal']} of {stats['with_index']}",
                (threshold, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -10),
                textcoords="offset points", fontsize=7, color="#c62828")
    ax.set_xlim(0, top)
    ax.set_xlabel("PLMS index (per hour of sleep)")
    ax.set_ylabel("nights")
    ax.set_title(f"PLMS index, {stats['with_index']} nights", loc="left")
    labels = list(stats["bands"])
    counts = [stats["bands"][label] for label in labels]
    ax_bands.bar(labels, counts, color=list(_BAND_COLOURS), edgecolor="#78909c", linewidth=0.5)
    for i, count in enumerate(counts):
        ax_bands.text(i, count, str(count), ha="center", va="bottom", fontsize=7)
    ax_bands.set_ylim(0, max(counts + [1]) * 1.2)
    for axis in (ax.yaxis, ax_bands.yaxis):  # counts of nights
        axis.get_major_locator().set_params(integer=True)
    ax_bands.set_title("severity bands (/h)", loc="left")
    ax_bands.set_ylabel("nights")
    return fig


def _night_report_for(summary: Path) -> Path | None:
    """An existing night report next to a summary (``NAME.html``, ``.pdf``, ``.png``)."""
    name = summary.name
    stem = name.removesuffix(".plm.h5") if name.endswith(".plm.h5") else summary.stem
    for suffix in (".html", ".pdf", ".png"):
        for candidate in (summary.with_name(stem + suffix), summary.with_name(name + suffix)):
            if candidate.is_file():
                return candidate
    return None


def default_night_report(summary: str | os.PathLike) -> Path:
    """Where ``pmld report`` writes a night's report by default: ``NAME.html`` beside
    ``NAME.plm.h5`` (where the cohort report looks for it)."""
    summary = Path(summary)
    stem = summary.name.removesuffix(".plm.h5").removesuffix(".h5")
    return summary.with_name(stem + ".html")


def cohort_html(
    table: pd.DataFrame,
    *,
    threshold: float = ADULT_CUTOFF_PER_H,
    source: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    dpi: float = 80.0,
) -> str:
    """The cohort report as one self-contained HTML page.

    Parameters
    ----------
    table : DataFrame
        The cohort table (:func:`read_cohort_table`): one row per night.
    threshold : float
        PLMS index cut-off (15/h adults [2]_).
    source : path, optional
        The table's file: summaries (the ``summary`` column) are found relative to its
        directory, and a night report beside a summary is linked.
    output : path, optional
        Where the page will be written (links are relative to it).

    Returns
    -------
    str
    """
    with _style():
        return _cohort_html(table, threshold, source, output, dpi)


def _cohort_html(table, threshold, source, output, dpi) -> str:
    stats = _cohort_stats(table, threshold)
    base = Path(source).parent if source is not None else None
    out_dir = Path(output).parent if output is not None else Path(".")
    parts: list[str] = []
    add = parts.append
    title = f"pmld cohort report: {stats['nights']} nights"
    add(f"<h1>{_e(title)}</h1>")
    if source is not None:
        add(f'<p class="sub">From {_e(source)}.</p>')
    share = (f"{stats['abnormal'] / stats['with_index'] * 100:.0f}%"
             if stats["with_index"] else "n/a")
    overview = {
        "nights": stats["nights"], "analysed": stats["ok"], "up to date": stats["skipped"],
        "failed": stats["failed"], "flagged": stats["flagged"],
        "with a PLMS index": stats["with_index"],
        f"PLMS index > {threshold:g}/h": f"{stats['abnormal']} ({share})",
        "median PLMS index (IQR)": f"{_fmt(stats['median'])} ({_fmt(stats['q1'])}-"
                                   f"{_fmt(stats['q3'])})",
    }
    add(_html_table([{"": k, "value": v} for k, v in overview.items()], numeric={"value"}))
    Figure, Canvas = _matplotlib()
    add("<h2>PLMS index</h2>")
    add(_img(_cohort_figure(table, threshold, dpi), dpi, "distribution of the PLMS index"))
    band_rows = [
        {"band (/h)": label, "nights": count,
         "share": f"{count / stats['with_index'] * 100:.0f}%" if stats["with_index"] else "n/a"}
        for label, count in stats["bands"].items()
    ]
    add(_html_table(band_rows, numeric={"nights", "share"}))
    add(f"<p>Cut-off &gt; {threshold:g}/h (adults); in large adult cohorts about 25-30% of "
        "nights lie above it (HypnoLaus, Wisconsin Sleep Cohort).</p>")

    status = table["status"].fillna("").astype(str)
    failed = table[status == "failed"]
    add(f"<h2>Failed nights ({len(failed)})</h2>")
    if len(failed):
        add(_html_table([{"night": r["path"], "why": r["error"] if pd.notna(r["error"]) else ""}
                         for _, r in failed.iterrows()]))
    else:
        add("<p>None.</p>")
    flag_count = table["flag_count"].fillna(0).to_numpy(dtype=float)
    flagged = table[flag_count > 0]
    add(f"<h2>Flagged nights ({len(flagged)})</h2>")
    if len(flagged):
        add(_html_table([{"night": r["path"], "flags": r["flags"] if pd.notna(r["flags"])
                          else ""} for _, r in flagged.iterrows()]))
    else:
        add("<p>None.</p>")

    add("<h2>Nights</h2>")
    rows = []
    for _, r in table.iterrows():
        night: Any = _e(r["path"])
        summary = r.get("summary")
        if base is not None and isinstance(summary, str) and summary:
            report = _night_report_for(base / summary)
            if report is not None:
                # relative to the page, so the folder can move as a whole
                relative = os.path.relpath(os.path.abspath(report), os.path.abspath(out_dir))
                href = quote(relative.replace(os.sep, "/"))
                night = f'<a href="{href}">{_e(r["path"])}</a>'
        rows.append({
            "night": _Raw(night),
            "night date": r.get("night_date") if pd.notna(r.get("night_date")) else "",
            "status": r["status"],
            "hours": _fmt(r.get("analyzed_hours"), ".2f"),
            "PLMS /h": _fmt(r.get("plms_index")),
            "PLMW /h": _fmt(r.get("plmw_index")),
            "PLM /h": _fmt(r.get("plm_index")),
            "LM /h": _fmt(r.get("lm_index")),
            "periodicity": _fmt(r.get("periodicity_index"), ".2f"),
            "band": r.get("severity_band") if pd.notna(r.get("severity_band")) else "",
            "abnormal": _fmt(_number(r.get("plms_index")) > threshold
                             if math.isfinite(_number(r.get("plms_index"))) else None),
            "sleep": r.get("sleep_source") if pd.notna(r.get("sleep_source")) else "",
            "flags": _fmt(r.get("flag_count"), "d"),
        })
    numeric = {"hours", "PLMS /h", "PLMW /h", "PLM /h", "LM /h", "periodicity", "flags"}
    add(_html_table(rows, numeric=numeric) if rows else "<p>No nights.</p>")
    add("<p>A night links to its report when one lies beside its summary "
        "(<code>pmld report NAME.plm.h5</code> writes <code>NAME.html</code>).</p>")
    versions = sorted({str(v) for v in table["pmld_version"].dropna()})
    rules = sorted({str(v) for v in table["rules"].dropna()})
    add(f"<footer>pmld versions: {_e(', '.join(versions) or 'n/a')}; rules: "
        f"{_e(', '.join(rules) or 'n/a')}.</footer>")
    return _page(title, parts)


def write_cohort_report(
    table,
    output: str | os.PathLike,
    *,
    fmt: str | None = None,
    threshold: float = ADULT_CUTOFF_PER_H,
    source: str | os.PathLike | None = None,
) -> Path:
    """Write a cohort report: HTML (tables and the PLMS index distribution), or the
    distribution figure alone as PNG or PDF.

    Parameters
    ----------
    table : DataFrame or path
        The cohort table, or its CSV/Parquet file.
    output : path
    fmt : {'html', 'png', 'pdf'}, optional
    threshold : float
        PLMS index cut-off (15/h adults [2]_).
    source : path, optional
        The table's file (default: ``table`` when it is a path), to find the nights'
        summaries and link their reports.

    Returns
    -------
    Path
    """
    output = Path(output)
    fmt = report_format(output, fmt)
    _check_output(output)
    _matplotlib()
    if isinstance(table, str | os.PathLike):
        source = table if source is None else source
        table = read_cohort_table(table)
    with _style():
        if fmt == "html":
            text = _cohort_html(table, float(threshold), source, output, 80.0)
            write_atomic([(output, lambda tmp: tmp.write_text(text, encoding="utf-8"))])
        else:
            fig = _cohort_figure(table, float(threshold), 100.0)
            write_atomic([(output, lambda tmp: fig.savefig(tmp, format=fmt))])
    return output


def write_report(
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    fmt: str | None = None,
    threshold: float = ADULT_CUTOFF_PER_H,
) -> tuple[str, Path]:
    """A night's or a cohort's report, told by the input's content.

    Parameters
    ----------
    source : path
        A pmld-summary file, or a cohort table (CSV/Parquet) from ``pmld batch``.
    output : path, optional
        Default: ``NAME.html`` beside a summary ``NAME.plm.h5``; ``cohort.html`` beside
        a cohort table.

    Returns
    -------
    (kind, path)
        ``kind`` is ``'night'`` or ``'cohort'``.
    """
    source = Path(source)
    if fmt is not None:
        report_format("x", fmt)  # a bad --format fails before the input is read
    if output is not None:
        report_format(output, fmt)
        _check_output(Path(output))
    kind = input_kind(source)
    if kind == "summary":
        if output is None:
            output = default_night_report(source).with_suffix(f".{fmt or 'html'}")
        return "night", write_night_report(source, output, fmt=fmt, threshold=threshold)
    if output is None:
        output = source.with_name(f"{source.stem}.{fmt or 'html'}")
    return "cohort", write_cohort_report(source, output, fmt=fmt, threshold=threshold)
