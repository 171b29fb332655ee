"""The lake's layout and the two ways its files are replaced without a torn state.

Every source keeps its raw answers under ``landing/<source>/<dataset>/`` and its typed tables
under ``<source>/<table>/``, partitioned hive-style (``upload_date=D/upload_hour=HH`` for hourly
data, ``snapshot_date=D`` for daily snapshots), so DuckDB, pyarrow and analysts' tools read any
table with one glob.

- A table's Parquet file is replaced with one ``os.replace`` of a staged file beside it.
- A landing, whose file count varies, is written to a new, never modified version folder, and the
  partition's ``_manifest.json`` is then atomically pointed at it: a reader resolves the manifest
  once and reads that version, so a concurrent re-landing never pulls files from under it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

from pipeline import leftovers

MANIFEST = "_manifest.json"


class LakeError(RuntimeError):
    pass


def hour_partition(upload_hour: datetime) -> str:
    return f"upload_date={upload_hour:%Y-%m-%d}/upload_hour={upload_hour:%H}"


def day_partition(day: date, key: str = "snapshot_date") -> str:
    return f"{key}={day:%Y-%m-%d}"


class Lake:
    def __init__(self, root: Path, *, superseded_grace_seconds: float = 6 * 3600) -> None:
        self.root = Path(root)
        self.superseded_grace_seconds = superseded_grace_seconds

    def landing_folder(self, source: str, dataset: str, partition: str) -> Path:
        return self.root / "landing" / source / dataset / partition

    def table_file(self, source: str, table: str, partition: str) -> Path:
        return self.root / source / table / partition / f"{table.rsplit('/', 1)[-1]}.parquet"

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A private folder on the lake's file system, removed afterwards whatever happens.

        Folders a crashed run left behind (a window's archive can be gigabytes) are swept first.
        """
        parent = self.root / ".scratch"
        parent.mkdir(parents=True, exist_ok=True)
        leftovers.sweep(parent.iterdir())
        path = parent / f"{uuid.uuid4().hex}{leftovers.owner_mark()}"
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @contextmanager
    def new_version(self, folder: Path) -> Iterator[tuple[str, Path]]:
        """A staging folder for a new landing version; on success it becomes ``folder/<version>``.

        The caller writes its files into the staging folder, then calls :meth:`commit` with the
        manifest text once the block has ended.
        """
        folder.mkdir(parents=True, exist_ok=True)
        version = f"v{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        staged = folder / f".staging-{version}{leftovers.owner_mark()}"
        staged.mkdir()
        try:
            yield version, staged
            os.rename(staged, folder / version)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def commit(self, folder: Path, version: str, manifest: str) -> None:
        """Point the partition at ``version`` and drop versions past their grace period."""
        write_atomically(folder / MANIFEST, manifest)
        self._prune(folder, keep=version)

    def _prune(self, folder: Path, keep: str) -> None:
        """Drop versions superseded longer ago than any reader of them can still be running."""
        versions = sorted(p.name for p in folder.iterdir() if p.name.startswith("v"))
        now = time.time_ns()
        for name, successor in itertools.pairwise(versions):
            superseded_at = int(successor[1:].split("-")[0])
            if name != keep and now - superseded_at > self.superseded_grace_seconds * 1e9:
                shutil.rmtree(folder / name, ignore_errors=True)

    def tidy(self, source: str, dataset: str) -> int:
        """Housekeeping that must not wait for a partition to be landed again: prune every
        partition's versions past their grace period, and sweep the staging folders and manifest
        temporaries a killed run left (older than ``leftovers.MAX_AGE_SECONDS``). Returns the
        partitions looked at."""
        base = self.root / "landing" / source / dataset
        # A partition whose first landing was killed has a staging folder and no manifest yet.
        folders = {p.parent for p in base.glob(f"**/{MANIFEST}")}
        folders |= {p.parent for p in base.glob("**/.staging-*")}
        for folder in sorted(folders):
            manifest = folder / MANIFEST
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                self._prune(folder, keep=str(json.loads(manifest.read_text())["version"]))
            leftovers.sweep([*folder.glob(".staging-*"), *folder.glob(".*.tmp")])
        return len(folders)

    @staticmethod
    def manifest(folder: Path) -> str | None:
        """The partition's current manifest, or None if it was never landed."""
        try:
            return (folder / MANIFEST).read_text()
        except FileNotFoundError:
            return None


def write_atomically(path: Path, text: str) -> None:
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}{leftovers.owner_mark()}.tmp")
    staged.write_text(text)
    os.replace(staged, path)
