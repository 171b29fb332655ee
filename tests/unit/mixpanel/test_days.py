"""Days, readiness, windows, and the local-to-UTC rules at both DST changes of 2026."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipeline.mixpanel.days import (
    DayNotReady,
    DayWindow,
    day_bounds,
    from_raw_time,
    from_wall_clock,
    last_ready_day,
    plan_windows,
    ready_at,
    zone_periods,
)

LA = ZoneInfo("America/Los_Angeles")
UTC_ZONE = ZoneInfo("UTC")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_dst_days_are_23_and_25_hours_long():
    start, end = day_bounds(date(2026, 3, 8), LA)
    assert (start, end - start) == (utc(2026, 3, 8, 8), timedelta(hours=23))
    start, end = day_bounds(date(2026, 11, 1), LA)
    assert (start, end - start) == (utc(2026, 11, 1, 7), timedelta(hours=25))


def test_a_day_is_ready_when_it_ended_in_its_zone_plus_the_lag():
    assert ready_at(date(2026, 3, 1), LA, 1) == utc(2026, 3, 3, 8)
    assert last_ready_day(utc(2026, 3, 3, 7, 59), LA, 1) == date(2026, 2, 28)
    assert last_ready_day(utc(2026, 3, 3, 8), LA, 1) == date(2026, 3, 1)
    assert last_ready_day(utc(2026, 3, 2, 0), UTC_ZONE, 0) == date(2026, 3, 1)
    assert last_ready_day(utc(2026, 11, 2, 8), LA, 0) == date(2026, 11, 1)  # the 25-hour day
    assert last_ready_day(utc(2026, 11, 2, 7, 59), LA, 0) == date(2026, 10, 31)


def test_windows_fit_the_cap_and_break_at_gaps():
    days = [date(2026, 3, d) for d in (1, 2, 3, 4, 5, 7, 8)]
    windows = plan_windows(days, 3, now=utc(2026, 4, 1), zone=LA, lag_days=1)
    assert [str(w) for w in windows] == ["2026-03-01..2026-03-03", "2026-03-04..2026-03-05",
                                         "2026-03-07..2026-03-08"]
    assert windows[0].query == {"from_date": "2026-03-01", "to_date": "2026-03-03"}
    assert DayWindow(date(2026, 3, 1), date(2026, 3, 3)).day_count == 3


def test_an_unready_day_is_refused_with_when_it_will_be():
    with pytest.raises(DayNotReady, match=r"2026-03-08 is not complete until 2026-03-10 07:00Z"):
        plan_windows([date(2026, 3, 8)], 7, now=utc(2026, 3, 9, 12), zone=LA, lag_days=1)


def test_dst_per_instant_not_one_offset():
    assert from_wall_clock(datetime(2026, 1, 15, 12), LA, None) == utc(2026, 1, 15, 20)
    assert from_wall_clock(datetime(2026, 7, 15, 12), LA, None) == utc(2026, 7, 15, 19)


def test_spring_forward_gap_takes_the_offset_from_before_it():
    assert from_wall_clock(datetime(2026, 3, 8, 1, 59), LA, None) == utc(2026, 3, 8, 9, 59)
    assert from_wall_clock(datetime(2026, 3, 8, 2, 30), LA, None) == utc(2026, 3, 8, 10, 30)
    assert from_wall_clock(datetime(2026, 3, 8, 3, 0), LA, None) == utc(2026, 3, 8, 10, 0)


@pytest.mark.parametrize("processed, expected", [
    (utc(2026, 11, 1, 8, 31), utc(2026, 11, 1, 8, 30)),  # before the later: the earlier
    (utc(2026, 11, 1, 9, 30), utc(2026, 11, 1, 9, 30)),  # at the later: the later
    (utc(2026, 11, 1, 9, 31), utc(2026, 11, 1, 9, 30)),  # after both: the later
    (utc(2026, 11, 1, 8, 0), utc(2026, 11, 1, 8, 30)),  # before both: the earlier
    (None, utc(2026, 11, 1, 8, 30)),  # no processing time: the earlier
])
def test_fall_back_takes_the_latest_reading_not_after_processing(processed, expected):
    assert from_wall_clock(datetime(2026, 11, 1, 1, 30), LA, processed) == expected


def test_raw_times_in_seconds_and_milliseconds():
    wall = datetime(2026, 11, 1, 1, 30, tzinfo=UTC)
    seconds = int(wall.timestamp())
    processed = int(utc(2026, 11, 1, 9, 40).timestamp() * 1000)
    assert from_raw_time(seconds, LA, processed, local=True) == utc(2026, 11, 1, 9, 30)
    assert from_raw_time(seconds * 1000 + 250, LA, None, local=True) == utc(
        2026, 11, 1, 8, 30, 0, 250_000)
    assert from_raw_time(seconds, LA, None, local=False) == wall


def test_zone_periods_find_each_transition_to_the_second():
    periods = zone_periods(LA, date(2026, 3, 8), date(2026, 3, 8))
    assert [p.offset_seconds for p in periods] == [-8 * 3600, -7 * 3600]
    assert periods[0].end == utc(2026, 3, 8, 10) == periods[1].start
    assert len(zone_periods(ZoneInfo("Asia/Kolkata"), date(2026, 3, 8), date(2026, 3, 9))) == 1
    lord_howe = zone_periods(ZoneInfo("Australia/Lord_Howe"), date(2026, 4, 5), date(2026, 4, 5))
    assert [p.offset_seconds for p in lord_howe] == [39600, 37800]  # a half-hour change
