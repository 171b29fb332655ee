"""The dbt models through Dagster: each compared with numbers computed in plain Python from the
events the simulator served (never with SQL), their dbt tests as asset checks, one made to fail.

``Reference`` is the independent arithmetic. ``demo_build`` makes the demo's data (the hours
``scripts/demo.py`` loads, today's snapshots, then the ``analytics`` assets), once per session;
the analysts' guide test (test_analysts_guide.py) queries the same warehouse. Edge cases the
simulator never produces (re-exported duplicates, long sessions, inactive events, a non-UTC
project) are in tests/unit/test_dbt_models.py. Each model's comparison (``check_*``) reads one
project's rows; test_analytics_projects.py runs them on two projects in one warehouse.
"""

import contextlib
import fcntl
import json
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import httpx
import pytest

from assets.analytics import GROUP, PROJECT_DIR
from assets.definitions import build_defs
from simulator import HourProfile, Simulator, SimulatorConfig
from tests.conftest import DAY
from tests.e2e.conftest import Project, served_rows
from tests.unit.test_dbt_models import source_tests

pytestmark = pytest.mark.slow

H = timedelta(hours=1)
BINS = ((0, 3000), (3000, 10000), (10000, 30000), (30000, 60000), (60000, 180000),
        (180000, 600000), (600000, 1800000), (1800000, 3600000), (3600000, 86400000))
DAY_MS = 86_400_000
COHORT_POLLING = {"ops": {"amplitude__cohort_members": {"config": {
    "poll_first_seconds": 0.02, "poll_max_seconds": 0.1, "poll_timeout_minutes": 1.0}}}}


