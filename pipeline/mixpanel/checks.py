"""The per-day check of the Mixpanel table: how much of a day is duplicates.

Mixpanel's raw export is not deduplicated, so ``<namespace>.events`` keeps every row as served and
``analytics.mixpanel_events_unique`` removes duplicates at query time. The share per day says how
much that matters, and a jump flags an SDK retrying or a re-import.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb

from pipeline.mixpanel.load import duplicate_rows

# Past this share of a day's rows the check warns: SDK retries make a few percent, a re-import or
# a retry loop far more.
DUPLICATE_SHARE_WARN = 0.10


@dataclass(frozen=True)
class DuplicateShare:
    day: date
    rows: int
    duplicates: int  # rows beyond the first of their (event, distinct_id, $insert_id, time)

    @property
    def share(self) -> float:
        return self.duplicates / self.rows if self.rows else 0.0


def duplicate_share(con: duckdb.DuckDBPyConnection, schema: str, day: date) -> DuplicateShare:
    row = con.execute(f"SELECT count(*) FROM {schema}.events WHERE _day = ?", [day]).fetchone()
    rows = int(row[0]) if row else 0
    return DuplicateShare(day, rows, duplicate_rows(con, schema, day) if rows else 0)
