import json

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.records import Field, RecordsError, write_records

FIELDS = (Field("event_type", "event_type", "VARCHAR"), Field("is_active", "active", "BOOLEAN"),
          Field("tags", "tags", "VARCHAR[]"), Field("created", "created", "TIMESTAMPTZ",
                                                     epoch_seconds=True))


def answer(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def test_records_are_typed_and_unknown_fields_kept_across_answers(tmp_path):
    first = answer(tmp_path, "a.json", {"success": True, "data": [
        {"event_type": "a", "is_active": True, "tags": ["x"], "created": 1679437294,
         "new_field": {"q": 1}}]})
    second = answer(tmp_path, "b.json", {"success": True, "data": [
        {"event_type": "b", "is_active": None, "tags": [], "created": None}]})
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        rows = write_records(con, [first, second], "$.data", FIELDS, tmp_path / "out.parquet",
                             what="test", constants={"snapshot_date": "DATE '2026-03-01'"})
    table = sorted(pq.read_table(tmp_path / "out.parquet").to_pylist(),
                   key=lambda r: r["event_type"])
    assert rows == 2
    assert table[0]["created"].timestamp() == 1679437294 and table[0]["tags"] == ["x"]
    assert json.loads(table[0]["_extras"]) == {"new_field": {"q": 1}}
    assert table[1]["active"] is None and table[1]["_extras"] is None
    assert str(table[1]["snapshot_date"]) == "2026-03-01"


@pytest.mark.parametrize(("body", "cause"), [
    ("<html>proxy error</html>", "an answer is not JSON"),
    ({"success": False, "errors": [{"message": "nope"}]}, "expected a JSON document with a list"),
    ({"data": [{"event_type": "a", "is_active": "maybe"}]}, "does not fit its schema"),
    ({"data": [1, 2]}, "does not fit its schema"),
])
def test_an_answer_of_another_shape_fails_naming_the_endpoint(tmp_path, body, cause):
    source = answer(tmp_path, "x.json", body)
    with duckdb.connect() as con, pytest.raises(RecordsError, match=cause) as raised:
        write_records(con, [source], "$.data", FIELDS, tmp_path / "out.parquet",
                      what="amplitude/taxonomy_event_types for 2026-03-01")
    assert str(raised.value).startswith("amplitude/taxonomy_event_types for 2026-03-01: ")
    assert not (tmp_path / "out.parquet").exists()
