"""Putting irregularly timed samples on a uniform grid.

pmld's algorithms assume the sampling model of :mod:`pmld.night`: samples on one grid
``t0 + k / fs_hz``, with absent grid points listed as gaps, never zero-filled. Sources
with timestamps (CSV exports, phone apps, BLE streams) are brought onto that grid here:

1. The effective rate is ``1 / median(interval)`` (:func:`effective_rate_hz`); the grid
   rate is that rate snapped to a common device rate within 2 %, else rounded to
   0.01 Hz (:func:`grid_rate_hz`).
2. If every timestamp lies within 10 % of a sampling period of a grid point
   (:func:`grid_positions`), the samples are kept as they are, each on its nearest grid
   point: nothing is interpolated, and every grid point without a sample is a gap.
   Rounding of timestamps to milliseconds (128 Hz written in ms: up to 6 % of a period)
   and small clock jitter fall in this case.
3. Otherwise (:func:`resample_uniform`) each grid point is linearly interpolated between
   the two samples around it, provided they are at most ``max_gap_s`` apart. Grid points
   inside a longer interval are gaps: the data are not interpolated across it.

This is interpolation, not filtering: resampling to a rate well below the source's
rate aliases; low-pass filter first.

Everything here works on arrays (times in seconds as float64, values as ``(n, c)``):
no Python loop over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# fmt: off
#: Output data rates of common accelerometers (Hz): ActiGraph (30..100), Axivity
#: (6.25..3200), GENEActiv (10..100), Polar Verity Sense (26, 52, 104, 208, 416), and
#: the output-data-rate ladders of Bosch and ST MEMS parts.
COMMON_RATES_HZ = (
    1.0, 5.0, 6.25, 10.0, 12.5, 16.0, 20.0, 25.0, 26.0, 30.0, 32.0, 40.0, 50.0, 52.0,
    60.0, 62.5, 64.0, 80.0, 90.0, 100.0, 104.0, 125.0, 128.0, 200.0, 208.0, 250.0, 256.0,
    400.0, 416.0, 500.0, 512.0, 800.0, 833.0, 1000.0, 1024.0, 1600.0, 1666.0, 3200.0,
    3332.0,
)
# fmt: on

#: A rate within this relative distance of a common rate is taken to be that rate.
RATE_SNAP_TOLERANCE = 0.02

#: Samples closer than this fraction of a period to grid points are kept, not resampled.
ON_GRID_TOLERANCE = 0.1


@dataclass(frozen=True)
class Resampled:
    """Samples on a uniform grid with gaps, as :class:`pmld.night.Sensor` stores them.

    Attributes
    ----------
    values : ndarray, shape (m, c)
        The samples that exist, in grid order.
    fs_hz : float
        Grid rate.
    start_s : float
        Time of grid point 0 (the first input sample), in the input's time base.
    gap_index, gap_missing : ndarray of int64
        ``missing_samples`` grid points are absent just before stored sample
        ``sample_index`` (the gap model of :mod:`pmld.night`).
    interpolated : bool
        True when values were interpolated; False when the input was already on the
        grid and was only placed on it.
    """

    values: np.ndarray
    fs_hz: float
    start_s: float
    gap_index: np.ndarray
    gap_missing: np.ndarray
    interpolated: bool

    @property
    def missing_samples(self) -> int:
        return int(self.gap_missing.sum())


def intervals_s(times_s: np.ndarray) -> np.ndarray:
    """Differences between consecutive timestamps."""
    return np.diff(np.asarray(times_s, dtype=np.float64))


def effective_rate_hz(times_s: np.ndarray) -> float:
    """``1 / median`` of the positive intervals between timestamps; NaN if there are none.

    The median ignores gaps and outliers, so a recording with dropouts still gives its
    true rate.
    """
    steps = intervals_s(times_s)
    steps = steps[steps > 0]
    if not steps.size:
        return float("nan")
    return float(1.0 / np.median(steps))


def grid_rate_hz(effective_hz: float, tolerance: float = RATE_SNAP_TOLERANCE) -> float:
    """The grid rate for an effective rate: the nearest of :data:`COMMON_RATES_HZ` if
    within ``tolerance`` (relative), else the effective rate rounded to 0.01 Hz."""
    if not np.isfinite(effective_hz) or effective_hz <= 0:
        raise ValueError(f"effective rate must be positive, got {effective_hz}")
    rates = np.asarray(COMMON_RATES_HZ)
    nearest = rates[np.argmin(np.abs(np.log(rates / effective_hz)))]
    if abs(nearest / effective_hz - 1.0) <= tolerance:
        return float(nearest)
    return max(round(effective_hz, 2), 0.01)


def jitter_s(times_s: np.ndarray, max_gap_s: float = np.inf) -> float:
    """Standard deviation of the intervals between timestamps, gaps excluded.

    Zero for a perfectly regular source; the intervals longer than ``max_gap_s`` (gaps)
    are left out so that a dropout does not count as jitter.
    """
    steps = intervals_s(times_s)
    steps = steps[(steps > 0) & (steps <= max_gap_s)]
    return float(np.std(steps)) if steps.size > 1 else 0.0


def grid_positions(
    times_s: np.ndarray, fs_hz: float, tolerance: float = ON_GRID_TOLERANCE
) -> np.ndarray | None:
    """Grid index of every sample if all lie within ``tolerance`` periods of distinct
    grid points ``times_s[0] + k / fs_hz``; None otherwise."""
    times = np.asarray(times_s, dtype=np.float64)
    if times.size == 0:
        return np.zeros(0, dtype=np.int64)
    position = (times - times[0]) * fs_hz
    index = np.rint(position)
    if np.max(np.abs(position - index)) > tolerance:
        return None
    index = index.astype(np.int64)
    if np.any(np.diff(index) <= 0):
        return None
    return index


def gaps_from_grid_index(grid_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gap table (sample_index, missing_samples) of samples at increasing grid indices
    that start at 0."""
    grid_index = np.asarray(grid_index, dtype=np.int64)
    jumps = np.diff(grid_index) - 1
    where = np.flatnonzero(jumps > 0)
    return (where + 1).astype(np.int64), jumps[where].astype(np.int64)


