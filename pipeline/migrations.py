"""The warehouse's schema versions and the ordered migrations between them.

A warehouse file outlives the code that wrote it, so it records its schema version in
``amplitude._schema_versions`` and every open brings it up to the newest version this code knows.
Each migration runs in its own transaction together with the row that records it: a failure rolls
both back and leaves the previous version intact, to be retried by the next open.

There is one path: a fresh file is "version 0" and is built by the same migrations that upgrade an
old one, so a fresh warehouse and an upgraded one cannot drift apart. Version 1 is the layout the
first release wrote without a version table; its migration creates that layout where it is
missing and adopts it where it is found. A migration's statements are frozen once released (a
changed column goes into a new migration), which is why version 1 spells its columns out here
instead of reading them from ``pipeline/amplitude/schema.py``.

A DuckLake warehouse (``pipeline/ducklake.py``) runs the same migrations with the same columns:
DuckLake has no PRIMARY KEY, UNIQUE or per-column compression, so on DuckLake each statement goes
through :func:`for_backend`, which drops exactly those clauses, and the DuckDB file's statements
stay as released. The keys were never relied on to find rows, only to reject duplicates, and the
writers delete a ledger row before inserting its successor.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from pipeline.ducklake import is_ducklake
from pipeline.mixpanel.migration import MIGRATION as MIXPANEL_MIGRATION
from pipeline.mixpanel.migration import MIGRATION_DESCRIPTION as MIXPANEL_MIGRATION_DESCRIPTION

VERSIONS_TABLE = "amplitude._schema_versions"


class MigrationError(RuntimeError):
    """The warehouse's schema cannot be brought to the version this code expects."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[duckdb.DuckDBPyConnection], None]


# What DuckLake refuses: "PRIMARY KEY/UNIQUE constraints are not supported in DuckLake",
# "Defining a compression type for a column is not supported in DuckLake".
_NOT_ON_DUCKLAKE = (re.compile(r",\s*PRIMARY KEY\s*\([^)]*\)"), re.compile(r" PRIMARY KEY\b"),
                    re.compile(r" UNIQUE\b"), re.compile(r" USING COMPRESSION \w+"))


def for_backend(con: duckdb.DuckDBPyConnection, statement: str) -> str:
    """``statement`` as released for a DuckDB file; on DuckLake, without what it refuses."""
    if not is_ducklake(con):
        return statement
    for clause in _NOT_ON_DUCKLAKE:
        statement = clause.sub("", statement)
    return statement


def _run(*statements: str) -> Callable[[duckdb.DuckDBPyConnection], None]:
    def apply(con: duckdb.DuckDBPyConnection) -> None:
        for statement in statements:
            con.execute(for_backend(con, statement))
    return apply


# amplitude.events as the first release created it (pipeline/amplitude/schema.py at that release).
def _column_list(spec: str) -> list[tuple[str, str]]:
    """``"name TYPE, name TYPE ..."`` as (name, type) pairs."""
    return [(item.split()[0], item.strip().split(" ", 1)[1]) for item in spec.split(",")]


_V1_EVENT_COLUMNS = _column_list("""
    insert_id VARCHAR, insert_key VARCHAR, schema BIGINT, adid VARCHAR,
    amplitude_attribution_ids VARCHAR[], amplitude_event_type VARCHAR, amplitude_id BIGINT,
    app BIGINT, city VARCHAR, client_event_time TIMESTAMPTZ, client_upload_time TIMESTAMPTZ,
    country VARCHAR, data JSON, data_type VARCHAR, device_brand VARCHAR, device_carrier VARCHAR,
    device_family VARCHAR, device_id VARCHAR, device_manufacturer VARCHAR, device_model VARCHAR,
    device_type VARCHAR, dma VARCHAR, event_id BIGINT,
    event_properties JSON USING COMPRESSION zstd, event_time TIMESTAMPTZ, event_type VARCHAR,
    global_user_properties JSON, group_properties JSON, groups JSON, idfa VARCHAR,
    ip_address VARCHAR, is_attribution_event BOOLEAN, language VARCHAR, library VARCHAR,
    location_lat DOUBLE, location_lng DOUBLE, os_name VARCHAR, os_version VARCHAR,
    partner_id VARCHAR, paying BOOLEAN, plan JSON, platform VARCHAR, processed_time TIMESTAMPTZ,
    region VARCHAR, sample_rate DOUBLE, server_received_time TIMESTAMPTZ,
    server_upload_time TIMESTAMPTZ, session_id BIGINT, source_id VARCHAR, start_version VARCHAR,
    user_creation_time TIMESTAMPTZ, user_id VARCHAR,
    user_properties JSON USING COMPRESSION zstd, uuid VARCHAR, version_name VARCHAR,
    _extras JSON, _upload_hour TIMESTAMPTZ, _source_member VARCHAR
""")
_V1_LOADS_COLUMNS = [
    ("upload_hour", "TIMESTAMPTZ PRIMARY KEY"), ("rows", "BIGINT"), ("archive_members", "INTEGER"),
    ("bytes_downloaded", "BIGINT"), ("request_window", "VARCHAR"), ("window_requests", "INTEGER"),
    ("fetch_seconds", "DOUBLE"), ("load_seconds", "DOUBLE"), ("loaded_at", "TIMESTAMPTZ"),
]


