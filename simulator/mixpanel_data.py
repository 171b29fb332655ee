"""What the simulated Mixpanel project holds: deterministic events, and the truth about them.

Every event is generated as a true UTC instant, then served as Mixpanel serves it: ``time`` in
the project's zone (the wall clock written as seconds since 1970, as if it were UTC) for a
project that stores local time, or the instant itself for one that stores UTC. The generator
keeps the truth (``Served.utc``), so tests compare what a loader made of ``time`` with the
instant the event really happened, never with a second reading of the same rule.

On a day the zone changes its clocks, events fall in both passes of the repeated hour (with
``mp_processing_time_ms`` shortly after each), and in the hour after a spring-forward gap. Some
events are duplicates (same event, distinct_id, ``$insert_id`` and ``time``, processed later,
with one property changed), some arrive late (served only once ``late_arrived``), and with
``gap_readings`` a few are served with the offset from before a spring-forward gap (a reading
that does not exist on the wall clock; their truth is that reading minus the old offset).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EVENTS = ("Page Viewed", "Signed Up", "Song Played", "Added to Cart", "Purchase", "Searched")
BROWSERS = ("Chrome", "Firefox", "Safari", "Edge")
OSES = ("Windows", "Mac OS X", "Linux", "iOS", "Android")
CITIES = (
    ("San Francisco", "California", "US"),
    ("Berlin", "Berlin", "DE"),
    ("São Paulo", "São Paulo", "BR"),
    ("Mumbai", "Maharashtra", "IN"),
)


@dataclass(frozen=True)
class MixpanelConfig:
    """The simulated project. A test may replace ``sim.config`` while it runs (late data)."""

    project_id: int = 3141592
    username: str = "sim-sa.4f2c1e.mp-service-account"
    secret: str = "sim-sa-secret-9d8c7b"
    api_secret: str = "sim-project-secret-51ab"
    timezone: str = "America/Los_Angeles"
    timestamps: str = "local"  # or "utc": how the project stores `time`
    seed: int = 0
    events_per_day: int = 120
    day_counts: Mapping[date, int] = field(default_factory=dict)
    first_day: date | None = None  # days outside [first_day, last_day] hold no events
    last_day: date | None = None
    duplicate_every: int = 17  # every n-th event is served twice (0: never)
    late_every: int = 23  # every n-th event is late: processed 2 days on (0: never)
    late_arrived: bool = False  # whether the late events have reached the raw store yet
    gap_readings: int = 0  # events served with the pre-gap offset on a spring-forward day
    # limits: 60 per hour, 3 per second, 100 at once (tests scale them down)
    per_hour: int = 60
    per_second: int = 3
    concurrent: int = 100
    hour_seconds: float = 3600.0
    limits_enabled: bool = True
    retry_after_header: bool = True  # whether a 429 says Retry-After (Mixpanel's may not)
    gzip_level: int = 1

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)
        if self.timestamps not in ("local", "utc"):
            raise ValueError("timestamps must be 'local' or 'utc'")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def day_zone(self) -> ZoneInfo:
        """The zone of from_date/to_date: the project's for local time, else UTC."""
        return self.zone if self.timestamps == "local" else ZoneInfo("UTC")

    def count(self, day: date) -> int:
        if self.first_day is not None and day < self.first_day:
            return 0
        if self.last_day is not None and day > self.last_day:
            return 0
        return self.day_counts.get(day, self.events_per_day)