def analytics_assets(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    return [a for a in defs.assets
            if any(key.path[0] == GROUP for key in a.keys)]


def ms(ts: datetime) -> int:
    """Milliseconds since the epoch, truncated, as DuckDB's epoch_ms gives them."""
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@dataclass
class Reference:
    """Every figure the models give, computed from the served rows alone."""

    rows: list[dict]
    zone: ZoneInfo
    inactive: frozenset[str] = frozenset()

    def day(self, ts: datetime) -> date:
        return ts.astimezone(self.zone).date()

    @cached_property
    def by_uuid(self) -> dict[str, dict]:
        latest: dict[str, dict] = {}
        for row in self.rows:  # the latest upload wins
            key = (row["server_upload_time"], row["_upload_hour"])
            seen = latest.get(row["uuid"])
            if seen is None or key > (seen["server_upload_time"], seen["_upload_hour"]):
                latest[row["uuid"]] = row
        return latest

    @cached_property
    def events(self) -> list[dict]:
        return list(self.by_uuid.values())

    @cached_property
    def dates(self) -> list[date]:
        days = {self.day(e["event_time"]) for e in self.events}
        first, last = min(days), max(days)
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def active(self, event: dict) -> bool:
        return event["event_type"] not in self.inactive

    @cached_property
    def dau(self) -> dict[date, int]:
        users: dict[date, set[int]] = defaultdict(set)
        for e in self.events:
            if self.active(e):
                users[self.day(e["event_time"])].add(e["amplitude_id"])
        return {d: len(users.get(d, ())) for d in self.dates}

    @cached_property
    def first_seen(self) -> dict[int, datetime]:
        first: dict[int, datetime] = {}
        for e in self.events:
            aid = e["amplitude_id"]
            if aid not in first or e["event_time"] < first[aid]:
                first[aid] = e["event_time"]
        return first

    @cached_property
    def new_users(self) -> dict[date, int]:
        out = dict.fromkeys(self.dates, 0)
        for ts in self.first_seen.values():
            out[self.day(ts)] += 1
        return out

    @cached_property
    def event_counts(self) -> dict[tuple[date, str], tuple[int, int]]:
        totals: dict[tuple[date, str], int] = defaultdict(int)
        users: dict[tuple[date, str], set[int]] = defaultdict(set)
        for e in self.events:
            key = (self.day(e["event_time"]), e["event_type"])
            totals[key] += 1
            users[key].add(e["amplitude_id"])
        return {k: (totals[k], len(users[k])) for k in totals}

    def totals(self, day: date) -> int:
        return sum(n for (d, _), (n, _) in self.event_counts.items() if d == day)

    @cached_property
    def sessions(self) -> dict[tuple[int, int], dict]:
        grouped: dict[tuple[int, int], list[dict]] = defaultdict(list)
        for e in self.events:
            if e["session_id"] != -1:
                grouped[(e["amplitude_id"], e["session_id"])].append(e)
        out = {}
        for key, events in grouped.items():
            events.sort(key=lambda e: (e["event_time"], e["uuid"]))
            named = [e for e in events if e["user_id"] is not None]
            active = [ms(e["client_event_time"]) for e in events if self.active(e)]
            out[key] = {
                "user_id": named[-1]["user_id"] if named else None,
                "device_id": events[0]["device_id"],
                "first_event_time": events[0]["event_time"],
                "last_event_time": max(e["event_time"] for e in events),
                "event_count": len(events),
                "length_ms": max(active) - min(active) if active else None,
                "session_date": self.day(events[0]["event_time"]),
            }
        by_user: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for key in out:
            by_user[key[0]].append(key)
        for keys in by_user.values():
            keys.sort(key=lambda k: (out[k]["first_event_time"], k[1]))
            for number, key in enumerate(keys, 1):
                out[key]["user_session_number"] = number
                previous = out[keys[number - 2]] if number > 1 else None
                out[key]["minutes_since_previous_session"] = (
                    (out[key]["first_event_time"] - previous["last_event_time"]).total_seconds()
                    / 60 if previous else None)
        return out

    def binned(self) -> dict[tuple[date, int], int]:
        days = {s["session_date"] for s in self.sessions.values()}
        out = {(d, b): 0 for d in days for b in range(1, len(BINS) + 1)}
        for s in self.sessions.values():
            for b, (low, high) in enumerate(BINS, 1):
                if s["length_ms"] is not None and low <= s["length_ms"] < high:
                    out[(s["session_date"], b)] += 1
        return out

    def average_session_length(self) -> dict[date, tuple[int, float]]:
        lengths: dict[date, list[int]] = defaultdict(list)
        for s in self.sessions.values():
            if s["length_ms"] is not None and 0 <= s["length_ms"] < DAY_MS:
                lengths[s["session_date"]].append(s["length_ms"])
        return {d: (len(v), sum(v) / len(v) / 1000) for d, v in lengths.items()}

    def sessions_per_user(self) -> dict[date, tuple[int, int, float]]:
        sessions: dict[date, int] = defaultdict(int)
        users: dict[date, set[int]] = defaultdict(set)
        for (aid, _), s in self.sessions.items():
            sessions[s["session_date"]] += 1
            users[s["session_date"]].add(aid)
        return {d: (n, len(users[d]), n / len(users[d])) for d, n in sessions.items()}

    @cached_property
    def users(self) -> dict[int, dict]:
        out: dict[int, dict] = {}
        for e in sorted(self.events, key=lambda e: (e["event_time"], e["uuid"])):
            u = out.setdefault(e["amplitude_id"], {
                "user_id": None, "first_event_time": e["event_time"], "total_events": 0,
                "days": set(), "devices": set()})
            u["last_event_time"] = e["event_time"]
            u["total_events"] += 1
            u["days"].add(self.day(e["event_time"]))
            u["devices"].add(e["device_id"])
            if e["user_id"] is not None:
                u["user_id"] = e["user_id"]
        sessions: dict[int, list[dict]] = defaultdict(list)
        for (aid, _), session in self.sessions.items():
            sessions[aid].append(session)
        for aid, u in out.items():
            mine = sessions.get(aid, [])
            u["total_sessions"] = len(mine)
            u["first_event_date"] = self.day(u["first_event_time"])
            u["average_session_length_in_minutes"] = (
                sum((s["last_event_time"] - s["first_event_time"]).total_seconds()
                    for s in mine) / len(mine) / 60 if mine else None)
        return out

    def daily_performance(self) -> dict[tuple[date, str], tuple[int, int, int, int]]:
        firsts: dict[str, date] = {}
        for e in self.events:
            d = self.day(e["event_time"])
            firsts[e["event_type"]] = min(d, firsts.get(e["event_type"], d))
        figures: dict[tuple[date, str], list] = defaultdict(lambda: [0, set(), set(), set()])
        for e in self.events:
            d = self.day(e["event_time"])
            f = figures[(d, e["event_type"])]
            f[0] += 1
            if e["session_id"] != -1:
                f[1].add((e["amplitude_id"], e["session_id"]))
            f[2].add(e["amplitude_id"])
            if self.day(self.first_seen[e["amplitude_id"]]) == d:
                f[3].add(e["amplitude_id"])
        out = {}
        for event_type, first in firsts.items():
            for d in self.dates:
                if d >= first:
                    f = figures.get((d, event_type), [0, set(), set(), set()])
                    out[(d, event_type)] = (f[0], len(f[1]), len(f[2]), len(f[3]))
        return out

    def funnel(self, steps: list[str], first: date, last: date,
               window: timedelta = timedelta(days=1)) -> list[int]:
        """Users reaching each step: the furthest any step-1 start in the range got, taking each
        next step at its earliest occurrence after the previous one, within the window."""
        timeline: dict[int, list[dict]] = defaultdict(list)
        for e in self.events:
            if e["event_type"] in steps:
                timeline[e["amplitude_id"]].append(e)
        depth: dict[int, int] = {}
        for aid, events in timeline.items():
            events.sort(key=lambda e: (e["event_time"], e["uuid"]))
            for i, start in enumerate(events):
                if start["event_type"] != steps[0] or not (
                        first <= self.day(start["event_time"]) <= last):
                    continue
                reached = 1
                for later in events[i + 1:]:
                    if later["event_time"] > start["event_time"] + window:
                        break
                    if reached < len(steps) and later["event_type"] == steps[reached]:
                        reached += 1
                depth[aid] = max(depth.get(aid, 0), reached)
        return [sum(1 for d in depth.values() if d >= k) for k in range(1, len(steps) + 1)]

    def retention(self, start_event: str, return_event: str, first: date, last: date,
                  days: int = 7) -> dict[tuple[date, int], tuple[int, int]]:
        def matches(e: dict, wanted: str) -> bool:
            return (wanted == "_all" or (wanted == "_active" and self.active(e))
                    or e["event_type"] == wanted)

        cohort: dict[int, date] = {}
        returned: set[tuple[int, date]] = set()
        for e in self.events:
            d = self.day(e["event_time"])
            if matches(e, start_event) and first <= d <= last:
                cohort[e["amplitude_id"]] = min(d, cohort.get(e["amplitude_id"], d))
            if matches(e, return_event):
                returned.add((e["amplitude_id"], d))
        out = {}
        for cohort_date in set(cohort.values()):
            members = [a for a, d in cohort.items() if d == cohort_date]
            for n in range(days + 1):
                on = cohort_date + timedelta(days=n)
                kept = len(members) if n == 0 else sum(
                    1 for a in members if (a, on) in returned)
                out[(cohort_date, n)] = (len(members), kept)
        return out


# What scripts/demo.py serves (its defaults: 2026-03-01, 24 hours, 1,500 events an hour),
# bounded to those hours so that the Dashboard endpoints can count (it changes no event).
DEMO = SimulatorConfig(profile=HourProfile(base=1500), events_per_member=5000,
                       first_hour=DAY, last_hour=DAY + 23 * H)
DEMO_HOURS = [DAY + i * H for i in range(24)]
DEMO_SNAPSHOTS = ("cohorts", "cohort_members", "taxonomy_event_types", "events_list",
                  "daily_counts")


_REFERENCES: dict[str, Reference] = {}


@dataclass
class Built:
    """A warehouse holding loaded hours, today's snapshots and the dbt models, and a simulator
    serving the same project (everything it serves is a function of its configuration)."""

    sim: Simulator
    path: Path
    hours: list[datetime]
    env: dict[str, str]
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> Reference:
        """Computed once per process (both test modules of a worker share it)."""
        key = str(self.path)
        if key not in _REFERENCES:
            rows = [row for hour in self.hours for row in served_rows(self.sim, hour).values()]
            _REFERENCES[key] = Reference(
                rows, ZoneInfo(self.env.get("AMPLITUDE_PROJECT_TIMEZONE") or "UTC"),
                frozenset(self.sim.config.inactive_event_types))
        return _REFERENCES[key]

    def defs(self, **env: str) -> dg.Definitions:
        return build_defs({**self.env, **env})

    def served(self, path: str, **params: str) -> dict:
        auth = (self.sim.config.api_key, self.sim.config.secret_key)
        return httpx.get(self.sim.url + path, params=params, auth=auth, timeout=30).json()

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.path), read_only=True) as con:
            return con.execute(sql, params or []).fetchall()


