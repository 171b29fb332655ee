"""Mixpanel's export in the lake: a window's body landed under each of its days, and each day's
Parquet file.

Layout (``pipeline/lake.py`` says how each is replaced atomically)::

    landing/mixpanel/export/day=2026-03-08/_manifest.json
    landing/mixpanel/export/day=2026-03-08/v<time>-<id>/export-2026-03-08-2026-03-14.jsonl.gz
    mixpanel/events/day=2026-03-08/events.parquet

One request answers a whole window of days in one body, in no order the export promises, so the
body is kept as it came (the wire's gzip, checked whole) rather than split: each day of the window
gets a landing version holding the window's body (a hard link on a local lake, so no extra bytes;
a copy per day on object storage, where a window is at most ``MIXPANEL_MAX_WINDOW_DAYS``) and a
manifest naming the window. Every day of a window is staged before any manifest moves, so a
window lands whole or not at all; a day fetched again later (the late-data re-fetch, alone or in
another window) simply gets a new version of its own.

Normalizing reads a body once for all the days of the run that were landed from it, and writes
the Parquet file of each (``normalize.normalize_window``), published with
``Lake.staged_table_file``: a new name per version where the lake or a DuckLake catalog needs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path, PurePath
from typing import Any

from pipeline.engine import EngineLimits
from pipeline.lake import Lake, LakeError, day_partition, new_version_name
from pipeline.mixpanel.days import DayWindow
from pipeline.mixpanel.export import Download
from pipeline.mixpanel.normalize import NormalizeError, normalize_window
from pipeline.refusals import Refusals

DATASET = "export"
TABLE = "events"
PARTITION_KEY = "day"


def partition(day: date) -> str:
    return day_partition(day, PARTITION_KEY)


@dataclass(frozen=True)
class LandedDay:
    """What a day's landing holds and how its window was fetched."""

    day: date
    version: str  # the version folder, inside the day's landing folder
    file: str  # the window's body, in that folder
    window_id: str  # the same for every day landed from one fetch
    first_day: date  # the window the body answers
    last_day: date
    window_requests: int  # attempts for the window
    window_bytes: int  # the body, as received (gzip)
    window_lines: int
    window_fetch_seconds: float
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def window(self) -> DayWindow:
        return DayWindow(self.first_day, self.last_day)

    @property
    def request_window(self) -> str:
        return str(self.window)

    @property
    def share(self) -> float:
        """This day's part of its window's figures: the window's days share them evenly."""
        return 1 / self.window.day_count

    @property
    def requests(self) -> float:
        return self.window_requests * self.share

    @property
    def bytes(self) -> int:
        return round(self.window_bytes * self.share)

    @property
    def fetch_seconds(self) -> float:
        return self.window_fetch_seconds * self.share

    def to_json(self) -> str:
        data = asdict(self)
        for name in ("day", "first_day", "last_day", "fetched_at"):
            data[name] = data[name].isoformat()
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> LandedDay:
        data = json.loads(text)
        for name in ("day", "first_day", "last_day"):
            data[name] = date.fromisoformat(data[name])
        data["fetched_at"] = datetime.fromisoformat(data["fetched_at"])
        return cls(**data)


class MixpanelLake(Lake):
    """The lake, with one Mixpanel project's places in it (under its ``namespace``)."""

    def __init__(self, root: str | os.PathLike[str], *, namespace: str = "mixpanel",
                 **options: Any) -> None:
        super().__init__(root, **options)
        self.namespace = namespace


def landing_dir(lake: MixpanelLake, day: date) -> PurePath:
    return lake.landing_folder(lake.namespace, DATASET, partition(day))


def events_file(lake: MixpanelLake, day: date) -> PurePath | None:
    """The day's current Parquet file, or None before its first normalize."""
    return lake.table_file(lake.namespace, TABLE, partition(day))


def refusals(lake: MixpanelLake) -> Refusals[date]:
    """The notes of the project's days (``pipeline/refusals.py``)."""
    return Refusals(lake, lambda day: landing_dir(lake, day), lambda day: f"Mixpanel day {day}")


def landed(lake: MixpanelLake, day: date) -> LandedDay | None:
    text = lake.manifest(landing_dir(lake, day))
    return None if text is None else LandedDay.from_json(text)


