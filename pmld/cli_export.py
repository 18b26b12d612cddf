"""``pmld export``: a night's events or acceleration for other tools (BIDS, CSV, EDF+).

Thin: it parses the arguments and calls :func:`pmld.io.export.export`. See
``docs/exports.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parsers(subparsers: Any) -> None:
    """Add ``export`` to ``pmld``'s parser."""
    p = subparsers.add_parser(
        "export",
        help="export a summary's events (BIDS, CSV, EDF+) or a raw night (EDF+)",
        description="Export a nightly summary's events (scored LMs by class and side, "
        "PLM series, lights, sleep period, sleep/wake, non-wear, spans without data) as "
        "a BIDS events.tsv with its events.json sidecar, a CSV with UTC and local times, "
        "or EDF+ annotations; or a raw night's acceleration as EDF+ for PSG software, "
        "with a summary's events as annotations (--events). The format comes from the "
        "output's extension (.tsv BIDS, .edf EDF+, .csv CSV) unless --format is given. "
        "EDF+ needs pip install \"pmld[research]\". Files are written atomically. "
        "Details: docs/exports.md.",
    )
    p.add_argument("file", type=Path, metavar="FILE",
                   help="a nightly summary (NAME.plm.h5) or a raw night (NAME.h5)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                   help="the file to write (.tsv, .edf or .csv)")
    p.add_argument("--format", choices=("bids", "edf", "csv"),
                   help="output format (default: from OUT's extension)")
    p.add_argument("--events", type=Path, metavar="SUMMARY",
                   help="with a raw night: a summary whose events become EDF+ annotations")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from .io.export import export

    result = export(args.file, args.output, format=args.format, events=args.events)
    for notice in result.notices:
        print(f"pmld: {notice}", file=sys.stderr)
    print(result.line())
    return 0
