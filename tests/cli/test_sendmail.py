"""`mailstead sendmail`: what cron, mailx, git send-email and PHP's mail() hand it.

Each case is a command line and standard input; the outcome is the exit
status (sysexits), the one line on stderr, and what reached the queue or
the mailbox.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.message.sendmail_input import prepare, to_crlf
from mailstead.mta.queue import Queue
from tests.cli.runner import run

pytestmark = pytest.mark.usefixtures("users")


@pytest.fixture
def users(config: Path) -> None:
    for command in (
        ("user", "add", "alice@example.test", "--password-stdin"),
        ("alias", "add", "root@example.test", "alice@example.test"),
    ):
        result = run(config, *command, stdin="correct horse battery\n")
        assert result.exit_code == 0, result.output


@pytest.fixture
def queue(config: Path) -> Iterator[Queue]:
    with Queue(load_config(config).data_dir) as q:
        yield q


def inbox(config: Path, address: str = "alice@example.test") -> list[email.message.Message]:
    local, domain = address.split("@")
    new = load_config(config).mail_root / domain / local / "Maildir" / "new"
    return (
        [
            email.message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted(new.iterdir())
        ]
        if new.exists()
        else []
    )


def test_a_remote_recipient_is_queued_with_the_missing_headers_added(
    config: Path, queue: Queue
) -> None:
    result = run(
        config,
        "sendmail",
        "-i",
        "-f",
        "alice@example.test",
        "-F",
        "Alice Liddell",
        "bob@remote.test",
        stdin="Subject: report\n\nAll good.\n",
    )
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    (queued,) = queue.list()
    assert queued.sender == "alice@example.test"
    assert [r.address for r in queued.recipients] == ["bob@remote.test"]
    content = queue.open_message(queued.id)
    head, body = content.split(b"\r\n\r\n", 1)
    assert body == b"All good.\r\n"
    assert b"\r\nSubject: report\r\nFrom: Alice Liddell <alice@example.test>\r\nDate: " in head
    assert b"\r\nMessage-ID: <" in head and head.endswith(b"@mail.example.test>")


def test_cron_style_unqualified_recipient_goes_through_the_aliases(config: Path) -> None:
    # Debian cron: sendmail -FCronDaemon -i -B8BITMIME -oem root
    result = run(
        config,
        "sendmail",
        "-FCronDaemon",
        "-i",
        "-B8BITMIME",
        "-oem",
        "root",
        stdin="To: root\nSubject: Cron <root@host> run-parts\n\n/etc/cron.daily: ok\n",
    )
    assert (result.exit_code, result.stderr) == (0, "")
    (msg,) = inbox(config)
    assert msg["Subject"] == "Cron <root@host> run-parts"
    assert msg["From"].addresses[0].display_name == "CronDaemon"
    assert msg["From"].addresses[0].addr_spec.endswith("@mail.example.test")


def test_t_takes_to_cc_bcc_and_removes_bcc(config: Path, queue: Queue) -> None:
    result = run(
        config,
        "sendmail",
        "-t",
        "-i",
        "-f",
        "alice@example.test",
        stdin=(
            "From: Alice <alice@example.test>\n"
            "To: bob@remote.test, Carol <carol@remote.test>\n"
            "Cc: alice@example.test\n"
            "Bcc: secret@hidden.test,\n"
            " another@hidden.test\n"
            "Subject: plans\n\nSee you.\n"
        ),
    )
    assert (result.exit_code, result.stderr) == (0, "")
    (queued,) = queue.list()
    assert sorted(r.address for r in queued.recipients) == [
        "another@hidden.test",
        "bob@remote.test",
        "carol@remote.test",
        "secret@hidden.test",
    ]
    stored = queue.open_message(queued.id)
    assert b"Bcc" not in stored and b"hidden.test" not in stored
    (copy,) = inbox(config)
    assert "Bcc" not in copy and copy["Cc"] == "alice@example.test"


def test_without_i_a_lone_dot_ends_the_message(config: Path, queue: Queue) -> None:
    stdin = "Subject: dots\n\nfirst\n..stays\n.\nnever read\n"
    assert (
        run(config, "sendmail", "-f", "alice@example.test", "x@remote.test", stdin=stdin).exit_code
        == 0
    )
    assert (
        run(
            config, "sendmail", "-oi", "-f", "alice@example.test", "x@remote.test", stdin=stdin
        ).exit_code
        == 0
    )
    first, second = (queue.open_message(m.id) for m in queue.list())
    assert first.endswith(b"\r\n\r\nfirst\r\n..stays\r\n")  # no SMTP unstuffing on stdin
    assert second.endswith(b"\r\n\r\nfirst\r\n..stays\r\n.\r\nnever read\r\n")


@pytest.mark.parametrize(
    ("args", "stdin", "status", "stderr"),
    [
        (
            ["-t", "-i"],
            "Subject: x\n\nno one\n",
            64,
            "sendmail: no recipient in the command line or the To, Cc and Bcc fields\n",
        ),
        (["-i"], "Subject: x\n\n", 64, "sendmail: no recipient given\n"),
        (
            ["-bs"],
            "",
            64,
            "sendmail: mode -bs is not supported (only -bm, the default);"
            " usage: sendmail [-t] [-i|-oi] [-f SENDER] [-F NAME] [RECIPIENT...] < message\n",
        ),
        (
            ["-X"],
            "",
            64,
            "sendmail: unknown option -X; usage: sendmail [-t] [-i|-oi]"
            " [-f SENDER] [-F NAME] [RECIPIENT...] < message\n",
        ),
        (
            ["-f"],
            "",
            64,
            "sendmail: option -f needs a value; usage: sendmail [-t] [-i|-oi]"
            " [-f SENDER] [-F NAME] [RECIPIENT...] < message\n",
        ),
        (
            ["-i", "nobody@example.test"],
            "x\n",
            67,
            "sendmail: nobody@example.test: 550 5.1.1 No such user here; nothing sent\n",
        ),
        (["-i", "bad address@remote.test"], "x\n", 65, None),
        (
            ["-i", "-f", "<>", "x@remote.test"],
            "x\n",
            64,
            "sendmail: the null sender (-f '<>') is not supported\n",
        ),
    ],
)
def test_failures_are_sysexits_with_one_line(
    config: Path, queue: Queue, args: list[str], stdin: str, status: int, stderr: str | None
) -> None:
    result = run(config, "sendmail", *args, stdin=stdin)
    assert (result.exit_code, result.stdout) == (status, "")
    if stderr is not None:
        assert result.stderr == stderr
    assert result.stderr.count("\n") == 1
    assert queue.list() == []


def test_no_config_is_ex_config(tmp_path: Path) -> None:
    result = run(tmp_path / "absent.toml", "sendmail", "-i", "x@remote.test", stdin="x\n")
    assert result.exit_code == 78
    assert result.stderr.startswith("sendmail: ") and result.stderr.count("\n") == 1


def test_too_large_is_ex_dataerr(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailstead.limits import SMTPLimits

    monkeypatch.setattr("mailstead.cli.sendmail.SMTPLimits", lambda: SMTPLimits(message_size=1000))
    result = run(config, "sendmail", "-i", "x@remote.test", stdin="x" * 2000 + "\n")
    assert (result.exit_code, result.stderr) == (
        65,
        "sendmail: message too large (at most 1000 bytes)\n",
    )


# -- the message itself, without the command line ---------------------------------


def _prepared(
    text: bytes, *, extract: bool = False, dot_ends: bool = False
) -> tuple[bytes, tuple[str, ...]]:
    p = prepare(
        to_crlf(text, dot_ends=dot_ends),
        extract=extract,
        sender="me@h.test",
        full_name="Mé",
        hostname="h.test",
        now=0.0,
    )
    return p.content, p.header_recipients


def test_input_without_header_section_gets_one() -> None:
    content, _ = _prepared(b"just a body line\nand another\n")
    head, body = content.split(b"\r\n\r\n", 1)
    assert head.startswith(b"From: =?utf-8?b?TcOp?= <me@h.test>\r\nDate: ")
    assert body == b"just a body line\r\nand another\r\n"


def test_existing_headers_are_kept_byte_for_byte() -> None:
    text = (
        b"From: me <me@h.test>\nDate: Thu, 1 Jan 1970 00:00:00 +0000\n"
        b"Message-ID: <x@y>\nX-Folded: a\n\tb\n\nbody\n"
    )
    content, _ = _prepared(text)
    assert content == text.replace(b"\n", b"\r\n")


def test_mbox_from_line_is_dropped() -> None:
    content, _ = _prepared(
        b"From me@h.test Thu Jan  1 00:00:00 1970\n"
        b"From: me@h.test\nDate: x\nMessage-ID: <a@b>\n\nbody\n"
    )
    assert content == b"From: me@h.test\r\nDate: x\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n"


def test_resent_recipients_win_over_the_originals_with_t() -> None:
    content, rcpts = _prepared(
        b"To: old@x.test\nResent-To: new@x.test\nResent-Bcc: quiet@x.test\n\nbody\n", extract=True
    )
    assert rcpts == ("new@x.test", "quiet@x.test")
    assert b"Resent-Bcc" not in content and b"Resent-To: new@x.test" in content


def test_group_syntax_names_no_recipient() -> None:
    _, rcpts = _prepared(b"To: undisclosed-recipients:;\nBcc: a@x.test\n\nb\n", extract=True)
    assert rcpts == ("a@x.test",)


def test_stand_alone_entry_point_reads_mailstead_config(
    config: Path, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    from mailstead.cli.sendmail import console_main

    monkeypatch.setenv("MAILSTEAD_CONFIG", str(config))
    monkeypatch.setattr(
        sys, "argv", ["sendmail", "-i", "-f", "alice@example.test", "x@remote.test"]
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Subject: s\n\nbody\n")))
    with pytest.raises(SystemExit) as exited:
        console_main()
    assert exited.value.code == 0
    (queued,) = queue.list()
    assert queue.open_message(queued.id).endswith(b"\r\n\r\nbody\r\n")