def _build(root: Path, sim: Simulator, instance: dg.DagsterInstance,
           snapshots: tuple[str, ...]) -> dict[str, Any]:
    """Load the hours, take today's snapshots, dbt build: through Dagster, as a deployment."""
    today = datetime.now(UTC).date()
    project = Project(sim, root, instance, extra_env={
        "AMPLITUDE_COUNTS_DAYS": str((today - DAY.date()).days + 46)})  # events: 40 days late
    outcome = {"events": project.materialize(DEMO_HOURS[0], DEMO_HOURS[-1]).success}
    defs = project.defs()
    wanted = {dg.AssetKey(["amplitude", name]) for name in snapshots}
    outcome["snapshots"] = dg.materialize(
        [a for a in defs.assets if set(a.keys) & wanted], resources=defs.resources,
        instance=instance, partition_key=today.isoformat(), run_config=COHORT_POLLING).success
    result = dg.materialize(analytics_assets(defs), resources=defs.resources, instance=instance)
    outcome["analytics"] = result.success
    outcome["materialized"] = sorted(
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events())
    outcome["checks"] = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    return outcome


@contextlib.contextmanager
def demo_build(shared: Path) -> Iterator[Built]:
    """The demo's data, built once per test session even across pytest-xdist workers: the first
    worker builds it under a file lock, the others wait and reuse it (read-only)."""
    root = shared / "analytics-demo"
    root.mkdir(parents=True, exist_ok=True)
    with Simulator(DEMO) as sim:
        env = Project(sim, root).env
        with (root / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = root / "built.json"
            if not done.exists():
                with dg.instance_for_test() as instance, pytest.MonkeyPatch.context() as patch:
                    for name, value in env.items():
                        patch.setenv(name, value)
                    done.write_text(json.dumps(_build(root, sim, instance, DEMO_SNAPSHOTS)))
            fcntl.flock(lock, fcntl.LOCK_UN)
        yield Built(sim, root / "warehouse.duckdb", DEMO_HOURS, env,
                    json.loads(done.read_text()))


def shared_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A folder every xdist worker of this session shares (its own base folder otherwise)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="module")
def built(tmp_path_factory, worker_id) -> Iterator[Built]:
    with demo_build(shared_dir(tmp_path_factory, worker_id)) as data:
        outcome = {k: data.results[k] for k in ("events", "snapshots", "analytics")}
        assert outcome == {"events": True, "snapshots": True, "analytics": True}
        yield data


