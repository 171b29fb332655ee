"""A day into ``<namespace>.events``, with its row in the ledger ``<namespace>._loads``.

A day is swapped in one transaction (``pipeline/partition_swap.py``), so a re-run leaves exactly
the same rows and a failure the previous ones. The ledger counts what a re-load added, removed
and changed against the rows it replaced, by Mixpanel's duplicate key (``schema.DEDUP_KEY``): the
settle-period re-fetches show late events as added rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from pipeline.mixpanel.landing import LandedDay
from pipeline.mixpanel.schema import DEDUP_KEY, EVENT_COLUMNS
from pipeline.partition_swap import LedgerRow, PartitionLoad, load_partition

LINEAGE = ("_day", "_source_file")


@dataclass(frozen=True, kw_only=True)
class MixpanelLoad(LedgerRow):
    """One row of ``_loads``: the latest load of a day."""

    day: date
    request_window: str  # the window the day was fetched in, "2026-03-01..2026-03-07"
    window_requests: int
    bytes_downloaded: int
    fetch_seconds: float
    duplicate_rows: int = 0  # filled in by load_day: rows beyond the first of their duplicate key

    filled = (*LedgerRow.filled, "duplicate_rows")

    @classmethod
    def from_landing(cls, landed: LandedDay) -> MixpanelLoad:
        """The ledger row of a day loaded from this landing, shared by the asset and rebuild."""
        return cls(day=landed.day, request_window=landed.request_window,
                   window_requests=landed.window_requests, bytes_downloaded=landed.bytes,
                   fetch_seconds=landed.fetch_seconds, landing_version=landed.version,
                   fetched_at=landed.fetched_at)


def load_day(con: duckdb.DuckDBPyConnection, schema: str, parquet: str | Path,
             record: MixpanelLoad, *, max_drop_share: float | None = None) -> MixpanelLoad:
    """Swap one day into ``schema`` with its ledger row; return the row as written.

    With ``max_drop_share``, a file holding that share fewer rows than are loaded is refused
    (``RowDropRefused``) and the loaded rows stay: a short re-fetch never silently replaces them.
    """
    day = record.day
    done = load_partition(con, PartitionLoad(
        table=f"{schema}.events", column="_day", value=day, parquet=parquet,
        what=f"Mixpanel day {day}", key=DEDUP_KEY,
        compared=[c.name for c in EVENT_COLUMNS if c.name not in LINEAGE],
        ledger=f"{schema}._loads", ledger_key="day", ledger_row=record.own_columns(),
        max_drop_share=max_drop_share,
        also=lambda con: {"duplicate_rows": duplicate_rows(con, schema, day)}))
    return record.loaded(done, duplicate_rows=int(str(done.ledger_row["duplicate_rows"])))


def duplicate_rows(con: duckdb.DuckDBPyConnection, schema: str, day: date) -> int:
    """Rows of the day beyond the first of their duplicate key (rows without ``$insert_id``
    are never duplicates: Mixpanel cannot deduplicate them either)."""
    key = ", ".join(DEDUP_KEY)
    row = con.execute(
        f"SELECT count(*) - count(DISTINCT ({key})) FROM {schema}.events "
        "WHERE _day = ? AND insert_id IS NOT NULL", [day]).fetchone()
    return int(row[0]) if row else 0
