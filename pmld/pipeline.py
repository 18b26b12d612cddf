"""A night from acceleration to PLM indices: the pipeline behind ``pmld analyze``.

``analyze(night)`` detects leg movements on each ankle on its own (:mod:`pmld.detect`),
merges the two ankles' movements and scores them by the clinical rules
(:mod:`pmld.score`) inside the analysis window, and returns a :class:`NightAnalysis`
with the events, the indices, the quality findings and the exact parameters used.
Its core is :class:`PreparedNight`: a night split into gap- and NaN-free stretches and
checked once, whose :meth:`PreparedNight.scores` runs the parameter-dependent steps and
keeps what it can reuse (the activity signal per preprocessing value, the detection per
detection parameters), so that :mod:`pmld.sweep` runs many parameter sets on one night
through the very code ``analyze`` runs once.

Analysis window
---------------
From lights-off to lights-on when given (arguments, or ``lights_off``/``lights_on``
annotations), else the whole recording. Time with no data (gaps) is not analysed
time: indices are per hour of time that was both inside the window and recorded. A
gap of ``break_gap_s`` or longer ends any PLM series, because a movement may have
been missed in it.

Sleep and wake
--------------
Until sleep is estimated from the ankle, the whole window counts as sleep unless the
night carries ``sleep``/``wake`` annotations from a reference or a user (annotations
with source ``simulator`` are ground truth for evaluation, never analysis input).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .detect import (
    PREPROCESSING_PARAMS,
    DetectionParams,
    activity_signal,
    empty_lm_table,
    find_leg_movements,
    resting_floor,
    thresholds,
)
from .errors import UsageError
from .night import Night, Sensor, complement_spans
from .score import (
    ScoringRules,
    imi_histograms,
    plm_series,
    rules_preset,
    score_leg_movements,
    summarize,
)

#: Shortest night that is analysed at all (s).
MIN_NIGHT_S = 60.0


@dataclass(frozen=True)
class WindowParams:
    """Parameters of the analysis window and data quality.

    Attributes
    ----------
    lights_off_s, lights_on_s : float or None
        Analysis window in seconds from the night's start; None takes the night's
        ``lights_off``/``lights_on`` annotations, or the recording's ends.
    break_gap_s : float
        A gap at least this long ends PLM series (s).
    clip_fraction : float
        Fraction of samples at the sensor's range above which a night is flagged as
        clipped.
    """

    lights_off_s: float | None = None
    lights_on_s: float | None = None
    break_gap_s: float = 5.0
    clip_fraction: float = 0.01

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("lights_off_s", "lights_on_s"):
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not np.isfinite(value):
                raise UsageError(f"window parameter {f.name} must be a number, got {value!r}")
            if f.name in ("break_gap_s", "clip_fraction") and value < 0:
                raise UsageError(f"window parameter {f.name} must be >= 0, got {value}")
            object.__setattr__(self, f.name, float(value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NightAnalysis:
    """The result of analysing one night.

    Attributes
    ----------
    events : DataFrame
        One row per scored LM after the bilateral merge (see :mod:`pmld.score`), with
        the detector's amplitude measures.
    series : DataFrame
        One row per PLM series.
    monolateral : DataFrame
        The detector's LMs of each ankle before the merge, with ``side``.
    indices : dict
        The night's indices and counts (:func:`pmld.score.summarize`).
    histograms : dict
        IMI and ln(IMI) histograms with their bin edges.
    quality : dict
        Findings about the data (flags with reasons, per-ankle floor and thresholds).
    parameters : dict
        The full resolved parameters: ``rules_preset`` (the preset the rules started
        from), ``detection``, ``rules``, ``window``.
    night_info : dict
        Start time, time zone, night date, sides, duration, analysis window.
    epochs : DataFrame or None
        One row per 30 s epoch per ankle: activity, posture angle, non-wear, sleep
        period and sleep (:mod:`pmld.sleep`); None when sleep was not estimated.
    gaps : DataFrame
        Spans with no data per ankle (``side, onset_s, duration_s``): gaps in the
        recording and runs of NaN samples.
    sleep : dict
        Where sleep and wake came from (``source``: ``annotations``, ``estimate`` or
        ``none``), the sleep period, hours asleep, awake and without wear, the
        estimate's flags, and the ``spans`` (sleep/wake) and ``nonwear`` tables.
    calibration : list of dict
        What was done to calibrate each ankle (:class:`pmld.signal.Calibration`).
    """

    events: pd.DataFrame
    series: pd.DataFrame
    monolateral: pd.DataFrame
    indices: dict[str, Any]
    histograms: dict[str, np.ndarray]
    quality: dict[str, Any]
    parameters: dict[str, Any]
    night_info: dict[str, Any]
    inputs: list[dict[str, str]] = field(default_factory=list)
    pmld_version: str = __version__
    epochs: pd.DataFrame | None = None
    gaps: pd.DataFrame | None = None
    sleep: dict[str, Any] = field(default_factory=dict)
    calibration: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The headline figures as a flat dict."""
        keys = (
            "plm_index",
            "plm_count",
            "plms_index",
            "lm_count",
            "lm_index",
            "clm_count",
            "clm_index",
            "periodicity_index",
            "plm_series_count",
            "severity_band",
            "abnormal",
            "analyzed_hours",
        )
        out = {k: self.indices[k] for k in keys if k in self.indices}
        out["rules"] = self.parameters["rules_preset"]
        out["flags"] = list(self.quality.get("flags", []))
        return out

    def to_hdf5(self, path) -> None:
        """Write the nightly summary file (pmld-summary schema v1)."""
        from .io.summary import write_summary

        write_summary(self, path)

    def get_mask(self, times_s: np.ndarray, which: str = "plm") -> np.ndarray:
        """Boolean mask of the times that fall inside LMs (``which='lm'``) or PLMs."""
        rows = self.events if which == "lm" else self.events[self.events["plm"]]
        times_s = np.asarray(times_s, dtype=float)
        mask = np.zeros(times_s.shape, dtype=bool)
        if len(rows):
            order = np.argsort(rows["onset_s"].to_numpy(), kind="stable")
            starts = rows["onset_s"].to_numpy()[order]
            # LMs may overlap (two legs under AASM rules, a long LM and a short one): a
            # time is inside when any LM begun before it ends after it
            reach = np.maximum.accumulate(rows["offset_s"].to_numpy()[order])
            pos = np.searchsorted(starts, times_s, side="right") - 1
            valid = pos >= 0
            mask[valid] = times_s[valid] < reach[pos[valid]]
        return mask


