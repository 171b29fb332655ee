"""A run's upload hours into the lake: which to fetch, and one bad hour costing only itself.

From the Export API: Amplitude serves a window of hours as one archive, so one damaged member
spoils a whole window. A window whose archive stays bad after the client's retries is halved,
and halved again, until the bad hours stand alone: a bad hour in a 24-hour window costs about
ten more requests (1 + 2 log2 24) and no good hour. Causes that are not the data's (credentials,
a refused connection, an hour over the cap) stop the run at once: every other window would meet
them too.

From the storage export: the bucket is listed a day at a time and each hour landed alone, so
a bad hour (no marker yet, a refused object, objects rewritten while read) costs itself; an
hour whose objects are exactly those landed before is not read again, and one Amplitude rewrote
(a backfill) is, whole. A bucket that cannot be read at all stops the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.amplitude.archive import ArchiveError
from pipeline.amplitude.export import ExportClient, fetch_windows
from pipeline.amplitude.landing import AmplitudeLake, LandedHour
from pipeline.amplitude.refusals import hour_refusals
from pipeline.amplitude.storage_export import StorageExport
from pipeline.hours import ExportWindow, plan_windows
from pipeline.refusals import Refusal

log = logging.getLogger(__name__)

# What a damaged answer raises once the client's retries are spent; the export module's own
# errors (auth, the cap, the network) are not here on purpose.
WINDOW_DATA_ERRORS: tuple[type[Exception], ...] = (ArchiveError,)


def hours_to_fetch(lake: AmplitudeLake, hours: Sequence[datetime], *, now: datetime,
                   refetch_after: timedelta, refetch: bool) -> tuple[list[datetime],
                                                                   list[LandedHour]]:
    """Split ``hours`` into those to fetch and the landings young enough to reuse.

    A re-run after a failure must not ask Amplitude again for what it already holds; ``refetch``
    (the late-data re-fetch) asks for every hour regardless.
    """
    fetch: list[datetime] = []
    reuse: list[LandedHour] = []
    refusals = hour_refusals(lake)
    for hour in hours:
        landed = None if refetch else lake.landed_or_none(hour)
        if (landed is not None and now - landed.fetched_at < refetch_after
                and refusals.get(hour, "fetch") is None):
            reuse.append(landed)
        else:
            fetch.append(hour)
    return fetch, reuse


@dataclass(frozen=True)
class HourFetched:
    landed: LandedHour


@dataclass(frozen=True)
class HourReused:
    landed: LandedHour


@dataclass(frozen=True)
class HourRefused:
    upload_hour: datetime
    refusal: Refusal


def fetch_and_land(client: ExportClient, lake: AmplitudeLake, hours: Sequence[datetime],
                   scratch: Path, *, max_window_hours: int, now: datetime, lag_hours: int,
                   run_id: str) -> Iterator[HourFetched | HourRefused]:
    """Fetch ``hours`` in as few windows as allowed and land each archive as it arrives."""
    refusals = hour_refusals(lake)
    pending = list(reversed(plan_windows(list(hours), max_window_hours, now=now,
                                         lag_hours=lag_hours)))
    while pending:
        window = pending.pop()
        landed: set[datetime] = set()
        try:
            for download in fetch_windows(client, [window], scratch):
                try:
                    for hour in lake.land(download):
                        refusals.clear(hour.upload_hour, "fetch")
                        landed.add(hour.upload_hour)
                        yield HourFetched(hour)
                finally:
                    if download.path is not None:
                        download.path.unlink(missing_ok=True)
        except WINDOW_DATA_ERRORS as error:
            rest = [h for h in window.hours if h not in landed]
            if len(rest) > 1:
                middle = len(rest) // 2
                first, second = (ExportWindow(part[0], part[-1])
                                 for part in (rest[:middle], rest[middle:]))
                log.warning("export window %s: %s; fetching %s and %s apart to find the bad "
                            "hour(s)", window, error, first, second)
                pending.extend([second, first])
                continue
            refusal = refusals.record(rest[0], "fetch", str(error), run_id)
            log.error("%s", refusal)
            yield HourRefused(rest[0], refusal)


def land_from_storage(export: StorageExport, lake: AmplitudeLake, hours: Sequence[datetime], *,
                      now: datetime, refetch: bool, run_id: str,
                      ) -> Iterator[HourFetched | HourReused | HourRefused]:
    """Land each of ``hours`` from the storage export, or reuse its landing if the bucket still
    holds exactly the objects it was read from (``refetch`` reads them again regardless)."""
    refusals = hour_refusals(lake)
    listed = export.list_hours(hours)
    for hour in hours:
        objects = listed[hour]
        why = export.not_ready(objects, now)
        landed = lake.landed_or_none(hour)
        if why is None and not refetch and landed is not None and landed.source == "storage" \
                and landed.signature == objects.signature \
                and refusals.get(hour, "fetch") is None:
            yield HourReused(landed)
            continue
        if why is None:
            try:
                fetched = lake.land_stored(export, objects)
            except WINDOW_DATA_ERRORS as error:
                why = str(error)
            else:
                refusals.clear(hour, "fetch")
                yield HourFetched(fetched)
                continue
        refusal = refusals.record(hour, "fetch", why, run_id)
        log.error("%s", refusal)
        yield HourRefused(hour, refusal)
