"""``pmld batch``: re-analyse a directory of nights in parallel into one cohort table.

The library side is :mod:`pmld.batch`; this module parses the options and prints.
Parameters are resolved exactly as ``pmld analyze`` resolves them (``--params`` TOML,
then ``--rules``, then each ``--set``), by the same functions of :mod:`pmld.cli`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EPILOG = """\
Each night INPUT_DIR/<path>/NAME.h5 gets OUTPUT_DIR/<path>/NAME.plm.h5 (the summary
'pmld analyze' writes). A night whose summary already records the same parameters,
the same pmld version and the same SHA-256 of the input is skipped (--force
recomputes). At the end: OUTPUT_DIR/cohort.csv and cohort.parquet, one row per night.

Exit codes: 0 every night analysed or up to date; 2 a night failed (each failed night
is one line 'pmld: NIGHT: REASON' on standard error; the others are done) or the
options are not usable; 1 a night hit an internal error (a bug); 130 interrupted
(Ctrl-C or SIGTERM: finished summaries are kept, none is left half written, no cohort
table is written)."""


def add_parsers(subparsers: Any) -> None:
    """Add ``pmld batch`` to ``pmld``'s parser."""
    from .cli import _add_param_options

    p = subparsers.add_parser(
        "batch",
        help="re-analyse a directory of nights in parallel; write a cohort table",
        description="Analyse every night file under INPUT_DIR (pmld-raw .h5, recursively) "
        "in parallel, skipping nights whose summary is up to date, and write one cohort "
        "table.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input_dir", type=Path, metavar="INPUT_DIR", help="directory of nights")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUTPUT_DIR",
        help="directory of the summaries and the cohort table (created if needed)",
    )
    p.add_argument(
        "-j", "--jobs", type=int, metavar="N",
        help="worker processes, one night at a time each (default: the CPUs available)",
    )
    p.add_argument(
        "--engine", choices=("process", "dask"), default="process",
        help="process: a process pool (default); dask: a local dask.distributed cluster",
    )
    p.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (implies --engine dask; "
        "its workers must see the files under the same paths)",
    )
    p.add_argument(
        "--pattern", default="**/*.h5", metavar="GLOB",
        help="night files, as a glob relative to INPUT_DIR (default '**/*.h5': every .h5 "
        "at any depth; *.plm.h5 summaries and hidden files are never taken)",
    )
    _add_param_options(p)
    p.add_argument("--force", action="store_true", help="recompute nights that are up to date")
    p.add_argument(
        "-q", "--quiet", action="store_true",
        help="no progress and no closing summary; failed nights are still reported",
    )
    p.set_defaults(func=_cmd_batch)


def _cmd_batch(args: argparse.Namespace) -> int:
    import signal

    from .batch import BatchInterrupted, failure_line, run_batch
    from .cli import _load_params
    from .errors import UsageError

    rules, params = _load_params(args)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if args.scheduler and args.jobs is not None and not args.quiet:
        print("pmld: --jobs is ignored with --scheduler (the cluster has its workers)",
              file=sys.stderr)

    def stop(signum, frame):  # SIGTERM (a job scheduler, kill) stops as Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        result = run_batch(
            args.input_dir,
            args.output,
            rules=rules,
            params=params,
            pattern=args.pattern,
            jobs=None if args.scheduler else args.jobs,
            engine=args.engine,
            scheduler=args.scheduler,
            force=args.force,
            progress=not args.quiet,
        )
    except BatchInterrupted as stopped:
        print(
            f"pmld: interrupted: {len(stopped.outcomes)} of {stopped.total} nights reported "
            "done; every summary written is complete and kept; no cohort table written",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.quiet:  # the progress lines did not report them
        for outcome in result.failed:
            print(failure_line(outcome), file=sys.stderr)
    for outcome in result.failed:
        if outcome.traceback:
            print(f"pmld: traceback of {outcome.input}:\n{outcome.traceback}", file=sys.stderr)
    for note in result.notes:
        print(f"pmld: {note}", file=sys.stderr)
    if not args.quiet:
        print(result.describe())
        tables = [str(p) for p in (result.cohort_csv, result.cohort_parquet) if p]
        print(f"cohort table: {', '.join(tables)}")
    if result.failed:
        print(
            f"pmld: {len(result.failed)} of {len(result.outcomes)} nights failed",
            file=sys.stderr,
        )
    return result.exit_code
