"""Behavioral Cohorts: the list of cohorts, every field typed.

``GET /api/3/cohorts`` answers ``{"cohorts": [...]}``. Ids are text (Amplitude's own are short
strings), ``lastMod``, ``createdAt`` and ``lastComputed`` are epoch seconds, owners and viewers
are lists; the definition is Amplitude's internal object and stays JSON, as does anything the
docs never listed (``_extras``). The membership download is ``cohort_members.py``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.amplitude.client import AmplitudeClient
from pipeline.http import not_json
from pipeline.records import Field
from pipeline.snapshots import Fetch

ENDPOINT = "cohorts"

COHORT_FIELDS = (
    Field("id", "id", "VARCHAR"),
    Field("appId", "app_id", "BIGINT"),
    Field("name", "name", "VARCHAR"),
    Field("description", "description", "VARCHAR"),
    Field("archived", "archived", "BOOLEAN"),
    Field("finished", "finished", "BOOLEAN"),
    Field("published", "published", "BOOLEAN"),
    Field("hidden", "hidden", "BOOLEAN"),
    Field("is_predictive", "is_predictive", "BOOLEAN"),
    Field("is_official_content", "is_official_content", "BOOLEAN"),
    Field("size", "size", "BIGINT"),
    Field("type", "type", "VARCHAR"),
    Field("owners", "owners", "VARCHAR[]"),
    Field("viewers", "viewers", "VARCHAR[]"),
    Field("lastMod", "last_mod", "TIMESTAMPTZ", epoch_seconds=True),
    Field("createdAt", "created_at", "TIMESTAMPTZ", epoch_seconds=True),
    Field("lastComputed", "last_computed", "TIMESTAMPTZ", epoch_seconds=True),
    Field("definition", "definition", "JSON"),
    Field("metadata", "metadata", "VARCHAR[]"),
    Field("view_count", "view_count", "BIGINT"),
    Field("popularity", "popularity", "BIGINT"),
    Field("last_viewed", "last_viewed", "JSON"),  # "timestamp or null": its form is not documented
    Field("chart_id", "chart_id", "VARCHAR"),
    Field("edit_id", "edit_id", "VARCHAR"),
    Field("location_id", "location_id", "VARCHAR"),
    Field("shortcut_ids", "shortcut_ids", "VARCHAR[]"),
    Field("syncMetadata", "sync_metadata", "JSON"),
)


def fetch_cohorts(client: AmplitudeClient, staged: Path) -> Fetch:
    _, requests = client.fetch_to("/api/3/cohorts", {"includeSyncInfo": "true"},
                                  staged / "cohorts.json", what="cohort list", endpoint=ENDPOINT,
                                  check=not_json)
    return Fetch(["cohorts.json"], requests)
