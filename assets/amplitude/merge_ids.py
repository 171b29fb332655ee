"""An organization's merged ids: one hourly asset per organization, whichever way its projects'
events come, loading into every one of its projects' ``merge_ids`` (``pipeline/amplitude/
merge_ids.py``).

Amplitude writes the file per organization, so several projects of one organization share one
asset: the first of them (by namespace; the environment's project first) names it and reads it
with its storage settings. Its partitions end ``storage_ready_after_hours`` before now, so the
schedule asks for an hour once a missing file means "no merges"; a re-run picks up a file that
came later.
"""


from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from assets.amplitude.events import project_lake
from assets.namespace import OWNERS, WAREHOUSE_POOL, Names
from assets.partitions import partition_key, run_hours, upload_hour_partitions
from assets.range_run import RangeRun
from pipeline.amplitude import merge_ids
from pipeline.amplitude.archive import ArchiveError
from pipeline.amplitude.settings import AmplitudeOptions
from pipeline.lake import LakeError
from pipeline.partition_swap import RowDropRefused
from pipeline.source import Project
from resources import AmplitudeStorageResource, LakeResource, WarehouseResource

STOPPED = dg.DefaultScheduleStatus.STOPPED


class MergeIdsConfig(dg.Config):
    accept_row_drops: bool = False  # load a file holding far fewer rows than are loaded


def build_merge_ids(projects: Sequence[tuple[Project, AmplitudeOptions]]) -> dg.Definitions:
    """One asset, job and schedule per organization among ``projects``."""
    by_org: dict[int, list[tuple[Project, AmplitudeOptions]]] = {}
    for project, options in sorted(projects, key=lambda p: p[0].namespace):
        if options.org_id is not None:
            by_org.setdefault(options.org_id, []).append((project, options))
    built = [_org_defs(org, members) for org, members in sorted(by_org.items())]
    return dg.Definitions.merge(*built) if built else dg.Definitions()


def _org_defs(org_id: int, members: list[tuple[Project, AmplitudeOptions]]) -> dg.Definitions:
    owner, options = members[0]
    names, schemas = Names(owner), [project.schema for project, _ in members]
    key = names.key("merge_ids")
    partitions = upload_hour_partitions(min(o.start for _, o in members),
                                        options.storage_ready_after_hours)

    @dg.asset(
        key=key, partitions_def=partitions, group_name=names.group, owners=OWNERS,
        backfill_policy=dg.BackfillPolicy.single_run(), pool=WAREHOUSE_POOL,
        kinds={"amplitude", "duckdb"}, required_resource_keys={names.storage_resource, "lake",
                                                                 "warehouse"},
        description=f"Organization {org_id}'s merged ids (-{org_id}_<date>_<H>.json.gz) into "
        + ", ".join(f"{s}.merge_ids" for s in schemas) + ": which anonymous amplitude_id became "
        "which user's original one, so the models count a merged user once.",
    )
    def merge_ids_asset(context: dg.AssetExecutionContext,
                        config: MergeIdsConfig) -> dg.MaterializeResult:
        storage: AmplitudeStorageResource = getattr(context.resources, names.storage_resource)
        lake: LakeResource = context.resources.lake
        warehouse: WarehouseResource = context.resources.warehouse
        store, hours, now = project_lake(context, names), run_hours(context), datetime.now(UTC)
        files = merge_ids.MergeIdFiles(access=storage.access(),
                                       location=storage.merge_ids_location(), org_id=org_id,
                                       ready_after=timedelta(hours=storage.ready_after_hours))
        run = RangeRun(context, key, context.partition_keys, unit="upload hour")
        listed = files.list_hours(hours)
        drop_share = None if config.accept_row_drops else warehouse.max_row_drop_share
        with warehouse.writing() as con:
            for hour in hours:
                part, stored = partition_key(hour), listed[hour]
                why = files.not_ready(hour, stored, now)
                if why is not None:
                    run.fail(part, why)
                    continue
                try:
                    done = merge_ids.bring_in(store, files, hour, stored, lake.limits())
                    parquet = merge_ids.parquet_url(store, hour)
                    loads = [merge_ids.load(con, schema, parquet,
                                            merge_ids.MergeLoad.from_landing(done),
                                            max_drop_share=drop_share) for schema in schemas]
                except (ArchiveError, RowDropRefused, LakeError) as error:
                    run.fail(part, str(error))
                    continue
                run.ok(part, _figures(done, loads[0]))
        return run.finish(metadata={"dagster/table_name": ", ".join(
            f"{s}.merge_ids" for s in schemas)})

    job = dg.define_asset_job(names.name("merge_ids_hourly"), selection=[key],
                              description=f"Load organization {org_id}'s merged ids.")
    schedule = dg.build_schedule_from_partitioned_job(
        job, minute_of_hour=20, name=names.name("merge_ids_schedule"), default_status=STOPPED)
    return dg.Definitions(assets=[merge_ids_asset], jobs=[job], schedules=[schedule])


def _figures(done: merge_ids.LandedMerges, load: merge_ids.MergeLoad) -> dict[str, Any]:
    return {"dagster/row_count": load.rows, "file": done.key or "none (no merges this hour)",
            "bytes_downloaded": done.bytes, "rows_added": load.rows_added,
            "rows_removed": load.rows_removed, "rows_changed": load.rows_changed}
