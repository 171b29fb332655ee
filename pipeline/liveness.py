"""Whether a process that left something behind still runs: the one place that reads ``/proc``.

A run killed with SIGKILL cannot clean up, so what it held is found later by whoever comes next:
its temporaries (``pipeline/leftovers.py``) and its Dagster run with its pool slots
(``assets/executor.py``). Both record a :class:`ProcessIdentity`, which tells the owner from a
later process that reuses its PID (the start time), and from any process of another boot, PID
namespace (container) or machine, which nothing here can look at.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# How a process is recorded as string pairs (the tags of a Dagster run, assets/executor.py).
TAG_PREFIX = "crash_safety/"
TAG_HOST, TAG_BOOT, TAG_PID_NS, TAG_PID, TAG_STARTED = (
    f"{TAG_PREFIX}{name}" for name in ("host", "boot_id", "pid_namespace", "pid", "pid_started"))


class Liveness(Enum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"  # another host or PID namespace: nothing here can look at it


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def boot_id() -> str:
    return _read(BOOT_ID)


def process_state(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks after boot) of a process, None if there is none.

    Without /proc (macOS) the start time is "" and a signal 0 tells whether the PID exists.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # it exists, someone else's
        return "?", ""
    # The command name in parentheses may hold spaces and parentheses; fields follow the last.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], fields[19]


def started_at(pid: int) -> str | None:
    """A live process's start time ("" without /proc), or None if there is none (a zombie,
    killed but not yet waited for, counts as none)."""
    state = process_state(pid)
    return None if state is None or state[0] in ("Z", "X") else state[1]


@dataclass(frozen=True)
class ProcessIdentity:
    """One process, told apart from any later one that gets its PID (``started``) and from any
    process of another boot (``boot_id``), container (``pid_namespace``) or machine (``host``).
    """

    host: str
    boot_id: str
    pid_namespace: str
    pid: int
    started: str  # clock ticks after boot, from /proc/<pid>/stat; "" where there is no /proc

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        return cls(socket.gethostname(), boot_id(), pid_namespace(), pid, started_at(pid) or "")

    def tags(self) -> dict[str, str]:
        return {TAG_HOST: self.host, TAG_BOOT: self.boot_id, TAG_PID_NS: self.pid_namespace,
                TAG_PID: str(self.pid), TAG_STARTED: self.started}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> ProcessIdentity | None:
        try:
            return cls(tags[TAG_HOST], tags.get(TAG_BOOT, ""), tags.get(TAG_PID_NS, ""),
                       int(tags[TAG_PID]), tags.get(TAG_STARTED, ""))
        except (KeyError, ValueError):
            return None

    def liveness(self, here: ProcessIdentity | None = None) -> Liveness:
        here = here or ProcessIdentity.current()
        if self.host != here.host:
            return Liveness.UNKNOWN
        if self.boot_id and here.boot_id and self.boot_id != here.boot_id:
            return Liveness.DEAD  # the machine has rebooted since
        if self.pid_namespace != here.pid_namespace:
            return Liveness.UNKNOWN
        started = started_at(self.pid)
        if started is None:
            return Liveness.DEAD
        if self.started and started and started != self.started:
            return Liveness.DEAD  # the PID now belongs to a newer process
        return Liveness.ALIVE

    def describe(self) -> str:
        return f"process {self.pid} on host {self.host}"

    # A short form for file names: hashes of the host (with its PID namespace) and of the boot.

    def host_hash(self) -> str:
        return _hash(f"{self.host}\0{self.pid_namespace}" if self.pid_namespace else self.host)

    def boot_hash(self) -> str:
        return _hash(self.boot_id)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
