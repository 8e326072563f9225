"""`mailstead alias …`: addresses that forward to others, and what is wrong with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.runner import run


def add_users(config: Path, *addresses: str) -> None:
    for address in addresses:
        assert run(config, "user", "add", address, "--password-stdin", stdin="pw\n").exit_code == 0


def test_alias_lifecycle(config: Path) -> None:
    add_users(config, "a@example.test")
    result = run(config, "alias", "add", "Team@example.test", "a@example.test", "b@remote.test")
    assert result.exit_code == 0, result.output
    assert (result.stdout, result.stderr) == (
        "alias Team@example.test -> a@example.test, b@remote.test\n",
        "",
    )
    assert run(config, "alias", "add", "@example.test", "a@example.test").exit_code == 0
    assert json.loads(run(config, "alias", "list", "--json").output) == [
        {"alias": "@example.test", "targets": ["a@example.test"], "warnings": []},
        {
            "alias": "team@example.test",
            "targets": ["a@example.test", "b@remote.test"],
            "warnings": [],
        },
    ]
    assert (
        "team@example.test -> a@example.test, b@remote.test\n"
        in run(config, "alias", "list").output
    )
    assert run(config, "alias", "del", "team@example.test").exit_code == 0
    assert len(json.loads(run(config, "alias", "list", "--json").output)) == 1


@pytest.mark.parametrize(
    ("setup", "args", "warnings"),
    [
        # A local target that is neither a user nor an alias.
        (
            [],
            ["sales@example.test", "nobdy@example.test", "x@remote.test"],
            [
                "alias sales@example.test: target nobdy@example.test reaches no one"
                " (no such user or alias)"
            ],
        ),
        # ... and nothing else: the alias as a whole refuses mail.
        (
            [],
            ["sales@example.test", "nobdy@example.test"],
            [
                "alias sales@example.test: target nobdy@example.test reaches no one"
                " (no such user or alias)",
                "alias sales@example.test: delivers to no one: mail to it is refused",
            ],
        ),
        # Itself.
        (
            [],
            ["loop@example.test", "loop@example.test", "a@example.test"],
            ["alias loop@example.test: loop: loop@example.test -> loop@example.test"],
        ),
        # A chain that comes back.
        (
            [["one@example.test", "two@example.test"], ["two@example.test", "three@example.test"]],
            ["three@example.test", "one@example.test", "a@example.test"],
            [
                "alias three@example.test: loop: three@example.test -> one@example.test"
                " -> two@example.test -> three@example.test"
            ],
        ),
        # Fine: a user, a remote address, another alias.
        (
            [["list@example.test", "a@example.test"]],
            ["fine@example.test", "a@example.test", "x@remote.test", "list@example.test"],
            [],
        ),
    ],
)
def test_add_warns_about_what_reaches_no_one_and_loops(
    config: Path, setup: list[list[str]], args: list[str], warnings: list[str]
) -> None:
    add_users(config, "a@example.test")
    for alias in setup:
        run(config, "alias", "add", *alias)
    result = run(config, "alias", "add", *args)
    assert result.exit_code == 0, result.output  # stored all the same
    assert result.stderr.splitlines() == [f"mailstead: warning: {w}" for w in warnings]
    listed = json.loads(run(config, "alias", "list", "--json").output)
    mine = next(a for a in listed if a["alias"] == args[0])
    assert mine["warnings"] == [w.split(": ", 1)[1] for w in warnings]


def test_list_repeats_the_warnings_on_stderr_only(config: Path) -> None:
    run(config, "alias", "add", "sales@example.test", "x@remote.test", "gone@example.test")
    result = run(config, "alias", "list")
    assert result.stdout == "sales@example.test -> x@remote.test, gone@example.test\n"
    assert result.stderr == (
        "mailstead: warning: alias sales@example.test: target gone@example.test reaches no one"
        " (no such user or alias)\n"
    )
