"""A DuckLake warehouse through Dagster (WAREHOUSE_CATALOG on a SQLite catalog, a local lake):
hours are registered where normalize wrote them, snapshots load too, and time travel reads what
a re-fetch replaced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from pipeline.lake import hour_partition
from pipeline.warehouse import Warehouse
from simulator import Simulator, SimulatorConfig
from tests.conftest import DAY, SMALL, amplitude_warehouse
from tests.e2e.conftest import Project, served_rows, warehouse_rows
from tests.e2e.test_snapshots import materialize, served

pytestmark = pytest.mark.slow
H = timedelta(hours=1)
BUSY = DAY + 8 * H
TODAY = datetime.now(UTC).date()


@pytest.fixture
def lake_project(tmp_path, monkeypatch):
    config = SimulatorConfig(profile=SMALL.profile, events_per_member=SMALL.events_per_member,
                             first_hour=DAY, last_hour=DAY + 23 * H)
    with Simulator(config) as sim, dg.instance_for_test() as instance:
        project = Project(sim, tmp_path, instance, extra_env={
            "WAREHOUSE_CATALOG": f"sqlite:{tmp_path / 'catalog.sqlite'}",
            "WAREHOUSE_DATA_PATH": str(tmp_path / "ducklake-data")})
        for name, value in project.env.items():
            monkeypatch.setenv(name, value)
        yield project


def catalog(project: Project) -> Warehouse:
    env = project.env
    return amplitude_warehouse(project.root / "unused.duckdb", catalog=env["WAREHOUSE_CATALOG"],
                     data_path=env["WAREHOUSE_DATA_PATH"])


def test_hours_are_registered_in_place_and_time_travel_reads_a_replaced_hour(lake_project):
    assert lake_project.materialize(DAY, DAY + 23 * H).success
    with catalog(lake_project).connect() as con:
        for hour in (DAY + h * H for h in range(24)):
            assert warehouse_rows(con, hour) == served_rows(lake_project.sim, hour)
        files = [r[0] for r in con.execute(
            "SELECT data_file FROM ducklake_list_files('warehouse', 'events', "
            "schema => 'amplitude')").fetchall()]
        (before,) = con.execute("SELECT max(snapshot_id) FROM "
                                "ducklake_snapshots('warehouse')").fetchone()
    lake = lake_project.lake
    current = str(lake.events_file(BUSY))
    assert current in files and f"{hour_partition(BUSY)}/events-v" in current
    assert all(f.startswith(str(lake_project.root / "lake" / "amplitude" / "events"))
               for f in files)  # registered where normalize wrote them: nothing copied
    data = lake_project.root / "ducklake-data"
    assert not [p for p in data.rglob("*.parquet") if "events" in p.parts]

    assert lake_project.materialize(BUSY, refetch=True).success
    replaced = str(lake.events_file(BUSY))
    assert replaced != current
    with catalog(lake_project).connect() as con:
        assert warehouse_rows(con, BUSY) == served_rows(lake_project.sim, BUSY)
        old = con.execute(f"SELECT count(*) FROM amplitude.events AT (VERSION => {before}) "
                          "WHERE _upload_hour = ?", [BUSY]).fetchone()
        assert old == (lake_project.sim.hour_count(BUSY),)  # the old file is still there
        listed = {r[0] for r in con.execute(
            "SELECT data_file FROM ducklake_list_files('warehouse', 'events', "
            "schema => 'amplitude')").fetchall()}
        assert replaced in listed and current not in listed
        assert con.execute("SELECT rows_added, rows_removed, rows_changed FROM amplitude._loads "
                           "WHERE upload_hour = ?", [BUSY]).fetchone() == (0, 0, 0)


def test_snapshot_tables_load_into_ducklake(lake_project):
    env = lake_project.env
    materialize(env, ["cohorts", "taxonomy_event_types"], TODAY, lake_project.instance)
    cohorts = served(lake_project.sim, "/api/3/cohorts")["cohorts"]
    events = served(lake_project.sim, "/api/2/taxonomy/event", showDeleted="true")["data"]
    with catalog(lake_project).connect() as con:
        assert sorted(con.execute("SELECT id, name, size FROM amplitude.cohorts WHERE "
                                  "snapshot_date = ?", [TODAY]).fetchall()) == sorted(
            (c["id"], c["name"], c["size"]) for c in cohorts)
        assert sorted(con.execute("SELECT event_type, deleted FROM "
                                  "amplitude.taxonomy_event_types").fetchall()) == sorted(
            (e["event_type"], e["deleted"]) for e in events)
    materialize(env, ["cohorts"], TODAY, lake_project.instance)  # a retake replaces
    with catalog(lake_project).connect() as con:
        assert con.execute("SELECT count(*) FROM amplitude.cohorts").fetchone() == (len(cohorts),)