# ---- each model against the served events, for one project ----
# Each check_* reads one project's rows (WHERE project = ?) through ``query`` and compares them
# with ``ref``, that project's arithmetic; test_analytics_projects.py runs them on two projects.

Query = Callable[[str, list], list[tuple]]


def check_events_unique(query: Query, ref: Reference, project: str) -> None:
    got = query("SELECT uuid, event_date, event_type, amplitude_id, _upload_hour, "
                "project_timezone FROM analytics.events_unique WHERE project = ?", [project])
    assert len(got) == len(ref.events)
    assert {r[0]: r[1:] for r in got} == {
        e["uuid"]: (ref.day(e["event_time"]), e["event_type"], e["amplitude_id"],
                    e["_upload_hour"], ref.zone.key) for e in ref.events}


def check_daily_users_and_counts(query: Query, ref: Reference, project: str) -> None:
    dau = dict(query("SELECT event_date, active_users FROM analytics.daily_active_users "
                     "WHERE project = ?", [project]))
    new = dict(query("SELECT event_date, new_users FROM analytics.daily_new_users "
                     "WHERE project = ?", [project]))
    assert dau == ref.dau and new == ref.new_users
    assert sum(new.values()) == len(ref.first_seen)
    counts = {(d, t): (n, u) for d, t, n, u in query(
        "SELECT event_date, event_type, totals, uniques FROM analytics.event_counts_daily "
        "WHERE project = ?", [project])}
    assert counts == ref.event_counts


