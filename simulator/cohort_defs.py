"""The simulated project's cohorts, and their JSON as ``GET /api/3/cohorts`` lists them.

The object carries every field the reference lists (shared/reference 4.1: ``appId``, ``id`` as
text, epoch-second ``lastMod``/``createdAt``/``lastComputed``, ``owners``/``viewers`` lists,
``definition`` and the rest), plus fields the docs do not list, because the real payload has more
than it documents and a client must keep what it does not know: ``is_live``,
``definition_version``, ``computation_mode`` and whatever a ``Cohort`` puts in ``extra``.
``syncMetadata`` appears only with ``includeSyncInfo=true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_COHORT_SIZE = 2_000_000  # Amplitude's limit


@dataclass(frozen=True)
class Cohort:
    """One cohort. Members come from the generator's users (see ``members``); ``size`` of them.

    ``last_computed`` is where the simulator starts; ``Simulator.recompute_cohort`` advances it.
    """

    id: str  # Amplitude's ids are short lower-case alphanumerics
    name: str
    size: int
    archived: bool = False
    description: str = ""
    event_type: str = "purchase"  # what the (descriptive) definition says members did
    last_computed: int = 1_772_323_200  # 2026-03-01 00:00 UTC
    created_at: int = 1_767_225_600  # 2026-01-01
    last_mod: int = 1_769_904_000  # 2026-02-01
    owners: tuple[str, ...] = ("analyst@example.com",)
    viewers: tuple[str, ...] = ()
    published: bool = True
    hidden: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.size <= MAX_COHORT_SIZE:
            raise ValueError(f"cohort {self.id}: size must be 0..{MAX_COHORT_SIZE}")
        if not self.id or "/" in self.id:
            raise ValueError(f"cohort id {self.id!r} is not a usable path segment")


DEFAULT_COHORTS = (
    Cohort("k3x9qpl", "Purchasers (30 days)", 1_200, description="Bought at least once",
           viewers=("growth@example.com", "ceo@example.com")),
    Cohort("p0w3rus", "Power users", 350, event_type="search",
           description="Searched 10+ times in a week", last_computed=1_772_409_600),
    Cohort("ch4rn0x", "Churn risk (old definition)", 800, archived=True, event_type="sign_up",
           description="Superseded by the retention model", last_computed=1_769_904_000),
    Cohort("n3wsl7r", "Newsletter sign-ups", 60, event_type="sign_up",
           owners=("marketing@example.com", "analyst@example.com")),
    Cohort("e0mpty1", "Nobody yet", 0, event_type="[Amplitude] Revenue",
           description="A cohort with no members"),
)  # fmt: skip


def definition(cohort: Cohort) -> dict[str, Any]:
    """A definition object in the shape Amplitude keeps (internal; clients store it as JSON)."""
    return {
        "version": 3,
        "cohortType": "UNIQUES",
        "countGroup": {"name": "User", "is_computed": False},
        "andClauses": [
            {
                "negated": False,
                "orClauses": [
                    {
                        "type": "event",
                        "type_value": cohort.event_type,
                        "op": ">=",
                        "value": 1,
                        "time_type": "rolling",
                        "time_value": 30,
                        "offset": 0,
                        "interval": 1,
                        "subfilters": [],
                        "group_by": [],
                        "metric": None,
                    }
                ],
            }
        ],
        "referenceFrameTimeParams": {},
    }


def cohort_json(
    cohort: Cohort, app_id: int, last_computed: int, *, sync_info: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "appId": app_id,
        "archived": cohort.archived,
        "chart_id": None,
        "createdAt": cohort.created_at,
        "definition": definition(cohort),
        "description": cohort.description,
        "edit_id": None,
        "finished": True,
        "hidden": cohort.hidden,
        "id": cohort.id,
        "is_official_content": False,
        "is_predictive": False,
        "lastComputed": last_computed,
        "lastMod": cohort.last_mod,
        "last_viewed": None,
        "location_id": None,
        "metadata": None,
        "name": cohort.name,
        "owners": list(cohort.owners),
        "popularity": None,
        "published": cohort.published,
        "shortcut_ids": [],
        "size": cohort.size,
        "type": "redshift",
        "view_count": None,
        "viewers": list(cohort.viewers),
        # not in the docs (the real payload has more than it documents)
        "is_live": False,
        "definition_version": 3,
        "computation_mode": "scheduled",
    }
    if sync_info:
        out["syncMetadata"] = [
            {
                "target": "amplitude_warehouse",
                "frequency": "daily",
                "last_successful": last_computed,
                "last_failure": None,
                "params": {},
            }
        ]
    out.update(cohort.extra)
    return out
