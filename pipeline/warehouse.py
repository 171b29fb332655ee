"""The DuckDB warehouse: ``amplitude.events`` and its ledger ``amplitude._loads``.

Each upload hour is swapped in one transaction (delete the hour, insert it from its Parquet file,
record it), so a re-run of any hour or range leaves exactly the same rows and a failure leaves the
previous rows in place. DuckDB admits one writing process; a held lock is waited out with jittered
backoff for a bounded time, then reported with the holder's PID.

With a DuckLake catalog (``WAREHOUSE_CATALOG``, ``pipeline/ducklake.py``) the same tables live in
DuckLake instead, and an hour's load registers its Parquet file in the catalog rather than copying
its rows: the swap is still one transaction (delete the hour, which drops its previous file from
the new snapshot but keeps it for older ones, register the new file, record it). Registered files
must never be rewritten under their name: older snapshots (``AT (VERSION => n)``) read them.

Every open brings the file to the newest schema version (``pipeline/migrations.py``). A file this
DuckDB cannot read at all (written by a newer DuckDB) is refused with the way back: a rebuild
from the lake (``python -m pipeline.rebuild``), since DuckDB cannot downgrade a file in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from pipeline import ducklake, engine, migrations, sql
from pipeline.amplitude.schema import EVENT_COLUMNS

if TYPE_CHECKING:
    from pipeline.amplitude.landing import LandedHour
    from pipeline.object_storage import ObjectStorage

log = logging.getLogger(__name__)

EVENTS_TABLE = "amplitude.events"
LOADS_TABLE = "amplitude._loads"
SNAPSHOT_LOADS_TABLE = "amplitude._snapshot_loads"
# A load compresses each thread's last partial row group serially at commit: at DuckDB's default
# of 122,880 rows that was half the load of a 200k-event hour. At 32,768 peak memory grew with the
# hour; 65,536 keeps it flat and the file within 3 % of the default's size.
TABLE_ROW_GROUP_ROWS = 65_536
# The file format, pinned so that an engine upgrade never locks analysts' tools out: DuckDB 1.4
# (the long-term-support line) and newer open it. v1.2.0 is the oldest that keeps zstd for the
# wide bags (at DuckDB 1.5's default, v1.0.0, a zstd column is stored uncompressed), but loads
# into it take about 15 % longer than into v1.4.0 (1M events, 5.5 s vs 6.5 s).
STORAGE_VERSION = "v1.4.0"


class WarehouseError(RuntimeError):
    pass


class WarehouseLocked(WarehouseError):
    pass


class RowDropRefused(WarehouseError):
    """A load that would replace an hour's rows with far fewer; nothing was changed."""

    def __init__(self, message: str, *, loaded: int, fetched: int) -> None:
        super().__init__(message)
        self.loaded, self.fetched = loaded, fetched


REBUILD_COMMAND = "python -m pipeline.rebuild --warehouse {path} --lake LAKE_ROOT"


@dataclass(frozen=True, kw_only=True)
class LoadRecord:
    """One row of ``amplitude._loads``: the latest load of an upload hour."""

    upload_hour: datetime
    archive_members: int
    bytes_downloaded: int
    request_window: str
    window_requests: int
    fetch_seconds: float
    landing_version: str | None = None  # the landing's version folder the rows were read from
    fetched_at: datetime | None = None  # when that fetch landed
    # Filled in by Warehouse.replace_hour:
    rows: int = 0
    load_seconds: float = 0.0
    loaded_at: datetime | None = None
    # Against the rows it replaced, by uuid (a first load adds every row):
    rows_added: int = 0
    rows_removed: int = 0
    rows_changed: int = 0

    @classmethod
    def from_landing(cls, landed: LandedHour) -> LoadRecord:
        """The ledger row of an hour loaded from this landing, shared by the asset and rebuild."""
        return cls(upload_hour=landed.upload_hour, archive_members=len(landed.members),
                   bytes_downloaded=landed.member_bytes, request_window=landed.request_window,
                   window_requests=landed.window_requests, fetch_seconds=landed.fetch_seconds,
                   landing_version=landed.version, fetched_at=landed.fetched_at)


_LOADS_COLUMNS = ("upload_hour", "rows", "archive_members", "bytes_downloaded", "request_window",
                  "window_requests", "fetch_seconds", "load_seconds", "loaded_at",
                  "landing_version", "fetched_at", "rows_added", "rows_removed",
                  "rows_changed")  # named in the INSERT: migrations append
REJECTS_TABLE = "amplitude._rejects"
# DuckLake has no keys, so no INSERT OR REPLACE: a ledger row is deleted, then inserted.
INSERT_LOAD = (f"INSERT INTO {LOADS_TABLE} ({', '.join(_LOADS_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_LOADS_COLUMNS))})")


