"""The fault matrix for the Mixpanel source (tests/faults/README.md, "Mixpanel"): each case
materializes a day through Dagster against the Mixpanel simulator with one fault injected, and
holds the outcome against what the simulator served: exact rows, or a clear failure that names
the days and the cause, leaks no credential and leaves the day as it was."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, replace
from datetime import date

import dagster as dg
import pytest

from pipeline.configuration import credentials
from pipeline.mixpanel import landing
from simulator import MixpanelFault
from tests.e2e.test_mixpanel import (
    FALL,
    LOCAL,
    MixpanelProject,
    assert_day_matches_served,
    make_project,
)
from tests.faults.conftest import failures, run_text

WINDOW = f"{FALL}..{FALL}"
_project = make_project(replace(LOCAL, events_per_day=60))


@pytest.fixture
def project(_project) -> MixpanelProject:
    return _project


@pytest.fixture
def loaded(project) -> MixpanelProject:
    assert project.materialize(FALL).success
    project.sim.reset_log()
    return project


@dataclass(frozen=True)
class DayState:
    manifest: str | None
    versions: tuple[str, ...]
    parquet: bytes | None
    rows: tuple[tuple, ...]
    ledger: tuple[tuple, ...]


def day_state(project: MixpanelProject, day: date) -> DayState:
    lake = project.lake
    folder = landing.landing_dir(lake, day)
    versions = tuple(sorted(p.name for p in folder.iterdir() if p.name.startswith("v"))
                     if folder.exists() else ())  # type: ignore[union-attr]
    parquet = landing.events_file(lake, day)
    rows: tuple[tuple, ...] = ()
    ledger: tuple[tuple, ...] = ()
    if (project.root / "warehouse.duckdb").exists():
        with project.warehouse() as con:
            rows = tuple(con.execute("SELECT * FROM mixpanel.events WHERE _day = ? ORDER BY "
                                     "ALL", [day]).fetchall())
            ledger = tuple(con.execute("SELECT * FROM mixpanel._loads WHERE day = ?",
                                       [day]).fetchall())
    return DayState(lake.manifest(folder), versions,
                    parquet.read_bytes() if parquet is not None else None,  # type: ignore[union-attr]
                    rows, ledger)


def assert_no_secrets(project: MixpanelProject, *texts: str) -> None:
    env = project.env
    values = {name: env[name] for name in credentials() if env.get(name)}
    user, secret = env["MIXPANEL_SERVICE_ACCOUNT_USERNAME"], env["MIXPANEL_SERVICE_ACCOUNT_SECRET"]
    values["the Basic token"] = base64.b64encode(f"{user}:{secret}".encode()).decode()
    values["the simulator's secret"] = project.sim.config.secret
    for text in texts:
        for name, value in values.items():
            assert value not in text, f"{name} shows"


def assert_no_leftovers(project: MixpanelProject) -> None:
    lake = project.root / "lake"
    left = [p for p in lake.rglob("*") if ".staging-" in p.name or p.suffix in (".part", ".tmp")
            or (p.parent.name == ".scratch" and any(p.iterdir()))] if lake.exists() else []
    assert left == []


def assert_failed_cleanly(project: MixpanelProject, result: dg.ExecuteInProcessResult,
                          before: DayState, *causes: str) -> str:
    assert not result.success
    text = failures(result)
    assert WINDOW in text, text
    for cause in causes:
        assert re.search(cause, text), f"{cause!r} not in: {text}"
    assert_no_secrets(project, text, run_text(project, result))  # type: ignore[arg-type]
    assert day_state(project, FALL) == before
    assert_no_leftovers(project)
    return text


@pytest.mark.parametrize("fault, why", [
    (MixpanelFault.terminated_early(), "terminated early"),
    (MixpanelFault.cut_body(0.6), "cut short"),
    (MixpanelFault.cut_gzip(), "gzip stream ends before its end"),
    (MixpanelFault.no_final_newline(), "no final newline"),
    (MixpanelFault.split_line(), "is not one JSON object"),
], ids=["terminated-early", "cut-body", "cut-gzip", "no-final-newline", "split-line"])
def test_a_broken_body_is_fetched_again_to_exact_rows(project, caplog, fault, why):
    project.sim.inject(fault)
    result = project.materialize(FALL)
    assert result.success
    assert len(project.sim.export_requests()) == 2
    assert why in caplog.text  # the retry's warning says why
    assert_day_matches_served(project, FALL)
    assert_no_leftovers(project)


def test_lines_split_across_chunks_are_read_whole(project):
    project.sim.inject(MixpanelFault.chunked(size=331))
    assert project.materialize(FALL).success
    assert len(project.sim.export_requests()) == 1
    assert_day_matches_served(project, FALL)


def test_a_body_that_stays_broken_fails_the_window_and_keeps_the_previous_load(loaded):
    before = day_state(loaded, FALL)
    loaded.sim.inject(*[MixpanelFault.terminated_early()] * 3)
    result = loaded.materialize(FALL, raise_on_error=False)
    assert_failed_cleanly(loaded, result, before, "terminated early", "after 3 attempts",
                          "nothing of .* was kept")


def test_a_body_that_stays_broken_on_a_first_fetch_lands_nothing(project):
    project.sim.inject(*[MixpanelFault.split_line()] * 3)
    result = project.materialize(FALL, raise_on_error=False)
    assert_failed_cleanly(project, result, DayState(None, (), None, (), ()),
                          "is not one JSON object")


def test_429_waits_the_seconds_retry_after_gives(project):
    project.sim.inject(MixpanelFault.status(429, retry_after="1"))
    result = project.materialize(FALL)
    assert result.success
    first, second = project.sim.export_requests()
    assert first.status == 429 and second.status == 200
    assert second.start - first.start >= 1.0
    assert_day_matches_served(project, FALL)


def test_the_client_keeps_under_three_queries_a_second(project):
    """Five one-day windows in one run: the shared limiter spaces them, so the simulator, which
    enforces Mixpanel's 3 a second, never answers 429."""
    project.mixpanel_config["max_window_days"] = 1
    assert project.materialize(date(2026, 10, 28), FALL).success
    requests = project.sim.export_requests()
    assert [r.status for r in requests] == [200] * 5
    starts = [r.start for r in requests]
    assert all(later - earlier >= 1.0 for earlier, later in zip(starts, starts[3:],
                                                                  strict=False))


