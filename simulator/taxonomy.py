"""The Taxonomy API, derived from what the generator actually sends (so the snapshot and the
events can be joined): ``{"success": true, "data": [...]}``, errors ``{"success": false,
"errors": [{"message": ...}]}`` (shared/reference 4.2).

- ``GET /api/2/taxonomy/event``: one item per event type the generator emits, except
  ``hidden_event_types`` (the docs: hidden events are excluded); ``is_active`` is false for
  ``inactive_event_types``.
- ``GET /api/2/taxonomy/event-property``: with ``event_type`` (query string, or a
  form-urlencoded body as the docs show) the properties only that event type carries (hidden
  types included: hiding only keeps a type out of lists); an event type the project does not
  know is 404. Without it, the shared properties every event can carry
  (``event_type`` ""): ``path``, ``count``..., ``Path`` and the ``wide_prop_*`` of wide events.
- ``GET /api/2/taxonomy/user-property``: the built-ins (``amplitude_id``, ``device_id``,
  ``country``...) and the custom ones with their ``gp:`` prefix.
- ``GET /api/2/taxonomy/category``: ``[{"id", "name"}]``, the categories the event types are
  filed under (``Deprecated`` for the deleted ones), so ``category.name`` of an event type
  joins it; ``/api/2/taxonomy/category/{name}`` one, else 400 "Not found" (as the docs show).

``showDeleted=true`` adds entries deleted from the plan, which never occur in events, with
``"deleted": true``; every item carries ``deleted``. Types are Amplitude's names ("string",
"number", "boolean", "any"); a property whose values vary in type is "any".
"""

from __future__ import annotations

from typing import Any

from simulator import generator, members
from simulator.protocol import Response, json_response

_CATEGORY = {"purchase": "Commerce", "revenue": "Commerce", "search": "Discovery",
             "session": "Sessions", "identify": "Identity", "plain": "Engagement"}  # fmt: skip
EVENT_CATEGORIES = tuple(
    {"id": 412931 + 10 * k, "name": name}
    for k, name in enumerate(dict.fromkeys([*_CATEGORY.values(), "Deprecated"]))
)
DELETED_EVENT_TYPES = ("legacy_checkout", "onboarding_step_v1")
SHARED_PROPS = (("path", "string"), ("count", "number"), ("ratio", "number"),
                ("flag", "boolean"), ("missing", "any"), ("nested", "any"), ("Path", "string"),
                *((f"wide_prop_{i:03d}", "any") for i in range(150)))  # fmt: skip
KIND_PROPS = {
    "purchase": (("price", "number"), ("currency", "string"), ("quantity", "number")),
    "revenue": (("$revenue", "number"), ("$price", "number"), ("$quantity", "number"),
                ("$productId", "string"), ("$revenueType", "any")),
    "search": (("query", "string"), ("results", "number")),
}  # fmt: skip
DELETED_EVENT_PROPS = (("legacy_ref", "string"),)
USER_PROP_TYPES = {"amplitude_id": "number", "paying": "boolean", "gp:ltv": "number",
                   "gp:cohorts": "string", "gp:address": "any"}  # fmt: skip
DELETED_USER_PROPS = ("gp:legacy_tier",)
MSG_ENTERPRISE = (
    "Forbidden: the Taxonomy API is available to Enterprise customers only; this project's plan "
    "does not include it."
)


def event_kinds() -> dict[str, str]:
    """Event type -> the generator's kind, in the generator's order."""
    return {name: kind for name, kind, _ in generator._EVENT_TYPES}


def errors(status: int, message: str) -> Response:
    return json_response(status, {"success": False, "errors": [{"message": message}]})


def _ok(data: list[dict[str, Any]]) -> Response:
    return json_response(200, {"success": True, "data": data})


def _event(name: str, kind: str, *, active: bool, deleted: bool) -> dict[str, Any]:
    return {
        "event_type": name,
        "category": {"name": _CATEGORY.get(kind, "Deprecated")},
        "description": f"The {name} event" if not deleted else "Removed from the tracking plan",
        "display_name": name,
        "is_active": active,
        "is_hidden_from_dropdowns": False,
        "is_hidden_from_persona_results": False,
        "is_hidden_from_pathfinder": False,
        "is_hidden_from_timeline": False,
        "tags": ["generated"] if not deleted else [],
        "owner": "analyst@example.com",
        "deleted": deleted,
    }


def _property(name: str, kind: str, event_type: str, *, deleted: bool) -> dict[str, Any]:
    return {
        "event_property": name,
        "event_type": event_type,
        "description": "",
        "type": kind,
        "regex": "",
        "enum_values": "EUR" if name == "currency" else "",
        "is_array_type": False,
        "is_required": name in ("path", "price"),
        "is_hidden": False,
        "classifications": [],
        "deleted": deleted,
    }


def _user_property(name: str, *, deleted: bool) -> dict[str, Any]:
    return {
        "user_property": name,
        "description": "",
        "type": USER_PROP_TYPES.get(name, "string"),
        "enum_values": "free,pro,enterprise" if name == "gp:plan" else "",
        "regex": "",
        "is_array_type": name == "gp:cohorts",
        "is_hidden": False,
        "classifications": ["PII"] if name in ("user_id", "gp:address") else [],
        "deleted": deleted,
    }


class Taxonomy:
    def __init__(self, sim: Any) -> None:
        self.sim = sim

    @property
    def config(self) -> Any:
        return self.sim.config

    def events(self, show_deleted: bool) -> Response:
        hidden, inactive = self.config.hidden_event_types, self.config.inactive_event_types
        data = [
            _event(name, kind, active=name not in inactive, deleted=False)
            for name, kind in event_kinds().items()
            if name not in hidden
        ]
        if show_deleted:
            data += [_event(n, "", active=False, deleted=True) for n in DELETED_EVENT_TYPES]
        return _ok(data)

    def event_properties(self, event_type: str | None, show_deleted: bool) -> Response:
        if event_type:
            kinds = event_kinds()
            if event_type not in kinds:
                return errors(404, f"Event type {event_type!r} not found")
            own = KIND_PROPS.get(kinds[event_type], ())
            return _ok([_property(n, t, event_type, deleted=False) for n, t in own])
        data = [_property(n, t, "", deleted=False) for n, t in SHARED_PROPS]
        if show_deleted:
            data += [_property(n, t, "", deleted=True) for n, t in DELETED_EVENT_PROPS]
        return _ok(data)

    def categories(self) -> Response:
        return _ok([dict(c) for c in EVENT_CATEGORIES])

    def category(self, name: str) -> Response:
        found = next((dict(c) for c in EVENT_CATEGORIES if c["name"] == name), None)
        if found is None:
            return errors(400, "Not found")
        return json_response(200, {"success": True, "data": found})

    def user_properties(self, show_deleted: bool) -> Response:
        names = list(members.BUILTIN) + list(members.CUSTOM)
        data = [_user_property(n, deleted=False) for n in names]
        if show_deleted:
            data += [_user_property(n, deleted=True) for n in DELETED_USER_PROPS]
        return _ok(data)
