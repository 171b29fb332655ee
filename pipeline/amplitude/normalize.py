"""Gzip members of one upload hour → one typed, zstd-compressed Parquet file.

DuckDB does the decompression, parsing and conversion in C++ and streams to the Parquet writer, so
an hour of any size passes through bounded memory. Three plans give the same rows, tried in turn:

- the exact plan casts every line to the struct of all known keys: the cast fails on a line with
  an unknown key, a missing key, a duplicated key or a value of the wrong type, so when it
  succeeds every line held exactly the known keys and ``_extras`` is NULL throughout. It is the
  cheapest of the three (no key count, no second look at the line);
- the strict plan, taken when the exact one fails, transforms each line with
  ``json_transform_strict``, which ignores unknown keys but fails on missing ones and on types;
- the tolerant plan, taken only when a line lacks a key, extracts each key and casts it, so missing
  keys become NULL while wrong types still fail.

In the last two, a line whose keys are not all known goes through ``json_merge_patch`` with every
known key set to null, which leaves exactly the unknown keys: they become ``_extras``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath

import duckdb

from pipeline import leftovers, lineage, sql
from pipeline.amplitude import rejects as quarantine
from pipeline.amplitude.schema import EVENT_COLUMNS, EXPORT_COLUMNS
from pipeline.engine import EngineLimits, work_engine
from pipeline.records import json_value

# Level 1 writes 0.56x the zipped export 4 % faster than DuckDB's default 3 (0.54x); 6 and up
# cost 15-60 % more time for files 4-7 % smaller (200,000 events, scripts/bench.py members).
ZSTD_LEVEL = 1
# The asset's code version: bump it whenever the rows an hour's file holds would change, so the UI
# marks every Parquet partition written before as stale.
PARSER_VERSION = "4"
ROW_GROUP_ROWS = 8_192  # the writer buffers a row group per thread: ~2 KB a row, so ~16 MB
_NULL_KNOWN_KEYS = json.dumps({c.key: None for c in EXPORT_COLUMNS})
_KNOWN_KEY_LIST = sql.literal_list(c.key for c in EXPORT_COLUMNS)
_STRUCT = json.dumps({c.key: c.duckdb_type for c in EXPORT_COLUMNS})
_STRUCT_TYPE = "STRUCT(" + ", ".join(f'"{c.key}" {c.duckdb_type}' for c in EXPORT_COLUMNS) + ")"
_NOT_AN_OBJECT = "error('a line is not a JSON object: ' || {line})"


class NormalizeError(ValueError):
    """An hour's lines do not fit the event schema; names the hour, the member and the cause."""


@dataclass(frozen=True)
class NormalizedHour:
    path: PurePath
    rows: int
    bytes: int
    seconds: float
    plan: str  # which of the plans below wrote it: "exact" unless some line had other keys
    rejected: int = 0  # lines quarantined (AMPLITUDE_REJECTS=quarantine), 0 otherwise


def _member_name(names: Mapping[str, str]) -> str:
    """The archive's own name of each member, from the landing file it was copied to."""
    file = "parse_filename(filename)"
    if not names:
        return file
    cases = " ".join(f"WHEN {sql.literal(f)} THEN {sql.literal(n)}" for f, n in names.items())
    return f"CASE {file} {cases} ELSE {file} END"


def _lineage(upload_hour: datetime, names: Mapping[str, str]) -> str:
    return (f"{sql.literal(upload_hour.isoformat())}::TIMESTAMPTZ AS _upload_hour, "
            f"{_member_name(names)} AS _source_member")


def _extras(has_unknown_keys: str) -> str:
    return (f"CASE WHEN {has_unknown_keys} "
            f"THEN json_merge_patch(json, {sql.literal(_NULL_KNOWN_KEYS)})::JSON END AS _extras")


def _source(members: Sequence[Path]) -> str:
    files = sql.literal_list(str(m) for m in members)
    return (f"read_json_objects({files}, format='newline_delimited', compression='gzip', "
            "filename=true)")


