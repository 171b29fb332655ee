"""Amplitude's side of the HTTP layer: its credentials, named the way the operator sets them.

Every Amplitude endpoint (export, cohorts, taxonomy, Dashboard REST) takes the project's API key
and secret key as HTTP Basic auth on the region's host, so one client serves them all.
"""

from __future__ import annotations

from typing import Any

from pipeline.http import ApiClient, Credentials

CREDENTIAL_VARIABLES = "AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY"


class AmplitudeClient(ApiClient):
    def __init__(self, base_url: str, api_key: str, secret_key: str, *,
                 key_variables: str = CREDENTIAL_VARIABLES, **options: Any) -> None:
        """``key_variables`` names the keys in messages (a YAML project's own variables);
        ``options`` are ``ApiClient``'s: region, timeouts, retry, gate, sleep, clock, seed."""
        super().__init__(base_url, Credentials(api_key, secret_key, key_variables), **options)
