"""Cohort membership: Amplitude's asynchronous download, carried forward while unchanged.

A download is a job (request → poll → ``/file``) and Amplitude allows 500 a month, so a cohort is
downloaded only when its ``lastComputed`` moved since its last download, else the day reuses the
file landed then. Waits are bounded, errors name the cohort. The gzip CSV (in the body or behind a
302 to a storage host that must not see the credentials) goes to disk and DuckDB makes it Parquet:
no Python rows. One download at a time: the cohort budget (60 requests per 10 minutes, about 7 a
download) admits no more."""

from __future__ import annotations

import csv
import gzip
import json
import os
import time
import zlib
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import duckdb
import httpx
import tenacity

from pipeline import sql
from pipeline.amplitude.client import AmplitudeClient
from pipeline.http import HttpError, TransientError, body_excerpt
from pipeline.snapshots import Fetch, SnapshotLanding, Snapshots

ENDPOINT = "cohorts"  # the limiter's name for the cohort endpoints (pipeline/amplitude/rate_limits)
TABLE, DOWNLOADS = "cohort_members", "_cohort_downloads"  # in the project's schema
COMPLETED, IN_PROGRESS = "JOB COMPLETED", "JOB INPROGRESS"
_EMPTY = ("SELECT NULL::DATE snapshot_date, NULL cohort_id, NULL::BIGINT amplitude_id, NULL "
          "user_id, NULL::JSON properties, NULL::DATE downloaded_on WHERE false")


class CohortError(RuntimeError):
    """A cohort that cannot be downloaded or read; the message names it."""


class QuotaExceeded(CohortError):
    def __init__(self, message: str, *, used: int, limit: int) -> None:
        super().__init__(message)
        self.used, self.limit = used, limit


class _LinkExpired(HttpError):
    """The storage link ran out before the download began: a fresh ``/file`` gives another."""


@dataclass(frozen=True)
class Cohort:
    id: str
    name: str
    last_computed: int | None  # epoch seconds, as the list gives it
    size: int | None = None
    archived: bool = False


@dataclass(frozen=True)
class Polling:
    """Jobs "commonly take 30-60+ seconds": poll soon, then back off to a cap, within a bound."""

    timeout_seconds: float = 1800.0
    first_seconds: float = 5.0
    max_seconds: float = 60.0


@dataclass(frozen=True)
class Selection:
    """Which cohorts, which user properties, and how many downloads a month may be started."""

    ids: tuple[str, ...] = ()  # empty: every cohort not archived
    max_size: int | None = None
    props: tuple[str, ...] = ()  # requested with props=1 and one propKeys each
    monthly_quota: int = 500
    quota_share: float = 0.8


class History(NamedTuple):
    """``_cohort_downloads``: each cohort's newest download, this month's count."""

    last: dict[str, date]  # cohort id -> the snapshot day of its newest download
    month: str  # YYYY-MM, UTC
    used: int


def read_history(con: duckdb.DuckDBPyConnection, schema: str, now: datetime) -> History:
    rows = con.execute(  # the month's count is over every row, before QUALIFY keeps the newest
        "SELECT cohort_id, snapshot_date, count(*) FILTER ("
        "WHERE date_trunc('month', requested_at AT TIME ZONE 'UTC') = $1) OVER () FROM "
        f"{schema}.{DOWNLOADS} QUALIFY row_number() OVER (PARTITION BY cohort_id "
        "ORDER BY requested_at DESC) = 1", [now.date().replace(day=1)]).fetchall()
    return History({r[0]: r[1] for r in rows}, f"{now:%Y-%m}", int(rows[0][2]) if rows else 0)


def select(listed: Sequence[Cohort], selection: Selection) -> list[Cohort]:
    """Explicit ids (archived or not), else every cohort not archived; then the size limit."""
    chosen, known = [c for c in listed if not c.archived], {c.id: c for c in listed}
    if selection.ids:
        if missing := [i for i in selection.ids if i not in known]:
            raise CohortError(f"cohort(s) {', '.join(missing)} are not in the cohort list")
        chosen = [known[i] for i in dict.fromkeys(selection.ids)]
    limit = selection.max_size
    return [c for c in chosen if limit is None or (c.size is not None and c.size <= limit)]


