"""The sleep period, sleep and wake inside it, and non-wear, from ankle acceleration.

:func:`estimate_sleep` finds, in one night recorded at one or both ankles:

* **non-wear** per ankle: the band lying still off the leg (flagged, never deleted);
* the **sleep period** (SPT window: sleep onset to final awakening), with the HDCZA
  idea of van Hees et al. (2018) [1]_ adapted to an ankle band of unknown mount;
* **sleep and wake** inside the period, with the sustained-inactivity rule of van Hees
  et al. (2015) [2]_, in which the leg movements of sleep (isolated LMs, periodic series)
  do not count as evidence of wake.

Method
------
1. Samples are averaged over 5 s on the night's clock (gaps and NaNs leave a 5 s
   bin empty when less than half of it holds data). The *angle change* of a bin is the
   angle between its mean gravity vector and the previous bin's: unlike the wrist's
   z-angle in [1]_ it does not depend on how the band sits on the shank.
2. Non-wear candidates: runs of at least ``nonwear_window_s`` (60 min, the window of
   van Hees et al. 2013 [3]_) in which no angle change exceeds ``nonwear_still_deg``
   and every bin's SD is under ``nonwear_sd_g`` (13 mg [3]_) on two axes, the run's
   mean directions spreading by less than ``nonwear_range_deg`` (the 50 mg range of
   [3]_ as an angle). This is stricter than [3]_, whose 13 mg SD a quiet sleeping limb
   also meets: a leg asleep moves (posture shifts, isolated LMs) within the hour.
3. HDCZA [1]_: 5 min rolling median of the angle change; threshold = 10th percentile
   x 15, bounded to 0.13-0.50 degrees as GGIR does; runs below threshold longer than
   30 min are blocks; blocks less than 60 min apart are joined; the longest is the
   sleep period. With two ankles the larger change of the two (worn) legs counts.
4. A non-wear candidate that lies strictly inside that first period (sleep before and
   after it) is sleep unless it lasts 75 % of the period or more (the "75 % rule" of
   Ahmadi et al. 2020 [4]_); one at an edge of the period, or outside it, is non-wear,
   and step 3 is repeated with non-wear as a break no block can cross.
5. Sleep vs wake inside the period [2]_: a 5 s bin is wake evidence when its angle
   change exceeds ``wake_angle_deg`` (5 degrees), except in the spans of leg movements
   that sleep explains (given in ``movements``): an LM of at most 10 s that is
   isolated (no other movement within ``isolation_s``) or belongs to a periodic run (at
   least 4 LMs at 10-90 s intervals, regular: SD of ln(IMI) at most
   ``periodic_log_sd``). Runs of at least 5 min without evidence are sleep; a 30 s
   epoch is sleep when most of its recorded 5 s bins are.
6. HDCZA's block also holds quiet wake in bed: the period is trimmed to start with the
   first sustained-inactivity run in it and end with the last.

References
----------
.. [1] van Hees V.T. et al. (2018). Estimating sleep parameters using an accelerometer
   without sleep diary. Scientific Reports 8:12975.
.. [2] van Hees V.T. et al. (2015). A novel, open access method to assess sleep
   duration using a wrist-worn accelerometer. PLoS ONE 10(11):e0142533.
.. [3] van Hees V.T. et al. (2013). Separating movement and gravity components in an
   acceleration signal and implications for the assessment of human daily physical
   activity. PLoS ONE 8(4):e61691.
.. [4] Ahmadi M.N. et al. (2020). Non-wear or sleep? Evaluation of five non-wear
   detection algorithms for raw accelerometer data. Journal of Sports Sciences
   38(4):399-404.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError, UsageError
from .night import Night

__all__ = ["EPOCH_COLUMNS", "SleepEstimate", "SleepParams", "estimate_sleep"]

#: Columns of :attr:`SleepEstimate.epochs`, in order.
EPOCH_COLUMNS = (
    "onset_s",
    "duration_s",
    "side",
    "angle_deg",
    "angle_change_deg",
    "nonwear",
    "in_period",
    "sleep",
)

_METHOD = "HDCZA (van Hees 2018) on the ankle, orientation-invariant angle change"


@dataclass(frozen=True)
class SleepParams:
    """Parameters of :func:`estimate_sleep`, with the sources of their defaults.

    Parameters
    ----------
    epoch_s : float
        Output epoch, 30 s as in PSG scoring.
    bin_s : float
        Averaging bin of the angle, 5 s [1]_.
    min_coverage : float
        Fraction of a 5 s bin that must hold data for the bin to count (0-1).
    median_window_s : float
        Rolling median of the angle change, 5 min [1]_.
    threshold_percentile, threshold_multiplier : float
        HDCZA threshold = percentile of the rolling median x multiplier, 10 and 15 [1]_.
    threshold_min_deg, threshold_max_deg : float
        Bounds of the threshold, 0.13 and 0.50 degrees (GGIR's HDCZA).
    min_block_s : float
        Shortest still block, 30 min [1]_.
    max_join_gap_s : float
        Blocks less than this apart are joined, 60 min [1]_.
    wake_angle_deg : float
        Angle change that is evidence of wake, 5 degrees [2]_.
    inactivity_s : float
        Sustained inactivity that is sleep, 5 min [2]_.
    movement_before_s, movement_after_s : float
        Margin around an explained leg movement whose angle changes are ignored: the
        5 s mean moves when the LM starts and moves back in the bin after it ends.
    movement_max_s : float
        Longest LM that sleep explains, 10 s (the candidate LM limit of WASM 2016).
    isolation_s : float
        An LM with no other movement (of any kind, either leg) within this is isolated.
    periodic_imi_s : tuple of float
        IMI range of a periodic run, 10-90 s (WASM 2016).
    periodic_min_lms : int
        Shortest periodic run, 4 LMs (WASM 2016).
    periodic_log_sd : float
        Largest SD of ln(IMI) in a periodic run: PLM series are regular (about 0.3 in
        RLS, more when the detector misses small LMs), irregular wake movements less so
        (about 0.6 for random intervals in 10-90 s).
    nonwear : bool
        Look for non-wear at all.
    nonwear_window_s : float
        Shortest non-wear, 60 min [3]_.
    nonwear_still_deg : float
        Largest 5 s angle change in non-wear.
    nonwear_sd_g : float
        Largest per-axis SD of a 5 s bin in non-wear, on ``nonwear_min_axes`` axes,
        13 mg [3]_.
    nonwear_range_deg : float
        Largest angle between a non-wear bin's direction and the run's mean direction:
        2.9 degrees, the 50 mg range of [3]_ at 1 g.
    nonwear_min_axes : int
        Axes that must meet the SD criterion, 2 of 3 [3]_.
    nonwear_sleep_fraction : float
        A candidate strictly inside the sleep period is sleep when shorter than this
        fraction of the period, 0.75 [4]_.
    """

    epoch_s: float = 30.0
    bin_s: float = 5.0
    min_coverage: float = 0.5
    median_window_s: float = 300.0
    threshold_percentile: float = 10.0
    threshold_multiplier: float = 15.0
    threshold_min_deg: float = 0.13
    threshold_max_deg: float = 0.50
    min_block_s: float = 1800.0
    max_join_gap_s: float = 3600.0
    wake_angle_deg: float = 5.0
    inactivity_s: float = 300.0
    movement_before_s: float = 1.0
    movement_after_s: float = 5.0
    movement_max_s: float = 10.0
    isolation_s: float = 60.0
    periodic_imi_s: tuple[float, float] = (10.0, 90.0)
    periodic_min_lms: int = 4
    periodic_log_sd: float = 0.4
    nonwear: bool = True
    nonwear_window_s: float = 3600.0
    nonwear_still_deg: float = 0.5
    nonwear_sd_g: float = 0.013
    nonwear_range_deg: float = 2.9
    nonwear_min_axes: int = 2
    nonwear_sleep_fraction: float = 0.75

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "nonwear":
                if not isinstance(value, bool):
                    raise UsageError(
                        f"sleep parameter nonwear must be True or False, not {value!r}"
                    )
                continue
            if f.name == "periodic_imi_s":
                ok = (
                    isinstance(value, tuple | list)
                    and len(value) == 2
                    and all(_is_number(v) and math.isfinite(v) for v in value)
                    and 0 <= value[0] < value[1]
                )
                if not ok:
                    raise UsageError(
                        f"sleep parameter periodic_imi_s must be (low, high) seconds with "
                        f"0 <= low < high, got {value!r}"
                    )
                continue
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise UsageError(
                    f"sleep parameter {f.name} must be a finite number >= 0, got {value!r}"
                )
        for name in ("epoch_s", "bin_s", "median_window_s", "threshold_multiplier",
                     "min_block_s", "inactivity_s", "nonwear_window_s", "movement_max_s"):
            if getattr(self, name) <= 0:
                raise UsageError(f"sleep parameter {name} must be > 0, got {getattr(self, name)}")
        for name in ("min_coverage", "nonwear_sleep_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise UsageError(
                    f"sleep parameter {name} is a fraction in (0, 1], got {getattr(self, name)}"
                )
        if not 0 <= self.threshold_percentile <= 100:
            raise UsageError(
                f"sleep parameter threshold_percentile must be 0-100, got "
                f"{self.threshold_percentile}"
            )
        if self.threshold_min_deg > self.threshold_max_deg:
            raise UsageError(
                "sleep parameter threshold_min_deg must not exceed threshold_max_deg "
                f"({self.threshold_min_deg} > {self.threshold_max_deg})"
            )
        ratio = self.epoch_s / self.bin_s
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise UsageError(
                f"sleep parameter epoch_s ({self.epoch_s:g}) must be a whole multiple of "
                f"bin_s ({self.bin_s:g})"
            )
        for name in ("periodic_min_lms", "nonwear_min_axes"):
            value = getattr(self, name)
            if value != int(value) or value < 1:
                raise UsageError(f"sleep parameter {name} must be a whole number >= 1, got {value}")
        if self.nonwear_min_axes > 3:
            raise UsageError(
                f"sleep parameter nonwear_min_axes must be 1-3, got {self.nonwear_min_axes}"
            )

    def to_dict(self) -> dict:
        """The parameters as a plain dict (tuples as lists), for provenance."""
        d = asdict(self)
        d["periodic_imi_s"] = list(d["periodic_imi_s"])
        return d


@dataclass
class SleepEstimate:
    """What :func:`estimate_sleep` found.

    Attributes
    ----------
    epochs : DataFrame
        One row per 30 s epoch per sensor (:data:`EPOCH_COLUMNS`): ``onset_s``,
        ``duration_s`` (night clock), ``side``, ``angle_deg`` (posture angle for
        plotting: the angle of the epoch's mean gravity vector from the sensor's median
        orientation in the sleep period, or in the whole recording without one; NaN
        without data), ``angle_change_deg`` (the largest change between successive 5 s
        mean directions in the epoch; NaN without data), ``nonwear`` (this sensor),
        ``in_period`` and ``sleep`` (the night's, the same on both sensors' rows; an
        epoch without data on any worn sensor is not sleep).
    period : tuple of float or None
        Sleep period onset and offset, s on the night clock; None when none was found
        (see ``info["flags"]``).
    sleep : DataFrame
        Spans of estimated sleep inside the period: ``onset_s, duration_s``.
    nonwear : DataFrame
        Non-wear spans: ``side, onset_s, duration_s``.
    info : dict
        ``method``, ``threshold_deg``, ``blocks``, ``sleep_s``, ``wake_s`` (in the
        period, recorded time only), ``nonwear_s`` per side, ``explained_movements``,
        ``params`` and ``flags`` (one-line remarks: no period, no wear, ...).
    """

    epochs: pd.DataFrame
    period: tuple[float, float] | None
    sleep: pd.DataFrame
    nonwear: pd.DataFrame
    info: dict[str, Any]

    def summary(self) -> dict:
        """The headline figures: period, hours asleep, awake and without wear, flags."""
        return {
            "period_onset_s": None if self.period is None else self.period[0],
            "period_offset_s": None if self.period is None else self.period[1],
            "sleep_h": self.info.get("sleep_s", 0.0) / 3600.0,
            "wake_h": self.info.get("wake_s", 0.0) / 3600.0,
            "nonwear_h": {k: v / 3600.0 for k, v in self.info.get("nonwear_s", {}).items()},
            "flags": list(self.info.get("flags", [])),
        }

    def get_mask(self, times_s: np.ndarray) -> np.ndarray:
        """Whether each time (night clock, s) lies in an estimated sleep span."""
        times_s = np.asarray(times_s, dtype=float)
        if self.sleep.empty:
            return np.zeros(times_s.shape, dtype=bool)
        start = self.sleep["onset_s"].to_numpy()
        end = start + self.sleep["duration_s"].to_numpy()
        idx = np.searchsorted(start, times_s, side="right") - 1
        ok = idx >= 0
        ok[ok] = times_s[ok] < end[idx[ok]]
        return ok


# -- public API -------------------------------------------------------------------------


def estimate_sleep(
    night: Night,
    params: SleepParams | None = None,
    *,
    acc_by_side: dict[str, np.ndarray] | None = None,
    calibration_by_side: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    movements: pd.DataFrame | None = None,
) -> SleepEstimate:
    """Estimate the sleep period, sleep and wake, and non-wear of one night.

    Parameters
    ----------
    night : Night
        One or two ankle sensors; gaps are respected (no data is neither sleep nor
        wake).
    params : SleepParams, optional
        Defaults cite their sources (van Hees 2013, 2015, 2018; Ahmadi 2020).
    acc_by_side : dict, optional
        Calibrated acceleration (g, ``n x 3``, the sensor's samples) by side, used
        instead of ``sensor.acc_g``.
    calibration_by_side : dict, optional
        A per-axis calibration ``(scale, offset_g)`` by side: the estimate is that of
        ``acc * scale + offset_g``, with the calibration applied to the 5 s bins' means
        and SDs (exact for an affine map per axis), so no calibrated copy is needed.
    movements : DataFrame, optional
        The detector's movements (``onset_s, offset_s, side, kind`` with kind ``lm`` or
        ``posture``, night clock). Without them every angle change over 5 degrees is
        evidence of wake, and periodic leg movements in sleep read as wake (a flag says
        so).

    Returns
    -------
    SleepEstimate

    Raises
    ------
    UsageError
        For a bad parameter object or ``acc_by_side`` entry.
    InputError
        For a ``movements`` table without the needed columns.

    References
    ----------
    See the module docstring: van Hees et al. 2018 (HDCZA), 2015 (sustained
    inactivity), 2013 (non-wear); Ahmadi et al. 2020 (non-wear vs sleep).

    Examples
    --------
    >>> from pmld.simulate import simulate_night
    >>> night = simulate_night("healthy", hours=4, fs_hz=25, evening_h=1, morning_h=0.5)
    >>> est = estimate_sleep(night)
    >>> est.period is not None
    True
    """
    p = SleepParams() if params is None else params
    if not isinstance(p, SleepParams):
        raise UsageError(f"params must be a pmld.sleep.SleepParams, got {type(p).__name__}")
    flags: list[str] = []
    n_bins = max(1, int(math.ceil(night.duration_s / p.bin_s - 1e-9)))
    per = int(round(p.epoch_s / p.bin_s))
    n_bins = int(math.ceil(n_bins / per)) * per  # whole epochs

    sides = night.sides
    bins = {}
    for sensor in night.sensors:
        acc = _acc_of(sensor, acc_by_side)
        affine = (calibration_by_side or {}).get(sensor.side)
        bins[sensor.side] = _bin_sensor(night, sensor, acc, n_bins, p, affine)

    explained, n_explained = _explained_bins(movements, n_bins, p)
    if movements is None:
        flags.append(
            "no leg movements given: periodic leg movements in sleep may read as wake"
        )

    # Non-wear candidates per sensor, then the first sleep period with them as still.
    candidates = {}
    for side in sides:
        candidates[side] = _nonwear_candidates(bins[side], p) if p.nonwear else []
    combined = _combine(bins, {s: np.zeros(n_bins, bool) for s in sides}, explained)
    threshold = _threshold(combined, p)
    period0, _ = _sleep_period(combined, threshold, np.zeros(n_bins, bool), p)

    nonwear_bins = {}
    for side in sides:
        mask = np.zeros(n_bins, dtype=bool)
        for a, b in candidates[side]:
            if period0 is not None and _is_sleep_like(a, b, period0, p):
                continue
            mask[a:b] = True
        nonwear_bins[side] = mask
    all_off = np.logical_and.reduce([nonwear_bins[s] for s in sides])

    combined = _combine(bins, nonwear_bins, explained)
    period, n_blocks = (None, 0)
    worn_s = combined["valid"].sum() * p.bin_s
    data_s = np.logical_or.reduce([bins[s]["valid"] for s in sides]).sum() * p.bin_s
    if worn_s < p.min_block_s:
        if data_s < p.min_block_s:
            flags.append(
                f"only {data_s / 60:.0f} min of usable data, less than the "
                f"{p.min_block_s / 60:g} min still block a sleep period needs: no sleep period"
            )
        else:
            flags.append(
                f"the band was worn for {worn_s / 60:.0f} min only (non-wear or gaps): "
                "no sleep period"
            )
    else:
        threshold = _threshold(combined, p)
        period, n_blocks = _sleep_period(combined, threshold, all_off, p)
        if period is None:
            flags.append(
                f"no still block longer than {p.min_block_s / 60:g} min: no sleep period"
            )

    # Sleep vs wake inside the period (5 s bins), then 30 s epochs.
    sleep_bins = np.zeros(n_bins, dtype=bool)
    in_period_bins = np.zeros(n_bins, dtype=bool)
    if period is not None:
        in_period_bins[period[0] : period[1]] = True
        evidence = combined["change"] > p.wake_angle_deg
        evidence &= ~explained
        quiet = combined["valid"] & ~evidence
        min_bins = int(math.ceil(p.inactivity_s / p.bin_s))
        for a, b in zip(*_runs(quiet), strict=True):
            if b - a >= min_bins:
                sleep_bins[a:b] = True
        sleep_bins &= in_period_bins
        # HDCZA's block also holds quiet wake in bed (reading, falling asleep): at the
        # ankle the period starts with the first sustained inactivity in it and ends
        # with the last.
        first, last = np.flatnonzero(sleep_bins)[[0, -1]] if sleep_bins.any() else (0, -1)
        if last >= first:
            period = (int(first), int(last) + 1)
            in_period_bins[:] = False
            in_period_bins[period[0] : period[1]] = True
        else:
            flags.append("no sustained inactivity in the still block: no sleep period")
            period = None
            in_period_bins[:] = False

    valid_c = combined["valid"]
    n_epochs = n_bins // per
    ep_valid = valid_c.reshape(n_epochs, per).sum(axis=1)
    ep_sleep_bins = sleep_bins.reshape(n_epochs, per).sum(axis=1)
    ep_sleep = (ep_valid > 0) & (ep_sleep_bins * 2 > ep_valid)
    ep_period = in_period_bins.reshape(n_epochs, per).sum(axis=1) * 2 >= per
    ep_sleep &= ep_period

    onset = np.arange(n_epochs) * p.epoch_s
    frames = []
    for side in sides:
        b = bins[side]
        angle = _posture_angle(b, nonwear_bins[side], in_period_bins, per)
        change = np.where(b["valid"], b["change"], np.nan).reshape(n_epochs, per)
        with np.errstate(all="ignore"):
            ch_max = np.where(np.isnan(change).all(axis=1), np.nan, np.nanmax(
                np.where(np.isnan(change), -np.inf, change), axis=1))
        nw = nonwear_bins[side].reshape(n_epochs, per).sum(axis=1) * 2 > per
        frames.append(pd.DataFrame({
            "onset_s": onset,
            "duration_s": np.full(n_epochs, p.epoch_s),
            "side": side,
            "angle_deg": angle,
            "angle_change_deg": ch_max,
            "nonwear": nw,
            "in_period": ep_period & (period is not None),
            "sleep": ep_sleep,
        }))
    epochs = pd.concat(frames, ignore_index=True)
    epochs = epochs.sort_values(["onset_s", "side"], kind="stable").reset_index(drop=True)

    # Spans in seconds, clipped to the recording.
    end_s = night.duration_s
    sleep_spans = _spans_frame(ep_sleep, p.epoch_s, end_s)
    nonwear_rows = []
    nonwear_s = {}
    for side in sides:
        starts, stops = _runs(nonwear_bins[side])
        total = 0.0
        for a, b in zip(starts, stops, strict=True):
            lo, hi = a * p.bin_s, min(b * p.bin_s, end_s)
            if hi > lo:
                nonwear_rows.append((side, lo, hi - lo))
                total += hi - lo
        nonwear_s[side] = total
        if total > 0:
            flags.append(f"{side} ankle: {len(starts)} non-wear span(s), {total / 3600:.2f} h")
    nonwear = pd.DataFrame(nonwear_rows, columns=["side", "onset_s", "duration_s"])
    nonwear = nonwear.astype({"side": object, "onset_s": float, "duration_s": float})

    period_s = None
    sleep_s = wake_s = 0.0
    if period is not None:
        period_s = (float(period[0] * p.bin_s), float(min(period[1] * p.bin_s, end_s)))
        recorded = valid_c & in_period_bins
        sleep_s = float(sleep_spans["duration_s"].sum())
        wake_s = max(0.0, float(recorded.sum() * p.bin_s) - sleep_s)
    info = {
        "method": _METHOD,
        "threshold_deg": float(threshold) if np.isfinite(threshold) else None,
        "blocks": int(n_blocks),
        "sleep_s": sleep_s,
        "wake_s": wake_s,
        "nonwear_s": nonwear_s,
        "explained_movements": int(n_explained),
        "params": p.to_dict(),
        "flags": flags,
    }
    return SleepEstimate(epochs, period_s, sleep_spans, nonwear, info)


# -- 5 s bins -----------------------------------------------------------------------------


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(
        value, int | float | np.integer | np.floating
    )


def _acc_of(sensor, acc_by_side) -> np.ndarray:
    if acc_by_side is None or sensor.side not in acc_by_side:
        return sensor.acc_g
    acc = np.asarray(acc_by_side[sensor.side])
    if acc.shape != sensor.acc_g.shape:
        raise UsageError(
            f"calibrated acceleration for the {sensor.side} ankle has shape {acc.shape}, "
            f"the sensor has {sensor.acc_g.shape}"
        )
    return acc


def _bin_sensor(
    night: Night, sensor, acc: np.ndarray, n_bins: int, p: SleepParams, affine=None
) -> dict:
    """5 s means, per-axis SDs, directions and angle changes of one sensor (of
    ``acc * scale + offset_g`` with ``affine`` = ``(scale, offset_g)``)."""
    if sensor.timestamps_s is None and np.isfinite(acc.sum()):
        count, mean, sd = _bin_uniform(night, sensor, acc, n_bins, p)
    else:
        count, mean, sd = _bin_any(night, sensor, acc, n_bins, p)
    if affine is not None:
        scale = np.asarray(affine[0], np.float64).reshape(3)
        mean = mean * scale + np.asarray(affine[1], np.float64).reshape(3)
        sd = sd * np.abs(scale)
    expected = p.bin_s * sensor.fs_hz
    valid = count >= p.min_coverage * expected
    norm = np.linalg.norm(mean, axis=1)
    valid &= norm > 0.1  # no gravity: not a usable orientation (a broken or free-falling band)
    unit = np.where(valid[:, None], mean / np.where(norm > 0, norm, 1.0)[:, None], np.nan)
    change = np.full(n_bins, np.nan)
    dot = np.einsum("ij,ij->i", unit[1:], unit[:-1])
    change[1:] = np.degrees(np.arccos(np.clip(dot, -1.0, 1.0)))
    both = np.zeros(n_bins, dtype=bool)
    both[1:] = valid[1:] & valid[:-1]
    change[~both] = np.nan
    return {"valid": valid, "unit": unit, "sd": sd, "change": change}


def _bin_uniform(night: Night, sensor, acc: np.ndarray, n_bins: int, p: SleepParams):
    """Count, mean and SD per bin of a sensor on a uniform grid with no NaN samples.

    Within a gap-free segment the samples of one bin are contiguous, so the sums are
    ``np.add.reduceat`` over each segment at the bins' first samples (found from the
    grid, and checked against ``floor(t / bin_s)`` of the very times :func:`_bin_any`
    uses, so both give the same bins). Sums of squares in float64 give the SDs: for
    a few hundred samples of about 1 g, the rounding is some 1e-16 g^2, far below the
    variance of 0.1 mg of noise (1e-8 g^2).
    """
    fs = sensor.fs_hz
    offset = night.offset_s(sensor)
    count = np.zeros(n_bins)
    s1 = np.zeros((n_bins, 3))
    s2 = np.zeros((n_bins, 3))
    segments = list(sensor.segments())
    if not segments:
        return count, s1 * np.nan, s2 * np.nan
    grid0 = sensor.grid_index(np.array([first for first, _ in segments], dtype=np.int64))
    for (first, stop), g0 in zip(segments, grid0, strict=True):
        n = stop - first
        if n <= 0:
            continue

        def bin_of(i, g0=g0):
            return np.floor((offset + (g0 + i) / fs) / p.bin_s).astype(np.int64)

        b_first, b_last = bin_of(np.array([0, n - 1]))
        ks = np.arange(b_first + 1, b_last + 1, dtype=np.int64)
        starts = np.ceil((ks * p.bin_s - offset) * fs - g0).astype(np.int64)
        starts = np.clip(starts, 1, n - 1)
        # rounding can put a boundary one sample off: move it onto the floor() rule
        starts += bin_of(starts) < ks
        starts -= bin_of(starts - 1) >= ks
        edges = np.concatenate([[0], starts])
        lo, hi = max(b_first, 0), min(b_last + 1, n_bins)
        if hi <= lo:
            continue
        keep = slice(lo - b_first, hi - b_first)
        block = acc[first:stop]
        sizes = np.diff(np.concatenate([edges, [n]]))
        count[lo:hi] += sizes[keep]
        if len(sizes) >= 3 and (sizes[1:-1] == sizes[1]).all():
            # whole bins of one size between a partial first and last: BLAS sums
            m, inner = int(sizes[1]), slice(int(edges[1]), int(edges[-1]))
            parts = [_sums(block[: edges[1]]), _bin_sums(block[inner], m),
                     _sums(block[edges[-1] :])]
            s1[lo:hi] += np.concatenate([part[0] for part in parts])[keep]
            s2[lo:hi] += np.concatenate([part[1] for part in parts])[keep]
            continue
        for k in range(3):
            x = block[:, k].astype(np.float64)
            s1[lo:hi, k] += np.add.reduceat(x, edges)[keep]
            s2[lo:hi, k] += np.add.reduceat(x * x, edges)[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / count[:, None]
        sd = np.sqrt(np.maximum(s2 / count[:, None] - mean * mean, 0.0))
    return count, mean, sd


def _sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and sum of squares (float64) of the rows of ``x``, as ``(1, 3)`` arrays."""
    x = x.astype(np.float64)
    return x.sum(axis=0, keepdims=True), np.square(x).sum(axis=0, keepdims=True)


