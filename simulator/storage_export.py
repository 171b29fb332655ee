"""Amplitude's storage export (the S3 destination), written into a real S3 bucket.

The layout (shared/reference: amplitude-storage-export.md), for project ``app_id`` (the config's
``project_id``) under an optional ``prefix``:

- parts ``{prefix}/{app_id}/{app_id}_{yyyy-MM-dd}_{H}#{n}.json.gz``: ``H`` the UTC upload hour,
  not zero-padded, ``n`` counted from ``first_part_number``; each a gzip of NDJSON holding
  ``events_per_part`` lines of the hour, the very lines the Export API serves for it;
- after an hour's parts, its marker ``{prefix}/{app_id}/{app_id}_{yyyy-MM-dd}_{H}_complete``
  (empty, no extension, not gzip); an hour without events gets the marker alone; with
  ``markers=False`` there are none (Amplitude support can switch them off);
- merged ids ``{prefix}/-{org_id}/-{org_id}_{yyyy-MM-dd}_{H}.json.gz`` (``merged_ids="org"``):
  gzip NDJSON of the merge rows whose ``merge_server_time`` falls in hour ``H``, written with the
  hour's parts, only for hours holding merges; ``"legacy"`` writes them as a legacy organization
  does, beside the parts (``{app_id}/{app_id}_{yyyy-MM-dd}_{H}.json.gz``, no ``#n``: not a part)
  with ``scope`` the app id; ``"both"`` both; ``"none"`` neither;
- metadata files (``write_metadata``): non-gzip JSON in the same prefix, by default
  ``{app_id}/manifest_{yyyy-MM-dd}_{H}.json``.

``deliver`` writes several hours at once (every part, then merged ids, metadata, then markers);
``unmarked`` hours get no marker yet (still being delivered: ``write_marker`` later), and
``write_parts(hour, only=k)`` writes just the first parts. ``backfill`` deletes an hour's objects
(marker first) and writes it again in another number of parts, optionally with ``added`` events
(new ones, the generator's next indexes of that upload hour) and ``removed`` ones (by index).

The truth, for tests: ``keys()`` (objects written and not deleted), ``written`` and ``deleted``
(in order), ``hour_lines(hour)`` (the lines the hour's parts in the bucket hold now, in part
order), ``merge_rows(hour)``. Built on boto3 (imported here only); nothing from ``pipeline``.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from simulator.archive import MemberWorkers
from simulator.config import SimulatorConfig
from simulator.generator import MemberJob, gzip_member, hour_lines, utc_hour
from simulator.merges import ms_to_hour, plan_for
from simulator.storage_layout import S3Bucket, StorageLayout

__all__ = ["MERGED_ID_MODES", "Part", "S3Bucket", "StorageExport", "StorageLayout"]

MERGED_ID_MODES = ("org", "legacy", "both", "none")


@dataclass(frozen=True)
class Part:
    """One part in the bucket: events ``start..stop-1`` of the hour's ``total``, less ``skip``."""

    key: str
    hour: datetime
    start: int
    stop: int
    total: int
    skip: frozenset[int] = frozenset()


@dataclass
class _Hour:
    total: int  # events of the hour, the added ones included
    removed: frozenset[int] = frozenset()
    parts: list[Part] = field(default_factory=list)


