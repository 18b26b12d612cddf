"""The in-memory night: what every pmld algorithm receives.

A :class:`Night` holds one or two ankle :class:`Sensor` recordings and the night's
annotations (lights off/on, reference events, simulator ground truth). Times inside a
night are seconds from :attr:`Night.start_utc`, the earliest sensor start.

Sampling model
--------------
A sensor's samples sit on one uniform grid ``start_utc + k / fs_hz``. The samples that
exist are stored contiguously; spans with no data are listed in :attr:`Sensor.gaps` as
``(sample_index, missing_samples)``: ``missing_samples`` grid points are absent just
before stored sample ``sample_index``. Gaps are never filled with zeros or
interpolated across. A source with irregular timestamps is resampled onto such a grid
at import; a sensor may instead carry per-sample ``timestamps_s`` (seconds from its
start) when it was stored without resampling, in which case ``fs_hz`` is nominal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from .errors import FormatError, InputError, UsageError

SIDES = ("left", "right", "unknown")

#: Columns of :attr:`Night.annotations`, in order.
ANNOTATION_COLUMNS = ("onset_s", "duration_s", "label", "side", "source")

#: Annotation labels pmld gives a meaning to. Other labels are kept as they are.
ANNOTATION_LABELS = {
    "lights_off": "lights switched off (start of the analysis window)",
    "lights_on": "lights switched on (end of the analysis window)",
    "lm": "a leg movement (reference scoring or simulator truth)",
    "posture": "a posture change or large body movement (not a candidate LM)",
    "wake": "a span of wakefulness",
    "sleep": "a span of sleep",
    "plm_series": "a span covered by a PLM series (simulator truth)",
    "apnea": "an apnea (respiratory event)",
    "hypopnea": "a hypopnea (respiratory event)",
    "arousal": "a cortical arousal",
    "nonwear": "the band was not worn",
    "out_of_bed": "awake and out of bed (simulator truth)",
    "walking": "a walking bout (simulator truth)",
    "artifact": "a disturbance that is not a leg movement (bed-partner bump, cable knock, "
    "spike; simulator truth)",
}

GAP_COLUMNS = ("sample_index", "missing_samples")


def empty_annotations() -> pd.DataFrame:
    """An annotation table with no rows and the standard columns and dtypes."""
    return pd.DataFrame(
        {
            "onset_s": pd.Series(dtype="float64"),
            "duration_s": pd.Series(dtype="float64"),
            "label": pd.Series(dtype="object"),
            "side": pd.Series(dtype="object"),
            "source": pd.Series(dtype="object"),
        }
    )


def make_annotations(
    onset_s,
    duration_s,
    label,
    side="unknown",
    source="user",
) -> pd.DataFrame:
    """Build an annotation table; scalars broadcast over the rows."""
    onset = np.atleast_1d(np.asarray(onset_s, dtype="float64"))
    n = onset.size
    frame = pd.DataFrame(
        {
            "onset_s": onset,
            "duration_s": np.broadcast_to(np.asarray(duration_s, dtype="float64"), n).copy(),
            "label": np.broadcast_to(np.asarray(label, dtype=object), n).copy(),
            "side": np.broadcast_to(np.asarray(side, dtype=object), n).copy(),
            "source": np.broadcast_to(np.asarray(source, dtype=object), n).copy(),
        }
    )
    return frame


def complement_spans(spans: pd.DataFrame, total_s: float) -> pd.DataFrame:
    """The spans of ``[0, total_s)`` not covered by ``spans`` (``onset_s, duration_s``).

    E.g. sleep from a table of wake spans.
    """
    onsets, durations, t = [], [], 0.0
    for lo, dur in spans.sort_values("onset_s")[["onset_s", "duration_s"]].to_numpy():
        if lo > t:
            onsets.append(t)
            durations.append(lo - t)
        t = max(t, lo + dur)
    if total_s > t:
        onsets.append(t)
        durations.append(total_s - t)
    return pd.DataFrame({"onset_s": onsets, "duration_s": durations}, dtype="float64")


def subtract_spans(spans, cuts) -> list[tuple[float, float]]:
    """The parts of ``spans`` outside every ``cuts`` span (both as ``(start, end)``
    pairs), in the order of ``spans``."""
    cuts = sorted(cuts)
    out = []
    for a, b in spans:
        cur = a
        for c, d in cuts:
            if d <= cur or c >= b:
                continue
            if c > cur:
                out.append((float(cur), float(c)))
            cur = max(cur, d)
            if cur >= b:
                break
        if cur < b:
            out.append((float(cur), float(b)))
    return out


def empty_gaps() -> pd.DataFrame:
    return pd.DataFrame(
        {"sample_index": pd.Series(dtype="int64"), "missing_samples": pd.Series(dtype="int64")}
    )


def as_utc(when: datetime | str) -> datetime:
    """Parse an ISO 8601 string or datetime into an aware UTC datetime.

    A naive value is refused: pmld never guesses a time zone for an absolute time.
    """
    if isinstance(when, str):
        text = when.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(
                f"start time {when!r} is not ISO 8601 (e.g. 2026-03-01T22:30:00+01:00)"
            ) from None
    if when.tzinfo is None:
        raise UsageError(
            f"start time {when.isoformat()} has no UTC offset; give one, e.g. "
            f"{when.isoformat()}+00:00"
        )
    return when.astimezone(UTC)


def check_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA time zone, else raise a :class:`UsageError`."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown IANA time zone {name!r} (e.g. Europe/Zurich, UTC)") from None
    return name


@dataclass(eq=False)
class Sensor:
    """One accelerometer (normally on one ankle).

    Parameters
    ----------
    acc_g : ndarray, shape (n, 3)
        Acceleration in g along the sensor's own axes, float32.
    fs_hz : float
        Sampling rate of the grid (nominal rate when ``timestamps_s`` is given).
    start_utc : datetime
        Aware UTC time of grid point 0 (the first sample).
    side : {'left', 'right', 'unknown'}
        Placement.
    gyro_dps : ndarray, shape (n, 3), optional
        Angular rate in degrees per second, same samples as ``acc_g``.
    gaps : DataFrame
        ``sample_index, missing_samples`` (see the module docstring).
    timestamps_s : ndarray, shape (n,), optional
        Per-sample times in seconds from ``start_utc``, only for irregular sources.
    device : dict
        Device metadata (model, serial, firmware, range_g, ...): strings and numbers.
    """

    acc_g: np.ndarray
    fs_hz: float
    start_utc: datetime
    side: str = "unknown"
    gyro_dps: np.ndarray | None = None
    gaps: pd.DataFrame = field(default_factory=empty_gaps)
    timestamps_s: np.ndarray | None = None
    device: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.acc_g = np.ascontiguousarray(self.acc_g, dtype=np.float32)
        if self.acc_g.ndim != 2 or self.acc_g.shape[1] != 3:
            raise InputError(f"acceleration must have shape (n, 3), got {self.acc_g.shape}")
        self.fs_hz = float(self.fs_hz)
        if not np.isfinite(self.fs_hz) or self.fs_hz <= 0:
            raise InputError(f"sampling rate must be a positive number of Hz, got {self.fs_hz}")
        self.start_utc = as_utc(self.start_utc)
        if self.side not in SIDES:
            raise UsageError(f"side must be one of {', '.join(SIDES)}, got {self.side!r}")
        if self.gyro_dps is not None:
            self.gyro_dps = np.ascontiguousarray(self.gyro_dps, dtype=np.float32)
            if self.gyro_dps.shape != self.acc_g.shape:
                raise InputError(
                    f"gyroscope shape {self.gyro_dps.shape} differs from acceleration "
                    f"shape {self.acc_g.shape}"
                )
        self.gaps = _clean_gaps(self.gaps, len(self.acc_g))
        if self.timestamps_s is not None:
            self.timestamps_s = np.asarray(self.timestamps_s, dtype=np.float64)
            if self.timestamps_s.shape != (len(self.acc_g),):
                raise InputError("timestamps_s must have one value per sample")

    # -- sizes and times ---------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(self.acc_g.shape[0])

    @property
    def missing_samples(self) -> int:
        return int(self.gaps["missing_samples"].sum())

    @property
    def duration_s(self) -> float:
        """Time from the first sample to one period after the last, gaps included."""
        if self.timestamps_s is not None and self.n_samples:
            return float(self.timestamps_s[-1] + 1.0 / self.fs_hz)
        return (self.n_samples + self.missing_samples) / self.fs_hz

    @property
    def recorded_s(self) -> float:
        """Time actually covered by samples (gaps excluded)."""
        return self.n_samples / self.fs_hz

    @property
    def end_utc(self) -> datetime:
        return self.start_utc + timedelta(seconds=self.duration_s)

    @property
    def is_uniform(self) -> bool:
        return self.timestamps_s is None

    def grid_index(self, samples: np.ndarray | None = None) -> np.ndarray:
        """Grid position (int64) of stored samples: the index plus the gaps before it.

        ``samples`` selects sample indices (default: every sample); an index equal to
        ``n_samples`` gives the grid position just after the last sample.
        """
        if samples is None:
            samples = np.arange(self.n_samples, dtype=np.int64)
        samples = np.asarray(samples, dtype=np.int64)
        if not len(self.gaps):
            return samples.copy()
        missing_before = np.concatenate(
            [[0], np.cumsum(self.gaps["missing_samples"].to_numpy())]
        )
        position = np.searchsorted(self.gaps["sample_index"].to_numpy(), samples, side="right")
        return samples + missing_before[position]

    def times_s(self) -> np.ndarray:
        """Time of every sample in seconds from this sensor's start (float64)."""
        if self.timestamps_s is not None:
            return self.timestamps_s
        return self.grid_index() / self.fs_hz

    def segments(self) -> Iterator[tuple[int, int]]:
        """Yield ``(first, stop)`` sample-index ranges of gap-free data."""
        first = 0
        for index in self.gaps["sample_index"].to_numpy():
            if index > first:
                yield first, int(index)
            first = int(index)
        if self.n_samples > first:
            yield first, self.n_samples

    def gap_spans_s(self) -> np.ndarray:
        """Gaps as an array of ``(start_s, end_s)`` rows, seconds from this sensor's start."""
        if not len(self.gaps):
            return np.zeros((0, 2))
        end = self.grid_index(self.gaps["sample_index"].to_numpy())
        start = end - self.gaps["missing_samples"].to_numpy()
        return np.column_stack([start, end]) / self.fs_hz