def check_sessions(query: Query, ref: Reference, project: str) -> None:
    got = query(
        "SELECT amplitude_id, session_id, session_key, user_id, device_id, session_start, "
        "first_event_time, last_event_time, duration_seconds, length_ms, event_count, "
        "session_date, user_session_number, is_first_user_session, "
        "minutes_since_previous_session FROM analytics.sessions WHERE project = ?", [project])
    assert len(got) == len(ref.sessions) > 100
    for (aid, sid, key, user, device, start, first, last, duration, length, count, day,
         number, is_first, since) in got:
        want = ref.sessions[(aid, sid)]
        assert key == f"{project}:{aid}:{sid}"
        assert start == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=sid)
        assert (user, device, first, last, count, length, day, number) == (
            want["user_id"], want["device_id"], want["first_event_time"],
            want["last_event_time"], want["event_count"], want["length_ms"],
            want["session_date"], want["user_session_number"])
        assert duration == pytest.approx((last - first).total_seconds())
        assert is_first == (number == 1)
        assert since == pytest.approx(want["minutes_since_previous_session"])


def check_session_charts(query: Query, ref: Reference, project: str) -> None:
    got = query("SELECT session_date, bin, label, lower_ms, upper_ms, sessions "
                "FROM analytics.session_length_distribution WHERE project = ?", [project])
    assert {(d, b): n for d, b, _, _, _, n in got} == ref.binned()
    assert sorted({(b, lo, hi) for _, b, _, lo, hi, _ in got}) == [
        (b, lo, hi) for b, (lo, hi) in enumerate(BINS, 1)]
    average = query("SELECT session_date, sessions, average_seconds "
                    "FROM analytics.average_session_length WHERE project = ?", [project])
    assert {d: (n, pytest.approx(s)) for d, n, s in average} == ref.average_session_length()
    per_user = query("SELECT session_date, sessions, users, sessions_per_user "
                     "FROM analytics.sessions_per_user WHERE project = ?", [project])
    assert {d: (n, u, pytest.approx(r)) for d, n, u, r in per_user} == ref.sessions_per_user()


def check_user_enhanced(query: Query, ref: Reference, project: str) -> None:
    got = query(
        "SELECT canonical_amplitude_id, user_id, first_event_time, last_event_time, "
        "first_event_date, "
        "total_events, active_days, devices, total_sessions, "
        "average_session_length_in_minutes FROM analytics.user_enhanced WHERE project = ?",
        [project])
    assert len(got) == len(ref.users)
    for aid, user, first, last, first_date, events, days, devices, sessions, minutes in got:
        want = ref.users[aid]
        assert (user, first, last, first_date, events, days, devices, sessions) == (
            want["user_id"], want["first_event_time"], want["last_event_time"],
            want["first_event_date"], want["total_events"], len(want["days"]),
            len(want["devices"]), want["total_sessions"])
        assert minutes == pytest.approx(want["average_session_length_in_minutes"])


