"""Where the lake and the warehouse live, shared by every project of the deployment."""


from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from pipeline.engine import EngineLimits
from pipeline.lake import Lake
from pipeline.object_storage import ObjectStorage, is_remote
from pipeline.source import Project
from pipeline.warehouse import Warehouse, WarehouseLocked, hold, release
from pipeline.worker import Worker


class LakeResource(dg.ConfigurableResource):
    root: str = "data/lake"  # a local folder, or s3://bucket/prefix (keys from AWS_* at run time)
    normalize_threads: int = 2
    normalize_memory_limit: str = "384MB"
    # A DuckLake warehouse registers the lake's files: each version gets its own name, and the
    # catalog, not the lake, deletes superseded ones (when its snapshots expire).
    catalog_registers_files: bool = False

    def lake(self) -> Lake:
        return Lake(self.root, versioned_tables=self.catalog_registers_files,
                    keep_table_versions=self.catalog_registers_files)

    def limits(self) -> EngineLimits:
        return EngineLimits(self.normalize_threads, self.normalize_memory_limit)


class WarehouseProject(dg.Config):
    """A project whose schema the warehouse keeps (``pipeline.source.Project``)."""

    source: str
    name: str
    timezone: str = "UTC"


class WarehouseResource(dg.ConfigurableResource):
    path: str = "data/warehouse.duckdb"
    # WAREHOUSE_CATALOG, as an EnvVar (it may hold a password): a DuckLake catalog instead of
    # the file at ``path``; its data files live under ``data_path``, in the lake.
    catalog: str | None = Field(default=None, repr=False)
    data_path: str | None = None
    lake_root: str = "data/lake"  # to reach an s3:// lake's files (credentials from AWS_*)
    lock_timeout_seconds: float = 300.0
    # With Dagster's own ~170 MB this keeps the loading process near 480 MB even for a 4M-event
    # hour (the load's memory grows by ~13 bytes a row beyond the limit); 384 MB loads a 1M-event
    # hour faster but peaks past 512 MB (docs/performance.md).
    memory_limit: str = "224MB"
    # A re-fetch holding this share fewer rows than loaded (an empty one too) is refused.
    max_row_drop_share: float = 0.1
    projects: list[WarehouseProject] = Field(default_factory=list, description=(
        "every project of the deployment: each write open migrates their schemas and keeps "
        "their all-projects views"))

    def warehouse(self) -> Warehouse:
        storage = ObjectStorage.from_root(self.lake_root) if is_remote(self.lake_root) else None
        return Warehouse(Path(self.path), lock_timeout_seconds=self.lock_timeout_seconds,
                         memory_limit=self.memory_limit, catalog=self.catalog or None,
                         data_path=self.data_path, object_storage=storage,
                         projects=[Project.named(p.source, p.name, p.timezone)
                                   for p in self.projects])

    @contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A writing connection. A lock held past ``lock_timeout_seconds`` fails the step
        without a retry: the wait has been spent already, and waiting again would make the
        bound a lie. Nothing was changed."""
        with ExitStack() as stack:
            try:
                con = stack.enter_context(self.warehouse().connect())
            except WarehouseLocked as error:
                raise dg.Failure(str(error), allow_retries=False) from error
            yield con

    def open_in(self, worker: Worker) -> Warehouse:
        """The warehouse, opened and migrated in ``worker`` (which keeps it open until it
        exits); a lock held past the timeout fails the step without a retry, as ``writing``."""
        target = self.warehouse()
        try:
            worker.call(hold, target)
        except WarehouseLocked as error:
            raise dg.Failure(str(error), allow_retries=False) from error
        worker.at_exit(release, target)
        return target

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A reading connection, in any warehouse mode (the checks hold the writer pool, so no
        load is mid-swap)."""
        with self.warehouse().reader() as con:
            yield con
