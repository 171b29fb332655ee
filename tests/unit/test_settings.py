from pathlib import Path

import pytest

from pipeline.amplitude.settings import AmplitudeSettings
from pipeline.settings import SettingsError, SharedSettings


def test_defaults_and_region_hosts():
    s, shared = AmplitudeSettings.from_env({}), SharedSettings.from_env({})
    assert s.host == "https://amplitude.com"
    assert (s.lag_hours, s.max_window_hours) == (2, 24)
    assert Path(shared.warehouse_path) == Path("data/warehouse.duckdb")
    assert shared.lake_root == "data/lake"
    assert Path(shared.limits_file) == Path("data/.limits.sqlite")
    eu = AmplitudeSettings.from_env({"AMPLITUDE_REGION": "EU"})
    assert eu.host == "https://analytics.eu.amplitude.com"
    local = AmplitudeSettings.from_env({"AMPLITUDE_REGION": "eu",
                                        "AMPLITUDE_BASE_URL": "http://127.0.0.1:9/"})
    assert local.host == "http://127.0.0.1:9"


def test_keys_never_reach_the_settings():
    s = AmplitudeSettings.from_env({"AMPLITUDE_API_KEY": "key-123",
                                    "AMPLITUDE_SECRET_KEY": "shh-456"})
    assert "key-123" not in repr(s) and "shh-456" not in repr(s)
    assert s.credential_variables == ("AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY")


def test_a_secret_is_held_but_never_shown():
    shared = SharedSettings.from_env({"WAREHOUSE_CATALOG": "postgres:password=hunter22"})
    assert "hunter22" not in repr(shared) and "hunter22" not in str(shared)
    with pytest.raises(SettingsError) as caught:
        SharedSettings.from_env({"WAREHOUSE_CATALOG": "x", "POOL_WAIT_SECONDS": "hunter22"})
    assert str(caught.value) == "POOL_WAIT_SECONDS='hunter22' is not a number of seconds"


@pytest.mark.parametrize("env, message", [
    ({"AMPLITUDE_REGION": "apac"}, "AMPLITUDE_REGION"),
    ({"AMPLITUDE_LAG_HOURS": "two"}, "AMPLITUDE_LAG_HOURS"),
    ({"AMPLITUDE_LAG_HOURS": "-1"}, "AMPLITUDE_LAG_HOURS"),
    ({"AMPLITUDE_START": "yesterday"}, "AMPLITUDE_START"),
    ({"AMPLITUDE_MAX_WINDOW_HOURS": "9000"}, "at most 8760"),
    ({"AMPLITUDE_COHORT_QUOTA_SHARE": "1.5"}, "AMPLITUDE_COHORT_QUOTA_SHARE"),
    ({"AMPLITUDE_PROJECT_TIMEZONE": "Pacific Time"}, "IANA"),
    ({"AMPLITUDE_RATE_LIMITS": "{not json"}, "AMPLITUDE_RATE_LIMITS"),
])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        AmplitudeSettings.from_env(env)


@pytest.mark.parametrize("env, message", [
    ({"LAKE_ROOT": "gs://bucket/lake"}, "LAKE_ROOT='gs://bucket/lake': a lake is a local"),
    ({"DAGSTER_EXECUTOR": "k8s"}, "DAGSTER_EXECUTOR='k8s' is not one of in_process, dask"),
    ({"WAREHOUSE_LOCK_TIMEOUT_SECONDS": "9000"}, "WAREHOUSE_LOCK_TIMEOUT_SECONDS=9000 must be"),
])
def test_bad_shared_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        SharedSettings.from_env(env)


def test_reliability_settings_default_and_refuse_nonsense():
    settings, shared = AmplitudeSettings.from_env({}), SharedSettings.from_env({})
    assert (settings.refetch_after_hours, settings.settle_hours, settings.rejects,
            shared.warehouse_lock_timeout_seconds) == (24, 24, "fail", 300)
    env = {"AMPLITUDE_REJECTS": "Quarantine", "AMPLITUDE_REFETCH_AFTER_HOURS": "0",
           "WAREHOUSE_LOCK_TIMEOUT_SECONDS": "30"}
    chosen, shared = AmplitudeSettings.from_env(env), SharedSettings.from_env(env)
    assert (chosen.rejects, chosen.refetch_after_hours,
            shared.warehouse_lock_timeout_seconds) == ("quarantine", 0, 30)
    with pytest.raises(SettingsError, match="AMPLITUDE_REJECTS='drop' is not one of fail"):
        AmplitudeSettings.from_env({"AMPLITUDE_REJECTS": "drop"})
    with pytest.raises(SettingsError, match="AMPLITUDE_SETTLE_HOURS=0 must be at least 1"):
        AmplitudeSettings.from_env({"AMPLITUDE_SETTLE_HOURS": "0"})


def test_a_blank_variable_is_unset():
    assert AmplitudeSettings.from_env({"AMPLITUDE_LAG_HOURS": "  "}).lag_hours == 2


def test_the_environment_is_read_when_none_is_given(monkeypatch):
    monkeypatch.setenv("AMPLITUDE_LAG_HOURS", "5")
    assert AmplitudeSettings.from_env().lag_hours == 5
