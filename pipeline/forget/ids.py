"""The ids of a forget request: read without ever being echoed, and matched against lines and rows.

An :class:`Ids` never shows its ids: its ``repr`` is a count, errors about a bad id name the
place (``--ids-file`` line 3), never the value, and :meth:`Ids.scrub` replaces any id that an
outside message might quote. The ids file holds one id a line::

    # comments and blank lines are skipped
    amplitude_id:1234567890123
    user_id:someone@example.com

(``user_id:`` takes the rest of the line verbatim, spaces included; only the line end is dropped).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline import leftovers

AMPLITUDE_ID = "amplitude_id"
USER_ID = "user_id"
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
    """Amplitude ids (``amplitude_id``) and the project's own user ids (``user_id``) to forget."""

    __slots__ = ("_distinct", "_escapes", "_needles", "amplitude_ids", "user_ids")

    def __init__(self, amplitude_ids: Iterable[int] = (), user_ids: Iterable[str] = ()) -> None:
        self.amplitude_ids = frozenset(amplitude_ids)
        self.user_ids = frozenset(user_ids)
        for value in self.amplitude_ids:
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not 0 <= value <= _MAX_BIGINT:
                raise IdsError("an amplitude_id must be a whole number of at most 63 bits")
        if any(not isinstance(u, str) or not u for u in self.user_ids):
            raise IdsError("a user_id must be non-empty text")
        # A line can hold an id only if one of these spellings is in it (JSON has no other way
        # to write a plain integer or a plain string); a user id with characters JSON may
        # escape (non-ASCII, '/', quotes) can also hide behind a backslash escape.
        needles = {str(a).encode() for a in self.amplitude_ids}
        for user_id in self.user_ids:
            needles.add(json.dumps(user_id, ensure_ascii=False).encode())
            needles.add(json.dumps(user_id).encode())
            if user_id.isdigit():
                needles.add(user_id.encode())  # "user_id": 12345, which the cast reads as text
        self._needles = tuple(sorted(needles))
        self._escapes = any(not _plain(u) for u in self.user_ids)
        self._distinct = tuple(n for n in self._needles if len(n) >= MIN_TEXT)

    def __repr__(self) -> str:
        return (f"<Ids: {len(self.amplitude_ids)} amplitude_id(s), "
                f"{len(self.user_ids)} user_id(s)>")

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self.amplitude_ids) + len(self.user_ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ids) and (self.amplitude_ids, self.user_ids) == (
            other.amplitude_ids, other.user_ids)

    def __hash__(self) -> int:
        return hash((self.amplitude_ids, self.user_ids))

    def __or__(self, other: Ids) -> Ids:
        return Ids(self.amplitude_ids | other.amplitude_ids, self.user_ids | other.user_ids)

    # ---- reading and writing ----

    @classmethod
    def parse(cls, amplitude_ids: Iterable[str] = (), user_ids: Iterable[str] = (),
              files: Iterable[str | Path] = ()) -> Ids:
        """Ids from the command line's text and from ids files (``-`` is standard input)."""
        found = cls([_amplitude_id(text, f"--amplitude-id #{n}")
                     for n, text in enumerate(amplitude_ids, start=1)],
                    [_user_id(text, f"--user-id #{n}") for n, text in
                     enumerate(user_ids, start=1)])
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
        amplitude_ids: list[int] = []
        user_ids: list[str] = []
        for number, raw in enumerate(lines, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            kind, sep, value = line.partition(":")
            place = f"{where} line {number}"
            if sep and kind.strip() == AMPLITUDE_ID:
                amplitude_ids.append(_amplitude_id(value, place))
            elif sep and kind.strip() == USER_ID:
                user_ids.append(_user_id(value, place))
            else:
                raise IdsError(f"{place} is neither amplitude_id:<number> nor user_id:<text>")
        return cls(amplitude_ids, user_ids)

    def lines(self) -> Iterator[str]:
        """The ids in the ids file's format, sorted."""
        for amplitude_id in sorted(self.amplitude_ids):
            yield f"{AMPLITUDE_ID}:{amplitude_id}\n"
        for user_id in sorted(self.user_ids):
            yield f"{USER_ID}:{user_id}\n"

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

    def may_hold(self, line: bytes) -> bool:
        """Cheap and never wrong in the safe direction: False means the line holds none."""
        return any(n in line for n in self._needles) or (self._escapes and b"\\" in line)

    def holds_text(self, line: bytes) -> bool:
        """Whether one of the ids' spellings (of :data:`MIN_TEXT` characters or more) appears
        in the line at all."""
        return any(n in line for n in self._distinct)

    def event_line_matches(self, line: bytes) -> bool:
        """Whether an export line is one of these users' events.

        A line is theirs when a top-level ``amplitude_id`` or ``user_id`` holds one of the ids
        (each occurrence counts, should a key repeat). A line that is not JSON but holds an id's
        spelling is counted as theirs: whose it is cannot be told, and it is personal data either
        way (such a line never loads; it fails its hour or is quarantined). The same goes for
        JSON that is not an object (an array of events, say).
        """
        if not self.may_hold(line):
            return False
        pairs = top_level_pairs(line)
        if pairs is None:
            return self.holds_text(line)
        return any(self._pair_matches(key, value) for key, value in pairs)

    def row_matches(self, amplitude_id: object, user_id: object) -> bool:
        return self._pair_matches(AMPLITUDE_ID, amplitude_id) or \
            self._pair_matches(USER_ID, user_id)

    def _pair_matches(self, key: str, value: Any) -> bool:
        if key == AMPLITUDE_ID:
            return _as_int(value) in self.amplitude_ids
        if key == USER_ID:
            return _as_text(value) in self.user_ids
        return False

    def texts(self) -> list[str]:
        """Every spelling of the ids as text of :data:`MIN_TEXT` characters or more, for a
        substring search of lines that cannot be parsed (quarantined ones)."""
        out = {str(a) for a in self.amplitude_ids}
        for user_id in self.user_ids:
            out.add(user_id)
            out.add(json.dumps(user_id)[1:-1])  # as it appears inside a JSON string
        return sorted(t for t in out if len(t) >= MIN_TEXT)

    def scrub(self, text: str, min_length: int = 1) -> str:
        """``text`` with every spelling of every id (of ``min_length`` characters or more)
        replaced by ``<id>``, longest first."""
        spellings = {str(a) for a in self.amplitude_ids} | set(self.user_ids) | {
            json.dumps(u)[1:-1] for u in self.user_ids}
        for needle in sorted(spellings, key=len, reverse=True):
            if len(needle) >= min_length:
                text = text.replace(needle, "<id>")
        return text


def top_level_pairs(line: bytes) -> list[tuple[str, Any]] | None:
    """The key-value pairs of a JSON line's top-level object (duplicates kept); None for a line
    that is not a JSON object."""
    objects: list[list[tuple[str, Any]]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        objects.append(pairs)  # inner objects first: the top-level one comes last
        return dict(pairs)

    try:
        value = json.loads(line, object_pairs_hook=hook)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return objects[-1] if isinstance(value, dict) else None


def _as_int(value: Any) -> int | None:
    """An amplitude_id as the load's BIGINT cast reads it: a JSON integer or digits in a string."""
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
    """A user_id as the load's VARCHAR cast reads it: a string, or a number's text."""
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


def _user_id(text: str, place: str) -> str:
    if not text:
        raise IdsError(f"{place}: a user_id cannot be empty")
    return text
