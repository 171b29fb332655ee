"""Amplitude's export in the lake: an archive sorted into per-hour landings, and the hour's Parquet.

An hour of Amplitude's storage export lands the same way, one landing folder per upload hour.
Layout (``pipeline/lake.py`` says how each is replaced atomically)::

    landing/amplitude/export/upload_date=2026-03-01/upload_hour=07/_manifest.json
    landing/amplitude/export/upload_date=2026-03-01/upload_hour=07/v<time>-<id>/*.json.gz
    amplitude/events/upload_date=2026-03-01/upload_hour=07/events.parquet
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from pipeline.amplitude.archive import ArchiveError, ArchiveReader, Member, window_label
from pipeline.lake import Lake, LakeError, hour_partition

if TYPE_CHECKING:  # a normalize or load (a worker's) imports no HTTP client
    from pipeline.amplitude.export import Download
    from pipeline.amplitude.storage_export import HourObjects, StorageExport


@dataclass(frozen=True)
class LandedMember:
    name: str  # as named in the archive, or the object's key below the storage export's prefix
    file: str  # as stored in the landing folder
    bytes: int
    key: str | None = None  # storage export: the object's whole key in the bucket
    etag: str | None = None  # storage export: its ETag when read


@dataclass(frozen=True)
class LandedHour:
    """What the landing folder of one hour holds and how it was fetched."""

    upload_hour: datetime
    version: str  # the folder, inside the hour's landing folder, that holds this fetch
    request_window: str
    window_hours: int
    window_requests: int
    window_fetch_seconds: float
    window_member_bytes: int
    members: list[LandedMember] = field(default_factory=list)
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    source: str = "api"  # "api": an Export API archive; "storage": Amplitude's storage export

    @property
    def signature(self) -> frozenset[tuple[str, str]]:
        """The objects read, as (key, ETag): a storage-export hour whose listing still shows
        exactly these need not be read again."""
        return frozenset((m.key or m.name, m.etag or "") for m in self.members)

    @property
    def objects(self) -> list[dict[str, object]]:
        """What the ledger records of each object read."""
        return [{"key": m.key or m.name, "etag": m.etag, "bytes": m.bytes}
                for m in self.members]

    @property
    def member_bytes(self) -> int:
        return sum(m.bytes for m in self.members)

    @property
    def share(self) -> float:
        """This hour's part of its window: by bytes, or evenly if the whole window is empty."""
        if self.window_member_bytes:
            return self.member_bytes / self.window_member_bytes
        return 1 / self.window_hours

    @property
    def requests(self) -> float:
        """This hour's share of its window's requests, so per-hour figures add up to the total."""
        return self.window_requests * self.share

    @property
    def fetch_seconds(self) -> float:
        return self.window_fetch_seconds * self.share

    def to_json(self) -> str:
        data = asdict(self)
        data["upload_hour"] = self.upload_hour.isoformat()
        data["fetched_at"] = self.fetched_at.isoformat()
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> LandedHour:
        data = json.loads(text)
        data["upload_hour"] = datetime.fromisoformat(data["upload_hour"])
        data["fetched_at"] = datetime.fromisoformat(data["fetched_at"])
        data["members"] = [LandedMember(**m) for m in data["members"]]
        return cls(**data)


