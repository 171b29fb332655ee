"""An analyst's tool on what the demo leaves behind: the `duckdb-cli` package's CLI, read-only.

The warehouse is written by the project's DuckDB (Python); the CLI is a separate build and
release (the newest `duckdb-cli` on the registry), so this catches a storage format the 1.x
CLIs cannot read, as DuckDB 2.0's was.
"""

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from simulator import HourProfile, SimulatorConfig
from tests.conftest import DAY

ROOT = Path(__file__).resolve().parents[2]
HOURS, PER_HOUR = 4, 40
# What scripts/demo.py serves for `--hours 4 --events-per-hour 40` (its default --day is DAY).
DEMO = SimulatorConfig(profile=HourProfile(base=PER_HOUR), events_per_member=5000)
FIGURES = 'count(*), count(DISTINCT insert_id), count(DISTINCT event_type)'
pytestmark = pytest.mark.slow


def duckdb_cli() -> Path:
    beside = Path(sys.executable).parent / "duckdb"
    found = beside if beside.is_file() else shutil.which("duckdb")
    if found is None:
        message = "no duckdb CLI beside the interpreter or on PATH: pip install duckdb-cli"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(found)


def cli(*args: str) -> str:
    done = subprocess.run([str(duckdb_cli()), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("demo") / "data"
    done = subprocess.run(
        [sys.executable, "scripts/demo.py", "--hours", str(HOURS), "--events-per-hour",
         str(PER_HOUR), "--data", str(data), "--dagster-home", str(data / "dagster_home")],
        cwd=ROOT, env={**os.environ, "DAGSTER_HOME": ""}, capture_output=True, text=True,
        timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return data


def test_the_cli_opens_the_demo_warehouse_read_only_and_sees_every_event(demo_data):
    version = cli("--version").strip()
    served = sum(DEMO.hour_count(DAY + timedelta(hours=h)) for h in range(HOURS))
    warehouse = demo_data / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        python = con.execute(f"SELECT {FIGURES} FROM amplitude.events").fetchone()
    assert python is not None and python[0] == served > 0

    # Exactly what an analyst types; the default box output holds the count.
    shown = cli("-readonly", str(warehouse), "-c", "select count(*) from amplitude.events")
    assert f" {served} " in shown, (version, shown)

    rows = cli("-readonly", "-no-init", "-csv", "-noheader", str(warehouse),
               "-c", f"SELECT {FIGURES} FROM amplitude.events")
    assert tuple(int(v) for v in rows.strip().split(",")) == python, (version, rows, python)


def test_the_cli_reads_the_parquet_lake(demo_data):
    version = cli("--version").strip()
    lake = f"read_parquet('{demo_data / 'lake' / 'amplitude' / 'events'}/**/*.parquet')"
    with duckdb.connect() as con:
        python = con.execute(f"SELECT {FIGURES} FROM {lake}").fetchone()
    served = sum(DEMO.hour_count(DAY + timedelta(hours=h)) for h in range(HOURS))
    assert python is not None and python[0] == served > 0
    rows = cli("-no-init", "-csv", "-noheader", "-c", f"SELECT {FIGURES} FROM {lake}")
    assert tuple(int(v) for v in rows.strip().split(",")) == python, (version, rows, python)
