"""A Mixpanel raw-export server on 127.0.0.1: ``GET /api/2.0/export``, its limits and its faults.

    with MixpanelSimulator(MixpanelConfig()) as sim:
        httpx.get(f"{sim.url}/api/2.0/export", params={"from_date": "2026-03-08",
                  "to_date": "2026-03-08", "project_id": "3141592"},
                  auth=(sim.config.username, sim.config.secret))
        truth = sim.served(date(2026, 3, 8), date(2026, 3, 8))  # with each event's UTC instant

Rules (seed 003, shared/reference Part A): HTTP Basic auth with a service account
(``username:secret``, and ``project_id`` must name the project: missing 400, another 403) or the
project secret as the username (any password); none, garbled or wrong: 401. ``from_date`` and
``to_date`` are ``yyyy-mm-dd``, both inclusive, in the project's days for a local-time project
(UTC days otherwise); malformed or reversed: 400. ``event`` is a JSON array of names; ``where``
supports only ``properties["k"]=="v"`` (else 400); ``limit`` caps the lines; ``time_in_ms=true``
serves ``time`` in milliseconds. The body is JSONL sorted by ``time``, gzip-compressed with
``Content-Encoding: gzip`` when asked (``Accept-Encoding: gzip``) and over 1,400 bytes. Limits
(``MixpanelConfig``): 60 queries per hour, 3 per second, 100 at once, per project; past them
429 (with ``Retry-After`` unless ``retry_after_header`` is off). Refused requests count nothing.

Faults (``MixpanelFault``), queued with ``inject``, one per export request. Fault-free bodies
are built once per request shape and sent from disk, so a million-event day streams without
being held in memory.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import deque
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from simulator.mixpanel_data import MixpanelConfig, Served, served
from simulator.protocol import Handler, RequestRecord, Response, Server, credentials

EXPORT_PATH = "/api/2.0/export"
GZIP_MIN_BYTES = 1400
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_WHERE = re.compile(r'properties\["([^"]+)"\]\s*==\s*"([^"]*)"')


@dataclass(frozen=True)
class MixpanelFault:
    """One injected fault; build them with the class methods."""

    kind: str
    code: int | None = None
    retry_after: str | None = None
    body: bytes = b""
    fraction: float = 0.5
    seconds: float = 0.0
    size: int = 0

    @classmethod
    def status(cls, code: int, retry_after: str | None = None, body: str = "") -> MixpanelFault:
        text = body or json.dumps({"request": EXPORT_PATH, "error": f"simulated {code}"})
        return cls("status", code=code, retry_after=retry_after, body=text.encode())

    @classmethod
    def terminated_early(cls, fraction: float = 0.5) -> MixpanelFault:
        """200, that share of the lines, then the bare line ``terminated early``."""
        return cls("terminated_early", fraction=fraction)

    @classmethod
    def cut_body(cls, fraction: float = 0.5) -> MixpanelFault:
        """The full Content-Length, then only that share of the bytes, then a close."""
        return cls("cut_body", fraction=fraction)

    @classmethod
    def cut_gzip(cls, fraction: float = 0.5) -> MixpanelFault:
        """A gzip stream stopped at a line boundary, flushed but without its end, under an
        honest Content-Length: only a reader that checks the gzip's end can tell."""
        return cls("cut_gzip", fraction=fraction)

    @classmethod
    def no_final_newline(cls) -> MixpanelFault:
        """The body stops inside its last line, under an honest Content-Length."""
        return cls("no_final_newline")

    @classmethod
    def split_line(cls, fraction: float = 0.5) -> MixpanelFault:
        """One record (at that share of the body) broken over two lines."""
        return cls("split_line", fraction=fraction)

    @classmethod
    def chunked(cls, size: int = 997) -> MixpanelFault:
        """The body in chunks of ``size`` bytes: boundaries inside lines and characters."""
        return cls("chunked", size=size)

    @classmethod
    def slow(cls, seconds: float) -> MixpanelFault:
        """Wait before the first byte, as a big export does."""
        return cls("slow", seconds=seconds)


