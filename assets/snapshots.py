"""Daily snapshots beside the events: cohorts, the taxonomy, the events list, Amplitude's counts.

One partition is the snapshot taken on that UTC day, so history accumulates: only today's
partition calls Amplitude, and a past day re-materializes from its own landing copy or is
refused (``pipeline/snapshots.py``). Each asset fetches, lands, writes Parquet and swaps the
day's rows in one transaction; they are small, so one step each.
"""


from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg

from assets.events import OWNERS
from assets.snapshot_checks import DayChecks, check_specs
from pipeline import engine
from pipeline.amplitude import cohorts, dashboard, taxonomy
from pipeline.amplitude.client import AmplitudeClient
from pipeline.records import Field, write_records
from pipeline.snapshots import Fetch, SnapshotLanding, Snapshots
from resources import AmplitudeExportResource, LakeResource, WarehouseResource

GROUP = "amplitude_snapshots"
WAREHOUSE_POOL = "duckdb_warehouse"


def snapshot_days(start: date) -> dg.DailyPartitionsDefinition:
    """UTC days up to and including today: today's snapshot is the one that can be taken."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC",
                                        end_offset=1)


def run_days(context: dg.AssetExecutionContext) -> list[date]:
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((last - first).days)]


@dataclass(frozen=True)
class RecordsSnapshot:
    """An endpoint whose answers are lists of records, and the table they become."""

    key: str  # the asset's and the table's name
    description: str
    fetch: Callable[[AmplitudeClient, Snapshots, date, Path], Fetch]
    list_path: str
    fields: tuple[Field, ...]
    kinds: frozenset[str] = frozenset({"amplitude", "duckdb"})


def _event_types_of_day(snaps: Snapshots, day: date) -> list[str]:
    """The event types whose properties to ask for: those of the day's event-type snapshot that
    are still in the plan (a deleted one has no properties to ask for: Amplitude answers 404)."""
    landing = snaps.landed("taxonomy_event_types", day)
    if landing is None:
        raise dg.Failure(f"amplitude/taxonomy_event_properties for {day} needs that day's "
                         "amplitude/taxonomy_event_types first (it lists the event types)")
    with engine.connect() as con:
        rows = con.execute(
            "SELECT DISTINCT json_extract_string(item, '$.event_type') FROM (SELECT unnest("
            "CAST(json_extract(json, '$.data') AS JSON[])) AS item FROM read_json_objects(?)) "
            "WHERE NOT coalesce(CAST(json_extract(item, '$.deleted') AS BOOLEAN), false) "
            "ORDER BY 1", [str(snaps.paths(landing)[0])]).fetchall()
    return [row[0] for row in rows if row[0]]


SNAPSHOTS = (
    RecordsSnapshot(
        "cohorts", "Every cohort of the project as GET /api/3/cohorts lists it that day, each "
        "field typed (ids as text, epoch seconds as timestamps, the definition as JSON).",
        lambda client, snaps, day, staged: cohorts.fetch_cohorts(client, staged),
        "$.cohorts", cohorts.COHORT_FIELDS),
    RecordsSnapshot(
        "taxonomy_event_types", "The tracking plan's event types (Taxonomy API, deleted ones "
        "included), as of that day.",
        lambda client, snaps, day, staged: taxonomy.fetch_event_types(client, staged),
        "$.data", taxonomy.EVENT_TYPE_FIELDS),
    RecordsSnapshot(
        "taxonomy_event_properties", "The tracking plan's event properties: shared ones "
        "(event_type empty) and each event type's own, deleted ones included.",
        lambda client, snaps, day, staged: taxonomy.fetch_event_properties(
            client, staged, _event_types_of_day(snaps, day)),
        "$.data", taxonomy.EVENT_PROPERTY_FIELDS),
    RecordsSnapshot(
        "taxonomy_user_properties", "The tracking plan's user properties (custom ones with "
        "Amplitude's gp: prefix), deleted ones included.",
        lambda client, snaps, day, staged: taxonomy.fetch_user_properties(client, staged),
        "$.data", taxonomy.USER_PROPERTY_FIELDS),
    RecordsSnapshot(
        "events_list", "GET /api/2/events/list as of that day: each visible event type with "
        "this week's total, every field kept (unknown ones in _extras).",
        lambda client, snaps, day, staged: dashboard.fetch_events_list(client, staged),
        "$.data", dashboard.EVENTS_LIST_FIELDS),
)
DEPS = {"taxonomy_event_properties": ["taxonomy_event_types"]}


def _load(context: dg.AssetExecutionContext, warehouse: WarehouseResource, table: str,
          day: date, parquet: str, landing: SnapshotLanding, called: bool,
          checks: DayChecks, extra: dict[str, Any] | None = None, *,
          register: bool = False) -> None:
    target = warehouse.warehouse()
    with target.connect() as con:
        rows = target.replace_snapshot(con, table, day, parquet, requests=landing.requests,
                                       landing_version=landing.version,
                                       fetched_at=landing.fetched_at, register=register)
        checks.measure(con, day)
    context.add_asset_metadata({
        "dagster/row_count": rows,
        "requests": landing.requests if called else 0,
        "taken_from": "Amplitude" if called else f"landing of {landing.fetched_at:%Y-%m-%d}",
        **(extra or {}),
    }, partition_key=day.isoformat())


def _records_asset(spec: RecordsSnapshot, partitions: dg.PartitionsDefinition
                   ) -> dg.AssetsDefinition:
    key = dg.AssetKey(["amplitude", spec.key])

    @dg.asset(key=key, partitions_def=partitions, group_name=GROUP, kinds=set(spec.kinds),
              owners=OWNERS, code_version="1",
              description=spec.description, pool=WAREHOUSE_POOL,
              deps=[dg.AssetKey(["amplitude", d]) for d in DEPS.get(spec.key, [])],
              metadata={"dagster/table_name": f"amplitude.{spec.key}",
                        "dagster/column_schema": dg.TableSchema(columns=[
                            dg.TableColumn("snapshot_date", "DATE"),
                            *(dg.TableColumn(f.name, f.duckdb_type) for f in spec.fields),
                            dg.TableColumn("_extras", "JSON")])},
              check_specs=check_specs(spec.key, partitions),
              backfill_policy=dg.BackfillPolicy.single_run())
    def snapshot(context: dg.AssetExecutionContext, amplitude: AmplitudeExportResource,
                 lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        snaps = Snapshots(lake.lake(), "amplitude")
        snaps.lake.tidy_tables("amplitude", spec.key)  # superseded versions past their grace
        days = run_days(context)
        checks = DayChecks(context, spec.key, len(days))
        for day in days:
            with amplitude.client() as client:
                landing, called = snaps.take(
                    spec.key, day, partial(spec.fetch, client, snaps, day))
            files = snaps.paths(landing)
            with engine.connect() as con, snaps.staged_table_file(spec.key, day) as staging:
                con.execute("SET TimeZone = 'UTC'")
                rows = write_records(con, files, spec.list_path, spec.fields, staging,
                                     what=f"amplitude/{spec.key} for {day}",
                                     constants={"snapshot_date": f"DATE '{day}'"})
            _load(context, warehouse, spec.key, day, snaps.table_url(spec.key, day), landing,
                  called, checks, {"answers": len(files), "records": rows},
                  register=snaps.lake.versioned_tables)
        return dg.MaterializeResult(check_results=checks.results())

    return snapshot


def _daily_counts_asset(partitions: dg.PartitionsDefinition, timezone: str,
                        days: int) -> dg.AssetsDefinition:
    @dg.asset(key=dg.AssetKey(["amplitude", "daily_counts"]), partitions_def=partitions,
              group_name=GROUP, kinds={"amplitude", "duckdb"}, pool=WAREHOUSE_POOL,
              owners=OWNERS, code_version="1",
              description=f"Amplitude's own daily active users, new users and event totals "
              f"over the {days} days up to the snapshot's day, by event date in the project's "
              f"time zone ({timezone}): what the warehouse is reconciled against.",
              metadata={"dagster/table_name": "amplitude.daily_counts"},
              check_specs=check_specs("daily_counts", partitions),
              backfill_policy=dg.BackfillPolicy.single_run())
    def daily_counts(context: dg.AssetExecutionContext, amplitude: AmplitudeExportResource,
                     lake: LakeResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        snaps = Snapshots(lake.lake(), "amplitude")
        snaps.lake.tidy_tables("amplitude", "daily_counts")
        run = run_days(context)
        checks = DayChecks(context, "daily_counts", len(run))
        for day in run:
            first, last = dashboard.trailing_window(day, days)
            with amplitude.client() as client:
                landing, called = snaps.take("daily_counts", day, partial(
                    dashboard.fetch_daily_counts, client, first=first, last=last,
                    timezone=timezone))
            files = dict(zip(dashboard.COUNT_FILES, snaps.paths(landing), strict=True))
            zone = str(landing.details.get("timezone", timezone))
            with engine.connect() as con, snaps.staged_table_file("daily_counts", day) as out:
                rows = dashboard.write_daily_counts(con, files, day, zone, out)
            _load(context, warehouse, "daily_counts", day,
                  snaps.table_url("daily_counts", day), landing, called, checks, {"days": rows},
                  register=snaps.lake.versioned_tables)
        return dg.MaterializeResult(check_results=checks.results())

    return daily_counts


def build_snapshot_assets(partitions: dg.PartitionsDefinition, *, timezone: str,
                          counts_days: int) -> list[dg.AssetsDefinition]:
    return [*(_records_asset(spec, partitions) for spec in SNAPSHOTS),
            _daily_counts_asset(partitions, timezone, counts_days)]
