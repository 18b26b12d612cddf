"""The ``pmld`` command. Thin: it parses arguments and calls the library.

Expected failures (bad files, bad options) print one line ``pmld: <what is wrong>`` on
standard error and exit with code 2; see :mod:`pmld.errors` for the exit codes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import PmldError, UsageError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PmldError as error:
        print(f"pmld: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("pmld: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `pmld info x.h5 | head`
        return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other expected failure (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"pmld: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pmld",
        description="Periodic limb movements in sleep from an ankle-worn accelerometer.",
        epilog="Exit codes: 0 success, 1 internal error, 2 unusable input or options, "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"pmld {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "import",
        help="import a device file (.cwa, .gt3x, .bin) or a CSV into pmld-raw night files",
        description="Import acceleration from an Axivity .cwa, ActiGraph .gt3x or GENEActiv "
        ".bin file (needs pip install \"pmld[devices]\"), or from CSV (default columns "
        "time_s,x,y,z with a header); the format is detected from the content. Samples are "
        "placed on a uniform grid at the configured rate (resampled linearly when their "
        "times are off the grid); gaps longer than --max-gap are kept as gaps, never "
        "filled. A device file longer than 24 h is split into noon-to-noon nights, one "
        "file per night in the directory given by -o.",
    )
    p.add_argument("file", type=Path, help="input file: .cwa, .gt3x, .bin or CSV")
    p.add_argument(
        "-o", "--output", type=Path, required=True,
        help="output night file (.h5), or a directory for one file per night "
        "(DIR/<stem>.<YYYY-MM-DD>.h5)",
    )
    p.add_argument(
        "--tz",
        help="IANA time zone where the device was configured / of the night (e.g. "
        "Europe/London). Device files: default the offset the file records, else UTC; "
        "CSV: default UTC",
    )
    p.add_argument(
        "--split", choices=("noon", "none"), default="noon",
        help="device files: 'noon' (default) cuts a recording longer than 24 h into "
        "noon-to-noon local nights; 'none' keeps one night",
    )
    p.add_argument("--side", choices=("left", "right", "unknown"), default="unknown")
    p.add_argument(
        "--max-gap", type=float, default=1.0, help="seconds; longer holes become gaps"
    )
    p.add_argument(
        "--range-g", type=float,
        help="the sensor's full scale in g (e.g. 8): lets the analysis flag clipping "
        "(device files record it)",
    )
    p.add_argument(
        "--fs", type=float, help="CSV: sampling rate in Hz (required without a time column)"
    )
    p.add_argument("--units", choices=("g", "mg", "m/s2"), help="CSV: units of x,y,z (g)")
    p.add_argument("--start", help="CSV: absolute time of the first sample, ISO 8601 with offset")
    p.add_argument(
        "--time-column", help="CSV: name of the time column (default time_s; '' for none)"
    )
    p.add_argument("--axes", help="CSV: names of the three axis columns (default x,y,z)")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser(
        "simulate",
        help="simulate a night of ankle acceleration with ground truth",
        description="Simulate a night of ankle acceleration with known leg movements, "
        "PLM series, posture changes and wake, and write it as a pmld-raw file.",
    )
    p.add_argument("--scenario", default="moderate", help="scenario name (see --list)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--hours", type=float, default=8.0)
    p.add_argument("--fs", type=float, default=100.0, help="sampling rate in Hz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bilateral", action="store_true", help="simulate both ankles")
    p.add_argument(
        "--side", choices=("left", "right"), help="the ankle of a one-sensor night (default right)"
    )
    p.add_argument("--start", help="start time, ISO 8601 with offset")
    p.add_argument(
        "--start-local", metavar="YYYY-MM-DDTHH:MM",
        help="start as local wall-clock time in --tz (DST rules applied), instead of --start",
    )
    p.add_argument("--tz", default="UTC", help="IANA time zone of the night")
    p.add_argument(
        "--evening-h", type=float, default=0.0,
        help="hours awake out of bed before getting into bed (walking, sitting; default 0)",
    )
    p.add_argument(
        "--morning-h", type=float, default=0.0,
        help="hours awake out of bed after getting up (default 0)",
    )
    p.add_argument(
        "--nonwear", action="append", default=[], metavar="ONSET_S,DURATION_S[,SIDE]",
        help="a span when the band lies on a table, seconds from the first sample "
        "(repeatable)",
    )
    p.add_argument("-o", "--output", type=Path, help="output night file (.h5)")
    p.add_argument("--truth", type=Path, help="also write the ground-truth events as CSV")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("info", help="describe a pmld file (raw night or summary)")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "analyze",
        help="detect and score leg movements; write a nightly summary per night",
        description="Detect leg movements on each ankle, merge and score them by the "
        "clinical rules, and write a pmld-summary file (NAME.plm.h5) per night.",
    )
    p.add_argument("nights", type=Path, nargs="+", metavar="NIGHT",
        help="pmld-raw files, or one-night .cwa/.gt3x/.bin device files (read as their "
        "recorded offset or UTC: pmld import --tz sets the zone)")
    p.add_argument(
        "-o", "--output", type=Path, required=True,
        help="summary file (one night) or directory (any number of nights)",
    )
    p.add_argument("--right", type=Path, help="the right ankle's file, NIGHT being the left")
    _add_param_options(p)
    p.add_argument("--lights-off", help="seconds from start, local HH:MM, or ISO 8601")
    p.add_argument("--lights-on", help="seconds from start, local HH:MM, or ISO 8601")
    p.add_argument("--json", action="store_true", help="print the summaries as JSON")
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser(
        "score",
        help="score a table of leg movements (CSV) by the PLM rules",
        description="Score leg movements from any sensor. Input CSV columns "
        "onset_s,offset_s,side (side L/R/left/right; optional kind). Output: one row per "
        "scored LM after bilateral merging.",
    )
    p.add_argument("lms", type=Path, help="CSV of leg movements")
    p.add_argument("-o", "--output", type=Path, required=True, help="scored CSV")
    _add_param_options(p, detection=False)
    p.add_argument(
        "--hours", type=float,
        help="analysed time in hours for the indices (default: first onset to last offset)",
    )
    p.add_argument("--json", action="store_true", help="print the indices as JSON")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser(
        "params",
        help="print every analysis parameter with its value, as TOML for --params",
        description="Print the fully resolved parameters (detection, scoring rules, window) "
        "for a rule preset and overrides, as a TOML file that --params reads back.",
    )
    _add_param_options(p)
    p.set_defaults(func=_cmd_params)

    p = sub.add_parser("show", help="print a nightly summary file")
    p.add_argument("summary", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--events", action="store_true", help="also list every leg movement")
    p.set_defaults(func=_cmd_show)

    from .ble.cli_record import add_parsers as add_ble_parsers
    from .cli_research import add_parsers as add_research_parsers

    add_ble_parsers(sub)
    add_research_parsers(sub)
    return parser


def _add_param_options(
    p: argparse.ArgumentParser, detection: bool = True, night_options: bool | None = None
) -> None:
    p.add_argument(
        "--rules", default=None, help="rule preset: wasm2016 (default), aasm or strict"
    )
    if night_options if night_options is not None else detection:
        p.add_argument(
            "--calibration", choices=("auto", "off"), default=None,
            help="calibrate each ankle to gravity: auto (default: autocalibration, else a "
            "stored device calibration, else none, recorded in the summary) or off",
        )
        p.add_argument(
            "--device-calibration", type=Path, action="append", default=[], metavar="JSON",
            help="a stored device calibration (pmld calibrate -o) to fall back on when a "
            "night cannot be autocalibrated (repeatable; matched by device serial)",
        )
        p.add_argument(
            "--sleep", choices=("auto", "annotations", "estimate", "none"), default=None,
            help="where sleep/wake come from: auto (default: sleep/wake annotations when "
            "the night has them, else estimated from the ankle), annotations, estimate, "
            "or none (the whole window counts as sleep)",
        )
    p.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="override one parameter (repeatable), e.g. --set min_imi_s=5",
    )
    p.add_argument(
        "--params", type=Path,
        help="TOML file of parameters: 'rules = \"aasm\"' and name = value lines, or "
        "[detection]/[rules]/[window] tables",
    )


# -- commands ---------------------------------------------------------------------------
def _cmd_import(args: argparse.Namespace) -> int:
    from .io.devices import DEVICE_FORMATS, detect_format, night_file_names, read_device
    from .io.raw import write_raw

    if args.range_g is not None and not args.range_g > 0:
        raise UsageError(f"--range-g must be a positive number of g, got {args.range_g}")
    kind = detect_format(args.file)
    if kind not in DEVICE_FORMATS:
        return _import_csv(args)
    csv_only = [
        option for option, value in (
            ("--fs", args.fs), ("--units", args.units), ("--start", args.start),
            ("--time-column", args.time_column), ("--axes", args.axes),
        ) if value is not None
    ]
    if csv_only:
        raise UsageError(
            f"{', '.join(csv_only)}: for CSV files only; a device file gives its own rate, "
            "units and times"
        )
    result = read_device(
        args.file, timezone=args.tz, side=args.side, max_gap_s=args.max_gap, split=args.split
    )
    if args.range_g is not None:
        for night in result.nights:
            for sensor in night.sensors:
                recorded = sensor.device.get("range_g")
                sensor.device["range_g"] = float(args.range_g)
                if recorded is not None and float(recorded) != float(args.range_g):
                    sensor.device["range_g_recorded"] = recorded
                    sensor.device.pop("counts_per_g", None)
    targets = night_file_names(args.file, args.output, result.nights)
    for line in result.report.lines():
        print(line)
    for night, target in zip(result.nights, targets, strict=True):
        write_raw(night, target)
        print(f"wrote {target}")
    return 0


def _import_csv(args: argparse.Namespace) -> int:
    from .io.csvimport import read_accel_csv
    from .io.raw import write_raw

    axes_text = "x,y,z" if args.axes is None else args.axes
    axes = tuple(a.strip() for a in axes_text.split(","))
    if len(axes) != 3 or not all(axes):
        raise UsageError(f"--axes needs three column names, got {args.axes!r}")
    time_column = "time_s" if args.time_column is None else args.time_column
    if args.split != "noon":
        raise UsageError("--split applies to device files only")
    night, report = read_accel_csv(
        args.file,
        time_column=time_column or None,
        axes=axes,
        units=args.units or "g",
        fs_hz=args.fs,
        side=args.side,
        start_utc=args.start,
        timezone=args.tz or "UTC",
        max_gap_s=args.max_gap,
    )
    if args.range_g is not None:
        for sensor in night.sensors:
            sensor.device["range_g"] = float(args.range_g)
    write_raw(night, args.output)
    for line in report.lines():
        print(line)
    print(f"wrote {args.output}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import SCENARIOS, simulate_night, truth_table

    if args.list:
        for name, scenario in SCENARIOS.items():
            doc = (scenario.__doc__ or "").strip().splitlines()
            print(f"{name:10s} {getattr(scenario, 'description', '') or (doc[0] if doc else '')}")
        return 0
    if args.output is None:
        raise UsageError("simulate needs -o/--output FILE.h5")
    from .io.raw import write_raw

    kwargs = {"hours": args.hours, "fs_hz": args.fs, "seed": args.seed, "timezone": args.tz}
    if args.start and args.start_local:
        raise UsageError("give --start or --start-local, not both")
    if args.start:
        kwargs["start_utc"] = args.start
    if args.start_local:
        kwargs["start_local"] = args.start_local
    kwargs["evening_h"], kwargs["morning_h"] = args.evening_h, args.morning_h
    spans = []
    for item in args.nonwear:
        parts = [part.strip() for part in item.split(",")]
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            span = (float(parts[0]), float(parts[1]), *parts[2:])
        except ValueError:
            raise UsageError(
                f"--nonwear takes ONSET_S,DURATION_S or ONSET_S,DURATION_S,SIDE, got {item!r}"
            ) from None
        spans.append(span)
    if spans:
        kwargs["nonwear"] = spans
    if args.bilateral:
        kwargs["bilateral"] = True
    if args.side:
        kwargs["side"] = args.side
    night = simulate_night(args.scenario, **kwargs)
    write_raw(night, args.output)
    truth = truth_table(night)
    print(f"simulated {args.scenario!r} seed {args.seed}: {night!r}")
    print(f"{int((truth['kind'] == 'lm').sum())} leg movements in the truth")
    print(f"wrote {args.output}")
    if args.truth:
        truth.to_csv(args.truth, index=False, float_format="%.3f")
        print(f"wrote {args.truth}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .io.summary import SUMMARY_SCHEMA

    if _schema_of(args.file) == SUMMARY_SCHEMA:
        return _cmd_show(argparse.Namespace(summary=args.file, json=args.json, events=False))
    night = _open_night(args.file)
    info = describe_night(night)
    info["file"] = str(args.file)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(format_info(info))
    return 0


def _load_params(args: argparse.Namespace) -> tuple[str, dict]:
    """The rule preset and parameter overrides from --params, then --rules and --set."""
    rules = None
    params: dict = {}
    if args.params:
        import tomllib

        try:
            with open(args.params, "rb") as handle:
                table = tomllib.load(handle)
        except FileNotFoundError:
            raise UsageError(f"{args.params}: no such parameter file") from None
        except tomllib.TOMLDecodeError as error:
            raise UsageError(f"{args.params}: not valid TOML ({error})") from None
        rules = table.pop("rules", None) if not isinstance(table.get("rules"), dict) else None
        for key, value in table.items():
            if isinstance(value, dict):
                if key == "rules" and "name" in value:
                    rules = value.pop("name")
                if key in ("calibration", "sleep"):  # their names may clash: keep the stage
                    params.update({f"{key}.{name}": v for name, v in value.items()})
                else:
                    params.update(value)
            else:
                params[key] = value
    if args.rules:
        rules = args.rules
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set takes NAME=VALUE, got {item!r}")
        params[name.strip()] = _parse_value(value.strip())
    if getattr(args, "calibration", None):
        params["calibration.mode"] = args.calibration
    if getattr(args, "device_calibration", None):
        from .io.calibration import read_device_calibration

        for path in args.device_calibration:
            read_device_calibration(path)  # a bad file: one line now, before any night
        params["calibration.device_files"] = [str(p) for p in args.device_calibration]
    if getattr(args, "sleep", None):
        params["sleep_source"] = args.sleep
    return rules or "wasm2016", params


def _parse_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _summary_path(night_path: Path, output: Path, many: bool) -> Path:
    if many or output.is_dir() or not output.suffix:
        if output.exists() and not output.is_dir():
            raise UsageError(
                f"{output}: exists and is not a directory; -o names a directory when "
                "several nights are analysed or it has no suffix"
            )
        return output / (night_path.name.removesuffix(".h5") + ".plm.h5")
    return output


def _summary_paths(args: argparse.Namespace, many: bool) -> list[Path]:
    """Where each night's summary goes; refuses to overwrite an input or a sibling."""
    outputs = [_summary_path(path, args.output, many) for path in args.nights]
    inputs = {Path(p).resolve(): p for p in [*args.nights, args.right] if p}
    for out in outputs:
        if out.resolve() in inputs:
            raise UsageError(f"{out}: is an input night; write the summary elsewhere (-o)")
    seen: dict[Path, Path] = {}
    for path, out in zip(args.nights, outputs, strict=True):
        if out in seen:
            raise UsageError(
                f"{seen[out]} and {path} would both be summarised to {out}: rename one, or "
                "analyse them into different directories"
            )
        seen[out] = path
    if many or args.output.is_dir() or not args.output.suffix:
        args.output.mkdir(parents=True, exist_ok=True)
    return outputs


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .night import combine_ankles, parse_night_time
    from .pipeline import analyze
    from .provenance import file_sha256

    rules, params = _load_params(args)
    if args.right and len(args.nights) != 1:
        raise UsageError("--right pairs with exactly one NIGHT (the left ankle)")
    many = len(args.nights) > 1
    results, failures = [], 0
    outputs = _summary_paths(args, many)
    for path, out in zip(args.nights, outputs, strict=True):
        try:
            night = _open_night(path)
            inputs = [{"path": str(path), "sha256": file_sha256(path)}]
            if args.right:
                night = combine_ankles(night, _open_night(args.right))
                inputs.append({"path": str(args.right), "sha256": file_sha256(args.right)})
            window = dict(params)
            if args.lights_off:
                window["lights_off_s"] = parse_night_time(args.lights_off, night)
            if args.lights_on:
                window["lights_on_s"] = parse_night_time(args.lights_on, night)
            result = analyze(night, rules, **window)
            result.inputs = inputs
            result.to_hdf5(out)
        except PmldError as error:
            if not many:
                raise
            # name the night unless the message already names a file
            print(f"pmld: {error if error.path else f'{path}: {error}'}", file=sys.stderr)
            failures += 1
            continue
        summary = {"night": str(path), "summary_file": str(out), **result.summary()}
        results.append(summary)
        if not args.json:
            print(format_summary(summary))
    if args.json:
        print(json.dumps(results if many else results[0], indent=2, default=_json_default))
    if failures:
        print(f"pmld: {failures} of {len(args.nights)} nights failed", file=sys.stderr)
        return 2
    return 0


