"""The live detector agrees with the batch detector and stays O(window)."""

import numpy as np
import pytest

from pmld.detect import detect_leg_movements
from pmld.evaluate import event_agreement
from pmld.simulate import simulate_night
from pmld.stream import StreamingDetector


@pytest.fixture(scope="module")
def night():
    return simulate_night("moderate", hours=1.0, fs_hz=50.0, seed=77)


def _stream(sensor, chunk, **kw):
    live = StreamingDetector(sensor.fs_hz, **kw)
    pieces = [live.push(sensor.acc_g[i : i + chunk]) for i in range(0, sensor.n_samples, chunk)]
    pieces.append(live.finish())
    return live, pieces


def _lm(table):
    return table[table["kind"] == "lm"].reset_index(drop=True)


def test_live_movements_agree_with_the_batch_detector(night):
    sensor = night.sensor
    batch = detect_leg_movements(sensor.acc_g, sensor.fs_hz)
    live, pieces = _stream(sensor, 50)
    agreement = event_agreement(_lm(batch), _lm(live.leg_movements))
    # Only the resting floor differs (recent window vs whole night): near-identical.
    assert agreement.f1 >= 0.97
    assert agreement.onset_error_median_s <= 0.05
    # each movement is reported once, in time order
    reported = np.concatenate([p["onset_s"].to_numpy() for p in pieces if len(p)])
    assert np.all(np.diff(reported) > 0)
    assert len(reported) == len(live.leg_movements)


def test_chunk_size_does_not_change_what_is_found(night):
    small, _ = _stream(night.sensor, 7)
    large, _ = _stream(night.sensor, 5000)
    assert event_agreement(_lm(small.leg_movements), _lm(large.leg_movements)).f1 >= 0.98


def test_movements_are_reported_within_seconds_of_their_end(night):
    sensor = night.sensor
    live = StreamingDetector(sensor.fs_hz, detect_every_s=1.0)
    delays = []
    chunk = int(sensor.fs_hz)
    for i in range(0, sensor.n_samples, chunk):
        now_s = (i + chunk) / sensor.fs_hz
        for offset in live.push(sensor.acc_g[i : i + chunk])["offset_s"]:
            delays.append(now_s - offset)
    assert delays and max(delays) <= 20.0


def test_memory_stays_bounded_however_long_the_night():
    live = StreamingDetector(50.0)
    rng = np.random.default_rng(0)
    for _ in range(200):  # 200 chunks of 60 s: 3.3 h
        chunk = np.tile(np.float32([0, 0, 1]), (3000, 1)) + rng.normal(0, 0.002, (3000, 3))
        live.push(chunk)
    assert len(live._means) <= live._keep
    assert live.status().seconds == pytest.approx(200 * 60, abs=1)


def test_a_gap_restarts_the_buffer_and_keeps_the_clock(night):
    sensor = night.sensor
    half = sensor.n_samples // 2
    live = StreamingDetector(sensor.fs_hz)
    live.push(sensor.acc_g[:half])
    live.gap(int(600 * sensor.fs_hz))  # ten minutes missing
    live.push(sensor.acc_g[half:])
    live.finish()
    lms = live.leg_movements
    gap_start, gap_end = half / sensor.fs_hz, half / sensor.fs_hz + 600
    inside = (lms["offset_s"] > gap_start + 0.1) & (lms["onset_s"] < gap_end - 0.1)
    assert not inside.any()
    assert lms["onset_s"].max() > gap_end  # later movements carry the shifted clock


def test_status_counts_plms_live(night):
    live, _ = _stream(night.sensor, 500)
    status = live.status()
    assert status.lm_count > 0 and 0 <= status.plm_count <= status.lm_count
    assert status.plm_index == pytest.approx(status.plm_count / (status.seconds / 3600))


def test_detecting_rarely_loses_no_movements(night):
    # Found by the recorder's author: with detect_every_s above the buffer (about two
    # minutes), blocks were trimmed before any detection had looked at them.
    sensor = night.sensor
    often, _ = _stream(sensor, 50)
    rarely = StreamingDetector(sensor.fs_hz, detect_every_s=180.0)
    for i in range(0, sensor.n_samples, 50):
        rarely.push(sensor.acc_g[i : i + 50])
    rarely.finish()
    agreement = event_agreement(_lm(often.leg_movements), _lm(rarely.leg_movements))
    assert agreement.f1 >= 0.97
