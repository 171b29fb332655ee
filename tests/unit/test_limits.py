"""The limiter under real threads, real processes and real SQLite files, with limits scaled down to
windows of a second. Only the tests about Amplitude's real ten-minute and hourly windows fake the
clock, and then the limiter still runs for real: the clock passes only when it sleeps."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from pipeline.amplitude.rate_limits import (
    COHORTS,
    DASHBOARD,
    DASHBOARD_AND_COHORTS,
    ENDPOINT_GROUPS,
    TAXONOMY,
    AmplitudeGate,
    amplitude_rules,
    groups_for,
    segmentation_cost,
)
from pipeline.http import TransientError
from pipeline.limits import (
    Budget,
    Limiter,
    LimitStore,
    LimitWaitTimeout,
    MemoryLimitStore,
    Rule,
    SqliteLimitStore,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LimitStore:
    if request.param == "memory":
        return MemoryLimitStore()
    return SqliteLimitStore(tmp_path / "limits.sqlite")


class FakeClock:
    """Time that passes only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run_threads(count: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


def most_in_window(points: list[tuple[float, float]], window: float) -> float:
    """The largest total weight of ``(time, weight)`` points in any interval [t, t + window)."""
    return max(sum(w for u, w in points if t <= u < t + window) for t, _ in points)


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most ``(start, end)`` intervals open at one moment (an end before a start at a tie)."""
    edges = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def refused(limiter: Limiter, groups: list[str] | tuple[str, ...] | str, cost: float = 1.0,
            max_wait_seconds: float | None = None) -> LimitWaitTimeout:
    """The error of an acquisition that must time out."""
    with pytest.raises(LimitWaitTimeout) as caught, limiter.acquire(
            groups, cost, max_wait_seconds=max_wait_seconds):
        pass
    return caught.value


class Gauge:
    """Counts what is in flight, as seen from inside the ``with``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.level = self.peak = 0.0

    def add(self, amount: float) -> None:
        with self._lock:
            self.level += amount
            self.peak = max(self.peak, self.level)


def test_eight_threads_never_exceed_the_concurrency_cap(store: LimitStore) -> None:
    limiter = Limiter({"g": Rule(max_concurrent=3)}, store, poll_seconds=0.005)
    gauge = Gauge()

    def work(_: int) -> None:
        for _ in range(6):
            with limiter.acquire(["g"]):
                gauge.add(1)
                time.sleep(0.02)
                gauge.add(-1)

    run_threads(8, work)
    assert gauge.peak == 3  # never more, and the cap was really used


def test_a_request_window_is_never_exceeded(store: LimitStore) -> None:
    window = 0.5
    limiter = Limiter({"w": Rule(budgets=(Budget(window, max_requests=4),))}, store,
                      poll_seconds=0.01)
    granted: list[float] = []
    seen: list[float] = []

    def work(_: int) -> None:
        for _ in range(3):
            with limiter.acquire(["w"]) as grant:
                seen.append(time.time())
                granted.append(grant.granted_at)

    run_threads(4, work)
    assert len(granted) == 12
    assert most_in_window([(t, 1) for t in granted], window) == 4
    # Independently of what the limiter reports: our own clock, with slack for the return.
    assert most_in_window([(t, 1) for t in seen], window - 0.1) <= 4
    assert max(seen) - min(seen) >= 2 * window  # 12 requests at 4 per window need 3 windows


def test_cost_budgets_and_concurrency_counted_in_cost(store: LimitStore) -> None:
    window = 0.6
    rule = Rule(max_concurrent_cost=4.0, budgets=(Budget(window, max_cost=10.0),))
    limiter = Limiter({"tax": rule}, store, poll_seconds=0.01)
    gauge = Gauge()
    granted: list[tuple[float, float]] = []

    def work(index: int) -> None:
        for step in range(3):
            cost = float(1 + (index + step) % 3)
            with limiter.acquire(["tax"], cost) as grant:
                gauge.add(cost)
                granted.append((grant.granted_at, cost))
                time.sleep(0.03)
                gauge.add(-cost)

    run_threads(4, work)
    assert gauge.peak <= 4.0
    assert most_in_window(granted, window) <= 10.0
    assert sum(cost for _, cost in granted) == 24.0


def test_a_request_in_two_groups_takes_both_or_waits_in_neither(store: LimitStore) -> None:
    limiter = Limiter({"a": Rule(max_concurrent=2), "b": Rule(max_concurrent=3)}, store,
                      poll_seconds=0.01)
    with ExitStack() as held:
        for _ in range(2):
            held.enter_context(limiter.acquire(["a", "b"]))
        assert refused(limiter, ["a", "b"], max_wait_seconds=0.1).group == "a"
        # The request that waited for "a" took nothing in "b": its third slot is still free.
        held.enter_context(limiter.acquire(["b"], max_wait_seconds=0.1))
        assert refused(limiter, "b", max_wait_seconds=0.1).group == "b"
    with limiter.acquire(["a", "b"], max_wait_seconds=0.1):
        pass

    a, b = Gauge(), Gauge()

    def work(index: int) -> None:
        for _ in range(5):
            both = index % 2 == 0
            with limiter.acquire(["a", "b"] if both else ["b"]):
                a.add(1 if both else 0)
                b.add(1)
                time.sleep(0.01)
                b.add(-1)
                a.add(-1 if both else 0)

    run_threads(8, work)
    assert a.peak <= 2
    assert b.peak <= 3


def test_the_wait_is_bounded_and_its_error_names_the_group_and_rule() -> None:
    limiter = Limiter({"cohorts": Rule(max_concurrent=1)}, poll_seconds=0.02)
    with limiter.acquire(["cohorts"]):
        started = time.monotonic()
        timeout = refused(limiter, ["cohorts"], max_wait_seconds=0.3)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert timeout.group == "cohorts"
    assert 0.25 <= timeout.waited_seconds < 2.0
    message = str(timeout)
    assert "'cohorts'" in message
    assert "at most 1 requests at once" in message
    assert "max_wait_seconds=0.3" in message


def test_amplitude_windows_wait_or_fail_at_once_when_room_comes_too_late() -> None:
    clock = FakeClock()
    limiter = Limiter(amplitude_rules(window_margin_seconds=0), clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(60):
        with limiter.acquire(groups_for("cohorts")):
            pass
    assert clock.now == start  # 60 requests in ten minutes pass without waiting
    late = refused(limiter, groups_for("cohorts"))  # room comes only after the 300 s bound
    assert "'amplitude:cohorts' is full (60 requests per 600 s)" in str(late)
    assert "room only in 600.0 s" in str(late)
    assert clock.now == start  # it did not sit out a wait that cannot succeed
    with limiter.acquire(groups_for("cohorts"), max_wait_seconds=700) as grant:
        assert 600 <= grant.waited_seconds < 601

    with limiter.acquire(groups_for("dashboard"), 600.0):
        pass
    with limiter.acquire(groups_for("dashboard"), 500.0, max_wait_seconds=400) as grant:
        assert 300 <= grant.waited_seconds < 301  # 1,000 per 5 minutes
    with pytest.raises(ValueError, match="never fits group 'amplitude:taxonomy'"), limiter.acquire(
            groups_for("taxonomy"), 5.0):  # at most 4 concurrent cost
        pass


def test_penalize_pauses_every_user_of_the_group(tmp_path: Path) -> None:
    path = tmp_path / "limits.sqlite"
    rules = amplitude_rules()
    first = Limiter(rules, SqliteLimitStore(path), poll_seconds=0.02)
    second = Limiter(rules, SqliteLimitStore(path), poll_seconds=0.02)  # another run, same file

    first.penalize(groups_for("cohorts"), 0.5)
    started = time.monotonic()
    with second.acquire(groups_for("dashboard")):  # shares the concurrency group
        assert time.monotonic() - started >= 0.45
    with second.acquire(groups_for("taxonomy"), max_wait_seconds=0.1):  # another group: free
        pass

    taxonomy = f"amplitude:{TAXONOMY}"
    first.penalize([taxonomy], 600)  # longer than the 300 s bound: fails at once
    assert "'amplitude:taxonomy' is full (paused after a 429)" in str(refused(second, [taxonomy]))

    # The gate the HTTP layer uses does it itself when a 429 leaves the request.
    gate = AmplitudeGate(first)
    with pytest.raises(TransientError), gate("dashboard", 1.0):
        raise TransientError("rate limited (429)", status=429, retry_after=0.4)
    started = time.monotonic()
    with AmplitudeGate(second)("dashboard", 1.0):
        assert time.monotonic() - started >= 0.35
    with gate("export", 1.0) as grant:  # no published limit: nothing to wait for
        assert grant.groups == ()


WORKER = r"""
import json, sys, threading, time
from pipeline.limits import Budget, Limiter, Rule, SqliteLimitStore

path, out, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
rules = {"g": Rule(max_concurrent=2), "w": Rule(budgets=(Budget(1.0, max_requests=5),))}
limiter = Limiter(rules, SqliteLimitStore(path), poll_seconds=0.01, max_wait_seconds=20)
held, granted, lock = [], [], threading.Lock()

def work():
    for _ in range(4):
        with limiter.acquire(["g"]):
            began = time.time()
            time.sleep(0.04)
            with lock:
                held.append((began, time.time()))

while time.time() < start_at:
    time.sleep(0.005)
threads = [threading.Thread(target=work) for _ in range(3)]
for thread in threads:
    thread.start()
for _ in range(4):
    with limiter.acquire(["w"]) as grant:
        granted.append(grant.granted_at)
for thread in threads:
    thread.join()
with open(out, "w") as file:
    json.dump({"held": held, "granted": granted}, file)
"""


def test_two_processes_sharing_a_sqlite_store_never_exceed_the_limits(tmp_path: Path) -> None:
    path = tmp_path / "limits.sqlite"
    start_at = time.time() + 1.5  # both past their imports, so they really compete
    outs = [tmp_path / f"worker{i}.json" for i in range(2)]
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(out), str(start_at)],
                                cwd=ROOT) for out in outs]
    for worker in workers:
        assert worker.wait(timeout=60) == 0
    results = [json.loads(out.read_text()) for out in outs]
    held = [tuple(interval) for result in results for interval in result["held"]]
    granted = [t for result in results for t in result["granted"]]
    assert len(held) == 24
    assert most_at_once(held) == 2  # two processes of three threads each, one cap of 2
    assert len(granted) == 8
    assert most_in_window([(t, 1) for t in granted], 1.0) <= 5  # five per second between them
    assert max(granted) - min(granted) >= 1.0  # so the eight had to wait for the window


