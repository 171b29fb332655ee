"""Upload-hour arithmetic: readiness under Amplitude's export lag, and export windows.

Amplitude selects exports by upload hour (``server_upload_time``, UTC) with an inclusive ``end``,
and an hour H is complete only at H + 1 h + lag. Everything here is UTC and whole hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
API_HOUR_FORMAT = "%Y%m%dT%H"
SETTING_HOUR_FORMAT = "%Y-%m-%dT%H"


class HourNotReady(ValueError):
    """An upload hour was asked for before Amplitude guarantees it complete."""


def floor_hour(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: upload hours are UTC and must say so")
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def parse_setting_hour(text: str) -> datetime:
    """Parse ``YYYY-MM-DDTHH`` (the form of ``AMPLITUDE_START``) as a UTC hour."""
    try:
        return datetime.strptime(text.strip(), SETTING_HOUR_FORMAT).replace(tzinfo=UTC)
    except ValueError as error:
        raise ValueError(f"{text!r} is not an hour of the form YYYY-MM-DDTHH") from error


def ready_at(upload_hour: datetime, lag_hours: int) -> datetime:
    return floor_hour(upload_hour) + HOUR + timedelta(hours=lag_hours)


def last_ready_hour(now: datetime, lag_hours: int) -> datetime:
    """The newest upload hour whose export is complete at ``now``."""
    return floor_hour(now) - HOUR - timedelta(hours=lag_hours)


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Upload hours in ``[start, end)``."""
    first, stop = floor_hour(start), floor_hour(end)
    return [first + i * HOUR for i in range(int((stop - first) / HOUR))]


@dataclass(frozen=True, order=True)
class ExportWindow:
    """A run of consecutive upload hours fetched with one request; both ends inclusive."""

    first_hour: datetime
    last_hour: datetime

    def __post_init__(self) -> None:
        if self.last_hour < self.first_hour:
            raise ValueError(f"window ends before it starts: {self.first_hour}..{self.last_hour}")

    @property
    def hour_count(self) -> int:
        return int((self.last_hour - self.first_hour) / HOUR) + 1

    @property
    def hours(self) -> list[datetime]:
        return [self.first_hour + i * HOUR for i in range(self.hour_count)]

    @property
    def query(self) -> dict[str, str]:
        return {
            "start": self.first_hour.strftime(API_HOUR_FORMAT),
            "end": self.last_hour.strftime(API_HOUR_FORMAT),
        }

    def halves(self) -> tuple[ExportWindow, ExportWindow]:
        if self.hour_count < 2:
            raise ValueError(f"a one-hour window cannot be split: {self}")
        middle = self.first_hour + (self.hour_count // 2) * HOUR
        return ExportWindow(self.first_hour, middle - HOUR), ExportWindow(middle, self.last_hour)

    def __str__(self) -> str:
        return f"{self.query['start']}..{self.query['end']}"


def plan_windows(
    hours: list[datetime], max_window_hours: int, *, now: datetime, lag_hours: int
) -> list[ExportWindow]:
    """Cut sorted upload hours into as few windows as the cap allows, refusing unready hours.

    Gaps in ``hours`` start a new window, so no request asks for an hour the run does not own.
    """
    if max_window_hours < 1:
        raise ValueError("max_window_hours must be at least 1")
    if not hours:
        return []
    newest_ready = last_ready_hour(now, lag_hours)
    if hours[-1] > newest_ready:
        raise HourNotReady(
            f"upload hour {hours[-1]:%Y-%m-%dT%H} is not complete until "
            f"{ready_at(hours[-1], lag_hours):%Y-%m-%dT%H:%M}Z (lag {lag_hours} h); "
            f"the newest complete hour is {newest_ready:%Y-%m-%dT%H}"
        )
    windows: list[ExportWindow] = []
    first = previous = hours[0]
    for hour in hours[1:]:
        if hour - previous != HOUR or (hour - first) / HOUR >= max_window_hours:
            windows.append(ExportWindow(first, previous))
            first = hour
        previous = hour
    windows.append(ExportWindow(first, previous))
    return windows
