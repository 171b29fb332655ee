"""Chart annotations (``/api/3/annotations``, ``/api/3/annotation-categories``) and the taxonomy's
event categories (``/api/2/taxonomy/category``) over real HTTP: shapes as Amplitude's docs show
them, the filters, auth, the limit groups, and the sample data inside the span."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from simulator import Annotation, AnnotationCategory, RateLimits, Simulator, SimulatorConfig

AUTH = ("sim-api-key", "sim-secret-key")
FIRST, LAST = datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 3, 9, 23, tzinfo=UTC)
ISO = "%Y-%m-%dT%H:%M:%S+00:00"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(first_hour=FIRST, last_hour=LAST)) as simulator:
        yield simulator


@pytest.fixture
def api(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, auth=AUTH, timeout=10) as http:
        yield http
    assert sim.errors == []


def data(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["data"]
    return body["data"]


def test_annotations_have_the_v3_shape_and_lie_inside_the_span(api: httpx.Client):
    rows = data(api.get("/api/3/annotations"))
    assert len(rows) == 5
    categories = {c["name"]: c for c in data(api.get("/api/3/annotation-categories"))}
    for row in rows:
        assert set(row) == {"id", "start", "end", "label", "details", "category", "chart_id"}
        assert isinstance(row["id"], int) and isinstance(row["label"], str)
        start = datetime.strptime(row["start"], ISO).replace(tzinfo=UTC)
        assert FIRST <= start <= LAST and start.minute == 0
        if row["end"] is not None:
            assert datetime.strptime(row["end"], ISO).replace(tzinfo=UTC) > start
        if row["category"] is not None:
            assert row["category"] == categories[row["category"]["name"]]
        assert row["details"] is None or isinstance(row["details"], str)
        assert row["chart_id"] is None or isinstance(row["chart_id"], str)
    assert {r["category"]["name"] if r["category"] else None for r in rows} == {
        "Releases", "Marketing", "Incidents", None,
    }  # fmt: skip
    assert sum(r["end"] is not None for r in rows) == 2
    assert sum(r["chart_id"] is not None for r in rows) == 1
    assert len({r["id"] for r in rows}) == 5
    one = rows[2]
    assert data(api.get(f"/api/3/annotations/{one['id']}")) == one
    assert api.get("/api/3/annotations/1").status_code == 404


def test_annotation_filters(api: httpx.Client):
    rows = data(api.get("/api/3/annotations"))
    releases = data(api.get("/api/3/annotations", params={"category": "Releases"}))
    assert releases and all(r["category"]["name"] == "Releases" for r in releases)
    assert data(api.get("/api/3/annotations", params={"category": "Nope"})) == []
    chart = next(r["chart_id"] for r in rows if r["chart_id"])
    on_chart = data(api.get("/api/3/annotations", params={"chart_id": chart}))
    assert on_chart == [r for r in rows if r["chart_id"] in (None, chart)]  # global ones show too
    assert len(data(api.get("/api/3/annotations", params={"chart_id": "other"}))) == 4
    both = {"category": "Releases", "chart_id": chart}
    assert api.get("/api/3/annotations", params=both).status_code == 400
    middle = FIRST + timedelta(hours=48)
    after = data(api.get("/api/3/annotations", params={"start": middle.strftime(ISO)}))
    assert after == [r for r in rows if r["start"] >= middle.strftime(ISO)]
    before = data(api.get("/api/3/annotations", params={"end": middle.strftime(ISO)}))
    assert before == [r for r in rows if (r["end"] or r["start"]) <= middle.strftime(ISO)]
    # an unencoded "+" arrives as a space: still understood; Z too
    raw = api.get(f"/api/3/annotations?start={middle.strftime(ISO)}")
    assert data(raw) == after
    zulu = data(api.get("/api/3/annotations", params={"start": f"{middle:%Y-%m-%dT%H:%M}Z"}))
    assert zulu == after
    assert api.get("/api/3/annotations", params={"start": "yesterday"}).status_code == 400


def test_annotation_categories(api: httpx.Client):
    categories = data(api.get("/api/3/annotation-categories"))
    assert categories == [
        {"id": 12345, "name": "Alerts"},
        {"id": 6789, "name": "Releases"},
        {"id": 6790, "name": "Marketing"},
        {"id": 6791, "name": "Incidents"},
    ]
    only = data(api.get("/api/3/annotation-categories", params={"category": "Releases"}))
    assert only == [{"id": 6789, "name": "Releases"}]
    assert api.get("/api/3/annotation-categories", params={"category": "x"}).status_code == 404
    assert data(api.get("/api/3/annotation-categories/6790")) == categories[2]
    assert api.get("/api/3/annotation-categories/1").status_code == 404


def test_taxonomy_categories_join_the_event_types(api: httpx.Client):
    body = api.get("/api/2/taxonomy/category").json()
    assert list(body) == ["success", "data"] and body["success"] is True
    categories = body["data"]
    assert all(set(c) == {"id", "name"} and isinstance(c["id"], int) for c in categories)
    names = {c["name"] for c in categories}
    events = api.get("/api/2/taxonomy/event", params={"showDeleted": "true"}).json()["data"]
    assert {e["category"]["name"] for e in events} == names
    one = api.get("/api/2/taxonomy/category/Commerce").json()
    assert one == {"success": True, "data": next(c for c in categories if c["name"] == "Commerce")}
    missing = api.get("/api/2/taxonomy/category/Nope")
    assert missing.status_code == 400
    assert missing.json() == {"success": False, "errors": [{"message": "Not found"}]}


def test_auth_plan_and_limit_groups(sim: Simulator):
    for path in ("/api/3/annotations", "/api/3/annotation-categories", "/api/2/taxonomy/category"):
        assert httpx.get(f"{sim.url}{path}").status_code == 401
        assert httpx.get(f"{sim.url}{path}", auth=("sim-api-key", "wrong")).status_code == 403
    sim.reset_log()
    with httpx.Client(base_url=sim.url, auth=AUTH, timeout=10) as http:
        http.get("/api/3/annotations")
        http.get("/api/3/annotation-categories")
        http.get("/api/2/taxonomy/category")
    groups = [set(r.in_flight) for r in sim.requests]
    assert groups == [{"rest", "dashboard"}, {"rest", "dashboard"}, {"taxonomy"}]


def test_the_taxonomy_plan_and_the_rate_limits_apply():
    config = SimulatorConfig(taxonomy_enabled=False, limits=RateLimits(dashboard_cost_short=2))
    with Simulator(config) as limited, httpx.Client(base_url=limited.url, auth=AUTH) as http:
        assert http.get("/api/2/taxonomy/category").status_code == 403
        statuses = [http.get("/api/3/annotation-categories").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]


def test_annotations_come_from_the_config():
    categories = (AnnotationCategory(1, "Ops"),)
    notes = (
        Annotation(7, "Migrated", datetime(2026, 1, 2, 3), category="Ops", chart_id="abc"),
        Annotation(8, "Plain", datetime(2026, 1, 3, tzinfo=UTC), details="d"),
    )
    config = SimulatorConfig(annotation_categories=categories, annotations=notes)
    with Simulator(config) as custom, httpx.Client(base_url=custom.url, auth=AUTH) as http:
        assert data(http.get("/api/3/annotations")) == [
            {"id": 7, "start": "2026-01-02T03:00:00+00:00", "details": None,
             "category": {"id": 1, "name": "Ops"}, "end": None, "label": "Migrated",
             "chart_id": "abc"},
            {"id": 8, "start": "2026-01-03T00:00:00+00:00", "details": "d", "category": None,
             "end": None, "label": "Plain", "chart_id": None},
        ]  # fmt: skip
    with (
        Simulator(SimulatorConfig()) as unbounded,
        httpx.Client(base_url=unbounded.url, auth=AUTH) as http,
    ):
        assert data(http.get("/api/3/annotations")) == []  # no span: no sample annotations


def test_no_simulator_module_imports_the_pipeline():
    code = (
        "import pkgutil, importlib, sys, simulator\n"
        "for m in pkgutil.iter_modules(simulator.__path__):\n"
        "    if not m.name.startswith('_'): importlib.import_module('simulator.' + m.name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pipeline', 'assets', 'resources',"
        " 'dagster'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
