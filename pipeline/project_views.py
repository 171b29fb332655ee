"""Views over every project of a source, so analysts (and the models) query one or all of them.

Each project keeps its own schema (``amplitude``, ``amplitude_web``, ...). For each source the
warehouse also holds a schema ``<source>_all`` with one view per table, the union of the
projects' tables by column name, with the project's name (and its time zone, where days are
counted in it) in front::

    SELECT * FROM amplitude_all.events WHERE project = 'web'

The views follow the projects configured: a write open re-creates a view only when its text
changed (a project added or removed, a time zone changed), so loads do not rewrite them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import duckdb

from pipeline import sql

ALL_SUFFIX = "_all"


@dataclass(frozen=True)
class ProjectTables:
    """One project's relations that its source's all-projects views unite."""

    source: str  # the all-projects schema is f"{source}_all"
    project: str  # the value of the view's `project` column
    schema: str
    relations: Sequence[str]
    constants: Mapping[str, str] = field(default_factory=dict)  # more leading columns


def view_statements(projects: Sequence[ProjectTables]) -> dict[str, str]:
    """The CREATE statement of every all-projects view, by its qualified name."""
    by_view: dict[str, list[str]] = {}
    for project in sorted(projects, key=lambda p: (p.source, p.project)):
        leading = ", ".join([f"{sql.literal(project.project)} AS project",
                             *(f"{sql.literal(v)} AS {k}" for k, v in project.constants.items())])
        for relation in project.relations:
            by_view.setdefault(f"{project.source}{ALL_SUFFIX}.{relation}", []).append(
                f"SELECT {leading}, * FROM {project.schema}.{relation}")
    # Parenthesized as DuckDB keeps a union's text, so that an unchanged view compares equal.
    return {name: f"CREATE OR REPLACE VIEW {name} AS " + (
                parts[0] if len(parts) == 1
                else " UNION ALL BY NAME ".join(f"({part})" for part in parts))
            for name, parts in by_view.items()}


def ensure(con: duckdb.DuckDBPyConnection, projects: Sequence[ProjectTables]) -> None:
    """Create or replace the views whose text differs from what is there; drop views of the
    all-projects schemas that no project provides any more."""
    wanted = view_statements(projects)
    schemas = sorted({name.split(".", 1)[0] for name in wanted})
    found = {f"{schema}.{view}": text for schema, view, text in con.execute(
        "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE database_name = "
        "current_database() AND NOT internal AND suffix(schema_name, ?)",
        [ALL_SUFFIX]).fetchall()}
    stale = sorted(set(found) - set(wanted))
    changed = {name: text for name, text in wanted.items()
               if _normal(found.get(name, "")) != _normal(text)}
    if not (stale or changed):
        return
    con.execute("BEGIN TRANSACTION")
    try:
        for schema in schemas:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for name in stale:
            con.execute(f"DROP VIEW IF EXISTS {name}")
        for text in changed.values():
            con.execute(text)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _normal(text: str) -> str:
    """A view's text as DuckDB keeps it (CREATE VIEW, a final semicolon) compared with ours."""
    return " ".join(text.replace("CREATE OR REPLACE VIEW", "CREATE VIEW").rstrip(";").split())
