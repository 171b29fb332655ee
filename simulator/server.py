"""An Amplitude-compatible server on 127.0.0.1: the Export API (with fault injection), the
cohort, taxonomy and Dashboard REST endpoints (``api``), a storage host on a second port for
cohort files (``storage``), and a request log.

    with Simulator(SimulatorConfig(seed=1)) as sim:
        httpx.get(f"{sim.url}/api/2/export", params={"start": "20250701T00", "end": "20250701T23"},
                  auth=(sim.config.api_key, sim.config.secret_key))
        expected = list(sim.hour_lines(datetime(2025, 7, 1, 5, tzinfo=UTC)))

Rules (shared/reference, sections 1 and 5): HTTP Basic auth (none or garbled: 401; wrong key or
secret: 403 "Invalid API Key"); ``start``/``end`` as ``YYYYMMDDTHH``, ``end`` inclusive, at most 365
days (else 400); a window with no events is 404; a zip over the size cap is 400; a window longer
than ``max_hours_before_504`` hours is 504. Archives are built once per (start, end) into a temp
directory and streamed from disk (``exports``). Faults apply to export requests only.
"""

from __future__ import annotations

import contextlib
import gzip
import select
import socket
import struct
import sys
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
from simulator.api import Api
from simulator.archive import Archive, ArchiveTooLarge, Member, plan
from simulator.config import SimulatorConfig
from simulator.counts import DailyCounts
from simulator.exports import TOO_LARGE, ArchiveCache
from simulator.faults import ARCHIVE_KINDS, HTTP_KINDS, Fault
from simulator.merges import MergePlan, plan_for
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
from simulator.storage import Storage
from simulator.tamper import empty_zip, tamper


