"""The Mixpanel source through Dagster: the real definitions, the Mixpanel simulator over HTTP on
127.0.0.1, a real lake and warehouse. Every field is compared with what the simulator served,
whose ``Served.utc`` is the true instant (not a second reading of the pipeline's own rule)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from assets.definitions import build_defs
from pipeline.lake import Lake
from pipeline.mixpanel import landing
from pipeline.mixpanel.landing import MixpanelLake
from simulator import MixpanelConfig, MixpanelSimulator
from simulator.mixpanel_data import EPOCH, Served
from tests.e2e.conftest import hour_metadata
from tests.expected import MIXPANEL_COLUMNS, MIXPANEL_PROMOTED

FALL = date(2026, 11, 1)  # Los Angeles falls back at 02:00: 01:00-02:00 happens twice
SPRING = date(2026, 3, 8)  # and springs forward at 02:00: 02:00-03:00 never happens
ZONE = "America/Los_Angeles"
RAW_EXPORT, EVENTS_PARQUET, EVENTS = (dg.AssetKey(["mixpanel", name]) for name in (
    "raw_export", "events_parquet", "events"))  # the environment's project
MIXPANEL_KEYS = {RAW_EXPORT, EVENTS_PARQUET, EVENTS}
# Short timeouts and backoff: a hung simulator costs seconds, not the export's ten minutes.
FAST = {"connect_timeout_seconds": 2.0, "read_timeout_seconds": 5.0, "max_attempts": 3,
        "max_retry_seconds": 60.0, "base_delay_seconds": 0.01, "limit_wait_seconds": 30.0}


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass
class MixpanelProject:
    """One simulated Mixpanel project wired to one Dagster code location."""

    sim: MixpanelSimulator
    root: Path
    instance: dg.DagsterInstance
    extra_env: dict[str, str] = field(default_factory=dict)
    mixpanel_config: dict[str, Any] = field(default_factory=lambda: dict(FAST))

    @property
    def env(self) -> dict[str, str]:
        config = self.sim.config
        return {
            "AMPLITUDE_API_KEY": "amplitude-unused-key", "AMPLITUDE_SECRET_KEY": "unused-secret",
            "WAREHOUSE_PATH": str(self.root / "warehouse.duckdb"),
            "LAKE_ROOT": str(self.root / "lake"),
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": config.username,
            "MIXPANEL_SERVICE_ACCOUNT_SECRET": config.secret,
            "MIXPANEL_PROJECT_ID": str(config.project_id),
            "MIXPANEL_BASE_URL": self.sim.url,
            "MIXPANEL_TIMESTAMPS": config.timestamps,
            "MIXPANEL_PROJECT_TIMEZONE": config.timezone,
            "MIXPANEL_START": "2026-03-01",
            **self.extra_env,
        }

    def defs(self) -> dg.Definitions:
        env = self.env
        return build_defs(env)

    def resources(self, defs: dg.Definitions) -> dict[str, Any]:
        resources = dict(defs.resources)
        built = resources["mixpanel"]  # rebuilt: Dagster keeps a resource's config from __init__
        fields = {name: getattr(built, name) for name in type(built).model_fields}
        resources["mixpanel"] = type(built)(**{**fields, **self.mixpanel_config})
        return resources

    def materialize(self, first: date, last: date | None = None, *, raise_on_error: bool = True,
                    run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        defs = self.defs()
        assets = [a for a in defs.assets if set(a.keys) & MIXPANEL_KEYS]
        tags = {}
        if last is not None:
            tags = {"dagster/asset_partition_range_start": first.isoformat(),
                    "dagster/asset_partition_range_end": last.isoformat()}
        return dg.materialize(assets, resources=self.resources(defs), instance=self.instance,
                              partition_key=None if last is not None else first.isoformat(),
                              tags=tags, raise_on_error=raise_on_error, run_config=run_config)

    @property
    def lake(self) -> MixpanelLake:
        return Lake(self.env["LAKE_ROOT"]).share(MixpanelLake)

    def warehouse(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.root / "warehouse.duckdb"), read_only=True)
        con.execute("SET TimeZone = 'UTC'")
        return con

    def requests(self) -> list[dict[str, str]]:
        return [r.params for r in self.sim.export_requests() if r.status == 200]


def make_project(config: MixpanelConfig, **extra_env: str):
    @pytest.fixture
    def fixture(tmp_path, monkeypatch) -> Iterator[MixpanelProject]:
        with MixpanelSimulator(config) as sim, dg.instance_for_test() as instance:
            project = MixpanelProject(sim, tmp_path, instance, dict(extra_env))
            for name, value in project.env.items():
                monkeypatch.setenv(name, value)
            yield project
            assert sim.errors == []

    return fixture


LOCAL = MixpanelConfig(gap_readings=2)
mp_project = make_project(LOCAL)
utc_project = make_project(replace(LOCAL, timestamps="utc"))


# ---- what the simulator served, in the shape the warehouse should hold it --------------------

def _promoted(value: object, duckdb_type: str) -> object:
    if value is None:
        return None
    if duckdb_type == "BIGINT":
        try:
            return int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return None  # another type: NULL here, kept in properties
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value if isinstance(value, str) else json.dumps(value)


def expected_row(config: MixpanelConfig, served: Served, day: date) -> dict[str, object]:
    raw = served.time_value(config, ms=False)
    properties = {"time": raw, "distinct_id": served.distinct_id, "$insert_id": served.insert_id,
                  "mp_processing_time_ms": served.processing_ms, **served.properties}
    instant = served.expected_utc(ms=False)
    if served.kind == "repeated_hour_late":
        # The one case the documented rule cannot recover (docs/mixpanel.md): a first-pass
        # reading of the repeated hour processed hours later is read as the second pass.
        instant += timedelta(hours=1)
    row: dict[str, object] = {
        "event": served.event, "distinct_id": served.distinct_id,
        "insert_id": served.insert_id, "time": instant,
        "time_raw": float(raw), "time_in_ms": None,
        "mp_processing_time": EPOCH + timedelta(milliseconds=served.processing_ms)}
    for key, (name, duckdb_type) in MIXPANEL_PROMOTED.items():  # the tests' own mapping
        row[name] = _promoted(properties.get(key), duckdb_type)
    row.update(properties=properties, _extras=None, _day=day)
    return row


def comparable(row: dict[str, object]) -> dict[str, object]:
    out = {k: v for k, v in row.items() if k != "_source_file"}
    for name in ("properties", "_extras"):
        if isinstance(out.get(name), str):
            out[name] = json.loads(out[name])  # type: ignore[arg-type]
    return out


def _key(row: dict[str, object]) -> tuple:
    return (row["insert_id"], row["mp_processing_time"], row["time"])


def served_rows(project: MixpanelProject, day: date) -> list[dict[str, object]]:
    config = project.sim.config
    return sorted((expected_row(config, s, day) for s in project.sim.served(day, day)), key=_key)


def warehouse_rows(project: MixpanelProject, day: date) -> list[dict[str, object]]:
    with project.warehouse() as con:
        cursor = con.execute("SELECT * FROM mixpanel.events WHERE _day = ?", [day])
        names = [d[0] for d in cursor.description]
        rows = [comparable(dict(zip(names, values, strict=True))) for values in cursor.fetchall()]
    return sorted(rows, key=_key)


def parquet_rows(project: MixpanelProject, day: date) -> list[dict[str, object]]:
    path = landing.events_file(project.lake, day)
    assert path is not None
    rows = [comparable(r) for r in pq.read_table(str(path)).to_pylist()]
    for row in rows:  # pyarrow reads TIMESTAMPTZ as UTC datetimes, DATE as date: as DuckDB
        for name in ("time", "mp_processing_time"):
            value = row[name]
            if isinstance(value, datetime):
                row[name] = value.astimezone(UTC)
    return sorted(rows, key=_key)


def assert_day_matches_served(project: MixpanelProject, day: date) -> None:
    """DuckDB and Parquet hold exactly what the simulator served for ``day``, field by field."""
    expected = served_rows(project, day)
    loaded = warehouse_rows(project, day)
    assert len(loaded) == len(expected) > 0
    assert [name for name in MIXPANEL_COLUMNS if name != "_source_file"] == list(loaded[0])
    for got, want in zip(loaded, expected, strict=True):
        assert got == want
    assert parquet_rows(project, day) == expected


def day_metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, dict]:
    return hour_metadata(result, key)


# ---- the tests -------------------------------------------------------------------------------

def test_a_range_over_the_fall_back_day_is_one_request_and_every_field_matches(mp_project):
    first, last = FALL - timedelta(days=2), FALL + timedelta(days=1)
    result = mp_project.materialize(first, last)
    assert result.success
    assert mp_project.requests() == [{"from_date": str(first), "to_date": str(last),
                                      "project_id": str(mp_project.sim.config.project_id)}]
    for day in days(first, last):
        assert_day_matches_served(mp_project, day)
    # The hour that happens twice: both passes of one wall-clock reading, an hour apart in UTC
    # (dst0, processed within the minute); dst1's first pass was processed three hours late and
    # is read as the second pass, the documented limit of the rule.
    repeated = [s for s in mp_project.sim.served(FALL, FALL) if s.kind.startswith("repeated")]
    with mp_project.warehouse() as con:
        got = con.execute("SELECT distinct_id, time, time_raw FROM mixpanel.events WHERE "
                          "distinct_id LIKE 'dst%' ORDER BY distinct_id, time").fetchall()
    assert len(repeated) == 4
    dst0 = [(t, raw) for who, t, raw in got if who == "dst0"]
    assert [t for t, _ in dst0] == [datetime(2026, 11, 1, 8, 30, tzinfo=UTC),
                                    datetime(2026, 11, 1, 9, 30, tzinfo=UTC)]
    assert dst0[0][1] == dst0[1][1]  # one wall-clock reading
    assert {t.astimezone(ZoneInfo(ZONE)).strftime("%H:%M %Z") for t, _ in dst0} == {
        "01:30 PDT", "01:30 PST"}
    meta = day_metadata(result, EVENTS)
    assert {k: m["dagster/row_count"] for k, m in meta.items()} == {
        str(d): len(mp_project.sim.served(d, d)) for d in days(first, last)}
    assert {m["request_window"] for m in meta.values()} == {f"{first}..{last}"}
    assert sum(m["requests"] for m in meta.values()) == pytest.approx(1.0)
    assert all(m["duplicate_rows"] > 0 and 0 < m["duplicate_share"] < 0.1
               for m in meta.values())
    raw = day_metadata(result, RAW_EXPORT)
    assert set(raw) == {str(d) for d in days(first, last)}
    checks = {(c.check_name, c.partition): c.passed for c in result.get_asset_check_evaluations()
              if c.partition is not None}  # and the step's own result, over the range
    assert checks == {("duplicate_share", str(d)): True for d in days(first, last)}
    with mp_project.warehouse() as con:
        ledger = con.execute("SELECT day, rows, request_window, window_requests, rows_added, "
                             "rows_removed, rows_changed FROM mixpanel._loads ORDER BY day"
                             ).fetchall()
    assert ledger == [(d, len(mp_project.sim.served(d, d)), f"{first}..{last}", 1,
                       len(mp_project.sim.served(d, d)), 0, 0) for d in days(first, last)]
    folder = landing.landing_dir(mp_project.lake, FALL)
    assert folder.relative_to(mp_project.root / "lake").as_posix() == (
        "landing/mixpanel/export/day=2026-11-01")
    assert landing.events_file(mp_project.lake, FALL).relative_to(  # type: ignore[union-attr]
        mp_project.root / "lake").as_posix() == "mixpanel/events/day=2026-11-01/events.parquet"


def test_the_spring_forward_day_with_readings_in_the_gap(mp_project):
    result = mp_project.materialize(SPRING)
    assert result.success
    assert_day_matches_served(mp_project, SPRING)
    gap = [s for s in mp_project.sim.served(SPRING, SPRING) if s.kind == "gap"]
    assert len(gap) == 2
    with mp_project.warehouse() as con:
        got = con.execute("SELECT time FROM mixpanel.events WHERE distinct_id LIKE 'gap%' "
                          "ORDER BY time").fetchall()
    assert [t for (t,) in got] == [s.utc.replace(microsecond=0) for s in gap]
    assert all(t.hour == 10 for (t,) in got)  # 02:xx read with PST's offset: 10:xxZ


def test_a_rerun_leaves_the_same_rows_and_counts_no_change(mp_project):
    first, last = FALL - timedelta(days=1), FALL
    assert mp_project.materialize(first, last).success
    with mp_project.warehouse() as con:
        before = con.execute("SELECT * EXCLUDE (_source_file) FROM mixpanel.events "
                             "ORDER BY ALL").fetchall()
    again = mp_project.materialize(first, last)
    assert again.success and len(mp_project.requests()) == 2
    with mp_project.warehouse() as con:
        after = con.execute("SELECT * EXCLUDE (_source_file) FROM mixpanel.events "
                            "ORDER BY ALL").fetchall()
        ledger = con.execute("SELECT rows_added, rows_removed, rows_changed FROM "
                             "mixpanel._loads").fetchall()
    assert after == before and ledger == [(0, 0, 0)] * 2
    assert {k: (m["rows_added"], m["rows_removed"], m["rows_changed"])
            for k, m in day_metadata(again, EVENTS).items()} == {
        str(first): (0, 0, 0), str(last): (0, 0, 0)}


def test_a_long_backfill_asks_for_few_windows(mp_project):
    first, last = date(2026, 10, 20), FALL  # 13 days: windows of 7 and 6
    assert mp_project.materialize(first, last).success
    assert [(r["from_date"], r["to_date"]) for r in mp_project.requests()] == [
        ("2026-10-20", "2026-10-26"), ("2026-10-27", "2026-11-01")]
    with mp_project.warehouse() as con:
        (rows,) = con.execute("SELECT count(*) FROM mixpanel.events").fetchone()
    assert rows == len(mp_project.sim.served(first, last))


def test_duplicates_are_kept_raw_and_removed_by_the_unique_model(mp_project):
    assert mp_project.materialize(FALL).success
    defs = mp_project.defs()
    model = dg.AssetKey(["analytics", "mixpanel_events_unique"])
    result = dg.materialize([a for a in defs.assets if any(k.path[0] == "analytics"
                                                           for k in a.keys)],
                            selection=[model], resources=defs.resources,
                            instance=mp_project.instance)
    assert result.success
    served = mp_project.sim.served(FALL, FALL)
    duplicates = [s for s in served if s.kind == "duplicate"]
    assert duplicates
    with mp_project.warehouse() as con:
        (raw,) = con.execute("SELECT count(*) FROM mixpanel.events").fetchone()
        unique = dict(con.execute("SELECT insert_id, lib_version FROM "
                                  "analytics.mixpanel_events_unique").fetchall())
        (count,) = con.execute("SELECT count(*) FROM analytics.mixpanel_events_unique"
                               ).fetchone()
    assert raw == len(served) and count == len(unique) == len(served) - len(duplicates)
    assert all(unique[s.insert_id] == "2.55.2" for s in duplicates)  # the later copy wins


def test_the_late_data_schedule_refetches_the_settle_days_and_counts_the_late_rows(mp_project):
    settle = days(FALL - timedelta(days=4), FALL)  # MIXPANEL_SETTLE_DAYS=5
    assert mp_project.materialize(settle[0], settle[-1]).success
    before = {d: len(mp_project.sim.served(d, d)) for d in settle}
    mp_project.sim.config = replace(mp_project.sim.config, late_arrived=True)
    late = {d: sum(1 for s in mp_project.sim.served(d, d) if s.kind == "late") for d in settle}
    assert all(late.values())

    defs = mp_project.defs()
    schedule = defs.resolve_schedule_def("mixpanel_late_data_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert defs.resolve_schedule_def("mixpanel_daily_schedule").default_status == (
        dg.DefaultScheduleStatus.STOPPED)
    # 2026-11-04 02:50 in Los Angeles: the newest ready day is 11-02 (a lag of one day), so the
    # five days before it are re-fetched
    tick = datetime(2026, 11, 4, 2, 50, tzinfo=ZoneInfo(ZONE))
    with dg.build_schedule_context(instance=mp_project.instance, scheduled_execution_time=tick,
                                   repository_def=defs.get_repository_def()) as context:
        (request,) = schedule.evaluate_tick(context).run_requests
    assert (request.tags["dagster/asset_partition_range_start"],
            request.tags["dagster/asset_partition_range_end"]) == (str(settle[0]),
                                                                   str(settle[-1]))
    job = defs.resolve_job_def("mixpanel_late_data")
    result = job.execute_in_process(instance=mp_project.instance, tags=request.tags,
                                    resources=mp_project.resources(defs))
    assert result.success
    assert mp_project.requests()[-1]["from_date"] == str(settle[0])
    assert len(mp_project.requests()) == 2  # the five days in one request
    meta = day_metadata(result, EVENTS)
    assert {k: (m["rows_added"], m["rows_removed"], m["rows_changed"])
            for k, m in meta.items()} == {str(d): (late[d], 0, 0) for d in settle}
    with mp_project.warehouse() as con:
        ledger = con.execute("SELECT day, rows, rows_added, rows_removed, rows_changed "
                             "FROM mixpanel._loads ORDER BY day").fetchall()
    assert ledger == [(d, before[d] + late[d], late[d], 0, 0) for d in settle]
    for day in settle:
        assert_day_matches_served(mp_project, day)


def test_a_utc_project_has_utc_days_and_converts_nothing(utc_project):
    defs = utc_project.defs()
    partitions = defs.resolve_assets_def(EVENTS).partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert partitions.timezone == "UTC"
    first, last = FALL, FALL + timedelta(days=1)
    assert utc_project.materialize(first, last).success
    for day in days(first, last):
        assert_day_matches_served(utc_project, day)
    with utc_project.warehouse() as con:
        assert con.execute("SELECT count(*) FROM mixpanel.events WHERE epoch(time) <> time_raw "
                           "OR CAST(time AS DATE) <> _day").fetchone() == (0,)


def test_the_deprecated_project_secret_works_and_warns(tmp_path, monkeypatch):
    with MixpanelSimulator(replace(LOCAL, per_second=100)) as sim, \
            dg.instance_for_test() as instance:
        project = MixpanelProject(sim, tmp_path, instance, {
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": "", "MIXPANEL_SERVICE_ACCOUNT_SECRET": "",
            "MIXPANEL_PROJECT_ID": "", "MIXPANEL_API_SECRET": sim.config.api_secret})
        for name, value in project.env.items():
            monkeypatch.setenv(name, value)
        result = project.materialize(FALL)
        assert result.success
        assert_day_matches_served(project, FALL)
        assert "project_id" not in sim.export_requests()[0].params
        logged = [r.event_log_entry for r in
                  instance.get_records_for_run(result.run_id).records]
        assert any("fully retires on March 3, 2027" in entry.user_message
                   and entry.level == logging.WARNING for entry in logged)


def test_without_mixpanel_variables_the_code_location_has_no_mixpanel(tmp_path):
    env = {"WAREHOUSE_PATH": str(tmp_path / "w.duckdb"), "LAKE_ROOT": str(tmp_path / "lake")}
    defs = build_defs(env)
    assert not any(k.path[0] == "mixpanel" for a in defs.assets for k in a.keys)
    with pytest.raises(ValueError, match="MIXPANEL_TIMESTAMPS"):
        build_defs({**env, "MIXPANEL_API_SECRET": "a-secret-1234"})
