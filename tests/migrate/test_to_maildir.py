"""``mailstead migrate --to maildir``: out of the cluster into a node's data directory.

A Maildir node goes into PostgreSQL and back out into a new data
directory; a server on that directory shows imaplib the same UIDVALIDITY,
UIDs and flags as the original node did, the same passwords log in, and
the queued message and the webhook endpoint are there.
"""

from __future__ import annotations

import json
from pathlib import Path

from mailstead.directory import Directory
from tests.cli.runner import run
from tests.e2e.harness import write_config
from tests.migrate.installation import build, logins_work, views


def test_a_round_trip_through_postgresql_keeps_what_clients_see(
    tmp_path: Path, pg_dsn: str
) -> None:
    install = build(tmp_path / "node")
    before = views(install.root)
    assert run(install.config, "migrate", "--to", "postgresql", pg_dsn).exit_code == 0
    pg_config = write_config(install.root, dsn=pg_dsn)
    exported = tmp_path / "back"
    exported.mkdir()

    result = run(pg_config, "migrate", "--to", "maildir", str(exported / "var"))

    assert result.exit_code == 0, result.output
    assert "MISMATCH" not in result.output
    assert "ok        alice@example.test Work: 3 messages" in result.output
    assert result.output.splitlines()[-1].startswith("migrated to maildir: 4 units copied")
    assert (exported / "var" / "mail" / "example.test" / "alice" / "Maildir" / ".Work").is_dir()
    exported_users = Directory(exported / "var" / "directory.sqlite3", ["example.test"])
    assert logins_work(exported_users)
    assert views(exported) == before  # a node on the exported directory
    node_config = exported / "mailstead.toml"
    (queued,) = json.loads(run(node_config, "queue", "list", "--json").output)
    assert [r["address"] for r in queued["recipients"]] == ["dave@remote.test"]
    hooks = json.loads(run(node_config, "webhook", "list", "--json").output)
    assert [h["url"] for h in hooks] == ["https://127.0.0.1:9/hooks"]


def test_an_export_into_a_directory_that_is_not_empty_is_refused(
    tmp_path: Path, pg_dsn: str
) -> None:
    config = write_config(tmp_path, dsn=pg_dsn)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "something").write_text("x")

    result = run(config, "migrate", "--to", "maildir", str(tmp_path / "busy"))

    assert result.exit_code == 1
    assert result.stderr == (
        f"mailstead: {tmp_path / 'busy'} is not empty; export into a new directory\n"
    )
