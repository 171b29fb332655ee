"""The analysts' dbt models (``analytics/``) as Dagster assets, their dbt tests as asset checks.

Every model is an asset keyed ``analytics/<model>`` in group ``analytics``, downstream of the
assets whose tables it reads (each dbt source names its asset in ``meta.dagster.asset_key``,
which stands for that asset of every project of the source: the models read the all-projects
views, ``amplitude_all`` and ``mixpanel_all``, whose rows carry their project and its zone).
A deployment builds the models of the sources it has (dbt tag ``amplitude``, ``mixpanel``).
One step runs ``dbt build`` for the selection; it holds the warehouse's single-writer pool, as a
load does, since dbt opens the DuckDB file read-write.

The manifest is built offline by this project's own command, whenever the code location loads
and the manifest is missing or older than the project's files (a fresh clone, an edited model):

    .venv/bin/python -m assets.analytics      # dbt parse into analytics/target/manifest.json

It runs ``dbt parse`` (no network: no packages, no hub) into a scratch folder and renames the
manifest into place, under a lock, so concurrent loads never read half a file.
"""

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Collection, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from packaging import version

from assets.namespace import OWNERS, WAREHOUSE_POOL
from pipeline import engine
from pipeline.configuration import credentials
from pipeline.source import Project
from pipeline.warehouse import Warehouse
from resources import WarehouseResource

PROJECT_DIR = Path(__file__).resolve().parent.parent / "analytics"
GROUP = "analytics"
# The files a manifest is parsed from; any change to them means a new parse.
_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")
_STAMP = "manifest.sources-sha256"
_KEEP_INVOCATIONS = 10  # per-run target folders kept for inspection (run_results.json, dbt.log)
DBT_ENV = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}


def dbt_executable() -> str:
    """The virtualenv's dbt, whatever PATH says (tests run .venv/bin/pytest unactivated)."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def sources_digest(project_dir: Path = PROJECT_DIR) -> str:
    digest = hashlib.sha256()
    for name in _SOURCES:
        root = project_dir / name
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if path.exists():
                digest.update(path.relative_to(project_dir).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # held for one dbt parse at most (seconds)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_manifest(project_dir: Path = PROJECT_DIR, *, force: bool = False) -> Path:
    """``target/manifest.json``, parsed again if missing or older than the project's files.

    ``dbt parse`` needs no warehouse and no network. Its output goes to a scratch folder and is
    renamed into place, so a concurrent reader sees the old manifest or the new, never part.
    """
    target = project_dir / "target"
    manifest, stamp = target / "manifest.json", target / _STAMP
    digest = sources_digest(project_dir)

    def fresh() -> bool:
        return (not force and manifest.exists() and stamp.exists()
                and stamp.read_text() == digest)

    if fresh():
        return manifest
    with _locked(target / ".prepare.lock"):
        if fresh():  # another process parsed it while this one waited
            return manifest
        for left in target.glob(".parse-*"):  # a killed parse's (only one parses at a time)
            shutil.rmtree(left, ignore_errors=True)
        scratch = target / f".parse-{os.getpid()}"
        partial = target / "partial_parse.msgpack"
        if partial.exists():  # dbt re-reads only the files that changed since
            scratch.mkdir(parents=True)
            shutil.copyfile(partial, scratch / partial.name)
        done = subprocess.run(
            [dbt_executable(), "parse", "--quiet", "--no-use-colors",
             "--project-dir", str(project_dir), "--profiles-dir", str(project_dir)],
            cwd=project_dir, capture_output=True, text=True, check=False, timeout=300,
            env={**{k: v for k, v in os.environ.items() if k not in credentials()}, **DBT_ENV,
                 "DBT_TARGET_PATH": str(scratch), "DBT_LOG_PATH": str(scratch)})
        if done.returncode != 0 or not (scratch / "manifest.json").exists():
            raise RuntimeError(f"dbt parse of {project_dir} failed ({done.returncode}): "
                               f"{(done.stdout + done.stderr)[-3000:]}")
        if (scratch / partial.name).exists():  # dagster-dbt copies it into each run's target
            os.replace(scratch / partial.name, partial)
        os.replace(scratch / "manifest.json", manifest)
        tmp = stamp.with_suffix(".tmp")
        tmp.write_text(digest)
        os.replace(tmp, stamp)
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


class OfflineDbtCliResource(DbtCliResource):
    """dagster-dbt learns the dbt version by running ``dbt --version``, which asks the package
    index for the latest release (dbt/version.py) at every invocation; the installed one is all
    it needs."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))


class AnalyticsTranslator(DagsterDbtTranslator):
    """Models are ``analytics/<name>`` in group ``analytics``. A source's
    ``meta.dagster.asset_key`` names a source's asset (``[amplitude, events]``): it becomes that
    asset of the source's first project, and :func:`with_every_project` adds the others'."""

    def __init__(self, settings: DagsterDbtTranslatorSettings,
                 namespaces: dict[str, list[str]]) -> None:
        super().__init__(settings)
        self.namespaces = namespaces

    def get_asset_key(self, dbt_resource_props: Any) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "model":
            return dg.AssetKey([GROUP, dbt_resource_props["name"]])
        key = super().get_asset_key(dbt_resource_props)
        first = self.namespaces.get(key.path[0])
        return dg.AssetKey([first[0], *key.path[1:]]) if first else key

    def get_group_name(self, dbt_resource_props: Any) -> str | None:
        return GROUP if dbt_resource_props["resource_type"] == "model" else None

    def get_owners(self, dbt_resource_props: Any) -> list[str] | None:
        return OWNERS if dbt_resource_props["resource_type"] == "model" else None


