"""No credential the project reads ever shows: logs, Dagster events and metadata, errors, files."""

import logging
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
from pyarrow import fs

from assets.alerts import alert_on_failed_checks, alert_on_run_failure
from assets.definitions import build_defs
from pipeline.configuration import credentials
from pipeline.settings import SharedSettings
from resources import LakeResource
from simulator import Fault, MixpanelConfig, MixpanelSimulator, Simulator, SimulatorConfig
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import event_assets
from tests.e2e.test_alerts import evaluate
from tests.e2e.test_projects import WEB_YAML, projects_package
from tests.unit.test_alerts import running_receiver

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BUSY = DAY + timedelta(hours=14)
SNAPSHOTS = {dg.AssetKey(["amplitude", n]) for n in ("cohorts", "taxonomy_user_properties")}


# Which test gives each credential a value (the local parts, or the distributed ones).
LOCAL = {"AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY", "ALERT_WEBHOOK_URL",
         "MIXPANEL_SERVICE_ACCOUNT_USERNAME", "MIXPANEL_SERVICE_ACCOUNT_SECRET",
         "MIXPANEL_API_SECRET"}
# The Mixpanel project's credentials, as distinctive as Amplitude's: a leak cannot hide.
MIXPANEL = MixpanelConfig(username="mp-user-6d2a-credential", secret="mp-secret-0b7c-credential",
                          api_secret="mp-api-4e9f-credential", events_per_day=40,
                          limits_enabled=False)
MIXPANEL_DAY = "2026-11-01"  # Los Angeles falls back: the repeated hour is in it
WEB = SimulatorConfig(project_id=222, api_key="web-key-2c8d-credential",
                      secret_key="web-sec-55aa-credential", seed=3, profile=SMALL.profile,
                      events_per_member=SMALL.events_per_member, first_hour=DAY,
                      last_hour=DAY + timedelta(hours=23))
YAML_CREDENTIALS = ("WEB_AMPLITUDE_API_KEY", "WEB_AMPLITUDE_SECRET_KEY")


def secrets_in(env: dict[str, str]) -> dict[str, str]:
    """Every credential's value, the password of a base URL that carries one, and the password
    inside a DuckLake catalog string."""
    found = {name: env[name] for name in credentials(YAML_CREDENTIALS) if name in env}
    password = urlsplit(env["AMPLITUDE_BASE_URL"]).password
    if password:
        found["AMPLITUDE_BASE_URL password"] = password
    catalog = env.get("WAREHOUSE_CATALOG", "")
    if "password=" in catalog:
        found["WAREHOUSE_CATALOG password"] = catalog.split("password=", 1)[1].split()[0]
    return found


def test_every_credential_is_given_a_value_by_one_of_the_tests():
    assert set(credentials()) == LOCAL | DISTRIBUTED


def test_no_credential_appears_anywhere_on_any_path(tmp_path, caplog, monkeypatch):
    check_no_credential_shows(tmp_path, caplog, monkeypatch, {})


DISTRIBUTED = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "WAREHOUSE_CATALOG", "DAGSTER_PG_PASSWORD", "LIMITS_DSN",
               "AMPLITUDE_STORAGE_ACCESS_KEY_ID", "AMPLITUDE_STORAGE_SECRET_ACCESS_KEY"}
MERGE_IDS = dg.AssetKey(["amplitude", "merge_ids"])


