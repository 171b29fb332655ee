import json
import os
import re
import time
from datetime import UTC, datetime

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.amplitude.normalize import NormalizeError, normalize_hour
from pipeline.amplitude.schema import EVENT_COLUMNS, EXPORT_COLUMNS, arrow_schema
from pipeline.engine import EngineLimits
from simulator import hour_lines
from tests.conftest import write_member

HOUR = datetime(2026, 3, 1, 7, tzinfo=UTC)


def base_event(**overrides):
    line = json.loads(next(hour_lines(636686, HOUR, 1)))
    line.pop("zz_new_field", None)
    line.update(overrides)
    return line


def read(path):
    return pq.read_table(path).to_pylist()


def test_every_field_typed_as_analysts_expect(tmp_path):
    event = base_event(**{
        "amplitude_id": 9_007_199_254_740_993,  # beyond a double's exact range
        "session_id": -1,
        "event_time": "2026-02-27 23:59:59.123456",
        "client_event_time": "2026-02-27 23:59:59",
        "amplitude_attribution_ids": ["c37ee2320953c639c7240c033f12d2c6"],
        "paying": True,
        "location_lat": 52.52,
        "event_properties": {"Path": "A", "path": "a", "n": {"deep": [1, "ü", None]}},
        "user_properties": {"emoji": "🚀", "q": "say \"hi\""},
        "$insert_id": "Property Pre-Order Submitted:1",
    })
    member = write_member(tmp_path / "636686_2026-03-01_7#0.json.gz", [event])
    result = normalize_hour([member], HOUR, tmp_path / "out" / "events.parquet")
    assert result.rows == 1
    (row,) = read(result.path)
    assert row["amplitude_id"] == 9_007_199_254_740_993
    assert row["session_id"] == -1
    assert row["event_time"] == datetime(2026, 2, 27, 23, 59, 59, 123456, tzinfo=UTC)
    assert row["client_event_time"] == datetime(2026, 2, 27, 23, 59, 59, tzinfo=UTC)
    assert row["amplitude_attribution_ids"] == ["c37ee2320953c639c7240c033f12d2c6"]
    assert row["paying"] is True and row["location_lat"] == 52.52
    assert json.loads(row["event_properties"]) == event["event_properties"]
    assert json.loads(row["user_properties"]) == event["user_properties"]
    assert row["insert_id"] == "Property Pre-Order Submitted:1"
    assert row["_upload_hour"] == HOUR
    assert row["_source_member"] == "636686_2026-03-01_7#0.json.gz"
    assert row["_extras"] is None


def test_parquet_schema_is_the_declared_one_even_for_an_empty_hour(tmp_path):
    member = write_member(tmp_path / "m.json.gz", [base_event()])
    full = normalize_hour([member], HOUR, tmp_path / "a" / "events.parquet")
    empty = normalize_hour([], HOUR, tmp_path / "b" / "events.parquet")
    assert empty.rows == 0
    expected = arrow_schema()
    for path in (full.path, empty.path):
        schema = pq.read_schema(path)
        assert schema.names == expected.names
        for field in expected:
            found = schema.field(field.name).type
            assert found == field.type, field.name
    assert pq.read_metadata(full.path).row_group(0).column(0).compression == "ZSTD"


def test_unknown_top_level_fields_are_kept_in_extras(tmp_path):
    event = base_event(zz_new_field={"introduced": "later"}, another=[1, 2], nothing=None)
    member = write_member(tmp_path / "m.json.gz", [event, base_event()])
    rows = read(normalize_hour([member], HOUR, tmp_path / "events.parquet").path)
    assert json.loads(rows[0]["_extras"]) == {"zz_new_field": {"introduced": "later"},
                                              "another": [1, 2], "nothing": None}
    assert rows[1]["_extras"] is None


def test_missing_keys_become_null_and_the_rest_still_loads(tmp_path):
    older = base_event()
    for key in ("plan", "$insert_key", "source_id", "data_type"):
        del older[key]
    member = write_member(tmp_path / "m.json.gz", [older, base_event()])
    rows = read(normalize_hour([member], HOUR, tmp_path / "events.parquet").path)
    assert len(rows) == 2
    assert sum(r["data_type"] is None for r in rows) == 1
    assert {r["uuid"] for r in rows} == {older["uuid"], base_event()["uuid"]}


def test_all_members_are_read_and_blank_lines_skipped(tmp_path):
    lines = [json.loads(b) for b in hour_lines(636686, HOUR, 30)]
    a = write_member(tmp_path / "636686_2026-03-01_7#0.json.gz", [*lines[:10], ""])
    b = write_member(tmp_path / "636686_2026-03-01_7#1.json.gz", lines[10:])
    rows = read(normalize_hour([a, b], HOUR, tmp_path / "events.parquet").path)
    assert sorted(r["uuid"] for r in rows) == sorted(line["uuid"] for line in lines)
    assert {r["_source_member"] for r in rows} == {a.name, b.name}


