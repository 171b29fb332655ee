"""One forget request, from finding where the users are to the audit row.

Order, and why (docs/forgetting-users.md has the long form):

1. Find the partitions. The warehouse says which upload hours and cohort days hold the users
   (and which quarantined lines spell their ids); partitions it cannot vouch for (landed but not
   loaded, or landed again since) are checked in their Parquet file when that was built from the
   current landing, else in the landing itself. ``scan="lake"`` checks every Parquet file,
   ``scan="landing"`` reads every landing file.
2. For each partition, upstream first: the landing (a new version, committed, then the
   superseded ones deleted), then the Parquet file (rewritten, renamed over). Whatever re-derives
   a partition meanwhile (a normalize, a load) derives it from what is already clean.
3. Check again under the warehouse's lock: new hours holding the users (a load meanwhile), a
   landing committed again, a Parquet file written again from an old landing. Those go round
   once more (a bounded number of times).
4. Delete the warehouse's rows, fix its ledgers and write the audit row, in one transaction.

The warehouse is deleted last because it is the list of what is left to do: a run killed at any
point leaves the users' rows there, so the same request run again finds every partition that
still needs work (the lake steps it already did find nothing and change nothing). Until then,
the warehouse holds rows for a rewritten hour that its Parquet file no longer has; a load of
that hour replaces them with the file's (as it would after any re-normalize), and the request
run again deletes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

import duckdb

from pipeline import engine
from pipeline.amplitude.landing import AmplitudeLake
from pipeline.forget import audit, landing, parquet
from pipeline.forget.audit import ForgetReport
from pipeline.forget.ids import Ids
from pipeline.lake import MANIFEST, day_partition, hour_partition, read_manifest
from pipeline.lineage import LANDING_VERSION_KEY
from pipeline.object_storage import is_remote
from pipeline.snapshots import Snapshots
from pipeline.warehouse import Warehouse

log = logging.getLogger("pipeline.forget")

SCANS = ("warehouse", "lake", "landing")
ROUNDS = 3  # passes over partitions that changed under the request before it gives up
LOCK_FILE = ".forget.lock"
K = TypeVar("K", datetime, date)  # a partition: an upload hour or a snapshot day


class ForgetError(RuntimeError):
    """A request that could not finish; the message never quotes an id."""


@dataclass
class Plan:
    """Partitions to visit, each with whether it is known to hold the users (else: look)."""

    hours: dict[datetime, bool] = field(default_factory=dict)
    days: dict[date, bool] = field(default_factory=dict)
    # Landing versions an earlier, interrupted request replaced: loaded version -> current one
    hour_versions: dict[str, str] = field(default_factory=dict)
    day_versions: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.hours or self.days)

    def add_hours(self, hours: Iterable[datetime], affected: bool) -> None:
        for hour in hours:
            self.hours[hour] = self.hours.get(hour, False) or affected

    def add_days(self, days: Iterable[date], affected: bool) -> None:
        for day in days:
            self.days[day] = self.days.get(day, False) or affected


@dataclass
class Progress:
    """What the request did so far, across rounds."""

    hour_versions: dict[str, str] = field(default_factory=dict)  # superseded -> new
    day_versions: dict[str, str] = field(default_factory=dict)
    hours: dict[datetime, str | None] = field(default_factory=dict)  # visited -> version left
    days: dict[date, str | None] = field(default_factory=dict)
    hours_rewritten: set[datetime] = field(default_factory=set)
    days_rewritten: set[date] = field(default_factory=set)


def forget(warehouse_path: Path, lake_root: Path, ids: Ids, *, scan: str = "warehouse",
           lock_timeout_seconds: float = 300.0,
           say: Callable[[str], None] = log.info) -> ForgetReport:
    """Remove every row and line of these users from the warehouse, the lake and the landing
    copies, and record what was removed (never the ids) in ``amplitude._forget_requests``.

    Running it again removes nothing more and records that. ``say`` gets progress lines
    (counts, never ids). Raises :class:`ForgetError` when the request could not finish; run
    it again with the same ids to complete it.
    """
    if not len(ids):
        raise ForgetError("no ids to forget: pass --amplitude-id, --user-id or --ids-file")
    if scan not in SCANS:
        raise ForgetError(f"scan must be one of {', '.join(SCANS)}")
    if not Path(warehouse_path).is_file():
        raise ForgetError(f"there is no warehouse at {warehouse_path} (WAREHOUSE_PATH)")
    if is_remote(lake_root):
        raise ForgetError(f"{lake_root}: forgetting users works on a local lake and a DuckDB "
                          "file warehouse so far (docs/forgetting-users.md)")
    if not Path(lake_root).is_dir():
        raise ForgetError(f"there is no lake at {lake_root} (LAKE_ROOT)")
    started = time.monotonic()
    lake = AmplitudeLake(Path(lake_root))
    snaps = Snapshots(lake, "amplitude")
    warehouse = Warehouse(Path(warehouse_path), lock_timeout_seconds=lock_timeout_seconds)
    report = ForgetReport(request_id=uuid.uuid4().hex, requested_at=datetime.now(UTC),
                          amplitude_id_count=len(ids.amplitude_ids),
                          user_id_count=len(ids.user_ids), scan=scan)
    say(f"forget request {report.request_id}: {report.amplitude_id_count} amplitude_id(s), "
        f"{report.user_id_count} user_id(s)")
    with _one_at_a_time(lake, lock_timeout_seconds), lake.scratch() as scratch, \
            engine.connect(config={"memory_limit": "384MB", "threads": 2,
                                   "temp_directory": str(scratch)}) as duck:
        duck.execute("SET TimeZone = 'UTC'")
        parquet.install(duck, ids)
        with warehouse.connect() as con:
            audit.record(con, report)
        try:
            with warehouse.connect() as con:
                parquet.install(con, ids)
                plan = _discover(con, duck, lake, snaps, scan)
            say(f"to visit: {len(plan.hours)} upload hour(s), {len(plan.days)} cohort day(s)")
            progress = Progress(hour_versions=plan.hour_versions,
                                day_versions=plan.day_versions)
            for attempt in range(1, ROUNDS + 1):
                _visit(plan, lake, snaps, duck, ids, report, progress, scan)
                with warehouse.connect() as con:
                    parquet.install(con, ids)
                    plan = _recheck(con, duck, lake, snaps, progress)
                    if not plan:
                        report.hours_rewritten = len(progress.hours_rewritten)
                        report.cohort_days_rewritten = len(progress.days_rewritten)
                        audit.remove(con, report, hour_versions=progress.hour_versions,
                                     day_versions=progress.day_versions)
                        break
                    if attempt == ROUNDS:
                        audit.mark(con, report, audit.INCOMPLETE)
                        raise ForgetError(
                            f"forget request {report.request_id}: {len(plan.hours)} hour(s) "
                            f"and {len(plan.days)} cohort day(s) were written again while it "
                            f"ran, {ROUNDS} times; the warehouse's rows were kept. Pause the "
                            "runs that fetch, normalize or load them (schedules, backfills) and "
                            "run the same request again")
                say(f"{len(plan.hours)} hour(s) and {len(plan.days)} day(s) changed meanwhile;"
                    " visiting them again")
        except BaseException:
            if report.status == audit.RUNNING:
                _mark_failed(warehouse, report)
            raise
    say(f"removed {report.event_rows_removed} event row(s), {report.parquet_rows_removed} "
        f"Parquet row(s), {report.landing_lines_removed} landing line(s) in "
        f"{report.hours_rewritten} hour(s); {report.cohort_member_rows_removed} cohort member "
        f"row(s), {report.cohort_parquet_rows_removed} Parquet and "
        f"{report.cohort_landing_rows_removed} landing record(s) in "
        f"{report.cohort_days_rewritten} day(s); {report.reject_rows_removed} quarantined "
        f"line(s); {report.landing_versions_removed} superseded landing version(s) deleted "
        f"({time.monotonic() - started:.1f} s)")
    aside = sorted(warehouse.path.parent.glob(f"{warehouse.path.name}.old-*"))
    if aside:  # pipeline.rebuild moves a replaced file aside and never deletes it
        say(f"warning: {len(aside)} earlier warehouse file(s) beside it ({aside[0].name}, ...) "
            "still hold every row they held; delete them")
    return report


def _mark_failed(warehouse: Warehouse, report: ForgetReport) -> None:
    with contextlib.suppress(Exception):  # the original error matters, not this one
        quick = Warehouse(warehouse.path, lock_timeout_seconds=10)
        with quick.connect() as con:
            audit.mark(con, report, audit.FAILED)


@contextlib.contextmanager
def _one_at_a_time(lake: AmplitudeLake, timeout_seconds: float) -> Iterator[None]:
    """One request per lake at a time: two would each land an hour from a version the other
    deletes, and one could put back the other's users."""
    root = lake.local(lake.root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    with open(path, "a+") as lock:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    lock.seek(0)
                    holder = lock.read().strip() or "unknown"
                    raise ForgetError(f"another forget request holds {path} (pid {holder}) "
                                      f"after {timeout_seconds:.0f} s; let it finish, or end "
                                      "that process, and run again") from None
                time.sleep(0.5)
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---- finding the partitions ----

def events_file(lake: AmplitudeLake, hour: datetime) -> Path:
    """Where a local lake keeps the hour's file, whether or not it has one."""
    return lake.local(lake.table_folder("amplitude", "events", hour_partition(hour))) / \
        "events.parquet"


def _cohort_landing(snaps: Snapshots, day: date) -> Path:
    return snaps.lake.local(snaps.folder(landing.COHORT_MEMBERS, day))


def cohort_file(snaps: Snapshots, day: date) -> Path:
    folder = snaps.lake.table_folder(snaps.source, landing.COHORT_MEMBERS, day_partition(day))
    return snaps.lake.local(folder) / f"{landing.COHORT_MEMBERS}.parquet"


def _landed_hours(lake: AmplitudeLake) -> dict[datetime, Path]:
    """Every landed upload hour, with its folder."""
    hours = {}
    root = lake.local(lake.root) / "landing" / "amplitude" / "export"
    for manifest in root.glob(f"upload_date=*/upload_hour=*/{MANIFEST}"):
        folder = manifest.parent
        try:
            hour = datetime.strptime(f"{folder.parent.name} {folder.name}",
                                     "upload_date=%Y-%m-%d upload_hour=%H").replace(tzinfo=UTC)
        except ValueError:
            continue
        if lake.landing_dir(hour) == folder:
            hours[hour] = folder
    return hours


def _lake_files(root: Path, pattern: str) -> list[Path]:
    return sorted(root.glob(pattern))


def _built_from(duck: duckdb.DuckDBPyConnection, files: list[Path]) -> dict[Path, str]:
    """The landing version each file names in its metadata, for those that name one."""
    existing = [str(f) for f in files if f.exists()]
    if not existing:
        return {}
    rows = duck.execute("SELECT file_name, value FROM parquet_kv_metadata(?) WHERE key = ?",
                        [existing, LANDING_VERSION_KEY.encode()]).fetchall()
    return {Path(name): bytes(value).decode(errors="replace") for name, value in rows}


def _fresh(parquet_file: Path, folder: Path, version: str | None, named: dict[Path, str]) -> bool:
    """Whether an hour's (or day's) Parquet file was built from its current landing."""
    if not parquet_file.exists() or version is None:
        return False
    if parquet_file in named:
        return named[parquet_file] == version
    try:
        return parquet_file.stat().st_mtime >= (folder / MANIFEST).stat().st_mtime
    except FileNotFoundError:
        return False


def _discover(con: duckdb.DuckDBPyConnection, duck: duckdb.DuckDBPyConnection,
              lake: AmplitudeLake, snaps: Snapshots, scan: str) -> Plan:
    plan = Plan()
    plan.add_hours(audit.hours_holding(con), True)
    plan.add_days(audit.days_holding(con), True)
    landed_hours = _landed_hours(lake)
    loaded_hours = audit.loaded_hours(con)
    _unvouched(plan.hours, plan.add_hours, duck, scan, loaded_hours,
               {h: (folder, events_file(lake, h)) for h, folder in landed_hours.items()})
    cohort_days = landing.CohortDays.read(snaps)
    loaded_days = audit.loaded_days(con)
    _unvouched(plan.days, plan.add_days, duck, scan, loaded_days,
               {d: (cohort_days.folder(d), cohort_file(snaps, d))
                for d in cohort_days.landings})
    for hour in plan.hours:
        if hour in landed_hours:
            _inherit(plan.hour_versions, loaded_hours.get(hour), landed_hours[hour])
    for day in plan.days:
        if day in cohort_days.landings:
            _inherit(plan.day_versions, loaded_days.get(day), cohort_days.folder(day))
    if scan in ("lake", "landing"):  # every Parquet file, landed or not
        for path, _ in parquet.matches_in(duck, _lake_files(
                lake.local(lake.root),
                "amplitude/events/upload_date=*/upload_hour=*/events.parquet")).items():
            plan.add_hours([_hour_of(path)], True)
        for path, _ in parquet.matches_in(duck, _lake_files(
                lake.local(lake.root),
                "amplitude/cohort_members/snapshot_date=*/cohort_members.parquet")).items():
            plan.add_days([date.fromisoformat(path.parent.name.split("=", 1)[1])], True)
    return plan


def _inherit(versions: dict[str, str], loaded: audit.Loaded | None, folder: Path) -> None:
    """Map the loaded landing version to the current one when the current one is this command's
    rewrite of it: the same fetch (a rewrite keeps ``fetched_at``; a fetch sets a new one) under
    another version. That is what a request killed between its landing and its warehouse steps
    leaves; the ledger and the Parquet file then follow the rewrite as if it had not stopped."""
    text = read_manifest(folder)
    if loaded is None or loaded[0] is None or loaded[1] is None or text is None:
        return
    try:
        manifest = json.loads(text)
        version, fetched_at = manifest["version"], datetime.fromisoformat(manifest["fetched_at"])
    except (ValueError, KeyError, TypeError):
        return
    if version != loaded[0] and fetched_at == loaded[1]:
        versions[loaded[0]] = str(version)


def chain(versions: dict[str, str], old: str, new: str) -> None:
    """Record that ``new`` replaced ``old`` (and so every version ``old`` had replaced)."""
    for key, value in versions.items():
        if value == old:
            versions[key] = new
    versions[old] = new


def _hour_of(path: Path) -> datetime:
    return datetime.strptime(f"{path.parent.parent.name} {path.parent.name}",
                             "upload_date=%Y-%m-%d upload_hour=%H").replace(tzinfo=UTC)


def _unvouched(
        known: dict[K, bool], add: Callable[[set[K], bool], None],
        duck: duckdb.DuckDBPyConnection, scan: str, loaded: dict[K, audit.Loaded],
        landed: dict[K, tuple[Path, Path]]) -> None:
    """Add the landed partitions the warehouse cannot vouch for: those whose loaded rows did
    not come from the current landing version (all of them, with ``scan="landing"``).

    Such a partition's Parquet file is checked when it was built from the current landing;
    otherwise the partition is visited, which reads its landing."""
    versions = {key: landing.current_version(folder) for key, (folder, _) in landed.items()
                if key not in known}
    named = _built_from(duck, [landed[key][1] for key in versions])
    check: dict[Path, K] = {}
    look: set[K] = set()
    for key, version in versions.items():
        folder, parquet_file = landed[key]
        if scan == "landing":
            look.add(key)
        elif version is not None and loaded.get(key, (None, None))[0] == version:
            continue  # the warehouse holds what this landing holds
        elif _fresh(parquet_file, folder, version, named):
            check[parquet_file] = key
        else:
            look.add(key)
    add(look, False)
    add({check[path] for path in parquet.matches_in(duck, list(check))}, True)


# ---- visiting them ----

def _visit(plan: Plan, lake: AmplitudeLake, snaps: Snapshots, duck: duckdb.DuckDBPyConnection,
           ids: Ids, report: ForgetReport, progress: Progress, scan: str) -> None:
    thorough = scan == "landing"
    for hour, affected in sorted(plan.hours.items()):
        change = landing.forget_hour(lake, hour, ids, affected=affected,
                                     scan_superseded=thorough)
        if change.version is not None and change.superseded is not None:
            chain(progress.hour_versions, change.superseded, change.version)
            report.landing_versions_written += 1
        report.landing_lines_removed += change.lines_removed
        report.landing_versions_removed += change.versions_removed
        done = parquet.rewrite(duck, events_file(lake, hour), parquet.EVENTS_OPTIONS,
                               progress.hour_versions)
        report.parquet_files_rewritten += done.rewritten
        report.parquet_rows_removed += done.rows_removed
        if done.rewritten or change.version is not None:
            progress.hours_rewritten.add(hour)
        progress.hours[hour] = landing.current_version(lake.local(lake.landing_dir(hour)))
        log.debug("upload hour %s visited", f"{hour:%Y-%m-%dT%H}")
    if not plan.days:
        return
    cohorts = landing.forget_cohort_days(
        snaps, set(plan.days), ids, affected={d for d, a in plan.days.items() if a},
        scan_superseded=thorough)
    for old, new in cohorts.versions.items():
        chain(progress.day_versions, old, new)
    report.landing_versions_written += len(cohorts.versions)
    report.landing_versions_removed += cohorts.versions_removed
    report.cohort_landing_rows_removed += cohorts.rows_removed
    progress.days_rewritten |= cohorts.days_rewritten
    for day in sorted(set(plan.days) | cohorts.days_rewritten):
        done = parquet.rewrite(duck, cohort_file(snaps, day),
                               parquet.COHORT_MEMBERS_OPTIONS, progress.day_versions)
        report.parquet_files_rewritten += done.rewritten
        report.cohort_parquet_rows_removed += done.rows_removed
        if done.rewritten:
            progress.days_rewritten.add(day)
        progress.days[day] = landing.current_version(_cohort_landing(snaps, day))


def _recheck(con: duckdb.DuckDBPyConnection, duck: duckdb.DuckDBPyConnection,
             lake: AmplitudeLake, snaps: Snapshots, progress: Progress) -> Plan:
    """Under the warehouse's lock (no load can run): what changed while the lake was rewritten.

    Hours (days) the warehouse now holds the users in that were not visited, visited ones
    landed again since, and visited ones whose Parquet file holds them again."""
    plan = Plan()
    plan.add_hours(audit.hours_holding(con) - set(progress.hours), True)
    plan.add_days(audit.days_holding(con) - set(progress.days), True)
    plan.add_hours({h for h, v in progress.hours.items()
                    if landing.current_version(lake.local(lake.landing_dir(h))) != v}, False)
    plan.add_days({d for d, v in progress.days.items()
                   if landing.current_version(_cohort_landing(snaps, d)) != v},
                  False)
    files = {events_file(lake, h): h for h in progress.hours}
    plan.add_hours({files[p] for p in parquet.matches_in(duck, list(files))}, True)
    day_files = {cohort_file(snaps, d): d for d in progress.days}
    plan.add_days({day_files[p] for p in parquet.matches_in(duck, list(day_files))}, True)
    return plan
