"""``pmld annotate``: attach a reference scoring (PSG events) to a night file.

The reference (BIDS events.tsv, CSV/TSV, EDF+ or NSRR XML) is read, its labels mapped
to pmld's, aligned on the night's clock and stored as annotations with source
``reference``; ``pmld analyze`` then uses its hypnogram, lights and respiratory events
and arousals. Everything is checked before anything is written, and the night file is
replaced atomically (:func:`pmld.io.raw.write_raw`).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from .errors import UsageError

_FORMATS = ("auto", "bids", "csv", "edf", "nsrr")  # pmld.io.reference.FORMATS, unimported


def add_parsers(subparsers: Any) -> None:
    """Add ``annotate`` to ``pmld``'s parser."""
    p = subparsers.add_parser(
        "annotate",
        help="attach a reference scoring (PSG: LMs, apneas, arousals, sleep stages) to a night",
        description="Read a reference scoring (BIDS events.tsv, CSV/TSV, EDF+ or NSRR XML), "
        "map its labels to pmld's, align it on the night's clock and store it in the night "
        "file as annotations with source 'reference' (replacing an earlier reference's). "
        "pmld analyze then uses the reference's sleep/wake, lights, respiratory events and "
        "arousals. Nothing is written unless everything is usable. See "
        "docs/reference-import.md.",
    )
    p.add_argument("night", type=Path, nargs="?", metavar="NIGHT", help="pmld-raw night file")
    p.add_argument(
        "-r", "--reference", type=Path, metavar="REF",
        help="reference file, or a directory holding one named like NIGHT "
        "(NIGHT.tsv, NIGHT.edf, NIGHT_events.tsv, NIGHT-nsrr.xml, ...)",
    )
    p.add_argument("--format", choices=_FORMATS, default="auto", help="reference format")
    p.add_argument(
        "--offset", type=float, default=0.0, metavar="S",
        help="seconds added to every reference time (reference time + S = night time)",
    )
    p.add_argument(
        "--reference-start", metavar="ISO",
        help="absolute start of the reference's time base, ISO 8601 with a UTC offset "
        "(overrides the file's; default: the file's, else the night's start)",
    )
    p.add_argument(
        "--reference-tz", metavar="ZONE",
        help="IANA time zone of the file's clock times without a UTC offset (EDF header, "
        "NSRR ClockTime); default: the night's",
    )
    p.add_argument(
        "--map", action="extend", nargs="+", default=[], metavar="LABEL=PMLD_LABEL",
        help="map a reference label to a pmld label or 'ignore' (repeatable; "
        "case-insensitive), e.g. --map 'Unsure|Unsure=hypopnea'",
    )
    p.add_argument(
        "--ignore-unknown", action="store_true",
        help="drop labels pmld does not know (and report them) instead of stopping",
    )
    p.add_argument(
        "--label", metavar="PMLD_LABEL",
        help="the label of every row of a CSV without a label column (e.g. lm)",
    )
    p.add_argument(
        "--keep-previous", action="store_true",
        help="keep annotations of an earlier reference (default: replace them)",
    )
    p.add_argument(
        "--list-labels", action="store_true", help="print the built-in label table and exit"
    )
    p.add_argument(
        "-o", "--output", type=Path, metavar="OUT.h5",
        help="write the annotated night here (default: NIGHT, replaced atomically)",
    )
    p.set_defaults(func=_cmd_annotate)


def parse_label_map(items: list[str]) -> dict[str, str]:
    """``['Unsure|Unsure=hypopnea', ...]`` -> ``{'Unsure|Unsure': 'hypopnea'}``."""
    out: dict[str, str] = {}
    for item in items:
        label, sep, target = item.rpartition("=")
        if not sep or not label.strip() or not target.strip():
            raise UsageError(f"--map takes LABEL=PMLD_LABEL (or LABEL=ignore), got {item!r}")
        out[label.strip()] = target.strip()
    return out


def _cmd_annotate(args: argparse.Namespace) -> int:
    from .io import reference as ref

    if args.list_labels:
        print(format_label_table())
        return 0
    if args.night is None:
        raise UsageError("annotate needs NIGHT, a pmld-raw night file")
    if args.reference is None:
        raise UsageError("annotate needs --reference REF (a file, or a directory of them)")
    label_map = parse_label_map(args.map)
    path = args.reference
    if path.is_dir():
        path = ref.find_reference(args.night, path)
    reference = ref.read_reference(
        path,
        format=args.format,
        offset_s=args.offset,
        start_utc=args.reference_start,
        label_map=label_map,
        on_unknown="ignore" if args.ignore_unknown else "error",
        default_label=args.label,
        timezone=args.reference_tz,
    )
    from .cli import _open_night
    from .io.raw import write_raw

    night = _open_night(args.night)
    annotated = ref.attach_reference(night, reference, replace=not args.keep_previous)
    overlap = ref.reference_overlap(reference, night)
    replaced = 0 if args.keep_previous else int((night.annotations["source"] == "reference").sum())
    output = args.output or args.night
    write_raw(annotated, output)

    start = "unknown (taken as the night's start)"
    if overlap.start_known:
        start = f"{ref.format_utc(overlap.time_base_utc)} ({overlap.start_source})"
    offset = f", offset {reference.offset_s:+g} s" if reference.offset_s else ""
    print(
        f"{path}: {reference.format}, {reference.n_events} events; reference start "
        f"{start}{offset}"
    )
    aligned = ref.align_reference(reference, night)
    for line in ref.summarize_annotations(aligned):
        print(f"  {line}")
    for title, counts in (("ignored", reference.ignored), ("unknown, dropped", reference.unknown)):
        if counts:
            listed = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            shown = ", ".join(f"{text!r} {n}" for text, n in listed[:6])
            more = f", and {len(listed) - 6} more labels" if len(listed) > 6 else ""
            print(f"  {title}: {sum(counts.values())} ({shown}{more})")
    print(overlap.line(with_source=False))
    note = f"; {replaced} earlier reference annotations replaced" if replaced else ""
    print(f"wrote {output} ({len(aligned)} reference annotations{note})")
    return 0


def format_label_table() -> str:
    """The built-in label table, one pmld label per paragraph."""
    from .io.reference import label_table

    table = label_table()
    lines = [
        "Reference labels pmld knows (case-insensitive; punctuation ignored; a side word "
        "such as left/right/L/R in an LM label sets its side; NSRR 'a|b' concepts match "
        "either part). Map others with --map LABEL=PMLD_LABEL.",
    ]
    for label, rows in table.groupby("label", sort=False):
        keys = ", ".join(
            f"{k} [{s}]" if s else k for k, s in zip(rows["key"], rows["stage"], strict=True)
        )
        lines.append("")
        lines.extend(
            textwrap.wrap(
                f"{label}: {keys}", width=100, subsequent_indent="    ", break_on_hyphens=False
            )
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["annotate", *sys.argv[1:]]))
