"""The tests' own mappings (tests/expected.py) against the pipeline's lists and the warehouse it
creates: a drift on either side fails here by name, before any field-for-field comparison."""

from __future__ import annotations

import json
import re

from pipeline.amplitude import schema as amplitude_schema
from pipeline.mixpanel import schema as mixpanel_schema
from pipeline.source import Project
from pipeline.warehouse import Warehouse
from simulator import generator
from tests.conftest import DAY, SMALL, amplitude_warehouse
from tests.expected import (
    AMPLITUDE_ADDED,
    AMPLITUDE_COLUMN_TYPES,
    AMPLITUDE_FIELDS,
    AMPLITUDE_KEYS,
    MIXPANEL_COLUMNS,
    MIXPANEL_PROMOTED,
    TIMESTAMPTZ,
)

DESCRIBED = {TIMESTAMPTZ: "TIMESTAMP WITH TIME ZONE"}  # how DuckDB names the type back


def _described(types: dict[str, str]) -> dict[str, str]:
    return {name: DESCRIBED.get(kind, kind) for name, kind in types.items()}


def test_the_amplitude_mapping_is_the_pipelines_key_by_key():
    pipeline = {c.key: (c.name, c.duckdb_type) for c in amplitude_schema.EXPORT_COLUMNS}
    assert len(AMPLITUDE_FIELDS) == 55  # a real export line's keys (README "The table")
    assert set(pipeline) == AMPLITUDE_KEYS, "keys only one side knows: " + ", ".join(
        sorted(set(pipeline) ^ AMPLITUDE_KEYS))
    differ = {key: (pipeline[key], want) for key, want in AMPLITUDE_FIELDS.items()
              if pipeline[key] != want}
    assert differ == {}, "key: (pipeline's (column, type), the tests' (column, type))"
    assert amplitude_schema.KNOWN_KEYS == AMPLITUDE_KEYS
    assert {c.name: c.duckdb_type for c in amplitude_schema.PIPELINE_COLUMNS} == AMPLITUDE_ADDED
    assert {c.name: c.duckdb_type for c in amplitude_schema.EVENT_COLUMNS} == (
        AMPLITUDE_COLUMN_TYPES)


def test_the_mixpanel_mapping_is_the_pipelines_key_by_key():
    pipeline = {c.key: (c.name, c.duckdb_type) for c in mixpanel_schema.PROMOTED}
    assert pipeline == MIXPANEL_PROMOTED
    assert [(c.name, c.duckdb_type) for c in mixpanel_schema.EVENT_COLUMNS] == list(
        MIXPANEL_COLUMNS.items())
    promoted = dict(MIXPANEL_PROMOTED.values())
    assert all(MIXPANEL_COLUMNS[name] == kind for name, kind in promoted.items())


def test_a_fresh_warehouse_has_the_columns_and_types_of_the_tests_mappings(tmp_path):
    with amplitude_warehouse(tmp_path / "a.duckdb").connect() as con:
        amplitude = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE "
                                     "amplitude.events)").fetchall())
    assert amplitude == _described(AMPLITUDE_COLUMN_TYPES)
    mixpanel_project = Project.named("mixpanel", "default")
    with Warehouse(tmp_path / "m.duckdb", projects=[mixpanel_project]).connect() as con:
        mixpanel = con.execute("SELECT column_name, column_type FROM (DESCRIBE "
                               "mixpanel.events)").fetchall()
    assert mixpanel == list(_described(MIXPANEL_COLUMNS).items())


def test_a_served_amplitude_line_carries_every_mapped_key_and_the_documented_types():
    config = SMALL
    hour = DAY.replace(hour=8)
    lines = [json.loads(raw) for raw in generator.hour_lines(
        config.project_id, hour, config.hour_count(hour), config.seed, config.profile)]
    assert lines
    for line in lines:
        assert set(line) >= AMPLITUDE_KEYS, sorted(AMPLITUDE_KEYS - set(line))
    for key, (_, kind) in AMPLITUDE_FIELDS.items():
        values = [line[key] for line in lines if line[key] is not None]
        if kind == TIMESTAMPTZ:  # UTC text without a zone: YYYY-MM-DD HH:MM:SS[.ffffff]
            assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?", v)
                       for v in values), key
        elif kind == "BIGINT":
            assert all(isinstance(v, int) and not isinstance(v, bool) for v in values), key
        elif kind == "JSON":
            assert all(isinstance(v, dict) for v in values), key
        elif kind == "VARCHAR[]":
            assert all(isinstance(v, list) for v in values), key
        elif kind == "BOOLEAN":
            assert all(isinstance(v, bool) for v in values), key
        elif kind == "DOUBLE":
            assert all(isinstance(v, int | float) for v in values), key
        else:
            assert all(isinstance(v, str) for v in values), key
