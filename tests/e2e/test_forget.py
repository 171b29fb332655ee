"""Forgetting users end to end: hours and today's cohort snapshot materialized through Dagster
against the simulator, users picked from what it served, forgotten with ``python -m
pipeline.forget``, then every store searched: DuckDB, the Parquet lake, every landing file of
every version. Every other row and line must be unchanged, field for field and byte for byte."""

from __future__ import annotations

import csv
import fcntl
import gzip
import io
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.partitions import partition_key
from pipeline.amplitude import cohort_members as cm
from pipeline.amplitude.client import AmplitudeClient
from pipeline.amplitude.cohorts import fetch_cohorts
from pipeline.amplitude.forgetting import COHORT_COLUMNS, EXPORT_FIELDS, ROW_MATCH
from pipeline.forget import ForgetError, Ids, IdsError, compact, forget
from pipeline.forget import landing as forget_landing
from pipeline.forget import parquet as forget_parquet
from pipeline.forget.__main__ import main
from pipeline.forget.matching import JsonFields, csv_records
from pipeline.lineage import landing_version_of
from pipeline.snapshots import Snapshots
from tests.conftest import AMPLITUDE, DAY, SMALL, amplitude_warehouse
from tests.e2e.conftest import (
    EVENTS,
    EVENTS_PARQUET,
    RAW_EXPORT,
    event_assets,
    make_project,
    parquet_rows,
    warehouse_rows,
)

H = timedelta(hours=1)
HOURS = [DAY + i * H for i in range(12)]


def today():
    """Today's UTC date, read when needed: a module-level one goes stale at midnight."""
    return datetime.now(UTC).date()


COHORTS = ("k3x9qpl", "p0w3rus", "n3wsl7r")  # the simulator's cohorts that are not archived
SNAPSHOT_RUN = {"ops": {"amplitude__cohort_members": {"config": {
    "poll_first_seconds": 0.02, "poll_max_seconds": 0.1, "poll_timeout_minutes": 1.0}}}}
REPO = Path(__file__).resolve().parents[2]

project = make_project(SMALL)


# ---- driving the project ----

def materialize(project, first, last, selection=None):
    defs = project.defs()
    return dg.materialize(
        event_assets(defs), selection=selection, resources=defs.resources,
        instance=project.instance, raise_on_error=True,
        tags={"dagster/asset_partition_range_start": partition_key(first),
              "dagster/asset_partition_range_end": partition_key(last)})


def materialize_cohorts(project, day=None):
    day = day or today()
    defs = project.defs()
    keys = {dg.AssetKey(["amplitude", "cohorts"]), dg.AssetKey(["amplitude", "cohort_members"])}
    return dg.materialize([a for a in defs.assets if set(a.keys) & keys],
                          resources=defs.resources, instance=project.instance,
                          partition_key=day.isoformat(), run_config=SNAPSHOT_RUN)


def run_forget(project, *args: str) -> int:
    return main(["--warehouse", str(project.root / "warehouse.duckdb"),
                 "--lake", str(project.root / "lake"), *args])


# ---- who to forget, from what the simulator serves ----

def served_lines(sim, hours):
    return [(hour, json.loads(raw)) for hour in hours for raw in sim.hour_lines(hour)]


def cohort_members_served(sim) -> dict[int, str | None]:
    members = {}
    for cohort in COHORTS:
        _header, *rows = csv.reader(io.StringIO(b"".join(sim.cohort_csv(cohort)).decode()))
        members.update({int(r[0]): r[1] or None for r in rows})
    return members


