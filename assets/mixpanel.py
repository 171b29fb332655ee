"""Mixpanel events: raw export landing → Parquet lake → DuckDB table, one asset per stage.

The same three stages as Amplitude's (``assets/events.py``), on daily partitions in the days the
export means: the project's days for a project that stores local time, UTC days otherwise
(``pipeline/mixpanel/days.py``). A range run asks for windows of up to ``MIXPANEL_MAX_WINDOW_DAYS``
days per request; figures are reported per day. Built only when Mixpanel is configured
(``assets/mixpanel_defs.py``).
"""


import contextlib
import warnings
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from pipeline.http import HttpError
from pipeline.lake import LakeError
from pipeline.limits import LimitWaitTimeout
from pipeline.mixpanel import landing
from pipeline.mixpanel.checks import DUPLICATE_SHARE_WARN, duplicate_share
from pipeline.mixpanel.days import DayNotReady, plan_windows
from pipeline.mixpanel.normalize import PARSER_VERSION, EngineLimits, NormalizeError
from pipeline.mixpanel.schema import EVENT_COLUMNS
from pipeline.mixpanel.warehouse import EVENTS_TABLE, LOADS_TABLE, MixpanelLoad, load_day
from pipeline.warehouse import RowDropRefused, WarehouseLocked
from resources import LakeResource, MixpanelExportResource, WarehouseResource

RAW_EXPORT = dg.AssetKey(["mixpanel", "raw_export"])
EVENTS_PARQUET = dg.AssetKey(["mixpanel", "events_parquet"])
EVENTS = dg.AssetKey(["mixpanel", "events"])
GROUP = "mixpanel"
OWNERS = ["team:data-engineering"]
WAREHOUSE_POOL = "duckdb_warehouse"  # the one DuckDB writer, shared with Amplitude's loads
EXPORT_POOL = "mixpanel_export"
DUPLICATE_CHECK = "duplicate_share"

warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(c.name, c.duckdb_type, description=c.doc or None)
             for c in EVENT_COLUMNS])


class LoadConfig(dg.Config):
    """Run config of mixpanel/events."""

    accept_row_drops: bool = False  # load a re-fetch even if it holds far fewer rows (or none)


def daily_partitions(start: date, timezone: str, lag_days: int) -> dg.DailyPartitionsDefinition:
    """Days in ``timezone``; the newest is the newest complete day plus the lag."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone=timezone,
                                        end_offset=-lag_days)


def run_days(context: dg.AssetExecutionContext) -> list[date]:
    """The days of this run, one partition or a range alike."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def _fail(message: str) -> dg.Failure:
    return dg.Failure(message, allow_retries=False)


