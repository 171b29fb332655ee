"""Shared fixtures: a real simulator on 127.0.0.1, a small deterministic project, temp storage."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.amplitude.client import ExportClient, RetryPolicy, Timeouts
from pipeline.simulator import HourProfile, Simulator, SimulatorConfig

DAY = datetime(2026, 3, 1, tzinfo=UTC)
SMALL = SimulatorConfig(profile=HourProfile(base=40), events_per_member=25)


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(SMALL) as sim:
        yield sim


def make_client(sim: Simulator, **retry: float) -> ExportClient:
    """A client with short timeouts and no real sleeping, so fault tests stay fast."""
    sleeps: list[float] = []
    client = ExportClient(
        sim.url, sim.config.api_key, sim.config.secret_key,
        timeouts=Timeouts(connect_seconds=2, read_seconds=float(retry.pop("read", 2.0))),
        retry=RetryPolicy(**{"max_attempts": 4, "base_delay_seconds": 0.01, **retry}),
        sleep=sleeps.append, seed=1,
    )
    client.sleeps = sleeps  # type: ignore[attr-defined]
    return client


def write_member(path: Path, lines: list[dict | str]) -> Path:
    with gzip.open(path, "wb") as out:
        for line in lines:
            text = line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)
            out.write(text.encode() + b"\n")
    return path