@dataclass
class Users:
    """Three users: one forgotten by amplitude_id (events in two hours, and cohorts), one by a
    user_id with non-ASCII characters, one by amplitude_id who is only in a cohort."""

    by_amplitude_id: int
    by_user_id: str
    by_user_id_amplitude_id: int  # the same person's amplitude_id, to search for
    cohort_only: int

    @classmethod
    def pick(cls, sim, hours=HOURS) -> Users:
        lines = served_lines(sim, hours)
        members = cohort_members_served(sim)
        hours_of, user_of = defaultdict(set), {}
        for hour, line in lines:
            hours_of[line["amplitude_id"]].add(hour)
            user_of[line["amplitude_id"]] = line["user_id"]
        two = sorted(a for a, hs in hours_of.items() if len(hs) >= 2 and a in members)
        accented = sorted((a, u) for a, u in user_of.items()
                          if u and not u.isascii() and a not in two)
        in_cohort = [(a, u) for a, u in accented if a in members] or accented
        only = sorted(set(members) - set(hours_of))
        assert two and in_cohort and only, "the simulator's data changed: pick other users"
        return cls(two[0], in_cohort[0][1], in_cohort[0][0], only[0])

    def ids(self) -> Ids:
        return Ids([self.by_amplitude_id, self.cohort_only], [self.by_user_id])

    def args(self) -> list[str]:
        return ["--amplitude-id", str(self.by_amplitude_id), "--user-id", self.by_user_id,
                "--amplitude-id", str(self.cohort_only)]

    def theirs(self, amplitude_id, user_id) -> bool:
        return amplitude_id in (self.by_amplitude_id, self.cohort_only) or \
            user_id == self.by_user_id

    def texts(self) -> list[str]:
        """Every spelling in which any of them could show up in a file, a log or a table."""
        return [str(self.by_amplitude_id), str(self.cohort_only),
                str(self.by_user_id_amplitude_id), self.by_user_id,
                json.dumps(self.by_user_id)[1:-1]]


# ---- what the stores hold ----

def landing_lines(lake, hour) -> list[bytes]:
    landed = lake.landed(hour)
    out = []
    for path in lake.member_paths(landed):
        with gzip.open(path) as member:
            out.extend(member)
    return out


def cohort_records(project) -> dict[str, list[bytes]]:
    snaps = Snapshots(project.lake, "amplitude")
    newest = max(snaps.lake.root.glob("landing/amplitude/cohort_members/snapshot_date=*"))
    landing = snaps.landed("cohort_members", date.fromisoformat(newest.name.split("=")[1]))
    return {p.name: (gzip.decompress(p.read_bytes()) if p.name.endswith(".gz")
                     else p.read_bytes()).splitlines(keepends=True)
            for p in snaps.paths(landing)}


def cohort_rows(con) -> list[tuple]:
    return sorted(con.execute("SELECT * FROM amplitude.cohort_members").fetchall(), key=repr)


@dataclass
class State:
    events: dict[datetime, dict[str, dict]]
    parquet: dict[datetime, dict[str, dict]]
    landing: dict[datetime, list[bytes]]
    members: list[tuple]
    member_landing: dict[str, list[bytes]]
    ledger: dict[datetime, int]

    @classmethod
    def read(cls, project, hours=HOURS, cohorts=True) -> State:
        with project.warehouse() as con:
            events = {h: warehouse_rows(con, h) for h in hours}
            members = cohort_rows(con) if cohorts else []
            ledger = dict(con.execute("SELECT upload_hour, rows FROM amplitude._loads"
                                      ).fetchall())
        return cls(events, {h: parquet_rows(project.lake.events_file(h)) for h in hours},
                   {h: landing_lines(project.lake, h) for h in hours}, members,
                   cohort_records(project) if cohorts else {}, ledger)

    def without(self, users: Users) -> State:
        """What should remain once the users are forgotten."""
        def rows(by_uuid):
            return {k: r for k, r in by_uuid.items()
                    if not users.theirs(r["amplitude_id"], r["user_id"])}

        def line_theirs(line):
            data = json.loads(line)
            return users.theirs(data["amplitude_id"], data["user_id"])

        def record_theirs(line):
            row = next(csv.reader([line.decode()]))
            return row[0] != "amplitude_id" and users.theirs(int(row[0]), row[1] or None)

        events = {h: rows(r) for h, r in self.events.items()}
        return State(
            events, {h: rows(r) for h, r in self.parquet.items()},
            {h: [x for x in lines if not line_theirs(x)] for h, lines in self.landing.items()},
            [m for m in self.members if not users.theirs(m[2], m[3])],
            {f: [x for x in lines if not record_theirs(x)]
             for f, lines in self.member_landing.items()},
            {h: self.ledger[h] - (len(self.events[h]) - len(events[h])) for h in self.ledger})


