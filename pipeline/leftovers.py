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
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from pipeline.liveness import ProcessIdentity, started_at

MAX_AGE_SECONDS = 24 * 3600
_MARK = re.compile(r"~o([0-9a-f]{8})([0-9a-f]{8})-(\d+)-(\d+)~")


def owner_mark() -> str:
    """This process's mark, for the names of its temporaries: ``~o<host><boot>-<pid>-<start>~``."""
    me = ProcessIdentity.current()
    return f"~o{me.host_hash()}{me.boot_hash()}-{me.pid}-{me.started or 0}~"


def owner_gone(name: str) -> bool:
    """Whether ``name`` carries the mark of a process of this host that no longer runs."""
    found = _MARK.search(name)
    me = ProcessIdentity.current()
    if found is None or found.group(1) != me.host_hash():
        return False  # no mark, or another host's: only its age can tell
    if found.group(2) != me.boot_hash():
        return True  # written before this host last booted
    started = started_at(int(found.group(3)))
    return started is None or found.group(4) not in ("0", started)


def sweep(paths: Iterable[Path], max_age_seconds: float = MAX_AGE_SECONDS) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):  # another run may remove its own meanwhile
            if owner_gone(path.name) or time.time() - path.stat().st_mtime > max_age_seconds:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
