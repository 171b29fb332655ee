"""Export archives: which gzip members a window holds, and writing them into a zip on disk.

Layout, as Amplitude serves it (shared/reference, section 1.2): a zip holding, when
``project_folder`` is on, a ``<project_id>/`` directory entry, then for every upload hour with
events the members ``<project_id>/<project_id>_<YYYY-MM-DD>_<H>#<n>.json.gz`` (``H`` not
zero-padded), each a gzip file of at most ``events_per_member`` NDJSON lines. Members are stored
(the gzip data does not compress further), and every timestamp in the zip and the gzip headers is
fixed, so the same config and window always give the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from simulator.config import SimulatorConfig
from simulator.generator import MemberJob, gzip_member, utc_hour
from simulator.merges import switches_for

HOUR = timedelta(hours=1)
_WORKER = Path(__file__).with_name("_worker.py")


@dataclass(frozen=True)
class Member:
    """One gzip member of an export: events ``start..stop-1`` of upload hour ``hour``."""

    name: str  # full path inside the zip
    hour: datetime
    number: int
    start: int
    stop: int

    @property
    def events(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Archive:
    """A built export zip on disk."""

    path: Path
    size: int
    events: int
    members: int


class ArchiveTooLarge(Exception):
    """The zip would be bigger than ``size_cap_bytes``."""


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    """The UTC hours from ``start`` to ``end``, both included."""
    hour, last = utc_hour(start), utc_hour(end)
    while hour <= last:
        yield hour
        hour += HOUR


def member_name(config: SimulatorConfig, hour: datetime, number: int) -> str:
    pid = config.project_id
    name = f"{pid}_{hour:%Y-%m-%d}_{hour.hour}#{number}.json.gz"
    return f"{pid}/{name}" if config.project_folder else name


def plan(config: SimulatorConfig, start: datetime, end: datetime) -> list[Member]:
    """The members of the export of ``start..end`` (both included), in served order."""
    members = []
    per = config.events_per_member
    for hour in hours(start, end):
        count = config.hour_count(hour)
        for k, first in enumerate(range(0, count, per)):
            number = config.first_member_number + k
            name = member_name(config, hour, number)
            members.append(Member(name, hour, number, first, min(count, first + per)))
    return members


def _zip_time(hour: datetime) -> tuple[int, int, int, int, int, int]:
    hour = max(hour, datetime(1980, 1, 1, tzinfo=hour.tzinfo))
    return (hour.year, hour.month, hour.day, hour.hour, 0, 0)


def _job(config: SimulatorConfig, member: Member) -> MemberJob:
    return MemberJob(
        config.project_id,
        member.hour,
        member.start,
        member.stop,
        config.seed,
        config.profile,
        config.gzip_level,
        switches_for(config),
    )


class MemberWorkers:
    """Worker processes (``_worker.py``) that build gzip members in parallel.

    Job ``k`` goes to worker ``k % n`` and every worker answers in order, so reading the answers
    round-robin gives the members in order; each worker has at most ``ahead`` jobs queued, which
    bounds the memory held by finished members.
    """

    def __init__(self, count: int, ahead: int = 2) -> None:
        self.ahead = ahead
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(_WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for _ in range(count)
        ]

    def run(self, jobs: list[MemberJob]) -> Iterator[bytes]:
        n = len(self.procs)

        def submit(k: int) -> None:
            job = jobs[k]
            spec = {
                "project_id": job.project_id,
                "hour": job.upload_hour.isoformat(),
                "start": job.start,
                "stop": job.stop,
                "seed": job.seed,
                "profile": dataclasses.asdict(job.profile),
                "gzip_level": job.gzip_level,
            }
            if job.switches:
                spec["switches"] = job.switches.rows()
            stdin = self.procs[k % n].stdin
            assert stdin is not None
            stdin.write(json.dumps(spec).encode() + b"\n")
            stdin.flush()

        queued = min(len(jobs), self.ahead * n)
        for k in range(queued):
            submit(k)
        for k in range(len(jobs)):
            stdout = self.procs[k % n].stdout
            assert stdout is not None
            header = stdout.read(8)
            data = stdout.read(int.from_bytes(header, "big")) if len(header) == 8 else b""
            if len(header) != 8 or len(data) != int.from_bytes(header, "big"):
                raise RuntimeError(
                    f"simulator worker {k % n} died (exit {self.procs[k % n].poll()})"
                )
            if queued < len(jobs):
                submit(queued)
                queued += 1
            yield data

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:  # busy with a job nobody will read
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _gzipped(
    config: SimulatorConfig, members: list[Member], parallel: bool
) -> Generator[bytes, None, None]:
    """The gzip bytes of ``members``, in order."""
    jobs = [_job(config, member) for member in members]
    workers = min(config.workers or os.cpu_count() or 1, len(jobs))
    if not parallel or workers < 2:
        for job in jobs:
            yield gzip_member(job)
        return
    pool = MemberWorkers(workers)
    try:
        yield from pool.run(jobs)
    finally:
        pool.close()


def build_archive(
    config: SimulatorConfig,
    start: datetime,
    end: datetime,
    path: Path,
) -> Archive | None:
    """Write the export zip of ``start..end`` (both included) to ``path``.

    Returns None when the window holds no events (Amplitude's 404), and raises ArchiveTooLarge
    (removing the partial file) as soon as the zip grows past ``config.size_cap_bytes``.
    Windows holding at least ``config.parallel_min_events`` events are built by
    ``config.workers`` processes (default: one per CPU).
    """
    members = plan(config, start, end)
    if not members:
        return None
    total = sum(m.events for m in members)
    path = Path(path)
    try:
        with (
            open(path, "wb") as raw,
            zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf,
            closing(_gzipped(config, members, total >= config.parallel_min_events)) as gzipped,
        ):
            if config.project_folder:
                folder = zipfile.ZipInfo(f"{config.project_id}/", _zip_time(utc_hour(end)))
                folder.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(folder, b"")
            for member, data in zip(members, gzipped, strict=True):
                info = zipfile.ZipInfo(member.name, _zip_time(member.hour + HOUR))
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
                if raw.tell() > config.size_cap_bytes:
                    raise ArchiveTooLarge(f"more than {config.size_cap_bytes} bytes")
        size = path.stat().st_size
        if size > config.size_cap_bytes:
            raise ArchiveTooLarge(f"{size} bytes, more than {config.size_cap_bytes}")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Archive(path, size, total, len(members))
