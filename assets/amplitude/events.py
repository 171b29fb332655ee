"""One Amplitude project's events: raw export landing → Parquet lake → warehouse table.

Three assets rather than one so each stage can be re-run alone (a parser fix re-normalizes from the
landing copy without calling the API; a warehouse rebuild reloads from the lake), and so only the
last, short stage holds the single warehouse writer slot. Every body reads the run's time window,
so one body serves a single hour and a backfilled range; figures are reported per hour
(``assets/range_run.py``), and one bad hour costs that hour only.
"""

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from assets.namespace import OWNERS, WAREHOUSE_POOL, Names
from assets.partitions import partition_key, run_hours
from assets.range_run import Check, RangeRun
from pipeline import source
from pipeline.amplitude import hour_load
from pipeline.amplitude.fetching import (
    HourFetched,
    HourRefused,
    HourReused,
    fetch_and_land,
    hours_to_fetch,
    land_from_storage,
)
from pipeline.amplitude.hour_checks import SPECS, LoadedHour
from pipeline.amplitude.hour_parquet import write_hour_parquet
from pipeline.amplitude.landing import AmplitudeLake, LandedHour
from pipeline.amplitude.load import LoadRecord
from pipeline.amplitude.normalize import PARSER_VERSION, NormalizeError
from pipeline.amplitude.refusals import hour_refusals, loadable
from pipeline.amplitude.rejects import rejects_for
from pipeline.amplitude.schema import EVENT_COLUMNS
from pipeline.amplitude.settings import AmplitudeOptions
from pipeline.lake import LakeError
from pipeline.object_storage import ObjectStorageError
from pipeline.partition_swap import RowDropRefused
from pipeline.worker import Worker, WorkerDied
from resources import (
    AmplitudeExportResource,
    AmplitudeStorageResource,
    LakeResource,
    WarehouseResource,
)

# single_run() is what makes a range one run with few export requests; its beta flag is noise.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

HOUR_CHECKS = [Check(spec.name, spec.description, spec.warn) for spec in SPECS]
COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(c.name, c.duckdb_type) for c in EVENT_COLUMNS])
UNIT = "upload hour"


class FetchConfig(dg.Config):
    """Run config of <project>/raw_export."""

    refetch: bool = False  # fetch every hour again, even one landed less than refetch_after ago


class LoadConfig(dg.Config):
    """Run config of <project>/events."""

    accept_row_drops: bool = False  # load a re-fetch even if it holds far fewer rows (or none)


def project_lake(context: dg.AssetExecutionContext, names: Names) -> AmplitudeLake:
    lake: LakeResource = context.resources.lake
    store = lake.lake().share(AmplitudeLake, namespace=names.namespace)
    source.mark(store, names.project)
    return store


def landed_bytes(store: AmplitudeLake, hours: list[datetime]) -> int:
    """The zipped members of ``hours``: a step whose work is small needs no worker process."""
    return sum(landed.member_bytes for hour in hours
               if (landed := store.landed_or_none(hour)) is not None)


def reuse_figures(reused: HourReused, now: datetime) -> dict[str, Any]:
    landed = reused.landed
    return {"reused_landing": landed.version, "source": landed.source,
            "landing_age_hours": round((now - landed.fetched_at).total_seconds() / 3600, 2)}


def landing_figures(landed: LandedHour) -> dict[str, Any]:
    return {"source": landed.source, "archive_members": len(landed.members),
            "bytes_downloaded": landed.member_bytes,
            "requests": round(landed.requests, 3), "window_requests": landed.window_requests,
            "window_hours": landed.window_hours, "fetch_seconds": round(landed.fetch_seconds, 3),
            "request_window": landed.request_window}


def load_figures(record: LoadRecord, landed: LandedHour) -> dict[str, Any]:
    return {"dagster/row_count": record.rows, "bytes_downloaded": record.bytes_downloaded,
            "archive_members": record.archive_members, "requests": round(landed.requests, 3),
            "fetch_seconds": round(record.fetch_seconds, 3),
            "load_seconds": round(record.load_seconds, 3), "rows_added": record.rows_added,
            "rows_removed": record.rows_removed, "rows_changed": record.rows_changed}


