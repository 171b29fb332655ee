"""A JSON answer's list of records → one typed Parquet file, every field kept.

Snapshot endpoints (cohorts, taxonomy, the events list) answer one JSON document holding a list
of objects whose fields drift: APIs add fields the docs never showed. Each declared field becomes a
typed column; whatever else a record holds goes to ``_extras`` as one JSON object, so nothing is
dropped and a new field is visible rather than lost. DuckDB parses and writes, so a large answer
never becomes Python objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline import sql

MAX_DOCUMENT_BYTES = 1 << 30  # one answer is one JSON value; DuckDB's default cap is 16 MB


class RecordsError(ValueError):
    """The answer is not the JSON the endpoint promises; names the endpoint and the cause."""


@dataclass(frozen=True)
class Field:
    key: str  # as the API spells it
    name: str  # the column
    duckdb_type: str
    epoch_seconds: bool = False  # an integer of seconds since 1970, stored as TIMESTAMPTZ


def json_value(value: str, duckdb_type: str) -> str:
    """SQL turning the JSON ``value`` into ``duckdb_type``; a JSON ``null`` is SQL NULL."""
    if duckdb_type == "VARCHAR":
        return f"json_extract_string({value}, '$')"
    if duckdb_type == "JSON":
        return f"CASE WHEN json_type({value}) <> 'NULL' THEN {value} END"
    return f"CAST({value} AS {duckdb_type})"


def _typed(field: Field, value: str) -> str:
    if field.epoch_seconds:
        return f"to_timestamp(CAST({value} AS DOUBLE))"
    return json_value(value, field.duckdb_type)


def _documents(sources: Sequence[Path]) -> str:
    return (f"read_json_objects({sql.literal_list(str(s) for s in sources)}, format = 'auto', "
            f"maximum_object_size = {MAX_DOCUMENT_BYTES}, filename = true)")


def records_plan(sources: Sequence[Path], list_path: str, fields: Sequence[Field],
                 constants: Mapping[str, str]) -> str:
    """SELECT over the records at ``list_path`` (e.g. ``$.data``) of the JSON files ``sources``,
    one answer each.

    ``constants`` maps a column name to a SQL expression added to every row (the snapshot date).
    """
    paths = "[" + ", ".join(sql.literal(f'$."{f.key}"') for f in fields) + "]"
    known = sql.literal_list(f.key for f in fields)
    nulls = sql.literal(json.dumps({f.key: None for f in fields}))
    typed = ", ".join(f'{_typed(f, f"v[{i}]")} AS "{f.name}"'
                      for i, f in enumerate(fields, start=1))
    extra = ", ".join(f'{expression} AS "{name}"' for name, expression in constants.items())
    return (
        f"SELECT {typed}, CASE WHEN NOT list_has_all({known}, json_keys(item)) "
        f"THEN json_merge_patch(item, {nulls})::JSON END AS _extras"
        + (f", {extra}" if extra else "")
        + " FROM (SELECT item, json_extract(item, " + paths + ") AS v FROM ("
        f"SELECT unnest(CAST(json_extract(json, {sql.literal(list_path)}) AS JSON[])) AS item "
        f"FROM {_documents(sources)}))"
        f" WHERE json_type(item) = 'OBJECT' OR error('a record is not a JSON object: ' || "
        "left(item::VARCHAR, 80))"
    )


def write_records(con: duckdb.DuckDBPyConnection, sources: Sequence[Path], list_path: str,
                  fields: Sequence[Field], out: Path, *, what: str,
                  constants: Mapping[str, str] | None = None) -> int:
    """Write the records to ``out`` (zstd Parquet); the row count. ``what`` names the answers
    in errors (endpoint and partition)."""
    _require_lists(con, sources, list_path, what)
    plan = records_plan(sources, list_path, fields, constants or {})
    try:
        row = con.execute(f"COPY ({plan}) TO {sql.literal(str(out))} "
                          "(FORMAT parquet, COMPRESSION zstd)").fetchone()
    except duckdb.Error as error:
        out.unlink(missing_ok=True)  # COPY leaves what it wrote before the bad record
        raise RecordsError(f"{what}: the answer does not fit its schema: "
                           f"{str(error).splitlines()[0]}") from error
    return int(row[0]) if row else 0


def _require_lists(con: duckdb.DuckDBPyConnection, sources: Sequence[Path], list_path: str,
                   what: str) -> None:
    try:
        found = dict(con.execute(
            f"SELECT parse_filename(filename), json_type(json_extract(json, "
            f"{sql.literal(list_path)})) FROM {_documents(sources)}").fetchall())
    except duckdb.Error as error:
        raise RecordsError(f"{what}: an answer is not JSON: "
                           f"{str(error).splitlines()[0]}") from error
    for source in sources:
        kind = found.get(source.name, "nothing")
        if kind != "ARRAY":
            raise RecordsError(f"{what}: expected a JSON document with a list at {list_path} in "
                               f"{source.name}, found {kind or 'no value'}")
