"""Forgetting Mixpanel users end to end: a window of days materialized through Dagster against
the Mixpanel simulator, a ``distinct_id`` (and a ``$user_id``) forgotten with ``python -m
pipeline.forget``, then every store searched: DuckDB, the day files, every landing body of every
day. Every other row and line must be unchanged, field for field and byte for byte. Then one
request reaching an Amplitude and a Mixpanel project in one warehouse."""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.partitions import partition_key
from pipeline.forget import ForgetError, Ids, forget
from pipeline.forget.__main__ import main
from pipeline.lineage import landing_version_of
from pipeline.mixpanel import landing
from pipeline.mixpanel.load import duplicate_rows
from simulator import MixpanelSimulator, Simulator
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import EVENTS, EVENTS_PARQUET, Project, event_assets
from tests.e2e.test_mixpanel import (
    EVENTS as MP_EVENTS,
)
from tests.e2e.test_mixpanel import (
    EVENTS_PARQUET as MP_EVENTS_PARQUET,
)
from tests.e2e.test_mixpanel import (
    LOCAL,
    MIXPANEL_KEYS,
    MixpanelProject,
    days,
)
from tests.e2e.test_mixpanel import (
    make_project as make_mixpanel_project,
)

FIRST, LAST = date(2026, 10, 28), date(2026, 10, 31)  # one window: one body under four days
DAYS = days(FIRST, LAST)
H = timedelta(hours=1)
HOURS = [DAY + i * H for i in range(6)]

mp_project = make_mixpanel_project(LOCAL)


# ---- driving the projects ----

def materialize_days(project: MixpanelProject, selection: list[dg.AssetKey] | None = None
                     ) -> None:
    defs = project.defs()
    assets = [a for a in defs.assets if set(a.keys) & MIXPANEL_KEYS]
    dg.materialize(assets, selection=selection, resources=project.resources(defs),
                   instance=project.instance, raise_on_error=True,
                   tags={"dagster/asset_partition_range_start": FIRST.isoformat(),
                         "dagster/asset_partition_range_end": LAST.isoformat()})


def run_forget(root: Path, *args: str) -> int:
    return main(["--warehouse", str(root / "warehouse.duckdb"), "--lake", str(root / "lake"),
                 *args])


# ---- who to forget, from what the simulator served ----

@dataclass(frozen=True)
class Users:
    """A distinct_id with events on two days or more of the window, and another user's
    ``$user_id`` (a ``user_id:`` request reaches Mixpanel's identified events)."""

    distinct_id: str
    user_id: str

    @classmethod
    def pick(cls, sim: MixpanelSimulator) -> Users:
        served = sim.served(FIRST, LAST)
        days_of: dict[str, set[date]] = {}
        for event in served:
            day = event.utc.astimezone(sim.config.zone).date()
            days_of.setdefault(event.distinct_id, set()).add(day)
        spread = sorted(d for d, ds in days_of.items() if len(ds) >= 2 and d.startswith("u"))
        identified = sorted({str(e.properties["$user_id"]) for e in served
                             if "$user_id" in e.properties and e.distinct_id != spread[0]})
        assert spread and identified, "the simulator's data changed: pick other users"
        return cls(spread[0], identified[0])

    def args(self) -> list[str]:
        return ["--distinct-id", self.distinct_id, "--user-id", self.user_id]

    def theirs(self, distinct_id: object, user_id: object) -> bool:
        return distinct_id == self.distinct_id or user_id == self.user_id

    def line_theirs(self, line: bytes) -> bool:
        properties = json.loads(line)["properties"]
        return self.theirs(properties.get("distinct_id"), properties.get("$user_id"))

    def spellings(self) -> list[bytes]:
        """How the simulator's lines spell them (its JSON has no spaces)."""
        return [f'"distinct_id":"{self.distinct_id}"'.encode(),
                f'"$user_id":"{self.user_id}"'.encode()]


# ---- what the stores hold ----

def _rows(con: duckdb.DuckDBPyConnection, query: str, params: list[object], *,
          ordered: bool = False) -> list[dict]:
    """The rows as dicts, in the query's order or (for comparing sets of rows) by their text."""
    cursor = con.execute(query, params)
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return rows if ordered else sorted(rows, key=repr)


def body(project: MixpanelProject, day: date) -> Path:
    landed = landing.landed(project.lake, day)
    assert landed is not None
    return Path(landing.landing_dir(project.lake, day)) / landed.version / landed.file


