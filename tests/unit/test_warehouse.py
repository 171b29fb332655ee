import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipeline.amplitude.load import LoadRecord, load_hour
from pipeline.amplitude.normalize import normalize_hour
from pipeline.warehouse import WarehouseError, WarehouseLocked
from simulator import hour_lines
from tests.conftest import amplitude_warehouse, write_member

H0 = datetime(2026, 3, 1, 7, tzinfo=UTC)
H1 = H0 + timedelta(hours=1)


def hour_file(tmp_path, hour, count):
    lines = [json.loads(b) for b in hour_lines(636686, hour, count)]
    member = write_member(tmp_path / f"in-{hour:%H}-{count}.json.gz", lines)
    return normalize_hour([member], hour, tmp_path / f"{hour:%H}-{count}" / "events.parquet")


def record(hour):
    return LoadRecord(upload_hour=hour, archive_members=1, bytes_downloaded=100,
                      request_window="w", window_requests=1, fetch_seconds=0.5)


def snapshot(con):
    return con.execute("SELECT _upload_hour, count(*), min(uuid), max(uuid) FROM amplitude.events "
                       "GROUP BY ALL ORDER BY 1").fetchall()


def test_reloading_an_hour_leaves_exactly_the_same_rows(tmp_path):
    warehouse = amplitude_warehouse(tmp_path / "w.duckdb")
    a, b = hour_file(tmp_path, H0, 40), hour_file(tmp_path, H1, 25)
    with warehouse.connect() as con:
        load_hour(con, "amplitude", a.path, record(H0))
        load_hour(con, "amplitude", b.path, record(H1))
        first = snapshot(con)
        load_hour(con, "amplitude", a.path, record(H0))
        load_hour(con, "amplitude", a.path, record(H0))
        assert snapshot(con) == first
        assert [r[1] for r in first] == [40, 25]
        ledger = con.execute("SELECT upload_hour, rows, load_seconds > 0, loaded_at IS NOT NULL "
                             "FROM amplitude._loads ORDER BY 1").fetchall()
        assert ledger == [(H0, 40, True, True), (H1, 25, True, True)]


def test_a_smaller_rerun_replaces_the_hour_not_appends(tmp_path):
    warehouse = amplitude_warehouse(tmp_path / "w.duckdb")
    with warehouse.connect() as con:
        load_hour(con, "amplitude", hour_file(tmp_path, H0, 40).path, record(H0))
        load_hour(con, "amplitude", hour_file(tmp_path, H0, 10).path, record(H0))
        assert con.execute("SELECT count(*) FROM amplitude.events").fetchone() == (10,)


def test_a_failed_swap_keeps_what_was_loaded(tmp_path):
    warehouse = amplitude_warehouse(tmp_path / "w.duckdb")
    good = hour_file(tmp_path, H0, 40)
    with warehouse.connect() as con:
        load_hour(con, "amplitude", good.path, record(H0))
        before = snapshot(con)
        wrong_hour = hour_file(tmp_path, H1, 12)  # a file of another hour
        with pytest.raises(WarehouseError, match=r"2026-03-01T07.*12 rows, only 0 of them"):
            load_hour(con, "amplitude", wrong_hour.path, record(H0))
        assert snapshot(con) == before
        assert con.execute("SELECT rows FROM amplitude._loads").fetchall() == [(40,)]


