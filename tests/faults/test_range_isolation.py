"""One bad hour costs one hour: a range run loads every good hour and names the bad ones."""

from __future__ import annotations

import gzip
from datetime import date, timedelta

import dagster as dg

from assets.partitions import partition_key
from pipeline.mixpanel import landing as mp_landing
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import (
    EVENTS,
    EVENTS_PARQUET,
    assert_hour_matches_served,
    failure_text,
    make_project,
    partition_statuses,
)
from tests.e2e.test_mixpanel import mp_project  # noqa: F401 - a fixture

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


# ---- the same for Mixpanel: one bad day costs one day ------------------------------------------

MP_FIRST = date(2026, 10, 30)
MP_DAYS = [MP_FIRST + timedelta(days=i) for i in range(3)]
MP_BAD = MP_DAYS[1]


def spoil_mixpanel_landing(project, day) -> None:
    """Append a line that is no event to the body the day's current landing holds (a gzip
    stream may hold several members: the reader reads on into the new one)."""
    landed = mp_landing.landed(project.lake, day)
    folder = project.lake.local(mp_landing.landing_dir(project.lake, day))
    body = folder / landed.version / landed.file
    data = body.read_bytes()  # a hard link may share the bytes with other days: write anew
    body.unlink()
    body.write_bytes(data + gzip.compress(b'{"event": 7, "properties": []}\n'))


def test_a_bad_line_in_one_day_of_a_mixpanel_range_fails_only_that_day(mp_project):  # noqa: F811
    project = mp_project
    project.mixpanel_config["max_window_days"] = 1  # a body per day, as a re-fetch lands them
    first, last = MP_DAYS[0], MP_DAYS[-1]
    assert project.materialize(first, last).success
    loaded = {d: rows_of_day(project, d) for d in MP_DAYS}
    spoil_mixpanel_landing(project, MP_BAD)
    defs = project.defs()
    keys = {dg.AssetKey(["mixpanel", "events_parquet"]), dg.AssetKey(["mixpanel", "events"])}
    result = dg.materialize(
        [a for a in defs.assets if set(a.keys) & keys], resources=project.resources(defs),
        instance=project.instance, raise_on_error=False,
        tags={"dagster/asset_partition_range_start": first.isoformat(),
              "dagster/asset_partition_range_end": last.isoformat()})
    assert not result.success
    failure = failure_text(result)
    assert f"Mixpanel day {MP_BAD}: normalize failed" in failure
    assert "is not an object with a properties object" in failure
    assert "1 of 3 day(s) failed (the other 2 did not)" in failure
    for day in MP_DAYS:  # the good days reloaded, the bad one keeps its previous rows
        assert rows_of_day(project, day) == loaded[day]
    statuses = partition_statuses(project, dg.AssetKey(["mixpanel", "events"]))
    assert statuses["failed"] == {MP_BAD.isoformat()}
    assert statuses["materialized"] == {d.isoformat() for d in MP_DAYS}
    # the load alone, later, still refuses the day: the note stays beside its landing
    load = [a for a in defs.assets if dg.AssetKey(["mixpanel", "events"]) in a.keys]
    again = dg.materialize(load, resources=project.resources(defs), instance=project.instance,
                           partition_key=MP_BAD.isoformat(), raise_on_error=False)
    assert not again.success
    assert f"Mixpanel day {MP_BAD}: normalize failed" in failure_text(again)
    assert rows_of_day(project, MP_BAD) == loaded[MP_BAD]


def rows_of_day(project, day) -> list[tuple]:
    with project.warehouse() as con:
        return sorted(con.execute("SELECT event, distinct_id, insert_id, time, properties "
                                  "FROM mixpanel.events WHERE _day = ?", [day]).fetchall())


def test_a_mixpanel_load_never_takes_a_file_from_an_earlier_fetch(mp_project):  # noqa: F811
    project = mp_project
    assert project.materialize(MP_BAD).success
    before = rows_of_day(project, MP_BAD)
    defs = project.defs()
    raw = [a for a in defs.assets if dg.AssetKey(["mixpanel", "raw_export"]) in a.keys]
    assert dg.materialize(raw, resources=project.resources(defs), instance=project.instance,
                          partition_key=MP_BAD.isoformat()).success  # a new landing, unparsed
    load = [a for a in defs.assets if dg.AssetKey(["mixpanel", "events"]) in a.keys]
    again = dg.materialize(load, resources=project.resources(defs), instance=project.instance,
                           partition_key=MP_BAD.isoformat(), raise_on_error=False)
    assert not again.success
    assert "its Parquet file was built from landing" in failure_text(again)
    assert rows_of_day(project, MP_BAD) == before