def build_event_assets(names: Names, options: AmplitudeOptions,
                       partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    raw_key, parquet_key, events_key = (names.key(n) for n in ("raw_export", "events_parquet",
                                                               "events"))
    common: dict[str, Any] = {"partitions_def": partitions, "group_name": names.group,
                              "backfill_policy": dg.BackfillPolicy.single_run(), "owners": OWNERS}

    source_keys = {names.storage_resource if options.from_storage else names.resource}

    @dg.asset(
        key=raw_key, pool=names.export_pool, kinds={"amplitude", "file"}, code_version="3",
        required_resource_keys={*source_keys, "lake", "warehouse"},
        description="The hour's gzip files, byte for byte, one landing folder per upload hour: "
        + ("the objects of Amplitude's storage export, read once the hour's marker is written, "
           "again whenever Amplitude rewrites them." if options.from_storage else
           "the Export API's archive members, fetched in windows of up to max_window_hours; "
           "oversized windows halve, and so do windows whose archive stays damaged, until the "
           "bad hours stand alone."),
        **common,
    )
    def raw_export(context: dg.AssetExecutionContext,
                   config: FetchConfig) -> dg.MaterializeResult:
        store = project_lake(context, names)
        run = RangeRun(context, raw_key, context.partition_keys, unit=UNIT)
        store.tidy(names.namespace, "export")
        now, hours, run_id = datetime.now(UTC), run_hours(context), context.run.run_id
        if options.from_storage:
            storage: AmplitudeStorageResource = getattr(context.resources,
                                                        names.storage_resource)
            outcomes = land_from_storage(storage.export(), store, hours, now=now,
                                         refetch=config.refetch, run_id=run_id)
        else:
            outcomes = land_from_api(context, store, hours, now=now, refetch=config.refetch)
        try:
            for outcome in outcomes:
                if isinstance(outcome, HourRefused):
                    key = partition_key(outcome.upload_hour)
                    run.note(key, {"refused": outcome.refusal.cause})
                    run.fail(key, str(outcome.refusal))
                elif isinstance(outcome, HourReused):
                    run.ok(partition_key(outcome.landed.upload_hour), reuse_figures(outcome, now))
                else:
                    run.ok(partition_key(outcome.landed.upload_hour),
                           landing_figures(outcome.landed))
        except ObjectStorageError as error:  # the lake is away: no hour left can land either
            for hour in hours:
                key = partition_key(hour)
                if key not in run.done and key not in run.failed:
                    run.fail(key, f"upload hour {hour:%Y-%m-%dT%H}: not landed: {error}")
        return run.finish(fail_step=False)  # the load fails the refused hours

    def land_from_api(context: dg.AssetExecutionContext, store: AmplitudeLake,
                      hours: list[datetime], *, now: datetime,
                      refetch: bool) -> Iterator[HourFetched | HourReused | HourRefused]:
        amplitude: AmplitudeExportResource = getattr(context.resources, names.resource)
        fetch, reuse = hours_to_fetch(store, hours, now=now, refetch=refetch,
                                      refetch_after=timedelta(hours=amplitude.refetch_after_hours))
        if reuse:
            context.log.info(f"{len(reuse)} hour(s) landed less than "
                             f"{amplitude.refetch_after_hours} h ago are not fetched again "
                             "(run config refetch: true fetches them)")
        yield from (HourReused(landed) for landed in reuse)
        with amplitude.client() as client, store.scratch() as scratch:
            yield from fetch_and_land(client, store, fetch, scratch, now=now,
                                      max_window_hours=amplitude.max_window_hours,
                                      lag_hours=amplitude.lag_hours, run_id=context.run.run_id)

    @dg.asset(
        key=parquet_key, deps=[raw_key], kinds={"parquet"}, code_version=PARSER_VERSION,
        required_resource_keys={"lake"},
        description="Typed events, one zstd Parquet file per upload hour, hive-partitioned by "
        "upload_date and upload_hour.",
        **common,
    )
    def events_parquet(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        lake: LakeResource = context.resources.lake
        store, run_id = project_lake(context, names), context.run.run_id
        for table in ("events", "rejects"):  # superseded versions past their grace period
            store.tidy_tables(names.namespace, table)
        run, refusals = RangeRun(context, parquet_key, context.partition_keys, unit=UNIT), \
            hour_refusals(store)
        hours = run_hours(context)
        with Worker(work_bytes=landed_bytes(store, hours)) as worker:  # DuckDB's memory apart
            for hour in hours:
                key, fetch = partition_key(hour), refusals.get(hour, "fetch")
                if fetch is not None and fetch.run_id == run_id:
                    run.fail(key, str(fetch))  # nothing new to read; the load names it
                    continue
                landed: LandedHour | None = None
                try:
                    landed = store.landed(hour)
                    result = worker.call(write_hour_parquet, store, landed, lake.limits(),
                                         quarantine=options.rejects == "quarantine")
                except (NormalizeError, LakeError, ObjectStorageError, WorkerDied) as error:
                    refusal = refusals.record(hour, "normalize", str(error), run_id,
                                              landed.version if landed else None)
                    run.note(key, {"refused": str(error)})
                    run.fail(key, str(refusal))
                    continue
                refusals.clear(hour, "normalize")
                run.ok(key, {"dagster/row_count": result.rows, "parquet_bytes": result.bytes,
                             "archive_members": len(landed.members),
                             "normalize_seconds": round(result.seconds, 3),
                             "normalize_plan": result.plan, "rejected_lines": result.rejected,
                             "path": dg.MetadataValue.path(store.url(result.path))})
        return run.finish(fail_step=False, metadata={"dagster/column_schema": COLUMN_SCHEMA})

    @dg.asset(
        key=events_key, deps=[parquet_key], pool=WAREHOUSE_POOL, kinds={"duckdb"},
        required_resource_keys={"lake", "warehouse"},
        code_version="3", check_specs=[c.spec(events_key, partitions) for c in HOUR_CHECKS],
        description=f"{names.table('events')} in the warehouse; each upload hour swapped in one "
        f"transaction and recorded in {names.table('_loads')}.",
        **common,
    )
    def events(context: dg.AssetExecutionContext, config: LoadConfig) -> dg.MaterializeResult:
        warehouse: WarehouseResource = context.resources.warehouse
        store, schema = project_lake(context, names), names.namespace
        run = RangeRun(context, events_key, context.partition_keys, unit=UNIT, checks=HOUR_CHECKS)
        drop_share = None if config.accept_row_drops else warehouse.max_row_drop_share
        hours = run_hours(context)
        with Worker(work_bytes=landed_bytes(store, hours)) as worker:  # DuckDB's memory apart
            target = warehouse.open_in(worker)  # once for the range
            batch: list[LoadedHour] = []

            def check_batch() -> None:
                try:
                    outcomes = worker.call(hour_load.check, target, schema, batch,
                                           max_drop_share=warehouse.max_row_drop_share)
                except WorkerDied as died:  # loaded, unchecked: a re-run checks them
                    for loaded in batch:
                        key = partition_key(loaded.hour)
                        run.done.pop(key, None)
                        run.fail(key, f"upload hour {loaded.hour:%Y-%m-%dT%H}: loaded, but "
                                 f"its checks did not run: {died}")
                    outcomes = {}
                for hour, found in outcomes.items():
                    for outcome in found:
                        run.check(partition_key(hour), outcome.name, outcome.passed,
                                  outcome.metadata)
                batch.clear()

            for hour in hours:
                key, landed = partition_key(hour), loadable(store, hour, context.run.run_id)
                if isinstance(landed, str):
                    run.fail(key, f"upload hour {hour:%Y-%m-%dT%H}: {landed}")
                    continue
                place = store.events_file(hour)
                assert place is not None  # loadable() has seen it
                parquet = store.url(place)
                try:
                    record = worker.call(
                        hour_load.load, target, schema, parquet, LoadRecord.from_landing(landed),
                        max_drop_share=drop_share,
                        rejects=rejects_for(store, hour, landed.version))
                except RowDropRefused as refusal:  # this hour keeps its rows; the rest load
                    run.fail(key, str(refusal))
                    continue
                except WorkerDied as died:  # the same: its transaction died with the worker
                    run.fail(key, f"upload hour {hour:%Y-%m-%dT%H}: {died}")
                    continue
                run.ok(key, load_figures(record, landed))
                batch.append(LoadedHour(parquet, record))
                if sum(h.record.rows for h in batch) >= hour_load.CHECK_BATCH_ROWS:
                    check_batch()
            if batch:
                check_batch()
        return run.finish(metadata={"dagster/column_schema": COLUMN_SCHEMA,
                                    "dagster/table_name": names.table("events")})

    return [raw_export, events_parquet, events]
