"""``pmld evaluate``: agreement of nightly summaries with a reference scoring.

Thin: it reads the summaries and references, checks them all before computing anything,
and calls :mod:`pmld.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from .errors import InputError, UsageError
from .provenance import strict_json

_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}


def add_parsers(subparsers: Any) -> None:
    """Add ``evaluate`` to ``pmld``'s parser."""
    p = subparsers.add_parser(
        "evaluate",
        help="agreement of nightly summaries with a reference scoring (PSG)",
        description="Compare pmld's leg movements and PLM indices with a reference "
        "scoring of the same nights: event-level sensitivity, PPV, F1 and timing errors; "
        "agreement on which LMs are PLMs (Cohen's kappa); and across nights, the PLM "
        "index's bias, 95% limits of agreement, ICC(2,1), Pearson and Spearman "
        "correlation and agreement on PLM index > 15/h. The reference LMs are scored by "
        "pmld's scorer with the rules each summary records (unless the reference marks "
        "PLMs itself). Definitions: docs/agreement.md.",
    )
    p.add_argument(
        "summaries", type=Path, nargs="+", metavar="SUMMARY",
        help="nightly summary files (NAME.plm.h5) from pmld analyze",
    )
    p.add_argument(
        "--reference", type=Path, required=True, metavar="REF",
        help="the reference of a single SUMMARY (a file), or a directory holding one "
        "reference per summary, matched by name",
    )
    add_reference_options(p)
    p.add_argument(
        "--tolerance", type=float, default=0.5, metavar="S",
        help="events less than S seconds apart still match (default 0.5, the WASM 2016 "
        "association gap; 0 asks for overlap)",
    )
    p.add_argument(
        "--threshold", type=float, default=15.0, metavar="PER_H",
        help="PLM index above which a night is abnormal (default 15/h, adults)",
    )
    p.add_argument("--plot", type=Path, metavar="FILE", help="Bland-Altman plot (.png/.pdf/.svg)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "-o", "--output", type=Path, metavar="TABLE",
        help="write the per-night metrics as a table (.csv or .tsv)",
    )
    p.set_defaults(func=run_evaluate)


def add_reference_options(p: argparse.ArgumentParser) -> None:
    """How the reference reader reads the references (``pmld evaluate``, ``pmld sweep``):
    ``--offset``, ``--reference-start``, ``--map``, ``--ignore-unknown``; read them back
    with :func:`reference_options`."""
    p.add_argument(
        "--offset", type=float, metavar="S",
        help="seconds to add to the reference's times to put them on the night's clock "
        "(default: what the reference reader makes of the file)",
    )
    p.add_argument(
        "--reference-start", metavar="ISO",
        help="absolute start of the reference's times (ISO 8601 with a UTC offset), when "
        "the file does not give it",
    )
    p.add_argument(
        "--map", action="append", default=[], metavar="LABEL=PMLD_LABEL",
        help="map a reference label to a pmld label, e.g. --map 'PLM=lm' (repeatable)",
    )
    p.add_argument(
        "--ignore-unknown", action="store_true",
        help="drop reference labels pmld does not know instead of refusing the file",
    )


