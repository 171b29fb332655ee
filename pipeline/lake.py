"""Where things live in the lake, and how an hour's files are replaced without a torn state.

Layout (hive-style, one folder per upload hour)::

    landing/amplitude/export/upload_date=2026-03-01/upload_hour=07/_manifest.json
    landing/amplitude/export/upload_date=2026-03-01/upload_hour=07/v<time>-<id>/*.json.gz
    amplitude/events/upload_date=2026-03-01/upload_hour=07/events.parquet

Both are replaced with one ``os.replace``: the Parquet file itself, and for a landing (whose member
count varies) the manifest that names its current, never modified, version folder.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline import leftovers
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
    version: str  # the folder, inside the hour's landing folder, that holds this fetch
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


class LakeError(RuntimeError):
    pass


class Lake:
    def __init__(self, root: Path, *, superseded_grace_seconds: float = 6 * 3600) -> None:
        self.root = Path(root)
        self.superseded_grace_seconds = superseded_grace_seconds

    def landing_dir(self, upload_hour: datetime) -> Path:
        return self.root / "landing" / "amplitude" / "export" / _hour_folder(upload_hour)

    def events_file(self, upload_hour: datetime) -> Path:
        return self.root / "amplitude" / "events" / _hour_folder(upload_hour) / "events.parquet"

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A private folder on the lake's file system, removed afterwards whatever happens.

        Folders a crashed run left behind (a window's archive can be gigabytes) are swept first.
        """
        parent = self.root / ".scratch"
        parent.mkdir(parents=True, exist_ok=True)
        leftovers.sweep(parent.iterdir())
        path = parent / uuid.uuid4().hex
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def land(self, download: Download) -> list[LandedHour]:
        """Sort a window's archive into per-hour landings, superseding what was there.

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
        """Write a new immutable version folder, then point the manifest at it.

        A reader resolves the manifest once and reads that version's files, so a concurrent
        re-landing of the same hour never pulls files from under it or mixes two fetches.
        """
        folder = self.landing_dir(upload_hour)
        folder.mkdir(parents=True, exist_ok=True)
        version = f"v{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        staged = folder / f".staging-{version}"
        staged.mkdir()
        try:
            for member in members:
                assert reader is not None  # members come from a reader
                reader.copy_member(member, staged / member.file_name)
            hour = LandedHour(
                upload_hour=upload_hour,
                version=version,
                request_window=str(download.window),
                window_hours=download.window.hour_count,
                window_requests=download.attempts,
                window_fetch_seconds=download.seconds,
                window_member_bytes=window_member_bytes,
                members=[LandedMember(m.name, m.file_name, m.compressed_bytes) for m in members],
            )
            os.rename(staged, folder / version)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        _write_atomically(folder / MANIFEST, hour.to_json())
        self._prune(folder, keep=hour.version)
        return hour

    def _prune(self, folder: Path, keep: str) -> None:
        """Drop versions superseded longer ago than any reader of them can still be running."""
        versions = sorted(p.name for p in folder.iterdir() if p.name.startswith("v"))
        now = time.time_ns()
        for name, successor in itertools.pairwise(versions):
            superseded_at = int(successor[1:].split("-")[0])
            if name != keep and now - superseded_at > self.superseded_grace_seconds * 1e9:
                shutil.rmtree(folder / name, ignore_errors=True)

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
        folder = self.landing_dir(landed.upload_hour) / landed.version
        return [folder / m.file for m in landed.members]


def _write_atomically(path: Path, text: str) -> None:
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    staged.write_text(text)
    os.replace(staged, path)
