"""The warehouse on DuckLake (WAREHOUSE_CATALOG): a .ducklake file, a SQLite and a PostgreSQL
catalog, real Parquet files from normalize, registered in place and swapped per hour."""

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipeline import ducklake, migrations
from pipeline.amplitude.load import LoadRecord, load_hour
from pipeline.amplitude.migrations import LATEST_VERSION, project_schema
from pipeline.amplitude.normalize import normalize_hour
from pipeline.lake import Lake as LakeRoot
from pipeline.partition_swap import replace_partition
from pipeline.snapshots import SnapshotLanding, Snapshots
from pipeline.warehouse import Warehouse, WarehouseError, WarehouseLocked
from simulator import hour_lines
from tests.conftest import amplitude_warehouse, write_member

H0 = datetime(2026, 3, 1, 7, tzinfo=UTC)
H1 = H0 + timedelta(hours=1)


def record(hour):
    return LoadRecord(upload_hour=hour, archive_members=1, bytes_downloaded=100,
                      request_window="w", window_requests=1, fetch_seconds=0.5)


class Lake:
    """Hour files as the versioned lake names them: a new name for every version."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made = 0

    def hour(self, hour, lines) -> Path:
        self.made += 1
        member = write_member(self.root / "in" / f"{self.made}.json.gz", lines)
        folder = self.root / "amplitude" / "events" / f"upload_date={hour:%Y-%m-%d}" / \
            f"upload_hour={hour:%H}"
        return normalize_hour([member], hour, folder / f"events-v{self.made}.parquet").path


def lines(hour, count):
    return [json.loads(b) for b in hour_lines(636686, hour, count)]


@pytest.fixture(params=["ducklake-file", "sqlite"])
def catalog(request, tmp_path) -> str:
    return (str(tmp_path / "meta.ducklake") if request.param == "ducklake-file"
            else f"sqlite:{tmp_path / 'catalog.sqlite'}")


@pytest.fixture
def lake(tmp_path) -> Lake:
    (tmp_path / "in").mkdir()
    return Lake(tmp_path)


def make(tmp_path, catalog, **kwargs) -> Warehouse:
    return amplitude_warehouse(tmp_path / "w.duckdb", catalog=catalog,
                     data_path=str(tmp_path / "ducklake"), **kwargs)


def hours(con):
    return con.execute("SELECT _upload_hour, count(*), min(uuid), max(uuid) FROM amplitude.events "
                       "GROUP BY ALL ORDER BY 1").fetchall()


def registered(con):
    return sorted(Path(row[0]).name for row in con.execute(
        "SELECT data_file FROM ducklake_list_files('warehouse', 'events', schema => 'amplitude')"
    ).fetchall())


def columns(con):
    return con.execute("SELECT schema_name, table_name, column_name, data_type FROM "
                       "duckdb_columns() WHERE database_name = current_database() "
                       "ORDER BY schema_name, table_name, column_index").fetchall()


def test_a_fresh_catalog_gets_the_files_tables_and_columns(tmp_path, catalog):
    with make(tmp_path, catalog).connect() as con:
        assert ducklake.is_ducklake(con)
        assert migrations.current_version(con, "amplitude") == LATEST_VERSION
        on_ducklake = columns(con)
    with amplitude_warehouse(tmp_path / "file.duckdb").connect() as con:
        assert not ducklake.is_ducklake(con)
        assert columns(con) == on_ducklake
    with make(tmp_path, catalog).connect() as con:  # a second open has nothing to do
        assert migrations.upgrade(con, project_schema("amplitude")) == []
        # the all-projects views are there too, with the project's name in front
        assert con.execute("SELECT project, count(*) FROM amplitude_all.events GROUP BY ALL"
                           ).fetchall() == []


def test_an_hour_is_registered_in_place_and_a_rerun_leaves_the_same_rows(tmp_path, catalog, lake):
    warehouse = make(tmp_path, catalog)
    a, b = lake.hour(H0, lines(H0, 40)), lake.hour(H1, lines(H1, 25))
    with warehouse.connect() as con:
        first = load_hour(con, "amplitude", a, record(H0))
        load_hour(con, "amplitude", b, record(H1))
        before = hours(con)
        assert [r[1] for r in before] == [40, 25]
        assert (first.rows, first.rows_added, first.rows_removed, first.rows_changed) == \
            (40, 40, 0, 0)
        again = load_hour(con, "amplitude", a, record(H0))
        assert hours(con) == before
        assert (again.rows, again.rows_added, again.rows_removed, again.rows_changed) == \
            (40, 0, 0, 0)
        assert con.execute(
            "SELECT upload_hour, rows, archive_members, request_window, rows_added, "
            "load_seconds > 0, loaded_at IS NOT NULL FROM amplitude._loads ORDER BY 1"
        ).fetchall() == [(H0, 40, 1, "w", 0, True, True), (H1, 25, 1, "w", 25, True, True)]
        assert registered(con) == [a.name, b.name]
        # the lake's files are read where they are: nothing of theirs is written to DATA_PATH
        copies = [p for p in (tmp_path / "ducklake").rglob("*.parquet")]
        assert copies == []
        types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE "
                                 "table_name = 'events'").fetchall())
        assert "upload_hour" not in types and "upload_date" not in types  # hive folders
        assert con.execute("SELECT count(*) FROM amplitude.events WHERE "
                           "event_properties->>'$' IS NULL").fetchone() == (0,)


def test_a_new_version_replaces_the_rows_and_the_old_one_stays_readable(tmp_path, catalog,
                                                                        lake):
    served = lines(H0, 30)
    revised = [dict(line) for line in served[3:25]] + lines(H0, 40)[30:35]  # 8 gone, 5 late
    revised[0]["event_type"] = "renamed by Amplitude"  # and 2 rows changed
    revised[1]["event_properties"] = {"plan": "changed"}
    first, second = lake.hour(H0, served), lake.hour(H0, revised)
    warehouse = make(tmp_path, catalog)
    with warehouse.connect() as con:
        load_hour(con, "amplitude", first, record(H0))
        version = ducklake.current_snapshot(con)
        old = con.execute("SELECT uuid, event_type FROM amplitude.events ORDER BY uuid").fetchall()
        late = load_hour(con, "amplitude", second, record(H0))
        assert (late.rows, late.rows_added, late.rows_removed, late.rows_changed) == (27, 5, 8, 2)
        assert con.execute("SELECT count(*) FROM amplitude.events").fetchone() == (27,)
        assert registered(con) == [second.name]
        assert con.execute(f"SELECT uuid, event_type FROM amplitude.events AT (VERSION => "
                           f"{version}) ORDER BY uuid").fetchall() == old
        # dropping the whole file from the snapshot wrote no delete file
        assert list((tmp_path / "ducklake").rglob("*.parquet")) == []
    assert first.exists() and second.exists()


def test_expiring_snapshots_deletes_only_superseded_files(tmp_path, catalog, lake):
    """DuckLake owns what it registered: expiring the snapshots that superseded a file deletes
    it, so a re-run must not register the current file a second time (its first registration
    would then be deleted under it), and an older version cannot come back under its name."""
    first, second = lake.hour(H0, lines(H0, 40)), lake.hour(H0, lines(H0, 30))
    warehouse = make(tmp_path, catalog)
    with warehouse.connect() as con:
        load_hour(con, "amplitude", first, record(H0))
        load_hour(con, "amplitude", second, record(H0))
        load_hour(con, "amplitude", second, record(H0))  # a re-run with the same file
        with pytest.raises(WarehouseError, match=r"registered in amplitude.events before.*new "
                                                 r"name"):
            load_hour(con, "amplitude", first, record(H0))
        con.execute("CALL ducklake_expire_snapshots('warehouse', older_than => now())")
        con.execute("CALL ducklake_cleanup_old_files('warehouse', cleanup_all => true)")
        assert not first.exists() and second.exists()
        assert con.execute("SELECT count(DISTINCT uuid) FROM amplitude.events").fetchone() == \
            (30,)


def test_a_failed_swap_keeps_the_rows_and_the_file_registered(tmp_path, catalog, lake):
    warehouse = make(tmp_path, catalog)
    good = lake.hour(H0, lines(H0, 40))
    with warehouse.connect() as con:
        load_hour(con, "amplitude", good, record(H0))
        before, version = hours(con), ducklake.current_snapshot(con)

        def ledger_fails(rows):
            raise RuntimeError("disk on fire")

        newer = lake.hour(H0, lines(H0, 35))
        with pytest.raises(RuntimeError, match="disk on fire"):
            replace_partition(con, "amplitude.events", "_upload_hour", H0, newer,
                              what="upload hour", record=ledger_fails)
        assert hours(con) == before and registered(con) == [good.name]
        wrong_hour = lake.hour(H1, lines(H1, 12))
        with pytest.raises(WarehouseError, match=r"upload hour 2026-03-01T07.*12 rows, only 0"):
            load_hour(con, "amplitude", wrong_hour, record(H0))
        assert hours(con) == before and registered(con) == [good.name]
        assert ducklake.current_snapshot(con) == version
        assert con.execute("SELECT rows FROM amplitude._loads").fetchall() == [(40,)]


def test_the_row_drop_guard_holds_on_ducklake(tmp_path, catalog, lake):
    from pipeline.partition_swap import RowDropRefused

    warehouse = make(tmp_path, catalog)
    with warehouse.connect() as con:
        load_hour(con, "amplitude", lake.hour(H0, lines(H0, 40)), record(H0))
        with pytest.raises(RowDropRefused):
            load_hour(con, "amplitude", lake.hour(H0, lines(H0, 10)), record(H0),
                      max_drop_share=0.1)
        assert con.execute("SELECT count(*) FROM amplitude.events").fetchone() == (40,)


def test_an_empty_hour_registers_nothing(tmp_path, catalog, lake):
    warehouse = make(tmp_path, catalog)
    with warehouse.connect() as con:
        load_hour(con, "amplitude", lake.hour(H0, lines(H0, 40)), record(H0))
        empty = load_hour(con, "amplitude", lake.hour(H0, []), record(H0))
        assert (empty.rows, empty.rows_removed) == (0, 40)
        assert registered(con) == []
        assert con.execute("SELECT rows FROM amplitude._loads").fetchall() == [(0,)]


def test_a_snapshot_day_is_copied_since_its_file_name_is_reused(tmp_path, catalog):
    warehouse = make(tmp_path, catalog)
    day = date(2026, 3, 1)
    snaps = Snapshots(LakeRoot(tmp_path / "lake"), "amplitude")  # fixed names: one per day
    landing = SnapshotLanding("daily_counts", day, "v1", [], 1, fetched_at=H0)
    with warehouse.connect() as con:
        for events in (5, 7):  # the same file, rewritten: the second take of the day
            with snaps.staged_table_file("daily_counts", day) as parquet:
                con.execute(f"COPY (SELECT DATE '2026-03-01' AS snapshot_date, DATE '2026-02-28' "
                            f"AS event_date, 1::BIGINT AS active_users, 1::BIGINT AS new_users, "
                            f"{events}::BIGINT AS events, 'UTC' AS timezone) TO '{parquet}' "
                            "(FORMAT parquet)")
            assert snaps.load(con, "daily_counts", landing) == 1
        assert con.execute("SELECT events FROM amplitude.daily_counts_current").fetchall() == \
            [(7,)]
        assert con.execute("SELECT table_name, rows FROM amplitude._snapshot_loads").fetchall() \
            == [("daily_counts", 1)]


def test_two_warehouses_on_one_sqlite_catalog_read_and_write(tmp_path, lake):
    catalog = f"sqlite:{tmp_path / 'catalog.sqlite'}"
    writer, reader = make(tmp_path, catalog), amplitude_warehouse(
        tmp_path / "reader.duckdb", catalog=catalog, data_path=str(tmp_path / "ducklake"))
    with writer.connect() as con:
        load_hour(con, "amplitude", lake.hour(H0, lines(H0, 40)), record(H0))
    script = ("import sys; from pathlib import Path; from tests.conftest import "
              "amplitude_warehouse\n"
              "w = amplitude_warehouse(Path(sys.argv[1]), catalog=sys.argv[2], "
              "data_path=sys.argv[3])\n"
              "with w.connect() as con:\n"
              "    print(con.execute('SELECT count(*) FROM amplitude.events').fetchone()[0])\n")
    with reader.connect() as analyst:  # an analyst's session stays open while another loads
        other = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.duckdb"), catalog,
                                str(tmp_path / "ducklake")], capture_output=True, text=True,
                               timeout=120, check=False)
        assert other.returncode == 0, other.stderr
        assert other.stdout.strip() == "40"
        assert analyst.execute("SELECT count(*) FROM amplitude.events").fetchone() == (40,)


HOLD = """
import sys, time
from pathlib import Path
from tests.conftest import amplitude_warehouse
with amplitude_warehouse(Path(sys.argv[1]), catalog=sys.argv[2], data_path=sys.argv[3]).connect():
    print("attached", flush=True)
    time.sleep(30)