@contextlib.contextmanager
def _environ(values: dict[str, str], unset: tuple[str, ...] = ()) -> Iterator[None]:
    """The environment of a child process started inside the block: DbtCliResource passes
    os.environ on, and dbt reads its profile's WAREHOUSE_PATH from it. ``unset`` keeps variables
    (the credentials) away from it."""
    saved = {name: os.environ.get(name) for name in (*values, *unset)}
    os.environ.update(values)
    for name in unset:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def warehouse_env(warehouse: Warehouse) -> dict[str, str]:
    """What profiles.yml reads to reach ``warehouse``: its file, or its DuckLake catalog.

    A catalog's password goes to libpq's PGPASSWORD rather than into WAREHOUSE_CATALOG, so that
    no error dbt prints of its ATTACH can hold it; with the lake on S3, the lake's secret goes to
    DBT_ENV_SECRET_* variables, which dbt scrubs from what it prints.
    """
    env = {"WAREHOUSE_PATH": str(warehouse.path.resolve()), "WAREHOUSE_CATALOG": "",
           "DUCKDB_EXTENSION_DIRECTORY": str(engine.extension_directory())}
    if warehouse.catalog is not None:
        catalog, password = warehouse.catalog.without_password()
        env["WAREHOUSE_CATALOG"] = catalog
        if password is not None:
            env["PGPASSWORD"] = password
        if warehouse.object_storage is not None:  # the catalog's data files are in the lake
            for option, value in warehouse.object_storage.secret_options().items():
                hidden = option in ("secret", "session_token")
                env[f"{'DBT_ENV_SECRET_' if hidden else ''}LAKE_S3_{option.upper()}"] = value
    return env


def _prune_invocations(target: Path, op_name: str) -> None:
    runs = sorted((p for p in target.glob(f"{op_name}-*") if p.is_dir()),
                  key=lambda p: p.stat().st_mtime)
    for old in runs[:-_KEEP_INVOCATIONS]:
        shutil.rmtree(old, ignore_errors=True)


def with_every_project(assets: dg.AssetsDefinition, namespaces: dict[str, list[str]],
                       available: Collection[dg.AssetKey] | None = None) -> dg.AssetsDefinition:
    """Each model that reads a source's asset of its first project reads every project's, of
    those ``available`` (when given): a project without merged ids has no ``merge_ids`` asset,
    and an organization's file is one asset, its first project's."""
    firsts = {ns[0]: ns[1:] for ns in namespaces.values()}

    def more(spec: dg.AssetSpec) -> dg.AssetSpec:
        named = [dep.asset_key for dep in spec.deps]
        keys = [*named, *(dg.AssetKey([other, *key.path[1:]]) for key in named
                          for other in firsts.get(key.path[0], []))]
        kept = [key for key in keys
                if available is None or key in available or key.path[0] == GROUP]
        return spec if kept == named else spec.replace_attributes(deps=kept)

    return assets.map_asset_specs(more)


def build_analytics_assets(projects: Sequence[Project], secrets: Sequence[str] = (),
                           available: Collection[dg.AssetKey] | None = None,
                           ) -> list[dg.AssetsDefinition]:
    """The models of the sources the deployment has, over every project of each, downstream of
    the source assets ``available`` (default: every one named); dbt runs without ``secrets``
    (every credential variable) in its environment."""
    hidden = credentials(secrets)
    namespaces: dict[str, list[str]] = {}
    for p in projects:
        namespaces.setdefault(p.source, []).append(p.namespace)
    if not namespaces:
        return []
    project = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)
    # The models read the all-projects views, whose rows carry each project's name and time
    # zone: nothing about the projects is passed to dbt, and one manifest serves every deployment.
    manifest = prepare_manifest(project.project_dir)
    # every dbt test an asset check (dagster-dbt's default, stated)
    translator = AnalyticsTranslator(DagsterDbtTranslatorSettings(enable_asset_checks=True),
                                     namespaces)
    select = " ".join(f"tag:{name}" for name in sorted(namespaces))

    @dbt_assets(manifest=manifest, project=project, name="analytics", select=select,
                dagster_dbt_translator=translator, pool=WAREHOUSE_POOL)
    def analytics(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        # The pipeline's tables must exist before a view can read them: opening the warehouse
        # creates or upgrades them (pipeline/migrations.py), so a build against a new, empty
        # warehouse makes empty views rather than failing.
        # On DuckLake this also installs the extensions dbt loads from the extension directory.
        target = warehouse.warehouse()
        with target.connect():
            pass
        _prune_invocations(project.project_dir / "target", "analytics")
        dbt = OfflineDbtCliResource(project_dir=str(project.project_dir),
                                    dbt_executable=dbt_executable())
        # dbt needs no credential: none is in its environment (pipeline.credentials)
        # (but the catalog and its password, should they be listed, are what it needs)
        env = {**DBT_ENV, **warehouse_env(target)}
        with _environ(env, unset=tuple(name for name in hidden if name not in env)):
            invocation = dbt.cli(["build"], context=context)
        yield from invocation.stream()

    return [with_every_project(analytics, namespaces, available)]


if __name__ == "__main__":  # python -m assets.analytics [--force]
    print(prepare_manifest(force="--force" in sys.argv[1:]))
