"""The night report and the cohort report (pmld.plot, ``pmld report``).

The summaries come from the real pipeline: short simulated nights (1-1.5 h at 25 Hz)
analysed by :func:`pmld.analyze` and written by ``NightAnalysis.to_hdf5``; the cohort
table from :func:`pmld.batch.run_batch` on a few tiny nights. Every output is checked
as a reader would open it: the HTML parsed (no external address, images that decode as
PNG), the PNG opened by PIL, the PDF's structure, and the command run in subprocesses.
Schema 1.1's epochs, sleep and calibration are filled in by hand where the pipeline
does not write them yet, so their panels are drawn from a real file either way.
"""

from __future__ import annotations

import base64
import html.parser
import io
import json
import math
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import h5py
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pmld.batch import run_batch
from pmld.errors import FormatError, InputError, UsageError
from pmld.io.raw import write_raw
from pmld.io.summary import read_summary
from pmld.pipeline import analyze
from pmld.plot import (
    LM_CLASSES,
    _Clock,
    input_kind,
    lm_classes,
    night_figure,
    read_cohort_table,
    report_format,
    representative_series,
    severity_band,
    write_cohort_report,
    write_night_report,
    write_report,
)
from pmld.simulate import simulate_night

PMLD = [sys.executable, "-m", "pmld.cli"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PMLD, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pmld: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# -- summaries made by the real pipeline ---------------------------------------------------
def hand_sleep(night, analysis) -> None:
    """Replace schema 1.1's epochs, sleep and calibration by known ones: epochs of 30 s
    per ankle whose activity counts the scored LMs and whose posture
    angle steps at posture changes, sleep from the simulator's truth (sleep onset,
    final awakening, wake spans), a stretch of non-wear on the first ankle, and a
    calibration per ankle."""
    meta = night.meta
    period = (float(meta["sleep_onset_s"]), float(meta["final_awakening_s"]))
    wake = night.annotations[night.annotations["label"] == "wake"]
    onset = np.arange(0.0, night.duration_s, 30.0)
    mid = onset + 15.0
    awake = np.zeros(onset.size, dtype=bool)
    for _, row in wake.iterrows():
        awake |= (mid >= row["onset_s"]) & (mid < row["onset_s"] + row["duration_s"])
    in_period = (mid >= period[0]) & (mid < period[1])
    events = analysis.events
    frames = []
    for k, side in enumerate(night.sides):
        mine = events[events["side"].isin([side, "both"])]
        counts = np.histogram(mine["onset_s"], bins=np.append(onset, night.duration_s))[0]
        posture = mine[mine["kind"] == "posture"]["onset_s"].to_numpy()
        angle = 20.0 + 35.0 * (np.searchsorted(posture, onset) % 3)
        nonwear = (onset >= 600.0) & (onset < 900.0) if k == 0 else np.zeros(onset.size, bool)
        frames.append(pd.DataFrame({
            "onset_s": onset, "duration_s": 30.0, "side": side,
            "activity_g": 0.002 + 0.004 * counts, "angle_deg": angle,
            "angle_change_deg": np.abs(np.diff(angle, prepend=angle[0])),
            "nonwear": nonwear, "in_period": in_period, "sleep": in_period & ~awake,
            "gap": np.zeros(onset.size, dtype=bool),
        }))
    epochs = pd.concat(frames, ignore_index=True)
    first = epochs[epochs["side"] == night.sides[0]]
    state = np.where(first["sleep"], "sleep", "wake")[first["in_period"].to_numpy()]
    starts = first["onset_s"].to_numpy()[first["in_period"].to_numpy()]
    change = np.flatnonzero(np.r_[True, state[1:] != state[:-1]])
    ends = np.r_[starts[change[1:]], starts[-1] + 30.0]
    spans = pd.DataFrame({"onset_s": starts[change], "duration_s": ends - starts[change],
                          "state": state[change]})
    analysis.epochs = epochs
    analysis.sleep = {
            "source": "estimate", "method": "by hand (test)", "period_onset_s": period[0],
            "period_offset_s": period[1],
            "sleep_h": float(spans[spans.state == "sleep"].duration_s.sum() / 3600),
            "wake_h": float(spans[spans.state == "wake"].duration_s.sum() / 3600),
            "nonwear_h": 300.0 / 3600, "flags": ["a finding of the sleep step"],
            "spans": spans,
            "nonwear": pd.DataFrame({"side": [night.sides[0]], "onset_s": [600.0],
                                     "duration_s": [300.0]}),
        }
    analysis.calibration = [
            {"status": "autocalibrated" if k == 0 else "none",
             "reason": "52 still points" if k == 0 else "too few still postures: 12 points",
             "offset_g": [0.01, -0.02, 0.005], "scale": [1.01, 0.99, 1.0],
             "error_before_g": 0.021, "error_after_g": 0.004, "n_points": 52 if k == 0 else 12,
             "device": {"serial": f"SN{k}"}, "source": ""}
            for k, _ in enumerate(night.sides)
        ]


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> dict[str, Path]:
    """Summaries: ``two`` (severe, two ankles, Europe/Zurich, with NaN samples on the
    left ankle), ``hand`` (``two`` with known epochs, sleep and calibration), ``one``
    (moderate, one ankle, New York),
    ``v10`` (``two`` rewritten as schema 1.0), ``none`` (no LM detected), ``short``
    (a 30 s window: NaN indices)."""
    root = tmp_path_factory.mktemp("nights")
    out = {}
    night = simulate_night("severe", hours=1.5, fs_hz=25, seed=3, bilateral=True,
                           timezone="Europe/Zurich")
    left = night.ankle("left")
    left.acc_g[20000:20500] = np.nan  # a flag and a span without data
    analysis = analyze(night)
    analysis.to_hdf5(root / "two.plm.h5")
    out["two"] = root / "two.plm.h5"
    hand_sleep(night, analysis)
    analysis.to_hdf5(root / "hand.plm.h5")
    out["hand"] = root / "hand.plm.h5"

    out["v10"] = root / "v10.plm.h5"
    shutil.copy(out["two"], out["v10"])
    with h5py.File(out["v10"], "r+") as h5:
        for name in ("epochs", "gaps", "sleep", "calibration"):
            if name in h5:
                del h5[name]
        h5.attrs["schema_version"] = "1.0"
        del h5.attrs["night_date"]

    one = simulate_night("moderate", hours=1.0, fs_hz=25, seed=5,
                         timezone="America/New_York", start_utc="2026-03-08T05:30:00+00:00")
    analyze(one).to_hdf5(root / "one.plm.h5")
    out["one"] = root / "one.plm.h5"
    analyze(one, onset_min_g=50.0, offset_min_g=40.0).to_hdf5(root / "none.plm.h5")
    out["none"] = root / "none.plm.h5"
    analyze(one, lights_off_s=600.0, lights_on_s=630.0).to_hdf5(root / "short.plm.h5")
    out["short"] = root / "short.plm.h5"
    return out


class Page(html.parser.HTMLParser):
    """What a browser would fetch: every src/href, the images, scripts and styles."""

    def __init__(self):
        super().__init__()
        self.refs, self.images, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "data", "action", "poster") and value is not None:
                self.refs.append(value)
                if tag == "img" and name == "src":
                    self.images.append(value)


