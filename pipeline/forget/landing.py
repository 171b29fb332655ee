"""The landing copies without the users: a new landing version per partition, then the old ones go.

A landing version is never modified (``pipeline/lake.py``), so forgetting writes a new one: each
file that holds none of the users is hard-linked into it (the same bytes, no copy), each file that
does is streamed record by record into a new file that keeps every other record byte for byte
(one filtered copy per file, hard-linked wherever that file was), and, where the source says so,
a file left with no line is dropped. The partition's manifest is then committed atomically, as a
fetch commits it, and every superseded version of the partition is deleted at once instead of
after the lake's grace period: they are where the users' data still is.

Partitions may share files: a cohort carried forward lists an earlier day's file, a Mixpanel
window's body is hard-linked under each of its days. A partition whose file is the users', or
lives in a version that goes, is landed again too, with its files as its own; every partition is
committed before any version is deleted, so one landed later can still read what it shares.

A reader that resolved the manifest before the commit and has not opened its files yet then finds
them gone and fails (its run is retried and reads the new version); one that has them open reads
on (Linux keeps an unlinked file until it is closed). That is the trade: a concurrent run may fail
once, but no copy of a forgotten user outlives the command (docs/forgetting-users.md).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from io import BufferedIOBase
from pathlib import Path

from pipeline import leftovers
from pipeline.forget.contract import Landing, LandingFile, UserData
from pipeline.forget.ids import MIN_TEXT, Ids
from pipeline.forget.matching import Records
from pipeline.lake import MANIFEST, read_manifest, write_atomically
from pipeline.source import Partition

GZIP_LEVEL = 6  # zlib's default; the sources' files are compressed about as well
# Staging left in a partition folder by a killed run, once this old, is swept: it may hold data.
STALE_STAGING_SECONDS = 3600
FileKey = tuple[int, int]  # device and inode: one file under every name it has


class ForgetLandingError(RuntimeError):
    pass


# ---- streaming filters ----

def _open(path: Path) -> BufferedIOBase:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _create(path: Path) -> BufferedIOBase:
    if path.name.endswith(".gz"):  # no name or time in the header: same input, same bytes
        return gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL,
                             fileobj=open(path, "xb"), mtime=0)
    return open(path, "xb")


def _close(out: BufferedIOBase) -> None:
    out.close()
    inner = getattr(out, "fileobj", None)  # GzipFile leaves a file object it was given open
    if inner is not None:
        inner.close()


def _unreadable(path: Path, error: BaseException) -> ForgetLandingError:
    return ForgetLandingError(f"{path} cannot be read ({type(error).__name__}); it was left as "
                              "it was")


def count(path: Path, records: Records) -> int:
    """How many of the users' records the file holds; reads it once, stores nothing."""
    try:
        with _open(path) as data:
            return sum(1 for theirs, _ in records(data) if theirs)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as error:
        raise _unreadable(path, error) from None


def copy_without(src: Path, dst: Path, records: Records) -> tuple[int, int]:
    """Write ``dst`` with every record of ``src`` that is not the users', byte for byte; return
    (records kept, records removed)."""
    kept = removed = 0
    try:
        with _open(src) as data:
            out = _create(dst)
            try:
                for theirs, line in records(data):
                    if theirs:
                        removed += 1
                    else:
                        out.write(line)
                        kept += 1
            finally:
                _close(out)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as error:
        raise _unreadable(src, error) from None
    return kept, removed


# ---- versions ----

def current_version(folder: Path) -> str | None:
    """The version the partition's manifest names, or None if it has none."""
    text = read_manifest(folder)
    if text is None:
        return None
    try:
        return str(json.loads(text)["version"])
    except (ValueError, KeyError, TypeError):
        raise ForgetLandingError(f"{folder / MANIFEST} is not a landing manifest; fix or "
                                 "remove it, then run again") from None


def versions(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("v*") if p.is_dir()) if folder.is_dir() else []


def drop_superseded(folder: Path, only: Callable[[Path], bool]) -> int:
    """Delete the partition's version folders that ``only`` picks, except the one its manifest
    names, and staging a killed run left there; return the versions deleted.

    Callers pick among the versions they listed before they wrote theirs, and the manifest is
    read after that: a version another run lands meanwhile is never deleted."""
    listed = versions(folder)
    current = current_version(folder)
    removed = 0
    for path in listed:
        if path.name != current and only(path):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    if folder.is_dir():
        leftovers.sweep(folder.glob(".staging-*"), STALE_STAGING_SECONDS)
    return removed


def scrub_notes(folder: Path, ids: Ids) -> int:
    """Take the ids out of the notes a failed stage keeps beside a landing
    (``_refused-<stage>.json``): a cause can quote a line."""
    scrubbed = 0
    for note in sorted(folder.glob("_refused-*.json")) if folder.is_dir() else []:
        with contextlib.suppress(FileNotFoundError, UnicodeDecodeError):
            text = note.read_text()
            clean = ids.scrub(text, min_length=MIN_TEXT)
            if clean != text:
                write_atomically(note, clean)
                scrubbed += 1
    return scrubbed


