"""A project's warehouse rows against Amplitude's own daily numbers (its ``daily_counts``).

It reads the all-projects views (``amplitude_all``, ``pipeline/project_views.py``) for one
project, as an analyst comparing projects would.

A day is the project's calendar day (its time zone, as Amplitude's charts count). It is settled
when every upload hour from its start to ``settle_hours`` after its end is loaded: only then can
the warehouse be expected to hold what Amplitude counted. Events of the day uploaded later still
are late arrivals: they are counted and reported, and the day matches if Amplitude's number
equals the warehouse's either with or without them (Amplitude may have counted before or after
they came).

The measures follow Amplitude's definitions: an active user has at least one event on the day,
a new user's first event ever falls on it, and events are every event of the day. Event types
Amplitude marks inactive are not excluded here, since the export does not say which they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import duckdb

from pipeline import sql

VIEWS = "amplitude_all"
EVENTS_TABLE = f"{VIEWS}.events"

MEASURES = ("active_users", "new_users", "events")


@dataclass(frozen=True)
class DayResult:
    day: date
    measure: str
    amplitude: int
    warehouse: int  # counting events uploaded within the settle window
    late: int  # what events uploaded after it add to the warehouse's number
    tolerance: float

    @property
    def matches(self) -> bool:
        allowed = self.amplitude * self.tolerance
        return any(abs(ours - self.amplitude) <= allowed
                   for ours in (self.warehouse, self.warehouse + self.late))

    def __str__(self) -> str:
        late = f" (+{self.late} late)" if self.late else ""
        return (f"{self.day}: {self.measure.replace('_', ' ')}: Amplitude {self.amplitude}, "
                f"warehouse {self.warehouse}{late}")


def settled_days(con: duckdb.DuckDBPyConnection, project: str, timezone: str,
                 settle_hours: int, days: list[date]) -> list[date]:
    """Those of ``days`` whose every upload hour, through the settle window, is loaded."""
    loaded = {row[0].astimezone(UTC) for row in con.execute(
        f"SELECT upload_hour FROM {VIEWS}._loads WHERE project = ?", [project]).fetchall()}
    settled = []
    for day in days:
        start, end = _day_bounds(con, day, timezone)
        hour, last = start, end + timedelta(hours=settle_hours)
        while hour < last and hour in loaded:
            hour += timedelta(hours=1)
        if hour >= last:
            settled.append(day)
    return settled


def _day_bounds(con: duckdb.DuckDBPyConnection, day: date,
                timezone: str) -> tuple[datetime, datetime]:
    """The UTC instants the project's day starts and ends (DST days are 23 or 25 hours)."""
    row = con.execute("SELECT timezone(?, ?::TIMESTAMP), timezone(?, ?::TIMESTAMP)",
                      [timezone, day.isoformat(), timezone,
                       (day + timedelta(days=1)).isoformat()]).fetchone()
    assert row is not None
    return row[0].astimezone(UTC), row[1].astimezone(UTC)


def reconcile(con: duckdb.DuckDBPyConnection, *, project: str, timezone: str,
              settle_hours: int, tolerance: float) -> tuple[list[DayResult], list[date]]:
    """Each settled day's measures against the newest snapshot of Amplitude's counts, and the
    days of that snapshot not yet settled."""
    snapshot = {(row[0], measure): int(row[i + 1] or 0) for row in con.execute(
        "SELECT event_date, " + ", ".join(MEASURES) + f" FROM {VIEWS}.daily_counts_current "
        "WHERE project = ? AND event_date IS NOT NULL ORDER BY event_date",
        [project]).fetchall()
        for i, measure in enumerate(MEASURES)}
    days = sorted({day for day, _ in snapshot})
    settled = settled_days(con, project, timezone, settle_hours, days)
    results: list[DayResult] = []
    for day in settled:
        ours = _counts(con, project, day, timezone, settle_hours)
        results.extend(DayResult(day, m, snapshot[(day, m)], ours[m][0], ours[m][1] - ours[m][0],
                                 tolerance) for m in MEASURES)
    return results, [d for d in days if d not in settled]


def _counts(con: duckdb.DuckDBPyConnection, project: str, day: date, timezone: str,
            settle_hours: int) -> dict[str, tuple[int, int]]:
    """Each measure for ``day``: (within the settle window, with every loaded event)."""
    _, end = _day_bounds(con, day, timezone)
    cutoff = end + timedelta(hours=settle_hours)
    local_day = f"timezone({sql.literal(timezone)}, event_time)::DATE"
    row = con.execute(
        f"WITH firsts AS (SELECT amplitude_id, min(event_time) AS first_time, "
        f"min(event_time) FILTER (WHERE _upload_hour < $cutoff) AS first_in_window "
        f"FROM {EVENTS_TABLE} WHERE project = $project GROUP BY amplitude_id), "
        f"day AS (SELECT amplitude_id, _upload_hour < $cutoff AS in_window FROM {EVENTS_TABLE} "
        f"WHERE project = $project AND {local_day} = $day) "
        "SELECT count(DISTINCT amplitude_id) FILTER (WHERE in_window), "
        "count(DISTINCT amplitude_id), count(*) FILTER (WHERE in_window), count(*), "
        f"(SELECT count(*) FROM firsts WHERE timezone({sql.literal(timezone)}, "
        "first_in_window)::DATE = $day), "
        f"(SELECT count(*) FROM firsts WHERE timezone({sql.literal(timezone)}, "
        "first_time)::DATE = $day) FROM day",
        {"cutoff": cutoff, "project": project, "day": day}).fetchone()
    assert row is not None
    values = [int(v or 0) for v in row]
    return {"active_users": (values[0], values[1]), "events": (values[2], values[3]),
            "new_users": (values[4], values[5])}