def check_event_enhanced(query: Query, ref: Reference, project: str,
                         listed: dict[str, dict]) -> None:
    """``listed``: the project's events list by event type (a type it lacks: no entry)."""
    got = query("SELECT uuid, amplitude_id, session_key, session_event_number, "
                "user_event_number, events_per_session, event_type_id, "
                "event_type_totals_this_week, event_type_non_active, event_type "
                "FROM analytics.event_enhanced WHERE project = ?", [project])
    assert len(got) == len(ref.events)
    seen: dict[tuple, int] = defaultdict(int)  # events so far per user and per session
    numbers: dict[tuple[str, str], int] = {}
    for e in sorted(ref.events, key=lambda e: (e["event_time"], e["uuid"])):
        seen[("user", e["amplitude_id"])] += 1
        numbers[("user", e["uuid"])] = seen[("user", e["amplitude_id"])]
        if e["session_id"] != -1:
            seen[("session", e["amplitude_id"], e["session_id"])] += 1
            numbers[("session", e["uuid"])] = seen[("session", e["amplitude_id"],
                                                     e["session_id"])]
    for uuid, aid, key, in_session, in_user, per_session, type_id, totals, non_active, \
            event_type in got:
        e = ref.by_uuid[uuid]
        assert in_user == numbers[("user", uuid)]
        if e["session_id"] == -1:
            assert (key, in_session, per_session) == (None, None, None)
        else:
            assert key == f"{project}:{aid}:{e['session_id']}"
            assert in_session == numbers[("session", uuid)]
            assert per_session == ref.sessions[(aid, e["session_id"])]["event_count"]
        item = listed.get(event_type, {"id": None, "totals": None, "non_active": False})
        assert (type_id, totals, non_active) == (item["id"], item["totals"], item["non_active"])


def check_daily_performance(query: Query, ref: Reference, project: str) -> None:
    got = query("SELECT event_date, event_type, number_events, number_sessions, "
                "number_users, number_new_users FROM analytics.daily_performance "
                "WHERE project = ?", [project])
    assert {(d, t): tuple(v) for d, t, *v in got} == ref.daily_performance()


def check_funnel(query: Query, ref: Reference, project: str, steps: list[str],
                 first: date, last: date) -> None:
    got = query("SELECT step, event_type, users, conversion, step_conversion FROM "
                "analytics.funnel(?, ?, ?) WHERE project = ?", [steps, first, last, project])
    want = ref.funnel(steps, first, last)
    assert [(s, t, n) for s, t, n, _, _ in got] == [
        (i, step, n) for i, (step, n) in enumerate(zip(steps, want, strict=True), 1)]
    assert want[0] > 0 and want[1] > 0, "a funnel nobody goes through tests little"
    assert got[1][3] == pytest.approx(want[1] / want[0])
    assert got[0][4] is None
    narrow = query("SELECT users FROM analytics.funnel(?, ?, ?, conversion_window := "
                   "INTERVAL 10 MINUTE) WHERE project = ?", [steps, first, last, project])
    assert [n for (n,) in narrow] == ref.funnel(steps, first, last, timedelta(minutes=10))


def check_retention(query: Query, ref: Reference, project: str, first: date,
                    last: date) -> None:
    for start, back, days in (("_all", "_all", 7), ("_active", "page_view", 3)):
        got = query("SELECT cohort_date, day, users, retained, retention, complete FROM "
                    "analytics.retention(?, ?, ?, ?, days := ?) WHERE project = ?",
                    [start, back, first, last, days, project])
        want = ref.retention(start, back, first, last, days)
        assert {(c, d): (u, r) for c, d, u, r, _, _ in got} == want
        for c, d, u, r, share, complete in got:
            assert share == pytest.approx(r / u)
            assert complete == (c + timedelta(days=d) <= max(ref.dates))
    assert any(r for (c, d), (u, r) in ref.retention(
        "_all", "_all", first, last).items() if d == 7), "nobody retained on day 7"


