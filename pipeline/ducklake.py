"""A DuckLake catalog as the warehouse (``WAREHOUSE_CATALOG``): naming it, attaching it, and
registering the lake's Parquet files in it.

Three catalogs are accepted, as DuckLake names them: ``postgres:<libpq keywords>``,
``sqlite:PATH`` and a path ending ``.ducklake`` (a DuckDB file). PostgreSQL and SQLite admit
several processes at once, so analysts can read while loads run; a ``.ducklake`` file is a DuckDB
file and admits one process, exactly like the default warehouse file.

A catalog string may hold a password, and DuckDB repeats the whole string in its ATTACH errors,
so it is kept out of ``repr`` and every error raised here is redacted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb

from pipeline import engine, sql

ALIAS = "warehouse"
SUFFIX = ".ducklake"
Kind = Literal["postgres", "sqlite", "duckdb"]
_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)


class CatalogError(RuntimeError):
    pass


@dataclass(frozen=True)
class Catalog:
    kind: Kind
    target: str = field(repr=False)  # what follows "ducklake:" in the ATTACH, paths absolute

    @classmethod
    def parse(cls, text: str) -> Catalog:
        text = text.strip().removeprefix("ducklake:")
        if text.startswith("postgres:"):
            return cls("postgres", text)
        if text.startswith("sqlite:"):
            return cls("sqlite", "sqlite:" + str(Path(text.removeprefix("sqlite:")).resolve()))
        if text.endswith(SUFFIX) and ":" not in text.split("/", 1)[0]:
            return cls("duckdb", str(Path(text).resolve()))
        raise CatalogError(
            f"WAREHOUSE_CATALOG={redact(text)!r} is not a DuckLake catalog: give "
            "'postgres:dbname=... host=... user=... password=...', 'sqlite:PATH' or a path "
            f"ending {SUFFIX}")

    @property
    def extensions(self) -> tuple[str, ...]:
        return ("ducklake",) if self.kind == "duckdb" else ("ducklake", self.kind)

    @property
    def file(self) -> Path | None:
        """The catalog's DuckDB file, which one process at a time may hold (None: no such lock)."""
        return Path(self.target) if self.kind == "duckdb" else None

    @property
    def shown(self) -> str:
        """The catalog as logs and errors may name it."""
        return redact(self.target, self)

    def password(self) -> str | None:
        found = _PASSWORD.search(self.target)
        return found.group(2).strip("'") if found else None

    def without_password(self) -> tuple[str, str | None]:
        """The catalog without its password, and the password, for a child process that takes
        it from libpq's PGPASSWORD instead of from a string it might print (dbt)."""
        return _PASSWORD.sub("", self.target).strip(), self.password()

    def __repr__(self) -> str:
        return f"Catalog({self.shown!r})"


def redact(text: str, catalog: Catalog | None = None) -> str:
    """``text`` with any catalog password replaced by ``***``."""
    secret = catalog.password() if catalog is not None else None
    text = _URI_PASSWORD.sub(r"\1***@", _PASSWORD.sub(r"\1***", text))
    if secret and len(secret) >= 3:
        text = text.replace(secret, "***")
    return text


def data_path(path: str | Path) -> str:
    """DuckLake stores the data path as given: absolute, ending in ``/``."""
    text = str(path)
    if "://" not in text:
        text = str(Path(text).resolve())
    return text if text.endswith("/") else text + "/"


def attach(con: duckdb.DuckDBPyConnection, catalog: Catalog, data: str | Path | None) -> None:
    """Attach the catalog as ``warehouse`` (idempotent within a DuckDB instance) and use it."""
    for name in catalog.extensions:
        engine.load_extension(con, name)
    if catalog.kind != "postgres":
        Path(catalog.target.removeprefix("sqlite:")).parent.mkdir(parents=True, exist_ok=True)
    options = f" (DATA_PATH {sql.literal(data_path(data))})" if data is not None else ""
    try:
        con.execute(f"ATTACH IF NOT EXISTS {sql.literal('ducklake:' + catalog.target)} AS "
                    f"{ALIAS}{options}")
        con.execute(f"USE {ALIAS}")
        return
    except duckdb.Error as error:
        failed: duckdb.Error = type(error)(redact(str(error), catalog))
    raise failed  # outside the handler: DuckDB's own error, password and all, is not its context


def is_ducklake(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute("SELECT type FROM duckdb_databases() WHERE database_name = "
                      "current_database()").fetchone()
    return row is not None and row[0] == "ducklake"


def register_file(con: duckdb.DuckDBPyConnection, table: str, parquet: str | Path) -> None:
    """Add ``parquet`` to ``table`` (``schema.name``) without copying it.

    The file must hold exactly the table's columns (no ``allow_missing``, no
    ``ignore_extra_columns``), and its hive folders (``upload_hour=07``) are not columns.
    DuckLake stores the path as given, hence absolute.
    """
    schema, name = table.split(".", 1)
    path = str(parquet) if "://" in str(parquet) else str(Path(parquet).resolve())
    con.execute(f"CALL ducklake_add_data_files({sql.literal(ALIAS)}, {sql.literal(name)}, "
                f"{sql.literal(path)}, schema => {sql.literal(schema)}, "
                "hive_partitioning => false)")


def registrations(con: duckdb.DuckDBPyConnection, table: str,
                  parquet: str | Path) -> tuple[bool, bool]:
    """Whether ``parquet`` is one of ``table``'s files now, and whether it ever was."""
    schema, name = table.split(".", 1)
    path = str(parquet) if "://" in str(parquet) else str(Path(parquet).resolve())
    meta = f"__ducklake_metadata_{ALIAS}"
    row = con.execute(
        "SELECT count(*) FILTER (WHERE f.end_snapshot IS NULL), count(*) "
        f"FROM {meta}.ducklake_data_file f JOIN {meta}.ducklake_table t USING (table_id) "
        f"JOIN {meta}.ducklake_schema s USING (schema_id) "
        "WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL AND s.schema_name = $1 "
        "AND t.table_name = $2 AND (f.path = $3 OR (f.path_is_relative AND "
        "suffix($3, '/' || f.path)))", [schema, name, path]).fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1])


def current_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute(f"FROM ducklake_current_snapshot({sql.literal(ALIAS)})").fetchone()
    assert row is not None
    return int(row[0])
