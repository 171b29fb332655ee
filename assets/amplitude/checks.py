"""One Amplitude project's standalone checks, each on a schedule of its own: the events are fresh
(so it fires when loads stop, not only when they run), and settled days match Amplitude's own
daily counts. The reconciliation says whether it counted canonical users (merge rows loaded) or
raw ids, and names the chart annotations of a mismatching day."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg

from assets.namespace import WAREHOUSE_POOL, Names
from pipeline.amplitude.reconcile import MEASURES, reconcile
from pipeline.amplitude.settings import AmplitudeOptions
from pipeline.hours import HOUR
from resources import WarehouseResource

SLACK_HOURS = 2  # beyond the export lag, before a missing hour is worth a warning
CHECKS = {m: f"matches_amplitude_{m}" for m in MEASURES}


def freshness_key(names: Names) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(names.key("events"), "fresh")


def reconcile_keys(names: Names) -> list[dg.AssetCheckKey]:
    """On Amplitude's counts rather than on the events, so that a backfill's ``*<project>/events``
    does not take the reconciliation along."""
    return [dg.AssetCheckKey(names.key("daily_counts"), name) for name in CHECKS.values()]


def build_freshness(names: Names, options: AmplitudeOptions) -> dg.AssetChecksDefinition:
    allowed = timedelta(hours=options.lag_hours + SLACK_HOURS)

    @dg.asset_check(asset=names.key("events"), name="fresh", pool=WAREHOUSE_POOL, description=(
        f"The newest loaded upload hour ended at most {options.lag_hours + SLACK_HOURS} h ago "
        f"(the export lag of {options.lag_hours} h plus {SLACK_HOURS}); a warning."))
    def fresh(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.writing() as con:  # migrated, in any mode (the pool keeps loads out)
            row = con.execute(f"SELECT max(upload_hour) FROM {names.table('_loads')} "
                              "WHERE rows IS NOT NULL").fetchone()
        newest = row[0].astimezone(UTC) if row and row[0] else None
        if newest is None:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                       description="no upload hour has been loaded yet")
        behind = datetime.now(UTC) - (newest + HOUR)
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


def build_reconciliation(names: Names, options: AmplitudeOptions) -> dg.AssetChecksDefinition:
    zone, settle, tolerance = (options.project_timezone, options.reconcile_settle_hours,
                               options.reconcile_tolerance)

    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec(name, asset=names.key("daily_counts"),
                                 additional_deps=[names.key("events")],
                                 description=f"Each settled day's {m.replace('_', ' ')} in the "
                                 f"warehouse equal Amplitude's ({names.table('daily_counts')}) "
                                 f"within {tolerance:.1%}, users counted as Amplitude counts "
                                 "them (merged ids once); late arrivals are reported, not "
                                 "mismatches, and a mismatching day names its annotations.")
               for m, name in CHECKS.items()],
        pool=WAREHOUSE_POOL, name=f"reconcile_{names.namespace}",
    )
    def reconcile_with_amplitude(warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
        with warehouse.writing() as con:  # migrated, in any mode (the pool keeps loads out)
            compared = reconcile(con, project=names.project.name, timezone=zone,
                                 settle_hours=settle, tolerance=tolerance)
        for measure, name in CHECKS.items():
            days = [r for r in compared.results if r.measure == measure]
            mismatches = [r for r in days if not r.matches]
            yield dg.AssetCheckResult(
                check_name=name, asset_key=names.key("daily_counts"), passed=not mismatches,
                description="; ".join(map(str, mismatches[:10])) or None,
                metadata={
                    "days_compared": len(days), "days_mismatched": len(mismatches),
                    "days_not_settled": len(compared.unsettled),
                    "late_events": sum(r.late for r in days) if measure == "events" else 0,
                    "per_day": dg.MetadataValue.json({
                        r.day.isoformat(): {"amplitude": r.amplitude, "warehouse": r.warehouse,
                                            "late": r.late, "matches": r.matches,
                                            **({"annotations": list(r.annotations)}
                                               if not r.matches else {})}
                        for r in days}),
                    "users_counted": compared.users_counted,
                    "timezone": zone, "settle_hours": settle, "project": names.project.name,
                })

    return reconcile_with_amplitude
