"""Daily snapshots: what an endpoint says on a day, kept day after day so history accumulates.

Cohorts and the taxonomy only ever say what they are *now*, so only today's snapshot can be taken
from the API. A past day is re-materialized from its own landing copy (a parser fix, a rebuilt
warehouse), and refused when it has none, since asking the API today would file today's answer
under that day. Re-taking today replaces today's landing and rows, so it is idempotent.

The flow is the events' flow, one partition a day: answers → a landing version folder under a
manifest → one Parquet file → one warehouse transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path, PurePath
from typing import Any

import duckdb

from pipeline import leftovers
from pipeline.lake import Lake, LakeError, day_partition, scratch_folder
from pipeline.partition_swap import replace_partition


class SnapshotRefused(RuntimeError):
    """A snapshot that cannot be taken for that day; the message says why."""


@dataclass(frozen=True)
class SnapshotLanding:
    """One day's landed answers of one dataset, as its manifest records them."""

    dataset: str
    snapshot_date: date
    version: str
    files: list[str]  # inside the version folder, or absolute for a file carried forward
    requests: int
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["snapshot_date"] = self.snapshot_date.isoformat()
        data["fetched_at"] = self.fetched_at.isoformat()
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> SnapshotLanding:
        data = json.loads(text)
        data["snapshot_date"] = date.fromisoformat(data["snapshot_date"])
        data["fetched_at"] = datetime.fromisoformat(data["fetched_at"])
        return cls(**data)


@dataclass
class Fetch:
    """What a fetch into the staging folder reports back: files written (relative names, or
    absolute paths of earlier files it reuses), requests made, and figures for the manifest."""

    files: list[str] = field(default_factory=list)
    requests: int = 0
    details: dict[str, Any] = field(default_factory=dict)


class Snapshots:
    """A project's daily snapshots: its namespace (``source``) names its landing folders, its
    tables' folders and its warehouse schema, whose ``_snapshot_loads`` is their ledger."""

    def __init__(self, lake: Lake, source: str) -> None:
        self.lake = lake
        self.source = source

    def folder(self, dataset: str, day: date) -> PurePath:
        return self.lake.landing_folder(self.source, dataset, day_partition(day))

    def table_file(self, table: str, day: date) -> PurePath | None:
        """The day's current Parquet file, or None if it has none."""
        return self.lake.table_file(self.source, table, day_partition(day))

    def table_url(self, table: str, day: date) -> str:
        """The day's current Parquet file as DuckDB reads it (just written: it exists)."""
        place = self.table_file(table, day)
        if place is None:
            raise LakeError(f"{self.source}/{table} has no Parquet file for {day}")
        return self.lake.url(place)

    def landed(self, dataset: str, day: date) -> SnapshotLanding | None:
        text = self.lake.manifest(self.folder(dataset, day))
        return None if text is None else SnapshotLanding.from_json(text)

    def paths(self, landing: SnapshotLanding) -> list[Path]:
        """The landing's files on local disk; from object storage, copied into a local cache
        once (a version's files never change)."""
        folder = self.folder(landing.dataset, landing.snapshot_date) / landing.version
        if not self.lake.remote:
            return [Path(f) if Path(f).is_absolute() else self.lake.local(folder / f)
                    for f in landing.files]
        cache = scratch_folder() / "lake-cache"
        local = []
        for name in landing.files:
            path = cache / str(folder / name)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                staged = path.with_name(f".{path.name}.{leftovers.owner_mark()}.tmp")
                self.lake.download(folder / name, staged)
                staged.replace(path)
            local.append(path)
        return local

    def take(self, dataset: str, day: date, fetch: Callable[[Path], Fetch], *,
             today: date | None = None, refetch: bool = True) -> tuple[SnapshotLanding, bool]:
        """Today's answers fetched and landed, or a past day's landing as it was.

        Returns the landing and whether the API was called. ``refetch=False`` reuses a landing
        already taken today.
        """
        today = today or datetime.now(UTC).date()
        existing = self.landed(dataset, day)
        if day > today:
            raise SnapshotRefused(f"{self.source}/{dataset} for {day}: that day has not come yet "
                                  f"(today is {today} UTC)")
        if day < today:
            if existing is None:
                raise SnapshotRefused(
                    f"{self.source}/{dataset} for {day}: the API only says what is true now, so "
                    f"a past day can only be rebuilt from its own landing copy, and {day} has "
                    "none (it was never taken). Materialize today's partition instead.")
            return existing, False
        if existing is not None and not refetch:
            return existing, False
        self.lake.tidy(self.source, dataset)
        folder = self.folder(dataset, day)
        with self.lake.new_version(folder) as (version, staged):
            got = fetch(staged)
        landing = SnapshotLanding(dataset, day, version, got.files, got.requests,
                                  details=got.details)
        self.lake.commit(folder, version, landing.to_json())
        return landing, True

    def staged_table_file(self, table: str, day: date) -> AbstractContextManager[Path]:
        """A local path to write the day's Parquet file to; it becomes the current file on
        success (``Lake.staged_table_file``)."""
        return self.lake.staged_table_file(self.source, table, day_partition(day))

    def load(self, con: duckdb.DuckDBPyConnection, table: str, landing: SnapshotLanding, *,
             also: Callable[[int], None] | None = None) -> int:
        """Swap the landing's day of ``table`` in from its current Parquet file, with its ledger
        row; ``also`` records more in the same transaction (a cohort's downloads).

        On DuckLake the file is registered when the lake gives every version its own name, and
        its rows copied otherwise (a day taken again rewrites its file under the same name).
        """
        day, schema = landing.snapshot_date, self.source

        def ledger(rows: int) -> None:
            con.execute(f"DELETE FROM {schema}._snapshot_loads WHERE table_name = ? AND "
                        "snapshot_date = ?", [table, day])
            con.execute(f"INSERT INTO {schema}._snapshot_loads VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [table, day, rows, landing.requests, landing.version,
                         landing.fetched_at, datetime.now(UTC)])
            if also is not None:
                also(rows)

        return replace_partition(con, f"{schema}.{table}", "snapshot_date", day,
                                 self.table_url(table, day),
                                 what=f"{schema}.{table} snapshot of {day}", record=ledger,
                                 register=self.lake.versioned_tables)