def land(lake: MixpanelLake, download: Download) -> list[LandedDay]:
    """Land a checked window under every one of its days, superseding what was there."""
    window = download.window
    window_id = new_version_name()
    staged_days: list[LandedDay] = []
    with contextlib.ExitStack() as stack:
        for day in window.days:
            version, staged = stack.enter_context(lake.new_version(landing_dir(lake, day)))
            _link_or_copy(download.path, staged / download.path.name)
            staged_days.append(LandedDay(
                day=day, version=version, file=download.path.name, window_id=window_id,
                first_day=window.first_day, last_day=window.last_day,
                window_requests=download.attempts, window_bytes=download.bytes,
                window_lines=download.lines, window_fetch_seconds=download.seconds))
    for landed_day in staged_days:  # every version folder is in place: point the manifests
        lake.commit(landing_dir(lake, landed_day.day), landed_day.version, landed_day.to_json())
    return staged_days


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system (object storage's staging in the temp folder)
        shutil.copyfile(source, target)


def body(lake: MixpanelLake, landed_day: LandedDay, scratch: Path) -> Path:
    """The landed body as a local file (from object storage: downloaded into ``scratch``)."""
    place = landing_dir(lake, landed_day.day) / landed_day.version / landed_day.file
    if not lake.remote:
        path = lake.local(place)
        if not path.exists():
            raise LakeError(f"Mixpanel day {landed_day.day}: its landing {place} is gone")
        return path
    local = scratch / "bodies" / landed_day.window_id / landed_day.file
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        lake.download(place, local)
    return local


@dataclass(frozen=True)
class DayParquet:
    day: date
    path: PurePath  # the day's current file in the lake
    rows: int
    bytes: int
    landed: LandedDay


def write_days(lake: MixpanelLake, days: Iterable[date], scratch: Path, *, zone: tzinfo | None,
               limits: EngineLimits | None = None) -> tuple[list[DayParquet], dict[date, str]]:
    """Normalize the landed days into their Parquet files, each body read once for all the
    days of ``days`` landed from it. ``zone`` None: the project stores UTC.

    Returns the days written and, for each day that was not, why: never landed, or its
    window's body does not fit (``normalize.NormalizeError``: nothing of that window is
    published, and the other windows go on).
    """
    by_window: dict[str, list[LandedDay]] = {}
    refused: dict[date, str] = {}
    for day in sorted(set(days)):
        found = landed(lake, day)
        if found is None:
            refused[day] = (f"Mixpanel day {day} has not been landed: materialize "
                            f"{lake.namespace}/raw_export for it first")
            continue
        by_window.setdefault(found.window_id, []).append(found)
    written: list[DayParquet] = []
    for window_id, group in by_window.items():
        try:
            written += _write_window(lake, window_id, group, scratch, zone, limits)
        except (NormalizeError, LakeError) as error:
            refused |= {landed_day.day: f"Mixpanel day {landed_day.day}: {error}"
                        for landed_day in group}
    return sorted(written, key=lambda d: d.day), refused


def _write_window(lake: MixpanelLake, window_id: str, group: list[LandedDay], scratch: Path,
                  zone: tzinfo | None, limits: EngineLimits | None) -> list[DayParquet]:
    """The days of one landed window, from its body read once."""
    first = group[0]
    source = body(lake, first, scratch)
    out = scratch / "parquet" / window_id
    written: list[DayParquet] = []
    try:
        results = normalize_window(
            source, first.window.days,
            lambda d, out=out: out / partition(d) / f"{TABLE}.parquet",  # type: ignore[misc]
            zone=zone, limits=limits or EngineLimits(),
            source_name=f"{first.window_id}/{first.file}",
            landing_versions={d.day: d.version for d in group})
        by_day = {r.day: r for r in results}
        for landed_day in group:
            result = by_day[landed_day.day]
            with lake.staged_table_file(lake.namespace, TABLE,
                                        partition(landed_day.day)) as target:
                shutil.move(result.path, target)
            place = events_file(lake, landed_day.day)
            assert place is not None  # just published
            written.append(DayParquet(landed_day.day, place, result.rows, result.bytes,
                                      landed_day))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return written