def _create_or_adopt_v1(con: duckdb.DuckDBPyConnection) -> None:
    """Create the first release's tables, or take over the ones it left, checking their columns.

    Checking inside the transaction means a file whose tables were edited by hand is refused
    before anything (not even the version table) is written to it.
    """
    con.execute("CREATE SCHEMA IF NOT EXISTS amplitude")
    con.execute(for_backend(con, "CREATE TABLE IF NOT EXISTS amplitude.events (" + ", ".join(
        f'"{name}" {ddl}' for name, ddl in _V1_EVENT_COLUMNS) + ")"))
    con.execute(for_backend(con, "CREATE TABLE IF NOT EXISTS amplitude._loads (" + ", ".join(
        f'"{name}" {ddl}' for name, ddl in _V1_LOADS_COLUMNS) + ")"))
    check_columns(con, "events", [name for name, _ in _V1_EVENT_COLUMNS], "schema version 1")
    check_columns(con, "_loads", [name for name, _ in _V1_LOADS_COLUMNS], "schema version 1")


# The snapshot tables (pipeline/amplitude/{cohorts,taxonomy,dashboard}.py name their fields), each
# with a view of its newest snapshot, and the ledgers of snapshot loads and cohort downloads.
SNAPSHOT_TABLES = ("cohorts", "cohort_members", "taxonomy_event_types",
                   "taxonomy_event_properties", "taxonomy_user_properties", "events_list",
                   "daily_counts")
