"""Files and folders a killed run left behind: old enough that no live run can still own them."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

MAX_AGE_SECONDS = 24 * 3600


def sweep(paths: Iterable[Path], max_age_seconds: float = MAX_AGE_SECONDS) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):  # another run may remove its own meanwhile
            if time.time() - path.stat().st_mtime > max_age_seconds:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
