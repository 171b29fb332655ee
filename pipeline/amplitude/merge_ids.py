"""An organization's merged-ID files: one gzip file an hour, into each of its projects'
``merge_ids``, swapped per hour like the events.

Amplitude writes ``{prefix}/-{orgId}/-{orgId}_{yyyy-MM-dd}_{H}.json.gz`` (no part number) only for
hours that hold merges, with rows ``{scope, merge_time, merge_server_time, amplitude_id,
merged_amplitude_id}``, times in epoch milliseconds (shared/reference: amplitude-storage-export.md).
So a missing file is an hour without merges, once it is late enough that it would have been
written (``ready_after``); before that the hour fails and is tried again. The file is read only
if it is still the object listed (``bucket_reader``), lands in the lake, becomes Parquet with
typed timestamps, and is swapped in with its ledger row in ``_merge_loads``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePath

import duckdb

from pipeline import engine, sql
from pipeline.amplitude.archive import ArchiveError, hours_label
from pipeline.amplitude.bucket_reader import BucketReader, StoredObject
from pipeline.amplitude.landing import AmplitudeLake
from pipeline.engine import EngineLimits
from pipeline.lake import LakeError, hour_partition
from pipeline.partition_swap import LedgerRow, PartitionLoad, load_partition

DATASET = "merge_ids"  # the landing's and the table's name in the lake
FILE = "merge_ids.json.gz"
COLUMNS = ("scope", "merge_time", "merge_server_time", "amplitude_id", "merged_amplitude_id")


class MergeFileError(ArchiveError):
    """A merged-ID file that cannot be read as Amplitude documents it."""


@dataclass(kw_only=True)
class MergeIdFiles(BucketReader):
    """The organization's folder ``{prefix}/-{org_id}/``."""

    org_id: int
    ready_after: timedelta = timedelta(hours=3)

    @property
    def what(self) -> str:
        return f"the merged-ID files in {self.location}"

    def name(self, hour: datetime) -> str:
        return f"-{self.org_id}_{hour:%Y-%m-%d}_{hour.hour}.json.gz"

    def list_hours(self, hours: list[datetime]) -> dict[datetime, StoredObject | None]:
        """Each hour's file as listed now (None: there is none), one listing per day."""
        folder = self.location.key(f"-{self.org_id}/")
        found: dict[str, StoredObject] = {}
        for day in sorted({h.date() for h in hours}):
            for stored in self.list_keys(f"{folder}-{self.org_id}_{day:%Y-%m-%d}_"):
                found[stored.key[len(folder):]] = stored
        return {hour: found.get(self.name(hour)) for hour in hours}

    def not_ready(self, hour: datetime, stored: StoredObject | None,
                  now: datetime) -> str | None:
        ready = hour + timedelta(hours=1) + self.ready_after
        if stored is None and now < ready:
            return (f"{hours_label([hour])}: no merged-ID file {self.name(hour)!r} yet; an hour "
                    f"without one counts as having no merges from {ready:%Y-%m-%dT%H:%M}Z")
        return None


@dataclass(frozen=True)
class LandedMerges:
    """What one hour's landing holds: the file as read (or none: no merges that hour)."""

    upload_hour: datetime
    version: str
    key: str | None = None
    etag: str | None = None
    bytes: int = 0
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def objects(self) -> list[dict[str, object]]:
        return [] if self.key is None else [{"key": self.key, "etag": self.etag,
                                             "bytes": self.bytes}]

    def to_json(self) -> str:
        data = asdict(self)
        data.update(upload_hour=self.upload_hour.isoformat(),
                    fetched_at=self.fetched_at.isoformat())
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> LandedMerges:
        data = json.loads(text)
        data.update(upload_hour=datetime.fromisoformat(data["upload_hour"]),
                    fetched_at=datetime.fromisoformat(data["fetched_at"]))
        return cls(**data)


def landing_dir(lake: AmplitudeLake, hour: datetime) -> PurePath:
    return lake.landing_folder(lake.namespace, DATASET, hour_partition(hour))


def landed(lake: AmplitudeLake, hour: datetime) -> LandedMerges | None:
    text = lake.manifest(landing_dir(lake, hour))
    return None if text is None else LandedMerges.from_json(text)


def land(lake: AmplitudeLake, files: MergeIdFiles, hour: datetime,
         stored: StoredObject | None) -> LandedMerges:
    """The hour's file into a new landing version (an empty one when there is no file)."""
    with lake.new_version(landing_dir(lake, hour)) as (version, staged):
        if stored is not None:
            files.copy_object(stored, staged / FILE, label=hours_label([hour]))
    done = LandedMerges(hour, version, *((stored.key, stored.etag, stored.bytes)
                                         if stored is not None else ()))
    lake.commit(landing_dir(lake, hour), version, done.to_json())
    return done


