"""One Mixpanel project's settings: from ``MIXPANEL_*`` variables, or from a project's YAML.

``timestamps`` has no default on purpose: Mixpanel stores ``time`` in the project's time zone for
projects created before 2023 and in UTC for later ones, and nothing in an answer says which, so a
guess would silently shift every event by the project's UTC offset.

The credentials are not here: the settings say which variables hold them (the standard ones for
the environment's project, those its YAML names for another), check that the set in use is
complete, and the client gets the values through ``dagster.EnvVar`` at run time only.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated, Any, ClassVar, Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator
from pydantic_settings import SettingsConfigDict

from pipeline.settings import EnvSettings, Flag, SettingsError, TimeZone, choice, current_env, whole

log = logging.getLogger(__name__)

REGION_HOSTS = {
    "us": "https://data.mixpanel.com",
    "eu": "https://data-eu.mixpanel.com",
    "in": "https://data-in.mixpanel.com",
}
SERVICE_ACCOUNT = ("MIXPANEL_SERVICE_ACCOUNT_USERNAME", "MIXPANEL_SERVICE_ACCOUNT_SECRET")
API_SECRET = "MIXPANEL_API_SECRET"
# Every credential of the environment's project, for the secrets test.
CREDENTIALS = (*SERVICE_ACCOUNT, API_SECRET)
API_SECRET_RETIRED_ON = date(2027, 3, 3)
DEFAULT_START = "2026-01-01"
MAX_WINDOW_DAYS = 31

TIMESTAMPS_HELP = (
    "MIXPANEL_TIMESTAMPS must be set to 'local' or 'utc'; there is no default, because a wrong "
    "guess shifts every event by the project's UTC offset. Mixpanel stores an event's `time` "
    "in the project's time zone for projects created before 1 January 2023 (set 'local', with "
    "MIXPANEL_PROJECT_TIMEZONE), and in UTC for projects created after (set 'utc'); the export's "
    "from_date/to_date follow the same rule. Look up the project's creation date in its Project "
    "Settings; if it was created in January or February 2023, check (a Mixpanel engineer dates "
    "the switch to February 2023): export one event you sent at a known instant and compare its "
    "`time` with that instant, or with its mp_processing_time_ms (a local-time project's `time` "
    "is off by the zone's offset). docs/mixpanel.md, 'Local or UTC'."
)


class MixpanelSettingsError(SettingsError):
    pass


def setting_day(raw: Any) -> date:
    """A day as the settings write it, ``YYYY-MM-DD``."""
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw).strip())
    except ValueError:
        raise ValueError(f"{str(raw).strip()!r} is not a day of the form YYYY-MM-DD") from None


def _timestamps(raw: Any) -> str | None:
    value = str(raw).strip().lower() if raw is not None else ""
    if value in ("local", "utc"):
        return value
    if value:
        raise ValueError(TIMESTAMPS_HELP.replace("must be set to", f"must be set (it is {value!r}) "
                                                 "to", 1))
    return None


def _yaml_only(variable: str) -> Any:
    return {"yaml_only": True, "default_variable": variable}


class MixpanelOptions(BaseModel):
    """One Mixpanel project's options, as a project's YAML gives them (``attributes:``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    project_id_named: ClassVar[str] = "project_id"  # how messages name the setting
    _credentials: tuple[str, ...] = PrivateAttr(default=())

    timestamps: Annotated[str | None, BeforeValidator(_timestamps)] = Field(
        None, description="**required**: `local` if the project stores `time` in its own time "
        "zone (created before 2023), `utc` otherwise (docs/mixpanel.md, 'Local or UTC')")
    project_timezone: TimeZone | None = Field(
        None, description="the project's zone (IANA name); required with `timestamps=local`")
    region: Annotated[str, choice(*REGION_HOSTS)] = Field(
        "us", description="`us`, `eu` or `in`: `data`, `data-eu` or `data-in.mixpanel.com`")
    base_url: str | None = Field(None, description="overrides the region's host")
    project_id: str | None = Field(None, description="the project's numeric id; required with a "
                                   "service account")
    start: Annotated[date, BeforeValidator(setting_day)] = Field(
        date.fromisoformat(DEFAULT_START), description="first partition, a day `YYYY-MM-DD`")
    lag_days: Annotated[int, whole(0, 30)] = Field(
        1, description="whole days after a day ends before it is loaded")
    max_window_days: Annotated[int, whole(1, MAX_WINDOW_DAYS)] = Field(
        7, description="most days one export request covers")
    settle_days: Annotated[int, whole(0, 30)] = Field(
        5, description="the late-data schedule fetches the days before the newest again for "
        "this many days (offline mobile data may take up to 5)")
    time_in_ms: Flag = Field(False, description="ask the export for millisecond timestamps")
    # The variables holding the credentials: a YAML project names its own (a service account's
    # two, or the deprecated project secret's); the environment's uses the standard ones.
    service_account_username_env: str | None = Field(
        None, json_schema_extra=_yaml_only(SERVICE_ACCOUNT[0]),
        description="the variable holding the service account's username")
    service_account_secret_env: str | None = Field(
        None, json_schema_extra=_yaml_only(SERVICE_ACCOUNT[1]),
        description="the variable holding the service account's secret")
    api_secret_env: str | None = Field(
        None, json_schema_extra=_yaml_only(API_SECRET),
        description="the variable holding the deprecated project secret (used only when the "
        "service account's variables are unset)")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.timestamps is None:
            raise ValueError(TIMESTAMPS_HELP)
        if self.timestamps == "local" and self.project_timezone is None:
            raise ValueError(
                "MIXPANEL_PROJECT_TIMEZONE is required with MIXPANEL_TIMESTAMPS=local: it is "
                "the zone Mixpanel wrote `time` in (Project Settings, 'Timezone'), such as "
                "America/Los_Angeles")
        self._credentials = self._credentials_set()  # refuses an incomplete one, naming the gap
        return self

    @property
    def local(self) -> bool:
        return self.timestamps == "local"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.project_timezone or "UTC")

    @property
    def partition_zone(self) -> ZoneInfo:
        """The zone of the days the export's from_date/to_date mean (and the partitions')."""
        return self.zone if self.local else ZoneInfo("UTC")

    @property
    def host(self) -> str:
        return (self.base_url or REGION_HOSTS[self.region]).rstrip("/")

    def credential_variables_in_use(self) -> tuple[str, ...]:
        """The service account's two variables when either was set, else the project secret's."""
        return self._credentials

    def _credentials_set(self) -> tuple[str, ...]:
        """Which variables hold the credentials; an incomplete set is refused, naming what is
        missing (never a value)."""
        env = current_env()
        named = (self.service_account_username_env, self.service_account_secret_env)
        account = tuple(name for name in named if name)
        present = [bool(env.get(name, "").strip()) for name in account]
        if any(present):
            missing = [name for name, there in zip(account, present, strict=True) if not there]
            if missing or len(account) < 2:
                raise ValueError(f"{' and '.join(missing) or 'both variables'} must be set with "
                                 "the other service account variable")
            if self.project_id is None or not self.project_id.strip().isdigit():
                raise ValueError(f"{self.project_id_named} must be the project's numeric id "
                                 "(Project Settings) when authenticating with a service account")
            return account
        if self.api_secret_env and env.get(self.api_secret_env, "").strip():
            return (self.api_secret_env,)
        if not (account or self.api_secret_env):
            raise ValueError("no Mixpanel credentials: name the variables that hold them "
                             "(service_account_username_env and service_account_secret_env, "
                             "or the deprecated api_secret_env)")
        wanted = (f"{' and '.join(account)} (a service account, with {self.project_id_named})"
                  if account else "")
        secret = f"the deprecated {self.api_secret_env}" if self.api_secret_env else ""
        raise ValueError("no Mixpanel credentials: set "
                         + " or ".join(w for w in (wanted, secret) if w))

    @property
    def deprecated_auth(self) -> str | None:
        """The warning every export run logs while the deprecated project secret is used."""
        if self.credential_variables_in_use() != (self.api_secret_env,):
            return None
        retired = API_SECRET_RETIRED_ON
        return (f"{self.api_secret_env} is the project secret, which Mixpanel deprecated and "
                f"fully retires on {retired:%B} {retired.day}, {retired.year}: create a service "
                f"account and set {SERVICE_ACCOUNT[0]}, {SERVICE_ACCOUNT[1]} and "
                "MIXPANEL_PROJECT_ID instead")

    @property
    def credential_names(self) -> str:
        """How messages name the credentials in use."""
        used = self.credential_variables_in_use()
        if used == (self.api_secret_env,):
            return used[0]
        return f"{used[0]}, {used[1]} and {self.project_id_named}"



