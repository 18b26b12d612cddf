"""Signal conditioning: calibration of the accelerometer to local gravity.

Autocalibration
---------------
A resting accelerometer measures gravity alone, so the mean vector of every still
period should have a magnitude of exactly 1 g. A sensor with per-axis offset and gain
errors puts these points on an ellipsoid instead of the unit sphere. Following van Hees
et al. (2014) [1]_:

1. The recording is cut into non-overlapping ``epoch_s`` (10 s) epochs, within gap-free
   stretches only (no epoch spans a gap; an epoch holding a NaN sample is dropped).
2. An epoch is *still* when the standard deviation of every axis is below
   ``still_sd_g`` (13 mg) and the mean of every axis is below ``max_mean_g`` (2 g) in
   magnitude. The still epochs' mean vectors are the *points*.
3. The points must cover the sphere: on every axis at least one point beyond
   ``+sphere_crit_g`` and one beyond ``-sphere_crit_g`` (0.3 g), and there must be at
   least ``min_points`` of them.
4. Iterative weighted least squares: each calibrated point is projected onto the unit
   sphere (divided by its magnitude); per axis, offset and scale are fitted by weighted
   linear regression of the projections on the raw values; each point is re-weighted by
   the inverse of its distance to the sphere, capped at ``max_weight`` (so outliers
   count less); repeat until the mean distance changes by less than ``tol_g``. The
   repetition is Anderson-accelerated (:func:`_fit_sphere`): the same fixed point in
   tens of fits instead of hundreds or thousands.
5. The calibration error is the mean ``|1 - |a||`` over the points, before and after.
   The calibration fails when the error after is above ``max_error_g`` (0.01 g) or is not
   smaller than before.

The result is applied as ``calibrated = raw * scale + offset_g`` (per axis). The
temperature term of [1]_ is not fitted: pmld's inputs carry no temperature.

A single night at the ankle often fails step 3: a sleeper lies supine, prone and on
either side, which puts gravity in a few directions of one plane of the leg. A
calibration pooled over several recordings of the same device
(``pmld calibrate FILES... -o device.json``) can then be used instead: see
:func:`choose_calibration` and docs/calibration.md. This module opens no file: device
calibration files are read and written by :mod:`pmld.io.calibration`.

References
----------
.. [1] van Hees VT, Fang Z, Langford J, Assah F, Mohammad A, da Silva IC, Trenell MI,
   White T, Wareham NJ, Brage S. Autocalibration of accelerometer data for free-living
   physical activity assessment using local gravity and temperature: an evaluation on
   four continents. J Appl Physiol 117:738-744, 2014.
.. [2] GGIR (R package), ``g.calibrate``: 10 s non-movement windows, ``spherecrit = 0.3``
   g on both sides of every axis, SD criterion 0.013 g, a calibration error under
   0.01 g as the aim (documentation of GGIR 2.x-3.x).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import numpy as np

from .errors import InputError, UsageError
from .night import Calibration

__all__ = [
    "Calibration",
    "CalibrationParams",
    "StillPoints",
    "autocalibrate",
    "calibrate_points",
    "choose_calibration",
    "still_points",
]

_MODES = ("auto", "off")
_AXES = "xyz"


@dataclass(frozen=True)
class CalibrationParams:
    """How a sensor is calibrated to local gravity.

    Defaults follow van Hees et al. (2014) and GGIR's ``g.calibrate`` (see the module
    references) unless marked as pmld's own choice.

    Parameters
    ----------
    mode : {'auto', 'off'}
        ``auto``: autocalibrate the night; if that fails, use a stored calibration of the
        same device (matched by serial) when one is given; else leave the data as they
        are, saying why. ``off``: no calibration.
    epoch_s : float
        Length of the non-overlapping epochs (10 s [1]_ [2]_).
    still_sd_g : float
        An epoch is still when the SD of every axis is below this (0.013 g [1]_ [2]_).
    max_mean_g : float
        ... and the mean of every axis is below this in magnitude (2 g: excludes
        clipped or implausible epochs, as GGIR does).
    sphere_crit_g : float
        Coverage: on every axis, points beyond ``+sphere_crit_g`` and beyond
        ``-sphere_crit_g`` are needed (0.3 g, GGIR's ``spherecrit`` [2]_).
    min_points : int
        Fewest still epochs to fit 6 parameters from (40, about 7 minutes of stillness:
        pmld's choice; GGIR instead reads at least 72 h of data).
    max_iter : int
        Most iterations of the weighted least-squares fit (2000; pmld's choice: on
        simulated ankle nights the accelerated fit needs 20-60, plain repetition needed
        50-1800).
    tol_g : float
        The fit has converged when the mean distance of the points to the unit sphere
        changes by less than this between iterations (1e-9 g; pmld's choice: the offsets
        are then within about 0.001 mg of the fit's fixed point).
    max_weight : float
        Cap on a point's weight, the inverse of its distance to the sphere (100, i.e.
        distances under 0.01 g count alike [1]_).
    max_error_g : float
        The calibration fails when the mean ``|1 - |a||`` of the still points after it
        is above this (0.01 g [1]_ [2]_).
    device_files : tuple of str
        Stored device calibrations (``pmld calibrate -o``) to fall back on in ``auto``
        mode; only one for the recording's device serial is used. Read by the caller
        (:func:`pmld.io.calibration.read_device_calibrations`; :func:`pmld.pipeline.analyze`
        does) and given to :func:`choose_calibration` as ``stored``.
    """

    mode: str = "auto"
    epoch_s: float = 10.0
    still_sd_g: float = 0.013
    max_mean_g: float = 2.0
    sphere_crit_g: float = 0.3
    min_points: int = 40
    max_iter: int = 2000
    tol_g: float = 1e-9
    max_weight: float = 100.0
    max_error_g: float = 0.01
    device_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise UsageError(f"calibration mode must be one of {', '.join(_MODES)}, got "
                             f"{self.mode!r}")
        positive = ("epoch_s", "still_sd_g", "max_mean_g", "sphere_crit_g", "tol_g",
                    "max_weight", "max_error_g")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise UsageError(f"calibration parameter {name} must be a positive number, "
                                 f"got {value!r}")
        for name in ("min_points", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise UsageError(f"calibration parameter {name} must be a positive integer, "
                                 f"got {value!r}")
        if isinstance(self.device_files, str | os.PathLike):
            object.__setattr__(self, "device_files", (str(self.device_files),))
        else:
            object.__setattr__(self, "device_files", tuple(str(p) for p in self.device_files))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["device_files"] = list(self.device_files)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CalibrationParams:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(
                f"unknown calibration parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values = dict(values)
        if "device_files" in values:
            values["device_files"] = tuple(values["device_files"] or ())
        return cls(**values)


class StillPoints(NamedTuple):
    """The still epochs of a recording (:func:`still_points`).

    Attributes
    ----------
    points : ndarray, shape (k, 3)
        Mean acceleration (g, float64) of each still epoch.
    n_epochs : int
        Complete, finite epochs examined.
    median_magnitude_g : float
        Median magnitude of the mean vectors of all examined epochs (about 1 for data in
        g; about 9.8 for m/s^2); NaN when there is no epoch.
    """

    points: np.ndarray
    n_epochs: int
    median_magnitude_g: float


def still_points(
    acc_g: np.ndarray,
    fs_hz: float,
    params: CalibrationParams | None = None,
    *,
    segments: Iterable[tuple[int, int]] | None = None,
) -> StillPoints:
    """Mean vectors of the still epochs of a recording.

    Parameters
    ----------
    acc_g : ndarray, shape (n, 3)
        Acceleration in g.
    fs_hz : float
        Sampling rate.
    params : CalibrationParams, optional
    segments : iterable of (first, stop), optional
        Gap-free sample ranges (:meth:`pmld.night.Sensor.segments`); epochs never span
        two. Default: the whole array is one segment.

    Returns
    -------
    StillPoints

    Notes
    -----
    Epochs are taken from the start of each segment; the remainder shorter than an
    epoch is left out. An epoch holding a non-finite sample is left out. The per-epoch
    statistics come from one reshape per segment (no loop over samples).
    """
    params = params or CalibrationParams()
    acc = np.asarray(acc_g)
    if acc.ndim != 2 or acc.shape[1] != 3:
        raise InputError(f"acceleration must have shape (n, 3), got {acc.shape}")
    fs_hz = float(fs_hz)
    if not math.isfinite(fs_hz) or fs_hz <= 0:
        raise InputError(f"sampling rate must be a positive number of Hz, got {fs_hz}")
    epoch_n = int(round(params.epoch_s * fs_hz))
    if epoch_n < 2:
        raise UsageError(
            f"an epoch of {params.epoch_s:g} s at {fs_hz:g} Hz holds fewer than 2 samples"
        )
    if segments is None:
        segments = [(0, len(acc))]
    # Epochs in blocks of about 2**16 samples, transposed so that each axis of an
    # epoch is contiguous: the reductions then run at memory speed (3-4 times faster
    # than reducing the strided (epochs, samples, 3) view) and the temporaries stay small.
    chunk = max(1, (1 << 16) // epoch_n)
    means, sds = [], []
    for first, stop in segments:
        first, stop = int(first), int(stop)
        count = (stop - first) // epoch_n
        for e0 in range(0, max(count, 0), chunk):
            e1 = min(count, e0 + chunk)
            block = np.ascontiguousarray(
                acc[first + e0 * epoch_n: first + e1 * epoch_n].T, dtype=np.float32
            ).reshape(3, e1 - e0, epoch_n)
            # float64 means: a float32 sum of 1000 samples loses the sub-mg digits.
            mean = block.mean(axis=2, dtype=np.float64)
            block -= mean.astype(np.float32)[..., None]
            # The deviations are small, so float32 accumulation is ample for the SD.
            variance = np.einsum("aij,aij->ai", block, block) / epoch_n
            means.append(mean.T)
            sds.append(np.sqrt(variance, dtype=np.float64).T)
    if not means:
        return StillPoints(np.zeros((0, 3)), 0, math.nan)
    mean = np.concatenate(means)
    sd = np.concatenate(sds)
    finite = np.isfinite(mean).all(axis=1) & np.isfinite(sd).all(axis=1)
    mean, sd = mean[finite], sd[finite]
    if not len(mean):
        return StillPoints(np.zeros((0, 3)), 0, math.nan)
    magnitude = float(np.median(np.linalg.norm(mean, axis=1)))
    still = (sd < params.still_sd_g).all(axis=1) & (np.abs(mean) < params.max_mean_g).all(axis=1)
    return StillPoints(mean[still], int(len(mean)), magnitude)


def _units_problem(median_magnitude_g: float) -> str | None:
    """A reason when the data cannot be in g (the resting magnitude must be near 1)."""
    if not math.isfinite(median_magnitude_g) or 0.5 <= median_magnitude_g <= 2.0:
        return None
    hint = (
        " (m/s^2? divide by 9.80665 for g)" if 7.0 <= median_magnitude_g <= 12.0 else
        " (milli-g? divide by 1000)" if 500 <= median_magnitude_g <= 2000 else ""
    )
    return (
        f"the acceleration is not in g: its median magnitude is {median_magnitude_g:.3g}, "
        f"not about 1{hint}"
    )


def calibration_error(points: np.ndarray, offset_g=(0.0, 0.0, 0.0), scale=(1.0, 1.0, 1.0)
                      ) -> float:
    """Mean ``|1 - |a||`` (g) of still points after ``a = points * scale + offset_g``;
    NaN for no points."""
    points = np.asarray(points, dtype=np.float64)
    if not len(points):
        return math.nan
    calibrated = points * np.asarray(scale) + np.asarray(offset_g)
    return float(np.mean(np.abs(1.0 - np.linalg.norm(calibrated, axis=1))))


def calibrate_points(
    points: np.ndarray,
    params: CalibrationParams | None = None,
    *,
    n_epochs: int | None = None,
    median_magnitude_g: float = math.nan,
    device: dict[str, Any] | None = None,
) -> Calibration:
    """Fit offset and scale to still points (step 3-5 of the module's method).

    Parameters
    ----------
    points : ndarray, shape (k, 3)
        Mean vectors of still epochs, in g (:func:`still_points`, possibly pooled over
        several recordings of one device).
    params : CalibrationParams, optional
    n_epochs : int, optional
        Epochs examined (for the reason text).
    median_magnitude_g : float, optional
        From :func:`still_points`: a value far from 1 fails with a units message.
    device : dict, optional
        Copied into the result.

    Returns
    -------
    Calibration
        ``status='autocalibrated'`` on success; otherwise ``status='none'`` (identity)
        with the reason. Never raises for data that merely cannot be calibrated.
    """
    params = params or CalibrationParams()
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    device = dict(device or {})
    details: dict[str, Any] = {"method": "van Hees 2014 sphere fit, no temperature term"}
    if n_epochs is not None:
        details["n_epochs"] = int(n_epochs)
    n = len(points)
    before = calibration_error(points)

    def failed(problem: str, reason: str, **extra: Any) -> Calibration:
        return Calibration(
            status="none", reason=f"autocalibration failed: {reason}", error_before_g=before,
            error_after_g=before, n_points=n, device=device,
            details={**details, "problem": problem, **extra},
        )

    units = _units_problem(median_magnitude_g)
    if units is None and n:
        units = _units_problem(float(np.median(np.linalg.norm(points, axis=1))))
    if units:
        return failed("units", units)
    if n < params.min_points:
        examined = f" of {n_epochs} epochs" if n_epochs is not None else ""
        return failed(
            "too_few_points",
            f"too few still epochs: {n}{examined} (SD < {params.still_sd_g * 1000:g} mg on "
            f"every axis over {params.epoch_s:g} s), {params.min_points} needed"
        )
    low, high = points.min(axis=0), points.max(axis=0)
    details["points_min_g"] = [round(float(v), 4) for v in low]
    details["points_max_g"] = [round(float(v), 4) for v in high]
    crit = params.sphere_crit_g
    missing = [
        f"{'-' if side < 0 else '+'}{_AXES[axis]}"
        for axis in range(3)
        for side, ok in ((-1, low[axis] < -crit), (1, high[axis] > crit))
        if not ok
    ]
    if missing:
        ranges = ", ".join(f"{_AXES[a]} {low[a]:+.2f} to {high[a]:+.2f} g" for a in range(3))
        return failed(
            "coverage", f"poor sphere coverage: no still point beyond {crit:g} g towards "
            f"{', '.join(missing)} (still points span {ranges}; every axis needs points "
            f"beyond +-{crit:g} g: more postures are needed)"
        )
    offset, scale, iterations, converged = _fit_sphere(points, params)
    details["iterations"] = iterations
    if not converged:
        return failed(
            "not_converged", f"the sphere fit did not converge in {params.max_iter} iterations"
        )
    if not (np.isfinite(offset).all() and np.isfinite(scale).all()) or (scale <= 0).any():
        return failed(
            "degenerate", "the sphere fit is degenerate (non-finite or negative scale)"
        )
    after = calibration_error(points, offset, scale)
    fit = {"fit_offset_g": offset.round(6).tolist(), "fit_scale": scale.round(6).tolist(),
           "fit_error_g": after}
    if after > params.max_error_g:
        return failed(
            "error_too_large", f"the error after calibration is {after * 1000:.1f} mg, above the "
            f"{params.max_error_g * 1000:g} mg limit (before {before * 1000:.1f} mg)", **fit
        )
    if not after < before:
        return failed(
            "not_reduced", f"calibration did not reduce the error ({before * 1000:.1f} -> "
            f"{after * 1000:.1f} mg)", **fit
        )
    return Calibration(
        offset_g=offset,
        scale=scale,
        status="autocalibrated",
        reason=(
            f"autocalibrated from {n} still epochs: error {before * 1000:.1f} -> "
            f"{after * 1000:.1f} mg"
        ),
        error_before_g=before,
        error_after_g=after,
        n_points=n,
        device=device,
        details=details,
    )


def _fit_sphere(points: np.ndarray, params: CalibrationParams
                ) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Iterative weighted least squares of van Hees et al. (2014), accelerated.

    One fit (:func:`_sphere_step`) maps an offset and scale to the next. Its fixed point
    is the calibration; plain repetition creeps towards it (hundreds to thousands of
    fits on ankle nights, and it can stop on a flat stretch of the mean distance while
    the offsets still move by mg). Anderson acceleration [3]_ takes the combination of
    the last :data:`_ANDERSON_DEPTH` fits whose changes cancel best: the same fixed point
    in tens of fits. A combination that is not finite or gives a scale <= 0 is replaced
    by the plain fit. The stopping rule is unchanged: the mean distance changed by less
    than ``tol_g``.

    Returns offset, scale, iterations (fits made) and whether the fit converged.

    References
    ----------
    .. [3] Walker HF, Ni P. Anderson acceleration for fixed-point iterations. SIAM J
       Numer Anal 49:1715-1735, 2011.
    """
    raw = np.ascontiguousarray(points.T)  # (3, k): each axis contiguous, for speed
    x = np.concatenate([np.zeros(3), np.ones(3)])  # offset, scale
    floor = 1.0 / params.max_weight
    previous = math.inf
    fits: list[np.ndarray] = []  # the last fits G(x) ...
    changes: list[np.ndarray] = []  # ... and G(x) - x
    for iteration in range(params.max_iter + 1):
        residual, fit = _sphere_step(raw, x, floor, weighted=iteration > 0)
        if abs(previous - residual) < params.tol_g:
            return x[:3], x[3:], iteration, True
        if iteration == params.max_iter:
            break
        previous = residual
        fits = [*fits[-_ANDERSON_DEPTH + 1 :], fit]
        changes = [*changes[-_ANDERSON_DEPTH + 1 :], fit - x]
        x = fit
        if len(fits) > 1:
            f = np.array(changes).T  # (6, m)
            g = np.array(fits).T
            gamma = np.linalg.lstsq(np.diff(f, axis=1), f[:, -1], rcond=None)[0]
            mixed = fit - np.diff(g, axis=1) @ gamma
            if np.isfinite(mixed).all() and (mixed[3:] > 0).all():
                x = mixed
    return x[:3], x[3:], params.max_iter, False


#: Fits that Anderson acceleration combines (:func:`_fit_sphere`).
_ANDERSON_DEPTH = 5


def _sphere_step(raw: np.ndarray, x: np.ndarray, floor: float, *, weighted: bool
                 ) -> tuple[float, np.ndarray]:
    """The mean distance to the unit sphere of the points calibrated by ``x`` (offset,
    scale), and the next fit: each point projected onto the sphere, weighted by the
    inverse of its distance (capped; the first fit unweighted), and a weighted simple
    regression of the projections on the raw values, all axes at once."""
    offset, scale = x[:3], x[3:]
    calibrated = raw * scale[:, None]
    calibrated += offset[:, None]
    norm = np.sqrt(np.einsum("ij,ij->j", calibrated, calibrated))
    distance = np.abs(1.0 - norm)
    weight = 1.0 / np.maximum(distance, floor) if weighted else np.ones_like(norm)
    target = calibrated / norm  # the closest point on the unit sphere
    total = weight.sum()
    mean_raw = raw @ weight / total
    mean_target = target @ weight / total
    weighted_dev = (raw - mean_raw[:, None]) * weight
    # sum(weighted_dev) is 0 per axis, so the target's mean need not be removed.
    new_scale = np.einsum("ij,ij->i", weighted_dev, target) / np.einsum(
        "ij,ij->i", weighted_dev, raw
    )
    new_offset = mean_target - new_scale * mean_raw
    return float(distance.mean()), np.concatenate([new_offset, new_scale])


def autocalibrate(
    acc_g: np.ndarray,
    fs_hz: float,
    params: CalibrationParams | None = None,
    *,
    segments: Iterable[tuple[int, int]] | None = None,
    device: dict[str, Any] | None = None,
) -> Calibration:
    """Calibrate one recording to local gravity from its still epochs (van Hees 2014).

    Parameters
    ----------
    acc_g : ndarray, shape (n, 3)
        Acceleration in g (NaN samples are missing data).
    fs_hz : float
        Sampling rate.
    params : CalibrationParams, optional
    segments : iterable of (first, stop), optional
        Gap-free sample ranges (:meth:`pmld.night.Sensor.segments`).
    device : dict, optional
        Sensor metadata; ``serial`` and ``model`` are kept in the result.

    Returns
    -------
    Calibration
        ``autocalibrated``, or ``none`` with the reason (too few still epochs, poor
        sphere coverage, no convergence, error too large or not reduced, wrong units).

    Examples
    --------
    >>> from pmld.simulate import simulate_night
    >>> sensor = simulate_night("moderate", hours=1, seed=1).sensor
    >>> cal = autocalibrate(sensor.acc_g, sensor.fs_hz, segments=sensor.segments())
    >>> cal.status in ("autocalibrated", "none") and bool(cal.reason)
    True
    """
    params = params or CalibrationParams()
    found = still_points(acc_g, fs_hz, params, segments=segments)
    return calibrate_points(
        found.points, params, n_epochs=found.n_epochs,
        median_magnitude_g=found.median_magnitude_g, device=_device_identity(device),
    )


def _device_identity(device: dict[str, Any] | None) -> dict[str, Any]:
    device = device or {}
    return {k: device[k] for k in ("serial", "model") if device.get(k) not in (None, "")}


def choose_calibration(
    acc_g: np.ndarray,
    fs_hz: float,
    params: CalibrationParams | None = None,
    *,
    device: dict[str, Any] | None = None,
    stored: Iterable[Calibration] = (),
    segments: Iterable[tuple[int, int]] | None = None,
) -> Calibration:
    """The calibration to apply to one sensor, and why.

    ``mode='off'``: none. ``mode='auto'``: autocalibrate; if that fails, use the stored
    calibration for the sensor's device serial (from ``stored``); if there is none,
    none. The result's ``reason`` says what failed and what was used; a stored
    calibration of another serial is never used (the reason says so).

    Parameters
    ----------
    acc_g, fs_hz, segments
        As for :func:`autocalibrate`.
    params : CalibrationParams, optional
    device : dict, optional
        The sensor's metadata (:attr:`pmld.night.Sensor.device`); its ``serial`` matches
        stored calibrations.
    stored : iterable of Calibration
        Stored device calibrations: those of ``params.device_files``, read by
        :func:`pmld.io.calibration.read_device_calibrations`, and any others.

    Returns
    -------
    Calibration

    Raises
    ------
    UsageError
        ``params.device_files`` are named but ``stored`` is empty (the files were not
        read), or an item of ``stored`` is not a :class:`Calibration`.
    """
    params = params or CalibrationParams()
    stored = list(stored)
    for item in stored:
        if not isinstance(item, Calibration):
            raise UsageError(
                f"stored calibrations must be Calibration objects, got {item!r}: read "
                "device calibration files with pmld.io.calibration.read_device_calibration"
            )
    if params.device_files and not stored:
        raise UsageError(
            "calibration device_files are not read by choose_calibration: pass their "
            "calibrations as stored=pmld.io.calibration.read_device_calibrations(...)"
        )
    identity = _device_identity(device)
    if params.mode == "off":
        return Calibration(status="none", reason="calibration off", device=identity)
    segments = None if segments is None else list(segments)
    found = still_points(acc_g, fs_hz, params, segments=segments)
    auto = calibrate_points(
        found.points, params, n_epochs=found.n_epochs,
        median_magnitude_g=found.median_magnitude_g, device=identity,
    )
    if auto.status == "autocalibrated":
        return auto
    if not stored:
        return auto
    if auto.details.get("problem") == "units":
        return auto  # a stored calibration cannot repair data in the wrong units
    serial = identity.get("serial")
    if serial is None:
        auto.reason += "; the sensor has no device serial, so no stored calibration is used"
        return auto
    matching = [c for c in stored if c.serial == str(serial)]
    if not matching:
        others = sorted({c.serial or "no serial" for c in stored})
        auto.reason += (
            f"; stored calibration(s) for device {', '.join(others)} not used: this sensor "
            f"is device {serial}"
        )
        return auto
    chosen = matching[-1]
    points = found.points
    before = calibration_error(points)
    after = calibration_error(points, chosen.offset_g, chosen.scale)
    where = f" from {chosen.source}" if chosen.source else ""
    created = chosen.details.get("created_utc")
    stored_figures = (
        f"{chosen.n_points} still epochs, error {chosen.error_before_g * 1000:.1f} -> "
        f"{chosen.error_after_g * 1000:.1f} mg"
        + (f", {created}" if created else "")
    )
    night_figures = (
        f"; on this night's {len(points)} still epochs {before * 1000:.1f} -> "
        f"{after * 1000:.1f} mg" if len(points) else ""
    )
    return Calibration(
        offset_g=chosen.offset_g.copy(),
        scale=chosen.scale.copy(),
        status="stored",
        reason=(
            f"stored calibration of device {serial}{where} ({stored_figures}) used because "
            f"{auto.reason}{night_figures}"
        ),
        error_before_g=before,
        error_after_g=after,
        n_points=len(points),
        device={**identity, **chosen.device},
        source=chosen.source,
        details={
            **auto.details,
            "stored_error_before_g": chosen.error_before_g,
            "stored_error_after_g": chosen.error_after_g,
            "stored_n_points": chosen.n_points,
        },
    )
