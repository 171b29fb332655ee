"""Where things live in the lake, and how an hour's files are replaced without a torn state.

Layout (hive-style, one folder per upload hour)::

    landing/amplitude/export/upload_date=2026-03-01/upload_hour=07/  raw .json.gz members + manifest
    amplitude/events/upload_date=2026-03-01/upload_hour=07/events.parquet

A Parquet file is replaced with one ``os.replace``; a landing folder (whose member count varies) is
staged beside its target and swapped in with two renames, so a reader sees the old set or the new.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.amplitude.client import Download
from pipeline.archive import ArchiveError, ArchiveReader, Member

MANIFEST = "_manifest.json"


def _hour_folder(upload_hour: datetime) -> str:
    return f"upload_date={upload_hour:%Y-%m-%d}/upload_hour={upload_hour:%H}"


@dataclass(frozen=True)
class LandedMember:
    name: str  # as named in the archive
    file: str  # as stored in the landing folder
    bytes: int


@dataclass(frozen=True)
class LandedHour:
    """What the landing folder of one hour holds and how it was fetched."""

    upload_hour: datetime
    request_window: str
    window_hours: int
    window_requests: int
    window_fetch_seconds: float
    window_member_bytes: int
    members: list[LandedMember] = field(default_factory=list)
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def member_bytes(self) -> int:
        return sum(m.bytes for m in self.members)

    @property
    def fetch_seconds(self) -> float:
        """This hour's share of its window's fetch time: by bytes, or evenly if all are empty."""
        if self.window_member_bytes:
            share = self.member_bytes / self.window_member_bytes
        else:
            share = 1 / self.window_hours
        return self.window_fetch_seconds * share

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


class LakeError(RuntimeError):
    pass


class Lake:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def landing_dir(self, upload_hour: datetime) -> Path:
        return self.root / "landing" / "amplitude" / "export" / _hour_folder(upload_hour)

    def events_file(self, upload_hour: datetime) -> Path:
        return self.root / "amplitude" / "events" / _hour_folder(upload_hour) / "events.parquet"

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A private folder on the lake's file system, removed afterwards whatever happens."""
        path = self.root / ".scratch" / uuid.uuid4().hex
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def land(self, download: Download) -> list[LandedHour]:
        """Sort a window's archive into per-hour landing folders, replacing what was there.

        Every hour of the window is landed, empty hours too, so "fetched and empty" is on record
        and distinct from "never fetched".
        """
        window = download.window
        if download.path is None:
            return [self._land_hour(download, hour, None, [], 0) for hour in window.hours]
        with ArchiveReader(download.path) as reader:
            by_hour = reader.by_hour()
            strays = sorted(set(by_hour) - set(window.hours))
            if strays:
                raise ArchiveError(
                    f"export window {window} returned members for hours outside it: "
                    + ", ".join(f"{h:%Y-%m-%dT%H}" for h in strays)
                )
            total = sum(m.compressed_bytes for m in reader.members)
            return [self._land_hour(download, hour, reader, by_hour.get(hour, []), total)
                    for hour in window.hours]

    def _land_hour(self, download: Download, upload_hour: datetime,
                   reader: ArchiveReader | None, members: list[Member],
                   window_member_bytes: int) -> LandedHour:
        final = self.landing_dir(upload_hour)
        staged = _staging_beside(final)
        try:
            for member in members:
                reader.copy_member(member, staged / member.file_name)
            hour = LandedHour(
                upload_hour=upload_hour,
                request_window=str(download.window),
                window_hours=download.window.hour_count,
                window_requests=download.attempts,
                window_fetch_seconds=download.seconds,
                window_member_bytes=window_member_bytes,
                members=[LandedMember(m.name, m.file_name, m.compressed_bytes) for m in members],
            )
            (staged / MANIFEST).write_text(hour.to_json())
            swap_in(staged, final)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return hour

    def landed(self, upload_hour: datetime) -> LandedHour:
        manifest = self.landing_dir(upload_hour) / MANIFEST
        try:
            return LandedHour.from_json(manifest.read_text())
        except FileNotFoundError:
            raise LakeError(
                f"upload hour {upload_hour:%Y-%m-%dT%H} has not been landed: materialize "
                "amplitude/raw_export for it first"
            ) from None

    def member_paths(self, landed: LandedHour) -> list[Path]:
        folder = self.landing_dir(landed.upload_hour)
        return [folder / m.file for m in landed.members]


def _staging_beside(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = final.with_name(f".{final.name}.staging-{uuid.uuid4().hex}")
    staged.mkdir()
    return staged


def swap_in(staged: Path, final: Path, attempts: int = 100) -> None:
    """Replace folder ``final`` by ``staged``.

    An interrupted swap leaves at worst no folder (the next run lands it again). Two runs landing
    the same hour at once both succeed: whichever renames last wins, and both hold the same data.
    """
    for _ in range(attempts):
        try:
            os.rename(staged, final)
            return
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        retired = final.with_name(f".{final.name}.retired-{uuid.uuid4().hex}")
        try:
            os.rename(final, retired)
        except FileNotFoundError:
            continue
        shutil.rmtree(retired, ignore_errors=True)
    raise LakeError(f"could not swap in {final}: other writers kept replacing it")
