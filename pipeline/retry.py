"""What a failed request means for the next attempt: transient or not, and how long to wait.

Backoff is capped and jittered so that retrying clients do not stampede in step; a server's own
``Retry-After`` wins when it makes sense (seconds or an HTTP date) and is ignored when it does not
(``nan``, garbage), falling back to the backoff. The caller's time budget bounds every wait.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx


class HttpError(RuntimeError):
    """A request failed for good; the message names the endpoint and the cause."""


class TransientError(HttpError):
    """Worth another attempt: network trouble, 5xx, 429, a body cut short or unreadable."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_elapsed_seconds: float = 900.0
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with jitter, so retrying clients do not stampede in step."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


class RetriesExhausted(HttpError):
    """The retry budget ran out; ``last`` is the final transient cause."""

    def __init__(self, message: str, *, last: TransientError) -> None:
        super().__init__(message)
        self.last = last


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Seconds to wait as the server asks (a number or an HTTP date); None when it is garbage,
    so the caller falls back to its own backoff. The caller's time budget bounds it."""
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
        return max(float(seconds), 0.0)
    return max(seconds, 0.0) if math.isfinite(seconds) else None
