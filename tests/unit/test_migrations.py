"""Schema versions: a warehouse the previous release wrote is upgraded in place, one transaction
per migration, and a warehouse newer than the code is refused."""

from datetime import UTC, datetime

import duckdb
import pytest

from pipeline.amplitude import migrations
from pipeline.amplitude.landing import LandedHour, LandedMember
from pipeline.amplitude.load import LoadRecord, load_hour
from pipeline.amplitude.migrations import LATEST_VERSION
from pipeline.amplitude.schema import EVENT_COLUMNS
from pipeline.migrations import Migration, upgrade
from pipeline.warehouse import WarehouseError
from tests.conftest import amplitude_warehouse
from tests.unit.test_warehouse import H0, H1, hour_file, snapshot

# Exactly what the previous release ran on every open, without a version table (commit a0cc4a5,
# pipeline/warehouse.py _ensure_schema with pipeline/amplitude/schema.py duckdb_table_columns()).
PREVIOUS_RELEASE_DDL = [
    "CREATE SCHEMA IF NOT EXISTS amplitude",
    """CREATE TABLE IF NOT EXISTS amplitude.events (
    "insert_id" VARCHAR,
    "insert_key" VARCHAR,
    "schema" BIGINT,
    "adid" VARCHAR,
    "amplitude_attribution_ids" VARCHAR[],
    "amplitude_event_type" VARCHAR,
    "amplitude_id" BIGINT,
    "app" BIGINT,
    "city" VARCHAR,
    "client_event_time" TIMESTAMPTZ,
    "client_upload_time" TIMESTAMPTZ,
    "country" VARCHAR,
    "data" JSON,
    "data_type" VARCHAR,
    "device_brand" VARCHAR,
    "device_carrier" VARCHAR,
    "device_family" VARCHAR,
    "device_id" VARCHAR,
    "device_manufacturer" VARCHAR,
    "device_model" VARCHAR,
    "device_type" VARCHAR,
    "dma" VARCHAR,
    "event_id" BIGINT,
    "event_properties" JSON USING COMPRESSION zstd,
    "event_time" TIMESTAMPTZ,
    "event_type" VARCHAR,
    "global_user_properties" JSON,
    "group_properties" JSON,
    "groups" JSON,
    "idfa" VARCHAR,
    "ip_address" VARCHAR,
    "is_attribution_event" BOOLEAN,
    "language" VARCHAR,
    "library" VARCHAR,
    "location_lat" DOUBLE,
    "location_lng" DOUBLE,
    "os_name" VARCHAR,
    "os_version" VARCHAR,
    "partner_id" VARCHAR,
    "paying" BOOLEAN,
    "plan" JSON,
    "platform" VARCHAR,
    "processed_time" TIMESTAMPTZ,
    "region" VARCHAR,
    "sample_rate" DOUBLE,
    "server_received_time" TIMESTAMPTZ,
    "server_upload_time" TIMESTAMPTZ,
    "session_id" BIGINT,
    "source_id" VARCHAR,
    "start_version" VARCHAR,
    "user_creation_time" TIMESTAMPTZ,
    "user_id" VARCHAR,
    "user_properties" JSON USING COMPRESSION zstd,
    "uuid" VARCHAR,
    "version_name" VARCHAR,
    "_extras" JSON,
    "_upload_hour" TIMESTAMPTZ,
    "_source_member" VARCHAR
)""",
    "CREATE TABLE IF NOT EXISTS amplitude._loads (upload_hour TIMESTAMPTZ PRIMARY KEY, "
    "rows BIGINT, archive_members INTEGER, bytes_downloaded BIGINT, request_window VARCHAR, "
    "window_requests INTEGER, fetch_seconds DOUBLE, load_seconds DOUBLE, loaded_at TIMESTAMPTZ)",
]
LOADED_AT = datetime(2026, 3, 1, 10, tzinfo=UTC)
OLD_LEDGER = [(H0, 40, 1, 100, "w", 1, 0.5, 0.25, LOADED_AT),
              (H1, 25, 2, 200, "w", 1, 0.5, 0.25, LOADED_AT)]
LEDGER = ("SELECT upload_hour, rows, archive_members, bytes_downloaded, request_window, "
          "window_requests, fetch_seconds, load_seconds, loaded_at "
          "FROM amplitude._loads ORDER BY 1")