def download(client: AmplitudeClient, cohort: Cohort, folder: Path, *, props: Sequence[str] = (),
             polling: Polling = Polling()) -> dict[str, Any]:
    """Request, poll (bounded) and save one cohort's file into ``folder``; its manifest entry."""
    label, base = f"cohort {cohort.id} ({cohort.name!r})", httpx.URL(client.base_url)
    query = urlencode([("props", "1"), *(("propKeys", p) for p in props)] if props else [])
    path = f"/api/5/cohorts/request/{quote(cohort.id, safe='')}" + (f"?{query}" if query else "")
    requested_at = datetime.now(UTC)
    job = client.get_json(path, what=f"{label} download request", endpoint=ENDPOINT)
    request_id = str(job.get("request_id") or "") if isinstance(job, dict) else ""
    if not request_id:
        raise CohortError(f"{label}: the download request answered no request_id: {job!r:.200}")
    polls = _poll(client, label, request_id, polling)
    completed_at, part = datetime.now(UTC), folder / f"cohort_{cohort.id}.download"

    def on_status(response: httpx.Response) -> bool:
        url = response.url  # the storage host's 403s are not about Amplitude's credentials
        if response.status_code in (400, 403) and (url.host, url.port) != (base.host, base.port):
            body = " ".join(body_excerpt(response).split())
            kind = _LinkExpired if "expired" in body.lower() else HttpError
            raise kind(f"the storage host refused {label}'s file ({response.status_code}): "
                       f"{body[:200]}")
        return False

    def attempt(deadline: float) -> Path:
        with client.stream(f"/api/5/cohorts/request/{quote(request_id, safe='')}/file",
                           what=f"{label} file", endpoint=ENDPOINT, on_status=on_status) as got:
            client.save(got, part, deadline)
        with open(part, "rb") as head:
            gzipped = head.read(2) == b"\x1f\x8b"  # else httpx decoded Content-Encoding: gzip
        if gzipped and not _whole_gzip(part):
            part.unlink()
            raise TransientError(f"{label}'s file: the gzip stream is cut short or corrupt")
        return part.rename(folder / f"cohort_{cohort.id}.csv{'.gz' if gzipped else ''}")

    # A link lives a minute: one fresh /file request gives a fresh one.
    fresh = tenacity.Retrying(retry=tenacity.retry_if_exception_type(_LinkExpired),
                              stop=tenacity.stop_after_attempt(2), reraise=True)
    try:
        saved, tries, _ = fresh(client.with_retries, client.where(f"{label} file"), attempt)
    except _LinkExpired as error:
        raise CohortError(f"{label}: the download link stayed expired on a fresh request: "
                          f"{error}") from error
    requested_files = fresh.statistics["attempt_number"]
    return {"cohort_id": cohort.id, "name": cohort.name, "request_id": request_id,
            "last_computed": cohort.last_computed, "props": list(props), "file": saved.name,
            # the request, its polls, the file's attempts, and a fresh /file request if one
            "bytes": saved.stat().st_size, "requests": 1 + polls + tries + requested_files - 1,
            "requested_at": requested_at.isoformat(), "completed_at": completed_at.isoformat(),
            "downloaded_on": datetime.now(UTC).date().isoformat(), "carried_forward": False}


def _poll(client: AmplitudeClient, label: str, request_id: str, polling: Polling) -> int:
    """Wait, with doubling pauses, until the job completes; its status requests. Bounded by
    ``polling.timeout_seconds``; a job in any other state than in progress is an error."""
    status_path = f"/api/5/cohorts/request-status/{quote(request_id, safe='')}"

    def state() -> str:
        status = client.get_json(status_path, what=f"{label} job status", endpoint=ENDPOINT)
        found = str(status.get("async_status") if isinstance(status, dict) else status)
        if found not in (IN_PROGRESS, COMPLETED):
            raise CohortError(f"{label}: job {request_id} is {found!r:.200}")
        return found

    started = time.monotonic()
    # The first look after first_seconds, then pauses doubling up to max_seconds.
    pause = tenacity.wait_exponential(multiplier=2 * polling.first_seconds,
                                      min=polling.first_seconds, max=polling.max_seconds)

    def wait(retry_state: tenacity.RetryCallState) -> float:  # never past the bound
        return max(min(pause(retry_state),
                       polling.timeout_seconds - (time.monotonic() - started)), 0.0)

    polls = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda found: found == IN_PROGRESS),
        stop=tenacity.stop_after_delay(polling.timeout_seconds), wait=wait,
        retry_error_callback=lambda _: IN_PROGRESS)
    time.sleep(min(polling.first_seconds, polling.timeout_seconds))
    if polls(state) != COMPLETED:
        waited, count = time.monotonic() - started, polls.statistics["attempt_number"]
        raise CohortError(
            f"{label}: download job {request_id} not completed after {waited / 60:.1f} minutes "
            f"({count} polls; the bound is {polling.timeout_seconds / 60:g} minutes). Try again "
            "later, or raise poll_timeout_minutes in the run config")
    return int(polls.statistics["attempt_number"])


