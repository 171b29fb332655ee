"""Where the lake and the warehouse live, and the engine limits used on them."""


from pathlib import Path

import dagster as dg

from pipeline.amplitude.landing import AmplitudeLake
from pipeline.amplitude.normalize import EngineLimits
from pipeline.warehouse import Warehouse


class LakeResource(dg.ConfigurableResource):
    root: str = "data/lake"
    normalize_threads: int = 2
    normalize_memory_limit: str = "384MB"
    rejects: str = "fail"  # AMPLITUDE_REJECTS: "quarantine" sets non-JSON lines aside

    @property
    def quarantine(self) -> bool:
        return self.rejects == "quarantine"

    def lake(self) -> AmplitudeLake:
        return AmplitudeLake(Path(self.root))

    def limits(self) -> EngineLimits:
        return EngineLimits(self.normalize_threads, self.normalize_memory_limit)


class WarehouseResource(dg.ConfigurableResource):
    path: str = "data/warehouse.duckdb"
    lock_timeout_seconds: float = 300.0
    # With Dagster's own ~170 MB this keeps the loading process near 480 MB even for a 4M-event
    # hour (the load's memory grows by ~13 bytes a row beyond the limit); 384 MB loads a 1M-event
    # hour faster but peaks past 512 MB (README, Performance).
    memory_limit: str = "224MB"
    # A re-fetch holding this share fewer rows than loaded (an empty one too) is refused.
    max_row_drop_share: float = 0.1

    def warehouse(self) -> Warehouse:
        return Warehouse(Path(self.path), lock_timeout_seconds=self.lock_timeout_seconds,
                         memory_limit=self.memory_limit)
