"""Where an Amplitude project keeps users, for ``python -m pipeline.forget``.

Two partition families hold them: the export's upload hours (``events``, whose malformed lines
may be quarantined in ``_rejects``) and the daily cohort-member snapshots (``cohort_members``,
whose landings are CSV files and may list an earlier day's file for a cohort carried forward).
A user is an ``amplitude_id`` or the project's own ``user_id``: a top-level key of an export line,
the first or second column of a cohort file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

from pipeline.amplitude.cohort_members import TABLE as COHORT_MEMBERS
from pipeline.amplitude.landing import AmplitudeLake, LandedHour
from pipeline.amplitude.normalize import ROW_GROUP_ROWS, ZSTD_LEVEL
from pipeline.forget.contract import (
    AuditColumns,
    Landing,
    LandingFile,
    Ledger,
    Quarantine,
    UserData,
)
from pipeline.forget.ids import AMPLITUDE_ID, USER_ID, Ids
from pipeline.forget.matching import FieldPath, JsonFields, Records, csv_records
from pipeline.forget.parquet import holds
from pipeline.lake import MANIFEST, day_partition, hour_partition
from pipeline.snapshots import SnapshotLanding, Snapshots
from pipeline.source import Partition, Project

KINDS = frozenset({AMPLITUDE_ID, USER_ID})
# A row of the users, in events and cohort_members alike (both name the ids so).
ROW_MATCH = f"({holds('amplitude_id', AMPLITUDE_ID)} OR {holds('user_id', USER_ID)})"
EXPORT_FIELDS: dict[FieldPath, str] = {("amplitude_id",): AMPLITUDE_ID, ("user_id",): USER_ID}
COHORT_COLUMNS = {0: AMPLITUDE_ID, 1: USER_ID}  # "amplitude_id","user_id",...
# The writer options of pipeline/amplitude/normalize.py and pipeline/amplitude/cohort_members.py.
EVENTS_OPTIONS = (f"FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {ZSTD_LEVEL}, "
                  f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}")
COHORT_MEMBERS_OPTIONS = "FORMAT parquet, COMPRESSION zstd"
HOUR_FOLDER = "upload_date=%Y-%m-%d upload_hour=%H"


def _hour(folder: Path) -> datetime | None:
    with contextlib.suppress(ValueError):
        return datetime.strptime(f"{folder.parent.name} {folder.name}",
                                 HOUR_FOLDER).replace(tzinfo=UTC)
    return None


def _day(folder: Path) -> date | None:
    with contextlib.suppress(ValueError):
        return date.fromisoformat(folder.name.split("=", 1)[-1])
    return None


@dataclass(frozen=True, kw_only=True)
class ExportHours(UserData):
    """Upload hours: the export's members, each hour's Parquet file, ``events``."""

    own: AmplitudeLake

    def records(self, ids: Ids) -> Records:
        return JsonFields(ids, EXPORT_FIELDS).records()

    def landing_folder(self, partition: Partition) -> Path:
        assert isinstance(partition, datetime)
        return self.own.local(self.own.landing_dir(partition))

    def landed(self) -> dict[Partition, Path]:
        root = self.own.local(self.own.root) / "landing" / self.own.namespace / "export"
        hours: dict[Partition, Path] = {}
        for manifest in root.glob(f"upload_date=*/upload_hour=*/{MANIFEST}"):
            hour = _hour(manifest.parent)
            if hour is not None and self.landing_folder(hour) == manifest.parent:
                hours[hour] = manifest.parent
        return hours

    def landing(self, partition: Partition) -> Landing | None:
        assert isinstance(partition, datetime)
        landed = self.own.landed_or_none(partition)
        if landed is None:
            return None
        paths = tuple(self.own.local(p) for p in self.own.member_paths(landed))
        return Landing(landed.version, landed.fetched_at, paths,
                       lambda version, written: _hour_manifest(landed, paths, version, written))

    def parquet_file(self, partition: Partition) -> Path:
        assert isinstance(partition, datetime)
        folder = self.own.table_folder(self.own.namespace, "events", hour_partition(partition))
        return self.own.local(folder) / "events.parquet"

    def parquet_files(self) -> dict[Path, Partition]:
        root = self.own.local(self.own.root) / self.own.namespace / "events"
        found: dict[Path, Partition] = {}
        for path in sorted(root.glob("upload_date=*/upload_hour=*/events.parquet")):
            hour = _hour(path.parent)
            if hour is not None:
                found[path] = hour
        return found

    def version_files(self, version: Path) -> list[Path]:
        return sorted(version.glob("*.json.gz"))


def _hour_manifest(landed: LandedHour, paths: tuple[Path, ...], version: str,
                   written: Mapping[Path, LandingFile | None]) -> str:
    """The hour without the members left empty (the hour no longer has them)."""
    members = []
    for member, path in zip(landed.members, paths, strict=True):
        new = written.get(path)
        if new is not None:
            members.append(replace(member, file=new.name, bytes=new.bytes))
    return replace(landed, version=version, members=members).to_json()


@dataclass(frozen=True, kw_only=True)
class CohortMemberDays(UserData):
    """Days of cohort membership: one CSV file per cohort, each day's Parquet file,
    ``cohort_members``. A day may list another day's file (a cohort carried forward)."""

    snaps: Snapshots

    def records(self, ids: Ids) -> Records:
        return csv_records(ids, COHORT_COLUMNS)

    def landing_folder(self, partition: Partition) -> Path:
        return self.snaps.lake.local(self.snaps.folder(COHORT_MEMBERS, partition))

    def landed(self) -> dict[Partition, Path]:
        lake = self.snaps.lake
        root = lake.local(lake.landing_folder(self.snaps.source, COHORT_MEMBERS, ""))
        days: dict[Partition, Path] = {}
        for manifest in sorted(root.glob(f"snapshot_date=*/{MANIFEST}")):
            day = _day(manifest.parent)
            if day is not None:
                days[day] = manifest.parent
        return days

    def landing(self, partition: Partition) -> Landing | None:
        landed = self.snaps.landed(COHORT_MEMBERS, partition)
        if landed is None:
            return None
        paths = tuple(self.snaps.paths(landed))
        return Landing(landed.version, landed.fetched_at, paths,
                       lambda version, written: _day_manifest(landed, paths, version, written))

    def parquet_file(self, partition: Partition) -> Path:
        lake = self.snaps.lake
        folder = lake.table_folder(self.snaps.source, COHORT_MEMBERS, day_partition(partition))
        return lake.local(folder) / f"{COHORT_MEMBERS}.parquet"

    def parquet_files(self) -> dict[Path, Partition]:
        lake = self.snaps.lake
        root = lake.local(lake.root) / self.snaps.source / COHORT_MEMBERS
        found: dict[Path, Partition] = {}
        for path in sorted(root.glob(f"snapshot_date=*/{COHORT_MEMBERS}.parquet")):
            day = _day(path.parent)
            if day is not None:
                found[path] = day
        return found

    def version_files(self, version: Path) -> list[Path]:
        return sorted(version.glob("cohort_*"))


