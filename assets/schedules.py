"""The hourly events job, the daily snapshots job, and their schedules (stopped until switched on
in the UI)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from assets.events import EVENTS
from assets.freshness import FRESHNESS_CHECK
from assets.partitions import partition_key
from assets.reconciliation import RECONCILE_CHECKS
from pipeline.hours import floor_hour

# The checks that run on schedules of their own stay out of the loads' runs.
EVENT_LOADS = (dg.AssetSelection.assets(EVENTS).upstream()
               - dg.AssetSelection.checks(FRESHNESS_CHECK, *RECONCILE_CHECKS))

amplitude_hourly = dg.define_asset_job(
    "amplitude_hourly",
    selection=EVENT_LOADS,
    description="Fetch, normalize and load Amplitude upload hours.",
)


def hourly_schedule(
    job: dg.UnresolvedAssetJobDefinition,
) -> dg.ScheduleDefinition | dg.UnresolvedPartitionedAssetScheduleDefinition:
    """Each tick asks for the newest partition, which the lag makes the newest ready hour."""
    return dg.build_schedule_from_partitioned_job(
        job, minute_of_hour=10, name="amplitude_hourly_schedule",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )


amplitude_late_data = dg.define_asset_job(
    "amplitude_late_data",
    selection=EVENT_LOADS,
    description="Fetch upload hours again once they have settled, and load whatever arrived late.",
)

REFETCH = {"ops": {"amplitude__raw_export": {"config": {"refetch": True}}}}


def late_data_schedule(settle_hours: int) -> dg.ScheduleDefinition:
    """Each tick re-fetches the hour that settled since the last one, so every hour is taken
    twice: when first ready, and ``settle_hours`` later, when Amplitude's stragglers are in."""

    @dg.schedule(job=amplitude_late_data, cron_schedule="40 * * * *", execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.STOPPED,
                 name="amplitude_late_data_schedule",
                 description=f"Re-fetch each upload hour {settle_hours} h after it (off by "
                 "default; AMPLITUDE_SETTLE_HOURS).")
    def schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        hour = floor_hour(context.scheduled_execution_time) - timedelta(hours=settle_hours + 1)
        key = partition_key(hour)
        return dg.RunRequest(run_key=f"late-data-{key}", partition_key=key, run_config=REFETCH,
                             tags={"amplitude/late_data": "true"})

    return schedule


snapshots_daily = dg.define_asset_job(
    "amplitude_snapshots_daily",
    selection=dg.AssetSelection.groups("amplitude_snapshots"),
    description="Take today's snapshots: cohorts and their members, taxonomy, events list, "
    "Amplitude's daily counts.",
)


@dg.schedule(job=snapshots_daily, cron_schedule="30 1 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED, name="amplitude_snapshots_schedule")
def snapshots_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Today's partition: a snapshot can only be taken on its own day."""
    day = context.scheduled_execution_time.date()
    return dg.RunRequest(run_key=f"snapshots-{day}", partition_key=day.isoformat())
