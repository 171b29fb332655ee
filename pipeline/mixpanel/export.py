"""Mixpanel's raw export, ``GET /api/2.0/export``: one window of days into one file on disk.

The body comes gzip-compressed (we ask for it), and is kept as it came: the landing copy is the
wire's gzip, a tenth of the JSON. A body is trusted only once it has been read whole and checked,
because Mixpanel's failures arrive under HTTP 200:

- the bare last line ``terminated early`` (Mixpanel stopped producing the export);
- a body cut short: a Content-Length not met, a gzip stream without its end, no final newline;
- a record split over two lines, or any line that is not one JSON object. In valid JSONL every
  newline byte ends a record (JSON escapes newlines inside strings), so every newline but the
  last must sit between ``}`` and ``{``: a count over the bytes, not a parse of each line.

Any of these deletes the file and fetches the window again; a window that stays broken fails as
a whole, so a window is never half-loaded. 400 and 401/403 fail at once naming the variables to
check (never their values); 429 waits as the server asks and pauses the shared limit group.
"""

from __future__ import annotations

import gzip
import logging
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from pipeline.http import (
    ApiClient,
    AuthError,
    Credentials,
    HttpError,
    RetriesExhausted,
    Timeouts,
    TransientError,
)
from pipeline.mixpanel.days import DayWindow
from pipeline.mixpanel.rate_limits import EXPORT_ENDPOINT

log = logging.getLogger(__name__)

EXPORT_PATH = "/api/2.0/export"
TERMINATED_EARLY = b"terminated early"
# Minutes for the first byte: "some large exports can take a few minutes to generate".
EXPORT_TIMEOUTS = Timeouts(connect_seconds=10.0, read_seconds=600.0)
_READ = 1 << 20


class MixpanelExportError(HttpError):
    """The window could not be fetched whole; the message says which window and why."""


class IncompleteExport(TransientError):
    """A body that arrived under 200 but cannot be trusted whole; worth fetching again."""


@dataclass(frozen=True)
class Download:
    window: DayWindow
    path: Path  # the body as received: ``.jsonl.gz`` when gzip-encoded, else ``.jsonl``
    bytes: int  # on disk (= on the wire)
    lines: int  # events in the body
    attempts: int
    seconds: float


class MixpanelClient(ApiClient):
    """The export host of one project, with its credentials.

    The project secret travels as the Basic username with a blank password (a ``Credentials``
    without a password is taken as that).
    """

    def __init__(self, base_url: str, credentials: Credentials, *, project_id: str | None,
                 **options: Any) -> None:
        options.setdefault("timeouts", EXPORT_TIMEOUTS)
        if credentials.username and not credentials.password:
            credentials = replace(credentials, blank_password=True)
        # gzip: the only encoding Mixpanel documents
        super().__init__(base_url, credentials, headers={"Accept-Encoding": "gzip"}, **options)
        self.project_id = project_id

    def download(self, window: DayWindow, folder: Path, *, time_in_ms: bool = False,
                 event: str | None = None, where: str | None = None) -> Download:
        """Fetch one window into ``folder``, checked whole, retried until it is."""
        what = f"Mixpanel export of {window}"
        params = dict(window.query)
        if self.project_id:
            params["project_id"] = self.project_id
        if time_in_ms:
            params["time_in_ms"] = "true"
        if event:
            params["event"] = event
        if where:
            params["where"] = where
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"export-{window.first_day}-{window.last_day}"
        started = time.monotonic()

        def on_status(response: httpx.Response) -> bool:
            self._refuse(response, what)
            return False

        def attempt(deadline: float) -> tuple[Path, int, int]:
            with self.stream(EXPORT_PATH, params, what=what, endpoint=EXPORT_ENDPOINT,
                             on_status=on_status) as response:
                gzipped = response.headers.get("Content-Encoding", "").lower() == "gzip"
                path = Path(f"{stem}.jsonl.gz" if gzipped else f"{stem}.jsonl")
                # as it came over the wire (still gzip); check_body checks the gzip's end
                size = self.save(response, path, deadline, decode=False)
            try:
                lines = check_body(path)
            except IncompleteExport:
                path.unlink(missing_ok=True)
                raise
            return path, size, lines

        try:
            (path, size, lines), attempts, _ = self.with_retries(self.where(what), attempt)
        except RetriesExhausted as error:
            raise MixpanelExportError(f"{error}; nothing of {window} was kept") from error
        return Download(window, path, size, lines, attempts, time.monotonic() - started)

    def _refuse(self, response: httpx.Response, what: str) -> None:
        """Mixpanel's refusals, naming what the operator sets: never a value."""
        status = response.status_code
        if status not in (400, 401, 403):
            return
        body = self.excerpt(response.read()[:600])
        where = self.where(what)
        if status == 400:
            raise MixpanelExportError(
                f"Mixpanel refused the request (400) for {where}: {body}. Check "
                "MIXPANEL_PROJECT_ID (with a service account), MIXPANEL_START and that the days "
                "asked for are not in the future in the project's days (MIXPANEL_TIMESTAMPS, "
                "MIXPANEL_PROJECT_TIMEZONE)")
        raise AuthError(
            f"Mixpanel refused the credentials ({status}) for {where}: {body}. Check "
            f"{self.credentials_named} (a service account needs access to this project, and "
            "its classified data if any) and that MIXPANEL_REGION or MIXPANEL_BASE_URL is the "
            "project's data residency")


def _plain_chunks(path: Path) -> Any:
    """The file's bytes decompressed if it is gzip (every member, each checked to its end)."""
    with open(path, "rb") as raw:
        if not path.name.endswith(".gz"):
            while chunk := raw.read(_READ):
                yield chunk
            return
        inflate = zlib.decompressobj(wbits=31)
        pending = b""
        while data := pending or raw.read(_READ):
            pending = b""
            if inflate.eof:  # more bytes after a member's end: the next member
                inflate = zlib.decompressobj(wbits=31)
            yield inflate.decompress(data)
            if inflate.eof:
                pending = inflate.unused_data
        if not inflate.eof:
            raise IncompleteExport("body cut short: the gzip stream ends before its end")


def check_body(path: Path) -> int:
    """The number of events in a landed body; ``IncompleteExport`` says what is wrong."""
    newlines = joints = 0
    first = b""
    tail = b""
    try:
        for chunk in _plain_chunks(path):
            if not chunk:
                continue
            if not first:
                first = chunk[:1]
            newlines += chunk.count(b"\n")
            joints += (tail[-2:] + chunk).count(b"}\n{")  # two carried bytes: never counted twice
            tail = (tail + chunk[-64:])[-64:]
    except zlib.error as error:
        raise IncompleteExport(f"the gzip body is damaged ({error})") from error
    if not first:
        return 0  # no events in the window
    last_line = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1].strip()
    if last_line == TERMINATED_EARLY:
        raise IncompleteExport("Mixpanel ended the body with 'terminated early' (HTTP 200)")
    if not tail.endswith(b"\n"):
        raise IncompleteExport("body cut short: the last line has no final newline")
    if first != b"{" or not tail.endswith(b"}\n") or newlines != joints + 1:
        number, line = _first_bad_line(path)
        raise IncompleteExport(f"line {number} is not one JSON object (a record split over "
                               f"lines, or a stray line): {line[:80]!r}")
    return newlines


def _first_bad_line(path: Path) -> tuple[int, bytes]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            body = line.rstrip(b"\n")
            if not (body.startswith(b"{") and body.endswith(b"}")):
                return number, body
    return 0, b""
