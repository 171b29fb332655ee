"""The DuckDB warehouse: ``amplitude.events`` and its ledger ``amplitude._loads``.

Each upload hour is swapped in one transaction (delete the hour, insert it from its Parquet file,
record it), so a re-run of any hour or range leaves exactly the same rows and a failure leaves the
previous rows in place. DuckDB admits one writing process; a held lock is waited out with jittered
backoff for a bounded time, then reported with the holder's PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipeline import sql
from pipeline.schema import EVENT_COLUMNS, duckdb_table_columns

log = logging.getLogger(__name__)

EVENTS_TABLE = "amplitude.events"
LOADS_TABLE = "amplitude._loads"
INSERT_HOUR = (f"INSERT INTO {EVENTS_TABLE} BY NAME "  # parameters: the Parquet file, the hour
               "SELECT * FROM read_parquet(?, hive_partitioning = false) WHERE _upload_hour = ?")
# A load compresses each thread's last partial row group serially at commit: at DuckDB's default
# of 122,880 rows that was half the load of a 200k-event hour. At 32,768 peak memory grew with the
# hour; 65,536 keeps it flat and the file within 3 % of the default's size.
TABLE_ROW_GROUP_ROWS = 65_536


class WarehouseError(RuntimeError):
    pass


class WarehouseLocked(WarehouseError):
    pass


@dataclass(frozen=True, kw_only=True)
class LoadRecord:
    """One row of ``amplitude._loads``: the latest load of an upload hour."""

    upload_hour: datetime
    archive_members: int
    bytes_downloaded: int
    request_window: str
    window_requests: int
    fetch_seconds: float
    # Filled in by Warehouse.replace_hour:
    rows: int = 0
    load_seconds: float = 0.0
    loaded_at: datetime | None = None


_LOADS_COLUMNS = (  # the ledger's column order, fixed since its first version
    ("upload_hour", "TIMESTAMPTZ PRIMARY KEY"), ("rows", "BIGINT"), ("archive_members", "INTEGER"),
    ("bytes_downloaded", "BIGINT"), ("request_window", "VARCHAR"), ("window_requests", "INTEGER"),
    ("fetch_seconds", "DOUBLE"), ("load_seconds", "DOUBLE"), ("loaded_at", "TIMESTAMPTZ"),
)
_LOADS_PARAMETERS = ", ".join("?" * len(_LOADS_COLUMNS))


class Warehouse:
    def __init__(self, path: Path, *, lock_timeout_seconds: float = 300.0,
                 memory_limit: str = "384MB", threads: int = 2,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = Path(path)
        self.lock_timeout_seconds = lock_timeout_seconds
        # Insertion order is meaningless here (rows are found by hour) and keeping it more than
        # doubles the load time of a large hour.
        self._config = {"memory_limit": memory_limit, "threads": threads,
                        "preserve_insertion_order": False,
                        # beside the file, as for a file opened directly, not in ./.tmp
                        "temp_directory": f"{self.path}.tmp"}
        self._instance = ":memory:warehouse-" + hashlib.sha256(
            str(self.path.resolve()).encode()).hexdigest()[:16]
        self._sleep = sleep

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
            con.execute(f"ATTACH IF NOT EXISTS {sql.literal(str(self.path))} AS warehouse "
                        f"(ROW_GROUP_SIZE {TABLE_ROW_GROUP_ROWS})")
            con.execute("USE warehouse")
        except BaseException:
            con.close()
            raise
        return con

    def _open_with_retry(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._open()
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise
                elapsed = time.monotonic() - started
                if elapsed >= self.lock_timeout_seconds:
                    holder = str(error).split("\n")[0]
                    raise WarehouseLocked(
                        f"{self.path} stayed locked by another process for {elapsed:.0f} s "
                        f"({holder}). Close read-write sessions on it; analysts should query a "
                        "read-only connection or the Parquet lake (README, 'Reading while loads "
                        "run')"
                    ) from error
                wait = min(random.uniform(0.5, 1.5) * min(2 ** attempt * 0.1, 10.0),
                           self.lock_timeout_seconds - elapsed)
                log.info("warehouse %s is locked; retrying in %.1f s", self.path, wait)
                self._sleep(max(wait, 0.05))

    def _ensure_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE SCHEMA IF NOT EXISTS amplitude")
        con.execute(f"CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (\n    {duckdb_table_columns()}\n)")
        con.execute(f"CREATE TABLE IF NOT EXISTS {LOADS_TABLE} ("
                    + ", ".join(f"{name} {sql_type}" for name, sql_type in _LOADS_COLUMNS) + ")")
        found = [row[0] for row in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'amplitude' AND table_name = 'events' ORDER BY ordinal_position"
        ).fetchall()]
        expected = [c.name for c in EVENT_COLUMNS]
        if found != expected:
            missing = sorted(set(expected) - set(found))
            unknown = sorted(set(found) - set(expected))
            raise WarehouseError(
                f"{EVENTS_TABLE} in {self.path} has a different layout than this version writes "
                f"(missing {missing}, unexpected {unknown}); migrate or rebuild it from the lake"
            )

    def replace_hour(self, con: duckdb.DuckDBPyConnection, parquet: Path,
                     record: LoadRecord) -> LoadRecord:
        """Swap one hour in; return its ledger row as written."""
        hour = record.upload_hour
        started = time.monotonic()
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DELETE FROM {EVENTS_TABLE} WHERE _upload_hour = ?", [hour])
            in_file = con.execute("SELECT count(*) FROM read_parquet(?, hive_partitioning = false)",
                                  [str(parquet)]).fetchone()[0]
            inserted = con.execute(INSERT_HOUR, [str(parquet), hour]).fetchone()[0]
            if inserted != in_file:
                raise WarehouseError(
                    f"upload hour {hour:%Y-%m-%dT%H}: {parquet} holds {in_file} rows, "
                    f"only {inserted} of them for this hour"
                )
            record = replace(record, rows=inserted, load_seconds=time.monotonic() - started,
                             loaded_at=datetime.now(UTC))
            con.execute(f"INSERT OR REPLACE INTO {LOADS_TABLE} VALUES ({_LOADS_PARAMETERS})",
                        [getattr(record, name) for name, _ in _LOADS_COLUMNS])
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # keep the original error, not the rollback's
                con.execute("ROLLBACK")
            raise
        return record
