"""Two Amplitude projects in one warehouse: the demo's project ("default", UTC) and a second one,
"web" (schema amplitude_web, Asia/Kolkata), loaded with twelve of the demo's upload hours from
the same Parquet files (so the two share uuids, users and session ids) and with an events list of
its own that marks page_view inactive.

The all-projects views must hold both projects under their names and zones, and every model
must give each project exactly that project's own figures, computed in Python from the rows the
simulator served for its hours, in its zone, with its inactive types (``Reference``): the same
comparisons test_analytics.py makes for the demo, run once per project.
"""

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest

from assets.analytics import PROJECT_DIR, build_analytics_assets
from pipeline.amplitude.landing import AmplitudeLake
from pipeline.amplitude.load import LoadRecord, load_hour
from pipeline.lake import Lake
from pipeline.source import Project
from pipeline.warehouse import Warehouse
from resources import WarehouseResource
from resources.storage import WarehouseProject
from tests.conftest import DAY
from tests.e2e.conftest import served_rows
from tests.e2e.test_analytics import (
    DEMO_HOURS,
    Built,
    Reference,
    check_daily_performance,
    check_daily_users_and_counts,
    check_event_enhanced,
    check_events_unique,
    check_funnel,
    check_retention,
    check_session_charts,
    check_sessions,
    check_user_enhanced,
    demo_build,
    served_events_list,
    shared_dir,
)

pytestmark = pytest.mark.slow

DEFAULT = Project.named("amplitude", "default")  # the environment's, as the demo configures it
WEB = Project.named("amplitude", "web", "Asia/Kolkata")
WEB_HOURS = DEMO_HOURS[6:18]
WEB_INACTIVE = frozenset({"page_view"})
SNAPSHOT = date(2026, 3, 2)


@dataclass
class TwoProjects:
    demo: Built
    path: Path
    results: dg.ExecuteInProcessResult
    references: dict[str, Reference]
    lists: dict[str, dict[str, dict]]  # each project's events list, by event type

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.path), read_only=True) as con:
            con.execute("SET TimeZone = 'America/New_York'")  # a reader's zone changes no date
            return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def two(tmp_path_factory, worker_id) -> Iterator[TwoProjects]:
    with demo_build(shared_dir(tmp_path_factory, worker_id)) as demo:
        assert demo.results["analytics"]
        folder = tmp_path_factory.mktemp("two-projects")
        path = folder / demo.path.name  # the demo's warehouse, under its own name
        shutil.copyfile(demo.path, path)
        # opening it for both projects creates amplitude_web and the all-projects views
        with Warehouse(path, projects=[DEFAULT, WEB]).connect() as con:
            lake = Lake(demo.env["LAKE_ROOT"]).share(AmplitudeLake, namespace="amplitude")
            for hour in WEB_HOURS:
                parquet = lake.events_file(hour)
                assert parquet is not None, hour
                load_hour(con, "amplitude_web", lake.local(parquet), LoadRecord(
                    upload_hour=hour, archive_members=1, bytes_downloaded=1,
                    request_window="copied from amplitude", window_requests=1,
                    fetch_seconds=0.0))
            con.execute("INSERT INTO amplitude_web.events_list (snapshot_date, event_type, id, "
                        "totals, non_active) VALUES (?, 'page_view', 7, 70, true)", [SNAPSHOT])
        assets = build_analytics_assets([DEFAULT, WEB])
        warehouse = WarehouseResource(path=str(path), projects=[
            WarehouseProject(source=p.source, name=p.name, timezone=p.timezone)
            for p in (DEFAULT, WEB)])
        with dg.instance_for_test() as instance:
            results = dg.materialize(assets, resources={"warehouse": warehouse},
                                     instance=instance, raise_on_error=False)
        web_rows = [row for hour in WEB_HOURS
                    for row in served_rows(demo.sim, hour).values()]
        yield TwoProjects(
            demo, path, results,
            {"default": demo.reference,
             "web": Reference(web_rows, ZoneInfo(WEB.timezone), WEB_INACTIVE)},
            {"default": served_events_list(demo),
             "web": {"page_view": {"id": 7, "totals": 70, "non_active": True}}})


PROJECTS = ["default", "web"]