class Simulator:
    """The simulated Amplitude project. ``start()`` serves it from background threads."""

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
        self.errors: list[str] = []  # tracebacks of unexpected server errors (should stay empty)
        self._port = port
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._always: list[Fault] = []
        self._log: list[RequestRecord] = []
        folder = None if cache_dir is None else Path(cache_dir)
        self._archives = ArchiveCache(lambda: self.config, folder)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._api = Api(self)
        self._storage = Storage(self, self._api.cohorts.open)

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
            self._storage.start()
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
        self._storage.stop()
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

    @property
    def storage_url(self) -> str:
        """The storage host's base URL (another port; cohort files are redirected there)."""
        return self._storage.url

    # -- faults and the request log ---------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each export request consumes the next one."""
        with self._lock:
            self._faults.extend(faults)

    def inject_always(self, *faults: Fault) -> None:
        """Faults kept for every export request, never consumed: archive and member faults
        change every archive holding their hour (any archive, without one); the first fault
        about the way there (``HTTP_KINDS``) answers every request that consumed no queued
        fault. ``clear_faults`` ends them."""
        with self._lock:
            self._always.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._always.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    @property
    def persistent_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._always)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far (both hosts), oldest first."""
        with self._lock:
            return list(self._log)

    def _log_request(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def peak_in_flight(self, group: str) -> int:
        """The most requests (taxonomy: cost) ever in flight at once in a limit group: "rest",
        "cohort", "dashboard" or "taxonomy" (see ``limits``)."""
        return max((r.in_flight.get(group, 0) for r in self.requests), default=0)

    def throttled(self) -> list[RequestRecord]:
        """The requests refused with 429 by the rate limits (not by injected faults)."""
        return [r for r in self.requests if r.limit is not None]

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
        """The NDJSON lines served for that upload hour, in served order (with the merged
        users' ids of that time)."""
        c = self.config
        plan = plan_for(c)
        switches = None if plan is None else plan.switches
        count = c.hour_count(hour)
        return generator.hour_lines(c.project_id, hour, count, c.seed, c.profile, switches=switches)

    # -- merged users (``merges``) -----------------------------------------------------------

    def merge_plan(self) -> MergePlan | None:
        """Every merge of the project (None with ``merge_share`` 0)."""
        return plan_for(self.config)

    def merges(self) -> list[dict[str, int]]:
        """The merge rows (``scope``, ``merge_time``, ``merge_server_time``, ``amplitude_id``,
        ``merged_amplitude_id``), by ``merge_server_time``; empty without merges."""
        plan = plan_for(self.config)
        return [] if plan is None else plan.rows()

    def canonical_id(self, amplitude_id: int) -> int:
        """The original id of the user ``amplitude_id`` belongs to (chains followed)."""
        plan = plan_for(self.config)
        return amplitude_id if plan is None else plan.canonical_id(amplitude_id)

    def canonical_ids(self) -> dict[int, int]:
        """Every merged id (anonymous ones and originals) -> its original id."""
        plan = plan_for(self.config)
        return {} if plan is None else dict(plan.canonical)

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
        result = self._archives.get(generator.utc_hour(start), generator.utc_hour(end))
        if result == TOO_LARGE:
            raise ArchiveTooLarge(f"more than {self.config.size_cap_bytes} bytes")
        assert result is None or isinstance(result, Archive)
        return result

    def clear_cache(self) -> None:
        """Forget the built archives, deleting them unless they live in ``cache_dir``."""
        self._archives.clear()

    # -- cohorts and counts (what the other endpoints serve) ---------------------------------

    def last_computed(self, cohort_id: str) -> int:
        """The cohort's ``lastComputed`` (epoch seconds) as ``/api/3/cohorts`` lists it now."""
        return self._api.cohorts.last_computed(cohort_id)

    def recompute_cohort(self, cohort_id: str, at: int | None = None) -> int:
        """Recompute a cohort: ``lastComputed`` becomes ``at`` (default: now, and later than
        before) and its membership changes (same size). Returns the new ``lastComputed``."""
        return self._api.cohorts.recompute(cohort_id, at)

    def cohort_csv(self, cohort_id: str, props: tuple[str, ...] = ()) -> Iterator[bytes]:
        """The lines (header first, not compressed) a download of the cohort's current
        membership holds, with ``props`` as requested with ``propKeys``."""
        return self._api.cohorts.rows(cohort_id, tuple(props))

    def daily_counts(self) -> DailyCounts:
        """What ``/api/2/users`` and ``/api/2/events/segmentation`` answer (see ``counts``)."""
        return self._api.dashboard.counts()

    # -- HTTP --------------------------------------------------------------------------------

    def _record_error(self) -> None:
        with self._lock:
            self.errors.append(traceback.format_exc())

    def _handle(self, handler: Handler) -> None:
        url = urlsplit(handler.path)
        query = parse_qs(url.query, keep_blank_values=True)
        params = {k: v[-1] for k, v in query.items()}
        record = RequestRecord(handler.command, url.path, params, time.monotonic())
        routed = None if url.path == EXPORT_PATH else self._api.route(url.path)
        fault = None
        always: list[Fault] = []
        with self._lock:
            self._log.append(record)
            if url.path == EXPORT_PATH:
                if self._faults:
                    fault = self._faults.popleft()
                always = list(self._always)
        faults = self._applicable(fault, always, params)
        record.fault = ",".join(f.kind for f in faults) or None
        way = next((f for f in faults if f.kind in HTTP_KINDS), None)
        kinds = {f.kind for f in faults}
        try:
            if routed is not None:
                self._api.serve(handler, record, routed, query)
                return
            if way is not None and way.kind == "drop":
                handler.close_connection = True
                return
            if way is not None and way.kind == "hang":
                self._hold(handler, None)
                handler.close_connection = True
                return
            if way is not None and way.kind == "slow" and self._stopping.wait(way.seconds or 0):
                handler.close_connection = True
                return
            if way is not None and way.kind == "status":
                assert way.code is not None and way.body is not None
                headers = {} if way.retry_after is None else {"Retry-After": str(way.retry_after)}
                response = Response(way.code, way.body, headers=headers)
            elif way is not None and way.kind == "html":
                assert way.code is not None and way.body is not None
                response = Response(way.code, way.body, content_type="text/html; charset=utf-8")
            elif url.path != EXPORT_PATH:
                response = text(404, "Not Found")
            elif handler.command not in ("GET", "HEAD"):
                response = text(405, "Method Not Allowed", Allow="GET")
            else:
                response = self._export(handler.headers.get("Authorization"), params)
            if way is not None and way.kind == "corrupt":
                assert way.body is not None
                response = Response(200, way.body, content_type="application/zip")
            if "empty_archive" in kinds and response.status in (200, 404):
                folder = str(self.config.project_id) if self.config.project_folder else None
                response = Response(200, empty_zip(folder), content_type="application/zip")
            changes = [f for f in faults if f.kind in ARCHIVE_KINDS]
            if changes and response.status == 200 and response.file is not None:
                body = tamper(response.file.read_bytes(), changes)
                response = Response(
                    200, body, content_type=response.content_type, headers=response.headers
                )
            if "gzip_encoded" in kinds:
                response = _gzip_encoded(response)
            cut = way is not None and way.kind in ("truncate", "reset", "stall")
            handler.send(record, response, way.fraction if cut and way is not None else None)
            if way is not None and way.kind == "reset":
                self._reset(handler)
            elif way is not None and way.kind == "stall":
                self._hold(handler, way.seconds)
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
        finally:
            if record.end is None:
                record.end = time.monotonic()

    @staticmethod
    def _applicable(
        fault: Fault | None, always: list[Fault], params: dict[str, str]
    ) -> list[Fault]:
        """The faults this request meets: its queued one, then the persistent ones that fit
        (their hour in the window; a way-there fault only if the queued one is not one)."""
        window = parse_window(params)
        start, end = window if isinstance(window, tuple) else (None, None)
        chosen = [] if fault is None else [fault]
        taken = fault is not None and fault.kind in HTTP_KINDS
        for kept in always:
            if kept.kind in HTTP_KINDS:
                if not taken:
                    chosen.append(kept)
                    taken = True
            elif kept.hour is None or (
                start is not None and end is not None and kept.covers(start, end)
            ):
                chosen.append(kept)
        return chosen

    def _hold(self, handler: Handler, seconds: float | None) -> None:
        """Keep the connection open and silent until the client hangs up, ``seconds`` pass
        (None: no limit) or the simulator stops, so a hung answer never holds up ``stop()``."""
        deadline = None if seconds is None else time.monotonic() + seconds
        sock = handler.connection
        while not self._stopping.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            try:
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    return  # the client closed its end
            except (OSError, ValueError):  # reset, or closed by stop()
                return
            if readable:
                self._stopping.wait(0.05)  # the client sent more: ignore it

    def _reset(self, handler: Handler) -> None:
        """End the connection with a TCP reset rather than a close, once the client has had a
        moment to read what was sent."""
        self._stopping.wait(0.2)
        sock = handler.connection
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.rfile.close()  # its reference would keep the socket open
            sock.close()  # the handler's writer writes nothing more: it flushes as a no-op

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
        result = self._archives.get(start, end)
        if result is None:
            return text(404, MSG_NO_DATA)
        if result == TOO_LARGE:
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


def _gzip_encoded(response: Response) -> Response:
    """``response`` with its body gzip-compressed and ``Content-Encoding: gzip``."""
    body = response.file.read_bytes() if response.file is not None else response.body
    headers = dict(response.headers, **{"Content-Encoding": "gzip"})
    return Response(
        response.status,
        gzip.compress(body, compresslevel=1, mtime=0),
        content_type=response.content_type,
        headers=headers,
    )
