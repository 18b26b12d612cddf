"""Parameter sweeps: every combination of parameter values, on every night, against a
reference scoring.

A sweep answers "which thresholds agree best with the sleep lab?": for each
combination of the swept values (a grid), each night is analysed exactly as
:func:`pmld.analyze` would analyse it with those parameters, and its events and PLM
index are compared with the night's reference as :func:`pmld.evaluate.evaluate_events`
compares them (the reference's LMs scored by pmld's scorer with the same rules).

What makes it fast
------------------
Most of the cost of analysing a night is parameter-independent: reading it and
computing the activity signal (block statistics, posture baseline, orientation) and the
resting floor. Those depend only on the detection parameters in
:data:`pmld.detect.PREPROCESSING_PARAMS`; every other parameter acts in the
thresholding, the scoring or the comparison. :class:`PreparedNight` does that work once
per night (once per distinct value when a preprocessing parameter is itself swept) and
keeps it; each further combination costs the hysteresis thresholding, the scoring and
the matching only (detection is also reused across combinations that differ only in
scoring or window parameters). Nights run in parallel in a process pool, each worker
doing every combination of its night.

Outputs
-------
:func:`run_sweep` returns a :class:`SweepResult`: the tidy table (one row per
combination x night, :data:`ROW_METRICS`), the per-night timings, and
:meth:`SweepResult.ranked` (one row per combination: mean and median of every metric
over the nights, pooled sensitivity, PPV and F1, ranked by a metric). ``docs/sweeps.md``
is the user's guide.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
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
from .errors import InputError, UsageError
from .evaluate import DEFAULT_TOLERANCE_S, evaluate_events
from .night import Night
from .pipeline import (
    MIN_NIGHT_S,
    WindowParams,
    _analysis_window,
    _coverage,
    _events,
    _signal_checks,
    _sleep_spans,
    _sleep_wake_time,
)
from .score import ScoringRules, rules_preset, score_leg_movements, summarize

__all__ = [
    "METRICS",
    "ROW_METRICS",
    "Combination",
    "NightScores",
    "PreparedNight",
    "SweepNight",
    "SweepPlan",
    "SweepResult",
    "check_output",
    "format_ranked",
    "load_nights",
    "output_paths",
    "plan_sweep",
    "rank_combinations",
    "ranking_column",
    "read_sweep_metadata",
    "run_sweep",
    "write_sweep",
]

#: Per-night metrics a sweep can rank by, and whether higher is better. A metric ranks
#: combinations by its mean over the nights; ``NAME_median`` by the median, and
#: ``f1_pooled``, ``sensitivity_pooled``, ``ppv_pooled`` by the counts of all nights
#: added (see :func:`rank_combinations`).
METRICS: dict[str, bool] = {
    "f1": True,
    "sensitivity": True,
    "ppv": True,
    "plm_kappa": True,
    "plm_index_abs_error": False,
    "onset_error_abs_median_s": False,
}

_POOLED = ("f1_pooled", "sensitivity_pooled", "ppv_pooled")

#: Columns of the tidy table after the parameter columns, in order. The definitions are
#: those of :func:`pmld.evaluate.evaluate_events`; ``pmld_plm_index`` is the night's
#: index as :func:`pmld.analyze` reports it (NaN for a night it could not analyse),
#: ``plm_index_difference`` is pmld minus reference and ``plm_index_abs_error`` its
#: absolute value.
ROW_METRICS = (
    "n_detected",
    "n_reference",
    "matched",
    "sensitivity",
    "ppv",
    "f1",
    "onset_error_signed_median_s",
    "onset_error_abs_median_s",
    "plm_kappa",
    "pmld_plm_index",
    "reference_plm_index",
    "plm_index_difference",
    "plm_index_abs_error",
    "analyzed_hours",
)

_DETECTION = tuple(f.name for f in fields(DetectionParams))
_RULES = tuple(f.name for f in fields(ScoringRules))
_WINDOW = tuple(f.name for f in fields(WindowParams))
_KNOWN = _DETECTION + _RULES + _WINDOW


# -- the plan: every combination, validated before any work ------------------------------
@dataclass(frozen=True)
class Combination:
    """One point of the grid: its swept values and the resolved parameters."""

    index: int
    values: dict[str, Any]
    detection: DetectionParams
    rules: ScoringRules
    window: WindowParams

    @property
    def preprocessing_key(self) -> tuple[float, ...]:
        """The values that the activity signal and resting floor depend on."""
        return tuple(getattr(self.detection, name) for name in PREPROCESSING_PARAMS)


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: the rule preset, fixed overrides, grid and its combinations.

    ``skipped`` lists the grid points that no valid parameter set has (e.g. an offset
    threshold above the onset threshold), each with the reason, as
    ``(values, message)``.
    """

    rules_preset: str
    fixed: dict[str, Any]
    grid: dict[str, tuple[Any, ...]]
    combinations: tuple[Combination, ...]
    skipped: tuple[tuple[dict[str, Any], str], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The swept parameter names, in grid order."""
        return tuple(self.grid)

    @property
    def preprocessing_groups(self) -> int:
        """How many distinct activity signals each night needs."""
        return len({c.preprocessing_key for c in self.combinations})

    def describe(self) -> dict[str, Any]:
        """The plan as JSON-able values (for the output's metadata)."""
        return {
            "rules": self.rules_preset,
            "fixed": self.fixed,
            "grid": {name: list(values) for name, values in self.grid.items()},
            "combinations": len(self.combinations),
            "skipped": [{"values": v, "reason": r} for v, r in self.skipped],
        }


def _unknown_name(name: str, where: str) -> UsageError:
    close = difflib.get_close_matches(name, _KNOWN, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "'pmld params' lists every name"
    return UsageError(f"unknown parameter {name!r} in {where}; {hint}")


def _resolve(preset: str, params: Mapping[str, Any]):
    """The three parameter objects of ``params`` (validated by their classes)."""
    detection = {k: v for k, v in params.items() if k in _DETECTION}
    rules = {k: v for k, v in params.items() if k in _RULES}
    window = {k: v for k, v in params.items() if k in _WINDOW}
    return DetectionParams(**detection), rules_preset(preset, **rules), WindowParams(**window)


def _canonical(name: str, objects) -> Any:
    detection, rules, window = objects
    stage = detection if name in _DETECTION else rules if name in _RULES else window
    return getattr(stage, name)


def plan_sweep(
    grid: Mapping[str, Sequence[Any]],
    rules: str = "wasm2016",
    params: Mapping[str, Any] | None = None,
) -> SweepPlan:
    """Check a grid and list its combinations; nothing is computed.

    Parameters
    ----------
    grid : mapping
        ``{name: values}``: any detection, scoring-rule or window parameter (the names
        of ``pmld analyze --set``), each with one or more values. Combinations are the
        Cartesian product, in the grid's order (the last name varies fastest).
    rules : str
        The rule preset the rules start from.
    params : mapping, optional
        Fixed overrides (``--set``) applied to every combination.

    Returns
    -------
    SweepPlan

    Raises
    ------
    UsageError
        An unknown name (with the close matches), a name both fixed and swept, a
        parameter without values or with a value twice, an unknown preset, a value that
        is invalid in every combination (the message of the parameter class naming the
        value). Combinations that are invalid only
        together (an offset threshold above the onset threshold) are skipped and listed
        in :attr:`SweepPlan.skipped`.
    """
    params = dict(params or {})
    for name in params:
        if name not in _KNOWN:
            raise _unknown_name(name, "--set")
    names = list(grid)
    for name in names:
        if name not in _KNOWN:
            raise _unknown_name(name, "--grid")
        if name in params:
            raise UsageError(f"parameter {name} is both fixed (--set) and swept (--grid)")
        values = list(grid[name])
        if not values:
            raise UsageError(f"--grid {name} has no values")
        for value in values:
            if values.count(value) > 1:  # 3 and 3.0 too: they are the same parameters
                raise UsageError(f"--grid {name} lists the value {value!r} twice")
    base = _resolve(rules, params)  # the preset and the fixed values alone
    fixed = {name: _canonical(name, base) for name in params}

    combos, failures = [], []
    for point in itertools.product(*(list(grid[n]) for n in names)):
        values = dict(zip(names, point, strict=True))
        try:
            objects = _resolve(rules, {**params, **values})
        except UsageError as error:
            failures.append((values, str(error)))
            continue
        combos.append((values, objects))
    for name in names:  # a value that fails wherever it appears is a bad value
        for value in grid[name]:
            ok = any(v[name] == value for v, _ in combos)
            if not ok:
                reason = next(r for v, r in failures if v[name] == value)
                raise UsageError(f"--grid {name}={value!r}: {reason}")
    combinations = tuple(
        Combination(
            index=i,
            values={name: _canonical(name, objects) for name in names},
            detection=objects[0],
            rules=objects[1],
            window=objects[2],
        )
        for i, (values, objects) in enumerate(combos)
    )
    canonical_grid = {}
    for name in names:
        seen = []
        for c in combinations:
            if c.values[name] not in seen:
                seen.append(c.values[name])
        canonical_grid[name] = tuple(seen)
    return SweepPlan(rules, fixed, canonical_grid, combinations, tuple(failures))


# -- one night, prepared once --------------------------------------------------------------
@dataclass
class _SensorInput:
    side: str
    fs_hz: float
    stretches: list[tuple[int, int, float]]  # first sample, stop sample, t0 (s)
    spans: list[tuple[float, float]]
    flat: bool
    acc_g: np.ndarray
    gyro_dps: np.ndarray | None


@dataclass
class NightScores:
    """What one parameter set gives on a night: as :func:`pmld.analyze` reports it."""

    events: pd.DataFrame
    indices: dict[str, Any]
    window_s: tuple[float, float]
    monolateral: pd.DataFrame


class PreparedNight:
    """A night with the work that no swept parameter changes done once.

    :meth:`scores` gives the events and indices of :func:`pmld.analyze` for any
    parameters, bit for bit (``tests/test_sweep.py`` checks it), computing the activity
    signal and resting floor once per distinct value of
    :data:`pmld.detect.PREPROCESSING_PARAMS` and the detection once per detection
    parameter set.

    Parameters
    ----------
    night : Night

    Raises
    ------
    UsageError
        A sensor with irregular timestamps (as :func:`pmld.analyze`).
    """

    def __init__(self, night: Night):
        self.night = night
        self._sensors = [self._sensor_input(sensor) for sensor in night.sensors]
        self._sleep = _sleep_spans(night)
        self._respiratory = _events(night, ("apnea", "hypopnea"))
        self._arousals = _events(night, ("arousal",))
        self._activity: dict[tuple, list] = {}
        self._detected: dict[DetectionParams, pd.DataFrame] = {}
        self._windows: dict[tuple, tuple] = {}
        self._parts_cache: dict[tuple, tuple] = {}

    # The steps below are those of pmld.pipeline.analyze and _detect_sensor, split where
    # the parameters come in; keep them in step with it.
    def _sensor_input(self, sensor) -> _SensorInput:
        if not sensor.is_uniform:
            raise UsageError(
                f"the {sensor.side} sensor has irregular timestamps; import it with "
                "resampling (pmld import) before analysis"
            )
        acc = sensor.acc_g
        if np.isfinite(acc.sum()):
            nan_rows, n_nan = None, 0
        else:
            nan_rows = ~np.isfinite(acc).all(axis=1)
            n_nan = int(nan_rows.sum())
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
        quality: dict[str, Any] = {}
        _signal_checks(sensor, acc[~nan_rows] if n_nan else acc, WindowParams(), [], quality)
        return _SensorInput(
            sensor.side, fs, stretches, spans, bool(quality.get("flat")), acc, sensor.gyro_dps
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

    def detect(self, detection: DetectionParams) -> pd.DataFrame:
        """The monolateral LMs of every sensor, sorted by onset (``side`` column)."""
        if detection not in self._detected:
            tables = []
            for sensor, (activities, floor) in zip(
                self._sensors, self.preprocess(detection), strict=True
            ):
                if sensor.flat:
                    continue
                onset_g, offset_g = thresholds(floor, detection)
                for t0, activity in activities:
                    lms = find_leg_movements(activity, onset_g, offset_g, detection)
                    if len(lms):
                        lms["onset_s"] = lms["onset_s"].to_numpy() + t0
                        lms["offset_s"] = lms["offset_s"].to_numpy() + t0
                        lms["side"] = sensor.side
                        tables.append(lms)
            if not tables:
                lms = empty_lm_table().assign(side=pd.Series(dtype=object))
            else:
                lms = tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)
                onset = lms["onset_s"].to_numpy()
                if (np.diff(onset) < 0).any():  # two ankles (one's stretches are in order)
                    lms = lms.iloc[np.argsort(onset, kind="stable")].reset_index(drop=True)
            self._detected[detection] = lms
        return self._detected[detection]

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

    def scores(
        self,
        detection: DetectionParams | None = None,
        rules: ScoringRules | None = None,
        window: WindowParams | None = None,
        *,
        lean: bool = False,
    ) -> NightScores:
        """Events and indices with these parameters, equal to those of
        ``pmld.analyze(night, rules, detection=detection, window=window)``.

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
        else:
            indices = {
                **summarize(events, 1.0), "analyzed_h": 0.0, "sleep_h": 0.0, "wake_h": 0.0
            }
        indices["analyzed_hours"] = analyzed_s / 3600
        all_flat = all(sensor.flat for sensor in self._sensors)
        if analyzed_s < MIN_NIGHT_S or all_flat:
            for key, value in indices.items():
                if key.endswith("_index") and isinstance(value, float):
                    indices[key] = float("nan")
            indices["severity_band"] = "unknown"
            indices["abnormal"] = False
        return NightScores(events, indices, (start_s, stop_s), monolateral)

    def evaluate(
        self,
        combination: Combination,
        reference_lms: pd.DataFrame,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
    ) -> dict[str, Any]:
        """The :data:`ROW_METRICS` of one combination against the reference's LMs."""
        result = self.scores(
            combination.detection, combination.rules, combination.window, lean=True
        )
        hours = result.indices["analyzed_hours"]
        metrics = evaluate_events(
            result.events,
            reference_lms,
            combination.rules,
            hours,
            tolerance_s,
            window_s=result.window_s,
        )
        # the analysis's own index is the official one (NaN when it could not analyse)
        pmld_index = float(result.indices["plm_index"])
        difference = pmld_index - metrics["reference_plm_index"]
        metrics.update(
            pmld_plm_index=pmld_index,
            plm_index_difference=difference,
            plm_index_abs_error=abs(difference),
            analyzed_hours=hours,
        )
        return {name: metrics[name] for name in ROW_METRICS}


# -- running ---------------------------------------------------------------------------------
@dataclass
class SweepNight:
    """One night of a sweep: a name, the night (or its file) and the reference's LMs
    (``onset_s, offset_s, side`` on the night's clock)."""

    name: str
    night: Night | str | os.PathLike
    reference_lms: pd.DataFrame
    sources: dict[str, str] = field(default_factory=dict)


@dataclass
class _NightTask:
    night: SweepNight
    plan: SweepPlan
    tolerance_s: float


def _sweep_one(task: _NightTask) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every combination on one night (the unit of work of a pool worker)."""
    t0 = time.perf_counter()
    night = task.night.night
    if not isinstance(night, Night):
        from .io.nightfile import open_night

        night, _ = open_night(night)  # a notice was given by load_nights
    loaded = time.perf_counter()
    prepared = PreparedNight(night)
    initialised = time.perf_counter()
    preprocess_s = 0.0
    rows = []
    groups: dict[tuple, list[Combination]] = {}
    for combination in task.plan.combinations:
        groups.setdefault(combination.preprocessing_key, []).append(combination)
    combinations_s = 0.0
    for members in groups.values():
        t1 = time.perf_counter()
        prepared.preprocess(members[0].detection)
        t2 = time.perf_counter()
        preprocess_s += t2 - t1
        for combination in members:
            row = prepared.evaluate(combination, task.night.reference_lms, task.tolerance_s)
            rows.append({"combination": combination.index, **row})
        combinations_s += time.perf_counter() - t2
        prepared.clear()
    table = pd.DataFrame(rows)
    timing = {
        "night": task.night.name,
        "load_s": loaded - t0,
        "prepare_s": initialised - t0 + preprocess_s,
        "preprocess_s": preprocess_s,
        "combinations_s": combinations_s,
        "per_combination_ms": 1000 * combinations_s / len(task.plan.combinations),
    }
    return table, timing


@dataclass
class SweepResult:
    """The outcome of :func:`run_sweep`.

    Attributes
    ----------
    table : DataFrame
        One row per combination x night: ``combination``, ``night``, ``rules``, the
        fixed parameters, the swept parameters, then :data:`ROW_METRICS`.
    plan : SweepPlan
    timings : DataFrame
        Per night: ``load_s`` (reading the file), ``prepare_s`` (the first pass: reading
        and everything done once, including every activity signal), ``preprocess_s``
        (the activity signals alone), ``combinations_s`` (all combinations after that)
        and ``per_combination_ms``.
    wall_s : float
        Elapsed time of the whole sweep.
    tolerance_s : float
    """

    table: pd.DataFrame
    plan: SweepPlan
    timings: pd.DataFrame
    wall_s: float
    tolerance_s: float
    nights: list[dict[str, str]] = field(default_factory=list)

    def ranked(self, metric: str = "f1") -> pd.DataFrame:
        """:func:`rank_combinations` of :attr:`table`."""
        return rank_combinations(self.table, self.plan, metric)

    def metadata(self, metric: str = "f1") -> dict[str, Any]:
        """Provenance and timings as JSON-able values."""
        return {
            "pmld_version": __version__,
            "created_utc": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
            **self.plan.describe(),
            "metric": metric,
            "tolerance_s": self.tolerance_s,
            "nights": self.nights,
            "wall_s": self.wall_s,
            "timings": self.timings.to_dict(orient="records"),
        }


def run_sweep(
    nights: Sequence[SweepNight],
    plan: SweepPlan,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    jobs: int = 1,
    progress: Callable[[dict[str, float], int, int], None] | None = None,
) -> SweepResult:
    """Run every combination of ``plan`` on every night.

    Parameters
    ----------
    nights : sequence of SweepNight
        Nights given as :class:`~pmld.night.Night` are analysed in this process (or
        pickled to the workers); nights given as paths are read by the worker that
        analyses them.
    plan : SweepPlan
        From :func:`plan_sweep`.
    tolerance_s : float
        Event matching tolerance (:func:`pmld.evaluate.match_events`).
    jobs : int
        Worker processes; each takes whole nights. 1 runs in this process.
    progress : callable, optional
        Called as ``progress(timing, done, total)`` when a night is finished.

    Returns
    -------
    SweepResult
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"jobs must be a whole number >= 1, got {jobs!r}")
    names = [n.name for n in nights]
    if not names:
        raise UsageError("a sweep needs at least one night")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UsageError(f"two nights are named {twice[0]}: night names must be unique")
    t0 = time.perf_counter()
    tasks = [_NightTask(night, plan, tolerance_s) for night in nights]
    results: dict[str, tuple[pd.DataFrame, dict]] = {}

    def finished(outcome) -> None:
        results[outcome[1]["night"]] = outcome
        if progress is not None:
            progress(outcome[1], len(results), len(tasks))

    if jobs == 1 or len(tasks) == 1:
        for task in tasks:
            finished(_sweep_one(task))
    else:
        for outcome in _pool_map(_sweep_one, tasks, jobs):
            finished(outcome)
    parts, timings = [], []
    for name in names:
        rows, timing = results[name]
        parts.append(rows.assign(night=name))
        timings.append(timing)
    table = _tidy(pd.concat(parts, ignore_index=True), plan)
    return SweepResult(
        table=table,
        plan=plan,
        timings=pd.DataFrame(timings),
        wall_s=time.perf_counter() - t0,
        tolerance_s=float(tolerance_s),
        nights=[{"night": n.name, **n.sources} for n in nights],
    )


def _tidy(rows: pd.DataFrame, plan: SweepPlan) -> pd.DataFrame:
    """Rows (night by night) sorted by combination then night, the parameters in front."""
    by_index = {c.index: c for c in plan.combinations}
    rows = rows.sort_values("combination", kind="stable")
    columns: dict[str, Any] = {
        "combination": rows["combination"].to_numpy(),
        "night": rows["night"].to_numpy(),
        "rules": plan.rules_preset,
    }
    for name, value in plan.fixed.items():
        columns[name] = [value] * len(rows)
    for name in plan.names:
        columns[name] = [by_index[i].values[name] for i in rows["combination"]]
    for name in ROW_METRICS:
        columns[name] = rows[name].to_numpy()
    return pd.DataFrame(columns)


def _pool_map(func, tasks, jobs):
    """``func`` over ``tasks`` in a pool of worker processes, results as they finish."""
    import multiprocessing
    from concurrent.futures import as_completed

    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["pmld.sweep", "pmld.io.nightfile"])
    else:
        context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(tasks)), mp_context=context, initializer=_ignore_sigint
    )
    try:
        futures = [pool.submit(func, task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the main process, which stops the pool."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- ranking ------------------------------------------------------------------------------------
def ranking_column(metric: str) -> tuple[str, bool]:
    """The column of :func:`rank_combinations` that ``metric`` ranks by, and whether
    higher is better; UsageError listing the choices for an unknown metric."""
    if metric in METRICS:
        return f"{metric}_mean", METRICS[metric]
    for base, higher in METRICS.items():
        if metric in (f"{base}_mean", f"{base}_median"):
            return metric, higher
    if metric in _POOLED:
        return metric, True
    choices = [*METRICS, *(f"{m}_median" for m in METRICS), *_POOLED]
    raise UsageError(f"unknown metric {metric!r}; one of {', '.join(choices)}")


def rank_combinations(table: pd.DataFrame, plan: SweepPlan, metric: str = "f1") -> pd.DataFrame:
    """One row per combination, best first by ``metric``.

    Columns: ``rank``, ``combination``, the swept parameters, ``nights``, then for each
    of :data:`METRICS` its ``_mean`` and ``_median`` over the nights (NaN nights left
    out), ``f1_pooled``, ``sensitivity_pooled`` and ``ppv_pooled`` (the event counts of
    all nights added, as :func:`pmld.evaluate.pooled_metrics`), and ``plm_index_bias``
    (mean of pmld minus reference PLM index).

    ``metric`` is a name of :data:`METRICS` (ranked by its mean over nights), such a name
    with ``_median``, or one of the pooled rates. Ties keep the grid order; a NaN ranks
    last.
    """
    column, higher = ranking_column(metric)
    groups = table.groupby("combination", sort=True)
    index = groups.size().index
    by_index = {c.index: c for c in plan.combinations}
    out = pd.DataFrame(
        {name: [by_index[i].values[name] for i in index] for name in plan.names}, index=index
    )
    out["nights"] = groups.size()
    for name in METRICS:
        out[f"{name}_mean"] = groups[name].mean()
        out[f"{name}_median"] = groups[name].median()
    counts = groups[["matched", "n_reference", "n_detected"]].sum()
    matched = counts["matched"].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        both = (counts["n_reference"] + counts["n_detected"]).astype(float)
        out["f1_pooled"] = np.where(both > 0, 2 * matched / both, np.nan)
        out["sensitivity_pooled"] = np.where(
            counts["n_reference"] > 0, matched / counts["n_reference"], np.nan
        )
        out["ppv_pooled"] = np.where(
            counts["n_detected"] > 0, matched / counts["n_detected"], np.nan
        )
    out["plm_index_bias"] = groups["plm_index_difference"].mean()
    out = out.reset_index()
    key = out[column].to_numpy(float) * (-1.0 if higher else 1.0)
    # lexsort's last key is the primary one: NaN last, then the metric, then grid order
    order = np.lexsort((out["combination"].to_numpy(), np.nan_to_num(key), np.isnan(key)))
    out = out.iloc[order].reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


# -- files ----------------------------------------------------------------------------------------
_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def output_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """The tidy table's path and the ranked table's (``NAME.best.EXT``)."""
    path = Path(path)
    if path.suffix.lower() not in _FORMATS:
        raise UsageError(f"{path}: the sweep table is written as .parquet or .csv")
    return path, path.with_name(f"{path.stem}.best{path.suffix}")


def check_output(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output that cannot be written."""
    table_path, _ = output_paths(path)
    directory = table_path.parent
    if not directory.is_dir():
        raise UsageError(f"{table_path}: directory {directory} does not exist")
    if _FORMATS[table_path.suffix.lower()] == "parquet":
        _pyarrow()


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise UsageError(
            'writing Parquet needs pyarrow: pip install "pmld[research]" (or write .csv)'
        ) from None
    return pyarrow


def write_sweep(
    result: SweepResult, path: str | os.PathLike, metric: str = "f1"
) -> tuple[Path, Path]:
    """Write the tidy table to ``path`` and the ranked combinations next to it.

    ``.parquet``: both files carry the sweep's description (pmld version, rules, fixed
    and swept parameters, metric, tolerance, nights with their files' SHA-256, timings)
    as JSON under the schema metadata key ``pmld_sweep``. ``.csv``: the tables only.
    Each file is written to a temporary name and renamed, so an interrupted write
    leaves no partial table.
    """
    table_path, best_path = output_paths(path)
    ranked = result.ranked(metric)
    meta = json.dumps(result.metadata(metric), default=_json_value, allow_nan=True)
    for frame, target in ((result.table, table_path), (ranked, best_path)):
        temporary = target.with_name(f".{target.name}.tmp")
        try:
            if _FORMATS[target.suffix.lower()] == "parquet":
                pa = _pyarrow()
                arrow = pa.Table.from_pandas(frame, preserve_index=False)
                schema_meta = dict(arrow.schema.metadata or {})
                schema_meta[b"pmld_sweep"] = meta.encode()
                pa.parquet.write_table(arrow.replace_schema_metadata(schema_meta), temporary)
            else:
                frame.to_csv(temporary, index=False, float_format="%.6g")
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
    return table_path, best_path


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_sweep_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``pmld_sweep`` description of a Parquet sweep table."""
    pa = _pyarrow()
    meta = pa.parquet.read_schema(path).metadata or {}
    if b"pmld_sweep" not in meta:
        raise InputError("is not a pmld sweep table (no pmld_sweep metadata)", path=path)
    return json.loads(meta[b"pmld_sweep"])


# -- inputs: nights and their references, all checked before any work -----------------------------
def _night_name(path: Path) -> str:
    name = path.name
    return name[: -len(".h5")] if name.lower().endswith(".h5") else path.stem


def _open_inputs(item: tuple) -> tuple[pd.DataFrame, dict[str, str], str | None]:
    """Read a night and its reference, align them, return the reference's LMs; check
    that the night has each analysis window."""
    from .io.nightfile import open_night
    from .io.reference import align_reference, read_reference, reference_lms
    from .provenance import file_sha256

    night_path, reference_path, windows = item
    night, notice = open_night(night_path)
    for window in windows:
        try:
            _analysis_window(night, window, [])
        except UsageError as error:
            raise UsageError(f"{night_path}: {error}") from None
    reference = read_reference(reference_path)
    lms = reference_lms(align_reference(reference, night))
    if not len(lms):
        raise InputError(
            "holds no leg movements (no annotation read as an LM; check its labels)",
            path=reference_path,
        )
    onset = lms["onset_s"].to_numpy(dtype=float)
    if not ((onset >= 0) & (onset < night.duration_s)).any():
        raise InputError(
            f"none of its {len(lms)} leg movements ({onset.min():.0f} to {onset.max():.0f} s) "
            f"falls in the night {night_path} (0 to {night.duration_s:.0f} s): is it that "
            "night's reference?",
            path=reference_path,
        )
    sources = {
        "path": str(night_path),
        "sha256": file_sha256(night_path),
        "reference": str(reference_path),
        "reference_sha256": reference.sha256,
    }
    return lms, sources, notice


def load_nights(
    night_paths: Sequence[str | os.PathLike],
    reference: str | os.PathLike,
    *,
    jobs: int = 1,
    plan: SweepPlan | None = None,
    notice: Callable[[str], None] | None = None,
) -> list[SweepNight]:
    """Find, read and align every night's reference; check every night opens.

    Parameters
    ----------
    night_paths : sequence of paths
        pmld-raw night files.
    reference : path
        A directory of references matched to the nights by name
        (:func:`pmld.io.reference.find_reference`), or one reference file for one night.
    jobs : int
        Worker processes for the reading.
    plan : SweepPlan, optional
        Checked too: each of its analysis windows must lie in every night.
    notice : callable, optional
        Receives notices (a night rebuilt from its recording journal).

    Returns
    -------
    list of SweepNight
        Nights as paths (read again by the worker that analyses them) with their
        reference LMs.

    Raises
    ------
    InputError, UsageError
        The first problem: a missing or unreadable night or reference, a night given
        twice or two of the same name, a reference that does not overlap its night or
        holds no LM, an analysis window outside a night.
    """
    from .io.journal import journal_path
    from .io.reference import find_reference

    paths = [Path(p) for p in night_paths]
    reference = Path(reference)
    if not paths:
        raise UsageError("a sweep needs at least one night")
    seen: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            raise UsageError(f"{path}: is a directory; give the night files (e.g. {path}/*.h5)")
        if not path.exists() and not journal_path(path).exists():
            raise InputError("no such file", path=path)
        name = _night_name(path)
        if name in seen:
            if seen[name].resolve() == path.resolve():
                raise UsageError(f"{path}: given twice")
            raise UsageError(f"{seen[name]} and {path} are both night {name}: rename one")
        seen[name] = path
    if not reference.exists():
        raise InputError("no such file or directory", path=reference)
    if reference.is_file():
        if len(paths) > 1:
            raise UsageError(
                f"--reference {reference} is one file for {len(paths)} nights; give a "
                "directory of references named like the nights"
            )
        pairs = [(paths[0], reference)]
    else:
        pairs = [(path, Path(find_reference(path, reference))) for path in paths]
    windows = tuple(dict.fromkeys(c.window for c in plan.combinations)) if plan else ()
    items = [(night, ref, windows) for night, ref in pairs]
    if jobs > 1 and len(items) > 1:
        opened = _pool_map_ordered(_open_inputs, items, jobs)
    else:
        opened = [_open_inputs(item) for item in items]
    nights = []
    for path, (lms, sources, note) in zip(paths, opened, strict=True):
        if note and notice is not None:
            notice(note)
        nights.append(SweepNight(_night_name(path), path, lms, sources))
    return nights


def _pool_map_ordered(func, tasks, jobs):
    """Like :func:`_pool_map`, results in the order of ``tasks``."""
    done = dict(_pool_map(_indexed, [(func, i, t) for i, t in enumerate(tasks)], jobs))
    return [done[i] for i in range(len(tasks))]


def _indexed(item):
    func, index, task = item
    return index, func(task)


def format_ranked(ranked: pd.DataFrame, plan: SweepPlan, metric: str, top: int) -> str:
    """The best ``top`` combinations as a text table."""
    column, higher = ranking_column(metric)
    shown = ["rank", *plan.names, column]
    for extra in ("f1_mean", "f1_pooled", "sensitivity_mean", "ppv_mean",
                  "plm_index_abs_error_mean", "plm_index_bias"):
        if extra not in shown:
            shown.append(extra)
    head = ranked.head(top)[shown]
    nights = int(ranked["nights"].max()) if len(ranked) else 0
    title = (
        f"best {len(head)} of {len(ranked)} combinations by {column} over {nights} "
        f"night{'s' if nights != 1 else ''} ({'higher' if higher else 'lower'} is better):"
    )
    return title + "\n" + head.to_string(index=False, float_format=lambda v: f"{v:.4g}")
