"""Client-side limits: requests in flight, and request or cost budgets over sliding windows.

APIs publish limits and answer 429 past them. Dagster pools only cap concurrent steps, so rates and
costs need a limiter that holds across threads *and* concurrent runs: its state lives in a shared
``LimitStore`` (a SQLite file on one machine; PostgreSQL later, with the same few statements).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple, Protocol

import tenacity

log = logging.getLogger(__name__)
EPSILON = 1e-9  # costs are floats: never refuse a request over rounding


class LimitWaitTimeout(TimeoutError):
    """No room within the wait bound. The message names the full group, its rule and the wait."""

    def __init__(self, blocked: Blocked, waited_seconds: float, bound: float) -> None:
        later = f"; room only in {blocked.retry_in:.1f} s" if waited_seconds < bound else ""
        super().__init__(f"limit group {blocked.group!r} is full ({blocked.rule}): waited "
                         f"{waited_seconds:.1f} s of max_wait_seconds={bound:g}{later}")
        self.group, self.rule, self.waited_seconds = blocked.group, blocked.rule, waited_seconds


class LimitStoreError(RuntimeError):
    """The shared state could not be read or written (say, its file stayed locked too long)."""


@dataclass(frozen=True)
class Budget:
    """At most ``max_requests`` requests and/or ``max_cost`` cost in any ``window_seconds``."""

    window_seconds: float
    max_requests: int | None = None
    max_cost: float | None = None

    def __post_init__(self) -> None:
        if self.window_seconds <= 0 or (self.max_requests is None and self.max_cost is None):
            raise ValueError(f"{self}: needs a positive window and max_requests or max_cost")

    def describe(self) -> str:
        parts = [] if self.max_requests is None else [f"{self.max_requests} requests"]
        parts += [] if self.max_cost is None else [f"{self.max_cost:g} cost"]
        return f"{' and '.join(parts)} per {self.window_seconds:g} s"


@dataclass(frozen=True)
class Rule:
    """One group's limits; concurrency in requests or in cost units ("4 concurrent cost")."""

    max_concurrent: int | None = None
    max_concurrent_cost: float | None = None
    budgets: tuple[Budget, ...] = ()

    @property
    def holds_slots(self) -> bool:
        return self.max_concurrent is not None or self.max_concurrent_cost is not None

    def unreachable(self, cost: float) -> str | None:
        """Why a request of ``cost`` could never pass, so it fails at once instead of waiting."""
        caps = [(self.max_concurrent_cost, "at most {:g} cost at once")]
        caps += [(budget.max_cost, budget.describe()) for budget in self.budgets]
        return next((why.format(cap) for cap, why in caps
                     if cap is not None and cost > cap + EPSILON), None)


class Blocked(NamedTuple):
    """Why a request waits, and in how many seconds room can appear (0: unknown, poll)."""

    group: str
    rule: str
    retry_in: float


class Grant(NamedTuple):
    """A request let through, with what is worth logging (``waited_seconds``)."""

    lease_id: str
    groups: tuple[str, ...]
    granted_at: float
    waited_seconds: float


# A group read in a store's transaction: its live leases' requests and cost, the end of its pause
# after a 429, and its grants ``(granted_at, cost)`` oldest first.
GroupState = tuple[int, float, float, Sequence[tuple[float, float]]]


class LimitStore(Protocol):
    """Where limit state lives: four calls, each one transaction (so check-and-record is atomic)."""

    def try_acquire(self, lease_id: str, rules: Mapping[str, Rule], cost: float, now: float,
                    lease_seconds: float) -> Blocked | None: ...
    def renew(self, lease_id: str, expires_at: float) -> None: ...
    def release(self, lease_id: str) -> None: ...
    def penalize(self, groups: Sequence[str], until: float) -> None: ...


def check(rules: Mapping[str, Rule], states: Mapping[str, GroupState], cost: float,
          now: float) -> Blocked | None:
    """None if a request of ``cost`` fits every rule now, else the block that lasts longest."""
    blocks = []
    for group, rule in rules.items():
        requests, held, paused_until, grants = states[group]
        if paused_until > now:
            blocks.append(Blocked(group, "paused after a 429", paused_until - now))
        if rule.max_concurrent is not None and requests >= rule.max_concurrent:
            blocks.append(Blocked(group, f"at most {rule.max_concurrent} requests at once", 0.0))
        if (cap := rule.max_concurrent_cost) is not None and held + cost > cap + EPSILON:
            blocks.append(Blocked(group, f"at most {cap:g} cost at once ({held:g} held)", 0.0))
        for budget in rule.budgets:
            window, most, budgeted = budget.window_seconds, budget.max_requests, budget.max_cost
            recent = [grant for grant in grants if grant[0] > now - window]
            over_requests = 0 if most is None else len(recent) + 1 - most
            over_cost = 0.0 if budgeted is None else sum(c for _, c in recent) + cost - budgeted
            if over_requests > 0 or over_cost > EPSILON:
                freed_requests, freed_cost, room = 0, 0.0, window
                for granted_at, spent in recent:  # the oldest leave the window first
                    freed_requests, freed_cost = freed_requests + 1, freed_cost + spent
                    if freed_requests >= over_requests and freed_cost >= over_cost - EPSILON:
                        room = max(0.0, granted_at + window - now) + 0.001
                        break
                blocks.append(Blocked(group, budget.describe(), room))
    return max(blocks, key=lambda block: block.retry_in, default=None)