def _whole_gzip(path: Path) -> bool:
    """Whether the file is complete gzip (DuckDB reads a cut stream as fewer rows, silently)."""
    with suppress(OSError, EOFError, zlib.error), gzip.open(path) as data:
        while data.read(1 << 20):  # one MB at a time
            pass
        return True
    return False


def _carry(snaps: Snapshots, day: date, staged: Path, known: History, cohort: Cohort,
           props: Sequence[str]) -> dict[str, Any] | None:
    """A landed file that still holds the cohort's membership (same ``lastComputed`` and props):
    its last recorded download's, or one landed today and not loaded (a retry must not pay)."""
    if snaps.lake.remote:
        return None  # carrying names a file by its local path; on object storage, fetch again
    last, wanted = known.last.get(cohort.id), (cohort.id, cohort.last_computed, list(props))
    for on in dict.fromkeys([last, day] if last else [day]):
        landing = snaps.landed(TABLE, on)
        for entry, path in zip(landing.details["cohorts"], snaps.paths(landing),
                               strict=True) if landing and cohort.last_computed else ():
            if (entry["cohort_id"], entry["last_computed"], entry["props"]) != wanted or \
                    not path.exists():
                continue  # another cohort, recomputed since, other props, or lost: not this
            # an earlier version of a folder is pruned: only today's folder can be linked from
            today = path.is_relative_to(snaps.lake.local(snaps.folder(TABLE, day)))
            if today:
                os.link(path, staged / path.name)  # the same partition folder, one file system
            return {**entry, "file": path.name if today else str(path), "requests": 0,
                    "carried_forward": True}
    return None


def fetch_members(client: AmplitudeClient, snaps: Snapshots, day: date, staged: Path, *,
                  history: Callable[[], History], selection: Selection = Selection(),
                  polling: Polling = Polling()) -> Fetch:
    """The ``Snapshots.take`` fetch: unchanged cohorts carried forward, none past the quota."""
    listing = snaps.landed("cohorts", day)
    if listing is None:
        raise CohortError(f"amplitude/cohort_members for {day} needs that day's "
                          "amplitude/cohorts first (it lists the cohorts)")
    with open(snaps.paths(listing)[0], "rb") as answer:
        listed = [Cohort(str(c["id"]), str(c.get("name") or ""), c.get("lastComputed"),
                         c.get("size"), bool(c.get("archived")))
                  for c in json.load(answer)["cohorts"]]
    known, chosen = history(), select(listed, selection)
    carried = {c.id: _carry(snaps, day, staged, known, c, selection.props) for c in chosen}
    entries = [e for e in carried.values() if e is not None]
    wanted = [c for c in chosen if carried[c.id] is None]
    used, limit = known.used, int(selection.monthly_quota * selection.quota_share)
    if used + len(wanted) > limit:
        raise QuotaExceeded(
            f"cohort downloads refused: {used} made in {known.month} (UTC) and {len(wanted)} more "
            f"({', '.join(c.id for c in wanted)}) would pass the limit of {limit} "
            f"({selection.quota_share:.0%} of AMPLITUDE_COHORT_MONTHLY_QUOTA="
            f"{selection.monthly_quota}). Narrow cohort_ids or max_size, wait for next month, or "
            "raise AMPLITUDE_COHORT_QUOTA_SHARE", used=used, limit=limit)
    entries += [download(client, c, staged, props=selection.props, polling=polling)
                for c in wanted]
    return Fetch([e["file"] for e in entries], sum(e["requests"] for e in entries),
                 {"cohorts": entries, "props": list(selection.props), "month": known.month,
                  "downloads_this_month": used + len(wanted), "quota_limit": limit})


