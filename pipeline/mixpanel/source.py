"""Mixpanel as a source of the shared machinery (``pipeline/source.py``)."""

from __future__ import annotations

import contextlib
from datetime import date

import duckdb

from pipeline.forget.contract import UserData
from pipeline.lake import MANIFEST, Lake, LakeError
from pipeline.migrations import ProjectSchema
from pipeline.mixpanel import forgetting, landing, migrations
from pipeline.mixpanel.landing import MixpanelLake
from pipeline.mixpanel.load import MixpanelLoad, load_day
from pipeline.mixpanel.settings import MixpanelSettings
from pipeline.source import Partition, Project, Source

REBUILT_WINDOW = "rebuilt"  # request_window of a ledger row whose landing manifest is gone


class MixpanelSource(Source):
    name = "mixpanel"
    settings = MixpanelSettings
    relations = ("events", "_loads")

    def schema(self, project: Project) -> ProjectSchema:
        return migrations.project_schema(project.schema)

    def lake(self, lake: Lake, project: Project) -> MixpanelLake:
        return lake.share(MixpanelLake, namespace=project.namespace)

    def lake_partitions(self, lake: Lake, project: Project) -> list[Partition]:
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
        root = lake.local(lake.root) / "landing" / project.namespace / landing.DATASET
        days: list[Partition] = []
        for manifest in sorted(root.glob(f"{landing.PARTITION_KEY}=*/{MANIFEST}")):
            with contextlib.suppress(IndexError, ValueError):
                days.append(date.fromisoformat(manifest.parent.name.split("=", 1)[1]))
        return days

    def reload(self, con: duckdb.DuckDBPyConnection, lake: Lake, project: Project,
               partition: Partition) -> int:
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
        return forgetting.user_data(self.lake(lake, project), project)


SOURCE = MixpanelSource()
