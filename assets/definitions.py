"""The code location: every project (from the environment and from ``assets/projects/*.yaml``)
and what they share: the lake, the warehouse, the analysts' models, alerts and the executor.

Settings are read once, here (``pipeline/settings.py``); docs/configuration.md lists them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from assets import components
from assets.alerts import ALERT_SENSORS
from assets.amplitude.merge_ids import build_merge_ids
from assets.analytics import build_analytics_assets
from assets.components import (
    Declared,
    SourceProject,
    environment_projects,
    in_tree,
    project_defs,
)
from assets.distributed import executor_for
from assets.executor import crash_safe_in_process_executor
from pipeline.settings import SharedSettings
from resources import LakeResource, WarehouseResource
from resources.storage import WarehouseProject

ROOT = Path(__file__).resolve().parent.parent
DEFS_MODULE = "assets.projects"  # [tool.dg.project] defs_module


def yaml_projects(defs_module: str = DEFS_MODULE,
                  root: Path = ROOT) -> tuple[dg.ComponentTree, list[SourceProject]]:
    tree = dg.ComponentTree.from_module(importlib.import_module(defs_module), root)
    return tree, in_tree(tree)


def shared_resources(shared: SharedSettings, projects: Sequence[Declared]) -> dict[str, Any]:
    """The lake and the warehouse every project writes to; secrets through ``EnvVar``."""
    catalog: Any = dg.EnvVar("WAREHOUSE_CATALOG") if shared.warehouse_catalog else None
    return {
        "lake": LakeResource(root=shared.lake_root,
                             catalog_registers_files=shared.warehouse_catalog is not None),
        "warehouse": WarehouseResource(
            path=shared.warehouse_path, catalog=catalog, data_path=shared.warehouse_data,
            lake_root=shared.lake_root,
            lock_timeout_seconds=shared.warehouse_lock_timeout_seconds,
            projects=[WarehouseProject(source=d.project.source, name=d.project.name,
                                       timezone=d.project.timezone) for d in projects]),
    }


def asset_keys(defs: dg.Definitions) -> set[dg.AssetKey]:
    keys: set[dg.AssetKey] = set()
    for item in defs.assets or ():
        if isinstance(item, dg.AssetsDefinition):
            keys.update(item.keys)
        elif isinstance(item, dg.AssetSpec | dg.SourceAsset):
            keys.add(item.key)
    return keys


def build_defs(env: Mapping[str, str] | None = None, *,
               defs_module: str = DEFS_MODULE) -> dg.Definitions:
    """The definitions for ``env`` (default: the process's environment) and the YAML projects
    under ``defs_module``."""
    token = components.ENVIRONMENT.set(env)
    try:
        shared = SharedSettings.from_env(env)
        from_env = environment_projects(components.environment())
        tree, from_yaml = yaml_projects(defs_module)
        declared = [*from_env, *(c.declared("a YAML project") for c in from_yaml)]
        sources = dg.Definitions.merge(
            *(project_defs(d, shared) for d in from_env),
            tree.build_defs(),  # each YAML project (its component checks for a clash)
            build_merge_ids([(d.project, d.options) for d in declared
                             if d.project.source == "amplitude"]),  # one per organization
        )
        return dg.Definitions.merge(
            sources,
            dg.Definitions(
                assets=build_analytics_assets([d.project for d in declared],
                                              [n for d in declared for n in d.credentials],
                                              asset_keys(sources)),
                sensors=[*ALERT_SENSORS],  # post to ALERT_WEBHOOK_URL (docs/alerts.md)
                # A run's steps depend on each other, so separate step processes buy no
                # parallelism and cost each step a fresh interpreter that imports Dagster and
                # the code location again: 1.5-1.9 s and about 170 MB apiece.
                executor=executor_for(shared) or crash_safe_in_process_executor.configured(
                    {"pool_wait_seconds": float(shared.pool_wait_seconds)},
                    name="crash_safe_in_process"),
                resources=shared_resources(shared, declared)))
    finally:
        components.ENVIRONMENT.reset(token)


defs = build_defs()
