"""Agreement with a reference scoring (pmld.evaluate, ``pmld evaluate``).

Matching properties by hypothesis; every metric on a hand-made case; ICC(2,1) against
Shrout and Fleiss (1979) and hand computations; the Bland-Altman plot; and end to end,
three simulated nights analysed, their true LMs written as BIDS events.tsv references,
and ``pmld evaluate`` run as a user runs it, checked against the Python API.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pmld
from pmld.errors import InputError, UsageError
from pmld.evaluate import (
    EventAgreement,
    PlmAgreement,
    assess_events,
    bland_altman_plot,
    cohen_kappa,
    evaluate_events,
    evaluate_night,
    event_agreement,
    icc_2_1,
    match_events,
    night_agreement,
    plm_agreement,
    pooled_metrics,
    read_reference_lms,
    score_reference,
)
from pmld.io.summary import read_summary
from pmld.simulate import simulate_night, truth_table

HAVE_REFERENCE = importlib.util.find_spec("pmld.io.reference") is not None
needs_reference = pytest.mark.skipif(
    not HAVE_REFERENCE, reason="pmld.io.reference (the reference reader) is not written yet"
)


def events(*spans) -> pd.DataFrame:
    return pd.DataFrame(list(spans), columns=["onset_s", "offset_s"], dtype=float)


def lms(onsets, duration=1.0, side="left") -> pd.DataFrame:
    onsets = np.asarray(onsets, dtype=float)
    return pd.DataFrame({"onset_s": onsets, "offset_s": onsets + duration, "side": side})


# --------------------------------------------------------------------------------------
# matching: properties

span = st.tuples(
    st.floats(0, 60, allow_nan=False).map(lambda x: round(x, 2)),
    st.floats(0, 6, allow_nan=False).map(lambda x: round(x, 2)),
).map(lambda t: (t[0], t[0] + t[1]))
tables = st.lists(span, max_size=9).map(lambda spans: events(*spans))
tolerances = st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0])


def may_pair(ref, det, i, j, tolerance_s) -> bool:
    overlap = min(ref.offset_s[i], det.offset_s[j]) - max(ref.onset_s[i], det.onset_s[j])
    return overlap > -tolerance_s if tolerance_s > 0 else overlap > 0


@settings(max_examples=200, deadline=None)
@given(tables, tables, tolerances)
def test_matching_is_one_to_one_between_events_that_may_pair(ref, det, tolerance_s):
    pairs = match_events(ref, det, tolerance_s=tolerance_s)
    assert pairs.shape[1] == 2
    assert len(set(pairs[:, 0])) == len(pairs) and len(set(pairs[:, 1])) == len(pairs)
    assert all(may_pair(ref, det, i, j, tolerance_s) for i, j in pairs)
    assert pairs[:, 0].tolist() == sorted(pairs[:, 0].tolist())


@settings(max_examples=200, deadline=None)
@given(tables, tables, tolerances)
def test_matching_counts_are_symmetric(ref, det, tolerance_s):
    forward = match_events(ref, det, tolerance_s=tolerance_s)
    backward = match_events(det, ref, tolerance_s=tolerance_s)
    assert len(forward) == len(backward)
    a, b = event_agreement(ref, det, tolerance_s=tolerance_s), event_agreement(
        det, ref, tolerance_s=tolerance_s
    )
    assert a.matched == b.matched
    assert a.sensitivity == pytest.approx(b.ppv, nan_ok=True)
    assert a.f1 == pytest.approx(b.f1, nan_ok=True)


@settings(max_examples=200, deadline=None)
@given(tables, tables, tolerances, tolerances)
def test_a_larger_tolerance_never_matches_fewer_events(ref, det, t1, t2):
    small, large = sorted((t1, t2))
    assert len(match_events(ref, det, tolerance_s=small)) <= len(
        match_events(ref, det, tolerance_s=large)
    )


def brute_force_maximum(ref, det, tolerance_s) -> int:
    edges = [
        (i, j) for i in range(len(ref)) for j in range(len(det))
        if may_pair(ref, det, i, j, tolerance_s)
    ]
    for size in range(min(len(ref), len(det)), 0, -1):
        for chosen in itertools.combinations(edges, size):
            if len({i for i, _ in chosen}) == size and len({j for _, j in chosen}) == size:
                return size
    return 0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(span, max_size=5).map(lambda s: events(*s)),
    st.lists(span, max_size=5).map(lambda s: events(*s)),
    tolerances,
)
def test_matching_pairs_as_many_events_as_possible(ref, det, tolerance_s):
    assert len(match_events(ref, det, tolerance_s=tolerance_s)) == brute_force_maximum(
        ref, det, tolerance_s
    )


# --------------------------------------------------------------------------------------
# matching: hand-made cases


def test_taking_the_largest_overlap_first_would_lose_a_pair():
    # D0 overlaps R0 most (1.0 s), but R0 is also the only partner of D1: greedy
    # largest-overlap-first pairing finds 1 pair, the maximum is 2.
    ref = events((0, 2), (2.5, 3))
    det = events((1, 3), (0, 0.8))
    assert match_events(ref, det).tolist() == [[0, 1], [1, 0]]


def test_among_pairings_of_equal_size_the_larger_overlap_wins():
    ref = events((0, 2))
    det = events((1.5, 2.5), (1, 3))  # overlaps of 0.5 and 1.0 s
    assert match_events(ref, det).tolist() == [[0, 1]]


def test_tolerance_is_a_gap_strictly_below_it():
    ref = events((0, 1))
    assert len(match_events(ref, events((1.5, 2)), tolerance_s=0.5)) == 0  # gap exactly 0.5
    assert len(match_events(ref, events((1.49, 2)), tolerance_s=0.5)) == 1
    assert len(match_events(ref, events((1, 2)), tolerance_s=0.0)) == 0  # touching only
    assert len(match_events(ref, events((0.99, 2)), tolerance_s=0.0)) == 1


def test_event_agreement_by_hand():
    ref = events((0, 1), (10, 12), (20, 21), (40, 41))
    det = events((0.2, 1.1), (9.6, 12.0), (30, 31), (40.4, 41.0), (50, 51), (60, 60.5))
    a = event_agreement(ref, det)
    assert (a.n_reference, a.n_detected, a.matched) == (4, 6, 3)
    assert (a.false_negatives, a.false_positives) == (1, 3)
    assert a.sensitivity == 0.75 and a.ppv == 0.5 and a.f1 == pytest.approx(2 * 3 / 10)
    # onset errors +0.2, -0.4, +0.4; duration errors -0.1, +0.4, -0.4
    onset, duration = np.array([0.2, -0.4, 0.4]), np.array([-0.1, 0.4, -0.4])
    assert a.onset_error_signed_median_s == pytest.approx(0.2)
    assert a.onset_error_signed_mean_s == pytest.approx(onset.mean())
    assert a.onset_error_signed_sd_s == pytest.approx(onset.std(ddof=1))
    assert a.onset_error_abs_median_s == pytest.approx(0.4)
    assert a.onset_error_abs_mean_s == pytest.approx(1.0 / 3)
    assert a.onset_error_abs_sd_s == pytest.approx(np.abs(onset).std(ddof=1))
    assert a.duration_error_signed_median_s == pytest.approx(-0.1)
    assert a.duration_error_signed_mean_s == pytest.approx(duration.mean())
    assert a.duration_error_abs_median_s == pytest.approx(0.4)
    # the names of pmld 0.1 are the absolute medians
    assert a.onset_error_median_s == a.onset_error_abs_median_s
    assert a.duration_error_median_s == a.duration_error_abs_median_s
    assert a.tolerance_s == 0.5
    assert "onset_errors_s" not in a.to_dict() and a.to_dict()["matched"] == 3


def test_event_agreement_without_events_is_nan_not_an_error():
    none = events()
    a = event_agreement(none, events((0, 1)))
    assert a.matched == 0 and math.isnan(a.sensitivity) and a.ppv == 0.0 and a.f1 == 0.0
    b = event_agreement(none, none)
    assert math.isnan(b.f1) and math.isnan(b.onset_error_signed_median_s)


def test_one_pair_has_no_sd():
    a = event_agreement(events((0, 1)), events((0.1, 1)))
    assert a.onset_error_signed_mean_s == pytest.approx(0.1)
    assert math.isnan(a.onset_error_signed_sd_s)


def test_bad_event_tables_are_refused_in_one_line():
    with pytest.raises(InputError, match="missing column"):
        event_agreement(pd.DataFrame({"onset_s": [1.0]}), events((0, 1)))
    with pytest.raises(InputError, match=r"row 1: offset_s is missing \(NaN\)"):
        event_agreement(events((0, 1), (2, np.nan)), events((0, 1)))
    with pytest.raises(InputError, match="before onset_s"):
        match_events(events((3, 1)), events((0, 1)))
    with pytest.raises(UsageError, match="tolerance_s"):
        event_agreement(events((0, 1)), events((0, 1)), tolerance_s=-1)


def test_pooling_adds_counts_and_takes_the_median_over_all_pairs():
    a = event_agreement(events((0, 1), (5, 6)), events((0.1, 1)))
    b = event_agreement(events((0, 1)), events((0.5, 1), (9, 10)))
    pooled = EventAgreement.pooled([a, b])
    assert (pooled.n_reference, pooled.n_detected, pooled.matched) == (3, 3, 2)
    assert pooled.f1 == pytest.approx(4 / 6)
    assert pooled.onset_error_signed_mean_s == pytest.approx(0.3)
    with pytest.raises(UsageError):
        EventAgreement.pooled([a, event_agreement(events((0, 1)), events(), tolerance_s=0)])


# --------------------------------------------------------------------------------------
# kappa and PLM status


def test_cohen_kappa_by_hand():
    # p_o = 35/50 = 0.7; p_e = 25/50 * 30/50 + 25/50 * 20/50 = 0.5; kappa = 0.2 / 0.5
    assert cohen_kappa([[20, 5], [10, 15]]) == pytest.approx(0.4)
    # p_o = 0.6; p_e = 0.6 * 0.7 + 0.4 * 0.3 = 0.54; kappa = 0.06 / 0.46
    assert cohen_kappa([[45, 15], [25, 15]]) == pytest.approx(0.06 / 0.46)
    assert cohen_kappa([[7, 0], [0, 3]]) == 1.0
    assert cohen_kappa([[0, 5], [5, 0]]) == pytest.approx(-1.0)
    assert math.isnan(cohen_kappa([[9, 0], [0, 0]]))  # one category only: undefined
    assert math.isnan(cohen_kappa([[0, 0], [0, 0]]))


def test_plm_agreement_by_hand():
    # reference: a series of 4 (PLMs) and an isolated LM; pmld: the same series one LM
    # longer, the isolated LM, and a false detection
    reference = lms([0, 20, 40, 60, 200])
    detected = lms([0.2, 20.2, 40.2, 60.3, 80.3, 200.1, 500])
    a = plm_agreement(reference, detected, "wasm2016")
    assert (a.both, a.reference_only, a.detected_only, a.neither) == (4, 0, 0, 1)
    assert (a.reference_plm_count, a.detected_plm_count) == (4, 5)
    assert a.percent_agreement == 100.0 and a.kappa == 1.0
    assert a.plm_sensitivity == 1.0 and a.plm_ppv == pytest.approx(0.8)
    assert a.table.tolist() == [[4, 0], [0, 1]]


def test_the_reference_is_scored_by_the_rules_given():
    # plm-scoring.md section 7: onsets 0, 20, 25, 45, 65, 85 s -> WASM 0 PLMs, AASM 6
    reference = lms([0, 20, 25, 45, 65, 85])
    detected = lms([0.1, 20.1, 25.1, 45.1, 65.1, 85.1])
    wasm = plm_agreement(reference, detected, "wasm2016")
    aasm = plm_agreement(reference, detected, pmld.rules_preset("aasm"))
    assert (wasm.reference_plm_count, wasm.neither) == (0, 6)
    assert (aasm.reference_plm_count, aasm.both) == (6, 6)


def test_plm_marks_of_the_reference_replace_the_rescoring():
    reference = lms([0, 20, 40, 60, 200]).assign(plm=[False, True, True, False, False])
    detected = lms([0.2, 20.2, 40.2, 60.3, 200.1])
    a = plm_agreement(reference, detected, "wasm2016")
    # pmld: 0..60 PLMs. Reference marks only 20 and 40.
    assert (a.both, a.reference_only, a.detected_only, a.neither) == (2, 0, 2, 1)
    assert a.reference_plm_count == 2
    # p_o = 3/5, p_e = 2/5 * 4/5 + 3/5 * 1/5 = 11/25 -> (15/25 - 11/25) / (14/25) = 4/14
    assert a.kappa == pytest.approx(4 / 14)


def test_plm_agreement_pools_by_adding_tables():
    a = PlmAgreement.from_counts(4, 1, 0, 5, 5, 4)
    b = PlmAgreement.from_counts(1, 0, 2, 7, 1, 3)
    pooled = PlmAgreement.pooled([a, b])
    assert pooled.table.tolist() == [[5, 1], [2, 12]]
    assert pooled.kappa == pytest.approx(cohen_kappa([[5, 1], [2, 12]]))


# --------------------------------------------------------------------------------------
# ICC(2,1)

# Shrout and Fleiss (1979), Table 2: 6 targets rated by 4 judges. Published: ICC(1,1)
# 0.17, ICC(2,1) 0.29, ICC(3,1) 0.71 (from BMS 11.24, JMS 32.49, EMS 1.02).
SHROUT_FLEISS = [
    [9, 2, 5, 8],
    [6, 1, 3, 2],
    [8, 4, 6, 8],
    [7, 1, 2, 6],
    [10, 5, 6, 9],
    [6, 2, 4, 7],
]


def test_icc_matches_shrout_and_fleiss_table_2():
    assert round(icc_2_1(SHROUT_FLEISS), 2) == 0.29
    # from the published mean squares: (BMS - EMS) / (BMS + 3 EMS + 4 (JMS - EMS) / 6)
    published = (11.24 - 1.02) / (11.24 + 3 * 1.02 + 4 * (32.49 - 1.02) / 6)
    assert icc_2_1(SHROUT_FLEISS) == pytest.approx(published, abs=2e-3)


def test_icc_of_two_raters_by_hand():
    # rows (1,1), (2,3), (3,5): grand mean 2.5; SSR = 2 (1.5^2 + 0 + 1.5^2) = 9, MSR 4.5;
    # column means 2, 3: SSC = 3 (0.25 + 0.25) = 1.5, MSC 1.5; SST = 11.5, SSE = 1,
    # MSE = 0.5. ICC = (4.5 - 0.5) / (4.5 + 0.5 + 2 (1.5 - 0.5) / 3) = 12/17
    assert icc_2_1([1, 2, 3], [1, 3, 5]) == pytest.approx(12 / 17)
    # a constant bias of 1: MSR 10/3, MSC 2, MSE 0 -> (10/3) / (10/3 + 1) = 10/13,
    # while Pearson's r (and ICC(3,1)) would be 1
    assert icc_2_1([1, 2, 3, 4], [2, 3, 4, 5]) == pytest.approx(10 / 13)
    assert icc_2_1([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert icc_2_1(np.column_stack([[1, 2, 3], [1, 3, 5]])) == pytest.approx(12 / 17)


def test_icc_edge_cases():
    assert math.isnan(icc_2_1([1.0], [2.0]))
    assert math.isnan(icc_2_1([3, 3, 3], [3, 3, 3]))
    with pytest.raises(InputError):
        icc_2_1([1, 2], [1, 2, 3])
    with pytest.raises(InputError):
        icc_2_1([1, np.nan], [1, 2])


# --------------------------------------------------------------------------------------
# night level


def known_pairs(bias=3.0, sd=2.0, n=40) -> pd.DataFrame:
    reference = np.linspace(0.0, 60.0, n)
    z = np.sin(np.arange(n) * 1.7)
    z = (z - z.mean()) / z.std(ddof=1)  # mean 0, SD 1 exactly
    return pd.DataFrame(
        {
            "night": [f"n{i}" for i in range(n)],
            "pmld_index": reference + bias + sd * z,
            "reference_index": reference,
        }
    )


def test_night_agreement_recovers_a_known_bias():
    from scipy import stats

    pairs = known_pairs()
    a = night_agreement(pairs)
    assert a.n == 40 and a.n_excluded == 0
    assert a.bias == pytest.approx(3.0) and a.sd_difference == pytest.approx(2.0)
    assert (a.loa_low, a.loa_high) == (pytest.approx(3 - 1.96 * 2), pytest.approx(3 + 1.96 * 2))
    t = stats.t.ppf(0.975, 39)
    assert a.bias_ci_low == pytest.approx(3 - t * 2 / math.sqrt(40))
    assert a.loa_high_ci_high == pytest.approx(3 + 1.96 * 2 + t * math.sqrt(3 * 4 / 40))
    p, r = pairs["pmld_index"], pairs["reference_index"]
    assert a.pearson_r == pytest.approx(np.corrcoef(p, r)[0, 1])
    assert a.spearman_rho == pytest.approx(stats.spearmanr(p, r).statistic)
    assert a.icc_2_1 == pytest.approx(icc_2_1(p, r))
    assert a.icc_2_1 < a.pearson_r  # the bias costs absolute agreement
    assert a.mean_pmld - a.mean_reference == pytest.approx(3.0)
    # categories by hand
    p_ab, r_ab = p > 15, r > 15
    assert a.category_both == int((p_ab & r_ab).sum())
    assert a.category_pmld_only == int((p_ab & ~r_ab).sum()) > 0
    assert a.category_agreement == pytest.approx(100 * float((p_ab == r_ab).mean()))
    table = [[a.category_both, a.category_reference_only],
             [a.category_pmld_only, a.category_neither]]
    assert a.category_kappa == pytest.approx(cohen_kappa(table))
    assert a.category_sensitivity == 1.0  # pmld reads higher: it misses no abnormal night


def test_night_agreement_leaves_out_nights_without_an_index_and_handles_few_nights():
    pairs = known_pairs(n=5)
    pairs.loc[2, "pmld_index"] = np.nan
    a = night_agreement(pairs)
    assert (a.n, a.n_excluded) == (4, 1)
    one = night_agreement(known_pairs(n=5).iloc[:1])
    assert one.n == 1 and math.isnan(one.sd_difference) and math.isnan(one.icc_2_1)
    assert math.isnan(one.pearson_r)
    with pytest.raises(InputError, match="reference_index"):
        night_agreement(pd.DataFrame({"pmld_index": [1.0]}))


def test_bland_altman_plot_is_written(tmp_path):
    png = bland_altman_plot(known_pairs(n=12), tmp_path / "ba.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    svg = bland_altman_plot(known_pairs(n=30), tmp_path / "ba.svg", title="test")
    assert b"<svg" in svg.read_bytes()[:2000]
    with pytest.raises(UsageError, match="png"):
        bland_altman_plot(known_pairs(), tmp_path / "ba.jpg")
    with pytest.raises(UsageError, match="at least 2"):
        bland_altman_plot(known_pairs().iloc[:1], tmp_path / "one.png")
    assert not (tmp_path / "one.png").exists()


def test_bland_altman_plot_names_the_extra_when_matplotlib_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(UsageError, match=r'pip install "pmld\[research\]"'):
        bland_altman_plot(known_pairs(), tmp_path / "ba.png")


# --------------------------------------------------------------------------------------
# one night, in memory


def test_evaluate_events_by_hand():
    reference = lms([0, 20, 40, 60, 200, 900])  # 900 s is outside the window
    detected = pmld.score_leg_movements(lms([0.2, 20.2, 40.2, 60.3, 80.3, 200.1, 500]))
    m = evaluate_events(detected, reference, "wasm2016", 0.2, window_s=(0, 720))
    assert (m["n_reference"], m["n_detected"], m["matched"]) == (5, 7, 5)
    assert m["f1"] == pytest.approx(10 / 12)
    assert (m["plm_both"], m["plm_neither"], m["plm_kappa"]) == (4, 1, 1.0)
    assert (m["reference_plm_count"], m["detected_plm_count"]) == (4, 5)
    assert m["reference_plm_index"] == pytest.approx(20.0)
    assert m["pmld_plm_index"] == pytest.approx(25.0)
    assert m["plm_index_difference"] == pytest.approx(5.0)
    assert m["reference_plm_source"] == "rescored"
    assert all(isinstance(v, int | float | str) for v in m.values())
    given_index = evaluate_events(detected, reference, "wasm2016", 0.2, reference_plm_index=12.5)
    assert given_index["reference_plm_index"] == 12.5
    assert given_index["reference_plm_source"] == "given"
    # without a window the 900 s LM is a miss
    assert evaluate_events(detected, reference, "wasm2016", 0.2)["n_reference"] == 6


def assert_same_metrics(mine: dict, theirs: dict) -> None:
    assert list(mine) == list(theirs)
    for key, value in theirs.items():
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(mine[key], float) and math.isnan(mine[key]), key
        else:
            assert type(mine[key]) is type(value) and mine[key] == value, key


def test_a_reference_scored_once_gives_the_same_metrics_as_scoring_it_each_time():
    night = simulate_night("bilateral", hours=0.5, seed=21, fs_hz=50.0)
    truth = truth_table(night)
    truth = truth[truth["kind"] != "posture"]
    reference = truth[["onset_s", "offset_s", "side"]].reset_index(drop=True)
    marked = reference.assign(plm=np.arange(len(reference)) % 3 > 0)  # its own PLM marks
    no_side = reference[["onset_s", "offset_s"]]
    for rules, window in itertools.product(
        ["wasm2016", "aasm", pmld.rules_preset("wasm2016", min_imi_s=5.0)],
        [None, (120.0, 1500.0)],
    ):
        result = pmld.analyze(night, rules)
        for ref in (reference, marked, no_side):
            scored = score_reference(ref, rules, window_s=window)
            for detected in (result.events, result.monolateral):  # scored, or LMs to score
                for index in (None, 7.5):
                    expected = assess_events(
                        detected, ref, rules, 0.4, window_s=window, reference_plm_index=index
                    )
                    once = assess_events(
                        detected, ref, rules, 0.4, window_s=window, reference_plm_index=index,
                        reference_scored=scored,
                    )
                    assert_same_metrics(once.metrics, expected.metrics)
                    assert_same_metrics(once.events.to_dict(), expected.events.to_dict())
                    assert_same_metrics(once.plm.to_dict(), expected.plm.to_dict())
                mine = evaluate_events(
                    detected, ref, rules, 0.4, window_s=window, reference_scored=scored
                )
                assert_same_metrics(
                    mine, evaluate_events(detected, ref, rules, 0.4, window_s=window)
                )
        assert expected.metrics["n_reference"] > 20


def test_a_reference_scored_with_other_rules_or_window_is_refused():
    reference = lms([0, 20, 40, 60, 200, 900])
    detected = lms([0.2, 20.2, 40.2])
    scored = score_reference(reference, "wasm2016", window_s=(0, 720))
    # the same rules and window in another form are the same
    evaluate_events(detected, reference, pmld.rules_preset("wasm2016"), 0.2, window_s=[0, 720],
                    reference_scored=scored)
    with pytest.raises(UsageError, match="other rules"):
        evaluate_events(detected, reference, "aasm", 0.2, window_s=(0, 720),
                        reference_scored=scored)
    with pytest.raises(UsageError, match="window"):
        evaluate_events(detected, reference, "wasm2016", 0.2, reference_scored=scored)
    with pytest.raises(UsageError, match="score_reference"):
        evaluate_events(detected, reference, "wasm2016", 0.2, window_s=(0, 720),
                        reference_scored=reference)
    with pytest.raises(InputError, match="row 1: offset_s"):
        score_reference(events((0, 1), (5, 4)))


def test_pooled_metrics_add_the_nights():
    first = assess_events(lms([0, 20, 40, 60]), lms([0.1, 20.1, 40.1]), "wasm2016", 0.1)
    second = assess_events(lms([0, 100]), lms([0.1, 100.1, 300]), "wasm2016", 0.1)
    pooled = pooled_metrics([first, second])
    assert pooled["nights"] == 2
    assert (pooled["n_reference"], pooled["n_detected"], pooled["matched"]) == (6, 6, 5)
    assert pooled["plm_detected_only"] == 3  # pmld's 0..60 series against no reference PLM


# --------------------------------------------------------------------------------------
# end to end: three simulated nights

SEEDS = (11, 12, 13)
START_UTC = "2026-01-05T22:30:00+00:00"  # the simulator's default start


def write_events_tsv(truth: pd.DataFrame, path) -> pd.DataFrame:
    """The simulator's true LMs as a BIDS events.tsv; returns what was written."""
    rows = truth[truth["kind"].isin(["lm", "wake_movement"])]
    table = pd.DataFrame(
        {
            "onset": rows["onset_s"].round(3),
            "duration": rows["duration_s"].round(3),
            "trial_type": "LM",
        }
    )
    table.to_csv(path, sep="\t", index=False)
    return table


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    (root / "refs").mkdir()
    nights = []
    for seed in SEEDS:
        night = simulate_night("moderate", hours=0.5, seed=seed)
        result = pmld.analyze(night)
        name = f"night{seed}"
        summary_path = root / f"{name}.plm.h5"
        result.to_hdf5(summary_path)
        written = write_events_tsv(truth_table(night), root / "refs" / f"{name}_events.tsv")
        reference = pd.DataFrame(
            {
                "onset_s": written["onset"],
                "offset_s": written["onset"] + written["duration"],
                "side": "unknown",
            }
        )
        nights.append({"name": name, "summary": summary_path, "reference": reference})
        if seed == SEEDS[0]:  # the same night analysed from "lights off" at 900 s only
            pmld.analyze(night, lights_off_s=900.0).to_hdf5(root / "late.plm.h5")
    pmld.write_raw(simulate_night("moderate", hours=0.05, seed=1), root / "raw.h5")
    return root, nights


