"""Settings in one place: docs/configuration.md is what the models say, every variable the
code reads goes through a settings model, and every secret is known to the secrets test."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline.configuration import credentials, main

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {ROOT / "pipeline" / "settings.py"}  # the one reader of the environment


def test_the_configuration_page_is_not_stale(capsys):
    assert main(["--check"]) == 0, capsys.readouterr().err


def environment_reads(path: Path) -> list[str]:
    """Where a module reads a variable by name: ``os.environ[...]``, ``os.environ.get(...)``,
    ``os.getenv(...)`` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        named = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            named = node.slice
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in (
                "os.environ.get", "os.getenv", "os.environ.setdefault"):
            named = node.args[0] if node.args else None
        if isinstance(named, ast.Constant) and isinstance(named.value, str):
            place = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            found.append(f"{place}:{node.lineno} {named.value}")
    return found


def test_no_module_reads_a_variable_by_name_outside_the_settings():
    paths = [p for folder in ("pipeline", "assets", "resources")
             for p in (ROOT / folder).rglob("*.py") if p not in SETTINGS]
    assert [read for path in paths for read in environment_reads(path)] == []


def test_the_scan_sees_a_read(tmp_path):
    probe = tmp_path / "m.py"
    probe.write_text("import os\nos.environ.get('LAKE_ROOT')\nos.getenv('X')\n"
                     "os.environ['Y']\nos.environ.get(name)\n")
    assert [r.split()[-1] for r in environment_reads(probe)] == ["LAKE_ROOT", "X", "Y"]


def test_every_credential_is_a_declared_secret():
    names = set(credentials())
    assert {"AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY", "MIXPANEL_API_SECRET",
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME", "MIXPANEL_SERVICE_ACCOUNT_SECRET",
            "WAREHOUSE_CATALOG", "LIMITS_DSN", "ALERT_WEBHOOK_URL", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DAGSTER_PG_PASSWORD",
            "AMPLITUDE_STORAGE_ACCESS_KEY_ID", "AMPLITUDE_STORAGE_SECRET_ACCESS_KEY"} == names
    assert "WEB_KEY" in credentials(["WEB_KEY"])  # a YAML project's own variables join them
