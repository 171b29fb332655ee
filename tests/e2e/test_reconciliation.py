"""The warehouse against Amplitude's own daily counts, and the freshness check."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import duckdb
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


@pytest.fixture
def reconciled(tmp_path, monkeypatch):
    config = SimulatorConfig(profile=SMALL.profile, events_per_member=SMALL.events_per_member,
                             first_hour=DAY, last_hour=DAY + timedelta(hours=23), timezone=ZONE)
    with Simulator(config) as sim, dg.instance_for_test() as instance:
        env = {
            "AMPLITUDE_API_KEY": config.api_key, "AMPLITUDE_SECRET_KEY": config.secret_key,
            "AMPLITUDE_BASE_URL": sim.url, "AMPLITUDE_START": f"{FIRST:%Y-%m-%dT%H}",
            "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
            "LAKE_ROOT": str(tmp_path / "lake"), "AMPLITUDE_PROJECT_TIMEZONE": ZONE,
            "AMPLITUDE_COUNTS_DAYS": str((TODAY - FIRST.date()).days + 2),
            "AMPLITUDE_RECONCILE_SETTLE_HOURS": "2",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        defs = build_defs(env)
        loaded = dg.materialize(event_assets(defs), resources=defs.resources, instance=instance,
                                tags={"dagster/asset_partition_range_start": partition_key(FIRST),
                                      "dagster/asset_partition_range_end": partition_key(LAST)})
        assert loaded.success
        counts = [a for a in defs.assets if dg.AssetKey(["amplitude", "daily_counts"]) in a.keys]
        assert dg.materialize(counts, resources=defs.resources, instance=instance,
                              partition_key=TODAY.isoformat()).success
        yield sim, defs, instance, tmp_path


def run_checks(defs, instance, job="amplitude_reconcile"):
    result = defs.resolve_job_def(job).execute_in_process(instance=instance,
                                                          resources=defs.resources)
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_settled_days_match_amplitude_exactly(reconciled):
    sim, defs, instance, _ = reconciled
    checks = run_checks(defs, instance)
    expected = sim.daily_counts()
    served = {"active_users": expected.active, "new_users": expected.new,
              "events": expected.total}
    for measure, count in served.items():
        check = checks[f"matches_amplitude_{measure}"]
        assert check.passed, check.description
        per_day = check.metadata["per_day"].value
        assert sorted(per_day) == [d.isoformat() for d in LOCAL_DAYS]
        for day in LOCAL_DAYS:
            row = per_day[day.isoformat()]
            assert row["amplitude"] == count(day) > 0
            assert row["warehouse"] + row["late"] == count(day)
        assert check.metadata["days_not_settled"].value > 0  # the snapshot's later days


def test_a_missing_hour_is_a_mismatch_naming_the_day_and_both_numbers(reconciled):
    sim, defs, instance, tmp_path = reconciled
    hour = next(DAY + timedelta(hours=h) for h in range(8, 24)  # 2026-03-01 in LA
                if sim.hour_count(DAY + timedelta(hours=h)))
    local_day = f"timezone('{ZONE}', event_time)::DATE"
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        gone = dict(con.execute(f"SELECT {local_day}, count(*) FROM amplitude.events "
                                "WHERE _upload_hour = ? GROUP BY 1", [hour]).fetchall())
        con.execute("DELETE FROM amplitude.events WHERE _upload_hour = ?", [hour])
    gone = {day: n for day, n in gone.items() if day in LOCAL_DAYS}  # the settled days
    assert gone.get(date(2026, 3, 1))
    check = run_checks(defs, instance)["matches_amplitude_events"]
    assert not check.passed
    assert check.metadata["days_mismatched"].value == len(gone)
    for day, count in gone.items():
        total = sim.daily_counts().total(day)
        assert f"{day}: events: Amplitude {total}, warehouse " in check.description
        per_day = check.metadata["per_day"].value[day.isoformat()]
        assert per_day["warehouse"] + per_day["late"] == total - count
        assert per_day["matches"] is False


def test_freshness_warns_when_the_newest_hour_is_old(reconciled):
    _, defs, instance, _ = reconciled
    check = run_checks(defs, instance, job="amplitude_freshness")["fresh"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["newest_loaded_hour"].value == LAST.isoformat()
    assert "are the loads stopped?" in check.description
    assert check.asset_key == EVENTS
