"""``<project>/cohort_members``: who was in each cohort on each day, one snapshot a UTC day.

One asset, fetch to load: a download is a job that can take minutes, so the asset holds no Dagster
pool while it polls (a pool of 1 on the warehouse would stall every load behind it for up to the
poll bound). The load waits out the warehouse's lock for a bounded time, as any writer, and a
lock that outlasts it fails the day without a retry; a re-run reuses the files landed today
instead of spending downloads again. Any other failure is not retried either: a new job would
cost quota.
"""

import time
from datetime import UTC, datetime
from functools import partial

import dagster as dg

from assets.amplitude.snapshots import check_day, day_checks, run_days
from assets.namespace import OWNERS, Names
from assets.range_run import RangeRun
from pipeline import engine
from pipeline.amplitude import cohort_members as members
from pipeline.amplitude.settings import AmplitudeOptions
from pipeline.snapshots import SnapshotLanding, Snapshots
from resources import AmplitudeExportResource, LakeResource, WarehouseResource


class CohortMembersConfig(dg.Config):
    """Run config; each field left unset falls back to the project's settings."""

    cohort_ids: list[str] | None = None  # overrides cohort_ids ([]: every cohort)
    max_size: int | None = None  # overrides cohort_max_size
    poll_timeout_minutes: float = 30.0
    poll_first_seconds: float = 5.0
    poll_max_seconds: float = 60.0


def figures(landing: SnapshotLanding, called: bool, rows: int, started: float) -> dict:
    cohorts = landing.details.get("cohorts", [])
    return {"dagster/row_count": rows, "cohorts": len(cohorts),
            "cohorts_downloaded": sum(not c["carried_forward"] for c in cohorts),
            "cohorts_carried_forward": sum(bool(c["carried_forward"]) for c in cohorts),
            "downloads_this_month": landing.details.get("downloads_this_month", 0),
            "requests": landing.requests if called else 0,
            "seconds": round(time.monotonic() - started, 3),
            "taken_from": "Amplitude" if called else f"landing of {landing.fetched_at:%Y-%m-%d}"}


def build_cohort_member_assets(names: Names, options: AmplitudeOptions,
                               partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    key = names.key(members.TABLE)

    @dg.asset(
        key=key, deps=[names.key("cohorts")], partitions_def=partitions,
        group_name=f"{names.group}_snapshots", kinds={"amplitude", "duckdb"},
        backfill_policy=dg.BackfillPolicy.single_run(), owners=OWNERS, code_version="1",
        required_resource_keys={names.resource, "lake", "warehouse"},
        metadata={"dagster/table_name": names.table(members.TABLE)},
        check_specs=[c.spec(key, partitions) for c in day_checks(members.TABLE)],
        description="Every selected cohort's members on that day (amplitude_id, user_id, the "
        "requested user properties as JSON), from Amplitude's asynchronous cohort download. A "
        "cohort whose lastComputed has not changed since its last download is carried forward "
        "from that file instead of spending one of the month's downloads; downloads are recorded "
        "in _cohort_downloads and refused past the monthly quota's share.",
    )
    def cohort_members(context: dg.AssetExecutionContext,
                       config: CohortMembersConfig) -> dg.MaterializeResult:
        lake: LakeResource = context.resources.lake
        warehouse: WarehouseResource = context.resources.warehouse
        amplitude: AmplitudeExportResource = getattr(context.resources, names.resource)
        store = lake.lake()
        snaps = Snapshots(store, names.namespace)
        store.tidy_tables(names.namespace, members.TABLE)  # superseded versions past grace
        selection = members.Selection(
            tuple(options.cohort_ids if config.cohort_ids is None else config.cohort_ids),
            options.cohort_max_size if config.max_size is None else config.max_size,
            options.cohort_props, options.cohort_monthly_quota, options.cohort_quota_share)
        polling = members.Polling(config.poll_timeout_minutes * 60, config.poll_first_seconds,
                                  config.poll_max_seconds)

        def history() -> members.History:
            with warehouse.writing() as con:  # briefly: the lock is not held while polling
                return members.read_history(con, names.namespace, datetime.now(UTC))

        run = RangeRun(context, key, context.partition_keys, unit="day",
                       checks=day_checks(members.TABLE))
        for day in run_days(context):
            started = time.monotonic()
            try:
                with amplitude.client() as client:
                    landing, called = snaps.take(members.TABLE, day, partial(
                        members.fetch_members, client, snaps, day, history=history,
                        selection=selection, polling=polling))
            except members.QuotaExceeded as error:
                raise dg.Failure(str(error), allow_retries=False, metadata={
                    "downloads_this_month": error.used, "quota_limit": error.limit}) from error
            with store.scratch() as scratch, engine.connect(config={
                    "memory_limit": lake.normalize_memory_limit,
                    "threads": lake.normalize_threads, "preserve_insertion_order": False,
                    "temp_directory": str(scratch)}) as con, \
                    snaps.staged_table_file(members.TABLE, day) as staging:
                members.write_members(con, snaps, landing, staging)
            with warehouse.writing() as con:
                rows = members.load_members(snaps, con, landing)
                check_day(run, con, names.namespace, members.TABLE, day)
            run.ok(day.isoformat(), figures(landing, called, rows, started))
        return run.finish()

    return [cohort_members]
