"""Synthetic nights of ankle acceleration with ground truth.

:func:`simulate_night` builds a :class:`~pmld.night.Night` that looks like one night of
a tri-axial accelerometer strapped to the ankle: postures and posture changes, leg
movements (LMs) alone, in periodic series and in short-interval doublets, wake spans
with irregular movement, sensor noise, bias drift, calibration error, int16
quantisation and, for a bad recording, artefacts that are not movements of the
sleeper. Everything the generator did is written into ``night.annotations``
(``source="simulator"``); :func:`truth_table` turns those rows into one row per
movement for scoring a detector.

Signal model
------------
Leg frame (the same for both legs): ``x`` distal along the shank, ``y`` towards the
body's right, ``z`` anterior (out of the shin). The band sits on the shank at an
arbitrary, fixed orientation: a uniformly random rotation per sensor (the *mount*), so
gravity is spread over the sensor's axes. The accelerometer reads specific force in g:
``1 g`` along "up" at rest plus linear acceleration, then per-axis gain and offset
errors, a slow random-walk bias drift, white noise, quantisation to the counts of an
int16 converter of ±``range_g`` and saturation at its limits.

* **Posture**: "up" expressed in the leg frame (supine ``+z``, prone ``-z``, lying on
  the left side ``+y``, on the right side ``-y``, supine with knees bent: shank tilted
  45 degrees), each leg with its own random tilt (SD 12 degrees). A posture change is a
  minimum-jerk rotation from one "up" to the next over 2-8 s, with an extra swing of
  5-25 degrees and 0.3-4 Hz body acceleration (six components of 0.01-0.06 g).
* **Leg movement**: dorsiflexion with knee/hip flexion rotates the band by
  ``angle_deg`` (lognormal, median 12 degrees, mostly 5-25) about a roughly
  medio-lateral axis (``y`` plus noise of SD 0.25 rad) with a minimum-jerk onset
  (0.25-0.8 s) [3]_, a plateau with a slight 0.2-1.5 Hz wobble (up to 15 % of the
  angle) and a minimum-jerk release (0.3-1.0 s). The tangential and centripetal
  acceleration of the band (lever arm 3-12 cm) follow from the angle; a damped 8-20 Hz
  transient (median 0.02 g) marks onset and release, and a 7-12 Hz tremor of 1-5 mg
  rides on the plateau. With the shank horizontal and the axis horizontal, a 10-20
  degree movement moves 0.17-0.34 g of gravity between axes while the magnitude stays
  near 1 g. Lying on the side the axis is nearly vertical and the gravity change
  shrinks (to about a third): mostly the linear acceleration remains.
* **PLM series**: the inter-movement interval (IMI, onset to onset) is lognormal
  (``imi_log_mean``, ``imi_log_sd``; each series shifts its own mean by
  ``imi_series_log_sd``) truncated to ``imi_range_s``, which puts the main peak at
  15-35 s as in RLS [1]_, [2]_. Series hold 4 to ``series_max_lms`` LMs (lognormal
  length), start only in NREM sleep, are more frequent early in the night
  (``first_half_ratio``), and end at REM sleep, wake or a posture change. The gaps
  between series are chosen so that the night reaches its PLM target. A fraction of
  series LMs is followed within 10 s by a second LM (a short-IMI doublet), and
  isolated LMs (with their own doublets) are scattered through sleep; some LMs last
  10.5-25 s (non-candidates).
* **Sleep**: sleep onset latency, brief awakenings, the final awakening, and 90-minute
  NREM/REM cycles whose REM periods lengthen through the night [4]_. Wake spans carry
  irregular leg movements (any axis, 5-40 degrees, 0.5-30 s, slower and larger than
  LMs in sleep) and body movements.
* **Second ankle**: its own mount and tilt; a fraction of LMs is bilateral (the second
  leg starts 0-0.5 s later), the rest is unilateral, mostly on each series' dominant
  side.
* **Bad recordings** (``noisy``): bed-partner bumps (1-5 Hz), cable knocks (15-40 Hz)
  and spikes, none of them leg movements.

Out of bed (``evening_h``, ``morning_h``)
-----------------------------------------
The night in bed (``hours``) can be framed by an awake evening and morning, so that a
sleep-window estimator has something to find. Upright, "up" is ``-x`` in the leg
frame (the shank vertical). The evening is a chain of bouts (walking 10 s-10 min,
standing, sitting 2-60 min with the feet on the floor (shank vertical to 35 degrees
forward) or the legs crossed (40-70 degrees), or reclining with the feet up (shank
near horizontal)) and ends with a bedtime routine: walk, stand at the basin, walk, sit
on the bed's edge, then a 3-6 s turn into the first lying posture of the night. The
morning starts with the reverse (out of bed onto its edge, stand, walk, stand, walk)
and continues with bouts. Every bout carries a postural wobble of the shank (an AR(1)
angle of SD 0.5-1.2 degrees, time constant 2-20 s) and fidgets (wake movements, 3-25
degrees, 0.5-20 s, 0.5-1 per minute); walking swings the shank 18-30 degrees
peak-to-peak at 0.8-1 strides/s (left leg half a stride late) with its tangential and
centripetal acceleration at 0.4 m from the knee and a heel strike per stride (damped
10-25 Hz, about 1.2 g). Changes between bouts are 1.5-4 s turns. Truth: the ``wake``
span runs from the first sample to sleep onset and from the final awakening to the
last sample; ``out_of_bed`` rows cover the evening and the morning, ``walking`` rows the
walking bouts; evening and morning movements are not ``lm`` rows.

Non-wear (``nonwear``)
----------------------
The band lies off the leg on a table: 5-15 s of handling (a turn with swing and body
acceleration) at each end, and in between one constant orientation (in 4 spans of 5
the housing flat, the sensor's ``z`` within a few degrees of vertical, else at random)
with only the sensor's noise, drift and quantisation. Truth: a ``nonwear`` row per
sensor; a leg's ``lm`` rows overlapping its non-wear are removed (no band saw them),
whole-body rows only when every band is off.

What a detector sees
--------------------
Measured on ``moderate`` nights at 100 Hz (10th / 50th / 90th percentiles):

* LM in sleep: largest deviation from the pre-onset baseline 0.06 / 0.18 / 0.39 g;
  after a 0.5 Hz high-pass 0.03 / 0.08 / 0.22 g; orientation change of the 1 Hz
  low-passed vector 0.036 / 0.14 / 0.33 g (5th percentile 0.023 g, side lying) while
  its magnitude changes by only 0.005 g (median). Energy: about 30 % below 0.5 Hz
  (the orientation step), 60 % at 0.5-3 Hz, 10 % at 3-8 Hz, under 1 % above 8 Hz
  (the onset and release transients: brief, but they mark the onset sharply).
* Posture change: 0.28 / 0.63 / 2.0 g from the old baseline, lasting 2-8 s, with a
  new baseline afterwards; slow (over 98 % of the energy below 3 Hz), so after a
  0.5 Hz high-pass only 0.08 / 0.11 / 0.16 g, no more than a large LM.
* Leg movement in wake: 0.12 / 0.31 / 0.71 g, often several seconds long.
* Noise: white, ``noise_g`` per axis (2 mg; 12 mg in ``noisy``), flat to Nyquist;
  quantisation step ``range_g / 32768`` (0.24 mg at 8 g); drift of tens of mg over a
  night, below 0.01 Hz; gain and offset errors put the resting magnitude 1-3 % (up to
  about 7 % in ``noisy``) away from 1 g depending on orientation.

The ground truth depends only on the scenario, seed and length, not on ``fs_hz``
(except the length of spikes).

Scenarios
---------
PLMS index of the truth (WASM 2016 scoring of the ``lm`` rows, bilateral LMs merged),
8 h nights, seeds 0-9, mean (range); see ``benchmarks/bench_simulate.py``:

=========  =================  ==================================================
scenario   PLMS index (/h)    what it is
=========  =================  ==================================================
healthy    2.0 (1.4-3.5)      isolated LMs, rare short series
moderate   25 (20-30)         RLS with a moderate PLM disorder
severe     78 (56-106)        long series through most of NREM sleep
noisy      25 (20-30)         ``moderate`` through a bad sensor, with artefacts
restless   30 (23-48)         ``moderate`` PLMs in fragmented sleep
bilateral  25 (19-29)         ``moderate`` on two ankles, a third bilateral
=========  =================  ==================================================

Ground truth
------------
Annotation rows (all ``source="simulator"``):

==============  ====================================================================
label           meaning
==============  ====================================================================
``lm``          a leg movement of one leg (``side`` left/right); a bilateral LM is
                two rows. Leg movements during wake spans are ``lm`` too: a PSG
                scorer scores them on the tibialis EMG, and they set IMIs.
``posture``     a posture change or large body movement (rolling over, repositioning,
                in sleep or wake); whole body, ``side="unknown"``. Never an LM.
``wake``        a span of wakefulness (from the start of the recording to sleep
                onset, brief awakenings, and from the final awakening to the end).
``plm_series``  first onset to last offset of one generated periodic series
                (``side`` the only leg involved, else ``"unknown"``).
``lights_off``  zero duration, a few minutes after the start.
``lights_on``   zero duration, a few minutes before the end.
``artifact``    a non-movement disturbance (bed partner bump, cable knock, spike);
                only in scenarios that have them. Not a pmld label yet.
``out_of_bed``  the evening before getting into bed and the morning after getting up
                (only with ``evening_h`` / ``morning_h``).
``walking``     a walking bout out of bed.
``nonwear``     the band of ``side`` was off the leg (only with ``nonwear``).
==============  ====================================================================

The sleep period (sleep onset to final awakening) is ``meta["sleep_onset_s"]`` to
``meta["final_awakening_s"]``; its sleep is the period minus the ``wake`` rows.

In a one-sensor night every leg movement is on the recorded leg (the scenario
describes what that leg does); in a two-sensor night movements are shared out between
the legs as described above.

An ``lm`` onset is the start of the minimum-jerk rise and its offset the end of the
release; the first and last tenth of a second move very little, so a detector's onset
is typically 0.05-0.2 s later and its offset a little earlier.

The generated series are the generator's intent, not a scoring: a doublet or an LM
longer than 10 s inside a generated series breaks it under WASM 2016 rules, and an
isolated LM 10-90 s from a series can extend it. Score the ``lm`` rows with the same
scorer as the detector's output to get the reference PLM index.

References
----------
.. [1] Ferri R. et al. (2016). World Association of Sleep Medicine (WASM) 2016
   standards for recording and scoring leg movements in polysomnograms developed by a
   joint task force from the IRLSSG. Sleep Medicine 26:86-95.
.. [2] Ferri R. et al. (2006). Sleep 29(6):759-769 (IMI histograms and periodicity
   index of leg movements in RLS).
.. [3] Flash T., Hogan N. (1985). The coordination of arm movements: an experimentally
   confirmed mathematical model. Journal of Neuroscience 5(7):1688-1703.
.. [4] Carskadon M.A., Dement W.C. Normal human sleep: an overview. In: Kryger M.H.
   et al. (eds.), Principles and Practice of Sleep Medicine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from scipy.signal import lfilter
from scipy.special import ndtr, ndtri

from .errors import UsageError
from .night import Night, Sensor, as_utc, check_timezone, make_annotations, subtract_spans

__all__ = ["SCENARIOS", "Scenario", "simulate_night", "truth_table"]

#: Standard gravity in m/s^2, to turn kinematics in metres into g.
STANDARD_GRAVITY = 9.80665

_MIN_HOURS = 1.0 / 60.0
_MAX_HOURS = 48.0
_MIN_FS_HZ = 10.0
_MAX_FS_HZ = 1000.0
_MAX_SAMPLES = 20_000_000
_CHUNK = 1 << 19
_SIMULATOR = "simulator"

# (name, "up" in the leg frame, probability of being chosen after a change)
_POSTURES = (
    ("supine", (0.0, 0.0, 1.0), 0.34),
    ("supine_knees_bent", (-math.sqrt(0.5), 0.0, math.sqrt(0.5)), 0.06),
    ("left_side", (0.0, 1.0, 0.0), 0.25),
    ("right_side", (0.0, -1.0, 0.0), 0.25),
    ("prone", (0.0, 0.0, -1.0), 0.10),
)
_POSTURE_UP = np.array([p[1] for p in _POSTURES])
_POSTURE_P = np.array([p[2] for p in _POSTURES])


@dataclass(frozen=True)
class Scenario:
    """Every knob of a simulated night, with units.

    Derive variants with :func:`dataclasses.replace`, e.g.
    ``replace(SCENARIOS["moderate"], noise_g=0.005)``. Rates "per hour of sleep" refer to
    total sleep time; durations and intervals drawn from lognormal laws are given by
    their median and the SD of their natural logarithm.

    Parameters
    ----------
    name : str
        Short name, stored in ``night.meta["scenario"]``.
    description : str
        What the scenario represents.
    sleep_onset_latency_min : float
        Median minutes from lights off to sleep onset (lognormal, log-SD 0.5; at most
        15 % of the lights-off window).
    wake_spans_per_hour : float
        Brief awakenings per hour of the sleep period (Poisson).
    wake_span_median_min : float
        Median length of a brief awakening in minutes (lognormal, log-SD 0.6,
        0.5-45 min).
    wake_movements_per_min : float
        Rate of irregular movements while awake, per minute; a quarter are body
        movements (``posture``), the rest leg movements.
    posture_interval_min : float
        Median minutes between posture changes during sleep (lognormal, log-SD 0.5,
        at least 3 min).
    plm_index : float
        Target number of LMs in generated periodic series per hour of sleep, before
        doublets and long LMs break series. The night's own target is this times a
        lognormal factor of log-SD ``plm_index_night_sd``; series are then spaced so
        that the night reaches it when NREM sleep allows.
    plm_index_night_sd : float
        Night-to-night log-SD of the PLM target.
    series_median_lms : float
        Median LMs per generated series (lognormal, log-SD ``series_log_sd``, at least 4).
    series_log_sd : float
        Log-SD of the series length.
    series_max_lms : int
        Longest series, in LMs.
    imi_log_mean, imi_log_sd : float
        Mean and SD of ln(IMI / 1 s) inside a series; in RLS the IMI histogram peaks at
        15-30 s (Ferri et al. 2006).
    imi_series_log_sd : float
        SD of a series' own ln(IMI) mean around ``imi_log_mean``.
    imi_range_s : tuple of float
        Truncation of the series IMI, in s.
    first_half_ratio : float
        PLM propensity at the start of the night over that at its end (it changes
        exponentially in between): the mean gap between series is divided, and the
        median series length multiplied, by the square root of this ratio at the start
        and by its inverse at the end; 1 for no trend.
    short_imi_fraction : float
        Probability that a series LM is followed by a second LM < 10 s later
        (isolated LMs get twice this).
    isolated_lms_per_hour : float
        Rate of non-periodic LMs per hour of sleep (Poisson; in REM at
        ``rem_isolated_factor`` of the rate).
    rem_isolated_factor : float
        Relative rate of isolated LMs in REM sleep.
    lm_duration_median_s, lm_duration_log_sd : float
        LM duration (lognormal, at least 0.5 s).
    long_lm_fraction : float
        Probability that an LM lasts 10.5-25 s instead (a non-candidate LM).
    lm_angle_median_deg : float
        Median rotation of the shank during an LM, in degrees.
    lm_angle_series_log_sd, lm_angle_log_sd : float
        Log-SD of a series' own median angle, and of each LM around it (3-40 degrees).
    bilateral : bool
        Record both ankles by default.
    bilateral_fraction : float
        With two sensors, probability that an LM involves both legs.
    dominant_side_fraction : float
        With two sensors, probability that a unilateral series LM is on its series'
        dominant leg.
    noise_g : float
        White noise SD per axis, in g.
    drift_g_per_sqrt_h : float
        Bias random-walk growth per axis, in g per square root of an hour.
    offset_sd_g : float
        SD of the fixed per-axis offset error, in g.
    gain_sd : float
        SD of the per-axis relative gain error (0.01 is 1 %).
    bumps_per_hour : float
        Bed-partner bumps per hour: damped 1-5 Hz oscillation, 0.01-0.1 g, 0.5-4 s, on
        every sensor at once.
    knocks_per_hour : float
        Cable knocks per hour: damped 15-40 Hz transient, 0.05-1 g, on one sensor.
    spikes_per_hour : float
        Single-sample to three-sample glitches per hour, 0.3-3 g, on one sensor.
    """

    name: str = "custom"
    description: str = ""
    sleep_onset_latency_min: float = 15.0
    wake_spans_per_hour: float = 1.0
    wake_span_median_min: float = 4.0
    wake_movements_per_min: float = 1.5
    posture_interval_min: float = 40.0
    plm_index: float = 28.0
    plm_index_night_sd: float = 0.15
    series_median_lms: float = 20.0
    series_log_sd: float = 0.8
    series_max_lms: int = 400
    imi_log_mean: float = 3.2
    imi_log_sd: float = 0.3
    imi_series_log_sd: float = 0.1
    imi_range_s: tuple[float, float] = (10.0, 90.0)
    first_half_ratio: float = 2.0
    short_imi_fraction: float = 0.04
    isolated_lms_per_hour: float = 8.0
    rem_isolated_factor: float = 0.5
    lm_duration_median_s: float = 1.8
    lm_duration_log_sd: float = 0.5
    long_lm_fraction: float = 0.01
    lm_angle_median_deg: float = 12.0
    lm_angle_series_log_sd: float = 0.3
    lm_angle_log_sd: float = 0.25
    bilateral: bool = False
    bilateral_fraction: float = 0.35
    dominant_side_fraction: float = 0.75
    noise_g: float = 0.002
    drift_g_per_sqrt_h: float = 0.007
    offset_sd_g: float = 0.01
    gain_sd: float = 0.005
    bumps_per_hour: float = 0.0
    knocks_per_hour: float = 0.0
    spikes_per_hour: float = 0.0

    def __post_init__(self) -> None:
        fractions = (
            "short_imi_fraction",
            "rem_isolated_factor",
            "long_lm_fraction",
            "bilateral_fraction",
            "dominant_side_fraction",
        )
        positive = (
            "wake_span_median_min",
            "posture_interval_min",
            "series_median_lms",
            "lm_duration_median_s",
            "lm_angle_median_deg",
            "first_half_ratio",
        )
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "description", "bilateral", "imi_range_s"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UsageError(f"scenario field {f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"scenario field {f.name} must be finite and >= 0, got {value}")
            if f.name in fractions and value > 1:
                raise UsageError(f"scenario field {f.name} is a fraction in 0..1, got {value}")
            if f.name in positive and value <= 0:
                raise UsageError(f"scenario field {f.name} must be > 0, got {value}")
        if not isinstance(self.bilateral, bool):
            raise UsageError(
                f"scenario field bilateral must be True or False, not {self.bilateral!r}"
            )
        low, high = self.imi_range_s
        if not (0 < low < high and math.isfinite(high)):
            raise UsageError(
                f"scenario imi_range_s must be (low, high) with 0 < low < high, got "
                f"{self.imi_range_s}"
            )
        if self.series_max_lms < 4:
            raise UsageError(
                "scenario series_max_lms must be at least 4 (a PLM series is >= 4 LMs)"
            )


_MODERATE = Scenario(
    name="moderate",
    description=(
        "Untreated RLS with a moderate PLM disorder: PLMS index about 20-35/h, series of "
        "tens of LMs with IMIs peaking at 20-30 s, more in the first half of the night; a "
        "good recording (2 mg noise)."
    ),
)

#: The built-in scenarios, by name. Each entry's ``description`` says what it represents.
SCENARIOS: dict[str, Scenario] = {
    "healthy": replace(
        _MODERATE,
        name="healthy",
        description=(
            "A healthy sleeper: isolated LMs (about 6/h), rare short and loosely periodic "
            "series, PLMS index 0-5/h; good recording."
        ),
        plm_index=2.0,
        plm_index_night_sd=0.3,
        series_median_lms=6.0,
        series_log_sd=0.4,
        imi_log_mean=3.35,
        imi_log_sd=0.4,
        imi_series_log_sd=0.15,
        first_half_ratio=1.0,
        short_imi_fraction=0.05,
        isolated_lms_per_hour=6.0,
        sleep_onset_latency_min=12.0,
        wake_spans_per_hour=0.6,
        wake_span_median_min=2.0,
        wake_movements_per_min=1.0,
        posture_interval_min=35.0,
    ),
    "moderate": _MODERATE,
    "severe": replace(
        _MODERATE,
        name="severe",
        description=(
            "Severe RLS/PLMD: PLMS index about 60-100/h, long series (median 45 LMs) "
            "through most of NREM sleep, IMI peak near 22 s; good recording."
        ),
        plm_index=80.0,
        series_median_lms=45.0,
        imi_log_mean=3.1,
        imi_log_sd=0.28,
        short_imi_fraction=0.05,
        isolated_lms_per_hour=10.0,
        sleep_onset_latency_min=20.0,
        wake_spans_per_hour=1.5,
        wake_span_median_min=5.0,
        wake_movements_per_min=2.0,
        posture_interval_min=50.0,
    ),
    "noisy": replace(
        _MODERATE,
        name="noisy",
        description=(
            "The moderate sleeper recorded by a bad sensor: 12 mg white noise, fast drift, "
            "2 % gain and 30 mg offset errors, bed-partner bumps, cable knocks and spikes "
            "(label 'artifact', never 'lm')."
        ),
        noise_g=0.012,
        drift_g_per_sqrt_h=0.02,
        offset_sd_g=0.03,
        gain_sd=0.02,
        bumps_per_hour=12.0,
        knocks_per_hour=6.0,
        spikes_per_hour=4.0,
    ),
    "restless": replace(
        _MODERATE,
        name="restless",
        description=(
            "Moderate PLMs in fragmented sleep: long sleep onset, about 2.5 awakenings per "
            "hour of several minutes with much leg and body movement, posture changes every "
            "~12 min."
        ),
        sleep_onset_latency_min=35.0,
        wake_spans_per_hour=2.5,
        wake_span_median_min=6.0,
        wake_movements_per_min=3.0,
        posture_interval_min=12.0,
        isolated_lms_per_hour=12.0,
    ),
    "bilateral": replace(
        _MODERATE,
        name="bilateral",
        description=(
            "The moderate sleeper with a band on each ankle: 35 % of LMs bilateral (second "
            "leg 0-0.5 s later), the rest mostly on each series' dominant leg."
        ),
        bilateral=True,
    ),
}


class _Move(NamedTuple):
    """One leg's part of a movement."""

    onset_s: float
    duration_s: float
    side: str
    angle_deg: float
    wake: bool
    series: int


