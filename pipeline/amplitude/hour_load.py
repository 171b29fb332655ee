"""Upload hours swapped into the warehouse and measured, as a step's worker process does it
(``pipeline/worker.py``): the worker keeps the warehouse open from its first hour to its exit
(``warehouse.held``), and the hours' checks read that connection once a batch is swapped in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pipeline.amplitude.hour_checks import LoadedHour, Outcome, check_hours
from pipeline.amplitude.load import LoadRecord, load_hour
from pipeline.warehouse import Warehouse, held

# The checks of a range run over batches of at most this many rows: one query per batch keeps
# small hours cheap, and the batch bound keeps ``count(DISTINCT uuid)`` within the load's memory.
CHECK_BATCH_ROWS = 2_000_000


def load(warehouse: Warehouse, schema: str, parquet: str | Path, record: LoadRecord, *,
         max_drop_share: float | None, rejects: str | None) -> LoadRecord:
    return load_hour(held(warehouse), schema, parquet, record, max_drop_share=max_drop_share,
                     rejects=rejects)


def check(warehouse: Warehouse, schema: str, loaded: Sequence[LoadedHour], *,
          max_drop_share: float) -> dict[datetime, list[Outcome]]:
    return check_hours(held(warehouse), schema, loaded, max_drop_share=max_drop_share)
