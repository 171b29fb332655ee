"""One partition's rows swapped for its Parquet file's, with its ledger row, in one transaction.

Every source loads the same way: delete the partition, insert it from its file, record it. So a
re-run of any partition or range leaves exactly the same rows, and a failure leaves the previous
rows in place. What differs between sources is data, not code: which table and column, how a row
is told apart from another (to count what a re-load added, removed and changed), and the ledger's
columns (:class:`PartitionLoad`).

On DuckLake the file itself is registered rather than copied: still one transaction (delete the
partition, which drops its previous file from the new snapshot but keeps it for older ones,
register the new file, record it). A registered file must never be rewritten under its name:
older snapshots (``AT (VERSION => n)``) read it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

import duckdb

from pipeline import ducklake
from pipeline.warehouse import WarehouseError


class PartitionError(WarehouseError):
    """A file that does not hold exactly the partition's rows; nothing was changed."""


class RowDropRefused(PartitionError):
    """A load that would replace a partition's rows with far fewer; nothing was changed."""

    def __init__(self, message: str, *, loaded: int, fetched: int) -> None:
        super().__init__(message)
        self.loaded, self.fetched = loaded, fetched

    def __reduce__(self) -> tuple[object, ...]:  # crosses the worker's pipe (pipeline/worker.py)
        return (_row_drop_refused, (str(self), self.loaded, self.fetched))


def _row_drop_refused(message: str, loaded: int, fetched: int) -> RowDropRefused:
    return RowDropRefused(message, loaded=loaded, fetched=fetched)


@dataclass(frozen=True, kw_only=True)
class PartitionLoad:
    """One partition's swap: where its rows go, how rows are told apart, and its ledger row.

    ``ledger_row`` holds the source's own columns; the swap adds ``rows``, ``load_seconds``,
    ``loaded_at`` and what the load added, removed and changed (by ``key``, comparing the
    ``compared`` columns), plus whatever ``also`` returns. ``also`` runs inside the transaction,
    after the rows are in (the quarantined lines of an hour, a day's duplicate count).
    """

    table: str
    column: str
    value: object
    parquet: str | Path
    what: str  # how messages name the partition: "upload hour 2026-03-01T07"
    key: Sequence[str]
    compared: Sequence[str]
    ledger: str
    ledger_key: str
    ledger_row: Mapping[str, object] = field(default_factory=dict)
    max_drop_share: float | None = None
    also: Callable[[duckdb.DuckDBPyConnection], Mapping[str, object]] | None = None
    register: bool = True  # on DuckLake, register the file (never rewritten under its name)


@dataclass(frozen=True, kw_only=True)
class LedgerRow:
    """The columns every source's ledger row shares: which fetch the rows came from, and what
    the load did (filled in by :meth:`loaded`; a first load adds every row)."""

    landing_version: str | None = None  # the landing's version folder the rows were read from
    fetched_at: datetime | None = None  # when that fetch landed
    rows: int = 0
    load_seconds: float = 0.0
    loaded_at: datetime | None = None
    rows_added: int = 0
    rows_removed: int = 0
    rows_changed: int = 0

    filled: ClassVar[tuple[str, ...]] = ("rows", "load_seconds", "loaded_at", "rows_added",
                                         "rows_removed", "rows_changed")

    def own_columns(self) -> dict[str, object]:
        """The columns the source gives; the swap adds the ones it fills."""
        return {k: v for k, v in asdict(self).items() if k not in self.filled}

    def loaded(self, done: LoadedPartition, **extra: Any) -> Self:
        """This row as the load wrote it."""
        return replace(self, rows=done.rows, load_seconds=done.load_seconds,
                       loaded_at=done.loaded_at, rows_added=done.rows_added,
                       rows_removed=done.rows_removed, rows_changed=done.rows_changed, **extra)


@dataclass(frozen=True)
class LoadedPartition:
    rows: int
    load_seconds: float
    loaded_at: datetime
    rows_added: int
    rows_removed: int
    rows_changed: int
    ledger_row: Mapping[str, object]  # as written


def load_partition(con: duckdb.DuckDBPyConnection, load: PartitionLoad) -> LoadedPartition:
    """Swap ``load``'s partition in with its ledger row; return what was written.

    With ``max_drop_share``, a file holding that share fewer rows than are loaded (an empty one
    too) is refused (:class:`RowDropRefused`) and the loaded rows stay: a short re-fetch never
    silently replaces them.
    """
    started = time.monotonic()
    changes = (0, 0, 0)
    written: list[LoadedPartition] = []

    def guard(loaded: int, fetched: int) -> None:
        nonlocal changes
        share = load.max_drop_share
        if share is not None and loaded and fetched < loaded * (1 - share):
            raise RowDropRefused(
                f"{load.what}: the new fetch holds {fetched} rows where {loaded} are loaded (a "
                f"drop past {share:.0%}); the loaded rows are kept. If the source really holds "
                "fewer now, re-run with run config accept_row_drops: true",
                loaded=loaded, fetched=fetched)
        # A first load adds every row; only a re-load has anything to compare.
        changes = _changes(con, load) if loaded else (fetched, 0, 0)

    def ledger(rows: int) -> None:
        extra = load.also(con) if load.also is not None else {}
        seconds, at = time.monotonic() - started, datetime.now(UTC)
        row = {**load.ledger_row, "rows": rows, "load_seconds": seconds, "loaded_at": at,
               "rows_added": changes[0], "rows_removed": changes[1],
               "rows_changed": changes[2], **extra}
        # DuckLake has no keys, so no INSERT OR REPLACE: the row is deleted, then inserted.
        con.execute(f"DELETE FROM {load.ledger} WHERE {load.ledger_key} = ?",
                    [row[load.ledger_key]])
        con.execute(f"INSERT INTO {load.ledger} ({', '.join(row)}) "
                    f"VALUES ({', '.join('?' * len(row))})", list(row.values()))
        written.append(LoadedPartition(rows, seconds, at, *changes, ledger_row=row))

    replace_partition(con, load.table, load.column, load.value, load.parquet, what=load.what,
                      record=ledger, guard=guard, register=load.register)
    return written[0]


