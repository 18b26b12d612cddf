"""``pmld sweep``: every combination of parameter values on every night, against a
reference scoring.

Thin: it parses the grid, checks everything (names, values, nights, references, the
output) before any work, and calls :mod:`pmld.sweep`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import UsageError


def add_parsers(subparsers: Any) -> None:
    """Add ``sweep`` to ``pmld``'s parser."""
    from .cli import _add_param_options
    from .cli_evaluate import add_reference_options

    p = subparsers.add_parser(
        "sweep",
        help="sweep detection/scoring parameters over nights against a reference scoring",
        description="Analyse every night with every combination of the --grid values (as "
        "'pmld analyze --set' would) and compare each with the night's reference scoring "
        "(as 'pmld evaluate' does): LM sensitivity, PPV, F1, onset error, PLM index of "
        "pmld and of the reference LMs scored by the same rules. Writes one row per "
        "combination x night, and NAME.best.EXT with one row per combination (mean and "
        "median over the nights, pooled F1) ranked by --metric; prints the best. "
        "Work that no swept parameter changes is done once per night. Guide: "
        "docs/sweeps.md.",
    )
    p.add_argument("nights", type=Path, nargs="+", metavar="NIGHT", help="pmld-raw night files")
    p.add_argument(
        "--reference", type=Path, required=True, metavar="DIR",
        help="directory of reference scorings matched to the nights by name "
        "(NIGHT.tsv, NIGHT.edf, ...; see 'pmld annotate'), or one file for one night",
    )
    add_reference_options(p)
    p.add_argument(
        "--grid", action="append", default=[], metavar="NAME=V1,V2,...",
        help="values of one parameter to sweep (repeatable; every combination is run), "
        "e.g. --grid onset_ratio=3,4,5; any name 'pmld params' prints",
    )
    _add_param_options(p, night_options=False)
    p.add_argument(
        "--metric", default="f1",
        help="what ranks the combinations: f1 (default), sensitivity, ppv, plm_kappa, "
        "plm_index_abs_error, onset_error_abs_median_s (mean over nights), NAME_median, "
        "or f1_pooled, sensitivity_pooled, ppv_pooled",
    )
    p.add_argument("--top", type=int, default=5, metavar="N", help="best N printed (default 5)")
    p.add_argument(
        "--jobs", type=int, default=1, metavar="N",
        help="worker processes; each analyses whole nights (default 1)",
    )
    p.add_argument(
        "--tolerance", type=float, default=0.5, metavar="S",
        help="events less than S seconds apart still match (default 0.5, as pmld evaluate)",
    )
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="TABLE",
        help="the table, .parquet (needs the research extra) or .csv; the ranking goes to "
        "TABLE's name with .best before the suffix",
    )
    p.set_defaults(func=run_sweep_command)


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["name=v1,v2", ...]`` -> ``{name: [v1, v2]}``, values read as ``--set`` reads them."""
    from .cli import _parse_value

    grid: dict[str, list] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--grid takes NAME=V1,V2,..., got {item!r}")
        if name in grid:
            raise UsageError(f"--grid {name} is given twice; list all its values in one --grid")
        texts = [v.strip() for v in values.split(",")]
        if not values.strip() or any(not t for t in texts):
            raise UsageError(f"--grid {name}: an empty value in {values!r}")
        grid[name] = [_parse_value(t) for t in texts]
    return grid


def run_sweep_command(args: argparse.Namespace) -> int:
    import math

    from .cli import _load_params
    from .cli_evaluate import reference_options
    from .sweep import (
        check_output,
        format_ranked,
        load_nights,
        plan_sweep,
        ranking_column,
        run_sweep,
        write_sweep,
    )

    # -- everything is checked before any work
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}")
    if not math.isfinite(args.tolerance) or args.tolerance < 0:
        raise UsageError(f"--tolerance must be a finite number >= 0 seconds, got {args.tolerance}")
    if args.offset is not None and not math.isfinite(args.offset):
        raise UsageError(f"--offset must be a finite number, got {args.offset}")
    options = reference_options(args)
    ranking_column(args.metric)
    rules, params = _load_params(args)
    plan = plan_sweep(parse_grid(args.grid), rules, params)
    check_output(args.output)
    inputs = {p.resolve() for p in args.nights}
    if args.output.resolve() in inputs:
        raise UsageError(f"{args.output}: is an input night; write the table elsewhere")
    if plan.skipped:
        values, reason = plan.skipped[0]
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        print(
            f"pmld: skipping {len(plan.skipped)} of "
            f"{len(plan.skipped) + len(plan.combinations)} combinations that are invalid "
            f"together, e.g. {shown}: {reason}",
            file=sys.stderr,
        )

    def notice(line: str) -> None:
        print(f"pmld: {line}", file=sys.stderr)

    nights = load_nights(
        args.nights, args.reference, jobs=args.jobs, plan=plan, notice=notice,
        reference_options=options,
    )

    # -- the work
    def progress(timing: dict, done: int, total: int) -> None:
        print(
            f"night {done}/{total} {timing['night']}: first pass {timing['prepare_s']:.2f} s, "
            f"then {timing['per_combination_ms']:.1f} ms per combination",
            file=sys.stderr,
        )

    size = f"{_count(len(plan.combinations), 'combination')} x {_count(len(nights), 'night')}"
    print(
        f"sweeping {size} ({_count(plan.preprocessing_groups, 'activity signal')} per "
        f"night), {_count(args.jobs, 'job')}",
        file=sys.stderr,
    )
    result = run_sweep(
        nights, plan, tolerance_s=args.tolerance, jobs=args.jobs, progress=progress
    )
    table_path, best_path = write_sweep(result, args.output, args.metric)
    timings = result.timings
    per_ms = 1000 * timings["combinations_s"].sum() / len(plan.combinations) / len(nights)
    print(
        f"{size} in {result.wall_s:.1f} s: first pass {timings['prepare_s'].sum():.1f} s "
        f"in all, then {per_ms:.1f} ms per combination per night"
    )
    print(format_ranked(result.ranked(args.metric), plan, args.metric, args.top))
    print(f"wrote {table_path} and {best_path}")
    return 0


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
