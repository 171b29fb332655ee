"""Rebuild the DuckDB warehouse from the Parquet lake: ``python -m pipeline.rebuild``.

The lake holds every loaded hour as a typed Parquet file, so the warehouse can always be rebuilt
from it: after a DuckDB downgrade left a file that this DuckDB cannot read, or after damage. The
new file is built beside the old one and swapped in only when every hour has loaded, so a failed
rebuild leaves the old file where it was; the old file is moved to ``<path>.old-<time>`` and
never deleted. Each hour goes through ``Warehouse.replace_hour`` with the ledger row that the
asset writes (from the hour's landing manifest), so a rebuilt warehouse equals a loaded one.
No Dagster here: the command must work when the code location cannot load.

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
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipeline.amplitude.landing import AmplitudeLake as Lake
from pipeline.amplitude.rejects import rejects_for
from pipeline.lake import MANIFEST, LakeError
from pipeline.object_storage import is_remote
from pipeline.warehouse import LoadRecord, Warehouse, WarehouseError

REBUILT_WINDOW = "rebuilt"  # request_window of a ledger row whose landing manifest is gone


class RebuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class RebuildResult:
    hours: int
    rows: int
    seconds: float
    moved_to: Path | None  # where the previous file went, if there was one
    unloaded: int  # landed hours without a Parquet file, not in the warehouse


def lake_hours(lake: Lake) -> list[datetime]:
    """Every upload hour with a Parquet file in the lake (``Lake.events_file``), oldest first."""
    hours = []
    for path in sorted((lake.local(lake.root) / "amplitude" / "events").glob(
            "upload_date=*/upload_hour=*/events.parquet")):
        try:
            hour = datetime.strptime(f"{path.parent.parent.name} {path.parent.name}",
                                     "upload_date=%Y-%m-%d upload_hour=%H").replace(tzinfo=UTC)
        except ValueError:
            raise RebuildError(f"{path} is not where the lake keeps an hour's file "
                               "(upload_date=YYYY-MM-DD/upload_hour=HH); move it away") from None
        if lake.events_file(hour) != path:
            raise RebuildError(f"{path} is not where the lake keeps an hour's file; move it away")
        hours.append(hour)
    return hours


def record_for(lake: Lake, hour: datetime) -> LoadRecord:
    """The ledger row the asset would write; zeros when the landing manifest is gone."""
    try:
        return LoadRecord.from_landing(lake.landed(hour))
    except LakeError:
        return LoadRecord(upload_hour=hour, archive_members=0, bytes_downloaded=0,
                          request_window=REBUILT_WINDOW, window_requests=0, fetch_seconds=0.0)


def _unloaded(lake: Lake, hours: Sequence[datetime]) -> int:
    landed = (lake.local(lake.root) / "landing" / "amplitude" / "export").glob(
        f"upload_date=*/upload_hour=*/{MANIFEST}")
    return sum(1 for _ in landed) - sum(1 for h in hours if
                                         lake.exists(lake.landing_dir(h) / MANIFEST))


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


def _load(warehouse: Warehouse, con: duckdb.DuckDBPyConnection, lake: Lake, hour: datetime,
          path: Path) -> int:
    place, record = lake.events_file(hour), record_for(lake, hour)
    assert place is not None  # lake_hours() found it
    parquet = lake.url(place)
    version = record.landing_version
    quarantined = rejects_for(lake, hour, version) if version else None
    try:
        return warehouse.replace_hour(con, parquet, record, rejects=quarantined).rows
    except (WarehouseError, duckdb.Error) as error:
        raise RebuildError(f"upload hour {hour:%Y-%m-%dT%H} ({parquet}) did not load, so {path} "
                           f"was left as it was: {error}") from error


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


def rebuild(warehouse_path: Path, lake_root: Path, *,
            say: Callable[[str], None] = print) -> RebuildResult:
    """Load every hour of the lake into a new warehouse file, then swap it in for the old one."""
    started = time.monotonic()
    path = Path(warehouse_path)
    if is_remote(lake_root):
        raise RebuildError(f"{lake_root}: a rebuild reads a local lake; on object storage, use "
                           "a DuckLake warehouse (WAREHOUSE_CATALOG), whose catalog is the "
                           "record of what is loaded")
    lake = Lake(Path(lake_root))
    if not Path(lake_root).is_dir():
        raise RebuildError(f"the lake {lake.root} does not exist (pass its root, LAKE_ROOT)")
    hours = lake_hours(lake)
    _refuse_if_open(path)
    building = path.with_name(f".{path.name}.rebuilding")
    _discard(building)  # a killed rebuild's leftover
    total_rows = 0
    try:
        warehouse = Warehouse(building)
        with warehouse.connect() as con:
            for day, day_hours in itertools.groupby(hours, key=lambda h: h.date()):
                day_started, day_rows, count = time.monotonic(), 0, 0
                for hour in day_hours:
                    day_rows += _load(warehouse, con, lake, hour, path)
                    count += 1
                total_rows += day_rows
                say(f"{day}  {count:2d} hours  {day_rows:>12,} rows  "
                    f"{time.monotonic() - day_started:6.1f} s")
            con.execute("CHECKPOINT")
        _refuse_if_open(path)
    except BaseException:
        _discard(building)
        raise
    moved_to = _swap(building, path)
    return RebuildResult(hours=len(hours), rows=total_rows, seconds=time.monotonic() - started,
                         moved_to=moved_to, unloaded=_unloaded(lake, hours))


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
    print(f"rebuilt {args.warehouse} from {args.lake}: {result.hours} hours, {result.rows:,} rows "
          f"in {result.seconds:.1f} s")
    if result.moved_to is not None:
        print(f"the previous file is at {result.moved_to}")
    if result.unloaded:
        print(f"{result.unloaded} landed hour(s) have no Parquet file and were not loaded: "
              "materialize amplitude/events_parquet for them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
