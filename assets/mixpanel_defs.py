"""The Mixpanel part of the code location: assets, jobs, schedules and the client resource.

It is added only when Mixpanel is configured, i.e. when any ``MIXPANEL_*`` variable is set: the
partitions need ``MIXPANEL_TIMESTAMPS`` (their days are the project's or UTC's), which has no
default, so an Amplitude-only deployment shows no Mixpanel assets, and a half-configured
Mixpanel fails the code location's load with the message naming what is missing, rather than
hiding the source.

Two jobs, both scheduled and both stopped until switched on in the UI, as Amplitude's:

- ``mixpanel_daily``: each tick (01:20 in the partitions' zone) loads the newest ready day;
- ``mixpanel_late_data``: each tick (02:50) fetches again, in one request, the
  ``MIXPANEL_SETTLE_DAYS`` days before the newest, so every day is re-fetched once a day for
  that many days after it (Mixpanel warns that offline mobile data may take up to 5 days).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import dagster as dg

from assets.mixpanel import EVENTS, build_mixpanel_assets, daily_partitions
from pipeline.mixpanel.settings import API_SECRET, SERVICE_ACCOUNT, MixpanelSettings
from pipeline.settings import Settings
from resources import MixpanelExportResource

PREFIX = "MIXPANEL_"
LOADS = dg.AssetSelection.assets(EVENTS).upstream()
LATE_DATA_TAG = "mixpanel/late_data"

mixpanel_daily = dg.define_asset_job(
    "mixpanel_daily", selection=LOADS,
    description="Fetch, normalize and load the newest ready Mixpanel day.")
mixpanel_late_data = dg.define_asset_job(
    "mixpanel_late_data", selection=LOADS,
    description="Fetch the last MIXPANEL_SETTLE_DAYS Mixpanel days again and load whatever "
    "arrived late (the ledger and metadata count rows added, removed and changed).")


def settings_from_env(env: Mapping[str, str] | None = None) -> MixpanelSettings | None:
    """The Mixpanel settings, or None when no ``MIXPANEL_*`` variable is set."""
    env = os.environ if env is None else env
    if not any(name.startswith(PREFIX) and value.strip() for name, value in env.items()):
        return None
    return MixpanelSettings.from_env(env)


def late_data_range(partitions: dg.DailyPartitionsDefinition, newest: str,
                    settle_days: int) -> tuple[str, str] | None:
    """The days a late-data tick re-fetches: the ``settle_days`` before ``newest``."""
    last = date.fromisoformat(newest) - timedelta(days=1)
    first = max(date.fromisoformat(newest) - timedelta(days=settle_days),
                date.fromisoformat(partitions.get_first_partition_key() or newest))
    return None if settle_days < 1 or last < first else (first.isoformat(), last.isoformat())


def late_data_schedule(partitions: dg.DailyPartitionsDefinition,
                       settle_days: int) -> dg.ScheduleDefinition:
    @dg.schedule(job=mixpanel_late_data, cron_schedule="50 2 * * *",
                 execution_timezone=partitions.timezone,
                 default_status=dg.DefaultScheduleStatus.STOPPED,
                 name="mixpanel_late_data_schedule",
                 description=f"Re-fetch the {settle_days} Mixpanel days before the newest, once "
                 "a day (off by default; MIXPANEL_SETTLE_DAYS).")
    def schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        keys = partitions.get_partition_keys(current_time=context.scheduled_execution_time)
        newest = keys[-1] if keys else None
        days = None if newest is None else late_data_range(partitions, newest, settle_days)
        if days is None:
            return dg.SkipReason("no day old enough to fetch again yet")
        return dg.RunRequest(
            run_key=f"mixpanel-late-data-{newest}",
            tags={"dagster/asset_partition_range_start": days[0],
                  "dagster/asset_partition_range_end": days[1], LATE_DATA_TAG: "true"})

    return schedule


def resource(mixpanel: MixpanelSettings, settings: Settings) -> MixpanelExportResource:
    """Credentials as ``EnvVar``s, only those in use: a service account, else the project
    secret as the username (with a blank password)."""
    username: Any = dg.EnvVar(API_SECRET)
    secret: Any = ""
    if mixpanel.deprecated_auth is None:
        username, secret = dg.EnvVar(SERVICE_ACCOUNT[0]), dg.EnvVar(SERVICE_ACCOUNT[1])
    return MixpanelExportResource(
        username=username, secret=secret, credential_variables=mixpanel.credential_variables,
        project_id=mixpanel.project_id, deprecated_auth=mixpanel.deprecated_auth,
        day_timezone=mixpanel.partition_zone.key, region=mixpanel.region,
        base_url=mixpanel.base_url, lag_days=mixpanel.lag_days,
        max_window_days=mixpanel.max_window_days, time_in_ms=mixpanel.time_in_ms,
        limits_path=str(settings.limits_path))


def mixpanel_definitions(mixpanel: MixpanelSettings, settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(mixpanel.start, mixpanel.partition_zone.key,
                                  mixpanel.lag_days)
    return dg.Definitions(
        assets=build_mixpanel_assets(partitions,
                                     mixpanel.project_timezone if mixpanel.local else None),
        jobs=[mixpanel_daily, mixpanel_late_data],
        schedules=[dg.build_schedule_from_partitioned_job(
                       mixpanel_daily, hour_of_day=1, minute_of_hour=20,
                       name="mixpanel_daily_schedule",
                       default_status=dg.DefaultScheduleStatus.STOPPED),
                   late_data_schedule(partitions, mixpanel.settle_days)],
        resources={"mixpanel": resource(mixpanel, settings)},
    )


def with_mixpanel(mixpanel: MixpanelSettings | None, settings: Settings,
                  defs: dg.Definitions) -> dg.Definitions:
    """``defs``, with the Mixpanel source when it is configured."""
    if mixpanel is None:
        return defs
    return dg.Definitions.merge(defs, mixpanel_definitions(mixpanel, settings))
