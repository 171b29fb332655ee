"""Routing for the Amplitude endpoints besides the export: cohorts, taxonomy, Dashboard REST
(with the chart annotations and their categories, ``annotations``).

Every one of them, as the export: HTTP Basic auth with the project's key and secret (none or
garbled: 401; wrong: 403 "Invalid API Key"); GET (or HEAD) only, else 405. Then, in order: the
taxonomy's plan check (``taxonomy_enabled``), the rate limits (``limits``; 429 with
``Retry-After``), ``api_latency_seconds`` of "query time" holding the slot, and the answer.

The request log's ``time`` of an admitted request is the moment it was admitted, and its ``end``
is stamped, and its slot released, just before the client can have the whole answer (see
``Handler.send``): start/end overlaps in the log never exceed what the limiter allowed, and a
client that starts its next request after an answer never meets a slot not yet freed. A GET
body (the taxonomy takes ``event_type`` form-urlencoded) is read and merged into the query.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from simulator.annotations import Annotations
from simulator.cohorts import CohortService
from simulator.dashboard import Dashboard, segmentation_cost
from simulator.limits import (
    COHORT_GROUPS,
    DASHBOARD_GROUPS,
    TAXONOMY_GROUPS,
    Limiter,
    Refusal,
)
from simulator.protocol import (
    Handler,
    RequestRecord,
    Response,
    credentials,
    error_json,
    text,
    unauthorized,
)
from simulator.taxonomy import MSG_ENTERPRISE, Taxonomy, errors

_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    groups: tuple[str, ...]

    @property
    def taxonomy(self) -> bool:
        return self.groups == TAXONOMY_GROUPS


ROUTES = tuple(
    Route(name, re.compile(pattern), groups)
    for name, pattern, groups in (
        ("cohorts", r"/api/3/cohorts", COHORT_GROUPS),
        ("cohort_request", r"/api/5/cohorts/request/([^/]+)", COHORT_GROUPS),
        ("cohort_file", r"/api/5/cohorts/request/([^/]+)/file", COHORT_GROUPS),
        ("cohort_status", r"/api/5/cohorts/request-status/([^/]+)", COHORT_GROUPS),
        ("users", r"/api/2/users", DASHBOARD_GROUPS),
        ("segmentation", r"/api/2/events/segmentation", DASHBOARD_GROUPS),
        ("events_list", r"/api/2/events/list", DASHBOARD_GROUPS),
        ("annotations", r"/api/3/annotations", DASHBOARD_GROUPS),
        ("annotation", r"/api/3/annotations/([^/]+)", DASHBOARD_GROUPS),
        ("annotation_categories", r"/api/3/annotation-categories", DASHBOARD_GROUPS),
        ("annotation_category", r"/api/3/annotation-categories/([^/]+)", DASHBOARD_GROUPS),
        ("taxonomy_event", r"/api/2/taxonomy/event", TAXONOMY_GROUPS),
        ("taxonomy_event_property", r"/api/2/taxonomy/event-property", TAXONOMY_GROUPS),
        ("taxonomy_user_property", r"/api/2/taxonomy/user-property", TAXONOMY_GROUPS),
        ("taxonomy_categories", r"/api/2/taxonomy/category", TAXONOMY_GROUPS),
        ("taxonomy_category", r"/api/2/taxonomy/category/([^/]+)", TAXONOMY_GROUPS),
    )
)


class Api:
    """The endpoints' state (cohort jobs, counts, limiter) and their serving."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.limiter = Limiter(sim.config.limits)  # fixed when the simulator is built
        self.cohorts = CohortService(sim)
        self.dashboard = Dashboard(sim)
        self.taxonomy = Taxonomy(sim)
        self.annotations = Annotations(sim)

    @property
    def config(self) -> Any:
        """The simulator's config now (a test may replace ``sim.config`` while it runs)."""
        return self.sim.config

    def route(self, path: str) -> tuple[Route, tuple[str, ...]] | None:
        for route in ROUTES:
            match = route.pattern.fullmatch(path)
            if match:
                return route, tuple(unquote(g) for g in match.groups())
        return None

    def serve(
        self,
        handler: Handler,
        record: RequestRecord,
        routed: tuple[Route, tuple[str, ...]],
        query: dict[str, list[str]],
    ) -> None:
        route, args = routed
        length = handler.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > 0:
            body = handler.rfile.read(min(int(length), _MAX_BODY))
            for key, values in parse_qs(body.decode("utf-8", "replace")).items():
                query.setdefault(key, []).extend(values)
        refused = self._check(handler, route)
        if refused is not None:
            handler.send(record, refused, None)
            return
        cost = segmentation_cost(query) if route.name == "segmentation" else 1
        admitted = self.limiter.admit(route.groups, cost)
        if isinstance(admitted, Refusal):
            record.in_flight, record.limit = admitted.in_flight, admitted.limit
            body = errors if route.taxonomy else error_json
            response = body(429, admitted.message)
            response.headers["Retry-After"] = str(admitted.retry_after)
            handler.send(record, response, None)
            return
        in_flight, record.time = admitted
        record.in_flight, record.cost = in_flight, cost
        released = False

        def finish() -> None:  # just before the client can have its whole answer
            nonlocal released
            if not released:
                released = True
                record.end = time.monotonic()
                self.limiter.release(route.groups, cost)

        try:
            latency = self.config.api_latency_seconds
            if latency > 0 and self.sim._stopping.wait(latency):
                handler.close_connection = True
                return
            handler.send(record, self._answer(route, args, query), None, finish)
        finally:
            finish()

    def _check(self, handler: Handler, route: Route) -> Response | None:
        if handler.command not in ("GET", "HEAD"):
            return text(405, "Method Not Allowed", Allow="GET")
        creds = credentials(handler.headers.get("Authorization"))
        if creds is None:
            return unauthorized()
        if creds != (self.config.api_key, self.config.secret_key):
            return error_json(403, "Invalid API Key")
        if route.taxonomy and not self.config.taxonomy_enabled:
            return errors(403, MSG_ENTERPRISE)
        return None

    def _answer(self, route: Route, args: tuple[str, ...], query: dict[str, list[str]]) -> Response:
        deleted = (query.get("showDeleted") or [""])[-1].lower() == "true"
        name = route.name
        if name == "cohorts":
            return self.cohorts.list(query)
        if name == "cohort_request":
            return self.cohorts.request(args[0], query)
        if name == "cohort_file":
            return self.cohorts.file(args[0])
        if name == "cohort_status":
            return self.cohorts.status(args[0])
        if name == "users":
            return self.dashboard.users(query)
        if name == "segmentation":
            return self.dashboard.segmentation(query)
        if name == "events_list":
            return self.dashboard.events_list()
        if name == "annotations":
            return self.annotations.listing(query)
        if name == "annotation":
            return self.annotations.one(args[0])
        if name == "annotation_categories":
            return self.annotations.categories(query)
        if name == "annotation_category":
            return self.annotations.category(args[0])
        if name == "taxonomy_categories":
            return self.taxonomy.categories()
        if name == "taxonomy_category":
            return self.taxonomy.category(args[0])
        if name == "taxonomy_event":
            return self.taxonomy.events(deleted)
        if name == "taxonomy_event_property":
            event_type = (query.get("event_type") or [""])[-1] or None
            return self.taxonomy.event_properties(event_type, deleted)
        return self.taxonomy.user_properties(deleted)