def split_params(params: dict[str, Any]) -> tuple[dict, dict, dict]:
    """Route ``name=value`` overrides to the detection, scoring or window stage."""
    detection_names = {f.name for f in fields(DetectionParams)}
    rules_names = {f.name for f in fields(ScoringRules)}
    window_names = {f.name for f in fields(WindowParams)}
    detection, rules, window = {}, {}, {}
    for name, value in params.items():
        if name in detection_names:
            detection[name] = value
        elif name in rules_names:
            rules[name] = value
        elif name in window_names:
            window[name] = value
        else:
            known = sorted(detection_names | rules_names | window_names)
            raise UsageError(f"unknown parameter {name!r}; known parameters: {', '.join(known)}")
    return detection, rules, window


def analyze(
    night: Night,
    rules: str | ScoringRules = "wasm2016",
    *,
    detection: DetectionParams | None = None,
    window: WindowParams | None = None,
    **params: Any,
) -> NightAnalysis:
    """Detect and score the leg movements of a night.

    Parameters
    ----------
    night : Night
        One or two ankles.
    rules : str or ScoringRules
        A rule preset (``'wasm2016'``, ``'aasm'``, ``'strict'``) or rules.
    detection : DetectionParams, optional
    window : WindowParams, optional
    **params
        Overrides of any detection, scoring or window parameter by name, e.g.
        ``onset_ratio=5`` or ``min_imi_s=5``.

    Returns
    -------
    NightAnalysis
    """
    det_over, rule_over, win_over = split_params(params)
    detection = DetectionParams(**{**(detection or DetectionParams()).to_dict(), **det_over})
    if isinstance(rules, str):
        preset = rules
        rules = rules_preset(rules, **rule_over)
    else:
        preset = "custom"
        rules = replace(rules, **rule_over) if rule_over else rules
    window = WindowParams(**{**(window or WindowParams()).to_dict(), **win_over})

    _analysis_window(night, window, [])  # an empty window is told before a bad sensor
    prepared = PreparedNight(night)
    result = prepared.scores(detection, rules, window)
    events = result.events
    start_s, stop_s = result.window_s
    return NightAnalysis(
        events=events,
        series=plm_series(events),
        monolateral=result.monolateral.reset_index(drop=True),
        indices=result.indices,
        histograms=imi_histograms(events),
        quality=prepared.quality(detection, window, result.analyzed_s),
        parameters={
            "rules_preset": preset,
            "detection": detection.to_dict(),
            "rules": rules.to_dict(),
            "window": window.to_dict(),
        },
        night_info={
            "start_utc": night.start_utc.isoformat(),
            "timezone": night.timezone,
            "night_date": night.night_date,
            "sides": night.sides,
            "duration_s": night.duration_s,
            "window_start_s": start_s,
            "window_stop_s": stop_s,
            "meta": dict(night.meta),
        },
        gaps=prepared.gaps(),
    )