class _Posture(NamedTuple):
    onset_s: float
    duration_s: float
    change: bool


class _Artifact(NamedTuple):
    onset_s: float
    duration_s: float
    kind: str  # bump, knock, spike
    side: str  # a sensor side, or "unknown" for all sensors


class _Structure(NamedTuple):
    total_s: float
    lights_off_s: float
    lights_on_s: float
    sleep_onset_s: float
    final_awakening_s: float
    wake: list[tuple[float, float]]
    rem: list[tuple[float, float]]


# -- public API -----------------------------------------------------------------------


def simulate_night(
    scenario: str | Scenario = "moderate",
    *,
    hours: float = 8.0,
    fs_hz: float = 100.0,
    seed: int = 0,
    start_utc: datetime | str | None = None,
    timezone: str = "UTC",
    bilateral: bool | None = None,
    range_g: float = 8.0,
    side: str | None = None,
    evening_h: float = 0.0,
    morning_h: float = 0.0,
    nonwear=(),
    start_local: datetime | str | None = None,
) -> Night:
    """Simulate one night of ankle acceleration with its ground truth.

    Parameters
    ----------
    scenario : str or Scenario
        A key of :data:`SCENARIOS` (healthy, moderate, severe, noisy, restless,
        bilateral) or a :class:`Scenario`.
    hours : float
        Length of the night in bed (from getting into bed to getting up), 1/60 (one
        minute) to 48 hours; the whole recording when ``evening_h`` and ``morning_h`` are 0.
    fs_hz : float
        Sampling rate, 10 to 1000 Hz. Components of the movement model above 0.4 ``fs_hz``
        are lowered to 0.4 ``fs_hz``.
    seed : int
        Seed of :func:`numpy.random.default_rng` (via independent
        :class:`numpy.random.SeedSequence` streams for the night's structure, the
        movements, each leg and the artefacts). Same arguments and seed give
        bit-identical nights.
    start_utc : datetime or str, optional
        Time of the first sample, ISO 8601 with a UTC offset (default
        2026-01-05T22:30:00+00:00).
    timezone : str
        IANA time zone of the night (for local times).
    start_local : datetime or str, optional
        Instead of ``start_utc``: the local wall-clock time of the first sample in
        ``timezone``, without a UTC offset (e.g. ``"2026-03-28T19:30"``); the offset
        follows from the zone's rules on that date (daylight saving included).
    bilateral : bool, optional
        Record both ankles (sensors ``left`` and ``right``); by default as the scenario
        says. One sensor is on the right ankle.
    side : {'right', 'left'}, optional
        The ankle of a one-sensor night (default right). The same night is simulated
        either way; only the labels of the sensor and its truth change.
    range_g : float
        Full scale of the simulated int16 accelerometer, 2 to 64 g. Samples are
        ``counts * range_g / 32768`` with ``counts`` in -32768..32767 (saturating), stored
        as float32 (exact for power-of-two ranges).
    evening_h, morning_h : float
        Hours awake out of bed before getting into bed and after getting up (0 to 12
        each; default 0: the recording starts a few minutes before lights-off and ends a
        few minutes after lights-on, as a night without them). See "Out of bed" in the
        module docstring. The recording lasts ``evening_h + hours + morning_h``.
    nonwear : sequence of tuples
        Spans when the band is off the ankle, lying on a table: ``(onset_s,
        duration_s)`` for every sensor or ``(onset_s, duration_s, side)`` for one,
        in seconds from the first sample; each at least 60 s and inside the recording.
        See "Non-wear" in the module docstring.

    Returns
    -------
    Night
        One or two sensors with ``acc_g`` of shape ``(round(hours * 3600 * fs_hz), 3)``,
        float32; ``device`` holds model ``"pmld-sim"``, ``range_g``, ``counts_per_g``,
        ``resolution_g``, scenario, seed and the simulated calibration errors
        (``sim_*``). ``annotations`` hold the ground truth (see the module docstring) and
        ``meta`` the scenario, seed, hours, ``evening_h``, ``morning_h``, sampling rate,
        lights, sleep onset, final awakening (the sleep period's ends), total sleep time
        (``tst_s``, inside lights-off..lights-on), REM time and the night's PLM target.
        All times are seconds from the first sample.

    Raises
    ------
    UsageError
        For an unknown scenario or an out-of-range argument.

    Notes
    -----
    Cost is linear in samples plus a small cost per event: about 0.4-0.8 s per sensor
    for 8 h at 100 Hz on one core (see ``benchmarks/bench_simulate.py``); per-sample work
    is vectorised and Python loops run over events only (a few thousand a night).
    Memory: the result (12 bytes per sample per sensor, 35 MB for 8 h at 100 Hz) plus
    about 25 MB of fixed chunk buffers, whatever the length: each leg is built in place
    in its output array and turned into sensor counts chunk by chunk. Nights above 20
    million samples per sensor are refused.

    Examples
    --------
    >>> from pmld.simulate import simulate_night, truth_table
    >>> night = simulate_night("severe", hours=1.0, seed=7)
    >>> night.sensor.acc_g.shape
    (360000, 3)
    >>> truth = truth_table(night)
    >>> sorted(truth["kind"].unique())  # doctest: +SKIP
    ['lm', 'posture', 'wake_movement']
    """
    sc = _resolve_scenario(scenario)
    hours = _check_number("hours", hours, _MIN_HOURS, _MAX_HOURS, "hours")
    fs_hz = _check_number("fs_hz", fs_hz, _MIN_FS_HZ, _MAX_FS_HZ, "Hz")
    range_g = _check_number("range_g", range_g, 2.0, 64.0, "g")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    if bilateral is not None and not isinstance(bilateral, bool | np.bool_):
        raise UsageError(f"bilateral must be True, False or None, got {bilateral!r}")
    check_timezone(timezone)
    start = _start_time(start_utc, start_local, timezone)
    evening_h = _check_span_hours("evening_h", evening_h)
    morning_h = _check_span_hours("morning_h", morning_h)
    n_bed = int(round(hours * 3600.0 * fs_hz))
    n_evening = int(round(evening_h * 3600.0 * fs_hz))
    n_morning = int(round(morning_h * 3600.0 * fs_hz))
    n = n_evening + n_bed + n_morning
    if n > _MAX_SAMPLES:
        raise UsageError(
            f"{hours:g} h at {fs_hz:g} Hz is {n} samples per sensor; the simulator makes at "
            f"most {_MAX_SAMPLES}: shorten the night or lower the rate"
        )
    two = sc.bilateral if bilateral is None else bool(bilateral)
    if side is not None and (two or side not in ("left", "right")):
        raise UsageError(
            "side chooses the ankle of a one-sensor night: 'left' or 'right'"
            + (" (this night has both ankles)" if two else f", got {side!r}")
        )
    sides = ("left", "right") if two else ("right",)
    one_ankle = side or "right"  # (the loop over the legs below reuses the name `side`)
    total_s = n_bed / fs_hz  # the night in bed: every event below is timed on its clock
    evening_s = n_evening / fs_hz
    recording_s = n / fs_hz
    # The truth is written for the sensor's side label: "right" until relabelled below.
    off_spans = _check_nonwear(nonwear, recording_s, sides, one_ankle)

    # Children 0-5 are the original streams (spawning more leaves them unchanged), so a
    # night without the out-of-bed options is bit-identical to what it always was.
    streams = np.random.SeedSequence(int(seed)).spawn(10)
    rng_structure = np.random.default_rng(streams[0])
    rng_details = np.random.default_rng(streams[2])
    rng_artifact = np.random.default_rng(streams[3])

    structure = _sleep_structure(sc, total_s, rng_structure)
    night_index = sc.plm_index * math.exp(sc.plm_index_night_sd * rng_structure.standard_normal())
    postures = _posture_events(sc, structure, rng_structure)
    wake_moves, postures = _wake_movements(sc, structure, postures, sides, rng_structure)
    classes = _posture_classes(postures, rng_structure)
    windows = _series_windows(structure, postures)
    tst_s = _total_sleep_s(structure)  # (the evening and morning hold no sleep)
    series = _calibrated_series(sc, windows, night_index * tst_s / 3600.0, total_s, streams[1])
    moves = _series_moves(sc, series, sides, rng_details)
    moves += _isolated_moves(sc, structure, postures, moves + wake_moves, sides, rng_details)
    moves = _resolve_overlaps(moves + wake_moves)
    artifacts = _artifacts(sc, total_s, sides, fs_hz, rng_artifact)

    day = _day_schedule(evening_s, n_morning / fs_hz, np.random.default_rng(streams[6]))

    counts_per_g = 32768.0 / range_g
    sensors = []
    for side, stream, day_stream in zip(
        ("left", "right"), streams[4:6], streams[8:10], strict=True
    ):
        if side not in sides:
            continue
        rng_leg = np.random.default_rng(stream)
        mount = _random_rotation(rng_leg)
        extra = None
        if n != n_bed or off_spans:
            extra = _OutOfBed(
                n_evening, day, [s for s in off_spans if s[2] == side],
                np.random.default_rng(day_stream),
            )
        acc, calib = _leg_signal(
            n_bed, fs_hz, sc, postures, classes, moves, artifacts, side, mount, rng_leg,
            counts_per_g, extra=extra, n_total=n,
        )
        device = {
            "model": "pmld-sim",
            "range_g": range_g,
            "counts_per_g": counts_per_g,
            "resolution_g": 1.0 / counts_per_g,
            "scenario": sc.name,
            "seed": int(seed),
            "sim_mount_quaternion_wxyz": " ".join(f"{q:.6f}" for q in _quaternion(mount)),
            **calib,
        }
        sensors.append(Sensor(acc, fs_hz, start, side=side, device=device))

    if n != n_bed:
        structure = _shift_structure(structure, evening_s, recording_s)
    annotations = _annotations(structure, postures, moves, artifacts, evening_s)
    if n != n_bed or off_spans:
        annotations = _out_of_bed_annotations(
            annotations, day, evening_s, total_s, recording_s, off_spans, sides
        )
    rem_s = sum(b - a for a, b in structure.rem)
    meta = {
        "simulator": "pmld.simulate",
        "scenario": sc.name,
        "seed": int(seed),
        "hours": hours,
        "evening_h": evening_h,
        "morning_h": morning_h,
        "fs_hz": fs_hz,
        "bilateral": int(two),
        "range_g": range_g,
        "lights_off_s": structure.lights_off_s,
        "lights_on_s": structure.lights_on_s,
        "sleep_onset_s": structure.sleep_onset_s,
        "final_awakening_s": structure.final_awakening_s,
        "tst_s": tst_s,
        "rem_s": rem_s,
        "plm_index_target": night_index,
    }
    if one_ankle == "left":  # the same night on the other leg: relabel, nothing else
        sensors[0].side = "left"
        annotations = annotations.assign(side=annotations["side"].replace("right", "left"))
    return Night(sensors, timezone=timezone, annotations=annotations, meta=meta)


