"""The landing copies without the users: a new landing version per partition, then the old ones go.

A landing version is never modified (``pipeline/lake.py``), so forgetting writes a new one: each
file that holds none of the users is hard-linked into it (the same bytes, no copy), each file that
does is streamed line by line (record by record for a CSV) into a new file that keeps every other
line byte for byte, and a file left with no line is dropped. The partition's manifest is then
committed atomically, as a fetch commits it, and every superseded version of the partition is
deleted at once instead of after the lake's grace period: they are where the users' data still is.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from io import BufferedIOBase
from pathlib import Path

from pipeline import leftovers
from pipeline.amplitude.landing import AmplitudeLake, LandedMember
from pipeline.forget.ids import MIN_TEXT, Ids
from pipeline.lake import MANIFEST, LakeError, read_manifest, write_atomically
from pipeline.snapshots import SnapshotLanding, Snapshots

COHORT_MEMBERS = "cohort_members"
GZIP_LEVEL = 6  # zlib's default; the export's members are compressed about as well
# Staging left in a partition folder by a killed run, once this old, is swept: it may hold data.
STALE_STAGING_SECONDS = 3600


class ForgetLandingError(RuntimeError):
    pass


@dataclass
class LandingChange:
    """What forgetting did to one partition's landing."""

    lines_removed: int = 0
    superseded: str | None = None  # the version replaced by a new one
    version: str | None = None  # the new version, when one was written
    versions_removed: int = 0


# ---- streaming filters ----

# A file's records (a line, or a CSV record with its line ends) as their bytes, each with whether
# it is one of the users'.
Records = Callable[[BufferedIOBase], Iterator[tuple[bool, bytes]]]


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


def json_lines(ids: Ids) -> Records:
    """Each line of an export member, and whether it is one of the users'."""

    def records(data: BufferedIOBase) -> Iterator[tuple[bool, bytes]]:
        for line in data:
            yield ids.event_line_matches(line), line

    return records


def csv_rows(ids: Ids) -> Records:
    """Each record of a cohort file (``"amplitude_id","user_id",...``; a quoted field may span
    lines), as its original bytes, and whether it is one of the users'. The header is kept."""

    def records(data: BufferedIOBase) -> Iterator[tuple[bool, bytes]]:
        raw: list[bytes] = []

        def text() -> Iterator[str]:
            for line in data:
                raw.append(line)
                yield line.decode("utf-8")

        for number, row in enumerate(csv.reader(text(), strict=True)):
            chunk = b"".join(raw)
            raw.clear()
            yield number > 0 and len(row) >= 2 and ids.row_matches(
                row[0], row[1] or None), chunk
        if raw:
            yield False, b"".join(raw)

    return records


def count(path: Path, records: Records) -> int:
    """How many of the users' lines (or records) the file holds; reads it once, stores nothing."""
    try:
        with _open(path) as data:
            return sum(1 for theirs, _ in records(data) if theirs)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as error:
        raise ForgetLandingError(f"{path} cannot be read ({type(error).__name__}); it was "
                                 "left as it was") from None


def copy_without(src: Path, dst: Path, records: Records) -> tuple[int, int]:
    """Write ``dst`` with every line of ``src`` that is not the users', byte for byte; return
    (lines kept, lines removed)."""
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
        raise ForgetLandingError(f"{src} cannot be read ({type(error).__name__}); it was "
                                 "left as it was") from None
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


def holds_any(pattern: str, records: Records) -> Callable[[Path], bool]:
    """Whether a version folder has a file (``pattern``) holding one of the users' lines."""
    return lambda version: any(count(f, records) for f in sorted(version.glob(pattern)))


# ---- the export's hours ----

def scrub_notes(folder: Path, ids: Ids) -> int:
    """Take the ids out of the notes a failed stage keeps beside the landing
    (``_refused-<stage>.json``, pipeline/amplitude/refusals.py): a cause can quote a line."""
    scrubbed = 0
    for note in sorted(folder.glob("_refused-*.json")) if folder.is_dir() else []:
        with contextlib.suppress(FileNotFoundError, UnicodeDecodeError):
            text = note.read_text()
            clean = ids.scrub(text, min_length=MIN_TEXT)
            if clean != text:
                write_atomically(note, clean)
                scrubbed += 1
    return scrubbed


def forget_hour(lake: AmplitudeLake, hour: datetime, ids: Ids, *, affected: bool,
                scan_superseded: bool = False) -> LandingChange:
    """Land the hour again without the users' lines, if its current version holds any.

    The superseded versions are deleted as well when the hour was rewritten or is ``affected``
    (the warehouse or its Parquet file holds the users: its landings did); otherwise, with
    ``scan_superseded``, those that hold a line of the users.
    """
    folder = lake.local(lake.landing_dir(hour))
    change = LandingChange()
    records = json_lines(ids)
    before = {p.name for p in versions(folder)}  # listed first: see drop_superseded
    try:
        landed = lake.landed(hour)
    except LakeError:
        landed = None  # never landed, or its manifest is gone: nothing current to rewrite
    paths = [lake.local(p) for p in lake.member_paths(landed)] if landed is not None else []
    dirty = {p.name for p in paths if count(p, records)}
    if landed is not None and dirty:
        members: list[LandedMember] = []
        with lake.new_version(folder) as (version, staged):
            for member, path in zip(landed.members, paths, strict=True):
                target = staged / member.file
                if path.name not in dirty:
                    os.link(path, target)
                    members.append(member)
                    continue
                kept, removed = copy_without(path, target, records)
                change.lines_removed += removed
                if kept:
                    members.append(replace(member, bytes=target.stat().st_size))
                else:
                    target.unlink()  # nothing left in it: the hour no longer has this member
        new = replace(landed, version=version, members=members)
        lake.commit(folder, version, new.to_json())
        change.superseded, change.version = landed.version, version
    scrub_notes(folder, ids)
    if dirty or affected:
        change.versions_removed = drop_superseded(folder, lambda p: p.name in before)
    elif scan_superseded:
        holds = holds_any("*.json.gz", records)
        change.versions_removed = drop_superseded(folder,
                                                  lambda p: p.name in before and holds(p))
    return change


