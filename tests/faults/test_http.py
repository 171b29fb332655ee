"""The fault matrix, the way there: every transient fault ends in exactly the simulator's rows.

Each case materializes an hour (or a small range) through Dagster with the fault injected into
the simulator and compares DuckDB and the Parquet lake with what the simulator holds, field by
field. The client's timeouts and backoff are shrunk (``FAST``), so a hung server costs a second.
"""

from __future__ import annotations

import email.utils
import itertools
import time

import pytest

from simulator import Fault
from tests.faults.conftest import BUSY, H, assert_exact


def gaps(project) -> list[float]:
    """Seconds between one export request's answer and the next request."""
    requests = project.sim.export_requests()
    return [b.time - a.end for a, b in itertools.pairwise(requests)]


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_a_server_error_is_retried_to_exact_rows(fault_project, code):
    fault_project.sim.inject(Fault.status(code))
    assert fault_project.materialize(BUSY).success
    assert [r.status for r in fault_project.sim.export_requests()] == [code, 200]
    assert_exact(fault_project, BUSY)


def test_429_waits_the_seconds_retry_after_gives(fault_project, caplog):
    fault_project.sim.inject(Fault.status(429, retry_after=1))
    assert fault_project.materialize(BUSY).success
    assert [r.status for r in fault_project.sim.export_requests()] == [429, 200]
    assert "retrying in 1.0 s" in caplog.text
    assert gaps(fault_project)[0] >= 0.95
    assert_exact(fault_project, BUSY)


def test_429_waits_until_the_http_date_retry_after_gives(fault_project):
    wall, mono = time.time(), time.monotonic()
    date = email.utils.formatdate(wall + 3, usegmt=True)  # whole seconds: 2-3 s from now
    fault_project.sim.inject(Fault.status(429, retry_after=date))
    assert fault_project.materialize(BUSY).success
    first, second = fault_project.sim.export_requests()
    due = mono + email.utils.parsedate_to_datetime(date).timestamp() - wall
    assert second.time >= due - 0.05  # not before the date
    assert second.time - first.end < 5
    assert_exact(fault_project, BUSY)


@pytest.mark.parametrize("garbage", ["soon", "nan"])  # more in tests/unit/test_retry.py
def test_429_with_a_garbage_retry_after_falls_back_to_the_backoff(fault_project, garbage,
                                                                  caplog):
    fault_project.sim.inject(Fault.status(429, retry_after=garbage))
    assert fault_project.materialize(BUSY).success
    assert [r.status for r in fault_project.sim.export_requests()] == [429, 200]
    assert "rate limited (429)" in caplog.text
    assert "retrying in 0.0 s" in caplog.text  # the backoff's 0.01 s, not a wait made up
    assert_exact(fault_project, BUSY)


@pytest.mark.parametrize("fault", [
    Fault.stall(0.5, seconds=60), Fault.reset(0.5), Fault.truncate(0.5), Fault.drop(),
], ids=["read-timeout-mid-body", "reset-mid-body", "shorter-than-content-length",
        "closed-without-answer"])
def test_a_broken_body_is_fetched_again_to_exact_rows(fault_project, fault):
    fault_project.sim.inject(fault)
    assert fault_project.materialize(BUSY).success
    requests = fault_project.sim.export_requests()
    assert [r.fault for r in requests] == [fault.kind, None]
    assert_exact(fault_project, BUSY)


def test_a_server_that_never_answers_is_given_up_on_within_the_budget(fault_project):
    fault_project.sim.inject(Fault.hang(), Fault.hang())
    started = time.monotonic()
    assert fault_project.materialize(BUSY).success
    assert [r.fault for r in fault_project.sim.export_requests()] == ["hang", "hang", None]
    assert time.monotonic() - started < 30  # two read timeouts of 1 s, not two hangs
    assert_exact(fault_project, BUSY)


def test_an_html_page_under_200_is_retried_as_transient(fault_project):
    fault_project.sim.inject(Fault.html())
    assert fault_project.materialize(BUSY).success
    assert [r.fault for r in fault_project.sim.export_requests()] == ["html", None]
    assert_exact(fault_project, BUSY)


def test_a_gzip_content_encoding_on_the_zip_is_decoded(fault_project):
    fault_project.sim.inject_always(Fault.gzip_encoded())
    assert fault_project.materialize(BUSY).success
    assert [r.fault for r in fault_project.sim.export_requests()] == ["gzip_encoded"]
    assert_exact(fault_project, BUSY)


def test_a_gzip_encoded_body_cut_short_is_fetched_again(fault_project):
    fault_project.sim.inject_always(Fault.gzip_encoded())
    fault_project.sim.inject(Fault.truncate(0.5))
    assert fault_project.materialize(BUSY).success
    assert len(fault_project.sim.export_requests()) == 2
    assert_exact(fault_project, BUSY)


def test_every_transient_fault_in_one_range_still_gives_exact_rows(fault_project):
    hours = [BUSY, BUSY + H, BUSY + 2 * H]
    fault_project.sim.inject(Fault.status(503), Fault.reset(0.3))
    assert fault_project.materialize(hours[0], hours[-1]).success
    assert [r.fault for r in fault_project.sim.export_requests()] == ["status", "reset", None]
    assert_exact(fault_project, *hours)


@pytest.mark.slow
def test_every_transient_fault_one_after_another_in_one_range(fault_project):
    """The whole list in one run: the budget (6 attempts here) covers them all."""
    fault_project.amplitude_config["max_attempts"] = 12
    hours = [BUSY, BUSY + H, BUSY + 2 * H]
    faults = [Fault.status(429, retry_after=0), Fault.status(500), Fault.status(502),
              Fault.status(503), Fault.stall(0.4, seconds=60), Fault.reset(0.6),
              Fault.truncate(0.2), Fault.hang(), Fault.html(), Fault.corrupt()]
    fault_project.sim.inject(*faults)
    assert fault_project.materialize(hours[0], hours[-1]).success
    assert len(fault_project.sim.export_requests()) == len(faults) + 1
    assert_exact(fault_project, *hours)
