"""The Export API: one window of upload hours into one zip on disk, halving windows too large.

Export answers are large and occasionally broken in transit, so every body is checked (length,
then every member's CRC) before it is trusted, and a damaged one is fetched again. What the
retries end with says whose fault it was: a body that is no zip at all (a proxy's HTML page) is
the network path's, an ``ExportError`` quoting the start of the page; a zip that stays damaged is
the archive's, a ``DamagedArchive``, which is an ``ArchiveError`` too, so a range run can set that
window aside and go on.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from pipeline.amplitude.archive import ArchiveError, window_label
from pipeline.amplitude.client import AmplitudeClient
from pipeline.hours import ExportWindow
from pipeline.http import HttpError, RetriesExhausted, TransientError, body_excerpt

log = logging.getLogger(__name__)

EXPORT_PATH = "/api/2/export"


class ExportError(HttpError):
    """The export could not be fetched; the message says which window and why."""


class WindowTooLarge(ExportError):
    """Amplitude refused the window as too big (400, over 4 GB) or timed out building it (504)."""


class HourTooLarge(ExportError):
    """A single upload hour is beyond what the Export API will serve."""


class DamagedArchive(ArchiveError, ExportError):
    """Every attempt brought a zip that cannot be read whole (its directory, or a member failing
    its CRC): the window's data, not the way there, so an ``ArchiveError``."""


class _Damaged(TransientError):
    """A body that looks like a zip but cannot be read whole; worth fetching again."""

    def __init__(self, message: str, member: str | None) -> None:
        super().__init__(message)
        self.member = member


# How a zip file starts: a member's local header, or the end record of an empty archive.
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass(frozen=True)
class Download:
    window: ExportWindow
    path: Path | None  # None: Amplitude holds no events for the window (404)
    bytes: int
    attempts: int
    seconds: float


class ExportClient(AmplitudeClient):
    def download(self, window: ExportWindow, dest: Path, *, splittable: bool) -> Download:
        """Fetch one window into ``dest``.

        A 504 on a window that can still be halved is returned to the caller at once as
        ``WindowTooLarge`` rather than retried: retrying the same oversized request wastes minutes.
        """
        what = f"export of {window_label(window)}"

        def on_status(response: httpx.Response) -> bool:
            status = response.status_code
            if status == 404:
                return True  # the window holds no events
            if status == 400:
                body = body_excerpt(response).lower()
                if "too large" in body or "4gb" in body:
                    raise WindowTooLarge(f"{self.where(what)} is over Amplitude's 4 GB export "
                                         "cap (400)")
            if status == 504 and splittable:
                raise WindowTooLarge(f"{self.where(what)} timed out at Amplitude (504)")
            return False

        def attempt(deadline: float) -> int:
            with self.stream(EXPORT_PATH, window.query, what=what, endpoint="export",
                             on_status=on_status) as response:
                if response.status_code == 404:
                    return 0
                size = self.save(response, dest, deadline)
                content_type = response.headers.get("Content-Type", "no Content-Type")
            try:
                self._check_zip(dest, size, content_type)
            except TransientError:
                dest.unlink(missing_ok=True)
                raise
            return size

        try:
            size, attempts, seconds = self.with_retries(what, attempt)
        except RetriesExhausted as error:
            if isinstance(error.last, _Damaged):
                raise DamagedArchive(str(error), upload_hours=window.hours,
                                     member=error.last.member) from error
            kind = WindowTooLarge if error.last.status == 504 else ExportError
            raise kind(str(error)) from error
        return Download(window, dest if size else None, size, attempts, seconds)

    def _check_zip(self, path: Path, size: int, content_type: str) -> None:
        """Raise ``TransientError`` if the body cannot be trusted as a zip: no zip at all (with
        an excerpt of what came instead), or one that cannot be read whole. Reads every member
        to check its CRC."""
        with open(path, "rb") as body:
            start = body.read(512)
        if not start.startswith(_ZIP_SIGNATURES):
            raise TransientError(f"the {size}-byte answer ({content_type}) is not a zip archive: "
                                 f"{self.excerpt(start)!r}")
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError,
                NotImplementedError) as error:
            raise _Damaged(f"the {size}-byte body is a damaged zip archive ({error})",
                           None) from error
        if bad:
            raise _Damaged(f"the {size}-byte body is a zip whose member {bad!r} fails its CRC",
                           bad)


def fetch_windows(
    client: ExportClient, windows: Iterable[ExportWindow], workdir: Path
) -> Iterator[Download]:
    """Yield one download per window actually fetched, in hour order.

    The caller lands each archive before asking for the next, so at most one window's archive
    sits on disk at a time. ``Download.attempts`` also counts the refused attempts of the larger
    windows it was split from, so request totals add up.
    """
    pending = list(reversed(list(windows)))
    refused: dict[ExportWindow, int] = {}
    while pending:
        window = pending.pop()
        dest = workdir / f"export-{window.query['start']}-{window.query['end']}.zip"
        try:
            download = client.download(window, dest, splittable=window.hour_count > 1)
        except WindowTooLarge as error:
            if window.hour_count == 1:
                raise HourTooLarge(
                    f"upload hour {window.first_hour:%Y-%m-%dT%H} alone is too large for the "
                    f"Export API ({error}); export it through Amplitude's Amazon S3 export "
                    f"instead (see the README, 'Hours over 4 GB')"
                ) from error
            first, second = window.halves()
            log.warning("export window %s too large; splitting into %s and %s",
                        window, first, second)
            carried = refused.pop(window, 0) + 1
            refused[first] = carried
            pending.extend([second, first])
            continue
        extra = refused.pop(window, 0)
        yield Download(download.window, download.path, download.bytes,
                       download.attempts + extra, download.seconds)
