from datetime import UTC, datetime, timedelta

import pytest

from pipeline.hours import (
    ExportWindow,
    HourNotReady,
    hours_between,
    last_ready_hour,
    parse_setting_hour,
    plan_windows,
    ready_at,
)

H = timedelta(hours=1)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_hour_is_ready_one_hour_plus_lag_after_it_starts():
    # The docs' example: events of 20:00-21:00 can be exported at 23:00.
    assert ready_at(T0 + 20 * H, lag_hours=2) == T0 + 23 * H
    assert last_ready_hour(T0 + 23 * H, lag_hours=2) == T0 + 20 * H
    assert last_ready_hour(T0 + 22 * H + timedelta(minutes=59), lag_hours=2) == T0 + 19 * H
    assert last_ready_hour(T0 + 23 * H, lag_hours=0) == T0 + 22 * H


def test_window_query_is_inclusive_and_halves_cover_it_exactly():
    day = ExportWindow(T0, T0 + 23 * H)
    assert day.query == {"start": "20260301T00", "end": "20260301T23"}
    assert day.hour_count == 24
    first, second = day.halves()
    assert first.hours + second.hours == day.hours
    odd = ExportWindow(T0, T0 + 2 * H)
    assert [w.hour_count for w in odd.halves()] == [1, 2]
    with pytest.raises(ValueError):
        ExportWindow(T0, T0).halves()


def test_two_days_cost_two_windows_and_a_week_seven():
    now = T0 + timedelta(days=30)
    two_days = hours_between(T0, T0 + 48 * H)
    assert [str(w) for w in plan_windows(two_days, 24, now=now, lag_hours=2)] == [
        "20260301T00..20260301T23", "20260302T00..20260302T23"]
    week = hours_between(T0 + 5 * H, T0 + 5 * H + timedelta(days=7))
    assert len(plan_windows(week, 24, now=now, lag_hours=2)) == 7
    assert len(plan_windows(week, 1, now=now, lag_hours=2)) == 168


def test_gaps_split_windows_so_no_foreign_hour_is_fetched():
    hours = [T0, T0 + H, T0 + 5 * H]
    windows = plan_windows(hours, 24, now=T0 + 48 * H, lag_hours=2)
    assert [w.hours for w in windows] == [[T0, T0 + H], [T0 + 5 * H]]


def test_unready_hours_are_refused_with_when_they_will_be_ready():
    now = T0 + 10 * H + timedelta(minutes=20)
    assert plan_windows([T0 + 7 * H], 24, now=now, lag_hours=2)
    with pytest.raises(HourNotReady, match=r"2026-03-01T08 is not complete until .*T11:00Z"):
        plan_windows([T0 + 7 * H, T0 + 8 * H], 24, now=now, lag_hours=2)


def test_setting_hour_parse_and_naive_times_rejected():
    assert parse_setting_hour("2026-03-01T07") == T0 + 7 * H
    with pytest.raises(ValueError, match="YYYY-MM-DDTHH"):
        parse_setting_hour("2026-03-01 07:00")
    with pytest.raises(ValueError, match="naive"):
        hours_between(datetime(2026, 3, 1), datetime(2026, 3, 2))
