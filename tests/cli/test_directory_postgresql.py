"""`mailstead init`, `user …` and `alias …` with ``backend = "postgresql"``: two nodes' configs
on one database see the same users and aliases."""

from __future__ import annotations

import json
from pathlib import Path

from mailstead.config import default_config_text, load_config
from mailstead.directory import open_directory
from mailstead.pgsql.connect import redact
from tests.cli.runner import run


def node_config(where: Path, dsn: str) -> Path:
    """A node's config: its own data directory, the shared database."""
    text = default_config_text("example.test", "mail.example.test").replace(
        'format = "maildir"', f'format = "maildir"\nbackend = "postgresql"\ndsn = "{dsn}"', 1
    )
    where.mkdir()
    path = where / "mailstead.toml"
    path.write_text(text, "utf-8")
    return path


def test_users_and_aliases_live_in_the_database(tmp_path: Path, pg_dsn: str) -> None:
    one, two = node_config(tmp_path / "one", pg_dsn), node_config(tmp_path / "two", pg_dsn)
    init = run(one, "init")
    assert init.exit_code == 0, init.output
    assert f"created user directory tables in {redact(pg_dsn)}\n" in init.output
    assert "user directory tables" not in run(two, "init").output  # there already
    assert not (tmp_path / "one/var/directory.sqlite3").exists()

    added = run(one, "user", "add", "Alice@Example.TEST", "--password-stdin", stdin="s3cret\n")
    assert added.output == "added user alice@example.test\n"
    again = run(two, "user", "add", "alice@example.test", "--password-stdin", stdin="x\n")
    assert (again.exit_code, again.stderr) == (
        1,
        "mailstead: user alice@example.test already exists\n",
    )
    assert json.loads(run(two, "user", "list", "--json").output) == [
        {"address": "alice@example.test", "messages": 0, "unseen": 0, "size": 0}
    ]

    aliased = run(two, "alias", "add", "Team@example.test", "alice@example.test", "b@remote.test")
    assert aliased.exit_code == 0, aliased.output
    assert json.loads(run(one, "alias", "list", "--json").output) == [
        {
            "alias": "team@example.test",
            "targets": ["alice@example.test", "b@remote.test"],
            "warnings": [],
        }
    ]
    # What a server on node two would check at login and at RCPT.
    with open_directory(load_config(two)) as directory:
        assert directory.authenticate("alice@example.test", "s3cret") == "alice@example.test"
        resolution = directory.resolve("team@example.test")
        assert resolution is not None and resolution.mailboxes == ("alice@example.test",)

    assert run(one, "user", "del", "alice@example.test").exit_code == 0
    assert json.loads(run(two, "user", "list", "--json").output) == []