class _Limits:
    """Sliding windows of admitted queries and a count of those running, per project."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.admitted: deque[float] = deque()
        self.running = 0

    def admit(self, config: MixpanelConfig, project: str) -> tuple[str, int] | None:
        with self.lock:
            now = time.monotonic()
            while self.admitted and self.admitted[0] <= now - config.hour_seconds:
                self.admitted.popleft()
            if config.limits_enabled:
                last_second = sum(1 for t in self.admitted if t > now - 1.0)
                if self.running >= config.concurrent:
                    return (f"{self.running}/{config.concurrent} queries running concurrently", 1)
                if last_second >= config.per_second:
                    return f"{last_second}/{config.per_second} queries in the last second", 1
                if len(self.admitted) >= config.per_hour:
                    wait = self.admitted[0] + config.hour_seconds - now
                    return (
                        f"{len(self.admitted) + 1}/{config.per_hour} queries in the last hour",
                        max(1, int(wait + 0.999)),
                    )
            self.admitted.append(now)
            self.running += 1
            return None

    def release(self) -> None:
        with self.lock:
            self.running -= 1


class MixpanelSimulator:
    """The simulated Mixpanel project's export host. ``start()`` serves it from a thread."""

    def __init__(
        self,
        config: MixpanelConfig | None = None,
        *,
        port: int = 0,
        verbose: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.config = config or MixpanelConfig()
        self.verbose = verbose
        self.errors: list[str] = []
        self._port = port
        self._lock = threading.Lock()
        self._faults: deque[MixpanelFault] = deque()
        self._log: list[RequestRecord] = []
        self._limits = _Limits()
        self._cache_dir = None if cache_dir is None else Path(cache_dir)
        self._tmp: Path | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> MixpanelSimulator:
        with self._lock:
            if self._server is None:
                self._stopping.clear()
                self._server = Server(("127.0.0.1", self._port), self)  # type: ignore[arg-type]
                self._thread = threading.Thread(
                    target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
                )
                self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            server, thread, self._server, self._thread = self._server, self._thread, None, None
        self._stopping.set()
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> MixpanelSimulator:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def inject(self, *faults: MixpanelFault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def export_requests(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.path.rstrip("/") == EXPORT_PATH]

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def served(self, first: date, last: date, events: frozenset[str] | None = None) -> list[Served]:
        """What an export of ``first..last`` serves now, each with its true UTC instant."""
        return served(self.config, first, last, events)

    # -- HTTP ----------------------------------------------------------------------------------

    def _record_error(self) -> None:
        with self._lock:
            self.errors.append(traceback.format_exc())

    def _handle(self, handler: Handler) -> None:
        url = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        record = RequestRecord(handler.command, url.path, params, time.monotonic())
        with self._lock:
            self._log.append(record)
        try:
            self._serve(handler, record, url.path.rstrip("/"), params)
        except OSError:
            handler.close_connection = True
        except Exception as exc:
            self._record_error()
            handler.close_connection = True
            print(f"mixpanel simulator: internal error {exc!r}", file=sys.stderr)
            if record.status is None:
                with contextlib.suppress(OSError):
                    handler.send(record, _error(500, "internal error"), None)
        finally:
            if record.end is None:
                record.end = time.monotonic()

    def _serve(
        self, handler: Handler, record: RequestRecord, path: str, params: dict[str, str]
    ) -> None:
        config = self.config
        if path != EXPORT_PATH:
            handler.send(record, _error(404, "not found"), None)
            return
        if handler.command not in ("GET", "HEAD"):
            handler.send(record, _error(405, "method not allowed"), None)
            return
        refused = _authenticate(config, handler.headers.get("Authorization"), params)
        if refused is not None:
            handler.send(record, refused, None)
            return
        blocked = self._limits.admit(config, str(config.project_id))
        if blocked is not None:
            message, wait = blocked
            response = _error(
                429, f"Query rate limit exceeded for project_id {config.project_id}: {message}"
            )
            if config.retry_after_header:
                response.headers["Retry-After"] = str(wait)
            record.limit = message
            handler.send(record, response, None)
            return
        try:
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
            record.fault = None if fault is None else fault.kind
            response, fraction = self._answer(config, params, handler, fault)
            if fault is not None and fault.kind == "slow" and self._stopping.wait(fault.seconds):
                return
            handler.send(record, response, fraction)
        finally:
            self._limits.release()

    def _answer(
        self,
        config: MixpanelConfig,
        params: dict[str, str],
        handler: Handler,
        fault: MixpanelFault | None,
    ) -> tuple[Response, float | None]:
        if fault is not None and fault.kind == "status":
            assert fault.code is not None
            headers = {} if fault.retry_after is None else {"Retry-After": fault.retry_after}
            return Response(
                fault.code, fault.body, content_type="application/json", headers=headers
            ), None
        query = _query(params)
        if isinstance(query, Response):
            return query, None
        first, last, events, where, limit, ms = query
        wants_gzip = "gzip" in handler.headers.get("Accept-Encoding", "").lower()
        if fault is None or fault.kind == "slow":
            return self._from_disk(config, query, wants_gzip), None
        lines = [
            s.line(config, ms=ms)
            for s in served(config, first, last, events)
            if _matches(s, config, where)
        ][:limit]
        return _faulty(lines, fault, wants_gzip, config.gzip_level)

    def _from_disk(
        self, config: MixpanelConfig, query: tuple[Any, ...], wants_gzip: bool
    ) -> Response:
        first, last, events, where, limit, ms = query
        shape = repr(
            (
                replace(config, username="", secret="", api_secret=""),
                first,
                last,
                sorted(events or ()),
                where,
                limit,
                ms,
            )
        )
        key = hashlib.sha256(shape.encode()).hexdigest()[:20]
        folder = self._folder()
        plain, packed = folder / f"{key}.jsonl", folder / f"{key}.jsonl.gz"
        with self._lock:  # one build per shape; later requests find the files
            if not packed.exists():
                staged = folder / f".{key}.{threading.get_ident()}.tmp"
                with open(staged, "wb") as out:
                    written = 0
                    for s in served(config, first, last, events):
                        if _matches(s, config, where) and (limit is None or written < limit):
                            out.write(s.line(config, ms=ms) + b"\n")
                            written += 1
                staged.rename(plain)
                with (
                    open(plain, "rb") as source,
                    gzip.GzipFile(staged, "wb", compresslevel=config.gzip_level, mtime=0) as out,
                ):
                    shutil.copyfileobj(source, out, 1 << 20)
                staged.rename(packed)
        size = plain.stat().st_size
        if wants_gzip and size > GZIP_MIN_BYTES:
            return Response(
                200,
                file=packed,
                size=packed.stat().st_size,
                content_type="text/plain; charset=utf-8",
                headers={"Content-Encoding": "gzip"},
            )
        return Response(200, file=plain, size=size, content_type="text/plain; charset=utf-8")

    def _folder(self) -> Path:
        if self._cache_dir is not None:
            self._cache_dir.mkdir(parents=True, exist_ok=True)
            return self._cache_dir
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="mixpanel-simulator-"))
        return self._tmp


