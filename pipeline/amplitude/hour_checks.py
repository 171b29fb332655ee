"""What an operator wants to know about each loaded upload hour, measured in the load's own
connection once its hours are swapped in, so a range run reports every hour on its own."""

from __future__ import annotations

from collections.abc import Sequence
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


@dataclass(frozen=True)
class LoadedHour:
    """An hour just swapped in: its Parquet file and what its load recorded."""

    parquet: str | Path
    record: LoadRecord

    @property
    def hour(self) -> datetime:
        return self.record.upload_hour


def check_hours(con: duckdb.DuckDBPyConnection, schema: str, loaded: Sequence[LoadedHour], *,
                max_drop_share: float) -> dict[datetime, list[Outcome]]:
    """Each hour's outcomes, measured for all of ``loaded`` at once: one query per measure over
    the range (grouped by hour) costs what one hour's did, so a range of small hours pays no
    per-hour toll. The caller bounds a batch's rows (``count(DISTINCT uuid)`` holds them)."""
    if not loaded:
        return {}
    hours = [h.hour for h in loaded]
    within = ("_upload_hour BETWEEN $first AND $last "
              "AND list_contains($hours::TIMESTAMPTZ[], _upload_hour)")
    span = {"first": min(hours), "last": max(hours), "hours": hours}
    counted = {hour: (int(rows), int(repeats), int(outside)) for hour, rows, repeats, outside
               in con.execute(
        f"SELECT _upload_hour, count(*), count(*) - count(DISTINCT uuid), count(*) FILTER ("
        f"WHERE server_upload_time < _upload_hour OR server_upload_time >= _upload_hour + "
        f"INTERVAL 1 HOUR) FROM {schema}.events WHERE {within} GROUP BY 1", span).fetchall()}
    files = [str(h.parquet) for h in loaded]
    in_files = {str(name): int(rows or 0) for name, rows in con.execute(
        "SELECT file_name, sum(num_rows) FROM parquet_file_metadata($files::VARCHAR[]) "
        "GROUP BY 1", {"files": files}).fetchall()}
    ledger = {hour: int(rows or 0) for hour, rows in con.execute(
        f"SELECT upload_hour, rows FROM {schema}._loads WHERE list_contains("
        "$hours::TIMESTAMPTZ[], upload_hour)", {"hours": hours}).fetchall()}
    new_fields = {hour: [str(k) for k in keys] for hour, keys in con.execute(
        f"SELECT _upload_hour, list(DISTINCT k ORDER BY k) FROM (SELECT _upload_hour, "
        f"unnest(json_keys(_extras)) AS k FROM {schema}.events WHERE {within} "
        "AND _extras IS NOT NULL) GROUP BY 1", span).fetchall()}
    return {h.hour: _outcomes(counted.get(h.hour, (0, 0, 0)), in_files.get(str(h.parquet), 0),
                              ledger.get(h.hour, 0), new_fields.get(h.hour, []), h.record,
                              max_drop_share) for h in loaded}


def check_hour(con: duckdb.DuckDBPyConnection, schema: str, hour: datetime, parquet: str | Path,
               record: LoadRecord, *, max_drop_share: float) -> list[Outcome]:
    return check_hours(con, schema, [LoadedHour(parquet, record)],
                       max_drop_share=max_drop_share)[hour]


def _outcomes(counted: tuple[int, int, int], in_file: int, ledger: int, new_fields: list[str],
              record: LoadRecord, max_drop_share: float) -> list[Outcome]:
    rows, repeats, outside = counted
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
