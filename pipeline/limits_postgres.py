"""The client-side limits' shared state in PostgreSQL, for runs on several machines.

A SQLite file (``LIMITS_PATH``) holds the limits for every process of one machine; once steps run
on several (the Dask executor, Kubernetes), each would count alone and together exceed
Amplitude's limits. ``LIMITS_DSN`` moves the same tables into PostgreSQL, typically the Dagster
instance's server. A transaction-level advisory lock serializes the stores' transactions as
SQLite's ``BEGIN IMMEDIATE`` does, so two machines never both see one free slot.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.limits import LimitStore, LimitStoreError, SqliteLimitStore, _SqlStore

# REAL is 4 bytes in PostgreSQL: epoch seconds would round to minutes.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS limit_leases (lease_id TEXT NOT NULL, grp TEXT NOT NULL, "
    "cost DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL, "
    "PRIMARY KEY (lease_id, grp))",
    "CREATE TABLE IF NOT EXISTS limit_grants (grp TEXT NOT NULL, "
    "granted_at DOUBLE PRECISION, cost DOUBLE PRECISION)",
    "CREATE INDEX IF NOT EXISTS limit_grants_by_group ON limit_grants (grp, granted_at)",
    "CREATE TABLE IF NOT EXISTS limit_penalties (grp TEXT NOT NULL, "
    "until_at DOUBLE PRECISION NOT NULL)",
)
LOCK_KEY = 0x4C494D4954  # "LIMIT": one advisory lock for every limit transaction
_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redacted(dsn: str) -> str:
    return _PASSWORD.sub(r"\1***", dsn)


class _Adapter:
    """The slice of sqlite3's connection the SQL store uses, on a psycopg2 cursor."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, statement: str, parameters: Sequence[object] = ()) -> Any:
        self._cursor.execute(statement.replace("?", "%s"), tuple(parameters))
        return self._cursor

    def executemany(self, statement: str, rows: Sequence[Sequence[object]]) -> Any:
        if rows:
            self._cursor.executemany(statement.replace("?", "%s"), [tuple(r) for r in rows])
        return self._cursor


class PostgresLimitStore(_SqlStore):
    """State in PostgreSQL, shared by every machine that reaches it; ``dsn`` is libpq's
    keywords (``dbname=... host=... user=... password=...``). A connection per call, so it is
    safe across threads, forks and Dask workers; ``connect_timeout_seconds`` bounds each."""

    def __init__(self, dsn: str, *, connect_timeout_seconds: float = 10.0,
                 statement_timeout_seconds: float = 30.0) -> None:
        self._dsn = dsn.removeprefix("postgres:").strip()
        self._timeouts = {"connect_timeout": max(1, int(connect_timeout_seconds)),
                          "options": f"-c statement_timeout={int(statement_timeout_seconds * 1000)}"
                                     f" -c lock_timeout={int(statement_timeout_seconds * 1000)}"}
        with self._transaction() as db:
            for statement in SCHEMA:
                db.execute(statement)

    def __repr__(self) -> str:
        return f"PostgresLimitStore({redacted(self._dsn)!r})"

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        import psycopg2  # type: ignore[import-untyped]

        try:
            connection = psycopg2.connect(self._dsn, **self._timeouts)
        except psycopg2.Error as error:
            raise LimitStoreError(f"limit store (LIMITS_DSN {redacted(self._dsn)}): "
                                  f"{redacted(str(error)).strip()}") from None
        try:
            with connection, connection.cursor() as cursor:  # commits, or rolls back on error
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                yield _Adapter(cursor)
        except psycopg2.Error as error:
            raise LimitStoreError(f"limit store (LIMITS_DSN {redacted(self._dsn)}): "
                                  f"{redacted(str(error)).strip()}") from None
        finally:
            connection.close()


def limit_store(path: str | Path, dsn: str | None = None) -> LimitStore:
    """PostgreSQL when ``LIMITS_DSN`` is set, else the machine's SQLite file."""
    return PostgresLimitStore(dsn) if dsn else SqliteLimitStore(path)