SCHEMA = """
CREATE TABLE IF NOT EXISTS limit_leases (lease_id TEXT NOT NULL, grp TEXT NOT NULL,
    cost REAL NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (lease_id, grp));
CREATE TABLE IF NOT EXISTS limit_grants (grp TEXT NOT NULL, granted_at REAL, cost REAL);
CREATE INDEX IF NOT EXISTS limit_grants_by_group ON limit_grants (grp, granted_at);
CREATE TABLE IF NOT EXISTS limit_penalties (grp TEXT NOT NULL, until_at REAL NOT NULL);
"""


class _SqlStore:
    """Plain SQL (PostgreSQL's, with %s for ?); a subclass says how a transaction opens."""

    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def try_acquire(self, lease_id: str, rules: Mapping[str, Rule], cost: float, now: float,
                    lease_seconds: float) -> Blocked | None:
        with self._transaction() as db:
            db.execute("DELETE FROM limit_leases WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM limit_penalties WHERE until_at <= ?", (now,))
            states = {}
            for group, rule in rules.items():
                db.execute("DELETE FROM limit_grants WHERE grp = ? AND granted_at <= ?", (
                    group, now - max((b.window_seconds for b in rule.budgets), default=0.0)))
                requests, held = db.execute("SELECT COUNT(*), COALESCE(SUM(cost), 0)"
                                            " FROM limit_leases WHERE grp = ?", (group,)).fetchone()
                (pause,) = db.execute("SELECT COALESCE(MAX(until_at), 0) FROM limit_penalties"
                                      " WHERE grp = ?", (group,)).fetchone()
                grants = db.execute("SELECT granted_at, cost FROM limit_grants WHERE grp = ?"
                                    " ORDER BY granted_at", (group,)).fetchall()
                states[group] = (requests, held, pause, grants)
            blocked = check(rules, states, cost, now)
            if blocked is None:
                db.executemany("INSERT INTO limit_leases VALUES (?, ?, ?, ?)",
                               [(lease_id, group, cost, now + lease_seconds)
                                for group, rule in rules.items() if rule.holds_slots])
                db.executemany("INSERT INTO limit_grants VALUES (?, ?, ?)", [
                    (group, now, cost) for group, rule in rules.items() if rule.budgets])
            return blocked

    def renew(self, lease_id: str, expires_at: float) -> None:
        with self._transaction() as db:
            db.execute("UPDATE limit_leases SET expires_at = ? WHERE lease_id = ?",
                       (expires_at, lease_id))

    def release(self, lease_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM limit_leases WHERE lease_id = ?", (lease_id,))

    def penalize(self, groups: Sequence[str], until: float) -> None:
        with self._transaction() as db:  # the latest pause wins: it is read with MAX
            db.executemany("INSERT INTO limit_penalties VALUES (?, ?)",
                           [(group, until) for group in groups])


class MemoryLimitStore(_SqlStore):
    """State for the threads of one process: an in-memory database behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.executescript(SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:  # commits, or rolls back on error
            yield self._db


class SqliteLimitStore(_SqlStore):
    """State in a SQLite file shared by the processes of one machine; a connection per call is
    safe across threads and forks. ``BEGIN IMMEDIATE`` takes the write lock before reading, so two
    processes never both see one free slot; the busy timeout bounds that wait."""

    def __init__(self, path: str | Path, *, busy_timeout_seconds: float = 30.0) -> None:
        self.path, self.busy_timeout_seconds = Path(path), busy_timeout_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connect = partial(sqlite3.connect, path, timeout=busy_timeout_seconds,
                                isolation_level=None)
        # Switching a new file to WAL takes a lock the busy timeout does not wait for.
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, sqlite3.OperationalError)
                                              and "locked" in str(e)),
            stop=tenacity.stop_after_delay(busy_timeout_seconds), wait=tenacity.wait_fixed(0.05),
            reraise=True)
        try:
            for attempt in retrying:
                with attempt, closing(self._connect()) as db:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(SCHEMA)
        except sqlite3.OperationalError as error:
            raise LimitStoreError(f"limit store {self.path}: {error}") from error

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(self._connect()) as db, db:  # commits, or rolls back on error
                db.execute("PRAGMA synchronous=NORMAL")  # limit state may be lost to a power cut
                db.execute("BEGIN IMMEDIATE")
                yield db
        except sqlite3.OperationalError as error:
            raise LimitStoreError(f"limit store {self.path}: {error} (busy timeout "
                                  f"{self.busy_timeout_seconds:g} s)") from error


class Limiter:
    """Waits until every group of a request has room, records it, and frees its slots after.
    Waiters poll with jitter (no queue, so no fairness) or sleep until a window makes room.
    ``clock`` must agree across the store's users: wall time, not a per-process monotonic one."""

    def __init__(self, rules: Mapping[str, Rule], store: LimitStore | None = None, *,
                 max_wait_seconds: float = 300.0, poll_seconds: float = 0.1,
                 lease_seconds: float = 60.0, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None) -> None:
        self.rules, self.store = dict(rules), MemoryLimitStore() if store is None else store
        self.max_wait_seconds, self.poll_seconds, self.lease_seconds = (
            max_wait_seconds, poll_seconds, lease_seconds)
        self._clock, self._sleep, self._rng = clock, sleep, random.Random(seed)

    @contextmanager
    def acquire(self, groups: Iterable[str], cost: float = 1.0, *,
                max_wait_seconds: float | None = None) -> Iterator[Grant]:
        """Hold room in all ``groups`` (atomically: all or none) for the body of the ``with``."""
        rules = self._rules_for(groups, cost)
        lease_id = uuid.uuid4().hex
        bound = self.max_wait_seconds if max_wait_seconds is None else max_wait_seconds
        granted_at, waited = self._wait(lease_id, rules, cost, bound)
        stop = threading.Event()  # renewed while held: only a killed holder's lease runs out
        if any(rule.holds_slots for rule in rules.values()):
            threading.Thread(target=self._renew, args=(lease_id, stop), daemon=True).start()
        try:
            yield Grant(lease_id, tuple(rules), granted_at, waited)
        finally:
            stop.set()
            self.store.release(lease_id)

    @contextmanager
    def holding(self, groups: Sequence[str], cost: float = 1.0, *,
                default_penalty_seconds: float) -> Iterator[Grant]:
        """Hold a grant for one request; a 429 it raises pauses ``groups`` for everyone, for
        its Retry-After or ``default_penalty_seconds`` (what the sources' gates share)."""
        with self.acquire(groups, cost) as grant:
            try:
                yield grant
            except Exception as error:
                if getattr(error, "status", None) == 429:  # pipeline.http.TransientError
                    retry_after = getattr(error, "retry_after", None)
                    wait = retry_after if isinstance(retry_after, int | float) else None
                    self.penalize(groups, wait or default_penalty_seconds)
                raise

    def penalize(self, groups: Iterable[str], seconds: float) -> None:
        """Pause every user of ``groups`` (a 429's Retry-After): all threads and runs back off."""
        if seconds > 0:
            self.store.penalize(tuple(self._rules_for(groups, 0.0)), self._clock() + seconds)

    def _rules_for(self, groups: Iterable[str], cost: float) -> dict[str, Rule]:
        rules: dict[str, Rule] = {}
        for group in (groups,) if isinstance(groups, str) else groups:
            if group not in self.rules:
                raise ValueError(f"no limit rule for group {group!r} (known: {sorted(self.rules)})")
            rules[group] = self.rules[group]
            if (why := rules[group].unreachable(cost)) is not None:
                raise ValueError(f"a request of cost {cost:g} never fits group {group!r}: {why}")
        return rules

    def _wait(self, lease_id: str, rules: Mapping[str, Rule], cost: float,
              bound: float) -> tuple[float, float]:
        started = self._clock()
        while True:
            now = self._clock()
            blocked = self.store.try_acquire(lease_id, rules, cost, now, self.lease_seconds)
            waited = now - started
            if blocked is None:
                return now, waited
            left = bound - waited
            if left <= 0 or blocked.retry_in > left:
                raise LimitWaitTimeout(blocked, waited, bound)
            jitter = self._rng.uniform(0.5, 1.5) * self.poll_seconds
            self._sleep(min(left, (blocked.retry_in + jitter / 2) if blocked.retry_in else jitter))

    def _renew(self, lease_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.lease_seconds / 3):
            try:
                self.store.renew(lease_id, self._clock() + self.lease_seconds)
            except Exception as error:  # the request goes on; the next beat retries
                log.warning("could not renew limit lease %s: %s", lease_id, error)
