"""Authenticated HTTP for every endpoint of a source: hosts, timeouts, bounded retries, streaming.

APIs answer large bodies slowly, drop connections and rate-limit, so one layer owns what every
endpoint needs: Basic auth, connect and read timeouts, capped and jittered retries inside a time
budget (that also cuts off a body that keeps trickling), ``Retry-After`` in seconds or as an HTTP
date, bodies streamed to a file and checked before they are trusted, and redirects to another host
followed *without* the credentials (a storage link must never see the API secret). What a status
means for one endpoint (an export's 404 is "no events", a cohort's 404 is an error) is the
endpoint's own business: it passes ``on_status``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

import httpx
import tenacity

from pipeline.retry import (
    HttpError,
    RetriesExhausted,
    RetryPolicy,
    TransientError,
    backoff,
    retry_after_seconds,
    within_budget,
)

__all__ = ["ApiClient", "AuthError", "Credentials", "HttpError", "RequestGate", "RetriesExhausted",
           "RetryPolicy", "Timeouts", "TransientError", "body_excerpt", "excerpt", "not_json",
           "open_gate", "redact", "retry_after_seconds"]

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
USER_AGENT = "amplitude-warehouse/0.1"
EXCERPT_CHARS = 200  # how much of an unexpected body a message quotes
_MIN_SCRUBBED = 4  # a credential shorter than this is no secret, and would mangle messages


class AuthError(HttpError):
    """The credentials were refused (401/403): retrying cannot help."""


@dataclass(frozen=True)
class Timeouts:
    connect_seconds: float = 10.0
    read_seconds: float = 300.0  # bulk endpoints can think for minutes before the first byte

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(self.read_seconds, connect=self.connect_seconds)


class RequestGate(Protocol):
    """Client-side limits: entered around every request (``pipeline.limits``)."""

    def __call__(self, endpoint: str, cost: float) -> AbstractContextManager[object]: ...


def open_gate(endpoint: str, cost: float) -> AbstractContextManager[object]:
    return nullcontext()


# An endpoint's reading of a status: raise its own error, return True to take the response as it
# is (an export's 404 is "no events"), or False to leave it to the generic checks.
StatusHook = Callable[[httpx.Response], bool]


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    variables: str  # how the operator names them, for messages: never the values
    # The API takes a username alone (Mixpanel's project secret goes with a blank password).
    blank_password: bool = False


class ApiClient:
    """One API host with one set of credentials."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        region: str = "us",
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        gate: RequestGate = open_gate,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not credentials.username or not (credentials.password or credentials.blank_password):
            both = "be" if credentials.blank_password else "both be"
            raise AuthError(f"{credentials.variables} must {both} set (region {region!r})")
        # Credentials travel only as the Authorization header: a user:password@ in the base URL
        # would be logged with every request (httpx logs URLs) and is dropped here.
        self.base_url = redact(base_url).rstrip("/")
        self.region = region
        self.retry = retry
        self.credentials_named = credentials.variables
        self._gate = gate
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random(seed)
        token = base64.b64encode(
            f"{credentials.username}:{credentials.password}".encode()).decode()
        self._secrets = tuple(sorted(
            {s for s in (credentials.username, credentials.password, token)
             if len(s) >= _MIN_SCRUBBED}, key=len, reverse=True))
        common: dict[str, Any] = {"timeout": timeouts.httpx(), "follow_redirects": False,
                                  "headers": {"User-Agent": USER_AGENT, **(headers or {})}}
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=httpx.BasicAuth(credentials.username, credentials.password), **common)
        self._anonymous = httpx.Client(**common)  # for redirects to other hosts

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._anonymous.close()

    def where(self, what: str) -> str:
        return f"{what} from {self.base_url} (region {self.region!r})"

    def scrub(self, text: str) -> str:
        """``text`` with the credentials (and their Basic token) blanked: a proxy's error page
        may echo the request's headers back."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def excerpt(self, data: bytes | str, limit: int = EXCERPT_CHARS) -> str:
        """The start of an unexpected body, fit for a message: printable, scrubbed."""
        return self.scrub(excerpt(data, limit + max(map(len, self._secrets), default=0)))[:limit]

    def with_retries(self, what: str, attempt: Callable[[float], Any]) -> tuple[Any, int, float]:
        """Run ``attempt(deadline)`` until it stops raising ``TransientError`` or the budget ends.

        Returns its result, the attempts made and the seconds spent.
        """
        started = self._clock()
        deadline = started + self.retry.max_elapsed_seconds
        wait = backoff(self.retry, self._rng)

        def warn(state: tenacity.RetryCallState) -> None:
            log.warning("%s attempt %d: %s; retrying in %.1f s", what, state.attempt_number,
                        state.outcome.exception() if state.outcome else None, state.upcoming_sleep)

        retrying = within_budget(self.retry, retry=tenacity.retry_if_exception_type(TransientError),
                                 wait=wait, clock=self._clock, sleep=self._sleep,
                                 before_sleep=warn, started=started)
        try:
            result = retrying(attempt, deadline)
        except TransientError as error:
            tries, elapsed = retrying.statistics["attempt_number"], self._clock() - started
            budget = self.retry.max_elapsed_seconds
            asked = error.retry_after
            why = (f" (the server asked for {asked:.0f} s more, past the {budget:.0f} s retry "
                   "budget)" if asked is not None and tries < self.retry.max_attempts
                   and elapsed + asked > budget else "")
            raise RetriesExhausted(
                f"{what} failed after {tries} attempts in {elapsed:.0f} s{why}: {error}",
                last=error) from error
        return result, retrying.statistics["attempt_number"], self._clock() - started

    @contextmanager
    def stream(self, path: str, params: Mapping[str, str] | None = None, *, what: str,
               endpoint: str, cost: float = 1.0,
               on_status: StatusHook | None = None) -> Iterator[httpx.Response]:
        """One GET whose response is open for streaming, after redirects and status checks.

        Transport failures and timeouts become ``TransientError``; a redirect to another host is
        followed without the Authorization header.
        """
        with self._gate(endpoint, cost):
            try:
                with self._follow(path, params) as response:
                    if on_status is None or not on_status(response):
                        self.raise_for_status(response, what)
                    yield response
            except httpx.TimeoutException as error:
                raise TransientError(f"timed out ({type(error).__name__})") from error
            except httpx.TransportError as error:
                raise TransientError(
                    f"connection failed ({type(error).__name__}: {error})") from error

    @contextmanager
    def _follow(self, path: str, params: Mapping[str, str] | None) -> Iterator[httpx.Response]:
        client, url, query = self._http, path, params
        for _ in range(MAX_REDIRECTS + 1):
            with client.stream("GET", url, params=query) as response:
                location = response.headers.get("Location")
                if response.status_code not in (301, 302, 303, 307, 308) or not location:
                    yield response
                    return
            target = httpx.URL(str(response.url)).join(location)
            if not _same_origin(target, httpx.URL(self.base_url)):
                client = self._anonymous  # another host never gets the API's credentials
            url, query = str(target), None
        raise HttpError(f"more than {MAX_REDIRECTS} redirects from {path}")

    def raise_for_status(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        body = self.excerpt(body_excerpt(response))
        where = self.where(what)
        if status in (401, 403):
            raise AuthError(
                f"refused ({status}) for {where}: check {self.credentials_named} belong to this "
                f"project and the region or base URL match its data region: {body[:120]}")
        if status == 429:
            raise TransientError(f"rate limited (429) on {where}", status=status,
                                 retry_after=retry_after_seconds(response))
        if status in (500, 502, 503, 504):
            raise TransientError(f"server error {status} on {where}: {body[:120]}", status=status)
        raise HttpError(f"unexpected status {status} for {where}: {body[:200]}")

    def get_json(self, path: str, params: Mapping[str, str] | None = None, *, what: str,
                 endpoint: str, cost: float = 1.0) -> Any:
        """A JSON answer, retried as a whole; a body that is not JSON names the endpoint."""

        def attempt(deadline: float) -> Any:
            with self.stream(path, params, what=what, endpoint=endpoint, cost=cost) as response:
                raw = read_within(response, deadline, self._clock)
            try:
                return json.loads(raw)
            except ValueError as error:
                raise HttpError(f"{self.where(what)} answered {len(raw)} bytes that are not "
                                f"JSON ({error}): {self.excerpt(raw[:1024])!r}") from error

        return self.with_retries(what, attempt)[0]

    def fetch_to(self, path: str, params: Mapping[str, str] | None, dest: Path, *, what: str,
                 endpoint: str, cost: float = 1.0,
                 check: Callable[[Path], str | None] | None = None) -> tuple[int, int]:
        """Stream an answer to ``dest``, retried as a whole; ``check`` says what is wrong with a
        body that arrived whole but cannot be trusted (retried too: proxies serve HTML under
        200). Returns the bytes and the attempts."""

        def attempt(deadline: float) -> int:
            with self.stream(path, params, what=what, endpoint=endpoint, cost=cost) as response:
                size = self.save(response, dest, deadline)
            problem = check(dest) if check is not None else None
            if problem:
                with open(dest, "rb") as body:
                    start = body.read(1024)
                dest.unlink(missing_ok=True)
                raise TransientError(f"the {size}-byte answer {problem}: "
                                     f"{self.excerpt(start)!r}")
            return size

        size, attempts, _ = self.with_retries(self.where(what), attempt)
        return size, attempts

    def save(self, response: httpx.Response, dest: Path, deadline: float, *,
             decode: bool = True) -> int:
        """Write the body to ``dest`` as received (decoded if the server encoded it, e.g. a gzip
        ``Content-Encoding`` on a zip; ``decode=False`` keeps the bytes of the wire, still
        encoded), through a ``.part`` file renamed on success. Returns the bytes written;
        Content-Length, which counts the bytes on the wire, is checked against those."""
        partial = dest.with_name(dest.name + ".part")
        encoded = (decode and
                   response.headers.get("Content-Encoding", "identity").lower() != "identity")
        expected = response.headers.get("Content-Length")
        received = 0
        try:
            with open(partial, "wb") as out:
                chunks = response.iter_bytes() if encoded else response.iter_raw()
                for chunk in chunks:  # as received: re-chunking copies
                    out.write(chunk)
                    received += len(chunk)
                    if self._clock() > deadline:  # a trickling body never hits the read timeout
                        raise TransientError(f"body still arriving after the time budget "
                                             f"({received} bytes so far)")
            on_wire = response.num_bytes_downloaded
            if expected is not None and expected.isdigit() and int(expected) != on_wire:
                raise TransientError(f"truncated body (cut short): {on_wire} of {expected} "
                                     "bytes")
        except httpx.TimeoutException as error:
            partial.unlink(missing_ok=True)
            raise TransientError(f"timed out mid-body ({type(error).__name__})") from error
        except httpx.TransportError as error:
            partial.unlink(missing_ok=True)
            raise TransientError(f"connection failed mid-body, the body cut short after "
                                 f"{received} bytes ({type(error).__name__})") from error
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, dest)
        return received


def not_json(path: Path) -> str | None:
    """A ``check`` for JSON answers: why the file is not one JSON document, or None."""
    try:
        with open(path, "rb") as body:
            json.load(body)
    except (ValueError, UnicodeDecodeError) as error:
        return f"is not JSON ({error})"
    return None


def read_within(response: httpx.Response, deadline: float,
                clock: Callable[[], float] = time.monotonic) -> bytes:
    """A small body, read whole but never past the deadline."""
    parts = []
    try:
        for chunk in response.iter_bytes():
            parts.append(chunk)
            if clock() > deadline:
                raise TransientError("body still arriving after the time budget")
    except httpx.TimeoutException as error:
        raise TransientError(f"timed out mid-body ({type(error).__name__})") from error
    except httpx.TransportError as error:
        raise TransientError(f"connection failed mid-body ({type(error).__name__})") from error
    return b"".join(parts)


def excerpt(data: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """The first ``limit`` printable characters of a body, whitespace runs as one space."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    printable = "".join(c if c.isprintable() else " " for c in text[:limit * 4])
    return " ".join(printable.split())[:limit]


def body_excerpt(response: httpx.Response, limit: int = 300) -> str:
    try:
        return response.read()[:limit].decode("utf-8", "replace").strip()
    except httpx.HTTPError:
        return "(body unreadable)"


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def redact(url: str) -> str:
    """A URL without any ``user:pass@`` it carries, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()