HOLDER = r"""
import sys, time
from pathlib import Path
from pipeline.limits import Limiter, Rule, SqliteLimitStore

limiter = Limiter({"g": Rule(max_concurrent=1)}, SqliteLimitStore(sys.argv[1]), lease_seconds=1.0)
with limiter.acquire(["g"]):
    Path(sys.argv[2]).write_text("held")
    time.sleep(60)
"""


def test_a_killed_holders_slot_is_free_again_within_the_lease(tmp_path: Path) -> None:
    path, marker = tmp_path / "limits.sqlite", tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(marker)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(1.2)  # past its first lease: only renewals keep it
        limiter = Limiter({"g": Rule(max_concurrent=1)}, SqliteLimitStore(path),
                          poll_seconds=0.02)
        refused(limiter, ["g"], max_wait_seconds=0.1)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    killed = time.monotonic()
    with limiter.acquire(["g"], max_wait_seconds=5):
        assert time.monotonic() - killed < 1.0 + 0.5


def test_a_live_holder_keeps_its_slot_past_its_lease() -> None:
    limiter = Limiter({"g": Rule(max_concurrent=1)}, lease_seconds=0.3, poll_seconds=0.02)
    with limiter.acquire(["g"]):  # renewed every 0.1 s
        refused(limiter, ["g"], max_wait_seconds=1.0)
    with limiter.acquire(["g"], max_wait_seconds=0.1):
        pass


