"""Merged users through the real Dagster definitions: a simulated project whose users Amplitude
merges (events from the Export API), its organization's merged-ID files in a real S3 bucket
(SeaweedFS on 127.0.0.1, Amplitude's layout), the ``amplitude/merge_ids`` asset loading them.
The merge table is compared row for row with the simulator's merges, every id's canonical id with
the simulator's, and canonical daily users with what Amplitude's Dashboard API answers.
With CI=true a missing server fails."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import dagster as dg
import pytest

from assets.definitions import build_defs
from assets.partitions import partition_key
from simulator import S3Bucket, Simulator, SimulatorConfig
from simulator import StorageExport as Writer
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import Project, hour_metadata
from tests.e2e.test_projects import projects_package
from tests.servers.seaweed import SeaweedS3

ORG = 100_438
FIRST, LAST = DAY, DAY + timedelta(hours=23)
MERGE_IDS = dg.AssetKey(["amplitude", "merge_ids"])
CONFIG = SimulatorConfig(profile=SMALL.profile, events_per_member=SMALL.events_per_member,
                         first_hour=FIRST, last_hour=LAST, merge_share=0.2, org_id=ORG)


def ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


@pytest.fixture
def merged(seaweed_s3: SeaweedS3, tmp_path, monkeypatch):
    prefix = f"merges/{uuid.uuid4().hex[:10]}"
    bucket = S3Bucket(seaweed_s3.endpoint_url, seaweed_s3.bucket, seaweed_s3.key_id,
                      seaweed_s3.secret)
    with Simulator(CONFIG) as sim, dg.instance_for_test() as instance:
        project = Project(sim, tmp_path, instance, extra_env={
            "AMPLITUDE_START": f"{FIRST:%Y-%m-%dT%H}",
            "AMPLITUDE_ORG_ID": str(ORG),  # events stay on the Export API
            "AMPLITUDE_MERGE_IDS_URL": f"s3://{seaweed_s3.bucket}/{prefix}",
            **seaweed_s3.amplitude_storage_env()})
        for name, value in project.env.items():
            monkeypatch.setenv(name, value)
        writer = Writer(CONFIG, bucket, prefix=prefix, merged_ids="org")
        for hour in (FIRST + timedelta(hours=h) for h in range(24)):
            writer.write_merged_ids(hour)
        yield project, writer


def materialize_merges(project: Project, **kwargs) -> dg.ExecuteInProcessResult:
    defs = project.defs()
    merges = [a for a in defs.assets if MERGE_IDS in getattr(a, "keys", ())]
    return dg.materialize(merges, resources=defs.resources, instance=project.instance,
                          tags={"dagster/asset_partition_range_start": partition_key(FIRST),
                                "dagster/asset_partition_range_end": partition_key(LAST)},
                          **kwargs)


def test_merged_ids_load_row_for_row_and_users_count_as_amplitude_counts_them(merged):
    project, writer = merged
    sim = project.sim
    served = sim.merges()
    assert served and {r["scope"] for r in served} == {-ORG}
    assert project.materialize(FIRST, LAST).success
    assert materialize_merges(project).success

    with project.warehouse() as con:
        loaded = con.execute(
            "SELECT scope, merge_time, merge_server_time, amplitude_id, merged_amplitude_id "
            "FROM amplitude.merge_ids").fetchall()
        assert sorted((s, ms(t), ms(st), a, m) for s, t, st, a, m in loaded) == sorted(
            (r["scope"], r["merge_time"], r["merge_server_time"], r["amplitude_id"],
             r["merged_amplitude_id"]) for r in served)
        assert {type(t) for _, t, st, *_ in loaded} == {datetime}  # typed, not epoch numbers
        identity = dict(con.execute(
            "SELECT amplitude_id, canonical_amplitude_id FROM amplitude.user_identity"
        ).fetchall())
        ids = {a for (a,) in con.execute(
            "SELECT DISTINCT amplitude_id FROM amplitude.events").fetchall()}
        assert ids <= identity.keys()
        assert {a: identity[a] for a in ids} == {a: sim.canonical_id(a) for a in ids}
        assert any(identity[a] != a for a in ids)  # some events carry a merged id
        days = con.execute(
            "SELECT event_time::DATE, count(DISTINCT canonical_amplitude_id), "
            "count(DISTINCT amplitude_id) FROM amplitude.events "
            "JOIN amplitude.user_identity USING (amplitude_id) GROUP BY 1").fetchall()
        sources = {k for (k,) in con.execute(
            "SELECT DISTINCT _source_key FROM amplitude.merge_ids").fetchall()}
    counts = sim.daily_counts()
    assert {d: users for d, users, _ in days} == {d: counts.active(d) for d, *_ in days}
    assert any(raw > users for _, users, raw in days)  # raw ids count merged users twice
    written = writer.keys()
    assert sources == {k for k in written if f"/-{ORG}/-{ORG}_" in k}

    # Idempotent per hour: a re-run reads nothing new and leaves exactly the same rows.
    again = materialize_merges(project)
    assert again.success
    with project.warehouse() as con:
        assert con.execute("SELECT count(*) FROM amplitude.merge_ids").fetchone() == (
            len(served),)
    assert hour_metadata(again, MERGE_IDS)


WEB_YAML = """\
type: assets.components.AmplitudeProject
attributes:
  name: web
  api_key_env: WEB_AMPLITUDE_API_KEY
  secret_key_env: WEB_AMPLITUDE_SECRET_KEY
  base_url: http://127.0.0.1:9
  start: {start}
  org_id: {org}
  merge_ids_url: {url}
"""


def test_projects_of_one_organization_share_one_merge_asset(merged, tmp_path, monkeypatch):
    project, _ = merged
    module = projects_package(tmp_path, {"web/defs.yaml": WEB_YAML.format(
        start=f"{FIRST:%Y-%m-%dT%H}", org=ORG, url=project.env["AMPLITUDE_MERGE_IDS_URL"])})
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {**project.env, "WEB_AMPLITUDE_API_KEY": "w" * 32, "WEB_AMPLITUDE_SECRET_KEY": "s" * 32}
    defs = build_defs(env, defs_module=module)
    keys = {k for a in defs.assets or () if isinstance(a, dg.AssetsDefinition) for k in a.keys}
    assert {k for k in keys if k.path[-1] == "merge_ids"} == {MERGE_IDS}  # one per organization
    analytics = next(a for a in defs.assets or () if isinstance(a, dg.AssetsDefinition)
                     and dg.AssetKey(["analytics", "user_identity"]) in a.keys)
    assert MERGE_IDS in {d.asset_key for s in analytics.specs for d in s.deps}
    merges = [a for a in defs.assets or () if isinstance(a, dg.AssetsDefinition)
              and MERGE_IDS in a.keys]
    assert dg.materialize(merges, resources=defs.resources, instance=project.instance, tags={
        "dagster/asset_partition_range_start": partition_key(FIRST),
        "dagster/asset_partition_range_end": partition_key(LAST)}).success
    with project.warehouse() as con:  # the one file, into each project of the organization
        web, default = (con.execute(f"SELECT * EXCLUDE (_source_key) FROM {schema}.merge_ids "
                                    "ORDER BY ALL").fetchall()
                        for schema in ("amplitude_web", "amplitude"))
    assert web == default and len(web) == len(project.sim.merges())
