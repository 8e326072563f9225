"""`mailstead mailbox reindex`: the full-text search index rebuilt from the mail."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailstead.config import load_config
from mailstead.store.paths import maildir_path
from mailstead.store.search_index import SEARCH_INDEX_NAME
from tests.cli.runner import run

ALICE = "alice@example.test"


def _send(config: Path, subject: str) -> None:
    result = run(
        config, "send", "--from", "bob@example.test", "--to", ALICE,
        "--subject", subject, "--text", "Grüße aus Köln",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_reindex_one_user_and_all(config: Path) -> None:
    for address in (ALICE, "bob@example.test"):
        run(config, "user", "add", address, "--password-stdin", stdin="pw\n")
    _send(config, "one")
    _send(config, "two")
    result = run(config, "mailbox", "reindex", ALICE)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{ALICE}: indexed 2 messages in 1 folder\n"
    root = maildir_path(load_config(config).mail_root, ALICE)
    with sqlite3.connect(root / SEARCH_INDEX_NAME) as db:
        assert db.execute("SELECT count(*) FROM docs").fetchone() == (2,)
    result = run(config, "mailbox", "reindex", "--all")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{ALICE}: indexed 2 messages in 1 folder\nbob@example.test: nothing stored yet\n"
    )


def test_reindex_wants_one_of_address_or_all(config: Path) -> None:
    result = run(config, "mailbox", "reindex")
    assert result.exit_code != 0
    assert "give an ADDRESS or --all, not both" in result.output
