"""``mailstead migrate --to postgresql``: a Maildir node moves into the cluster database.

Before and after, imaplib reads every mailbox (EXAMINE, then UID FETCH 1:*
FLAGS): the UIDVALIDITY, UIDs and flags are the same, so clients do not
resynchronise; the same passwords log in; the queued message is in
``queue list``; the webhook endpoint is there.
"""

from __future__ import annotations

import json
from pathlib import Path

from mailstead.directory import Directory
from mailstead.directory_db import PostgresDirectoryDB
from mailstead.pgsql.connect import open_pool
from tests.cli.runner import run
from tests.e2e.harness import write_config
from tests.migrate.installation import build, logins_work, views


def _pg_config(root: Path, dsn: str) -> Path:
    """The node's config pointed at the cluster database (as an operator edits it)."""
    return write_config(root, dsn=dsn)


def test_a_maildir_node_moves_into_postgresql_and_clients_see_the_same(
    tmp_path: Path, pg_dsn: str
) -> None:
    install = build(tmp_path / "node")
    before = views(install.root)

    result = run(install.config, "migrate", "--to", "postgresql", pg_dsn)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("ok        directory: 2 users, 3 alias targets, 0 quotas")
    assert any(line.startswith("ok        alice@example.test Work:") for line in lines), lines
    assert any(line.startswith("ok        queue: 1 messages, 1 recipients") for line in lines)
    assert not any("MISMATCH" in line for line in lines)
    assert lines[-1].startswith("migrated to postgresql:")

    pool = open_pool(pg_dsn)
    try:
        assert logins_work(Directory(PostgresDirectoryDB(pool, name="t"), ["example.test"]))
    finally:
        pool.close()
    after = views(install.root, dsn=pg_dsn)  # the same root, now on the database
    assert after == before
    assert after["alice@example.test"]["Work"][1] == {
        1: (b"\\Answered",),
        2: (b"$Label1", b"\\Seen"),
        3: (b"$Label1", b"\\Seen"),
    }
    assert 2 not in after["alice@example.test"]["INBOX"][1]  # the expunged UID stays a gap

    pg_config = _pg_config(install.root, pg_dsn)
    listed = run(pg_config, "queue", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (queued,) = json.loads(listed.output)
    assert [r["address"] for r in queued["recipients"]] == ["dave@remote.test"]
    hooks = run(pg_config, "webhook", "list", "--json")
    assert [h["url"] for h in json.loads(hooks.output)] == ["https://127.0.0.1:9/hooks"]


def test_an_mbox_node_moves_into_postgresql_and_clients_see_the_same(
    tmp_path: Path, pg_dsn: str
) -> None:
    install = build(tmp_path / "node", storage="mbox")
    before = views(install.root, storage="mbox")

    result = run(install.config, "migrate", "--to", "postgresql", pg_dsn)

    assert result.exit_code == 0, result.output
    assert "MISMATCH" not in result.output
    assert "ok        alice@example.test Projects: 0 messages" in result.output
    after = views(install.root, dsn=pg_dsn, storage="mbox")
    assert after == before
    assert after["bob@example.test"]["INBOX"][1][2] == (b"NonJunk", b"\\Seen")
