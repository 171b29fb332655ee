"""One Mixpanel project's events: raw export landing → Parquet lake → warehouse table.

The same three stages as Amplitude's (``assets/amplitude/events.py``), on daily partitions in the
days the export means: the project's days for a project that stores local time, UTC days
otherwise (``pipeline/mixpanel/days.py``). A range run asks for windows of up to
``max_window_days`` days per request; figures are reported per day.
"""

import warnings
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from assets.namespace import OWNERS, WAREHOUSE_POOL, Names
from assets.range_run import Check, RangeRun
from pipeline import source
from pipeline.http import HttpError
from pipeline.lake import LakeError
from pipeline.limits import LimitWaitTimeout
from pipeline.lineage import landing_version_of
from pipeline.mixpanel import landing
from pipeline.mixpanel.checks import DUPLICATE_SHARE_WARN, duplicate_share
from pipeline.mixpanel.days import DayNotReady, plan_windows
from pipeline.mixpanel.landing import MixpanelLake
from pipeline.mixpanel.load import MixpanelLoad, load_day
from pipeline.mixpanel.normalize import PARSER_VERSION
from pipeline.mixpanel.schema import EVENT_COLUMNS
from pipeline.mixpanel.settings import MixpanelOptions
from pipeline.partition_swap import RowDropRefused
from resources import LakeResource, MixpanelExportResource, WarehouseResource

warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(c.name, c.duckdb_type, description=c.doc or None)
             for c in EVENT_COLUMNS])
DUPLICATES = Check("duplicate_share", "The share of the day's rows that are duplicates by "
                   "Mixpanel's key (event, distinct_id, $insert_id, time); a warning past "
                   f"{DUPLICATE_SHARE_WARN:.0%}.", warn=True)
UNIT = "day"


class LoadConfig(dg.Config):
    """Run config of <project>/events."""

    accept_row_drops: bool = False  # load a re-fetch even if it holds far fewer rows (or none)


def daily_partitions(start: date, timezone: str, lag_days: int) -> dg.DailyPartitionsDefinition:
    """Days in ``timezone``; the newest is the newest complete day plus the lag."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone=timezone,
                                        end_offset=-lag_days)


def run_days(context: dg.AssetExecutionContext) -> list[date]:
    """The days of this run, one partition or a range alike."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def project_lake(context: dg.AssetExecutionContext, names: Names) -> MixpanelLake:
    lake: LakeResource = context.resources.lake
    store = lake.lake().share(MixpanelLake, namespace=names.namespace)
    source.mark(store, names.project)
    return store


def landing_figures(day: landing.LandedDay) -> dict[str, Any]:
    return {"bytes_downloaded": day.bytes, "window_bytes": day.window_bytes,
            "window_events": day.window_lines, "requests": round(day.requests, 3),
            "window_requests": day.window_requests, "window_days": day.window.day_count,
            "fetch_seconds": round(day.fetch_seconds, 3), "request_window": day.request_window,
            "landing_version": day.version}


def load_figures(record: MixpanelLoad, landed: landing.LandedDay) -> dict[str, Any]:
    return {"dagster/row_count": record.rows, "bytes_downloaded": record.bytes_downloaded,
            "requests": round(landed.requests, 3), "request_window": record.request_window,
            "fetch_seconds": round(record.fetch_seconds, 3),
            "load_seconds": round(record.load_seconds, 3), "rows_added": record.rows_added,
            "rows_removed": record.rows_removed, "rows_changed": record.rows_changed,
            "duplicate_rows": record.duplicate_rows}


