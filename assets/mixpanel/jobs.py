"""One Mixpanel project's jobs and their schedules, both stopped until switched on in the UI:

- ``<namespace>_daily``: each tick (01:20 in the partitions' zone) loads the newest ready day;
- ``<namespace>_late_data``: each tick (02:50) fetches again, in one request, the
  ``settle_days`` days before the newest, so every day is re-fetched once a day for that many
  days after it (Mixpanel warns that offline mobile data may take up to 5 days).
"""

from datetime import date, timedelta

import dagster as dg

from assets.namespace import Names

LATE_DATA_TAG = "mixpanel/late_data"


def late_data_range(partitions: dg.DailyPartitionsDefinition, newest: str,
                    settle_days: int) -> tuple[str, str] | None:
    """The days a late-data tick re-fetches: the ``settle_days`` before ``newest``."""
    last = date.fromisoformat(newest) - timedelta(days=1)
    first = max(date.fromisoformat(newest) - timedelta(days=settle_days),
                date.fromisoformat(partitions.get_first_partition_key() or newest))
    return None if settle_days < 1 or last < first else (first.isoformat(), last.isoformat())


def build_jobs(names: Names, partitions: dg.DailyPartitionsDefinition,
               settle_days: int) -> dg.Definitions:
    loads = dg.AssetSelection.assets(names.key("events")).upstream()
    daily = dg.define_asset_job(names.name("daily"), selection=loads,
                                description="Fetch, normalize and load the newest ready day.")
    late = dg.define_asset_job(
        names.name("late_data"), selection=loads,
        description=f"Fetch the last {settle_days} days again and load whatever arrived late "
        "(the ledger and metadata count rows added, removed and changed).")

    @dg.schedule(job=late, cron_schedule="50 2 * * *", execution_timezone=partitions.timezone,
                 default_status=dg.DefaultScheduleStatus.STOPPED,
                 name=names.name("late_data_schedule"),
                 description=f"Re-fetch the {settle_days} days before the newest, once a day "
                 "(off by default; settle_days).")
    def late_data_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        keys = partitions.get_partition_keys(current_time=context.scheduled_execution_time)
        newest = keys[-1] if keys else None
        days = None if newest is None else late_data_range(partitions, newest, settle_days)
        if days is None:
            return dg.SkipReason("no day old enough to fetch again yet")
        return dg.RunRequest(
            run_key=f"{names.namespace}-late-data-{newest}",
            tags={"dagster/asset_partition_range_start": days[0],
                  "dagster/asset_partition_range_end": days[1], LATE_DATA_TAG: "true"})

    return dg.Definitions(jobs=[daily, late], schedules=[
        dg.build_schedule_from_partitioned_job(daily, hour_of_day=1, minute_of_hour=20,
                                               name=names.name("daily_schedule"),
                                               default_status=dg.DefaultScheduleStatus.STOPPED),
        late_data_schedule])
