"""Amplitude events: raw export landing → Parquet lake → DuckDB table, one asset per stage.

Three assets rather than one so each stage can be re-run alone (a parser fix re-normalizes from the
landing copy without calling the API; a warehouse rebuild reloads from the lake), and so only the
last, short stage holds the single DuckDB writer slot. Every body reads the run's time window, so
one body serves a single hour and a backfilled range; figures are reported per hour.
"""


import contextlib
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import PurePath
from typing import Any

import dagster as dg

from assets.partitions import partition_key, run_hours
from pipeline.amplitude.fetching import HourRefused, fetch_and_land, hours_to_fetch
from pipeline.amplitude.hour_checks import SPECS as HOUR_CHECKS
from pipeline.amplitude.hour_checks import check_hour
from pipeline.amplitude.hour_parquet import write_hour_parquet
from pipeline.amplitude.landing import AmplitudeLake, LandedHour
from pipeline.amplitude.normalize import PARSER_VERSION, NormalizeError
from pipeline.amplitude.refusals import Refusal, Refusals, loadable
from pipeline.amplitude.rejects import rejects_for
from pipeline.amplitude.schema import EVENT_COLUMNS
from pipeline.lake import LakeError
from pipeline.warehouse import EVENTS_TABLE, LoadRecord, RowDropRefused, WarehouseLocked
from resources import AmplitudeExportResource, LakeResource, WarehouseResource

RAW_EXPORT = dg.AssetKey(["amplitude", "raw_export"])
EVENTS_PARQUET = dg.AssetKey(["amplitude", "events_parquet"])
EVENTS = dg.AssetKey(["amplitude", "events"])
WAREHOUSE_POOL = "duckdb_warehouse"
OWNERS = ["team:data-engineering"]  # who the UI shows as answering for the tables
EXPORT_POOL = "amplitude_export"

# single_run() is what makes a range one run with few export requests; its beta flag is noise.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

SEVERITY = {spec.name: dg.AssetCheckSeverity.WARN if spec.warn else dg.AssetCheckSeverity.ERROR
            for spec in HOUR_CHECKS}
COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(c.name, c.duckdb_type) for c in EVENT_COLUMNS]
)


class FetchConfig(dg.Config):
    """Run config of amplitude/raw_export."""

    refetch: bool = False  # fetch every hour again, even one landed less than refetch_after ago


class LoadConfig(dg.Config):
    """Run config of amplitude/events."""

    accept_row_drops: bool = False  # load a re-fetch even if it holds far fewer rows (or none)


def landed_file(store: AmplitudeLake, hour: datetime) -> PurePath:
    place = store.events_file(hour)
    assert place is not None  # loadable() has seen it
    return place


def _refused_hours(context: dg.AssetExecutionContext, stage: str, refused: list[str],
                   hours: int) -> None:
    """A stage fails itself only when no hour is left for the next; otherwise the load, the
    last stage, names every bad hour in its failure."""
    if refused and len(refused) == hours:
        raise dg.Failure(f"{stage}: every upload hour of the run failed: " + "; ".join(refused),
                         allow_retries=False)
    for line in refused:
        context.log.error(line)


