"""Daily snapshots through Dagster against the simulator: tables equal what it served."""

import json
import re
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import httpx
import pytest

from assets.definitions import build_defs
from simulator import Simulator, SimulatorConfig
from tests.conftest import DAY, SMALL

pytestmark = pytest.mark.slow
TODAY = datetime.now(UTC).date()
RECORD_ASSETS = ["cohorts", "taxonomy_event_types", "taxonomy_event_properties",
                 "taxonomy_user_properties", "events_list", "annotations",
                 "annotation_categories", "taxonomy_categories"]


@pytest.fixture
def project(tmp_path):
    config = SimulatorConfig(profile=SMALL.profile, events_per_member=SMALL.events_per_member,
                             first_hour=DAY, last_hour=DAY + timedelta(hours=23),
                             timezone="America/Los_Angeles")
    with Simulator(config) as sim:
        env = {
            "AMPLITUDE_API_KEY": config.api_key, "AMPLITUDE_SECRET_KEY": config.secret_key,
            "AMPLITUDE_BASE_URL": sim.url,
            "AMPLITUDE_START": f"{DAY - timedelta(days=1):%Y-%m-%dT%H}",
            "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
            "LAKE_ROOT": str(tmp_path / "lake"),
            "AMPLITUDE_PROJECT_TIMEZONE": "America/Los_Angeles",
            "AMPLITUDE_COUNTS_DAYS": str((TODAY - DAY.date()).days + 3),
        }
        yield sim, env, tmp_path


def materialize(env, names, day, instance, raise_on_error=True):
    defs = build_defs(env)
    wanted = {dg.AssetKey(["amplitude", n]) for n in names}
    assets = [a for a in defs.assets if set(a.keys) & wanted]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        return dg.materialize(assets, resources=defs.resources, instance=instance,
                              partition_key=day.isoformat(), raise_on_error=raise_on_error)


def served(sim, path, **params):
    auth = (sim.config.api_key, sim.config.secret_key)
    return httpx.get(sim.url + path, params=params, auth=auth, timeout=30).json()


def table(tmp_path, sql, params=()):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, list(params)).fetchall()


def test_every_snapshot_holds_what_the_api_served_and_a_retake_is_idempotent(project):
    sim, env, tmp_path = project
    instance = dg.DagsterInstance.ephemeral()
    names = [*RECORD_ASSETS, "daily_counts"]
    materialize(env, names, TODAY, instance)

    cohorts = served(sim, "/api/3/cohorts")["cohorts"]
    got = table(tmp_path, "SELECT id, name, size, archived, owners, last_computed, definition, "
                          "_extras FROM amplitude.cohorts WHERE snapshot_date = ? ORDER BY id",
                [TODAY])
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in got] == sorted(
        (c["id"], c["name"], c["size"], c["archived"], c["owners"]) for c in cohorts)
    by_id = {c["id"]: c for c in cohorts}
    for row in got:
        assert row[5] == datetime.fromtimestamp(by_id[row[0]]["lastComputed"], UTC)
        assert json.loads(row[6]) == by_id[row[0]]["definition"]
        assert "is_live" in json.loads(row[7])  # a field the docs never listed is kept

    events = served(sim, "/api/2/taxonomy/event", showDeleted="true")["data"]
    assert table(tmp_path, "SELECT event_type, deleted FROM amplitude.taxonomy_event_types "
                           "ORDER BY 1") == sorted((e["event_type"], e["deleted"]) for e in events)
    properties = served(sim, "/api/2/taxonomy/event-property", showDeleted="true")["data"]
    for event in (e for e in events if not e["deleted"]):
        properties += served(sim, "/api/2/taxonomy/event-property", showDeleted="true",
                             event_type=event["event_type"])["data"]
    assert sorted(table(tmp_path, "SELECT coalesce(event_type, ''), event_property FROM "
                                  "amplitude.taxonomy_event_properties")) == sorted(
        (p.get("event_type") or "", p["event_property"]) for p in properties)
    users = served(sim, "/api/2/taxonomy/user-property", showDeleted="true")["data"]
    assert table(tmp_path, "SELECT count(*) FROM amplitude.taxonomy_user_properties") == [
        (len(users),)]
    listed = served(sim, "/api/2/events/list")["data"]
    assert table(tmp_path, "SELECT event_type, totals FROM amplitude.events_list ORDER BY 1") == \
        sorted((e["value"], e["totals"]) for e in listed)

    check_annotations_and_categories(sim, tmp_path)

    counts = sim.daily_counts()
    rows = table(tmp_path, "SELECT event_date, active_users, new_users, events, timezone "
                           "FROM amplitude.daily_counts_current WHERE events > 0 ORDER BY 1")
    assert rows and all(tz == "America/Los_Angeles" for *_, tz in rows)
    for event_date, active, new, total, _ in rows:
        assert (active, new, total) == (counts.active(event_date), counts.new(event_date),
                                        counts.total(event_date))

    before = {n: table(tmp_path, f"SELECT * EXCLUDE (snapshot_date) FROM amplitude.{n} "
                                 "ORDER BY ALL") for n in names}
    materialize(env, names, TODAY, instance)  # re-taking today replaces, never doubles
    assert before == {n: table(tmp_path, f"SELECT * EXCLUDE (snapshot_date) FROM amplitude.{n} "
                                         "ORDER BY ALL") for n in names}
    ledger = table(tmp_path, "SELECT table_name, rows FROM amplitude._snapshot_loads "
                             "ORDER BY 1")
    assert {name for name, _ in ledger} == set(names)


