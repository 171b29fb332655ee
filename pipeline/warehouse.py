"""The warehouse: a DuckDB file, or a DuckLake catalog, opened for loads and for reading.

DuckDB admits one writing process; a held lock is waited out with jittered backoff for a bounded
time, then reported with the holder's PID. Every write open brings each project's schema to its
newest version (``pipeline/migrations.py``, with the migrations each source brings) and keeps the
all-projects views (``pipeline/project_views.py``) in step with the projects configured. Loads
themselves are ``pipeline/partition_swap.py``.

With a DuckLake catalog (``WAREHOUSE_CATALOG``, ``pipeline/ducklake.py``) the same tables live in
DuckLake instead. A file this DuckDB cannot read at all (written by a newer DuckDB) is refused
with the way back: a rebuild from the lake (``python -m pipeline.rebuild``), since DuckDB cannot
downgrade a file in place.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import tenacity

from pipeline import ducklake, engine, migrations, project_views, sql
from pipeline.migrations import ProjectSchema
from pipeline.source import Project, source

if TYPE_CHECKING:
    from pipeline.object_storage import ObjectStorage

log = logging.getLogger(__name__)

# A load compresses each thread's last partial row group serially at commit: at DuckDB's default
# of 122,880 rows that was half the load of a 200k-event hour. At 32,768 peak memory grew with the
# hour; 65,536 keeps it flat and the file within 3 % of the default's size.
TABLE_ROW_GROUP_ROWS = 65_536
# The file format, pinned so that an engine upgrade never locks analysts' tools out: DuckDB 1.4
# (the long-term-support line) and newer open it. v1.2.0 is the oldest that keeps zstd for the
# wide bags (at DuckDB 1.5's default, v1.0.0, a zstd column is stored uncompressed), but loads
# into it take about 15 % longer than into v1.4.0 (1M events, 5.5 s vs 6.5 s).
STORAGE_VERSION = "v1.4.0"
REBUILD_COMMAND = "python -m pipeline.rebuild --warehouse {path} --lake LAKE_ROOT"


class WarehouseError(RuntimeError):
    pass


class WarehouseLocked(WarehouseError):
    pass


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


def _held_lock(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


class Warehouse:
    """The DuckDB file at ``path``; or, with ``catalog``, a DuckLake whose new data files go to
    ``data_path`` (``path`` then only places the spill folder). Every write open migrates the
    schemas of ``projects`` and, with ``views`` (and some project given), makes the
    all-projects views unite exactly them: the code location, which knows every project, keeps
    them; a tool that knows only some (forget) leaves them as they are. ``object_storage``
    lets every connection read an ``s3://`` lake."""

    def __init__(self, path: Path, *, catalog: str | None = None, data_path: str | None = None,
                 projects: Sequence[Project] = (), views: bool = True,
                 object_storage: ObjectStorage | None = None, lock_timeout_seconds: float = 300.0,
                 memory_limit: str = "224MB", threads: int = 2,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._arguments = (path, {
            "catalog": catalog, "data_path": data_path, "projects": tuple(projects),
            "views": views, "object_storage": object_storage,
            "lock_timeout_seconds": lock_timeout_seconds, "memory_limit": memory_limit,
            "threads": threads, "sleep": sleep})
        self.path = Path(path)
        self.catalog = ducklake.Catalog.parse(catalog) if catalog else None
        self.data_path = data_path
        self.projects = tuple(projects)
        self.schemas: tuple[ProjectSchema, ...] = tuple(
            source(p.source).schema(p) for p in self.projects)
        self.views = (tuple(source(p.source).tables(p) for p in self.projects)
                      if views else ())
        self.object_storage = object_storage
        self.lock_timeout_seconds = lock_timeout_seconds
        # Insertion order is meaningless here (rows are found by partition) and keeping it more
        # than doubles the load time of a large hour.
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

    def __reduce__(self) -> tuple[object, ...]:
        """Rebuilt from its arguments in a worker process (``pipeline/worker.py``)."""
        path, options = self._arguments
        return (_rebuilt, (path, options))

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A writing connection, every project's schema migrated and its views in place."""
        con = self._open_with_retry()
        try:
            con.execute("SET TimeZone = 'UTC'")
            self._ensure_schemas(con)
            yield con
        finally:
            con.close()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A reading connection: the file read-only, or the catalog (which has no such mode,
        and admits readers beside a writer on PostgreSQL and SQLite). Nothing is migrated."""
        if self.catalog is not None:
            con = self._open_with_retry()
        else:
            con = engine.connect(str(self.path), read_only=True)
        try:
            con.execute("SET TimeZone = 'UTC'")
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
        if locked_file is None:
            return self._open()
        bound = self.lock_timeout_seconds
        backoff = tenacity.wait_random_exponential(multiplier=0.2, max=10.0)

        def wait(state: tenacity.RetryCallState) -> float:  # never past the bound
            return max(min(backoff(state), bound - (state.seconds_since_start or 0.0)), 0.05)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_held_lock), wait=wait,
            stop=tenacity.stop_after_delay(bound), sleep=self._sleep, reraise=True,
            before_sleep=lambda state: log.info("warehouse %s is locked; retrying in %.1f s",
                                                locked_file, state.upcoming_sleep))
        started = time.monotonic()
        try:
            return retrying(self._open)
        except duckdb.IOException as error:
            if not _held_lock(error):
                raise
            holder = str(error).split("\n")[0]
            advice = ("analysts should query a read-only connection or the Parquet lake "
                      "(docs/analysts.md, 'Reading while loads run')" if self.catalog is None
                      else f"a {ducklake.SUFFIX} catalog, like a DuckDB file, admits one "
                      "process at a time: for analysts reading while loads run, use a "
                      "PostgreSQL or SQLite catalog")
            raise WarehouseLocked(
                f"{locked_file} stayed locked by another process for "
                f"{time.monotonic() - started:.0f} s ({holder}). Close read-write sessions on "
                f"it; {advice}") from error

    def _ensure_schemas(self, con: duckdb.DuckDBPyConnection) -> None:
        """Migrate every project's schema to its newest version, then its views."""
        try:
            for schema in self.schemas:
                applied = migrations.upgrade(con, schema)
                if applied:
                    log.info("warehouse %s: applied %s migration(s) %s", self.name,
                             schema.schema, applied)
            if self.views:
                project_views.ensure(con, self.views)
        except migrations.MigrationError as error:
            raise WarehouseError(f"warehouse {self.name}: {error}") from error


def _rebuilt(path: Path, options: dict[str, Any]) -> Warehouse:
    return Warehouse(path, **options)


_held: dict[str, tuple[duckdb.DuckDBPyConnection, ExitStack]] = {}


@atexit.register
def _release_all() -> None:
    while _held:
        _, (_, stack) = _held.popitem()
        stack.close()


def held(warehouse: Warehouse) -> duckdb.DuckDBPyConnection:
    """A writing connection this process keeps open until it exits: a step's worker
    (``pipeline/worker.py``) opens and migrates the warehouse once for a whole range."""
    if warehouse.name not in _held:
        stack = ExitStack()
        _held[warehouse.name] = (stack.enter_context(warehouse.connect()), stack)
    return _held[warehouse.name][0]


def hold(warehouse: Warehouse) -> None:
    """``held``, for a caller that only needs it open (a lock held elsewhere fails here)."""
    held(warehouse)


def release(warehouse: Warehouse) -> None:
    """Close what ``held`` keeps open, for a process that goes on (a step run in-process)."""
    found = _held.pop(warehouse.name, None)
    if found is not None:
        found[1].close()