def _error(status: int, message: str) -> Response:
    body = json.dumps({"request": EXPORT_PATH, "error": message}).encode()
    return Response(status, body, content_type="application/json")


def _authenticate(
    config: MixpanelConfig, header: str | None, params: dict[str, str]
) -> Response | None:
    creds = credentials(header)
    if creds is None:
        response = _error(401, "Unable to authenticate request")
        response.headers["WWW-Authenticate"] = 'Basic realm="Mixpanel"'
        return response
    if creds == (config.username, config.secret):
        project = params.get("project_id")
        if not project:
            return _error(400, "project_id is required when authenticating with a service account")
        if project != str(config.project_id):
            return _error(403, f"service account is not a member of project {project}")
        return None
    if creds[0] == config.api_secret:
        return None
    return _error(401, "Unable to authenticate request")


def _query(params: dict[str, str]) -> tuple[Any, ...] | Response:
    days = []
    for name in ("from_date", "to_date"):
        value = params.get(name, "")
        try:
            if not _DAY.fullmatch(value):
                raise ValueError
            days.append(date.fromisoformat(value))
        except ValueError:
            return _error(400, f"'{name}' is a required parameter in the format yyyy-mm-dd")
    first, last = days
    if first > last:
        return _error(400, "'from_date' cannot be later than 'to_date'")
    events = None
    if params.get("event"):
        try:
            names = json.loads(params["event"])
            assert isinstance(names, list) and all(isinstance(n, str) for n in names)
        except (ValueError, AssertionError):
            return _error(400, "'event' must be a JSON array of event names")
        events = frozenset(names)
    where = None
    if params.get("where"):
        match = _WHERE.fullmatch(params["where"].strip())
        if match is None:
            return _error(400, 'the simulator supports only where=properties["k"]=="v"')
        where = (match.group(1), match.group(2))
    limit = None
    if params.get("limit"):
        if not params["limit"].isdigit() or int(params["limit"]) > 100_000:
            return _error(400, "'limit' cannot be over 100000")
        limit = int(params["limit"])
    ms = params.get("time_in_ms", "").lower() == "true"
    return first, last, events, where, limit, ms


def _matches(s: Served, config: MixpanelConfig, where: tuple[str, str] | None) -> bool:
    if where is None:
        return True
    return str(s.properties.get(where[0], "")) == where[1]


def _faulty(
    lines: list[bytes], fault: MixpanelFault, wants_gzip: bool, level: int
) -> tuple[Response, float | None]:
    """A body with the fault in it, gzip-encoded as asked (``cut_gzip`` always is)."""
    keep = int(len(lines) * fault.fraction)
    plain = b"".join(line + b"\n" for line in lines)
    if fault.kind == "terminated_early":
        plain = b"".join(line + b"\n" for line in lines[:keep]) + b"terminated early\n"
    elif fault.kind == "split_line" and lines:
        broken = lines[min(keep, len(lines) - 1)]
        middle = len(broken) // 2
        lines = [*lines[:keep], broken[:middle], broken[middle:], *lines[keep + 1 :]]
        plain = b"".join(line + b"\n" for line in lines)
    elif fault.kind == "no_final_newline" and lines:
        plain = plain[: -1 - len(lines[-1]) // 2]
    headers = {}
    if fault.kind == "cut_gzip":
        packer = zlib.compressobj(level, zlib.DEFLATED, 31)
        kept = b"".join(line + b"\n" for line in lines[:keep])
        body = packer.compress(kept) + packer.flush(zlib.Z_SYNC_FLUSH)
        headers["Content-Encoding"] = "gzip"
    elif wants_gzip and len(plain) > GZIP_MIN_BYTES:
        body = gzip.compress(plain, compresslevel=level, mtime=0)
        headers["Content-Encoding"] = "gzip"
    else:
        body = plain
    response = Response(200, body, content_type="text/plain; charset=utf-8", headers=headers)
    if fault.kind == "chunked":
        size = max(1, fault.size)
        response.stream = iter([body[i : i + size] for i in range(0, len(body), size)])
    return response, fault.fraction if fault.kind == "cut_body" else None