def reference_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`add_reference_options` as the keyword arguments of
    :func:`pmld.evaluate.read_reference_lms` and :func:`pmld.evaluate.open_reference`."""
    label_map = {}
    for item in args.map:
        label, sep, target = item.partition("=")
        if not sep or not label.strip() or not target.strip():
            raise UsageError(f"--map takes LABEL=PMLD_LABEL, got {item!r}")
        label_map[label.strip()] = target.strip()
    return {
        "offset_s": args.offset,
        "start_utc": args.reference_start,
        "label_map": label_map or None,
        "on_unknown": "ignore" if args.ignore_unknown else "error",
    }


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import (
        assess_night,
        check_plot_path,
        night_agreement,
        pooled_metrics,
        read_reference_lms,
    )
    from .io.summary import read_summary

    # -- everything is checked before anything is computed or written
    for name in ("tolerance", "threshold", "offset"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            raise UsageError(f"--{name} must be a finite number, got {value}")
    if args.tolerance < 0:
        raise UsageError(f"--tolerance must be >= 0 seconds, got {args.tolerance}")
    seen: set[Path] = set()
    for path in args.summaries:
        if path.resolve() in seen:
            raise UsageError(f"{path}: given twice")
        seen.add(path.resolve())
    if args.plot is not None:
        if len(args.summaries) < 2:
            raise UsageError("--plot needs at least 2 nights (a Bland-Altman plot of one night)")
        check_plot_path(args.plot)
    if args.output is not None:
        if args.output.suffix.lower() not in _TABLE_SUFFIXES:
            raise UsageError(f"{args.output}: -o writes a .csv or .tsv table")
        directory = args.output.parent if str(args.output.parent) else Path(".")
        if not directory.is_dir():
            raise UsageError(f"{args.output}: directory {directory} does not exist")
    reference = args.reference
    if not reference.exists():
        raise InputError("no such file or directory", path=reference)
    if reference.is_file() and len(args.summaries) > 1:
        raise UsageError(
            f"--reference {reference} is one file for {len(args.summaries)} summaries; give "
            "a directory of references named like the nights"
        )
    options = reference_options(args)
    nights = []
    for path in args.summaries:
        summary = read_summary(path)
        ref_path = reference if reference.is_file() else _find_reference(path, reference)
        lms = read_reference_lms(ref_path, summary, **options)
        _check_overlap(lms, ref_path, summary, path)
        nights.append((path, ref_path, summary, lms))

    # -- the work
    evaluations, rows = [], []
    for path, ref_path, summary, lms in nights:
        evaluation = assess_night(summary, lms, tolerance_s=args.tolerance)
        evaluations.append(evaluation)
        rows.append(
            {"night": _night_name(path), "summary": str(path), "reference": str(ref_path),
             **evaluation.metrics}
        )
    pooled = pooled_metrics(evaluations)
    import pandas as pd

    table = pd.DataFrame(rows)
    pairs = pd.DataFrame(
        {
            "night": table["night"],
            "pmld_index": table["pmld_plm_index"],
            "reference_index": table["reference_plm_index"],
        }
    )
    across = night_agreement(pairs, threshold=args.threshold).to_dict()
    if args.plot is not None:
        from .evaluate import bland_altman_plot

        bland_altman_plot(pairs, args.plot)
    if args.output is not None:
        table.to_csv(
            args.output, sep=_TABLE_SUFFIXES[args.output.suffix.lower()], index=False,
            float_format="%.6g",
        )
    if args.json:
        out = {
            "tolerance_s": args.tolerance,
            "threshold_per_h": args.threshold,
            "nights": rows,
            "pooled": pooled,
            "across_nights": across,
        }
        if args.plot is not None:
            out["plot"] = str(args.plot)
        if args.output is not None:
            out["table"] = str(args.output)
        print(json.dumps(strict_json(out), indent=2))
        return 0
    for row in rows:
        print(format_night(row))
    print(format_pooled(pooled))
    print(format_across(across))
    for what, path in (("plot", args.plot), ("table", args.output)):
        if path is not None:
            print(f"wrote {what} {path}")
    return 0


def _night_name(path: Path) -> str:
    name = path.name
    for suffix in (".plm.h5", ".h5"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _find_reference(summary_path: Path, directory: Path) -> Path:
    from .io.reference import find_reference

    return Path(find_reference(summary_path, directory))


def _check_overlap(lms, ref_path: Path, summary, summary_path: Path) -> None:
    if not len(lms):
        raise InputError(
            "holds no leg movements (no annotation read as an LM; check its labels)",
            path=ref_path,
        )
    start = float(summary.attrs.get("window_start_s", -math.inf))
    stop = float(summary.attrs.get("window_stop_s", math.inf))
    onset = lms["onset_s"].to_numpy(dtype=float)
    inside = (onset >= start) & (onset < stop)
    if not inside.any():
        raise InputError(
            f"none of its {len(lms)} leg movements ({onset.min():.0f} to {onset.max():.0f} s) "
            f"falls in the analysed window of {summary_path} ({start:.0f} to {stop:.0f} s): "
            "is it that night's reference, and are the clocks aligned (--offset)?",
            path=ref_path,
        )


def _num(value: float, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def _events_text(m: dict) -> str:
    return (
        f"LMs reference {m['n_reference']}, pmld {m['n_detected']}, matched {m['matched']}: "
        f"sensitivity {_num(m['sensitivity'])}, PPV {_num(m['ppv'])}, F1 {_num(m['f1'])}; "
        f"onset error median {_num(m['onset_error_signed_median_s'], '+.2f')} s "
        f"(absolute {_num(m['onset_error_abs_median_s'])} s), duration error median "
        f"{_num(m['duration_error_signed_median_s'], '+.2f')} s; PLM status of matched LMs: "
        f"{_num(m['plm_percent_agreement'], '.1f')}% agree, kappa {_num(m['plm_kappa'])}; "
        f"PLMs reference {m['reference_plm_count']}, pmld {m['detected_plm_count']}"
    )


def format_night(row: dict) -> str:
    return (
        f"{row['night']}: {_events_text(row)}; PLM index pmld "
        f"{_num(row['pmld_plm_index'], '.1f')}/h, reference "
        f"{_num(row['reference_plm_index'], '.1f')}/h over {_num(row['window_hours'])} h"
    )


def format_pooled(pooled: dict) -> str:
    return f"pooled, {pooled['nights']} night{'s' if pooled['nights'] != 1 else ''}: " + (
        _events_text(pooled)
    )


def format_across(a: dict) -> str:
    if a["n"] < 2:
        return (
            f"across nights: {a['n']} night{'s' if a['n'] != 1 else ''} with both indices; "
            "night-level agreement needs at least 2"
        )
    excluded = f" ({a['n_excluded']} without an index left out)" if a["n_excluded"] else ""
    agree = a["category_both"] + a["category_neither"]
    return (
        f"across {a['n']} nights{excluded}: PLM index bias {_num(a['bias'], '+.2f')}/h "
        f"(95% CI {_num(a['bias_ci_low'], '+.2f')} to {_num(a['bias_ci_high'], '+.2f')}), "
        f"limits of agreement {_num(a['loa_low'], '+.2f')} to {_num(a['loa_high'], '+.2f')}/h; "
        f"ICC(2,1) {_num(a['icc_2_1'], '.3f')}, Pearson r {_num(a['pearson_r'], '.3f')}, "
        f"Spearman rho {_num(a['spearman_rho'], '.3f')}; PLM index > "
        f"{a['category_threshold']:g}/h: {agree} of {a['n']} nights agree, kappa "
        f"{_num(a['category_kappa'])}"
    )


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["evaluate", *sys.argv[1:]]))
