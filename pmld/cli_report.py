"""``pmld report``: a night's report from its summary file, or a cohort's from its table.

Thin: it checks the options, tells the input by its content and calls
:func:`pmld.plot.write_report`. docs/report.md describes the reports.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from .errors import UsageError


def add_parsers(subparsers: Any) -> None:
    """Add ``report`` to ``pmld``'s parser."""
    p = subparsers.add_parser(
        "report",
        help="a night's report (HTML, PNG, PDF) from its summary, or a cohort's from its table",
        description="Draw a night from its summary file alone (NAME.plm.h5 from pmld "
        "analyze or pmld batch): the whole night on the local clock (analysis window, "
        "sleep period, sleep/wake, non-wear, missing data, activity and posture angle, "
        "every leg movement by class, PLM series), a zoom on a representative PLM series, "
        "the IMI and ln(IMI) histograms, the indices against the clinical cut-off and "
        "severity bands, quality flags, calibration, sleep source, parameters and "
        "provenance. Given the cohort table pmld batch writes (cohort.csv or "
        "cohort.parquet), draw the cohort: the PLMS index distribution, severity bands, "
        "failed and flagged nights and a table of nights linking each night's report "
        "when it lies beside its summary. The input is told by its content. "
        "Description of every panel: docs/report.md.",
    )
    p.add_argument(
        "input", type=Path, metavar="INPUT",
        help="a nightly summary (NAME.plm.h5) or a cohort table (cohort.csv, cohort.parquet)",
    )
    p.add_argument(
        "-o", "--output", type=Path, metavar="FILE",
        help="the report: .html (self-contained), .png (one figure) or .pdf (figure and "
        "text pages), by the extension (default: NAME.html beside NAME.plm.h5, "
        "cohort.html beside the table)",
    )
    p.add_argument(
        "--format", choices=("html", "png", "pdf"), default=None,
        help="write this format whatever the output's extension",
    )
    p.add_argument(
        "--threshold", type=float, default=15.0, metavar="PER_H",
        help="PLMS index above which a night is abnormal (default 15/h, adults; 5 for "
        "children)",
    )
    p.add_argument(
        "--night-reports", action="store_true",
        help="with a cohort table: also write each night's HTML report beside its summary "
        "(NAME.html) and link it",
    )
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from .plot import input_kind, report_format, write_report

    if not math.isfinite(args.threshold) or args.threshold < 0:
        raise UsageError(f"--threshold must be a non-negative number per hour, got "
                         f"{args.threshold}")
    if args.output is not None:
        report_format(args.output, args.format)  # an unknown extension fails first
    if args.night_reports:
        kind = input_kind(args.input)
        if kind == "summary":
            raise UsageError("--night-reports goes with a cohort table, not a summary")
        _night_reports(args.input, args.threshold)
    kind, path = write_report(args.input, args.output, fmt=args.format,
                              threshold=args.threshold)
    print(f"wrote {kind} report {path}")
    return 0


def _night_reports(table_path: Path, threshold: float) -> None:
    """Each night's HTML report beside its summary (the cohort report links them)."""
    from .errors import PmldError
    from .plot import default_night_report, read_cohort_table, write_night_report

    table = read_cohort_table(table_path)
    base = table_path.parent
    written = 0
    for summary in table["summary"].dropna():
        path = base / str(summary)
        if not path.is_file():
            continue
        try:
            write_night_report(path, default_night_report(path), threshold=threshold)
            written += 1
        except PmldError as error:  # one damaged summary does not stop the others
            print(f"pmld: {error}", file=sys.stderr)
    print(f"wrote {written} night report{'s' if written != 1 else ''}")


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["report", *sys.argv[1:]]))
