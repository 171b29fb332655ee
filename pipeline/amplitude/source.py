"""Amplitude as a source of the shared machinery (``pipeline/source.py``).

Every process that opens the warehouse loads this module (for the migrations), so it imports
only those; what the other methods need loads when they are called, and a step that loads an
hour does not carry settings, forget and the lake's classes (about 15 MB of imports).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pipeline.amplitude import migrations
from pipeline.source import Partition, Project, Source

if TYPE_CHECKING:
    import duckdb

    from pipeline.amplitude.landing import AmplitudeLake
    from pipeline.amplitude.settings import AmplitudeSettings
    from pipeline.forget.contract import UserData
    from pipeline.lake import Lake
    from pipeline.migrations import ProjectSchema

REBUILT_WINDOW = "rebuilt"  # request_window of a ledger row whose landing manifest is gone
HOUR_FOLDER = "upload_date=%Y-%m-%d/upload_hour=%H"


class AmplitudeSource(Source):
    name = "amplitude"
    relations = ("events", "_loads", "_rejects", "_snapshot_loads", "_cohort_downloads",
                 "merge_ids", "_merge_loads", "identity_merges", "user_identity",
                 *(f"{table}{suffix}"
                   for table in (*migrations.SNAPSHOT_TABLES, *migrations.ANNOTATION_TABLES)
                   for suffix in ("", "_current")))

    @property
    def settings(self) -> type[AmplitudeSettings]:
        from pipeline.amplitude.settings import AmplitudeSettings

        return AmplitudeSettings

    def schema(self, project: Project) -> ProjectSchema:
        return migrations.project_schema(project.schema)

    def lake(self, lake: Lake, project: Project) -> AmplitudeLake:
        from pipeline.amplitude.landing import AmplitudeLake

        return lake.share(AmplitudeLake, namespace=project.namespace)

    def lake_partitions(self, lake: Lake, project: Project) -> list[Partition]:
        from pipeline.lake import LakeError

        own = self.lake(lake, project)
        root = lake.local(lake.root) / project.namespace / "events"
        hours: list[Partition] = []
        for path in sorted(root.glob("upload_date=*/upload_hour=*/*.parquet")):
            folder = f"{path.parent.parent.name}/{path.parent.name}"
            try:
                hour = datetime.strptime(folder, HOUR_FOLDER).replace(tzinfo=UTC)
            except ValueError:
                raise LakeError(f"{path} is not where the lake keeps an hour's file "
                                "(upload_date=YYYY-MM-DD/upload_hour=HH); move it away") from None
            if own.events_file(hour) != path:
                continue  # a superseded version beside the current one
            hours.append(hour)
        return hours

    def landed_partitions(self, lake: Lake, project: Project) -> list[Partition]:
        from pipeline.lake import MANIFEST

        root = lake.local(lake.root) / "landing" / project.namespace / "export"
        hours: list[Partition] = []
        for manifest in sorted(root.glob(f"upload_date=*/upload_hour=*/{MANIFEST}")):
            folder = f"{manifest.parent.parent.name}/{manifest.parent.name}"
            with contextlib.suppress(ValueError):
                hours.append(datetime.strptime(folder, HOUR_FOLDER).replace(tzinfo=UTC))
        return hours

    def reload(self, con: duckdb.DuckDBPyConnection, lake: Lake, project: Project,
               partition: Partition) -> int:
        from pipeline.amplitude.load import LoadRecord, load_hour
        from pipeline.amplitude.rejects import rejects_for
        from pipeline.lake import LakeError

        assert isinstance(partition, datetime)
        own = self.lake(lake, project)
        place = own.events_file(partition)
        if place is None:
            raise LakeError(f"{project.namespace}: upload hour {partition:%Y-%m-%dT%H} has no "
                            "Parquet file")
        landed = own.landed_or_none(partition)
        record = (LoadRecord.from_landing(landed) if landed is not None else LoadRecord(
            upload_hour=partition, archive_members=0, bytes_downloaded=0,
            request_window=REBUILT_WINDOW, window_requests=0, fetch_seconds=0.0))
        version = record.landing_version
        quarantined = rejects_for(own, partition, version) if version else None
        return load_hour(con, project.schema, own.url(place), record, rejects=quarantined).rows

    def user_data(self, lake: Lake, project: Project) -> list[UserData]:
        from pipeline.amplitude import forgetting

        return forgetting.user_data(self.lake(lake, project), project)


SOURCE = AmplitudeSource()

