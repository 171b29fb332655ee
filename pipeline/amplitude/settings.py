"""One Amplitude project's settings: from ``AMPLITUDE_*`` variables, or from a project's YAML.

The keys are not here: the YAML names the variables that hold them (``api_key_env``), the
environment's project uses ``AMPLITUDE_API_KEY`` and ``AMPLITUDE_SECRET_KEY``, and the client
gets them through ``dagster.EnvVar`` at run time only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator
from pydantic_settings import SettingsConfigDict

from pipeline.amplitude.rate_limits import overrides_from_json
from pipeline.hours import parse_setting_hour
from pipeline.settings import (
    CommaList,
    EnvSettings,
    Flag,
    Share,
    TimeZone,
    choice,
    current_env,
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


def _bucket_url(raw: Any) -> str | None:
    text = str(raw).strip() if raw is not None else ""
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{text!r} is not of the form s3://BUCKET/PREFIX (a GCS bucket too: "
                         "its S3 API, docs/storage-export.md)")
    return f"s3://{parts.netloc}/{parts.path.strip('/')}".rstrip("/")


BucketUrl = Annotated[str | None, BeforeValidator(_bucket_url)]
STORAGE_KEYS = ("AMPLITUDE_STORAGE_ACCESS_KEY_ID", "AMPLITUDE_STORAGE_SECRET_ACCESS_KEY")


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

    events_from: Annotated[str, choice("api", "storage")] = Field(
        "api", description="`api`: the Export API; `storage`: Amplitude's storage export in a "
        "bucket (docs/storage-export.md)")
    storage_url: BucketUrl = Field(
        None, description="`s3://BUCKET/PREFIX`: the folder Amplitude's storage export writes "
        "into (the `{PREFIX}/{project_id}/` folders and merged-ID files are under it)")
    project_id: Annotated[int, whole(1)] | None = Field(
        None, description="the project's id at Amplitude (its appId): the export's folder and "
        "file names")
    org_id: Annotated[int, whole(1)] | None = Field(
        None, description="the organization's id: loads its merged-ID files "
        "(`amplitude/merge_ids`), whichever way events come")
    merge_ids_url: BucketUrl = Field(
        None, description="`s3://BUCKET/PREFIX` of the merged-ID files; default: `storage_url`")
    storage_access_key_id_env: str | None = Field(
        None, json_schema_extra=_yaml_only(STORAGE_KEYS[0]),
        description="the variable holding the bucket's access key id (unset: AWS_ACCESS_KEY_ID, "
        "or the AWS tools' own chain)")
    storage_secret_access_key_env: str | None = Field(
        None, json_schema_extra=_yaml_only(STORAGE_KEYS[1]),
        description="the variable holding its secret (unset: AWS_SECRET_ACCESS_KEY)")
    storage_endpoint_url: str | None = Field(
        None, description="an S3-compatible server for the bucket (GCS: "
        "`https://storage.googleapis.com`); unset: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS")
    storage_region: str | None = Field(
        None, description="the bucket's region (GCS: `auto`); unset: AWS_REGION, "
        "AWS_DEFAULT_REGION, `us-east-1`")
    storage_markers: Flag = Field(
        True, description="an hour is ready when Amplitude's `_complete` marker is written; "
        "`false` where Amplitude switched markers off")
    storage_ready_after_hours: Annotated[int, whole(0, 24 * 7)] = Field(
        3, description="without markers, an hour is ready this long after it ends (and an hour "
        "without a merged-ID file counts as having no merges)")

    @model_validator(mode="after")
    def _storage_complete(self) -> Self:
        if self.events_from == "storage" and (self.storage_url is None
                                              or self.project_id is None):
            raise ValueError("AMPLITUDE_EVENTS_FROM=storage needs AMPLITUDE_STORAGE_URL "
                             "(s3://BUCKET/PREFIX) and AMPLITUDE_PROJECT_ID (the appId in the "
                             "export's file names)")
        if self.org_id is not None and self.merge_ids_url is None and self.storage_url is None:
            raise ValueError("AMPLITUDE_ORG_ID needs AMPLITUDE_MERGE_IDS_URL or "
                             "AMPLITUDE_STORAGE_URL: the bucket holding the merged-ID files")
        self._storage_keys = self._storage_keys_set()
        return self

    _storage_keys: tuple[str, str] | None = PrivateAttr(None)

    def storage_key_variables(self) -> tuple[str, str] | None:
        """The variables holding the bucket's own keys, or None: the lake's ``AWS_*`` ones (or
        the AWS tools' own chain) then apply."""
        return self._storage_keys

    def _storage_keys_set(self) -> tuple[str, str] | None:
        env = current_env()
        key_id, secret = self.storage_access_key_id_env, self.storage_secret_access_key_env
        if not (key_id and env.get(key_id, "").strip()):
            return None
        if not (secret and env.get(secret, "").strip()):
            raise ValueError(f"{secret or 'the secret access key'} must be set with {key_id}")
        return key_id, secret

    @property
    def from_storage(self) -> bool:
        return self.events_from == "storage"

    @property
    def merges_url(self) -> str | None:
        """Where the organization's merged-ID files are, when they are loaded at all."""
        return None if self.org_id is None else self.merge_ids_url or self.storage_url

    @property
    def partition_lag_hours(self) -> int:
        """How long after an hour ends its partition exists: the Export API's lag; the storage
        export's hours exist once over (the marker, or the sensor, says when they are ready)."""
        return 0 if self.from_storage else self.lag_hours

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
    storage_access_key_id_env: str | None = Field(
        STORAGE_KEYS[0], json_schema_extra=_yaml_only(STORAGE_KEYS[0]),
        description="the variable holding the bucket's access key id")
    storage_secret_access_key_env: str | None = Field(
        STORAGE_KEYS[1], json_schema_extra=_yaml_only(STORAGE_KEYS[1]),
        description="the variable holding its secret")
