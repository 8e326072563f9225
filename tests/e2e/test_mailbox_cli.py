"""`mailstead mailbox` against a running server: mail arrives over SMTP (smtplib), an
IMAP client works on it (imaplib), and the CLI shows and expunges what both see.

Text layouts are compared with tests/cli/golden/mailbox/ (times replaced by
``<time>``); ``--json`` is checked against the shapes docs/cli.md documents.
"""

from __future__ import annotations

import imaplib
import json
import re
import smtplib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailstead.cli import main
from tests.cli.golden_files import assert_golden
from tests.e2e.harness import ServerHandle, client_tls_context

ALICE = "alice@example.test"
TIMEOUT = 10
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_SIZE = re.compile(r"\b[1-9][0-9.]* (?:B|KiB|MiB)\b")

PLAIN = (
    "From: Carol Example <carol@remote.test>\r\n"
    f"To: {ALICE}\r\n"
    "Subject: Quarterly report\r\n"
    "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
    "\r\n"
    "The numbers are in.\r\nSee you on Monday.\r\n"
)
# Encoded words in From and Subject, an HTML-only body and an attachment.
HTML_WITH_ATTACHMENT = (
    "From: =?utf-8?q?Jos=C3=A9_Mu=C3=B1oz?= <jose@remote.test>\r\n"
    f"To: {ALICE}\r\n"
    "Subject: =?utf-8?q?Caf=C3=A9_menu?=\r\n"
    "Date: Mon, 07 Dec 2026 11:00:00 +0000\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<html><body><p>Today: <b>soup</b></p></body></html>\r\n"
    "--b1\r\n"
    'Content-Type: application/pdf; name="menu.pdf"\r\n'
    'Content-Disposition: attachment; filename="menu.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQK\r\n"
    "--b1--\r\n"
)
# A terminal escape in the subject: shown escaped, never sent to the terminal.
HOSTILE = (
    "From: mallory@remote.test\r\n"
    f"To: {ALICE}\r\n"
    "Subject: \x1b[2Jcleared?\r\n"
    "Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n"
    "\r\n"
    "\x1b]0;title\x07body\r\n"
)


def deliver(server: ServerHandle, *messages: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as smtp:
        for message in messages:
            smtp.sendmail("sender@remote.test", [ALICE], message.encode("utf-8"))


def imap(server: ServerHandle) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls_context(), timeout=TIMEOUT
    )
    client.login(ALICE, "alice-pw")
    return client


def cli(server: ServerHandle, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(server.config.path), *args])


def text(result: Result) -> str:
    """The output with times and sizes replaced: the trace fields the server adds
    (Received, Authentication-Results) change the sizes, not the layout."""
    assert result.exit_code == 0, result.output
    out = _TIME.sub("<time>", result.stdout)
    return _SIZE.sub(lambda m: "<size>".rjust(len(m.group())), out)


@pytest.fixture(params=["maildir", "mbox"])
def any_server(request: pytest.FixtureRequest) -> ServerHandle:
    handle: ServerHandle = request.getfixturevalue(
        "server" if request.param == "maildir" else "mbox_server"
    )
    return handle