_V4_SNAPSHOTS = (
    'CREATE TABLE amplitude.cohorts (snapshot_date DATE NOT NULL, "id" VARCHAR, "app_id" BIGINT, '
    '"name" VARCHAR, "description" VARCHAR, "archived" BOOLEAN, "finished" BOOLEAN, '
    '"published" BOOLEAN, "hidden" BOOLEAN, "is_predictive" BOOLEAN, '
    '"is_official_content" BOOLEAN, "size" BIGINT, "type" VARCHAR, "owners" VARCHAR[], '
    '"viewers" VARCHAR[], "last_mod" TIMESTAMPTZ, "created_at" TIMESTAMPTZ, '
    '"last_computed" TIMESTAMPTZ, "definition" JSON, "metadata" VARCHAR[], "view_count" BIGINT, '
    '"popularity" BIGINT, "last_viewed" JSON, "chart_id" VARCHAR, "edit_id" VARCHAR, '
    '"location_id" VARCHAR, "shortcut_ids" VARCHAR[], "sync_metadata" JSON, _extras JSON)',
    "CREATE TABLE amplitude.cohort_members (snapshot_date DATE NOT NULL, cohort_id VARCHAR, "
    "amplitude_id BIGINT, user_id VARCHAR, properties JSON, downloaded_on DATE)",
    'CREATE TABLE amplitude.taxonomy_event_types (snapshot_date DATE NOT NULL, '
    '"event_type" VARCHAR, "category" JSON, "description" VARCHAR, "display_name" VARCHAR, '
    '"is_active" BOOLEAN, "is_hidden_from_dropdowns" BOOLEAN, '
    '"is_hidden_from_persona_results" BOOLEAN, "is_hidden_from_pathfinder" BOOLEAN, '
    '"is_hidden_from_timeline" BOOLEAN, "tags" VARCHAR[], "owner" VARCHAR, "deleted" BOOLEAN, '
    '_extras JSON)',
    'CREATE TABLE amplitude.taxonomy_event_properties (snapshot_date DATE NOT NULL, '
    '"event_type" VARCHAR, "event_property" VARCHAR, "description" VARCHAR, "type" VARCHAR, '
    '"regex" VARCHAR, "enum_values" JSON, "is_array_type" BOOLEAN, "is_required" BOOLEAN, '
    '"is_hidden" BOOLEAN, "classifications" VARCHAR[], "deleted" BOOLEAN, _extras JSON)',
    'CREATE TABLE amplitude.taxonomy_user_properties (snapshot_date DATE NOT NULL, '
    '"user_property" VARCHAR, "description" VARCHAR, "type" VARCHAR, "enum_values" JSON, '
    '"regex" VARCHAR, "is_array_type" BOOLEAN, "is_hidden" BOOLEAN, '
    '"classifications" VARCHAR[], "deleted" BOOLEAN, _extras JSON)',
    'CREATE TABLE amplitude.events_list (snapshot_date DATE NOT NULL, "event_type" VARCHAR, '
    '"display" VARCHAR, "name" VARCHAR, "id" BIGINT, "totals" BIGINT, "totals_delta" BIGINT, '
    '"non_active" BOOLEAN, "hidden" BOOLEAN, "deleted" BOOLEAN, "flow_hidden" BOOLEAN, '
    '"autohidden" BOOLEAN, "clusters_hidden" BOOLEAN, "in_waitroom" BOOLEAN, '
    '"timeline_hidden" BOOLEAN, _extras JSON)',
    "CREATE TABLE amplitude.daily_counts (snapshot_date DATE NOT NULL, event_date DATE, "
    "active_users BIGINT, new_users BIGINT, events BIGINT, timezone VARCHAR)",
    "CREATE TABLE amplitude._snapshot_loads (table_name VARCHAR, snapshot_date DATE, rows BIGINT, "
    "requests INTEGER, landing_version VARCHAR, fetched_at TIMESTAMPTZ, loaded_at TIMESTAMPTZ, "
    "PRIMARY KEY (table_name, snapshot_date))",
    "CREATE TABLE amplitude._cohort_downloads (cohort_id VARCHAR, request_id VARCHAR, "
    "snapshot_date DATE, requested_at TIMESTAMPTZ, completed_at TIMESTAMPTZ, "
    "last_computed TIMESTAMPTZ, members BIGINT, bytes BIGINT)",
    *(f"CREATE VIEW amplitude.{table}_current AS SELECT * FROM amplitude.{table} "
      f"WHERE snapshot_date = (SELECT max(snapshot_date) FROM amplitude.{table})"
      for table in SNAPSHOT_TABLES),
)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "amplitude.events and its ledger amplitude._loads", _create_or_adopt_v1),
    # Issue 10 item 8: the ledger names the fetch (landing version) the loaded rows came from.
    Migration(2, "amplitude._loads records the landing version and fetch time", _run(
        "ALTER TABLE amplitude._loads ADD COLUMN landing_version VARCHAR",
        "ALTER TABLE amplitude._loads ADD COLUMN fetched_at TIMESTAMPTZ",
    )),
    # Issue 10 item 1: malformed lines quarantined (AMPLITUDE_REJECTS=quarantine) land here.
    Migration(3, "amplitude._rejects holds quarantined malformed lines", _run(
        "CREATE TABLE amplitude._rejects (upload_hour TIMESTAMPTZ, member VARCHAR, "
        "line_number BIGINT, line VARCHAR, rejected_at TIMESTAMPTZ)",
    )),
    Migration(4, "daily snapshots: cohorts and members, taxonomy, events list, daily counts",
              _run(*_V4_SNAPSHOTS)),
    # Issue 10 item 10: what each forget request removed (python -m pipeline.forget), counts
    # only: never an id, nor a hash of one.
    Migration(5, "amplitude._forget_requests audits forgotten users without their ids", _run(
        "CREATE TABLE amplitude._forget_requests (request_id VARCHAR PRIMARY KEY, "
        "requested_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, status VARCHAR NOT NULL, "
        "amplitude_id_count INTEGER, user_id_count INTEGER, scan VARCHAR, "
        "hours_rewritten INTEGER, landing_versions_written INTEGER, "
        "landing_versions_removed INTEGER, landing_lines_removed BIGINT, "
        "parquet_files_rewritten INTEGER, parquet_rows_removed BIGINT, "
        "event_rows_removed BIGINT, cohort_days_rewritten INTEGER, "
        "cohort_landing_rows_removed BIGINT, cohort_parquet_rows_removed BIGINT, "
        "cohort_member_rows_removed BIGINT, reject_rows_removed BIGINT)",
    )),
    Migration(6, "amplitude._loads counts what a re-load added, removed and changed", _run(
        "ALTER TABLE amplitude._loads ADD COLUMN rows_added BIGINT",
        "ALTER TABLE amplitude._loads ADD COLUMN rows_removed BIGINT",
        "ALTER TABLE amplitude._loads ADD COLUMN rows_changed BIGINT",
    )),
    # Issue 13: the Mixpanel source (pipeline/mixpanel/migration.py).
    Migration(7, MIXPANEL_MIGRATION_DESCRIPTION, _run(*MIXPANEL_MIGRATION)),
)
LATEST_VERSION = MIGRATIONS[-1].version


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    row = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = "
                      "current_database() AND schema_name = ? AND table_name = ?",
                      [schema, table]).fetchone()
    return row is not None and row[0] > 0


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The file's schema version: 0 for a fresh file or one the first release wrote."""
    if not _table_exists(con, "amplitude", "_schema_versions"):
        return 0
    row = con.execute(f"SELECT coalesce(max(version), 0) FROM {VERSIONS_TABLE}").fetchone()
    return int(row[0]) if row is not None else 0


