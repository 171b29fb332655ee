"""The warehouse's side of forgetting: where the users' rows are, their removal, and the audit rows.

Every project a request visits gets one row in its own ``<schema>._forget_requests`` (each source
creates the table in its migrations, with ``request_id``, ``requested_at``, ``finished_at``,
``status``, ``scan``, ``<kind>_count`` for each kind of id it knows, and the count columns its
families name), written when the request starts (``running``) and replaced in the transaction
that removes the warehouse's rows (``finished``), so a row never claims a removal the warehouse
does not show. One request id is shared by every project it touched. The rows hold counts only:
no id, no hash of one (a hash of an id is as much an identifier as the id).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from pipeline.forget import parquet
from pipeline.forget.contract import COMMON_COUNTS, UserData
from pipeline.forget.ids import KINDS
from pipeline.source import Partition, Project

AUDIT_TABLE = "_forget_requests"
RUNNING, FINISHED, INCOMPLETE, FAILED = "running", "finished", "incomplete", "failed"
Loaded = tuple[str | None, datetime | None]  # the ledger's landing version and fetch time


def count_columns(families: Sequence[UserData]) -> list[str]:
    """The count columns of a project's audit row."""
    names = list(COMMON_COUNTS)
    for data in families:
        audit = data.audit
        names += [audit.partitions_rewritten, audit.landing_records_removed,
                  audit.parquet_rows_removed, audit.rows_removed]
        if audit.quarantined_removed is not None:
            names.append(audit.quarantined_removed)
    return list(dict.fromkeys(names))


@dataclass
class ProjectReport:
    """What one request did in one project: its audit row's counts."""

    project: Project
    id_counts: dict[str, int]  # by kind: the kinds of id the project's source knows
    counts: dict[str, int]

    @property
    def audit_table(self) -> str:
        return self.project.table(AUDIT_TABLE)

    def add(self, column: str, n: int) -> None:
        self.counts[column] += n


@dataclass
class ForgetReport:
    """What one request did, project by project; the audit rows, column for column."""

    request_id: str
    requested_at: datetime
    scan: str  # what was searched besides the warehouse: warehouse, lake, landing
    projects: list[ProjectReport] = field(default_factory=list)
    finished_at: datetime | None = None
    status: str = RUNNING  # running (or killed), finished, incomplete (rows came back), failed

    def removed_anything(self) -> bool:
        return any(n for p in self.projects for n in p.counts.values())

    def counts(self, namespace: str) -> dict[str, int]:
        """A visited project's counts, by audit column."""
        for project in self.projects:
            if project.project.namespace == namespace:
                return dict(project.counts)
        raise KeyError(f"the request did not visit {namespace}")

    def total(self, column: str) -> int:
        """A count column added up over the projects that have it."""
        return sum(p.counts.get(column, 0) for p in self.projects)

    def row(self, project: ProjectReport) -> dict[str, object]:
        return {"request_id": self.request_id, "requested_at": self.requested_at,
                "finished_at": self.finished_at, "status": self.status, "scan": self.scan,
                **{f"{kind}_count": n for kind, n in project.id_counts.items()},
                **project.counts}


def project_report(project: Project, families: Sequence[UserData],
                   id_counts: dict[str, int]) -> ProjectReport:
    kinds = {kind for data in families for kind in data.kinds}
    return ProjectReport(project, {k: id_counts.get(k, 0) for k in KINDS if k in kinds},
                         dict.fromkeys(count_columns(families), 0))


def record(con: duckdb.DuckDBPyConnection, report: ForgetReport) -> None:
    for project in report.projects:
        row = report.row(project)
        con.execute(f"INSERT OR REPLACE INTO {project.audit_table} ({', '.join(row)}) "
                    f"VALUES ({', '.join('?' * len(row))})", list(row.values()))


def mark(con: duckdb.DuckDBPyConnection, report: ForgetReport, status: str) -> None:
    """Best effort, outside any transaction: say how a request ended when it did not finish."""
    report.status = status
    with contextlib.suppress(duckdb.Error):
        record(con, report)