def served_events_list(built: Built) -> dict[str, dict]:
    return {item["value"]: item for item in built.served("/api/2/events/list")["data"]}


# ---- the Dagster side ----

def test_every_model_is_an_asset_downstream_of_what_it_reads_in_the_writers_pool(built):
    defs = built.defs()
    (assets,) = analytics_assets(defs)
    keys = {k.to_user_string() for k in assets.keys}
    # an Amplitude deployment: the Amplitude models, no other source's
    models = {p.stem for p in (PROJECT_DIR / "models" / "amplitude").glob("*.sql")}
    assert keys == {f"analytics/{m}" for m in models} and len(models) == 14
    deps = {k.to_user_string(): {d.to_user_string() for d in v}
            for k, v in assets.asset_deps.items()}
    # no organization configured: no merge_ids asset, and no dependency on one
    assert deps["analytics/events_unique"] == {"amplitude/events"}
    assert deps["analytics/user_identity"] == {"amplitude/events"}
    assert deps["analytics/sessions"] == {"analytics/events_unique", "amplitude/events_list"}
    assert deps["analytics/daily_active_users"] == {"analytics/events_unique",
                                                    "amplitude/events_list"}
    assert deps["analytics/daily_new_users"] == {"analytics/events_unique"}
    assert deps["analytics/user_enhanced"] == {"analytics/events_unique", "analytics/sessions"}
    # its projects: every project with an event loaded, read from the events asset
    assert deps["analytics/funnel"] == {"analytics/events_unique", "amplitude/events"}
    assert assets.op.pool == "duckdb_warehouse"  # the loads' pool: one writer of the file
    for key in assets.keys:
        spec = assets.specs_by_key[key]
        assert spec.group_name == "analytics"
        assert spec.description and "dbt" in spec.kinds and "duckdb" in spec.kinds
    graph = defs.resolve_asset_graph()
    for upstream in ("amplitude/events", "amplitude/events_list"):
        assert graph.has(dg.AssetKey.from_user_string(upstream))  # real assets, not stubs


def test_dbt_build_materializes_every_model_and_every_dbt_test_passes_as_a_check(built):
    (assets,) = analytics_assets(built.defs())
    assert set(built.results["materialized"]) == {k.to_user_string() for k in assets.keys}
    checks = built.results["checks"]
    manifest = json.loads((PROJECT_DIR / "target" / "manifest.json").read_text())
    tests = source_tests(manifest, "amplitude")  # the dbt tests of the Amplitude models
    assert set(checks) == tests == {k.name for k in assets.check_keys}
    assert source_tests(manifest, "mixpanel") and not set(checks) & source_tests(manifest,
                                                                                   "mixpanel")
    assert all(checks.values()), [name for name, ok in checks.items() if not ok]
    tables = built.query("SELECT table_schema, table_type, count(*) FROM information_schema."
                         "tables WHERE table_schema LIKE '%analytics%' GROUP BY ALL")
    assert tables == [("analytics", "VIEW", len(assets.keys) - 2)]  # funnel, retention: macros
    macros = built.query("SELECT function_name FROM duckdb_functions() WHERE schema_name = "
                         "'analytics' AND function_type = 'table_macro' ORDER BY 1")
    assert macros == [("funnel",), ("retention",)]


# ---- each model against the served events ----

