"""The simulated Taxonomy API over real HTTP: shapes, ``showDeleted``, per-event and shared event
properties, derived from what the export actually carries, and the Enterprise-plan 403."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from simulator import Simulator, SimulatorConfig, hour_lines

AUTH = ("sim-api-key", "sim-secret-key")
BASE = "/api/2/taxonomy"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(
        hidden_event_types=frozenset({"注文完了"}), inactive_event_types=frozenset({"session_end"})
    )
    with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
def api(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, auth=AUTH, timeout=10) as http:
        yield http
    assert sim.errors == []


def data(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "data"} and body["success"] is True
    return body["data"]


def sample_events() -> list[dict]:
    hour = datetime(2025, 7, 1, 17, tzinfo=UTC)
    return [json.loads(line) for line in hour_lines(636686, hour, 3_000)]


def test_event_types_are_those_the_export_carries(api: httpx.Client):
    items = data(api.get(f"{BASE}/event"))
    names = {i["event_type"] for i in items}
    assert {e["event_type"] for e in sample_events()} - {"注文完了"} <= names
    assert "注文完了" not in names  # hidden events are excluded
    fields = {"event_type", "category", "description", "display_name", "is_active",
              "is_hidden_from_dropdowns", "is_hidden_from_persona_results",
              "is_hidden_from_pathfinder", "is_hidden_from_timeline", "tags", "owner"}  # fmt: skip
    for item in items:
        assert fields <= set(item) and isinstance(item["category"]["name"], str)
        assert isinstance(item["tags"], list)
        assert item["deleted"] is False
    assert {i["event_type"]: i["is_active"] for i in items}["session_end"] is False
    everything = data(api.get(f"{BASE}/event", params={"showDeleted": "true"}))
    deleted = [i for i in everything if i["deleted"]]
    assert deleted and len(everything) == len(items) + len(deleted)


def test_event_properties_per_event_and_shared(api: httpx.Client):
    fields = {"event_property", "event_type", "description", "type", "regex", "enum_values",
              "is_array_type", "is_required", "is_hidden", "classifications"}  # fmt: skip
    purchase = data(api.get(f"{BASE}/event-property", params={"event_type": "purchase"}))
    assert {p["event_property"] for p in purchase} == {"price", "currency", "quantity"}
    assert all(fields <= set(p) and p["event_type"] == "purchase" for p in purchase)
    body = api.request("GET", f"{BASE}/event-property", content=b"event_type=search",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert {p["event_property"] for p in data(body)} == {"query", "results"}
    shared = {p["event_property"] for p in data(api.get(f"{BASE}/event-property"))}
    own: dict[str, set[str]] = {}
    for event in sample_events():
        kind = event["event_type"]
        if kind not in own:
            params = {"event_type": kind}
            own[kind] = {
                p["event_property"] for p in data(api.get(f"{BASE}/event-property", params=params))
            }
        assert set(event["event_properties"]) <= shared | own[kind], kind
    with_deleted = data(api.get(f"{BASE}/event-property", params={"showDeleted": "true"}))
    assert [p["event_property"] for p in with_deleted if p["deleted"]] == ["legacy_ref"]
    unknown = api.get(f"{BASE}/event-property", params={"event_type": "no such event"})
    assert unknown.status_code == 404 and unknown.json()["success"] is False


def test_user_properties_with_gp_prefix_and_built_ins(api: httpx.Client):
    items = data(api.get(f"{BASE}/user-property"))
    names = {i["user_property"] for i in items}
    assert {"amplitude_id", "device_id", "country", "gp:plan", "gp:initial_utm_source"} <= names
    for event in sample_events()[:200]:
        for key in event["user_properties"]:
            assert key in names or f"gp:{key}" in names
    deleted = data(api.get(f"{BASE}/user-property", params={"showDeleted": "true"}))
    assert [i["user_property"] for i in deleted if i["deleted"]] == ["gp:legacy_tier"]


def test_without_the_enterprise_plan_taxonomy_is_403():
    with (
        Simulator(SimulatorConfig(taxonomy_enabled=False)) as sim,
        httpx.Client(base_url=sim.url, auth=AUTH) as api,
    ):
        for path in ("event", "event-property", "user-property"):
            response = api.get(f"{BASE}/{path}")
            assert response.status_code == 403
            assert "Enterprise" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("auth", [None, ("wrong", "sim-secret-key")])
@pytest.mark.parametrize("path", ["event", "event-property", "user-property"])
def test_taxonomy_needs_the_projects_credentials(sim: Simulator, path, auth):
    response = httpx.get(f"{sim.url}{BASE}/{path}", auth=auth)
    assert response.status_code == (401 if auth is None else 403)


def test_only_get(api: httpx.Client):
    assert api.post(f"{BASE}/event", data={"event_type": "x"}).status_code == 405
