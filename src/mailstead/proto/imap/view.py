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

from mailstead.proto.imap.sequence import format_set
from mailstead.proto.imap.storage import MailboxLike, MessageLike

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
# $Forwarded has its own Maildir letter (P), so it is always storable.
DEFINED_FLAGS = (*SYSTEM_FLAGS, "$Forwarded")
RECENT = "\\Recent"


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
        # RFC 3501 §7.2.6: the keywords the client was told of (SELECT's FLAGS).
        self.keywords_told = {*DEFINED_FLAGS, *mailbox.keyword_names()}
        self._expunge_pending = False
        # RFC 7162 (proto/imap/condstore.py turns them on): MODSEQ in every
        # unsolicited FETCH, and VANISHED in place of EXPUNGE.
        self.condstore = False
        self.qresync = False
        # Every change up to this modseq has been told to the client: the
        # HIGHESTMODSEQ it may resynchronise from later.
        self.modseq_told = self.modseq_seen
        # The command's tagged OK carries HIGHESTMODSEQ (EXPUNGE, MOVE).
        self.reply_tells_modseq = False

    def __len__(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def record(self, uid: int) -> MessageLike | None:
        """The message the client numbers ``uid``, also if it was expunged and the
        client was not told yet: RFC 2180 §4.1.2 and RFC 9051 §7.5.1 let
        FETCH, SEARCH and COPY go on serving it until then."""
        mailbox = self.mailbox
        return mailbox.messages.get(uid) or mailbox.retained.get(uid)

    def shown_flags(self, msg: MessageLike, *, rev1: bool) -> tuple[str, ...]:
        """The flags FETCH shows: \\Recent added for an IMAP4rev1 session
        (RFC 3501 §2.3.2; RFC 9051 has no \\Recent)."""
        if rev1 and msg.uid in self.recent:
            return (*msg.flags, RECENT)
        return msg.flags

    def announce_keywords(self) -> list[bytes]:
        """FLAGS and PERMANENTFLAGS again if the mailbox has a keyword the
        client was not told of (RFC 3501 §7.2.6, RFC 9051 §7.3.5), to go
        before a FETCH that may show it. Every keyword a message carries is
        one of the mailbox's, so the messages need not be looked at."""
        told = self.keywords_told
        names = self.mailbox.keyword_names()
        if told.issuperset(names):
            return []
        told.update(names)
        # As SELECT lists them: the mailbox's keywords in their order.
        flags = (*DEFINED_FLAGS, *names)
        permanent = flag_list((*flags, "\\*")) if not self.readonly else b"()"
        return [
            b"* FLAGS " + flag_list(flags) + b"\r\n",
            b"* OK [PERMANENTFLAGS " + permanent + b"] Flags permitted\r\n",
        ]

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
        gone: list[int] = []
        if allow_expunge:
            gone = [i for i, uid in enumerate(uids) if uid not in messages]
            if gone and self.qresync:  # RFC 7162 §3.2.10: VANISHED, by UID
                out.append(b"* VANISHED %s\r\n" % format_set(uids[i] for i in gone).encode())
            for i in reversed(gone):
                if not self.qresync:
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
        changed = []
        for seq, uid in enumerate(uids, 1):
            msg = messages.get(uid)
            if msg is None or msg.modseq <= seen or own.get(uid) == msg.modseq:
                continue
            changed.append((seq, msg))
        if changed:
            out += self.announce_keywords()
        for seq, msg in changed:
            flags = flag_list(self.shown_flags(msg, rev1=rev1))
            if self.condstore:  # RFC 7162 §3.1: UID and MODSEQ in every unsolicited FETCH
                out.append(
                    b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n"
                    % (seq, msg.uid, flags, msg.modseq)
                )
            else:
                out.append(b"* %d FETCH (UID %d FLAGS %s)\r\n" % (seq, msg.uid, flags))
        # New messages: UIDs above the highest the client knows.
        everything = mailbox.uids
        start = bisect.bisect_right(everything, uids[-1] if uids else 0)
        arrived = start < len(everything)
        if arrived:
            if not self._expunge_pending and len(uids) == start:
                uids = everything  # the same messages: share the mailbox's list again
            else:
                uids = uids + everything[start:]
            # RFC 3501 §2.3.2: a session selected when messages arrive is the
            # first to be told of them, so they are \Recent in it alone.
            first_new = everything[start]
            recent = mailbox.recent_uids() if self.readonly else mailbox.claim_recent()
            self.recent.update(uid for uid in recent if uid >= first_new)
            out.append(b"* %d EXISTS\r\n" % len(uids))
            if rev1:
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        self.uids = uids
        moved = self.modseq_seen != mailbox.highestmodseq
        self.modseq_seen = mailbox.highestmodseq
        if not self._expunge_pending:
            self.modseq_told = self.modseq_seen
            if self.condstore and gone and not arrived and not self.reply_tells_modseq:
                # No FETCH carries an expunge's modseq: say where the client
                # now stands (nothing new whose flags it has not seen).
                out.append(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % self.modseq_told)
        elif self.condstore and moved:
            # An expunge the client may not hear of yet (RFC 9051 §7.5.1) is
            # older than a MODSEQ it may just have seen: a HIGHESTMODSEQ from
            # before the expunge keeps a QRESYNC from skipping it (RFC 7162 §3.2.5).
            out.append(b"* OK [HIGHESTMODSEQ %d] Expunges pending\r\n" % self.modseq_told)
        self.own_changes = {u: m for u, m in own.items() if m > self.modseq_seen}
        self.reply_tells_modseq = False
        return out
