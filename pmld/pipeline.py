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
from .night import Night, Sensor, complement_spans, subtract_spans
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


#: Where sleep and wake can come from (:attr:`WindowParams.sleep_source`).
SLEEP_SOURCES = ("auto", "annotations", "estimate", "none")


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
    sleep_source : {'auto', 'annotations', 'estimate', 'none'}
        Where sleep and wake come from. ``annotations``: the night's ``sleep``/``wake``
        annotations from a reference scoring or the user; ``estimate``: estimated from
        the ankle (:mod:`pmld.sleep`); ``none``: the whole window counts as sleep;
        ``auto`` (default): the annotations when there are any, else the estimate.
        With the estimate, a night without lights-off/on is analysed over the
        estimated sleep period.
    """

    lights_off_s: float | None = None
    lights_on_s: float | None = None
    break_gap_s: float = 5.0
    clip_fraction: float = 0.01
    sleep_source: str = "auto"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "sleep_source":
                if value not in SLEEP_SOURCES:
                    raise UsageError(
                        f"window parameter sleep_source must be one of "
                        f"{', '.join(SLEEP_SOURCES)}, got {value!r}"
                    )
                continue
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


#: The parameter stages of an analysis, in the order of ``NightAnalysis.parameters``.
STAGES = ("detection", "rules", "window", "calibration", "sleep")


def _stage_classes() -> dict[str, type]:
    from .signal import CalibrationParams
    from .sleep import SleepParams

    return {
        "detection": DetectionParams,
        "rules": ScoringRules,
        "window": WindowParams,
        "calibration": CalibrationParams,
        "sleep": SleepParams,
    }


def split_stages(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Route ``name=value`` overrides to their stage (:data:`STAGES`).

    A name may be given as ``stage.name`` (``sleep.epoch_s``); a bare name must belong
    to one stage only.
    """
    names = {stage: {f.name for f in fields(cls)} for stage, cls in _stage_classes().items()}
    out: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES}
    for name, value in params.items():
        stage, dot, field_name = name.partition(".")
        if dot:
            if stage not in names:
                raise UsageError(
                    f"unknown parameter stage {stage!r} in {name!r}; stages: {', '.join(STAGES)}"
                )
            if field_name not in names[stage]:
                raise _unknown_parameter(field_name, names[stage], f"{stage} parameter")
            out[stage][field_name] = value
            continue
        owners = [stage for stage in STAGES if name in names[stage]]
        if len(owners) > 1 and owners[0] in ("detection", "rules", "window"):
            owners = owners[:1]  # the detector's, rules' and window's names keep their meaning
        if len(owners) > 1:
            choices = " or ".join(f"{stage}.{name}" for stage in owners)
            raise UsageError(f"parameter {name!r} is ambiguous: say {choices}")
        if not owners:
            raise _unknown_parameter(name, set().union(*names.values()), "parameter")
        out[owners[0]][name] = value
    return out


def _unknown_parameter(name: str, known: set[str], what: str) -> UsageError:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "'pmld params' lists every name"
    return UsageError(f"unknown {what} {name!r}; {hint}")


def split_params(params: dict[str, Any]) -> tuple[dict, dict, dict]:
    """Route ``name=value`` overrides to the detection, scoring or window stage
    (calibration and sleep parameters are refused: see :func:`split_stages`)."""
    stages = split_stages(params)
    for stage in ("calibration", "sleep"):
        if stages[stage]:
            raise UsageError(
                f"{stage} parameters ({', '.join(stages[stage])}) cannot be set here"
            )
    return stages["detection"], stages["rules"], stages["window"]


