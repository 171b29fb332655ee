from pathlib import Path

import pytest

from pipeline.settings import Settings, SettingsError


def test_defaults_and_region_hosts():
    s = Settings.from_env({})
    assert s.base_url == "https://amplitude.com"
    assert (s.lag_hours, s.max_window_hours) == (2, 24)
    assert s.warehouse_path == Path("data/warehouse.duckdb")
    assert s.lake_root == "data/lake"
    eu = Settings.from_env({"AMPLITUDE_REGION": "EU"})
    assert eu.base_url == "https://analytics.eu.amplitude.com"
    local = Settings.from_env({"AMPLITUDE_REGION": "eu", "AMPLITUDE_BASE_URL": "http://127.0.0.1:9/"})
    assert local.base_url == "http://127.0.0.1:9"


def test_keys_never_reach_the_settings():
    s = Settings.from_env({"AMPLITUDE_API_KEY": "key-123", "AMPLITUDE_SECRET_KEY": "shh-456"})
    assert "key-123" not in repr(s) and "shh-456" not in repr(s)


@pytest.mark.parametrize("env, message", [
    ({"AMPLITUDE_REGION": "apac"}, "AMPLITUDE_REGION"),
    ({"AMPLITUDE_LAG_HOURS": "two"}, "AMPLITUDE_LAG_HOURS"),
    ({"AMPLITUDE_LAG_HOURS": "-1"}, "AMPLITUDE_LAG_HOURS"),
    ({"AMPLITUDE_START": "yesterday"}, "AMPLITUDE_START"),
    ({"AMPLITUDE_MAX_WINDOW_HOURS": "9000"}, "at most 8760"),
])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_reliability_settings_default_and_refuse_nonsense():
    settings = Settings.from_env({})
    assert (settings.refetch_after_hours, settings.settle_hours, settings.rejects,
            settings.warehouse_lock_timeout_seconds) == (24, 24, "fail", 300)
    chosen = Settings.from_env({"AMPLITUDE_REJECTS": "Quarantine",
                                "AMPLITUDE_REFETCH_AFTER_HOURS": "0",
                                "WAREHOUSE_LOCK_TIMEOUT_SECONDS": "30"})
    assert (chosen.rejects, chosen.refetch_after_hours,
            chosen.warehouse_lock_timeout_seconds) == ("quarantine", 0, 30)
    with pytest.raises(SettingsError, match="AMPLITUDE_REJECTS='drop' is not one of fail"):
        Settings.from_env({"AMPLITUDE_REJECTS": "drop"})
    with pytest.raises(SettingsError, match="AMPLITUDE_SETTLE_HOURS=0 must be at least 1"):
        Settings.from_env({"AMPLITUDE_SETTLE_HOURS": "0"})