def _clean_gaps(gaps, n_samples: int) -> pd.DataFrame:
    if gaps is None or len(gaps) == 0:
        return empty_gaps()
    frame = pd.DataFrame(gaps, columns=list(GAP_COLUMNS)) if not isinstance(
        gaps, pd.DataFrame
    ) else gaps[list(GAP_COLUMNS)]
    index = frame["sample_index"].to_numpy(dtype=np.int64)
    missing = frame["missing_samples"].to_numpy(dtype=np.int64)
    if np.any(missing <= 0):
        raise InputError("every gap must miss at least one sample")
    if np.any(index < 0) or np.any(index > n_samples):
        raise InputError(f"gap sample_index outside 0..{n_samples}")
    if np.any(np.diff(index) <= 0):
        raise InputError("gaps must be sorted by sample_index, one per position")
    return pd.DataFrame({"sample_index": index, "missing_samples": missing})


@dataclass(eq=False)
class Night:
    """A night: one or two ankle sensors, the local time zone and the annotations.

    Annotation times (``onset_s``) are seconds from :attr:`start_utc`, the earliest
    sensor start. ``meta`` holds free-form provenance (source file, subject, simulator
    scenario and seed, ...): strings and numbers only.
    """

    sensors: list[Sensor]
    timezone: str = "UTC"
    annotations: pd.DataFrame = field(default_factory=empty_annotations)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.sensors, Sensor):
            self.sensors = [self.sensors]
        if not self.sensors:
            raise InputError("a night needs at least one sensor")
        sides = [s.side for s in self.sensors]
        known = [s for s in sides if s != "unknown"]
        if len(known) != len(set(known)) or (len(sides) > 1 and "unknown" in sides):
            raise InputError(f"two sensors of one night must be on different sides, got {sides}")
        check_timezone(self.timezone)
        self.annotations = _clean_annotations(self.annotations)

    @classmethod
    def from_arrays(
        cls,
        acc_g: np.ndarray,
        fs_hz: float,
        start_utc: datetime | str = "2000-01-01T00:00:00+00:00",
        *,
        side: str = "unknown",
        timezone: str = "UTC",
        gyro_dps: np.ndarray | None = None,
        annotations: pd.DataFrame | None = None,
        device: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Night:
        """A one-sensor night from an ``(n, 3)`` array in g."""
        sensor = Sensor(
            acc_g, fs_hz, as_utc(start_utc), side=side, gyro_dps=gyro_dps, device=dict(device or {})
        )
        return cls(
            [sensor],
            timezone=timezone,
            annotations=empty_annotations() if annotations is None else annotations,
            meta=dict(meta or {}),
        )

    @property
    def start_utc(self) -> datetime:
        return min(s.start_utc for s in self.sensors)

    @property
    def end_utc(self) -> datetime:
        return max(s.end_utc for s in self.sensors)

    @property
    def duration_s(self) -> float:
        return (self.end_utc - self.start_utc).total_seconds()

    @property
    def start_local(self) -> datetime:
        return self.start_utc.astimezone(ZoneInfo(self.timezone))

    @property
    def sensor(self) -> Sensor:
        """The only sensor; an error when the night has two."""
        if len(self.sensors) != 1:
            raise UsageError("this night has two sensors: choose one with night.ankle(side)")
        return self.sensors[0]

    def ankle(self, side: str) -> Sensor:
        for s in self.sensors:
            if s.side == side:
                return s
        raise UsageError(f"this night has no {side} sensor (it has {self.sides})")

    @property
    def sides(self) -> list[str]:
        return [s.side for s in self.sensors]

    def offset_s(self, sensor: Sensor) -> float:
        """Seconds from the night's start to ``sensor``'s first grid point."""
        return (sensor.start_utc - self.start_utc).total_seconds()

    def annotation(self, label: str) -> pd.DataFrame:
        """The annotations with this label, sorted by onset."""
        rows = self.annotations[self.annotations["label"] == label]
        return rows.sort_values("onset_s", kind="stable").reset_index(drop=True)

    def add_annotations(self, frame: pd.DataFrame) -> None:
        self.annotations = _clean_annotations(
            pd.concat([self.annotations, frame], ignore_index=True)
        )

    @property
    def night_date(self) -> str:
        """The local date of the evening this night belongs to (``YYYY-MM-DD``).

        ``meta["night_date"]`` when the importer set it (a multi-day device file cut
        into noon-to-noon nights), else :func:`evening_date` of the recording.
        """
        given = self.meta.get("night_date")
        if given:
            return str(given)
        return evening_date(self.start_utc, self.duration_s, self.timezone)

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{s.side} {s.n_samples} samples @ {s.fs_hz:g} Hz" for s in self.sensors
        )
        return (
            f"<Night {self.start_local.isoformat(timespec='seconds')} {self.timezone}, "
            f"{self.duration_s / 3600:.2f} h, {parts}, {len(self.annotations)} annotations>"
        )