def check_self_contained(text: str, n_images: int) -> Page:
    page = Page()
    page.feed(text)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    for ref in page.refs:
        assert not re.match(r"^\s*(https?:|//|ftp:|file:)", ref, re.I), ref
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", text, re.I)  # no CSS fetch
    assert "@import" not in text
    assert len(page.images) == n_images
    for src in page.images:
        head, _, data = src.partition(",")
        assert head == "data:image/png;base64"
        png = base64.b64decode(data, validate=True)
        assert png.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            assert image.format == "PNG" and image.width >= 600 and image.height >= 150
    return page


def text_of(page_html: str) -> str:
    """The page's visible text with whitespace collapsed (no tags)."""
    body = re.sub(r"<style>.*?</style>|<[^>]+>", " ", page_html, flags=re.S)
    return " ".join(html.unescape(body).split())


# -- the night report --------------------------------------------------------------------
def test_html_is_self_contained_and_shows_the_night(nights, tmp_path):
    summary = read_summary(nights["two"])
    out = write_night_report(nights["two"], tmp_path / "night.html")
    page_html = out.read_text(encoding="utf-8")
    check_self_contained(page_html, n_images=3)
    text = text_of(page_html)
    ind = summary.indices
    # the indices as the summary stores them, each with its label
    for label, key, spec in (("PLMS index", "plms_index", ".1f"), ("PLM index", "plm_index",
                             ".1f"), ("LM index", "lm_index", ".1f"), ("CLM index", "clm_index",
                             ".1f"), ("periodicity index (WASM)", "periodicity_index", ".2f"),
                             ("ln(IMI) mean", "ln_imi_mean", ".2f"), ("ln(IMI) SD",
                             "ln_imi_sd", ".2f")):
        assert f"{label} {format(ind[key], spec)}" in text, label
    assert "PLMW index n/a" in text or f"PLMW index {ind['plmw_index']:.1f}" in text
    assert ind["plms_index"] > 15 and "abnormal (cut-off > 15/h)" in text
    assert f"band {ind['severity_band']}" in text
    assert (f"left right bilateral unknown LMs {ind['left_lm_count']} {ind['right_lm_count']} "
            f"{ind['bilateral_lm_count']} {ind['unknown_lm_count']} PLMs "
            f"{ind['left_plm_count']} {ind['right_plm_count']}") in text
    # the quality flags (NaN samples), the sleep step's flag, calibration, provenance
    flags = summary.quality["flags"]
    assert any("NaN" in f for f in flags)
    for flag in flags:
        assert flag in text
    sleep = summary.sleep
    for flag in sleep.get("flags", []):
        assert f"sleep: {flag}" in text
    if sleep.get("source"):  # schema 1.1 written by the pipeline
        assert f"sleep source: {sleep['source']}" in text and sleep["method"] in text
        assert f"sleep {sleep['sleep_h']:.2f} h, wake {sleep['wake_h']:.2f} h" in text
    for entry in summary.calibration:
        assert f"{entry['status']} {entry['reason']}" in text
    assert summary.attrs["created_utc"] in text and summary.attrs["pmld_version"] in text
    assert '"min_imi_s": 10.0' in text  # the full parameters
    local = datetime.fromisoformat(summary.attrs["start_utc"]).astimezone(
        ZoneInfo("Europe/Zurich"))
    assert local.strftime("%H:%M:%S") in text and "Europe/Zurich" in text


