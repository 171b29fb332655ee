"""Chart annotations (Dashboard REST API v3) and the Taxonomy API's event categories.

Shapes (Amplitude's ``chart-annotations.md`` and ``taxonomy.md``; shared/reference 4.2, 4.3):

- ``GET /api/3/annotations``: ``{"data": [{"id", "start", "details", "category": {"id", "name"},
  "end", "label", "chart_id"}]}``; ``start``/``end`` are hourly ISO 8601 in UTC
  (``2026-03-06T05:00:00+00:00``), ``end`` null for a point in time, ``details`` may be null,
  ``chart_id`` is a string or null (null: global, shown on every chart), ``category`` null for
  an annotation filed under none (the docs make it optional; its null shape is a guess).
  Filters: ``category`` (a name: only that category's), ``chart_id`` (those shown on that chart:
  its own and the global ones; the docs say it does not combine with ``category``, so both is
  400), ``start`` (those starting at or after it), ``end`` (those ending, or for a point
  starting, at or before it). An unparsable timestamp is 400.
- ``GET /api/3/annotations/{id}``: ``{"data": {...}}``, 404 for an unknown id.
- ``GET /api/3/annotation-categories``: ``{"data": [{"id", "name"}]}``; ``?category=NAME`` only
  that one (404 when there is none); ``/api/3/annotation-categories/{id}`` one.
- ``GET /api/2/taxonomy/category``: ``{"success": true, "data": [{"id", "name"}]}``: the event
  categories the taxonomy's event types are filed under; ``/api/2/taxonomy/category/{name}``:
  ``{"success": true, "data": {"id", "name"}}``, else 400 "Not found" (as the docs show).

Sample data: ``SimulatorConfig.annotation_categories`` and ``annotations``; with ``annotations``
None, five are placed inside the span (none without a span): a release, a campaign over days,
an incident on one chart, a note filed under no category, and a global note at the last hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator import generator
from simulator.protocol import Response, error_json, json_response


@dataclass(frozen=True)
class AnnotationCategory:
    id: int
    name: str


@dataclass(frozen=True)
class Annotation:
    """One chart annotation; ``category`` names one of the config's categories (or None)."""

    id: int
    label: str
    start: datetime  # a whole UTC hour (a naive datetime is UTC)
    end: datetime | None = None
    details: str | None = None
    category: str | None = None
    chart_id: str | None = None


DEFAULT_ANNOTATION_CATEGORIES = (
    AnnotationCategory(12345, "Alerts"),
    AnnotationCategory(6789, "Releases"),
    AnnotationCategory(6790, "Marketing"),
    AnnotationCategory(6791, "Incidents"),
)
CHART_ID = "k3x9zd1"


def _iso(ts: datetime) -> str:
    return generator.utc_hour(ts).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def sample_annotations(config: Any) -> tuple[Annotation, ...]:
    """The config's annotations, or the generated sample inside its span."""
    if config.annotations is not None:
        return tuple(config.annotations)
    span = config.span
    if span is None:
        return ()
    first, last = span
    hours = int((last - first).total_seconds()) // 3600

    def at(share: float) -> datetime:
        return first + timedelta(hours=int(hours * share))

    base = 40_000 + generator._stream_seed(config.project_id, config.seed, 0xA770) % 900_000
    return (
        Annotation(base, "Release 5.3.0", at(0.2), None, "iOS and Android", "Releases"),
        Annotation(base + 1, "Spring campaign «Frühling»", at(0.3), at(0.8), None, "Marketing"),
        Annotation(
            base + 2,
            "Checkout outage",
            at(0.5),
            at(0.5) + timedelta(hours=2),
            'payments "PSP" timeouts',
            "Incidents",
            CHART_ID,
        ),
        Annotation(base + 3, "Pricing page test 🧪", at(0.6), None, "filed under no category"),
        Annotation(base + 4, "Data freeze", last, None, None, "Releases"),
    )


def _parse(value: str) -> datetime | None:
    try:
        ts = datetime.fromisoformat(value.strip().replace(" ", "+").replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def _last(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[-1] if values else ""


class Annotations:
    def __init__(self, sim: Any) -> None:
        self.sim = sim

    @property
    def config(self) -> Any:
        return self.sim.config

    def _categories(self) -> dict[str, AnnotationCategory]:
        return {c.name: c for c in self.config.annotation_categories}

    def _item(self, a: Annotation, categories: dict[str, AnnotationCategory]) -> dict[str, Any]:
        category = categories.get(a.category) if a.category is not None else None
        return {
            "id": a.id,
            "start": _iso(a.start),
            "details": a.details,
            "category": None if category is None else {"id": category.id, "name": category.name},
            "end": None if a.end is None else _iso(a.end),
            "label": a.label,
            "chart_id": a.chart_id,
        }

    def listing(self, query: dict[str, list[str]]) -> Response:
        category, chart = _last(query, "category"), _last(query, "chart_id")
        if category and chart:
            return error_json(400, "Invalid request: category and chart_id do not combine")
        bounds = []
        for name in ("start", "end"):
            raw = _last(query, name)
            parsed = _parse(raw) if raw else None
            if raw and parsed is None:
                return error_json(400, f"Invalid request: {name} is not ISO 8601")
            bounds.append(parsed)
        start, end = bounds
        categories = self._categories()
        data = []
        for a in sample_annotations(self.config):
            begins = generator.utc_hour(a.start)
            ends = generator.utc_hour(a.end) if a.end is not None else begins
            if category and a.category != category:
                continue
            if chart and a.chart_id not in (None, chart):
                continue
            if (start is not None and begins < start) or (end is not None and ends > end):
                continue
            data.append(self._item(a, categories))
        return json_response(200, {"data": data})

    def one(self, annotation_id: str) -> Response:
        categories = self._categories()
        for a in sample_annotations(self.config):
            if str(a.id) == annotation_id:
                return json_response(200, {"data": self._item(a, categories)})
        if not annotation_id.isdigit():
            return error_json(400, "Invalid annotation ID")
        return error_json(404, "Annotation not found")

    def categories(self, query: dict[str, list[str]]) -> Response:
        name = _last(query, "category")
        data = [
            {"id": c.id, "name": c.name}
            for c in self.config.annotation_categories
            if not name or c.name == name
        ]
        if name and not data:
            return error_json(404, "Category not found")
        return json_response(200, {"data": data})

    def category(self, category_id: str) -> Response:
        for c in self.config.annotation_categories:
            if str(c.id) == category_id:
                return json_response(200, {"data": {"id": c.id, "name": c.name}})
        if not category_id.isdigit():
            return error_json(400, "Invalid category ID")
        return error_json(404, "Category not found")
