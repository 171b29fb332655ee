"""Faults the simulator injects into export requests, one per request, in the order queued."""

from __future__ import annotations

import random
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Fault:
    """One injected fault. Build them with the class methods."""

    kind: str  # "status", "truncate", "slow", "drop" or "corrupt"
    code: int | None = None
    retry_after: int | float | str | None = None
    body: bytes | None = None
    fraction: float = 0.5
    seconds: float = 0.0

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
        if not 0 <= fraction < 1:
            raise ValueError("fraction must be in [0, 1)")
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
