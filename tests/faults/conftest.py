"""The fault matrix's machinery: ``tests/e2e``'s projects with a client that gives up fast, and
the outcomes every case is judged by.

A fault case materializes hours through Dagster against the simulator with the fault injected,
then holds the result against the simulator: exact rows, or a clear failure that names the hour
and the cause, leaks no credential and leaves nothing partial.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from pipeline.configuration import credentials
from simulator import Simulator
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import Project, assert_hour_matches_served, make_project

H = timedelta(hours=1)
BUSY = DAY + 8 * H  # 62 events: 3 members (SMALL: 25 events a member)
assert SMALL.hour_count(BUSY) > 2 * SMALL.events_per_member

# Timeouts and backoff small enough that three attempts at a hung server take seconds; the
# simulator answers a test-sized window in milliseconds, so 1 s is far from a false timeout.
FAST = {"connect_timeout_seconds": 1.0, "read_timeout_seconds": 1.0, "max_attempts": 3,
        "max_retry_seconds": 60.0, "base_delay_seconds": 0.01}


@dataclass
class FaultProject(Project):
    """A ``Project`` whose export client uses ``FAST`` (or ``amplitude_config``)."""

    amplitude_config: dict[str, Any] | None = None

    @classmethod
    def of(cls, project: Project, **config: Any) -> FaultProject:
        return cls(project.sim, project.root, project.instance, project.extra_env,
                   project.lake_root, amplitude_config={**FAST, **config})

    def defs(self) -> dg.Definitions:
        defs = super().defs()
        resources = dict(defs.resources)
        built = resources["amplitude"]  # rebuilt: Dagster keeps a resource's config from __init__
        fields = {name: getattr(built, name) for name in type(built).model_fields}
        resources["amplitude"] = type(built)(**{**fields, **(self.amplitude_config or {})})
        return dg.Definitions(assets=defs.assets, resources=resources)


_small = make_project(SMALL)
_capped = make_project(replace(SMALL, size_cap_bytes=2_000))  # every busy hour is over it


@pytest.fixture
def fault_project(_small) -> FaultProject:
    yield (project := FaultProject.of(_small))
    assert project.sim.errors == []


@pytest.fixture
def capped_project(_capped) -> FaultProject:
    return FaultProject.of(_capped)


@pytest.fixture(scope="session")
def _loaded_busy(tmp_path_factory) -> Path:
    """A lake and warehouse holding BUSY, loaded once per test process (a run costs seconds)."""
    root = tmp_path_factory.mktemp("loaded-busy")
    with Simulator(SMALL) as sim, dg.instance_for_test() as instance, \
            pytest.MonkeyPatch.context() as env:
        project = FaultProject.of(Project(sim, root, instance))
        for name, value in project.env.items():
            env.setenv(name, value)
        assert project.materialize(BUSY).success
    return root


@pytest.fixture
def loaded_project(fault_project, _loaded_busy) -> FaultProject:
    """``fault_project`` with BUSY loaded already, as a first run against the same simulated
    project would have left it (the simulator's data depends on its config alone)."""
    shutil.copytree(_loaded_busy, fault_project.root, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".limits.sqlite*"))
    assert len(hour_state(fault_project, BUSY).rows) == fault_project.sim.hour_count(BUSY)
    return fault_project


# ---- outcomes ----------------------------------------------------------------------------------

def run_text(project: Project, result: dg.ExecuteInProcessResult) -> str:
    """Everything the run recorded: log lines, Dagster events, metadata, errors."""
    records = project.instance.get_records_for_run(result.run_id).records
    return "\n".join(str(r.event_log_entry) for r in records)


def failures(result: dg.ExecuteInProcessResult) -> str:
    """The run's step failures, each with its causes."""
    return "\n".join(e.event_specific_data.error.to_string()
                     for e in result.get_step_failure_events())


def assert_no_secrets(project: Project, *texts: str) -> None:
    """No credential the project reads (``pipeline.settings.credentials()``), nor the Basic token
    made of them, appears in ``texts``."""
    env = {**os.environ, **project.env}
    values = {name: env[name] for name in credentials() if env.get(name)}  # unset: cannot leak
    key, secret = env["AMPLITUDE_API_KEY"], env["AMPLITUDE_SECRET_KEY"]
    values["the Basic token"] = base64.b64encode(f"{key}:{secret}".encode()).decode()
    for text in texts:
        for name, value in values.items():
            assert value not in text, f"{name} shows"


@dataclass(frozen=True)
class HourState:
    """What the lake and the warehouse hold for one hour."""

    manifest: str | None
    versions: tuple[str, ...]  # landing version folders
    parquet: bytes | None
    rows: tuple[tuple, ...]  # amplitude.events for the hour, by uuid (none: no warehouse)
    ledger: tuple[tuple, ...]  # amplitude._loads for the hour


def hour_state(project: Project, hour: datetime) -> HourState:
    lake = project.lake
    folder = lake.landing_dir(hour)
    versions = tuple(sorted(p.name for p in folder.iterdir() if p.name.startswith("v"))
                     if folder.exists() else ())
    parquet = lake.events_file(hour)
    rows: tuple[tuple, ...] = ()
    ledger: tuple[tuple, ...] = ()
    if (project.root / "warehouse.duckdb").exists():
        with project.warehouse() as con:
            rows = tuple(con.execute("SELECT * FROM amplitude.events WHERE _upload_hour = ? "
                                     "ORDER BY uuid", [hour]).fetchall())
            ledger = tuple(con.execute("SELECT * FROM amplitude._loads WHERE upload_hour = ?",
                                       [hour]).fetchall())
    return HourState(lake.manifest(folder), versions,
                     parquet.read_bytes() if parquet is not None else None, rows, ledger)


def assert_no_leftovers(project: Project) -> None:
    """No staging folder, partial download or temporary file of the run in the lake."""
    lake = project.root / "lake"
    left = [p for p in lake.rglob("*") if ".staging-" in p.name or p.suffix in (".part", ".tmp")
            or (p.parent.name == ".scratch" and any(p.iterdir()))] if lake.exists() else []
    assert left == []


def assert_cli_hours_match_served(sim: Simulator, root: Path, hours: list[int]) -> None:
    """For a CLI run's lake and warehouse under ``root`` (``tests/e2e/test_cli.py``'s
    ``cli_env``): each hour of DAY in ``hours`` holds exactly the rows the simulator served, field
    by field, one copy of each, in DuckDB and in its Parquet file."""
    project = Project(sim, root)  # the same paths: root/warehouse.duckdb, root/lake
    for hour in hours:
        assert_hour_matches_served(project, DAY.replace(hour=hour))


def assert_exact(project: Project, *hours: datetime) -> None:
    for hour in hours:
        assert_hour_matches_served(project, hour)
    assert_no_leftovers(project)


def assert_failed_cleanly(project: Project, result: dg.ExecuteInProcessResult, hour: datetime,
                          before: HourState, *causes: str) -> str:
    """The run failed; a step failure names the hour (as partitions are named) and matches every
    pattern in ``causes``; no credential shows anywhere in the run; the hour's landing, Parquet
    file, rows and ledger are what they were. Returns the failures' text."""
    assert not result.success
    text = failures(result)
    assert f"upload hour {hour:%Y-%m-%dT%H}" in text, text
    for cause in causes:
        assert re.search(cause, text), f"{cause!r} not in: {text}"
    assert_no_secrets(project, text, run_text(project, result))
    assert hour_state(project, hour) == before
    assert_no_leftovers(project)
    return text
