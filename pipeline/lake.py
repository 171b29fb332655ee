"""The lake's layout, on local disk or object storage, and how its files are replaced untorn.

Every source keeps its raw answers under ``landing/<source>/<dataset>/`` and its typed tables
under ``<source>/<table>/``, partitioned hive-style (``upload_date=D/upload_hour=HH`` for hourly
data, ``snapshot_date=D`` for daily snapshots), so DuckDB, pyarrow and analysts' tools read any
table with one glob.

- A landing, whose file count varies, is written to a new, never modified version folder, and the
  partition's ``_manifest.json`` is then pointed at it: a reader resolves the manifest once and
  reads that version, so a concurrent re-landing never pulls files from under it.
- A table's Parquet file, on local disk, is replaced with one ``os.replace`` of a staged file
  beside it, under a fixed name (``events.parquet``).
- Object storage has no rename, and a reader's ranged GETs could straddle two PUTs of one name. So
  there (and wherever a catalog registers the files, ``versioned_tables``) every version of a
  table file gets a new, immutable name (``events-<version>.parquet``) and the partition's
  ``_current.json`` names the current one; a PUT of a small object is atomic. Superseded versions
  are deleted once ``superseded_grace_seconds`` have passed since they were superseded, so a
  reader that resolved a pointer just before has that long to finish; a catalog that registered
  the files keeps them (``keep_table_versions``) and deletes them itself when its snapshots expire.

Work in progress (downloads, staging) always happens on local disk, in :meth:`Lake.scratch`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, TypeVar

from duckdb import DuckDBPyConnection as Connection

from pipeline import engine, leftovers
from pipeline.object_storage import Explained, ObjectStorage, explained, is_remote

MANIFEST = "_manifest.json"
CURRENT = "_current.json"


class LakeError(RuntimeError):
    pass


L = TypeVar("L", bound="Lake")


def hour_partition(upload_hour: datetime) -> str:
    return f"upload_date={upload_hour:%Y-%m-%d}/upload_hour={upload_hour:%H}"


def day_partition(day: date, key: str = "snapshot_date") -> str:
    return f"{key}={day:%Y-%m-%d}"


def new_version_name() -> str:
    return f"v{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def _version_time(name: str) -> int:
    return int(name.lstrip("v").split("-")[0])


class Lake:
    """The lake at ``root``: a local folder, or ``s3://bucket/prefix``.

    Locations are ``Path`` on local disk and ``PurePosixPath("bucket/prefix/...")`` on object
    storage; :meth:`url` turns either into what DuckDB reads.
    """

    def __init__(self, root: str | os.PathLike[str], *, superseded_grace_seconds: float = 6 * 3600,
                 versioned_tables: bool = False, keep_table_versions: bool = False,
                 storage: ObjectStorage | None = None, scratch_root: Path | None = None) -> None:
        self._root_given = root
        self.storage = storage or (ObjectStorage.from_root(str(root)) if is_remote(root) else None)
        self.root: PurePath = (PurePosixPath(self.storage.root) if self.storage is not None
                               else Path(root))
        self.superseded_grace_seconds = superseded_grace_seconds
        self.versioned_tables = versioned_tables or self.storage is not None
        self.keep_table_versions = keep_table_versions
        self._scratch_root = scratch_root
        self._fs: Any = None

    def share(self, kind: type[L], **extra: Any) -> L:
        """This lake (the same storage, names and grace period) as ``kind``: a source's view of
        it, with its own places in it."""
        return kind(self._root_given, superseded_grace_seconds=self.superseded_grace_seconds,
                    versioned_tables=self.versioned_tables,
                    keep_table_versions=self.keep_table_versions, storage=self.storage,
                    scratch_root=self._scratch_root, **extra)

    @property
    def remote(self) -> bool:
        return self.storage is not None

    @property
    def fs(self) -> Any:
        """pyarrow's S3 file system (object storage only), whose errors say what to check."""
        if self.storage is None:
            raise LakeError("a local lake has no object-storage client")
        if self._fs is None:
            self._fs = Explained(self.storage.filesystem(), self.url(self.root))
        return self._fs

    def __repr__(self) -> str:
        return f"Lake({self.url(self.root)!r})"

    def __getstate__(self) -> dict[str, Any]:
        """Without its S3 client: a worker process (``pipeline/worker.py``) makes its own, as
        pyarrow must set S3 up in each process before a client is used."""
        return {**self.__dict__, "_fs": None}

    def url(self, path: PurePath) -> str:
        """What DuckDB (and people) read: a local path, or ``s3://bucket/...``."""
        return str(path) if self.storage is None else self.storage.uri(str(path))

    def configure(self, con: Connection) -> Connection:
        """Let ``con`` read and write this lake's URLs (object storage needs httpfs, a secret)."""
        if self.storage is not None:
            self.storage.configure_duckdb(con)
        return con

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A small in-memory DuckDB that reads this lake."""
        con = engine.connect()
        try:
            yield self.configure(con)
        finally:
            con.close()

    def local(self, path: PurePath) -> Path:
        """``path`` as a local file; for the local-only tools (rebuild, forget)."""
        if self.storage is not None or not isinstance(path, Path):
            raise LakeError(f"{self.url(path)} is on object storage; this needs a local lake")
        return path

    # ---- places ----

    def landing_folder(self, source: str, dataset: str, partition: str) -> PurePath:
        return self.root / "landing" / source / dataset / partition

    def table_folder(self, source: str, table: str, partition: str) -> PurePath:
        return self.root / source / table / partition

    def _stem(self, table: str) -> str:
        return table.rsplit("/", 1)[-1]

    def table_file(self, source: str, table: str, partition: str) -> PurePath | None:
        """The partition's current Parquet file, or None if it has none."""
        folder = self.table_folder(source, table, partition)
        if not self.versioned_tables:
            path = folder / f"{self._stem(table)}.parquet"
            return path if self.exists(path) else None
        text = self.read_text(folder / CURRENT)
        return None if text is None else folder / str(json.loads(text)["file"])

    # ---- small objects ----

    def read_text(self, path: PurePath) -> str | None:
        if self.storage is None:
            try:
                return Path(path).read_text()
            except FileNotFoundError:
                return None
        try:
            with self.fs.open_input_stream(str(path)) as stream:
                return bytes(stream.read()).decode()
        except FileNotFoundError:
            return None

    def write_text(self, path: PurePath, text: str) -> None:
        """Readers see the old text or the new, never a mix (rename, or one PUT)."""
        if self.storage is None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_atomically(Path(path), text)
            return
        with self.fs.open_output_stream(str(path)) as stream:
            stream.write(text.encode())

    def exists(self, path: PurePath) -> bool:
        if self.storage is None:
            return Path(path).exists()
        from pyarrow import fs
        return bool(self.fs.get_file_info(str(path)).type != fs.FileType.NotFound)

    def delete(self, path: PurePath) -> None:
        if self.storage is None:
            Path(path).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(str(path))

    def _delete_tree(self, path: PurePath) -> None:
        if self.storage is None:
            shutil.rmtree(path, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(str(path))

    def names(self, folder: PurePath) -> list[str]:
        """The entries directly in ``folder`` (none if it does not exist)."""
        if self.storage is None:
            try:
                return sorted(p.name for p in Path(folder).iterdir())
            except FileNotFoundError:
                return []
        from pyarrow import fs
        infos = self.fs.get_file_info(fs.FileSelector(str(folder), allow_not_found=True))
        return sorted(PurePosixPath(info.path).name for info in infos)

    def _upload(self, local: Path, path: PurePath) -> None:
        from pyarrow import fs
        with explained(self.url(self.root)):
            fs.copy_files(str(local), str(path), destination_filesystem=self.fs.inner,
                          chunk_size=8 << 20, use_threads=False)
        _release_buffers()

    def download(self, path: PurePath, local: Path) -> None:
        from pyarrow import fs
        with explained(self.url(self.root)):
            fs.copy_files(str(path), str(local), source_filesystem=self.fs.inner,
                          chunk_size=8 << 20, use_threads=False)
        _release_buffers()

    # ---- work in progress ----

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A private local folder, removed afterwards whatever happens.

        Folders a crashed run left behind (a window's archive can be gigabytes) are swept first.
        For a local lake it sits on the lake's own disk, so finished files move in by rename.
        """
        if self._scratch_root is not None:
            parent = self._scratch_root
        elif self.storage is None:
            parent = Path(self.root) / ".scratch"
        else:
            parent = scratch_folder() / "lake-scratch"
        parent.mkdir(parents=True, exist_ok=True)
        leftovers.sweep(parent.iterdir())
        path = parent / f"{uuid.uuid4().hex}{leftovers.owner_mark()}"
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # ---- landings: version folders and a manifest ----

    @contextmanager
    def new_version(self, folder: PurePath) -> Iterator[tuple[str, Path]]:
        """A local staging folder for a new landing version; on success it becomes
        ``folder/<version>`` (renamed, or uploaded file by file).

        The caller writes its files into the staging folder, then calls :meth:`commit` with the
        manifest text once the block has ended: until then no reader is pointed at the version.
        """
        version = new_version_name()
        if self.storage is None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            staged = Path(folder) / f".staging-{version}{leftovers.owner_mark()}"
            staged.mkdir()
        else:
            staged = Path(tempfile.mkdtemp(prefix=f"staging-{version}-"))
        try:
            yield version, staged
            if self.storage is None:
                os.rename(staged, Path(folder) / version)
            else:
                for file in sorted(staged.rglob("*")):
                    if file.is_file():
                        self._upload(file, folder / version / file.relative_to(staged).as_posix())
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def commit(self, folder: PurePath, version: str, manifest: str) -> None:
        """Point the partition at ``version`` and drop versions past their grace period."""
        self.write_text(folder / MANIFEST, manifest)
        self._prune(folder, keep=version)

    def manifest(self, folder: PurePath) -> str | None:
        """The partition's current manifest, or None if it was never landed."""
        return self.read_text(folder / MANIFEST)

    def _prune(self, folder: PurePath, keep: str, *, files: bool = False) -> None:
        """Drop versions no reader can still be using: those superseded, and those abandoned
        unfinished (newer than ``keep``), longer ago than the grace period."""
        names = [n for n in self.names(folder) if n.startswith("v") or
                 (files and "-v" in n and n.endswith(".parquet"))]
        version_of = {n: n if not files else "v" + n.rsplit("-v", 1)[1].removesuffix(".parquet")
                      for n in names}
        ordered = sorted(names, key=lambda n: version_of[n])
        keep_at = _version_time(keep) if keep else 0
        now = time.time_ns()
        for index, name in enumerate(ordered):
            if version_of[name] == keep:
                continue
            try:
                own = _version_time(version_of[name])
            except ValueError:
                continue  # not one of ours
            later = [_version_time(version_of[n]) for n in ordered[index + 1:]]
            superseded_at = min(later) if own < keep_at and later else own
            if now - superseded_at > self.superseded_grace_seconds * 1e9:
                (self.delete if files else self._delete_tree)(folder / name)

    def tidy(self, source: str, dataset: str) -> int:
        """Housekeeping that must not wait for a partition to be landed again: prune every
        partition's versions past their grace period, and sweep the staging folders and manifest
        temporaries a killed run left (older than ``leftovers.MAX_AGE_SECONDS``). Returns the
        partitions looked at."""
        base = self.root / "landing" / source / dataset
        if self.storage is None:
            # A partition whose first landing was killed has a staging folder and no manifest.
            local = Path(base)
            folders: set[PurePath] = {p.parent for p in local.glob(f"**/{MANIFEST}")}
            folders |= {p.parent for p in local.glob("**/.staging-*")}
        else:
            from pyarrow import fs
            infos = self.fs.get_file_info(fs.FileSelector(str(base), recursive=True,
                                                          allow_not_found=True))
            # the folder holding each version folder: partitions, landed or abandoned
            folders = {PurePosixPath(i.path).parent for i in infos
                       if i.type == fs.FileType.Directory and PurePosixPath(i.path).name[:2]
                       == "v0"}
            folders |= {PurePosixPath(i.path).parent for i in infos
                        if PurePosixPath(i.path).name == MANIFEST}
        for folder in sorted(folders, key=str):
            text = self.manifest(folder)
            try:
                keep = str(json.loads(text)["version"]) if text else ""
            except (ValueError, KeyError, TypeError):
                continue  # a manifest we cannot read: prune nothing it might name
            self._prune(folder, keep=keep)
            if self.storage is None:
                local_folder = Path(folder)
                leftovers.sweep([*local_folder.glob(".staging-*"), *local_folder.glob(".*.tmp")])
        return len(folders)

    # ---- table files ----

    def tidy_tables(self, source: str, table: str) -> int:
        """Delete a table's superseded file versions past their grace period, in every
        partition, so one re-normalized once does not keep its old file until the next; a
        catalog that registered the files deletes its own. Returns the partitions looked at."""
        if not self.versioned_tables or self.keep_table_versions:
            return 0
        base, stem = self.root / source / table, self._stem(table)
        if self.storage is None:
            found: list[PurePath] = list(Path(base).glob(f"**/{stem}-v*.parquet"))
        else:
            from pyarrow import fs
            found = [PurePosixPath(i.path) for i in self.fs.get_file_info(fs.FileSelector(
                str(base), recursive=True, allow_not_found=True))
                if PurePosixPath(i.path).name.startswith(f"{stem}-v")]
        folders = {p.parent for p in found}
        for folder in sorted(folders, key=str):
            text = self.read_text(folder / CURRENT)
            try:
                keep = str(json.loads(text)["version"]) if text else ""
            except (ValueError, KeyError, TypeError):
                continue
            self._prune(folder, keep=keep, files=True)
        return len(folders)

    @contextmanager
    def staged_table_file(self, source: str, table: str, partition: str) -> Iterator[Path]:
        """A local path to write the partition's new Parquet file to; on success it becomes the
        current file (:meth:`table_file`), in one step no reader can see half done."""
        folder = self.table_folder(source, table, partition)
        stem = self._stem(table)
        if not self.versioned_tables:
            local = Path(folder)
            local.mkdir(parents=True, exist_ok=True)
            leftovers.sweep(local.glob(f".{stem}.parquet.*"))  # a killed run's staging
            staging = local / f".{stem}.parquet.{uuid.uuid4().hex}{leftovers.owner_mark()}.tmp"
            try:
                yield staging
                os.replace(staging, local / f"{stem}.parquet")
            finally:
                staging.unlink(missing_ok=True)
            return
        with self.scratch() as scratch:
            staging = scratch / f"{stem}.parquet"
            yield staging
            version = new_version_name()
            name = f"{stem}-{version}.parquet"
            if self.storage is None:
                Path(folder).mkdir(parents=True, exist_ok=True)
                shutil.move(staging, Path(folder) / name)  # a rename: scratch is on the lake's disk
            else:
                self._upload(staging, folder / name)
            self.write_text(folder / CURRENT, json.dumps({"file": name, "version": version}))
        if not self.keep_table_versions:
            self._prune(folder, keep=version, files=True)

    def remove_table_file(self, source: str, table: str, partition: str) -> None:
        """The partition has no current file any more (a clean re-fetch empties a quarantine)."""
        folder = self.table_folder(source, table, partition)
        if not self.versioned_tables:
            self.delete(folder / f"{self._stem(table)}.parquet")
            return
        self.delete(folder / CURRENT)
        if not self.keep_table_versions:
            self._prune(folder, keep="", files=True)


def scratch_folder() -> Path:
    """Local disk for the work in progress of a lake on object storage (``LAKE_SCRATCH``)."""
    from pipeline.settings import SharedSettings  # pydantic-settings: ~20 MB, only when read

    return Path(SharedSettings.from_env().lake_scratch or tempfile.gettempdir())


def _release_buffers() -> None:
    """Hand pyarrow's freed transfer buffers back: its allocator keeps them for reuse, and the
    engine that runs next in the process needs the memory more."""
    import pyarrow

    pyarrow.default_memory_pool().release_unused()


def read_manifest(folder: Path) -> str | None:
    """A local partition's manifest (the local-only tools read it without a Lake)."""
    try:
        return (folder / MANIFEST).read_text()
    except FileNotFoundError:
        return None


def write_atomically(path: Path, text: str) -> None:
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}{leftovers.owner_mark()}.tmp")
    staged.write_text(text)
    os.replace(staged, path)