def test_evaluate_night_on_simulated_nights(cohort):
    _, nights = cohort
    for night in nights:
        m = evaluate_night(night["summary"], night["reference"])
        summary = read_summary(night["summary"])
        assert m["f1"] > 0.85 and m["sensitivity"] > 0.85, m
        assert abs(m["onset_error_signed_median_s"]) < 0.5
        assert m["pmld_plm_index"] == summary.indices["plm_index"]
        assert m["window_hours"] == pytest.approx(summary.indices["analyzed_hours"])
        assert m["rules"] == "wasm2016"
        assert 0 <= m["plm_percent_agreement"] <= 100
        # identical to the file-free call on the summary's events
        same = evaluate_events(
            summary.events, night["reference"], summary.parameters["rules"],
            summary.indices["analyzed_hours"],
            window_s=(summary.attrs["window_start_s"], summary.attrs["window_stop_s"]),
        )
        assert same["f1"] == m["f1"] and same["plm_kappa"] == m["plm_kappa"]


def run_pmld(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pmld.cli", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def cli_runs(cohort):
    if not HAVE_REFERENCE:
        pytest.skip("pmld.io.reference (the reference reader) is not written yet")
    root, nights = cohort
    summaries = [n["summary"].name for n in nights]
    first_ref = f"refs/{nights[0]['name']}_events.tsv"
    (root / "empty_events.tsv").write_text("onset\tduration\ttrial_type\n")
    (root / "early_events.tsv").write_text(
        "onset\tduration\ttrial_type\n100\t1\tLM\n200\t1.5\tLM\n300\t1\tLM\n"
    )
    (root / "arousals_events.tsv").write_text(
        "onset\tduration\ttrial_type\n100\t5\tarousal\n400\t4\tarousal\n"
    )
    jobs = {
        "json": (*summaries, "--reference", "refs", "--json", "--plot", "ba.png",
                 "-o", "table.csv"),
        "text": (*summaries, "--reference", "refs", "--tolerance", "0.5"),
        "single": (summaries[0], "--reference", first_ref),
        "missing": ("nope.plm.h5", "--reference", "refs"),
        "not_summary": ("raw.h5", "--reference", first_ref),
        "not_overlapping": (summaries[0], "--reference", first_ref, "--offset", "100000"),
        "no_events": (summaries[0], "--reference", "empty_events.tsv"),
        "no_lms": (summaries[0], "--reference", "arousals_events.tsv"),
        "not_in_window": ("late.plm.h5", "--reference", "early_events.tsv"),
        "one_file_many": (*summaries, "--reference", first_ref),
        "bad_plot": (*summaries, "--reference", "refs", "--plot", "ba.jpg"),
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            key: pool.submit(run_pmld, "evaluate", *args, cwd=root) for key, args in jobs.items()
        }
        return root, nights, {key: f.result() for key, f in futures.items()}


@needs_reference
def test_pmld_evaluate_agrees_with_the_python_api(cli_runs):
    root, nights, runs = cli_runs
    run = runs["json"]
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert [n["night"] for n in out["nights"]] == [n["name"] for n in nights]
    evaluations = []
    for row, night in zip(out["nights"], nights, strict=True):
        summary = read_summary(night["summary"])
        ref = read_reference_lms(root / row["reference"], summary)
        api = evaluate_night(summary, ref)
        for key in ("n_reference", "n_detected", "matched", "f1", "sensitivity", "ppv",
                    "plm_kappa", "reference_plm_index", "pmld_plm_index"):
            assert row[key] == pytest.approx(api[key], nan_ok=True), key
        assert row["f1"] > 0.85 and row["sensitivity"] > 0.85
        evaluations.append(pmld.evaluate.assess_night(summary, ref))
    pooled = pooled_metrics(evaluations)
    assert out["pooled"]["matched"] == pooled["matched"]
    assert out["pooled"]["f1"] == pytest.approx(pooled["f1"])
    across = out["across_nights"]
    pairs = pd.DataFrame(
        {
            "pmld_index": [r["pmld_plm_index"] for r in out["nights"]],
            "reference_index": [r["reference_plm_index"] for r in out["nights"]],
        }
    )
    expected = night_agreement(pairs)
    assert across["n"] == 3
    assert across["bias"] == pytest.approx(expected.bias)
    assert across["icc_2_1"] == pytest.approx(expected.icc_2_1, nan_ok=True)
    assert (root / "ba.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(root / "table.csv")
    assert table["f1"].tolist() == pytest.approx([r["f1"] for r in out["nights"]], rel=1e-5)


@needs_reference
def test_pmld_evaluate_prints_one_line_per_night_and_the_summaries(cli_runs):
    _, nights, runs = cli_runs
    for key in ("text", "single"):
        assert runs[key].returncode == 0, runs[key].stderr
    lines = runs["text"].stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == [n["name"] for n in nights]
    assert lines[3].startswith("pooled, 3 nights:") and "F1" in lines[3]
    assert lines[4].startswith("across 3 nights:") and "ICC(2,1)" in lines[4]
    single = runs["single"].stdout.splitlines()
    assert single[0].startswith(nights[0]["name"]) and "night-level" in single[-1]


@needs_reference
@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("missing", "nope.plm.h5"),
        ("not_summary", "not a pmld-summary"),
        ("not_overlapping", "does not overlap the night"),
        ("not_in_window", "analysed window"),
        ("no_events", "no events"),
        ("no_lms", "no leg movements"),
        ("one_file_many", "one file for 3 summaries"),
        ("bad_plot", "ba.jpg"),
    ],
)
def test_pmld_evaluate_refuses_bad_input_in_one_line(cli_runs, key, words):
    root, _, runs = cli_runs
    run = runs[key]
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pmld: ") and words in lines[0], lines
