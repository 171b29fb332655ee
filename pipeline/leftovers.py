"""Files and folders a killed run left behind.

Every temporary the pipeline writes carries its owner's mark in its name (``owner_mark()``): a
hash of the host (with its PID namespace) and of its boot, the PID, and the process's start time,
which tells the owner from a later process that reuses its PID. A sweep removes a temporary whose
owner is known to be gone (same host: that boot has ended, or that PID is dead or now another
process), whatever its age; any other temporary (written on another host sharing the lake, or
before the mark existed) once it is old enough that no live run can still own it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import time
from collections.abc import Iterable
from pathlib import Path

MAX_AGE_SECONDS = 24 * 3600
_MARK = re.compile(r"~o([0-9a-f]{8})([0-9a-f]{8})-(\d+)-(\d+)~")


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _host() -> str:
    with contextlib.suppress(OSError):
        return _hash(f"{socket.gethostname()}\0{os.readlink('/proc/self/ns/pid')}")
    return _hash(socket.gethostname())


def _boot() -> str:
    return _hash(_read("/proc/sys/kernel/random/boot_id"))


def _started(pid: int) -> str | None:
    """The start time of a live process in clock ticks after boot ("0" without /proc), or None
    if there is none (a zombie, killed but not yet waited for, counts as none)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "0"
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces, parentheses
    return None if fields[0] in ("Z", "X") else fields[19]


def owner_mark() -> str:
    """This process's mark, for the names of its temporaries: ``~o<host><boot>-<pid>-<start>~``."""
    pid = os.getpid()
    return f"~o{_host()}{_boot()}-{pid}-{_started(pid) or 0}~"


def owner_gone(name: str) -> bool:
    """Whether ``name`` carries the mark of a process of this host that no longer runs."""
    found = _MARK.search(name)
    if found is None or found.group(1) != _host():
        return False  # no mark, or another host's: only its age can tell
    if found.group(2) != _boot():
        return True  # written before this host last booted
    started = _started(int(found.group(3)))
    return started is None or found.group(4) not in ("0", started)


def sweep(paths: Iterable[Path], max_age_seconds: float = MAX_AGE_SECONDS) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):  # another run may remove its own meanwhile
            if owner_gone(path.name) or time.time() - path.stat().st_mtime > max_age_seconds:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
