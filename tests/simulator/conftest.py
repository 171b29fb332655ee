"""Fixtures for the simulator tests: one running simulator per module, and an HTTP client."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

try:  # the repository root is not always on sys.path (plain `pytest` without an install)
    import pipeline  # noqa: F401
except ImportError:  # pragma: no cover - depends on how pytest is started
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx

from pipeline.simulator import Simulator, SimulatorConfig


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
