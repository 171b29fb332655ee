"""The warehouse copied into a fresh file, so that deleted rows leave no bytes behind.

DuckDB deletes a row by marking it, and a checkpoint frees the blocks of row groups it rewrites
without overwriting them: the bytes of forgotten users' rows stay in the file until DuckDB happens
to reuse those blocks (tested: a deleted value is still in the file after DELETE and CHECKPOINT).
``COPY FROM DATABASE`` writes only what is live, with the same tables, views, constraints,
compression and pinned storage version, so swapping the copy in for the file leaves none.

The copy is made while holding the warehouse's lock; the swap needs the file unused, which is
checked with the lock DuckDB itself takes (a load or an analyst's session that opens the file
meanwhile makes the swap give up, leaving the file as it was, and says so).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline import sql
from pipeline.source import Project
from pipeline.warehouse import STORAGE_VERSION, TABLE_ROW_GROUP_ROWS, Warehouse

COPY_NAME = "forget_compacted"


class CompactError(RuntimeError):
    pass


@dataclass(frozen=True)
class Compacted:
    bytes_before: int
    bytes_after: int


def _companions(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + ".wal")]


def _row_counts(con: duckdb.DuckDBPyConnection, database: str) -> dict[str, int]:
    tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE "
                         "database_name = ? ORDER BY ALL", [database]).fetchall()
    counts = {}
    for schema, table in tables:
        row = con.execute(f'SELECT count(*) FROM "{database}"."{schema}"."{table}"').fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def compact(path: Path, *, projects: Sequence[Project] = (),
            lock_timeout_seconds: float = 300.0) -> Compacted:
    """Replace the warehouse file with a copy of what it holds; the old file is deleted.

    ``projects`` are the deployment's (``pipeline.source.projects_in_lake``): the warehouse is
    opened as a writer, which keeps the all-projects views of exactly those."""
    path = Path(path)
    fresh = path.with_name(f".{path.name}.compacting")
    for leftover in _companions(fresh):
        leftover.unlink(missing_ok=True)
    try:
        with Warehouse(path, projects=projects, views=False,
                       lock_timeout_seconds=lock_timeout_seconds).connect() as con:
            con.execute("CHECKPOINT")
            con.execute(f"ATTACH {sql.literal(str(fresh))} AS {COPY_NAME} (STORAGE_VERSION "
                        f"{sql.literal(STORAGE_VERSION)}, ROW_GROUP_SIZE {TABLE_ROW_GROUP_ROWS})")
            con.execute(f"COPY FROM DATABASE warehouse TO {COPY_NAME}")
            con.execute(f"CHECKPOINT {COPY_NAME}")
            if _row_counts(con, COPY_NAME) != _row_counts(con, "warehouse"):
                raise CompactError(f"the copy of {path} does not hold what it holds")
            con.execute(f"DETACH {COPY_NAME}")
        closed = path.stat()
        before = closed.st_size
        with open(path, "rb+") as old:
            try:  # the lock DuckDB takes: held by any process with the file open
                fcntl.lockf(old, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise CompactError(
                    f"{path} was opened by another process before the compacted copy could "
                    "replace it; the file was left as it was (its deleted rows are gone from "
                    "its tables, their bytes not yet from the file): run the compaction again "
                    "when no load or session has it open") from None
            now = path.stat()
            if (now.st_ino, now.st_size, now.st_mtime_ns) != (
                    closed.st_ino, closed.st_size, closed.st_mtime_ns) or \
                    _companions(path)[1].exists():
                raise CompactError(f"{path} was written while it was being compacted; the "
                                   "file was left as it was: run the compaction again")
            os.replace(fresh, path)  # the old file goes when ``old`` is closed
    finally:
        for leftover in _companions(fresh):
            leftover.unlink(missing_ok=True)
    return Compacted(before, path.stat().st_size)