@pytest.mark.parametrize("field, value, cause", [
    ("amplitude_id", "not-a-number", "numerical"),
    ("event_time", "yesterday at noon", "timestamp"),
    ("session_id", 2**64, "numerical"),
])
def test_bad_values_fail_naming_hour_and_member_and_keep_the_old_file(tmp_path, field, value,
                                                                      cause):
    out = tmp_path / "events.parquet"
    good = write_member(tmp_path / "636686_2026-03-01_7#0.json.gz", [base_event()])
    normalize_hour([good], HOUR, out)
    before = out.read_bytes()
    bad = write_member(tmp_path / "636686_2026-03-01_7#1.json.gz", [base_event(**{field: value})])
    with pytest.raises(NormalizeError, match=rf"2026-03-01T07: member {bad.name}.*{cause}"):
        normalize_hour([good, bad], HOUR, out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []


def test_a_line_that_is_not_json_fails_clearly(tmp_path):
    bad = write_member(tmp_path / "m.json.gz", [base_event(), "{not json"])
    with pytest.raises(NormalizeError, match=r"2026-03-01T07: member m\.json\.gz"):
        normalize_hour([bad], HOUR, tmp_path / "events.parquet")


def test_duckdb_reads_the_file_back_with_the_declared_types(tmp_path):
    member = write_member(tmp_path / "m.json.gz", [base_event()])
    path = normalize_hour([member], HOUR, tmp_path / "events.parquet").path
    con = duckdb.connect()
    types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()}
    for column in EVENT_COLUMNS:
        expected = column.duckdb_type.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")
        assert types[column.name] == expected, column.name
    assert len(EXPORT_COLUMNS) == 55


@pytest.mark.parametrize("line", ["null", "[1, 2]", '"an event"', "42"])
def test_a_line_that_is_not_an_object_fails_naming_the_member(tmp_path, line):
    good = write_member(tmp_path / "636686_2026-03-01_7#0.json.gz", [base_event()])
    bad = write_member(tmp_path / "636686_2026-03-01_7#1.json.gz", [base_event(), line])
    with pytest.raises(NormalizeError, match=rf"2026-03-01T07: member {re.escape(bad.name)}"):
        normalize_hour([good, bad], HOUR, tmp_path / "events.parquet")


def test_both_plans_read_json_nulls_as_sql_nulls(tmp_path):
    nulls = {"event_properties": None, "groups": None, "city": None, "amplitude_id": None,
             "event_time": None, "amplitude_attribution_ids": None}
    complete = base_event(**nulls)
    lacking = base_event(**nulls)
    del lacking["plan"]  # a missing key sends the member through the tolerant plan
    for name, event in (("fast", complete), ("tolerant", lacking)):
        member = write_member(tmp_path / f"{name}.json.gz", [event])
        (row,) = read(normalize_hour([member], HOUR, tmp_path / name / "events.parquet").path)
        assert {key: row[key] for key in nulls} == nulls, name


def test_leftovers_of_a_killed_run_are_swept_but_a_running_one_is_not(tmp_path):
    out = tmp_path / "hour" / "events.parquet"
    out.parent.mkdir()
    stale_file = out.with_name(".events.parquet.dead.tmp")
    stale_spill = out.with_name(".events.parquet.dead.spill")
    running = out.with_name(".events.parquet.alive.tmp")
    stale_file.write_bytes(b"partial")
    stale_spill.mkdir()
    (stale_spill / "duckdb_temp_block").write_bytes(b"x")
    running.write_bytes(b"partial")
    day_ago = time.time() - 25 * 3600
    for path in (stale_file, stale_spill):
        os.utime(path, (day_ago, day_ago))
    normalize_hour([write_member(tmp_path / "m.json.gz", [base_event()])], HOUR, out)
    assert sorted(p.name for p in out.parent.iterdir()) == [running.name, out.name]


def test_each_plan_is_taken_only_when_the_one_before_cannot_and_all_give_the_same_rows(tmp_path):
    from pipeline.amplitude.normalize import PLANS, copy_statement
    from pipeline.engine import work_engine as connect_engine

    exact = [base_event(uuid=f"u{i}") for i in range(30)]
    member = write_member(tmp_path / "636686_2026-03-01_7#0.json.gz", exact)
    result = normalize_hour([member], HOUR, tmp_path / "a" / "events.parquet")
    assert result.plan == "exact"
    with connect_engine(EngineLimits(threads=1), tmp_path / "spill") as con:
        tables = {}
        for name, plan in PLANS.items():
            out = tmp_path / f"{name}.parquet"
            con.execute(copy_statement(plan([member], HOUR, {}), out))
            tables[name] = read(out)
    assert tables["exact"] == tables["strict"] == tables["tolerant"] == read(result.path)

    drifted = write_member(tmp_path / "d.json.gz", [*exact, base_event(zz_new_field=1)])
    assert normalize_hour([drifted], HOUR, tmp_path / "b" / "events.parquet").plan == "strict"
    lacking = base_event()
    del lacking["city"]
    partial = write_member(tmp_path / "p.json.gz", [*exact, lacking])
    assert normalize_hour([partial], HOUR, tmp_path / "c" / "events.parquet").plan == "tolerant"


def test_running_out_of_memory_is_not_blamed_on_the_data(tmp_path):
    lines = [base_event(uuid=f"u{i}", event_properties={"pad": "x" * 4000}) for i in range(3000)]
    member = write_member(tmp_path / "636686_2026-03-01_7#0.json.gz", lines)
    with pytest.raises(RuntimeError, match="2026-03-01T07: normalizing failed, not because of "
                                           "its data: Out of Memory") as raised:
        normalize_hour([member], HOUR, tmp_path / "out" / "events.parquet",
                       EngineLimits(threads=2, memory_limit="8MB"))
    assert not isinstance(raised.value, NormalizeError)
    assert not (tmp_path / "out" / "events.parquet").exists()
