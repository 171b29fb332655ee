"""An existing deployment upgrades in place: the warehouse, lake and Dagster instance that
``make demo`` made with the release before projects and Components (commit 1b64137) keep their
asset keys, tables and run history under this code, and the next hour loads beside them.

The old release's own files make the old state: its tree is taken from git and its demo runs
with this virtualenv (a clone with the project's history is needed; CI's is one)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline.amplitude import migrations as amplitude_migrations
from simulator import HourProfile, Simulator, SimulatorConfig
from tests.conftest import AMPLITUDE
from tests.e2e.conftest import canonical, served_rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RELEASE = "1b64137"  # the last release with one project per deployment
DAY = datetime(2026, 3, 1, tzinfo=UTC)
NEXT = DAY + timedelta(days=1)
EVENTS = dg.AssetKey(["amplitude", "events"])
DEMO = SimulatorConfig(profile=HourProfile(base=1500), events_per_member=5000)  # the demo's


def old_release(folder: Path) -> Path:
    """The release's tree, from git."""
    archive = subprocess.run(["git", "archive", "--format=tar", RELEASE], cwd=ROOT,
                             capture_output=True, timeout=120)
    assert archive.returncode == 0, (
        f"commit {RELEASE} is not in this clone ({archive.stderr.decode().strip()}): the "
        "upgrade test needs the project's history")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def run_old_demo(tree: Path, data: Path, home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMPLITUDE_", "MIXPANEL_",
                                                                    "WAREHOUSE_", "LAKE_"))}
    done = subprocess.run(
        [sys.executable, str(tree / "scripts" / "demo.py"), "--data", str(data),
         "--dagster-home", str(home)],
        cwd=tree, env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
        timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def hour_digest(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT _upload_hour, count(*), sum(hash(uuid, event_time, "
                       "event_properties::VARCHAR)) FROM amplitude.events GROUP BY 1 ORDER BY 1"
                       ).fetchall()


def test_a_demo_made_by_the_previous_release_upgrades_in_place(tmp_path):
    tree = old_release(tmp_path / "release")
    data, home = tmp_path / "data", tmp_path / "dagster_home"
    run_old_demo(tree, data, home)
    warehouse = data / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        before = hour_digest(con)
        assert con.execute("SELECT count(*) FROM amplitude._loads").fetchone() == (24,)
        tables = {r[0] for r in con.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables()").fetchall()}
        assert {"mixpanel.events", "mixpanel._loads"} <= tables  # the old release made them
    with dg.DagsterInstance.from_config(str(home)) as instance:
        old_runs = {r.run_id for r in instance.get_runs()}
        assert len(instance.get_materialized_partitions(EVENTS)) == 24

    # This code, on the same files, as a user would run it: the CLI, the next hour.
    with Simulator(DEMO) as sim:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AMPLITUDE_",
                                                                          "MIXPANEL_"))},
               "AMPLITUDE_API_KEY": DEMO.api_key, "AMPLITUDE_SECRET_KEY": DEMO.secret_key,
               "AMPLITUDE_BASE_URL": sim.url, "AMPLITUDE_START": f"{DAY:%Y-%m-%dT%H}",
               "WAREHOUSE_PATH": str(warehouse), "LAKE_ROOT": str(data / "lake"),
               "DAGSTER_HOME": str(home)}
        done = subprocess.run(
            [sys.executable, "-m", "dagster", "asset", "materialize", "-m",
             "assets.definitions", "--select", "*amplitude/events", "--partition",
             f"{NEXT:%Y-%m-%d-%H:%M}"], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        expected = served_rows(sim, NEXT)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert old_runs < {r.run_id for r in instance.get_runs()}  # the history is all there
        materialized = instance.get_materialized_partitions(EVENTS)
    assert materialized == {f"{DAY + timedelta(hours=h):%Y-%m-%d-%H:%M}" for h in range(25)}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        after = hour_digest(con)
        assert after[:-1] == before and after[-1][0] == NEXT  # the old rows, untouched
        assert con.execute("SELECT count(*) FROM amplitude._loads").fetchone() == (25,)
        cursor = con.execute("SELECT * FROM amplitude.events WHERE _upload_hour = ?", [NEXT])
        names = [d[0] for d in cursor.description]
        loaded = {r[names.index("uuid")]: canonical(dict(zip(names, r, strict=True)))
                  for r in cursor.fetchall()}
        assert loaded == expected and len(loaded) == DEMO.hour_count(NEXT) > 0
        assert con.execute("SELECT max(version) FROM amplitude._schema_versions").fetchone() \
            == (amplitude_migrations.LATEST_VERSION,)
        assert con.execute("SELECT source, count(*) FROM amplitude._loads GROUP BY ALL"
                           ).fetchall() == [("api", 25)]
        assert con.execute("SELECT count(*), count(DISTINCT project) FROM amplitude_all.events"
                           ).fetchone() == (sum(n for _, n, _ in after), 1)
    # A Mixpanel project configured later adopts the tables the old release made.
    from pipeline.mixpanel import migrations as mixpanel_migrations
    from pipeline.source import Project
    from pipeline.warehouse import Warehouse

    with Warehouse(warehouse, projects=[AMPLITUDE, Project.named("mixpanel", "default")]
                   ).connect() as con:
        versions = [v for (v,) in con.execute("SELECT version FROM mixpanel._schema_versions "
                                              "ORDER BY 1").fetchall()]
        assert versions == list(range(1, len(mixpanel_migrations.MIGRATIONS) + 1))
        assert con.execute("SELECT count(*) FROM mixpanel.events").fetchone() == (0,)