def _select(path: Path, entry: dict[str, Any], day: date) -> str:
    """SELECT over one cohort's file; its header names the property columns. A field holding
    a JSON object or list (as Amplitude writes them) stays JSON, others are text (a CSV has no
    types), an empty one is null."""
    label, gzipped = f"cohort {entry['cohort_id']} ({entry['name']!r})", path.suffix == ".gz"
    try:
        with (gzip.open(path, "rt", encoding="utf-8", newline="") if gzipped
              else open(path, encoding="utf-8", newline="")) as text:
            header = next(csv.reader([text.readline(1 << 16)]), [])
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as error:
        raise CohortError(f"{label}: {path} is not a readable CSV: {error}") from error
    if header[:2] != ["amplitude_id", "user_id"]:
        raise CohortError(f"{label}: {path} does not start with the header "
                          f'"amplitude_id","user_id" (found {str(header[:4])[:120]})')
    types = ", ".join(f"'c{i}': '{'BIGINT' if i == 0 else 'VARCHAR'}'" for i in range(len(header)))
    props = ", ".join(f"{sql.literal(name)}, CASE WHEN left(c{i}, 1) IN ('{{', '[') AND "
                      f"json_valid(c{i}) THEN c{i}::JSON ELSE to_json(nullif(c{i}, '')) END"
                      for i, name in enumerate(header) if i >= 2)
    return (f"SELECT DATE '{day}' AS snapshot_date, {sql.literal(entry['cohort_id'])} AS "
            "cohort_id, c0 AS amplitude_id, nullif(c1, '') AS user_id, "
            f"{f'json_object({props})' if props else 'NULL::JSON'} AS properties, "
            f"DATE '{entry['downloaded_on']}' AS downloaded_on FROM read_csv("
            f"{sql.literal(str(path))}, header = true, delim = ',', quote = '\"', escape = '\"', "
            f"compression = '{'gzip' if gzipped else 'none'}', auto_detect = false, "
            f"strict_mode = true, columns = {{{types}}})")


def write_members(con: duckdb.DuckDBPyConnection, snaps: Snapshots, landing: SnapshotLanding,
                  out: Path) -> int:
    """The day's members, every cohort's file, into one zstd Parquet file; its row count."""
    entries, paths = landing.details.get("cohorts", []), snaps.paths(landing)
    selects = [_select(p, e, landing.snapshot_date) for e, p in zip(entries, paths, strict=True)]
    try:
        row = con.execute(f"COPY ({' UNION ALL '.join(selects) or _EMPTY}) TO "
                          f"{sql.literal(str(out))} (FORMAT parquet, COMPRESSION zstd)").fetchone()
    except duckdb.Error as error:  # DuckDB's CSV errors end with "file = <path>"
        bad = [f"cohort {e['cohort_id']} ({e['name']!r}): {p} is a malformed CSV" for e, p
               in zip(entries, paths, strict=True) if f"file = {p}\n" in f"{error}\n"]
        raise CohortError(f"{bad[0] if bad else f'amplitude/{TABLE} for {landing.snapshot_date}'}"
                          f": {' '.join(str(error).splitlines()[:3])}") from error
    return int(row[0]) if row else 0


def load_members(snaps: Snapshots, con: duckdb.DuckDBPyConnection,
                 landing: SnapshotLanding) -> int:
    """Swap the day's members in and record its downloads (once each, by request id) in the
    same transaction, so the month's count holds every download whose rows were loaded."""
    day, schema = landing.snapshot_date, snaps.source

    def downloads(rows: int) -> None:
        for e in landing.details.get("cohorts", []):
            con.execute(
                f"INSERT INTO {schema}.{DOWNLOADS} SELECT $1, $2, $3, $4::TIMESTAMPTZ, "
                f"$5::TIMESTAMPTZ, to_timestamp($6), (SELECT count(*) FROM {schema}.{TABLE} "
                f"WHERE snapshot_date = $3 AND cohort_id = $1), $7 WHERE NOT EXISTS (SELECT 1 "
                f"FROM {schema}.{DOWNLOADS} WHERE request_id = $2)",
                [e["cohort_id"], e["request_id"], day, e["requested_at"], e["completed_at"],
                 e["last_computed"], e["bytes"]])

    return snaps.load(con, TABLE, landing, also=downloads)
