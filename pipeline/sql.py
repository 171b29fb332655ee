"""SQL text for statements DuckDB cannot parameterise (COPY, ATTACH, table-function lists)."""

from __future__ import annotations

from collections.abc import Iterable


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def literal_list(texts: Iterable[str]) -> str:
    return "[" + ", ".join(literal(t) for t in texts) + "]"
