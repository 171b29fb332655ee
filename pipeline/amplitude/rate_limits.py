"""Amplitude's published limits as ``pipeline.limits`` rules, and which endpoints share them.

The client keeps under these itself rather than learning them from 429s: a 429 costs a retry,
and Amplitude counts the refused request against the budget too. From Amplitude's docs (Dashboard
REST "Rate limits", Behavioral Cohorts, Taxonomy):

- cohort endpoints: 60 requests per 10 minutes per project, at most 4 at once;
- all Dashboard REST and cohort requests together: at most 5 at once;
- Dashboard cost: 1,000 per 5 minutes and 108,000 per hour (a query costs days x conditions x its
  type's cost; event segmentation the number of events plus 4 per group-by, unlisted endpoints 1);
- taxonomy: at most 4 concurrent cost and 7,200 cost per hour (GET 1; POST, PUT, DELETE 2).

The export endpoint publishes no rate limit beyond its size cap; the events asset's Dagster pool
bounds it, so it belongs to no group here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from types import MappingProxyType

from pipeline.limits import Budget, Grant, Limiter, Rule

COHORTS = "cohorts"
DASHBOARD = "dashboard"
DASHBOARD_AND_COHORTS = "dashboard_and_cohorts"
TAXONOMY = "taxonomy"

# Endpoint kind (the ``endpoint`` the HTTP layer passes its gate) to the groups it counts in.
ENDPOINT_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "export": (),
    "cohorts": (COHORTS, DASHBOARD_AND_COHORTS),
    "dashboard": (DASHBOARD, DASHBOARD_AND_COHORTS),
    "taxonomy": (TAXONOMY,),
})



def group_name(project: str, group: str) -> str:
    """A project's own group: Amplitude's limits are per project."""
    return f"{project}:{group}"


def amplitude_rules(overrides: Mapping[str, Rule] | None = None, *, project: str = "amplitude",
                    window_margin_seconds: float = 1.0) -> dict[str, Rule]:
    """The published limits of one project (its namespace names its groups), with whole groups
    replaced by ``overrides`` (tests and the simulator run with small windows and budgets: name
    the group and give its scaled-down rule).

    Every window is kept ``window_margin_seconds`` longer than published: the client counts a
    request from when it lets it go, the server from when it arrives, and two requests can be
    delayed unequally on the way, so one let through at a window's very edge could still land
    inside the server's window.
    """
    rules = {
        COHORTS: Rule(max_concurrent=4, budgets=(Budget(600.0, max_requests=60),)),
        DASHBOARD_AND_COHORTS: Rule(max_concurrent=5),
        DASHBOARD: Rule(budgets=(Budget(300.0, max_cost=1_000.0),
                                 Budget(3_600.0, max_cost=108_000.0))),
        TAXONOMY: Rule(max_concurrent_cost=4.0, budgets=(Budget(3_600.0, max_cost=7_200.0),)),
    }
    unknown = sorted(set(overrides or {}) - set(rules))
    if unknown:
        raise ValueError(f"no Amplitude limit group {unknown}; the groups are {sorted(rules)}")
    return {group_name(project, group): replace(rule, budgets=tuple(
                replace(budget, window_seconds=budget.window_seconds + window_margin_seconds)
                for budget in rule.budgets))
            for group, rule in (rules | dict(overrides or {})).items()}


def groups_for(endpoint: str, project: str = "amplitude") -> tuple[str, ...]:
    """The project's limit groups of an endpoint kind; an unknown kind is an error, never
    unlimited."""
    try:
        return tuple(group_name(project, group) for group in ENDPOINT_GROUPS[endpoint])
    except KeyError:
        raise ValueError(f"unknown Amplitude endpoint kind {endpoint!r}; "
                         f"one of {sorted(ENDPOINT_GROUPS)}") from None


def segmentation_cost(events: int, group_bys: int = 0, days: int = 1) -> float:
    """Cost of an event segmentation query: per event 1, plus 4 per group-by of each event.

    The docs' general formula also multiplies by the days queried; pass ``days`` to budget that
    way (more cautious, so never a 429 if Amplitude counts days).
    """
    return float(days * events * (1 + 4 * group_bys))


class AmplitudeGate:
    """The ``RequestGate`` the HTTP layer enters around each request (``ApiClient(gate=...)``).

    It waits for room in the endpoint's groups and, when a 429 leaves the ``with``, pauses those
    groups for its Retry-After, so every thread and run backs off, not only the one told.
    """

    def __init__(self, limiter: Limiter, *, project: str = "amplitude",
                 default_penalty_seconds: float = 5.0) -> None:
        self.limiter = limiter
        self.project = project
        self.default_penalty_seconds = default_penalty_seconds

    @contextmanager
    def __call__(self, endpoint: str, cost: float = 1.0) -> Iterator[Grant]:
        with self.limiter.holding(groups_for(endpoint, self.project), cost,
                                  default_penalty_seconds=self.default_penalty_seconds) as grant:
            yield grant


def overrides_from_json(text: str) -> dict[str, Rule]:
    """Groups replaced from ``AMPLITUDE_RATE_LIMITS``, for a plan with other limits (or a test):
    ``{"cohorts": {"max_concurrent": 2, "budgets": [[600, 30]]}}``, a budget being
    ``[window_seconds, max_requests]`` or ``[window_seconds, null, max_cost]``."""
    try:
        groups = json.loads(text)
        return {
            group: Rule(max_concurrent=spec.get("max_concurrent"),
                        max_concurrent_cost=spec.get("max_concurrent_cost"),
                        budgets=tuple(Budget(float(b[0]), *(b[1:] if len(b) > 1 else []))
                                      for b in spec.get("budgets", ())))
            for group, spec in groups.items()}
    except (ValueError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"AMPLITUDE_RATE_LIMITS is not a map of limit groups: {error}") from None
