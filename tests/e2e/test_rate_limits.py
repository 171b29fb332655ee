"""Two runs at once against a simulator with scaled-down limits: the client keeps within them."""

import json
import threading
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from assets.definitions import build_defs
from simulator import Simulator, SimulatorConfig
from simulator.limits import RateLimits
from tests.conftest import DAY, SMALL

pytestmark = pytest.mark.slow
TODAY = datetime.now(UTC).date()
LIMITS = RateLimits(taxonomy_concurrent_cost=2, taxonomy_cost_hourly=12,
                    taxonomy_hour_seconds=3.0)
# The same numbers for the client, as an operator with another plan would give them.
CLIENT_LIMITS = json.dumps({"taxonomy": {"max_concurrent_cost": 2, "budgets": [[3.0, None, 12]]}})


def test_two_concurrent_runs_share_the_limits_and_never_meet_a_429(tmp_path):
    config = SimulatorConfig(profile=SMALL.profile, events_per_member=SMALL.events_per_member,
                             first_hour=DAY, last_hour=DAY + timedelta(hours=23),
                             limits=LIMITS, api_latency_seconds=0.05)
    with Simulator(config) as sim:
        results: dict[str, dg.ExecuteInProcessResult] = {}
        # Made here: an instance's SQLite storage must be closed in the thread that made it.
        instances = {name: dg.DagsterInstance.ephemeral() for name in ("a", "b")}

        def run(name: str) -> None:
            env = {"AMPLITUDE_API_KEY": config.api_key, "AMPLITUDE_SECRET_KEY": config.secret_key,
                   "AMPLITUDE_BASE_URL": sim.url, "AMPLITUDE_START": f"{DAY:%Y-%m-%dT%H}",
                   "WAREHOUSE_PATH": str(tmp_path / name / "warehouse.duckdb"),
                   "LAKE_ROOT": str(tmp_path / name / "lake"),
                   "LIMITS_PATH": str(tmp_path / "limits.sqlite"),  # one machine, one limiter
                   "AMPLITUDE_RATE_LIMITS": CLIENT_LIMITS}
            defs = build_defs(env)
            keys = {dg.AssetKey(["amplitude", "taxonomy_event_types"]),
                    dg.AssetKey(["amplitude", "taxonomy_event_properties"])}
            with pytest.MonkeyPatch.context() as patch:
                for key, value in env.items():
                    patch.setenv(key, value)
                results[name] = dg.materialize(
                    [a for a in defs.assets if set(a.keys) & keys], resources=defs.resources,
                    instance=instances[name], partition_key=TODAY.isoformat(),
                    raise_on_error=False)

        threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
        taxonomy = [r for r in sim.requests if "/taxonomy/" in r.path]
        throttled, peak = sim.throttled(), sim.peak_in_flight("taxonomy")

    assert all(result.success for result in results.values()), results
    assert len(taxonomy) > 2 * LIMITS.taxonomy_cost_hourly  # more than one window's budget
    assert throttled == []
    assert 1 < peak <= LIMITS.taxonomy_concurrent_cost  # the runs did overlap, within the cap
    arrivals = sorted(r.time for r in taxonomy)
    for index, start in enumerate(arrivals):  # every sliding window of the simulator's own clock
        within = [t for t in arrivals[index:] if t < start + LIMITS.taxonomy_hour_seconds]
        assert len(within) <= LIMITS.taxonomy_cost_hourly
