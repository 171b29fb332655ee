"""``amplitude/cohort_members``: who was in each cohort on each day, one snapshot a UTC day.

One asset, fetch to load: a download is a job that can take minutes, so the asset holds no Dagster
pool while it polls (a pool of 1 on the warehouse would stall every load behind it for up to the
poll bound). The load waits out the warehouse's lock for a bounded time, as any writer, and a
lock that outlasts it asks Dagster for a retry, which reuses the files landed today instead of
spending downloads again. Any other failure is not retried: a new job would cost quota.
"""


import time
from datetime import UTC, datetime
from functools import partial

import dagster as dg

from assets.events import OWNERS
from assets.snapshot_checks import DayChecks, check_specs
from assets.snapshots import GROUP, run_days
from pipeline import engine
from pipeline.amplitude import cohort_members as members
from pipeline.settings import Settings
from pipeline.snapshots import Snapshots
from pipeline.warehouse import WarehouseLocked
from resources import AmplitudeExportResource, LakeResource, WarehouseResource

COHORT_MEMBERS = dg.AssetKey(["amplitude", "cohort_members"])
COHORTS = dg.AssetKey(["amplitude", "cohorts"])


class CohortMembersConfig(dg.Config):
    """Run config; each field left unset falls back to the environment (Settings)."""

    cohort_ids: list[str] | None = None  # overrides AMPLITUDE_COHORT_IDS ([]: every cohort)
    max_size: int | None = None  # overrides AMPLITUDE_COHORT_MAX_SIZE
    poll_timeout_minutes: float = 30.0
    poll_first_seconds: float = 5.0
    poll_max_seconds: float = 60.0


def build_cohort_member_assets(partitions: dg.PartitionsDefinition, *,
                               settings: Settings | None = None) -> list[dg.AssetsDefinition]:
    """The asset, for daily UTC ``partitions``; ``settings`` default to the environment's."""
    settings = settings or Settings.from_env()

    @dg.asset(
        key=COHORT_MEMBERS, deps=[COHORTS], partitions_def=partitions, group_name=GROUP,
        kinds={"amplitude", "duckdb"}, backfill_policy=dg.BackfillPolicy.single_run(),
        owners=OWNERS, code_version="1",
        metadata={"dagster/table_name": f"amplitude.{members.TABLE}"},
        check_specs=check_specs(members.TABLE, partitions),
        description="Every selected cohort's members on that day (amplitude_id, user_id, the "
        "requested user properties as JSON), from Amplitude's asynchronous cohort download. A "
        "cohort whose lastComputed has not changed since its last download is carried forward "
        "from that file instead of spending one of the month's downloads; downloads are recorded "
        "in amplitude._cohort_downloads and refused past the monthly quota's share.",
    )
    def cohort_members(context: dg.AssetExecutionContext, config: CohortMembersConfig,
                       amplitude: AmplitudeExportResource, lake: LakeResource,
                       warehouse: WarehouseResource) -> dg.MaterializeResult:
        store, target = lake.lake(), warehouse.warehouse()
        snaps = Snapshots(store, "amplitude")
        store.tidy_tables("amplitude", members.TABLE)  # superseded versions past their grace
        selection = members.Selection(
            tuple(settings.cohort_ids if config.cohort_ids is None else config.cohort_ids),
            settings.cohort_max_size if config.max_size is None else config.max_size,
            settings.cohort_props, settings.cohort_monthly_quota, settings.cohort_quota_share)
        polling = members.Polling(config.poll_timeout_minutes * 60, config.poll_first_seconds,
                                  config.poll_max_seconds)

        def history() -> members.History:
            with target.connect() as con:  # briefly: the lock is not held while polling
                return members.read_history(con, datetime.now(UTC))

        days = run_days(context)
        checks = DayChecks(context, members.TABLE, len(days))
        for day in days:
            started = time.monotonic()
            try:
                with amplitude.client() as client:
                    landing, called = snaps.take(members.TABLE, day, partial(
                        members.fetch_members, client, snaps, day, history=history,
                        selection=selection, polling=polling))
            except members.QuotaExceeded as error:
                raise dg.Failure(str(error), metadata={"downloads_this_month": error.used,
                                                       "quota_limit": error.limit}) from error
            with store.scratch() as scratch, engine.connect(config={
                    "memory_limit": lake.normalize_memory_limit,
                    "threads": lake.normalize_threads, "preserve_insertion_order": False,
                    "temp_directory": str(scratch)}) as con, \
                    snaps.staged_table_file(members.TABLE, day) as staging:
                members.write_members(con, snaps, landing, staging)
            try:
                with target.connect() as con:
                    rows = members.load_members(target, con, landing,
                                                snaps.table_url(members.TABLE, day),
                                                register=store.versioned_tables)
                    checks.measure(con, day)
            except WarehouseLocked as error:  # a re-run reuses today's files, no new download
                raise dg.Failure(str(error), allow_retries=False) from error
            cohorts = landing.details.get("cohorts", [])
            context.add_asset_metadata({
                "dagster/row_count": rows,
                "cohorts": len(cohorts),
                "cohorts_downloaded": sum(not c["carried_forward"] for c in cohorts),
                "cohorts_carried_forward": sum(bool(c["carried_forward"]) for c in cohorts),
                "downloads_this_month": landing.details.get("downloads_this_month", 0),
                "requests": landing.requests if called else 0,
                "seconds": round(time.monotonic() - started, 3),
                "taken_from": ("Amplitude" if called
                               else f"landing of {landing.fetched_at:%Y-%m-%d}"),
            }, partition_key=day.isoformat())
        return dg.MaterializeResult(check_results=checks.results())

    return [cohort_members]
