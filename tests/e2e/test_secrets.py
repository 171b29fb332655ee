"""No credential the project reads ever shows: logs, Dagster events and metadata, errors, files."""

import logging
import os
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import dagster as dg
import pytest

from assets.alerts import alert_on_failed_checks, alert_on_run_failure
from assets.definitions import build_defs
from pipeline.settings import CREDENTIALS, Settings
from simulator import Fault, Simulator, SimulatorConfig
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import event_assets
from tests.e2e.test_alerts import evaluate
from tests.unit.test_alerts import running_receiver

pytestmark = pytest.mark.slow
BUSY = DAY + timedelta(hours=14)
SNAPSHOTS = {dg.AssetKey(["amplitude", n]) for n in ("cohorts", "taxonomy_user_properties")}


def secrets_in(env: dict[str, str]) -> dict[str, str]:
    """Every credential's value, and the password of a base URL that carries one."""
    found = {name: env[name] for name in CREDENTIALS}
    password = urlsplit(env["AMPLITUDE_BASE_URL"]).password
    if password:
        found["AMPLITUDE_BASE_URL password"] = password
    return found


def test_no_credential_appears_anywhere_on_any_path(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    config = SimulatorConfig(profile=SMALL.profile, events_per_member=SMALL.events_per_member,
                             api_key="key-7f3a9b-credential", secret_key="sec-91bd2e-credential",
                             first_hour=DAY, last_hour=DAY + timedelta(hours=23))
    with Simulator(config) as sim, dg.instance_for_test() as instance, \
            running_receiver() as receiver:
        base = sim.url.replace("http://", "http://urluser:urlpass-44c1d-credential@")
        env = {"AMPLITUDE_API_KEY": config.api_key, "AMPLITUDE_SECRET_KEY": config.secret_key,
               "AMPLITUDE_BASE_URL": base, "AMPLITUDE_START": f"{DAY:%Y-%m-%dT%H}",
               "ALERT_WEBHOOK_URL": receiver.url,
               "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
               "LAKE_ROOT": str(tmp_path / "lake")}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        secrets = secrets_in(env) | {"a wrong secret": "wrong-5e0f7a-credential"}
        defs = build_defs(Settings.from_env(env))
        today = datetime.now(UTC).date().isoformat()

        def run(assets, partition, **kwargs):
            return dg.materialize(assets, resources=build_defs(Settings.from_env(
                dict(os.environ))).resources, instance=instance, partition_key=partition,
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
        assert [o.success for o in outcomes] == [True, True, True, False, False, False]
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
    assert "AMPLITUDE_API_KEY" in texts["errors"]  # errors name the variables instead
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    for what, value in secrets.items():
        for where, text in texts.items():
            assert value not in text, f"{what} in {where}"
        for path in files:
            assert value.encode() not in path.read_bytes(), f"{what} in {path}"
