"""``python -m pipeline.forget``: forget users, from the command line (docs/forgetting-users.md).

    python -m pipeline.forget --warehouse data/warehouse.duckdb --lake data/lake \\
        --ids-file request.txt [--scan-lake | --scan-landing] [--suppression-list FILE]

Ids on the command line (``--amplitude-id``, ``--user-id``, ``--distinct-id``) end up in the
shell's history and in the process list; an ids file (``-`` for standard input) does not.
Nothing this command prints quotes an id: errors are scrubbed, and argument errors never echo
the arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import duckdb

from pipeline.forget.audit import ForgetReport
from pipeline.forget.compact import CompactError, compact
from pipeline.forget.ids import Ids, IdsError
from pipeline.forget.landing import ForgetLandingError
from pipeline.forget.run import ForgetError, forget
from pipeline.lake import Lake, LakeError
from pipeline.source import ProjectError, projects_in_lake
from pipeline.warehouse import WarehouseError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse quotes the offending argument, which may be an id
        for marker in ("unrecognized arguments:", "invalid choice:", "ambiguous option:"):
            if marker in message:
                message = message.split(marker)[0] + marker.rstrip(":") + " (not shown)"
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m pipeline.forget", description=(
        "Remove users' rows and lines from the warehouse, the Parquet lake and the landing "
        "copies of every project of the lake (Amplitude: events, cohort memberships; "
        "Mixpanel: events), and record what was removed (counts, never ids) in each project's "
        "_forget_requests. Ask the vendors to delete them too: a re-fetch brings back whatever "
        "they still hold."))
    p.add_argument("--warehouse", type=Path, required=True, help="the warehouse file "
                   "(WAREHOUSE_PATH)")
    p.add_argument("--lake", type=Path, required=True, help="the lake's root (LAKE_ROOT)")
    p.add_argument("--amplitude-id", action="extend", nargs="+", default=[], metavar="ID",
                   help="an amplitude_id to forget (repeatable)")
    p.add_argument("--user-id", action="extend", nargs="+", default=[], metavar="ID",
                   help="your own user id (Amplitude's user_id, Mixpanel's $user_id) to forget "
                   "(repeatable)")
    p.add_argument("--distinct-id", action="extend", nargs="+", default=[], metavar="ID",
                   help="a Mixpanel distinct_id to forget (repeatable)")
    p.add_argument("--ids-file", action="append", default=[], metavar="FILE",
                   help="a file of ids, one a line: amplitude_id:<number>, user_id:<text> or "
                   "distinct_id:<text> ('-': standard input)")
    scan = p.add_mutually_exclusive_group()
    scan.add_argument("--scan-lake", dest="scan", action="store_const", const="lake",
                      default="warehouse", help="also check every Parquet file of the lake, "
                      "not only the partitions the warehouse names or cannot vouch for")
    scan.add_argument("--scan-landing", dest="scan", action="store_const", const="landing",
                      help="also read every landing file, superseded versions included (slow)")
    p.add_argument("--suppression-list", type=Path, metavar="FILE",
                   help="once done, add the ids to this ids file (created readable by its "
                   "owner only), to forget them again after a re-fetch")
    p.add_argument("--compact", action="store_true",
                   help="afterwards, copy the warehouse into a fresh file and swap it in: DuckDB "
                   "keeps deleted rows' bytes in the file until it reuses their blocks")
    p.add_argument("--lock-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="how long to wait for the warehouse's lock (default 300)")
    p.add_argument("--quiet", action="store_true", help="print only the result")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    ids = Ids()
    say = (lambda _: None) if args.quiet else print
    try:
        ids = Ids.parse(args.amplitude_id, args.user_id, args.ids_file, args.distinct_id)
        report = forget(args.warehouse, args.lake, ids, scan=args.scan,
                        lock_timeout_seconds=args.lock_timeout, say=say)
        if args.suppression_list is not None:
            added = ids.add_to_file(args.suppression_list)
            say(f"{added} id(s) added to the suppression list {args.suppression_list}")
    except (ForgetError, ForgetLandingError, IdsError, ProjectError, WarehouseError, LakeError,
            OSError, duckdb.Error) as error:
        print(f"forget failed: {ids.scrub(str(error))}", file=sys.stderr)
        return 1
    if args.compact:
        try:
            sizes = compact(args.warehouse, projects=projects_in_lake(Lake(args.lake)),
                            lock_timeout_seconds=args.lock_timeout)
        except (CompactError, WarehouseError, OSError, duckdb.Error) as error:
            print(f"forget request {report.request_id} {report.status}, but compacting the "
                  f"warehouse failed: {ids.scrub(str(error))}", file=sys.stderr)
            return 1
        say(f"warehouse compacted into a fresh file: {sizes.bytes_before:,} -> "
            f"{sizes.bytes_after:,} bytes")
    print(f"forget request {report.request_id} {report.status}: {summary(report)}")
    return 0


def summary(report: ForgetReport) -> str:
    """Each visited project's removals, and where they are recorded."""
    if not report.removed_anything():
        said = "nothing left to remove"
    else:
        said = "; ".join(f"{p.project.namespace}: " + ", ".join(
            f"{n} {column.replace('_', ' ')}" for column, n in p.counts.items() if n)
            for p in report.projects if any(p.counts.values()))
    return f"{said} ({', '.join(p.audit_table for p in report.projects)})"


if __name__ == "__main__":
    sys.exit(main())
