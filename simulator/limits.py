"""Amplitude's published request limits, enforced by the simulator itself with 429.

Why here and not only in the client: the project's limiter must be shown to keep within the
limits, so the other side has to refuse what exceeds them, as Amplitude does. The numbers
(seeds 001 and 002, shared/reference section 4), all fields of ``RateLimits`` so tests can scale
them down:

- ``rest``: at most ``rest_concurrent`` (5) Dashboard REST and cohort requests at once, together;
- ``cohort``: at most ``cohort_concurrent`` (4) cohort requests at once and ``cohort_requests``
  (60) admitted per ``cohort_window_seconds`` (600);
- ``dashboard``: cost budgets of ``dashboard_cost_short`` (1,000) per
  ``dashboard_short_window_seconds`` (300) and ``dashboard_cost_hourly`` (108,000) per
  ``dashboard_hour_seconds`` (3,600); a query costs 1, ``events/segmentation`` the number of its
  events plus 4 per group-by (the reference's summary; the day count is not multiplied in);
- ``taxonomy``: at most ``taxonomy_concurrent_cost`` (4) cost in flight and
  ``taxonomy_cost_hourly`` (7,200) per ``taxonomy_hour_seconds``; a GET costs 1.

Choices where the docs are silent: windows slide (a request counts from its admission for the
window's length); only admitted requests count (a 429 costs nothing); limits apply after the
credentials are checked (they are per project, and an unauthenticated request names none); the
Export API is not limited here (the issue's limits are the Dashboard, cohort and taxonomy ones).
A window's 429 carries ``Retry-After``: the whole seconds until enough of the window has passed;
a concurrency 429 says 1.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# The groups a request of each endpoint family belongs to.
DASHBOARD_GROUPS = ("rest", "dashboard")
COHORT_GROUPS = ("rest", "cohort")
TAXONOMY_GROUPS = ("taxonomy",)


@dataclass(frozen=True)
class RateLimits:
    """The limits the simulator enforces (``enabled=False``: none)."""

    enabled: bool = True
    rest_concurrent: int = 5
    cohort_concurrent: int = 4
    cohort_requests: int = 60
    cohort_window_seconds: float = 600.0
    dashboard_cost_short: int = 1_000
    dashboard_short_window_seconds: float = 300.0
    dashboard_cost_hourly: int = 108_000
    dashboard_hour_seconds: float = 3_600.0
    taxonomy_concurrent_cost: int = 4
    taxonomy_cost_hourly: int = 7_200
    taxonomy_hour_seconds: float = 3_600.0


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: the ``RateLimits`` field, a message, and ``Retry-After``."""

    limit: str
    message: str
    retry_after: int
    in_flight: dict[str, int] = field(default_factory=dict)


@dataclass
class _Window:
    limit: str  # the RateLimits field holding the budget
    budget: int
    seconds: float
    what: str
    entries: deque[tuple[float, int]] = field(default_factory=deque)

    def used(self, now: float) -> int:
        while self.entries and self.entries[0][0] <= now - self.seconds:
            self.entries.popleft()
        return sum(cost for _, cost in self.entries)

    def retry_after(self, now: float, cost: int) -> int:
        """Whole seconds until ``cost`` more fits (the full window when it never fits)."""
        if cost > self.budget:
            return max(1, math.ceil(self.seconds))
        left = self.used(now) + cost - self.budget
        for at, spent in self.entries:
            left -= spent
            if left <= 0:
                return max(1, math.ceil(at + self.seconds - now))
        return 1


class Limiter:
    """Admits or refuses requests against ``RateLimits``; thread-safe. ``clock`` is for tests."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._lock = threading.Lock()
        self._running: dict[str, int] = {"rest": 0, "cohort": 0, "dashboard": 0, "taxonomy": 0}
        lim = limits
        self._caps = {
            "rest": ("rest_concurrent", lim.rest_concurrent, "Dashboard REST and cohort requests"),
            "cohort": ("cohort_concurrent", lim.cohort_concurrent, "cohort requests"),
            "taxonomy": ("taxonomy_concurrent_cost", lim.taxonomy_concurrent_cost, "taxonomy cost"),
        }
        self._windows: dict[str, list[_Window]] = {
            "cohort": [
                _Window("cohort_requests", lim.cohort_requests, lim.cohort_window_seconds,
                        "cohort requests"),
            ],
            "dashboard": [
                _Window("dashboard_cost_short", lim.dashboard_cost_short,
                        lim.dashboard_short_window_seconds, "Dashboard REST cost"),
                _Window("dashboard_cost_hourly", lim.dashboard_cost_hourly,
                        lim.dashboard_hour_seconds, "Dashboard REST cost"),
            ],
            "taxonomy": [
                _Window("taxonomy_cost_hourly", lim.taxonomy_cost_hourly,
                        lim.taxonomy_hour_seconds, "taxonomy cost"),
            ],
        }  # fmt: skip

    def admit(self, groups: tuple[str, ...], cost: int) -> tuple[dict[str, int], float] | Refusal:
        """Take the request's slots and budget (then call ``release``), or say why not.

        Returns the groups' in-flight counts including this request, and the clock's time of
        admission. ``cost`` is what it draws from its groups' budgets (taxonomy and Dashboard);
        cohort requests count 1 each.
        """
        with self._lock:
            now = self.clock()
            current = {g: self._running[g] for g in groups}
            if not self.limits.enabled:
                return self._take(groups, cost, now, record_windows=False), now
            for group in groups:
                if group not in self._caps:
                    continue
                name, cap, what = self._caps[group]
                need = cost if group == "taxonomy" else 1
                if self._running[group] + need > cap:
                    message = f"Too many concurrent requests: at most {cap} {what} at once"
                    return Refusal(name, message, 1, current)
            for group in groups:
                spend = 1 if group == "cohort" else cost
                for window in self._windows.get(group, ()):
                    if window.used(now) + spend > window.budget:
                        message = (
                            f"Exceeded the rate limit: at most {window.budget} {window.what} "
                            f"per {window.seconds:g} seconds"
                        )
                        retry = window.retry_after(now, spend)
                        return Refusal(window.limit, message, retry, current)
            return self._take(groups, cost, now, record_windows=True), now

    def _take(
        self, groups: tuple[str, ...], cost: int, now: float, *, record_windows: bool
    ) -> dict[str, int]:
        for group in groups:
            self._running[group] += cost if group == "taxonomy" else 1
            if record_windows:
                spend = 1 if group == "cohort" else cost
                for window in self._windows.get(group, ()):
                    window.entries.append((now, spend))
        return {g: self._running[g] for g in groups}

    def release(self, groups: tuple[str, ...], cost: int) -> None:
        with self._lock:
            for group in groups:
                self._running[group] -= cost if group == "taxonomy" else 1
