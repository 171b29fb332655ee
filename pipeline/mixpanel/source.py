"""Mixpanel as a source of the shared machinery (``pipeline/source.py``).

Every process that opens the warehouse loads this module (for the migrations), so it imports
only those; the other methods import what they need when called.
"""

from __future__ import annotations

import contextlib
from datetime import date
from typing import TYPE_CHECKING

from pipeline.mixpanel import migrations
from pipeline.source import Partition, Project, Source

if TYPE_CHECKING:
    import duckdb

    from pipeline.forget.contract import UserData
    from pipeline.lake import Lake
    from pipeline.migrations import ProjectSchema
    from pipeline.mixpanel.landing import MixpanelLake
    from pipeline.mixpanel.settings import MixpanelSettings

REBUILT_WINDOW = "rebuilt"  # request_window of a ledger row whose landing manifest is gone


class MixpanelSource(Source):
    name = "mixpanel"
    relations = ("events", "_loads")

    @property
    def settings(self) -> type[MixpanelSettings]:
        from pipeline.mixpanel.settings import MixpanelSettings

        return MixpanelSettings

    def schema(self, project: Project) -> ProjectSchema:
        return migrations.project_schema(project.schema)

    def lake(self, lake: Lake, project: Project) -> MixpanelLake:
        from pipeline.mixpanel.landing import MixpanelLake

        return lake.share(MixpanelLake, namespace=project.namespace)

    def lake_partitions(self, lake: Lake, project: Project) -> list[Partition]:
        from pipeline.lake import LakeError
        from pipeline.mixpanel import landing

        own = self.lake(lake, project)
        root = lake.local(lake.root) / project.namespace / landing.TABLE
        days: list[Partition] = []
        for path in sorted(root.glob(f"{landing.PARTITION_KEY}=*/*.parquet")):
            try:
                day = date.fromisoformat(path.parent.name.split("=", 1)[1])
            except (IndexError, ValueError):
                raise LakeError(f"{path} is not where the lake keeps a day's file "
                                f"({landing.PARTITION_KEY}=YYYY-MM-DD); move it away") from None
            if landing.events_file(own, day) == path:
                days.append(day)
        return days

    def landed_partitions(self, lake: Lake, project: Project) -> list[Partition]:
        from pipeline.lake import MANIFEST
        from pipeline.mixpanel import landing

        root = lake.local(lake.root) / "landing" / project.namespace / landing.DATASET
        days: list[Partition] = []
        for manifest in sorted(root.glob(f"{landing.PARTITION_KEY}=*/{MANIFEST}")):
            with contextlib.suppress(IndexError, ValueError):
                days.append(date.fromisoformat(manifest.parent.name.split("=", 1)[1]))
        return days

    def reload(self, con: duckdb.DuckDBPyConnection, lake: Lake, project: Project,
               partition: Partition) -> int:
        from pipeline.lake import LakeError
        from pipeline.mixpanel import landing
        from pipeline.mixpanel.load import MixpanelLoad, load_day

        assert isinstance(partition, date)
        own = self.lake(lake, project)
        place = landing.events_file(own, partition)
        if place is None:
            raise LakeError(f"{project.namespace}: day {partition} has no Parquet file")
        landed = landing.landed(own, partition)
        record = (MixpanelLoad.from_landing(landed) if landed is not None else MixpanelLoad(
            day=partition, request_window=REBUILT_WINDOW, window_requests=0,
            bytes_downloaded=0, fetch_seconds=0.0))
        return load_day(con, project.schema, own.url(place), record).rows

    def user_data(self, lake: Lake, project: Project) -> list[UserData]:
        from pipeline.mixpanel import forgetting

        return forgetting.user_data(self.lake(lake, project), project)


SOURCE = MixpanelSource()
