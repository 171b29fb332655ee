"""One Amplitude project's daily snapshots: cohorts, the taxonomy, the events list, its counts,
chart annotations and categories.

One partition is the snapshot taken on that UTC day, so history accumulates: only today's
partition calls Amplitude, and a past day re-materializes from its own landing copy or is
refused (``pipeline/snapshots.py``). Each asset fetches, lands, writes Parquet and swaps the
day's rows in one transaction; they are small, so one step each. Every day is checked to be
non-empty (a warning) and unique on its table's key.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from assets.namespace import OWNERS, WAREHOUSE_POOL, Names
from assets.range_run import Check, RangeRun
from pipeline import engine
from pipeline.amplitude import annotations, cohorts, dashboard, taxonomy
from pipeline.amplitude.client import AmplitudeClient
from pipeline.amplitude.settings import AmplitudeOptions
from pipeline.lake import LakeError
from pipeline.records import Field, RecordsError, write_records
from pipeline.snapshots import Fetch, SnapshotLanding, SnapshotRefused, Snapshots
from resources import AmplitudeExportResource, LakeResource, WarehouseResource

KEYS = {
    "cohorts": ("id",),
    "taxonomy_event_types": ("event_type",),
    "taxonomy_event_properties": ("event_type", "event_property"),
    "taxonomy_user_properties": ("user_property",),
    "events_list": ("name",),
    "daily_counts": ("event_date",),
    "cohort_members": ("cohort_id", "amplitude_id"),
    "annotations": ("id",),
    "annotation_categories": ("id",),
    "taxonomy_categories": ("id",),
}


def snapshot_days(start: date) -> dg.DailyPartitionsDefinition:
    """UTC days up to and including today: today's snapshot is the one that can be taken."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC",
                                        end_offset=1)


def run_days(context: dg.AssetExecutionContext) -> list[date]:
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((last - first).days)]


def day_checks(table: str) -> list[Check]:
    return [Check("non_empty", "The day's snapshot holds at least one row (a warning: a project "
                  "may have none).", warn=True),
            Check("keys_unique", f"No two rows of a day share ({', '.join(KEYS[table])}).")]


def check_day(run: RangeRun, con: duckdb.DuckDBPyConnection, schema: str, table: str,
              day: date) -> None:
    keys = ", ".join(f'"{k}"' for k in KEYS[table])
    row = con.execute(f"SELECT count(*), count(*) - count(DISTINCT ({keys})) FROM "
                      f"{schema}.{table} WHERE snapshot_date = ?", [day]).fetchone()
    rows, repeats = (int(v) for v in row) if row else (0, 0)
    run.check(day.isoformat(), "non_empty", rows > 0, {"rows": rows})
    run.check(day.isoformat(), "keys_unique", repeats == 0, {"duplicate_keys": repeats})


def load_day(run: RangeRun, warehouse: WarehouseResource, snaps: Snapshots, table: str,
             landing: SnapshotLanding, called: bool, extra: dict[str, Any]) -> None:
    """Swap the day in, check it, and record its figures."""
    day = landing.snapshot_date
    with warehouse.writing() as con:
        rows = snaps.load(con, table, landing)
        check_day(run, con, snaps.source, table, day)
    run.ok(day.isoformat(), {
        "dagster/row_count": rows, "requests": landing.requests if called else 0,
        "taken_from": "Amplitude" if called else f"landing of {landing.fetched_at:%Y-%m-%d}",
        **extra})


@dataclass(frozen=True)
class RecordsSnapshot:
    """An endpoint whose answers are lists of records, and the table they become."""

    key: str  # the asset's and the table's name
    description: str
    fetch: Callable[[AmplitudeClient, Snapshots, date, Path], Fetch]
    list_path: str
    fields: tuple[Field, ...]
    write: Callable[..., int] = write_records  # records → Parquet, as ``write_records`` is called
    columns: tuple[tuple[str, str], ...] | None = None  # the table's, when not one per field

    def column_schema(self) -> dg.TableSchema:
        columns = self.columns or (*((f.name, f.duckdb_type) for f in self.fields),
                                   ("_extras", "JSON"))
        return dg.TableSchema(columns=[dg.TableColumn("snapshot_date", "DATE"),
                                       *(dg.TableColumn(n, t) for n, t in columns)])


def _event_types_of_day(snaps: Snapshots, day: date) -> list[str]:
    """The event types whose properties to ask for: those of the day's event-type snapshot that
    are still in the plan (a deleted one has no properties to ask for: Amplitude answers 404)."""
    landing = snaps.landed("taxonomy_event_types", day)
    if landing is None:
        raise SnapshotRefused(f"taxonomy_event_properties for {day} needs that day's "
                              "taxonomy_event_types first (it lists the event types)")
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
    RecordsSnapshot(
        "annotations", "Chart annotations (GET /api/3/annotations) as of that day: releases, "
        "campaigns, incidents; start and end as timestamps (end null for a point in time), the "
        "category as category_id and category_name. The reconciliation names them beside a "
        "mismatching day.",
        lambda client, snaps, day, staged: annotations.fetch_annotations(client, staged),
        "$.data", annotations.ANNOTATION_FIELDS, annotations.write_annotations,
        annotations.ANNOTATION_COLUMNS),
    RecordsSnapshot(
        "annotation_categories", "The categories chart annotations are filed under "
        "(GET /api/3/annotation-categories), as of that day.",
        lambda client, snaps, day, staged: annotations.fetch_annotation_categories(
            client, staged),
        "$.data", annotations.CATEGORY_FIELDS),
    RecordsSnapshot(
        "taxonomy_categories", "The tracking plan's event categories (Taxonomy API "
        "GET /api/2/taxonomy/category), as of that day; event types name theirs in "
        "category.name.",
        lambda client, snaps, day, staged: annotations.fetch_event_categories(client, staged),
        "$.data", annotations.CATEGORY_FIELDS),
)
DEPS = {"taxonomy_event_properties": ["taxonomy_event_types"]}
REFUSED = (SnapshotRefused, LakeError, RecordsError)  # a day that cannot be taken, named


