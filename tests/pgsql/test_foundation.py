"""The cluster database's plumbing: schema versions, redacted DSNs, the pool."""

from __future__ import annotations

import os
import threading

import pytest

from mailstead.pgsql.compat import Connection, translate
from mailstead.pgsql.connect import DatabaseUnavailable, connect, open_pool, redact, shared_pool
from mailstead.pgsql.migrate import SchemaTooNew, migrate, schema_version

STEPS = (
    ("CREATE TABLE notes (id bigserial PRIMARY KEY, text text NOT NULL)",),
    ("ALTER TABLE notes ADD COLUMN seen boolean NOT NULL DEFAULT false",),
)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "postgresql://app:s3cret@db.example:5432/mail",
            "user=app password=*** dbname=mail host=db.example port=5432",
        ),
        ("host=db password=s3cret dbname=mail", "password=*** dbname=mail host=db"),
        ("postgresql://app@db/mail", "user=app dbname=mail host=db"),
        ("not a dsn at all", "(an unparsable connection string)"),
    ],
)
def test_redact_hides_the_password(dsn: str, shown: str) -> None:
    assert redact(dsn) == shown


def test_migrate_runs_each_missing_step_once(pg_dsn: str) -> None:
    with connect(pg_dsn) as conn:
        assert schema_version(conn, "notes") == 0
        assert migrate(conn, "notes", STEPS[:1]) == 1
        assert migrate(conn, "notes", STEPS) == 1
        assert migrate(conn, "notes", STEPS) == 0
        assert schema_version(conn, "notes") == 2
        conn.execute("INSERT INTO notes (text, seen) VALUES ('x', true)")


def test_a_newer_database_is_refused(pg_dsn: str) -> None:
    with connect(pg_dsn) as conn:
        migrate(conn, "notes", STEPS)
        with pytest.raises(SchemaTooNew, match="version 2, but this Mailstead knows only up to 1"):
            migrate(conn, "notes", STEPS[:1])


def test_a_failed_step_leaves_the_previous_version(pg_dsn: str) -> None:
    with connect(pg_dsn) as conn:
        migrate(conn, "notes", STEPS[:1])
        broken = (*STEPS, ("ALTER TABLE notes ADD COLUMN seen boolean",))  # already there
        with pytest.raises(Exception, match="seen"):
            migrate(conn, "notes", broken)
        assert schema_version(conn, "notes") == 1
        columns = "SELECT count(*) FROM information_schema.columns WHERE column_name = 'seen'"
        assert conn.execute(columns).fetchone() == (0,)


def test_nodes_starting_together_migrate_once(pg_dsn: str) -> None:
    ran: list[int] = []

    def node() -> None:
        with connect(pg_dsn) as conn:
            ran.append(migrate(conn, "notes", STEPS))

    threads = [threading.Thread(target=node) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ran) == [0, 0, 0, 2]


def test_pool_commits_a_unit_of_work_and_rolls_back_a_failed_one(pg_dsn: str) -> None:
    pool = open_pool(pg_dsn, max_size=2)
    try:
        with pool.connection() as conn:
            migrate(conn, "notes", STEPS)
        with pool.connection() as conn:
            conn.execute("INSERT INTO notes (text) VALUES ('kept')")
        with pytest.raises(ZeroDivisionError), pool.connection() as conn:
            conn.execute("INSERT INTO notes (text) VALUES ('dropped')")
            1 / 0  # noqa: B018
        with pool.connection() as conn:
            assert conn.execute("SELECT text FROM notes").fetchall() == [("kept",)]
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    finally:
        pool.close()


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        connect("postgresql://app:s3cret@127.0.0.1:1/mail")
    text = str(caught.value)
    assert "s3cret" not in text and "\n" not in text
    shown = "user=app password=*** dbname=mail host=127.0.0.1 port=1"
    assert text.startswith(f"cannot reach the database {shown}:")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = ?", b"SELECT * FROM t WHERE a = %s AND b = %s"),
        ("SELECT '?' , ? WHERE x LIKE 'a%'", b"SELECT '?' , %s WHERE x LIKE 'a%%'"),
        ("SELECT a % 2 FROM t", b"SELECT a %% 2 FROM t"),
        ('SELECT "we?ird" FROM t', b'SELECT "we?ird" FROM t'),
    ],
)
def test_translate_placeholders(sql: str, expected: bytes) -> None:
    assert translate(sql) == expected


def test_compat_connection_runs_sqlite_style_queries(pg_dsn: str) -> None:
    with connect(pg_dsn) as raw:
        conn = Connection(raw)
        conn.execute("CREATE TABLE kv (k text PRIMARY KEY, v integer)")
        conn.executemany("INSERT INTO kv (k, v) VALUES (?, ?)", [("a", 1), ("b%", 2)])
        row = conn.execute(
            "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = kv.v + 10 "
            "RETURNING v",
            ("a", 0),
        ).fetchone()
        assert row == (11,)
        assert conn.execute("SELECT k FROM kv WHERE k LIKE 'b%' AND v = ?", (2,)).fetchall() == [
            ("b%",)
        ]


def test_a_forked_child_opens_its_own_pool_and_leaves_the_parents_alone(pg_dsn: str) -> None:
    parent = shared_pool(pg_dsn)
    assert shared_pool(pg_dsn) is parent
    with parent.connection() as conn:
        conn.execute("SELECT 1")
    pid = os.fork()
    if pid == 0:  # the child: a pool of its own that works
        code = 1
        try:
            child = shared_pool(pg_dsn)
            with child.connection() as conn:
                code = (
                    0 if child is not parent and conn.execute("SELECT 2").fetchone() == (2,) else 3
                )
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with parent.connection() as conn:  # the parent's connections survived the child
        assert conn.execute("SELECT 3").fetchone() == (3,)


def test_a_full_pool_answers_a_short_wait_with_unavailable(pg_dsn: str) -> None:
    pool = open_pool(pg_dsn, max_size=1)
    try:
        with (
            pool.connection(),
            pytest.raises(DatabaseUnavailable, match="no free connection"),
            pool.connection(timeout=0.1),
        ):
            pass
    finally:
        pool.close()
