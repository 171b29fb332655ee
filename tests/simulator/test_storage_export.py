"""The storage export (``simulator.storage_export``) written into a real S3 server (SeaweedFS, the
``seaweed_s3`` fixture of tests/servers; with CI=true a missing server fails) and read back with
a plain boto3 client: the keys, gzip parts holding exactly the lines the Export API serves,
markers, marker-only hours, unmarked hours, metadata files, merged-ID files (organization and
legacy), deliveries of several hours, and a backfill that rewrites an hour."""

from __future__ import annotations

import gzip
import io
import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.exceptions
import httpx
import pytest

from simulator import HourProfile, S3Bucket, Simulator, SimulatorConfig, StorageExport
from simulator.merges import ms_to_hour
from tests.servers.seaweed import SeaweedS3

APP = 636686
ORG = 777
DAY = datetime(2026, 3, 6, tzinfo=UTC)
EMPTY = DAY + timedelta(hours=4)  # the profile leaves every 7th hour empty
CONFIG = SimulatorConfig(
    profile=HourProfile(base=60),
    first_hour=DAY,
    last_hour=DAY + timedelta(hours=23),
    merge_share=0.2,
    org_id=ORG,
)
HOURS = [DAY + timedelta(hours=h) for h in (1, 2, 3)]
PART = re.compile(
    r"(?P<app>\d+)/(?P=app)_(?P<day>\d{4}-\d\d-\d\d)_(?P<h>\d{1,2})#(?P<n>\d+)\.json\.gz"
)
MARKER = re.compile(r"(?P<app>\d+)/(?P=app)_(?P<day>\d{4}-\d\d-\d\d)_(?P<h>\d{1,2})_complete")


@pytest.fixture
def bucket(seaweed_s3: SeaweedS3) -> S3Bucket:
    return S3Bucket(
        seaweed_s3.endpoint_url, seaweed_s3.bucket, seaweed_s3.key_id, seaweed_s3.secret
    )


@pytest.fixture
def prefix() -> str:
    return f"amplitude/{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(CONFIG) as simulator:
        yield simulator


class Reader:
    """A plain boto3 reader of the bucket, knowing nothing of the writer."""

    def __init__(self, bucket: S3Bucket, prefix: str) -> None:
        self.s3, self.bucket, self.prefix = bucket.client(), bucket.bucket, prefix

    def listing(self) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + "/"
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def relative(self) -> list[str]:
        return [k.removeprefix(self.prefix + "/") for k in self.listing()]

    def hour_lines(self, hour: datetime) -> list[bytes]:
        """The lines of the hour's parts, in part-number order."""
        parts = []
        for name in self.relative():
            m = PART.fullmatch(name)
            if m and m["day"] == f"{hour:%Y-%m-%d}" and int(m["h"]) == hour.hour:
                parts.append((int(m["n"]), name))
        lines = []
        for _, name in sorted(parts):
            body = self.get(f"{self.prefix}/{name}")
            assert body[:2] == b"\x1f\x8b"
            lines += gzip.decompress(body).splitlines(keepends=True)
        return lines

    def rows(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in gzip.decompress(self.get(key)).splitlines()]


def served(sim: Simulator, hour: datetime) -> list[bytes]:
    """The lines the Export API serves for the hour, over HTTP."""
    params = {"start": f"{hour:%Y%m%dT%H}", "end": f"{hour:%Y%m%dT%H}"}
    auth = (sim.config.api_key, sim.config.secret_key)
    response = httpx.get(f"{sim.url}/api/2/export", params=params, auth=auth, timeout=30)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = [n for n in zf.namelist() if n.endswith(".gz")]
        return [line for n in names for line in gzip.decompress(zf.read(n)).splitlines(True)]


