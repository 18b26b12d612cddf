from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmld.errors import InputError, UsageError
from pmld.night import Night, Sensor, combine_ankles, make_annotations, parse_night_time


def _sensor(n=100, fs=10.0, gaps=None, side="right", start="2026-03-28T22:00:00+00:00"):
    acc = np.zeros((n, 3), np.float32)
    acc[:, 2] = 1
    return Sensor(acc, fs, start, side=side, gaps=gaps)


def test_grid_and_segments_follow_the_gap_table():
    s = _sensor(10, 10.0, gaps=[(3, 5), (7, 2)])
    assert s.grid_index().tolist() == [0, 1, 2, 8, 9, 10, 11, 14, 15, 16]
    assert list(s.segments()) == [(0, 3), (3, 7), (7, 10)]
    assert s.gap_spans_s().tolist() == [[0.3, 0.8], [1.2, 1.4]]
    assert s.duration_s == pytest.approx(1.7)
    assert s.recorded_s == pytest.approx(1.0)


def test_gap_at_the_end_is_kept_in_the_duration():
    s = _sensor(10, 10.0, gaps=[(10, 4)])
    assert list(s.segments()) == [(0, 10)]
    assert s.gap_spans_s().tolist() == [[1.0, 1.4]]
    assert s.duration_s == pytest.approx(1.4)


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(1, 20)), max_size=6, unique_by=lambda t: t[0]
    )
)
def test_grid_index_is_strictly_increasing_and_counts_every_missing_sample(gaps):
    gaps = sorted(gaps)
    s = _sensor(50, 10.0, gaps=gaps)
    grid = s.grid_index()
    assert np.all(np.diff(grid) >= 1)
    assert grid[-1] + 1 + sum(m for i, m in gaps if i == 50) == 50 + s.missing_samples
    stored = sum(stop - first for first, stop in s.segments())
    assert stored == 50


def test_bad_sensors_are_refused_with_a_reason():
    with pytest.raises(InputError, match="shape"):
        Sensor(np.zeros((10, 2)), 10, "2026-01-01T00:00:00Z")
    with pytest.raises(InputError, match="sampling rate"):
        Sensor(np.zeros((10, 3)), 0, "2026-01-01T00:00:00Z")
    with pytest.raises(UsageError, match="no UTC offset"):
        Sensor(np.zeros((10, 3)), 10, "2026-01-01T00:00:00")
    with pytest.raises(InputError, match="sorted"):
        _sensor(10, gaps=[(5, 1), (2, 1)])
    with pytest.raises(InputError, match="at least one"):
        _sensor(10, gaps=[(5, 0)])
    with pytest.raises(UsageError, match="time zone"):
        Night([_sensor()], timezone="Mars/Olympus")


def test_two_sensors_must_be_on_different_sides():
    with pytest.raises(InputError, match="different sides"):
        Night([_sensor(side="left"), _sensor(side="left")])


def test_annotations_are_sorted_and_checked():
    ann = make_annotations([30.0, 10.0], 0.0, ["lights_on", "lights_off"])
    night = Night([_sensor()], annotations=ann)
    assert night.annotations["label"].tolist() == ["lights_off", "lights_on"]
    with pytest.raises(InputError, match="negative duration"):
        Night([_sensor()], annotations=make_annotations([1.0], -1.0, "lm"))


def test_combine_ankles_aligns_by_absolute_start():
    left = Night(
        [_sensor(side="unknown", start="2026-01-01T22:00:00+00:00")],
        annotations=make_annotations([5.0], 0.0, "lights_off"),
    )
    right = Night(
        [_sensor(side="right", start="2026-01-01T22:00:02+00:00")],
        annotations=make_annotations([3.0], 0.0, "lights_off"),
    )
    both = combine_ankles(left, right)
    assert both.sides == ["left", "right"]
    assert both.offset_s(both.ankle("right")) == pytest.approx(2.0)
    # the two lights-off marks are the same moment once aligned: kept once
    assert both.annotation("lights_off")["onset_s"].tolist() == [5.0]


def test_combine_ankles_refuses_recordings_that_do_not_overlap():
    left = Night([_sensor(side="left", start="2026-01-01T22:00:00+00:00")])
    right = Night([_sensor(side="right", start="2026-01-02T22:00:00+00:00")])
    with pytest.raises(UsageError, match="do not overlap"):
        combine_ankles(left, right)


def test_clock_times_are_read_in_the_local_zone_across_a_dst_change():
    # Europe/Zurich leaves summer time at 03:00 on 2026-10-25 (clocks go back to 02:00).
    night = Night(
        [_sensor(start="2026-10-24T20:00:00+00:00")], timezone="Europe/Zurich"
    )  # 22:00 local, CEST (+02:00)
    assert parse_night_time("23:00", night) == pytest.approx(3600)
    # 07:00 CET (+01:00) next morning is 06:00 UTC: ten hours after 20:00 UTC
    assert parse_night_time("07:00", night) == pytest.approx(10 * 3600)
    assert parse_night_time("1800", night) == 1800
    assert parse_night_time("2026-10-24T21:00:00+00:00", night) == pytest.approx(3600)
    with pytest.raises(UsageError):
        parse_night_time("25:99", night)


def test_from_arrays_and_repr():
    night = Night.from_arrays(np.zeros((600, 3)), 10.0, datetime(2026, 1, 1, 23, tzinfo=UTC))
    assert night.duration_s == pytest.approx(60.0)
    assert "1 sensor" not in repr(night) and "600 samples" in repr(night)
    assert isinstance(night.annotations, pd.DataFrame)


@pytest.mark.parametrize(
    ("start_local", "hours", "zone", "expected"),
    [
        ("2026-03-10T22:00", 9, "Europe/Berlin", "2026-03-10"),  # the usual night
        ("2026-03-11T00:30", 7.5, "Europe/Berlin", "2026-03-10"),  # began after midnight
        ("2026-03-10T12:00", 24, "Europe/Berlin", "2026-03-10"),  # noon to noon
        ("2026-03-10T11:30", 21.5, "Europe/Berlin", "2026-03-10"),  # with the evening
        # the night the clocks go back (25 h noon to noon) and forward (23 h)
        ("2026-10-24T12:00", 25, "Europe/London", "2026-10-24"),
        ("2026-03-28T12:00", 23, "Europe/London", "2026-03-28"),
        ("2026-03-28T23:00", 8, "America/New_York", "2026-03-28"),
    ],
)
def test_night_date_is_the_evenings_local_date(start_local, hours, zone, expected):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from pmld.night import evening_date

    start = datetime.fromisoformat(start_local).replace(tzinfo=ZoneInfo(zone))
    assert evening_date(start, hours * 3600, zone) == expected
    night = Night.from_arrays(np.zeros((10, 3), np.float32) + [0, 0, 1], 1.0, start,
                              timezone=zone)
    assert night.night_date == evening_date(start, 10.0, zone)
    night.meta["night_date"] = "2026-01-01"  # an importer's own key wins
    assert night.night_date == "2026-01-01"
