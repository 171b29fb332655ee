"""Reading Amplitude's export zip without trusting it.

Members are named ``[<project>/]<project>_<YYYY-MM-DD>_<H>#<n>.json.gz``, the hour unpadded and
``n`` counting from 0 or 1. A name is parsed, never used as a path: what lands on disk is a name
rebuilt from the parsed parts, so ``../x`` or ``/etc/passwd`` cannot escape, and a member that does
not match (``../``, an absolute path, a backslash, a NUL that ``zipfile`` would silently cut the
name at, a newline, digits of another script) is an error rather than a silent skip.

Every member is checked while it is copied, at no extra pass over its bytes (``check_gzip``):
it must start as gzip, and its trailer must be one a whole gzip member can have, within the
inflation limit (``MAX_INFLATION``). Anything refused raises ``ArchiveError`` naming the upload
hour(s) and the member, and nothing of the archive lands.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.hours import ExportWindow

MEMBER_NAME = re.compile(
    r"(?:(?P<folder>[0-9]+)/)?(?P<project>[0-9]+)_(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})_"
    r"(?P<hour>[0-9]{1,2})#(?P<part>[0-9]+)\.json\.gz",
    re.ASCII,
)
COPY_BUFFER = 1 << 20

# The decompression-bomb limit: no member may inflate to more than this many times its own size.
#
# Why 256. Real exports inflate about 7-8x (the simulator's members at gzip level 6: 7.4x). The
# most any deflate stream can reach is about 1032:1: a 258-byte copy coded in 2 bits, which needs
# the copied text to sit at most 4 bytes back (a distance code without extra bits), i.e. runs of one
# short pattern. A copy from further back costs the distance's extra bits as well: at least
# 7 + 2 bits per 258 bytes (229:1) once the source is more than 256 bytes back, 9 + 2 (187:1) once
# it is more than 1 KB back. An export line is over 1 KB on its own (55 keys) and carries a fresh
# uuid, insert id, event id and timestamps, so even an hour of one event repeated with new ids
# cannot reach 187:1 by repeating earlier lines; only a member made mostly of periodic filler (a
# run of zeros, one character repeated), which is what bombs are made of, can pass 256:1. So no real
# export, of any size up to the 4 GB cap, hits it, and a member's inflated size stays within 256
# times the bytes actually downloaded, as far as its trailer can tell (``check_gzip`` says how far).
MAX_INFLATION = 256

GZIP_MAGIC = b"\x1f\x8b\x08"  # ID1, ID2, CM=deflate
_GZIP_RESERVED_FLAGS = 0xE0
_GZIP_MIN_SIZE = 20  # 10-byte header, the 2-byte empty deflate stream, the 8-byte trailer
_FLUSH_MARKER = b"\x00\x00\xff\xff"  # how a deflate stream ends where its writer flushed
_ISIZE_RANGE = 1 << 32  # the trailer holds the inflated size modulo 2^32


class ArchiveError(ValueError):
    """An export archive, or one of its members, that cannot be landed as it is.

    The message names the upload hour(s) (or the window) and the member; ``upload_hours`` lists
    the hours the problem is known to touch (empty: the whole window) and ``member`` the member's
    name as the archive spells it (None: the archive as a whole).
    """

    def __init__(self, message: str, *, upload_hours: Sequence[datetime] = (),
                 member: str | None = None) -> None:
        super().__init__(message)
        self.upload_hours = tuple(upload_hours)
        self.member = member


class MemberRefused(ArchiveError):
    """A member whose gzip data cannot be trusted: not gzip, cut short, or a decompression bomb."""


def hours_label(hours: Sequence[datetime]) -> str:
    """``upload hour 2026-03-01T17`` or ``upload hours 2026-03-01T17..2026-03-01T19``."""
    if not hours:
        return "the export"
    if len(hours) == 1:
        return f"upload hour {hours[0]:%Y-%m-%dT%H}"
    return f"upload hours {hours[0]:%Y-%m-%dT%H}..{hours[-1]:%Y-%m-%dT%H}"


def window_label(window: ExportWindow) -> str:
    """What a message calls a window: its hours as partitions are named, then the API's form."""
    return f"{hours_label(window.hours)} (export window {window})"


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
            "<project>_<YYYY-MM-DD>_<H>#<n>.json.gz, optionally under a <project>/ folder",
            member=name,
        )
    try:
        day = datetime.strptime(match["date"], "%Y-%m-%d")
        hour = int(match["hour"])
        upload_hour = day.replace(hour=hour, tzinfo=UTC)
    except ValueError as error:
        raise ArchiveError(f"archive member {name!r} names no valid hour: {error}",
                           member=name) from None
    return int(match["project"]), upload_hour, int(match["part"])