def _records_asset(names: Names, spec: RecordsSnapshot,
                   partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key = names.key(spec.key)

    @dg.asset(key=key, partitions_def=partitions, group_name=f"{names.group}_snapshots",
              kinds={"amplitude", "duckdb"}, owners=OWNERS, code_version="1",
              description=spec.description, pool=WAREHOUSE_POOL,
              required_resource_keys={names.resource, "lake", "warehouse"},
              deps=[names.key(d) for d in DEPS.get(spec.key, [])],
              metadata={"dagster/table_name": names.table(spec.key),
                        "dagster/column_schema": spec.column_schema()},
              check_specs=[c.spec(key, partitions) for c in day_checks(spec.key)],
              backfill_policy=dg.BackfillPolicy.single_run())
    def snapshot(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        lake: LakeResource = context.resources.lake
        amplitude: AmplitudeExportResource = getattr(context.resources, names.resource)
        snaps = Snapshots(lake.lake(), names.namespace)
        snaps.lake.tidy_tables(names.namespace, spec.key)  # superseded versions past grace
        run = RangeRun(context, key, context.partition_keys, unit="day",
                       checks=day_checks(spec.key))
        for day in run_days(context):
            try:
                with amplitude.client() as client:
                    landing, called = snaps.take(spec.key, day,
                                                 partial(spec.fetch, client, snaps, day))
                files = snaps.paths(landing)
                with engine.connect() as con, snaps.staged_table_file(spec.key, day) as out:
                    con.execute("SET TimeZone = 'UTC'")
                    rows = spec.write(con, files, spec.list_path, spec.fields, out,
                                      what=f"{key.to_user_string()} for {day}",
                                      constants={"snapshot_date": f"DATE '{day}'"})
            except REFUSED as error:
                run.fail(day.isoformat(), f"{day}: {error}")
                continue
            load_day(run, context.resources.warehouse, snaps, spec.key, landing, called,
                     {"answers": len(files), "records": rows})
        return run.finish()

    return snapshot


def _daily_counts_asset(names: Names, partitions: dg.PartitionsDefinition, timezone: str,
                        days: int) -> dg.AssetsDefinition:
    key = names.key("daily_counts")

    @dg.asset(key=key, partitions_def=partitions, group_name=f"{names.group}_snapshots",
              kinds={"amplitude", "duckdb"}, pool=WAREHOUSE_POOL, owners=OWNERS,
              code_version="1", required_resource_keys={names.resource, "lake", "warehouse"},
              description=f"Amplitude's own daily active users, new users and event totals "
              f"over the {days} days up to the snapshot's day, by event date in the project's "
              f"time zone ({timezone}): what the warehouse is reconciled against.",
              metadata={"dagster/table_name": names.table("daily_counts")},
              check_specs=[c.spec(key, partitions) for c in day_checks("daily_counts")],
              backfill_policy=dg.BackfillPolicy.single_run())
    def daily_counts(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        lake: LakeResource = context.resources.lake
        amplitude: AmplitudeExportResource = getattr(context.resources, names.resource)
        snaps = Snapshots(lake.lake(), names.namespace)
        snaps.lake.tidy_tables(names.namespace, "daily_counts")
        run = RangeRun(context, key, context.partition_keys, unit="day",
                       checks=day_checks("daily_counts"))
        for day in run_days(context):
            first, last = dashboard.trailing_window(day, days)
            try:
                with amplitude.client() as client:
                    landing, called = snaps.take("daily_counts", day, partial(
                        dashboard.fetch_daily_counts, client, first=first, last=last,
                        timezone=timezone))
                files = dict(zip(dashboard.COUNT_FILES, snaps.paths(landing), strict=True))
                zone = str(landing.details.get("timezone", timezone))
                with engine.connect() as con, snaps.staged_table_file("daily_counts", day) as out:
                    rows = dashboard.write_daily_counts(con, files, day, zone, out)
            except REFUSED as error:
                run.fail(day.isoformat(), f"{day}: {error}")
                continue
            load_day(run, context.resources.warehouse, snaps, "daily_counts", landing, called,
                     {"days": rows})
        return run.finish()

    return daily_counts


def build_snapshot_assets(names: Names, options: AmplitudeOptions,
                          partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [*(_records_asset(names, spec, partitions) for spec in SNAPSHOTS),
            _daily_counts_asset(names, partitions, options.project_timezone,
                                options.counts_days)]
