"""A cohort's members, as the gzip-encoded quoted CSV Amplitude's cohort download serves.

Format (shared/reference 4.1, from a client "confirmed against the live API"): a header row
``"amplitude_id","user_id"`` then one column per requested property, every field quoted
(``""`` inside), one member per row, ``\\n`` line ends, gzip-compressed. A member without a
user id, or without the property, has an empty field; objects and lists are JSON text.

Members come deterministically from the generator's users, so their ``amplitude_id``,
``user_id`` and properties are exactly those of the exported events. A cohort of up to
``generator.USERS`` members is a subset chosen by a hash of (cohort, generation): a recompute
picks another subset of the same size. A bigger one (Amplitude allows 2,000,000) holds every
generated user and then synthetic users numbered ``USERS...``, who have no events: their
13-digit ids are a bijection of their number that avoids the generated users' ids, and their
properties are drawn by a hash. Rows are produced lazily and gzipped in chunks of about
``CHUNK`` bytes, so a file of any size streams in bounded memory.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from simulator import generator
from simulator.generator import USERS

CHUNK = 256 * 1024
# the built-in user properties (the Dashboard's names), and where a user's fields hold them
BUILTIN = {
    "amplitude_id": "amplitude_id",
    "user_id": "user_id",
    "device_id": "device_id",
    "country": "country",
    "city": "city",
    "region": "region",
    "dma": "dma",
    "language": "language",
    "platform": "platform",
    "os": "os",
    "device": "device_family",
    "device_type": "device_type",
    "carrier": "device_carrier",
    "library": "library",
    "version": "version_name",
    "start_version": "start_version",
    "paying": "paying",
}
# custom user properties the generator sets (with Amplitude's gp: prefix)
CUSTOM = ("gp:plan", "gp:ltv", "gp:emoji", "gp:quote", "gp:initial_utm_source", "gp:cohorts",
          "gp:address")  # fmt: skip
ALL_PROPS = tuple(k for k in BUILTIN if k not in ("amplitude_id", "user_id")) + CUSTOM
_KEPT = (*BUILTIN.values(), "user_properties")

_MASK42 = (1 << 42) - 1
_MUL42 = 0x2545F4914F6D & _MASK42 | 1  # odd: multiplying modulo 2**42 is a bijection


@functools.lru_cache(maxsize=8)
def _pool(project_id: int, seed: int) -> dict[int, dict[str, Any]]:
    return {}


def user_fields(project_id: int, seed: int, n: int) -> dict[str, Any]:
    """The user-level fields of generated user ``n`` (the same values their events carry)."""
    pool = _pool(project_id, seed)
    fields = pool.get(n)
    if fields is None:
        users = generator._users(project_id, seed)
        user = users[n]
        if user is None:
            user = users[n] = generator._make_user(project_id, seed, n)
        # The fragments are the event line's text between the per-event values: fill those
        # with placeholders and the result is one JSON object of the user's fields.
        text = b"{%snull, %snull, %s0, %snull, %snull, %snull, %s}" % (
            user.head, user.country, user.device, user.mid, user.region, user.tail, user.version
        )  # fmt: skip
        parsed = json.loads(text)
        os_name, os_version = parsed.get("os_name"), parsed.get("os_version")
        parsed["os"] = f"{os_name} {os_version}" if os_name else None
        fields = {k: parsed.get(k) for k in _KEPT}  # only what rows need: ~1 kB a user
        pool[n] = fields
    return fields


@functools.lru_cache(maxsize=8)
def generated_ids(project_id: int, seed: int) -> frozenset[int]:
    return frozenset(user_fields(project_id, seed, n)["amplitude_id"] for n in range(USERS))


class Synthetic:
    """The users past the generated ones (numbers ``USERS...``), who exist only in cohorts."""

    def __init__(self, project_id: int, seed: int) -> None:
        self.key = generator._stream_seed(project_id, seed, 0xC0407) & _MASK42
        self.salt = generator._stream_seed(project_id, seed, 0x5E7)
        self.taken = generated_ids(project_id, seed)

    def amplitude_id(self, n: int) -> int:
        for k in range(4):  # n < 2**40, so (n + k * 2**40) never repeats an input
            amplitude_id = 1_000_000_000_000 + (((n + (k << 40)) * _MUL42 & _MASK42) ^ self.key)
            if amplitude_id not in self.taken:
                return amplitude_id
        raise AssertionError("no free synthetic amplitude_id")  # pragma: no cover

    def user_id(self, n: int, h: int | None = None) -> str | None:
        h = generator._mix64(self.salt ^ n) if h is None else h
        return None if (h >> 12) % 5 == 0 else f"user_{n}@example.com"

    def fields(self, n: int) -> dict[str, Any]:
        h = generator._mix64(self.salt ^ n)
        city, country, region, dma = generator._CITIES[h % len(generator._CITIES)]
        return {
            "amplitude_id": self.amplitude_id(n),
            "user_id": self.user_id(n, h),
            "device_id": f"dev-{n:07d}-{(h >> 20) & 0xFFFFFFFF:08x}",
            "country": country,
            "city": city,
            "region": region,
            "dma": dma,
            "platform": ("iOS", "Android", "Web", None)[(h >> 8) & 3],
            "language": generator._LANGUAGES[(h >> 16) % len(generator._LANGUAGES)],
            "user_properties": {"plan": generator._PLANS[(h >> 52) & 3], "gp:ltv": (h >> 40) % 900},
        }


def member_numbers(cohort_id: str, generation: int, size: int) -> Sequence[int]:
    """Which users (by generator number) are the members, in file order."""
    if size >= USERS:
        return range(size)
    salt = generator._stream_seed(*cohort_id.encode(), generation)
    ranked = sorted(range(USERS), key=lambda n: generator._mix64(salt ^ n))
    return sorted(ranked[:size])


def _prop(fields: dict[str, Any], key: str) -> Any:
    if key in BUILTIN:
        return fields.get(BUILTIN[key])
    props = fields.get("user_properties") or {}
    if key in props:
        return props[key]
    if key.startswith("gp:"):
        return props.get(key[3:])
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def csv_rows(
    project_id: int, seed: int, numbers: Sequence[int], props: Sequence[str]
) -> Iterator[bytes]:
    """The CSV's lines (header first), one member at a time."""
    yield (",".join(_quote(c) for c in ("amplitude_id", "user_id", *props)) + "\n").encode()
    synthetic: Synthetic | None = None
    for n in numbers:
        if n < USERS:
            fields = user_fields(project_id, seed, n)
        else:
            synthetic = synthetic or Synthetic(project_id, seed)
            if not props:  # the fast path of a big cohort: only the two ids
                user_id = synthetic.user_id(n)
                yield b'"%d","%s"\n' % (synthetic.amplitude_id(n), (user_id or "").encode())
                continue
            fields = synthetic.fields(n)
        values = [str(fields["amplitude_id"]), _text(fields.get("user_id"))]
        values.extend(_text(_prop(fields, key)) for key in props)
        yield (",".join(_quote(v) for v in values) + "\n").encode()


def gzip_chunks(lines: Iterator[bytes], level: int = 1, chunk: int = CHUNK) -> Iterator[bytes]:
    """gzip ``lines`` on the fly, yielding compressed pieces of about ``chunk`` input bytes."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    batch: list[bytes] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= chunk:
            out = compressor.compress(b"".join(batch))
            batch.clear()
            size = 0
            if out:
                yield out
    yield compressor.compress(b"".join(batch)) + compressor.flush()
