"""One upload hour swapped into the warehouse and measured, as a step's worker process does it
(``pipeline/worker.py``): the worker keeps the warehouse open from its first hour to its exit
(``warehouse.held``), and the hour's checks read the same connection right after the swap."""

from __future__ import annotations

from pathlib import Path

from pipeline.amplitude.hour_checks import Outcome, check_hour
from pipeline.amplitude.load import LoadRecord, load_hour
from pipeline.warehouse import Warehouse, held


def load_and_check(warehouse: Warehouse, schema: str, parquet: str | Path, record: LoadRecord,
                   *, max_drop_share: float | None, check_drop_share: float,
                   rejects: str | None) -> tuple[LoadRecord, list[Outcome]]:
    """``load_hour``, then ``check_hour`` on what it wrote."""
    con = held(warehouse)
    written = load_hour(con, schema, parquet, record, max_drop_share=max_drop_share,
                        rejects=rejects)
    return written, check_hour(con, schema, written.upload_hour, parquet, written,
                               max_drop_share=check_drop_share)
