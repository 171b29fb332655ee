"""Shared fixtures: a real simulator on 127.0.0.1, a small deterministic project, temp storage."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.amplitude.export import ExportClient
from pipeline.http import RetryPolicy, Timeouts
from pipeline.source import Project
from pipeline.warehouse import Warehouse
from simulator import HourProfile, Simulator, SimulatorConfig
from tests.servers.dask import dask_cluster  # noqa: F401  (fixtures, docs/scaling.md)
from tests.servers.postgres import postgres_dsn, postgres_server  # noqa: F401
from tests.servers.seaweed import seaweed_s3  # noqa: F401

DAY = datetime(2026, 3, 1, tzinfo=UTC)
AMPLITUDE = Project.named("amplitude", "default")  # the environment's project
SMALL = SimulatorConfig(profile=HourProfile(base=40), events_per_member=25)
EMPTY_HOURS = [DAY + timedelta(hours=h) for h in range(24)
               if SMALL.hour_count(DAY + timedelta(hours=h)) == 0]


class FakeClock:
    """Time that passes only when the client sleeps, so backoff tests take no wall time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(SMALL) as sim:
        yield sim


def make_client(sim: Simulator, **retry: float) -> ExportClient:
    """A client with short timeouts and no real sleeping, so fault tests stay fast."""
    clock = FakeClock()
    client = ExportClient(
        sim.url, sim.config.api_key, sim.config.secret_key,
        timeouts=Timeouts(connect_seconds=2, read_seconds=float(retry.pop("read", 2.0))),
        retry=RetryPolicy(**{"max_attempts": 4, "base_delay_seconds": 0.01, **retry}),
        sleep=clock.sleep, clock=clock, seed=1,
    )
    client.sleeps = clock.sleeps  # type: ignore[attr-defined]
    return client


def write_member(path: Path, lines: list[dict | str]) -> Path:
    with gzip.open(path, "wb") as out:
        for line in lines:
            text = line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)
            out.write(text.encode() + b"\n")
    return path


def amplitude_warehouse(path: Path, **options: object) -> Warehouse:
    """A warehouse holding the Amplitude project configured from the environment."""
    return Warehouse(path, projects=[AMPLITUDE], **options)  # type: ignore[arg-type]
