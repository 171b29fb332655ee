"""Schema versions and the ordered migrations between them, for any schema of the warehouse.

A warehouse file outlives the code that wrote it, so each project's schema records its version in
``<schema>._schema_versions`` and every open brings it up to the newest version this code knows.
The migrations themselves belong to the source (``pipeline/<source>/migrations.py``); this module
only runs them. Each migration runs in its own transaction together with the row that records it:
a failure rolls both back and leaves the previous version intact, to be retried by the next open.

There is one path: a fresh schema is "version 0" and is built by the same migrations that upgrade
an old one, so a fresh warehouse and an upgraded one cannot drift apart. A migration's statements
are frozen once released (a changed column goes into a new migration), and they name the schema
as ``{schema}``, so one list serves every project of a source.

A DuckLake warehouse (``pipeline/ducklake.py``) runs the same migrations with the same columns:
DuckLake has no PRIMARY KEY, UNIQUE or per-column compression, so on DuckLake each statement goes
through :func:`for_backend`, which drops exactly those clauses, and the DuckDB file's statements
stay as released. The keys were never relied on to find rows, only to reject duplicates, and the
writers delete a ledger row before inserting its successor.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from pipeline.ducklake import is_ducklake


class MigrationError(RuntimeError):
    """The warehouse's schema cannot be brought to the version this code expects."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[duckdb.DuckDBPyConnection, str], None]  # (connection, schema)


@dataclass(frozen=True)
class ProjectSchema:
    """One project's schema: its migrations, and the columns its tables must have afterwards
    (checked on every open, which catches a table edited by hand after its version was
    recorded)."""

    schema: str
    migrations: Sequence[Migration]
    columns: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def versions_table(self) -> str:
        return f"{self.schema}._schema_versions"


# What DuckLake refuses: "PRIMARY KEY/UNIQUE constraints are not supported in DuckLake",
# "Defining a compression type for a column is not supported in DuckLake".
_NOT_ON_DUCKLAKE = (re.compile(r",\s*PRIMARY KEY\s*\([^)]*\)"), re.compile(r" PRIMARY KEY\b"),
                    re.compile(r" UNIQUE\b"), re.compile(r" USING COMPRESSION \w+"))


def for_backend(con: duckdb.DuckDBPyConnection, statement: str) -> str:
    """``statement`` as released for a DuckDB file; on DuckLake, without what it refuses."""
    if not is_ducklake(con):
        return statement
    for clause in _NOT_ON_DUCKLAKE:
        statement = clause.sub("", statement)
    return statement


def statements(*sql: str) -> Callable[[duckdb.DuckDBPyConnection, str], None]:
    """A migration that runs ``sql``, each with ``{schema}`` replaced by the project's schema."""

    def apply(con: duckdb.DuckDBPyConnection, schema: str) -> None:
        for statement in sql:
            con.execute(for_backend(con, statement.replace("{schema}", schema)))

    return apply


def nothing(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    """A version that changes nothing here (it keeps a number another layout used)."""


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    row = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = "
                      "current_database() AND schema_name = ? AND table_name = ?",
                      [schema, table]).fetchone()
    return row is not None and row[0] > 0


def current_version(con: duckdb.DuckDBPyConnection, schema: str) -> int:
    """The schema's version: 0 for a fresh one (or one written before versions were kept)."""
    if not table_exists(con, schema, "_schema_versions"):
        return 0
    row = con.execute(f"SELECT coalesce(max(version), 0) FROM {schema}._schema_versions"
                      ).fetchone()
    return int(row[0]) if row is not None else 0


def check_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str,
                  expected: Sequence[str], expected_by: str) -> None:
    """Refuse a table whose columns differ from ``expected``, naming the gaps."""
    found = [row[0] for row in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ? ORDER BY column_index", [schema, table]
    ).fetchall()]
    if found != list(expected):
        missing = sorted(set(expected) - set(found))
        unknown = sorted(set(found) - set(expected))
        raise MigrationError(
            f"{schema}.{table} has a different layout than {expected_by} writes (missing "
            f"{missing}, unexpected {unknown}); rebuild it from the lake "
            "(python -m pipeline.rebuild)"
        )


def upgrade(con: duckdb.DuckDBPyConnection, project: ProjectSchema) -> list[int]:
    """Apply every migration newer than the schema's version, oldest first; return those
    applied, then check the tables' columns. ``con`` must not be inside a transaction."""
    steps = tuple(project.migrations)
    if [m.version for m in steps] != list(range(1, len(steps) + 1)):
        raise MigrationError(f"{project.schema}: migrations must be numbered "
                             f"1..{len(steps)} in order")
    known = steps[-1].version if steps else 0
    found = current_version(con, project.schema)
    if found > known:
        raise MigrationError(
            f"{project.schema} is at schema version {found}, newer than version {known}, the "
            "newest this code knows: it was written by a newer release of this project. Upgrade "
            "the code to that release (or newer); do not open it with this one"
        )
    applied = [m.version for m in steps[found:] if _apply(con, project, m)]
    for table, columns in project.columns.items():
        check_columns(con, project.schema, table, columns, "this version")
    return applied


def _apply(con: duckdb.DuckDBPyConnection, project: ProjectSchema, migration: Migration) -> bool:
    con.execute("BEGIN TRANSACTION")
    try:
        if current_version(con, project.schema) >= migration.version:
            con.execute("ROLLBACK")  # another connection of this process got there first
            return False
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {project.schema}")
        con.execute(for_backend(con, f"CREATE TABLE IF NOT EXISTS {project.versions_table} "
                                     "(version INTEGER PRIMARY KEY, description VARCHAR, "
                                     "applied_at TIMESTAMPTZ)"))
        migration.apply(con, project.schema)
        con.execute(f"INSERT INTO {project.versions_table} VALUES (?, ?, ?)",
                    [migration.version, migration.description.replace("{schema}", project.schema),
                     datetime.now(UTC)])
        con.execute("COMMIT")
        return True
    except BaseException as error:
        with contextlib.suppress(duckdb.Error):  # keep the original error, not the rollback's
            con.execute("ROLLBACK")
        if isinstance(error, MigrationError) or not isinstance(error, Exception):
            raise
        raise MigrationError(
            f"{project.schema}: migration to schema version {migration.version} "
            f"({migration.description}) failed and was rolled back, the schema is still at "
            f"version {migration.version - 1}: {error}"
        ) from error
