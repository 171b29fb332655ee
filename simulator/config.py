"""The simulator's configuration: which project, which credentials, how much data, which limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from simulator.generator import HourProfile, hour_index


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulated Amplitude project holds and how its Export API behaves.

    ``hour_counts`` overrides the profile's event count for the given UTC hours (a naive datetime is
    taken as UTC). ``events_per_member`` splits busy hours into several gzip members, numbered from
    ``first_member_number``. A zip bigger than ``size_cap_bytes`` gets Amplitude's 400, and a window
    spanning more than ``max_hours_before_504`` hours gets its 504.
    """

    project_id: int = 636686
    api_key: str = "sim-api-key"
    secret_key: str = "sim-secret-key"
    seed: int = 0
    profile: HourProfile = field(default_factory=HourProfile)
    hour_counts: Mapping[datetime, int] = field(default_factory=dict)
    events_per_member: int = 20_000
    first_member_number: int = 0
    project_folder: bool = True
    size_cap_bytes: int = 4 * 1024**3
    max_hours_before_504: int | None = None
    gzip_level: int = 1  # 1 is fastest; real exports compress harder, readers must not care
    workers: int | None = None  # processes that build big archives (None: one per CPU)
    parallel_min_events: int = 100_000  # smaller archives are built in the serving thread

    def __post_init__(self) -> None:
        if self.events_per_member < 1:
            raise ValueError("events_per_member must be at least 1")
        counts = {hour_index(hour): int(n) for hour, n in self.hour_counts.items()}
        object.__setattr__(self, "_counts_by_index", counts)

    def hour_count(self, hour: datetime) -> int:
        """How many events were uploaded in the UTC hour ``hour`` falls in."""
        counts: dict[int, int] = self._counts_by_index  # type: ignore[attr-defined]
        n = counts.get(hour_index(hour))
        return self.profile.count(hour) if n is None else n
