"""The leg-movement detector, incrementally, for live data.

:class:`StreamingDetector` takes acceleration in chunks as it arrives and reports each
leg movement once everything that decides it is known: the running-median baseline
(centred: it needs ``baseline_s / 2`` of data after a block), the offset hold, and the
rest orientation after the movement that tells a posture change from an LM. Movements
therefore come out about ``baseline_s / 2 + posture_context_s + offset_hold_s`` (about
14 s) after they end.

It runs the same functions as the batch detector (:mod:`pmld.detect`) over a sliding
buffer of block statistics, so the rules are the same; only the resting floor differs:
live, it is the percentile over the last ``floor_window_s`` of activity instead of the
whole night. Memory and work per chunk are O(buffer), not O(night): a few hundred kB
whatever the length of the recording. The nightly summary written at the end of a
recording comes from the batch analysis of the whole file, not from this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .detect import (
    Activity,
    DetectionParams,
    _block_size,
    _centred_block_stats,
    _running_median,
    empty_lm_table,
    find_leg_movements,
    resting_floor,
    row_norms,
    thresholds,
    unit_vectors,
)
from .score import ScoringRules, rules_preset, score_leg_movements


@dataclass
class LiveStatus:
    """What the live detector knows so far."""

    seconds: float
    lm_count: int
    plm_count: int
    plm_index: float
    floor_g: float


class StreamingDetector:
    """Detect leg movements in acceleration that arrives in chunks.

    Parameters
    ----------
    fs_hz : float
        Sampling rate.
    params : DetectionParams, optional
    rules : str or ScoringRules
        Rules for the live PLM count.
    floor_window_s : float
        Length of recent activity whose percentile is the live resting floor (s).
    detect_every_s : float
        Detection runs when at least this much new data has arrived (s); a larger
        value costs less per second of data and delays the report a little more.

    Examples
    --------
    >>> import numpy as np
    >>> live = StreamingDetector(100.0)
    >>> for _ in range(60):
    ...     new = live.push(np.tile([0.0, 0.0, 1.0], (100, 1)))
    >>> live.status().lm_count
    0
    """

    def __init__(
        self,
        fs_hz: float,
        params: DetectionParams | None = None,
        *,
        rules: str | ScoringRules = "wasm2016",
        floor_window_s: float = 1800.0,
        detect_every_s: float = 5.0,
    ) -> None:
        self.fs_hz = float(fs_hz)
        self.params = params or DetectionParams()
        self.rules = rules_preset(rules) if isinstance(rules, str) else rules
        self.block = _block_size(self.fs_hz, self.params)
        self.block_s = self.block / self.fs_hz
        p = self.params
        half_baseline = int(round(p.baseline_s / self.block_s)) // 2 + 1
        smooth = int(round(p.smooth_s / self.block_s)) + 1
        context = int(round(p.posture_context_s / self.block_s))
        hold = int(np.ceil(p.offset_hold_s / self.block_s))
        # Blocks at the end of the buffer whose activity is not final yet, and how far
        # past an event's end the buffer must reach before the event is decided.
        self._unsettled = half_baseline + smooth
        self._decide_after = half_baseline + context + hold + 2
        self._keep = 4 * half_baseline + 2 * context + 600  # about two minutes
        self._means = np.zeros((0, 3), np.float32)
        self._variance = np.zeros(0, np.float32)
        self._remainder = np.zeros((0, 3), np.float32)
        self._first_block = 0  # block number of self._means[0] since the start
        self._centre: np.ndarray | None = None
        # A ring of the most recent final activity values, for the live floor.
        self._floor_ring = np.zeros(max(1, int(round(floor_window_s / self.block_s))), np.float32)
        self._floor_filled = 0
        self._floor_pos = 0
        self._settled_until = 0  # block number up to which floor values were taken
        self._detect_every = max(1, int(round(detect_every_s / self.block_s)))
        self._undetected = 0
        self._emitted_until_s = -np.inf
        self._lms: list[pd.DataFrame] = []
        self._blocks_seen = 0
        self._floor = 0.0
        self._empty = empty_lm_table()  # building a DataFrame costs ~1 ms: once

    # -- input ---------------------------------------------------------------------
    def push(self, acc_g: np.ndarray) -> pd.DataFrame:
        """Add samples; return the leg movements decided by them (times in s)."""
        acc = np.asarray(acc_g, dtype=np.float32).reshape(-1, 3)
        if len(self._remainder):
            acc = np.concatenate([self._remainder, acc])
        n_blocks = len(acc) // self.block
        self._remainder = acc[n_blocks * self.block :].copy()
        if n_blocks == 0:
            return self._empty.copy()
        used = acc[: n_blocks * self.block]
        if self._centre is None:
            self._centre = np.median(used, axis=0).astype(np.float32)
        means, variances = _centred_block_stats(used, self._centre, self.block)
        variance = variances.sum(axis=1)
        self._means = np.concatenate([self._means, means])
        self._variance = np.concatenate([self._variance, variance])
        self._blocks_seen += n_blocks
        self._undetected += n_blocks
        if self._undetected < self._detect_every:
            self._trim()
            return self._empty.copy()
        self._undetected = 0
        found = self._detect()
        self._trim()
        return found

    def gap(self, missing_samples: int) -> pd.DataFrame:
        """Data are missing: decide what can be decided, then start afresh after it."""
        found = self._detect(final=True)
        self._undetected = 0
        missing_blocks = int(round((missing_samples + len(self._remainder)) / self.block))
        self._blocks_seen += missing_blocks
        self._first_block = self._blocks_seen
        self._means = np.zeros((0, 3), np.float32)
        self._variance = np.zeros(0, np.float32)
        self._remainder = np.zeros((0, 3), np.float32)
        return found

    def finish(self) -> pd.DataFrame:
        """The end of the recording: decide the movements still pending."""
        return self._detect(final=True)

    # -- state -----------------------------------------------------------------------
    @property
    def leg_movements(self) -> pd.DataFrame:
        return pd.concat(self._lms, ignore_index=True) if self._lms else self._empty.copy()

    def status(self) -> LiveStatus:
        seconds = self._blocks_seen * self.block_s
        lms = self.leg_movements
        plm = 0
        if len(lms):
            scored = score_leg_movements(lms.assign(side="unknown"), self.rules)
            plm = int(scored["plm"].sum())
        hours = seconds / 3600
        return LiveStatus(
            seconds=seconds,
            lm_count=int((lms["kind"] == "lm").sum()) if len(lms) else 0,
            plm_count=plm,
            plm_index=plm / hours if hours > 0 else float("nan"),
            floor_g=self._floor,
        )

    # -- work --------------------------------------------------------------------------
    def _activity(self) -> Activity:
        p = self.params
        window = max(1, int(round(p.baseline_s / self.block_s)))
        baseline = _running_median(self._means, window)
        deviation = row_norms(self._means - baseline)
        resting_variance = np.percentile(self._variance, p.floor_percentile)
        activity = np.sqrt(
            np.square(deviation) + np.maximum(self._variance - resting_variance, 0)
        )
        smooth = max(1, int(round(p.smooth_s / self.block_s)))
        if smooth > 1:
            kernel = np.ones(smooth, np.float32) / smooth
            activity = np.convolve(activity, kernel, mode="same")
        return Activity(
            activity.astype(np.float32),
            deviation.astype(np.float32),
            unit_vectors(self._means + self._centre),
            self.block_s,
        )

    def _detect(self, final: bool = False) -> pd.DataFrame:
        n = len(self._means)
        if n == 0:
            return self._empty.copy()
        activity = self._activity()
        settled = n if final else max(0, n - self._unsettled)
        # Feed the floor with activity that is final and not yet counted.
        start = max(0, self._settled_until - self._first_block)
        if settled > start:
            self._add_floor_values(activity.activity_g[start:settled])
            self._settled_until = self._first_block + settled
        if self._floor_filled:
            self._floor = resting_floor(self._floor_ring[: self._floor_filled], self.params)
        onset_g, offset_g = thresholds(self._floor, self.params)
        lms = find_leg_movements(activity, onset_g, offset_g, self.params)
        if not len(lms):
            return self._empty.copy()
        t0 = self._first_block * self.block_s
        lms["onset_s"] += t0
        lms["offset_s"] += t0
        horizon = (self._first_block + n - (0 if final else self._decide_after)) * self.block_s
        new = lms[(lms["onset_s"] > self._emitted_until_s) & (lms["offset_s"] <= horizon)]
        if final:
            new = lms[lms["onset_s"] > self._emitted_until_s]
        if len(new):
            self._emitted_until_s = float(new["offset_s"].max())
            new = new.reset_index(drop=True)
            self._lms.append(new)
        return new

    def _add_floor_values(self, values: np.ndarray) -> None:
        ring = self._floor_ring
        values = values[-ring.size :]
        first = min(values.size, ring.size - self._floor_pos)
        ring[self._floor_pos : self._floor_pos + first] = values[:first]
        ring[: values.size - first] = values[first:]
        self._floor_pos = (self._floor_pos + values.size) % ring.size
        self._floor_filled = min(ring.size, self._floor_filled + values.size)

    def _trim(self) -> None:
        # Blocks not yet looked at by a detection must stay, however many there are.
        excess = len(self._means) - max(self._keep, self._undetected + self._keep)
        if excess > 0:
            self._means = self._means[excess:]
            self._variance = self._variance[excess:]
            self._first_block += excess
