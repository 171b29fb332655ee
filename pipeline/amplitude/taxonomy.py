"""The Taxonomy API: the tracking plan's event types, event properties and user properties.

``showDeleted=true`` keeps entries removed from the plan, so history can say when a property
went away. Event properties come per event type (``event_type=``) and shared (without it); both
land, one answer a file. The API is for Enterprise plans: a 403 says so.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.amplitude.client import AmplitudeClient
from pipeline.http import AuthError, not_json
from pipeline.records import Field
from pipeline.snapshots import Fetch

ENDPOINT = "taxonomy"
TAXONOMY_PLAN = ("the Taxonomy API is only open to Amplitude Enterprise plans: without one, "
                 "leave the taxonomy assets unmaterialized")

EVENT_TYPE_FIELDS = (
    Field("event_type", "event_type", "VARCHAR"),
    Field("category", "category", "JSON"),
    Field("description", "description", "VARCHAR"),
    Field("display_name", "display_name", "VARCHAR"),
    Field("is_active", "is_active", "BOOLEAN"),
    Field("is_hidden_from_dropdowns", "is_hidden_from_dropdowns", "BOOLEAN"),
    Field("is_hidden_from_persona_results", "is_hidden_from_persona_results", "BOOLEAN"),
    Field("is_hidden_from_pathfinder", "is_hidden_from_pathfinder", "BOOLEAN"),
    Field("is_hidden_from_timeline", "is_hidden_from_timeline", "BOOLEAN"),
    Field("tags", "tags", "VARCHAR[]"),
    Field("owner", "owner", "VARCHAR"),
    Field("deleted", "deleted", "BOOLEAN"),
)
EVENT_PROPERTY_FIELDS = (
    Field("event_type", "event_type", "VARCHAR"),  # "" or absent for a shared property
    Field("event_property", "event_property", "VARCHAR"),
    Field("description", "description", "VARCHAR"),
    Field("type", "type", "VARCHAR"),
    Field("regex", "regex", "VARCHAR"),
    Field("enum_values", "enum_values", "JSON"),
    Field("is_array_type", "is_array_type", "BOOLEAN"),
    Field("is_required", "is_required", "BOOLEAN"),
    Field("is_hidden", "is_hidden", "BOOLEAN"),
    Field("classifications", "classifications", "VARCHAR[]"),
    Field("deleted", "deleted", "BOOLEAN"),
)
USER_PROPERTY_FIELDS = (
    Field("user_property", "user_property", "VARCHAR"),
    Field("description", "description", "VARCHAR"),
    Field("type", "type", "VARCHAR"),
    Field("enum_values", "enum_values", "JSON"),
    Field("regex", "regex", "VARCHAR"),
    Field("is_array_type", "is_array_type", "BOOLEAN"),
    Field("is_hidden", "is_hidden", "BOOLEAN"),
    Field("classifications", "classifications", "VARCHAR[]"),
    Field("deleted", "deleted", "BOOLEAN"),
)


def _get(client: AmplitudeClient, path: str, params: dict[str, str], dest: Path,
         what: str) -> int:
    try:
        return client.fetch_to(path, params, dest, what=what, endpoint=ENDPOINT,
                               check=not_json)[1]
    except AuthError as error:
        raise AuthError(f"{error}. If the key is right, {TAXONOMY_PLAN}") from error


def fetch_event_types(client: AmplitudeClient, staged: Path) -> Fetch:
    requests = _get(client, "/api/2/taxonomy/event", {"showDeleted": "true"},
                    staged / "event.json", "taxonomy event types")
    return Fetch(["event.json"], requests)


def fetch_user_properties(client: AmplitudeClient, staged: Path) -> Fetch:
    requests = _get(client, "/api/2/taxonomy/user-property", {"showDeleted": "true"},
                    staged / "user-property.json", "taxonomy user properties")
    return Fetch(["user-property.json"], requests)


def fetch_event_properties(client: AmplitudeClient, staged: Path,
                           event_types: list[str]) -> Fetch:
    """The shared properties, then each event type's own, one answer a file."""
    got = Fetch(["event-property-shared.json"])
    got.requests += _get(client, "/api/2/taxonomy/event-property", {"showDeleted": "true"},
                         staged / got.files[0], "taxonomy shared event properties")
    for index, event_type in enumerate(event_types):
        name = f"event-property-{index:05d}.json"  # event type names are not file names
        got.requests += _get(client, "/api/2/taxonomy/event-property",
                             {"event_type": event_type, "showDeleted": "true"}, staged / name,
                             f"taxonomy event properties of {event_type!r}")
        got.files.append(name)
    got.details["event_types"] = len(event_types)
    return got
