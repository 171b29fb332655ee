"""Amplitude's storage export: the objects of one upload hour in the bucket Amplitude writes to.

Amplitude writes, "best effort, typically hourly" and sometimes several hours at once::

    {prefix}/{appId}/{appId}_{yyyy-MM-dd}_{H}#{n}.json.gz   the hour's parts (H unpadded, any n)
    {prefix}/{appId}/{appId}_{yyyy-MM-dd}_{H}_complete      written after them (may be off)

plus files that are not parts and are left alone: metadata (not gzip), a legacy organization's
merged-ID files (``{appId}_{date}_{H}.json.gz``, no ``#n``). A key that ends like a part but does
not parse as one (``../``, a path inside, an hour 24, digits of another script) refuses its hour,
or its day when the hour cannot be told, as an archive member with such a name would.

Reading goes through ``bucket_reader``: a part is read only if it is still the object listed,
and the hour is listed again afterwards. A listing or ETag that moved in between means Amplitude
is rewriting the hour (a backfill): it is refused for this run (:class:`HourChanged`), never
landed mixed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pipeline.amplitude.archive import ArchiveError, hours_label, parse_member_name
from pipeline.amplitude.bucket_reader import BucketReader, ObjectChanged, StoredObject

PART_ENDING = re.compile(r"#[0-9]+\.json\.gz\Z", re.ASCII)  # a part, or a key refused as one
_MARKER = re.compile(r"(?P<hour>[0-9]{1,2})_complete", re.ASCII)  # after "{appId}_{date}_"
_HOUR_OF_KEY = re.compile(r"(?P<hour>[0-9]{1,2})#", re.ASCII)


class HourChanged(ObjectChanged):
    """The hour's objects moved while they were read: Amplitude is rewriting it."""


@dataclass(frozen=True)
class StoredPart(StoredObject):
    name: str  # relative to the export's prefix: "{appId}/{appId}_{date}_{H}#{n}.json.gz"
    part: int

    @property
    def file_name(self) -> str:
        """A file name built from the parsed name only, safe to create anywhere."""
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class HourObjects:
    """What the bucket holds for one upload hour at one listing."""

    upload_hour: datetime
    parts: tuple[StoredPart, ...] = ()
    marker: StoredObject | None = None
    refused: str | None = None  # why a key of this hour cannot be trusted

    @property
    def signature(self) -> frozenset[tuple[str, str]]:
        """The hour's objects as (key, ETag): what a re-run compares with what was landed."""
        return frozenset((p.key, p.etag) for p in self.parts)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.parts)


