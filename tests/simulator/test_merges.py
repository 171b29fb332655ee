"""Merged users (``SimulatorConfig.merge_share``), as Amplitude merges them: the rows, chains,
the ids the served lines carry before and after each merge, and the Dashboard counting canonical
users, checked against a recount over the export's own lines done here, with the merge rows as
the only key (following chains, as a reader must)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zipfile
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from simulator import HourProfile, Simulator, SimulatorConfig, build_archive
from simulator.exports import fingerprint
from simulator.generator import GENERATOR_VERSION, hour_lines, hour_text
from simulator.members import generated_ids

AUTH = ("sim-api-key", "sim-secret-key")
ZONE = "Europe/Berlin"
FIRST, LAST = datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 3, 7, 23, tzinfo=UTC)
ORG = 4242
MERGED = SimulatorConfig(
    profile=HourProfile(base=120),
    first_hour=FIRST,
    last_hour=LAST,
    timezone=ZONE,
    merge_share=0.3,
    org_id=ORG,
    events_per_member=2_000,
)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(MERGED) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def events(sim: Simulator) -> list[dict]:
    """Every event the export serves for the span, parsed as a client would."""
    with httpx.Client(base_url=sim.url, auth=AUTH, timeout=60) as http:
        params = {"start": f"{FIRST:%Y%m%dT%H}", "end": f"{LAST:%Y%m%dT%H}"}
        response = http.get("/api/2/export", params=params)
    assert response.status_code == 200
    out = []
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        for info in zf.infolist():
            if not info.filename.endswith("/"):
                out += [json.loads(line) for line in gzip.decompress(zf.read(info)).splitlines()]
    return out


def canonical_map(rows: list[dict]) -> dict[int, int]:
    """Every merged id -> the id at the end of its chain, from the rows alone."""
    into = {row["amplitude_id"]: row["merged_amplitude_id"] for row in rows}
    out = {}
    for start in into:
        seen, aid = {start}, into[start]
        while aid in into:
            aid = into[aid]
            assert aid not in seen, "a cycle"
            seen.add(aid)
        out[start] = aid
    return out


def ms(ts: str) -> int:
    layout = "%Y-%m-%d %H:%M:%S.%f" if "." in ts else "%Y-%m-%d %H:%M:%S"
    return int(datetime.strptime(ts, layout).replace(tzinfo=UTC).timestamp() * 1000)


def test_rows_have_amplitudes_shape_scope_and_instants_inside_the_span(sim: Simulator):
    rows = sim.merges()
    assert len(rows) > 1_000
    begin, end = FIRST.timestamp() * 1000, (LAST + timedelta(hours=1)).timestamp() * 1000
    originals = generated_ids(MERGED.project_id, MERGED.seed)  # built independently
    for row in rows:
        assert list(row) == [
            "scope", "merge_time", "merge_server_time", "amplitude_id", "merged_amplitude_id",
        ]  # fmt: skip
        assert row["scope"] == -ORG
        assert begin <= row["merge_time"] < row["merge_server_time"] < end
        assert row["merge_server_time"] - row["merge_time"] <= 30_000
        assert len(str(row["amplitude_id"])) == 13 and row["amplitude_id"] not in originals
    assert [r["merge_server_time"] for r in rows] == sorted(r["merge_server_time"] for r in rows)
    assert len({r["amplitude_id"] for r in rows}) == len(rows)  # each id is merged once
    canonical = canonical_map(rows)
    assert set(canonical.values()) <= originals
    assert canonical == {a: sim.canonical_id(a) for a in canonical}
    assert sim.canonical_id(123) == 123
    assert sim.canonical_ids() == {**canonical, **{o: o for o in canonical.values()}}


def test_chains_need_following(sim: Simulator):
    rows = sim.merges()
    merged_into = {r["merged_amplitude_id"] for r in rows}
    links = [r for r in rows if r["amplitude_id"] in merged_into]  # B of A -> B -> C
    assert 0.05 < len(links) / len(rows) < 0.3
    plan = sim.merge_plan()
    assert plan is not None and plan.chains and max(len(u.ids) for u in plan.chains) == 4
    for user in plan.chains:
        assert list(user.merge_times) == sorted(user.merge_times)
        assert sim.canonical_id(user.ids[0]) == user.original


def test_lines_carry_the_anonymous_id_until_the_merge_and_the_original_after(
    sim: Simulator, events: list[dict]
):
    plan = sim.merge_plan()
    assert plan is not None
    owner = {aid: user for user in plan.users for aid in user.ids}
    devices: dict[int, set[str]] = defaultdict(set)
    checked = switched = 0
    for event in events:
        user = owner.get(event["amplitude_id"])
        if user is None:
            continue
        devices[user.user].add(event["device_id"])
        upload = ms(event["server_upload_time"])
        if any(abs(upload - t) < 1_000 for t in user.server_times):
            continue  # a whole-second timestamp near the switch is ambiguous
        expected = user.ids[bisect_right(user.server_times, upload)]
        assert event["amplitude_id"] == expected
        checked += 1
        switched += expected != user.original
    assert checked > 1_000 and switched > 100
    assert all(len(found) == 1 for found in devices.values())  # the same device throughout


def local_day(event_time: str) -> date:
    utc = datetime.fromtimestamp(ms(event_time) / 1000, UTC)
    return utc.astimezone(ZoneInfo(ZONE)).date()


def test_dashboard_counts_canonical_users_as_a_recount_does(sim: Simulator, events: list[dict]):
    canonical = canonical_map(sim.merges())
    active: dict[date, set[int]] = defaultdict(set)
    raw: dict[date, set[int]] = defaultdict(set)
    totals: dict[date, int] = defaultdict(int)
    first: dict[int, tuple[int, date]] = {}
    for event in events:
        day, aid = local_day(event["event_time"]), event["amplitude_id"]
        user = canonical.get(aid, aid)
        active[day].add(user)
        raw[day].add(aid)
        totals[day] += 1
        at = ms(event["event_time"])
        if user not in first or at < first[user][0]:
            first[user] = (at, day)
    new: dict[date, int] = defaultdict(int)
    for _, day in first.values():
        new[day] += 1
    days = sorted(totals)
    start, end = days[0] - timedelta(days=1), days[-1] + timedelta(days=1)
    span = [start + timedelta(days=k) for k in range((end - start).days + 1)]
    window = {"start": f"{start:%Y%m%d}", "end": f"{end:%Y%m%d}"}
    with httpx.Client(base_url=sim.url, auth=AUTH, timeout=60) as http:
        answers = {
            m: http.get("/api/2/users", params={**window, "m": m}).json()["data"]["series"][0]
            for m in ("active", "new")
        }
        e = json.dumps({"event_type": "_all"})
        uniques = http.get("/api/2/events/segmentation", params={**window, "e": e}).json()
        totals_answer = http.get(
            "/api/2/events/segmentation", params={**window, "e": e, "m": "totals"}
        ).json()
    assert answers["active"] == [len(active.get(d, ())) for d in span]
    assert answers["new"] == [new.get(d, 0) for d in span]
    assert uniques["data"]["series"][0] == answers["active"]
    assert uniques["data"]["seriesCollapsed"][0][0]["value"] == len(first)
    assert totals_answer["data"]["series"][0] == [totals.get(d, 0) for d in span]
    # merges matter: counting the ids as served would count more users
    assert sum(len(raw[d]) for d in raw) > sum(len(active[d]) for d in active) + 10
    assert sim.daily_counts().events == len(events)


def test_canonical_counts_equal_those_of_the_project_without_merges(sim: Simulator):
    plain = Simulator(replace(MERGED, merge_share=0.0))
    merged, unmerged = sim.daily_counts(), plain.daily_counts()
    assert merged.totals == unmerged.totals
    assert {d: len(u) for d, u in merged.active_users.items()} == {
        d: len(u) for d, u in unmerged.active_users.items()
    }
    assert merged.new_users == unmerged.new_users


def test_archives_built_by_worker_processes_carry_the_same_ids(sim: Simulator, tmp_path: Path):
    hour = FIRST + timedelta(hours=18)
    config = replace(MERGED, workers=2, parallel_min_events=1, events_per_member=40)
    built = build_archive(config, hour, hour + timedelta(hours=1), tmp_path / "a.zip")
    assert built is not None and built.members > 2
    with zipfile.ZipFile(built.path) as zf:
        data = b"".join(gzip.decompress(zf.read(n)) for n in zf.namelist() if n.endswith(".gz"))
    assert data == b"".join(sim.hour_lines(hour)) + b"".join(
        sim.hour_lines(hour + timedelta(hours=1))
    )
    plan = sim.merge_plan()
    assert plan is not None
    anonymous = {a for u in plan.users for a in u.ids[:-1]}
    assert any(json.loads(line)["amplitude_id"] in anonymous for line in data.splitlines())


def test_the_config_checks_merges():
    with pytest.raises(ValueError, match="span"):
        SimulatorConfig(merge_share=0.1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        SimulatorConfig(merge_share=1.5, first_hour=FIRST, last_hour=LAST)
    assert fingerprint(MERGED) != fingerprint(replace(MERGED, org_id=1))


# -- merge_share 0: the bytes of before ---------------------------------------------------------

# Computed with the simulator of commit 4a0e6d9, before merges existed (GENERATOR_VERSION 2): a
# change of the generator's bytes must bump GENERATOR_VERSION and these.
GOLDEN_LINES = "935739eaea01f874c3d0776521b4d9bac938278838fc18252f8c03c55242b5d4"
GOLDEN_COUNTS = "03e472e28aa3b6eba4e015dc796e11d3f2bb5d25c2d69a0b784433bbab1ffcfe"
GOLDEN_FINGERPRINTS = ("ba36735be5ec56ae112b", "9711a4979288a8c9f6ea")


def test_without_merges_nothing_changes():
    assert GENERATOR_VERSION == 2
    plain = SimulatorConfig(first_hour=FIRST, last_hour=LAST, timezone=ZONE)
    simulator = Simulator(plain)
    assert simulator.merges() == [] and simulator.merge_plan() is None
    assert simulator.canonical_id(5) == 5 and simulator.canonical_ids() == {}
    hour = FIRST + timedelta(hours=17)
    served = b"".join(simulator.hour_lines(hour))
    assert served == b"".join(hour_lines(636686, hour, plain.hour_count(hour)))
    text = hour_text(636686, hour, 0, 3_000, seed=3)
    assert hashlib.sha256(text).hexdigest() == GOLDEN_LINES
    counts = simulator.daily_counts()
    shape = (
        sorted(counts.totals.items()),
        sorted((d, len(users)) for d, users in counts.active_users.items()),
        sorted(counts.new_users.items()),
    )
    assert hashlib.sha256(repr(shape).encode()).hexdigest() == GOLDEN_COUNTS
    assert (fingerprint(plain), fingerprint(SimulatorConfig())) == GOLDEN_FINGERPRINTS
