"""The hourly event assets as a job on the Dask executor, importable by the Dask workers.

Built from the environment on both sides: the process that orchestrates a run and each worker
that rebuilds the job to run one step (``dagster.reconstructable``), so both need the same env.
Run one partition range: ``python -m tests.scale.dask_job FIRST_KEY LAST_KEY`` (prints the run id).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import dagster as dg

JOB = "dask_backfill"


def backfill_job() -> dg.JobDefinition:
    from assets.definitions import build_defs
    from assets.distributed import executor_for
    from pipeline.settings import SharedSettings
    from tests.e2e.conftest import EVENTS, EVENTS_PARQUET, RAW_EXPORT

    executor = executor_for(SharedSettings.from_env())
    if executor is None:
        raise RuntimeError("set DAGSTER_EXECUTOR=dask and DASK_SCHEDULER_ADDRESS")
    defs = build_defs(os.environ)
    keys = {RAW_EXPORT, EVENTS_PARQUET, EVENTS}
    assets = [a for a in defs.assets
              if isinstance(a, dg.AssetsDefinition) and set(a.keys) & keys]
    job = dg.define_asset_job(JOB, selection=dg.AssetSelection.assets(*keys))
    return dg.Definitions(assets=assets, resources=defs.resources, jobs=[job],
                          executor=executor).resolve_job_def(JOB)


def main(argv: Sequence[str]) -> int:
    from tests.scale.dask_job import backfill_job as by_module  # not __main__'s copy

    first, last = argv
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            dg.reconstructable(by_module), instance,
            tags={"dagster/asset_partition_range_start": first,
                  "dagster/asset_partition_range_end": last},
            raise_on_error=False)
        print(f"run_id={result.run_id} success={result.success}", flush=True)
        return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