def format_summary(s: dict) -> str:
    flags = "".join(f"\n  ! {flag}" for flag in s.get("flags", []))
    return (
        f"{s['night']}: PLM index {s['plm_index']:.1f}/h ({s['plm_count']} PLMs in "
        f"{s['plm_series_count']} series), LM index {s['lm_index']:.1f}/h, CLMs "
        f"{s['clm_count']}, periodicity {s['periodicity_index']:.2f}, "
        f"{s['analyzed_hours']:.2f} h analysed, rules {s['rules']}: {s['severity_band']}"
        f"\n  -> {s['summary_file']}{flags}"
    )


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _cmd_score(args: argparse.Namespace) -> int:
    from .io.events import read_lm_csv
    from .score import rules_preset, score_leg_movements, summarize

    rules_name, params = _load_params(args)
    rules = rules_preset(rules_name, **params)
    lms = read_lm_csv(args.lms)
    scored = score_leg_movements(lms, rules)
    if args.hours is not None:
        if args.hours <= 0:
            raise UsageError("--hours must be positive")
        analyzed_s = args.hours * 3600
    elif len(lms):
        analyzed_s = float(lms["offset_s"].max() - lms["onset_s"].min())
    else:
        analyzed_s = 0.0
    if analyzed_s <= 0:
        raise UsageError(
            f"{args.lms}: its leg movements span no time to compute indices over; give "
            "the analysed time with --hours"
        )
    indices = summarize(scored, analyzed_s)
    columns = ["onset_s", "offset_s", "side", "candidate", "imi_s", "plm", "series_id"]
    extra = [c for c in scored.columns if c not in columns]
    scored[columns + extra].to_csv(args.output, index=False, float_format="%.3f")
    if args.json:
        print(json.dumps(indices, indent=2, default=_json_default))
    else:
        print(
            f"{args.lms}: {indices['lm_count']} LMs, {indices['clm_count']} candidates, "
            f"{indices['plm_count']} PLMs in {indices['plm_series_count']} series; "
            f"PLM index {indices['plm_index']:.1f}/h over {analyzed_s / 3600:.2f} h "
            f"(rules {rules_name})"
        )
        if args.hours is None:
            print("(analysed time taken from the first onset to the last offset; give the "
                  "recording's analysed time with --hours)")
        print(f"wrote {args.output}")
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .pipeline import STAGES, resolve_stages

    preset, params = _load_params(args)
    _, stages = resolve_stages(preset, params)
    print(f"# pmld {__version__}: analysis parameters (pmld analyze --params FILE)")
    for name in STAGES:
        stage = stages[name]
        print(f"\n[{name}]")
        if name == "rules":
            print(f'name = "{preset}"  # the preset; the values below override it')
        for f in fields(stage):
            value = getattr(stage, f.name)
            if value is None:
                print(f"# {f.name} = (unset)")
            else:
                print(f"{f.name} = {_toml_value(value)}")
    return 0


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def _cmd_show(args: argparse.Namespace) -> int:
    from .io.summary import read_summary

    summary = read_summary(args.summary)
    if args.json:
        out = {
            "file": str(args.summary),
            **summary.attrs,
            "indices": summary.indices,
            "quality": summary.quality,
            "sleep": {
                k: v.to_dict(orient="records") if hasattr(v, "to_dict") else v
                for k, v in (summary.sleep or {}).items()
            },
            "calibration": summary.calibration,
        }
        if args.events:
            out["events"] = summary.events.to_dict(orient="records")
        print(json.dumps(out, indent=2, default=_json_default))
        return 0
    print(format_show(summary, events=args.events))
    return 0


