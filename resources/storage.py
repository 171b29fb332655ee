"""Where the lake and the warehouse live, and the engine limits used on them."""


from pathlib import Path

import dagster as dg

from pipeline.amplitude.landing import AmplitudeLake
from pipeline.amplitude.normalize import EngineLimits
from pipeline.object_storage import ObjectStorage, is_remote
from pipeline.warehouse import Warehouse


class LakeResource(dg.ConfigurableResource):
    root: str = "data/lake"  # a local folder, or s3://bucket/prefix (keys from AWS_* at run time)
    normalize_threads: int = 2
    normalize_memory_limit: str = "384MB"
    rejects: str = "fail"  # AMPLITUDE_REJECTS: "quarantine" sets non-JSON lines aside
    # A DuckLake warehouse registers the lake's files: each version gets its own name, and the
    # catalog, not the lake, deletes superseded ones (when its snapshots expire).
    catalog_registers_files: bool = False

    @property
    def quarantine(self) -> bool:
        return self.rejects == "quarantine"

    def lake(self) -> AmplitudeLake:
        return AmplitudeLake(self.root, versioned_tables=self.catalog_registers_files,
                             keep_table_versions=self.catalog_registers_files)

    def limits(self) -> EngineLimits:
        return EngineLimits(self.normalize_threads, self.normalize_memory_limit)


class WarehouseResource(dg.ConfigurableResource):
    path: str = "data/warehouse.duckdb"
    # WAREHOUSE_CATALOG, as an EnvVar (it may hold a password): a DuckLake catalog instead of
    # the file at ``path``; its data files live under ``data_path``, in the lake.
    catalog: str | None = None
    data_path: str | None = None
    lake_root: str = "data/lake"  # to reach an s3:// lake's files (credentials from AWS_*)
    lock_timeout_seconds: float = 300.0
    # With Dagster's own ~170 MB this keeps the loading process near 480 MB even for a 4M-event
    # hour (the load's memory grows by ~13 bytes a row beyond the limit); 384 MB loads a 1M-event
    # hour faster but peaks past 512 MB (README, Performance).
    memory_limit: str = "224MB"
    # A re-fetch holding this share fewer rows than loaded (an empty one too) is refused.
    max_row_drop_share: float = 0.1

    def warehouse(self) -> Warehouse:
        storage = ObjectStorage.from_root(self.lake_root) if is_remote(self.lake_root) else None
        return Warehouse(Path(self.path), lock_timeout_seconds=self.lock_timeout_seconds,
                         memory_limit=self.memory_limit, catalog=self.catalog or None,
                         data_path=self.data_path, object_storage=storage)
