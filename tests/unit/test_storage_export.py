"""Reading Amplitude's storage export from a real S3 server (SeaweedFS on 127.0.0.1; with
CI=true a missing server fails): which keys are parts, when an hour is ready, and that an hour
whose objects move while they are read is refused, never landed mixed. The bucket is written by
the simulator's storage-export writer; the expected keys come from the documented layout."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.amplitude.archive import ArchiveError, MemberRefused
from pipeline.amplitude.bucket_reader import StorageLocation
from pipeline.amplitude.landing import AmplitudeLake
from pipeline.amplitude.storage_export import HourChanged, StorageExport
from pipeline.bucket_access import BucketAccess, BucketError
from simulator import HourProfile, S3Bucket, SimulatorConfig
from simulator import StorageExport as Writer
from tests.servers.seaweed import SeaweedS3

APP = 636686
DAY = datetime(2026, 3, 6, tzinfo=UTC)
CONFIG = SimulatorConfig(profile=HourProfile(base=30), events_per_member=10)
H1, H2, H3 = (DAY + timedelta(hours=h) for h in (1, 2, 3))


@pytest.fixture
def prefix() -> str:
    return f"exports/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def writer(seaweed_s3: SeaweedS3, prefix: str) -> Writer:
    bucket = S3Bucket(seaweed_s3.endpoint_url, seaweed_s3.bucket, seaweed_s3.key_id,
                      seaweed_s3.secret)
    return Writer(CONFIG, bucket, prefix=prefix, events_per_part=7, first_part_number=1,
                  merged_ids="legacy")


def reader(seaweed_s3: SeaweedS3, prefix: str, **options) -> StorageExport:
    access = BucketAccess(seaweed_s3.endpoint_url, seaweed_s3.region, seaweed_s3.key_id,
                          seaweed_s3.secret, "THE_KEY and THE_SECRET")
    return StorageExport(access=access, location=StorageLocation(seaweed_s3.bucket, prefix),
                         project_id=APP, **options)


def part_keys(prefix: str, hour: datetime, numbers) -> list[str]:
    """The documented part names: {prefix}/{appId}/{appId}_{yyyy-MM-dd}_{H}#{n}.json.gz."""
    return [f"{prefix}/{APP}/{APP}_{hour:%Y-%m-%d}_{hour.hour}#{n}.json.gz" for n in numbers]


