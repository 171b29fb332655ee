"""Fixtures for the Mixpanel core: the real Mixpanel simulator on 127.0.0.1, and clients of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pipeline.http import Credentials, RetryPolicy, Timeouts
from pipeline.mixpanel.export import MixpanelClient
from pipeline.source import Project
from pipeline.warehouse import Warehouse
from simulator import MixpanelConfig, MixpanelSimulator
from tests.conftest import FakeClock

SPRING = date(2026, 3, 8)  # America/Los_Angeles springs forward at 02:00
FALL = date(2026, 11, 1)  # and falls back at 02:00
ZONE = "America/Los_Angeles"
VARIABLES = "MIXPANEL_SERVICE_ACCOUNT_USERNAME, MIXPANEL_SERVICE_ACCOUNT_SECRET and " \
            "MIXPANEL_PROJECT_ID"


@pytest.fixture
def mp_sim() -> Iterator[MixpanelSimulator]:
    with MixpanelSimulator(MixpanelConfig(gap_readings=2, limits_enabled=False)) as sim:
        yield sim
        assert sim.errors == []


def make_client(sim: MixpanelSimulator, *, username: str | None = None,
                secret: str | None = None, project_id: str | None = "default",
                variables: str = VARIABLES, **options: Any) -> MixpanelClient:
    """A service-account client with short timeouts and a clock that only moves on sleep."""
    clock = FakeClock()
    config = sim.config
    retry = options.pop("retry", RetryPolicy(max_attempts=4, base_delay_seconds=0.01))
    client = MixpanelClient(
        sim.url, Credentials(config.username if username is None else username,
                             config.secret if secret is None else secret, variables),
        project_id=str(config.project_id) if project_id == "default" else project_id,
        timeouts=Timeouts(connect_seconds=2, read_seconds=5), retry=retry,
        sleep=clock.sleep, clock=clock, seed=1, **options)
    client.sleeps = clock.sleeps  # type: ignore[attr-defined]
    return client


def open_warehouse(path: Path) -> Warehouse:
    """A warehouse holding the Mixpanel project configured from the environment."""
    return Warehouse(path, projects=[Project.named("mixpanel", "default")])