"""


def test_a_ducklake_file_admits_one_process_and_says_so(tmp_path):
    catalog = str(tmp_path / "meta.ducklake")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "h.duckdb"), catalog,
                               str(tmp_path / "ducklake")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "attached"
        with pytest.raises(WarehouseLocked, match=r"meta.ducklake stayed locked.*PostgreSQL or "
                                                  r"SQLite catalog"), \
                make(tmp_path, catalog, lock_timeout_seconds=1).connect():
            pass
    finally:
        holder.kill()
        holder.wait()


def test_the_catalog_password_never_shows(tmp_path):
    secret = "Hunter2-never-shown"
    catalog = f"postgres:dbname=lake host=127.0.0.1 port=1 user=loader password={secret}"
    warehouse = make(tmp_path, catalog, lock_timeout_seconds=1)
    assert secret not in repr(warehouse) and secret not in repr(warehouse.catalog)
    assert "password=***" in warehouse.name
    with pytest.raises(duckdb.Error) as failed, warehouse.connect():
        pass
    assert "127.0.0.1" in str(failed.value) and secret not in str(failed.value)
    chain = [failed.value.__cause__, failed.value.__context__]
    assert all(e is None or secret not in str(e) for e in chain)


def test_a_catalog_string_is_checked(tmp_path):
    with pytest.raises(ducklake.CatalogError, match=r"password=\*\*\*"):
        amplitude_warehouse(tmp_path / "w.duckdb", catalog="mysql:password=abc host=x")
    assert ducklake.Catalog.parse(f"ducklake:sqlite:{tmp_path}/c.sqlite").kind == "sqlite"
    plain, password = ducklake.Catalog.parse(
        "postgres:dbname=x password='a b' host=h").without_password()
    assert (plain, password) == ("postgres:dbname=x  host=h", "a b")


def test_a_postgres_catalog_loads_and_hides_a_wrong_password(tmp_path, lake, postgres_dsn):
    warehouse = make(tmp_path, f"postgres:{postgres_dsn.dsn}")
    first, second = lake.hour(H0, lines(H0, 40)), lake.hour(H0, lines(H0, 30))
    with warehouse.connect() as con:
        load_hour(con, "amplitude", first, record(H0))
        version = ducklake.current_snapshot(con)
        load_hour(con, "amplitude", second, record(H0))
        assert con.execute("SELECT count(*) FROM amplitude.events").fetchone() == (30,)
        assert con.execute(f"SELECT count(*) FROM amplitude.events AT (VERSION => {version})"
                           ).fetchone() == (40,)
        assert registered(con) == [second.name]
    password = postgres_dsn.server.password
    plain, moved = warehouse.catalog.without_password()  # as dbt gets it (assets/analytics.py)
    script = ("import sys; from pathlib import Path; from tests.conftest import "
              "amplitude_warehouse\n"
              "w = amplitude_warehouse(Path(sys.argv[1]), catalog=sys.argv[2])\n"
              "with w.connect() as con:\n"
              "    print(con.execute('SELECT count(*) FROM amplitude.events').fetchone()[0])\n")
    other = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.duckdb"), plain],
                           env={**os.environ, "PGPASSWORD": moved}, capture_output=True,
                           text=True, timeout=120, check=False)
    assert password not in plain and other.returncode == 0, other.stderr
    assert other.stdout.strip() == "30"
    wrong = postgres_dsn.dsn.replace(password, "Wrong-" + password[::-1])
    assert wrong != postgres_dsn.dsn
    with pytest.raises(duckdb.Error) as failed, \
            make(tmp_path / "other", f"postgres:{wrong}").connect():
        pass
    assert password not in str(failed.value) and password[::-1] not in str(failed.value)
