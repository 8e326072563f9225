"""`mailstead mailbox …` with ``[storage] backend = "postgresql"``: the commands read
and expunge in the cluster database, through the store the IMAP server uses,
with the output and ``--json`` shapes of the files' case (test_mailbox.py).

Two nodes' configs share one database: what one node's command changes, the
other's sees. Mail goes in through the store's own delivery (``open_mail_store``),
as a node's SMTP server would put it there. ``backup`` and ``restore``, which
copy a node's data directory, refuse and name pg_dump.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mailstead.config import default_config_text, load_config
from mailstead.store import open_mail_store
from mailstead.store.pg_inspect import (
    cluster_pool,
    cluster_totals,
    cluster_usage,
    open_cluster_account,
)
from mailstead.store.usage_columns import Usage
from tests.cli.runner import run

ALICE = "alice@example.test"


def node_config(where: Path, dsn: str) -> Path:
    """A node's config: its own data directory, the shared database."""
    text = default_config_text("example.test", "mail.example.test").replace(
        'format = "maildir"', f'format = "maildir"\nbackend = "postgresql"\ndsn = "{dsn}"', 1
    )
    where.mkdir()
    path = where / "mailstead.toml"
    path.write_text(text, "utf-8")
    assert run(path, "init").exit_code == 0
    return path


@pytest.fixture
def nodes(tmp_path: Path, pg_dsn: str) -> tuple[Path, Path]:
    """Two nodes' configs on the test's database, alice and bob as users."""
    one, two = node_config(tmp_path / "one", pg_dsn), node_config(tmp_path / "two", pg_dsn)
    for address in (ALICE, "bob@example.test"):
        assert run(one, "user", "add", address, "--password-stdin", stdin="pw\n").exit_code == 0
    return one, two


def deliver(config_path: Path, subject: str, text: str = "hello") -> None:
    message = (
        f"Return-Path: <bob@example.test>\nFrom: bob@example.test\nTo: {ALICE}\n"
        f"Subject: {subject}\nContent-Type: text/plain; charset=utf-8\n\n{text}\n"
    ).encode()
    stores = open_mail_store(load_config(config_path))
    stores.delivery.deliver(ALICE, [message], "bob@example.test", time.time())


def uids(config: Path, *query: str, folder: str = "INBOX") -> list[int]:
    result = run(config, "mailbox", "search", ALICE, *query, "--folder", folder, "--json")
    assert result.exit_code == 0, result.output
    return [m["uid"] for m in json.loads(result.stdout)["messages"]]


def test_list_search_show_on_one_node_see_mail_the_other_stored(
    nodes: tuple[Path, Path],
) -> None:
    one, two = nodes
    deliver(one, "Quarterly report", "numbers inside")
    deliver(one, "Lunch?", "soup today")
    deliver(one, "Grüße aus Köln", "Straße")
    assert uids(two, "ALL") == [1, 2, 3]
    assert uids(two, 'OR SUBJECT lunch (BODY "numbers")') == [1, 2]
    assert uids(two, 'SUBJECT "köln"') == [3]
    assert uids(two, "BODY", "straße") == [3]

    listed = json.loads(run(two, "mailbox", "list", ALICE, "--json").stdout)
    assert listed["address"] == ALICE
    [inbox] = listed["folders"]
    assert (inbox["name"], inbox["messages"], inbox["unseen"]) == ("INBOX", 3, 3)
    assert inbox["size"] > 0
    text = run(two, "mailbox", "list", ALICE).stdout.splitlines()
    assert text[0].split() == ["folder", "messages", "unseen", "size"]
    assert text[1].split()[:3] == ["INBOX", "3", "3"]
    assert "in 3 messages, 3 unseen, in 1 folder" in text[-1]

    found = json.loads(run(two, "mailbox", "search", ALICE, "SUBJECT lunch", "--json").stdout)
    assert found["folder"] == "INBOX"
    [lunch] = found["messages"]
    assert set(lunch) == {"uid", "flags", "size", "received_at", "date", "from", "subject"}
    assert (lunch["uid"], lunch["from"], lunch["subject"]) == (2, "bob@example.test", "Lunch?")

    shown = run(two, "mailbox", "show", ALICE, "inbox", "3")
    assert shown.exit_code == 0, shown.output
    assert "Subject:  Grüße aus Köln" in shown.stdout.splitlines()
    assert shown.stdout.splitlines()[-1] == "Straße"
    headers = run(two, "mailbox", "show", ALICE, "INBOX", "3", "--headers").stdout
    assert headers.startswith("Return-Path: <bob@example.test>\n")
    as_json = json.loads(run(two, "mailbox", "show", ALICE, "INBOX", "3", "--json").stdout)
    assert set(as_json) == {
        "uid", "folder", "flags", "size", "received_at", "headers", "text", "html", "attachments",
    }  # fmt: skip
    assert as_json["text"] == "Straße\n" and as_json["flags"] == []
    missing = run(two, "mailbox", "show", ALICE, "INBOX", "9")
    assert (missing.exit_code, missing.stderr) == (
        1,
        "mailstead: no message with UID 9 in INBOX\n",
    )
    assert uids(one, "UNSEEN") == [1, 2, 3]  # reading changes no flag


