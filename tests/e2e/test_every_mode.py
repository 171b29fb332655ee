"""Every asset, check and job, through the Dagster CLI as a data engineer types it, in every
warehouse mode: the DuckDB file and DuckLake (a ``.ducklake`` file, SQLite, PostgreSQL), with the
lake on local disk and on S3 (SeaweedFS), and once with events from the storage export beside a
second project. Expected figures come from the simulator. With CI=true a missing server fails."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from pipeline.object_storage import ObjectStorage
from pipeline.source import Project
from pipeline.warehouse import Warehouse
from simulator import S3Bucket, Simulator, SimulatorConfig
from simulator import StorageExport as Writer
from tests.conftest import DAY, SMALL
from tests.e2e.test_projects import projects_package

ROOT = Path(__file__).resolve().parents[2]
H = timedelta(hours=1)
FIRST, LAST = DAY + 6 * H, DAY + 7 * H  # the hours holding events
# The range loaded: the day, and the hours after it that settle it for the reconciliation.
HOURS = [DAY + h * H for h in range(27)]
TODAY = datetime.now(UTC).date()
COUNTS_DAYS = (TODAY - DAY.date()).days + 2  # Amplitude's counts reach back to the day
ORG = 100_438
CONFIG = SimulatorConfig(profile=SMALL.profile, events_per_member=SMALL.events_per_member,
                         first_hour=FIRST, last_hour=LAST)
MERGING = dataclasses.replace(CONFIG, merge_share=0.2, org_id=ORG)  # with the storage export
SECOND = SimulatorConfig(profile=SMALL.profile, events_per_member=SMALL.events_per_member,
                         first_hour=FIRST, last_hour=LAST, project_id=333,
                         api_key="second-sim-api-key", secret_key="second-sim-secret")
KEY = "%Y-%m-%d-%H:%M"
SNAPSHOTS = ("annotation_categories", "annotations", "cohort_members", "cohorts", "daily_counts",
             "events_list", "taxonomy_categories", "taxonomy_event_properties",
             "taxonomy_event_types", "taxonomy_user_properties")
MODELS = ("daily_active_users", "user_identity", "events_unique", "sessions", "user_enhanced")
QUICK_POLLS = {"poll_first_seconds": 0.05, "poll_max_seconds": 0.2}  # the simulator is quick
SECOND_YAML = """\
type: assets.components.AmplitudeProject
attributes:
  name: second
  api_key_env: SECOND_AMPLITUDE_API_KEY
  secret_key_env: SECOND_AMPLITUDE_SECRET_KEY
  base_url: {url}
  start: {start}
  counts_days: {days}
  reconcile_settle_hours: 2
