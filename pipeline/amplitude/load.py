"""An upload hour into ``<namespace>.events``, with its row in the ledger ``<namespace>._loads``.

The hour is swapped in one transaction (``pipeline/partition_swap.py``); the ledger says which
fetch the rows came from and what a re-load added, removed and changed (by uuid), and the hour's
quarantined lines in ``_rejects`` are swapped with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from pipeline.amplitude.landing import LandedHour
from pipeline.amplitude.schema import EVENT_COLUMNS
from pipeline.partition_swap import LedgerRow, PartitionLoad, load_partition

LINEAGE = ("_upload_hour", "_source_member")  # how the rows were filed, not what they say


@dataclass(frozen=True, kw_only=True)
class LoadRecord(LedgerRow):
    """One row of ``_loads``: the latest load of an upload hour."""

    upload_hour: datetime
    archive_members: int
    bytes_downloaded: int
    request_window: str
    window_requests: int
    fetch_seconds: float
    source: str | None = None  # "api" or "storage" (None: rebuilt without its landing)
    objects: list[dict[str, object]] | None = None  # each object read: key, etag, bytes

    @classmethod
    def from_landing(cls, landed: LandedHour) -> LoadRecord:
        """The ledger row of an hour loaded from this landing, shared by the asset and rebuild."""
        return cls(upload_hour=landed.upload_hour, archive_members=len(landed.members),
                   bytes_downloaded=landed.member_bytes, request_window=landed.request_window,
                   window_requests=landed.window_requests, fetch_seconds=landed.fetch_seconds,
                   landing_version=landed.version, fetched_at=landed.fetched_at,
                   source=landed.source, objects=landed.objects)


def load_hour(con: duckdb.DuckDBPyConnection, schema: str, parquet: str | Path,
              record: LoadRecord, *, max_drop_share: float | None = None,
              rejects: str | Path | None = None) -> LoadRecord:
    """Swap one upload hour into ``schema`` with its ledger row; return the row as written.

    With ``max_drop_share``, an hour whose new file holds that share fewer rows than are loaded
    is refused (``RowDropRefused``) and keeps its rows: an empty or short re-fetch (a 404, an
    empty archive) must never silently replace loaded events. The hour's quarantined lines are
    swapped for those of ``rejects`` (none when it is None) in the same transaction.
    """
    hour = record.upload_hour

    def swap_rejects(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
        con.execute(f"DELETE FROM {schema}._rejects WHERE upload_hour = ?", [hour])
        if rejects is not None:
            con.execute(f"INSERT INTO {schema}._rejects SELECT *, now() FROM read_parquet(?, "
                        "hive_partitioning = false)", [str(rejects)])
        return {}

    done = load_partition(con, PartitionLoad(
        table=f"{schema}.events", column="_upload_hour", value=hour, parquet=parquet,
        what=f"upload hour {hour:%Y-%m-%dT%H}", key=("uuid",),
        compared=[c.name for c in EVENT_COLUMNS if c.name not in LINEAGE],
        ledger=f"{schema}._loads", ledger_key="upload_hour", ledger_row=record.own_columns(),
        max_drop_share=max_drop_share, also=swap_rejects))
    return record.loaded(done)
