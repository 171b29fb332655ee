"""The ids of a forget request: read without ever being echoed, and matched as the loads cast them.

An :class:`Ids` never shows its ids: its ``repr`` is a count, errors about a bad id name the
place (``--ids-file`` line 3), never the value, and :meth:`Ids.scrub` replaces any id that an
outside message might quote. The ids file holds one id a line::

    # comments and blank lines are skipped
    amplitude_id:1234567890123
    user_id:someone@example.com
    distinct_id:$device:18f3a2b4-77

(``user_id:`` and ``distinct_id:`` take the rest of the line verbatim, spaces included; only the
line end is dropped). Each kind is a kind of id some source keeps; each source's matchers use the
kinds it knows (``UserData.kinds``), so a request reaches every project that knows one of them.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline import leftovers

AMPLITUDE_ID = "amplitude_id"  # Amplitude's own id of a user: a whole number
USER_ID = "user_id"  # the deployment's own user id, as its apps set it: text
DISTINCT_ID = "distinct_id"  # Mixpanel's id of whoever sent an event: text
KINDS = (AMPLITUDE_ID, USER_ID, DISTINCT_ID)
NUMBER_KINDS = frozenset({AMPLITUDE_ID})
_MAX_BIGINT = 2**63 - 1
# A line that cannot be parsed is searched for the ids' spellings as text; one shorter than this
# ("42") would match lines of anyone, so it is not searched for there.
MIN_TEXT = 5


class IdsError(ValueError):
    """Ids that cannot be read; the message names where, never what."""


def _plain(text: str) -> bool:
    """Whether JSON can spell ``text`` only one sane way: printable ASCII, nothing escapable."""
    return all(" " <= ch <= "~" and ch not in '"\\/' for ch in text)


class Ids:
    """The ids to forget, by kind."""

    __slots__ = ("_by_kind",)

    def __init__(self, amplitude_ids: Iterable[int] = (), user_ids: Iterable[str] = (),
                 distinct_ids: Iterable[str] = ()) -> None:
        by_kind: dict[str, frozenset[Any]] = {
            AMPLITUDE_ID: frozenset(amplitude_ids), USER_ID: frozenset(user_ids),
            DISTINCT_ID: frozenset(distinct_ids)}
        for value in by_kind[AMPLITUDE_ID]:
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not 0 <= value <= _MAX_BIGINT:
                raise IdsError("an amplitude_id must be a whole number of at most 63 bits")
        for kind in (USER_ID, DISTINCT_ID):
            if any(not isinstance(text, str) or not text for text in by_kind[kind]):
                raise IdsError(f"a {kind} must be non-empty text")
        self._by_kind = by_kind

    @property
    def amplitude_ids(self) -> frozenset[int]:
        return self._by_kind[AMPLITUDE_ID]

    @property
    def user_ids(self) -> frozenset[str]:
        return self._by_kind[USER_ID]

    @property
    def distinct_ids(self) -> frozenset[str]:
        return self._by_kind[DISTINCT_ID]

    def of(self, kind: str) -> frozenset[Any]:
        return self._by_kind[kind]

    def kinds(self) -> frozenset[str]:
        """The kinds this request holds ids of."""
        return frozenset(k for k in KINDS if self._by_kind[k])

    def __repr__(self) -> str:
        counts = [f"{len(self._by_kind[k])} {k}(s)" for k in KINDS if self._by_kind[k]]
        return f"<Ids: {', '.join(counts) or 'none'}>"

    __str__ = __repr__

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_kind.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ids) and self._by_kind == other._by_kind

    def __hash__(self) -> int:
        return hash(tuple(self._by_kind[k] for k in KINDS))

    def __or__(self, other: Ids) -> Ids:
        return Ids(*(self._by_kind[k] | other._by_kind[k] for k in KINDS))

    # ---- reading and writing ----

    @classmethod
    def parse(cls, amplitude_ids: Iterable[str] = (), user_ids: Iterable[str] = (),
              files: Iterable[str | Path] = (), distinct_ids: Iterable[str] = ()) -> Ids:
        """Ids from the command line's text and from ids files (``-`` is standard input)."""
        found = cls([_amplitude_id(text, f"--amplitude-id #{n}")
                     for n, text in enumerate(amplitude_ids, start=1)],
                    [_text(text, USER_ID, f"--user-id #{n}")
                     for n, text in enumerate(user_ids, start=1)],
                    [_text(text, DISTINCT_ID, f"--distinct-id #{n}")
                     for n, text in enumerate(distinct_ids, start=1)])
        for file in files:
            found = found | cls.read(file)
        return found

    @classmethod
    def read(cls, file: str | Path) -> Ids:
        if str(file) == "-":
            return cls._from_lines(sys.stdin, "standard input")
        try:
            with open(file, encoding="utf-8", newline="") as text:
                return cls._from_lines(text, str(file))
        except UnicodeDecodeError:
            raise IdsError(f"{file} is not UTF-8 text") from None
        except OSError as error:
            raise IdsError(f"cannot read the ids file {file}: {error.strerror}") from None

    @classmethod
    def _from_lines(cls, lines: Iterable[str], where: str) -> Ids:
        found: dict[str, list[Any]] = {kind: [] for kind in KINDS}
        for number, raw in enumerate(lines, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            kind, sep, value = line.partition(":")
            kind = kind.strip()
            place = f"{where} line {number}"
            if not sep or kind not in KINDS:
                raise IdsError(f"{place} is neither amplitude_id:<number>, user_id:<text> nor "
                               "distinct_id:<text>")
            found[kind].append(_amplitude_id(value, place) if kind == AMPLITUDE_ID
                               else _text(value, kind, place))
        return cls(*(found[k] for k in KINDS))

    def lines(self) -> Iterator[str]:
        """The ids in the ids file's format, sorted."""
        for kind in KINDS:
            for value in sorted(self._by_kind[kind]):
                yield f"{kind}:{value}\n"

    def add_to_file(self, path: Path) -> int:
        """Merge these ids into the ids file at ``path`` (created readable by its owner only,
        replaced atomically); return how many were new."""
        path = Path(path)
        known = Ids.read(path) if path.exists() else Ids()
        merged = known | self
        staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}{leftovers.owner_mark()}.tmp")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                out.write("# ids forgotten by python -m pipeline.forget: a suppression list\n")
                out.writelines(merged.lines())
            os.replace(staged, path)
        finally:
            staged.unlink(missing_ok=True)
        return len(merged) - len(known)

    # ---- matching ----

    def holds(self, kind: str, value: Any) -> bool:
        """Whether ``value``, read as a load casts a field of that kind, is one of the ids."""
        if kind in NUMBER_KINDS:
            return _as_int(value) in self._by_kind[kind]
        return _as_text(value) in self._by_kind[kind]

    def needles(self, kinds: Collection[str]) -> tuple[bytes, ...]:
        """Every way JSON can spell the ids of ``kinds`` plainly; a line holding none of these
        (and no backslash, see :meth:`may_escape`) holds none of the ids."""
        found = {str(n).encode() for k in kinds if k in NUMBER_KINDS for n in self._by_kind[k]}
        for text in self._texts_of(kinds):
            found.add(json.dumps(text, ensure_ascii=False).encode())
            found.add(json.dumps(text).encode())
            if text.isdigit():
                found.add(text.encode())  # "user_id": 12345, which the cast reads as text
        return tuple(sorted(found))

    def may_escape(self, kinds: Collection[str]) -> bool:
        """Whether a text id of ``kinds`` has characters JSON may escape (non-ASCII, '/',
        quotes), so that it can hide behind a backslash escape."""
        return any(not _plain(text) for text in self._texts_of(kinds))

    def _texts_of(self, kinds: Collection[str]) -> Iterator[str]:
        for kind in kinds:
            if kind not in NUMBER_KINDS:
                yield from self._by_kind[kind]

    def texts(self, kinds: Collection[str] = KINDS) -> list[str]:
        """Every spelling of the ids of ``kinds`` as text of :data:`MIN_TEXT` characters or
        more, for a substring search of lines that cannot be parsed (quarantined ones)."""
        out = {str(n) for k in kinds if k in NUMBER_KINDS for n in self._by_kind[k]}
        for text in self._texts_of(kinds):
            out.add(text)
            out.add(json.dumps(text)[1:-1])  # as it appears inside a JSON string
        return sorted(t for t in out if len(t) >= MIN_TEXT)

    def scrub(self, text: str, min_length: int = 1) -> str:
        """``text`` with every spelling of every id (of ``min_length`` characters or more)
        replaced by ``<id>``, longest first."""
        spellings = {str(n) for k in NUMBER_KINDS for n in self._by_kind[k]}
        for value in self._texts_of(KINDS):
            spellings |= {value, json.dumps(value)[1:-1]}
        for needle in sorted(spellings, key=len, reverse=True):
            if len(needle) >= min_length:
                text = text.replace(needle, "<id>")
        return text


def _as_int(value: Any) -> int | None:
    """A whole-number id as a BIGINT cast reads it: a JSON integer or digits in a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    return None


def _as_text(value: Any) -> str | None:
    """A text id as a VARCHAR cast reads it: a string, or a whole number's text."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _amplitude_id(text: str, place: str) -> int:
    digits = text.strip()
    if not digits.isascii() or not digits.isdigit() or int(digits) > _MAX_BIGINT:
        raise IdsError(f"{place}: an amplitude_id is a whole number of at most 63 bits")
    return int(digits)


def _text(text: str, kind: str, place: str) -> str:
    if not text:
        raise IdsError(f"{place}: a {kind} cannot be empty")
    return text