"""
pytestmark = pytest.mark.slow


@dataclass
class Mode:
    """One deployment: its variables, and how the test opens its warehouse to look."""

    env: dict[str, str]
    warehouse: Warehouse
    namespaces: tuple[str, ...] = ("amplitude",)
    module: str = "assets.definitions"
    merges: bool = False
    jobs: bool = False  # each job by name, not only every asset and check
    servers: list[object] = field(default_factory=list)


def _warehouse(root: Path, env: dict[str, str], namespaces: tuple[str, ...]) -> Warehouse:
    lake = env["LAKE_ROOT"]
    storage = ObjectStorage.from_root(lake, env) if lake.startswith("s3://") else None
    catalog = env.get("WAREHOUSE_CATALOG")
    return Warehouse(root / "warehouse.duckdb", catalog=catalog, object_storage=storage,
                     data_path=f"{lake}/ducklake" if catalog else None,
                     projects=[Project.named("amplitude", n.removeprefix("amplitude_") or
                                             "default") for n in namespaces])


def _s3_lake(request, env: dict[str, str]) -> None:
    s3 = request.getfixturevalue("seaweed_s3")
    env.update(s3.env(), LAKE_ROOT=f"s3://{s3.bucket}/modes/{uuid.uuid4().hex[:10]}")


def _postgres_catalog(request, root: Path) -> str:
    database = request.getfixturevalue("postgres_server").create_database()
    return f"postgres:{database.dsn}"


def _storage_source(request, root: Path, env: dict[str, str]) -> None:
    """Events from the bucket (the simulator writes Amplitude's layout), merged ids from the
    same folder, and a second project on the Export API, declared in YAML."""
    s3 = request.getfixturevalue("seaweed_s3")
    prefix = f"exports/{uuid.uuid4().hex[:10]}"
    writer = Writer(MERGING, S3Bucket(s3.endpoint_url, s3.bucket, s3.key_id, s3.secret),
                    prefix=prefix, merged_ids="org")
    writer.deliver(HOURS)
    env.update(s3.amplitude_storage_env(), AMPLITUDE_EVENTS_FROM="storage",
               AMPLITUDE_STORAGE_URL=f"s3://{s3.bucket}/{prefix}",
               AMPLITUDE_PROJECT_ID=str(MERGING.project_id), AMPLITUDE_ORG_ID=str(ORG),
               AMPLITUDE_MERGE_IDS_URL=f"s3://{s3.bucket}/{prefix}")


DEFAULT = "duckdb file, local lake"
MODES: dict[str, Callable[..., None]] = {
    DEFAULT: lambda request, root, env: None,
    "duckdb file, lake on S3": lambda request, root, env: _s3_lake(request, env),
    "ducklake file, local lake": lambda request, root, env: env.update(
        WAREHOUSE_CATALOG=str(root / "catalog.ducklake")),
    "ducklake on SQLite, lake on S3": lambda request, root, env: (
        _s3_lake(request, env),
        env.update(WAREHOUSE_CATALOG=f"sqlite:{root / 'catalog.sqlite'}")),
    "ducklake on PostgreSQL, lake on S3": lambda request, root, env: (
        _s3_lake(request, env),
        env.update(WAREHOUSE_CATALOG=_postgres_catalog(request, root))),
    "storage export and a second project": lambda request, root, env: _storage_source(
        request, root, env),
}


@pytest.fixture(params=list(MODES))
def mode(request, tmp_path) -> Iterator[Mode]:
    config = MERGING if "storage" in request.param else CONFIG
    with Simulator(config) as sim, Simulator(SECOND) as second:
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("AMPLITUDE_", "MIXPANEL_", "WAREHOUSE_", "AWS_"))}
        env.update(DAGSTER_HOME=str(home), AMPLITUDE_API_KEY=CONFIG.api_key,
                   AMPLITUDE_SECRET_KEY=CONFIG.secret_key, AMPLITUDE_BASE_URL=sim.url,
                   AMPLITUDE_START=f"{DAY:%Y-%m-%dT%H}",
                   AMPLITUDE_COUNTS_DAYS=str(COUNTS_DAYS),
                   AMPLITUDE_RECONCILE_SETTLE_HOURS="2",
                   WAREHOUSE_PATH=str(tmp_path / "warehouse.duckdb"),
                   LAKE_ROOT=str(tmp_path / "lake"))
        MODES[request.param](request, tmp_path, env)
        namespaces: tuple[str, ...] = ("amplitude",)
        module = "assets.definitions"
        if "second project" in request.param:
            package = projects_package(tmp_path, {"second/defs.yaml": SECOND_YAML.format(
                url=second.url, start=f"{DAY:%Y-%m-%dT%H}", days=COUNTS_DAYS)})
            (tmp_path / "location.py").write_text(
                "from assets.definitions import build_defs\n\n"
                f"defs = build_defs(defs_module={package!r})\n")
            env.update(SECOND_AMPLITUDE_API_KEY=SECOND.api_key,
                       SECOND_AMPLITUDE_SECRET_KEY=SECOND.secret_key,
                       PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
            namespaces, module = ("amplitude", "amplitude_second"), "location"
        yield Mode(env, _warehouse(tmp_path, env, namespaces), namespaces, module,
                   merges="AMPLITUDE_ORG_ID" in env, servers=[sim, second],
                   jobs=request.param == DEFAULT)


def dagster(mode: Mode, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "dagster", *args, "-m", mode.module],
                          cwd=ROOT, env=mode.env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-6000:])
    return done


def check_results(mode: Mode) -> dict[str, list[dg.AssetCheckEvaluation]]:
    """Every evaluation of each check, by ``<asset>:<check>``, from the instance's event log."""
    with dg.DagsterInstance.from_config(mode.env["DAGSTER_HOME"]) as instance:
        records = instance.get_event_records(dg.EventRecordsFilter(
            dg.DagsterEventType.ASSET_CHECK_EVALUATION), ascending=True)
    found: dict[str, list[dg.AssetCheckEvaluation]] = {}
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        found.setdefault(name, []).append(evaluation)
    return found


def range_tags(namespace: str) -> str:
    return json.dumps({"dagster/asset_partition_range_start": f"{HOURS[0]:{KEY}}",
                       "dagster/asset_partition_range_end": f"{HOURS[-1]:{KEY}}"})


def test_every_asset_check_and_job_runs_in_every_mode(mode):
    """Each mode runs every asset and check; the default mode also runs each job by name (the
    others reach the same checks through the assets' runs: freshness with the events, the
    reconciliation with the snapshots)."""
    sim, second = mode.servers
    jobs = mode.jobs
    for namespace in mode.namespaces:
        if jobs:
            dagster(mode, "job", "execute", "-j", f"{namespace}_hourly", "--tags",
                    range_tags(namespace))
        else:
            dagster(mode, "asset", "materialize", "--select", f"*{namespace}/events",
                    "--partition-range", f"{HOURS[0]:{KEY}}...{HOURS[-1]:{KEY}}")
        polls = Path(mode.env["DAGSTER_HOME"]) / f"{namespace}_snapshots.yaml"
        polls.write_text(json.dumps(
            {"ops": {f"{namespace}__cohort_members": {"config": QUICK_POLLS}}}))
        dagster(mode, "job", "execute", "-j", f"{namespace}_snapshots_daily", "--tags",
                json.dumps({"dagster/partition": TODAY.isoformat()}), "--config", str(polls))
    if mode.merges:
        dagster(mode, "job", "execute", "-j", "amplitude_merge_ids_hourly", "--tags",
                range_tags("amplitude"))
    dagster(mode, "asset", "materialize", "--select", "group:analytics")
    for namespace in mode.namespaces if jobs else ():
        for job in ("reconcile", "freshness"):
            dagster(mode, "job", "execute", "-j", f"{namespace}_{job}")

    hours = HOURS
    with mode.warehouse.reader() as con:
        for namespace, served in zip(mode.namespaces, (sim, second), strict=False):
            loaded = dict(con.execute(
                f"SELECT _upload_hour, count(*) FROM {namespace}.events GROUP BY 1").fetchall())
            assert {h.astimezone(UTC): n for h, n in loaded.items()} == {
                h: served.hour_count(h) for h in hours if served.hour_count(h)}, namespace
            for table in SNAPSHOTS:
                (rows,) = con.execute(f"SELECT count(*) FROM {namespace}.{table} "
                                      "WHERE snapshot_date = ?", [TODAY]).fetchone()
                assert rows > 0, (namespace, table)
        for model in MODELS:
            (rows,) = con.execute(f"SELECT count(*) FROM analytics.{model}").fetchone()
            assert rows > 0, model
        if mode.merges:
            (merges,) = con.execute("SELECT count(*) FROM amplitude.merge_ids").fetchone()
            assert merges == len(sim.merges()) > 0

    checks = check_results(mode)
    for namespace in mode.namespaces:
        for check in ("uuid_unique_per_hour", "rows_match_parquet_and_ledger",
                      "upload_time_in_hour", "no_row_drop", "no_schema_drift"):
            per_hour = {e.partition: e for e in checks[f"{namespace}/events:{check}"]
                        if e.partition}
            assert sorted(per_hour) == [f"{h:{KEY}}" for h in hours], (namespace, check)
            for evaluation in per_hour.values():
                assert evaluation.passed or (  # the simulator's one new field: a warning
                    check == "no_schema_drift"
                    and evaluation.metadata["new_fields"].value == "zz_new_field"
                    and evaluation.severity == dg.AssetCheckSeverity.WARN), (namespace, check)
        reconciled = {name: e[-1] for name, e in checks.items()
                      if name.startswith(f"{namespace}/daily_counts:matches_amplitude_")}
        assert len(reconciled) == 3 and all(e.passed for e in reconciled.values()), {
            n: (e.description, e.metadata["per_day"].value) for n, e in reconciled.items()}
        assert all(e.metadata["days_compared"].value > 0 for e in reconciled.values()), {
            n: e.metadata for n, e in reconciled.items()}
        fresh = checks[f"{namespace}/events:fresh"][-1]  # March's data, months behind: a warning
        assert not fresh.passed and fresh.severity == dg.AssetCheckSeverity.WARN
        assert fresh.metadata["newest_loaded_hour"].value == HOURS[-1].isoformat()
