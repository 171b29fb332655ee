"""Dependencies point one way (docs/architecture.md): assets → resources → pipeline; the shared
core of pipeline/ imports no source package and no Dagster; sources do not import each other;
the simulator stands apart. Read from the source text, so a lazy import inside a function
counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("amplitude", "mixpanel")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (``from . import x`` resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    place = path.relative_to(ROOT) if path.is_relative_to(ROOT) else Path("pipeline", path.name)
    package = ".".join(place.with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def offending(paths: list[Path], banned: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(m for m in imports(path)
                     if any(m == b or m.startswith(b + ".") for b in banned))
        if bad:
            found[path.name if not path.is_relative_to(ROOT) else
                  str(path.relative_to(ROOT))] = bad
    return found


def shared_core() -> list[Path]:
    return [p for p in modules("pipeline")
            if not any(p.is_relative_to(ROOT / "pipeline" / s) for s in SOURCES)]


def test_the_shared_core_imports_no_source_package():
    assert offending(shared_core(), tuple(f"pipeline.{s}" for s in SOURCES)) == {}


def test_pipeline_imports_no_dagster_assets_or_resources():
    assert offending(modules("pipeline"), ("dagster", "dagster_dbt", "assets", "resources")) == {}


@pytest.mark.parametrize("source", SOURCES)
def test_a_source_imports_no_other_source(source):
    others = tuple(f"pipeline.{s}" for s in SOURCES if s != source)
    assert offending(modules(f"pipeline/{source}"), others) == {}


def test_resources_import_no_assets():
    assert offending(modules("resources"), ("assets",)) == {}


def test_the_simulator_stands_apart():
    assert offending(modules("simulator"), ("pipeline", "assets", "resources")) == {}


def test_every_source_is_registered_and_fills_the_contract():
    from pipeline.source import Source, registered

    found = registered()
    assert sorted(found) == sorted(SOURCES)
    assert all(isinstance(source, Source) for source in found.values())


def test_the_check_sees_a_banned_import(tmp_path):
    """The scan itself: a shared module that imports a source is caught, however it imports."""
    probe = tmp_path / "probe.py"
    for text in ("from pipeline.amplitude import schema\n",
                 "def f():\n    import pipeline.mixpanel.load\n",
                 "from pipeline import amplitude\n",
                 "from .amplitude.load import load_hour\n"):
        probe.write_text(text)
        assert offending([probe], tuple(f"pipeline.{s}" for s in SOURCES)), text
    probe.write_text("from pipeline import lake\nimport duckdb\n")
    assert offending([probe], tuple(f"pipeline.{s}" for s in SOURCES)) == {}