def resolve_stages(
    rules: str | ScoringRules = "wasm2016", params: dict[str, Any] | None = None, **given: Any
) -> tuple[str, dict[str, Any]]:
    """The rule preset's name and every stage's parameter object for a preset (or
    rules), the stage objects in ``given`` (``detection=...``) and overrides by name."""
    overrides = split_stages(dict(params or {}))
    classes = _stage_classes()
    objects: dict[str, Any] = {}
    for stage in STAGES:
        base = given.get(stage)
        if stage == "rules":
            if isinstance(rules, str):
                preset = rules
                objects[stage] = rules_preset(rules, **overrides[stage])
            else:
                preset = "custom"
                objects[stage] = replace(rules, **overrides[stage]) if overrides[stage] else rules
            continue
        if base is None:
            objects[stage] = classes[stage](**overrides[stage])
        elif overrides[stage]:
            objects[stage] = replace(base, **overrides[stage])
        else:
            objects[stage] = base
    return preset, objects


def resolve_parameters(rules: str = "wasm2016", params: dict[str, Any] | None = None) -> dict:
    """The full parameters :func:`analyze` resolves (``NightAnalysis.parameters``)."""
    preset, objects = resolve_stages(rules, params)
    return {"rules_preset": preset, **{stage: objects[stage].to_dict() for stage in STAGES}}


