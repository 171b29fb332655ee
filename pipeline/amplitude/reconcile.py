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

Users are counted as Amplitude counts them: a merged user once. An event's user is its
``amplitude_id``'s canonical id from ``identity_merges``, the one definition of it (migration 8,
also behind the dbt models), and a new user's first event is the first over all their ids. A
project without merge rows counts raw ``amplitude_id``s, which is the same thing; the result
says which it compared, since on a real project the raw count runs a few percent high.

A mismatching day names the chart annotations that overlap it (``annotations_current``: an
annotation from ``start`` to ``end``, or at ``start`` alone when ``end`` is null), so the gap is
read beside the release or outage that may explain it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import duckdb

from pipeline import sql

VIEWS = "amplitude_all"
EVENTS_TABLE = f"{VIEWS}.events"
MERGES_VIEW = f"{VIEWS}.identity_merges"  # amplitude_id -> canonical_amplitude_id

MEASURES = ("active_users", "new_users", "events")


@dataclass(frozen=True)
class DayResult:
    day: date
    measure: str
    amplitude: int
    warehouse: int  # counting events uploaded within the settle window
    late: int  # what events uploaded after it add to the warehouse's number
    tolerance: float
    annotations: tuple[str, ...] = ()  # those of the day, named on a mismatch

    @property
    def matches(self) -> bool:
        allowed = self.amplitude * self.tolerance
        return any(abs(ours - self.amplitude) <= allowed
                   for ours in (self.warehouse, self.warehouse + self.late))

    def __str__(self) -> str:
        late = f" (+{self.late} late)" if self.late else ""
        notes = f" [annotations: {', '.join(self.annotations)}]" if self.annotations else ""
        return (f"{self.day}: {self.measure.replace('_', ' ')}: Amplitude {self.amplitude}, "
                f"warehouse {self.warehouse}{late}{notes}")


@dataclass(frozen=True)
class Reconciliation:
    """Every settled day's results, the snapshot's days not yet settled, and how many merge
    rows the project's users were counted with."""

    results: list[DayResult]
    unsettled: list[date]
    merge_rows: int

    @property
    def users_counted(self) -> str:
        if self.merge_rows:
            return f"canonical ids ({self.merge_rows} merge rows)"
        return "raw amplitude_id (no merge data)"


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
              settle_hours: int, tolerance: float) -> Reconciliation:
    """Each settled day's measures against the newest snapshot of Amplitude's counts, the days
    of that snapshot not yet settled, and the merge rows users were counted with."""
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
        day_results = [DayResult(day, m, snapshot[(day, m)], ours[m][0],
                                 ours[m][1] - ours[m][0], tolerance) for m in MEASURES]
        if not all(r.matches for r in day_results):
            notes = day_annotations(con, project, day, timezone)
            day_results = [replace(r, annotations=notes) for r in day_results]
        results.extend(day_results)
    merges = con.execute(f"SELECT count(*) FROM {VIEWS}.merge_ids WHERE project = ?",
                         [project]).fetchone()
    return Reconciliation(results, [d for d in days if d not in settled],
                          int(merges[0]) if merges else 0)


def day_annotations(con: duckdb.DuckDBPyConnection, project: str, day: date,
                    timezone: str) -> tuple[str, ...]:
    """The newest snapshot's annotations overlapping the project's ``day``, as
    "label (category)", earliest first."""
    start, end = _day_bounds(con, day, timezone)
    rows = con.execute(
        f"SELECT label || coalesce(' (' || category_name || ')', '') "
        f"FROM {VIEWS}.annotations_current WHERE project = ? AND start < ? "
        'AND coalesce("end", start) >= ? ORDER BY start, id', [project, end, start]).fetchall()
    return tuple(str(row[0]) for row in rows)


def _counts(con: duckdb.DuckDBPyConnection, project: str, day: date, timezone: str,
            settle_hours: int) -> dict[str, tuple[int, int]]:
    """Each measure for ``day``: (within the settle window, with every loaded event). A user is
    a canonical id (``identity_merges``; an id never merged is its own)."""
    _, end = _day_bounds(con, day, timezone)
    cutoff = end + timedelta(hours=settle_hours)
    zone = sql.literal(timezone)
    row = con.execute(
        "WITH events AS (SELECT coalesce(m.canonical_amplitude_id, e.amplitude_id) AS user_id, "
        "e.event_time, e._upload_hour < $cutoff AS in_window "
        f"FROM {EVENTS_TABLE} AS e LEFT JOIN (SELECT amplitude_id, canonical_amplitude_id "
        f"FROM {MERGES_VIEW} WHERE project = $project) AS m USING (amplitude_id) "
        "WHERE e.project = $project), "
        "firsts AS (SELECT user_id, min(event_time) AS first_time, "
        "min(event_time) FILTER (WHERE in_window) AS first_in_window "
        "FROM events WHERE user_id IS NOT NULL GROUP BY user_id), "
        f"day AS (SELECT user_id, in_window FROM events "
        f"WHERE timezone({zone}, event_time)::DATE = $day) "
        "SELECT count(DISTINCT user_id) FILTER (WHERE in_window), "
        "count(DISTINCT user_id), count(*) FILTER (WHERE in_window), count(*), "
        f"(SELECT count(*) FROM firsts WHERE timezone({zone}, first_in_window)::DATE = $day), "
        f"(SELECT count(*) FROM firsts WHERE timezone({zone}, first_time)::DATE = $day) "
        "FROM day",
        {"cutoff": cutoff, "project": project, "day": day}).fetchone()
    assert row is not None
    values = [int(v or 0) for v in row]
    return {"active_users": (values[0], values[1]), "events": (values[2], values[3]),
            "new_users": (values[4], values[5])}