# ---- where the warehouse holds the users ----

def holding(con: duckdb.DuckDBPyConnection, data: UserData) -> set[Partition]:
    """Partitions with a row of the users in the family's table, or a quarantined line that
    spells one of their ids."""
    query = f"SELECT DISTINCT {data.partition_column} FROM {data.table} WHERE {data.predicate}"
    if data.quarantine is not None:
        q = data.quarantine
        query += (f" UNION SELECT DISTINCT {q.partition_column} FROM {q.table} WHERE "
                  f"{parquet.spells(q.line_column, data.kinds)}")
    return {row[0] for row in con.execute(query).fetchall() if row[0] is not None}


def loaded(con: duckdb.DuckDBPyConnection, data: UserData) -> dict[Partition, Loaded]:
    """Each loaded partition's landing version and fetch time, as the ledger names them (None:
    not recorded)."""
    ledger = data.ledger
    return {row[0]: (row[1], row[2]) for row in con.execute(
        f"SELECT {ledger.key}, landing_version, fetched_at FROM {ledger.table} "
        f"WHERE {ledger.where}").fetchall()}


def _count(result: duckdb.DuckDBPyConnection) -> int:
    row = result.fetchone()
    return int(row[0]) if row else 0


def _remove_family(con: duckdb.DuckDBPyConnection, data: UserData, project: ProjectReport,
                   versions: dict[str, str]) -> None:
    ledger, match = data.ledger, data.predicate
    con.execute(f"CREATE OR REPLACE TEMP TABLE forget_per_partition AS SELECT "
                f"{data.partition_column} AS key, count(*) AS n FROM {data.table} "
                f"WHERE {match} GROUP BY ALL")
    project.add(data.audit.rows_removed,
                _count(con.execute(f"DELETE FROM {data.table} WHERE {match}")))
    mine = f"l.{ledger.key} = h.key AND ({ledger.where})"
    con.execute(f"UPDATE {ledger.table} AS l SET {ledger.rows} = greatest(l.{ledger.rows} - "
                f"h.n, 0) FROM forget_per_partition AS h WHERE {mine}")
    if ledger.recount:
        sets = ", ".join(f"{column} = ({expression})"
                         for column, expression in ledger.recount.items())
        con.execute(f"UPDATE {ledger.table} AS l SET {sets} FROM forget_per_partition AS h "
                    f"WHERE {mine}")
    for old, new in versions.items():
        con.execute(f"UPDATE {ledger.table} SET landing_version = ? WHERE landing_version = ? "
                    f"AND ({ledger.where})", [new, old])
    if data.quarantine is not None and data.audit.quarantined_removed is not None:
        q = data.quarantine
        project.add(data.audit.quarantined_removed, _count(con.execute(
            f"DELETE FROM {q.table} WHERE {parquet.spells(q.line_column, data.kinds)}")))


def remove(con: duckdb.DuckDBPyConnection, report: ForgetReport,
           families: Sequence[tuple[UserData, ProjectReport, dict[str, str]]], *,
           status: str = FINISHED) -> None:
    """Delete the users' rows from every family's table in one transaction, with the audit rows.

    The ledgers keep describing what is loaded: a partition's row count drops by the rows
    removed from it (and what the family recounts is counted again), and a ledger row that
    named a landing version this request replaced names its replacement (``versions``: the
    loaded rows are now exactly that version's).
    """
    before = [dict(p.counts) for p in report.projects]
    con.execute("BEGIN TRANSACTION")
    try:
        for data, project, versions in families:
            _remove_family(con, data, project, versions)
        report.finished_at = datetime.now(UTC)
        report.status = status
        record(con, report)
        con.execute("COMMIT")
    except BaseException:
        report.status, report.finished_at = RUNNING, None
        for project, counts in zip(report.projects, before, strict=True):
            project.counts = counts
        with contextlib.suppress(duckdb.Error):  # keep the original error, not the rollback's
            con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT")  # the deletes into the file itself, the write-ahead log emptied
