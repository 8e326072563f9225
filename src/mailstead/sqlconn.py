"""The face SQLite and PostgreSQL connections share, so one set of query text serves both.

A :class:`sqlite3.Connection` has it already; :class:`mailstead.pgsql.compat.Connection`
gives it to a psycopg connection (``?`` placeholders rewritten). Components
that keep their rows in either engine (the directory, the abuse counters)
write their queries once against this face; what differs between the
engines (schema DDL, row locks) they keep beside it, both texts side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

__all__ = ["Cursor", "Row", "SQLConnection"]

#: One result row. Both drivers type their rows this way: a column's type is
#: the query's business, not the driver's.
Row = tuple[Any, ...]


class Cursor(Protocol):
    """The result of one statement: its rows, and how many rows it changed."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...

    def __iter__(self) -> Iterator[Row]: ...


class SQLConnection(Protocol):
    """A connection that runs SQLite-style query text (``?`` placeholders)."""

    def execute(self, sql: str, params: Sequence[object] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[object]], /) -> Cursor: ...
