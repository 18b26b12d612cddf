"""Agreement between detected and reference events.

Event-level agreement uses one-to-one matching by overlap: a detected event and a
reference event can be paired when their spans overlap (optionally widened by a
tolerance), each event is paired at most once, and pairs with the largest overlap are
taken first. Sensitivity = matched / reference, PPV = matched / detected, F1 their
harmonic mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class EventAgreement:
    """Counts and rates of an event-level comparison."""

    n_reference: int
    n_detected: int
    matched: int
    sensitivity: float
    ppv: float
    f1: float
    onset_error_median_s: float
    duration_error_median_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def match_events(
    reference: pd.DataFrame, detected: pd.DataFrame, *, tolerance_s: float = 0.0
) -> np.ndarray:
    """Pair reference and detected events one-to-one by overlap.

    Parameters
    ----------
    reference, detected : DataFrame
        Tables with ``onset_s`` and ``offset_s``.
    tolerance_s : float
        Spans are widened by this much on each side before testing overlap.

    Returns
    -------
    ndarray, shape (k, 2)
        Row indices ``(reference_row, detected_row)`` of the matched pairs (positions,
        not labels), sorted by reference row.
    """
    ref_on = reference["onset_s"].to_numpy(float) - tolerance_s
    ref_off = reference["offset_s"].to_numpy(float) + tolerance_s
    det_on = detected["onset_s"].to_numpy(float)
    det_off = detected["offset_s"].to_numpy(float)
    if ref_on.size == 0 or det_on.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    order = np.argsort(det_on, kind="stable")
    det_on_sorted = det_on[order]
    # Candidates of each reference event: detections starting before its end whose end
    # is after its start. Detections are short, so scan a bounded window of them.
    longest = float(np.max(det_off - det_on)) if det_on.size else 0.0
    lo = np.searchsorted(det_on_sorted, ref_on - longest, side="left")
    hi = np.searchsorted(det_on_sorted, ref_off, side="left")
    counts = hi - lo
    ref_idx = np.repeat(np.arange(ref_on.size), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    det_idx = order[np.repeat(lo, counts) + offsets]
    overlap = np.minimum(ref_off[ref_idx], det_off[det_idx]) - np.maximum(
        ref_on[ref_idx], det_on[det_idx]
    )
    keep = overlap > 0
    ref_idx, det_idx, overlap = ref_idx[keep], det_idx[keep], overlap[keep]
    pairs = []
    used_ref = np.zeros(ref_on.size, bool)
    used_det = np.zeros(det_on.size, bool)
    for k in np.argsort(-overlap, kind="stable"):
        r, d = ref_idx[k], det_idx[k]
        if not used_ref[r] and not used_det[d]:
            used_ref[r] = used_det[d] = True
            pairs.append((r, d))
    out = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    return out


def event_agreement(
    reference: pd.DataFrame, detected: pd.DataFrame, *, tolerance_s: float = 0.0
) -> EventAgreement:
    """Sensitivity, PPV, F1 and timing errors of detected against reference events."""
    pairs = match_events(reference, detected, tolerance_s=tolerance_s)
    n_ref, n_det, m = len(reference), len(detected), len(pairs)
    sensitivity = m / n_ref if n_ref else float("nan")
    ppv = m / n_det if n_det else float("nan")
    f1 = 2 * m / (n_ref + n_det) if n_ref + n_det else float("nan")
    if m:
        r, d = pairs[:, 0], pairs[:, 1]
        onset_err = detected["onset_s"].to_numpy(float)[d] - reference["onset_s"].to_numpy(
            float
        )[r]
        dur_err = (
            detected["offset_s"].to_numpy(float)[d] - detected["onset_s"].to_numpy(float)[d]
        ) - (reference["offset_s"].to_numpy(float)[r] - reference["onset_s"].to_numpy(float)[r])
        onset_med = float(np.median(np.abs(onset_err)))
        dur_med = float(np.median(np.abs(dur_err)))
    else:
        onset_med = dur_med = float("nan")
    return EventAgreement(n_ref, n_det, m, sensitivity, ppv, f1, onset_med, dur_med)
