"""Forgetting users: their rows and lines out of the warehouse, the Parquet lake and the landing.

    python -m pipeline.forget --warehouse data/warehouse.duckdb --lake data/lake \\
        --ids-file request.txt          # or --amplitude-id N ... / --user-id TEXT ...

or from Python, :func:`forget` with :class:`Ids`. It removes the users' rows from
``amplitude.events``, ``amplitude.cohort_members`` and ``amplitude._rejects``, rewrites the
Parquet files of the upload hours and cohort days that held them, lands those partitions again
without their lines (a new landing version each, superseded ones deleted at once), corrects the
ledgers' row counts, and records what it removed, as counts, in ``amplitude._forget_requests``.
The ids themselves go nowhere: not into logs, errors, the audit row or any file (unless the
operator asks for a suppression list, which is a file of ids by design).

docs/forgetting-users.md says what it touches, the guarantees, and what Amplitude must be asked
to do on its side (a later re-fetch from Amplitude brings the users back otherwise).

The package: ``ids`` (reading and matching the ids), ``landing`` (landing versions without the
users), ``parquet`` (Parquet files without them, the ids as DuckDB tables), ``audit`` (the
warehouse's side), ``run`` (the order of it all), ``compact`` (the warehouse copied into a fresh
file, so that deleted rows leave no bytes in it).
"""

from pipeline.forget.audit import ForgetReport
from pipeline.forget.compact import CompactError, compact
from pipeline.forget.ids import Ids, IdsError
from pipeline.forget.run import SCANS, ForgetError, forget

__all__ = ["SCANS", "CompactError", "ForgetError", "ForgetReport", "Ids", "IdsError", "compact",
           "forget"]
