"""The hourly job and its schedule (stopped until switched on in the UI)."""

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
