"""Snapshot checks: every day non-empty and unique on its key, and each can fail."""

from datetime import date

import dagster as dg
import duckdb
import pytest

from assets.amplitude.snapshots import KEYS, check_day, day_checks
from assets.range_run import RangeRun
from tests.e2e.test_snapshots import TODAY, materialize, project  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow


def test_a_snapshot_reports_both_checks_passing(project):  # noqa: F811
    _, env, _ = project
    with dg.instance_for_test() as instance:
        result = materialize(env, ["cohorts", "taxonomy_event_types"], TODAY, instance)
    checks = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    for table in ("cohorts", "taxonomy_event_types"):
        assert checks[(table, "non_empty")].passed
        assert checks[(table, "non_empty")].metadata["rows"].value > 0
        assert checks[(table, "keys_unique")].passed


def checked(con, table, day):
    """The step's check results of a one-day run that loaded ``day`` of ``table``."""
    run = RangeRun(dg.build_asset_context(), dg.AssetKey(["amplitude", table]), [str(day)],
                   unit="day", checks=day_checks(table))
    check_day(run, con, "amplitude", table, day)
    run.ok(str(day))
    return {r.check_name: r for r in run.finish().check_results}


@pytest.mark.parametrize("table", sorted(KEYS))
def test_each_table_fails_on_a_repeated_key_and_warns_when_empty(table):
    day, other = date(2026, 3, 1), date(2026, 3, 2)
    columns = ", ".join(f'"{k}" VARCHAR' for k in KEYS[table])
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA amplitude")
        con.execute(f"CREATE TABLE amplitude.{table} (snapshot_date DATE, {columns})")
        row = ", ".join("'x'" for _ in KEYS[table])
        con.execute(f"INSERT INTO amplitude.{table} VALUES (?, {row}), (?, {row})", [day, day])
        results = checked(con, table, day)
        assert not results["keys_unique"].passed
        assert results["keys_unique"].metadata["duplicate_keys"].value == 1
        assert results["keys_unique"].severity == dg.AssetCheckSeverity.ERROR
        assert results["non_empty"].passed
        result = checked(con, table, other)["non_empty"]
        assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
        assert result.metadata["rows"].value == 0
        assert result.metadata["failing_days"].value == str(other)