def place_on_grid(
    times_s: np.ndarray, values: np.ndarray, fs_hz: float, grid_index: np.ndarray
) -> Resampled:
    """Samples already on the grid (see :func:`grid_positions`): keep them, list gaps."""
    gap_index, gap_missing = gaps_from_grid_index(grid_index)
    return Resampled(
        values=np.asarray(values),
        fs_hz=float(fs_hz),
        start_s=float(np.asarray(times_s)[0]),
        gap_index=gap_index,
        gap_missing=gap_missing,
        interpolated=False,
    )


def resample_uniform(
    times_s: np.ndarray, values: np.ndarray, fs_hz: float, *, max_gap_s: float = 1.0
) -> Resampled:
    """Linearly interpolate samples at strictly increasing ``times_s`` onto the grid
    ``times_s[0] + k / fs_hz``.

    Grid points between two samples at most ``max_gap_s`` apart are interpolated; those
    inside a longer interval are absent (gaps). A grid point that coincides with a sample
    (within 1e-6 of a period) takes its value. The grid ends at the last grid point that
    has a value.

    Parameters
    ----------
    times_s : ndarray, shape (n,)
        Strictly increasing sample times in seconds, n >= 2.
    values : ndarray, shape (n, c) or (n,)
        Samples.
    fs_hz : float
        Grid rate.
    max_gap_s : float
        Longest interval interpolated across.

    Returns
    -------
    Resampled
        Values as float64 in the shape ``(m, c)`` (or ``(m,)`` for 1-D input).
    """
    times = np.asarray(times_s, dtype=np.float64)
    data = np.asarray(values, dtype=np.float64)
    if times.ndim != 1 or times.size < 2 or data.shape[0] != times.size:
        raise ValueError("need at least 2 timestamps and one value row per timestamp")
    steps = np.diff(times)
    if np.any(steps <= 0):
        raise ValueError("timestamps must be strictly increasing")
    if not fs_hz > 0:
        raise ValueError(f"grid rate must be positive, got {fs_hz}")

    relative = times - times[0]
    tolerance_s = 1e-6 / fs_hz  # a grid point this close to a sample is that sample
    n_grid = int(np.floor(relative[-1] * fs_hz + 1e-6)) + 1
    grid_s = np.arange(n_grid, dtype=np.float64) / fs_hz
    left = np.clip(np.searchsorted(relative, grid_s, side="right") - 1, 0, times.size - 2)
    offset = grid_s - relative[left]
    weight = np.clip(offset / steps[left], 0.0, 1.0)
    at_left = offset <= tolerance_s
    at_right = steps[left] - offset <= tolerance_s
    weight[at_left] = 0.0
    weight[at_right & ~at_left] = 1.0
    valid = (steps[left] <= max_gap_s) | at_left | at_right

    last = int(np.flatnonzero(valid)[-1])
    valid = valid[: last + 1]
    left = left[: last + 1][valid]
    weight = weight[: last + 1][valid]
    columns = data.reshape(times.size, -1)
    out = np.empty((left.size, columns.shape[1]), dtype=np.float64)
    for column in range(columns.shape[1]):  # per axis: keeps temporaries to one column
        series = columns[:, column]
        out[:, column] = series[left] * (1.0 - weight) + series[left + 1] * weight
    out = out.reshape((left.size, *data.shape[1:]))

    gap_index, gap_missing = gaps_from_grid_index(np.flatnonzero(valid))
    return Resampled(
        values=out,
        fs_hz=float(fs_hz),
        start_s=float(times[0]),
        gap_index=gap_index,
        gap_missing=gap_missing,
        interpolated=True,
    )


def to_grid(
    times_s: np.ndarray,
    values: np.ndarray,
    fs_hz: float,
    *,
    max_gap_s: float = 1.0,
    tolerance: float = ON_GRID_TOLERANCE,
) -> Resampled:
    """Samples on the grid at ``fs_hz``: placed as they are when already on it
    (:func:`grid_positions`), else interpolated by :func:`resample_uniform`."""
    grid_index = grid_positions(times_s, fs_hz, tolerance)
    if grid_index is not None:
        return place_on_grid(times_s, values, fs_hz, grid_index)
    return resample_uniform(times_s, values, fs_hz, max_gap_s=max_gap_s)