def format_show(summary, events: bool = False) -> str:
    a, i = summary.attrs, summary.indices
    lines = [
        f"{summary.path}: pmld-summary {a.get('schema_version')} by pmld {a.get('pmld_version')}",
        f"  night      {a.get('start_utc')} ({a.get('timezone')}), ankles {a.get('sides')}",
        f"  analysed   {i.get('analyzed_hours', float('nan')):.2f} h, rules {a.get('rules')}",
        f"  PLM index  {i.get('plm_index', float('nan')):.1f}/h  ({i.get('severity_band')})",
        f"  PLMs       {i.get('plm_count')} in {i.get('plm_series_count')} series; "
        f"periodicity {i.get('periodicity_index', float('nan')):.2f}",
        f"  LMs        {i.get('lm_count')} ({i.get('lm_index', float('nan')):.1f}/h), "
        f"candidates {i.get('clm_count')} ({i.get('clm_index', float('nan')):.1f}/h)",
        f"  input      {a.get('input_sha256')}",
        f"  created    {a.get('created_utc')}",
    ]
    if a.get("night_date"):
        lines.insert(2, f"  night of   {a['night_date']} (the evening's local date)")
    sleep = summary.sleep or {}
    if sleep.get("source"):
        lines.insert(-2, _format_sleep(sleep, i))
    for calibration in summary.calibration or []:
        lines.insert(-2, _format_calibration(calibration))
    for flag in [*summary.quality.get("flags", []), *sleep.get("flags", [])]:
        lines.append(f"  ! {flag}")
    if events:
        cols = ["onset_s", "offset_s", "side", "kind", "candidate", "imi_s", "plm", "series_id"]
        lines.append(summary.events[[c for c in cols if c in summary.events]].to_string())
    return "\n".join(lines)