def assert_gone(project, users: Users) -> None:
    """No trace of the users in DuckDB, in any Parquet file, or in any landing file of any
    version (every file decompressed and searched)."""
    ids = users.ids()
    with project.warehouse() as con:
        for table in ("events", "cohort_members"):
            assert con.execute(
                f"SELECT count(*) FROM amplitude.{table} WHERE amplitude_id IN (?, ?, ?) OR "
                "user_id = ?", [users.by_amplitude_id, users.cohort_only,
                                users.by_user_id_amplitude_id, users.by_user_id]
            ).fetchone() == (0,)
    lake = project.root / "lake"
    for table, name in (("events", "events"), ("cohort_members", "cohort_members")):
        files = sorted(str(p) for p in (lake / "amplitude" / table).rglob(f"*{name}.parquet"))
        assert files
        found = duckdb.execute(
            "SELECT count(*) FROM read_parquet(?, union_by_name = true) WHERE amplitude_id IN "
            "(?, ?, ?) OR user_id = ?", [files, users.by_amplitude_id, users.cohort_only,
                                         users.by_user_id_amplitude_id, users.by_user_id]
        ).fetchone()
        assert found == (0,), table
    needles = [t.encode() for t in users.texts()]
    searched = 0
    for path in (lake / "landing").rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        searched += 1
        for needle in needles:
            assert needle not in data, f"an id in {path.relative_to(lake)}"
    assert searched > len(HOURS)
    assert ids  # (the Ids object itself never shows them)


def assert_lineage(project) -> None:
    """Each hour's ledger row and Parquet file name its current landing version, so a load
    takes the file as it is (it refuses one built from another landing)."""
    with project.warehouse() as con:
        ledger = dict(con.execute("SELECT upload_hour, landing_version FROM amplitude._loads"
                                  ).fetchall())
    for hour in HOURS:
        current = project.lake.landed(hour).version
        assert ledger[hour] == current
        assert landing_version_of(project.lake.events_file(hour)) in (None, current)