def build_mixpanel_assets(partitions: dg.PartitionsDefinition,
                          zone: str | None) -> list[dg.AssetsDefinition]:
    """``zone``: the project's, for a project that stores local time; None: it stores UTC."""
    project_zone = None if zone is None else ZoneInfo(zone)
    common: dict[str, Any] = {
        "partitions_def": partitions,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "group_name": GROUP,
        "owners": OWNERS,
    }

    @dg.asset(
        key=RAW_EXPORT, pool=EXPORT_POOL, kinds={"mixpanel", "file"}, code_version="1",
        description="Mixpanel's raw export (GET /api/2.0/export), the gzip body as received and "
        "checked whole ('terminated early', cut short, split lines refetch the window), landed "
        "under each day of its window. A range asks for windows of up to max_window_days.",
        **common,
    )
    def raw_export(context: dg.AssetExecutionContext, mixpanel: MixpanelExportResource,
                   lake: LakeResource) -> dg.MaterializeResult:
        if mixpanel.deprecated_auth:
            context.log.warning(mixpanel.deprecated_auth)
        store = lake.lake()
        store.tidy(landing.SOURCE, landing.DATASET)
        days = run_days(context)
        try:
            windows = plan_windows(days, mixpanel.max_window_days, now=datetime.now(UTC),
                                   zone=mixpanel.zone, lag_days=mixpanel.lag_days)
        except DayNotReady as error:
            raise _fail(f"mixpanel/raw_export: {error}") from error
        landed_days: list[str] = []
        with mixpanel.client() as client, store.scratch() as scratch:
            for window in windows:
                try:
                    download = client.download(window, scratch / "download",
                                               time_in_ms=mixpanel.time_in_ms)
                    landed = landing.land(store, download)
                except (HttpError, LimitWaitTimeout, LakeError) as error:
                    # Dagster marks a failed step's whole range failed unless each landed day
                    # says it was materialized (dagster-io/dagster#17836).
                    for key in landed_days:
                        context.log_event(dg.AssetMaterialization(RAW_EXPORT, partition=key))
                    later = len(windows) - windows.index(window) - 1
                    raise _fail(f"mixpanel/raw_export: days {window} not landed "
                                f"({len(landed_days)} day(s) before them are; {later} later "
                                f"window(s) not asked for): {error}") from error
                download.path.unlink(missing_ok=True)
                for day in landed:
                    key = day.day.isoformat()
                    landed_days.append(key)
                    context.add_asset_metadata({
                        "bytes_downloaded": day.bytes,
                        "window_bytes": day.window_bytes,
                        "window_events": day.window_lines,
                        "requests": round(day.requests, 3),
                        "window_requests": day.window_requests,
                        "window_days": day.window.day_count,
                        "fetch_seconds": round(day.fetch_seconds, 3),
                        "request_window": day.request_window,
                        "landing_version": day.version,
                    }, partition_key=key)
        return dg.MaterializeResult()  # figures are per day, above

    @dg.asset(
        key=EVENTS_PARQUET, deps=[RAW_EXPORT], kinds={"parquet"}, code_version=PARSER_VERSION,
        description="Typed Mixpanel events, one zstd Parquet file per day (mixpanel/events/"
        "day=YYYY-MM-DD), time converted to UTC (docs/mixpanel.md, 'Time zones: the rules').",
        **common,
    )
    def events_parquet(context: dg.AssetExecutionContext,
                       lake: LakeResource) -> dg.MaterializeResult:
        store = lake.lake()
        store.tidy_tables("mixpanel", "events")  # superseded versions past their grace
        limits = EngineLimits(lake.normalize_threads, lake.normalize_memory_limit)
        with store.scratch() as scratch:
            try:
                written = landing.write_days(store, run_days(context), scratch,
                                             zone=project_zone, limits=limits)
            except (NormalizeError, LakeError) as error:
                raise _fail(f"mixpanel/events_parquet: {error}") from error
        for day in written:
            context.add_asset_metadata({
                "dagster/row_count": day.rows,
                "parquet_bytes": day.bytes,
                "request_window": day.landed.request_window,
                "path": dg.MetadataValue.path(store.url(day.path)),
            }, partition_key=day.day.isoformat())
        return dg.MaterializeResult(metadata={"dagster/column_schema": COLUMN_SCHEMA})

    @dg.asset(
        key=EVENTS, deps=[EVENTS_PARQUET], pool=WAREHOUSE_POOL, kinds={"duckdb"},
        code_version="1",
        description=f"{EVENTS_TABLE} in the DuckDB warehouse, every row as served (Mixpanel's "
        "export is not deduplicated: analytics.mixpanel_events_unique is); each day swapped in "
        f"one transaction and recorded in {LOADS_TABLE} with what it added, removed and "
        "changed.",
        check_specs=[dg.AssetCheckSpec(
            DUPLICATE_CHECK, asset=EVENTS, partitions_def=partitions,
            description="The share of the day's rows that are duplicates by Mixpanel's key "
            "(event, distinct_id, $insert_id, time); a warning past "
            f"{DUPLICATE_SHARE_WARN:.0%}.")],
        **common,
    )
    def events(context: dg.AssetExecutionContext, config: LoadConfig, lake: LakeResource,
               warehouse: WarehouseResource) -> dg.MaterializeResult:
        store, target, days = lake.lake(), warehouse.warehouse(), run_days(context)
        drop_share = None if config.accept_row_drops else warehouse.max_row_drop_share
        failed: list[str] = []
        loaded: dict[str, dict[str, Any]] = {}
        warned: list[str] = []
        last_check: dict[str, Any] = {}
        stack = contextlib.ExitStack()
        try:
            con = stack.enter_context(target.connect())
        except WarehouseLocked as error:
            raise _fail(str(error)) from error
        with stack:
            for day in days:
                landed, parquet = landing.landed(store, day), landing.events_file(store, day)
                if landed is None or parquet is None:
                    failed.append(f"Mixpanel day {day}: not landed and normalized (materialize "
                                  "mixpanel/raw_export and mixpanel/events_parquet)")
                    continue
                try:
                    record = load_day(target, con, store.url(parquet), MixpanelLoad(
                        day=day, request_window=landed.request_window,
                        window_requests=landed.window_requests, bytes_downloaded=landed.bytes,
                        fetch_seconds=landed.fetch_seconds, landing_version=landed.version,
                        fetched_at=landed.fetched_at), max_drop_share=drop_share)
                except RowDropRefused as refusal:  # this day keeps its rows; the rest load
                    failed.append(f"{refusal} (run config accept_row_drops: true loads it)")
                    continue
                key = day.isoformat()
                share = duplicate_share(con, day)
                last_check = {"rows": share.rows, "duplicate_rows": share.duplicates,
                              "duplicate_share": round(share.share, 4)}
                passed = share.share <= DUPLICATE_SHARE_WARN
                if not passed:
                    warned.append(key)
                if len(days) > 1:  # one day's result is the step's result, below
                    context.log_event(dg.AssetCheckEvaluation(
                        asset_key=EVENTS, check_name=DUPLICATE_CHECK, passed=passed,
                        partition=key, metadata=last_check,
                        severity=dg.AssetCheckSeverity.WARN))
                loaded[key] = {
                    "dagster/row_count": record.rows,
                    "bytes_downloaded": record.bytes_downloaded,
                    "requests": round(landed.requests, 3),
                    "request_window": record.request_window,
                    "fetch_seconds": round(record.fetch_seconds, 3),
                    "load_seconds": round(record.load_seconds, 3),
                    "rows_added": record.rows_added,
                    "rows_removed": record.rows_removed,
                    "rows_changed": record.rows_changed,
                    "duplicate_rows": record.duplicate_rows,
                    "duplicate_share": round(share.share, 4),
                }
        if failed:
            for key, metadata in loaded.items():  # see raw_export: dagster-io/dagster#17836
                context.log_event(dg.AssetMaterialization(EVENTS, partition=key,
                                                          metadata=metadata))
            raise dg.Failure(
                f"{len(failed)} of {len(days)} Mixpanel day(s) not loaded (the other "
                f"{len(loaded)} are): " + "; ".join(failed), allow_retries=False,
                metadata={"days_failed": len(failed), "days_loaded": len(loaded)})
        for key, metadata in loaded.items():
            context.add_asset_metadata(metadata, partition_key=key)
        return dg.MaterializeResult(
            metadata={"dagster/column_schema": COLUMN_SCHEMA, "dagster/table_name": EVENTS_TABLE},
            check_results=[dg.AssetCheckResult(
                check_name=DUPLICATE_CHECK, passed=not warned,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={**(last_check if len(days) == 1 else {}), "days_checked": len(loaded),
                          "days_over_share": len(warned),
                          "days_over": ", ".join(warned[:50])})],
        )

    return [raw_export, events_parquet, events]
