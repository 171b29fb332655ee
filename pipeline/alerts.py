"""Operators' alerts: Slack-compatible messages about failed runs and failed checks, and a poster.

Plain Python, no Dagster: ``assets/alerts.py`` reads the Dagster instance into the records below,
this module turns them into one message (``{"text": ..., "blocks": [...]}``, which Slack's
incoming webhooks take, and Mattermost, Rocket.Chat and others read the ``text`` of) and posts it.

The webhook URL is a secret (a Slack webhook URL carries its token in the path), so it is kept out
of every log line, exception, ``repr`` and message: the poster sends through an httpx transport
rather than an ``httpx.Client``, which would log each request's full URL at INFO, and every cause
it reports is redacted. A post never raises: it returns a :class:`Delivery`, after at most
``attempts`` tries within a short time budget, so a dead webhook cannot stall the sensor loop.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import httpx
import tenacity

from pipeline.retry import RetryPolicy, retry_after_seconds, within_budget
from pipeline.settings import SharedSettings

__all__ = ["WEBHOOK_VARIABLE", "CheckFailure", "Delivery", "RunInfo", "StepFailure", "Webhook",
           "WebhookConfigError", "excerpt", "failed_checks_message", "metadata_summary",
           "notice_message", "partitions_label",
           "run_failure_message", "run_url", "webhook_from_env"]

log = logging.getLogger(__name__)

WEBHOOK_VARIABLE = "ALERT_WEBHOOK_URL"
REDACTED = f"<{WEBHOOK_VARIABLE}>"
USER_AGENT = "amplitude-warehouse-alerts/0.1"

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

CAUSE_LINES = 8  # a cause is quoted up to this many lines ...
CAUSE_CHARS = 800  # ... and this many characters
SUMMARY_CHARS = 300  # a check's metadata summary
MAX_STEPS = 5  # failed steps quoted one by one; the rest are counted
MAX_CHECK_LINES = 20  # failed check evaluations listed one by one; the rest are counted
FAILURE_CHECKS_CHARS = 1200  # a failed run's checks, after its causes
SECTION_CHARS = 3000  # Slack's limit for a section block's text
HEADER_CHARS = 150  # Slack's limit for a header block's text
TEXT_CHARS = 3900  # Slack shows up to 4,000 characters of a message's text
BODY_CHARS = 200  # how much of a refusing webhook's answer a cause quotes
_MIN_SECRET = 6  # shorter pieces of the URL are not secrets, and would mangle causes


# ---- what happened, as plain records ----

@dataclass(frozen=True)
class RunInfo:
    job: str
    run_id: str
    partitions: str | None = None  # partitions_label(tags)
    url: str | None = None  # run_url(...), when DAGSTER_UI_URL is set


@dataclass(frozen=True)
class StepFailure:
    step: str
    assets: tuple[str, ...]  # the step's asset keys, "amplitude/raw_export"
    cause: str  # the error's message, whole: excerpted when rendered


@dataclass(frozen=True)
class CheckFailure:
    asset: str
    check: str
    severity: str  # "WARN" or "ERROR"
    partition: str | None = None  # None: the check covers the run (or a range summary)
    summary: str = ""  # its metadata, "key: value, ..." (metadata_summary)
    description: str | None = None


def partitions_label(tags: Mapping[str, str]) -> str | None:
    """A run's partitions as Dagster's CLI spells them: one key, or ``first...last``."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}...{end}"
    return None


