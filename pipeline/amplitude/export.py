"""Fetch planned windows, halving any that Amplitude finds too large, down to one hour."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.amplitude.client import Download, ExportClient, ExportError, WindowTooLarge
from pipeline.hours import ExportWindow

log = logging.getLogger(__name__)


class HourTooLarge(ExportError):
    """A single upload hour is beyond what the Export API will serve."""


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
