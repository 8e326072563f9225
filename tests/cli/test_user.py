"""`mailstead user …`: mailboxes that can log in."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.runner import run


def test_user_lifecycle(config: Path) -> None:
    assert run(
        config, "user", "add", "Alice@Example.TEST", "--password-stdin", stdin="s3cret\n"
    ).output == ("added user alice@example.test\n")
    assert run(config, "user", "list").output == "alice@example.test\n"
    assert json.loads(run(config, "user", "list", "--json").output) == [
        {"address": "alice@example.test"}
    ]
    assert (
        run(
            config, "user", "passwd", "alice@example.test", "--password-stdin", stdin="new\n"
        ).exit_code
        == 0
    )
    assert run(config, "user", "del", "alice@example.test").exit_code == 0
    assert json.loads(run(config, "user", "list", "--json").output) == []


def test_password_is_one_line_without_its_newline(config: Path) -> None:
    from mailstead.config import load_config
    from mailstead.directory import Directory

    run(
        config,
        "user",
        "add",
        "alice@example.test",
        "--password-stdin",
        stdin="pass word \r\nignored\n",
    )
    cfg = load_config(config)
    with Directory(cfg.db_path("directory"), cfg.domains) as d:
        assert d.authenticate("alice@example.test", "pass word ") == "alice@example.test"