# -- one night, prepared once ----------------------------------------------------------
@dataclass
class _SensorInput:
    """What one ankle gives before any parameter comes in: its gap- and NaN-free
    stretches on the night's clock and the parameter-free signal checks."""

    side: str
    fs_hz: float
    stretches: list[tuple[int, int, float]]  # first sample, stop sample, t0 (s)
    spans: list[tuple[float, float]]  # the stretches' time spans (s)
    acc_g: np.ndarray
    gyro_dps: np.ndarray | None
    range_g: Any
    flags: list[str]  # the findings that no parameter changes, in order
    checks: dict[str, Any]  # flat, median_magnitude_g, clipped_fraction

    @property
    def flat(self) -> bool:
        return bool(self.checks.get("flat"))


@dataclass
class NightScores:
    """What one parameter set gives on a night: as :func:`analyze` reports it.

    ``monolateral`` is the detector's LMs of every ankle sorted by onset (its index is
    not reset); ``window_s`` the analysis window; ``analyzed_s`` the recorded time in
    it.
    """

    events: pd.DataFrame
    indices: dict[str, Any]
    window_s: tuple[float, float]
    monolateral: pd.DataFrame
    analyzed_s: float = 0.0


class PreparedNight:
    """A night with the work that no parameter changes done once: the core of
    :func:`analyze`, reusable across parameter sets (:mod:`pmld.sweep`).

    :meth:`scores` gives the events and indices of :func:`analyze` for any parameters,
    computing the activity signal and resting floor once per distinct value of
    :data:`pmld.detect.PREPROCESSING_PARAMS`, the detection once per detection
    parameter set and the analysis window once per window.

    Parameters
    ----------
    night : Night

    Raises
    ------
    UsageError
        A sensor with irregular timestamps.
    """

    def __init__(self, night: Night):
        self.night = night
        self._sensors = [self._sensor_input(sensor) for sensor in night.sensors]
        self._sleep = _sleep_spans(night)
        self._respiratory = _events(night, ("apnea", "hypopnea"))
        self._arousals = _events(night, ("arousal",))
        self._activity: dict[tuple, list] = {}
        self._detected: dict[DetectionParams, tuple[pd.DataFrame, list]] = {}
        self._windows: dict[tuple, tuple] = {}
        self._parts_cache: dict[tuple, tuple] = {}

    def _sensor_input(self, sensor: Sensor) -> _SensorInput:
        """Split one ankle at its gaps and NaN samples (NaN samples are missing data)."""
        if not sensor.is_uniform:
            raise UsageError(
                f"the {sensor.side} sensor has irregular timestamps; import it with "
                "resampling (pmld import) before analysis"
            )
        acc = sensor.acc_g
        flags: list[str] = []
        # One summed pass finds any NaN or inf; only then look for the rows.
        if np.isfinite(acc.sum()):
            nan_rows, n_nan = None, 0
        else:
            nan_rows = ~np.isfinite(acc).all(axis=1)
            n_nan = int(nan_rows.sum())
        if n_nan:
            flags.append(f"{sensor.side}: {n_nan} samples with NaN treated as missing data")
        bounds = []
        for first, stop in sensor.segments():
            if n_nan:
                bad = np.flatnonzero(nan_rows[first:stop]) + first
                cuts = np.concatenate([[first - 1], bad, [stop]])
                for lo, hi in zip(cuts[:-1] + 1, cuts[1:], strict=True):
                    if hi > lo:
                        bounds.append((int(lo), int(hi)))
            else:
                bounds.append((first, stop))
        offset = self.night.offset_s(sensor)
        fs = sensor.fs_hz
        starts = sensor.grid_index(np.array([first for first, _ in bounds], dtype=np.int64))
        stretches, spans = [], []
        for (first, stop), grid_start in zip(bounds, starts, strict=True):
            t0 = grid_start / fs + offset
            spans.append((t0, t0 + (stop - first) / fs))
            stretches.append((first, stop, t0))
        checks: dict[str, Any] = {}
        _signal_checks(sensor, acc[~nan_rows] if n_nan else acc, flags, checks)
        return _SensorInput(
            sensor.side, fs, stretches, spans, acc, sensor.gyro_dps,
            sensor.device.get("range_g"), flags, checks,
        )

    def gaps(self) -> pd.DataFrame:
        """Spans without data on the night's clock, per ankle: the recording's gaps,
        runs of NaN samples, and a later start or earlier end than the other ankle."""
        rows = []
        end_s = self.night.duration_s
        for sensor in self._sensors:
            edges = [0.0] + [x for span in sensor.spans for x in span] + [end_s]
            for lo, hi in zip(edges[::2], edges[1::2], strict=True):
                if hi - lo > 0.5 / sensor.fs_hz:
                    rows.append((sensor.side, lo, hi - lo))
        return pd.DataFrame(rows, columns=["side", "onset_s", "duration_s"]).astype(
            {"side": object, "onset_s": float, "duration_s": float}
        )

    def preprocess(self, detection: DetectionParams) -> list:
        """Activity signals and resting floor of each sensor for these parameters
        (computed on the first call for each :data:`PREPROCESSING_PARAMS` value)."""
        key = tuple(getattr(detection, name) for name in PREPROCESSING_PARAMS)
        if key not in self._activity:
            prepared = []
            for sensor in self._sensors:
                activities = [
                    (
                        t0,
                        activity_signal(
                            sensor.acc_g[first:stop],
                            sensor.fs_hz,
                            detection,
                            gyro_dps=None if sensor.gyro_dps is None
                            else sensor.gyro_dps[first:stop],
                        ),
                    )
                    for first, stop, t0 in sensor.stretches
                ]
                all_activity = (
                    np.concatenate([a.activity_g for _, a in activities])
                    if activities
                    else np.zeros(0)
                )
                prepared.append((activities, resting_floor(all_activity, detection)))
            self._activity[key] = prepared
        return self._activity[key]

    def _detection(self, detection: DetectionParams) -> tuple[pd.DataFrame, list]:
        """The monolateral LMs, and per sensor its floor, thresholds and LM count."""
        if detection not in self._detected:
            tables, per_sensor = [], []
            for sensor, (activities, floor) in zip(
                self._sensors, self.preprocess(detection), strict=True
            ):
                onset_g, offset_g = thresholds(floor, detection)
                count = 0
                if not sensor.flat:
                    for t0, activity in activities:
                        lms = find_leg_movements(activity, onset_g, offset_g, detection)
                        if len(lms):
                            lms["onset_s"] = lms["onset_s"].to_numpy() + t0
                            lms["offset_s"] = lms["offset_s"].to_numpy() + t0
                            lms["side"] = sensor.side
                            tables.append(lms)
                            count += len(lms)
                per_sensor.append((floor, onset_g, offset_g, count))
            if not tables:
                lms = empty_lm_table().assign(side=pd.Series(dtype=object))
            else:
                lms = tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)
                onset = lms["onset_s"].to_numpy()
                if (np.diff(onset) < 0).any():  # two ankles (one's stretches are in order)
                    lms = lms.iloc[np.argsort(onset, kind="stable")].reset_index(drop=True)
            self._detected[detection] = (lms, per_sensor)
        return self._detected[detection]

    def detect(self, detection: DetectionParams) -> pd.DataFrame:
        """The monolateral LMs of every sensor, sorted by onset (``side`` column)."""
        return self._detection(detection)[0]

    def clear(self) -> None:
        """Forget the activity signals and detections computed so far (the sweep does
        so after each preprocessing group, so that a worker holds one group at a time)."""
        self._activity.clear()
        self._detected.clear()
        self._parts_cache.clear()

    def _window(self, window: WindowParams) -> tuple:
        """The analysis window, its islands and the time analysed and asleep (once per
        distinct window)."""
        key = (window.lights_off_s, window.lights_on_s, window.break_gap_s)
        if key not in self._windows:
            start_s, stop_s = _analysis_window(self.night, window, [])
            covered = [sensor.spans for sensor in self._sensors]
            islands = _coverage(covered, start_s, stop_s, window.break_gap_s)
            # sleep time counts recorded time only: the spans, not the islands with holes
            sleep_wake = _sleep_wake_time(self._sleep, _coverage(covered, start_s, stop_s, 0.0))
            self._windows[key] = (start_s, stop_s, islands, sleep_wake)
        return self._windows[key]

    def _parts(self, detection: DetectionParams, window: WindowParams, lean: bool):
        """The LMs inside the window, and those of each island that has any."""
        start_s, stop_s, islands, _ = self._window(window)
        key = (detection, start_s, stop_s, window.break_gap_s, lean)
        if key not in self._parts_cache:
            monolateral = self.detect(detection)
            onset = monolateral["onset_s"]
            inside = monolateral[(onset >= start_s) & (onset < stop_s)].reset_index(drop=True)
            if lean:
                inside = inside[["onset_s", "offset_s", "side", "kind"]]
            parts = []
            for lo, hi, _ in islands:
                part = inside[(inside["onset_s"] >= lo) & (inside["onset_s"] < hi)]
                if len(part):
                    parts.append(part)
            self._parts_cache[key] = (inside, parts)
        return self._parts_cache[key]

    @property
    def _all_flat(self) -> bool:
        return all(sensor.flat for sensor in self._sensors)

    def scores(
        self,
        detection: DetectionParams | None = None,
        rules: ScoringRules | None = None,
        window: WindowParams | None = None,
        *,
        lean: bool = False,
    ) -> NightScores:
        """Events and indices with these parameters, equal to those of
        ``analyze(night, rules, detection=detection, window=window)``.

        ``lean=True`` scores the LMs without the detector's amplitude columns and leaves
        the tables' ``attrs`` empty: the same rows with the same values in
        :data:`pmld.score.SCORED_COLUMNS` and the same indices (the amplitudes only
        break ties between identical movements, which one detector never gives), in
        about half the time. The sweep uses it.
        """
        detection = detection or DetectionParams()
        rules = rules or ScoringRules()
        window = window or WindowParams()
        monolateral = self.detect(detection)
        start_s, stop_s, islands, (sleep_s, wake_s) = self._window(window)
        analyzed_s = float(sum(cov for _, _, cov in islands))
        inside, parts = self._parts(detection, window, lean)
        scored_parts = []
        next_id = {"series_id": 0, "series_id_nonresp": 0}
        if analyzed_s >= MIN_NIGHT_S:
            for part in parts:
                scored = score_leg_movements(
                    part,
                    rules,
                    respiratory=self._respiratory,
                    arousals=self._arousals,
                    sleep=self._sleep,
                )
                if lean:
                    scored.attrs.clear()
                for column in next_id:  # number series through the night, not per island
                    series = scored[column].to_numpy()
                    if next_id[column]:
                        series = np.where(series >= 0, series + next_id[column], series)
                        scored[column] = series
                    if (series >= 0).any():
                        next_id[column] = int(series.max()) + 1
                scored_parts.append(scored)
        if len(scored_parts) == 1 and lean:
            events = scored_parts[0]
        elif scored_parts:
            events = pd.concat(scored_parts, ignore_index=True)
        else:
            events = score_leg_movements(inside.iloc[:0], rules)
            if lean:
                events.attrs.clear()
        if analyzed_s > 0:
            indices = summarize(events, analyzed_s, sleep_s=sleep_s, wake_s=wake_s)
        else:  # no data in the window: the counts are 0 and every index NaN (below)
            indices = {
                **summarize(events, 1.0), "analyzed_h": 0.0, "sleep_h": 0.0, "wake_h": 0.0
            }
        indices["analyzed_hours"] = analyzed_s / 3600
        if analyzed_s < MIN_NIGHT_S or self._all_flat:
            for key, value in indices.items():
                if key.endswith("_index") and isinstance(value, float):
                    indices[key] = float("nan")
            indices["severity_band"] = "unknown"
            indices["abnormal"] = False
        return NightScores(events, indices, (start_s, stop_s), monolateral, analyzed_s)

    def quality(
        self, detection: DetectionParams, window: WindowParams, analyzed_s: float
    ) -> dict[str, Any]:
        """:attr:`NightAnalysis.quality`: the flags (each ankle's in turn, then the
        night's) and each ankle's floor, thresholds, signal checks and LM count."""
        flags: list[str] = []
        sensors = {}
        for sensor, (floor, onset_g, offset_g, count) in zip(
            self._sensors, self._detection(detection)[1], strict=True
        ):
            flags.extend(sensor.flags)
            clipped = sensor.checks.get("clipped_fraction")
            if clipped is not None and clipped > window.clip_fraction:
                flags.append(
                    f"{sensor.side}: {clipped:.1%} of samples at the sensor's range of "
                    f"+-{float(sensor.range_g):g} g (clipped)"
                )
            sensors[sensor.side] = {
                "floor_g": floor,
                "onset_threshold_g": onset_g,
                "offset_threshold_g": offset_g,
                **sensor.checks,
                "lm_count": count,
            }
        if analyzed_s < MIN_NIGHT_S:
            flags.append(
                f"too short to analyse: {analyzed_s:.0f} s of data in the window "
                f"(at least {MIN_NIGHT_S:.0f} s needed)"
            )
        if self._all_flat:
            flags.append("no sensor gave a usable signal: the indices are unknown, not zero")
        return {"flags": flags, "sensors": sensors}


