"""Normalize against the simulator's truth, field for field, DST-change hours included."""

import gzip
import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pytest

from pipeline.mixpanel.days import DayWindow
from pipeline.mixpanel.normalize import NormalizeError, normalize_window
from pipeline.mixpanel.schema import EVENT_COLUMNS, PROMOTED
from simulator import MixpanelConfig, MixpanelSimulator
from tests.unit.mixpanel.conftest import FALL, SPRING, ZONE, make_client

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def out_for(root):
    return lambda day: root / f"day={day}" / "events.parquet"


def fetch_and_normalize(sim, window, tmp_path, *, ms=False, zone=ZONE):
    with make_client(sim) as client:
        download = client.download(window, tmp_path / "landing", time_in_ms=ms)
    days = normalize_window(download.path, window.days, out_for(tmp_path / "lake"),
                            zone=None if zone is None else ZoneInfo(zone))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    files = [str(d.path) for d in days]
    rows = con.execute(f"SELECT * FROM read_parquet({files!r})").fetchall()
    names = [c[0] for c in con.description]
    return days, [dict(zip(names, row, strict=True)) for row in rows]


def by_key(rows):
    return {(r["insert_id"], r["mp_processing_time"]): r for r in rows}


def processing(ms):
    return EPOCH + timedelta(milliseconds=ms)


@pytest.mark.parametrize("ms", [False, True])
@pytest.mark.parametrize("window", [DayWindow(SPRING - timedelta(days=1), SPRING),
                                    DayWindow(FALL, FALL + timedelta(days=1))])
def test_every_field_matches_what_was_served(mp_sim, tmp_path, window, ms):
    days, rows = fetch_and_normalize(mp_sim, window, tmp_path, ms=ms)
    truth = mp_sim.served(window.first_day, window.last_day)
    assert len(rows) == len(truth) == sum(d.rows for d in days)
    got = by_key(rows)
    kinds = set()
    for served in truth:
        row = got[(served.insert_id, processing(served.processing_ms))]
        kinds.add(served.kind)
        expected = served.expected_utc(ms=ms)
        if served.kind == "repeated_hour_late":  # the one case the rule cannot recover
            expected += timedelta(hours=1)
        assert row["time"] == expected, served
        assert row["event"] == served.event and row["distinct_id"] == served.distinct_id
        assert row["time_raw"] == served.time_value(mp_sim.config, ms=ms)
        assert (row["time_in_ms"] is not None) == ms
        if ms:
            assert row["time_in_ms"] == (expected - EPOCH) // timedelta(milliseconds=1)
        properties = json.loads(row["properties"])
        assert properties == json.loads(served.line(mp_sim.config, ms=ms))["properties"]
        for column in PROMOTED:
            value = served.properties.get(column.key)
            if column.duckdb_type == "BIGINT" and not isinstance(value, int):
                value = None  # "unknown" screen heights stay in properties only
            assert row[column.name] == (None if value is None else
                                        value if column.duckdb_type == "BIGINT" else str(value))
        wall = datetime.fromtimestamp(row["time_raw"] / (1000 if ms else 1), UTC)
        assert row["_day"] == wall.date()
        assert row["_extras"] is None and row["_source_file"].startswith("export-")
    if window.first_day == FALL:
        assert {"repeated_hour", "repeated_hour_late", "duplicate"} <= kinds
    else:
        assert "gap" in kinds


def test_the_repeated_hour_maps_to_both_utc_hours(mp_sim, tmp_path):
    _, rows = fetch_and_normalize(mp_sim, DayWindow(FALL, FALL), tmp_path)
    repeated = sorted(r["time"] for r in rows if r["distinct_id"] == "dst0")
    assert repeated == [datetime(2026, 11, 1, 8, 30, tzinfo=UTC),
                        datetime(2026, 11, 1, 9, 30, tzinfo=UTC)]
    local = {r["time_raw"] for r in rows if r["distinct_id"] == "dst0"}
    assert len(local) == 1  # one wall-clock reading, two instants


def test_a_utc_project_is_not_shifted(tmp_path):
    config = MixpanelConfig(timestamps="utc", limits_enabled=False)
    with MixpanelSimulator(config) as sim:
        window = DayWindow(FALL, FALL)
        _, rows = fetch_and_normalize(sim, window, tmp_path, zone=None)
        truth = {(s.insert_id, s.processing_ms): s for s in sim.served(FALL, FALL)}
    assert len(rows) == len(truth)
    for row in rows:
        served = truth[(row["insert_id"], (row["mp_processing_time"] - EPOCH)
                        // timedelta(milliseconds=1))]
        assert row["time"] == served.expected_utc(ms=False)
        assert row["_day"] == FALL


def write(path, lines):
    with gzip.open(path, "wb") as out:
        for line in lines:
            out.write((line if isinstance(line, str) else json.dumps(line)).encode() + b"\n")
    return path


def test_unknown_top_level_keys_are_kept_and_days_without_events_get_empty_files(tmp_path):
    body = write(tmp_path / "w.jsonl.gz", [
        {"event": "a", "properties": {"time": 1772323200, "distinct_id": 7}, "extra": [1]}])
    days = normalize_window(body, [date(2026, 3, 1), date(2026, 3, 2)],
                            out_for(tmp_path / "lake"), zone=None)
    assert [d.rows for d in days] == [1, 0]
    con = duckdb.connect()
    row = con.execute(f"SELECT distinct_id, _extras FROM '{days[0].path}'").fetchone()
    assert row == ("7", '{"extra":[1]}')
    empty = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{days[1].path}', "
                        "hive_partitioning = false)").fetchall()
    assert [c[0] for c in empty] == [c.name for c in EVENT_COLUMNS]


@pytest.mark.parametrize("bad, problem", [
    ({"event": "a", "properties": {"distinct_id": 1}}, "has no numeric properties.time"),
    ({"properties": {"time": 1772323200}}, "has no event name"),
    ({"event": "a", "properties": [1]}, "is not an object with a properties object"),
    ('{"event": "a", "prop', "is not JSON"),
])
def test_a_bad_line_fails_naming_day_file_and_line(tmp_path, bad, problem):
    good = {"event": "a", "properties": {"time": 1772323200}}
    body = write(tmp_path / "export-x.jsonl.gz", [good, good, bad, good])
    with pytest.raises(NormalizeError) as caught:
        normalize_window(body, [date(2026, 3, 1)], out_for(tmp_path / "lake"), zone=None)
    message = str(caught.value)
    assert "export-x.jsonl.gz line 3" in message and problem in message
    assert ("day 2026-03-01" in message) if "event name" in problem else "2026-03-01" in message
    assert not (tmp_path / "lake" / "day=2026-03-01" / "events.parquet").exists()


def test_events_of_a_day_not_asked_for_are_refused(tmp_path):
    body = write(tmp_path / "w.jsonl.gz", [{"event": "a", "properties": {"time": 1772323200}}])
    with pytest.raises(NormalizeError, match="outside the days asked for"):
        normalize_window(body, [date(2026, 3, 2)], out_for(tmp_path / "lake"), zone=None)
