"""The Export API's request rules (auth, parameters, status messages) and the HTTP plumbing.

Everything here is stateless; ``server.Simulator`` owns the state (faults, log, archive cache).
A ``Response`` is a byte body, a file (sent with ``sendfile``), or a ``stream`` of chunks sent
with chunked transfer encoding: cohort files are gzipped while they are sent, so their length is
not known up front and nothing the size of the file is ever held in memory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.server import Simulator

EXPORT_PATH = "/api/2/export"
MAX_WINDOW = timedelta(days=365)
MSG_NO_DATA = "No data available for the time range requested."
MSG_TOO_LARGE = (
    "The file size of the exported data is too large. Shorten the time ranges and try again. "
    "The limit size is 4GB."
)
MSG_TIMEOUT = (
    "The amount of data is large causing a timeout. "
    "For large amounts of data, use the Amazon S3 destination."
)
_HOUR_RE = re.compile(r"\d{8}T\d{2}")
_CHUNK = 4 * 1024 * 1024
_TEXT = "text/plain; charset=utf-8"


@dataclass
class RequestRecord:
    """One request the simulator received (fields are filled in as the answer goes out)."""

    method: str
    path: str
    params: dict[str, str]
    time: float  # time.monotonic() when it arrived (a rate-limited one: when admitted)
    status: int | None = None  # None: no status line was sent (dropped, or the client left)
    bytes_sent: int = 0  # body bytes written to the socket
    fault: str | None = None  # the kind of injected fault this request consumed
    end: float | None = None  # time.monotonic() when the answer was sent (or the client left)
    host: str = "api"  # "api" (Amplitude) or "storage" (the signed-link host)
    # per limit group ("rest", "cohort", "dashboard", "taxonomy"): requests (for taxonomy: cost)
    # in flight in that group when this one was admitted, this one included; for a request
    # refused with 429, the others in flight at that moment
    in_flight: dict[str, int] = field(default_factory=dict)
    cost: int = 0  # what the request cost against its group's budget (0: no budget)
    limit: str | None = None  # the RateLimits field a 429 enforced

    @property
    def start(self) -> float:
        return self.time

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else self.end - self.time


@dataclass
class Response:
    status: int
    body: bytes = b""
    file: Path | None = None  # sent instead of ``body`` when set
    size: int = 0  # of ``file``
    content_type: str = _TEXT
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None  # sent chunked, instead of ``body``, when set

    @property
    def length(self) -> int:
        return self.size if self.file is not None else len(self.body)


def json_response(status: int, value: Any, **headers: str) -> Response:
    body = json.dumps(value, ensure_ascii=False).encode()
    return Response(status, body, content_type="application/json", headers=dict(headers))


def text(status: int, message: str, **headers: str) -> Response:
    return Response(status, message.encode(), headers=dict(headers))


def error_json(status: int, message: str) -> Response:
    body = {"error": {"message": message, "metadata": {"details": message}}}
    return Response(status, json.dumps(body).encode(), content_type="application/json")


def unauthorized() -> Response:
    response = error_json(401, "Missing or malformed Authorization header (use HTTP Basic auth)")
    response.headers["WWW-Authenticate"] = 'Basic realm="Amplitude"'
    return response


def credentials(header: str | None) -> tuple[str, str] | None:
    """(api_key, secret_key) from a Basic Authorization header, or None when it is garbled."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    key, sep, secret = decoded.partition(":")
    return (key, secret) if sep else None


def parse_window(params: dict[str, str]) -> tuple[datetime, datetime] | Response:
    """The (start, end) hours of an export request, or the 400 Amplitude would answer."""
    hours = []
    for name in ("start", "end"):
        value = params.get(name)
        if value is None or value == "":
            return text(400, f"Missing required parameter: {name}. Use the format YYYYMMDDTHH.")
        try:
            if not _HOUR_RE.fullmatch(value):
                raise ValueError
            hours.append(datetime.strptime(value, "%Y%m%dT%H").replace(tzinfo=UTC))
        except ValueError:
            return text(400, f"Invalid {name} time {value!r}. Use the format YYYYMMDDTHH.")
    start, end = hours
    if start > end:
        return text(400, "Invalid time range: start must not be after end.")
    if end - start > MAX_WINDOW:
        return text(400, "Invalid time range: the max period you can query at once is 365 days.")
    return start, end


class Server(ThreadingHTTPServer):
    """A threading HTTP server that stays quiet when clients hang up."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # broken pipes, resets, timeouts
            return
        self.simulator._record_error()
        if self.simulator.verbose:
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AmplitudeSimulator/1.0"
    server: Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.simulator.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self.server.simulator._handle(self)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def send(
        self,
        record: RequestRecord,
        response: Response,
        fraction: float | None,
        done: Callable[[], None] | None = None,
    ) -> None:
        """Send ``response``; with ``fraction``, only that part of the body, then hang up.

        ``done`` (default: stamping ``record.end``) runs just before the client can have the
        whole answer: before the headers of a byte body, before the last chunk of a stream, after
        a file. So a client that has its answer finds the log's ``end`` stamped and the request's
        rate-limit slot free; on localhost it could otherwise send its next request first.
        """
        finish = done or (lambda: setattr(record, "end", time.monotonic()))
        if response.stream is not None:
            self._send_stream(record, response, response.stream, finish)
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(response.length))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.file is None:
            finish()
        self.end_headers()
        record.status = response.status
        limit = response.length if fraction is None else int(response.length * fraction)
        if self.command == "HEAD":
            limit = 0
        if response.file is not None:
            with open(response.file, "rb") as f:
                while record.bytes_sent < limit:
                    count = min(_CHUNK, limit - record.bytes_sent)
                    sent = self.connection.sendfile(f, record.bytes_sent, count)
                    if not sent:
                        break
                    record.bytes_sent += sent
            finish()
        elif limit:
            self.wfile.write(response.body[:limit])
            record.bytes_sent = limit
        if fraction is not None:
            self.close_connection = True

    def _send_stream(
        self,
        record: RequestRecord,
        response: Response,
        stream: Iterator[bytes],
        finish: Callable[[], None],
    ) -> None:
        """Send ``stream`` with chunked transfer encoding (``bytes_sent`` counts payload bytes)."""
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.command == "HEAD":
                finish()
                self.end_headers()
                record.status = response.status
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            record.status = response.status
            write = self.wfile.write
            for chunk in stream:
                if chunk:
                    write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    record.bytes_sent += len(chunk)
            finish()
            write(b"0\r\n\r\n")
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
