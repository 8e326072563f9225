"""`mailstead mailbox …` without a server: both storage formats, the query's forms,
hostile content, and an expunge the store's index agrees with.

The end-to-end run (SMTP in, IMAP beside, golden layouts) is
tests/e2e/test_mailbox_cli.py.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.store.account import Account
from mailstead.store.mbox_account import MboxAccount
from mailstead.store.paths import account_dir, maildir_path
from tests.cli.runner import run

ALICE = "alice@example.test"


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, config: Path) -> Path:
    """The config, with [storage] format set, alice and bob as users."""
    if request.param == "mbox":
        text = config.read_text()
        assert text.count('format = "maildir"') == 1
        config.write_text(text.replace('format = "maildir"', 'format = "mbox"'))
    for address in (ALICE, "bob@example.test"):
        run(config, "user", "add", address, "--password-stdin", stdin="pw\n")
    return config


def send(config: Path, subject: str, text: str = "hello") -> None:
    result = run(
        config, "send", "--from", "bob@example.test", "--to", ALICE,
        "--subject", subject, "--text", text,
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def uids(config: Path, *query: str, folder: str = "INBOX") -> list[int]:
    result = run(config, "mailbox", "search", ALICE, *query, "--folder", folder, "--json")
    assert result.exit_code == 0, result.output
    return [m["uid"] for m in json.loads(result.stdout)["messages"]]


def test_search_reads_imap_syntax_in_one_word_or_many(store: Path) -> None:
    send(store, "Quarterly report", "numbers inside")
    send(store, "Lunch?", "soup today")
    send(store, "Grüße aus Köln", "Straße")
    assert uids(store, "ALL") == [1, 2, 3]
    assert uids(store, 'OR SUBJECT lunch (BODY "numbers")') == [1, 2]
    assert uids(store, "SUBJECT", "quarterly report") == [1]
    assert uids(store, 'SUBJECT "köln"') == [3]  # non-ASCII goes in as a literal
    assert uids(store, "(OR SUBJECT grüße BODY nothing)") == [3]
    assert uids(store, "BODY", "straße") == [3]
    assert uids(store, "UID", "2:*", "NOT", "SUBJECT", "lunch") == [3]
    assert uids(store, "OR", "(", "SUBJECT", "lunch", ")", "SUBJECT", "(x)") == [2]
    assert uids(store, "LARGER 1 SMALLER 100000 FROM bob") == [1, 2, 3]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("NOPE", "bad query: Unknown search key NOPE"),
        ("(FROM x", "bad query: Missing )"),
        ('SUBJECT "x', "bad query: Unterminated quoted string"),
        ("SINCE yesterday", "bad query:"),
        ("", "empty query"),
        ("SUBJECT a\r\nb", "query must be one line"),
        ("SUBJECT " + "x" * 20_000, "query longer than 16384 octets"),
        ("SUBJECT {5}", "bad query:"),
    ],
)
def test_a_bad_query_is_one_line(store: Path, query: str, reason: str) -> None:
    result = run(store, "mailbox", "search", ALICE, query)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"mailstead: {reason}")
    assert result.stderr.count("\n") == 1


def test_list_counts_unseen_and_size_per_folder(store: Path) -> None:
    send(store, "one")
    send(store, "two")
    listed = json.loads(run(store, "mailbox", "list", ALICE, "--json").stdout)
    [inbox] = listed["folders"]
    assert (inbox["name"], inbox["messages"], inbox["unseen"]) == ("INBOX", 2, 2)
    assert inbox["size"] > 0
    text = run(store, "mailbox", "list", ALICE).stdout.splitlines()
    assert text[0].split() == ["folder", "messages", "unseen", "size"]
    assert text[1].split()[:3] == ["INBOX", "2", "2"]
    assert text[-1].startswith("-- ") and "in 2 messages, 2 unseen, in 1 folder" in text[-1]


def test_expunge_goes_through_the_index(store: Path) -> None:
    for subject in ("keep", "drop 1", "keep too", "drop 2"):
        send(store, subject)
    dry = run(store, "mailbox", "expunge", ALICE, "INBOX", "SUBJECT drop", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.count("would expunge UID") == 2
    assert uids(store, "ALL") == [1, 2, 3, 4]
    done = run(store, "mailbox", "expunge", ALICE, "INBOX", "SUBJECT", "drop")
    assert done.stdout == "expunged 2 messages from INBOX\n"
    assert uids(store, "ALL") == [1, 3]
    # What a new IMAP session would load: the index agrees, UIDNEXT is not reused.
    config = load_config(store)
    account: Account | MboxAccount
    if config.storage.format == "mbox":
        account = MboxAccount(account_dir(config.mail_root, ALICE))
    else:
        account = Account(maildir_path(config.mail_root, ALICE))
    box = account.mailbox("INBOX")
    box.refresh()
    assert list(box.uids) == [1, 3]
    assert box.uidnext == 5
    send(store, "after")
    assert uids(store, "ALL") == [1, 3, 5]


def test_show_views_and_json(store: Path) -> None:
    send(store, "Hello \x1b[31mred", "line one\nline two")
    shown = run(store, "mailbox", "show", ALICE, "inbox", "1")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert "From:     bob@example.test" in lines
    assert "Subject:  Hello \\x1b[31mred" in lines
    assert lines[-2:] == ["line one", "line two"]
    headers = run(store, "mailbox", "show", ALICE, "INBOX", "1", "--headers").stdout
    assert headers.startswith("Return-Path: <bob@example.test>\n")
    assert "line one" not in headers
    as_json = json.loads(run(store, "mailbox", "show", ALICE, "INBOX", "1", "--json").stdout)
    assert set(as_json) == {
        "uid", "folder", "flags", "size", "received_at", "headers", "text", "html", "attachments",
    }  # fmt: skip
    assert as_json["text"] == "line one\nline two\n" and as_json["html"] is None
    assert ["To", ALICE] in as_json["headers"]
    both = run(store, "mailbox", "show", ALICE, "INBOX", "1", "--raw", "--json")
    assert both.exit_code == 1 and "do not go together" in both.stderr


def test_reading_changes_no_flag(store: Path) -> None:
    send(store, "unread")
    run(store, "mailbox", "show", ALICE, "INBOX", "1")
    assert uids(store, "UNSEEN") == [1]


def test_a_user_with_no_mail_yet_gets_nothing_created(store: Path) -> None:
    config = load_config(store)
    before = sorted(p.relative_to(config.data_dir) for p in config.data_dir.rglob("*"))
    listed = json.loads(run(store, "mailbox", "list", ALICE, "--json").stdout)
    assert listed["folders"] == [{"name": "INBOX", "messages": 0, "unseen": 0, "size": 0}]
    search = run(store, "mailbox", "search", ALICE, "ALL")
    assert search.exit_code == 1 and "nothing stored yet" in search.stderr
    assert sorted(p.relative_to(config.data_dir) for p in config.data_dir.rglob("*")) == before


def test_mail_of_a_deleted_user_can_still_be_read(store: Path) -> None:
    send(store, "left behind")
    run(store, "user", "del", ALICE)
    assert uids(store, "ALL") == [1]
    nobody = run(store, "mailbox", "list", "nobody@example.test")
    assert nobody.exit_code == 1
    assert nobody.stderr == (
        "mailstead: no such user nobody@example.test (and no mail stored for it)\n"
    )


@pytest.mark.parametrize("address", ["../../etc@example.test", "a/b@example.test"])
def test_addresses_that_cannot_name_a_directory_are_refused(store: Path, address: str) -> None:
    result = run(store, "mailbox", "list", address)
    assert result.exit_code == 1
    assert result.stderr.startswith("mailstead: ") and result.stderr.count("\n") == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the commands as root")
def test_run_by_root_on_a_served_data_directory_every_file_stays_the_owners(
    store: Path,
) -> None:
    send(store, "one")
    send(store, "two")
    top = Path(tempfile.mkdtemp(prefix="mailstead-mailbox-", dir="/tmp"))
    try:
        top.chmod(0o755)
        shutil.copytree(store.parent / "var", top / "var", symlinks=True)
        config = top / "mailstead.toml"
        config.write_text(store.read_text())
        nobody = pwd.getpwnam("nobody")
        for path in [top / "var", *(top / "var").rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
        for args in (
            ["mailbox", "list", ALICE],
            ["mailbox", "search", ALICE, "ALL"],
            ["mailbox", "expunge", ALICE, "INBOX", "SUBJECT one"],
            ["user", "list"],
        ):
            done = subprocess.run(
                [sys.executable, "-m", "mailstead", "--config", str(config), *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
        owners = {p.lstat().st_uid for p in [top / "var", *(top / "var").rglob("*")]}
        assert owners == {nobody.pw_uid}
    finally:
        shutil.rmtree(top)


def test_an_expunge_is_a_webhook_event_as_from_imap(store: Path) -> None:
    send(store, "one")
    send(store, "two")
    added = run(store, "webhook", "add", "https://hooks.example.test/in", "--events", "message.*")
    assert added.exit_code == 0, added.output
    run(store, "mailbox", "expunge", ALICE, "INBOX", "SUBJECT two", "--dry-run")
    assert run(store, "mailbox", "expunge", ALICE, "INBOX", "SUBJECT two").exit_code == 0
    deliveries = json.loads(run(store, "webhook", "deliveries", "--json").stdout)
    assert [d["event_type"] for d in deliveries] == ["message.expunged"]


@pytest.mark.parametrize(
    "message",
    [
        # An unknown charset, a broken base64 body, a header that is not an address.
        b"From: <<<@@>>>\nSubject: =?x-nope?q?abc?=\nContent-Type: text/plain; charset=x-nope\n"
        b"Content-Transfer-Encoding: base64\n\n!!!not base64\n",
        # No header at all, NUL and 8-bit octets in the body.
        b"\n\x00\xff\xfe body\n",
        # A multipart without its boundary, nested message/rfc822.
        b'Content-Type: multipart/mixed; boundary="zz"\n\n--yy\nnot a part\n',
        b"Content-Type: message/rfc822\n\nSubject: inner\n\ninner body\n",
    ],
)
def test_hostile_messages_show_without_a_traceback(store: Path, message: bytes) -> None:
    config = load_config(store)
    account: Account | MboxAccount
    if config.storage.format == "mbox":
        account = MboxAccount(account_dir(config.mail_root, ALICE))
    else:
        account = Account(maildir_path(config.mail_root, ALICE))
    box = account.mailbox("INBOX")
    uid = box.append(message, [], None)
    for mode in ((), ("--json",), ("--headers",), ("--raw",)):
        result = run(store, "mailbox", "show", ALICE, "INBOX", str(uid), *mode)
        assert result.exit_code == 0, (mode, result.output)
        assert "\x00" not in result.stdout or mode == ("--raw",)
    found = run(store, "mailbox", "search", ALICE, "ALL", "--json")
    assert [m["uid"] for m in json.loads(found.stdout)["messages"]] == [uid]
