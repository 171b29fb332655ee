"""One bad hour costs one hour: a range run loads every good hour and names the bad ones."""

from __future__ import annotations

import gzip
from datetime import timedelta

import dagster as dg

from assets.partitions import partition_key
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import (
    EVENTS,
    EVENTS_PARQUET,
    assert_hour_matches_served,
    make_project,
    partition_statuses,
)

H = timedelta(hours=1)
FIRST = DAY + 8 * H
HOURS = [FIRST + i * H for i in range(3)]
BAD = HOURS[1]

lake_project = make_project(SMALL)


def spoil_landing(project, hour, line: bytes = b'{"uuid": "cut short\n') -> None:
    """Append a malformed line to the first member of the hour's current landing."""
    landed = project.lake.landed(hour)
    member = project.lake.member_paths(landed)[0]
    with gzip.open(member, "ab") as out:
        out.write(line)


def test_a_bad_line_in_one_hour_of_a_range_fails_only_that_hour(lake_project):
    project = lake_project
    assert project.materialize(HOURS[0], HOURS[-1]).success
    requests = len(project.sim.export_requests())
    spoil_landing(project, BAD)
    result = project.materialize(HOURS[0], HOURS[-1], raise_on_error=False)

    assert not result.success
    failure = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert f"upload hour {BAD:%Y-%m-%dT%H}: normalize failed" in failure
    assert "1 of 3 upload hour(s) failed (the other 2 did not)" in failure
    # The landings are minutes old, so the re-run asked Amplitude for nothing.
    assert len(project.sim.export_requests()) == requests
    for hour in HOURS:  # the bad hour keeps the rows of its previous, good load
        assert_hour_matches_served(project, hour)
    statuses = partition_statuses(project, EVENTS)
    assert statuses["failed"] == {partition_key(BAD)}
    assert statuses["materialized"] == {partition_key(h) for h in HOURS}
    # The cause stays beside the landing for the operator and for later runs.
    note = project.lake.landing_dir(BAD) / "_refused-normalize.json"
    assert "does not fit the event schema" in note.read_text()


def test_a_load_never_takes_a_parquet_file_from_an_earlier_fetch(lake_project):
    project = lake_project
    """An hour re-fetched while its normalize failed must not load the old file under the new
    fetch's ledger row."""
    assert project.materialize(BAD).success
    old_version = project.lake.landed(BAD).version
    # A new fetch lands, then normalize refuses its data: the old Parquet file stays.
    assert project.materialize(BAD, refetch=True).success
    assert project.lake.landed(BAD).version != old_version
    spoil_landing(project, BAD)
    defs = project.defs()
    parquet_only = [a for a in defs.assets if EVENTS_PARQUET in a.keys]
    failed = dg.materialize(parquet_only, resources=defs.resources, instance=project.instance,
                            partition_key=partition_key(BAD), raise_on_error=False)
    assert not failed.success
    # The load alone, later: it sees the file was built from the previous landing's rows.
    load_only = [a for a in defs.assets if EVENTS in a.keys]
    loaded = dg.materialize(load_only, resources=defs.resources, instance=project.instance,
                            partition_key=partition_key(BAD), raise_on_error=False)
    assert not loaded.success
    assert "normalize failed" in str(loaded.get_step_failure_events()[0].event_specific_data.error)
    assert_hour_matches_served(project, BAD)  # the previous load's rows, untouched


def test_a_good_rerun_clears_the_refusal(lake_project):
    project = lake_project
    assert project.materialize(BAD).success
    spoil_landing(project, BAD)
    assert not project.materialize(BAD, raise_on_error=False).success
    assert (project.lake.landing_dir(BAD) / "_refused-normalize.json").exists()
    assert project.materialize(BAD, refetch=True).success  # a fresh, good fetch
    assert not (project.lake.landing_dir(BAD) / "_refused-normalize.json").exists()
    assert_hour_matches_served(project, BAD)
