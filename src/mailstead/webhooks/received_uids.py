"""``uid`` and ``uidvalidity`` of message.received: null when stored, told when sent.

The delivery that commits a message.received does not know the UID its
copy will get (delivery does not index, to stay fast); the event carries
where the copy went instead (``Event.stored_as``), and the outbox asks
:class:`~mailstead.store.delivered.DeliveredUids` just before the first
POST, off the mail path, in the dispatcher.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from mailstead.pgsql.connect import Pool
from mailstead.store.delivered import DeliveredUids, Uid
from mailstead.store.pg_delivery import PgMailStore
from mailstead.store.stored_as import StoredAs

__all__ = ["UidTeller", "with_uid", "with_uid_fields"]

log = logging.getLogger("mailstead.webhooks")


def with_uid_fields(data: object) -> dict[str, object]:
    """message.received's ``data`` with ``uid`` and ``uidvalidity`` (null until told)
    right after ``folder``, the mailbox they belong to."""
    fields: dict[str, object] = {}
    for key, value in data.items() if isinstance(data, dict) else ():
        fields[key] = value
        if key == "folder":
            fields.update(uid=None, uidvalidity=None)
    fields.setdefault("uid", None)
    fields.setdefault("uidvalidity", None)
    return fields


def with_uid(payload: bytes, uid: Uid) -> bytes:
    """The JSON body ``payload`` with ``data.uid`` and ``data.uidvalidity`` told, and
    ``data.folder`` the mailbox they belong to (``Junk`` for mail the checks called junk)."""
    document = json.loads(payload)
    data = document["data"]
    data.update(folder=uid.mailbox, uid=uid.uid, uidvalidity=uid.uidvalidity)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


class UidTeller:
    """Tells the UIDs of delivered copies for one outbox; opens the account indexes
    it needs on first use (only a dispatcher's outbox ever does).

    ``pool``: the cluster database, which tells its own copies (``StoredAs``
    format ``"postgresql"``); without it they go out with a null UID.
    """

    def __init__(self, pool: Pool | None = None) -> None:
        self._delivered: DeliveredUids | None = None
        self._cluster = PgMailStore(pool) if pool is not None else None

    def tell(self, places: Mapping[str, str]) -> dict[str, Uid]:
        """Event id → the UID of its copy, for each of ``places`` (event id →
        ``StoredAs.encode()``) whose copy is in its mailbox.

        A failure (an index that cannot be opened, say) tells nothing: the
        event goes out with a null UID, and the next attempt asks again.
        """
        copies = {i: StoredAs.decode(text) for i, text in places.items()}
        wanted = {i: copy for i, copy in copies.items() if copy is not None}
        if not wanted:
            return {}
        if self._delivered is None:
            self._delivered = DeliveredUids()
        try:
            found = self._delivered.find(list(wanted.values()))
            if self._cluster is not None and any(c.format == "postgresql" for c in wanted.values()):
                # The cluster database's copies: asked in one query.
                in_cluster = self._cluster.find_delivered(list(wanted.values()))
                found = [mine or theirs for mine, theirs in zip(found, in_cluster, strict=True)]
        except Exception:
            log.exception("telling the UID of a delivered message failed")
            return {}
        return {i: uid for i, uid in zip(wanted, found, strict=True) if uid is not None}

    def close(self) -> None:
        if self._delivered is not None:
            self._delivered.close()