def test_png_is_one_valid_figure(nights, tmp_path):
    out = write_night_report(nights["two"], tmp_path / "night.png")
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    with Image.open(out) as image:
        image.load()
        assert 1000 <= image.width <= 2000 and 1000 <= image.height <= 2000
        # not blank: the marks and bars use many colours
        assert len(image.convert("RGB").getcolors(1 << 20)) > 50
    assert 30_000 < len(data) < 2_000_000


def test_pdf_has_the_figure_and_text_pages(nights, tmp_path):
    out = write_night_report(nights["two"], tmp_path / "night.pdf")
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert pages >= 3  # the figure, the indices and findings, the parameters
    assert 20_000 < len(data) < 5_000_000


def test_format_overrides_the_extension(nights, tmp_path):
    out = write_night_report(nights["one"], tmp_path / "night.report", fmt="png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(UsageError, match=r"\.html, \.png or \.pdf"):
        write_night_report(nights["one"], tmp_path / "night.docx")
    with pytest.raises(UsageError, match="--format"):
        report_format(tmp_path / "x.html", "svg")
    with pytest.raises(UsageError, match="does not exist"):
        write_night_report(nights["one"], tmp_path / "missing" / "night.html")


def test_schema_10_summary_says_what_is_missing(nights, tmp_path):
    summary = read_summary(nights["v10"])
    assert summary.attrs["schema_version"] == "1.0" and summary.epochs is None
    page_html = write_night_report(nights["v10"], tmp_path / "v10.html").read_text()
    check_self_contained(page_html, n_images=3)
    text = text_of(page_html)
    assert "sleep source: not in this file" in text
    assert "Calibration not in this file" in text
    assert f"PLMS index {summary.indices['plms_index']:.1f}" in text
    fig = night_figure(summary)
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(n.startswith("activity per epoch: not in this file") for n in notes)
    assert any(n.startswith("posture angle per epoch: not in this file") for n in notes)
    assert notes.count("not in this file") >= 4  # sleep period, sleep/wake, non-wear, gaps
    write_night_report(summary, tmp_path / "v10.png")
    with Image.open(tmp_path / "v10.png") as image:
        image.load()


def test_hand_made_sleep_and_calibration_in_the_html(nights, tmp_path):
    text = text_of(write_night_report(nights["hand"], tmp_path / "hand.html").read_text())
    assert "sleep: a finding of the sleep step" in text
    assert "sleep source: estimate: estimated from the ankle" in text
    assert "by hand (test)" in text and "non-wear 0.08 h" in text
    assert "left autocalibrated 52 still points 0.0210 -> 0.0040 52" in text
    assert "right none too few still postures: 12 points" in text
    assert "serial SN1" in text


def test_schema_11_panels_are_drawn_from_the_file(nights):
    summary = read_summary(nights["hand"])
    assert summary.epochs is not None and summary.sleep.get("source")
    fig = night_figure(summary)
    strip, activity, angle, lms = fig.axes[:4]
    # one activity line and one angle line per ankle, on a log scale for activity
    def curves(ax):  # not the lights-off/on lines
        return sorted(x.get_label() for x in ax.get_lines() if not x.get_label().startswith("_"))

    assert curves(activity) == curves(angle) == ["left", "right"]
    assert activity.get_yscale() == "log"
    # the strip draws sleep, wake, the sleep period, non-wear and the NaN run as bars
    labels = [t.get_text() for t in strip.get_yticklabels()]
    assert labels == ["no data right", "no data left", "non-wear right", "non-wear left",
                      "sleep / wake", "sleep period", "lights off-on"]
    lane_paths: dict[str, int] = {}
    for collection in strip.collections:
        paths = collection.get_paths()
        if paths:  # a lane's bars are centred on its tick (y - 0.35 to y + 0.35)
            lane = labels[round(paths[0].get_extents().y0 + 0.35)]
            lane_paths[lane] = lane_paths.get(lane, 0) + len(paths)
    gaps_left = summary.gaps[summary.gaps["side"] == "left"]
    assert len(gaps_left) >= 1  # the NaN samples
    assert lane_paths == {
        "lights off-on": 1,
        "sleep period": 1,
        "sleep / wake": len(summary.sleep["spans"]),
        "non-wear left": len(summary.sleep["nonwear"]),
        "no data left": len(gaps_left),
    }
    assert not any("not in this file" in t.get_text() for t in activity.texts + strip.texts)


def test_every_lm_is_drawn_once_in_its_class(nights):
    summary = read_summary(nights["two"])
    fig = night_figure(summary)
    lms = fig.axes[3]
    drawn = {c.get_label().rsplit(" (", 1)[0]: len(c.get_offsets()) for c in lms.collections
             if c.get_label() and not c.get_label().startswith("_")}
    assert sum(drawn.values()) == len(summary.events)
    ind = summary.indices
    assert drawn[LM_CLASSES["plm"][0]] == ind["plm_count"]
    assert drawn[LM_CLASSES["short_imi"][0]] == ind["short_imi_count"]
    assert drawn[LM_CLASSES["isolated"][0]] == ind["isolated_clm_count"]
    assert drawn[LM_CLASSES["posture"][0]] == int((summary.events["kind"] == "posture").sum())


def test_zoom_shows_the_median_series_with_its_imis(nights):
    summary = read_summary(nights["two"])
    chosen = representative_series(summary.series)
    lengths = np.sort(summary.series["n_lms"].to_numpy())
    assert chosen["n_lms"] == lengths[(lengths.size - 1) // 2]
    fig = night_figure(summary)
    zoom = fig.axes[5]
    title = zoom.get_title(loc="left")
    assert f"PLM series {int(chosen['series_id'])} of {len(summary.series)}" in title
    t0, t1 = zoom.get_xlim()
    events = summary.events
    members = events[events["series_id"] == chosen["series_id"]]
    shown = members[(members["onset_s"] >= t0) & (members["onset_s"] <= t1)]
    assert len(shown) >= min(4, len(members))
    imi_texts = {t.get_text() for t in zoom.texts}
    for imi in shown["imi_s"].iloc[1:]:
        assert f"{imi:.0f}" in imi_texts


def test_night_without_lms_and_with_nan_indices(nights, tmp_path):
    empty = read_summary(nights["none"])
    assert len(empty.events) == 0 and empty.indices["lm_count"] == 0
    text = text_of(write_night_report(empty, tmp_path / "none.html").read_text())
    assert "PLMS index 0.0" in text and "not abnormal" in text
    fig = night_figure(empty)
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "no leg movements" in notes and "no PLM series" in notes
    assert "no PLM series in this night: nothing to zoom on" in notes
    write_night_report(empty, tmp_path / "none.png")

    short = read_summary(nights["short"])
    assert math.isnan(short.indices["plms_index"])
    page_html = write_night_report(short, tmp_path / "short.html").read_text()
    text = text_of(page_html)
    assert "PLMS index n/a (see the quality flags)" in text
    assert any("too short" in f for f in short.quality["flags"])
    assert "too short" in text
    write_night_report(short, tmp_path / "short.png")
    with Image.open(tmp_path / "short.png") as image:
        image.load()


def test_lm_classes_by_the_rules():
    events = pd.DataFrame({
        "kind": ["lm", "lm", "lm", "lm", "posture", "lm"],
        "candidate": [True, True, True, False, False, True],
        "short_imi": [False, True, False, False, False, False],
        "plm": [True, False, False, False, False, True],
    })
    assert list(lm_classes(events)) == [
        "plm", "short_imi", "isolated", "noncandidate", "posture", "plm"]
    assert lm_classes(events.iloc[:0]).size == 0


def test_representative_series_is_an_existing_median():
    series = pd.DataFrame({"series_id": [0, 1, 2, 3], "onset_s": [0.0, 500, 900, 1500],
                           "offset_s": [100.0, 700, 1100, 1600], "n_lms": [4, 9, 6, 12]})
    assert representative_series(series)["series_id"] == 2  # lower median of 4, 6, 9, 12
    assert representative_series(series.iloc[:3])["series_id"] == 2  # 4, 6, 9 -> 6
    assert representative_series(series.iloc[:0]) is None


def test_severity_bands_at_their_edges(nights):
    assert [severity_band(v) for v in (0, 14.99, 15, 29.9, 30, 49.99, 50, 120)] == [
        "<15", "<15", "15-29.9", "15-29.9", "30-49.9", "30-49.9", ">=50", ">=50"]
    assert severity_band(float("nan")) is None
    for name in ("two", "one"):
        ind = read_summary(nights[name]).indices
        assert severity_band(ind["plms_index"]) == ind["severity_band"]


@settings(max_examples=40, deadline=None)
@given(
    zone=st.sampled_from(["Europe/Zurich", "America/New_York", "Asia/Kathmandu",
                          "Australia/Adelaide", "UTC"]),
    start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31)),
    hours=st.floats(0.05, 30.0),
)
def test_clock_ticks_are_round_local_times(zone, start, hours):
    start = start.replace(tzinfo=UTC)
    clock = _Clock(start.isoformat(), zone)
    span = hours * 3600
    positions, labels = clock.ticks(0.0, span, max_ticks=12)
    assert 1 <= len(positions) <= 14
    assert positions == sorted(positions) and all(0 <= p <= span for p in positions)
    for p, label in zip(positions, labels, strict=True):
        local = (start + timedelta(seconds=p)).astimezone(ZoneInfo(zone))
        assert local.strftime("%H:%M:%S").startswith(label)
        assert local.second == 0 or span < 600


