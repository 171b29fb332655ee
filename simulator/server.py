"""An Amplitude-compatible Export API on 127.0.0.1, with fault injection and a request log.

    with Simulator(SimulatorConfig(seed=1)) as sim:
        httpx.get(f"{sim.url}/api/2/export", params={"start": "20250701T00", "end": "20250701T23"},
                  auth=(sim.config.api_key, sim.config.secret_key))
        expected = list(sim.hour_lines(datetime(2025, 7, 1, 5, tzinfo=UTC)))

Rules (shared/reference, sections 1 and 5): HTTP Basic auth (none or garbled: 401; wrong key or
secret: 403 "Invalid API Key"); ``start``/``end`` as ``YYYYMMDDTHH``, ``end`` inclusive, at most 365
days (else 400); a window with no events is 404; a zip over the size cap is 400; a window longer
than ``max_hours_before_504`` hours is 504. Archives are built once per (start, end) into a temp
directory and streamed from disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from simulator import generator
from simulator.archive import Archive, ArchiveTooLarge, Member, build_archive, plan
from simulator.config import SimulatorConfig
from simulator.faults import Fault
from simulator.protocol import (
    EXPORT_PATH,
    MSG_NO_DATA,
    MSG_TIMEOUT,
    MSG_TOO_LARGE,
    Handler,
    RequestRecord,
    Response,
    Server,
    credentials,
    error_json,
    parse_window,
    text,
    unauthorized,
)

_TOO_LARGE = "too large"


def fingerprint(config: SimulatorConfig) -> str:
    """A name for everything that shapes an archive's bytes (not credentials or limits)."""
    counts = sorted((generator.hour_index(h), n) for h, n in config.hour_counts.items())
    shape = (
        generator.GENERATOR_VERSION,
        config.project_id,
        config.seed,
        config.profile,
        counts,
        config.events_per_member,
        config.first_member_number,
        config.project_folder,
        config.gzip_level,
    )
    return hashlib.sha256(repr(shape).encode()).hexdigest()[:20]


class _CacheEntry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.result: Archive | str | None = None


