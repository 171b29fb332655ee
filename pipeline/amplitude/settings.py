"""One Amplitude project's settings: from ``AMPLITUDE_*`` variables, or from a project's YAML.

The keys are not here: the YAML names the variables that hold them (``api_key_env``), the
environment's project uses ``AMPLITUDE_API_KEY`` and ``AMPLITUDE_SECRET_KEY``, and the client
gets them through ``dagster.EnvVar`` at run time only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from pipeline.amplitude.rate_limits import overrides_from_json
from pipeline.hours import parse_setting_hour
from pipeline.settings import (
    CommaList,
    EnvSettings,
    Share,
    TimeZone,
    choice,
    whole,
)

REGION_HOSTS = {
    "us": "https://amplitude.com",
    "eu": "https://analytics.eu.amplitude.com",
}
DEFAULT_START = "2026-01-01T00"
MAX_EXPORT_HOURS = 365 * 24  # the longest range one export request may span


def _hour(raw: Any) -> datetime:
    if isinstance(raw, datetime):
        return raw
    return parse_setting_hour(str(raw))


def _rate_limits(raw: Any) -> str | None:
    text = str(raw).strip() if raw is not None else ""
    if text:
        overrides_from_json(text)  # refuses what it cannot read, naming the group
    return text or None


def _yaml_only(variable: str) -> Any:
    return {"yaml_only": True, "default_variable": variable}


class AmplitudeOptions(BaseModel):
    """One Amplitude project's options, as a project's YAML gives them (``attributes:``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The variables holding the keys: a YAML project names its own; the environment's project
    # uses AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY.
    api_key_env: str = Field(json_schema_extra=_yaml_only("AMPLITUDE_API_KEY"),
                             description="the variable holding the project's API key")
    secret_key_env: str = Field(json_schema_extra=_yaml_only("AMPLITUDE_SECRET_KEY"),
                                description="the variable holding its secret key")
    region: Annotated[str, choice(*REGION_HOSTS)] = Field(
        "us", description="`us` → `https://amplitude.com`, `eu` → "
        "`https://analytics.eu.amplitude.com`")
    base_url: str | None = Field(None, description="overrides the region's host (the simulator "
                                 "and the tests use it)")
    start: Annotated[datetime, BeforeValidator(_hour)] = Field(
        default_factory=lambda: parse_setting_hour(DEFAULT_START),
        description="first partition, an upload hour in UTC, `YYYY-MM-DDTHH` (its day is the "
        "first snapshot day); default `2026-01-01T00`")
    lag_hours: Annotated[int, whole(0)] = Field(
        2, description="hours after an upload hour ends before it is complete at Amplitude")
    max_window_hours: Annotated[int, whole(1, MAX_EXPORT_HOURS)] = Field(
        24, description="most upload hours one export request covers")
    project_timezone: TimeZone = Field(
        "UTC", description="the project's time zone (IANA name): Amplitude's Dashboard REST "
        "API counts days in it, and so do the models")
    counts_days: Annotated[int, whole(1, 365)] = Field(
        35, description="days of Amplitude's own daily counts each `daily_counts` snapshot "
        "asks for")
    cohort_ids: CommaList = Field((), description="cohort ids to download members of "
                                  "(comma-separated; default: every cohort not archived)")
    cohort_max_size: Annotated[int, whole(1)] | None = Field(
        None, description="download only cohorts of at most this many members")
    cohort_props: CommaList = Field((), description="user properties to download with the "
                                    "members (comma-separated)")
    cohort_monthly_quota: Annotated[int, whole(1)] = Field(
        500, description="Amplitude's monthly cohort-download allowance")
    cohort_quota_share: Share = Field(0.8, description="the share of that allowance the project "
                                      "may use")
    rate_limits: Annotated[str | None, BeforeValidator(_rate_limits)] = Field(
        None, description="JSON replacing limit groups, for a plan with other limits "
        "(`pipeline/amplitude/rate_limits.py`)")
    refetch_after_hours: Annotated[int, whole(0)] = Field(
        24, description="a re-run fetches again only hours landed longer ago than this")
    settle_hours: Annotated[int, whole(1, 24 * 30)] = Field(
        24, description="the late-data schedule fetches each hour again this long after it")
    rejects: Annotated[str, choice("fail", "quarantine")] = Field(
        "fail", description="`quarantine` sets lines that are not JSON objects aside in "
        "`_rejects` instead of failing their hour")
    reconcile_settle_hours: Annotated[int, whole(0, 24 * 30)] = Field(
        48, description="a day is reconciled once every upload hour up to this long after it "
        "is loaded")
    reconcile_tolerance: Share = Field(0.0, description="the share by which a day's number may "
                                       "differ from Amplitude's (`0.01` or `1%`)")

    @property
    def host(self) -> str:
        """``base_url`` wins; otherwise the region picks Amplitude's host."""
        return (self.base_url or REGION_HOSTS[self.region]).rstrip("/")

    @property
    def credential_variables(self) -> tuple[str, str]:
        return self.api_key_env, self.secret_key_env


class AmplitudeSettings(EnvSettings, AmplitudeOptions):
    """One Amplitude project (the environment's: ``AMPLITUDE_*``; a YAML project: the same keys
    in lower case under ``attributes:``)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="AMPLITUDE_")
    docs_title: ClassVar[str] = "Amplitude"
    api_key_env: str = Field("AMPLITUDE_API_KEY", json_schema_extra=_yaml_only(
        "AMPLITUDE_API_KEY"), description="the variable holding the project's API key")
    secret_key_env: str = Field("AMPLITUDE_SECRET_KEY", json_schema_extra=_yaml_only(
        "AMPLITUDE_SECRET_KEY"), description="the variable holding its secret key")
