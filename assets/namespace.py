"""What Dagster names after a project: its asset keys, groups, jobs, schedules, pools, resource.

A project's namespace (``pipeline.source.Project``) prefixes all of them, so projects side by
side never collide, and the project configured from the environment keeps the names it always
had (``amplitude/events``, ``amplitude_hourly``, pool ``amplitude_export``).
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from pipeline.source import Project

WAREHOUSE_POOL = "duckdb_warehouse"  # the warehouse's one writer, shared by every project
OWNERS = ["team:data-engineering"]  # who the UI shows as answering for the tables


@dataclass(frozen=True)
class Names:
    project: Project

    @property
    def namespace(self) -> str:
        return self.project.namespace

    def key(self, name: str) -> dg.AssetKey:
        """``amplitude/events``, ``amplitude_web/events``."""
        return dg.AssetKey([self.namespace, name])

    def name(self, what: str) -> str:
        """A job's, schedule's or sensor's name: ``amplitude_hourly``."""
        return f"{self.namespace}_{what}"

    def table(self, name: str) -> str:
        return self.project.table(name)

    @property
    def group(self) -> str:
        return self.namespace

    @property
    def resource(self) -> str:
        """The key of the project's API client resource."""
        return self.namespace

    @property
    def storage_resource(self) -> str:
        """The key of the project's storage-export (and merged-ID files) resource."""
        return f"{self.namespace}_storage"

    @property
    def export_pool(self) -> str:
        """At most this many of the project's exports at once (dagster.yaml: 1)."""
        return f"{self.namespace}_export"
