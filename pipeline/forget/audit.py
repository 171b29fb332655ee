"""The warehouse's side of forgetting: where the users' rows are, their removal, and the audit row.

``amplitude._forget_requests`` (schema version 5) gets one row per request, written when it
starts (``running``) and replaced in the transaction that removes the warehouse's rows
(``finished``), so the row never claims a removal the warehouse does not show. It holds counts
only: no id, no hash of one (a hash of an id is as much an identifier as the id).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import astuple, dataclass, fields
from datetime import UTC, date, datetime

import duckdb

from pipeline.forget.parquet import MATCH, TEXT_MATCH

AUDIT_TABLE = "amplitude._forget_requests"
EVENTS, COHORT_MEMBERS = "amplitude.events", "amplitude.cohort_members"
LOADS, SNAPSHOT_LOADS, REJECTS = ("amplitude._loads", "amplitude._snapshot_loads",
                                  "amplitude._rejects")

RUNNING, FINISHED, INCOMPLETE, FAILED = "running", "finished", "incomplete", "failed"


@dataclass
class ForgetReport:
    """What one request did: the audit row, column for column."""

    request_id: str
    requested_at: datetime
    finished_at: datetime | None = None
    status: str = RUNNING  # running (or killed), finished, incomplete (rows came back), failed
    amplitude_id_count: int = 0
    user_id_count: int = 0
    scan: str = "warehouse"  # what was searched besides the warehouse: warehouse, lake, landing
    hours_rewritten: int = 0  # upload hours whose landing or Parquet file was rewritten
    landing_versions_written: int = 0  # new landing versions, hours and cohort days
    landing_versions_removed: int = 0  # superseded landing versions deleted, idem
    landing_lines_removed: int = 0  # export lines
    parquet_files_rewritten: int = 0  # hours' and days' files
    parquet_rows_removed: int = 0  # rows of the hours' event files
    event_rows_removed: int = 0  # amplitude.events
    cohort_days_rewritten: int = 0  # days whose member landing or Parquet file was rewritten
    cohort_landing_rows_removed: int = 0  # cohort file records
    cohort_parquet_rows_removed: int = 0
    cohort_member_rows_removed: int = 0  # amplitude.cohort_members
    reject_rows_removed: int = 0  # amplitude._rejects: quarantined lines that spell an id

    def removed_anything(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self)
                   if f.name.endswith(("_removed", "_rewritten", "_written")))


_COLUMNS = [f.name for f in fields(ForgetReport)]
_WRITE = (f"INSERT OR REPLACE INTO {AUDIT_TABLE} ({', '.join(_COLUMNS)}) "
          f"VALUES ({', '.join('?' * len(_COLUMNS))})")


def record(con: duckdb.DuckDBPyConnection, report: ForgetReport) -> None:
    con.execute(_WRITE, list(astuple(report)))


def mark(con: duckdb.DuckDBPyConnection, report: ForgetReport, status: str) -> None:
    """Best effort, outside any transaction: say how a request ended when it did not finish."""
    report.status = status
    with contextlib.suppress(duckdb.Error):
        record(con, report)


# ---- where the warehouse holds the users ----

def hours_holding(con: duckdb.DuckDBPyConnection) -> set[datetime]:
    """Upload hours with a row of the users in amplitude.events, or a quarantined line that
    spells one of their ids in amplitude._rejects."""
    rows = con.execute(
        f"SELECT DISTINCT _upload_hour FROM {EVENTS} WHERE {MATCH} UNION "
        f"SELECT DISTINCT upload_hour FROM {REJECTS} WHERE {TEXT_MATCH.format(column='line')}"
    ).fetchall()
    return {row[0] for row in rows if row[0] is not None}


def days_holding(con: duckdb.DuckDBPyConnection) -> set[date]:
    rows = con.execute(f"SELECT DISTINCT snapshot_date FROM {COHORT_MEMBERS} WHERE {MATCH}"
                       ).fetchall()
    return {row[0] for row in rows}


Loaded = tuple[str | None, datetime | None]  # the ledger's landing version and fetch time


def loaded_hours(con: duckdb.DuckDBPyConnection) -> dict[datetime, Loaded]:
    """Each loaded hour's landing version and fetch time, as the ledger names them (None: not
    recorded)."""
    return {row[0]: (row[1], row[2]) for row in con.execute(
        f"SELECT upload_hour, landing_version, fetched_at FROM {LOADS}").fetchall()}


def loaded_days(con: duckdb.DuckDBPyConnection) -> dict[date, Loaded]:
    return {row[0]: (row[1], row[2]) for row in con.execute(
        f"SELECT snapshot_date, landing_version, fetched_at FROM {SNAPSHOT_LOADS} "
        "WHERE table_name = 'cohort_members'").fetchall()}


def _count(result: duckdb.DuckDBPyConnection) -> int:
    row = result.fetchone()
    return int(row[0]) if row else 0


def remove(con: duckdb.DuckDBPyConnection, report: ForgetReport, *,
           hour_versions: Mapping[str, str], day_versions: Mapping[str, str],
           status: str = FINISHED) -> None:
    """Delete the users' rows from every table in one transaction, with the audit row.

    The ledgers keep describing what is loaded: an hour's (or a day's) row count drops by the
    rows removed from it, and a ledger row that named a landing version this request replaced
    names its replacement (the loaded rows are now exactly that version's).
    """
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE forget_per_hour AS SELECT _upload_hour AS "
                    f"hour, count(*) AS n FROM {EVENTS} WHERE {MATCH} GROUP BY ALL")
        report.event_rows_removed = _count(con.execute(f"DELETE FROM {EVENTS} WHERE {MATCH}"))
        con.execute(f"UPDATE {LOADS} AS l SET rows = greatest(l.rows - h.n, 0) "
                    "FROM forget_per_hour AS h WHERE l.upload_hour = h.hour")
        con.execute("CREATE OR REPLACE TEMP TABLE forget_per_day AS SELECT snapshot_date AS "
                    f"day, count(*) AS n FROM {COHORT_MEMBERS} WHERE {MATCH} GROUP BY ALL")
        report.cohort_member_rows_removed = _count(con.execute(
            f"DELETE FROM {COHORT_MEMBERS} WHERE {MATCH}"))
        con.execute(f"UPDATE {SNAPSHOT_LOADS} AS l SET rows = greatest(l.rows - d.n, 0) "
                    "FROM forget_per_day AS d WHERE l.table_name = 'cohort_members' AND "
                    "l.snapshot_date = d.day")
        for old, new in hour_versions.items():
            con.execute(f"UPDATE {LOADS} SET landing_version = ? WHERE landing_version = ?",
                        [new, old])
        for old, new in day_versions.items():
            con.execute(f"UPDATE {SNAPSHOT_LOADS} SET landing_version = ? WHERE table_name = "
                        "'cohort_members' AND landing_version = ?", [new, old])
        report.reject_rows_removed = _count(con.execute(
            f"DELETE FROM {REJECTS} WHERE {TEXT_MATCH.format(column='line')}"))
        report.finished_at = datetime.now(UTC)
        report.status = status
        record(con, report)
        con.execute("COMMIT")
    except BaseException:
        report.status, report.finished_at = RUNNING, None
        with contextlib.suppress(duckdb.Error):  # keep the original error, not the rollback's
            con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT")  # the deletes into the file itself, the write-ahead log emptied
