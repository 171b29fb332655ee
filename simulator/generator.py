"""Deterministic, realistic Amplitude export events, generated fast.

The shapes follow real export lines (shared/reference, section 1.3): 55 keys in alphabetical order,
timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff`` (about one in fifty without the fraction),
dict-valued properties, ``amplitude_attribution_ids`` as a list of strings or null, ``session_id``
-1 outside sessions (~15 %), 13-digit ``amplitude_id``, unicode and escapes in strings, events
with 150 properties, events that arrive hours or days after they happened, and a top-level field
the schema does not know (``zz_new_field``, ~1 %).

Speed: lines are built as UTF-8 bytes from pre-rendered JSON fragments (per user, per event
type) and one ``bytes %`` template per event, not from dicts and ``json.dumps``. Randomness is
seeded per block of ``BLOCK_EVENTS`` events, so any range of an hour (one gzip member) can be
generated on its own, in another process, and still give exactly the same bytes.

The same (project, hour, seed, profile) always yields the same bytes; ``uuid`` is a bijection of
(project, seed, hour, index), so it is unique per event, never just "probably unique".

Merged users (``IdSwitches``, planned by ``merges``): a few users' events carry other
``amplitude_id`` values until given instants of ``server_upload_time``; nothing else in their lines
changes. Without switches (the default) the bytes are exactly those of before.
"""

from __future__ import annotations

import functools
import json
import random
import zlib
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

GENERATOR_VERSION = 2  # bump whenever the bytes for a given input change
BLOCK_EVENTS = 1_000  # events per independently seeded random stream
USERS = 20_000  # distinct users (devices) per project and seed

_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MASK64 = (1 << 64) - 1
_MASK48 = (1 << 48) - 1


@dataclass(frozen=True)
class HourProfile:
    """How many events an upload hour holds: a daily curve, with some hours empty."""

    base: int = 120
    empty_every: int = 7  # every n-th hour of the epoch has no events (0 disables)
    extra_field_every: int = 97  # every n-th event carries a field the schema does not know

    def count(self, hour: datetime) -> int:
        index = hour_index(hour)
        if self.empty_every and index % self.empty_every == 0:
            return 0
        curve = _CURVE[(index % 24)]
        return max(1, int(self.base * curve) + index % 13)


_CURVE = (1.0, 0.6, 0.4, 0.3, 0.3, 0.4, 0.7, 1.0, 1.3, 1.5, 1.6, 1.7,
          1.8, 1.7, 1.6, 1.6, 1.7, 1.9, 2.0, 1.9, 1.7, 1.5, 1.3, 1.1)  # fmt: skip


def utc_hour(ts: datetime) -> datetime:
    """The UTC hour ``ts`` falls in (a naive datetime is taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


floor_hour = utc_hour  # the first version's name


def hour_index(hour: datetime) -> int:
    """Hours since the epoch of the UTC hour ``hour`` falls in."""
    return int(utc_hour(hour).timestamp()) // 3600


def _mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _stream_seed(*parts: int) -> int:
    h = 0x5EED
    for part in parts:
        h = _mix64(h ^ (part & _MASK64) ^ ((part >> 64) & _MASK64))
    return h


# ---------------------------------------------------------------------------------------------
# Timestamps: milliseconds since the epoch -> b'"YYYY-MM-DD HH:MM:SS.fff000"' (with the quotes).

_MMSS = tuple(b"%02d:%02d" % (m, s) for m in range(60) for s in range(60))
_FRAC = tuple(b'.%03d000"' % ms for ms in range(1000))
_PREFIX: dict[int, bytes] = {}


def _prefix(hour: int) -> bytes:
    p = _PREFIX.get(hour)
    if p is None:
        p = _PREFIX[hour] = (_EPOCH + timedelta(hours=hour)).strftime('"%Y-%m-%d %H:').encode()
    return p


_SECONDS: dict[int, bytes] = {}  # seconds since the epoch -> b'"YYYY-MM-DD HH:MM:SS'


def _second(sec: int) -> bytes:
    if len(_SECONDS) >= 300_000:
        _SECONDS.clear()
    hour, rem = divmod(sec, 3600)
    p = _SECONDS[sec] = _prefix(hour) + _MMSS[rem]
    return p


def _ts(ms: int, whole: bool) -> bytes:
    sec, frac = divmod(ms, 1000)
    p = _SECONDS.get(sec) or _second(sec)
    # a whole second drops the fraction; the value is truncated, so both layouts parse the same
    return p + b'"' if whole else p + _FRAC[frac]


def format_ts(ts: datetime) -> str:
    """Amplitude's layout for one datetime (the fraction is dropped when it is zero)."""
    ts = ts.astimezone(UTC) if ts.tzinfo else ts
    if ts.microsecond == 0:
        return ts.strftime("%Y-%m-%d %H:%M:%S")
    return ts.strftime("%Y-%m-%d %H:%M:%S.%f")


