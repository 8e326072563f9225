"""One SQL text for both engines: SQLite's ``?`` placeholders on a psycopg connection.

The components keep a single set of queries, written for SQLite (``?``
placeholders, ``ON CONFLICT``, ``RETURNING``, all of which PostgreSQL also
speaks); :class:`Connection` runs them on PostgreSQL by rewriting the
placeholders once per query text. Where the engines differ in meaning —
schema DDL, claiming rows (``FOR UPDATE SKIP LOCKED``), locks — each
component says so in its own code, with both texts side by side.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

__all__ = ["Connection", "translate"]

_MAX_CACHED_QUERIES = 1024


@functools.lru_cache(maxsize=_MAX_CACHED_QUERIES)
def translate(sql: str) -> bytes:
    """``sql`` with each ``?`` outside a string literal as ``%s`` and each ``%`` doubled."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
            out.append("%%" if ch == "%" else ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out).encode()


class Connection:
    """A psycopg connection that takes queries written with ``?`` placeholders.

    ``execute`` and ``executemany`` return psycopg cursors, which answer
    ``fetchone``, ``fetchall``, ``rowcount`` and iteration like sqlite3's.
    """

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> psycopg.Cursor[tuple[Any, ...]]:
        return self.raw.execute(translate(sql), params, prepare=None)

    def executemany(
        self, sql: str, rows: Iterable[Sequence[object]]
    ) -> psycopg.Cursor[tuple[Any, ...]]:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), rows)
        return cursor
