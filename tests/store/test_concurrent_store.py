"""Two processes on one account: what each sees of the other's changes.

Each :class:`Account` here stands for one process (its own index connection
and in-memory mailboxes), as in tests/proto/imap/test_server_concurrency.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.proto.imap.imap_transcript import MESSAGES, deliver

from mailstead.store.account import Account


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "Maildir"
    deliver(root, *MESSAGES)
    return root


def test_one_keyword_letter_per_keyword_across_processes(root: Path) -> None:
    a, b = Account(root).mailbox("INBOX"), Account(root).mailbox("INBOX")
    a.refresh()
    b.refresh()
    b.keyword_names()  # B has read the (empty) keyword table
    a.store([1], ["$Alpha"], "+")
    b.store([2], ["$Beta"], "+")
    assert (root / "dovecot-keywords").read_text() == "0 $Alpha\n1 $Beta\n"
    fresh = Account(root).mailbox("INBOX")
    fresh.refresh()
    assert (fresh.messages[1].flags, fresh.messages[2].flags) == (("$Alpha",), ("$Beta",))