def analyze(
    night: Night,
    rules: str | ScoringRules = "wasm2016",
    *,
    detection: DetectionParams | None = None,
    window: WindowParams | None = None,
    calibration: Any = None,
    sleep: Any = None,
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
    calibration : pmld.signal.CalibrationParams, optional
        How each ankle is calibrated to gravity first (default: autocalibration,
        else a stored device calibration, else none; recorded in the result).
    sleep : pmld.sleep.SleepParams, optional
        How the sleep period, sleep/wake and non-wear are estimated from the ankle.
    **params
        Overrides of any parameter by name, e.g. ``onset_ratio=5`` or ``min_imi_s=5``
        (``stage.name`` where a name belongs to two stages, e.g. ``sleep.epoch_s``).

    Returns
    -------
    NightAnalysis
    """
    preset, stages = resolve_stages(
        rules, params, detection=detection, window=window, calibration=calibration, sleep=sleep
    )
    detection, rules, window = stages["detection"], stages["rules"], stages["window"]

    _analysis_window(night, window, [])  # an empty window is told before a bad sensor
    prepared = PreparedNight(night, calibration=stages["calibration"], sleep=stages["sleep"])
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
            **{stage: stages[stage].to_dict() for stage in STAGES},
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
        calibration=prepared.calibrations,
        **prepared.sleep_report(detection, window),
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
    acc_g: np.ndarray  # as recorded: the calibration is applied to statistics of it
    affine: tuple[np.ndarray, np.ndarray] | None  # the calibration's (scale, offset_g)
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
    InputError
        A device calibration file (``calibration.device_files``) cannot be read.
    """

    def __init__(self, night: Night, *, calibration: Any = None, sleep: Any = None):
        from .io.calibration import read_device_calibrations
        from .signal import CalibrationParams

        self.night = night
        self.calibration_params = calibration or CalibrationParams()
        self.sleep_params = sleep or _stage_classes()["sleep"]()
        #: the stored device calibrations of ``calibration_params.device_files``
        self.stored_calibrations = read_device_calibrations(self.calibration_params.device_files)
        #: what was done to calibrate each ankle (``Calibration.to_dict()`` with ``side``)
        self.calibrations: list[dict[str, Any]] = []
        self._sensors = [self._sensor_input(sensor) for sensor in night.sensors]
        self._sleep = _sleep_spans(night)
        self._respiratory = _events(night, ("apnea", "hypopnea"))
        self._arousals = _events(night, ("arousal",))
        self._activity: dict[tuple, list] = {}
        self._detected: dict[DetectionParams, tuple[pd.DataFrame, list]] = {}
        self._estimates: dict[DetectionParams, Any] = {}
        self._windows: dict[tuple, tuple] = {}
        self._parts_cache: dict[tuple, tuple] = {}

    def _sensor_input(self, sensor: Sensor) -> _SensorInput:
        """Split one ankle at its gaps and NaN samples (NaN samples are missing data)."""
        if not sensor.is_uniform:
            raise UsageError(
                f"the {sensor.side} sensor has irregular timestamps; import it with "
                "resampling (pmld import) before analysis"
            )
        from .signal import choose_calibration

        calibration = choose_calibration(
            sensor.acc_g, sensor.fs_hz, self.calibration_params,
            device=sensor.device, segments=sensor.segments(), stored=self.stored_calibrations,
        )
        self.calibrations.append({"side": sensor.side, **calibration.to_dict()})
        # Not applied to the samples (a copy of the night): the detector and the sleep
        # estimate take block statistics, which the calibration maps exactly.
        acc = sensor.acc_g
        affine = None
        if calibration.applied:
            affine = (calibration.scale.astype(np.float32), calibration.offset_g.astype(np.float32))
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
        _signal_checks(sensor, acc[~nan_rows] if n_nan else acc, affine, flags, checks)
        return _SensorInput(
            sensor.side, fs, stretches, spans, acc, affine, sensor.gyro_dps,
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
                            calibration=sensor.affine,
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
        self._estimates.clear()
        self._windows.clear()
        self._parts_cache.clear()

    def sleep_estimate(self, detection: DetectionParams):
        """The sleep period, sleep/wake and non-wear estimated from the ankles
        (:func:`pmld.sleep.estimate_sleep` on the calibrated acceleration, told the
        detector's movements so that leg movements in sleep are not taken for wake)."""
        if detection not in self._estimates:
            from .sleep import estimate_sleep

            self._estimates[detection] = estimate_sleep(
                self.night,
                self.sleep_params,
                calibration_by_side={
                    sensor.side: sensor.affine for sensor in self._sensors if sensor.affine
                },
                movements=self.detect(detection),
            )
        return self._estimates[detection]

    def _sleep_choice(self, detection: DetectionParams, window: WindowParams):
        """``(source, sleep spans or None, estimate)`` for these parameters."""
        estimate = self.sleep_estimate(detection)
        source = window.sleep_source
        if source == "auto":
            source = "annotations" if self._sleep is not None else "estimate"
        if source == "annotations":
            if self._sleep is None:
                raise UsageError(
                    "sleep_source is 'annotations' but the night has no sleep/wake "
                    "annotations (import a hypnogram with pmld annotate)"
                )
            return source, self._sleep, estimate
        if source == "estimate":
            if estimate.period is None:  # nothing to stand on: say so, count all as sleep
                return "none", None, estimate
            return source, estimate.sleep[["onset_s", "duration_s"]], estimate
        return "none", None, estimate

    def _window(self, window: WindowParams, detection: DetectionParams) -> tuple:
        """The analysis window, its islands and the time analysed and asleep (once per
        distinct window and sleep estimate)."""
        source, sleep, estimate = self._sleep_choice(detection, window)
        key = (window, detection if source == "estimate" or len(estimate.nonwear) else None)
        if key not in self._windows:
            period = estimate.period if source == "estimate" else None
            start_s, stop_s = _analysis_window(self.night, window, [], period=period)
            covered = [
                subtract_spans(sensor.spans, _side_spans(estimate.nonwear, sensor.side))
                for sensor in self._sensors
            ]
            islands = _coverage(covered, start_s, stop_s, window.break_gap_s)
            recorded = _coverage(covered, start_s, stop_s, 0.0)
            # sleep time counts recorded time only: the spans, not the islands with holes
            sleep_wake = _sleep_wake_time(sleep, recorded)
            worn_lost = sum(c for *_, c in _coverage(
                [sensor.spans for sensor in self._sensors], start_s, stop_s, 0.0
            )) - sum(c for *_, c in recorded)
            self._windows[key] = (start_s, stop_s, islands, sleep_wake, sleep, source, worn_lost)
        return self._windows[key]

    def sleep_report(self, detection: DetectionParams, window: WindowParams) -> dict[str, Any]:
        """:attr:`NightAnalysis.epochs` and :attr:`NightAnalysis.sleep`."""
        estimate = self.sleep_estimate(detection)
        start_s, stop_s, _, (sleep_s, wake_s), sleep, source, worn_lost = self._window(
            window, detection
        )
        flags = list(estimate.info.get("flags", []))
        if window.sleep_source in ("auto", "estimate") and source == "none":
            flags.append(
                "no sleep period found from the ankle: the whole window counts as sleep, "
                "so PLMS is a PLM index over the window"
            )
        spans = _state_spans(sleep, start_s, stop_s) if source != "none" else None
        period = estimate.period
        report = {
            "source": source,
            "method": str(estimate.info.get("method", "")),
            "period_onset_s": float(period[0]) if period else float("nan"),
            "period_offset_s": float(period[1]) if period else float("nan"),
            "sleep_h": float("nan") if sleep_s is None else sleep_s / 3600,
            "wake_h": float("nan") if wake_s is None else wake_s / 3600,
            "nonwear_h": worn_lost / 3600,
            "flags": flags,
            "spans": spans,
            "nonwear": estimate.nonwear.reset_index(drop=True),
        }
        return {"epochs": self._epochs(estimate, detection), "sleep": report}

    def _epochs(self, estimate, detection: DetectionParams) -> pd.DataFrame:
        """The estimate's epochs with the mean activity and whether data is missing."""
        epochs = estimate.epochs.reset_index(drop=True).copy()
        activity = np.full(len(epochs), np.nan)
        gap = np.ones(len(epochs), dtype=bool)
        onset = epochs["onset_s"].to_numpy(float)
        stop = onset + epochs["duration_s"].to_numpy(float)
        sides = epochs["side"].astype(str).to_numpy()
        for sensor, (activities, _floor) in zip(
            self._sensors, self.preprocess(detection), strict=True
        ):
            rows = np.flatnonzero(sides == sensor.side)
            if not len(rows):
                continue
            edges = np.concatenate([onset[rows], stop[rows][-1:]])
            sums = np.zeros(len(rows))
            counts = np.zeros(len(rows))
            for t0, signal in activities:
                times = t0 + (np.arange(len(signal.activity_g)) + 0.5) * signal.block_s
                where = np.searchsorted(edges, times, side="right") - 1
                ok = (where >= 0) & (where < len(rows))
                sums += np.bincount(where[ok], weights=signal.activity_g[ok], minlength=len(rows))
                counts += np.bincount(where[ok], minlength=len(rows))
            with np.errstate(invalid="ignore", divide="ignore"):
                activity[rows] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
            # no data: less than half of the epoch recorded
            covered = _covered_between(sensor.spans, onset[rows], stop[rows])
            gap[rows] = covered < 0.5 * (stop[rows] - onset[rows])
        epochs["activity_g"] = activity
        epochs["gap"] = gap
        return epochs

    def _parts(self, detection: DetectionParams, window: WindowParams, lean: bool):
        """The LMs inside the window, and those of each island that has any."""
        start_s, stop_s, islands, *_ = self._window(window, detection)
        key = (detection, start_s, stop_s, tuple(islands), lean)
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
        start_s, stop_s, islands, (sleep_s, wake_s), sleep, *_ = self._window(window, detection)
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
                    sleep=sleep,
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
        worn_lost = self._window(window, detection)[-1]
        if analyzed_s < MIN_NIGHT_S and worn_lost >= MIN_NIGHT_S:
            flags.append(
                f"the band was not worn: {worn_lost / 3600:.2f} h of the analysis window "
                "without wear, too little worn time to analyse; the indices are unknown"
            )
        elif analyzed_s < MIN_NIGHT_S:
            flags.append(
                f"too short to analyse: {analyzed_s:.0f} s of data in the window "
                f"(at least {MIN_NIGHT_S:.0f} s needed)"
            )
        if self._all_flat:
            flags.append("no sensor gave a usable signal: the indices are unknown, not zero")
        return {"flags": flags, "sensors": sensors}


def _analysis_window(
    night: Night, window: WindowParams, flags: list[str], *, period=None
) -> tuple[float, float]:
    """Lights-off to lights-on (the parameters, else the annotations); where neither
    gives one end, the estimated sleep ``period``'s, else the recording's."""
    start, stop = 0.0, night.duration_s
    off = window.lights_off_s
    on = window.lights_on_s
    if off is None:
        off = _lights(night, "lights_off", first=True)
    if on is None:
        on = _lights(night, "lights_on", first=False)
    if period is not None:
        # the estimated period stands in for a missing end, if it leaves a window
        lo = max(0.0, float(period[0])) if off is None else float(off)
        hi = min(night.duration_s, float(period[1])) if on is None else float(on)
        if hi > lo:
            off, on = lo, hi
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


def _signal_checks(sensor: Sensor, acc: np.ndarray, affine, flags, quality) -> None:
    """The findings on a sensor's valid samples that no parameter changes (the clipped
    fraction's flag depends on ``clip_fraction``: :meth:`PreparedNight.quality`).

    ``acc`` is as recorded; ``affine`` the calibration's ``(scale, offset_g)``, applied
    to the sample of it judged for magnitude (clipping is judged on the recorded values).
    """
    side = sensor.side
    if acc.size == 0:
        quality["flat"] = True
        flags.append(f"{side}: no valid samples")
        return
    recorded = acc[:: max(1, len(acc) // 20000)]
    sample = recorded if affine is None else recorded * affine[0] + affine[1]
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
        at_range = np.abs(recorded) >= float(range_g) * 0.999
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


def _side_spans(table: pd.DataFrame, side: str) -> list[tuple[float, float]]:
    """The ``(onset, offset)`` spans of one side in a ``side, onset_s, duration_s`` table."""
    if table is None or not len(table):
        return []
    rows = table[table["side"].astype(str) == side]
    onset = rows["onset_s"].to_numpy(float)
    return list(zip(onset, onset + rows["duration_s"].to_numpy(float), strict=True))


def _covered_between(spans, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Seconds of ``spans`` inside each ``[starts[i], stops[i])`` (vectorised)."""
    if not spans:
        return np.zeros(len(starts))
    bounds = np.asarray(sorted(spans), dtype=float)
    edges = bounds.ravel()
    # cumulative covered time at each edge: a piecewise-linear function of time
    lengths = bounds[:, 1] - bounds[:, 0]
    cumulative = np.repeat(np.concatenate([[0.0], np.cumsum(lengths)[:-1]]), 2)
    cumulative[1::2] += lengths
    covered = np.interp(stops, edges, cumulative) - np.interp(starts, edges, cumulative)
    return np.maximum(covered, 0.0)


def _state_spans(sleep: pd.DataFrame | None, start_s: float, stop_s: float) -> pd.DataFrame:
    """The window cut into ``sleep`` and ``wake`` spans (``onset_s, duration_s, state``)."""
    rows = []
    cursor = start_s
    if sleep is not None and len(sleep):
        onset = sleep["onset_s"].to_numpy(float)
        order = np.argsort(onset, kind="stable")
        ends = (onset + sleep["duration_s"].to_numpy(float))[order]
        for lo, hi in zip(onset[order], ends, strict=True):
            lo, hi = max(lo, start_s), min(hi, stop_s)
            if hi <= lo or hi <= cursor:
                continue
            lo = max(lo, cursor)
            if lo > cursor:
                rows.append((cursor, lo - cursor, "wake"))
            rows.append((lo, hi - lo, "sleep"))
            cursor = hi
    if stop_s > cursor:
        rows.append((cursor, stop_s - cursor, "wake"))
    return pd.DataFrame(rows, columns=["onset_s", "duration_s", "state"]).astype(
        {"onset_s": float, "duration_s": float, "state": object}
    )


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
