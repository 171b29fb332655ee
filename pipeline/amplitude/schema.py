"""The one explicit schema of an exported event, as the warehouse and the lake store it.

Types follow the real export, not the doc's table (shared/reference section 1.3): timestamps are
UTC strings without a zone, ``amplitude_attribution_ids`` is a list, property bags are objects
kept as JSON so that keys differing only by case, nesting and wide bags survive untouched. Keys that
begin with ``$`` lose it, since ``$`` is awkward in SQL. Columns the pipeline adds begin with
``_``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

TIMESTAMP = "TIMESTAMPTZ"
JSON = "JSON"


@dataclass(frozen=True)
class Column:
    name: str
    duckdb_type: str
    source_key: str | None = None  # the key in the export line, when it differs from name

    @property
    def key(self) -> str:
        return self.source_key or self.name


def _columns(spec: str) -> tuple[Column, ...]:
    columns = []
    for line in spec.strip().splitlines():
        key, duckdb_type = line.split()
        name = key.lstrip("$")
        columns.append(Column(name, duckdb_type, key if key != name else None))
    return tuple(columns)


EXPORT_COLUMNS = _columns(f"""
    $insert_id VARCHAR
    $insert_key VARCHAR
    $schema BIGINT
    adid VARCHAR
    amplitude_attribution_ids VARCHAR[]
    amplitude_event_type VARCHAR
    amplitude_id BIGINT
    app BIGINT
    city VARCHAR
    client_event_time {TIMESTAMP}
    client_upload_time {TIMESTAMP}
    country VARCHAR
    data {JSON}
    data_type VARCHAR
    device_brand VARCHAR
    device_carrier VARCHAR
    device_family VARCHAR
    device_id VARCHAR
    device_manufacturer VARCHAR
    device_model VARCHAR
    device_type VARCHAR
    dma VARCHAR
    event_id BIGINT
    event_properties {JSON}
    event_time {TIMESTAMP}
    event_type VARCHAR
    global_user_properties {JSON}
    group_properties {JSON}
    groups {JSON}
    idfa VARCHAR
    ip_address VARCHAR
    is_attribution_event BOOLEAN
    language VARCHAR
    library VARCHAR
    location_lat DOUBLE
    location_lng DOUBLE
    os_name VARCHAR
    os_version VARCHAR
    partner_id VARCHAR
    paying BOOLEAN
    plan {JSON}
    platform VARCHAR
    processed_time {TIMESTAMP}
    region VARCHAR
    sample_rate DOUBLE
    server_received_time {TIMESTAMP}
    server_upload_time {TIMESTAMP}
    session_id BIGINT
    source_id VARCHAR
    start_version VARCHAR
    user_creation_time {TIMESTAMP}
    user_id VARCHAR
    user_properties {JSON}
    uuid VARCHAR
    version_name VARCHAR
""")

PIPELINE_COLUMNS = (
    Column("_extras", JSON),  # top-level keys the schema does not know, as one object
    Column("_upload_hour", TIMESTAMP),  # the partition: the upload hour the export was asked for
    Column("_source_member", "VARCHAR"),  # the archive member the line came from
)

EVENT_COLUMNS = EXPORT_COLUMNS + PIPELINE_COLUMNS
KNOWN_KEYS = frozenset(column.key for column in EXPORT_COLUMNS)

def arrow_schema() -> pa.Schema:
    """The Arrow schema of a lake file, as pyarrow reads it back.

    pyarrow is imported here, not at the top: only readers of the lake need it, and importing it
    costs every Dagster step process about 40 MB.
    """
    import pyarrow as pa

    types = {
        "VARCHAR": pa.string(),
        "BIGINT": pa.int64(),
        "DOUBLE": pa.float64(),
        "BOOLEAN": pa.bool_(),
        "VARCHAR[]": pa.list_(pa.string()),
        TIMESTAMP: pa.timestamp("us", tz="UTC"),
        JSON: pa.json_(pa.string()),
    }
    return pa.schema([pa.field(c.name, types[c.duckdb_type]) for c in EVENT_COLUMNS])