def storage_version(path: Path) -> int | None:
    """The storage version in a DuckDB file's header, or None if it is not a DuckDB file.

    The main header is an 8-byte checksum, the magic ``DUCK`` and a little-endian uint64.
    """
    try:
        with open(path, "rb") as file:
            header = file.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[8:12] != b"DUCK":
        return None
    return int.from_bytes(header[12:20], "little")


class Warehouse:
    """The DuckDB file at ``path``; or, with ``catalog``, a DuckLake whose new data files go to
    ``data_path`` (``path`` then only places the spill folder). ``object_storage`` lets every
    connection read an ``s3://`` lake."""

    def __init__(self, path: Path, *, catalog: str | None = None, data_path: str | None = None,
                 object_storage: ObjectStorage | None = None, lock_timeout_seconds: float = 300.0,
                 memory_limit: str = "224MB", threads: int = 2,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = Path(path)
        self.catalog = ducklake.Catalog.parse(catalog) if catalog else None
        self.data_path = data_path
        self.object_storage = object_storage
        self.lock_timeout_seconds = lock_timeout_seconds
        # Insertion order is meaningless here (rows are found by hour) and keeping it more than
        # doubles the load time of a large hour.
        self._config: engine.Config = {
            "memory_limit": memory_limit, "threads": threads, "preserve_insertion_order": False,
            # beside the file, as for a file opened directly, not in ./.tmp
            "temp_directory": f"{self.path}.tmp", **engine.offline_config()}
        place = (str(self.path.resolve()) if self.catalog is None
                 else f"{self.catalog.target}\0{self.data_path}")
        self._instance = ":memory:warehouse-" + hashlib.sha256(place.encode()).hexdigest()[:16]
        self._sleep = sleep

    @property
    def name(self) -> str:
        """The warehouse as messages name it (a catalog without its password)."""
        return str(self.path) if self.catalog is None else self.catalog.shown

    def __repr__(self) -> str:
        return f"Warehouse({self.name!r})"

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._open_with_retry()
        try:
            con.execute("SET TimeZone = 'UTC'")
            self._ensure_schema(con)
            yield con
        finally:
            con.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        # ROW_GROUP_SIZE is an attach option, not stored in the file (see TABLE_ROW_GROUP_ROWS).
        # One named instance per file: DuckDB refuses to attach a file twice in a process.
        con = duckdb.connect(self._instance, config=self._config)
        try:
            if self.object_storage is not None:
                self.object_storage.configure_duckdb(con)
            if self.catalog is not None:
                ducklake.attach(con, self.catalog, self.data_path)
                return con
            con.execute(f"ATTACH IF NOT EXISTS {sql.literal(str(self.path))} AS warehouse "
                        f"(ROW_GROUP_SIZE {TABLE_ROW_GROUP_ROWS}, "
                        f"STORAGE_VERSION {sql.literal(STORAGE_VERSION)})")
            con.execute("USE warehouse")
        except duckdb.Error as error:
            con.close()
            unreadable = self._unreadable(error)
            if unreadable is not None:
                raise unreadable from error
            raise
        except BaseException:
            con.close()
            raise
        return con

    def _unreadable(self, error: duckdb.Error) -> WarehouseError | None:
        """Say plainly that a file of another DuckDB storage version needs a rebuild.

        The number comes from the file's header, not from parsing DuckDB's wording; the error
        only has to confirm that DuckDB refused that very version (its readable range, when the
        message gives one, tells a newer file from an older one).
        """
        if self.catalog is not None:
            return None
        found = storage_version(self.path)
        text = str(error)
        if found is None or f"version number {found}" not in text:
            return None
        readable = re.search(r"between (\d+) and (\d+)", text)
        older = readable is not None and found < int(readable.group(1))
        can_read = (f", which reads storage versions {readable.group(1)} to {readable.group(2)}"
                    if readable else "")
        return WarehouseError(
            f"{self.path} was written by {'an older' if older else 'a newer'} DuckDB (storage "
            f"version {found}); this project runs DuckDB {duckdb.__version__}{can_read}, and "
            "DuckDB cannot convert a file in place. Rebuild it from the lake with "
            f"`{REBUILD_COMMAND.format(path=self.path)}`: it moves the old file aside to "
            f"{self.path.name}.old-<time> (never deletes it) and loads every hour of the lake "
            "into a new file"
        )

    def _open_with_retry(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB file (the warehouse, or a ``.ducklake`` catalog) admits one process: its lock
        is waited out. A PostgreSQL or SQLite catalog takes no such lock, so its errors are not."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        locked_file = self.path if self.catalog is None else self.catalog.file
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._open()
            except duckdb.IOException as error:
                if locked_file is None or "lock" not in str(error).lower():
                    raise
                elapsed = time.monotonic() - started
                if elapsed >= self.lock_timeout_seconds:
                    holder = str(error).split("\n")[0]
                    advice = ("analysts should query a read-only connection or the Parquet lake "
                              "(README, 'Reading while loads run')" if self.catalog is None else
                              f"a {ducklake.SUFFIX} catalog, like a DuckDB file, admits one "
                              "process at a time: for analysts reading while loads run, use a "
                              "PostgreSQL or SQLite catalog")
                    raise WarehouseLocked(
                        f"{locked_file} stayed locked by another process for {elapsed:.0f} s "
                        f"({holder}). Close read-write sessions on it; {advice}"
                    ) from error
                wait = min(random.uniform(0.5, 1.5) * min(2 ** attempt * 0.1, 10.0),
                           self.lock_timeout_seconds - elapsed)
                log.info("warehouse %s is locked; retrying in %.1f s", locked_file, wait)
                self._sleep(max(wait, 0.05))

    def _ensure_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        """Migrate to the newest schema version, then check the table as loads will write it.

        The final check catches a table edited by hand after its version was recorded.
        """
        try:
            applied = migrations.upgrade(con)
            migrations.check_columns(con, "events", [c.name for c in EVENT_COLUMNS],
                                     "this version")
        except migrations.MigrationError as error:
            raise WarehouseError(f"warehouse {self.name}: {error}") from error
        if applied:
            log.info("warehouse %s: applied schema migration(s) %s", self.name, applied)

    def replace_partition(self, con: duckdb.DuckDBPyConnection, table: str, column: str,
                          value: object, parquet: str | Path, *, what: str,
                          record: Callable[[int], None] | None = None,
                          guard: Callable[[int, int], None] | None = None,
                          register: bool = True) -> int:
        """Swap the rows of ``table`` whose ``column`` is ``value`` for those of ``parquet`` (a
        local path or an ``s3://`` URI), in one transaction; ``record(rows)`` writes the
        partition's ledger row inside it, and ``guard(rows_now, rows_in_file)`` may refuse the
        swap before anything is deleted.

        Every row of the file must belong to the partition, so a file written for another one
        can never slip in; re-running leaves exactly the same rows; a failure leaves the old ones.
        On DuckLake the file itself is registered, so it must never be rewritten under its name;
        ``register=False`` copies its rows instead, for a file whose name is reused.
        """
        source = str(parquet)
        registering = register and self.catalog is not None
        con.execute("BEGIN TRANSACTION")
        try:
            in_file, outside = _file_counts(con, source, column, value, scan=registering)
            if outside:
                raise WarehouseError(f"{what}: {parquet} holds {in_file} rows, only "
                                     f"{in_file - outside} of them for this partition of {table}")
            loaded = _one(con.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?",
                                      [value])) if guard is not None or registering else 0
            if guard is not None:
                guard(loaded, in_file)
            if registering:
                inserted = self._register(con, table, column, value, source, in_file=in_file,
                                          loaded=loaded, what=what)
            else:
                con.execute(f"DELETE FROM {table} WHERE {column} = ?", [value])
                inserted = _one(con.execute(insert_partition(table, column), [source, value]))
            if inserted != in_file:
                raise WarehouseError(f"{what}: {parquet} holds {in_file} rows, only {inserted} "
                                     f"of them for this partition of {table}")
            if record is not None:
                record(inserted)
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # keep the original error, not the rollback's
                con.execute("ROLLBACK")
            raise
        return inserted

    @staticmethod
    def _register(con: duckdb.DuckDBPyConnection, table: str, column: str, value: object,
                  source: str, *, in_file: int, loaded: int, what: str) -> int:
        """Swap the partition's rows for the file's by registering it (inside the caller's
        transaction).

        DuckLake schedules a file for deletion when the snapshots that dropped it expire, even
        if the same path was registered again since: so a path is registered once. A re-run
        with the very file already holding the partition changes nothing; any other return of
        a registered path is refused.
        """
        now, ever = ducklake.registrations(con, table, source)
        if now and loaded == in_file:
            return in_file
        if ever:
            raise WarehouseError(
                f"{what}: {source} was registered in {table} before, and DuckLake deletes a file "
                "once the snapshots that superseded it expire, so a file is registered only "
                "once: write this version of the partition under a new name")
        con.execute(f"DELETE FROM {table} WHERE {column} = ?", [value])
        if in_file:  # an empty file adds no rows: nothing to register
            ducklake.register_file(con, table, source)
        return in_file

    def replace_snapshot(self, con: duckdb.DuckDBPyConnection, table: str, day: date,
                         parquet: str | Path, *, requests: int, landing_version: str,
                         fetched_at: datetime, also: Callable[[int], None] | None = None,
                         register: bool = False) -> int:
        """Swap one day's snapshot of ``amplitude.<table>`` in, with its ledger row; ``also``
        records more in the same transaction (a cohort's downloads).

        A day's snapshot file is rewritten under its name when the day is taken again, so on
        DuckLake its rows are copied unless ``register`` says the name is never reused.
        """

        def ledger(rows: int) -> None:
            con.execute(f"DELETE FROM {SNAPSHOT_LOADS_TABLE} WHERE table_name = ? AND "
                        "snapshot_date = ?", [table, day])
            con.execute(f"INSERT INTO {SNAPSHOT_LOADS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [table, day, rows, requests, landing_version, fetched_at,
                         datetime.now(UTC)])
            if also is not None:
                also(rows)

        return self.replace_partition(con, f"amplitude.{table}", "snapshot_date", day, parquet,
                                      what=f"amplitude.{table} snapshot of {day}", record=ledger,
                                      register=register)

    def replace_hour(self, con: duckdb.DuckDBPyConnection, parquet: str | Path,
                     record: LoadRecord, *, max_drop_share: float | None = None,
                     rejects: str | Path | None = None) -> LoadRecord:
        """Swap one upload hour in with its ledger row; return the row as written.

        With ``max_drop_share``, an hour whose new file holds fewer rows than that share below
        what is loaded is refused (``RowDropRefused``) and keeps its rows: an empty or short
        re-fetch (a 404, an empty archive) must never silently replace loaded events. The hour's
        quarantined lines in ``amplitude._rejects`` are swapped for those of ``rejects`` (none
        when it is None) in the same transaction.
        """
        started = time.monotonic()
        written: list[LoadRecord] = []
        hour = record.upload_hour
        changes = [0, 0, 0]  # added, removed, changed

        def guard(loaded: int, fetched: int) -> None:
            if max_drop_share is not None and loaded and fetched < loaded * (1 - max_drop_share):
                raise RowDropRefused(
                    f"upload hour {hour:%Y-%m-%dT%H}: the new fetch holds {fetched} rows where "
                    f"{loaded} are loaded (a drop past {max_drop_share:.0%}); the loaded rows are "
                    "kept. If Amplitude really holds fewer now, re-run with run config "
                    "accept_row_drops: true", loaded=loaded, fetched=fetched)
            # A first load adds every row; only a re-load has anything to compare.
            changes[:] = _changes(con, hour, parquet) if loaded else (fetched, 0, 0)

        def ledger(rows: int) -> None:
            row = replace(record, rows=rows, load_seconds=time.monotonic() - started,
                          loaded_at=datetime.now(UTC), rows_added=changes[0],
                          rows_removed=changes[1], rows_changed=changes[2])
            con.execute(f"DELETE FROM {LOADS_TABLE} WHERE upload_hour = ?", [hour])
            con.execute(INSERT_LOAD, [getattr(row, name) for name in _LOADS_COLUMNS])
            con.execute(f"DELETE FROM {REJECTS_TABLE} WHERE upload_hour = ?", [hour])
            if rejects is not None:
                con.execute(f"INSERT INTO {REJECTS_TABLE} SELECT *, now() FROM read_parquet(?, "
                            "hive_partitioning = false)", [str(rejects)])
            written.append(row)

        self.replace_partition(con, EVENTS_TABLE, "_upload_hour", hour, parquet,
                               what=f"upload hour {hour:%Y-%m-%dT%H}", record=ledger,
                               guard=guard)
        return written[0]


def _changes(con: duckdb.DuckDBPyConnection, hour: datetime,
             parquet: str | Path) -> tuple[int, int, int]:
    """Events (by uuid) the new file adds, removes and changes against the hour as loaded.

    Lineage columns are left out: a re-export may name its members differently. Repeated uuids
    are compared as a whole: their count and the sum of their rows' hashes.
    """
    compared = ", ".join(f'"{c.name}"' for c in EVENT_COLUMNS
                         if c.name not in ("_upload_hour", "_source_member"))
    per_uuid = f"SELECT uuid, count(*) AS n, sum(hash({compared})::HUGEINT) AS h FROM"
    row = con.execute(
        f"WITH old AS ({per_uuid} {EVENTS_TABLE} WHERE _upload_hour = ? GROUP BY uuid), "
        f"new AS ({per_uuid} read_parquet(?, hive_partitioning = false) GROUP BY uuid) "
        "SELECT count(*) FILTER (WHERE old.uuid IS NULL), "
        "count(*) FILTER (WHERE new.uuid IS NULL), "
        "count(*) FILTER (WHERE old.n <> new.n OR old.h <> new.h) "
        "FROM old FULL JOIN new ON old.uuid = new.uuid", [hour, str(parquet)]).fetchone()
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