def run_url(base: str | None, run_id: str) -> str | None:
    """The run's page in the Dagster UI, when its address is configured (``DAGSTER_UI_URL``)."""
    if not base or not base.strip():
        return None
    parts = urlsplit(base.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{base.strip().rstrip('/')}/runs/{run_id}"


def excerpt(text: str, lines: int = CAUSE_LINES, chars: int = CAUSE_CHARS) -> str:
    """The first ``lines`` non-blank lines of ``text``, at most ``chars`` characters."""
    kept = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    cut = len(kept) > lines
    out = "\n".join(kept[:lines])
    if len(out) > chars:
        out, cut = out[:chars].rstrip(), True
    return out + (" …" if cut else "")


def metadata_summary(metadata: Mapping[str, object], chars: int = SUMMARY_CHARS) -> str:
    """``key: value`` pairs of a check's metadata, values as compact JSON, bounded."""
    parts = []
    for key, value in metadata.items():
        if isinstance(value, str):
            shown = value
        else:
            try:
                shown = json.dumps(value, default=str, separators=(",", ":"))
            except (TypeError, ValueError):
                shown = str(value)
        parts.append(f"{key}: {shown}")
    return _cut(", ".join(parts), chars)


# ---- the messages ----

Message = dict[str, Any]


def run_failure_message(run: RunInfo, failures: Sequence[StepFailure], *,
                        run_cause: str | None = None,
                        checks: Sequence[CheckFailure] = ()) -> Message:
    """One message for a failed run: its assets and partitions, each failed step's cause (or the
    run's own, when no step failed: a run that never started, or was reaped), its failed checks."""
    assets = _unique(a for f in failures for a in f.assets) or _unique(f.step for f in failures)
    what = ", ".join(assets) if assets else f"job {run.job}"
    title = f"Run failed: {what}" + (f" ({_partitions(run.partitions)})" if run.partitions
                                     else "")
    sections = [_run_line(run)]
    for failure in failures[:MAX_STEPS]:
        named = ", ".join(f"`{_esc(a)}`" for a in failure.assets) or "no asset"
        sections.append(f"*Step `{_esc(failure.step)}` failed* ({named}):\n"
                        f"{_code(excerpt(failure.cause))}")
    if len(failures) > MAX_STEPS:
        sections.append(f"… and {len(failures) - MAX_STEPS} more failed step(s).")
    if not failures:
        sections.append("*Cause:*\n" + _code(excerpt(run_cause or "no cause recorded")))
    if checks:
        sections.append(_checks_section(checks, FAILURE_CHECKS_CHARS))
    return _message(title, sections)


def failed_checks_message(run: RunInfo, checks: Sequence[CheckFailure]) -> Message:
    """One message listing every failed check evaluation of a finished run; its title names the
    checks, and says "failed" when any is an ERROR, "warnings" when all are WARN."""
    kind = "Checks failed" if any(c.severity == "ERROR" for c in checks) else "Check warnings"
    assets = ", ".join(_unique(c.asset for c in checks))
    names = ", ".join(_unique(c.check for c in sorted(checks, key=lambda c: c.check)))
    where = f" ({_partitions(run.partitions)})" if run.partitions else ""
    title = f"{kind} on {assets}: {names}"
    if len(title) + len(where) > HEADER_CHARS:
        title = _cut(title, HEADER_CHARS - len(where))
    return _message(title + where, [_run_line(run), _checks_section(checks)])


def notice_message(run: RunInfo, title: str, text: str) -> Message:
    """A short message about a run, for when its details cannot be read."""
    return _message(title, [_run_line(run), _esc(excerpt(text))])


def _run_line(run: RunInfo) -> str:
    line = f"Job `{_esc(run.job)}`, run `{_esc(run.run_id)}`"
    if run.partitions:
        line += f", {_partitions(_esc(run.partitions))}"
    if run.url:
        line += f": <{run.url}|open the run in Dagster>"
    return line


def _partitions(label: str) -> str:
    return f"partitions {label}" if "..." in label else f"partition {label}"


def _checks_section(checks: Sequence[CheckFailure], chars: int = SECTION_CHARS) -> str:
    """Errors first, each evaluation on a line, as many as fit in ``chars``; the rest counted."""
    ordered = sorted(checks, key=lambda c: (c.severity != "ERROR", c.asset, c.check,
                                            c.partition is not None, c.partition or ""))
    lines = [f"*Failed check evaluations* ({len(checks)}):"]
    used = len(lines[0])
    for shown, c in enumerate(ordered):
        where = f" [{_esc(c.partition)}]" if c.partition else " [whole run]"
        line = f"• {c.severity} `{_esc(c.asset)}` *{_esc(c.check)}*{where}"
        detail = c.summary or (c.description or "")
        if detail:
            line += f": {_esc(_cut(detail, SUMMARY_CHARS))}"
        if shown >= MAX_CHECK_LINES or used + len(line) + 1 > chars - 60:
            lines.append(f"… and {len(ordered) - shown} more failed evaluation(s).")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


def _message(title: str, sections: Sequence[str]) -> Message:
    title = _cut(title, HEADER_CHARS)
    text = _cut("\n".join([f"*{_esc(title)}*", *sections]), TEXT_CHARS)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": _cut(s, SECTION_CHARS)}}
               for s in sections]
    return {"text": text, "blocks": blocks}


def _code(text: str) -> str:
    return "```" + _esc(text).replace("```", "'''") + "```"


