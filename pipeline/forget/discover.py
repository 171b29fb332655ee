"""Where a family's users are: the partitions a request visits, and those to visit again.

The warehouse says which partitions hold the users (and which quarantined lines spell their
ids). Partitions it cannot vouch for (landed but not loaded, or landed again since) are checked
in their Parquet file when that was built from the current landing, else in the landing itself.
``scan="lake"`` checks every Parquet file, ``scan="landing"`` reads every landing file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipeline.forget import audit, parquet
from pipeline.forget.contract import UserData
from pipeline.forget.landing import current_version
from pipeline.lake import MANIFEST
from pipeline.lineage import LANDING_VERSION_KEY
from pipeline.source import Partition


@dataclass
class Plan:
    """Partitions to visit, each with whether it is known to hold the users (else: look)."""

    partitions: dict[Partition, bool] = field(default_factory=dict)
    # Landing versions an earlier, interrupted request replaced: loaded version -> current one
    versions: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.partitions)

    def add(self, partitions: Iterable[Partition], affected: bool) -> None:
        for partition in partitions:
            self.partitions[partition] = self.partitions.get(partition, False) or affected


def chain(versions: dict[str, str], old: str, new: str) -> None:
    """Record that ``new`` replaced ``old`` (and so every version ``old`` had replaced)."""
    for key, value in versions.items():
        if value == old:
            versions[key] = new
    versions[old] = new


def _built_from(duck: duckdb.DuckDBPyConnection, files: list[Path]) -> dict[Path, str]:
    """The landing version each file names in its metadata, for those that name one."""
    existing = [str(f) for f in files if f.exists()]
    if not existing:
        return {}
    rows = duck.execute("SELECT file_name, value FROM parquet_kv_metadata(?) WHERE key = ?",
                        [existing, LANDING_VERSION_KEY.encode()]).fetchall()
    return {Path(name): bytes(value).decode(errors="replace") for name, value in rows}


def _fresh(parquet_file: Path, folder: Path, version: str | None, named: dict[Path, str]) -> bool:
    """Whether a partition's Parquet file was built from its current landing: the version its
    metadata names, or else a file newer than the manifest."""
    if not parquet_file.exists() or version is None:
        return False
    if parquet_file in named:
        return named[parquet_file] == version
    try:
        return parquet_file.stat().st_mtime >= (folder / MANIFEST).stat().st_mtime
    except FileNotFoundError:
        return False


def discover(con: duckdb.DuckDBPyConnection, duck: duckdb.DuckDBPyConnection, data: UserData,
             scan: str) -> Plan:
    """The family's partitions holding the users, or that might."""
    plan = Plan()
    plan.add(audit.holding(con, data), True)
    landed = data.landed()
    loaded = audit.loaded(con, data)
    _unvouched(plan, data, duck, scan, loaded, landed)
    for partition in plan.partitions:
        if partition in landed:
            _inherit(plan.versions, loaded.get(partition), data, partition)
    if scan in ("lake", "landing"):  # every Parquet file, landed or not
        files = data.parquet_files()
        plan.add({files[path] for path in parquet.matches_in(duck, files, data.predicate)}, True)
    return plan


def _inherit(versions: dict[str, str], loaded: audit.Loaded | None, data: UserData,
             partition: Partition) -> None:
    """Map the loaded landing version to the current one when the current one is this command's
    rewrite of it: the same fetch (a rewrite keeps ``fetched_at``; a fetch sets a new one) under
    another version. That is what a request killed between its landing and its warehouse steps
    leaves; the ledger and the Parquet file then follow the rewrite as if it had not stopped."""
    if loaded is None or loaded[0] is None or loaded[1] is None:
        return
    landing = data.landing(partition)
    if landing is not None and landing.version != loaded[0] and \
            landing.fetched_at == loaded[1]:
        versions[loaded[0]] = landing.version


def _unvouched(plan: Plan, data: UserData, duck: duckdb.DuckDBPyConnection, scan: str,
               loaded: Mapping[Partition, audit.Loaded], landed: Mapping[Partition, Path]) -> None:
    """Add the landed partitions the warehouse cannot vouch for: those whose loaded rows did
    not come from the current landing version (all of them, with ``scan="landing"``).

    Such a partition's Parquet file is checked when it was built from the current landing;
    otherwise the partition is visited, which reads its landing."""
    versions = {p: current_version(folder) for p, folder in landed.items()
                if p not in plan.partitions}
    named = _built_from(duck, [data.parquet_file(p) for p in versions])
    check: dict[Path, Partition] = {}
    look: set[Partition] = set()
    for partition, version in versions.items():
        parquet_file = data.parquet_file(partition)
        if scan == "landing":
            look.add(partition)
        elif version is not None and loaded.get(partition, (None, None))[0] == version:
            continue  # the warehouse holds what this landing holds
        elif _fresh(parquet_file, landed[partition], version, named):
            check[parquet_file] = partition
        else:
            look.add(partition)
    plan.add(look, False)
    plan.add({check[path] for path in parquet.matches_in(duck, check, data.predicate)}, True)


def recheck(con: duckdb.DuckDBPyConnection, duck: duckdb.DuckDBPyConnection, data: UserData,
            visited: Mapping[Partition, str | None]) -> Plan:
    """Under the warehouse's lock (no load can run): what changed while the lake was rewritten.

    Partitions the warehouse now holds the users in that were not visited, visited ones landed
    again since, and visited ones whose Parquet file holds them again."""
    plan = Plan()
    plan.add(audit.holding(con, data) - set(visited), True)
    landed = data.landed()
    plan.add({p for p, v in visited.items()
              if (current_version(landed[p]) if p in landed else None) != v}, False)
    files = {data.parquet_file(p): p for p in visited}
    plan.add({files[path] for path in parquet.matches_in(duck, files, data.predicate)}, True)
    return plan
