"""Reading Amplitude's export zip without trusting it.

Members are named ``[<project>/]<project>_<YYYY-MM-DD>_<H>#<n>.json.gz``, the hour unpadded and
``n`` counting from 0 or 1. A name is parsed, never used as a path: what lands on disk is a name
rebuilt from the parsed parts, so ``../x`` or ``/etc/passwd`` cannot escape, and a member that does
not match is an error rather than a silent skip.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MEMBER_NAME = re.compile(
    r"(?:(?P<folder>\d+)/)?(?P<project>\d+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<hour>\d{1,2})"
    r"#(?P<part>\d+)\.json\.gz"
)
COPY_BUFFER = 1 << 20


class ArchiveError(ValueError):
    pass


@dataclass(frozen=True)
class Member:
    name: str  # as written in the archive
    project_id: int
    upload_hour: datetime
    part: int
    compressed_bytes: int  # size of the .json.gz member itself

    @property
    def file_name(self) -> str:
        """A file name built from parsed parts only, safe to create anywhere."""
        hour = self.upload_hour
        return f"{self.project_id}_{hour:%Y-%m-%d}_{hour.hour}#{self.part}.json.gz"


def parse_member_name(name: str) -> tuple[int, datetime, int]:
    match = MEMBER_NAME.fullmatch(name)
    if not match:
        raise ArchiveError(
            f"unexpected archive member {name!r}: expected "
            "<project>_<YYYY-MM-DD>_<H>#<n>.json.gz, optionally under a <project>/ folder"
        )
    try:
        day = datetime.strptime(match["date"], "%Y-%m-%d")
        hour = int(match["hour"])
        upload_hour = day.replace(hour=hour, tzinfo=UTC)
    except ValueError as error:
        raise ArchiveError(f"archive member {name!r} names no valid hour: {error}") from None
    return int(match["project"]), upload_hour, int(match["part"])


class ArchiveReader:
    """The members of one export archive, checked and sorted by (hour, part)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as error:
            raise ArchiveError(f"{path.name} is not a readable zip archive: {error}") from error
        self.members = self._read_directory()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def _read_directory(self) -> list[Member]:
        members = []
        seen: set[tuple[datetime, int]] = set()
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            project_id, upload_hour, part = parse_member_name(info.filename)
            if (upload_hour, part) in seen:
                raise ArchiveError(f"archive holds member {info.filename!r} twice")
            seen.add((upload_hour, part))
            members.append(Member(info.filename, project_id, upload_hour, part, info.file_size))
        return sorted(members, key=lambda m: (m.upload_hour, m.part))

    def by_hour(self) -> dict[datetime, list[Member]]:
        hours: dict[datetime, list[Member]] = {}
        for member in self.members:
            hours.setdefault(member.upload_hour, []).append(member)
        return hours

    def copy_member(self, member: Member, dest: Path) -> None:
        """Stream a member to ``dest`` byte for byte; zipfile checks its CRC as it goes."""
        try:
            with self._zip.open(member.name) as source, open(dest, "wb") as out:
                shutil.copyfileobj(source, out, COPY_BUFFER)
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise ArchiveError(f"member {member.name!r} is damaged: {error}") from error

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members)
