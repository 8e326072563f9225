"""`mailstead send --cc --bcc --attach --text -`: copies, blind copies, files, a body on stdin."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.mta.queue import Queue
from tests.cli.runner import run


@pytest.fixture
def users(config: Path) -> Path:
    for address in ("alice@example.test", "bob@example.test"):
        done = run(config, "user", "add", address, "--password-stdin", stdin="pw-long-enough\n")
        assert done.exit_code == 0, done.output
    return config


def inbox(config: Path, address: str) -> list[EmailMessage]:
    local, domain = address.split("@")
    new = load_config(config).mail_root / domain / local / "Maildir" / "new"
    out = []
    for p in sorted(new.iterdir()) if new.exists() else []:
        msg = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def test_cc_is_named_and_bcc_is_not(users: Path) -> None:
    result = run(
        users,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--cc",
        "carol@remote.test",
        "--bcc",
        "dave@remote.test",
        "--bcc",
        "alice@example.test",
        "--subject",
        "plan",
        "--text",
        "hello",
    )
    assert result.exit_code == 0, result.output
    assert "queue id " in result.stdout and "for 2 remote recipient(s)" in result.stdout
    (to_bob,) = inbox(users, "bob@example.test")
    (to_alice,) = inbox(users, "alice@example.test")  # her blind copy
    for msg in (to_bob, to_alice):
        assert (msg["To"], msg["Cc"], msg["Bcc"]) == ("bob@example.test", "carol@remote.test", None)
    with Queue(load_config(users).data_dir) as q:
        (queued,) = q.list()
        assert [r.address for r in queued.recipients] == ["carol@remote.test", "dave@remote.test"]
        assert b"dave" not in q.open_message(queued.id)


def test_attachments_with_guessed_types(users: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 not really")
    notes = tmp_path / "notes.txt"
    notes.write_text("plain notes\n")
    blob = tmp_path / "data.weird-extension"
    blob.write_bytes(bytes(range(256)))
    result = run(
        users,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--text",
        "see attached",
        "--attach",
        str(report),
        "--attach",
        str(notes),
        "--attach",
        str(blob),
    )
    assert result.exit_code == 0, result.output
    (msg,) = inbox(users, "bob@example.test")
    assert msg.get_content_type() == "multipart/mixed"
    body, *files = msg.iter_parts()
    assert body.get_content() == "see attached\n"
    assert [
        (f.get_filename(), f.get_content_type(), f.get_content_disposition()) for f in files
    ] == [
        ("report.pdf", "application/pdf", "attachment"),
        ("notes.txt", "text/plain", "attachment"),
        ("data.weird-extension", "application/octet-stream", "attachment"),
    ]
    assert files[0].get_payload(decode=True) == b"%PDF-1.4 not really"
    assert files[2].get_payload(decode=True) == bytes(range(256))


def test_text_from_standard_input(users: Path) -> None:
    result = run(
        users,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--subject",
        "df",
        "--text",
        "-",
        stdin="Filesystem  Use%\n/dev/sda1   91%\n",
    )
    assert result.exit_code == 0, result.output
    (msg,) = inbox(users, "bob@example.test")
    assert msg.get_content() == "Filesystem  Use%\n/dev/sda1   91%\n"


@pytest.mark.parametrize(
    ("args", "stdin", "reason"),
    [
        (("--attach", "/nonexistent/file"), None, "'/nonexistent/file' does not exist"),
        (("--cc", "not an address"), None, "bad recipient address"),
    ],
)
def test_bad_extras_are_refused(
    users: Path, args: tuple[str, ...], stdin: str | None, reason: str
) -> None:
    result = run(
        users,
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--text",
        "x",
        *args,
        stdin=stdin,
    )
    assert result.exit_code != 0
    assert reason in result.stderr
    assert inbox(users, "bob@example.test") == []


def test_binary_standard_input_is_refused(users: Path) -> None:
    from click.testing import CliRunner

    from mailstead.cli import main

    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(users),
            "send",
            "--from",
            "alice@example.test",
            "--to",
            "bob@example.test",
            "--text",
            "-",
        ],
        input=b"\xff\xfe binary",
    )
    assert (result.exit_code, result.stderr) == (1, "mailstead: standard input is not UTF-8 text\n")