def replace_partition(con: duckdb.DuckDBPyConnection, table: str, column: str, value: object,
                      parquet: str | Path, *, what: str,
                      record: Callable[[int], None] | None = None,
                      guard: Callable[[int, int], None] | None = None,
                      register: bool = True) -> int:
    """Swap the rows of ``table`` whose ``column`` is ``value`` for those of ``parquet`` (a
    local path or an ``s3://`` URI), in one transaction; ``record(rows)`` writes the
    partition's ledger row inside it, and ``guard(rows_now, rows_in_file)`` may refuse the
    swap before anything is deleted.

    Every row of the file must belong to the partition, so a file written for another one can
    never slip in. On DuckLake the file itself is registered; ``register=False`` copies its rows
    instead, for a file whose name is reused.
    """
    source = str(parquet)
    registering = register and ducklake.is_ducklake(con)
    con.execute("BEGIN TRANSACTION")
    try:
        in_file, outside = _file_counts(con, source, column, value, scan=registering)
        if outside:
            raise PartitionError(f"{what}: {parquet} holds {in_file} rows, only "
                                 f"{in_file - outside} of them for this partition of {table}")
        loaded = _one(con.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?",
                                  [value])) if guard is not None or registering else 0
        if guard is not None:
            guard(loaded, in_file)
        if registering:
            inserted = _register(con, table, column, value, source, in_file=in_file,
                                 loaded=loaded, what=what)
        else:
            con.execute(f"DELETE FROM {table} WHERE {column} = ?", [value])
            inserted = _one(con.execute(insert_partition(table, column), [source, value]))
        if inserted != in_file:
            raise PartitionError(f"{what}: {parquet} holds {in_file} rows, only {inserted} "
                                 f"of them for this partition of {table}")
        if record is not None:
            record(inserted)
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # keep the original error, not the rollback's
            con.execute("ROLLBACK")
        raise
    return inserted


def _register(con: duckdb.DuckDBPyConnection, table: str, column: str, value: object,
              source: str, *, in_file: int, loaded: int, what: str) -> int:
    """Swap the partition's rows for the file's by registering it (inside the caller's
    transaction).

    DuckLake schedules a file for deletion when the snapshots that dropped it expire, even if
    the same path was registered again since: so a path is registered once. A re-run with the
    very file already holding the partition changes nothing; any other return of a registered
    path is refused.
    """
    now, ever = ducklake.registrations(con, table, source)
    if now and loaded == in_file:
        return in_file
    if ever:
        raise PartitionError(
            f"{what}: {source} was registered in {table} before, and DuckLake deletes a file "
            "once the snapshots that superseded it expire, so a file is registered only once: "
            "write this version of the partition under a new name")
    con.execute(f"DELETE FROM {table} WHERE {column} = ?", [value])
    if in_file:  # an empty file adds no rows: nothing to register
        ducklake.register_file(con, table, source)
    return in_file


def _changes(con: duckdb.DuckDBPyConnection, load: PartitionLoad) -> tuple[int, int, int]:
    """Rows (by key) the new file adds, removes and changes against the partition as loaded.

    Lineage columns are left out of ``compared`` by the source: a re-export may name its files
    differently. Rows sharing a key are compared as a whole: their count and the sum of their
    hashes.
    """
    keys = ", ".join(f'"{k}"' for k in load.key)
    compared = ", ".join(f'"{c}"' for c in load.compared)
    per_key = f"SELECT {keys}, count(*) AS n, sum(hash({compared})::HUGEINT) AS h FROM"
    matched = " AND ".join(f'old."{k}" IS NOT DISTINCT FROM new."{k}"' for k in load.key)
    row = con.execute(
        f"WITH old AS ({per_key} {load.table} WHERE {load.column} = ? GROUP BY ALL), "
        f"new AS ({per_key} read_parquet(?, hive_partitioning = false) GROUP BY ALL) "
        "SELECT count(*) FILTER (WHERE old.n IS NULL), count(*) FILTER (WHERE new.n IS NULL), "
        "count(*) FILTER (WHERE old.n <> new.n OR old.h <> new.h) "
        f"FROM old FULL JOIN new ON {matched}", [load.value, str(load.parquet)]).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def insert_partition(table: str, column: str) -> str:
    """The load's statement; parameters: the Parquet file, the partition's value."""
    return (f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?, hive_partitioning = "
            f"false) WHERE {column} = ?")


def _file_counts(con: duckdb.DuckDBPyConnection, parquet: str, column: str, value: object, *,
                 scan: bool) -> tuple[int, int]:
    """The file's rows, and (with ``scan``) how many are not of the partition. A file registered
    as it is cannot be filtered while loading, so it is checked first; a copy filters itself,
    and counting from the footer alone keeps it fast."""
    if not scan:
        return _one(con.execute("SELECT count(*) FROM read_parquet(?, hive_partitioning = false)",
                                [parquet])), 0
    row = con.execute(f"SELECT count(*), count(*) FILTER (WHERE {column} IS DISTINCT FROM ?) "
                      "FROM read_parquet(?, hive_partitioning = false)",
                      [value, parquet]).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _one(result: duckdb.DuckDBPyConnection) -> int:
    row = result.fetchone()
    assert row is not None  # a count and an INSERT's row count always return one row
    return int(row[0])
