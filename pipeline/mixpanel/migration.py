"""The DDL of ``mixpanel.events`` and its ledger ``mixpanel._loads``, as released.

``pipeline/migrations.py`` runs it as a migration of its own (through ``for_backend``, which drops
the key and the compression clause on DuckLake). It lives apart from ``warehouse.py`` so that the
migrations import it without importing the warehouse that imports them. Frozen: a changed column
goes into a new migration, never into these statements.
"""

from __future__ import annotations

MIGRATION: tuple[str, ...] = (
    "CREATE SCHEMA IF NOT EXISTS mixpanel",
    "CREATE TABLE mixpanel.events (event VARCHAR, distinct_id VARCHAR, insert_id VARCHAR, "
    "time TIMESTAMPTZ, time_raw DOUBLE, time_in_ms BIGINT, mp_processing_time TIMESTAMPTZ, "
    "device_id VARCHAR, user_id VARCHAR, browser VARCHAR, browser_version VARCHAR, os VARCHAR, "
    "os_version VARCHAR, device VARCHAR, model VARCHAR, manufacturer VARCHAR, brand VARCHAR, "
    "carrier VARCHAR, screen_height BIGINT, screen_width BIGINT, app_version_string VARCHAR, "
    "app_build_number VARCHAR, lib_version VARCHAR, mp_lib VARCHAR, city VARCHAR, "
    "region VARCHAR, country_code VARCHAR, current_url VARCHAR, referrer VARCHAR, "
    "referring_domain VARCHAR, initial_referrer VARCHAR, initial_referring_domain VARCHAR, "
    "search_engine VARCHAR, utm_source VARCHAR, utm_medium VARCHAR, utm_campaign VARCHAR, "
    "properties JSON USING COMPRESSION zstd, _extras JSON, _day DATE NOT NULL, "
    "_source_file VARCHAR)",
    "CREATE TABLE mixpanel._loads (day DATE PRIMARY KEY, rows BIGINT, request_window VARCHAR, "
    "window_requests INTEGER, bytes_downloaded BIGINT, fetch_seconds DOUBLE, "
    "landing_version VARCHAR, fetched_at TIMESTAMPTZ, load_seconds DOUBLE, "
    "loaded_at TIMESTAMPTZ, rows_added BIGINT, rows_removed BIGINT, rows_changed BIGINT, "
    "duplicate_rows BIGINT)",
)
MIGRATION_DESCRIPTION = "mixpanel.events and its ledger mixpanel._loads"
