"""Fixtures for the simulator tests: one running simulator per module, and an HTTP client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from simulator import Simulator, SimulatorConfig


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(events_per_member=50)) as simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    sim.clear_faults()
    sim.reset_log()
    auth = (sim.config.api_key, sim.config.secret_key)
    with httpx.Client(base_url=sim.url, auth=auth, timeout=10) as http:
        yield http
    assert sim.errors == []
