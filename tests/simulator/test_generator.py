"""The event generator: realistic shapes, determinism, slices, uniqueness."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from simulator.config import SimulatorConfig
from simulator.generator import (
    BLOCK_EVENTS,
    HourProfile,
    MemberJob,
    gzip_member,
    hour_index,
    hour_lines,
    hour_text,
)

HOUR = datetime(2025, 7, 1, 17, tzinfo=UTC)
TS = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?")
TIMESTAMPS = (
    "client_event_time",
    "client_upload_time",
    "event_time",
    "processed_time",
    "server_received_time",
    "server_upload_time",
)
N = 3_000


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return list(hour_lines(636686, HOUR, N, seed=3))


@pytest.fixture(scope="module")
def events(lines: list[bytes]) -> list[dict]:
    return [json.loads(line) for line in lines]


def parse(ts: str) -> datetime:
    layout = "%Y-%m-%d %H:%M:%S.%f" if "." in ts else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(ts, layout).replace(tzinfo=UTC)


def test_lines_are_ndjson_with_the_export_keys_in_order(lines: list[bytes], events: list[dict]):
    assert len(lines) == N
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    for event in events:
        keys = list(event)
        assert keys == sorted(keys)
        assert len(keys) == 55 + ("zz_new_field" in event)
    assert {type(e["amplitude_attribution_ids"]) for e in events} == {list, type(None)}
    assert all(isinstance(a, str) for e in events for a in e["amplitude_attribution_ids"] or [])
    for name in ("data", "event_properties", "user_properties", "groups", "group_properties"):
        assert all(isinstance(e[name], dict) for e in events)


def test_field_values_look_like_amplitude(events: list[dict]):
    assert all(len(str(e["amplitude_id"])) == 13 for e in events)
    assert all(e["app"] == 636686 for e in events)
    assert all(e["data_type"] == "event" for e in events)
    sessions = [e["session_id"] for e in events]
    assert 0.10 < sessions.count(-1) / N < 0.20
    assert all(s == -1 or s > 1_600_000_000_000 for s in sessions)
    stamps = [e[name] for e in events for name in TIMESTAMPS]
    assert all(TS.fullmatch(s) for s in stamps)
    whole = sum(len(s) == 19 for s in stamps) / len(stamps)
    assert 0.01 < whole < 0.03
    assert 0.005 < sum("zz_new_field" in e for e in events) / N < 0.02
    assert any(len(e["event_properties"]) >= 150 for e in events)
    assert any(e["user_id"] is None for e in events)
    assert any(e["city"] is None for e in events)
    text = json.dumps(events, ensure_ascii=False)
    assert "🙂" in text and "東京" in text and "München" in text


def test_upload_times_lie_in_the_hour_and_some_events_are_days_late(events: list[dict]):
    lateness = []
    for e in events:
        upload = parse(e["server_upload_time"])
        assert HOUR <= upload < HOUR + timedelta(hours=1)
        assert parse(e["server_received_time"]) < upload + timedelta(seconds=1)
        lateness.append(upload - parse(e["event_time"]))
    assert sum(d > timedelta(days=1) for d in lateness) / N > 0.02
    assert sum(d < timedelta(minutes=1) for d in lateness) / N > 0.5


def test_uuid_is_unique_across_hours_and_looks_like_uuid4():
    seen: set[str] = set()
    total = 0
    for k in range(3):
        hour = HOUR + timedelta(hours=k)
        for line in hour_lines(636686, hour, 1_500):
            seen.add(json.loads(line)["uuid"])
            total += 1
    assert len(seen) == total
    sample = next(iter(seen))
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", sample
    )


def test_deterministic_and_any_slice_equals_the_same_slice_of_the_hour(lines: list[bytes]):
    assert list(hour_lines(636686, HOUR, N, seed=3)) == lines
    lo, hi = BLOCK_EVENTS - 7, 2 * BLOCK_EVENTS + 5  # across two block boundaries
    part = list(hour_lines(636686, HOUR, N, seed=3, start=lo, stop=hi))
    assert part == lines[lo:hi]
    assert hour_text(636686, HOUR, lo, hi, seed=3) == b"".join(lines[lo:hi])
    assert list(hour_lines(636686, HOUR, N, seed=4, stop=5)) != lines[:5]
    assert list(hour_lines(636687, HOUR, N, seed=3, stop=5)) != lines[:5]


def test_naive_hours_are_utc(lines: list[bytes]):
    naive = HOUR.replace(tzinfo=None)
    assert list(hour_lines(636686, naive, 10, seed=3)) == lines[:10]


def test_gzip_member_is_deterministic_gzip_of_the_lines(lines: list[bytes]):
    job = MemberJob(636686, HOUR, 100, 1_100, seed=3)
    data = gzip_member(job)
    assert data == gzip_member(job)
    assert gzip.decompress(data) == b"".join(lines[100:1_100])


def test_profile_counts_and_overrides():
    profile = HourProfile()
    day = [HOUR.replace(hour=h) for h in range(24)]
    counts = [profile.count(h) for h in day]
    assert sum(c == 0 for c in counts) in (3, 4)  # every 7th hour of the epoch is empty
    assert all(c == 0 or c >= 30 for c in counts)
    empty = next(h for h in day if profile.count(h) == 0)
    assert hour_index(empty) % 7 == 0
    config = SimulatorConfig(hour_counts={HOUR.replace(tzinfo=None): 5, empty: 9})
    assert config.hour_count(HOUR) == 5
    assert config.hour_count(empty) == 9
    assert config.hour_count(HOUR + timedelta(hours=1)) == profile.count(HOUR + timedelta(hours=1))
    assert Counter(HourProfile(empty_every=1).count(h) for h in day) == Counter({0: 24})
