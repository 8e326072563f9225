"""The directory's part of a migration: users (password hashes as they are), aliases, quotas.

All three tables are copied in one transaction with the directory's
progress row. The copy is refused when the target already has a row for
any of the addresses, unless this migration put it there.
"""

from __future__ import annotations

from mailstead.migrate.tables import Table, insert_rows, read_rows
from mailstead.migrate.verify import rows_line
from mailstead.sqlconn import SQLConnection

__all__ = ["TABLES", "conflicts", "copy_directory", "directory_line"]

TABLES = (
    Table("users", (("address", "text"), ("domain", "text"), ("password", "text")), "address"),
    Table(
        "alias_targets",
        (("alias", "text"), ("position", "int"), ("target", "text")),
        "alias, position",
    ),
    Table("quotas", (("address", "text"), ("storage", "int"), ("messages", "int")), "address"),
)
_KEYS = {"users": "address", "alias_targets": "alias", "quotas": "address"}


def conflicts(source: SQLConnection, target: SQLConnection) -> list[str]:
    """Addresses the target already has a user, alias or quota for, sorted."""
    found: set[str] = set()
    for table in TABLES:
        key = _KEYS[table.name]
        ours = {str(row[0]) for row in source.execute(f"SELECT {key} FROM {table.name}")}
        theirs = {str(row[0]) for row in target.execute(f"SELECT {key} FROM {table.name}")}
        found |= ours & theirs
    return sorted(found)


def copy_directory(source: SQLConnection, target: SQLConnection) -> int:
    """Insert every row of the source directory into the target's tables; how many users."""
    users = 0
    for table in TABLES:
        rows = read_rows(source, table)
        insert_rows(target, table, rows)
        if table.name == "users":
            users = len(rows)
    return users


def directory_line(conn: SQLConnection, addresses: set[str] | None = None) -> str:
    """The directory described (counts and checksum), limited to ``addresses`` if given
    (the target may hold other installations' users)."""
    counts: dict[str, int] = {}
    rows = []
    for table in TABLES:
        found = [r for r in read_rows(conn, table) if addresses is None or str(r[0]) in addresses]
        counts[table.name.replace("_", " ")] = len(found)
        rows += [(table.name, *r) for r in found]
    return rows_line(counts, rows)


def directory_keys(conn: SQLConnection) -> set[str]:
    """Every address the directory has a row for."""
    return {
        str(row[0])
        for table in TABLES
        for row in conn.execute(f"SELECT {_KEYS[table.name]} FROM {table.name}")
    }