@pytest.mark.parametrize("env, status, names", [
    ({"MIXPANEL_SERVICE_ACCOUNT_SECRET": "wrong-7c1d-credential"}, 401,
     "MIXPANEL_SERVICE_ACCOUNT_USERNAME, MIXPANEL_SERVICE_ACCOUNT_SECRET and MIXPANEL_PROJECT_ID"),
    ({"MIXPANEL_PROJECT_ID": "999"}, 403, "MIXPANEL_PROJECT_ID"),
], ids=["401-wrong-secret", "403-another-project"])
@pytest.mark.parametrize("first_fetch", [True, False], ids=["first-fetch", "refetch"])
def test_refused_credentials_fail_at_once_naming_the_variables(project, monkeypatch, env,
                                                               status, names, first_fetch):
    if not first_fetch:
        assert project.materialize(FALL).success
    project.sim.reset_log()
    before = day_state(project, FALL)
    project.extra_env.update(env)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = project.materialize(FALL, raise_on_error=False)
    text = assert_failed_cleanly(project, result, before, f"refused the credentials \\({status}\\)",
                                 names, "MIXPANEL_REGION or MIXPANEL_BASE_URL")
    assert "wrong-7c1d-credential" not in text + run_text(project, result)  # type: ignore[arg-type]
    assert len(project.sim.export_requests()) == 1  # not retried


def test_a_400_fails_at_once_naming_what_to_check(loaded):
    before = day_state(loaded, FALL)
    loaded.sim.inject(MixpanelFault.status(400, body='{"error": "bad from_date"}'))
    result = loaded.materialize(FALL, raise_on_error=False)
    assert_failed_cleanly(loaded, result, before, r"refused the request \(400\)", "bad from_date",
                          "MIXPANEL_PROJECT_ID", "MIXPANEL_TIMESTAMPS")
    assert len(loaded.sim.export_requests()) == 1


def test_connection_refused_fails_after_the_attempts(project, monkeypatch):
    project.extra_env["MIXPANEL_BASE_URL"] = "http://127.0.0.1:9"
    monkeypatch.setenv("MIXPANEL_BASE_URL", "http://127.0.0.1:9")
    result = project.materialize(FALL, raise_on_error=False)
    assert_failed_cleanly(project, result, DayState(None, (), None, (), ()),
                          "after 3 attempts", "ConnectError")


def test_a_failed_window_in_a_range_keeps_the_days_landed_before_it(project):
    """Windows of one day: the second stays broken; the first stays landed, the failure says
    so, and nothing is loaded by the failed run."""
    project.mixpanel_config["max_window_days"] = 1
    first = date(2026, 10, 31)
    project.sim.inject(MixpanelFault.chunked(size=1 << 20),  # a harmless first answer
                       *[MixpanelFault.terminated_early()] * 3)
    result = project.materialize(first, FALL, raise_on_error=False)
    assert_failed_cleanly(project, result, DayState(None, (), None, (), ()),
                          "1 of 2 day\\(s\\) failed \\(the other 1 did not\\)",
                          "terminated early")
    assert landing.landed(project.lake, first) is not None  # on disk, for the next run
    assert landing.landed(project.lake, FALL) is None
