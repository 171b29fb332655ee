"""Merged users, as Amplitude merges them (shared/reference: amplitude-storage-export.md).

With ``SimulatorConfig.merge_share`` above 0 (the span must be bounded), a deterministic share of
the generator's users starts out anonymous: their events carry a new ``amplitude_id`` until the
user is merged into their original id at a merge instant inside the span; from then on their
events carry the original id. Only ``amplitude_id`` differs: ``uuid``, ``user_id``, ``device_id``
and every other field are as without merges.

- Choice: user ``n`` is merged when a hash of (project, seed, ``n``) falls under the share.
- Instants: a merge's ``merge_time`` (epoch ms) is uniform in the span; ``merge_server_time`` is
  0.2 to 30 s later, and it is the switch: a line whose ``server_upload_time`` is before it
  carries the id being merged, from it on the id merged into.
- Chains: the first merged user (lowest number) and about one in eight of the others go through
  two anonymous ids (A merged into B, then B into the original C), about one in fifty through
  three, so a reader must follow ``amplitude_id -> merged_amplitude_id`` repeatedly. Each link
  is its own row, written (``storage_export``) in the hour of its ``merge_server_time``.
- Ids: anonymous ids are 13 digits like the others and never equal a generated user's id or one
  another.

A row is ``{"scope": -org_id, "merge_time", "merge_server_time", "amplitude_id",
"merged_amplitude_id"}``: ``amplitude_id`` is the id being merged (the anonymous one),
``merged_amplitude_id`` the one it is merged into (the original, or the next link of a chain).
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simulator import generator
from simulator.generator import USERS, IdSwitches

_HOUR_MS = 3_600_000
_ID_BASE, _ID_RANGE = 1_000_000_000_000, 8_999_999_999_999


@dataclass(frozen=True)
class MergedUser:
    """One merged user: their events carry ``ids[k]`` until ``server_times[k]``, then the next;
    ``ids[-1]`` is their original id."""

    user: int  # the generator's user number
    ids: tuple[int, ...]
    merge_times: tuple[int, ...]  # epoch ms, one per link
    server_times: tuple[int, ...]  # epoch ms, a little after each merge_time

    @property
    def original(self) -> int:
        return self.ids[-1]

    def rows(self, scope: int) -> Iterator[dict[str, int]]:
        for k in range(len(self.ids) - 1):
            yield {
                "scope": scope,
                "merge_time": self.merge_times[k],
                "merge_server_time": self.server_times[k],
                "amplitude_id": self.ids[k],
                "merged_amplitude_id": self.ids[k + 1],
            }


class MergePlan:
    """Every merge of a project: the users, the rows, and each id's canonical (original) id."""

    def __init__(self, users: tuple[MergedUser, ...], org_id: int) -> None:
        self.users = users
        self.org_id = org_id
        rows = [row for user in users for row in user.rows(-org_id)]
        rows.sort(key=lambda r: (r["merge_server_time"], r["amplitude_id"]))
        self._rows = rows
        self.canonical = {aid: user.original for user in users for aid in user.ids}
        self.switches = IdSwitches({u.user: (u.ids, u.server_times) for u in users})

    def rows(self, scope: int | None = None) -> list[dict[str, int]]:
        """The merge rows by ``merge_server_time`` (``scope``: another scope, e.g. a legacy
        organization's app id)."""
        if scope is None:
            return [dict(r) for r in self._rows]
        return [dict(r, scope=scope) for r in self._rows]

    def canonical_id(self, amplitude_id: int) -> int:
        """The original id of the user an id belongs to (any id not merged is its own)."""
        return self.canonical.get(amplitude_id, amplitude_id)

    @property
    def chains(self) -> list[MergedUser]:
        return [u for u in self.users if len(u.ids) > 2]


def original_ids(project_id: int, seed: int) -> frozenset[int]:
    """Every generated user's own amplitude_id (builds every user once: about half a second)."""
    users = generator._users(project_id, seed)
    out = set()
    for n in range(USERS):
        user = users[n]
        if user is None:
            user = users[n] = generator._make_user(project_id, seed, n)
        out.add(_head_id(user.head))
    return frozenset(out)


def _head_id(head: bytes) -> int:
    return int(head[len(b'"amplitude_id": ') : head.index(b",")])


@functools.lru_cache(maxsize=16)
def _plan(
    project_id: int, seed: int, share: float, org_id: int, first_ms: int, end_ms: int
) -> MergePlan:
    taken = set(original_ids(project_id, seed))
    users = generator._users(project_id, seed)
    merged: list[MergedUser] = []
    for n in range(USERS):
        h = generator._stream_seed(project_id, seed, n, 0x3E26E)
        if (h >> 11) / float(1 << 53) >= share:
            continue
        rng = random.Random(h)
        r = rng.random()
        links = 3 if r < 0.02 else 2 if r < 0.125 or not merged else 1
        instants = sorted(rng.sample(range(first_ms + 60_000, end_ms - 60_000), links))
        delays = [200 + rng.randrange(29_800) for _ in instants]
        anonymous: list[int] = []
        while len(anonymous) < links:
            candidate = _ID_BASE + rng.randrange(_ID_RANGE)
            if candidate not in taken:
                taken.add(candidate)
                anonymous.append(candidate)
        user = users[n]
        assert user is not None  # built by original_ids
        merged.append(
            MergedUser(
                user=n,
                ids=(*anonymous, _head_id(user.head)),
                merge_times=tuple(instants),
                server_times=tuple(itertools.accumulate(
                    (t + d for t, d in zip(instants, delays, strict=True)), max)),
            )
        )
    return MergePlan(tuple(merged), org_id)


def plan_for(config: Any) -> MergePlan | None:
    """The merges of ``config`` (a ``SimulatorConfig``), or None with ``merge_share`` 0."""
    if not config.merge_share:
        return None
    span = config.span
    assert span is not None  # the config checks it
    first_ms = int(span[0].timestamp()) * 1000
    end_ms = int(span[1].timestamp()) * 1000 + _HOUR_MS
    return _plan(
        config.project_id, config.seed, config.merge_share, config.org_id, first_ms, end_ms
    )


def switches_for(config: Any) -> IdSwitches | None:
    plan = plan_for(config)
    return None if plan is None else plan.switches


def ms_to_hour(ms: int) -> datetime:
    """The UTC hour an epoch-ms instant falls in."""
    return datetime.fromtimestamp(ms // _HOUR_MS * 3600, UTC)
