"""The nightly summary file ``pmld-summary`` (HDF5), schema v1.

See ``docs/summary-format.md`` for the full layout. Written atomically (a temporary
file in the same directory, then renamed), so a crash never leaves half a summary.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..errors import FormatError
from ..provenance import canonical_json, stamp
from ._files import write_atomic
from ._hdf5 import attr_plain, open_checked, read_table, write_table

SUMMARY_SCHEMA = "pmld-summary"
SUMMARY_VERSION = "1.1"

#: Units of the event-table columns that have one.
UNITS = {
    "onset_s": "s",
    "offset_s": "s",
    "duration_s": "s",
    "imi_s": "s",
    "mean_imi_s": "s",
    "peak_g": "g",
    "mean_g": "g",
    "area_gs": "g*s",
    "peak_angle_deg": "deg",
    "posture_change_deg": "deg",
    "activity_g": "g",
    "angle_deg": "deg",
    "angle_change_deg": "deg",
}


@dataclass
class SummaryFile:
    """A nightly summary read back from disk."""

    path: str
    attrs: dict[str, Any]
    events: pd.DataFrame
    series: pd.DataFrame
    monolateral: pd.DataFrame
    indices: dict[str, Any]
    histograms: dict[str, np.ndarray]
    quality: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    #: schema 1.1 (empty in 1.0 files): 30 s epochs, spans without data, sleep and
    #: non-wear, and the calibration of each ankle
    epochs: pd.DataFrame | None = None
    gaps: pd.DataFrame | None = None
    sleep: dict[str, Any] = field(default_factory=dict)
    calibration: list[dict[str, Any]] = field(default_factory=list)

    @property
    def input_sha256(self) -> str:
        return str(self.attrs.get("input_sha256", ""))


def write_summary(analysis, path: str | os.PathLike, *, inputs: list[dict] | None = None) -> None:
    """Write a :class:`pmld.pipeline.NightAnalysis` as a pmld-summary file.

    ``inputs`` lists ``{"path": ..., "sha256": ...}`` of the files analysed; it
    defaults to ``analysis.inputs``.
    """
    path = Path(path)
    inputs = list(inputs if inputs is not None else getattr(analysis, "inputs", []))
    info = analysis.night_info
    root_attrs = stamp(
        schema=SUMMARY_SCHEMA,
        schema_version=SUMMARY_VERSION,
        start_utc=info["start_utc"],
        timezone=info["timezone"],
        sides=",".join(info["sides"]),
        duration_s=float(info["duration_s"]),
        window_start_s=float(info["window_start_s"]),
        window_stop_s=float(info["window_stop_s"]),
        rules=str(analysis.parameters.get("rules_preset", "custom")),
        parameters_json=canonical_json(analysis.parameters),
        inputs_json=canonical_json(inputs),
        input_sha256=inputs[0]["sha256"] if inputs else "",
        night_meta_json=canonical_json(info.get("meta", {})),
        night_date=str(info.get("night_date", "")),
    )
    root_attrs["pmld_version"] = analysis.pmld_version
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FormatError(f"cannot write {path}: directory {directory} does not exist")

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as h5:
            for key, value in root_attrs.items():
                h5.attrs[key] = value
            events = h5.create_group("events")
            write_table(events, "leg_movements", analysis.events, UNITS)
            write_table(events, "plm_series", analysis.series, UNITS)
            write_table(events, "monolateral", analysis.monolateral, UNITS)
            summary = h5.create_group("summary")
            for key, value in analysis.indices.items():
                summary.attrs[key] = _attr_value(value)
            for key, value in analysis.histograms.items():
                summary.create_dataset(key, data=np.asarray(value))
            quality = h5.create_group("quality")
            quality.attrs["flags"] = json.dumps(list(analysis.quality.get("flags", [])))
            quality.attrs["sensors_json"] = canonical_json(analysis.quality.get("sensors", {}))
            _write_v11(h5, analysis)

    write_atomic([(path, write)])


def _write_v11(h5: h5py.File, analysis) -> None:
    """The groups schema 1.1 adds: epochs, gaps, sleep and calibration."""
    epochs = getattr(analysis, "epochs", None)
    if epochs is not None:
        write_table(h5, "epochs", epochs, UNITS)
    gaps = getattr(analysis, "gaps", None)
    write_table(h5, "gaps", gaps if gaps is not None else _empty_gaps(), UNITS)
    sleep = dict(getattr(analysis, "sleep", None) or {})
    group = h5.create_group("sleep")
    spans = sleep.pop("spans", None)
    nonwear = sleep.pop("nonwear", None)
    write_table(group, "spans", spans if spans is not None else _empty_spans(), UNITS)
    write_table(group, "nonwear", nonwear if nonwear is not None else _empty_gaps(), UNITS)
    flags = sleep.pop("flags", [])
    group.attrs["flags"] = json.dumps(list(flags))
    for key, value in sleep.items():
        group.attrs[key] = (
            canonical_json(value) if isinstance(value, dict | list | tuple) else _attr_value(value)
        )
    calibration = h5.create_group("calibration")
    calibration.attrs["json"] = canonical_json(list(getattr(analysis, "calibration", []) or []))


def _empty_gaps() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "side": pd.Series(dtype=object),
            "onset_s": pd.Series(dtype=float),
            "duration_s": pd.Series(dtype=float),
        }
    )


def _empty_spans() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "onset_s": pd.Series(dtype=float),
            "duration_s": pd.Series(dtype=float),
            "state": pd.Series(dtype=object),
        }
    )


def _read_v11(h5: h5py.File) -> dict[str, Any]:
    """Schema 1.1's groups, or their empty values for a 1.0 file."""
    out: dict[str, Any] = {"epochs": None, "gaps": None, "sleep": {}, "calibration": []}
    if "epochs" in h5:
        out["epochs"] = read_table(h5["epochs"])
    if "gaps" in h5:
        out["gaps"] = read_table(h5["gaps"])
    if "sleep" in h5:
        group = h5["sleep"]
        sleep = {k: attr_plain(v) for k, v in group.attrs.items() if k != "flags"}
        sleep["flags"] = json.loads(attr_plain(group.attrs.get("flags", "[]")))
        for name in ("spans", "nonwear"):
            if name in group:
                sleep[name] = read_table(group[name])
        out["sleep"] = sleep
    if "calibration" in h5:
        out["calibration"] = json.loads(attr_plain(h5["calibration"].attrs.get("json", "[]")))
    return out


