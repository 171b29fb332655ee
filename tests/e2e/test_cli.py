"""The commands a data engineer types: the Dagster CLI on the code location, and the README demo."""

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from simulator import Simulator
from tests.conftest import DAY, SMALL

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run(args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture
def cli_env(tmp_path):
    with Simulator(SMALL) as sim:
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "AMPLITUDE_API_KEY": sim.config.api_key,
            "AMPLITUDE_SECRET_KEY": sim.config.secret_key,
            "AMPLITUDE_BASE_URL": sim.url,
            "AMPLITUDE_START": "2026-02-28T00",
            "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
            "LAKE_ROOT": str(tmp_path / "lake"),
        }
        yield sim, env, tmp_path


def loaded(tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        return dict(con.execute("SELECT strftime(_upload_hour AT TIME ZONE 'UTC', '%H'), count(*) "
                                "FROM amplitude.events GROUP BY 1").fetchall())


def expected(sim, hours):
    return {f"{h:02d}": sim.hour_count(DAY.replace(hour=h)) for h in hours
            if sim.hour_count(DAY.replace(hour=h))}


def test_workspace_loads_the_code_location(cli_env):
    _, env, _ = cli_env
    done = run(["dagster", "definitions", "validate", "-w", "workspace.yaml"], env)
    assert done.returncode == 0, done.stderr[-2000:]


def test_materialize_a_partition_and_a_range_from_the_cli(cli_env):
    sim, env, tmp_path = cli_env
    select = ["dagster", "asset", "materialize", "-m", "assets.definitions",
              "--select", "*amplitude/events"]
    one = run([*select, "--partition", "2026-03-01-09:00"], env)
    assert one.returncode == 0, one.stderr[-3000:]
    assert loaded(tmp_path) == expected(sim, [9])
    several = run([*select, "--partition-range", "2026-03-01-00:00...2026-03-01-05:00"], env)
    assert several.returncode == 0, several.stderr[-3000:]
    assert loaded(tmp_path) == expected(sim, [0, 1, 2, 3, 4, 5, 9])
    assert [r.params["end"] for r in sim.export_requests()] == ["20260301T09", "20260301T05"]


def test_concurrent_backfills_of_overlapping_ranges_both_succeed(cli_env):
    sim, env, tmp_path = cli_env
    # Two processes creating a fresh SQLite instance at once race on its schema; an instance in
    # use is created once, so create it first, as `make demo` and `dagster dev` do.
    assert run(["dagster", "instance", "migrate"], env).returncode == 0
    select = ["dagster", "asset", "materialize", "-m", "assets.definitions",
              "--select", "*amplitude/events", "--partition-range"]
    runs = [subprocess.Popen([sys.executable, "-m", *select, span], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for span in ("2026-03-01-00:00...2026-03-01-11:00",
                         "2026-03-01-06:00...2026-03-01-17:00")]
    for process in runs:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
    assert loaded(tmp_path) == expected(sim, range(18))


def demo(data, *extra):
    return subprocess.run(
        [sys.executable, "scripts/demo.py", "--hours", "4", "--events-per-hour", "40",
         "--data", str(data), "--dagster-home", str(data / "dagster_home"), *extra],
        cwd=ROOT, env={**os.environ, "DAGSTER_HOME": ""}, capture_output=True, text=True,
        timeout=300, check=False)


def stage(stdout, name):
    """The figures of a demo stage line: ``<name>  4 hours, 1,234 rows, ...``."""
    found = re.search(rf"^{re.escape(name)} +(\d+) hours?, (.*)$", stdout, re.MULTILINE)
    assert found, f"no stage line for {name} in:\n{stdout}"
    return int(found.group(1)), found.group(2)


def rows(figures):
    return int(re.search(r"([\d,]+) rows?\b", figures).group(1).replace(",", ""))


def test_the_readme_demo_runs_end_to_end(tmp_path):
    done = demo(tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 export request(s) served" in done.stdout
    assert "Rows per upload date" in done.stdout and "Loads ledger" in done.stdout
    with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM amplitude._loads").fetchone() == (4,)
        (warehouse_rows,) = con.execute("SELECT count(*) FROM amplitude.events").fetchone()
    # A tool's output, not a debug log: a start line, a line per stage, the summary.
    assert "DEBUG" not in done.stdout and "DEBUG" not in done.stderr
    log = tmp_path / "data" / "demo.log"
    assert done.stdout.splitlines()[0].endswith(f"full log: {log}")
    hours, figures = stage(done.stdout, "amplitude/raw_export")
    assert hours == 4 and re.match(r"1 export request, ", figures), figures
    for name in ("amplitude/events_parquet", "amplitude/events"):
        hours, figures = stage(done.stdout, name)
        assert (hours, rows(figures)) == (4, warehouse_rows), figures
        assert re.search(r"step \d+\.\d\d s$", figures), figures
    full = log.read_text()
    assert " - dagster - DEBUG - " in full and "RUN_SUCCESS" in full
    assert full.count("STEP_SUCCESS") == 4  # the three assets and the freshness check


def test_a_failed_demo_shows_the_log_tail_and_exits_non_zero(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "lake").write_text("a file where the lake folder goes")  # landing cannot mkdir
    done = demo(data)
    assert done.returncode != 0
    log = data / "demo.log"
    assert re.search(r"^amplitude/raw_export +FAILED", done.stdout, re.MULTILINE), done.stdout
    assert "Rows per upload date" not in done.stdout and "DEBUG" not in done.stdout
    assert f"last 30 lines of {log}" in done.stderr and f"full log: {log}" in done.stderr
    assert "STEP_FAILURE" in log.read_text()
