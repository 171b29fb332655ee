"""The real UI: ``dagster dev`` (webserver and daemon) on 127.0.0.1 over the simulator, and
Debian's chromium driven by playwright.

Artifacts (screenshots, the services' log) are kept in ``tests/ui/artifacts/`` (gitignored);
the test prints their paths.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from simulator import Simulator
from tests.conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
START = datetime(2026, 2, 28, tzinfo=UTC)  # AMPLITUDE_START, as in tests/e2e/test_cli.py
STARTUP_SECONDS = 120


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (scripts/ is not a package)."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def playwright_chromium() -> tuple[str, str]:
    """(playwright's version, the Chromium version it was built for), from its browsers.json."""
    from importlib.metadata import version

    import playwright

    browsers = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    entries = json.loads(browsers.read_text())["browsers"]
    chromium = next(b["browserVersion"] for b in entries if b["name"] == "chromium")
    return version("playwright"), chromium


def installed_chromium(executable: Path) -> str:
    """The version ``chromium --version`` prints (Debian's wrapper script may warn on stderr)."""
    done = subprocess.run([str(executable), "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    found = re.search(r"(\d+)\.(\d+)\.(\d+)\.(\d+)", done.stdout)
    if not found:
        pytest.fail(f"`{executable} --version` printed no version: {done.stdout!r} "
                    f"{done.stderr[-500:]!r}")
    return found.group(0)


def chromium_mismatch(found: str, expected: str, playwright_version: str) -> str | None:
    """Why ``found`` cannot serve a playwright built for Chromium ``expected``, if it cannot."""
    if found.split(".")[0] == expected.split(".")[0]:
        return None
    return (f"{CHROMIUM} is Chromium {found}, but playwright {playwright_version} expects Chromium "
            f"{expected} (major {expected.split('.')[0]}): install the matching chromium "
            "(scripts/test_parts.sh does, with apt) or pin the playwright release built for "
            "this one")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium at the major version playwright expects; scripts/test_parts.sh installs it.

    Missing: fails under CI=true, skips elsewhere. A different major version always fails."""
    if not CHROMIUM.exists():
        reason = (f"{CHROMIUM} is missing: install Debian's chromium (apt-get update && "
                  "apt-get install -y chromium, as scripts/test_parts.sh does)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    playwright_version, expected = playwright_chromium()
    mismatch = chromium_mismatch(installed_chromium(CHROMIUM), expected, playwright_version)
    if mismatch:
        pytest.fail(mismatch)
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GraphQLError(AssertionError):
    pass


@dataclass
class DagsterUI:
    """A running ``dagster dev`` on 127.0.0.1 and the simulator its code location talks to."""

    url: str
    env: dict[str, str]
    sim: Simulator
    warehouse: Path
    log: Path
    process: subprocess.Popen[str]

    def graphql(self, query: str, variables: dict[str, Any] | None = None,
                timeout: float = 60) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/graphql", timeout=timeout,
                              json={"query": query, "variables": variables or {}})
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(json.dumps(body["errors"], indent=1)[:4000])
        return body["data"]

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


LOCATIONS = """
query Locations {
  workspaceOrError {
    __typename
    ... on PythonError { message }
    ... on Workspace { locationEntries { name loadStatus } }
  }
}
"""


def wait_until_loaded(ui: DagsterUI, seconds: float = STARTUP_SECONDS) -> None:
    """Until the webserver answers and no code location is still loading."""
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        if ui.process.poll() is not None:
            pytest.fail(f"dagster dev exited with {ui.process.returncode} while starting:\n"
                        f"{ui.log_tail()}")
        try:
            workspace = ui.graphql(LOCATIONS, timeout=10)["workspaceOrError"]
        except (httpx.HTTPError, GraphQLError, ValueError) as error:
            last = error
        else:
            last = workspace
            entries = workspace.get("locationEntries") or []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        time.sleep(0.5)
    pytest.fail(f"the UI at {ui.url} did not load within {seconds:.0f} s (last: {last}):\n"
                f"{ui.log_tail()}")


@pytest.fixture
def dagster_ui(tmp_path: Path) -> Iterator[DagsterUI]:
    """The simulator, then ``dagster dev -w workspace.yaml`` on a free port of 127.0.0.1 with a
    temporary DAGSTER_HOME holding the repo's dagster.yaml (telemetry off); both stopped after,
    and no process of dagster dev's group left behind."""
    ui_script = load_script("ui")
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "dagster-dev.log"
    home = ui_script.dagster_home(tmp_path / "dagster_home")
    sim = Simulator(SMALL).start()
    process = None
    try:
        env = ui_script.code_location_env(SMALL, sim.url, start=START, data=tmp_path, home=home)
        port = free_port()
        with log_path.open("w") as log:
            process = ui_script.start_dagster_dev(env, port=port, log=log)
        ui = DagsterUI(url=f"http://127.0.0.1:{port}", env=env, sim=sim,
                       warehouse=tmp_path / "warehouse.duckdb", log=log_path, process=process)
        print(f"dagster dev (pid {process.pid}) at {ui.url}; its log: {log_path}")
        started = time.monotonic()
        wait_until_loaded(ui)
        print(f"dagster dev loaded the code location in {time.monotonic() - started:.1f} s")
        yield ui
    finally:
        try:
            if process is not None:
                started = time.monotonic()
                forced = ui_script.stop_dagster_dev(process)
                left = ui_script.group_members(process.pid)
                print(f"dagster dev stopped in {time.monotonic() - started:.1f} s"
                      + (f"; had to signal {forced}" if forced else ""))
                assert not left, f"processes of dagster dev's group still running: {left}"
                assert not forced, (f"dagster dev exited but left {forced} running (then "
                                    f"killed):\n{log_path.read_text()[-3000:]}")
        finally:
            sim.stop()