def previous_release_warehouse(tmp_path):
    """A warehouse as the previous release left it: its DDL, two hours of rows, their ledger."""
    path = tmp_path / "w.duckdb"
    files = {H0: hour_file(tmp_path, H0, 40).path, H1: hour_file(tmp_path, H1, 25).path}
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    for statement in PREVIOUS_RELEASE_DDL:
        con.execute(statement)
    for hour, parquet in files.items():
        con.execute("INSERT INTO amplitude.events BY NAME SELECT * FROM read_parquet(?, "
                    "hive_partitioning = false) WHERE _upload_hour = ?", [str(parquet), hour])
    con.executemany("INSERT INTO amplitude._loads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", OLD_LEDGER)
    before = snapshot(con)
    con.close()
    return path, before


def versions(con):
    return con.execute("SELECT version, description, applied_at FROM amplitude._schema_versions "
                       "ORDER BY 1").fetchall()


def layout(con):
    return con.execute("SELECT table_name, column_index, column_name, data_type FROM "
                       "duckdb_columns() WHERE database_name = current_database() AND "
                       "schema_name = 'amplitude' ORDER BY ALL").fetchall()


def test_a_previous_release_warehouse_is_upgraded_in_place(tmp_path):
    path, before = previous_release_warehouse(tmp_path)
    with amplitude_warehouse(path).connect() as con:
        assert snapshot(con) == before
        assert con.execute(LEDGER).fetchall() == OLD_LEDGER
        assert con.execute("SELECT landing_version, fetched_at FROM amplitude._loads"
                           ).fetchall() == [(None, None)] * 2
        # every hour the first release loaded came from the Export API; it named no objects
        assert con.execute("SELECT source, objects FROM amplitude._loads").fetchall() == [
            ("api", None)] * 2
        assert con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE "
                           "schema_name = 'amplitude' AND table_name = '_rejects' "
                           "ORDER BY column_index").fetchall() == [
            ("upload_hour", "TIMESTAMP WITH TIME ZONE"), ("member", "VARCHAR"),
            ("line_number", "BIGINT"), ("line", "VARCHAR"),
            ("rejected_at", "TIMESTAMP WITH TIME ZONE")]
        recorded = versions(con)
    assert [v for v, _, _ in recorded] == list(range(1, LATEST_VERSION + 1))
    assert all(description and applied_at for _, description, applied_at in recorded)


def test_an_upgraded_warehouse_has_the_layout_of_a_fresh_one(tmp_path):
    path, _ = previous_release_warehouse(tmp_path)
    (tmp_path / "fresh").mkdir()
    with amplitude_warehouse(path).connect() as upgraded, \
            amplitude_warehouse(tmp_path / "fresh" / "w.duckdb").connect() as fresh:
        assert layout(upgraded) == layout(fresh)
        events = [(name, kind) for table, _, name, kind in layout(fresh) if table == "events"]
    typed = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}
    assert events == [(c.name, typed.get(c.duckdb_type, c.duckdb_type)) for c in EVENT_COLUMNS]


def test_reopening_an_upgraded_warehouse_changes_nothing(tmp_path):
    path, _ = previous_release_warehouse(tmp_path)
    with amplitude_warehouse(path).connect() as con:
        first = versions(con)
    with amplitude_warehouse(path).connect() as con:
        assert versions(con) == first
        assert upgrade(con, migrations.project_schema("amplitude")) == []


def test_the_ledger_names_the_fetch_the_rows_came_from(tmp_path):
    path, _ = previous_release_warehouse(tmp_path)
    fetched = datetime(2026, 3, 1, 9, 12, tzinfo=UTC)
    landed = LandedHour(upload_hour=H0, version="v0001-abc", request_window="2026-03-01T07",
                        window_hours=1, window_requests=1, window_fetch_seconds=0.5,
                        window_member_bytes=100, members=[LandedMember("m", "m.json.gz", 100)],
                        fetched_at=fetched)
    (tmp_path / "again").mkdir()
    parquet = hour_file(tmp_path / "again", H0, 40).path
    warehouse = amplitude_warehouse(path)
    with warehouse.connect() as con:
        load_hour(con, "amplitude", parquet, LoadRecord.from_landing(landed))
        assert con.execute("SELECT upload_hour, rows, archive_members, landing_version, "
                           "fetched_at FROM amplitude._loads ORDER BY 1").fetchall() == [
            (H0, 40, 1, "v0001-abc", fetched), (H1, 25, 2, None, None)]