def _analysis_window(night: Night, window: WindowParams, flags: list[str]) -> tuple[float, float]:
    start, stop = 0.0, night.duration_s
    off = window.lights_off_s
    on = window.lights_on_s
    if off is None:
        off = _lights(night, "lights_off", first=True)
    if on is None:
        on = _lights(night, "lights_on", first=False)
    if off is not None:
        start = max(start, float(off))
    if on is not None:
        stop = min(stop, float(on))
    if stop <= start:
        raise UsageError(
            f"the analysis window is empty: lights off at {start:.0f} s is not before "
            f"lights on at {stop:.0f} s (the recording lasts {night.duration_s:.0f} s)"
        )
    return start, stop


#: Whose lights-off/on annotations win, best first: a reference scoring (PSG), the user
#: or the recorder, then anything else (the simulator's truth last).
_LIGHTS_PRIORITY = ("reference", "user", "recorder")


def _lights(night: Night, label: str, *, first: bool) -> float | None:
    """Lights-off (the first) or lights-on (the last) of the most trusted source."""
    table = night.annotation(label)
    if not len(table):
        return None
    sources = table["source"].astype(str)
    for source in _LIGHTS_PRIORITY:
        if (sources == source).any():
            table = table[sources == source]
            break
    else:
        if (sources != "simulator").any():
            table = table[sources != "simulator"]
    onsets = table["onset_s"].to_numpy(float)
    return float(onsets.min() if first else onsets.max())