def audit_rows(project) -> list[dict]:
    with project.warehouse() as con:
        cursor = con.execute("SELECT * FROM amplitude._forget_requests ORDER BY requested_at")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def lake_files(project) -> dict[str, tuple[int, int]]:
    lake = project.root / "lake"
    return {str(p.relative_to(lake)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in lake.rglob("*") if p.is_file() and ".scratch" not in p.parts
            and p.name != ".forget.lock"}


@pytest.fixture
def loaded(project):
    """Twelve hours and today's cohort members materialized; the users to forget."""
    materialize(project, HOURS[0], HOURS[-1])
    materialize_cohorts(project)
    return Users.pick(project.sim)


# ---- the main path ----

def test_forgetting_removes_the_users_everywhere_and_keeps_every_other_row(
        project, loaded, caplog, capsys):
    users = loaded
    before = State.read(project)
    expected = before.without(users)
    hours = {h for h, rows in before.events.items() if len(rows) != len(expected.events[h])}
    removed_events = sum(len(before.events[h]) - len(expected.events[h]) for h in HOURS)
    removed_members = len(before.members) - len(expected.members)
    assert len(hours) >= 3 and removed_events >= 3 and removed_members >= 2

    caplog.set_level(logging.DEBUG)
    assert run_forget(project, *users.args(), "--compact") == 0
    out, err = capsys.readouterr()
    assert "warehouse compacted into a fresh file" in out

    after = State.read(project)
    assert after.events == expected.events  # every other row, field for field
    assert after.parquet == expected.parquet
    assert after.landing == expected.landing  # every other line, byte for byte, in order
    assert after.members == expected.members
    assert after.member_landing == expected.member_landing
    assert after.ledger == expected.ledger  # the ledger's row counts follow
    assert_gone(project, users)
    for hour in hours:  # one version left, the new one, and the ledger names it
        folder = project.lake.landing_dir(hour)
        assert [p.name for p in folder.glob("v*")] == [project.lake.landed(hour).version]
    assert_lineage(project)

    [row] = audit_rows(project)
    assert row["status"] == "finished" and row["finished_at"] >= row["requested_at"]
    assert (row["amplitude_id_count"], row["user_id_count"], row["scan"]) == (2, 1, "warehouse")
    assert (row["event_rows_removed"], row["parquet_rows_removed"],
            row["landing_lines_removed"]) == (removed_events,) * 3
    assert (row["cohort_member_rows_removed"], row["cohort_parquet_rows_removed"],
            row["cohort_landing_rows_removed"]) == (removed_members,) * 3
    assert (row["hours_rewritten"], row["cohort_days_rewritten"]) == (len(hours), 1)
    assert row["landing_versions_written"] == row["landing_versions_removed"] == len(hours) + 1
    assert row["parquet_files_rewritten"] == len(hours) + 1 and row["reject_rows_removed"] == 0
    assert row["request_id"] in out

    said = "\n".join([out, err, caplog.text, repr(row), repr(users.ids())])
    for text in users.texts():
        assert text not in said


def test_a_second_run_removes_nothing_and_records_that(project, loaded):
    users = loaded
    assert run_forget(project, *users.args()) == 0
    files, state = lake_files(project), State.read(project)
    assert run_forget(project, *users.args()) == 0
    assert lake_files(project) == files and State.read(project) == state
    first, second = audit_rows(project)
    assert first["event_rows_removed"] > 0 and second["status"] == "finished"
    counts = {k: v for k, v in second.items() if k.endswith(("_removed", "_rewritten",
                                                             "_written"))}
    assert set(counts.values()) == {0} and len(counts) == 12


def test_reloading_from_landing_does_not_bring_them_back(project, loaded):
    users = loaded
    assert run_forget(project, *users.args()) == 0
    forgotten = State.read(project)
    project.sim.reset_log()
    materialize(project, HOURS[0], HOURS[-1], selection=[EVENTS])  # the rewritten files load
    assert State.read(project) == forgotten
    materialize(project, HOURS[0], HOURS[-1], selection=[EVENTS_PARQUET, EVENTS])
    materialize_cohorts(project)  # today again: unchanged cohorts are carried forward
    assert project.sim.export_requests() == []
    assert not [r for r in project.sim.requests if r.path.startswith("/api/5/")]
    again = State.read(project)
    assert (again.events, again.parquet, again.landing, again.members) == (
        forgotten.events, forgotten.parquet, forgotten.landing, forgotten.members)
    assert_gone(project, users)


def test_a_refetch_brings_them_back_until_forgotten_again_from_the_suppression_list(
        project, loaded, tmp_path):
    users = loaded
    suppressed = tmp_path / "private" / "forgotten.txt"
    suppressed.parent.mkdir()
    assert run_forget(project, *users.args(), "--suppression-list", str(suppressed)) == 0
    assert stat.S_IMODE(suppressed.stat().st_mode) == 0o600
    assert Ids.read(suppressed) == users.ids()
    forgotten = State.read(project, cohorts=False)
    for hour in HOURS:  # as if never fetched: the next run asks Amplitude again
        shutil.rmtree(project.lake.landing_dir(hour))
    materialize(project, HOURS[0], HOURS[-1])
    with project.warehouse() as con:
        back = con.execute("SELECT count(*) FROM amplitude.events WHERE amplitude_id = ?",
                           [users.by_amplitude_id]).fetchone()[0]
    assert back >= 2  # Amplitude still holds them: that is the caveat
    assert run_forget(project, "--ids-file", str(suppressed)) == 0
    assert_gone(project, users)
    again = State.read(project, cohorts=False)
    assert (again.events, again.parquet, again.landing) == (
        forgotten.events, forgotten.parquet, forgotten.landing)


def test_cohort_days_carried_forward_from_an_earlier_day_are_rewritten_together(project):
    day = today()
    sim, yesterday = project.sim, day - timedelta(days=1)
    snaps = Snapshots(project.lake, "amplitude")
    warehouse = amplitude_warehouse(project.root / "warehouse.duckdb")

    def history() -> cm.History:
        with warehouse.connect() as con:
            return cm.read_history(con, "amplitude", datetime.now(UTC))

    # yesterday's snapshot, taken yesterday (the core's `today` stands in for the calendar)
    with AmplitudeClient(sim.url, sim.config.api_key, sim.config.secret_key) as client:
        snaps.take("cohorts", yesterday, partial(fetch_cohorts, client), today=yesterday)
        snaps.take(cm.TABLE, yesterday, partial(
            cm.fetch_members, client, snaps, yesterday, history=history,
            polling=cm.Polling(10, 0.02, 0.1)), today=yesterday)
    materialize_cohorts(project, yesterday)  # replays its landing
    materialize_cohorts(project, day)  # carries every cohort forward from yesterday's files
    assert all(Path(f).is_absolute() for f in snaps.landed(cm.TABLE, day).files)
    with project.warehouse() as con:
        before = cohort_rows(con)
    member = sorted(cohort_members_served(sim))[0]
    theirs = [r for r in before if r[2] == member]
    assert {r[0] for r in theirs} == {yesterday, day}

    report = forget(project.root / "warehouse.duckdb", project.root / "lake", Ids([member]),
                    say=lambda _: None)
    counts = report.counts("amplitude")
    assert counts["cohort_member_rows_removed"] == counts["cohort_parquet_rows_removed"] == \
        len(theirs)
    assert counts["cohort_landing_rows_removed"] == len(theirs) // 2  # one file, read by both
    assert counts["cohort_days_rewritten"] == 2
    assert not any(Path(f).is_absolute() for f in snaps.landed(cm.TABLE, day).files)
    for each in (yesterday, day):  # each day has its own files now, in one version
        folder = snaps.folder(cm.TABLE, each)
        assert [p.name for p in folder.glob("v*")] == [snaps.landed(cm.TABLE, each).version]
        for path in snaps.paths(snaps.landed(cm.TABLE, each)):
            assert str(member).encode() not in path.read_bytes()
    with project.warehouse() as con:
        assert cohort_rows(con) == [r for r in before if r[2] != member]

    sim.reset_log()
    materialize_cohorts(project, yesterday)
    materialize_cohorts(project, day)
    assert not [r for r in sim.requests if r.path.startswith("/api/5/")]  # no download
    with project.warehouse() as con:
        assert cohort_rows(con) == [r for r in before if r[2] != member]


# ---- partitions the warehouse does not hold, and the scans ----

def test_hours_in_the_lake_but_not_the_warehouse_are_found_without_a_scan(project):
    loaded_hours, parquet_only, landed_only = HOURS[:4], HOURS[4:8], HOURS[8:]
    materialize(project, loaded_hours[0], loaded_hours[-1])
    materialize(project, parquet_only[0], parquet_only[-1],
                selection=[RAW_EXPORT, EVENTS_PARQUET])
    materialize(project, landed_only[0], landed_only[-1], selection=[RAW_EXPORT])
    lines = served_lines(project.sim, HOURS)
    hours_of = defaultdict(set)
    for hour, line in lines:
        hours_of[line["amplitude_id"]].add(hour)
    in_parquet = sorted(a for a, hs in hours_of.items() if hs <= set(parquet_only))[0]
    in_landing = sorted(a for a, hs in hours_of.items() if hs <= set(landed_only))[0]
    report = forget(project.root / "warehouse.duckdb", project.root / "lake",
                    Ids([in_parquet, in_landing]), say=lambda _: None)
    counts = report.counts("amplitude")
    assert counts["event_rows_removed"] == 0
    assert counts["parquet_rows_removed"] == len(hours_of[in_parquet]) == sum(
        1 for _, line in lines if line["amplitude_id"] == in_parquet)
    assert counts["landing_lines_removed"] == sum(
        1 for _, line in lines if line["amplitude_id"] in (in_parquet, in_landing))
    materialize(project, HOURS[4], HOURS[-1], selection=[EVENTS_PARQUET, EVENTS])
    with project.warehouse() as con:
        assert con.execute("SELECT count(*) FROM amplitude.events WHERE amplitude_id IN (?, ?)",
                           [in_parquet, in_landing]).fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM amplitude.events").fetchone()[0] == \
            len(lines) - counts["landing_lines_removed"]


def test_scan_lake_finds_what_the_warehouse_lost(project):
    materialize(project, HOURS[0], HOURS[-1])
    users = Users.pick(project.sim)
    target = users.by_amplitude_id
    with duckdb.connect(str(project.root / "warehouse.duckdb")) as con:  # a hand-edit
        con.execute("DELETE FROM amplitude.events WHERE amplitude_id = ?", [target])
    quiet = {"say": lambda _: None}
    paths = (project.root / "warehouse.duckdb", project.root / "lake")
    blind = forget(*paths, Ids([target]), **quiet)
    assert not blind.removed_anything()  # the warehouse vouches for these hours
    seen = forget(*paths, Ids([target]), scan="lake", **quiet)
    assert seen.total("parquet_rows_removed") == seen.total("landing_lines_removed") >= 2
    assert seen.scan == "lake"
    found = duckdb.execute(
        "SELECT count(*) FROM read_parquet(?) WHERE amplitude_id = ?",
        [str(project.root / "lake/amplitude/events/*/*/events.parquet"), target]).fetchone()
    assert found == (0,)


def test_scan_landing_removes_a_superseded_version_that_still_holds_them(project):
    materialize(project, HOURS[0], HOURS[-1])
    users = Users.pick(project.sim)
    hour = min(h for h, line in served_lines(project.sim, HOURS)
               if line["amplitude_id"] == users.by_amplitude_id)
    folder = project.lake.landing_dir(hour)
    old = project.lake.landed(hour).version
    kept = project.root / "kept"
    shutil.copytree(folder / old, kept)
    paths = (project.root / "warehouse.duckdb", project.root / "lake")
    quiet = {"say": lambda _: None}
    forget(*paths, Ids([users.by_amplitude_id]), **quiet)
    shutil.copytree(kept, folder / old)  # a copy some process left behind
    assert not forget(*paths, Ids([users.by_amplitude_id]), **quiet).removed_anything()
    assert (folder / old).exists()
    thorough = forget(*paths, Ids([users.by_amplitude_id]), scan="landing", **quiet)
    assert thorough.total("landing_versions_removed") == 1 and not (folder / old).exists()
    assert [p.name for p in folder.glob("v*")] == [project.lake.landed(hour).version]


# ---- crash safety ----

KILLER = """
import importlib, os, signal, sys
module, name, when = importlib.import_module(sys.argv[1]), sys.argv[2], sys.argv[3]
nth, calls = int(sys.argv[4]), []
original = getattr(module, name)
def wrapped(*args, **kwargs):
    calls.append(1)
    if len(calls) < nth:
        return original(*args, **kwargs)
    if when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    if getattr(result, "version", result):
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(module, name, wrapped)
from pipeline.forget.__main__ import main
from pipeline.amplitude import cohort_members as cm
from pipeline.amplitude.client import AmplitudeClient
from pipeline.amplitude.cohorts import fetch_cohorts
from pipeline.lineage import landing_version_of
sys.exit(main(sys.argv[5:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("module, name, when, nth", [
    ("pipeline.forget.landing", "land_again", "after", 1),  # a new landing committed
    ("pipeline.forget.run", "visit", "before", 2),  # hours done, cohort days not
    ("pipeline.forget.parquet", "rewrite", "after", 1),  # an hour's Parquet file rewritten
    ("pipeline.forget.audit", "remove", "before", 1),  # the lake done, the warehouse not
], ids=["landing", "cohort-landing", "parquet", "warehouse"])
def test_a_killed_request_is_completed_by_running_it_again(project, loaded, tmp_path, module,
                                                           name, when, nth):
    users = loaded
    before = State.read(project)
    expected = before.without(users)
    removed_events = sum(len(before.events[h]) - len(expected.events[h]) for h in HOURS)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("".join(users.ids().lines()))
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, module, name, when, str(nth), "--warehouse",
         str(project.root / "warehouse.duckdb"), "--lake", str(project.root / "lake"),
         "--ids-file", str(ids_file)], cwd=REPO, capture_output=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    [interrupted] = audit_rows(project)
    assert interrupted["status"] == "running" and interrupted["finished_at"] is None
    assert run_forget(project, "--ids-file", str(ids_file)) == 0
    assert State.read(project) == expected
    assert_gone(project, users)
    assert_lineage(project)  # as if the first run had not stopped
    materialize(project, HOURS[0], HOURS[-1], selection=[EVENTS])
    assert State.read(project) == expected
    first, second = audit_rows(project)
    assert second["status"] == "finished"
    # the warehouse's rows go in one transaction, at the end: all of them by the second run
    assert (first["event_rows_removed"], second["event_rows_removed"]) == (0, removed_events)
    assert second["cohort_member_rows_removed"] == len(before.members) - len(expected.members)


def test_quarantined_lines_that_spell_an_id_are_removed(project):
    materialize(project, HOURS[0], HOURS[-1])
    target = Users.pick(project.sim).by_amplitude_id
    with duckdb.connect(str(project.root / "warehouse.duckdb")) as con:
        con.execute("INSERT INTO amplitude._rejects VALUES (?, 'm#0', 3, ?, now()), "
                    "(?, 'm#0', 4, '{\"amplitude_id\": 1, \"cut', now())",
                    [HOURS[0], f'{{"amplitude_id": {target}, "user_id": "x", "cut', HOURS[0]])
    note = project.lake.landing_dir(HOURS[0]) / "_refused-normalize.json"  # a failed stage's
    note.write_text(json.dumps({"cause": f"line 9 is not JSON: {target}, cut"}))  # cause
    report = forget(project.root / "warehouse.duckdb", project.root / "lake", Ids([target]),
                    say=lambda _: None)
    assert report.counts("amplitude")["reject_rows_removed"] == 1
    assert str(target) not in note.read_text() and "<id>" in note.read_text()
    with project.warehouse() as con:
        assert con.execute("SELECT line_number FROM amplitude._rejects").fetchall() == [(4,)]


def test_a_second_request_waits_for_the_first_and_gives_up_naming_the_holder(project):
    materialize(project, HOURS[0], HOURS[0])
    lock = project.root / "lake" / ".forget.lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242")
        held.flush()
        with pytest.raises(ForgetError, match=r"another forget request .*pid 4242"):
            forget(project.root / "warehouse.duckdb", project.root / "lake",
                   Ids([1234567890123]), lock_timeout_seconds=1, say=lambda _: None)


# ---- ids, matching and rewriting, without the simulator ----

def test_ids_are_read_without_ever_being_echoed(tmp_path, capsys):
    good = tmp_path / "ids.txt"
    good.write_text("# a request\n\namplitude_id: 1234567890123\nuser_id:a b@x.org \n"
                    "user_id:josé\r\n")
    ids = Ids.parse(["42"], ["0007"], [good])
    assert ids == Ids([42, 1234567890123], ["0007", "a b@x.org ", "josé"])
    assert repr(ids) == "<Ids: 2 amplitude_id(s), 3 user_id(s)>" == str(ids)
    bad = tmp_path / "bad.txt"
    bad.write_text("amplitude_id:1\nsecret-person@example.com\n")
    with pytest.raises(IdsError, match="line 2 is neither") as raised:
        Ids.read(bad)
    assert "secret-person" not in str(raised.value)
    with pytest.raises(IdsError) as raised:
        Ids.parse(["secret-person@example.com"])
    assert "secret-person" not in str(raised.value)
    warehouse, lake = str(tmp_path / "w.duckdb"), str(tmp_path / "lake")
    assert main(["--warehouse", warehouse, "--lake", lake, "--amplitude-id",
                 "secret-person@example.com"]) == 1
    assert main(["--warehouse", warehouse, "--lake", lake, "--user-id",
                 "secret-person@example.com"]) == 1  # no such warehouse: said without the id
    with pytest.raises(SystemExit):
        main(["--warehouse", warehouse, "--lake", lake, "--user-id", "x", "--bogus",
              "secret-person@example.com"])
    out, err = capsys.readouterr()
    assert "secret-person" not in out + err and "not shown" in err
    assert Ids([7], ["ab@x.org"]).scrub("failed at 7 for ab@x.org") == "failed at <id> for <id>"


def test_a_line_is_theirs_only_by_its_top_level_ids():
    ids = Ids([1234567890123], ["jo/sé", "0042", "77"])
    theirs = [
        b'{"amplitude_id": 1234567890123, "user_id": null}\n',
        b'{"amplitude_id": "1234567890123"}\n',  # the cast reads digits in a string too
        b'{"user_id": "jo\\/s\\u00e9", "amplitude_id": 9}\n',  # another way to spell it
        b'{"user_id": "jo/s\xc3\xa9"}',
        b'{"user_id": "0042"}\n',
        b'{"user_id": 77}\n',  # a number, which the cast reads as its text
        b'{"amplitude_id": 9, "amplitude_id": 1234567890123}\n',  # a repeated key
        b'{"amplitude_id": 1234567890123, "broken\n',  # not JSON, but it spells an id
        b'[{"amplitude_id": 1234567890123}]\n',  # JSON, not an object (quarantined, if at all)
    ]
    not_theirs = [
        b'{"amplitude_id": 9, "event_properties": {"user_id": "0042"}}\n',  # nested
        b'{"amplitude_id": 12345678901234, "user_id": "0043"}\n',
        b'{"user_id": 42}\n',  # "42", not "0042"
        b'{"amplitude_id": 9, "user_id": null, "n": "1234567890123"}\n',
        b"\n", b"null\n", b'{"broken\n',
    ]
    matches = JsonFields(ids, EXPORT_FIELDS)
    assert [matches(line) for line in theirs] == [True] * len(theirs)
    assert [matches(line) for line in not_theirs] == [False] * len(not_theirs)


def test_files_are_rewritten_record_by_record_keeping_every_other_byte(tmp_path):
    ids = Ids([111], ["gone@x.org"])
    csv_text = (b'"amplitude_id","user_id","note"\r\n"5","","a ""quoted""\nline"\r\n'
                b'"111","","x"\r\n"6","gone@x.org","y"\r\n"7","kept@x.org",""\r\n')
    src = tmp_path / "cohort_c.csv.gz"
    src.write_bytes(gzip.compress(csv_text))
    dst = tmp_path / "out" / "cohort_c.csv.gz"
    dst.parent.mkdir()
    assert forget_landing.copy_without(src, dst, csv_records(ids, COHORT_COLUMNS)) == (3, 2)
    assert gzip.decompress(dst.read_bytes()) == (
        b'"amplitude_id","user_id","note"\r\n"5","","a ""quoted""\nline"\r\n'
        b'"7","kept@x.org",""\r\n')
    lines = [b'{"amplitude_id": 1, "user_id": null}\n', b'{"amplitude_id": 111}\n',
             b'\n', b'{"amplitude_id": 2, "user_id": "gone@x.org"}\n', b'{"amplitude_id": 3}']
    member = tmp_path / "m.json.gz"
    member.write_bytes(gzip.compress(b"".join(lines)))
    out = tmp_path / "out" / "m.json.gz"
    lines_of_theirs = JsonFields(ids, EXPORT_FIELDS).records()
    assert forget_landing.copy_without(member, out, lines_of_theirs) == (3, 2)
    assert gzip.decompress(out.read_bytes()) == lines[0] + lines[2] + lines[4]


def test_a_parquet_rewrite_keeps_rows_without_ids_and_the_files_metadata(tmp_path):
    path = tmp_path / "t.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * FROM (VALUES (1::BIGINT, NULL::VARCHAR, 'a'), "
                f"(NULL, 'x', 'b'), (NULL, NULL, 'c'), (111, NULL, 'd'), (2, 'gone', 'e')) "
                f"t(amplitude_id, user_id, v)) TO '{path}' (FORMAT parquet, "
                "KV_METADATA {landing_version: 'v1-old', other: 'kept'})")
    forget_parquet.install(con, Ids([111], ["gone"]))
    rewrite = forget_parquet.rewrite
    assert rewrite(con, path, ROW_MATCH, "FORMAT parquet", {"v1-old": "v2-new"}
                   ).rows_removed == 2
    assert rewrite(con, path, ROW_MATCH, "FORMAT parquet", {}) == forget_parquet.Rewritten(
        0, False)
    assert sorted(con.execute(f"SELECT v FROM '{path}'").fetchall()) == [("a",), ("b",), ("c",)]
    assert dict((bytes(k), bytes(v)) for k, v in con.execute(
        "SELECT key, value FROM parquet_kv_metadata(?)", [str(path)]).fetchall()) == {
        b"landing_version": b"v2-new", b"other": b"kept"}
    assert list(tmp_path.iterdir()) == [path]
    # a file without their rows that names a replaced landing is rewritten to name its successor
    assert rewrite(con, path, ROW_MATCH, "FORMAT parquet", {"v2-new": "v3"}) == \
        forget_parquet.Rewritten(0, True)
    assert sorted(con.execute(f"SELECT v FROM '{path}'").fetchall()) == [("a",), ("b",), ("c",)]
    assert (b"landing_version", b"v3") in [(bytes(k), bytes(v)) for k, v in con.execute(
        "SELECT key, value FROM parquet_kv_metadata(?)", [str(path)]).fetchall()]


def test_compacting_leaves_no_bytes_of_deleted_rows_in_the_file(tmp_path):
    path = tmp_path / "w.duckdb"
    with amplitude_warehouse(path).connect() as con:
        con.execute("SET force_compression = 'uncompressed'")  # so that bytes can be searched
        con.execute("INSERT INTO amplitude._rejects SELECT TIMESTAMPTZ '2026-03-01 00:00:00+00', "
                    "'m', i, 'line-' || i || '-marker', now() FROM range(5000) t(i)")
        con.execute("CHECKPOINT")
        con.execute("DELETE FROM amplitude._rejects WHERE line = 'line-4242-marker'")
        con.execute("CHECKPOINT")
    assert b"line-4242-marker" in path.read_bytes()  # deleted, and still in the file
    with amplitude_warehouse(path).connect() as con:
        before = con.execute("SELECT * FROM amplitude._rejects ORDER BY line_number").fetchall()
        versions = con.execute("SELECT * FROM amplitude._schema_versions").fetchall()
        views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal AND "
                            "schema_name = 'amplitude' ORDER BY 1").fetchall()
    sizes = compact(path, projects=[AMPLITUDE])
    assert sizes.bytes_after > 0 and b"line-4242-marker" not in path.read_bytes()
    with duckdb.connect(str(path), read_only=True) as con:  # the views came along
        assert con.execute("SELECT count(*) FROM amplitude_all._rejects").fetchone() == (4999,)
    with amplitude_warehouse(path).connect() as con:
        assert con.execute("SELECT * FROM amplitude._rejects ORDER BY line_number"
                           ).fetchall() == before
        assert con.execute("SELECT * FROM amplitude._schema_versions").fetchall() == versions
        assert con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal AND "
                           "schema_name = 'amplitude' ORDER BY 1").fetchall() == views
        assert ("cohorts_current",) in views
        assert con.execute("SELECT count(*) FROM amplitude_all._rejects").fetchone() == (4999,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.duckdb"]