def check_gzip(head: bytes, tail: bytes, size: int, limit: int = MAX_INFLATION) -> str | None:
    """What is wrong with a gzip member, judged from its first bytes, its last 8 and its size;
    None when nothing shows. Costs nothing beyond the copy that reads the bytes anyway.

    The trailer is the last 8 bytes: the CRC-32 and the inflated size modulo 2^32 (ISIZE) of
    the data. What this can tell, and what it cannot:

    - **Not gzip**: exact. A member must start with the gzip magic and the deflate method, and
      use no reserved header flag.
    - **A bomb**: a member whose trailer claims more than ``limit`` times the member's size is
      refused. The check speaks only while ``limit x size`` stays under 4 GiB (members under
      16 MiB at 256x), where an honest ISIZE cannot have wrapped; for a larger member every
      ISIZE is consistent with a size within the limit, so the check passes it. The trailer is
      the sender's word: a forged one (a small ISIZE on a bomb) passes, and so does a bomb of
      more than 4 GiB that picks its size modulo 2^32. Only inflating the member would tell,
      and that is the second full decompression pass this check exists to avoid (measured: 0.2 s
      per 100 MB inflated, a quarter of normalizing the member, on top of DuckDB's own pass).
    - **Cut short**: a member cut anywhere but at a line's end fails in DuckDB, which names the
      member and the line; a cut at a line's end reads as fewer lines, and only the trailer can
      show it. A member cut where its writer flushed ends with the deflate flush marker
      ``00 00 ff ff`` instead of a trailer: refused (a whole member ends so only if its inflated
      size is exactly 4,294,901,760 modulo 2^32: one in 2^32). Cut elsewhere, its last 4 bytes
      are deflate data read as an ISIZE: refused when that exceeds the limit, which for a random
      value is all but ``limit x size / 2^32`` of the time (a 100 KB member: 99.4 %; a 13 MB
      member, 50,000 events: 18 %). The CRC would settle it, but only a full inflation computes
      it (DuckDB's reader checks neither the CRC nor that the stream ended).
    """
    if size < _GZIP_MIN_SIZE or not head.startswith(GZIP_MAGIC):
        return f"is not gzip data (it starts with {head[:8]!r})"
    if len(head) > 3 and head[3] & _GZIP_RESERVED_FLAGS:
        return f"has a gzip header with reserved flags set ({head[3]:#04x})"
    if tail[-4:] == _FLUSH_MARKER:
        return ("ends at a deflate flush point (00 00 ff ff) where its gzip trailer should be: "
                "it was cut short")
    isize = int.from_bytes(tail[-4:], "little")
    if limit * size < _ISIZE_RANGE and isize > limit * size:
        return (f"claims to inflate to {isize:,} bytes, {isize / size:,.0f} times its "
                f"{size:,} bytes, beyond the limit of {limit}x that no real export reaches: a "
                "decompression bomb, or a member cut short whose last bytes are not a gzip "
                "trailer")
    return None


class ArchiveReader:
    """The members of one export archive, checked and sorted by (hour, part)."""

    def __init__(self, path: Path, window: ExportWindow | None = None,
                 limit: int = MAX_INFLATION) -> None:
        self.path = path
        self.limit = limit
        self.where = window_label(window) if window is not None else path.name
        self.hours = window.hours if window is not None else []
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise ArchiveError(f"{self.where}: the archive is not a readable zip: {error}",
                               upload_hours=self.hours) from error
        try:
            self.members = self._read_directory()
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def _refuse(self, message: str, name: str) -> ArchiveError:
        return ArchiveError(f"{self.where}: {message}", upload_hours=self.hours, member=name)

    def _read_directory(self) -> list[Member]:
        members = []
        seen: set[tuple[datetime, int]] = set()
        for info in self._zip.infolist():
            if info.orig_filename != info.filename:  # zipfile cut a NUL off, or turned a \ to /
                raise self._refuse(f"unexpected archive member {info.orig_filename!r}: its name "
                                   "holds a NUL or a path separator", info.orig_filename)
            if info.is_dir():
                continue
            try:
                project_id, upload_hour, part = parse_member_name(info.filename)
            except ArchiveError as error:
                raise self._refuse(str(error), info.filename) from None
            if (upload_hour, part) in seen:
                raise self._refuse(f"the archive holds member {info.filename!r} twice",
                                   info.filename)
            if info.flag_bits & 0x1:
                raise self._refuse(f"archive member {info.filename!r} is encrypted",
                                   info.filename)
            if info.file_size > self.limit * max(info.compress_size, 1):
                raise self._refuse(
                    f"archive member {info.filename!r} would inflate from {info.compress_size:,} "
                    f"to {info.file_size:,} bytes in the zip, beyond the limit of "
                    f"{self.limit}x: a decompression bomb", info.filename)
            seen.add((upload_hour, part))
            members.append(Member(info.filename, project_id, upload_hour, part, info.file_size))
        return sorted(members, key=lambda m: (m.upload_hour, m.part))

    def by_hour(self) -> dict[datetime, list[Member]]:
        hours: dict[datetime, list[Member]] = {}
        for member in self.members:
            hours.setdefault(member.upload_hour, []).append(member)
        return hours

    def copy_member(self, member: Member, dest: Path) -> None:
        """Stream a member to ``dest`` byte for byte, zipfile checking its CRC as it goes and
        ``check_gzip`` its first and last bytes; a refused member leaves no file."""
        head = tail = b""
        size = 0
        try:
            with open(dest, "wb") as out:
                for chunk in self._chunks(member):
                    out.write(chunk)
                    if len(head) < 16:
                        head += chunk[:16 - len(head)]
                    tail = (tail + chunk[-8:])[-8:]
                    size += len(chunk)
            problem = check_gzip(head, tail, size, self.limit)
            if problem:
                raise MemberRefused(
                    f"{hours_label([member.upload_hour])}: archive member {member.name!r} "
                    f"{problem}", upload_hours=[member.upload_hour], member=member.name)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def _chunks(self, member: Member) -> Iterator[bytes]:
        """The member's bytes; a read that fails is the archive's fault, named as such (a write
        that fails, a full disk, is not, and is left to the caller)."""
        try:
            with self._zip.open(member.name) as source:
                while chunk := source.read(COPY_BUFFER):
                    yield chunk
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError,
                NotImplementedError) as error:
            raise MemberRefused(
                f"{hours_label([member.upload_hour])}: archive member {member.name!r} is "
                f"damaged: {error}", upload_hours=[member.upload_hour],
                member=member.name) from error

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members)