def evening_date(start_utc: datetime, duration_s: float, timezone: str) -> str:
    """The local date of the evening a recording belongs to, as ``YYYY-MM-DD``.

    Nights are keyed by the evening they begin, as GGIR keys its noon-to-noon nights:
    the local date of the recording's midpoint less 12 hours. A recording from 22:00
    to 07:00 (midpoint 02:30) is the night of the day it started; one that starts
    after midnight (00:30 to 08:00) is the night of the day before; a noon-to-noon
    window is the night of its first noon. The local time comes from the IANA zone,
    so a night across a DST change keys the same way.
    """
    middle = as_utc(start_utc) + timedelta(seconds=max(0.0, float(duration_s)) / 2)
    local = middle.astimezone(ZoneInfo(check_timezone(timezone)))
    return (local.replace(tzinfo=None) - timedelta(hours=12)).date().isoformat()


def _clean_annotations(frame: pd.DataFrame | None) -> pd.DataFrame:
    if frame is None or len(frame) == 0:
        return empty_annotations()
    missing = [c for c in ("onset_s", "duration_s", "label") if c not in frame.columns]
    if missing:
        raise InputError(f"annotations lack column(s) {', '.join(missing)}")
    out = pd.DataFrame(
        {
            "onset_s": pd.to_numeric(frame["onset_s"]).astype("float64"),
            "duration_s": pd.to_numeric(frame["duration_s"]).astype("float64"),
            "label": frame["label"].astype(str).astype(object),
            "side": (frame["side"] if "side" in frame else "unknown"),
            "source": (frame["source"] if "source" in frame else "user"),
        }
    )
    out["side"] = out["side"].astype(str).astype(object)
    out["source"] = out["source"].astype(str).astype(object)
    bad = ~np.isfinite(out["onset_s"]) | ~np.isfinite(out["duration_s"]) | (out["duration_s"] < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"annotation row {row} has a non-finite onset or a negative duration")
    return out.sort_values("onset_s", kind="stable").reset_index(drop=True)


