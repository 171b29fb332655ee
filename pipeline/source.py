"""The contract every source fills, and the projects that put a source to work.

A *source* (Amplitude, Mixpanel) is a package of ``pipeline/`` that owns its schema, settings,
migrations, rate limits, landing, normalize and load. A *project* is one account of a source in
a deployment (an Amplitude project, a Mixpanel project): several may run side by side, each in
its own *namespace*, which names its warehouse schema, its folders in the lake and the prefix
of its asset keys. The project configured from the environment has the source's own name as its
namespace (``amplitude``); a project declared in YAML gets ``<source>_<name>``.

The shared machinery (the warehouse's migrations and all-projects views, rebuild, forget) drives
every source through :class:`Source` alone and finds the sources through the entry points of
group ``amplitude_warehouse.sources`` (``pyproject.toml``), so it imports none of them: a new
source is a new package and one entry point (docs/architecture.md, "Adding a source").
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import date, datetime
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, ClassVar

from pipeline.migrations import ProjectSchema
from pipeline.project_views import ProjectTables

if TYPE_CHECKING:
    from collections.abc import Sequence

    import duckdb

    from pipeline.forget.contract import UserData
    from pipeline.lake import Lake
    from pipeline.settings import EnvSettings

ENTRY_POINTS = "amplitude_warehouse.sources"
DEFAULT = "default"  # the name of the project configured from the environment
PROJECT_MARKER = "_project.json"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
Partition = datetime | date  # an upload hour, a day


class ProjectError(ValueError):
    pass


@dataclass(frozen=True)
class Project:
    """One account of a source, in its own namespace."""

    source: str
    name: str
    namespace: str
    timezone: str = "UTC"  # where its days are counted (the all-projects views carry it)

    @classmethod
    def named(cls, source: str, name: str, timezone: str = "UTC") -> Project:
        if not _NAME.fullmatch(name) or name == "all":
            raise ProjectError(
                f"project name {name!r}: use lower-case letters, digits and _ (starting with a "
                "letter, at most 40), and not 'all' (the all-projects views are <source>_all)")
        return cls(source, name, source if name == DEFAULT else f"{source}_{name}", timezone)

    @property
    def schema(self) -> str:
        return self.namespace

    def table(self, name: str) -> str:
        """``name`` qualified with the project's schema: ``amplitude_web.events``."""
        return f"{self.namespace}.{name}"


class Source(ABC):
    """What the shared machinery needs of a source; one instance serves all its projects."""

    name: ClassVar[str]
    # The relations every project has that the all-projects views (``<source>_all``) unite.
    relations: ClassVar[tuple[str, ...]]

    @property
    @abstractmethod
    def settings(self) -> type[EnvSettings]:
        """The model of a project's settings (``pipeline/settings.py``)."""

    @abstractmethod
    def schema(self, project: Project) -> ProjectSchema:
        """The project's schema: the source's migrations and the columns they must give."""

    def tables(self, project: Project) -> ProjectTables:
        return ProjectTables(self.name, project.name, project.schema, self.relations,
                             {"project_timezone": project.timezone})

    @abstractmethod
    def lake_partitions(self, lake: Lake, project: Project) -> list[Partition]:
        """Every partition with a table file in the lake, oldest first (for a rebuild)."""

    @abstractmethod
    def landed_partitions(self, lake: Lake, project: Project) -> list[Partition]:
        """Every partition with a landing (for a rebuild's report of those never normalized)."""

    @abstractmethod
    def reload(self, con: duckdb.DuckDBPyConnection, lake: Lake, project: Project,
               partition: Partition) -> int:
        """Load one partition from its file in the lake, with the ledger row a load writes;
        return its rows (a rebuild)."""

    @abstractmethod
    def user_data(self, lake: Lake, project: Project) -> Sequence[UserData]:
        """Where the project keeps users' rows and lines, one partition family each, for
        ``python -m pipeline.forget`` (``pipeline/forget/contract.py``). Every family of a
        source that holds personal data belongs here: what is not listed is not forgotten."""


@cache
def registered() -> dict[str, Source]:
    """Every installed source, by name."""
    found: dict[str, Source] = {}
    for entry in entry_points(group=ENTRY_POINTS):
        source = entry.load()
        if not isinstance(source, Source) or source.name != entry.name:
            raise ProjectError(f"entry point {entry.name} = {entry.value} is not the Source "
                               f"named {entry.name!r}")
        found[entry.name] = source
    return found


def source(name: str) -> Source:
    try:
        return registered()[name]
    except KeyError:
        raise ProjectError(f"no source named {name!r} is installed (known: "
                           f"{', '.join(sorted(registered()))})") from None


def mark(lake: Lake, project: Project) -> None:
    """Record in the lake which source and project its namespace holds, so the tools that work
    from the lake alone (rebuild, forget) find every project."""
    path = lake.root / project.namespace / PROJECT_MARKER
    text = json.dumps(asdict(project), indent=2)
    if lake.read_text(path) != text:
        lake.write_text(path, text)


def projects_in_lake(lake: Lake) -> list[Project]:
    """The projects whose data the lake holds: those marked, and a source's own namespace
    (the environment's project, from before the markers)."""
    found: dict[str, Project] = {}
    for name in registered():
        if lake.exists(lake.root / name) or lake.exists(lake.root / "landing" / name):
            found[name] = Project.named(name, DEFAULT)
    for folder in lake.names(lake.root):
        if folder.startswith("."):  # the lake's own (.scratch, forget's .forget.lock)
            continue
        text = lake.read_text(lake.root / folder / PROJECT_MARKER)
        if text is not None:
            project = Project(**json.loads(text))
            found[project.namespace] = project
    return [found[n] for n in sorted(found)]
