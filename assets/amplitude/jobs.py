"""One Amplitude project's jobs and their schedules, all stopped until switched on in the UI:
hourly loads (a schedule from the Export API, a sensor from the storage export), the late-data
re-fetch, the daily snapshots, freshness and reconciliation."""

from datetime import timedelta
from typing import Any

import dagster as dg

from assets.amplitude.checks import freshness_key, reconcile_keys
from assets.amplitude.storage_sensor import build_storage_sensor
from assets.namespace import Names
from assets.partitions import partition_key
from pipeline.amplitude.settings import AmplitudeOptions
from pipeline.hours import floor_hour

STOPPED = dg.DefaultScheduleStatus.STOPPED


def build_jobs(names: Names, options: AmplitudeOptions) -> dg.Definitions:
    # The checks that run on schedules of their own stay out of the loads' runs.
    loads = (dg.AssetSelection.assets(names.key("events")).upstream()
             - dg.AssetSelection.checks(freshness_key(names), *reconcile_keys(names)))
    hourly = dg.define_asset_job(names.name("hourly"), selection=loads,
                                 description="Fetch, normalize and load Amplitude upload hours.")
    late = dg.define_asset_job(
        names.name("late_data"), selection=loads,
        description="Fetch upload hours again once they have settled, and load whatever "
        "arrived late.")
    snapshots = dg.define_asset_job(
        names.name("snapshots_daily"), selection=dg.AssetSelection.groups(
            f"{names.group}_snapshots"),
        description="Take today's snapshots: cohorts and their members, taxonomy, events list, "
        "Amplitude's daily counts.")
    freshness = dg.define_asset_job(
        names.name("freshness"), selection=dg.AssetSelection.checks(freshness_key(names)),
        description="Check that the events keep up with Amplitude.")
    reconcile = dg.define_asset_job(
        names.name("reconcile"), selection=dg.AssetSelection.checks(*reconcile_keys(names)),
        description="Reconcile settled days with Amplitude's own daily counts.")
    # The storage export is listed anew every run: what Amplitude rewrote is read again anyway.
    refetch = ({} if options.from_storage else
               {"ops": {f"{names.namespace}__raw_export": {"config": {"refetch": True}}}})

    @dg.schedule(job=late, cron_schedule="40 * * * *", execution_timezone="UTC",
                 default_status=STOPPED, name=names.name("late_data_schedule"),
                 description=f"Re-fetch each upload hour {options.settle_hours} h after it (off "
                 "by default; settle_hours).")
    def late_data_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        """Each tick re-fetches the hour that settled since the last one, so every hour is taken
        twice: when first ready, and ``settle_hours`` later, when Amplitude's stragglers are in."""
        hour = floor_hour(context.scheduled_execution_time) - timedelta(
            hours=options.settle_hours + 1)
        key = partition_key(hour)
        return dg.RunRequest(run_key=f"late-data-{key}", partition_key=key, run_config=refetch,
                             tags={"amplitude/late_data": "true"})

    @dg.schedule(job=snapshots, cron_schedule="30 1 * * *", execution_timezone="UTC",
                 default_status=STOPPED, name=names.name("snapshots_schedule"))
    def snapshots_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        """Today's partition: a snapshot can only be taken on its own day."""
        day = context.scheduled_execution_time.date()
        return dg.RunRequest(run_key=f"snapshots-{day}", partition_key=day.isoformat())

    # Each tick asks for the newest partition, which the lag makes the newest ready hour; the
    # storage export's hours are ready when Amplitude says so, which the sensor watches.
    hourly_start: list[Any] = ([] if options.from_storage else [
        dg.build_schedule_from_partitioned_job(hourly, minute_of_hour=10,
                                               name=names.name("hourly_schedule"),
                                               default_status=STOPPED)])
    return dg.Definitions(
        jobs=[hourly, late, snapshots, freshness, reconcile],
        sensors=[build_storage_sensor(names, options, hourly)] if options.from_storage else [],
        schedules=[
            *hourly_start, late_data_schedule, snapshots_schedule,
            dg.ScheduleDefinition(
                job=freshness, cron_schedule="*/30 * * * *", execution_timezone="UTC",
                name=names.name("freshness_schedule"), default_status=STOPPED,
                description="Every 30 minutes; switch it on with the hourly schedule."),
            dg.ScheduleDefinition(
                job=reconcile, cron_schedule="0 3 * * *", execution_timezone="UTC",
                name=names.name("reconcile_schedule"), default_status=STOPPED,
                description="Daily, after the snapshots' 01:30 run has taken Amplitude's "
                "counts."),
        ])
