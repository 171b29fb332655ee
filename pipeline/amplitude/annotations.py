"""Chart annotations and the categories things are filed under: what explains a day's numbers.

Analysts annotate charts with releases, campaigns and incidents, which is why a day's counts
moved; the reconciliation names them beside a mismatching day (``reconcile.py``).

- ``GET /api/3/annotations`` answers ``{"data": [{id, start, end, label, details, category,
  chart_id}]}``. ``start`` and ``end`` are ISO 8601 instants (hourly; ``end`` null for a point in
  time) and become TIMESTAMPTZ. ``category`` is ``{id, name}`` or null; it becomes two plain
  columns, ``category_id`` and ``category_name``, so SQL filters and joins on it without JSON. A
  category that is not such an object, or holds more than ``id`` and ``name``, is kept whole in
  ``_extras`` (as ``{"category": ...}``), so nothing Amplitude adds is lost.
- ``GET /api/3/annotation-categories`` answers ``{"data": [{id, name}]}``: every category,
  also those no annotation is filed under yet.
- ``GET /api/2/taxonomy/category`` answers ``{"success": true, "data": [{id, name}]}``: the
  tracking plan's event categories (``category.name`` of an event type). It is the Taxonomy API,
  so Enterprise plans only: a 403 says so, as for the other taxonomy snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb

from pipeline import sql
from pipeline.amplitude import dashboard, taxonomy
from pipeline.amplitude.client import AmplitudeClient
from pipeline.http import AuthError, not_json
from pipeline.records import Field, RecordsError, write_records
from pipeline.snapshots import Fetch

ANNOTATION_FIELDS = (
    Field("id", "id", "BIGINT"),
    Field("start", "start", "TIMESTAMPTZ"),
    Field("end", "end", "TIMESTAMPTZ"),  # null: a point in time
    Field("label", "label", "VARCHAR"),
    Field("details", "details", "VARCHAR"),
    Field("category", "category", "JSON"),  # split below into category_id, category_name
    Field("chart_id", "chart_id", "VARCHAR"),  # null: shown on every chart
)
CATEGORY_FIELDS = (
    Field("id", "id", "BIGINT"),
    Field("name", "name", "VARCHAR"),
)
# The annotations table's columns after the category is split (besides snapshot_date).
ANNOTATION_COLUMNS = (
    *((f.name, f.duckdb_type) for f in ANNOTATION_FIELDS if f.key != "category"),
    ("category_id", "BIGINT"), ("category_name", "VARCHAR"), ("_extras", "JSON"),
)


def fetch_annotations(client: AmplitudeClient, staged: Path) -> Fetch:
    _, requests = client.fetch_to("/api/3/annotations", None, staged / "annotations.json",
                                  what="chart annotations", endpoint=dashboard.ENDPOINT,
                                  check=not_json)
    return Fetch(["annotations.json"], requests)


def fetch_annotation_categories(client: AmplitudeClient, staged: Path) -> Fetch:
    _, requests = client.fetch_to("/api/3/annotation-categories", None,
                                  staged / "annotation-categories.json",
                                  what="annotation categories", endpoint=dashboard.ENDPOINT,
                                  check=not_json)
    return Fetch(["annotation-categories.json"], requests)


def fetch_event_categories(client: AmplitudeClient, staged: Path) -> Fetch:
    try:
        _, requests = client.fetch_to("/api/2/taxonomy/category", None,
                                      staged / "category.json", what="taxonomy categories",
                                      endpoint=taxonomy.ENDPOINT, check=not_json)
    except AuthError as error:
        raise AuthError(f"{error}. If the key is right, {taxonomy.TAXONOMY_PLAN}") from error
    return Fetch(["category.json"], requests)


def split_category_plan(parquet: Path) -> str:
    """The records file's rows with ``category`` as two columns, a category of any other shape
    kept in ``_extras``."""
    category = "category"
    odd = (f"{category} IS NOT NULL AND (json_type({category}) <> 'OBJECT' OR NOT "
           f"list_has_all(['id', 'name'], json_keys({category})))")
    return (f"SELECT * EXCLUDE ({category}, _extras), "
            f"CAST(json_extract({category}, '$.id') AS BIGINT) AS category_id, "
            f"json_extract_string({category}, '$.name') AS category_name, "
            f"CASE WHEN {odd} THEN json_merge_patch(coalesce(_extras, '{{}}'), "
            f"json_object('category', {category}))::JSON ELSE _extras END AS _extras "
            f"FROM read_parquet({sql.literal(str(parquet))})")


def write_annotations(con: duckdb.DuckDBPyConnection, sources: Sequence[Path], list_path: str,
                      fields: Sequence[Field], out: Path, *, what: str,
                      constants: Mapping[str, str] | None = None) -> int:
    """``write_records`` (same arguments), then the category split into its two columns.

    The answer is small (annotations are written by hand), so the file is read back whole and
    written again in its final shape rather than teaching the records plan a second column.
    """
    rows = write_records(con, sources, list_path, fields, out, what=what, constants=constants)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE annotation_rows AS "
                    f"{split_category_plan(out)}")
        con.execute(f"COPY annotation_rows TO {sql.literal(str(out))} "
                    "(FORMAT parquet, COMPRESSION zstd)")
    except duckdb.Error as error:
        out.unlink(missing_ok=True)
        raise RecordsError(f"{what}: a category does not fit {{id, name}}: "
                           f"{str(error).splitlines()[0]}") from error
    finally:
        con.execute("DROP TABLE IF EXISTS annotation_rows")
    return rows