@dataclass(frozen=True)
class Served:
    """One line of an export, with the truth behind it."""

    event: str
    distinct_id: str
    insert_id: str
    utc: datetime  # the true instant, to the millisecond
    processing_ms: int
    properties: dict[str, object]  # as served, without time/mp_processing_time_ms
    kind: str  # "event", "duplicate", "late", "repeated_hour", "repeated_hour_late", "gap"
    local_wall: datetime | None = None  # for "gap": the reading served, else None

    def time_value(self, config: MixpanelConfig, *, ms: bool) -> int:
        """``properties.time`` as served (seconds, or milliseconds with time_in_ms)."""
        if config.timestamps == "utc":
            shown = self.utc
        elif self.local_wall is not None:
            shown = self.local_wall.replace(tzinfo=UTC)
        else:
            shown = self.utc.astimezone(config.zone).replace(tzinfo=UTC)
        millis = (shown - EPOCH) // timedelta(milliseconds=1)
        return millis if ms else millis // 1000

    def expected_utc(self, *, ms: bool) -> datetime:
        """The instant a loader should store: the truth, at the precision served."""
        if ms:
            return self.utc
        return self.utc.replace(microsecond=0)

    def line(self, config: MixpanelConfig, *, ms: bool) -> bytes:
        properties = {
            "time": self.time_value(config, ms=ms),
            "distinct_id": self.distinct_id,
            "$insert_id": self.insert_id,
            "mp_processing_time_ms": self.processing_ms,
            **self.properties,
        }
        return json.dumps(
            {"event": self.event, "properties": properties},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """A day's [start, end) in UTC (23 to 25 hours)."""

    def start(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=zone).astimezone(UTC)

    return start(day), start(day + timedelta(days=1))


def _ms(at: datetime) -> int:
    return (at - EPOCH) // timedelta(milliseconds=1)


def _properties(rng: random.Random, user: int) -> dict[str, object]:
    city, region, country = rng.choice(CITIES)
    props: dict[str, object] = {
        "$browser": rng.choice(BROWSERS),
        "$browser_version": rng.randint(100, 130),
        "$os": rng.choice(OSES),
        "$device_id": f"dev-{user:05d}",
        "$city": city,
        "$region": region,
        "mp_country_code": country,
        "$current_url": f"https://example.com/p/{rng.randint(1, 50)}",
        "$screen_height": rng.choice((768, 900, 1080)),
        "$screen_width": 1920,
        "mp_lib": "web",
        "$lib_version": "2.55.1",
        "plan": rng.choice(("free", "pro")),
        "cart": {"items": rng.randint(0, 5), "tags": ["a", "b"]},
    }
    if user % 3 == 0:
        props["$user_id"] = f"user-{user}"
    if user % 11 == 0:
        props["$screen_height"] = "unknown"  # a type analysts' columns cannot hold
    return props


def day_events(config: MixpanelConfig, day: date) -> list[Served]:
    """Every event of a day, late ones included, in served order (by ``time``)."""
    n = config.count(day)
    if n == 0:
        return []
    start, end = day_bounds(day, config.day_zone)
    seed = hashlib.sha256(f"{config.seed}:{day}".encode()).digest()
    rng = random.Random(seed)
    span_ms = _ms(end) - _ms(start)
    served: list[Served] = []
    for i in range(n):
        at = start + timedelta(milliseconds=(span_ms * i) // n + rng.randrange(span_ms // n))
        user = rng.randrange(500)
        late = config.late_every and i % config.late_every == config.late_every - 1
        delay = 2 * 86_400_000 if late else rng.randint(200, 90_000)
        insert_id = hashlib.sha1(f"{config.seed}:{day}:{i}".encode()).hexdigest()[:24]
        event = Served(
            rng.choice(EVENTS),
            f"u{user}",
            insert_id,
            at,
            _ms(at) + delay,
            _properties(rng, user),
            "late" if late else "event",
        )
        served.append(event)
        if not late and config.duplicate_every and i % config.duplicate_every == 3:
            changed = dict(event.properties, **{"$lib_version": "2.55.2"})
            served.append(
                Served(
                    event.event,
                    event.distinct_id,
                    insert_id,
                    at,
                    event.processing_ms + 1_800_000,
                    changed,
                    "duplicate",
                )
            )
    served.extend(_dst_events(config, day, rng))
    served.sort(key=lambda s: (s.time_value(config, ms=True), s.processing_ms))
    return served


def _dst_events(config: MixpanelConfig, day: date, rng: random.Random) -> Iterator[Served]:
    """The cases a DST change makes: both passes of a repeated hour, and readings in a gap."""
    if config.timestamps != "local" or config.count(day) == 0:
        return
    zone = config.zone
    start, end = day_bounds(day, zone)
    before, after = start.astimezone(zone).utcoffset(), end.astimezone(zone).utcoffset()
    if before is None or after is None or before == after:
        return
    probe = start  # find the transition to the hour
    while probe.astimezone(zone).utcoffset() == before:
        probe += timedelta(hours=1)
    change = probe.replace(minute=0, second=0, microsecond=0)
    if after < before:  # clocks go back: the hour before `change` repeats after it
        jump = before - after
        for n, (minutes, delay, kind) in enumerate(
            ((30, 60_000, "repeated_hour"), (45, 3 * 3_600_000, "repeated_hour_late"))
        ):
            first = change - jump + timedelta(minutes=minutes, milliseconds=n * 7)
            second = first + jump
            for at, wait, k in ((first, delay, kind), (second, 90_000, "repeated_hour")):
                yield Served(
                    "Song Played",
                    f"dst{n}",
                    f"dst-{day}-{n}-{_ms(at)}",
                    at,
                    _ms(at) + wait,
                    _properties(rng, 1),
                    k,
                )
    else:
        for n in range(config.gap_readings):
            wall = change.astimezone(zone).replace(tzinfo=None)
            wall = wall - (after - before) + timedelta(minutes=10 + 7 * n)  # inside the gap
            true = wall.replace(tzinfo=UTC) - before
            yield Served(
                "Searched",
                f"gap{n}",
                f"gap-{day}-{n}",
                true,
                _ms(true) + 5_000,
                _properties(rng, 2),
                "gap",
                local_wall=wall,
            )


def served(
    config: MixpanelConfig, first: date, last: date, events: frozenset[str] | None = None
) -> list[Served]:
    """What an export of ``first..last`` serves now (late events only once they arrived)."""
    out = []
    day = first
    while day <= last:
        out.extend(
            s
            for s in day_events(config, day)
            if (config.late_arrived or s.kind != "late") and (events is None or s.event in events)
        )
        day += timedelta(days=1)
    return out
