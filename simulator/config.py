"""The simulator's configuration: which project, which credentials, how much data, which limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from simulator.annotations import DEFAULT_ANNOTATION_CATEGORIES, Annotation, AnnotationCategory
from simulator.cohort_defs import DEFAULT_COHORTS, Cohort
from simulator.generator import HourProfile, hour_index, utc_hour
from simulator.limits import RateLimits


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulated Amplitude project holds and how its APIs behave.

    Export: ``hour_counts`` overrides the profile's event count for the given UTC hours (a naive
    datetime is taken as UTC). ``events_per_member`` splits busy hours into several gzip members,
    numbered from ``first_member_number``. A zip bigger than ``size_cap_bytes`` gets Amplitude's
    400, and a window spanning more than ``max_hours_before_504`` hours gets its 504.

    Span: ``first_hour``..``last_hour`` (UTC upload hours, both included, both or neither) are the
    only hours that hold events; outside them the export serves nothing. None means unbounded
    (as before), and then the Dashboard endpoints, whose counts need every event of the project,
    answer 400 saying so. ``timezone`` is the project's zone, in which the Dashboard REST API
    dates its counts.

    Dashboard and taxonomy: ``inactive_event_types`` are marked inactive (they do not make a user
    active, but do make one new); ``hidden_event_types`` are left out of ``events/list`` and the
    taxonomy's event list. ``taxonomy_enabled=False`` answers the taxonomy API with 403, as for a
    project without the Enterprise plan. ``api_latency_seconds`` is how long every Dashboard,
    cohort and taxonomy request takes (holding its concurrency slot), so tests can overlap them.

    Cohorts: ``cohorts`` lists them. A download job answers ``JOB INPROGRESS`` to the first
    ``cohort_polls_before_complete`` status polls, then ``JOB COMPLETED`` (never, with
    ``cohort_jobs_never_complete``); a request id works for ``cohort_request_ttl_seconds``.
    Cohorts of at most ``cohort_inline_max_members`` (0: none) come in the ``/file`` body;
    the others get a 302 to the storage host, whose links expire ``storage_link_ttl_seconds``
    after issue (0 or less: already expired) and, with ``storage_link_single_use``, after their
    first download. ``cohort_content_encoding`` sends the gzip with ``Content-Encoding: gzip``
    (else as plain ``application/gzip`` bytes, which clients must recognise by the magic number).

    Merges (``merges``): ``merge_share`` of the users (0: none, and every line is as before)
    start anonymous and are merged into their original id inside the span, which must then be
    bounded; the rows' ``scope`` is ``-org_id``. The Dashboard counts count canonical users.

    Annotations (``annotations``): ``annotation_categories`` and ``annotations`` (None: a few
    generated inside the span).

    A test may replace ``sim.config`` while the simulator runs: what is read per request (auth,
    modes, polls, link expiry, latency, the taxonomy switch) follows; ``limits`` and ``cohorts``
    stay as built, and the Dashboard counts as first computed.
    """

    project_id: int = 636686
    api_key: str = "sim-api-key"
    secret_key: str = "sim-secret-key"
    seed: int = 0
    profile: HourProfile = field(default_factory=HourProfile)
    hour_counts: Mapping[datetime, int] = field(default_factory=dict)
    events_per_member: int = 20_000
    first_member_number: int = 0
    project_folder: bool = True
    size_cap_bytes: int = 4 * 1024**3
    max_hours_before_504: int | None = None
    gzip_level: int = 1  # 1 is fastest; real exports compress harder, readers must not care
    workers: int | None = None  # processes that build big archives (None: one per CPU)
    parallel_min_events: int = 100_000  # smaller archives are built in the serving thread
    # the project's span and zone
    first_hour: datetime | None = None
    last_hour: datetime | None = None
    timezone: str = "UTC"
    # Dashboard REST, taxonomy and limits
    inactive_event_types: frozenset[str] = frozenset()
    hidden_event_types: frozenset[str] = frozenset()
    taxonomy_enabled: bool = True
    limits: RateLimits = field(default_factory=RateLimits)
    api_latency_seconds: float = 0.0
    # cohorts and the storage host
    cohorts: tuple[Cohort, ...] = DEFAULT_COHORTS
    cohort_polls_before_complete: int = 2
    cohort_jobs_never_complete: bool = False
    cohort_request_ttl_seconds: float = 7 * 86_400.0
    cohort_inline_max_members: int = 0
    cohort_content_encoding: bool = True
    storage_link_ttl_seconds: float = 60.0
    storage_link_single_use: bool = False
    # merged users (Amplitude's identity merges) and the organization they are scoped to
    merge_share: float = 0.0
    org_id: int = 100_438
    # chart annotations (Dashboard REST v3)
    annotation_categories: tuple[AnnotationCategory, ...] = DEFAULT_ANNOTATION_CATEGORIES
    annotations: tuple[Annotation, ...] | None = None

    def __post_init__(self) -> None:
        if self.events_per_member < 1:
            raise ValueError("events_per_member must be at least 1")
        counts = {hour_index(hour): int(n) for hour, n in self.hour_counts.items()}
        object.__setattr__(self, "_counts_by_index", counts)
        if (self.first_hour is None) != (self.last_hour is None):
            raise ValueError("set both first_hour and last_hour, or neither")
        span = None
        if self.first_hour is not None and self.last_hour is not None:
            span = (hour_index(self.first_hour), hour_index(self.last_hour))
            if span[0] > span[1]:
                raise ValueError("first_hour must not be after last_hour")
        object.__setattr__(self, "_span_index", span)
        ZoneInfo(self.timezone)  # fails early on a zone that does not exist
        if not 0.0 <= self.merge_share <= 1.0:
            raise ValueError("merge_share must be between 0 and 1")
        if self.merge_share and span is None:
            raise ValueError("merges happen inside the span: set first_hour and last_hour")
        ids = [c.id for c in self.cohorts]
        if len(set(ids)) != len(ids):
            raise ValueError("cohort ids must be unique")

    @property
    def span(self) -> tuple[datetime, datetime] | None:
        """(first, last) UTC upload hours holding events, or None when unbounded."""
        if self.first_hour is None or self.last_hour is None:
            return None
        return utc_hour(self.first_hour), utc_hour(self.last_hour)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def hour_count(self, hour: datetime) -> int:
        """How many events were uploaded in the UTC hour ``hour`` falls in."""
        index = hour_index(hour)
        span: tuple[int, int] | None = self._span_index  # type: ignore[attr-defined]
        if span is not None and not span[0] <= index <= span[1]:
            return 0
        counts: dict[int, int] = self._counts_by_index  # type: ignore[attr-defined]
        n = counts.get(index)
        return self.profile.count(hour) if n is None else n

    def cohort(self, cohort_id: str) -> Cohort | None:
        return next((c for c in self.cohorts if c.id == cohort_id), None)
