"""Where a Mixpanel project keeps users, for ``python -m pipeline.forget``.

One partition family: the export's days (``events``). A day's landing is its window's body (JSONL,
gzip), hard-linked under every day of the window, so a user's line in one day's events is in the
landing of each of them: the days of one fetch are landed again together (``Landing.fetch``), the
filtered body made once and hard-linked into each new version.

A line is the users' when ``properties.distinct_id`` is one of the request's ``distinct_id``\\ s,
or ``properties.$user_id`` one of its ``user_id``\\ s. ``$user_id`` is the id the project's apps
give an identified user (``identify``), the same id a ``user_id:`` request names for Amplitude: a
request for a person's own user id takes their identified events from every source. Their
anonymous events (before ``identify``) carry only a device's ``distinct_id``; those need a
``distinct_id:`` request.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from pipeline.forget.contract import AuditColumns, Landing, Ledger, UserData
from pipeline.forget.ids import DISTINCT_ID, USER_ID, Ids
from pipeline.forget.matching import FieldPath, JsonFields, Records
from pipeline.forget.parquet import holds
from pipeline.lake import MANIFEST
from pipeline.mixpanel import landing
from pipeline.mixpanel.landing import MixpanelLake
from pipeline.mixpanel.normalize import ROW_GROUP_ROWS, ZSTD_LEVEL
from pipeline.mixpanel.schema import DEDUP_KEY
from pipeline.source import Partition, Project

KINDS = frozenset({DISTINCT_ID, USER_ID})
ROW_MATCH = f"({holds('distinct_id', DISTINCT_ID)} OR {holds('user_id', USER_ID)})"
EVENT_FIELDS: dict[FieldPath, str] = {("properties", "distinct_id"): DISTINCT_ID,
                                      ("properties", "$user_id"): USER_ID}
# The writer options of pipeline/mixpanel/normalize.py.
PARQUET_OPTIONS = (f"FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {ZSTD_LEVEL}, "
                   f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}")


def _day(folder: Path) -> date | None:
    with contextlib.suppress(ValueError):
        return date.fromisoformat(folder.name.removeprefix(f"{landing.PARTITION_KEY}="))
    return None


@dataclass(frozen=True, kw_only=True)
class ExportDays(UserData):
    """Days of the export: each day's landing (its window's body), Parquet file and rows."""

    own: MixpanelLake

    def records(self, ids: Ids) -> Records:
        return JsonFields(ids, EVENT_FIELDS).records()

    def landing_folder(self, partition: Partition) -> Path:
        return self.own.local(landing.landing_dir(self.own, partition))

    def landed(self) -> dict[Partition, Path]:
        root = self.own.local(self.own.root) / "landing" / self.own.namespace / landing.DATASET
        days: dict[Partition, Path] = {}
        for manifest in sorted(root.glob(f"{landing.PARTITION_KEY}=*/{MANIFEST}")):
            day = _day(manifest.parent)
            if day is not None:
                days[day] = manifest.parent
        return days

    def landing(self, partition: Partition) -> Landing | None:
        landed = landing.landed(self.own, partition)
        if landed is None:
            return None
        folder = self.landing_folder(partition)
        return Landing(landed.version, landed.fetched_at,
                       (folder / landed.version / landed.file,),
                       lambda version, _: replace(landed, version=version).to_json(),
                       fetch=landed.window_id)

    def parquet_file(self, partition: Partition) -> Path:
        folder = self.own.table_folder(self.own.namespace, landing.TABLE,
                                       landing.partition(partition))
        return self.own.local(folder) / f"{landing.TABLE}.parquet"

    def parquet_files(self) -> dict[Path, Partition]:
        root = self.own.local(self.own.root) / self.own.namespace / landing.TABLE
        found: dict[Path, Partition] = {}
        for path in sorted(root.glob(f"{landing.PARTITION_KEY}=*/{landing.TABLE}.parquet")):
            day = _day(path.parent)
            if day is not None:
                found[path] = day
        return found


def user_data(lake: MixpanelLake, project: Project) -> list[UserData]:
    schema = project.schema
    key = ", ".join(f"e.{column}" for column in DEDUP_KEY)
    duplicates = (f"SELECT count(*) - count(DISTINCT ({key})) FROM {schema}.events e "
                  "WHERE e._day = l.day AND e.insert_id IS NOT NULL")  # load.duplicate_rows
    return [ExportDays(
        lake=lake, own=lake, unit="day", table=f"{schema}.events", partition_column="_day",
        kinds=KINDS, predicate=ROW_MATCH,
        ledger=Ledger(f"{schema}._loads", "day", recount={"duplicate_rows": duplicates}),
        parquet_options=PARQUET_OPTIONS,
        audit=AuditColumns("days_rewritten", "landing_lines_removed", "parquet_rows_removed",
                           "event_rows_removed"),
        related=True)]