def _attr_value(value):
    if value is None:
        return np.nan
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return value
    return str(value)


def read_summary(path: str | os.PathLike) -> SummaryFile:
    """Read a pmld-summary file, refusing other schemas and newer major versions."""
    with open_checked(path, SUMMARY_SCHEMA, SUMMARY_VERSION) as h5:
        for name in ("events/leg_movements", "events/plm_series", "events/monolateral",
                     "summary", "quality"):
            if name not in h5:
                raise FormatError(f"is a damaged pmld-summary file: /{name} is missing", path=path)
        try:
            attrs = {k: attr_plain(v) for k, v in h5.attrs.items()}
            events = read_table(h5["events/leg_movements"])
            series = read_table(h5["events/plm_series"])
            monolateral = read_table(h5["events/monolateral"])
            indices = {k: attr_plain(v) for k, v in h5["summary"].attrs.items()}
            histograms = {k: h5["summary"][k][()] for k in h5["summary"]}
            quality = {
                "flags": json.loads(h5["quality"].attrs["flags"]),
                "sensors": json.loads(h5["quality"].attrs["sensors_json"]),
            }
            v11 = _read_v11(h5)
        except KeyError:
            raise FormatError(
                "is a damaged pmld-summary file: a table column or attribute is missing",
                path=path,
            ) from None
    return SummaryFile(
        path=str(path),
        attrs=attrs,
        events=events,
        series=series,
        monolateral=monolateral,
        indices=indices,
        histograms=histograms,
        quality=quality,
        parameters=json.loads(attrs.get("parameters_json", "{}")),
        **v11,
    )
