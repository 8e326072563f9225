"""`mailstead user …`: mailboxes that can log in."""

from __future__ import annotations

import json
import os
import pty
import select
import sys
from pathlib import Path

import pytest

from mailstead.cli.user import parse_size
from mailstead.config import load_config
from mailstead.directory import Directory
from tests.cli.runner import run


def test_user_lifecycle(config: Path) -> None:
    assert run(
        config, "user", "add", "Alice@Example.TEST", "--password-stdin", stdin="s3cret\n"
    ).output == ("added user alice@example.test\n")
    assert run(config, "user", "list").output == (
        "alice@example.test      0 messages       0 unseen        0 B\n"
    )
    assert json.loads(run(config, "user", "list", "--json").output) == [
        {"address": "alice@example.test", "messages": 0, "unseen": 0, "size": 0}
    ]
    assert (
        run(
            config, "user", "passwd", "alice@example.test", "--password-stdin", stdin="new\n"
        ).exit_code
        == 0
    )
    assert run(config, "user", "del", "alice@example.test").exit_code == 0
    assert json.loads(run(config, "user", "list", "--json").output) == []


def test_user_list_counts_every_folder(config: Path) -> None:
    for address in ("alice@example.test", "bob@example.test"):
        run(config, "user", "add", address, "--password-stdin", stdin="pw\n")
    for subject in ("one", "two"):
        sent = run(
            config, "send", "--from", "bob@example.test", "--to", "alice@example.test",
            "--subject", subject, "--text", "hello",
        )  # fmt: skip
        assert sent.exit_code == 0, sent.output
    listed = {u["address"]: u for u in json.loads(run(config, "user", "list", "--json").output)}
    alice, bob = listed["alice@example.test"], listed["bob@example.test"]
    assert (alice["messages"], alice["unseen"]) == (2, 2) and alice["size"] > 0
    assert (bob["messages"], bob["unseen"], bob["size"]) == (0, 0, 0)
    lines = run(config, "user", "list").output.splitlines()
    assert lines[0].startswith("alice@example.test") and "2 messages" in lines[0]


