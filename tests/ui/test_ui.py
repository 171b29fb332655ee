"""The UI an operator opens: the real webserver and daemon (``dagster dev``), checked through
GraphQL against the ``Definitions`` object, a partition run launched the way the UI launches
one, and the asset page as a real headless browser renders it.

Kept: ``tests/ui/artifacts/`` (gitignored) holds the screenshots and the services' log of the
last run; the paths are printed.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from assets.definitions import build_defs
from assets.partitions import partition_key
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import EVENTS
from tests.ui.conftest import (
    ARTIFACTS,
    DagsterUI,
    chromium_mismatch,
    load_script,
    playwright_chromium,
)

HOUR = DAY + timedelta(hours=9)
RUN_SECONDS = 120
ASSET_JOB = "__ASSET_JOB"  # the implicit job the UI launches asset materializations in

REPOSITORY = """
query Repository {
  workspaceOrError {
    __typename
    ... on PythonError { message stack }
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
          ... on RepositoryLocation {
            name
            repositories {
              name
              assetNodes {
                assetKey { path }
                assetChecksOrError {
                  __typename
                  ... on AssetChecks { checks { name assetKey { path } } }
                }
              }
              jobs { name }
              schedules { name }
              sensors { name }
              partitionSets { name pipelineName }
            }
          }
        }
      }
    }
  }
}
"""

DAEMONS = """
query Daemons {
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } }
}
"""

LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } }
    ... on PythonError { message }
  }
}
"""

RUN_ERRORS = """
query RunErrors($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      eventConnection {
        events {
          __typename
          ... on MessageEvent { message stepKey }
          ... on ExecutionStepFailureEvent { error { message } }
          ... on EngineEvent { error { message } }
          ... on RunFailureEvent { error { message } }
        }
      }
    }
  }
}
"""

MATERIALIZATIONS = """
query Materializations($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      assetMaterializations(partitions: $partitions) {
        partition
        runId
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
        }
      }
    }
  }
}
"""

SET_NUX_SEEN = "mutation { setNuxSeen }"


def key_string(path: list[str]) -> str:
    return dg.AssetKey(path).to_user_string()


def the_repository(ui: DagsterUI) -> tuple[str, dict[str, Any]]:
    """The one code location and its one repository, asserting it loaded without errors."""
    workspace = ui.graphql(REPOSITORY)["workspaceOrError"]
    assert workspace["__typename"] == "Workspace", workspace
    entries = workspace["locationEntries"]
    assert [e["name"] for e in entries] == ["amplitude_warehouse"], entries
    (entry,) = entries
    location = entry["locationOrLoadError"]
    assert entry["loadStatus"] == "LOADED", entry
    assert location["__typename"] == "RepositoryLocation", (
        f"the code location did not load: {location.get('message')}\n{location.get('stack')}")
    (repository,) = location["repositories"]
    return location["name"], repository


def listed(repository: dict[str, Any]) -> dict[str, set[str]]:
    checks = set()
    for node in repository["assetNodes"]:
        found = node["assetChecksOrError"]
        assert found["__typename"] == "AssetChecks", found
        checks |= {f"{key_string(c['assetKey']['path'])}:{c['name']}" for c in found["checks"]}
    return {
        "assets": {key_string(n["assetKey"]["path"]) for n in repository["assetNodes"]},
        "checks": checks,
        "jobs": {j["name"] for j in repository["jobs"]},
        "schedules": {s["name"] for s in repository["schedules"]},
        "sensors": {s["name"] for s in repository["sensors"]},
        "partition sets": {f"{p['name']} ({p['pipelineName']})"
                           for p in repository["partitionSets"]},
    }


def defined(defs: dg.Definitions) -> dict[str, set[str]]:
    """The same listing from the ``Definitions`` object: one partition set per partitioned job."""
    graph = defs.resolve_asset_graph()
    repository = defs.get_repository_def()
    jobs = repository.get_all_jobs()
    return {
        "assets": {k.to_user_string() for k in graph.get_all_asset_keys()},
        "checks": {f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys},
        "jobs": {j.name for j in jobs},
        "schedules": {s.name for s in repository.schedule_defs},
        "sensors": {s.name for s in repository.sensor_defs},
        "partition sets": {f"{j.name}_partition_set ({j.name})" for j in jobs
                           if j.partitions_def is not None},
    }