def _signal_checks(sensor: Sensor, acc: np.ndarray, flags, quality) -> None:
    """The findings on a sensor's valid samples that no parameter changes (the clipped
    fraction's flag depends on ``clip_fraction``: :meth:`PreparedNight.quality`)."""
    side = sensor.side
    if acc.size == 0:
        quality["flat"] = True
        flags.append(f"{side}: no valid samples")
        return
    sample = acc[:: max(1, len(acc) // 20000)]
    spread = float(np.ptp(sample, axis=0).max())
    if sensor.gyro_dps is not None:
        gyro = sensor.gyro_dps[:: max(1, len(sensor.gyro_dps) // 20000)]
        # a gyroscope that moves is a sensor that works
        spread = max(spread, float(np.nanmax(np.ptp(gyro, axis=0))) * 0.01)
    if spread < 1e-4:
        quality["flat"] = True
        flags.append(
            f"{side}: the signal is flat (all {sample[0].round(3).tolist()} g): a stuck or "
            "unpowered sensor; no movements can be detected"
        )
    magnitude = float(np.median(np.linalg.norm(sample, axis=1)))
    quality["median_magnitude_g"] = magnitude
    if not quality.get("flat") and not 0.7 <= magnitude <= 1.3:
        flags.append(
            f"{side}: median acceleration magnitude is {magnitude:.2f} g, not about 1 g: "
            "wrong units or an uncalibrated sensor"
        )
    range_g = sensor.device.get("range_g")
    if range_g:
        at_range = np.abs(sample) >= float(range_g) * 0.999
        # samples, not axis values
        quality["clipped_fraction"] = float(np.mean(at_range.any(axis=1)))


def _coverage(covered, start_s, stop_s, break_gap_s) -> list[tuple[float, float, float]]:
    """Recorded time inside the window as ``(lo, hi, covered_s)`` islands.

    Spans of both ankles are united; a hole shorter than ``break_gap_s`` joins two
    spans into one island but its time is not counted in ``covered_s``.
    """
    spans = sorted(
        (max(lo, start_s), min(hi, stop_s))
        for sensor_spans in covered
        for lo, hi in sensor_spans
        if min(hi, stop_s) > max(lo, start_s)
    )
    islands: list[list[float]] = []
    for lo, hi in spans:
        if islands and lo - islands[-1][1] < break_gap_s:
            last = islands[-1]
            last[2] += max(0.0, hi - max(lo, last[1]))
            last[1] = max(last[1], hi)
        else:
            islands.append([lo, hi, hi - lo])
    return [(lo, hi, cov) for lo, hi, cov in islands]


def _sleep_spans(night: Night) -> pd.DataFrame | None:
    rows = night.annotations[
        night.annotations["label"].isin(["sleep"]) & (night.annotations["source"] != "simulator")
    ]
    wake = night.annotations[
        night.annotations["label"].isin(["wake"]) & (night.annotations["source"] != "simulator")
    ]
    if len(rows):
        return rows[["onset_s", "duration_s"]].reset_index(drop=True)
    if len(wake):
        return complement_spans(wake, night.duration_s)
    return None


def _sleep_wake_time(sleep, islands) -> tuple[float | None, float | None]:
    if sleep is None:
        return None, None
    total = sum(cov for _, _, cov in islands)
    asleep = 0.0
    for lo, hi, _ in islands:
        for onset, duration in sleep[["onset_s", "duration_s"]].to_numpy():
            asleep += max(0.0, min(hi, onset + duration) - max(lo, onset))
    asleep = min(asleep, total)
    return asleep, total - asleep


def _events(night: Night, labels: tuple[str, ...]) -> pd.DataFrame | None:
    rows = night.annotations[
        night.annotations["label"].isin(labels) & (night.annotations["source"] != "simulator")
    ]
    if not len(rows):
        return None
    return rows[["onset_s", "duration_s", "label"]].reset_index(drop=True)
