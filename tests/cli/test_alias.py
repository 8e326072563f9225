"""`mailstead alias …`: addresses that forward to others."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.runner import run


def test_alias_lifecycle(config: Path) -> None:
    result = run(config, "alias", "add", "Team@example.test", "a@example.test", "b@remote.test")
    assert result.exit_code == 0, result.output
    assert run(config, "alias", "add", "@example.test", "a@example.test").exit_code == 0
    assert json.loads(run(config, "alias", "list", "--json").output) == [
        {"alias": "@example.test", "targets": ["a@example.test"]},
        {"alias": "team@example.test", "targets": ["a@example.test", "b@remote.test"]},
    ]
    assert (
        "team@example.test -> a@example.test, b@remote.test\n"
        in run(config, "alias", "list").output
    )
    assert run(config, "alias", "del", "team@example.test").exit_code == 0
    assert len(json.loads(run(config, "alias", "list", "--json").output)) == 1
