"""The alert messages, and the poster against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.alerts import (
    CheckFailure,
    RunInfo,
    StepFailure,
    Webhook,
    WebhookConfigError,
    excerpt,
    failed_checks_message,
    metadata_summary,
    partitions_label,
    run_failure_message,
    run_url,
    webhook_from_env,
)
from pipeline.retry import RetryPolicy

TOKEN = "xoxb-5f2c9e-very-secret-token"
PATH = f"/services/T0AL3RT/B0H00K/{TOKEN}"
FAST = RetryPolicy(base_delay_seconds=0.01, max_delay_seconds=0.02)


# ---- a receiver: records every body, answers from a script ----

@dataclass
class Receiver:
    """Answers each POST with the next status of ``script`` (then 200); ``hang`` never answers."""

    script: list[int | str] = field(default_factory=list)
    bodies: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 in a thread (tests/e2e/test_alerts.py uses it too)."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.paths.append(self.path)
            state.headers.append(dict(self.headers))
            state.bodies.append(json.loads(body))
            answer = state.script.pop(0) if state.script else 200
            if answer == "hang":
                state.released.wait(30)
                return
            if answer == "echo":  # a refusal that quotes the URL back
                answer, text = 404, f"no_service for {self.path}"
            else:
                text = "ok" if answer == 200 else "busy"
            payload = text.encode()
            self.send_response(int(answer))
            if answer == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        yield state


def webhook(url: str, **options) -> Webhook:
    return Webhook(url, retry=FAST, **options)


RUN = RunInfo(job="amplitude_hourly", run_id="6bdedbe7-e290-442b-9e9e-7914745ed983",
              partitions="2026-03-01-08:00", url="http://dagster.local:3000/runs/6bdedbe7")
AUTH = StepFailure(step="amplitude__raw_export", assets=("amplitude/raw_export",),
                   cause="AuthError: refused (401) for export of upload hour 2026-03-01T08: "
                   "check AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY\n")


def assert_slack_compatible(message: dict) -> None:
    assert isinstance(message["text"], str) and message["text"]
    assert len(message["text"]) <= 4000
    header, *sections = message["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) <= 150
    for block in sections:
        assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
        assert 0 < len(block["text"]["text"]) <= 3000
    json.dumps(message)


# ---- messages ----

def test_partitions_are_one_key_or_a_range_as_the_cli_spells_it():
    assert partitions_label({"dagster/partition": "2026-03-01-08:00"}) == "2026-03-01-08:00"
    assert partitions_label({"dagster/asset_partition_range_start": "2026-03-01-00:00",
                             "dagster/asset_partition_range_end": "2026-03-01-23:00"}) == (
        "2026-03-01-00:00...2026-03-01-23:00")
    assert partitions_label({"dagster/asset_partition_range_start": "2026-03-01-00:00",
                             "dagster/asset_partition_range_end": "2026-03-01-00:00"}) == (
        "2026-03-01-00:00")
    assert partitions_label({"owner": "me"}) is None


def test_a_run_link_needs_an_http_base():
    assert run_url("http://localhost:3000/", "abc") == "http://localhost:3000/runs/abc"
    assert run_url(None, "abc") is None and run_url("  ", "abc") is None
    assert run_url("localhost:3000", "abc") is None


def test_a_failed_run_names_its_asset_partition_cause_and_link():
    message = run_failure_message(RUN, [AUTH])
    assert_slack_compatible(message)
    text = message["text"]
    assert message["blocks"][0]["text"]["text"] == (
        "Run failed: amplitude/raw_export (partition 2026-03-01-08:00)")
    assert "amplitude_hourly" in text and RUN.run_id in text
    assert "Step `amplitude__raw_export` failed* (`amplitude/raw_export`)" in text
    assert "```AuthError: refused (401) for export of upload hour 2026-03-01T08" in text
    assert "<http://dagster.local:3000/runs/6bdedbe7|open the run in Dagster>" in text


def test_a_range_is_named_as_partitions():
    run = RunInfo(job="j", run_id="r", partitions="2026-03-01-00:00...2026-03-01-23:00")
    message = run_failure_message(run, [AUTH])
    assert "(partitions 2026-03-01-00:00...2026-03-01-23:00)" in message["blocks"][0]["text"][
        "text"]
    assert "open the run" not in message["text"]  # no DAGSTER_UI_URL, no link


def test_a_long_cause_is_cut_to_its_first_lines_and_markup_is_escaped():
    cause = "ValueError: <Request [b'GET']> & friends\n" + "\n".join(
        f"line {i} " + "x" * 50 for i in range(200))
    message = run_failure_message(RUN, [StepFailure("s", ("a/b",), cause)])
    assert_slack_compatible(message)
    quoted = message["blocks"][2]["text"]["text"]
    assert "&lt;Request [b'GET']&gt; &amp; friends" in quoted and "<Request" not in quoted
    assert "line 6 " in quoted and "line 7 " not in quoted and quoted.endswith(" …```")
    assert len(excerpt("y" * 5000)) <= 802


def test_a_run_that_failed_outside_any_step_gives_the_runs_own_cause():
    message = run_failure_message(
        RUN, [], run_cause="Reaped a dead run: process 7538 on host vm is gone")
    assert_slack_compatible(message)
    assert message["blocks"][0]["text"]["text"].startswith("Run failed: job amplitude_hourly")
    assert "Reaped a dead run: process 7538" in message["text"]


def test_many_failed_steps_are_counted_not_quoted():
    failures = [StepFailure(f"step_{i}", (f"a/{i}",), "boom") for i in range(9)]
    message = run_failure_message(RUN, failures)
    assert_slack_compatible(message)
    assert "step_4" in message["text"] and "step_5" not in message["text"]
    assert "… and 4 more failed step(s)." in message["text"]


def test_failed_checks_list_each_hour_and_the_range_summary_with_severity():
    checks = [
        CheckFailure("amplitude/events", "uuid_unique_per_hour", "WARN", "2026-03-01-09:00",
                     metadata_summary({"duplicate_rows": 2})),
        CheckFailure("amplitude/events", "uuid_unique_per_hour", "WARN", None,
                     metadata_summary({"failing_hours": "2026-03-01-09:00", "hours": 2})),
        CheckFailure("amplitude/events", "rows_match_parquet_and_ledger", "ERROR",
                     "2026-03-01-08:00", metadata_summary({"duckdb_rows": 9, "parquet_rows": 10})),
    ]
    run = RunInfo(job="amplitude_hourly", run_id="r1",
                  partitions="2026-03-01-08:00...2026-03-01-09:00")
    message = failed_checks_message(run, checks)
    assert_slack_compatible(message)
    assert message["blocks"][0]["text"]["text"] == (
        "Checks failed on amplitude/events: rows_match_parquet_and_ledger, uuid_unique_per_hour "
        "(partitions 2026-03-01-08:00...2026-03-01-09:00)")
    lines = message["blocks"][2]["text"]["text"].splitlines()
    assert lines == [
        "*Failed check evaluations* (3):",
        "• ERROR `amplitude/events` *rows_match_parquet_and_ledger* [2026-03-01-08:00]: "
        "duckdb_rows: 9, parquet_rows: 10",
        "• WARN `amplitude/events` *uuid_unique_per_hour* [whole run]: "
        "failing_hours: 2026-03-01-09:00, hours: 2",
        "• WARN `amplitude/events` *uuid_unique_per_hour* [2026-03-01-09:00]: duplicate_rows: 2",
    ]


def test_a_week_of_failed_hours_stays_within_slacks_limits():
    checks = [CheckFailure("amplitude/events", "no_schema_drift", "WARN",
                           f"2026-03-{1 + i // 24:02d}-{i % 24:02d}:00",
                           metadata_summary({"new_fields": ", ".join(["f" * 40] * 20)}))
              for i in range(168)]
    message = failed_checks_message(RUN, checks)
    assert_slack_compatible(message)
    assert message["blocks"][0]["text"]["text"] == (
        "Check warnings on amplitude/events: no_schema_drift (partition 2026-03-01-08:00)")
    section = message["blocks"][2]["text"]["text"]
    shown = section.count("\n• ")
    assert 0 < shown <= 20 and f"… and {168 - shown} more failed evaluation(s)." in section
    short = failed_checks_message(RUN, [replace(c, summary="new_fields: x") for c in checks])
    assert "… and 148 more failed evaluation(s)." in short["blocks"][2]["text"]["text"]
    assert len(metadata_summary({"k": list(range(1000))})) <= 300


def test_a_failed_run_carries_its_failed_checks_too():
    check = CheckFailure("amplitude/events", "no_row_drop", "WARN", "2026-03-01-08:00",
                         "rows_dropped: 50")
    message = run_failure_message(RUN, [AUTH], checks=[check])
    assert_slack_compatible(message)
    assert "*no_row_drop* [2026-03-01-08:00]: rows_dropped: 50" in message["text"]


# ---- the poster ----

def test_a_message_is_posted_as_json_to_the_receiver(receiver):
    message = run_failure_message(RUN, [AUTH])
    delivery = webhook(receiver.url).post(message)
    assert delivery.delivered and delivery.attempts == 1 and delivery.status == 200
    assert receiver.bodies == [message] and receiver.paths == [PATH]
    assert receiver.headers[0]["Content-Type"] == "application/json"


def test_a_500_is_retried_and_the_second_attempt_delivers(receiver):
    receiver.script = [500]
    delivery = webhook(receiver.url).post({"text": "hello"})
    assert delivery.delivered and delivery.attempts == 2
    assert receiver.bodies == [{"text": "hello"}] * 2


def test_a_429_waits_as_asked_and_delivers(receiver):
    receiver.script = [429, 503]
    delivery = webhook(receiver.url).post({"text": "hello"})
    assert delivery.delivered and delivery.attempts == 3


def test_a_webhook_that_keeps_failing_is_given_up_after_three_attempts(receiver):
    receiver.script = [502, 503, 500, 500]
    delivery = webhook(receiver.url).post({"text": "hello"})
    assert not delivery.delivered and delivery.attempts == 3 and delivery.status == 500
    assert delivery.cause == "HTTP 500: busy (after 3 attempt(s))"
    assert len(receiver.bodies) == 3


def test_a_refusal_is_not_retried(receiver):
    receiver.script = [400]
    delivery = webhook(receiver.url).post({"text": "hello"})
    assert not delivery.delivered and delivery.attempts == 1 and delivery.status == 400


def test_a_receiver_that_never_answers_is_cut_off_by_the_timeouts(receiver):
    receiver.script = ["hang"] * 5
    hook = webhook(receiver.url, read_seconds=0.3, connect_seconds=0.3, budget_seconds=5)
    started = time.monotonic()
    delivery = hook.post({"text": "hello"})
    elapsed = time.monotonic() - started
    assert not delivery.delivered and delivery.attempts == 3
    assert delivery.cause == "timed out (ReadTimeout) (after 3 attempt(s))"
    assert elapsed < 3  # three read timeouts and two short backoffs


def test_the_time_budget_bounds_all_attempts_together(receiver):
    receiver.script = ["hang"] * 5
    hook = webhook(receiver.url, read_seconds=0.4, budget_seconds=0.6)
    started = time.monotonic()
    delivery = hook.post({"text": "hello"})
    assert not delivery.delivered and delivery.attempts <= 2
    assert time.monotonic() - started < 1.5


def test_nothing_listening_is_a_logged_failure_not_an_exception():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    delivery = webhook(f"http://127.0.0.1:{port}{PATH}").post({"text": "hello"})
    assert not delivery.delivered and delivery.attempts == 3
    assert delivery.cause is not None and delivery.cause.startswith("ConnectError")


def test_the_url_never_shows_in_logs_causes_or_reprs(receiver, caplog):
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    outcomes = []
    for script in ([], [500], ["echo"], ["hang"] * 3):
        receiver.script = list(script)
        hook = webhook(receiver.url, read_seconds=0.3)
        outcomes.append(hook.post(run_failure_message(RUN, [AUTH])))
        outcomes.append(repr(hook))
        outcomes.append(str(hook))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}{PATH}"
    outcomes.append(webhook(closed).post({"text": "x"}))
    assert [o.delivered for o in outcomes if not isinstance(o, str)] == [
        True, True, False, False, False]
    echoed = outcomes[6]
    assert echoed.cause == "HTTP 404: no_service for <ALERT_WEBHOOK_URL> (after 1 attempt(s))"
    with pytest.raises(WebhookConfigError) as raised:
        Webhook(f"ftp://127.0.0.1{PATH}")
    seen = "\n".join([caplog.text, *map(str, outcomes), str(raised.value)])
    assert "alert posted to ALERT_WEBHOOK_URL" in caplog.text
    assert "alert not posted to ALERT_WEBHOOK_URL: timed out" in caplog.text
    for secret in (receiver.url, PATH, TOKEN, "T0AL3RT/B0H00K"):
        assert secret not in seen


def test_the_webhook_comes_from_the_environment():
    assert webhook_from_env({}) is None
    assert webhook_from_env({"ALERT_WEBHOOK_URL": "  "}) is None
    hook = webhook_from_env({"ALERT_WEBHOOK_URL": f"https://hooks.example.com{PATH}"})
    assert isinstance(hook, Webhook) and repr(hook) == "Webhook(<ALERT_WEBHOOK_URL>)"
    with pytest.raises(WebhookConfigError, match="ALERT_WEBHOOK_URL is not an http") as raised:
        webhook_from_env({"ALERT_WEBHOOK_URL": f"hooks.example.com{PATH}"})
    assert TOKEN not in str(raised.value)
    with pytest.raises(WebhookConfigError):
        webhook_from_env({"ALERT_WEBHOOK_URL": f"https://[{TOKEN}{PATH}"})