def instant(text):
    """An annotation's ISO 8601 time as the instant it names (None stays None)."""
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_annotations_and_categories(sim, tmp_path):
    """Field for field what the simulator served: five annotations in four categories, one
    filed under none (category null), one a point in time (end null)."""
    served_notes = served(sim, "/api/3/annotations")["data"]
    assert len(served_notes) == 5 and any(a["category"] is None for a in served_notes)
    assert any(a["end"] is None for a in served_notes)
    assert table(tmp_path, 'SELECT id, start, "end", label, details, category_id, '
                           "category_name, chart_id, _extras FROM amplitude.annotations_current "
                           "ORDER BY id") == sorted(
        (a["id"], instant(a["start"]), instant(a["end"]), a["label"], a["details"],
         (a["category"] or {}).get("id"), (a["category"] or {}).get("name"), a["chart_id"], None)
        for a in served_notes)
    categories = served(sim, "/api/3/annotation-categories")["data"]
    assert len(categories) == 4
    assert table(tmp_path, "SELECT id, name, _extras FROM amplitude.annotation_categories_current "
                           "ORDER BY id") == sorted((c["id"], c["name"], None) for c in categories)
    plan = served(sim, "/api/2/taxonomy/category")["data"]
    assert plan and table(tmp_path, "SELECT id, name, _extras FROM "
                                    "amplitude_all.taxonomy_categories_current WHERE project = "
                                    "'default' ORDER BY id") == sorted(
        (c["id"], c["name"], None) for c in plan)


def test_a_past_day_rebuilds_from_its_landing_without_calling_amplitude(project):
    sim, env, tmp_path = project
    instance = dg.DagsterInstance.ephemeral()
    materialize(env, ["taxonomy_user_properties"], TODAY, instance)
    sim.reset_log()
    # Tomorrow the same partition is a past day: it re-materializes from its own landing copy.
    import pipeline.snapshots as snapshots

    class Tomorrow(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + timedelta(days=1)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshots, "datetime", Tomorrow)
        result = materialize(env, ["taxonomy_user_properties"], TODAY, instance)
    assert result.success and sim.requests == []
    assert table(tmp_path, "SELECT count(*) > 0 FROM amplitude.taxonomy_user_properties") == [
        (True,)]


def test_a_past_day_never_taken_is_refused_with_the_reason(project):
    sim, env, _ = project
    result = materialize(env, ["events_list"], TODAY - timedelta(days=3),
                         dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    message = str(result.all_events)
    assert "only says what is true now" in message and "never taken" in message
    assert sim.requests == []


def test_taxonomy_without_an_enterprise_plan_says_so_and_keeps_earlier_snapshots(project):
    sim, env, tmp_path = project
    instance = dg.DagsterInstance.ephemeral()
    taxonomy = ["taxonomy_user_properties", "taxonomy_categories"]
    materialize(env, taxonomy, TODAY, instance)
    count = "SELECT (SELECT count(*) FROM amplitude.taxonomy_user_properties), " \
            "(SELECT count(*) FROM amplitude.taxonomy_categories)"
    before = table(tmp_path, count)
    assert all(before[0])
    object.__setattr__(sim.config, "taxonomy_enabled", False)
    result = materialize(env, taxonomy, TODAY, instance, raise_on_error=False)
    assert not result.success
    failure = str(result.all_events)
    for what in ("taxonomy user properties", "taxonomy categories"):
        assert re.search(rf"\(403\) for {what} from .*?If the key is right, the Taxonomy API "
                         "is only open to Amplitude Enterprise plans", failure), what
    assert sim.config.secret_key not in failure
    assert table(tmp_path, count) == before