def exact_plan(members: Sequence[Path], upload_hour: datetime, names: Mapping[str, str]) -> str:
    typed = ", ".join(f's."{c.key}" AS "{c.name}"' for c in EXPORT_COLUMNS)
    return (
        f"SELECT {typed}, NULL::JSON AS _extras, _upload_hour, _source_member FROM ("
        f"SELECT CAST(json AS {_STRUCT_TYPE}) AS s, {_lineage(upload_hour, names)} "
        f"FROM {_source(members)}) "
        f"WHERE s IS NOT NULL OR {_NOT_AN_OBJECT.format(line=sql.literal('null'))}"
    )


def strict_plan(members: Sequence[Path], upload_hour: datetime,
                names: Mapping[str, str]) -> str:
    # The strict transform has seen every known key exactly once, so a longer key list means
    # unknown keys; counting is far cheaper than comparing the lists. It fails on any line that is
    # not an object except ``null``, which the WHERE refuses.
    typed = ", ".join(f's."{c.key}" AS "{c.name}"' for c in EXPORT_COLUMNS)
    return (
        f"SELECT {typed}, _extras, _upload_hour, _source_member FROM ("
        f"SELECT json_transform_strict(json, {sql.literal(_STRUCT)}) AS s, "
        f"{_extras(f'len(json_keys(json)) > {len(EXPORT_COLUMNS)}')}, "
        f"{_lineage(upload_hour, names)} FROM {_source(members)}) "
        f"WHERE s IS NOT NULL OR {_NOT_AN_OBJECT.format(line=sql.literal('null'))}"
    )


def tolerant_plan(members: Sequence[Path], upload_hour: datetime,
                  names: Mapping[str, str]) -> str:
    paths = "[" + ", ".join(sql.literal(f'$."{c.key}"') for c in EXPORT_COLUMNS) + "]"
    typed = ", ".join(json_value(f"v[{i}]", c.duckdb_type) + f' AS "{c.name}"'
                      for i, c in enumerate(EXPORT_COLUMNS, start=1))
    return (
        f"SELECT {typed}, _extras, _upload_hour, _source_member FROM ("
        f"SELECT json_extract(json, {paths}) AS v, "
        f"{_extras(f'NOT list_has_all({_KNOWN_KEY_LIST}, json_keys(json))')}, "
        f"{_lineage(upload_hour, names)}, json FROM {_source(members)}) "
        f"WHERE json_type(json) = 'OBJECT' OR "
        f"{_NOT_AN_OBJECT.format(line='left(json::VARCHAR, 80)')}"
    )


def empty_plan() -> str:
    typed = ", ".join(f'CAST(NULL AS {c.duckdb_type}) AS "{c.name}"' for c in EVENT_COLUMNS)
    return f"SELECT {typed} LIMIT 0"


def copy_statement(plan: str, out: Path, landing_version: str | None = None) -> str:
    return (f"COPY ({plan}) TO {sql.literal(str(out))} (FORMAT parquet, COMPRESSION zstd, "
            f"COMPRESSION_LEVEL {ZSTD_LEVEL}, ROW_GROUP_SIZE {ROW_GROUP_ROWS}"
            f"{lineage.kv_option(landing_version)})")


def _copy(con: duckdb.DuckDBPyConnection, plan: str, out: Path,
          landing_version: str | None = None) -> int:
    result = con.execute(copy_statement(plan, out, landing_version)).fetchone()
    return int(result[0]) if result else 0


