"""The hourly events job, the daily snapshots job, and their schedules (stopped until switched on
in the UI)."""

from __future__ import annotations

import dagster as dg

from assets.events import EVENTS

amplitude_hourly = dg.define_asset_job(
    "amplitude_hourly",
    selection=dg.AssetSelection.assets(EVENTS).upstream(),
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
