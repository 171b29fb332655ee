"""Materialize the real assets through Dagster against the simulator over HTTP on 127.0.0.1."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from assets.partitions import partition_key, upload_hour_partitions
from pipeline.amplitude.hour_checks import SPECS as HOUR_CHECKS
from pipeline.amplitude.schema import KNOWN_KEYS
from pipeline.hours import last_ready_hour
from simulator import Fault
from tests.conftest import DAY, EMPTY_HOURS, SMALL
from tests.e2e.conftest import (
    EVENTS,
    EVENTS_PARQUET,
    RAW_EXPORT,
    assert_hour_matches_served,
    hour_metadata,
    make_project,
    partition_statuses,
)

H = timedelta(hours=1)
BUSY = DAY + 8 * H


def test_one_hour_lands_normalizes_and_loads_every_field(project):
    result = project.materialize(BUSY)
    assert result.success
    assert_hour_matches_served(project, BUSY)
    landed = project.lake.landed(BUSY)
    member_files = project.lake.member_paths(landed)
    members = [m.name for m in landed.members]
    assert len(members) == -(-project.sim.hour_count(BUSY) // SMALL.events_per_member) > 1
    parquet = project.lake.events_file(BUSY)
    assert parquet.relative_to(project.root / "lake").as_posix() == (
        "amplitude/events/upload_date=2026-03-01/upload_hour=08/events.parquet")
    with project.warehouse() as con:
        assert sorted(r[0] for r in con.execute(
            "SELECT DISTINCT _source_member FROM amplitude.events").fetchall()) == members
        assert members[0] == "636686/636686_2026-03-01_8#0.json.gz"
        ledger = con.execute("SELECT rows, archive_members, bytes_downloaded, request_window, "
                             "window_requests FROM amplitude._loads").fetchall()
    assert ledger == [(project.sim.hour_count(BUSY), len(members),
                       sum(p.stat().st_size for p in member_files),
                       "20260301T08..20260301T08", 1)]
    meta = hour_metadata(result, EVENTS)[partition_key(BUSY)]
    assert meta["dagster/row_count"] == project.sim.hour_count(BUSY)
    assert meta["archive_members"] == len(members) and meta["requests"] == 1
    assert meta["bytes_downloaded"] > 0 and meta["fetch_seconds"] >= 0
    checks = {(c.check_name, c.partition): c.passed for c in result.get_asset_check_evaluations()}
    drift = any(set(json.loads(raw)) - KNOWN_KEYS for raw in project.sim.hour_lines(BUSY))
    assert checks == {(spec.name, partition): spec.name != "no_schema_drift" or not drift
                      for spec in HOUR_CHECKS for partition in (partition_key(BUSY),)}


def test_a_day_is_one_request_and_each_hour_lands_in_its_own_partition(project):
    last = DAY + 23 * H
    result = project.materialize(DAY, last)
    assert result.success
    assert [r.params for r in project.sim.export_requests()] == [
        {"start": "20260301T00", "end": "20260301T23"}]
    for hour in [DAY + i * H for i in range(24)]:
        assert_hour_matches_served(project, hour)
    meta = hour_metadata(result, EVENTS)
    assert len(meta) == 24
    assert {k: m["dagster/row_count"] for k, m in meta.items()} == {
        partition_key(DAY + i * H): project.sim.hour_count(DAY + i * H) for i in range(24)}
    assert len({m["dagster/row_count"] for m in meta.values()}) > 5  # not one total repeated
    for empty in EMPTY_HOURS:
        assert meta[partition_key(empty)]["dagster/row_count"] == 0
        assert meta[partition_key(empty)]["archive_members"] == 0
    raw = hour_metadata(result, RAW_EXPORT)
    assert sum(m["bytes_downloaded"] for m in raw.values()) > 0
    assert sum(m["requests"] for m in raw.values()) == pytest.approx(1.0, abs=0.01)
    assert {m["request_window"] for m in raw.values()} == {"20260301T00..20260301T23"}


def test_rerunning_hours_and_ranges_leaves_exactly_the_same_rows(project):
    last = DAY + 5 * H
    project.materialize(DAY, last)
    with project.warehouse() as con:
        first = con.execute("SELECT * FROM amplitude.events ORDER BY uuid").fetchall()
    project.materialize(DAY + 2 * H)
    project.materialize(DAY, last)
    project.materialize(DAY + H, DAY + 3 * H)
    with project.warehouse() as con:
        assert con.execute("SELECT * FROM amplitude.events ORDER BY uuid").fetchall() == first
        assert con.execute("SELECT count(*) FROM amplitude._loads").fetchone() == (6,)
    assert len(first) == sum(project.sim.hour_count(DAY + i * H) for i in range(6))


def test_an_empty_hour_materializes_with_zero_rows(project):
    empty = EMPTY_HOURS[0]
    result = project.materialize(empty)
    assert result.success
    assert [r.status for r in project.sim.export_requests()] == [404]
    assert hour_metadata(result, EVENTS_PARQUET)[partition_key(empty)]["dagster/row_count"] == 0
    assert project.lake.events_file(empty) is not None
    with project.warehouse() as con:
        assert con.execute("SELECT rows FROM amplitude._loads").fetchall() == [(0,)]


def test_transient_faults_are_retried_inside_the_run(project):
    project.sim.inject(Fault.status(503), Fault.truncate(0.3), Fault.corrupt())
    result = project.materialize(DAY + 10 * H, DAY + 12 * H)
    assert result.success
    assert len(project.sim.export_requests()) == 4
    for hour in (DAY + 10 * H, DAY + 11 * H, DAY + 12 * H):
        assert_hour_matches_served(project, hour)
    meta = hour_metadata(result, EVENTS)
    assert sum(meta[partition_key(DAY + i * H)]["requests"] for i in (10, 11, 12)) == \
        pytest.approx(4, abs=0.01)


timeouts_project = make_project(replace(SMALL, max_hours_before_504=5))


def test_windows_that_time_out_are_halved_and_still_land_per_hour(timeouts_project):
    project = timeouts_project
    result = project.materialize(DAY, DAY + 23 * H)
    assert result.success
    statuses = [r.status for r in project.sim.export_requests()]
    # 24 hours → 504; 2 × 12 → 504; 4 × 6 → 504; 8 × 3 → served
    assert statuses.count(504) == 7 and len(statuses) == 15
    for hour in [DAY + i * H for i in range(24)]:
        assert_hour_matches_served(project, hour)


size_cap_project = make_project(replace(SMALL, size_cap_bytes=150_000))


def test_windows_over_the_size_cap_are_halved(size_cap_project):
    project = size_cap_project
    result = project.materialize(DAY, DAY + 23 * H)
    assert result.success
    assert 400 in [r.status for r in project.sim.export_requests()]
    for hour in [DAY + i * H for i in range(24)]:
        assert_hour_matches_served(project, hour)


def test_bad_credentials_fail_clearly_lose_nothing_and_leak_nothing(project, monkeypatch):
    project.materialize(BUSY)
    with project.warehouse() as con:
        before = con.execute("SELECT * FROM amplitude.events ORDER BY uuid").fetchall()
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", "a-wrong-secret-value")
    result = project.materialize(BUSY, raise_on_error=False, refetch=True)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert "AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY" in failure.to_string()
    with project.warehouse() as con:
        assert con.execute("SELECT * FROM amplitude.events ORDER BY uuid").fetchall() == before
    records = project.instance.get_records_for_run(result.run_id).records
    logged = "\n".join(str(r.event_log_entry) for r in records)
    assert "a-wrong-secret-value" not in logged and project.sim.config.api_key not in logged


def test_schedule_is_off_by_default_and_targets_the_hourly_job(project):
    defs = project.defs()
    schedule = defs.resolve_schedule_def("amplitude_hourly_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.job_name == "amplitude_hourly"
    job = defs.resolve_job_def("amplitude_hourly")
    assert set(job.asset_layer.executable_asset_keys) == {RAW_EXPORT, EVENTS_PARQUET, EVENTS}


@pytest.mark.parametrize("lag, newest", [(0, "2026-03-08-09:00"), (2, "2026-03-08-07:00"),
                                         (5, "2026-03-08-04:00")])
def test_the_newest_partition_is_the_newest_ready_hour(lag, newest):
    partitions = upload_hour_partitions(DAY, lag)
    at = datetime(2026, 3, 8, 10, 20, tzinfo=UTC)
    with dg.partition_loading_context(effective_dt=at):
        assert partitions.get_last_partition_key() == newest
    assert partition_key(last_ready_hour(at, lag)) == newest


def test_the_resolved_resource_does_not_show_its_keys(project):
    resource = project.defs().resources["amplitude"]
    assert "sim-secret-key" not in repr(resource.process_config_and_initialize())


def test_a_week_backfill_costs_seven_export_requests(project):
    first = DAY - timedelta(days=1)
    result = project.materialize(first, first + timedelta(days=7) - H)
    assert result.success
    requests = project.sim.export_requests()
    assert len(requests) == 7
    assert [r.params["start"] for r in requests] == [
        f"{first + timedelta(days=d):%Y%m%dT%H}" for d in range(7)]
    with project.warehouse() as con:
        assert con.execute("SELECT count(*) FROM amplitude._loads").fetchone() == (168,)
        loaded = con.execute("SELECT count(*) FROM amplitude.events").fetchone()[0]
    assert loaded == sum(project.sim.hour_count(first + i * H) for i in range(168))


def test_an_empty_refetch_keeps_the_loaded_rows_and_fails_only_that_hour(project):
    project.extra_env["AMPLITUDE_MAX_WINDOW_HOURS"] = "1"  # one request an hour
    first, second = BUSY, BUSY + H
    project.materialize(first, second)
    loaded = {h: project.sim.hour_count(h) for h in (first, second)}
    project.sim.inject(Fault.status(404))  # the re-fetch of the first hour answers "no data"
    result = project.materialize(first, second, raise_on_error=False, refetch=True)
    assert not result.success
    failure = str(result.all_events)
    assert (f"upload hour {first:%Y-%m-%dT%H}: the new fetch holds 0 rows where "
            f"{loaded[first]} are loaded") in failure and "accept_row_drops" in failure
    with project.warehouse() as con:
        kept = dict(con.execute("SELECT _upload_hour, count(*) FROM amplitude.events "
                                "GROUP BY 1").fetchall())
        ledger = dict(con.execute("SELECT upload_hour, rows FROM amplitude._loads").fetchall())
    assert kept == loaded == ledger  # nothing lost; the second hour re-loaded as before
    assert partition_statuses(project, EVENTS) == {
        "materialized": {partition_key(first), partition_key(second)},
        "failed": {partition_key(first)}}  # the first hour's latest run failed it
    # The operator accepts that Amplitude holds nothing for the hour now.
    project.sim.inject(Fault.status(404))
    accepted = project.materialize(first, run_config={"ops": {"amplitude__events": {
        "config": {"accept_row_drops": True}}}}, refetch=True)
    assert accepted.success
    with project.warehouse() as con:
        assert con.execute("SELECT count(*) FROM amplitude.events WHERE _upload_hour = ?",
                           [first]).fetchone() == (0,)


def test_a_permanent_load_error_fails_at_once_without_retries(project):
    project.materialize(BUSY)
    with duckdb.connect(str(project.root / "warehouse.duckdb")) as con:  # edited by hand: no
        con.execute("ALTER TABLE amplitude.events ADD COLUMN by_hand INTEGER")  # retry can fix
    result = project.materialize(BUSY, raise_on_error=False)
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in kinds
    assert "unexpected ['by_hand']" in str(result.all_events)
