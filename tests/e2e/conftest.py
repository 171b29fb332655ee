"""Dagster end to end: the real definitions, the simulator over HTTP, a real lake and warehouse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePath

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from assets.definitions import build_defs
from assets.partitions import partition_key
from pipeline.amplitude.landing import AmplitudeLake
from pipeline.lake import Lake
from simulator import Simulator, SimulatorConfig
from tests.conftest import DAY, SMALL
from tests.expected import (
    AMPLITUDE_FIELDS,
    AMPLITUDE_JSON_COLUMNS,
    AMPLITUDE_KEYS,
    AMPLITUDE_TIMESTAMPS,
)

# The environment's Amplitude project, as the UI and the CLI name its assets.
RAW_EXPORT = dg.AssetKey(["amplitude", "raw_export"])
EVENTS_PARQUET = dg.AssetKey(["amplitude", "events_parquet"])
EVENTS = dg.AssetKey(["amplitude", "events"])

# The tests' own mapping (tests/expected.py), never the pipeline's lists.
TIMESTAMPS = AMPLITUDE_TIMESTAMPS  # export keys whose values are UTC strings without a zone
JSONS = AMPLITUDE_JSON_COLUMNS  # columns held as JSON text, compared parsed


def event_assets(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    """The hourly event assets; a run takes one partitions definition at a time."""
    return [a for a in defs.assets if set(a.keys) & {RAW_EXPORT, EVENTS_PARQUET, EVENTS}]


@dataclass
class Project:
    """One simulated Amplitude project wired to one Dagster code location."""

    sim: Simulator
    root: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "AMPLITUDE_API_KEY": self.sim.config.api_key,
            "AMPLITUDE_SECRET_KEY": self.sim.config.secret_key,
            "AMPLITUDE_BASE_URL": self.sim.url,
            "AMPLITUDE_START": f"{DAY - timedelta(days=1):%Y-%m-%dT%H}",
            "WAREHOUSE_PATH": str(self.root / "warehouse.duckdb"),
            "LAKE_ROOT": self.lake_root or str(self.root / "lake"),
            **self.extra_env,
        }

    def defs(self) -> dg.Definitions:
        return build_defs(self.env)

    def materialize(self, first: datetime, last: datetime | None = None,
                    raise_on_error: bool = True, run_config: dict | None = None,
                    refetch: bool = False) -> dg.ExecuteInProcessResult:
        """``refetch`` asks the API again for hours landed moments ago (a re-run reuses them)."""
        defs = self.defs()
        if refetch:
            run_config = dict(run_config or {})
            ops = run_config.setdefault("ops", {})
            ops["amplitude__raw_export"] = {"config": {"refetch": True}}
        tags = {}
        if last is not None:
            tags = {"dagster/asset_partition_range_start": partition_key(first),
                    "dagster/asset_partition_range_end": partition_key(last)}
        return dg.materialize(
            event_assets(defs), resources=defs.resources, instance=self.instance,
            partition_key=None if last is not None else partition_key(first), tags=tags,
            raise_on_error=raise_on_error, run_config=run_config,
        )

    instance: dg.DagsterInstance | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    lake_root: str | None = None  # s3://bucket/prefix; None: a folder under root

    @property
    def lake(self) -> AmplitudeLake:
        """The lake as the assets see it (the resource builds it from the same settings)."""
        env, versioned = self.env, bool(self.env.get("WAREHOUSE_CATALOG"))
        return Lake(env["LAKE_ROOT"], versioned_tables=versioned,
                    keep_table_versions=versioned).share(AmplitudeLake)

    def warehouse(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.root / "warehouse.duckdb"), read_only=True)
        con.execute("SET TimeZone = 'UTC'")
        return con


def make_project(config: SimulatorConfig):
    """A fixture: a simulator with ``config``, a fresh Dagster instance, temp lake and warehouse."""

    @pytest.fixture
    def fixture(tmp_path, monkeypatch) -> Iterator[Project]:
        with Simulator(config) as sim, dg.instance_for_test() as instance:
            proj = Project(sim, tmp_path, instance)
            for name, value in proj.env.items():
                monkeypatch.setenv(name, value)
            yield proj

    return fixture


project = make_project(SMALL)


# ---- what the simulator served, read independently of the pipeline's parser ----

def _ts(text: str | None) -> datetime | None:
    if text is None:
        return None
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def served_rows(sim: Simulator, hour: datetime,
                lines: list[bytes] | None = None) -> dict[str, dict]:
    """Each served line (or each of ``lines``: what a bucket holds), keyed by uuid, in the shape
    the warehouse should hold it (by the tests' own mapping, ``tests/expected.py``)."""
    rows = {}
    for raw in sim.hour_lines(hour) if lines is None else lines:
        line = json.loads(raw)
        row = {}
        for key, (name, _) in AMPLITUDE_FIELDS.items():
            value = line.get(key)
            row[name] = _ts(value) if key in TIMESTAMPS else value
        extras = {k: v for k, v in line.items() if k not in AMPLITUDE_KEYS}
        row["_extras"] = extras or None
        row["_upload_hour"] = hour
        rows[line["uuid"]] = row
    return rows


def canonical(row: dict) -> dict:
    """A loaded row with its JSON text parsed back, comparable to ``served_rows``."""
    out = dict(row)
    for name in JSONS:
        if out.get(name) is not None:
            out[name] = json.loads(out[name])
    out.pop("_source_member", None)
    return out


def warehouse_rows(con: duckdb.DuckDBPyConnection, hour: datetime) -> dict[str, dict]:
    cursor = con.execute("SELECT * FROM amplitude.events WHERE _upload_hour = ?", [hour])
    names = [d[0] for d in cursor.description]
    rows = (dict(zip(names, values, strict=True)) for values in cursor.fetchall())
    return {row["uuid"]: canonical(row) for row in rows}


def parquet_rows(path: PurePath, lake: AmplitudeLake | None = None) -> dict[str, dict]:
    """The rows of a local file, or of one in ``lake`` (on object storage too)."""
    filesystem = lake.fs.inner if lake is not None and lake.remote else None
    table = pq.read_table(str(path), filesystem=filesystem)
    return {r["uuid"]: canonical(r) for r in table.to_pylist()}


def served_uuids(sim: Simulator, hour: datetime, lines: list[bytes] | None = None) -> list[str]:
    """Every served line's uuid, sorted, one per line (a uuid served twice is here twice)."""
    return sorted(json.loads(raw)["uuid"]
                  for raw in (sim.hour_lines(hour) if lines is None else lines))


def warehouse_uuids(con: duckdb.DuckDBPyConnection, hour: datetime) -> list[str]:
    """Every loaded row's uuid for ``hour``, sorted, one per row (a copy loaded twice shows)."""
    return [uuid for (uuid,) in con.execute(
        "SELECT uuid FROM amplitude.events WHERE _upload_hour = ? ORDER BY uuid", [hour]
    ).fetchall()]


def assert_hour_matches_served(project: Project, hour: datetime,
                               lines: list[bytes] | None = None) -> None:
    """DuckDB and Parquet hold exactly what the simulator served for ``hour`` (or ``lines``,
    what a bucket holds), field by field, one row per line (no copy lost, none doubled)."""
    expected = served_rows(project.sim, hour, lines)
    uuids = served_uuids(project.sim, hour, lines)
    with project.warehouse() as con:
        loaded = warehouse_rows(con, hour)
        assert warehouse_uuids(con, hour) == uuids
    count = project.sim.hour_count(hour) if lines is None else len(lines)
    assert len(loaded) == len(expected) == len(uuids) == count
    assert loaded == expected
    lake = project.lake
    path = lake.events_file(hour)
    assert parquet_rows(path, lake) == expected
    filesystem = lake.fs.inner if lake.remote else None
    assert sorted(pq.read_table(str(path), columns=["uuid"], filesystem=filesystem)
                  .column("uuid").to_pylist()) == uuids


def hour_metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, dict]:
    """Metadata of each partition's materialization in a run, by partition key."""
    return {
        event.partition: {k: v.value for k, v in event.metadata.items()}
        for event in (e.event_specific_data.materialization
                      for e in result.get_asset_materialization_events())
        if event.asset_key == key
    }


def partition_statuses(project: Project, key: dg.AssetKey) -> dict[str, set[str]]:
    """What the UI shows for each partition of ``key``: materialized (ever) and failed (its
    latest run failed it)."""
    from dagster._core.storage.partition_status_cache import (
        get_and_update_asset_status_cache_value,
    )

    partitions = project.defs().resolve_assets_def(key).partitions_def
    value = get_and_update_asset_status_cache_value(project.instance, key, partitions)
    assert value is not None and partitions is not None
    return {"materialized": set(value.deserialize_materialized_partition_subsets(partitions)
                                .get_partition_keys()),
            "failed": set(value.deserialize_failed_partition_subsets(partitions)
                          .get_partition_keys())}


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every failed step's error, whole (``str(result.all_events)`` is cut short)."""
    return "\n".join(e.event_specific_data.error.to_string()
                     for e in result.get_step_failure_events())
