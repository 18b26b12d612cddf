"""Leg movements from ankle acceleration.

The detector turns an ``(n, 3)`` acceleration array (g) into a table of leg movements
(LMs), following the logic PSG scoring applies to tibialis EMG (Ferri et al. 2016, WASM
standards): an activity signal, a resting floor that adapts to the night, an onset
threshold, and a lower offset threshold that must hold for 0.5 s (hysteresis).

Activity signal
---------------
The samples are reduced to blocks of ``block_s`` (0.1 s) in one vectorised pass: the
mean of each axis and the variance within the block. A leg movement shows in two ways:

* *orientation change*: a 10-20 degree dorsiflexion moves 0.17-0.34 g of gravity
  between the axes while the vector magnitude stays near 1 g, so a magnitude-only
  signal (ENMO) misses much of it. The deviation of each axis's block mean from a
  running median of the axis over ``baseline_s`` (posture and gravity) measures it.
* *linear acceleration and jerk*: the within-block variance.

``activity = sqrt(|mean - baseline|^2 + excess variance)`` (g), smoothed over
``smooth_s``, where the excess variance is the within-block variance less its resting
level (a low percentile: the sensor's own noise). With a gyroscope, the angular speed
(deg/s) scaled by ``gyro_g_per_dps`` is combined by taking the larger of the two, so
rotations too slow to move gravity much are still seen.

Thresholds
----------
The resting floor is a low percentile of the night's activity (fixed thresholds fail
across nights and sensors: Yang et al. 2014). The onset threshold is the larger of
``floor * onset_ratio`` and ``floor + onset_min_g``; the offset threshold the larger of
``floor * offset_ratio`` and ``floor + offset_min_g``.

An LM starts where activity first reaches the onset threshold and ends at the start of
the first stretch of at least ``offset_hold_s`` below the offset threshold. LMs shorter
than ``min_duration_s`` are dropped; so are LMs in which no ``shape_window_s`` window
stays above the offset threshold (the WASM computer-scoring shape rule against spiky
artefacts). An LM after which the leg rests in an orientation more than
``posture_angle_deg`` from the one before it is a posture change (``kind='posture'``):
such movements are reported but never become candidate LMs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from .errors import UsageError

#: The :class:`DetectionParams` that the activity signal and the resting floor depend on
#: (:func:`activity_signal`, :func:`resting_floor`). Every other detection parameter acts
#: only in the thresholding (:func:`thresholds`, :func:`find_leg_movements`), so a night's
#: activity computed once serves every value of those (what ``pmld sweep`` relies on).
PREPROCESSING_PARAMS = ("block_s", "baseline_s", "smooth_s", "floor_percentile", "gyro_g_per_dps")

#: Columns of the table returned by :func:`detect_leg_movements`.
LM_COLUMNS = (
    "onset_s",
    "offset_s",
    "duration_s",
    "kind",
    "peak_g",
    "mean_g",
    "area_gs",
    "peak_angle_deg",
    "posture_change_deg",
)


@dataclass(frozen=True)
class DetectionParams:
    """Parameters of the leg-movement detector. Units are in the names.

    Attributes
    ----------
    block_s : float
        Resolution of the activity signal (s). 0.1 s keeps onset times well inside the
        precision of EMG scoring while making the per-sample work one pass.
    baseline_s : float
        Window of the running median that follows posture and sensor drift (s). It must
        be long against an LM (<= 10 s) so an LM does not pull it along, and short
        against the time between posture changes.
    smooth_s : float
        Moving-average smoothing of the activity signal (s).
    floor_percentile : float
        Percentile of the night's activity taken as the resting floor (%). PLMs
        occupy well under half of a night even in severe cases, so a low percentile
        lies in rest.
    onset_ratio, onset_min_g : float
        Onset threshold = max(floor * onset_ratio, floor + onset_min_g) (g). The
        defaults (the onset at least 4 times the floor, like the 8 uV over a resting
        EMG of about 2 uV in WASM 2016, and never less than 15 mg above it) were set on
        simulated nights (``benchmarks/bench_accuracy.py``): LMs of a side-lying leg
        move gravity by only 0.02-0.04 g.
    offset_ratio, offset_min_g : float
        Offset threshold = max(floor * offset_ratio, floor + offset_min_g) (g).
    offset_hold_s : float
        Activity must stay below the offset threshold this long to end an LM (s).
        WASM 2016: 0.5 s.
    min_duration_s : float
        Shortest LM (s). WASM 2016 and AASM: 0.5 s.
    merge_gap_s : float
        LMs of one leg closer than this (offset to onset, s) are one LM.
    shape_window_s : float
        The WASM shape rule: some window of this length inside the LM must stay above
        the offset threshold (s). 0 disables it.
    posture_angle_deg : float
        An LM after which the sensor's orientation differs by more than this from the
        one before it is a posture change (degrees). A leg movement in sleep returns
        the foot to where it was (90 % of simulated LMs leave under 0.1 degrees);
        rolling over leaves the ankle rotated by tens of degrees.
    posture_context_s : float
        Length of the rest periods before onset and after offset whose median
        orientation is compared (s).
    gyro_g_per_dps : float
        Scale from angular speed (deg/s) to the activity signal (g per deg/s), used
        when a gyroscope is present: 0.004 g per deg/s maps a 25 deg/s rotation to
        0.1 g.
    """

    block_s: float = 0.1
    baseline_s: float = 20.0
    smooth_s: float = 0.3
    floor_percentile: float = 20.0
    onset_ratio: float = 4.0
    onset_min_g: float = 0.015
    offset_ratio: float = 2.0
    offset_min_g: float = 0.006
    offset_hold_s: float = 0.5
    min_duration_s: float = 0.5
    merge_gap_s: float = 0.5
    shape_window_s: float = 0.5
    posture_angle_deg: float = 5.0
    posture_context_s: float = 3.0
    gyro_g_per_dps: float = 0.004

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not np.isfinite(value):
                raise UsageError(f"detection parameter {f.name} must be a number, got {value!r}")
            if value < 0:
                raise UsageError(f"detection parameter {f.name} must be >= 0, got {value}")
            # one canonical type, so that 5 and 5.0 give the same parameters_json
            object.__setattr__(self, f.name, float(value))
        if self.block_s <= 0:
            raise UsageError("detection parameter block_s must be > 0")
        if not 0 < self.floor_percentile < 100:
            raise UsageError("detection parameter floor_percentile must be in (0, 100)")
        if self.offset_ratio > self.onset_ratio or self.offset_min_g > self.onset_min_g:
            raise UsageError(
                "the offset threshold must not exceed the onset threshold "
                "(offset_ratio <= onset_ratio and offset_min_g <= onset_min_g)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DetectionParams:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(
                f"unknown detection parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**{k: float(v) for k, v in values.items()})


@dataclass
class Activity:
    """The activity signal of one contiguous stretch of samples.

    ``activity_g`` and ``deviation_g`` have one value per block of ``block_s``;
    ``orientation`` is the unit vector of each block's mean acceleration (sensor axes):
    the direction of gravity when the leg rests.

    The running sums that :func:`find_leg_movements` needs (:attr:`cumulative_activity`,
    :attr:`cumulative_orientation`) depend on the signal alone: they are computed on first
    use and kept, so thresholding the same activity again (other thresholds, a parameter
    sweep) does not repeat them. Treat the arrays as read-only once they are used.
    """

    activity_g: np.ndarray
    deviation_g: np.ndarray
    orientation: np.ndarray
    block_s: float

    @cached_property
    def cumulative_activity(self) -> np.ndarray:
        """``[0, cumsum(activity_g)]`` in float64 (areas and means of events)."""
        return np.concatenate([[0.0], np.cumsum(self.activity_g, dtype=np.float64)])

    @cached_property
    def cumulative_orientation(self) -> np.ndarray:
        """``[0, cumsum(orientation)]`` per axis (mean rest orientations)."""
        return np.concatenate([np.zeros((1, 3)), np.cumsum(self.orientation, axis=0)])


def row_norms(vectors: np.ndarray) -> np.ndarray:
    """Euclidean length of each row (einsum: several times faster than linalg.norm on
    a few columns)."""
    return np.sqrt(np.einsum("ij,ij->i", vectors, vectors))


def unit_vectors(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norm = row_norms(vectors)[:, None]
    return vectors / np.where(norm > 0, norm, 1)


def _block_size(fs_hz: float, params: DetectionParams) -> int:
    return max(1, int(round(params.block_s * fs_hz)))


def activity_signal(
    acc_g: np.ndarray,
    fs_hz: float,
    params: DetectionParams | None = None,
    *,
    gyro_dps: np.ndarray | None = None,
    calibration: tuple[np.ndarray, np.ndarray] | None = None,
) -> Activity:
    """Compute the activity signal of a contiguous ``(n, 3)`` acceleration array.

    Parameters
    ----------
    acc_g : ndarray, shape (n, 3)
        Acceleration in g. Must not contain NaN.
    fs_hz : float
        Sampling rate.
    params : DetectionParams, optional
    gyro_dps : ndarray, shape (n, 3), optional
        Angular rate in deg/s.
    calibration : (scale, offset_g), optional
        Per-axis calibration (:class:`pmld.signal.Calibration`): the result is that of
        ``acc_g * scale + offset_g``, computed from the block statistics of ``acc_g``
        (block means map through the calibration, each axis' variance scales by
        ``scale**2``), so the night is never copied.

    Returns
    -------
    Activity
        One value per block of ``round(block_s * fs_hz)`` samples; a trailing partial
        block is dropped.
    """
    params = params or DetectionParams()
    size = _block_size(fs_hz, params)
    block_s = size / fs_hz
    n_blocks = len(acc_g) // size
    if n_blocks == 0:
        empty = np.zeros(0, dtype=np.float32)
        return Activity(empty, empty, np.zeros((0, 3), np.float32), block_s)
    used = np.ascontiguousarray(acc_g[: n_blocks * size], dtype=np.float32)
    centre = np.median(used[:: max(1, len(used) // 5000)], axis=0).astype(np.float32)
    means, variances = _centred_block_stats(used, centre, size)
    if calibration is not None:
        scale = np.asarray(calibration[0], np.float32).reshape(3)
        means *= scale
        variances *= np.square(scale)
        centre = centre * scale + np.asarray(calibration[1], np.float32).reshape(3)
    variance = variances.sum(axis=1)
    baseline = _running_median(means, max(1, int(round(params.baseline_s / block_s))))
    deviation = row_norms(means - baseline)
    # Sensor noise adds the same variance to every block; only the excess over the
    # resting level is movement. Without this, a noisy sensor raises the floor and with
    # it every threshold (white noise of 12 mg alone gives 0.02 g of "activity").
    resting_variance = np.percentile(variance, params.floor_percentile)
    activity = np.sqrt(np.square(deviation) + np.maximum(variance - resting_variance, 0))
    if gyro_dps is not None:
        gyro_means, _ = _block_stats(
            np.array(gyro_dps[: n_blocks * size], dtype=np.float32), size
        )
        gyro_bias = np.median(gyro_means, axis=0)
        speed = row_norms(gyro_means - gyro_bias)
        activity = np.maximum(activity, speed * np.float32(params.gyro_g_per_dps))
    smooth = max(1, int(round(params.smooth_s / block_s)))
    if smooth > 1:
        activity = ndimage.uniform_filter1d(activity, smooth, mode="nearest")
    orientation = unit_vectors(means + centre)
    return Activity(
        activity.astype(np.float32), deviation.astype(np.float32), orientation, block_s
    )


#: Samples per chunk of the block statistics: small enough to stay in cache.
_CHUNK_SAMPLES = 100_000


def _centred_block_stats(
    values: np.ndarray, centre: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_block_stats` of ``values - centre``, in chunks on two threads.

    Centring keeps float32 exact enough for milli-g variances of a signal near 1 g.
    Chunks keep the temporaries in cache, and NumPy releases the GIL for the
    arithmetic, so two threads share the work: together about twice as fast as one
    pass over the night, with bounded extra memory (a chunk per thread).
    """
    rows = max(size, _CHUNK_SAMPLES // size * size)
    bounds = range(0, len(values), rows)

    def one(first: int) -> tuple[np.ndarray, np.ndarray]:
        return _block_stats(values[first : first + rows] - centre, size)

    if len(bounds) == 1:
        return one(0)
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        parts = list(pool.map(one, bounds))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _block_stats(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-block mean and within-block variance of each axis.

    The sums are one matrix product with a 0/1 selector (BLAS), several times faster
    than a strided reduction over a ``(blocks, size, 3)`` view. ``values`` is
    overwritten (squared in place) to spare a copy of the night.
    """
    width = values.shape[1]
    flat = values.reshape(-1, size * width)
    selector = np.zeros((size * width, width), dtype=np.float32)
    selector[np.arange(size * width), np.tile(np.arange(width), size)] = 1.0
    means = (flat @ selector) / np.float32(size)
    np.square(flat, out=flat)
    squares = flat @ selector
    return means, np.maximum(squares / np.float32(size) - np.square(means), 0)


def _running_median(means: np.ndarray, window: int) -> np.ndarray:
    """A running median per axis, computed on 1 s steps and interpolated back.

    A median over ``window`` blocks at full resolution costs O(n * window); taking it
    over the means of groups of ten blocks costs a hundredth and differs only at the
    scale of the smoothing the baseline needs anyway (an LM inside one group moves that
    group's mean, which the median over the groups then ignores).
    """
    group = 10 if window >= 50 else 1
    n = len(means)
    n_groups = n // group
    if n_groups < 1:
        return np.repeat(np.median(means, axis=0, keepdims=True), n, axis=0)
    coarse = means[: n_groups * group].reshape(n_groups, group, -1).mean(axis=1)
    steps = max(1, window // group) | 1
    # One 1-D filter per axis: much faster than a 2-D filter of size (steps, 1).
    for axis in range(coarse.shape[1]):
        coarse[:, axis] = ndimage.median_filter(coarse[:, axis], size=steps, mode="nearest")
    if group == 1:
        return coarse.astype(np.float32)
    centres = np.arange(n_groups) * group + (group - 1) / 2
    positions = np.arange(n)
    out = np.empty_like(means)
    for axis in range(means.shape[1]):
        out[:, axis] = np.interp(positions, centres, coarse[:, axis])
    return out


def resting_floor(activity_g: np.ndarray, params: DetectionParams | None = None) -> float:
    """The resting floor of a night's activity (g): a low percentile."""
    params = params or DetectionParams()
    if activity_g.size == 0:
        return 0.0
    return float(np.percentile(activity_g, params.floor_percentile))


def thresholds(floor_g: float, params: DetectionParams | None = None) -> tuple[float, float]:
    """Onset and offset thresholds (g) for a resting floor."""
    params = params or DetectionParams()
    onset = max(floor_g * params.onset_ratio, floor_g + params.onset_min_g)
    offset = max(floor_g * params.offset_ratio, floor_g + params.offset_min_g)
    return onset, offset


def empty_lm_table() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in LM_COLUMNS})
    frame["kind"] = frame["kind"].astype(object)
    return frame


def find_leg_movements(
    activity: Activity,
    onset_g: float,
    offset_g: float,
    params: DetectionParams | None = None,
) -> pd.DataFrame:
    """Hysteresis thresholding of an activity signal into leg movements.

    Returns the table of :data:`LM_COLUMNS`, times in seconds from the first block.
    """
    params = params or DetectionParams()
    act = activity.activity_g
    step = activity.block_s
    if act.size == 0:
        return empty_lm_table()
    hold = max(1, int(np.ceil(params.offset_hold_s / step - 1e-9)))
    above = act >= offset_g
    # Runs of activity at or above the offset threshold, then bridge the short quiet
    # stretches between them: an LM only ends after `hold` blocks below the offset.
    starts, stops = _runs(above)
    if starts.size == 0:
        return empty_lm_table()
    quiet = starts[1:] - stops[:-1]
    merge_blocks = max(hold, int(np.ceil(params.merge_gap_s / step - 1e-9)))
    keep_break = np.concatenate([[True], quiet >= merge_blocks])
    region_start = starts[keep_break]
    region_stop = np.concatenate([stops[:-1][keep_break[1:]], stops[-1:]])
    # Onset: the first block in the region that reaches the onset threshold.
    crossings = np.flatnonzero(act >= onset_g)
    onset_idx = np.append(crossings, act.size)[np.searchsorted(crossings, region_start)]
    valid = onset_idx < region_stop
    region_start, region_stop, onset_idx = region_start[valid], region_stop[valid], onset_idx[valid]
    if onset_idx.size == 0:
        return empty_lm_table()
    # Shape rule: some window of shape_window_s inside stays above the offset threshold.
    if params.shape_window_s > 0:
        width = max(1, int(round(params.shape_window_s / step)))
        ok = _sustained(starts, stops, region_start, region_stop, onset_idx, width)
        onset_idx, region_stop = onset_idx[ok], region_stop[ok]
    duration_blocks = region_stop - onset_idx
    ok = duration_blocks * step >= params.min_duration_s - 1e-9
    onset_idx, region_stop = onset_idx[ok], region_stop[ok]
    if onset_idx.size == 0:
        return empty_lm_table()
    peak, mean, area, peak_dev = _event_stats(activity, onset_idx, region_stop)
    change = _orientation_change_deg(activity, onset_idx, region_stop, params)
    kind = np.where(change > params.posture_angle_deg, "posture", "lm").astype(object)
    return pd.DataFrame(
        {
            "onset_s": onset_idx * step,
            "offset_s": region_stop * step,
            "duration_s": (region_stop - onset_idx) * step,
            "kind": kind,
            "peak_g": peak,
            "mean_g": mean,
            "area_gs": area * step,
            "peak_angle_deg": np.degrees(2 * np.arcsin(np.clip(peak_dev / 2, 0, 1))),
            "posture_change_deg": change,
        }
    )


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (exclusive) indices of the runs of True in ``mask``."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[0::2], edges[1::2]


def _sustained(starts, stops, region_start, region_stop, onset_idx, width: int) -> np.ndarray:
    """Whether each region has ``width`` consecutive blocks above the offset threshold
    from its onset on.

    ``starts, stops`` are the runs above the offset threshold; the regions are unions of
    consecutive runs (sorted, disjoint), so a window of ``width`` above the threshold
    lies in one run of its region and exists when that run, cut at the onset, is at
    least ``width`` long. Works on the runs alone: no pass over the whole signal.
    """
    region = np.searchsorted(region_start, starts, side="right") - 1
    inside = region >= 0
    inside[inside] = starts[inside] < region_stop[region[inside]]
    run_region = region[inside]
    first = np.maximum(starts[inside], onset_idx[run_region])
    ok = np.zeros(region_start.size, dtype=bool)
    ok[run_region[stops[inside] - first >= width]] = True
    return ok


def _event_stats(activity: Activity, first, stop):
    act, deviation = activity.activity_g, activity.deviation_g
    cumulative = activity.cumulative_activity
    area = cumulative[stop] - cumulative[first]
    mean = area / np.maximum(stop - first, 1)
    # Peaks: reduceat over [first, stop) pairs interleaved with the stretches between
    # them; an event that runs to the end of the signal needs no closing bound.
    bounds = np.column_stack([first, stop]).ravel()
    if bounds[-1] >= act.size:
        bounds = bounds[:-1]
    peak = np.maximum.reduceat(act, bounds)[0::2].astype(np.float64)
    peak_dev = np.maximum.reduceat(deviation, bounds)[0::2].astype(np.float64)
    return peak, mean, area, peak_dev


def _orientation_change_deg(activity: Activity, first, stop, params):
    """Angle between the rest orientation just before onset and just after offset.

    Each rest window is ``posture_context_s`` long and is cut short at the neighbouring
    movement, so that a roll-over seconds after an LM is not taken for the LM's doing.
    """
    n = len(activity.orientation)
    context = max(1, int(round(params.posture_context_s / activity.block_s)))
    cumulative = activity.cumulative_orientation
    previous_stop = np.concatenate([[0], stop[:-1]])
    next_first = np.concatenate([first[1:], [n]])

    def mean_vector(lo, hi):
        lo = np.clip(lo, 0, n - 1)
        hi = np.clip(hi, lo + 1, n)
        return (cumulative[hi] - cumulative[lo]) / (hi - lo)[:, None]

    before = mean_vector(np.maximum(first - context, previous_stop), first)
    after = mean_vector(stop, np.minimum(stop + context, next_first))
    cosine = np.einsum("ij,ij->i", before, after) / (
        np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1)
    )
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def detect_leg_movements(
    acc_g: np.ndarray,
    fs_hz: float,
    params: DetectionParams | None = None,
    *,
    gyro_dps: np.ndarray | None = None,
    floor_g: float | None = None,
) -> pd.DataFrame:
    """Detect leg movements in a contiguous stretch of ankle acceleration.

    Parameters
    ----------
    acc_g : ndarray, shape (n, 3)
        Acceleration in g, uniformly sampled, no gaps, no NaN.
    fs_hz : float
        Sampling rate in Hz.
    params : DetectionParams, optional
        Thresholds; the defaults are documented on :class:`DetectionParams`.
    gyro_dps : ndarray, shape (n, 3), optional
        Angular rate in deg/s, if the sensor has a gyroscope.
    floor_g : float, optional
        Resting floor to use instead of this stretch's own (e.g. the whole night's
        when a night is split by gaps).

    Returns
    -------
    DataFrame
        One row per LM: ``onset_s, offset_s, duration_s`` (s from the first sample),
        ``kind`` ('lm' or 'posture'), and the amplitude measures ``peak_g, mean_g``
        (activity), ``area_gs``, ``peak_angle_deg`` (largest orientation excursion)
        and ``posture_change_deg``.

    References
    ----------
    Ferri R. et al. (2016) World Association of Sleep Medicine (WASM) 2016 standards
    for recording and scoring leg movements in polysomnograms. Sleep Med 26:86-95.

    Examples
    --------
    >>> import numpy as np
    >>> acc = np.tile([0.0, 0.0, 1.0], (6000, 1))
    >>> detect_leg_movements(acc, 100.0).shape[0]
    0
    """
    params = params or DetectionParams()
    activity = activity_signal(acc_g, fs_hz, params, gyro_dps=gyro_dps)
    floor = resting_floor(activity.activity_g, params) if floor_g is None else floor_g
    onset, offset = thresholds(floor, params)
    return find_leg_movements(activity, onset, offset, params)
