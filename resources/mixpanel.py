"""One Mixpanel project's export client as a Dagster resource; credentials arrive through
``EnvVar`` only.

Its limiter keeps Mixpanel's published limits (60 queries an hour, 3 a second, 100 at once, per
project) in the same shared store as Amplitude's (``LIMITS_PATH``, or PostgreSQL with
``LIMITS_DSN`` so they hold across machines): the groups are named apart, and every run and
thread shares one budget per project.
"""


from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field

from pipeline.http import Credentials, RetryPolicy, Timeouts
from pipeline.limits import Limiter
from pipeline.limits_postgres import limit_store
from pipeline.mixpanel.export import EXPORT_TIMEOUTS, MixpanelClient
from pipeline.mixpanel.rate_limits import MixpanelGate, export_rule, mixpanel_rules


class MixpanelExportResource(dg.ConfigurableResource):
    username: str = Field(repr=False, description=(
        "pass dg.EnvVar('MIXPANEL_SERVICE_ACCOUNT_USERNAME'), or dg.EnvVar('MIXPANEL_API_SECRET') "
        "for the deprecated project secret"))
    secret: str = Field(default="", repr=False, description=(
        "pass dg.EnvVar('MIXPANEL_SERVICE_ACCOUNT_SECRET'); empty with the project secret"))
    credential_variables: str = Field(description="how errors name the credentials")
    project_id: str | None = None
    deprecated_auth: str | None = Field(default=None, description=(
        "the warning each export run logs while the deprecated project secret is used"))
    day_timezone: str = Field(default="UTC", description=(
        "the zone of the days from_date/to_date mean: the project's for local time, else UTC"))
    region: str = "us"
    base_url: str = Field(description="Export host: the region's, or MIXPANEL_BASE_URL.")
    lag_days: int = 1
    max_window_days: int = 7
    time_in_ms: bool = False
    connect_timeout_seconds: float = EXPORT_TIMEOUTS.connect_seconds
    read_timeout_seconds: float = EXPORT_TIMEOUTS.read_seconds  # a big export thinks for minutes
    max_attempts: int = 6
    max_retry_seconds: float = 1800.0
    base_delay_seconds: float = 1.0
    limits_path: str = Field(default="data/.limits.sqlite",
                             description="the shared limiter's state (LIMITS_PATH)")
    limits_dsn: str | None = Field(default=None, repr=False, description=(
        "pass dg.EnvVar('LIMITS_DSN'): the limiter's state in PostgreSQL, for several machines"))
    limit_wait_seconds: float = 600.0
    # Tests scale Mixpanel's limits down; unset: the published ones.
    per_hour: int | None = None
    per_second: int | None = None
    hour_seconds: float | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.day_timezone)

    def limiter(self) -> Limiter:
        rule = None
        if self.per_hour is not None or self.per_second is not None or self.hour_seconds:
            rule = export_rule(per_hour=self.per_hour or 60, per_second=self.per_second or 3,
                               hour_seconds=self.hour_seconds or 3600.0)
        return Limiter(mixpanel_rules(self.project_id, rule),
                       limit_store(self.limits_path, self.limits_dsn),
                       max_wait_seconds=self.limit_wait_seconds)

    def client(self) -> MixpanelClient:
        return MixpanelClient(
            self.base_url, Credentials(self.username, self.secret, self.credential_variables),
            project_id=self.project_id, region=self.region,
            timeouts=Timeouts(self.connect_timeout_seconds, self.read_timeout_seconds),
            retry=RetryPolicy(max_attempts=self.max_attempts,
                              max_elapsed_seconds=self.max_retry_seconds,
                              base_delay_seconds=self.base_delay_seconds),
            gate=MixpanelGate(self.limiter(), self.project_id))