def test_old_grants_and_expired_leases_are_swept(tmp_path: Path) -> None:
    path = tmp_path / "limits.sqlite"
    clock = FakeClock()
    rules = {"w": Rule(max_concurrent=5, budgets=(Budget(1.0, max_requests=10),))}
    limiter = Limiter(rules, SqliteLimitStore(path), clock=clock, sleep=clock.sleep,
                      lease_seconds=30)
    for _ in range(10):
        with limiter.acquire(["w"]):
            pass
    store = SqliteLimitStore(path)  # a lease left behind, as by a killed process
    assert store.try_acquire("orphan", rules, 1.0, clock.now, 30) is not None  # window full
    clock.now += 2
    assert store.try_acquire("orphan", rules, 1.0, clock.now, 30) is None
    clock.now += 31
    with limiter.acquire(["w"]):
        pass

    def count(table: str) -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    assert count("limit_grants") == 1  # the eleven before left the window
    assert count("limit_leases") == 0  # the orphan expired, the last one was released


def test_requests_that_can_never_pass_fail_at_once() -> None:
    limiter = Limiter({"tax": Rule(max_concurrent_cost=4.0)})
    with pytest.raises(ValueError, match="never fits group 'tax'"), limiter.acquire(["tax"], 5):
        pass
    with pytest.raises(ValueError, match="no limit rule for group 'taxes'"), limiter.acquire(
            ["taxes"]):
        pass
    with limiter.acquire("tax", 4.0) as grant:  # a lone name is one group, not its letters
        assert grant.groups == ("tax",)


