"""The Dashboard REST endpoints the project snapshots, answered from ``counts`` (seed 001).

- ``GET /api/2/users?start=YYYYMMDD&end=YYYYMMDD&m=active|new&i=1``:
  ``{"data": {"series": [[n, ...]], "seriesMeta": [{"segmentIndex": 0}], "xValues":
  ["YYYY-MM-DD", ...]}}`` (``m`` defaults to active).
- ``GET /api/2/events/segmentation?e={"event_type": "_all"}&m=totals&start=..&end=..&i=1``:
  ``{"data": {"series": [[...]], "seriesLabels": [0], "seriesCollapsed": [[{"setId": "",
  "value": N}]], "xValues": [...]}}``; ``e2`` adds a second series. ``event_type`` is ``_all``
  (any event), ``_active`` (any active event) or a type; ``m`` is ``totals`` or ``uniques``
  (the default, as in Amplitude); a collapsed ``uniques`` counts distinct users over the range.
- ``GET /api/2/events/list``: every visible event type with the fields the docs show and those
  they do not (``id``, ``name``, ``totals_delta``, ``autohidden``, ``clusters_hidden``,
  ``in_waitroom``, ``timeline_hidden``, as Airbyte's schema has them). ``totals`` is "the current
  week": the 7 project-zone days ending on the span's last day; ``totals_delta`` is that minus
  the 7 days before.

Users are canonical (``counts``): with merges, a merged user's ids count as one user, its
original id, on each day it has events; it is new on the day of its first event.

Beyond ``data`` the chart answers carry the bookkeeping fields Amplitude adds (``timeComputed``,
``wasCached``, ``novaCost``...), which clients must ignore. What the simulator does not compute
it refuses with 400 rather than answer wrongly: intervals other than daily (``i=1``), segments
(``s``), group-bys (``g``, ``group_by``), event filters, and any request while the project has
no span (``SimulatorConfig.first_hour``/``last_hour``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import date, datetime, timedelta
from typing import Any

from simulator import counts
from simulator.protocol import Response, error_json, json_response
from simulator.taxonomy import event_kinds

MSG_NO_SPAN = (
    "The simulator needs a bounded project to count: set SimulatorConfig.first_hour and "
    "last_hour (the upload hours holding events)."
)


def _last(query: dict[str, list[str]], name: str, default: str = "") -> str:
    values = query.get(name)
    return values[-1] if values else default


def _events(query: dict[str, list[str]]) -> list[dict[str, Any]] | str:
    """The ``e`` and ``e2`` event objects, or what is wrong with them."""
    out = []
    for name in ("e", "e2"):
        raw = _last(query, name)
        if not raw:
            if name == "e":
                return "Missing required parameter: e"
            continue
        try:
            event = json.loads(raw)
        except ValueError:
            return f"Parameter {name} is not valid JSON"
        if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
            return f"Parameter {name} must be an object with an event_type"
        out.append(event)
    return out


def segmentation_cost(query: dict[str, list[str]]) -> int:
    """The number of events, plus 4 per group-by of each (at least 1)."""
    events = _events(query)
    if isinstance(events, str):
        return 1
    return max(1, sum(1 + 4 * len(e.get("group_by") or []) for e in events))


class Dashboard:
    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self._lock = threading.Lock()
        self._counts: counts.DailyCounts | None = None

    @property
    def config(self) -> Any:
        return self.sim.config

    def counts(self) -> counts.DailyCounts:
        """The project's counts (computed once, on first use, from the config of that moment)."""
        with self._lock:
            if self._counts is None:
                self._counts = counts.compute(self.config)
            return self._counts

    def _range(self, query: dict[str, list[str]]) -> tuple[date, date] | Response:
        if self.config.span is None:
            return error_json(400, MSG_NO_SPAN)
        parsed = []
        for name in ("start", "end"):
            value = _last(query, name)
            try:
                if len(value) != 8 or not value.isdigit():
                    raise ValueError
                parsed.append(datetime.strptime(value, "%Y%m%d").date())
            except ValueError:
                return error_json(400, f"Invalid or missing {name}: use the format YYYYMMDD")
        if parsed[0] > parsed[1]:
            return error_json(400, "Invalid range: start is after end")
        if _last(query, "i", "1") != "1":
            return error_json(400, "The simulator serves daily intervals only (i=1)")
        for name in ("s", "g"):
            if _last(query, name) not in ("", "[]"):
                return error_json(400, f"The simulator does not support the parameter {name}")
        return parsed[0], parsed[1]

    def _chart(self, data: dict[str, Any], cost: int, began: float) -> Response:
        took = int((time.monotonic() - began) * 1000)
        return json_response(
            200,
            {
                "data": data,
                "timeComputed": int(time.time() * 1000),
                "wasCached": False,
                "cacheFreshness": "FRESH",
                "novaRuntime": took,
                "novaRequestDuration": took,
                "novaCost": cost,
                "throttleTime": 0,
                "minSampleRate": 1.0,
                "transformationIds": [],
            },
        )

    def users(self, query: dict[str, list[str]]) -> Response:
        began = time.monotonic()
        span = self._range(query)
        if isinstance(span, Response):
            return span
        metric = _last(query, "m", "active")
        if metric not in ("active", "new"):
            return error_json(400, f"Invalid m {metric!r}: use active or new")
        tally = self.counts()
        dates = counts.days(*span)
        values = [tally.active(d) if metric == "active" else tally.new(d) for d in dates]
        data = {
            "series": [values],
            "seriesMeta": [{"segmentIndex": 0}],
            "xValues": [d.isoformat() for d in dates],
        }
        return self._chart(data, 1, began)

    def segmentation(self, query: dict[str, list[str]]) -> Response:
        began = time.monotonic()
        span = self._range(query)
        if isinstance(span, Response):
            return span
        events = _events(query)
        if isinstance(events, str):
            return error_json(400, events)
        if any(e.get("filters") or e.get("group_by") for e in events):
            return error_json(400, "The simulator does not support event filters or group_by")
        metric = _last(query, "m", "uniques")
        if metric not in ("totals", "uniques"):
            return error_json(400, f"The simulator supports m=totals and m=uniques, not {metric}")
        tally = self.counts()
        dates = counts.days(*span)
        series, collapsed = [], []
        for event in events:
            kind = event["event_type"]
            if metric == "totals":
                row = [tally.total(d, kind) for d in dates]
                whole = sum(row)
            else:
                row = [len(tally.users(d, kind)) for d in dates]
                whole = len(set().union(*(tally.users(d, kind) for d in dates)))
            series.append(row)
            collapsed.append([{"setId": "", "value": whole}])
        data = {
            "series": series,
            "seriesLabels": list(range(len(events))),
            "seriesCollapsed": collapsed,
            "xValues": [d.isoformat() for d in dates],
        }
        return self._chart(data, segmentation_cost(query), began)

    def events_list(self) -> Response:
        span = self.config.span
        if span is None:
            return error_json(400, MSG_NO_SPAN)
        tally = self.counts()
        last_day = (span[1] + timedelta(minutes=59, seconds=59)).astimezone(self.config.zone)
        week = counts.days(last_day.date() - timedelta(days=6), last_day.date())
        before = [d - timedelta(days=7) for d in week]
        names = list(event_kinds())
        names += sorted(tally.event_types - set(names))
        data = []
        for name in names:
            if name in self.config.hidden_event_types:
                continue
            totals = sum(tally.total(d, name) for d in week)
            previous = sum(tally.total(d, name) for d in before)
            data.append(
                {
                    "id": int(hashlib.sha256(name.encode()).hexdigest()[:8], 16),
                    "value": name,
                    "display": name,
                    "name": name,
                    "totals": totals,
                    "totals_delta": totals - previous,
                    "non_active": name in self.config.inactive_event_types,
                    "deleted": False,
                    "hidden": False,
                    "flow_hidden": False,
                    "autohidden": False,
                    "clusters_hidden": False,
                    "in_waitroom": False,
                    "timeline_hidden": False,
                }
            )
        return json_response(200, {"data": data})