# ---- cohort membership: one landing a day, whose files may be earlier days' ----

@dataclass(frozen=True)
class CohortDays:
    """Every day's cohort-member landing, and where each file of each day really is."""

    snaps: Snapshots
    landings: dict[date, SnapshotLanding]

    @classmethod
    def read(cls, snaps: Snapshots) -> CohortDays:
        landings = {}
        root = snaps.lake.local(snaps.lake.landing_folder(snaps.source, COHORT_MEMBERS, ""))
        for manifest in sorted(root.glob(f"snapshot_date=*/{MANIFEST}")):
            try:
                day = date.fromisoformat(manifest.parent.name.removeprefix("snapshot_date="))
            except ValueError:
                continue
            landing = snaps.landed(COHORT_MEMBERS, day)
            if landing is not None:
                landings[day] = landing
        return cls(snaps, landings)

    def folder(self, day: date) -> Path:
        return self.snaps.lake.local(self.snaps.folder(COHORT_MEMBERS, day))

    def files(self, day: date) -> list[Path]:
        return self.snaps.paths(self.landings[day])


@dataclass
class CohortChange:
    days_rewritten: set[date] = field(default_factory=set)
    rows_removed: int = 0
    versions_removed: int = 0
    versions: dict[str, str] = field(default_factory=dict)  # superseded version -> new one


def forget_cohort_days(snaps: Snapshots, days: set[date], ids: Ids, *, affected: set[date],
                       scan_superseded: bool = False) -> CohortChange:
    """Rewrite the cohort-member landings of ``days`` that hold the users (and of any day whose
    carried-forward files live in a version that goes), then delete superseded versions as
    :func:`forget_hour` does.

    A day may list another day's file (a cohort carried forward). A rewritten day gets all its
    files as its own (hard links, or the filtered copy), so deleting another day's superseded
    version never leaves a day pointing at nothing; every day is committed before any version
    is deleted, so a day rewritten later can still read the files it carried forward.
    """
    change = CohortChange()
    known = CohortDays.read(snaps)
    records = csv_rows(ids)
    cache: dict[Path, bool] = {}

    def dirty(path: Path) -> bool:
        if path not in cache:
            cache[path] = path.exists() and count(path, records) > 0
        return cache[path]

    holding: dict[Path, bool] = {}

    def holds(version: Path) -> bool:
        if version not in holding:
            holding[version] = holds_any("cohort_*", records)(version)
        return holding[version]

    def goes(day: date, version: Path) -> bool:
        """Whether the day's version folder is deleted (its current one, once rewritten)."""
        if day in rewrite:
            return True
        if version.name == known.landings[day].version:
            return False
        return day in affected or (scan_superseded and holds(version))

    wanted = {d for d in days if d in known.landings}
    rewrite = {d for d in wanted if any([dirty(p) for p in known.files(d)])}
    while True:  # a day whose file is in a version that goes, or is dirty, is rewritten too
        doomed = {v for d in wanted | rewrite for v in versions(known.folder(d)) if goes(d, v)}
        more = {d for d in known.landings if d not in rewrite and any(
            p.parent in doomed or cache.get(p) for p in known.files(d))}
        if not more:
            break
        rewrite |= more
    filtered: dict[Path, Path] = {}  # a dirty file -> its copy without the users, made once
    for day in sorted(rewrite):
        landing = known.landings[day]
        folder = known.folder(day)
        cohorts = list(landing.details.get("cohorts", []))
        with snaps.lake.new_version(folder) as (version, staged):
            files, entries = [], []
            for n, path in enumerate(known.files(day)):
                if not path.exists():
                    continue  # lost before this run: the day could not load it either
                target = staged / path.name
                if path in filtered:  # a file two days share: one copy, linked into both
                    os.link(filtered[path], target)
                elif dirty(path):
                    change.rows_removed += copy_without(path, target, records)[1]
                    filtered[path] = folder / version / target.name  # where it is once renamed
                else:
                    os.link(path, target)
                files.append(target.name)
                if n < len(cohorts):
                    entries.append({**cohorts[n], "file": target.name,
                                    "bytes": target.stat().st_size})
        details = {**landing.details, "cohorts": entries} if cohorts else landing.details
        new = replace(landing, version=version, files=files, details=details)
        snaps.lake.commit(folder, version, new.to_json())
        change.versions[landing.version] = version
        change.days_rewritten.add(day)
    for day in sorted(wanted | rewrite):
        change.versions_removed += drop_superseded(known.folder(day), doomed.__contains__)
    return change
