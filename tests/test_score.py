"""Tests of pmld.score: the clinical PLM scoring rules (WASM 2016, AASM) and the night
summary.

Expected values come from the rules themselves (worked by hand in the comments), from
an independent loop-per-event reference scorer written below straight from the rule
text, and, for the real night, from the published output of the 2016 MATPLM scorer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmld.errors import InputError, UsageError
from pmld.score import (
    PRESETS,
    SCORED_COLUMNS,
    ScoringRules,
    imi_histograms,
    plm_series,
    rules_preset,
    score_leg_movements,
    summarize,
)

REAL_NIGHT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-night-lms.csv"


def lms_at(onsets, duration=1.0, side="left", **columns):
    """Monolateral LMs of one duration at the given onsets."""
    onsets = np.asarray(onsets, dtype=float)
    return pd.DataFrame({"onset_s": onsets, "offset_s": onsets + duration, "side": side, **columns})


def table(rows):
    """LMs from (onset_s, offset_s, side[, kind]) tuples."""
    frame = pd.DataFrame(
        [r if len(r) == 4 else (*r, "lm") for r in rows],
        columns=["onset_s", "offset_s", "side", "kind"],
    )
    return frame


def plm_onsets(scored, column="plm"):
    return scored.loc[scored[column], "onset_s"].tolist()


# ---------------------------------------------------------------------------------------
# section 7 worked cases


def test_worked_case_short_imi_breaks_run_wasm2016():
    # IMIs 20, 5, 20, 20, 20: the 25 s LM is short (5 s) and splits 0,20 | 45,65,85
    scored = score_leg_movements(lms_at([0, 20, 25, 45, 65, 85]), "wasm2016")
    assert scored["plm"].sum() == 0
    assert scored["short_imi"].tolist() == [False, False, True, False, False, False]
    assert (scored["series_id"] == -1).all()


def test_worked_case_short_imi_aasm():
    # AASM accepts IMIs of 5-90 s: all six LMs form one series
    scored = score_leg_movements(lms_at([0, 20, 25, 45, 65, 85]), "aasm")
    assert scored["plm"].sum() == 6
    assert scored["series_id"].tolist() == [0] * 6
    assert not scored["short_imi"].any()


def worked_case_noncandidate():
    clms = lms_at([0, 20, 40, 60, 80, 100, 120])
    long_lm = pd.DataFrame({"onset_s": [50.0], "offset_s": [62.0], "side": ["left"]})
    return pd.concat([clms, long_lm], ignore_index=True)


def test_worked_case_noncandidate_breaks_run_wasm2016():
    scored = score_leg_movements(worked_case_noncandidate(), "wasm2016")
    assert scored["onset_s"].tolist() == [0, 20, 40, 50, 60, 80, 100, 120]
    assert scored["candidate"].tolist() == [True, True, True, False, True, True, True, True]
    # the IMI of the 60 s LM runs from the onset of the 50 s non-candidate: 10 s
    assert scored["imi_s"].iloc[4] == pytest.approx(10.0)
    assert plm_onsets(scored) == [60, 80, 100, 120]
    assert scored["series_id"].tolist() == [-1, -1, -1, -1, 0, 0, 0, 0]
    # the overlapping LMs are on the same leg: they are not merged
    assert (scored["n_components"] == 1).all()


def test_worked_case_noncandidate_aasm():
    # AASM scores LMs of 0.5-10 s only: the 12 s movement is not an LM, so it neither
    # counts nor breaks, and the seven LMs 20 s apart form one series.
    scored = score_leg_movements(worked_case_noncandidate(), "aasm")
    assert scored["onset_s"].tolist() == [0, 20, 40, 60, 80, 100, 120]
    assert scored["plm"].sum() == 7


# ---------------------------------------------------------------------------------------
# section 4 boundaries


@pytest.mark.parametrize("imi", [10.0, 90.0, 10.0 - 1e-9, 90.000000001, 90 + 1e-9])
def test_imi_boundaries_inside(imi):
    onsets = np.cumsum([0.0, imi, imi, imi])
    scored = score_leg_movements(lms_at(onsets))
    assert scored["plm"].all()
    assert not scored["short_imi"].any()


def test_imi_float_noise_from_arithmetic():
    # onsets as sample index * 0.1 s: the differences land just off 10 and 90 s
    onsets = [k * 0.1 for k in (543, 643, 1543, 1643)]
    imis = np.diff(onsets)
    assert imis[0] < 10.0 and imis[1] > 90.0  # 9.999999999999993, 90.00000000000001
    scored = score_leg_movements(lms_at(onsets))
    assert scored["plm"].all()
    assert not scored["short_imi"].any()


@pytest.mark.parametrize("imi", [9.99, 90.01])
def test_imi_boundaries_outside(imi):
    onsets = np.cumsum([0.0, 20.0, imi, 20.0, 20.0])
    scored = score_leg_movements(lms_at(onsets))
    assert scored["plm"].sum() == 0
    assert scored["short_imi"].iloc[2] == (imi < 10)


def test_imi_inclusiveness_parameters():
    at_90 = lms_at(np.cumsum([0.0, 90.0, 90.0, 90.0]))
    at_10 = lms_at(np.cumsum([0.0, 10.0, 10.0, 10.0]))
    assert score_leg_movements(at_90, rules_preset(max_imi_inclusive=False))["plm"].sum() == 0
    exclusive_min = score_leg_movements(at_10, rules_preset(min_imi_inclusive=False))
    assert exclusive_min["plm"].sum() == 0
    assert exclusive_min["short_imi"].tolist() == [False, True, True, True]


def test_lm_of_exactly_10_s_is_candidate():
    scored = score_leg_movements(lms_at([0, 20, 40, 60], duration=10.0))
    assert scored["candidate"].all() and scored["plm"].all()
    longer = score_leg_movements(lms_at([0, 20, 40, 60], duration=10.01))
    assert not longer["candidate"].any()
    # float noise on the duration: 10.000000001 s is 10 s
    noisy = lms_at([0.1, 20.1, 40.1, 60.1], duration=10.0 + 1e-9)
    assert score_leg_movements(noisy)["candidate"].all()
    exclusive = score_leg_movements(
        lms_at([0, 20, 40, 60], duration=10.0), rules_preset(candidate_lm_max_inclusive=False)
    )
    assert not exclusive["candidate"].any()


def test_lms_shorter_than_half_a_second_are_not_lms():
    scored = score_leg_movements(lms_at([0, 5, 20, 40, 60], duration=[1, 0.49, 1, 1, 1]))
    assert scored["onset_s"].tolist() == [0, 20, 40, 60]
    assert scored["plm"].all()
    assert len(score_leg_movements(lms_at([0], duration=0.5))) == 1


def test_bilateral_of_exactly_15_s_is_candidate():
    exact = table([(0, 8, "L"), (7, 15, "R")])
    scored = score_leg_movements(exact)
    assert len(scored) == 1
    assert scored["side"].iloc[0] == "both"
    assert scored["duration_s"].iloc[0] == 15.0
    assert scored["candidate"].iloc[0]
    longer = score_leg_movements(table([(0, 8, "L"), (7, 15.01, "R")]))
    assert not longer["candidate"].iloc[0]
    exclusive = score_leg_movements(exact, rules_preset(candidate_bilateral_max_inclusive=False))
    assert not exclusive["candidate"].iloc[0]


@pytest.mark.parametrize(
    ("right_onset", "merged"),
    [(1.5, False), (1.0 + 0.5 + 1e-10, False), (1.5 - 1e-9, False), (1.49, True), (0.5, True)],
)
def test_merge_gap_of_exactly_half_a_second_does_not_merge(right_onset, merged):
    scored = score_leg_movements(table([(0, 1, "L"), (right_onset, right_onset + 1, "R")]))
    assert (len(scored) == 1) == merged


def test_merge_gap_inclusive_parameter():
    pair = table([(0, 1, "L"), (1.5, 2.5, "R")])
    scored = score_leg_movements(pair, rules_preset(bilateral_merge_gap_inclusive=True))
    assert len(scored) == 1 and scored["side"].iloc[0] == "both"


def test_merging_chains():
    # L-R gap 0.3, R-L gap 0.4, L-R gap 0.45: one bilateral LM of 4 components
    scored = score_leg_movements(
        table([(0, 2, "L"), (2.3, 4, "R"), (4.4, 6, "L"), (6.45, 7, "R"), (7.6, 8.5, "L")])
    )
    assert scored["onset_s"].tolist() == [0, 7.6]
    assert scored["offset_s"].tolist() == [7, 8.5]
    assert scored["n_components"].tolist() == [4, 1]
    assert scored["side"].tolist() == ["both", "left"]
    assert scored["candidate"].tolist() == [True, True]


def test_merged_span_is_earliest_onset_to_latest_offset():
    scored = score_leg_movements(table([(0, 9, "L"), (1, 2, "R"), (9.2, 9.8, "R")]))
    assert len(scored) == 1
    assert (scored["onset_s"].iloc[0], scored["offset_s"].iloc[0]) == (0, 9.8)
    assert scored["n_components"].iloc[0] == 3


def test_more_than_four_components_is_not_candidate():
    five = [(0, 1, "L"), (0.8, 2, "R"), (1.9, 3, "L"), (2.8, 4, "R"), (3.9, 5, "L")]
    scored = score_leg_movements(table(five))
    assert len(scored) == 1 and scored["n_components"].iloc[0] == 5
    assert not scored["candidate"].iloc[0]
    four = score_leg_movements(table(five[:4]))
    assert four["candidate"].iloc[0]
    relaxed = score_leg_movements(table(five), rules_preset(max_bilateral_components=5))
    assert relaxed["candidate"].iloc[0]


def test_component_longer_than_10_s_makes_bilateral_non_candidate():
    lms = table([(0, 10.5, "L"), (1, 2, "R")])
    scored = score_leg_movements(lms)
    assert len(scored) == 1 and scored["duration_s"].iloc[0] == 10.5
    assert not scored["candidate"].iloc[0]
    # MATPLM 2016 reading: the long LM is left out of the merge, the right LM stands
    dropped = score_leg_movements(lms, rules_preset(drop_long_before_merge=True))
    assert dropped["side"].tolist() == ["left", "right"]
    assert dropped["candidate"].tolist() == [False, True]


def test_unknown_side_never_merges():
    scored = score_leg_movements(table([(0, 1, "unknown"), (0.2, 1.2, "L"), (0.3, 1, "u")]))
    assert len(scored) == 3
    assert sorted(scored["side"]) == ["left", "unknown", "unknown"]


def test_last_lm_completes_series():
    night = lms_at([0, 20, 40, 60])
    assert score_leg_movements(night)["plm"].sum() == 4
    buggy = rules_preset(last_lm_completes_series=False)
    assert score_leg_movements(night, buggy)["plm"].sum() == 0
    # a longer final series only loses its last LM
    assert score_leg_movements(lms_at([0, 20, 40, 60, 80]), buggy)["plm"].sum() == 4


# ---------------------------------------------------------------------------------------
# parameter flips


def test_short_imi_can_start_series():
    # 25 is short (IMI 5); 45, 65, 85 alone are only 3
    lms = lms_at([0, 20, 25, 45, 65, 85])
    assert score_leg_movements(lms)["plm"].sum() == 0
    scored = score_leg_movements(lms, rules_preset(short_imi_can_start_series=True))
    assert plm_onsets(scored) == [25, 45, 65, 85]
    assert scored.loc[scored["onset_s"] == 25, "short_imi"].item()


@pytest.mark.parametrize(
    ("mode", "imi_60", "plms"),
    [
        ("onset", 10.0, [60, 80, 100, 120]),
        ("offset", -2.0, []),
        ("previous_candidate", 20.0, [60, 80, 100, 120]),
    ],
)
def test_imi_after_noncandidate(mode, imi_60, plms):
    scored = score_leg_movements(
        worked_case_noncandidate(), rules_preset(imi_after_noncandidate_from=mode)
    )
    assert scored["imi_s"].iloc[4] == pytest.approx(imi_60)
    assert plm_onsets(scored) == plms


def test_imi_from_previous_candidate_can_rescue_a_short_imi():
    # non-candidate (12 s) at 50, next CLM at 55: 5 s after it but 15 s after the CLM at 40
    lms = pd.concat(
        [lms_at([0, 20, 40, 55, 75, 95, 115]), lms_at([50], duration=12.0)], ignore_index=True
    )
    assert plm_onsets(score_leg_movements(lms)) == []
    matplm_like = rules_preset(imi_after_noncandidate_from="previous_candidate")
    assert plm_onsets(score_leg_movements(lms, matplm_like)) == [55, 75, 95, 115]


def test_min_series_count():
    lms = lms_at([0, 20, 40])
    assert score_leg_movements(lms)["plm"].sum() == 0
    assert score_leg_movements(lms, rules_preset(min_series_count=3))["plm"].sum() == 3


def test_aasm_bilateral_rule_uses_onsets():
    # gap 2 s (not merged by WASM), onsets 3 s apart (one movement by AASM)
    pair = table([(0, 1, "L"), (3, 4, "R")])
    assert len(score_leg_movements(pair, "wasm2016")) == 2
    aasm = score_leg_movements(pair, "aasm")
    assert len(aasm) == 1 and aasm["side"].iloc[0] == "both"
    # overlapping, but onsets 5 s apart: two movements by AASM
    assert len(score_leg_movements(table([(0, 9, "L"), (5, 6, "R")]), "aasm")) == 2


def test_aasm_drops_lms_longer_than_10_s():
    assert score_leg_movements(lms_at([0], duration=10.5), "aasm").empty
    posture = table([(0, 30, "L", "posture")])
    assert len(score_leg_movements(posture, "aasm")) == 1  # other kinds are kept


def test_strict_preset():
    rules = rules_preset("strict")
    assert (rules.max_candidate_lm_s, rules.min_imi_s, rules.max_imi_s) == (5.0, 20.0, 40.0)
    assert score_leg_movements(lms_at([0, 20, 40, 60]), rules)["plm"].all()
    assert not score_leg_movements(lms_at([0, 15, 30, 45]), rules)["plm"].any()
    assert not score_leg_movements(lms_at([0, 20, 40, 60], duration=6.0), rules)["plm"].any()


def test_posture_is_a_non_candidate_that_breaks():
    lms = pd.concat(
        [lms_at([0, 20, 40, 60, 80]), table([(30, 33, "right", "posture")])], ignore_index=True
    )
    scored = score_leg_movements(lms)
    assert scored["kind"].tolist() == ["lm", "lm", "posture", "lm", "lm", "lm"]
    assert scored["candidate"].tolist() == [True, True, False, True, True, True]
    # 0, 20 | posture | 40, 60, 80 (40 is 10 s after the posture onset): runs of 2 and 3
    assert scored["plm"].sum() == 0
    assert scored["imi_s"].iloc[3] == 10.0


def test_posture_merged_with_lm_makes_non_candidate_of_its_kind():
    scored = score_leg_movements(table([(0, 3, "L", "posture"), (1, 2, "R")]))
    assert len(scored) == 1
    assert scored["kind"].iloc[0] == "posture" and not scored["candidate"].iloc[0]


# ---------------------------------------------------------------------------------------
# respiratory, arousal and sleep


def test_respiratory_exclusion_wasm_window_and_recomputed_series():
    lms = lms_at(np.arange(0, 160, 20))  # 0..140, all PLMs
    apnea = pd.DataFrame({"onset_s": [40.0], "duration_s": [18.0]})  # ends at 58
    scored = score_leg_movements(lms, respiratory=apnea)
    # WASM window: 56 to 68.25 s: only the CLM at 60 s
    assert plm_onsets(scored.assign(plm=scored["respiratory"])) == [60]
    assert scored["plm"].sum() == 8
    # removed: 40 -> 80 is 40 s, the run goes on with 7 CLMs
    assert plm_onsets(scored, "plm_nonresp") == [0, 20, 40, 80, 100, 120, 140]
    assert scored["series_id_nonresp"].tolist() == [0, 0, 0, -1, 0, 0, 0, 0]
    broken = score_leg_movements(
        lms, rules_preset(respiratory_clm_handling="break"), respiratory=apnea
    )
    assert plm_onsets(broken, "plm_nonresp") == [80, 100, 120, 140]


def test_respiratory_window_edges():
    apnea = pd.DataFrame({"onset_s": [0.0], "offset_s": [50.0]})  # window 48 .. 60.25
    lms = table([(46, 47.99, "u"), (47, 48, "u"), (60.25, 61, "u"), (60.26, 61, "u")])
    scored = score_leg_movements(lms, respiratory=apnea)
    assert scored["respiratory"].tolist() == [False, True, True, False]


def test_respiratory_window_aasm_spans_the_event():
    lms = lms_at(np.arange(0, 160, 20))
    apnea = pd.DataFrame({"onset_s": [40.5], "duration_s": [17.0]})  # 40.5..57.5
    aasm = score_leg_movements(lms, "aasm", respiratory=apnea)
    assert plm_onsets(aasm.assign(plm=aasm["respiratory"])) == [40]  # 40..41 meets 40.0
    wasm = score_leg_movements(lms, "wasm2016", respiratory=apnea)  # 55.5 .. 67.75
    assert plm_onsets(wasm.assign(plm=wasm["respiratory"])) == [60]


@pytest.mark.parametrize(
    ("arousal", "associated"),
    [
        ((101.4, 105.0), True),  # 0.4 s after the LM
        ((101.5, 105.0), False),  # exactly 0.5 s: not "less than"
        ((95.0, 99.6), True),  # ends 0.4 s before the LM
        ((95.0, 99.5), False),
        ((100.2, 100.4), True),  # inside
        ((90.0, 120.0), True),  # around
    ],
)
def test_arousal_association(arousal, associated):
    scored = score_leg_movements(
        lms_at([100.0]), arousals=pd.DataFrame({"onset_s": [arousal[0]], "offset_s": [arousal[1]]})
    )
    assert scored["arousal"].iloc[0] == associated


def test_in_sleep_by_onset():
    sleep = pd.DataFrame({"onset_s": [0.0, 100.0], "duration_s": [50.0, 100.0]})
    scored = score_leg_movements(lms_at([10, 49.5, 50, 99, 100, 199.9, 200]), sleep=sleep)
    assert scored["in_sleep"].tolist() == [True, True, False, False, True, True, False]
    assert score_leg_movements(lms_at([10]))["in_sleep"].all()  # no sleep table: asleep


# ---------------------------------------------------------------------------------------
# output table, extras, series, summary


def test_output_columns_and_types():
    scored = score_leg_movements(lms_at([0, 20, 40, 60]))
    assert tuple(scored.columns) == SCORED_COLUMNS
    assert scored["series_id"].dtype == np.int64 and scored["candidate"].dtype == bool
    assert math.isnan(scored["imi_s"].iloc[0])
    assert scored.attrs["scoring_rules"] == ScoringRules().to_dict()
    empty = score_leg_movements(lms_at([]))
    assert tuple(empty.columns) == SCORED_COLUMNS and empty.empty


def test_extra_columns_carried_max_for_merged():
    lms = table([(0, 1, "L"), (0.5, 2, "R"), (20, 21, "R")])
    lms["amplitude_g"] = [0.2, 0.7, 0.1]
    lms["count"] = [3, 1, 2]
    lms["stage"] = ["N2", "N3", "N1"]
    scored = score_leg_movements(lms)
    assert scored["amplitude_g"].tolist() == [0.7, 0.1]
    assert scored["count"].tolist() == [3, 2]
    assert scored["stage"].tolist() == ["N2", "N1"]  # the earliest component's value


def test_side_names_normalised():
    scored = score_leg_movements(
        table([(0, 1, "L"), (20, 21, " Right "), (40, 41, "left"), (60, 61, None)])
    )
    assert scored["side"].tolist() == ["left", "right", "left", "unknown"]


def test_plm_series_table():
    lms = pd.concat(
        [
            lms_at([0, 20, 40, 60]),
            table([(20.2, 21.5, "right")]),
            lms_at([300, 330, 360, 390], side="right"),
        ],
        ignore_index=True,
    )
    series = plm_series(score_leg_movements(lms))
    assert series["series_id"].tolist() == [0, 1]
    assert series["n_lms"].tolist() == [4, 4]
    assert series["onset_s"].tolist() == [0, 300]
    assert series["offset_s"].tolist() == [61, 391]
    assert series["mean_imi_s"].tolist() == [20, 30]
    assert series["n_left"].tolist() == [3, 0]
    assert series["n_bilateral"].tolist() == [1, 0]
    assert series["n_right"].tolist() == [0, 4]
    assert plm_series(score_leg_movements(lms_at([0]))).empty


def test_summarize_worked_case():
    scored = score_leg_movements(worked_case_noncandidate())
    summary = summarize(scored, analyzed_s=3600.0)
    assert summary["lm_count"] == 8 and summary["lm_index"] == 8.0
    assert summary["clm_count"] == 7
    assert summary["plm_count"] == 4 and summary["plms_index"] == 4.0
    assert summary["short_imi_count"] == 0
    assert summary["isolated_clm_count"] == 3
    assert summary["periodicity_index"] == pytest.approx(4 / 7)
    # IMIs 20 20 10* 10* 20 20 20 (* touching the non-candidate): runs of good IMIs are
    # 2 and 3 long; only the run of 3 counts
    assert summary["periodicity_index_ferri2006"] == pytest.approx(3 / 7)
    assert summary["ln_imi_mean"] == pytest.approx(math.log(20))
    assert summary["ln_imi_sd"] == pytest.approx(0.0)
    assert summary["plm_series_count"] == 1 and summary["mean_series_length"] == 4
    assert math.isnan(summary["plmw_index"])
    assert summary["severity_band"] == "<15" and not summary["abnormal"]
    assert summary["left_lm_count"] == 8 and summary["bilateral_lm_count"] == 0
    json.dumps(summary)  # plain types only


def test_summarize_sleep_and_wake():
    sleep = pd.DataFrame({"onset_s": [0.0], "duration_s": [50.0]})
    scored = score_leg_movements(lms_at([0, 20, 40, 60, 80, 100]), sleep=sleep)
    summary = summarize(scored, 7200.0, sleep_s=3600.0)
    assert summary["plms_count"] == 3 and summary["plmw_count"] == 3
    assert summary["plms_index"] == 3.0 and summary["plmw_index"] == 3.0
    assert summary["wake_h"] == 1.0
    with pytest.raises(UsageError, match="analyzed_s"):
        summarize(scored, 0.0)


@pytest.mark.parametrize(
    ("n_plm", "band", "abnormal"),
    [
        (14, "<15", False),
        (15, "15-29.9", False),
        (16, "15-29.9", True),
        (30, "30-49.9", True),
        (50, ">=50", True),
    ],
)
def test_severity_bands(n_plm, band, abnormal):
    scored = score_leg_movements(lms_at(np.arange(n_plm) * 20.0))
    summary = summarize(scored, 3600.0)
    assert summary["severity_band"] == band and summary["abnormal"] == abnormal


def test_imi_histograms():
    hist = imi_histograms(score_leg_movements(lms_at([0, 20, 40, 130, 131.5])))
    assert len(hist["imi_edges_s"]) == 46 and hist["imi_edges_s"][-1] == 90
    assert len(hist["ln_imi_edges"]) == 46 and hist["ln_imi_edges"][-1] == pytest.approx(4.5)
    # IMIs 20, 20 (bin 20-22 s), 90 (not < 90), 1.5 (bin 0-2 s)
    assert hist["imi_counts"].sum() == 3
    assert hist["imi_counts"][10] == 2 and hist["imi_counts"][0] == 1
    assert hist["ln_imi_counts"].sum() == 3  # ln 1.5 = 0.41, ln 20 = 3.0
    assert hist["ln_imi_counts"][29] == 2 and hist["ln_imi_counts"][4] == 1


# ---------------------------------------------------------------------------------------
# rules, presets, provenance


def test_presets_and_overrides():
    assert rules_preset() == ScoringRules()
    assert set(PRESETS) >= {"wasm2016", "aasm", "strict"}
    aasm = rules_preset("aasm")
    assert (aasm.min_imi_s, aasm.max_imi_s, aasm.max_lm_s, aasm.bilateral_mode) == (
        5.0,
        90.0,
        10.0,
        "aasm",
    )
    assert (aasm.respiratory_before_s, aasm.respiratory_after_s) == (0.5, 0.5)
    assert rules_preset("aasm", min_series_count=3).min_series_count == 3


def test_unknown_preset_lists_valid_names():
    with pytest.raises(UsageError, match="wasm2017.*wasm2016, aasm, strict"):
        rules_preset("wasm2017")


def test_unknown_override_names_it():
    with pytest.raises(UsageError, match="'min_imi'.*min_imi_s"):
        rules_preset("wasm2016", min_imi=5)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"min_imi_s": -1}, "min_imi_s"),
        ({"min_imi_s": 95.0}, "max_imi_s"),
        ({"bilateral_mode": "both"}, "bilateral_mode"),
        ({"short_imi_can_start_series": "yes"}, "short_imi_can_start_series"),
        ({"min_series_count": 1}, "min_series_count"),
        ({"min_series_count": 4.5}, "min_series_count"),
        ({"max_imi_s": float("nan")}, "max_imi_s"),
        ({"imi_after_noncandidate_from": "end"}, "imi_after_noncandidate_from"),
    ],
)
def test_invalid_rule_values(override, field):
    with pytest.raises(UsageError, match=field):
        rules_preset("wasm2016", **override)


def test_rules_round_trip_through_json():
    for name in PRESETS:
        rules = rules_preset(name)
        again = ScoringRules.from_dict(json.loads(json.dumps(rules.to_dict())))
        assert again == rules
    assert ScoringRules.from_dict({"min_imi_s": 5}).min_imi_s == 5.0
    with pytest.raises(UsageError, match="'colour'"):
        ScoringRules.from_dict({"colour": "red"})


def test_rules_by_name_and_bad_rules_type():
    lms = lms_at([0, 20, 25, 45, 65, 85])
    assert score_leg_movements(lms, "aasm")["plm"].sum() == 6
    with pytest.raises(UsageError, match="preset"):
        score_leg_movements(lms, "nope")
    with pytest.raises(UsageError, match="ScoringRules"):
        score_leg_movements(lms, {"min_imi_s": 5})


# ---------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"onset_s": [0.0], "side": ["L"]}), "missing column.*offset_s"),
        (
            pd.DataFrame({"onset_s": [0.0, np.nan], "offset_s": [1.0, 2.0], "side": "L"}),
            "row 1: onset_s is missing",
        ),
        (
            pd.DataFrame({"onset_s": [0.0, 5.0, 9.0], "offset_s": [1.0, 4.0, 10.0], "side": "L"}),
            "row 1: offset_s 4.0 is before onset_s 5.0",
        ),
        (
            pd.DataFrame({"onset_s": ["0", "x"], "offset_s": [1.0, 2.0], "side": "L"}),
            r"row 1: onset_s is not a number \('x'\)",
        ),
        (
            pd.DataFrame({"onset_s": [0.0, 1.0], "offset_s": [1.0, np.inf], "side": "L"}),
            "row 1: offset_s is infinite",
        ),
        (
            pd.DataFrame({"onset_s": [0.0, 1.0], "offset_s": [1.0, 2.0], "side": ["L", "both"]}),
            "row 1: side 'both'",
        ),
    ],
)
def test_bad_input(frame, message):
    with pytest.raises(InputError, match=message):
        score_leg_movements(frame)


def test_bad_input_not_a_table_and_bad_events():
    with pytest.raises(InputError, match="DataFrame"):
        score_leg_movements([(0, 1, "L")])
    lms = lms_at([0])
    with pytest.raises(InputError, match="respiratory events: needs an offset_s or a duration"):
        score_leg_movements(lms, respiratory=pd.DataFrame({"onset_s": [1.0]}))
    with pytest.raises(InputError, match="arousals: row 0: offset_s"):
        score_leg_movements(lms, arousals=pd.DataFrame({"onset_s": [3.0], "offset_s": [1.0]}))
    with pytest.raises(InputError, match="sleep: row 0: duration_s is negative"):
        score_leg_movements(lms, sleep=pd.DataFrame({"onset_s": [0.0], "duration_s": [-1.0]}))


# ---------------------------------------------------------------------------------------
# an independent reference: one event at a time, straight from the rule text


def reference_score(lms: pd.DataFrame, rules: ScoringRules, respiratory=None) -> pd.DataFrame:
    tol = rules.tolerance_s
    side_of = {"l": "left", "left": "left", "r": "right", "right": "right"}
    side_rank = {"left": 0, "right": 1, "unknown": 2}
    items = []
    for row in lms.itertuples(index=False):
        kind = getattr(row, "kind", "lm")
        duration = row.offset_s - row.onset_s
        if duration < rules.min_lm_s - tol:
            continue
        if rules.max_lm_s is not None and kind == "lm" and duration > rules.max_lm_s + tol:
            continue
        side = side_of.get(str(row.side).lower(), "unknown")
        items.append((row.onset_s, row.offset_s, side, kind))
    items.sort(key=lambda x: (x[0], x[1], side_rank[x[2]], x[3]))

    def too_long(duration, limit, inclusive):
        return duration > limit + tol if inclusive else duration >= limit - tol

    # union-find over pairs of LMs of the two legs that merge
    parent = list(range(len(items)))

    def root(k):
        while parent[k] != k:
            k = parent[k]
        return k

    for a, first in enumerate(items):
        for b in range(a + 1, len(items)):
            second = items[b]
            if {first[2], second[2]} != {"left", "right"}:
                continue
            if rules.drop_long_before_merge and any(
                too_long(x[1] - x[0], rules.max_candidate_lm_s, rules.candidate_lm_max_inclusive)
                for x in (first, second)
            ):
                continue
            if rules.bilateral_mode == "wasm":
                gap = second[0] - first[1]  # second starts no earlier than first
                limit = rules.bilateral_merge_gap_s
                joined = (
                    gap <= limit + tol
                    if rules.bilateral_merge_gap_inclusive
                    else (gap < limit - tol)
                )
            else:
                joined = second[0] - first[0] < rules.aasm_bilateral_onset_s - tol
            if joined:
                parent[root(b)] = root(a)
    groups: dict[int, list] = {}
    for k, item in enumerate(items):
        groups.setdefault(root(k), []).append(item)
    merged = []
    for members in sorted(groups.values(), key=lambda m: items.index(m[0])):
        onset = min(m[0] for m in members)
        offset = max(m[1] for m in members)
        sides = {m[2] for m in members}
        kinds = [m[3] for m in members if m[3] != "lm"]
        if sides == {"left", "right"}:
            candidate = (
                not too_long(
                    offset - onset,
                    rules.max_candidate_bilateral_s,
                    rules.candidate_bilateral_max_inclusive,
                )
                and len(members) <= rules.max_bilateral_components
                and not any(
                    too_long(
                        m[1] - m[0], rules.max_candidate_lm_s, rules.candidate_lm_max_inclusive
                    )
                    for m in members
                )
            )
            side = "both"
        else:
            candidate = not too_long(
                offset - onset, rules.max_candidate_lm_s, rules.candidate_lm_max_inclusive
            )
            side = members[0][2]
        merged.append(
            {
                "onset_s": onset,
                "offset_s": offset,
                "side": side,
                "n_components": len(members),
                "kind": kinds[0] if kinds else "lm",
                "candidate": candidate and not kinds,
            }
        )
    result = pd.DataFrame(
        merged, columns=["onset_s", "offset_s", "side", "n_components", "kind", "candidate"]
    )
    if respiratory is not None:
        resp = []
        for lm in merged:
            hit = False
            for ev in respiratory.itertuples(index=False):
                end = ev.onset_s + ev.duration_s
                anchor = end if rules.respiratory_anchor == "end" else ev.onset_s
                lo, hi = anchor - rules.respiratory_before_s, end + rules.respiratory_after_s
                hit |= lm["onset_s"] <= hi + tol and lo <= lm["offset_s"] + tol
            resp.append(hit and lm["candidate"])
        result["respiratory_clm"] = resp
    imi, short, plm, series = reference_series(merged, rules)
    result["imi_s"], result["short_imi"], result["plm"], result["series_id"] = (
        imi,
        short,
        plm,
        series,
    )
    if respiratory is not None:
        keep = [k for k, r in enumerate(result["respiratory_clm"]) if not r]
        if rules.respiratory_clm_handling == "remove":
            _, _, plm_kept, _ = reference_series([merged[k] for k in keep], rules)
            plm_nonresp = [False] * len(merged)
            for k, p in zip(keep, plm_kept, strict=True):
                plm_nonresp[k] = p
        else:
            demoted = [
                dict(m, candidate=m["candidate"] and not r)
                for m, r in zip(merged, result["respiratory_clm"], strict=True)
            ]
            _, _, plm_nonresp, _ = reference_series(demoted, rules)
        result["plm_nonresp"] = plm_nonresp
    return result


def reference_series(merged, rules):
    tol = rules.tolerance_s
    imis, shorts, plm, series = [], [], [False] * len(merged), [-1] * len(merged)
    runs, run = [], []
    last_candidate = None
    for k, lm in enumerate(merged):
        if k == 0:
            imi = math.nan
        elif not merged[k - 1]["candidate"] and rules.imi_after_noncandidate_from == "offset":
            imi = lm["onset_s"] - merged[k - 1]["offset_s"]
        elif rules.imi_after_noncandidate_from == "previous_candidate" and lm["candidate"]:
            imi = math.nan if last_candidate is None else lm["onset_s"] - last_candidate
        else:
            imi = lm["onset_s"] - merged[k - 1]["onset_s"]
        if lm["candidate"]:
            last_candidate = lm["onset_s"]
        if rules.min_imi_inclusive:
            short = imi < rules.min_imi_s - tol
            above = imi >= rules.min_imi_s - tol
        else:
            short = imi <= rules.min_imi_s + tol
            above = imi > rules.min_imi_s + tol
        below = (
            imi <= rules.max_imi_s + tol
            if rules.max_imi_inclusive
            else (imi < rules.max_imi_s - tol)
        )
        short = bool(short and lm["candidate"])
        imis.append(imi)
        shorts.append(short)
        excluded = k == len(merged) - 1 and not rules.last_lm_completes_series
        if not lm["candidate"] or excluded:
            runs.append(run)
            run = []
        elif run and run[-1] == k - 1 and above and below:
            run.append(k)
        else:
            runs.append(run)
            run = [] if short and not rules.short_imi_can_start_series else [k]
    runs.append(run)
    number = 0
    for members in runs:
        if len(members) >= rules.min_series_count:
            for k in members:
                plm[k], series[k] = True, number
            number += 1
    return imis, shorts, plm, series


# ---------------------------------------------------------------------------------------
# property tests

SIDES = ["left", "right", "unknown", "L", "R"]


@st.composite
def lm_tables(draw, max_size=30):
    n = draw(st.integers(0, max_size))
    # a centisecond grid, so that rule boundaries are hit exactly (up to float noise)
    # or missed by at least 0.01 s, as with real event lists
    onset_cs = draw(st.lists(st.integers(0, 60_000), min_size=n, max_size=n))
    duration_cs = draw(
        st.lists(
            st.one_of(st.integers(30, 1200), st.sampled_from([50, 1000, 1500, 1001])),
            min_size=n,
            max_size=n,
        )
    )
    sides = draw(st.lists(st.sampled_from(SIDES), min_size=n, max_size=n))
    kinds = draw(st.lists(st.sampled_from(["lm"] * 8 + ["posture"]), min_size=n, max_size=n))
    onset = np.array(onset_cs, dtype=float) / 100
    return pd.DataFrame(
        {
            "onset_s": onset,
            "offset_s": onset + np.array(duration_cs, dtype=float) / 100,
            "side": sides,
            "kind": kinds,
            "amplitude": np.arange(n, dtype=float),
        }
    )


@st.composite
def scoring_rules(draw):
    name = draw(st.sampled_from(sorted(PRESETS)))
    flips = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "short_imi_can_start_series": st.booleans(),
                "drop_long_before_merge": st.booleans(),
                "last_lm_completes_series": st.booleans(),
                "imi_after_noncandidate_from": st.sampled_from(
                    ["onset", "offset", "previous_candidate"]
                ),
                "bilateral_merge_gap_inclusive": st.booleans(),
                "min_imi_inclusive": st.booleans(),
                "max_imi_inclusive": st.booleans(),
                "min_series_count": st.integers(2, 5),
                "respiratory_clm_handling": st.sampled_from(["remove", "break"]),
            },
        )
    )
    return rules_preset(name, **flips)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COMPARED = [
    "onset_s",
    "offset_s",
    "side",
    "n_components",
    "kind",
    "candidate",
    "short_imi",
    "plm",
    "series_id",
]


@PROPERTY
@given(lms=lm_tables(), rules=scoring_rules())
def test_matches_reference_scorer(lms, rules):
    apneas = pd.DataFrame({"onset_s": [30.0, 250.0], "duration_s": [20.0, 15.5]})
    scored = score_leg_movements(lms, rules, respiratory=apneas)
    expected = reference_score(lms, rules, respiratory=apneas)
    pd.testing.assert_frame_equal(
        scored[COMPARED].reset_index(drop=True), expected[COMPARED], check_dtype=False
    )
    np.testing.assert_allclose(scored["imi_s"], expected["imi_s"], atol=1e-9)
    assert scored["plm_nonresp"].tolist() == expected["plm_nonresp"].tolist()


@PROPERTY
@given(lms=lm_tables(), rules=scoring_rules())
def test_series_invariants(lms, rules):
    scored = score_leg_movements(lms, rules)
    tol = rules.tolerance_s
    assert scored["onset_s"].is_monotonic_increasing
    assert (scored["duration_s"] >= rules.min_lm_s - tol).all()
    assert scored["plm"].tolist() == (scored["series_id"] >= 0).tolist()
    sizes = scored.loc[scored["plm"], "series_id"].value_counts()
    assert (sizes >= rules.min_series_count).all()
    assert sorted(sizes.index) == list(range(len(sizes)))
    assert not (scored["short_imi"] & ~scored["candidate"]).any()
    series = scored["series_id"].to_numpy()
    for k in np.flatnonzero(scored["plm"]):
        assert scored["candidate"].iloc[k]
        starts_series = k == 0 or series[k - 1] != series[k]
        if not starts_series:
            imi = scored["imi_s"].iloc[k]
            assert rules.min_imi_s - tol <= imi <= rules.max_imi_s + tol
        elif scored["short_imi"].iloc[k]:
            assert rules.short_imi_can_start_series
    assert scored["plm"].sum() <= scored["candidate"].sum() <= len(scored)
    assert scored["n_components"].sum() <= len(lms)


@PROPERTY
@given(lms=lm_tables(), rules=scoring_rules(), shift_cs=st.integers(-(10**6), 10**6))
def test_time_shift_invariance(lms, rules, shift_cs):
    shift = shift_cs / 100 + 10_000.0
    scored = score_leg_movements(lms, rules)
    shifted = score_leg_movements(
        lms.assign(onset_s=lms["onset_s"] + shift, offset_s=lms["offset_s"] + shift), rules
    )
    flags = ["side", "n_components", "candidate", "short_imi", "plm", "series_id"]
    pd.testing.assert_frame_equal(scored[flags], shifted[flags])
    np.testing.assert_allclose(shifted["onset_s"] - shift, scored["onset_s"], atol=1e-6)


@PROPERTY
@given(lms=lm_tables(), rules=scoring_rules(), seed=st.integers(0, 2**32 - 1))
def test_row_order_invariance(lms, rules, seed):
    shuffled = lms.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        score_leg_movements(lms, rules), score_leg_movements(shuffled, rules)
    )


@PROPERTY
@given(lms=lm_tables(), rules=scoring_rules())
def test_left_right_mirror_invariance(lms, rules):
    swap = {"left": "right", "right": "left", "L": "R", "R": "L", "unknown": "unknown"}
    mirrored = score_leg_movements(lms.assign(side=lms["side"].map(swap)), rules)
    scored = score_leg_movements(lms, rules)
    back = {"left": "right", "right": "left", "both": "both", "unknown": "unknown"}
    mirrored = mirrored.assign(side=mirrored["side"].map(back))
    if scored["onset_s"].duplicated().any():
        # Two separate LMs starting at the very same instant are ordered by side name (a
        # documented tie-break), so which one comes "first" for the IMI flips with the
        # mirror. The events themselves must still be the same.
        events = ["onset_s", "offset_s", "side", "n_components", "kind", "amplitude"]
        canon = lambda t: t[events].sort_values(events).reset_index(drop=True)  # noqa: E731
        pd.testing.assert_frame_equal(canon(scored), canon(mirrored))
        return
    pd.testing.assert_frame_equal(scored, mirrored)


@PROPERTY
@given(
    lms=lm_tables(),
    rules=scoring_rules(),
    gap_cs=st.integers(9_001, 100_000),
    duration=st.sampled_from([1.0, 12.0]),
)
def test_lm_far_after_the_end_changes_nothing_before(lms, rules, gap_cs, duration):
    scored = score_leg_movements(lms, rules)
    last = max(lms["offset_s"].max(), lms["onset_s"].max()) if len(lms) else 0.0
    extra = lms_at([last + gap_cs / 100], duration=duration, kind="lm", amplitude=0.0)
    extended = score_leg_movements(pd.concat([lms, extra], ignore_index=True), rules)
    if rules.last_lm_completes_series:
        pd.testing.assert_frame_equal(extended.iloc[: len(scored)], scored)
    else:
        # the LM that was last may now complete its series: PLMs can only be gained
        assert (extended["plm"].iloc[: len(scored)] >= scored["plm"]).all()
    dropped = rules.max_lm_s is not None and duration > rules.max_lm_s  # not an LM (AASM)
    assert len(extended) == len(scored) + (0 if dropped else 1)


# ---------------------------------------------------------------------------------------
# the real patient night


@pytest.fixture(scope="module")
def real_night():
    if not REAL_NIGHT.exists():
        pytest.skip(f"real-night data not found at {REAL_NIGHT} (shared/ beside the repo)")
    return pd.read_csv(REAL_NIGHT)


def test_real_night_wasm2016(real_night):
    scored = score_leg_movements(real_night, "wasm2016")
    summary = summarize(scored, analyzed_s=7.86 * 3600)
    # Regression figures of this scorer (cross-checked against the reference scorer in
    # test_real_night_matches_reference_scorer): 974 monolateral LMs become 673 LMs
    # (255 bilateral), of which 644 are CLMs and 504 PLMs in 36 series.
    assert (summary["lm_count"], summary["clm_count"], summary["plm_count"]) == (673, 644, 504)
    assert summary["bilateral_lm_count"] == 255
    assert summary["plm_series_count"] == 36
    assert summary["short_imi_count"] == 48
    assert summary["severity_band"] == ">=50" and summary["abnormal"]
    assert_real_night_invariants(real_night, scored, summary)


def test_real_night_aasm(real_night):
    scored = score_leg_movements(real_night, "aasm")
    summary = summarize(scored, analyzed_s=7.86 * 3600)
    # 48 monolateral LMs > 10 s are not LMs under AASM; 926 remain
    assert scored["n_components"].sum() == 926
    assert (summary["lm_count"], summary["clm_count"], summary["plm_count"]) == (661, 661, 596)
    assert_real_night_invariants(real_night, scored, summary)


def test_real_night_matplm_2016_reading(real_night):
    """Compare with MATPLM's published output for this night: 682 CLMs and 552 PLMs.

    MATPLM (2016, commit 337b7b9 of rlslabgit/MATPLM) lets a short-IMI CLM start a
    series, drops > 10 s LMs before the bilateral merge, measures IMIs from CLM to CLM,
    and merges LMs of the two legs when their sample ranges, widened by 0.5 s, intersect
    (a gap of exactly 0.5 s merges): the ``matplm2016`` preset. With it the candidate
    LMs agree in number (682) and, checked event by event against the published event
    list, in every onset.

    The PLMs come out 555, three more than published (0.5%). All three follow a pair of
    > 10 s LMs: MATPLM marks the series break caused by a dropped long LM on the *next
    LM of the same leg* (``rLM(find(dur > maxdur) + 1, 9) = 1``), which can be
    later than the next LM in time, whereas pmld breaks the series at the long LM
    itself, where it happened. Emulating that one detail below recovers 552 exactly, so
    the tolerance of 3 PLMs is fully explained; pmld does not adopt the quirk because a
    long LM on one leg would then not end a series until that leg moved again.
    """
    rules = rules_preset("matplm2016")
    scored = score_leg_movements(real_night, rules)
    assert scored["candidate"].sum() == 682
    assert abs(int(scored["plm"].sum()) - 552) <= 3

    # MATPLM's break positions: the next same-leg LM after each dropped > 10 s LM
    breaks = set()
    for _side, leg in real_night.sort_values("onset_s").groupby("side"):
        long_lm = (leg["offset_s"] - leg["onset_s"] > rules.max_candidate_lm_s).to_numpy()
        following = np.flatnonzero(long_lm[:-1] & ~long_lm[1:]) + 1
        for lm in leg.iloc[following].itertuples():
            # the scored CLM that this monolateral LM is part of
            holder = scored[
                (scored["onset_s"] <= lm.onset_s)
                & (scored["offset_s"] >= lm.offset_s)
                & scored["candidate"]
            ]
            breaks.update(holder.index)
    # a merged non-candidate (> 15 s or > 4 components) breaks before the next CLM
    for k in np.flatnonzero(~scored["candidate"] & (scored["n_components"] > 1)):
        later = scored.index[(scored.index > k) & scored["candidate"]]
        breaks.update(later[:1])
    # The CLM series without pmld's own break at each long LM (MATPLM's IMIs are CLM to
    # CLM, so dropping the non-candidates from the sequence is exactly its view), split
    # at MATPLM's break positions instead.
    clms = scored[scored["candidate"]]
    onset = clms["onset_s"].to_numpy()
    imi = np.r_[np.inf, np.diff(onset)]
    starts = (imi > rules.max_imi_s + rules.tolerance_s) | (imi < rules.min_imi_s - 1e-6)
    starts |= clms.index.isin(sorted(breaks))
    run = np.cumsum(starts)
    lengths = np.bincount(run)
    emulated = int((lengths[run] >= rules.min_series_count).sum())
    assert emulated == 552
    assert_real_night_invariants(real_night, scored, summarize(scored, 7.86 * 3600))


def test_real_night_matches_reference_scorer(real_night):
    for name in ("wasm2016", "aasm", "matplm2016"):
        rules = rules_preset(name)
        scored = score_leg_movements(real_night, rules)
        expected = reference_score(real_night, rules)
        pd.testing.assert_frame_equal(
            scored[COMPARED].reset_index(drop=True), expected[COMPARED], check_dtype=False
        )


def assert_real_night_invariants(real_night, scored, summary):
    assert scored["onset_s"].is_monotonic_increasing
    assert scored["n_components"].sum() <= len(real_night)
    assert (scored.loc[scored["side"] == "both", "n_components"] >= 2).all()
    assert summary["plm_count"] <= summary["clm_count"] <= summary["lm_count"] <= len(real_night)
    assert 0.0 <= summary["periodicity_index_ferri2006"] <= 1.0
    assert summary["periodicity_index"] == pytest.approx(
        summary["plm_count"] / summary["clm_count"]
    )
    assert (plm_series(scored)["n_lms"] >= 4).all()
    assert plm_series(scored)["n_lms"].sum() == summary["plm_count"]
    # an RLS-like night: the IMI histogram peaks between 15 and 30 s, and ln(IMI) of
    # 10-90 s IMIs centres there too (ln 15 = 2.7, ln 30 = 3.4)
    hist = imi_histograms(scored)
    peak = hist["imi_edges_s"][np.argmax(hist["imi_counts"])]
    assert 14.0 <= peak < 30.0
    assert math.log(15) <= summary["ln_imi_mean"] <= math.log(35)
    assert (
        summary["left_lm_count"] + summary["right_lm_count"] + summary["bilateral_lm_count"]
        == summary["lm_count"]
    )


def test_identical_movements_with_different_extras_come_out_in_one_order():
    # Found by hypothesis: ties on onset, offset, side and kind used to keep input order.
    lms = pd.DataFrame(
        {"onset_s": [0.0, 0.0], "offset_s": [0.5, 0.5], "side": ["left", "left"],
         "amplitude": [10.0, 9.0]}
    )
    forward = score_leg_movements(lms, rules_preset("aasm"))
    backward = score_leg_movements(lms.iloc[::-1].reset_index(drop=True), rules_preset("aasm"))
    pd.testing.assert_frame_equal(forward, backward)
    assert forward["amplitude"].tolist() == [9.0, 10.0]
