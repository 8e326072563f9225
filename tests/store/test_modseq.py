"""Modification sequences in the store (RFC 7162): per message, never backwards.

Each :class:`Account` stands for one process (its own index connection and
in-memory mailboxes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.proto.imap.imap_transcript import MESSAGES, deliver

from mailstead.proto.imap.storage import MailboxLike
from mailstead.store.account import Account
from mailstead.store.mbox_account import MboxAccount

MBOX_MESSAGE = b"From a@example.test Wed Jul 17 09:44:25 1996\nSubject: %d\n\nbody\n\n"


@pytest.fixture(params=["maildir", "mbox"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], MailboxLike]:
    """A function opening the INBOX as a new process would, in either format."""
    if request.param == "maildir":
        deliver(tmp_path / "Maildir", *MESSAGES)
        return lambda: Account(tmp_path / "Maildir").mailbox("INBOX")
    (tmp_path / "mbox").write_bytes(b"".join(MBOX_MESSAGE % i for i in range(1, 4)))
    return lambda: MboxAccount(tmp_path).mailbox("INBOX")


def _open(opener: Callable[[], MailboxLike]) -> MailboxLike:
    box = opener()
    box.refresh()
    return box


def test_every_change_takes_a_higher_modseq_that_survives_reopening(
    opener: Callable[[], MailboxLike],
) -> None:
    box = _open(opener)
    first = box.highestmodseq
    assert {box.messages[u].modseq for u in box.uids} == {first}
    assert box.store([2], ["\\Seen"], "+") == [2]
    box.refresh()
    assert box.messages[2].modseq == box.highestmodseq > first
    assert box.store([2], ["\\Seen"], "+") == []  # no change, no new modseq
    stored = box.highestmodseq
    assert box.expunge([1]) == [1]
    box.refresh()
    assert box.highestmodseq > stored
    assert box.expunged_since(stored) == [1]
    assert box.expunged_since(box.highestmodseq) == []
    again = _open(opener)  # another process, the index read afresh
    assert again.highestmodseq == box.highestmodseq
    assert again.messages[2].modseq == stored


def test_unchangedsince_is_tested_inside_the_transaction(opener: Callable[[], MailboxLike]) -> None:
    # A's records are stale: B changed message 1 after A looked. A's
    # conditional store must see B's modseq (RFC 7162 §3.1.3), not its own.
    a, b = _open(opener), _open(opener)
    seen = a.highestmodseq
    assert b.store([1], ["\\Flagged"], "+") == [1]
    assert a.store([1, 2], ["\\Deleted"], "+", unchanged_since=seen) == [2]
    assert a.messages[1].flags == ("\\Flagged",)
    assert a.messages[1].modseq > seen and a.messages[2].modseq > a.messages[1].modseq
    # UNCHANGEDSINCE 0 fails every message.
    assert a.store([3], ["\\Seen"], "+", unchanged_since=0) == []
