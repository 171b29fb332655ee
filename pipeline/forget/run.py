"""One forget request, from finding where the users are to the audit rows.

Every project of the lake (``pipeline.source.projects_in_lake``) whose source knows a kind of id
the request holds is visited, each through the partition families its source lists
(``Source.user_data``), in this order (docs/forgetting-users.md has the long form):

1. Find the partitions (``discover.py``).
2. For each partition, upstream first: the landing (a new version, committed, then the
   superseded ones deleted), then the Parquet file (rewritten, renamed over). Whatever re-derives
   a partition meanwhile (a normalize, a load) derives it from what is already clean.
3. Check again under the warehouse's lock: new partitions holding the users (a load meanwhile),
   a landing committed again, a Parquet file written again from an old landing. Those go round
   once more (a bounded number of times).
4. Delete the warehouse's rows, fix the ledgers and write the audit rows, in one transaction.

The warehouse is deleted last because it is the list of what is left to do: a run killed at any
point leaves the users' rows there, so the same request run again finds every partition that
still needs work (the lake steps it already did find nothing and change nothing). Until then,
the warehouse holds rows for a rewritten partition that its Parquet file no longer has; a load
of that partition replaces them with the file's (as it would after any re-normalize), and the
request run again deletes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipeline import engine
from pipeline.forget import audit, discover, landing, parquet
from pipeline.forget.audit import ForgetReport, ProjectReport
from pipeline.forget.contract import UserData
from pipeline.forget.ids import Ids
from pipeline.lake import Lake
from pipeline.object_storage import is_remote
from pipeline.source import Partition, Project, projects_in_lake, source
from pipeline.warehouse import Warehouse

log = logging.getLogger("pipeline.forget")

SCANS = ("warehouse", "lake", "landing")
ROUNDS = 3  # passes over partitions that changed under the request before it gives up
LOCK_FILE = ".forget.lock"


class ForgetError(RuntimeError):
    """A request that could not finish; the message never quotes an id."""


@dataclass
class Family:
    """One partition family of a visited project, and what the request did to it so far."""

    data: UserData
    report: ProjectReport
    plan: discover.Plan = field(default_factory=discover.Plan)
    versions: dict[str, str] = field(default_factory=dict)  # superseded -> new
    visited: dict[Partition, str | None] = field(default_factory=dict)  # -> version left
    rewritten: set[Partition] = field(default_factory=set)

    @property
    def name(self) -> str:
        return f"{self.data.unit}(s) of {self.data.table}"


def families(lake: Lake, ids: Ids) -> tuple[list[Project], list[Family], list[ProjectReport]]:
    """Every project of the lake, and the families of those whose source knows a kind of id of
    the request."""
    projects = projects_in_lake(lake)
    found: list[Family] = []
    reports: list[ProjectReport] = []
    counts = {kind: len(ids.of(kind)) for kind in ids.kinds()}
    for project in projects:
        every = list(source(project.source).user_data(lake, project))
        asked = [data for data in every if data.kinds & ids.kinds()]
        if asked:
            report = audit.project_report(project, every, counts)
            reports.append(report)
            found += [Family(data, report) for data in asked]
    return projects, found, reports


def forget(warehouse_path: Path, lake_root: Path, ids: Ids, *, scan: str = "warehouse",
           lock_timeout_seconds: float = 300.0,
           say: Callable[[str], None] = log.info) -> ForgetReport:
    """Remove every row and line of these users from the warehouse, the lake and the landing
    copies of every project that knows their kinds of id, and record what was removed (never
    the ids) in each project's ``_forget_requests``.

    Running it again removes nothing more and records that. ``say`` gets progress lines
    (counts, never ids). Raises :class:`ForgetError` when the request could not finish; run
    it again with the same ids to complete it.
    """
    if not len(ids):
        raise ForgetError("no ids to forget: pass --amplitude-id, --user-id, --distinct-id or "
                          "--ids-file")
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
    lake = Lake(Path(lake_root))
    projects, work, reports = families(lake, ids)
    if not work:
        raise ForgetError(f"no project in the lake at {lake_root} keeps ids of the kinds asked "
                          f"for ({', '.join(sorted(ids.kinds()))}); projects found: "
                          f"{', '.join(p.namespace for p in projects) or 'none'}")
    warehouse = Warehouse(Path(warehouse_path), projects=projects, views=False,
                          lock_timeout_seconds=lock_timeout_seconds)
    report = ForgetReport(request_id=uuid.uuid4().hex, requested_at=datetime.now(UTC), scan=scan,
                          projects=reports)
    say(f"forget request {report.request_id}: {ids!r}, in "
        f"{', '.join(r.project.namespace for r in reports)}")
    with _one_at_a_time(lake, lock_timeout_seconds), lake.scratch() as scratch, \
            engine.connect(config={"memory_limit": "384MB", "threads": 2,
                                   "temp_directory": str(scratch)}) as duck:
        duck.execute("SET TimeZone = 'UTC'")
        parquet.install(duck, ids)
        with warehouse.connect() as con:
            audit.record(con, report)
        try:
            _rounds(warehouse, duck, ids, report, work, scan, say)
        except BaseException:
            if report.status == audit.RUNNING:
                _mark_failed(warehouse, report)
            raise
    say(f"done in {time.monotonic() - started:.1f} s: " + "; ".join(
        f"{f.data.table}: {f.report.counts[f.data.audit.rows_removed]} row(s), "
        f"{f.report.counts[f.data.audit.parquet_rows_removed]} Parquet row(s), "
        f"{f.report.counts[f.data.audit.landing_records_removed]} landing record(s) in "
        f"{len(f.rewritten)} {f.data.unit}(s)" for f in work)
        + f"; {report.total('landing_versions_removed')} superseded landing version(s) deleted")
    aside = sorted(warehouse.path.parent.glob(f"{warehouse.path.name}.old-*"))
    if aside:  # pipeline.rebuild moves a replaced file aside and never deletes it
        say(f"warning: {len(aside)} earlier warehouse file(s) beside it ({aside[0].name}, ...) "
            "still hold every row they held; delete them")
    return report


def _rounds(warehouse: Warehouse, duck: duckdb.DuckDBPyConnection, ids: Ids,
            report: ForgetReport, work: list[Family], scan: str,
            say: Callable[[str], None]) -> None:
    with warehouse.connect() as con:
        parquet.install(con, ids)
        for family in work:
            family.plan = discover.discover(con, duck, family.data, scan)
            family.versions.update(family.plan.versions)
    say("to visit: " + ", ".join(f"{len(f.plan.partitions)} {f.name}" for f in work))
    for attempt in range(1, ROUNDS + 1):
        for family in work:
            if family.plan:
                visit(family, duck, ids, scan)
        with warehouse.connect() as con:
            parquet.install(con, ids)
            for family in work:
                family.plan = discover.recheck(con, duck, family.data, family.visited)
            left = [f for f in work if f.plan]
            if not left:
                for family in work:
                    family.report.add(family.data.audit.partitions_rewritten,
                                      len(family.rewritten))
                audit.remove(con, report, [(f.data, f.report, f.versions) for f in work])
                return
            if attempt == ROUNDS:
                audit.mark(con, report, audit.INCOMPLETE)
                raise ForgetError(
                    f"forget request {report.request_id}: "
                    + ", ".join(f"{len(f.plan.partitions)} {f.name}" for f in left)
                    + f" were written again while it ran, {ROUNDS} times; the warehouse's rows "
                    "were kept. Pause the runs that fetch, normalize or load them (schedules, "
                    "backfills) and run the same request again")
        say(", ".join(f"{len(f.plan.partitions)} {f.name}" for f in left)
            + " changed meanwhile; visiting them again")


def visit(family: Family, duck: duckdb.DuckDBPyConnection, ids: Ids, scan: str) -> None:
    """Land the planned partitions again without the users, then rewrite their Parquet files."""
    data, counts = family.data, family.report
    change = landing.forget_landings(data, family.plan.partitions, ids,
                                     scan_superseded=scan == "landing")
    for old, new in change.versions.items():
        discover.chain(family.versions, old, new)
    counts.add("landing_versions_written", len(change.versions))
    counts.add("landing_versions_removed", change.versions_removed)
    counts.add(data.audit.landing_records_removed, change.records_removed)
    family.rewritten |= change.rewritten
    landed = data.landed()
    for partition in sorted(set(family.plan.partitions) | change.rewritten):
        done = parquet.rewrite(duck, data.parquet_file(partition), data.predicate,
                               data.parquet_options, family.versions)
        counts.add("parquet_files_rewritten", int(done.rewritten))
        counts.add(data.audit.parquet_rows_removed, done.rows_removed)
        if done.rewritten:
            family.rewritten.add(partition)
        family.visited[partition] = (landing.current_version(landed[partition])
                                     if partition in landed else None)
    log.debug("%d %s visited", len(family.plan.partitions), family.name)


def _mark_failed(warehouse: Warehouse, report: ForgetReport) -> None:
    with contextlib.suppress(Exception):  # the original error matters, not this one
        quick = Warehouse(warehouse.path, projects=warehouse.projects, views=False,
                          lock_timeout_seconds=10)
        with quick.connect() as con:
            audit.mark(con, report, audit.FAILED)


@contextlib.contextmanager
def _one_at_a_time(lake: Lake, timeout_seconds: float) -> Iterator[None]:
    """One request per lake at a time: two would each land a partition from a version the other
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
