"""deploy/dagster.yaml is a working production instance: PostgreSQL storage from env vars,
run monitoring on, the pools as the local instance has them."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.servers.postgres import PostgresDatabase

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "dagster.yaml"


@dg.asset(pool="duckdb_warehouse")
def tiny() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


@pytest.fixture
def production_instance(tmp_path, monkeypatch, postgres_dsn: PostgresDatabase):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name, value in postgres_dsn.env().items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.get() as instance:
        yield instance, postgres_dsn


def test_the_file_names_no_secret_and_keeps_the_local_pools() -> None:
    text = DEPLOY.read_text()
    config = yaml.safe_load(text)
    db = config["storage"]["postgres"]["postgres_db"]
    assert all(isinstance(v, dict) and set(v) == {"env"} for k, v in db.items() if k != "scheme")
    assert {v["env"] for k, v in db.items() if k != "scheme"} == {
        "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB"}
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert config["concurrency"] == local["concurrency"]
    assert config["telemetry"] == {"enabled": False}
    assert config["run_monitoring"]["max_resume_run_attempts"] == 0


def test_an_instance_from_deploy_yaml_stores_runs_in_postgres(production_instance) -> None:
    import psycopg2

    instance, db = production_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_start_timeout_seconds == 180
    assert instance.run_monitoring_max_resume_run_attempts == 0
    assert instance.event_log_storage.supports_global_concurrency_limits

    result = dg.materialize([tiny], instance=instance)
    assert result.success
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    materialized = instance.get_latest_materialization_event(dg.AssetKey("tiny"))
    assert materialized is not None
    assert materialized.asset_materialization.metadata["rows"].value == 3
    # The pool was claimed and given back, in PostgreSQL, with the file's default limit.
    info = instance.event_log_storage.get_concurrency_info("duckdb_warehouse")
    assert info.slot_count == 1 and not info.claimed_slots
    with psycopg2.connect(db.dsn) as con, con.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchone() == (1,)
    con.close()
    assert db.server.password not in repr(instance.get_ref())
