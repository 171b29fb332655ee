"""Mixpanel's published export limits as ``pipeline.limits`` rules, and the gate that keeps them.

"60 queries per hour, 3 queries per second, and a maximum of 100 concurrent queries. If you
exceed the rate limit, a 429 error will be returned" (Mixpanel's raw export reference). The
limits are per project, so the group is named after the project: two projects never share a
budget, and every run and thread of one project does, through the same shared ``LimitStore`` as
Amplitude's limits (its group names never collide with these).

A 429 pauses the whole group for its ``Retry-After`` (or a default), so all runs back off, not
only the one told.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from pipeline.limits import Budget, Grant, Limiter, Rule

EXPORT_ENDPOINT = "export"
QUERIES_PER_HOUR = 60
QUERIES_PER_SECOND = 3
MAX_CONCURRENT = 100


def group_name(project: str | None) -> str:
    """The limit group of one project's export (the project secret names no project id)."""
    return f"mixpanel_export:{project or 'project-secret'}"


def export_rule(*, per_hour: int = QUERIES_PER_HOUR, per_second: int = QUERIES_PER_SECOND,
                concurrent: int = MAX_CONCURRENT, hour_seconds: float = 3600.0,
                window_margin_seconds: float = 1.0) -> Rule:
    """The published limits (tests scale them down). Each window is kept
    ``window_margin_seconds`` longer than published, as for Amplitude: the client counts a
    request from when it lets it go, the server from when it arrives."""
    rule = Rule(max_concurrent=concurrent, budgets=(
        Budget(hour_seconds, max_requests=per_hour), Budget(1.0, max_requests=per_second)))
    return replace(rule, budgets=tuple(
        replace(b, window_seconds=b.window_seconds + window_margin_seconds) for b in rule.budgets))


def mixpanel_rules(project: str | None, rule: Rule | None = None) -> dict[str, Rule]:
    return {group_name(project): rule or export_rule()}


class MixpanelGate:
    """The ``RequestGate`` the HTTP layer enters around each export request."""

    def __init__(self, limiter: Limiter, project: str | None, *,
                 default_penalty_seconds: float = 60.0) -> None:
        self.limiter = limiter
        self.group = group_name(project)
        if self.group not in limiter.rules:
            raise ValueError(f"the limiter has no rule for {self.group!r}: build it with "
                             "mixpanel_rules(project) (merged with any other source's rules)")
        self.default_penalty_seconds = default_penalty_seconds

    @contextmanager
    def __call__(self, endpoint: str, cost: float = 1.0) -> Iterator[Grant]:
        if endpoint != EXPORT_ENDPOINT:
            raise ValueError(f"unknown Mixpanel endpoint kind {endpoint!r}")
        with self.limiter.holding([self.group], cost,
                                  default_penalty_seconds=self.default_penalty_seconds) as grant:
            yield grant
