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
thresholding, the scoring or the comparison. :class:`pmld.pipeline.PreparedNight` (the
core of :func:`pmld.analyze` itself, so a combination's events and indices are those of
``analyze`` by construction) does that work once per night (once per distinct value
when a preprocessing parameter is itself swept) and keeps it; each further combination
costs the hysteresis thresholding, the scoring and the matching only (detection is also
reused across combinations that differ only in scoring or window parameters, and the
reference's LMs are scored once per distinct scoring rules and analysis window,
:func:`pmld.evaluate.score_reference`). Nights run in parallel in a process pool, each
worker doing every combination of its night.

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
from .detect import PREPROCESSING_PARAMS, DetectionParams
from .errors import InputError, UsageError
from .evaluate import DEFAULT_TOLERANCE_S, evaluate_events, score_reference
from .night import Night
from .pipeline import NightScores, PreparedNight, WindowParams, _analysis_window
from .score import ScoringRules, rules_preset

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
    "evaluate_combination",
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
    if name.partition(".")[0] in ("calibration", "sleep"):
        return UsageError(
            f"{name!r} in {where}: a sweep calibrates and estimates sleep with the default "
            "calibration and sleep parameters; those stages cannot be set or swept yet"
        )
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


# -- one combination on a prepared night ---------------------------------------------------
def evaluate_combination(
    prepared: PreparedNight,
    combination: Combination,
    reference_lms: pd.DataFrame,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    scored_references: dict | None = None,
) -> dict[str, Any]:
    """The :data:`ROW_METRICS` of one combination on a prepared night against the
    reference's LMs.

    ``scored_references``, a dict kept for one night and one ``reference_lms``, holds
    the reference scored for each distinct scoring rules and analysis window
    (:func:`pmld.evaluate.score_reference`), so that the combinations that share them
    score the reference once.
    """
    result = prepared.scores(
        combination.detection, combination.rules, combination.window, lean=True
    )
    hours = result.indices["analyzed_hours"]
    reference = None
    if scored_references is not None:
        key = (combination.rules, result.window_s)
        reference = scored_references.get(key)
        if reference is None:
            reference = score_reference(
                reference_lms, combination.rules, window_s=result.window_s
            )
            scored_references[key] = reference
    metrics = evaluate_events(
        result.events,
        reference_lms,
        combination.rules,
        hours,
        tolerance_s,
        window_s=result.window_s,
        reference_scored=reference,
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
    references: dict = {}  # the reference scored once per rules and window
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
            row = evaluate_combination(
                prepared, combination, task.night.reference_lms, task.tolerance_s, references
            )
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
    from .evaluate import open_reference
    from .io.nightfile import open_night
    from .io.reference import align_reference, reference_lms
    from .provenance import file_sha256

    night_path, reference_path, windows, options = item
    night, notice = open_night(night_path)
    for window in windows:
        try:
            _analysis_window(night, window, [])
        except UsageError as error:
            raise UsageError(f"{night_path}: {error}") from None
    reference = open_reference(reference_path, **options)
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
    reference_options: Mapping[str, Any] | None = None,
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
    reference_options : mapping, optional
        How to read the references: ``offset_s``, ``start_utc``, ``label_map``,
        ``on_unknown`` of :func:`pmld.evaluate.open_reference` (``pmld sweep --offset``,
        ``--reference-start``, ``--map``, ``--ignore-unknown``), the same for every
        reference.

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
    options = dict(reference_options or {})
    items = [(night, ref, windows, options) for night, ref in pairs]
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