def failing(version, statement):
    def apply(con, schema):
        con.execute(statement)  # done, then undone by the rollback
        raise RuntimeError("disk on fire")
    return Migration(version, "a migration that fails midway", apply)


def test_a_migration_that_fails_midway_leaves_the_previous_version(tmp_path, monkeypatch):
    path, before = previous_release_warehouse(tmp_path)
    monkeypatch.setattr(migrations, "MIGRATIONS", (
        migrations.MIGRATIONS[0],
        failing(2, "ALTER TABLE amplitude._loads ADD COLUMN landing_version VARCHAR")))
    with pytest.raises(WarehouseError, match=r"version 2 .*rolled back.*still at version 1.*"
                                             r"disk on fire"), amplitude_warehouse(path).connect():
        pass
    con = duckdb.connect(str(path))
    assert [v for v, _, _ in versions(con)] == [1]  # version 1 committed on its own
    assert [c[0] for c in con.execute("DESCRIBE amplitude._loads").fetchall()][-1] == "loaded_at"
    con.close()
    monkeypatch.undo()
    with amplitude_warehouse(path).connect() as con:  # the next open, with working code, goes on
        assert [v for v, _, _ in versions(con)] == list(range(1, LATEST_VERSION + 1))
        assert snapshot(con) == before


def test_a_failing_new_migration_keeps_a_current_warehouse_usable_after_the_fix(tmp_path,
                                                                                monkeypatch):
    path = tmp_path / "w.duckdb"
    with amplitude_warehouse(path).connect():
        pass
    monkeypatch.setattr(migrations, "MIGRATIONS", (
        *migrations.MIGRATIONS,
        failing(LATEST_VERSION + 1, "CREATE TABLE amplitude.half_done (x INTEGER)")))
    with pytest.raises(WarehouseError, match=f"still at version {LATEST_VERSION}"), \
            amplitude_warehouse(path).connect():
        pass
    monkeypatch.undo()
    with amplitude_warehouse(path).connect() as con:
        assert [v for v, _, _ in versions(con)] == list(range(1, LATEST_VERSION + 1))
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE "
                           "table_name = 'half_done'").fetchone() == (0,)


def test_a_warehouse_newer_than_the_code_is_refused(tmp_path):
    path = tmp_path / "w.duckdb"
    with amplitude_warehouse(path).connect() as con:
        con.execute("INSERT INTO amplitude._schema_versions VALUES (?, 'from the future', now())",
                    [LATEST_VERSION + 1])
    newer = (rf"schema version {LATEST_VERSION + 1}, newer than version {LATEST_VERSION}"
             ".*Upgrade the code")
    with pytest.raises(WarehouseError, match=newer), amplitude_warehouse(path).connect():
        pass


def test_a_hand_edited_table_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA amplitude; CREATE TABLE amplitude.events (uuid VARCHAR)")
    con.close()
    with pytest.raises(WarehouseError, match=r"different layout.*missing \['_extras'"), \
            amplitude_warehouse(path).connect():
        pass
    con = duckdb.connect(str(path))
    assert con.execute("SELECT table_name FROM duckdb_tables()").fetchall() == [("events",)]
    con.close()


def test_the_forget_audit_table_has_a_column_for_each_figure_a_request_reports(tmp_path):
    from pipeline.forget.audit import ForgetReport, project_report
    from pipeline.lake import Lake
    from pipeline.source import registered
    from tests.conftest import AMPLITUDE

    path, _ = previous_release_warehouse(tmp_path)
    with amplitude_warehouse(path).connect() as con:  # version 5 reaches an upgraded file too
        columns = [row[0] for row in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'amplitude' AND "
            "table_name = '_forget_requests' ORDER BY column_index").fetchall()]
        assert con.execute("SELECT count(*) FROM amplitude._forget_requests").fetchone() == (0,)
    families = registered()["amplitude"].user_data(Lake(tmp_path / "lake"), AMPLITUDE)
    report = ForgetReport("r", datetime.now(UTC), "warehouse",
                          [project_report(AMPLITUDE, families, {})])
    assert sorted(columns) == sorted(report.row(report.projects[0]))