def test_list_search_show_and_expunge_what_smtp_delivered(any_server: ServerHandle) -> None:
    server = any_server
    deliver(server, PLAIN, HTML_WITH_ATTACHMENT, HOSTILE)
    client = imap(server)
    client.create("Projects")
    client.select("INBOX")
    client.uid("STORE", "1", "+FLAGS", r"(\Seen)")

    assert_golden("mailbox/list.txt", text(cli(server, "mailbox", "list", ALICE)))
    listed = json.loads(cli(server, "mailbox", "list", ALICE, "--json").stdout)
    assert listed["address"] == ALICE
    folders = {f["name"]: f for f in listed["folders"]}
    assert listed["folders"][0]["name"] == "INBOX" and "Projects" in folders
    assert {k: folders["INBOX"][k] for k in ("messages", "unseen")} == {"messages": 3, "unseen": 2}
    assert set(folders["INBOX"]) == {"name", "messages", "unseen", "size"}

    assert_golden("mailbox/search_all.txt", text(cli(server, "mailbox", "search", ALICE, "ALL")))
    found = json.loads(cli(server, "mailbox", "search", ALICE, "UNSEEN", "--json").stdout)
    assert [m["uid"] for m in found["messages"]] == [2, 3]
    assert set(found["messages"][0]) == {
        "uid", "flags", "size", "received_at", "date", "from", "subject",
    }  # fmt: skip
    assert found["messages"][0]["subject"] == "Café menu"
    # Several words: each one key or value; a value with a space needs no IMAP quotes.
    two_words = cli(server, "mailbox", "search", ALICE, "SUBJECT", "quarterly report", "--json")
    assert [m["uid"] for m in json.loads(two_words.stdout)["messages"]] == [1]
    assert (
        "bad query: Unknown search key NOPE"
        in cli(server, "mailbox", "search", ALICE, "NOPE").stderr
    )

    assert_golden(
        "mailbox/show_plain.txt", text(cli(server, "mailbox", "show", ALICE, "INBOX", "1"))
    )
    assert_golden(
        "mailbox/show_html.txt", text(cli(server, "mailbox", "show", ALICE, "INBOX", "2"))
    )
    hostile = cli(server, "mailbox", "show", ALICE, "INBOX", "3")
    assert "\x1b" not in hostile.stdout and "\\x1b[2Jcleared?" in hostile.stdout
    shown = json.loads(cli(server, "mailbox", "show", ALICE, "INBOX", "2", "--json").stdout)
    assert shown["attachments"] == [
        {"filename": "menu.pdf", "content_type": "application/pdf", "size": 9}
    ]
    assert shown["text"] is None and "<b>soup</b>" in shown["html"]
    raw = cli(server, "mailbox", "show", ALICE, "INBOX", "1", "--raw")
    assert raw.stdout_bytes.endswith(b"The numbers are in.\nSee you on Monday.\n")

    # The selected IMAP session learns of the expunge at its next command.
    dry = cli(server, "mailbox", "expunge", ALICE, "INBOX", "FROM mallory", "--dry-run")
    assert_golden("mailbox/expunge_dry_run.txt", text(dry))
    done = cli(server, "mailbox", "expunge", ALICE, "INBOX", "FROM mallory")
    assert done.stdout == "expunged 1 message from INBOX\n"
    typ, _ = client.noop()
    assert typ == "OK"
    assert client.response("EXPUNGE")[1] == [b"3"]
    typ, data = client.uid("SEARCH", "ALL")
    assert data == [b"1 2"]
    client.logout()

    users = json.loads(cli(server, "user", "list", "--json").stdout)
    alice = next(u for u in users if u["address"] == ALICE)
    after = json.loads(cli(server, "mailbox", "list", ALICE, "--json").stdout)["folders"]
    assert (alice["messages"], alice["unseen"]) == (2, 1)
    assert alice["size"] == sum(f["size"] for f in after) > 0


def test_unknown_folder_and_uid_are_one_line(server: ServerHandle) -> None:
    deliver(server, PLAIN)
    for args, reason in [
        (("show", ALICE, "Nope", "1"), "no folder 'Nope'"),
        (("show", ALICE, "INBOX", "9"), "no message with UID 9 in INBOX"),
        (("list", "nobody@example.test"), "no such user nobody@example.test"),
        (("list", "alice@elsewhere.test"), "elsewhere.test is not a local domain"),
    ]:
        result = cli(server, "mailbox", *args)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("mailstead: ") and result.stderr.count("\n") == 1
        assert reason in result.stderr


def _assert_no_files(path: Path) -> None:
    assert not path.exists()


def test_a_user_without_mail_has_an_empty_inbox_and_nothing_is_created(
    server: ServerHandle,
) -> None:
    result = cli(server, "mailbox", "list", "bob@example.test", "--json")
    assert json.loads(result.stdout) == {
        "address": "bob@example.test",
        "folders": [{"name": "INBOX", "messages": 0, "unseen": 0, "size": 0}],
    }
    _assert_no_files(server.maildir("bob@example.test"))
