"""The Export API's archive cache: each (start, end) window's zip is built once, on disk.

Split out of ``server`` so that module stays about routing and lifecycle. The cache key
(``fingerprint``) names everything that shapes an archive's bytes, so ``cache_dir`` can keep
archives across runs (the benchmark's big hours) without ever serving stale ones.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from simulator import generator
from simulator.archive import Archive, ArchiveTooLarge, build_archive, plan
from simulator.config import SimulatorConfig

TOO_LARGE = "too large"


def fingerprint(config: SimulatorConfig) -> str:
    """A name for everything that shapes an archive's bytes (not credentials or limits)."""
    counts = sorted((generator.hour_index(h), n) for h, n in config.hour_counts.items())
    shape: tuple[object, ...] = (
        generator.GENERATOR_VERSION,
        config.project_id,
        config.seed,
        config.profile,
        counts,
        config.events_per_member,
        config.first_member_number,
        config.project_folder,
        config.gzip_level,
    )
    if config.span is not None:  # only then, so unbounded projects keep their old names
        shape += (tuple(generator.hour_index(h) for h in config.span),)
    if config.merge_share:  # likewise: without merges, the names of before
        shape += (("merges", config.merge_share, config.org_id),)
    return hashlib.sha256(repr(shape).encode()).hexdigest()[:20]


class _CacheEntry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.result: Archive | str | None = None


class ArchiveCache:
    """Built archives, in ``cache_dir/<fingerprint>`` or a temp directory. ``config()`` gives the
    config to build with (the simulator's, read when an archive is built)."""

    def __init__(self, config: Callable[[], SimulatorConfig], cache_dir: Path | None) -> None:
        self._config = config
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._entries: dict[tuple[datetime, datetime], _CacheEntry] = {}
        self._dir: Path | None = None

    @property
    def config(self) -> SimulatorConfig:
        return self._config()

    def clear(self) -> None:
        """Forget the built archives, deleting them unless they live in ``cache_dir``."""
        with self._lock:
            self._entries.clear()
            folder, self._dir = self._dir, None
        if folder is not None and self._cache_dir is None:
            shutil.rmtree(folder, ignore_errors=True)

    def _folder(self) -> Path:
        if self._dir is None:
            if self._cache_dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="amplitude-simulator-"))
            else:
                self._dir = self._cache_dir / fingerprint(self.config)
                self._dir.mkdir(parents=True, exist_ok=True)
        return self._dir

    def get(self, start: datetime, end: datetime) -> Archive | str | None:
        """The archive of ``start..end`` (UTC hours), ``TOO_LARGE``, or None (no events)."""
        with self._lock:
            entry = self._entries.setdefault((start, end), _CacheEntry())
            folder = self._folder()
        with entry.lock:
            if not entry.done:
                entry.result = self._build(start, end, folder)
                entry.done = True
            return entry.result

    def _build(self, start: datetime, end: datetime, folder: Path) -> Archive | str | None:
        path = folder / f"export_{start:%Y%m%dT%H}_{end:%Y%m%dT%H}.zip"
        members = plan(self.config, start, end)
        if not members:
            return None
        if path.exists():  # built by an earlier run with the same fingerprint
            size = path.stat().st_size
            if size > self.config.size_cap_bytes:
                return TOO_LARGE
            return Archive(path, size, sum(m.events for m in members), len(members))
        part = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            archive = build_archive(self.config, start, end, part)
        except ArchiveTooLarge:
            return TOO_LARGE
        assert archive is not None
        os.replace(part, path)
        return Archive(path, archive.size, archive.events, archive.members)
