"""The operators' checks on amplitude/events: one result per upload hour, and each can fail."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from datetime import timedelta

import dagster as dg

from assets.partitions import partition_key
from pipeline.amplitude.hour_checks import SPECS, check_hour
from pipeline.amplitude.load import LoadRecord
from tests.conftest import DAY, amplitude_warehouse
from tests.e2e.conftest import Project
from tests.expected import AMPLITUDE_KEYS

H = timedelta(hours=1)
FIRST = DAY + 8 * H
SECOND = FIRST + H


def append_lines(project: Project, hour, lines: list[dict]) -> None:
    member = project.lake.member_paths(project.lake.landed(hour))[0]
    with gzip.open(member, "ab") as out:
        for line in lines:
            out.write(json.dumps(line).encode() + b"\n")


def first_line(project: Project, hour) -> dict:
    return json.loads(next(project.sim.hour_lines(hour)))


def per_hour(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str | None], bool]:
    return {(e.check_name, e.partition): e.passed for e in result.get_asset_check_evaluations()}


def test_every_check_reports_every_hour_of_a_range(project):
    result = project.materialize(FIRST, SECOND)
    assert result.success
    results = per_hour(result)
    for spec in SPECS:
        for hour in (FIRST, SECOND):
            assert (spec.name, partition_key(hour)) in results
        assert (spec.name, None) in results  # the range's summary
    one = per_hour(project.materialize(FIRST))
    assert set(one) == {(spec.name, partition_key(FIRST)) for spec in SPECS}


def test_a_spoiled_hour_fails_its_checks_and_only_its_own(project):
    assert project.materialize(FIRST, SECOND).success
    line = first_line(project, SECOND)
    stray = dict(line, uuid="00000000-0000-4000-8000-000000000001", brand_new_field=1,
                 server_upload_time="2026-03-01 14:00:00.000000")
    append_lines(project, SECOND, [line, stray])  # a duplicate uuid, a misfiled row, a new field
    result = project.materialize(FIRST, SECOND)
    assert result.success  # warnings, not failures
    results = per_hour(result)
    second, first = partition_key(SECOND), partition_key(FIRST)
    for name in ("uuid_unique_per_hour", "upload_time_in_hour"):
        assert results[(name, second)] is False and results[(name, first)] is True, name
        summary = next(e for e in result.get_asset_check_evaluations()
                       if e.check_name == name and e.partition is None)
        assert summary.metadata["failing_hours"].value == second
        assert summary.severity == dg.AssetCheckSeverity.WARN
    assert results[("no_schema_drift", second)] is False
    drift = next(e for e in result.get_asset_check_evaluations()
                 if e.check_name == "no_schema_drift" and e.partition == second)
    assert "brand_new_field" in drift.metadata["new_fields"].value.split(", ")


def test_schema_drift_names_exactly_the_fields_the_simulator_added(project):
    result = project.materialize(FIRST, SECOND)
    for hour in (FIRST, SECOND):
        added = sorted({key for raw in project.sim.hour_lines(hour) for key in json.loads(raw)
                        if key not in AMPLITUDE_KEYS})
        drift = next(e for e in result.get_asset_check_evaluations()
                     if e.check_name == "no_schema_drift" and e.partition == partition_key(hour))
        assert drift.passed == (not added)
        assert drift.metadata["new_fields"].value == ", ".join(added)


def test_an_accepted_drop_still_shows_as_a_warning(project):
    assert project.materialize(FIRST).success
    served = project.sim.hour_count(FIRST)
    project.sim.config = replace(project.sim.config, hour_counts={FIRST: served // 2})
    project.sim.clear_cache()
    result = project.materialize(FIRST, refetch=True, run_config={"ops": {"amplitude__events": {
        "config": {"accept_row_drops": True}}}})
    assert result.success
    drop = next(e for e in result.get_asset_check_evaluations()
                if e.check_name == "no_row_drop" and e.partition == partition_key(FIRST))
    assert not drop.passed
    assert drop.metadata["previous_rows"].value == served
    assert drop.metadata["rows_dropped"].value == served - served // 2


def test_rows_that_differ_from_the_file_and_the_ledger_fail_the_check(project):
    assert project.materialize(FIRST).success
    warehouse = amplitude_warehouse(project.root / "warehouse.duckdb")
    with warehouse.connect() as con:
        con.execute("DELETE FROM amplitude.events WHERE uuid = (SELECT min(uuid) FROM "
                    "amplitude.events)")  # as a stray DELETE by hand would
        loads = con.execute("SELECT rows FROM amplitude._loads").fetchone()
        outcomes = {o.name: o for o in check_hour(
            con, "amplitude", FIRST, project.lake.events_file(FIRST),
            LoadRecord(upload_hour=FIRST, archive_members=1, bytes_downloaded=1,
                       request_window="w", window_requests=1, fetch_seconds=0.0,
                       rows=loads[0], rows_added=loads[0]), max_drop_share=0.1)}
    match = outcomes["rows_match_parquet_and_ledger"]
    assert not match.passed
    assert match.metadata["duckdb_rows"] == loads[0] - 1
    assert match.metadata["parquet_rows"] == match.metadata["ledger_rows"] == loads[0]
