"""Mixpanel's days, when a day is complete, export windows, and local time back to UTC.

**Days.** The export's ``from_date``/``to_date`` (both inclusive) are the project's days for a
project that stores local time and UTC days otherwise, so the partitions are those days. A day is
ready once it has ended in that zone plus ``lag_days`` whole days.

**Which day an event belongs to.** The day of its raw ``time`` read as if it were UTC: for a
local-time project that is the wall-clock day in the project's zone, for a UTC one the UTC day;
either way the day the export filed it under.

**Local time to UTC** (projects that store local time). Mixpanel wrote ``time`` as the wall
clock in the project's zone, in seconds (or milliseconds) since 1970 as if that clock were UTC.
The offset is the zone's at the event's own instant (DST per instant, from the tz database via
``zoneinfo``), never one fixed offset. A wall-clock reading has one, two or no instants:

- one: the usual case;
- two (clocks going back, e.g. 01:30 on 2026-11-01 in Los Angeles is 08:30Z and 09:30Z): take
  the *latest reading that is not after the processing time*: the later instant if it is not
  after ``mp_processing_time_ms``, else the earlier one (so also when both are after it, or the
  processing time is missing). An event cannot be processed before it happened, so a later
  instant after the processing time is impossible, while the earlier one is always possible;
  the rule picks wrongly only for an event of the first pass processed over an hour late (an
  offline mobile event), which nothing in the data can tell apart;
- none (clocks going forward, e.g. 02:30 on 2026-03-08 in Los Angeles): such a reading cannot
  come from a correct conversion; it is read with the offset in force *before* the gap (what
  ``datetime.replace(tzinfo=zone)`` with ``fold=0`` does), so 02:30 becomes 10:30Z (03:30 PDT).
  Failing the day instead would block data that is only one hour in doubt.

``zone_periods`` gives the zone's offsets over a range, so ``normalize`` applies the same rule
to a whole file as one SQL expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

DAY = timedelta(days=1)
API_DAY_FORMAT = "%Y-%m-%d"


class DayNotReady(ValueError):
    """A day was asked for before it is complete plus the lag."""


def day_start(day: date, zone: tzinfo) -> datetime:
    """The first instant of ``day`` in ``zone``, in UTC (midnight may not exist: then the first
    instant after the gap)."""
    local = datetime.combine(day, time(0), tzinfo=zone)
    return from_wall_clock(local.replace(tzinfo=None), zone, None)


def day_bounds(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """``[start, end)`` of a day in UTC: 23, 24 or 25 hours long."""
    return day_start(day, zone), day_start(day + DAY, zone)


def ready_at(day: date, zone: tzinfo, lag_days: int) -> datetime:
    return day_start(day + DAY, zone) + lag_days * DAY


def last_ready_day(now: datetime, zone: tzinfo, lag_days: int) -> date:
    """The newest day that is complete plus the lag at ``now``."""
    if now.tzinfo is None:
        raise ValueError(f"naive datetime {now!r}: say which zone it is in")
    day = (now - lag_days * DAY).astimezone(zone).date() - DAY
    while ready_at(day, zone, lag_days) > now:  # a 25-hour day, or a lag crossing DST
        day -= DAY
    return day


def days_between(first: date, last: date) -> list[date]:
    """Days in ``[first, last]``."""
    return [first + i * DAY for i in range((last - first).days + 1)]


@dataclass(frozen=True, order=True)
class DayWindow:
    """Consecutive days asked for with one request; both ends inclusive, as the API's."""

    first_day: date
    last_day: date

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise ValueError(f"window ends before it starts: {self.first_day}..{self.last_day}")

    @property
    def days(self) -> list[date]:
        return days_between(self.first_day, self.last_day)

    @property
    def day_count(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def query(self) -> dict[str, str]:
        return {"from_date": self.first_day.strftime(API_DAY_FORMAT),
                "to_date": self.last_day.strftime(API_DAY_FORMAT)}

    def __str__(self) -> str:
        return f"{self.query['from_date']}..{self.query['to_date']}"


def plan_windows(days: list[date], max_window_days: int, *, now: datetime, zone: tzinfo,
                 lag_days: int) -> list[DayWindow]:
    """Cut sorted days into as few windows as the cap allows, refusing days not yet ready.

    A gap in ``days`` starts a new window, so no request asks for a day the run does not own.
    """
    if max_window_days < 1:
        raise ValueError("max_window_days must be at least 1")
    if not days:
        return []
    newest = last_ready_day(now, zone, lag_days)
    if days[-1] > newest:
        raise DayNotReady(
            f"day {days[-1]} is not complete until "
            f"{ready_at(days[-1], zone, lag_days):%Y-%m-%d %H:%M}Z (the day's end in {zone} "
            f"plus a lag of {lag_days} day(s)); the newest complete day is {newest}")
    windows: list[DayWindow] = []
    first = previous = days[0]
    for day in days[1:]:
        if day - previous != DAY or (day - first).days >= max_window_days:
            windows.append(DayWindow(first, previous))
            first = day
        previous = day
    windows.append(DayWindow(first, previous))
    return windows


def from_wall_clock(wall: datetime, zone: tzinfo, processed_at: datetime | None) -> datetime:
    """The UTC instant of a naive wall-clock reading in ``zone``, by the rules above."""
    if wall.tzinfo is not None:
        raise ValueError(f"{wall!r} must be a naive wall-clock reading")
    earlier = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    later = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if earlier.astimezone(zone).replace(tzinfo=None) != wall:  # in a gap: fold=0's offset
        return earlier
    if later > earlier and processed_at is not None and later <= processed_at:
        return later
    return min(earlier, later)


def from_raw_time(raw: float, zone: tzinfo, processing_ms: int | None, *,
                  local: bool) -> datetime:
    """An exported ``time`` (seconds, or milliseconds past 1e11) as a UTC instant."""
    micros = round(raw * (1_000 if raw > MS_THRESHOLD else 1_000_000))
    as_if_utc = EPOCH + timedelta(microseconds=micros)
    if not local:
        return as_if_utc
    processed = None if processing_ms is None else EPOCH + timedelta(milliseconds=processing_ms)
    return from_wall_clock(as_if_utc.replace(tzinfo=None), zone, processed)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A `time` above this is milliseconds (time_in_ms): as seconds it would be the year 5138.
MS_THRESHOLD = 100_000_000_000


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC during which ``zone`` is ``offset_seconds`` ahead of UTC."""

    start: datetime
    end: datetime
    offset_seconds: int


def zone_periods(zone: tzinfo, first_day: date, last_day: date) -> list[Period]:
    """The zone's offsets from two days before ``first_day`` to two days after ``last_day``
    (wide enough for any wall-clock reading of those days), transitions to the second."""
    start = datetime.combine(first_day - 2 * DAY, time(0), tzinfo=UTC)
    stop = datetime.combine(last_day + 3 * DAY, time(0), tzinfo=UTC)
    periods: list[Period] = []
    begin, offset = start, _offset(zone, start)
    probe = start
    while probe < stop:
        step = min(probe + timedelta(hours=1), stop)
        if _offset(zone, step) != offset:
            low, high = probe, step  # the transition lies in (low, high]: find its second
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                middle = middle.replace(microsecond=0)
                if _offset(zone, middle) == offset:
                    low = middle
                else:
                    high = middle
            periods.append(Period(begin, high, offset))
            begin, offset = high, _offset(zone, high)
        probe = step
    periods.append(Period(begin, stop, offset))
    return periods


def _offset(zone: tzinfo, instant: datetime) -> int:
    delta = instant.astimezone(zone).utcoffset()
    return 0 if delta is None else int(delta.total_seconds())


def utc_zone() -> ZoneInfo:
    return ZoneInfo("UTC")