def build_mixpanel_assets(names: Names, options: MixpanelOptions,
                          partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    raw_key, parquet_key, events_key = (names.key(n) for n in ("raw_export", "events_parquet",
                                                               "events"))
    zone = options.zone if options.local else None  # None: the project stores UTC
    common: dict[str, Any] = {"partitions_def": partitions, "group_name": names.group,
                              "backfill_policy": dg.BackfillPolicy.single_run(), "owners": OWNERS}

    @dg.asset(
        key=raw_key, pool=names.export_pool, kinds={"mixpanel", "file"}, code_version="1",
        required_resource_keys={names.resource, "lake", "warehouse"},
        description="Mixpanel's raw export (GET /api/2.0/export), the gzip body as received and "
        "checked whole ('terminated early', cut short, split lines refetch the window), landed "
        "under each day of its window. A range asks for windows of up to max_window_days.",
        **common,
    )
    def raw_export(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        mixpanel: MixpanelExportResource = getattr(context.resources, names.resource)
        if mixpanel.deprecated_auth:
            context.log.warning(mixpanel.deprecated_auth)
        store = project_lake(context, names)
        run = RangeRun(context, raw_key, context.partition_keys, unit=UNIT)
        store.tidy(names.namespace, landing.DATASET)
        try:
            windows = plan_windows(run_days(context), mixpanel.max_window_days,
                                   now=datetime.now(UTC), zone=mixpanel.zone,
                                   lag_days=mixpanel.lag_days)
        except DayNotReady as error:
            raise dg.Failure(f"{raw_key.to_user_string()}: {error}", allow_retries=False) from error
        with mixpanel.client() as client, store.scratch() as scratch:
            for number, window in enumerate(windows):
                try:
                    download = client.download(window, scratch / "download",
                                               time_in_ms=mixpanel.time_in_ms)
                    landed = landing.land(store, download)
                except (HttpError, LimitWaitTimeout, LakeError) as error:
                    # A failure that stops this window stops the later ones too: a Mixpanel
                    # project answers every window alike (credentials, limits, the server).
                    for later in windows[number:]:
                        cause = (f"days {later} not landed: {error}" if later is window else
                                 f"days {later} not asked for after {window} failed")
                        for day in later.days:
                            run.fail(day.isoformat(), cause)
                    break
                download.path.unlink(missing_ok=True)
                for landed_day in landed:
                    run.ok(landed_day.day.isoformat(), landing_figures(landed_day))
        return run.finish()

    @dg.asset(
        key=parquet_key, deps=[raw_key], kinds={"parquet"}, code_version=PARSER_VERSION,
        required_resource_keys={"lake"},
        description="Typed Mixpanel events, one zstd Parquet file per day (events/"
        "day=YYYY-MM-DD), time converted to UTC (docs/mixpanel.md, 'Time zones: the rules').",
        **common,
    )
    def events_parquet(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        lake: LakeResource = context.resources.lake
        store = project_lake(context, names)
        store.tidy_tables(names.namespace, landing.TABLE)  # superseded versions past grace
        run, notes = RangeRun(context, parquet_key, context.partition_keys, unit=UNIT), \
            landing.refusals(store)
        with store.scratch() as scratch:
            written, refused = landing.write_days(store, run_days(context), scratch, zone=zone,
                                                  limits=lake.limits())
        for file in written:
            notes.clear(file.day, "normalize")
            run.ok(file.day.isoformat(), {
                "dagster/row_count": file.rows, "parquet_bytes": file.bytes,
                "request_window": file.landed.request_window,
                "path": dg.MetadataValue.path(store.url(file.path))})
        for day, cause in refused.items():
            landed_day = landing.landed(store, day)
            notes.record(day, "normalize", cause, context.run.run_id,
                         landed_day.version if landed_day else None)
            run.note(day.isoformat(), {"refused": cause})
            run.fail(day.isoformat(), cause)
        # the load fails the refused days: their files, if any, are from an earlier fetch
        return run.finish(fail_step=False, metadata={"dagster/column_schema": COLUMN_SCHEMA})

    @dg.asset(
        key=events_key, deps=[parquet_key], pool=WAREHOUSE_POOL, kinds={"duckdb"},
        required_resource_keys={"lake", "warehouse"},
        code_version="1", check_specs=[DUPLICATES.spec(events_key, partitions)],
        description=f"{names.table('events')} in the warehouse, every row as served (Mixpanel's "
        "export is not deduplicated: analytics.mixpanel_events_unique is); each day swapped in "
        f"one transaction and recorded in {names.table('_loads')} with what it added, removed "
        "and changed.",
        **common,
    )
    def events(context: dg.AssetExecutionContext, config: LoadConfig) -> dg.MaterializeResult:
        warehouse: WarehouseResource = context.resources.warehouse
        store, schema = project_lake(context, names), names.namespace
        run = RangeRun(context, events_key, context.partition_keys, unit=UNIT,
                       checks=[DUPLICATES])
        drop_share = None if config.accept_row_drops else warehouse.max_row_drop_share
        with warehouse.writing() as con:
            for day in run_days(context):
                key = day.isoformat()
                landed, parquet = landing.landed(store, day), landing.events_file(store, day)
                if landed is None or parquet is None:
                    run.fail(key, f"Mixpanel day {day}: not landed and normalized (materialize "
                             f"{raw_key.to_user_string()} and {parquet_key.to_user_string()})")
                    continue
                refused = landing.refusals(store).get(day, "normalize")
                if refused is not None and refused.landing_version == landed.version:
                    run.fail(key, str(refused))
                    continue
                with store.connect() as reader:
                    built_from = landing_version_of(store.url(parquet), reader)
                if built_from is not None and built_from != landed.version:
                    run.fail(key, f"Mixpanel day {day}: its Parquet file was built from landing "
                             f"{built_from}, not the current {landed.version} (normalize "
                             f"failed on it?): materialize {parquet_key.to_user_string()} again")
                    continue
                try:
                    record = load_day(con, schema, store.url(parquet),
                                      MixpanelLoad.from_landing(landed), max_drop_share=drop_share)
                except RowDropRefused as refusal:  # this day keeps its rows; the rest load
                    run.fail(key, str(refusal))
                    continue
                share = duplicate_share(con, schema, day)
                run.check(key, DUPLICATES.name, share.share <= DUPLICATE_SHARE_WARN, {
                    "rows": share.rows, "duplicate_rows": share.duplicates,
                    "duplicate_share": round(share.share, 4)})
                run.ok(key, {**load_figures(record, landed),
                             "duplicate_share": round(share.share, 4)})
        return run.finish(metadata={"dagster/column_schema": COLUMN_SCHEMA,
                                    "dagster/table_name": names.table("events")})

    return [raw_export, events_parquet, events]
