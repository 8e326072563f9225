"""One session's view of its selected mailbox: sequence numbers and what it was told.

RFC 9051 §2.3.1.2: message sequence numbers are the session's own. Other
sessions (and other programs) add, flag and expunge messages at any time;
the view keeps the numbering the client knows until it may tell the client
of a change. New messages are announced with EXISTS, flag changes with an
unsolicited FETCH, and expunges with EXPUNGE — but never during FETCH,
STORE or SEARCH, nor a UID-less command that uses numbers (RFC 9051 §7.5.1),
because the client's numbers would shift under it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from mailstead.proto.imap.storage import MailboxLike


def flag_list(flags: Sequence[str]) -> bytes:
    return b"(" + " ".join(flags).encode() + b")"


class SelectedView:
    """Owns the sequence-number map of one session's selected mailbox."""

    def __init__(self, mailbox: MailboxLike, *, readonly: bool) -> None:
        self.mailbox = mailbox
        self.readonly = readonly
        # Shared with the mailbox until either changes; both only ever
        # replace their list, never change it in place.
        self.uids: list[int] = mailbox.uids
        self.modseq_seen = mailbox.highestmodseq
        # Flag changes this session reported itself (uid -> modseq), not to
        # be echoed back as unsolicited FETCH.
        self.own_changes: dict[int, int] = {}
        self.recent: set[int] = set()
        self._expunge_pending = False

    def __len__(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def note_own_change(self, uid: int) -> None:
        msg = self.mailbox.messages.get(uid)
        if msg is not None:
            self.own_changes[uid] = msg.modseq

    def updates(self, *, allow_expunge: bool, rev1: bool, max_age: float = 0.0) -> list[bytes]:
        """The untagged responses that bring the client up to date (refreshes first)."""
        mailbox = self.mailbox
        mailbox.refresh(max_age)
        out: list[bytes] = []
        if mailbox.highestmodseq == self.modseq_seen and not self._expunge_pending:
            return out
        messages = mailbox.messages
        uids = self.uids
        if allow_expunge:
            gone = [i for i, uid in enumerate(uids) if uid not in messages]
            for i in reversed(gone):
                out.append(b"* %d EXPUNGE\r\n" % (i + 1))
                self.recent.discard(uids[i])
            if gone:
                uids = [uid for uid in uids if uid in messages]
            self._expunge_pending = False
        elif len(messages) < len(uids) or any(uid not in messages for uid in uids):
            self._expunge_pending = True
        # Flag changes made elsewhere, for messages the client knows.
        seen = self.modseq_seen
        own = self.own_changes
        for seq, uid in enumerate(uids, 1):
            msg = messages.get(uid)
            if msg is None or msg.modseq <= seen or own.get(uid) == msg.modseq:
                continue
            out.append(b"* %d FETCH (UID %d FLAGS %s)\r\n" % (seq, uid, flag_list(msg.flags)))
        # New messages: UIDs above the highest the client knows.
        everything = mailbox.uids
        start = bisect.bisect_right(everything, uids[-1] if uids else 0)
        if start < len(everything):
            if not self._expunge_pending and len(uids) == start:
                uids = everything  # the same messages: share the mailbox's list again
            else:
                uids = uids + everything[start:]
            out.append(b"* %d EXISTS\r\n" % len(uids))
            if rev1:
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        self.uids = uids
        self.modseq_seen = mailbox.highestmodseq
        self.own_changes = {u: m for u, m in own.items() if m > self.modseq_seen}
        return out