def truth_table(night: Night) -> pd.DataFrame:
    """One row per simulated movement, from the night's simulator annotations.

    Parameters
    ----------
    night : Night
        A night made by :func:`simulate_night` (or any night whose annotations with
        ``source="simulator"`` follow its conventions).

    Returns
    -------
    DataFrame
        Columns ``onset_s, offset_s, duration_s`` (s from the night's start), ``side``
        (left/right; ``unknown`` for whole-body posture rows), ``kind`` and ``series``,
        sorted by onset. ``kind`` is ``lm`` (a leg movement in sleep), ``wake_movement``
        (an ``lm`` row whose onset lies in a ``wake`` span) or ``posture``. ``series`` is
        the 0-based index, in onset order, of the ``plm_series`` span holding an ``lm``
        onset, else -1. A bilateral LM is two rows. Artefacts are not movements and are
        left out.

    Raises
    ------
    UsageError
        When the night has no simulator annotations.
    """
    ann = night.annotations
    sim = ann[ann["source"] == _SIMULATOR]
    if sim.empty:
        raise UsageError(
            "this night has no simulator ground truth (no annotations with "
            "source 'simulator'); make it with pmld.simulate.simulate_night"
        )
    moves = sim[sim["label"].isin(["lm", "posture"])].sort_values(
        ["onset_s", "side"], kind="stable"
    )
    onset = moves["onset_s"].to_numpy(dtype=float)
    duration = moves["duration_s"].to_numpy(dtype=float)
    is_lm = (moves["label"] == "lm").to_numpy()

    wake = _merge_spans(sim[sim["label"] == "wake"])
    in_wake = _inside(onset, wake)
    kind = np.where(~is_lm, "posture", np.where(in_wake, "wake_movement", "lm"))

    spans = sim[sim["label"] == "plm_series"].sort_values("onset_s", kind="stable")
    starts = spans["onset_s"].to_numpy(dtype=float)
    ends = starts + spans["duration_s"].to_numpy(dtype=float)
    idx = np.searchsorted(starts, onset, side="right") - 1
    ok = (idx >= 0) & is_lm & (kind == "lm")
    ok[ok] = onset[ok] <= ends[idx[ok]] + 1e-9
    series = np.where(ok, idx, -1).astype(np.int64)
    return pd.DataFrame(
        {
            "onset_s": onset,
            "offset_s": onset + duration,
            "duration_s": duration,
            "side": moves["side"].to_numpy(dtype=object),
            "kind": kind.astype(object),
            "series": series,
        }
    )