def test_the_table_has_typed_columns(tmp_path):
    warehouse = amplitude_warehouse(tmp_path / "w.duckdb")
    with warehouse.connect() as con:
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'events'").fetchall())
    assert types["event_properties"] == "JSON" and types["uuid"] == "VARCHAR"
    assert types["server_upload_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["amplitude_id"] == "BIGINT"
    assert types["amplitude_attribution_ids"] == "VARCHAR[]"


def test_a_table_of_another_layout_is_refused(tmp_path):
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA amplitude; CREATE TABLE amplitude.events (uuid VARCHAR)")
    con.close()
    with pytest.raises(WarehouseError, match="different layout"), \
            amplitude_warehouse(path).connect():
        pass


HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_lock(path, seconds):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_held_lock_is_waited_out(tmp_path):
    path = tmp_path / "w.duckdb"
    holder = hold_lock(path, 1.5)
    try:
        started = time.monotonic()
        with amplitude_warehouse(path, lock_timeout_seconds=30).connect() as con:
            assert con.execute("SELECT 1").fetchone() == (1,)
        assert time.monotonic() - started >= 0.5
    finally:
        holder.wait(timeout=30)


def test_a_lock_held_too_long_fails_with_advice_and_the_holder(tmp_path):
    path = tmp_path / "w.duckdb"
    holder = hold_lock(path, 30)
    try:
        with pytest.raises(WarehouseLocked, match=r"locked by another process.*PID.*read-only"), \
                amplitude_warehouse(path, lock_timeout_seconds=1).connect():
            pass
    finally:
        holder.kill()
        holder.wait()


def test_wide_property_bags_are_stored_with_zstd(tmp_path):
    warehouse = amplitude_warehouse(tmp_path / "w.duckdb")
    with warehouse.connect() as con:
        load_hour(con, "amplitude", hour_file(tmp_path, H0, 40).path, record(H0))
        con.execute("CHECKPOINT")
        methods = dict(con.execute(
            "SELECT column_name, string_agg(DISTINCT compression) FROM "
            "pragma_storage_info('amplitude.events') WHERE segment_type = 'JSON' GROUP BY ALL"
        ).fetchall())
    assert methods["event_properties"] == methods["user_properties"] == "ZSTD"


def test_the_warehouse_spills_beside_its_file_not_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    path = tmp_path / "data" / "w.duckdb"
    with amplitude_warehouse(path, memory_limit="48MB", threads=1).connect() as con:
        con.execute("SELECT sum(x) FROM (SELECT range AS x, random() AS r FROM range(6000000) "
                    "ORDER BY r)").fetchall()  # sorting 6M rows in 48 MB must spill
        spilled_beside = Path(f"{path}.tmp").is_dir()
        spilled_in_cwd = (tmp_path / "cwd" / ".tmp").exists()
    assert spilled_beside and not spilled_in_cwd


def test_two_connections_in_one_process_share_the_warehouse(tmp_path):
    warehouse = amplitude_warehouse(tmp_path / "w.duckdb", lock_timeout_seconds=1)
    with warehouse.connect() as first:
        load_hour(first, "amplitude", hour_file(tmp_path, H0, 5).path, record(H0))
        with amplitude_warehouse(tmp_path / "w.duckdb").connect() as second:
            assert second.execute("SELECT count(*) FROM amplitude.events").fetchone() == (5,)
        assert first.execute("SELECT count(*) FROM amplitude._loads").fetchone() == (1,)


def test_a_reload_counts_what_it_added_removed_and_changed(tmp_path):
    lines = [json.loads(b) for b in hour_lines(636686, H0, 30)]
    first = normalize_hour([write_member(tmp_path / "a.json.gz", lines[:20])], H0,
                           tmp_path / "a" / "events.parquet")
    revised = [dict(line) for line in lines[3:25]]  # 3 gone, 5 late arrivals
    revised[0]["event_type"] = "renamed by Amplitude"  # and 2 rows changed
    revised[1]["event_properties"] = {"plan": "changed"}
    second = normalize_hour([write_member(tmp_path / "b.json.gz", revised)], H0,
                            tmp_path / "b" / "events.parquet")
    warehouse = amplitude_warehouse(tmp_path / "w.duckdb")
    with warehouse.connect() as con:
        loaded = load_hour(con, "amplitude", first.path, record(H0))
        assert (loaded.rows_added, loaded.rows_removed, loaded.rows_changed) == (20, 0, 0)
        again = load_hour(con, "amplitude", first.path, record(H0))
        assert (again.rows_added, again.rows_removed, again.rows_changed) == (0, 0, 0)
        late = load_hour(con, "amplitude", second.path, record(H0))
        assert (late.rows_added, late.rows_removed, late.rows_changed) == (5, 3, 2)
        assert con.execute("SELECT rows_added, rows_removed, rows_changed FROM amplitude._loads"
                           ).fetchall() == [(5, 3, 2)]