def _format_sleep(sleep: dict, indices: dict) -> str:
    source = {
        "annotations": "from the annotations",
        "estimate": "estimated from the ankle",
        "none": "not known: the whole window counted as sleep",
    }.get(str(sleep.get("source")), str(sleep.get("source")))
    text = f"  sleep      {source}"
    if sleep.get("source") != "none":
        text += (
            f"; {_number(sleep.get('sleep_h')):.2f} h asleep, "
            f"{_number(sleep.get('wake_h')):.2f} h awake; "
            f"PLMS {_number(indices.get('plms_index')):.1f}/h, "
            f"PLMW {_number(indices.get('plmw_index')):.1f}/h"
        )
    onset, offset = _number(sleep.get("period_onset_s")), _number(sleep.get("period_offset_s"))
    if onset == onset and offset == offset:  # not NaN
        text += f"; sleep period {_hms(onset)}-{_hms(offset)} from the start"
    if _number(sleep.get("nonwear_h")) > 0:
        text += f"; not worn {_number(sleep.get('nonwear_h')):.2f} h"
    return text


def _format_calibration(calibration: dict) -> str:
    side = calibration.get("side") or "sensor"
    status = calibration.get("status", "?")
    text = f"  calibrated {side}: {status}"
    before, after = (_number(calibration.get(k)) for k in ("error_before_g", "error_after_g"))
    if after == after:
        text += f" (error {before * 1000:.1f} -> {after * 1000:.1f} mg)"
    if calibration.get("reason"):
        text += f"; {calibration['reason']}"
    return text


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def describe_night(night) -> dict:
    """A JSON-able description of a night (what ``pmld info`` shows)."""
    sensors = []
    for s in night.sensors:
        spans = s.gap_spans_s()
        lengths = spans[:, 1] - spans[:, 0] if len(spans) else spans[:, :0].ravel()
        sensors.append(
            {
                "side": s.side,
                "fs_hz": s.fs_hz,
                "samples": s.n_samples,
                "start_utc": s.start_utc.isoformat(),
                "duration_h": s.duration_s / 3600,
                "recorded_h": s.recorded_s / 3600,
                "gaps": len(s.gaps),
                "gap_total_s": float(lengths.sum()) if len(lengths) else 0.0,
                "longest_gap_s": float(lengths.max()) if len(lengths) else 0.0,
                "uniform": s.is_uniform,
                "gyroscope": s.gyro_dps is not None,
                "device": s.device,
            }
        )
    labels = night.annotations["label"].value_counts().sort_index()
    lights = {}
    for label in ("lights_off", "lights_on"):
        rows = night.annotation(label)
        if len(rows):
            lights[label + "_s"] = float(rows["onset_s"].iloc[0])
    return {
        "timezone": night.timezone,
        "start_local": night.start_local.isoformat(timespec="seconds"),
        "start_utc": night.start_utc.isoformat(timespec="seconds"),
        "duration_h": night.duration_s / 3600,
        "sensors": sensors,
        "annotations": {str(k): int(v) for k, v in labels.items()},
        **lights,
        "meta": night.meta,
    }


