"""The limiter's shared state in PostgreSQL: two stores (two machines) share one set of slots."""

from __future__ import annotations

import pytest

from pipeline.limits import Budget, LimitStoreError, Rule
from pipeline.limits_postgres import PostgresLimitStore, redacted

RULES = {"export": Rule(max_concurrent=1), "hourly": Rule(budgets=(Budget(3600, max_requests=2),))}


def test_two_machines_share_one_concurrency_slot_and_one_budget(postgres_dsn):
    first, second = PostgresLimitStore(postgres_dsn.dsn), PostgresLimitStore(postgres_dsn.dsn)
    assert first.try_acquire("a", RULES, 1.0, now=100.0, lease_seconds=60) is None
    blocked = second.try_acquire("b", RULES, 1.0, now=100.5, lease_seconds=60)
    assert blocked is not None and blocked.group == "export"
    first.release("a")
    assert second.try_acquire("b", RULES, 1.0, now=101.0, lease_seconds=60) is None
    second.release("b")
    # two requests an hour, counted across both: the third waits about an hour
    blocked = first.try_acquire("c", RULES, 1.0, now=102.0, lease_seconds=60)
    assert blocked is not None and blocked.group == "hourly"
    assert 3590 < blocked.retry_in <= 3600


def test_epoch_seconds_keep_their_fractions(postgres_dsn):
    store = PostgresLimitStore(postgres_dsn.dsn)
    store.penalize(["export"], until=1_800_000_000.25)
    blocked = store.try_acquire("a", RULES, 1.0, now=1_800_000_000.0, lease_seconds=60)
    assert blocked is not None and blocked.retry_in == pytest.approx(0.25, abs=1e-6)


def test_a_wrong_password_names_the_variable_not_the_password(postgres_dsn):
    dsn = postgres_dsn.dsn.replace(postgres_dsn.server.password, "wrong-77d1-password")
    with pytest.raises(LimitStoreError) as refused:
        PostgresLimitStore(dsn)
    assert "LIMITS_DSN" in str(refused.value)
    assert "wrong-77d1-password" not in str(refused.value)
    assert postgres_dsn.server.password not in repr(PostgresLimitStore(postgres_dsn.dsn))
    assert redacted("host=h password='a b' user=u") == "host=h password=*** user=u"