def test_parts_are_the_keys_ending_in_a_part_number_beside_metadata_and_merged_ids(
        seaweed_s3, prefix, writer):
    writer.deliver([H1, H2], metadata=True)
    writer.write_metadata(name=f"{APP}/{APP}_{DAY:%Y-%m-%d}_1_summary.json", body=b"{}")
    legacy = f"{APP}/{APP}_{DAY:%Y-%m-%d}_1.json.gz"  # a legacy organization's merged ids
    writer.write_metadata(name=legacy, body=gzip.compress(
        b'{"scope": 636686, "merge_time": 1, "merge_server_time": 2, "amplitude_id": 3, '
        b'"merged_amplitude_id": 4}\n'))
    assert f"{prefix}/{legacy}" in writer.keys()  # noqa: SIM118 (the writer's list of keys)
    listed = reader(seaweed_s3, prefix).list_hours([H1, H2, H3])
    for hour in (H1, H2):
        count = -(-CONFIG.hour_count(hour) // 7)
        assert [p.key for p in listed[hour].parts] == part_keys(prefix, hour, range(1, count + 1))
        assert listed[hour].marker is not None and listed[hour].refused is None
    assert listed[H3].parts == () and listed[H3].marker is None
    assert all(not p.key.endswith(("_complete", ".json")) for h in (H1, H2)
               for p in listed[h].parts)


def test_an_hour_is_ready_by_its_marker_or_a_while_after_it_ends_without_markers(
        seaweed_s3, prefix, writer):
    writer.deliver([H1], unmarked=[H1])
    export = reader(seaweed_s3, prefix)
    hour = export.list_hours([H1])[H1]
    why = export.not_ready(hour, datetime.now(UTC))
    assert why is not None and f"{APP}_{DAY:%Y-%m-%d}_1_complete" in why and "half" in why
    writer.write_marker(H1)
    assert export.not_ready(export.list_hours([H1])[H1], datetime.now(UTC)) is None
    timed = reader(seaweed_s3, prefix, markers=False, ready_after=timedelta(hours=3))
    hour = timed.list_hours([H2])[H2]  # nothing written: an empty hour, once ready
    assert timed.not_ready(hour, H2 + timedelta(hours=3, minutes=59)) is not None
    assert timed.not_ready(hour, H2 + timedelta(hours=4)) is None


@pytest.mark.parametrize("name, refuses", [
    (f"{APP}_2026-03-06_2#01x.json.gz", None),  # not a part number: not a part
    (f"{APP}_2026-03-06_2/x/{APP}_2026-03-06_3#1.json.gz", "day"),  # a path inside
    (f"{APP}_2026-03-06_24#1.json.gz", "day"),  # no such hour
    (f"{APP}_2026-03-06_02#1.json.gz", "hour"),  # part 1 of hour 2 a second time
])
def test_a_key_that_ends_like_a_part_but_is_not_one_refuses_its_hour_or_day(
        seaweed_s3, prefix, writer, name, refuses):
    writer.deliver([H1, H2])
    writer.write_metadata(name=f"{APP}/{name}", body=gzip.compress(b"{}\n"))
    listed = reader(seaweed_s3, prefix).list_hours([H1, H2])
    if refuses is None:
        assert listed[H1].refused is None and listed[H2].refused is None
        return
    assert listed[H2].refused is not None and name.rsplit("/", 1)[-1] in listed[H2].refused
    export = reader(seaweed_s3, prefix)
    assert export.not_ready(listed[H2], datetime.now(UTC)).startswith(
        "upload hour 2026-03-06T02: ")
    assert (listed[H1].refused is not None) == (refuses == "day")


def test_an_hour_rewritten_while_it_is_read_is_refused_and_its_landing_kept(
        seaweed_s3, prefix, writer, tmp_path):
    writer.deliver([H1])
    export, lake = reader(seaweed_s3, prefix), AmplitudeLake(tmp_path / "lake")
    first = lake.land_stored(export, export.list_hours([H1])[H1])
    listed = export.list_hours([H1])[H1]
    writer.backfill(H1, events_per_part=5)  # Amplitude rewrites the hour after the listing
    with pytest.raises(HourChanged, match="upload hour 2026-03-06T01"):
        lake.land_stored(export, listed)
    assert lake.landed(H1) == first  # the landing is as it was
    again = lake.land_stored(export, export.list_hours([H1])[H1])
    assert [m.key for m in again.members] == part_keys(
        prefix, H1, range(1, -(-CONFIG.hour_count(H1) // 5) + 1))
    read = b"".join(gzip.decompress(p.read_bytes()) for p in lake.member_paths(again))
    assert read.splitlines() == [line.rstrip(b"\n") for line in writer.hour_lines(H1)]


def test_an_object_that_is_not_gzip_is_refused_naming_it(seaweed_s3, prefix, writer, tmp_path):
    writer.deliver([H1])
    key = part_keys(prefix, H1, [1])[0]
    writer.s3.put_object(Bucket=writer.bucket.bucket, Key=key, Body=b"<html>oops</html>" * 3)
    export = reader(seaweed_s3, prefix)
    with pytest.raises(MemberRefused, match="is not gzip") as refused:
        AmplitudeLake(tmp_path).land_stored(export, export.list_hours([H1])[H1])
    assert key in str(refused.value) and isinstance(refused.value, ArchiveError)


def test_keys_that_are_refused_name_the_variables_never_their_values(seaweed_s3, prefix, writer):
    writer.deliver([H1])
    access = BucketAccess(seaweed_s3.endpoint_url, seaweed_s3.region, seaweed_s3.key_id,
                          "not-the-secret", "THE_KEY and THE_SECRET")
    export = StorageExport(access=access, location=StorageLocation(seaweed_s3.bucket, prefix),
                           project_id=APP)
    with pytest.raises(BucketError) as refused:
        export.list_hours([H1])
    assert "THE_KEY and THE_SECRET" in str(refused.value)
    assert seaweed_s3.key_id not in str(refused.value) and "not-the-secret" not in str(
        refused.value)


def test_landing_records_each_object_and_its_etag(seaweed_s3, prefix, writer, tmp_path: Path):
    writer.deliver([H1])
    export = reader(seaweed_s3, prefix)
    landed = AmplitudeLake(tmp_path).land_stored(export, export.list_hours([H1])[H1])
    listing = writer.s3.list_objects_v2(Bucket=writer.bucket.bucket, Prefix=f"{prefix}/{APP}/")
    etags = {o["Key"]: o["ETag"] for o in listing["Contents"] if "#" in o["Key"]}
    assert {o["key"]: o["etag"] for o in landed.objects} == etags
    assert landed.source == "storage" and landed.signature == frozenset(etags.items())