def test_a_delivery_of_several_hours(sim: Simulator, bucket: S3Bucket, prefix: str):
    writer = StorageExport(CONFIG, bucket, prefix=prefix, events_per_part=25, first_part_number=1)
    keys = writer.deliver(HOURS)
    reader = Reader(bucket, prefix)
    assert reader.listing() == writer.keys() == sorted(keys) == sorted(writer.written)
    names = reader.relative()
    parts = [n for n in names if PART.fullmatch(n)]
    markers = [n for n in names if MARKER.fullmatch(n)]
    assert f"{APP}/{APP}_2026-03-06_3#1.json.gz" in parts  # H not zero-padded, n from 1
    assert sorted(markers) == [f"{APP}/{APP}_2026-03-06_{h.hour}_complete" for h in HOURS]
    # every marker comes after every part of the batch
    last_part = max(i for i, k in enumerate(keys) if k.endswith(".json.gz") and "#" in k)
    assert min(i for i, k in enumerate(keys) if k.endswith("_complete")) > last_part
    for hour in HOURS:
        lines = reader.hour_lines(hour)
        assert lines == served(sim, hour) == list(sim.hour_lines(hour)) == writer.hour_lines(hour)
        count = CONFIG.hour_count(hour)
        assert len(writer.parts(hour)) == -(-count // 25) >= 2
        assert reader.get(writer.layout.marker_key(hour)) == b""
    # merged ids of each delivered hour, by merge_server_time
    org_files = sorted(n for n in names if n.startswith(f"-{ORG}/"))
    assert org_files == [f"-{ORG}/-{ORG}_2026-03-06_{h.hour}.json.gz" for h in HOURS]
    for hour in HOURS:
        rows = reader.rows(writer.layout.merged_ids_key(hour))
        assert rows and rows == writer.merge_rows(hour)
        assert rows == [r for r in sim.merges() if ms_to_hour(r["merge_server_time"]) == hour]
        assert {r["scope"] for r in rows} == {-ORG}


def test_an_hour_without_events_gets_a_marker_alone(bucket: S3Bucket, prefix: str):
    writer = StorageExport(CONFIG, bucket, prefix=prefix, merged_ids="none")
    assert CONFIG.hour_count(EMPTY) == 0
    keys = writer.deliver([EMPTY, EMPTY + timedelta(hours=1)])
    names = Reader(bucket, prefix).relative()
    assert f"{APP}/{APP}_2026-03-06_4_complete" in names
    assert not [n for n in names if n.startswith(f"{APP}/{APP}_2026-03-06_4#")]
    assert writer.hour_lines(EMPTY) == [] and len(keys) == len(names)


def test_markers_off_and_hours_still_being_delivered(bucket: S3Bucket, prefix: str):
    quiet = StorageExport(CONFIG, bucket, prefix=f"{prefix}/off", markers=False)
    quiet.deliver(HOURS)
    assert not [k for k in Reader(bucket, f"{prefix}/off").listing() if k.endswith("_complete")]

    writer = StorageExport(CONFIG, bucket, prefix=f"{prefix}/on", events_per_part=20)
    reader = Reader(bucket, f"{prefix}/on")
    writer.deliver(HOURS, unmarked=[HOURS[-1]])
    assert not [k for k in reader.listing() if k == writer.layout.marker_key(HOURS[-1])]
    assert writer.layout.marker_key(HOURS[0]) in reader.listing()
    later = DAY + timedelta(hours=9)
    assert writer.write_parts(later, only=1) == [writer.layout.part_key(later, 0)]
    assert reader.hour_lines(later) == writer.hour_lines(later)
    assert len(writer.hour_lines(later)) == 20 < CONFIG.hour_count(later)
    writer.deliver(later)  # the rest of its parts, then its marker
    assert reader.hour_lines(later) == writer.hour_lines(later)
    assert len(writer.hour_lines(later)) == CONFIG.hour_count(later)
    writer.write_marker(HOURS[-1])
    assert reader.listing() == writer.keys()


def test_metadata_files_are_not_gzip(bucket: S3Bucket, prefix: str):
    writer = StorageExport(CONFIG, bucket, prefix=prefix)
    keys = writer.deliver(HOURS[0], metadata=True)
    other = writer.write_metadata(name=f"{APP}/export_settings.txt", body=b"format=json\n")
    reader = Reader(bucket, prefix)
    manifest_key = writer.layout.manifest_key(HOURS[0])
    assert manifest_key in keys and not manifest_key.endswith(".gz")
    manifest = json.loads(reader.get(manifest_key))
    assert manifest["files"] == [p.key for p in writer.parts(HOURS[0])]
    assert manifest["events"] == CONFIG.hour_count(HOURS[0])
    assert reader.get(other) == b"format=json\n"
    assert [n for n in reader.relative() if not n.endswith(".json.gz")] == sorted(
        [
            f"{APP}/{APP}_2026-03-06_1_complete",
            f"{APP}/export_settings.txt",
            f"{APP}/manifest_2026-03-06_1.json",
        ]
    )


def test_legacy_merged_ids_sit_beside_the_parts(bucket: S3Bucket, prefix: str):
    writer = StorageExport(CONFIG, bucket, prefix=prefix, merged_ids="legacy")
    writer.deliver(HOURS[0])
    reader = Reader(bucket, prefix)
    legacy = f"{APP}/{APP}_2026-03-06_1.json.gz"
    names = reader.relative()
    assert legacy in names and not PART.fullmatch(legacy)
    assert not [n for n in names if n.startswith("-")]
    rows = reader.rows(f"{prefix}/{legacy}")
    assert {r["scope"] for r in rows} == {APP}
    assert [dict(r, scope=-ORG) for r in rows] == writer.merge_rows(HOURS[0])
    both = StorageExport(CONFIG, bucket, prefix=f"{prefix}/both", merged_ids="both")
    keys = both.deliver(HOURS[0])
    assert both.layout.merged_ids_key(HOURS[0]) in keys
    assert both.layout.legacy_merged_ids_key(HOURS[0]) in keys


def test_a_backfill_deletes_and_rewrites_an_hour(bucket: S3Bucket, prefix: str):
    hour = HOURS[1]
    writer = StorageExport(CONFIG, bucket, prefix=prefix, events_per_part=25, first_part_number=1)
    writer.deliver(HOURS)
    reader = Reader(bucket, prefix)
    before = reader.hour_lines(hour)
    old_keys = [p.key for p in writer.parts(hour)]
    removed = before[7]
    keys = writer.backfill(hour, events_per_part=40, first_part_number=0, added=5, removed=[7])
    assert writer.deleted == [writer.layout.marker_key(hour), *old_keys]  # the marker first
    after = reader.hour_lines(hour)
    assert after == writer.hour_lines(hour)
    assert len(after) == len(before) + 5 - 1
    assert removed not in after and after[:7] == before[:7] and after[7:-5] == before[8:]
    uuids = {json.loads(line)["uuid"] for line in after}
    assert len(uuids) == len(after)  # the added events are new events
    assert keys[-1] == writer.layout.marker_key(hour)
    assert [p.key for p in writer.parts(hour)] == keys[:-1]
    assert keys[0] == writer.layout.part_key(hour, 0) and len(keys) - 1 == -(-len(after) // 40)
    assert reader.listing() == writer.keys()
    # the other hours are untouched
    assert reader.hour_lines(HOURS[0]) == writer.hour_lines(HOURS[0])


def test_big_batches_are_gzipped_by_worker_processes(bucket: S3Bucket, prefix: str):
    config = replace(CONFIG, workers=2, parallel_min_events=1)
    writer = StorageExport(config, bucket, prefix=prefix, events_per_part=30)
    writer.deliver(HOURS[:2])
    reader = Reader(bucket, prefix)
    for hour in HOURS[:2]:
        assert reader.hour_lines(hour) == writer.hour_lines(hour)


def test_wrong_keys_are_refused(bucket: S3Bucket, prefix: str):
    wrong = replace(bucket, secret_access_key="not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError):
        StorageExport(CONFIG, wrong, prefix=prefix).deliver(HOURS[0])


def test_the_writer_checks_its_options(bucket: S3Bucket):
    with pytest.raises(ValueError, match="merged_ids"):
        StorageExport(CONFIG, bucket, merged_ids="sometimes", client=object())