@dataclass
class State:
    events: dict[date, list[dict]]
    parquet: dict[date, list[dict]]
    bodies: dict[date, list[bytes]]
    ledger: dict[date, tuple[int, int]]  # rows, duplicate_rows

    @classmethod
    def read(cls, project: MixpanelProject) -> State:
        with project.warehouse() as con:
            events = {d: _rows(con, "SELECT * FROM mixpanel.events WHERE _day = ?", [d])
                      for d in DAYS}
            ledger = {d: (rows, dup) for d, rows, dup in con.execute(
                "SELECT day, rows, duplicate_rows FROM mixpanel._loads").fetchall()}
            parquet = {d: _rows(con, "SELECT * FROM read_parquet(?)",
                                [str(landing.events_file(project.lake, d))]) for d in DAYS}
        bodies = {d: gzip.decompress(body(project, d).read_bytes()).splitlines(keepends=True)
                  for d in DAYS}
        return cls(events, parquet, bodies, ledger)

    def without(self, users: Users) -> State:
        def keep(rows: list[dict]) -> list[dict]:
            return [r for r in rows if not users.theirs(r["distinct_id"], r["user_id"])]

        events = {d: keep(rows) for d, rows in self.events.items()}
        return State(
            events, {d: keep(rows) for d, rows in self.parquet.items()},
            {d: [x for x in lines if not users.line_theirs(x)]
             for d, lines in self.bodies.items()},
            {d: (rows - (len(self.events[d]) - len(events[d])), dup)
             for d, (rows, dup) in self.ledger.items()})


def audit_rows(project: MixpanelProject | Project, schema: str) -> list[dict]:
    with project.warehouse() as con:
        return _rows(con, f"SELECT * FROM {schema}._forget_requests ORDER BY requested_at", [],
                     ordered=True)


