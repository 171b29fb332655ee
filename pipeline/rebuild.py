"""Rebuild the DuckDB warehouse from the Parquet lake: ``python -m pipeline.rebuild``.

The lake holds every loaded partition as a typed Parquet file, so the warehouse can always be
rebuilt from it: after a DuckDB downgrade left a file that this DuckDB cannot read, or after
damage. Every project the lake holds is rebuilt (``pipeline.source.projects_in_lake``), each
partition through its source's own load with the ledger row a load writes (from the partition's
landing manifest), so a rebuilt warehouse equals a loaded one. The new file is built beside the
old one and swapped in only when every partition has loaded, so a failed rebuild leaves the old
file where it was; the old file is moved to ``<path>.old-<time>`` and never deleted. No Dagster
here: the command must work when the code location cannot load.

    python -m pipeline.rebuild --warehouse data/warehouse.duckdb --lake data/lake [--yes]
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from pipeline.lake import Lake, LakeError
from pipeline.object_storage import is_remote
from pipeline.source import Partition, Project, projects_in_lake, source
from pipeline.warehouse import Warehouse, WarehouseError


class RebuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class RebuildResult:
    partitions: int  # loaded, every project's
    rows: int
    seconds: float
    moved_to: Path | None  # where the previous file went, if there was one
    unloaded: int  # landed partitions without a Parquet file, not in the warehouse


def _unloaded(lake: Lake, project: Project, loaded: Sequence[Partition]) -> int:
    """Landed partitions of the project that had no Parquet file."""
    return len(set(source(project.source).landed_partitions(lake, project)) - set(loaded))


def _companions(path: Path) -> Iterator[Path]:
    """The database file and its write-ahead log, which must move together."""
    yield path
    yield path.with_name(path.name + ".wal")


def _refuse_if_open(path: Path) -> None:
    """DuckDB holds an fcntl lock on an open file; moving it then would lose the holder's writes."""
    if not path.exists():
        return
    with open(path, "rb+") as file:
        try:
            fcntl.lockf(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RebuildError(f"{path} is open in another process; close it (DuckDB "
                               "sessions, the Dagster run) and run the rebuild again") from None
        fcntl.lockf(file, fcntl.LOCK_UN)


def _aside(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in itertools.count():
        target = path.with_name(f"{path.name}.old-{stamp}" + (f"-{n}" if n else ""))
        if not any(p.exists() for p in _companions(target)):
            return target
    raise AssertionError("unreachable")


def _discard(path: Path) -> None:
    """Remove a half-built file of this command (never the warehouse being replaced)."""
    for companion in _companions(path):
        companion.unlink(missing_ok=True)


def _swap(building: Path, path: Path) -> Path | None:
    """Move the old file (and its WAL) aside, then the new one into its place."""
    moved_to = _aside(path) if path.exists() else None
    try:
        if moved_to is not None:
            for old, aside in zip(_companions(path), _companions(moved_to), strict=True):
                if old.exists():
                    os.replace(old, aside)
        for new, final in zip(_companions(building), _companions(path), strict=True):
            if new.exists():
                os.replace(new, final)
    except OSError as error:
        raise RebuildError(f"moving the rebuilt file {building} to {path} failed ({error}); the "
                           f"previous file is at {moved_to or path}: move {building} to {path} "
                           "by hand") from error
    return moved_to


def _day(partition: Partition) -> date:
    return partition.date() if isinstance(partition, datetime) else partition


def _label(partition: Partition) -> str:
    if isinstance(partition, datetime):
        return f"upload hour {partition:%Y-%m-%dT%H}"
    return f"day {partition}"


def _load(con: duckdb.DuckDBPyConnection, lake: Lake, project: Project, partition: Partition,
          path: Path) -> int:
    try:
        return source(project.source).reload(con, lake, project, partition)
    except (WarehouseError, LakeError, duckdb.Error, RuntimeError) as error:
        raise RebuildError(f"{_label(partition)} of {project.namespace} did not load, so {path} "
                           f"was left as it was: {error}") from error


def rebuild(warehouse_path: Path, lake_root: Path, *,
            say: Callable[[str], None] = print) -> RebuildResult:
    """Load every partition of the lake into a new warehouse file, then swap it in for the old
    one."""
    started = time.monotonic()
    path = Path(warehouse_path)
    if is_remote(lake_root):
        raise RebuildError(f"{lake_root}: a rebuild reads a local lake; on object storage, use "
                           "a DuckLake warehouse (WAREHOUSE_CATALOG), whose catalog is the "
                           "record of what is loaded")
    if not Path(lake_root).is_dir():
        raise RebuildError(f"the lake {lake_root} does not exist (pass its root, LAKE_ROOT)")
    lake = Lake(Path(lake_root))
    projects = projects_in_lake(lake)
    try:
        work = {p: source(p.source).lake_partitions(lake, p) for p in projects}
    except LakeError as error:
        raise RebuildError(str(error)) from error
    _refuse_if_open(path)
    building = path.with_name(f".{path.name}.rebuilding")
    _discard(building)  # a killed rebuild's leftover
    total_rows = total = unloaded = 0
    try:
        warehouse = Warehouse(building, projects=projects)
        with warehouse.connect() as con:
            for project, partitions in work.items():
                for day, group in itertools.groupby(partitions, key=_day):
                    day_started, day_rows, count = time.monotonic(), 0, 0
                    for partition in group:
                        day_rows += _load(con, lake, project, partition, path)
                        count += 1
                    total_rows, total = total_rows + day_rows, total + count
                    say(f"{project.namespace:<12} {day}  {count:2d} partition(s)  "
                        f"{day_rows:>12,} rows  {time.monotonic() - day_started:6.1f} s")
                unloaded += _unloaded(lake, project, partitions)
            con.execute("CHECKPOINT")
        _refuse_if_open(path)
    except BaseException:
        _discard(building)
        raise
    moved_to = _swap(building, path)
    return RebuildResult(partitions=total, rows=total_rows, seconds=time.monotonic() - started,
                         moved_to=moved_to, unloaded=unloaded)


def _confirmed(path: Path, lake_root: Path, yes: bool) -> bool:
    if yes or not path.exists():
        return True
    if not sys.stdin.isatty():
        raise RebuildError(f"{path} exists; pass --yes to move it aside and rebuild it")
    answer = input(f"Move {path} aside to {path.name}.old-<time> and rebuild it from "
                   f"{lake_root}? [y/N] ")
    return answer.strip().lower() in {"y", "yes"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.rebuild",
        description="Rebuild the DuckDB warehouse from the Parquet lake. The existing file is "
        "moved to <path>.old-<time>, never deleted, once the new one is complete.")
    parser.add_argument("--warehouse", type=Path, required=True,
                        help="the warehouse file (WAREHOUSE_PATH)")
    parser.add_argument("--lake", type=Path, required=True, help="the lake's root (LAKE_ROOT)")
    parser.add_argument("--yes", action="store_true",
                        help="do not ask before moving an existing warehouse aside")
    args = parser.parse_args(argv)
    try:
        if not _confirmed(args.warehouse, args.lake, args.yes):
            print("nothing done", file=sys.stderr)
            return 1
        result = rebuild(args.warehouse, args.lake)
    except (RebuildError, WarehouseError, LakeError, OSError, duckdb.Error) as error:
        print(f"rebuild failed: {error}", file=sys.stderr)
        return 1
    print(f"rebuilt {args.warehouse} from {args.lake}: {result.partitions} partitions, "
          f"{result.rows:,} rows in {result.seconds:.1f} s")
    if result.moved_to is not None:
        print(f"the previous file is at {result.moved_to}")
    if result.unloaded:
        print(f"{result.unloaded} landed partition(s) have no Parquet file and were not loaded: "
              "materialize their events_parquet asset")
    return 0


if __name__ == "__main__":
    sys.exit(main())
