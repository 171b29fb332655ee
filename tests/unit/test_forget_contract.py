"""Forgetting through the source contract, without a simulator: the shared core imports no
source, every source lists its users' data with an audit table that fits, Mixpanel's lines are
matched by their ids, and ``distinct_id`` is a kind of id like the others."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.forget import Ids, IdsError
from pipeline.forget.__main__ import parser
from pipeline.forget.audit import ForgetReport, project_report
from pipeline.forget.ids import DISTINCT_ID, USER_ID
from pipeline.forget.matching import JsonFields
from pipeline.lake import Lake
from pipeline.mixpanel.forgetting import EVENT_FIELDS
from pipeline.source import Project, registered
from pipeline.warehouse import Warehouse

FORGET = Path(__file__).resolve().parents[2] / "pipeline" / "forget"


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_forget_package_imports_no_source():
    for path in sorted(FORGET.glob("*.py")):
        sources = {n for n in imported(path) if n.split(".")[:2] in (
            ["pipeline", name] for name in registered())}
        assert not sources, f"{path.name} imports {sorted(sources)}"


@pytest.mark.parametrize("source", ["amplitude", "mixpanel"])
def test_each_source_lists_its_users_with_an_audit_table_that_fits(tmp_path, source):
    project = Project.named(source, "default")
    families = registered()[source].user_data(Lake(tmp_path / "lake"), project)
    assert families and all(f.kinds for f in families)
    report = ForgetReport("r", datetime.now(UTC), "warehouse",
                          [project_report(project, families, {})])
    with Warehouse(tmp_path / "w.duckdb", projects=[project]).connect() as con:
        columns = [row[0] for row in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND "
            "table_name = '_forget_requests' ORDER BY column_index", [project.schema]).fetchall()]
        tables = {f.table for f in families} | {f.ledger.table for f in families}
        for table in tables:  # every table a family names exists
            schema, name = table.split(".")
            assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND "
                               "table_name = ?", [schema, name]).fetchone() == (1,), table
    assert sorted(columns) == sorted(report.row(report.projects[0]))


@pytest.mark.parametrize("source", ["amplitude", "mixpanel"])
def test_a_yaml_project_is_searched_in_its_own_namespace(tmp_path, source):
    project = Project.named(source, "web")
    lake = tmp_path / "lake"
    for data in registered()[source].user_data(Lake(lake), project):
        assert data.table.startswith(f"{source}_web.")
        assert data.ledger.table.startswith(f"{source}_web.")
        place = data.parquet_file(datetime(2026, 3, 1, tzinfo=UTC))
        assert place.relative_to(lake).parts[0] == f"{source}_web"


def test_mixpanel_lines_are_theirs_by_properties_distinct_id_or_user_id():
    ids = Ids(user_ids=["user-7"], distinct_ids=["$device:jo/sé", "u42", "0042", "ab"])
    matches = JsonFields(ids, EVENT_FIELDS)
    theirs = [
        b'{"event":"e","properties":{"time":1,"distinct_id":"u42"}}\n',
        b'{"event":"e","properties":{"distinct_id":"$device:jo\\/s\\u00e9"}}\n',  # escaped
        b'{"event":"e","properties":{"distinct_id":"$device:jo/s\xc3\xa9"}}\n',
        b'{"event":"e","properties":{"distinct_id":42,"distinct_id":"u42"}}\n',  # repeated key
        b'{"event":"e","properties":{"distinct_id":"x","$user_id":"user-7"}}\n',
        b'{"event":"e","properties":{"distinct_id":"x"},"properties":{"distinct_id":"u42"}}\n',
        b'{"event":"e","properties":{"distinct_id":"0042"}}\n',
        b'{"event":"e","properties":{"distinct_id":"u42", "cut\n',  # not JSON, spells an id
    ]
    not_theirs = [
        b'{"event":"e","properties":{"distinct_id":"u421"}}\n',
        b'{"event":"e","distinct_id":"u42","properties":{"distinct_id":"x"}}\n',  # top level
        b'{"event":"e","properties":{"distinct_id":"x","cart":{"distinct_id":"u42"}}}\n',
        b'{"event":"e","properties":{"distinct_id":"x","user_id":"user-7"}}\n',  # not $user_id
        b'{"event":"e","properties":{"distinct_id":42}}\n',  # "42", not "0042"
        b'{"event":"e","properties":{"distinct_id":"ab", "cut\n',  # too short to search as text
        b"\n",
    ]
    assert [matches(line) for line in theirs] == [True] * len(theirs)
    assert [matches(line) for line in not_theirs] == [False] * len(not_theirs)
    amplitude_only = JsonFields(Ids([42]), EVENT_FIELDS)
    assert not amplitude_only(theirs[0])  # an amplitude_id is no Mixpanel id


def test_distinct_ids_are_read_written_and_scrubbed_like_the_other_kinds(tmp_path):
    file = tmp_path / "ids.txt"
    file.write_text("distinct_id:$device:ab cd \nuser_id:x@y.org\namplitude_id:7\n")
    ids = Ids.parse([], [], [file], ["u42"])
    assert ids == Ids([7], ["x@y.org"], ["$device:ab cd ", "u42"])
    assert ids.kinds() == {"amplitude_id", USER_ID, DISTINCT_ID}
    assert repr(ids) == "<Ids: 1 amplitude_id(s), 1 user_id(s), 2 distinct_id(s)>"
    assert Ids(distinct_ids=["u42"]) != Ids(user_ids=["u42"])
    again = tmp_path / "again.txt"
    assert ids.add_to_file(again) == 4 and Ids.read(again) == ids
    assert ids.scrub("u42 and $device:ab cd  left") == "<id> and <id> left"
    (tmp_path / "bad.txt").write_text("distinct_id:\n")
    with pytest.raises(IdsError, match=r"bad\.txt line 1: a distinct_id cannot be empty"):
        Ids.read(tmp_path / "bad.txt")
    args = parser().parse_args(["--warehouse", "w", "--lake", "l", "--distinct-id", "a", "b"])
    assert args.distinct_id == ["a", "b"]
