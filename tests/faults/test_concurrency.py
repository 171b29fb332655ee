"""Concurrency: other writers of the DuckDB file, and runs of the same hours at once."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest

from tests.conftest import DAY, SMALL
from tests.e2e.conftest import (
    assert_hour_matches_served,
    failure_text,
    make_project,
)
from tests.e2e.test_cli import ROOT, cli_env, expected, loaded  # noqa: F401 - cli_env: a fixture
from tests.faults.conftest import assert_cli_hours_match_served

HOUR = DAY + timedelta(hours=8)
shared = make_project(SMALL)


class Writer:
    """Another process holding the warehouse read-write, as a careless analyst session does."""

    def __init__(self, path, seconds: float) -> None:
        code = ("import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                "print('locked', flush=True); time.sleep(float(sys.argv[2]))")
        self.process = subprocess.Popen([sys.executable, "-c", code, str(path), str(seconds)],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def test_a_load_waits_for_another_writer_then_loads(shared):
    project = shared
    assert project.materialize(HOUR).success
    with Writer(project.root / "warehouse.duckdb", seconds=3):
        started = time.monotonic()
        result = project.materialize(HOUR, refetch=True)
        waited = time.monotonic() - started
    assert result.success and waited >= 2
    assert_hour_matches_served(project, HOUR)


def test_a_writer_past_the_bound_fails_the_load_clearly_and_changes_nothing(shared):
    project = shared
    assert project.materialize(HOUR).success
    project.extra_env["WAREHOUSE_LOCK_TIMEOUT_SECONDS"] = "2"
    with Writer(project.root / "warehouse.duckdb", seconds=120) as writer:
        started = time.monotonic()
        result = project.materialize(HOUR, raise_on_error=False, refetch=True)
        elapsed = time.monotonic() - started
        pid = writer.process.pid
    assert not result.success and elapsed < 30  # the bound, not Dagster's retries
    text = failure_text(result)
    assert "stayed locked by another process" in text and f"PID {pid}" in text
    assert_hour_matches_served(project, HOUR)  # the earlier load, untouched


@pytest.mark.slow
def test_separate_runs_of_the_same_and_other_hours_at_once_load_one_copy_each(cli_env):  # noqa: F811
    sim, env, tmp_path = cli_env
    assert subprocess.run([sys.executable, "-m", "dagster", "instance", "migrate"], cwd=ROOT,
                          env=env, capture_output=True, check=False).returncode == 0
    select = ["dagster", "asset", "materialize", "-m", "assets.definitions",
              "--select", "*amplitude/events", "--partition"]
    keys = ["2026-03-01-08:00", "2026-03-01-08:00", "2026-03-01-09:00", "2026-03-01-10:00"]
    runs = [subprocess.Popen([sys.executable, "-m", *select, key], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for key in keys]
    for process in runs:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
    assert loaded(tmp_path) == expected(sim, [8, 9, 10])
    # The rows themselves: one copy of each served event per hour (two runs of 08:00 at once
    # must not double it), every field as served, in DuckDB and Parquet.
    assert_cli_hours_match_served(sim, tmp_path, [8, 9, 10])
