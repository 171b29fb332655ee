"""The ids as DuckDB sees them, and a Parquet file rewritten without their rows.

The ids go into temporary tables of the connection (never into SQL text), so one predicate per
family serves the warehouse's table and its Parquet files alike. A rewrite streams the file
through DuckDB into a staged file beside it with the writer options the file was written with,
keeps its key-value metadata (a landing version it names is mapped to the version that replaced
it), and renames the staged file over the old one: a reader sees the old file or the new one,
never a torn one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline import leftovers, sql
from pipeline.forget.ids import KINDS, NUMBER_KINDS, Ids


def _ids_table(kind: str) -> str:
    return f"forget_ids_{kind}"


def install(con: duckdb.DuckDBPyConnection, ids: Ids) -> None:
    """Put the ids into this connection's temporary tables, which :func:`holds` and
    :func:`spells` read."""
    for kind in KINDS:
        kind_type = "BIGINT" if kind in NUMBER_KINDS else "VARCHAR"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_ids_table(kind)} (id {kind_type})")
        con.execute(f"INSERT INTO {_ids_table(kind)} SELECT unnest(?::{kind_type}[])",
                    [sorted(ids.of(kind))])
    con.execute("CREATE OR REPLACE TEMP TABLE forget_texts (kind VARCHAR, text VARCHAR)")
    for kind in KINDS:
        con.execute("INSERT INTO forget_texts SELECT ?, unnest(?::VARCHAR[])",
                    [kind, ids.texts([kind])])


def holds(column: str, kind: str) -> str:
    """SQL true when ``column`` holds one of the ids of ``kind``; never NULL (a NULL id is
    nobody's, and ``NOT (NULL)`` would drop the row from a rewritten file)."""
    if kind not in KINDS:
        raise ValueError(f"no kind of id named {kind!r}")
    return f"coalesce({column} IN (SELECT id FROM {_ids_table(kind)}), false)"


def spells(column: str, kinds: Collection[str]) -> str:
    """SQL true when the text in ``column`` spells one of the ids of ``kinds`` anywhere (a
    line that could not be parsed)."""
    named = ", ".join(sql.literal(kind) for kind in sorted(kinds)) or "NULL"
    return (f"EXISTS (SELECT 1 FROM forget_texts t WHERE t.kind IN ({named}) "
            f"AND contains({column}, t.text))")


def _scan(files: Iterable[Path]) -> str:
    return (f"read_parquet({sql.literal_list(str(f) for f in files)}, hive_partitioning = false, "
            "union_by_name = true, filename = true)")


def matches_in(con: duckdb.DuckDBPyConnection, files: Iterable[Path],
               predicate: str) -> dict[Path, int]:
    """How many rows of the users each file holds (files without any are left out)."""
    existing = sorted(p for p in files if p.exists())
    if not existing:
        return {}
    rows = con.execute(f"SELECT filename, count(*) FROM {_scan(existing)} WHERE {predicate} "
                       "GROUP BY filename").fetchall()
    return {Path(name): int(count) for name, count in rows}


def _kv_metadata(con: duckdb.DuckDBPyConnection, path: Path,
                 versions: Mapping[str, str]) -> tuple[str, bool]:
    """The file's key-value metadata as a COPY option, landing versions mapped to their
    successors (a file built from a landing names the landing's version), and whether a
    version was mapped."""
    pairs, mapped = [], False
    for key, value in con.execute("SELECT key, value FROM parquet_kv_metadata(?)",
                                  [str(path)]).fetchall():
        try:
            name, text = bytes(key).decode(), bytes(value).decode()
        except UnicodeDecodeError:
            continue  # not something this project writes
        if name.startswith("ARROW:"):
            continue  # a schema description the writer makes itself
        mapped = mapped or text in versions
        text = versions.get(text, text)
        pairs.append(f'"{name.replace(chr(34), chr(34) * 2)}": {sql.literal(text)}')
    return (f", KV_METADATA {{{', '.join(pairs)}}}" if pairs else ""), mapped


@dataclass(frozen=True)
class Rewritten:
    rows_removed: int
    rewritten: bool  # False: the file was left as it was


def rewrite(con: duckdb.DuckDBPyConnection, path: Path, predicate: str, options: str,
            versions: Mapping[str, str] | None = None) -> Rewritten:
    """Rewrite ``path`` without the rows ``predicate`` picks, or to name the landing version
    that replaced the one it names (a load may take a file only if it was built from the
    current landing).

    Every other row keeps every field; the staged file is checked to hold exactly the rows
    that should remain before it replaces the old one.
    """
    if not path.exists():
        return Rewritten(0, False)
    scan = f"read_parquet({sql.literal(str(path))}, hive_partitioning = false)"
    total, matching = con.execute(  # type: ignore[misc]  # aggregates: one row
        f"SELECT count(*), count(*) FILTER (WHERE {predicate}) FROM {scan}").fetchone()
    kv, mapped = _kv_metadata(con, path, versions or {})
    if not matching and not mapped:
        return Rewritten(0, False)
    # A killed rewrite's (or normalize's) staged file: old enough that nobody still writes it.
    leftovers.sweep(path.parent.glob(f".{path.name}.*"), 3600)
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}{leftovers.owner_mark()}.tmp")
    try:
        written = con.execute(
            f"COPY (SELECT * FROM {scan} WHERE NOT {predicate}) TO {sql.literal(str(staged))} "
            f"({options}{kv})").fetchone()
        kept = int(written[0]) if written else 0
        if kept != total - matching:
            raise RuntimeError(f"{path}: the rewrite kept {kept} rows, expected "
                               f"{total - matching}; the file was left as it was")
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    return Rewritten(int(matching), True)