# ---------------------------------------------------------------------------------------------
# Pre-rendered pools (UTF-8 JSON fragments).


def _j(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _jb(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


_EVENT_TYPES = (  # (name, kind, weight)
    ("page_view", "plain", 30),
    ("button_click", "plain", 18),
    ("session_start", "session", 8),
    ("session_end", "session", 8),
    ("search", "search", 8),
    ("add_to_cart", "plain", 6),
    ("purchase", "purchase", 4),
    ("sign_up", "plain", 2),
    ("[Amplitude] Revenue", "revenue", 2),
    ("[Amplitude] Page Viewed", "plain", 6),
    ("Überweisung gesendet", "plain", 2),
    ("注文完了", "plain", 2),
    ("Property Pre-Order Submitted", "plain", 1),
    ("video played 🎬", "plain", 1),
    ('quoted "event" \\ name', "plain", 1),
    ("$identify", "identify", 1),
)
_ET_TABLE = tuple((_jb(name), kind) for name, kind, weight in _EVENT_TYPES for _ in range(weight))
_ET_N = len(_ET_TABLE)

_PATHS = ("/", "/pricing", "/checkout?step=2", "/søk/ørret", "/blog/2024/über-uns#team",
          "/api/v1/items?id=42&sort=desc", "/ja/商品/12345", "/")  # fmt: skip
_PATH_HEADS = tuple(b'{"path": ' + _jb(p) + b', "count": ' for p in _PATHS)
_TAGS = ("ç", "日本", "🙂", 'a"b', "tab\there", "ünïcödé", "", "Ω≈ç√")
_TAILS = tuple(
    b', "flag": '
    + flag
    + b', "missing": null, "nested": {"level": 1, "inner": {"tags": '
    + _jb(["a", "b", tag])
    + b"}}"
    for flag in (b"true", b"false")
    for tag in _TAGS
)  # 16 entries
_QUERIES = tuple(
    b', "query": ' + _jb(q) + b', "results": '
    for q in ("shoes", "schuhe größe 42", "東京 ホテル", "", 'a "quoted" term', "emoji 🚀 test",
              "back\\slash", "line\nbreak", "SELECT * FROM events; --", "x" * 300)
)  # fmt: skip
_PATH_CASE = b', "Path": "differs from \'path\' only by case"'
_GROUPS = (
    (b', "group_properties": {"company": {"name": "Acme GmbH", "tier": 3, "active": true}}, '
     b'"groups": {"company": ["acme"]}, '),
    (', "group_properties": {"company": {"name": "Ünïcorn 株式会社", "tier": null}, '
     '"team": {"size": 12}}, "groups": {"company": ["unicorn"], "team": ["data", "growth"]}, '
     ).encode(),
)  # fmt: skip
_NO_GROUPS = b', "group_properties": {}, "groups": {}, '
_DATA = (
    b'{"path": "/2/httpapi", "user_properties_updated": false, "group_first_event": {}, '
    b'"group_ids": {}}',
    b'{"path": "/2/httpapi", "user_properties_updated": true, "group_first_event": {}, '
    b'"group_ids": {}}',
    b'{"path": "/batch", "user_properties_updated": false, "group_first_event": {}, '
    b'"group_ids": {}, "first_event": true}',
    b'{"path": "/2/httpapi", "user_properties_updated": true, "group_first_event": '
    b'{"acme": true}, "group_ids": {"company": 1234567}}',
)


def _wide(variant: int) -> bytes:
    """150 extra properties of mixed types (a 'wide' event), rendered once per variant."""
    props: dict[str, object] = {}
    for i in range(150):
        kind = (i + variant) % 6
        key = f"wide_prop_{i:03d}"
        if kind == 0:
            props[key] = i * (variant + 1)
        elif kind == 1:
            props[key] = f"value {i} · v{variant}"
        elif kind == 2:
            props[key] = (i * 0.37 + variant) / 7
        elif kind == 3:
            props[key] = (i + variant) % 2 == 0
        elif kind == 4:
            props[key] = None
        else:
            props[key] = [i, str(variant), {"k": i}]
    return b", " + _jb(props)[1:-1]


_WIDE = tuple(_wide(v) for v in range(8))

_CITIES = (  # city, country, region, dma
    ("San Francisco", "United States", "California", "San Francisco-Oakland-San Jose, CA"),
    ("New York", "United States", "New York", "New York, NY"),
    ("São Paulo", "Brazil", "São Paulo", None),
    ("München", "Germany", "Bavaria", None),
    ("Zürich", "Switzerland", "Zurich", None),
    ("東京", "Japan", "Tokyo", None),
    ("서울", "South Korea", "Seoul", None),
    ("Москва", "Russia", "Moscow", None),
    ("Kraków", "Poland", "Lesser Poland", None),
    ("Ciudad de México", "Mexico", "Mexico City", None),
    ("Mumbai", "India", "Maharashtra", None),
    (None, "Iceland", None, None),
    (None, None, None, None),
    (None, None, None, None),
)
_LANGUAGES = ("English", "English", "English", "Deutsch", "日本語", "Português", "Español", None)
_CARRIERS = ("Verizon", "T-Mobile", "AT&T", "Vodafone.de", "NTT DOCOMO", "Telefónica", None, None)
_PLANS = ("free", "free", "pro", "enterprise")
_SOURCES = ("google", "newsletter", "(direct)", "partner «beta»", None)
_VERSIONS = ("5.2.0", "5.3.0-beta", "5.3.1", "6.0.0", None)
_START_VERSIONS = ("1.0.0", "2.3.1", "4.0.0", None)
# kind: platform, os_name, os_versions, device_families, libraries, share (of 100)
_KINDS = (
    ("iOS", "ios", ("17.4", "17.5.1", "18.0"), ("Apple iPhone", "Apple iPad"),
     ("amplitude-swift/1.13.6", "amplitude-flutter/4.3.2_amplitude-swift/1.13.6"), 30),
    ("Android", "android", ("13", "14", "15"),
     ("Samsung Galaxy S24", "Google Pixel 8", "Xiaomi Redmi Note 12"),
     ("amplitude-kotlin/1.16.7", "amplitude-react-native/1.4.9"), 25),
    ("Web", None, ("126", "127.0", "17.5"), ("Mac", "Windows", "Linux", None),
     ("amplitude-ts/2.11.1",), 35),
    (None, None, (None,), (None,), ("http/2.0",), 10),
)  # fmt: skip
_PAYING = ("null", "null", "true", "false")
_BROWSERS = ("Chrome", "Safari", "Firefox", "Edge")
_KIND_TABLE = tuple(k for k in _KINDS for _ in range(k[5]))


@dataclass(slots=True)
class _User:
    head: bytes  # '"amplitude_id": ..., "app": ..., "city": ..., "client_event_time": '
    country: bytes  # '"country": ..., "data": '
    device: bytes  # '"data_type": ... "dma": ..., "event_id": '
    mid: bytes  # '"ip_address": ... "plan": {}, "platform": ..., "processed_time": '
    region: bytes  # '"region": ..., "sample_rate": null, "server_received_time": '
    tail: bytes  # '"source_id": null, "start_version": ... "user_properties": {...}, "uuid": '
    version: bytes  # '"version_name": ...'
    skew_ms: int  # the device clock's error
    server_side: bool  # sends through the HTTP API: custom $insert_id


_jc = functools.lru_cache(maxsize=None)(_j)  # JSON of the (few, hashable) pool values
_UP_CONST = _j({"emoji": "🚀", "quote": 'say "hi"\n\tnew line'})[1:-1]
_UP_ADDRESS = (
    ", " + _j({"address": {"street": "Hauptstraße 5", "zip": "80331", "geo": [48.1, 11.5]}})[1:-1]
)


def _make_user(project_id: int, seed: int, n: int) -> _User:
    """One user (device) and everything about them that stays put from event to event. Ids built
    here hold no quotes, backslashes or control characters, so quoting them is valid JSON."""
    rng = random.Random(_stream_seed(project_id, seed, n, 0xA11CE))
    rand = rng.random
    platform, os_name, os_versions, families, libraries, _ = _KIND_TABLE[int(rand() * 100)]
    if platform == "Web":
        os_name = _BROWSERS[int(rand() * 4)]
    if platform == "iOS":
        device_id = _uuid_from(rng.getrandbits(122)).decode().upper()
    elif platform is not None:
        device_id = _uuid_from(rng.getrandbits(122)).decode()
    else:
        device_id = f"dev-{n:05d}-{rng.getrandbits(32):08x}"
    city, country, region, dma = _CITIES[int(rand() * len(_CITIES))]
    r = rand()
    if r < 0.75:
        user_id = f'"user_{n}@example.com"'
    elif r < 0.78:
        user_id = f'"josé.müller+{n}@exämple.de"'
    elif r < 0.80:
        user_id = f'"{n:010d}"'  # leading zeros: must stay a string
    else:
        user_id = "null"
    r = rand()
    bits = rng.getrandbits(32)
    if r < 0.4:
        ip = f'"203.0.113.{bits & 255}"'
    elif r < 0.8:
        ip = f'"198.51.100.{bits & 255}"'
    elif r < 0.9:
        ip = f'"2001:db8::{bits >> 16:x}:{bits & 0xFFFF:x}"'
    else:
        ip = "null"
    if rand() < 0.3:
        lat, lng = repr(round(rand() * 180 - 90, 6)), repr(round(rand() * 360 - 180, 6))
    else:
        lat = lng = "null"
    user_properties = (
        f'{{"plan": {_jc(_PLANS[bits >> 30])}, "gp:ltv": {(bits >> 8) % 900}, {_UP_CONST}, '
        f'"initial_utm_source": {_jc(_SOURCES[int(rand() * len(_SOURCES))])}'
    )
    if rand() < 0.2:
        user_properties += f', "cohorts": ["beta", "c{(bits >> 4) % 50}"]'
    if rand() < 0.1:
        user_properties += _UP_ADDRESS
    skew = 0
    if rand() < 0.1:
        skew = (1 if rand() < 0.5 else -1) * rng.randrange(60_000, 6 * _HOUR_MS)
    amplitude_id = 1_000_000_000_000 + rng.randrange(8_999_999_999_999)
    carrier = _CARRIERS[int(rand() * len(_CARRIERS))] if platform in ("iOS", "Android") else None
    family = families[int(rand() * len(families))]
    return _User(
        head=f'"amplitude_id": {amplitude_id}, "app": {project_id}, "city": {_jc(city)}, '
        '"client_event_time": '.encode(),
        country=f'"country": {_jc(country)}, "data": '.encode(),
        device=(
            '"data_type": "event", "device_brand": null, '
            f'"device_carrier": {_jc(carrier)}, '
            f'"device_family": {_jc(family)}, "device_id": "{device_id}", '
            '"device_manufacturer": null, "device_model": null, "device_type": null, '
            f'"dma": {_jc(dma)}, "event_id": '
        ).encode(),
        mid=(
            f'"ip_address": {ip}, "is_attribution_event": null, '
            f'"language": {_jc(_LANGUAGES[int(rand() * len(_LANGUAGES))])}, '
            f'"library": {_jc(libraries[int(rand() * len(libraries))])}, '
            f'"location_lat": {lat}, "location_lng": {lng}, "os_name": {_jc(os_name)}, '
            f'"os_version": {_jc(os_versions[int(rand() * len(os_versions))])}, '
            f'"partner_id": null, "paying": {_PAYING[int(rand() * 4)]}, "plan": {{}}, '
            f'"platform": {_jc(platform)}, "processed_time": '
        ).encode(),
        region=f'"region": {_jc(region)}, "sample_rate": null, "server_received_time": '.encode(),
        tail=(
            f'"source_id": null, '
            f'"start_version": {_jc(_START_VERSIONS[int(rand() * len(_START_VERSIONS))])}, '
            f'"user_creation_time": null, "user_id": {user_id}, '
            f'"user_properties": {user_properties}}}, "uuid": '
        ).encode(),
        version=f'"version_name": {_jc(_VERSIONS[int(rand() * len(_VERSIONS))])}'.encode(),
        skew_ms=skew,
        server_side=platform is None,
    )


_USER_POOLS: dict[tuple[int, int], list[_User | None]] = {}


def _users(project_id: int, seed: int) -> list[_User | None]:
    pool = _USER_POOLS.get((project_id, seed))
    if pool is None:
        pool = _USER_POOLS[(project_id, seed)] = [None] * USERS
    return pool


# ---------------------------------------------------------------------------------------------
# uuid: a version-4 layout whose last group (48 bits) is a bijection of (hour, index), so it is
# unique for every event of a project and seed, and whose other 74 free bits are random.

_UUID_MUL = 0x9E3779B97F4B  # odd, so multiplying modulo 2**48 is a bijection
MAX_HOUR_EVENTS = 1 << 26  # the index takes 26 of the 48 bits, the hour the other 22


def _uuid_from(x: int) -> bytes:
    """A version-4 UUID from 122 random bits."""
    h = b"%030x" % (x >> 2)
    return b"%s-%s-4%s-%c%s-%s" % (h[:8], h[8:12], h[12:15], b"89ab"[x & 3], h[15:18], h[18:])


# ---------------------------------------------------------------------------------------------
# Merged users: other amplitude_ids until given instants.


class IdSwitches:
    """Users (by generator number) whose events carry other ``amplitude_id`` values over time:
    ``ids[k]`` while ``server_upload_time`` (epoch ms) is before ``instants[k]``, the last id (the
    user's own) from ``instants[-1]`` on. Picklable; ``rows()``/``from_rows`` give plain lists
    for the worker processes' JSON."""

    __slots__ = ("by_user",)

    def __init__(self, by_user: Mapping[int, tuple[Sequence[int], Sequence[int]]]) -> None:
        table: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for user, (ids, instants) in by_user.items():
            if len(ids) != len(instants) + 1 or list(instants) != sorted(instants):
                raise ValueError("one id more than instants, instants in order")
            table[int(user)] = (tuple(ids), tuple(instants))
        self.by_user = table

    def __bool__(self) -> bool:
        return bool(self.by_user)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdSwitches) and other.by_user == self.by_user

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.by_user.items())))

    def __getstate__(self) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
        return self.by_user

    def __setstate__(self, state: dict[int, tuple[tuple[int, ...], tuple[int, ...]]]) -> None:
        self.by_user = state

    def rows(self) -> list[tuple[int, list[int], list[int]]]:
        return [(u, list(ids), list(at)) for u, (ids, at) in sorted(self.by_user.items())]

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[int, Sequence[int], Sequence[int]]]) -> IdSwitches:
        return cls({int(user): (ids, at) for user, ids, at in rows})


