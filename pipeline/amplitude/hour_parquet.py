"""One landed hour into its Parquet file in the lake: the normalize step of the asset and bench.

The engine reads members from local disk: a lake on object storage is copied into scratch
first (the zipped export is about a sixth of the JSON DuckDB would otherwise fetch by range), so
quarantine's own pass over the lines and DuckDB's scan read the same local files.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from pipeline.amplitude.landing import AmplitudeLake, LandedHour
from pipeline.amplitude.normalize import NormalizedHour, normalize_hour
from pipeline.engine import EngineLimits
from pipeline.lake import hour_partition


def write_hour_parquet(lake: AmplitudeLake, landed: LandedHour, limits: EngineLimits, *,
                       quarantine: bool = False) -> NormalizedHour:
    """Normalize ``landed`` and make the file the hour's current one; ``path`` in the result is
    its place in the lake (``lake.url`` for DuckDB)."""
    hour, partition = landed.upload_hour, hour_partition(landed.upload_hour)
    with lake.scratch() as scratch:
        members: list[Path] = []
        for place in lake.member_paths(landed):
            if lake.remote:
                local = scratch / "members" / place.name
                local.parent.mkdir(exist_ok=True)
                lake.download(place, local)
                members.append(local)
            else:
                members.append(lake.local(place))
        rejects = scratch / "rejects.parquet" if quarantine else None
        with lake.staged_table_file(lake.namespace, "events", partition) as out:
            result = normalize_hour(members, hour, out, limits,
                                    member_names={m.file: m.name for m in landed.members},
                                    landing_version=landed.version, rejects=rejects)
        if rejects is not None and result.rejected:
            with lake.staged_table_file(lake.namespace, "rejects", partition) as staged:
                shutil.move(rejects, staged)
        elif rejects is not None:
            lake.remove_table_file(lake.namespace, "rejects", partition)  # a clean fetch: none
    written = lake.events_file(hour)
    assert written is not None  # just written
    return dataclasses.replace(result, path=written)
