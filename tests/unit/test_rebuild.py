"""`python -m pipeline.rebuild`: a warehouse rebuilt from the lake holds the lake's rows and the
ledger the asset writes; a DuckDB 2.0 file is refused with the way back, and the way back works."""

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipeline.amplitude.landing import AmplitudeLake as Lake
from pipeline.amplitude.landing import LandedHour, LandedMember
from pipeline.amplitude.normalize import normalize_hour
from pipeline.lake import MANIFEST, hour_partition
from pipeline.rebuild import main
from pipeline.warehouse import WarehouseError, storage_version
from simulator import hour_lines
from tests.conftest import amplitude_warehouse, write_member
from tests.unit.test_warehouse import H0, H1, hold_lock

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_20 = Path(__file__).parents[1] / "fixtures" / "warehouse-duckdb-2.0.0.duckdb.gz"
H2 = H0 + timedelta(days=1)  # a second day
HOURS = {H0: 40, H1: 25, H2: 10, H2 + timedelta(hours=1): 0}
FILE = "read_parquet(?, hive_partitioning = false)"
FETCHED = datetime(2026, 3, 3, 1, 2, 3, tzinfo=UTC)


def landed_hour(hour):
    return LandedHour(upload_hour=hour, version=f"v{hour:%d%H}-test", request_window="w",
                      window_hours=2, window_requests=3, window_fetch_seconds=4.0,
                      window_member_bytes=200, members=[LandedMember("m", "m.json.gz", 100)],
                      fetched_at=FETCHED)


def events_path(lake, hour):
    """Where a local lake keeps the hour's file, written or not."""
    return lake.table_folder("amplitude", "events", hour_partition(hour)) / "events.parquet"


def make_lake(tmp_path, *, manifests=(H0, H1, H2)):
    """A lake with real Parquet files at Lake.events_file, and landing manifests for some hours."""
    lake = Lake(tmp_path / "lake")
    (tmp_path / "members").mkdir()
    for hour, count in HOURS.items():
        lines = [json.loads(b) for b in hour_lines(636686, hour, count)]
        member = write_member(tmp_path / "members" / f"{hour:%d%H}.json.gz", lines)
        normalize_hour([member], hour, events_path(lake, hour))
    for hour in manifests:
        lake.landing_dir(hour).mkdir(parents=True)
        (lake.landing_dir(hour) / MANIFEST).write_text(landed_hour(hour).to_json())
    return lake


def duckdb20_warehouse(path):
    with gzip.open(FIXTURE_20) as packed, open(path, "wb") as out:
        shutil.copyfileobj(packed, out)
    return path


def run(*args, stdin=subprocess.DEVNULL):
    return subprocess.run([sys.executable, "-m", "pipeline.rebuild", *map(str, args)], cwd=ROOT,
                          stdin=stdin, capture_output=True, text=True, timeout=120)


def assert_holds_the_lake(path, lake):
    with amplitude_warehouse(path).connect() as con:
        for hour in HOURS:
            parquet = str(lake.events_file(hour))
            differ = con.execute(
                f"SELECT count(*) FROM ((SELECT * FROM amplitude.events WHERE _upload_hour = ? "
                f"EXCEPT ALL SELECT * FROM {FILE}) UNION ALL (SELECT * FROM {FILE} "
                "EXCEPT ALL SELECT * FROM amplitude.events WHERE _upload_hour = ?))",
                [hour, parquet, parquet, hour]).fetchone()[0]
            assert differ == 0, hour
        assert con.execute("SELECT count(*) FROM amplitude.events").fetchone() == (75,)
        return con.execute("SELECT upload_hour, rows, archive_members, bytes_downloaded, "
                           "request_window, window_requests, landing_version, fetched_at "
                           "FROM amplitude._loads ORDER BY 1").fetchall()


def test_the_command_rebuilds_rows_and_ledger_from_the_lake(tmp_path):
    lake = make_lake(tmp_path)
    done = run("--warehouse", tmp_path / "w.duckdb", "--lake", lake.root)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("amplitude    2026-03-01   2 partition(s)")
    assert " 65 rows" in lines[0]
    assert lines[1].startswith("amplitude    2026-03-02   2 partition(s)")
    assert " 10 rows" in lines[1]
    assert "4 partitions, 75 rows in" in lines[2]
    ledger = assert_holds_the_lake(tmp_path / "w.duckdb", lake)
    assert ledger == [  # what LoadRecord.from_landing makes of each manifest, as the asset does
        (H0, 40, 1, 100, "w", 3, "v0107-test", FETCHED),
        (H1, 25, 1, 100, "w", 3, "v0108-test", FETCHED),
        (H2, 10, 1, 100, "w", 3, "v0207-test", FETCHED),
        (H2 + timedelta(hours=1), 0, 0, 0, "rebuilt", 0, None, None),  # no manifest
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "members", "w.duckdb"]


