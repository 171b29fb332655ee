"""The fault matrix, the API's answers: refusals fail at once and clearly, empty hours load empty.

A failure must name the hour as partitions are named (``upload hour 2026-03-01T08``) and the
cause, show no credential, and leave the hour's landing, Parquet file, rows and ledger as they
were: nothing on a first fetch, the previous load on a re-fetch.
"""

from __future__ import annotations

import socket

import pytest

from simulator import Fault
from tests.conftest import EMPTY_HOURS
from tests.faults.conftest import (
    BUSY,
    assert_failed_cleanly,
    assert_no_leftovers,
    hour_state,
    run_text,
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on leaving: a connection is refused


@pytest.mark.parametrize("loaded", [False, True], ids=["first-fetch", "refetch"])
def test_connection_refused_fails_after_the_budget(request, loaded):
    fault_project = request.getfixturevalue("loaded_project" if loaded else "fault_project")
    before = hour_state(fault_project, BUSY)
    fault_project.extra_env["AMPLITUDE_BASE_URL"] = f"http://127.0.0.1:{closed_port()}"
    result = fault_project.materialize(BUSY, raise_on_error=False, refetch=True)
    assert_failed_cleanly(fault_project, result, BUSY, before,
                          r"failed after 3 attempts", r"connection failed \(ConnectError")


@pytest.mark.parametrize("code", [401, 403])
def test_a_refused_credential_fails_at_once_naming_the_variables(loaded_project, code):
    fault_project = loaded_project
    before = hour_state(fault_project, BUSY)
    fault_project.sim.inject_always(Fault.status(code, body='{"error": "Invalid API Key"}'))
    result = fault_project.materialize(BUSY, raise_on_error=False, refetch=True)
    assert_failed_cleanly(fault_project, result, BUSY, before, rf"refused \({code}\)",
                          "AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY", "region")
    assert [r.status for r in fault_project.sim.export_requests()] == [code]  # no retry


def test_a_wrong_secret_is_a_403_that_fails_at_once(fault_project, monkeypatch):
    before = hour_state(fault_project, BUSY)
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", "a-wrong-secret-6d1f")  # what EnvVar reads
    result = fault_project.materialize(BUSY, raise_on_error=False)
    text = assert_failed_cleanly(fault_project, result, BUSY, before, r"refused \(403\)")
    assert "a-wrong-secret-6d1f" not in text + run_text(fault_project, result)
    assert len(fault_project.sim.export_requests()) == 1


def test_a_single_hour_over_the_cap_fails_pointing_to_the_s3_export(capped_project):
    before = hour_state(capped_project, BUSY)
    result = capped_project.materialize(BUSY, raise_on_error=False)
    assert_failed_cleanly(capped_project, result, BUSY, before, "alone is too large",
                          "4 GB export cap", "Amazon S3 export")
    assert [r.status for r in capped_project.sim.export_requests()] == [400]


def test_an_html_page_every_time_fails_quoting_the_page(fault_project):
    before = hour_state(fault_project, BUSY)
    fault_project.sim.inject_always(Fault.html())
    result = fault_project.materialize(BUSY, raise_on_error=False)
    assert_failed_cleanly(fault_project, result, BUSY, before, "failed after 3 attempts",
                          r"\(text/html; charset=utf-8\) is not a zip archive",
                          "<title>Temporarily unavailable</title>")
    assert len(fault_project.sim.export_requests()) == 3


def test_an_html_page_that_echoes_the_credentials_is_quoted_without_them(fault_project):
    key, secret = fault_project.sim.config.api_key, fault_project.sim.config.secret_key
    fault_project.sim.inject_always(Fault.html(f"<html>Bad request from {key}:{secret}</html>"))
    before = hour_state(fault_project, BUSY)
    result = fault_project.materialize(BUSY, raise_on_error=False)
    assert_failed_cleanly(fault_project, result, BUSY, before,
                          r"<html>Bad request from \*\*\*:\*\*\*</html>")


@pytest.mark.parametrize("fault", [Fault.status(404), Fault.empty_archive()],
                         ids=["404", "empty-archive"])
def test_an_empty_answer_on_a_first_fetch_loads_an_empty_hour(fault_project, fault):
    fault_project.sim.inject(fault)
    result = fault_project.materialize(BUSY)
    assert result.success
    state = hour_state(fault_project, BUSY)
    assert state.rows == () and state.ledger[0][1] == 0  # the ledger's rows
    assert len(state.versions) == 1 and state.parquet is not None
    assert fault_project.lake.landed(BUSY).members == []
    assert_no_leftovers(fault_project)


def test_an_empty_archive_for_an_hour_without_events_loads_it_empty(fault_project):
    empty = EMPTY_HOURS[0]
    fault_project.sim.inject(Fault.empty_archive())
    assert fault_project.materialize(empty).success
    assert hour_state(fault_project, empty).ledger[0][1] == 0
