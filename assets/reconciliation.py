"""The warehouse reconciled with Amplitude's own daily numbers, on a schedule of its own."""

from collections.abc import Iterator

import dagster as dg
import duckdb

from assets.events import EVENTS, WAREHOUSE_POOL
from pipeline import engine
from pipeline.amplitude.reconcile import MEASURES, reconcile
from resources import WarehouseResource

DAILY_COUNTS = dg.AssetKey(["amplitude", "daily_counts"])
CHECKS = {m: f"matches_amplitude_{m}" for m in MEASURES}
# On Amplitude's counts rather than on the events, so that a backfill's `*amplitude/events` does
# not take the reconciliation along.
RECONCILE_CHECKS = [dg.AssetCheckKey(DAILY_COUNTS, name) for name in CHECKS.values()]


def read_only(warehouse: WarehouseResource) -> duckdb.DuckDBPyConnection:
    """A reader's connection; the check holds the writer pool, so no load is mid-swap."""
    con = duckdb.connect(warehouse.path, read_only=True, config=engine.offline_config())
    con.execute("SET TimeZone = 'UTC'")
    return con


def build_reconciliation(timezone: str, settle_hours: int,
                         tolerance: float) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec(name, asset=DAILY_COUNTS, additional_deps=[EVENTS],
                                 description=f"Each settled day's {m.replace('_', ' ')} in the "
                                 f"warehouse equal Amplitude's (amplitude.daily_counts) within "
                                 f"{tolerance:.1%}; late arrivals are reported, not mismatches.")
               for m, name in CHECKS.items()],
        pool=WAREHOUSE_POOL, name="reconcile_with_amplitude",
    )
    def reconcile_with_amplitude(
        warehouse: WarehouseResource,
    ) -> Iterator[dg.AssetCheckResult]:
        with read_only(warehouse) as con:
            results, unsettled = reconcile(con, timezone=timezone, settle_hours=settle_hours,
                                           tolerance=tolerance)
        for measure, name in CHECKS.items():
            days = [r for r in results if r.measure == measure]
            mismatches = [r for r in days if not r.matches]
            yield dg.AssetCheckResult(
                check_name=name, asset_key=DAILY_COUNTS, passed=not mismatches,
                description="; ".join(map(str, mismatches[:10])) or None,
                metadata={
                    "days_compared": len(days), "days_mismatched": len(mismatches),
                    "days_not_settled": len(unsettled),
                    "late_events": sum(r.late for r in days) if measure == "events" else 0,
                    "per_day": dg.MetadataValue.json({
                        r.day.isoformat(): {"amplitude": r.amplitude, "warehouse": r.warehouse,
                                            "late": r.late, "matches": r.matches}
                        for r in days}),
                    "timezone": timezone, "settle_hours": settle_hours,
                })

    return reconcile_with_amplitude


amplitude_reconcile = dg.define_asset_job(
    "amplitude_reconcile",
    selection=dg.AssetSelection.checks(*RECONCILE_CHECKS),
    description="Reconcile settled days with Amplitude's own daily counts.",
)

reconcile_schedule = dg.ScheduleDefinition(
    job=amplitude_reconcile, cron_schedule="0 3 * * *", execution_timezone="UTC",
    name="amplitude_reconcile_schedule", default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Daily, after the snapshots' 01:30 run has taken Amplitude's counts.",
)
