"""Aligning a device's sample clock to UTC from packet arrival times.

A band counts samples; the host stamps each packet's arrival. Arrival is the sample's
true time plus a delay that is never negative (radio scheduling, buffering, replays
after a reconnect), so the true clock is the *lower envelope* of the (sample index,
arrival time) points. :func:`fit_sample_clock` takes the least-delayed arrival in each
window of sample indices and fits a robust (Theil-Sen) line through those minima,
lowered to touch the lowest of them: its slope gives the
device's true rate (a crystal off by 50 ppm moves a sample 1.4 s in 8 h) and its
intercept the UTC time of sample 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClockFit:
    """A device sample clock aligned to UTC.

    Attributes
    ----------
    start_ns : int
        UTC time (ns since the Unix epoch) of sample index 0.
    fs_hz : float
        The device's true sampling rate in UTC seconds.
    skew_ppm : float
        ``fs_hz`` against the nominal rate, in parts per million.
    n_points : int
        Envelope points the fit used.
    residual_ms : float
        Median distance of those points above the fitted line (ms): the typical
        least delay.
    """

    start_ns: int
    fs_hz: float
    skew_ppm: float
    n_points: int
    residual_ms: float

    def time_ns(self, sample_index) -> np.ndarray:
        """UTC time (ns) of sample indices."""
        return self.start_ns + np.round(np.asarray(sample_index) / self.fs_hz * 1e9).astype(
            np.int64
        )


def fit_sample_clock(
    sample_index: np.ndarray,
    host_ns: np.ndarray,
    nominal_fs_hz: float,
    *,
    window_s: float = 60.0,
    max_skew_ppm: float = 500.0,
) -> ClockFit:
    """Fit UTC time of sample index from arrival stamps along their lower envelope.

    Parameters
    ----------
    sample_index : ndarray of int
        Index of the sample each arrival is stamped for (e.g. the last sample of a
        packet).
    host_ns : ndarray of int
        Host UTC arrival time of each, ns since the Unix epoch.
    nominal_fs_hz : float
        The rate the device was asked for.
    window_s : float
        Width of the windows in which the least-delayed arrival is taken (s).
    max_skew_ppm : float
        A fitted rate further than this from nominal is not believed (too few or too
        scattered points); the nominal rate is used instead.

    Returns
    -------
    ClockFit
    """
    index = np.asarray(sample_index, dtype=np.int64)
    host = np.asarray(host_ns, dtype=np.int64)
    if index.size == 0:
        raise ValueError("no arrival stamps to fit a clock to")
    period_ns = 1e9 / nominal_fs_hz
    # Work relative to the first point: int64 ns since 1970 do not fit float64 exactly.
    t0 = int(host.min())
    rel = (host - t0).astype(np.float64) - index * period_ns  # delay + offset + drift
    window = max(1, int(round(window_s * nominal_fs_hz)))
    bins = index // window
    order = np.lexsort((rel, bins))
    first_in_bin = np.r_[True, bins[order][1:] != bins[order][:-1]]
    pick = order[first_in_bin]
    x = index[pick].astype(np.float64)
    y = rel[pick]
    skew = 0.0
    if pick.size >= 3 and np.ptp(x) > 0:
        # Theil-Sen: the median of pairwise slopes ignores windows whose every arrival
        # was late (a replay after a reconnect), which would pull least squares.
        from scipy import stats  # imported here: it costs half a second at start-up

        slope = float(stats.theilslopes(y, x).slope)
        skew = slope / period_ns  # relative: period_true = period * (1 + skew)
        if abs(skew) * 1e6 > max_skew_ppm:
            skew = 0.0
    fitted_period = period_ns * (1 + skew)
    # Lower envelope: the line through the minima, lowered to touch the lowest of them.
    intercept = float(np.min(y - skew * period_ns * x))
    residual = y - (intercept + skew * period_ns * x)
    start_ns = t0 + int(round(intercept))
    return ClockFit(
        start_ns=start_ns,
        fs_hz=float(1e9 / fitted_period),
        skew_ppm=float(-skew * 1e6),
        n_points=int(pick.size),
        residual_ms=float(np.median(residual) / 1e6),
    )
