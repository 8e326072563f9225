"""Copying rows table by table between the SQLite files and the cluster database.

The directory, the queue and the webhook outbox keep the same columns on
both engines (their ``*_schema`` modules), so one description of each
table (:class:`Table`) reads the rows on either side and writes them on the
other. Values are brought to one type per column as they are read (SQLite
stores whatever it was given: an integer in a REAL column, text in a
BLOB), so that both sides' checksums (:func:`mailstead.migrate.verify.rows_line`)
agree on equal data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailstead.sqlconn import Row, SQLConnection

__all__ = ["Table", "insert_rows", "read_rows"]


@dataclass(frozen=True, slots=True)
class Table:
    """One table: its name, its columns with their kind (``text``, ``int``, ``real``,
    ``blob``), and the order its rows are read in."""

    name: str
    columns: tuple[tuple[str, str], ...]
    order: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


def _typed(value: object, kind: str) -> object:
    if value is None:
        return None
    if kind == "real":
        return float(value)  # type: ignore[arg-type]
    if kind == "int":
        return int(value)  # type: ignore[call-overload]
    if kind == "blob":
        if isinstance(value, str):
            return value.encode("utf-8")
        return bytes(value)  # type: ignore[call-overload]
    return str(value)


def read_rows(conn: SQLConnection, table: Table, where: str = "") -> list[Row]:
    """Every row of ``table`` (optionally ``WHERE …``), typed, in the table's order."""
    sql = f"SELECT {', '.join(table.names)} FROM {table.name}"
    if where:
        sql += f" WHERE {where}"
    sql += f" ORDER BY {table.order}"
    kinds = [kind for _, kind in table.columns]
    return [
        tuple(_typed(v, k) for v, k in zip(row, kinds, strict=True)) for row in conn.execute(sql)
    ]


def insert_rows(conn: SQLConnection, table: Table, rows: Sequence[Row]) -> None:
    """Insert ``rows`` (as :func:`read_rows` gives them) into ``table``."""
    if not rows:
        return
    marks = ", ".join("?" for _ in table.columns)
    conn.executemany(f"INSERT INTO {table.name} ({', '.join(table.names)}) VALUES ({marks})", rows)