def test_deleting_a_user_names_the_aliases_left_pointing_nowhere(config: Path) -> None:
    run(config, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    run(config, "user", "add", "bob@example.test", "--password-stdin", stdin="pw\n")
    run(config, "alias", "add", "sales@example.test", "alice@example.test")
    run(config, "alias", "add", "team@example.test", "alice@example.test", "bob@example.test")
    result = run(config, "user", "del", "alice@example.test")
    assert result.exit_code == 0
    assert result.stdout == "deleted user alice@example.test\n"
    assert result.stderr == (
        "mailstead: warning: alias sales@example.test: target alice@example.test reaches no one"
        " (no such user or alias)\n"
        "mailstead: warning: alias sales@example.test: delivers to no one: mail to it is refused\n"
        "mailstead: warning: alias team@example.test: target alice@example.test reaches no one"
        " (no such user or alias)\n"
    )


def test_password_is_one_line_without_its_newline(config: Path) -> None:
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


# --- the password prompt on a terminal (a real pty, as an operator's shell has) ---------


def on_terminal(config: Path, args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run ``mailstead ARGS`` with a pty as its terminal, typing ``answers`` at each
    ``: `` prompt; (exit status, everything the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin, stdout, stderr and /dev/tty are the pty
        os.execv(
            sys.executable, [sys.executable, "-m", "mailstead", "--config", str(config), *args]
        )
    shown = b""
    try:
        for answer in answers:
            while not shown.endswith(b": "):
                shown += _read(fd)
            os.write(fd, answer.encode() + b"\r")
            shown += b"<typed>"
        while True:
            chunk = _read(fd)
            if not chunk:
                break
            shown += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode()


def _read(fd: int) -> bytes:
    ready, _, _ = select.select([fd], [], [], 60)
    assert ready, "the command printed nothing for 60 s"
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the child closed the terminal
        return b""


def _authenticates(config: Path, address: str, password: str) -> bool:
    cfg = load_config(config)
    with Directory(cfg.db_path("directory"), cfg.domains) as d:
        return d.authenticate(address, password) == address


def test_a_terminal_is_asked_twice_without_echo(config: Path) -> None:
    status, shown = on_terminal(
        config, ["user", "add", "alice@example.test"], ["horse staple", "horse staple"]
    )
    assert status == 0, shown
    assert shown.replace("\r\n", "\n") == (
        "New password for alice@example.test: <typed>\nAgain: <typed>\n"
        "added user alice@example.test\n"
    )
    assert _authenticates(config, "alice@example.test", "horse staple")

    status, shown = on_terminal(config, ["user", "passwd", "alice@example.test"], ["b2", "b2"])
    assert status == 0, shown
    assert "b2" not in shown and "changed password of alice@example.test" in shown
    assert _authenticates(config, "alice@example.test", "b2")


def test_two_different_passwords_are_refused(config: Path) -> None:
    status, shown = on_terminal(config, ["user", "add", "alice@example.test"], ["one", "two"])
    assert status == 1
    assert shown.endswith("mailstead: the two passwords do not match; nothing changed\r\n")
    cfg = load_config(config)
    with Directory(cfg.db_path("directory"), cfg.domains) as d:
        assert d.users() == []


def test_an_existing_user_is_refused_before_any_password_is_asked(config: Path) -> None:
    run(config, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    status, shown = on_terminal(config, ["user", "add", "alice@example.test"], [])
    assert (status, shown) == (1, "mailstead: user alice@example.test already exists\r\n")


@pytest.mark.parametrize("command", ["add", "passwd"])
def test_without_a_terminal_the_password_must_come_from_stdin(config: Path, command: str) -> None:
    result = run(config, "user", command, "alice@example.test")
    assert result.exit_code == 1
    assert "--password-stdin" in result.stderr


# -- user quota (RFC 9208 limits; SMTP 452 4.2.2 and IMAP OVERQUOTA beyond them) --------


def test_user_quota_sets_shows_and_clears(config: Path) -> None:
    run(config, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    assert run(config, "user", "quota", "alice@example.test").output == (
        "alice@example.test\n  storage   0 B of no limit\n  messages  0 of no limit\n"
    )
    set_both = run(
        config, "user", "quota", "Alice@Example.TEST", "--storage", "1G", "--messages", "100000"
    )
    assert set_both.exit_code == 0, set_both.output
    assert set_both.output == (
        "alice@example.test\n  storage   0 B of 1.0 GiB\n  messages  0 of 100000\n"
    )
    # One limit at a time: the other stays.
    run(config, "user", "quota", "alice@example.test", "--messages", "5")
    assert json.loads(run(config, "user", "quota", "alice@example.test", "--json").output) == {
        "address": "alice@example.test",
        "storage": {"used": 0, "limit": 1024**3},
        "messages": {"used": 0, "limit": 5},
    }
    cleared = run(config, "user", "quota", "alice@example.test", "--none", "--json")
    assert json.loads(cleared.output) == {
        "address": "alice@example.test",
        "storage": {"used": 0, "limit": None},
        "messages": {"used": 0, "limit": None},
    }


def test_user_quota_counts_every_folder_and_recounts(config: Path) -> None:
    for address in ("alice@example.test", "bob@example.test"):
        run(config, "user", "add", address, "--password-stdin", stdin="pw\n")
    sent = run(
        config, "send", "--from", "bob@example.test", "--to", "alice@example.test",
        "--subject", "one", "--text", "hello",
    )  # fmt: skip
    assert sent.exit_code == 0, sent.output
    shown = json.loads(run(config, "user", "quota", "alice@example.test", "--json").output)
    assert shown["messages"]["used"] == 1 and shown["storage"]["used"] > 100
    recounted = run(config, "user", "quota", "alice@example.test", "--recount", "--json")
    assert json.loads(recounted.output) == shown


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["nobody@example.test"], "mailstead: no such user nobody@example.test\n"),
        (
            ["nobody@example.test", "--messages", "3"],
            "mailstead: no such user nobody@example.test\n",
        ),
        (
            ["alice@example.test", "--storage", "lots"],
            "mailstead: --storage 'lots': expected a size like 500M, 1G or 1048576\n",
        ),
        (
            ["alice@example.test", "--storage", "-1G"],
            "mailstead: --storage '-1G': expected a size like 500M, 1G or 1048576\n",
        ),
        (
            ["alice@example.test", "--none", "--messages", "3"],
            "mailstead: --none cannot go with --storage or --messages\n",
        ),
    ],
)
def test_user_quota_refusals(config: Path, args: list[str], error: str) -> None:
    run(config, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    result = run(config, "user", "quota", *args)
    assert (result.exit_code, result.stderr) == (1, error)


@pytest.mark.parametrize(
    ("text", "octets"),
    [("1048576", 1048576), ("500M", 500 * 1024**2), ("1G", 1024**3), ("64KiB", 65536),
     ("2gb", 2 * 1024**3), ("1.5M", 1572864)],
)  # fmt: skip
def test_storage_sizes(text: str, octets: int) -> None:
    assert parse_size(text) == octets
