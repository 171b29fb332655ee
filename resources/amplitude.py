"""One Amplitude project's client as a Dagster resource; keys arrive through ``EnvVar`` only.

Every client it makes shares one rate limiter whose state is a SQLite file, so Amplitude's
published limits hold across the threads, steps and concurrent runs of one machine; with
``LIMITS_DSN`` the state is in PostgreSQL and the limits hold across machines. The limits are
the project's own: its groups are named after its namespace.
"""


import dagster as dg
from pydantic import Field

from pipeline.amplitude.export import ExportClient
from pipeline.amplitude.rate_limits import AmplitudeGate, amplitude_rules, overrides_from_json
from pipeline.http import RetryPolicy, Timeouts
from pipeline.limits import Limiter
from pipeline.limits_postgres import limit_store


class AmplitudeExportResource(dg.ConfigurableResource):
    api_key: str = Field(repr=False, description="pass dg.EnvVar(<the API key's variable>)")
    secret_key: str = Field(repr=False, description="pass dg.EnvVar(<the secret key's variable>)")
    key_variables: str = Field("AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY",
                               description="how errors name the keys")
    project: str = Field("amplitude", description="the project's namespace: its limit groups")
    region: str = "us"
    base_url: str = Field(description="Export host: the region's, or the project's base_url.")
    lag_hours: int = 2
    max_window_hours: int = 24
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 300.0
    max_attempts: int = 6
    max_retry_seconds: float = 900.0
    base_delay_seconds: float = 1.0
    limits_path: str = Field(default="data/.limits.sqlite",
                             description="the shared limiter's state (LIMITS_PATH)")
    limits_dsn: str | None = Field(default=None, repr=False, description=(
        "pass dg.EnvVar('LIMITS_DSN'): the limiter's state in PostgreSQL, for several machines"))
    rate_limits: str | None = Field(default=None, description=(
        "JSON replacing limit groups (rate_limits); unset: Amplitude's published ones"))
    limit_wait_seconds: float = 300.0
    refetch_after_hours: int = Field(default=24, description=(
        "a re-run reuses landings younger than this (refetch_after_hours)"))

    def limiter(self) -> Limiter:
        overrides = overrides_from_json(self.rate_limits) if self.rate_limits else None
        return Limiter(amplitude_rules(overrides, project=self.project),
                       limit_store(self.limits_path, self.limits_dsn),
                       max_wait_seconds=self.limit_wait_seconds)

    def client(self) -> ExportClient:
        return ExportClient(
            self.base_url,
            self.api_key,
            self.secret_key,
            region=self.region,
            timeouts=Timeouts(self.connect_timeout_seconds, self.read_timeout_seconds),
            retry=RetryPolicy(
                max_attempts=self.max_attempts,
                max_elapsed_seconds=self.max_retry_seconds,
                base_delay_seconds=self.base_delay_seconds,
            ),
            gate=AmplitudeGate(self.limiter(), project=self.project),
            key_variables=self.key_variables,
        )