def combine_ankles(left: Night, right: Night) -> Night:
    """One night from two single-ankle nights, aligned by their absolute start times.

    The first must hold a left (or unknown) sensor and the second a right (or unknown)
    one; unknown sides are set to left and right. Annotations of both are kept, shifted
    to the combined night's start, without duplicates.
    """
    sensors = []
    for night, side in ((left, "left"), (right, "right")):
        if len(night.sensors) != 1:
            raise UsageError("combine two single-ankle nights, not a night with two sensors")
        sensor = night.sensors[0]
        if sensor.side not in (side, "unknown"):
            raise UsageError(f"the {side} night's sensor is marked {sensor.side!r}")
        sensors.append(
            Sensor(
                sensor.acc_g,
                sensor.fs_hz,
                sensor.start_utc,
                side=side,
                gyro_dps=sensor.gyro_dps,
                gaps=sensor.gaps,
                timestamps_s=sensor.timestamps_s,
                device=sensor.device,
            )
        )
    if left.timezone != right.timezone:
        raise UsageError(
            f"the two ankles' nights are in different time zones ({left.timezone}, "
            f"{right.timezone})"
        )
    start = min(s.start_utc for s in sensors)
    overlap = (min(s.end_utc for s in sensors) - max(s.start_utc for s in sensors)).total_seconds()
    if overlap <= 0:
        raise UsageError("the two ankles' recordings do not overlap in time")
    frames = []
    for night in (left, right):
        shift = (night.start_utc - start).total_seconds()
        frames.append(night.annotations.assign(onset_s=night.annotations["onset_s"] + shift))
    annotations = pd.concat(frames, ignore_index=True).drop_duplicates(ignore_index=True)
    meta = {**right.meta, **left.meta}
    return Night(sensors, timezone=left.timezone, annotations=annotations, meta=meta)


