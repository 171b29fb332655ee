"""The dbt models on hand-made events: the cases the simulator never serves, each with its
expected figure worked out by hand (re-exported duplicates, sessions on Amplitude's bin edges,
inactive events, a project time zone other than UTC, funnels that need their second start,
retention on day 7, two projects sharing uuids and user ids in one warehouse, each in its own
zone with its own events list), a build against an empty warehouse, and which models a
deployment of each source gets. dbt runs through Dagster, with a recording HTTP proxy in the
environment: nothing may go out.
"""

import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import dagster as dg
import duckdb
import pytest
import yaml

from assets.analytics import PROJECT_DIR, build_analytics_assets, prepare_manifest
from pipeline.source import Project
from resources import WarehouseResource
from resources.storage import WarehouseProject

pytestmark = pytest.mark.slow

ZONE = "Asia/Kolkata"  # +05:30
DEFAULT = Project.named("amplitude", "default", ZONE)
WEB = Project.named("amplitude", "web", "UTC")  # a second project: schema amplitude_web
T = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)  # 09:30 on 1 March in Kolkata
D1 = date(2026, 3, 1)
MIN, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def ms(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def ev(uuid: str, aid: int, event_type: str, at: datetime, *, session: int = -1,
       client: datetime | None = None, upload: datetime | None = None,
       hour: datetime | None = None) -> dict:
    upload = upload or at + MIN
    return {"uuid": uuid, "amplitude_id": aid, "event_type": event_type, "event_time": at,
            "client_event_time": client or at, "server_upload_time": upload,
            "session_id": session,
            "_upload_hour": hour or upload.replace(minute=0, second=0, microsecond=0),
            "device_id": f"device-{aid}", "user_id": f"user-{aid}",
            "_source_member": "636686_2026-03-01_4#0.json.gz"}


S1, S2, S3 = ms(T), ms(T + HOUR), ms(T + 2 * HOUR)
EVENTS = [
    # re-exports: the highest server_upload_time wins, then the latest upload hour
    ev("dup", 1, "old_name", T, upload=T + MIN),
    ev("dup", 1, "page_view", T, upload=T + 2 * HOUR),
    ev("tie", 1, "tie_early", T + 5 * MIN, upload=T + 10 * MIN),
    ev("tie", 1, "tie_late", T + 5 * MIN, upload=T + 10 * MIN, hour=T + 3 * HOUR),
    ev("back", 1, "back_high", T + 6 * MIN, upload=T + 50 * MIN),
    ev("back", 1, "back_low", T + 6 * MIN, upload=T + 20 * MIN, hour=T + 5 * HOUR),
    # user 2's sessions: lengths 2,999 ms (bin 1), 3,000 ms (bin 2), 61 s (bin 5: its
    # inactive event an hour later is left out of the length, not of the duration)
    ev("s1a", 2, "page_view", T, session=S1),
    ev("s1b", 2, "button_click", T + timedelta(seconds=10), session=S1,
       client=T + timedelta(milliseconds=2999)),
    ev("s2a", 2, "page_view", T + HOUR, session=S2),
    ev("s2b", 2, "page_view", T + HOUR + timedelta(seconds=3), session=S2),
    ev("s3a", 2, "page_view", T + 2 * HOUR, session=S3),
    ev("s3b", 2, "page_view", T + 2 * HOUR + timedelta(seconds=61), session=S3),
    ev("s3c", 2, "background_ping", T + 3 * HOUR, session=S3),
    ev("out", 2, "page_view", T + 4 * HOUR),  # session -1: in no session
    # user 3 reuses S1 (another session: ids are per user) and lasts a day: in no bin
    ev("s4a", 3, "page_view", T, session=S1),
    ev("s4b", 3, "page_view", T + DAY, session=S1),
    # user 4: only inactive events: new, never active; a session without a length
    ev("s5a", 4, "background_ping", T, session=S1),
    ev("s5b", 4, "background_ping", T + timedelta(seconds=10), session=S1),
    # user 5 either side of midnight in Kolkata (18:30 UTC)
    ev("tz1", 5, "page_view", datetime(2026, 3, 1, 18, 15, tzinfo=UTC)),
    ev("tz2", 5, "page_view", datetime(2026, 3, 1, 18, 45, tzinfo=UTC)),
    # funnels search → add_to_cart → purchase: user 6's first search reaches step 2 in a day,
    # its second (10 h later) reaches step 3; user 7 does them out of order; user 8 too late
    ev("f1", 6, "search", T),
    ev("f2", 6, "add_to_cart", T + HOUR),
    ev("f3", 6, "search", T + 10 * HOUR),
    ev("f4", 6, "add_to_cart", T + 11 * HOUR),
    ev("f5", 6, "purchase", T + 30 * HOUR),
    ev("g1", 7, "add_to_cart", T),
    ev("g2", 7, "search", T + HOUR),
    ev("g3", 7, "purchase", T + 2 * HOUR),
    ev("h1", 8, "search", T + DAY),
    # retention signup_done → app_open: user 9 back on day 7, user 10 (cohort of its first
    # signup) on day 6, user 11 (cohort 3 March) on day 7
    ev("r1", 9, "signup_done", T),
    ev("r2", 9, "app_open", T + 7 * DAY),
    ev("r3", 10, "signup_done", T),
    ev("r4", 10, "signup_done", T + DAY),
    ev("r5", 10, "app_open", T + 6 * DAY),
    ev("r6", 11, "signup_done", T + 2 * DAY),
    ev("r7", 11, "app_open", T + 9 * DAY),
]


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def _record(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(502)
        self.end_headers()

    do_GET = do_POST = do_CONNECT = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def no_network(monkeypatch) -> Iterator[list[str]]:
    """Every proxy variable pointed at a local recorder; yields what it received."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, url)
    for name in ("NO_PROXY", "no_proxy", "DBT_SEND_ANONYMOUS_USAGE_STATS"):
        monkeypatch.delenv(name, raising=False)
    _Recorder.seen = []
    yield _Recorder.seen
    server.shutdown()
    server.server_close()


def build(path: Path, projects: tuple[Project, ...] = (DEFAULT,)) -> dg.ExecuteInProcessResult:
    """The dbt assets of a deployment of ``projects``, over the warehouse at ``path``; the zones
    reach the models only through the all-projects views' project_timezone column."""
    assets = build_analytics_assets(list(projects))
    warehouse = WarehouseResource(path=str(path), projects=[WarehouseProject(
        source=p.source, name=p.name, timezone=p.timezone) for p in projects])
    with dg.instance_for_test() as instance:
        return dg.materialize(assets, resources={"warehouse": warehouse},
                              instance=instance, raise_on_error=False)


def insert(path: Path, schema: str = "amplitude", *, list_inactive: bool = True) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("SET TimeZone = 'UTC'")
        for row in EVENTS:
            names = ", ".join(f'"{name}"' for name in row)
            con.execute(f"INSERT INTO {schema}.events ({names}) VALUES "
                        f"({', '.join('?' * len(row))})", list(row.values()))
        if list_inactive:
            # the newest snapshot of the events list counts: page_view was inactive only before
            con.execute(f"INSERT INTO {schema}.events_list (snapshot_date, event_type, "
                        "non_active) VALUES ('2026-03-01', 'page_view', true), "
                        "('2026-03-02', 'page_view', false), "
                        "('2026-03-02', 'background_ping', true)")


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


MODELS = ("events_unique", "sessions", "daily_active_users", "daily_new_users",
          "event_counts_daily", "user_enhanced", "event_enhanced", "daily_performance",
          "session_length_distribution", "average_session_length", "sessions_per_user")


def dates(*pairs: tuple[int, int]) -> dict[date, int]:
    return {date(2026, 3, day): n for day, n in pairs}


def test_models_on_hand_made_events(tmp_path, no_network):
    path = tmp_path / "warehouse.duckdb"

    # A new, empty warehouse: the tables are created first, the views are empty, tests pass.
    empty = build(path)
    assert empty.success, [e.check_name for e in empty.get_asset_check_evaluations()
                           if not e.passed]
    assert all(e.passed for e in empty.get_asset_check_evaluations())
    with duckdb.connect(str(path), read_only=True) as con:
        assert rows(con, "SELECT count(*) FROM analytics.daily_active_users") == [(0,)]
        # no project has an event: no funnel rows (a project with events gets its zeros, below)
        assert rows(con, "SELECT * FROM analytics.funnel(['a', 'b'], DATE '2026-03-01', "
                         "DATE '2026-03-01')") == []
        assert rows(con, "SELECT schema_name FROM duckdb_schemas() WHERE schema_name LIKE "
                         "'%analytics%'") == [("analytics",)]

    insert(path)
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("SET TimeZone = 'America/New_York'")  # a reader's zone changes no date
        for model in MODELS:  # every row is the one project's, with its zone where it is kept
            assert rows(con, f"SELECT DISTINCT project FROM analytics.{model}") == [
                ("default",)], model
        assert rows(con, "SELECT DISTINCT project_timezone FROM analytics.events_unique") == [
            (ZONE,)]
        unique = dict(rows(con, "SELECT uuid, event_type FROM analytics.events_unique"))
        assert len(unique) == len(EVENTS) - 3
        assert (unique["dup"], unique["tie"], unique["back"]) == (
            "page_view", "tie_late", "back_high")
        assert dict(rows(con, "SELECT uuid, event_date FROM analytics.events_unique WHERE uuid "
                              "LIKE 'tz%'")) == {"tz1": D1, "tz2": date(2026, 3, 2)}

        assert dict(rows(con, "SELECT event_date, active_users FROM analytics."
                              "daily_active_users")) == dates(
            (1, 8), (2, 5), (3, 1), (4, 0), (5, 0), (6, 0), (7, 1), (8, 1), (9, 0), (10, 1))
        assert dict(rows(con, "SELECT event_date, new_users FROM analytics.daily_new_users")
                    ) == dates(
            (1, 9), (2, 1), (3, 1), (4, 0), (5, 0), (6, 0), (7, 0), (8, 0), (9, 0), (10, 0))
        counts = {(d, t): (n, u) for d, t, n, u in rows(
            con, "SELECT * EXCLUDE (project) FROM analytics.event_counts_daily")}
        assert counts[(D1, "background_ping")] == (3, 2)
        assert counts[(D1, "page_view")] == (9, 4)  # users 1, 2, 3 and 5 (before midnight)
        assert (D1, "old_name") not in counts

        sessions = {(a, s): rest for a, s, *rest in rows(
            con, "SELECT amplitude_id, session_id, event_count, duration_seconds, length_ms, "
                 "user_session_number, round(minutes_since_previous_session, 4), "
                 "session_date FROM analytics.sessions")}
        assert sorted(k for (k,) in rows(con, "SELECT session_key FROM analytics.sessions")) == (
            sorted(f"default:{a}:{s}" for a, s in sessions))
        assert sessions == {
            (2, S1): [2, 10.0, 2999, 1, None, D1],
            (2, S2): [2, 3.0, 3000, 2, round((HOUR - 10 * timedelta(seconds=1)) / MIN, 4), D1],
            (2, S3): [3, 3600.0, 61000, 3, round((HOUR - 3 * timedelta(seconds=1)) / MIN, 4),
                      D1],
            (3, S1): [2, 86400.0, 86_400_000, 1, None, D1],
            (4, S1): [2, 10.0, None, 1, None, D1],
        }
        assert rows(con, "SELECT bin, label, sessions FROM analytics.session_length_distribution"
                         " WHERE sessions > 0 ORDER BY bin") == [
            (1, "0s-3s", 1), (2, "3s-10s", 1), (5, "1m-3m", 1)]
        assert rows(con, "SELECT count(*) FROM analytics.session_length_distribution") == [(9,)]
        assert rows(con, "SELECT session_date, sessions, average_seconds FROM "
                         "analytics.average_session_length") == [(D1, 3, (2999 + 3000 + 61000) / 3
                                                                  / 1000)]
        assert rows(con, "SELECT * FROM analytics.sessions_per_user") == [
            ("default", D1, 5, 3, 5 / 3)]

        funnel = "SELECT project, step, users FROM analytics.funnel({}, DATE '2026-03-01', " \
                 "DATE '2026-03-01'{})"
        steps = "['search', 'add_to_cart', 'purchase']"
        assert rows(con, funnel.format(steps, "")) == [
            ("default", 1, 2), ("default", 2, 1), ("default", 3, 1)]
        assert rows(con, funnel.format(steps, ", conversion_window := INTERVAL 12 HOUR")) == [
            ("default", 1, 2), ("default", 2, 1), ("default", 3, 0)]
        assert rows(con, funnel.format("['search', 'search']", "")) == [
            ("default", 1, 2), ("default", 2, 1)]
        # a funnel nobody entered: the project's zeros
        assert rows(con, "SELECT * FROM analytics.funnel(['a', 'b'], DATE '2026-03-01', "
                         "DATE '2026-03-01')") == [("default", 1, "a", 0, None, None),
                                                   ("default", 2, "b", 0, None, None)]

        assert rows(con, "SELECT DISTINCT project FROM analytics.retention('_all', '_all', "
                         "DATE '2026-03-01', DATE '2026-03-03')") == [("default",)]
        retention = rows(con, "SELECT cohort_date, day, users, retained, complete FROM "
                              "analytics.retention('signup_done', 'app_open', DATE '2026-03-01',"
                              " DATE '2026-03-03', days := 7) WHERE retained > 0 OR day = 7")
        assert retention == [(D1, 0, 2, 2, True), (D1, 6, 2, 1, True), (D1, 7, 2, 1, True),
                             (date(2026, 3, 3), 0, 1, 1, True), (date(2026, 3, 3), 7, 1, 1, True)]

        performance = {(d, t): rest for d, t, *rest in rows(
            con, "SELECT * EXCLUDE (project) FROM analytics.daily_performance "
                 "WHERE event_type = 'app_open'")}
        assert performance == {(date(2026, 3, 7), "app_open"): [1, 0, 1, 0],
                               (date(2026, 3, 8), "app_open"): [1, 0, 1, 0],
                               (date(2026, 3, 9), "app_open"): [0, 0, 0, 0],
                               (date(2026, 3, 10), "app_open"): [1, 0, 1, 0]}
        users = {a: rest for a, *rest in rows(
            con, "SELECT canonical_amplitude_id, first_event_date, total_events, total_sessions, "
                 "active_days FROM analytics.user_enhanced WHERE canonical_amplitude_id "
                 "IN (2, 4, 5)")}
        assert users == {2: [D1, 8, 3, 1], 4: [D1, 2, 1, 1], 5: [D1, 2, 0, 2]}
        enhanced = dict(rows(con, "SELECT uuid, session_event_number FROM analytics."
                                  "event_enhanced WHERE amplitude_id = 2"))
        assert enhanced == {"s1a": 1, "s1b": 2, "s2a": 1, "s2b": 2, "s3a": 1, "s3b": 2,
                            "s3c": 3, "out": None}

    # The views work under any catalog name: a copy attached under another alias.
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(path, copy)
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{copy}' AS elsewhere (READ_ONLY)")
        assert rows(con, "SELECT sum(active_users) FROM elsewhere.analytics."
                         "daily_active_users") == [(17,)]

    # An analyst's read-only session holds the file: the build waits for it, then runs (and
    # every dbt test passes on these rows).
    reader = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time\n"
         f"con = duckdb.connect({str(path)!r}, read_only=True)\n"
         "print('open', flush=True)\ntime.sleep(4)\ncon.close()"],
        stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
    started = time.monotonic()
    again = build(path)
    assert reader.wait(timeout=30) == 0
    assert again.success and time.monotonic() - started > 3
    checks = {e.check_name: e.passed for e in again.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    assert no_network == []

    # Amplitude merges users: 7 (anonymous) into 6, and 4 into 7, a chain that ends at 6.
    # Merged users count once: on 1 March users 6 and 7 are one active user, and 4 and 7 are no
    # new users of their own; user 6's ids together reach every step of the funnel.
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO amplitude.merge_ids (scope, merge_time, merge_server_time, "
                    "amplitude_id, merged_amplitude_id) VALUES "
                    "(-1, ?, ?, 7, 6), (-1, ?, ?, 4, 7)", [T, T, T + HOUR, T + HOUR])
    with duckdb.connect(str(path), read_only=True) as con:
        assert rows(con, "SELECT amplitude_id, canonical_amplitude_id, merged FROM "
                         "analytics.user_identity ORDER BY 1") == [
            (a, 6 if a in (4, 7) else a, a in (4, 7)) for a in range(1, 12)]
        assert dict(rows(con, "SELECT event_date, active_users FROM analytics."
                              "daily_active_users WHERE event_date = DATE '2026-03-01'")) == {
            D1: 7}
        assert dict(rows(con, "SELECT event_date, new_users FROM analytics.daily_new_users "
                              "WHERE new_users > 0")) == dates((1, 7), (2, 1), (3, 1))
        assert rows(con, funnel.format(steps, "")) == [
            ("default", 1, 1), ("default", 2, 1), ("default", 3, 1)]
        assert rows(con, "SELECT count(DISTINCT canonical_amplitude_id) FROM "
                         "analytics.events_unique WHERE amplitude_id IN (4, 6, 7)") == [(1,)]


def test_two_projects_in_one_warehouse_keep_their_keys_zones_and_events_lists(tmp_path,
                                                                            no_network):
    """The same events (same uuids, users and session ids) in two projects: default in Kolkata
    with its events list (background_ping inactive), web in UTC with none. Each project's figures
    are its own, worked out by hand; nothing of one project reaches the other."""
    path = tmp_path / "warehouse.duckdb"
    assert build(path, (DEFAULT, WEB)).success  # creates both schemas and the views
    insert(path)
    insert(path, "amplitude_web", list_inactive=False)
    built = build(path, (DEFAULT, WEB))
    checks = {e.check_name: e.passed for e in built.get_asset_check_evaluations()}
    assert built.success and checks and all(checks.values()), checks
    with duckdb.connect(str(path), read_only=True) as con:
        assert rows(con, "SELECT project, project_timezone, count(*) FROM amplitude_all.events "
                         "GROUP BY ALL ORDER BY 1") == [("default", ZONE, len(EVENTS)),
                                                        ("web", "UTC", len(EVENTS))]
        for model in MODELS:
            assert rows(con, f"SELECT DISTINCT project FROM analytics.{model} ORDER BY 1") == [
                ("default",), ("web",)], model
        assert rows(con, "SELECT project, count(*), count(DISTINCT uuid) FROM analytics."
                         "events_unique GROUP BY ALL ORDER BY 1") == [
            ("default", len(EVENTS) - 3, len(EVENTS) - 3), ("web", len(EVENTS) - 3,
                                                            len(EVENTS) - 3)]
        # 18:15 and 18:45 UTC: either side of midnight in Kolkata, one day in UTC
        assert rows(con, "SELECT project, uuid, event_date FROM analytics.events_unique WHERE "
                         "uuid LIKE 'tz%' ORDER BY 1, 2") == [
            ("default", "tz1", D1), ("default", "tz2", date(2026, 3, 2)),
            ("web", "tz1", D1), ("web", "tz2", D1)]

        def by_project(sql: str) -> dict[str, dict]:
            out: dict[str, dict] = {}
            for project, key, value in rows(con, sql):
                out.setdefault(project, {})[key] = value
            return out

        assert by_project("SELECT * FROM analytics.daily_active_users") == {
            "default": dates((1, 8), (2, 5), (3, 1), (4, 0), (5, 0), (6, 0), (7, 1), (8, 1),
                             (9, 0), (10, 1)),
            # user 4's background_ping is active in web; user 5 has one UTC day
            "web": dates((1, 9), (2, 4), (3, 1), (4, 0), (5, 0), (6, 0), (7, 1), (8, 1),
                         (9, 0), (10, 1))}
        assert by_project("SELECT * FROM analytics.daily_new_users WHERE new_users > 0") == {
            "default": dates((1, 9), (2, 1), (3, 1)), "web": dates((1, 9), (2, 1), (3, 1))}
        lengths = by_project("SELECT project, amplitude_id || ':' || session_id, length_ms FROM "
                             "analytics.sessions")
        assert lengths == {
            "default": {f"2:{S1}": 2999, f"2:{S2}": 3000, f"2:{S3}": 61000,
                        f"3:{S1}": 86_400_000, f"4:{S1}": None},
            # web's list marks nothing inactive: s3c (an hour after s3a) and user 4's pings count
            "web": {f"2:{S1}": 2999, f"2:{S2}": 3000, f"2:{S3}": 3_600_000,
                    f"3:{S1}": 86_400_000, f"4:{S1}": 10_000}}
        keys = rows(con, "SELECT session_key FROM analytics.sessions ORDER BY 1")
        assert [k for (k,) in keys] == sorted(
            f"{p}:{k}" for p, sessions in lengths.items() for k in sessions)
        assert by_project("SELECT project, bin, sessions FROM analytics."
                          "session_length_distribution WHERE sessions > 0") == {
            "default": {1: 1, 2: 1, 5: 1}, "web": {1: 1, 2: 1, 3: 1, 9: 1}}
        assert by_project("SELECT project, canonical_amplitude_id, active_days FROM analytics."
                          "user_enhanced WHERE canonical_amplitude_id = 5") == {
            "default": {5: 2}, "web": {5: 1}}
        assert by_project("SELECT project, uuid, session_event_number FROM analytics."
                          "event_enhanced WHERE amplitude_id = 4") == {
            "default": {"s5a": 1, "s5b": 2}, "web": {"s5a": 1, "s5b": 2}}
        assert rows(con, "SELECT project, step, users FROM analytics.funnel(['search', "
                         "'add_to_cart', 'purchase'], DATE '2026-03-01', DATE '2026-03-01') "
                         "WHERE project = 'web'") == [("web", 1, 2), ("web", 2, 1), ("web", 3, 1)]
        assert rows(con, "SELECT project, cohort_date, users, retained FROM analytics.retention("
                         "'signup_done', 'app_open', DATE '2026-03-01', DATE '2026-03-03') "
                         "WHERE day = 7 ORDER BY ALL") == [
            ("default", D1, 2, 1), ("default", date(2026, 3, 3), 1, 1),
            ("web", D1, 2, 1), ("web", date(2026, 3, 3), 1, 1)]
    assert no_network == []


def source_tests(manifest: dict, source: str) -> set[str]:
    """The dbt tests that read only the models and sources of ``source``."""
    own = {uid for uid, node in {**manifest["nodes"], **manifest["sources"]}.items()
           if source in node.get("tags", []) or node.get("source_name") == source}
    return {node["name"] for node in manifest["nodes"].values()
            if node["resource_type"] == "test" and set(node["depends_on"]["nodes"]) <= own}


def test_a_deployment_gets_the_models_and_checks_of_its_sources_only():
    mixpanel = Project.named("mixpanel", "default")
    models = {source: {p.stem for p in (PROJECT_DIR / "models" / source).glob("*.sql")}
              for source in ("amplitude", "mixpanel")}
    assert models["amplitude"] >= set(MODELS) | {"funnel", "retention"}
    assert models["mixpanel"] == {"mixpanel_events_unique"}
    manifest = json.loads(prepare_manifest().read_text())
    tests = {source: source_tests(manifest, source) for source in models}
    every = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "test"}
    assert tests["amplitude"] | tests["mixpanel"] == every
    assert {"events_unique_keeps_every_event", "unique_events_unique_project_uuid"} <= tests[
        "amplitude"]
    for projects, sources in (([DEFAULT, WEB], ["amplitude"]), ([mixpanel], ["mixpanel"]),
                              ([mixpanel, DEFAULT], ["amplitude", "mixpanel"])):
        (assets,) = build_analytics_assets(projects)
        assert {k.path[1] for k in assets.keys} == set().union(*(models[s] for s in sources))
        assert {k.name for k in assets.check_keys} == set().union(*(tests[s] for s in sources))
        deps = {k.path[1]: {d.to_user_string() for d in v} for k, v in assets.asset_deps.items()}
        if "amplitude" in sources:  # every project's events and merges: it reads them all
            events = {f"{p.namespace}/{name}" for p in projects if p.source == "amplitude"
                      for name in ("events", "merge_ids")}
            assert deps["events_unique"] == events
        if "mixpanel" in sources:
            assert deps["mixpanel_events_unique"] == {"mixpanel/events"}


def test_the_manifest_is_parsed_when_missing_or_stale_and_only_then(tmp_path, no_network):
    project = tmp_path / "analytics"
    shutil.copytree(Path(__file__).resolve().parents[2] / "analytics", project,
                    ignore=shutil.ignore_patterns("target", "logs"))
    manifest = prepare_manifest(project)
    assert manifest == project / "target" / "manifest.json" and manifest.exists()
    parsed = manifest.stat().st_mtime_ns
    assert prepare_manifest(project).stat().st_mtime_ns == parsed  # fresh: not parsed again
    model = project / "models" / "amplitude" / "sessions_per_user.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    assert prepare_manifest(project).stat().st_mtime_ns > parsed
    assert not list((project / "target").glob(".parse-*"))
    assert not (project / "packages.yml").exists() and not (project / "dbt_packages").exists()
    assert no_network == []
    settings = yaml.safe_load((project / "dbt_project.yml").read_text())
    assert settings["flags"]["send_anonymous_usage_stats"] is False
    profile = (project / "profiles.yml").read_text()
    assert "env_var('WAREHOUSE_PATH'" in profile and "type: duckdb" in profile