class Simulator:
    """The simulated Export API. ``start()`` serves it from a background thread."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        port: int = 0,
        verbose: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        """``cache_dir`` keeps built archives across runs (keyed by everything that shapes their
        bytes); without it they go to a temp directory deleted by ``stop()``."""
        self.config = config or SimulatorConfig()
        self.verbose = verbose
        self._cache_dir = None if cache_dir is None else Path(cache_dir)
        self.errors: list[str] = []  # tracebacks of unexpected server errors (should stay empty)
        self._port = port
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._log: list[RequestRecord] = []
        self._cache: dict[tuple[datetime, datetime], _CacheEntry] = {}
        self._dir: Path | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, port: int | None = None) -> Simulator:
        """Bind 127.0.0.1 (on ``port``, or a free one) and serve in a background thread."""
        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = Server(("127.0.0.1", self._port if port is None else port), self)
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                name=f"amplitude-simulator-{server.server_address[1]}",
            )  # fmt: skip
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end open connections, and delete the archive cache. Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        self._stopping.set()
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        self.clear_cache()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (the export is at ``/api/2/export``)."""
        return f"http://127.0.0.1:{self.port}"

    # -- faults and the request log ---------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each export request consumes the next one."""
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._log)

    def export_requests(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.path == EXPORT_PATH]

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    # -- expected data (from the generator, not from the served zip) -----------------------

    def hour_count(self, hour: datetime) -> int:
        """Events uploaded in the UTC hour ``hour`` falls in (a naive datetime is UTC)."""
        return self.config.hour_count(hour)

    def hour_lines(self, hour: datetime) -> Iterator[bytes]:
        """The NDJSON lines served for that upload hour, in served order."""
        c = self.config
        return generator.hour_lines(c.project_id, hour, c.hour_count(hour), c.seed, c.profile)

    def window_count(self, start: datetime, end: datetime) -> int:
        """Events in the export of ``start..end`` (both included)."""
        return sum(m.events for m in plan(self.config, start, end))

    def expected_members(self, start: datetime, end: datetime) -> list[Member]:
        """The zip members the export of ``start..end`` holds, in order (not the folder entry)."""
        return plan(self.config, start, end)

    # -- archives ----------------------------------------------------------------------------

    def archive(self, start: datetime, end: datetime) -> Archive | None:
        """Build (once, then cached) the zip for ``start..end``; None when it holds no events.
        Raises ArchiveTooLarge over the size cap."""
        result = self._cached(generator.utc_hour(start), generator.utc_hour(end))
        if result == _TOO_LARGE:
            raise ArchiveTooLarge(f"more than {self.config.size_cap_bytes} bytes")
        assert result is None or isinstance(result, Archive)
        return result

    def clear_cache(self) -> None:
        """Forget the built archives, deleting them unless they live in ``cache_dir``."""
        with self._lock:
            self._cache.clear()
            folder, self._dir = self._dir, None
        if folder is not None and self._cache_dir is None:
            shutil.rmtree(folder, ignore_errors=True)

    def _folder(self) -> Path:
        if self._dir is None:
            if self._cache_dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="amplitude-simulator-"))
            else:
                self._dir = self._cache_dir / fingerprint(self.config)
                self._dir.mkdir(parents=True, exist_ok=True)
        return self._dir

    def _cached(self, start: datetime, end: datetime) -> Archive | str | None:
        with self._lock:
            entry = self._cache.setdefault((start, end), _CacheEntry())
            folder = self._folder()
        with entry.lock:
            if not entry.done:
                entry.result = self._build(start, end, folder)
                entry.done = True
            return entry.result

    def _build(self, start: datetime, end: datetime, folder: Path) -> Archive | str | None:
        path = folder / f"export_{start:%Y%m%dT%H}_{end:%Y%m%dT%H}.zip"
        members = plan(self.config, start, end)
        if not members:
            return None
        if path.exists():  # built by an earlier run with the same fingerprint
            size = path.stat().st_size
            if size > self.config.size_cap_bytes:
                return _TOO_LARGE
            return Archive(path, size, sum(m.events for m in members), len(members))
        part = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            archive = build_archive(self.config, start, end, part)
        except ArchiveTooLarge:
            return _TOO_LARGE
        assert archive is not None
        os.replace(part, path)
        return Archive(path, archive.size, archive.events, archive.members)

    # -- HTTP --------------------------------------------------------------------------------

    def _record_error(self) -> None:
        with self._lock:
            self.errors.append(traceback.format_exc())

    def _handle(self, handler: Handler) -> None:
        url = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        record = RequestRecord(handler.command, url.path, params, time.monotonic())
        fault = None
        with self._lock:
            self._log.append(record)
            if url.path == EXPORT_PATH and self._faults:
                fault = self._faults.popleft()
        record.fault = fault.kind if fault else None
        try:
            if fault is not None and fault.kind == "drop":
                handler.close_connection = True
                return
            if fault is not None and fault.kind == "slow" and self._stopping.wait(fault.seconds):
                handler.close_connection = True
                return
            if fault is not None and fault.kind == "status":
                assert fault.code is not None and fault.body is not None
                headers = (
                    {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
                )
                response = Response(fault.code, fault.body, headers=headers)
            elif url.path != EXPORT_PATH:
                response = text(404, "Not Found")
            elif handler.command not in ("GET", "HEAD"):
                response = text(405, "Method Not Allowed", Allow="GET")
            else:
                response = self._export(handler.headers.get("Authorization"), params)
            if fault is not None and fault.kind == "corrupt":
                assert fault.body is not None
                response = Response(200, fault.body, content_type="application/zip")
            fraction = fault.fraction if fault is not None and fault.kind == "truncate" else None
            handler.send(record, response, fraction)
        except OSError:  # the client hung up
            handler.close_connection = True
        except Exception as exc:  # a bug: keep serving, but say so (once per request, briefly)
            self._record_error()
            handler.close_connection = True
            if self.verbose:
                traceback.print_exc()
            else:
                print(f"amplitude simulator: internal error {exc!r}", file=sys.stderr)
            if record.status is None:
                with contextlib.suppress(OSError):
                    handler.send(record, text(500, "Internal Server Error"), None)

    def _export(self, authorization: str | None, params: dict[str, str]) -> Response:
        creds = credentials(authorization)
        if creds is None:
            return unauthorized()
        if creds != (self.config.api_key, self.config.secret_key):
            return error_json(403, "Invalid API Key")
        window = parse_window(params)
        if isinstance(window, Response):
            return window
        start, end = window
        limit = self.config.max_hours_before_504
        if limit is not None and (end - start).total_seconds() // 3600 + 1 > limit:
            return text(504, MSG_TIMEOUT)
        result = self._cached(start, end)
        if result is None:
            return text(404, MSG_NO_DATA)
        if result == _TOO_LARGE:
            return text(400, MSG_TOO_LARGE)
        assert isinstance(result, Archive)
        name = f"{self.config.project_id}_{start:%Y%m%dT%H}_{end:%Y%m%dT%H}.zip"
        return Response(
            200,
            file=result.path,
            size=result.size,
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
