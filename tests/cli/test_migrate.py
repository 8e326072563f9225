"""`mailstead migrate` refusals and usage, without a server.

The copies themselves, with a real server before and after, are in
tests/migrate/.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.cli.migrate import BarProgress
from mailstead.cli.progress import ProgressBar
from mailstead.config import load_config
from mailstead.directory import Directory
from mailstead.directory_db import PostgresDirectoryDB
from mailstead.migrate import migrate_to_postgresql
from mailstead.pgsql.connect import Pool, open_pool
from mailstead.store.pg_delivery import PgMailStore
from mailstead.store.pg_schema import ensure_schema
from mailstead.system.lock import ServeLock
from tests.cli.runner import run

ALICE = "alice@example.test"


@pytest.fixture
def node(config: Path) -> Path:
    """An initialised node with two users and a message for alice."""
    for address in (ALICE, "bob@example.test"):
        run(config, "user", "add", address, "--password-stdin", stdin="pw\n")
    sent = run(
        config, "send", "--from", "bob@example.test", "--to", ALICE,
        "--subject", "hello", "--text", "hi",
    )  # fmt: skip
    assert sent.exit_code == 0, sent.output
    return config


@pytest.fixture
def pool(pg_dsn: str) -> Iterator[Pool]:
    pool = open_pool(pg_dsn, max_size=2)
    yield pool
    pool.close()


def one_line_error(config: Path, *args: str) -> str:
    result = run(config, "migrate", *args)
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr.strip()


def test_refused_while_serve_holds_the_data_directory(node: Path, pg_dsn: str) -> None:
    lock = ServeLock(load_config(node).data_dir)  # what `mailstead serve` holds
    try:
        error = one_line_error(node, "--to", "postgresql", pg_dsn)
    finally:
        lock.close()
    assert error.startswith("mailstead: mailstead serve (pid ")
    assert error.endswith("; stop it first")


def test_refused_when_the_target_has_those_users(node: Path, pg_dsn: str, pool: Pool) -> None:
    with Directory(PostgresDirectoryDB(pool, name="test"), ["example.test"]) as directory:
        directory.add_user(ALICE, "other-pw")

    error = one_line_error(node, "--to", "postgresql", pg_dsn)

    assert error == (
        "mailstead: the target already has users or aliases named alice@example.test"
        " that this migration did not copy; migrate into an empty database"
    )


def test_refused_when_the_target_has_mail_of_those_accounts(
    node: Path, pg_dsn: str, pool: Pool
) -> None:
    ensure_schema(pool)
    PgMailStore(pool).deliver(ALICE, [b"Subject: elsewhere\r\n\r\nx\r\n"], "", 0.0)

    error = one_line_error(node, "--to", "postgresql", pg_dsn)

    assert error == (
        "mailstead: the target already holds mailbox 'INBOX' of alice@example.test that this"
        " migration did not copy; migrate into an empty database"
    )


def test_refused_when_the_node_is_on_postgresql_already(node: Path, pg_dsn: str) -> None:
    text = node.read_text()
    node.write_text(
        text.replace("[storage]\n", f'[storage]\nbackend = "postgresql"\ndsn = "{pg_dsn}"\n')
    )

    error = one_line_error(node, "--to", "postgresql", pg_dsn)

    assert error == "mailstead: this configuration already keeps its data in PostgreSQL"


def test_an_unreachable_database_is_one_line_without_the_password(node: Path) -> None:
    error = one_line_error(
        node, "--to", "postgresql", "postgresql://u:secret@127.0.0.1:1/none?connect_timeout=2"
    )
    assert "secret" not in error
    assert error.startswith("mailstead: cannot reach the database")


def test_to_is_required(node: Path) -> None:
    result = run(node, "migrate", "postgresql://x")
    assert result.exit_code == 2
    assert "Missing option '--to'" in result.stderr


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_slow_migration_on_a_terminal_shows_the_bar(node: Path, pg_dsn: str) -> None:
    for n in range(3):
        run(node, "send", "--from", "bob@example.test", "--to", ALICE, "--text", f"more {n}")
    out = Terminal()
    ticks = iter(range(1000))  # every look at the clock: one second later
    bar = ProgressBar("migrating", file=out, clock=lambda: float(next(ticks)))

    report = migrate_to_postgresql(load_config(node), pg_dsn, BarProgress(bar))
    bar.close()

    assert report.ok
    assert bar.shown
    assert "migrating" in out.getvalue()