def lake_files(root: Path) -> dict[str, tuple[int, int]]:
    lake = root / "lake"
    return {str(p.relative_to(lake)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in lake.rglob("*") if p.is_file() and ".scratch" not in p.parts
            and p.name != ".forget.lock"}


def assert_gone(project: MixpanelProject, users: Users) -> None:
    """No trace of them in DuckDB, in any day file, or in any landing file of any version."""
    with project.warehouse() as con:
        assert con.execute("SELECT count(*) FROM mixpanel.events WHERE distinct_id = ? OR "
                           "user_id = ?", [users.distinct_id, users.user_id]).fetchone() == (0,)
        files = [str(p) for p in (project.root / "lake" / "mixpanel").rglob("*.parquet")]
        assert files
        assert con.execute("SELECT count(*) FROM read_parquet(?) WHERE distinct_id = ? OR "
                           "user_id = ?", [files, users.distinct_id, users.user_id]
                           ).fetchone() == (0,)
    searched = 0
    for path in (project.root / "lake" / "landing").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            data = gzip.decompress(data) if path.name.endswith(".gz") else data
            searched += 1
            assert not any(s in data for s in users.spellings()), path
    assert searched >= len(DAYS)


@pytest.fixture
def loaded(mp_project: MixpanelProject) -> Users:
    materialize_days(mp_project)
    return Users.pick(mp_project.sim)


# ---- the tests ----

def test_forgetting_a_distinct_id_removes_it_everywhere_and_keeps_every_other_row(
        mp_project, loaded, caplog, capsys):
    users = loaded
    before = State.read(mp_project)
    expected = before.without(users)
    removed = sum(len(before.events[d]) - len(expected.events[d]) for d in DAYS)
    holding = {d for d in DAYS if len(before.events[d]) != len(expected.events[d])}
    assert len(holding) >= 2 and removed >= 3
    # a file naming its landing version is rewritten to name the new one
    named = {d for d in DAYS if landing_version_of(landing.events_file(mp_project.lake, d))}
    assert len({body(mp_project, d).stat().st_ino for d in DAYS}) == 1  # one body, linked
    note = Path(landing.landing_dir(mp_project.lake, FIRST)) / "_refused-normalize.json"
    note.write_text(json.dumps({"stage": "normalize", "cause": "line 3 has no event name: "
                                f"{users.spellings()[1]!r}"}))

    caplog.set_level(logging.DEBUG)
    assert run_forget(mp_project.root, *users.args()) == 0
    out, err = capsys.readouterr()

    after = State.read(mp_project)
    assert after.events == expected.events  # every other row, field for field
    assert after.parquet == expected.parquet
    assert after.bodies == expected.bodies  # every other line, byte for byte, in order
    assert {d: rows for d, (rows, _) in after.ledger.items()} == {
        d: rows for d, (rows, _) in expected.ledger.items()}
    with mp_project.warehouse() as con:
        assert {d: dup for d, (_, dup) in after.ledger.items()} == {
            d: duplicate_rows(con, "mixpanel", d) for d in DAYS}
        versions = dict(con.execute("SELECT day, landing_version FROM mixpanel._loads"
                                    ).fetchall())
    assert_gone(mp_project, users)
    assert users.user_id not in note.read_text() and "<id>" in note.read_text()
    for day in DAYS:  # every day of the window landed again, one version each, still linked
        folder = Path(landing.landing_dir(mp_project.lake, day))
        current = landing.landed(mp_project.lake, day)
        assert [p.name for p in folder.glob("v*")] == [current.version] == [versions[day]]
    assert len({body(mp_project, d).stat().st_ino for d in DAYS}) == 1

    [row] = audit_rows(mp_project, "mixpanel")
    assert row["status"] == "finished" and row["finished_at"] >= row["requested_at"]
    assert (row["distinct_id_count"], row["user_id_count"], row["scan"]) == (1, 1, "warehouse")
    assert (row["event_rows_removed"], row["parquet_rows_removed"],
            row["landing_lines_removed"]) == (removed,) * 3
    assert row["days_rewritten"] == len(DAYS)
    assert row["landing_versions_written"] == row["landing_versions_removed"] == len(DAYS)
    assert row["parquet_files_rewritten"] == len(holding | named)
    for day in DAYS:
        assert landing_version_of(landing.events_file(mp_project.lake, day)) in (
            None, versions[day])
    assert row["request_id"] in out and "mixpanel._forget_requests" in out

    said = "\n".join([out, err, caplog.text, repr(row)])
    for text in (users.distinct_id, users.user_id):  # as a word: u12 is not in u123
        assert not re.search(rf"(?<![\w-]){re.escape(text)}(?![\w-])", said)


def test_a_second_run_changes_nothing_and_a_reload_does_not_bring_them_back(mp_project, loaded):
    users = loaded
    assert run_forget(mp_project.root, *users.args()) == 0
    files, forgotten = lake_files(mp_project.root), State.read(mp_project)
    assert run_forget(mp_project.root, *users.args()) == 0
    assert lake_files(mp_project.root) == files and State.read(mp_project) == forgotten
    first, second = audit_rows(mp_project, "mixpanel")
    assert first["event_rows_removed"] > 0 and second["status"] == "finished"
    counts = {k: v for k, v in second.items() if k.endswith(("_removed", "_rewritten",
                                                             "_written"))}
    assert set(counts.values()) == {0} and len(counts) == 7

    materialize_days(mp_project, selection=[MP_EVENTS])  # the day files load as they are
    assert State.read(mp_project).events == forgotten.events
    materialize_days(mp_project, selection=[MP_EVENTS_PARQUET, MP_EVENTS])  # from the landing
    again = State.read(mp_project)
    assert (again.events, again.parquet, again.bodies) == (
        forgotten.events, forgotten.parquet, forgotten.bodies)
    assert len(mp_project.requests()) == 1  # nothing asked of Mixpanel again
    assert_gone(mp_project, users)


def test_a_request_stopped_inside_a_window_is_completed_by_running_it_again(mp_project, loaded,
                                                                           monkeypatch):
    """Stopped once the first day of the window was landed again: the other days still hold
    the old body, though the warehouse may name none of them."""
    users = loaded
    expected = State.read(mp_project).without(users)
    from pipeline.forget import landing as forget_landing

    original = forget_landing.land_again

    def once(*args, **kwargs):
        done = original(*args, **kwargs)
        raise KeyboardInterrupt  # the process dies here: nothing after this runs
        return done  # pragma: no cover

    monkeypatch.setattr(forget_landing, "land_again", once)
    with pytest.raises(KeyboardInterrupt):
        forget(mp_project.root / "warehouse.duckdb", mp_project.root / "lake",
               Ids(distinct_ids=[users.distinct_id], user_ids=[users.user_id]),
               say=lambda _: None)
    monkeypatch.undo()
    inodes = Counter(body(mp_project, d).stat().st_ino for d in DAYS)
    assert sorted(inodes.values()) == [1, len(DAYS) - 1]  # one day rewritten, not the rest
    assert run_forget(mp_project.root, *users.args()) == 0
    assert State.read(mp_project) == expected
    assert_gone(mp_project, users)


# ---- one warehouse, two sources ----

@pytest.fixture
def both(tmp_path, monkeypatch) -> Iterator[tuple[Project, MixpanelProject]]:
    """An Amplitude and a Mixpanel project (the environment's) in one lake and warehouse."""
    with Simulator(SMALL) as sim, MixpanelSimulator(LOCAL) as mp_sim, \
            dg.instance_for_test() as instance:
        amplitude = Project(sim, tmp_path, instance)
        mixpanel = MixpanelProject(mp_sim, tmp_path, instance, {
            k: v for k, v in amplitude.env.items() if k.startswith("AMPLITUDE_")})
        for name, value in mixpanel.env.items():
            monkeypatch.setenv(name, value)
        yield amplitude, mixpanel


def test_one_request_reaches_an_amplitude_and_a_mixpanel_project(both, capsys):
    amplitude, mixpanel = both
    materialize_days(mixpanel)
    defs = mixpanel.defs()  # both projects: the warehouse keeps both sources' views
    dg.materialize(event_assets(defs), resources=mixpanel.resources(defs),
                   instance=amplitude.instance, raise_on_error=True,
                   tags={"dagster/asset_partition_range_start": partition_key(HOURS[0]),
                         "dagster/asset_partition_range_end": partition_key(HOURS[-1])})
    with amplitude.warehouse() as con:
        amplitude_id, amplitude_rows = con.execute(
            "SELECT amplitude_id, count(*) FROM amplitude.events GROUP BY ALL "
            "ORDER BY 2 DESC, 1 LIMIT 1").fetchone()
        amplitude_before = _rows(con, "SELECT * FROM amplitude.events WHERE amplitude_id <> ?",
                                 [amplitude_id])
    users = Users.pick(mixpanel.sim)
    expected = State.read(mixpanel).without(Users(users.distinct_id, "nobody-at-all"))

    # a request for Mixpanel's kind of id alone leaves Amplitude's project alone
    assert run_forget(amplitude.root, "--distinct-id", "nobody-at-all") == 0
    assert audit_rows(amplitude, "amplitude") == []
    assert run_forget(amplitude.root, "--amplitude-id", str(amplitude_id),
                      "--distinct-id", users.distinct_id) == 0
    out, _ = capsys.readouterr()

    [amplitude_row] = audit_rows(amplitude, "amplitude")
    _, mixpanel_row = audit_rows(mixpanel, "mixpanel")
    assert amplitude_row["request_id"] == mixpanel_row["request_id"]  # one request, two rows
    assert (amplitude_row["amplitude_id_count"], amplitude_row["user_id_count"]) == (1, 0)
    assert (mixpanel_row["distinct_id_count"], mixpanel_row["user_id_count"]) == (1, 0)
    assert amplitude_row["event_rows_removed"] == amplitude_rows
    assert mixpanel_row["event_rows_removed"] > 0
    assert "amplitude._forget_requests" in out and "mixpanel._forget_requests" in out
    with amplitude.warehouse() as con:
        assert _rows(con, "SELECT * FROM amplitude.events", []) == amplitude_before
        assert con.execute("SELECT count(*) FROM mixpanel_all.events WHERE distinct_id = ?",
                           [users.distinct_id]).fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM amplitude_all.events").fetchone()[0] == \
            len(amplitude_before)
    assert State.read(mixpanel).events == expected.events
    materialize_days(mixpanel, selection=[MP_EVENTS_PARQUET, MP_EVENTS])
    dg.materialize(event_assets(defs), selection=[EVENTS_PARQUET, EVENTS],
                   resources=mixpanel.resources(defs), instance=amplitude.instance,
                   raise_on_error=True,
                   tags={"dagster/asset_partition_range_start": partition_key(HOURS[0]),
                         "dagster/asset_partition_range_end": partition_key(HOURS[-1])})
    with amplitude.warehouse() as con:
        assert con.execute("SELECT count(*) FROM amplitude.events WHERE amplitude_id = ?",
                           [amplitude_id]).fetchone() == (0,)
    assert State.read(mixpanel).events == expected.events


def test_a_request_no_project_of_the_lake_can_hold_is_refused(mp_project, loaded, capsys):
    with pytest.raises(ForgetError, match=r"no project .* \(amplitude_id\); projects found: "
                       "mixpanel"):
        forget(mp_project.root / "warehouse.duckdb", mp_project.root / "lake",
               Ids([1234567890123]), say=lambda _: None)
    assert run_forget(mp_project.root, "--amplitude-id", "1234567890123") == 1
    assert "1234567890123" not in "".join(capsys.readouterr())
