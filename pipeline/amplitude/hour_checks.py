"""What an operator wants to know about each loaded upload hour, measured in the load's own
connection right after the hour's swap, so a range run reports every hour on its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from pipeline.amplitude.load import LoadRecord


@dataclass(frozen=True)
class CheckSpec:
    name: str
    description: str
    warn: bool  # a warning to look at, not an error in the data path


@dataclass(frozen=True)
class Outcome:
    name: str
    passed: bool
    metadata: dict[str, int | float | str] = field(default_factory=dict)


SPECS = (
    CheckSpec("uuid_unique_per_hour", "No uuid repeats within an upload hour (Amplitude can "
              "re-export duplicates; analytics.events_unique keeps the latest).", warn=True),
    CheckSpec("rows_match_parquet_and_ledger", "The hour's rows in DuckDB equal the rows of its "
              "Parquet file and the row count the ledger (_loads) recorded.", warn=False),
    CheckSpec("upload_time_in_hour", "Every row's server_upload_time lies in the upload hour it "
              "was exported for (else Amplitude filed events under another hour).", warn=True),
    CheckSpec("no_schema_drift", "No line carried a field outside the known schema; new fields "
              "are kept in _extras and named here.", warn=True),
    CheckSpec("no_row_drop", "The hour holds no fewer rows than its previous load, past the "
              "allowed share (a drop the operator accepted still shows here).", warn=True),
)


def check_hour(con: duckdb.DuckDBPyConnection, schema: str, hour: datetime, parquet: str | Path,
               record: LoadRecord, *, max_drop_share: float) -> list[Outcome]:
    rows, repeats, outside = _row(con, (
        f"SELECT count(*), count(*) - count(DISTINCT uuid), count(*) FILTER (WHERE "
        f"server_upload_time < _upload_hour OR server_upload_time >= _upload_hour + "
        f"INTERVAL 1 HOUR) FROM {schema}.events WHERE _upload_hour = ?"), [hour])
    (in_file,) = _row(con, "SELECT sum(num_rows) FROM parquet_file_metadata(?)", [str(parquet)])
    (ledger,) = _row(con, f"SELECT rows FROM {schema}._loads WHERE upload_hour = ?", [hour])
    new_fields = [str(r[0]) for r in con.execute(
        f"SELECT DISTINCT unnest(json_keys(_extras)) AS k FROM {schema}.events "
        "WHERE _upload_hour = ? AND _extras IS NOT NULL ORDER BY k", [hour]).fetchall()]
    previous = record.rows - record.rows_added + record.rows_removed
    dropped = previous - rows if previous > rows else 0
    return [
        Outcome("uuid_unique_per_hour", repeats == 0, {"duplicate_rows": repeats}),
        Outcome("rows_match_parquet_and_ledger", rows == in_file == ledger,
                {"duckdb_rows": rows, "parquet_rows": in_file, "ledger_rows": ledger}),
        Outcome("upload_time_in_hour", outside == 0, {"rows_outside_hour": outside}),
        Outcome("no_schema_drift", not new_fields,
                {"new_fields": ", ".join(new_fields), "new_field_count": len(new_fields)}),
        Outcome("no_row_drop", dropped <= previous * max_drop_share,
                {"previous_rows": previous, "rows": rows, "rows_dropped": dropped}),
    ]


def _row(con: duckdb.DuckDBPyConnection, query: str, params: list[object]) -> tuple[int, ...]:
    found = con.execute(query, params).fetchone()
    assert found is not None  # aggregates and a ledger row written in this transaction
    return tuple(int(v or 0) for v in found)
