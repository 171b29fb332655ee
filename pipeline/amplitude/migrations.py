"""The Amplitude source's schema, as released, version by version (run by ``pipeline.migrations``).

Every statement names the project's schema as ``{schema}`` (``amplitude`` for the project set up
from the environment), so one list serves every Amplitude project. Frozen: a changed column goes
into a new migration, never into these statements. Version 1 is the layout the first release
wrote without a version table; it creates that layout where it is missing and adopts it where it
is found, which is why it spells its columns out instead of reading ``schema.py``.
"""

from __future__ import annotations

import duckdb

from pipeline.amplitude.schema import EVENT_COLUMNS
from pipeline.migrations import (
    Migration,
    ProjectSchema,
    check_columns,
    for_backend,
    nothing,
    statements,
)


# events as the first release created it (pipeline/amplitude/schema.py at that release).
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


def _create_or_adopt_v1(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    """Create the first release's tables, or take over the ones it left, checking their columns.

    Checking inside the transaction means a file whose tables were edited by hand is refused
    before anything (not even the version table) is written to it.
    """
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute(for_backend(con, f"CREATE TABLE IF NOT EXISTS {schema}.events (" + ", ".join(
        f'"{name}" {ddl}' for name, ddl in _V1_EVENT_COLUMNS) + ")"))
    con.execute(for_backend(con, f"CREATE TABLE IF NOT EXISTS {schema}._loads (" + ", ".join(
        f'"{name}" {ddl}' for name, ddl in _V1_LOADS_COLUMNS) + ")"))
    check_columns(con, schema, "events", [name for name, _ in _V1_EVENT_COLUMNS],
                  "schema version 1")
    check_columns(con, schema, "_loads", [name for name, _ in _V1_LOADS_COLUMNS],
                  "schema version 1")


# The snapshot tables (pipeline/amplitude/{cohorts,taxonomy,dashboard}.py name their fields), each
# with a view of its newest snapshot, and the ledgers of snapshot loads and cohort downloads.
SNAPSHOT_TABLES = ("cohorts", "cohort_members", "taxonomy_event_types",
                   "taxonomy_event_properties", "taxonomy_user_properties", "events_list",
                   "daily_counts")
_V4_SNAPSHOTS = (
    'CREATE TABLE {schema}.cohorts (snapshot_date DATE NOT NULL, "id" VARCHAR, "app_id" BIGINT, '
    '"name" VARCHAR, "description" VARCHAR, "archived" BOOLEAN, "finished" BOOLEAN, '
    '"published" BOOLEAN, "hidden" BOOLEAN, "is_predictive" BOOLEAN, '
    '"is_official_content" BOOLEAN, "size" BIGINT, "type" VARCHAR, "owners" VARCHAR[], '
    '"viewers" VARCHAR[], "last_mod" TIMESTAMPTZ, "created_at" TIMESTAMPTZ, '
    '"last_computed" TIMESTAMPTZ, "definition" JSON, "metadata" VARCHAR[], "view_count" BIGINT, '
    '"popularity" BIGINT, "last_viewed" JSON, "chart_id" VARCHAR, "edit_id" VARCHAR, '
    '"location_id" VARCHAR, "shortcut_ids" VARCHAR[], "sync_metadata" JSON, _extras JSON)',
    "CREATE TABLE {schema}.cohort_members (snapshot_date DATE NOT NULL, cohort_id VARCHAR, "
    "amplitude_id BIGINT, user_id VARCHAR, properties JSON, downloaded_on DATE)",
    'CREATE TABLE {schema}.taxonomy_event_types (snapshot_date DATE NOT NULL, '
    '"event_type" VARCHAR, "category" JSON, "description" VARCHAR, "display_name" VARCHAR, '
    '"is_active" BOOLEAN, "is_hidden_from_dropdowns" BOOLEAN, '
    '"is_hidden_from_persona_results" BOOLEAN, "is_hidden_from_pathfinder" BOOLEAN, '
    '"is_hidden_from_timeline" BOOLEAN, "tags" VARCHAR[], "owner" VARCHAR, "deleted" BOOLEAN, '
    '_extras JSON)',
    'CREATE TABLE {schema}.taxonomy_event_properties (snapshot_date DATE NOT NULL, '
    '"event_type" VARCHAR, "event_property" VARCHAR, "description" VARCHAR, "type" VARCHAR, '
    '"regex" VARCHAR, "enum_values" JSON, "is_array_type" BOOLEAN, "is_required" BOOLEAN, '
    '"is_hidden" BOOLEAN, "classifications" VARCHAR[], "deleted" BOOLEAN, _extras JSON)',
    'CREATE TABLE {schema}.taxonomy_user_properties (snapshot_date DATE NOT NULL, '
    '"user_property" VARCHAR, "description" VARCHAR, "type" VARCHAR, "enum_values" JSON, '
    '"regex" VARCHAR, "is_array_type" BOOLEAN, "is_hidden" BOOLEAN, '
    '"classifications" VARCHAR[], "deleted" BOOLEAN, _extras JSON)',
    'CREATE TABLE {schema}.events_list (snapshot_date DATE NOT NULL, "event_type" VARCHAR, '
    '"display" VARCHAR, "name" VARCHAR, "id" BIGINT, "totals" BIGINT, "totals_delta" BIGINT, '
    '"non_active" BOOLEAN, "hidden" BOOLEAN, "deleted" BOOLEAN, "flow_hidden" BOOLEAN, '
    '"autohidden" BOOLEAN, "clusters_hidden" BOOLEAN, "in_waitroom" BOOLEAN, '
    '"timeline_hidden" BOOLEAN, _extras JSON)',
    "CREATE TABLE {schema}.daily_counts (snapshot_date DATE NOT NULL, event_date DATE, "
    "active_users BIGINT, new_users BIGINT, events BIGINT, timezone VARCHAR)",
    "CREATE TABLE {schema}._snapshot_loads (table_name VARCHAR, snapshot_date DATE, rows BIGINT, "
    "requests INTEGER, landing_version VARCHAR, fetched_at TIMESTAMPTZ, loaded_at TIMESTAMPTZ, "
    "PRIMARY KEY (table_name, snapshot_date))",
    "CREATE TABLE {schema}._cohort_downloads (cohort_id VARCHAR, request_id VARCHAR, "
    "snapshot_date DATE, requested_at TIMESTAMPTZ, completed_at TIMESTAMPTZ, "
    "last_computed TIMESTAMPTZ, members BIGINT, bytes BIGINT)",
    *(f"CREATE VIEW {{schema}}.{table}_current AS SELECT * FROM {{schema}}.{table} "
      f"WHERE snapshot_date = (SELECT max(snapshot_date) FROM {{schema}}.{table})"
      for table in SNAPSHOT_TABLES),
)


# Where the rows came from (the Export API or Amplitude's storage export), and each object read:
# its key (an archive member's name, or the bucket's key) and ETag (storage only).
_OBJECTS = "STRUCT(\"key\" VARCHAR, etag VARCHAR, bytes BIGINT)[]"
# Merged users: the organization's merged-ID files, and the one definition of a canonical id.
# An id merged twice counts its first merge; a chain is followed to its end; a chain that runs
# into a cycle (which Amplitude should never write) ends at the cycle's least id, so every id on
# it gets the same answer and the walk stops.
_V8_IDENTITY = (
    "CREATE TABLE {schema}.merge_ids (scope BIGINT, merge_time TIMESTAMPTZ, "
    "merge_server_time TIMESTAMPTZ, amplitude_id BIGINT, merged_amplitude_id BIGINT, "
    "_upload_hour TIMESTAMPTZ, _source_key VARCHAR)",
    f"CREATE TABLE {{schema}}._merge_loads (upload_hour TIMESTAMPTZ PRIMARY KEY, rows BIGINT, "
    f"objects {_OBJECTS}, landing_version VARCHAR, fetched_at TIMESTAMPTZ, "
    "load_seconds DOUBLE, loaded_at TIMESTAMPTZ, rows_added BIGINT, rows_removed BIGINT, "
    "rows_changed BIGINT)",
    """CREATE VIEW {schema}.identity_merges AS
WITH RECURSIVE edge AS (
    SELECT amplitude_id,
           arg_min(merged_amplitude_id, (merge_server_time, merged_amplitude_id)) AS merged_into
    FROM {schema}.merge_ids
    WHERE amplitude_id IS NOT NULL AND merged_amplitude_id IS NOT NULL
      AND amplitude_id <> merged_amplitude_id
    GROUP BY amplitude_id
), walk AS (
    SELECT amplitude_id, merged_into AS reached, [amplitude_id, merged_into] AS path FROM edge
    UNION ALL
    SELECT walk.amplitude_id, edge.merged_into, list_append(walk.path, edge.merged_into)
    FROM walk JOIN edge ON edge.amplitude_id = walk.reached
    WHERE NOT list_contains(walk.path, edge.merged_into)
), ends AS (
    SELECT amplitude_id, arg_max(reached, len(path)) AS reached, arg_max(path, len(path)) AS path
    FROM walk GROUP BY amplitude_id
)
SELECT ends.amplitude_id,
       CASE WHEN edge.merged_into IS NULL THEN ends.reached
            ELSE list_min(ends.path[list_position(ends.path, edge.merged_into):]) END
           AS canonical_amplitude_id
FROM ends LEFT JOIN edge ON edge.amplitude_id = ends.reached""",
    """CREATE VIEW {schema}.user_identity AS
SELECT ids.amplitude_id, coalesce(m.canonical_amplitude_id, ids.amplitude_id)
           AS canonical_amplitude_id, m.canonical_amplitude_id IS NOT NULL AS merged
FROM (SELECT amplitude_id FROM {schema}.events WHERE amplitude_id IS NOT NULL
      UNION SELECT amplitude_id FROM {schema}.merge_ids WHERE amplitude_id IS NOT NULL
      UNION SELECT merged_amplitude_id FROM {schema}.merge_ids
      WHERE merged_amplitude_id IS NOT NULL) AS ids
LEFT JOIN {schema}.identity_merges AS m USING (amplitude_id)""",
)


# Chart annotations with their categories, and the tracking plan's event categories
# (pipeline/amplitude/annotations.py names their fields), each with a view of its newest snapshot.
ANNOTATION_TABLES = ("annotations", "annotation_categories", "taxonomy_categories")
_V9_ANNOTATIONS = (
    'CREATE TABLE {schema}.annotations (snapshot_date DATE NOT NULL, "id" BIGINT, '
    '"start" TIMESTAMPTZ, "end" TIMESTAMPTZ, "label" VARCHAR, "details" VARCHAR, '
    '"chart_id" VARCHAR, "category_id" BIGINT, "category_name" VARCHAR, _extras JSON)',
    'CREATE TABLE {schema}.annotation_categories (snapshot_date DATE NOT NULL, "id" BIGINT, '
    '"name" VARCHAR, _extras JSON)',
    'CREATE TABLE {schema}.taxonomy_categories (snapshot_date DATE NOT NULL, "id" BIGINT, '
    '"name" VARCHAR, _extras JSON)',
    *(f"CREATE VIEW {{schema}}.{table}_current AS SELECT * FROM {{schema}}.{table} "
      f"WHERE snapshot_date = (SELECT max(snapshot_date) FROM {{schema}}.{table})"
      for table in ANNOTATION_TABLES),
)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "{schema}.events and its ledger {schema}._loads", _create_or_adopt_v1),
    # The ledger names the fetch (landing version) the loaded rows came from.
    Migration(2, "{schema}._loads records the landing version and fetch time", statements(
        "ALTER TABLE {schema}._loads ADD COLUMN landing_version VARCHAR",
        "ALTER TABLE {schema}._loads ADD COLUMN fetched_at TIMESTAMPTZ",
    )),
    # Malformed lines quarantined (AMPLITUDE_REJECTS=quarantine) land here.
    Migration(3, "{schema}._rejects holds quarantined malformed lines", statements(
        "CREATE TABLE {schema}._rejects (upload_hour TIMESTAMPTZ, member VARCHAR, "
        "line_number BIGINT, line VARCHAR, rejected_at TIMESTAMPTZ)",
    )),
    Migration(4, "daily snapshots: cohorts and members, taxonomy, events list, daily counts",
              statements(*_V4_SNAPSHOTS)),
    # What each forget request removed (python -m pipeline.forget), counts only: never an id,
    # nor a hash of one.
    Migration(5, "{schema}._forget_requests audits forgotten users without their ids",
              statements(
        "CREATE TABLE {schema}._forget_requests (request_id VARCHAR PRIMARY KEY, "
        "requested_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, status VARCHAR NOT NULL, "
        "amplitude_id_count INTEGER, user_id_count INTEGER, scan VARCHAR, "
        "hours_rewritten INTEGER, landing_versions_written INTEGER, "
        "landing_versions_removed INTEGER, landing_lines_removed BIGINT, "
        "parquet_files_rewritten INTEGER, parquet_rows_removed BIGINT, "
        "event_rows_removed BIGINT, cohort_days_rewritten INTEGER, "
        "cohort_landing_rows_removed BIGINT, cohort_parquet_rows_removed BIGINT, "
        "cohort_member_rows_removed BIGINT, reject_rows_removed BIGINT)",
              )),
    Migration(6, "{schema}._loads counts what a re-load added, removed and changed", statements(
        "ALTER TABLE {schema}._loads ADD COLUMN rows_added BIGINT",
        "ALTER TABLE {schema}._loads ADD COLUMN rows_removed BIGINT",
        "ALTER TABLE {schema}._loads ADD COLUMN rows_changed BIGINT",
    )),
    # Version 7 once created Mixpanel's tables here; they are the Mixpanel source's own now
    # (pipeline/mixpanel/migrations.py adopts them), and the number stays taken.
    Migration(7, "Mixpanel's tables belong to the Mixpanel source's own schema versions",
              nothing),
    Migration(8, "the ledger records each load's source and objects; merged users and "
              "canonical ids", statements(
        # every load so far came from the API (an UPDATE cannot follow an ALTER in one
        # transaction in DuckDB, a default can)
        "ALTER TABLE {schema}._loads ADD COLUMN source VARCHAR DEFAULT 'api'",
        f"ALTER TABLE {{schema}}._loads ADD COLUMN objects {_OBJECTS}",
        *_V8_IDENTITY,
    )),
    Migration(9, "daily snapshots of chart annotations, their categories and the tracking "
              "plan's event categories", statements(*_V9_ANNOTATIONS)),
)
LATEST_VERSION = MIGRATIONS[-1].version


def project_schema(schema: str) -> ProjectSchema:
    """An Amplitude project's schema, with the columns its events table must have."""
    return ProjectSchema(schema, MIGRATIONS, {"events": [c.name for c in EVENT_COLUMNS]})
