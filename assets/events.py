"""Amplitude events: raw export landing → Parquet lake → DuckDB table, one asset per stage.

Three assets rather than one so each stage can be re-run alone (a parser fix re-normalizes from the
landing copy without calling the API; a warehouse rebuild reloads from the lake), and so only the
last, short stage holds the single DuckDB writer slot. Every body reads the run's time window, so
one body serves a single hour and a backfilled range; figures are reported per hour.
"""


import contextlib
import warnings
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from assets.partitions import partition_key, run_hours
from pipeline.amplitude.export import fetch_windows
from pipeline.amplitude.normalize import normalize_hour
from pipeline.amplitude.schema import EVENT_COLUMNS
from pipeline.hours import plan_windows
from pipeline.warehouse import EVENTS_TABLE, LoadRecord, RowDropRefused, WarehouseLocked
from resources import AmplitudeExportResource, LakeResource, WarehouseResource

RAW_EXPORT = dg.AssetKey(["amplitude", "raw_export"])
EVENTS_PARQUET = dg.AssetKey(["amplitude", "events_parquet"])
EVENTS = dg.AssetKey(["amplitude", "events"])
WAREHOUSE_POOL = "duckdb_warehouse"
EXPORT_POOL = "amplitude_export"

# single_run() is what makes a range one run with few export requests; its beta flag is noise.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(c.name, c.duckdb_type) for c in EVENT_COLUMNS]
)


class LoadConfig(dg.Config):
    """Run config of amplitude/events."""

    accept_row_drops: bool = False  # load a re-fetch even if it holds far fewer rows (or none)


