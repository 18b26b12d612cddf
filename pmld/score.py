"""Leg movements -> candidate LMs, IMIs, PLM series and night indices.

This stage is sensor-agnostic: it takes a table of leg movements (LMs), from pmld's
accelerometer detector or from a reference scoring of tibialis EMG, and applies the
clinical scoring rules of the World Association of Sleep Medicine (WASM) 2016
standards [1]_ or of the AASM manual [2]_.

The steps, in order:

1. LMs shorter than :attr:`ScoringRules.min_lm_s` are not LMs and are dropped.
2. LMs of the two legs are merged into bilateral LMs (:func:`merge_bilateral`).
3. Each LM is a candidate LM (CLM) or a non-candidate LM (too long, too many components,
   or of another kind such as a posture change). Non-candidates are kept and break
   series.
4. The inter-movement interval (IMI) is measured onset to onset.
5. PLM series are maximal runs of CLMs whose IMIs lie in range; runs of at least
   :attr:`ScoringRules.min_series_count` CLMs are PLMs.
6. Optionally, CLMs associated with respiratory events are removed and series are
   recomputed; LMs are associated with arousals; LMs are placed in sleep or wake.

Every rule parameter lives in one frozen :class:`ScoringRules`; presets are made by
:func:`rules_preset`. All functions are plain functions over pandas tables: they open no
file and print nothing.

References
----------
.. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards for
   recording and scoring leg movements in polysomnograms developed by a joint task force
   from the International and the European Restless Legs Syndrome Study Groups (IRLSSG
   and EURLSSG)", Sleep Medicine 26 (2016) 86-95.
.. [2] R. B. Berry et al., "The AASM Manual for the Scoring of Sleep and Associated
   Events: Rules, Terminology and Technical Specifications", version 2.x, American
   Academy of Sleep Medicine, Darien, IL.
.. [3] R. Ferri et al., "Computer-assisted detection of nocturnal leg motor activity in
   patients with restless legs syndrome and periodic leg movements during sleep",
   Sleep 29 (2006) 759-769.
.. [4] M. Manconi et al., "An evidence-based recommendation for a new definition of
   respiratory-related leg movements", Sleep 38 (2015) 295-304.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .errors import InputError, UsageError

__all__ = [
    "PRESETS",
    "SCORED_COLUMNS",
    "ScoringRules",
    "imi_histograms",
    "merge_bilateral",
    "plm_series",
    "rules_preset",
    "score_leg_movements",
    "summarize",
]

#: Columns of the table returned by :func:`score_leg_movements`, in order (extra input
#: columns follow them).
SCORED_COLUMNS = (
    "onset_s",
    "offset_s",
    "duration_s",
    "side",
    "n_components",
    "kind",
    "candidate",
    "imi_s",
    "short_imi",
    "plm",
    "series_id",
    "respiratory",
    "arousal",
    "in_sleep",
    "plm_nonresp",
    "series_id_nonresp",
)

_SIDE_ALIASES = {
    "left": "left",
    "l": "left",
    "right": "right",
    "r": "right",
    "unknown": "unknown",
    "u": "unknown",
    "": "unknown",
}
_SIDE_CODES = {"left": 0, "right": 1, "unknown": 2}
_SIDE_NAMES = np.array(["left", "right", "unknown", "both"], dtype=object)
_BOTH = 3

_CHOICES = {
    "bilateral_mode": ("wasm", "aasm"),
    "imi_after_noncandidate_from": ("onset", "offset", "previous_candidate"),
    "respiratory_anchor": ("end", "event"),
    "respiratory_clm_handling": ("remove", "break"),
}

# Fixed interval bounds of the night descriptors (not scoring rules): Ferri 2006 [3]
# periodicity counts 10 < IMI <= 90 s; the ln(IMI) statistics of WASM 2016 [1] use
# 10 <= IMI < 90 s.
_DESCRIPTOR_TOL_S = 1e-6


@dataclass(frozen=True)
class ScoringRules:
    """Every parameter of PLM scoring, with the WASM 2016 defaults.

    Build variants with :func:`rules_preset` (``"wasm2016"``, ``"aasm"``, ``"strict"``,
    ``"matplm2016"``) or :func:`dataclasses.replace`. Invalid values raise
    :class:`~pmld.errors.UsageError` naming the field. All times are seconds.

    Where peer programs read the standards differently, the reading is a parameter; the
    defaults follow WASM 2016 [1]_.

    References
    ----------
    .. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards
       for recording and scoring leg movements in polysomnograms", Sleep Medicine 26
       (2016) 86-95.
    .. [2] R. B. Berry et al., "The AASM Manual for the Scoring of Sleep and Associated
       Events", version 2.x, American Academy of Sleep Medicine.
    .. [3] M. Manconi et al., "An evidence-based recommendation for a new definition of
       respiratory-related leg movements", Sleep 38 (2015) 295-304.
    """

    min_lm_s: float = 0.5
    """Shortest LM (inclusive). Shorter events are not LMs and are dropped.
    WASM 2016 [1] and AASM [2]: 0.5 s."""

    max_lm_s: float | None = None
    """Longest LM (inclusive), or None for no bound. Longer monolateral LMs of kind
    ``'lm'`` are dropped before anything else, so they neither count nor break a series.
    WASM 2016 [1] sets no upper bound (long LMs are kept as non-candidates); AASM [2]
    scores LMs of 0.5-10 s only (preset ``aasm``: 10 s)."""

    max_candidate_lm_s: float = 10.0
    """Longest monolateral LM that can be a candidate. WASM 2016 [1]: 10 s."""

    candidate_lm_max_inclusive: bool = True
    """Whether a monolateral LM of exactly :attr:`max_candidate_lm_s` is a candidate.
    WASM 2016 [1] gives the range as 0.5-10 s; pmld reads it as inclusive."""

    max_candidate_bilateral_s: float = 15.0
    """Longest bilateral LM that can be a candidate. WASM 2016 [1]: 15 s."""

    candidate_bilateral_max_inclusive: bool = True
    """Whether a bilateral LM of exactly :attr:`max_candidate_bilateral_s` is a
    candidate. WASM 2016 [1]: "not longer than 15 s", i.e. inclusive."""

    max_bilateral_components: int = 4
    """Most monolateral LMs a bilateral candidate may be made of. WASM 2016 [1]: 4."""

    bilateral_mode: str = "wasm"
    """How LMs of the two legs become one: ``'wasm'`` merges LMs that overlap or are
    separated by less than :attr:`bilateral_merge_gap_s` (WASM 2016 [1]); ``'aasm'``
    counts LMs of the two legs whose onsets are less than
    :attr:`aasm_bilateral_onset_s` apart as one movement (AASM [2])."""

    bilateral_merge_gap_s: float = 0.5
    """Offset-to-onset gap below which LMs of the two legs merge (``'wasm'`` mode).
    WASM 2016 [1]: 0.5 s."""

    bilateral_merge_gap_inclusive: bool = False
    """Whether a gap of exactly :attr:`bilateral_merge_gap_s` merges. WASM 2016 [1]
    says "less than 0.5 s": not inclusive. MATPLM (2016) merges at exactly 0.5 s."""

    aasm_bilateral_onset_s: float = 5.0
    """Onset-to-onset distance below which LMs of the two legs are one movement
    (``'aasm'`` mode). AASM [2]: 5 s."""

    drop_long_before_merge: bool = False
    """Whether monolateral LMs longer than :attr:`max_candidate_lm_s` are kept out of
    the bilateral merge (each stays a non-candidate of its own, and the other leg's LM
    can then be a monolateral candidate). WASM 2016 [1] merges first and then makes a
    bilateral LM with a component > 10 s a non-candidate (False); MATPLM (2016) drops
    them first (True)."""

    min_imi_s: float = 10.0
    """Shortest IMI inside a PLM series. WASM 2016 [1]: 10 s; AASM [2]: 5 s."""

    min_imi_inclusive: bool = True
    """Whether an IMI of exactly :attr:`min_imi_s` is inside. WASM 2016 [1]: 10-90 s,
    inclusive."""

    max_imi_s: float = 90.0
    """Longest IMI inside a PLM series. WASM 2016 [1] and AASM [2]: 90 s."""

    max_imi_inclusive: bool = True
    """Whether an IMI of exactly :attr:`max_imi_s` is inside. WASM 2016 [1] and
    AASM [2]: inclusive."""

    min_series_count: int = 4
    """Fewest consecutive CLMs that make a PLM series. WASM 2016 [1] and AASM [2]: 4."""

    short_imi_can_start_series: bool = False
    """Whether a CLM whose IMI is shorter than :attr:`min_imi_s` may be the first LM of
    a series. WASM 2016 [1]: it ends a series and is never a PLM (False). MATPLM (2016)
    lets it start the next series (True)."""

    imi_after_noncandidate_from: str = "onset"
    """Where the IMI of the LM that follows a non-candidate LM starts: ``'onset'`` of
    that non-candidate (WASM 2016 [1]: IMI is onset to onset from the previous LM of any
    kind), its ``'offset'``, or the onset of the ``'previous_candidate'`` (MATPLM 2016,
    which measures IMIs between CLMs only; the non-candidate still breaks the series)."""

    last_lm_completes_series: bool = True
    """Whether the last LM of the recording may be a member of a series like any other
    (WASM 2016 [1]). False reproduces a peer program that leaves it out, which loses a
    whole 4-LM series at the end of a night."""

    respiratory_anchor: str = "end"
    """What the respiratory exclusion window is built around: the ``'end'`` of the
    apnea/hypopnea (WASM 2016 [1], after Manconi 2015 [3]) or the whole ``'event'``
    from its onset to its end (AASM [2])."""

    respiratory_before_s: float = 2.0
    """Start of the respiratory window before its anchor. WASM 2016 [1]: 2.0 s before
    the event end; AASM [2]: 0.5 s before the event onset."""

    respiratory_after_s: float = 10.25
    """End of the respiratory window after the event end. WASM 2016 [1]: 10.25 s;
    AASM [2]: 0.5 s."""

    respiratory_clm_handling: str = "remove"
    """How respiratory-related CLMs are treated in the second (``*_nonresp``) pass:
    ``'remove'`` them and recompute IMIs and series without them (WASM 2016 [1]), or
    keep them as non-candidate LMs that ``'break'`` a series."""

    arousal_gap_s: float = 0.5
    """An LM and an arousal are associated when they overlap or less than this separates
    the end of one from the onset of the other. WASM 2016 [1] and AASM [2]: 0.5 s."""

    tolerance_s: float = 1e-6
    """Tolerance of every time comparison, so that 90.000000001 s from floating-point
    arithmetic counts as 90 s."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _check_field(f.name, value))
        if self.max_imi_s <= self.min_imi_s:
            raise UsageError(
                f"max_imi_s ({self.max_imi_s}) must be greater than min_imi_s ({self.min_imi_s})"
            )
        if self.max_candidate_lm_s < self.min_lm_s:
            raise UsageError(
                f"max_candidate_lm_s ({self.max_candidate_lm_s}) must not be less than "
                f"min_lm_s ({self.min_lm_s})"
            )
        if self.max_lm_s is not None and self.max_lm_s < self.min_lm_s:
            raise UsageError(
                f"max_lm_s ({self.max_lm_s}) must not be less than min_lm_s ({self.min_lm_s})"
            )

    def to_dict(self) -> dict[str, Any]:
        """The rules as a JSON-able dict, for provenance; :meth:`from_dict` reverses it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScoringRules:
        """Rebuild rules from :meth:`to_dict` output. Missing keys take the defaults.

        Raises
        ------
        UsageError
            If a key is not a rule name or a value is invalid.
        """
        if not isinstance(values, dict):
            raise UsageError(f"scoring rules must be a dict, got {type(values).__name__}")
        unknown = sorted(set(values) - set(_FIELD_NAMES))
        if unknown:
            raise UsageError(
                f"unknown scoring rule(s) {', '.join(map(repr, unknown))}; valid names: "
                f"{', '.join(_FIELD_NAMES)}"
            )
        return cls(**values)


_FIELD_NAMES = tuple(f.name for f in fields(ScoringRules))
_BOOL_FIELDS = {f.name for f in fields(ScoringRules) if f.type == "bool"}
_INT_FIELDS = {"max_bilateral_components", "min_series_count"}
_NONNEG_FIELDS = {
    "tolerance_s",
    "respiratory_before_s",
    "respiratory_after_s",
    "arousal_gap_s",
    "bilateral_merge_gap_s",
}


def _check_field(name: str, value: Any) -> Any:
    """Validate and normalise one rule value; raise UsageError naming the field."""
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise UsageError(
                f"scoring rule {name} must be one of {', '.join(_CHOICES[name])}, got {value!r}"
            )
        return value
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool | np.bool_):
            raise UsageError(f"scoring rule {name} must be true or false, got {value!r}")
        return bool(value)
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise UsageError(f"scoring rule {name} must be an integer, got {value!r}")
        lowest = 2 if name == "min_series_count" else 1
        if value < lowest:
            raise UsageError(f"scoring rule {name} must be at least {lowest}, got {value}")
        return int(value)
    if name == "max_lm_s" and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise UsageError(f"scoring rule {name} must be a number of seconds, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise UsageError(f"scoring rule {name} must be finite, got {value}")
    if name in _NONNEG_FIELDS:
        if value < 0:
            raise UsageError(f"scoring rule {name} must not be negative, got {value}")
    elif value <= 0:
        raise UsageError(f"scoring rule {name} must be positive, got {value}")
    return value


#: Preset rule sets: name -> (description, overrides of the WASM 2016 defaults).
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "wasm2016": (
        "WASM 2016 standards (Ferri et al. 2016), the default",
        {},
    ),
    "aasm": (
        "AASM manual v2.x: LMs 0.5-10 s, IMI 5-90 s, >= 4 in a row, bilateral LMs by "
        "onsets < 5 s apart, LMs from 0.5 s before to 0.5 s after a respiratory event "
        "excluded",
        {
            "max_lm_s": 10.0,
            "min_imi_s": 5.0,
            "bilateral_mode": "aasm",
            "respiratory_anchor": "event",
            "respiratory_before_s": 0.5,
            "respiratory_after_s": 0.5,
        },
    ),
    "strict": (
        "strict research variant, not a clinical standard: candidates of 0.5-5 s (the "
        "duration criterion used before ASDA 1993 extended it to 10 s) recurring every "
        "20-40 s (the typical PLM period, used here as the IMI range)",
        {
            "max_candidate_lm_s": 5.0,
            "max_candidate_bilateral_s": 5.0,
            "min_imi_s": 20.0,
            "max_imi_s": 40.0,
        },
    ),
    "matplm2016": (
        "the reading of the 2016 MATPLM scorer (Johns Hopkins RLS lab): a short-IMI CLM "
        "may start a series, > 10 s LMs are dropped before the bilateral merge, IMIs run "
        "from CLM to CLM, a gap of exactly 0.5 s merges",
        {
            "short_imi_can_start_series": True,
            "drop_long_before_merge": True,
            "imi_after_noncandidate_from": "previous_candidate",
            "bilateral_merge_gap_inclusive": True,
        },
    ),
}


def rules_preset(name: str = "wasm2016", **overrides: Any) -> ScoringRules:
    """Scoring rules of a named preset, with optional overrides.

    Parameters
    ----------
    name : str
        ``'wasm2016'`` (default; Ferri et al. 2016 [1]_), ``'aasm'`` (AASM manual [2]_),
        ``'strict'`` (candidates of 0.5-5 s every 20-40 s) or ``'matplm2016'`` (the
        reading of the 2016 MATPLM scorer [3]_, for comparison with its published
        output; not a standard).
    **overrides
        Any :class:`ScoringRules` field, e.g. ``min_series_count=3``.

    Returns
    -------
    ScoringRules

    Raises
    ------
    UsageError
        For an unknown preset, an unknown override name or an invalid value; the
        message lists the valid names.

    References
    ----------
    .. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards
       for recording and scoring leg movements in polysomnograms", Sleep Medicine 26
       (2016) 86-95.
    .. [2] R. B. Berry et al., "The AASM Manual for the Scoring of Sleep and Associated
       Events", version 2.x, American Academy of Sleep Medicine.
    .. [3] MATPLM, Johns Hopkins RLS lab, 2016 (github.com/rlslabgit/MATPLM,
       ``candidate_lms_rev1.m`` and ``periodic_lms.m``).

    Examples
    --------
    >>> rules_preset("aasm").min_imi_s
    5.0
    >>> rules_preset("wasm2016", short_imi_can_start_series=True).short_imi_can_start_series
    True
    """
    if name not in PRESETS:
        raise UsageError(f"unknown scoring preset {name!r}; valid presets: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(_FIELD_NAMES))
    if unknown:
        raise UsageError(
            f"unknown scoring rule(s) {', '.join(map(repr, unknown))}; valid names: "
            f"{', '.join(_FIELD_NAMES)}"
        )
    return replace(ScoringRules(), **{**PRESETS[name][1], **overrides})


# --------------------------------------------------------------------------------------
# input validation


def _numeric_column(frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """A finite float64 array of ``frame[column]``, or InputError naming the row."""
    series = frame[column]
    if not (
        pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
    ):
        coerced = pd.to_numeric(series, errors="coerce")
        bad = coerced.isna().to_numpy() & series.notna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{what}: row {row}: {column} is not a number ({series.iloc[row]!r})")
        series = coerced
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(values)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        problem = "missing (NaN)" if np.isnan(values[row]) else "infinite"
        raise InputError(f"{what}: row {row}: {column} is {problem}")
    return values


def _require_columns(frame: Any, required: tuple[str, ...], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(
            f"{what}: missing column(s) {', '.join(missing)} (has: "
            f"{', '.join(map(str, frame.columns)) or 'no columns'})"
        )


def _side_codes(column: pd.Series) -> np.ndarray:
    # factorizing a plain object array is about twice as fast as a pandas string column
    codes, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=True)
    lookup = np.empty(len(uniques) + 1, dtype=np.int8)
    lookup[-1] = _SIDE_CODES["unknown"]  # a missing side is an unknown side
    for k, value in enumerate(uniques):
        name = _SIDE_ALIASES.get(str(value).strip().lower())
        if name is None:
            row = int(np.flatnonzero(codes == k)[0])
            raise InputError(
                f"leg movements: row {row}: side {value!r} is not one of left, right, "
                "unknown (or L, R); give monolateral LMs, pmld merges bilateral ones"
            )
        lookup[k] = _SIDE_CODES[name]
    return lookup[codes]


def _kind_codes(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and their (sorted) names for the ``kind`` column ('lm' if absent).

    Codes follow the sorted names, not the input order, so that ties sort the same
    whatever the order of the rows.
    """
    if "kind" not in frame.columns:
        return np.zeros(len(frame), dtype=np.int64), np.array(["lm"], dtype=object)
    codes, uniques = pd.factorize(frame["kind"].to_numpy(dtype=object), use_na_sentinel=True)
    # a missing kind is the default kind (e.g. after concatenating tables without one)
    spelled = [str(u).strip().lower() for u in uniques] + ["lm"]
    names, canonical = np.unique(np.array(spelled, dtype=str), return_inverse=True)
    return canonical[codes].astype(np.int64), names.astype(object)


