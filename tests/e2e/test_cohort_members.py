"""amplitude/cohorts + amplitude/cohort_members through Dagster against the simulator over HTTP:
the table holds what the simulator served, a re-run of the day gives the same rows without a
download, a past day replays its landing or is refused, and the quota refusal reaches the UI."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.amplitude.cohort_members import build_cohort_member_assets
from assets.amplitude.snapshots import build_snapshot_assets, snapshot_days
from assets.namespace import Names
from pipeline.amplitude import cohort_members as cm
from pipeline.amplitude.client import AmplitudeClient
from pipeline.amplitude.cohorts import fetch_cohorts
from pipeline.amplitude.settings import AmplitudeOptions
from pipeline.lake import Lake
from pipeline.snapshots import Snapshots
from resources import AmplitudeExportResource, LakeResource, WarehouseResource
from resources.storage import WarehouseProject
from simulator import DEFAULT_COHORTS, Simulator, SimulatorConfig
from tests.conftest import AMPLITUDE, amplitude_warehouse
from tests.e2e.conftest import hour_metadata

pytestmark = pytest.mark.slow

TODAY = datetime.now(UTC).date()
PROPS = ("country", "gp:plan")
CONFIG = SimulatorConfig(cohort_polls_before_complete=1)
RUN = {"ops": {"amplitude__cohort_members": {"config": {
    "poll_first_seconds": 0.02, "poll_max_seconds": 0.1, "poll_timeout_minutes": 1.0}}}}
LISTED = [c.id for c in DEFAULT_COHORTS if not c.archived]
COHORT_MEMBERS = dg.AssetKey(["amplitude", "cohort_members"])


class Location:
    def __init__(self, sim: Simulator, root: Path, **settings) -> None:
        self.sim, self.root = sim, root
        days, names = snapshot_days(TODAY - timedelta(days=7)), Names(AMPLITUDE)
        options = AmplitudeOptions(api_key_env="AMPLITUDE_API_KEY",
                                   secret_key_env="AMPLITUDE_SECRET_KEY", cohort_props=PROPS,
                                   **settings)
        cohorts = next(a for a in build_snapshot_assets(names, options, days)
                       if a.key == dg.AssetKey(["amplitude", "cohorts"]))
        members = build_cohort_member_assets(names, options, days)
        self.assets = [cohorts, *members]
        self.resources = {
            "amplitude": AmplitudeExportResource(api_key=sim.config.api_key,
                                                 secret_key=sim.config.secret_key,
                                                 base_url=sim.url),
            "lake": LakeResource(root=str(root / "lake")),
            "warehouse": WarehouseResource(path=str(root / "warehouse.duckdb"), projects=[
                WarehouseProject(source="amplitude", name="default")]),
        }

    def materialize(self, day=TODAY, assets=None, **kwargs) -> dg.ExecuteInProcessResult:
        with dg.instance_for_test() as instance:
            return dg.materialize(assets or self.assets, resources=self.resources,
                                  partition_key=day.isoformat(), run_config=RUN,
                                  instance=instance, **kwargs)

    def table(self, day=TODAY) -> dict[str, set[tuple]]:
        con = duckdb.connect(str(self.root / "warehouse.duckdb"), read_only=True)
        try:
            rows = con.execute("SELECT cohort_id, amplitude_id, user_id, properties, "
                               "downloaded_on FROM amplitude.cohort_members WHERE "
                               "snapshot_date = ?", [day]).fetchall()
        finally:
            con.close()
        out: dict[str, set[tuple]] = {}
        for cohort_id, *row in rows:
            row[2] = json.loads(row[2])
            out.setdefault(cohort_id, set()).add((row[0], row[1], json.dumps(row[2]), row[3]))
        return out


def served(sim: Simulator, on=TODAY) -> dict[str, set[tuple]]:
    """Each listed cohort's members as the simulator serves them, parsed with the csv module."""
    out: dict[str, set[tuple]] = {}
    for cohort_id in LISTED:
        text = b"".join(sim.cohort_csv(cohort_id, PROPS)).decode()
        header, *rows = csv.reader(io.StringIO(text))
        for r in rows:
            props = json.dumps({k: v or None for k, v in zip(header[2:], r[2:], strict=True)})
            out.setdefault(cohort_id, set()).add((int(r[0]), r[1] or None, props, on))
    return out


