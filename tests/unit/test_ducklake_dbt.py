"""The dbt models built on a DuckLake warehouse through analytics/profiles.yml, as the asset
runs dbt (its environment from ``assets.analytics.warehouse_env``), offline."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from assets.analytics import DBT_ENV, dbt_executable, warehouse_env
from pipeline.amplitude.load import load_hour
from tests.conftest import amplitude_warehouse
from tests.unit.test_dbt_models import no_network  # noqa: F401  (a fixture)
from tests.unit.test_ducklake_warehouse import H0, H1, Lake, lines, record

pytestmark = pytest.mark.slow
PROJECT = Path(__file__).resolve().parents[2] / "analytics"


@pytest.mark.parametrize("kind", ["sqlite", "ducklake-file"])
def test_dbt_build_makes_every_model_on_a_ducklake_catalog(tmp_path, kind, no_network):  # noqa: F811
    catalog = (f"sqlite:{tmp_path / 'catalog.sqlite'}" if kind == "sqlite"
               else str(tmp_path / "meta.ducklake"))
    warehouse = amplitude_warehouse(tmp_path / "w.duckdb", catalog=catalog,
                          data_path=str(tmp_path / "ducklake"))
    (tmp_path / "in").mkdir()
    lake = Lake(tmp_path)
    with warehouse.connect() as con:
        load_hour(con, "amplitude", lake.hour(H0, lines(H0, 40)), record(H0))
        load_hour(con, "amplitude", lake.hour(H1, lines(H1, 25)), record(H1))
        served = con.execute("SELECT count(DISTINCT uuid) FROM amplitude.events").fetchone()
    project = tmp_path / "analytics"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    env = {**os.environ, **DBT_ENV, **warehouse_env(warehouse)}
    assert env["WAREHOUSE_CATALOG"].startswith(("sqlite:/", "/"))
    # the models of this warehouse's source, as the asset selects them (another source's
    # models need views it has not got)
    for _ in range(2 if kind == "sqlite" else 1):  # a second build replaces its views
        done = subprocess.run([dbt_executable(), "build", "--select", "tag:amplitude",
                               "--project-dir", str(project),
                               "--profiles-dir", str(project)], cwd=project, env=env,
                              capture_output=True, text=True, timeout=280, check=False)
        assert done.returncode == 0, done.stdout[-4000:]
        assert '"target_name": "ducklake"' in (project / "logs" / "dbt.log").read_text()
    with warehouse.connect() as con:
        assert con.execute("SELECT count(*) FROM analytics.events_unique").fetchone() == served
        assert con.execute("SELECT project, project_timezone, count(*) FROM analytics."
                           "events_unique GROUP BY ALL").fetchall() == [("default", "UTC",
                                                                         served[0])]
        assert con.execute("SELECT project, step FROM analytics.funnel(['page_view'], DATE "
                           "'2026-02-01', DATE '2026-04-01')").fetchall() == [("default", 1)]
        views = {row[0] for row in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE database_name = 'warehouse' AND "
            "schema_name = 'analytics'").fetchall()}
    assert {"events_unique", "sessions", "daily_active_users"} <= views
    assert no_network == []


def test_the_dbt_environment_keeps_the_password_out_of_the_catalog(tmp_path):
    warehouse = amplitude_warehouse(tmp_path / "w.duckdb",
                          catalog="postgres:dbname=lake host=db user=loader password=Pw-9-secret")
    env = warehouse_env(warehouse)
    assert "Pw-9-secret" not in env["WAREHOUSE_CATALOG"] and env["PGPASSWORD"] == "Pw-9-secret"
    assert env["WAREHOUSE_CATALOG"].startswith("postgres:dbname=lake host=db")
    assert warehouse_env(amplitude_warehouse(tmp_path / "w.duckdb"))["WAREHOUSE_CATALOG"] == ""
