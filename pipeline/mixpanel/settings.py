"""The Mixpanel source's environment, read once into typed settings.

``MIXPANEL_TIMESTAMPS`` has no default on purpose: Mixpanel stores ``time`` in the project's
time zone for projects created before 2023 and in UTC for later ones, and nothing in an answer
says which, so a guess would silently shift every event by the project's UTC offset.

The credentials are held only to build the client; they never appear in ``repr`` or in a message
(messages name the variables).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.environment import SettingsError, whole_number
from pipeline.http import Credentials

log = logging.getLogger(__name__)

REGION_HOSTS = {
    "us": "https://data.mixpanel.com",
    "eu": "https://data-eu.mixpanel.com",
    "in": "https://data-in.mixpanel.com",
}
SERVICE_ACCOUNT = ("MIXPANEL_SERVICE_ACCOUNT_USERNAME", "MIXPANEL_SERVICE_ACCOUNT_SECRET")
API_SECRET = "MIXPANEL_API_SECRET"
# Every Mixpanel credential, for the secrets test (pipeline.settings.CREDENTIALS gains these).
CREDENTIALS = (*SERVICE_ACCOUNT, API_SECRET)
API_SECRET_RETIRED_ON = date(2027, 3, 3)
DEFAULT_START = "2026-01-01"
_DEFAULT_START_DAY = date(2026, 1, 1)
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


@dataclass(frozen=True)
class MixpanelSettings:
    timestamps: str  # "local" or "utc": how the project stores `time`
    project_timezone: str = "UTC"
    region: str = "us"
    base_url: str = REGION_HOSTS["us"]
    project_id: str | None = None  # required with a service account
    start: date = _DEFAULT_START_DAY
    lag_days: int = 1
    max_window_days: int = 7
    settle_days: int = 5  # Mixpanel: offline mobile data may take up to 5 days to arrive
    time_in_ms: bool = False  # ask the export for millisecond timestamps
    username: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)
    deprecated_auth: str | None = None  # the warning to surface, when the project secret is used

    @property
    def local(self) -> bool:
        return self.timestamps == "local"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.project_timezone)

    @property
    def partition_zone(self) -> ZoneInfo:
        """The zone of the days the export's from_date/to_date mean (and the partitions')."""
        return self.zone if self.local else ZoneInfo("UTC")

    @property
    def credential_variables(self) -> str:
        if self.deprecated_auth is not None:
            return API_SECRET
        return f"{SERVICE_ACCOUNT[0]}, {SERVICE_ACCOUNT[1]} and MIXPANEL_PROJECT_ID"

    def credentials(self) -> Credentials:
        """For ``pipeline.http.ApiClient``; the project secret goes in the username field."""
        return Credentials(self.username, self.secret, self.credential_variables)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MixpanelSettings:
        env = os.environ if env is None else env
        timestamps = env.get("MIXPANEL_TIMESTAMPS", "").strip().lower()
        if timestamps not in ("local", "utc"):
            given = f" (it is {timestamps!r})" if timestamps else ""
            raise MixpanelSettingsError(TIMESTAMPS_HELP.replace(
                "must be set to", f"must be set{given} to", 1))
        zone_name = env.get("MIXPANEL_PROJECT_TIMEZONE", "").strip()
        if timestamps == "local" and not zone_name:
            raise MixpanelSettingsError(
                "MIXPANEL_PROJECT_TIMEZONE is required with MIXPANEL_TIMESTAMPS=local: it is the "
                "zone Mixpanel wrote `time` in (Project Settings, 'Timezone'), such as "
                "America/Los_Angeles")
        zone_name = zone_name or "UTC"
        try:
            ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise MixpanelSettingsError(
                f"MIXPANEL_PROJECT_TIMEZONE={zone_name!r} is not an IANA time zone such as "
                "America/Los_Angeles") from None
        region = env.get("MIXPANEL_REGION", "").strip().lower() or "us"
        if region not in REGION_HOSTS:
            raise MixpanelSettingsError(
                f"MIXPANEL_REGION={region!r} is not one of {', '.join(REGION_HOSTS)}")
        base_url = (env.get("MIXPANEL_BASE_URL", "").strip() or REGION_HOSTS[region]).rstrip("/")
        username, secret, project_id, deprecated = _auth(env)
        raw_start = env.get("MIXPANEL_START", "").strip() or DEFAULT_START
        try:
            start = date.fromisoformat(raw_start)
        except ValueError:
            raise MixpanelSettingsError(
                f"MIXPANEL_START={raw_start!r} is not a day of the form YYYY-MM-DD") from None
        return cls(
            timestamps=timestamps, project_timezone=zone_name, region=region, base_url=base_url,
            project_id=project_id, start=start,
            lag_days=_int(env, "MIXPANEL_LAG_DAYS", 1, 0, 30),
            max_window_days=_int(env, "MIXPANEL_MAX_WINDOW_DAYS", 7, 1, MAX_WINDOW_DAYS),
            settle_days=_int(env, "MIXPANEL_SETTLE_DAYS", 5, 0, 30),
            time_in_ms=_flag(env, "MIXPANEL_TIME_IN_MS"),
            username=username, secret=secret, deprecated_auth=deprecated)


def _auth(env: Mapping[str, str]) -> tuple[str, str, str | None, str | None]:
    """(username, secret, project id, deprecation warning): a service account wins."""
    user, secret = (env.get(name, "").strip() for name in SERVICE_ACCOUNT)
    project_id = env.get("MIXPANEL_PROJECT_ID", "").strip() or None
    api_secret = env.get(API_SECRET, "").strip()
    if user or secret:
        missing = [name for name, value in zip(SERVICE_ACCOUNT, (user, secret), strict=True)
                   if not value]
        if missing:
            raise MixpanelSettingsError(f"{' and '.join(missing)} must be set with the other "
                                        "service account variable")
        if project_id is None or not project_id.isdigit():
            raise MixpanelSettingsError(
                "MIXPANEL_PROJECT_ID must be the project's numeric id (Project Settings) when "
                "authenticating with a service account")
        return user, secret, project_id, None
    if api_secret:
        warning = (f"{API_SECRET} is the project secret, which Mixpanel deprecated and fully "
                   f"retires on {API_SECRET_RETIRED_ON:%B} {API_SECRET_RETIRED_ON.day}, "
                   f"{API_SECRET_RETIRED_ON.year}: create a service account and set "
                   f"{SERVICE_ACCOUNT[0]}, {SERVICE_ACCOUNT[1]} and MIXPANEL_PROJECT_ID instead")
        log.warning(warning)
        return api_secret, "", project_id, warning
    raise MixpanelSettingsError(
        f"no Mixpanel credentials: set {SERVICE_ACCOUNT[0]}, {SERVICE_ACCOUNT[1]} and "
        f"MIXPANEL_PROJECT_ID (a service account), or the deprecated {API_SECRET}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    return whole_number(env, name, default, minimum, maximum, error=MixpanelSettingsError)


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise MixpanelSettingsError(f"{name}={raw!r} is not true or false")
