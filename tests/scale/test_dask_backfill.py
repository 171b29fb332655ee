"""48 upload hours backfilled through Dagster on a Dask cluster of two workers, the way a team
that outgrew one machine runs it: the lake on S3 (SeaweedFS), the warehouse in DuckLake with its
catalog on PostgreSQL, the Dagster instance on PostgreSQL (deploy/dagster.yaml). Every server is a
real one on 127.0.0.1.

Four runs of 12 hours each start at once, so the two workers (one thread each) share the steps;
which worker ran a step is read from the step's events, whose PID is the worker process's.
The ``local`` case runs the same on a shared local disk and the DuckDB file: it checks the Dask
plumbing apart from the object-storage and DuckLake modes.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.partitions import partition_key
from simulator import Simulator
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import served_rows, warehouse_rows
from tests.servers.postgres import PostgresDatabase
from tests.servers.seaweed import SeaweedS3

ROOT = Path(__file__).resolve().parents[2]
HOURS = [DAY + timedelta(hours=h) for h in range(48)]
RUNS = [HOURS[i:i + 12] for i in range(0, 48, 12)]
FETCH, NORMALIZE = "amplitude__raw_export", "amplitude__events_parquet"
RUN_SECONDS = 420

pytestmark = [pytest.mark.slow, pytest.mark.timeout(720)]


def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home


def start_runs(env: dict[str, str]) -> list[tuple[list[datetime], subprocess.Popen[str]]]:
    return [(hours, subprocess.Popen(
        [sys.executable, "-m", "tests.scale.dask_job", partition_key(hours[0]),
         partition_key(hours[-1])],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for hours in RUNS]


def finish_runs(runs, instance: dg.DagsterInstance) -> list[str]:
    run_ids, failures = [], []
    for hours, process in runs:
        try:
            out, err = process.communicate(timeout=RUN_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            failures.append(f"run of {partition_key(hours[0])} timed out:\n{err[-3000:]}")
            continue
        found = [w.split("=", 1)[1] for w in out.split() if w.startswith("run_id=")]
        run_ids += found
        if process.returncode != 0:
            failures.append(f"run of {partition_key(hours[0])}...{partition_key(hours[-1])} "
                            f"exited {process.returncode}:\n{step_errors(instance, found)}"
                            f"\n{err[-3000:]}")
    assert not failures, "\n\n".join(failures)
    return run_ids


def step_errors(instance: dg.DagsterInstance, run_ids: list[str]) -> str:
    lines = []
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            error = entry.dagster_event.event_specific_data.error
            lines.append(f"{entry.step_key}: {error.to_string() if error else entry.message}")
    return "\n".join(lines)


def steps_by_worker(instance: dg.DagsterInstance, run_ids: list[str],
                    worker_pids: dict[str, int]) -> dict[str, set[str]]:
    """Worker name -> the step keys it started, from each STEP_START event's PID."""
    names = {pid: name for name, pid in worker_pids.items()}
    ran: dict[str, set[str]] = defaultdict(set)
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START):
            pid = entry.dagster_event.pid
            ran[names.get(pid, f"pid {pid} (not a worker)")].add(entry.step_key)
    return dict(ran)


def pool_overlaps(instance: dg.DagsterInstance, run_ids: list[str], step_key: str) -> list:
    """Pairs of ``step_key`` steps of different runs that ran at once (none, if its pool of one
    slot holds on Dask)."""
    spans = []
    for run_id in run_ids:
        times = {entry.dagster_event.event_type: entry.timestamp
                 for entry in instance.all_logs(run_id) if entry.step_key == step_key
                 and entry.dagster_event is not None}
        spans.append((times[dg.DagsterEventType.STEP_START],
                      times[dg.DagsterEventType.STEP_SUCCESS], run_id))
    spans.sort()
    return [(a[2], b[2]) for a, b in itertools.pairwise(spans) if b[0] < a[1]]


def check_rows(sim: Simulator, con: duckdb.DuckDBPyConnection) -> None:
    """What the warehouse holds is what the simulator served, hour by hour, field for field."""
    total = 0
    for hour in HOURS:
        expected = served_rows(sim, hour)
        loaded = warehouse_rows(con, hour)
        assert len(loaded) == len(expected) == sim.hour_count(hour), hour
        assert loaded == expected, hour
        total += len(expected)
    (count,) = con.execute("SELECT count(*) FROM amplitude.events").fetchone()
    assert count == total > 0