class AmplitudeLake(Lake):
    """The lake, with one Amplitude project's places in it (under its ``namespace``)."""

    def __init__(self, root: str | os.PathLike[str], *, namespace: str = "amplitude",
                 **options: Any) -> None:
        super().__init__(root, **options)
        self.namespace = namespace

    def landing_dir(self, upload_hour: datetime) -> PurePath:
        return self.landing_folder(self.namespace, "export", hour_partition(upload_hour))

    def events_file(self, upload_hour: datetime) -> PurePath | None:
        """The hour's current Parquet file, or None before its first normalize."""
        return self.table_file(self.namespace, "events", hour_partition(upload_hour))

    def land(self, download: Download,
             hours: Collection[datetime] | None = None) -> list[LandedHour]:
        """Sort a window's archive into per-hour landings, superseding what was there.

        Every hour of the window (or of ``hours``, a subset of it) is landed, empty hours too, so
        "fetched and empty" is on record and distinct from "never fetched". All of them are
        staged and checked before any is committed: an archive refused anywhere
        (``ArchiveError``, naming the hour and member) lands nothing, and leaves every hour's
        landing as it was. ``hours`` lets a caller land the good hours of an archive whose other
        hours were refused.
        """
        window = download.window
        targets = [h for h in window.hours if hours is None or h in hours]
        if download.path is None:
            return self._land_hours(download, targets, None, {}, 0)
        with ArchiveReader(download.path, window) as reader:
            by_hour = reader.by_hour()
            strays = sorted(set(by_hour) - set(window.hours))
            if strays:
                raise ArchiveError(
                    f"{window_label(window)} returned members for hours outside it: "
                    + ", ".join(f"{h:%Y-%m-%dT%H}" for h in strays),
                    upload_hours=strays, member=by_hour[strays[0]][0].name)
            total = sum(m.compressed_bytes for m in reader.members)
            return self._land_hours(download, targets, reader, by_hour, total)

    def _land_hours(self, download: Download, hours: list[datetime],
                    reader: ArchiveReader | None, by_hour: dict[datetime, list[Member]],
                    window_member_bytes: int) -> list[LandedHour]:
        """Stage every hour, then commit them all: a refusal while staging unwinds every
        staging folder (``Lake.new_version``) before any manifest moves."""
        staged_hours: list[LandedHour] = []
        with contextlib.ExitStack() as stack:
            for upload_hour in hours:
                members = by_hour.get(upload_hour, [])
                version, staged = stack.enter_context(
                    self.new_version(self.landing_dir(upload_hour)))
                for member in members:
                    assert reader is not None  # members come from a reader
                    reader.copy_member(member, staged / member.file_name)
                staged_hours.append(LandedHour(
                    upload_hour=upload_hour,
                    version=version,
                    request_window=str(download.window),
                    window_hours=download.window.hour_count,
                    window_requests=download.attempts,
                    window_fetch_seconds=download.seconds,
                    window_member_bytes=window_member_bytes,
                    members=[LandedMember(m.name, m.file_name, m.compressed_bytes)
                             for m in members],
                ))
        for hour in staged_hours:  # every version folder is in place: point the manifests
            self.commit(self.landing_dir(hour.upload_hour), hour.version, hour.to_json())
        return staged_hours

    def land_stored(self, export: StorageExport, hour: HourObjects) -> LandedHour:
        """Land one hour of Amplitude's storage export, superseding what was there.

        The hour's parts are staged, then the hour is listed again: if anything moved meanwhile
        (``HourChanged``), or a part is refused, nothing is committed and the landing stays as
        it was.
        """
        started, requests = time.monotonic(), export.requests.total
        with self.new_version(self.landing_dir(hour.upload_hour)) as (version, staged):
            for part in hour.parts:
                export.copy_part(part, staged / part.file_name)
            export.unchanged(hour)
        landed = LandedHour(
            upload_hour=hour.upload_hour, version=version,
            request_window=f"{export.location}/{export.project_id}/{export.project_id}_"
            f"{hour.upload_hour:%Y-%m-%d}_{hour.upload_hour.hour}", window_hours=1,
            window_requests=export.requests.total - requests,
            window_fetch_seconds=time.monotonic() - started, window_member_bytes=hour.bytes,
            members=[LandedMember(p.name, p.file_name, p.bytes, key=p.key, etag=p.etag)
                     for p in hour.parts],
            source="storage")
        self.commit(self.landing_dir(hour.upload_hour), version, landed.to_json())
        return landed

    def landed(self, upload_hour: datetime) -> LandedHour:
        landed = self.landed_or_none(upload_hour)
        if landed is None:
            raise LakeError(
                f"upload hour {upload_hour:%Y-%m-%dT%H} has not been landed: materialize "
                "amplitude/raw_export for it first"
            )
        return landed

    def landed_or_none(self, upload_hour: datetime) -> LandedHour | None:
        manifest = self.manifest(self.landing_dir(upload_hour))
        return None if manifest is None else LandedHour.from_json(manifest)

    def member_paths(self, landed: LandedHour) -> list[PurePath]:
        folder = self.landing_dir(landed.upload_hour) / landed.version
        return [folder / m.file for m in landed.members]

