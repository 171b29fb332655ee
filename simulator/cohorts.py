"""The Behavioral Cohorts API: the list, and the asynchronous membership download.

``GET /api/3/cohorts`` (``includeSyncInfo=true`` adds ``syncMetadata``) answers
``{"cohorts": [COHORT, ...]}`` (``cohort_defs``). The download (shared/reference 4.1):

1. ``GET /api/5/cohorts/request/{cohort_id}`` (``props=1`` for user properties, ``propKeys``
   repeated to choose them): 202 ``{"request_id", "cohort_id"}``; an unknown cohort is 404.
2. ``GET /api/5/cohorts/request-status/{request_id}``: 202 with ``async_status`` ``JOB
   INPROGRESS`` for the first ``cohort_polls_before_complete`` polls, then 200 ``JOB
   COMPLETED`` (never, with ``cohort_jobs_never_complete``). Unknown or older than
   ``cohort_request_ttl_seconds`` (Amplitude keeps them 7 days): 404.
3. ``GET /api/5/cohorts/request/{request_id}/file``: before completion 400 (the docs are
   silent; a clear refusal beats an empty file); then a 302 to a fresh storage link (every
   call issues a new one, which is how a client recovers from an expired link), or, for cohorts
   of at most ``cohort_inline_max_members`` (0: none), the gzip CSV in the body.

A job snapshots the cohort's membership generation when it is requested, so a recompute while
it runs does not change its file. ``props=1`` without ``propKeys`` gives every user property
(``members.ALL_PROPS``); ``propKeys`` without ``props=1`` are ignored, as "props" switches
properties on.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from simulator import members
from simulator.cohort_defs import Cohort, cohort_json
from simulator.protocol import Response, error_json, json_response
from simulator.storage import file_response

IN_PROGRESS = "JOB INPROGRESS"
COMPLETED = "JOB COMPLETED"


@dataclass
class _State:
    last_computed: int
    generation: int = 0


@dataclass
class _Job:
    request_id: str
    cohort: Cohort
    generation: int
    props: tuple[str, ...]
    created: float  # monotonic
    polls: int = 0


class CohortService:
    """Cohort state (``lastComputed``, membership generation) and download jobs."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self._lock = threading.Lock()
        self._state = {c.id: _State(c.last_computed) for c in sim.config.cohorts}
        self._jobs: dict[str, _Job] = {}
        self._counter = 0

    @property
    def config(self) -> Any:
        """The simulator's config now: polls, expiry and modes may be changed while it runs
        (the cohorts themselves are those it was built with)."""
        return self.sim.config

    # -- state, for Simulator ---------------------------------------------------------------

    def cohort(self, cohort_id: str) -> Cohort:
        cohort = self.config.cohort(cohort_id)
        if cohort is None:
            raise KeyError(f"no cohort {cohort_id!r} in this simulator")
        return cohort

    def last_computed(self, cohort_id: str) -> int:
        self.cohort(cohort_id)
        with self._lock:
            return self._state[cohort_id].last_computed

    def recompute(self, cohort_id: str, at: int | None = None) -> int:
        """Recompute: ``lastComputed`` moves to ``at`` (default: now, and at least one second
        later than before) and the membership changes (same size, another subset)."""
        self.cohort(cohort_id)
        with self._lock:
            state = self._state[cohort_id]
            state.last_computed = (
                max(int(time.time()), state.last_computed + 1) if at is None else int(at)
            )
            state.generation += 1
            return state.last_computed

    def numbers(self, cohort_id: str, generation: int | None = None) -> Any:
        cohort = self.cohort(cohort_id)
        if generation is None:
            with self._lock:
                generation = self._state[cohort_id].generation
        return members.member_numbers(cohort.id, generation, cohort.size)

    def rows(
        self, cohort_id: str, props: tuple[str, ...] = (), generation: int | None = None
    ) -> Iterator[bytes]:
        """The CSV lines (not compressed) of the cohort's current (or given) membership."""
        c = self.config
        return members.csv_rows(c.project_id, c.seed, self.numbers(cohort_id, generation), props)

    # -- endpoints ---------------------------------------------------------------------------

    def list(self, query: dict[str, list[str]]) -> Response:
        sync = _last(query, "includeSyncInfo").lower() == "true"
        with self._lock:
            computed = {k: s.last_computed for k, s in self._state.items()}
        listed = [
            cohort_json(c, self.config.project_id, computed[c.id], sync_info=sync)
            for c in self.config.cohorts
        ]
        return json_response(200, {"cohorts": listed})

    def request(self, cohort_id: str, query: dict[str, list[str]]) -> Response:
        cohort = self.config.cohort(cohort_id)
        if cohort is None:
            return error_json(404, f"Cohort {cohort_id} not found")
        props: tuple[str, ...] = ()
        if _last(query, "props") in ("1", "true"):
            keys = [k for k in query.get("propKeys", []) if k]
            props = tuple(dict.fromkeys(keys)) if keys else members.ALL_PROPS
        with self._lock:
            self._counter += 1
            seed = f"{self.config.project_id}:{cohort_id}:{self._counter}:{time.time_ns()}"
            request_id = hashlib.sha256(seed.encode()).hexdigest()[:32]
            generation = self._state[cohort_id].generation
            self._jobs[request_id] = _Job(request_id, cohort, generation, props, time.monotonic())
        return json_response(202, {"request_id": request_id, "cohort_id": cohort_id})

    def _job(self, request_id: str) -> _Job | None:
        job = self._jobs.get(request_id)
        if job is None or time.monotonic() - job.created > self.config.cohort_request_ttl_seconds:
            return None
        return job

    def _done(self, job: _Job) -> bool:
        if self.config.cohort_jobs_never_complete:
            return False
        return job.polls > self.config.cohort_polls_before_complete or (
            self.config.cohort_polls_before_complete <= 0
        )

    def status(self, request_id: str) -> Response:
        with self._lock:
            job = self._job(request_id)
            if job is None:
                return error_json(404, f"Request {request_id} not found")
            job.polls += 1
            done = self._done(job)
        body = {
            "request_id": request_id,
            "cohort_id": job.cohort.id,
            "async_status": COMPLETED if done else IN_PROGRESS,
        }
        return json_response(200 if done else 202, body)

    def file(self, request_id: str) -> Response:
        with self._lock:
            job = self._job(request_id)
            done = job is not None and self._done(job)
        if job is None:
            return error_json(404, f"Request {request_id} not found")
        if not done:
            return error_json(400, f"The cohort download {request_id} is not completed yet")
        inline = self.config.cohort_inline_max_members
        if inline > 0 and job.cohort.size <= inline:
            opened = self.open(request_id)
            assert opened is not None
            return file_response(*opened, self.config.cohort_content_encoding)
        location = self.sim._storage.link(request_id)
        return Response(302, headers={"Location": location})

    def open(self, request_id: str) -> tuple[str, Iterator[bytes]] | None:
        """The file name and gzip chunks of a job's file (for the storage host)."""
        with self._lock:
            job = self._jobs.get(request_id)
        if job is None:
            return None
        lines = self.rows(job.cohort.id, job.props, job.generation)
        name = f"cohort_{job.cohort.id}_{request_id}.csv"
        return name, members.gzip_chunks(lines, level=self.config.gzip_level)


def _last(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[-1] if values else ""