def test_expunge_is_the_stores_and_uids_are_not_reused(nodes: tuple[Path, Path]) -> None:
    one, two = nodes
    for subject in ("keep", "drop 1", "keep too", "drop 2"):
        deliver(one, subject)
    dry = run(two, "mailbox", "expunge", ALICE, "INBOX", "SUBJECT drop", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.count("would expunge UID") == 2
    assert uids(one, "ALL") == [1, 2, 3, 4]
    done = run(two, "mailbox", "expunge", ALICE, "INBOX", "SUBJECT", "drop")
    assert done.stdout == "expunged 2 messages from INBOX\n"
    assert uids(one, "ALL") == [1, 3]
    # What a new IMAP session on any node would load: UIDNEXT is not handed out again.
    account = open_cluster_account(cluster_pool(load_config(one).storage.dsn), ALICE)
    assert account is not None
    box = account.mailbox("INBOX")
    box.refresh()
    assert (box.uids, box.uidnext) == ([1, 3], 5)
    assert box.expunged_since(0) == [2, 4]
    deliver(two, "after")
    assert uids(one, "ALL") == [1, 3, 5]


def test_a_user_with_no_mail_yet_gets_nothing_created(nodes: tuple[Path, Path]) -> None:
    one, _ = nodes
    listed = json.loads(run(one, "mailbox", "list", ALICE, "--json").stdout)
    assert listed["folders"] == [{"name": "INBOX", "messages": 0, "unseen": 0, "size": 0}]
    search = run(one, "mailbox", "search", ALICE, "ALL")
    assert (search.exit_code, search.stderr) == (
        1,
        "mailstead: no folder 'INBOX' (nothing stored yet)\n",
    )
    assert open_cluster_account(cluster_pool(load_config(one).storage.dsn), ALICE) is None
    nobody = run(one, "mailbox", "list", "nobody@example.test")
    assert (nobody.exit_code, nobody.stderr) == (
        1,
        "mailstead: no such user nobody@example.test (and no mail stored for it)\n",
    )


def test_mail_of_a_deleted_user_stays_in_the_database(nodes: tuple[Path, Path]) -> None:
    one, two = nodes
    deliver(one, "left behind")
    assert run(one, "user", "del", ALICE).exit_code == 0
    assert uids(two, "ALL") == [1]


def test_other_folders_are_listed_and_searched(nodes: tuple[Path, Path]) -> None:
    one, two = nodes
    deliver(one, "first")
    account = open_cluster_account(cluster_pool(load_config(one).storage.dsn), ALICE)
    assert account is not None
    account.create("Archive")
    account.mailbox("Archive").append(b"Subject: kept\n\nold news\n", ["\\Seen"], None)
    listed = json.loads(run(two, "mailbox", "list", ALICE, "--json").stdout)
    assert [(f["name"], f["messages"], f["unseen"]) for f in listed["folders"]] == [
        ("INBOX", 1, 1),
        ("Archive", 1, 0),
    ]
    assert uids(two, "SEEN", folder="Archive") == [1]
    gone = run(two, "mailbox", "search", ALICE, "ALL", "--folder", "Nope")
    assert (gone.exit_code, gone.stderr) == (1, "mailstead: no folder 'Nope'\n")


def test_an_expunge_is_a_webhook_event_as_from_imap(nodes: tuple[Path, Path]) -> None:
    one, two = nodes
    deliver(one, "one")
    deliver(one, "two")
    added = run(one, "webhook", "add", "https://hooks.example.test/in", "--events", "message.*")
    assert added.exit_code == 0, added.output
    assert run(two, "mailbox", "expunge", ALICE, "INBOX", "SUBJECT two").exit_code == 0
    deliveries = json.loads(run(one, "webhook", "deliveries", "--json").stdout)
    assert [d["event_type"] for d in deliveries] == ["message.expunged"]


def test_reindex_has_nothing_to_rebuild(nodes: tuple[Path, Path]) -> None:
    one, _ = nodes
    deliver(one, "one")
    for args in ([ALICE], ["--all"]):
        result = run(one, "mailbox", "reindex", *args)
        assert (result.exit_code, result.stdout) == (
            0,
            'nothing to rebuild from files: with backend = "postgresql" the mail and its'
            " search data live in the cluster database\n",
        )
    wrong = run(one, "mailbox", "reindex", "x@elsewhere.test")
    assert (wrong.exit_code, wrong.stderr) == (
        1,
        "mailstead: 'x@elsewhere.test': elsewhere.test is not a local domain\n",
    )


@pytest.mark.parametrize(
    ("command", "advice"),
    [
        (["backup"], "backup copies a node's data directory, but"),
        (["restore"], "restore writes back a node's data directory, but"),
    ],
)
def test_backup_and_restore_point_at_pg_dump(
    nodes: tuple[Path, Path], tmp_path: Path, command: list[str], advice: str
) -> None:
    one, _ = nodes
    result = run(one, *command, str(tmp_path / "copy"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"mailstead: {advice}")
    assert "pg_dump" in result.stderr or "pg_restore" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "copy").exists()


def test_totals_and_usage_for_user_list_and_quota(nodes: tuple[Path, Path]) -> None:
    one, _ = nodes
    deliver(one, "one")
    deliver(one, "two")
    pool = cluster_pool(load_config(one).storage.dsn)
    account = open_cluster_account(pool, ALICE)
    assert account is not None
    inbox = account.mailbox("INBOX")
    inbox.refresh()
    inbox.store([1], ["\\Seen"], "+")
    alice, bob = cluster_totals(pool, [ALICE, "bob@example.test"])
    size = sum(inbox.messages[uid].size for uid in inbox.uids)
    assert (alice.messages, alice.unseen, alice.size) == (2, 1, size)
    assert (bob.messages, bob.unseen, bob.size) == (0, 0, 0)
    assert cluster_usage(pool, ALICE) == Usage(size, 2)