def ducklake_reader(catalog: str, s3: SeaweedS3) -> duckdb.DuckDBPyConnection:
    from pipeline import ducklake, engine, sql

    con = engine.connect(extensions=("httpfs",))
    con.execute(
        "CREATE SECRET (TYPE s3, "
        f"KEY_ID {sql.literal(s3.key_id)}, SECRET {sql.literal(s3.secret)}, "
        f"ENDPOINT {sql.literal(s3.host_port)}, REGION {sql.literal(s3.region)}, "
        "URL_STYLE 'path', USE_SSL false)")
    ducklake.attach(con, ducklake.Catalog.parse(catalog), None)
    con.execute("SET TimeZone = 'UTC'")
    return con


@pytest.mark.parametrize("mode", ["s3-ducklake", "local"])
def test_a_48_hour_backfill_on_two_dask_workers(mode, tmp_path, postgres_dsn: PostgresDatabase,
                                                 request, dask_cluster) -> None:
    started = time.monotonic()
    home = dagster_home(tmp_path)
    with Simulator(SMALL) as sim:
        env = {
            "DAGSTER_HOME": str(home), **postgres_dsn.env(),
            "AMPLITUDE_API_KEY": sim.config.api_key,
            "AMPLITUDE_SECRET_KEY": sim.config.secret_key,
            "AMPLITUDE_BASE_URL": sim.url,
            "AMPLITUDE_START": f"{DAY - timedelta(days=1):%Y-%m-%dT%H}",
            "LIMITS_PATH": str(tmp_path / "limits.sqlite"),  # one machine here; see docs
            "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
            "DAGSTER_EXECUTOR": "dask",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        if mode == "s3-ducklake":
            s3: SeaweedS3 = request.getfixturevalue("seaweed_s3")
            catalog = f"postgres:{postgres_dsn.server.create_database().dsn}"
            env |= {**s3.env(), "LAKE_ROOT": f"s3://{s3.bucket}/{uuid.uuid4().hex}/lake",
                    "WAREHOUSE_CATALOG": catalog}
        else:
            env["LAKE_ROOT"] = str(tmp_path / "lake")
        cluster = dask_cluster(env=env)
        env = {**os.environ, **env, "DASK_SCHEDULER_ADDRESS": cluster.address,
               "PYTHONPATH": str(ROOT)}
        print(f"servers up in {time.monotonic() - started:.1f} s")

        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the instance reads DAGSTER_HOME and DAGSTER_PG_* from here
        try:
            with dg.DagsterInstance.get() as instance:
                instance.run_storage.optimize_for_webserver  # noqa: B018  (created once, here)
                backfill = time.monotonic()
                run_ids = finish_runs(start_runs(env), instance)
                print(f"4 runs of 12 hours in {time.monotonic() - backfill:.1f} s")
                assert len(run_ids) == len(RUNS)
                ran = steps_by_worker(instance, run_ids, cluster.worker_pids())
                print(f"steps by worker: {ran}")
                for worker in cluster.workers:
                    assert {FETCH, NORMALIZE} <= ran.get(worker, set()), (worker, ran)
                assert set(ran) == set(cluster.workers), ran
                # amplitude_export has one slot (deploy/dagster.yaml): fetches never overlap.
                assert pool_overlaps(instance, run_ids, FETCH) == []
                for run_id in run_ids:
                    run = instance.get_run_by_id(run_id)
                    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

        if mode == "s3-ducklake":
            from pyarrow import fs

            lake = env["LAKE_ROOT"].removeprefix("s3://")
            objects = s3.filesystem().get_file_info(fs.FileSelector(lake, recursive=True))
            assert any(o.path.endswith(".parquet") for o in objects), "no Parquet on S3"
            assert not (tmp_path / "lake").exists() and not (tmp_path / "warehouse.duckdb").exists()
            con = ducklake_reader(catalog, s3)
            files = [row[0] for row in con.execute(
                "SELECT data_file FROM ducklake_list_files('warehouse', 'events', "
                "schema => 'amplitude')").fetchall()]
            assert files and all(f.startswith(f"s3://{lake}/") for f in files), files[:3]
        else:
            con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
            con.execute("SET TimeZone = 'UTC'")
        with con:
            check_rows(sim, con)
    print(f"{mode}: {time.monotonic() - started:.1f} s in all "
          f"({datetime.now(UTC):%H:%M:%S} UTC)")
