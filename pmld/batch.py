"""Batch re-analysis of a cohort: every night of a directory, in parallel, idempotently.

``run_batch(input_dir, output_dir)`` finds the night files under ``input_dir``, writes
each night's summary to ``output_dir`` (the same file ``pmld analyze`` writes), skips
the nights whose summary is already up to date, and ends with one cohort table
(``cohort.csv``, and ``cohort.parquet`` when pyarrow is installed). The command is
``pmld batch``; the full description is ``docs/batch.md``.

Engines
-------
``"process"`` (default)
    A process pool on this machine (:class:`concurrent.futures.ProcessPoolExecutor`,
    workers forked from a ``forkserver`` that has imported pmld once). A worker process
    that dies (killed, out of memory, a crash in libhdf5) does not stop the batch: the
    nights it may have been working on are run again, each alone, and a night that
    kills its worker again is reported as failed.
``"dask"``
    A local ``dask.distributed`` cluster of ``jobs`` worker processes with one thread
    each, or an existing cluster (``scheduler="tcp://host:8786"``), whose workers must
    see the night files under the same paths and run the same pmld version.

Memory
------
A worker analyses one night at a time (one thread per worker process), so memory is
bounded by ``jobs`` times one worker's peak: about 230 MB for an 8 h night at 100 Hz,
of which ~110 MB are the interpreter with NumPy, pandas, SciPy and h5py loaded (see
``benchmarks/bench_batch.py``). The main process holds one small row per night.

Up to date (skipped)
--------------------
A night is skipped, without reading its data, when its summary exists and records the
same resolved parameters (canonical JSON), the same pmld version and the same SHA-256
of the input file's bytes. The parameters and version are read from the summary's
attributes first; the input is hashed only when they match. ``force=True`` recomputes.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .errors import InputError, PmldError, UsageError
from .io._files import write_atomic
from .night import evening_date

#: Glob (relative to the input directory) of the night files found by default.
DEFAULT_PATTERN = "**/*.h5"
#: Suffix of a nightly summary (never taken as a night).
SUMMARY_SUFFIX = ".plm.h5"
ENGINES = ("process", "dask")
STATUSES = ("ok", "skipped", "failed")

#: The cohort table's columns, in order (docs/batch.md describes each).
COHORT_COLUMNS = {
    "path": "string",
    "status": "string",
    "error": "string",
    "input_sha256": "string",
    "start_utc": "string",
    "start_local": "string",
    "timezone": "string",
    "night_date": "string",
    "duration_h": "float64",
    "analyzed_hours": "float64",
    "gap_fraction": "float64",
    "sides": "string",
    "rules": "string",
    "lm_count": "Int64",
    "clm_count": "Int64",
    "plm_count": "Int64",
    "plm_series_count": "Int64",
    "lm_index": "float64",
    "clm_index": "float64",
    "plm_index": "float64",
    "plms_index": "float64",
    "plmw_index": "float64",
    "periodicity_index": "float64",
    "severity_band": "string",
    "abnormal": "boolean",
    "sleep_source": "string",
    "sleep_h": "float64",
    "wake_h": "float64",
    "nonwear_h": "float64",
    "flag_count": "Int64",
    "flags": "string",
    "pmld_version": "string",
    "summary": "string",
    "created_utc": "string",
}
_INDEX_KEYS = (
    "analyzed_hours",
    "lm_count",
    "clm_count",
    "plm_count",
    "plm_series_count",
    "lm_index",
    "clm_index",
    "plm_index",
    "plms_index",
    "plmw_index",
    "periodicity_index",
    "severity_band",
    "abnormal",
)


# -- what the engines pass around -------------------------------------------------------
@dataclass(frozen=True)
class NightTask:
    """One night to bring up to date (picklable; built by :func:`plan_batch`).

    ``path`` is the night as the user named it (stored in the summary's ``inputs``),
    ``read_path`` and ``output`` are absolute, ``relative`` is the night's path below
    the input directory (the cohort's ``path`` column).
    """

    path: str
    read_path: str
    relative: str
    output: str
    summary: str
    rules: str
    params: dict[str, Any]
    parameters_json: str
    force: bool = False


@dataclass
class NightOutcome:
    """What became of one night.

    Attributes
    ----------
    path : str
        The night, relative to the input directory.
    status : {'ok', 'skipped', 'failed'}
        ``ok``: analysed and its summary written; ``skipped``: its summary was already
        up to date; ``failed``: see ``error``.
    error : str
        One line saying why a night failed ('' otherwise).
    row : dict
        The night's row of the cohort table.
    notice : str or None
        A note for the user (a night rebuilt from its recording journal).
    traceback : str or None
        The traceback of an internal error (a bug in pmld).
    seconds, cpu_seconds : float
        Wall and CPU time (all threads) the worker spent on the night.
    worker_pid, worker_peak_rss_mb
        The worker process and its peak resident memory so far (None if unknown).
    """

    path: str
    input: str
    output: str
    status: str
    error: str = ""
    row: dict[str, Any] = field(default_factory=dict)
    notice: str | None = None
    traceback: str | None = None
    internal: bool = False
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    worker_pid: int | None = None
    worker_peak_rss_mb: float | None = None


@dataclass
class BatchResult:
    """The outcome of :func:`run_batch`.

    Attributes
    ----------
    cohort : DataFrame
        One row per night, sorted by path (columns :data:`COHORT_COLUMNS`).
    outcomes : list of NightOutcome
        Per night, in the same order.
    cohort_csv, cohort_parquet : Path or None
        The cohort files written (``cohort_parquet`` is None without pyarrow).
    notes : list of str
        One-line notes (e.g. Parquet not written).
    parameters : dict
        The resolved parameters every night was analysed with.
    engine : str
    jobs : int or None
        Worker processes (None for an existing Dask cluster).
    seconds : float
        Wall time of the whole batch.
    """

    cohort: pd.DataFrame
    outcomes: list[NightOutcome]
    output_dir: Path
    cohort_csv: Path | None
    cohort_parquet: Path | None
    notes: list[str]
    parameters: dict[str, Any]
    engine: str
    jobs: int | None
    seconds: float

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[NightOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 all nights ok or skipped; 2 a night failed; 1 a night hit a bug in pmld."""
        if any(o.internal for o in self.outcomes):
            return 1
        return 2 if self.failed else 0

    def describe(self) -> str:
        """One line: how many nights were analysed, skipped and failed, and how fast."""
        where = "an existing Dask cluster" if self.jobs is None else (
            f"{self.jobs} worker{'s' if self.jobs != 1 else ''}"
        )
        engine = "process pool" if self.engine == "process" else "Dask"
        return (
            f"{len(self.outcomes)} nights in {self.seconds:.1f} s ({engine}, {where}): "
            f"{self.count('ok')} analysed, {self.count('skipped')} up to date (skipped), "
            f"{self.count('failed')} failed"
        )


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM in ``pmld batch``) stopped a batch.

    The summaries of the nights finished before are kept; no output file is left half
    written; no cohort table is written. ``outcomes`` lists the nights finished.
    """

    def __init__(self, outcomes: list[NightOutcome], total: int):
        super().__init__(f"interrupted after {len(outcomes)} of {total} nights")
        self.outcomes = outcomes
        self.total = total


# -- planning ----------------------------------------------------------------------------
def find_nights(
    input_dir: str | os.PathLike,
    pattern: str = DEFAULT_PATTERN,
    *,
    exclude: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """Night files under ``input_dir`` matching ``pattern``, sorted by relative path.

    ``pattern`` is a glob relative to ``input_dir`` as :meth:`pathlib.Path.glob` reads
    it (``**`` spans directories; the default ``**/*.h5`` finds every ``.h5`` file at
    any depth). Never taken: summaries (``*.plm.h5``), hidden files (``.*``: the
    temporary files of pmld's writers) and anything under an ``exclude`` directory (the
    output directory when it lies inside the input). An unfinished recording whose
    night file was never written (only ``NAME.h5.journal``) is found as ``NAME.h5``.
    """
    root = Path(input_dir)
    if not root.exists():
        raise UsageError(f"{root}: no such directory")
    if not root.is_dir():
        raise UsageError(f"{root}: is not a directory (pmld batch takes a directory of nights)")
    if not pattern or Path(pattern).is_absolute():
        raise UsageError(f"--pattern must be a glob relative to {root}, got {pattern!r}")
    excluded = [Path(e).resolve() for e in exclude]

    def wanted(path: Path) -> bool:
        name = path.name
        if name.startswith(".") or name.endswith(SUMMARY_SUFFIX):
            return False
        resolved = path.resolve()
        return not any(resolved.is_relative_to(e) for e in excluded)

    try:
        found = {p for p in root.glob(pattern) if p.is_file() and wanted(p)}
        for journal in root.glob(pattern + ".journal"):
            night = journal.with_name(journal.name.removesuffix(".journal"))
            if journal.is_file() and not night.exists() and wanted(night):
                found.add(night)
    except (ValueError, NotImplementedError) as error:
        raise UsageError(f"--pattern {pattern!r} is not a usable glob: {error}") from None
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def summary_name(name: str) -> str:
    """The summary's file name for a night's file name (``night.h5`` -> ``night.plm.h5``)."""
    stem = name.removesuffix(".h5") if name.endswith(".h5") else Path(name).stem
    return stem + SUMMARY_SUFFIX


def resolve_parameters(rules: str = "wasm2016", params: dict[str, Any] | None = None) -> dict:
    """The full parameters :func:`pmld.analyze` resolves for a preset and overrides.

    The same dict as ``NightAnalysis.parameters``, checked up front, so that a wrong
    name or value fails before any night is read.
    """
    from .pipeline import resolve_parameters as resolve

    if not isinstance(rules, str):
        raise UsageError("rules must be a preset name (wasm2016, aasm, strict, ...)")
    return resolve(rules, params)


def plan_batch(
    inputs: Path | str | Sequence[Path | str],
    output_dir: str | os.PathLike,
    *,
    rules: str = "wasm2016",
    params: dict[str, Any] | None = None,
    pattern: str = DEFAULT_PATTERN,
    force: bool = False,
) -> list[NightTask]:
    """The nights to bring up to date and where their summaries go.

    ``inputs`` is a directory (searched with ``pattern``) or a list of night files (then
    the outputs keep the files' paths below their common directory).
    """
    from .provenance import canonical_json

    output_dir = Path(output_dir)
    parameters_json = canonical_json(resolve_parameters(rules, params))
    if isinstance(inputs, str | os.PathLike) and not Path(inputs).exists():
        raise UsageError(f"{inputs}: no such directory or file")
    if isinstance(inputs, str | os.PathLike) and Path(inputs).is_dir():
        root = Path(inputs)
        inside = output_dir.resolve() != root.resolve()  # summaries may go beside the nights
        nights = find_nights(root, pattern, exclude=[output_dir] if inside else [])
        if not nights:
            raise UsageError(f"{root}: no night files matching {pattern!r}")
    else:
        nights = [Path(p) for p in ([inputs] if isinstance(inputs, str | os.PathLike) else inputs)]
        if not nights:
            raise UsageError("no nights to analyse")
        for night in nights:
            if night.is_dir():
                raise UsageError(f"{night}: is a directory; give a directory alone, or files")
        root = Path(os.path.commonpath([p.absolute().parent for p in nights]))
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"{output_dir}: exists and is not a directory")
    tasks, seen = [], {}
    out_abs = output_dir.absolute()
    for night in nights:
        relative = night.absolute().relative_to(root.absolute())
        summary = relative.with_name(summary_name(relative.name))
        output = out_abs / summary
        if output in seen:
            raise UsageError(
                f"{seen[output]} and {night} would both be summarised to {output_dir / summary}"
                ": rename one, or narrow --pattern"
            )
        if output.resolve() == night.resolve():
            raise UsageError(f"{night}: would be overwritten by its own summary")
        seen[output] = night
        tasks.append(
            NightTask(
                path=str(night),
                read_path=str(night.absolute()),
                relative=relative.as_posix(),
                output=str(output),
                summary=summary.as_posix(),
                rules=rules,
                params=dict(params or {}),
                parameters_json=parameters_json,
                force=force,
            )
        )
    return tasks


# -- one night (runs in a worker) ------------------------------------------------------
def process_night(task: NightTask) -> NightOutcome:
    """Bring one night's summary up to date: skip it, or analyse it and write it.

    Never raises for a bad night: the outcome says ``failed`` and why. Runs in a
    worker process; reads one night at a time.
    """
    started, cpu = time.perf_counter(), time.process_time()
    outcome = NightOutcome(path=task.relative, input=task.path, output=task.output, status="ok")
    sha = ""
    try:
        outcome.status, sha, outcome.notice, head = _bring_up_to_date(task)
        outcome.row = cohort_row(task, outcome.status, head=head)
    except PmldError as error:
        reason = str(error)
        if error.path and reason.startswith(f"{error.path}: "):
            reason = reason[len(error.path) + 2 :]
        _failed(outcome, task, reason, sha)
    except MemoryError:
        _failed(outcome, task, "out of memory while analysing this night", sha)
    except Exception as error:  # a bug: the batch goes on, the traceback is kept
        _failed(
            outcome, task,
            f"internal error (a bug in pmld {__version__}; please report it): "
            f"{type(error).__name__}: {error}",
            sha,
        )
        outcome.internal = True
        outcome.traceback = traceback.format_exc()
    outcome.seconds = time.perf_counter() - started
    outcome.cpu_seconds = time.process_time() - cpu
    outcome.worker_pid = os.getpid()
    outcome.worker_peak_rss_mb = peak_rss_mb()
    return outcome


def _failed(outcome: NightOutcome, task: NightTask, reason: str, sha: str) -> None:
    outcome.status = "failed"
    outcome.error = " ".join(reason.split())  # one line
    outcome.row = cohort_row(task, "failed", error=outcome.error, sha=sha)


def _bring_up_to_date(task: NightTask):
    from .io.journal import journal_path
    from .io.nightfile import open_night
    from .pipeline import analyze
    from .provenance import canonical_json

    source, output = Path(task.read_path), Path(task.output)
    journal = journal_path(source)
    unfinished = journal.exists() and (
        not source.exists() or journal.stat().st_mtime > source.stat().st_mtime
    )
    if not source.exists() and not unfinished:
        raise InputError("no such file (removed during the batch?)", path=task.path)
    sha = ""
    if not task.force and not unfinished and output.exists():
        head = read_summary_head(output)
        if (
            head is not None
            and head["attrs"].get("parameters_json") == task.parameters_json
            and head["attrs"].get("pmld_version") == __version__
        ):
            sha = _sha256(source, task.path)
            if head["attrs"].get("input_sha256") == sha:
                return "skipped", sha, None, head
    night, notice = open_night(source)
    if notice or not sha:  # a night rebuilt from its journal is a new file
        sha = _sha256(source, task.path)
    result = analyze(night, task.rules, **task.params)
    del night
    result.inputs = [{"path": task.path, "sha256": sha}]
    if canonical_json(result.parameters) != task.parameters_json:  # pragma: no cover
        # the summary is right; only the skip rule would never match it (a bug to report)
        notice = (
            f"{task.path}: pmld.analyze resolved other parameters than "
            "pmld.batch.resolve_parameters (a bug in pmld): this night will be analysed "
            "again on every run"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    result.to_hdf5(output)
    del result
    head = read_summary_head(output)
    if head is None:  # pragma: no cover - we have just written it
        raise InputError("the summary just written cannot be read back", path=output)
    return "ok", sha, notice, head


def _sha256(source: Path, shown: str) -> str:
    from .provenance import file_sha256

    try:
        return file_sha256(source)
    except FileNotFoundError:
        raise InputError("no such file", path=shown) from None
    except OSError as error:
        raise InputError(f"cannot be read: {error.strerror or error}", path=shown) from None


def read_summary_head(path: str | os.PathLike) -> dict[str, Any] | None:
    """A summary's root attributes, indices and quality flags, without its tables.

    None when the file is not a readable pmld-summary of a version this pmld reads.
    """
    from .io._hdf5 import attr_plain, open_checked
    from .io.summary import SUMMARY_SCHEMA, SUMMARY_VERSION

    try:
        with open_checked(path, SUMMARY_SCHEMA, SUMMARY_VERSION) as h5:
            attrs = {k: attr_plain(v) for k, v in h5.attrs.items()}
            indices = {k: attr_plain(v) for k, v in h5["summary"].attrs.items()}
            flags = json.loads(attr_plain(h5["quality"].attrs["flags"]))
            sleep = (
                {k: attr_plain(v) for k, v in h5["sleep"].attrs.items()} if "sleep" in h5 else {}
            )
    except (PmldError, OSError, KeyError, ValueError, TypeError):
        return None
    if sleep.get("flags"):
        flags = [*flags, *json.loads(sleep["flags"])]
    return {"attrs": attrs, "indices": indices, "flags": flags, "sleep": sleep}


def cohort_row(
    task: NightTask,
    status: str,
    *,
    head: dict[str, Any] | None = None,
    error: str = "",
    sha: str = "",
) -> dict[str, Any]:
    """A night's row of the cohort table, from its summary's attributes (``head``)."""
    row: dict[str, Any] = dict.fromkeys(COHORT_COLUMNS)
    row.update(path=task.relative, status=status, error=error, input_sha256=sha or None)
    if head is None:
        return row
    attrs, indices, flags = head["attrs"], head["indices"], head["flags"]
    start_utc, zone = attrs.get("start_utc"), attrs.get("timezone")
    row.update(
        input_sha256=attrs.get("input_sha256") or sha or None,
        start_utc=start_utc,
        timezone=zone,
        duration_h=_number(attrs.get("duration_s")) / 3600,
        sides=attrs.get("sides"),
        rules=attrs.get("rules"),
        flag_count=len(flags),
        flags=" | ".join(flags),
        pmld_version=attrs.get("pmld_version"),
        summary=task.summary,
        created_utc=attrs.get("created_utc"),
    )
    for key in _INDEX_KEYS:
        row[key] = indices.get(key)
    if start_utc and zone:
        try:
            from zoneinfo import ZoneInfo

            local = datetime.fromisoformat(start_utc).astimezone(ZoneInfo(zone))
            row["start_local"] = local.isoformat()
            row["night_date"] = evening_date(
                datetime.fromisoformat(start_utc), _number(attrs.get("duration_s")), zone
            )
        except (ValueError, KeyError, OSError):
            pass
    if attrs.get("night_date"):  # schema 1.1: the importer's or the recording's evening
        row["night_date"] = attrs["night_date"]
    sleep = head.get("sleep") or {}
    if sleep.get("source"):
        row["sleep_source"] = sleep["source"]
        for key in ("sleep_h", "wake_h", "nonwear_h"):
            row[key] = _number(sleep.get(key))
    window_s = _number(attrs.get("window_stop_s")) - _number(attrs.get("window_start_s"))
    analysed_s = _number(indices.get("analyzed_hours")) * 3600
    if window_s > 0 and np.isfinite(analysed_s):
        row["gap_fraction"] = float(min(1.0, max(0.0, 1.0 - analysed_s / window_s)))
    return row


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (MB), or None where it cannot be known."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1024  # bytes / KiB


# -- the cohort table -------------------------------------------------------------------
def cohort_table(outcomes: Iterable[NightOutcome]) -> pd.DataFrame:
    """The cohort DataFrame (one row per night, :data:`COHORT_COLUMNS`) of outcomes."""
    rows = [o.row for o in outcomes]
    frame = pd.DataFrame(rows, columns=list(COHORT_COLUMNS))
    for column, dtype in COHORT_COLUMNS.items():
        values = frame[column]
        if dtype == "float64":
            frame[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        elif dtype == "Int64":
            frame[column] = pd.to_numeric(values, errors="coerce").astype("Int64")
        elif dtype == "boolean":
            frame[column] = values.astype("boolean")
        else:
            frame[column] = values.astype("string")
    return frame.sort_values("path", kind="stable", ignore_index=True)


def write_cohort(frame: pd.DataFrame, output_dir: str | os.PathLike):
    """Write ``cohort.csv`` and, with pyarrow, ``cohort.parquet`` (each atomically).

    Returns ``(csv_path, parquet_path or None, notes)``.
    """
    output_dir = Path(output_dir)
    csv_path = output_dir / "cohort.csv"
    parquet_path = output_dir / "cohort.parquet"
    notes: list[str] = []
    write_atomic([(csv_path, lambda tmp: frame.to_csv(tmp, index=False))])
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        stale = parquet_path.exists()
        if stale:
            parquet_path.unlink()
        notes.append(
            'pyarrow is not installed (pip install "pmld[research]"): wrote cohort.csv only'
            + (" and removed the stale cohort.parquet" if stale else "")
        )
        return csv_path, None, notes
    write_atomic(
        [(parquet_path, lambda tmp: frame.to_parquet(tmp, index=False, engine="pyarrow"))]
    )
    return csv_path, parquet_path, notes


# -- engines -----------------------------------------------------------------------------
def default_jobs() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["pmld.batch", "pmld.pipeline", "pmld.io.raw"])
        return context
    return multiprocessing.get_context("spawn")


_STARTED = None  # in a pool worker: a queue told which night the worker takes next


def _worker_init(started) -> None:
    """Pool workers leave Ctrl-C to the main process, which stops the batch cleanly."""
    import signal

    global _STARTED
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STARTED = started


def _pool_call(func, task: NightTask):
    if _STARTED is not None:
        _STARTED.put(task.output)
    return func(task)


def _run_process(tasks, jobs, done, *, func=process_night, isolate=True) -> bool:
    """Run ``func`` over ``tasks`` in a process pool, calling ``done(outcome)`` for each.

    When a worker dies, the nights it had taken are run again one at a time, each in a
    pool of its own; one that breaks that pool too is reported as failed. Returns
    whether a worker died (it may have left a temporary file behind).
    """
    context = _mp_context()
    remaining = list(tasks)
    died = False
    while remaining:
        started = context.SimpleQueue()
        pool = ProcessPoolExecutor(
            max_workers=max(1, min(jobs, len(remaining))),
            mp_context=context,
            initializer=_worker_init,
            initargs=(started,),
        )
        futures, unfinished, reported = {}, [], set()
        try:
            for task in remaining:
                futures[pool.submit(_pool_call, func, task)] = task
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    unfinished.append(futures[future])
                    continue
                reported.add(future)
                done(outcome)
        except KeyboardInterrupt:
            _stop_pool(pool, [f for f in futures if f not in reported], done)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        began = set()
        while not started.empty():
            began.add(started.get())
        started.close()
        died = died or bool(unfinished)
        suspects = [t for t in unfinished if t.output in began]
        remaining = [t for t in unfinished if t.output not in began]
        for task in suspects:
            if isolate:
                _run_process([task], 1, done, func=func, isolate=False)
            else:
                done(_worker_died(task))
    return died


def _worker_died(task: NightTask) -> NightOutcome:
    outcome = NightOutcome(path=task.relative, input=task.path, output=task.output, status="ok")
    _failed(
        outcome, task,
        "the worker process died while analysing this night (killed, out of memory, or "
        "a crash in a library)", "",
    )
    return outcome


def _stop_pool(pool: ProcessPoolExecutor, futures, done) -> None:
    """After Ctrl-C: cancel the nights not begun and let the ones in progress finish;
    a second Ctrl-C stops the workers at once."""
    for future in futures:
        future.cancel()
    try:
        pool.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.join(5)
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is None:
            done(future.result())


def _dask_imports():
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UsageError(
            'the dask engine needs dask.distributed: pip install "pmld[dask]"'
        ) from None
    return Client, LocalCluster, as_completed


def _pmld_version() -> str:
    import pmld

    return pmld.__version__


def _run_dask(tasks, jobs, scheduler, done, say) -> None:
    import logging

    Client, LocalCluster, dask_completed = _dask_imports()
    cluster = None
    if scheduler:
        try:
            _reachable(scheduler)
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as error:
            raise UsageError(
                f"cannot connect to the Dask scheduler at {scheduler}: {error}"
            ) from None
    else:
        import dask

        # Ctrl-C on a terminal reaches the whole process group; only this process should
        # act on it. Worker processes started meanwhile inherit the ignored SIGINT (and
        # ignore it again once up, dask_setup below: the nanny may start new ones). A
        # Ctrl-C during these few seconds of start-up is lost. Without a dashboard nobody
        # sees Dask's statistical profiles: its sampling (every 10 ms) is switched off.
        # Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers, and setting it turns
        # off glibc's dynamic mmap threshold: every array of a night (tens of MB) is then
        # mapped and unmapped afresh and its pages faulted in again, which here made a
        # night take 1.5x the CPU time of the process pool's. Workers keep glibc's
        # defaults; the thread-count settings stay (one night per single-threaded worker).
        environ = {
            key: value
            for key, value in dask.config.get("distributed.nanny.pre-spawn-environ").items()
            if key != "MALLOC_TRIM_THRESHOLD_"
        }
        settings = {
            "distributed.worker.profile.enabled": False,
            "distributed.nanny.pre-spawn-environ": environ,
        }
        with _sigint_ignored(), dask.config.set(settings):
            cluster = LocalCluster(
                n_workers=max(1, min(jobs, len(tasks))),
                threads_per_worker=1,  # one night at a time per worker process
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                preload=["pmld.batch"],
            )
        client = Client(cluster)
    futures, reported = [], set()
    try:
        try:
            versions = client.run(_pmld_version)
        except Exception as error:
            raise UsageError(f"the Dask workers cannot import pmld: {error}") from None
        other = {w: v for w, v in versions.items() if v != __version__}
        if other:
            worker, version = next(iter(other.items()))
            raise UsageError(
                f"Dask worker {worker} runs pmld {version}, this is pmld {__version__}: "
                "install the same pmld on every worker"
            )
        if not versions:
            say("the Dask scheduler has no workers yet; the nights wait for some")
        futures = client.map(process_night, tasks, pure=False)
        by_key = {f.key: t for f, t in zip(futures, tasks, strict=True)}
        for future in dask_completed(futures):
            reported.add(future.key)
            try:
                outcome = future.result()
            except Exception as error:  # KilledWorker: the night killed its workers
                task = by_key[future.key]
                outcome = _worker_died(task)
                outcome.error = outcome.row["error"] = (
                    f"the Dask workers running this night died ({type(error).__name__})"
                )
            done(outcome)
    except KeyboardInterrupt:
        if futures:
            client.cancel([f for f in futures if not f.done()])
            for future in futures:
                if future.status == "finished" and future.key not in reported:
                    done(future.result())
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def _sigint_ignored():
    """Ignore SIGINT while child processes are started (main thread only).

    An ignored signal stays ignored across ``exec``, so processes started meanwhile
    (Dask's workers) are born ignoring it; a handler or a blocked mask would not be
    passed on reliably.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def dask_setup(worker) -> None:
    """Dask preload hook (``preload=["pmld.batch"]``): the worker ignores Ctrl-C, which
    is for the process that runs the batch."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _reachable(address: str) -> None:
    """Fail at once (not after Dask's connect timeout) when nothing listens on a TCP
    address; other protocols are left to Dask."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or not parts.port:
        return
    with socket.create_connection((parts.hostname, parts.port), timeout=10):
        pass


def _sweep_temporaries(tasks: Sequence[NightTask]) -> None:
    """Remove the temporary files of summaries whose writer was stopped (local workers)."""
    by_dir: dict[Path, set[str]] = {}
    for task in tasks:
        output = Path(task.output)
        by_dir.setdefault(output.parent, set()).add(output.name)
    for directory, names in by_dir.items():
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                # write_summary's temporary: ".<name>.<random>.tmp"
                name = entry.name[1:].rsplit(".", 2)[0]
                if name in names:
                    Path(entry.path).unlink(missing_ok=True)


# -- progress ----------------------------------------------------------------------------
class _Progress:
    """A tqdm bar on a terminal (stderr), else one plain line per night."""

    def __init__(self, total: int, enabled: bool, stream=None):
        self.total, self.enabled, self.n = total, enabled, 0
        self.stream = stream or sys.stderr
        self.counts = dict.fromkeys(STATUSES, 0)
        self.bar = None
        if enabled and _isatty(self.stream):
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(
                    total=total, file=self.stream, unit="night", dynamic_ncols=True,
                    smoothing=0.1,
                )

    def night(self, outcome: NightOutcome) -> None:
        self.n += 1
        self.counts[outcome.status] += 1
        if outcome.notice:
            self.say(outcome.notice)
        if outcome.status == "failed":
            self.say(failure_line(outcome))
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"{self.counts['ok']} ok, {self.counts['skipped']} skipped, "
                f"{self.counts['failed']} failed",
                refresh=False,
            )
            self.bar.update(1)
        elif self.enabled and outcome.status != "failed":
            detail = (
                f"PLM index {outcome.row['plm_index']:.1f}/h, {outcome.seconds:.1f} s"
                if outcome.status == "ok" and outcome.row.get("plm_index") is not None
                else "up to date"
            )
            print(
                f"[{self.n}/{self.total}] {outcome.input}: {outcome.status} ({detail})",
                file=self.stream, flush=True,
            )

    def say(self, line: str) -> None:
        if not self.enabled:
            return
        text = line if line.startswith("pmld: ") else f"pmld: {line}"
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def failure_line(outcome: NightOutcome) -> str:
    """``pmld: <night>: <reason>``: the one line that reports a failed night."""
    return f"pmld: {outcome.input}: {outcome.error}"


# -- the batch ---------------------------------------------------------------------------
def run_batch(
    inputs: Path | str | Sequence[Path | str],
    output_dir: str | os.PathLike,
    *,
    rules: str = "wasm2016",
    params: dict[str, Any] | None = None,
    pattern: str = DEFAULT_PATTERN,
    jobs: int | None = None,
    engine: str = "process",
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> BatchResult:
    """Analyse every night of a cohort into ``output_dir``; skip those up to date.

    Parameters
    ----------
    inputs : path or list of paths
        A directory of nights (searched with ``pattern``, see :func:`find_nights`) or
        a list of night files.
    output_dir : path
        Where ``<relative path>/<name>.plm.h5`` and ``cohort.csv``/``cohort.parquet``
        go (created if needed).
    rules : str
        Rule preset (``wasm2016``, ``aasm``, ``strict``, ``matplm2016``).
    params : dict, optional
        Overrides of any detection, scoring or window parameter by name, as
        :func:`pmld.analyze` takes them (``{"onset_ratio": 5}``).
    pattern : str
        Glob of the night files below a directory (default ``**/*.h5``).
    jobs : int, optional
        Worker processes (default: the CPUs available). Ignored with ``scheduler``.
    engine : {'process', 'dask'}
        A process pool, or a local ``dask.distributed`` cluster.
    scheduler : str, optional
        Address of an existing Dask scheduler (implies ``engine='dask'``).
    force : bool
        Analyse every night even if its summary is up to date.
    progress : bool
        A progress bar on standard error (tqdm on a terminal, else one line per
        night), with failed nights reported as ``pmld: <night>: <reason>``.

    Returns
    -------
    BatchResult
        With ``cohort`` (DataFrame) and ``outcomes``; ``exit_code`` is 0 when every
        night is ok or skipped, 2 when a night failed, 1 when a night hit a bug.

    Raises
    ------
    UsageError
        Bad options or parameters, no nights found, Dask missing or unreachable.
    BatchInterrupted
        On Ctrl-C (a KeyboardInterrupt): finished summaries are kept, no file is left
        half written, no cohort table is written.
    """
    began = time.perf_counter()
    if engine not in ENGINES:
        raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if scheduler:
        engine = "dask"
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise UsageError(f"jobs must be a positive number of worker processes, got {jobs!r}")
    if engine == "dask":
        _dask_imports()  # fail before any work when dask is missing
    tasks = plan_batch(inputs, output_dir, rules=rules, params=params, pattern=pattern,
                       force=force)
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{output_dir}: cannot create ({error.strerror or error})") from None
    workers = None if scheduler else min(jobs or default_jobs(), len(tasks))
    outcomes: list[NightOutcome] = []
    bar = _Progress(len(tasks), progress)

    def done(outcome: NightOutcome) -> None:
        outcomes.append(outcome)
        bar.night(outcome)

    try:
        if engine == "process":
            died = _run_process(tasks, workers, done)
        else:
            _run_dask(tasks, workers or 1, scheduler, done, bar.say)
            died = any(o.worker_pid is None for o in outcomes)
    except KeyboardInterrupt:
        bar.close()
        if not scheduler:  # the local workers have stopped: no writer is left
            _sweep_temporaries(tasks)
        raise BatchInterrupted(sorted(outcomes, key=lambda o: o.path), len(tasks)) from None
    finally:
        bar.close()
    if died and not scheduler:
        _sweep_temporaries(tasks)
    outcomes.sort(key=lambda o: o.path)
    cohort = cohort_table(outcomes)
    csv_path, parquet_path, notes = write_cohort(cohort, output_dir)
    return BatchResult(
        cohort=cohort,
        outcomes=outcomes,
        output_dir=output_dir,
        cohort_csv=csv_path,
        cohort_parquet=parquet_path,
        notes=notes,
        parameters=json.loads(tasks[0].parameters_json),
        engine=engine,
        jobs=workers,
        seconds=time.perf_counter() - began,
    )
