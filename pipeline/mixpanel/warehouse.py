"""``mixpanel.events`` and its ledger ``mixpanel._loads``: one transaction per day.

A day is swapped in with ``Warehouse.replace_partition`` (delete the day, insert its Parquet
file, write its ledger row), so a re-run leaves exactly the same rows and a failure the previous
ones. The ledger counts what a re-load added, removed and changed against the rows it replaced,
by Mixpanel's duplicate key (``schema.DEDUP_KEY``): the settle-period re-fetches show late events
as added rows.

``MIGRATION`` is the DDL (``pipeline/mixpanel/migration.py``, which ``pipeline/migrations.py``
imports without importing the warehouse), frozen as released.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from pipeline.mixpanel.migration import MIGRATION, MIGRATION_DESCRIPTION
from pipeline.mixpanel.schema import DEDUP_KEY, EVENT_COLUMNS
from pipeline.warehouse import RowDropRefused, Warehouse

__all__ = ["EVENTS_TABLE", "LOADS_TABLE", "MIGRATION", "MIGRATION_DESCRIPTION", "MixpanelLoad",
           "duplicate_rows", "load_day"]

EVENTS_TABLE = "mixpanel.events"
LOADS_TABLE = "mixpanel._loads"



@dataclass(frozen=True, kw_only=True)
class MixpanelLoad:
    """One row of ``mixpanel._loads``: the latest load of a day."""

    day: date
    request_window: str  # the window the day was fetched in, "2026-03-01..2026-03-07"
    window_requests: int
    bytes_downloaded: int
    fetch_seconds: float
    landing_version: str | None = None
    fetched_at: datetime | None = None
    # Filled in by load_day:
    rows: int = 0
    load_seconds: float = 0.0
    loaded_at: datetime | None = None
    rows_added: int = 0
    rows_removed: int = 0
    rows_changed: int = 0
    duplicate_rows: int = 0  # rows beyond the first of their duplicate key


_LOADS_COLUMNS = ("day", "rows", "request_window", "window_requests", "bytes_downloaded",
                  "fetch_seconds", "landing_version", "fetched_at", "load_seconds", "loaded_at",
                  "rows_added", "rows_removed", "rows_changed", "duplicate_rows")
# DuckLake has no keys, so no INSERT OR REPLACE: a ledger row is deleted, then inserted.
INSERT_LOAD = (f"INSERT INTO {LOADS_TABLE} ({', '.join(_LOADS_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_LOADS_COLUMNS))})")


def load_day(warehouse: Warehouse, con: duckdb.DuckDBPyConnection, parquet: str | Path,
             record: MixpanelLoad, *, max_drop_share: float | None = None) -> MixpanelLoad:
    """Swap one day in with its ledger row; return the row as written.

    With ``max_drop_share``, a file holding that share fewer rows than are loaded is refused
    (``RowDropRefused``) and the loaded rows stay: a short re-fetch never silently replaces them.
    """
    started = time.monotonic()
    day = record.day
    changes = [0, 0, 0]
    written: list[MixpanelLoad] = []

    def guard(loaded: int, fetched: int) -> None:
        if max_drop_share is not None and loaded and fetched < loaded * (1 - max_drop_share):
            raise RowDropRefused(
                f"Mixpanel day {day}: the new fetch holds {fetched} rows where {loaded} are "
                f"loaded (a drop past {max_drop_share:.0%}); the loaded rows are kept",
                loaded=loaded, fetched=fetched)
        changes[:] = _changes(con, day, parquet) if loaded else (fetched, 0, 0)

    def ledger(rows: int) -> None:
        duplicates = duplicate_rows(con, day)
        row = replace(record, rows=rows, load_seconds=time.monotonic() - started,
                      loaded_at=datetime.now(UTC), rows_added=changes[0],
                      rows_removed=changes[1], rows_changed=changes[2],
                      duplicate_rows=duplicates)
        con.execute(f"DELETE FROM {LOADS_TABLE} WHERE day = ?", [day])
        con.execute(INSERT_LOAD, [getattr(row, name) for name in _LOADS_COLUMNS])
        written.append(row)

    warehouse.replace_partition(con, EVENTS_TABLE, "_day", day, parquet,
                                what=f"Mixpanel day {day}", record=ledger, guard=guard)
    return written[0]


_KEY = ", ".join(DEDUP_KEY)
_COMPARED = ", ".join(c.name for c in EVENT_COLUMNS if c.name not in ("_day", "_source_file"))


def _changes(con: duckdb.DuckDBPyConnection, day: date,
             parquet: str | Path) -> tuple[int, int, int]:
    """Keys the new file adds, removes and changes against the day as loaded; a key held by
    several rows is compared as a whole (their count and the sum of their hashes)."""
    per_key = f"SELECT {_KEY}, count(*) AS n, sum(hash({_COMPARED})::HUGEINT) AS h FROM"
    matched = " AND ".join(f"old.{k} IS NOT DISTINCT FROM new.{k}" for k in DEDUP_KEY)
    row = con.execute(
        f"WITH old AS ({per_key} {EVENTS_TABLE} WHERE _day = ? GROUP BY ALL), "
        f"new AS ({per_key} read_parquet(?, hive_partitioning = false) GROUP BY ALL) "
        "SELECT count(*) FILTER (WHERE old.n IS NULL), count(*) FILTER (WHERE new.n IS NULL), "
        "count(*) FILTER (WHERE old.n <> new.n OR old.h <> new.h) "
        f"FROM old FULL JOIN new ON {matched}", [day, str(parquet)]).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def duplicate_rows(con: duckdb.DuckDBPyConnection, day: date) -> int:
    """Rows of the day beyond the first of their duplicate key (rows without ``$insert_id``
    are never duplicates: Mixpanel cannot deduplicate them either)."""
    row = con.execute(
        f"SELECT count(*) - count(DISTINCT ({_KEY})) FROM {EVENTS_TABLE} "
        "WHERE _day = ? AND insert_id IS NOT NULL", [day]).fetchone()
    return int(row[0]) if row else 0