def test_amplitude_rules_are_the_published_ones_and_every_endpoint_has_groups() -> None:
    rules = amplitude_rules(window_margin_seconds=0)
    own = {group: f"amplitude:{group}" for group in (COHORTS, DASHBOARD, DASHBOARD_AND_COHORTS,
                                                     TAXONOMY)}  # the project's namespace
    assert rules[own[COHORTS]] == Rule(max_concurrent=4, budgets=(Budget(600, max_requests=60),))
    assert rules[own[DASHBOARD_AND_COHORTS]].max_concurrent == 5
    assert {(b.window_seconds, b.max_cost) for b in rules[own[DASHBOARD]].budgets} == {
        (300, 1_000), (3_600, 108_000)}
    assert rules[own[TAXONOMY]] == Rule(max_concurrent_cost=4,
                                        budgets=(Budget(3_600, max_cost=7_200),))
    assert set(ENDPOINT_GROUPS) == {"export", "cohorts", "dashboard", "taxonomy"}
    assert all(set(groups_for(kind)) <= set(rules) for kind in ENDPOINT_GROUPS)
    assert own[DASHBOARD_AND_COHORTS] in groups_for("cohorts")
    assert own[DASHBOARD_AND_COHORTS] in groups_for("dashboard")
    assert groups_for("export") == ()
    with pytest.raises(ValueError, match="unknown Amplitude endpoint kind 'funnels'"):
        groups_for("funnels")
    small = Rule(max_concurrent=2, budgets=(Budget(2.0, max_requests=3),))
    assert amplitude_rules({COHORTS: small}, window_margin_seconds=0)[own[COHORTS]] == small
    # By default a second longer than published, for the way to the server.
    assert amplitude_rules()[own[COHORTS]].budgets == (Budget(601, max_requests=60),)
    assert amplitude_rules({COHORTS: small}, window_margin_seconds=0.5)[own[COHORTS]].budgets == (
        Budget(2.5, max_requests=3),)
    with pytest.raises(ValueError, match="no Amplitude limit group"):
        amplitude_rules({"cohort": small})
    # Amplitude's limits are per project: two projects never share a group.
    web = amplitude_rules(project="amplitude_web")
    assert set(web).isdisjoint(rules) and set(groups_for("cohorts", "amplitude_web")) <= set(web)
    assert segmentation_cost(1) == 1
    assert segmentation_cost(2, group_bys=1) == 10
    assert segmentation_cost(1, days=35) == 35



def test_many_processes_may_open_a_fresh_store_at_once(tmp_path):
    """Runs starting together all create the file. Two connections switching a new file to WAL
    at once can get SQLITE_BUSY without the busy timeout (SQLite's deadlock avoidance), which
    once failed a run here; the store retries it. A race: eight processes, three times."""
    script = ("import sys, time; from pipeline.limits import SqliteLimitStore\n"
              "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
              "SqliteLimitStore(sys.argv[1])\n")
    for attempt in range(3):
        path, start = tmp_path / f"fresh-{attempt}.sqlite", time.time() + 1.5
        processes = [subprocess.Popen([sys.executable, "-c", script, str(path), str(start)],
                                      cwd=ROOT, stderr=subprocess.PIPE, text=True)
                     for _ in range(8)]
        errors = [p.communicate(timeout=60)[1] for p in processes]
        assert [p.returncode for p in processes] == [0] * 8, errors
