"""Forgetting users: their rows and lines out of the warehouse, the Parquet lake and the landing.

    python -m pipeline.forget --warehouse data/warehouse.duckdb --lake data/lake \\
        --ids-file request.txt   # or --amplitude-id N / --user-id TEXT / --distinct-id TEXT

or from Python, :func:`forget` with :class:`Ids`. Every project of the lake whose source knows a
kind of id asked for is visited through the source contract (``Source.user_data``,
``contract.py``): the users' rows leave each family's warehouse table (and its quarantine), the
Parquet files of the partitions that held them are rewritten, those partitions are landed again
without their lines (a new landing version each, superseded ones deleted at once), the ledgers'
row counts are corrected, and what was removed is recorded, as counts, in each visited project's
``_forget_requests``. The ids themselves go nowhere: not into logs, errors, the audit rows or any
file (unless the operator asks for a suppression list, which is a file of ids by design).

docs/forgetting-users.md says what it touches, the guarantees, and what the vendors must be asked
to do on their side (a later re-fetch brings the users back otherwise).

The package: ``ids`` (reading the ids, matching values), ``matching`` (which landed lines are
theirs), ``contract`` (what a source tells it), ``landing`` (landing versions without the users),
``parquet`` (Parquet files without them, the ids as DuckDB tables), ``audit`` (the warehouse's
side), ``discover`` (where they are), ``run`` (the order of it all), ``compact`` (the warehouse
copied into a fresh file, so that deleted rows leave no bytes in it).
"""

from pipeline.forget.audit import ForgetReport
from pipeline.forget.compact import CompactError, compact
from pipeline.forget.ids import Ids, IdsError
from pipeline.forget.run import SCANS, ForgetError, forget

__all__ = ["SCANS", "CompactError", "ForgetError", "ForgetReport", "Ids", "IdsError", "compact",
           "forget"]
