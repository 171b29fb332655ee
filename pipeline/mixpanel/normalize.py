"""One landed export window (JSONL, gzip) → one typed Parquet file per day, in one DuckDB pass.

DuckDB decompresses, parses, converts and writes in C++, so a window of any size passes through
bounded memory and is parsed once (into one file, split by day when it spans several). ``time``
is converted to UTC inside the same statement: ``days.zone_periods`` turns the zone's offsets
over the window into constants, and each period contributes one candidate instant per line
(``raw - offset`` if it falls in that period). Of the candidates, the rule of
``pipeline.mixpanel.days`` picks one: the later if it is not after ``mp_processing_time_ms``,
else the earlier; a reading in a spring-forward gap takes the offset before the gap. That is a
handful of CASE expressions on integers per line: no join, no Python per event, no ICU (the
same tz database as ``days``, so SQL and Python cannot disagree).

A line that does not fit (no ``event`` string, no ``properties`` object, no numeric ``time``)
fails the window, and the message names the day, the file and the line. Promoted columns are
conveniences: a value of another type becomes NULL there (TRY_CAST) and stays in ``properties``,
which is kept whole, as are unknown top-level keys (``_extras``).
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import duckdb

from pipeline import leftovers, lineage, sql
from pipeline.engine import EngineLimits, work_engine
from pipeline.mixpanel.days import EPOCH, MS_THRESHOLD, Period, zone_periods
from pipeline.mixpanel.schema import PROMOTED

ZSTD_LEVEL = 1
ROW_GROUP_ROWS = 16_384
PARSER_VERSION = "1"  # bump when the rows a day's file holds would change


class NormalizeError(ValueError):
    """A window's lines do not fit; names the day, the file and the line."""


@dataclass(frozen=True)
class NormalizedDay:
    day: date
    path: Path
    rows: int
    bytes: int


def _us(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1)


def utc_micros_sql(raw_us: str, processing_us: str, periods: Sequence[Period]) -> str:
    """SQL for a local reading's UTC instant in microseconds (rules in ``days``)."""
    candidates, gaps = [], []
    for period in periods:
        shift = period.offset_seconds * 1_000_000
        candidate = f"({raw_us} - {shift})"
        candidates.append(f"CASE WHEN {candidate} >= {_us(period.start)} AND {candidate} < "
                          f"{_us(period.end)} THEN {candidate} END")
    for before, after in itertools.pairwise(periods):
        if after.offset_seconds > before.offset_seconds:  # clocks go forward: a gap
            low = _us(before.end) + before.offset_seconds * 1_000_000
            high = _us(before.end) + after.offset_seconds * 1_000_000
            gaps.append(f"CASE WHEN {raw_us} >= {low} AND {raw_us} < {high} "
                        f"THEN {raw_us} - {before.offset_seconds * 1_000_000} END")
    earliest = f"least({', '.join(candidates)})"
    latest = f"greatest({', '.join(candidates)})"
    gap = f"coalesce({', '.join(gaps)})" if gaps else "NULL::BIGINT"
    return (f"CASE WHEN {latest} IS NULL THEN {gap} "
            f"WHEN {latest} > {earliest} AND {processing_us} IS NOT NULL "
            f"AND {latest} <= {processing_us} THEN {latest} ELSE {earliest} END")


def _source(body: Path) -> str:
    compression = "gzip" if body.name.endswith(".gz") else "none"
    return (f"read_json_objects({sql.literal(str(body))}, format='newline_delimited', "
            f"compression='{compression}')")


def window_plan(body: Path, periods: Sequence[Period] | None, source_name: str) -> str:
    """The SELECT of every typed row of ``body``; ``periods`` None: the project stores UTC."""
    paths = ["$.distinct_id", '$."$insert_id"', "$.time", "$.mp_processing_time_ms",
             *(f'$."{p.key}"' if "$" in p.key else f"$.{p.key}" for p in PROMOTED)]
    promoted = ", ".join(f"TRY_CAST(v[{i}] AS {p.duckdb_type}) AS {p.name}"
                         for i, p in enumerate(PROMOTED, start=5))
    utc_us = "raw_us" if periods is None else utc_micros_sql("raw_us", "processing_us", periods)
    bad = "error('{}: ' || left(line, 120))"
    return f"""
SELECT event, distinct_id, insert_id, make_timestamp(utc_us)::TIMESTAMPTZ AS time,
       time_raw, CASE WHEN precise THEN utc_us // 1000 END AS time_in_ms,
       make_timestamp(processing_us)::TIMESTAMPTZ AS mp_processing_time, {promoted_names()},
       properties, _extras, _day, {sql.literal(source_name)} AS _source_file
FROM (
  SELECT *, coalesce({utc_us}, {bad.format('a time outside the zone table')}) AS utc_us
  FROM (
    SELECT *, CAST(round(time_raw * CASE WHEN time_raw > {MS_THRESHOLD} THEN 1000
                                         ELSE 1000000 END) AS BIGINT) AS raw_us,
           time_raw > {MS_THRESHOLD} OR time_raw <> floor(time_raw) AS precise,
           CAST(make_timestamp(CAST(round(time_raw * CASE WHEN time_raw > {MS_THRESHOLD}
                THEN 1000 ELSE 1000000 END) AS BIGINT)) AS DATE) AS _day
    FROM (
      SELECT coalesce(s.event, {bad.format('no event name')}) AS event,
             v[1] AS distinct_id, v[2] AS insert_id,
             coalesce(TRY_CAST(v[3] AS DOUBLE), {bad.format('no numeric properties.time')})
                 AS time_raw,
             CAST(TRY_CAST(v[4] AS BIGINT) * 1000 AS BIGINT) AS processing_us,
             {promoted}, s.properties, _extras, line
      FROM (
        SELECT s, json_extract_string(s.properties, {sql.literal_list(paths)}) AS v,
               CASE WHEN json_keys(json) <> ['event', 'properties']
                    THEN json_merge_patch(json, '{{"event":null,"properties":null}}')::JSON
               END AS _extras, json::VARCHAR AS line
        FROM (
          SELECT TRY_CAST(json AS STRUCT(event VARCHAR, properties JSON)) AS s, json
          FROM {_source(body)}
        )
        WHERE (s IS NOT NULL AND json_type(s.properties) = 'OBJECT')
              OR {bad.format('not an object with an event and a properties object')}
      )
    )
  )
)"""


