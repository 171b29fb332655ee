"""The columns of ``mixpanel.events``, as the lake's day files and the warehouse hold them.

Mixpanel's line is ``{"event": ..., "properties": {...}}`` and everything but the event name
lives in the properties, most of them the project's own. The table keeps ``properties`` whole
(JSON) and promotes the keys Mixpanel's SDKs set that analysts filter and group on: identity
(``$device_id``, ``$user_id``), platform (browser, OS, device, app and library versions), place
(``$city``, ``$region``, ``mp_country_code``), page and acquisition (URL, referrers, UTM).
A leading ``$`` is dropped, as in the Amplitude table; ``mp_country_code`` becomes
``country_code``. Columns the pipeline adds begin with ``_``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    duckdb_type: str
    key: str = ""  # the property it comes from, for promoted columns
    doc: str = ""


def _promoted(spec: str) -> tuple[Column, ...]:
    columns = []
    for line in spec.strip().splitlines():
        key, duckdb_type, *name = line.split()
        columns.append(Column(name[0] if name else key.lstrip("$"), duckdb_type, key))
    return tuple(columns)


PROMOTED = _promoted("""
    $device_id VARCHAR
    $user_id VARCHAR
    $browser VARCHAR
    $browser_version VARCHAR
    $os VARCHAR
    $os_version VARCHAR
    $device VARCHAR
    $model VARCHAR
    $manufacturer VARCHAR
    $brand VARCHAR
    $carrier VARCHAR
    $screen_height BIGINT
    $screen_width BIGINT
    $app_version_string VARCHAR
    $app_build_number VARCHAR
    $lib_version VARCHAR
    mp_lib VARCHAR
    $city VARCHAR
    $region VARCHAR
    mp_country_code VARCHAR country_code
    $current_url VARCHAR
    $referrer VARCHAR
    $referring_domain VARCHAR
    $initial_referrer VARCHAR
    $initial_referring_domain VARCHAR
    $search_engine VARCHAR
    utm_source VARCHAR
    utm_medium VARCHAR
    utm_campaign VARCHAR
""")

CORE = (
    Column("event", "VARCHAR", doc="the event name"),
    Column("distinct_id", "VARCHAR", doc="properties.distinct_id, as text"),
    Column("insert_id", "VARCHAR", doc="properties.$insert_id"),
    Column("time", "TIMESTAMPTZ", doc="the event's instant in UTC (docs/mixpanel.md)"),
    Column("time_raw", "DOUBLE", doc="properties.time as served: seconds (or ms) since 1970, "
           "in the project's zone for a local-time project"),
    Column("time_in_ms", "BIGINT", doc="the UTC instant in ms since 1970, where the export "
           "carried millisecond precision"),
    Column("mp_processing_time", "TIMESTAMPTZ", doc="properties.mp_processing_time_ms: when "
           "Mixpanel ingested the event"),
)
PIPELINE = (
    Column("properties", "JSON", doc="the properties object whole"),
    Column("_extras", "JSON", doc="top-level keys other than event and properties"),
    Column("_day", "DATE", doc="the partition: the export day (the project's day for a "
           "local-time project, else the UTC day)"),
    Column("_source_file", "VARCHAR", doc="the landed export file the row came from"),
)
EVENT_COLUMNS = CORE + PROMOTED + PIPELINE
# Mixpanel's duplicate key. The served time, not the converted one: in the hour that happens
# twice, two copies of one event processed at different times may resolve to different instants.
DEDUP_KEY = ("event", "distinct_id", "insert_id", "time_raw")