# -- argument checks ------------------------------------------------------------------


def _resolve_scenario(scenario: str | Scenario) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, str) and scenario in SCENARIOS:
        return SCENARIOS[scenario]
    raise UsageError(
        f"unknown scenario {scenario!r}; known scenarios: {', '.join(SCENARIOS)} "
        "(or pass a pmld.simulate.Scenario)"
    )


def _check_number(name: str, value, low: float, high: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise UsageError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{name} must be a positive number of {unit}, got {value}")
    if not low <= value <= high:
        raise UsageError(f"{name} must be between {low:g} and {high:g} {unit}, got {value:g}")
    return value


# -- night structure: sleep, wake, postures --------------------------------------------


def _lognormal(rng: np.random.Generator, median: float, log_sd: float, size=None):
    return median * np.exp(log_sd * rng.standard_normal(size))


def _sleep_structure(sc: Scenario, total_s: float, rng: np.random.Generator) -> _Structure:
    lights_off = min(rng.uniform(120.0, 360.0), 0.05 * total_s)
    lights_on = total_s - min(rng.uniform(120.0, 360.0), 0.05 * total_s)
    window = lights_on - lights_off
    sol = min(float(_lognormal(rng, sc.sleep_onset_latency_min * 60.0, 0.5)), 0.15 * window)
    sleep_onset = lights_off + sol
    final_awakening = lights_on - min(rng.uniform(60.0, 600.0), 0.05 * window)

    period = max(final_awakening - sleep_onset - 60.0, 0.0)
    n_wake = rng.poisson(sc.wake_spans_per_hour * period / 3600.0)
    onsets = np.sort(sleep_onset + 60.0 + period * rng.random(n_wake))
    lengths = np.clip(_lognormal(rng, sc.wake_span_median_min * 60.0, 0.6, n_wake), 30.0, 2700.0)
    spans = [(0.0, sleep_onset)]
    for a, length in zip(onsets, lengths, strict=True):
        b = min(a + length, final_awakening)
        if b - a < 15.0:
            continue
        if a <= spans[-1][1] + 60.0:  # awakenings this close are one awakening
            spans[-1] = (spans[-1][0], max(spans[-1][1], b))
        else:
            spans.append((float(a), float(b)))
    if final_awakening - spans[-1][1] < 60.0:
        spans[-1] = (spans[-1][0], total_s)
    else:
        spans.append((final_awakening, total_s))

    # NREM-REM cycles of about 90 min; REM closes each cycle and lengthens through the night.
    rem = []
    t = sleep_onset
    k = 0
    while True:
        cycle = float(np.clip(rng.normal(95.0, 10.0), 70.0, 120.0)) * 60.0
        rem_len = min(10.0 + 8.0 * k, 40.0) * 60.0 * rng.uniform(0.7, 1.3)
        if t + cycle > final_awakening:
            break
        rem.append((t + cycle - rem_len, t + cycle))
        t += cycle
        k += 1
    rem = subtract_spans(rem, spans)
    return _Structure(total_s, lights_off, lights_on, sleep_onset, final_awakening, spans, rem)


def _total_sleep_s(st: _Structure) -> float:
    sleep = subtract_spans([(st.lights_off_s, st.lights_on_s)], st.wake)
    return float(sum(b - a for a, b in sleep))


def _posture_events(sc: Scenario, st: _Structure, rng: np.random.Generator) -> list[_Posture]:
    events = []
    t = st.sleep_onset_s
    while True:
        t += max(float(_lognormal(rng, sc.posture_interval_min * 60.0, 0.5)), 180.0)
        duration = rng.uniform(2.0, 8.0)
        change = rng.random() < 0.7
        if t + duration > st.final_awakening_s:
            break
        if not _overlaps(t, t + duration, st.wake, 5.0):
            events.append(_Posture(t, duration, change))
    # Many awakenings start with turning over.
    for a, b in st.wake[1:]:
        duration = rng.uniform(2.0, 8.0)
        start = a + rng.uniform(2.0, 20.0)
        if rng.random() < 0.5 and start + duration < min(b, st.total_s) - 1.0:
            events.append(_Posture(start, duration, True))
    return sorted(events)


def _posture_classes(postures: list[_Posture], rng: np.random.Generator) -> list[int]:
    """Whole-body posture (an index into ``_POSTURES``) before and after each event."""
    classes = [int(rng.choice(len(_POSTURES), p=_POSTURE_P))]
    for p in postures:
        if p.change:
            choices = [k for k in range(len(_POSTURES)) if k != classes[-1]]
            probs = _POSTURE_P[choices] / _POSTURE_P[choices].sum()
            classes.append(int(rng.choice(choices, p=probs)))
        else:
            classes.append(classes[-1])
    return classes


def _wake_movements(
    sc: Scenario,
    st: _Structure,
    postures: list[_Posture],
    sides: tuple[str, ...],
    rng: np.random.Generator,
):
    """Irregular leg and body movements in every wake span."""
    if sc.wake_movements_per_min <= 0:
        return [], postures
    mean_gap = 60.0 / sc.wake_movements_per_min
    occupied = [(p.onset_s, p.onset_s + p.duration_s) for p in postures]
    moves: list[_Move] = []
    body: list[_Posture] = []
    for a, b in st.wake:
        b = min(b, st.total_s)
        t = a + rng.exponential(mean_gap)
        while t < b - 1.0:
            is_body = rng.random() < 0.25
            if is_body:
                duration = rng.uniform(1.5, 6.0)
            else:
                duration = float(np.clip(_lognormal(rng, 2.5, 0.7), 0.5, 30.0))
            angle = rng.uniform(5.0, 40.0)
            who = rng.random()
            lead = int(rng.integers(2))
            jitter = rng.uniform(0.0, 1.0)
            ratio = float(_lognormal(rng, 1.0, 0.3))
            change = rng.random() < 0.3
            gap = rng.exponential(mean_gap)
            duration = min(duration, b - t)
            if duration >= 0.5 and not _overlaps(t, t + duration, occupied, 1.0):
                if is_body:
                    body.append(_Posture(t, duration, change))
                elif len(sides) == 1:
                    moves.append(_Move(t, duration, sides[0], angle, True, -1))
                else:
                    legs = ["left"] if who < 0.35 else ["right"] if who < 0.7 else ["left", "right"]
                    if len(legs) == 1:
                        moves.append(_Move(t, duration, legs[0], angle, True, -1))
                    else:
                        first, second = legs[lead], legs[1 - lead]
                        moves.append(_Move(t, duration, first, angle, True, -1))
                        d2 = min(duration * ratio, duration - jitter)
                        if d2 >= 0.5:
                            moves.append(_Move(t + jitter, d2, second, angle * ratio, True, -1))
            t += duration + 0.5 + gap
    return moves, sorted(postures + body)


def _series_windows(st: _Structure, postures: list[_Posture]) -> list[tuple[float, float]]:
    """NREM sleep away from posture changes: where periodic series may run."""
    cuts = sorted(
        st.wake + st.rem + [(p.onset_s - 3.0, p.onset_s + p.duration_s + 5.0) for p in postures]
    )
    return subtract_spans([(st.sleep_onset_s, st.final_awakening_s)], cuts)


# -- periodic series --------------------------------------------------------------------


def _truncated_lognormal(rng, log_mean: float, log_sd: float, low: float, high: float, size):
    """Lognormal draws restricted to [low, high], by inverse transform."""
    a = ndtr((math.log(low) - log_mean) / log_sd)
    b = ndtr((math.log(high) - log_mean) / log_sd)
    u = a + (b - a) * rng.random(size)
    u = np.clip(u, 1e-12, 1 - 1e-12)
    return np.clip(np.exp(log_mean + log_sd * ndtri(u)), low, high)


def _lm_durations(sc: Scenario, rng: np.random.Generator, size: int, median: float | None = None):
    durations = np.maximum(
        _lognormal(rng, median or sc.lm_duration_median_s, sc.lm_duration_log_sd, size), 0.5
    )
    long = rng.random(size) < sc.long_lm_fraction
    return np.where(long, rng.uniform(10.5, 25.0, size), durations)


def _place_series(
    sc: Scenario, windows, mean_gap_s: float, total_s: float, stream: np.random.SeedSequence
):
    """Series of (onsets, durations) in the windows, with gaps of mean ``mean_gap_s``."""
    rng = np.random.default_rng(stream)
    log_ratio = math.log(sc.first_half_ratio)
    low, high = sc.imi_range_s
    series = []
    for a, b in windows:
        t = a
        while True:
            weight = math.exp(log_ratio * (0.5 - t / total_s))
            t += rng.exponential(mean_gap_s / weight)
            if t >= b:
                break
            size = int(
                np.clip(
                    round(weight * float(_lognormal(rng, sc.series_median_lms, sc.series_log_sd))),
                    4,
                    sc.series_max_lms,
                )
            )
            log_mean = sc.imi_log_mean + sc.imi_series_log_sd * rng.standard_normal()
            imis = _truncated_lognormal(rng, log_mean, sc.imi_log_sd, low, high, size - 1)
            median = sc.lm_duration_median_s * float(_lognormal(rng, 1.0, 0.2))
            durations = _lm_durations(sc, rng, size, median)
            onsets = t + np.concatenate([[0.0], np.cumsum(imis)])
            durations[:-1] = np.minimum(durations[:-1], imis - 1.0)
            outside = np.flatnonzero(onsets + durations + 1.0 > b)
            keep = int(outside[0]) if outside.size else size
            if keep < 4:
                break
            series.append((onsets[:keep], durations[:keep]))
            t = float(onsets[keep - 1] + durations[keep - 1])
    return series


def _calibrated_series(
    sc: Scenario, windows, target_lms: float, total_s: float, stream: np.random.SeedSequence
):
    """Place series, choosing the mean gap so the night holds about ``target_lms``.

    The same random stream is replayed for every trial gap, so the count is a
    (nearly monotone) function of the gap and a bisection on its logarithm converges.
    """
    if target_lms <= 0 or not windows:
        return []
    lo, hi = math.log(5.0), math.log(86400.0)
    best = None
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        series = _place_series(sc, windows, math.exp(mid), total_s, stream)
        count = sum(len(s[0]) for s in series)
        if best is None or abs(count - target_lms) < best[0]:
            best = (abs(count - target_lms), series)
        if count > target_lms:
            lo = mid
        else:
            hi = mid
        if hi - lo < 0.01:
            break
    return best[1]


def _series_moves(sc: Scenario, series, sides, rng: np.random.Generator):
    """Assign legs and angles to series LMs and add short-IMI doublets."""
    moves: list[_Move] = []
    for sid, (onsets, durations) in enumerate(series):
        size = len(onsets)
        series_angle = sc.lm_angle_median_deg * float(
            _lognormal(rng, 1.0, sc.lm_angle_series_log_sd)
        )
        angles = np.clip(_lognormal(rng, series_angle, sc.lm_angle_log_sd, size), 3.0, 40.0)
        dominant = sides[int(rng.integers(len(sides)))]
        doublet = rng.random(size) < sc.short_imi_fraction
        for i in range(size):
            legs = _legs(sc, sides, dominant, rng)
            moves += _leg_parts(onsets[i], durations[i], angles[i], legs, False, sid, rng)
            if doublet[i] and i + 1 < size:
                extra = float(np.clip(_lognormal(rng, 1.2, 0.4), 0.5, 3.0))
                lo = max(durations[i] + 0.7, 1.5)
                hi = min(9.5, onsets[i + 1] - onsets[i] - extra - 1.5)
                if lo < hi:
                    t = onsets[i] + rng.uniform(lo, hi)
                    moves += _leg_parts(t, extra, angles[i] * 0.8, legs, False, sid, rng)
    return moves


def _legs(sc: Scenario, sides, dominant: str, rng: np.random.Generator) -> list[str]:
    if len(sides) == 1:
        return [sides[0]]
    u = rng.random()
    if u < sc.bilateral_fraction:
        return ["left", "right"]
    other = "right" if dominant == "left" else "left"
    return [dominant] if rng.random() < sc.dominant_side_fraction else [other]


def _leg_parts(onset, duration, angle, legs, wake, series, rng) -> list[_Move]:
    """One movement on one or both legs; the second leg starts 0-0.5 s later."""
    if len(legs) == 1:
        return [_Move(float(onset), float(duration), legs[0], float(angle), wake, series)]
    lead = int(rng.integers(2))
    lag = rng.uniform(0.0, 0.5)
    ratio = float(_lognormal(rng, 1.0, 0.25))
    angle_ratio = float(_lognormal(rng, 1.0, 0.2))
    second = max(min(duration * ratio, duration + 1.0), 0.5)
    return [
        _Move(float(onset), float(duration), legs[lead], float(angle), wake, series),
        _Move(
            float(onset + lag),
            float(second),
            legs[1 - lead],
            float(angle * angle_ratio),
            wake,
            series,
        ),
    ]


def _isolated_moves(
    sc: Scenario, st: _Structure, postures, taken: list[_Move], sides, rng: np.random.Generator
) -> list[_Move]:
    """Non-periodic LMs in sleep, outside series and away from other movements."""
    sleep = subtract_spans([(st.sleep_onset_s, st.final_awakening_s)], st.wake)
    nrem = subtract_spans(sleep, st.rem)
    parts = nrem + st.rem
    weights = np.array(
        [b - a for a, b in nrem] + [sc.rem_isolated_factor * (b - a) for a, b in st.rem]
    )
    if not parts or weights.sum() <= 0:
        return []
    n_lms = rng.poisson(sc.isolated_lms_per_hour * weights.sum() / 3600.0)
    series_spans: dict[int, list[float]] = {}
    for m in taken:
        if m.series >= 0:
            span = series_spans.setdefault(m.series, [m.onset_s, m.onset_s + m.duration_s])
            span[0] = min(span[0], m.onset_s)
            span[1] = max(span[1], m.onset_s + m.duration_s)
    occupied = sorted(
        [(m.onset_s, m.onset_s + m.duration_s) for m in taken]
        + [(p.onset_s, p.onset_s + p.duration_s) for p in postures]
        + [(a - 10.0, b + 10.0) for a, b in series_spans.values()]
    )
    cum = np.cumsum(weights)
    moves: list[_Move] = []
    for _ in range(n_lms):
        x = rng.uniform(0.0, cum[-1])
        k = int(np.searchsorted(cum, x, side="right"))
        k = min(k, len(parts) - 1)
        a, b = parts[k]
        t = b - (cum[k] - x) / max(weights[k], 1e-12) * (b - a)
        duration = float(_lm_durations(sc, rng, 1)[0])
        angle = float(
            np.clip(
                _lognormal(rng, sc.lm_angle_median_deg, sc.lm_angle_series_log_sd + 0.1), 3.0, 40.0
            )
        )
        legs = _legs(sc, sides, sides[int(rng.integers(len(sides)))], rng)
        doublet = rng.random() < 2 * sc.short_imi_fraction
        gap = rng.uniform(duration + 0.7, duration + 8.0)
        extra = float(np.clip(_lognormal(rng, 1.2, 0.4), 0.5, 3.0))
        end = t + (gap + extra if doublet and gap < 9.5 else duration)
        if end > b or _overlaps(t, end, occupied, 1.5):
            continue
        parts_here = _leg_parts(t, duration, angle, legs, False, -1, rng)
        if doublet and gap < 9.5:
            parts_here += _leg_parts(t + gap, extra, angle * 0.8, legs, False, -1, rng)
        moves += parts_here
        occupied.append((t, end + 1.0))
        occupied.sort()
    return moves


def _resolve_overlaps(moves: list[_Move]) -> list[_Move]:
    """On each leg, keep at least 0.5 s between one movement's end and the next onset."""
    out = []
    for side in ("left", "right"):
        leg = sorted(m for m in moves if m.side == side)
        kept: list[_Move] = []
        for m in leg:
            if kept and m.onset_s < kept[-1].onset_s + kept[-1].duration_s + 0.5:
                room = m.onset_s - 0.5 - kept[-1].onset_s
                if room < 0.5:
                    continue
                kept[-1] = kept[-1]._replace(duration_s=room)
            kept.append(m)
        out += kept
    return sorted(out)


def _artifacts(
    sc: Scenario, total_s: float, sides, fs_hz: float, rng: np.random.Generator
) -> list[_Artifact]:
    hours = total_s / 3600.0
    out = []
    for kind, rate in (
        ("bump", sc.bumps_per_hour),
        ("knock", sc.knocks_per_hour),
        ("spike", sc.spikes_per_hour),
    ):
        count = rng.poisson(rate * hours)
        onsets = rng.uniform(0.0, total_s, count)
        for t in onsets:
            if kind == "bump":
                duration, side = rng.uniform(0.5, 4.0), "unknown"
            elif kind == "knock":
                duration, side = rng.uniform(0.1, 0.4), sides[int(rng.integers(len(sides)))]
            else:
                duration = int(rng.integers(1, 4)) / fs_hz
                side = sides[int(rng.integers(len(sides)))]
            if t + duration <= total_s:
                out.append(_Artifact(float(t), float(duration), kind, side))
    if len(sides) == 1:
        out = [a._replace(side=sides[0]) if a.kind != "bump" else a for a in out]
    return sorted(out)


# -- the signal ------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    return _unit(rng.standard_normal(3))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed rotation matrix (from a random unit quaternion)."""
    w, x, y, z = _unit(rng.standard_normal(4))
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _quaternion(m: np.ndarray) -> np.ndarray:
    w = math.sqrt(max(0.0, 1.0 + m[0, 0] + m[1, 1] + m[2, 2])) / 2.0
    if w > 1e-6:
        q = np.array(
            [
                w,
                (m[2, 1] - m[1, 2]) / (4 * w),
                (m[0, 2] - m[2, 0]) / (4 * w),
                (m[1, 0] - m[0, 1]) / (4 * w),
            ]
        )
    else:  # a half-turn: take the axis from the diagonal
        axis = np.sqrt(np.maximum(0.0, (np.diag(m) + 1.0) / 2.0))
        q = np.concatenate([[0.0], axis])
    return q / np.linalg.norm(q)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (numpy.cross is slow for one pair)."""
    return np.array(
        [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    )


def _rotate(v: np.ndarray, axis: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Rodrigues' rotation of rows ``v`` about unit ``axis`` by angles ``theta`` (rad)."""
    cos = np.cos(theta)
    sin = np.sin(theta)
    kx, ky, kz = axis
    vx, vy, vz = v[:, 0], v[:, 1], v[:, 2]
    along = (v @ axis) * (1.0 - cos)
    out = np.empty(v.shape, dtype=np.float64)
    out[:, 0] = vx * cos + (ky * vz - kz * vy) * sin + kx * along
    out[:, 1] = vy * cos + (kz * vx - kx * vz) * sin + ky * along
    out[:, 2] = vz * cos + (kx * vy - ky * vx) * sin + kz * along
    return out


def _minimum_jerk(x: np.ndarray) -> np.ndarray:
    """Minimum-jerk position profile from 0 to 1 over ``x`` in [0, 1] (Flash & Hogan 1985)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (10.0 + x * (-15.0 + 6.0 * x))


def _tilted(up: np.ndarray, sd_deg: float, rng: np.random.Generator) -> np.ndarray:
    angle = np.deg2rad(rng.normal(0.0, sd_deg))
    return _rotate(up[None, :], _random_unit(rng), np.array([angle]))[0]


def _damped(t: np.ndarray, amp: float, freq: float, tau: float, phase: float = 0.0):
    on = t >= 0.0
    tt = np.where(on, t, 0.0)
    return np.where(on, amp * np.exp(-tt / tau) * np.sin(2 * np.pi * freq * tt + phase), 0.0)


def _leg_signal(
    n: int,
    fs_hz: float,
    sc: Scenario,
    postures: list[_Posture],
    classes: list[int],
    moves: list[_Move],
    artifacts: list[_Artifact],
    side: str,
    mount: np.ndarray,
    rng: np.random.Generator,
    counts_per_g: float,
    extra: _OutOfBed | None = None,
    n_total: int | None = None,
):
    """Acceleration of one ankle in the sensor frame, quantised, and its calibration.

    ``n`` samples of the night in bed are built in place; with ``extra`` they sit after
    ``extra.n_evening`` samples of evening in an array of ``n_total`` samples, and the
    evening, morning and non-wear spans are drawn from ``extra.rng`` (never from ``rng``,
    whose draws stay those of a night without them).
    """
    f_max = 0.4 * fs_hz
    n_total = n if n_total is None else n_total
    full = np.empty((n_total, 3), dtype=np.float32)
    e0 = 0 if extra is None else extra.n_evening
    acc = full[e0 : e0 + n]

    # Postures: "up" in the leg frame, constant between changes; each leg its own tilt.
    ups = [_unit(_tilted(_POSTURE_UP[c], 12.0, rng)) for c in classes]
    prev = 0
    for j, p in enumerate(postures):
        i0 = min(n, int(round(p.onset_s * fs_hz)))
        i1 = min(n, max(i0 + 1, int(round((p.onset_s + p.duration_s) * fs_hz))))
        acc[prev:i0] = ups[j]
        acc[i0:i1] = _posture_change(ups[j], ups[j + 1], i1 - i0, fs_hz, f_max, rng)
        prev = i1
    acc[prev:] = ups[-1]

    for m in moves:
        if m.side == side:
            _add_movement(acc, m, fs_hz, f_max, rng)
    for a in artifacts:
        if a.side in (side, "unknown"):
            _add_artifact(acc, a, fs_hz, f_max, rng)
    if extra is not None:
        _render_day(full, e0, n, ups[0], ups[-1], extra, side, fs_hz, f_max)
        _render_nonwear(full, extra, mount, fs_hz, f_max)
    acc = full
    n = n_total

    # Sensor: mount rotation, gain and offset errors, drift, noise, int16 quantisation.
    gain = 1.0 + sc.gain_sd * rng.standard_normal(3)
    offset = sc.offset_sd_g * rng.standard_normal(3)
    knot_s = 60.0
    n_knots = int(math.ceil(n / fs_hz / knot_s)) + 2
    step = sc.drift_g_per_sqrt_h * math.sqrt(knot_s / 3600.0)
    drift = np.cumsum(step * rng.standard_normal((n_knots, 3)), axis=0)
    drift -= drift[0]
    knot_t = np.arange(n_knots) * knot_s
    transform = (mount * gain[:, None]).T.astype(np.float32)
    limit = 32767.0
    for c0 in range(0, n, _CHUNK):
        c1 = min(n, c0 + _CHUNK)
        block = acc[c0:c1] @ transform
        t = np.arange(c0, c1) / fs_hz
        for axis in range(3):
            block[:, axis] += (np.interp(t, knot_t, drift[:, axis]) + offset[axis]).astype(
                np.float32
            )
        noise = rng.standard_normal((c1 - c0, 3), dtype=np.float32)
        noise *= np.float32(sc.noise_g)
        block += noise
        block *= np.float32(counts_per_g)
        np.rint(block, out=block)
        np.clip(block, -limit - 1.0, limit, out=block)
        block /= np.float32(counts_per_g)
        acc[c0:c1] = block
    calib = {f"sim_gain_{ax}": float(g) for ax, g in zip("xyz", gain, strict=True)}
    calib |= {f"sim_offset_g_{ax}": float(o) for ax, o in zip("xyz", offset, strict=True)}
    return acc, calib


def _posture_change(
    u0, u1, size: int, fs_hz: float, f_max: float, rng: np.random.Generator
) -> np.ndarray:
    """A turn from "up" ``u0`` to ``u1``: slerp with a swing, plus body acceleration."""
    tau = (np.arange(size) + 0.5) / size
    s = _minimum_jerk(tau)
    cross = _cross(u0, u1)
    sin_angle = np.linalg.norm(cross)
    angle = math.atan2(sin_angle, float(u0 @ u1))
    if sin_angle < 1e-6:
        axis = _unit(_cross(u0, _random_unit(rng)))
    else:
        axis = cross / sin_angle
    path = _rotate(np.broadcast_to(u0, (size, 3)), axis, angle * s)
    swing = np.deg2rad(rng.uniform(5.0, 25.0)) * np.sin(np.pi * tau)
    path = _rotate(path, _random_unit(rng), swing)
    t = np.arange(size) / fs_hz
    window = np.sin(np.pi * tau) ** 2
    for _ in range(6):
        freq = min(rng.uniform(0.3, 4.0), f_max)
        amp = rng.uniform(0.01, 0.06)
        path += np.outer(
            amp * window * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)),
            _random_unit(rng),
        )
    return path


def _add_movement(
    acc: np.ndarray, m: _Move, fs_hz: float, f_max: float, rng: np.random.Generator
) -> None:
    """Rotate the leg by an onset-plateau-release profile and add its accelerations."""
    n = acc.shape[0]
    d = m.duration_s
    if m.wake:
        rise, fall = rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.2)
        axis = (
            _unit(np.array([0.0, 1.0, 0.0]) + 0.25 * rng.standard_normal(3))
            if (rng.random() < 0.5)
            else _random_unit(rng)
        )
        mod_depth, lever_m, jerk_g = rng.uniform(0.1, 0.5), rng.uniform(0.05, 0.15), 0.04
    else:
        rise, fall = rng.uniform(0.25, 0.8), rng.uniform(0.3, 1.0)
        axis = _unit(np.array([0.0, 1.0, 0.0]) + 0.25 * rng.standard_normal(3))
        mod_depth, lever_m, jerk_g = rng.uniform(0.0, 0.15), rng.uniform(0.03, 0.12), 0.02
    rise = min(rise, 0.35 * d)
    fall = min(fall, 0.45 * d)
    plateau = d - rise - fall
    mod_hz = min(rng.uniform(0.2, 1.0) if m.wake else rng.uniform(0.2, 1.5), f_max)
    mod_phase = rng.uniform(0, 2 * np.pi)
    lever = _unit(_cross(axis, _random_unit(rng)))
    jerks = [
        (
            t0,
            jerk_g * float(_lognormal(rng, 1.0, 0.5)),
            min(rng.uniform(8.0, 20.0), f_max),
            rng.uniform(0.04, 0.12),
            _random_unit(rng),
        )
        for t0 in (0.0, rise + plateau)
    ]
    tremor_g = rng.uniform(0.001, 0.005)
    tremor_hz = min(rng.uniform(7.0, 12.0), f_max)
    tremor_dir = _random_unit(rng)
    tremor_phase = rng.uniform(0, 2 * np.pi)

    i0 = int(round(m.onset_s * fs_hz))
    i_end = min(n, int(round((m.onset_s + d) * fs_hz)) + 1)
    i_pad = min(n, i_end + int(0.6 * fs_hz))
    if i0 >= n or i_end - i0 < 2:
        return
    t = np.arange(i0, i_pad) / fs_hz - m.onset_s
    envelope = np.where(
        t < rise,
        _minimum_jerk(t / rise),
        np.where(t < rise + plateau, 1.0, 1.0 - _minimum_jerk((t - rise - plateau) / fall)),
    )
    theta = (
        np.deg2rad(m.angle_deg)
        * envelope
        * (1.0 + mod_depth * np.sin(2 * np.pi * mod_hz * t + mod_phase) * envelope)
    )
    dt = 1.0 / fs_hz
    omega = np.gradient(theta, dt)
    alpha = np.gradient(omega, dt)
    block = acc[i0:i_pad].astype(np.float64)
    block = _rotate(block, axis, theta)
    tangential = _cross(axis, lever)
    block += (lever_m / STANDARD_GRAVITY) * (
        np.outer(alpha, tangential) - np.outer(omega * omega, lever)
    )
    for t0, amp, freq, decay, direction in jerks:
        block += np.outer(_damped(t - t0, amp, freq, decay), direction)
    block += np.outer(
        tremor_g * envelope * np.sin(2 * np.pi * tremor_hz * t + tremor_phase), tremor_dir
    )
    acc[i0:i_pad] = block


def _add_artifact(
    acc: np.ndarray, a: _Artifact, fs_hz: float, f_max: float, rng: np.random.Generator
) -> None:
    n = acc.shape[0]
    i0 = int(round(a.onset_s * fs_hz))
    if a.kind == "spike":
        count = max(1, int(round(a.duration_s * fs_hz)))
        amp = math.exp(rng.uniform(math.log(0.3), math.log(3.0)))
        acc[i0 : min(n, i0 + count)] += (amp * _random_unit(rng)).astype(np.float32)
        return
    if a.kind == "bump":
        amp = math.exp(rng.uniform(math.log(0.01), math.log(0.1)))
        freq = min(rng.uniform(1.0, 5.0), f_max)
    else:
        amp = math.exp(rng.uniform(math.log(0.05), math.log(1.0)))
        freq = min(rng.uniform(15.0, 40.0), f_max)
    i1 = min(n, int(round((a.onset_s + a.duration_s) * fs_hz)) + 1)
    t = np.arange(i0, i1) / fs_hz - a.onset_s
    wave = _damped(t, amp, freq, a.duration_s / 3.0, rng.uniform(0, 2 * np.pi))
    acc[i0:i1] += np.outer(wave, _random_unit(rng)).astype(np.float32)


# -- annotations -----------------------------------------------------------------------


def _annotations(
    st: _Structure, postures, moves: list[_Move], artifacts, offset_s: float = 0.0
) -> pd.DataFrame:
    """The truth rows; ``st`` on the recording's clock, the events ``offset_s`` earlier."""
    frames = [
        make_annotations([st.lights_off_s], 0.0, "lights_off", "unknown", _SIMULATOR),
        make_annotations([st.lights_on_s], 0.0, "lights_on", "unknown", _SIMULATOR),
        make_annotations(
            [a for a, _ in st.wake], [b - a for a, b in st.wake], "wake", "unknown", _SIMULATOR
        ),
    ]
    if postures:
        frames.append(
            make_annotations(
                [p.onset_s + offset_s for p in postures],
                [p.duration_s for p in postures],
                "posture",
                "unknown",
                _SIMULATOR,
            )
        )
    if moves:
        frames.append(
            make_annotations(
                [m.onset_s + offset_s for m in moves],
                [m.duration_s for m in moves],
                "lm",
                [m.side for m in moves],
                _SIMULATOR,
            )
        )
    spans: dict[int, list] = {}
    for m in moves:
        if m.series >= 0:
            span = spans.setdefault(m.series, [m.onset_s, m.onset_s + m.duration_s, set()])
            span[0] = min(span[0], m.onset_s)
            span[1] = max(span[1], m.onset_s + m.duration_s)
            span[2].add(m.side)
    if spans:
        rows = [spans[k] for k in sorted(spans)]
        frames.append(
            make_annotations(
                [r[0] + offset_s for r in rows],
                [r[1] - r[0] for r in rows],
                "plm_series",
                [next(iter(r[2])) if len(r[2]) == 1 else "unknown" for r in rows],
                _SIMULATOR,
            )
        )
    if artifacts:
        frames.append(
            make_annotations(
                [a.onset_s + offset_s for a in artifacts],
                [a.duration_s for a in artifacts],
                "artifact",
                [a.side for a in artifacts],
                _SIMULATOR,
            )
        )
    return pd.concat(frames, ignore_index=True)


# -- interval helpers ------------------------------------------------------------------


def _overlaps(a: float, b: float, spans, clearance: float) -> bool:
    return any(s < b + clearance and e > a - clearance for s, e in spans)


def _merge_spans(frame: pd.DataFrame) -> np.ndarray:
    if frame.empty:
        return np.zeros((0, 2))
    start = frame["onset_s"].to_numpy(dtype=float)
    end = start + frame["duration_s"].to_numpy(dtype=float)
    order = np.argsort(start, kind="stable")
    merged = []
    for a, b in zip(start[order], end[order], strict=True):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return np.array(merged)


def _inside(times: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Whether each time lies in one of the sorted, disjoint ``[start, end)`` spans."""
    if len(spans) == 0:
        return np.zeros(times.shape, dtype=bool)
    idx = np.searchsorted(spans[:, 0], times, side="right") - 1
    ok = idx >= 0
    ok[ok] = times[ok] < spans[idx[ok], 1]
    return ok


# -- out of bed and non-wear -----------------------------------------------------------

_DEFAULT_START_UTC = "2026-01-05T22:30:00+00:00"
_MAX_OUT_OF_BED_H = 12.0
_MIN_NONWEAR_S = 60.0

#: Median duration (s) and log-SD of a bout of each kind of daytime behaviour, and the
#: bounds it is clipped to.
_BOUT_LENGTH = {
    "walk": (60.0, 0.8, 10.0, 600.0),
    "stand": (90.0, 0.7, 10.0, 900.0),
    "sit": (900.0, 0.7, 120.0, 3600.0),
    "recline": (900.0, 0.7, 120.0, 3600.0),
}
#: What follows a bout: (kinds, probabilities).
_NEXT_BOUT = {
    "walk": (("stand", "sit", "recline"), (0.35, 0.5, 0.15)),
    "stand": (("walk", "sit"), (0.7, 0.3)),
    "sit": (("walk", "stand"), (0.7, 0.3)),
    "recline": (("walk", "stand"), (0.7, 0.3)),
}
#: Postural wobble of the shank (SD in degrees, time constant in s) and fidgets per
#: minute, by kind of bout.
_WOBBLE = {
    "walk": (1.0, 2.0, 0.0),
    "stand": (1.2, 3.0, 0.5),
    "sit": (0.8, 15.0, 1.0),
    "recline": (0.5, 20.0, 0.6),
    "bed_edge": (1.0, 5.0, 1.0),
}


class _Bout(NamedTuple):
    """A span of daytime behaviour, on the recording's clock, shared by both legs."""

    onset_s: float
    duration_s: float
    kind: str  # walk, stand, sit, recline, bed_edge
    stride_hz: float  # walking only
    swing_deg: float
    heel_g: float


class _OutOfBed(NamedTuple):
    n_evening: int
    day: list[_Bout]
    nonwear: list[tuple[float, float, str]]
    rng: np.random.Generator


def _start_time(start_utc, start_local, timezone: str) -> datetime:
    """The first sample's UTC time from ``start_utc`` or a local wall-clock ``start_local``."""
    if start_local is None:
        return as_utc(_DEFAULT_START_UTC if start_utc is None else start_utc)
    if start_utc is not None:
        raise UsageError("give start_utc or start_local, not both")
    when = start_local
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when.strip())
        except ValueError:
            raise UsageError(
                f"start_local {start_local!r} is not an ISO 8601 local time "
                "(e.g. 2026-03-28T19:30)"
            ) from None
    if not isinstance(when, datetime):
        raise UsageError(f"start_local must be an ISO 8601 string or datetime, got {when!r}")
    if when.tzinfo is not None:
        raise UsageError(
            f"start_local {when.isoformat()} carries a UTC offset; give the wall-clock time "
            "alone (the offset follows from timezone), or use start_utc"
        )
    return as_utc(when.replace(tzinfo=ZoneInfo(timezone)))


def _check_span_hours(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise UsageError(f"{name} must be a number of hours, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= _MAX_OUT_OF_BED_H):
        raise UsageError(f"{name} must be between 0 and {_MAX_OUT_OF_BED_H:g} hours, got {value}")
    return value


def _check_nonwear(spans, recording_s: float, sides, one_ankle: str):
    """Non-wear spans as sorted ``(onset_s, duration_s, side)``, sides as simulated."""
    if spans is None:
        return []
    if isinstance(spans, str | bytes) or not hasattr(spans, "__iter__"):
        raise UsageError(
            f"nonwear must be a list of (onset_s, duration_s[, side]) tuples, got {spans!r}"
        )
    out = []
    for span in spans:
        if isinstance(span, str | bytes) or not hasattr(span, "__len__") or len(span) not in (2, 3):
            raise UsageError(
                f"a nonwear span is (onset_s, duration_s) or (onset_s, duration_s, side), "
                f"got {span!r}"
            )
        onset, duration = span[0], span[1]
        for name, value in (("onset_s", onset), ("duration_s", duration)):
            if isinstance(value, bool) or not isinstance(
                value, int | float | np.integer | np.floating
            ) or not math.isfinite(value):
                raise UsageError(f"nonwear {name} must be a finite number, got {value!r}")
        onset, duration = float(onset), float(duration)
        if onset < 0 or duration < _MIN_NONWEAR_S or onset + duration > recording_s + 1e-6:
            raise UsageError(
                f"nonwear span ({onset:g} s, {duration:g} s) must last at least "
                f"{_MIN_NONWEAR_S:g} s and lie inside the recording (0-{recording_s:g} s)"
            )
        if len(span) == 3 and span[2] is not None:
            wanted = span[2]
            known = (one_ankle,) if len(sides) == 1 else sides
            if wanted not in known:
                raise UsageError(
                    f"nonwear side must be one of {', '.join(known)}, got {wanted!r}"
                )
            targets = [sides[0]] if len(sides) == 1 else [wanted]
        else:
            targets = list(sides)
        out += [(onset, duration, s) for s in targets]
    out.sort()
    for s in sides:
        mine = [x for x in out if x[2] == s]
        for a, b in zip(mine, mine[1:], strict=False):
            if b[0] < a[0] + a[1]:
                raise UsageError(
                    f"nonwear spans at {a[0]:g} s and {b[0]:g} s overlap on the same sensor"
                )
    return out


def _day_schedule(evening_s: float, morning_s: float, rng: np.random.Generator) -> list[_Bout]:
    """Bouts of walking, standing and sitting before and after the night in bed.

    The evening ends with a bedtime routine (walk, stand at the basin, walk, sit on the
    bed's edge) and the morning starts with its mirror; the rest is a Markov chain of
    bouts. Onsets are on the clock of the evening (0..``evening_s``) and of the morning
    (0..``morning_s``, tagged by a negative-free second list); see :func:`_place_day`.
    """
    evening = _bouts_before(evening_s, rng) if evening_s > 0 else []
    morning = _bouts_after(morning_s, rng) if morning_s > 0 else []
    return [("evening", b) for b in evening] + [("morning", b) for b in morning]


def _bout(rng: np.random.Generator, kind: str, onset: float, duration: float) -> _Bout:
    stride = rng.uniform(0.8, 1.0)
    swing = rng.uniform(18.0, 30.0)
    heel = float(np.clip(_lognormal(rng, 1.2, 0.4), 0.4, 4.0))
    return _Bout(float(onset), float(duration), kind, stride, swing, heel)


def _random_bouts(t0: float, t1: float, kind: str, rng: np.random.Generator) -> list[_Bout]:
    out = []
    t = t0
    while t1 - t > 1e-6:  # (bouts tile the span: no sample is left unwritten)
        median, log_sd, low, high = _BOUT_LENGTH[kind]
        length = float(np.clip(_lognormal(rng, median, log_sd), low, high))
        length = min(length, t1 - t)
        out.append(_bout(rng, kind, t, length))
        t += length
        kinds, probs = _NEXT_BOUT[kind]
        kind = str(rng.choice(kinds, p=probs))
    return out


def _routine(steps, total: float, rng: np.random.Generator):
    lengths = np.array([rng.uniform(lo, hi) for _, lo, hi in steps])
    if lengths.sum() > total:  # a short evening: squeeze the routine into it
        lengths *= total / lengths.sum()
    return [k for k, _, _ in steps], lengths


def _bouts_before(evening_s: float, rng: np.random.Generator) -> list[_Bout]:
    steps = (("walk", 15.0, 60.0), ("stand", 60.0, 240.0), ("walk", 5.0, 20.0),
             ("bed_edge", 10.0, 60.0))
    kinds, lengths = _routine(steps, evening_s, rng)
    t_routine = evening_s - float(lengths.sum())
    first = str(rng.choice(("sit", "stand", "walk"), p=(0.5, 0.2, 0.3)))
    out = _random_bouts(0.0, t_routine, first, rng)
    t = t_routine
    for kind, length in zip(kinds, lengths, strict=True):
        out.append(_bout(rng, kind, t, float(length)))
        t += float(length)
    return out


def _bouts_after(morning_s: float, rng: np.random.Generator) -> list[_Bout]:
    steps = (("bed_edge", 20.0, 120.0), ("stand", 10.0, 60.0), ("walk", 20.0, 90.0),
             ("stand", 60.0, 300.0), ("walk", 10.0, 60.0))
    kinds, lengths = _routine(steps, morning_s, rng)
    out, t = [], 0.0
    for kind, length in zip(kinds, lengths, strict=True):
        out.append(_bout(rng, kind, t, float(length)))
        t += float(length)
    first = str(rng.choice(("sit", "stand"), p=(0.6, 0.4)))
    return out + _random_bouts(t, morning_s, first, rng)


def _place_day(day, evening_s: float, bed_end_s: float) -> list[_Bout]:
    """The bouts on the recording's clock."""
    return [
        b._replace(onset_s=b.onset_s + (0.0 if part == "evening" else bed_end_s))
        for part, b in day
    ]


def _base_orientation(kind: str, rng: np.random.Generator) -> np.ndarray:
    """"Up" in the leg frame for a bout: upright shank (``-x``), or the shank reclined."""
    upright = np.array([-1.0, 0.0, 0.0])
    if kind in ("walk", "stand"):
        return _unit(_tilted(upright, 4.0, rng))
    if kind == "recline":  # feet up on a stool or sofa: the shank near horizontal
        return _unit(_tilted(np.array([0.0, 0.0, 1.0]), 15.0, rng))
    if kind == "sit" and rng.random() < 0.3:  # legs crossed: the shank inclined 40-70 deg
        axis = _unit(np.array([0.0, rng.normal(), rng.normal()]))
        return _unit(_rotate(upright[None, :], axis, np.deg2rad([rng.uniform(40, 70)]))[0])
    # sitting, feet on the floor: shank vertical to 35 degrees forward or 10 back
    lean = np.deg2rad(rng.uniform(-10.0, 35.0))
    up = _rotate(upright[None, :], np.array([0.0, 1.0, 0.0]), np.array([lean]))[0]
    return _unit(_tilted(up, 5.0, rng))


def _wobble(size: int, fs_hz: float, sd_deg: float, tau_s: float, rng) -> np.ndarray:
    """An AR(1) angle (rad) with SD ``sd_deg`` and time constant ``tau_s``, per sample."""
    knot_s = 0.5
    n_knots = int(size / fs_hz / knot_s) + 2
    rho = math.exp(-knot_s / tau_s)
    shocks = rng.standard_normal(n_knots) * math.sqrt(1.0 - rho * rho)
    shocks[0] = rng.standard_normal()
    knots = lfilter([1.0], [1.0, -rho], shocks)
    t = np.arange(size) / fs_hz
    return np.deg2rad(sd_deg) * np.interp(t, np.arange(n_knots) * knot_s, knots)


def _render_day(full, e0: int, n_bed: int, up_first, up_last, extra: _OutOfBed, side: str,
                fs_hz: float, f_max: float) -> None:
    """Fill the evening and morning samples of one leg (leg frame, in g)."""
    rng = extra.rng
    n = full.shape[0]
    bed_end_s = (e0 + n_bed) / fs_hz
    bouts = _place_day(extra.day, e0 / fs_hz, bed_end_s)
    boundaries = []
    fidgets = []
    for b in bouts:
        i0 = int(round(b.onset_s * fs_hz))
        i1 = min(n, int(round((b.onset_s + b.duration_s) * fs_hz)))
        if i1 <= i0:
            continue
        size = i1 - i0
        base = _base_orientation(b.kind, rng)
        sd_deg, tau_s, fidget_per_min = _WOBBLE[b.kind]
        # "up" tipped by two small angles about axes across it: a1 about e1, then a2
        # about e2 = base x e1, in closed form (cheaper than two general rotations).
        e1 = _unit(_cross(base, _random_unit(rng)))
        e2 = _cross(base, e1)
        a1 = _wobble(size, fs_hz, sd_deg, tau_s, rng)
        a2 = _wobble(size, fs_hz, sd_deg, tau_s, rng)
        cos1 = np.cos(a1)
        block = (
            np.outer(cos1 * np.cos(a2), base)
            + np.outer(cos1 * np.sin(a2), e1)
            - np.outer(np.sin(a1), e2)
        )
        if b.kind == "walk":
            block = _walk(block, b, side, fs_hz, f_max, rng)
        full[i0:i1] = block
        boundaries.append(i0)
        n_fidgets = rng.poisson(fidget_per_min * b.duration_s / 60.0)
        for t in np.sort(rng.uniform(b.onset_s, b.onset_s + b.duration_s, n_fidgets)):
            length = float(np.clip(_lognormal(rng, 2.5, 0.7), 0.5, 20.0))
            if t + length < b.onset_s + b.duration_s - 1.0:
                fidgets.append(_Move(float(t), length, side, rng.uniform(3.0, 25.0), True, -1))
    # Smooth changes of posture between bouts (standing up, sitting down), into bed at
    # the end of the evening and out of it at the start of the morning.
    for i in boundaries:
        m = int(rng.uniform(1.5, 4.0) * fs_hz)
        if i == 0 or i == e0 + n_bed or i + m >= n:
            continue
        full[i : i + m] = _posture_change(full[i - 1], full[i + m], m, fs_hz, f_max, rng)
    if e0 > 0:
        m = min(e0 - 1, int(rng.uniform(3.0, 6.0) * fs_hz))
        if m > 1:
            full[e0 - m : e0] = _posture_change(full[e0 - m - 1], up_first, m, fs_hz, f_max, rng)
    i = e0 + n_bed
    if i < n:
        m = min(n - i - 1, int(rng.uniform(3.0, 6.0) * fs_hz))
        if m > 1:
            full[i : i + m] = _posture_change(up_last, full[i + m], m, fs_hz, f_max, rng)
    for f in fidgets:
        _add_movement(full, f, fs_hz, f_max, rng)


def _walk(block: np.ndarray, b: _Bout, side: str, fs_hz: float, f_max: float, rng):
    """Gait: the shank swings about the medio-lateral axis, heel strikes jolt it.

    The shank pendulum (``swing_deg`` peak-to-peak about vertical at the stride
    frequency, plus a second harmonic) and its tangential and centripetal acceleration
    at a 0.4 m lever from the knee; one heel strike per stride (a damped 10-25 Hz
    transient of about ``heel_g`` along the shank). The left leg is half a stride late.
    """
    size = block.shape[0]
    t = np.arange(size) / fs_hz
    ramp = _minimum_jerk(np.minimum(t, t[-1] - t) / 1.5)  # start and stop over 1.5 s
    f = min(b.stride_hz, f_max)
    phase = math.pi if side == "left" else 0.0
    w = 2 * np.pi * f
    amp = np.deg2rad(b.swing_deg / 2.0)
    theta = ramp * amp * (np.sin(w * t + phase) + 0.3 * np.sin(2 * w * t + 2 * phase + 0.8))
    out = _rotate(block, np.array([0.0, 1.0, 0.0]), theta)
    dt = 1.0 / fs_hz
    omega = np.gradient(theta, dt)
    alpha = np.gradient(omega, dt)
    lever_m = 0.4
    lever = np.array([1.0, 0.0, 0.0])  # the ankle is distal to the knee
    tangential = _cross(np.array([0.0, 1.0, 0.0]), lever)
    out += (lever_m / STANDARD_GRAVITY) * (
        np.outer(alpha, tangential) - np.outer(omega * omega, lever)
    )
    # Heel strikes: an impulse train filtered by one damped oscillation.
    strikes = np.zeros(size)
    k = np.arange(int(t[-1] * f) + 1)
    idx = ((k + (0.5 if side == "left" else 0.0) + 0.2) / f * fs_hz).astype(np.int64)
    idx = idx[idx < size]
    strikes[idx] = b.heel_g * np.exp(0.3 * rng.standard_normal(idx.size)) * ramp[idx]
    kt = np.arange(int(0.3 * fs_hz)) / fs_hz
    kernel = _damped(kt, 1.0, min(rng.uniform(10.0, 25.0), f_max), rng.uniform(0.02, 0.05))
    jolt = np.convolve(strikes, kernel)[:size]
    direction = _unit(np.array([-1.0, 0.0, 0.3]) + 0.1 * rng.standard_normal(3))
    out += np.outer(jolt, direction)
    return out


def _render_nonwear(full, extra: _OutOfBed, mount: np.ndarray, fs_hz: float,
                    f_max: float) -> None:
    """The band off the leg: handled for a few seconds, then still on a table.

    On the table the sensor's own ``z`` axis is near vertical (the housing lies flat,
    face up or down, within a few degrees) in 4 of 5 spans, else it rests on an edge at
    a random orientation. Written in the leg frame (``mount.T`` undoes the mount) so the
    sensor stage adds only its gain, offset, drift, noise and quantisation.
    """
    rng = extra.rng
    n = full.shape[0]
    for onset, duration, _side in extra.nonwear:
        i0 = min(n - 1, int(round(onset * fs_hz)))
        i1 = min(n, int(round((onset + duration) * fs_hz)))
        if rng.random() < 0.8:
            face = np.array([0.0, 0.0, 1.0 if rng.random() < 0.5 else -1.0])
            table = _unit(_tilted(face, 3.0, rng))
        else:
            table = _random_unit(rng)
        still = mount.T @ table
        before = full[i0].astype(np.float64)
        after = full[i1].astype(np.float64) if i1 < n else still
        full[i0:i1] = still
        m0 = min(int(rng.uniform(5.0, 15.0) * fs_hz), (i1 - i0) // 3)
        m1 = min(int(rng.uniform(5.0, 15.0) * fs_hz), (i1 - i0) // 3)
        if m0 > 1:
            full[i0 : i0 + m0] = _posture_change(before, still, m0, fs_hz, f_max, rng)
        if m1 > 1 and i1 < n:
            full[i1 - m1 : i1] = _posture_change(still, after, m1, fs_hz, f_max, rng)


def _shift_structure(st: _Structure, offset_s: float, recording_s: float) -> _Structure:
    """The night's structure on the recording's clock: the evening and morning are wake."""
    wake = [(a + offset_s, b + offset_s) for a, b in st.wake]
    wake[0] = (0.0, wake[0][1])
    wake[-1] = (wake[-1][0], recording_s)
    return _Structure(
        recording_s,
        st.lights_off_s + offset_s,
        st.lights_on_s + offset_s,
        st.sleep_onset_s + offset_s,
        st.final_awakening_s + offset_s,
        wake,
        [(a + offset_s, b + offset_s) for a, b in st.rem],
    )


def _out_of_bed_annotations(
    annotations: pd.DataFrame, day, evening_s: float, bed_s: float, recording_s: float,
    off_spans, sides,
) -> pd.DataFrame:
    """Add ``out_of_bed``, ``walking`` and ``nonwear`` rows; drop what no band could see.

    A leg's ``lm`` rows (and whole-body rows when every band is off) that overlap its
    non-wear are removed: the truth is what the worn sensors could record.
    """
    frames = [annotations]
    bed_end = evening_s + bed_s
    spans = [(0.0, evening_s)] if evening_s > 0 else []
    if recording_s - bed_end > 0:
        spans.append((bed_end, recording_s - bed_end))
    if spans:
        frames.append(make_annotations(
            [a for a, _ in spans], [d for _, d in spans], "out_of_bed", "unknown", _SIMULATOR
        ))
    walks = [b for b in _place_day(day, evening_s, bed_end) if b.kind == "walk"]
    if walks:
        frames.append(make_annotations(
            [b.onset_s for b in walks], [b.duration_s for b in walks], "walking", "unknown",
            _SIMULATOR,
        ))
    if off_spans:
        frames.append(make_annotations(
            [s[0] for s in off_spans], [s[1] for s in off_spans], "nonwear",
            [s[2] for s in off_spans], _SIMULATOR,
        ))
        onset = annotations["onset_s"].to_numpy()
        end = onset + annotations["duration_s"].to_numpy()
        movement = annotations["label"].isin(["lm", "posture", "artifact"]).to_numpy()
        hidden = {}
        for s in sides:
            mask = np.zeros(len(annotations), dtype=bool)
            for a, d, who in off_spans:
                if who == s:
                    mask |= (onset < a + d) & (end > a)
            hidden[s] = mask
        side = annotations["side"].to_numpy()
        drop = np.zeros(len(annotations), dtype=bool)
        for s in sides:
            drop |= (side == s) & hidden[s]
        drop |= (side == "unknown") & np.logical_and.reduce([hidden[s] for s in sides])
        frames[0] = annotations[~(drop & movement)]
    return pd.concat(frames, ignore_index=True)
