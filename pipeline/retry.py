"""What a failed request means for the next attempt: transient or not, and how long to wait.

Backoff is capped and jittered so that retrying clients do not stampede in step; a server's own
``Retry-After`` wins when it makes sense (seconds or an HTTP date) and is ignored when it does not
(``nan``, garbage), falling back to the backoff. The caller's time budget bounds every wait.
Every retry of the project goes through :func:`within_budget` (tenacity): attempts and a time
budget together, the next wait planned once, and sleep and clock injectable for the tests.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import tenacity


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


def within_budget(policy: RetryPolicy, *, retry: tenacity.retry_base,
                  wait: Callable[[tenacity.RetryCallState], float],
                  clock: Callable[[], float], sleep: Callable[[float], None],
                  before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
                  started: float | None = None) -> tenacity.Retrying:
    """Retry while ``retry`` says so, at most ``policy.max_attempts`` times, and never past
    ``policy.max_elapsed_seconds`` (a wait that would end past it is not begun). ``wait`` plans
    the next wait from the failed attempt (a server's Retry-After, else the backoff); it is asked
    once per attempt, so the stop and the sleep agree on a jittered value.

    A call that runs out re-raises the last exception; one retried on its result returns the
    last result. The budget runs from ``started`` (default: now)."""
    began = clock() if started is None else started
    planned: dict[int, float] = {}

    def next_wait(state: tenacity.RetryCallState) -> float:
        if state.attempt_number not in planned:
            planned[state.attempt_number] = max(wait(state), 0.0)
        return planned[state.attempt_number]

    def stop(state: tenacity.RetryCallState) -> bool:
        return (state.attempt_number >= policy.max_attempts
                or clock() - began + next_wait(state) > policy.max_elapsed_seconds)

    def last_result(state: tenacity.RetryCallState) -> Any:
        assert state.outcome is not None
        return state.outcome.result()

    return tenacity.Retrying(retry=retry, stop=stop, wait=next_wait, sleep=sleep,
                             before_sleep=before_sleep, reraise=True,
                             retry_error_callback=last_result)


def backoff(policy: RetryPolicy, rng: random.Random) -> Callable[[tenacity.RetryCallState], float]:
    """The policy's jittered backoff, or the Retry-After a ``TransientError`` carries."""

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, TransientError) and error.retry_after is not None:
            return error.retry_after
        return policy.delay(state.attempt_number, rng)

    return wait