def _day_manifest(landed: SnapshotLanding, paths: tuple[Path, ...], version: str,
                  written: Mapping[Path, LandingFile | None]) -> str:
    """The day with every file its own (``files`` names them in the new version); the cohorts'
    entries follow their files."""
    cohorts = list(landed.details.get("cohorts", []))
    files, entries = [], []
    for n, path in enumerate(paths):
        new = written.get(path)
        if new is None:
            continue
        files.append(new.name)
        if n < len(cohorts):
            entries.append({**cohorts[n], "file": new.name, "bytes": new.bytes})
    details = {**landed.details, "cohorts": entries} if cohorts else landed.details
    return replace(landed, version=version, files=files, details=details).to_json()


def user_data(lake: AmplitudeLake, project: Project) -> list[UserData]:
    schema = project.schema
    return [
        ExportHours(
            lake=lake, own=lake, unit="upload hour", table=f"{schema}.events",
            partition_column="_upload_hour", kinds=KINDS, predicate=ROW_MATCH,
            ledger=Ledger(f"{schema}._loads", "upload_hour"), parquet_options=EVENTS_OPTIONS,
            audit=AuditColumns("hours_rewritten", "landing_lines_removed",
                               "parquet_rows_removed", "event_rows_removed",
                               "reject_rows_removed"),
            quarantine=Quarantine(f"{schema}._rejects", "upload_hour", "line"),
            drop_empty_files=True),
        CohortMemberDays(
            lake=lake, snaps=Snapshots(lake, project.namespace), unit="cohort day",
            table=f"{schema}.{COHORT_MEMBERS}", partition_column="snapshot_date", kinds=KINDS,
            predicate=ROW_MATCH,
            ledger=Ledger(f"{schema}._snapshot_loads", "snapshot_date",
                          where=f"table_name = '{COHORT_MEMBERS}'"),
            parquet_options=COHORT_MEMBERS_OPTIONS,
            audit=AuditColumns("cohort_days_rewritten", "cohort_landing_rows_removed",
                               "cohort_parquet_rows_removed", "cohort_member_rows_removed"),
            related=True),
    ]
