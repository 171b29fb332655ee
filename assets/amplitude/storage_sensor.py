"""The storage export's sensor: a run for each batch of hours Amplitude has finished writing.

Amplitude delivers "best effort, typically hourly", sometimes several hours at once and at no
fixed minute, so a schedule would either run too early (the hour fails for its missing marker)
or too late. The sensor lists the last ``LOOKBACK`` of the bucket at most once a minute and asks
for one range run per run of consecutive hours that became ready, or whose objects Amplitude
rewrote (a backfill). Its cursor remembers the objects each hour was requested with, so an hour
is run once per version of its objects, never again while a run of it is under way; on first
sight an hour whose landing already holds exactly those objects is not run at all. A backfill of
hours older than ``LOOKBACK`` is picked up by the late-data schedule or a re-run of the range.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from assets.namespace import Names
from assets.partitions import partition_key
from pipeline.amplitude.landing import AmplitudeLake
from pipeline.amplitude.settings import AmplitudeOptions
from pipeline.amplitude.storage_export import HourObjects
from pipeline.hours import floor_hour, hours_between
from resources import AmplitudeStorageResource, LakeResource

LOOKBACK = timedelta(hours=48)


def version(hour: HourObjects) -> str:
    """The hour's objects as one short token (its refusal too: a fixed key is news)."""
    text = json.dumps([sorted(hour.signature), hour.refused])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def spans(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours as (first, last) pairs."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in sorted(hours):
        if runs and hour - runs[-1][1] == timedelta(hours=1):
            runs[-1] = (runs[-1][0], hour)
        else:
            runs.append((hour, hour))
    return runs


def build_storage_sensor(names: Names, options: AmplitudeOptions,
                         job: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    @dg.sensor(name=names.name("storage_sensor"), job=job, minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.STOPPED,
               required_resource_keys={names.storage_resource, "lake"},
               description="Loads the hours Amplitude's storage export has finished writing, or "
               f"rewrote, within the last {LOOKBACK.total_seconds() / 3600:g} h: one range run "
               "per batch (off by default; it replaces the hourly schedule).")
    def storage_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        storage: AmplitudeStorageResource = getattr(context.resources, names.storage_resource)
        lake: LakeResource = context.resources.lake
        export, now = storage.export(), datetime.now(UTC)
        last = floor_hour(now) - timedelta(hours=1)
        first = max(options.start, last - LOOKBACK)
        hours = hours_between(first, last + timedelta(hours=1))
        requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        store = lake.lake().share(AmplitudeLake, namespace=names.namespace)
        due, versions = [], {}
        for hour, objects in export.list_hours(hours).items():
            if objects.refused is None and export.not_ready(objects, now) is not None:
                continue  # not written whole yet
            key, token = partition_key(hour), version(objects)
            versions[key] = token
            if requested.get(key) == token:
                continue
            landed = store.landed_or_none(hour) if key not in requested else None
            if landed is not None and landed.source == "storage" \
                    and landed.signature == objects.signature and objects.refused is None:
                continue  # loaded before the sensor saw it
            due.append(hour)
        runs = [dg.RunRequest(
            run_key=f"{partition_key(a)}..{partition_key(b)}:" + hashlib.sha256("".join(
                versions[partition_key(h)] for h in hours_between(a, b + timedelta(hours=1))
            ).encode()).hexdigest()[:16],
            tags={"dagster/asset_partition_range_start": partition_key(a),
                  "dagster/asset_partition_range_end": partition_key(b)})
            for a, b in spans(due)]
        keep = partition_key(first)
        cursor = {k: v for k, v in {**requested, **versions}.items() if k >= keep}
        return dg.SensorResult(run_requests=runs, cursor=json.dumps(cursor, sort_keys=True))

    return storage_sensor
