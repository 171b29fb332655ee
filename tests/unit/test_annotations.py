"""Annotations → Parquet: instants typed, the category split into two columns, nothing lost."""

import json
from datetime import UTC, datetime

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.amplitude.annotations import ANNOTATION_COLUMNS, ANNOTATION_FIELDS, write_annotations
from pipeline.records import RecordsError

# As Amplitude's chart-annotations page shows one, with the fields the docs list.
RELEASE = {"id": 101, "start": "2026-03-06T05:00:00+00:00", "details": "iOS and Android",
           "category": {"id": 6789, "name": "Releases"}, "end": None, "label": "Release 5.3.0",
           "chart_id": None}


def written(tmp_path, records):
    source = tmp_path / "annotations.json"
    source.write_text(json.dumps({"data": records}))
    out = tmp_path / "annotations.parquet"
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        rows = write_annotations(con, [source], "$.data", ANNOTATION_FIELDS, out,
                                 what="amplitude/annotations for 2026-03-06",
                                 constants={"snapshot_date": "DATE '2026-03-06'"})
    table = pq.read_table(out)
    assert rows == table.num_rows
    return table


def test_the_category_becomes_two_columns_and_instants_are_typed(tmp_path):
    campaign = {"id": "102", "start": "2026-03-06T08:00:00Z", "end": "2026-03-08T13:00:00-05:00",
                "label": "Spring «Frühling»", "details": None, "category": None,
                "chart_id": "k3x9zd1"}
    table = written(tmp_path, [RELEASE, campaign])
    assert [(n, str(t)) for n, t in zip(table.column_names, table.schema.types, strict=True)
            if n != "snapshot_date"] == [
        (n, {"BIGINT": "int64", "VARCHAR": "string", "JSON": "extension<arrow.json>",
             "TIMESTAMPTZ": "timestamp[us, tz=UTC]"}[t]) for n, t in ANNOTATION_COLUMNS]
    release, spring = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert (release["category_id"], release["category_name"]) == (6789, "Releases")
    assert release["start"] == datetime(2026, 3, 6, 5, tzinfo=UTC) and release["end"] is None
    assert release["label"] == "Release 5.3.0" and release["_extras"] is None
    assert spring["id"] == 102 and spring["category_id"] is spring["category_name"] is None
    assert spring["end"] == datetime(2026, 3, 8, 18, tzinfo=UTC)
    assert spring["chart_id"] == "k3x9zd1" and spring["label"] == "Spring «Frühling»"


def test_fields_the_docs_never_listed_are_kept_in_extras(tmp_path):
    odd = [dict(RELEASE, id=1, created_by="ana@example.com"),
           dict(RELEASE, id=2, category={"id": 7, "name": "Ops", "color": "#f00"}),
           dict(RELEASE, id=3, category="Ops")]
    by_id = {r["id"]: r for r in written(tmp_path, odd).to_pylist()}
    assert json.loads(by_id[1]["_extras"]) == {"created_by": "ana@example.com"}
    assert json.loads(by_id[2]["_extras"]) == {"category": {"id": 7, "name": "Ops",
                                                            "color": "#f00"}}
    assert (by_id[2]["category_id"], by_id[2]["category_name"]) == (7, "Ops")
    assert json.loads(by_id[3]["_extras"]) == {"category": "Ops"}
    assert by_id[3]["category_id"] is None


@pytest.mark.parametrize(("records", "cause"), [
    ([dict(RELEASE, category={"id": "ops", "name": "Ops"})], "a category does not fit"),
    ([dict(RELEASE, start="last Tuesday")], "does not fit its schema"),
])
def test_an_answer_of_another_shape_fails_naming_the_partition(tmp_path, records, cause):
    with pytest.raises(RecordsError, match=cause) as raised:
        written(tmp_path, records)
    assert str(raised.value).startswith("amplitude/annotations for 2026-03-06: ")
    assert not (tmp_path / "annotations.parquet").exists()
