"""Reading message bytes from the cluster database, a few messages per round trip.

A client reads mail in runs (``FETCH 1:* BODY.PEEK[HEADER]``, a SEARCH over
the text, a sync tool downloading a folder), each message asked for in
UID order. One query per message would make a run of 10,000 cost 10,000
round trips; :class:`Readahead` asks for the next small messages of the
mailbox along with the one wanted and keeps them for the calls that
follow. A message's bytes never change (UIDs are never reused), so what is
kept is never stale; it is only bounded.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Mapping, Sequence

from mailstead.pgsql.compat import Connection
from mailstead.store.pg_rows import PgMessage

__all__ = ["Readahead"]

# Messages fetched together at most, and how large they may be together
# (a message above a quarter of it is fetched alone).
READAHEAD_MESSAGES = 32
READAHEAD_OCTETS = 512 * 1024
# Octets kept per mailbox for the reads that follow.
KEPT_OCTETS = 1024 * 1024


class Readahead:
    """Owns one mailbox's recently fetched message bytes, by UID."""

    def __init__(self, mailbox_id: int) -> None:
        self._mailbox = mailbox_id
        self._kept: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._octets = 0

    def get(self, uid: int) -> bytes | None:
        """The bytes of ``uid`` if fetched already."""
        data = self._kept.get(uid)
        if data is not None:
            self._kept.move_to_end(uid)
        return data

    def fetch(
        self, conn: Connection, uid: int, uids: Sequence[int], messages: Mapping[int, PgMessage]
    ) -> bytes | None:
        """The bytes of ``uid`` (None: not in the mailbox any more), with the
        next few of ``uids`` (ascending) kept for later."""
        batch = [uid]
        octets = messages[uid].size if uid in messages else 0
        start = bisect.bisect_right(uids, uid)
        for later in uids[start : start + READAHEAD_MESSAGES - 1]:
            msg = messages.get(later)
            if msg is None or later in self._kept:
                continue
            if octets + msg.size > READAHEAD_OCTETS or msg.size > READAHEAD_OCTETS // 4:
                break
            batch.append(later)
            octets += msg.size
        wanted = None
        for found, head, data in conn.execute(
            "SELECT m.uid, m.head, b.data FROM mail_messages m JOIN mail_bodies b"
            " ON b.hash = m.body WHERE m.mailbox = ? AND m.uid = ANY(?::bigint[])",
            (self._mailbox, batch),
        ):
            whole = bytes(head) + bytes(data)
            self._keep(int(found), whole)
            if int(found) == uid:
                wanted = whole
        return wanted

    def _keep(self, uid: int, data: bytes) -> None:
        old = self._kept.pop(uid, None)
        if old is not None:
            self._octets -= len(old)
        self._kept[uid] = data
        self._octets += len(data)
        while self._octets > KEPT_OCTETS:
            _, dropped = self._kept.popitem(last=False)
            self._octets -= len(dropped)