def build_event_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    common: dict[str, Any] = {
        "partitions_def": partitions,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "group_name": "amplitude",
        "owners": OWNERS,
    }

    @dg.asset(
        key=RAW_EXPORT, pool=EXPORT_POOL, kinds={"amplitude", "file"}, code_version="2",
        description="The export archive's gzip members, byte for byte, one landing folder per "
        "upload hour. Fetched in windows of up to max_window_hours; oversized windows halve, and "
        "so do windows whose archive stays damaged, until the bad hours stand alone.",
        **common,
    )
    def raw_export(
        context: dg.AssetExecutionContext, config: FetchConfig,
        amplitude: AmplitudeExportResource, lake: LakeResource,
    ) -> dg.MaterializeResult:
        store = lake.lake()
        store.tidy("amplitude", "export")
        now, hours = datetime.now(UTC), run_hours(context)
        fetch, reuse = hours_to_fetch(store, hours, now=now, refetch=config.refetch,
                                      refetch_after=timedelta(hours=amplitude.refetch_after_hours))
        for landed in reuse:
            context.add_asset_metadata({
                "reused_landing": landed.version,
                "landing_age_hours": round((now - landed.fetched_at).total_seconds() / 3600, 2),
            }, partition_key=partition_key(landed.upload_hour))
        if reuse:
            context.log.info(f"{len(reuse)} hour(s) landed less than "
                             f"{amplitude.refetch_after_hours} h ago are not fetched again "
                             "(run config refetch: true fetches them)")
        refused: list[str] = []
        with amplitude.client() as client, store.scratch() as scratch:
            for outcome in fetch_and_land(client, store, fetch, scratch, now=now,
                                          max_window_hours=amplitude.max_window_hours,
                                          lag_hours=amplitude.lag_hours, run_id=context.run.run_id):
                if isinstance(outcome, HourRefused):
                    refused.append(str(outcome.refusal))
                    context.add_asset_metadata({"refused": outcome.refusal.cause},
                                               partition_key=partition_key(
                                                   outcome.refusal.upload_hour))
                    continue
                landed = outcome.landed
                context.add_asset_metadata({
                    "archive_members": len(landed.members),
                    "bytes_downloaded": landed.member_bytes,
                    "requests": round(landed.requests, 3),
                    "window_requests": landed.window_requests,
                    "window_hours": landed.window_hours,
                    "fetch_seconds": round(landed.fetch_seconds, 3),
                    "request_window": landed.request_window,
                }, partition_key=partition_key(landed.upload_hour))
        _refused_hours(context, "amplitude/raw_export", refused, len(hours))
        return dg.MaterializeResult()  # figures are per hour, above; a range total would repeat

    @dg.asset(
        key=EVENTS_PARQUET, deps=[RAW_EXPORT], kinds={"parquet"}, code_version=PARSER_VERSION,
        description="Typed events, one zstd Parquet file per upload hour, hive-partitioned by "
        "upload_date and upload_hour.",
        **common,
    )
    def events_parquet(
        context: dg.AssetExecutionContext, lake: LakeResource
    ) -> dg.MaterializeResult:
        store, hours = lake.lake(), run_hours(context)
        for table in ("events", "rejects"):  # superseded versions past their grace period
            store.tidy_tables("amplitude", table)
        refusals = Refusals(store)
        refused: list[str] = []
        for hour in hours:
            fetch = refusals.get(hour, "fetch")
            if fetch is not None and fetch.run_id == context.run.run_id:
                refused.append(str(fetch))  # nothing new to read; the load names it
                continue
            landed: LandedHour | None = None
            try:
                landed = store.landed(hour)
                result = write_hour_parquet(store, landed, lake.limits(),
                                            quarantine=lake.quarantine)
            except (NormalizeError, LakeError) as error:
                refusal = Refusal(hour, "normalize", str(error), context.run.run_id,
                                  landing_version=landed.version if landed else None)
                refusals.record(refusal)
                refused.append(str(refusal))
                context.add_asset_metadata({"refused": str(error)},
                                           partition_key=partition_key(hour))
                continue
            refusals.clear(hour, "normalize")
            context.add_asset_metadata({
                "dagster/row_count": result.rows,
                "parquet_bytes": result.bytes,
                "archive_members": len(landed.members),
                "normalize_seconds": round(result.seconds, 3),
                "normalize_plan": result.plan,
                "rejected_lines": result.rejected,
                "path": dg.MetadataValue.path(store.url(result.path)),
            }, partition_key=partition_key(hour))
        _refused_hours(context, "amplitude/events_parquet", refused, len(hours))
        return dg.MaterializeResult(metadata={"dagster/column_schema": COLUMN_SCHEMA})

    @dg.asset(
        key=EVENTS, deps=[EVENTS_PARQUET], pool=WAREHOUSE_POOL, kinds={"duckdb"}, code_version="3",
        description=f"{EVENTS_TABLE} in the DuckDB warehouse; each upload hour swapped in one "
        "transaction and recorded in amplitude._loads.",
        check_specs=[dg.AssetCheckSpec(spec.name, asset=EVENTS, description=spec.description,
                                       partitions_def=partitions) for spec in HOUR_CHECKS],
        **common,
    )
    def events(
        context: dg.AssetExecutionContext, config: LoadConfig, lake: LakeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        store, target = lake.lake(), warehouse.warehouse()
        hours = run_hours(context)
        failing: dict[str, list[str]] = {spec.name: [] for spec in HOUR_CHECKS}
        last: dict[str, dict[str, Any]] = {}
        failed: list[str] = []
        loaded: dict[str, dict[str, Any]] = {}
        drop_share = None if config.accept_row_drops else warehouse.max_row_drop_share
        stack = contextlib.ExitStack()
        try:
            con = stack.enter_context(target.connect())
        except WarehouseLocked as error:
            # connect() has already waited its bound (WAREHOUSE_LOCK_TIMEOUT_SECONDS); waiting
            # again here would make the bound a lie. Nothing was changed.
            raise dg.Failure(str(error), allow_retries=False) from error
        with stack:
            for hour in hours:
                landed = loadable(store, hour, context.run.run_id)
                if isinstance(landed, str):
                    failed.append(f"upload hour {hour:%Y-%m-%dT%H}: {landed}")
                    continue
                parquet = store.url(landed_file(store, hour))
                try:
                    quarantined = rejects_for(store, hour, landed.version)
                    record = target.replace_hour(con, parquet,
                                                 LoadRecord.from_landing(landed),
                                                 max_drop_share=drop_share, rejects=quarantined)
                except RowDropRefused as refusal:  # this hour keeps its rows; the rest load
                    failed.append(str(refusal))
                    continue
                key = partition_key(hour)
                for outcome in check_hour(con, hour, parquet, record,
                                          max_drop_share=warehouse.max_row_drop_share):
                    if len(hours) > 1:  # one hour's result is the step's result, below
                        context.log_event(dg.AssetCheckEvaluation(
                            asset_key=EVENTS, check_name=outcome.name, passed=outcome.passed,
                            partition=key, metadata=outcome.metadata,
                            severity=SEVERITY[outcome.name]))
                    last[outcome.name] = outcome.metadata
                    if not outcome.passed:
                        failing[outcome.name].append(key)
                loaded[key] = {
                    "dagster/row_count": record.rows,
                    "bytes_downloaded": record.bytes_downloaded,
                    "archive_members": record.archive_members,
                    "requests": round(landed.requests, 3),
                    "fetch_seconds": round(record.fetch_seconds, 3),
                    "load_seconds": round(record.load_seconds, 3),
                    "rows_added": record.rows_added,
                    "rows_removed": record.rows_removed,
                    "rows_changed": record.rows_changed,
                }
        if failed:
            # Dagster marks a failed step's whole range failed unless each loaded hour says it
            # was materialized (dagster-io/dagster#17836), so the loaded hours do, one by one.
            for key, metadata in loaded.items():
                context.log_event(dg.AssetMaterialization(EVENTS, partition=key,
                                                          metadata=metadata))
            raise dg.Failure(
                f"{len(failed)} of {len(hours)} upload hour(s) not loaded (the other "
                f"{len(loaded)} are): " + "; ".join(failed), allow_retries=False,
                metadata={"hours_failed": len(failed), "hours_loaded": len(loaded)})
        for key, metadata in loaded.items():
            context.add_asset_metadata(metadata, partition_key=key)
        return dg.MaterializeResult(
            metadata={"dagster/column_schema": COLUMN_SCHEMA, "dagster/table_name": EVENTS_TABLE},
            # Each hour's result is recorded above, on its partition; a range run's step also
            # owes Dagster one result per check, which says which hours failed.
            check_results=[dg.AssetCheckResult(
                check_name=spec.name, passed=not failing[spec.name], severity=SEVERITY[spec.name],
                metadata={**(last.get(spec.name, {}) if len(hours) == 1 else {}),
                          "hours_checked": len(loaded), "hours_failing": len(failing[spec.name]),
                          "failing_hours": ", ".join(failing[spec.name][:50])})
                for spec in HOUR_CHECKS],
        )

    return [raw_export, events_parquet, events]
