"""The Export API over HTTP: auth, timeouts, bounded retries, and a body streamed to disk.

Amplitude's export answers are large and occasionally broken in transit (truncated bodies, bodies
that are not zips, 5xx under load), so every answer is checked before it is trusted, and anything
transient is retried with capped, jittered exponential backoff inside a fixed time budget.
"""

from __future__ import annotations

import logging
import os
import random
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from pipeline.hours import ExportWindow

log = logging.getLogger(__name__)

EXPORT_PATH = "/api/2/export"
CREDENTIAL_VARIABLES = "AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY"


class ExportError(RuntimeError):
    """The export could not be fetched; the message says which window and why."""


class AuthError(ExportError):
    pass


class WindowTooLarge(ExportError):
    """Amplitude refused the window as too big (400, over 4 GB) or timed out building it (504)."""


class TransientError(ExportError):
    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_elapsed_seconds: float = 900.0
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with jitter, so retrying clients do not stampede in step."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Timeouts:
    connect_seconds: float = 10.0
    read_seconds: float = 300.0  # Amplitude can think for minutes before the first byte

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(self.read_seconds, connect=self.connect_seconds)


@dataclass(frozen=True)
class Download:
    window: ExportWindow
    path: Path | None  # None: Amplitude holds no events for the window (404)
    bytes: int
    attempts: int
    seconds: float


class ExportClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        secret_key: str,
        *,
        region: str = "us",
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        if not api_key or not secret_key:
            raise AuthError(f"{CREDENTIAL_VARIABLES} must both be set (region {region!r})")
        self.base_url = base_url.rstrip("/")
        self.region = region
        self.retry = retry
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random(seed)
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=httpx.BasicAuth(api_key, secret_key),
            timeout=timeouts.httpx(),
            follow_redirects=False,
            headers={"User-Agent": "amplitude-warehouse/0.1"},
        )

    def __enter__(self) -> ExportClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def download(self, window: ExportWindow, dest: Path, *, splittable: bool) -> Download:
        """Fetch one window into ``dest``.

        A 504 on a window that can still be halved is returned to the caller at once as
        ``WindowTooLarge`` rather than retried: retrying the same oversized request wastes minutes.
        """
        started = self._clock()
        deadline = started + self.retry.max_elapsed_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                size = self._attempt(window, dest, splittable=splittable, deadline=deadline)
                return Download(window, dest if size else None, size, attempt,
                                self._clock() - started)
            except TransientError as error:
                elapsed = self._clock() - started
                wait = error.retry_after
                if wait is None:
                    wait = self.retry.delay(attempt, self._rng)
                if (attempt >= self.retry.max_attempts
                        or elapsed + wait > self.retry.max_elapsed_seconds):
                    kind = WindowTooLarge if error.status == 504 else ExportError
                    raise kind(
                        f"export window {window} failed after {attempt} attempts in "
                        f"{elapsed:.0f} s: {error}"
                    ) from error
                log.warning("export window %s attempt %d: %s; retrying in %.1f s",
                            window, attempt, error, wait)
                self._sleep(wait)

    def _attempt(self, window: ExportWindow, dest: Path, *, splittable: bool,
                 deadline: float) -> int:
        partial = dest.with_name(dest.name + ".part")
        try:
            with self._http.stream("GET", EXPORT_PATH, params=window.query) as response:
                self._raise_for_status(response, window, splittable=splittable)
                if response.status_code == 404:
                    return 0
                expected = response.headers.get("Content-Length")
                received = 0
                with open(partial, "wb") as out:
                    for chunk in response.iter_raw():  # as received: re-chunking copies
                        out.write(chunk)
                        received += len(chunk)
                        if self._clock() > deadline:  # a trickling body never hits the timeout
                            raise TransientError(f"body still arriving after the time budget "
                                                 f"({received} bytes so far)")
        except httpx.TimeoutException as error:
            partial.unlink(missing_ok=True)
            raise TransientError(f"timed out ({type(error).__name__})") from error
        except httpx.TransportError as error:
            partial.unlink(missing_ok=True)
            raise TransientError(f"connection failed ({type(error).__name__}: {error})") from error
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if expected is not None and int(expected) != received:
            partial.unlink(missing_ok=True)
            raise TransientError(f"truncated body: {received} of {expected} bytes")
        damage = _zip_damage(partial)
        if damage:
            partial.unlink(missing_ok=True)
            raise TransientError(f"the {received}-byte body is {damage}")
        os.replace(partial, dest)
        return received

    def _raise_for_status(self, response: httpx.Response, window: ExportWindow,
                          *, splittable: bool) -> None:
        status = response.status_code
        if status in (200, 404):
            return
        body = response.read()[:300].decode("utf-8", "replace").strip()
        where = f"export window {window} from {self.base_url} (region {self.region!r})"
        if status in (401, 403):
            raise AuthError(
                f"Amplitude refused the credentials ({status}) for {where}: check "
                f"{CREDENTIAL_VARIABLES} belong to this project, and AMPLITUDE_REGION or "
                f"AMPLITUDE_BASE_URL match the project's data region"
            )
        if status == 400 and ("too large" in body.lower() or "4gb" in body.lower()):
            raise WindowTooLarge(f"{where} is over Amplitude's 4 GB export cap (400)")
        if status == 504 and splittable:
            raise WindowTooLarge(f"{where} timed out at Amplitude (504)")
        if status == 429:
            raise TransientError(
                f"rate limited (429) on {where}", status=status,
                retry_after=_retry_after(response),
            )
        if status in (500, 502, 503, 504):
            raise TransientError(f"server error {status} on {where}: {body[:120]}", status=status)
        raise ExportError(f"unexpected status {status} for {where}: {body[:200]}")


def _zip_damage(path: Path) -> str | None:
    """Why the archive cannot be trusted, or None. Reads every member to check its CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        return f"not a readable zip archive ({error})"
    return f"a zip whose member {bad!r} fails its CRC" if bad else None


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait as the server asks; the caller's time budget bounds it."""
    raw = response.headers.get("Retry-After", "").strip()
    try:
        return max(float(raw), 0.0)
    except ValueError:
        return None
