"""Late data: an hour fetched again after it settled takes in the stragglers, and says so."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import dagster as dg

from assets.partitions import partition_key
from tests.conftest import DAY
from tests.e2e.conftest import EVENTS, assert_hour_matches_served, hour_metadata

H = timedelta(hours=1)
HOUR = DAY + 8 * H


def test_a_refetch_loads_late_arrivals_and_counts_them(project):
    served = project.sim.hour_count(HOUR)
    project.sim.config = replace(project.sim.config, hour_counts={HOUR: served - 4})
    assert project.materialize(HOUR).success
    project.sim.config = replace(project.sim.config, hour_counts={HOUR: served})  # 4 arrive late
    project.sim.clear_cache()

    defs = project.defs()
    job = defs.resolve_job_def("amplitude_late_data")
    schedule = defs.resolve_schedule_def("amplitude_late_data_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    tick = HOUR + timedelta(hours=25, minutes=40)  # 24 settle hours after the hour ended
    with dg.build_schedule_context(instance=project.instance, scheduled_execution_time=tick,
                                   repository_def=defs.get_repository_def()) as context:
        request = schedule.evaluate_tick(context).run_requests[0]
    assert request.partition_key == partition_key(HOUR)
    result = job.execute_in_process(instance=project.instance, run_config=request.run_config,
                                    partition_key=request.partition_key,
                                    resources=defs.resources)
    assert result.success
    metadata = hour_metadata(result, EVENTS)[partition_key(HOUR)]
    assert (metadata["rows_added"], metadata["rows_removed"], metadata["rows_changed"]) == (4, 0, 0)
    assert_hour_matches_served(project, HOUR)
    with project.warehouse() as con:
        assert con.execute("SELECT rows, rows_added, rows_removed, rows_changed "
                           "FROM amplitude._loads WHERE upload_hour = ?", [HOUR]).fetchone() == (
            served, 4, 0, 0)


def test_without_refetch_a_rerun_reuses_the_young_landing(project):
    assert project.materialize(HOUR).success
    requests = len(project.sim.export_requests())
    again = project.materialize(HOUR)
    assert again.success and len(project.sim.export_requests()) == requests
    assert hour_metadata(again, EVENTS)[partition_key(HOUR)]["rows_added"] == 0
