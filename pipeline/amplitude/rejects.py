"""Quarantine (``AMPLITUDE_REJECTS=quarantine``): malformed lines set aside instead of failing.

Only a line that is not a JSON object is quarantined: malformed or cut-off JSON, a bare scalar or
array. A JSON object whose known fields have the wrong type still fails its hour, since that says
the export's schema changed, which no quarantine should hide. So does a member that is not gzip,
or an hour where so many lines are bad that it looks like damage rather than strays.

This path runs only after the fast plans have failed on an hour, so it can afford Python: each
member is read once, line by line, and its good lines are copied byte for byte into a new member.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import duckdb

from pipeline import engine, lineage, sql
from pipeline.lake import hour_partition

if TYPE_CHECKING:
    from pipeline.amplitude.landing import AmplitudeLake

# More bad lines than this is damage, not strays: 1 % of the hour's lines, but at least 10 (a
# small hour) and at most 10,000 (each is kept whole in amplitude._rejects).
MAX_REJECTED_SHARE = 0.01
MIN_REJECTED_LIMIT = 10
MAX_REJECTED_LINES = 10_000
LINE_EXCERPT = 65_536  # the longest line text kept in amplitude._rejects


class TooManyRejects(ValueError):
    pass


@dataclass(frozen=True)
class Reject:
    member: str
    line_number: int  # 1-based, counting blank lines, as an editor shows it
    line: str


@dataclass(frozen=True)
class SplitMembers:
    members: list[Path]  # the good lines, one new member per input member, same file names
    rejects: list[Reject]
    lines: int
    blank_lines: int


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return False


def split_members(members: Sequence[Path], into: Path, names: dict[str, str],
                  upload_hour: datetime) -> SplitMembers:
    """Copy each member's good lines into ``into``; collect the rest."""
    into.mkdir(parents=True, exist_ok=True)
    rejects: list[Reject] = []
    lines = blanks = 0
    written: list[Path] = []
    for member in members:
        out = into / member.name
        name = names.get(member.name, member.name)
        try:
            with gzip.open(member, "rb") as source, gzip.open(out, "wb", compresslevel=1) as sink:
                for number, line in enumerate(source, start=1):
                    lines += 1
                    if not line.strip():
                        blanks += 1
                    elif _is_object(line):
                        sink.write(line if line.endswith(b"\n") else line + b"\n")
                    else:
                        text = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
                        rejects.append(Reject(name, number, text[:LINE_EXCERPT]))
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"upload hour {upload_hour:%Y-%m-%dT%H}: member {name} cannot be "
                             f"read as gzip, so it cannot be quarantined line by line: "
                             f"{error}") from error
        written.append(out)
    limit = min(MAX_REJECTED_LINES, max(MIN_REJECTED_LIMIT, int(lines * MAX_REJECTED_SHARE)))
    if len(rejects) > limit:
        raise TooManyRejects(
            f"upload hour {upload_hour:%Y-%m-%dT%H}: {len(rejects)} of {lines} lines are not "
            f"JSON objects, more than the {limit} a quarantine takes (1 %, at least "
            f"{MIN_REJECTED_LIMIT}, at most {MAX_REJECTED_LINES}); that is damage, not stray "
            f"lines. First: member {rejects[0].member} line {rejects[0].line_number}")
    return SplitMembers(written, rejects, lines, blanks)


def write_rejects(rejects: Sequence[Reject], upload_hour: datetime, out: Path,
                  landing_version: str | None) -> None:
    """The hour's rejects as Parquet, in ``amplitude._rejects``'s columns (bar ``rejected_at``)."""
    with duckdb.connect(config=engine.offline_config()) as con:
        con.execute("CREATE TABLE r (upload_hour TIMESTAMPTZ, member VARCHAR, "
                    "line_number BIGINT, line VARCHAR)")
        con.executemany("INSERT INTO r VALUES (?, ?, ?, ?)",
                        [(upload_hour, r.member, r.line_number, r.line) for r in rejects])
        con.execute(f"COPY r TO {sql.literal(str(out))} "
                    f"(FORMAT parquet{lineage.kv_option(landing_version)})")


def rejects_file(lake: AmplitudeLake, upload_hour: datetime) -> PurePath | None:
    """Beside the events, not among them: a glob over ``<namespace>/events`` must not see it."""
    return lake.table_file(lake.namespace, "rejects", hour_partition(upload_hour))


def rejects_for(lake: AmplitudeLake, upload_hour: datetime, landing_version: str) -> str | None:
    """The hour's quarantined lines (as DuckDB reads them), if they came from the same fetch as
    its events."""
    path = rejects_file(lake, upload_hour)
    if path is None:
        return None
    with lake.connect() as con:
        if lineage.landing_version_of(lake.url(path), con) == landing_version:
            return lake.url(path)
    return None