def wait_for_daemons(ui: DagsterUI, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        statuses = ui.graphql(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        unhealthy = [s["daemonType"] for s in statuses if s["required"] and not s["healthy"]]
        if statuses and not unhealthy:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"daemons not healthy after {seconds:.0f} s: {unhealthy}\n{ui.log_tail()}")
        time.sleep(1)


def run_failure(ui: DagsterUI, run_id: str) -> str:
    run = ui.graphql(RUN_ERRORS, {"runId": run_id})["runOrError"]
    lines = []
    for event in run.get("eventConnection", {}).get("events", []):
        if event.get("error") or event["__typename"] in ("RunFailureEvent",
                                                          "ExecutionStepFailureEvent"):
            message = (event.get("error") or {}).get("message") or event.get("message")
            lines.append(f"{event['__typename']} {event.get('stepKey')}: {message}")
    return "\n".join(lines)[-4000:]


def wait_for_run(ui: DagsterUI, run_id: str, seconds: float = RUN_SECONDS) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    seen: list[str] = []
    while True:
        run = ui.graphql(RUN, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        if not seen or seen[-1] != run["status"]:
            seen.append(run["status"])
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            assert run["status"] == "SUCCESS", (
                f"run {run_id} ended {run['status']} (statuses {seen}):\n"
                f"{run_failure(ui, run_id)}\n--- dagster dev ---\n{ui.log_tail()}")
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} still {run['status']} after {seconds:.0f} s "
                        f"(statuses {seen}):\n{ui.log_tail()}")
        time.sleep(0.5)


def warehouse_columns(path: Path) -> list[tuple[str, str]]:
    aliases = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("DESCRIBE amplitude.events").fetchall()
    return [(name, aliases.get(kind, kind)) for name, kind, *_ in rows]


def screenshot(page: Any, name: str) -> Path:
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


@pytest.mark.slow
def test_the_ui_lists_the_definitions_runs_a_partition_and_shows_the_asset_page(
    chromium: Path, dagster_ui: DagsterUI,
) -> None:
    ui = dagster_ui
    started = time.monotonic()
    defs = build_defs(ui.env)

    # 1. The code location loaded, and lists exactly what the Definitions object holds.
    location, repository = the_repository(ui)
    have, want = listed(repository), defined(defs)
    for kind in want:
        assert have[kind] == want[kind], (
            f"{kind}: the UI lists {sorted(have[kind])}, the Definitions hold {sorted(want[kind])}")
    assert want["assets"] and want["schedules"] and want["partition sets"]
    assert ASSET_JOB in have["jobs"]
    wait_for_daemons(ui)

    # 2. One partition of *amplitude/events, launched as the UI's "Materialize" does: the asset
    # job with the asset selection, its checks, and the partition tag.
    key = partition_key(HOUR)
    selection = dg.AssetSelection.assets(EVENTS).upstream().resolve(defs.resolve_asset_graph())
    checks = [c for c in defs.resolve_asset_graph().asset_check_keys if c.asset_key in selection]
    launched = ui.graphql(LAUNCH, {"executionParams": {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": repository["name"],
            "jobName": ASSET_JOB,
            "assetSelection": [{"path": k.path} for k in sorted(selection)],
            "assetCheckSelection": [{"assetKey": {"path": c.asset_key.path}, "name": c.name}
                                    for c in sorted(checks, key=str)],
        },
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]},
    }})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    run = wait_for_run(ui, run_id)
    assert {"key": "dagster/partition", "value": key} in run["tags"]
    ran = time.monotonic()

    # Its rows are in the warehouse: exactly the hour the simulator served.
    expected_rows = SMALL.hour_count(HOUR)
    assert expected_rows > 0
    with duckdb.connect(str(ui.warehouse), read_only=True) as con:
        hours = con.execute("SELECT _upload_hour, count(*) FROM amplitude.events "
                            "GROUP BY ALL").fetchall()
        loads = con.execute("SELECT rows FROM amplitude._loads").fetchall()
    assert [(h.astimezone(HOUR.tzinfo), n) for h, n in hours] == [(HOUR, expected_rows)]
    assert loads == [(expected_rows,)]
    assert [r.params["start"] for r in ui.sim.export_requests()] == [f"{HOUR:%Y%m%dT%H}"]
    found = ui.graphql(MATERIALIZATIONS, {"assetKey": {"path": EVENTS.path},
                                          "partitions": [key]})["assetNodeOrError"]
    (materialization,) = found["assetMaterializations"]
    assert (materialization["partition"], materialization["runId"]) == (key, run_id)
    metadata = {e["label"]: e for e in materialization["metadataEntries"]}
    assert metadata["dagster/row_count"]["intValue"] == expected_rows

    # 3. The asset page in a real browser.
    from playwright.sync_api import expect, sync_playwright

    assert ui.graphql(SET_NUX_SEEN)["setNuxSeen"] is True  # the first visit's newsletter dialog
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == EVENTS)
    columns = warehouse_columns(ui.warehouse)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium),
                                             args=["--no-sandbox"], headless=True)
        try:
            _, wanted = playwright_chromium()
            assert browser.version.split(".")[0] == wanted.split(".")[0], browser.version
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.set_default_timeout(30_000)
            page.goto(f"{ui.url}/assets/{'/'.join(EVENTS.path)}")

            expect(page).to_have_title(re.compile(r"amplitude / events"))
            status = page.get_by_text("Latest materialization").locator("..")
            expect(status).to_contain_text(key)  # the partition just materialized
            expect(page.get_by_text("Row count").locator("..")).to_contain_text(
                re.compile(rf"Row count\s*{expected_rows:,}(?![\d,])"))
            if spec.description:
                expect(page.get_by_text(spec.description.splitlines()[0].strip()[:60])
                       .first).to_be_visible()
            expect(page.get_by_role("dialog")).to_have_count(0)
            toggle = page.get_by_role("button", name=re.compile(r"\bDefinition\b"))
            definition = page.locator(f"[id='{toggle.get_attribute('aria-controls')}']")
            expect(definition).to_contain_text(spec.group_name or "default")
            expect(definition).to_contain_text(location)
            for kind in spec.kinds:
                expect(definition).to_contain_text(re.compile(re.escape(kind), re.IGNORECASE))

            # The column schema, as the warehouse describes the table.
            table = page.locator("table", has=page.get_by_text("Column name", exact=True))
            expect(table.locator("tbody tr")).to_have_count(len(columns))
            shown = [tuple(cell.strip() for cell in row.locator("td").all_inner_texts()[:2])
                     for row in table.locator("tbody tr").all()]
            assert shown == columns, f"UI shows {shown}, warehouse has {columns}"
            screenshot(page, "amplitude-events-asset.png")

            # The Partitions tab: one hour materialized; picking it shows its materialization.
            page.get_by_role("tab", name="Partitions").click()
            expect(page.get_by_text("Materialized (1)")).to_be_visible()
            page.get_by_placeholder("Filter by name").fill(key)
            page.get_by_text(key, exact=True).first.click()
            expect(page.get_by_text("dagster/row_count")).to_be_visible()
            detail = page.get_by_text("Metadata", exact=True).locator("..")
            expect(detail).to_contain_text(re.compile(rf"dagster/row_count\s*{expected_rows:,}"))
            expect(page.get_by_text(run_id[:8]).first).to_be_visible()
            screenshot(page, "amplitude-events-partition.png")

            # The run's page: succeeded, for that partition.
            page.goto(f"{ui.url}/runs/{run_id}")
            expect(page.get_by_text("Success", exact=True).first).to_be_visible()
            expect(page.get_by_text(f"partition: {key}")).to_be_visible()
            expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible()
            screenshot(page, "amplitude-events-run.png")
        finally:
            browser.close()
    print(f"timing: listing and run {ran - started:.1f} s, browser {time.monotonic() - ran:.1f} s")


