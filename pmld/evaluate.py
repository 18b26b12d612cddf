"""Agreement between pmld and a reference scoring of leg movements.

Three levels, as validation studies of PLM detectors report them:

1. **Events** (:func:`event_agreement`): detected and reference leg movements (LMs) are
   paired one-to-one (:func:`match_events`); sensitivity, positive predictive value
   (PPV), F1 and the onset and duration errors of the pairs.
2. **PLM classification** (:func:`plm_agreement`): among the paired LMs, whether each
   is a PLM (a member of a PLM series) in the reference and in pmld: a 2x2 table,
   percent agreement and Cohen's kappa [3]_, and the night's PLM counts.
3. **Nights** (:func:`night_agreement`): the PLM index of pmld against the reference's
   across nights: bias and 95% limits of agreement (Bland and Altman [4]_), ICC(2,1)
   (Shrout and Fleiss [5]_), Pearson and Spearman correlation, and agreement on the
   clinical category (PLM index > 15/h [1]_ [2]_).

:func:`evaluate_events` and :func:`evaluate_night` give one flat dict of metrics per
night; :func:`pooled_metrics` pools the event-level counts of many nights;
:func:`bland_altman_plot` draws the night-level comparison. ``docs/agreement.md`` has
every definition and formula.

Matching
--------
A reference LM and a detected LM *may pair* when they overlap or less than
``tolerance_s`` separates the end of one from the start of the other (with
``tolerance_s=0`` they must overlap by more than zero). Among all one-to-one pairings
of events that may pair, the one with the most pairs is taken, and among those the one
with the largest total overlap (a gap counts as a negative overlap). Taking the most
pairs makes the counts symmetric (swapping reference and detected gives the same number
of pairs) and never lets a larger tolerance pair fewer events.

The default tolerance of 0.5 s is the scoring standards' own measure of "together":
WASM 2016 [1]_ associates an LM with an arousal (and merges the LMs of the two legs)
when they overlap or less than 0.5 s separates the end of one from the start of the
other, the same relation with the same 0.5 s; 0.5 s is also the shortest LM and the time
the offset criterion must hold [1]_ [2]_, so two movements closer than that could not be
told apart by the standard.

References
----------
.. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards for
   recording and scoring leg movements in polysomnograms developed by a joint task force
   from the IRLSSG and EURLSSG", Sleep Medicine 26 (2016) 86-95.
.. [2] R. B. Berry et al., "The AASM Manual for the Scoring of Sleep and Associated
   Events", version 2.x, American Academy of Sleep Medicine.
.. [3] J. Cohen, "A coefficient of agreement for nominal scales", Educational and
   Psychological Measurement 20 (1960) 37-46.
.. [4] J. M. Bland and D. G. Altman, "Statistical methods for assessing agreement
   between two methods of clinical measurement", Lancet 327 (1986) 307-310; and
   "Measuring agreement in method comparison studies", Statistical Methods in Medical
   Research 8 (1999) 135-160.
.. [5] P. E. Shrout and J. L. Fleiss, "Intraclass correlations: uses in assessing rater
   reliability", Psychological Bulletin 86 (1979) 420-428; K. O. McGraw and S. P. Wong,
   "Forming inferences about some intraclass correlation coefficients", Psychological
   Methods 1 (1996) 30-46 (ICC(A,1)).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError, PmldError, UsageError

__all__ = [
    "ABNORMAL_PLM_INDEX",
    "DEFAULT_TOLERANCE_S",
    "EventAgreement",
    "NightAgreement",
    "NightEvaluation",
    "PlmAgreement",
    "ScoredReference",
    "assess_events",
    "assess_night",
    "bland_altman_plot",
    "cohen_kappa",
    "evaluate_events",
    "evaluate_night",
    "event_agreement",
    "icc_2_1",
    "match_events",
    "night_agreement",
    "open_reference",
    "plm_agreement",
    "pooled_metrics",
    "read_reference_lms",
    "score_reference",
    "summary_clock",
]

#: Default matching tolerance (s): the WASM 2016 association gap (see the module notes).
DEFAULT_TOLERANCE_S = 0.5

#: PLM index above which a night is abnormal in adults (per hour; AASM, WASM 2016).
ABNORMAL_PLM_INDEX = 15.0

_PLOT_SUFFIXES = (".png", ".pdf", ".svg")


# --------------------------------------------------------------------------------------
# input checks


def _check_tolerance(tolerance_s: Any) -> float:
    if isinstance(tolerance_s, bool) or not isinstance(tolerance_s, int | float | np.number):
        raise UsageError(f"tolerance_s must be a number of seconds, got {tolerance_s!r}")
    value = float(tolerance_s)
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"tolerance_s must be a finite number >= 0, got {tolerance_s!r}")
    return value


def _spans(table: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Onsets and offsets of an event table, checked (InputError naming the row)."""
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"{what} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in ("onset_s", "offset_s") if c not in table.columns]
    if missing:
        raise InputError(
            f"{what}: missing column(s) {', '.join(missing)} (has: "
            f"{', '.join(map(str, table.columns)) or 'no columns'})"
        )
    out = []
    for column in ("onset_s", "offset_s"):
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan
        )
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raw = table[column].iloc[row]
            shown = "missing (NaN)" if pd.isna(raw) else f"{raw!r}, not a finite number"
            raise InputError(f"{what}: row {row}: {column} is {shown}")
        out.append(values)
    onset, offset = out
    backwards = offset < onset
    if backwards.any():
        row = int(np.flatnonzero(backwards)[0])
        raise InputError(
            f"{what}: row {row}: offset_s {offset[row]} is before onset_s {onset[row]}"
        )
    return onset, offset


def _as_rules(rules: Any):
    from .score import ScoringRules, rules_preset

    if rules is None:
        return ScoringRules()
    if isinstance(rules, ScoringRules):
        return rules
    if isinstance(rules, str):
        return rules_preset(rules)
    if isinstance(rules, dict):
        return ScoringRules.from_dict(dict(rules))
    raise UsageError(
        f"rules must be ScoringRules, a preset name or a dict of rules, got {type(rules).__name__}"
    )


# --------------------------------------------------------------------------------------
# matching


