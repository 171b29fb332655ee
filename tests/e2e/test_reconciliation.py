"""The warehouse against Amplitude's own daily counts, and the freshness check.

One simulated project, loaded once for the module, whose users Amplitude merges (a share start
anonymous and are merged into their original id inside the span), so its Dashboard counts count
canonical users. Each test sets the merge rows it needs in ``amplitude.merge_ids`` itself (as
the simulator writes them) and leaves the events as it found them.
"""

import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import httpx
import pytest

from assets.definitions import build_defs
from assets.partitions import partition_key
from simulator import Simulator, SimulatorConfig
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import EVENTS, event_assets

pytestmark = pytest.mark.slow
TODAY = datetime.now(UTC).date()
ZONE = "America/Los_Angeles"
FIRST, LAST = DAY - timedelta(days=1), DAY + timedelta(days=1, hours=23)
LOCAL_DAYS = [date(2026, 2, 28), date(2026, 3, 1)]  # the span's UTC day, seen from LA
ORG_ID = 100_438
USER_MEASURES = ("active_users", "new_users")


@pytest.fixture(scope="module")
def reconciled(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reconciled")
    config = SimulatorConfig(profile=SMALL.profile, events_per_member=SMALL.events_per_member,
                             first_hour=DAY, last_hour=DAY + timedelta(hours=23), timezone=ZONE,
                             merge_share=0.2, org_id=ORG_ID)
    with Simulator(config) as sim, dg.instance_for_test() as instance, \
            pytest.MonkeyPatch.context() as patch:
        env = {
            "AMPLITUDE_API_KEY": config.api_key, "AMPLITUDE_SECRET_KEY": config.secret_key,
            "AMPLITUDE_BASE_URL": sim.url, "AMPLITUDE_START": f"{FIRST:%Y-%m-%dT%H}",
            "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
            "LAKE_ROOT": str(tmp_path / "lake"), "AMPLITUDE_PROJECT_TIMEZONE": ZONE,
            "AMPLITUDE_COUNTS_DAYS": str((TODAY - FIRST.date()).days + 2),
            "AMPLITUDE_RECONCILE_SETTLE_HOURS": "2",
        }
        for key, value in env.items():
            patch.setenv(key, value)
        defs = build_defs(env)
        loaded = dg.materialize(event_assets(defs), resources=defs.resources, instance=instance,
                                tags={"dagster/asset_partition_range_start": partition_key(FIRST),
                                      "dagster/asset_partition_range_end": partition_key(LAST)})
        assert loaded.success
        wanted = {dg.AssetKey(["amplitude", n]) for n in ("daily_counts", "annotations")}
        snapshots = [a for a in defs.assets if set(a.keys) & wanted]
        assert dg.materialize(snapshots, resources=defs.resources, instance=instance,
                              partition_key=TODAY.isoformat()).success
        yield sim, defs, instance, tmp_path


def run_checks(defs, instance, job="amplitude_reconcile"):
    result = defs.resolve_job_def(job).execute_in_process(instance=instance,
                                                          resources=defs.resources)
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def set_merge_rows(sim, tmp_path, rows):
    """``amplitude.merge_ids`` holds exactly ``rows`` (as the simulator writes them: epoch ms),
    each filed under the upload hour of its ``merge_server_time`` and the organization's
    merged-ID file of that hour (Amplitude's storage layout)."""
    source = tmp_path / "merge-rows.json"
    source.write_text(json.dumps(rows))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("DELETE FROM amplitude.merge_ids")
        if rows:
            hour = "time_bucket(INTERVAL 1 HOUR, epoch_ms(merge_server_time))"
            con.execute(
                "INSERT INTO amplitude.merge_ids SELECT scope, epoch_ms(merge_time), "
                "epoch_ms(merge_server_time), amplitude_id, merged_amplitude_id, "
                f"{hour}::TIMESTAMPTZ, printf('-%d/-%d_%s_%d.json.gz', ?, ?, "
                f"strftime({hour}, '%Y-%m-%d'), hour({hour})) "
                "FROM read_json(?, columns = {scope: 'BIGINT', merge_time: 'BIGINT', "
                "merge_server_time: 'BIGINT', amplitude_id: 'BIGINT', "
                "merged_amplitude_id: 'BIGINT'})", [ORG_ID, ORG_ID, str(source)])
        assert con.execute("SELECT count(*) FROM amplitude.merge_ids").fetchone() == (len(rows),)


def served_counts(sim):
    counts = sim.daily_counts()
    return {"active_users": counts.active, "new_users": counts.new, "events": counts.total}


def day_annotations(sim, day):
    """What the simulator serves as the annotations overlapping the project's ``day``: from
    ``start`` to ``end`` (at ``start`` alone when ``end`` is null), named "label (category)"."""
    auth = (sim.config.api_key, sim.config.secret_key)
    notes = httpx.get(f"{sim.url}/api/3/annotations", auth=auth, timeout=30).json()["data"]
    begins = datetime.combine(day, time(), ZoneInfo(ZONE))
    ends = datetime.combine(day + timedelta(days=1), time(), ZoneInfo(ZONE))
    named = []
    for note in notes:
        start = datetime.fromisoformat(note["start"])
        end = datetime.fromisoformat(note["end"]) if note["end"] else start
        if start < ends and end >= begins:
            category = f" ({note['category']['name']})" if note["category"] else ""
            named.append((start, note["id"], note["label"] + category))
    return [name for *_, name in sorted(named)]


def test_settled_days_match_amplitude_exactly_counting_merged_users_once(reconciled):
    sim, defs, instance, tmp_path = reconciled
    rows = sim.merges()
    assert rows and all(r["scope"] == -ORG_ID for r in rows)
    set_merge_rows(sim, tmp_path, rows)
    checks = run_checks(defs, instance)
    for measure, count in served_counts(sim).items():
        check = checks[f"matches_amplitude_{measure}"]
        assert check.passed, check.description
        assert check.metadata["users_counted"].value == f"canonical ids ({len(rows)} merge rows)"
        per_day = check.metadata["per_day"].value
        assert sorted(per_day) == [d.isoformat() for d in LOCAL_DAYS]
        for day in LOCAL_DAYS:
            row = per_day[day.isoformat()]
            assert row["amplitude"] == count(day) > 0
            assert row["warehouse"] + row["late"] == count(day)
            assert "annotations" not in row  # only a mismatching day names them
        assert check.metadata["days_not_settled"].value > 0  # the snapshot's later days


def test_without_merge_rows_raw_ids_mismatch_and_the_day_names_its_annotations(reconciled):
    sim, defs, instance, tmp_path = reconciled
    set_merge_rows(sim, tmp_path, [])
    checks = run_checks(defs, instance)
    assert checks["matches_amplitude_events"].passed  # merges change users, never events
    served = served_counts(sim)
    for measure in USER_MEASURES:
        check = checks[f"matches_amplitude_{measure}"]
        assert not check.passed
        assert check.metadata["users_counted"].value == "raw amplitude_id (no merge data)"
        per_day = check.metadata["per_day"].value
        mismatched = [d for d in LOCAL_DAYS if not per_day[d.isoformat()]["matches"]]
        assert mismatched and check.metadata["days_mismatched"].value == len(mismatched)
        for day in mismatched:
            row, notes = per_day[day.isoformat()], day_annotations(sim, day)
            assert row["warehouse"] + row["late"] > served[measure](day)  # an id per merge
            assert notes and row["annotations"] == notes
            assert (f"{day}: {measure.replace('_', ' ')}: Amplitude {served[measure](day)}, "
                    f"warehouse {row['warehouse']}") in check.description
            assert f"[annotations: {', '.join(notes)}]" in check.description


def test_a_missing_hour_is_a_mismatch_naming_the_day_and_both_numbers(reconciled):
    sim, defs, instance, tmp_path = reconciled
    set_merge_rows(sim, tmp_path, sim.merges())
    hour = next(DAY + timedelta(hours=h) for h in range(8, 24)  # 2026-03-01 in LA
                if sim.hour_count(DAY + timedelta(hours=h)))
    local_day = f"timezone('{ZONE}', event_time)::DATE"
    warehouse = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(warehouse) as con:
        gone = dict(con.execute(f"SELECT {local_day}, count(*) FROM amplitude.events "
                                "WHERE _upload_hour = ? GROUP BY 1", [hour]).fetchall())
        con.execute("CREATE TABLE main.held AS SELECT * FROM amplitude.events "
                    "WHERE _upload_hour = ?", [hour])
        con.execute("DELETE FROM amplitude.events WHERE _upload_hour = ?", [hour])
    try:
        check = run_checks(defs, instance)["matches_amplitude_events"]
    finally:
        with duckdb.connect(warehouse) as con:
            con.execute("INSERT INTO amplitude.events SELECT * FROM main.held")
            con.execute("DROP TABLE main.held")
    gone = {day: n for day, n in gone.items() if day in LOCAL_DAYS}  # the settled days
    assert gone.get(date(2026, 3, 1))
    assert not check.passed
    assert check.metadata["days_mismatched"].value == len(gone)
    for day, count in gone.items():
        total = sim.daily_counts().total(day)
        assert f"{day}: events: Amplitude {total}, warehouse " in check.description
        per_day = check.metadata["per_day"].value[day.isoformat()]
        assert per_day["warehouse"] + per_day["late"] == total - count
        assert per_day["matches"] is False
        assert per_day["annotations"] == day_annotations(sim, day)


def test_freshness_warns_when_the_newest_hour_is_old(reconciled):
    _, defs, instance, _ = reconciled
    check = run_checks(defs, instance, job="amplitude_freshness")["fresh"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["newest_loaded_hour"].value == LAST.isoformat()
    assert "are the loads stopped?" in check.description
    assert check.asset_key == EVENTS