class StorageExport:
    """Writes a simulated project's storage export into ``bucket`` (see the module doc)."""

    def __init__(
        self,
        config: SimulatorConfig,
        bucket: S3Bucket,
        *,
        prefix: str = "",
        events_per_part: int | None = None,
        first_part_number: int = 0,
        markers: bool = True,
        merged_ids: str = "org",
        client: Any = None,
    ) -> None:
        if merged_ids not in MERGED_ID_MODES:
            raise ValueError(f"merged_ids must be one of {MERGED_ID_MODES}")
        self.config = config
        self.bucket = bucket
        self.layout = StorageLayout(config.project_id, config.org_id, prefix)
        self.events_per_part = events_per_part or config.events_per_member
        self.first_part_number = first_part_number
        self.markers = markers
        self.merged_ids = merged_ids
        self.s3 = client if client is not None else bucket.client()
        self.written: list[str] = []
        self.deleted: list[str] = []
        self._keys: set[str] = set()
        self._hours: dict[datetime, _Hour] = {}

    # -- the truth ---------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Every object written and not deleted since, sorted."""
        return sorted(self._keys)

    def parts(self, hour: datetime) -> list[Part]:
        state = self._hours.get(utc_hour(hour))
        return [] if state is None else list(state.parts)

    def hour_lines(self, hour: datetime) -> list[bytes]:
        """The NDJSON lines the hour's parts in the bucket hold now, in part order."""
        return [line for part in self.parts(hour) for line in self._lines(part)]

    def merge_rows(self, hour: datetime | None = None, scope: int | None = None) -> list[dict]:
        """The merge rows (of the UTC hour of their ``merge_server_time``, if given)."""
        plan = plan_for(self.config)
        rows = [] if plan is None else plan.rows(scope)
        if hour is None:
            return rows
        return [r for r in rows if ms_to_hour(r["merge_server_time"]) == utc_hour(hour)]

    # -- writing -----------------------------------------------------------------------------

    def _put(self, key: str, body: bytes) -> str:
        self.s3.put_object(Bucket=self.bucket.bucket, Key=key, Body=body)
        self.written.append(key)
        self._keys.add(key)
        return key

    def _delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket.bucket, Key=key)
        self.deleted.append(key)
        self._keys.discard(key)

    def _lines(self, part: Part) -> Iterator[bytes]:
        c = self.config
        lines = hour_lines(
            c.project_id, part.hour, part.total, c.seed, c.profile,
            start=part.start, stop=part.stop, switches=_switches(c),
        )  # fmt: skip
        if not part.skip:
            return lines
        return (line for i, line in enumerate(lines, part.start) if i not in part.skip)

    def _plan_parts(self, hour: datetime, state: _Hour, per: int, first: int) -> list[Part]:
        """Split the hour's events (less the removed) into parts of ``per`` lines."""
        kept: range | list[int] = range(state.total)
        if state.removed:
            kept = [i for i in kept if i not in state.removed]
        out = []
        for k, lo in enumerate(range(0, len(kept), per)):
            chunk = kept[lo : lo + per]
            start, stop = chunk[0], chunk[-1] + 1
            skip = frozenset(i for i in state.removed if start <= i < stop)
            key = self.layout.part_key(hour, first + k)
            out.append(Part(key, hour, start, stop, state.total, skip))
        return out

    def _bodies(self, parts: list[Part]) -> Iterator[bytes]:
        """The gzip bodies of ``parts``, in order (big batches in worker processes)."""
        c = self.config
        jobs = [
            MemberJob(c.project_id, p.hour, p.start, p.stop, c.seed, c.profile, c.gzip_level,
                      _switches(c))
            for p in parts
        ]  # fmt: skip
        events = sum(p.stop - p.start for p in parts)
        workers = min(c.workers or os.cpu_count() or 1, len(parts))
        if any(p.skip for p in parts) or events < c.parallel_min_events or workers < 2:
            for part, job in zip(parts, jobs, strict=True):
                if part.skip:
                    yield gzip.compress(b"".join(self._lines(part)), c.gzip_level, mtime=0)
                else:
                    yield gzip_member(job)
            return
        pool = MemberWorkers(workers)
        try:
            yield from pool.run(jobs)
        finally:
            pool.close()

    def _state(self, hour: datetime) -> _Hour:
        hour = utc_hour(hour)
        state = self._hours.get(hour)
        if state is None:
            state = self._hours[hour] = _Hour(self.config.hour_count(hour))
        return state

    def write_parts(self, hour: datetime, *, only: int | None = None) -> list[str]:
        """Write the hour's parts (the first ``only`` of them: a delivery under way)."""
        hour = utc_hour(hour)
        state = self._state(hour)
        planned = self._plan_parts(hour, state, self.events_per_part, self.first_part_number)
        todo = [p for p in planned[:only] if p.key not in self._keys]
        keys = [self._put(p.key, body) for p, body in zip(todo, self._bodies(todo), strict=True)]
        state.parts = [p for p in planned if p.key in self._keys]
        return keys

    def write_marker(self, hour: datetime) -> str:
        return self._put(self.layout.marker_key(hour), b"")

    def write_merged_ids(self, hour: datetime) -> list[str]:
        """The merged-ID file(s) of the hour, per ``merged_ids``; none for an hour without."""
        keys = []
        rows = self.merge_rows(hour)
        if rows and self.merged_ids in ("org", "both"):
            keys.append(self._put(self.layout.merged_ids_key(hour), _ndjson_gz(rows)))
        if rows and self.merged_ids in ("legacy", "both"):
            legacy = self.merge_rows(hour, scope=self.config.project_id)
            keys.append(self._put(self.layout.legacy_merged_ids_key(hour), _ndjson_gz(legacy)))
        return keys

    def write_metadata(
        self, hour: datetime | None = None, *, name: str | None = None, body: bytes | None = None
    ) -> str:
        """A non-gzip metadata file: ``name`` (under the prefix) and ``body``, by default the
        hour's JSON manifest (``StorageLayout.manifest_key``) listing its parts."""
        app = self.config.project_id
        if name is not None:
            key = self.layout.key(name)
        elif hour is not None:
            key = self.layout.manifest_key(hour)
        else:
            raise ValueError("give the hour of the manifest, or a name")
        if body is None:
            parts = self.parts(hour) if hour is not None else []
            manifest = {
                "app_id": app,
                "hour": None if hour is None else f"{utc_hour(hour):%Y-%m-%dT%H}",
                "files": [p.key for p in parts],
                "events": sum(p.stop - p.start - len(p.skip) for p in parts),
            }
            body = json.dumps(manifest).encode()
        return self._put(key, body)

    def deliver(
        self,
        hours: datetime | Iterable[datetime],
        *,
        unmarked: Iterable[datetime] = (),
        metadata: bool = False,
    ) -> list[str]:
        """Deliver hours at once: all their parts, then merged ids, manifests (``metadata``), and
        last the markers (not for ``unmarked`` hours, nor with ``markers`` off)."""
        batch = [utc_hour(hours)] if isinstance(hours, datetime) else [utc_hour(h) for h in hours]
        skip = {utc_hour(h) for h in unmarked}
        keys = [key for hour in batch for key in self.write_parts(hour)]
        keys += [key for hour in batch for key in self.write_merged_ids(hour)]
        if metadata:
            keys += [self.write_metadata(hour) for hour in batch]
        if self.markers:
            keys += [self.write_marker(hour) for hour in batch if hour not in skip]
        return keys

    def backfill(
        self,
        hour: datetime,
        *,
        events_per_part: int | None = None,
        first_part_number: int | None = None,
        added: int = 0,
        removed: Iterable[int] = (),
        mark: bool | None = None,
    ) -> list[str]:
        """Rewrite an hour: delete its marker, then its parts; write it again in parts of
        ``events_per_part``, with ``added`` new events and without the ``removed`` indexes, then
        its marker (``mark``: default ``markers``). Returns the keys written."""
        hour = utc_hour(hour)
        state = self._state(hour)
        marker = self.layout.marker_key(hour)
        if marker in self._keys:
            self._delete(marker)
        for part in state.parts:
            self._delete(part.key)
        state.total += added
        state.removed = frozenset(state.removed | set(removed))
        per = events_per_part or self.events_per_part
        first = self.first_part_number if first_part_number is None else first_part_number
        planned = self._plan_parts(hour, state, per, first)
        keys = [self._put(p.key, b) for p, b in zip(planned, self._bodies(planned), strict=True)]
        state.parts = planned
        if self.markers if mark is None else mark:
            keys.append(self.write_marker(hour))
        return keys


def _switches(config: SimulatorConfig) -> Any:
    plan = plan_for(config)
    return None if plan is None else plan.switches


def _ndjson_gz(rows: list[dict]) -> bytes:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    return gzip.compress(text.encode(), mtime=0)