def _key(path: Path) -> FileKey | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


# ---- a family's partitions, landed again ----

@dataclass
class LandingChange:
    """What forgetting did to a family's landings."""

    rewritten: set[Partition] = field(default_factory=set)
    versions: dict[str, str] = field(default_factory=dict)  # superseded version -> new one
    records_removed: int = 0
    versions_removed: int = 0


@dataclass(frozen=True)
class Relanded:
    superseded: str
    version: str
    records_removed: int


class _Files:
    """What is known of the family's files: whose records each holds, read once per file."""

    def __init__(self, records: Records, folders: Mapping[Partition, Path]) -> None:
        self.records = records
        self.folders = folders
        self.dirty: dict[FileKey, bool] = {}
        self.filtered: dict[FileKey, Path] = {}  # a dirty file -> its copy without the users
        self._holding: dict[Path, bool] = {}

    def holds(self, partition: Partition, path: Path) -> bool:
        key = _key(path)
        if key is None:
            if path.parent.parent == self.folders[partition]:
                raise ForgetLandingError(f"{path} is gone, though the landing lists it; land "
                                         "the partition again, then run the request again")
            return False  # carried forward from a version gone since: nothing can read it
        if key not in self.dirty:
            self.dirty[key] = count(path, self.records) > 0
        return self.dirty[key]

    def known_dirty(self, path: Path) -> bool:
        key = _key(path)
        return key is not None and self.dirty.get(key, False)

    def version_holds(self, data: UserData, version: Path) -> bool:
        if version not in self._holding:
            self._holding[version] = any(count(f, self.records)
                                         for f in data.version_files(version))
        return self._holding[version]


def forget_landings(data: UserData, plan: Mapping[Partition, bool], ids: Ids, *,
                    scan_superseded: bool = False) -> LandingChange:
    """Land again, without the users' records, the partitions of ``plan`` whose landing holds
    any (and those sharing a file or fetch with them), then delete superseded versions: all of
    a partition landed again or known to have held the users (``plan``'s flag), else, with
    ``scan_superseded``, those that hold a record of theirs."""
    change = LandingChange()
    folders = data.landed()
    files = _Files(data.records(ids), folders)
    landings: dict[Partition, Landing] = {}
    for partition in (folders if data.related else [p for p in plan if p in folders]):
        found = data.landing(partition)
        if found is not None:
            landings[partition] = found
    wanted = {p for p in plan if p in landings}
    affected = {p for p in wanted if plan[p]}
    fetches: dict[str, set[Partition]] = {}
    for partition, landing in landings.items():
        if landing.fetch is not None:
            fetches.setdefault(landing.fetch, set()).add(partition)
    for partition in list(wanted):
        mates = fetches.get(landings[partition].fetch or "", set())
        wanted |= mates
        if partition in affected:
            affected |= mates

    def goes(partition: Partition, version: Path) -> bool:
        if partition in rewrite:
            return True
        if version.name == landings[partition].version:
            return False
        return partition in affected or (scan_superseded and files.version_holds(data, version))

    rewrite = {p for p in wanted
               if any([files.holds(p, f) for f in landings[p].files])}
    while True:  # a partition sharing a dirty file, or one in a version that goes, goes too
        doomed = {v for p in wanted | rewrite for v in versions(folders[p]) if goes(p, v)}
        more = {p for p, landing in landings.items() if p not in rewrite and any(
            f.parent in doomed or files.known_dirty(f) for f in landing.files)}
        if not more:
            break
        rewrite |= more
    for partition in sorted(rewrite):
        done = land_again(data, folders[partition], landings[partition], partition, files)
        change.versions[done.superseded] = done.version
        change.records_removed += done.records_removed
        change.rewritten.add(partition)
    for partition in sorted(set(plan) | wanted | rewrite):
        scrub_notes(data.landing_folder(partition), ids)
        if partition in wanted | rewrite:
            change.versions_removed += drop_superseded(folders[partition], doomed.__contains__)
    return change


def land_again(data: UserData, folder: Path, landing: Landing, partition: Partition,
               files: _Files) -> Relanded:
    """Commit a new version of the partition holding its files without the users' records."""
    written: dict[Path, LandingFile | None] = {}
    removed = 0
    with data.lake.new_version(folder) as (version, staged):
        for path in landing.files:
            key = _key(path)
            if key is None:
                files.holds(partition, path)  # refuses a partition's own file gone missing
                written[path] = None  # carried forward and lost: the partition could not
                continue  # read it either
            target = staged / path.name
            if key in files.filtered:  # a file partitions share: one copy, linked into each
                os.link(files.filtered[key], target)
            elif files.holds(partition, path):
                kept, gone = copy_without(path, target, files.records)
                removed += gone
                if not kept and data.drop_empty_files:
                    target.unlink()
                    written[path] = None
                    continue
                files.filtered[key] = folder / version / target.name  # where it is once renamed
            else:
                os.link(path, target)
            written[path] = LandingFile(target.name, target.stat().st_size)
    data.lake.commit(folder, version, landing.relanded(version, written))
    return Relanded(landing.version, version, removed)