def _event_spans(events: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop of events given by onset_s and offset_s or duration_s."""
    _require_columns(events, ("onset_s",), what)
    start = _numeric_column(events, "onset_s", what)
    if "offset_s" in events.columns:
        stop = _numeric_column(events, "offset_s", what)
    elif "duration_s" in events.columns:
        duration = _numeric_column(events, "duration_s", what)
        if (duration < 0).any():
            row = int(np.flatnonzero(duration < 0)[0])
            raise InputError(f"{what}: row {row}: duration_s is negative")
        stop = start + duration
    else:
        raise InputError(f"{what}: needs an offset_s or a duration_s column")
    if (stop < start).any():
        row = int(np.flatnonzero(stop < start)[0])
        raise InputError(f"{what}: row {row}: offset_s {stop[row]} is before onset_s {start[row]}")
    return start, stop


def _any_window_hits(
    start: np.ndarray,
    stop: np.ndarray,
    win_start: np.ndarray,
    win_stop: np.ndarray,
    *,
    closed: bool,
    tol: float,
) -> np.ndarray:
    """For each interval [start, stop], whether some window [win_start, win_stop] meets it.

    ``closed`` windows meet intervals that touch them; open ones need a real overlap.
    Windows may overlap each other: the running maximum of their stops handles that.
    """
    if win_start.size == 0 or start.size == 0:
        return np.zeros(start.size, dtype=bool)
    order = np.argsort(win_start, kind="stable")
    win_start = win_start[order]
    reach = np.maximum.accumulate(win_stop[order])
    if closed:
        k = np.searchsorted(win_start, stop + tol, side="right")
        return (k > 0) & (reach[np.maximum(k - 1, 0)] >= start - tol)
    k = np.searchsorted(win_start, stop - tol, side="left")
    return (k > 0) & (reach[np.maximum(k - 1, 0)] > start + tol)


# --------------------------------------------------------------------------------------
# bilateral merge


def merge_bilateral(
    onset_s: np.ndarray,
    offset_s: np.ndarray,
    side_code: np.ndarray,
    rules: ScoringRules | None = None,
) -> np.ndarray:
    """Group monolateral LMs into bilateral LMs.

    Parameters
    ----------
    onset_s, offset_s : ndarray
        LM onsets and offsets, sorted by onset.
    side_code : ndarray of int
        0 left, 1 right, 2 unknown. LMs of unknown side are never merged.
    rules : ScoringRules, optional
        ``bilateral_mode``, ``bilateral_merge_gap_s`` (and its inclusiveness),
        ``aasm_bilateral_onset_s`` and ``drop_long_before_merge`` are used.

    Returns
    -------
    group : ndarray of int
        For each LM the number of the merged LM it belongs to, numbered 0, 1, ... in
        order of the merged LMs' onsets.

    Notes
    -----
    Only LMs of different legs merge, and merging chains (left-right-left...): the
    merged LMs are the connected components of the "merges with" relation, and a merged
    LM spans its earliest onset to its latest offset.

    ``'wasm'`` mode (WASM 2016 [1]_): a left and a right LM merge when they overlap or
    the gap from the offset of one to the onset of the other is less than
    ``bilateral_merge_gap_s`` (0.5 s).

    ``'aasm'`` mode (AASM [2]_): a left and a right LM are one movement when their
    onsets are less than ``aasm_bilateral_onset_s`` (5 s) apart.

    With ``drop_long_before_merge`` LMs longer than ``max_candidate_lm_s`` take no part
    in merging (the MATPLM 2016 reading).

    References
    ----------
    .. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards
       for recording and scoring leg movements in polysomnograms", Sleep Medicine 26
       (2016) 86-95.
    .. [2] R. B. Berry et al., "The AASM Manual for the Scoring of Sleep and Associated
       Events", version 2.x, American Academy of Sleep Medicine.
    """
    rules = ScoringRules() if rules is None else rules
    tol = rules.tolerance_s
    n = onset_s.size
    mergeable = side_code != _SIDE_CODES["unknown"]
    if rules.drop_long_before_merge:
        mergeable &= ~_too_long(
            offset_s - onset_s, rules.max_candidate_lm_s, rules.candidate_lm_max_inclusive, tol
        )
    left = np.flatnonzero(mergeable & (side_code == _SIDE_CODES["left"]))
    right = np.flatnonzero(mergeable & (side_code == _SIDE_CODES["right"]))
    if left.size == 0 or right.size == 0:
        return np.arange(n)
    edges = []
    for first, second in ((left, right), (right, left)):
        # pairs in which the `first` LM starts no later than the `second` one
        start = onset_s[first]
        if rules.bilateral_mode == "wasm":
            reach = offset_s[first] + rules.bilateral_merge_gap_s
            inclusive = rules.bilateral_merge_gap_inclusive
        else:
            reach = start + rules.aasm_bilateral_onset_s
            inclusive = False
        reach = reach + tol if inclusive else reach - tol
        i, j = _ranges(start, reach, onset_s[second], inclusive)
        edges.append((first[i], second[j]))
    u = np.concatenate([e[0] for e in edges])
    v = np.concatenate([e[1] for e in edges])
    if u.size == 0:
        return np.arange(n)
    graph = coo_matrix((np.ones(u.size, dtype=np.int8), (u, v)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    # number the merged LMs in order of their first (earliest) member
    _, first_member, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first_member.size, dtype=np.int64)
    rank[np.argsort(first_member, kind="stable")] = np.arange(first_member.size)
    return rank[inverse]


def _ranges(
    start: np.ndarray, reach: np.ndarray, other_onset: np.ndarray, inclusive: bool
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i, j) with start[i] <= other_onset[j] < reach[i] (<= when inclusive).

    ``other_onset`` is sorted, so each i pairs with a contiguous block of j.
    """
    lo = np.searchsorted(other_onset, start, side="left")
    hi = np.searchsorted(other_onset, reach, side="right" if inclusive else "left")
    counts = np.maximum(hi - lo, 0)
    i = np.repeat(np.arange(start.size), counts)
    block_start = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    j = np.arange(i.size) + block_start
    return i, j


def _too_long(duration: np.ndarray, limit: float, inclusive: bool, tol: float) -> np.ndarray:
    return duration > limit + tol if inclusive else duration >= limit - tol


# --------------------------------------------------------------------------------------
# IMIs and series


def _imis(onset: np.ndarray, offset: np.ndarray, candidate: np.ndarray, mode: str) -> np.ndarray:
    n = onset.size
    imi = np.full(n, np.nan)
    if n < 2:
        return imi
    imi[1:] = np.diff(onset)
    if mode == "offset":
        after_nc = np.zeros(n, dtype=bool)
        after_nc[1:] = ~candidate[:-1]
        imi[after_nc] = onset[after_nc] - offset[np.flatnonzero(after_nc) - 1]
    elif mode == "previous_candidate":
        position = np.where(candidate, np.arange(n), -1)
        last_candidate = np.maximum.accumulate(position)
        previous = np.empty(n, dtype=np.int64)
        previous[0] = -1
        previous[1:] = last_candidate[:-1]
        imi[candidate] = np.nan
        has_previous = candidate & (previous >= 0)
        imi[has_previous] = onset[has_previous] - onset[previous[has_previous]]
    return imi


def _series(
    imi: np.ndarray,
    candidate: np.ndarray,
    rules: ScoringRules,
    *,
    eligible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Short-IMI flags, PLM flags and series numbers (-1 for none)."""
    tol = rules.tolerance_s
    n = imi.size
    with np.errstate(invalid="ignore"):
        if rules.min_imi_inclusive:
            above_min = imi >= rules.min_imi_s - tol
            short = imi < rules.min_imi_s - tol
        else:
            above_min = imi > rules.min_imi_s + tol
            short = imi <= rules.min_imi_s + tol
        if rules.max_imi_inclusive:
            below_max = imi <= rules.max_imi_s + tol
        else:
            below_max = imi < rules.max_imi_s - tol
    short &= candidate
    in_range = above_min & below_max
    # A CLM that is in some run: every CLM except a short-IMI one that may not start.
    member = candidate.copy() if rules.short_imi_can_start_series else candidate & ~short
    if eligible is not None:
        member &= eligible
    continues = np.zeros(n, dtype=bool)
    continues[1:] = member[1:] & member[:-1] & in_range[1:]
    run_start = member & ~continues
    run = np.cumsum(run_start) - 1
    plm = np.zeros(n, dtype=bool)
    series_id = np.full(n, -1, dtype=np.int64)
    if member.any():
        run_length = np.bincount(run[member])
        long_enough = run_length >= rules.min_series_count
        renumber = np.cumsum(long_enough) - 1
        plm[member] = long_enough[run[member]]
        series_id[plm] = renumber[run[plm]]
    return short, plm, series_id


def _score_pass(
    onset: np.ndarray,
    offset: np.ndarray,
    candidate: np.ndarray,
    rules: ScoringRules,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    imi = _imis(onset, offset, candidate, rules.imi_after_noncandidate_from)
    eligible = None
    if not rules.last_lm_completes_series and onset.size:
        eligible = np.ones(onset.size, dtype=bool)
        eligible[-1] = False
    short, plm, series_id = _series(imi, candidate, rules, eligible=eligible)
    return imi, short, plm, series_id


# --------------------------------------------------------------------------------------
# the scorer


def score_leg_movements(
    lms: pd.DataFrame,
    rules: ScoringRules | str | None = None,
    *,
    respiratory: pd.DataFrame | None = None,
    arousals: pd.DataFrame | None = None,
    sleep: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Score leg movements: bilateral merge, candidates, IMIs and PLM series.

    Parameters
    ----------
    lms : DataFrame
        One row per monolateral LM, in any order, with columns ``onset_s`` and
        ``offset_s`` (seconds) and ``side`` (``'left'``, ``'right'``, ``'unknown'``, or
        ``'L'``/``'R'``, any case; missing means unknown). Optional ``kind``: ``'lm'``
        (the default, also where missing) or any other word such as ``'posture'``, which
        makes a non-candidate LM that is kept, reported and breaks a series. Other
        columns are carried through: numeric ones take the maximum over the components
        of a merged LM, others the value of its earliest component.
    rules : ScoringRules or str, optional
        The rules, or the name of a preset (see :func:`rules_preset`). Default WASM 2016.
    respiratory : DataFrame, optional
        Apneas and hypopneas (only those rows), with ``onset_s`` and ``offset_s`` or
        ``duration_s``. CLMs meeting the respiratory window are flagged and left out of
        the ``*_nonresp`` scoring.
    arousals : DataFrame, optional
        Arousals, with ``onset_s`` and ``offset_s`` or ``duration_s``.
    sleep : DataFrame, optional
        Spans of sleep, with ``onset_s`` and ``offset_s`` or ``duration_s``; an LM is in
        sleep when its onset lies in a span. None means the whole night is sleep.

    Returns
    -------
    scored : DataFrame
        One row per LM after the bilateral merge, sorted by onset, with columns
        :data:`SCORED_COLUMNS` and then the extra input columns:

        ``onset_s``, ``offset_s``, ``duration_s``
            Span of the (merged) LM.
        ``side``
            ``'left'``, ``'right'``, ``'both'`` or ``'unknown'``.
        ``n_components``
            Number of monolateral LMs merged into it.
        ``kind``
            ``'lm'``, or the first other kind among its components.
        ``candidate``
            Whether it is a candidate LM (CLM).
        ``imi_s``
            Onset-to-onset interval from the previous LM of any kind (NaN for the first);
            after a non-candidate it follows ``rules.imi_after_noncandidate_from``.
        ``short_imi``
            A CLM whose IMI is below ``rules.min_imi_s``.
        ``plm``, ``series_id``
            Whether it is a PLM, and the number of its series (-1 for none).
        ``respiratory``, ``arousal``, ``in_sleep``
            Associations with the given events; False (``in_sleep``: True) when the
            events were not given.
        ``plm_nonresp``, ``series_id_nonresp``
            The same scoring with respiratory-related CLMs removed (IMIs and series
            recomputed); equal to ``plm`` and ``series_id`` without respiratory events.

        ``scored.attrs['scoring_rules']`` holds ``rules.to_dict()``.

    Raises
    ------
    InputError
        A missing column, or a value that is missing, not a number, infinite, an offset
        before its onset or an unknown side; the message names the row (0-based
        position in the table).
    UsageError
        An unknown preset name.

    Notes
    -----
    Following WASM 2016 [1]_: LMs last >= 0.5 s; LMs of the two legs overlapping or
    less than 0.5 s apart form one bilateral LM. A CLM is a monolateral LM of 0.5-10 s
    or a bilateral LM of <= 15 s made of <= 4 monolateral LMs none longer than 10 s.
    The IMI is measured onset to onset from the previous LM of any kind. A PLM series is
    a maximal run of CLMs in which every member after the first has 10 <= IMI <= 90 s;
    it ends at an IMI outside that range or at a non-candidate LM, and runs of >= 4
    are PLMs. A CLM with IMI < 10 s is never a PLM and does not start a series.
    Respiratory-related CLMs meet the window from 2.0 s before to 10.25 s after the end
    of an apnea or hypopnea [3]_; arousal-associated LMs overlap an arousal or are less
    than 0.5 s from it. The AASM variants [2]_ are parameters of :class:`ScoringRules`.

    References
    ----------
    .. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards
       for recording and scoring leg movements in polysomnograms", Sleep Medicine 26
       (2016) 86-95.
    .. [2] R. B. Berry et al., "The AASM Manual for the Scoring of Sleep and Associated
       Events", version 2.x, American Academy of Sleep Medicine.
    .. [3] M. Manconi et al., "An evidence-based recommendation for a new definition of
       respiratory-related leg movements", Sleep 38 (2015) 295-304.

    Examples
    --------
    >>> import pandas as pd
    >>> onsets = [0, 20, 40, 60, 80]
    >>> lms = pd.DataFrame({"onset_s": onsets, "offset_s": [t + 1 for t in onsets],
    ...                     "side": "left"})
    >>> scored = score_leg_movements(lms)
    >>> scored["plm"].tolist()
    [True, True, True, True, True]
    """
    if rules is None:
        rules = ScoringRules()
    elif isinstance(rules, str):
        rules = rules_preset(rules)
    elif not isinstance(rules, ScoringRules):
        raise UsageError(f"rules must be ScoringRules or a preset name, got {type(rules).__name__}")
    tol = rules.tolerance_s

    what = "leg movements"
    _require_columns(lms, ("onset_s", "offset_s", "side"), what)
    onset = _numeric_column(lms, "onset_s", what)
    offset = _numeric_column(lms, "offset_s", what)
    before = offset < onset
    if before.any():
        row = int(np.flatnonzero(before)[0])
        raise InputError(
            f"{what}: row {row}: offset_s {offset[row]} is before onset_s {onset[row]}"
        )
    side = _side_codes(lms["side"])
    kind, kind_names = _kind_codes(lms)
    extras = [c for c in lms.columns if c not in _RESERVED_INPUT]

    # 1. what is not an LM at all
    duration = offset - onset
    keep = duration >= rules.min_lm_s - tol
    if rules.max_lm_s is not None:
        keep &= ~((duration > rules.max_lm_s + tol) & (kind_names[kind] == "lm"))
    rows = np.flatnonzero(keep)
    # deterministic order whatever the input order: onset, offset, side, kind, then the
    # extra columns' values (so identical movements with different amplitudes come out
    # the same however the input was ordered), then input order
    tie_keys = [_sort_key(lms[column].to_numpy()[rows]) for column in reversed(extras)]
    order = rows[
        np.lexsort((rows, *tie_keys, kind[rows], side[rows], offset[rows], onset[rows]))
    ]
    onset, offset, side, kind = onset[order], offset[order], side[order], kind[order]

    # 2. bilateral merge; groups are numbered in onset order
    group = merge_bilateral(onset, offset, side, rules)
    grouped = np.argsort(group, kind="stable")
    if group.size:
        bounds = np.flatnonzero(np.r_[True, group[grouped][1:] != group[grouped][:-1]])
    else:
        bounds = np.zeros(0, dtype=np.int64)
    g_onset = onset[grouped][bounds] if bounds.size else onset[:0]
    n_merged = bounds.size
    if n_merged:
        g_offset = np.maximum.reduceat(offset[grouped], bounds)
        n_components = np.diff(np.r_[bounds, grouped.size])
        longest_component = np.maximum.reduceat(duration[order][grouped], bounds)
        side_g = side[grouped]
        has_left = np.logical_or.reduceat(side_g == 0, bounds)
        has_right = np.logical_or.reduceat(side_g == 1, bounds)
        kind_g = kind[grouped]
        is_lm_name = kind_names == "lm"
        not_lm = ~is_lm_name[kind_g]
        all_lm = ~np.logical_or.reduceat(not_lm, bounds)
        # the first non-'lm' kind of each merged LM (position of it, or a sentinel)
        positions = np.where(not_lm, np.arange(grouped.size), grouped.size)
        first_other = np.minimum.reduceat(positions, bounds)
    else:
        g_offset = offset[:0]
        n_components = np.zeros(0, dtype=np.int64)
        longest_component = g_offset
        has_left = has_right = all_lm = np.zeros(0, dtype=bool)
        first_other = np.zeros(0, dtype=np.int64)
        kind_g = kind
    bilateral = has_left & has_right
    g_side = side[grouped][bounds] if n_merged else side[:0]
    g_side = np.where(bilateral, _BOTH, g_side)
    g_duration = g_offset - g_onset

    # 3. candidates
    mono_ok = ~_too_long(
        g_duration, rules.max_candidate_lm_s, rules.candidate_lm_max_inclusive, tol
    )
    bilateral_ok = (
        ~_too_long(
            g_duration,
            rules.max_candidate_bilateral_s,
            rules.candidate_bilateral_max_inclusive,
            tol,
        )
        & (n_components <= rules.max_bilateral_components)
        & ~_too_long(
            longest_component, rules.max_candidate_lm_s, rules.candidate_lm_max_inclusive, tol
        )
    )
    candidate = all_lm & np.where(bilateral, bilateral_ok, mono_ok)
    if n_merged:
        other_kind = kind_names[kind_g[np.minimum(first_other, grouped.size - 1)]]
        g_kind = np.where(all_lm, "lm", other_kind).astype(object)
    else:
        g_kind = np.zeros(0, dtype=object)

    # 4-5. IMIs and series
    imi, short, plm, series_id = _score_pass(g_onset, g_offset, candidate, rules)

    # 6. associations
    if respiratory is not None:
        ev_start, ev_stop = _event_spans(respiratory, "respiratory events")
        anchor = ev_stop if rules.respiratory_anchor == "end" else ev_start
        resp = _any_window_hits(
            g_onset,
            g_offset,
            anchor - rules.respiratory_before_s,
            ev_stop + rules.respiratory_after_s,
            closed=True,
            tol=tol,
        )
    else:
        resp = np.zeros(n_merged, dtype=bool)
    if arousals is not None:
        ar_start, ar_stop = _event_spans(arousals, "arousals")
        arousal = _any_window_hits(
            g_onset,
            g_offset,
            ar_start - rules.arousal_gap_s,
            ar_stop + rules.arousal_gap_s,
            closed=False,
            tol=tol,
        )
    else:
        arousal = np.zeros(n_merged, dtype=bool)
    if sleep is not None:
        sl_start, sl_stop = _event_spans(sleep, "sleep")
        in_sleep = _in_spans(g_onset, sl_start, sl_stop)
    else:
        in_sleep = np.ones(n_merged, dtype=bool)

    resp_clm = candidate & resp
    if resp_clm.any():
        if rules.respiratory_clm_handling == "remove":
            kept = np.flatnonzero(~resp_clm)
            _, _, plm_kept, series_kept = _score_pass(
                g_onset[kept], g_offset[kept], candidate[kept], rules
            )
            plm_nonresp = np.zeros(n_merged, dtype=bool)
            plm_nonresp[kept] = plm_kept
            series_nonresp = np.full(n_merged, -1, dtype=np.int64)
            series_nonresp[kept] = series_kept
        else:
            _, _, plm_nonresp, series_nonresp = _score_pass(
                g_onset, g_offset, candidate & ~resp_clm, rules
            )
    else:
        plm_nonresp, series_nonresp = plm.copy(), series_id.copy()

    scored = pd.DataFrame(
        {
            "onset_s": g_onset,
            "offset_s": g_offset,
            "duration_s": g_duration,
            "side": pd.Series(_SIDE_NAMES[g_side.astype(np.int64)], dtype="str"),
            "n_components": n_components.astype(np.int64),
            "kind": pd.Series(g_kind, dtype="str"),
            "candidate": candidate,
            "imi_s": imi,
            "short_imi": short,
            "plm": plm,
            "series_id": series_id,
            "respiratory": resp,
            "arousal": arousal,
            "in_sleep": in_sleep,
            "plm_nonresp": plm_nonresp,
            "series_id_nonresp": series_nonresp,
        },
        copy=False,
    )
    if extras:
        source = order[grouped]
        for column in extras:
            values = lms[column].to_numpy()[source]
            scored[column] = _aggregate_extra(values, bounds, lms[column].dtype)
    scored.attrs["scoring_rules"] = rules.to_dict()
    return scored


_RESERVED_INPUT = frozenset(SCORED_COLUMNS) | {"kind"}


def _sort_key(values: np.ndarray) -> np.ndarray:
    """A sortable key for a column of any type: numbers as they are, the rest as text."""
    if np.issubdtype(values.dtype, np.number) or values.dtype == bool:
        return values
    return pd.factorize(pd.Series(values).astype(str), sort=True)[0]


def _in_spans(times: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Whether each time lies in some half-open span [start, stop)."""
    if start.size == 0:
        return np.zeros(times.size, dtype=bool)
    order = np.argsort(start, kind="stable")
    reach = np.maximum.accumulate(stop[order])
    k = np.searchsorted(start[order], times, side="right")
    return (k > 0) & (reach[np.maximum(k - 1, 0)] > times)


def _aggregate_extra(values: np.ndarray, bounds: np.ndarray, dtype: Any) -> np.ndarray:
    if bounds.size == 0:
        return values[:0]
    if pd.api.types.is_bool_dtype(dtype):
        return np.logical_or.reduceat(values.astype(bool), bounds)
    if pd.api.types.is_numeric_dtype(dtype):
        as_float = values.astype("float64")
        result = np.fmax.reduceat(as_float, bounds)
        if pd.api.types.is_integer_dtype(dtype):
            return result.astype(dtype)
        return result
    return values[bounds]


# --------------------------------------------------------------------------------------
# tables and numbers from a scored night


def _check_scored(scored: Any, needed: tuple[str, ...]) -> None:
    _require_columns(scored, needed, "scored leg movements")


def plm_series(scored: pd.DataFrame, *, nonresp: bool = False) -> pd.DataFrame:
    """One row per PLM series of a scored night.

    Parameters
    ----------
    scored : DataFrame
        Output of :func:`score_leg_movements`.
    nonresp : bool, optional
        Describe the series of the scoring without respiratory-related CLMs
        (``series_id_nonresp``) instead of all CLMs.

    Returns
    -------
    series : DataFrame
        Columns ``series_id``, ``onset_s`` (first PLM onset), ``offset_s`` (latest PLM
        offset), ``duration_s``, ``n_lms``, ``mean_imi_s`` (mean IMI of the members after
        the first, as defined by WASM 2016 [1]_), and side composition counts ``n_left``,
        ``n_right``, ``n_bilateral``, ``n_unknown``.

    References
    ----------
    .. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards
       for recording and scoring leg movements in polysomnograms", Sleep Medicine 26
       (2016) 86-95.
    """
    id_column = "series_id_nonresp" if nonresp else "series_id"
    _check_scored(scored, ("onset_s", "offset_s", "side", id_column))
    members = scored.loc[scored[id_column].to_numpy() >= 0]
    onset = members["onset_s"].to_numpy(dtype=float)
    series = members[id_column].to_numpy(dtype=np.int64)
    order = np.lexsort((onset, series))
    onset, series = onset[order], series[order]
    offset = members["offset_s"].to_numpy(dtype=float)[order]
    side = members["side"].to_numpy()[order]
    bounds = np.flatnonzero(np.r_[True, series[1:] != series[:-1]]) if series.size else series
    if not series.size:
        return pd.DataFrame(
            {
                "series_id": np.zeros(0, dtype=np.int64),
                "onset_s": np.zeros(0),
                "offset_s": np.zeros(0),
                "duration_s": np.zeros(0),
                "n_lms": np.zeros(0, dtype=np.int64),
                "mean_imi_s": np.zeros(0),
                "n_left": np.zeros(0, dtype=np.int64),
                "n_right": np.zeros(0, dtype=np.int64),
                "n_bilateral": np.zeros(0, dtype=np.int64),
                "n_unknown": np.zeros(0, dtype=np.int64),
            }
        )
    ends = np.r_[bounds[1:], series.size]
    n_lms = ends - bounds
    first_onset = onset[bounds]
    last_onset = onset[ends - 1]
    latest_offset = np.maximum.reduceat(offset, bounds)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_imi = np.where(n_lms > 1, (last_onset - first_onset) / (n_lms - 1), np.nan)

    def count(name: str) -> np.ndarray:
        return np.add.reduceat((side == name).astype(np.int64), bounds)

    return pd.DataFrame(
        {
            "series_id": series[bounds],
            "onset_s": first_onset,
            "offset_s": latest_offset,
            "duration_s": latest_offset - first_onset,
            "n_lms": n_lms.astype(np.int64),
            "mean_imi_s": mean_imi,
            "n_left": count("left"),
            "n_right": count("right"),
            "n_bilateral": count("both"),
            "n_unknown": count("unknown"),
        }
    )


def _clm_to_clm_imis(scored: pd.DataFrame) -> np.ndarray:
    """Onset-to-onset intervals between consecutive LMs that are both candidates."""
    onset = scored["onset_s"].to_numpy(dtype=float)
    candidate = scored["candidate"].to_numpy(dtype=bool)
    if onset.size < 2:
        return np.zeros(0)
    both = candidate[1:] & candidate[:-1]
    return np.diff(onset)[both]


def _severity_band(plms_index: float) -> str:
    if not np.isfinite(plms_index):
        return "unknown"
    if plms_index < 15:
        return "<15"
    if plms_index < 30:
        return "15-29.9"
    if plms_index < 50:
        return "30-49.9"
    return ">=50"


def summarize(
    scored: pd.DataFrame,
    analyzed_s: float,
    *,
    sleep_s: float | None = None,
    wake_s: float | None = None,
    abnormal_plms_index: float = 15.0,
) -> dict[str, Any]:
    """The night's counts and indices (events per hour) from a scored LM table.

    Parameters
    ----------
    scored : DataFrame
        Output of :func:`score_leg_movements`.
    analyzed_s : float
        Time analysed (e.g. lights off to lights on), seconds. ``*_index`` values without
        a sleep/wake qualifier are per hour of this time.
    sleep_s : float, optional
        Total sleep time. Default: ``analyzed_s - wake_s``, or ``analyzed_s`` when
        neither is given (the whole night asleep).
    wake_s : float, optional
        Wake time within the analysed period. Default: ``analyzed_s - sleep_s``, or 0.
    abnormal_plms_index : float, optional
        PLMS index above which the night is abnormal: 15/h for adults (AASM [2]_; use 5
        for children).

    Returns
    -------
    summary : dict
        ``lm_count``, ``clm_count``, ``plm_count`` and ``*_index`` (per analysed hour);
        ``plms_count`` / ``plms_index`` (PLMs in sleep per hour of sleep),
        ``plmw_count`` / ``plmw_index`` (PLMs in wake per hour of wake; NaN without wake
        time); ``short_imi_count`` / ``_index``; ``isolated_clm_count`` / ``_index``
        (CLMs neither PLM nor short-IMI); ``left_lm_count``, ``right_lm_count``,
        ``bilateral_lm_count``, ``unknown_lm_count`` and the same for PLMs
        (``left_plm_count``...); ``periodicity_index`` (PLMs / CLMs, WASM 2016 [1]_);
        ``periodicity_index_ferri2006`` (fraction of IMIs in runs of >= 3 consecutive
        IMIs with 10 < IMI <= 90 s between CLMs, Ferri 2006 [3]_); ``ln_imi_mean`` and
        ``ln_imi_sd`` of CLM-to-CLM IMIs with 10 <= IMI < 90 s [1]_;
        ``plm_series_count``, ``mean_series_length``; ``plm_count_nonresp``,
        ``plm_index_nonresp``, ``plms_index_nonresp`` (respiratory-related CLMs
        removed); ``severity_band`` of the PLMS index (``'<15'``, ``'15-29.9'``,
        ``'30-49.9'``, ``'>=50'``) and ``abnormal`` (PLMS index > threshold); the hours
        used.

    Raises
    ------
    UsageError
        A non-positive ``analyzed_s`` or a negative ``sleep_s`` or ``wake_s``.

    References
    ----------
    .. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards
       for recording and scoring leg movements in polysomnograms", Sleep Medicine 26
       (2016) 86-95.
    .. [2] R. B. Berry et al., "The AASM Manual for the Scoring of Sleep and Associated
       Events", version 2.x, American Academy of Sleep Medicine.
    .. [3] R. Ferri et al., "Computer-assisted detection of nocturnal leg motor activity
       in patients with restless legs syndrome and periodic leg movements during sleep",
       Sleep 29 (2006) 759-769.
    """
    _check_scored(
        scored,
        (
            "onset_s",
            "side",
            "candidate",
            "short_imi",
            "plm",
            "series_id",
            "in_sleep",
            "plm_nonresp",
        ),
    )
    for name, value in (("analyzed_s", analyzed_s), ("sleep_s", sleep_s), ("wake_s", wake_s)):
        if value is not None and (not np.isfinite(value) or value < 0):
            raise UsageError(f"{name} must be a non-negative number of seconds, got {value}")
    if not analyzed_s > 0:
        raise UsageError(f"analyzed_s must be positive, got {analyzed_s}")
    if sleep_s is None:
        sleep_s = analyzed_s - (wake_s or 0.0)
    if wake_s is None:
        wake_s = max(analyzed_s - sleep_s, 0.0)

    def per_hour(count: int, seconds: float) -> float:
        return count / (seconds / 3600.0) if seconds > 0 else float("nan")

    side = scored["side"].to_numpy()
    candidate = scored["candidate"].to_numpy(dtype=bool)
    short = scored["short_imi"].to_numpy(dtype=bool)
    plm = scored["plm"].to_numpy(dtype=bool)
    in_sleep = scored["in_sleep"].to_numpy(dtype=bool)
    plm_nonresp = scored["plm_nonresp"].to_numpy(dtype=bool)
    series_id = scored["series_id"].to_numpy()

    lm_count = int(side.size)
    clm_count = int(candidate.sum())
    plm_count = int(plm.sum())
    plms_count = int((plm & in_sleep).sum())
    plmw_count = int((plm & ~in_sleep).sum())
    short_count = int(short.sum())
    isolated_count = int((candidate & ~plm & ~short).sum())
    series_count = int(np.unique(series_id[series_id >= 0]).size)
    plm_nonresp_count = int(plm_nonresp.sum())

    clm_imis = _clm_to_clm_imis(scored)
    tol = _DESCRIPTOR_TOL_S
    in_ln_range = (clm_imis >= 10.0 - tol) & (clm_imis < 90.0 - tol)
    ln_imi = np.log(clm_imis[in_ln_range])

    summary: dict[str, Any] = {
        "analyzed_h": analyzed_s / 3600.0,
        "sleep_h": sleep_s / 3600.0,
        "wake_h": wake_s / 3600.0,
        "lm_count": lm_count,
        "lm_index": per_hour(lm_count, analyzed_s),
        "clm_count": clm_count,
        "clm_index": per_hour(clm_count, analyzed_s),
        "plm_count": plm_count,
        "plm_index": per_hour(plm_count, analyzed_s),
        "plms_count": plms_count,
        "plms_index": per_hour(plms_count, sleep_s),
        "plmw_count": plmw_count,
        "plmw_index": per_hour(plmw_count, wake_s),
        "short_imi_count": short_count,
        "short_imi_index": per_hour(short_count, analyzed_s),
        "isolated_clm_count": isolated_count,
        "isolated_clm_index": per_hour(isolated_count, analyzed_s),
        "left_lm_count": int((side == "left").sum()),
        "right_lm_count": int((side == "right").sum()),
        "bilateral_lm_count": int((side == "both").sum()),
        "unknown_lm_count": int((side == "unknown").sum()),
        "left_plm_count": int((plm & (side == "left")).sum()),
        "right_plm_count": int((plm & (side == "right")).sum()),
        "bilateral_plm_count": int((plm & (side == "both")).sum()),
        "unknown_plm_count": int((plm & (side == "unknown")).sum()),
        "periodicity_index": plm_count / clm_count if clm_count else float("nan"),
        "periodicity_index_ferri2006": _ferri2006_periodicity(scored),
        "ln_imi_mean": float(ln_imi.mean()) if ln_imi.size else float("nan"),
        "ln_imi_sd": float(ln_imi.std(ddof=1)) if ln_imi.size > 1 else float("nan"),
        "plm_series_count": series_count,
        "mean_series_length": plm_count / series_count if series_count else float("nan"),
        "plm_count_nonresp": plm_nonresp_count,
        "plm_index_nonresp": per_hour(plm_nonresp_count, analyzed_s),
        "plms_index_nonresp": per_hour(int((plm_nonresp & in_sleep).sum()), sleep_s),
    }
    summary["severity_band"] = _severity_band(summary["plms_index"])
    summary["abnormal"] = bool(summary["plms_index"] > abnormal_plms_index)
    return summary


def _ferri2006_periodicity(scored: pd.DataFrame) -> float:
    """Fraction of IMIs in runs of >= 3 consecutive IMIs with 10 < IMI <= 90 s.

    IMIs run between consecutive LMs (onset to onset); an IMI that starts or ends at a
    non-candidate LM is never inside the range, so non-candidates break runs as in WASM
    2016.
    """
    onset = scored["onset_s"].to_numpy(dtype=float)
    candidate = scored["candidate"].to_numpy(dtype=bool)
    if onset.size < 2:
        return float("nan")
    imi = np.diff(onset)
    tol = _DESCRIPTOR_TOL_S
    good = (imi > 10.0 + tol) & (imi <= 90.0 + tol) & candidate[1:] & candidate[:-1]
    # lengths of runs of consecutive good IMIs
    edges = np.diff(np.r_[0, good.astype(np.int8), 0])
    run_starts = np.flatnonzero(edges == 1)
    run_ends = np.flatnonzero(edges == -1)
    lengths = run_ends - run_starts
    return float(lengths[lengths >= 3].sum() / imi.size)


def imi_histograms(scored: pd.DataFrame) -> dict[str, np.ndarray]:
    """Histograms of the CLM-to-CLM IMIs of a scored night.

    Parameters
    ----------
    scored : DataFrame
        Output of :func:`score_leg_movements`.

    Returns
    -------
    histograms : dict
        ``imi_counts`` and ``imi_edges_s``: IMIs < 90 s in 2 s bins from 0 to 90 s;
        ``ln_imi_counts`` and ``ln_imi_edges``: ln(IMI) in 0.1 bins from 0 to 4.5 (IMIs
        of 1-90 s). IMIs run between consecutive LMs that are both candidates, as in
        WASM 2016 [1]_. In RLS the main peak lies at 15-30 s [1]_.

    References
    ----------
    .. [1] R. Ferri et al., "World Association of Sleep Medicine (WASM) 2016 standards
       for recording and scoring leg movements in polysomnograms", Sleep Medicine 26
       (2016) 86-95.
    """
    _check_scored(scored, ("onset_s", "candidate"))
    imis = _clm_to_clm_imis(scored)
    imis = imis[imis < 90.0 - _DESCRIPTOR_TOL_S]
    imi_edges = np.linspace(0.0, 90.0, 46)
    ln_edges = np.linspace(0.0, 4.5, 46)
    imi_counts, _ = np.histogram(imis, bins=imi_edges)
    with np.errstate(divide="ignore"):
        ln_imis = np.log(imis[imis > 0])
    ln_counts, _ = np.histogram(ln_imis, bins=ln_edges)
    return {
        "imi_counts": imi_counts,
        "imi_edges_s": imi_edges,
        "ln_imi_counts": ln_counts,
        "ln_imi_edges": ln_edges,
    }