def normalize_hour(
    members: Sequence[Path],
    upload_hour: datetime,
    out: Path,
    limits: EngineLimits = EngineLimits(),
    *,
    member_names: Mapping[str, str] | None = None,
    landing_version: str | None = None,
    rejects: Path | None = None,
) -> NormalizedHour:
    """Write ``out`` atomically: a temporary file in the same folder, then a rename.

    ``member_names`` maps a member's file name to its name in the archive, for ``_source_member``;
    ``landing_version`` goes into the file's metadata, so a load can tell a file built from the
    hour's current landing from one left by an earlier fetch.
    """
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    leftovers.sweep(out.parent.glob(f".{out.name}.*"))  # a killed run's staging and spill
    if rejects is not None:
        leftovers.sweep(rejects.parent.glob(f".{rejects.name}.*"))
    staging = out.with_name(f".{out.name}.{uuid.uuid4().hex}{leftovers.owner_mark()}.tmp")
    spill = staging.with_suffix(".spill")
    con = work_engine(limits, spill)
    names = dict(member_names or {})
    rejected = 0
    try:
        try:
            rows, plan = _normalize(con, members, upload_hour, staging, names, landing_version)
        except NormalizeError:
            if rejects is None:
                raise
            try:
                split = quarantine.split_members(members, spill / "quarantine", names,
                                                 upload_hour)
            except ValueError as error:  # not gzip, or too many bad lines to be strays
                raise NormalizeError(str(error)) from error
            if not split.rejects:
                raise  # every line is an object: a type or schema problem, not a stray line
            rows, plan = _normalize(con, split.members, upload_hour, staging, names,
                                    landing_version)
            rejects.parent.mkdir(parents=True, exist_ok=True)
            staged_rejects = rejects.with_name(
                f".{rejects.name}.{uuid.uuid4().hex}{leftovers.owner_mark()}.tmp")
            quarantine.write_rejects(split.rejects, upload_hour, staged_rejects,
                                     landing_version)
            os.replace(staged_rejects, rejects)
            rejected, plan = len(split.rejects), f"{plan}+quarantine"
        else:
            if rejects is not None:
                rejects.unlink(missing_ok=True)  # a clean fetch leaves nothing in quarantine
        os.replace(staging, out)
    finally:
        con.close()
        staging.unlink(missing_ok=True)
        shutil.rmtree(spill, ignore_errors=True)
    return NormalizedHour(out, rows, out.stat().st_size, time.monotonic() - started, plan,
                          rejected)


def _normalize(con: duckdb.DuckDBPyConnection, members: Sequence[Path],
               upload_hour: datetime, staging: Path, names: Mapping[str, str],
               landing_version: str | None) -> tuple[int, str]:
    """The rows written and the name of the plan that wrote them."""
    if not members:
        return _copy(con, empty_plan(), staging, landing_version), "empty"
    try:
        return _copy(con, exact_plan(members, upload_hour, names), staging,
                     landing_version), "exact"
    except duckdb.Error:
        pass  # some line is not exactly the known keys: the strict plan says which case it is
    try:
        return _copy(con, strict_plan(members, upload_hour, names), staging,
                     landing_version), "strict"
    except duckdb.Error as error:
        if "does not have key" not in str(error):
            raise _explain(con, members, upload_hour, staging, error) from error
    try:
        return _copy(con, tolerant_plan(members, upload_hour, names), staging,
                     landing_version), "tolerant"
    except duckdb.Error as error:
        raise _explain(con, members, upload_hour, staging, error) from error


PLANS = {"exact": exact_plan, "strict": strict_plan, "tolerant": tolerant_plan}


# What bad input raises: a value or line that does not fit, malformed JSON, a member that is not
# gzip. Anything else (out of memory, a full disk) is not the data's fault and is not blamed on it.
_INPUT_ERRORS = (duckdb.ConversionException, duckdb.InvalidInputException, duckdb.IOException)


def _explain(con: duckdb.DuckDBPyConnection, members: Sequence[Path], upload_hour: datetime,
             staging: Path, error: duckdb.Error) -> Exception:
    """Find the first member that fails on its own, so the message can name it."""
    cause = str(error).split("\n")[0]
    if not isinstance(error, _INPUT_ERRORS):
        return RuntimeError(f"upload hour {upload_hour:%Y-%m-%dT%H}: normalizing failed, "
                            f"not because of its data: {cause}")
    culprit = "one of its members"
    for member in members:
        try:
            _copy(con, tolerant_plan([member], upload_hour, {}), staging)
        except duckdb.Error:
            culprit = f"member {member.name}"
            break
    return NormalizeError(
        f"upload hour {upload_hour:%Y-%m-%dT%H}: {culprit} does not fit the event schema: {cause}"
    )
