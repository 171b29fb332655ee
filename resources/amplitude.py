"""The Export API client as a Dagster resource; keys arrive through ``EnvVar`` only."""


import dagster as dg
from pydantic import Field

from pipeline.amplitude.export import ExportClient
from pipeline.http import RetryPolicy, Timeouts


class AmplitudeExportResource(dg.ConfigurableResource):
    api_key: str = Field(repr=False, description="pass dg.EnvVar('AMPLITUDE_API_KEY')")
    secret_key: str = Field(repr=False, description="pass dg.EnvVar('AMPLITUDE_SECRET_KEY')")
    region: str = "us"
    base_url: str = Field(description="Export host: the region's, or AMPLITUDE_BASE_URL.")
    lag_hours: int = 2
    max_window_hours: int = 24
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 300.0
    max_attempts: int = 6
    max_retry_seconds: float = 900.0
    base_delay_seconds: float = 1.0

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
        )
