"""Faults the simulator injects into export requests.

``Simulator.inject`` queues faults, one per request, in the order queued; ``inject_always`` keeps
faults that apply to every request (an hour whose member is always a bomb, a proxy that always
answers with a page). Build them with the class methods. Three families:

- the way there (``status``, ``truncate``, ``slow``, ``drop``, ``corrupt``, ``reset``, ``stall``,
  ``hang``, ``html``, ``gzip_encoded``): what a network, a proxy or a struggling server does to
  a request, whatever it asked for;
- the archive (``empty_archive``, ``damaged_directory``): the zip as a whole;
- a member (``cut_member``, ``not_gzip``, ``member_name``, ``bomb``, ``insert_line``): one gzip
  member of the real archive is changed (``hour``: the first member of that upload hour, else
  the archive's first member; ``member``: the n-th instead), and the zip rebuilt around it with
  valid CRCs, so only a reader that looks inside the member can tell.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from simulator.generator import utc_hour

_REASONS = {
    429: "Too many requests for this project. Please try again later.",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "The amount of data is large causing a timeout. "
    "For large amounts of data, use the Amazon S3 destination.",
}

# Starts like a zip's first local header, then garbage, and has no end-of-central-directory.
_NOT_A_ZIP = b"PK\x03\x04" + random.Random(404).randbytes(4092)

# What a corporate proxy or a CDN serves, with 200, when the origin is away.
PROXY_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Temporarily unavailable</title></head>\n"
    b"<body><h1>We'll be right back</h1>\n<p>The service you requested is being restarted. "
    b"Please retry in a few moments.</p>\n<p>Reference #18.6f64d217.1740830400.2f1e</p>\n"
    b"</body></html>\n"
)

# Faults that change what the real archive holds: applied to a 200 answer's zip.
MEMBER_KINDS = frozenset({"cut_member", "not_gzip", "member_name", "bomb", "insert_line"})
ARCHIVE_KINDS = MEMBER_KINDS | {"damaged_directory"}
# Faults about the way there, whatever the request: at most one applies to a request.
HTTP_KINDS = frozenset(
    {"status", "truncate", "slow", "drop", "corrupt", "reset", "stall", "hang", "html"}
)


@dataclass(frozen=True)
class Fault:
    """One injected fault. Build them with the class methods."""

    # "status", "truncate", "slow", "drop", "corrupt", "reset", "stall", "hang", "html",
    # "gzip_encoded", "empty_archive", "damaged_directory", "cut_member", "not_gzip",
    # "member_name", "bomb" or "insert_line"
    kind: str
    code: int | None = None
    retry_after: int | float | str | None = None
    body: bytes | None = None
    fraction: float = 0.5
    seconds: float | None = 0.0  # None: until the client hangs up
    hour: datetime | None = None  # member faults: the upload hour whose member is changed
    member: int = 0  # member faults: which member (of ``hour``, or of the archive)
    name: str | None = None  # member_name: the name the member gets
    line: bytes | None = None  # insert_line: the line added (without its newline)
    at: int | None = None  # insert_line: before which line; cut_member: lines kept
    size: int = 0  # bomb: the bytes it inflates to

    @classmethod
    def status(
        cls,
        code: int,
        retry_after: int | float | str | None = None,
        body: bytes | str | None = None,
    ) -> Fault:
        """Answer ``code`` (with ``Retry-After`` when given) instead of the export."""
        if body is None:
            body = _REASONS.get(code, f"Error {code}")
        if isinstance(body, str):
            body = body.encode()
        return cls("status", code=code, retry_after=retry_after, body=body)

    @classmethod
    def truncate(cls, fraction: float = 0.5) -> Fault:
        """Send the headers with the full Content-Length, then only ``fraction`` of the body, then
        close the connection."""
        _check_fraction(fraction)
        return cls("truncate", fraction=fraction)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before sending the headers (to trip a client's read timeout), then
        answer normally."""
        return cls("slow", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without sending anything."""
        return cls("drop")

    @classmethod
    def corrupt(cls, body: bytes | None = None) -> Fault:
        """Answer 200 with ``application/zip`` and a body that is not a zip."""
        return cls("corrupt", body=_NOT_A_ZIP if body is None else body)

    @classmethod
    def reset(cls, fraction: float = 0.5) -> Fault:
        """Send the headers and ``fraction`` of the body, then reset the connection (RST)."""
        _check_fraction(fraction)
        return cls("reset", fraction=fraction)

    @classmethod
    def stall(cls, fraction: float = 0.5, seconds: float = 60.0) -> Fault:
        """Send the headers and ``fraction`` of the body, then nothing for ``seconds`` (or until
        the client hangs up), then close: a read timeout in the middle of the body."""
        _check_fraction(fraction)
        return cls("stall", fraction=fraction, seconds=seconds)

    @classmethod
    def hang(cls) -> Fault:
        """Accept the request and never answer, until the client gives up (or the simulator
        stops)."""
        return cls("hang", seconds=None)

    @classmethod
    def html(cls, body: bytes | str | None = None, code: int = 200) -> Fault:
        """Answer ``code`` (200) with an HTML page instead of the export, as a proxy does."""
        if isinstance(body, str):
            body = body.encode()
        return cls("html", code=code, body=PROXY_PAGE if body is None else body)

    @classmethod
    def gzip_encoded(cls) -> Fault:
        """Send the answer gzip-compressed, with ``Content-Encoding: gzip`` (and the compressed
        Content-Length)."""
        return cls("gzip_encoded")

    @classmethod
    def empty_archive(cls) -> Fault:
        """Answer 200 with a zip that holds no member (only the project folder, if the config has
        one), for a window with events or without."""
        return cls("empty_archive")

    @classmethod
    def damaged_directory(cls, hour: datetime | None = None) -> Fault:
        """Serve the real archive with its central directory damaged (the members are intact).
        With ``hour``: only archives holding that upload hour."""
        return cls("damaged_directory", hour=hour)

    @classmethod
    def cut_member(
        cls, hour: datetime | None = None, member: int = 0, keep: int | None = None
    ) -> Fault:
        """Cut a member short after ``keep`` lines (default: half): its gzip stream stops at a
        flush point, with no final block and no trailer, and its zip CRC is valid. A reader that
        does not check sees fewer lines and no error."""
        return cls("cut_member", hour=hour, member=member, at=keep)

    @classmethod
    def not_gzip(cls, hour: datetime | None = None, member: int = 0) -> Fault:
        """Store a member's lines uncompressed under its ``.json.gz`` name."""
        return cls("not_gzip", hour=hour, member=member)

    @classmethod
    def member_name(cls, name: str, hour: datetime | None = None, member: int = 0) -> Fault:
        """Give a member another name, exactly as written (``../x.json.gz``, ``/etc/x.json.gz``,
        a NUL, a backslash, a newline: ``zipfile`` itself would cut a NUL off)."""
        return cls("member_name", hour=hour, member=member, name=name)

    @classmethod
    def bomb(cls, size: int = 64 << 20, hour: datetime | None = None, member: int = 0) -> Fault:
        """Replace a member with a gzip of ``size`` bytes of ``{}`` lines (about 1,000:1), with an
        honest trailer."""
        return cls("bomb", hour=hour, member=member, size=size)

    @classmethod
    def insert_line(
        cls,
        line: bytes | str,
        hour: datetime | None = None,
        member: int = 0,
        at: int | None = None,
    ) -> Fault:
        """Add ``line`` to a member before its line ``at`` (0-based; default: the middle): a
        blank line (``b""``), a malformed one."""
        if isinstance(line, str):
            line = line.encode()
        return cls("insert_line", hour=hour, member=member, line=line, at=at)

    def covers(self, start: datetime, end: datetime) -> bool:
        """Whether this fault can apply to the export of ``start..end``."""
        return self.hour is None or start <= utc_hour(self.hour) <= end


def _check_fraction(fraction: float) -> None:
    if not 0 <= fraction < 1:
        raise ValueError("fraction must be in [0, 1)")