def test_no_credential_shows_with_the_lake_on_s3_and_a_postgres_catalog(
        tmp_path, caplog, monkeypatch, seaweed_s3, postgres_dsn):
    catalog = postgres_dsn.server.create_database()
    home = tmp_path / "dagster_home"  # the production instance: deploy/dagster.yaml
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    env = {**seaweed_s3.env(),
           "LAKE_ROOT": f"s3://{seaweed_s3.bucket}/secrets-{tmp_path.name}",
           "LAKE_SCRATCH": str(tmp_path / "scratch"),
           "WAREHOUSE_CATALOG": f"postgres:{catalog.dsn}",
           "LIMITS_DSN": postgres_dsn.server.create_database().dsn,
           # the organization's merged ids from the bucket, with the export bucket's own keys
           "AMPLITUDE_ORG_ID": "4242",
           "AMPLITUDE_MERGE_IDS_URL": f"s3://{seaweed_s3.bucket}/export-{tmp_path.name}",
           **seaweed_s3.amplitude_storage_env(),
           **postgres_dsn.env()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s3_text = check_no_credential_shows(
        tmp_path, caplog, monkeypatch, env, read_lake=seaweed_s3,
        instance=dg.DagsterInstance.get,
        # SeaweedFS takes a session token for a temporary key it never issued: refused
        refused={"AWS_SESSION_TOKEN": "token-3b9e1-credential"})
    assert "events-v" in s3_text  # the lake's objects were read too


def check_no_credential_shows(tmp_path, caplog, monkeypatch, extra: dict[str, str],
                              read_lake=None, instance=dg.instance_for_test,
                              refused: dict[str, str] | None = None) -> str:
    """Every path a credential could leak by, on the real assets; returns the lake's objects
    read back from object storage (``read_lake``), which were searched as well."""
    caplog.set_level(logging.DEBUG)
    config = SimulatorConfig(profile=SMALL.profile, events_per_member=SMALL.events_per_member,
                             api_key="key-7f3a9b-credential", secret_key="sec-91bd2e-credential",
                             first_hour=DAY, last_hour=DAY + timedelta(hours=23))
    with Simulator(config) as sim, instance() as instance, Simulator(WEB) as web_sim, \
            running_receiver() as receiver, MixpanelSimulator(MIXPANEL) as mp_sim:
        base = sim.url.replace("http://", "http://urluser:urlpass-44c1d-credential@")
        env = {"AMPLITUDE_API_KEY": config.api_key, "AMPLITUDE_SECRET_KEY": config.secret_key,
               "AMPLITUDE_BASE_URL": base, "AMPLITUDE_START": f"{DAY:%Y-%m-%dT%H}",
               "ALERT_WEBHOOK_URL": receiver.url,
               "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
               "LAKE_ROOT": str(tmp_path / "lake"),
               "MIXPANEL_SERVICE_ACCOUNT_USERNAME": MIXPANEL.username,
               "MIXPANEL_SERVICE_ACCOUNT_SECRET": MIXPANEL.secret,
               "MIXPANEL_PROJECT_ID": str(MIXPANEL.project_id),
               "MIXPANEL_API_SECRET": MIXPANEL.api_secret, "MIXPANEL_BASE_URL": mp_sim.url,
               "MIXPANEL_TIMESTAMPS": "local", "MIXPANEL_PROJECT_TIMEZONE": MIXPANEL.timezone,
               "MIXPANEL_START": MIXPANEL_DAY, **extra,
               # a second Amplitude project, declared in YAML, with keys of its own
               "WEB_AMPLITUDE_API_KEY": WEB.api_key,
               "WEB_AMPLITUDE_SECRET_KEY": WEB.secret_key}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.syspath_prepend(str(tmp_path))
        module = projects_package(tmp_path, {"web/defs.yaml": WEB_YAML.format(
            url=web_sim.url, start=f"{DAY:%Y-%m-%dT%H}")})
        secrets = secrets_in(env) | {"a wrong secret": "wrong-5e0f7a-credential",
                                     "a wrong Mixpanel secret": "mp-wrong-31c8-credential",
                                     "the second project's wrong secret":
                                         "web-wrong-90ab-credential",
                                     "a wrong bucket secret": "bucket-wrong-7d1e-credential",
                                     } | (refused or {})
        defs = build_defs(env, defs_module=module)
        today = datetime.now(UTC).date().isoformat()

        def run(assets, partition, **kwargs):
            now = dict(os.environ)
            return dg.materialize(assets, resources=build_defs(now, defs_module=module).resources,
                                  instance=instance, partition_key=partition,
                                  raise_on_error=False, **kwargs)

        hour = BUSY.strftime("%Y-%m-%d-%H:%M")
        refetch = {"run_config": {"ops": {"amplitude__raw_export": {"config": {"refetch": True}}}}}
        outcomes = [run(event_assets(defs), hour)]  # the happy path
        sim.inject(Fault.status(429, retry_after=0), Fault.status(503))
        outcomes.append(run(event_assets(defs), hour, **refetch))  # retried
        snapshots = [a for a in defs.assets if set(a.keys) & SNAPSHOTS]
        outcomes.append(run(snapshots, today))
        sim.inject(Fault.status(403))
        outcomes.append(run(event_assets(defs), hour, **refetch))  # refused
        monkeypatch.setenv("AMPLITUDE_SECRET_KEY", secrets["a wrong secret"])
        outcomes.append(run(event_assets(defs), hour, **refetch))  # 401
        outcomes.append(run(snapshots, today))
        for name, value in (refused or {}).items():
            monkeypatch.setenv("AMPLITUDE_SECRET_KEY", config.secret_key)
            monkeypatch.setenv(name, value)
            outcomes.append(run(event_assets(defs), hour, **refetch))
            monkeypatch.delenv(name)
        assert [o.success for o in outcomes] == [True, True, True, False, False, False,
                                                 *[False] * len(refused or {})]
        monkeypatch.setenv("AMPLITUDE_SECRET_KEY", config.secret_key)
        mixpanel = [a for a in defs.assets if any(k.path[0] == "mixpanel" for k in a.keys)]
        assert len(mixpanel) == 3
        mp_outcomes = [run(mixpanel, MIXPANEL_DAY)]  # the happy path, by service account
        monkeypatch.setenv("MIXPANEL_SERVICE_ACCOUNT_SECRET", secrets["a wrong Mixpanel secret"])
        mp_outcomes.append(run(mixpanel, MIXPANEL_DAY))  # 401
        for name in ("MIXPANEL_SERVICE_ACCOUNT_USERNAME", "MIXPANEL_SERVICE_ACCOUNT_SECRET",
                     "MIXPANEL_PROJECT_ID"):
            monkeypatch.delenv(name)
        mp_outcomes.append(run(mixpanel, MIXPANEL_DAY))  # the deprecated project secret
        assert [o.success for o in mp_outcomes] == [True, False, True]
        assert [r.status for r in mp_sim.export_requests()] == [200, 401, 200]
        outcomes += mp_outcomes
        web = [a for a in defs.assets if any(k.path[0] == "amplitude_web" and k.path[1] in (
            "raw_export", "events_parquet", "events") for k in a.keys)]
        web_outcomes = [run(web, hour)]  # the second project's happy path, with its own keys
        monkeypatch.setenv("WEB_AMPLITUDE_SECRET_KEY",
                           secrets["the second project's wrong secret"])
        web_outcomes.append(run(web, hour, run_config={"ops": {"amplitude_web__raw_export": {
            "config": {"refetch": True}}}}))  # 401
        monkeypatch.setenv("WEB_AMPLITUDE_SECRET_KEY", WEB.secret_key)
        assert [o.success for o in web_outcomes] == [True, False]
        outcomes += web_outcomes
        merges = [a for a in defs.assets if MERGE_IDS in a.keys]
        if merges:  # the export bucket's keys: listed with them, then with a wrong secret
            merge_outcomes = [run(merges, hour)]
            monkeypatch.setenv("AMPLITUDE_STORAGE_SECRET_ACCESS_KEY",
                               secrets["a wrong bucket secret"])
            merge_outcomes.append(run(merges, hour))
            monkeypatch.setenv("AMPLITUDE_STORAGE_SECRET_ACCESS_KEY",
                               env["AMPLITUDE_STORAGE_SECRET_ACCESS_KEY"])
            assert [o.success for o in merge_outcomes] == [True, False]
            outcomes += merge_outcomes
        for outcome in outcomes:  # the alerts an operator would get, through the real poster
            evaluate(alert_on_failed_checks if outcome.success else alert_on_run_failure,
                     instance, outcome)
        assert len(receiver.bodies) >= 3

        records = [r for run_ in instance.get_runs()
                   for r in instance.get_records_for_run(run_.run_id).records]
        texts = {
            "Dagster events": "\n".join(str(r.event_log_entry) for r in records),
            "log lines": caplog.text,
            "errors": "\n".join(str(e.event_specific_data) for o in outcomes
                                for e in o.get_step_failure_events()),
            "alerts": "\n".join(map(str, receiver.bodies)),
        }
        lake_text, objects = "", []
        if read_lake is not None:  # every object in the bucket, names and bytes
            store = LakeResource(root=SharedSettings.from_env(env).lake_root).lake()
            infos = store.fs.get_file_info(fs.FileSelector(str(store.root), recursive=True))
            names = [i.path for i in infos if i.type == fs.FileType.File]
            objects = [bytes(store.fs.open_input_stream(n).read()) for n in names]
            lake_text = "\n".join(names + [o.decode(errors="replace") for n, o in
                                           zip(names, objects, strict=True) if n.endswith(".json")])
            texts["lake objects"] = lake_text
    assert "AMPLITUDE_API_KEY" in texts["errors"]  # errors name the variables instead
    assert "MIXPANEL_SERVICE_ACCOUNT_SECRET" in texts["errors"]
    assert "WEB_AMPLITUDE_API_KEY and WEB_AMPLITUDE_SECRET_KEY" in texts["errors"]
    if "AMPLITUDE_ORG_ID" in extra:
        assert "AMPLITUDE_STORAGE_ACCESS_KEY_ID" in texts["errors"]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) or "parquet" in lake_text
    for what, value in secrets.items():
        for where, text in texts.items():
            assert value not in text, f"{what} in {where}"
        for path in files:
            assert value.encode() not in path.read_bytes(), f"{what} in {path}"
        assert not any(value.encode() in o for o in objects), f"{what} in the lake"
    return lake_text
