"""The tests' own truth: how each served field should land in the warehouse, written out here.

Nothing in this module is imported or derived from ``pipeline/``: expected rows are built from
these mappings, so a wrong key-to-column mapping or a wrong type in the pipeline's lists fails the
field-for-field comparisons instead of agreeing with itself. ``tests/unit/test_expected.py``
holds them against the pipeline's lists, so a drift on either side shows as one clear failure.

Amplitude: the 55 keys of a real Export API line (shared/seeds 000, Export API event schema, and
shared/reference/amplitude-apis-and-connectors.md section 1.3, which adds the keys real exports
carry beyond the doc and the real JSON types), typed as README "The table" documents:
timestamps are UTC strings without a zone (``YYYY-MM-DD HH:MM:SS[.ffffff]``) held as TIMESTAMPTZ,
ids and counts BIGINT, property bags JSON (untouched), ``amplitude_attribution_ids`` a list of
text, and a leading ``$`` dropped (``$insert_id`` -> ``insert_id``).

Mixpanel: the columns of ``mixpanel.events`` as docs/mixpanel.md "Tables" lists them, and the
promoted properties: the ``$`` dropped, ``mp_country_code`` as ``country_code``; screen sizes are
whole numbers.
"""

from __future__ import annotations

TEXT = "VARCHAR"
BIGINT = "BIGINT"
DOUBLE = "DOUBLE"
BOOLEAN = "BOOLEAN"
TIMESTAMPTZ = "TIMESTAMPTZ"  # DuckDB describes it as TIMESTAMP WITH TIME ZONE
JSON = "JSON"
TEXT_LIST = "VARCHAR[]"
DATE = "DATE"

# ---- Amplitude: export key -> (column in amplitude.events, type) ------------------------------

AMPLITUDE_FIELDS: dict[str, tuple[str, str]] = {
    "$insert_id": ("insert_id", TEXT),
    "$insert_key": ("insert_key", TEXT),
    "$schema": ("schema", BIGINT),
    "adid": ("adid", TEXT),
    "amplitude_attribution_ids": ("amplitude_attribution_ids", TEXT_LIST),
    "amplitude_event_type": ("amplitude_event_type", TEXT),
    "amplitude_id": ("amplitude_id", BIGINT),
    "app": ("app", BIGINT),
    "city": ("city", TEXT),
    "client_event_time": ("client_event_time", TIMESTAMPTZ),
    "client_upload_time": ("client_upload_time", TIMESTAMPTZ),
    "country": ("country", TEXT),
    "data": ("data", JSON),
    "data_type": ("data_type", TEXT),
    "device_brand": ("device_brand", TEXT),
    "device_carrier": ("device_carrier", TEXT),
    "device_family": ("device_family", TEXT),
    "device_id": ("device_id", TEXT),
    "device_manufacturer": ("device_manufacturer", TEXT),
    "device_model": ("device_model", TEXT),
    "device_type": ("device_type", TEXT),
    "dma": ("dma", TEXT),
    "event_id": ("event_id", BIGINT),
    "event_properties": ("event_properties", JSON),
    "event_time": ("event_time", TIMESTAMPTZ),
    "event_type": ("event_type", TEXT),
    "global_user_properties": ("global_user_properties", JSON),
    "group_properties": ("group_properties", JSON),
    "groups": ("groups", JSON),
    "idfa": ("idfa", TEXT),
    "ip_address": ("ip_address", TEXT),
    "is_attribution_event": ("is_attribution_event", BOOLEAN),
    "language": ("language", TEXT),
    "library": ("library", TEXT),
    "location_lat": ("location_lat", DOUBLE),
    "location_lng": ("location_lng", DOUBLE),
    "os_name": ("os_name", TEXT),
    "os_version": ("os_version", TEXT),
    "partner_id": ("partner_id", TEXT),
    "paying": ("paying", BOOLEAN),
    "plan": ("plan", JSON),
    "platform": ("platform", TEXT),
    "processed_time": ("processed_time", TIMESTAMPTZ),
    "region": ("region", TEXT),
    "sample_rate": ("sample_rate", DOUBLE),
    "server_received_time": ("server_received_time", TIMESTAMPTZ),
    "server_upload_time": ("server_upload_time", TIMESTAMPTZ),
    "session_id": ("session_id", BIGINT),
    "source_id": ("source_id", TEXT),
    "start_version": ("start_version", TEXT),
    "user_creation_time": ("user_creation_time", TIMESTAMPTZ),
    "user_id": ("user_id", TEXT),
    "user_properties": ("user_properties", JSON),
    "uuid": ("uuid", TEXT),
    "version_name": ("version_name", TEXT),
}