@pytest.fixture
def sim():
    with Simulator(CONFIG) as simulator:
        yield simulator
        assert simulator.errors == []


def test_members_match_what_the_simulator_served_and_a_rerun_changes_nothing(sim, tmp_path):
    where = Location(sim, tmp_path)
    result = where.materialize()
    assert result.success
    want = served(sim)
    assert where.table() == want and set(want) == {"k3x9qpl", "p0w3rus", "n3wsl7r"}
    meta = hour_metadata(result, COHORT_MEMBERS)[TODAY.isoformat()]
    assert meta["dagster/row_count"] == 1_200 + 350 + 60
    assert (meta["cohorts_downloaded"], meta["cohorts_carried_forward"]) == (4, 0)
    assert meta["downloads_this_month"] == 4 and meta["seconds"] > 0
    storage = [r for r in sim.requests if r.host == "storage"]
    assert len(storage) == 4 and all(r.status == 200 for r in storage)

    sim.reset_log()
    again = where.materialize()
    assert again.success and where.table() == want
    meta = hour_metadata(again, COHORT_MEMBERS)[TODAY.isoformat()]
    assert (meta["cohorts_downloaded"], meta["cohorts_carried_forward"]) == (0, 4)
    assert meta["downloads_this_month"] == 4
    assert [r.path for r in sim.requests] == ["/api/3/cohorts"]  # the list, no download


def test_a_past_day_replays_its_landing_or_is_refused(sim, tmp_path):
    where, yesterday = Location(sim, tmp_path), TODAY - timedelta(days=1)
    # yesterday's snapshot, taken yesterday (the core's `today` stands in for the calendar)
    snaps = Snapshots(Lake(tmp_path / "lake"), "amplitude")
    warehouse = amplitude_warehouse(tmp_path / "warehouse.duckdb")

    def history() -> cm.History:
        with warehouse.connect() as con:
            return cm.read_history(con, "amplitude", datetime.now(UTC))

    with AmplitudeClient(sim.url, sim.config.api_key, sim.config.secret_key) as client:
        snaps.take("cohorts", yesterday, partial(fetch_cohorts, client), today=yesterday)
        snaps.take(cm.TABLE, yesterday, partial(
            cm.fetch_members, client, snaps, yesterday, history=history,
            selection=cm.Selection(props=PROPS), polling=cm.Polling(10, 0.02, 0.1)),
            today=yesterday)
    sim.reset_log()
    result = where.materialize(yesterday)
    assert result.success and sim.requests == []
    assert where.table(yesterday) == served(sim)  # downloaded (for real) today
    meta = hour_metadata(result, COHORT_MEMBERS)[yesterday.isoformat()]
    assert meta["taken_from"].startswith("landing of") and meta["requests"] == 0

    refused = where.materialize(TODAY - timedelta(days=3), assets=where.assets[1:],
                                raise_on_error=False)
    assert not refused.success and sim.requests == []
    failure = next(e for e in refused.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.cause.message
    assert "amplitude/cohort_members" in message and "never taken" in message


def test_the_quota_refusal_fails_the_step_with_the_months_count(sim, tmp_path):
    where = Location(sim, tmp_path, cohort_monthly_quota=4, cohort_quota_share=0.75)
    result = where.materialize(raise_on_error=False)
    assert not result.success
    assert not [r for r in sim.requests if r.path.startswith("/api/5/")]
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "limit of 3 (75% of AMPLITUDE_COHORT_MONTHLY_QUOTA=4)" in \
        failure.step_failure_data.user_failure_data.description
    meta = failure.step_failure_data.user_failure_data.metadata
    assert meta["downloads_this_month"].value == 0 and meta["quota_limit"].value == 3
