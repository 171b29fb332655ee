"""Events from Amplitude's storage export, through the real Dagster definitions: the simulator
writes the documented layout into a real S3 server (SeaweedFS on 127.0.0.1), the assets land,
normalize and load it, and every hour is compared field for field with what the bucket holds.
With CI=true a missing server fails."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from simulator import S3Bucket, Simulator
from simulator import StorageExport as Writer
from tests.conftest import DAY, EMPTY_HOURS, SMALL
from tests.e2e.conftest import (
    EVENTS,
    RAW_EXPORT,
    Project,
    assert_hour_matches_served,
    failure_text,
    hour_metadata,
    partition_statuses,
    warehouse_uuids,
)
from tests.servers.seaweed import SeaweedS3

APP = SMALL.project_id
BUSY = [DAY + timedelta(hours=h) for h in range(6, 12)]  # hours with events in SMALL's profile


@dataclass
class Storage:
    project: Project
    writer: Writer
    prefix: str

    def lines(self, hour: datetime) -> list[bytes]:
        return list(self.writer.hour_lines(hour))

    def use_api(self) -> None:
        for name in ("AMPLITUDE_EVENTS_FROM",):
            self.project.extra_env[name] = "api"

    def use_storage(self) -> None:
        self.project.extra_env["AMPLITUDE_EVENTS_FROM"] = "storage"


@pytest.fixture
def storage(seaweed_s3: SeaweedS3, tmp_path, monkeypatch) -> Iterator[Storage]:
    prefix = f"exports/{uuid.uuid4().hex[:10]}"
    bucket = S3Bucket(seaweed_s3.endpoint_url, seaweed_s3.bucket, seaweed_s3.key_id,
                      seaweed_s3.secret)
    with Simulator(SMALL) as sim, dg.instance_for_test() as instance:
        project = Project(sim, tmp_path, instance, extra_env={
            "AMPLITUDE_EVENTS_FROM": "storage",
            "AMPLITUDE_STORAGE_URL": f"s3://{seaweed_s3.bucket}/{prefix}",
            "AMPLITUDE_PROJECT_ID": str(APP), **seaweed_s3.amplitude_storage_env()})
        for name, value in project.env.items():
            monkeypatch.setenv(name, value)
        writer = Writer(SMALL, bucket, prefix=prefix, events_per_part=9, first_part_number=1,
                        merged_ids="legacy")
        yield Storage(project, writer, prefix)


def ledger(project: Project) -> dict[datetime, tuple]:
    with project.warehouse() as con:
        return {hour: rest for hour, *rest in con.execute(
            "SELECT upload_hour, source, objects, rows_added, rows_removed, rows_changed "
            "FROM amplitude._loads ORDER BY 1").fetchall()}


def test_a_range_loads_every_hour_from_the_bucket_field_for_field(storage):
    empty = EMPTY_HOURS[0]  # an hour without events: its marker alone
    assert empty + timedelta(hours=1) == BUSY[0]
    storage.writer.deliver([empty, *BUSY], metadata=True)
    result = storage.project.materialize(empty, BUSY[-1])
    assert result.success
    for hour in BUSY:
        assert_hour_matches_served(storage.project, hour, storage.lines(hour))
    loads = ledger(storage.project)
    assert loads[empty][:2] == ["storage", []]
    listing = storage.writer.s3.list_objects_v2(Bucket=storage.writer.bucket.bucket,
                                                Prefix=f"{storage.prefix}/{APP}/")["Contents"]
    for hour in BUSY:
        stem = f"{storage.prefix}/{APP}/{APP}_{hour:%Y-%m-%d}_{hour.hour}#"
        parts = {o["Key"]: o["ETag"] for o in listing if o["Key"].startswith(stem)}
        source, objects, added, removed, changed = loads[hour]
        assert source == "storage" and len(parts) == -(-SMALL.hour_count(hour) // 9)
        assert {o["key"]: o["etag"] for o in objects} == parts
        assert (added, removed, changed) == (SMALL.hour_count(hour), 0, 0)
    again = storage.project.materialize(BUSY[0], BUSY[-1])  # nothing changed: nothing read
    assert all("reused_landing" in m for m in hour_metadata(again, RAW_EXPORT).values())


def test_an_hour_without_its_marker_fails_naming_it_and_the_rest_of_the_range_loads(storage):
    first, late, last = BUSY[0], BUSY[1], BUSY[2]
    storage.writer.deliver([first, last])
    storage.writer.write_parts(late, only=1)  # a delivery under way: one part, no marker
    result = storage.project.materialize(first, last, raise_on_error=False)
    assert not result.success
    marker = f"{APP}_{late:%Y-%m-%d}_{late.hour}_complete"
    assert marker in failure_text(result) and "not loaded half" in failure_text(result)
    for hour in (first, last):
        assert_hour_matches_served(storage.project, hour, storage.lines(hour))
    with storage.project.warehouse() as con:
        assert warehouse_uuids(con, late) == []
    statuses = partition_statuses(storage.project, EVENTS)
    assert statuses["failed"] == {f"{late:%Y-%m-%d-%H}:00"}
    storage.writer.deliver([late])  # the rest of it, then the marker
    assert storage.project.materialize(late).success
    assert_hour_matches_served(storage.project, late, storage.lines(late))


def test_a_backfill_by_amplitude_replaces_the_hour_whole_with_its_changes_counted(storage):
    hour = BUSY[0]
    storage.writer.deliver([hour])
    assert storage.project.materialize(hour).success
    before = SMALL.hour_count(hour)
    storage.writer.backfill(hour, events_per_part=4, added=3, removed=(0, 5))
    result = storage.project.materialize(hour)
    assert result.success
    assert_hour_matches_served(storage.project, hour, storage.lines(hour))
    _, objects, added, removed, changed = ledger(storage.project)[hour]
    assert len(objects) == -(-(before + 3 - 2) // 4) and (added, removed, changed) == (3, 2, 0)
    # A rewrite that holds far fewer rows is refused, and the loaded rows stay.
    storage.writer.backfill(hour, removed=range(before))
    refused = storage.project.materialize(hour, raise_on_error=False)
    assert not refused.success and "accept_row_drops" in failure_text(refused)
    with storage.project.warehouse() as con:
        assert len(warehouse_uuids(con, hour)) == before + 1


def test_switching_from_the_api_to_the_storage_export_and_back_keeps_every_hour(storage):
    api_hours, stored, back = BUSY[:3], BUSY[2:5], BUSY[5:]
    storage.use_api()
    assert storage.project.materialize(api_hours[0], api_hours[-1]).success
    storage.use_storage()
    storage.writer.deliver(stored)  # the export starts at BUSY[2]: it has no earlier hour
    assert storage.project.materialize(stored[0], stored[-1]).success
    storage.use_api()
    assert storage.project.materialize(back[0], back[-1]).success
    sources = {h: row[0] for h, row in ledger(storage.project).items()}
    assert sources == {**{h: "api" for h in api_hours}, **{h: "storage" for h in stored},
                       **{h: "api" for h in back}}
    for hour in BUSY:  # each hour once, as served: no duplicates, no gaps
        assert_hour_matches_served(storage.project, hour)
    # An API hour the bucket does not hold fails in storage mode and keeps its rows.
    storage.use_storage()
    result = storage.project.materialize(api_hours[0], raise_on_error=False)
    assert not result.success and "completion marker" in failure_text(result)
    assert_hour_matches_served(storage.project, api_hours[0])


def test_the_sensor_asks_once_for_each_batch_of_finished_or_rewritten_hours(storage):
    defs = storage.project.defs()
    sensor = defs.resolve_sensor_def("amplitude_storage_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.minimum_interval_seconds == 60
    assert "amplitude_hourly_schedule" not in {s.name for s in defs.schedules or []}
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    recent = [now - timedelta(hours=h) for h in (6, 5, 4, 2, 1)]
    writer = Writer(storage.writer.config, storage.writer.bucket, prefix=storage.prefix,
                    events_per_part=9)
    writer.deliver(recent, unmarked=[recent[-1]])

    def tick(cursor: str | None):  # as the daemon evaluates it, resources from the context
        with dg.build_sensor_context(instance=storage.project.instance, cursor=cursor,
                                     resources=defs.resources) as context:
            return sensor.evaluate_tick(context)

    first = tick(None)
    ranges = [(r.tags["dagster/asset_partition_range_start"],
               r.tags["dagster/asset_partition_range_end"]) for r in first.run_requests]
    key = "%Y-%m-%d-%H:%M"
    assert ranges == [(recent[0].strftime(key), recent[2].strftime(key)),
                      (recent[3].strftime(key), recent[3].strftime(key))]
    assert tick(first.cursor).run_requests == []  # asked once, never again meanwhile
    writer.write_marker(recent[-1])
    writer.backfill(recent[1], events_per_part=5, added=7)
    later = tick(first.cursor)
    assert sorted((r.tags["dagster/asset_partition_range_start"],
                   r.tags["dagster/asset_partition_range_end"]) for r in later.run_requests) == [
        (recent[1].strftime(key), recent[1].strftime(key)),
        (recent[4].strftime(key), recent[4].strftime(key))]
    assert json.loads(later.cursor).keys() >= {h.strftime(key) for h in recent}