def check_columns(con: duckdb.DuckDBPyConnection, table: str, expected: Sequence[str],
                  expected_by: str) -> None:
    """Refuse a table of ``amplitude`` whose columns differ from ``expected``, naming the gaps."""
    found = [row[0] for row in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'amplitude' AND table_name = ? ORDER BY column_index", [table]
    ).fetchall()]
    if found != list(expected):
        missing = sorted(set(expected) - set(found))
        unknown = sorted(set(found) - set(expected))
        raise MigrationError(
            f"amplitude.{table} has a different layout than {expected_by} writes (missing "
            f"{missing}, unexpected {unknown}); rebuild it from the lake "
            "(python -m pipeline.rebuild)"
        )


def upgrade(con: duckdb.DuckDBPyConnection,
            migrations: Sequence[Migration] | None = None) -> list[int]:
    """Apply every migration newer than the file's version, oldest first; return those applied.

    ``con`` must not be inside a transaction. ``migrations`` defaults to :data:`MIGRATIONS`
    (read at call time, so tests can substitute the list).
    """
    steps = MIGRATIONS if migrations is None else tuple(migrations)
    if [m.version for m in steps] != list(range(1, len(steps) + 1)):
        raise MigrationError(f"migrations must be numbered 1..{len(steps)} in order")
    known = steps[-1].version if steps else 0
    found = current_version(con)
    if found > known:
        raise MigrationError(
            f"the warehouse is at schema version {found}, newer than version {known}, the newest "
            f"this code knows: it was written by a newer release of this project. Upgrade the "
            "code to that release (or newer); do not open it with this one"
        )
    applied = []
    for migration in steps[found:]:
        if _apply(con, migration):
            applied.append(migration.version)
    return applied


def _apply(con: duckdb.DuckDBPyConnection, migration: Migration) -> bool:
    con.execute("BEGIN TRANSACTION")
    try:
        before = current_version(con)
        if before >= migration.version:  # another connection of this process got there first
            con.execute("ROLLBACK")
            return False
        con.execute("CREATE SCHEMA IF NOT EXISTS amplitude")
        con.execute(for_backend(con, f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (version "
                                     "INTEGER PRIMARY KEY, description VARCHAR, applied_at "
                                     "TIMESTAMPTZ)"))
        migration.apply(con)
        con.execute(f"INSERT INTO {VERSIONS_TABLE} VALUES (?, ?, ?)",
                    [migration.version, migration.description, datetime.now(UTC)])
        con.execute("COMMIT")
        return True
    except BaseException as error:
        with contextlib.suppress(duckdb.Error):  # keep the original error, not the rollback's
            con.execute("ROLLBACK")
        if isinstance(error, MigrationError) or not isinstance(error, Exception):
            raise
        raise MigrationError(
            f"migration to schema version {migration.version} ({migration.description}) failed "
            f"and was rolled back, the warehouse is still at version {migration.version - 1}: "
            f"{error}"
        ) from error