def test_every_row_is_the_environments_project_in_its_zone(built):
    """The demo has one project, configured from the environment: "default", in UTC."""
    for model in ("events_unique", "sessions", "daily_active_users", "daily_new_users",
                  "event_counts_daily", "user_enhanced", "event_enhanced", "daily_performance",
                  "session_length_distribution", "average_session_length",
                  "sessions_per_user"):
        assert built.query(f"SELECT DISTINCT project FROM analytics.{model}") == [
            ("default",)], model
    assert built.query("SELECT DISTINCT project_timezone FROM analytics.events_unique") == [
        ("UTC",)]
    assert built.query("SELECT DISTINCT project FROM analytics.funnel(['page_view'], "
                       "DATE '2026-03-01', DATE '2026-03-01')") == [("default",)]
    assert built.query("SELECT DISTINCT project FROM analytics.retention('_all', '_all', "
                       "DATE '2026-03-01', DATE '2026-03-01')") == [("default",)]


def test_events_unique_holds_each_served_event_once_with_its_date(built):
    ref = built.reference
    assert len(ref.events) == len(ref.rows)  # the simulator never repeats a uuid
    check_events_unique(built.query, ref, "default")


def test_daily_users_and_counts_match_python_and_amplitudes_own_numbers(built):
    ref = built.reference
    check_daily_users_and_counts(built.query, ref, "default")
    # Amplitude's own figures (the simulator counts in Python over every event it serves, and
    # every upload hour of its span is loaded): the models must equal them, day by day.
    amplitude = {d: (a, n, e) for d, a, n, e in built.query(
        "SELECT event_date, active_users, new_users, events FROM amplitude_all."
        "daily_counts_current WHERE project = 'default'")}
    assert set(ref.dates) <= set(amplitude)
    for day in amplitude:
        assert amplitude[day] == (ref.dau.get(day, 0), ref.new_users.get(day, 0),
                                  ref.totals(day)), day


def test_sessions_match_python(built):
    check_sessions(built.query, built.reference, "default")


def test_session_charts_use_amplitudes_default_bins(built):
    check_session_charts(built.query, built.reference, "default")


def test_user_enhanced_matches_python(built):
    check_user_enhanced(built.query, built.reference, "default")


def test_event_enhanced_numbers_each_event_and_joins_the_events_list(built):
    check_event_enhanced(built.query, built.reference, "default", served_events_list(built))


def test_daily_performance_matches_python(built):
    check_daily_performance(built.query, built.reference, "default")


@pytest.mark.parametrize("steps", [["page_view", "button_click", "add_to_cart"],
                                   ["page_view", "page_view", "page_view"],
                                   ["search", "purchase"]])
def test_the_funnel_macro_matches_python(built, steps):
    check_funnel(built.query, built.reference, "default", steps, DAY.date(),
                 DAY.date() + timedelta(days=1))


def test_the_retention_macro_matches_python(built):
    check_retention(built.query, built.reference, "default",
                    DAY.date() - timedelta(days=10), DAY.date() + timedelta(days=1))


# ---- a dbt test made to fail ----

def test_a_failing_dbt_test_fails_its_asset_check_and_the_run(built, tmp_path):
    """An export line without a uuid loads (missing keys load as NULL) and cannot be matched
    with its re-exports, so events_unique keeps it as it is: its not_null test must say so."""
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(built.path, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("INSERT INTO amplitude.events SELECT * REPLACE (NULL AS uuid) "
                    "FROM amplitude.events LIMIT 3")
    defs = built.defs(WAREHOUSE_PATH=str(copy))
    with dg.instance_for_test() as instance:
        result = dg.materialize(analytics_assets(defs), resources=defs.resources,
                                instance=instance, raise_on_error=False)
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = checks["not_null_events_unique_uuid"]
    assert not failed.passed and failed.asset_key == dg.AssetKey(["analytics", "events_unique"])
    assert failed.metadata["dagster_dbt/failed_row_count"].value == 3
    assert checks["unique_events_unique_project_uuid"].passed
    assert [name for name, e in checks.items() if not e.passed] == ["not_null_events_unique_uuid"]
    # the build stops below the failed test: models that read events_unique are not rebuilt
    assert "analytics/sessions" not in {
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