def _bin_sums(x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis sums and sums of squares (float64) of consecutive bins of ``m`` rows.

    Each sum is a matrix product with a 0/1 selector (BLAS), over chunks that stay in
    cache; the same float64 sums as a reduction, several times faster.
    """
    n_bins = len(x) // m
    selector = np.zeros((m * 3, 3))
    selector[np.arange(m * 3), np.tile(np.arange(3), m)] = 1.0
    s1 = np.empty((n_bins, 3))
    s2 = np.empty((n_bins, 3))
    step = max(1, (1 << 16) // m)
    for b0 in range(0, n_bins, step):
        b1 = min(n_bins, b0 + step)
        flat = x[b0 * m : b1 * m].astype(np.float64).reshape(b1 - b0, m * 3)
        np.matmul(flat, selector, out=s1[b0:b1])
        np.square(flat, out=flat)
        np.matmul(flat, selector, out=s2[b0:b1])
    return s1, s2


def _bin_any(night: Night, sensor, acc: np.ndarray, n_bins: int, p: SleepParams):
    """Count, mean and SD per bin for any sensor (per-sample times, NaN samples)."""
    t = night.offset_s(sensor) + sensor.times_s()
    b = np.floor(t / p.bin_s).astype(np.int64)
    ok = np.isfinite(acc).all(axis=1) & (b >= 0) & (b < n_bins)
    b = b[ok]
    count = np.bincount(b, minlength=n_bins).astype(float)
    mean = np.empty((n_bins, 3))
    sd = np.empty((n_bins, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in range(3):
            x = acc[ok, k].astype(np.float64)
            s1 = np.bincount(b, weights=x, minlength=n_bins)
            mean[:, k] = s1 / count
            # Centre on the bin mean before squaring: precise for mg SDs on a 1 g value.
            dev = x - mean[b, k]
            sd[:, k] = np.sqrt(np.bincount(b, weights=dev * dev, minlength=n_bins) / count)
    return count, mean, sd


def _combine(bins: dict, nonwear: dict, explained: np.ndarray) -> dict:
    """One night from the worn sensors: the larger angle change of the two legs."""
    changes = []
    valids = []
    for side, b in bins.items():
        worn = b["valid"] & ~nonwear[side]
        changes.append(np.where(worn, b["change"], np.nan))
        valids.append(worn)
    stack = np.vstack(changes)
    valid = np.logical_or.reduce(valids)
    with np.errstate(all="ignore"):
        change = np.where(
            np.isnan(stack).all(axis=0), np.nan, np.nanmax(np.where(np.isnan(stack), -1, stack), 0)
        )
    change = np.where(valid & np.isnan(change), 0.0, change)  # first bin after a gap
    change = np.where(explained & valid, 0.0, change)
    return {"valid": valid, "change": change}


# -- the sleep period (HDCZA) -------------------------------------------------------------


def _rolling_median(change: np.ndarray, valid: np.ndarray, p: SleepParams) -> np.ndarray:
    window = max(1, int(round(p.median_window_s / p.bin_s)))
    series = pd.Series(np.where(valid, change, np.nan))
    return series.rolling(window, center=True, min_periods=max(1, window // 2)).median().to_numpy()


def _threshold(combined: dict, p: SleepParams) -> float:
    med = _rolling_median(combined["change"], combined["valid"], p)
    combined["median"] = med
    values = med[np.isfinite(med)]
    if values.size == 0:
        return math.nan
    raw = np.percentile(values, p.threshold_percentile) * p.threshold_multiplier
    return float(np.clip(raw, p.threshold_min_deg, p.threshold_max_deg))


def _sleep_period(combined: dict, threshold: float, breaks: np.ndarray, p: SleepParams):
    """The longest run of joined still blocks, as (first bin, stop bin), and the count."""
    if "median" not in combined or not np.isfinite(threshold):
        return None, 0
    med = combined["median"]
    low = np.isfinite(med) & (med < threshold) & combined["valid"] & ~breaks
    starts, stops = _runs(low)
    min_len = p.min_block_s / p.bin_s
    keep = (stops - starts) > min_len
    starts, stops = starts[keep], stops[keep]
    if starts.size == 0:
        return None, 0
    break_cum = np.concatenate([[0], np.cumsum(breaks)])
    joined = [[int(starts[0]), int(stops[0])]]
    for a, b in zip(starts[1:], stops[1:], strict=True):
        gap = (a - joined[-1][1]) * p.bin_s
        crosses = break_cum[a] - break_cum[joined[-1][1]] > 0
        if gap < p.max_join_gap_s and not crosses:
            joined[-1][1] = int(b)
        else:
            joined.append([int(a), int(b)])
    longest = max(joined, key=lambda r: r[1] - r[0])
    return (longest[0], longest[1]), len(starts)


# -- non-wear -----------------------------------------------------------------------------


def _nonwear_candidates(b: dict, p: SleepParams) -> list[tuple[int, int]]:
    """Runs of still, quiet bins long enough to be a band off the leg (bin ranges)."""
    quiet_axes = (b["sd"] < p.nonwear_sd_g).sum(axis=1) >= p.nonwear_min_axes
    still = b["valid"] & quiet_axes & ~(b["change"] > p.nonwear_still_deg)
    min_len = int(math.ceil(p.nonwear_window_s / p.bin_s))
    out = []
    for a, z in zip(*_runs(still), strict=True):
        if z - a < min_len:
            continue
        mean_dir = np.nanmean(b["unit"][a:z], axis=0)
        mean_dir /= np.linalg.norm(mean_dir)
        spread = np.degrees(np.arccos(np.clip(b["unit"][a:z] @ mean_dir, -1.0, 1.0)))
        if np.nanmax(spread) <= p.nonwear_range_deg:
            out.append((int(a), int(z)))
    return out


def _is_sleep_like(a: int, b: int, period: tuple[int, int], p: SleepParams) -> bool:
    """A still run with sleep on both sides inside the period, shorter than 75 % of it."""
    lo, hi = period
    margin = int(math.ceil(p.median_window_s / p.bin_s))  # the rolling median's reach
    inside = a > lo + margin and b < hi - margin
    return inside and (b - a) < p.nonwear_sleep_fraction * (hi - lo)


# -- movements that sleep explains ----------------------------------------------------------


def _explained_bins(movements, n_bins: int, p: SleepParams):
    """5 s bins whose angle change a leg movement of sleep explains, and their count."""
    mask = np.zeros(n_bins, dtype=bool)
    if movements is None or len(movements) == 0:
        return mask, 0
    missing = {"onset_s", "offset_s"} - set(movements.columns)
    if missing:
        raise InputError(
            f"movements table lacks column(s) {', '.join(sorted(missing))} "
            "(need onset_s, offset_s, side, kind)"
        )
    onset = movements["onset_s"].to_numpy(dtype=float)
    offset = movements["offset_s"].to_numpy(dtype=float)
    kind = (
        movements["kind"].astype(str).to_numpy()
        if "kind" in movements.columns
        else np.full(len(onset), "lm")
    )
    order = np.argsort(onset, kind="stable")
    onset, offset, kind = onset[order], offset[order], kind[order]
    # Merge movements of the two legs that overlap or are < 0.5 s apart (WASM 2016).
    group = np.zeros(len(onset), dtype=np.int64)
    reach = np.maximum.accumulate(offset)
    group[1:] = np.cumsum(onset[1:] >= reach[:-1] + 0.5)
    n_groups = int(group[-1]) + 1
    g_on = np.full(n_groups, np.inf)
    np.minimum.at(g_on, group, onset)
    g_off = np.full(n_groups, -np.inf)
    np.maximum.at(g_off, group, offset)
    g_posture = np.zeros(n_groups, dtype=bool)
    np.logical_or.at(g_posture, group, kind != "lm")
    short = ~g_posture & (g_off - g_on <= p.movement_max_s + 1e-9)

    prev_gap = np.full(n_groups, np.inf)
    prev_gap[1:] = g_on[1:] - g_off[:-1]
    next_gap = np.full(n_groups, np.inf)
    next_gap[:-1] = g_on[1:] - g_off[:-1]
    isolated = short & (prev_gap > p.isolation_s) & (next_gap > p.isolation_s)

    periodic = np.zeros(n_groups, dtype=bool)
    low, high = p.periodic_imi_s
    imi = np.diff(g_on)
    link = (imi >= low - 1e-9) & (imi <= high + 1e-9) & short[1:] & short[:-1]
    starts, stops = _runs(link)  # runs of links: LMs starts..stops (inclusive of stop)
    for a, z in zip(starts, stops, strict=True):
        if z - a + 1 >= p.periodic_min_lms and np.std(np.log(imi[a:z])) <= p.periodic_log_sd:
            periodic[a : z + 1] = True

    chosen = isolated | periodic
    lo = np.floor((g_on[chosen] - p.movement_before_s) / p.bin_s).astype(np.int64)
    hi = np.floor((g_off[chosen] + p.movement_after_s) / p.bin_s).astype(np.int64) + 1
    lo = np.clip(lo, 0, n_bins)
    hi = np.clip(hi, 0, n_bins)
    delta = np.zeros(n_bins + 1, dtype=np.int64)
    np.add.at(delta, lo, 1)
    np.add.at(delta, hi, -1)
    mask = np.cumsum(delta[:-1]) > 0
    return mask, int(chosen.sum())


# -- helpers ------------------------------------------------------------------------------


def _runs(mask: np.ndarray):
    """Starts and stops (exclusive) of the True runs of a boolean array."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return edges[0::2], edges[1::2]


def _spans_frame(mask: np.ndarray, step_s: float, end_s: float) -> pd.DataFrame:
    starts, stops = _runs(mask)
    onset = starts * step_s
    offset = np.minimum(stops * step_s, end_s)
    keep = offset > onset
    return pd.DataFrame(
        {"onset_s": onset[keep].astype(float), "duration_s": (offset - onset)[keep].astype(float)}
    )


def _posture_angle(b: dict, nonwear: np.ndarray, in_period: np.ndarray, per: int) -> np.ndarray:
    """Angle (deg) of each epoch's mean direction from the sensor's median orientation."""
    worn = b["valid"] & ~nonwear
    ref_mask = worn & in_period if (worn & in_period).any() else worn
    n_epochs = len(worn) // per
    if not ref_mask.any():
        return np.full(n_epochs, np.nan)
    ref = np.median(b["unit"][ref_mask], axis=0)
    ref /= np.linalg.norm(ref)
    unit = np.where(b["valid"][:, None], b["unit"], 0.0).reshape(n_epochs, per, 3).sum(axis=1)
    norm = np.linalg.norm(unit, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (unit @ ref) / norm
    return np.where(norm > 0, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), np.nan)