_SWITCHED_HEADS: dict[tuple[int, int, int, int], bytes] = {}


def _switched_head(
    project_id: int, seed: int, u: int, user: _User, entry: tuple[tuple[int, ...], ...], at: int
) -> bytes:
    """The head of user ``u``'s line uploaded at ``at`` (epoch ms): with the id of that time."""
    ids, instants = entry
    k = bisect_right(instants, at)
    if k == len(instants):
        return user.head
    key = (project_id, seed, u, ids[k])
    head = _SWITCHED_HEADS.get(key)
    if head is None:
        if len(_SWITCHED_HEADS) >= 100_000:
            _SWITCHED_HEADS.clear()
        rest = user.head[user.head.index(b', "app": ') :]
        head = _SWITCHED_HEADS[key] = b'"amplitude_id": %d%s' % (ids[k], rest)
    return head


# ---------------------------------------------------------------------------------------------
# Lines.

_LINE = (
    b'{"$insert_id": %s, "$insert_key": null, "$schema": null, "adid": null, '
    b'"amplitude_attribution_ids": %s, "amplitude_event_type": null, '
    b'%s%s, "client_upload_time": %s, '  # head, client_event_time, client_upload_time
    b"%s%s, %s%d, "  # country, data, device, event_id
    b'"event_properties": %s%d, "ratio": %.6f%s%s}, '  # path, count, ratio, tail, extra
    b'"event_time": %s, "event_type": %s, "global_user_properties": null%s'  # ..., groups
    b'"idfa": null, %s%s, '  # mid, processed_time
    b'%s%s, "server_upload_time": %s, "session_id": %d, '  # region, received, upload, session
    b'%s"%08x-%04x-4%03x-%04x-%012x", %s%s}\n'  # tail, uuid (5 groups), version, zz
)
_ZZ = b', "zz_new_field": {"introduced": "later", "n": %d}'


