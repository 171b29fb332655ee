"""MixpanelSettings from the environment: credentials, regions, the required time-stamp mode."""

import logging
from datetime import date

import pytest

from pipeline.mixpanel.settings import CREDENTIALS, MixpanelSettings, MixpanelSettingsError

SERVICE = {"MIXPANEL_SERVICE_ACCOUNT_USERNAME": "sa-user.abc123",
           "MIXPANEL_SERVICE_ACCOUNT_SECRET": "sa-secret-7f7f7f", "MIXPANEL_PROJECT_ID": "31337",
           "MIXPANEL_TIMESTAMPS": "local", "MIXPANEL_PROJECT_TIMEZONE": "America/Los_Angeles"}


def test_a_service_account_project():
    settings = MixpanelSettings.from_env(SERVICE | {"MIXPANEL_START": "2026-02-01",
                                                    "MIXPANEL_LAG_DAYS": "2"})
    assert settings.local and settings.project_id == "31337"
    assert settings.host == "https://data.mixpanel.com"
    assert settings.start == date(2026, 2, 1) and settings.lag_days == 2
    assert str(settings.partition_zone) == "America/Los_Angeles"
    assert settings.credential_variables_in_use() == ("MIXPANEL_SERVICE_ACCOUNT_USERNAME",
                                                      "MIXPANEL_SERVICE_ACCOUNT_SECRET")
    assert "sa-secret" not in repr(settings) and "sa-user" not in repr(settings)
    assert settings.deprecated_auth is None


@pytest.mark.parametrize("region, host", [("us", "https://data.mixpanel.com"),
                                          ("EU", "https://data-eu.mixpanel.com"),
                                          ("in", "https://data-in.mixpanel.com")])
def test_regions_pick_the_residency_host(region, host):
    assert MixpanelSettings.from_env(SERVICE | {"MIXPANEL_REGION": region}).host == host


def test_the_base_url_wins():
    env = SERVICE | {"MIXPANEL_REGION": "eu", "MIXPANEL_BASE_URL": "http://127.0.0.1:9/"}
    assert MixpanelSettings.from_env(env).host == "http://127.0.0.1:9"


@pytest.mark.parametrize("value", [None, "", "project", "UTC+1"])
def test_timestamps_is_required_and_says_how_to_find_out(value):
    env = dict(SERVICE)
    env.pop("MIXPANEL_TIMESTAMPS")
    if value is not None:
        env["MIXPANEL_TIMESTAMPS"] = value
    with pytest.raises(MixpanelSettingsError) as caught:
        MixpanelSettings.from_env(env)
    message = str(caught.value)
    assert "'local' or 'utc'" in message and "1 January 2023" in message
    assert "Project Settings" in message and "mp_processing_time_ms" in message
    assert "sa-secret" not in message


def test_a_utc_project_partitions_by_utc_days():
    settings = MixpanelSettings.from_env(SERVICE | {"MIXPANEL_TIMESTAMPS": "UTC"})
    assert not settings.local and str(settings.partition_zone) == "UTC"


def test_local_needs_a_zone_and_a_real_one():
    env = dict(SERVICE)
    env.pop("MIXPANEL_PROJECT_TIMEZONE")
    with pytest.raises(MixpanelSettingsError, match="MIXPANEL_PROJECT_TIMEZONE is required"):
        MixpanelSettings.from_env(env)
    with pytest.raises(MixpanelSettingsError, match="IANA"):
        MixpanelSettings.from_env(SERVICE | {"MIXPANEL_PROJECT_TIMEZONE": "Pacific Time"})


def test_the_project_secret_works_with_a_warning(caplog):
    env = {"MIXPANEL_API_SECRET": "proj-secret-0a0a0a", "MIXPANEL_TIMESTAMPS": "utc"}
    with caplog.at_level(logging.WARNING):
        settings = MixpanelSettings.from_env(env)
    assert settings.deprecated_auth is not None and "March 3, 2027" in settings.deprecated_auth
    assert "March 3, 2027" in caplog.text and "proj-secret" not in caplog.text
    assert settings.credential_variables_in_use() == ("MIXPANEL_API_SECRET",)
    assert settings.credential_names == "MIXPANEL_API_SECRET"
    assert "proj-secret" not in repr(settings)


@pytest.mark.parametrize("drop, expected", [
    ("MIXPANEL_SERVICE_ACCOUNT_SECRET", "MIXPANEL_SERVICE_ACCOUNT_SECRET must be set"),
    ("MIXPANEL_PROJECT_ID", "MIXPANEL_PROJECT_ID must be"),
])
def test_an_incomplete_service_account_names_what_is_missing(drop, expected):
    env = dict(SERVICE)
    env.pop(drop)
    with pytest.raises(MixpanelSettingsError, match=expected) as caught:
        MixpanelSettings.from_env(env)
    assert "sa-user.abc123" not in str(caught.value) and "sa-secret" not in str(caught.value)


def test_no_credentials_at_all():
    with pytest.raises(MixpanelSettingsError, match="no Mixpanel credentials"):
        MixpanelSettings.from_env({"MIXPANEL_TIMESTAMPS": "utc"})


def test_every_credential_is_listed_for_the_secrets_test():
    assert set(CREDENTIALS) == {"MIXPANEL_SERVICE_ACCOUNT_USERNAME",
                                "MIXPANEL_SERVICE_ACCOUNT_SECRET", "MIXPANEL_API_SECRET"}


@pytest.mark.parametrize("name, value", [("MIXPANEL_LAG_DAYS", "-1"),
                                         ("MIXPANEL_MAX_WINDOW_DAYS", "0"),
                                         ("MIXPANEL_START", "2026-13-01"),
                                         ("MIXPANEL_REGION", "mars")])
def test_bad_values_name_their_variable(name, value):
    with pytest.raises(MixpanelSettingsError, match=name):
        MixpanelSettings.from_env(SERVICE | {name: value})