def test_clock_across_the_autumn_dst_change():
    # 2026-10-25 in Zurich: 03:00 CEST -> 02:00 CET; the 02:00 hour happens twice
    clock = _Clock("2026-10-24T22:00:00+00:00", "Europe/Zurich")
    positions, labels = clock.ticks(0, 6 * 3600, max_ticks=7)
    assert labels == ["00:00", "01:00", "02:00", "02:00", "03:00", "04:00", "05:00"]
    assert np.all(np.diff(positions) == 3600)


# -- the cohort report -------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """``pmld batch``'s table of three tiny nights and one that fails."""
    root = tmp_path_factory.mktemp("cohort")
    nights_dir, out = root / "nights", root / "summaries"
    nights_dir.mkdir()
    for seed, scenario in enumerate(("severe", "moderate", "healthy"), start=1):
        night = simulate_night(scenario, hours=0.4, fs_hz=25, seed=seed)
        write_raw(night, nights_dir / f"{scenario}.h5")
    (nights_dir / "broken.h5").write_bytes(b"not a night")
    result = run_batch(nights_dir, out, jobs=1, progress=False)
    assert result.count("failed") == 1 and result.cohort_parquet is not None
    return out / "cohort.csv"


def test_cohort_report_counts_bands_and_lists_nights(cohort, tmp_path):
    table = pd.read_csv(cohort)
    summary_dir = cohort.parent
    # a night report beside one summary is linked; the others are not
    severe = summary_dir / "severe.plm.h5"
    write_night_report(severe, summary_dir / "severe.html")
    out = write_cohort_report(cohort, tmp_path / "cohort.html")
    page_html = out.read_text(encoding="utf-8")
    page = check_self_contained(page_html, n_images=1)
    links = [r for r in page.refs if not r.startswith("data:")]
    assert len(links) == 1 and (out.parent / links[0]).resolve() == (
        summary_dir / "severe.html").resolve()
    text = text_of(page_html)
    ok = table[table["status"] != "failed"]
    plms = ok["plms_index"].to_numpy()
    assert f"nights {len(table)} analysed {len(ok)} up to date 0 failed 1 flagged" in text
    assert f"with a PLMS index {len(ok)} PLMS index > 15/h {(plms > 15).sum()} (" in text
    bands = {label: int(sum(severity_band(v) == label for v in plms))
             for label in ("<15", "15-29.9", "30-49.9", ">=50")}
    for label, count in bands.items():
        assert re.search(rf"{re.escape(label)} {count} \d+%", text), label
    for _, row in ok.iterrows():
        assert f"{row['path']} {row['night_date']} ok" in text
        assert f"{row['plms_index']:.1f}" in text
    failed = table[table["status"] == "failed"].iloc[0]
    assert "Failed nights (1)" in text and failed["error"] in text