def _match(
    ref_on: np.ndarray,
    ref_off: np.ndarray,
    det_on: np.ndarray,
    det_off: np.ndarray,
    tolerance_s: float,
) -> np.ndarray:
    """Maximum-cardinality, then maximum-overlap, one-to-one pairs (see module notes)."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_ref, n_det = ref_on.size, det_on.size
    empty = np.zeros((0, 2), dtype=np.int64)
    if n_ref == 0 or n_det == 0:
        return empty
    # Candidate pairs: detections starting before the reference event's end (+ tolerance)
    # and ending after its start (- tolerance). Detections are sorted by onset, so each
    # reference event scans one block of them; the bounds are widened by a second so that
    # rounding never hides a pair, and the exact test follows.
    order = np.argsort(det_on, kind="stable")
    det_on_sorted = det_on[order]
    longest = float(np.max(det_off - det_on))
    slack = tolerance_s + 1.0
    lo = np.searchsorted(det_on_sorted, ref_on - longest - slack, side="left")
    hi = np.searchsorted(det_on_sorted, ref_off + slack, side="right")
    counts = np.maximum(hi - lo, 0)
    ref_idx = np.repeat(np.arange(n_ref), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    det_idx = order[np.repeat(lo, counts) + offsets]
    # Overlap, symmetric in the two events; negative: the gap between them.
    overlap = np.minimum(ref_off[ref_idx], det_off[det_idx]) - np.maximum(
        ref_on[ref_idx], det_on[det_idx]
    )
    keep = overlap > -tolerance_s if tolerance_s > 0 else overlap > 0
    r, d, w = ref_idx[keep], det_idx[keep], overlap[keep]
    if r.size == 0:
        return empty
    # Pairings are independent across connected groups of events that may pair; most
    # groups are a single pair.
    n = n_ref + n_det
    graph = coo_matrix((np.ones(r.size, dtype=np.int8), (r, n_ref + d)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    group = label[r]
    single = np.bincount(group)[group] == 1
    chosen = [np.column_stack([r[single], d[single]])]
    rest = np.flatnonzero(~single)
    if rest.size:
        rest = rest[np.argsort(group[rest], kind="stable")]
        bounds = np.flatnonzero(np.r_[True, group[rest][1:] != group[rest][:-1]])
        for start, stop in zip(bounds, np.r_[bounds[1:], rest.size], strict=True):
            edges = rest[start:stop]
            rows, r_local = np.unique(r[edges], return_inverse=True)
            cols, d_local = np.unique(d[edges], return_inverse=True)
            # Each pair is worth `big` plus its overlap, with `big` more than all the
            # overlaps can add up to: the best assignment has the most pairs first.
            big = 2.0 * float(np.abs(w[edges]).sum()) + 1.0
            weight = np.zeros((rows.size, cols.size))
            weight[r_local, d_local] = big + w[edges]
            ri, ci = linear_sum_assignment(weight, maximize=True)
            real = weight[ri, ci] > 0  # a zero weight is no pair at all
            chosen.append(np.column_stack([rows[ri[real]], cols[ci[real]]]))
    pairs = np.concatenate(chosen).astype(np.int64).reshape(-1, 2)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def match_events(
    reference: pd.DataFrame, detected: pd.DataFrame, *, tolerance_s: float = 0.0
) -> np.ndarray:
    """Pair reference and detected events one-to-one.

    Two events may pair when they overlap or less than ``tolerance_s`` separates the end
    of one from the start of the other. Of all one-to-one pairings, the one with the
    most pairs is returned, and among those the one with the largest total overlap.

    Parameters
    ----------
    reference, detected : DataFrame
        Tables with ``onset_s`` and ``offset_s`` (seconds).
    tolerance_s : float
        Largest gap (exclusive) between two events that still pair; 0 (the default here)
        asks for a real overlap. :func:`event_agreement` defaults to 0.5 s.

    Returns
    -------
    ndarray, shape (k, 2)
        Row indices ``(reference_row, detected_row)`` of the matched pairs (positions,
        not labels), sorted by reference row.

    Raises
    ------
    InputError
        A missing column, a value that is not a finite number, or an offset before its
        onset.
    """
    tolerance_s = _check_tolerance(tolerance_s)
    ref_on, ref_off = _spans(reference, "reference events")
    det_on, det_off = _spans(detected, "detected events")
    return _match(ref_on, ref_off, det_on, det_off, tolerance_s)


# --------------------------------------------------------------------------------------
# event level


def _stats(values: np.ndarray) -> tuple[float, float, float]:
    """Median, mean and SD (n - 1) of an array; NaN where undefined."""
    if values.size == 0:
        return math.nan, math.nan, math.nan
    sd = float(np.std(values, ddof=1)) if values.size > 1 else math.nan
    return float(np.median(values)), float(np.mean(values)), sd


@dataclass(frozen=True)
class EventAgreement:
    """Counts, rates and timing errors of an event-level comparison.

    Errors are detected minus reference, over the matched pairs: ``onset_error_*`` of
    the onsets, ``duration_error_*`` of the durations; ``signed`` keeps the sign (a
    positive onset error is a late detection), ``abs`` is its absolute value. SDs use
    n - 1. ``onset_error_median_s`` and ``duration_error_median_s`` are the medians of
    the absolute errors (the names of pmld 0.1).
    """

    n_reference: int
    n_detected: int
    matched: int
    sensitivity: float
    ppv: float
    f1: float
    onset_error_median_s: float
    duration_error_median_s: float
    tolerance_s: float = 0.0
    false_negatives: int = 0
    false_positives: int = 0
    onset_error_signed_median_s: float = math.nan
    onset_error_signed_mean_s: float = math.nan
    onset_error_signed_sd_s: float = math.nan
    onset_error_abs_median_s: float = math.nan
    onset_error_abs_mean_s: float = math.nan
    onset_error_abs_sd_s: float = math.nan
    duration_error_signed_median_s: float = math.nan
    duration_error_signed_mean_s: float = math.nan
    duration_error_signed_sd_s: float = math.nan
    duration_error_abs_median_s: float = math.nan
    duration_error_abs_mean_s: float = math.nan
    duration_error_abs_sd_s: float = math.nan
    onset_errors_s: np.ndarray = field(
        default_factory=lambda: np.zeros(0), repr=False, compare=False
    )
    """Signed onset error of every matched pair (for pooling; not in :meth:`to_dict`)."""
    duration_errors_s: np.ndarray = field(
        default_factory=lambda: np.zeros(0), repr=False, compare=False
    )
    """Signed duration error of every matched pair."""

    @classmethod
    def from_counts(
        cls,
        n_reference: int,
        n_detected: int,
        onset_errors_s: np.ndarray,
        duration_errors_s: np.ndarray,
        tolerance_s: float,
    ) -> EventAgreement:
        """Build the rates and error summaries from counts and per-pair errors."""
        onset_err = np.asarray(onset_errors_s, dtype=float)
        dur_err = np.asarray(duration_errors_s, dtype=float)
        matched = int(onset_err.size)
        n_ref, n_det = int(n_reference), int(n_detected)
        o_signed, o_abs = _stats(onset_err), _stats(np.abs(onset_err))
        d_signed, d_abs = _stats(dur_err), _stats(np.abs(dur_err))
        return cls(
            n_reference=n_ref,
            n_detected=n_det,
            matched=matched,
            sensitivity=matched / n_ref if n_ref else math.nan,
            ppv=matched / n_det if n_det else math.nan,
            f1=2 * matched / (n_ref + n_det) if n_ref + n_det else math.nan,
            onset_error_median_s=o_abs[0],
            duration_error_median_s=d_abs[0],
            tolerance_s=float(tolerance_s),
            false_negatives=n_ref - matched,
            false_positives=n_det - matched,
            onset_error_signed_median_s=o_signed[0],
            onset_error_signed_mean_s=o_signed[1],
            onset_error_signed_sd_s=o_signed[2],
            onset_error_abs_median_s=o_abs[0],
            onset_error_abs_mean_s=o_abs[1],
            onset_error_abs_sd_s=o_abs[2],
            duration_error_signed_median_s=d_signed[0],
            duration_error_signed_mean_s=d_signed[1],
            duration_error_signed_sd_s=d_signed[2],
            duration_error_abs_median_s=d_abs[0],
            duration_error_abs_mean_s=d_abs[1],
            duration_error_abs_sd_s=d_abs[2],
            onset_errors_s=onset_err,
            duration_errors_s=dur_err,
        )

    @classmethod
    def pooled(cls, agreements: Iterable[EventAgreement]) -> EventAgreement:
        """Pool nights: counts are added, error summaries are over all pairs.

        Raises
        ------
        UsageError
            No agreements, or agreements made with different tolerances.
        """
        agreements = list(agreements)
        if not agreements:
            raise UsageError("nothing to pool: no event agreements given")
        tolerances = {a.tolerance_s for a in agreements}
        if len(tolerances) > 1:
            raise UsageError(f"cannot pool agreements of different tolerances {sorted(tolerances)}")
        return cls.from_counts(
            sum(a.n_reference for a in agreements),
            sum(a.n_detected for a in agreements),
            np.concatenate([a.onset_errors_s for a in agreements]),
            np.concatenate([a.duration_errors_s for a in agreements]),
            agreements[0].tolerance_s,
        )

    def to_dict(self) -> dict:
        """The numbers as a flat dict (the per-pair error arrays left out)."""
        skip = {"onset_errors_s", "duration_errors_s"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def _pair_errors(ref_on, ref_off, det_on, det_off, pairs) -> tuple[np.ndarray, np.ndarray]:
    r, d = pairs[:, 0], pairs[:, 1]
    onset_err = det_on[d] - ref_on[r]
    duration_err = (det_off[d] - det_on[d]) - (ref_off[r] - ref_on[r])
    return onset_err, duration_err


def event_agreement(
    reference: pd.DataFrame,
    detected: pd.DataFrame,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> EventAgreement:
    """Sensitivity, PPV, F1 and timing errors of detected against reference events.

    Parameters
    ----------
    reference, detected : DataFrame
        Tables with ``onset_s`` and ``offset_s`` (seconds, the same clock).
    tolerance_s : float
        Matching tolerance, see :func:`match_events`. Default 0.5 s, the association gap
        of WASM 2016 [1]_.

    Returns
    -------
    EventAgreement
        Sensitivity = matched / reference events, PPV = matched / detected events,
        F1 = 2 matched / (reference + detected), and the onset and duration errors
        (detected minus reference) of the matched pairs.

    References
    ----------
    .. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards
       for recording and scoring leg movements in polysomnograms", Sleep Medicine 26
       (2016) 86-95.

    Examples
    --------
    >>> import pandas as pd
    >>> ref = pd.DataFrame({"onset_s": [0.0, 30.0], "offset_s": [2.0, 31.0]})
    >>> det = pd.DataFrame({"onset_s": [0.2, 60.0], "offset_s": [2.0, 61.0]})
    >>> a = event_agreement(ref, det)
    >>> (a.matched, a.sensitivity, a.ppv, round(a.onset_error_signed_median_s, 3))
    (1, 0.5, 0.5, 0.2)
    """
    tolerance_s = _check_tolerance(tolerance_s)
    ref_on, ref_off = _spans(reference, "reference events")
    det_on, det_off = _spans(detected, "detected events")
    pairs = _match(ref_on, ref_off, det_on, det_off, tolerance_s)
    onset_err, duration_err = _pair_errors(ref_on, ref_off, det_on, det_off, pairs)
    return EventAgreement.from_counts(
        ref_on.size, det_on.size, onset_err, duration_err, tolerance_s
    )


# --------------------------------------------------------------------------------------
# 2x2 tables and PLM classification


def cohen_kappa(table: Any) -> float:
    """Cohen's kappa of a square contingency table of two raters [1]_.

    ``kappa = (p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed proportion of
    agreement (the diagonal) and ``p_e`` the agreement expected by chance from the
    margins. NaN when the table is empty or ``p_e`` is 1 (both raters put everything in
    the same single category: kappa is undefined).

    References
    ----------
    .. [1] J. Cohen, "A coefficient of agreement for nominal scales", Educational and
       Psychological Measurement 20 (1960) 37-46.

    Examples
    --------
    >>> cohen_kappa([[20, 5], [10, 15]])
    0.4
    """
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise UsageError(f"a kappa table must be square, got shape {t.shape}")
    if (t < 0).any() or not np.isfinite(t).all():
        raise UsageError("a kappa table holds counts: finite and >= 0")
    n = t.sum()
    if n == 0:
        return math.nan
    p_o = np.trace(t) / n
    p_e = float((t.sum(axis=1) / n) @ (t.sum(axis=0) / n))
    if p_e >= 1.0 - 1e-12:
        return math.nan
    return float(round((p_o - p_e) / (1.0 - p_e), 12))


@dataclass(frozen=True)
class PlmAgreement:
    """Agreement on PLM status between reference and pmld.

    ``both``, ``reference_only``, ``detected_only`` and ``neither`` are the 2x2 table of
    the *matched* LMs (PLM in the reference / in pmld); ``percent_agreement`` and
    ``kappa`` are computed from it. ``reference_plm_count`` and ``detected_plm_count``
    count every PLM of the night (matched or not); ``plm_sensitivity`` is the fraction
    of reference PLMs matched to a pmld PLM, ``plm_ppv`` the fraction of pmld PLMs
    matched to a reference PLM.
    """

    both: int
    reference_only: int
    detected_only: int
    neither: int
    reference_plm_count: int
    detected_plm_count: int
    percent_agreement: float
    kappa: float
    plm_sensitivity: float
    plm_ppv: float

    @classmethod
    def from_counts(
        cls,
        both: int,
        reference_only: int,
        detected_only: int,
        neither: int,
        reference_plm_count: int,
        detected_plm_count: int,
    ) -> PlmAgreement:
        n = both + reference_only + detected_only + neither
        table = [[both, reference_only], [detected_only, neither]]
        return cls(
            both=int(both),
            reference_only=int(reference_only),
            detected_only=int(detected_only),
            neither=int(neither),
            reference_plm_count=int(reference_plm_count),
            detected_plm_count=int(detected_plm_count),
            percent_agreement=100.0 * (both + neither) / n if n else math.nan,
            kappa=cohen_kappa(table),
            plm_sensitivity=both / reference_plm_count if reference_plm_count else math.nan,
            plm_ppv=both / detected_plm_count if detected_plm_count else math.nan,
        )

    @classmethod
    def pooled(cls, agreements: Iterable[PlmAgreement]) -> PlmAgreement:
        """Pool nights by adding their tables and counts."""
        agreements = list(agreements)
        if not agreements:
            raise UsageError("nothing to pool: no PLM agreements given")
        keys = (
            "both",
            "reference_only",
            "detected_only",
            "neither",
            "reference_plm_count",
            "detected_plm_count",
        )
        return cls.from_counts(*(sum(getattr(a, k) for a in agreements) for k in keys))

    @property
    def table(self) -> np.ndarray:
        """The 2x2 table: rows reference PLM yes/no, columns pmld PLM yes/no."""
        return np.array(
            [[self.both, self.reference_only], [self.detected_only, self.neither]]
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _score_reference(reference_lms: pd.DataFrame, rules) -> tuple[pd.DataFrame, np.ndarray, str]:
    """Reference LMs scored by pmld's rules; their PLM flags and where those came from.

    A ``plm`` column in the input marks the reference's own PLMs: it is carried through
    the bilateral merge (a merged LM is a PLM when any of its parts is) and used instead
    of pmld's scoring.
    """
    from .score import score_leg_movements

    _spans(reference_lms, "reference leg movements")
    lms = reference_lms
    marks = "plm" in lms.columns
    if marks:
        lms = lms.rename(columns={"plm": "reference_plm"}).assign(
            reference_plm=lambda t: t["reference_plm"].fillna(False).astype(bool)
        )
    if "side" not in lms.columns:
        lms = lms.assign(side="unknown")
    scored = score_leg_movements(lms, rules)
    if marks:
        return scored, scored["reference_plm"].to_numpy(dtype=bool), "reference"
    return scored, scored["plm"].to_numpy(dtype=bool), "rescored"


def _detected_scored(detected_events: pd.DataFrame, rules) -> pd.DataFrame:
    """pmld's events as scored; unscored LMs (no ``plm`` column) are scored by ``rules``."""
    from .score import score_leg_movements

    _spans(detected_events, "detected events")
    if "plm" in detected_events.columns:
        return detected_events
    lms = detected_events if "side" in detected_events else detected_events.assign(side="unknown")
    return score_leg_movements(lms, rules)


def _plm_from_pairs(ref_plm: np.ndarray, det_plm: np.ndarray, pairs: np.ndarray) -> PlmAgreement:
    r = ref_plm[pairs[:, 0]]
    d = det_plm[pairs[:, 1]]
    return PlmAgreement.from_counts(
        int((r & d).sum()),
        int((r & ~d).sum()),
        int((~r & d).sum()),
        int((~r & ~d).sum()),
        int(ref_plm.sum()),
        int(det_plm.sum()),
    )


def plm_agreement(
    reference_lms: pd.DataFrame,
    detected_events: pd.DataFrame,
    rules: Any = None,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> PlmAgreement:
    """Agreement on which leg movements are PLMs.

    Parameters
    ----------
    reference_lms : DataFrame
        The reference's LMs: ``onset_s``, ``offset_s`` and ``side`` (monolateral; missing
        means unknown). They are scored by pmld's scorer with ``rules``
        (:func:`pmld.score.score_leg_movements`: bilateral merge, candidates, series),
        unless the table has a ``plm`` column, which then gives the reference's own PLM
        marks.
    detected_events : DataFrame
        pmld's scored events (``plm`` column, e.g. a summary's ``events``), or LMs to be
        scored with ``rules``.
    rules : ScoringRules, str or dict
        The rules the detected events were scored with (a summary's
        ``parameters['rules']``); default WASM 2016.
    tolerance_s : float
        Matching tolerance (:func:`match_events`).

    Returns
    -------
    PlmAgreement
        The 2x2 table of matched LMs (PLM in reference / in pmld), percent agreement,
        Cohen's kappa, and the night's PLM counts.
    """
    tolerance_s = _check_tolerance(tolerance_s)
    rules = _as_rules(rules)
    scored_ref, ref_plm, _ = _score_reference(reference_lms, rules)
    detected = _detected_scored(detected_events, rules)
    pairs = match_events(scored_ref, detected, tolerance_s=tolerance_s)
    return _plm_from_pairs(ref_plm, detected["plm"].to_numpy(dtype=bool), pairs)


# --------------------------------------------------------------------------------------
# night level


def _icc_from_matrix(ratings: np.ndarray) -> float:
    n, k = ratings.shape
    if n < 2 or k < 2:
        return math.nan
    grand = ratings.mean()
    ss_rows = k * float(((ratings.mean(axis=1) - grand) ** 2).sum())
    ss_cols = n * float(((ratings.mean(axis=0) - grand) ** 2).sum())
    ss_total = float(((ratings - grand) ** 2).sum())
    ss_error = max(ss_total - ss_rows - ss_cols, 0.0)
    ms_rows = ss_rows / (n - 1)
    ms_cols = ss_cols / (k - 1)
    ms_error = ss_error / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n
    if denominator <= 0:
        return math.nan
    return float((ms_rows - ms_error) / denominator)


def icc_2_1(x: Any, y: Any = None) -> float:
    """ICC(2,1): two-way random effects, absolute agreement, single measures.

    Parameters
    ----------
    x : array_like
        The first rater's values for n targets; or, with ``y`` omitted, an (n, k)
        table of k raters.
    y : array_like, optional
        The second rater's values for the same targets.

    Returns
    -------
    float
        ``(MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)`` from the two-way ANOVA
        of the n x k table: MSR between targets (rows), MSC between raters (columns), MSE
        residual (Shrout and Fleiss 1979 [1]_, Case 2; McGraw and Wong 1996 [2]_,
        ICC(A,1)). A systematic difference between raters lowers it (unlike Pearson's r
        or ICC(3,1)). NaN with fewer than two targets or no variance at all.

    Raises
    ------
    InputError
        Values that are not finite numbers, or x and y of different lengths.

    References
    ----------
    .. [1] P. E. Shrout and J. L. Fleiss, "Intraclass correlations: uses in assessing
       rater reliability", Psychological Bulletin 86 (1979) 420-428.
    .. [2] K. O. McGraw and S. P. Wong, "Forming inferences about some intraclass
       correlation coefficients", Psychological Methods 1 (1996) 30-46.

    Examples
    --------
    >>> round(icc_2_1([1, 2, 3, 4], [2, 3, 4, 5]), 4)  # a constant bias of 1: 10/13
    0.7692
    """
    if y is None:
        ratings = np.asarray(x, dtype=float)
        if ratings.ndim != 2:
            raise InputError(
                f"icc_2_1 needs x and y, or an (n, k) table; got shape {ratings.shape}"
            )
    else:
        a, b = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
        if a.size != b.size:
            raise InputError(f"icc_2_1: x has {a.size} values but y has {b.size}")
        ratings = np.column_stack([a, b])
    if not np.isfinite(ratings).all():
        raise InputError("icc_2_1: every value must be a finite number (drop missing nights)")
    return _icc_from_matrix(ratings)


@dataclass(frozen=True)
class NightAgreement:
    """Agreement on a night-level index (the PLM index) across nights.

    Differences are pmld minus reference. ``loa_low``/``loa_high`` are the 95% limits
    of agreement ``bias -/+ 1.96 sd_difference``; the ``*_ci_*`` fields are their 95%
    confidence intervals (t distribution; SE of a limit ``sqrt(3 s^2 / n)``, Bland and
    Altman 1999). ``category_*`` compare the clinical category (index above
    ``category_threshold``): the 2x2 counts, percent agreement, Cohen's kappa, and the
    sensitivity / specificity of pmld's category against the reference's.
    """

    n: int
    n_excluded: int
    mean_pmld: float
    mean_reference: float
    bias: float
    sd_difference: float
    loa_low: float
    loa_high: float
    bias_ci_low: float
    bias_ci_high: float
    loa_low_ci_low: float
    loa_low_ci_high: float
    loa_high_ci_low: float
    loa_high_ci_high: float
    mean_abs_difference: float
    icc_2_1: float
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float
    category_threshold: float
    category_both: int
    category_reference_only: int
    category_pmld_only: int
    category_neither: int
    category_agreement: float
    category_kappa: float
    category_sensitivity: float
    category_specificity: float

    def to_dict(self) -> dict:
        return asdict(self)


def _pairs_arrays(pairs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(pairs, pd.DataFrame):
        raise InputError(f"night pairs must be a pandas DataFrame, got {type(pairs).__name__}")
    missing = [c for c in ("pmld_index", "reference_index") if c not in pairs.columns]
    if missing:
        raise InputError(
            f"night pairs: missing column(s) {', '.join(missing)} (has: "
            f"{', '.join(map(str, pairs.columns)) or 'no columns'})"
        )
    pmld_index = pd.to_numeric(pairs["pmld_index"], errors="coerce").to_numpy(float)
    reference_index = pd.to_numeric(pairs["reference_index"], errors="coerce").to_numpy(float)
    names = (
        pairs["night"].astype(str).to_numpy()
        if "night" in pairs.columns
        else np.arange(len(pairs)).astype(str)
    )
    return names, pmld_index, reference_index


def night_agreement(
    pairs: pd.DataFrame, *, threshold: float = ABNORMAL_PLM_INDEX
) -> NightAgreement:
    """Agreement of pmld's and the reference's PLM index across nights.

    Parameters
    ----------
    pairs : DataFrame
        One row per night: ``pmld_index`` and ``reference_index`` (events per hour), and
        optionally ``night`` (a name). Rows where either index is missing (NaN) are left
        out and counted in ``n_excluded``.
    threshold : float
        The clinical cut-off: a night is abnormal when its index is above it. Default
        15/h (adults; AASM [2]_, WASM 2016 [1]_); 5/h for children.

    Returns
    -------
    NightAgreement
        Bias and 95% limits of agreement (Bland and Altman [3]_), ICC(2,1)
        (:func:`icc_2_1`), Pearson's r and Spearman's rho (:mod:`scipy.stats`) with their
        p values, and agreement on the category. Statistics that need more nights than
        given (an SD needs 2, a correlation 3) are NaN.

    References
    ----------
    .. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards
       for recording and scoring leg movements in polysomnograms", Sleep Medicine 26
       (2016) 86-95.
    .. [2] R. B. Berry et al., "The AASM Manual for the Scoring of Sleep and Associated
       Events", version 2.x, American Academy of Sleep Medicine.
    .. [3] J. M. Bland and D. G. Altman, "Statistical methods for assessing agreement
       between two methods of clinical measurement", Lancet 327 (1986) 307-310.
    """
    from scipy import stats

    _, pmld_all, ref_all = _pairs_arrays(pairs)
    usable = np.isfinite(pmld_all) & np.isfinite(ref_all)
    p, r = pmld_all[usable], ref_all[usable]
    n = int(p.size)
    diff = p - r
    nan = math.nan
    bias = float(diff.mean()) if n else nan
    sd = float(diff.std(ddof=1)) if n > 1 else nan
    if n > 1:
        t = float(stats.t.ppf(0.975, n - 1))
        se_bias = sd / math.sqrt(n)
        se_limit = math.sqrt(3.0 * sd**2 / n)
    else:
        t = se_bias = se_limit = nan
    loa_low, loa_high = bias - 1.96 * sd, bias + 1.96 * sd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input or too few values: NaN below
        if n >= 3 and np.ptp(p) > 0 and np.ptp(r) > 0:
            pearson = stats.pearsonr(p, r)
            spearman = stats.spearmanr(p, r)
            pearson_r, pearson_p = float(pearson.statistic), float(pearson.pvalue)
            spearman_rho, spearman_p = float(spearman.statistic), float(spearman.pvalue)
        else:
            pearson_r = pearson_p = spearman_rho = spearman_p = nan
    icc = icc_2_1(p, r) if n >= 2 else nan
    p_ab, r_ab = p > threshold, r > threshold
    both = int((p_ab & r_ab).sum())
    ref_only = int((~p_ab & r_ab).sum())
    pmld_only = int((p_ab & ~r_ab).sum())
    neither = int((~p_ab & ~r_ab).sum())
    return NightAgreement(
        n=n,
        n_excluded=int((~usable).sum()),
        mean_pmld=float(p.mean()) if n else nan,
        mean_reference=float(r.mean()) if n else nan,
        bias=bias,
        sd_difference=sd,
        loa_low=loa_low,
        loa_high=loa_high,
        bias_ci_low=bias - t * se_bias,
        bias_ci_high=bias + t * se_bias,
        loa_low_ci_low=loa_low - t * se_limit,
        loa_low_ci_high=loa_low + t * se_limit,
        loa_high_ci_low=loa_high - t * se_limit,
        loa_high_ci_high=loa_high + t * se_limit,
        mean_abs_difference=float(np.abs(diff).mean()) if n else nan,
        icc_2_1=icc,
        pearson_r=pearson_r,
        pearson_p=pearson_p,
        spearman_rho=spearman_rho,
        spearman_p=spearman_p,
        category_threshold=float(threshold),
        category_both=both,
        category_reference_only=ref_only,
        category_pmld_only=pmld_only,
        category_neither=neither,
        category_agreement=100.0 * (both + neither) / n if n else nan,
        category_kappa=cohen_kappa([[both, ref_only], [pmld_only, neither]]),
        category_sensitivity=both / (both + ref_only) if both + ref_only else nan,
        category_specificity=neither / (neither + pmld_only) if neither + pmld_only else nan,
    )


def bland_altman_plot(
    pairs: pd.DataFrame,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    label_nights: bool | None = None,
) -> Path:
    """Draw a Bland-Altman plot of the night-level PLM index and save it.

    The difference (pmld minus reference) against the mean of the two, one point per
    night, with the bias and the 95% limits of agreement as horizontal lines [1]_.

    Parameters
    ----------
    pairs : DataFrame
        As for :func:`night_agreement`; at least two nights with both indices.
    path : str or PathLike
        Output file; the format follows the extension: ``.png``, ``.pdf`` or ``.svg``.
    title : str, optional
    label_nights : bool, optional
        Write each night's name beside its point; default when there are at most 12.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    UsageError
        Another extension, fewer than two usable nights, or matplotlib missing (it comes
        with ``pip install "pmld[research]"``).

    References
    ----------
    .. [1] J. M. Bland and D. G. Altman, "Statistical methods for assessing agreement
       between two methods of clinical measurement", Lancet 327 (1986) 307-310.
    """
    path = Path(path)
    check_plot_path(path)
    names, pmld_all, ref_all = _pairs_arrays(pairs)
    usable = np.isfinite(pmld_all) & np.isfinite(ref_all)
    if usable.sum() < 2:
        raise UsageError(
            "a Bland-Altman plot needs at least 2 nights with both indices, got "
            f"{int(usable.sum())}"
        )
    agreement = night_agreement(pairs)
    figure_class = _matplotlib_figure()
    p, r, names = pmld_all[usable], ref_all[usable], names[usable]
    mean, diff = (p + r) / 2.0, p - r
    fig = figure_class(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.75", linewidth=0.8)
    ax.scatter(mean, diff, s=28, color="C0", edgecolor="white", linewidth=0.5, zorder=3)
    lines = (
        (agreement.bias, "-", f"bias {agreement.bias:+.1f}/h"),
        (agreement.loa_high, "--", f"+1.96 SD {agreement.loa_high:+.1f}/h"),
        (agreement.loa_low, "--", f"-1.96 SD {agreement.loa_low:+.1f}/h"),
    )
    for value, style, text in lines:
        ax.axhline(value, color="C3", linestyle=style, linewidth=1.0)
        ax.annotate(
            text, xy=(1.0, value), xycoords=("axes fraction", "data"), xytext=(-4, 3),
            textcoords="offset points", ha="right", va="bottom", fontsize=8, color="C3",
        )
    if label_nights is None:
        label_nights = len(names) <= 12
    if label_nights:
        for x, y, name in zip(mean, diff, names, strict=True):
            ax.annotate(
                str(name), xy=(x, y), xytext=(4, 2), textcoords="offset points", fontsize=7,
                color="0.35",
            )
    spread = max(abs(agreement.loa_low), abs(agreement.loa_high), float(np.abs(diff).max()))
    ax.set_ylim(-1.25 * spread - 0.5, 1.25 * spread + 0.5)
    ax.set_xlabel("mean of pmld and reference PLM index (/h)")
    ax.set_ylabel("pmld - reference PLM index (/h)")
    ax.set_title(
        title
        or f"PLM index, {agreement.n} nights: ICC(2,1) {agreement.icc_2_1:.2f}",
        fontsize=10,
    )
    try:
        fig.savefig(path, format=path.suffix[1:].lower(), dpi=150)
    except OSError as error:
        raise UsageError(f"{path}: cannot write the plot ({error})") from None
    return path


def check_plot_path(path: str | os.PathLike) -> None:
    """Refuse a plot file of an unknown format or in a missing directory (UsageError)."""
    path = Path(path)
    if path.suffix.lower() not in _PLOT_SUFFIXES:
        raise UsageError(
            f"{path}: a plot is written as {', '.join(_PLOT_SUFFIXES)} (by the file's "
            "extension)"
        )
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"{path}: directory {directory} does not exist")
    _matplotlib_figure()


def _matplotlib_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError('plots need matplotlib: pip install "pmld[research]"') from None
    return Figure


# --------------------------------------------------------------------------------------
# one night


@dataclass(frozen=True)
class NightEvaluation:
    """Everything measured on one night: the flat ``metrics`` and the parts to pool."""

    metrics: dict[str, Any]
    events: EventAgreement
    plm: PlmAgreement


def _in_window(table: pd.DataFrame, window_s: tuple[float, float] | None) -> pd.DataFrame:
    if window_s is None:
        return table
    start, stop = window_s
    onset = pd.to_numeric(table["onset_s"], errors="coerce")
    return table[(onset >= start) & (onset < stop)].reset_index(drop=True)


def _flat(events: EventAgreement, plm: PlmAgreement) -> dict[str, Any]:
    out = events.to_dict()
    for key, value in plm.to_dict().items():
        name = key if "plm" in key else f"plm_{key}"
        out[name] = value
    return out


def _check_window(window_s: Any) -> tuple[float, float] | None:
    if window_s is None:
        return None
    start, stop = (float(v) for v in window_s)
    if not (math.isfinite(start) and math.isfinite(stop) and stop > start):
        raise UsageError(f"window_s must be (start, stop) with stop > start, got {window_s}")
    return (start, stop)


@dataclass(frozen=True)
class ScoredReference:
    """A night's reference LMs in an analysis window, scored by pmld's rules: what
    :func:`assess_events` and :func:`evaluate_events` compare pmld's events with.

    Made by :func:`score_reference`; pass it as ``reference_scored=`` to compare many
    detections (e.g. a sweep's parameter combinations) with one reference without
    scoring it again each time.

    Attributes
    ----------
    events : DataFrame
        The scored reference LMs (:func:`pmld.score.score_leg_movements`).
    plm : ndarray of bool
        Which of them are PLMs.
    source : str
        ``'rescored'`` (pmld's scoring) or ``'reference'`` (the reference's own marks).
    rules : ScoringRules
        The rules they were scored with.
    window_s : (float, float) or None
        The analysis window the LMs were taken from (None: all of them).
    onset_s, offset_s : ndarray
        The scored events' onsets and offsets.
    """

    events: pd.DataFrame
    plm: np.ndarray
    source: str
    rules: Any
    window_s: tuple[float, float] | None
    onset_s: np.ndarray
    offset_s: np.ndarray


def _scored_reference(reference_lms: pd.DataFrame, rules, window_s) -> ScoredReference:
    """:func:`score_reference` on arguments already checked."""
    scored_ref, ref_plm, source = _score_reference(_in_window(reference_lms, window_s), rules)
    ref_on, ref_off = _spans(scored_ref, "reference leg movements")
    return ScoredReference(scored_ref, ref_plm, source, rules, window_s, ref_on, ref_off)


def score_reference(
    reference_lms: pd.DataFrame,
    rules: Any = None,
    *,
    window_s: tuple[float, float] | None = None,
) -> ScoredReference:
    """The reference's LMs in ``window_s`` scored with ``rules``, once, for
    ``assess_events(..., reference_scored=)`` / ``evaluate_events``.

    The arguments mean what they mean for :func:`evaluate_events`; the result gives the
    same metrics as scoring the reference inside each call.
    """
    rules = _as_rules(rules)
    window_s = _check_window(window_s)
    _spans(reference_lms, "reference leg movements")
    return _scored_reference(reference_lms, rules, window_s)


def assess_events(
    detected_events: pd.DataFrame,
    reference_lms: pd.DataFrame,
    rules: Any,
    window_hours: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    window_s: tuple[float, float] | None = None,
    reference_plm_index: float | None = None,
    reference_scored: ScoredReference | None = None,
) -> NightEvaluation:
    """Like :func:`evaluate_events`, keeping the parts needed to pool nights."""
    tolerance_s = _check_tolerance(tolerance_s)
    rules = _as_rules(rules)
    window_s = _check_window(window_s)
    if reference_scored is None:
        _spans(reference_lms, "reference leg movements")
    else:
        _check_scored(reference_scored, rules, window_s)
    _spans(detected_events, "detected events")
    detected = _detected_scored(_in_window(detected_events, window_s), rules)
    reference = reference_scored
    if reference is None:
        reference = _scored_reference(reference_lms, rules, window_s)
    ref_plm, source = reference.plm, reference.source
    det_plm = detected["plm"].to_numpy(dtype=bool)
    ref_on, ref_off = reference.onset_s, reference.offset_s
    det_on, det_off = _spans(detected, "detected events")
    pairs = _match(ref_on, ref_off, det_on, det_off, tolerance_s)
    onset_err, duration_err = _pair_errors(ref_on, ref_off, det_on, det_off, pairs)
    events = EventAgreement.from_counts(
        ref_on.size, det_on.size, onset_err, duration_err, tolerance_s
    )
    plm = _plm_from_pairs(ref_plm, det_plm, pairs)
    hours = float(window_hours) if window_hours is not None else math.nan
    per_hour = hours if math.isfinite(hours) and hours > 0 else math.nan
    if reference_plm_index is not None:
        ref_index, source = float(reference_plm_index), "given"
    else:
        ref_index = plm.reference_plm_count / per_hour
    pmld_index = plm.detected_plm_count / per_hour
    metrics = {
        **_flat(events, plm),
        "window_hours": hours,
        "reference_lm_index": events.n_reference / per_hour,
        "pmld_lm_index": events.n_detected / per_hour,
        "reference_plm_index": ref_index,
        "pmld_plm_index": pmld_index,
        "plm_index_difference": pmld_index - ref_index,
        "reference_plm_source": source,
    }
    return NightEvaluation(metrics=metrics, events=events, plm=plm)


def _check_scored(reference: Any, rules, window_s) -> None:
    """A ScoredReference must have been scored with these rules in this window."""
    if not isinstance(reference, ScoredReference):
        raise UsageError(
            "reference_scored must come from score_reference(), got "
            f"{type(reference).__name__}"
        )
    if reference.rules != rules:
        raise UsageError(
            "reference_scored was scored with other rules than the ones given; score the "
            "reference with the same rules (score_reference(reference_lms, rules, ...))"
        )
    if reference.window_s != window_s:
        raise UsageError(
            f"reference_scored was taken from window {reference.window_s}, not from the "
            f"window_s given ({window_s})"
        )


def evaluate_events(
    detected_events: pd.DataFrame,
    reference_lms: pd.DataFrame,
    rules: Any,
    window_hours: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    window_s: tuple[float, float] | None = None,
    reference_plm_index: float | None = None,
    reference_scored: ScoredReference | None = None,
) -> dict[str, Any]:
    """Every per-night agreement metric of detected events against reference LMs.

    Needs no file: the sweep calls it with each parameter combination's events.

    Parameters
    ----------
    detected_events : DataFrame
        pmld's scored events (``onset_s``, ``offset_s``, ``plm``; e.g.
        ``NightAnalysis.events`` or a summary's ``events``). A table without ``plm`` is
        scored with ``rules``.
    reference_lms : DataFrame
        The reference's LMs, ``onset_s``, ``offset_s``, ``side`` in the same clock
        (seconds from the night's start). Scored by pmld's scorer with ``rules`` (merged
        bilateral LMs, candidates, PLM series) unless it has a ``plm`` column of its own
        PLM marks.
    rules : ScoringRules, str or dict
        The rules pmld scored with; the reference is scored with the same.
    window_hours : float
        Hours analysed (the denominator of both PLM indices).
    tolerance_s : float
        Matching tolerance (:func:`match_events`), default 0.5 s.
    window_s : (float, float), optional
        Keep only events with ``start <= onset_s < stop`` (the analysis window), on both
        sides, before the reference is scored.
    reference_plm_index : float, optional
        The reference's own PLM index (e.g. from its report) to use at night level
        instead of the one from the rescored reference.
    reference_scored : ScoredReference, optional
        ``score_reference(reference_lms, rules, window_s=window_s)`` made beforehand:
        the reference is then not scored again (the same metrics, faster when one
        reference is compared with many detections). Its rules and window must be
        ``rules`` and ``window_s`` (UsageError otherwise).

    Returns
    -------
    dict
        The fields of :class:`EventAgreement` (``n_reference``, ``n_detected``,
        ``matched``, ``sensitivity``, ``ppv``, ``f1``, ``false_negatives``,
        ``false_positives``, ``onset_error_{signed,abs}_{median,mean,sd}_s``,
        ``duration_error_...``); of :class:`PlmAgreement` prefixed ``plm_``
        (``plm_both``, ``plm_reference_only``, ``plm_detected_only``, ``plm_neither``,
        ``plm_reference_plm_count``, ``plm_detected_plm_count``,
        ``plm_percent_agreement``, ``plm_kappa``, ``plm_sensitivity``, ``plm_ppv``); and
        ``window_hours``, ``reference_lm_index``, ``pmld_lm_index``,
        ``reference_plm_index``, ``pmld_plm_index``, ``plm_index_difference`` (pmld minus
        reference), ``reference_plm_source`` (``'rescored'``, ``'reference'`` or
        ``'given'``). Numbers are plain floats and ints; undefined ones NaN.
    """
    return assess_events(
        detected_events,
        reference_lms,
        rules,
        window_hours,
        tolerance_s,
        window_s=window_s,
        reference_plm_index=reference_plm_index,
        reference_scored=reference_scored,
    ).metrics


def assess_night(
    summary: Any,
    reference_lms: pd.DataFrame,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    reference_plm_index: float | None = None,
) -> NightEvaluation:
    """Like :func:`evaluate_night`, keeping the parts needed to pool nights."""
    if isinstance(summary, str | os.PathLike):
        from .io.summary import read_summary

        summary = read_summary(summary)
    for name in ("events", "indices", "parameters", "attrs"):
        if not hasattr(summary, name):
            raise UsageError(
                f"evaluate_night needs a summary file or SummaryFile, got {type(summary).__name__}"
            )
    rules = summary.parameters.get("rules")
    if not rules:
        raise InputError(
            "the summary records no scoring rules", path=getattr(summary, "path", None)
        )
    indices = summary.indices
    hours = indices.get("analyzed_hours", indices.get("analyzed_h", math.nan))
    window = (summary.attrs.get("window_start_s"), summary.attrs.get("window_stop_s"))
    window_s = None if None in window else (float(window[0]), float(window[1]))
    result = assess_events(
        summary.events,
        reference_lms,
        rules,
        hours,
        tolerance_s,
        window_s=window_s,
        reference_plm_index=reference_plm_index,
    )
    # The summary's own index is the official one (NaN when pmld could not analyse).
    pmld_index = float(indices.get("plm_index", math.nan))
    metrics = dict(result.metrics)
    metrics["pmld_plm_index"] = pmld_index
    metrics["plm_index_difference"] = pmld_index - metrics["reference_plm_index"]
    metrics["rules"] = str(summary.attrs.get("rules", "custom"))
    return NightEvaluation(metrics=metrics, events=result.events, plm=result.plm)


def evaluate_night(
    summary: Any,
    reference_lms: pd.DataFrame,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    reference_plm_index: float | None = None,
) -> dict[str, Any]:
    """Agreement of one pmld summary with the reference's LMs of the same night.

    Parameters
    ----------
    summary : str, PathLike or SummaryFile
        A pmld-summary file (``NAME.plm.h5``) or one read by
        :func:`pmld.io.summary.read_summary`.
    reference_lms : DataFrame
        The reference's LMs in the night's clock (``onset_s``, ``offset_s``, ``side``;
        :func:`pmld.io.reference.reference_lms` of the aligned reference).
    tolerance_s : float
        Matching tolerance, default 0.5 s.
    reference_plm_index : float, optional
        The reference's own PLM index, used instead of the rescored one.

    Returns
    -------
    dict
        :func:`evaluate_events` on the summary's events, its scoring rules, its analysis
        window (reference LMs outside it are left out) and its analysed hours, with
        ``pmld_plm_index`` the summary's own ``plm_index`` and ``rules`` its preset.
    """
    return assess_night(
        summary, reference_lms, tolerance_s=tolerance_s, reference_plm_index=reference_plm_index
    ).metrics


@dataclass(frozen=True)
class _SummaryClock:
    """The clock of a summarised night: what aligning a reference needs of a Night."""

    start_utc: Any
    duration_s: float
    timezone: str

    @property
    def end_utc(self):
        from datetime import timedelta

        return self.start_utc + timedelta(seconds=self.duration_s)

    @property
    def start_local(self):
        from zoneinfo import ZoneInfo

        return self.start_utc.astimezone(ZoneInfo(self.timezone))


def summary_clock(summary: Any) -> _SummaryClock:
    """A summary's night clock (``start_utc``, ``end_utc``, ``duration_s``, ``timezone``,
    ``start_local``), enough to align a reference on it (:func:`read_reference_lms`)."""
    from .night import as_utc

    attrs = summary.attrs
    try:
        start = as_utc(str(attrs["start_utc"]))
        duration = float(attrs["duration_s"])
    except (KeyError, ValueError, PmldError) as error:
        raise InputError(
            f"the summary's start_utc/duration_s cannot be read ({error})",
            path=getattr(summary, "path", None),
        ) from None
    return _SummaryClock(start, duration, str(attrs.get("timezone") or "UTC"))


def open_reference(
    reference_path: str | os.PathLike,
    *,
    offset_s: float | None = None,
    start_utc: Any = None,
    label_map: dict[str, str] | None = None,
    on_unknown: str = "error",
):
    """Read a reference file with :func:`pmld.io.reference.read_reference`, passing
    ``offset_s``, ``start_utc``, ``label_map`` and ``on_unknown`` on (None: the reader's
    default); the options of ``pmld evaluate`` and ``pmld sweep``.

    Returns
    -------
    pmld.io.reference.Reference
        Not yet aligned on a night (:func:`pmld.io.reference.align_reference`).
    """
    from .io.reference import read_reference

    kwargs: dict[str, Any] = {"label_map": label_map, "on_unknown": on_unknown}
    if offset_s is not None:
        kwargs["offset_s"] = offset_s
    if start_utc is not None:
        kwargs["start_utc"] = start_utc
    return read_reference(reference_path, **kwargs)


def read_reference_lms(
    reference_path: str | os.PathLike,
    summary: Any,
    *,
    offset_s: float | None = None,
    start_utc: Any = None,
    label_map: dict[str, str] | None = None,
    on_unknown: str = "error",
) -> pd.DataFrame:
    """A reference file's leg movements on a summarised night's clock.

    Reads the file with :func:`open_reference` (``offset_s``, ``start_utc``,
    ``label_map`` and ``on_unknown`` are passed on), aligns it on the night of
    ``summary`` (a path or a SummaryFile) and returns
    :func:`pmld.io.reference.reference_lms`: ``onset_s, offset_s, side`` in seconds from
    the night's start, ready for :func:`evaluate_night`.

    Raises
    ------
    InputError
        An unreadable reference, or one that does not overlap the night (one line).
    """
    from .io.reference import align_reference, reference_lms

    if isinstance(summary, str | os.PathLike):
        from .io.summary import read_summary

        summary = read_summary(summary)
    reference = open_reference(
        reference_path,
        offset_s=offset_s,
        start_utc=start_utc,
        label_map=label_map,
        on_unknown=on_unknown,
    )
    return reference_lms(align_reference(reference, summary_clock(summary)))


def pooled_metrics(evaluations: Sequence[NightEvaluation]) -> dict[str, Any]:
    """Event and PLM agreement over several nights pooled (counts added, all pairs).

    Returns the same event-level and ``plm_*`` keys as :func:`evaluate_events`, plus
    ``nights``.
    """
    evaluations = list(evaluations)
    if not evaluations:
        raise UsageError("nothing to pool: no nights given")
    events = EventAgreement.pooled(e.events for e in evaluations)
    plm = PlmAgreement.pooled(e.plm for e in evaluations)
    return {"nights": len(evaluations), **_flat(events, plm)}
