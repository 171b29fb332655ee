"""Upload-hour partitions: UTC, and only hours Amplitude has finished exporting.

Hour H is complete at H + 1 h + lag. Dagster's last hourly partition is the one that ended before
now, so ``end_offset = -lag`` makes the newest partition exactly the newest complete hour; the UI,
the schedule and backfills cannot ask for an hour early.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from pipeline.hours import hours_between

KEY_FORMAT = "%Y-%m-%d-%H:%M"


def upload_hour_partitions(start: datetime, lag_hours: int) -> dg.HourlyPartitionsDefinition:
    return dg.HourlyPartitionsDefinition(
        start_date=start.strftime(KEY_FORMAT), fmt=KEY_FORMAT, timezone="UTC",
        end_offset=-lag_hours,
    )


def partition_key(upload_hour: datetime) -> str:
    return upload_hour.astimezone(UTC).strftime(KEY_FORMAT)


def run_hours(context: dg.AssetExecutionContext) -> list[datetime]:
    """The upload hours of this run, one partition or a range alike."""
    window = context.partition_time_window
    return hours_between(window.start, window.end)
