"""The simulated Dashboard REST API over real HTTP: ``/api/2/users`` and
``/api/2/events/segmentation`` must equal a brute-force count over the export's own lines, by
event date in the project's zone (here Los Angeles, with the spring DST change inside the span),
and ``/api/2/events/list`` keeps more fields than the docs show."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from simulator import HourProfile, Simulator, SimulatorConfig

AUTH = ("sim-api-key", "sim-secret-key")
ZONE = "America/Los_Angeles"  # DST starts 2026-03-08 02:00 local (10:00 UTC)
FIRST, LAST = datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 3, 9, 23, tzinfo=UTC)
INACTIVE = "session_end"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(
        profile=HourProfile(base=12),
        first_hour=FIRST,
        last_hour=LAST,
        timezone=ZONE,
        inactive_event_types=frozenset({INACTIVE}),
        hidden_event_types=frozenset({"video played 🎬"}),
        events_per_member=500,
    )
    with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
def api(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, auth=AUTH, timeout=60) as http:
        yield http
    assert sim.errors == []


@pytest.fixture(scope="module")
def events(sim: Simulator) -> list[dict]:
    """Every event the export serves for the span, parsed with json, as a client would."""
    with httpx.Client(base_url=sim.url, auth=AUTH, timeout=60) as http:
        params = {"start": f"{FIRST:%Y%m%dT%H}", "end": f"{LAST:%Y%m%dT%H}"}
        response = http.get("/api/2/export", params=params)
        assert response.status_code == 200
        before = {"start": "20260305T00", "end": "20260305T23"}
        assert http.get("/api/2/export", params=before).status_code == 404  # outside the span
    out = []
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        for info in zf.infolist():
            if not info.filename.endswith("/"):
                out += [json.loads(line) for line in gzip.decompress(zf.read(info)).splitlines()]
    assert len(out) > 1_000
    return out


def local_day(event_time: str) -> date:
    layout = "%Y-%m-%d %H:%M:%S.%f" if "." in event_time else "%Y-%m-%d %H:%M:%S"
    utc = datetime.strptime(event_time, layout).replace(tzinfo=UTC)
    return utc.astimezone(ZoneInfo(ZONE)).date()


def window(events: list[dict]) -> tuple[date, date]:
    """From the first to one past the last day any event falls on (late events reach back)."""
    days = {local_day(e["event_time"]) for e in events}
    return min(days) - timedelta(days=1), max(days) + timedelta(days=1)


def ymd(day: date) -> str:
    return f"{day:%Y%m%d}"


def every_day(start: date, end: date) -> list[date]:
    return [start + timedelta(days=k) for k in range((end - start).days + 1)]


def chart(api: httpx.Client, path: str, start: date, end: date, **params: str) -> dict:
    response = api.get(path, params={"start": ymd(start), "end": ymd(end), "i": "1", **params})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["xValues"] == [d.isoformat() for d in every_day(start, end)]
    return data


def test_active_and_new_users_equal_a_brute_force_count(api: httpx.Client, events: list[dict]):
    start, end = window(events)
    active: dict[date, set[int]] = defaultdict(set)
    first: dict[int, datetime] = {}
    for e in events:
        if e["event_type"] != INACTIVE:
            active[local_day(e["event_time"])].add(e["amplitude_id"])
        layout = "%Y-%m-%d %H:%M:%S.%f" if "." in e["event_time"] else "%Y-%m-%d %H:%M:%S"
        at = datetime.strptime(e["event_time"], layout)
        if e["amplitude_id"] not in first or at < first[e["amplitude_id"]]:
            first[e["amplitude_id"]] = at
    new = Counter(local_day(f"{t:%Y-%m-%d %H:%M:%S.%f}") for t in first.values())
    data = chart(api, "/api/2/users", start, end, m="active")
    assert data["series"] == [[len(active[d]) for d in every_day(start, end)]]
    assert data["seriesMeta"] == [{"segmentIndex": 0}]
    default = chart(api, "/api/2/users", start, end)
    assert default["series"] == data["series"]  # m defaults to active
    data = chart(api, "/api/2/users", start, end, m="new")
    assert data["series"] == [[new[d] for d in every_day(start, end)]]
    assert sum(data["series"][0]) == len(first)
    dst = date(2026, 3, 8)  # a 23-hour day in Los Angeles
    assert data["xValues"].index(dst.isoformat()) >= 0 and len(active[dst]) > 0


def test_segmentation_totals_and_uniques_equal_a_brute_force_count(
    api: httpx.Client, events: list[dict]
):
    start, end = window(events)
    days = every_day(start, end)
    by_day = Counter(local_day(e["event_time"]) for e in events)
    all_events = json.dumps({"event_type": "_all"})
    data = chart(api, "/api/2/events/segmentation", start, end, e=all_events, m="totals")
    assert data["series"] == [[by_day[d] for d in days]]
    assert data["seriesCollapsed"] == [[{"setId": "", "value": len(events)}]]
    assert data["seriesLabels"] == [0]
    active_totals = Counter(
        local_day(e["event_time"]) for e in events if e["event_type"] != INACTIVE
    )
    searches = Counter(local_day(e["event_time"]) for e in events if e["event_type"] == "search")
    two = {"e": json.dumps({"event_type": "_active"}), "e2": json.dumps({"event_type": "search"})}
    data = chart(api, "/api/2/events/segmentation", start, end, m="totals", **two)
    assert data["series"] == [[active_totals[d] for d in days], [searches[d] for d in days]]
    users: dict[date, set[int]] = defaultdict(set)
    for e in events:
        if e["event_type"] == "search":
            users[local_day(e["event_time"])].add(e["amplitude_id"])
    search = json.dumps({"event_type": "search"})
    data = chart(api, "/api/2/events/segmentation", start, end, e=search)  # m: uniques
    assert data["series"] == [[len(users[d]) for d in days]]
    assert data["seriesCollapsed"][0][0]["value"] == len(set().union(*users.values()))


def test_counts_are_cached_and_equal_the_simulators_own_view(sim: Simulator, events: list[dict]):
    counts = sim.daily_counts()
    assert counts is sim.daily_counts() and counts.events == len(events)


def test_events_list_has_more_fields_than_the_docs(api: httpx.Client, events: list[dict]):
    response = api.get("/api/2/events/list")
    assert response.status_code == 200
    data = response.json()["data"]
    documented = {"non_active", "value", "totals", "deleted", "flow_hidden", "hidden", "display"}
    for item in data:
        assert documented < set(item) and {"id", "autohidden", "totals_delta"} <= set(item)
        assert isinstance(item["id"], int) and item["hidden"] is False
    names = [item["value"] for item in data]
    assert "video played 🎬" not in names and "page_view" in names  # hidden ones are left out
    assert {i["value"]: i["non_active"] for i in data}[INACTIVE] is True
    last = local_day(f"{LAST + timedelta(minutes=59, seconds=59):%Y-%m-%d %H:%M:%S}")
    week = set(every_day(last - timedelta(days=6), last))
    expected = Counter(e["event_type"] for e in events if local_day(e["event_time"]) in week)
    assert {i["value"]: i["totals"] for i in data} == {n: expected[n] for n in names}


@pytest.mark.parametrize(
    "params",
    [
        {"start": "20260306"},
        {"start": "2026-03-06", "end": "20260307"},
        {"start": "20260308", "end": "20260307"},
        {"start": "20260306", "end": "20260307", "i": "7"},
        {"start": "20260306", "end": "20260307", "m": "sessions"},
        {"start": "20260306", "end": "20260307", "s": '[{"prop": "country"}]'},
    ],
)
def test_users_rejects_what_it_cannot_answer_with_400(api: httpx.Client, params):
    assert api.get("/api/2/users", params=params).status_code == 400


def test_segmentation_rejects_bad_events_with_400(api: httpx.Client):
    base = {"start": "20260306", "end": "20260307", "m": "totals"}
    for e in (None, "not json", "[]", json.dumps({"event_type": "x", "group_by": [{"v": 1}]})):
        params = base if e is None else {**base, "e": e}
        assert api.get("/api/2/events/segmentation", params=params).status_code == 400


def test_without_a_span_the_dashboard_says_what_to_configure():
    with Simulator(SimulatorConfig()) as sim, httpx.Client(base_url=sim.url, auth=AUTH) as api:
        for path in ("/api/2/users", "/api/2/events/list"):
            response = api.get(path, params={"start": "20260306", "end": "20260307"})
            assert response.status_code == 400
            assert "first_hour" in response.json()["error"]["message"]


@pytest.mark.parametrize("auth", [None, ("sim-api-key", "wrong")])
@pytest.mark.parametrize(
    "path", ["/api/2/users", "/api/2/events/segmentation", "/api/2/events/list"]
)
def test_dashboard_endpoints_need_the_projects_credentials(sim: Simulator, path, auth):
    response = httpx.get(sim.url + path, auth=auth, params={"start": "20260306", "end": "20260307"})
    assert response.status_code == (401 if auth is None else 403)