def _block_lines(
    project_id: int,
    hour: int,
    block: int,
    lo: int,
    hi: int,
    seed: int,
    profile: HourProfile,
    switches: IdSwitches | None = None,
) -> list[bytes]:
    """Lines ``lo..hi-1`` (all inside ``block``) of upload hour ``hour`` (hours since epoch)."""
    switched = switches.by_user if switches else None
    rng = random.Random(_stream_seed(project_id, seed, hour, block))
    rand = rng.random
    bits = rng.getrandbits
    users = _users(project_id, seed)
    key48 = _stream_seed(project_id, seed) & _MASK48
    unique = (hour & 0x3FFFFF) << 26
    hour_ms = hour * _HOUR_MS
    extra_every = profile.extra_field_every
    ts = _ts
    out: list[bytes] = []
    append = out.append
    for index in range(block * BLOCK_EVENTS, hi):
        r = rand()
        u = int(USERS * r * r)  # a few users are far more active than most
        user = users[u]
        if user is None:
            user = users[u] = _make_user(project_id, seed, u)
        upload = hour_ms + int(rand() * _HOUR_MS)
        head = user.head
        if switched is not None:
            entry = switched.get(u)
            if entry is not None:
                head = _switched_head(project_id, seed, u, user, entry, upload)
        received = upload - int(rand() * 900)
        late = rand()
        if late < 0.05:
            delay = _DAY_MS + int(rand() * 39 * _DAY_MS)
        elif late < 0.2:
            delay = _HOUR_MS + int(rand() * 35 * _HOUR_MS)
        else:
            delay = 50 + int(rand() * 29_950)
        skew = user.skew_ms
        latency = int(rand() * 900)
        client_event = received - delay + skew
        offset = latency - skew  # server_received_time - client_upload_time
        # Amplitude corrects event_time for the device clock when they differ by a minute
        event_time = client_event + offset if not -60_000 < offset < 60_000 else client_event
        w = bits(48)  # one byte per timestamp: under 5 (~2 %) drops the fraction
        et_json, kind = _ET_TABLE[int(rand() * _ET_N)]
        b = bits(32)
        if kind == "plain" or kind == "session" or kind == "identify":
            extra = b""
        elif kind == "purchase":
            extra = b', "price": %.2f, "currency": "EUR", "quantity": %d' % (
                0.5 + rand() * 899.5,
                1 + (b >> 20) % 5,
            )
        elif kind == "revenue":
            price = 0.99 + rand() * 99
            extra = (
                b', "$revenue": %.2f, "$price": %.2f, "$quantity": 1, '
                b'"$productId": "sku-%04d", "$revenueType": null' % (price, price, (b >> 20) % 500)
            )
        else:  # search
            extra = b"%s%d" % (_QUERIES[(b >> 20) % 10], (b >> 24) % 97)
        if index % 50 == 0:
            extra += _WIDE[(index // 50) % 8]
        if index % 31 == 0:
            extra += _PATH_CASE
        a = rand()
        if a < 0.25:
            attribution = b'["%032x"]' % bits(128)
        elif a < 0.3:
            attribution = b'["%032x", "%032x"]' % (bits(128), bits(128))
        else:
            attribution = b"null"
        if user.server_side and a > 0.4:  # a sender-chosen $insert_id
            insert_id = b'%s:%d-%d"' % (et_json[:-1], hour, index)
        else:  # an SDK's upper-case UUID
            i = bits(128)
            insert_id = b'"%08X-%04X-%04X-%04X-%012X"' % (
                i >> 96, (i >> 80) & 0xFFFF, (i >> 64) & 0xFFFF, (i >> 48) & 0xFFFF, i & _MASK48
            )  # fmt: skip
        session = -1 if rand() < 0.15 else client_event - int(rand() * 1_800_000)
        r = bits(64)
        append(
            _LINE
            % (
                insert_id,
                attribution,
                head,
                ts(client_event, (w & 255) < 5),
                ts(received - latency + skew, ((w >> 8) & 255) < 5),
                user.country,
                _DATA[(b >> 28) & 3],
                user.device,
                bits(31),
                _PATH_HEADS[b & 7],
                (b >> 3) & 8191,
                rand(),
                _TAILS[(b >> 16) & 15],
                extra,
                ts(event_time, ((w >> 16) & 255) < 5),
                et_json,
                _GROUPS[index & 1] if index % 9 == 0 else _NO_GROUPS,
                user.mid,
                ts(upload + 5 + int(rand() * 1995), ((w >> 24) & 255) < 5),
                user.region,
                ts(received, ((w >> 32) & 255) < 5),
                ts(upload, ((w >> 40) & 255) < 5),
                session,
                user.tail,
                r >> 32,
                (r >> 16) & 0xFFFF,
                (r >> 4) & 0xFFF,
                0x8000 | bits(14),  # the variant's two bits, then random ones
                ((unique | index) * _UUID_MUL & _MASK48) ^ key48,
                user.version,
                _ZZ % index if extra_every and index % extra_every == 0 else b"",
            )
        )
    return out[lo - block * BLOCK_EVENTS :]


def _chunks(
    project_id: int,
    hour: int,
    start: int,
    stop: int,
    seed: int,
    profile: HourProfile,
    switches: IdSwitches | None = None,
) -> Iterator[list[bytes]]:
    if stop > MAX_HOUR_EVENTS:
        raise ValueError(f"at most {MAX_HOUR_EVENTS} events per hour (uuid uniqueness)")
    for block in range(start // BLOCK_EVENTS, -(-stop // BLOCK_EVENTS)):
        lo = max(start, block * BLOCK_EVENTS)
        hi = min(stop, (block + 1) * BLOCK_EVENTS)
        yield _block_lines(project_id, hour, block, lo, hi, seed, profile, switches)


def hour_lines(
    project_id: int,
    upload_hour: datetime,
    count: int,
    seed: int = 0,
    profile: HourProfile = HourProfile(),
    *,
    start: int = 0,
    stop: int | None = None,
    switches: IdSwitches | None = None,
) -> Iterator[bytes]:
    """The NDJSON lines (each ending in a newline) of events ``start..stop-1`` of an upload hour
    holding ``count`` events. Any slice equals the same slice of the whole hour. ``switches``:
    the merged users' earlier ids (``merges``)."""
    stop = count if stop is None else min(stop, count)
    hour = hour_index(upload_hour)
    for chunk in _chunks(project_id, hour, start, stop, seed, profile, switches):
        yield from chunk


def hour_text(
    project_id: int,
    upload_hour: datetime,
    start: int,
    stop: int,
    seed: int = 0,
    profile: HourProfile = HourProfile(),
    switches: IdSwitches | None = None,
) -> bytes:
    """Events ``start..stop-1`` of an upload hour as one NDJSON byte string."""
    hour = hour_index(upload_hour)
    chunks = _chunks(project_id, hour, start, stop, seed, profile, switches)
    return b"".join(b"".join(chunk) for chunk in chunks)


@dataclass(frozen=True)
class MemberJob:
    """One gzip member: events ``start..stop-1`` of one upload hour (picklable for workers)."""

    project_id: int
    upload_hour: datetime
    start: int
    stop: int
    seed: int = 0
    profile: HourProfile = HourProfile()
    gzip_level: int = 1
    switches: IdSwitches | None = None


def gzip_member(job: MemberJob) -> bytes:
    """The gzip file (mtime 0, no file name, so deterministic) of one member's NDJSON."""
    compressor = zlib.compressobj(job.gzip_level, zlib.DEFLATED, 31)
    hour = hour_index(job.upload_hour)
    chunks = _chunks(job.project_id, hour, job.start, job.stop, job.seed, job.profile, job.switches)
    parts = [compressor.compress(b"".join(chunk)) for chunk in chunks]
    parts.append(compressor.flush())
    return b"".join(parts)