@dataclass(kw_only=True)
class StorageExport(BucketReader):
    """One project's export folder ``{prefix}/{project_id}/`` in a bucket. A bucket that cannot
    be read at all raises ``BucketError`` (the run stops: every hour would meet it)."""

    project_id: int
    markers: bool = True
    ready_after: timedelta = timedelta(hours=3)

    @property
    def what(self) -> str:
        return f"the storage export {self.location}"

    @property
    def folder(self) -> str:
        return self.location.key(f"{self.project_id}/")

    def marker_key(self, upload_hour: datetime) -> str:
        return f"{self.folder}{self.project_id}_{upload_hour:%Y-%m-%d}_{upload_hour.hour}_complete"

    def list_day(self, day: date) -> dict[datetime, HourObjects]:
        """The day's hours as the bucket holds them now; hours with nothing are absent."""
        stem = f"{self.project_id}_{day:%Y-%m-%d}_"
        parts: dict[datetime, list[StoredPart]] = {}
        markers: dict[datetime, StoredObject] = {}
        refused: dict[datetime | None, str] = {}  # None: an hour that cannot be told
        for item in self.list_keys(self.folder + stem):
            rest = item.key[len(self.folder):]
            marker = _MARKER.fullmatch(rest, len(stem))
            if marker and int(marker["hour"]) < 24:
                markers[_at(day, int(marker["hour"]))] = item
            elif PART_ENDING.search(rest):
                try:
                    part = self._part(item, rest, day)
                except ArchiveError as error:
                    told = _HOUR_OF_KEY.match(rest, len(stem))
                    at = _at(day, int(told["hour"])) if told and int(told["hour"]) < 24 else None
                    refused.setdefault(at, str(error))
                    continue
                same = [p for p in parts.get(_hour_of(part), []) if p.part == part.part]
                if same:
                    refused.setdefault(_hour_of(part), f"objects {same[0].key!r} and "
                                       f"{part.key!r} are both part {part.part} of the hour")
                parts.setdefault(_hour_of(part), []).append(part)
            # anything else (metadata, a legacy merged-ID file) is not a part
        hours = {}
        for hour in (_at(day, h) for h in range(24)):
            problem = refused.get(hour) or refused.get(None)
            if hour in parts or hour in markers or problem:
                hours[hour] = HourObjects(hour, tuple(sorted(parts.get(hour, []),
                                                             key=lambda p: p.part)),
                                          markers.get(hour), problem)
        return hours

    def _part(self, item: StoredObject, rest: str, day: date) -> StoredPart:
        """A key that ends like a part, checked as an archive member's name is."""
        key = item.key
        try:
            project, upload_hour, number = parse_member_name(rest)
        except ArchiveError as error:
            raise ArchiveError(f"unexpected object {key!r} in the export: "
                               + str(error).split(": ", 1)[-1], member=key) from None
        if project != self.project_id or upload_hour.date() != day:
            raise ArchiveError(f"object {key!r} names another project or day than its place",
                               member=key)
        return StoredPart(key, item.etag, item.bytes, f"{self.project_id}/{rest}", number)

    def list_hours(self, hours: Sequence[datetime]) -> dict[datetime, HourObjects]:
        """Each of ``hours`` as the bucket holds it, one listing per day."""
        days: dict[date, dict[datetime, HourObjects]] = {}
        for hour in hours:
            if hour.date() not in days:
                days[hour.date()] = self.list_day(hour.date())
        return {hour: days[hour.date()].get(hour, HourObjects(hour)) for hour in hours}

    def not_ready(self, hour: HourObjects, now: datetime) -> str | None:
        """Why the hour cannot be loaded yet, or None: never half an hour."""
        label = hours_label([hour.upload_hour])
        if hour.refused is not None:
            return f"{label}: {hour.refused}"
        if self.markers:
            if hour.marker is None:
                return (f"{label}: Amplitude has not written its completion marker "
                        f"{self.marker_key(hour.upload_hour)!r} yet ({len(hour.parts)} part(s) "
                        "listed): the hour is not loaded half")
            return None
        ready = hour.upload_hour + timedelta(hours=1) + self.ready_after
        if now < ready:
            return (f"{label}: without completion markers an hour is ready "
                    f"{self.ready_after.total_seconds() / 3600:g} h after it ends, at "
                    f"{ready:%Y-%m-%dT%H:%M}Z")
        return None

    def copy_part(self, part: StoredPart, dest: Path) -> None:
        hour = _hour_of(part)
        try:
            self.copy_object(part, dest, label=hours_label([hour]))
        except ObjectChanged as error:
            raise HourChanged(str(error), upload_hours=[hour], member=part.key) from None

    def unchanged(self, hour: HourObjects) -> None:
        """Raise :class:`HourChanged` if the hour's listing is no longer ``hour``'s."""
        now = self.list_day(hour.upload_hour.date()).get(hour.upload_hour,
                                                         HourObjects(hour.upload_hour))
        if now.signature != hour.signature or (self.markers and now.marker is None):
            added = len(now.signature - hour.signature)
            gone = len(hour.signature - now.signature)
            raise HourChanged(
                f"{hours_label([hour.upload_hour])}: the hour's objects changed while they were "
                f"read ({added} new or rewritten, {gone} gone"
                + (", the marker removed" if self.markers and now.marker is None else "")
                + "): Amplitude is rewriting it; it is refused for this run",
                upload_hours=[hour.upload_hour])


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _hour_of(part: StoredPart) -> datetime:
    return parse_member_name(part.name.rsplit("/", 1)[-1])[1]