def test_make_ui_uses_the_demo_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``make ui`` serves the project ``make demo`` loaded: same simulator config, same env."""
    demo, ui = load_script("demo"), load_script("ui")
    seen: dict[str, Any] = {}

    class Recorder:
        url = "http://127.0.0.1:9"

        def __init__(self, config: Any) -> None:
            seen["config"] = config

        def __enter__(self) -> Recorder:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    def materialize(command: list[str], env: dict[str, str], *rest: object) -> int:
        seen["env"] = env
        return 1  # stop there: no Dagster run, no summary

    monkeypatch.setattr(demo, "Simulator", Recorder)
    monkeypatch.setattr(demo, "materialize", materialize)
    data, home = tmp_path / "data", tmp_path / "home"
    assert demo.main(["--data", str(data), "--dagster-home", str(home)]) == 1
    assert seen["config"] == ui.demo_config()
    start = datetime.strptime(ui.DEMO_DAY, "%Y-%m-%d").replace(tzinfo=UTC)
    env = ui.code_location_env(ui.demo_config(), Recorder.url, start=start, data=data, home=home)
    for name in ("AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY", "AMPLITUDE_BASE_URL",
                 "AMPLITUDE_START", "WAREHOUSE_PATH", "LAKE_ROOT", "DAGSTER_HOME"):
        assert env[name] == seen["env"][name], name


def test_a_chromium_of_another_major_version_is_refused_naming_both() -> None:
    playwright_version, expected = playwright_chromium()
    major = int(expected.split(".")[0])
    assert chromium_mismatch(f"{major}.0.1.2", expected, playwright_version) is None
    message = chromium_mismatch(f"{major - 6}.0.7871.100", expected, playwright_version)
    assert message is not None
    assert f"Chromium {major - 6}.0.7871.100" in message and f"Chromium {expected}" in message
    assert f"playwright {playwright_version}" in message