def promoted_names() -> str:
    return ", ".join(p.name for p in PROMOTED)


def normalize_window(body: Path, days: Sequence[date], out_for: Callable[[date], Path], *,
                     zone: tzinfo | None, limits: EngineLimits = EngineLimits(),
                     source_name: str | None = None,
                     landing_versions: Mapping[date, str] | None = None) -> list[NormalizedDay]:
    """Write one Parquet file per day of ``days`` (an empty one for a day without events),
    each replaced atomically. ``zone`` None: the project stores UTC (no conversion). Each day's
    file records the landing version it was built from (``pipeline/lineage.py``), so a load can
    tell it from a file an earlier fetch left."""
    versions = landing_versions or {}
    first, last = min(days), max(days)
    periods = None if zone is None else zone_periods(zone, first, last)
    outputs = {day: out_for(day) for day in days}
    root = outputs[first].parent.parent
    root.mkdir(parents=True, exist_ok=True)
    leftovers.sweep(root.glob(".staging-*"))
    staging = root / f".staging-{uuid.uuid4().hex}{leftovers.owner_mark()}"
    spill = staging / ".spill"
    staging.mkdir()
    con = work_engine(limits, spill)
    name = source_name or body.name
    whole = staging / "window.parquet"
    try:
        plan = window_plan(body, periods, name)
        single = versions.get(first) if len(outputs) == 1 else None
        try:  # one file first: DuckDB's PARTITION_BY writer holds far more memory (518 vs 284 MB)
            con.execute(f"COPY ({plan}) TO {sql.literal(str(whole))} "
                        f"({_PARQUET}{lineage.kv_option(single)})")
        except duckdb.Error as error:
            raise explain(body, days, zone, error) from error
        counts = dict(con.execute("SELECT _day, count(*) FROM read_parquet(?) GROUP BY _day",
                                  [str(whole)]).fetchall())
        foreign = sorted(set(counts) - set(days))
        if foreign:
            raise NormalizeError(f"{name}: the export of {first}..{last} holds events of "
                                 f"{', '.join(map(str, foreign))}, outside the days asked for")
        results = []
        for day, out in outputs.items():
            staged = staging / f"{day}.parquet"
            if len(outputs) == 1:
                os.replace(whole, staged)
            else:  # the rows are sorted by time, so each day's row groups are contiguous
                con.execute(f"COPY (SELECT * FROM read_parquet({sql.literal(str(whole))}) "
                            f"WHERE _day = DATE '{day}') TO {sql.literal(str(staged))} "
                            f"({_PARQUET}{lineage.kv_option(versions.get(day))})")
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, out)
            results.append(NormalizedDay(day, out, counts.get(day, 0), out.stat().st_size))
        return results
    finally:
        con.close()
        shutil.rmtree(staging, ignore_errors=True)


_PARQUET = (f"FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {ZSTD_LEVEL}, "
            f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}")


def explain(body: Path, days: Sequence[date], zone: tzinfo | None,
            error: duckdb.Error) -> Exception:
    """Name the first line that does not fit, its day and the file; or say it is not the data."""
    cause = str(error).split("\n")[0]
    window = f"{min(days)}..{max(days)}"
    if not isinstance(error, duckdb.ConversionException | duckdb.InvalidInputException |
                      duckdb.IOException):
        return RuntimeError(f"{body.name} ({window}): normalizing failed, not because of its "
                            f"data: {cause}")
    opener: Any = gzip.open if body.name.endswith(".gz") else open
    with opener(body, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            problem, day = _line_problem(line)
            if problem:
                where = f"day {day}" if day else f"a day of {window}"
                return NormalizeError(f"{where}: {body.name} line {number} {problem}: "
                                      f"{line[:120]!r}")
    return NormalizeError(f"{body.name} ({window}) does not fit the event schema: {cause}")


def _line_problem(line: bytes) -> tuple[str | None, date | None]:
    try:
        record = json.loads(line)
    except ValueError as error:
        return f"is not JSON ({error})", None
    if not isinstance(record, dict) or not isinstance(record.get("properties"), dict):
        return "is not an object with a properties object", None
    raw = record["properties"].get("time")
    day = None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = raw / 1000 if raw > MS_THRESHOLD else raw
        day = (EPOCH + timedelta(seconds=seconds)).date()
    if not isinstance(record.get("event"), str):
        return "has no event name", day
    if day is None:
        return "has no numeric properties.time", None
    return None, day

