"""The Mixpanel source's schema, as released, version by version (run by ``pipeline.migrations``).

Statements name the project's schema as ``{schema}`` (``mixpanel`` for the project set up from
the environment). Version 1 creates ``events`` and its ledger ``_loads`` where they are missing
and adopts them where an earlier release made them (as version 7 of Amplitude's list, before
each source kept its own versions). Frozen: a changed column goes into a new migration.
"""

from __future__ import annotations

import duckdb

from pipeline.migrations import Migration, ProjectSchema, check_columns, for_backend, statements
from pipeline.mixpanel.schema import EVENT_COLUMNS

_V1_EVENTS = (
    "event VARCHAR, distinct_id VARCHAR, insert_id VARCHAR, time TIMESTAMPTZ, time_raw DOUBLE, "
    "time_in_ms BIGINT, mp_processing_time TIMESTAMPTZ, device_id VARCHAR, user_id VARCHAR, "
    "browser VARCHAR, browser_version VARCHAR, os VARCHAR, os_version VARCHAR, device VARCHAR, "
    "model VARCHAR, manufacturer VARCHAR, brand VARCHAR, carrier VARCHAR, screen_height BIGINT, "
    "screen_width BIGINT, app_version_string VARCHAR, app_build_number VARCHAR, "
    "lib_version VARCHAR, mp_lib VARCHAR, city VARCHAR, region VARCHAR, country_code VARCHAR, "
    "current_url VARCHAR, referrer VARCHAR, referring_domain VARCHAR, initial_referrer VARCHAR, "
    "initial_referring_domain VARCHAR, search_engine VARCHAR, utm_source VARCHAR, "
    "utm_medium VARCHAR, utm_campaign VARCHAR, properties JSON USING COMPRESSION zstd, "
    "_extras JSON, _day DATE NOT NULL, _source_file VARCHAR")
_V1_LOADS = (
    "day DATE PRIMARY KEY, rows BIGINT, request_window VARCHAR, window_requests INTEGER, "
    "bytes_downloaded BIGINT, fetch_seconds DOUBLE, landing_version VARCHAR, "
    "fetched_at TIMESTAMPTZ, load_seconds DOUBLE, loaded_at TIMESTAMPTZ, rows_added BIGINT, "
    "rows_removed BIGINT, rows_changed BIGINT, duplicate_rows BIGINT")


def _names(columns: str) -> list[str]:
    return [item.split()[0] for item in columns.split(", ")]


def _create_or_adopt_v1(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    for table, columns in (("events", _V1_EVENTS), ("_loads", _V1_LOADS)):
        con.execute(for_backend(con, f"CREATE TABLE IF NOT EXISTS {schema}.{table} ({columns})"))
        check_columns(con, schema, table, _names(columns), "schema version 1")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "{schema}.events and its ledger {schema}._loads", _create_or_adopt_v1),
    # What each forget request removed (python -m pipeline.forget), counts only: never an id,
    # nor a hash of one.
    Migration(2, "{schema}._forget_requests audits forgotten users without their ids",
              statements(
        "CREATE TABLE {schema}._forget_requests (request_id VARCHAR PRIMARY KEY, "
        "requested_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, status VARCHAR NOT NULL, "
        "distinct_id_count INTEGER, user_id_count INTEGER, scan VARCHAR, "
        "days_rewritten INTEGER, landing_versions_written INTEGER, "
        "landing_versions_removed INTEGER, landing_lines_removed BIGINT, "
        "parquet_files_rewritten INTEGER, parquet_rows_removed BIGINT, "
        "event_rows_removed BIGINT)",
              )),
)


def project_schema(schema: str) -> ProjectSchema:
    """A Mixpanel project's schema, with the columns its events table must have."""
    return ProjectSchema(schema, MIGRATIONS, {"events": [c.name for c in EVENT_COLUMNS]})