class MixpanelSettings(EnvSettings, MixpanelOptions):
    """One Mixpanel project (the environment's: ``MIXPANEL_*``, present when any such variable is
    set; a YAML project: the same keys in lower case under ``attributes:``)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="MIXPANEL_")
    docs_title: ClassVar[str] = "Mixpanel"
    error: ClassVar[type[SettingsError]] = MixpanelSettingsError
    project_id_named: ClassVar[str] = "MIXPANEL_PROJECT_ID"
    service_account_username_env: str | None = Field(
        SERVICE_ACCOUNT[0], json_schema_extra=_yaml_only(SERVICE_ACCOUNT[0]),
        description="the variable holding the service account's username")
    service_account_secret_env: str | None = Field(
        SERVICE_ACCOUNT[1], json_schema_extra=_yaml_only(SERVICE_ACCOUNT[1]),
        description="the variable holding the service account's secret")
    api_secret_env: str | None = Field(
        API_SECRET, json_schema_extra=_yaml_only(API_SECRET),
        description="the variable holding the deprecated project secret (used only when the "
        "service account's variables are unset)")

    @classmethod
    def from_env(cls, env: Any = None) -> Self:
        settings = super().from_env(env)
        if settings.deprecated_auth is not None:
            log.warning(settings.deprecated_auth)
        return settings
