"""Amplitude's side of the HTTP layer: its credentials, named the way the operator sets them.

Every Amplitude endpoint (export, cohorts, taxonomy, Dashboard REST) takes the project's API key
and secret key as HTTP Basic auth on the region's host, so one client serves them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.http import ApiClient, Credentials, RequestGate, RetryPolicy, Timeouts, open_gate

CREDENTIAL_VARIABLES = "AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY"


class AmplitudeClient(ApiClient):
    def __init__(
        self,
        base_url: str,
        api_key: str,
        secret_key: str,
        *,
        region: str = "us",
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        gate: RequestGate = open_gate,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        super().__init__(base_url, Credentials(api_key, secret_key, CREDENTIAL_VARIABLES),
                         region=region, timeouts=timeouts, retry=retry, gate=gate, sleep=sleep,
                         clock=clock, seed=seed)