def format_info(info: dict) -> str:
    lines = [
        f"{info['file']}: pmld-raw night",
        f"  start      {info['start_local']} ({info['timezone']})"
        + ("" if info["timezone"] == "UTC" else f", UTC {info['start_utc']}"),
        f"  duration   {_hms(info['duration_h'] * 3600)}",
    ]
    for s in info["sensors"]:
        gaps = (
            f"{s['gaps']} gap{'s' if s['gaps'] != 1 else ''}, {s['gap_total_s']:.1f} s missing, "
            f"longest {s['longest_gap_s']:.1f} s"
            if s["gaps"]
            else "no gaps"
        )
        extra = " + gyroscope" if s["gyroscope"] else ""
        model = s["device"].get("model", "unknown device")
        lines.append(
            f"  sensor     {s['side']} ankle, {model}, {s['fs_hz']:g} Hz{extra}, "
            f"{s['samples']:,} samples, {_hms(s['recorded_h'] * 3600)} recorded, {gaps}"
        )
    for key, label in (("lights_off_s", "lights off"), ("lights_on_s", "lights on")):
        if key in info:
            lines.append(f"  {label:10s} {_hms(info[key])} after start")
    if info["annotations"]:
        counts = ", ".join(f"{n} {label}" for label, n in info["annotations"].items())
        lines.append(f"  annotations {counts}")
    else:
        lines.append("  annotations none")
    if info["meta"]:
        meta = ", ".join(f"{k}={v}" for k, v in sorted(info["meta"].items()))
        lines.append(f"  meta       {meta}")
    return "\n".join(lines)


def _open_night(path: Path):
    """Read a night, rebuilding it from an unfinished recording's journal (with a note)."""
    from .io.nightfile import open_night

    night, notice = open_night(path)
    if notice:
        print(f"pmld: {notice}", file=sys.stderr)
    return night


def _schema_of(path: Path) -> str | None:
    """The schema attribute of an HDF5 file, or None (errors are left to the readers)."""
    try:
        import h5py

        with h5py.File(path, "r") as h5:
            value = h5.attrs.get("schema")
    except (OSError, ValueError):
        return None
    return value.decode() if isinstance(value, bytes) else value


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