def test_the_build_over_both_projects_passes_every_check(two):
    checks = {e.check_name: e.passed for e in two.results.get_asset_check_evaluations()}
    assert two.results.success and checks and all(checks.values()), checks
    materialized = {e.asset_key.path[1] for e in two.results.get_asset_materialization_events()}
    assert materialized == {p.stem for p in (PROJECT_DIR / "models" / "amplitude").glob("*.sql")}


def test_the_all_projects_views_hold_both_projects_under_their_names_and_zones(two):
    demo, web = two.references["default"], two.references["web"]
    assert two.query("SELECT project, project_timezone, count(*), count(DISTINCT uuid) FROM "
                     "amplitude_all.events GROUP BY ALL ORDER BY 1") == [
        ("default", "UTC", len(demo.rows), len(demo.by_uuid)),
        ("web", "Asia/Kolkata", len(web.rows), len(web.by_uuid))]
    assert two.query("SELECT project, project_timezone, upload_hour FROM amplitude_all._loads "
                     "ORDER BY 1, 3") == (
        [("default", "UTC", h) for h in DEMO_HOURS]
        + [("web", "Asia/Kolkata", h) for h in WEB_HOURS])
    assert two.query("SELECT project, event_type, non_active FROM amplitude_all."
                     "events_list_current WHERE project = 'web'") == [("web", "page_view", True)]
    assert two.query("SELECT count(*) FROM amplitude_all.events_list_current WHERE project = "
                     "'default' AND non_active") == [(0,)]
    # the web project shares the demo's uuids: the models key on (project, uuid)
    shared = two.query("SELECT count(*) FROM (SELECT uuid FROM analytics.events_unique "
                       "GROUP BY uuid HAVING count(DISTINCT project) = 2)")
    assert shared == [(len(web.events),)] and len(web.events) < len(demo.events)


def test_the_zones_are_each_projects_own(two):
    """An event late in a UTC day is on the next day in Kolkata: each project dates its own."""
    web = two.references["web"]
    dated = dict(two.query("SELECT project, count(*) FILTER (WHERE event_date <> "
                           "CAST(timezone('UTC', event_time) AS DATE)) FROM "
                           "analytics.events_unique GROUP BY ALL"))
    moved = sum(1 for e in web.events if web.day(e["event_time"]) != e["event_time"].date())
    assert dated == {"default": 0, "web": moved} and moved > 0


@pytest.mark.parametrize("project", PROJECTS)
def test_each_projects_events_and_daily_figures_are_its_own(two, project):
    ref = two.references[project]
    check_events_unique(two.query, ref, project)
    check_daily_users_and_counts(two.query, ref, project)
    check_daily_performance(two.query, ref, project)


def test_an_events_list_marks_its_own_projects_events_only(two):
    """page_view is inactive in web alone: web's active users leave out users who only viewed
    pages, and the default project's count them."""
    web, demo = two.references["web"], two.references["default"]
    got = dict(two.query("SELECT project, sum(active_users) FROM analytics.daily_active_users "
                         "GROUP BY ALL"))
    assert got == {"default": sum(demo.dau.values()), "web": sum(web.dau.values())}
    everyone = Reference(web.rows, web.zone)  # web's events, every type active
    assert sum(web.dau.values()) < sum(everyone.dau.values())


@pytest.mark.parametrize("project", PROJECTS)
def test_each_projects_sessions_and_users_are_its_own(two, project):
    ref = two.references[project]
    check_sessions(two.query, ref, project)
    check_session_charts(two.query, ref, project)
    check_user_enhanced(two.query, ref, project)
    check_event_enhanced(two.query, ref, project, two.lists[project])


@pytest.mark.parametrize("project", PROJECTS)
def test_each_projects_funnel_and_retention_are_its_own(two, project):
    ref = two.references[project]
    check_funnel(two.query, ref, project, ["page_view", "button_click", "add_to_cart"],
                 DAY.date(), DAY.date() + timedelta(days=1))
    check_retention(two.query, ref, project, DAY.date() - timedelta(days=10),
                    DAY.date() + timedelta(days=1))
    assert two.query("SELECT DISTINCT project FROM analytics.funnel(['page_view'], "
                     "DATE '2026-03-01', DATE '2026-03-01') ORDER BY 1") == [
        ("default",), ("web",)]
