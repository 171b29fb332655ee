"""Which fetch a Parquet file was built from: the landing version, kept in the file's own
key-value metadata, so it travels with the file and needs no ledger to be read."""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb

from pipeline import engine, sql

LANDING_VERSION_KEY = "landing_version"


def kv_option(landing_version: str | None) -> str:
    """The COPY option that records ``landing_version`` (nothing without one)."""
    if not landing_version:
        return ""
    return f", KV_METADATA {{{LANDING_VERSION_KEY}: {sql.literal(landing_version)}}}"


def landing_version_of(parquet: str | Path,
                       con: duckdb.DuckDBPyConnection | None = None) -> str | None:
    """The landing version ``parquet`` was built from (None: written before files recorded it).

    ``con`` reads files on object storage (``Lake.connect``); a local file needs none.
    """
    with contextlib.ExitStack() as stack:
        if con is None:
            con = stack.enter_context(duckdb.connect(config=engine.offline_config()))
        row = con.execute("SELECT value::VARCHAR FROM parquet_kv_metadata(?) WHERE key = ?",
                          [str(parquet), LANDING_VERSION_KEY]).fetchone()
    return str(row[0]) if row else None
