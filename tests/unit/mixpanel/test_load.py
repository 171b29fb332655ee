"""Loading days into mixpanel.events: one transaction a day, idempotent, a ledger of changes;
the dedup model's SQL and the duplicate share, on what the simulator served."""

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import pytest

from pipeline.mixpanel.checks import duplicate_share
from pipeline.mixpanel.days import DayWindow
from pipeline.mixpanel.load import MixpanelLoad, load_day
from pipeline.mixpanel.normalize import normalize_window
from pipeline.mixpanel.schema import EVENT_COLUMNS
from pipeline.partition_swap import RowDropRefused
from simulator import MixpanelConfig
from tests.unit.mixpanel.conftest import FALL, ZONE, make_client, open_warehouse

ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / "analytics" / "models" / "mixpanel" / "mixpanel_events_unique.sql"
EVENTS_TABLE = "mixpanel.events"
WINDOW = DayWindow(FALL, FALL + timedelta(days=1))


def land(sim, tmp_path, name="lake"):
    with make_client(sim) as client:
        download = client.download(WINDOW, tmp_path / f"{name}-landing")
    days = normalize_window(download.path, WINDOW.days,
                            lambda d: tmp_path / name / f"day={d}" / "events.parquet",
                            zone=ZoneInfo(ZONE))
    return download, days


def record(download, day):
    return MixpanelLoad(day=day, request_window=str(download.window),
                        window_requests=download.attempts, bytes_downloaded=download.bytes,
                        fetch_seconds=download.seconds)


def load_all(warehouse, download, days, **options):
    with warehouse.connect() as con:
        return [load_day(con, "mixpanel", d.path, record(download, d.day), **options)
                for d in days]


def test_the_ddl_matches_the_schema(tmp_path):
    warehouse = open_warehouse(tmp_path / "w.duckdb")
    with warehouse.connect() as con:
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'mixpanel' AND "
            "table_name = 'events' ORDER BY column_index").fetchall()]
    assert columns == [c.name for c in EVENT_COLUMNS]


def test_loading_is_idempotent_and_the_ledger_counts_changes(mp_sim, tmp_path):
    warehouse = open_warehouse(tmp_path / "w.duckdb")
    download, days = land(mp_sim, tmp_path)
    first = load_all(warehouse, download, days)
    assert [r.rows_added for r in first] == [d.rows for d in days]
    with warehouse.connect() as con:
        before = con.execute(f"SELECT * FROM {EVENTS_TABLE} ORDER BY ALL").fetchall()
    again = load_all(warehouse, download, days)
    assert [(r.rows_added, r.rows_removed, r.rows_changed) for r in again] == [(0, 0, 0)] * 2
    with warehouse.connect() as con:
        assert con.execute(f"SELECT * FROM {EVENTS_TABLE} ORDER BY ALL").fetchall() == before
        ledger = con.execute("SELECT day, rows, request_window, duplicate_rows FROM "
                             "mixpanel._loads ORDER BY day").fetchall()
    assert ledger == [(d.day, d.rows, str(WINDOW), r.duplicate_rows)
                      for d, r in zip(days, again, strict=True)]
    assert all(r.duplicate_rows > 0 for r in again)
    assert len(before) == len(mp_sim.served(WINDOW.first_day, WINDOW.last_day))


def test_late_events_show_as_added_rows(mp_sim, tmp_path):
    warehouse = open_warehouse(tmp_path / "w.duckdb")
    load_all(warehouse, *land(mp_sim, tmp_path, "early"))
    late = sum(1 for s in mp_sim.served(FALL, FALL) if s.kind == "late")
    assert late == 0
    mp_sim.config = MixpanelConfig(gap_readings=2, limits_enabled=False, late_arrived=True)
    arrived = [s for s in mp_sim.served(FALL, FALL) if s.kind == "late"]
    result = load_all(warehouse, *land(mp_sim, tmp_path, "late"))
    assert len(arrived) > 0
    assert (result[0].rows_added, result[0].rows_removed, result[0].rows_changed) == (
        len(arrived), 0, 0)


def test_a_short_refetch_is_refused_and_keeps_the_rows(mp_sim, tmp_path):
    warehouse = open_warehouse(tmp_path / "w.duckdb")
    download, days = land(mp_sim, tmp_path)
    load_all(warehouse, download, days)
    mp_sim.config = MixpanelConfig(events_per_day=5, limits_enabled=False)
    download, short = land(mp_sim, tmp_path, "short")
    with pytest.raises(RowDropRefused):
        load_all(warehouse, download, short, max_drop_share=0.5)
    with warehouse.connect() as con:
        (rows,) = con.execute(f"SELECT count(*) FROM {EVENTS_TABLE}").fetchone()
    assert rows == sum(d.rows for d in days)


def model_sql() -> str:
    """The model as dbt compiles it: its source is the all-projects view."""
    return jinja2.Template(MODEL.read_text()).render(
        source=lambda source, table: f"{source}_all.{table}")


def test_the_dedup_model_keeps_the_latest_processed_copy(mp_sim, tmp_path):
    warehouse = open_warehouse(tmp_path / "w.duckdb")
    load_all(warehouse, *land(mp_sim, tmp_path))
    truth = mp_sim.served(WINDOW.first_day, WINDOW.last_day)
    duplicates = [s for s in truth if s.kind == "duplicate"]
    with warehouse.connect() as con:
        con.execute(f"CREATE TEMP VIEW unique_events AS {model_sql()}")
        unique = con.execute("SELECT insert_id, lib_version FROM unique_events").fetchall()
        shares = [duplicate_share(con, "mixpanel", day) for day in WINDOW.days]
    assert len(unique) == len(truth) - len(duplicates)
    assert len({insert_id for insert_id, _ in unique}) == len(unique)
    winners = dict(unique)
    assert duplicates and all(winners[s.insert_id] == "2.55.2" for s in duplicates)
    assert sum(s.duplicates for s in shares) == len(duplicates)
    assert all(0 < s.share < 0.2 for s in shares)


def test_rows_without_an_insert_id_are_never_merged(tmp_path):
    warehouse = open_warehouse(tmp_path / "w.duckdb")
    with warehouse.connect() as con:
        for n in range(2):
            con.execute(f"INSERT INTO {EVENTS_TABLE} (event, distinct_id, insert_id, time_raw, "
                        "mp_processing_time, _day) VALUES ('a', 'u', NULL, 1, "
                        f"TIMESTAMPTZ '2026-03-01 00:00:0{n}Z', DATE '2026-03-01')")
        assert con.execute(f"SELECT count(*) FROM ({model_sql()})").fetchone() == (2,)
        share = duplicate_share(con, "mixpanel", FALL)
    assert (share.rows, share.duplicates, share.share) == (0, 0, 0.0)
