"""The lake's object store going away in the middle of a run, through the Dagster CLI: SeaweedFS on
127.0.0.1 is stopped while a range run waits for its export, and started again afterwards. The
run ends within its bounds, naming the storage and the hours; the hours loaded before keep their
rows; a re-run once the store is back loads every hour exactly. With CI=true a missing server
fails."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from simulator import Fault, Simulator
from tests.conftest import DAY, SMALL
from tests.servers.seaweed import restartable_seaweed

ROOT = Path(__file__).resolve().parents[2]
H = timedelta(hours=1)
BEFORE = [DAY + h * H for h in (6, 7, 8)]  # loaded while the store is up
DURING = [DAY + h * H for h in (9, 10, 11)]  # the run the outage cuts
BOUND_SECONDS = 300  # the run's own bounds (S3 retries, step retries) are well inside this
KEY = "%Y-%m-%d-%H:%M"
pytestmark = pytest.mark.slow


def materialize(env: dict[str, str], hours: list) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "assets.definitions",
         "--select", "*amplitude/events", "--partition-range",
         f"{hours[0]:{KEY}}...{hours[-1]:{KEY}}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=BOUND_SECONDS)
    return process.returncode, output


def loaded(warehouse: Path) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return dict(con.execute("SELECT _upload_hour, count(*) FROM amplitude.events "
                                "GROUP BY 1").fetchall())


def test_the_store_going_away_mid_run_fails_it_in_bounds_and_a_rerun_completes(tmp_path):
    with restartable_seaweed() as (s3, outage), Simulator(SMALL) as sim:
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("AMPLITUDE_", "WAREHOUSE_", "AWS_"))}
        env.update(s3.env(), DAGSTER_HOME=str(home), AMPLITUDE_API_KEY=sim.config.api_key,
                   AMPLITUDE_SECRET_KEY=sim.config.secret_key, AMPLITUDE_BASE_URL=sim.url,
                   AMPLITUDE_START=f"{DAY:%Y-%m-%dT%H}",
                   WAREHOUSE_PATH=str(tmp_path / "warehouse.duckdb"),
                   LAKE_ROOT=f"s3://{s3.bucket}/outage/{uuid.uuid4().hex[:10]}")
        warehouse = tmp_path / "warehouse.duckdb"
        served = {h: sim.hour_count(h) for h in BEFORE + DURING}
        assert all(served.values())

        code, output = finished(materialize(env, BEFORE))
        assert code == 0, output[-3000:]
        assert loaded(warehouse) == {h: served[h] for h in BEFORE}

        sim.inject(Fault.slow(5))  # the export answers late: the store goes away meanwhile
        requests = len(sim.export_requests())
        cut = materialize(env, DURING)
        deadline = time.monotonic() + 120
        while len(sim.export_requests()) == requests and cut.poll() is None:
            assert time.monotonic() < deadline, "the run never asked for its export"
            time.sleep(0.1)
        outage.stop()
        began = time.monotonic()
        code, output = finished(cut)
        assert code != 0
        assert time.monotonic() - began < BOUND_SECONDS
        assert f"s3://{s3.bucket}/outage/" in output  # the storage, by its place
        assert "AWS_ENDPOINT_URL" in output  # what to check
        assert s3.secret not in output
        failed = [line for line in output.splitlines() if "failed" in line and "hour" in line]
        for hour in DURING:
            assert any(f"{hour:%Y-%m-%dT%H}" in line for line in failed), (hour, failed[-5:])
        assert loaded(warehouse) == {h: served[h] for h in BEFORE}  # nothing lost

        outage.start()
        code, output = finished(materialize(env, DURING))
        assert code == 0, output[-3000:]
        assert loaded(warehouse) == served