# The columns the pipeline adds (README "The table"), after the export's.
AMPLITUDE_ADDED: dict[str, str] = {
    "_extras": JSON,  # top-level keys the schema does not know, as one object
    "_upload_hour": TIMESTAMPTZ,  # the partition
    "_source_member": TEXT,  # the archive member the row came from
}

AMPLITUDE_KEYS = frozenset(AMPLITUDE_FIELDS)
AMPLITUDE_TIMESTAMPS = frozenset(k for k, (_, kind) in AMPLITUDE_FIELDS.items()
                                 if kind == TIMESTAMPTZ)
AMPLITUDE_JSON_COLUMNS = (*(name for name, kind in AMPLITUDE_FIELDS.values() if kind == JSON),
                          "_extras")
AMPLITUDE_COLUMN_TYPES: dict[str, str] = {**dict(AMPLITUDE_FIELDS.values()), **AMPLITUDE_ADDED}

# ---- Mixpanel: promoted property -> (column in mixpanel.events, type) --------------------------

MIXPANEL_PROMOTED: dict[str, tuple[str, str]] = {
    "$device_id": ("device_id", TEXT),
    "$user_id": ("user_id", TEXT),
    "$browser": ("browser", TEXT),
    "$browser_version": ("browser_version", TEXT),
    "$os": ("os", TEXT),
    "$os_version": ("os_version", TEXT),
    "$device": ("device", TEXT),
    "$model": ("model", TEXT),
    "$manufacturer": ("manufacturer", TEXT),
    "$brand": ("brand", TEXT),
    "$carrier": ("carrier", TEXT),
    "$screen_height": ("screen_height", BIGINT),
    "$screen_width": ("screen_width", BIGINT),
    "$app_version_string": ("app_version_string", TEXT),
    "$app_build_number": ("app_build_number", TEXT),
    "$lib_version": ("lib_version", TEXT),
    "mp_lib": ("mp_lib", TEXT),
    "$city": ("city", TEXT),
    "$region": ("region", TEXT),
    "mp_country_code": ("country_code", TEXT),
    "$current_url": ("current_url", TEXT),
    "$referrer": ("referrer", TEXT),
    "$referring_domain": ("referring_domain", TEXT),
    "$initial_referrer": ("initial_referrer", TEXT),
    "$initial_referring_domain": ("initial_referring_domain", TEXT),
    "$search_engine": ("search_engine", TEXT),
    "utm_source": ("utm_source", TEXT),
    "utm_medium": ("utm_medium", TEXT),
    "utm_campaign": ("utm_campaign", TEXT),
}

# Every column of mixpanel.events, in the order docs/mixpanel.md lists them.
MIXPANEL_COLUMNS: dict[str, str] = {
    "event": TEXT,
    "distinct_id": TEXT,
    "insert_id": TEXT,
    "time": TIMESTAMPTZ,
    "time_raw": DOUBLE,
    "time_in_ms": BIGINT,
    "mp_processing_time": TIMESTAMPTZ,
    "device_id": TEXT,
    "user_id": TEXT,
    "browser": TEXT,
    "browser_version": TEXT,
    "os": TEXT,
    "os_version": TEXT,
    "device": TEXT,
    "model": TEXT,
    "manufacturer": TEXT,
    "brand": TEXT,
    "carrier": TEXT,
    "screen_height": BIGINT,
    "screen_width": BIGINT,
    "app_version_string": TEXT,
    "app_build_number": TEXT,
    "lib_version": TEXT,
    "mp_lib": TEXT,
    "city": TEXT,
    "region": TEXT,
    "country_code": TEXT,
    "current_url": TEXT,
    "referrer": TEXT,
    "referring_domain": TEXT,
    "initial_referrer": TEXT,
    "initial_referring_domain": TEXT,
    "search_engine": TEXT,
    "utm_source": TEXT,
    "utm_medium": TEXT,
    "utm_campaign": TEXT,
    "properties": JSON,
    "_extras": JSON,
    "_day": DATE,
    "_source_file": TEXT,
}
