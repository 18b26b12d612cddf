"""Reference scoring import (pmld.io.reference) and ``pmld annotate``.

Every reference file here is a real file written in tmp_path: BIDS events.tsv and CSV
as text, EDF+ with edfio, NSRR XML with ElementTree. Known events go in; the exact
onsets, durations, labels and sides must come out, on the reference's time base and on
the night's clock. The command runs as a user runs it, in subprocesses.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pmld.errors import FormatError, InputError, PmldError, UsageError
from pmld.io.events import read_lm_csv
from pmld.io.raw import read_raw, write_raw
from pmld.io.reference import (
    LABEL_TABLE,
    _norm,
    align_reference,
    attach_reference,
    classify_label,
    find_reference,
    read_reference,
    reference_lms,
    reference_overlap,
)
from pmld.night import Night
from pmld.pipeline import analyze
from pmld.provenance import file_sha256
from pmld.score import rules_preset, score_leg_movements
from pmld.simulate import simulate_night

REAL_NIGHT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-night-lms.csv"
NIGHT_START = datetime(2026, 1, 5, 22, 30, tzinfo=UTC)  # the simulator's default start
PMLD = [sys.executable, "-m", "pmld.cli"]


# -- fixtures and writers ---------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_night() -> Night:
    return simulate_night("moderate", hours=0.5, seed=1)


def flat_night(start=NIGHT_START, hours=0.5, timezone="UTC") -> Night:
    """A cheap night for clock tests: still acceleration at 10 Hz."""
    n = int(hours * 3600 * 10)
    acc = np.tile(np.array([0.0, 0.0, 1.0], dtype=np.float32), (n, 1))
    return Night.from_arrays(acc, 10.0, start, timezone=timezone, side="right")


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_edf(path: Path, start: datetime | None, annotations, *, signal=False) -> Path:
    edfio = pytest.importorskip("edfio")
    kwargs = {}
    if start is not None:
        kwargs["recording"] = edfio.Recording(startdate=start.date())
        kwargs["starttime"] = start.time()
    signals = []
    if signal:
        signals = [edfio.EdfSignal(np.zeros(2560), sampling_frequency=256, label="EMG LAT")]
    edf = edfio.Edf(
        signals,
        annotations=[edfio.EdfAnnotation(on, dur, text) for on, dur, text in annotations],
        **kwargs,
    )
    edf.write(path)
    return path


def write_nsrr(path: Path, clock: str | None, events, total_s: float = 2400.0) -> Path:
    """NSRR XML: events are (EventType, EventConcept, Start, Duration[, SignalLocation])."""
    root = ElementTree.Element("PSGAnnotation")
    ElementTree.SubElement(root, "SoftwareVersion").text = "Compumedics"
    ElementTree.SubElement(root, "EpochLength").text = "30"
    scored = ElementTree.SubElement(root, "ScoredEvents")
    if clock is not None:
        event = ElementTree.SubElement(scored, "ScoredEvent")
        ElementTree.SubElement(event, "EventType")
        ElementTree.SubElement(event, "EventConcept").text = "Recording Start Time"
        ElementTree.SubElement(event, "Start").text = "0"
        ElementTree.SubElement(event, "Duration").text = f"{total_s}"
        ElementTree.SubElement(event, "ClockTime").text = clock
    for item in events:
        kind, concept, start, duration, *location = item
        event = ElementTree.SubElement(scored, "ScoredEvent")
        ElementTree.SubElement(event, "EventType").text = kind
        ElementTree.SubElement(event, "EventConcept").text = concept
        ElementTree.SubElement(event, "Start").text = repr(float(start))
        ElementTree.SubElement(event, "Duration").text = repr(float(duration))
        if location:
            ElementTree.SubElement(event, "SignalLocation").text = location[0]
    ElementTree.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)
    return path


def rows(ref_or_frame, label=None) -> list[tuple]:
    frame = getattr(ref_or_frame, "annotations", ref_or_frame)
    if label is not None:
        frame = frame[frame["label"] == label]
    return [
        (round(r.onset_s, 6), round(r.duration_s, 6), r.label, r.side)
        for r in frame.itertuples()
    ]


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text, text
    return text


# -- the label table ----------------------------------------------------------------------
def test_label_table_keys_are_normalised_and_targets_are_pmld_labels():
    from pmld.night import ANNOTATION_LABELS

    assert [k for k in LABEL_TABLE if _norm(k) != k] == []
    assert {label for label, _ in LABEL_TABLE.values()} <= {*ANNOTATION_LABELS, "ignore"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Limb movement - left|Limb Movement (Left)", ("lm", "left", None)),
        ("Periodic leg movement - right|PLM (Right)", ("lm", "right", None)),
        ("Leg Movement", ("lm", "unknown", None)),
        ("LM-R", ("lm", "right", None)),
        ("Bilateral LM", ("lm", "both", None)),
        ("PLM", ("lm", "unknown", None)),
        ("Obstructive apnea|Obstructive Apnea", ("apnea", "unknown", None)),
        ("Central Apnea", ("apnea", "unknown", None)),
        ("Mixed Apnoea", ("apnea", "unknown", None)),
        ("Hypopnea|Hypopnea", ("hypopnea", "unknown", None)),
        ("Arousal|Arousal ()", ("arousal", "unknown", None)),
        ("ASDA arousal|Arousal (ASDA)", ("arousal", "unknown", None)),
        ("RERA", ("arousal", "unknown", None)),
        ("Wake|0", ("wake", "unknown", "W")),
        ("Stage 1 sleep|1", ("sleep", "unknown", "N1")),
        ("Stage 4 sleep|4", ("sleep", "unknown", "N3")),
        ("REM sleep|5", ("sleep", "unknown", "R")),
        ("Unscored|9", ("ignore", "unknown", "?")),
        ("Sleep stage W", ("wake", "unknown", "W")),
        ("Sleep stage ?", ("ignore", "unknown", "?")),
        ("N2", ("sleep", "unknown", "N2")),
        ("R", ("sleep", "unknown", "R")),
        ("SLEEP-S3", ("sleep", "unknown", "N3")),
        ("Lights Off", ("lights_off", "unknown", None)),
        ("LIGHTS ON", ("lights_on", "unknown", None)),
        ("SpO2 desaturation|SpO2 desaturation", ("ignore", "unknown", None)),
        ("Unsure|Unsure", (None, "unknown", None)),
        ("1", (None, "unknown", None)),  # a bare code is not guessed to be a stage
    ],
)
def test_classify_label(text, expected):
    assert classify_label(text) == expected


def test_label_map_overrides_the_table_case_insensitively():
    assert classify_label("RERA", {"rera": "hypopnea"})[0] == "hypopnea"
    assert classify_label("Unsure|Unsure", {"UNSURE": "Hypopnea"})[0] == "hypopnea"
    assert classify_label("Beinbewegung links", {"Beinbewegung": "lm"}) == ("lm", "left", None)
    with pytest.raises(UsageError, match="not a pmld label"):
        classify_label("x", {"x": "apnoea"})


# -- BIDS events.tsv -----------------------------------------------------------------------
BIDS = (
    "onset\tduration\ttrial_type\tchannel\n"
    "0\tn/a\tLights Off\tn/a\n"
    "12.5\t1.25\tLeg Movement\tLAT\n"
    "40.0\t2.0\tLimb Movement (Right)\tn/a\n"
    "60\t0.5\tLM\tLeg R\n"
    "100.25\t15.5\tObstructive Apnea\tn/a\n"
    "130\t12\tHypopnea\tn/a\n"
    "141.5\t3\tArousal\tn/a\n"
    "1700\tn/a\tLights On\tn/a\n"
)


def test_bids_round_trip(tmp_path):
    path = write_text(tmp_path / "sub-01_task-sleep_events.tsv", BIDS)
    ref = read_reference(path)
    assert ref.format == "bids"
    assert ref.start_utc is None and ref.start_local is None and ref.start_clock is None
    assert ref.sha256 == file_sha256(path)
    assert ref.n_events == 8 and ref.unknown == {} and ref.ignored == {}
    assert rows(ref) == [
        (0.0, 0.0, "lights_off", "unknown"),
        (12.5, 1.25, "lm", "left"),
        (40.0, 2.0, "lm", "right"),
        (60.0, 0.5, "lm", "right"),
        (100.25, 15.5, "apnea", "unknown"),
        (130.0, 12.0, "hypopnea", "unknown"),
        (141.5, 3.0, "arousal", "unknown"),
        (1700.0, 0.0, "lights_on", "unknown"),
    ]
    assert set(ref.annotations["source"]) == {"reference"}
    assert ref.annotations["original"].tolist()[1:3] == ["Leg Movement", "Limb Movement (Right)"]
    lms = reference_lms(ref)
    assert lms.to_dict("list") == {
        "onset_s": [12.5, 40.0, 60.0],
        "offset_s": [13.75, 42.0, 60.5],
        "side": ["left", "right", "right"],
    }


def test_bids_needs_numeric_onsets_and_a_duration_column(tmp_path):
    bad = write_text(tmp_path / "a_events.tsv", "onset\tduration\ttrial_type\n23:00:00\t1\tLM\n")
    with pytest.raises(InputError, match=r"line 2: the onset '23:00:00' is not a number"):
        read_reference(bad)
    bad = write_text(tmp_path / "b_events.tsv", "onset\ttrial_type\n1\tLM\n")
    with pytest.raises(InputError, match="no 'duration' column"):
        read_reference(bad)


# -- generic CSV ---------------------------------------------------------------------------
def test_csv_clock_times_across_midnight_in_any_row_order(tmp_path):
    # rows grouped by kind, not by time; the night crosses midnight
    text = (
        "Start Time,End Time,Event,Channel\n"
        "23:59:50,00:00:02.5,Obstructive Apnea,Flow\n"
        "22:20:00,22:20:00,Lights Off,\n"
        "00:10:00,00:10:01.5,Leg Movement,Left Leg\n"
        "22:40:00,22:40:01,Leg Movement,Right Leg\n"
    )
    ref = read_reference(write_text(tmp_path / "events.csv", text))
    assert ref.format == "csv"
    assert ref.start_clock == time(22, 20) and ref.start_utc is None
    assert rows(ref) == [
        (0.0, 0.0, "lights_off", "unknown"),
        (1200.0, 1.0, "lm", "right"),
        (5990.0, 12.5, "apnea", "unknown"),
        (6600.0, 1.5, "lm", "left"),
    ]
    # the time of day is read in the night's zone on the date nearest the night's start:
    # 22:20 in Zurich is 21:20 UTC, 70 min before this night's 22:30 UTC start
    night = flat_night(timezone="Europe/Zurich", hours=3)
    aligned = align_reference(ref, night)
    assert aligned["onset_s"].tolist() == [-4200.0, -3000.0, 1790.0, 2400.0]
    with pytest.raises(UsageError, match="carry their own clock"):
        read_reference(tmp_path / "events.csv", start_utc="2026-01-05T22:00:00+00:00")


def test_csv_iso_onsets_with_offsets_are_absolute(tmp_path):
    text = (
        "onset;duration;label;side\n"
        "2026-01-05T23:35:00+01:00;1,5;LM;L\n"  # a decimal comma where ';' separates
        "2026-01-05T22:40:10Z;2;LM;R\n"
        "2026-01-05T23:45:00+01:00;n/a;Lights On;\n"
    )
    ref = read_reference(write_text(tmp_path / "iso.csv", text))
    assert ref.start_utc == datetime(2026, 1, 5, 22, 35, tzinfo=UTC)
    assert rows(ref) == [
        (0.0, 1.5, "lm", "left"),
        (310.0, 2.0, "lm", "right"),
        (600.0, 0.0, "lights_on", "unknown"),
    ]
    aligned = align_reference(ref, flat_night())
    assert aligned["onset_s"].tolist() == [300.0, 610.0, 900.0]


def test_csv_export_with_a_preamble_and_units_in_the_header(tmp_path):
    # a RemLogic-style export: lines before the header, 'Time [hh:mm:ss]', 'Duration[s]'
    text = (
        "Patient ID:\tX\n"
        "Start Time:\t22:30:00\n"
        "Events Included:\n"
        "\n"
        "Sleep Stage\tPosition\tTime [hh:mm:ss]\tEvent\tDuration[s]\tLocation\n"
        "W\tSupine\t22:30:00\tSLEEP-S0\t30\tEEG\n"
        "W\tSupine\t22:30:30\tSLEEP-S0\t30\tEEG\n"
        "N1\tSupine\t22:31:00\tSLEEP-S1\t30\tEEG\n"
        "N1\tSupine\t22:31:10\tLM\t1.5\tEMG-Tib sx\n"
        "N2\tSupine\t22:31:30\tSLEEP-S2\t30\tEEG\n"
        "N2\tSupine\t22:31:40\tLM\t2\tEMG-Tib dx\n"
    )
    ref = read_reference(write_text(tmp_path / "export.txt", text))
    assert ref.start_clock == time(22, 30)
    assert rows(ref) == [
        (0.0, 60.0, "wake", "unknown"),
        (60.0, 60.0, "sleep", "unknown"),
        (70.0, 1.5, "lm", "left"),
        (100.0, 2.0, "lm", "right"),
    ]
    assert ref.hypnogram["stage"].tolist() == ["W", "W", "N1", "N2"]


def test_a_tsv_like_bids_with_clock_onsets_is_read_as_generic(tmp_path):
    text = "onset\tduration\ttrial_type\n22:31:00\t1\tLM\n22:30:00\t0\tLights Off\n"
    path = write_text(tmp_path / "clock.tsv", text)
    ref = read_reference(path)
    assert ref.format == "csv" and ref.start_clock == time(22, 30)
    assert rows(ref) == [(0.0, 0.0, "lights_off", "unknown"), (60.0, 1.0, "lm", "unknown")]
    with pytest.raises(InputError, match="line 2: the onset '22:31:00' is not a number"):
        read_reference(path, format="bids")


def test_csv_without_a_label_column_needs_default_label(tmp_path):
    path = write_text(tmp_path / "lms.csv", "onset_s,offset_s,side\n10,11.5,R\n30,30.75,L\n")
    with pytest.raises(InputError, match="no label column.*--label lm"):
        read_reference(path)
    ref = read_reference(path, default_label="lm")
    assert rows(ref) == [(10.0, 1.5, "lm", "right"), (30.0, 0.75, "lm", "left")]


def test_real_night_lm_list(tmp_path):
    """The shared real patient night: 974 LMs from a CSV without a label column."""
    if not REAL_NIGHT.is_file():
        pytest.skip(f"real-night data not found at {REAL_NIGHT} (shared/ beside the repo)")
    ref = read_reference(REAL_NIGHT, default_label="lm")
    assert ref.format == "csv" and ref.n_events == 974
    lms = reference_lms(ref)
    assert (lms["side"] == "right").sum() == 585 and (lms["side"] == "left").sum() == 389
    # the same movements read_lm_csv gives (what `pmld score` reads), to the microsecond
    expected = read_lm_csv(REAL_NIGHT)
    expected["side"] = expected["side"].map({"R": "right", "L": "left"})
    expected = expected.sort_values(["onset_s", "offset_s"], kind="stable")
    np.testing.assert_allclose(lms["onset_s"], expected["onset_s"], atol=1e-9)
    np.testing.assert_allclose(lms["offset_s"], expected["offset_s"], atol=1e-9)
    assert lms["side"].tolist() == expected["side"].tolist()
    # and scored by MATPLM's reading they give its published 682 candidate LMs
    scored = score_leg_movements(lms, rules_preset("matplm2016"))
    assert int(scored["candidate"].sum()) == 682
    # on a night that starts with the recording but lasts 0.5 h: a partial overlap
    overlap = reference_overlap(ref, flat_night())
    assert overlap.partial and overlap.overlap_s == pytest.approx(1800.0 - 200.15)
    assert overlap.events_outside == int((lms["onset_s"] > 1800).sum())


# -- EDF+ ------------------------------------------------------------------------------------
def test_edf_round_trip_and_header_start(tmp_path):
    start = datetime(2026, 1, 5, 22, 28, 0, 250000)  # 119.75 s before the night (local time)
    path = write_edf(
        tmp_path / "night.edf",
        start,
        [
            (0.0, 30.0, "Sleep stage W"),
            (30.0, 30.0, "Sleep stage W"),
            (60.0, 30.0, "Sleep stage 1"),
            (90.0, 30.0, "Sleep stage 2"),
            (120.0, 30.0, "Sleep stage R"),
            (150.0, 30.0, "Sleep stage ?"),
            (180.0, 30.0, "Sleep stage 2"),
            (70.5, 1.75, "Leg Movement (Left)"),
            (95.25, 0.5, "LM Right"),
            (100.0, 12.0, "Central Apnea"),
            (130.0, None, "Lights Off"),
        ],
        signal=True,
    )
    ref = read_reference(path)
    assert ref.format == "edf" and ref.start_local == start and ref.start_utc is None
    assert ref.ignored == {"Sleep stage ?": 1}
    assert rows(ref) == [
        (0.0, 60.0, "wake", "unknown"),
        (60.0, 90.0, "sleep", "unknown"),  # N1, N2, R merged
        (70.5, 1.75, "lm", "left"),
        (95.25, 0.5, "lm", "right"),
        (100.0, 12.0, "apnea", "unknown"),
        (130.0, 0.0, "lights_off", "unknown"),
        (180.0, 30.0, "sleep", "unknown"),  # after the unscored epoch: a new span
    ]
    sleep = ref.annotations[ref.annotations["label"] == "sleep"]
    assert sleep["original"].iloc[0] == "Sleep stage 1, Sleep stage 2, Sleep stage R"
    assert ref.hypnogram["stage"].tolist() == ["W", "W", "N1", "N2", "R", "?", "N2"]
    # the header is wall-clock time, read in the night's time zone
    aligned = align_reference(ref, flat_night())
    assert aligned["onset_s"].iloc[2] == pytest.approx(70.5 - 119.75, abs=1e-6)
    zurich = flat_night(NIGHT_START - timedelta(hours=1), timezone="Europe/Zurich")
    assert align_reference(ref, zurich)["onset_s"].iloc[2] == pytest.approx(70.5 - 119.75)
    # an explicit start (UTC offset) overrides the header's
    given = read_reference(path, start_utc="2026-01-05T22:30:00+00:00", offset_s=5)
    assert align_reference(given, flat_night())["onset_s"].iloc[2] == pytest.approx(75.5)


def test_edf_errors(tmp_path, monkeypatch):
    edfio = pytest.importorskip("edfio")
    good = write_edf(tmp_path / "a.edf", datetime(2026, 1, 5, 22, 30), [(1, 1, "LM")] * 3,
                     signal=True)
    data = good.read_bytes()
    cut = write_text(tmp_path / "cut.edf", "")
    cut.write_bytes(data[: len(data) - 3000])
    with pytest.raises(FormatError, match="truncated") as caught:
        read_reference(cut)
    assert str(cut) in one_line(caught.value)
    header_only = tmp_path / "header.edf"
    header_only.write_bytes(data[:200])
    with pytest.raises(FormatError, match="not a readable EDF"):
        read_reference(header_only)
    plain = tmp_path / "plain.edf"
    edfio.Edf([edfio.EdfSignal(np.zeros(256), sampling_frequency=256)]).write(plain)
    with pytest.raises(FormatError, match="plain EDF file without an 'EDF Annotations' signal"):
        read_reference(plain)
    monkeypatch.setitem(sys.modules, "edfio", None)
    with pytest.raises(UsageError, match=r'pip install "pmld\[research\]"') as caught:
        read_reference(good)
    assert str(good) in one_line(caught.value)


def test_edf_with_an_anonymised_date_keeps_the_time_of_day(tmp_path):
    edfio = pytest.importorskip("edfio")
    path = tmp_path / "anon.edf"
    edfio.Edf(
        [], starttime=time(22, 25), annotations=[edfio.EdfAnnotation(400.0, 1.0, "LM")]
    ).write(path)
    ref = read_reference(path)
    assert ref.start_local is None and ref.start_clock == time(22, 25)
    assert align_reference(ref, flat_night())["onset_s"].tolist() == [100.0]


# -- NSRR XML ------------------------------------------------------------------------------
NSRR_EVENTS = [
    ("Stages|Stages", "Wake|0", 0, 600),
    ("Stages|Stages", "Stage 2 sleep|2", 600, 900),
    ("Stages|Stages", "Stage 3 sleep|3", 1500, 300),
    ("Stages|Stages", "REM sleep|5", 1800, 300),
    ("Stages|Stages", "Unscored|9", 2100, 300),
    ("Limb Movement|Limb Movement", "Limb movement - left|Limb Movement (Left)", 700.5, 1.5),
    ("Limb Movement|Limb Movement", "Limb movement - right|Limb Movement (Right)", 725.0, 2.25),
    ("Limb Movement|Limb Movement", "Periodic leg movement - left|PLM (Left)", 760.0, 1.0),
    ("Respiratory|Respiratory", "Obstructive apnea|Obstructive Apnea", 800.0, 21.5),
    ("Respiratory|Respiratory", "Hypopnea|Hypopnea", 900.0, 14.0),
    ("Respiratory|Respiratory", "SpO2 desaturation|SpO2 desaturation", 905.0, 20.0),
    ("Arousals|Arousals", "Arousal|Arousal ()", 915.0, 4.5),
    ("Arousals|Arousals", "ASDA arousal|Arousal (ASDA)", 1000.0, 6.0),
]


def test_nsrr_round_trip(tmp_path):
    path = write_nsrr(tmp_path / "night-nsrr.xml", "00.00.00 22.20.00", NSRR_EVENTS)
    ref = read_reference(path)
    assert ref.format == "nsrr" and ref.start_clock == time(22, 20)
    assert ref.duration_s == 2400.0
    assert ref.ignored == {"Unscored|9": 1, "SpO2 desaturation|SpO2 desaturation": 1}
    assert rows(ref) == [
        (0.0, 600.0, "wake", "unknown"),
        (600.0, 1500.0, "sleep", "unknown"),
        (700.5, 1.5, "lm", "left"),
        (725.0, 2.25, "lm", "right"),
        (760.0, 1.0, "lm", "left"),
        (800.0, 21.5, "apnea", "unknown"),
        (900.0, 14.0, "hypopnea", "unknown"),
        (915.0, 4.5, "arousal", "unknown"),
        (1000.0, 6.0, "arousal", "unknown"),
    ]
    # 22:20 is 10 min before the night: every onset moves 600 s earlier
    aligned = align_reference(ref, flat_night())
    assert aligned["onset_s"].tolist() == (ref.annotations["onset_s"] - 600).tolist()
    overlap = aligned.attrs["overlap"]
    assert overlap["shift_s"] == -600.0 and overlap["partial"]
    assert overlap["reference_start_utc"] == "2026-01-05T22:20:00+00:00"
    # a full date in ClockTime is used, read in the night's zone
    dated = write_nsrr(tmp_path / "dated.xml", "05.01.26 23.35.00", NSRR_EVENTS[:1])
    zurich = flat_night(timezone="Europe/Zurich")
    assert read_reference(dated).start_local == datetime(2026, 1, 5, 23, 35)
    assert align_reference(read_reference(dated), zurich)["onset_s"].tolist() == [300.0]


def test_nsrr_signal_location_gives_the_side(tmp_path):
    path = write_nsrr(
        tmp_path / "loc.xml", None,
        [("Limb Movement|Limb Movement", "Limb movement|Limb movement", 5, 1, "Left Leg"),
         ("Limb Movement|Limb Movement", "Limb movement|Limb movement", 9, 1, "R Leg")],
    )
    assert rows(read_reference(path)) == [(5.0, 1.0, "lm", "left"), (9.0, 1.0, "lm", "right")]


def test_nsrr_refuses_dtds_and_entities(tmp_path):
    bomb = (
        '<?xml version="1.0"?>\n<!DOCTYPE PSGAnnotation [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
        "<PSGAnnotation><ScoredEvents><ScoredEvent><EventConcept>&b;</EventConcept>"
        "<Start>0</Start><Duration>1</Duration></ScoredEvent></ScoredEvents></PSGAnnotation>"
    )
    with pytest.raises(FormatError, match="DTD or entities"):
        read_reference(write_text(tmp_path / "bomb.xml", bomb))
    external = (
        '<?xml version="1.0"?>\n<!DOCTYPE x SYSTEM "file:///etc/passwd">\n<PSGAnnotation/>'
    )
    with pytest.raises(FormatError, match="DTD or entities"):
        read_reference(write_text(tmp_path / "external.xml", external))


def test_nsrr_malformed(tmp_path):
    good = write_nsrr(tmp_path / "good.xml", "00.00.00 22.20.00", NSRR_EVENTS).read_bytes()
    cut = tmp_path / "cut.xml"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(FormatError, match="not well-formed XML") as caught:
        read_reference(cut)
    one_line(caught.value)
    with pytest.raises(FormatError, match="not an NSRR annotation file"):
        read_reference(write_text(tmp_path / "other.xml", "<html><body/></html>"))
    bad = write_nsrr(tmp_path / "bad.xml", None, [("x", "LM", 0, 1)])
    bad.write_text(bad.read_text().replace("<Start>0.0</Start>", "<Start>soon</Start>"))
    with pytest.raises(InputError, match=r"event 1 \(LM\): <Start> 'soon' is not a number"):
        read_reference(bad)


# -- labels: map, unknown ------------------------------------------------------------------
def test_unknown_labels_error_or_are_ignored(tmp_path):
    text = "onset\tduration\ttrial_type\n" + "".join(
        f"{k}\t1\t{label}\n"
        for k, label in enumerate(["LM", "Unsure", "Unsure", "Snort", "Unsure", "LM"])
    )
    path = write_text(tmp_path / "x_events.tsv", text)
    with pytest.raises(InputError) as caught:
        read_reference(path)
    message = one_line(caught.value)
    assert "2 labels pmld does not know: 'Unsure' (3), 'Snort' (1)" in message
    assert "--map" in message and "--ignore-unknown" in message and str(path) in message
    ref = read_reference(path, on_unknown="ignore")
    assert ref.unknown == {"Unsure": 3, "Snort": 1}
    assert rows(ref) == [(0.0, 1.0, "lm", "unknown"), (5.0, 1.0, "lm", "unknown")]
    mapped = read_reference(path, label_map={"unsure": "hypopnea", "SNORT": "ignore"})
    assert mapped.unknown == {} and mapped.ignored == {"Snort": 1}
    assert mapped.counts() == {"hypopnea": 3, "lm": 2}
    with pytest.raises(UsageError, match="on_unknown"):
        read_reference(path, on_unknown="skip")


# -- clock alignment -----------------------------------------------------------------------
def test_offset_and_assumed_start(tmp_path):
    path = write_text(tmp_path / "e_events.tsv", BIDS)
    night = flat_night()
    plain = align_reference(read_reference(path), night)
    assert plain.attrs["overlap"]["start_known"] is False
    assert plain["onset_s"].tolist() == read_reference(path).annotations["onset_s"].tolist()
    shifted = align_reference(read_reference(path, offset_s=-30.0), night)
    assert (shifted["onset_s"] - plain["onset_s"]).tolist() == [-30.0] * len(plain)
    assert shifted["onset_s"].iloc[0] == -30.0  # kept, not clipped
    # a reference that starts 10 min before the night
    early = read_reference(path, start_utc=NIGHT_START - timedelta(minutes=10))
    aligned = align_reference(early, night)
    assert (aligned["onset_s"] - plain["onset_s"]).tolist() == [-600.0] * len(plain)
    overlap = reference_overlap(early, night)
    assert overlap.partial and overlap.events_outside == 7  # all but lights on
    assert "starts 10.0 min before the night" in overlap.line()
    with pytest.raises(UsageError, match="no UTC offset"):
        read_reference(path, start_utc="2026-01-05T22:20:00")


def test_no_overlap_is_an_error_naming_both_spans(tmp_path):
    path = write_edf(tmp_path / "day.edf", datetime(2026, 1, 5, 10, 0), [(5.0, 1.0, "LM")])
    night = flat_night()
    with pytest.raises(InputError) as caught:
        align_reference(read_reference(path), night)
    message = one_line(caught.value)
    assert "does not overlap the night" in message
    assert "2026-01-05T10:00:05Z" in message and "2026-01-05T22:30:00Z" in message
    assert "--offset" in message
    with pytest.raises(InputError, match="does not overlap"):
        attach_reference(night, read_reference(path))
    # shifted by 12.5 h it overlaps
    ok = read_reference(path, offset_s=12.5 * 3600)
    assert align_reference(ok, night)["onset_s"].tolist() == [5.0]


# -- attach + analyze ----------------------------------------------------------------------
def test_attach_then_analyze_uses_the_reference(sim_night, tmp_path):
    before = analyze(sim_night)
    assert before.indices["wake_h"] == 0.0
    assert before.indices["plm_count_nonresp"] == before.indices["plm_count"]
    plms = before.events[before.events["plm"]]
    late = plms[plms["onset_s"] > 700]["onset_s"].to_numpy()
    assert len(late) >= 4
    # the reference: awake for the first 10 min (20 epochs), then N2; an apnea ending 1 s
    # before each of the later PLMs (respiratory-related by WASM: 2 s before to 10.25 s
    # after the end of an apnea)
    lines = ["onset\tduration\ttrial_type"]
    lines += [f"{30 * k}\t30\t{'W' if k < 20 else 'N2'}" for k in range(60)]
    lines += [f"{onset - 16:.3f}\t15\tObstructive Apnea" for onset in late[:3]]
    ref = read_reference(write_text(tmp_path / "ref_events.tsv", "\n".join(lines) + "\n"))
    assert rows(ref, "wake") == [(0.0, 600.0, "wake", "unknown")]
    assert rows(ref, "sleep") == [(600.0, 1200.0, "sleep", "unknown")]

    attached = attach_reference(sim_night, ref)
    assert attached.sensors[0] is sim_night.sensors[0]
    assert attached.meta["reference_sha256"] == ref.sha256
    simulator = sim_night.annotations[sim_night.annotations["source"] == "simulator"]
    kept = attached.annotations[attached.annotations["source"] == "simulator"]
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), simulator.reset_index(drop=True))
    after = analyze(attached)
    window_start = after.night_info["window_start_s"]
    assert after.indices["wake_h"] == pytest.approx((600 - window_start) / 3600)
    assert after.indices["sleep_h"] < before.indices["sleep_h"]
    assert after.indices["plm_count_nonresp"] < after.indices["plm_count"]
    early_plms = int((plms["onset_s"] < 600).sum())
    assert after.indices["plmw_count"] == early_plms
    assert after.indices["plms_count"] == before.indices["plm_count"] - early_plms

    # attaching again replaces; keeping the previous one doubles the reference
    again = attach_reference(attached, ref)
    assert len(again.annotations) == len(attached.annotations)
    both = attach_reference(attached, ref, replace=False)
    n_ref = int((attached.annotations["source"] == "reference").sum())
    assert len(both.annotations) == len(attached.annotations) + n_ref
    # the night's reference LMs: none here, the simulator's truth is not the reference's
    assert reference_lms(attached.annotations).empty


def test_reference_lms_on_the_nights_clock(tmp_path):
    path = write_nsrr(tmp_path / "n.xml", "00.00.00 22.40.00", NSRR_EVENTS)
    ref = read_reference(path)
    night = flat_night()
    lms = reference_lms(ref, night)
    assert lms.to_dict("list") == {
        "onset_s": [1300.5, 1325.0, 1360.0],
        "offset_s": [1302.0, 1327.25, 1361.0],
        "side": ["left", "right", "left"],
    }
    pd.testing.assert_frame_equal(lms, reference_lms(align_reference(ref, night)))
    attached = attach_reference(night, ref)
    pd.testing.assert_frame_equal(lms, reference_lms(attached.annotations))
    # a night's clock is enough to align on (what a summary file gives)
    clock = SimpleNamespace(
        start_utc=night.start_utc, end_utc=night.end_utc, duration_s=night.duration_s,
        timezone=night.timezone, start_local=night.start_local,
    )
    pd.testing.assert_frame_equal(lms, reference_lms(ref, clock))
    with pytest.raises(UsageError):
        reference_lms([1, 2, 3])


# -- find_reference ------------------------------------------------------------------------
def test_find_reference(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ("night_events.tsv", "night2.tsv", "other.csv", "night.json", "night.h5"):
        (refs / name).write_text("x")
    assert find_reference(tmp_path / "night.h5", refs).name == "night_events.tsv"
    assert find_reference(tmp_path / "night.plm.h5", refs).name == "night_events.tsv"
    (refs / "NIGHT.edf").write_text("x")  # an exact stem wins (names compare caselessly)
    assert find_reference(tmp_path / "night.h5", refs).name == "NIGHT.edf"
    (refs / "night.xml").write_text("x")
    with pytest.raises(InputError, match="2 reference files match night night.h5"):
        find_reference(tmp_path / "night.h5", refs)
    with pytest.raises(InputError, match="no reference file for night nobody.h5"):
        find_reference(tmp_path / "nobody.h5", refs)
    with pytest.raises(InputError, match="not a directory"):
        find_reference(tmp_path / "night.h5", tmp_path / "missing")


# -- bad input: one line, naming the file ------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content", "kwargs", "error", "match"),
    [
        ("missing.tsv", None, {}, InputError, "no such file"),
        ("empty.csv", "", {}, InputError, "is empty"),
        ("nan_events.tsv", "onset\tduration\ttrial_type\nabc\t1\tLM\n", {}, InputError,
         r"line 2: the onset 'abc' is not a number"),
        ("nan2_events.tsv", "onset\tduration\ttrial_type\nn/a\t1\tLM\n", {}, InputError,
         r"line 2: the onset is 'n/a'"),
        ("neg_events.tsv", "onset\tduration\ttrial_type\n1\t-2\tLM\n", {}, InputError,
         r"line 2: the duration -2 is negative"),
        ("cols.csv", "when,what\n1,LM\n", {}, InputError, "no onset column"),
        ("end.csv", "start,end,label\n10,5,LM\n", {}, InputError,
         "line 2: the end is before the onset"),
        ("cut_events.tsv", "onset\tduration\ttrial_type\n1\t1\tLM\n2\t1", {}, InputError,
         r"line 3: 2 fields where the header has 3"),
        ("garbage.dat", b"\x00\x01\x02binary", {}, FormatError, "give --format"),
        ("mixed.csv", "onset,label\n2026-01-05T22:00:00Z,LM\n2026-01-05T22:00:09,LM\n", {},
         InputError, "mix date-times with and without a UTC offset"),
        ("kinds.csv", "onset,label\n23:00:00,LM\n2026-01-05T23:00:10Z,LM\n", {}, InputError,
         r"line 3: the onset '2026-01-05T23:00:10Z' is not a clock time like the first \(on "
         r"line 2\)"),
        ("kinds2.csv", "onset,label\n10,LM\n23:00:00,LM\n", {}, InputError,
         r"line 3: the onset '23:00:00' is not a number of seconds like the first"),
        ("fmt.tsv", "onset\tduration\ttrial_type\n1\t1\tLM\n", {"format": "json"}, UsageError,
         "unknown reference format 'json'"),
        ("only_ignored_events.tsv", "onset\tduration\ttrial_type\n1\t1\tSnore\n", {}, None, None),
    ],
)
def test_bad_input_is_one_line(tmp_path, name, content, kwargs, error, match):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    if error is None:  # readable, but nothing to attach: align says so
        ref = read_reference(path, **kwargs)
        with pytest.raises(InputError, match=r"no annotations to align \(all 1 events"):
            align_reference(ref, flat_night())
        return
    with pytest.raises(error, match=match) as caught:
        read_reference(path, **kwargs)
    message = one_line(caught.value)
    if error is not UsageError:
        assert str(path) in message
    assert isinstance(caught.value, PmldError) and caught.value.exit_code == 2


# -- the command -----------------------------------------------------------------------------
def run(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PMLD, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_annotate_command(tmp_path, sim_night):
    night_path = tmp_path / "night.h5"
    write_raw(sim_night, night_path)
    pristine = file_sha256(night_path)
    in_place = tmp_path / "inplace.h5"
    in_place.write_bytes(night_path.read_bytes())
    refs = tmp_path / "refs"
    refs.mkdir()
    xml = write_nsrr(refs / "night-nsrr.xml", "00.00.00 22.20.00", NSRR_EVENTS)
    unknown = write_nsrr(tmp_path / "unknown.xml", None, [("R", "Unsure|Unsure", 10, 5)])
    day = write_edf(tmp_path / "day.edf", datetime(2026, 1, 5, 10, 0), [(5.0, 1.0, "LM")])
    corrupt = tmp_path / "corrupt.xml"
    corrupt.write_bytes(xml.read_bytes()[:300])
    out = tmp_path / "out.h5"
    jobs = {
        "to_out": ("annotate", night_path, "--reference", refs, "-o", out),
        "unknown": ("annotate", night_path, "--reference", unknown),
        "mapped": ("annotate", night_path, "-r", unknown, "--map", "Unsure=hypopnea",
                   "-o", tmp_path / "mapped.h5"),
        "no_overlap": ("annotate", night_path, "--reference", day),
        "corrupt": ("annotate", night_path, "--reference", corrupt),
        "missing": ("annotate", night_path, "--reference", tmp_path / "nope.tsv"),
        "bad_map": ("annotate", night_path, "--reference", xml, "--map", "Unsure"),
        "bad_format": ("annotate", night_path, "--reference", xml, "--format", "json"),
        "list": ("annotate", "--list-labels"),
        "in_place": ("annotate", in_place, "--reference", xml),
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(run, *args, cwd=tmp_path) for key, args in jobs.items()}
        results = {key: future.result() for key, future in futures.items()}

    ok = results["to_out"]
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].startswith(f"{xml}: nsrr, 13 events; reference start 2026-01-05T22:20:00Z")
    assert any(line.split()[:3] == ["lm", "3", "(left"] for line in lines)
    assert any(line.split()[:2] == ["apnea", "1"] for line in lines)
    assert any(line.startswith("  ignored: 2") for line in lines)
    assert any(line.startswith("partial overlap: 0.50 h in common") for line in lines)
    assert lines[-1] == f"wrote {out} (9 reference annotations)"
    assert file_sha256(night_path) == pristine  # -o leaves the night alone
    written = read_raw(out)
    np.testing.assert_array_equal(written.sensors[0].acc_g, sim_night.sensors[0].acc_g)
    assert written.sensors[0].device == sim_night.sensors[0].device
    assert written.timezone == sim_night.timezone
    assert {k: v for k, v in written.meta.items() if not k.startswith("reference_")} == (
        sim_night.meta
    )
    assert written.meta["reference_sha256"] == file_sha256(xml)
    reference_rows = written.annotations[written.annotations["source"] == "reference"]
    expected = align_reference(read_reference(xml), sim_night)
    assert rows(reference_rows) == rows(expected)

    mapped = read_raw(tmp_path / "mapped.h5")
    assert results["mapped"].returncode == 0, results["mapped"].stderr
    assert "hypopnea" in set(mapped.annotations["label"])

    for key in ("unknown", "no_overlap", "corrupt", "missing", "bad_map", "bad_format"):
        result = results[key]
        assert result.returncode == 2, (key, result.stdout, result.stderr)
        assert result.stderr.startswith("pmld: ") and result.stderr.count("\n") == 1, (
            key, result.stderr)
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert "'Unsure|Unsure' (1)" in results["unknown"].stderr
    assert "does not overlap the night" in results["no_overlap"].stderr
    assert "not well-formed XML" in results["corrupt"].stderr
    assert file_sha256(night_path) == pristine  # nothing written by a failure

    assert results["list"].returncode == 0 and "arousal: " in results["list"].stdout

    # in place (the default), atomically; a second run replaces the first reference
    assert results["in_place"].returncode == 0, results["in_place"].stderr
    assert rows(read_raw(in_place).annotations.query("source == 'reference'")) == rows(expected)
    second = run("annotate", in_place, "--reference", xml, "--offset", "30", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "9 earlier reference annotations replaced" in second.stdout
    annotated = read_raw(in_place)
    ref_rows = annotated.annotations[annotated.annotations["source"] == "reference"]
    assert rows(ref_rows) == [
        (on + 30, dur, label, side) for on, dur, label, side in rows(expected)
    ]
    assert annotated.meta["reference_offset_s"] == 30.0
    assert not list(tmp_path.glob(".*.tmp"))


def test_date_helpers_do_not_guess_de_identified_dates():
    from pmld.io.reference import _nsrr_date

    assert _nsrr_date("00.00.00") is None
    assert _nsrr_date("05.01.26") == date(2026, 1, 5)
    assert _nsrr_date("05.01.1999") == date(1999, 1, 5)
