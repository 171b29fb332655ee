"""The lake on object storage (SeaweedFS's S3 on 127.0.0.1): LAKE_ROOT=s3://bucket/prefix.

Landing, Parquet and the load go through Dagster as on local disk; replacing an hour writes new
object names and moves a pointer, so a reader never meets a half-replaced hour.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import PurePosixPath

import dagster as dg
import pyarrow.parquet as pq
import pytest

from pipeline.lake import CURRENT, MANIFEST, hour_partition
from simulator import Simulator
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import Project, assert_hour_matches_served, parquet_rows

pytestmark = pytest.mark.slow
H = timedelta(hours=1)
BUSY = DAY + 8 * H


@pytest.fixture
def s3_project(tmp_path, monkeypatch, seaweed_s3):
    prefix = f"lake-{uuid.uuid4().hex[:8]}"
    with Simulator(SMALL) as sim, dg.instance_for_test() as instance:
        project = Project(sim, tmp_path, instance,
                          lake_root=f"s3://{seaweed_s3.bucket}/{prefix}",
                          extra_env={**seaweed_s3.env(), "LAKE_SCRATCH": str(tmp_path / "scr")})
        for name, value in project.env.items():
            monkeypatch.setenv(name, value)
        yield project


def objects(project: Project) -> list[str]:
    from pyarrow import fs

    lake = project.lake
    infos = lake.fs.get_file_info(fs.FileSelector(str(lake.root), recursive=True))
    return sorted(str(PurePosixPath(i.path).relative_to(lake.root)) for i in infos
                  if i.type == fs.FileType.File)


def test_a_range_lands_normalizes_and_loads_from_object_storage(s3_project):
    result = s3_project.materialize(DAY, DAY + 23 * H)
    assert result.success
    for hour in (DAY + h * H for h in range(24)):
        assert_hour_matches_served(s3_project, hour)
    stored = objects(s3_project)
    busy = hour_partition(BUSY)
    assert f"landing/amplitude/export/{busy}/{MANIFEST}" in stored
    assert f"amplitude/events/{busy}/{CURRENT}" in stored
    (parquet,) = [o for o in stored if o.startswith(f"amplitude/events/{busy}/events-")]
    assert parquet.endswith(".parquet")
    assert not (s3_project.root / "lake").exists()  # nothing of the lake on local disk
    assert not [p for p in (s3_project.root / "scr").rglob("*") if p.is_file()]


def test_a_re_fetch_writes_new_names_and_the_old_file_stays_readable(s3_project):
    assert s3_project.materialize(BUSY).success
    lake = s3_project.lake
    first = lake.events_file(BUSY)
    assert first is not None
    rows_before = parquet_rows(first, lake)
    assert s3_project.materialize(BUSY, refetch=True).success
    second = lake.events_file(BUSY)
    assert second is not None and second != first
    # a reader that resolved the pointer before the swap still reads a whole, unchanged file
    assert parquet_rows(first, lake) == rows_before == parquet_rows(second, lake)
    assert_hour_matches_served(s3_project, BUSY)
    with s3_project.warehouse() as con:
        assert con.execute("SELECT count(*) FROM amplitude.events").fetchone()[0] == \
            s3_project.sim.hour_count(BUSY)
    landing = f"landing/amplitude/export/{hour_partition(BUSY)}"
    versions = {o.split("/")[5] for o in objects(s3_project) if o.startswith(landing + "/v")}
    assert len(versions) == 2  # the superseded landing waits out its grace period


def test_superseded_versions_go_once_their_grace_period_has_passed(s3_project):
    assert s3_project.materialize(BUSY).success
    assert s3_project.materialize(BUSY, refetch=True).success
    lake = s3_project.lake
    lake.superseded_grace_seconds = 0.1
    time.sleep(0.2)
    assert lake.tidy("amplitude", "export") >= 1
    current = lake.landed(BUSY).version
    landing = f"landing/amplitude/export/{hour_partition(BUSY)}"
    assert {o.split("/")[5] for o in objects(s3_project)
            if o.startswith(landing + "/v")} == {current}
    before = lake.events_file(BUSY)
    with lake.staged_table_file("amplitude", "events", hour_partition(BUSY)) as out:
        pq.write_table(pq.read_table(str(before), filesystem=lake.fs.inner), out)
    files = {o.rsplit("/", 1)[1] for o in objects(s3_project)
             if o.startswith(f"amplitude/events/{hour_partition(BUSY)}/events-")}
    # the first file was superseded long enough ago; the one just superseded waits its turn
    assert files == {before.name, lake.events_file(BUSY).name}
    time.sleep(0.2)
    assert lake.tidy_tables("amplitude", "events") == 1  # without waiting for a re-normalize
    assert {o.rsplit("/", 1)[1] for o in objects(s3_project) if o.startswith(
        f"amplitude/events/{hour_partition(BUSY)}/events-")} == {lake.events_file(BUSY).name}


def test_a_wrong_key_fails_clearly_and_never_shows_the_secret(s3_project, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-8c1f-secret")
    result = s3_project.materialize(BUSY, raise_on_error=False)
    assert not result.success
    text = "\n".join(str(e.event_specific_data) for e in result.get_step_failure_events())
    assert "wrong-8c1f-secret" not in text
    assert "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in text
