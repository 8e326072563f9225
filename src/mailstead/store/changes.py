"""An account's mailbox changes as events (RFC 5423's message-store events).

Each account has one :class:`ChangeReporter`; its mailboxes call it after
a change is on disk and in the index: flags changed, messages expunged, a
mailbox created, deleted or renamed, whether IMAP or POP3 made the change.
Without a sink, or when nobody subscribes, reporting costs one check.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mailstead.events import Event, EventSink, domain_of

__all__ = ["NO_REPORTS", "ChangeReporter"]

log = logging.getLogger("mailstead.store")

# A STORE or EXPUNGE over a huge mailbox reports at most this many UIDs
# (and says the list was cut): the event stays a bounded JSON document.
MAX_UIDS = 10_000

# IMAP STORE's modes (RFC 9051 §6.4.6) as the payload names them.
_MODES = {"+": "add", "-": "remove", "=": "replace"}


class ChangeReporter:
    """Turns one account's mailbox changes into events for ``sink``."""

    def __init__(self, sink: EventSink | None, address: str | None) -> None:
        self.sink = sink if address is not None else None
        self.address = address
        self.domain = domain_of(address)

    def _report(self, event_type: str, data: dict[str, object]) -> None:
        sink = self.sink
        if sink is None or not sink.wants(event_type):
            return
        try:
            sink.emit([Event(event_type, data, account=self.address, domain=self.domain)])
        except Exception:
            # The change itself is done and durable; only its event is lost.
            log.exception("%s: storing a %s event failed", self.address, event_type)

    def flags_changed(
        self, mailbox: str, uids: Sequence[int], flags: Sequence[str], mode: str
    ) -> None:
        if uids:
            self._report(
                "message.flags_changed",
                {"mailbox": mailbox, **_uids(uids), "flags": list(flags), "mode": _MODES[mode]},
            )

    def expunged(self, mailbox: str, uids: Sequence[int]) -> None:
        if uids:
            self._report("message.expunged", {"mailbox": mailbox, **_uids(uids)})

    def created(self, mailbox: str) -> None:
        self._report("mailbox.created", {"mailbox": mailbox})

    def deleted(self, mailbox: str) -> None:
        self._report("mailbox.deleted", {"mailbox": mailbox})

    def renamed(self, old: str, new: str) -> None:
        self._report("mailbox.renamed", {"old": old, "new": new})


def _uids(uids: Sequence[int]) -> dict[str, object]:
    return {"uids": list(uids[:MAX_UIDS]), "uids_truncated": len(uids) > MAX_UIDS}


#: The reporter of an account opened without a sink (tools, tests).
NO_REPORTS = ChangeReporter(None, None)