def test_cohort_table_told_by_content(cohort, tmp_path):
    parquet = cohort.with_suffix(".parquet")
    assert input_kind(cohort) == "csv" and input_kind(parquet) == "parquet"
    as_text, as_data = tmp_path / "table.txt", tmp_path / "table.dat"
    shutil.copy(cohort, as_text)
    shutil.copy(parquet, as_data)
    a, b = read_cohort_table(as_text), read_cohort_table(as_data)
    assert list(a["path"]) == list(b["path"]) and a["plms_index"].equals(b["plms_index"])
    kind, out = write_report(as_data, tmp_path / "c.png")
    assert kind == "cohort" and out.read_bytes().startswith(PNG_MAGIC)
    assert input_kind(cohort.parent / "severe.plm.h5") == "summary"
    raw = tmp_path / "raw.h5"
    write_raw(simulate_night("healthy", hours=0.05, fs_hz=25), raw)
    with pytest.raises(FormatError, match="run `pmld analyze`"):
        input_kind(raw)
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FormatError, match="neither a pmld summary"):
        input_kind(tmp_path / "notes.csv")
    with pytest.raises(InputError, match="no such file"):
        input_kind(tmp_path / "nothing.csv")


# -- the command ---------------------------------------------------------------------------
def test_cli_writes_each_format(nights, tmp_path):
    src = tmp_path / "n.plm.h5"
    shutil.copy(nights["one"], src)
    result = run("report", src)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "n.html").is_file()  # the default: NAME.html beside the summary
    assert result.stdout.strip() == f"wrote night report {tmp_path / 'n.html'}"
    result = run("report", src, "-o", tmp_path / "n.out", "--format", "png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "n.out").read_bytes().startswith(PNG_MAGIC)


def test_cli_cohort_with_night_reports(cohort, tmp_path):
    copy = tmp_path / "summaries"
    shutil.copytree(cohort.parent, copy)
    for old in copy.glob("*.html"):
        old.unlink()
    result = run("report", copy / "cohort.parquet", "--night-reports")
    assert result.returncode == 0, result.stderr
    assert "wrote 3 night reports" in result.stdout
    page_html = (copy / "cohort.html").read_text()
    links = [r for r in check_self_contained(page_html, 1).refs if not r.startswith("data:")]
    assert sorted(links) == ["healthy.html", "moderate.html", "severe.html"]


def test_cli_errors_are_one_line(nights, tmp_path):
    one_line_error(run("report", tmp_path / "missing.plm.h5"), "no such file")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 4)
    one_line_error(run("report", garbage), "neither a pmld summary")
    one_line_error(run("report", nights["one"], "-o", tmp_path / "r.docx"),
                   "'.docx'", ".html, .png or .pdf")
    damaged = tmp_path / "damaged.plm.h5"
    damaged.write_bytes(nights["one"].read_bytes()[:4000])
    one_line_error(run("report", damaged), "damaged.plm.h5")
    one_line_error(run("report", nights["one"], "--threshold", "nan"), "--threshold")


def test_missing_matplotlib_is_one_line(nights, tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None; from pmld.cli import main; "
        f"sys.exit(main(['report', {str(nights['one'])!r}, '-o', "
        f"{str(tmp_path / 'r.html')!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    one_line_error(result, 'pip install "pmld[research]"')
    assert not (tmp_path / "r.html").exists()


def test_summary_json_parameters_round_trip_in_pdf_text(nights):
    # the parameters page lists every rule the summary records
    summary = read_summary(nights["one"])
    rules = summary.parameters["rules"]
    from pmld.plot import _as_view, _parameters_text

    text = _parameters_text(_as_view(summary, 15.0))
    assert json.loads(text) == summary.parameters and "max_imi_s" in rules
