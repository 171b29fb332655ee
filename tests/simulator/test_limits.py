"""The simulator's own rate limits, scaled down: 429 with Retry-After when a test exceeds them,
and a request log that shows what was in flight, so a client's limiter can be checked against
it ("never more at once than allowed", "no 429")."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from simulator import HourProfile, RateLimits, RequestRecord, Simulator, SimulatorConfig
from simulator.limits import Limiter, Refusal

AUTH = ("sim-api-key", "sim-secret-key")
DAY = datetime(2026, 3, 6, tzinfo=UTC)
SPAN = {"first_hour": DAY, "last_hour": DAY.replace(hour=5), "profile": HourProfile(base=5)}
USERS = {"start": "20260306", "end": "20260306"}


def serving(limits: RateLimits, **changes: object) -> Simulator:
    return Simulator(SimulatorConfig(limits=limits, **changes))  # type: ignore[arg-type]


def at_once(sim: Simulator, path: str, n: int, **params: str) -> list[httpx.Response]:
    """``n`` requests started together from ``n`` threads."""
    barrier = threading.Barrier(n)
    out: list[httpx.Response] = []

    def one() -> None:
        with httpx.Client(base_url=sim.url, auth=AUTH, timeout=10) as http:
            barrier.wait()
            out.append(http.get(path, params=params))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def overlap(records: list[RequestRecord]) -> int:
    """The most admitted requests whose [start, end] intervals overlap at one instant."""
    edges = sorted(
        [(r.start, 1) for r in records if r.limit is None]
        + [(r.end, -1) for r in records if r.limit is None and r.end is not None]
    )
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


# -- the limiter alone ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_windows_slide_and_say_when_to_retry():
    clock = Clock()
    limiter = Limiter(RateLimits(cohort_requests=2, cohort_window_seconds=10), clock)
    for _ in range(2):
        assert not isinstance(limiter.admit(("rest", "cohort"), 1), Refusal)
        limiter.release(("rest", "cohort"), 1)
        clock.now += 3
    refused = limiter.admit(("rest", "cohort"), 1)
    assert isinstance(refused, Refusal)
    assert (refused.limit, refused.retry_after) == ("cohort_requests", 4)  # 1000 + 10 - 1006
    clock.now += 4
    assert not isinstance(limiter.admit(("rest", "cohort"), 1), Refusal)


def test_costs_and_concurrency():
    limiter = Limiter(RateLimits(dashboard_cost_short=10, rest_concurrent=2), Clock())
    assert not isinstance(limiter.admit(("rest", "dashboard"), 6), Refusal)
    refused = limiter.admit(("rest", "dashboard"), 5)
    assert isinstance(refused, Refusal) and refused.limit == "dashboard_cost_short"
    admitted = limiter.admit(("rest", "dashboard"), 4)
    assert not isinstance(admitted, Refusal) and admitted[0] == {"rest": 2, "dashboard": 2}
    refused = limiter.admit(("rest", "cohort"), 1)
    assert isinstance(refused, Refusal) and refused.limit == "rest_concurrent"
    assert refused.in_flight == {"rest": 2, "cohort": 0}
    off = Limiter(RateLimits(enabled=False, rest_concurrent=0), Clock())
    assert not isinstance(off.admit(("rest",), 1), Refusal)


# -- over HTTP --------------------------------------------------------------------------------


def test_cohort_requests_per_window_get_429_with_retry_after():
    limits = RateLimits(cohort_requests=3, cohort_window_seconds=1.0)
    with serving(limits) as sim, httpx.Client(base_url=sim.url, auth=AUTH) as api:
        assert [api.get("/api/3/cohorts").status_code for _ in range(3)] == [200] * 3
        refused = api.get("/api/5/cohorts/request/n3wsl7r")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "per 1 seconds" in refused.json()["error"]["message"]
        assert [r.limit for r in sim.throttled()] == ["cohort_requests"]
        time.sleep(1.05)
        assert api.get("/api/5/cohorts/request/n3wsl7r").status_code == 202
        assert api.get("/api/3/cohorts", auth=("x", "y")).status_code == 403  # not counted
        assert sim.errors == []


def test_concurrent_requests_over_the_shared_limit_get_429():
    limits = RateLimits(rest_concurrent=2)
    with serving(limits, api_latency_seconds=0.4) as sim:
        statuses = sorted(r.status_code for r in at_once(sim, "/api/3/cohorts", 4))
        assert statuses == [200, 200, 429, 429]
        assert sim.peak_in_flight("rest") == 2
        assert {r.limit for r in sim.throttled()} == {"rest_concurrent"}
        assert overlap(sim.requests) == 2


def test_dashboard_cost_counts_segmentation_events():
    limits = RateLimits(dashboard_cost_short=5, dashboard_short_window_seconds=60)
    two = {"e": json.dumps({"event_type": "_all"}), "e2": json.dumps({"event_type": "search"})}
    with serving(limits, **SPAN) as sim, httpx.Client(base_url=sim.url, auth=AUTH) as api:
        segmentation = {**USERS, "m": "totals", **two}
        for _ in range(2):
            assert api.get("/api/2/events/segmentation", params=segmentation).status_code == 200
        assert api.get("/api/2/users", params=USERS).status_code == 200
        refused = api.get("/api/2/users", params=USERS)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 50
        assert [r.cost for r in sim.requests] == [2, 2, 1, 0]
        assert sim.throttled()[0].limit == "dashboard_cost_short"


def test_taxonomy_concurrent_cost_and_hourly_budget():
    limits = RateLimits(taxonomy_concurrent_cost=1, taxonomy_cost_hourly=4)
    with serving(limits, api_latency_seconds=0.3) as sim:
        responses = at_once(sim, "/api/2/taxonomy/event", 2)
        assert sorted(r.status_code for r in responses) == [200, 429]
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json()["success"] is False and refused.headers["retry-after"] == "1"
        with httpx.Client(base_url=sim.url, auth=AUTH) as api:
            codes = [api.get("/api/2/taxonomy/user-property").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert sim.throttled()[-1].limit == "taxonomy_cost_hourly"


def test_a_client_within_the_limits_sees_no_429_and_the_log_shows_it():
    limits = RateLimits(rest_concurrent=2, cohort_concurrent=2)
    with serving(limits, api_latency_seconds=0.02, **SPAN) as sim:
        slots = threading.Semaphore(2)  # a client using all it may: 2 at once, back to back
        errors: list[int] = []

        def worker(path: str, params: dict[str, str]) -> None:
            with slots, httpx.Client(base_url=sim.url, auth=AUTH, timeout=10) as http:
                code = http.get(path, params=params).status_code
                if code != 200:
                    errors.append(code)

        jobs = [("/api/3/cohorts", {}), ("/api/2/users", USERS)] * 15
        threads = [threading.Thread(target=worker, args=job) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and sim.throttled() == []
        log = sim.requests
        assert all(r.end is not None and r.end >= r.start and r.status == 200 for r in log)
        assert sim.peak_in_flight("rest") == 2 and sim.peak_in_flight("cohort") <= 2
        assert overlap(log) <= 2


@pytest.fixture
def unlimited() -> Iterator[Simulator]:
    with serving(RateLimits(enabled=False), api_latency_seconds=0.2) as sim:
        yield sim


def test_limits_can_be_switched_off(unlimited: Simulator):
    assert {r.status_code for r in at_once(unlimited, "/api/3/cohorts", 8)} == {200}
    assert unlimited.peak_in_flight("rest") >= 2
