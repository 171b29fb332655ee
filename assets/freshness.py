"""Freshness of amplitude/events, checked on its own schedule so that it fires when loads stop,
not only when they run."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from assets.events import EVENTS, WAREHOUSE_POOL
from assets.reconciliation import read_only
from pipeline.hours import HOUR
from pipeline.warehouse import LOADS_TABLE
from resources import WarehouseResource

SLACK_HOURS = 2  # beyond the export lag, before a missing hour is worth a warning
FRESHNESS_CHECK = dg.AssetCheckKey(EVENTS, "fresh")


def build_freshness(lag_hours: int) -> dg.AssetChecksDefinition:
    allowed = timedelta(hours=lag_hours + SLACK_HOURS)

    @dg.asset_check(asset=EVENTS, name="fresh", pool=WAREHOUSE_POOL, description=(
        f"The newest loaded upload hour ended at most {lag_hours + SLACK_HOURS} h ago (the "
        f"export lag of {lag_hours} h plus {SLACK_HOURS}); a warning."))
    def fresh(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with read_only(warehouse) as con:
            row = con.execute(f"SELECT max(upload_hour) FROM {LOADS_TABLE} "
                              "WHERE rows IS NOT NULL").fetchone()
        newest = row[0].astimezone(UTC) if row and row[0] else None
        now = datetime.now(UTC)
        if newest is None:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                       description="no upload hour has been loaded yet")
        behind = now - (newest + HOUR)
        return dg.AssetCheckResult(
            passed=behind <= allowed, severity=dg.AssetCheckSeverity.WARN,
            description=None if behind <= allowed else (
                f"the newest loaded upload hour is {newest:%Y-%m-%dT%H}, which ended "
                f"{behind.total_seconds() / 3600:.1f} h ago (allowed: "
                f"{allowed.total_seconds() / 3600:.0f} h): are the loads stopped?"),
            metadata={"newest_loaded_hour": newest.isoformat(),
                      "hours_behind": round(behind.total_seconds() / 3600, 2),
                      "allowed_hours": allowed.total_seconds() / 3600})

    return fresh


amplitude_freshness = dg.define_asset_job(
    "amplitude_freshness", selection=dg.AssetSelection.checks(FRESHNESS_CHECK),
    description="Check that amplitude/events keeps up with Amplitude.")

freshness_schedule = dg.ScheduleDefinition(
    job=amplitude_freshness, cron_schedule="*/30 * * * *", execution_timezone="UTC",
    name="amplitude_freshness_schedule", default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every 30 minutes; switch it on with the hourly schedule.")