def test_an_existing_warehouse_is_moved_aside_not_deleted(tmp_path, capsys):
    lake = make_lake(tmp_path)
    path = tmp_path / "w.duckdb"
    with amplitude_warehouse(path).connect() as con:  # an older, different state of the warehouse
        con.execute("INSERT INTO amplitude._loads (upload_hour, rows) VALUES (?, 99)",
                    [H0 - timedelta(hours=5)])
    assert main(["--warehouse", str(path), "--lake", str(lake.root), "--yes"]) == 0
    [old] = tmp_path.glob("w.duckdb.old-*")
    assert f"the previous file is at {old}" in capsys.readouterr().out
    assert_holds_the_lake(path, lake)
    with amplitude_warehouse(old).connect() as con:
        assert con.execute("SELECT rows FROM amplitude._loads").fetchall() == [(99,)]


def test_a_duckdb_20_warehouse_is_refused_with_the_way_back(tmp_path):
    path = duckdb20_warehouse(tmp_path / "w.duckdb")
    assert storage_version(path) == 999  # what DuckDB 2.0.0 writes; 1.5 reads 64 to 68
    with pytest.raises(WarehouseError) as refused, amplitude_warehouse(path).connect():
        pass
    message = str(refused.value)
    assert "written by a newer DuckDB (storage version 999)" in message
    assert f"this project runs DuckDB {duckdb.__version__}" in message
    assert f"python -m pipeline.rebuild --warehouse {path} --lake LAKE_ROOT" in message


def test_rebuilding_over_a_duckdb_20_warehouse(tmp_path):
    lake = make_lake(tmp_path)
    path = duckdb20_warehouse(tmp_path / "w.duckdb")
    original = hashlib.sha256(path.read_bytes()).hexdigest()
    done = run("--warehouse", path, "--lake", lake.root, "--yes")
    assert done.returncode == 0, done.stderr
    [old] = tmp_path.glob("w.duckdb.old-*")
    assert hashlib.sha256(old.read_bytes()).hexdigest() == original  # kept byte for byte
    assert storage_version(path) != 999
    assert len(assert_holds_the_lake(path, lake)) == 4


def test_a_failed_rebuild_leaves_the_warehouse_as_it_was(tmp_path):
    lake = make_lake(tmp_path)
    path = duckdb20_warehouse(tmp_path / "w.duckdb")
    original = path.read_bytes()
    shutil.copy(events_path(lake, H0), events_path(lake, H1))  # H0's rows filed under H1
    done = run("--warehouse", path, "--lake", lake.root, "--yes")
    assert done.returncode == 1
    assert "rebuild failed: upload hour 2026-03-01T08 of amplitude" in done.stderr
    assert "was left as it was" in done.stderr and "Traceback" not in done.stderr
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "members", "w.duckdb"]


def test_an_existing_warehouse_needs_yes_without_a_terminal(tmp_path):
    lake = make_lake(tmp_path, manifests=())
    path = duckdb20_warehouse(tmp_path / "w.duckdb")
    done = run("--warehouse", path, "--lake", lake.root)
    assert done.returncode == 1 and "pass --yes" in done.stderr
    assert not list(tmp_path.glob("w.duckdb.old-*"))


def test_a_warehouse_open_elsewhere_is_not_moved(tmp_path):
    lake = make_lake(tmp_path, manifests=())
    path = tmp_path / "w.duckdb"
    holder = hold_lock(path, 30)
    try:
        done = run("--warehouse", path, "--lake", lake.root, "--yes")
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1 and "open in another process" in done.stderr
    assert not list(tmp_path.glob("w.duckdb.old-*"))


def test_a_missing_lake_is_a_clear_error(tmp_path, capsys):
    assert main(["--warehouse", str(tmp_path / "w.duckdb"), "--lake", str(tmp_path / "no")]) == 1
    assert "the lake" in capsys.readouterr().err
    assert not (tmp_path / "w.duckdb").exists()


def test_landed_hours_without_a_parquet_file_are_named(tmp_path, capsys):
    lake = make_lake(tmp_path)
    lake.events_file(H1).unlink()
    assert main(["--warehouse", str(tmp_path / "w.duckdb"), "--lake", str(lake.root)]) == 0
    out = capsys.readouterr().out
    assert "3 partitions, 50 rows" in out and "1 landed partition(s) have no Parquet file" in out