def _esc(text: str) -> str:
    """Slack's mrkdwn reads ``&``, ``<`` and ``>`` as markup: a cause's ``<Request>`` must not."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars - 1].rstrip() + "…"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---- the poster ----

class WebhookConfigError(ValueError):
    """ALERT_WEBHOOK_URL is set to something that is not an http(s) URL (the value not shown)."""


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    status: int | None = None  # the last answer's status, if any
    cause: str | None = None  # why it was not delivered, redacted


def webhook_from_env(env: Mapping[str, str], **options: Any) -> Webhook | None:
    """The webhook ``ALERT_WEBHOOK_URL`` names, or None when it is unset or blank."""
    url = SharedSettings.from_env(env).alert_webhook_url
    return Webhook(url.get_secret_value().strip(), **options) if url is not None else None


@dataclass(frozen=True)
class _Attempt:
    status: int | None
    cause: str | None
    retry: bool
    retry_after: float | None = None


@dataclass(repr=False)
class Webhook:
    """Posts a message to one webhook URL: bounded timeouts, a few attempts, never raises."""

    _url: str = field(repr=False)
    connect_seconds: float = 3.0
    read_seconds: float = 5.0
    attempts: int = 3
    budget_seconds: float = 10.0  # all attempts and waits together: 5 runs a tick fit in 60 s
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(
        base_delay_seconds=0.5, max_delay_seconds=2.0))
    logger: logging.Logger | None = field(default=None, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    seed: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        try:
            parts = urlsplit(self._url)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:  # "Invalid IPv6 URL" and the like; their text is not shown either
            usable = False
        if not usable:
            raise WebhookConfigError(
                f"{WEBHOOK_VARIABLE} is not an http(s) URL (its value is not shown: it is a "
                "secret)")
        pieces = {self._url, self._url.rstrip("/"), parts.path, parts.query,
                  parts.path + ("?" + parts.query if parts.query else ""),
                  parts.password or "", parts.username or ""}
        pieces |= set(re.split(r"[/?&=]", f"{parts.path}?{parts.query}"))
        self._secrets = tuple(sorted((p for p in pieces if len(p) >= _MIN_SECRET),
                                     key=len, reverse=True))
        self._rng = random.Random(self.seed)

    def __repr__(self) -> str:
        return f"Webhook({REDACTED})"

    __str__ = __repr__

    def redact(self, text: str) -> str:
        """``text`` with the URL, and every longer piece of its path and query, replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def post(self, message: Message) -> Delivery:
        out = self.logger or log
        started = self.clock()
        try:
            body = json.dumps(message).encode()
        except (TypeError, ValueError) as error:
            cause = f"the message is not JSON: {error}"
            out.error("alert not posted: %s", cause)
            return Delivery(False, 0, cause=cause)

        def attempt() -> _Attempt:
            remaining = self.budget_seconds - (self.clock() - started)
            if remaining <= 0:
                return _Attempt(None, "the time budget was spent", retry=False)
            return self._attempt(body, remaining)

        def wait(state: tenacity.RetryCallState) -> float:
            assert state.outcome is not None
            last: _Attempt = state.outcome.result()
            return (last.retry_after if last.retry_after is not None
                    else self.retry.delay(state.attempt_number, self._rng))

        def warn(state: tenacity.RetryCallState) -> None:
            assert state.outcome is not None
            out.warning("alert post attempt %d failed: %s; retrying in %.1f s",
                        state.attempt_number, state.outcome.result().cause, state.upcoming_sleep)

        policy = replace(self.retry, max_attempts=max(self.attempts, 1),
                         max_elapsed_seconds=self.budget_seconds)
        retrying = within_budget(
            policy, retry=tenacity.retry_if_result(lambda a: a.cause is not None and a.retry),
            wait=wait, clock=self.clock, sleep=self.sleep, before_sleep=warn, started=started)
        last = retrying(attempt)
        tries = retrying.statistics["attempt_number"]
        if last.cause is None:
            out.info("alert posted to %s (HTTP %s, attempt %d)", WEBHOOK_VARIABLE, last.status,
                     tries)
            return Delivery(True, tries, last.status)
        cause = f"{last.cause} (after {tries} attempt(s))"
        out.error("alert not posted to %s: %s", WEBHOOK_VARIABLE, cause)
        return Delivery(False, tries, last.status, cause)

    def _attempt(self, body: bytes, remaining: float) -> _Attempt:
        """One POST. The transport, not ``httpx.Client``: the client logs every URL it calls."""
        read = min(self.read_seconds, remaining)
        timeout = httpx.Timeout(read, connect=min(self.connect_seconds, remaining))
        request = httpx.Request(
            "POST", self._url, content=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
            extensions={"timeout": timeout.as_dict()})
        deadline = self.clock() + remaining
        try:
            with httpx.HTTPTransport(retries=0) as transport:
                response = transport.handle_request(request)
                try:
                    answer = self._read_some(response, deadline)
                finally:
                    response.close()
        except httpx.TimeoutException as error:
            return _Attempt(None, self.redact(f"timed out ({type(error).__name__})"), retry=True)
        except httpx.TransportError as error:
            return _Attempt(None, self.redact(f"{type(error).__name__}: {error}"), retry=True)
        except Exception as error:  # an alert must never take the sensor down with it
            return _Attempt(None, self.redact(f"{type(error).__name__}: {error}"), retry=False)
        status = response.status_code
        if 200 <= status < 300:
            return _Attempt(status, None, retry=False)
        cause = self.redact(f"HTTP {status}" + (f": {answer}" if answer else ""))
        if status == 429 or status >= 500:
            return _Attempt(status, cause, retry=True,
                            retry_after=retry_after_seconds(response))
        return _Attempt(status, cause, retry=False)  # 4xx: a wrong URL or payload stays wrong

    def _read_some(self, response: httpx.Response, deadline: float) -> str:
        """At most BODY_CHARS of the answer, within the deadline (a trickling body is cut)."""
        data = b""
        for chunk in response.iter_raw():
            data += chunk
            if len(data) >= BODY_CHARS or self.clock() > deadline:
                break
        return " ".join(data[:BODY_CHARS].decode("utf-8", "replace").split())
