"""Whether a landed line (or CSV record) is one of the users': streaming matchers over bytes.

A source says where its lines keep ids (:class:`JsonFields`: a top-level ``amplitude_id``, a
nested ``properties.distinct_id``) or which CSV columns hold them (:func:`csv_records`); these
read a file once, record by record, and store nothing. A matcher errs only towards removal: a
cheap byte test looks for every way JSON can spell the ids before a line is parsed, and a line
that is not a JSON object but spells an id is counted as theirs (whose it is cannot be told, and
it is personal data either way).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from io import BufferedIOBase
from typing import Any

from pipeline.forget.ids import MIN_TEXT, Ids

# A file's records (a line, or a CSV record with its line ends) as their bytes, each with whether
# it is one of the users'.
Records = Callable[[BufferedIOBase], Iterator[tuple[bool, bytes]]]
FieldPath = tuple[str, ...]  # keys from a line's top-level object down to a value


class _Object(list[tuple[str, Any]]):
    """A JSON object as its key-value pairs, duplicates kept."""


def parsed(line: bytes) -> _Object | None:
    """A JSON line's object (every level keeps repeated keys); None for a line that is not a
    JSON object."""
    try:
        value = json.loads(line, object_pairs_hook=_Object)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, _Object) else None


def values_at(obj: _Object, path: FieldPath) -> Iterator[Any]:
    """Every value at ``path``: each occurrence counts, should a key repeat."""
    key, rest = path[0], path[1:]
    for name, value in obj:
        if name != key:
            continue
        if not rest:
            yield value
        elif isinstance(value, _Object):
            yield from values_at(value, rest)


class JsonFields:
    """JSON lines that are the users' when a value at one of ``fields`` (a path, and the kind of
    id it holds) is one of the ids; the values are read as the load casts them."""

    def __init__(self, ids: Ids, fields: Mapping[FieldPath, str]) -> None:
        kinds = set(fields.values())
        self._ids = ids
        self._fields = dict(fields)
        self._needles = ids.needles(kinds)
        self._escapes = ids.may_escape(kinds)
        self._distinct = tuple(n for n in self._needles if len(n) >= MIN_TEXT)

    def may_hold(self, line: bytes) -> bool:
        """Cheap and never wrong in the safe direction: False means the line holds none."""
        return any(n in line for n in self._needles) or (self._escapes and b"\\" in line)

    def holds_text(self, line: bytes) -> bool:
        """Whether one of the ids' spellings (of :data:`MIN_TEXT` characters or more) appears
        in the line at all."""
        return any(n in line for n in self._distinct)

    def __call__(self, line: bytes) -> bool:
        if not self.may_hold(line):
            return False
        obj = parsed(line)
        if obj is None:
            return self.holds_text(line)
        return any(self._ids.holds(kind, value) for path, kind in self._fields.items()
                   for value in values_at(obj, path))

    def records(self) -> Records:
        def records(data: BufferedIOBase) -> Iterator[tuple[bool, bytes]]:
            for line in data:
                yield self(line), line

        return records


def csv_records(ids: Ids, columns: Mapping[int, str]) -> Records:
    """Each record of a CSV file with a header (a quoted field may span lines), as its original
    bytes, and whether one of ``columns`` (an index, and the kind of id it holds) is one of the
    ids; an empty field is no id. The header is kept."""

    def theirs(row: list[str]) -> bool:
        return any(index < len(row) and row[index] and ids.holds(kind, row[index])
                   for index, kind in columns.items())

    def records(data: BufferedIOBase) -> Iterator[tuple[bool, bytes]]:
        raw: list[bytes] = []

        def text() -> Iterator[str]:
            for line in data:
                raw.append(line)
                yield line.decode("utf-8")

        for number, row in enumerate(csv.reader(text(), strict=True)):
            chunk = b"".join(raw)
            raw.clear()
            yield number > 0 and theirs(row), chunk
        if raw:
            yield False, b"".join(raw)

    return records
