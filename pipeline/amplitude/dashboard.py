"""Dashboard REST: the events list, and Amplitude's own daily numbers to reconcile against.

Amplitude's charts count by event date in the project's time zone, so the daily counts are
stored with the zone they were asked in. A day's active and new users come from ``/api/2/users``
and its event total from ``/api/2/events/segmentation`` over all events; each answer is a chart,
``{"data": {"xValues": [day, ...], "series": [[value, ...]]}}``.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import duckdb

from pipeline import sql
from pipeline.amplitude.client import AmplitudeClient
from pipeline.amplitude.rate_limits import segmentation_cost
from pipeline.http import not_json
from pipeline.records import MAX_DOCUMENT_BYTES, Field, RecordsError
from pipeline.snapshots import Fetch

ENDPOINT = "dashboard"
ALL_EVENTS = json.dumps({"event_type": "_all"})

EVENTS_LIST_FIELDS = (
    Field("value", "event_type", "VARCHAR"),  # the raw event name
    Field("display", "display", "VARCHAR"),
    Field("name", "name", "VARCHAR"),
    Field("id", "id", "BIGINT"),
    Field("totals", "totals", "BIGINT"),  # this week's count, as Amplitude reports it
    Field("totals_delta", "totals_delta", "BIGINT"),
    Field("non_active", "non_active", "BOOLEAN"),
    Field("hidden", "hidden", "BOOLEAN"),
    Field("deleted", "deleted", "BOOLEAN"),
    Field("flow_hidden", "flow_hidden", "BOOLEAN"),
    Field("autohidden", "autohidden", "BOOLEAN"),
    Field("clusters_hidden", "clusters_hidden", "BOOLEAN"),
    Field("in_waitroom", "in_waitroom", "BOOLEAN"),
    Field("timeline_hidden", "timeline_hidden", "BOOLEAN"),
)
COUNT_FILES = {"active_users": "users-active.json", "new_users": "users-new.json",
               "events": "segmentation-totals.json"}


def fetch_events_list(client: AmplitudeClient, staged: Path) -> Fetch:
    _, requests = client.fetch_to("/api/2/events/list", None, staged / "events-list.json",
                                  what="events list", endpoint=ENDPOINT, check=not_json)
    return Fetch(["events-list.json"], requests)


def fetch_daily_counts(client: AmplitudeClient, staged: Path, *, first: date, last: date,
                       timezone: str) -> Fetch:
    """Three charts over ``first..last``; ``timezone`` is recorded, since Amplitude answers in
    the project's zone whatever the client assumes."""
    window = {"start": f"{first:%Y%m%d}", "end": f"{last:%Y%m%d}", "i": "1"}
    days = (last - first).days + 1
    asks = {
        "active_users": ("/api/2/users", {**window, "m": "active"}, 1.0),
        "new_users": ("/api/2/users", {**window, "m": "new"}, 1.0),
        "events": ("/api/2/events/segmentation", {**window, "e": ALL_EVENTS, "m": "totals"},
                   segmentation_cost(1, days=days)),
    }
    got = Fetch(list(COUNT_FILES.values()),
                details={"first_day": first.isoformat(), "last_day": last.isoformat(),
                         "timezone": timezone})
    for measure, (path, params, cost) in asks.items():
        got.requests += client.fetch_to(path, params, staged / COUNT_FILES[measure],
                                        what=f"{measure.replace('_', ' ')} {first}..{last}",
                                        endpoint=ENDPOINT, cost=cost, check=not_json)[1]
    return got


def daily_counts_plan(files: dict[str, Path], snapshot: date, timezone: str) -> str:
    """One row per day of the window: active users, new users, events."""
    def series(measure: str) -> str:
        source = (f"read_json_objects({sql.literal(str(files[measure]))}, format = 'auto', "
                  f"maximum_object_size = {MAX_DOCUMENT_BYTES})")
        return (f"SELECT CAST(unnest(CAST(json_extract(json, '$.data.xValues') AS VARCHAR[])) "
                f"AS DATE) AS event_date, unnest(CAST(json_extract(json, '$.data.series[0]') "
                f"AS BIGINT[])) AS {measure} FROM {source}")

    joined = " FULL JOIN ".join(f"({series(m)}) AS {m}" if i == 0 else
                                f"({series(m)}) AS {m} USING (event_date)"
                                for i, m in enumerate(COUNT_FILES))
    return (f"SELECT DATE {sql.literal(snapshot.isoformat())} AS snapshot_date, event_date, "
            f"active_users, new_users, events, {sql.literal(timezone)} AS timezone "
            f"FROM {joined} ORDER BY event_date")


def write_daily_counts(con: duckdb.DuckDBPyConnection, files: dict[str, Path], snapshot: date,
                       timezone: str, out: Path) -> int:
    what = f"amplitude/daily_counts for {snapshot}"
    try:
        row = con.execute(f"COPY ({daily_counts_plan(files, snapshot, timezone)}) TO "
                          f"{sql.literal(str(out))} (FORMAT parquet, COMPRESSION zstd)").fetchone()
    except duckdb.Error as error:
        out.unlink(missing_ok=True)
        raise RecordsError(f"{what}: a chart answer does not have the shape of Amplitude's "
                           f"charts: {str(error).splitlines()[0]}") from error
    return int(row[0]) if row else 0


def trailing_window(snapshot: date, days: int) -> tuple[date, date]:
    """The ``days`` whole days up to and including the snapshot's day."""
    return snapshot - timedelta(days=days - 1), snapshot