def build_event_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    common: dict[str, Any] = {
        "partitions_def": partitions,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "group_name": "amplitude",
    }

    @dg.asset(
        key=RAW_EXPORT, pool=EXPORT_POOL, kinds={"amplitude", "file"},
        description="The export archive's gzip members, byte for byte, one landing folder per "
        "upload hour. Fetched in windows of up to max_window_hours; oversized windows halve.",
        **common,
    )
    def raw_export(
        context: dg.AssetExecutionContext, amplitude: AmplitudeExportResource, lake: LakeResource
    ) -> dg.MaterializeResult:
        store = lake.lake()
        store.tidy("amplitude", "export")
        windows = plan_windows(run_hours(context), amplitude.max_window_hours,
                               now=datetime.now(UTC), lag_hours=amplitude.lag_hours)
        context.log.info(f"{len(windows)} export window(s): {', '.join(map(str, windows))}")
        with amplitude.client() as client, store.scratch() as scratch:
            for download in fetch_windows(client, windows, scratch):
                for landed in store.land(download):
                    context.add_asset_metadata({
                        "archive_members": len(landed.members),
                        "bytes_downloaded": landed.member_bytes,
                        "requests": round(landed.requests, 3),
                        "window_requests": landed.window_requests,
                        "window_hours": landed.window_hours,
                        "fetch_seconds": round(landed.fetch_seconds, 3),
                        "request_window": landed.request_window,
                    }, partition_key=partition_key(landed.upload_hour))
                if download.path is not None:
                    download.path.unlink()
        return dg.MaterializeResult()  # figures are per hour, above; a range total would repeat

    @dg.asset(
        key=EVENTS_PARQUET, deps=[RAW_EXPORT], kinds={"parquet"},
        description="Typed events, one zstd Parquet file per upload hour, hive-partitioned by "
        "upload_date and upload_hour.",
        **common,
    )
    def events_parquet(
        context: dg.AssetExecutionContext, lake: LakeResource
    ) -> dg.MaterializeResult:
        store = lake.lake()
        for hour in run_hours(context):
            landed = store.landed(hour)
            result = normalize_hour(
                store.member_paths(landed), hour, store.events_file(hour), lake.limits(),
                member_names={m.file: m.name for m in landed.members},
            )
            context.add_asset_metadata({
                "dagster/row_count": result.rows,
                "parquet_bytes": result.bytes,
                "archive_members": len(landed.members),
                "normalize_seconds": round(result.seconds, 3),
                "normalize_plan": result.plan,
                "path": dg.MetadataValue.path(str(result.path)),
            }, partition_key=partition_key(hour))
        return dg.MaterializeResult(metadata={"dagster/column_schema": COLUMN_SCHEMA})

    @dg.asset(
        key=EVENTS, deps=[EVENTS_PARQUET], pool=WAREHOUSE_POOL, kinds={"duckdb"},
        description=f"{EVENTS_TABLE} in the DuckDB warehouse; each upload hour swapped in one "
        "transaction and recorded in amplitude._loads.",
        check_specs=[
            dg.AssetCheckSpec("upload_time_in_hour", asset=EVENTS, description=(
                "Every row's server_upload_time lies in the upload hour it was exported for "
                "(a warning: it would mean Amplitude filed events under another hour).")),
            dg.AssetCheckSpec("uuid_unique_per_hour", asset=EVENTS, description=(
                "No uuid repeats within an upload hour (Amplitude can re-export duplicates; "
                "a warning, not a failure).")),
        ],
        **common,
    )
    def events(
        context: dg.AssetExecutionContext, config: LoadConfig, lake: LakeResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        store, target = lake.lake(), warehouse.warehouse()
        hours = run_hours(context)
        misfiled = duplicated = 0
        refused: list[RowDropRefused] = []
        drop_share = None if config.accept_row_drops else warehouse.max_row_drop_share
        stack = contextlib.ExitStack()
        try:
            con = stack.enter_context(target.connect())
        except WarehouseLocked as error:
            # Only a held lock is worth another attempt; a wrong layout or a missing file is not.
            raise dg.RetryRequested(max_retries=3, seconds_to_wait=60) from error
        with stack:
            for hour in hours:
                landed = store.landed(hour)
                parquet = store.events_file(hour)
                if not parquet.exists():
                    raise FileNotFoundError(
                        f"upload hour {hour:%Y-%m-%dT%H} has no Parquet file at {parquet}: "
                        "materialize amplitude/events_parquet for it first")
                try:
                    record = target.replace_hour(con, parquet, LoadRecord.from_landing(landed),
                                                 max_drop_share=drop_share)
                except RowDropRefused as refusal:  # this hour keeps its rows; the rest load
                    context.log.error(str(refusal))
                    refused.append(refusal)
                    continue
                outside, repeats = con.execute(  # type: ignore[misc]  # aggregates: one row
                    f"SELECT count(*) FILTER (WHERE server_upload_time < _upload_hour OR "
                    f"server_upload_time >= _upload_hour + INTERVAL 1 HOUR), "
                    f"count(*) - count(DISTINCT uuid) FROM {EVENTS_TABLE} "
                    "WHERE _upload_hour = ?", [hour]).fetchone()
                misfiled += outside
                duplicated += repeats
                context.add_asset_metadata({
                    "dagster/row_count": record.rows,
                    "bytes_downloaded": record.bytes_downloaded,
                    "archive_members": record.archive_members,
                    "requests": round(landed.requests, 3),
                    "fetch_seconds": round(record.fetch_seconds, 3),
                    "load_seconds": round(record.load_seconds, 3),
                }, partition_key=partition_key(hour))
        if refused:  # not retried: the same fetch would be refused again
            raise dg.Failure(
                f"{len(refused)} upload hour(s) kept their loaded rows instead of a much smaller "
                "fetch: " + "; ".join(str(r) for r in refused), allow_retries=False,
                metadata={"hours_refused": len(refused),
                          "rows_kept": sum(r.loaded for r in refused)})
        return dg.MaterializeResult(
            metadata={"dagster/column_schema": COLUMN_SCHEMA, "dagster/table_name": EVENTS_TABLE},
            check_results=[
                dg.AssetCheckResult(check_name="upload_time_in_hour", passed=misfiled == 0,
                                    severity=dg.AssetCheckSeverity.WARN,
                                    metadata={"rows_outside_hour": misfiled}),
                dg.AssetCheckResult(check_name="uuid_unique_per_hour", passed=duplicated == 0,
                                    severity=dg.AssetCheckSeverity.WARN,
                                    metadata={"duplicate_rows": duplicated}),
            ],
        )

    return [raw_export, events_parquet, events]
