"""Amplitude's own daily numbers, counted in plain Python over exactly the events the export
serves (every line of every upload hour in the configured span), never with SQL shared with
the dbt models they will be reconciled against.

Definitions (Amplitude's "Helpful definitions": an active user logged at least one event in the
interval, events marked inactive excepted; a new user is counted when they log their first event
ever, inactive events included; the Dashboard REST API dates everything in the project's zone):

- a day ``D`` is a calendar date in the project's ``timezone`` (zoneinfo, DST included): an event
  is on ``D`` when its ``event_time`` (UTC in the export) converted to that zone falls on ``D``;
- **users** are canonical: with merges (``SimulatorConfig.merge_share``), an ``amplitude_id``
  counts as the original id it was merged into (chains followed), so a merged user counts once
  a day, as Amplitude counts them;
- **active users** on ``D``: distinct ``amplitude_id`` with at least one event on ``D`` whose
  ``event_type`` is not in ``inactive_event_types`` (by default no type is inactive, so: with any
  event on ``D``);
- **new users** on ``D``: distinct (canonical) users whose earliest ``event_time`` over the whole
  span (any event type, inactive ones included) is on ``D``;
- **totals** on ``D`` (``events/segmentation``, ``m=totals``, ``_all``): the number of events on
  ``D``; for one event type, those of that type; ``_active``: those not of an inactive type;
- **uniques** (``m=uniques``): distinct ``amplitude_id`` with such an event on ``D``.

Every served line counts, ``$identify`` included (the simulator's export carries it as an
ordinary event). Upload hours outside the span hold no events, so events that happened in the
span but would be uploaded after it do not exist. Counts are computed once per simulator, on
the first Dashboard request, and cached.

Speed: three top-level fields are read by position from the line's text (each key occurs once
in a generated line, checked; any other line is parsed with ``json.loads``), and the UTC minute
of ``event_time`` maps to its local date through a cache (every zone's offset is a whole number
of minutes since 1972).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from json.decoder import scanstring
from typing import Any
from zoneinfo import ZoneInfo

from simulator import generator
from simulator.archive import hours
from simulator.merges import plan_for

_AID, _TIME, _TYPE = '"amplitude_id": ', '"event_time": "', '"event_type": "'


def line_fields(line: bytes) -> tuple[int, str, str]:
    """(amplitude_id, event_time, event_type) of one export line."""
    text = line.decode()
    if text.count(_AID) == 1 and text.count(_TIME) == 1 and text.count(_TYPE) == 1:
        a = text.index(_AID) + len(_AID)
        t = text.index(_TIME) + len(_TIME)
        e = text.index(_TYPE) + len(_TYPE)
        amplitude_id = int(text[a : text.index(",", a)])
        event_time = text[t : text.index('"', t)]
        event_type, _ = scanstring(text, e)
        return amplitude_id, event_time, event_type
    event = json.loads(text)
    return event["amplitude_id"], event["event_time"], event["event_type"]


class DailyCounts:
    """The counts per local day; days without events count 0."""

    def __init__(self, inactive: frozenset[str] = frozenset()) -> None:
        self._inactive = inactive
        self.totals: dict[date, int] = defaultdict(int)
        self.type_totals: dict[tuple[date, str], int] = defaultdict(int)
        self.active_users: dict[date, set[int]] = defaultdict(set)
        self.any_users: dict[date, set[int]] = defaultdict(set)
        self.type_users: dict[tuple[date, str], set[int]] = defaultdict(set)
        self.new_users: dict[date, int] = defaultdict(int)
        self.event_types: set[str] = set()
        self.events = 0

    def active(self, day: date) -> int:
        return len(self.active_users.get(day, ()))

    def new(self, day: date) -> int:
        return self.new_users.get(day, 0)

    def total(self, day: date, event_type: str = "_all") -> int:
        if event_type == "_all":
            return self.totals.get(day, 0)
        if event_type == "_active":
            return self.totals.get(day, 0) - sum(
                self.type_totals.get((day, t), 0) for t in self._inactive
            )
        return self.type_totals.get((day, event_type), 0)

    def users(self, day: date, event_type: str = "_all") -> set[int]:
        if event_type == "_all":
            return self.any_users.get(day, set())
        if event_type == "_active":
            return self.active_users.get(day, set())
        return self.type_users.get((day, event_type), set())


def compute(config: Any) -> DailyCounts:
    """Count every event of every upload hour of ``config.span``."""
    span = config.span
    if span is None:
        raise ValueError("the project has no span (SimulatorConfig.first_hour/last_hour)")
    zone: ZoneInfo = config.zone
    inactive: frozenset[str] = frozenset(config.inactive_event_types)
    out = DailyCounts(inactive)
    minutes: dict[str, tuple[int, date]] = {}  # "YYYY-MM-DD HH:MM" -> (epoch µs, local date)
    first: dict[int, tuple[int, date]] = {}
    interned: dict[int, int] = {}
    plan = plan_for(config)
    switches = None if plan is None else plan.switches
    canonical = {} if plan is None else plan.canonical
    for hour in hours(*span):
        count = config.hour_count(hour)
        if not count:
            continue
        lines = generator.hour_lines(
            config.project_id, hour, count, config.seed, config.profile, switches=switches
        )
        for line in lines:
            amplitude_id, event_time, event_type = line_fields(line)
            amplitude_id = canonical.get(amplitude_id, amplitude_id)
            amplitude_id = interned.setdefault(amplitude_id, amplitude_id)
            key = event_time[:16]
            minute = minutes.get(key)
            if minute is None:
                utc = datetime.strptime(key, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
                minute = (int(utc.timestamp()) * 1_000_000, utc.astimezone(zone).date())
                minutes[key] = minute
            micros = minute[0] + int(event_time[17:19]) * 1_000_000
            if len(event_time) > 19:
                micros += int(event_time[20:].ljust(6, "0"))
            day = minute[1]
            out.events += 1
            out.totals[day] += 1
            out.type_totals[(day, event_type)] += 1
            out.event_types.add(event_type)
            out.any_users[day].add(amplitude_id)
            out.type_users[(day, event_type)].add(amplitude_id)
            if event_type not in inactive:
                out.active_users[day].add(amplitude_id)
            seen = first.get(amplitude_id)
            if seen is None or micros < seen[0]:
                first[amplitude_id] = (micros, day)
    for _, day in first.values():
        out.new_users[day] += 1
    return out


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=k) for k in range((end - start).days + 1)]