def parse_night_time(text: str, night: Night) -> float:
    """A time of the night as seconds from its start.

    Accepts seconds (``"1800"``), a local clock time (``"23:10"``, the first such time
    after the recording starts), or an ISO 8601 date-time with an offset.
    """
    text = str(text).strip()
    try:
        return float(text)
    except ValueError:
        pass
    if len(text) <= 8 and ":" in text and "T" not in text:
        try:
            clock = datetime.strptime(text, "%H:%M:%S" if text.count(":") == 2 else "%H:%M")
        except ValueError:
            raise UsageError(f"time {text!r} is not HH:MM, seconds, or ISO 8601") from None
        local = night.start_local
        candidate = local.replace(
            hour=clock.hour, minute=clock.minute, second=clock.second, microsecond=0
        )
        if candidate < local:
            candidate += timedelta(days=1)
        return (candidate.astimezone(UTC) - night.start_utc).total_seconds()
    try:
        return (as_utc(text) - night.start_utc).total_seconds()
    except UsageError:
        raise UsageError(
            f"time {text!r} is not seconds from the start, a local HH:MM, or ISO 8601 "
            "with an offset"
        ) from None


# -- calibration ---------------------------------------------------------------------
@dataclass
class Calibration:
    """What was done to calibrate one sensor, and why.

    Attributes
    ----------
    offset_g : ndarray, shape (3,)
    scale : ndarray, shape (3,)
        Applied as ``calibrated = raw * scale + offset_g`` per axis (identity: offset 0,
        scale 1, when ``status`` is ``none``).
    status : {'autocalibrated', 'stored', 'none'}
    reason : str
        One line: why this status (what failed, which stored file was used, ...).
    error_before_g, error_after_g : float
        Mean ``|1 - |a||`` over the night's still points before and after calibration
        (for ``none`` both are the uncalibrated error); NaN when unknown (no still
        points, or calibration off).
    n_points : int
        Still epochs the figures above are computed over.
    device : dict
        ``serial`` and ``model`` of the sensor when known.
    source : str
        The stored calibration file used (``status='stored'``), else ``""``.
    details : dict
        Extra facts: iterations, the per-axis range of the points, epochs examined, ...
    """

    offset_g: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: np.ndarray = field(default_factory=lambda: np.ones(3))
    status: str = "none"
    reason: str = ""
    error_before_g: float = math.nan
    error_after_g: float = math.nan
    n_points: int = 0
    device: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.offset_g = np.asarray(self.offset_g, dtype=np.float64).reshape(3)
        self.scale = np.asarray(self.scale, dtype=np.float64).reshape(3)

    @property
    def applied(self) -> bool:
        """True when :meth:`apply` changes the data."""
        return self.status != "none"

    @property
    def serial(self) -> str | None:
        serial = self.device.get("serial")
        return None if serial in (None, "") else str(serial)

    def apply(self, acc_g: np.ndarray) -> np.ndarray:
        """``acc_g * scale + offset_g`` as a new float32 ``(n, 3)`` array.

        With status ``none`` the input itself is returned (as float32, copied only if
        it was not float32). NaN samples stay NaN.
        """
        acc = np.asarray(acc_g, dtype=np.float32)
        if not self.applied:
            return acc
        out = acc * self.scale.astype(np.float32)
        out += self.offset_g.astype(np.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (NaN stays a float NaN; see
        :func:`pmld.io.calibration.write_device_calibration` for strict JSON)."""
        return {
            "status": self.status,
            "reason": self.reason,
            "offset_g": [float(v) for v in self.offset_g],
            "scale": [float(v) for v in self.scale],
            "convention": "calibrated = raw * scale + offset_g",
            "error_before_g": float(self.error_before_g),
            "error_after_g": float(self.error_after_g),
            "n_points": int(self.n_points),
            "device": dict(self.device),
            "source": self.source,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict` (``None`` reads as NaN)."""
        try:
            offset = np.asarray(values["offset_g"], dtype=np.float64)
            scale = np.asarray(values["scale"], dtype=np.float64)
        except KeyError as exc:
            raise FormatError(f"calibration lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError):
            raise FormatError("calibration offset_g and scale must be 3 numbers") from None
        if offset.shape != (3,) or scale.shape != (3,):
            raise FormatError("calibration offset_g and scale must be 3 numbers each")
        if not (np.isfinite(offset).all() and np.isfinite(scale).all()) or (scale <= 0).any():
            raise FormatError("calibration offset_g and scale must be finite, scale > 0")
        status = str(values.get("status", "none"))
        if status not in ("autocalibrated", "stored", "none"):
            raise FormatError(f"unknown calibration status {status!r}")
        device = values.get("device") or {}
        if not isinstance(device, dict):
            raise FormatError("calibration device must be an object")
        return cls(
            offset_g=offset,
            scale=scale,
            status=status,
            reason=str(values.get("reason", "")),
            error_before_g=_float(values.get("error_before_g")),
            error_after_g=_float(values.get("error_after_g")),
            n_points=int(values.get("n_points") or 0),
            device=dict(device),
            source=str(values.get("source") or ""),
            details=dict(values.get("details") or {}),
        )


def _float(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        raise FormatError(f"expected a number, got {value!r}") from None