_TYPED = ("scope::BIGINT AS scope, epoch_ms(merge_time::BIGINT)::TIMESTAMPTZ AS merge_time, "
          "epoch_ms(merge_server_time::BIGINT)::TIMESTAMPTZ AS merge_server_time, "
          "amplitude_id::BIGINT AS amplitude_id, "
          "merged_amplitude_id::BIGINT AS merged_amplitude_id")


_EMPTY = (("scope", "BIGINT"), ("merge_time", "TIMESTAMPTZ"), ("merge_server_time", "TIMESTAMPTZ"),
          ("amplitude_id", "BIGINT"), ("merged_amplitude_id", "BIGINT"))


def write_parquet(lake: AmplitudeLake, done: LandedMerges, limits: EngineLimits) -> int:
    """The landed file as the hour's Parquet file, typed; returns its rows. A file that is not
    Amplitude's documented rows is a ``MergeFileError`` naming it."""
    hour = done.upload_hour
    folder = landing_dir(lake, hour) / done.version
    with lake.scratch() as scratch, \
            lake.staged_table_file(lake.namespace, DATASET, hour_partition(hour)) as out:
        if done.key is None:
            rows_sql = f"SELECT {', '.join(f'NULL::{t} AS {c}' for c, t in _EMPTY)} LIMIT 0"
        else:
            local = scratch / FILE
            if lake.remote:
                lake.download(folder / FILE, local)
            else:
                local = Path(lake.local(folder / FILE))
            columns = ", ".join(f"'{c}': 'VARCHAR'" for c in COLUMNS)
            rows_sql = (f"SELECT {_TYPED} FROM read_json({sql.literal(str(local))}, format = "
                        f"'newline_delimited', compression = 'gzip', columns = {{{columns}}})")
        with engine.work_engine(limits, scratch) as con:
            try:
                return _copy(con, rows_sql, hour, done.key, out)
            except duckdb.Error as error:
                raise MergeFileError(f"{hours_label([hour])}: merged-ID file {done.key!r} "
                                     f"cannot be read: {error}", member=done.key) from None


def _copy(con: duckdb.DuckDBPyConnection, rows_sql: str, hour: datetime, key: str | None,
          out: Path) -> int:
    con.execute(f"COPY (SELECT *, ?::TIMESTAMPTZ AS _upload_hour, ?::VARCHAR AS _source_key "
                f"FROM ({rows_sql})) TO {sql.literal(str(out))} (FORMAT parquet, COMPRESSION zstd)",
                [hour, key])
    row = con.execute("SELECT count(*) FROM read_parquet(?)", [str(out)]).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True, kw_only=True)
class MergeLoad(LedgerRow):
    """One row of ``_merge_loads``: the latest load of an hour's merged ids."""

    upload_hour: datetime
    objects: list[dict[str, object]]

    @classmethod
    def from_landing(cls, done: LandedMerges) -> MergeLoad:
        return cls(upload_hour=done.upload_hour, objects=done.objects,
                   landing_version=done.version, fetched_at=done.fetched_at)


def load(con: duckdb.DuckDBPyConnection, schema: str, parquet: str, record: MergeLoad, *,
         max_drop_share: float | None) -> MergeLoad:
    """Swap the hour's merged ids into ``schema``; the row-drop guard as for events."""
    hour = record.upload_hour
    done = load_partition(con, PartitionLoad(
        table=f"{schema}.merge_ids", column="_upload_hour", value=hour, parquet=parquet,
        what=f"merged ids of {hours_label([hour])}",
        key=("amplitude_id", "merged_amplitude_id", "merge_server_time"),
        compared=["scope", "merge_time"], ledger=f"{schema}._merge_loads",
        ledger_key="upload_hour", ledger_row=record.own_columns(),
        max_drop_share=max_drop_share))
    return record.loaded(done)


def parquet_url(lake: AmplitudeLake, hour: datetime) -> str:
    place = lake.table_file(lake.namespace, DATASET, hour_partition(hour))
    if place is None:
        raise LakeError(f"merged ids of {hours_label([hour])} have no Parquet file")
    return lake.url(place)


def bring_in(lake: AmplitudeLake, files: MergeIdFiles, hour: datetime,
             stored: StoredObject | None, limits: EngineLimits) -> LandedMerges:
    """The hour's file landed as listed, and its Parquet file written; neither is done again
    while the bucket holds the same object."""
    done = landed(lake, hour)
    listed = (stored.key, stored.etag) if stored is not None else (None, None)
    fresh = done is None or (done.key, done.etag) != listed
    if fresh:
        done = land(lake, files, hour, stored)
    assert done is not None
    if fresh or lake.table_file(lake.namespace, DATASET, hour_partition(hour)) is None:
        write_parquet(lake, done, limits)
    return done
